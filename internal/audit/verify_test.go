package audit_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/chaperone-dev/chaperone/internal/audit"
	"github.com/chaperone-dev/chaperone/internal/store/sqlite"
)

// seed appends n refused calls through a Log and returns them as recorded.
func seed(tb testing.TB, db *sqlite.DB, n int) []audit.Event {
	tb.Helper()
	l, err := audit.NewLog(tb.Context(), db, audit.LogOptions{})
	if err != nil {
		tb.Fatal(err)
	}
	defer l.Close(context.Background())
	events := make([]audit.Event, n)
	for i := range events {
		e := event(audit.KindCallRefused, fmt.Sprint("req-", i+1))
		e.Decision, e.Reason = "deny", "denied_by_policy"
		if err := l.Append(tb.Context(), &e); err != nil {
			tb.Fatal(err)
		}
		events[i] = e
	}
	return events
}

// rewrite stores e as the row at position seq, as a forger who knows the
// format would.
func rewrite(tb testing.TB, db *sqlite.DB, seq int64, e audit.Event) {
	tb.Helper()
	rec, err := e.MarshalRecord()
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := db.SQL().ExecContext(tb.Context(),
		`UPDATE audit_events SET seq = ?, event = ? WHERE seq = ?`, e.Seq, string(rec), seq); err != nil {
		tb.Fatal(err)
	}
}

func TestVerifyDetectsTampering(t *testing.T) {
	t.Parallel()
	const n = 10
	tests := []struct {
		name    string
		tamper  func(tb testing.TB, db *sqlite.DB, events []audit.Event)
		seq     int64
		problem string
	}{
		{
			name: "field edited",
			tamper: func(tb testing.TB, db *sqlite.DB, _ []audit.Event) {
				exec(tb, db, `UPDATE audit_events SET event = json_set(event, '$.decision', 'allow') WHERE seq = 5`)
			},
			seq:     5,
			problem: "event 5 edited: hash does not match its content",
		},
		{
			name: "hash edited",
			tamper: func(tb testing.TB, db *sqlite.DB, events []audit.Event) {
				exec(tb, db, `UPDATE audit_events SET event = json_set(event, '$.hash', ?) WHERE seq = 5`, events[0].Hash)
			},
			seq:     5,
			problem: "event 5 edited: hash does not match its content",
		},
		{
			name: "edited and rehashed",
			tamper: func(tb testing.TB, db *sqlite.DB, events []audit.Event) {
				e := events[4]
				e.Decision = "allow"
				e.Hash = e.ComputeHash()
				rewrite(tb, db, 5, e)
			},
			seq:     6,
			problem: "event 6 prev_hash does not match the hash of event 5 (events reordered, or removed and renumbered)",
		},
		{
			name: "deleted in the middle",
			tamper: func(tb testing.TB, db *sqlite.DB, _ []audit.Event) {
				exec(tb, db, `DELETE FROM audit_events WHERE seq = 7`)
			},
			seq:     7,
			problem: "event 7 missing (found 8 after 6)",
		},
		{
			name: "first deleted",
			tamper: func(tb testing.TB, db *sqlite.DB, _ []audit.Event) {
				exec(tb, db, `DELETE FROM audit_events WHERE seq = 1`)
			},
			seq:     1,
			problem: "event 1 missing (found 2 first)",
		},
		{
			name: "rows swapped",
			tamper: func(tb testing.TB, db *sqlite.DB, _ []audit.Event) {
				var three, four string
				row := db.SQL().QueryRowContext(tb.Context(),
					`SELECT (SELECT event FROM audit_events WHERE seq = 3), (SELECT event FROM audit_events WHERE seq = 4)`)
				if err := row.Scan(&three, &four); err != nil {
					tb.Fatal(err)
				}
				exec(tb, db, `UPDATE audit_events SET event = ? WHERE seq = 3`, four)
				exec(tb, db, `UPDATE audit_events SET event = ? WHERE seq = 4`, three)
			},
			seq:     3,
			problem: "event 3 unreadable: row holds the record of event 4",
		},
		{
			name: "rows swapped and renumbered",
			tamper: func(tb testing.TB, db *sqlite.DB, events []audit.Event) {
				a, b := events[2], events[3]
				a.Seq, b.Seq = 4, 3
				rewrite(tb, db, 3, b)
				rewrite(tb, db, 4, a)
			},
			seq:     3,
			problem: "event 3 edited: hash does not match its content",
		},
		{
			name: "deleted, renumbered and rehashed",
			tamper: func(tb testing.TB, db *sqlite.DB, events []audit.Event) {
				exec(tb, db, `DELETE FROM audit_events WHERE seq = 7`)
				for _, e := range events[7:] {
					old := e.Seq
					e.Seq--
					e.Hash = e.ComputeHash()
					rewrite(tb, db, old, e)
				}
			},
			seq:     7,
			problem: "event 7 prev_hash does not match the hash of event 6 (events reordered, or removed and renumbered)",
		},
		{
			name: "first event links to something",
			tamper: func(tb testing.TB, db *sqlite.DB, events []audit.Event) {
				e := events[0]
				e.PrevHash = events[9].Hash
				e.Hash = e.ComputeHash()
				rewrite(tb, db, 1, e)
			},
			seq:     1,
			problem: "event 1 has a prev_hash: the first event links to nothing",
		},
		{
			name: "record not canonical",
			tamper: func(tb testing.TB, db *sqlite.DB, _ []audit.Event) {
				exec(tb, db, `UPDATE audit_events SET event = json_set(event, '$.note', 'x') WHERE seq = 2`)
			},
			seq:     2,
			problem: "event 2 unreadable: record is not in canonical form",
		},
		{
			name: "gap before an unreadable row",
			tamper: func(tb testing.TB, db *sqlite.DB, _ []audit.Event) {
				exec(tb, db, `DELETE FROM audit_events WHERE seq = 3`)
				exec(tb, db, `UPDATE audit_events SET event = json_set(event, '$.note', 'x') WHERE seq = 6`)
			},
			seq:     3,
			problem: "event 3 missing (found 4 after 2)",
		},
		{
			name: "gap just before an unreadable row",
			tamper: func(tb testing.TB, db *sqlite.DB, _ []audit.Event) {
				exec(tb, db, `DELETE FROM audit_events WHERE seq = 5`)
				exec(tb, db, `UPDATE audit_events SET event = json_set(event, '$.note', 'x') WHERE seq = 6`)
			},
			seq:     5,
			problem: "event 5 missing (found 6 after 4)",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			db := tempDB(t)
			events := seed(t, db, n)
			if r := verify(t, db); r.Broken != nil {
				t.Fatalf("Verify before tampering: %+v", r.Broken)
			}
			tt.tamper(t, db, events)
			got := verify(t, db)
			want := audit.Report{
				Events: tt.seq - 1,
				Broken: &audit.Break{Seq: tt.seq, Problem: tt.problem},
			}
			if tt.seq > 1 {
				// The hash of the last verified event, as stored now.
				prev, err := db.ScanEvents(t.Context(), tt.seq-2, 1)
				if err != nil || len(prev) != 1 {
					t.Fatalf("ScanEvents(%d, 1) = %v, %v", tt.seq-2, prev, err)
				}
				want.Head = prev[0].Hash
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("Verify after tampering (-want +got):\n%s", diff)
			}
		})
	}
}

// exec runs a statement on db's write handle.
func exec(tb testing.TB, db *sqlite.DB, query string, args ...any) {
	tb.Helper()
	if _, err := db.SQL().ExecContext(tb.Context(), query, args...); err != nil {
		tb.Fatalf("%s: %v", query, err)
	}
}

// A chain alone cannot show that its tail was cut: every prefix of a valid
// chain is valid. Report.Head is what an external copy compares.
func TestVerifyTruncatedTailNeedsAnAnchor(t *testing.T) {
	t.Parallel()
	db := tempDB(t)
	events := seed(t, db, 10)
	anchor := verify(t, db)
	if anchor.Head != events[9].Hash || anchor.Events != 10 {
		t.Fatalf("Verify = %+v, want 10 events and head %q", anchor, events[9].Hash)
	}
	exec(t, db, `DELETE FROM audit_events WHERE seq > 7`)
	got := verify(t, db)
	if diff := cmp.Diff(audit.Report{Events: 7, Head: events[6].Hash}, got); diff != "" {
		t.Errorf("Verify after truncation (-want +got):\n%s", diff)
	}
	if got.Head == anchor.Head {
		t.Errorf("Verify after truncation reports the old head: an external anchor could not tell")
	}
}

func TestVerifyUnfinished(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db := tempDB(t)
	l := newLog(t, db, audit.LogOptions{})
	steps := []audit.Event{
		event(audit.KindCallIntent, "r1"),
		event(audit.KindCallOutcome, "r1"),
		event(audit.KindCallIntent, "r2"), // crashed before its outcome
		event(audit.KindCallRefused, "r3"),
		event(audit.KindCallIntent, "r4"),
		event(audit.KindCallIntent, "r5"), // still running
		event(audit.KindCallOutcome, "r4"),
	}
	for i := range 25 {
		steps = append(steps, event(audit.KindCallIntent, fmt.Sprintf("bulk-%02d", i)))
	}
	for _, e := range steps {
		if err := l.Append(ctx, &e); err != nil {
			t.Fatal(err)
		}
	}
	r := verify(t, db)
	if r.Broken != nil {
		t.Fatalf("Verify: %+v", r.Broken)
	}
	if r.Unfinished != 27 {
		t.Errorf("Unfinished = %d, want 27", r.Unfinished)
	}
	want := []string{"r2", "r5"}
	for i := range 18 {
		want = append(want, fmt.Sprintf("bulk-%02d", i))
	}
	if diff := cmp.Diff(want, r.UnfinishedRequests); diff != "" {
		t.Errorf("UnfinishedRequests (-want +got):\n%s", diff)
	}
}

func TestVerifyEmpty(t *testing.T) {
	t.Parallel()
	if diff := cmp.Diff(audit.Report{}, verify(t, tempDB(t))); diff != "" {
		t.Errorf("Verify(empty) (-want +got):\n%s", diff)
	}
}

// A log longer than one page of Verify.
func TestVerifyPages(t *testing.T) {
	t.Parallel()
	db := tempDB(t)
	l := newLog(t, db, audit.LogOptions{})
	const n = 2345
	errs := make(chan error, n)
	for i := range n { // concurrently, so that group commit keeps this fast
		go func() {
			e := event(audit.KindCallRefused, fmt.Sprint(i))
			errs <- l.Append(t.Context(), &e)
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	last, _, err := db.LastEvent(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(audit.Report{Events: n, Head: last.Hash}, verify(t, db)); diff != "" {
		t.Errorf("Verify (-want +got):\n%s", diff)
	}
	exec(t, db, `DELETE FROM audit_events WHERE seq = 2001`)
	if r := verify(t, db); r.Broken == nil || r.Broken.Seq != 2001 {
		t.Errorf("Verify after deleting event 2001 = %+v, want a break at 2001", r)
	}
}
