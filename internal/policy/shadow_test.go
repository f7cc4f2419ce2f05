package policy

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestShadow(t *testing.T) {
	tools := map[string]ToolInfo{"send_email": {Class: "external"}, "read_file": {Class: "read"}, "pay": {Class: "destructive"}}
	p, err := Compile([]Source{
		{Name: "enforce.yaml", Data: []byte(`
rules:
  - id: mail-allowed
    match: {tools: [send_email]}
    effect: allow
  - id: reads
    match: {tools: [read_file]}
    effect: allow
  - id: candidate-internal-only
    mode: shadow
    match: {tools: [send_email]}
    when: '!args.to.endsWith("@example.com")'
    effect: deny
`)},
		{Name: "candidate.yaml", Data: []byte(`
mode: shadow
rules:
  - id: candidate-small-payments
    match: {tools: [pay]}
    when: args.amount < 100.0
    effect: allow
`)},
	}, tools)
	if err != nil {
		t.Fatal(err)
	}
	if got := p.ShadowRules(); !cmp.Equal(got, []string{"candidate-internal-only", "candidate-small-payments"}) {
		t.Errorf("ShadowRules = %v", got)
	}
	for _, tc := range []struct {
		name   string
		tool   string
		args   map[string]any
		want   Effect
		shadow *ShadowDecision
	}{
		{"shadow deny would change an allow", "send_email", map[string]any{"to": "x@evil.net"}, Allow,
			&ShadowDecision{Effect: Deny, Rules: []string{"candidate-internal-only"}, Reason: `denied by rule "candidate-internal-only"`, Changed: true}},
		{"shadow rule not applying changes nothing", "send_email", map[string]any{"to": "bob@example.com"}, Allow,
			&ShadowDecision{Effect: Allow, Rules: []string{"mail-allowed"}, Reason: `allowed by rule "mail-allowed"`}},
		{"file in shadow mode: would allow what is denied by default", "pay", map[string]any{"amount": 50.0}, Deny,
			&ShadowDecision{Effect: Allow, Rules: []string{"candidate-small-payments"}, Reason: `allowed by rule "candidate-small-payments"`, Changed: true}},
		{"no shadow rule for the tool", "read_file", map[string]any{}, Allow, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := p.Evaluate(&Facts{Agent: Agent{ID: "a"}, Tool: Tool{Name: tc.tool}, Args: tc.args})
			if err != nil || d.Effect != tc.want {
				t.Fatalf("Evaluate = %s, %v; want %s (shadow rules must not enforce)", d.Effect, err, tc.want)
			}
			if diff := cmp.Diff(tc.shadow, d.Shadow); diff != "" {
				t.Errorf("Shadow (-want +got):\n%s", diff)
			}
		})
	}
	if p.Visible("a", "pay") {
		t.Errorf("a shadow allow made a tool visible")
	}
	_, err = Compile([]Source{{Name: "bad.yaml", Data: []byte("rules:\n  - id: x\n    mode: dry-run\n    effect: allow\n")}}, tools)
	if err == nil || !strings.Contains(err.Error(), `bad.yaml:3: rule "x": unknown mode "dry-run"`) {
		t.Errorf("Compile(bad mode) = %v", err)
	}
	_, err = Compile([]Source{{Name: "bad.yaml", Data: []byte("mode: [x]\nrules: []\n")}}, tools)
	if err == nil || !strings.Contains(err.Error(), "mode: want enforce or shadow") {
		t.Errorf("Compile(bad file mode) = %v", err)
	}
}
