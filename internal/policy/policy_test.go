package policy

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// testTools is the tool registry most tests compile against.
var testTools = map[string]ToolInfo{
	"read_inbox":    {Class: ClassRead},
	"send_email":    {Class: ClassExternal},
	"delete_email":  {Class: ClassDestructive},
	"files__read":   {Class: ClassRead},
	"files__write":  {Class: ClassWrite},
	"files__delete": {Class: ClassDestructive},
	"pay":           {Class: ClassExternal},
}

// mustCompile compiles one policy file named "test.yaml" against testTools.
func mustCompile(tb testing.TB, yaml string) *Policy {
	tb.Helper()
	p, err := Compile([]Source{{Name: "test.yaml", Data: []byte(yaml)}}, testTools)
	if err != nil {
		tb.Fatalf("Compile() error: %v", err)
	}
	return p
}

// facts returns facts for a call of tool by agent, with the tool's registered class.
func facts(agent, tool string, args map[string]any) *Facts {
	return &Facts{
		Agent: Agent{
			ID:          agent,
			Owner:       "alice@example.com",
			Purpose:     "triage mail",
			Environment: "prod",
			Labels:      map[string]string{"team": "support"},
		},
		User:    "bob@example.com",
		Task:    "task-1",
		Tool:    Tool{Name: tool, Upstream: "mail", Class: testTools[tool].Class},
		Args:    args,
		Session: Session{ID: "s-1", Calls: 3},
		Now:     time.Date(2025, 3, 4, 10, 30, 0, 0, time.UTC),
	}
}

func TestEvaluate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		policy  string
		facts   *Facts
		want    Decision // Version is not compared
		wantErr bool     // Decision.Err is set
	}{
		{
			name:   "no rules: default deny",
			policy: `rules: []`,
			facts:  facts("mail", "read_inbox", nil),
			want:   Decision{Effect: Deny, Reason: "no rule allows this call"},
		},
		{
			name: "allow by exact tool",
			policy: `
rules:
  - id: read
    match: {tools: [read_inbox]}
    effect: allow`,
			facts: facts("mail", "read_inbox", nil),
			want:  Decision{Effect: Allow, Rules: []string{"read"}, Reason: `allowed by rule "read"`},
		},
		{
			name: "allow for another tool: default deny",
			policy: `
rules:
  - id: read
    match: {tools: [read_inbox]}
    effect: allow`,
			facts: facts("mail", "send_email", nil),
			want:  Decision{Effect: Deny, Reason: "no rule allows this call"},
		},
		{
			name: "deny overrides allow and approve",
			policy: `
rules:
  - id: a
    effect: allow
  - id: b
    effect: approve
  - id: no-send
    match: {tools: [send_email]}
    effect: deny
  - id: d
    effect: deny`,
			facts: facts("mail", "send_email", nil),
			want:  Decision{Effect: Deny, Rules: []string{"no-send"}, Reason: `denied by rule "no-send"`},
		},
		{
			name: "approve overrides allow; rules lists every applying approve rule",
			policy: `
rules:
  - id: a
    effect: allow
  - id: b
    match: {classes: [external]}
    effect: approve
  - id: c
    match: {tools: [send_email]}
    effect: approve
  - id: d
    match: {tools: [read_inbox]}
    effect: approve`,
			facts: facts("mail", "send_email", nil),
			want:  Decision{Effect: Approve, Rules: []string{"b", "c"}, Reason: `approval required by rule "b"`},
		},
		{
			name: "several allow rules, in bundle order",
			policy: `
rules:
  - id: z-any
    effect: allow
  - id: a-read
    match: {classes: [read]}
    effect: allow`,
			facts: facts("mail", "read_inbox", nil),
			want:  Decision{Effect: Allow, Rules: []string{"z-any", "a-read"}, Reason: `allowed by rule "z-any"`},
		},
		{
			name: "wildcard tool",
			policy: `
rules:
  - id: all
    match: {tools: ["*"]}
    effect: allow`,
			facts: facts("mail", "pay", nil),
			want:  Decision{Effect: Allow, Rules: []string{"all"}, Reason: `allowed by rule "all"`},
		},
		{
			name: "prefix pattern matches",
			policy: `
rules:
  - id: files
    match: {tools: ["files__*"]}
    effect: allow`,
			facts: facts("mail", "files__write", nil),
			want:  Decision{Effect: Allow, Rules: []string{"files"}, Reason: `allowed by rule "files"`},
		},
		{
			name: "prefix pattern does not match other tools",
			policy: `
rules:
  - id: files
    match: {tools: ["files__*"]}
    effect: allow`,
			facts: facts("mail", "read_inbox", nil),
			want:  Decision{Effect: Deny, Reason: "no rule allows this call"},
		},
		{
			name: "class match",
			policy: `
rules:
  - id: no-destructive
    match: {classes: [destructive]}
    effect: deny
  - id: all
    effect: allow`,
			facts: facts("mail", "files__delete", nil),
			want:  Decision{Effect: Deny, Rules: []string{"no-destructive"}, Reason: `denied by rule "no-destructive"`},
		},
		{
			name: "tools and classes are ANDed",
			policy: `
rules:
  - id: files-read
    match: {tools: ["files__*"], classes: [read]}
    effect: allow`,
			facts: facts("mail", "files__write", nil),
			want:  Decision{Effect: Deny, Reason: "no rule allows this call"},
		},
		{
			name: "agent filter matches",
			policy: `
rules:
  - id: mail-only
    match: {agents: [mail, other]}
    effect: allow`,
			facts: facts("mail", "read_inbox", nil),
			want:  Decision{Effect: Allow, Rules: []string{"mail-only"}, Reason: `allowed by rule "mail-only"`},
		},
		{
			name: "agent filter does not match",
			policy: `
rules:
  - id: mail-only
    match: {agents: [mail, other]}
    effect: allow`,
			facts: facts("intruder", "read_inbox", nil),
			want:  Decision{Effect: Deny, Reason: "no rule allows this call"},
		},
		{
			name: "agent wildcard",
			policy: `
rules:
  - id: anyone
    match: {agents: [mail, "*"]}
    effect: allow`,
			facts: facts("intruder", "read_inbox", nil),
			want:  Decision{Effect: Allow, Rules: []string{"anyone"}, Reason: `allowed by rule "anyone"`},
		},
		{
			name: "long agent list",
			policy: `
rules:
  - id: many
    match: {agents: [a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, mail]}
    effect: allow`,
			facts: facts("mail", "read_inbox", nil),
			want:  Decision{Effect: Allow, Rules: []string{"many"}, Reason: `allowed by rule "many"`},
		},
		{
			name: "condition true",
			policy: `
rules:
  - id: small
    match: {tools: [pay]}
    when: 'args.amount <= 1000.0 && user.endsWith("@example.com")'
    effect: allow`,
			facts: facts("mail", "pay", map[string]any{"amount": 10.0}),
			want:  Decision{Effect: Allow, Rules: []string{"small"}, Reason: `allowed by rule "small"`},
		},
		{
			name: "condition false",
			policy: `
rules:
  - id: small
    match: {tools: [pay]}
    when: 'args.amount <= 1000.0'
    effect: allow`,
			facts: facts("mail", "pay", map[string]any{"amount": 5000.0}),
			want:  Decision{Effect: Deny, Reason: "no rule allows this call"},
		},
		{
			name: "condition false on deny rule lets allow win",
			policy: `
rules:
  - id: big
    match: {tools: [pay]}
    when: 'args.amount > 1000'
    effect: deny
  - id: pay
    match: {tools: [pay]}
    effect: allow`,
			facts: facts("mail", "pay", map[string]any{"amount": 10.0}),
			want:  Decision{Effect: Allow, Rules: []string{"pay"}, Reason: `allowed by rule "pay"`},
		},
		{
			name: "condition over every variable",
			policy: `
rules:
  - id: everything
    when: >-
      agent.id == "mail" && agent.owner == "alice@example.com" &&
      agent.purpose.contains("mail") && agent.environment == "prod" &&
      agent.labels.team == "support" && user == "bob@example.com" && task == "task-1" &&
      tool.name == "read_inbox" && tool.upstream == "mail" && tool.class == "read" &&
      session.id == "s-1" && session.calls < 10 &&
      now > timestamp("2025-01-01T00:00:00Z") && now.getHours() == 10 &&
      args.folder == "INBOX" && args.limit == 20 && args.tags.exists(t, t == "x") &&
      args.nested.deep == true && args.none == null
    effect: allow`,
			facts: facts("mail", "read_inbox", map[string]any{
				"folder": "INBOX",
				"limit":  20.0,
				"tags":   []any{"y", "x"},
				"nested": map[string]any{"deep": true},
				"none":   nil,
			}),
			want: Decision{Effect: Allow, Rules: []string{"everything"}, Reason: `allowed by rule "everything"`},
		},
		{
			name: "whole map variables",
			policy: `
rules:
  - id: maps
    when: >-
      agent.size() == 6 && "labels" in agent && tool == {"name": "read_inbox", "upstream": "mail", "class": "read"} &&
      session["calls"] == 3 && agent.labels.size() == 1 && "team" in agent.labels &&
      has(agent.labels.team) && !has(agent.labels.nope) && has(args.x) && !has(args.y)
    effect: allow`,
			facts: facts("mail", "read_inbox", map[string]any{"x": 1.0}),
			want:  Decision{Effect: Allow, Rules: []string{"maps"}, Reason: `allowed by rule "maps"`},
		},
		{
			name: "string extensions",
			policy: `
rules:
  - id: ext
    when: 'args.to.lowerAscii().split("@")[1] == "example.com" && "a,b".split(",").size() == 2'
    effect: allow`,
			facts: facts("mail", "send_email", map[string]any{"to": "Carol@EXAMPLE.com"}),
			want:  Decision{Effect: Allow, Rules: []string{"ext"}, Reason: `allowed by rule "ext"`},
		},
		{
			name: "missing argument on allow rule: deny naming the rule",
			policy: `
rules:
  - id: small
    match: {tools: [pay]}
    when: 'args.amount <= 1000.0'
    effect: allow`,
			facts:   facts("mail", "pay", map[string]any{}),
			want:    Decision{Effect: Deny, Rules: []string{"small"}, Reason: `condition of rule "small" could not be evaluated`},
			wantErr: true,
		},
		{
			name: "nil args: deny naming the rule",
			policy: `
rules:
  - id: small
    when: 'args.amount <= 1000.0'
    effect: allow`,
			facts:   facts("mail", "pay", nil),
			want:    Decision{Effect: Deny, Rules: []string{"small"}, Reason: `condition of rule "small" could not be evaluated`},
			wantErr: true,
		},
		{
			name: "failing allow condition denies even when approve applies",
			policy: `
rules:
  - id: ask
    effect: approve
  - id: small
    when: 'args.amount <= 1000.0'
    effect: allow`,
			facts:   facts("mail", "pay", nil),
			want:    Decision{Effect: Deny, Rules: []string{"small"}, Reason: `condition of rule "small" could not be evaluated`},
			wantErr: true,
		},
		{
			name: "failing deny condition denies",
			policy: `
rules:
  - id: all
    effect: allow
  - id: broken
    when: 'int(args.n) > 3'
    effect: deny`,
			facts:   facts("mail", "pay", map[string]any{"n": "not a number"}),
			want:    Decision{Effect: Deny, Rules: []string{"broken"}, Reason: `condition of rule "broken" could not be evaluated`},
			wantErr: true,
		},
		{
			name: "applying deny rule stops before a later failing condition",
			policy: `
rules:
  - id: no
    effect: deny
  - id: broken
    when: 'args.missing == true'
    effect: deny`,
			facts: facts("mail", "pay", nil),
			want:  Decision{Effect: Deny, Rules: []string{"no"}, Reason: `denied by rule "no"`},
		},
		{
			name: "failing condition of a rule for another agent is not evaluated",
			policy: `
rules:
  - id: other
    match: {agents: [other]}
    when: 'args.missing == 1'
    effect: allow
  - id: all
    effect: allow`,
			facts: facts("mail", "pay", nil),
			want:  Decision{Effect: Allow, Rules: []string{"all"}, Reason: `allowed by rule "all"`},
		},
		{
			name: "cost limit exceeded: deny naming the rule",
			policy: `
rules:
  - id: expensive
    when: 'args.list.all(a, args.list.all(b, args.list.all(c, a + b + c >= 0.0)))'
    effect: allow`,
			facts:   facts("mail", "pay", map[string]any{"list": make1000()}),
			want:    Decision{Effect: Deny, Rules: []string{"expensive"}, Reason: `condition of rule "expensive" could not be evaluated`},
			wantErr: true,
		},
		{
			name: "unknown tool: default deny",
			policy: `
rules:
  - id: all
    effect: allow`,
			facts: facts("mail", "no_such_tool", nil),
			want:  Decision{Effect: Deny, Reason: "no rule allows this call"},
		},
		{
			name: "tool class differs from compiled class: deny",
			policy: `
rules:
  - id: all
    effect: allow`,
			facts: func() *Facts {
				f := facts("mail", "read_inbox", nil)
				f.Tool.Class = ClassDestructive
				return f
			}(),
			want:    Decision{Effect: Deny, Reason: "tool class differs from the class the policy was compiled with"},
			wantErr: true,
		},
		{
			name: "empty tool class uses the compiled class",
			policy: `
rules:
  - id: reads
    match: {classes: [read]}
    effect: allow`,
			facts: func() *Facts {
				f := facts("mail", "read_inbox", nil)
				f.Tool.Class = ""
				return f
			}(),
			want: Decision{Effect: Allow, Rules: []string{"reads"}, Reason: `allowed by rule "reads"`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := mustCompile(t, tt.policy)
			got, err := p.Evaluate(tt.facts)
			if err != nil {
				t.Fatalf("Evaluate() error: %v", err)
			}
			if got.Version != p.Version() {
				t.Errorf("Evaluate().Version = %q, want %q", got.Version, p.Version())
			}
			if (got.Err != nil) != tt.wantErr {
				t.Errorf("Evaluate().Err = %v, want error: %t", got.Err, tt.wantErr)
			}
			opts := cmpopts.IgnoreFields(Decision{}, "Version", "Err")
			if diff := cmp.Diff(tt.want, got, opts, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("Evaluate() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func make1000() []any {
	l := make([]any, 1000)
	for i := range l {
		l[i] = float64(i)
	}
	return l
}

func TestEvaluateConditionErrorNamesRule(t *testing.T) {
	t.Parallel()
	p := mustCompile(t, `
rules:
  - id: small
    when: 'args.amount <= 1000.0'
    effect: allow`)
	got, err := p.Evaluate(facts("mail", "pay", map[string]any{}))
	if err != nil {
		t.Fatalf("Evaluate() error: %v", err)
	}
	if got.Err == nil || !strings.Contains(got.Err.Error(), `rule "small": condition: no such key: amount`) {
		t.Errorf("Evaluate().Err = %v, want it to name the rule and the missing key", got.Err)
	}
}

func TestEvaluateCannotDecide(t *testing.T) {
	t.Parallel()
	p := mustCompile(t, `rules: [{id: all, effect: allow}]`)
	got, err := p.Evaluate(nil)
	if !errors.Is(err, ErrNoFacts) {
		t.Errorf("Evaluate(nil) error = %v, want %v", err, ErrNoFacts)
	}
	if got.Effect != Deny {
		t.Errorf("Evaluate(nil).Effect = %q, want %q", got.Effect, Deny)
	}

	var nilPolicy *Policy
	got, err = nilPolicy.Evaluate(facts("mail", "read_inbox", nil))
	if !errors.Is(err, ErrNoPolicy) {
		t.Errorf("(*Policy)(nil).Evaluate() error = %v, want %v", err, ErrNoPolicy)
	}
	if got.Effect != Deny {
		t.Errorf("(*Policy)(nil).Evaluate().Effect = %q, want %q", got.Effect, Deny)
	}
}

func TestEvaluateRulesBelongToCaller(t *testing.T) {
	t.Parallel()
	p := mustCompile(t, `rules: [{id: all, effect: allow}, {id: no, match: {tools: [pay]}, effect: deny}]`)
	for _, tool := range []string{"read_inbox", "pay"} {
		d, _ := p.Evaluate(facts("mail", tool, nil))
		d.Rules[0] = "changed"
		d2, _ := p.Evaluate(facts("mail", tool, nil))
		if d2.Rules[0] == "changed" {
			t.Errorf("Evaluate(%q): changing Decision.Rules changed the policy", tool)
		}
	}
}

func TestEvaluateConcurrent(t *testing.T) {
	t.Parallel()
	p := mustCompile(t, `
rules:
  - id: small
    when: 'args.amount <= 1000.0 && agent.labels.team == "support"'
    effect: allow
  - id: big
    when: 'args.amount > 5000.0'
    effect: deny`)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for j := range 200 {
				amount := float64((i*200 + j) * 10)
				d, err := p.Evaluate(facts("mail", "pay", map[string]any{"amount": amount}))
				want := Allow
				switch {
				case amount > 5000:
					want = Deny
				case amount > 1000:
					want = Deny
				}
				if err != nil || d.Effect != want {
					t.Errorf("Evaluate(amount=%v) = %v, %v, want %v", amount, d.Effect, err, want)
					return
				}
			}
		})
	}
	wg.Wait()
}

func TestVersion(t *testing.T) {
	t.Parallel()
	a := []byte("rules: [{id: a, effect: allow}]\n")
	b := []byte("rules: [{id: b, effect: deny}]\n")
	version := func(srcs ...Source) string {
		t.Helper()
		p, err := Compile(srcs, testTools)
		if err != nil {
			t.Fatalf("Compile() error: %v", err)
		}
		return p.Version()
	}
	base := version(Source{"a.yaml", a}, Source{"b.yaml", b})
	if !strings.HasPrefix(base, "sha256:") || len(base) != len("sha256:")+64 {
		t.Fatalf("Version() = %q, want sha256: and 64 hex digits", base)
	}
	if again := version(Source{"a.yaml", a}, Source{"b.yaml", b}); again != base {
		t.Errorf("Version() of the same sources = %q, then %q", base, again)
	}
	changed := map[string]string{
		"reordered": version(Source{"b.yaml", b}, Source{"a.yaml", a}),
		"renamed":   version(Source{"a2.yaml", a}, Source{"b.yaml", b}),
		"edited":    version(Source{"a.yaml", append(a, '#')}, Source{"b.yaml", b}),
		"moved":     version(Source{"a.yaml", append(a, '#')}, Source{"b.yaml", append([]byte("#\n"), b...)}),
		"dropped":   version(Source{"a.yaml", a}),
	}
	for name, v := range changed {
		if v == base {
			t.Errorf("Version() after the sources were %s = %q, want it to change", name, v)
		}
	}

	// The documented construction, spelled out: name, NUL, big-endian uint64 length, data.
	h := sha256.New()
	for _, s := range []Source{{"a.yaml", a}, {"b.yaml", b}} {
		h.Write([]byte(s.Name))
		h.Write([]byte{0})
		h.Write(binary.BigEndian.AppendUint64(nil, uint64(len(s.Data))))
		h.Write(s.Data)
	}
	if want := "sha256:" + hex.EncodeToString(h.Sum(nil)); base != want {
		t.Errorf("Version() = %q, want %q", base, want)
	}
}

func TestRules(t *testing.T) {
	t.Parallel()
	p := mustCompile(t, `rules: [{id: a, effect: allow}, {id: b, effect: deny}]`)
	if got := p.Rules(); got != 2 {
		t.Errorf("Rules() = %d, want 2", got)
	}
}

func TestVisible(t *testing.T) {
	t.Parallel()
	p := mustCompile(t, `
rules:
  - id: mail-reads
    match: {agents: [mail], classes: [read]}
    effect: allow
  - id: mail-send
    match: {agents: [mail], tools: [send_email]}
    when: 'args.to.endsWith("@example.com")'
    effect: approve
  - id: no-files-delete
    match: {tools: [files__delete]}
    effect: deny
  - id: big-pay
    match: {tools: [pay]}
    when: 'args.amount > 100.0'
    effect: deny
  - id: pay
    match: {agents: [finance], tools: [pay, files__delete]}
    effect: allow
  - id: files
    match: {tools: ["files__*"]}
    effect: allow`)
	tests := []struct {
		agent, tool string
		want        bool
	}{
		{"mail", "read_inbox", true},
		{"mail", "files__read", true},
		{"other", "read_inbox", false},          // no rule for this agent
		{"mail", "send_email", true},            // approve rule, condition ignored
		{"other", "send_email", false},          // approve rule names another agent
		{"finance", "files__delete", false},     // unconditional deny wins
		{"finance", "pay", true},                // the deny has a condition
		{"mail", "pay", false},                  // only a conditional deny
		{"mail", "delete_email", false},         // nothing
		{"mail", "no_such_tool", false},         // unknown tool
		{"other", "files__write", true},         // pattern, any agent
		{"", "files__write", true},              // empty agent id, rule for any agent
		{"mail", "", false},                     // empty tool
		{"mail-assistant", "read_inbox", false}, // agent ids are not prefixes
		{"MAIL", "read_inbox", false},           // agent ids are case sensitive
		{"mail", "READ_INBOX", false},           // tool names are case sensitive
		{"mail", "files__", false},              // not a tool
		{"mail", "files__*", false},             // patterns are not tool names
		{"finance", "delete_email", false},      // no rule names it
		{"finance", "files__read", true},        // pattern rule
		{"finance", "files__write", true},       // pattern rule
		{"mail", "files__delete", false},        // unconditional deny wins
		{"other", "pay", false},                 // pay rule names finance only
		{"finance", "send_email", false},        // approve rule names mail only
	}
	for _, tt := range tests {
		if got := p.Visible(tt.agent, tt.tool); got != tt.want {
			t.Errorf("Visible(%q, %q) = %t, want %t", tt.agent, tt.tool, got, tt.want)
		}
	}
	var nilPolicy *Policy
	if nilPolicy.Visible("mail", "read_inbox") {
		t.Errorf("(*Policy)(nil).Visible() = true, want false")
	}
}

func TestIdentityFacts(t *testing.T) {
	tools := map[string]ToolInfo{"pay": {Class: "destructive"}}
	p, err := Compile([]Source{{Name: "id.yaml", Data: []byte(`
rules:
  - id: finance-users
    match: {tools: [pay]}
    when: '"finance" in groups && agent.autonomy >= 2'
    effect: allow
  - id: no-deep-chains
    match: {tools: [pay]}
    when: size(chain) > 2
    effect: deny
`)}}, tools)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		groups []string
		chain  []string
		auto   int
		want   Effect
	}{
		{"finance user, autonomous agent", []string{"staff", "finance"}, nil, 2, Allow},
		{"not in finance", []string{"staff"}, nil, 3, Deny},
		{"agent not autonomous enough", []string{"finance"}, nil, 1, Deny},
		{"delegated twice is fine", []string{"finance"}, []string{"a", "b"}, 2, Allow},
		{"delegated three deep", []string{"finance"}, []string{"a", "b", "c"}, 2, Deny},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := p.Evaluate(&Facts{Agent: Agent{ID: "x", Autonomy: tc.auto}, UserGroups: tc.groups, Chain: tc.chain,
				Tool: Tool{Name: "pay", Class: "destructive"}, Args: map[string]any{}})
			if err != nil || d.Effect != tc.want {
				t.Errorf("Evaluate = %v (%s), %v; want %s", d.Effect, d.Reason, err, tc.want)
			}
		})
	}
}
