package daemon_test

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/chaperone-dev/chaperone/internal/chaperonetest"
	"github.com/chaperone-dev/chaperone/internal/config"
	"github.com/chaperone-dev/chaperone/internal/daemon"
	"github.com/chaperone-dev/chaperone/internal/policy"
	"github.com/chaperone-dev/chaperone/internal/policy/suite"
)

func startDemo(t *testing.T, configure func(*config.Config)) *chaperonetest.Gateway {
	t.Helper()
	return chaperonetest.Start(t, chaperonetest.Options{
		Upstreams: []config.Upstream{{Name: "demo", Builtin: "demo"}},
		Tools:     []config.Tool{{Upstream: "demo", Name: "read_inbox", Class: "read"}, {Upstream: "demo", Name: "create_ticket", Class: "write"}},
		Policy:    "rules:\n  - id: all\n    effect: allow\n",
		Configure: configure,
	})
}

// TestProtocolVersions connects the official SDK client with each protocol revision the
// gateway serves and makes a call with each.
func TestProtocolVersions(t *testing.T) {
	g := startDemo(t, nil)
	tok := g.Agents["test-agent"].Token
	for _, v := range []string{"", "2026-07-28", "2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"} {
		t.Run("version "+v, func(t *testing.T) {
			cs := g.Connect(t, tok, v)
			want := v
			if v == "" {
				want = "2026-07-28"
			}
			if got := cs.InitializeResult().ProtocolVersion; got != want {
				t.Errorf("negotiated %q, want %q", got, want)
			}
			if names := toolNames(t, cs); len(names) != 2 {
				t.Errorf("tools = %v, want 2", names)
			}
			if got := refusal(t, call(t, cs, "create_ticket", map[string]any{"title": "x", "body": "y"})); got != "" {
				t.Errorf("call refused: %s", got)
			}
		})
	}
}

// TestProtocolErrors sends what a broken or hostile client might and checks each gets the
// protocol's own error and the gateway stays up.
func TestProtocolErrors(t *testing.T) {
	g := startDemo(t, func(c *config.Config) { c.Server.MaxBodyBytes = 4096 })
	tok := g.Agents["test-agent"].Token
	cases := []struct {
		name        string
		token       string
		contentType string
		body        string
		status      int
		code        int // JSON-RPC error code, 0 for none
	}{
		{"malformed json", tok, "application/json", `{"jsonrpc":"2.0","id":1,`, 400, -32700},
		{"not an object", tok, "application/json", `"hello"`, 400, -32700},
		{"wrong jsonrpc version", tok, "application/json", `{"jsonrpc":"1.0","id":1,"method":"ping"}`, 400, -32600},
		{"no method", tok, "application/json", `{"jsonrpc":"2.0","id":1}`, 400, -32600},
		{"object id", tok, "application/json", `{"jsonrpc":"2.0","id":{"a":1},"method":"ping"}`, 400, -32600},
		{"batch", tok, "application/json", `[{"jsonrpc":"2.0","id":1,"method":"ping"}]`, 400, -32600},
		{"oversized body", tok, "application/json", `{"jsonrpc":"2.0","id":1,"method":"ping","params":{"x":"` + strings.Repeat("a", 5000) + `"}}`, 413, -32600},
		{"wrong content type", tok, "text/plain", `{"jsonrpc":"2.0","id":1,"method":"ping"}`, 415, -32600},
		{"unknown method", tok, "application/json", `{"jsonrpc":"2.0","id":1,"method":"resources/list"}`, 200, -32601},
		{"tools/call without name", tok, "application/json", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{}}`, 200, -32602},
		{"unknown session", tok, "application/json", `{"jsonrpc":"2.0","id":1,"method":"ping"}`, 404, -32002},
		{"unauthenticated before parsing", "", "application/json", `{{{`, 401, -32001},
		{"notification", tok, "application/json", `{"jsonrpc":"2.0","method":"notifications/initialized"}`, 202, 0},
		{"ping", tok, "application/json", `{"jsonrpc":"2.0","id":"p1","method":"ping"}`, 200, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodPost, g.URL, strings.NewReader(tc.body))
			if tc.token != "" {
				req.Header.Set("Authorization", "Bearer "+tc.token)
			}
			req.Header.Set("Content-Type", tc.contentType)
			if tc.name == "unknown session" {
				req.Header.Set("Mcp-Session-Id", "ses_doesnotexist")
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != tc.status {
				t.Errorf("status = %d, want %d", resp.StatusCode, tc.status)
			}
			if tc.code == 0 {
				return
			}
			var m struct {
				Error struct {
					Code    int    `json:"code"`
					Message string `json:"message"`
				} `json:"error"`
			}
			if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
				t.Fatalf("decode error body: %v", err)
			}
			if m.Error.Code != tc.code || m.Error.Message == "" {
				t.Errorf("error = %+v, want code %d with a message", m.Error, tc.code)
			}
		})
	}
	// Still serving.
	cs := g.Connect(t, tok, "")
	if names := toolNames(t, cs); len(names) != 2 {
		t.Errorf("after bad requests: tools = %v", names)
	}
}

// TestSessionsBelongToTheirAgent checks that one agent cannot use another's session.
func TestSessionsBelongToTheirAgent(t *testing.T) {
	g := chaperonetest.Start(t, chaperonetest.Options{
		Upstreams: []config.Upstream{{Name: "demo", Builtin: "demo"}},
		Tools:     []config.Tool{{Upstream: "demo", Name: "read_inbox", Class: "read"}},
		Policy:    "rules:\n  - id: all\n    effect: allow\n",
		Agents:    []string{"a1", "a2"},
	})
	init := `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"x","version":"1"}}}`
	resp := post(t, g.URL, g.Agents["a1"].Token, "application/json", init)
	sid := resp.Header.Get("Mcp-Session-Id")
	if resp.StatusCode != 200 || sid == "" {
		t.Fatalf("initialize: status %d, session %q", resp.StatusCode, sid)
	}
	req, _ := http.NewRequest(http.MethodPost, g.URL, strings.NewReader(`{"jsonrpc":"2.0","id":2,"method":"tools/list"}`))
	req.Header.Set("Authorization", "Bearer "+g.Agents["a2"].Token)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Mcp-Session-Id", sid)
	r2, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	r2.Body.Close()
	if r2.StatusCode != http.StatusNotFound {
		t.Errorf("a2 using a1's session: status %d, want 404", r2.StatusCode)
	}
}

// TestHeaderMismatchRefused checks that a 2026-07-28 request whose standard headers disagree
// with its body is refused: what an intermediary routes on must be what runs.
func TestHeaderMismatchRefused(t *testing.T) {
	g := startDemo(t, nil)
	body := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"create_ticket","arguments":{"title":"a","body":"b"},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}`
	for _, tc := range []struct {
		name         string
		method, tool string
		want         int
	}{
		{"matching", "tools/call", "create_ticket", 200},
		{"method mismatch", "tools/list", "create_ticket", 400},
		{"name mismatch", "tools/call", "read_inbox", 400},
		{"name missing", "tools/call", "", 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodPost, g.URL, strings.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+g.Agents["test-agent"].Token)
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Mcp-Protocol-Version", "2026-07-28")
			req.Header.Set("Mcp-Method", tc.method)
			if tc.tool != "" {
				req.Header.Set("Mcp-Name", tc.tool)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Errorf("status %d, want %d", resp.StatusCode, tc.want)
			}
		})
	}
}

// TestBadPolicyReloadKeepsOldPolicy edits the policy file into something that does not
// compile and checks the running gateway keeps deciding with the old one.
func TestBadPolicyReloadKeepsOldPolicy(t *testing.T) {
	g := startDemo(t, nil)
	old := g.Daemon.Policy().Version()
	if err := os.WriteFile(g.PolicyFile, []byte("rules:\n  - id: broken\n    match: {tools: [no_such_tool]}\n    effect: allow\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := g.Daemon.ReloadPolicy(context.Background())
	if err == nil || !strings.Contains(err.Error(), "no_such_tool") || !strings.Contains(err.Error(), "broken") {
		t.Errorf("ReloadPolicy = %v, want an error naming the rule and the unknown tool", err)
	}
	if got := g.Daemon.Policy().Version(); got != old {
		t.Errorf("policy version changed to %s after a bad reload", got)
	}
	cs := g.Connect(t, g.Agents["test-agent"].Token, "")
	if got := refusal(t, call(t, cs, "create_ticket", map[string]any{"title": "x", "body": "y"})); got != "" {
		t.Errorf("old policy not in force after bad reload: %s", got)
	}
	// A good reload takes effect.
	if err := os.WriteFile(g.PolicyFile, []byte("rules:\n  - id: reads-only\n    match: {classes: [read]}\n    effect: allow\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := g.Daemon.ReloadPolicy(context.Background()); err != nil {
		t.Fatalf("good reload: %v", err)
	}
	if got := refusal(t, call(t, cs, "create_ticket", map[string]any{"title": "x", "body": "y"})); got != "denied_by_policy" {
		t.Errorf("after reload to reads-only: create_ticket refusal %q, want denied_by_policy", got)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestExamplePolicyCompiles loads docs/examples: the configuration and the policy it points
// at must compile together, so the documentation cannot rot.
func TestExamplePolicyCompiles(t *testing.T) {
	t.Setenv("TICKETS_API_TOKEN", "x")
	cfg, err := config.Load("../../docs/examples/chaperone.yaml")
	if err != nil {
		t.Fatal(err)
	}
	srcs, err := daemon.ReadPolicySources(cfg.Policy.Paths)
	if err != nil {
		t.Fatal(err)
	}
	names, err := config.ExposedNames(cfg.Tools)
	if err != nil {
		t.Fatal(err)
	}
	tools := map[string]policy.ToolInfo{}
	for i, tl := range cfg.Tools {
		tools[names[i]] = policy.ToolInfo{Class: tl.Class}
	}
	if _, err := policy.Compile(srcs, tools); err != nil {
		t.Errorf("example policy: %v", err)
	}
}

// TestDemoPolicySuite runs the demo policy's own test suite, as `chaperone policy test`
// would.
func TestDemoPolicySuite(t *testing.T) {
	s, err := suite.Load("demo-policy_test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	res := s.Run()
	if res.Err != nil || !res.OK() {
		for _, c := range res.Cases {
			if !c.Pass {
				t.Errorf("%s:%d %s: %s", res.Path, c.Line, c.Name, c.Message())
			}
		}
		t.Fatalf("demo policy suite: %v, %d failed", res.Err, res.Failed())
	}
	if res.Passed() != 10 {
		t.Errorf("demo policy suite ran %d cases, want 10", res.Passed())
	}
}
