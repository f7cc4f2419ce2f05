package policy

import (
	"cel.dev/cel-go/common/types"
)

// Sensors are what the content sensors found in a call's inputs and in what its session
// has received. Conditions read them as the variable sensors:
//
//	sensors.args.secrets            list(string)  kinds of credentials in the arguments ("aws_access_key", ...)
//	sensors.args.pii                list(string)  types of personal data in the arguments ("EMAIL", "IBAN", ...)
//	sensors.args.hosts              list(string)  hosts the arguments send to (URLs, host names, mail domains)
//	sensors.prompt.injection.score  double        injection score (0 to 1) of the user's prompt sent with the call
//	sensors.prompt.injection.detected bool
//	sensors.session.injection.score double        highest injection score of a result the session has received
//	sensors.session.injection.detected bool
//
// The zero value is a call in which nothing was found.
type Sensors struct {
	ArgSecrets []string
	ArgPII     []string
	ArgHosts   []string
	Prompt     Injection
	Session    Injection
}

// Injection is an injection sensor's verdict on one text or a session's texts.
type Injection struct {
	// Score is from 0 (no sign of injection) to 1.
	Score float64
	// Detected says Score reached the detector's threshold.
	Detected bool
	// Signals name the evidence: rule ids of the detector, "model", "classifier".
	Signals []string
}

// Result is what the sensors found in a call's result. Rules with on: result read it as
// the variable result:
//
//	result.injection.score     double        0 to 1
//	result.injection.detected  bool
//	result.injection.signals   list(string)
//	result.secrets             list(string)  kinds of credentials in the result
//	result.pii                 list(string)  types of personal data in the result
//	result.tricks              list(string)  hidden-text tricks undone before scanning
//	result.bytes               int           size of the result
//	result.error               bool          the tool reported an error
type Result struct {
	Injection Injection
	Secrets   []string
	PII       []string
	Tricks    []string
	Bytes     int64
	Error     bool
}

func (i Injection) value() map[string]any {
	return map[string]any{"score": i.Score, "detected": i.Detected, "signals": nonNil(i.Signals)}
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

type sensorsSchema struct{}

func (sensorsSchema) find(f *Facts, field string) (any, bool) {
	s := &f.Sensors
	switch field {
	case "args":
		return map[string]any{"secrets": nonNil(s.ArgSecrets), "pii": nonNil(s.ArgPII), "hosts": nonNil(s.ArgHosts)}, true
	case "prompt":
		return map[string]any{"injection": s.Prompt.value()}, true
	case "session":
		return map[string]any{"injection": s.Session.value()}, true
	}
	return nil, false
}

func (sensorsSchema) fields(f *Facts) map[string]any {
	m := make(map[string]any, len(sensorsFields))
	for _, k := range sensorsFields {
		m[k], _ = sensorsSchema{}.find(f, k)
	}
	return m
}

type resultSchema struct{}

func (resultSchema) find(f *Facts, field string) (any, bool) {
	r := f.Result
	if r == nil {
		// Only rules on results read it, and they are evaluated with one.
		return types.NewErr("no result: the call has not run"), true
	}
	switch field {
	case "injection":
		return r.Injection.value(), true
	case "secrets":
		return nonNil(r.Secrets), true
	case "pii":
		return nonNil(r.PII), true
	case "tricks":
		return nonNil(r.Tricks), true
	case "bytes":
		return types.Int(r.Bytes), true
	case "error":
		return types.Bool(r.Error), true
	}
	return nil, false
}

func (resultSchema) fields(f *Facts) map[string]any {
	m := make(map[string]any, len(resultFields))
	if f.Result == nil {
		return m
	}
	for _, k := range resultFields {
		m[k], _ = resultSchema{}.find(f, k)
	}
	return m
}

// EvaluateResult judges a call's result by the rules with on: result that match the
// call's tool and agent; f.Result holds what the sensors found. A result passes unless a
// rule denies it: the decision is [Deny] naming the first rule (in bundle order) that
// applies or whose condition cannot be evaluated (fail closed), and otherwise [Allow]
// with no rules. Like Evaluate, it returns an error only when it cannot decide at all.
func (p *Policy) EvaluateResult(f *Facts) (Decision, error) {
	if p == nil {
		return Decision{Effect: Deny, Reason: reasonUndecided}, ErrNoPolicy
	}
	if f == nil || f.Result == nil {
		return Decision{Effect: Deny, Reason: reasonUndecided, Version: p.version}, ErrNoFacts
	}
	tr := p.tools[f.Tool.Name]
	if tr == nil {
		return Decision{Effect: Allow, Version: p.version}, nil
	}
	act := (*activation)(f)
	for _, r := range tr.results {
		if !r.agents.contains(f.Agent.ID) {
			continue
		}
		ok, err := r.applies(act)
		if err != nil {
			return p.conditionFailed(r, err), nil
		}
		if ok {
			return Decision{Effect: Deny, Rules: []string{r.id}, Reason: r.reason, Version: p.version, Flow: r.flow}, nil
		}
	}
	return Decision{Effect: Allow, Version: p.version}, nil
}

// ResultRules reports whether any rule judges the results of the tool.
func (p *Policy) ResultRules(tool string) bool {
	tr := p.tools[tool]
	return tr != nil && len(tr.results) > 0
}
