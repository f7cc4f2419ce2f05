package cli

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/chaperone-dev/chaperone/internal/approval"
	"github.com/chaperone-dev/chaperone/internal/audit"
	"github.com/chaperone-dev/chaperone/internal/progress"
	"github.com/chaperone-dev/chaperone/internal/report"
	"github.com/chaperone-dev/chaperone/internal/sign"
	"github.com/chaperone-dev/chaperone/internal/store"
	"github.com/chaperone-dev/chaperone/internal/store/pgtest"
	"github.com/chaperone-dev/chaperone/internal/store/postgres"
	"github.com/chaperone-dev/chaperone/internal/store/sqlite"
)

// repT0 is the start of the test window, 2026-03-01T09:00:00Z; the window is an hour.
var repT0 = time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)

func repAt(min int) time.Time { return repT0.Add(time.Duration(min) * time.Minute) }

// repLog is a store whose audit log holds a window's calls and events around it, with a
// signed checkpoint, and one approval request decided in the window.
type repLog struct {
	dataDir string // holds chaperone.db (SQLite) and audit-signing.key.pub
	db      string // the --db value
	keyFile string // the checkpoint signer's public key
	deny    int64  // seq of the call.refused the policy denied
}

// repFill writes the fixture into s, signs a checkpoint with priv, and returns the seq of
// the denied call.
func repFill(tb testing.TB, s store.Store, priv ed25519.PrivateKey) int64 {
	tb.Helper()
	ctx := tb.Context()
	log, err := audit.NewLog(ctx, s, audit.LogOptions{})
	if err != nil {
		tb.Fatal(err)
	}
	var deny, last int64
	for _, e := range []audit.Event{
		{Time: repAt(-30), Kind: audit.KindPolicyLoaded, PolicyVersion: "sha256:v1"},
		{Time: repAt(-10), Kind: audit.KindCallIntent, RequestID: "r0", Agent: "mail-bot", Decision: "allow", PolicyVersion: "sha256:v1"},
		{Time: repAt(1), Kind: audit.KindCallIntent, RequestID: "r1", Agent: "mail-bot", Decision: "allow", PolicyVersion: "sha256:v1"},
		{Time: repAt(2), Kind: audit.KindCallRefused, RequestID: "r2", Agent: "pay-bot", Decision: "deny", Reason: "denied_by_policy", PolicyVersion: "sha256:v1"},
		{Time: repAt(3), Kind: audit.KindCallRefused, RequestID: "r3", Agent: "pay-bot", Decision: "refused", Reason: "unknown_tool"},
		{Time: repAt(4), Kind: audit.KindApprovalApproved, Approval: "apr_mail", Agent: "mail-bot", Decision: "approved", LatencyMicros: 60e6},
		{Time: repAt(70), Kind: audit.KindCallIntent, RequestID: "r4", Agent: "mail-bot", Decision: "allow", PolicyVersion: "sha256:v1"},
	} {
		if err := log.Append(ctx, &e); err != nil {
			tb.Fatal(err)
		}
		if e.Kind == audit.KindCallRefused && e.Decision == "deny" {
			deny = e.Seq
		}
		last = e.Seq
	}
	if err := log.Close(context.Background()); err != nil {
		tb.Fatal(err)
	}
	tail, err := s.TailEvents(ctx, 1)
	if err != nil || len(tail) != 1 || tail[0].Seq != last {
		tb.Fatalf("TailEvents(1) = %v, %v", tail, err)
	}
	cp, err := audit.SignCheckpoint(priv, last, tail[0].Hash, repAt(80))
	if err != nil {
		tb.Fatal(err)
	}
	if err := s.SaveCheckpoint(ctx, cp); err != nil {
		tb.Fatal(err)
	}
	req := &approval.Request{ID: "apr_mail", CallHash: "sha256:00", Tool: "send_email", Upstream: "mail",
		Arguments: json.RawMessage(`{"to":"ceo@example.com"}`), Agent: "mail-bot", User: "alice", Status: approval.StatusPending,
		Required: 1, CreatedAt: repAt(3), ExpiresAt: repAt(30)}
	if err := s.CreateApproval(ctx, req); err != nil {
		tb.Fatal(err)
	}
	if _, err := s.AddApproval(ctx, req.ID, "carol", repAt(4)); err != nil {
		tb.Fatal(err)
	}
	return deny
}

// repNewLog builds the fixture in a SQLite store in a new data directory, with the
// signer's public key beside it.
func repNewLog(tb testing.TB) *repLog {
	tb.Helper()
	l := &repLog{dataDir: tb.TempDir()}
	l.db = filepath.Join(l.dataDir, "chaperone.db")
	s, err := sqlite.Open(tb.Context(), l.db)
	if err != nil {
		tb.Fatal(err)
	}
	defer s.Close()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	l.deny = repFill(tb, s, priv)
	pem, err := sign.MarshalPublicKey(pub)
	if err != nil {
		tb.Fatal(err)
	}
	l.keyFile = filepath.Join(l.dataDir, "audit-signing.key.pub")
	if err := os.WriteFile(l.keyFile, pem, 0o644); err != nil {
		tb.Fatal(err)
	}
	return l
}

// repRun runs `chaperone report` with args.
func repRun(tb testing.TB, args ...string) (code int, stdout, stderr string) {
	tb.Helper()
	var out, errb bytes.Buffer
	code = Run(tb.Context(), append([]string{"report"}, args...), &out, &errb)
	return code, out.String(), errb.String()
}

// repRead decodes the report.json written into dir.
func repRead(tb testing.TB, dir string) report.Report {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join(dir, report.JSONFile))
	if err != nil {
		tb.Fatal(err)
	}
	var r report.Report
	if err := json.Unmarshal(b, &r); err != nil {
		tb.Fatalf("report.json: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, report.HTMLFile)); err != nil {
		tb.Errorf("report.html: %v", err)
	}
	return r
}

var repWindow = []string{"--from", "2026-03-01T09:00:00Z", "--to", "2026-03-01T10:00:00Z"}

func TestReportCommand(t *testing.T) {
	t.Parallel()
	l := repNewLog(t)
	out := filepath.Join(t.TempDir(), "evidence")
	code, stdout, stderr := repRun(t, append(repWindow, "--data-dir", l.dataDir, "--out", out, "--title", "March")...)
	if code != 0 {
		t.Fatalf("report = %d\n%s%s", code, stdout, stderr)
	}
	want := regexp.MustCompile(`^wrote \S+/evidence/report.json and \S+/evidence/report.html
2026-03-01T09:00:00Z to 2026-03-01T10:00:00Z: 4 events, 3 call decisions \(1 allowed, 0 approved, 1 denied, 1 refused, 0 suggested\), 1 decision letters; audit log ok, 7 events verified, anchored by the checkpoint at event 7
$`)
	if !want.MatchString(stdout) {
		t.Errorf("report printed:\n%s\nwant it to match\n%s", stdout, want)
	}
	r := repRead(t, out)
	if r.Title != "March" || r.Figures.Calls != 3 || len(r.Letters) != 1 || r.Letters[0].Undo != report.NoUndo || !r.Verification.OK {
		t.Errorf("report.json: title %q, %d calls, letters %+v, verification %+v", r.Title, r.Figures.Calls, r.Letters, r.Verification)
	}
}

// A broken chain: the report is written and says so, and the command fails.
func TestReportCommandBroken(t *testing.T) {
	t.Parallel()
	l := repNewLog(t)
	s, err := sqlite.Open(t.Context(), l.db)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.SQL().ExecContext(t.Context(),
		`UPDATE audit_events SET event = replace(event, '"decision":"deny"', '"decision":"allow"') WHERE seq = ?`, l.deny); err != nil {
		t.Fatal(err)
	}
	s.Close()
	out := t.TempDir()
	code, stdout, stderr := repRun(t, append(repWindow, "--db", l.db, "--key", l.keyFile, "--out", out)...)
	if code != exitFail || !strings.Contains(stdout, "audit log BROKEN at event 4: event 4 edited") {
		t.Fatalf("report over a tampered log = %d\n%s%s\nwant status %d and the break", code, stdout, stderr, exitFail)
	}
	if r := repRead(t, out); r.Verification.OK || r.Verification.Broken.Seq != l.deny {
		t.Errorf("report.json verification = %+v, want broken at %d", r.Verification, l.deny)
	}
}

// With --key of a key that signed nothing, the stored checkpoint cannot be trusted: the
// chain does not verify.
func TestReportCommandWrongKey(t *testing.T) {
	t.Parallel()
	l := repNewLog(t)
	other, _, _ := ed25519.GenerateKey(rand.Reader)
	pem, _ := sign.MarshalPublicKey(other)
	keyFile := filepath.Join(t.TempDir(), "other.pub")
	if err := os.WriteFile(keyFile, pem, 0o644); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := repRun(t, append(repWindow, "--db", l.db, "--key", keyFile, "--out", t.TempDir())...)
	if code != exitFail || !strings.Contains(stdout, "not trustworthy") {
		t.Errorf("report with a key that signed nothing = %d\n%s%s", code, stdout, stderr)
	}
}

// --config reads the store, the default key's directory and the tools' undo from the
// configuration.
func TestReportCommandConfig(t *testing.T) {
	t.Parallel()
	l := repNewLog(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "chaperone.yaml")
	if err := os.WriteFile(cfg, []byte(`data_dir: `+l.dataDir+`
upstreams:
  - name: mail
    url: https://mail.example.com/mcp
tools:
  - {upstream: mail, name: send_email, class: external, undo: "Send a correction to the same recipients."}
agents:
  - id: mail-bot
    owner: ops@example.com
    token_sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
policy:
  paths: [policies]
`), 0o644); err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	code, stdout, stderr := repRun(t, append(repWindow, "--config", cfg, "--out", out)...)
	if code != 0 || !strings.Contains(stdout, "anchored by the checkpoint at event 7") {
		t.Fatalf("report --config = %d\n%s%s", code, stdout, stderr)
	}
	r := repRead(t, out)
	if len(r.Letters) != 1 || r.Letters[0].Undo != "Send a correction to the same recipients." || r.Letters[0].UndoFrom != "config" {
		t.Errorf("letters = %+v, want the configured undo", r.Letters)
	}
	var declared *report.Agent
	for i := range r.Agents {
		if r.Agents[i].ID == "mail-bot" {
			declared = &r.Agents[i]
		}
	}
	if declared == nil || declared.Source != "config" || declared.Owner != "ops@example.com" {
		t.Errorf("agents = %+v, want mail-bot declared in the configuration", r.Agents)
	}
}

// On PostgreSQL, through --db URL, as on SQLite.
func TestReportCommandPostgres(t *testing.T) {
	dsn := pgtest.DSN(t)
	s, err := postgres.Open(t.Context(), dsn, postgres.Options{})
	if err != nil {
		t.Fatal(err)
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	repFill(t, s, priv)
	s.Close()
	out := t.TempDir()
	code, stdout, stderr := repRun(t, append(repWindow, "--db", dsn, "--out", out)...)
	if code != 0 || !strings.Contains(stdout, "3 call decisions") || !strings.Contains(stdout, "audit log ok, 7 events verified") {
		t.Fatalf("report --db postgres = %d\n%s%s", code, stdout, stderr)
	}
	if r := repRead(t, out); len(r.Letters) != 1 || r.Verification.CheckpointsStored != 1 {
		t.Errorf("report.json on postgres: letters %+v, verification %+v", r.Letters, r.Verification)
	}
}

func TestReportCommandUsage(t *testing.T) {
	t.Parallel()
	l := repNewLog(t)
	out := t.TempDir()
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no from", []string{"--db", l.db, "--out", out}, "--from is required"},
		{"no out", []string{"--db", l.db, "--from", "24h"}, "--out is required"},
		{"bad from", []string{"--db", l.db, "--out", out, "--from", "yesterday"}, "--from: \"yesterday\": want an RFC 3339 time"},
		{"bad to", []string{"--db", l.db, "--out", out, "--from", "24h", "--to", "-5h"}, "--to:"},
		{"from after to", []string{"--db", l.db, "--out", out, "--from", "2026-03-02", "--to", "2026-03-01"}, "is not before --to"},
		{"from in the future", []string{"--db", l.db, "--out", out, "--from", "9999-01-01"}, "is not before now"},
		{"config and db", []string{"--config", "x.yaml", "--db", l.db, "--out", out, "--from", "24h"}, "give --config or --db/--data-dir, not both"},
		{"long title", []string{"--db", l.db, "--out", out, "--from", "24h", "--title", strings.Repeat("t", 201)}, "--title is 201 bytes, longer than 200"},
		{"argument", []string{"--db", l.db, "--out", out, "--from", "24h", "extra"}, `unexpected argument "extra"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			code, stdout, stderr := repRun(t, tc.args...)
			if code != exitUsage || !strings.Contains(stderr, tc.want) {
				t.Errorf("report %v = %d\n%s%s\nwant status %d and %q", tc.args, code, stdout, stderr, exitUsage, tc.want)
			}
		})
	}
	if entries, _ := os.ReadDir(out); len(entries) != 0 {
		t.Errorf("usage errors wrote %d files", len(entries))
	}
}

// A database that does not exist, or an output directory that cannot be made, is an error
// naming it.
func TestReportCommandFails(t *testing.T) {
	t.Parallel()
	l := repNewLog(t)
	missing := filepath.Join(t.TempDir(), "none.db")
	if code, stdout, stderr := repRun(t, "--db", missing, "--from", "24h", "--out", t.TempDir()); code != exitFail || !strings.Contains(stderr, "none.db") {
		t.Errorf("report of a missing database = %d\n%s%s", code, stdout, stderr)
	}
	file := filepath.Join(t.TempDir(), "plain")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(file, "sub")
	if code, stdout, stderr := repRun(t, append(repWindow, "--db", l.db, "--out", out)...); code != exitFail || !strings.Contains(stderr, out) {
		t.Errorf("report into %s = %d\n%s%s, want an error naming it", out, code, stdout, stderr)
	}
}

// Progress of report: none on a stderr that is not a terminal; with
// CHAPERONE_PROGRESS=always a line per phase: the events read from just before the
// window, every event of the log verified, the two files written. Standard output and
// the report are the same either way.
func TestReportCommandProgress(t *testing.T) {
	// Not parallel: it sets the environment.
	l := repNewLog(t)
	out := filepath.Join(t.TempDir(), "evidence")
	args := append(repWindow, "--data-dir", l.dataDir, "--out", out)
	t.Setenv(progress.EnvMode, "auto")
	code, quietOut, quietErr := repRun(t, args...)
	if code != 0 || quietErr != "" {
		t.Fatalf("report = %d, stderr %q; want 0 and nothing on stderr", code, quietErr)
	}
	quietReport := repRead(t, out)

	t.Setenv(progress.EnvMode, "always")
	code, stdout, stderr := repRun(t, args...)
	if code != 0 || stdout != quietOut {
		t.Errorf("report with progress forced = %d, standard output changed:\n%s\n---\n%s", code, quietOut, stdout)
	}
	r := repRead(t, out)
	r.GeneratedAt = quietReport.GeneratedAt
	if diff := cmp.Diff(quietReport, r); diff != "" {
		t.Errorf("report.json changed with progress forced (-without +with):\n%s", diff)
	}
	finals := progressFinals(stderr)
	if len(finals) != 3 {
		t.Fatalf("progress lines %q, want three phases", finals)
	}
	// Reading starts shortly before the window (where depends on a seek): all it read of
	// what it meant to.
	var done, total int64
	if _, err := fmt.Sscanf(finals[0], "reading events  %d/%d (100%%)", &done, &total); err != nil || done != total || done < 5 {
		t.Errorf("first progress line %q, want all events read from just before the window (%v)", finals[0], err)
	}
	checkProgress(t, stderr, "verifying the chain", r.Verification.Events)
	checkProgress(t, stderr, "writing the report", 2)
}
