package sqlite_test

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/chaperone-dev/chaperone/internal/audit"
	"github.com/chaperone-dev/chaperone/internal/store/sqlite"
)

// openTemp opens a fresh database in a temporary directory.
func openTemp(tb testing.TB) (*sqlite.DB, string) {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "chaperone.db")
	db, err := sqlite.Open(tb.Context(), path)
	if err != nil {
		tb.Fatalf("Open(%q): %v", path, err)
	}
	tb.Cleanup(func() {
		if err := db.Close(); err != nil {
			tb.Errorf("Close: %v", err)
		}
	})
	return db, path
}

var t0 = time.Date(2026, 3, 1, 9, 0, 7, 123456000, time.UTC)

// chain returns n events continuing the chain after head (zero for an empty
// log), numbered and hashed as a Log would.
func chain(head audit.Event, n int) []audit.Event {
	events := make([]audit.Event, n)
	prev := head
	for i := range events {
		e := audit.Event{
			Seq:       prev.Seq + 1,
			Time:      t0.Add(time.Duration(prev.Seq) * time.Second),
			Kind:      audit.KindCallIntent,
			RequestID: fmt.Sprintf("req-%d", prev.Seq+1),
			Agent:     "mail-assistant",
			Tool:      "send_email",
			Rules:     []string{"r1"},
			PrevHash:  prev.Hash,
		}
		e.Hash = e.ComputeHash()
		events[i] = e
		prev = e
	}
	return events
}

func TestOpenCreatesPrivateFiles(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "state", "nested")
	path := filepath.Join(dir, "chaperone.db")
	db, err := sqlite.Open(t.Context(), path)
	if err != nil {
		t.Fatalf("Open(%q): %v", path, err)
	}
	defer db.Close()
	for name, want := range map[string]fs.FileMode{dir: 0o700 | fs.ModeDir, path: 0o600} {
		fi, err := os.Stat(name)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode(); got != want {
			t.Errorf("mode of %s = %v, want %v", name, got, want)
		}
	}
	var mode string
	if err := db.SQL().QueryRowContext(t.Context(), `PRAGMA journal_mode`).Scan(&mode); err != nil {
		t.Fatal(err)
	}
	if mode != "wal" {
		t.Errorf("journal_mode = %q, want wal", mode)
	}
	var sync int
	if err := db.SQL().QueryRowContext(t.Context(), `PRAGMA synchronous`).Scan(&sync); err != nil {
		t.Fatal(err)
	}
	if sync != 2 {
		t.Errorf("synchronous = %d, want 2 (FULL)", sync)
	}
}

func TestOpenOddPath(t *testing.T) {
	t.Parallel()
	// Characters that mean something in a URI must stay part of the name.
	path := filepath.Join(t.TempDir(), "a dir?x=1#frag%20", "db?mode=ro")
	db, err := sqlite.Open(t.Context(), path)
	if err != nil {
		t.Fatalf("Open(%q): %v", path, err)
	}
	if err := db.AppendEvents(t.Context(), chain(audit.Event{}, 1)); err != nil {
		t.Fatalf("AppendEvents: %v", err)
	}
	db.Close()
	if _, err := os.Stat(path); err != nil {
		t.Errorf("database not at %q: %v", path, err)
	}
}

func TestMigrations(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "chaperone.db")

	versions := func(db *sqlite.DB) []string {
		t.Helper()
		rows, err := db.SQL().QueryContext(ctx, `SELECT version, applied_at FROM schema_migrations ORDER BY version`)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var got []string
		for rows.Next() {
			var v int
			var at string
			if err := rows.Scan(&v, &at); err != nil {
				t.Fatal(err)
			}
			if _, err := time.Parse(time.RFC3339Nano, at); err != nil {
				t.Errorf("applied_at of version %d = %q: %v", v, at, err)
			}
			got = append(got, fmt.Sprint(v, " ", at))
		}
		return got
	}

	db, err := sqlite.Open(ctx, path)
	if err != nil {
		t.Fatalf("Open(%q) fresh: %v", path, err)
	}
	first := versions(db)
	if len(first) == 0 {
		t.Fatal("no migration recorded on a fresh database")
	}
	db.Close()

	db, err = sqlite.Open(ctx, path)
	if err != nil {
		t.Fatalf("Open(%q) again: %v", path, err)
	}
	if diff := cmp.Diff(first, versions(db)); diff != "" {
		t.Errorf("re-open changed schema_migrations (-want +got):\n%s", diff)
	}
	if _, err := db.SQL().ExecContext(ctx, `INSERT INTO schema_migrations (version, applied_at) VALUES (9999, '2030-01-01T00:00:00Z')`); err != nil {
		t.Fatal(err)
	}
	db.Close()

	_, err = sqlite.Open(ctx, path)
	if !errors.Is(err, sqlite.ErrNewerSchema) {
		t.Fatalf("Open(%q) with schema 9999 = %v, want ErrNewerSchema", path, err)
	}
	if !strings.Contains(err.Error(), "9999") {
		t.Errorf("Open error %q does not name the version", err)
	}
	if _, err := sqlite.OpenReadOnly(ctx, path); !errors.Is(err, sqlite.ErrNewerSchema) {
		t.Errorf("OpenReadOnly(%q) with schema 9999 = %v, want ErrNewerSchema", path, err)
	}
}

func TestOpenReadOnly(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	dir := t.TempDir()

	t.Run("missing file", func(t *testing.T) {
		path := filepath.Join(dir, "missing.db")
		_, err := sqlite.OpenReadOnly(ctx, path)
		if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), path) {
			t.Errorf("OpenReadOnly(%q) = %v, want an error naming the path and wrapping fs.ErrNotExist", path, err)
		}
		if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("OpenReadOnly(%q) created the file", path)
		}
	})

	t.Run("not a chaperone database", func(t *testing.T) {
		path := filepath.Join(dir, "empty.db")
		if err := os.WriteFile(path, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := sqlite.OpenReadOnly(ctx, path)
		if err == nil || !strings.Contains(err.Error(), "not a Chaperone database") {
			t.Errorf("OpenReadOnly(%q) = %v, want not a Chaperone database", path, err)
		}
	})

	t.Run("reads, never writes", func(t *testing.T) {
		path := filepath.Join(dir, "chaperone.db")
		db, err := sqlite.Open(ctx, path)
		if err != nil {
			t.Fatal(err)
		}
		want := chain(audit.Event{}, 3)
		if err := db.AppendEvents(ctx, want); err != nil {
			t.Fatal(err)
		}
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}

		ro, err := sqlite.OpenReadOnly(ctx, path)
		if err != nil {
			t.Fatalf("OpenReadOnly(%q): %v", path, err)
		}
		defer ro.Close()
		got, err := ro.ScanEvents(ctx, 0, 10)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("ScanEvents (-want +got):\n%s", diff)
		}
		if err := ro.AppendEvents(ctx, chain(want[2], 1)); !errors.Is(err, sqlite.ErrReadOnly) {
			t.Errorf("AppendEvents on read-only = %v, want ErrReadOnly", err)
		}
		if err := ro.SetPin(ctx, sqlite.Pin{Tool: "t", Hash: "h"}); !errors.Is(err, sqlite.ErrReadOnly) {
			t.Errorf("SetPin on read-only = %v, want ErrReadOnly", err)
		}
		if _, err := ro.SQL().ExecContext(ctx, `DELETE FROM audit_events`); err == nil {
			t.Errorf("DELETE through SQL() of a read-only DB succeeded")
		}
	})
}

func TestEvents(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db, _ := openTemp(t)

	if _, ok, err := db.LastEvent(ctx); ok || err != nil {
		t.Fatalf("LastEvent on empty = _, %v, %v; want false, nil", ok, err)
	}
	if got, err := db.ScanEvents(ctx, 0, 10); len(got) != 0 || err != nil {
		t.Fatalf("ScanEvents on empty = %v, %v; want none", got, err)
	}
	events := chain(audit.Event{}, 25)
	if err := db.AppendEvents(ctx, events[:20]); err != nil {
		t.Fatalf("AppendEvents(1-20): %v", err)
	}
	if err := db.AppendEvents(ctx, events[20:]); err != nil {
		t.Fatalf("AppendEvents(21-25): %v", err)
	}

	last, ok, err := db.LastEvent(ctx)
	if err != nil || !ok {
		t.Fatalf("LastEvent = _, %v, %v", ok, err)
	}
	if diff := cmp.Diff(events[24], last); diff != "" {
		t.Errorf("LastEvent (-want +got):\n%s", diff)
	}
	got, err := db.ScanEvents(ctx, 5, 10)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(events[5:15], got); diff != "" {
		t.Errorf("ScanEvents(5, 10) (-want +got):\n%s", diff)
	}
	got, err = db.TailEvents(ctx, 3)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(events[22:], got); diff != "" {
		t.Errorf("TailEvents(3) (-want +got):\n%s", diff)
	}
	got, err = db.TailEvents(ctx, 100)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(events, got); diff != "" {
		t.Errorf("TailEvents(100) (-want +got):\n%s", diff)
	}
	if _, err := db.ScanEvents(ctx, 0, 0); err == nil {
		t.Errorf("ScanEvents(0, 0) succeeded, want an error")
	}

	// Ad hoc queries read the record's fields (migration 9 dropped the derived columns).
	var kind, requestID string
	if err := db.SQL().QueryRowContext(ctx, `SELECT event ->> '$.kind', event ->> '$.request_id' FROM audit_events WHERE seq = 7`).Scan(&kind, &requestID); err != nil {
		t.Fatal(err)
	}
	if kind != audit.KindCallIntent || requestID != "req-7" {
		t.Errorf("kind, request_id of event 7 = %q, %q; want %q, %q", kind, requestID, audit.KindCallIntent, "req-7")
	}
}

// TestAppendEventsBatchSizes appends batches on both sides of the rows one INSERT writes
// (16), so that every chunk and every remainder lands, in order, once.
func TestAppendEventsBatchSizes(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db, _ := openTemp(t)
	sizes := []int{1, 15, 16, 17, 31, 32, 33, 50}
	total := 0
	for _, n := range sizes {
		total += n
	}
	events := chain(audit.Event{}, total)
	at := 0
	for _, n := range sizes {
		if err := db.AppendEvents(ctx, events[at:at+n]); err != nil {
			t.Fatalf("AppendEvents(%d events from %d): %v", n, at+1, err)
		}
		at += n
	}
	got, err := db.ScanEvents(ctx, 0, total+1)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(events, got); diff != "" {
		t.Errorf("events after batches of %v (-want +got):\n%s", sizes, diff)
	}
	var rows int
	if err := db.SQL().QueryRowContext(ctx, `SELECT count(*) FROM audit_events`).Scan(&rows); err != nil || rows != total {
		t.Errorf("rows = %d, %v; want %d", rows, err, total)
	}
}

func TestAppendEventsAllOrNothing(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	head := chain(audit.Event{}, 2)

	tests := []struct {
		name   string
		events func() []audit.Event
		want   string
	}{
		{
			name:   "seq reused",
			events: func() []audit.Event { return chain(head[0], 3) },
			want:   "does not continue the stored chain",
		},
		{
			name: "seq skipped",
			events: func() []audit.Event {
				e := chain(head[1], 2)
				return e[1:]
			},
			want: "does not continue the stored chain",
		},
		{
			name: "wrong prev_hash",
			events: func() []audit.Event {
				e := chain(head[1], 3)
				e[0].PrevHash = "sha256:00"
				return e
			},
			want: "does not continue the stored chain",
		},
		{
			name: "gap inside the batch",
			events: func() []audit.Event {
				e := chain(head[1], 3)
				e[2].Seq++
				return e
			},
			want: "event 6 does not follow event 4",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			db, _ := openTemp(t)
			if err := db.AppendEvents(ctx, head); err != nil {
				t.Fatal(err)
			}
			events := tt.events()
			err := db.AppendEvents(ctx, events)
			wantPrefix := fmt.Sprintf("sqlite: append %d audit events: ", len(events))
			if err == nil || !strings.HasPrefix(err.Error(), wantPrefix) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("AppendEvents = %v, want %q...%q", err, wantPrefix, tt.want)
			}
			got, err := db.ScanEvents(ctx, 0, 100)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(head, got); diff != "" {
				t.Errorf("after a refused batch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestCorruptRows(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	tests := []struct {
		name   string
		update string
		want   string
	}{
		{"not an event", `UPDATE audit_events SET event = '[1, 2]' WHERE seq = 3`, "decode record"},
		{"extra field", `UPDATE audit_events SET event = json_set(event, '$.extra', 1) WHERE seq = 3`, "not in canonical form"},
		{"whitespace", `UPDATE audit_events SET event = event || ' ' WHERE seq = 3`, "not in canonical form"},
		{"moved", `UPDATE audit_events SET event = (SELECT event FROM audit_events WHERE seq = 4) WHERE seq = 3`, "row holds the record of event 4"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			db, _ := openTemp(t)
			if err := db.AppendEvents(ctx, chain(audit.Event{}, 5)); err != nil {
				t.Fatal(err)
			}
			if _, err := db.SQL().ExecContext(ctx, tt.update); err != nil {
				t.Fatal(err)
			}
			_, err := db.ScanEvents(ctx, 0, 10)
			ce, ok := errors.AsType[*audit.CorruptError](err)
			if !ok || ce.Seq != 3 || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("ScanEvents = %v, want a CorruptError for event 3 saying %q", err, tt.want)
			}
			got, err := db.ScanEvents(ctx, 0, 2)
			if err != nil || len(got) != 2 {
				t.Errorf("ScanEvents(0, 2) before the corrupt row = %d events, %v; want 2, nil", len(got), err)
			}
		})
	}
}

func TestPins(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db, _ := openTemp(t)

	if _, ok, err := db.Pin(ctx, "send_email"); ok || err != nil {
		t.Fatalf("Pin on empty = _, %v, %v; want false, nil", ok, err)
	}
	at := time.Date(2026, 3, 1, 10, 0, 0, 123456789, time.FixedZone("CET", 3600))
	mail := sqlite.Pin{
		Tool: "send_email", Upstream: "mail", Hash: "sha256:aa",
		Definition: []byte(`{"name":"send_email"}`), ApprovedBy: "alice", ApprovedAt: at,
	}
	search := sqlite.Pin{Tool: "search", Upstream: "web", Hash: "sha256:bb", ApprovedAt: at}
	for _, p := range []sqlite.Pin{mail, search} {
		if err := db.SetPin(ctx, p); err != nil {
			t.Fatalf("SetPin(%q): %v", p.Tool, err)
		}
	}
	got, ok, err := db.Pin(ctx, "send_email")
	if err != nil || !ok {
		t.Fatalf("Pin(send_email) = _, %v, %v", ok, err)
	}
	if diff := cmp.Diff(mail, got); diff != "" {
		t.Errorf("Pin(send_email) (-want +got):\n%s", diff)
	}
	if got.ApprovedAt.Location() != time.UTC {
		t.Errorf("ApprovedAt location = %v, want UTC", got.ApprovedAt.Location())
	}

	mail.Hash, mail.Definition, mail.ApprovedBy = "sha256:cc", []byte(`{"name":"send_email","v":2}`), "bob"
	if err := db.SetPin(ctx, mail); err != nil {
		t.Fatalf("SetPin(send_email) replace: %v", err)
	}
	all, err := db.Pins(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]sqlite.Pin{search, mail}, all); diff != "" {
		t.Errorf("Pins (-want +got):\n%s", diff)
	}
	if err := db.SetPin(ctx, sqlite.Pin{Tool: "x"}); err == nil {
		t.Errorf("SetPin without hash succeeded")
	}
}

// TestAppendChainedTwoHandles interleaves appends from two handles on one file, as two
// processes sharing it would: each append must see the other's events as the head, even
// though a handle remembers the head its own last append left.
func TestAppendChainedTwoHandles(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	a, path := openTemp(t)
	b, err := sqlite.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })

	var heads []int64
	appendOne := func(db *sqlite.DB) {
		t.Helper()
		events := []audit.Event{{Time: t0, Kind: audit.KindCallIntent, Agent: "a", Tool: "t"}}
		err := db.AppendChained(ctx, events, func(seq int64, hash string) error {
			heads = append(heads, seq)
			events[0].Seq, events[0].PrevHash = seq+1, hash
			events[0].Hash = events[0].ComputeHash()
			return nil
		})
		if err != nil {
			t.Fatalf("AppendChained: %v", err)
		}
	}
	for _, db := range []*sqlite.DB{a, a, b, a, b, b, a} {
		appendOne(db)
	}
	if want := []int64{0, 1, 2, 3, 4, 5, 6}; !slices.Equal(heads, want) {
		t.Errorf("heads seen = %v, want %v", heads, want)
	}
	// The stored events make one chain.
	last, ok, err := a.LastEvent(ctx)
	if err != nil || !ok || last.Seq != 7 {
		t.Fatalf("LastEvent = %d, %v, %v", last.Seq, ok, err)
	}
	if r, err := audit.Verify(ctx, a); err != nil || r.Events != 7 || r.Broken != nil {
		t.Errorf("Verify = %+v, %v", r, err)
	}
}
