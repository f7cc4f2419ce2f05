package cli

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/chaperone-dev/chaperone/internal/progress"
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

// progressFinals returns the lines progress bars left on stderr, as a terminal shows
// them: of each line, the text after its last carriage return, without escape sequences.
func progressFinals(stderr string) []string {
	var out []string
	for _, l := range strings.Split(stderr, "\n") {
		if i := strings.LastIndexByte(l, '\r'); i >= 0 {
			out = append(out, strings.ReplaceAll(l[i+1:], "\x1b[K", ""))
		}
	}
	return out
}

// checkProgress fails unless stderr holds the final line of a bar labelled label that
// counted n items of n.
func checkProgress(t *testing.T, stderr, label string, n int64) {
	t.Helper()
	want := fmt.Sprintf("%s  %d/%d (100%%)", label, n, n)
	for _, l := range progressFinals(stderr) {
		if strings.HasPrefix(l, want) {
			return
		}
	}
	t.Errorf("stderr shows no progress line %q; it shows %q:\n%q", want, progressFinals(stderr), stderr)
}

// checkQuiet fails if stderr holds anything a progress bar draws.
func checkQuiet(t *testing.T, what, stderr string) {
	t.Helper()
	if strings.ContainsAny(stderr, "\r\x1b") {
		t.Errorf("%s: progress drawn on a stderr that is not a terminal:\n%q", what, stderr)
	}
}

// Progress: none on a stderr that is not a terminal, the calls replayed with
// CHAPERONE_PROGRESS=always; standard output is the same either way.
func TestReplayProgress(t *testing.T) {
	// Not parallel: it sets the environment.
	t.Setenv(progress.EnvMode, "auto")
	args := replayArgs("--json", "--policy", filepath.Join(replayData, "policy-a"))
	quietOut, quietErr, err := runReplay(t, args...)
	if err != nil {
		t.Fatalf("replay --json: %v\n%s", err, quietErr)
	}
	checkQuiet(t, "replay --json", quietErr)
	if strings.Contains(quietErr, "replaying") {
		t.Errorf("replay --json in a pipe printed progress:\n%s", quietErr)
	}

	t.Setenv(progress.EnvMode, "always")
	stdout, stderr, err := runReplay(t, args...)
	if err != nil {
		t.Fatalf("replay --json, progress forced: %v\n%s", err, stderr)
	}
	if stdout != quietOut {
		t.Errorf("replay --json: standard output changed with progress forced:\n%s", cmp.Diff(quietOut, stdout))
	}
	checkProgress(t, stderr, "replaying calls", 20)
	// The summary follows the progress line, on a line of its own.
	if !strings.Contains(stderr, "\nreplayed 20 calls") {
		t.Errorf("replay --json: the summary does not start a line after the progress:\n%q", stderr)
	}

	_, stderr, err = runReplay(t, replayArgs("--policy", filepath.Join(replayData, "policy-a"), "--diff", filepath.Join(replayData, "policy-b"))...)
	if err != nil {
		t.Fatalf("replay --diff, progress forced: %v\n%s", err, stderr)
	}
	checkProgress(t, stderr, "replaying calls (A)", 20)
	checkProgress(t, stderr, "replaying calls (B)", 20)

	// CHAPERONE_PROGRESS=never: nothing, even when told to draw.
	t.Setenv(progress.EnvMode, "never")
	if _, stderr, err := runReplay(t, args...); err != nil || strings.ContainsAny(stderr, "\r\x1b") {
		t.Errorf("replay with %s=never: %v\n%q", progress.EnvMode, err, stderr)
	}
}
