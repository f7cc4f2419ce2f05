package policy

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// lintTools have one class without tools (write) and one tool whose arguments are unknown.
var lintTools = map[string]ToolSchema{
	"read_file":   {Class: ClassRead, Args: []string{"path"}},
	"list_dir":    {Class: ClassRead, Args: []string{"path", "depth"}},
	"send_email":  {Class: ClassExternal, Args: []string{"to", "subject", "body"}},
	"pay":         {Class: ClassExternal, Args: []string{"amount", "currency"}},
	"delete_file": {Class: ClassDestructive, Args: []string{"path"}},
	"mystery":     {Class: ClassDestructive},
}

// brief is a finding without its message: "line rule kind".
func brief(fs []Finding) []string {
	var out []string
	for _, f := range fs {
		out = append(out, fmt.Sprintf("%d %s %s", f.Line, f.Rule, f.Kind))
	}
	return out
}

func TestLint(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		policy string
		want   []string // "line rule kind"; nil: no findings
	}{
		// compile
		{"compile/missing effect", `rules:
  - id: a
    match: {tools: [pay]}
`, []string{"2 a compile"}},
		{"compile/near miss", `rules:
  - id: a
    match: {tools: [pay]}
    effect: allow
`, nil},
		// type
		{"type/int condition", `rules:
  - id: a
    match: {tools: [pay]}
    when: 'args.amount + 1.0'
    effect: deny
`, []string{"4 a type"}},
		{"type/near miss bool condition", `rules:
  - id: a
    match: {tools: [pay]}
    when: 'args.amount + 1.0 > 2.0'
    effect: deny
`, nil},
		// unknown-tool
		{"unknown-tool/name", `rules:
  - id: a
    match:
      tools: [pay, send_mial]
    effect: allow
`, []string{"4 a unknown-tool"}},
		{"unknown-tool/pattern", `rules:
  - id: a
    match:
      tools:
        - "github__*"
    effect: allow
`, []string{"5 a unknown-tool"}},
		{"unknown-tool/near miss pattern", `rules:
  - id: a
    match:
      tools: ["send_*", pay]
    effect: allow
`, nil},
		// unknown-argument
		{"unknown-argument/select", `rules:
  - id: a
    match: {tools: [send_email]}
    when: 'args.too.endsWith("@example.com")'
    effect: allow
`, []string{"4 a unknown-argument"}},
		{"unknown-argument/index, has and in", `rules:
  - id: a
    match: {tools: [send_email, pay]}
    when: 'has(args.too) || args["amout"] > 1.0 || "curency" in args'
    effect: allow
`, []string{"4 a unknown-argument", "4 a unknown-argument", "4 a unknown-argument"}},
		{"unknown-argument/every tool of the rule", `rules:
  - id: a
    when: 'args.amount > 1.0 && args.nope == 1.0'
    match: {classes: [external, read]}
    effect: allow
`, []string{"3 a unknown-argument"}},
		{"unknown-argument/near miss arg on one of several tools", `rules:
  - id: a
    match: {tools: [send_email, pay]}
    when: 'has(args.amount) && args.amount > 1.0 || args["to"] == "x"'
    effect: approve
`, nil},
		{"unknown-argument/near miss unknown schema", `rules:
  - id: a
    match: {classes: [destructive]}
    when: 'args.anything == 1.0'
    effect: deny
`, nil},
		{"unknown-argument/near miss comprehension variable", `rules:
  - id: a
    match: {tools: [pay]}
    when: '[{"x": 1}].exists(args, args.x == 1) && args.amount > 1.0'
    effect: allow
`, nil},
		// never-matches
		{"never-matches/class without tools", `rules:
  - id: a
    match:
      classes: [write]
    effect: allow
`, []string{"4 a never-matches"}},
		{"never-matches/tools of another class", `rules:
  - id: a
    match:
      tools: [pay, send_email]
      classes: [read]
    effect: allow
`, []string{"5 a never-matches"}},
		{"never-matches/false", `rules:
  - id: a
    when: 'false'
    effect: allow
  - id: b
    when: '1 == 2 || user == "x" && false'
    effect: deny
  - id: c
    match: {tools: [pay]}
    when: 'args.amount > 1.0 && false'
    effect: allow
  - id: d
    when: 'user == "" ? "a".startsWith("b") : !true'
    effect: allow
`, []string{"3 a never-matches", "6 b never-matches", "10 c never-matches", "13 d never-matches"}},
		{"never-matches/near miss", `rules:
  - id: a
    match:
      classes: [write, read]
    when: 'user == "x" || false'
    effect: allow
  - id: b
    when: 'true'
    effect: deny
    match: {agents: [other]}
  - id: c
    when: 'user == "" ? false : true'
    effect: allow
    match: {agents: [another]}
`, nil},
		// shadowed
		{"shadowed/unconditional deny before and after", `rules:
  - id: early
    match: {tools: [pay]}
    effect: allow
  - id: block
    effect: deny
  - id: late
    match: {tools: [send_email], agents: [mail]}
    when: 'args.to == "x"'
    effect: approve
`, []string{"2 early shadowed", "7 late shadowed"}},
		{"shadowed/near miss conditional deny", `rules:
  - id: block
    when: 'user == ""'
    effect: deny
  - id: a
    match: {tools: [pay]}
    effect: allow
`, nil},
		{"shadowed/near miss narrower deny", `rules:
  - id: block-mail
    match: {agents: [mail], tools: [pay]}
    effect: deny
  - id: any-agent
    match: {tools: [pay]}
    effect: allow
  - id: more-tools
    match: {agents: [mail], tools: [pay, send_email]}
    effect: allow
`, nil},
		{"shadowed/approve over allow, constant true deny", `rules:
  - id: ask
    match: {classes: [external]}
    effect: approve
  - id: a
    match: {tools: [pay], agents: [x, y]}
    effect: allow
  - id: no
    match: {agents: [x, y, z]}
    when: 'true || args.nope'
    effect: deny
  - id: b
    match: {tools: [read_file], agents: [y]}
    effect: approve
`, []string{"5 a shadowed", "12 b shadowed"}},
		{"shadowed/approve over allow but not over approve", `rules:
  - id: ask
    effect: approve
  - id: ask-pay
    match: {tools: [pay]}
    effect: approve
  - id: allow-all
    effect: allow
  - id: allow-pay
    match: {tools: [pay]}
    when: 'args.amount < 10.0'
    effect: allow
  - id: ok
    match: {tools: [pay]}
    effect: allow
`, []string{"7 allow-all shadowed", "9 allow-pay shadowed", "13 ok shadowed"}},
		{"shadowed/earlier deny over later deny", `rules:
  - id: block
    match: {tools: [pay]}
    effect: deny
  - id: later
    match: {tools: [pay], agents: [a]}
    when: 'args.amount > 1.0'
    effect: deny
`, []string{"5 later shadowed"}},
		{"shadowed/near miss later deny over earlier deny", `rules:
  - id: first
    match: {tools: [pay], agents: [a]}
    when: 'args.amount > 1.0'
    effect: deny
  - id: block
    match: {tools: [pay]}
    effect: deny
`, nil},
		{"shadowed/duplicate", `rules:
  - id: a
    match: {tools: [pay], agents: [x, y]}
    when: 'args.amount < 10.0'
    effect: allow
  - id: b
    match: {agents: [y, x], classes: [external], tools: [pay, read_file]}
    when: 'args.amount<10.0'
    effect: allow
`, []string{"6 b shadowed"}},
		{"shadowed/near miss different condition or effect", `rules:
  - id: a
    match: {tools: [pay]}
    when: 'args.amount < 10.0'
    effect: allow
  - id: b
    match: {tools: [pay]}
    when: 'args.amount < 11.0'
    effect: allow
  - id: c
    match: {tools: [pay]}
    when: 'args.amount < 10.0'
    effect: approve
`, nil},
		{"shadowed/shadow rule under enforcing deny", `rules:
  - id: block
    match: {tools: [pay]}
    effect: deny
  - id: try
    match: {tools: [pay]}
    effect: allow
    mode: shadow
`, []string{"5 try shadowed"}},
		{"shadowed/shadow rule under shadow deny", `rules:
  - id: block
    match: {tools: [pay]}
    effect: deny
    mode: shadow
  - id: try
    match: {tools: [pay]}
    effect: allow
    mode: shadow
`, []string{"6 try shadowed"}},
		{"shadowed/near miss enforcing rule under shadow deny", `rules:
  - id: block
    match: {tools: [pay]}
    effect: deny
    mode: shadow
  - id: ok
    match: {tools: [pay]}
    effect: allow
`, nil},
		{"shadowed/near miss duplicate in another mode", `rules:
  - id: ok
    match: {tools: [pay]}
    effect: allow
  - id: ok2
    match: {tools: [pay]}
    effect: allow
    mode: shadow
`, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := Lint([]Source{{Name: "p.yaml", Data: []byte(tc.policy)}}, lintTools)
			if diff := cmp.Diff(tc.want, brief(got)); diff != "" {
				t.Errorf("Lint() findings (-want +got):\n%s\nall: %v", diff, got)
			}
			for _, f := range got {
				if f.File != "p.yaml" || f.Message == "" {
					t.Errorf("Lint() finding %+v: want file p.yaml and a message", f)
				}
			}
			// Lint reports a compile problem exactly when Compile fails.
			_, err := Compile([]Source{{Name: "p.yaml", Data: []byte(tc.policy)}}, toolInfos(lintTools))
			if hasCompileKind(got) != (err != nil) {
				t.Errorf("Lint() = %v, but Compile() error = %v", got, err)
			}
		})
	}
}

func toolInfos(tools map[string]ToolSchema) map[string]ToolInfo {
	out := make(map[string]ToolInfo, len(tools))
	for n, t := range tools {
		out[n] = ToolInfo{Class: t.Class}
	}
	return out
}

func hasCompileKind(fs []Finding) bool {
	return slices.ContainsFunc(fs, func(f Finding) bool {
		return f.Kind == KindCompile || f.Kind == KindType || f.Kind == KindUnknownTool
	})
}

// TestLintBundle checks that every problem of a bundle is reported at once, in file and
// line order, and that a file that does not parse hides nothing in the others.
func TestLintBundle(t *testing.T) {
	t.Parallel()
	sources := []Source{
		{Name: "b.yaml", Data: []byte(`rules:
  - id: block-pay
    match: {tools: [pay]}
    effect: deny
  - id: typo
    match: {tools: [send_email]}
    when: 'args.subjet == ""'
    effect: allow
  - effect: allow
    match: {tools: [pay]}
`)},
		{Name: "broken.yaml", Data: []byte("rules:\n  - id: a\n   effect: allow\n")},
		{Name: "a.yaml", Data: []byte(`rules:
  - id: pay-small
    match: {tools: [pay]}
    when: 'args.amount < 10.0'
    effect: allow
  - id: never
    match: {classes: [write]}
    effect: allow
  - id: typed
    when: '"x"'
    effect: allow
  - id: block-pay
    match: {tools: [paye]}
    effect: deny
`)},
	}
	bad := map[string]ToolSchema{"pay": lintTools["pay"], "send_email": lintTools["send_email"], "oops": {Class: "safe"}}
	var got []string
	for _, f := range Lint(sources, bad) {
		got = append(got, f.String())
	}
	want := []string{
		`compile: tools: tool "oops": unknown class "safe"`,
		`b.yaml:7: rule "typo": unknown-argument: condition reads argument "subjet", but tool "send_email" has no such argument`,
		`b.yaml:9: compile: rule 3: missing id`,
		`broken.yaml:1: compile: invalid YAML: did not find expected '-' indicator`,
		`a.yaml:2: rule "pay-small": shadowed: never decides: rule "block-pay" (b.yaml:2) denies every call this rule can match, without a condition, and deny overrides allow`,
		`a.yaml:7: rule "never": never-matches: match.classes: no known tool has class write`,
		`a.yaml:10: rule "typed": type: condition: has type string, want bool`,
		`a.yaml:12: rule "block-pay": compile: duplicate id (first defined at b.yaml:2)`,
		`a.yaml:13: rule "block-pay": unknown-tool: match.tools: unknown tool "paye"`,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Lint() (-want +got):\n%s", diff)
	}
}

func TestFindingString(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		f    Finding
		want string
	}{
		{Finding{File: "p.yaml", Line: 3, Rule: "a", Kind: KindShadowed, Message: "m"}, `p.yaml:3: rule "a": shadowed: m`},
		{Finding{File: "p.yaml", Kind: KindCompile, Message: "m"}, `p.yaml: compile: m`},
		{Finding{Kind: KindCompile, Message: "m"}, `compile: m`},
	} {
		if got := tc.f.String(); got != tc.want {
			t.Errorf("%+v.String() = %q, want %q", tc.f, got, tc.want)
		}
	}
}

func TestArgsRead(t *testing.T) {
	t.Parallel()
	env, err := newEnv()
	if err != nil {
		t.Fatal(err)
	}
	for src, want := range map[string][]string{
		`args.a == 1 && has(args.b) && args["c"] == 2 && "d" in args`: {"a", "b", "c", "d"},
		`args.x.y == 1 && args[user] == 2`:                            {"x"},
		`args.all(k, k != "z") && [args].exists(a, a.q == 1)`:         nil,
		`[{"v": 1}].map(args, args.v).size() == 1 && args.w == 1`:     {"w"},
		`{"k": args.m}.k == 1 && [args.n][0] == 1`:                    {"m", "n"},
	} {
		a, iss := env.env.Compile(src)
		if iss != nil && iss.Err() != nil {
			t.Fatalf("Compile(%q): %v", src, iss.Err())
		}
		got := argsRead(a.NativeRep().Expr())
		if diff := cmp.Diff(want, got, cmpEmpty); diff != "" {
			t.Errorf("argsRead(%q) (-want +got):\n%s", src, diff)
		}
	}
}

var cmpEmpty = cmp.Transformer("empty", func(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	return s
})

func FuzzLint(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add(s)
	}
	f.Add(`rules:
  - id: block
    effect: deny
  - id: a
    match: {tools: [pay], classes: [read]}
    when: 'args.nope == 1.0 && false'
    effect: allow
    mode: shadow
  - id: b
    match: {agents: [x]}
    when: '[1].exists(args, args.x == 1) || "z" in args'
    effect: approve
`)
	other := Source{Name: "other.yaml", Data: []byte(`rules:
  - id: other
    match: {tools: [pay]}
    effect: allow
`)}
	f.Fuzz(func(t *testing.T, src string) {
		sources := []Source{{Name: "fuzz.yaml", Data: []byte(src)}, other}
		got := Lint(sources, lintTools)
		kinds := []string{KindCompile, KindType, KindUnknownTool, KindUnknownArgument, KindNeverMatches, KindShadowed}
		for i, fd := range got {
			if !slices.Contains(kinds, fd.Kind) || fd.Message == "" {
				t.Fatalf("Lint() finding %+v: bad kind or no message", fd)
			}
			if fd.File != "fuzz.yaml" && fd.File != "other.yaml" {
				t.Fatalf("Lint() finding %+v: unknown file", fd)
			}
			if i > 0 && fd.File == got[i-1].File && fd.Line < got[i-1].Line {
				t.Fatalf("Lint() findings out of order: %v", got)
			}
			if strings.ContainsRune(fd.Rule, 0) {
				t.Fatalf("Lint() finding %+v: rule id with NUL", fd)
			}
		}
		_, err := Compile(sources, toolInfos(lintTools))
		if hasCompileKind(got) != (err != nil) {
			t.Fatalf("Lint() = %v, but Compile() error = %v", got, err)
		}
	})
}
