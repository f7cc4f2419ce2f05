package postgres_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"

	"github.com/chaperone-dev/chaperone/internal/audit"
	"github.com/chaperone-dev/chaperone/internal/store/pgtest"
	"github.com/chaperone-dev/chaperone/internal/store/postgres"
)

// pgOpen opens a store on dsn, closed when the test ends.
func pgOpen(tb testing.TB, dsn string) *postgres.DB {
	tb.Helper()
	db, err := postgres.Open(tb.Context(), dsn, postgres.Options{})
	if err != nil {
		tb.Fatalf("postgres.Open: %v", err)
	}
	tb.Cleanup(func() { db.Close() })
	return db
}

// pgReplicas opens n stores on one fresh schema: n gateway replicas, each with a pool
// of its own.
func pgReplicas(tb testing.TB, n int) []*postgres.DB {
	tb.Helper()
	dsn := pgtest.DSN(tb)
	dbs := make([]*postgres.DB, n)
	for i := range dbs {
		dbs[i] = pgOpen(tb, dsn)
	}
	return dbs
}

var pgT0 = time.Date(2026, 3, 1, 9, 0, 7, 123456000, time.UTC)

// pgChain returns n events continuing the chain after head (zero for an empty log),
// numbered and hashed as a Log would.
func pgChain(head audit.Event, n int) []audit.Event {
	events := make([]audit.Event, n)
	prev := head
	for i := range events {
		e := audit.Event{
			Seq:       prev.Seq + 1,
			Time:      pgT0.Add(time.Duration(prev.Seq) * time.Second),
			Kind:      audit.KindCallIntent,
			RequestID: fmt.Sprintf("req-%d", prev.Seq+1),
			Agent:     "mail-assistant",
			Tool:      "send_email",
			PrevHash:  prev.Hash,
		}
		e.Hash = e.ComputeHash()
		events[i] = e
		prev = e
	}
	return events
}

// pgNumber numbers and hashes events to continue (seq, hash), as a Log's chain function
// does.
func pgNumber(events []audit.Event, seq int64, hash string) error {
	for i := range events {
		events[i].Seq, events[i].PrevHash = seq+1+int64(i), hash
		events[i].Hash = events[i].ComputeHash()
		hash = events[i].Hash
	}
	return nil
}

func pgVerify(t *testing.T, db *postgres.DB, want int64) {
	t.Helper()
	rep, err := audit.Verify(t.Context(), db)
	if err != nil || rep.Broken != nil || rep.Events != want {
		t.Fatalf("Verify = %d events, broken %+v, %v; want %d intact", rep.Events, rep.Broken, err, want)
	}
}

// A \u0000 escape in a record (a NUL an agent put in its prompt or arguments) is
// refused by PostgreSQL's JSON functions: the store must never run them over records,
// or such an event would fail its whole batch, and every append after it.
func TestEventsWithNUL(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db := pgOpen(t, pgtest.DSN(t))
	head := pgChain(audit.Event{}, 1)
	odd := audit.Event{
		Seq: 2, Time: pgT0, Kind: audit.KindCallIntent, RequestID: "req-\x00-2",
		Prompt: "ignore\x00previous", Message: "nul \x00 byte",
		Arguments: json.RawMessage(`{"a":"\u0000"}`), Captured: audit.CapturedArguments,
		PrevHash: head[0].Hash,
	}
	odd.Hash = odd.ComputeHash()
	batch := append([]audit.Event{odd}, pgChain(odd, 1)...)
	if err := db.AppendEvents(ctx, append(head, batch...)); err != nil {
		t.Fatalf("AppendEvents with NULs: %v", err)
	}
	// The chain continues from a head holding \u0000, through both paths.
	last := pgChain(audit.Event{}, 1) // renumbered by the chain function
	last[0].Message = "after \x00"
	if err := db.AppendChained(ctx, last, func(seq int64, hash string) error { return pgNumber(last, seq, hash) }); err != nil {
		t.Fatalf("AppendChained after NULs: %v", err)
	}
	if err := db.AppendEvents(ctx, pgChain(last[0], 1)); err != nil {
		t.Fatalf("AppendEvents after a head with a NUL: %v", err)
	}
	got, err := db.ScanEvents(ctx, 1, 1)
	if err != nil || len(got) != 1 {
		t.Fatalf("ScanEvents(1, 1) = %v, %v", got, err)
	}
	if diff := cmp.Diff(odd, got[0]); diff != "" {
		t.Errorf("event with NULs as stored (-want +got):\n%s", diff)
	}
	n, err := db.PruneEvents(ctx, 5, []string{audit.KindCallIntent}, func(e *audit.Event) bool { return e.Seq == 2 })
	if err != nil || n != 1 {
		t.Fatalf("PruneEvents of the event with NULs = %d, %v; want 1", n, err)
	}
	pgCheckPruned(t, db, 5, 2)
}

// pgCheckPruned checks that a log of n events has only the event at pruned as a
// tombstone.
func pgCheckPruned(t *testing.T, db *postgres.DB, n, pruned int64) {
	t.Helper()
	events, err := db.ScanEvents(t.Context(), 0, 100)
	if err != nil || int64(len(events)) != n {
		t.Fatalf("ScanEvents = %d events, %v; want %d", len(events), err, n)
	}
	for _, e := range events {
		if e.Pruned != (e.Seq == pruned) {
			t.Errorf("event %d: pruned %v, want %v", e.Seq, e.Pruned, e.Seq == pruned)
		}
	}
}

// The index columns follow the record: kind, request_id (NULL when none) and pruned.
func TestEventsIndexColumns(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db := pgOpen(t, pgtest.DSN(t))
	events := pgChain(audit.Event{}, 3)
	events[1].Kind, events[1].RequestID = audit.KindToolPinned, ""
	events[1].Hash = events[1].ComputeHash()
	events[2].PrevHash = events[1].Hash
	events[2].Hash = events[2].ComputeHash()
	if err := db.AppendEvents(ctx, events); err != nil {
		t.Fatal(err)
	}
	n, err := db.PruneEvents(ctx, 3, nil, func(e *audit.Event) bool { return e.Seq == 3 })
	if err != nil || n != 1 {
		t.Fatalf("PruneEvents = %d, %v; want 1", n, err)
	}
	// A second run reads no tombstone again.
	n, err = db.PruneEvents(ctx, 3, nil, func(e *audit.Event) bool {
		if e.Pruned {
			t.Errorf("PruneEvents handed tombstone %d to expired", e.Seq)
		}
		return false
	})
	if err != nil || n != 0 {
		t.Fatalf("PruneEvents again = %d, %v; want 0", n, err)
	}
	type row struct {
		Seq       int64
		Kind      string
		RequestID *string
		Pruned    bool
	}
	rows, err := db.Pool().Query(ctx, `SELECT seq, kind, request_id, pruned FROM audit_events ORDER BY seq`)
	if err != nil {
		t.Fatal(err)
	}
	got, err := pgx.CollectRows(rows, pgx.RowToStructByPos[row])
	if err != nil {
		t.Fatal(err)
	}
	req := func(s string) *string { return &s }
	want := []row{
		{1, audit.KindCallIntent, req("req-1"), false},
		{2, audit.KindToolPinned, nil, false},
		{3, audit.KindCallIntent, req("req-3"), true},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("index columns (-want +got):\n%s", diff)
	}
	// Pruning by kind reads only those kinds.
	var read []int64
	if _, err := db.PruneEvents(ctx, 3, []string{audit.KindToolPinned}, func(e *audit.Event) bool {
		read = append(read, e.Seq)
		return false
	}); err != nil {
		t.Fatal(err)
	}
	if !cmp.Equal(read, []int64{2}) {
		t.Errorf("PruneEvents(kind tool.pinned) read events %v, want [2]", read)
	}
}

// A record changed behind the store's back is reported, and a head that does not end
// with its hash stops appends instead of being continued from a guess.
func TestEventsCorruptRows(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		update string
		seq    int64
		want   string
	}{
		{"not an event", `UPDATE audit_events SET event = '[1, 2]' WHERE seq = 3`, 3, "decode record"},
		{"whitespace", `UPDATE audit_events SET event = event || ' ' WHERE seq = 3`, 3, "not in canonical form"},
		{"moved", `UPDATE audit_events SET event = (SELECT event FROM audit_events WHERE seq = 4) WHERE seq = 3`, 3, "row holds the record of event 4"},
		{"head not hashed", `UPDATE audit_events SET event = '{"seq":5}' WHERE seq = 5`, 5, "not in canonical form"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			db := pgOpen(t, pgtest.DSN(t))
			events := pgChain(audit.Event{}, 5)
			if err := db.AppendEvents(ctx, events); err != nil {
				t.Fatal(err)
			}
			if _, err := db.Pool().Exec(ctx, tt.update); err != nil {
				t.Fatal(err)
			}
			_, err := db.ScanEvents(ctx, 0, 10)
			ce, ok := errors.AsType[*audit.CorruptError](err)
			if !ok || ce.Seq != tt.seq || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("ScanEvents = %v, want a CorruptError for event %d saying %q", err, tt.seq, tt.want)
			}
			err = db.AppendEvents(ctx, pgChain(events[4], 1))
			if tt.seq == 5 {
				if ce, ok := errors.AsType[*audit.CorruptError](err); !ok || ce.Seq != 5 {
					t.Errorf("AppendEvents after a corrupt head = %v, want a CorruptError for event 5", err)
				}
			} else if err != nil {
				t.Errorf("AppendEvents after a corrupt event 3 = %v, want nil", err)
			}
		})
	}
}

// Several replicas, each with many goroutines, append through both paths at once: one
// chain, no fork, no gap, every batch in one piece.
func TestEventsAppendAcrossReplicas(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	dbs := pgReplicas(t, 3)
	const (
		perReplica = 6
		batches    = 5
		perBatch   = 3
	)
	var wg sync.WaitGroup
	errs := make(chan error, len(dbs)*perReplica*batches)
	for r, db := range dbs {
		for g := range perReplica {
			wg.Go(func() {
				for range batches {
					b := make([]audit.Event, perBatch)
					for i := range b {
						b[i] = audit.Event{Time: pgT0, Kind: audit.KindToolPinned, Detail: fmt.Sprintf("replica %d goroutine %d", r, g)}
					}
					if g%2 == 0 {
						errs <- db.AppendChained(ctx, b, func(seq int64, hash string) error { return pgNumber(b, seq, hash) })
						continue
					}
					// The other path: read the head, then append; a writer that lost
					// the race is refused, and tries again.
					for {
						last, _, err := db.LastEvent(ctx)
						if err != nil {
							errs <- err
							break
						}
						pgNumber(b, last.Seq, last.Hash)
						err = db.AppendEvents(ctx, b)
						if err == nil || !strings.Contains(err.Error(), "does not continue the stored chain") {
							errs <- err
							break
						}
					}
				}
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("append: %v", err)
		}
	}
	pgVerify(t, dbs[0], int64(len(dbs)*perReplica*batches*perBatch))
	all, err := dbs[1].ScanEvents(ctx, 0, postgres.MaxPage)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < len(all); i += perBatch {
		for _, e := range all[i : i+perBatch] {
			if e.Detail != all[i].Detail {
				t.Fatalf("events %d to %d are not one batch: %q then %q", all[i].Seq, all[i].Seq+perBatch-1, all[i].Detail, e.Detail)
			}
		}
	}
}

// The store's transactions run READ COMMITTED whatever the connection string or the
// server's default asks: under SERIALIZABLE, a head read in the transaction that waited
// for the chain lock would not see the append it waited for.
func TestEventsAppendUnderSerializableDefault(t *testing.T) {
	t.Parallel()
	u, err := url.Parse(pgtest.DSN(t))
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("default_transaction_isolation", "serializable")
	u.RawQuery = q.Encode()
	db := pgOpen(t, u.String())
	var level string
	if err := db.Pool().QueryRow(t.Context(), `SHOW default_transaction_isolation`).Scan(&level); err != nil || level != "read committed" {
		t.Fatalf("default_transaction_isolation = %q, %v; want read committed despite the DSN", level, err)
	}
	const writers, each = 8, 5
	var wg sync.WaitGroup
	errs := make([]error, writers)
	for w := range writers {
		wg.Go(func() {
			for range each {
				b := []audit.Event{{Time: pgT0, Kind: audit.KindToolPinned}}
				if err := db.AppendChained(t.Context(), b, func(seq int64, hash string) error { return pgNumber(b, seq, hash) }); err != nil {
					errs[w] = err
					return
				}
			}
		})
	}
	wg.Wait()
	for w, err := range errs {
		if err != nil {
			t.Errorf("writer %d: %v", w, err)
		}
	}
	pgVerify(t, db, writers*each)
}

// A chain function's error leaves the lock free and the store usable, and so does a
// context that ends while the lock is awaited.
func TestEventsAppendReleasesLock(t *testing.T) {
	t.Parallel()
	dsn := pgtest.DSN(t)
	db := pgOpen(t, dsn)
	boom := errors.New("boom")
	b := pgChain(audit.Event{}, 1)
	if err := db.AppendChained(t.Context(), b, func(int64, string) error { return boom }); !errors.Is(err, boom) {
		t.Fatalf("AppendChained with a failing chain = %v, want boom", err)
	}
	// Hold the chain lock from another session while an append waits for it.
	hold, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer hold.Close(context.Background())
	tx, err := hold.Begin(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(t.Context(), `SELECT pg_advisory_xact_lock(hashtextextended($1, 0))`, db.LockKey("audit-chain")); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	if err := db.AppendEvents(ctx, b); err == nil {
		t.Fatal("AppendEvents while another session holds the chain lock succeeded before its deadline")
	}
	if err := tx.Rollback(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := db.AppendEvents(t.Context(), b); err != nil {
		t.Fatalf("AppendEvents after the lock was released: %v", err)
	}
	pgVerify(t, db, 1)
}

func BenchmarkPGAppendChained(b *testing.B) {
	db := pgOpen(b, pgtest.DSN(b))
	b.ReportAllocs()
	events := make([]audit.Event, 16)
	for b.Loop() {
		for i := range events {
			events[i] = audit.Event{Time: pgT0, Kind: audit.KindCallIntent, RequestID: "req", Agent: "a", Tool: "t"}
		}
		if err := db.AppendChained(b.Context(), events, func(seq int64, hash string) error { return pgNumber(events, seq, hash) }); err != nil {
			b.Fatal(err)
		}
	}
}
