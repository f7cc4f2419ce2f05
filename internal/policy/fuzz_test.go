package policy

import (
	"encoding/json"
	"testing"
)

// fuzzSeeds are valid and invalid policies from the table tests and a few more.
var fuzzSeeds = []string{
	``,
	`rules: []`,
	`rules: [{id: a, effect: allow}]`,
	`rules:
  - id: read-tools
    description: agents may read
    match:
      agents: [mail-assistant, "*"]
      tools: [read_inbox, "files__*"]
      classes: [read, write, external, destructive]
    when: 'args.amount <= 1000.0 && user.endsWith("@example.com")'
    effect: allow
  - id: no-external
    match: {classes: [external]}
    when: 'args.to.split("@")[1] != "example.com"'
    effect: deny
  - id: ask
    match: {tools: [pay]}
    when: 'session.calls > 3 || agent.labels.team == "finance" || now.getHours() > 18'
    effect: approve
`,
	`rules:
  - id: a
   effect: allow`,
	`rules: {id: a}`,
	`rules:
  - id: a
    effect: allow
    whn: 'true'`,
	`rules:
  - id: Bad
    effect: allow
  - effect: deny`,
	`rules:
  - id: a
    match: {tools: ["github__*", send_mial], classes: [delete], agents: []}
    effect: maybe`,
	`rules:
  - id: a
    when: 'args.amount <'
    effect: allow
  - id: b
    when: 'args.amount + 1.0'
    effect: allow`,
	`rules:
  - id: a
    match:
      agents: &agents [mail]
    effect: allow
  - id: b
    match:
      agents: *agents
    effect: allow`,
	`rules:
  - id: a
    when: 'args.list.all(a, args.list.all(b, a == b))'
    effect: deny`,
	"rules: []\n---\nrules: []\n",
}

// fuzzFacts are the calls a compiled fuzz policy is evaluated on.
var fuzzFacts = []*Facts{
	facts("mail", "read_inbox", nil),
	facts("mail-assistant", "send_email", map[string]any{"to": "x@example.com", "amount": 10.0}),
	facts("", "pay", map[string]any{"amount": "lots", "list": []any{1.0, "a", nil, map[string]any{}}}),
	facts("finance", "files__delete", map[string]any{"to": 3.0}),
	{},
}

func FuzzCompile(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, src string) {
		p, err := Compile([]Source{{Name: "fuzz.yaml", Data: []byte(src)}}, testTools)
		if err != nil {
			if p != nil {
				t.Fatalf("Compile() returned a policy and an error: %v", err)
			}
			return
		}
		for _, fs := range fuzzFacts {
			d, err := p.Evaluate(fs)
			if err != nil {
				t.Fatalf("Evaluate(%+v) error: %v", fs, err)
			}
			checkDecision(t, p, d)
			for _, tool := range []string{fs.Tool.Name, "no_such_tool"} {
				p.Visible(fs.Agent.ID, tool)
			}
		}
	})
}

func FuzzEvaluate(f *testing.F) {
	for _, s := range []string{
		`{}`,
		`{"amount": 10}`,
		`{"amount": 5000, "to": "a@example.com"}`,
		`{"amount": "10", "to": 3}`,
		`{"to": null, "list": [1, "a", null, {"b": [true]}]}`,
		`{"list": [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16]}`,
		`{"amount": 1e308, "to": "\u0000@example.com"}`,
	} {
		f.Add(s)
	}
	p, err := Compile([]Source{{Name: "fuzz.yaml", Data: []byte(`rules:
  - id: small
    match: {tools: [pay]}
    when: 'args.amount <= 1000.0'
    effect: allow
  - id: internal
    match: {tools: [pay]}
    when: 'args.to.endsWith("@example.com") && args.to.split("@").size() == 2'
    effect: approve
  - id: lists
    when: 'has(args.list) && args.list.exists(x, x == 3) && args.list.size() < 10'
    effect: deny
  - id: big
    when: 'int(args.amount) > 100000'
    effect: deny
`)}}, testTools)
	if err != nil {
		f.Fatalf("Compile() error: %v", err)
	}
	f.Fuzz(func(t *testing.T, argsJSON string) {
		var args map[string]any
		if json.Unmarshal([]byte(argsJSON), &args) != nil {
			return
		}
		d, err := p.Evaluate(facts("mail", "pay", args))
		if err != nil {
			t.Fatalf("Evaluate(%s) error: %v", argsJSON, err)
		}
		checkDecision(t, p, d)
	})
}

// checkDecision checks the invariants every decision holds.
func checkDecision(t *testing.T, p *Policy, d Decision) {
	t.Helper()
	switch d.Effect {
	case Allow, Approve:
		if len(d.Rules) == 0 || d.Err != nil {
			t.Fatalf("Evaluate() = %+v: allow and approve need rules and no error", d)
		}
	case Deny:
		if len(d.Rules) > 1 {
			t.Fatalf("Evaluate() = %+v: a deny names at most one rule", d)
		}
	default:
		t.Fatalf("Evaluate().Effect = %q, want allow, deny or approve", d.Effect)
	}
	if d.Reason == "" || d.Version != p.Version() {
		t.Fatalf("Evaluate() = %+v: want a reason and version %q", d, p.Version())
	}
}
