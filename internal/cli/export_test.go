package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/chaperone-dev/chaperone/internal/audit"
	"github.com/chaperone-dev/chaperone/internal/progress"
	"github.com/chaperone-dev/chaperone/internal/replay"
	"github.com/chaperone-dev/chaperone/internal/store/sqlite"
)

// Secrets the scanner recognises: an AWS access key id and a GitHub token.
const (
	exportAWSKey      = "AKIAZ3MHQ2L7VXKQ4PJD"
	exportGitHubToken = "ghp_R7b2Kx9Qm4Tz8Lw3Vn6Yp1Hs5Jd0Fc2Ga7Ue"
)

// exportLog is a data directory whose audit log holds exportEvents, the first of them
// 72.5 hours before start and one an hour after the other, so that durations
// before now select whole events however long the test takes.
type exportLog struct {
	dir   string
	start time.Time
	base  time.Time // the time of the first event
}

// exportEvents is what the log holds: calls of two agents with captured content, some
// carrying secrets, and events of other kinds.
func exportEvents() []audit.Event {
	args := func(s string) json.RawMessage { return json.RawMessage(s) }
	call := func(kind, req, agent, user, task, tool, decision, a string) audit.Event {
		return audit.Event{Kind: kind, RequestID: req, Agent: agent, User: user, Task: task, Tool: tool, Upstream: "demo",
			Decision: decision, Captured: audit.CapturedArguments, Arguments: args(a)}
	}
	outcome := func(req, agent, text string) audit.Event {
		r, _ := json.Marshal(map[string]any{"content": []map[string]string{{"type": "text", "text": text}}})
		return audit.Event{Kind: audit.KindCallOutcome, RequestID: req, Agent: agent, Captured: audit.CapturedResult, Result: r}
	}
	intent1 := call(audit.KindCallIntent, "r1", "mail-bot", "alice", "t-1", "read_file", "allow", `{"path":"/x","key":"`+exportAWSKey+`"}`)
	intent1.Prompt = "read /x with my token " + exportGitHubToken
	refused2 := call(audit.KindCallRefused, "r2", "pay-bot", "bob", "t-2", "send_email", "deny", `{"to":"eve@elsewhere.net","body":"`+exportGitHubToken+`"}`)
	refused2.Reason, refused2.Message, refused2.Detail = "denied_by_policy", "key "+exportAWSKey+" stays in", "to="+exportGitHubToken
	refused4 := call(audit.KindCallRefused, "r4", "mail-bot", "alice", "t-1", "wipe", "refused", `{"all":true}`)
	refused4.Reason = "unknown_tool"
	return []audit.Event{
		{Kind: audit.KindAgentRegistered, Agent: "mail-bot", Message: "agent registered"},
		intent1,
		outcome("r1", "mail-bot", "aws_access_key_id = "+exportAWSKey),
		refused2,
		call(audit.KindCallIntent, "r3", "mail-bot", "alice", "t-1", "read_file", "allow", `{"path":"/y"}`),
		outcome("r3", "mail-bot", "fine"),
		refused4,
		{Kind: audit.KindAuthFailed, RequestID: "r6", Decision: "refused", Reason: "unauthenticated", Message: "authentication failed"},
		{Kind: audit.KindKillEngaged, Scope: "agent:pay-bot", Reason: "incident"},
		call(audit.KindCallIntent, "r5", "pay-bot", "bob", "t-2", "read_file", "allow", `{"path":"/z"}`),
		outcome("r5", "pay-bot", "fine"),
		{Kind: audit.KindTaskEnded, Task: "t-1", Reason: "done", Message: "task ended"},
	}
}

// exportNewLog writes exportEvents to a real SQLite audit log in a new data directory.
// prune names the seqs retention removes.
func exportNewLog(tb testing.TB, prune ...int64) *exportLog {
	tb.Helper()
	l := &exportLog{dir: tb.TempDir(), start: time.Now().UTC()}
	l.base = l.start.Add(-72*time.Hour - 30*time.Minute).Truncate(time.Second)
	db, err := sqlite.Open(tb.Context(), filepath.Join(l.dir, "chaperone.db"))
	if err != nil {
		tb.Fatal(err)
	}
	defer db.Close()
	log, err := audit.NewLog(tb.Context(), db, audit.LogOptions{})
	if err != nil {
		tb.Fatal(err)
	}
	evs := exportEvents()
	for i := range evs {
		evs[i].Time = l.at(i)
		if err := log.Append(tb.Context(), &evs[i]); err != nil {
			tb.Fatalf("Append(%s): %v", evs[i].Kind, err)
		}
	}
	if err := log.Close(context.Background()); err != nil {
		tb.Fatal(err)
	}
	if len(prune) > 0 {
		if _, err := db.PruneEvents(tb.Context(), int64(len(evs)), nil, func(e *audit.Event) bool {
			for _, s := range prune {
				if e.Seq == s {
					return true
				}
			}
			return false
		}); err != nil {
			tb.Fatal(err)
		}
	}
	return l
}

// at is the time of the event at index i.
func (l *exportLog) at(i int) time.Time { return l.base.Add(time.Duration(i) * time.Hour) }

// seqsFrom returns the seqs of the events at or after t; nil if none.
func (l *exportLog) seqsFrom(t time.Time) []int64 {
	var out []int64
	for i := range exportEvents() {
		if !l.at(i).Before(t) {
			out = append(out, int64(i+1))
		}
	}
	return out
}

// run runs `chaperone audit export` on the log.
func (l *exportLog) run(tb testing.TB, args ...string) (code int, stdout, stderr string) {
	tb.Helper()
	var out, errb bytes.Buffer
	code = Run(tb.Context(), append([]string{"audit", "export", "--data-dir", l.dir}, args...), &out, &errb)
	return code, out.String(), errb.String()
}

// exportLines decodes JSON Lines output, failing on a line that is not a JSON object.
func exportLines(tb testing.TB, out string) []map[string]any {
	tb.Helper()
	var objs []map[string]any
	for i, line := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			tb.Fatalf("line %d is not a JSON object: %v\n%s", i+1, err, line)
		}
		objs = append(objs, m)
	}
	return objs
}

// exportSeqs returns the seqs of jsonl records.
func exportSeqs(tb testing.TB, out string) []int64 {
	tb.Helper()
	var seqs []int64
	for _, m := range exportLines(tb, out) {
		seqs = append(seqs, int64(m["seq"].(float64)))
	}
	return seqs
}

func TestAuditExportFormats(t *testing.T) {
	t.Parallel()
	l := exportNewLog(t)
	for _, tc := range []struct {
		format, summary string
	}{
		{"jsonl", "exported 12 events as jsonl (audit events up to #12); secrets redacted in 3\n"},
		{"ocsf", "exported 12 events as ocsf (audit events up to #12); secrets redacted in 3\n"},
		{"trace", "exported 5 calls in 2 sessions (audit events up to #12); secrets redacted in 2 calls\n"},
	} {
		t.Run(tc.format, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "export."+tc.format)
			code, stdout, stderr := l.run(t, "--format", tc.format, "--out", out)
			if code != 0 || stdout != "" || stderr != tc.summary {
				t.Fatalf("audit export --format %s: exit %d, stdout %q, stderr %q; want 0 and %q", tc.format, code, stdout, stderr, tc.summary)
			}
			fi, err := os.Stat(out)
			if err != nil || fi.Mode().Perm() != 0o600 {
				t.Errorf("export file: %v, %v; want mode 0600", fi, err)
			}
			data, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range []string{exportAWSKey, exportGitHubToken} {
				if bytes.Contains(data, []byte(s)) {
					t.Errorf("the %s export carries the secret %q", tc.format, s)
				}
			}
			if !bytes.Contains(data, []byte("[REDACTED:aws_access_key]")) || !bytes.Contains(data, []byte("[REDACTED:github_token]")) {
				t.Errorf("the %s export shows no redaction marker:\n%s", tc.format, data)
			}
			exportLines(t, string(data))
			if tc.format == "trace" {
				if _, err := replay.ReadTrace(bytes.NewReader(data)); err != nil {
					t.Errorf("ReadTrace(export): %v", err)
				}
			}
			// Two runs to standard output give the file's bytes.
			_, a, _ := l.run(t, "--format", tc.format)
			_, b, _ := l.run(t, "--format", tc.format)
			if a != b || a != string(data) {
				t.Errorf("two exports of one log differ")
			}
		})
	}
}

func TestAuditExportFilters(t *testing.T) {
	t.Parallel()
	l := exportNewLog(t)
	rfc := func(i int) string { return l.at(i).Format(time.RFC3339) }
	for _, tc := range []struct {
		name string
		args []string
		want []int64
	}{
		{"all", nil, []int64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}},
		{"agent", []string{"--agent", "pay-bot"}, []int64{4, 10, 11}},
		{"agents repeated and kind", []string{"--agent", "pay-bot", "--agent", "mail-bot", "--kind", "call.refused"}, []int64{4, 7}},
		{"agents comma-separated", []string{"--agent", "pay-bot, mail-bot", "--kind", "call.refused"}, []int64{4, 7}},
		{"task and decision", []string{"--task", "t-1", "--decision", "allow"}, []int64{2, 5}},
		{"decisions", []string{"--decision", "deny,refused"}, []int64{4, 7, 8}},
		{"kind prefix", []string{"--kind", "call.*", "--kind", "auth.failed"}, []int64{2, 3, 4, 5, 6, 7, 8, 10, 11}},
		{"from and to: from inclusive, to exclusive", []string{"--from", rfc(4), "--to", rfc(8)}, []int64{5, 6, 7, 8}},
		// A date is its midnight, UTC: the day after the first event's excludes that one
		// and keeps the events of that day or later — which, depending on the hour the
		// test runs at, may be none.
		{"from a date", []string{"--from", l.at(0).AddDate(0, 0, 1).Format(time.DateOnly)}, l.seqsFrom(l.at(0).AddDate(0, 0, 1).Truncate(24 * time.Hour))},
		{"from a duration", []string{"--from", "70h"}, []int64{4, 5, 6, 7, 8, 9, 10, 11, 12}},
		{"to a duration", []string{"--to", "65h"}, []int64{1, 2, 3, 4, 5, 6, 7, 8}},
		{"since", []string{"--since", "10"}, []int64{11, 12}},
		{"combined", []string{"--kind", "call.*", "--agent", "mail-bot", "--from", "71h", "--to", rfc(6)}, []int64{3, 5, 6}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := l.run(t, append([]string{"--format", "jsonl"}, tc.args...)...)
			if code != 0 {
				t.Fatalf("audit export %q: exit %d, stderr %q", tc.args, code, stderr)
			}
			if diff := cmp.Diff(tc.want, exportSeqs(t, stdout)); diff != "" {
				t.Errorf("audit export %q seqs (-want +got):\n%s", tc.args, diff)
			}
		})
	}
}

func TestAuditExportTraceFilter(t *testing.T) {
	t.Parallel()
	l := exportNewLog(t)
	code, stdout, stderr := l.run(t, "--format", "trace", "--agent", "pay-bot")
	if code != 0 {
		t.Fatalf("audit export --format trace --agent pay-bot: exit %d, stderr %q", code, stderr)
	}
	tr, err := replay.ReadTrace(strings.NewReader(stdout))
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, c := range tr.Calls {
		ids = append(ids, c.ID)
	}
	if diff := cmp.Diff([]string{"r2", "r5"}, ids); diff != "" {
		t.Errorf("trace calls of pay-bot (-want +got):\n%s", diff)
	}

	code, stdout, stderr = l.run(t, "--format", "trace", "--agent", "nobody")
	if code != 1 || stdout != "" || !strings.Contains(stderr, "none of the 5 calls after event 0 matches the filters") {
		t.Errorf("audit export --format trace --agent nobody: exit %d, stdout %q, stderr %q; want 1 and why", code, stdout, stderr)
	}
}

// Tombstones are not exported, and the summary says how many were left out.
func TestAuditExportPruned(t *testing.T) {
	t.Parallel()
	l := exportNewLog(t, 2, 3) // r1's intent and outcome
	code, stdout, stderr := l.run(t, "--format", "jsonl")
	if code != 0 || !strings.Contains(stderr, "exported 10 events as jsonl (audit events up to #12); secrets redacted in 1; 2 pruned by retention not exported") {
		t.Errorf("audit export of a pruned log: exit %d, stderr %q", code, stderr)
	}
	if diff := cmp.Diff([]int64{1, 4, 5, 6, 7, 8, 9, 10, 11, 12}, exportSeqs(t, stdout)); diff != "" {
		t.Errorf("seqs exported from a pruned log (-want +got):\n%s", diff)
	}
	code, _, stderr = l.run(t, "--format", "trace")
	if code != 0 || !strings.Contains(stderr, "exported 4 calls") || !strings.Contains(stderr, "1 calls not exported: retention removed their content") {
		t.Errorf("audit export --format trace of a pruned log: exit %d, stderr %q", code, stderr)
	}
}

func TestAuditExportUsage(t *testing.T) {
	t.Parallel()
	l := exportNewLog(t)
	for _, tc := range []struct {
		args []string
		want string // in the message, naming the flag and the value
	}{
		{[]string{"--format", "csv"}, `--format must be jsonl, ocsf or trace, got "csv"`},
		{nil, `--format must be jsonl, ocsf or trace, got ""`},
		{[]string{"--format", "jsonl", "--since", "-1"}, "--since must not be negative, got -1"},
		{[]string{"--format", "jsonl", "--from", "yesterday"}, `--from: "yesterday": want an RFC 3339 time`},
		{[]string{"--format", "ocsf", "--to", "-24h"}, `--to: "-24h": duration -24h0m0s is not positive`},
		{[]string{"--format", "jsonl", "--from", "2026-03-02", "--to", "2026-03-01"}, `--from "2026-03-02" (2026-03-02T00:00:00Z) is not before --to "2026-03-01"`},
		{[]string{"--format", "jsonl", "--agent", "a,,b"}, `invalid value "a,,b" for flag -agent: empty value`},
		{[]string{"--format", "jsonl", "--kind", "call*"}, `--kind "call*": a wildcard is a prefix followed by ".*"`},
		{[]string{"--format", "jsonl", "--kind", "*"}, `--kind "*"`},
		{[]string{"--format", "jsonl", "--task", strings.Repeat("t", 300)}, "longer than 256"},
		{[]string{"--format", "jsonl", "stray"}, `unexpected argument "stray"`},
	} {
		code, stdout, stderr := l.run(t, tc.args...)
		if code != 2 || stdout != "" || !strings.Contains(stderr, "chaperone audit:") || !strings.Contains(stderr, tc.want) {
			t.Errorf("audit export %q: exit %d, stdout %q, stderr %q; want a usage error (2) containing %q", tc.args, code, stdout, stderr, tc.want)
		}
	}
	// A failed export leaves no file behind.
	dir := t.TempDir()
	out := filepath.Join(dir, "x.jsonl")
	if code, _, _ := (&exportLog{dir: filepath.Join(dir, "missing")}).run(t, "--format", "jsonl", "--out", out); code != 1 {
		t.Errorf("export of a missing database: exit %d, want 1", code)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("a failed export left %v", entries)
	}
}

// Progress of audit export: none on a stderr that is not a terminal (the summary alone);
// with CHAPERONE_PROGRESS=always the events read of those after --since, and what was
// written, then the summary on its own line. The export is the same either way.
func TestAuditExportProgress(t *testing.T) {
	// Not parallel: it sets the environment.
	l := exportNewLog(t)
	for _, tc := range []struct {
		args    []string
		read    int64
		written string // the note on the final line
		summary string
	}{
		{[]string{"--format", "jsonl"}, 12, "12 written", "exported 12 events as jsonl"},
		{[]string{"--format", "ocsf", "--kind", "call.*"}, 12, "8 written", "exported 8 events as ocsf"},
		{[]string{"--format", "jsonl", "--since", "9"}, 3, "3 written", "exported 3 events as jsonl"},
		{[]string{"--format", "trace"}, 12, "5 calls written", "exported 5 calls in 2 sessions"},
	} {
		t.Setenv(progress.EnvMode, "auto")
		code, quietOut, quietErr := l.run(t, tc.args...)
		if code != 0 || !strings.HasPrefix(quietErr, tc.summary) {
			t.Fatalf("audit export %q: exit %d, stderr %q", tc.args, code, quietErr)
		}
		checkQuiet(t, "audit export", quietErr)
		t.Setenv(progress.EnvMode, "always")
		code, stdout, stderr := l.run(t, tc.args...)
		if code != 0 || stdout != quietOut {
			t.Errorf("audit export %q with progress forced: exit %d, standard output changed:\n%s", tc.args, code, cmp.Diff(quietOut, stdout))
		}
		checkProgress(t, stderr, "exporting events", tc.read)
		finals := progressFinals(stderr)
		if len(finals) != 1 || !strings.HasSuffix(finals[0], "  "+tc.written) {
			t.Errorf("audit export %q: progress lines %q, want one ending %q", tc.args, finals, tc.written)
		}
		if _, after, _ := strings.Cut(stderr, "\x1b[K\n"); after != quietErr {
			t.Errorf("audit export %q: after the progress line stderr is %q, want the summary %q", tc.args, after, quietErr)
		}
	}

	// A trace export that exports nothing explains why on a line of its own.
	code, _, stderr := l.run(t, "--format", "trace", "--agent", "nobody")
	if code != 1 || !strings.Contains(stderr, "(100%)") || !strings.Contains(stderr, "\nno calls to export: none of the 5 calls") {
		t.Errorf("audit export --format trace --agent nobody with progress forced: exit %d, stderr %q", code, stderr)
	}
}

// An export written to the terminal shows no progress line: the events scrolling by
// show how far it got. /dev/null stands in for the terminal: it is a character device.
func TestAuditExportProgressToScreen(t *testing.T) {
	t.Parallel()
	dev, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil || !progress.Terminal(dev) {
		t.Skipf("%s is not a character device here (%v)", os.DevNull, err)
	}
	defer dev.Close()
	if m, _ := progress.ParseMode(os.Getenv(progress.EnvMode)); m != progress.Auto {
		t.Skipf("%s is set: it overrides what this test checks", progress.EnvMode)
	}
	l := exportNewLog(t)
	db, err := openReadOnly(t.Context(), filepath.Join(l.dir, "chaperone.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if bar := exportProgress(t.Context(), db, 0, true, dev); bar.Enabled() {
		bar.Stop()
		t.Errorf("exportProgress(to the screen) draws")
	}
	bar := exportProgress(t.Context(), db, 0, false, dev)
	if !bar.Enabled() {
		t.Fatalf("exportProgress(to a file, stderr a terminal) does not draw")
	}
	bar.Done()
}
