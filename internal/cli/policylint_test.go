package cli

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/chaperone-dev/chaperone/internal/store/sqlite"
)

const lintConfig = `upstreams:
  - name: mail
    url: https://mail.example.com/mcp
tools:
  - {upstream: mail, name: send_email, class: external}
  - {upstream: mail, name: read_inbox, class: read}
agents:
  - id: helper
    owner: ops@example.com
    token_sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
policy:
  paths: [policies]
`

// lintDir writes a configuration and files (name to content) into a new directory.
func lintDir(tb testing.TB, files map[string]string) string {
	tb.Helper()
	dir := tb.TempDir()
	files["chaperone.yaml"] = lintConfig
	for name, data := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			tb.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	return dir
}

const lintPolicy = `rules:
  - id: mail
    match: {tools: [send_email]}
    when: 'args.too.endsWith("@example.com")'
    effect: allow
  - id: read
    match: {tools: [read_inbox]}
    effect: allow
  - id: block
    match: {tools: [read_inbox]}
    effect: deny
`

func TestPolicyLint(t *testing.T) {
	t.Parallel()
	dir := lintDir(t, map[string]string{
		"policies/mail.yaml":           lintPolicy,
		"schemas/send_email.json":      `{"type": "object", "properties": {"to": {"type": "string"}, "body": {}}}`,
		"schemas/read_inbox.json":      `{"name": "read_inbox", "inputSchema": {"type": "object", "properties": {"folder": {}}}}`,
		"other/fine.yaml":              "rules:\n  - id: ok\n    match: {tools: [send_email]}\n    when: 'has(args.to)'\n    effect: allow\n",
		"schemas/unrelated.json":       `not json, and not read`,
		"open-schemas/send_email.json": `{"type": "object", "properties": {"to": {}}, "additionalProperties": true}`,
	})
	cfg := filepath.Join(dir, "chaperone.yaml")
	mail := filepath.Join(dir, "policies", "mail.yaml")
	for _, tc := range []struct {
		name    string
		args    []string
		want    []string // stdout lines
		wantErr error
	}{
		{"schemas", []string{"--config", cfg, "--schemas", filepath.Join(dir, "schemas")}, []string{
			mail + `:4: rule "mail": unknown-argument: condition reads argument "too", but tool "send_email" has no such argument`,
			mail + `:6: rule "read": shadowed: never decides: rule "block" (` + mail + `:9) denies every call this rule can match, without a condition, and deny overrides allow`,
			"2 findings: 1 unknown-argument, 1 shadowed",
		}, failError{}},
		{"no schemas: arguments unknown", []string{"--config", cfg}, []string{
			mail + `:6: rule "read": shadowed: never decides: rule "block" (` + mail + `:9) denies every call this rule can match, without a condition, and deny overrides allow`,
			"1 finding: 1 shadowed",
		}, failError{}},
		{"open schema", []string{"--config", cfg, "--schemas", filepath.Join(dir, "open-schemas"), filepath.Join(dir, "policies")}, []string{
			mail + `:6: rule "read": shadowed: never decides: rule "block" (` + mail + `:9) denies every call this rule can match, without a condition, and deny overrides allow`,
			"1 finding: 1 shadowed",
		}, failError{}},
		{"paths override the configuration", []string{"--config", cfg, "--schemas", filepath.Join(dir, "schemas"), filepath.Join(dir, "other", "fine.yaml")}, []string{
			"no findings",
		}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var stdout, stderr bytes.Buffer
			err := policyLint(t.Context(), tc.args, &stdout, &stderr)
			if !errors.Is(err, tc.wantErr) {
				t.Errorf("policyLint(%q) error = %v, want %v; stderr:\n%s", tc.args, err, tc.wantErr, stderr.String())
			}
			got := strings.Split(strings.TrimSuffix(stdout.String(), "\n"), "\n")
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("policyLint(%q) stdout (-want +got):\n%s", tc.args, diff)
			}
		})
	}
}

func TestPolicyLintDataDir(t *testing.T) {
	t.Parallel()
	dir := lintDir(t, map[string]string{"policies/mail.yaml": lintPolicy})
	db, err := sqlite.Open(t.Context(), filepath.Join(dir, "data", "chaperone.db"))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []sqlite.Pin{
		{Tool: "send_email", Upstream: "mail", Hash: "sha256:1", Definition: []byte(`{"description":"","inputSchema":{"properties":{"to":{}},"type":"object"},"name":"send_email"}`)},
		{Tool: "gone", Upstream: "mail", Hash: "sha256:2", Definition: []byte(`{"description":"","inputSchema":null,"name":"gone"}`)},
	} {
		p.ApprovedBy, p.ApprovedAt = "ops", time.Now()
		if err := db.SetPin(t.Context(), p); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()
	var stdout, stderr bytes.Buffer
	args := []string{"--config", filepath.Join(dir, "chaperone.yaml"), "--data-dir", filepath.Join(dir, "data")}
	err = policyLint(t.Context(), args, &stdout, &stderr)
	if !errors.Is(err, failError{}) {
		t.Fatalf("policyLint(%q) error = %v, want failError; stderr:\n%s", args, err, stderr.String())
	}
	if !strings.Contains(stdout.String(), `unknown-argument: condition reads argument "too"`) {
		t.Errorf("policyLint(%q) stdout = %q, want the unknown argument", args, stdout.String())
	}
}

func TestPolicyLintErrors(t *testing.T) {
	t.Parallel()
	dir := lintDir(t, map[string]string{
		"policies/mail.yaml":      lintPolicy,
		"schemas/send_email.json": `{"properties": [1]}`,
	})
	cfg := filepath.Join(dir, "chaperone.yaml")
	for _, tc := range []struct {
		name      string
		args      []string
		wantUsage bool
		wantErr   string
	}{
		{"unknown flag", []string{"--nope"}, true, "flag provided but not defined"},
		{"missing config", []string{"--config", filepath.Join(dir, "missing.yaml")}, false, "missing.yaml"},
		{"missing policy", []string{"--config", cfg, filepath.Join(dir, "nope.yaml")}, false, "nope.yaml"},
		{"bad schema", []string{"--config", cfg, "--schemas", filepath.Join(dir, "schemas")}, false, "send_email.json"},
		{"schemas not a directory", []string{"--config", cfg, "--schemas", cfg}, false, "not a directory"},
		{"missing database", []string{"--config", cfg, "--data-dir", filepath.Join(dir, "nodata")}, false, "nodata"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var stdout, stderr bytes.Buffer
			err := policyLint(t.Context(), tc.args, &stdout, &stderr)
			var ue usageError
			if err == nil || errors.As(err, &ue) != tc.wantUsage || errors.Is(err, failError{}) || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("policyLint(%q) error = %v, want usage %t containing %q", tc.args, err, tc.wantUsage, tc.wantErr)
			}
		})
	}
}

func TestSchemaArgs(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		schema string
		want   []string
	}{
		{``, nil},
		{`null`, nil},
		{`{"type": "object"}`, []string{}},
		{`{"type": "object", "properties": {"b": {}, "a": {}}, "additionalProperties": false}`, []string{"a", "b"}},
		{`{"properties": {"a": {}}, "additionalProperties": {"type": "string"}}`, nil},
		{`{"properties": {"a": {}}, "patternProperties": {"^x": {}}}`, nil},
	} {
		got, err := schemaArgs([]byte(tc.schema))
		if err != nil {
			t.Errorf("schemaArgs(%s) error: %v", tc.schema, err)
			continue
		}
		if diff := cmp.Diff(tc.want, got); diff != "" || (got == nil) != (tc.want == nil) {
			t.Errorf("schemaArgs(%s) = %#v, want %#v", tc.schema, got, tc.want)
		}
	}
}
