package insight

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/chaperone-dev/chaperone/internal/audit"
)

// Bounds of an [Accumulator].
const (
	// MaxBuckets bounds the buckets of a [Window]'s time series.
	MaxBuckets = 1000
	// TopN is how many reasons and rules [Figures].TopReasons and TopRules list.
	TopN = 10
	// maxKeys bounds the distinct names one count keeps (reasons, rules, agents, policy
	// versions, sensor kinds): the rest are added up under [Other], so that a log full of
	// made-up names cannot exhaust memory.
	maxKeys = 10_000
)

// Other names the count of everything past the distinct names a count keeps.
const Other = "(other)"

// Call decisions, as [Figures] counts them (see [Decisions]).
const (
	decisionAllow   = "allow"
	decisionApprove = "approve"
	decisionDeny    = "deny"
	breakerOpen     = "open"
	// reasonPolicyError is the reason of a call refused because the policy could not be
	// evaluated: recorded with decision deny (the pipeline fails closed), but a failure of
	// the gateway, not an unsafe attempt.
	reasonPolicyError = "policy_error"
	// reasonEgressDenied is the reason of a call whose arguments would send something to
	// a destination its tool may not reach.
	reasonEgressDenied = "egress_denied"
)

// Window is the time range figures are computed over, From <= Time < To, and the width
// of the time series' buckets.
type Window struct {
	From, To time.Time
	Bucket   time.Duration
}

// Validate reports a window that cannot be computed: From not before To, a Bucket that
// is not positive, or more than [MaxBuckets] buckets.
func (w Window) Validate() error {
	switch {
	case w.From.IsZero() || w.To.IsZero():
		return errors.New("insight: window: from and to are required")
	case !w.From.Before(w.To):
		return fmt.Errorf("insight: window: from %s is not before to %s",
			w.From.UTC().Format(time.RFC3339Nano), w.To.UTC().Format(time.RFC3339Nano))
	case w.Bucket <= 0:
		return fmt.Errorf("insight: window: bucket %s is not positive", w.Bucket)
	}
	if n := w.buckets(); n > MaxBuckets {
		return fmt.Errorf("insight: window: %s in buckets of %s makes %d buckets, at most %d", w.To.Sub(w.From), w.Bucket, n, MaxBuckets)
	}
	return nil
}

// buckets is how many buckets the window needs: its length divided by Bucket, rounded
// up. A window longer than time.Duration can hold (about 292 years) counts as too many.
func (w Window) buckets() int64 {
	span := w.To.Sub(w.From)
	if span == time.Duration(1<<63-1) {
		return MaxBuckets + 1
	}
	n := int64(span / w.Bucket)
	if span%w.Bucket != 0 {
		n++
	}
	return n
}

// AutoBucket returns a bucket width for a window of length span that gives a readable
// time series: the smallest of 1s, 5s, 15s, 30s, 1m, 5m, 15m, 30m, 1h, 3h, 6h, 12h, 1d,
// 7d and 30d that makes at most 60 buckets, or span/60 rounded up to a whole day for
// longer windows. It never makes more than [MaxBuckets] buckets.
func AutoBucket(span time.Duration) time.Duration {
	const target = 60
	day := 24 * time.Hour
	for _, b := range []time.Duration{time.Second, 5 * time.Second, 15 * time.Second, 30 * time.Second,
		time.Minute, 5 * time.Minute, 15 * time.Minute, 30 * time.Minute, time.Hour, 3 * time.Hour,
		6 * time.Hour, 12 * time.Hour, day, 7 * day, 30 * day} {
		if span <= b*target {
			return b
		}
	}
	b := span / target
	if r := b % day; r != 0 {
		b += day - r
	}
	return b
}

// Count is a name and how often it occurred.
type Count struct {
	Name  string `json:"name"`
	Count int64  `json:"count"`
}

// Span is the window of [Figures], as JSON.
type Span struct {
	From          time.Time `json:"from"`
	To            time.Time `json:"to"`
	BucketSeconds float64   `json:"bucket_seconds"`
}

// Decisions counts call decisions by outcome. Every call decision counts in exactly one
// field, so the fields add up to [Figures].Calls.
type Decisions struct {
	// Allow counts call.intent events with decision allow: the policy allowed the call
	// and it was forwarded.
	Allow int64 `json:"allow"`
	// Approve counts call.intent events with decision approve: the policy held the call
	// for a person, who approved it, and it was forwarded.
	Approve int64 `json:"approve"`
	// Deny counts call.refused events with decision deny: the policy denied the call (or,
	// failing closed, could not be evaluated: reason policy_error).
	Deny int64 `json:"deny"`
	// Refused counts the other call.refused events: refused before the policy decided
	// (kill switch, budget, unknown tool, invalid arguments, egress, ...), or after it
	// allowed or held the call (a budget, a kill switch, a declined, expired or still
	// pending approval, ...). The reason code says which.
	Refused int64 `json:"refused"`
	// Suggested counts call.suggested events: a suggest-only agent's call, recorded for a
	// person and not executed.
	Suggested int64 `json:"suggested"`
}

// Bucket is one step of the time series: the call decisions of the events in
// [Start, Start+bucket).
type Bucket struct {
	Start     time.Time `json:"start"`
	Allow     int64     `json:"allow"`
	Approved  int64     `json:"approved"` // allowed after a person approved
	Deny      int64     `json:"deny"`
	Refused   int64     `json:"refused"`
	Suggested int64     `json:"suggested"`
}

// Total is the number of call decisions in the bucket.
func (b Bucket) Total() int64 { return b.Allow + b.Approved + b.Deny + b.Refused + b.Suggested }

// Approvals are the figures of held calls, from the approval.* events of the window.
type Approvals struct {
	Requested int64 `json:"requested"` // approval.requested events
	Approved  int64 `json:"approved"`  // approval.approved events
	Denied    int64 `json:"denied"`    // approval.denied events (declined by a person, or voided by a kill switch)
	Expired   int64 `json:"expired"`   // approval.expired events: nobody decided in time
	// Rate is Approved / (Approved + Denied + Expired): an expired request counts as
	// declined, as it does for the call. 0 when none was decided. The same definition as
	// `chaperone approvals stats`.
	Rate float64 `json:"rate"`
	// MedianSeconds and P90Seconds are the time to decide (from the request to the
	// decision) of the approved and denied requests with a recorded time to decide: the
	// value at index n/2 and at min(n-1, 9n/10) of the sorted times. 0 when there is none.
	MedianSeconds float64 `json:"median_seconds"`
	P90Seconds    float64 `json:"p90_seconds"`
}

// Tasks are the figures of the tasks that ended in the window (task.ended events), and
// the spend charged by calls in it.
type Tasks struct {
	Ended int64 `json:"ended"`
	// StepsMean, StepsMedian and StepsMax are over the ended tasks' steps (calls that
	// reached their tool); the median is the value at index n/2 of the sorted steps.
	StepsMean   float64 `json:"steps_mean"`
	StepsMedian int64   `json:"steps_median"`
	StepsMax    int64   `json:"steps_max"`
	// Spend is the total spend of the ended tasks, SpendMean Spend / Ended.
	Spend     float64 `json:"spend"`
	SpendMean float64 `json:"spend_mean"`
	// Tokens is the total of the model tokens the ended tasks reported.
	Tokens int64 `json:"tokens"`
	// CallSpend is the spend the allowed calls of the window charged (call.intent Spend),
	// whether or not their task has ended.
	CallSpend float64 `json:"call_spend"`
}

// Kill is one kill.engaged event.
type Kill struct {
	Seq    int64     `json:"seq"`
	Time   time.Time `json:"time"`
	Scope  string    `json:"scope"`
	Reason string    `json:"reason"`
	// Detail says who pulled it and what it cancelled, as the gateway recorded it.
	Detail string `json:"detail"`
	// ContainSeconds is the time to contain: from the switch to the end of the last call
	// in flight it cancelled.
	ContainSeconds float64 `json:"contain_seconds"`
}

// PolicyLoad is a policy version loaded (policy.loaded) in the window.
type PolicyLoad struct {
	// Version is "sha256:<hex>" of the policy sources.
	Version string `json:"version"`
	// FirstLoaded is the first time it was loaded in the window; Loads how often (each
	// gateway start and each replica loads it).
	FirstLoaded time.Time `json:"first_loaded"`
	Loads       int64     `json:"loads"`
}

// AgentFigures are one agent's figures in the window.
type AgentFigures struct {
	Agent string `json:"agent"`
	// Calls counts the agent's call decisions, Refused those of them that are call.refused
	// events (denied by the policy or refused otherwise).
	Calls   int64 `json:"calls"`
	Refused int64 `json:"refused"`
	// LastSeen is the time of the agent's latest event of any kind in the window.
	LastSeen time.Time `json:"last_seen"`
}

// Governance are the figures an auditor asks for first.
type Governance struct {
	// WithinAllowLists is the share of call decisions that were allowed calls:
	// (Decisions.Allow + Decisions.Approve) / Calls, from 0 to 1; 0 when there was no
	// call. Every call an agent makes is either within what the policy (and, for held
	// calls, a person) allows, or not forwarded.
	WithinAllowLists float64 `json:"within_allow_lists"`
	// AllowedCalls is the numerator of WithinAllowLists.
	AllowedCalls int64 `json:"allowed_calls"`
	// UnsafeAttempts counts the call.refused events that stopped something unsafe: those
	// the policy denied (decision deny, except reason policy_error, which is the gateway
	// failing closed) — information-flow rules among them — and those the egress sensor
	// refused (reason egress_denied). Refusals for capacity, budgets, kill switches,
	// unknown tools, invalid arguments and unavailable sensors are not attempts of
	// anything unsafe and are not counted.
	UnsafeAttempts int64 `json:"unsafe_attempts"`
	// MeanSecondsBetweenUnsafe is the window's length divided by UnsafeAttempts (as a
	// mean time between failures is defined); 0 when there was none.
	MeanSecondsBetweenUnsafe float64 `json:"mean_seconds_between_unsafe"`
	// ContainMeanSeconds and ContainMaxSeconds are the mean and the longest time to
	// contain of the kill switches pulled in the window; 0 when none was.
	ContainMeanSeconds float64 `json:"contain_mean_seconds"`
	ContainMaxSeconds  float64 `json:"contain_max_seconds"`
}

// Figures are the numbers of a window of the audit log. Every list is sorted: counts by
// count, largest first, then by name; everything else as its doc says. Lists are never
// nil, so they encode as [] in JSON.
type Figures struct {
	Window Span `json:"window"`
	// Events counts the events of the window, tombstones excluded.
	Events int64 `json:"events"`
	// Pruned counts the tombstones of the window: events whose content retention removed.
	Pruned int64 `json:"pruned"`
	// Unreadable counts the records [Compute] could not read back (tampered or corrupt)
	// and skipped, from where it started reading (shortly before the window) to the end of
	// the log: their time is unknown. An [Accumulator] alone leaves it 0.
	Unreadable int64 `json:"unreadable"`
	// Calls counts call decisions: call.intent, call.refused and call.suggested events.
	Calls     int64     `json:"calls"`
	Decisions Decisions `json:"decisions"`
	// Series is the time series of call decisions, one [Bucket] per window.Bucket from
	// From, in time order.
	Series []Bucket `json:"series"`
	// TopReasons are the [TopN] most frequent reason codes of call.refused events.
	TopReasons []Count `json:"top_reasons"`
	// TopRules are the [TopN] rules most often among the Rules of call.refused events.
	TopRules  []Count   `json:"top_rules"`
	Approvals Approvals `json:"approvals"`
	Tasks     Tasks     `json:"tasks"`
	// BreakerTrips counts breaker.changed events to open; BreakerTripsByAgent splits them
	// by agent.
	BreakerTrips        int64   `json:"breaker_trips"`
	BreakerTripsByAgent []Count `json:"breaker_trips_by_agent"`
	// SensorDetections counts what the content sensors found, one per Sensors entry of
	// any event, by kind: injection, secret, pii, egress (a destination refused), ... —
	// the entry's first field after its place ("args:", "prompt:", "result:"), so
	// "args:secret:aws_access_key" counts as secret. "session:injection:..." (a call in a
	// session that has seen an injection) counts as session_injection.
	SensorDetections []Count `json:"sensor_detections"`
	// SensorActions counts what the sensors did rather than found — redacted, tokenized,
	// detokenized, sanitized, unscanned, unreadable — by that word, one per entry: a
	// "redacted:secret:2" entry counts once, however many values it redacted.
	SensorActions []Count `json:"sensor_actions"`
	// Kills are the kill.engaged events, by time then seq.
	Kills []Kill `json:"kills"`
	// KillsLifted counts kill.lifted events.
	KillsLifted int64 `json:"kills_lifted"`
	// AuthFailures counts auth.failed events.
	AuthFailures int64 `json:"auth_failures"`
	// PoliciesLoaded are the policy versions loaded in the window, by first load.
	PoliciesLoaded []PolicyLoad `json:"policies_loaded"`
	// PoliciesDeciding counts the call decisions by the PolicyVersion they carry (calls
	// refused before the policy decided carry none and are not counted).
	PoliciesDeciding []Count `json:"policies_deciding"`
	// Agents are the agents of the window's call decisions and other events, by id.
	Agents []AgentFigures `json:"agents"`
	// AgentEventsOmitted counts the events of agents not listed in Agents, because it
	// already holds as many agents (10,000) as it may.
	AgentEventsOmitted int64      `json:"agent_events_omitted"`
	Governance         Governance `json:"governance"`
}

// counter counts names, keeping at most maxKeys distinct ones.
type counter struct {
	m     map[string]int64
	other int64
}

func newCounter() counter { return counter{m: make(map[string]int64)} }

func (c *counter) add(name string, n int64) {
	if v, ok := c.m[name]; ok {
		c.m[name] = v + n
		return
	}
	if len(c.m) >= maxKeys {
		c.other += n
		return
	}
	// A copy, so the map does not keep the whole event's strings alive.
	c.m[strings.Clone(name)] = n
}

// list returns the counts sorted by count, largest first, then name, with [Other] last
// if anything was folded into it; at most limit entries if limit > 0 (then without
// Other).
func (c *counter) list(limit int) []Count {
	out := make([]Count, 0, len(c.m)+1)
	for k, v := range c.m {
		out = append(out, Count{Name: k, Count: v})
	}
	slices.SortFunc(out, byCount)
	if limit > 0 {
		return out[:min(limit, len(out))]
	}
	if c.other > 0 {
		out = append(out, Count{Name: Other, Count: c.other})
	}
	return out
}

func byCount(a, b Count) int {
	if c := cmp.Compare(b.Count, a.Count); c != 0 {
		return c
	}
	return strings.Compare(a.Name, b.Name)
}

// agentAcc is one agent's running figures.
type agentAcc struct {
	calls, refused int64
	lastSeen       time.Time
}

// policyAcc is one policy version's loads.
type policyAcc struct {
	first time.Time
	loads int64
}

// Accumulator adds events up into [Figures]. Feed it events in any order with Add; ask
// for the figures with Figures, as often as needed. It is not safe for concurrent use.
type Accumulator struct {
	w       Window
	buckets []Bucket

	events, pruned int64
	decisions      Decisions
	reasons, rules counter
	approvals      Approvals
	decideMicros   []int64 // time to decide of approved and denied requests
	tasksEnded     int64
	steps          []int64
	taskSpend      float64
	taskTokens     int64
	callSpend      float64
	trips          int64
	tripsByAgent   counter
	detections     counter
	actions        counter
	kills          []Kill
	lifted         int64
	authFailed     int64
	policies       map[string]*policyAcc
	policyOther    int64
	deciding       counter
	agents         map[string]*agentAcc
	agentsOmitted  int64
	unsafe         int64
}

// New returns an Accumulator for the window, or an error saying why the window is not
// valid (see [Window.Validate]).
func New(w Window) (*Accumulator, error) {
	if err := w.Validate(); err != nil {
		return nil, err
	}
	w.From, w.To = w.From.UTC(), w.To.UTC()
	a := &Accumulator{
		w:            w,
		buckets:      make([]Bucket, w.buckets()),
		reasons:      newCounter(),
		rules:        newCounter(),
		tripsByAgent: newCounter(),
		detections:   newCounter(),
		actions:      newCounter(),
		deciding:     newCounter(),
		policies:     make(map[string]*policyAcc),
		agents:       make(map[string]*agentAcc),
	}
	for i := range a.buckets {
		a.buckets[i].Start = w.From.Add(time.Duration(i) * w.Bucket)
	}
	return a, nil
}

// Add counts e if its Time is in the window; events outside it are ignored. It does not
// keep e.
func (a *Accumulator) Add(e *audit.Event) {
	if e.Time.Before(a.w.From) || !e.Time.Before(a.w.To) {
		return
	}
	if e.Pruned {
		a.pruned++
		return
	}
	a.events++
	if e.Agent != "" {
		a.seen(e)
	}
	for _, s := range e.Sensors {
		a.sensor(s)
	}
	switch e.Kind {
	case audit.KindCallIntent, audit.KindCallRefused, audit.KindCallSuggested:
		a.call(e)
	case audit.KindApprovalRequested:
		a.approvals.Requested++
	case audit.KindApprovalApproved:
		a.approvals.Approved++
		if e.LatencyMicros > 0 {
			a.decideMicros = append(a.decideMicros, e.LatencyMicros)
		}
	case audit.KindApprovalDenied:
		a.approvals.Denied++
		if e.LatencyMicros > 0 {
			a.decideMicros = append(a.decideMicros, e.LatencyMicros)
		}
	case audit.KindApprovalExpired:
		a.approvals.Expired++
	case audit.KindTaskEnded:
		a.tasksEnded++
		a.steps = append(a.steps, e.Steps)
		a.taskSpend += e.Spend
		a.taskTokens += e.Tokens
	case audit.KindBreakerChanged:
		if e.Decision == breakerOpen {
			a.trips++
			a.tripsByAgent.add(e.Agent, 1)
		}
	case audit.KindKillEngaged:
		a.kills = append(a.kills, Kill{Seq: e.Seq, Time: e.Time.UTC(), Scope: e.Scope, Reason: e.Reason, Detail: e.Detail,
			ContainSeconds: seconds(e.LatencyMicros)})
	case audit.KindKillLifted:
		a.lifted++
	case audit.KindAuthFailed:
		a.authFailed++
	case audit.KindPolicyLoaded:
		a.policyLoaded(e)
	}
}

// seen records e's agent as seen at e's time.
func (a *Accumulator) seen(e *audit.Event) {
	ag := a.agent(e.Agent)
	switch {
	case ag == nil:
		a.agentsOmitted++
	case e.Time.After(ag.lastSeen):
		ag.lastSeen = e.Time
	}
}

// agent returns the running figures of id, or nil when it holds as many agents as it
// may.
func (a *Accumulator) agent(id string) *agentAcc {
	if ag, ok := a.agents[id]; ok {
		return ag
	}
	if len(a.agents) >= maxKeys {
		return nil
	}
	ag := &agentAcc{}
	a.agents[strings.Clone(id)] = ag
	return ag
}

// call counts a call decision.
func (a *Accumulator) call(e *audit.Event) {
	b := &a.buckets[int(e.Time.Sub(a.w.From)/a.w.Bucket)]
	refused := false
	switch {
	case e.Kind == audit.KindCallSuggested:
		a.decisions.Suggested++
		b.Suggested++
	case e.Kind == audit.KindCallIntent && e.Decision == decisionApprove:
		a.decisions.Approve++
		b.Approved++
	case e.Kind == audit.KindCallIntent:
		a.decisions.Allow++
		b.Allow++
	case e.Decision == decisionDeny:
		a.decisions.Deny++
		b.Deny++
		refused = true
		if e.Reason != reasonPolicyError {
			a.unsafe++
		}
	default:
		a.decisions.Refused++
		b.Refused++
		refused = true
		if e.Reason == reasonEgressDenied {
			a.unsafe++
		}
	}
	if refused {
		if e.Reason != "" {
			a.reasons.add(e.Reason, 1)
		}
		for _, r := range e.Rules {
			a.rules.add(r, 1)
		}
	}
	if e.Kind == audit.KindCallIntent {
		a.callSpend += e.Spend
	}
	if e.PolicyVersion != "" {
		a.deciding.add(e.PolicyVersion, 1)
	}
	if e.Agent == "" {
		return
	}
	if ag := a.agent(e.Agent); ag != nil {
		ag.calls++
		if refused {
			ag.refused++
		}
	}
}

// Places a Sensors entry may start with, and the actions (rather than findings) it may
// name.
var (
	sensorPlaces  = []string{"args:", "prompt:", "result:"}
	sensorActions = map[string]bool{
		"redacted": true, "tokenized": true, "detokenized": true, "sanitized": true,
		"unscanned": true, "unreadable": true,
	}
)

// sensor counts one Sensors entry; see [Figures].SensorDetections.
func (a *Accumulator) sensor(s string) {
	if rest, ok := strings.CutPrefix(s, "session:"); ok {
		if strings.HasPrefix(rest, "injection") {
			a.detections.add("session_injection", 1)
			return
		}
		s = rest
	}
	for _, p := range sensorPlaces {
		if rest, ok := strings.CutPrefix(s, p); ok {
			s = rest
			break
		}
	}
	kind, _, _ := strings.Cut(s, ":")
	if kind == "" {
		return
	}
	if sensorActions[kind] {
		a.actions.add(kind, 1)
		return
	}
	a.detections.add(kind, 1)
}

// policyLoaded records a policy.loaded event.
func (a *Accumulator) policyLoaded(e *audit.Event) {
	if p, ok := a.policies[e.PolicyVersion]; ok {
		p.loads++
		if e.Time.Before(p.first) {
			p.first = e.Time
		}
		return
	}
	if len(a.policies) >= maxKeys {
		a.policyOther++
		return
	}
	a.policies[strings.Clone(e.PolicyVersion)] = &policyAcc{first: e.Time, loads: 1}
}

// Figures returns the figures of the events added so far. It does not change the
// Accumulator.
func (a *Accumulator) Figures() Figures {
	f := Figures{
		Window:              Span{From: a.w.From, To: a.w.To, BucketSeconds: a.w.Bucket.Seconds()},
		Events:              a.events,
		Pruned:              a.pruned,
		Calls:               a.decisions.Allow + a.decisions.Approve + a.decisions.Deny + a.decisions.Refused + a.decisions.Suggested,
		Decisions:           a.decisions,
		Series:              slices.Clone(a.buckets),
		TopReasons:          a.reasons.list(TopN),
		TopRules:            a.rules.list(TopN),
		Approvals:           a.approvals,
		BreakerTrips:        a.trips,
		BreakerTripsByAgent: a.tripsByAgent.list(0),
		SensorDetections:    a.detections.list(0),
		SensorActions:       a.actions.list(0),
		KillsLifted:         a.lifted,
		AuthFailures:        a.authFailed,
		PoliciesDeciding:    a.deciding.list(0),
		AgentEventsOmitted:  a.agentsOmitted,
	}
	if decided := a.approvals.Approved + a.approvals.Denied + a.approvals.Expired; decided > 0 {
		f.Approvals.Rate = float64(a.approvals.Approved) / float64(decided)
	}
	if len(a.decideMicros) > 0 {
		l := slices.Sorted(slices.Values(a.decideMicros))
		f.Approvals.MedianSeconds = seconds(l[len(l)/2])
		f.Approvals.P90Seconds = seconds(l[min(len(l)-1, len(l)*9/10)])
	}
	f.Tasks = a.tasks()

	f.Kills = slices.Clone(a.kills)
	slices.SortFunc(f.Kills, func(x, y Kill) int {
		return cmp.Or(x.Time.Compare(y.Time), cmp.Compare(x.Seq, y.Seq), strings.Compare(x.Scope, y.Scope))
	})
	if f.Kills == nil {
		f.Kills = []Kill{}
	}

	f.PoliciesLoaded = make([]PolicyLoad, 0, len(a.policies)+1)
	for v, p := range a.policies {
		f.PoliciesLoaded = append(f.PoliciesLoaded, PolicyLoad{Version: v, FirstLoaded: p.first.UTC(), Loads: p.loads})
	}
	slices.SortFunc(f.PoliciesLoaded, func(x, y PolicyLoad) int {
		return cmp.Or(x.FirstLoaded.Compare(y.FirstLoaded), strings.Compare(x.Version, y.Version))
	})
	if a.policyOther > 0 {
		f.PoliciesLoaded = append(f.PoliciesLoaded, PolicyLoad{Version: Other, Loads: a.policyOther})
	}

	f.Agents = make([]AgentFigures, 0, len(a.agents))
	for id, ag := range a.agents {
		f.Agents = append(f.Agents, AgentFigures{Agent: id, Calls: ag.calls, Refused: ag.refused, LastSeen: ag.lastSeen.UTC()})
	}
	slices.SortFunc(f.Agents, func(x, y AgentFigures) int { return strings.Compare(x.Agent, y.Agent) })
	f.Governance = a.governance(f)
	return f
}

// tasks computes the task figures.
func (a *Accumulator) tasks() Tasks {
	t := Tasks{Ended: a.tasksEnded, Spend: a.taskSpend, Tokens: a.taskTokens, CallSpend: a.callSpend}
	if len(a.steps) == 0 {
		return t
	}
	l := slices.Sorted(slices.Values(a.steps))
	var sum int64
	for _, s := range l {
		sum += s
	}
	n := float64(len(l))
	t.StepsMean, t.StepsMedian, t.StepsMax = float64(sum)/n, l[len(l)/2], l[len(l)-1]
	t.SpendMean = a.taskSpend / n
	return t
}

// governance computes the governance figures of f.
func (a *Accumulator) governance(f Figures) Governance {
	g := Governance{AllowedCalls: f.Decisions.Allow + f.Decisions.Approve, UnsafeAttempts: a.unsafe}
	if f.Calls > 0 {
		g.WithinAllowLists = float64(g.AllowedCalls) / float64(f.Calls)
	}
	if a.unsafe > 0 {
		g.MeanSecondsBetweenUnsafe = a.w.To.Sub(a.w.From).Seconds() / float64(a.unsafe)
	}
	if len(a.kills) > 0 {
		var sum float64
		for _, k := range a.kills {
			sum += k.ContainSeconds
			g.ContainMaxSeconds = max(g.ContainMaxSeconds, k.ContainSeconds)
		}
		g.ContainMeanSeconds = sum / float64(len(a.kills))
	}
	return g
}

// seconds converts microseconds to seconds.
func seconds(micros int64) float64 { return float64(micros) / 1e6 }
