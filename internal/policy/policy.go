package policy

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"time"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/types"
)

// Effect is what a rule, and so a [Decision], says about a call.
type Effect string

// The three effects, strongest first: [Deny] overrides [Approve], which overrides [Allow].
const (
	// Allow lets the call run.
	Allow Effect = "allow"
	// Deny refuses the call.
	Deny Effect = "deny"
	// Approve holds the call until a person approves it.
	Approve Effect = "approve"
	// Hold is a rule effect, never a decision's: it adds a person's approval to a call that
	// other rules allow or send for approval, and allows nothing by itself. A call it holds
	// is decided [Approve]. Layered rules (presets) use it so that they can only narrow.
	Hold Effect = "hold"
)

// valid reports whether e is an effect a rule can have.
func (e Effect) valid() bool {
	return e == Allow || e == Deny || e == Approve || e == Hold
}

// Tool risk classes. Rules name them in match.classes and [ToolInfo.Class] must be one of them.
const (
	// ClassRead tools only read.
	ClassRead = "read"
	// ClassWrite tools change state inside the organisation.
	ClassWrite = "write"
	// ClassExternal tools reach outside: send mail, pay, post.
	ClassExternal = "external"
	// ClassDestructive tools delete or overwrite what cannot easily be restored.
	ClassDestructive = "destructive"
)

func validClass(c string) bool {
	switch c {
	case ClassRead, ClassWrite, ClassExternal, ClassDestructive:
		return true
	}
	return false
}

// Source is one policy file: its name (used in error messages and in the version) and its
// YAML content.
type Source struct {
	Name string
	Data []byte
}

// ToolInfo describes a tool the registry knows. [Compile] rejects rules naming unknown tools
// and expands classes and tool patterns against the set of known tools.
type ToolInfo struct {
	// Class is the tool's risk class: "read", "write", "external" or "destructive".
	Class string
}

// Facts are everything a rule may look at for one call. The caller fills them in; Evaluate
// only reads them and never reads a clock or anything else outside them.
type Facts struct {
	Agent Agent
	// User is the person the agent acts for, "" if none.
	User string
	// UserGroups are the user's groups as their identity provider asserted them.
	UserGroups []string
	// Chain lists the agents from the first to the one calling when the credential was
	// delegated; nil otherwise.
	Chain []string
	// Task is the task id, "" if none.
	Task string
	Tool Tool
	// Args are the call's arguments as decoded by encoding/json into any: float64, string,
	// bool, nil, []any and map[string]any values.
	Args    map[string]any
	Session Session
	// Risk is the call's risk score and the factors behind it.
	Risk Risk
	// Flow answers questions about the session's information flow and history; nil when
	// there is none, and then a condition that asks fails (the call is denied).
	Flow Flow
	// Now is the time of the call.
	Now time.Time
	// Sensors are what the content sensors found in the call's inputs and its session.
	Sensors Sensors
	// Result is what the sensors found in the call's result; nil before the call ran.
	// Only rules with on: result read it (see [Policy.EvaluateResult]).
	Result *Result
}

// Flow is what a condition may ask about a call's session beyond its count of calls:
// what the session has seen, where the call's argument values came from, and what the
// session has done (see the flow package, which implements it).
type Flow interface {
	// Untrusted reports whether the session has seen untrusted content.
	Untrusted() bool
	// Private reports whether the session has seen private data.
	Private() bool
	// ArgFromUntrusted reports whether argument name holds a value that came only from
	// untrusted content.
	ArgFromUntrusted(name string) bool
	// ArgFromTrusted reports whether every traceable value of argument name came from the
	// user's prompt or a trusted tool.
	ArgFromTrusted(name string) bool
	// ArgFromUser reports whether every traceable value of argument name came from the
	// user's prompt.
	ArgFromUser(name string) bool
	// SinksFromUntrusted reports whether a sink argument of the call holds a value that
	// came only from untrusted content.
	SinksFromUntrusted() bool
	// SinksFromTrusted reports whether the call has sink arguments and all are from
	// trusted sources.
	SinksFromTrusted() bool
	// Calls counts the earlier calls of tool in the session ("*": any tool).
	Calls(tool string) int64
	// CallsWithin counts them within d before the call.
	CallsWithin(tool string, d time.Duration) int64
	// Total sums numeric argument arg over the earlier calls of tool in the session.
	Total(tool, arg string) float64
	// TotalWithin sums it over the calls within d before the call.
	TotalWithin(tool, arg string, d time.Duration) float64
}

// Agent is the agent making a call.
type Agent struct {
	ID          string
	Owner       string
	Purpose     string
	Environment string
	Labels      map[string]string
	// Autonomy is the agent's autonomy level, 0 to 3.
	Autonomy int
}

// Tool is the tool being called.
type Tool struct {
	// Name is the exposed tool name; rules are indexed by it.
	Name string
	// Upstream names the upstream the tool lives on.
	Upstream string
	// Class is the tool's risk class. If set, it must equal the class given to [Compile]
	// for Name, or the call is denied.
	Class string
}

// Risk is a call's risk: a score from 0 to 100 and the factors that made it.
type Risk struct {
	Score   int
	Factors []string
	// Deviations are the ways the call departs from the agent's learned baseline:
	// "new_tool", "rate", "hour", "arg:<name>"; empty while the agent is learning.
	Deviations []string
}

// Session is the agent's session.
type Session struct {
	ID string
	// Calls is the number of tool calls made in the session so far.
	Calls int64
}

// Decision is the result of [Policy.Evaluate].
type Decision struct {
	// Effect is allow, deny or approve; never empty.
	Effect Effect
	// Rules are the ids of the rules that produced Effect, in bundle order. For deny it
	// is the one rule that caused the deny (empty for the default deny); for approve and
	// allow, every applying rule with that effect. The slice belongs to the caller.
	Rules []string
	// Reason is one short human sentence explaining the decision.
	Reason string
	// Version is the version of the policy that decided.
	Version string
	// Err, if not nil, says why the policy failed closed: a condition that could not be
	// evaluated, or facts that contradict the compiled policy. It may quote argument
	// values: record it in the audit log, do not show it to the agent.
	Err error
	// Shadow is the decision the policy would have made with its shadow rules enforced;
	// nil when no shadow rule names the tool. It never changes Effect.
	Shadow *ShadowDecision
	// Flow reports that a rule in Rules reads flow facts (session.untrusted,
	// session.private or a flow function), so the flow state can explain the decision.
	Flow bool
}

// ShadowDecision is the would-be decision of a policy with its shadow rules enforced.
type ShadowDecision struct {
	Effect Effect
	// Rules produced Effect, in bundle order (enforcing and shadow rules alike).
	Rules  []string
	Reason string
	// Changed reports whether the would-be effect differs from the enforcing one.
	Changed bool
}

// Reasons that are not about a single rule.
const (
	reasonDefaultDeny   = "no rule allows this call"
	reasonClassMismatch = "tool class differs from the class the policy was compiled with"
	reasonUndecided     = "policy could not be evaluated"
)

// ErrNoFacts is returned by [Policy.Evaluate] when it is given nil facts.
var ErrNoFacts = errors.New("policy: no facts to evaluate")

// ErrNoPolicy is returned by [Policy.Evaluate] when called on a nil *Policy.
var ErrNoPolicy = errors.New("policy: no policy")

// Policy is a compiled bundle of rules. It is immutable and safe for concurrent use.
type Policy struct {
	version string
	rules   []*rule
	// tools indexes the enforcing rules by exposed tool name. Every tool given to Compile
	// has an entry, even one no rule names.
	tools map[string]*toolRules
	// shadow indexes, for the tools some shadow rule names, every rule — enforcing and
	// shadow — so that Evaluate can tell what the decision would be; nil if none.
	shadow map[string]*toolRules
	// shadowIDs are the ids of the shadow rules, in bundle order.
	shadowIDs []string
}

// ShadowRules returns the ids of the rules in shadow mode, in bundle order.
func (p *Policy) ShadowRules() []string { return slices.Clone(p.shadowIDs) }

// rule is one compiled rule.
type rule struct {
	id     string
	effect Effect
	// shadow rules are evaluated for the would-be decision only.
	shadow bool
	// result rules judge a call's result, not the call.
	result bool
	agents agentSet
	// prg is the compiled condition; nil if the rule has none.
	prg cel.Program
	// flow says the condition reads flow facts.
	flow bool
	// reason and errReason are the Decision.Reason texts, precomputed so that Evaluate
	// does not format strings.
	reason    string
	errReason string
}

// toolRules are the rules whose match names one tool, split by effect, each in bundle order.
type toolRules struct {
	class string
	deny  []*rule
	// rest holds the approve and allow rules.
	rest []*rule
	// last is the index of the last rule appended, so a rule that names a tool twice
	// (say "a" and "a*") is indexed once.
	last int
	// results holds the rules on results (all deny), in bundle order.
	results []*rule
}

// add indexes rule r, the i-th of the bundle, once.
func (tr *toolRules) add(r *rule, i int) {
	if tr.last == i {
		return
	}
	tr.last = i
	if r.effect == Deny {
		tr.deny = append(tr.deny, r)
	} else {
		tr.rest = append(tr.rest, r)
	}
}

// agentSet is a rule's match.agents.
type agentSet struct {
	any bool
	// ids is used for short lists, set for long ones.
	ids []string
	set map[string]struct{}
}

// smallAgentSet is the list length up to which a linear scan beats a map lookup.
const smallAgentSet = 8

func newAgentSet(ids []string) agentSet {
	if ids == nil {
		return agentSet{any: true}
	}
	for _, id := range ids {
		if id == "*" {
			return agentSet{any: true}
		}
	}
	if len(ids) <= smallAgentSet {
		return agentSet{ids: ids}
	}
	set := make(map[string]struct{}, len(ids))
	for _, id := range ids {
		set[id] = struct{}{}
	}
	return agentSet{set: set}
}

func (s *agentSet) contains(id string) bool {
	if s.any {
		return true
	}
	if s.set != nil {
		_, ok := s.set[id]
		return ok
	}
	for _, x := range s.ids {
		if x == id {
			return true
		}
	}
	return false
}

// Version returns the policy version: "sha256:" and the hex SHA-256 of the sources.
func (p *Policy) Version() string { return p.version }

// Rules returns the number of rules in the policy.
func (p *Policy) Rules() int { return len(p.rules) }

// version hashes the sources in order, each as its name, a NUL byte, the length of its
// data as a big-endian uint64, and the data. Names cannot contain NUL (Compile checks), so
// different inputs cannot produce the same byte stream.
// VersionOf returns the version a policy compiled from sources would have, without
// compiling them: a cheap way to tell whether files changed.
func VersionOf(sources []Source) string { return version(sources) }

func version(sources []Source) string {
	h := sha256.New()
	var n [8]byte
	for _, s := range sources {
		h.Write([]byte(s.Name))
		h.Write([]byte{0})
		binary.BigEndian.PutUint64(n[:], uint64(len(s.Data)))
		h.Write(n[:])
		h.Write(s.Data)
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}

// Evaluate decides one call.
//
// It looks only at the rules indexed under f.Tool.Name whose agents match f.Agent.ID. It
// evaluates the deny rules first, in bundle order, and returns at the first one that
// applies or whose condition fails. Then it evaluates every approve and allow rule, in
// bundle order; a condition that fails there also denies at once. Approve wins over
// allow; if neither applies, the call is denied by default.
//
// A deny is a Decision, not an error. Evaluate returns an error only when it cannot
// decide at all (nil facts or a nil policy); the Decision is then a deny as well.
func (p *Policy) Evaluate(f *Facts) (Decision, error) {
	if p == nil {
		return Decision{Effect: Deny, Reason: reasonUndecided}, ErrNoPolicy
	}
	if f == nil {
		return Decision{Effect: Deny, Reason: reasonUndecided, Version: p.version}, ErrNoFacts
	}
	tr := p.tools[f.Tool.Name]
	if tr == nil {
		return Decision{Effect: Deny, Reason: reasonDefaultDeny, Version: p.version}, nil
	}
	if f.Tool.Class != "" && f.Tool.Class != tr.class {
		return Decision{
			Effect:  Deny,
			Reason:  reasonClassMismatch,
			Version: p.version,
			Err:     fmt.Errorf("tool %q has class %q, the policy was compiled with class %q", f.Tool.Name, f.Tool.Class, tr.class),
		}, nil
	}

	act := (*activation)(f)
	d := p.decide(tr, f, act)
	if st := p.shadow[f.Tool.Name]; st != nil {
		w := p.decide(st, f, act)
		d.Shadow = &ShadowDecision{Effect: w.Effect, Rules: w.Rules, Reason: w.Reason, Changed: w.Effect != d.Effect}
	}
	return d, nil
}

// decide evaluates one index of rules for the call.
func (p *Policy) decide(tr *toolRules, f *Facts, act *activation) Decision {
	for _, r := range tr.deny {
		if !r.agents.contains(f.Agent.ID) {
			continue
		}
		ok, err := r.applies(act)
		if err != nil {
			return p.conditionFailed(r, err)
		}
		if ok {
			return Decision{Effect: Deny, Rules: []string{r.id}, Reason: r.reason, Version: p.version, Flow: r.flow}
		}
	}

	// Most calls match a handful of rules; the array keeps them off the heap.
	var buf [16]*rule
	applied := buf[:0]
	approve, grant := false, false
	for _, r := range tr.rest {
		if !r.agents.contains(f.Agent.ID) {
			continue
		}
		ok, err := r.applies(act)
		if err != nil {
			return p.conditionFailed(r, err)
		}
		if ok {
			applied = append(applied, r)
			approve = approve || r.effect != Allow
			grant = grant || r.effect != Hold
		}
	}
	if !grant {
		// Hold rules alone allow nothing.
		return Decision{Effect: Deny, Reason: reasonDefaultDeny, Version: p.version}
	}
	want := Allow
	if approve {
		want = Approve
	}
	decides := func(r *rule) bool {
		return r.effect == want || (want == Approve && r.effect == Hold)
	}
	n := 0
	for _, r := range applied {
		if decides(r) {
			n++
		}
	}
	ids := make([]string, 0, n)
	var reason string
	flow := false
	for _, r := range applied {
		if !decides(r) {
			continue
		}
		if len(ids) == 0 {
			reason = r.reason
		}
		ids = append(ids, r.id)
		flow = flow || r.flow
	}
	return Decision{Effect: want, Rules: ids, Reason: reason, Version: p.version, Flow: flow}
}

func (p *Policy) conditionFailed(r *rule, err error) Decision {
	return Decision{
		Effect:  Deny,
		Flow:    r.flow,
		Rules:   []string{r.id},
		Reason:  r.errReason,
		Version: p.version,
		Err:     fmt.Errorf("rule %q: condition: %w", r.id, err),
	}
}

// applies reports whether r's condition holds; a rule without condition always applies.
func (r *rule) applies(act *activation) (bool, error) {
	if r.prg == nil {
		return true, nil
	}
	out, _, err := r.prg.Eval(act)
	if err != nil {
		return false, err
	}
	b, ok := out.(types.Bool)
	if !ok {
		// The checker guarantees bool; this guards against a dyn result slipping through.
		return false, fmt.Errorf("condition returned %s, want bool", out.Type().TypeName())
	}
	return bool(b), nil
}

// Visible reports whether the agent may ever see the tool: some allow or approve rule
// matches (agentID, tool) ignoring conditions, and no deny rule without a condition
// matches it. Visible is for filtering the agent's tool list; every call is still decided
// by [Policy.Evaluate].
func (p *Policy) Visible(agentID, tool string) bool {
	if p == nil {
		return false
	}
	tr := p.tools[tool]
	if tr == nil {
		return false
	}
	for _, r := range tr.deny {
		if r.prg == nil && r.agents.contains(agentID) {
			return false
		}
	}
	for _, r := range tr.rest {
		if r.effect != Hold && r.agents.contains(agentID) {
			return true
		}
	}
	return false
}
