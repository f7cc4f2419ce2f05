package replay_test

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/chaperone-dev/chaperone/internal/audit"
	"github.com/chaperone-dev/chaperone/internal/chaperonetest"
	"github.com/chaperone-dev/chaperone/internal/cli"
	"github.com/chaperone-dev/chaperone/internal/config"
	"github.com/chaperone-dev/chaperone/internal/daemon"
	"github.com/chaperone-dev/chaperone/internal/replay"
	"github.com/chaperone-dev/chaperone/internal/store/sqlite"
)

const exportPolicy = `
rules:
  - id: reads
    match: {agents: [alice-agent], classes: [read]}
    effect: allow
  - id: internal-mail
    match: {tools: [send_email]}
    when: args.to.endsWith("@example.com")
    effect: allow
  - id: no-external-mail
    match: {tools: [send_email]}
    when: '!args.to.endsWith("@example.com")'
    effect: deny
  - id: payments
    match: {tools: [transfer_money]}
    effect: approve
  - id: never-delete
    match: {tools: [delete_record]}
    effect: deny
`

// secretValue looks like a credential an agent might pass in arguments.
const secretValue = "sk-live-51HxQ-export-test-secret"

// startExportGateway runs a real gateway in front of the demo upstream with the given
// audit.capture, a 4 KiB capture bound, and two agents: alice-agent (any tool) and
// bob-agent (read_inbox only).
func startExportGateway(t *testing.T, capture string) *chaperonetest.Gateway {
	t.Helper()
	tool := func(name, class string) config.Tool { return config.Tool{Upstream: "demo", Name: name, Class: class} }
	return chaperonetest.Start(t, chaperonetest.Options{
		Upstreams: []config.Upstream{{Name: "demo", Builtin: "demo"}},
		Tools: []config.Tool{
			tool("read_inbox", "read"), tool("read_file", "read"), tool("send_email", "external"),
			tool("transfer_money", "destructive"), tool("delete_record", "destructive"), tool("create_ticket", "write"),
		},
		Policy: exportPolicy,
		Agents: []string{"alice-agent", "bob-agent"},
		Configure: func(c *config.Config) {
			c.Audit = config.Audit{Capture: capture, CaptureMaxBytes: 4096}
			c.Agents[1].Capabilities = []string{"read_inbox"}
		},
	})
}

var callTool = chaperonetest.Call

// refusalCode is the Chaperone reason code of a refused call, "" for a call that ran.
func refusalCode(res *mcp.CallToolResult) string {
	m, _ := res.Meta["dev.chaperone/refusal"].(map[string]any)
	code, _ := m["reason"].(string)
	return code
}

// auditEvents reads every event of the gateway's store, offline.
func auditEvents(t *testing.T, dbPath string) []audit.Event {
	t.Helper()
	db, err := sqlite.OpenReadOnly(t.Context(), dbPath)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var all []audit.Event
	for {
		evs, err := db.ScanEvents(t.Context(), int64(len(all)), 1000)
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) == 0 {
			return all
		}
		all = append(all, evs...)
	}
}

// runCLI runs the chaperone command line.
func runCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = cli.Run(t.Context(), args, &out, &errb)
	return code, out.String(), errb.String()
}

// liveDecision is what the gateway decided for one call, in replay's terms.
type liveDecision struct {
	Effect, Reason string
	Rules          []string
}

// TestExportReplaysLikeLive is the export's contract: calls made through a real gateway
// with capture on, exported from its audit log and replayed with the same configuration
// and policy, are decided exactly as they were live.
func TestExportReplaysLikeLive(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a gateway")
	}
	t.Parallel()
	g := startExportGateway(t, config.CaptureArgumentsAndResults)
	// alice-agent speaks a revision with MCP sessions, bob-agent the sessionless one: each
	// of bob's calls is a session of its own.
	alice := g.Connect(t, g.Agents["alice-agent"].Token, "2025-11-25")
	bob := g.Connect(t, g.Agents["bob-agent"].Token, "")

	mail := func(to string) map[string]any {
		return map[string]any{"to": to, "subject": "hi", "body": "token " + secretValue}
	}
	calls := []struct {
		cs       *mcp.ClientSession
		tool     string
		args     any
		wantCode string // the live refusal; "" for a call that ran
	}{
		{alice, "read_inbox", map[string]any{}, ""},
		{alice, "read_file", map[string]any{"path": "/srv/demo/bills/march.txt"}, ""},
		{alice, "send_email", mail("bob@example.com"), ""},
		{alice, "send_email", mail("eve@elsewhere.net"), "denied_by_policy"},
		{alice, "transfer_money", map[string]any{"recipient_iban": "DE89370400440532013000", "amount": 98.7, "currency": "EUR"}, "approval_required"},
		{alice, "delete_record", map[string]any{"table": "orders", "id": "r-1"}, "denied_by_policy"},
		{alice, "create_ticket", map[string]any{"title": "x", "body": "y"}, "denied_by_policy"},                         // no rule allows
		{alice, "read_file", map[string]any{"path": 42}, "invalid_arguments"},                                           // schema
		{alice, "send_email", map[string]any{"to": "bob@example.com"}, "invalid_arguments"},                             // required arguments missing
		{alice, "no_such_tool", map[string]any{"q": 1}, "unknown_tool"},                                                 // not in the registry
		{bob, "read_inbox", map[string]any{"limit": 3}, "denied_by_policy"},                                             // reads rule is alice's
		{bob, "read_file", map[string]any{"path": "/srv/demo/bills/march.txt"}, "out_of_scope"},                         // not in bob's capabilities
		{alice, "create_ticket", map[string]any{"title": "big", "body": strings.Repeat("b", 5000)}, "denied_by_policy"}, // too large to capture
		{alice, "read_inbox", nil, ""}, // no arguments at all
	}
	for i, c := range calls {
		if got := refusalCode(callTool(t, c.cs, c.tool, c.args)); got != c.wantCode {
			t.Fatalf("live call %d (%s): refusal %q, want %q", i, c.tool, got, c.wantCode)
		}
	}
	g.Stop(t)
	dbPath := g.Config.Store.SQLite

	// What was decided live, by request id, in replay's terms: a refusal before the policy
	// decided ("refused") is a deny.
	events := auditEvents(t, dbPath)
	live := map[string]liveDecision{}
	var order []string
	for _, e := range events {
		switch e.Kind {
		case audit.KindCallIntent:
			live[e.RequestID] = liveDecision{Effect: e.Decision, Rules: e.Rules}
		case audit.KindCallRefused:
			d := liveDecision{Effect: e.Decision, Reason: e.Reason, Rules: e.Rules}
			if d.Effect == "refused" {
				d.Effect = replay.EffectDeny
			}
			live[e.RequestID] = d
		default:
			continue
		}
		order = append(order, e.RequestID)
		if e.Kind == audit.KindCallIntent && e.Tool == "send_email" && e.Captured != audit.CapturedArguments {
			t.Errorf("intent of send_email: captured %q, want arguments", e.Captured)
		}
		if e.Tool == "create_ticket" && strings.Contains(e.ArgsSummary, "string(5000)") {
			if e.Captured != audit.CapturedTooLarge || len(e.Arguments) != 0 {
				t.Errorf("oversized arguments: captured %q with %d bytes, want %q and none", e.Captured, len(e.Arguments), audit.CapturedTooLarge)
			}
		}
	}
	if len(order) != len(calls) {
		t.Fatalf("audit log holds %d calls, want %d", len(order), len(calls))
	}
	if rep, err := audit.Verify(t.Context(), mustOpen(t, dbPath)); err != nil || rep.Broken != nil {
		t.Fatalf("audit.Verify = %+v, %v; want an intact chain", rep, err)
	}

	out := filepath.Join(t.TempDir(), "trace.jsonl")
	code, _, stderr := runCLI(t, "audit", "export", "--format", "trace", "--db", dbPath, "--out", out)
	if code != 0 {
		t.Fatalf("audit export: exit %d, stderr:\n%s", code, stderr)
	}
	wantSummary := "exported " + strconv.Itoa(len(calls)-1) + " calls in 2 sessions"
	if !strings.Contains(stderr, wantSummary) || !strings.Contains(stderr, "skipped 1 calls (arguments not captured: larger than audit.capture_max_bytes: 1)") {
		t.Errorf("audit export stderr:\n%s\nwant %q and one call skipped as too large", stderr, wantSummary)
	}
	if fi, err := os.Stat(out); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("trace file: %v, %v; want mode 0600", fi, err)
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr, err := replay.ReadTrace(f)
	if err != nil {
		t.Fatalf("ReadTrace(export): %v", err)
	}
	var sessions []string
	for _, s := range tr.Sessions {
		sessions = append(sessions, s.Agent+" "+strings.SplitN(s.ID, "_", 2)[0])
	}
	// The gateway's session ids are "ses_<random>"; bob's sessionless calls share his
	// agent's context.
	if diff := cmp.Diff([]string{"alice-agent ses", "bob-agent agent-bob-agent"}, sessions); diff != "" {
		t.Errorf("trace sessions (agent and id prefix) (-want +got):\n%s", diff)
	}
	withResult := 0
	for _, c := range tr.Calls {
		if c.Result != nil {
			withResult++
		}
	}
	if withResult == 0 {
		t.Errorf("no exported call carries its result")
	}

	srcs, err := daemon.ReadPolicySources(g.Config.Policy.Paths)
	if err != nil {
		t.Fatal(err)
	}
	defs, err := replay.LoadDefinitions(t.Context(), g.Config, dbPath, "")
	if err != nil {
		t.Fatal(err)
	}
	rep, err := replay.Run(t.Context(), replay.Options{Config: g.Config, Trace: tr, Policy: srcs, Definitions: defs})
	if err != nil {
		t.Fatalf("replay.Run: %v", err)
	}
	if len(rep.Warnings) != 0 {
		t.Errorf("replay warnings: %q", rep.Warnings)
	}
	var replayed []string
	for _, d := range rep.Decisions {
		replayed = append(replayed, d.ID)
		got := liveDecision{Effect: d.Effect, Reason: d.Reason, Rules: d.Rules}
		if diff := cmp.Diff(live[d.ID], got, cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("call %s (%s): replayed decision differs from the live one (-live +replay):\n%s", d.ID, d.Tool, diff)
		}
	}
	// Log order, without the call whose arguments were too large to capture.
	var wantOrder []string
	for i, id := range order {
		if i != len(calls)-2 {
			wantOrder = append(wantOrder, id)
		}
	}
	if diff := cmp.Diff(wantOrder, replayed); diff != "" {
		t.Errorf("replayed calls (-log order +trace order):\n%s", diff)
	}

	t.Run("since", func(t *testing.T) {
		// After the event of the 11th call: bob's two calls and alice's last call remain,
		// one of them too large.
		var after int64
		for _, e := range events {
			if e.RequestID == order[10] {
				after = e.Seq
				break
			}
		}
		code, stdout, stderr := runCLI(t, "audit", "export", "--format", "trace", "--db", dbPath, "--since", strconv.FormatInt(after, 10))
		if code != 0 {
			t.Fatalf("audit export --since %d: exit %d, stderr:\n%s", after, code, stderr)
		}
		tr, err := replay.ReadTrace(strings.NewReader(stdout))
		if err != nil {
			t.Fatalf("ReadTrace(export --since): %v", err)
		}
		var ids []string
		for _, c := range tr.Calls {
			ids = append(ids, c.ID)
		}
		if diff := cmp.Diff([]string{order[11], order[13]}, ids); diff != "" {
			t.Errorf("export --since %d calls (-want +got):\n%s", after, diff)
		}
	})

	t.Run("deterministic", func(t *testing.T) {
		_, a, _ := runCLI(t, "audit", "export", "--format", "trace", "--db", dbPath)
		_, b, _ := runCLI(t, "audit", "export", "--format", "trace", "--db", dbPath)
		want, _ := os.ReadFile(out)
		if a != b || a != string(want) {
			t.Errorf("two exports of one log differ")
		}
	})
}

func mustOpen(t *testing.T, path string) *sqlite.DB {
	t.Helper()
	db, err := sqlite.OpenReadOnly(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// With capture off (the default), argument values reach no event and not the database
// file, and an export explains that there is nothing it can export, and why.
func TestExportCaptureOff(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a gateway")
	}
	t.Parallel()
	g := startExportGateway(t, config.CaptureNone)
	alice := g.Connect(t, g.Agents["alice-agent"].Token, "")
	callTool(t, alice, "send_email", map[string]any{"to": "bob@example.com", "subject": "key", "body": secretValue})
	callTool(t, alice, "send_email", map[string]any{"to": "eve@elsewhere.net", "subject": "key", "body": secretValue})
	callTool(t, alice, "create_ticket", map[string]any{"title": secretValue, "body": "x"})
	g.Stop(t)

	for _, e := range auditEvents(t, g.Config.Store.SQLite) {
		if e.Captured != "" || e.Arguments != nil || e.Result != nil {
			t.Errorf("event %d (%s) with capture off: captured %q, arguments %s, result %s", e.Seq, e.Kind, e.Captured, e.Arguments, e.Result)
		}
	}
	// The database, its WAL, the audit journal, the admin token, ...
	err := filepath.WalkDir(filepath.Dir(g.Config.Store.SQLite), func(path string, ent fs.DirEntry, err error) error {
		if err != nil || ent.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if bytes.Contains(b, []byte(secretValue)) {
			t.Errorf("%s holds the argument value %q with capture off", path, secretValue)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	code, stdout, stderr := runCLI(t, "audit", "export", "--format", "trace", "--data-dir", g.DataDir)
	if code != 1 || stdout != "" {
		t.Errorf("audit export with nothing captured: exit %d, stdout %q; want 1 and nothing", code, stdout)
	}
	for _, want := range []string{"no calls exported: 3 calls were recorded without their arguments", "audit.capture", "arguments_and_results"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("audit export stderr:\n%s\nwant it to contain %q", stderr, want)
		}
	}
}

func TestExportCommandUsage(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"audit", "export", "--format", "csv"},
		{"audit", "export"},
		{"audit", "export", "--format", "trace", "--since", "-1"},
	} {
		code, _, stderr := runCLI(t, args...)
		if code != 2 || !strings.Contains(stderr, "chaperone audit:") {
			t.Errorf("%q: exit %d, stderr %q; want a usage error (2)", args, code, stderr)
		}
	}
	code, _, stderr := runCLI(t, "audit", "export", "--format", "trace", "--data-dir", filepath.Join(t.TempDir(), "nowhere"))
	if code != 1 || !strings.Contains(stderr, "nowhere") {
		t.Errorf("export of a missing database: exit %d, stderr %q; want 1 naming it", code, stderr)
	}
}
