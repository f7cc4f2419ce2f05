package cli

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// replayData is the replay package's test data: a configuration, a trace, two policies and
// the decisions policy A gives.
var replayData = filepath.Join("..", "replay", "testdata")

func replayArgs(extra ...string) []string {
	return append([]string{
		"--config", filepath.Join(replayData, "config.yaml"),
		"--trace", filepath.Join(replayData, "trace.jsonl"),
		"--schemas", filepath.Join(replayData, "schemas"),
		"--agent", "ops-bot",
	}, extra...)
}

func runReplay(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var o, e bytes.Buffer
	err = replayCmd(t.Context(), args, &o, &e)
	return o.String(), e.String(), err
}

func readGolden(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(replayData, "decisions-a.golden.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestReplayOut(t *testing.T) {
	t.Parallel()
	out := filepath.Join(t.TempDir(), "decisions.jsonl")
	// The configuration's policy.paths is policy-a.
	stdout, stderr, err := runReplay(t, replayArgs("--out", out)...)
	if err != nil {
		t.Fatalf("replay: %v\n%s", err, stderr)
	}
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(readGolden(t), string(got)); diff != "" {
		t.Errorf("replay --out (-want +got):\n%s", diff)
	}
	for _, want := range []string{"replayed 20 calls in 4 sessions with policy sha256:", "deny     14", `tool "delete_file": no pinned definition`} {
		if !strings.Contains(stdout, want) {
			t.Errorf("replay summary lacks %q:\n%s", want, stdout)
		}
	}
}

func TestReplayJSON(t *testing.T) {
	t.Parallel()
	var outs [2]string
	for i := range outs {
		stdout, stderr, err := runReplay(t, replayArgs("--json", "--policy", filepath.Join(replayData, "policy-a"))...)
		if err != nil {
			t.Fatalf("replay --json: %v\n%s", err, stderr)
		}
		if !strings.Contains(stderr, "replayed 20 calls") {
			t.Errorf("replay --json: the summary is not on stderr:\n%s", stderr)
		}
		outs[i] = stdout
	}
	if diff := cmp.Diff(readGolden(t), outs[0]); diff != "" {
		t.Errorf("replay --json (-want +got):\n%s", diff)
	}
	if outs[0] != outs[1] {
		t.Error("two runs of replay --json differ")
	}
}

func TestReplayDiff(t *testing.T) {
	t.Parallel()
	stdout, stderr, err := runReplay(t, replayArgs(
		"--policy", filepath.Join(replayData, "policy-a"), "--diff", filepath.Join(replayData, "policy-b"))...)
	if err != nil {
		t.Fatalf("replay --diff: %v\n%s", err, stderr)
	}
	_, listing, ok := strings.Cut(stdout, "\n\n")
	if !ok || !strings.HasPrefix(stdout, "A: sha256:") {
		t.Fatalf("replay --diff output has no A/B header:\n%s", stdout)
	}
	want := `pay-1 c1 send_money: approve (approval_required) [payments-need-a-person] → deny (denied_by_policy) [no-large-payments]
ops-1 c5 delete_file: deny (denied_by_policy) [no-deletes] → approve (approval_required) [deletes-need-a-person]
pay-1 c6 send_money: deny (denied_by_policy) [one-payment-per-session] → approve (approval_required) [payments-need-a-person]

3 of 20 calls changed decision
  approve → deny: 1
  deny → approve: 2
`
	if diff := cmp.Diff(want, listing); diff != "" {
		t.Errorf("replay --diff (-want +got):\n%s", diff)
	}
}

func TestReplayApprovalsDenied(t *testing.T) {
	t.Parallel()
	stdout, _, err := runReplay(t, replayArgs("--json", "--approvals", "denied")...)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(stdout, "\n"), "\n")
	want := `{"session":"pay-1","id":"c6","tool":"send_money","decision":"approve","reason":"approval_required","rules":["payments-need-a-person"]}`
	if len(lines) != 20 || lines[19] != want {
		t.Errorf("replay --approvals denied: last line of %d = %s, want %s", len(lines), lines[len(lines)-1], want)
	}
}

func TestReplayErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	badTrace := filepath.Join(dir, "bad.jsonl")
	if err := os.WriteFile(badTrace, []byte(`{"type":"call","session":"s","id":"c1","tool":"t","arguments":{}}`+"\n"+`{"type":"call","session":"s","id":"c1","tool":"t","arguments":{}}`+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(replayData, "config.yaml")
	trace := filepath.Join(replayData, "trace.jsonl")
	tests := []struct {
		name  string
		args  []string
		usage bool
		msg   string
	}{
		{"no config", []string{"--trace", trace}, true, "--config is required"},
		{"no trace", []string{"--config", cfg}, true, "--trace is required"},
		{"bad approvals", []string{"--config", cfg, "--trace", trace, "--approvals", "sometimes"}, true, "--approvals must be granted or denied"},
		{"json and diff", []string{"--config", cfg, "--trace", trace, "--json", "--diff", "x"}, true, "--diff prints a listing"},
		{"extra argument", []string{"--config", cfg, "--trace", trace, "more"}, true, `unexpected argument "more"`},
		{"unknown flag", []string{"--config", cfg, "--trace", trace, "--fast"}, true, "flag provided but not defined"},
		{"bad trace", []string{"--config", cfg, "--trace", badTrace}, false, "bad.jsonl: line 2: call record: duplicate id \"c1\""},
		{"missing trace", []string{"--config", cfg, "--trace", filepath.Join(dir, "none.jsonl")}, false, "read trace"},
		{"unknown agent", []string{"--config", cfg, "--trace", trace, "--agent", "nobody"}, false, `default agent "nobody" is not declared`},
		{"missing data dir", []string{"--config", cfg, "--trace", trace, "--data-dir", dir}, false, "read pinned definitions"},
		{"missing policy", []string{"--config", cfg, "--trace", trace, "--policy", filepath.Join(dir, "nope")}, false, "policy:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, _, err := runReplay(t, tt.args...)
			if err == nil {
				t.Fatalf("replay %q: no error", tt.args)
			}
			var ue usageError
			if errors.As(err, &ue) != tt.usage || !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("replay %q = %v (usage error: %v), want %q (usage error: %v)", tt.args, err, errors.As(err, &ue), tt.msg, tt.usage)
			}
		})
	}
	t.Run("help", func(t *testing.T) {
		t.Parallel()
		_, stderr, err := runReplay(t, "-h")
		if !errors.Is(err, flag.ErrHelp) || !strings.Contains(stderr, "chaperone replay --config FILE --trace FILE.jsonl") {
			t.Errorf("replay -h = %v\n%s", err, stderr)
		}
	})
}
