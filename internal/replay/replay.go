package replay

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/chaperone-dev/chaperone/internal/audit"
	"github.com/chaperone-dev/chaperone/internal/config"
	"github.com/chaperone-dev/chaperone/internal/identity"
	"github.com/chaperone-dev/chaperone/internal/pipeline"
	"github.com/chaperone-dev/chaperone/internal/policy"
	"github.com/chaperone-dev/chaperone/internal/registry"
	"github.com/chaperone-dev/chaperone/internal/upstream"
)

// Approvals says what becomes of a call the policy holds for a person's approval.
type Approvals string

// The ways of handling approvals.
const (
	// ApprovalsGranted treats the call as approved: it runs, its recorded result flows on
	// and it counts in the session.
	ApprovalsGranted Approvals = "granted"
	// ApprovalsDenied treats the call as refused: it does not change the session.
	ApprovalsDenied Approvals = "denied"
)

// The effects a replayed call can have, as written in [Decision.Effect].
const (
	EffectAllow   = string(policy.Allow)
	EffectDeny    = string(policy.Deny)
	EffectApprove = string(policy.Approve)
)

// emptyResult stands in for a call recorded without a result.
var emptyResult = json.RawMessage(`{"content":[]}`)

// Options are the inputs of [Run].
type Options struct {
	// Config declares the tools, their upstreams and the agents. Required.
	Config *config.Config
	// Trace is what to replay. Required.
	Trace *Trace
	// Policy is the policy bundle to decide with (see daemon.ReadPolicySources).
	Policy []policy.Source
	// Definitions are the tools' definitions; nil means none (every tool gets the
	// permissive schema).
	Definitions *Definitions
	// DefaultAgent is the agent of sessions that name none; "" leaves them unauthenticated.
	DefaultAgent string
	// Approvals is how calls needing approval are treated; "" means [ApprovalsGranted].
	Approvals Approvals
	// Progress, if set, is called after each call is replayed with the number of calls
	// replayed so far and the number of calls in the trace, from Run's goroutine. nil:
	// none.
	Progress func(done, total int)
}

// Report is the result of a replay.
type Report struct {
	// PolicyVersion is the version of the policy that decided.
	PolicyVersion string
	// Sessions counts the sessions of the trace.
	Sessions int
	// Decisions has one entry per call of the trace, in the trace's order.
	Decisions []Decision
	// Warnings are about the replay's fidelity (tools without a definition, tools that
	// cannot be used), in a stable order.
	Warnings []string
}

// Decision is what became of one replayed call. Its JSON form is one line of the replay
// output; empty fields are omitted.
type Decision struct {
	Session string `json:"session"`
	ID      string `json:"id"`
	Tool    string `json:"tool"`
	// Effect is allow, deny or approve: approve is reported as such however approvals are
	// treated. A call refused before the policy was asked (unknown tool, invalid
	// arguments, unknown agent, ...) is a deny.
	Effect string `json:"decision"`
	// Reason is the pipeline's refusal code ([pipeline.Code]); "" for an allowed call.
	Reason string `json:"reason,omitempty"`
	// Rules are the policy rules that made the decision, in bundle order.
	Rules []string `json:"rules,omitempty"`
	// Risk is the call's risk score (see the risk package); nil for a call refused before
	// the policy was asked.
	Risk *int `json:"risk,omitempty"`
}

// Run replays the trace: each session on its own, from empty session state, through the
// gateway's pipeline with a registry of the configured tools, the given policy and, instead
// of upstreams, the recorded results. It returns an error only when it cannot replay at all
// (bad options, a policy that does not compile, ctx done); everything that happens to a
// call is in its [Decision].
//
// The principal of a session is its agent (or opts.DefaultAgent) as the configuration
// declares it, active, acting for the session's user and task. The agent's capabilities
// bound the tools it may call, as they bound any task token it could hold: a call outside
// them is out_of_scope. A session whose agent the configuration does not declare has every
// call denied as unauthenticated. The time of a call is its recorded (or derived) time;
// session.calls counts the session's calls that ran, this one included. A refused call does
// not run and changes nothing.
//
// Definition pinning is not replayed: each tool's definition (see [LoadDefinitions]) is
// taken as approved, whatever the configuration's pin or registry.first_use say.
func Run(ctx context.Context, opts Options) (Report, error) {
	if opts.Config == nil || opts.Trace == nil {
		return Report{}, errors.New("replay: config and trace are required")
	}
	switch opts.Approvals {
	case "":
		opts.Approvals = ApprovalsGranted
	case ApprovalsGranted, ApprovalsDenied:
	default:
		return Report{}, fmt.Errorf("replay: approvals must be granted or denied, got %q", opts.Approvals)
	}
	agents := map[string]*identity.Agent{}
	for _, a := range opts.Config.Agents {
		agents[a.ID] = &identity.Agent{ID: a.ID, Owner: a.Owner, Purpose: a.Purpose, Environment: a.Environment,
			Labels: a.Labels, Capabilities: slices.Clone(a.Capabilities), Autonomy: a.Autonomy, Status: identity.StatusActive}
	}
	if opts.DefaultAgent != "" && agents[opts.DefaultAgent] == nil {
		return Report{}, fmt.Errorf("replay: default agent %q is not declared in the configuration", opts.DefaultAgent)
	}

	reg, toolInfo, warnings, err := buildRegistry(ctx, opts.Config, opts.Definitions, opts.Trace)
	if err != nil {
		return Report{}, err
	}
	pol, err := policy.Compile(opts.Policy, toolInfo)
	if err != nil {
		return Report{}, fmt.Errorf("compile policy: %w", err)
	}

	pl := &player{}
	popts := pipeline.Options{
		Tools: reg, Policy: func() *policy.Policy { return pol }, Upstreams: pl, Audit: nopAuditor{},
		Now: pl.now,
	}
	if opts.Approvals == ApprovalsGranted {
		// As if a person approved: the call runs and its recorded result flows on.
		popts.Approve = func(context.Context, *pipeline.Hold) (string, *pipeline.Refusal) { return "", nil }
	}
	p := pipeline.New(popts)
	rep := Report{
		PolicyVersion: pol.Version(),
		Sessions:      len(opts.Trace.Sessions),
		Decisions:     make([]Decision, len(opts.Trace.Calls)),
		Warnings:      warnings,
	}
	done := 0
	for _, s := range opts.Trace.Sessions {
		agentID := s.Agent
		if agentID == "" {
			agentID = opts.DefaultAgent
		}
		var pr *identity.Principal
		if a := agents[agentID]; a != nil {
			pr = &identity.Principal{Agent: a, User: s.User, Task: s.Task, Tools: a.ToolLimit()}
		}
		// ran counts the session's calls that ran: session.calls. What they brought in is
		// the pipeline's flow state.
		var ran int64
		var prompt []string
		for _, e := range s.Events {
			if err := ctx.Err(); err != nil {
				return Report{}, err
			}
			switch e.Kind {
			case EventPrompt:
				// A prompt reaches the gateway with the next call, as a host reports it live.
				prompt = append(prompt, e.Text)
			case EventCall:
				rep.Decisions[e.Call.Seq] = replayCall(ctx, p, pl, pr, &ran, e.Call, strings.Join(prompt, "\n"))
				prompt = prompt[:0]
				if done++; opts.Progress != nil {
					opts.Progress(done, len(opts.Trace.Calls))
				}
			}
		}
	}
	return rep, nil
}

// replayCall runs one call and records its effect on the session.
func replayCall(ctx context.Context, p *pipeline.Pipeline, pl *player, pr *identity.Principal, ran *int64, c *Call, prompt string) Decision {
	d := Decision{Session: c.Session, ID: c.ID, Tool: c.Tool}
	if pr == nil {
		d.Effect, d.Reason = EffectDeny, string(pipeline.CodeUnauthenticated)
		return d
	}
	result := c.Result
	if result == nil {
		result = emptyResult
	}
	pl.cur, pl.result = c, result
	out := p.Handle(ctx, &pipeline.Call{
		RequestID: c.Session + "/" + c.ID, Principal: pr, SessionID: c.Session,
		SessionCalls: *ran + 1, Tool: c.Tool, Arguments: c.Arguments, Prompt: prompt,
	})
	pl.cur, pl.result = nil, nil
	d.Rules = slices.Clone(out.Decision.Rules)
	if out.Risk > 0 {
		r := out.Risk
		d.Risk = &r
	}
	switch {
	case out.Refusal == nil && out.Decision.Effect == policy.Approve:
		// Approved as --approvals granted says.
		d.Effect, d.Reason = EffectApprove, string(pipeline.CodeApprovalRequired)
		*ran++
	case out.Refusal == nil:
		d.Effect = EffectAllow
		*ran++
	case out.Refusal.Code == pipeline.CodeApprovalRequired:
		d.Effect, d.Reason = EffectApprove, string(out.Refusal.Code)
	default:
		// The refusal's rules, not the decision's: a call the policy allowed can still be
		// refused later (a budget), and the allowing rules did not refuse it.
		d.Effect, d.Reason = EffectDeny, string(out.Refusal.Code)
		d.Rules = slices.Clone(out.Refusal.Rules)
	}
	if len(d.Rules) == 0 {
		d.Rules = nil
	}
	return d
}

// buildRegistry declares the configured tools exactly as the daemon does and syncs each
// upstream with the tools' definitions, pinned on first use in memory. It returns the
// registry, the tools as the policy compiler needs them and warnings about tools that have
// no definition or cannot be used.
func buildRegistry(ctx context.Context, cfg *config.Config, defs *Definitions, tr *Trace) (*registry.Registry, map[string]policy.ToolInfo, []string, error) {
	names, err := config.ExposedNames(cfg.Tools)
	if err != nil {
		return nil, nil, nil, err
	}
	envOf := map[string]string{}
	for _, u := range cfg.Upstreams {
		envOf[u.Name] = u.Environment
	}
	if defs == nil {
		defs = &Definitions{}
	}
	warnings := slices.Clone(defs.warnings)

	// The argument names each tool is called with, for the permissive schema.
	seen := map[string]map[string]struct{}{}
	for _, c := range tr.Calls {
		if seen[c.Tool] == nil {
			seen[c.Tool] = map[string]struct{}{}
		}
		argumentNames(c.Arguments, seen[c.Tool])
	}

	decls := make([]registry.Declaration, len(cfg.Tools))
	info := map[string]policy.ToolInfo{}
	live := map[string][]upstream.Tool{}
	for i, t := range cfg.Tools {
		// No Pin: the definition replay uses is the approved one by construction.
		decls[i] = registry.Declaration{Name: names[i], Upstream: t.Upstream, UpstreamName: t.Name, Class: t.Class,
			Environment: envOf[t.Upstream], Overlay: t.Arguments}
		decls[i].Flow, _ = t.Labels()
		decls[i].Undo = t.Undo
		info[names[i]] = policy.ToolInfo{Class: t.Class}
		ut := upstream.Tool{Name: t.Name}
		if def, ok := defs.byName[names[i]]; ok {
			ut.Description, ut.InputSchema = def.description, def.inputSchema
		} else {
			ut.InputSchema = permissiveSchema(sortedKeys(t.Arguments), seen[names[i]])
			warnings = append(warnings, fmt.Sprintf("tool %q: no pinned definition: arguments checked against the overlay only", names[i]))
		}
		live[t.Upstream] = append(live[t.Upstream], ut)
	}
	reg := registry.New(decls, registry.Options{Pins: &firstUsePins{}, Audit: nopAuditor{}, Now: func() time.Time { return defaultStart }})
	for _, u := range cfg.Upstreams {
		if err := reg.Sync(ctx, u.Name, live[u.Name]); err != nil {
			// Only validators that cannot be compiled fail here (the pins and the audit are in
			// memory); the tools concerned are quarantined, as the gateway would.
			for _, line := range strings.Split(err.Error(), "\n") {
				warnings = append(warnings, fmt.Sprintf("upstream %q: %s", u.Name, line))
			}
		}
	}
	for _, n := range names {
		if t, ok := reg.Lookup(n); ok && t.Status != registry.StatusActive {
			warnings = append(warnings, fmt.Sprintf("tool %q is %s (%s): its calls are refused", n, t.Status, t.Reason))
		}
	}
	return reg, info, warnings, nil
}

// player stands in for the upstreams and the clock: it answers the call being replayed with
// its recorded result, at its recorded time. Replay is sequential, so one current call is
// enough.
type player struct {
	cur    *Call
	result json.RawMessage
}

func (pl *player) Call(context.Context, string, string, json.RawMessage) (json.RawMessage, error) {
	if pl.cur == nil {
		return nil, upstream.ErrUnavailable
	}
	return pl.result, nil
}

func (pl *player) now() time.Time {
	if pl.cur == nil {
		return defaultStart
	}
	return pl.cur.Time
}

// firstUsePins is an in-memory fake [registry.PinStore] that accepts every definition on
// first use: replay takes the definitions it is given as the approved ones.
type firstUsePins struct {
	pins map[string]registry.Pin
}

func (s *firstUsePins) Pin(_ context.Context, tool string) (registry.Pin, bool, error) {
	p, ok := s.pins[tool]
	return p, ok, nil
}

func (s *firstUsePins) SetPin(_ context.Context, p registry.Pin) error {
	if s.pins == nil {
		s.pins = map[string]registry.Pin{}
	}
	s.pins[p.Tool] = p
	return nil
}

// nopAuditor accepts every event and keeps none: replay's record is its report.
type nopAuditor struct{}

func (nopAuditor) Append(context.Context, *audit.Event) error { return nil }

var (
	_ registry.PinStore  = (*firstUsePins)(nil)
	_ pipeline.Auditor   = nopAuditor{}
	_ registry.Auditor   = nopAuditor{}
	_ pipeline.Upstreams = (*player)(nil)
)
