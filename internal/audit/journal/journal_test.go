package journal

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/chaperone-dev/chaperone/internal/audit"
	"github.com/chaperone-dev/chaperone/internal/store/sqlite"
)

var t0 = time.Date(2026, 3, 1, 9, 0, 7, 123456000, time.UTC)

func openDB(tb testing.TB, path string) *sqlite.DB {
	tb.Helper()
	db, err := sqlite.Open(context.Background(), path)
	if err != nil {
		tb.Fatalf("sqlite.Open: %v", err)
	}
	tb.Cleanup(func() { db.Close() })
	return db
}

// flaky is an index store whose commits fail while fail is set.
type flaky struct {
	audit.SealingStore
	fail    atomic.Bool
	commits atomic.Int64
	block   chan struct{} // if not nil, commits wait for it to close
	entered chan struct{} // if not nil, each commit sends on it (without waiting) first
}

func (f *flaky) AppendSealed(ctx context.Context, events []audit.Event, seal func(int64, string) ([]string, error)) error {
	if f.entered != nil {
		select {
		case f.entered <- struct{}{}:
		default:
		}
	}
	if f.block != nil {
		select {
		case <-f.block:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if f.fail.Load() {
		return errors.New("index unavailable (test)")
	}
	f.commits.Add(1)
	return f.SealingStore.AppendSealed(ctx, events, seal)
}

func openJournal(tb testing.TB, dir string, index audit.SealingStore, opts Options) *Journal {
	tb.Helper()
	j, err := Open(context.Background(), dir, index, opts)
	if err != nil {
		tb.Fatalf("Open: %v", err)
	}
	return j
}

func newLog(tb testing.TB, store audit.Store) *audit.Log {
	tb.Helper()
	l, err := audit.NewLog(context.Background(), store, audit.LogOptions{})
	if err != nil {
		tb.Fatalf("NewLog: %v", err)
	}
	return l
}

func appendN(tb testing.TB, l *audit.Log, from, n int) {
	tb.Helper()
	for i := from; i < from+n; i++ {
		e := audit.Event{Time: t0, Kind: audit.KindCallIntent, RequestID: fmt.Sprintf("r%d", i), Agent: "a", Tool: "t", Decision: "allow"}
		if err := l.Append(context.Background(), &e); err != nil {
			tb.Fatalf("Append %d: %v", i, err)
		}
	}
}

func verified(tb testing.TB, db *sqlite.DB, want int64) {
	tb.Helper()
	rep, err := audit.Verify(context.Background(), db)
	if err != nil {
		tb.Fatalf("Verify: %v", err)
	}
	if rep.Broken != nil || rep.Events != want {
		tb.Fatalf("Verify = %d events, broken %+v; want %d intact", rep.Events, rep.Broken, want)
	}
}

func segments(tb testing.TB, dir string) []string {
	tb.Helper()
	paths, err := segmentPaths(dir)
	if err != nil {
		tb.Fatal(err)
	}
	return paths
}

// abandon stops j as a crash would: the indexer stops, the lock is released, nothing is
// indexed or removed.
func abandon(j *Journal) {
	j.mu.Lock()
	j.closed = true
	j.mu.Unlock()
	close(j.stop)
	<-j.done
	if j.seg != nil {
		j.seg.f.Close()
	}
	j.lock.Close()
}

func TestAppendIndexClose(t *testing.T) {
	dir := t.TempDir()
	db := openDB(t, filepath.Join(dir, "chaperone.db"))
	jdir := filepath.Join(dir, "journal")
	j := openJournal(t, jdir, db, Options{})
	l := newLog(t, j)

	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() { appendN(t, l, w*100, 50) })
	}
	wg.Wait()
	if err := j.Barrier(context.Background()); err != nil {
		t.Fatalf("Barrier: %v", err)
	}
	verified(t, db, 400) // every acknowledged event is readable after the barrier
	if seq, _ := j.Head(); seq != 400 {
		t.Fatalf("Head = %d, want 400", seq)
	}
	if got := len(segments(t, jdir)); got != 1 {
		t.Fatalf("%d segments, want 1", got)
	}
	if err := l.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := j.Close(context.Background()); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if got := segments(t, jdir); len(got) != 0 {
		t.Fatalf("segments after a clean close: %v", got)
	}
	// The log continues from the store after a reopen.
	j = openJournal(t, jdir, db, Options{})
	l = newLog(t, j)
	appendN(t, l, 1000, 3)
	l.Close(context.Background())
	if err := j.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	verified(t, db, 403)
}

// TestIndexerTakesAppendsItDidNotWake checks that events appended while the indexer
// already has work pending (such appends do not wake it) are indexed by its next commit,
// with no Barrier asking for them.
func TestIndexerTakesAppendsItDidNotWake(t *testing.T) {
	dir := t.TempDir()
	db := openDB(t, filepath.Join(dir, "chaperone.db"))
	index := &flaky{SealingStore: db, block: make(chan struct{}), entered: make(chan struct{}, 1)}
	j := openJournal(t, filepath.Join(dir, "journal"), index, Options{IndexInterval: 10 * time.Millisecond})
	defer j.Close(context.Background())
	l := newLog(t, j)
	defer l.Close(context.Background())

	appendN(t, l, 0, 1) // wakes the idle indexer, whose first commit then blocks
	select {
	case <-index.entered:
	case <-time.After(5 * time.Second):
		t.Fatal("the indexer did not start a commit after the first append")
	}
	appendN(t, l, 1, 2) // pending is not empty: these do not wake it
	close(index.block)
	deadline := time.Now().Add(5 * time.Second)
	for j.Pending() > 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if n := j.Pending(); n != 0 {
		t.Fatalf("%d events still wait for the store without a Barrier, want 0", n)
	}
	verified(t, db, 3)
}

// TestIndexerKeepsUpWithABacklog checks that the index interval does not cap the events
// per second that reach the store: with a full batch pending the indexer commits at once,
// and only a remainder smaller than a batch waits out the interval (here, an hour).
func TestIndexerKeepsUpWithABacklog(t *testing.T) {
	dir := t.TempDir()
	db := openDB(t, filepath.Join(dir, "chaperone.db"))
	j := openJournal(t, filepath.Join(dir, "journal"), db, Options{IndexInterval: time.Hour, IndexBatch: 4})
	defer j.Close(context.Background())
	l := newLog(t, j)
	defer l.Close(context.Background())

	appendN(t, l, 0, 22)
	deadline := time.Now().Add(10 * time.Second)
	for j.Pending() >= 4 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if n := j.Pending(); n >= 4 {
		t.Fatalf("%d events wait for the store, a full batch of 4 among them, after 10s with an index interval of an hour", n)
	}
}

func TestCrashRecovery(t *testing.T) {
	dir := t.TempDir()
	db := openDB(t, filepath.Join(dir, "chaperone.db"))
	jdir := filepath.Join(dir, "journal")
	index := &flaky{SealingStore: db}
	j := openJournal(t, jdir, index, Options{})
	l := newLog(t, j)
	appendN(t, l, 0, 10)
	if err := j.Barrier(context.Background()); err != nil {
		t.Fatal(err)
	}
	index.fail.Store(true) // the store stops taking events: the journal still does
	appendN(t, l, 10, 25)
	if got := j.Pending(); got != 25 {
		t.Fatalf("Pending = %d, want 25", got)
	}
	verified(t, db, 10)
	abandon(j)

	// A second process cannot take the journal while the first holds it; after the
	// crash it can, and it copies the 25 events before anything else.
	j2 := openJournal(t, jdir, db, Options{})
	verified(t, db, 35)
	if got := segments(t, jdir); len(got) != 0 {
		t.Fatalf("segments left after recovery: %v", got)
	}
	l2 := newLog(t, j2)
	appendN(t, l2, 100, 5)
	l2.Close(context.Background())
	if err := j2.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	verified(t, db, 40)
}

func TestSecondProcessRefused(t *testing.T) {
	dir := t.TempDir()
	db := openDB(t, filepath.Join(dir, "chaperone.db"))
	j := openJournal(t, dir, db, Options{})
	defer j.Close(context.Background())
	_, err := Open(context.Background(), dir, db, Options{})
	if err == nil || !strings.Contains(err.Error(), "in use by another process") {
		t.Fatalf("second Open: %v, want in use", err)
	}
}

// crashed builds a journal directory holding n events the store lacks, as a crash
// leaves it, and returns the segment's path.
func crashed(t *testing.T, db *sqlite.DB, dir string, n int) string {
	t.Helper()
	index := &flaky{SealingStore: db}
	index.fail.Store(true)
	j := openJournal(t, dir, index, Options{})
	l := newLog(t, j)
	appendN(t, l, 0, n)
	abandon(j)
	segs := segments(t, dir)
	if len(segs) != 1 {
		t.Fatalf("segments: %v", segs)
	}
	return segs[0]
}

func TestRecoveryTornTail(t *testing.T) {
	for _, tc := range []struct {
		name string
		tear func(data []byte, end int) // end: where the frames end
		want int64
	}{
		{"header cut", func(d []byte, end int) { d[end] = 0x10 }, 3},
		{"record cut short", func(d []byte, end int) { copy(d[end:], appendFrame(nil, `{"partial":`)[:12]) }, 3},
		{"checksum", func(d []byte, end int) {
			// The last frame's record changes after its checksum was written.
			d[end-3] ^= 0xff
		}, 2},
		{"oversized length", func(d []byte, end int) { copy(d[end:], []byte{0xff, 0xff, 0xff, 0x7f}) }, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			db := openDB(t, filepath.Join(dir, "chaperone.db"))
			jdir := filepath.Join(dir, "journal")
			seg := crashed(t, db, jdir, 3)
			data, err := os.ReadFile(seg)
			if err != nil {
				t.Fatal(err)
			}
			end := frameEnd(t, data)
			tc.tear(data, end)
			if err := os.WriteFile(seg, data, 0o600); err != nil {
				t.Fatal(err)
			}
			j := openJournal(t, jdir, db, Options{})
			defer j.Close(context.Background())
			verified(t, db, tc.want)
			if seq, _ := j.Head(); seq != tc.want {
				t.Fatalf("Head = %d, want %d", seq, tc.want)
			}
		})
	}
}

// frameEnd returns where the intact frames of data end.
func frameEnd(t *testing.T, data []byte) int {
	off := 0
	for {
		_, n, err := nextFrame(data[off:])
		if errors.Is(err, errEnd) {
			return off
		}
		if err != nil {
			t.Fatalf("frame at %d: %v", off, err)
		}
		off += n
	}
}

func TestRecoveryRefusesDamage(t *testing.T) {
	for _, tc := range []struct {
		name, want string
		damage     func(t *testing.T, db *sqlite.DB, dir, seg string)
	}{
		{"record edited, checksum redone", "hash does not match", func(t *testing.T, _ *sqlite.DB, _, seg string) {
			rewrite(t, seg, 1, func(rec string) string { return strings.Replace(rec, `"agent":"a"`, `"agent":"b"`, 1) })
		}},
		{"record not canonical", "record unreadable", func(t *testing.T, _ *sqlite.DB, _, seg string) {
			rewrite(t, seg, 0, func(rec string) string { return strings.Replace(rec, `{"seq"`, `{ "seq"`, 1) })
		}},
		{"event removed from the middle", "does not follow", func(t *testing.T, _ *sqlite.DB, _, seg string) {
			data, _ := os.ReadFile(seg)
			_, n0, _ := nextFrame(data)
			_, n1, _ := nextFrame(data[n0:])
			out := append(append([]byte{}, data[:n0]...), data[n0+n1:]...)
			os.WriteFile(seg, out, 0o600)
		}},
		{"a later segment after a torn one", "after segment", func(t *testing.T, _ *sqlite.DB, dir, seg string) {
			data, _ := os.ReadFile(seg)
			end := frameEnd(t, data)
			_, n0, _ := nextFrame(data)
			later := append([]byte{}, data[n0:end]...)
			data[n0] ^= 0xff // tear the first segment after its first event
			os.WriteFile(seg, data, 0o600)
			os.WriteFile(filepath.Join(dir, fmt.Sprintf("%020d%s", 2, segmentSuffix)), later, 0o600)
		}},
		{"another log's journal", "not the same log", func(t *testing.T, db *sqlite.DB, _, _ string) {
			// The store gets an event of its own: the journal's first one no longer follows.
			other := openDB(t, filepath.Join(t.TempDir(), "other.db"))
			l := newLog(t, other)
			appendN(t, l, 500, 1)
			l.Close(context.Background())
			e, _, _ := other.LastEvent(context.Background())
			if err := db.AppendEvents(context.Background(), []audit.Event{e}); err != nil {
				t.Fatal(err)
			}
		}},
		{"another log's journal, the store ahead", "not the same log", func(t *testing.T, db *sqlite.DB, _, _ string) {
			// The store holds three events of its own: the journal's third is not its head.
			other := openDB(t, filepath.Join(t.TempDir(), "other.db"))
			l := newLog(t, other)
			appendN(t, l, 700, 3)
			l.Close(context.Background())
			evs, err := other.ScanEvents(context.Background(), 0, 10)
			if err != nil {
				t.Fatal(err)
			}
			if err := db.AppendEvents(context.Background(), evs); err != nil {
				t.Fatal(err)
			}
		}},
		{"segment name", "not a segment name", func(t *testing.T, _ *sqlite.DB, dir, _ string) {
			os.WriteFile(filepath.Join(dir, "x"+segmentSuffix), nil, 0o600)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			db := openDB(t, filepath.Join(dir, "chaperone.db"))
			jdir := filepath.Join(dir, "journal")
			seg := crashed(t, db, jdir, 3)
			tc.damage(t, db, jdir, seg)
			j, err := Open(context.Background(), jdir, db, Options{})
			if err == nil {
				j.Close(context.Background())
				t.Fatalf("Open succeeded over a damaged journal")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Open: %v, want %q", err, tc.want)
			}
			if _, err := os.Stat(seg); tc.name != "a later segment after a torn one" && err != nil {
				t.Fatalf("the damaged journal must be kept for inspection: %v", err)
			}
		})
	}
}

// rewrite replaces the record of frame i in seg, with a valid checksum.
func rewrite(t *testing.T, seg string, i int, edit func(string) string) {
	t.Helper()
	data, err := os.ReadFile(seg)
	if err != nil {
		t.Fatal(err)
	}
	var out []byte
	off := 0
	for k := 0; ; k++ {
		rec, n, err := nextFrame(data[off:])
		if err != nil {
			break
		}
		r := string(rec)
		if k == i {
			r = edit(r)
		}
		out = appendFrame(out, r)
		off += n
	}
	if err := os.WriteFile(seg, out, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestRotationAndIndexedSegmentsRemoved(t *testing.T) {
	dir := t.TempDir()
	db := openDB(t, filepath.Join(dir, "chaperone.db"))
	jdir := filepath.Join(dir, "journal")
	j := openJournal(t, jdir, db, Options{SegmentBytes: minSegmentBytes})
	l := newLog(t, j)
	appendN(t, l, 0, 400) // ~250 bytes a record: several 64 KiB segments
	if err := j.Barrier(context.Background()); err != nil {
		t.Fatal(err)
	}
	// The indexer removes a sealed segment once it has indexed it; the one in use stays.
	deadline := time.Now().Add(10 * time.Second)
	for len(segments(t, jdir)) != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("indexed segments not removed: %v", segments(t, jdir))
		}
		appendN(t, l, 1000, 1)
		j.Barrier(context.Background())
	}
	if segs := segments(t, jdir); filepath.Base(segs[0]) == fmt.Sprintf("%020d%s", 1, segmentSuffix) {
		t.Fatalf("no rotation: %v", segs)
	}
	l.Close(context.Background())
	if err := j.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	rep, _ := audit.Verify(context.Background(), db)
	if rep.Broken != nil || rep.Events < 400 {
		t.Fatalf("Verify: %+v", rep)
	}
}

func TestRotationByAge(t *testing.T) {
	dir := t.TempDir()
	db := openDB(t, filepath.Join(dir, "chaperone.db"))
	index := &flaky{SealingStore: db}
	index.fail.Store(true)
	j := openJournal(t, dir, index, Options{SegmentAge: time.Nanosecond})
	l := newLog(t, j)
	appendN(t, l, 0, 3) // one append at a time: each finds the segment too old
	if got := len(segments(t, dir)); got != 3 {
		t.Fatalf("%d segments, want 3", got)
	}
	index.fail.Store(false)
	l.Close(context.Background())
	if err := j.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	verified(t, db, 3)
}

func TestIndexFailureReportedThenRecovered(t *testing.T) {
	dir := t.TempDir()
	db := openDB(t, filepath.Join(dir, "chaperone.db"))
	index := &flaky{SealingStore: db}
	j := openJournal(t, dir, index, Options{})
	defer j.Close(context.Background())
	l := newLog(t, j)
	defer l.Close(context.Background())
	index.fail.Store(true)
	appendN(t, l, 0, 2) // durable in the journal: the calls go on
	err := j.Barrier(context.Background())
	if err == nil || !strings.Contains(err.Error(), "index unavailable") {
		t.Fatalf("Barrier with a failing store: %v, want its error", err)
	}
	if err := j.Err(); err == nil || !strings.Contains(err.Error(), "cannot copy 2 events") {
		t.Fatalf("Err with a failing store = %v, want the events it cannot copy", err)
	}
	index.fail.Store(false)
	deadline := time.Now().Add(20 * time.Second)
	for j.Barrier(context.Background()) != nil {
		if time.Now().After(deadline) {
			t.Fatal("the indexer did not retry")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := j.Err(); err != nil {
		t.Fatalf("Err once the store took the events = %v", err)
	}
	verified(t, db, 2)
}

func TestBackpressure(t *testing.T) {
	dir := t.TempDir()
	db := openDB(t, filepath.Join(dir, "chaperone.db"))
	index := &flaky{SealingStore: db, block: make(chan struct{})}
	j := openJournal(t, dir, index, Options{MaxPending: 4})
	one := func(ctx context.Context, seq int64, hash string) error {
		e := audit.Event{Time: t0, Kind: "test", Seq: seq, PrevHash: hash}
		rec, _ := e.Seal()
		return j.AppendSealed(ctx, []audit.Event{e}, func(int64, string) ([]string, error) { return []string{rec}, nil })
	}
	hash := ""
	for i := range int64(4) {
		if err := one(context.Background(), i+1, hash); err != nil {
			t.Fatalf("append %d: %v", i+1, err)
		}
		hash = j.hash
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := one(ctx, 5, hash); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("append beyond MaxPending: %v, want it to wait until its deadline", err)
	}
	// A readiness probe answers while an append waits for room.
	wctx, wcancel := context.WithCancel(context.Background())
	waited := make(chan error, 1)
	go func() { waited <- one(wctx, 5, hash) }()
	for j.appendMu.TryLock() { // until the append holds it
		j.appendMu.Unlock()
		time.Sleep(time.Millisecond)
	}
	probed := make(chan error, 1)
	go func() { probed <- j.Err() }()
	select {
	case err := <-probed:
		if err != nil {
			t.Errorf("Err while an append waits = %v, want nil", err)
		}
	case <-time.After(2 * time.Second):
		t.Error("Err waited for the append that waits for room")
	}
	wcancel()
	if err := <-waited; !errors.Is(err, context.Canceled) {
		t.Fatalf("append cancelled while it waits for room: %v", err)
	}
	close(index.block)
	if err := one(context.Background(), 5, hash); err != nil {
		t.Fatalf("append once the index caught up: %v", err)
	}
	if err := j.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	verified(t, db, 5)
}

func TestAppendRefusesBadBatches(t *testing.T) {
	dir := t.TempDir()
	db := openDB(t, filepath.Join(dir, "chaperone.db"))
	j := openJournal(t, dir, db, Options{})
	defer j.Close(context.Background())
	e := audit.Event{Time: t0, Kind: "test", Seq: 2}
	rec, _ := e.Seal()
	err := j.AppendSealed(context.Background(), []audit.Event{e}, func(int64, string) ([]string, error) { return []string{rec}, nil })
	if err == nil || !strings.Contains(err.Error(), "does not continue") {
		t.Fatalf("gap: %v", err)
	}
	err = j.AppendSealed(context.Background(), []audit.Event{{Seq: 1}}, func(int64, string) ([]string, error) { return nil, nil })
	if err == nil || !strings.Contains(err.Error(), "sealed 0 records for 1") {
		t.Fatalf("record count: %v", err)
	}
	if seq, _ := j.Head(); seq != 0 {
		t.Fatalf("Head = %d after refused batches", seq)
	}
}

func TestWriteFailureFailsClosed(t *testing.T) {
	dir := t.TempDir()
	db := openDB(t, filepath.Join(dir, "chaperone.db"))
	j := openJournal(t, filepath.Join(dir, "journal"), db, Options{})
	l := newLog(t, j)
	appendN(t, l, 0, 1)
	j.seg.f.Close() // the next write fails as a failing disk's would
	e := audit.Event{Time: t0, Kind: "test"}
	if err := l.Append(context.Background(), &e); err == nil {
		t.Fatal("append after a write failure succeeded")
	}
	e = audit.Event{Time: t0, Kind: "test"}
	if err := l.Append(context.Background(), &e); err == nil || !strings.Contains(err.Error(), "earlier failure") {
		t.Fatalf("second append: %v, want refused after the earlier failure", err)
	}
	if err := j.Err(); err == nil || !strings.Contains(err.Error(), "a write failed") {
		t.Fatalf("Err after a write failure = %v", err)
	}
	l.Close(context.Background())
	j.seg = nil
	if err := j.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	verified(t, db, 1)
}

func TestOpenOptions(t *testing.T) {
	db := openDB(t, filepath.Join(t.TempDir(), "chaperone.db"))
	for _, tc := range []struct {
		opts Options
		want string
	}{
		{Options{SegmentBytes: 1024}, "at least 65536"},
		{Options{IndexBatch: -1}, "negative option"},
	} {
		if _, err := Open(context.Background(), t.TempDir(), db, tc.opts); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Open(%+v) = %v, want %q", tc.opts, err, tc.want)
		}
	}
	if _, err := Open(context.Background(), t.TempDir(), nil, Options{}); err == nil {
		t.Error("Open with a nil store succeeded")
	}
}

func FuzzNextFrame(f *testing.F) {
	f.Add(appendFrame(nil, `{"seq":1}`))
	f.Add(append(appendFrame(nil, "x"), 0, 0, 0))
	f.Add([]byte{1, 0, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		rec, n, err := nextFrame(b)
		if err != nil {
			if n != 0 || rec != nil {
				t.Fatalf("error %v with n=%d", err, n)
			}
			return
		}
		if n != frameHeader+len(rec) || n > len(b) || len(rec) == 0 {
			t.Fatalf("n=%d for a record of %d bytes in %d", n, len(rec), len(b))
		}
		if again := appendFrame(nil, string(rec)); string(again) != string(b[:n]) {
			t.Fatalf("frame does not re-encode to its bytes")
		}
	})
}

func BenchmarkAppend(b *testing.B) {
	for _, target := range []string{"sqlite", "journal"} {
		b.Run(target, func(b *testing.B) {
			dir := b.TempDir()
			db := openDB(b, filepath.Join(dir, "chaperone.db"))
			var st audit.Store = db
			if target == "journal" {
				j := openJournal(b, filepath.Join(dir, "journal"), db, Options{})
				defer j.Close(context.Background())
				st = j
			}
			l := newLog(b, st)
			defer l.Close(context.Background())
			e := audit.Event{Time: t0, Kind: audit.KindCallIntent, RequestID: "r", Agent: "mail-assistant", Tool: "send_email",
				Decision: "allow", ArgsHash: "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}
			b.ResetTimer()
			for b.Loop() {
				ev := e
				if err := l.Append(context.Background(), &ev); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestKilledProcess: a process appends events, which the journal acknowledges but does
// not index yet, and is killed with SIGKILL. A reader of the database is told that the
// journal holds events it lacks; the next Open copies every acknowledged event.
func TestKilledProcess(t *testing.T) {
	if os.Getenv("JOURNAL_CHILD") != "" {
		childAppend(os.Getenv("JOURNAL_CHILD"))
		return
	}
	dir := t.TempDir()
	dbPath := filepath.Join(dir, "chaperone.db")
	db := openDB(t, dbPath)
	cmd := exec.Command(os.Args[0], "-test.run=^TestKilledProcess$")
	cmd.Env = append(os.Environ(), "JOURNAL_CHILD="+dbPath)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("child: %v", err)
	}
	var acked int64
	if _, err := fmt.Sscanf(line, "acked %d", &acked); err != nil || acked < 1 {
		t.Fatalf("child said %q", line)
	}
	jdir := DirFor(dbPath)
	if held, err := Held(jdir); err != nil || !held {
		t.Fatalf("Held while the child runs = %v, %v", held, err)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()

	if held, err := Held(jdir); err != nil || held {
		t.Fatalf("Held after the kill = %v, %v", held, err)
	}
	if last, err := LastSeq(jdir); err != nil || last != acked {
		t.Fatalf("LastSeq = %d, %v; want the %d acknowledged events", last, err, acked)
	}
	err = WaitIndexed(context.Background(), jdir, db, time.Second)
	if err == nil || !strings.Contains(err.Error(), "stopped before copying them") {
		t.Fatalf("WaitIndexed after the kill: %v", err)
	}
	j := openJournal(t, jdir, db, Options{})
	verified(t, db, acked)
	if err := WaitIndexed(context.Background(), jdir, db, time.Second); err != nil {
		t.Fatalf("WaitIndexed after recovery: %v", err)
	}
	if err := j.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// childAppend is TestKilledProcess's child: it appends events that are not indexed (the
// index interval is an hour), says how many were acknowledged, and waits to be killed.
func childAppend(dbPath string) {
	db, err := sqlite.Open(context.Background(), dbPath)
	if err != nil {
		panic(err)
	}
	j, err := Open(context.Background(), DirFor(dbPath), db, Options{IndexInterval: time.Hour})
	if err != nil {
		panic(err)
	}
	l, err := audit.NewLog(context.Background(), j, audit.LogOptions{})
	if err != nil {
		panic(err)
	}
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 25 {
				e := audit.Event{Time: t0, Kind: audit.KindCallIntent, RequestID: fmt.Sprintf("c%d-%d", w, i), Agent: "a", Tool: "t", Decision: "allow"}
				if err := l.Append(context.Background(), &e); err != nil {
					panic(err)
				}
			}
		})
	}
	wg.Wait()
	seq, _ := j.Head()
	fmt.Printf("acked %d\n", seq)
	time.Sleep(time.Minute)
}
