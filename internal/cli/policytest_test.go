package cli

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

const ptPolicy = `rules:
  - id: internal-mail
    match: {tools: [send_email]}
    when: args.to.endsWith("@example.com")
    effect: allow
`

const ptPass = `policies: [mail.yaml]
tools: {send_email: external}
cases:
  - name: internal mail is allowed
    principal: {agent: mail-assistant}
    tool: send_email
    args: {to: carol@example.com}
    expect: allow
    rules: [internal-mail]
`

const ptFail = `policies: [mail.yaml]
tools: {send_email: external}
cases:
  - name: internal mail is allowed
    tool: send_email
    args: {to: carol@example.com}
    expect: allow
  - name: external mail is allowed
    tool: send_email
    args: {to: mallory@evil.test}
    expect: allow
    rules: [internal-mail]
`

// ptDir writes files (name -> content) into a new directory and returns it.
func ptDir(tb testing.TB, files map[string]string) string {
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

// runPolicyTest runs policyTest and returns stdout, stderr and the exit status Run would give.
func runPolicyTest(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	err := policyTest(t.Context(), args, &stdout, &stderr)
	var ue usageError
	var fe failError
	code := exitOK
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
	case errors.As(err, &ue):
		code = exitUsage
	case errors.As(err, &fe):
		code = exitFail
	default:
		stderr.WriteString(err.Error())
		code = exitFail
	}
	return stdout.String(), stderr.String(), code
}

func TestPolicyTest(t *testing.T) {
	t.Parallel()
	dir := ptDir(t, map[string]string{
		"pass/mail.yaml":      ptPolicy,
		"pass/mail_test.yaml": ptPass,
		"fail/mail.yaml":      ptPolicy,
		"fail/mail_test.yaml": ptFail,
		"broken/mail_test.yaml": `tools: {send_email: external}
cases:
  - {name: a, tool: send_email, expect: permit}
`,
		"notools/mail.yaml":      ptPolicy,
		"notools/mail_test.yaml": "cases:\n  - {name: a, principal: {agent: x}, tool: send_email, args: {to: a@example.com}, expect: allow}\n",
		"config.yaml":            "tools:\n  - {upstream: mail, name: send_email, class: external}\n  - {upstream: files, name: read_file, class: read}\n",
		"dup.yaml":               "tools:\n  - {upstream: a, name: x, class: read, expose_as: y}\n  - {upstream: b, name: y, class: read}\n",
		"files.yaml":             "tools:\n  - {upstream: files, name: read_file, class: read}\n",
		"empty/README":           "no suites here",
	})
	in := func(parts ...string) string { return filepath.Join(append([]string{dir}, parts...)...) }
	for _, tc := range []struct {
		name     string
		args     []string
		wantCode int
		// stdout and stderr are regular expressions the output must match.
		stdout, stderr string
		notStdout      string
	}{
		{name: "pass", args: []string{in("pass")}, wantCode: 0, stdout: `(?m)\Apolicy test:\n1 passed, 0 failed\n\z`},
		{name: "pass verbose, flag after dir", args: []string{in("pass"), "-v"}, wantCode: 0,
			stdout: `(?m)^PASS ` + regexp.QuoteMeta(in("pass", "mail_test.yaml")) + `:4 internal mail is allowed\npolicy test:\n1 passed, 0 failed\n\z`},
		{name: "a suite file", args: []string{in("pass", "mail_test.yaml")}, wantCode: 0, stdout: `(?m)^1 passed, 0 failed$`},
		{name: "fail", args: []string{in("fail")}, wantCode: 1,
			stdout:    `(?m)\AFAIL ` + regexp.QuoteMeta(in("fail", "mail_test.yaml")) + `:8 external mail is allowed: got deny \(rules \[\]; "no rule allows this call"\), want allow \(rules \[internal-mail\]\)\npolicy test:\n1 passed, 1 failed\n\z`,
			notStdout: `PASS`},
		{name: "recursive", args: []string{"-v", dir}, wantCode: 1, stdout: `(?m)^2 passed, 3 failed$`},
		{name: "suite error counts as a failure", args: []string{in("broken")}, wantCode: 1,
			stdout: `(?m)\AERROR ` + regexp.QuoteMeta(in("broken", "mail_test.yaml")) + `:3: expect: unknown effect "permit", want allow, deny or approve\npolicy test:\n0 passed, 1 failed\n\z`},
		{name: "no tools", args: []string{in("notools")}, wantCode: 1, stdout: `ERROR .*: no tools: declare them under tools`},
		{name: "tools from a configuration", args: []string{"--tools", in("config.yaml"), in("notools")}, wantCode: 0, stdout: `(?m)^1 passed, 0 failed$`},
		{name: "configuration tools replace the suite's", args: []string{in("pass"), "--tools", in("files.yaml")}, wantCode: 1,
			stdout: `unknown tool "send_email" \(declare it under tools\)`},
		{name: "configuration with clashing names", args: []string{in("pass"), "--tools", in("dup.yaml")}, wantCode: 1,
			stderr: `exposed name "y" is already used by tools\[0\]`},
		{name: "no such configuration", args: []string{"--tools", in("nope.yaml"), in("pass")}, wantCode: 1, stderr: `read tools: open .*nope.yaml`},
		{name: "no suites", args: []string{in("empty")}, wantCode: 1, stderr: `no policy test suites \(\*_test.yaml\) in`},
		{name: "no such directory", args: []string{in("missing")}, wantCode: 1, stderr: `no such file or directory`},
		{name: "two directories", args: []string{in("pass"), in("fail")}, wantCode: 2},
		{name: "unknown flag", args: []string{"--junt", "x.xml"}, wantCode: 2, stderr: `flag provided but not defined: -junt`},
		{name: "empty junit", args: []string{"--junit=", in("pass")}, wantCode: 2},
		{name: "empty tools", args: []string{"--tools=", in("pass")}, wantCode: 2},
		{name: "help", args: []string{"-h"}, wantCode: 0, stderr: `Usage: chaperone policy test`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			stdout, stderr, code := runPolicyTest(t, tc.args...)
			if code != tc.wantCode {
				t.Errorf("policy test %q: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", tc.args, code, tc.wantCode, stdout, stderr)
			}
			if tc.stdout != "" && !regexp.MustCompile(tc.stdout).MatchString(stdout) {
				t.Errorf("policy test %q: stdout\n%s\nwant a match for %q", tc.args, stdout, tc.stdout)
			}
			if tc.notStdout != "" && regexp.MustCompile(tc.notStdout).MatchString(stdout) {
				t.Errorf("policy test %q: stdout\n%s\nwant no match for %q", tc.args, stdout, tc.notStdout)
			}
			if tc.stderr != "" && !regexp.MustCompile(tc.stderr).MatchString(stderr) {
				t.Errorf("policy test %q: stderr\n%s\nwant a match for %q", tc.args, stderr, tc.stderr)
			}
		})
	}
}

func TestPolicyTestJUnit(t *testing.T) {
	t.Parallel()
	dir := ptDir(t, map[string]string{"mail.yaml": ptPolicy, "mail_test.yaml": ptFail})
	out := filepath.Join(t.TempDir(), "out.xml")
	_, stderr, code := runPolicyTest(t, dir, "--junit", out)
	if code != exitFail {
		t.Fatalf("policy test --junit: exit %d, want %d (%s)", code, exitFail, stderr)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatalf("policy test --junit: %v", err)
	}
	for _, want := range []string{`<?xml`, `<testsuite name="` + filepath.Join(dir, "mail_test.yaml") + `" tests="2" failures="1" errors="0">`, `<failure message="got deny`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("policy test --junit wrote\n%s\nwant it to contain %q", b, want)
		}
	}

	// An unwritable JUnit file is an error, after the results are printed.
	stdout, stderr, code := runPolicyTest(t, dir, "--junit", filepath.Join(dir, "missing", "out.xml"))
	if code != exitFail || !strings.Contains(stderr, "write junit") || !strings.Contains(stdout, "1 passed, 1 failed") {
		t.Errorf("policy test --junit into a missing directory: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
}

// TestPolicyTestPresets runs the shipped presets through the command.
func TestPolicyTestPresets(t *testing.T) {
	t.Parallel()
	dir := filepath.Join("..", "..", "policies", "presets")
	stdout, stderr, code := runPolicyTest(t, dir)
	if code != exitOK || !regexp.MustCompile(`(?m)^[1-9][0-9]* passed, 0 failed$`).MatchString(stdout) {
		t.Errorf("policy test %s: exit %d\nstdout:\n%s\nstderr:\n%s", dir, code, stdout, stderr)
	}
}
