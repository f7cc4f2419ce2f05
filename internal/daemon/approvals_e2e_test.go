package daemon_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/chaperone-dev/chaperone/internal/api"
	"github.com/chaperone-dev/chaperone/internal/audit"
	"github.com/chaperone-dev/chaperone/internal/chaperonetest"
	"github.com/chaperone-dev/chaperone/internal/cli"
	"github.com/chaperone-dev/chaperone/internal/config"
	"github.com/chaperone-dev/chaperone/internal/gateway"
)

const approvalsPolicy = `rules:
  - {id: reads, match: {classes: [read]}, effect: allow}
  - {id: mail, match: {tools: [send_email]}, effect: allow}
  - {id: payments-need-a-person, match: {tools: [transfer_money]}, effect: approve}
`

// startApprovals runs a gateway with approvals on in front of the demo upstream.
func startApprovals(t *testing.T, configure func(*config.Config)) *chaperonetest.Gateway {
	t.Helper()
	return chaperonetest.Start(t, chaperonetest.Options{
		Upstreams: []config.Upstream{{Name: "demo", Builtin: "demo"}},
		Tools: []config.Tool{
			{Upstream: "demo", Name: "read_inbox", Class: "read"},
			{Upstream: "demo", Name: "send_email", Class: "external"},
			{Upstream: "demo", Name: "transfer_money", Class: "destructive", Undo: "ask the bank to recall the transfer within 24 hours"},
		},
		Policy: approvalsPolicy,
		Agents: []string{"finance"},
		Configure: func(c *config.Config) {
			c.Approvals.Enabled = nil
			hold := config.Duration(0)
			c.Approvals.Hold = &hold
			if configure != nil {
				configure(c)
			}
		},
	})
}

func payment(amount float64) map[string]any {
	return map[string]any{"recipient_iban": "DE02120300000000202051", "amount": amount, "currency": "EUR", "reference": "invoice 7"}
}

// arefusal returns the refusal's reason and approval id ("" and "" for a call that ran).
func arefusal(t *testing.T, res *mcp.CallToolResult) (reason, approvalID string) {
	t.Helper()
	return chaperonetest.Refusal(t, res), chaperonetest.RefusalField(res, "approval_id")
}

func TestApprovalPendingThenApprovedRunsOnce(t *testing.T) {
	t.Parallel()
	g := startApprovals(t, nil)
	cs := g.Connect(t, g.Agents["finance"].Token, "2025-11-25")
	reason, id := arefusal(t, chaperonetest.CallMeta(t, cs, "transfer_money", payment(120), mcp.Meta{gateway.MetaReason: "pay invoice 7 as Dana asked"}))
	if reason != "approval_pending" || !strings.HasPrefix(id, "apr_") {
		t.Fatalf("held call: %q %q, want approval_pending with an id", reason, id)
	}
	// The same call again without the id joins the same request instead of a new one.
	if _, again := arefusal(t, chaperonetest.CallMeta(t, cs, "transfer_money", payment(120), nil)); again != id {
		t.Errorf("repeated call got request %q, want %q", again, id)
	}
	var pending []api.Approval
	adminStatus(t, g, "GET", "/v1/approvals", nil, &pending)
	if len(pending) != 1 || pending[0].ID != id || pending[0].Reason != "pay invoice 7 as Dana asked" || pending[0].Risk == 0 || len(pending[0].RiskFactors) == 0 ||
		pending[0].Undo != "ask the bank to recall the transfer within 24 hours" {
		t.Fatalf("pending queue: %+v", pending)
	}
	// Retrying before a decision changes nothing.
	if r, _ := arefusal(t, chaperonetest.CallMeta(t, cs, "transfer_money", payment(120), mcp.Meta{gateway.MetaApproval: id})); r != "approval_pending" {
		t.Errorf("retry before approval: %q", r)
	}
	var approved api.Approval
	if code := adminStatus(t, g, "POST", "/v1/approvals/"+id+"/approve", map[string]string{"by": "bob"}, &approved); code != 200 || approved.Status != "approved" {
		t.Fatalf("approve: %d %+v", code, approved)
	}
	if code := adminStatus(t, g, "POST", "/v1/approvals/"+id+"/approve", map[string]string{"by": "carol"}, nil); code != http.StatusConflict {
		t.Errorf("second approve: %d, want 409", code)
	}
	// Changed arguments with the approval id need a new approval; the approval stays unused.
	r, other := arefusal(t, chaperonetest.CallMeta(t, cs, "transfer_money", payment(9999), mcp.Meta{gateway.MetaApproval: id}))
	if r != "approval_pending" || other == id || other == "" {
		t.Errorf("changed arguments: %q %q, want a new pending request", r, other)
	}
	if n := len(g.Demo.Transfers()); n != 0 {
		t.Fatalf("%d transfers before the approved call ran", n)
	}
	if r, _ := arefusal(t, chaperonetest.CallMeta(t, cs, "transfer_money", payment(120), mcp.Meta{gateway.MetaApproval: id})); r != "" {
		t.Fatalf("approved retry refused: %q", r)
	}
	if r, _ := arefusal(t, chaperonetest.CallMeta(t, cs, "transfer_money", payment(120), mcp.Meta{gateway.MetaApproval: id})); r != "approval_pending" {
		t.Errorf("second use of the approval: %q, want a new request (approval_pending)", r)
	}
	if n := len(g.Demo.Transfers()); n != 1 {
		t.Errorf("%d transfers, want exactly 1", n)
	}
	var shown api.Approval
	adminStatus(t, g, "GET", "/v1/approvals/"+id, nil, &shown)
	if shown.Status != "used" || shown.UsedAt.IsZero() || len(shown.Approvals) != 1 || shown.Approvals[0].By != "bob" {
		t.Errorf("used request: %+v", shown)
	}
	// The decision's record says how long the person took: from the request to approving.
	for _, e := range allEvents(t, g.Config.Store.SQLite) {
		if e.Kind == audit.KindApprovalApproved && e.Approval == id {
			if took := time.Duration(e.LatencyMicros) * time.Microsecond; took <= 0 || took > shown.DecidedAt.Sub(shown.CreatedAt)+time.Millisecond {
				t.Errorf("approval.approved latency %s; request made %s, decided %s", took, shown.CreatedAt, shown.DecidedAt)
			}
		}
	}
}

func TestApprovalHeldCallWaitsAndRacingApproversRunItOnce(t *testing.T) {
	t.Parallel()
	g := startApprovals(t, func(c *config.Config) {
		hold := config.Duration(20 * time.Second)
		c.Approvals.Hold = &hold
	})
	cs := g.Connect(t, g.Agents["finance"].Token, "2025-11-25")
	done := make(chan *mcp.CallToolResult, 1)
	go func() {
		res, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "transfer_money", Arguments: payment(50)})
		if err != nil {
			t.Error(err)
		}
		done <- res
	}()
	var id string
	chaperonetest.WaitFor(t, 10*time.Second, "a pending request", func() bool {
		var l []api.Approval
		adminStatus(t, g, "GET", "/v1/approvals", nil, &l)
		if len(l) == 1 {
			id = l[0].ID
		}
		return id != ""
	})
	var wins atomic.Int32
	var wg sync.WaitGroup
	for _, who := range []string{"bob", "carol", "dave", "erin"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if adminStatus(t, g, "POST", "/v1/approvals/"+id+"/approve", map[string]string{"by": who}, nil) == 200 {
				wins.Add(1)
			}
		}()
	}
	wg.Wait()
	select {
	case res := <-done:
		if r, _ := arefusal(t, res); r != "" {
			t.Fatalf("held call after approval: refused %q", r)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the held call did not proceed after approval")
	}
	if wins.Load() != 1 {
		t.Errorf("%d approvals succeeded, want exactly 1", wins.Load())
	}
	if n := len(g.Demo.Transfers()); n != 1 {
		t.Errorf("%d transfers, want exactly 1", n)
	}
}

func TestApprovalDeniedWithReasonAndWebhook(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var bodies []map[string]any
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var b map[string]any
		json.NewDecoder(r.Body).Decode(&b)
		mu.Lock()
		bodies = append(bodies, b)
		mu.Unlock()
	}))
	defer hook.Close()
	g := startApprovals(t, func(c *config.Config) {
		c.Approvals.Webhooks = []config.Webhook{{URL: hook.URL}}
		c.Approvals.URL = "https://chaperone.example.com"
	})
	cs := g.Connect(t, g.Agents["finance"].Token, "2025-11-25")
	_, id := arefusal(t, chaperonetest.CallMeta(t, cs, "transfer_money", payment(75), nil))
	if code := adminStatus(t, g, "POST", "/v1/approvals/"+id+"/deny", map[string]string{"by": "bob", "reason": "made_up"}, nil); code != http.StatusBadRequest {
		t.Errorf("unknown decline reason: %d, want 400", code)
	}
	if code := adminStatus(t, g, "POST", "/v1/approvals/"+id+"/deny", map[string]string{"by": "bob", "reason": "wrong_recipient", "text": "not our supplier"}, nil); code != 200 {
		t.Fatalf("deny: %d", code)
	}
	res := chaperonetest.CallMeta(t, cs, "transfer_money", payment(75), mcp.Meta{gateway.MetaApproval: id})
	if r, _ := arefusal(t, res); r != "approval_denied" || !strings.Contains(res.Content[0].(*mcp.TextContent).Text, "not our supplier") {
		t.Errorf("retry after deny: %q %v", r, res.Content)
	}
	var stats api.ApprovalReport
	adminStatus(t, g, "GET", "/v1/approvals/stats", nil, &stats)
	if stats.DeclineReasons["wrong_recipient"] != 1 || len(stats.Tools) != 1 || stats.Tools[0].Denied != 1 || stats.Tools[0].ApprovalRate != 0 {
		t.Errorf("stats: %+v", stats)
	}
	chaperonetest.WaitFor(t, 10*time.Second, "webhook deliveries", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(bodies) >= 2
	})
	mu.Lock()
	defer mu.Unlock()
	kinds := map[string]bool{}
	for _, b := range bodies {
		text, _ := b["text"].(string)
		ch, _ := b["chaperone"].(map[string]any)
		kinds[ch["kind"].(string)] = true
		if ch["id"] != id || !strings.Contains(text, "transfer_money") {
			t.Errorf("webhook body: %v", b)
		}
		if ch["kind"] == "approval.requested" && ch["url"] != "https://chaperone.example.com/approvals/"+id {
			t.Errorf("webhook url: %v", ch["url"])
		}
	}
	if !kinds["approval.requested"] || !kinds["approval.denied"] {
		t.Errorf("webhook kinds %v", kinds)
	}
}

func TestApprovalTwoPersonAndExpiry(t *testing.T) {
	t.Parallel()
	g := startApprovals(t, func(c *config.Config) {
		c.Approvals.TwoPerson = []string{"transfer_money"}
		c.Approvals.Timeout = config.Duration(5 * time.Second)
	})
	cs := g.Connect(t, g.Agents["finance"].Token, "2025-11-25")
	_, id := arefusal(t, chaperonetest.CallMeta(t, cs, "transfer_money", payment(300), nil))
	var a api.Approval
	adminStatus(t, g, "POST", "/v1/approvals/"+id+"/approve", map[string]string{"by": "bob"}, &a)
	if a.Status != "pending" || a.Required != 2 {
		t.Fatalf("after one approver: %+v", a)
	}
	if code := adminStatus(t, g, "POST", "/v1/approvals/"+id+"/approve", map[string]string{"by": "bob"}, nil); code != http.StatusConflict {
		t.Errorf("same approver twice: %d, want 409", code)
	}
	if code := adminStatus(t, g, "POST", "/v1/approvals/"+id+"/approve", map[string]string{"by": "carol"}, &a); code != 200 || a.Status != "approved" {
		t.Fatalf("second approver: %d %+v", code, a)
	}
	if r, _ := arefusal(t, chaperonetest.CallMeta(t, cs, "transfer_money", payment(300), mcp.Meta{gateway.MetaApproval: id})); r != "" {
		t.Fatalf("two-person approved call refused: %q", r)
	}

	// A request nobody decides expires, and counts as declined.
	_, late := arefusal(t, chaperonetest.CallMeta(t, cs, "transfer_money", payment(301), nil))
	chaperonetest.WaitFor(t, 20*time.Second, "the request to expire", func() bool {
		var l api.Approval
		adminStatus(t, g, "GET", "/v1/approvals/"+late, nil, &l)
		return l.Status == "expired"
	})
	if r, _ := arefusal(t, chaperonetest.CallMeta(t, cs, "transfer_money", payment(301), mcp.Meta{gateway.MetaApproval: late})); r != "approval_expired" {
		t.Errorf("retry of an expired request: %q", r)
	}
	if code := adminStatus(t, g, "POST", "/v1/approvals/"+late+"/approve", map[string]string{"by": "bob"}, nil); code != http.StatusConflict {
		t.Errorf("approving an expired request: %d, want 409", code)
	}
}

func TestApprovalsSurviveRestart(t *testing.T) {
	t.Parallel()
	first := startApprovals(t, nil)
	cs := first.Connect(t, first.Agents["finance"].Token, "2025-11-25")
	_, id := arefusal(t, chaperonetest.CallMeta(t, cs, "transfer_money", payment(42), nil))
	// The agent hangs up while its call is held: the refusal is on record with the id.
	cs.Close()
	first.Stop(t)

	second := startApprovals(t, func(c *config.Config) {
		c.DataDir = first.DataDir
		c.Store.SQLite = first.Config.Store.SQLite
		c.Admin.TokenFile = first.Config.Admin.TokenFile
	})
	if code := adminStatus(t, second, "POST", "/v1/approvals/"+id+"/approve", map[string]string{"by": "bob"}, nil); code != 200 {
		t.Fatalf("approve after restart: %d", code)
	}
	cs2 := second.Connect(t, second.Agents["finance"].Token, "2025-11-25")
	if r, _ := arefusal(t, chaperonetest.CallMeta(t, cs2, "transfer_money", payment(42), mcp.Meta{gateway.MetaApproval: id})); r != "" {
		t.Fatalf("approved call after restart refused: %q", r)
	}
	if n := len(second.Demo.Transfers()); n != 1 {
		t.Errorf("%d transfers, want 1", n)
	}
}

var _ = context.Background

func TestApprovalsCommandLine(t *testing.T) {
	t.Parallel()
	g := startApprovals(t, nil)
	cs := g.Connect(t, g.Agents["finance"].Token, "2025-11-25")
	_, id := arefusal(t, chaperonetest.CallMeta(t, cs, "transfer_money", map[string]any{"recipient_iban": "DE02120300000000202051", "amount": 64.0, "currency": "EUR", "reference": "sk_live_51HxQexampleexampleexample"}, nil))
	run := func(args ...string) (int, string) {
		var out, errb bytes.Buffer
		code := cli.Run(t.Context(), append(args, "--admin-url", g.AdminURL, "--token-file", g.Config.Admin.TokenFile), &out, &errb)
		return code, out.String() + errb.String()
	}
	if code, out := run("approvals", "list"); code != 0 || !strings.Contains(out, id) || !strings.Contains(out, "transfer_money") {
		t.Errorf("approvals list: %d\n%s", code, out)
	}
	code, out := run("approvals", "show", id)
	if code != 0 || !strings.Contains(out, "DE02120300000000202051") || !strings.Contains(out, "risk") || strings.Contains(out, "sk_live_51HxQ") || !strings.Contains(out, "[redacted]") {
		t.Errorf("approvals show: %d\n%s", code, out)
	}
	if code, out := run("approvals", "deny", id, "--as", "bob"); code != 2 || !strings.Contains(out, "--reason is required") {
		t.Errorf("deny without reason: %d %s", code, out)
	}
	if code, out := run("approvals", "approve", id, "--as", "bob"); code != 0 || !strings.Contains(out, "approved") {
		t.Errorf("approve: %d %s", code, out)
	}
	if code, out := run("approvals", "approve", id, "--as", "bob"); code == 0 || !strings.Contains(out, "already decided") {
		t.Errorf("second approve: %d %s", code, out)
	}
	if code, out := run("approvals", "stats"); code != 0 || !strings.Contains(out, "transfer_money") || !strings.Contains(out, "100%") {
		t.Errorf("stats: %d %s", code, out)
	}
}

func TestAutonomyEnforcedPromotedAndDemoted(t *testing.T) {
	t.Parallel()
	g := startApprovals(t, func(c *config.Config) {
		c.Autonomy.Enforce = true
		c.Agents[0].Autonomy = 1
		c.Risk.InternalDomains = []string{"example.com"}
		c.Autonomy.Promotion = config.Promotion{MinDays: 14, MinCalls: 1, MaxDenials: 0, MinApprovalRate: 0.5}
	})
	cs := g.Connect(t, g.Agents["finance"].Token, "2025-11-25")
	// Level 1: even a call the policy allows needs a person.
	if r, _ := arefusal(t, chaperonetest.CallMeta(t, cs, "send_email", map[string]any{"to": "lee@example.com", "subject": "hi", "body": "x"}, nil)); r != "approval_pending" {
		t.Fatalf("level-1 mail: %q, want approval_pending", r)
	}
	run := func(args ...string) (int, string) {
		var out, errb bytes.Buffer
		code := cli.Run(t.Context(), append(args, "--admin-url", g.AdminURL, "--token-file", g.Config.Admin.TokenFile), &out, &errb)
		return code, out.String() + errb.String()
	}
	// One call made, none denied, but not 14 days yet: not eligible.
	code, out := run("agent", "autonomy", "finance")
	if code != 0 || !strings.Contains(out, "autonomy 1 (configured 1), enforced") || !strings.Contains(out, "eligible for the next level: false") ||
		!strings.Contains(out, "days since first call") {
		t.Fatalf("agent autonomy: %d\n%s", code, out)
	}
	if code, out := run("agent", "autonomy", "finance", "--level", "2", "--by", "alice"); code == 0 || !strings.Contains(out, "not eligible") {
		t.Errorf("promotion while not eligible: %d %s", code, out)
	}
	if code, out := run("agent", "autonomy", "finance", "--level", "3", "--by", "alice"); code == 0 || !strings.Contains(out, "one level at a time") {
		t.Errorf("skipping a level: %d %s", code, out)
	}
	if code, out := run("agent", "autonomy", "finance", "--level", "2", "--by", "alice", "--reason", "trial", "--force"); code != 0 || !strings.Contains(out, "autonomy 2") {
		t.Fatalf("forced promotion: %d %s", code, out)
	}
	// Level 2: a low-risk mail runs, a payment (policy: approve) is still held.
	if r, _ := arefusal(t, chaperonetest.CallMeta(t, cs, "send_email", map[string]any{"to": "lee@example.com", "subject": "hi", "body": "x"}, nil)); r != "" {
		t.Errorf("level-2 low-risk mail: %q", r)
	}
	var rep api.AutonomyReport
	if code := adminStatus(t, g, "GET", "/v1/agents/finance/autonomy", nil, &rep); code != 200 || rep.Level != 2 {
		t.Errorf("autonomy report: %d %+v", code, rep)
	}
	if code := adminStatus(t, g, "GET", "/v1/agents/nobody/autonomy", nil, nil); code != 404 {
		t.Errorf("unknown agent: %d", code)
	}
}

func TestHeldCallSendsProgress(t *testing.T) {
	t.Parallel()
	g := startApprovals(t, func(c *config.Config) {
		hold := config.Duration(20 * time.Second)
		c.Approvals.Hold = &hold
	})
	progress := make(chan string, 8)
	client := mcp.NewClient(&mcp.Implementation{Name: "progress-test", Version: "1"}, &mcp.ClientOptions{
		ProgressNotificationHandler: func(_ context.Context, req *mcp.ProgressNotificationClientRequest) {
			progress <- req.Params.Message
		},
	})
	tr := &mcp.StreamableClientTransport{Endpoint: g.URL, HTTPClient: &http.Client{Transport: chaperonetest.BearerTransport(g.Agents["finance"].Token)}}
	cs, err := client.Connect(t.Context(), tr, &mcp.ClientSessionOptions{ProtocolVersion: "2025-11-25"})
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	done := make(chan *mcp.CallToolResult, 1)
	go func() {
		p := &mcp.CallToolParams{Name: "transfer_money", Arguments: payment(88)}
		p.SetProgressToken("pay-88")
		res, err := cs.CallTool(t.Context(), p)
		if err != nil {
			t.Error(err)
		}
		done <- res
	}()
	var msg string
	select {
	case msg = <-progress:
	case <-time.After(10 * time.Second):
		t.Fatal("no progress notification while the call was held")
	}
	if !strings.Contains(msg, "waiting for a person to approve this call (approval apr_") {
		t.Fatalf("progress message %q", msg)
	}
	id := msg[strings.Index(msg, "apr_") : len(msg)-1]
	if code := adminStatus(t, g, "POST", "/v1/approvals/"+id+"/approve", map[string]string{"by": "bob"}, nil); code != 200 {
		t.Fatalf("approve %s: %d", id, code)
	}
	select {
	case res := <-done:
		if r, _ := arefusal(t, res); r != "" || res.IsError {
			t.Fatalf("held call after approval: %q %v", r, res.Content)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the held call did not finish after approval")
	}
}

func TestSteeredCallDemotesTheAgent(t *testing.T) {
	t.Parallel()
	g := chaperonetest.Start(t, chaperonetest.Options{
		Upstreams: []config.Upstream{{Name: "demo", Builtin: "demo"}},
		Tools: []config.Tool{
			{Upstream: "demo", Name: "read_inbox", Class: "read", Flow: config.ToolFlow{Trust: "untrusted", Data: "private"}},
			{Upstream: "demo", Name: "send_email", Class: "external", Flow: config.ToolFlow{Trust: "trusted", Data: "public", Sinks: []string{"to"}}},
		},
		Policy: `rules:
  - {id: allow-all, effect: allow}
  - {id: no-untrusted-recipient, match: {tools: [send_email]}, when: 'sinks_from_untrusted()', effect: deny}
`,
		Agents: []string{"mailer"},
		Configure: func(c *config.Config) {
			c.Autonomy.Enforce = true
			c.Agents[0].Autonomy = 3
		},
	})
	cs := g.Connect(t, g.Agents["mailer"].Token, "2025-11-25")
	chaperonetest.Call(t, cs, "read_inbox", map[string]any{})
	// The demo inbox's injected instruction names this address.
	res := chaperonetest.Call(t, cs, "send_email", map[string]any{"to": "archive@examp1e-support.net", "subject": "fwd", "body": "x"})
	if r := chaperonetest.Refusal(t, res); r != "denied_by_policy" {
		t.Fatalf("steered mail: %q", r)
	}
	var rep api.AutonomyReport
	adminStatus(t, g, "GET", "/v1/agents/mailer/autonomy", nil, &rep)
	if rep.Level != 2 || rep.Configured != 3 {
		t.Errorf("after the violation: %+v, want level 2 of configured 3", rep)
	}
	g.Stop(t)
	found := false
	for _, e := range allEvents(t, g.Config.Store.SQLite) {
		if e.Kind == "agent.demoted" && e.Agent == "mailer" && strings.Contains(e.Detail, "autonomy 3 → 2") && strings.Contains(e.Detail, "no-untrusted-recipient") {
			found = true
		}
	}
	if !found {
		t.Error("no agent.demoted audit event naming the rule")
	}
}
