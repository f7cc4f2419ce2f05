package gateway

import (
	"context"
	"encoding/json"
	"mime"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chaperone-dev/chaperone/internal/audit"
	"github.com/chaperone-dev/chaperone/internal/identity"
	"github.com/chaperone-dev/chaperone/internal/pipeline"
	"github.com/chaperone-dev/chaperone/internal/policy"
	"github.com/chaperone-dev/chaperone/internal/registry"
)

// fakeCalls answers every tool call with a fixed result; it stands in for the pipeline so
// these tests exercise the ingress alone.
type fakeCalls struct {
	handle func(*pipeline.Call) pipeline.Outcome
}

func (f fakeCalls) Handle(_ context.Context, c *pipeline.Call) pipeline.Outcome { return f.handle(c) }

// discardAudit accepts every event and keeps none.
type discardAudit struct{}

func (discardAudit) Append(context.Context, *audit.Event) error { return nil }

// staticAuth authenticates with the configuration's static agent tokens only.
type staticAuth struct{ r *identity.Registry }

func (s staticAuth) Authenticate(h string) (*identity.Principal, identity.Failure, error) {
	a, f, err := s.r.Authenticate(h)
	if err != nil {
		return nil, f, err
	}
	return &identity.Principal{Agent: a}, "", nil
}

func newTestGateway(tb testing.TB) (*Gateway, string) {
	tb.Helper()
	result := json.RawMessage(`{"content":[{"type":"text","text":"ok"}]}`)
	return newTestGatewayCalls(tb, func(c *pipeline.Call) pipeline.Outcome {
		if c.Tool == "refuse" {
			return pipeline.Outcome{Refusal: &pipeline.Refusal{Code: pipeline.CodeDeniedByPolicy, Message: "No.", Rules: []string{"r1"}}}
		}
		return pipeline.Outcome{Result: result}
	})
}

// newTestGatewayCalls is a gateway whose tool calls handle answers.
func newTestGatewayCalls(tb testing.TB, handle func(*pipeline.Call) pipeline.Outcome) (*Gateway, string) {
	tb.Helper()
	tok, sha := identity.NewToken()
	agents, err := identity.NewRegistry([]identity.Registration{{Agent: identity.Agent{ID: "a1"}, TokenSHA256: sha}})
	if err != nil {
		tb.Fatal(err)
	}
	pol, err := policy.Compile([]policy.Source{{Name: "p.yaml", Data: []byte("rules: []\n")}}, nil)
	if err != nil {
		tb.Fatal(err)
	}
	g := New(Options{
		Auth:    staticAuth{agents},
		Calls:   fakeCalls{handle},
		Catalog: registry.New(nil, registry.Options{}),
		Policy:  func() *policy.Policy { return pol },
		Audit:   discardAudit{},
		MaxBody: 64 << 10,
	})
	return g, tok
}

func do(g *Gateway, token, body string, hdr map[string]string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodPost, "/mcp", strings.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	if token != "" {
		r.Header.Set("Authorization", "Bearer "+token)
	}
	for k, v := range hdr {
		r.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	g.ServeHTTP(w, r)
	return w
}

func TestRefusalResult(t *testing.T) {
	g, tok := newTestGateway(t)
	w := do(g, tok, `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"refuse","arguments":{}}}`, nil)
	var resp struct {
		ID     int `json:"id"`
		Result struct {
			IsError bool `json:"isError"`
			Content []struct{ Text string }
			Meta    map[string]struct {
				Reason string   `json:"reason"`
				Rules  []string `json:"rules"`
			} `json:"_meta"`
		} `json:"result"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &resp); err != nil {
		t.Fatalf("response %q: %v", w.Body, err)
	}
	ref := resp.Result.Meta["dev.chaperone/refusal"]
	if resp.ID != 7 || !resp.Result.IsError || ref.Reason != "denied_by_policy" || len(ref.Rules) != 1 ||
		!strings.HasPrefix(resp.Result.Content[0].Text, "Refused by Chaperone (denied_by_policy): ") {
		t.Errorf("refusal = %s", w.Body)
	}
}

func TestAllowedResultPassesThrough(t *testing.T) {
	g, tok := newTestGateway(t)
	w := do(g, tok, `{"jsonrpc":"2.0","id":"x","method":"tools/call","params":{"name":"t"}}`, nil)
	want := `{"jsonrpc":"2.0","id":"x","result":{"content":[{"type":"text","text":"ok"}]}}`
	if got := w.Body.String(); got != want || w.Code != 200 {
		t.Errorf("tools/call = %d %s, want 200 %s", w.Code, got, want)
	}
}

func TestSessionLimit(t *testing.T) {
	g, tok := newTestGateway(t)
	g.opts.MaxSessions = 2
	init := `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18"}}`
	for i := range 2 {
		if w := do(g, tok, init, nil); w.Code != 200 || w.Header().Get("Mcp-Session-Id") == "" {
			t.Fatalf("initialize %d = %d", i, w.Code)
		}
	}
	if w := do(g, tok, init, nil); w.Code != http.StatusServiceUnavailable {
		t.Errorf("initialize over the limit = %d %s, want 503", w.Code, w.Body)
	}
}

func TestInitializeNegotiates(t *testing.T) {
	g, tok := newTestGateway(t)
	for _, tc := range []struct{ asked, want string }{
		{"2025-06-18", "2025-06-18"},
		{"2024-11-05", "2024-11-05"},
		{"1999-01-01", "2025-11-25"},
		{"2026-07-28", "2025-11-25"}, // 2026-07-28 has no initialize: the legacy answer
	} {
		w := do(g, tok, `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"`+tc.asked+`"}}`, nil)
		var r struct {
			Result struct {
				ProtocolVersion string `json:"protocolVersion"`
			} `json:"result"`
		}
		json.Unmarshal(w.Body.Bytes(), &r)
		if r.Result.ProtocolVersion != tc.want {
			t.Errorf("initialize(%s) negotiated %q, want %q", tc.asked, r.Result.ProtocolVersion, tc.want)
		}
	}
}

// FuzzServeHTTP throws arbitrary bodies and protocol headers at the ingress: it must never
// panic, and every answer must be a well-formed JSON-RPC message or an empty 202.
func FuzzServeHTTP(f *testing.F) {
	for _, s := range []string{
		`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`,
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":{"a":1}}}`,
		`{"jsonrpc":"2.0","id":"s","method":"initialize","params":{"protocolVersion":"2025-11-25"}}`,
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}`,
		`{"jsonrpc":"2.0","method":"notifications/initialized"}`,
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","_meta":{"dev.chaperone/usage":{"input_tokens":5,"cost":0.1},"dev.chaperone/idempotency_key":"k1"}}}`,
		`[{"jsonrpc":"2.0","id":1,"method":"ping"}]`,
		`{"jsonrpc":"2.0","id":1,"result":{}}`,
		`{"jsonrpc":"2.0","id":null,"method":"ping"}`,
		`{`,
	} {
		f.Add(s, "", "")
		f.Add(s, "2026-07-28", "tools/call")
	}
	g, tok := newTestGateway(f)
	f.Fuzz(func(t *testing.T, body, version, method string) {
		hdr := map[string]string{}
		if version != "" && isToken(version) {
			hdr["Mcp-Protocol-Version"] = version
		}
		if method != "" && isToken(method) {
			hdr["Mcp-Method"] = method
			hdr["Mcp-Name"] = "t"
		}
		w := do(g, tok, body, hdr)
		if w.Code == http.StatusAccepted || w.Code == http.StatusNoContent {
			return
		}
		var m map[string]json.RawMessage
		if err := json.Unmarshal(w.Body.Bytes(), &m); err != nil {
			t.Fatalf("status %d with a body that is not JSON: %q", w.Code, w.Body)
		}
		_, hasResult := m["result"]
		_, hasError := m["error"]
		if string(m["jsonrpc"]) != `"2.0"` || hasResult == hasError {
			t.Fatalf("not a JSON-RPC response: %s", w.Body)
		}
	})
}

// isToken reports whether s can be sent as an HTTP header value in a test request.
func isToken(s string) bool {
	for _, r := range s {
		if r < 0x21 || r > 0x7e {
			return false
		}
	}
	return true
}

// BenchmarkServeHTTPCall is the ingress's own cost for one tools/call: authentication,
// framing, session lookup, dispatch and the response, with the pipeline replaced by a fixed
// answer.
func BenchmarkServeHTTPCall(b *testing.B) {
	g, tok := newTestGateway(b)
	body := `{"jsonrpc":"2.0","id":42,"method":"tools/call","params":{"name":"read_file","arguments":{"path":"/srv/demo/bills/march.txt"}}}`
	b.ReportAllocs()
	for b.Loop() {
		w := do(g, tok, body, nil)
		if w.Code != 200 {
			b.Fatal(w.Code)
		}
	}
}

func TestMarkComplete(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`{"content":[]}`, `{"resultType":"complete","content":[]}`},
		{`{}`, `{"resultType":"complete"}`},
		{` { } `, ""}, // white space around: only validity and the field are checked
		{`{"resultType":"complete","content":[]}`, `{"resultType":"complete","content":[]}`},
		{`[]`, `[]`},
	} {
		got := string(markComplete(json.RawMessage(tc.in)))
		if tc.in == ` { } ` {
			if !json.Valid([]byte(got)) || !strings.Contains(got, `"resultType":"complete"`) {
				t.Errorf("markComplete(%q) = %q, want valid JSON with resultType", tc.in, got)
			}
			continue
		}
		if got != tc.want {
			t.Errorf("markComplete(%q) = %q, want %q", tc.in, got, tc.want)
		}
		if !json.Valid([]byte(got)) {
			t.Errorf("markComplete(%q) = %q: not valid JSON", tc.in, got)
		}
	}
}

func TestWindowLimiter(t *testing.T) {
	var l windowLimiter
	t0 := time.Unix(1000, 0)
	for i := range authFailuresPerSecond {
		if _, ok := l.admit(t0); !ok {
			t.Fatalf("admit #%d in the first second refused", i+1)
		}
	}
	for range 5 {
		if _, ok := l.admit(t0.Add(500 * time.Millisecond)); ok {
			t.Fatalf("admit over the limit accepted")
		}
	}
	n, ok := l.admit(t0.Add(time.Second))
	if !ok || n != 5 {
		t.Errorf("admit in the next second = %d, %v; want 5 suppressed, admitted", n, ok)
	}
	if n, _ := l.admit(t0.Add(time.Second)); n != 0 {
		t.Errorf("suppressed count not reset: %d", n)
	}
}

// TestCheckHeaders pins how the protocol version header, the per-request _meta version
// and the 2026-07-28 standard headers are checked against each other.
func TestCheckHeaders(t *testing.T) {
	g, tok := newTestGateway(t)
	call := func(meta string) string {
		return `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t"` + meta + `}}`
	}
	const v26 = `,"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}`
	std := func(method, name string) map[string]string {
		h := map[string]string{"Mcp-Protocol-Version": "2026-07-28"}
		if method != "" {
			h["Mcp-Method"] = method
		}
		if name != "" {
			h["Mcp-Name"] = name
		}
		return h
	}
	for _, tc := range []struct {
		name   string
		body   string
		hdr    map[string]string
		status int
		code   int // JSON-RPC error code; 0 for a result
	}{
		{"no version anywhere", call(""), nil, 200, 0},
		{"legacy header", call(""), map[string]string{"Mcp-Protocol-Version": "2025-11-25"}, 200, 0},
		{"unsupported header", call(""), map[string]string{"Mcp-Protocol-Version": "1999-01-01"}, 400, codeUnsupportedProtocol},
		{"2026 with matching headers", call(v26), std("tools/call", "t"), 200, 0},
		{"2026 in _meta only", call(v26), nil, 400, codeHeaderMismatch},
		{"2026 header only", call(""), std("tools/call", "t"), 400, codeHeaderMismatch},
		{"method header missing", call(v26), std("", "t"), 400, codeHeaderMismatch},
		{"method header differs", call(v26), std("tools/list", "t"), 400, codeHeaderMismatch},
		{"name header differs", call(v26), std("tools/call", "u"), 400, codeHeaderMismatch},
		{"name header missing", call(v26), std("tools/call", ""), 400, codeHeaderMismatch},
		{"_meta version not a string", call(`,"_meta":{"io.modelcontextprotocol/protocolVersion":5}`), nil, 400, codeUnsupportedProtocol},
		{"_meta version unknown", call(`,"_meta":{"io.modelcontextprotocol/protocolVersion":"2099-01-01"}`), nil, 400, codeUnsupportedProtocol},
		{"_meta not an object", call(`,"_meta":5`), nil, 200, codeInvalidParams},
		{"params not an object", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":[]}`, std("tools/call", "t"), 400, codeHeaderMismatch},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := do(g, tok, tc.body, tc.hdr)
			var resp struct {
				Result json.RawMessage `json:"result"`
				Error  struct {
					Code int `json:"code"`
				} `json:"error"`
			}
			if err := json.Unmarshal(w.Body.Bytes(), &resp); err != nil {
				t.Fatalf("POST %s: body %q: %v", tc.body, w.Body, err)
			}
			if w.Code != tc.status || resp.Error.Code != tc.code || (tc.code == 0) != (resp.Result != nil) {
				t.Errorf("POST %s with %v = %d %s, want %d with error code %d", tc.body, tc.hdr, w.Code, w.Body, tc.status, tc.code)
			}
		})
	}
}

// TestJSONContentType checks that the shortcut for the exact value agrees with parsing.
func TestJSONContentType(t *testing.T) {
	for _, ct := range []string{
		"application/json", "application/json; charset=utf-8", "Application/JSON", "application/json;",
		"application/json ", " application/json", "application/jsonx", "application/json+x", "text/plain",
		"application/x-json", "", "application/json; charset", "application/json\x00",
	} {
		mt, _, err := mime.ParseMediaType(ct)
		if got, want := isJSONContentType(ct), err == nil && mt == "application/json"; got != want {
			t.Errorf("isJSONContentType(%q) = %v, want %v", ct, got, want)
		}
	}
	g, tok := newTestGateway(t)
	body := `{"jsonrpc":"2.0","id":1,"method":"ping"}`
	for ct, want := range map[string]int{"application/json": 200, "application/json; charset=utf-8": 200, "text/plain": 415} {
		r := httptest.NewRequest(http.MethodPost, "/mcp", strings.NewReader(body))
		r.Header.Set("Content-Type", ct)
		r.Header.Set("Authorization", "Bearer "+tok)
		w := httptest.NewRecorder()
		g.ServeHTTP(w, r)
		if w.Code != want {
			t.Errorf("ping with Content-Type %q = %d, want %d", ct, w.Code, want)
		}
	}
}

// TestValidID compares validID with its definition: a JSON-RPC id is a JSON string (what
// decodes into a Go string) or an integer.
func TestValidID(t *testing.T) {
	for _, id := range []string{
		`1`, `-7`, `0`, `9223372036854775808`, `1.5`, `1e3`, `null`, `true`, `{}`, `[1]`,
		`"a"`, `""`, `"a" `, `"a"x`, `"a","b"`, `"`, `"\"`, `"\u00"`, `"\ud800"`, `"\n"`, "\"\xff\"", "\"a\nb\"", `"é"`,
	} {
		var want bool
		if id[0] == '"' {
			var s string
			want = json.Unmarshal([]byte(id), &s) == nil
		} else {
			_, err := strconv.ParseInt(id, 10, 64)
			want = err == nil
		}
		if got := validID(json.RawMessage(id)) != nil; got != want {
			t.Errorf("validID(%s) = %v, want %v", id, got, want)
		}
	}
}
