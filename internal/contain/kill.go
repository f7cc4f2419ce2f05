package contain

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"
)

// ScopeKind is what a kill switch covers.
type ScopeKind string

// The kinds of scope. A call is in a scope when the scope is all, or names the call's
// agent (any agent of its delegation chain), its user, its task, its tool (exposed
// name) or the upstream that serves it.
const (
	ScopeAll      ScopeKind = "all"
	ScopeAgent    ScopeKind = "agent"
	ScopeUser     ScopeKind = "user"
	ScopeTask     ScopeKind = "task"
	ScopeTool     ScopeKind = "tool"
	ScopeUpstream ScopeKind = "upstream"
)

// MaxScopeName bounds the name in a scope, in bytes; MaxKillText bounds a reason and a
// name of who acted.
const (
	MaxScopeName = 256
	MaxKillText  = 1024
)

// Sentinel errors of [Switches]; they are returned wrapped.
var (
	// ErrInvalidScope is returned for a scope that does not parse.
	ErrInvalidScope = errors.New("invalid kill scope")
	// ErrKillEngaged is returned for engaging a kill whose scope is already killed.
	ErrKillEngaged = errors.New("a kill is already engaged for this scope")
	// ErrNotKilled is returned for lifting a scope that is not killed.
	ErrNotKilled = errors.New("no kill is engaged for this scope")
	// ErrKillInput is returned for a missing or malformed reason or name of who acted.
	ErrKillInput = errors.New("invalid kill input")
)

// Scope is what one kill switch covers.
type Scope struct {
	Kind ScopeKind
	Name string // "" for ScopeAll
}

// ParseScope parses "all" (or "everything") and "<kind>:<name>" with kind agent, user,
// task, tool or upstream. The name is 1 to [MaxScopeName] bytes of UTF-8 without control
// characters or surrounding spaces.
func ParseScope(s string) (Scope, error) {
	if s == "all" || s == "everything" {
		return Scope{Kind: ScopeAll}, nil
	}
	kind, name, ok := strings.Cut(s, ":")
	if !ok {
		return Scope{}, fmt.Errorf("%w %q: want all, or agent:ID, user:ID, task:ID, tool:NAME or upstream:NAME", ErrInvalidScope, cut(s, 64))
	}
	switch k := ScopeKind(kind); k {
	case ScopeAgent, ScopeUser, ScopeTask, ScopeTool, ScopeUpstream:
	default:
		return Scope{}, fmt.Errorf("%w %q: kind %q is not one of agent, user, task, tool, upstream", ErrInvalidScope, cut(s, 64), cut(kind, 32))
	}
	switch {
	case name == "":
		return Scope{}, fmt.Errorf("%w %q: the name after %q is empty", ErrInvalidScope, cut(s, 64), kind+":")
	case len(name) > MaxScopeName:
		return Scope{}, fmt.Errorf("%w: name longer than %d bytes", ErrInvalidScope, MaxScopeName)
	case !utf8.ValidString(name) || strings.ContainsFunc(name, isControl) || strings.TrimSpace(name) != name:
		return Scope{}, fmt.Errorf("%w %q: the name must be UTF-8 without control characters or surrounding spaces", ErrInvalidScope, cut(s, 64))
	}
	return Scope{Kind: ScopeKind(kind), Name: name}, nil
}

// String returns the scope as [ParseScope] reads it.
func (s Scope) String() string {
	if s.Kind == ScopeAll {
		return "all"
	}
	return string(s.Kind) + ":" + s.Name
}

// MarshalText encodes the scope as [Scope.String] does.
func (s Scope) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText parses the scope with [ParseScope].
func (s *Scope) UnmarshalText(b []byte) error {
	sc, err := ParseScope(string(b))
	if err != nil {
		return err
	}
	*s = sc
	return nil
}

// Subject is what a call is, for matching against kill scopes. A token or an approval
// is matched as a subject too, with only the fields it has.
type Subject struct {
	// Agents are the acting agent and every agent of its delegation chain.
	Agents         []string
	User, Task     string
	Tool, Upstream string
}

// Covers reports whether the scope covers the subject.
func (s Scope) Covers(sub *Subject) bool {
	switch s.Kind {
	case ScopeAll:
		return true
	case ScopeAgent:
		return slices.Contains(sub.Agents, s.Name)
	case ScopeUser:
		return sub.User == s.Name
	case ScopeTask:
		return sub.Task == s.Name
	case ScopeTool:
		return sub.Tool == s.Name
	case ScopeUpstream:
		return sub.Upstream == s.Name
	}
	return false
}

// Kill is one kill switch, engaged and possibly lifted.
type Kill struct {
	ID        int64     `json:"id"`
	Scope     Scope     `json:"scope"`
	Reason    string    `json:"reason"`
	By        string    `json:"by"`
	EngagedAt time.Time `json:"engaged_at"`
	// LiftedAt is zero while the kill is engaged.
	LiftedAt     time.Time `json:"lifted_at,omitzero"`
	LiftedBy     string    `json:"lifted_by,omitempty"`
	LiftedReason string    `json:"lifted_reason,omitempty"`
}

// Engaged reports whether the kill is in force.
func (k *Kill) Engaged() bool { return k.LiftedAt.IsZero() }

// KilledError is the cause of a call cancelled by a kill, and says which.
type KilledError struct{ Kill Kill }

func (e *KilledError) Error() string {
	return fmt.Sprintf("killed by the kill switch on %s: %s", e.Kill.Scope, e.Kill.Reason)
}

// KillStore persists kills.
type KillStore interface {
	// EngageKill stores an engaged kill and returns it with its ID; it fails with an
	// error wrapping [ErrKillEngaged] if the scope has an engaged kill, atomically.
	EngageKill(ctx context.Context, k Kill) (Kill, error)
	// LiftKill marks the scope's engaged kill lifted and returns it; it fails with an
	// error wrapping [ErrNotKilled] if there is none.
	LiftKill(ctx context.Context, scope Scope, by, reason string, at time.Time) (Kill, error)
	// Kills returns every kill, engaged and lifted, oldest first.
	Kills(ctx context.Context) ([]Kill, error)
}

// killSnap is the immutable state the hot path reads: the engaged kills and, per scope,
// when it was last killed (engaged or since lifted), which voids the tokens and
// approvals of the scope issued before.
type killSnap struct {
	engaged map[Scope]Kill
	last    map[Scope]time.Time
}

// Switches are the kill switches. [Switches.Enter] is the hot path: one atomic load and
// at most six map lookups when nothing is killed, plus registering the call as in
// flight so that a kill can cancel it.
//
// Several processes may share the store: a kill engaged or lifted by another process
// holds here once [Switches.Refresh] has run, which the caller runs on a change
// notification and periodically.
type Switches struct {
	store KillStore
	now   func() time.Time

	// wmu serialises engage and lift across their store I/O.
	wmu  sync.Mutex
	snap atomic.Pointer[killSnap]

	inflight [inflightShards]inflightShard
	seq      atomic.Uint64
}

const inflightShards = 32

type inflightShard struct {
	mu    sync.Mutex
	calls map[uint64]*inflightCall
}

type inflightCall struct {
	sub    *Subject
	cancel context.CancelCauseFunc
	done   chan struct{}
}

// NewSwitches loads the kills in the store.
func NewSwitches(ctx context.Context, store KillStore, now func() time.Time) (*Switches, error) {
	if store == nil {
		return nil, errors.New("contain: new switches: store is required")
	}
	if now == nil {
		now = time.Now
	}
	s := &Switches{store: store, now: now}
	for i := range s.inflight {
		s.inflight[i].calls = map[uint64]*inflightCall{}
	}
	kills, err := store.Kills(ctx)
	if err != nil {
		return nil, fmt.Errorf("contain: load kills: %w", err)
	}
	s.snap.Store(prSnapOf(kills, nil))
	return s, nil
}

// prSnapOf builds the snapshot of kills, the store's complete list. When it replaces
// old, the last kill of each scope is the later of the two: kills are never deleted,
// but a time read back from the store may be less precise than the one this process
// published, and a token voided here must stay void.
func prSnapOf(kills []Kill, old *killSnap) *killSnap {
	snap := &killSnap{engaged: map[Scope]Kill{}, last: map[Scope]time.Time{}}
	if old != nil {
		snap.last = maps.Clone(old.last)
	}
	for _, k := range kills {
		if k.Engaged() {
			snap.engaged[k.Scope] = k
		}
		if k.EngagedAt.After(snap.last[k.Scope]) {
			snap.last[k.Scope] = k.EngagedAt
		}
	}
	return snap
}

// scopesOf lists the scopes that cover sub, most general first.
func scopesOf(sub *Subject, yield func(Scope) bool) {
	if !yield(Scope{Kind: ScopeAll}) {
		return
	}
	for _, a := range sub.Agents {
		if !yield(Scope{ScopeAgent, a}) {
			return
		}
	}
	for _, sc := range [...]Scope{{ScopeUser, sub.User}, {ScopeTask, sub.Task}, {ScopeTool, sub.Tool}, {ScopeUpstream, sub.Upstream}} {
		if sc.Name != "" && !yield(sc) {
			return
		}
	}
}

// Killed returns the engaged kill that covers sub, if any.
func (s *Switches) Killed(sub *Subject) (Kill, bool) {
	snap := s.snap.Load()
	if len(snap.engaged) == 0 {
		return Kill{}, false
	}
	var found Kill
	var ok bool
	scopesOf(sub, func(sc Scope) bool {
		found, ok = snap.engaged[sc]
		return !ok
	})
	return found, ok
}

// VoidedSince reports whether a kill covering sub was engaged at or after t — even one
// lifted since: what was issued before a kill (an access token, an approval) stays void
// after the kill is lifted. Tool and upstream kills void nothing: a token or an
// approval is not theirs alone.
func (s *Switches) VoidedSince(sub *Subject, t time.Time) bool {
	snap := s.snap.Load()
	if len(snap.last) == 0 {
		return false
	}
	narrow := Subject{Agents: sub.Agents, User: sub.User, Task: sub.Task}
	voided := false
	scopesOf(&narrow, func(sc Scope) bool {
		if at, ok := snap.last[sc]; ok && !at.Before(t) {
			voided = true
		}
		return !voided
	})
	return voided
}

// Enter registers a call as in flight and checks the kill switches. It returns a context
// that a kill covering sub cancels with a [*KilledError] cause, and a function to call
// when the call is over. If a kill covers sub already, the kill is returned as well and
// the call must be refused (leave must still be called).
//
// Registration comes before the check, and [Switches.Engage] publishes a kill before it
// scans the calls in flight: so a call either sees the kill or is seen by it.
func (s *Switches) Enter(ctx context.Context, sub *Subject) (context.Context, func(), *Kill) {
	ctx, cancel := context.WithCancelCause(ctx)
	id := s.seq.Add(1)
	sh := &s.inflight[id%inflightShards]
	c := &inflightCall{sub: sub, cancel: cancel, done: make(chan struct{})}
	sh.mu.Lock()
	sh.calls[id] = c
	sh.mu.Unlock()
	leave := func() {
		sh.mu.Lock()
		delete(sh.calls, id)
		sh.mu.Unlock()
		close(c.done)
		cancel(nil)
	}
	if k, ok := s.Killed(sub); ok {
		return ctx, leave, &k
	}
	return ctx, leave, nil
}

// InFlight counts the calls in flight.
func (s *Switches) InFlight() int {
	n := 0
	for i := range s.inflight {
		sh := &s.inflight[i]
		sh.mu.Lock()
		n += len(sh.calls)
		sh.mu.Unlock()
	}
	return n
}

// Engagement is the result of engaging a kill, here ([Switches.Engage]) or in another
// process ([Switches.Refresh]).
type Engagement struct {
	// Kill is the kill engaged; for Refresh, the newest of Kills (zero if none).
	Kill Kill
	// Kills are the kills engaged: for Engage, Kill; for Refresh, every kill it found
	// newly engaged, oldest first.
	Kills []Kill
	// Cancelled counts the calls in flight the kills cancelled.
	Cancelled int
	// done is closed, one channel per cancelled call, when the call is over.
	done []chan struct{}
}

// Wait waits until every call the kill cancelled is over, or ctx ends, and reports how
// many are still running.
func (e *Engagement) Wait(ctx context.Context) int {
	for i, d := range e.done {
		select {
		case <-d:
		case <-ctx.Done():
			return len(e.done) - i
		}
	}
	return 0
}

// Engage pulls a kill switch: it is stored, takes effect for every call that enters from
// now on, and cancels the calls in flight that it covers. Reason and by are required.
//
// The store decides whether the scope is already killed, not this process's view of
// it, which another process may have changed a moment ago: when the store refuses the
// kill with [ErrKillEngaged] (engaged elsewhere, not heard of here yet), Engage
// refreshes from the store, so that kill takes effect here at once, and returns the
// error.
func (s *Switches) Engage(ctx context.Context, scope Scope, by, reason string) (*Engagement, error) {
	if err := checkActor(ErrKillInput, MaxKillText, by, reason); err != nil {
		return nil, fmt.Errorf("contain: kill %s: %w", scope, err)
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	k, err := s.store.EngageKill(ctx, Kill{Scope: scope, Reason: reason, By: by, EngagedAt: s.now().UTC()})
	if err != nil {
		if errors.Is(err, ErrKillEngaged) {
			// Best effort: the caller's error is the store's answer either way.
			_, _ = s.prRefreshLocked(ctx)
		}
		return nil, fmt.Errorf("contain: kill %s: %w", scope, err)
	}
	old := s.snap.Load()
	next := &killSnap{engaged: maps.Clone(old.engaged), last: maps.Clone(old.last)}
	next.engaged[scope] = k
	if k.EngagedAt.After(next.last[scope]) {
		next.last[scope] = k.EngagedAt
	}
	// Publish before scanning the calls in flight (see Enter).
	s.snap.Store(next)
	return s.prCancel([]Kill{k}), nil
}

// prCancel cancels every call in flight that one of kills covers, with the first such
// kill as the cause, and returns the engagement. kills must be published already.
func (s *Switches) prCancel(kills []Kill) *Engagement {
	e := &Engagement{Kills: kills}
	if len(kills) == 0 {
		return e
	}
	e.Kill = kills[len(kills)-1]
	causes := make([]*KilledError, len(kills))
	for i := range kills {
		causes[i] = &KilledError{Kill: kills[i]}
	}
	for i := range s.inflight {
		sh := &s.inflight[i]
		sh.mu.Lock()
		for _, c := range sh.calls {
			for j := range kills {
				if kills[j].Scope.Covers(c.sub) {
					c.cancel(causes[j])
					e.done = append(e.done, c.done)
					break
				}
			}
		}
		sh.mu.Unlock()
	}
	e.Cancelled = len(e.done)
	return e
}

// Refresh reloads the kills from the store, for a change made by another process (told
// by a notification, or found by a periodic poll): it publishes them — kills engaged
// elsewhere take effect for every call that enters from now on, kills lifted elsewhere
// stop refusing calls — and cancels the calls in flight on this process that a newly
// engaged kill covers, with a [*KilledError] cause as [Switches.Engage] does. It returns
// what it cancelled, so the caller can Wait for those calls to end.
//
// On a store error nothing changes and the error is returned; the caller should retry,
// since until it succeeds a kill engaged elsewhere does not hold here.
func (s *Switches) Refresh(ctx context.Context) (*Engagement, error) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	return s.prRefreshLocked(ctx)
}

// prRefreshLocked is Refresh with s.wmu held.
func (s *Switches) prRefreshLocked(ctx context.Context) (*Engagement, error) {
	kills, err := s.store.Kills(ctx)
	if err != nil {
		return nil, fmt.Errorf("contain: refresh kills: %w", err)
	}
	old := s.snap.Load()
	next := prSnapOf(kills, old)
	var fresh []Kill // engaged now, and not (as this kill) before
	for _, k := range kills {
		if !k.Engaged() {
			continue
		}
		if prev, ok := old.engaged[k.Scope]; !ok || prev.ID != k.ID {
			fresh = append(fresh, k)
		}
	}
	s.snap.Store(next)
	return s.prCancel(fresh), nil
}

// Lift releases the scope's kill. What it voided stays void; the calls it refused are
// not resumed.
//
// As for [Switches.Engage], the store decides: a kill engaged by another process and
// not heard of here yet can be lifted, and lifting a scope that another process has
// lifted already refreshes from the store and returns [ErrNotKilled].
func (s *Switches) Lift(ctx context.Context, scope Scope, by, reason string) (Kill, error) {
	if err := checkActor(ErrKillInput, MaxKillText, by, reason); err != nil {
		return Kill{}, fmt.Errorf("contain: lift %s: %w", scope, err)
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	k, err := s.store.LiftKill(ctx, scope, by, reason, s.now().UTC())
	if err != nil {
		if errors.Is(err, ErrNotKilled) {
			// Best effort: the caller's error is the store's answer either way.
			_, _ = s.prRefreshLocked(ctx)
		}
		return Kill{}, fmt.Errorf("contain: lift %s: %w", scope, err)
	}
	old := s.snap.Load()
	next := &killSnap{engaged: maps.Clone(old.engaged), last: old.last}
	delete(next.engaged, scope)
	if k.EngagedAt.After(old.last[scope]) {
		// A kill engaged elsewhere that this process had not heard of: what it voided
		// stays void here too.
		next.last = maps.Clone(old.last)
		next.last[scope] = k.EngagedAt
	}
	s.snap.Store(next)
	return k, nil
}

// Engaged returns the engaged kills, oldest first.
func (s *Switches) Engaged() []Kill {
	snap := s.snap.Load()
	out := make([]Kill, 0, len(snap.engaged))
	for _, k := range snap.engaged {
		out = append(out, k)
	}
	slices.SortFunc(out, func(a, b Kill) int { return a.EngagedAt.Compare(b.EngagedAt) })
	return out
}

// History returns every kill, engaged and lifted, from the store, oldest first.
func (s *Switches) History(ctx context.Context) ([]Kill, error) {
	return s.store.Kills(ctx)
}
