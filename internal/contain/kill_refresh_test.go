package contain_test

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chaperone-dev/chaperone/internal/contain"
	"github.com/chaperone-dev/chaperone/internal/store/sqlite"
)

// twoProcesses opens two Switches on one SQLite file, as two gateway processes sharing
// a database would.
func twoProcesses(t *testing.T) (a, b *contain.Switches) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "shared.db")
	a, _ = openSwitches(t, path, nil)
	b, _ = openSwitches(t, path, nil)
	return a, b
}

func causeKill(t *testing.T, ctx context.Context) (contain.Kill, bool) {
	t.Helper()
	var ke *contain.KilledError
	if !errors.As(context.Cause(ctx), &ke) {
		return contain.Kill{}, false
	}
	return ke.Kill, true
}

// TestRefreshEngagedElsewhere: a kill engaged by one process holds in another once it
// refreshes, and cancels that process's calls in flight in its scope.
func TestRefreshEngagedElsewhere(t *testing.T) {
	t.Parallel()
	a, b := twoProcesses(t)
	ctx := t.Context()
	in := &contain.Subject{Agents: []string{"runaway"}, User: "dana", Tool: "pay"}
	out := &contain.Subject{Agents: []string{"calm"}, Tool: "pay"}
	cin, leaveIn, _ := b.Enter(ctx, in)
	cout, leaveOut, _ := b.Enter(ctx, out)
	defer leaveOut()
	ended := make(chan struct{})
	go func() {
		<-cin.Done()
		leaveIn()
		close(ended)
	}()
	issued := time.Now().Add(-time.Minute)

	e, err := a.Engage(ctx, mustScope(t, "agent:runaway"), "alice", "loop")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := b.Killed(in); ok {
		t.Fatal("b sees the kill before refreshing: this test no longer tests Refresh")
	}
	got, err := b.Refresh(ctx)
	if err != nil {
		t.Fatalf("Refresh: %v", err)
	}
	if got.Cancelled != 1 || len(got.Kills) != 1 || got.Kill.ID != e.Kill.ID {
		t.Fatalf("Refresh = %+v, want the kill %d with 1 call cancelled", got, e.Kill.ID)
	}
	if left := got.Wait(ctx); left != 0 {
		t.Errorf("Wait left %d running", left)
	}
	<-ended
	if k, ok := causeKill(t, cin); !ok || k.ID != e.Kill.ID {
		t.Errorf("cause of the cancelled call = %v, want a KilledError for kill %d", context.Cause(cin), e.Kill.ID)
	}
	if cout.Err() != nil {
		t.Errorf("a call outside the scope was cancelled: %v", context.Cause(cout))
	}
	if k, ok := b.Killed(in); !ok || k.ID != e.Kill.ID {
		t.Errorf("b.Killed after Refresh = %+v, %v; want the kill", k, ok)
	}
	if !b.VoidedSince(in, issued) {
		t.Errorf("b: a token issued before the kill is not void")
	}
	// Nothing new: a second refresh cancels nothing.
	again, err := b.Refresh(ctx)
	if err != nil || again.Cancelled != 0 || len(again.Kills) != 0 || again.Kill.ID != 0 {
		t.Errorf("second Refresh = %+v, %v; want nothing newly engaged", again, err)
	}
}

// TestRefreshSeveralKills: every kill engaged elsewhere since the last refresh is
// published, and each call is cancelled once, by the oldest kill that covers it.
func TestRefreshSeveralKills(t *testing.T) {
	t.Parallel()
	a, b := twoProcesses(t)
	ctx := t.Context()
	both := &contain.Subject{Agents: []string{"x"}, User: "dana"}
	userOnly := &contain.Subject{Agents: []string{"y"}, User: "dana"}
	neither := &contain.Subject{Agents: []string{"z"}, User: "erin"}
	var ctxs []context.Context
	for _, sub := range []*contain.Subject{both, userOnly, neither} {
		c, leave, _ := b.Enter(ctx, sub)
		t.Cleanup(leave)
		ctxs = append(ctxs, c)
	}
	ka, err := a.Engage(ctx, mustScope(t, "agent:x"), "alice", "first")
	if err != nil {
		t.Fatal(err)
	}
	ku, err := a.Engage(ctx, mustScope(t, "user:dana"), "alice", "second")
	if err != nil {
		t.Fatal(err)
	}
	got, err := b.Refresh(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got.Cancelled != 2 || len(got.Kills) != 2 || got.Kills[0].ID != ka.Kill.ID || got.Kills[1].ID != ku.Kill.ID || got.Kill.ID != ku.Kill.ID {
		t.Fatalf("Refresh = %+v; want kills %d then %d, 2 calls cancelled", got, ka.Kill.ID, ku.Kill.ID)
	}
	if k, _ := causeKill(t, ctxs[0]); k.ID != ka.Kill.ID {
		t.Errorf("call covered by both: cancelled by kill %d, want %d (the oldest)", k.ID, ka.Kill.ID)
	}
	if k, _ := causeKill(t, ctxs[1]); k.ID != ku.Kill.ID {
		t.Errorf("call covered by the user kill: cancelled by kill %d, want %d", k.ID, ku.Kill.ID)
	}
	if ctxs[2].Err() != nil {
		t.Errorf("a call covered by neither was cancelled: %v", context.Cause(ctxs[2]))
	}
	if n := len(b.Engaged()); n != 2 {
		t.Errorf("b.Engaged has %d kills, want 2", n)
	}
}

// TestRefreshLiftedElsewhere: a lift in one process stops refusing calls in another once
// it refreshes; what the kill voided stays void.
func TestRefreshLiftedElsewhere(t *testing.T) {
	t.Parallel()
	a, b := twoProcesses(t)
	ctx := t.Context()
	sub := &contain.Subject{Agents: []string{"a"}}
	issued := time.Now().Add(-time.Minute)
	if _, err := a.Engage(ctx, mustScope(t, "agent:a"), "alice", "x"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Lift(ctx, mustScope(t, "agent:a"), "alice", "fixed"); err != nil {
		t.Fatal(err)
	}
	if _, ok := b.Killed(sub); !ok {
		t.Fatal("b dropped the kill before refreshing")
	}
	e, err := b.Refresh(ctx)
	if err != nil || e.Cancelled != 0 || len(e.Kills) != 0 {
		t.Fatalf("Refresh after a lift = %+v, %v; want nothing cancelled", e, err)
	}
	if _, ok := b.Killed(sub); ok {
		t.Error("b still refuses calls after refreshing a lift")
	}
	if !b.VoidedSince(sub, issued) {
		t.Error("b: a token issued before the lifted kill is no longer void")
	}
	_, leave, k := b.Enter(ctx, sub)
	leave()
	if k != nil {
		t.Errorf("Enter after the lift = kill %d, want none", k.ID)
	}
}

// TestEngageStale: engaging a scope another process has engaged, unheard of here,
// returns ErrKillEngaged as the store says, and makes that kill hold here at once.
func TestEngageStale(t *testing.T) {
	t.Parallel()
	a, b := twoProcesses(t)
	ctx := t.Context()
	sub := &contain.Subject{Agents: []string{"a"}}
	cctx, leave, _ := b.Enter(ctx, sub)
	defer leave()
	e, err := a.Engage(ctx, mustScope(t, "agent:a"), "alice", "x")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Engage(ctx, mustScope(t, "agent:a"), "bob", "y"); !errors.Is(err, contain.ErrKillEngaged) {
		t.Fatalf("Engage of a scope engaged elsewhere = %v, want ErrKillEngaged", err)
	}
	if k, ok := b.Killed(sub); !ok || k.ID != e.Kill.ID || k.By != "alice" {
		t.Errorf("b.Killed after the refused Engage = %+v, %v; want alice's kill", k, ok)
	}
	if k, ok := causeKill(t, cctx); !ok || k.ID != e.Kill.ID {
		t.Errorf("b's call in scope: cause %v, want alice's kill", context.Cause(cctx))
	}
}

// TestLiftStale: lifting a scope lifted elsewhere returns ErrNotKilled and drops the
// stale kill; lifting a kill engaged elsewhere and unheard of here works.
func TestLiftStale(t *testing.T) {
	t.Parallel()
	a, b := twoProcesses(t)
	ctx := t.Context()
	sub := &contain.Subject{Agents: []string{"a"}}
	if _, err := a.Engage(ctx, mustScope(t, "agent:a"), "alice", "x"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Lift(ctx, mustScope(t, "agent:a"), "alice", "done"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Lift(ctx, mustScope(t, "agent:a"), "bob", "also done"); !errors.Is(err, contain.ErrNotKilled) {
		t.Fatalf("Lift of a scope lifted elsewhere = %v, want ErrNotKilled", err)
	}
	if _, ok := b.Killed(sub); ok {
		t.Error("b still holds the kill lifted elsewhere after its Lift was refused")
	}

	// Engaged by a, unheard of by b: b can lift it, and what it voided stays void.
	issued := time.Now().Add(-time.Minute)
	e, err := a.Engage(ctx, mustScope(t, "user:dana"), "alice", "x")
	if err != nil {
		t.Fatal(err)
	}
	k, err := b.Lift(ctx, mustScope(t, "user:dana"), "bob", "false alarm")
	if err != nil || k.ID != e.Kill.ID || k.Engaged() {
		t.Fatalf("b.Lift of a kill engaged by a = %+v, %v; want kill %d lifted", k, err, e.Kill.ID)
	}
	if !b.VoidedSince(&contain.Subject{User: "dana"}, issued) {
		t.Error("b: a token issued before a kill b lifted (without having seen it) is not void")
	}
}

// fakeKillStore is the real SQLite store whose Kills fails on demand.
type fakeKillStore struct {
	*sqlite.DB
	fail atomic.Bool
}

var errFakeDown = errors.New("fake store down")

func (f *fakeKillStore) Kills(ctx context.Context) ([]contain.Kill, error) {
	if f.fail.Load() {
		return nil, errFakeDown
	}
	return f.DB.Kills(ctx)
}

// TestRefreshStoreError: a refresh that cannot read the store changes nothing and says
// so.
func TestRefreshStoreError(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "shared.db")
	a, _ := openSwitches(t, path, nil)
	_, db := openSwitches(t, path, nil)
	fake := &fakeKillStore{DB: db}
	b, err := contain.NewSwitches(t.Context(), fake, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	sub := &contain.Subject{Agents: []string{"a"}}
	if _, err := a.Engage(ctx, mustScope(t, "agent:a"), "alice", "x"); err != nil {
		t.Fatal(err)
	}
	fake.fail.Store(true)
	if e, err := b.Refresh(ctx); !errors.Is(err, errFakeDown) || e != nil {
		t.Errorf("Refresh with the store down = %+v, %v; want the store's error", e, err)
	}
	fake.fail.Store(false)
	if _, err := b.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if _, ok := b.Killed(sub); !ok {
		t.Error("the kill does not hold after the store came back")
	}
}

// TestRefreshRace: calls entering on one process while another engages a kill and the
// first refreshes either see the kill or are cancelled by the refresh — none escapes
// (run with -race). Refreshes run concurrently with each other and with local engages.
func TestRefreshRace(t *testing.T) {
	t.Parallel()
	a, b := twoProcesses(t)
	ctx := t.Context()
	sub := &contain.Subject{Agents: []string{"a"}}
	var escaped, seen atomic.Int64
	var refreshed atomic.Bool
	var wg sync.WaitGroup
	const callers = 8
	running := make(chan struct{}, callers)
	for range callers {
		wg.Go(func() {
			running <- struct{}{}
			for range 1_000_000 {
				cctx, leave, k := b.Enter(ctx, sub)
				// Refresh returned before this read and the call did not see the kill:
				// it was in flight when the refresh scanned, so it must be cancelled.
				if k == nil && refreshed.Load() && cctx.Err() == nil {
					escaped.Add(1)
				}
				leave()
				if k != nil {
					seen.Add(1)
					return
				}
			}
		})
	}
	for range callers {
		<-running
	}
	if _, err := a.Engage(ctx, mustScope(t, "agent:a"), "alice", "x"); err != nil {
		t.Fatal(err)
	}
	var rwg sync.WaitGroup
	for i := range 4 {
		rwg.Go(func() {
			if _, err := b.Refresh(ctx); err != nil {
				t.Errorf("Refresh: %v", err)
			}
		})
		rwg.Go(func() {
			// Local engages of other scopes, interleaved with the refreshes.
			sc := contain.Scope{Kind: contain.ScopeTool, Name: string(rune('p' + i))}
			if _, err := b.Engage(ctx, sc, "bob", "y"); err != nil {
				t.Errorf("Engage(%s): %v", sc, err)
			}
		})
	}
	rwg.Wait()
	refreshed.Store(true)
	wg.Wait()
	if seen.Load() != callers {
		t.Errorf("%d of %d callers saw the kill", seen.Load(), callers)
	}
	if escaped.Load() != 0 {
		t.Errorf("%d calls escaped the kill", escaped.Load())
	}
	if n := len(b.Engaged()); n != 5 {
		t.Errorf("b.Engaged has %d kills, want 5 (a's and b's four)", n)
	}
}
