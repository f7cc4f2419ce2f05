package suite_test

import (
	"bytes"
	"encoding/xml"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/chaperone-dev/chaperone/internal/policy"
	"github.com/chaperone-dev/chaperone/internal/policy/suite"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// mailPolicy is the policy most tests run against.
const mailPolicy = `rules:
  - id: internal-mail
    match: {tools: [send_email]}
    when: args.to.endsWith("@example.com")
    effect: allow
  - id: finance-mail
    match: {tools: [send_email], agents: [finance-bot]}
    effect: allow
  - id: big-payments
    match: {tools: [transfer_money]}
    when: args.amount > 1000
    effect: approve
  - id: no-deletes
    match: {tools: [delete_record]}
    effect: deny
`

// writeFiles writes files (name -> content) into a new directory and returns it.
func writeFiles(tb testing.TB, files map[string]string) string {
	tb.Helper()
	dir := tb.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			tb.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	return dir
}

// suiteHead starts a suite over mail.yaml.
const suiteHead = `policies: [mail.yaml]
tools:
  send_email: external
  transfer_money: destructive
  delete_record: destructive
cases:
`

func TestRun(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		// cases are appended to suiteHead.
		cases string
		// want is one line per case: "PASS name" or "FAIL name: message".
		want []string
	}{
		{
			name: "pass",
			cases: `
  - name: internal
    principal: {agent: mail-assistant}
    tool: send_email
    args: {to: carol@example.com}
    expect: allow
    rules: [internal-mail]
  - name: default deny
    tool: send_email
    args: {to: mallory@evil.test}
    expect: deny
    rules: []
  - name: default deny without rules
    tool: send_email
    args: {to: mallory@evil.test}
    expect: deny
  - name: two allow rules in bundle order
    principal: {agent: finance-bot}
    tool: send_email
    args: {to: carol@example.com}
    expect: allow
    rules: [internal-mail, finance-mail]
  - name: integer argument is a double
    tool: transfer_money
    args: {amount: 1001}
    expect: approve
`,
			want: []string{"PASS internal", "PASS default deny", "PASS default deny without rules", "PASS two allow rules in bundle order", "PASS integer argument is a double"},
		},
		{
			name: "wrong effect",
			cases: `
  - name: external
    tool: send_email
    args: {to: mallory@evil.test}
    expect: allow
    rules: [internal-mail]
`,
			want: []string{`FAIL external: got deny (rules []; "no rule allows this call"), want allow (rules [internal-mail])`},
		},
		{
			name: "wrong rules",
			cases: `
  - name: rules out of order
    principal: {agent: finance-bot}
    tool: send_email
    args: {to: carol@example.com}
    expect: allow
    rules: [finance-mail, internal-mail]
  - name: missing rule
    principal: {agent: finance-bot}
    tool: send_email
    args: {to: carol@example.com}
    expect: allow
    rules: [finance-mail]
  - name: rules expected empty
    tool: delete_record
    expect: deny
    rules: []
`,
			want: []string{
				`FAIL rules out of order: got allow (rules [internal-mail finance-mail]; "allowed by rule \"internal-mail\""), want allow (rules [finance-mail internal-mail])`,
				`FAIL missing rule: got allow (rules [internal-mail finance-mail]; "allowed by rule \"internal-mail\""), want allow (rules [finance-mail])`,
				`FAIL rules expected empty: got deny (rules [no-deletes]; "denied by rule \"no-deletes\""), want deny (rules [])`,
			},
		},
		{
			name: "condition fails closed",
			cases: `
  - name: no recipient
    tool: send_email
    expect: allow
`,
			want: []string{`FAIL no recipient: got deny (rules [internal-mail]; "condition of rule \"internal-mail\" could not be evaluated": rule "internal-mail": condition: no such key: to), want allow`},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := writeFiles(t, map[string]string{"mail.yaml": mailPolicy, "x_test.yaml": suiteHead + tc.cases})
			path := filepath.Join(dir, "x_test.yaml")
			s, err := suite.Load(path)
			if err != nil {
				t.Fatalf("Load(%q): %v", path, err)
			}
			r := s.Run()
			if r.Err != nil {
				t.Fatalf("Run(%q): %v", path, r.Err)
			}
			var got []string
			for _, c := range r.Cases {
				if c.Pass {
					got = append(got, "PASS "+c.Name)
				} else {
					got = append(got, "FAIL "+c.Name+": "+c.Message())
				}
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Run(%q) (-want +got):\n%s", path, diff)
			}
			wantFailed := 0
			for _, w := range tc.want {
				if strings.HasPrefix(w, "FAIL") {
					wantFailed++
				}
			}
			if r.Failed() != wantFailed || r.Passed() != len(tc.want)-wantFailed || r.OK() != (wantFailed == 0) {
				t.Errorf("Run(%q): Passed %d, Failed %d, OK %v; want %d failed of %d", path, r.Passed(), r.Failed(), r.OK(), wantFailed, len(tc.want))
			}
		})
	}
}

// TestLoadErrors covers suites that do not load: each error names the file and, where
// there is one, the line.
func TestLoadErrors(t *testing.T) {
	t.Parallel()
	manyCases := suiteHead + strings.Repeat("  - {name: x, tool: send_email, expect: allow}\n", suite.MaxCases+1)
	for _, tc := range []struct {
		name  string
		suite string
		// want are regular expressions the error must match; "FILE" stands for the suite path.
		want []string
	}{
		{"bad YAML", suiteHead + "  - name: [unclosed\n", []string{`^FILE:\d+: invalid YAML: did not find expected`}},
		{"two documents", "cases: []\n---\ncases: []\n", []string{`^FILE:2: more than one YAML document$`}},
		{"not a mapping", "- a\n", []string{`^FILE:1: suite: want a mapping, got list$`}},
		{"unknown top-level key", "polices: [mail.yaml]\n" + suiteHead[len("policies: [mail.yaml]\n"):] + "  - {name: a, tool: send_email, expect: allow}\n",
			[]string{`^FILE:1: unknown key "polices"$`}},
		{"unknown case key", suiteHead + "  - name: a\n    tool: send_email\n    expct: allow\n",
			[]string{`^FILE:9: unknown key "expct"$`, `^FILE:7: case "a": expect is required$`}},
		{"unknown principal key", suiteHead + "  - {name: a, tool: send_email, expect: allow, principal: {agnet: x}}\n",
			[]string{`^FILE:7: principal: unknown key "agnet"$`}},
		{"unknown session key", suiteHead + "  - {name: a, tool: send_email, expect: allow, session: {cals: 3}}\n",
			[]string{`^FILE:7: session: unknown key "cals"$`}},
		{"duplicate key", suiteHead + "  - {name: a, tool: send_email, expect: allow, expect: deny}\n",
			[]string{`^FILE:7: duplicate key "expect"$`}},
		{"unknown tool", suiteHead + "  - name: typo\n    tool: send_mial\n    expect: allow\n",
			[]string{`^FILE:7: case "typo": unknown tool "send_mial" \(declare it under tools\)$`}},
		{"unknown effect", suiteHead + "  - {name: a, tool: send_email, expect: permit}\n",
			[]string{`^FILE:7: expect: unknown effect "permit", want allow, deny or approve$`}},
		{"unknown class", "tools: {send_email: harmless}\ncases:\n  - {name: a, tool: send_email, expect: allow}\n",
			[]string{`^FILE:1: tools.send_email: class must be one of read, write, external, destructive, got "harmless"$`}},
		{"missing name and tool", suiteHead + "  - {expect: allow}\n",
			[]string{`^FILE:7: case: name is required$`, `^FILE:7: case "": tool is required$`}},
		{"duplicate case name", suiteHead + "  - {name: a, tool: send_email, expect: allow}\n  - {name: a, tool: send_email, expect: deny}\n",
			[]string{`^FILE:8: case "a": duplicate name \(first at line 7\)$`}},
		{"wrong types", suiteHead + "  - {name: a, tool: send_email, expect: allow, principal: {agent: x, autonomy: 7, task: 12}, session: {calls: -1}, now: yesterday, rules: x}\n",
			[]string{`autonomy: want an integer from 0 to 3, got 7`, `principal.task: want a string, got int`, `session.calls: want an integer from 0 to`, `now: want an RFC 3339 time`, `rules: want a list, got str`}},
		{"null args", suiteHead + "  - {name: a, tool: send_email, expect: allow, args: }\n", []string{`^FILE:7: args: want a mapping, got no value$`}},
		{"bad argument values", suiteHead + "  - {name: a, tool: send_email, expect: allow, args: {n: .nan, b: !!binary aGk=, 1: x}}\n",
			[]string{`args.n: ".nan" is not a JSON number`, `args.b: unsupported value binary`, `mapping key is a int, want a string`}},
		{"nested too deep", suiteHead + "  - {name: a, tool: send_email, expect: allow, args: {x: " + strings.Repeat("[", suite.MaxDepth+1) + strings.Repeat("]", suite.MaxDepth+1) + "}}\n",
			[]string{`^FILE:7: args.x(\[0\])+: nested more than 64 deep$`}},
		{"alias", "tools: {send_email: external}\ncases:\n  - &c {name: a, tool: send_email, expect: allow}\n  - *c\n", []string{`^FILE:4: case: YAML aliases are not supported$`}},
		{"empty file", "", []string{`^FILE: empty suite: no cases$`}},
		{"only comments", "# nothing\n", []string{`^FILE: empty suite: no cases$`}},
		{"no cases key", "policies: [mail.yaml]\ntools: {send_email: external}\n", []string{`^FILE:1: empty suite: no cases$`}},
		{"empty cases", suiteHead[:len(suiteHead)-len("cases:\n")] + "cases: []\n", []string{`^FILE:6: empty suite: no cases$`}},
		{"empty policies", "policies: []\n" + suiteHead[len("policies: [mail.yaml]\n"):] + "  - {name: a, tool: send_email, expect: allow}\n",
			[]string{`^FILE:1: policies: empty list`}},
		{"missing policy file", "policies: [mail.yaml, nope.yaml]\n" + suiteHead[len("policies: [mail.yaml]\n"):] + "  - {name: a, tool: send_email, expect: allow}\n",
			[]string{`^FILE:1: policies: open .*nope.yaml: no such file or directory$`}},
		{"too many cases", manyCases, []string{`^FILE:7: cases: more than 10000 cases$`}},
		{"oversized", "# " + strings.Repeat("x", suite.MaxFileBytes) + "\n", []string{`^read .*x_test.yaml: larger than 4194304 bytes$`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := writeFiles(t, map[string]string{"mail.yaml": mailPolicy, "x_test.yaml": tc.suite})
			path := filepath.Join(dir, "x_test.yaml")
			s, err := suite.Load(path)
			if err == nil {
				t.Fatalf("Load(%q) = %d cases, want an error", tc.name, len(s.Cases))
			}
			msg := err.Error()
			if !strings.Contains(msg, path) {
				t.Errorf("Load(%q) = %q, want it to name %s", tc.name, msg, path)
			}
			lines := strings.Split(msg, "\n")
			for _, w := range tc.want {
				re := regexp.MustCompile(strings.ReplaceAll(w, "FILE", regexp.QuoteMeta(path)))
				found := false
				for _, l := range lines {
					found = found || re.MatchString(l)
				}
				if !found {
					t.Errorf("Load(%q) = %q, want a line matching %q", tc.name, msg, re)
				}
			}
			var se *suite.FileError
			if !errors.As(err, &se) && !strings.HasPrefix(msg, "read ") {
				t.Errorf("Load(%q) = %T, want a *suite.FileError", tc.name, err)
			}
		})
	}
}

func TestLoadOversizedPolicy(t *testing.T) {
	t.Parallel()
	dir := writeFiles(t, map[string]string{
		"mail.yaml":   "# " + strings.Repeat("x", suite.MaxFileBytes) + "\n",
		"x_test.yaml": suiteHead + "  - {name: a, tool: send_email, expect: allow}\n",
	})
	path := filepath.Join(dir, "x_test.yaml")
	_, err := suite.Load(path)
	if err == nil || !strings.Contains(err.Error(), "x_test.yaml:1: policies: read ") || !strings.Contains(err.Error(), "larger than 4194304 bytes") {
		t.Errorf("Load(%q) = %v, want the oversized policy named", path, err)
	}
}

// TestRunErrors covers suites that load but cannot run.
func TestRunErrors(t *testing.T) {
	t.Parallel()
	t.Run("compile error names the policy file", func(t *testing.T) {
		t.Parallel()
		dir := writeFiles(t, map[string]string{
			"mail.yaml":   "rules:\n  - id: typo\n    match: {tools: [send_mial]}\n    effect: allow\n",
			"x_test.yaml": suiteHead + "  - {name: a, tool: send_email, expect: allow}\n",
		})
		path := filepath.Join(dir, "x_test.yaml")
		s, err := suite.Load(path)
		if err != nil {
			t.Fatalf("Load(%q): %v", path, err)
		}
		r := s.Run()
		want := path + ": compile policy: " + filepath.Join(dir, "mail.yaml") + `:3: rule "typo": match.tools: unknown tool "send_mial"`
		if r.Err == nil || r.Err.Error() != want {
			t.Errorf("Run(%q).Err = %v, want %s", path, r.Err, want)
		}
		var ce *policy.CompileError
		if !errors.As(r.Err, &ce) {
			t.Errorf("Run(%q).Err = %T, want it to wrap a *policy.CompileError", path, r.Err)
		}
		if len(r.Cases) != 0 || r.OK() {
			t.Errorf("Run(%q) = %d cases, OK %v; want none, not OK", path, len(r.Cases), r.OK())
		}
	})
	t.Run("no tools", func(t *testing.T) {
		t.Parallel()
		dir := writeFiles(t, map[string]string{
			"mail.yaml":   mailPolicy,
			"x_test.yaml": "cases:\n  - {name: a, tool: send_email, expect: allow}\n",
		})
		s, err := suite.Load(filepath.Join(dir, "x_test.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		if r := s.Run(); r.Err == nil || !strings.Contains(r.Err.Error(), "no tools") {
			t.Errorf("Run() without tools: Err = %v, want no tools", r.Err)
		}
	})
	t.Run("replaced tools lack a case's tool", func(t *testing.T) {
		t.Parallel()
		dir := writeFiles(t, map[string]string{
			"mail.yaml":   "rules: []\n",
			"x_test.yaml": suiteHead + "  - {name: a, tool: send_email, expect: allow}\n",
		})
		path := filepath.Join(dir, "x_test.yaml")
		s, err := suite.Load(path)
		if err != nil {
			t.Fatal(err)
		}
		s.Tools = map[string]suite.Tool{"read_file": {Class: "read"}}
		want := path + `:7: case "a": unknown tool "send_email" (declare it under tools)`
		if r := s.Run(); r.Err == nil || r.Err.Error() != want {
			t.Errorf("Run() = %v, want %s", r.Err, want)
		}
	})
}

// TestLoadFacts checks what a case's facts hold: argument values as JSON would give them,
// the default principal and time, and the tool's upstream.
func TestLoadFacts(t *testing.T) {
	t.Parallel()
	dir := writeFiles(t, map[string]string{
		"mail.yaml": `rules:
  - id: all
    match: {tools: [fetch_url]}
    when: tool.upstream == "web" && agent.labels.team == "ap" && session.id == "s1" && now.getHours() == 9 && args.n == 3 && args.list[1].deep == null
    effect: allow
  - id: flow
    match: {tools: [fetch_url]}
    when: session.untrusted && !session.private && args_from_untrusted("s") && sinks_from_untrusted() && !sinks_from_trusted() && args_from_user("n") && calls("fetch_url") == 2 && total("fetch_url", "n") == 6.0 && risk.score == 80 && "x (+5)" in risk.factors
    effect: allow
`,
		"x_test.yaml": `tools:
  fetch_url: {class: external, upstream: web}
principal: {agent: default-bot}
cases:
  - name: full
    principal: {agent: finance-bot, owner: o@example.com, purpose: pay, user: dana@example.com, task: t-1, groups: [finance], chain: [], autonomy: 2, environment: prod, labels: {team: ap}}
    tool: fetch_url
    args: {n: 3, f: 0.5, s: "3", b: true, date: 2026-01-01, list: [1, {deep: null}]}
    session: {id: s1, calls: 3, untrusted: true}
    flow: {untrusted: [s], user: [n], sinks: [s, n], calls: {fetch_url: 2}, totals: {fetch_url.n: 6}}
    risk: {score: 80, factors: ["x (+5)"]}
    now: 2026-03-02T09:00:00Z
    expect: allow
    rules: [all, flow]
  - name: defaults
    tool: fetch_url
    expect: deny
`,
	})
	path := filepath.Join(dir, "x_test.yaml")
	s, err := suite.Load(path)
	if err != nil {
		t.Fatalf("Load(%q): %v", path, err)
	}
	want := []suite.Case{
		{
			Name: "full", Line: 5,
			Facts: policy.Facts{
				Agent:      policy.Agent{ID: "finance-bot", Owner: "o@example.com", Purpose: "pay", Environment: "prod", Labels: map[string]string{"team": "ap"}, Autonomy: 2},
				User:       "dana@example.com",
				UserGroups: []string{"finance"},
				Chain:      []string{},
				Task:       "t-1",
				Tool:       policy.Tool{Name: "fetch_url"},
				Args:       map[string]any{"n": 3.0, "f": 0.5, "s": "3", "b": true, "date": "2026-01-01", "list": []any{1.0, map[string]any{"deep": nil}}},
				Session:    policy.Session{ID: "s1", Calls: 3},
				Risk:       policy.Risk{Score: 80, Factors: []string{"x (+5)"}},
				Flow: &policy.StaticFlow{SessionUntrusted: true, UntrustedArgs: []string{"s"}, UserArgs: []string{"n"}, Sinks: []string{"s", "n"},
					CallCounts: map[string]int64{"fetch_url": 2}, Totals: map[string]float64{"fetch_url.n": 6}},
				Now: time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC),
			},
			Want: suite.Expectation{Effect: policy.Allow, Rules: []string{"all", "flow"}, CheckRules: true},
		},
		{
			Name: "defaults", Line: 15,
			Facts: policy.Facts{
				Agent: policy.Agent{ID: "default-bot"},
				Tool:  policy.Tool{Name: "fetch_url"},
				Args:  map[string]any{},
				Flow:  &policy.StaticFlow{},
				Now:   suite.DefaultNow,
			},
			Want: suite.Expectation{Effect: policy.Deny},
		},
	}
	if diff := cmp.Diff(want, s.Cases); diff != "" {
		t.Errorf("Load(%q) cases (-want +got):\n%s", path, diff)
	}
	if diff := cmp.Diff([]string{filepath.Join(dir, "mail.yaml")}, s.Policies); diff != "" {
		t.Errorf("Load(%q) default policies (-want +got):\n%s", path, diff)
	}
	// The flow facts reach the flow functions: rule "flow" applies only with all of them.
	if r := s.Run(); r.Err != nil || !r.OK() {
		t.Errorf("Run(%q): err %v, %d failed: %+v", path, r.Err, r.Failed(), r.Cases)
	}
	r := s.Run()
	if !r.OK() {
		t.Errorf("Run(%q) = %+v, want every case to pass", path, r)
	}
}

func TestDefaultPolicies(t *testing.T) {
	t.Parallel()
	dir := writeFiles(t, map[string]string{
		"b.yaml":            "rules: [{id: b, match: {tools: [send_email]}, effect: allow}]\n",
		"a.yml":             "rules: [{id: a, match: {tools: [send_email]}, effect: allow}]\n",
		"notes.txt":         "not a policy",
		"other_test.yml":    "not a policy",
		"x_test.yaml":       "tools: {send_email: external}\ncases:\n  - {name: both, tool: send_email, expect: allow, rules: [a, b]}\n",
		"sub/c.yaml":        "rules: [{id: c, effect: deny}]\n",
		"empty/x_test.yaml": "tools: {send_email: external}\ncases:\n  - {name: a, tool: send_email, expect: allow}\n",
	})
	s, err := suite.Load(filepath.Join(dir, "x_test.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{filepath.Join(dir, "a.yml"), filepath.Join(dir, "b.yaml")}
	if diff := cmp.Diff(want, s.Policies); diff != "" {
		t.Errorf("default policies (-want +got):\n%s", diff)
	}
	if r := s.Run(); !r.OK() {
		t.Errorf("Run() = %+v, want OK", r)
	}
	if _, err := suite.Load(filepath.Join(dir, "empty", "x_test.yaml")); err == nil || !strings.Contains(err.Error(), "no policy files") {
		t.Errorf("Load(suite alone in its directory) = %v, want no policy files", err)
	}
}

func TestDiscover(t *testing.T) {
	t.Parallel()
	dir := writeFiles(t, map[string]string{
		"a_test.yaml":           "",
		"a.yaml":                "",
		"b/c_test.yaml":         "",
		"b/d/e_test.yaml":       "",
		"b/x_test.yml":          "",
		".hidden/f_test.yaml":   "",
		"testing.yaml":          "",
		"b/d/not_test.yaml.bak": "",
	})
	got, err := suite.Discover(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{filepath.Join(dir, "a_test.yaml"), filepath.Join(dir, "b", "c_test.yaml"), filepath.Join(dir, "b", "d", "e_test.yaml")}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Discover(%q) (-want +got):\n%s", dir, diff)
	}
	file := filepath.Join(dir, "b", "c_test.yaml")
	if got, err := suite.Discover(file); err != nil || !cmp.Equal(got, []string{file}) {
		t.Errorf("Discover(%q) = %v, %v; want the file itself", file, got, err)
	}
	if _, err := suite.Discover(filepath.Join(dir, "missing")); err == nil {
		t.Errorf("Discover(missing) = nil error, want one")
	}
}

// TestJUnit runs the suites in testdata/junit and compares the JUnit XML with
// testdata/junit.golden (go test -update rewrites it).
func TestJUnit(t *testing.T) {
	t.Parallel()
	dir := filepath.Join("testdata", "junit")
	paths, err := suite.Discover(dir)
	if err != nil {
		t.Fatal(err)
	}
	var results []suite.Result
	for _, p := range paths {
		s, err := suite.Load(p)
		if err != nil {
			results = append(results, suite.Result{Path: p, Err: err})
			continue
		}
		results = append(results, s.Run())
	}
	var buf bytes.Buffer
	if err := suite.WriteJUnit(&buf, results); err != nil {
		t.Fatalf("WriteJUnit: %v", err)
	}
	golden := filepath.Join("testdata", "junit.golden")
	if *update {
		if err := os.WriteFile(golden, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), buf.String()); diff != "" {
		t.Errorf("WriteJUnit (-want +got):\n%s", diff)
	}

	// The output is well-formed XML with the counts a CI system reads.
	var doc struct {
		Tests    int `xml:"tests,attr"`
		Failures int `xml:"failures,attr"`
		Errors   int `xml:"errors,attr"`
		Suites   []struct {
			Name  string `xml:"name,attr"`
			Cases []struct {
				Name    string `xml:"name,attr"`
				Failure *struct {
					Message string `xml:"message,attr"`
				} `xml:"failure"`
			} `xml:"testcase"`
		} `xml:"testsuite"`
	}
	if err := xml.Unmarshal(buf.Bytes(), &doc); err != nil {
		t.Fatalf("WriteJUnit wrote invalid XML: %v", err)
	}
	if doc.Tests != 8 || doc.Failures != 3 || doc.Errors != 2 || len(doc.Suites) != 4 {
		t.Errorf("WriteJUnit: tests %d, failures %d, errors %d, suites %d; want 8, 3, 2, 4", doc.Tests, doc.Failures, doc.Errors, len(doc.Suites))
	}
	if name := doc.Suites[1].Cases[1].Name; name != `external mail <is> "allowed" & approved` {
		t.Errorf("WriteJUnit: case name round-trips as %q", name)
	}

	// The same results give the same bytes.
	var again bytes.Buffer
	if err := suite.WriteJUnit(&again, results); err != nil || !bytes.Equal(again.Bytes(), buf.Bytes()) {
		t.Errorf("WriteJUnit is not deterministic (err %v)", err)
	}
}

func TestWriteJUnitEmpty(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	if err := suite.WriteJUnit(&buf, nil); err != nil {
		t.Fatal(err)
	}
	want := xml.Header + `<testsuites name="chaperone policy test" tests="0" failures="0" errors="0"></testsuites>` + "\n"
	if got := buf.String(); got != want {
		t.Errorf("WriteJUnit(nil) = %q, want %q", got, want)
	}
}

// ExampleSuite_Run shows a Go test running a suite that ships with a policy.
func ExampleSuite_Run() {
	s, err := suite.Load(filepath.Join("testdata", "junit", "a_pass_test.yaml"))
	if err != nil {
		fmt.Println(err)
		return
	}
	r := s.Run()
	fmt.Printf("%d passed, %d failed\n", r.Passed(), r.Failed())
	// Output: 2 passed, 0 failed
}
