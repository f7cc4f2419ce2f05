package upstream_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/chaperone-dev/chaperone/internal/demo"
	"github.com/chaperone-dev/chaperone/internal/upstream"
)

const testToken = "Bearer s3cret-upstream-token"

// requireAuth refuses requests without the test token and counts them.
func requireAuth(h http.Handler, refused *atomic.Int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != testToken || r.Header.Get("X-Tenant") != "acme" {
			refused.Add(1)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	})
}

func TestHTTPHeadersAndToolListChanged(t *testing.T) {
	t.Parallel()
	srv, _ := demo.NewServer(demo.Options{})
	var refused atomic.Int64
	ts := httptest.NewServer(requireAuth(mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return srv }, nil), &refused))
	t.Cleanup(ts.Close)

	onChange, changed := signal()
	c := newClient(t, upstream.Config{
		Name: "http", URL: ts.URL, OnToolsChanged: onChange,
		Headers: map[string]string{"Authorization": testToken, "x-tenant": "acme"},
	})
	waitReady(t, c)
	receive(t, changed, "OnToolsChanged after connect")

	tools, err := c.Tools(context.Background())
	if err != nil {
		t.Fatalf("Tools: %v", err)
	}
	if len(tools) != 7 {
		t.Errorf("Tools() returned %d tools, want 7", len(tools))
	}
	raw, err := c.Call(context.Background(), "read_file", json.RawMessage(`{"path":"nope"}`))
	if err != nil {
		t.Fatalf("Call(read_file): %v", err)
	}
	if r := decodeResult(t, raw); !r.IsError || !strings.Contains(r.text(), "no such file") {
		t.Errorf("Call(read_file nope) = %s, want a tool error", raw)
	}

	// The notification arrives on the standalone SSE stream (a GET), so this also shows
	// that the headers are sent on every kind of request.
	srv.AddTool(&mcp.Tool{Name: "late", InputSchema: json.RawMessage(`{"type":"object"}`)},
		func(context.Context, *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			return &mcp.CallToolResult{}, nil
		})
	receive(t, changed, "OnToolsChanged after AddTool")
	tools, err = c.Tools(context.Background())
	if err != nil {
		t.Fatalf("Tools after AddTool: %v", err)
	}
	if !slices.ContainsFunc(tools, func(tl upstream.Tool) bool { return tl.Name == "late" }) {
		t.Errorf("Tools() after AddTool lacks %q", "late")
	}
	if n := refused.Load(); n != 0 {
		t.Errorf("%d requests arrived without the configured headers", n)
	}
}

func TestHTTPWrongHeaderNeverReady(t *testing.T) {
	t.Parallel()
	srv, _ := demo.NewServer(demo.Options{})
	var refused atomic.Int64
	ts := httptest.NewServer(requireAuth(mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return srv }, nil), &refused))
	t.Cleanup(ts.Close)

	c := newClient(t, upstream.Config{Name: "http", URL: ts.URL, Headers: map[string]string{"Authorization": "Bearer wrong", "X-Tenant": "acme"}})
	waitFor(t, "two refused connection attempts", func() bool { return refused.Load() >= 2 })
	if c.Ready() {
		t.Errorf("Ready() = true with a wrong token")
	}
}

// fakeServer is a hand-written streamable HTTP MCP server that answers tools/list and
// tools/call with fixed raw results, as JSON or as an SSE stream, so that the tests can
// check that results reach the caller byte for byte, including what the SDK cannot
// represent.
type fakeServer struct {
	listResult, callResult string
	sse                    bool

	mu      sync.Mutex
	headers []http.Header // of every request; guarded by mu
}

func (f *fakeServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.headers = append(f.headers, r.Header.Clone())
	f.mu.Unlock()
	if r.Method != http.MethodPost {
		http.Error(w, "no standalone stream", http.StatusMethodNotAllowed)
		return
	}
	var req struct {
		ID     json.RawMessage `json:"id"`
		Method string          `json:"method"`
	}
	body, _ := io.ReadAll(r.Body)
	if err := json.Unmarshal(body, &req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if req.ID == nil || req.Method == "" { // a notification, or a response to our ping
		w.WriteHeader(http.StatusAccepted)
		return
	}
	var result string
	switch req.Method {
	case "initialize":
		result = `{"protocolVersion":"2025-11-25","capabilities":{"tools":{}},"serverInfo":{"name":"fake","version":"1"}}`
	case "tools/list":
		result = f.listResult
	case "tools/call":
		result = f.callResult
	default:
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"error":{"code":-32601,"message":"method not found"}}`, req.ID)
		return
	}
	resp := fmt.Sprintf(`{"jsonrpc":"2.0","id":%s,"result":%s}`, req.ID, result)
	if !f.sse || req.Method == "initialize" {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, resp)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	// A comment, a notification and a server request first, then the response, with
	// CRLF line ends and the data split over two lines.
	fmt.Fprint(w, ": keep-alive\r\n\r\n")
	fmt.Fprint(w, "event: message\r\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{\"progressToken\":1,\"progress\":1,\"result\":{}}}\r\n\r\n")
	fmt.Fprint(w, "event: message\r\ndata: {\"jsonrpc\":\"2.0\",\"id\":99,\"method\":\"ping\",\"params\":{}}\r\n\r\n")
	i := strings.Index(resp, `"result"`)
	fmt.Fprintf(w, "event: message\r\nid: 7\r\ndata: %s\r\ndata: %s\r\n\r\n", resp[:i], resp[i:])
}

func TestHTTPRawPassthrough(t *testing.T) {
	t.Parallel()
	const (
		schema = `{"type":"object","properties":{"q":{"type":"string","maxLength":9007199254740993}},"$defs":{},"additionalProperties":false}`
		list   = `{"tools":[{"name":"search","title":"Search","description":"Search things.","inputSchema":` + schema + `,"annotations":{"readOnlyHint":true,"x-vendor":1},"execution":{"taskSupport":"optional"}}]}`
		// An unknown content type, key order and a big integer: the SDK cannot decode
		// the first and would change the others.
		call = `{"content":[{"type":"text","text":"hi"},{"type":"widget","spec":{"b":1,"a":2}}],"structuredContent":{"z":1,"n":12345678901234567890},"isError":false,"x-extra":true}`
	)
	for _, sse := range []bool{false, true} {
		t.Run(fmt.Sprintf("sse=%v", sse), func(t *testing.T) {
			t.Parallel()
			f := &fakeServer{listResult: list, callResult: call, sse: sse}
			ts := httptest.NewServer(f)
			t.Cleanup(ts.Close)
			c := newClient(t, upstream.Config{Name: "fake", URL: ts.URL + "/mcp", Headers: map[string]string{"Authorization": testToken}})
			waitReady(t, c)

			tools, err := c.Tools(context.Background())
			if err != nil {
				t.Fatalf("Tools: %v", err)
			}
			want := []upstream.Tool{{
				Name: "search", Title: "Search", Description: "Search things.",
				InputSchema: json.RawMessage(schema), Annotations: json.RawMessage(`{"readOnlyHint":true,"x-vendor":1}`),
			}}
			if diff := cmp.Diff(want, tools); diff != "" {
				t.Errorf("Tools() (-want +got):\n%s", diff)
			}

			raw, err := c.Call(context.Background(), "search", json.RawMessage(`{"q":"x"}`))
			if err != nil {
				t.Fatalf("Call(search): %v", err)
			}
			if string(raw) != call {
				t.Errorf("Call(search) = %s\nwant %s", raw, call)
			}

			f.mu.Lock()
			defer f.mu.Unlock()
			for i, h := range f.headers {
				if h.Get("Authorization") != testToken {
					t.Errorf("request %d: Authorization header missing", i)
				}
			}
		})
	}
}
