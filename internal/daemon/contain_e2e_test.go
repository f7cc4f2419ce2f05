package daemon_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
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
	"github.com/chaperone-dev/chaperone/internal/contain"
	"github.com/chaperone-dev/chaperone/internal/gateway"
	"github.com/chaperone-dev/chaperone/internal/store/sqlite"
)

// slowUpstream is a real MCP server over HTTP whose slow_write blocks until its request is
// cancelled (or a minute passes): it stands for a tool stuck in a long write.
type slowUpstream struct {
	URL       string
	started   chan struct{}
	cancelled atomic.Int64
	calls     atomic.Int64
}

func startSlowUpstream(t testing.TB) *slowUpstream {
	t.Helper()
	u := &slowUpstream{started: make(chan struct{}, 64)}
	s := mcp.NewServer(&mcp.Implementation{Name: "slow", Version: "1"}, nil)
	s.AddTool(&mcp.Tool{Name: "slow_write", Description: "Write slowly.", InputSchema: map[string]any{
		"type": "object", "properties": map[string]any{"n": map[string]any{"type": "number"}},
	}}, func(ctx context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		u.calls.Add(1)
		u.started <- struct{}{}
		select {
		case <-ctx.Done():
			u.cancelled.Add(1)
			return nil, ctx.Err()
		case <-time.After(time.Minute):
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "written"}}}, nil
		}
	})
	hs := httptest.NewServer(mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s }, nil))
	t.Cleanup(hs.Close)
	u.URL = hs.URL
	return u
}

const containPolicy = `rules:
  - {id: reads, match: {classes: [read]}, effect: allow}
  - {id: writes, match: {tools: [slow_write, create_ticket, send_email]}, effect: allow}
  - {id: payments-need-a-person, match: {tools: [transfer_money]}, effect: approve}
  - {id: never-delete, match: {tools: [delete_record]}, effect: deny}
`

func startContain(t testing.TB, slow *slowUpstream, configure func(*config.Config)) *chaperonetest.Gateway {
	t.Helper()
	policy := strings.Replace(containPolicy, "slow_write, ", "", 1)
	ups := []config.Upstream{{Name: "demo", Builtin: "demo"}}
	tools := []config.Tool{
		{Upstream: "demo", Name: "read_inbox", Class: "read"},
		{Upstream: "demo", Name: "create_ticket", Class: "write"},
		{Upstream: "demo", Name: "send_email", Class: "external"},
		{Upstream: "demo", Name: "delete_record", Class: "destructive"},
		{Upstream: "demo", Name: "transfer_money", Class: "destructive"},
	}
	if slow != nil {
		ups = append(ups, config.Upstream{Name: "slow", URL: slow.URL})
		tools = append(tools, config.Tool{Upstream: "slow", Name: "slow_write", Class: "write"})
		policy = containPolicy
	}
	return chaperonetest.Start(t, chaperonetest.Options{
		Upstreams: ups, Tools: tools, Policy: policy,
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

func auditKinds(t *testing.T, g *chaperonetest.Gateway, kind string) []audit.Event {
	t.Helper()
	var out []audit.Event
	for _, e := range allEvents(t, g.Config.Store.SQLite) {
		if e.Kind == kind {
			out = append(out, e)
		}
	}
	return out
}

// TestKillEndToEnd: a kill cancels the call in flight at its upstream, voids the held
// approval, refuses the next call, revokes tokens issued before it (they stay void after
// the lift), refuses new tokens while engaged, leaves other agents alone, and is audited.
func TestKillEndToEnd(t *testing.T) {
	slow := startSlowUpstream(t)
	g := startContain(t, slow, nil)
	cs := g.Connect(t, g.Agents["test-agent"].Token, "")

	// A call stuck at its upstream.
	inflight := make(chan *mcp.CallToolResult, 1)
	go func() { inflight <- chaperonetest.Call(t, cs, "slow_write", map[string]any{"n": 1}) }()
	select {
	case <-slow.started:
	case <-time.After(10 * time.Second):
		t.Fatal("slow_write never reached its upstream")
	}
	// A call held for a person.
	held := chaperonetest.CallMeta(t, g.Connect(t, g.Agents["test-agent"].Token, ""), "transfer_money", payment(50), mcp.Meta{gateway.MetaWait: false})
	approvalID := chaperonetest.RefusalField(held, "approval_id")
	if chaperonetest.Refusal(t, held) != "approval_pending" {
		t.Fatalf("transfer_money: %q, want approval_pending", chaperonetest.Refusal(t, held))
	}
	// Another agent, with an access token.
	secret := registerSecretAgent(t, g, "planner", "read_inbox")
	plannerTok := mustToken(t, g, "planner", secret, url.Values{"grant_type": {"client_credentials"}}).str("access_token")
	if got := callN(t, g, plannerTok, 1); got[0] != "" {
		t.Fatalf("planner before any kill: %q", got[0])
	}

	var res api.KillResult
	admin(t, g, "POST", "/v1/kills", map[string]any{"scope": "agent:test-agent", "by": "alice", "reason": "sending payments nobody asked for"}, 201, &res)
	if res.CancelledInFlight != 1 || res.StillRunning != 0 || res.VoidedApprovals != 1 || res.Kill.Scope.String() != "agent:test-agent" {
		t.Errorf("kill result = %+v, want 1 call cancelled and ended, 1 approval voided", res)
	}
	select {
	case r := <-inflight:
		if got := chaperonetest.Refusal(t, r); got != "killed" {
			t.Errorf("the call in flight ended with %q, want killed", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the call in flight was not cancelled")
	}
	chaperonetest.WaitFor(t, 5*time.Second, "the upstream to see its request cancelled", func() bool { return slow.cancelled.Load() == 1 })

	if got := chaperonetest.Refusal(t, chaperonetest.Call(t, cs, "read_inbox", map[string]any{})); got != "killed" {
		t.Errorf("a new call in scope: %q, want killed", got)
	}
	var ap api.Approval
	admin(t, g, "GET", "/v1/approvals/"+approvalID, nil, 200, &ap)
	if ap.Status != "denied" || ap.DenyCode != "killed" {
		t.Errorf("held approval after the kill: %s/%s, want denied/killed", ap.Status, ap.DenyCode)
	}
	if got := callN(t, g, plannerTok, 1); got[0] != "" {
		t.Errorf("an agent outside the scope was refused: %q", got[0])
	}
	if code := adminStatus(t, g, "POST", "/v1/kills", map[string]any{"scope": "agent:test-agent", "by": "bob", "reason": "again"}, nil); code != http.StatusConflict {
		t.Errorf("second kill of one scope: %d, want 409", code)
	}
	for _, body := range []map[string]any{
		{"scope": "robot:x", "by": "a", "reason": "r"},
		{"scope": "agent:x", "by": "a"},
		{"scope": "agent:x", "reason": "r"},
	} {
		if code := adminStatus(t, g, "POST", "/v1/kills", body, nil); code != http.StatusBadRequest {
			t.Errorf("kill %v: %d, want 400", body, code)
		}
	}

	// Killing an agent revokes its tokens and refuses new ones while engaged.
	admin(t, g, "POST", "/v1/kills", map[string]any{"scope": "agent:planner", "by": "alice", "reason": "investigating"}, 201, nil)
	if code, _ := mcpStatus(t, g, plannerTok); code != http.StatusUnauthorized {
		t.Errorf("planner's token after the kill: %d, want 401", code)
	}
	if r := formToken(t, g, []string{"planner", secret}, url.Values{"grant_type": {"client_credentials"}}); r.status != http.StatusForbidden || r.str("error") != "access_denied" {
		t.Errorf("token request while killed: %v, want 403 access_denied", r)
	}
	admin(t, g, "POST", "/v1/kills/lift", map[string]any{"scope": "agent:planner", "by": "alice", "reason": "cleared"}, 200, nil)
	if code, _ := mcpStatus(t, g, plannerTok); code != http.StatusUnauthorized {
		t.Errorf("a token issued before a lifted kill: %d, want 401 (revoked for good)", code)
	}
	time.Sleep(1100 * time.Millisecond) // token times are whole seconds
	fresh := mustToken(t, g, "planner", secret, url.Values{"grant_type": {"client_credentials"}}).str("access_token")
	if got := callN(t, g, fresh, 1); got[0] != "" {
		t.Errorf("a token issued after the lift: %q", got[0])
	}

	// The CLI lifts the first kill; a static agent token works again.
	var out, errb bytes.Buffer
	code := cli.Run(t.Context(), []string{"unkill", "agent:test-agent", "--reason", "payments reviewed", "--by", "alice",
		"--admin-url", g.AdminURL, "--token-file", g.Config.Admin.TokenFile}, &out, &errb)
	if code != 0 || !strings.Contains(out.String(), "lifted") {
		t.Fatalf("chaperone unkill: %d %s%s", code, out.String(), errb.String())
	}
	if got := chaperonetest.Refusal(t, chaperonetest.Call(t, cs, "read_inbox", map[string]any{})); got != "" {
		t.Errorf("a call after the lift: %q", got)
	}
	out.Reset()
	if code := cli.Run(t.Context(), []string{"kills", "--all", "--admin-url", g.AdminURL, "--token-file", g.Config.Admin.TokenFile}, &out, &errb); code != 0 ||
		!strings.Contains(out.String(), "agent:test-agent") || !strings.Contains(out.String(), "sending payments nobody asked for") {
		t.Errorf("chaperone kills --all: %d\n%s", code, out.String())
	}

	g.Stop(t)
	engaged := auditKinds(t, g, audit.KindKillEngaged)
	if len(engaged) != 2 || engaged[0].Scope != "agent:test-agent" || engaged[0].Reason != "sending payments nobody asked for" ||
		!strings.Contains(engaged[0].Detail, "by alice") || !strings.Contains(engaged[0].Detail, "1 calls in flight cancelled") {
		t.Errorf("kill.engaged events: %+v", engaged)
	}
	if lifted := auditKinds(t, g, audit.KindKillLifted); len(lifted) != 2 {
		t.Errorf("kill.lifted events: %d, want 2", len(lifted))
	}
	killedRefusals := 0
	for _, e := range allEvents(t, g.Config.Store.SQLite) {
		if e.Reason == "killed" && e.Scope == "agent:test-agent" {
			killedRefusals++
		}
	}
	if killedRefusals < 2 {
		t.Errorf("%d calls recorded as refused or cancelled by the kill, want at least 2", killedRefusals)
	}
}

// TestKillToolAndUpstreamScopes: a tool kill stops that tool for everyone, an upstream
// kill every tool it serves, and "all" everything.
func TestKillToolAndUpstreamScopes(t *testing.T) {
	var kinds sync.Map
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var m struct {
			Chaperone struct{ Kind, Scope, By string }
		}
		json.NewDecoder(r.Body).Decode(&m)
		kinds.Store(m.Chaperone.Kind+" "+m.Chaperone.Scope+" "+m.Chaperone.By, true)
	}))
	t.Cleanup(hook.Close)
	g := startContain(t, nil, func(c *config.Config) { c.Containment.Webhooks = []config.Webhook{{URL: hook.URL}} })
	cs := g.Connect(t, g.Agents["test-agent"].Token, "")
	try := func(tool string) string {
		args := map[string]any{}
		if tool == "create_ticket" {
			args = map[string]any{"title": fmt.Sprint(time.Now().UnixNano()), "body": "b"}
		}
		return chaperonetest.Refusal(t, chaperonetest.Call(t, cs, tool, args))
	}
	kill := func(scope string, lift bool) {
		path := "/v1/kills"
		want := 201
		if lift {
			path, want = "/v1/kills/lift", 200
		}
		admin(t, g, "POST", path, map[string]any{"scope": scope, "by": "ops", "reason": "test"}, want, nil)
	}
	kill("tool:create_ticket", false)
	if a, b := try("create_ticket"), try("read_inbox"); a != "killed" || b != "" {
		t.Errorf("tool kill: create_ticket %q, read_inbox %q", a, b)
	}
	kill("tool:create_ticket", true)
	kill("upstream:demo", false)
	if a, b := try("create_ticket"), try("read_inbox"); a != "killed" || b != "killed" {
		t.Errorf("upstream kill: %q %q", a, b)
	}
	kill("upstream:demo", true)
	kill("all", false)
	if a := try("read_inbox"); a != "killed" {
		t.Errorf("kill all: %q", a)
	}
	var ks []contain.Kill
	admin(t, g, "GET", "/v1/kills", nil, 200, &ks)
	if len(ks) != 1 || ks[0].Scope.Kind != contain.ScopeAll {
		t.Errorf("engaged kills: %+v", ks)
	}
	kill("all", true)
	if a := try("read_inbox"); a != "" {
		t.Errorf("after lifting every kill: %q", a)
	}
	for _, want := range []string{"kill.engaged tool:create_ticket ops", "kill.lifted upstream:demo ops", "kill.engaged all ops"} {
		if _, ok := kinds.Load(want); !ok {
			t.Errorf("no webhook %q", want)
		}
	}
}

// TestBreakerEndToEnd: repeated denials trip the agent's breaker, which degrades it to
// read-only (not blocked), is audited and announced; an operator resets it.
func TestBreakerEndToEnd(t *testing.T) {
	var hooks atomic.Int64
	var hookBody atomic.Value
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var b bytes.Buffer
		b.ReadFrom(r.Body)
		hookBody.Store(b.String())
		hooks.Add(1)
	}))
	t.Cleanup(hook.Close)
	g := startContain(t, nil, func(c *config.Config) {
		c.Containment.Breakers = config.Breakers{Triggers: []config.BreakerTrigger{{Signal: "denials", Threshold: 3, Window: config.Duration(time.Minute)}}}
		c.Containment.Webhooks = []config.Webhook{{URL: hook.URL}}
	})
	cs := g.Connect(t, g.Agents["test-agent"].Token, "")
	del := func(i int) string {
		return chaperonetest.Refusal(t, chaperonetest.Call(t, cs, "delete_record", map[string]any{"table": "customers", "id": fmt.Sprint(i)}))
	}
	ticket := func() string {
		return chaperonetest.Refusal(t, chaperonetest.Call(t, cs, "create_ticket", map[string]any{"title": fmt.Sprint(time.Now().UnixNano()), "body": "b"}))
	}
	if got := ticket(); got != "" {
		t.Fatalf("a write before the breaker tripped: %q", got)
	}
	for i := range 3 {
		if got := del(i); got != "denied_by_policy" {
			t.Fatalf("delete %d: %q", i, got)
		}
	}
	if got := ticket(); got != "breaker_open" {
		t.Errorf("a write after 3 denials: %q, want breaker_open", got)
	}
	if got := chaperonetest.Refusal(t, chaperonetest.Call(t, cs, "read_inbox", map[string]any{})); got != "" {
		t.Errorf("a read with the breaker open (read_only): %q, want it to run", got)
	}
	var bs []contain.BreakerStatus
	admin(t, g, "GET", "/v1/breakers", nil, 200, &bs)
	if len(bs) != 1 || bs[0].Agent != "test-agent" || bs[0].State != contain.BreakerOpen || bs[0].Signal != contain.SignalDenials {
		t.Fatalf("breakers: %+v", bs)
	}
	var out, errb bytes.Buffer
	if code := cli.Run(t.Context(), []string{"breaker", "show", "test-agent", "--admin-url", g.AdminURL, "--token-file", g.Config.Admin.TokenFile}, &out, &errb); code != 0 ||
		!strings.Contains(out.String(), "breaker open") || !strings.Contains(out.String(), "denials      3 of 3") {
		t.Errorf("chaperone breaker show: %d\n%s%s", code, out.String(), errb.String())
	}
	if code := cli.Run(t.Context(), []string{"task", "budget", "--admin-url", g.AdminURL}, &out, &errb); code != 2 {
		t.Errorf("chaperone task budget without an id: exit %d, want 2 (usage)", code)
	}
	chaperonetest.WaitFor(t, 5*time.Second, "the breaker webhook", func() bool { return hooks.Load() >= 1 })
	if b, _ := hookBody.Load().(string); !strings.Contains(b, `"agent":"test-agent"`) || !strings.Contains(b, `"to":"open"`) {
		t.Errorf("webhook body: %s", b)
	}
	if code := adminStatus(t, g, "POST", "/v1/breakers/test-agent/reset", map[string]any{"by": "alice"}, nil); code != http.StatusBadRequest {
		t.Errorf("reset without a reason: %d, want 400", code)
	}
	admin(t, g, "POST", "/v1/breakers/test-agent/reset", map[string]any{"by": "alice", "reason": "the deletes were a test"}, 200, nil)
	if got := ticket(); got != "" {
		t.Errorf("a write after the reset: %q", got)
	}
	if code := adminStatus(t, g, "POST", "/v1/breakers/test-agent/reset", map[string]any{"by": "alice", "reason": "again"}, nil); code != http.StatusConflict {
		t.Errorf("reset of a closed breaker: %d, want 409", code)
	}
	g.Stop(t)
	ev := auditKinds(t, g, audit.KindBreakerChanged)
	if len(ev) < 2 || ev[0].Decision != "open" || ev[0].Reason != "denials" || ev[len(ev)-1].Decision != "closed" || !strings.Contains(ev[len(ev)-1].Detail, "alice") {
		t.Errorf("breaker.changed events: %+v", ev)
	}
}

// TestBudgetsEndToEnd: a task's steps run out with a refusal naming the budget, reported
// spend counts, and a cap on an argument's sum cannot be overrun by concurrent calls.
func TestBudgetsEndToEnd(t *testing.T) {
	g := startContain(t, nil, func(c *config.Config) {
		c.Containment.Budgets = config.Budgets{MaxSteps: 4, MaxSpend: 1}
		c.Containment.Caps = []config.Cap{{Name: "emails-per-hour", Tools: []string{"send_email"}, Per: "agent", Window: config.Duration(time.Hour), Max: 10}}
		c.Containment.Loops.Enabled = new(bool)
		c.Approvals.Enabled = new(bool)
	})
	// Steps: per MCP session for a static token (sessions are a 2025-11-25 feature).
	cs := g.Connect(t, g.Agents["test-agent"].Token, "2025-11-25")
	var got []string
	for range 5 {
		got = append(got, chaperonetest.Refusal(t, chaperonetest.Call(t, cs, "read_inbox", map[string]any{})))
	}
	if strings.Join(got, ",") != ",,,,budget_exhausted" {
		t.Errorf("5 calls against 4 steps: %q", got)
	}
	res := chaperonetest.Call(t, cs, "read_inbox", map[string]any{})
	if msg := res.Content[0].(*mcp.TextContent).Text; !strings.Contains(msg, `budget "steps"`) || !strings.Contains(msg, "4 of 4") {
		t.Errorf("refusal message: %q, want it to name the steps budget", msg)
	}
	// Spend the agent reports counts against max_spend.
	cs2 := g.Connect(t, g.Agents["test-agent"].Token, "2025-11-25")
	usage := func(cost float64) mcp.Meta {
		return mcp.Meta{gateway.MetaUsage: map[string]any{"input_tokens": 100, "output_tokens": 20, "cost": cost}}
	}
	if res := chaperonetest.CallMeta(t, cs2, "read_inbox", map[string]any{}, usage(0.6)); chaperonetest.Refusal(t, res) != "" {
		t.Errorf("first call with 0.6 spent: %q", res.Content[0].(*mcp.TextContent).Text)
	}
	if r := chaperonetest.Refusal(t, chaperonetest.CallMeta(t, cs2, "read_inbox", map[string]any{}, usage(0.6))); r != "budget_exhausted" {
		t.Errorf("second call with 1.2 spent of 1: %q", r)
	}
	for _, bad := range []any{"lots", map[string]any{"cost": -1}, map[string]any{"input_tokens": 2e9}} {
		// A malformed report is a protocol error that names the key, not a refusal.
		_, err := cs2.CallTool(t.Context(), &mcp.CallToolParams{Name: "read_inbox", Arguments: map[string]any{}, Meta: mcp.Meta{gateway.MetaUsage: bad}})
		if err == nil || !strings.Contains(err.Error(), gateway.MetaUsage) {
			t.Errorf("usage %v: %v, want an invalid-params error naming %s", bad, err, gateway.MetaUsage)
		}
	}

	// The cap: 20 concurrent emails against a cap of 10 per agent — exactly 10 go out.
	var wg sync.WaitGroup
	var sent, capped atomic.Int64
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := g.Connect(t, g.Agents["test-agent"].Token, "2025-11-25")
			r := chaperonetest.Refusal(t, chaperonetest.Call(t, c, "send_email", map[string]any{"to": fmt.Sprintf("p%d@example.com", i), "subject": "s", "body": "b"}))
			switch r {
			case "":
				sent.Add(1)
			case "budget_exhausted":
				capped.Add(1)
			default:
				t.Errorf("email %d: %q", i, r)
			}
		}()
	}
	wg.Wait()
	if sent.Load() != 10 || capped.Load() != 10 {
		t.Errorf("20 concurrent emails under a cap of 10: %d sent, %d capped", sent.Load(), capped.Load())
	}
	if n := len(g.Demo.Outbox()); n != 10 {
		t.Errorf("the upstream sent %d emails, want 10", n)
	}
}

// TestRateLimitLoopsIdempotencyEndToEnd: a token bucket per agent, the same call repeated
// refused as a loop, and a retried write with an idempotency key executed once.
func TestRateLimitLoopsIdempotencyEndToEnd(t *testing.T) {
	g := startContain(t, nil, func(c *config.Config) {
		c.Containment.RateLimits = []config.RateLimit{{Per: "tool", Rate: "1/h", Burst: 3}}
		c.Containment.Loops = config.Loops{MaxRepeats: 2, Window: config.Duration(time.Minute)}
		c.Approvals.Enabled = new(bool)
	})
	cs := g.Connect(t, g.Agents["test-agent"].Token, "")
	var got []string
	for i := range 4 {
		got = append(got, chaperonetest.Refusal(t, chaperonetest.Call(t, cs, "send_email", map[string]any{"to": fmt.Sprintf("a%d@example.com", i), "subject": "s", "body": "b"})))
	}
	if strings.Join(got, ",") != ",,,rate_limited" {
		t.Errorf("4 emails against a burst of 3: %q", got)
	}
	got = nil
	for range 3 {
		got = append(got, chaperonetest.Refusal(t, chaperonetest.Call(t, cs, "read_inbox", map[string]any{"folder": "archive"})))
	}
	if strings.Join(got, ",") != ",,loop_detected" {
		t.Errorf("the same read 3 times with max_repeats 2: %q", got)
	}

	key := mcp.Meta{gateway.MetaIdempotencyKey: "ticket-42"}
	args := map[string]any{"title": "printer on fire", "body": "3rd floor"}
	first := chaperonetest.CallMeta(t, cs, "create_ticket", args, key)
	second := chaperonetest.CallMeta(t, cs, "create_ticket", args, key)
	if chaperonetest.Refusal(t, first) != "" || chaperonetest.Refusal(t, second) != "" {
		t.Fatalf("create_ticket with a key: %q then %q", chaperonetest.Refusal(t, first), chaperonetest.Refusal(t, second))
	}
	a, _ := json.Marshal(first.Content)
	b, _ := json.Marshal(second.Content)
	if !bytes.Equal(a, b) {
		t.Errorf("the retry's result differs from the first:\n%s\n%s", a, b)
	}
	if n := len(g.Demo.Tickets()); n != 1 {
		t.Errorf("the upstream created %d tickets for one key, want 1", n)
	}
	other := chaperonetest.CallMeta(t, cs, "create_ticket", map[string]any{"title": "other", "body": "b"}, key)
	if r := chaperonetest.Refusal(t, other); r != "idempotency_conflict" {
		t.Errorf("the key reused for another call: %q", r)
	}
	g.Stop(t)
	if d := auditKinds(t, g, audit.KindCallDeduplicated); len(d) != 1 || d[0].IdempotencyKey != "ticket-42" {
		t.Errorf("call.deduplicated events: %+v", d)
	}
}

// TestContainmentSurvivesRestart: a restart keeps a kill, an open breaker, a cap's use
// (rebuilt from the audit log) and an agent's baseline.
func TestContainmentSurvivesRestart(t *testing.T) {
	g := startContain(t, nil, func(c *config.Config) {
		c.Containment.Caps = []config.Cap{{Name: "emails", Tools: []string{"send_email"}, Per: "agent", Window: config.Duration(time.Hour), Max: 3}}
		c.Containment.Breakers = config.Breakers{Triggers: []config.BreakerTrigger{{Signal: "denials", Threshold: 2, Window: config.Duration(time.Minute)}}}
		c.Containment.Baselines.MinCalls = 2
		c.Approvals.Enabled = new(bool)
	})
	cs := g.Connect(t, g.Agents["test-agent"].Token, "")
	for i := range 2 {
		if r := chaperonetest.Refusal(t, chaperonetest.Call(t, cs, "send_email", map[string]any{"to": fmt.Sprintf("r%d@example.com", i), "subject": "s", "body": "b"})); r != "" {
			t.Fatalf("email %d: %q", i, r)
		}
	}
	// An operator trips another agent's breaker: it stays open until reset, restarts too.
	var b contain.BreakerStatus
	admin(t, g, "POST", "/v1/breakers/planner/trip", map[string]any{"by": "ops", "reason": "under review"}, 200, &b)
	if b.State != contain.BreakerOpen {
		t.Fatalf("planner's breaker before the restart: %+v", b)
	}
	admin(t, g, "POST", "/v1/kills", map[string]any{"scope": "tool:create_ticket", "by": "ops", "reason": "r"}, 201, nil)

	// A stored breaker the gateway cannot restore comes back open, not closed.
	g.Stop(t)
	db, err := sqlite.Open(t.Context(), g.Config.Store.SQLite)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.SetBreaker(t.Context(), sqlite.BreakerRecord{Agent: "mangled", State: "open", Signal: "vibes", OpenedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	db.Close()
	g.Restart(t)
	var m contain.BreakerStatus
	admin(t, g, "GET", "/v1/breakers/mangled", nil, 200, &m)
	if m.State != contain.BreakerOpen || m.By != "chaperone" || !strings.Contains(m.Detail, "could not be restored") {
		t.Errorf("an unreadable stored breaker after the restart: %+v, want it open", m)
	}
	cs = g.Connect(t, g.Agents["test-agent"].Token, "")
	got := []string{}
	for i := range 2 {
		got = append(got, chaperonetest.Refusal(t, chaperonetest.Call(t, cs, "send_email", map[string]any{"to": fmt.Sprintf("s%d@example.com", i), "subject": "s", "body": "b"})))
	}
	if strings.Join(got, ",") != ",budget_exhausted" {
		t.Errorf("emails after the restart with 2 of 3 used before: %q, want one more then budget_exhausted", got)
	}
	admin(t, g, "GET", "/v1/breakers/planner", nil, 200, &b)
	if b.State != contain.BreakerOpen || b.Signal != contain.SignalOperator {
		t.Errorf("planner's breaker after the restart: %+v, want still open, by an operator", b)
	}
	if r := chaperonetest.Refusal(t, chaperonetest.Call(t, cs, "create_ticket", map[string]any{"title": "t", "body": "b"})); r != "killed" {
		t.Errorf("a killed tool after the restart: %q", r)
	}
	var p contain.Profile
	admin(t, g, "GET", "/v1/agents/test-agent/baseline", nil, 200, &p)
	if p.Calls < 3 || p.Tools["send_email"] < 3 {
		t.Errorf("test-agent's baseline after the restart: %+v, want the calls before it too", p)
	}
}

// TestKillVoidsApprovals: a kill ends a call waiting for a person with killed, and an
// approval granted before the kill cannot be used after it is lifted.
func TestKillVoidsApprovals(t *testing.T) {
	g := startContain(t, nil, func(c *config.Config) {
		hold := config.Duration(20 * time.Second)
		c.Approvals.Hold = &hold
	})
	tok := g.Agents["test-agent"].Token
	// A call the agent waits on.
	waiting := make(chan *mcp.CallToolResult, 1)
	go func() { waiting <- chaperonetest.Call(t, g.Connect(t, tok, ""), "transfer_money", payment(10)) }()
	chaperonetest.WaitFor(t, 10*time.Second, "the held call's request", func() bool {
		var l []api.Approval
		admin(t, g, "GET", "/v1/approvals", nil, 200, &l)
		return len(l) == 1
	})
	// A call approved, not yet retried.
	cs := g.Connect(t, tok, "")
	second := chaperonetest.CallMeta(t, cs, "transfer_money", payment(20), mcp.Meta{gateway.MetaWait: false})
	id := chaperonetest.RefusalField(second, "approval_id")
	admin(t, g, "POST", "/v1/approvals/"+id+"/approve", map[string]any{"by": "alice"}, 200, nil)

	var res api.KillResult
	admin(t, g, "POST", "/v1/kills", map[string]any{"scope": "agent:test-agent", "by": "ops", "reason": "r"}, 201, &res)
	if res.CancelledInFlight != 1 || res.VoidedApprovals != 1 {
		t.Errorf("kill result %+v, want the waiting call cancelled and its request voided", res)
	}
	select {
	case r := <-waiting:
		if got := chaperonetest.Refusal(t, r); got != "killed" {
			t.Errorf("the call waiting for a person: %q, want killed", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the call waiting for a person was not cancelled")
	}
	admin(t, g, "POST", "/v1/kills/lift", map[string]any{"scope": "agent:test-agent", "by": "ops", "reason": "r"}, 200, nil)
	retry := chaperonetest.CallMeta(t, cs, "transfer_money", payment(20), mcp.Meta{gateway.MetaApproval: id, gateway.MetaWait: false})
	if got := chaperonetest.Refusal(t, retry); got != "approval_denied" || !strings.Contains(retry.Content[0].(*mcp.TextContent).Text, "voided by a kill switch") {
		t.Errorf("retry with an approval granted before the kill: %q %v, want approval_denied (voided)", got, retry.Content)
	}
	if n := len(g.Demo.Transfers()); n != 0 {
		t.Errorf("%d transfers ran, want none", n)
	}
}
