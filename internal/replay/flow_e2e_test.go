package replay_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/chaperone-dev/chaperone/internal/audit"
	"github.com/chaperone-dev/chaperone/internal/chaperonetest"
	"github.com/chaperone-dev/chaperone/internal/config"
	"github.com/chaperone-dev/chaperone/internal/daemon"
	"github.com/chaperone-dev/chaperone/internal/gateway"
	"github.com/chaperone-dev/chaperone/internal/replay"
)

// flowPolicy allows the agents every tool and adds the information-flow preset's holds.
func flowPolicy(t *testing.T) string {
	t.Helper()
	preset, err := os.ReadFile(filepath.Join("..", "..", "policies", "presets", "information-flow.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return string(preset) + `
  - id: allow-agents
    match: {agents: [alice-agent, bob-agent]}
    effect: allow
`
}

// callWithPrompt calls a tool, reporting the user's prompt in _meta as an agent's host does.
func callWithPrompt(t *testing.T, cs *mcp.ClientSession, prompt, tool string, args map[string]any) *mcp.CallToolResult {
	t.Helper()
	var meta mcp.Meta
	if prompt != "" {
		meta = mcp.Meta{gateway.MetaPrompt: prompt}
	}
	return chaperonetest.CallMeta(t, cs, tool, args, meta)
}

// TestFlowReplaysLikeLive records a live session through a real gateway — the user's
// prompt reported in _meta, an inbox with an injected instruction, calls whose
// destinations come from the user, from the inbox or from nowhere — exports it from the
// audit log and replays it: every flow decision is the same.
func TestFlowReplaysLikeLive(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a gateway")
	}
	t.Parallel()
	untrustedPrivate := config.ToolFlow{Trust: "untrusted", Data: "private"}
	acts := func(sinks ...string) config.ToolFlow {
		return config.ToolFlow{Trust: "trusted", Data: "public", Sinks: sinks}
	}
	g := chaperonetest.Start(t, chaperonetest.Options{
		Upstreams: []config.Upstream{{Name: "demo", Builtin: "demo"}},
		Tools: []config.Tool{
			{Upstream: "demo", Name: "read_inbox", Class: "read", Flow: untrustedPrivate},
			{Upstream: "demo", Name: "read_file", Class: "read", Flow: untrustedPrivate},
			{Upstream: "demo", Name: "send_email", Class: "external", Flow: acts("to")},
			{Upstream: "demo", Name: "transfer_money", Class: "destructive", Flow: acts("recipient_iban")},
			{Upstream: "demo", Name: "create_ticket", Class: "write", Flow: acts()},
		},
		Policy: flowPolicy(t),
		Agents: []string{"alice-agent", "bob-agent"},
		Configure: func(c *config.Config) {
			c.Audit = config.Audit{Capture: config.CaptureArgumentsAndResults}
		},
	})
	alice := g.Connect(t, g.Agents["alice-agent"].Token, "2025-11-25")
	bob := g.Connect(t, g.Agents["bob-agent"].Token, "") // sessionless: his agent's context

	mail := func(to string) map[string]any {
		return map[string]any{"to": to, "subject": "Re: your message", "body": "Noted."}
	}
	pay := func(iban string) map[string]any {
		return map[string]any{"recipient_iban": iban, "amount": 184.2, "currency": "EUR", "reference": "NE-2024-031877"}
	}
	const prompt = "Summarise my unread mail, then pay the Northwind bill to DE89 3704 0044 0532 0130 00 and tell maria.schneider@example.com it is done."
	steps := []struct {
		cs       *mcp.ClientSession
		prompt   string
		tool     string
		args     map[string]any
		wantCode string
		explain  string // part of the refusal's explanation
	}{
		{alice, prompt, "read_inbox", map[string]any{}, "", ""},
		// The injected instruction's address came only from the inbox.
		{alice, "", "send_email", mail("archive@examp1e-support.net"), "approval_required",
			"to archive@examp1e-support.net first appeared in the result of read_inbox(), which is untrusted"},
		// The user named the account (with spaces) and Maria's address.
		{alice, "", "transfer_money", pay("DE89370400440532013000"), "", ""},
		{alice, "", "send_email", mail("Maria.Schneider@example.com"), "", ""},
		// Jonas's address is in the inbox only: a person decides.
		{alice, "", "send_email", mail("jonas.weber@example.com"), "approval_required", "first appeared in the result of read_inbox()"},
		// An account from nowhere, after untrusted private content: the Rule of Two.
		{alice, "", "transfer_money", pay("FR7630006000011234567890189"), "approval_required", "this session has seen untrusted content"},
		// Internal writes without a destination are not held.
		{alice, "", "create_ticket", map[string]any{"title": "Badge reader on floor 3", "body": "Flaky."}, "", ""},
		// Bob works without a session: his calls share one context.
		{bob, "", "read_file", map[string]any{"path": "/srv/demo/bills/march.txt"}, "", ""},
		{bob, "", "send_email", mail("lee@example.com"), "approval_required", "this session has seen untrusted content"},
	}
	for i, s := range steps {
		res := callWithPrompt(t, s.cs, s.prompt, s.tool, s.args)
		if got := refusalCode(res); got != s.wantCode {
			t.Fatalf("live step %d (%s %v): refusal %q, want %q: %s", i, s.tool, s.args, got, s.wantCode, chaperonetest.Refusal(t, res))
		}
		if s.explain != "" {
			if e := chaperonetest.RefusalField(res, "explanation"); !strings.Contains(e, s.explain) {
				t.Errorf("live step %d (%s): explanation %q, want it to contain %q", i, s.tool, e, s.explain)
			}
		}
	}
	// A fresh session starts clean: Jonas's address is no longer tainted there.
	fresh := g.Connect(t, g.Agents["alice-agent"].Token, "2025-11-25")
	if got := refusalCode(callWithPrompt(t, fresh, "", "send_email", mail("jonas.weber@example.com"))); got != "" {
		t.Errorf("fresh session: refusal %q, want the call to run", got)
	}
	g.Stop(t)

	dbPath := g.Config.Store.SQLite
	live := map[string]liveDecision{}
	for _, e := range auditEvents(t, dbPath) {
		switch e.Kind {
		case audit.KindCallIntent:
			live[e.RequestID] = liveDecision{Effect: e.Decision, Rules: e.Rules}
		case audit.KindCallRefused:
			live[e.RequestID] = liveDecision{Effect: e.Decision, Reason: e.Reason, Rules: e.Rules}
			if e.Reason == "approval_required" && e.Explanation == "" {
				t.Errorf("refused call %s: no explanation in the audit event", e.RequestID)
			}
		}
	}
	out := filepath.Join(t.TempDir(), "trace.jsonl")
	if code, _, stderr := runCLI(t, "audit", "export", "--format", "trace", "--db", dbPath, "--out", out); code != 0 {
		t.Fatalf("audit export: exit %d, stderr:\n%s", code, stderr)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), `"type":"prompt"`) {
		t.Fatalf("the exported trace has no prompt record:\n%s", data)
	}
	tr, err := replay.ReadTrace(strings.NewReader(string(data)))
	if err != nil {
		t.Fatal(err)
	}
	srcs, err := daemon.ReadPolicySources(g.Config.Policy.Paths)
	if err != nil {
		t.Fatal(err)
	}
	defs, err := replay.LoadDefinitions(t.Context(), g.Config, dbPath, "")
	if err != nil {
		t.Fatal(err)
	}
	// Live, approvals are not enabled, so a held call was refused: replay it the same way.
	rep, err := replay.Run(t.Context(), replay.Options{Config: g.Config, Trace: tr, Policy: srcs, Definitions: defs, Approvals: replay.ApprovalsDenied})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Decisions) != len(steps)+1 {
		t.Fatalf("replayed %d calls, want %d", len(rep.Decisions), len(steps)+1)
	}
	for _, d := range rep.Decisions {
		got := liveDecision{Effect: d.Effect, Reason: d.Reason, Rules: d.Rules}
		if diff := cmp.Diff(live[d.ID], got, cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("call %s (%s): replayed decision differs from the live one (-live +replay):\n%s", d.ID, d.Tool, diff)
		}
	}
}
