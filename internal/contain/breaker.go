package contain

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"
)

// Signal is something an agent did that may trip its breaker.
type Signal string

// The signals the gateway and its sensors report with [Breakers.Observe].
const (
	// SignalDenials is a call denied by policy.
	SignalDenials Signal = "denials"
	// SignalInjections is a call denied or held because untrusted content chose its
	// arguments; content sensors add their findings.
	SignalInjections Signal = "injections"
	// SignalDestructive is a destructive-class call that executed.
	SignalDestructive Signal = "destructive"
	// SignalErrors is a call whose upstream failed or returned a tool error.
	SignalErrors Signal = "errors"
	// SignalSpend is spend charged; the weight is the amount.
	SignalSpend Signal = "spend"
	// SignalDeviations is a call that deviated from the agent's learned baseline.
	SignalDeviations Signal = "deviations"
	// SignalLoops is a call refused as a runaway loop.
	SignalLoops Signal = "loops"

	// SignalOperator marks a breaker an operator tripped with [Breakers.Trip]. No agent
	// emits it, so [ParseSignal] refuses it and no [Trigger] may name it; it appears
	// only in [Admission], [BreakerStatus] and [BreakerChange], and in
	// [Breakers.Restore] to bring back an operator's trip.
	SignalOperator Signal = "operator"
)

// brSignals lists the agent signals in a fixed order; a signal's position is its index
// into Breakers.bySignal.
var brSignals = [...]Signal{SignalDenials, SignalInjections, SignalDestructive, SignalErrors, SignalSpend, SignalDeviations, SignalLoops}

// Signals returns every signal a [Trigger] may name, for configuration help and
// validation.
func Signals() []Signal { return slices.Clone(brSignals[:]) }

// ParseSignal parses the name of a signal a [Trigger] may name.
func ParseSignal(s string) (Signal, error) {
	if brSignalIndex(Signal(s)) < 0 {
		return "", fmt.Errorf("contain: parse signal %q: want one of %s", cut(s, 64), brJoin(brSignals[:]))
	}
	return Signal(s), nil
}

// brSignalIndex returns the signal's position in brSignals, or -1. A switch keeps it
// free of allocation and maps on the Observe path.
func brSignalIndex(s Signal) int {
	switch s {
	case SignalDenials:
		return 0
	case SignalInjections:
		return 1
	case SignalDestructive:
		return 2
	case SignalErrors:
		return 3
	case SignalSpend:
		return 4
	case SignalDeviations:
		return 5
	case SignalLoops:
		return 6
	}
	return -1
}

// Trigger trips a breaker when the signal's total weight within Window reaches
// Threshold. A window is exact to one sixtieth of its length: it counts at least the
// last 59/60 of Window and nothing older than Window. Totals are compared to within a
// part in a billion, so that decimal amounts (ten charges of 0.1 against 1.0) reach
// the threshold they add up to despite binary rounding.
type Trigger struct {
	Signal    Signal
	Threshold float64
	Window    time.Duration
}

// Degrade is what a tripped breaker leaves the agent.
type Degrade string

// The ways a tripped breaker degrades its agent. The gateway enforces them; the
// breaker only says which applies.
const (
	// DegradeReadOnly lets the agent make read-only calls only.
	DegradeReadOnly Degrade = "read_only"
	// DegradeSuggestOnly lets the agent propose calls for a person to make, and make none.
	DegradeSuggestOnly Degrade = "suggest_only"
	// DegradeBlock refuses every call of the agent.
	DegradeBlock Degrade = "block"
)

// ParseDegrade parses the name of a [Degrade].
func ParseDegrade(s string) (Degrade, error) {
	switch d := Degrade(s); d {
	case DegradeReadOnly, DegradeSuggestOnly, DegradeBlock:
		return d, nil
	}
	return "", fmt.Errorf("contain: parse degrade %q: want one of %s, %s, %s", cut(s, 64), DegradeReadOnly, DegradeSuggestOnly, DegradeBlock)
}

// BreakerState is the state of an agent's breaker.
type BreakerState string

// The states of a breaker. Closed gives full rights; open degrades the agent; half-open
// lets one probe call through with full rights and degrades the others.
const (
	BreakerClosed   BreakerState = "closed"
	BreakerOpen     BreakerState = "open"
	BreakerHalfOpen BreakerState = "half_open"
)

// BreakerCause says why a breaker changed state.
type BreakerCause string

// The causes of a [BreakerChange].
const (
	// BreakerCauseTrigger: a trigger's total reached its threshold (closed to open).
	BreakerCauseTrigger BreakerCause = "trigger"
	// BreakerCauseCooldown: the cool-down ended and a probe was admitted (open to
	// half-open).
	BreakerCauseCooldown BreakerCause = "cooldown"
	// BreakerCauseProbeOK: the probe went well (half-open to closed).
	BreakerCauseProbeOK BreakerCause = "probe_ok"
	// BreakerCauseProbeFailed: a trigger's signal was observed during the probe, or the
	// probe reported failure (half-open to open). The change's Signal says which.
	BreakerCauseProbeFailed BreakerCause = "probe_failed"
	// BreakerCauseOperator: an operator tripped or reset the breaker.
	BreakerCauseOperator BreakerCause = "operator"
)

// Bounds of [BreakerOptions] and of the text operators give.
const (
	MaxBreakerTriggers = 32
	MaxBreakerAgents   = 10_000_000
	MaxBreakerText     = 1024
	MaxBreakerAgentID  = 256

	brMinDuration      = time.Second
	brMaxDuration      = 168 * time.Hour
	brDefaultCooldown  = 5 * time.Minute
	brDefaultMaxAgents = 100_000
	brBuckets          = 60
	// brTolerance is the relative slack of threshold comparisons; see [Trigger].
	brTolerance = 1e-9
)

// Sentinel errors of [Breakers]; they are returned wrapped.
var (
	// ErrBreakerClosed is returned for resetting a breaker that is closed.
	ErrBreakerClosed = errors.New("breaker is closed")
	// ErrBreakerOpen is returned for tripping a breaker an operator has already tripped.
	ErrBreakerOpen = errors.New("breaker is already tripped by an operator")
	// ErrBreakerInput is returned for a missing or malformed agent, name of who acted,
	// reason, state, signal or time.
	ErrBreakerInput = errors.New("invalid breaker input")
)

// BreakerOptions configure [NewBreakers]. The zero value of a field means its default.
type BreakerOptions struct {
	// Triggers trip a breaker; from 1 to [MaxBreakerTriggers]. A signal may appear in
	// several triggers, typically a short window with a low threshold for bursts and a
	// long one with a higher threshold for slow drips.
	Triggers []Trigger
	// Degrade is what a tripped breaker leaves the agent; default [DegradeReadOnly].
	Degrade Degrade
	// Cooldown is how long a breaker stays open before it lets a probe through, and how
	// long a probe may run before it is deemed lost; default 5m, from 1s to 168h.
	Cooldown time.Duration
	// MaxAgents bounds the agents tracked at once; default 100,000, at most
	// [MaxBreakerAgents]. Past it the signals of new agents are dropped (see
	// [Breakers.Dropped]) until agents that are closed and quiet for the longest window
	// can be forgotten. A breaker that is not closed is never forgotten, and an
	// operator's Trip or a Restore is never refused for want of room.
	MaxAgents int
	// Now is the clock; time.Now if nil.
	Now func() time.Time
	// OnChange is told of every transition, after the breaker's lock is released, in
	// the order they happened for each agent. It may run on the goroutine of a later
	// call for the same agent, so the call that made a change can return before the
	// change is told; it must not block for long, because that agent's later changes
	// wait for it. It may call back into [Breakers].
	OnChange func(BreakerChange)
}

// BreakerChange is one transition of an agent's breaker, for audit and notification.
type BreakerChange struct {
	Agent    string
	From, To BreakerState
	Cause    BreakerCause
	// Degrade is what the agent is left with; empty when To is closed.
	Degrade Degrade
	// Signal is the signal that tripped the breaker or failed the probe, the original
	// signal for a cool-down, SignalOperator for an operator's trip, and empty for a
	// close, a reset or a probe reported failed.
	Signal Signal
	// Total, Threshold and Window are those of the trigger that tripped the breaker or
	// failed the probe.
	Total     float64
	Threshold float64
	Window    time.Duration
	// By and Reason are the operator's, for a Trip or a Reset.
	By, Reason string
	// Detail says in a sentence why, for people.
	Detail string
	At     time.Time
}

// Admission is what the breaker allows one call.
type Admission struct {
	State BreakerState
	// Degrade is set when State is open, or half-open and this call is not the probe.
	Degrade Degrade
	// Probe says this call is the half-open probe: it has full rights, and its end must
	// be reported with [Breakers.ProbeDone].
	Probe bool
	// Since is when the breaker entered State; zero when closed.
	Since time.Time
	// Until is when the cool-down ends (open) or the probe in flight is given up
	// (half-open); zero when closed or tripped by an operator, who must reset it.
	Until time.Time
	// Signal is what tripped the breaker; see [BreakerChange].
	Signal Signal
}

// BreakerStatus is an agent's breaker as operators see it.
type BreakerStatus struct {
	Agent   string       `json:"agent"`
	State   BreakerState `json:"state"`
	Degrade Degrade      `json:"degrade,omitempty"`
	Since   time.Time    `json:"since,omitzero"`
	// Until is as in [Admission].
	Until  time.Time `json:"until,omitzero"`
	Signal Signal    `json:"signal,omitempty"`
	Detail string    `json:"detail,omitempty"`
	// By is the operator who tripped the breaker, if one did.
	By string `json:"by,omitempty"`
	// Triggers are the configured triggers in order, with their current totals.
	Triggers []BreakerTriggerStatus `json:"triggers"`
}

// BreakerTriggerStatus is one trigger and the agent's current total within its window.
type BreakerTriggerStatus struct {
	Signal    Signal
	Threshold float64
	Window    time.Duration
	Total     float64
}

// brTriggerJSON is the wire form of a BreakerTriggerStatus: a window reads "1m0s",
// as in configuration, rather than a count of nanoseconds.
type brTriggerJSON struct {
	Signal    Signal  `json:"signal"`
	Threshold float64 `json:"threshold"`
	Window    string  `json:"window"`
	Total     float64 `json:"total"`
}

// MarshalJSON writes the window as a duration string ("1m0s").
func (s BreakerTriggerStatus) MarshalJSON() ([]byte, error) {
	return json.Marshal(brTriggerJSON{s.Signal, s.Threshold, s.Window.String(), s.Total})
}

// UnmarshalJSON reads what [BreakerTriggerStatus.MarshalJSON] writes.
func (s *BreakerTriggerStatus) UnmarshalJSON(b []byte) error {
	var j brTriggerJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	w, err := time.ParseDuration(j.Window)
	if err != nil {
		return fmt.Errorf("contain: breaker trigger window: %w", err)
	}
	*s = BreakerTriggerStatus{Signal: j.Signal, Threshold: j.Threshold, Window: w, Total: j.Total}
	return nil
}

// Breakers are the behavioural circuit breakers, one per agent.
//
// A breaker trips (opens) when one of its triggers' totals reaches its threshold, and
// degrades the agent rather than blocking one call, because an agent that goes wrong
// tends to keep going wrong. After the cool-down it goes half-open and lets one probe
// call through with full rights: if the probe goes well the breaker closes, otherwise
// it opens again. An operator can trip or reset a breaker at any time; an operator's
// trip does not cool down, because a person decided it and only a person undoes it.
//
// Breakers are safe for concurrent use and bounded in memory: at most MaxAgents agents
// (plus those operators trip or restore), each with a window of about a kilobyte per
// trigger its signals have touched. Agents do not contend: each has its own lock, and
// Admit for a closed breaker takes no lock of its own and allocates nothing. State is
// per process; the gateway persists transitions and brings open breakers back with
// [Breakers.Restore].
type Breakers struct {
	triggers  []brTrigger
	bySignal  [len(brSignals)][]int // trigger indexes per signal index
	maxWindow time.Duration
	degrade   Degrade
	cooldown  time.Duration
	maxAgents int
	now       func() time.Time
	onChange  func(BreakerChange)

	// dropped counts signals of agents not tracked for want of room.
	dropped atomic.Uint64
	// sweepAfter is the Unix nanosecond time before which no agent can be forgotten, so
	// a full map is not scanned on every new agent; 0 means sweep at once.
	sweepAfter atomic.Int64

	// mu guards agents. It is never acquired while an agent's mu is held.
	mu     sync.RWMutex
	agents map[string]*brAgent
}

type brTrigger struct {
	Trigger
	width int64   // bucket width in nanoseconds
	trip  float64 // Threshold less the tolerance
}

// epoch numbers the bucket that t falls in. Floor division keeps times before 1970
// (fake clocks) in the right bucket.
func (t *brTrigger) epoch(at time.Time) int64 {
	n := at.UnixNano()
	q := n / t.width
	if n%t.width < 0 {
		q--
	}
	return q
}

// brBucket is the weight counted in one bucket; epoch says which bucket it was, so a
// bucket left over from an earlier lap of the ring is recognised as stale.
type brBucket struct {
	epoch int64
	sum   float64
}

// brWindow is a sliding window of brBuckets buckets, a ring indexed by epoch.
type brWindow struct {
	// head is the newest epoch seen: a clock that steps back is held at head, so that a
	// newer bucket is never overwritten by an older one.
	head    int64
	buckets [brBuckets]brBucket
}

// reset empties the window. head starts at the least epoch, not 0, so that times before
// 1970 (negative epochs) are not held at 0.
func (w *brWindow) reset() { *w = brWindow{head: math.MinInt64} }

func (w *brWindow) add(e int64, v float64) {
	e = max(e, w.head)
	w.head = e
	k := &w.buckets[brMod(e)]
	if k.epoch != e {
		k.epoch, k.sum = e, 0
	}
	k.sum += v
}

func (w *brWindow) total(e int64) float64 {
	e = max(e, w.head)
	var s float64
	for i := range w.buckets {
		if k := &w.buckets[i]; k.epoch > e-brBuckets && k.epoch <= e {
			s += k.sum
		}
	}
	return s
}

func brMod(e int64) int {
	m := e % brBuckets
	if m < 0 {
		m += brBuckets
	}
	return int(m)
}

// brAgent is one agent's breaker.
type brAgent struct {
	name string
	// closed mirrors state == BreakerClosed, written under mu, so that Admit of a closed
	// breaker takes no lock of its own.
	closed atomic.Bool

	// mu guards the fields below.
	mu sync.Mutex
	// gone says the agent was forgotten (removed from Breakers.agents): whoever holds
	// a stale pointer must look the agent up again.
	gone   bool
	state  BreakerState
	held   bool // tripped by an operator: no cool-down, stays open until Reset
	since  time.Time
	signal Signal
	detail string
	by     string
	// probeAt is when the probe in flight was admitted; a half-open breaker always has
	// one, given up after the cool-down.
	probeAt time.Time
	// last is when a signal was last counted; after the longest window the windows are
	// empty and a closed agent can be forgotten.
	last time.Time
	win  []*brWindow // per trigger; nil until the trigger's signal is first seen
	// outbox holds changes not yet told to OnChange; delivering says a goroutine is
	// telling them, so the next change is queued behind it rather than told out of order.
	outbox     []BreakerChange
	delivering bool
}

// NewBreakers returns breakers with no agent tracked. It reports every problem with the
// options at once.
func NewBreakers(o BreakerOptions) (*Breakers, error) {
	const p = "contain: breakers: "
	var errs []error
	if n := len(o.Triggers); n == 0 || n > MaxBreakerTriggers {
		errs = append(errs, fmt.Errorf(p+"triggers must have from 1 to %d entries, got %d", MaxBreakerTriggers, n))
	}
	b := &Breakers{
		degrade:   o.Degrade,
		cooldown:  o.Cooldown,
		maxAgents: o.MaxAgents,
		now:       o.Now,
		onChange:  o.OnChange,
		agents:    map[string]*brAgent{},
	}
	for i, t := range o.Triggers {
		if i >= MaxBreakerTriggers {
			break
		}
		si := brSignalIndex(t.Signal)
		if si < 0 {
			errs = append(errs, fmt.Errorf(p+"triggers[%d].signal must be one of %s, got %q", i, brJoin(brSignals[:]), cut(string(t.Signal), 64)))
		}
		if !(t.Threshold > 0) || math.IsInf(t.Threshold, 0) {
			errs = append(errs, fmt.Errorf(p+"triggers[%d].threshold must be positive and finite, got %g", i, t.Threshold))
		}
		if t.Window < brMinDuration || t.Window > brMaxDuration {
			errs = append(errs, fmt.Errorf(p+"triggers[%d].window must be from 1s to 168h, got %s", i, t.Window))
		}
		if si >= 0 {
			b.bySignal[si] = append(b.bySignal[si], len(b.triggers))
		}
		b.triggers = append(b.triggers, brTrigger{
			Trigger: t,
			width:   max(int64(t.Window/brBuckets), 1),
			trip:    t.Threshold - t.Threshold*brTolerance,
		})
		b.maxWindow = max(b.maxWindow, t.Window)
	}
	switch b.degrade {
	case "":
		b.degrade = DegradeReadOnly
	case DegradeReadOnly, DegradeSuggestOnly, DegradeBlock:
	default:
		errs = append(errs, fmt.Errorf(p+"degrade must be one of %s, %s, %s, got %q", DegradeReadOnly, DegradeSuggestOnly, DegradeBlock, cut(string(b.degrade), 64)))
	}
	switch {
	case b.cooldown == 0:
		b.cooldown = brDefaultCooldown
	case b.cooldown < brMinDuration || b.cooldown > brMaxDuration:
		errs = append(errs, fmt.Errorf(p+"cooldown must be from 1s to 168h, got %s", b.cooldown))
	}
	switch {
	case b.maxAgents == 0:
		b.maxAgents = brDefaultMaxAgents
	case b.maxAgents < 0 || b.maxAgents > MaxBreakerAgents:
		errs = append(errs, fmt.Errorf(p+"max_agents must be from 1 to %d, got %d", MaxBreakerAgents, b.maxAgents))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if b.now == nil {
		b.now = time.Now
	}
	return b, nil
}

// Admit is called before each of the agent's calls and says what rights the call has.
// Closed: full rights. Open and the cool-down not over: degraded. Open and the
// cool-down over: the breaker becomes half-open and this call is the probe.
// Half-open with a probe in flight: degraded. A probe whose ProbeDone never comes is
// given up after the cool-down and the next call becomes the probe, so a crashed
// call cannot hold the agent degraded for ever.
func (b *Breakers) Admit(agent string) Admission {
	for {
		b.mu.RLock()
		a := b.agents[agent]
		b.mu.RUnlock()
		if a == nil || a.closed.Load() {
			return Admission{State: BreakerClosed}
		}
		a.mu.Lock()
		if a.gone {
			a.mu.Unlock()
			continue
		}
		ad, deliver := b.admitLocked(a)
		a.mu.Unlock()
		if deliver {
			b.deliver(a)
		}
		return ad
	}
}

func (b *Breakers) admitLocked(a *brAgent) (Admission, bool) {
	switch a.state {
	case BreakerOpen:
		now := b.now()
		if a.held || now.Sub(a.since) < b.cooldown {
			return b.degraded(a), false
		}
		deliver := b.move(a, BreakerChange{
			To: BreakerHalfOpen, Cause: BreakerCauseCooldown, Signal: a.signal,
			Detail: "cool-down over, probe admitted", At: now,
		})
		a.probeAt = now
		return Admission{State: BreakerHalfOpen, Probe: true, Since: a.since.UTC(), Until: now.Add(b.cooldown).UTC(), Signal: a.signal}, deliver
	case BreakerHalfOpen:
		now := b.now()
		if now.Sub(a.probeAt) < b.cooldown {
			return b.degraded(a), false
		}
		// The probe is lost; its late ProbeDone, if it ever comes, is taken as this
		// one's, since the two cannot be told apart.
		a.probeAt = now
		return Admission{State: BreakerHalfOpen, Probe: true, Since: a.since.UTC(), Until: now.Add(b.cooldown).UTC(), Signal: a.signal}, false
	}
	return Admission{State: BreakerClosed}, false
}

// degraded is the admission of a call that is not the probe. a.mu must be held.
func (b *Breakers) degraded(a *brAgent) Admission {
	return Admission{State: a.state, Degrade: b.degrade, Since: a.since.UTC(), Until: b.until(a), Signal: a.signal}
}

// until is when the breaker may next let a probe through. a.mu must be held.
func (b *Breakers) until(a *brAgent) time.Time {
	switch {
	case a.state == BreakerOpen && !a.held:
		return a.since.Add(b.cooldown).UTC()
	case a.state == BreakerHalfOpen:
		return a.probeAt.Add(b.cooldown).UTC()
	}
	return time.Time{}
}

// Observe records weight of signal for the agent; a weight that is not positive and
// finite, or a signal no trigger names, is ignored. Closed: if a trigger's total within
// its window reaches its threshold, the breaker opens. Half-open: any signal a trigger
// names reopens it at once, with a fresh cool-down, since the probe failed — except spend,
// which reopens it only at its threshold. Open: the
// weight is counted and nothing else happens.
func (b *Breakers) Observe(agent string, signal Signal, weight float64) {
	if !(weight > 0) || math.IsInf(weight, 1) {
		return
	}
	si := brSignalIndex(signal)
	if si < 0 || len(b.bySignal[si]) == 0 {
		return
	}
	a := b.lock(agent, true, false)
	if a == nil {
		b.dropped.Add(1)
		return
	}
	now := b.now()
	if now.After(a.last) {
		a.last = now
	}
	hit, hitTotal := -1, 0.0
	for _, i := range b.bySignal[si] {
		w := a.win[i]
		if w == nil {
			w = new(brWindow)
			w.reset()
			a.win[i] = w
		}
		t := &b.triggers[i]
		e := t.epoch(now)
		w.add(e, weight)
		if hit < 0 && a.state != BreakerOpen {
			// Spend is not misbehaviour in itself: during a probe it fails only at its
			// threshold, like any spend velocity.
			if tot := w.total(e); tot >= t.trip || (a.state == BreakerHalfOpen && signal != SignalSpend) {
				hit, hitTotal = i, tot
			}
		}
	}
	deliver := false
	if hit >= 0 {
		t := &b.triggers[hit].Trigger
		c := BreakerChange{
			To: BreakerOpen, Cause: BreakerCauseTrigger, Signal: signal,
			Total: hitTotal, Threshold: t.Threshold, Window: t.Window, At: now,
			Detail: fmt.Sprintf("%s reached %g within %s (threshold %g)", signal, hitTotal, t.Window, t.Threshold),
		}
		if a.state == BreakerHalfOpen {
			c.Cause = BreakerCauseProbeFailed
			c.Detail = fmt.Sprintf("%s during the probe (%g within %s)", signal, hitTotal, t.Window)
		}
		deliver = b.move(a, c)
	}
	a.mu.Unlock()
	if deliver {
		b.deliver(a)
	}
}

// ProbeDone ends the probe [Breakers.Admit] let through. ok (no signal was observed for
// the agent meanwhile) closes the breaker and clears its windows, so the past does not
// trip it again at once; !ok reopens it with a fresh cool-down. It does nothing unless
// the breaker is half-open: a signal, a reset or an operator's trip came first.
func (b *Breakers) ProbeDone(agent string, ok bool) {
	a := b.lock(agent, false, false)
	if a == nil {
		return
	}
	deliver := false
	if a.state == BreakerHalfOpen {
		now := b.now()
		if ok {
			deliver = b.move(a, BreakerChange{To: BreakerClosed, Cause: BreakerCauseProbeOK, Detail: "probe succeeded", At: now})
		} else {
			signal := a.signal
			deliver = b.move(a, BreakerChange{To: BreakerOpen, Cause: BreakerCauseProbeFailed, Detail: "probe failed", At: now})
			a.signal = signal // still what tripped it in the first place
		}
	}
	a.mu.Unlock()
	if deliver {
		b.deliver(a)
	}
}

// Trip opens the agent's breaker on an operator's word, from any state; by and reason
// are required. It does not cool down: it stays open until [Breakers.Reset]. Tripping
// a breaker an operator already tripped fails with an error wrapping [ErrBreakerOpen];
// bad input fails with one wrapping [ErrBreakerInput].
func (b *Breakers) Trip(agent, by, reason string) error {
	if err := brCheckInput(agent, by, reason); err != nil {
		return fmt.Errorf("contain: trip breaker %q: %w", cut(agent, 64), err)
	}
	a := b.lock(agent, true, true)
	if a.held {
		a.mu.Unlock()
		return fmt.Errorf("contain: trip breaker %q: %w", agent, ErrBreakerOpen)
	}
	deliver := b.move(a, BreakerChange{
		To: BreakerOpen, Cause: BreakerCauseOperator, Signal: SignalOperator,
		By: by, Reason: reason, Detail: reason, At: b.now(),
	})
	a.held, a.by = true, by
	a.mu.Unlock()
	if deliver {
		b.deliver(a)
	}
	return nil
}

// Reset closes the agent's breaker on an operator's word, from open or half-open, and
// clears its windows; by and reason are required. Resetting a closed breaker fails with
// an error wrapping [ErrBreakerClosed]; bad input fails with one wrapping
// [ErrBreakerInput].
func (b *Breakers) Reset(agent, by, reason string) error {
	if err := brCheckInput(agent, by, reason); err != nil {
		return fmt.Errorf("contain: reset breaker %q: %w", cut(agent, 64), err)
	}
	a := b.lock(agent, false, false)
	if a == nil {
		return fmt.Errorf("contain: reset breaker %q: %w", agent, ErrBreakerClosed)
	}
	if a.state == BreakerClosed {
		a.mu.Unlock()
		return fmt.Errorf("contain: reset breaker %q: %w", agent, ErrBreakerClosed)
	}
	deliver := b.move(a, BreakerChange{To: BreakerClosed, Cause: BreakerCauseOperator, By: by, Reason: reason, Detail: reason, At: b.now()})
	a.mu.Unlock()
	if deliver {
		b.deliver(a)
	}
	return nil
}

// Restore sets an agent's breaker from storage at start, without telling OnChange: it
// was told when the change happened. Open or half-open is restored as open since the
// given time (a probe in flight did not survive the restart), and signal
// [SignalOperator] restores an operator's trip that only a Reset ends. Closed forgets
// what the breaker counted. signal is "" or the name of a signal; detail is at most
// [MaxBreakerText] bytes. Bad input fails with an error wrapping [ErrBreakerInput].
func (b *Breakers) Restore(agent string, state BreakerState, signal, detail string, since time.Time) error {
	err := brCheckAgent(agent)
	switch {
	case err != nil:
	case state != BreakerClosed && state != BreakerOpen && state != BreakerHalfOpen:
		err = fmt.Errorf("%w: state must be one of %s, %s, %s, got %q", ErrBreakerInput, BreakerClosed, BreakerOpen, BreakerHalfOpen, cut(string(state), 64))
	case signal != "" && Signal(signal) != SignalOperator && brSignalIndex(Signal(signal)) < 0:
		err = fmt.Errorf("%w: signal must be empty, %s or one of %s, got %q", ErrBreakerInput, SignalOperator, brJoin(brSignals[:]), cut(signal, 64))
	case len(detail) > MaxBreakerText || !utf8.ValidString(detail):
		err = fmt.Errorf("%w: detail must be UTF-8 of at most %d bytes", ErrBreakerInput, MaxBreakerText)
	case state != BreakerClosed && since.IsZero():
		err = fmt.Errorf("%w: since is required for a %s breaker", ErrBreakerInput, state)
	}
	if err != nil {
		return fmt.Errorf("contain: restore breaker %q: %w", cut(agent, 64), err)
	}
	if state == BreakerClosed {
		a := b.lock(agent, false, false)
		if a != nil {
			b.setState(a, BreakerClosed, b.now())
			a.mu.Unlock()
		}
		return nil
	}
	a := b.lock(agent, true, true)
	if now := b.now(); since.After(now) {
		since = now // a clock that stepped back must not stretch the cool-down
	}
	b.setState(a, BreakerOpen, since)
	a.signal, a.detail = Signal(signal), detail
	a.held = Signal(signal) == SignalOperator
	a.mu.Unlock()
	return nil
}

// Status returns the agent's breaker; an agent never seen is closed with nothing counted.
func (b *Breakers) Status(agent string) BreakerStatus {
	a := b.lock(agent, false, false)
	if a == nil {
		return b.status(nil, agent, b.now())
	}
	defer a.mu.Unlock()
	return b.status(a, agent, b.now())
}

// List returns the breakers that are not closed, sorted by agent.
func (b *Breakers) List() []BreakerStatus {
	b.mu.RLock()
	var agents []*brAgent
	for _, a := range b.agents {
		if !a.closed.Load() {
			agents = append(agents, a)
		}
	}
	b.mu.RUnlock()
	out := make([]BreakerStatus, 0, len(agents))
	now := b.now()
	for _, a := range agents {
		a.mu.Lock()
		// A gone agent was closed when forgotten; one closed since is not listed either.
		if !a.gone && a.state != BreakerClosed {
			out = append(out, b.status(a, a.name, now))
		}
		a.mu.Unlock()
	}
	slices.SortFunc(out, func(x, y BreakerStatus) int { return strings.Compare(x.Agent, y.Agent) })
	return out
}

// Dropped counts the signals dropped because MaxAgents agents were tracked already.
func (b *Breakers) Dropped() uint64 { return b.dropped.Load() }

// status builds the agent's status; a is nil for an agent not tracked, else a.mu is
// held.
func (b *Breakers) status(a *brAgent, agent string, now time.Time) BreakerStatus {
	s := BreakerStatus{Agent: agent, State: BreakerClosed, Triggers: make([]BreakerTriggerStatus, len(b.triggers))}
	for i := range b.triggers {
		t := &b.triggers[i]
		s.Triggers[i] = BreakerTriggerStatus{Signal: t.Signal, Threshold: t.Threshold, Window: t.Window}
		if a != nil && a.win[i] != nil {
			s.Triggers[i].Total = a.win[i].total(t.epoch(now))
		}
	}
	if a == nil {
		return s
	}
	s.State, s.Since, s.Until = a.state, a.since.UTC(), b.until(a)
	if a.state != BreakerClosed {
		s.Degrade, s.Signal, s.Detail, s.By = b.degrade, a.signal, a.detail, a.by
	}
	return s
}

// lock returns the agent locked, or nil if it is not tracked. With create it tracks a
// new agent if there is room, or always with force (an operator's trip, a restore: a
// breaker that must open is never refused). a.mu is acquired only after b.mu is
// released, and a forgotten agent is looked up again.
func (b *Breakers) lock(agent string, create, force bool) *brAgent {
	for {
		b.mu.RLock()
		a := b.agents[agent]
		b.mu.RUnlock()
		if a == nil {
			if !create {
				return nil
			}
			if a = b.insert(agent, force); a == nil {
				return nil
			}
		}
		a.mu.Lock()
		if !a.gone {
			return a
		}
		a.mu.Unlock()
	}
}

// insert tracks a new agent, forgetting quiet closed ones when the map is full; it
// returns nil when there is no room and force is false.
func (b *Breakers) insert(agent string, force bool) *brAgent {
	b.mu.Lock()
	defer b.mu.Unlock()
	if a := b.agents[agent]; a != nil {
		return a
	}
	now := b.now()
	if len(b.agents) >= b.maxAgents && now.UnixNano() >= b.sweepAfter.Load() {
		b.sweep(now)
	}
	if len(b.agents) >= b.maxAgents && !force {
		return nil
	}
	// last = now keeps the new agent from being forgotten before its first signal lands.
	a := &brAgent{name: agent, state: BreakerClosed, last: now, win: make([]*brWindow, len(b.triggers))}
	a.closed.Store(true)
	b.agents[agent] = a
	b.lowerSweepAfter(now.Add(b.maxWindow).UnixNano())
	return a
}

// sweep forgets the agents that are closed, have nothing counted within the longest
// window and no change waiting to be told, and notes when the next could be forgotten.
// b.mu must be held for writing.
func (b *Breakers) sweep(now time.Time) {
	// Start from never and only lower it, so that a breaker closing during the sweep
	// (which lowers it to 0 without b.mu) is not overwritten.
	b.sweepAfter.Store(math.MaxInt64)
	for name, a := range b.agents {
		a.mu.Lock()
		if a.state == BreakerClosed {
			at := a.last.Add(b.maxWindow)
			switch {
			case a.delivering || len(a.outbox) > 0:
				b.lowerSweepAfter(now.Add(time.Second).UnixNano())
			case !now.Before(at):
				a.gone = true
				delete(b.agents, name)
			default:
				b.lowerSweepAfter(at.UnixNano())
			}
		}
		a.mu.Unlock()
	}
}

// lowerSweepAfter makes sweepAfter at most t.
func (b *Breakers) lowerSweepAfter(t int64) {
	for {
		old := b.sweepAfter.Load()
		if old <= t || b.sweepAfter.CompareAndSwap(old, t) {
			return
		}
	}
}

// setState puts a in state to as of at, keeping the invariants: a closed breaker has
// empty windows and no probe, and can be forgotten once quiet. a.mu must be held.
func (b *Breakers) setState(a *brAgent, to BreakerState, at time.Time) {
	a.state, a.since = to, at
	a.closed.Store(to == BreakerClosed)
	a.signal, a.detail, a.by, a.held = "", "", "", false
	a.probeAt = time.Time{}
	if to == BreakerClosed {
		for _, w := range a.win {
			if w != nil {
				w.reset()
			}
		}
		a.last = time.Time{}
		b.lowerSweepAfter(0)
	}
}

// move makes the transition c (To, Cause and the trigger's figures set) and queues it
// for OnChange. It reports whether the caller must deliver it after releasing a.mu.
// a.mu must be held.
func (b *Breakers) move(a *brAgent, c BreakerChange) bool {
	c.Agent, c.From = a.name, a.state
	b.setState(a, c.To, c.At)
	a.signal, a.detail = c.Signal, c.Detail
	if c.To != BreakerClosed {
		c.Degrade = b.degrade
	}
	c.At = c.At.UTC()
	if b.onChange == nil {
		return false
	}
	a.outbox = append(a.outbox, c)
	if a.delivering {
		return false
	}
	a.delivering = true
	return true
}

// deliver tells OnChange the agent's queued changes, in order, until none is left; only
// one goroutine per agent delivers at a time. a.mu must not be held.
func (b *Breakers) deliver(a *brAgent) {
	done := false
	defer func() {
		if !done { // OnChange panicked: let the next change's caller deliver the rest
			a.mu.Lock()
			a.delivering = false
			a.mu.Unlock()
		}
	}()
	for {
		a.mu.Lock()
		batch := a.outbox
		a.outbox = nil
		if len(batch) == 0 {
			a.delivering = false
			a.mu.Unlock()
			done = true
			return
		}
		a.mu.Unlock()
		for _, c := range batch {
			b.onChange(c)
		}
	}
}

func brCheckAgent(agent string) error {
	switch {
	case agent == "":
		return fmt.Errorf("%w: agent is required", ErrBreakerInput)
	case len(agent) > MaxBreakerAgentID:
		return fmt.Errorf("%w: agent is longer than %d bytes", ErrBreakerInput, MaxBreakerAgentID)
	case !utf8.ValidString(agent) || strings.ContainsFunc(agent, isControl):
		return fmt.Errorf("%w: agent must be UTF-8 without control characters", ErrBreakerInput)
	}
	return nil
}

func brCheckInput(agent, by, reason string) error {
	if err := brCheckAgent(agent); err != nil {
		return err
	}
	return checkActor(ErrBreakerInput, MaxBreakerText, by, reason)
}

func brJoin(s []Signal) string {
	var sb strings.Builder
	for i, v := range s {
		if i > 0 {
			sb.WriteString(", ")
		}
		sb.WriteString(string(v))
	}
	return sb.String()
}
