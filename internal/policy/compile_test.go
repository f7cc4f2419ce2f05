package policy

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// compileErrors returns the first line of every error Compile joined.
func compileErrors(err error) []string {
	if err == nil {
		return nil
	}
	var errs []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	} else {
		errs = []error{err}
	}
	lines := make([]string, 0, len(errs))
	for _, e := range errs {
		line, _, _ := strings.Cut(e.Error(), "\n")
		lines = append(lines, line)
	}
	return lines
}

func TestCompileErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		sources []Source
		tools   map[string]ToolInfo // testTools if nil
		want    []string
	}{
		{
			name:    "bad YAML",
			sources: []Source{{"p.yaml", []byte("rules:\n  - id: a\n   effect: allow\n")}},
			want:    []string{"p.yaml:1: invalid YAML: did not find expected '-' indicator"},
		},
		{
			name:    "bad YAML tab indentation",
			sources: []Source{{"p.yaml", []byte("rules:\n\t- id: a\n")}},
			want:    []string{"p.yaml:2: invalid YAML: found character that cannot start any token"},
		},
		{
			name:    "top level is a list",
			sources: []Source{{"p.yaml", []byte("- id: a\n")}},
			want:    []string{`p.yaml:1: want a mapping with key "rules", got a list`},
		},
		{
			name:    "unknown top-level key",
			sources: []Source{{"p.yaml", []byte("rules: []\nrulez: []\n")}},
			want:    []string{`p.yaml:2: unknown key "rulez"`},
		},
		{
			name:    "duplicate top-level key",
			sources: []Source{{"p.yaml", []byte("rules: []\nrules: []\n")}},
			want:    []string{`p.yaml:2: duplicate key "rules"`},
		},
		{
			name:    "rules is not a list",
			sources: []Source{{"p.yaml", []byte("rules: {id: a}\n")}},
			want:    []string{`p.yaml:1: rules: want a list, got a mapping`},
		},
		{
			name:    "two documents",
			sources: []Source{{"p.yaml", []byte("rules: []\n---\nrules: []\n")}},
			want:    []string{`p.yaml:2: more than one YAML document`},
		},
		{
			name: "unknown rule key",
			sources: []Source{{"p.yaml", []byte(`rules:
  - id: a
    effect: allow
    whn: 'true'
`)}},
			want: []string{`p.yaml:4: rule "a": unknown key "whn"`},
		},
		{
			name: "unknown match key",
			sources: []Source{{"p.yaml", []byte(`rules:
  - id: a
    match:
      tool: [pay]
    effect: allow
`)}},
			want: []string{`p.yaml:4: rule "a": match: unknown key "tool"`},
		},
		{
			name: "duplicate rule key",
			sources: []Source{{"p.yaml", []byte(`rules:
  - id: a
    effect: allow
    effect: deny
`)}},
			want: []string{`p.yaml:4: rule "a": duplicate key "effect"`},
		},
		{
			name: "missing id",
			sources: []Source{{"p.yaml", []byte(`rules:
  - id: a
    effect: allow
  - effect: deny
`)}},
			want: []string{`p.yaml:4: rule 2: missing id`},
		},
		{
			name: "bad ids",
			sources: []Source{{"p.yaml", []byte(`rules:
  - id: Bad
    effect: allow
  - id: -dash
    effect: allow
  - id: "with space"
    effect: allow
  - id: ""
    effect: allow
  - id: ` + strings.Repeat("x", 65) + `
    effect: allow
  - id: [a]
    effect: allow
`)}},
			want: []string{
				`p.yaml:2: rule 1: invalid id "Bad": want [a-z0-9][a-z0-9._-]{0,63}`,
				`p.yaml:4: rule 2: invalid id "-dash": want [a-z0-9][a-z0-9._-]{0,63}`,
				`p.yaml:6: rule 3: invalid id "with space": want [a-z0-9][a-z0-9._-]{0,63}`,
				`p.yaml:8: rule 4: invalid id "": want [a-z0-9][a-z0-9._-]{0,63}`,
				`p.yaml:10: rule 5: invalid id "` + strings.Repeat("x", 65) + `": want [a-z0-9][a-z0-9._-]{0,63}`,
				`p.yaml:12: rule 6: id: want a string, got a list`,
				`p.yaml:12: rule 6: missing id`,
			},
		},
		{
			name: "duplicate id across files",
			sources: []Source{
				{"a.yaml", []byte("rules:\n  - id: same\n    effect: allow\n")},
				{"b.yaml", []byte("rules:\n  - id: other\n    effect: allow\n  - id: same\n    effect: deny\n")},
			},
			want: []string{`b.yaml:4: rule "same": duplicate id (first defined at a.yaml:2)`},
		},
		{
			name: "missing and bad effect",
			sources: []Source{{"p.yaml", []byte(`rules:
  - id: a
  - id: b
    effect: Allow
  - id: c
    effect: shadow
`)}},
			want: []string{
				`p.yaml:2: rule "a": missing effect`,
				`p.yaml:4: rule "b": unknown effect "Allow": want allow, deny, approve or hold`,
				`p.yaml:6: rule "c": unknown effect "shadow": want allow, deny, approve or hold`,
			},
		},
		{
			name: "unknown tool",
			sources: []Source{{"policies/mail.yaml", []byte(`rules:
  - id: no-external
    match:
      tools:
        - send_email
        - send_mial
    effect: deny
`)}},
			want: []string{`policies/mail.yaml:6: rule "no-external": match.tools: unknown tool "send_mial"`},
		},
		{
			name: "pattern matching nothing",
			sources: []Source{{"p.yaml", []byte(`rules:
  - id: a
    match: {tools: ["github__*"]}
    effect: allow
`)}},
			want: []string{`p.yaml:3: rule "a": match.tools: pattern "github__*" matches no known tool`},
		},
		{
			name:    "wildcard with no tools at all",
			sources: []Source{{"p.yaml", []byte("rules:\n  - id: a\n    match: {tools: ['*']}\n    effect: allow\n")}},
			tools:   map[string]ToolInfo{},
			want:    []string{`p.yaml:3: rule "a": match.tools: pattern "*" matches no known tool`},
		},
		{
			name: "star inside a pattern",
			sources: []Source{{"p.yaml", []byte(`rules:
  - id: a
    match: {tools: ["*__read", "files*read*"]}
    effect: allow
`)}},
			want: []string{
				`p.yaml:3: rule "a": match.tools: invalid pattern "*__read": "*" may only end a pattern`,
				`p.yaml:3: rule "a": match.tools: invalid pattern "files*read*": "*" may only end a pattern`,
			},
		},
		{
			name: "unknown class",
			sources: []Source{{"p.yaml", []byte(`rules:
  - id: a
    match:
      classes: [read, delete]
    effect: allow
`)}},
			want: []string{`p.yaml:4: rule "a": match.classes: unknown class "delete": want read, write, external or destructive`},
		},
		{
			name: "bad agents",
			sources: []Source{{"p.yaml", []byte(`rules:
  - id: a
    match:
      agents: ["mail-*", ""]
    effect: allow
`)}},
			want: []string{
				`p.yaml:4: rule "a": match.agents: invalid agent "mail-*": want an agent id or "*"`,
				`p.yaml:4: rule "a": match.agents: invalid agent "": want an agent id or "*"`,
			},
		},
		{
			name: "empty and malformed lists",
			sources: []Source{{"p.yaml", []byte(`rules:
  - id: a
    match:
      agents: []
      tools: pay
      classes:
        - [read]
    effect: allow
`)}},
			want: []string{
				`p.yaml:4: rule "a": match.agents: empty list matches nothing (omit the list to match any)`,
				`p.yaml:5: rule "a": match.tools: want a list, got a scalar`,
				`p.yaml:7: rule "a": match.classes: want a string entry, got a list`,
			},
		},
		{
			name: "null values do not mean any",
			sources: []Source{{"p.yaml", []byte(`rules:
  - id: a
    match:
    effect: allow
  - id: b
    match:
      agents:
      tools: ~
      classes: null
    when:
    effect: allow
`)}},
			want: []string{
				`p.yaml:3: rule "a": match: no value (omit match to match any call)`,
				`p.yaml:7: rule "b": match.agents: no value (omit the list to match any)`,
				`p.yaml:8: rule "b": match.tools: no value (omit the list to match any)`,
				`p.yaml:9: rule "b": match.classes: no value (omit the list to match any)`,
				`p.yaml:10: rule "b": when: empty condition (omit when for a rule without condition)`,
			},
		},
		{
			name: "aliases",
			sources: []Source{{"p.yaml", []byte(`rules:
  - id: a
    match:
      agents: &agents [mail]
    effect: allow
  - id: b
    match:
      agents: *agents
    effect: allow
`)}},
			want: []string{`p.yaml:8: rule "b": match.agents: YAML aliases are not supported`},
		},
		{
			name: "CEL syntax error",
			sources: []Source{{"p.yaml", []byte(`rules:
  - id: a
    when: 'args.amount <'
    effect: allow
`)}},
			want: []string{`p.yaml:3: rule "a": condition: ERROR: <input>:1:14: Syntax error: mismatched input '<EOF>' expecting {'[', '{', '(', '.', '-', '!', 'true', 'false', 'null', NUM_FLOAT, NUM_INT, NUM_UINT, STRING, BYTES, IDENTIFIER}`},
		},
		{
			name: "undeclared variable",
			sources: []Source{{"policies/mail.yaml", []byte(`rules:
  - id: big
    when: 'arg.amount > 10'
    effect: deny
`)}},
			want: []string{`policies/mail.yaml:3: rule "big": condition: ERROR: <input>:1:1: undeclared reference to 'arg' (did you mean 'args'?)`},
		},
		{
			name: "non-bool condition",
			sources: []Source{{"p.yaml", []byte(`rules:
  - id: a
    when: 'args.amount + 1.0'
    effect: allow
  - id: b
    when: 'args.flag'
    effect: allow
  - id: c
    when: '"yes"'
    effect: allow
`)}},
			want: []string{
				`p.yaml:3: rule "a": condition: has type double, want bool`,
				`p.yaml:6: rule "b": condition: has type dyn, want bool`,
				`p.yaml:9: rule "c": condition: has type string, want bool`,
			},
		},
		{
			name: "unknown field of a map variable",
			sources: []Source{{"p.yaml", []byte(`rules:
  - id: a
    when: 'agent.idd == "x" || tool["nmae"] == "y" || has(session.call)'
    effect: allow
`)}},
			want: []string{`p.yaml:3: rule "a": condition: agent has no field "idd" (it has id, owner, purpose, environment, labels, autonomy); tool has no field "nmae" (it has name, upstream, class); session has no field "call" (it has id, calls, untrusted, private)`},
		},
		{
			name: "empty condition",
			sources: []Source{{"p.yaml", []byte(`rules:
  - id: a
    when: '  '
    effect: allow
`)}},
			want: []string{`p.yaml:3: rule "a": when: empty condition (omit when for a rule without condition)`},
		},
		{
			name: "rule is not a mapping",
			sources: []Source{{"p.yaml", []byte(`rules:
  - allow-everything
`)}},
			want: []string{`p.yaml:2: rule 1: want a mapping, got a scalar`},
		},
		{
			name: "bad source names",
			sources: []Source{
				{"", []byte("rules: []")},
				{"a\x00b", []byte("rules: []")},
				{"x.yaml", []byte("rules: []")},
				{"x.yaml", []byte("rules: []")},
			},
			want: []string{
				`source 1: empty name`,
				`source "a\x00b": name contains a NUL byte`,
				`source "x.yaml": duplicate name`,
			},
		},
		{
			name:    "bad tool registry",
			sources: nil,
			tools:   map[string]ToolInfo{"": {Class: ClassRead}, "x": {Class: "dangerous"}},
			want: []string{
				`tools: empty tool name`,
				`tools: tool "x": unknown class "dangerous"`,
			},
		},
		{
			name: "several problems in several files at once",
			sources: []Source{
				{"a.yaml", []byte(`rules:
  - id: one
    match: {tools: [nope]}
    effect: allow
  - id: two
    effect: maybe
`)},
				{"b.yaml", []byte(`rules:
  - id: one
    when: 'x'
    effect: deny
`)},
			},
			want: []string{
				`a.yaml:3: rule "one": match.tools: unknown tool "nope"`,
				`a.yaml:6: rule "two": unknown effect "maybe": want allow, deny, approve or hold`,
				`b.yaml:2: rule "one": duplicate id (first defined at a.yaml:2)`,
				`b.yaml:3: rule "one": condition: ERROR: <input>:1:1: undeclared reference to 'x'`,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tools := tt.tools
			if tools == nil {
				tools = testTools
			}
			p, err := Compile(tt.sources, tools)
			if err == nil {
				t.Fatalf("Compile() = %v, nil; want errors", p)
			}
			if p != nil {
				t.Errorf("Compile() returned a policy with errors")
			}
			if diff := cmp.Diff(tt.want, compileErrors(err)); diff != "" {
				t.Errorf("Compile() errors mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestCompileErrorFields(t *testing.T) {
	t.Parallel()
	_, err := Compile([]Source{{"p.yaml", []byte("rules:\n  - id: a\n    effect: nope\n")}}, testTools)
	var ce *CompileError
	if !errors.As(err, &ce) {
		t.Fatalf("Compile() error = %v, want a *CompileError", err)
	}
	want := &CompileError{File: "p.yaml", Line: 3, Rule: "a", Index: 1, Msg: `unknown effect "nope": want allow, deny, approve or hold`}
	if diff := cmp.Diff(want, ce); diff != "" {
		t.Errorf("Compile() error mismatch (-want +got):\n%s", diff)
	}
}

func TestCompileValid(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		sources []Source
		rules   int
	}{
		{"no sources", nil, 0},
		{"empty file", []Source{{"a.yaml", nil}}, 0},
		{"comment only", []Source{{"a.yaml", []byte("# nothing yet\n")}}, 0},
		{"null document", []Source{{"a.yaml", []byte("~\n")}}, 0},
		{"empty rules", []Source{{"a.yaml", []byte("rules: []\n")}}, 0},
		{"null rules", []Source{{"a.yaml", []byte("rules:\n")}}, 0},
		{"null description", []Source{{"a.yaml", []byte("rules:\n  - id: a\n    description:\n    effect: allow\n")}}, 1},
		{"numeric id", []Source{{"a.yaml", []byte("rules:\n  - id: 42\n    effect: allow\n")}}, 1},
		{"block condition", []Source{{"a.yaml", []byte("rules:\n  - id: a\n    when: |\n      args.amount > 1.0 &&\n      user != \"\"\n    effect: allow\n")}}, 1},
		{"same condition twice", []Source{{"a.yaml", []byte("rules:\n  - {id: a, when: 'user == \"x\"', effect: allow}\n  - {id: b, when: 'user == \"x\"', effect: deny}\n")}}, 2},
		{"tool named twice", []Source{{"a.yaml", []byte("rules:\n  - {id: a, match: {tools: [files__read, 'files__*', '*']}, effect: allow}\n")}}, 1},
		{"rules over files", []Source{
			{"a.yaml", []byte("rules:\n  - {id: a, effect: allow}\n")},
			{"b.yaml", []byte("rules:\n  - {id: b, effect: deny}\n  - {id: c, effect: approve}\n")},
		}, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p, err := Compile(tt.sources, testTools)
			if err != nil {
				t.Fatalf("Compile() error: %v", err)
			}
			if got := p.Rules(); got != tt.rules {
				t.Errorf("Compile().Rules() = %d, want %d", got, tt.rules)
			}
		})
	}
}

// TestCompileToolNamedTwice checks that a rule matching a tool through several entries
// is indexed, and so reported, once.
func TestCompileToolNamedTwice(t *testing.T) {
	t.Parallel()
	p := mustCompile(t, "rules:\n  - {id: a, match: {tools: [files__read, 'files__*', '*']}, effect: allow}\n")
	got, err := p.Evaluate(facts("mail", "files__read", nil))
	if err != nil {
		t.Fatalf("Evaluate() error: %v", err)
	}
	if diff := cmp.Diff([]string{"a"}, got.Rules); diff != "" {
		t.Errorf("Evaluate().Rules mismatch (-want +got):\n%s", diff)
	}
}
