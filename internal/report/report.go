package report

import (
	"cmp"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/chaperone-dev/chaperone/internal/approval"
	"github.com/chaperone-dev/chaperone/internal/audit"
	"github.com/chaperone-dev/chaperone/internal/insight"
	"github.com/chaperone-dev/chaperone/internal/sign"
	"github.com/chaperone-dev/chaperone/internal/store"
)

// DefaultTitle is the title of a report whose [Options].Title is empty.
const DefaultTitle = "Chaperone evidence report"

// NoUndo is the undo of a decision letter when neither the request nor the
// configuration says how to undo the tool's calls.
const NoUndo = "no undo recorded"

// Bounds of a report.
const (
	// MaxTitle bounds [Options].Title, in bytes.
	MaxTitle = 200
	// maxListed bounds each list the report collects from the log (lifts, breaker trips,
	// approvals decided): a window holding more is reported as cut, in Notes.
	maxListed = 100_000
	// checkpointPage is how many checkpoints are read per query.
	checkpointPage = 1000
	// backPage is how many events are read at a time when looking back for the policy in
	// force at the window's start.
	backPage = 256
	// maxPreview bounds an argument preview in the HTML page, in bytes; report.json has it
	// whole.
	maxPreview = 4000
)

// Options say what to report on.
type Options struct {
	// From and To bound the window: events with From <= Time < To.
	From, To time.Time
	// Store is the gateway's store; read-only is enough.
	Store store.Store
	// Keys are the public keys whose signed checkpoints are trusted. Without any, the
	// chain is verified without its checkpoints, and the report says so.
	Keys []ed25519.PublicKey
	// Now is the clock for GeneratedAt; default time.Now.
	Now func() time.Time
	// Title heads the report; default [DefaultTitle]. At most [MaxTitle] bytes.
	Title string
	// Undo says, by tool, how to undo a call, from the configuration; may be nil. A
	// request's own Undo (declared when it was made) comes first.
	Undo map[string]string
	// Declared are the agents the configuration declares (they are not stored); may be
	// nil. A stored agent with the same id wins.
	Declared []Agent
	// Progress, if set, is told how far Build has got: called when a phase starts, after
	// each page of events it reads, and when the phase ends, with the events read so far
	// (counted by seq from where the phase starts reading) and the events to read (up to
	// the log's last event when the phase started; more are read if the log grows
	// meanwhile). From Build's goroutine. nil: none.
	Progress func(phase Phase, done, total int64)
}

// Phase is a part of [Build] that reads the audit log.
type Phase string

// The phases of [Build], in order.
const (
	// PhaseRead reads the events of the window (from just before it to the log's end).
	PhaseRead Phase = "read"
	// PhaseVerify verifies the whole log's chain.
	PhaseVerify Phase = "verify"
)

// progressSource is an audit source that reports, after each page, how many events of
// a phase have been read: the seq reached minus the seq the phase started after.
type progressSource struct {
	audit.Source
	phase        Phase
	after, total int64
	report       func(Phase, int64, int64)
	done         int64
}

// track returns o.Store itself when o has no Progress; otherwise a source over it that
// reports the reading of phase, which starts after the event with seq after, and reports
// its start. The total is the log's last seq minus after, or 0 (not known) when the last
// event cannot be read: a log the report describes as damaged is reported on all the
// same, with or without progress.
func track(ctx context.Context, o *Options, phase Phase, after int64) (audit.Source, *progressSource) {
	if o.Progress == nil {
		return o.Store, nil
	}
	p := &progressSource{Source: o.Store, phase: phase, after: after, report: o.Progress}
	if head, ok, err := o.Store.LastEvent(ctx); err == nil && ok {
		p.total = max(head.Seq-after, 0)
	}
	p.report(phase, 0, p.total)
	return p, p
}

func (p *progressSource) ScanEvents(ctx context.Context, afterSeq int64, limit int) ([]audit.Event, error) {
	evs, err := p.Source.ScanEvents(ctx, afterSeq, limit)
	if n := len(evs); n > 0 && evs[n-1].Seq-p.after > p.done {
		p.done = evs[n-1].Seq - p.after
		p.report(p.phase, p.done, p.total)
	}
	return evs, err
}

// end reports the end of the phase, with the events it read. p may be nil.
func (p *progressSource) end() {
	if p != nil {
		p.report(p.phase, p.done, p.total)
	}
}

// Report is the evidence of a window. Its JSON form is report.json.
type Report struct {
	Title       string    `json:"title"`
	GeneratedAt time.Time `json:"generated_at"`
	Window      Window    `json:"window"`
	// Figures are the numbers of the window, decisions by outcome and the governance
	// figures among them; see [insight.Figures] for their definitions.
	Figures insight.Figures `json:"figures"`
	// Agents is the agent directory as stored now, by id.
	Agents []Agent `json:"agents"`
	// Policies are the policy versions in force during the window.
	Policies []Policy `json:"policies"`
	// Letters are the approval requests decided in the window, by decision time.
	Letters []Letter `json:"decision_letters"`
	// Containment lists the kill switches, lifts and breaker trips of the window.
	Containment Containment `json:"containment"`
	// Verification is the result of checking the whole audit log's chain.
	Verification Verification `json:"verification"`
	// Checkpoints are the signed checkpoints made in the window, by seq.
	Checkpoints []Checkpoint `json:"checkpoints"`
	// Notes say what the report could not see or had to leave out.
	Notes []string `json:"notes"`
}

// Window is the time range of a report.
type Window struct {
	From time.Time `json:"from"`
	To   time.Time `json:"to"`
}

// Agent is one entry of the agent directory. It never carries a secret, a secret's hash
// or a key.
type Agent struct {
	ID          string `json:"id"`
	Owner       string `json:"owner"`
	Purpose     string `json:"purpose"`
	Environment string `json:"environment"`
	Autonomy    int    `json:"autonomy"`
	Status      string `json:"status"`
	// Source is "registry" for an agent registered through the API, "config" for one
	// declared in the gateway's configuration.
	Source string `json:"source"`
}

// Policy is a policy version in force during the window.
type Policy struct {
	// Version is "sha256:<hex>" of the policy sources: it names and hashes them at once.
	Version string `json:"version"`
	// InForceAtStart says it was the version in force when the window began: the last
	// loaded before From.
	InForceAtStart bool `json:"in_force_at_start"`
	// LoadedAt is when it was first loaded: before the window if InForceAtStart, within it
	// otherwise; zero if no load of it was found (it decided calls all the same).
	LoadedAt time.Time `json:"loaded_at,omitzero"`
	// From and Until are the first and last times it was in force during the window,
	// from the order of the policy.loaded events: it is in force from its load until
	// another version is loaded. Zero if no load of it was found.
	From  time.Time `json:"in_force_from,omitzero"`
	Until time.Time `json:"in_force_until,omitzero"`
	// Loads counts its policy.loaded events in the window.
	Loads int64 `json:"loads"`
	// Calls counts the call decisions of the window that name it.
	Calls int64 `json:"calls"`
}

// Approver is one approval of a request.
type Approver struct {
	By string    `json:"by"`
	At time.Time `json:"at"`
}

// Letter is the record of one approval request decided in the window: what was asked,
// who decided, when, why it was held and how to undo it.
type Letter struct {
	ID string `json:"id"`
	// Status is approved, used (approved and run), denied or expired.
	Status   string `json:"status"`
	Tool     string `json:"tool"`
	Upstream string `json:"upstream,omitempty"`
	Agent    string `json:"agent"`
	User     string `json:"user,omitempty"`
	Task     string `json:"task,omitempty"`
	// Arguments is the call's arguments with secrets redacted ([approval.Preview]).
	Arguments json.RawMessage `json:"arguments_preview"`
	// AgentReason is the reason the agent gave for the call, secrets redacted.
	AgentReason string   `json:"agent_reason,omitempty"`
	Risk        int      `json:"risk"`
	RiskFactors []string `json:"risk_factors"`
	// Rules are the rules that held the call, under PolicyVersion; Explanation says, when
	// information flow made a rule fire, where the call's values came from.
	Rules         []string `json:"rules"`
	PolicyVersion string   `json:"policy_version,omitempty"`
	Explanation   string   `json:"explanation,omitempty"`
	// Required is how many distinct people had to approve.
	Required  int        `json:"required_approvers"`
	Approvers []Approver `json:"approvers"`
	// DeniedBy, DenyCode and DenyText say who declined, with which reason code and text
	// (code killed: voided by a kill switch).
	DeniedBy    string    `json:"denied_by,omitempty"`
	DenyCode    string    `json:"deny_code,omitempty"`
	DenyText    string    `json:"deny_text,omitempty"`
	RequestedAt time.Time `json:"requested_at"`
	DecidedAt   time.Time `json:"decided_at"`
	ExpiresAt   time.Time `json:"expires_at"`
	// UsedAt is when the approved call ran; zero if it did not (yet).
	UsedAt        time.Time `json:"used_at,omitzero"`
	DecideSeconds float64   `json:"decide_seconds"`
	// Undo says how to undo the call, and UndoFrom where that came from: "request" (the
	// tool's declaration when the call was held), "config" ([Options].Undo) or "none".
	Undo     string `json:"undo"`
	UndoFrom string `json:"undo_from"`
}

// KillEntry is a kill switch pulled in the window, with what its detail says it did.
type KillEntry struct {
	insight.Kill
	// DetailParsed says the detail is in the gateway's form, so By, CallsCancelled and
	// ApprovalsVoided are read from it; otherwise only Detail is known.
	DetailParsed    bool   `json:"detail_parsed"`
	By              string `json:"by,omitempty"`
	CallsCancelled  int64  `json:"calls_cancelled"`
	ApprovalsVoided int64  `json:"approvals_voided"`
}

// Lift is a kill switch lifted in the window.
type Lift struct {
	Seq    int64     `json:"seq"`
	Time   time.Time `json:"time"`
	Scope  string    `json:"scope"`
	Reason string    `json:"reason"`
	Detail string    `json:"detail"`
}

// Trip is an agent's circuit breaker tripping (breaker.changed to open) in the window.
type Trip struct {
	Seq   int64     `json:"seq"`
	Time  time.Time `json:"time"`
	Agent string    `json:"agent"`
	// Signal is what tripped it: denials, errors, spend, injections, ...
	Signal string `json:"signal"`
	Detail string `json:"detail"`
}

// Containment is what stopped agents in the window.
type Containment struct {
	Kills        []KillEntry `json:"kills"`
	Lifts        []Lift      `json:"lifts"`
	BreakerTrips []Trip      `json:"breaker_trips"`
}

// Break is where the chain broke.
type Break struct {
	Seq     int64  `json:"seq"`
	Problem string `json:"problem"`
}

// Anchor is the newest signed checkpoint the chain matched.
type Anchor struct {
	Seq  int64     `json:"seq"`
	Time time.Time `json:"time"`
	Key  string    `json:"key"`
}

// Verification is the result of [audit.VerifyChain] over the whole log.
type Verification struct {
	// OK says the chain is intact: no event edited, removed, reordered or unreadable,
	// and every stored checkpoint trustworthy and matched.
	OK bool `json:"ok"`
	// Broken is the first break, nil when OK.
	Broken *Break `json:"broken,omitempty"`
	// Events counts the events checked: all of them when OK, those before the break
	// otherwise. Head is the hash of the last one.
	Events int64  `json:"events"`
	Head   string `json:"head"`
	// Tombstones counts the events whose content retention removed; their place in the
	// chain is checked, their content cannot be.
	Tombstones int64 `json:"tombstones"`
	// Unfinished counts call intents without an outcome: calls during which the gateway
	// stopped.
	Unfinished int64 `json:"unfinished"`
	// Keys are the ids of the trusted keys the checkpoints were checked with.
	Keys []string `json:"keys"`
	// CheckpointsStored counts the checkpoints stored beside the log; CheckpointsChecked
	// those checked (all of them when keys were given, none otherwise) and
	// CheckpointsMatched those the chain passes through.
	CheckpointsStored  int `json:"checkpoints_stored"`
	CheckpointsChecked int `json:"checkpoints_checked"`
	CheckpointsMatched int `json:"checkpoints_matched"`
	// Anchor is the newest checkpoint matched; nil if none. NotCovered counts the events
	// after it: their deletion from the end of the log would not show.
	Anchor     *Anchor `json:"anchor,omitempty"`
	NotCovered int64   `json:"not_covered"`
}

// Checkpoint is a signed checkpoint made in the window.
type Checkpoint struct {
	Seq  int64     `json:"seq"`
	Head string    `json:"head"`
	Time time.Time `json:"time"`
	Key  string    `json:"key"`
	// Verified says its signature verifies with one of the trusted keys; Problem says why
	// not, otherwise.
	Verified bool   `json:"verified"`
	Problem  string `json:"problem,omitempty"`
}

// validate checks o and fills its defaults.
func (o *Options) validate() error {
	var errs []error
	if o.Store == nil {
		errs = append(errs, errors.New("no store"))
	}
	switch {
	case o.From.IsZero() || o.To.IsZero():
		errs = append(errs, errors.New("from and to are required"))
	case !o.From.Before(o.To):
		errs = append(errs, fmt.Errorf("from %s is not before to %s", o.From.UTC().Format(time.RFC3339Nano), o.To.UTC().Format(time.RFC3339Nano)))
	}
	if len(o.Title) > MaxTitle {
		errs = append(errs, fmt.Errorf("title of %d bytes, at most %d", len(o.Title), MaxTitle))
	}
	for i, k := range o.Keys {
		if len(k) != ed25519.PublicKeySize {
			errs = append(errs, fmt.Errorf("key %d is %d bytes, want an Ed25519 public key of %d", i+1, len(k), ed25519.PublicKeySize))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("report: options: %w", err)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if strings.TrimSpace(o.Title) == "" {
		o.Title = DefaultTitle
	}
	o.From, o.To = o.From.UTC(), o.To.UTC()
	return nil
}

// Build reads the store and builds the report of the window. It fails only when the
// options are invalid or the store cannot be read; a broken chain is a finding, reported
// in Verification.
func Build(ctx context.Context, o Options) (*Report, error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	r := &Report{Title: o.Title, GeneratedAt: o.Now().UTC(), Window: Window{From: o.From, To: o.To}}
	c, err := collect(ctx, &o)
	if err != nil {
		return nil, err
	}
	r.Figures = c.acc.Figures()
	r.Figures.Unreadable = c.unreadable
	if c.unreadable > 0 {
		r.Notes = append(r.Notes, fmt.Sprintf("%d audit records from the window's start on could not be read (see the verification): the figures leave them out.", c.unreadable))
	}
	if r.Figures.Pruned > 0 {
		r.Notes = append(r.Notes, fmt.Sprintf("%d events of the window are tombstones: retention removed their content, so the figures do not count them.", r.Figures.Pruned))
	}
	if c.cut {
		r.Notes = append(r.Notes, fmt.Sprintf("The window holds more than %d lifts, breaker trips or decided approvals: the lists stop there.", maxListed))
	}
	if r.Policies, err = c.policies(ctx, &o, r.Figures); err != nil {
		return nil, err
	}
	if r.Letters, err = letters(ctx, &o, c.approvalIDs, &r.Notes); err != nil {
		return nil, err
	}
	if r.Agents, err = agents(ctx, o.Store, o.Declared); err != nil {
		return nil, err
	}
	r.Containment = containment(r.Figures.Kills, c.lifts, c.trips)
	if r.Verification, r.Checkpoints, err = verify(ctx, &o, &r.Notes); err != nil {
		return nil, err
	}
	if r.Notes == nil {
		r.Notes = []string{}
	}
	return r, nil
}

// policyLoad is one policy.loaded event.
type policyLoad struct {
	seq     int64
	at      time.Time
	version string
}

// collector gathers, in one read of the log, the figures and the lists of the window.
type collector struct {
	from, to    time.Time
	acc         *insight.Accumulator
	seekedAfter int64 // the seq the read started after
	unreadable  int64
	// before is the latest policy.loaded before the window seen by the read; nil if none.
	before      *policyLoad
	loads       []policyLoad // policy.loaded events in the window
	lifts       []Lift
	trips       []Trip
	approvalIDs map[string]bool // approvals decided in the window, by their audit events
	cut         bool            // a list reached maxListed
}

// collect reads the log from just before the window to its end.
func collect(ctx context.Context, o *Options) (*collector, error) {
	acc, err := insight.New(insight.Window{From: o.From, To: o.To, Bucket: insight.AutoBucket(o.To.Sub(o.From))})
	if err != nil {
		return nil, fmt.Errorf("report: %w", err)
	}
	c := &collector{from: o.From, to: o.To, acc: acc, approvalIDs: map[string]bool{}}
	if c.seekedAfter, err = insight.SeekTime(ctx, o.Store, o.From); err != nil {
		return nil, fmt.Errorf("report: %w", err)
	}
	src, p := track(ctx, o, PhaseRead, c.seekedAfter)
	st, err := insight.Scan(ctx, src, c.seekedAfter, c.add)
	if err != nil {
		return nil, fmt.Errorf("report: %w", err)
	}
	p.end()
	c.unreadable = st.Unreadable
	return c, nil
}

// add takes one event of the log.
func (c *collector) add(e *audit.Event) error {
	c.acc.Add(e)
	if e.Pruned {
		return nil
	}
	if e.Time.Before(c.from) {
		if e.Kind == audit.KindPolicyLoaded && (c.before == nil || laterLoad(e, c.before)) {
			c.before = &policyLoad{seq: e.Seq, at: e.Time, version: e.PolicyVersion}
		}
		return nil
	}
	if !e.Time.Before(c.to) {
		return nil
	}
	// full reports, and notes, a list that holds as many entries as it may.
	full := func(n int) bool {
		if n >= maxListed {
			c.cut = true
			return true
		}
		return false
	}
	switch e.Kind {
	case audit.KindPolicyLoaded:
		c.loads = append(c.loads, policyLoad{seq: e.Seq, at: e.Time, version: e.PolicyVersion})
	case audit.KindKillLifted:
		if !full(len(c.lifts)) {
			c.lifts = append(c.lifts, Lift{Seq: e.Seq, Time: e.Time.UTC(), Scope: e.Scope, Reason: e.Reason, Detail: e.Detail})
		}
	case audit.KindBreakerChanged:
		if e.Decision == "open" && !full(len(c.trips)) {
			c.trips = append(c.trips, Trip{Seq: e.Seq, Time: e.Time.UTC(), Agent: e.Agent, Signal: e.Reason, Detail: e.Detail})
		}
	case audit.KindApprovalApproved, audit.KindApprovalDenied, audit.KindApprovalExpired:
		if e.Approval != "" && !full(len(c.approvalIDs)) {
			c.approvalIDs[e.Approval] = true
		}
	}
	return nil
}

// laterLoad reports whether e is a later policy load than l: by time, then seq.
func laterLoad(e *audit.Event, l *policyLoad) bool {
	return e.Time.After(l.at) || (e.Time.Equal(l.at) && e.Seq > l.seq)
}

// errStop ends a bounded read of the log.
var errStop = errors.New("stop")

// inForceAtStart returns the policy load in force when the window began: the latest
// seen before it, or else the last one recorded before where the read started, found by
// reading back from there a page at a time.
func (c *collector) inForceAtStart(ctx context.Context, src audit.Source) (*policyLoad, error) {
	if c.before != nil {
		return c.before, nil
	}
	for end := c.seekedAfter; end > 0; end -= backPage {
		start := max(0, end-backPage)
		var found *policyLoad
		_, err := insight.Scan(ctx, src, start, func(e *audit.Event) error {
			if e.Seq > end {
				return errStop
			}
			if e.Kind == audit.KindPolicyLoaded && !e.Pruned && (found == nil || laterLoad(e, found)) {
				found = &policyLoad{seq: e.Seq, at: e.Time, version: e.PolicyVersion}
			}
			return nil
		})
		if err != nil && !errors.Is(err, errStop) {
			return nil, fmt.Errorf("report: find the policy in force at %s: %w", c.from.Format(time.RFC3339), err)
		}
		if found != nil {
			return found, nil
		}
	}
	return nil, nil
}

// policies lists the versions in force during the window: the one in force at its start,
// those loaded in it, and any other that decided a call in it.
func (c *collector) policies(ctx context.Context, o *Options, f insight.Figures) ([]Policy, error) {
	start, err := c.inForceAtStart(ctx, o.Store)
	if err != nil {
		return nil, err
	}
	byVersion := map[string]*Policy{}
	get := func(v string) *Policy {
		p := byVersion[v]
		if p == nil {
			p = &Policy{Version: v}
			byVersion[v] = p
		}
		return p
	}
	// in force: the version and since when, as the loads follow one another.
	var cur *Policy
	var since time.Time
	closeCur := func(until time.Time) {
		if cur == nil {
			return
		}
		if cur.From.IsZero() || since.Before(cur.From) {
			cur.From = since
		}
		if until.After(cur.Until) {
			cur.Until = until
		}
	}
	if start != nil {
		cur, since = get(start.version), o.From
		cur.InForceAtStart, cur.LoadedAt = true, start.at.UTC()
	}
	loads := slices.Clone(c.loads)
	slices.SortFunc(loads, func(a, b policyLoad) int { return cmp.Or(a.at.Compare(b.at), cmp.Compare(a.seq, b.seq)) })
	for _, l := range loads {
		p := get(l.version)
		p.Loads++
		if p.LoadedAt.IsZero() {
			p.LoadedAt = l.at.UTC()
		}
		if p == cur {
			continue
		}
		closeCur(l.at.UTC())
		cur, since = p, l.at.UTC()
	}
	closeCur(o.To)
	for _, d := range f.PoliciesDeciding {
		get(d.Name).Calls = d.Count
	}
	out := make([]Policy, 0, len(byVersion))
	for _, p := range byVersion {
		out = append(out, *p)
	}
	slices.SortFunc(out, func(a, b Policy) int {
		// In the order they came into force; versions without a known load last.
		return cmp.Or(cmp.Compare(boolInt(a.From.IsZero()), boolInt(b.From.IsZero())), a.From.Compare(b.From), strings.Compare(a.Version, b.Version))
	})
	return out, nil
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// decidedStatuses are the statuses of a decided request.
var decidedStatuses = []approval.Status{approval.StatusApproved, approval.StatusUsed, approval.StatusDenied, approval.StatusExpired}

// letters returns the decision letters of the requests decided in the window: those whose
// decision the audit log records in it (ids), and those the store lists as decided in it,
// in case an approval event was not recorded (the audit notifier is best effort).
func letters(ctx context.Context, o *Options, ids map[string]bool, notes *[]string) ([]Letter, error) {
	reqs := map[string]*approval.Request{}
	for _, s := range decidedStatuses {
		list, err := o.Store.Approvals(ctx, approval.Filter{Status: s, Limit: approval.MaxListLimit})
		if err != nil {
			return nil, fmt.Errorf("report: read %s approval requests: %w", s, err)
		}
		for i := range list {
			reqs[list[i].ID] = &list[i]
		}
		if len(list) == approval.MaxListLimit && !list[len(list)-1].CreatedAt.Before(o.From) {
			*notes = append(*notes, fmt.Sprintf("The store lists at most %d %s approval requests at a time, and the window goes back further: decision letters for %s requests rely on the audit log's approval events.",
				approval.MaxListLimit, s, s))
		}
	}
	var missing []string
	for _, id := range slices.Sorted(maps.Keys(ids)) {
		if _, ok := reqs[id]; ok {
			continue
		}
		r, err := o.Store.Approval(ctx, id)
		if errors.Is(err, approval.ErrNotFound) {
			missing = append(missing, id)
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("report: read approval request %s: %w", id, err)
		}
		reqs[id] = r
	}
	if len(missing) > 0 {
		*notes = append(*notes, fmt.Sprintf("%d approval requests decided in the window (per the audit log) are no longer in the store: %s.",
			len(missing), strings.Join(missing[:min(len(missing), 20)], ", ")))
	}
	var out []Letter
	for _, r := range reqs {
		if r.DecidedAt.IsZero() || r.DecidedAt.Before(o.From) || !r.DecidedAt.Before(o.To) {
			continue
		}
		out = append(out, letter(r, o.Undo))
	}
	slices.SortFunc(out, func(a, b Letter) int { return cmp.Or(a.DecidedAt.Compare(b.DecidedAt), strings.Compare(a.ID, b.ID)) })
	if out == nil {
		out = []Letter{}
	}
	return out, nil
}

// letter makes the decision letter of r.
func letter(r *approval.Request, undo map[string]string) Letter {
	l := Letter{
		ID: r.ID, Status: string(r.Status), Tool: r.Tool, Upstream: r.Upstream, Agent: r.Agent, User: r.User, Task: r.Task,
		Arguments:   approval.Preview(r.Arguments),
		AgentReason: approval.RedactText(r.Reason),
		Risk:        r.Risk, RiskFactors: nonNil(r.RiskFactors), Rules: nonNil(r.Rules), PolicyVersion: r.PolicyVersion,
		Explanation: approval.RedactText(r.Explanation),
		Required:    r.Required,
		Approvers:   []Approver{},
		DeniedBy:    r.DeniedBy, DenyCode: r.DenyCode, DenyText: approval.RedactText(r.DenyText),
		RequestedAt: r.CreatedAt.UTC(), DecidedAt: r.DecidedAt.UTC(), ExpiresAt: r.ExpiresAt.UTC(),
		DecideSeconds: r.DecidedAt.Sub(r.CreatedAt).Seconds(),
	}
	if !r.UsedAt.IsZero() {
		l.UsedAt = r.UsedAt.UTC()
	}
	for _, v := range r.Approvals {
		l.Approvers = append(l.Approvers, Approver{By: v.By, At: v.At.UTC()})
	}
	switch u := undo[r.Tool]; {
	case strings.TrimSpace(r.Undo) != "":
		l.Undo, l.UndoFrom = r.Undo, "request"
	case strings.TrimSpace(u) != "":
		l.Undo, l.UndoFrom = u, "config"
	default:
		l.Undo, l.UndoFrom = NoUndo, "none"
	}
	return l
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return slices.Clone(s)
}

// agents reads the agent directory and adds the declared agents it does not hold.
func agents(ctx context.Context, s store.Store, declared []Agent) ([]Agent, error) {
	recs, err := s.Agents(ctx)
	if err != nil {
		return nil, fmt.Errorf("report: read agents: %w", err)
	}
	out := make([]Agent, 0, len(recs)+len(declared))
	stored := make(map[string]bool, len(recs))
	for _, rec := range recs {
		a := rec.Agent
		stored[a.ID] = true
		out = append(out, Agent{ID: a.ID, Owner: a.Owner, Purpose: a.Purpose, Environment: a.Environment, Autonomy: a.Autonomy, Status: string(a.Status), Source: "registry"})
	}
	for _, a := range declared {
		if !stored[a.ID] {
			a.Source = "config"
			out = append(out, a)
		}
	}
	slices.SortFunc(out, func(a, b Agent) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

// containment gathers the window's kills, lifts and trips, in time order.
func containment(kills []insight.Kill, lifts []Lift, trips []Trip) Containment {
	c := Containment{Kills: make([]KillEntry, 0, len(kills)), Lifts: slices.Clone(lifts), BreakerTrips: slices.Clone(trips)}
	for _, k := range kills {
		e := KillEntry{Kill: k}
		if d, ok := parseKillDetail(k.Detail); ok {
			e.DetailParsed, e.By, e.CallsCancelled, e.ApprovalsVoided = true, d.by, d.cancelled, d.voided
		}
		c.Kills = append(c.Kills, e)
	}
	slices.SortFunc(c.Lifts, func(a, b Lift) int { return cmp.Or(a.Time.Compare(b.Time), cmp.Compare(a.Seq, b.Seq)) })
	slices.SortFunc(c.BreakerTrips, func(a, b Trip) int { return cmp.Or(a.Time.Compare(b.Time), cmp.Compare(a.Seq, b.Seq)) })
	if c.Lifts == nil {
		c.Lifts = []Lift{}
	}
	if c.BreakerTrips == nil {
		c.BreakerTrips = []Trip{}
	}
	return c
}

// verify checks the whole log's chain, anchored in the stored checkpoints when keys are
// given, and lists the checkpoints made in the window.
func verify(ctx context.Context, o *Options, notes *[]string) (Verification, []Checkpoint, error) {
	var stored []audit.Checkpoint
	for after := int64(0); ; {
		page, err := o.Store.Checkpoints(ctx, after, checkpointPage)
		if err != nil {
			return Verification{}, nil, fmt.Errorf("report: read checkpoints after event %d: %w", after, err)
		}
		if len(page) == 0 {
			break
		}
		stored = append(stored, page...)
		after = page[len(page)-1].Seq
	}
	v := Verification{Keys: []string{}, CheckpointsStored: len(stored)}
	for _, k := range o.Keys {
		v.Keys = append(v.Keys, sign.KeyID(k))
	}
	slices.Sort(v.Keys)
	v.Keys = slices.Compact(v.Keys)
	opts := audit.VerifyOptions{Keys: o.Keys}
	if len(o.Keys) > 0 {
		opts.Checkpoints = stored
		v.CheckpointsChecked = len(stored)
	} else if len(stored) > 0 {
		*notes = append(*notes, fmt.Sprintf("No trusted key was given, so the %d signed checkpoints were not checked: the chain is verified on its own, which cannot show events deleted from its end. Pass the gateway's public key (audit-signing.key.pub).", len(stored)))
	}
	src, p := track(ctx, o, PhaseVerify, 0)
	rep, err := audit.VerifyChain(ctx, src, opts)
	if err != nil {
		return Verification{}, nil, fmt.Errorf("report: verify the audit log: %w", err)
	}
	p.end()
	v.OK = rep.Broken == nil
	if rep.Broken != nil {
		v.Broken = &Break{Seq: rep.Broken.Seq, Problem: rep.Broken.Problem}
	}
	v.Events, v.Head, v.Tombstones, v.Unfinished, v.CheckpointsMatched = rep.Events, rep.Head, rep.Pruned, rep.Unfinished, rep.Checkpoints
	if a := rep.Anchor; a != nil {
		v.Anchor = &Anchor{Seq: a.Seq, Time: a.Time.UTC(), Key: a.Key}
		v.NotCovered = max(0, rep.From+rep.Events-a.Seq)
	} else {
		v.NotCovered = rep.Events
	}

	cps := []Checkpoint{}
	for _, c := range stored {
		if c.Time.Before(o.From) || !c.Time.Before(o.To) {
			continue
		}
		cp := Checkpoint{Seq: c.Seq, Head: c.Head, Time: c.Time.UTC(), Key: c.Key}
		switch err := c.Check(o.Keys); {
		case len(o.Keys) == 0:
			cp.Problem = "no trusted key was given to check it with"
		case err != nil:
			cp.Problem = strings.TrimPrefix(err.Error(), "audit: ")
		default:
			cp.Verified = true
		}
		cps = append(cps, cp)
	}
	slices.SortFunc(cps, func(a, b Checkpoint) int { return cmp.Or(cmp.Compare(a.Seq, b.Seq), a.Time.Compare(b.Time)) })
	return v, cps, nil
}
