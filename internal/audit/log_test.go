package audit_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/chaperone-dev/chaperone/internal/audit"
	"github.com/chaperone-dev/chaperone/internal/store/sqlite"
)

// openDB opens the SQLite store at path; t.Cleanup closes it.
func openDB(tb testing.TB, path string) *sqlite.DB {
	tb.Helper()
	db, err := sqlite.Open(tb.Context(), path)
	if err != nil {
		tb.Fatalf("sqlite.Open(%q): %v", path, err)
	}
	tb.Cleanup(func() { db.Close() })
	return db
}

// tempDB opens a fresh SQLite store in a temporary directory.
func tempDB(tb testing.TB) *sqlite.DB {
	tb.Helper()
	return openDB(tb, filepath.Join(tb.TempDir(), "chaperone.db"))
}

// newLog starts a Log on store; t.Cleanup closes it.
func newLog(tb testing.TB, store audit.Store, opts audit.LogOptions) *audit.Log {
	tb.Helper()
	l, err := audit.NewLog(tb.Context(), store, opts)
	if err != nil {
		tb.Fatalf("NewLog: %v", err)
	}
	tb.Cleanup(func() {
		// Not tb.Context(): it is already cancelled when cleanups run.
		if err := l.Close(context.Background()); err != nil {
			tb.Errorf("Close: %v", err)
		}
	})
	return l
}

var t0 = time.Date(2026, 3, 1, 9, 0, 7, 123456000, time.UTC)

// event returns a valid event of kind for request id.
func event(kind, id string) audit.Event {
	return audit.Event{
		Time:      t0,
		Kind:      kind,
		RequestID: id,
		Agent:     "mail-assistant",
		Tool:      "send_email",
		Decision:  "allow",
	}
}

// waitFor waits until cond holds, failing the test after a generous deadline.
func waitFor(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(time.Millisecond) // polling a condition, not waiting for time to pass
	}
}

// verify runs Verify on src and fails the test on a read error.
func verify(tb testing.TB, src audit.Source) audit.Report {
	tb.Helper()
	r, err := audit.Verify(tb.Context(), src)
	if err != nil {
		tb.Fatalf("Verify: %v", err)
	}
	return r
}

// result is what an asynchronous Append returned.
type result struct {
	event audit.Event
	err   error
}

// appendAsync appends e in a goroutine and delivers the result.
func appendAsync(ctx context.Context, l *audit.Log, e audit.Event) <-chan result {
	ch := make(chan result, 1)
	go func() {
		err := l.Append(ctx, &e)
		ch <- result{e, err}
	}()
	return ch
}

// fakeStore is an audit.Store whose behaviour tests set through function
// fields, usually delegating to a real store.
type fakeStore struct {
	appendEvents func(ctx context.Context, events []audit.Event) error
	lastEvent    func(ctx context.Context) (audit.Event, bool, error)
}

func (f *fakeStore) AppendEvents(ctx context.Context, events []audit.Event) error {
	return f.appendEvents(ctx, events)
}

func (f *fakeStore) LastEvent(ctx context.Context) (audit.Event, bool, error) {
	return f.lastEvent(ctx)
}

// gatedStore returns a fakeStore over db whose AppendEvents reports each call
// on calls and then waits for the error to return on results (nil: commit to db).
func gatedStore(db *sqlite.DB) (store *fakeStore, calls <-chan []audit.Event, results chan<- error) {
	c := make(chan []audit.Event)
	r := make(chan error)
	return &fakeStore{
		appendEvents: func(ctx context.Context, events []audit.Event) error {
			c <- slices.Clone(events)
			if err := <-r; err != nil {
				return err
			}
			return db.AppendEvents(ctx, events)
		},
		lastEvent: db.LastEvent,
	}, c, r
}

func TestConcurrentAppendVerifyReopen(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "chaperone.db")
	db := openDB(t, path)
	l, err := audit.NewLog(ctx, db, audit.LogOptions{})
	if err != nil {
		t.Fatal(err)
	}

	const workers, perWorker = 50, 20
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		seqs     []int64
		appendOK atomic.Int64
	)
	for w := range workers {
		wg.Go(func() {
			for i := range perWorker {
				// Even: a call's intent; odd: its outcome.
				kind := audit.KindCallIntent
				if i%2 == 1 {
					kind = audit.KindCallOutcome
				}
				e := event(kind, fmt.Sprintf("w%d-%d", w, i/2))
				e.Time = time.Now()
				if err := l.Append(ctx, &e); err != nil {
					t.Errorf("Append(worker %d, #%d): %v", w, i, err)
					return
				}
				if got := e.ComputeHash(); got != e.Hash {
					t.Errorf("Append(worker %d, #%d) left Hash %q, content hashes to %q", w, i, e.Hash, got)
				}
				appendOK.Add(1)
				mu.Lock()
				seqs = append(seqs, e.Seq)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if err := l.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	const total = workers * perWorker
	if got := appendOK.Load(); got != total {
		t.Fatalf("%d appends succeeded, want %d", got, total)
	}
	slices.Sort(seqs)
	for i, s := range seqs {
		if s != int64(i+1) {
			t.Fatalf("sorted seqs[%d] = %d, want %d: seqs are not 1..%d without gaps or repeats", i, s, i+1, total)
		}
	}

	r := verify(t, db)
	last, _, err := db.LastEvent(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := audit.Report{Events: total, Head: last.Hash}
	if diff := cmp.Diff(want, r); diff != "" {
		t.Fatalf("Verify (-want +got):\n%s", diff)
	}

	// The chain survives a restart: a new Log continues from the stored head.
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db = openDB(t, path)
	l = newLog(t, db, audit.LogOptions{})
	e := event(audit.KindCallRefused, "after-restart")
	if err := l.Append(ctx, &e); err != nil {
		t.Fatalf("Append after reopen: %v", err)
	}
	if e.Seq != total+1 || e.PrevHash != r.Head {
		t.Errorf("Append after reopen: Seq, PrevHash = %d, %q; want %d, %q", e.Seq, e.PrevHash, total+1, r.Head)
	}
	if r := verify(t, db); r.Broken != nil || r.Events != total+1 || r.Head != e.Hash {
		t.Errorf("Verify after reopen = %+v, want %d events, head %q, no break", r, total+1, e.Hash)
	}
}

func TestAppendNormalizes(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db := tempDB(t)
	l := newLog(t, db, audit.LogOptions{})

	// Strings that test the canonical form on its way through SQLite.
	e := event(audit.KindCallRefused, "r1")
	e.Time = time.Date(2026, 3, 1, 10, 0, 7, 123456789, time.FixedZone("CET", 3600))
	e.Message = "bad \xff byte, <html> & \u2028 \x01 \"quoted\"\n\t"
	e.Rules = []string{"a", "b\xfe"}
	callerRules := e.Rules
	if err := l.Append(ctx, &e); err != nil {
		t.Fatal(err)
	}
	want := time.Date(2026, 3, 1, 9, 0, 7, 123456000, time.UTC)
	if e.Time != want {
		t.Errorf("recorded Time = %v, want %v", e.Time, want)
	}
	if wantMsg := "bad \uFFFD byte, <html> & \u2028 \x01 \"quoted\"\n\t"; e.Message != wantMsg {
		t.Errorf("recorded Message = %q, want %q", e.Message, wantMsg)
	}
	if callerRules[1] != "b\xfe" {
		t.Errorf("Append modified the caller's Rules slice: %q", callerRules)
	}
	stored, _, err := db.LastEvent(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(e, stored); diff != "" {
		t.Errorf("stored event differs from the one Append returned (-returned +stored):\n%s", diff)
	}
	if r := verify(t, db); r.Broken != nil {
		t.Errorf("Verify: %+v", r.Broken)
	}
}

func TestAppendInvalid(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		edit func(*audit.Event)
	}{
		{"no kind", func(e *audit.Event) { e.Kind = "" }},
		{"no time", func(e *audit.Event) { e.Time = time.Time{} }},
		{"year 10000", func(e *audit.Event) { e.Time = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) }},
		{"intent without request id", func(e *audit.Event) { e.RequestID = "" }},
		{"outcome without request id", func(e *audit.Event) { e.Kind, e.RequestID = audit.KindCallOutcome, "" }},
	}
	db := tempDB(t)
	l := newLog(t, db, audit.LogOptions{})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := event(audit.KindCallIntent, "r1")
			tt.edit(&e)
			if err := l.Append(t.Context(), &e); !errors.Is(err, audit.ErrInvalidEvent) {
				t.Errorf("Append(%+v) = %v, want ErrInvalidEvent", e, err)
			}
		})
	}
	if r := verify(t, db); r.Events != 0 {
		t.Errorf("Verify after invalid appends: %d events, want 0", r.Events)
	}
}

func TestStoreFailureFailsBatch(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db := tempDB(t)
	store, calls, results := gatedStore(db)
	l := newLog(t, store, audit.LogOptions{})
	errInjected := errors.New("disk on fire")

	// Event 1 commits.
	first := appendAsync(ctx, l, event(audit.KindCallRefused, "a"))
	<-calls
	results <- nil
	if r := <-first; r.err != nil || r.event.Seq != 1 {
		t.Fatalf("Append(a) = seq %d, %v; want 1, nil", r.event.Seq, r.err)
	}

	// While event 2 is in the store, ten more queue up: one batch.
	second := appendAsync(ctx, l, event(audit.KindCallRefused, "b"))
	<-calls
	const n = 10
	var waiters []<-chan result
	for i := range n {
		waiters = append(waiters, appendAsync(ctx, l, event(audit.KindCallRefused, fmt.Sprint("batch-", i))))
	}
	waitFor(t, "10 appends are queued", func() bool { return audit.QueueLen(l) == n })
	results <- nil
	r2 := <-second
	if r2.err != nil || r2.event.Seq != 2 {
		t.Fatalf("Append(b) = seq %d, %v; want 2, nil", r2.event.Seq, r2.err)
	}

	// The batch of ten fails: every waiter gets the store's error.
	if batch := <-calls; len(batch) != n || batch[0].Seq != 3 {
		t.Fatalf("store got a batch of %d starting at %d, want %d starting at 3", len(batch), batch[0].Seq, n)
	}
	results <- errInjected
	for i, w := range waiters {
		r := <-w
		if !errors.Is(r.err, errInjected) || !strings.Contains(r.err.Error(), "commit 10 events") {
			t.Errorf("Append(batch-%d) = %v, want the store's error for the batch of 10", i, r.err)
		}
	}

	// The next batch chains from the last committed event, not the failed ones.
	next := appendAsync(ctx, l, event(audit.KindCallRefused, "c"))
	if batch := <-calls; batch[0].Seq != 3 || batch[0].PrevHash != r2.event.Hash {
		t.Errorf("after the failure the store got event %d with prev_hash %q, want 3 and %q", batch[0].Seq, batch[0].PrevHash, r2.event.Hash)
	}
	results <- nil
	if r := <-next; r.err != nil || r.event.Seq != 3 {
		t.Fatalf("Append(c) = seq %d, %v; want 3, nil", r.event.Seq, r.err)
	}
	if r := verify(t, db); r.Broken != nil || r.Events != 3 {
		t.Errorf("Verify = %+v, want 3 events and no break", r)
	}
}

func TestStoreFailureUnknownOutcome(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db := tempDB(t)
	errTimeout := errors.New("commit timed out")
	var (
		commitThenFail atomic.Bool // the store writes the batch, then reports failure
		failLast       atomic.Bool // LastEvent fails
	)
	store := &fakeStore{
		appendEvents: func(ctx context.Context, events []audit.Event) error {
			if err := db.AppendEvents(ctx, events); err != nil {
				return err
			}
			if commitThenFail.Load() {
				return errTimeout
			}
			return nil
		},
		lastEvent: func(ctx context.Context) (audit.Event, bool, error) {
			if failLast.Load() {
				return audit.Event{}, false, errors.New("store unreachable")
			}
			return db.LastEvent(ctx)
		},
	}
	l := newLog(t, store, audit.LogOptions{})
	appendOne := func(id string) (audit.Event, error) {
		e := event(audit.KindCallRefused, id)
		err := l.Append(ctx, &e)
		return e, err
	}

	if _, err := appendOne("a"); err != nil {
		t.Fatal(err)
	}
	commitThenFail.Store(true)
	if _, err := appendOne("b"); !errors.Is(err, errTimeout) {
		t.Fatalf("Append(b) = %v, want the store's error", err)
	}
	commitThenFail.Store(false)
	failLast.Store(true)
	if _, err := appendOne("c"); err == nil || !strings.Contains(err.Error(), "reload chain head") {
		t.Fatalf("Append(c) with LastEvent failing = %v, want a reload error", err)
	}
	failLast.Store(false)
	// "b" reached the store although its Append failed: more evidence, never
	// less. The log rereads the head and chains after it.
	d, err := appendOne("d")
	if err != nil || d.Seq != 3 {
		t.Fatalf("Append(d) = seq %d, %v; want 3, nil", d.Seq, err)
	}
	if r := verify(t, db); r.Broken != nil || r.Events != 3 {
		t.Errorf("Verify = %+v, want 3 events and no break", r)
	}
}

func TestStoreLostEventsRefused(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db := tempDB(t)
	var fail atomic.Bool
	store := &fakeStore{
		appendEvents: func(ctx context.Context, events []audit.Event) error {
			if fail.Load() {
				return errors.New("injected")
			}
			return db.AppendEvents(ctx, events)
		},
		lastEvent: db.LastEvent,
	}
	l := newLog(t, store, audit.LogOptions{})
	for i := range 3 {
		e := event(audit.KindCallRefused, fmt.Sprint(i))
		if err := l.Append(ctx, &e); err != nil {
			t.Fatal(err)
		}
	}
	// Someone cuts the tail of the log, and a commit fails, so the log
	// rereads the head: it must not chain onto the shortened log.
	if _, err := db.SQL().ExecContext(ctx, `DELETE FROM audit_events WHERE seq > 1`); err != nil {
		t.Fatal(err)
	}
	fail.Store(true)
	e := event(audit.KindCallRefused, "x")
	if err := l.Append(ctx, &e); err == nil {
		t.Fatal("Append with failing store succeeded")
	}
	fail.Store(false)
	err := l.Append(ctx, &e)
	if err == nil || !strings.Contains(err.Error(), "store ends at event 1 but event 3 was committed") {
		t.Errorf("Append after the log lost events = %v, want a refusal naming events 1 and 3", err)
	}
}

func TestCloseFlushesPending(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db := tempDB(t)
	store, calls, results := gatedStore(db)
	l, err := audit.NewLog(ctx, store, audit.LogOptions{})
	if err != nil {
		t.Fatal(err)
	}

	waiters := []<-chan result{appendAsync(ctx, l, event(audit.KindCallRefused, "first"))}
	<-calls // the writer is in the store with the first event
	for i := range 5 {
		waiters = append(waiters, appendAsync(ctx, l, event(audit.KindCallRefused, fmt.Sprint(i))))
	}
	waitFor(t, "5 appends are queued", func() bool { return audit.QueueLen(l) == 5 })

	closed := make(chan error, 1)
	go func() { closed <- l.Close(ctx) }()
	waitFor(t, "Close has started", func() bool { return audit.IsClosing(l) })
	results <- nil // first
	<-calls        // the five queued ones
	results <- nil
	if err := <-closed; err != nil {
		t.Fatalf("Close: %v", err)
	}
	for i, w := range waiters {
		if r := <-w; r.err != nil {
			t.Errorf("Append #%d pending at Close = %v, want nil", i, r.err)
		}
	}
	if r := verify(t, db); r.Broken != nil || r.Events != 6 {
		t.Errorf("Verify = %+v, want 6 events and no break", r)
	}

	e := event(audit.KindCallRefused, "late")
	if err := l.Append(ctx, &e); !errors.Is(err, audit.ErrClosed) {
		t.Errorf("Append after Close = %v, want ErrClosed", err)
	}
	if err := l.Close(ctx); err != nil {
		t.Errorf("second Close = %v, want nil", err)
	}
}

func TestCloseContextDone(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db := tempDB(t)
	started := make(chan struct{})
	var once sync.Once
	store := &fakeStore{
		// A store that hangs until its context is done.
		appendEvents: func(ctx context.Context, events []audit.Event) error {
			once.Do(func() { close(started) })
			<-ctx.Done()
			return ctx.Err()
		},
		lastEvent: db.LastEvent,
	}
	l, err := audit.NewLog(ctx, store, audit.LogOptions{})
	if err != nil {
		t.Fatal(err)
	}
	first := appendAsync(ctx, l, event(audit.KindCallRefused, "first"))
	<-started
	queued := appendAsync(ctx, l, event(audit.KindCallRefused, "queued"))
	waitFor(t, "an append is queued", func() bool { return audit.QueueLen(l) == 1 })

	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := l.Close(cctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Close(cancelled) = %v, want context.Canceled", err)
	}
	for name, ch := range map[string]<-chan result{"first": first, "queued": queued} {
		if r := <-ch; r.err == nil {
			t.Errorf("Append(%s) succeeded although Close aborted the store", name)
		}
	}
}

func TestAppendContextDone(t *testing.T) {
	t.Parallel()
	ctx := t.Context()

	t.Run("while queued", func(t *testing.T) {
		t.Parallel()
		db := tempDB(t)
		store, calls, results := gatedStore(db)
		l := newLog(t, store, audit.LogOptions{QueueSize: 1, MaxBatch: 1})
		first := appendAsync(ctx, l, event(audit.KindCallRefused, "first"))
		<-calls
		second := appendAsync(ctx, l, event(audit.KindCallRefused, "second"))
		waitFor(t, "the queue is full", func() bool { return audit.QueueLen(l) == 1 })

		cctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
		defer cancel()
		e := event(audit.KindCallRefused, "third")
		if err := l.Append(cctx, &e); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Append with the queue full = %v, want context.DeadlineExceeded", err)
		}
		results <- nil
		<-calls
		results <- nil
		for _, ch := range []<-chan result{first, second} {
			if r := <-ch; r.err != nil {
				t.Errorf("Append(%s) = %v", r.event.RequestID, r.err)
			}
		}
		if r := verify(t, db); r.Events != 2 {
			t.Errorf("Verify: %d events, want 2 (the third was never queued)", r.Events)
		}
	})

	t.Run("while committing", func(t *testing.T) {
		t.Parallel()
		db := tempDB(t)
		store, calls, results := gatedStore(db)
		l := newLog(t, store, audit.LogOptions{})
		cctx, cancel := context.WithCancel(ctx)
		pending := appendAsync(cctx, l, event(audit.KindCallRefused, "first"))
		<-calls
		cancel()
		if r := <-pending; !errors.Is(r.err, context.Canceled) {
			t.Errorf("Append cancelled while committing = %v, want context.Canceled", r.err)
		}
		results <- nil
		// Documented: the event may be recorded all the same.
		waitFor(t, "the event is committed", func() bool {
			_, ok, err := db.LastEvent(ctx)
			return ok && err == nil
		})
	})

	t.Run("before", func(t *testing.T) {
		t.Parallel()
		db := tempDB(t)
		l := newLog(t, db, audit.LogOptions{})
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		e := event(audit.KindCallRefused, "x")
		if err := l.Append(cctx, &e); !errors.Is(err, context.Canceled) {
			t.Errorf("Append(cancelled) = %v, want context.Canceled", err)
		}
		if err := l.Append(context.WithoutCancel(cctx), &e); err != nil {
			t.Errorf("Append(WithoutCancel(cancelled)) = %v, want nil", err)
		}
	})
}

func TestNewLogOptions(t *testing.T) {
	t.Parallel()
	db := tempDB(t)
	if _, err := audit.NewLog(t.Context(), db, audit.LogOptions{MaxBatch: -1}); err == nil {
		t.Error("NewLog(MaxBatch: -1) succeeded")
	}
	if _, err := audit.NewLog(t.Context(), nil, audit.LogOptions{}); err == nil {
		t.Error("NewLog(nil store) succeeded")
	}
	if _, err := audit.NewLog(t.Context(), db, audit.LogOptions{GroupWait: -time.Millisecond}); err == nil {
		t.Error("NewLog(GroupWait: -1ms) succeeded")
	}
	if _, err := audit.NewLog(t.Context(), db, audit.LogOptions{GroupWait: audit.MaxGroupWait + 1}); err == nil || !strings.Contains(err.Error(), "group wait 10.000001ms is more than 10ms") {
		t.Errorf("NewLog(GroupWait over the bound) = %v, want an error naming both", err)
	}
}

// sleepRecorder stands in for the writer's sleep: it counts each wait, reports it on
// slept while there is room (so that a writer waiting far more often than a test expects
// fails the test's count instead of blocking), and returns when the test sends on wake,
// or at once once wake is closed.
type sleepRecorder struct {
	slept chan time.Duration
	wake  chan struct{}
	calls atomic.Int64
}

func newSleepRecorder(l *audit.Log) *sleepRecorder {
	r := &sleepRecorder{slept: make(chan time.Duration, 16), wake: make(chan struct{})}
	audit.SetSleep(l, func(d time.Duration) {
		r.calls.Add(1)
		select {
		case r.slept <- d:
		default:
		}
		<-r.wake
	})
	return r
}

// closeThroughGate closes l at cleanup while letting every commit its gated store is
// asked for through, so that a test that failed half-way does not leave Close waiting.
func closeThroughGate(t *testing.T, l *audit.Log, calls <-chan []audit.Event, results chan<- error) {
	t.Cleanup(func() {
		stop := make(chan struct{})
		defer close(stop)
		go func() {
			for {
				select {
				case <-calls:
				case results <- nil:
				case <-stop:
					return
				}
			}
		}()
		if err := l.Close(context.Background()); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
}

// busyCommit appends a and, while the store holds a's commit, b and c, then lets a's
// commit through: the writer finds two events queued behind a commit that took at least
// a millisecond.
func busyCommit(t *testing.T, l *audit.Log, calls <-chan []audit.Event, results chan<- error) (b, c <-chan result) {
	t.Helper()
	ctx := t.Context()
	a := appendAsync(ctx, l, event(audit.KindCallIntent, "a"))
	if got := <-calls; len(got) != 1 {
		t.Fatalf("first commit holds %d events, want a alone", len(got))
	}
	b = appendAsync(ctx, l, event(audit.KindCallIntent, "b"))
	c = appendAsync(ctx, l, event(audit.KindCallIntent, "c"))
	waitFor(t, "b and c queued", func() bool { return audit.QueueLen(l) == 2 })
	time.Sleep(time.Millisecond) // the commit's least duration, not a wait for an event
	results <- nil
	if r := <-a; r.err != nil {
		t.Fatalf("Append(a): %v", r.err)
	}
	return b, c
}

// TestGroupWaitGathersEventsBehindABusyCommit: with events queued behind a commit, the
// writer waits (half that commit's time, at most GroupWait) before the next one, and
// what is appended meanwhile shares it.
func TestGroupWaitGathersEventsBehindABusyCommit(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		groupWait   time.Duration
		least, most time.Duration
	}{
		{100 * time.Microsecond, 100 * time.Microsecond, 100 * time.Microsecond}, // half the commit is more: the bound
		{audit.MaxGroupWait, 500 * time.Microsecond, audit.MaxGroupWait},         // half of at least 1ms
	} {
		t.Run(tc.groupWait.String(), func(t *testing.T) {
			t.Parallel()
			gatherBehindBusyCommit(t, tc.groupWait, tc.least, tc.most)
		})
	}
}

func gatherBehindBusyCommit(t *testing.T, groupWait, least, most time.Duration) {
	gs, calls, results := gatedStore(tempDB(t))
	l := newLog(t, gs, audit.LogOptions{GroupWait: groupWait})
	closeThroughGate(t, l, calls, results)
	sleep := newSleepRecorder(l)
	defer close(sleep.wake)
	b, c := busyCommit(t, l, calls, results)

	d := <-sleep.slept
	if d < least || d > most {
		t.Errorf("the writer waited %s, want %s to %s", d, least, most)
	}
	dd := appendAsync(t.Context(), l, event(audit.KindCallIntent, "d"))
	waitFor(t, "d queued", func() bool { return audit.QueueLen(l) == 1 })
	sleep.wake <- struct{}{}
	got := <-calls
	var ids []string
	for _, e := range got {
		ids = append(ids, e.RequestID)
	}
	slices.Sort(ids) // b and c were appended concurrently
	if diff := cmp.Diff([]string{"b", "c", "d"}, ids); diff != "" {
		t.Fatalf("the commit after the wait (-want +got):\n%s", diff)
	}
	results <- nil
	for _, ch := range []<-chan result{b, c, dd} {
		if r := <-ch; r.err != nil {
			t.Errorf("Append(%s): %v", r.event.RequestID, r.err)
		}
	}
	if n := sleep.calls.Load(); n != 1 {
		t.Errorf("the writer waited %d times, want once: nothing was queued behind the second commit", n)
	}
}

// TestGroupWaitOff: without GroupWait the same events do not wait; the writer commits
// what is queued at once.
func TestGroupWaitOff(t *testing.T) {
	t.Parallel()
	gs, calls, results := gatedStore(tempDB(t))
	l := newLog(t, gs, audit.LogOptions{})
	closeThroughGate(t, l, calls, results)
	sleep := newSleepRecorder(l)
	defer close(sleep.wake)
	b, c := busyCommit(t, l, calls, results)
	if got := <-calls; len(got) != 2 {
		t.Fatalf("the second commit holds %d events, want b and c", len(got))
	}
	results <- nil
	<-b
	<-c
	if n := sleep.calls.Load(); n != 0 {
		t.Errorf("the writer waited %d times with GroupWait off", n)
	}
}

// TestGroupWaitNotWhenCallsComeOneByOne: appends that arrive one at a time, each alone
// in its commit, never wait, however slow the commit: a call at a low rate does not pay
// for group commit.
func TestGroupWaitNotWhenCallsComeOneByOne(t *testing.T) {
	t.Parallel()
	db := tempDB(t)
	slow := &fakeStore{
		appendEvents: func(ctx context.Context, events []audit.Event) error {
			time.Sleep(time.Millisecond) // a commit that takes a while: a wait would be taken
			return db.AppendEvents(ctx, events)
		},
		lastEvent: db.LastEvent,
	}
	l := newLog(t, slow, audit.LogOptions{GroupWait: audit.MaxGroupWait})
	sleep := newSleepRecorder(l)
	close(sleep.wake)
	for i := range 20 {
		e := event(audit.KindCallIntent, fmt.Sprint(i))
		if err := l.Append(t.Context(), &e); err != nil {
			t.Fatal(err)
		}
	}
	if n := sleep.calls.Load(); n != 0 {
		t.Errorf("the writer waited %d times for appends that came one by one", n)
	}
}

// TestAppendReturnsItsOwnEvent mixes waiting, queued-only and abandoned appends from many
// goroutines: the writer's per-event state is reused, and every caller that waited for its
// commit must get back its own event, at the position the store holds it.
func TestAppendReturnsItsOwnEvent(t *testing.T) {
	t.Parallel()
	db := tempDB(t)
	l := newLog(t, db, audit.LogOptions{MaxBatch: 7})
	const workers, each = 8, 150
	type got struct {
		id  string
		seq int64
	}
	var mu sync.Mutex
	var waited []got
	var asyncDone atomic.Int64
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				id := fmt.Sprintf("w%d-%d", w, i)
				e := event(audit.KindCallRefused, id)
				switch i % 3 {
				case 0: // waits for its commit
					if err := l.Append(t.Context(), &e); err != nil {
						t.Errorf("Append(%s): %v", id, err)
						return
					}
					if e.RequestID != id || e.Seq == 0 {
						t.Errorf("Append(%s) returned the event of %s at %d", id, e.RequestID, e.Seq)
						return
					}
					mu.Lock()
					waited = append(waited, got{id, e.Seq})
					mu.Unlock()
				case 1: // queued only
					if err := l.AppendAsync(t.Context(), &e, func(err error) {
						if err == nil {
							asyncDone.Add(1)
						}
					}); err != nil {
						t.Errorf("AppendAsync(%s): %v", id, err)
						return
					}
				case 2: // gives up at once, often before its commit
					ctx, cancel := context.WithCancel(t.Context())
					go cancel()
					_ = l.Append(ctx, &e)
				}
			}
		})
	}
	returned := make(chan struct{})
	go func() { wg.Wait(); close(returned) }()
	select {
	case <-returned:
	case <-time.After(time.Minute): // a deadlock guard, not a measurement
		t.Fatal("appends still blocked after a minute: the writer or a caller is stuck")
	}
	waitFor(t, "every queued-only event is committed", func() bool { return asyncDone.Load() == workers*each/3 })
	for _, g := range waited {
		page, err := db.ScanEvents(t.Context(), g.seq-1, 1)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) != 1 || page[0].RequestID != g.id {
			t.Fatalf("Append(%s) returned position %d, which holds %+v", g.id, g.seq, page)
		}
	}
	if len(waited) != workers*each/3 {
		t.Fatalf("%d waiting appends succeeded, want %d", len(waited), workers*each/3)
	}
	if r := verify(t, db); r.Broken != nil {
		t.Fatalf("Verify: broken at %+v", r.Broken)
	}
}
