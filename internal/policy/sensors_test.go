package policy

import (
	"strings"
	"testing"
)

func TestSensorFacts(t *testing.T) {
	t.Parallel()
	p := mustCompile(t, `
rules:
  - id: no-secrets-out
    match: {classes: [external]}
    when: '"aws_access_key" in sensors.args.secrets || size(sensors.args.secrets) > 2'
    effect: deny
  - id: pii-needs-a-person
    match: {tools: [send_email]}
    when: '"IBAN" in sensors.args.pii'
    effect: approve
  - id: injected-session
    match: {classes: [external]}
    when: 'sensors.session.injection.detected || sensors.prompt.injection.score >= 0.8'
    effect: deny
  - id: hosts
    match: {tools: [pay]}
    when: 'sensors.args.hosts.exists(h, h.endsWith(".evil.test"))'
    effect: deny
  - id: send
    match: {tools: [send_email, pay]}
    effect: allow
`)
	tests := []struct {
		name    string
		tool    string
		sensors Sensors
		effect  Effect
		rule    string
	}{
		{"nothing found", "send_email", Sensors{}, Allow, "send"},
		{"secret", "send_email", Sensors{ArgSecrets: []string{"aws_access_key"}}, Deny, "no-secrets-out"},
		{"other secret", "send_email", Sensors{ArgSecrets: []string{"jwt"}}, Allow, "send"},
		{"iban", "send_email", Sensors{ArgPII: []string{"EMAIL", "IBAN"}}, Approve, "pii-needs-a-person"},
		{"session injected", "pay", Sensors{Session: Injection{Score: 0.9, Detected: true}}, Deny, "injected-session"},
		{"prompt injected", "pay", Sensors{Prompt: Injection{Score: 0.85}}, Deny, "injected-session"},
		{"prompt below", "pay", Sensors{Prompt: Injection{Score: 0.5}}, Allow, "send"},
		{"host", "pay", Sensors{ArgHosts: []string{"pay.evil.test"}}, Deny, "hosts"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := facts("a", tt.tool, map[string]any{})
			f.Sensors = tt.sensors
			d, err := p.Evaluate(f)
			if err != nil || d.Err != nil {
				t.Fatalf("Evaluate() = %+v, %v", d, err)
			}
			if d.Effect != tt.effect || len(d.Rules) == 0 || d.Rules[0] != tt.rule {
				t.Errorf("Evaluate() = %s %v, want %s by %s", d.Effect, d.Rules, tt.effect, tt.rule)
			}
		})
	}
}

func TestEvaluateResult(t *testing.T) {
	t.Parallel()
	p := mustCompile(t, `
rules:
  - id: read
    match: {tools: [read_inbox, files__read]}
    effect: allow
  - id: injected-mail
    on: result
    match: {tools: [read_inbox]}
    when: 'result.injection.score >= 0.7 && "model" in result.injection.signals'
    effect: deny
  - id: keys-in-files
    on: result
    match: {tools: ["files__*"]}
    when: '"private_key" in result.secrets || result.bytes > 1000000'
    effect: deny
  - id: only-mallory
    on: result
    match: {agents: [mallory], tools: [read_inbox]}
    effect: deny
`)
	tests := []struct {
		name   string
		agent  string
		tool   string
		result Result
		effect Effect
		rule   string
	}{
		{"clean mail", "a", "read_inbox", Result{}, Allow, ""},
		{"injected mail", "a", "read_inbox", Result{Injection: Injection{Score: 0.9, Signals: []string{"instruction_override", "model"}}}, Deny, "injected-mail"},
		{"rules only", "a", "read_inbox", Result{Injection: Injection{Score: 0.9, Signals: []string{"instruction_override"}}}, Allow, ""},
		{"key in file", "a", "files__read", Result{Secrets: []string{"private_key"}}, Deny, "keys-in-files"},
		{"big file", "a", "files__read", Result{Bytes: 2_000_000}, Deny, "keys-in-files"},
		{"agent match", "mallory", "read_inbox", Result{}, Deny, "only-mallory"},
		{"no result rules", "a", "send_email", Result{Secrets: []string{"private_key"}}, Allow, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := facts(tt.agent, tt.tool, map[string]any{})
			f.Result = &tt.result
			d, err := p.EvaluateResult(f)
			if err != nil {
				t.Fatal(err)
			}
			if d.Effect != tt.effect || (tt.rule != "" && (len(d.Rules) != 1 || d.Rules[0] != tt.rule)) || (tt.rule == "" && len(d.Rules) != 0) {
				t.Errorf("EvaluateResult() = %s %v, want %s %q", d.Effect, d.Rules, tt.effect, tt.rule)
			}
		})
	}

	// Rules on results never decide calls.
	f := facts("mallory", "read_inbox", map[string]any{})
	if d, _ := p.Evaluate(f); d.Effect != Allow {
		t.Errorf("Evaluate() with a result rule for the agent = %s %v, want allow", d.Effect, d.Rules)
	}
	if !p.Visible("mallory", "read_inbox") {
		t.Error("a rule on results hides the tool")
	}
	// Without a result it cannot decide: fail closed.
	if d, err := p.EvaluateResult(facts("a", "read_inbox", nil)); err == nil || d.Effect != Deny {
		t.Errorf("EvaluateResult(no result) = %s, %v; want deny and an error", d.Effect, err)
	}
}

func TestResultRuleConditionFailsClosed(t *testing.T) {
	t.Parallel()
	p := mustCompile(t, `
rules:
  - id: bad
    on: result
    match: {tools: [read_inbox]}
    when: 'result.injection.score >= 0.0 && args.missing == 1.0'
    effect: deny
`)
	f := facts("a", "read_inbox", map[string]any{})
	f.Result = &Result{}
	d, err := p.EvaluateResult(f)
	if err != nil || d.Effect != Deny || d.Err == nil {
		t.Errorf("EvaluateResult() = %+v, %v; want a deny with an error", d, err)
	}
}

func TestResultRuleCompileErrors(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, yaml, want string }{
		{"allow on results", `
rules:
  - id: x
    on: result
    effect: allow`, `a rule on results can only deny`},
		{"unknown on", `
rules:
  - id: x
    on: outcome
    effect: deny`, `unknown on "outcome": want call or result`},
		{"result in a call rule", `
rules:
  - id: x
    when: 'result.error == true'
    effect: deny`, `result is only known to rules with on: result`},
		{"shadow on results", `
rules:
  - id: x
    on: result
    mode: shadow
    effect: deny`, `mode shadow is not supported for rules on results`},
		{"misspelt field", `
rules:
  - id: x
    on: result
    when: 'result.secret.size() > 0'
    effect: deny`, `result has no field "secret"`},
		{"misspelt sensors", `
rules:
  - id: x
    when: 'sensors.arg.secrets.size() > 0'
    effect: deny`, `sensors has no field "arg"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Compile([]Source{{Name: "t.yaml", Data: []byte(tt.yaml)}}, testTools)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Compile() error = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestLintResultRulesDoNotShadowCallRules(t *testing.T) {
	t.Parallel()
	src := []Source{{Name: "t.yaml", Data: []byte(`
rules:
  - id: read
    match: {tools: [read_inbox]}
    effect: allow
  - id: withhold-everything
    on: result
    match: {tools: [read_inbox]}
    effect: deny
`)}}
	schemas := map[string]ToolSchema{}
	for name, info := range testTools {
		schemas[name] = ToolSchema{Class: info.Class}
	}
	for _, f := range Lint(src, schemas) {
		if f.Kind == KindShadowed {
			t.Errorf("Lint() = %s: a rule on results shadows a rule on calls", f)
		}
	}
}
