package identity

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/chaperone-dev/chaperone/internal/audit"
)

// Sentinel errors of [Tasks]. They are returned wrapped; test with errors.Is.
var (
	// ErrUnknownTask is returned for an id no task has.
	ErrUnknownTask = errors.New("unknown task")
	// ErrTaskEnded is returned for ending a task that has already ended.
	ErrTaskEnded = errors.New("task already ended")
	// ErrTaskExists is returned for starting a task with an id already in use.
	ErrTaskExists = errors.New("task already exists")
)

// TaskIDPrefix starts every generated task id.
const TaskIDPrefix = "tsk_"

// MaxTaskTools bounds the tools a task may name.
const MaxTaskTools = 256

// taskHistory is how long an ended or expired task stays in memory, for [Tasks.List];
// the store keeps it for good.
const taskHistory = 24 * time.Hour

var taskIDPattern = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,128}$`)

// TaskRecord is a task: a unit of work an agent does, possibly for a user. Access tokens
// are bound to a task; ending it voids them all at once.
type TaskRecord struct {
	ID    string
	Agent string   // the agent doing the work
	User  string   // the user it works for; "" if none
	Tools []string // the tools the task may use, as given by its creator
	// CreatedAt is when the task started; ExpiresAt when it ends on its own.
	CreatedAt, ExpiresAt time.Time
	// EndedAt is when it was ended; zero while it is open. EndedBy and EndReason say who
	// ended it and why.
	EndedAt   time.Time
	EndedBy   string
	EndReason string
}

// open reports whether r can be used at now: not ended and not expired.
func (r *TaskRecord) open(now time.Time) bool {
	return r.EndedAt.IsZero() && now.Before(r.ExpiresAt)
}

// closedAt returns when r stopped being usable: its end, or its expiry.
func (r *TaskRecord) closedAt() time.Time {
	if !r.EndedAt.IsZero() && r.EndedAt.Before(r.ExpiresAt) {
		return r.EndedAt
	}
	return r.ExpiresAt
}

func (r TaskRecord) clone() TaskRecord {
	r.Tools = slices.Clone(r.Tools)
	return r
}

// TaskStore persists tasks.
type TaskStore interface {
	// PutTask stores a new task; it returns an error wrapping [ErrTaskExists] if the id
	// is taken.
	PutTask(ctx context.Context, rec TaskRecord) error
	// EndTask marks an open task ended; it returns an error wrapping [ErrUnknownTask] or
	// [ErrTaskEnded].
	EndTask(ctx context.Context, id, by, reason string, at time.Time) error
	// Tasks returns every stored task.
	Tasks(ctx context.Context) ([]TaskRecord, error)
	// Task returns the stored task with the id, and false if there is none.
	Task(ctx context.Context, id string) (TaskRecord, bool, error)
}

// TasksOptions configures [Tasks].
type TasksOptions struct {
	// Store holds tasks. Required.
	Store TaskStore
	// Audit records every task started and ended. Required.
	Audit Recorder
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Usage, if set, reports what a task of an agent has cost so far (the calls that
	// reached their tool, spend, model tokens); its task.ended event carries it.
	Usage func(agent, task string) (steps int64, spend float64, tokens int64)
}

// Tasks tracks the tasks access tokens are bound to. [Tasks.Active] is the hot path: a
// map lookup under a read lock, no I/O. Tasks that ended or expired stay in memory for a
// day, so [Tasks.List] can show them, and are then forgotten (the store keeps them).
//
// When several processes share the store, a task another process started is looked up
// in the store when first seen ([Tasks.LoadActive]), and one it ended is seen ended
// here after [Tasks.Refresh] or [Tasks.RefreshTask], which the caller runs on a change
// notification, and periodically.
type Tasks struct {
	store TaskStore
	audit Recorder
	now   func() time.Time
	usage func(agent, task string) (int64, float64, int64)

	// wmu serialises writers across their store I/O, so the store and memory agree on
	// the order of changes. Readers never take it.
	wmu sync.Mutex

	// mu guards the fields below; it is never held across I/O.
	mu        sync.RWMutex
	byID      map[string]*TaskRecord // records are replaced, never modified in place
	lastPrune time.Time

	// misses remembers ids the store did not have, and lookups bounds the store
	// lookups running at once (see [Directory]).
	misses  prMisses
	lookups chan struct{}
}

// NewTasks loads the open tasks, and those that closed within the last day.
func NewTasks(ctx context.Context, o TasksOptions) (*Tasks, error) {
	if o.Store == nil || o.Audit == nil {
		return nil, errors.New("identity: new tasks: store and audit are required")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	t := &Tasks{store: o.Store, audit: o.Audit, now: o.Now, usage: o.Usage, lookups: make(chan struct{}, prMaxLookups)}
	recs, err := o.Store.Tasks(ctx)
	if err != nil {
		return nil, fmt.Errorf("identity: new tasks: %w", err)
	}
	t.byID, t.lastPrune = t.prRecent(recs)
	return t, nil
}

// prRecent returns the tasks of recs to hold in memory: the open ones, and those that
// closed within taskHistory.
func (t *Tasks) prRecent(recs []TaskRecord) (map[string]*TaskRecord, time.Time) {
	now := t.now()
	byID := make(map[string]*TaskRecord, len(recs))
	for _, r := range recs {
		if r.open(now) || now.Sub(r.closedAt()) < taskHistory {
			r := r.clone()
			byID[r.ID] = &r
		}
	}
	return byID, now
}

// Start begins a task. An empty ID gets a random one ("tsk_..."); Agent is required;
// ExpiresAt is required and must be in the future; CreatedAt is set to now and the End
// fields must be empty. The task is open when Start returns it. It returns a
// [*ValidationError] for an invalid record and an error wrapping [ErrTaskExists] for a
// taken id.
//
// If the "task.started" audit record cannot be written the task is ended at once (no
// token can be bound to an unrecorded task) and Start returns the error.
func (t *Tasks) Start(ctx context.Context, rec TaskRecord) (TaskRecord, error) {
	now := t.now().UTC()
	rec = rec.clone()
	if rec.ID == "" {
		var b [16]byte
		rand.Read(b[:]) // never fails (crypto/rand's documentation)
		rec.ID = TaskIDPrefix + base64.RawURLEncoding.EncodeToString(b[:])
	}
	var p problems
	if !taskIDPattern.MatchString(rec.ID) {
		p.add("id", "must match %s, got %s", taskIDPattern, short(rec.ID))
	}
	if !agentIDPattern.MatchString(rec.Agent) {
		p.add("agent", "must be an agent id matching %s, got %s", agentIDPattern, short(rec.Agent))
	}
	checkText(&p, "user", rec.User, MaxOwner, false)
	if len(rec.Tools) > MaxTaskTools {
		p.add("tools", "at most %d entries, got %d", MaxTaskTools, len(rec.Tools))
	} else {
		checkTools(&p, "tools", rec.Tools, false)
	}
	switch {
	case rec.ExpiresAt.IsZero():
		p.add("expires_at", "is required")
	case !now.Before(rec.ExpiresAt):
		p.add("expires_at", "must be in the future, got %s", rec.ExpiresAt.UTC().Format(time.RFC3339))
	}
	if !rec.EndedAt.IsZero() || rec.EndedBy != "" || rec.EndReason != "" {
		p.add("ended_at", "must be empty: a task starts open")
	}
	if err := p.err(); err != nil {
		return TaskRecord{}, fmt.Errorf("identity: start task: %w", err)
	}
	rec.CreatedAt, rec.ExpiresAt = now, rec.ExpiresAt.UTC()

	t.wmu.Lock()
	t.mu.RLock()
	_, dup := t.byID[rec.ID]
	t.mu.RUnlock()
	if dup {
		t.wmu.Unlock()
		return TaskRecord{}, fmt.Errorf("identity: start task %q: %w", rec.ID, ErrTaskExists)
	}
	if err := t.store.PutTask(ctx, rec); err != nil {
		t.wmu.Unlock()
		return TaskRecord{}, fmt.Errorf("identity: start task %q: %w", rec.ID, err)
	}
	t.put(rec, now)
	t.wmu.Unlock()

	actx, cancel := auditContext(ctx)
	defer cancel()
	if err := t.audit.Append(actx, &audit.Event{
		Time: now, Kind: audit.KindTaskStarted, Agent: rec.Agent, User: rec.User, Task: rec.ID,
		Message: "task started",
		Detail:  fmt.Sprintf("tools=%s expires=%s", strings.Join(rec.Tools, ","), rec.ExpiresAt.Format(time.RFC3339)),
	}); err != nil {
		// Fail closed: nobody holds the task yet, so end it before anyone can.
		eerr := t.end(actx, rec.ID, "chaperone", "task start could not be audited")
		return TaskRecord{}, fmt.Errorf("identity: start task %q: audit (the task was ended): %w", rec.ID, errors.Join(err, eerr))
	}
	return rec.clone(), nil
}

// put stores rec in memory, pruning old closed tasks now and then.
func (t *Tasks) put(rec TaskRecord, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.byID[rec.ID] = &rec
	if now.Sub(t.lastPrune) < time.Minute {
		return
	}
	t.lastPrune = now
	for id, r := range t.byID {
		if !r.open(now) && now.Sub(r.closedAt()) >= taskHistory {
			delete(t.byID, id)
		}
	}
}

// End ends a task: every token bound to it stops working at once. by names who ended it
// (required); reason is optional. It returns an error wrapping [ErrUnknownTask] or
// [ErrTaskEnded]. An expired task that was never ended can still be ended, for the
// record.
//
// The end is stored, then takes effect, then is audited. If the audit record cannot be
// written the task stays ended (a safety action) and End returns an error wrapping
// [ErrNotAudited].
func (t *Tasks) End(ctx context.Context, id, by, reason string) error {
	var p problems
	checkBy(&p, by)
	checkText(&p, "reason", reason, MaxReason, false)
	if err := p.err(); err != nil {
		return fmt.Errorf("identity: end task %q: %w", id, err)
	}
	return t.end(ctx, id, by, reason)
}

func (t *Tasks) end(ctx context.Context, id, by, reason string) error {
	now := t.now().UTC()
	t.wmu.Lock()
	t.mu.RLock()
	cur, known := t.byID[id]
	t.mu.RUnlock()
	if known && !cur.EndedAt.IsZero() {
		t.wmu.Unlock()
		return fmt.Errorf("identity: end task %q: %w", id, ErrTaskEnded)
	}
	if err := t.store.EndTask(ctx, id, by, reason, now); err != nil {
		if known && errors.Is(err, ErrTaskEnded) {
			// Ended by another process, not heard of here yet: catch up.
			_ = t.prReloadLocked(ctx, id)
		}
		t.wmu.Unlock()
		return fmt.Errorf("identity: end task %q: %w", id, err)
	}
	ev := &audit.Event{Time: now, Kind: audit.KindTaskEnded, Task: id, Reason: reason, Message: "task ended",
		Detail: "by=" + by}
	if !known {
		// Started by another process: read it back, for memory and the record.
		if rec, ok, err := t.store.Task(ctx, id); err == nil && ok {
			cur, known = &rec, true
		}
	}
	if known {
		rec := cur.clone()
		rec.EndedAt, rec.EndedBy, rec.EndReason = now, by, reason
		t.mu.Lock()
		t.byID[id] = &rec
		t.mu.Unlock()
		ev.Agent, ev.User = rec.Agent, rec.User
		if t.usage != nil {
			ev.Steps, ev.Spend, ev.Tokens = t.usage(rec.Agent, id)
		}
	}
	t.wmu.Unlock()

	actx, cancel := auditContext(ctx)
	defer cancel()
	if err := t.audit.Append(actx, ev); err != nil {
		return fmt.Errorf("identity: end task %q: %w: %w", id, ErrNotAudited, err)
	}
	return nil
}

// Active reports whether the task exists, has not ended and has not expired.
func (t *Tasks) Active(id string) bool {
	now := t.now()
	t.mu.RLock()
	r, ok := t.byID[id]
	t.mu.RUnlock()
	return ok && r.open(now)
}

// Get returns a copy of the task, if it is in memory (open, or closed within the last
// day).
func (t *Tasks) Get(id string) (TaskRecord, bool) {
	t.mu.RLock()
	r, ok := t.byID[id]
	t.mu.RUnlock()
	if !ok {
		return TaskRecord{}, false
	}
	return r.clone(), true
}

// List returns the open tasks, sorted by start time then id; with includeEnded also those
// that ended or expired within the last day.
func (t *Tasks) List(includeEnded bool) []TaskRecord {
	now := t.now()
	t.mu.RLock()
	out := make([]TaskRecord, 0, len(t.byID))
	for _, r := range t.byID {
		if includeEnded || r.open(now) {
			out = append(out, r.clone())
		}
	}
	t.mu.RUnlock()
	slices.SortFunc(out, func(a, b TaskRecord) int {
		return cmp.Or(a.CreatedAt.Compare(b.CreatedAt), cmp.Compare(a.ID, b.ID))
	})
	return out
}

// Load returns the task with the id: from memory as [Tasks.Get] does or, if this
// process has not heard of it, from the store, keeping it in memory. A task started by
// another process sharing the store is so usable here before the change notification
// arrives. An id the store does not have is remembered for a second, during which Load
// answers false without asking again; at most a few lookups run at once, the others
// wait for ctx. It returns an error when the store cannot answer.
func (t *Tasks) Load(ctx context.Context, id string) (TaskRecord, bool, error) {
	if r, ok := t.Get(id); ok {
		return r, true, nil
	}
	// Only started tasks are stored, and Start checks the id.
	if !taskIDPattern.MatchString(id) || t.misses.recent(id, t.now()) {
		return TaskRecord{}, false, nil
	}
	if err := prAcquire(ctx, t.lookups); err != nil {
		return TaskRecord{}, false, fmt.Errorf("identity: load task %q: %w", id, err)
	}
	now := t.now()
	rec, ok, err := t.store.Task(ctx, id)
	<-t.lookups
	if err != nil {
		return TaskRecord{}, false, fmt.Errorf("identity: load task %q: %w", id, err)
	}
	if !ok || rec.ID != id {
		t.misses.add(id, now)
		return TaskRecord{}, false, nil
	}
	rec = rec.clone()
	t.mu.Lock()
	// Keep a record that appeared meanwhile (from a writer or a refresh): it is at least
	// as new as the one read here.
	cur, ok := t.byID[id]
	if !ok {
		cur = &rec
		t.byID[id] = cur
	}
	t.mu.Unlock()
	return cur.clone(), true, nil
}

// LoadActive reports whether the task is open, as [Tasks.Active] does, but asks the
// store about a task this process has not heard of ([Tasks.Load]). A task in memory is
// answered from memory, ended or not: the store is not asked again about it.
func (t *Tasks) LoadActive(ctx context.Context, id string) (bool, error) {
	r, ok, err := t.Load(ctx, id)
	if err != nil || !ok {
		return false, err
	}
	return r.open(t.now()), nil
}

// Refresh reloads the tasks from the store, for changes made by another process sharing
// the store (tasks started and ended): every call to Active after it returns sees the
// store as it was read. On a store error nothing changes.
func (t *Tasks) Refresh(ctx context.Context) error {
	t.wmu.Lock()
	defer t.wmu.Unlock()
	recs, err := t.store.Tasks(ctx)
	if err != nil {
		return fmt.Errorf("identity: refresh tasks: %w", err)
	}
	byID, now := t.prRecent(recs)
	t.mu.Lock()
	t.byID, t.lastPrune = byID, now
	t.mu.Unlock()
	t.misses.reset()
	return nil
}

// RefreshTask reloads one task from the store, for a change another process made to it
// (the notification names it): cheaper than [Tasks.Refresh]. A task no longer stored is
// forgotten.
func (t *Tasks) RefreshTask(ctx context.Context, id string) error {
	t.wmu.Lock()
	defer t.wmu.Unlock()
	if err := t.prReloadLocked(ctx, id); err != nil {
		return fmt.Errorf("identity: refresh task %q: %w", id, err)
	}
	return nil
}

// prReloadLocked replaces the task in memory with the store's record. t.wmu must be
// held.
func (t *Tasks) prReloadLocked(ctx context.Context, id string) error {
	rec, ok, err := t.store.Task(ctx, id)
	if err != nil {
		return err
	}
	if !ok || rec.ID != id {
		t.mu.Lock()
		delete(t.byID, id)
		t.mu.Unlock()
		return nil
	}
	t.put(rec.clone(), t.now())
	return nil
}
