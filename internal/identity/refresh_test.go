package identity_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chaperone-dev/chaperone/internal/audit"
	"github.com/chaperone-dev/chaperone/internal/identity"
	"github.com/chaperone-dev/chaperone/internal/store/sqlite"
	"github.com/chaperone-dev/chaperone/internal/testclock"
)

// fakeStore is the real SQLite store with its single-record lookups counted, slowed
// down or failed on demand.
type fakeStore struct {
	*sqlite.DB
	fail                  atomic.Bool
	agentCalls, taskCalls atomic.Int64
	// inflight and maxInflight measure the lookups running at once; a lookup waits for
	// gate when it is not nil.
	inflight, maxInflight atomic.Int64
	gate                  chan struct{}
}

var errFakeDown = errors.New("fake store down")

func (f *fakeStore) enter(calls *atomic.Int64) error {
	calls.Add(1)
	n := f.inflight.Add(1)
	for {
		m := f.maxInflight.Load()
		if n <= m || f.maxInflight.CompareAndSwap(m, n) {
			break
		}
	}
	if f.gate != nil {
		<-f.gate
	}
	if f.fail.Load() {
		f.inflight.Add(-1)
		return errFakeDown
	}
	return nil
}

func (f *fakeStore) Agent(ctx context.Context, id string) (identity.AgentRecord, bool, error) {
	if err := f.enter(&f.agentCalls); err != nil {
		return identity.AgentRecord{}, false, err
	}
	defer f.inflight.Add(-1)
	return f.DB.Agent(ctx, id)
}

func (f *fakeStore) Task(ctx context.Context, id string) (identity.TaskRecord, bool, error) {
	if err := f.enter(&f.taskCalls); err != nil {
		return identity.TaskRecord{}, false, err
	}
	defer f.inflight.Add(-1)
	return f.DB.Task(ctx, id)
}

func (f *fakeStore) Agents(ctx context.Context) ([]identity.AgentRecord, error) {
	if f.fail.Load() {
		return nil, errFakeDown
	}
	return f.DB.Agents(ctx)
}

func (f *fakeStore) Tasks(ctx context.Context) ([]identity.TaskRecord, error) {
	if f.fail.Load() {
		return nil, errFakeDown
	}
	return f.DB.Tasks(ctx)
}

// fakeAudit records events in memory, calling hook (if set) on each first.
type fakeAudit struct {
	mu     sync.Mutex
	events []audit.Event
	hook   func(*audit.Event)
}

func (f *fakeAudit) Append(ctx context.Context, e *audit.Event) error {
	if f.hook != nil {
		f.hook(e)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.events = append(f.events, *e)
	return nil
}

// procs are two gateway processes, A and B, sharing one SQLite file; B's store is a
// fakeStore over its own handle.
type procs struct {
	clock          *testclock.Clock
	audit          *fakeAudit
	storeB         *fakeStore
	dirA, dirB     *identity.Directory
	tasksA, tasksB *identity.Tasks
}

func newProcs(t *testing.T, gate chan struct{}) *procs {
	t.Helper()
	path := filepath.Join(t.TempDir(), "shared.db")
	open := func() *sqlite.DB {
		db, err := sqlite.Open(t.Context(), path)
		if err != nil {
			t.Fatalf("sqlite.Open: %v", err)
		}
		t.Cleanup(func() { db.Close() })
		return db
	}
	dbA := open()
	p := &procs{clock: testclock.New(t0), audit: &fakeAudit{}, storeB: &fakeStore{DB: open(), gate: gate}}
	var err error
	if p.dirA, err = identity.NewDirectory(t.Context(), identity.DirectoryOptions{Store: dbA, Audit: p.audit, Now: p.clock.Now, Static: []identity.Registration{staticAgent}}); err != nil {
		t.Fatal(err)
	}
	if p.dirB, err = identity.NewDirectory(t.Context(), identity.DirectoryOptions{Store: p.storeB, Audit: p.audit, Now: p.clock.Now, Static: []identity.Registration{staticAgent}}); err != nil {
		t.Fatal(err)
	}
	if p.tasksA, err = identity.NewTasks(t.Context(), identity.TasksOptions{Store: dbA, Audit: p.audit, Now: p.clock.Now}); err != nil {
		t.Fatal(err)
	}
	if p.tasksB, err = identity.NewTasks(t.Context(), identity.TasksOptions{Store: p.storeB, Audit: p.audit, Now: p.clock.Now}); err != nil {
		t.Fatal(err)
	}
	return p
}

func (p *procs) register(t *testing.T, id string) string {
	t.Helper()
	secret, err := p.dirA.Register(t.Context(), validSpec(id), "alice")
	if err != nil {
		t.Fatalf("Register(%q) on A: %v", id, err)
	}
	return secret
}

func (p *procs) start(t *testing.T, agent string) identity.TaskRecord {
	t.Helper()
	rec, err := p.tasksA.Start(t.Context(), identity.TaskRecord{Agent: agent, User: "dana", Tools: []string{"read_file"}, ExpiresAt: t0.Add(time.Hour)})
	if err != nil {
		t.Fatalf("Start on A: %v", err)
	}
	return rec
}

// TestDirectoryLoad: an agent registered by A is found by B's Load before B refreshed,
// and then answered from memory.
func TestDirectoryLoad(t *testing.T) {
	t.Parallel()
	p := newProcs(t, nil)
	ctx := t.Context()
	secret := p.register(t, "mail")
	if _, ok := p.dirB.Agent("mail"); ok {
		t.Fatal("B knows the agent without a lookup: this test no longer tests Load")
	}
	a, ok, err := p.dirB.Load(ctx, "mail")
	if err != nil || !ok || a.Status != identity.StatusActive || a.Owner != "alice@example.com" {
		t.Fatalf("B.Load(mail) = %+v, %v, %v; want the active agent", a, ok, err)
	}
	if a, ok := p.dirB.Agent("mail"); !ok || a.Status != identity.StatusActive {
		t.Errorf("B.Agent(mail) after Load = %+v, %v; want it in memory", a, ok)
	}
	if !p.dirB.VerifySecret("mail", secret) {
		t.Error("B.VerifySecret(mail) after Load = false, want true")
	}
	calls := p.storeB.agentCalls.Load()
	for range 10 {
		if _, ok, err := p.dirB.Load(ctx, "mail"); !ok || err != nil {
			t.Fatalf("B.Load(mail) again = %v, %v", ok, err)
		}
		if _, ok, err := p.dirB.Load(ctx, "config-bot"); !ok || err != nil {
			t.Fatalf("B.Load(config-bot) = %v, %v; want the declared agent", ok, err)
		}
	}
	if n := p.storeB.agentCalls.Load() - calls; n != 0 {
		t.Errorf("Load of agents in memory asked the store %d times, want 0", n)
	}
}

// TestDirectoryLoadMisses: unknown ids are remembered briefly, malformed ones never
// reach the store, and a store error is an error.
func TestDirectoryLoadMisses(t *testing.T) {
	t.Parallel()
	p := newProcs(t, nil)
	ctx := t.Context()
	for range 100 {
		if a, ok, err := p.dirB.Load(ctx, "ghost"); ok || err != nil {
			t.Fatalf("B.Load(ghost) = %+v, %v, %v; want not found", a, ok, err)
		}
	}
	if n := p.storeB.agentCalls.Load(); n != 1 {
		t.Errorf("100 Loads of one unknown id asked the store %d times, want 1", n)
	}
	for _, id := range []string{"", "Upper", "has space", "x/../y", string(make([]byte, 100))} {
		if _, ok, err := p.dirB.Load(ctx, id); ok || err != nil {
			t.Errorf("B.Load(%q) = %v, %v; want not found", id, ok, err)
		}
	}
	if n := p.storeB.agentCalls.Load(); n != 1 {
		t.Errorf("Loads of malformed ids asked the store: %d calls, want 1", n)
	}

	// Registered meanwhile: still unknown to B for the rest of the second...
	p.register(t, "ghost")
	if _, ok, _ := p.dirB.Load(ctx, "ghost"); ok {
		t.Error("B.Load(ghost) within a second of the miss asked the store again")
	}
	// ...then found.
	p.clock.Advance(time.Second)
	if a, ok, err := p.dirB.Load(ctx, "ghost"); !ok || err != nil || a.Status != identity.StatusActive {
		t.Errorf("B.Load(ghost) a second later = %+v, %v, %v; want the active agent", a, ok, err)
	}

	// A refresh forgets the misses at once.
	if _, ok, _ := p.dirB.Load(ctx, "later"); ok {
		t.Fatal("B.Load(later) found an agent never registered")
	}
	p.register(t, "later")
	if err := p.dirB.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := p.dirB.Load(ctx, "later"); !ok || err != nil {
		t.Errorf("B.Load(later) after Refresh = %v, %v; want found", ok, err)
	}

	p.storeB.fail.Store(true)
	if a, ok, err := p.dirB.Load(ctx, "unheard-of"); !errors.Is(err, errFakeDown) || ok || a != nil {
		t.Errorf("B.Load with the store down = %+v, %v, %v; want the store's error", a, ok, err)
	}
}

// TestDirectoryLoadBoundsLookups: a flood of unknown ids runs at most a few store
// lookups at once; the others wait, or give up with their context.
func TestDirectoryLoadBoundsLookups(t *testing.T) {
	t.Parallel()
	gate := make(chan struct{})
	p := newProcs(t, gate)
	ctx := t.Context()
	const n = 32
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			if _, ok, err := p.dirB.Load(ctx, fmt.Sprintf("flood-%d", i)); ok || err != nil {
				t.Errorf("Load(flood-%d) = %v, %v; want not found", i, ok, err)
			}
		})
	}
	// Wait until the lookups that may run are all in the store.
	deadline := time.Now().Add(10 * time.Second)
	for p.storeB.inflight.Load() < 4 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	// One more, whose context ends while it waits for a slot: it fails closed.
	cctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if _, ok, err := p.dirB.Load(cctx, "one-more"); ok || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Load with every lookup slot taken and a short context = %v, %v; want DeadlineExceeded", ok, err)
	}
	close(gate)
	wg.Wait()
	if m := p.storeB.maxInflight.Load(); m > 4 {
		t.Errorf("%d store lookups ran at once, want at most 4", m)
	}
	if c := p.storeB.agentCalls.Load(); c != n {
		t.Errorf("%d store lookups for %d distinct ids", c, n)
	}
}

// TestDirectoryRefresh: changes made by A are seen by B after Refresh or RefreshAgent;
// declared agents stay; a failed refresh changes nothing.
func TestDirectoryRefresh(t *testing.T) {
	t.Parallel()
	p := newProcs(t, nil)
	ctx := t.Context()
	p.register(t, "mail")
	p.register(t, "files")
	if err := p.dirB.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if a, ok := p.dirB.Agent("files"); !ok || a.Status != identity.StatusActive {
		t.Fatalf("B.Agent(files) after Refresh = %+v, %v; want active", a, ok)
	}
	if err := p.dirA.SetStatus(ctx, "mail", identity.StatusSuspended, "investigating", "alice"); err != nil {
		t.Fatal(err)
	}
	if err := p.dirA.SetStatus(ctx, "files", identity.StatusRevoked, "leaked", "alice"); err != nil {
		t.Fatal(err)
	}
	if a, _ := p.dirB.Agent("mail"); a.Status != identity.StatusActive {
		t.Fatal("B saw the suspension before refreshing: this test no longer tests Refresh")
	}

	p.storeB.fail.Store(true)
	if err := p.dirB.Refresh(ctx); !errors.Is(err, errFakeDown) {
		t.Errorf("Refresh with the store down = %v, want the store's error", err)
	}
	if err := p.dirB.RefreshAgent(ctx, "mail"); !errors.Is(err, errFakeDown) {
		t.Errorf("RefreshAgent with the store down = %v, want the store's error", err)
	}
	if a, _ := p.dirB.Agent("mail"); a.Status != identity.StatusActive {
		t.Errorf("a failed refresh changed B.Agent(mail) to %q", a.Status)
	}
	p.storeB.fail.Store(false)

	if err := p.dirB.RefreshAgent(ctx, "mail"); err != nil {
		t.Fatal(err)
	}
	if a, _ := p.dirB.Agent("mail"); a.Status != identity.StatusSuspended {
		t.Errorf("B.Agent(mail) after RefreshAgent = %q, want suspended", a.Status)
	}
	if a, _ := p.dirB.Agent("files"); a.Status != identity.StatusActive {
		t.Errorf("RefreshAgent(mail) changed files to %q", a.Status)
	}
	if err := p.dirB.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if a, _ := p.dirB.Agent("files"); a.Status != identity.StatusRevoked {
		t.Errorf("B.Agent(files) after Refresh = %q, want revoked", a.Status)
	}
	if a, ok := p.dirB.Agent("config-bot"); !ok || a.Status != identity.StatusActive {
		t.Errorf("B.Agent(config-bot) after Refresh = %+v, %v; want the declared agent", a, ok)
	}
	if err := p.dirB.RefreshAgent(ctx, "config-bot"); err != nil {
		t.Errorf("RefreshAgent of a declared agent = %v", err)
	}
	if err := p.dirB.RefreshAgent(ctx, "never-stored"); err != nil {
		t.Errorf("RefreshAgent of an unknown agent = %v", err)
	}
	if _, ok := p.dirB.Agent("never-stored"); ok {
		t.Error("RefreshAgent of an unknown agent made it known")
	}
}

// TestDirectoryRefreshCollision: a stored agent with the id of a declared one is left
// out and reported; the declared one stands.
func TestDirectoryRefreshCollision(t *testing.T) {
	t.Parallel()
	p := newProcs(t, nil)
	ctx := t.Context()
	// A process without the declaration registers the id.
	plain, err := identity.NewDirectory(ctx, identity.DirectoryOptions{Store: p.storeB.DB, Audit: p.audit, Now: p.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := plain.Register(ctx, validSpec("config-bot"), "mallory"); err != nil {
		t.Fatal(err)
	}
	p.register(t, "mail")
	err = p.dirB.Refresh(ctx)
	if err == nil || !strings.Contains(err.Error(), `stored agent "config-bot" is also declared`) {
		t.Errorf("Refresh with a colliding stored agent = %v, want an error naming it", err)
	}
	if rec, ok := p.dirB.Record("config-bot"); !ok || !rec.Declared || rec.Agent.Owner != "ops@example.com" {
		t.Errorf("B.Record(config-bot) = %+v, %v; want the declared agent", rec, ok)
	}
	if _, ok := p.dirB.Agent("mail"); !ok {
		t.Error("the other stored agents were not refreshed")
	}
}

// TestSetStatusStale: SetStatus decides from the store, not from a stale snapshot: a
// revocation elsewhere is final here too, and an agent registered elsewhere can be
// suspended here.
func TestSetStatusStale(t *testing.T) {
	t.Parallel()
	p := newProcs(t, nil)
	ctx := t.Context()
	p.register(t, "mail")
	if err := p.dirB.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if err := p.dirA.SetStatus(ctx, "mail", identity.StatusRevoked, "leaked", "alice"); err != nil {
		t.Fatal(err)
	}
	// B still thinks the agent active.
	if err := p.dirB.SetStatus(ctx, "mail", identity.StatusSuspended, "looks odd", "bob"); !errors.Is(err, identity.ErrAgentRevoked) {
		t.Errorf("B.SetStatus(suspend) of an agent revoked by A = %v, want ErrAgentRevoked", err)
	}
	if a, _ := p.dirB.Agent("mail"); a.Status != identity.StatusRevoked {
		t.Errorf("B.Agent(mail) after the refused change = %q, want revoked", a.Status)
	}
	if rec, _, err := p.storeB.DB.Agent(ctx, "mail"); err != nil || rec.Agent.Status != identity.StatusRevoked {
		t.Errorf("stored mail = %q, %v; want still revoked", rec.Agent.Status, err)
	}

	p.register(t, "files")
	if err := p.dirB.SetStatus(ctx, "files", identity.StatusSuspended, "investigating", "bob"); err != nil {
		t.Fatalf("B.SetStatus of an agent registered by A = %v", err)
	}
	if a, ok := p.dirB.Agent("files"); !ok || a.Status != identity.StatusSuspended {
		t.Errorf("B.Agent(files) = %+v, %v; want suspended", a, ok)
	}
	if err := p.dirB.SetStatus(ctx, "nobody", identity.StatusSuspended, "x", "bob"); !errors.Is(err, identity.ErrUnknownAgent) {
		t.Errorf("SetStatus(nobody) = %v, want ErrUnknownAgent", err)
	}
	if err := p.dirB.SetStatus(ctx, "config-bot", identity.StatusSuspended, "x", "bob"); !errors.Is(err, identity.ErrDeclaredAgent) {
		t.Errorf("SetStatus(config-bot) = %v, want ErrDeclaredAgent", err)
	}
}

// TestRegisterNotActiveBeforeAudited: while A's registration is being audited, B can
// find the agent in the store but not use it.
func TestRegisterNotActiveBeforeAudited(t *testing.T) {
	t.Parallel()
	p := newProcs(t, nil)
	ctx := t.Context()
	var seen *identity.Agent
	var seenErr error
	p.audit.hook = func(e *audit.Event) {
		if e.Kind == audit.KindAgentRegistered {
			a, _, err := p.dirB.Load(ctx, e.Agent)
			if a != nil {
				c := *a
				seen = &c
			}
			seenErr = err
		}
	}
	p.register(t, "mail")
	p.audit.hook = nil
	if seenErr != nil || seen == nil || seen.Status == identity.StatusActive {
		t.Errorf("B.Load(mail) during the registration's audit = %+v, %v; want it stored but not active", seen, seenErr)
	}
	if a, _ := p.dirA.Agent("mail"); a.Status != identity.StatusActive {
		t.Errorf("A.Agent(mail) after Register = %q, want active", a.Status)
	}
	if err := p.dirB.RefreshAgent(ctx, "mail"); err != nil {
		t.Fatal(err)
	}
	if a, _ := p.dirB.Agent("mail"); a.Status != identity.StatusActive {
		t.Errorf("B.Agent(mail) after RefreshAgent = %q, want active", a.Status)
	}
}

// TestRefreshVisibleAtOnce: readers running while B refreshes see the suspension
// made by A as soon as Refresh returns (run with -race).
func TestRefreshVisibleAtOnce(t *testing.T) {
	t.Parallel()
	p := newProcs(t, nil)
	ctx := t.Context()
	p.register(t, "mail")
	task := p.start(t, "mail")
	if err := p.dirB.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if err := p.tasksB.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	var refreshed atomic.Bool
	var stale atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				after := refreshed.Load()
				a, _ := p.dirB.Agent("mail")
				active := p.tasksB.Active(task.ID)
				if after && (a.Status == identity.StatusActive || active) {
					stale.Add(1)
				}
			}
		})
	}
	if err := p.dirA.SetStatus(ctx, "mail", identity.StatusSuspended, "x", "alice"); err != nil {
		t.Fatal(err)
	}
	if err := p.tasksA.End(ctx, task.ID, "alice", "done"); err != nil {
		t.Fatal(err)
	}
	var rwg sync.WaitGroup
	for range 4 {
		rwg.Go(func() {
			if err := p.dirB.Refresh(ctx); err != nil {
				t.Errorf("Refresh: %v", err)
			}
			if err := p.tasksB.Refresh(ctx); err != nil {
				t.Errorf("Tasks.Refresh: %v", err)
			}
		})
	}
	rwg.Wait()
	refreshed.Store(true)
	// Let the readers run a while after the refresh.
	for range 1000 {
		if _, ok := p.dirB.Agent("mail"); !ok {
			t.Fatal("mail vanished")
		}
	}
	close(stop)
	wg.Wait()
	if stale.Load() != 0 {
		t.Errorf("%d reads after Refresh returned saw the agent active or the task open", stale.Load())
	}
}

// TestTasksLoadAndRefresh: a task started by A is usable on B at once; ended by A, it
// is refused on B after Refresh or RefreshTask.
func TestTasksLoadAndRefresh(t *testing.T) {
	t.Parallel()
	p := newProcs(t, nil)
	ctx := t.Context()
	task := p.start(t, "mail")
	if p.tasksB.Active(task.ID) {
		t.Fatal("B knows the task without a lookup: this test no longer tests Load")
	}
	if ok, err := p.tasksB.LoadActive(ctx, task.ID); !ok || err != nil {
		t.Fatalf("B.LoadActive(%q) = %v, %v; want open", task.ID, ok, err)
	}
	if !p.tasksB.Active(task.ID) {
		t.Error("B.Active after LoadActive = false, want the task in memory")
	}
	if rec, ok, err := p.tasksB.Load(ctx, task.ID); !ok || err != nil || rec.Agent != "mail" || rec.User != "dana" {
		t.Errorf("B.Load(%q) = %+v, %v, %v", task.ID, rec, ok, err)
	}

	if err := p.tasksA.End(ctx, task.ID, "alice", "done"); err != nil {
		t.Fatal(err)
	}
	if !p.tasksB.Active(task.ID) {
		t.Fatal("B saw the end before refreshing: this test no longer tests RefreshTask")
	}
	if err := p.tasksB.RefreshTask(ctx, task.ID); err != nil {
		t.Fatal(err)
	}
	if p.tasksB.Active(task.ID) {
		t.Error("B.Active after RefreshTask = true, want the task ended")
	}
	// An ended task in memory is refused from memory: the store is not asked again.
	calls := p.storeB.taskCalls.Load()
	for range 10 {
		if ok, err := p.tasksB.LoadActive(ctx, task.ID); ok || err != nil {
			t.Fatalf("B.LoadActive of an ended task = %v, %v", ok, err)
		}
	}
	if n := p.storeB.taskCalls.Load() - calls; n != 0 {
		t.Errorf("LoadActive of an ended task in memory asked the store %d times, want 0", n)
	}

	other := p.start(t, "mail")
	if _, ok, err := p.tasksB.Load(ctx, other.ID); !ok || err != nil {
		t.Fatal(ok, err)
	}
	if err := p.tasksA.End(ctx, other.ID, "alice", "done"); err != nil {
		t.Fatal(err)
	}
	p.storeB.fail.Store(true)
	if err := p.tasksB.Refresh(ctx); !errors.Is(err, errFakeDown) {
		t.Errorf("Refresh with the store down = %v, want the store's error", err)
	}
	if !p.tasksB.Active(other.ID) {
		t.Error("a failed Refresh changed the task")
	}
	p.storeB.fail.Store(false)
	if err := p.tasksB.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if p.tasksB.Active(other.ID) {
		t.Error("B.Active after Refresh = true, want the task ended")
	}
}

// TestTasksLoadMisses: unknown task ids are remembered briefly; malformed ones never
// reach the store; a store error is an error.
func TestTasksLoadMisses(t *testing.T) {
	t.Parallel()
	p := newProcs(t, nil)
	ctx := t.Context()
	for range 100 {
		if ok, err := p.tasksB.LoadActive(ctx, "tsk_unknown"); ok || err != nil {
			t.Fatalf("LoadActive(tsk_unknown) = %v, %v", ok, err)
		}
	}
	for _, id := range []string{"", "tsk unknown", "tsk/x", string(make([]byte, 200))} {
		if ok, err := p.tasksB.LoadActive(ctx, id); ok || err != nil {
			t.Errorf("LoadActive(%q) = %v, %v; want false", id, ok, err)
		}
	}
	if n := p.storeB.taskCalls.Load(); n != 1 {
		t.Errorf("store asked %d times, want 1", n)
	}
	p.clock.Advance(time.Second)
	p.storeB.fail.Store(true)
	if ok, err := p.tasksB.LoadActive(ctx, "tsk_unknown"); ok || !errors.Is(err, errFakeDown) {
		t.Errorf("LoadActive with the store down = %v, %v; want the store's error", ok, err)
	}
}

// TestEndStale: ending on B a task A ended already says so and catches B up; ending on
// B a task only A knew works and records its agent.
func TestEndStale(t *testing.T) {
	t.Parallel()
	p := newProcs(t, nil)
	ctx := t.Context()
	task := p.start(t, "mail")
	if _, _, err := p.tasksB.Load(ctx, task.ID); err != nil {
		t.Fatal(err)
	}
	if err := p.tasksA.End(ctx, task.ID, "alice", "done"); err != nil {
		t.Fatal(err)
	}
	if err := p.tasksB.End(ctx, task.ID, "bob", "also done"); !errors.Is(err, identity.ErrTaskEnded) {
		t.Errorf("B.End of a task ended by A = %v, want ErrTaskEnded", err)
	}
	if p.tasksB.Active(task.ID) {
		t.Error("B.Active after its End was refused = true, want ended")
	}

	other := p.start(t, "mail")
	if err := p.tasksB.End(ctx, other.ID, "bob", "stop"); err != nil {
		t.Fatalf("B.End of a task started by A = %v", err)
	}
	if rec, ok := p.tasksB.Get(other.ID); !ok || rec.EndedAt.IsZero() || rec.Agent != "mail" {
		t.Errorf("B.Get after End = %+v, %v; want the ended task", rec, ok)
	}
	p.audit.mu.Lock()
	last := p.audit.events[len(p.audit.events)-1]
	p.audit.mu.Unlock()
	if last.Kind != audit.KindTaskEnded || last.Task != other.ID || last.Agent != "mail" || last.User != "dana" {
		t.Errorf("audit event of B's End = %+v, want task.ended naming the agent and user", last)
	}
}

// TestAuthenticateAcrossProcesses: a token for an agent registered and a task started by
// A is accepted by B at once; a store that cannot answer refuses it.
func TestAuthenticateAcrossProcesses(t *testing.T) {
	t.Parallel()
	p := newProcs(t, nil)
	ctx := t.Context()
	p.register(t, "planner")
	p.register(t, "helper")
	task := p.start(t, "helper")
	key, _ := identity.GenerateSigningKey(t0)
	ks, _ := identity.NewKeySet([]identity.SigningKey{key}, time.Hour)
	iss, err := identity.NewIssuer(identity.IssuerOptions{Issuer: "https://gw", Audience: "https://gw", Keys: func() *identity.KeySet { return ks }, Now: p.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := iss.Mint(identity.Claims{Agent: "helper", Chain: []string{"planner", "helper"}, Depth: 1, Subject: "planner",
		Task: task.ID, Tools: []string{"read_file"}, Expiry: t0.Add(10 * time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	header := "Bearer " + tok
	b := &identity.Authenticator{Tokens: iss, Agents: p.dirB, Tasks: p.tasksB}

	// The store down first: B has heard of nothing, so it must refuse.
	p.storeB.fail.Store(true)
	if pr, f, err := b.Authenticate(header); !errors.Is(err, identity.ErrUnauthenticated) || f != identity.FailureLookup || pr != nil {
		t.Errorf("Authenticate with the store down = %v, %q, %v; want %q", pr, f, err, identity.FailureLookup)
	}
	p.storeB.fail.Store(false)
	p.clock.Advance(time.Second) // past any remembered miss
	// A request whose context is over cannot look anything up either.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, f, err := b.AuthenticateContext(cctx, header); err == nil || f != identity.FailureLookup {
		t.Errorf("AuthenticateContext with a cancelled context = %q, %v; want %q", f, err, identity.FailureLookup)
	}

	pr, f, err := b.AuthenticateContext(ctx, header)
	if err != nil || pr.Agent.ID != "helper" || pr.Task != task.ID {
		t.Fatalf("B.Authenticate of A's token = %+v, %q, %v; want helper's principal", pr, f, err)
	}
	// Now from memory: no store call.
	ac, tc := p.storeB.agentCalls.Load(), p.storeB.taskCalls.Load()
	for range 10 {
		if _, _, err := b.Authenticate(header); err != nil {
			t.Fatal(err)
		}
	}
	if p.storeB.agentCalls.Load() != ac || p.storeB.taskCalls.Load() != tc {
		t.Error("authenticating a known agent and task asked the store")
	}

	// Ended by A: refused by B once it has heard (RefreshTask).
	if err := p.tasksA.End(ctx, task.ID, "alice", "done"); err != nil {
		t.Fatal(err)
	}
	if err := p.tasksB.RefreshTask(ctx, task.ID); err != nil {
		t.Fatal(err)
	}
	if _, f, err := b.Authenticate(header); err == nil || f != identity.FailureTaskEnded {
		t.Errorf("Authenticate after the task ended elsewhere = %q, %v; want %q", f, err, identity.FailureTaskEnded)
	}

	// A suspension of the delegating agent by A: refused once B has heard.
	task2 := p.start(t, "helper")
	tok2, _ := iss.Mint(identity.Claims{Agent: "helper", Chain: []string{"planner", "helper"}, Depth: 1, Subject: "planner",
		Task: task2.ID, Tools: []string{"read_file"}, Expiry: t0.Add(10 * time.Minute)})
	if _, _, err := b.Authenticate("Bearer " + tok2); err != nil {
		t.Fatalf("Authenticate with a second task = %v", err)
	}
	if err := p.dirA.SetStatus(ctx, "planner", identity.StatusSuspended, "x", "alice"); err != nil {
		t.Fatal(err)
	}
	if err := p.dirB.RefreshAgent(ctx, "planner"); err != nil {
		t.Fatal(err)
	}
	if _, f, err := b.Authenticate("Bearer " + tok2); err == nil || f != identity.FailureAgentInactive {
		t.Errorf("Authenticate after the parent was suspended elsewhere = %q, %v; want %q", f, err, identity.FailureAgentInactive)
	}
}
