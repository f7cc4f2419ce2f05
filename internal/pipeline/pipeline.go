// Package pipeline is the per-call pipeline, independent of transport: one [Call] in, one
// [Outcome] out. The MCP ingress hands it authenticated calls; later the REST entry, the
// egress proxy and replay will too.
//
// The stages, in order: resolve the tool in the registry (unknown, quarantined, missing),
// decode and validate the arguments (JSON Schema and overlay), decide by policy, record the
// intent durably in the audit log, call the upstream, record the outcome. Any stage that
// cannot do its job refuses the call (fail closed); every refusal is audited, and the agent
// gets a stable [Code] and one sentence — never internals beyond a rule id.
package pipeline

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/chaperone-dev/chaperone/internal/argcheck"
	"github.com/chaperone-dev/chaperone/internal/audit"
	"github.com/chaperone-dev/chaperone/internal/contain"
	"github.com/chaperone-dev/chaperone/internal/flow"
	"github.com/chaperone-dev/chaperone/internal/identity"
	"github.com/chaperone-dev/chaperone/internal/policy"
	"github.com/chaperone-dev/chaperone/internal/registry"
	"github.com/chaperone-dev/chaperone/internal/risk"
	"github.com/chaperone-dev/chaperone/internal/upstream"
)

// Code is a stable reason code for a refused call. Agents and operators may branch on it.
type Code string

// The reason codes.
const (
	CodeUnauthenticated  Code = "unauthenticated"
	CodeUnknownTool      Code = "unknown_tool"
	CodeOutOfScope       Code = "out_of_scope"
	CodeEnvironment      Code = "environment_mismatch"
	CodeBudgetExhausted  Code = "budget_exhausted"
	CodeQuarantined      Code = "quarantined"
	CodeToolUnavailable  Code = "tool_unavailable"
	CodeInvalidArguments Code = "invalid_arguments"
	CodeDeniedByPolicy   Code = "denied_by_policy"
	CodeApprovalRequired Code = "approval_required"
	CodePolicyError      Code = "policy_error"
	CodeAuditUnavailable Code = "audit_unavailable"
	CodeUpstreamError    Code = "upstream_error"
	// CodeFlowUnavailable: the gateway holds as many session flow states as it may, so it
	// cannot track this call's context.
	CodeFlowUnavailable Code = "flow_unavailable"
	// CodeApprovalPending: a person has been asked; the call has not run. Retry it, the
	// same call, with the approval id once it is approved.
	CodeApprovalPending Code = "approval_pending"
	// CodeApprovalDenied: a person declined the call.
	CodeApprovalDenied Code = "approval_denied"
	// CodeApprovalExpired: nobody decided in time, which counts as declined.
	CodeApprovalExpired Code = "approval_expired"
	// CodeSuggested: the agent is suggest-only (autonomy 0): the call was recorded as a
	// suggestion for a person and not executed.
	CodeSuggested Code = "suggested"
)

// Autonomy levels: how much an agent may do without a person.
const (
	// AutonomySuggest: writes, external and destructive calls are recorded as
	// suggestions, never executed.
	AutonomySuggest = 0
	// AutonomyApproveToAct: every such call needs a person's approval.
	AutonomyApproveToAct = 1
	// AutonomyLowRisk: such calls at or above the risk threshold need approval.
	AutonomyLowRisk = 2
	// AutonomyBounded: the policy alone decides.
	AutonomyBounded = 3
)

// The rule ids autonomy adds to a decision it turns into an approval.
const (
	RuleApproveToAct  = "autonomy.approve-to-act"
	RuleRiskThreshold = "autonomy.risk-threshold"
)

// Call is one authenticated tool call.
type Call struct {
	RequestID string
	// Principal is who calls: the agent, the user it acts for, the task and the limits of
	// its credential.
	Principal    *identity.Principal
	SessionID    string
	SessionCalls int64
	// Tool is the exposed name the agent used.
	Tool string
	// Arguments is the raw JSON of the call's arguments ("" or null mean none).
	Arguments json.RawMessage
	// Prompt is the user's request as the agent's host reported it with this call; its
	// values count as trusted in the call's context from now on. "" if none.
	Prompt string
	// ApprovalID names the approval the agent retries the call with; "" if none.
	ApprovalID string
	// NoWait says the agent cannot wait for a person: a held call ends at once, pending.
	NoWait bool
	// Reason is the agent's stated reason for the call, shown to approvers.
	Reason string
	// IdempotencyKey, if set, makes a retry of the call safe: a call with a key that
	// already ran is answered from its record.
	IdempotencyKey string
	// ReportedSpend and ReportedTokens are what the agent reports it spent on its model
	// since its previous call; they count against the task's budget.
	ReportedSpend  float64
	ReportedTokens int64
	// Builtin is a tool the gateway itself provides (an egress proxy request), used
	// instead of looking Tool up in the registry. Ingresses never set it from an agent's
	// request.
	Builtin *registry.Tool
}

// Outcome is what became of a call: either Result (the upstream's CallToolResult JSON, which
// may itself be a tool-level error) or Refusal.
type Outcome struct {
	Result   json.RawMessage
	Refusal  *Refusal
	Decision policy.Decision
	// Risk is the call's risk score; 0 when it was refused before the policy was asked.
	Risk int
}

// Refusal says why a call did not run.
type Refusal struct {
	Code    Code
	Message string
	Rules   []string
	// Explanation says, when information flow made a rule fire, which value came from
	// where; "" otherwise.
	Explanation string
	// ApprovalID names the approval request of a held call; "" otherwise.
	ApprovalID string
}

type progressKey struct{}

// WithProgress returns ctx carrying f, which a stage that makes the agent wait (a call
// held for a person) calls with a short message; the ingress turns it into MCP progress
// notifications.
func WithProgress(ctx context.Context, f func(msg string)) context.Context {
	return context.WithValue(ctx, progressKey{}, f)
}

// Progress reports progress on ctx's call, if its ingress asked for it.
func Progress(ctx context.Context, msg string) {
	if f, ok := ctx.Value(progressKey{}).(func(string)); ok {
		f(msg)
	}
}

// Hold is a call the policy holds for a person's approval, as the approver sees it.
type Hold struct {
	Call        *Call
	Tool        *registry.Tool
	Decision    policy.Decision
	Explanation string
	Risk        risk.Score
}

// Tools resolves exposed tool names.
type Tools interface {
	Lookup(name string) (*registry.Tool, bool)
}

// Upstreams runs calls on the upstream that owns a tool.
type Upstreams interface {
	Call(ctx context.Context, upstream, tool string, args json.RawMessage) (json.RawMessage, error)
}

// Budgets counts the calls of bounded credentials.
type Budgets interface {
	Use(tokenID string, n, max int64, exp time.Time) bool
}

// Auditor records events durably; Append returns only once the event is committed.
type Auditor interface {
	Append(ctx context.Context, e *audit.Event) error
}

// Options wires a [Pipeline].
type Options struct {
	Tools     Tools
	Policy    func() *policy.Policy
	Upstreams Upstreams
	Audit     Auditor
	// Budgets enforces credentials' max_calls; required when tokens carry one.
	Budgets Budgets
	// AsyncAfter queues the events written after the decision is settled — outcomes and
	// refusals — instead of waiting for their commit (audit.after: async). The intent of an
	// allowed call is always durable before the upstream is called.
	AsyncAfter bool
	Logger     *slog.Logger
	Now        func() time.Time
	// AuditTimeout bounds one audit write; it runs detached from the caller's cancellation so
	// that evidence is not lost when an agent hangs up. Default 10s.
	AuditTimeout time.Duration
	// Capture says which call content the audit events carry; the zero value, none.
	Capture Capture
	// Flow holds the flow state of call contexts; nil for a store with default limits.
	Flow *flow.Store
	// Approve decides a call the policy holds for a person's approval: it returns the id
	// of the approval that lets the call run now, or a refusal. Nil refuses every such call
	// (approvals not enabled).
	Approve func(ctx context.Context, h *Hold) (approvalID string, r *Refusal)
	// InternalDomains are the organisation's mail domains, for risk scoring.
	InternalDomains []string
	// EnforceAutonomy applies agents' autonomy levels (see the Autonomy constants);
	// without it they are only a fact for policy.
	EnforceAutonomy bool
	// RiskThreshold is the score from which an autonomy-2 agent's writes need approval.
	// Default 50.
	RiskThreshold int
	// OnDemote, if set, is told when an agent lost an autonomy level: a call of it was
	// denied by a rule that reads information-flow facts (untrusted content steering an
	// action). It records the demotion; the pipeline already applies it.
	OnDemote func(ctx context.Context, agent string, from, to int, reason string)
	// Contain are the brakes: kill switches, breakers, budgets, rate limits, loop
	// detection, baselines and idempotency keys.
	Contain Containment
	// Sensors are the content sensors; nil runs none. Call its Init first.
	Sensors *Sensors
	// Tracer, if set, records a span for every stage of a call, as children of the span
	// in the call's context (the ingress's); nil records none, at no cost.
	Tracer trace.Tracer
	// TraceCapture adds the call's arguments and result to its span, credentials redacted.
	TraceCapture bool
	// Redact, if set, runs on every upstream result before anything else sees it —
	// sensors, flow state, audit capture, the agent — and removes the gateway's own
	// credentials an upstream echoed back.
	Redact Redactor
	// OnCall, if set, is told what became of every call (see [Outcome] and decisionOf:
	// allow, approve, or the refusal code) and how long Handle took.
	OnCall func(decision string, d time.Duration)
}

// Capture selects the call content recorded in audit events, as it is, unredacted
// (audit.capture in the configuration). Content larger than MaxBytes, or not valid JSON in
// UTF-8, is not recorded; the event's Captured says so ([audit.CapturedTooLarge],
// [audit.CapturedInvalid]).
type Capture struct {
	// Arguments puts the call's arguments on its call.intent or call.refused event.
	Arguments bool
	// Results puts the upstream's result on the call.outcome event.
	Results bool
	// MaxBytes bounds one captured value, measured as received. Default 65536.
	MaxBytes int64
}

// Pipeline decides and executes calls. It is safe for concurrent use.
type Pipeline struct {
	opts    Options
	shadow  shadowStats
	denials denialRecord

	// levels overrides agents' configured autonomy levels: demotions and promotions made
	// while the gateway runs. Guarded by levelsMu.
	levelsMu sync.RWMutex
	levels   map[string]int
}

// Autonomy returns the agent's effective autonomy level: the one set while the gateway
// runs, else the configured one.
func (p *Pipeline) Autonomy(agent string, configured int) int {
	p.levelsMu.RLock()
	defer p.levelsMu.RUnlock()
	if l, ok := p.levels[agent]; ok {
		return l
	}
	return configured
}

// SetAutonomy sets an agent's autonomy level (0 to 3) while the gateway runs.
func (p *Pipeline) SetAutonomy(agent string, level int) {
	p.levelsMu.Lock()
	defer p.levelsMu.Unlock()
	if p.levels == nil {
		p.levels = map[string]int{}
	}
	p.levels[agent] = max(AutonomySuggest, min(AutonomyBounded, level))
}

// demote lowers the agent's level by one from `from`, unless something lowered it
// already, and reports the new level.
func (p *Pipeline) demote(agent string, from int) (int, bool) {
	p.levelsMu.Lock()
	defer p.levelsMu.Unlock()
	if l, ok := p.levels[agent]; ok && l < from {
		return l, false
	}
	if p.levels == nil {
		p.levels = map[string]int{}
	}
	p.levels[agent] = max(AutonomySuggest, from-1)
	return p.levels[agent], true
}

// denialRecord remembers when each agent's calls were last denied by policy, for the risk
// score's track record: at most denialsKept per agent, agents forgotten once their last
// denial is a day old.
type denialRecord struct {
	// mu is read-locked on every call and write-locked only on a denial.
	mu sync.RWMutex
	m  map[string][]time.Time
}

const denialsKept = 8

func (r *denialRecord) add(agent string, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.m == nil {
		r.m = map[string][]time.Time{}
	}
	l := append(r.m[agent], now)
	if len(l) > denialsKept {
		l = l[len(l)-denialsKept:]
	}
	r.m[agent] = l
	if len(r.m) > 10_000 {
		for a, ts := range r.m {
			if now.Sub(ts[len(ts)-1]) > 24*time.Hour {
				delete(r.m, a)
			}
		}
	}
}

// recent counts the agent's denials in the 24 hours before now (at most denialsKept).
func (r *denialRecord) recent(agent string, now time.Time) int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	n := 0
	for _, t := range r.m[agent] {
		if now.Sub(t) < 24*time.Hour {
			n++
		}
	}
	return n
}

// New returns a pipeline.
func New(opts Options) *Pipeline {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.AuditTimeout == 0 {
		opts.AuditTimeout = 10 * time.Second
	}
	if opts.Capture.MaxBytes <= 0 {
		opts.Capture.MaxBytes = 64 << 10
	}
	if opts.Flow == nil {
		opts.Flow = flow.NewStore(flow.StoreOptions{})
	}
	if opts.RiskThreshold == 0 {
		opts.RiskThreshold = 50
	}
	return &Pipeline{opts: opts}
}

// flowKey names the context a call's flow state belongs to: its MCP session; for a call
// without one, its task; for a call without either, its agent. Contexts only merge, never
// split, so a call never sees less than its context has seen.
func flowKey(c *Call) string {
	switch pr := c.Principal; {
	case c.SessionID != "":
		return "s\x00" + c.SessionID
	case pr.Task != "":
		return "t\x00" + pr.Agent.ID + "\x00" + pr.Task
	default:
		return "a\x00" + pr.Agent.ID
	}
}

// EndSession forgets the flow state of an MCP session that ended, on every replica when
// the flow store has a journal.
func (p *Pipeline) EndSession(id string) {
	if err := p.opts.Flow.EndContext(context.Background(), "s\x00"+id); err != nil {
		// The journal keeps the state until it expires: more than the session needs, never less.
		p.opts.Logger.Warn("flow journal not ended", "session", id, "err", err)
	}
	if s := p.opts.Sensors; s != nil {
		s.states.end("s\x00" + id)
	}
}

// ExpireFlow forgets the flow state of contexts idle for longer than the store keeps them,
// and deletes the journals no replica used for that long.
func (p *Pipeline) ExpireFlow(now time.Time) int {
	if s := p.opts.Sensors; s != nil {
		s.states.expire(now.Add(-senseIdle))
	}
	if _, err := p.opts.Flow.ExpireJournal(context.Background(), now); err != nil {
		p.opts.Logger.Warn("flow journals not expired", "err", err)
	}
	return p.opts.Flow.Expire(now)
}

// Handle runs one call through every stage.
func (p *Pipeline) Handle(ctx context.Context, c *Call) (final Outcome) {
	now := p.opts.Now()
	pr := c.Principal
	ev := audit.Event{
		Time:      now,
		RequestID: c.RequestID,
		SessionID: c.SessionID,
		Agent:     pr.Agent.ID,
		User:      pr.User,
		Task:      pr.Task,
		Chain:     pr.Chain,
		TokenID:   pr.TokenID,
		Tool:      c.Tool,
		ArgsHash:  audit.HashArgs(c.Arguments),
	}
	ev.ArgsSummary = audit.SummarizeArgs(c.Arguments)
	// What the agent reports it spent was spent, whatever becomes of this call: it counts
	// against the task's budget even when the call is refused before its reservation
	// (which charges it itself), and its record lets a restart count it again.
	ev.Spend, ev.Tokens = c.ReportedSpend, c.ReportedTokens
	reportedCharged := false
	if lg := p.opts.Contain.Ledger; lg != nil && (c.ReportedSpend > 0 || c.ReportedTokens > 0) {
		defer func() {
			if !reportedCharged {
				lg.Report(now, budgetKey(c), c.ReportedSpend, c.ReportedTokens)
			}
		}()
	}
	if p.opts.Capture.Arguments {
		ev.Arguments, ev.Captured = p.capture(c.Arguments, audit.CapturedArguments)
		ev.Prompt = p.redactSecrets(c.Prompt)
	}
	stg := p.stages()
	if stg != nil || p.opts.OnCall != nil {
		callCtx, start := ctx, time.Now()
		defer func() {
			stg.end(&final)
			if p.opts.OnCall != nil {
				p.opts.OnCall(decisionOf(&final), time.Since(start))
			}
			if stg != nil {
				p.annotate(callCtx, c, &ev, &final)
			}
		}()
	}
	stg.next(ctx, SpanAdmit)

	t, ok := p.opts.Tools.Lookup(c.Tool)
	if c.Builtin != nil {
		t, ok = c.Builtin, true
	}
	if ks := p.opts.Contain.Kills; ks != nil {
		// First, before anything that could wait: the call is in flight from here, so a
		// kill pulled while it runs cancels it.
		var leave func()
		var k *contain.Kill
		ctx, leave, k = ks.Enter(ctx, subjectOf(c, t))
		defer leave()
		if k != nil {
			ev.Scope = k.Scope.String()
			return p.refuse(ctx, &ev, policy.Decision{}, CodeKilled, killedMessage(k))
		}
	}
	if !ok {
		return p.refuse(ctx, &ev, policy.Decision{}, CodeUnknownTool, fmt.Sprintf("There is no tool named %q for this agent.", truncate(c.Tool, 64)))
	}
	ev.Upstream = t.Upstream
	switch t.Status {
	case registry.StatusActive:
	case registry.StatusQuarantined:
		return p.refuse(ctx, &ev, policy.Decision{}, CodeQuarantined, fmt.Sprintf("Tool %q is quarantined: %s.", t.Name, t.Reason))
	default:
		return p.refuse(ctx, &ev, policy.Decision{}, CodeToolUnavailable, fmt.Sprintf("Tool %q is not available: %s.", t.Name, t.Reason))
	}
	if pr.Tools != nil && !slices.Contains(pr.Tools, t.Name) {
		return p.refuse(ctx, &ev, policy.Decision{}, CodeOutOfScope, fmt.Sprintf("Tool %q is outside the scope of this credential's task.", t.Name))
	}
	if t.Environment != "" && pr.Agent.Environment != t.Environment {
		return p.refuse(ctx, &ev, policy.Decision{}, CodeEnvironment,
			fmt.Sprintf("A %s agent cannot reach tool %q of a %s upstream.", pr.Agent.Environment, t.Name, t.Environment))
	}

	st := callState{agent: pr.Agent.ID}
	code, msg, probe := p.admit(c, t, ev.ArgsHash, &st)
	if probe {
		// The probe's verdict is read when the call ends: whether it raised a signal.
		defer func() { p.opts.Contain.Breakers.ProbeDone(st.agent, !st.signalled) }()
	}
	if code != "" {
		return p.refuse(ctx, &ev, policy.Decision{}, code, msg)
	}

	// Placeholders of personal data the tool may receive are swapped back first: what is
	// validated, judged and tracked is what the tool will get.
	stg.next(ctx, SpanValidate)
	key := flowKey(c)
	sendArgs := c.Arguments
	if p.opts.Sensors != nil {
		var notes []string
		sendArgs, notes = p.detokenize(t, key, c.Arguments)
		ev.Sensors = append(ev.Sensors, notes...)
	}
	args, err := argcheck.DecodeArguments(sendArgs)
	if err == nil {
		err = t.Validator.Validate(args)
	}
	if err != nil {
		return p.refuse(ctx, &ev, policy.Decision{}, CodeInvalidArguments, invalidMessage(err))
	}
	var sensed callSense
	if p.opts.Sensors != nil {
		var code Code
		var msg string
		sensed, code, msg = p.senseCall(stg.next(ctx, SpanSensorsCall), c, t, args)
		ev.Sensors = append(ev.Sensors, sensed.notes...)
		if code != "" {
			if code == CodeEgressDenied {
				p.denials.add(pr.Agent.ID, now)
				p.signal(&st, contain.SignalDenials, 1)
			}
			return p.refuse(ctx, &ev, policy.Decision{}, code, p.redactSecrets(msg))
		}
	}

	stg.next(ctx, SpanPolicy)
	pol := p.opts.Policy()
	if pol == nil {
		d := policy.Decision{Effect: policy.Deny, Reason: "no policy is loaded"}
		return p.refuse(ctx, &ev, d, CodePolicyError, "The policy could not be evaluated, so the call is refused.")
	}
	fs, err := p.opts.Flow.SessionContext(ctx, key, now)
	if errors.Is(err, flow.ErrFull) {
		return p.refuse(ctx, &ev, policy.Decision{}, CodeFlowUnavailable, "The gateway is tracking as many agent sessions as it may, so this call is refused; try again later.")
	}
	if err == nil && c.Prompt != "" {
		err = fs.RecordPrompt(ctx, c.Prompt)
	}
	if err != nil {
		// What the session saw on other replicas is unknown: judging the call on less
		// would fail open.
		p.opts.Logger.ErrorContext(ctx, "flow state unavailable", "request_id", c.RequestID, "err", err)
		return p.refuse(ctx, &ev, policy.Decision{}, CodeFlowUnavailable, "The gateway cannot read this session's flow state, so the call is refused; try again later.")
	}
	if score, signals := fs.Injection(); score > 0 {
		// Only detections are recorded, so any score is one.
		sensed.facts.Session = policy.Injection{Score: score, Detected: true, Signals: signals}
		ev.Sensors = append(ev.Sensors, fmt.Sprintf("session:injection:%.2f", score))
	}
	fs.RLock()
	view := flow.NewView(fs, args, &t.Flow, now)
	rin := risk.Input{Tool: t.Name, Class: t.Class, Args: args, InternalDomains: p.opts.InternalDomains,
		RecentDenials: p.denials.recent(pr.Agent.ID, now)}
	if t.Class != policy.ClassRead {
		// A view of its own, so that what risk asked does not become the policy's explanation.
		rv := flow.NewView(fs, args, &t.Flow, now)
		rin.SessionUntrusted, rin.SessionPrivate, rin.SinksFromUntrusted = rv.Untrusted(), rv.Private(), rv.SinksFromUntrusted()
	}
	score := risk.Assess(rin)
	ev.Risk, ev.RiskFactors = score.Value, score.FactorNames()
	if bl := p.opts.Contain.Baselines; bl != nil {
		if ev.Deviations = bl.Check(pr.Agent.ID, t.Name, args); len(ev.Deviations) > 0 {
			p.signal(&st, contain.SignalDeviations, 1)
		}
	}
	facts := &policy.Facts{
		Agent: policy.Agent{ID: pr.Agent.ID, Owner: pr.Agent.Owner, Purpose: pr.Agent.Purpose,
			Environment: pr.Agent.Environment, Labels: pr.Agent.Labels, Autonomy: pr.Agent.Autonomy},
		User:       pr.User,
		UserGroups: pr.UserGroups,
		Chain:      pr.Chain,
		Task:       pr.Task,
		Tool:       policy.Tool{Name: t.Name, Upstream: t.Upstream, Class: t.Class},
		Args:       args,
		Session:    policy.Session{ID: c.SessionID, Calls: c.SessionCalls},
		Risk:       policy.Risk{Score: score.Value, Factors: ev.RiskFactors, Deviations: ev.Deviations},
		Flow:       view,
		Now:        now,
		Sensors:    sensed.facts,
	}
	d, err := pol.Evaluate(facts)
	explanation := ""
	if d.Flow && d.Effect != policy.Allow {
		explanation = p.redactSecrets(view.Explain())
	}
	facts.Flow = nil // the view is only good under the lock
	fs.RUnlock()
	if err != nil {
		d = policy.Decision{Effect: policy.Deny, Version: pol.Version(), Reason: "the policy could not be evaluated"}
		p.opts.Logger.ErrorContext(ctx, "policy evaluation failed", "request_id", c.RequestID, "err", err)
		return p.refuse(ctx, &ev, d, CodePolicyError, "The policy could not be evaluated, so the call is refused.")
	}
	if sp := stg.current(); sp.IsRecording() {
		sp.SetAttributes(AttrDecision.String(string(d.Effect)), AttrRules.StringSlice(d.Rules), AttrPolicyVersion.String(d.Version), AttrRisk.Int(score.Value))
	}
	if d.Shadow != nil {
		ev.ShadowDecision, ev.ShadowRules = string(d.Shadow.Effect), d.Shadow.Rules
		p.shadow.record(pol, d)
	}
	because := ""
	if explanation != "" {
		because = ": " + explanation
		ev.Explanation = explanation
	}
	if d.Flow && d.Effect != policy.Allow {
		// Untrusted content chose where this call's effect lands: an injection at work.
		p.signal(&st, contain.SignalInjections, 1)
	}
	if st.suggest && t.Class != policy.ClassRead && d.Effect != policy.Deny {
		return p.suggest(ctx, &ev, d, score.Value, "the agent's circuit breaker leaves it suggest-only",
			"This agent's circuit breaker has tripped and leaves it suggest-only: the call was recorded as a suggestion for a person and did not run.")
	}
	level := p.Autonomy(pr.Agent.ID, pr.Agent.Autonomy)
	if p.opts.EnforceAutonomy && t.Class != policy.ClassRead && d.Effect != policy.Deny {
		switch lvl := level; {
		case lvl <= AutonomySuggest:
			return p.suggest(ctx, &ev, d, score.Value, "the agent is suggest-only",
				"This agent is suggest-only (autonomy 0): the call was recorded as a suggestion for a person and did not run.")
		case lvl == AutonomyApproveToAct && d.Effect == policy.Allow:
			d.Effect, d.Rules = policy.Approve, append(d.Rules, RuleApproveToAct)
		case lvl == AutonomyLowRisk && d.Effect == policy.Allow && score.Value >= p.opts.RiskThreshold:
			d.Effect, d.Rules = policy.Approve, append(d.Rules, RuleRiskThreshold)
		}
	}
	var claim *idemClaim
	if key, idem := c.IdempotencyKey, p.opts.Contain.Idempotency; key != "" && idem != nil && d.Effect != policy.Deny {
		ev.IdempotencyKey = key
		// Before approval: a retry of a call that ran needs no second approval.
		rec, err := idem.Begin(ctx, pr.Agent.ID, key, t.Name, ev.ArgsHash, c.RequestID)
		if out, done := p.idempotent(ctx, &ev, d, rec, err); done {
			out.Risk = score.Value
			return out
		}
		claim = &idemClaim{p: p, ctx: context.WithoutCancel(ctx), agent: pr.Agent.ID, key: key, requestID: c.RequestID}
		defer claim.release()
	}

	switch d.Effect {
	case policy.Allow:
	case policy.Approve:
		if p.opts.Approve == nil {
			return p.refuse(ctx, &ev, d, CodeApprovalRequired, fmt.Sprintf("This call needs a person's approval (%s%s), and approvals are not enabled on this gateway.", ruleList(d.Rules), because))
		}
		id, r := p.opts.Approve(stg.next(ctx, SpanApproval), &Hold{Call: c, Tool: t, Decision: d, Explanation: explanation, Risk: score})
		ev.Approval = id
		if k, killed := killedBy(ctx); killed {
			// The kill voids the approval: the wait ended, and whatever was decided the
			// call does not run.
			ev.Scope = k.Scope.String()
			r = &Refusal{Code: CodeKilled, Message: killedMessage(k)}
		}
		if r != nil {
			if ev.Approval == "" {
				ev.Approval = r.ApprovalID
			}
			out := p.refuse(ctx, &ev, d, r.Code, r.Message)
			out.Refusal.ApprovalID = ev.Approval
			out.Risk = score.Value
			return out
		}
	default:
		p.denials.add(pr.Agent.ID, now)
		p.signal(&st, contain.SignalDenials, 1)
		if p.opts.EnforceAutonomy && d.Flow && level > AutonomySuggest {
			if to, ok := p.demote(pr.Agent.ID, level); ok && p.opts.OnDemote != nil {
				p.opts.OnDemote(ctx, pr.Agent.ID, level, to, fmt.Sprintf("call %s to %s denied by %s: %s", c.RequestID, t.Name, ruleList(d.Rules), explanation))
			}
		}
		var out Outcome
		if len(d.Rules) == 0 {
			out = p.refuse(ctx, &ev, d, CodeDeniedByPolicy, "No policy rule allows this call.")
		} else {
			out = p.refuse(ctx, &ev, d, CodeDeniedByPolicy, fmt.Sprintf("This call is denied by policy (%s%s).", ruleList(d.Rules), because))
		}
		out.Risk = score.Value
		return out
	}

	stg.next(ctx, SpanBudget)
	if pr.MaxCalls > 0 && (p.opts.Budgets == nil || !p.opts.Budgets.Use(pr.TokenID, 1, pr.MaxCalls, pr.Expiry)) {
		return p.refuse(ctx, &ev, d, CodeBudgetExhausted, fmt.Sprintf("This credential's budget of %d calls is used up.", pr.MaxCalls))
	}
	var reservation *contain.Reservation
	if lg := p.opts.Contain.Ledger; lg != nil {
		var err error
		reservation, err = lg.Reserve(contain.Charge{Context: budgetKey(c), Agent: pr.Agent.ID, User: pr.User, Task: pr.Task,
			Tool: t.Name, Args: args, Cost: t.Cost, ReportedSpend: c.ReportedSpend, ReportedTokens: c.ReportedTokens})
		reportedCharged = true
		if err != nil {
			return p.refuse(ctx, &ev, d, CodeBudgetExhausted, budgetMessage(err))
		}
		var caps map[string]float64
		ev.Spend, ev.Tokens, caps = reservation.Charged()
		if len(caps) > 0 {
			ev.Charges = caps
		}
		if ev.Spend > 0 {
			p.signal(&st, contain.SignalSpend, ev.Spend)
		}
	}
	if k, killed := killedBy(ctx); killed {
		reservation.Release()
		ev.Scope = k.Scope.String()
		return p.refuse(ctx, &ev, d, CodeKilled, killedMessage(k))
	}

	ev.Kind, ev.Decision = audit.KindCallIntent, string(d.Effect)
	ev.Rules, ev.PolicyVersion = d.Rules, d.Version
	stg.next(ctx, SpanAuditIntent)
	if err := p.record(ctx, &ev); err != nil {
		reservation.Release()
		return Outcome{Decision: d, Refusal: &Refusal{Code: CodeAuditUnavailable, Message: "The audit log cannot record this call, so it is refused."}}
	}

	uctx := ctx
	if stg != nil {
		// The span's name and options are built only when they are recorded.
		uctx = stg.next(ctx, SpanUpstreamPrefix+t.Name, trace.WithSpanKind(trace.SpanKindClient),
			trace.WithAttributes(AttrMCPMethod.String("tools/call"), AttrToolName.String(t.Name), AttrUpstream.String(t.Upstream)))
	}
	exec := &Execution{Call: c, Tool: t, Decision: d, ArgsHash: ev.ArgsHash}
	start := time.Now()
	res, attempts, callErr := p.callUpstream(withExecution(uctx, exec), t, sendArgs)
	latency := time.Since(start)
	usedCreds, credErr := exec.credentials()
	var redacted int
	if callErr == nil && p.opts.Redact != nil {
		res, redacted = p.opts.Redact(res)
	}
	if sp := stg.current(); sp.IsRecording() {
		if callErr != nil {
			sp.RecordError(callErr)
			sp.SetStatus(codes.Error, "upstream call failed")
		} else if isToolError(res) {
			sp.SetAttributes(AttrErrorType.String("tool_error"))
		}
	}
	if claim != nil {
		claim.end(res, callErr)
	}

	out := audit.Event{
		Time: p.opts.Now(), Kind: audit.KindCallOutcome, RequestID: c.RequestID, SessionID: c.SessionID,
		Agent: ev.Agent, User: ev.User, Task: ev.Task, Chain: ev.Chain, TokenID: ev.TokenID,
		Tool: c.Tool, Upstream: t.Upstream, ArgsHash: ev.ArgsHash, ShadowDecision: ev.ShadowDecision, ShadowRules: ev.ShadowRules,
		Decision: string(d.Effect), Rules: d.Rules, PolicyVersion: d.Version, LatencyMicros: latency.Microseconds(),
		Approval: ev.Approval, Credentials: usedCreds,
	}
	if attempts > 1 {
		out.Detail = fmt.Sprintf("%d attempts", attempts)
	}
	var refusal *Refusal
	if credErr != nil || callErr != nil {
		switch {
		case credErr != nil:
			// Whatever the upstream made of a request without its credential, the agent
			// learns only that the gateway could not get one; the log and the event's
			// detail say which and why.
			p.opts.Logger.WarnContext(ctx, "upstream credential unavailable", "request_id", c.RequestID, "upstream", t.Upstream, "err", credErr)
			refusal = &Refusal{Code: CodeCredentialUnavailable, Message: "The gateway could not obtain the credential for this tool's upstream, so the call did not run."}
			out.Detail = truncate(credErr.Error(), 500)
		case errors.Is(callErr, upstream.ErrUnavailable):
			refusal = &Refusal{Code: CodeToolUnavailable, Message: upstreamMessage(callErr)}
		default:
			refusal = &Refusal{Code: CodeUpstreamError, Message: upstreamMessage(callErr)}
		}
		if k, killed := killedBy(ctx); killed {
			refusal = &Refusal{Code: CodeKilled, Message: "The call was cancelled in flight: " + killedMessage(k)}
			out.Scope = k.Scope.String()
		} else {
			p.signal(&st, contain.SignalErrors, 1)
		}
		out.Reason, out.Message = string(refusal.Code), refusal.Message
		res = nil
	} else {
		if redacted > 0 {
			out.Sensors = append(out.Sensors, fmt.Sprintf("redacted:credential:%d", redacted))
		}
		labels, seen := &t.Flow, res
		var injection policy.Injection
		toolErr, toolErrKnown := false, false
		if p.opts.Sensors != nil {
			rs := p.senseResult(stg.next(ctx, SpanSensorsResult), t, key, res, p.resultJudge(fs, facts, t, pol, now), now)
			out.Sensors = append(out.Sensors, rs.notes...)
			if rs.untrusted {
				labels = untrustedLabels(t.Flow)
				injection = rs.facts.Injection
			}
			if rs.refusal != nil {
				// The call ran, but the agent does not get its result: the context has not
				// seen it, only that the call happened.
				if err := fs.Record(ctx, flow.Run{RequestID: c.RequestID, Tool: t.Name, Args: args, Labels: labels, Time: now,
					Injection: injection.Score, InjectionSignals: injection.Signals}); err != nil {
					// The result is withheld anyway; the next call's read of the journal fails
					// closed if the journal is still out of reach.
					p.opts.Logger.ErrorContext(ctx, "flow state not recorded", "request_id", c.RequestID, "err", err)
				}
				out.Reason, out.Message, out.ResultBytes = string(rs.refusal.Code), rs.refusal.Message, int64(len(res))
				if len(rs.rules) > 0 {
					out.Rules = rs.rules
				}
				if err := p.recordAfter(ctx, &out); err != nil {
					return Outcome{Decision: d, Refusal: &Refusal{Code: CodeAuditUnavailable, Message: "The call ran, but the audit log cannot record its outcome, so the result is withheld."}}
				}
				return Outcome{Refusal: rs.refusal, Decision: d, Risk: score.Value}
			}
			res = rs.result
			toolErr, toolErrKnown = rs.facts.Error, rs.result != nil
		}
		// What the result brought in belongs to the context now, whatever becomes of the
		// outcome's record: forgetting it could only make the context look cleaner.
		// The flow state learns the result as the tool returned it: provenance is about the
		// real values, whatever placeholders or redactions the agent was shown.
		if err := fs.Record(ctx, flow.Run{RequestID: c.RequestID, Tool: t.Name, Args: args, Labels: labels, Result: seen, Time: now,
			Injection: injection.Score, InjectionSignals: injection.Signals}); err != nil {
			// Other replicas may not know the session saw this result: withhold it (fail
			// closed), and say so in the outcome's record.
			p.opts.Logger.ErrorContext(ctx, "flow state not recorded", "request_id", c.RequestID, "err", err)
			refusal = &Refusal{Code: CodeFlowUnavailable, Message: "The call ran, but the gateway could not record its result in this session's flow state, so the result is withheld."}
			out.Reason, out.Message = string(refusal.Code), refusal.Message
		}
		out.ResultBytes = int64(len(res))
		if !toolErrKnown {
			toolErr = isToolError(res)
		}
		out.ResultError = toolErr
		if out.ResultError {
			p.signal(&st, contain.SignalErrors, 1)
		}
		if t.Class == policy.ClassDestructive {
			p.signal(&st, contain.SignalDestructive, 1)
		}
		if bl := p.opts.Contain.Baselines; bl != nil {
			bl.Learn(pr.Agent.ID, t.Name, args)
		}
		if p.opts.Capture.Results {
			out.Result, out.Captured = p.capture(res, audit.CapturedResult)
		}
	}
	stg.next(ctx, SpanAuditOutcome)
	if err := p.recordAfter(ctx, &out); err != nil {
		// The call ran, but its outcome is not on record: withhold the result (fail closed).
		// The intent without outcome is what `chaperone audit verify` reports.
		return Outcome{Decision: d, Refusal: &Refusal{Code: CodeAuditUnavailable, Message: "The call ran, but the audit log cannot record its outcome, so the result is withheld."}}
	}
	if refusal != nil {
		res = nil
	}
	return Outcome{Result: res, Refusal: refusal, Decision: d, Risk: score.Value}
}

// suggest records a call as a suggestion for a person instead of running it.
func (p *Pipeline) suggest(ctx context.Context, ev *audit.Event, d policy.Decision, risk int, why, msg string) Outcome {
	ev.Kind, ev.Decision, ev.Reason = audit.KindCallSuggested, string(d.Effect), string(CodeSuggested)
	ev.Rules, ev.PolicyVersion = d.Rules, d.Version
	ev.Message = "recorded as a suggestion: " + why
	if err := p.recordAfter(ctx, ev); err != nil {
		return Outcome{Decision: d, Risk: risk, Refusal: &Refusal{Code: CodeAuditUnavailable, Message: "The audit log cannot record this suggestion, so it is refused."}}
	}
	return Outcome{Decision: d, Risk: risk, Refusal: &Refusal{Code: CodeSuggested, Rules: d.Rules, Message: msg}}
}

// idempotent settles what Begin said about a call's idempotency key: done reports that
// the call ends here — answered from the key's record, or refused.
func (p *Pipeline) idempotent(ctx context.Context, ev *audit.Event, d policy.Decision, rec *contain.IdemRecord, err error) (Outcome, bool) {
	switch {
	case err == nil && rec == nil:
		return Outcome{}, false
	case err == nil:
		ev.Kind, ev.Decision, ev.Rules, ev.PolicyVersion = audit.KindCallDeduplicated, string(d.Effect), d.Rules, d.Version
		ev.Message = "answered from the record of request " + rec.RequestID + ", not executed again"
		ev.ResultBytes = int64(len(rec.Result))
		if err := p.recordAfter(ctx, ev); err != nil {
			return Outcome{Decision: d, Refusal: &Refusal{Code: CodeAuditUnavailable, Message: "The audit log cannot record this call, so it is refused."}}, true
		}
		return Outcome{Result: rec.Result, Decision: d}, true
	case errors.Is(err, contain.ErrIdemConflict):
		return p.refuse(ctx, ev, d, CodeIdempotencyConflict, sentence(contain.ErrIdemConflict)), true
	case errors.Is(err, contain.ErrIdemInvalidKey):
		return p.refuse(ctx, ev, d, CodeInvalidArguments, sentence(contain.ErrIdemInvalidKey)), true
	case errors.Is(err, contain.ErrIdemUnknown):
		return p.refuse(ctx, ev, d, CodeIdempotencyUnknown, sentence(contain.ErrIdemUnknown)), true
	case errors.Is(err, contain.ErrIdemResultNotKept):
		return p.refuse(ctx, ev, d, CodeIdempotencyUnknown, sentence(contain.ErrIdemResultNotKept)), true
	}
	p.opts.Logger.ErrorContext(ctx, "idempotency key not checked", "request_id", ev.RequestID, "err", err)
	if k, killed := killedBy(ctx); killed {
		ev.Scope = k.Scope.String()
		return p.refuse(ctx, ev, d, CodeKilled, killedMessage(k)), true
	}
	return p.refuse(ctx, ev, d, CodeIdempotencyUnknown, "The idempotency key could not be checked, so the call is refused; retry it later."), true
}

// sentence turns an error meant for agents into one sentence.
func sentence(err error) string {
	s := err.Error()
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:] + "."
}

func budgetMessage(err error) string {
	var ex *contain.Exhausted
	if errors.As(err, &ex) {
		return "The call does not fit its budget: " + ex.Error() + "."
	}
	if errors.Is(err, contain.ErrLedgerFull) {
		return sentence(contain.ErrLedgerFull)
	}
	return "The call's budget could not be charged: " + err.Error() + "."
}

func (p *Pipeline) refuse(ctx context.Context, ev *audit.Event, d policy.Decision, code Code, msg string) Outcome {
	ev.Kind, ev.Decision, ev.Reason, ev.Message = audit.KindCallRefused, "refused", string(code), msg
	if d.Effect != "" {
		ev.Decision = string(d.Effect)
	}
	ev.Rules, ev.PolicyVersion = d.Rules, d.Version
	ev.Detail = decisionDetail(d)
	if err := p.recordAfter(ctx, ev); err != nil {
		p.opts.Logger.ErrorContext(ctx, "refused call not recorded", "request_id", ev.RequestID, "err", err)
	}
	return Outcome{Decision: d, Refusal: &Refusal{Code: code, Message: msg, Rules: d.Rules, Explanation: ev.Explanation}}
}

// asyncAuditor is an Auditor that can also queue an event without waiting for its commit.
type asyncAuditor interface {
	AppendAsync(ctx context.Context, e *audit.Event, then func(error)) error
}

// recordAfter records an event about something already settled — a call's outcome, or a
// refusal. With AsyncAfter it is queued and committed with the next batch (its commit
// error is logged); otherwise it is durable before the agent hears of it. An event that
// cannot even be queued is an error either way.
func (p *Pipeline) recordAfter(ctx context.Context, ev *audit.Event) error {
	aa, ok := p.opts.Audit.(asyncAuditor)
	if !p.opts.AsyncAfter || !ok {
		return p.record(ctx, ev)
	}
	rid, kind := ev.RequestID, ev.Kind
	err := aa.AppendAsync(context.WithoutCancel(ctx), ev, func(err error) {
		if err != nil {
			p.opts.Logger.Error("audit append failed after the call was answered", "request_id", rid, "kind", kind, "err", err)
		}
	})
	if err != nil {
		p.opts.Logger.ErrorContext(ctx, "audit append failed", "request_id", rid, "kind", kind, "err", err)
	}
	return err
}

// record appends durably, detached from the caller's cancellation but bounded in time.
func (p *Pipeline) record(ctx context.Context, ev *audit.Event) error {
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.opts.AuditTimeout)
	defer cancel()
	if err := p.opts.Audit.Append(actx, ev); err != nil {
		p.opts.Logger.ErrorContext(ctx, "audit append failed", "request_id", ev.RequestID, "kind", ev.Kind, "err", err)
		return err
	}
	return nil
}

// capture returns raw compacted, for an audit event, and the event's Captured value: what
// (arguments or a result), or why it is not recorded. Empty input and JSON null (a call
// without arguments) record nothing and still say what.
func (p *Pipeline) capture(raw json.RawMessage, what string) (json.RawMessage, string) {
	if int64(len(raw)) > p.opts.Capture.MaxBytes {
		return nil, audit.CapturedTooLarge
	}
	trimmed := bytes.TrimSpace(raw)
	if len(trimmed) == 0 || string(trimmed) == "null" {
		return nil, what
	}
	if !utf8.Valid(raw) {
		return nil, audit.CapturedInvalid
	}
	// Credentials never reach the audit log, captured or not; JSON the redactor cannot
	// walk is not recorded.
	raw, ok := p.redactJSON(raw)
	if !ok {
		return nil, audit.CapturedInvalid
	}
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		return nil, audit.CapturedInvalid
	}
	return b.Bytes(), what
}

// MaxArgumentBytes bounds a call's arguments before they are decoded.
const MaxArgumentBytes = argcheck.MaxArgumentBytes

// decisionDetail is the policy's own account of a decision, for the audit log only: the
// reason sentence and, when a condition failed, its error.
func decisionDetail(d policy.Decision) string {
	if d.Err != nil {
		return d.Reason + ": " + d.Err.Error()
	}
	return d.Reason
}

func invalidMessage(err error) string {
	var ae *argcheck.Error
	if errors.As(err, &ae) {
		return "Invalid arguments: " + ae.Error() + "."
	}
	return "Invalid arguments: " + err.Error() + "."
}

func upstreamMessage(err error) string {
	switch {
	case errors.Is(err, upstream.ErrUnavailable):
		return "The tool's server is not reachable right now."
	case errors.Is(err, context.DeadlineExceeded):
		return "The tool's server did not answer in time."
	case errors.Is(err, context.Canceled):
		return "The call was cancelled."
	default:
		return "The tool's server failed to answer."
	}
}

func ruleList(rules []string) string {
	switch len(rules) {
	case 0:
		return "no rule"
	case 1:
		return fmt.Sprintf("rule %q", rules[0])
	}
	s := "rules "
	for i, r := range rules {
		if i > 0 {
			s += ", "
		}
		s += fmt.Sprintf("%q", r)
	}
	return s
}

// isToolError reports whether the result object says "isError": true, as an MCP client
// reads it: the member named exactly isError (the last one, if repeated) at the top
// level. It scans the top level without decoding the values, which costs a fraction of
// decoding a large result; a key with an escape sequence, or anything that does not scan
// as an object, is decided by encoding/json instead.
func isToolError(res json.RawMessage) bool {
	v, ok := topLevelMember(res, "isError")
	if !ok {
		var m map[string]json.RawMessage
		if json.Unmarshal(res, &m) != nil {
			return false
		}
		v = bytes.TrimSpace(m["isError"])
	}
	return string(v) == "true"
}

// topLevelMember returns the raw value of the last member named key of the JSON object
// in b (nil if there is none), and false if b could not be scanned simply: it is not an
// object, is malformed, or has a key with an escape sequence.
func topLevelMember(b []byte, key string) ([]byte, bool) {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return nil, false
	}
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == '}' {
		return nil, skipSpace(b, i+1) == len(b)
	}
	var found []byte
	for {
		if i >= len(b) || b[i] != '"' {
			return nil, false
		}
		end := skipString(b, i)
		if end < 0 {
			return nil, false
		}
		name := b[i+1 : end-1]
		if bytes.IndexByte(name, '\\') >= 0 {
			return nil, false
		}
		i = skipSpace(b, end)
		if i >= len(b) || b[i] != ':' {
			return nil, false
		}
		i = skipSpace(b, i+1)
		vend := skipValue(b, i)
		if vend < 0 {
			return nil, false
		}
		if string(name) == key {
			found = b[i:vend]
		}
		i = skipSpace(b, vend)
		if i >= len(b) {
			return nil, false
		}
		switch b[i] {
		case ',':
			i = skipSpace(b, i+1)
		case '}':
			return found, skipSpace(b, i+1) == len(b)
		default:
			return nil, false
		}
	}
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// skipString returns the index after the string starting at b[i] (a quote), -1 if it
// does not end.
func skipString(b []byte, i int) int {
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			j++
		case '"':
			return j + 1
		}
	}
	return -1
}

// skipValue returns the index after the value starting at b[i], -1 if it is malformed
// in a way the scan notices (unbalanced brackets, an unterminated string, nothing).
// Literals and numbers are not checked: a malformed one only makes isToolError compare
// it with "true".
func skipValue(b []byte, i int) int {
	if i >= len(b) {
		return -1
	}
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '"':
				end := skipString(b, j)
				if end < 0 {
					return -1
				}
				j = end - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1
				}
			}
		}
		return -1
	}
	j := i
	for j < len(b) && b[j] != ',' && b[j] != '}' && b[j] != ']' && b[j] != ' ' && b[j] != '\t' && b[j] != '\n' && b[j] != '\r' {
		j++
	}
	if j == i {
		return -1
	}
	return j
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
