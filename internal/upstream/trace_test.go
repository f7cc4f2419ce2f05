package upstream_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"go.opentelemetry.io/otel/trace"

	"github.com/chaperone-dev/chaperone/internal/upstream"
)

// TestTraceContextReachesTheUpstream checks that a call made within a span carries W3C
// trace context in its params._meta, so an instrumented MCP server joins the trace, and
// that a call without one carries none.
func TestTraceContextReachesTheUpstream(t *testing.T) {
	t.Parallel()
	srv := mcp.NewServer(&mcp.Implementation{Name: "meta", Version: "1"}, nil)
	var mu sync.Mutex
	var metas []map[string]any
	srv.AddTool(&mcp.Tool{Name: "whoami", InputSchema: json.RawMessage(`{"type":"object"}`)},
		func(_ context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			mu.Lock()
			metas = append(metas, req.Params.GetMeta())
			mu.Unlock()
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "ok"}}}, nil
		})
	ts := httptest.NewServer(mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return srv }, nil))
	t.Cleanup(ts.Close)
	c := newClient(t, upstream.Config{Name: "meta", URL: ts.URL})
	waitReady(t, c)

	tid, _ := trace.TraceIDFromHex("4bf92f3577b34da6a3ce929d0e0e4736")
	sid, _ := trace.SpanIDFromHex("00f067aa0ba902b7")
	sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled})
	if _, err := c.Call(trace.ContextWithSpanContext(context.Background(), sc), "whoami", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Call(context.Background(), "whoami", nil); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(metas) != 2 {
		t.Fatalf("upstream saw %d calls", len(metas))
	}
	if got := metas[0]["traceparent"]; got != "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01" {
		t.Errorf("traceparent at the upstream = %v (meta %v)", got, metas[0])
	}
	if _, ok := metas[1]["traceparent"]; ok {
		t.Errorf("a call outside any trace sent a traceparent: %v", metas[1])
	}
}
