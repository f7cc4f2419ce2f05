package policy

import (
	"strings"
	"testing"
	"time"
)

// recordingFlow is a StaticFlow that records the windows it was asked about.
type recordingFlow struct {
	StaticFlow
	windows []time.Duration
}

func (r *recordingFlow) CallsWithin(tool string, d time.Duration) int64 {
	r.windows = append(r.windows, d)
	return r.StaticFlow.CallsWithin(tool, d)
}

func (r *recordingFlow) TotalWithin(tool, arg string, d time.Duration) float64 {
	r.windows = append(r.windows, d)
	return r.StaticFlow.TotalWithin(tool, arg, d)
}

func TestFlowFunctions(t *testing.T) {
	t.Parallel()
	flow := &StaticFlow{
		SessionUntrusted: true, SessionPrivate: true,
		UntrustedArgs: []string{"to"}, TrustedArgs: []string{"cc"}, UserArgs: []string{"subject"},
		Sinks:      []string{"to"},
		CallCounts: map[string]int64{"read_inbox": 2, "pay": 3},
		Totals:     map[string]float64{"pay.amount": 250},
	}
	tests := []struct {
		when string
		want bool
	}{
		{`session.untrusted && session.private`, true},
		{`args_from_untrusted("to")`, true},
		{`args_from_untrusted("cc")`, false},
		{`args_from_trusted("cc") && args_from_trusted("subject")`, true},
		{`args_from_trusted("to")`, false},
		{`args_from_user("subject") && !args_from_user("cc")`, true},
		{`args_from_untrusted("absent") || args_from_trusted("absent")`, false},
		{`sinks_from_untrusted() && !sinks_from_trusted()`, true},
		{`called("read_inbox") && !called("delete_email")`, true},
		{`calls("pay") == 3 && calls("*") == 5`, true},
		{`calls_within("pay", duration("10m")) == 3`, true},
		{`total("pay", "amount") + 50.0 > 299.0`, true},
		{`total_within("pay", "amount", duration("24h")) == 250.0`, true},
		{`total("*", "amount") == 250.0`, true},
	}
	for _, tc := range tests {
		p := mustCompile(t, "rules:\n  - id: r\n    when: '"+tc.when+"'\n    effect: allow\n")
		rf := &recordingFlow{StaticFlow: *flow}
		f := facts("a", "send_email", map[string]any{"to": "x"})
		f.Flow = rf
		d, err := p.Evaluate(f)
		if err != nil || d.Err != nil {
			t.Fatalf("%s: Evaluate: %v, %v", tc.when, err, d.Err)
		}
		if got := d.Effect == Allow; got != tc.want {
			t.Errorf("%s: applies = %v, want %v", tc.when, got, tc.want)
		}
		if d.Effect == Allow && !d.Flow {
			t.Errorf("%s: Decision.Flow = false for a rule that reads flow facts", tc.when)
		}
		if strings.Contains(tc.when, "_within") && len(rf.windows) == 0 {
			t.Errorf("%s: the window was not passed on", tc.when)
		}
	}
}

func TestFlowFunctionsWithoutFlowDeny(t *testing.T) {
	t.Parallel()
	for _, when := range []string{`session.untrusted == true`, `args_from_untrusted("to")`, `calls("pay") < 3`, `!sinks_from_untrusted()`} {
		p := mustCompile(t, "rules:\n  - id: r\n    when: '"+when+"'\n    effect: allow\n")
		d, err := p.Evaluate(facts("a", "send_email", nil))
		if err != nil {
			t.Fatal(err)
		}
		if d.Effect != Deny || d.Err == nil || !strings.Contains(d.Err.Error(), "flow facts are not available") {
			t.Errorf("%s without flow facts: %+v, want a deny naming the missing flow facts", when, d)
		}
	}
}

func TestDecisionFlowOnlyForFlowRules(t *testing.T) {
	t.Parallel()
	p := mustCompile(t, `rules:
  - {id: plain, when: 'args.n > 1.0', effect: deny}
  - {id: flowy, when: 'session.private == true', effect: approve}
  - {id: ok, effect: allow}
`)
	f := facts("a", "pay", map[string]any{"n": 2.0})
	f.Flow = &StaticFlow{SessionPrivate: true}
	if d, _ := p.Evaluate(f); d.Effect != Deny || d.Flow {
		t.Errorf("deny by a plain rule: %+v, want Flow false", d)
	}
	f.Args["n"] = 0.0
	if d, _ := p.Evaluate(f); d.Effect != Approve || !d.Flow {
		t.Errorf("approve by a flow rule: %+v, want Flow true", d)
	}
	f.Flow = &StaticFlow{}
	if d, _ := p.Evaluate(f); d.Effect != Allow || d.Flow {
		t.Errorf("allow by a plain rule: %+v, want Flow false", d)
	}
}

func TestFlowCompileErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ when, want string }{
		{`called("send_mial")`, `unknown tool "send_mial" in a history function`},
		{`calls(args.tool) > 1`, `calls: the tool must be a string literal`},
		{`__flow == null`, `__flow is reserved`},
		{`args_from_untrusted(1)`, `no matching overload`},
		{`args_from_untrusted("a", "b")`, `args_from_untrusted takes 1 argument`},
		{`calls_within("pay", "10m") > 1`, `no matching overload`},
		{`session.untrsted == true`, `session has no field "untrsted"`},
	} {
		_, err := Compile([]Source{{Name: "p.yaml", Data: []byte("rules:\n  - id: r\n    when: '" + tc.when + "'\n    effect: deny\n")}}, testTools)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Compile error %v, want one containing %q", tc.when, err, tc.want)
		}
	}
}

func TestHoldOnlyNarrows(t *testing.T) {
	t.Parallel()
	p := mustCompile(t, `rules:
  - {id: hold-mail, match: {tools: [send_email, pay]}, effect: hold}
  - {id: allow-mail, match: {tools: [send_email]}, when: 'args.to.endsWith("@example.com")', effect: allow}
  - {id: approve-pay, match: {tools: [pay]}, when: 'args.amount > 10.0', effect: approve}
  - {id: no-big-pay, match: {tools: [pay]}, when: 'args.amount > 1000.0', effect: deny}
`)
	for _, tc := range []struct {
		tool  string
		args  map[string]any
		want  Effect
		rules []string
	}{
		{"send_email", map[string]any{"to": "lee@example.com"}, Approve, []string{"hold-mail"}},
		{"send_email", map[string]any{"to": "x@elsewhere.org"}, Deny, nil},
		{"pay", map[string]any{"amount": 5.0}, Deny, nil},
		{"pay", map[string]any{"amount": 50.0}, Approve, []string{"hold-mail", "approve-pay"}},
		{"pay", map[string]any{"amount": 5000.0}, Deny, []string{"no-big-pay"}},
	} {
		d, err := p.Evaluate(facts("a", tc.tool, tc.args))
		if err != nil || d.Effect != tc.want || strings.Join(d.Rules, ",") != strings.Join(tc.rules, ",") {
			t.Errorf("%s %v: %s %v (%v), want %s %v", tc.tool, tc.args, d.Effect, d.Rules, err, tc.want, tc.rules)
		}
	}
	if p.Visible("a", "delete_email") {
		t.Error("a tool only a hold rule names is visible")
	}
	q := mustCompile(t, "rules:\n  - {id: h, match: {tools: [read_inbox]}, effect: hold}\n")
	if q.Visible("a", "read_inbox") {
		t.Error("a hold rule made a tool visible")
	}
	schemas := map[string]ToolSchema{}
	for name, info := range testTools {
		schemas[name] = ToolSchema{Class: info.Class}
	}
	findings := Lint([]Source{{Name: "p.yaml", Data: []byte(`rules:
  - {id: hold-all, effect: hold}
  - {id: allow-all, effect: allow}
`)}}, schemas)
	for _, f := range findings {
		if f.Rule == "allow-all" {
			t.Errorf("lint reports the allow rule a hold gates: %v", f)
		}
	}
}
