package contain_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chaperone-dev/chaperone/internal/contain"
	"github.com/chaperone-dev/chaperone/internal/store/sqlite"
)

func openSwitches(t *testing.T, path string, now func() time.Time) (*contain.Switches, *sqlite.DB) {
	t.Helper()
	db, err := sqlite.Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	s, err := contain.NewSwitches(t.Context(), db, now)
	if err != nil {
		t.Fatal(err)
	}
	return s, db
}

func mustScope(t *testing.T, s string) contain.Scope {
	t.Helper()
	sc, err := contain.ParseScope(s)
	if err != nil {
		t.Fatal(err)
	}
	return sc
}

func TestParseScope(t *testing.T) {
	for _, tc := range []struct {
		in, want, err string
	}{
		{in: "all", want: "all"},
		{in: "everything", want: "all"},
		{in: "agent:billing-bot", want: "agent:billing-bot"},
		{in: "user:dana@example.com", want: "user:dana@example.com"},
		{in: "task:tsk_1", want: "task:tsk_1"},
		{in: "tool:send_email", want: "tool:send_email"},
		{in: "upstream:mail", want: "upstream:mail"},
		{in: "agent:a:b", want: "agent:a:b"}, // the name is everything after the first colon
		{in: "", err: "want all"},
		{in: "agent", err: "want all"},
		{in: "agent:", err: "is empty"},
		{in: "robot:x", err: `kind "robot"`},
		{in: "agent: x", err: "surrounding spaces"},
		{in: "agent:x\n", err: "control characters"},
		{in: "agent:\xff", err: "UTF-8"},
		{in: "agent:" + strings.Repeat("a", contain.MaxScopeName+1), err: "longer than 256 bytes"},
	} {
		sc, err := contain.ParseScope(tc.in)
		if tc.err != "" {
			if err == nil || !errors.Is(err, contain.ErrInvalidScope) || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseScope(%q) = %v, %v; want an ErrInvalidScope saying %q", tc.in, sc, err, tc.err)
			}
			continue
		}
		if err != nil || sc.String() != tc.want {
			t.Errorf("ParseScope(%q) = %q, %v; want %q", tc.in, sc, err, tc.want)
		}
	}
}

func FuzzParseScope(f *testing.F) {
	for _, s := range []string{"all", "agent:a", "user:u@x", "task:", "tool:t\x00", "x:y", "agent:é"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		sc, err := contain.ParseScope(s)
		if err != nil {
			return
		}
		again, err := contain.ParseScope(sc.String())
		if err != nil || again != sc {
			t.Fatalf("ParseScope(%q) = %v, but its String %q parses as %v, %v", s, sc, sc.String(), again, err)
		}
		if len(sc.Name) > contain.MaxScopeName {
			t.Fatalf("ParseScope(%q) accepted a name of %d bytes", s, len(sc.Name))
		}
	})
}

func TestScopeCovers(t *testing.T) {
	sub := &contain.Subject{Agents: []string{"planner", "mailer"}, User: "dana", Task: "tsk_1", Tool: "send_email", Upstream: "mail"}
	for _, tc := range []struct {
		scope string
		want  bool
	}{
		{"all", true},
		{"agent:planner", true}, // the first agent of the delegation chain
		{"agent:mailer", true},
		{"agent:other", false},
		{"user:dana", true},
		{"user:Dana", false},
		{"task:tsk_1", true},
		{"task:tsk_2", false},
		{"tool:send_email", true},
		{"tool:read_file", false},
		{"upstream:mail", true},
		{"upstream:files", false},
	} {
		if got := mustScope(t, tc.scope).Covers(sub); got != tc.want {
			t.Errorf("%s covers %+v = %v, want %v", tc.scope, sub, got, tc.want)
		}
	}
}

func TestKillEngageLiftPersist(t *testing.T) {
	path := filepath.Join(t.TempDir(), "chaperone.db")
	now := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	s, db := openSwitches(t, path, clock)
	ctx := t.Context()
	sub := &contain.Subject{Agents: []string{"billing"}, User: "dana", Tool: "pay", Upstream: "bank"}

	if _, ok := s.Killed(sub); ok {
		t.Fatal("killed before any kill")
	}
	for _, tc := range []struct{ by, reason, want string }{
		{"", "x", "by is required"},
		{"alice", " ", "reason is required"},
		{"alice", strings.Repeat("r", contain.MaxKillText+1), "longer than 1024 bytes"},
		{"al\x07ice", "x", "control characters"},
	} {
		if _, err := s.Engage(ctx, mustScope(t, "agent:billing"), tc.by, tc.reason); !errors.Is(err, contain.ErrKillInput) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Engage(by %q, reason %q) = %v; want ErrKillInput saying %q", tc.by, tc.reason, err, tc.want)
		}
	}
	e, err := s.Engage(ctx, mustScope(t, "upstream:bank"), "alice", "bank API abused")
	if err != nil {
		t.Fatal(err)
	}
	if k, ok := s.Killed(sub); !ok || k.ID != e.Kill.ID || k.Reason != "bank API abused" || k.By != "alice" {
		t.Fatalf("Killed = %+v, %v; want the upstream kill", k, ok)
	}
	if _, ok := s.Killed(&contain.Subject{Agents: []string{"billing"}, Tool: "read", Upstream: "files"}); ok {
		t.Errorf("a call to another upstream is killed")
	}
	if _, err := s.Engage(ctx, mustScope(t, "upstream:bank"), "bob", "again"); !errors.Is(err, contain.ErrKillEngaged) {
		t.Errorf("second Engage of one scope = %v, want ErrKillEngaged", err)
	}
	if _, err := s.Lift(ctx, mustScope(t, "agent:billing"), "bob", "x"); !errors.Is(err, contain.ErrNotKilled) {
		t.Errorf("Lift of a scope not killed = %v, want ErrNotKilled", err)
	}

	// A restart keeps the kill.
	db.Close()
	s2, _ := openSwitches(t, path, clock)
	if _, ok := s2.Killed(sub); !ok {
		t.Fatal("the kill did not survive a restart")
	}
	now = now.Add(time.Minute)
	k, err := s2.Lift(ctx, mustScope(t, "upstream:bank"), "bob", "rotated the key")
	if err != nil || k.Engaged() || k.LiftedBy != "bob" || !k.LiftedAt.Equal(now) {
		t.Fatalf("Lift = %+v, %v", k, err)
	}
	if _, ok := s2.Killed(sub); ok {
		t.Errorf("killed after the lift")
	}
	hist, err := s2.History(ctx)
	if err != nil || len(hist) != 1 || hist[0].Engaged() {
		t.Errorf("History = %+v, %v; want the one lifted kill", hist, err)
	}
	if len(s2.Engaged()) != 0 {
		t.Errorf("Engaged = %v after the lift", s2.Engaged())
	}
}

func TestVoidedSince(t *testing.T) {
	now := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	s, _ := openSwitches(t, filepath.Join(t.TempDir(), "c.db"), func() time.Time { return now })
	ctx := t.Context()
	sub := &contain.Subject{Agents: []string{"planner", "mailer"}, User: "dana", Task: "tsk_1", Tool: "send", Upstream: "mail"}
	issued := now.Add(-time.Minute)
	if s.VoidedSince(sub, issued) {
		t.Fatal("voided before any kill")
	}
	// Tool and upstream kills void no token: a token is not theirs alone.
	for _, sc := range []string{"tool:send", "upstream:mail"} {
		if _, err := s.Engage(ctx, mustScope(t, sc), "alice", "x"); err != nil {
			t.Fatal(err)
		}
	}
	if s.VoidedSince(sub, issued) {
		t.Errorf("a tool or upstream kill voided a token")
	}
	if _, err := s.Engage(ctx, mustScope(t, "agent:planner"), "alice", "x"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Lift(ctx, mustScope(t, "agent:planner"), "alice", "y"); err != nil {
		t.Fatal(err)
	}
	// Lifted, the kill still voids what was issued before it, not what came after.
	if !s.VoidedSince(sub, issued) {
		t.Errorf("a token issued before a (since lifted) kill of its delegating agent is not void")
	}
	if s.VoidedSince(sub, now.Add(time.Second)) {
		t.Errorf("a token issued after the kill is void")
	}
	if !s.VoidedSince(sub, now) {
		t.Errorf("a token issued in the instant of the kill is not void (must fail closed)")
	}
}

// TestKillCancelsInFlight: a kill cancels exactly the calls in flight in its scope, with
// a cause that says which kill, and lets Wait see them end.
func TestKillCancelsInFlight(t *testing.T) {
	s, _ := openSwitches(t, filepath.Join(t.TempDir(), "c.db"), nil)
	ctx := t.Context()
	in := &contain.Subject{Agents: []string{"a"}, Tool: "t"}
	out := &contain.Subject{Agents: []string{"b"}, Tool: "t"}
	cin, leaveIn, k := s.Enter(ctx, in)
	if k != nil {
		t.Fatal("killed before any kill")
	}
	cout, leaveOut, _ := s.Enter(ctx, out)
	defer leaveOut()
	if s.InFlight() != 2 {
		t.Fatalf("InFlight = %d, want 2", s.InFlight())
	}
	ended := make(chan struct{})
	go func() {
		<-cin.Done()
		leaveIn()
		close(ended)
	}()
	e, err := s.Engage(ctx, mustScope(t, "agent:a"), "alice", "runaway")
	if err != nil {
		t.Fatal(err)
	}
	if e.Cancelled != 1 {
		t.Errorf("Cancelled = %d, want 1", e.Cancelled)
	}
	if left := e.Wait(ctx); left != 0 {
		t.Errorf("Wait left %d running", left)
	}
	<-ended
	var ke *contain.KilledError
	if !errors.As(context.Cause(cin), &ke) || ke.Kill.ID != e.Kill.ID {
		t.Errorf("cause of the cancelled call = %v, want a KilledError for the kill", context.Cause(cin))
	}
	if cout.Err() != nil {
		t.Errorf("a call outside the scope was cancelled: %v", context.Cause(cout))
	}
	if _, _, k := s.Enter(ctx, in); k == nil {
		t.Errorf("a new call in scope entered without the kill")
	}
	wctx, cancel := context.WithCancel(ctx)
	cancel()
	e2, err := s.Engage(ctx, mustScope(t, "agent:b"), "alice", "x")
	if err != nil {
		t.Fatal(err)
	}
	if left := e2.Wait(wctx); left != 1 {
		t.Errorf("Wait with a done context and a call still running = %d left, want 1", left)
	}
}

// TestKillRace: calls entering while a kill is engaged either see the kill or are
// cancelled by it — none escapes (run with -race).
func TestKillRace(t *testing.T) {
	s, _ := openSwitches(t, filepath.Join(t.TempDir(), "c.db"), nil)
	ctx := t.Context()
	sub := &contain.Subject{Agents: []string{"a"}}
	var escaped, seen atomic.Int64
	var engaged atomic.Bool
	var wg sync.WaitGroup
	running := make(chan struct{}, 16)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			running <- struct{}{}
			for i := 0; i < 1_000_000; i++ {
				cctx, leave, k := s.Enter(ctx, sub)
				// Engage returned before this read and the call did not see the kill:
				// it was in flight when the kill scanned, so it must be cancelled.
				if k == nil && engaged.Load() && cctx.Err() == nil {
					escaped.Add(1)
				}
				leave()
				if k != nil {
					seen.Add(1)
					return
				}
			}
		}()
	}
	for range 16 {
		<-running
	}
	if _, err := s.Engage(ctx, mustScope(t, "agent:a"), "alice", "x"); err != nil {
		t.Fatal(err)
	}
	engaged.Store(true)
	wg.Wait()
	if seen.Load() != 16 {
		t.Errorf("%d of 16 callers saw the kill", seen.Load())
	}
	if escaped.Load() != 0 {
		t.Errorf("%d calls escaped the kill", escaped.Load())
	}
	if s.InFlight() != 0 {
		t.Errorf("InFlight = %d after every call left", s.InFlight())
	}
}

func BenchmarkSwitchesEnter(b *testing.B) {
	db, err := sqlite.Open(b.Context(), filepath.Join(b.TempDir(), "c.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	s, err := contain.NewSwitches(b.Context(), db, nil)
	if err != nil {
		b.Fatal(err)
	}
	// One unrelated kill engaged, as in production: the map is not empty.
	if _, err := s.Engage(b.Context(), contain.Scope{Kind: contain.ScopeAgent, Name: "someone-else"}, "alice", "x"); err != nil {
		b.Fatal(err)
	}
	sub := &contain.Subject{Agents: []string{"a"}, User: "u", Task: "t", Tool: "tool", Upstream: "up"}
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			_, leave, k := s.Enter(ctx, sub)
			if k != nil {
				b.Fatal("killed")
			}
			leave()
		}
	})
}
