package insight_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/chaperone-dev/chaperone/internal/audit"
	"github.com/chaperone-dev/chaperone/internal/insight"
	"github.com/chaperone-dev/chaperone/internal/store/sqlite"
	"github.com/chaperone-dev/chaperone/internal/store/sqlite/sqlitetest"
)

// fill appends evs to a new SQLite audit log through the real writer, turns the events
// marked Pruned into tombstones as retention does, and returns the store.
func fill(tb testing.TB, evs []audit.Event) *sqlite.DB {
	tb.Helper()
	db, log := sqlitetest.Open(tb)
	var prune []int64
	for i := range evs {
		e := evs[i]
		pruned := e.Pruned
		e.Pruned = false
		if err := log.Append(tb.Context(), &e); err != nil {
			tb.Fatalf("Append(%s at %s): %v", e.Kind, e.Time, err)
		}
		if pruned {
			prune = append(prune, e.Seq)
		}
	}
	if len(prune) > 0 {
		n, err := db.PruneEvents(tb.Context(), int64(len(evs)), nil, func(e *audit.Event) bool {
			for _, s := range prune {
				if e.Seq == s {
					return true
				}
			}
			return false
		})
		if err != nil || n != int64(len(prune)) {
			tb.Fatalf("PruneEvents = %d, %v; want %d", n, err, len(prune))
		}
	}
	return db
}

// fillFast writes evs, chained as the log chains them, to a new SQLite store in
// batches, one transaction each: for logs too long to append one commit at a time.
func fillFast(tb testing.TB, evs []audit.Event) *sqlite.DB {
	tb.Helper()
	db, _ := sqlitetest.Open(tb)
	prev := ""
	batch := make([]audit.Event, 0, 1000)
	flush := func() {
		if err := db.AppendEvents(tb.Context(), batch); err != nil {
			tb.Fatalf("AppendEvents: %v", err)
		}
		batch = batch[:0]
	}
	for i, e := range evs {
		e.Seq, e.Time, e.PrevHash = int64(i+1), e.Time.UTC().Truncate(time.Microsecond), prev
		e.Hash = e.ComputeHash()
		prev = e.Hash
		if batch = append(batch, e); len(batch) == cap(batch) {
			flush()
		}
	}
	if len(batch) > 0 {
		flush()
	}
	return db
}

// countingSource counts the events a Source hands out.
type countingSource struct {
	audit.Source
	read int
}

func (c *countingSource) ScanEvents(ctx context.Context, after int64, limit int) ([]audit.Event, error) {
	evs, err := c.Source.ScanEvents(ctx, after, limit)
	c.read += len(evs)
	return evs, err
}

// Compute over a real store gives the figures of the events in the window, whatever is
// before and after it, tombstones counted apart.
func TestCompute(t *testing.T) {
	t.Parallel()
	db := fill(t, fixtureEvents())
	got, err := insight.Compute(t.Context(), db, testWindow)
	if err != nil {
		t.Fatalf("Compute: %v", err)
	}
	want := wantFigures()
	// The log numbers the events: the kills carry their seqs.
	want.Kills[0].Seq, want.Kills[1].Seq = 22, 24
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Compute (-want +got):\n%s", diff)
	}
}

func TestComputeInvalidWindow(t *testing.T) {
	t.Parallel()
	db := fill(t, nil)
	_, err := insight.Compute(t.Context(), db, insight.Window{From: t0, To: t0, Bucket: time.Hour})
	if err == nil {
		t.Fatal("Compute over an empty window succeeded")
	}
}

// secondsLog is a log of n auth failures one second apart from t0.
func secondsLog(n int) []audit.Event {
	evs := make([]audit.Event, n)
	for i := range evs {
		evs[i] = audit.Event{Time: t0.Add(time.Duration(i) * time.Second), Kind: audit.KindAuthFailed}
	}
	return evs
}

// SeekTime lands just before t minus the slack — at most a probe's length (16 events)
// before the last event recorded before it — reading a small part of the log.
func TestSeekTime(t *testing.T) {
	t.Parallel()
	const n = 3000
	db := fillFast(t, secondsLog(n))
	for _, tc := range []struct {
		name string
		t    time.Time
		want int64
	}{
		{"zero time", time.Time{}, 0},
		{"before the log", t0.Add(-time.Hour), 0},
		{"at the start", t0, 0},
		// Event k (1-based) is at t0+(k-1)s; the last before t0+2000s-60s is event 1940.
		{"in the middle", t0.Add(2000 * time.Second), 1940},
		{"near the end", t0.Add((n - 1) * time.Second), n - 60},
		{"after the log", t0.Add(10 * n * time.Second), n},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			src := &countingSource{Source: db}
			got, err := insight.SeekTime(t.Context(), src, tc.t)
			if err != nil || got > tc.want || got < tc.want-16 {
				t.Fatalf("SeekTime(%s) = %d, %v; want %d or at most 16 less", tc.t, got, err, tc.want)
			}
			if src.read > n/4 {
				t.Errorf("SeekTime(%s) read %d of %d events, want a small part", tc.t, src.read, n)
			}
		})
	}
}

// A call held for approval is recorded after the wait with the time it arrived: such
// events, out of time order, must not make SeekTime skip events of the window.
func TestSeekTimeHeldCalls(t *testing.T) {
	t.Parallel()
	const n = 1200
	evs := secondsLog(n)
	// Runs of ten held calls, recorded long after they arrived, every twenty events: half
	// of the log.
	for i := 100; i < n; i += 20 {
		for j := i; j < min(i+10, n); j++ {
			evs[j] = audit.Event{Time: t0, Kind: audit.KindCallIntent, RequestID: fmt.Sprint("held-", j), Decision: "approve"}
		}
	}
	db := fillFast(t, evs)
	all, err := db.ScanEvents(t.Context(), 0, n)
	if err != nil {
		t.Fatal(err)
	}
	for from := t0.Add(100 * time.Second); from.Before(t0.Add(n * time.Second)); from = from.Add(13 * time.Second) {
		after, err := insight.SeekTime(t.Context(), db, from)
		if err != nil {
			t.Fatalf("SeekTime(%s): %v", from, err)
		}
		for _, e := range all[:after] {
			if !e.Time.Before(from) {
				t.Fatalf("SeekTime(%s) = %d skips event %d at %s", from.Format(time.TimeOnly), after, e.Seq, e.Time.Format(time.TimeOnly))
			}
		}
	}
}

// A record that cannot be read back is skipped and counted; the figures of the others
// are still computed.
func TestComputeUnreadable(t *testing.T) {
	t.Parallel()
	evs := fixtureEvents()
	db := fill(t, evs)
	// Event 4 (the allowed call r1) is no longer in canonical form.
	if _, err := db.SQL().ExecContext(t.Context(), `UPDATE audit_events SET event = event || ' ' WHERE seq = 4`); err != nil {
		t.Fatal(err)
	}
	got, err := insight.Compute(t.Context(), db, testWindow)
	if err != nil {
		t.Fatalf("Compute over a log with an unreadable record: %v", err)
	}
	if got.Unreadable != 1 || got.Decisions.Allow != 1 || got.Events != 26 {
		t.Errorf("Compute: Unreadable %d, Allow %d, Events %d; want 1, 1 and 26", got.Unreadable, got.Decisions.Allow, got.Events)
	}
}

// memSource is a Source over events in memory; it hands out what it holds, well formed
// or not.
type memSource []audit.Event

func (m memSource) ScanEvents(ctx context.Context, after int64, limit int) ([]audit.Event, error) {
	var out []audit.Event
	for _, e := range m {
		if e.Seq > after && len(out) < limit {
			out = append(out, e)
		}
	}
	return out, ctx.Err()
}

// unreadableSource is a Source whose record at bad cannot be read.
type unreadableSource struct {
	memSource
	bad map[int64]bool
}

func (u unreadableSource) ScanEvents(ctx context.Context, after int64, limit int) ([]audit.Event, error) {
	evs, err := u.memSource.ScanEvents(ctx, after, limit)
	for _, e := range evs {
		if u.bad[e.Seq] {
			return nil, fmt.Errorf("wrapped: %w", &audit.CorruptError{Seq: e.Seq, Err: errors.New("not canonical")})
		}
	}
	return evs, err
}

func seqs(n int) memSource {
	m := make(memSource, n)
	for i := range m {
		m[i] = audit.Event{Seq: int64(i + 1), Time: t0.Add(time.Duration(i) * time.Second), Kind: audit.KindAuthFailed}
	}
	return m
}

func TestScan(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name           string
		src            audit.Source
		after          int64
		events, unread int64
		wantErr        bool
	}{
		{"whole log", seqs(600), 0, 600, 0, false},
		{"after a seq", seqs(600), 590, 10, 0, false},
		{"two unreadable", unreadableSource{seqs(600), map[int64]bool{3: true, 300: true}}, 0, 598, 2, false},
		{"unreadable first and adjacent", unreadableSource{seqs(10), map[int64]bool{1: true, 2: true}}, 0, 8, 2, false},
		{"unreadable last", unreadableSource{seqs(10), map[int64]bool{10: true}}, 0, 9, 1, false},
		{"seqs going back", memSource{{Seq: 2}, {Seq: 1}}, 0, 1, 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var got int64
			st, err := insight.Scan(t.Context(), tc.src, tc.after, func(*audit.Event) error { got++; return nil })
			if (err != nil) != tc.wantErr || st.Events != tc.events || st.Unreadable != tc.unread || got != tc.events {
				t.Errorf("Scan = %+v (%d calls), %v; want %d events, %d unreadable, error %v", st, got, err, tc.events, tc.unread, tc.wantErr)
			}
		})
	}
}

// An error from the callback stops the scan and comes back as it is.
func TestScanCallbackError(t *testing.T) {
	t.Parallel()
	stop := errors.New("stop")
	n := 0
	_, err := insight.Scan(t.Context(), seqs(600), 0, func(*audit.Event) error {
		n++
		if n == 5 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || n != 5 {
		t.Errorf("Scan with a failing callback = %v after %d events, want %v after 5", err, n, stop)
	}
}

// A cancelled context stops SeekTime and Compute with its error.
func TestCancelled(t *testing.T) {
	t.Parallel()
	db := fill(t, secondsLog(10))
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := insight.SeekTime(ctx, db, t0.Add(5*time.Second)); err == nil {
		t.Error("SeekTime with a cancelled context succeeded")
	}
	if _, err := insight.Compute(ctx, db, testWindow); err == nil {
		t.Error("Compute with a cancelled context succeeded")
	}
}
