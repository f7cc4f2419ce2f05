package bench

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func newTestUpstream(t testing.TB, o UpstreamOptions) (*Upstream, *httptest.Server) {
	t.Helper()
	up, err := NewUpstream(o)
	if err != nil {
		t.Fatalf("NewUpstream(%+v): %v", o, err)
	}
	srv := httptest.NewServer(up)
	t.Cleanup(srv.Close)
	return up, srv
}

type httpReply struct {
	status int
	header http.Header
	body   []byte
}

// rpcReply is a JSON-RPC response as the tests decode it, in full.
type rpcReply struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	Result  json.RawMessage `json:"result"`
	Error   *rpcError       `json:"error"`
}

func (h httpReply) rpc(t testing.TB) rpcReply {
	t.Helper()
	var r rpcReply
	if err := json.Unmarshal(h.body, &r); err != nil {
		t.Fatalf("decode reply %q: %v", h.body, err)
	}
	return r
}

// send makes one request to url; session and contentType are set when not empty.
func send(t testing.TB, method, url, session, contentType, body string) httpReply {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if session != "" {
		req.Header.Set("Mcp-Session-Id", session)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, url, err)
	}
	return httpReply{resp.StatusCode, resp.Header, b}
}

func post(t testing.TB, url, session, body string) httpReply {
	t.Helper()
	return send(t, http.MethodPost, url, session, "application/json", body)
}

// initSession initializes a session on the upstream at url and returns its id.
func initSession(t testing.TB, url string) string {
	t.Helper()
	r := post(t, url, "", `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25"}}`)
	if r.status != http.StatusOK {
		t.Fatalf("initialize: status %d, body %s", r.status, r.body)
	}
	id := r.header.Get("Mcp-Session-Id")
	if id == "" {
		t.Fatal("initialize: no Mcp-Session-Id")
	}
	return id
}

func TestUpstreamInitialize(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		params string
		want   string
	}{
		{"supported 2025-06-18", `{"protocolVersion":"2025-06-18"}`, "2025-06-18"},
		{"supported 2025-03-26", `{"protocolVersion":"2025-03-26"}`, "2025-03-26"},
		{"supported 2025-11-25", `{"protocolVersion":"2025-11-25"}`, "2025-11-25"},
		{"unknown version", `{"protocolVersion":"1999-01-01"}`, "2025-11-25"},
		{"no version", `{}`, "2025-11-25"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			up, srv := newTestUpstream(t, UpstreamOptions{})
			r := post(t, srv.URL, "", `{"jsonrpc":"2.0","id":"init-1","method":"initialize","params":`+tt.params+`}`)
			if r.status != http.StatusOK {
				t.Fatalf("initialize: status %d, body %s", r.status, r.body)
			}
			if ct := r.header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type = %q, want application/json", ct)
			}
			if r.header.Get("Mcp-Session-Id") == "" {
				t.Error("initialize gave no Mcp-Session-Id")
			}
			reply := r.rpc(t)
			if string(reply.ID) != `"init-1"` {
				t.Errorf("id = %s, want \"init-1\"", reply.ID)
			}
			var res struct {
				ProtocolVersion string `json:"protocolVersion"`
				Capabilities    struct {
					Tools *struct{} `json:"tools"`
				} `json:"capabilities"`
				ServerInfo struct{ Name, Version string } `json:"serverInfo"`
			}
			if err := json.Unmarshal(reply.Result, &res); err != nil {
				t.Fatalf("decode result %s: %v", reply.Result, err)
			}
			if res.ProtocolVersion != tt.want {
				t.Errorf("protocolVersion = %q, want %q", res.ProtocolVersion, tt.want)
			}
			if res.Capabilities.Tools == nil || res.ServerInfo.Name != "chaperone-bench-echo" || res.ServerInfo.Version != "1" {
				t.Errorf("result = %s, want tools capability and serverInfo chaperone-bench-echo/1", reply.Result)
			}
			if got := up.Sessions(); got != 1 {
				t.Errorf("Sessions() = %d, want 1", got)
			}
		})
	}
}

func TestUpstreamSessionIDsDiffer(t *testing.T) {
	t.Parallel()
	up, srv := newTestUpstream(t, UpstreamOptions{})
	a, b := initSession(t, srv.URL), initSession(t, srv.URL)
	if a == b {
		t.Errorf("two initializes gave the same session id %q", a)
	}
	if got := up.Sessions(); got != 2 {
		t.Errorf("Sessions() = %d, want 2", got)
	}
}

func TestUpstreamSessionRequired(t *testing.T) {
	t.Parallel()
	_, srv := newTestUpstream(t, UpstreamOptions{})
	sid := initSession(t, srv.URL)
	tests := []struct {
		name    string
		session string
		body    string
		status  int
	}{
		{"call without session", "", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"}}`, http.StatusBadRequest},
		{"call with unknown session", "nope", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"}}`, http.StatusNotFound},
		{"ping without session", "", `{"jsonrpc":"2.0","id":1,"method":"ping"}`, http.StatusBadRequest},
		{"notification without session", "", `{"jsonrpc":"2.0","method":"notifications/initialized"}`, http.StatusBadRequest},
		{"notification with unknown session", "nope", `{"jsonrpc":"2.0","method":"notifications/initialized"}`, http.StatusNotFound},
		{"ping with session", sid, `{"jsonrpc":"2.0","id":1,"method":"ping"}`, http.StatusOK},
		{"notification with session", sid, `{"jsonrpc":"2.0","method":"notifications/initialized"}`, http.StatusAccepted},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := post(t, srv.URL, tt.session, tt.body)
			if r.status != tt.status {
				t.Fatalf("status = %d, want %d (body %s)", r.status, tt.status, r.body)
			}
			if tt.status == http.StatusAccepted {
				if len(r.body) != 0 {
					t.Errorf("202 body = %q, want empty", r.body)
				}
				return
			}
			if ct := r.header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type = %q, want application/json", ct)
			}
			reply := r.rpc(t)
			if tt.status == http.StatusOK {
				if string(reply.Result) != "{}" {
					t.Errorf("ping result = %s, want {}", reply.Result)
				}
			} else if reply.Error == nil || !strings.Contains(reply.Error.Message, "Mcp-Session-Id") {
				t.Errorf("error = %+v, want one naming Mcp-Session-Id", reply.Error)
			}
		})
	}
}

func TestUpstreamToolsList(t *testing.T) {
	t.Parallel()
	_, srv := newTestUpstream(t, UpstreamOptions{})
	sid := initSession(t, srv.URL)
	r := post(t, srv.URL, sid, `{"jsonrpc":"2.0","id":2,"method":"tools/list"}`)
	if r.status != http.StatusOK {
		t.Fatalf("tools/list: status %d, body %s", r.status, r.body)
	}
	var res struct {
		Tools []struct {
			Name        string          `json:"name"`
			Description string          `json:"description"`
			InputSchema json.RawMessage `json:"inputSchema"`
		} `json:"tools"`
	}
	if err := json.Unmarshal(r.rpc(t).Result, &res); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tool := range res.Tools {
		names = append(names, tool.Name)
		if tool.Description == "" {
			t.Errorf("tool %q has no description", tool.Name)
		}
		const schema = `{"type":"object","properties":{"text":{"type":"string"}}}`
		if string(tool.InputSchema) != schema {
			t.Errorf("tool %q inputSchema = %s, want %s", tool.Name, tool.InputSchema, schema)
		}
	}
	if diff := cmp.Diff([]string{"echo", "blocked"}, names); diff != "" {
		t.Errorf("tools (-want +got):\n%s", diff)
	}
}

func TestUpstreamToolsCall(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		resultBytes int
		want        int
	}{
		{"default", 0, DefaultResultBytes},
		{"one byte", 1, 1},
		{"odd size", 1001, 1001},
		{"large", 200_000, 200_000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			up, srv := newTestUpstream(t, UpstreamOptions{ResultBytes: tt.resultBytes})
			sid := initSession(t, srv.URL)
			for i, tool := range []string{"echo", "blocked"} {
				r := post(t, srv.URL, sid, `{"jsonrpc":"2.0","id":-7,"method":"tools/call","params":{"name":"`+tool+`","arguments":{"text":"hi"}}}`)
				if r.status != http.StatusOK {
					t.Fatalf("tools/call %s: status %d", tool, r.status)
				}
				reply := r.rpc(t)
				if string(reply.ID) != "-7" {
					t.Errorf("id = %s, want -7", reply.ID)
				}
				var res struct {
					Content []struct{ Type, Text string } `json:"content"`
					IsError bool                          `json:"isError"`
				}
				if err := json.Unmarshal(reply.Result, &res); err != nil {
					t.Fatal(err)
				}
				if len(res.Content) != 1 || res.Content[0].Type != "text" || res.IsError {
					t.Fatalf("result = %.200s, want one text content, no isError", reply.Result)
				}
				text := res.Content[0].Text
				if len(text) != tt.want {
					t.Errorf("result text has %d bytes, want %d", len(text), tt.want)
				}
				if strings.Trim(text, "abcdefghijklmnopqrstuvwxyz ") != "" {
					t.Errorf("result text %.80q has characters other than lowercase letters and spaces", text)
				}
				if got := up.Calls(); got != int64(i+1) {
					t.Errorf("Calls() = %d, want %d", got, i+1)
				}
			}
		})
	}
}

func TestUpstreamErrors(t *testing.T) {
	t.Parallel()
	up, srv := newTestUpstream(t, UpstreamOptions{})
	sid := initSession(t, srv.URL)
	tests := []struct {
		name        string
		method      string
		contentType string
		body        string
		status      int
		code        int    // JSON-RPC error code, 0: none expected
		message     string // part of the error message
		id          string // the id the error carries
	}{
		{"oversized body", "POST", "application/json", `{"jsonrpc":"2.0","id":1,"method":"ping","params":{"pad":"` + strings.Repeat("x", MaxRequestBytes) + `"}}`,
			http.StatusRequestEntityTooLarge, codeInvalidRequest, "1 MiB", "null"},
		{"wrong content type", "POST", "text/plain", `{"jsonrpc":"2.0","id":1,"method":"ping"}`,
			http.StatusUnsupportedMediaType, codeInvalidRequest, `"text/plain"`, "null"},
		{"no content type", "POST", "", `{"jsonrpc":"2.0","id":1,"method":"ping"}`,
			http.StatusUnsupportedMediaType, codeInvalidRequest, "application/json", "null"},
		{"GET", "GET", "", "", http.StatusMethodNotAllowed, codeInvalidRequest, "GET", "null"},
		{"PUT", "PUT", "application/json", "{}", http.StatusMethodNotAllowed, codeInvalidRequest, "PUT", "null"},
		{"unknown tool", "POST", "application/json", `{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"rm"}}`,
			http.StatusOK, codeInvalidParams, `unknown tool "rm"`, "3"},
		{"unknown method", "POST", "application/json", `{"jsonrpc":"2.0","id":"x","method":"resources/list"}`,
			http.StatusOK, codeMethodNotFound, `"resources/list"`, `"x"`},
		{"malformed JSON", "POST", "application/json", `{"jsonrpc":`, http.StatusBadRequest, codeParseError, "not JSON", "null"},
		{"empty body", "POST", "application/json", ``, http.StatusBadRequest, codeParseError, "not JSON", "null"},
		{"batch", "POST", "application/json", `[{"jsonrpc":"2.0","id":1,"method":"ping"}]`, http.StatusBadRequest, codeInvalidRequest, "not a JSON-RPC message", "null"},
		{"params not an object", "POST", "application/json", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":[1]}`,
			http.StatusBadRequest, codeInvalidRequest, "not a JSON-RPC message", "1"},
		{"wrong jsonrpc", "POST", "application/json", `{"jsonrpc":"1.0","id":1,"method":"ping"}`, http.StatusBadRequest, codeInvalidRequest, `"jsonrpc"`, "1"},
		{"no method", "POST", "application/json", `{"jsonrpc":"2.0","id":1}`, http.StatusBadRequest, codeInvalidRequest, `"method"`, "1"},
		{"object id", "POST", "application/json", `{"jsonrpc":"2.0","id":{"a":1},"method":"ping"}`, http.StatusBadRequest, codeInvalidRequest, `"id"`, "null"},
		{"null id", "POST", "application/json", `{"jsonrpc":"2.0","id":null,"method":"ping"}`, http.StatusBadRequest, codeInvalidRequest, `"id"`, "null"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			before := up.Calls()
			r := send(t, tt.method, srv.URL, sid, tt.contentType, tt.body)
			if r.status != tt.status {
				t.Fatalf("status = %d, want %d (body %.200s)", r.status, tt.status, r.body)
			}
			if ct := r.header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type = %q, want application/json", ct)
			}
			if tt.status == http.StatusMethodNotAllowed {
				if got := r.header.Get("Allow"); got != "POST, DELETE" {
					t.Errorf("Allow = %q, want %q", got, "POST, DELETE")
				}
			}
			reply := r.rpc(t)
			if reply.Error == nil || reply.Error.Code != tt.code || !strings.Contains(reply.Error.Message, tt.message) {
				t.Errorf("error = %+v, want code %d with message containing %q", reply.Error, tt.code, tt.message)
			}
			if string(reply.ID) != tt.id || reply.JSONRPC != "2.0" {
				t.Errorf("jsonrpc, id = %q, %s, want \"2.0\", %s", reply.JSONRPC, reply.ID, tt.id)
			}
			if tt.code == codeInvalidParams && up.Calls() == before {
				t.Errorf("Calls() did not count the unknown tool's call")
			}
		})
	}
}

func TestUpstreamProtocolVersionHeader(t *testing.T) {
	t.Parallel()
	_, srv := newTestUpstream(t, UpstreamOptions{})
	sid := initSession(t, srv.URL)
	for _, tt := range []struct {
		version string
		status  int
	}{{"2025-06-18", http.StatusOK}, {"2099-01-01", http.StatusBadRequest}} {
		req, _ := http.NewRequest("POST", srv.URL, strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"ping"}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Mcp-Session-Id", sid)
		req.Header.Set("Mcp-Protocol-Version", tt.version)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tt.status {
			t.Errorf("ping with Mcp-Protocol-Version %s: status %d, want %d", tt.version, resp.StatusCode, tt.status)
		}
	}
}

func TestUpstreamDelete(t *testing.T) {
	t.Parallel()
	up, srv := newTestUpstream(t, UpstreamOptions{})
	sid := initSession(t, srv.URL)
	other := initSession(t, srv.URL)
	if r := send(t, "DELETE", srv.URL, sid, "", ""); r.status != http.StatusOK {
		t.Fatalf("DELETE: status %d, want 200", r.status)
	}
	if got := up.Sessions(); got != 1 {
		t.Errorf("Sessions() after DELETE = %d, want 1", got)
	}
	if r := post(t, srv.URL, sid, `{"jsonrpc":"2.0","id":1,"method":"ping"}`); r.status != http.StatusNotFound {
		t.Errorf("ping on deleted session: status %d, want 404", r.status)
	}
	if r := send(t, "DELETE", srv.URL, sid, "", ""); r.status != http.StatusNotFound {
		t.Errorf("second DELETE: status %d, want 404", r.status)
	}
	if r := send(t, "DELETE", srv.URL, "", "", ""); r.status != http.StatusBadRequest {
		t.Errorf("DELETE without session: status %d, want 400", r.status)
	}
	if r := post(t, srv.URL, other, `{"jsonrpc":"2.0","id":1,"method":"ping"}`); r.status != http.StatusOK {
		t.Errorf("ping on the other session: status %d, want 200", r.status)
	}
}

func TestNewUpstreamOptions(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		o    UpstreamOptions
		want string // part of the error; "" means no error
	}{
		{"zero", UpstreamOptions{}, ""},
		{"largest result", UpstreamOptions{ResultBytes: MaxResultBytes}, ""},
		{"longest delay", UpstreamOptions{Delay: MaxDelay}, ""},
		{"result too large", UpstreamOptions{ResultBytes: MaxResultBytes + 1}, "16 MiB"},
		{"negative result", UpstreamOptions{ResultBytes: -1}, "negative"},
		{"negative delay", UpstreamOptions{Delay: -time.Millisecond}, "negative"},
		{"delay too long", UpstreamOptions{Delay: MaxDelay + 1}, "10s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			up, err := NewUpstream(tt.o)
			if tt.want == "" {
				if err != nil || up == nil {
					t.Fatalf("NewUpstream(%+v) = %v, %v; want an upstream", tt.o, up, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("NewUpstream(%+v) error = %v, want one containing %q", tt.o, err, tt.want)
			}
		})
	}
}

// A client that leaves during the delay gets no answer and the call is not counted.
func TestUpstreamDelayHonoursCancellation(t *testing.T) {
	t.Parallel()
	up, err := NewUpstream(UpstreamOptions{Delay: MaxDelay})
	if err != nil {
		t.Fatal(err)
	}
	sid := recorderSession(t, up)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	req := httptest.NewRequestWithContext(ctx, "POST", "/", strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"}}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Mcp-Session-Id", sid)
	rec := httptest.NewRecorder()
	up.ServeHTTP(rec, req)
	if rec.Body.Len() != 0 || up.Calls() != 0 {
		t.Errorf("canceled call: body %q, Calls() %d; want no answer and 0 calls", rec.Body, up.Calls())
	}
}

// recorderSession initializes a session by calling up.ServeHTTP directly.
func recorderSession(t testing.TB, up *Upstream) string {
	t.Helper()
	req := httptest.NewRequest("POST", "/", strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}`))
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	up.ServeHTTP(rec, req)
	sid := rec.Header().Get("Mcp-Session-Id")
	if rec.Code != http.StatusOK || sid == "" {
		t.Fatalf("initialize: status %d, session %q", rec.Code, sid)
	}
	return sid
}

// replayBody is a request body that can be read again after Reset.
type replayBody struct{ strings.Reader }

func (*replayBody) Close() error { return nil }

func BenchmarkUpstreamCall(b *testing.B) {
	up, err := NewUpstream(UpstreamOptions{})
	if err != nil {
		b.Fatal(err)
	}
	sid := recorderSession(b, up)
	const body = `{"jsonrpc":"2.0","id":12345,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hello"}}}`
	req := httptest.NewRequest("POST", "/", nil)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Mcp-Session-Id", sid)
	req.Header.Set("Mcp-Protocol-Version", "2025-11-25")
	rb := &replayBody{}
	req.Body = rb
	rec := httptest.NewRecorder()
	b.ReportAllocs()
	for b.Loop() {
		rb.Reset(body)
		rec.Body.Reset()
		up.ServeHTTP(rec, req)
	}
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), `"id":12345,"result"`) {
		b.Fatalf("last answer: status %d, body %s", rec.Code, rec.Body)
	}
}
