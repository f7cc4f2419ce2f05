package bench

import (
	"context"
	"encoding/json"
	"net/http"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// NewSDKUpstream returns an MCP server built on the official Go SDK (streamable HTTP,
// stateful sessions, its default event-stream answers) offering the same two tools as
// [Upstream], with the same results. It is the heavier upstream a gateway usually sits in
// front of: comparing through it puts the gateway's cost next to a real server's, as the
// figures other MCP proxies are known by were measured.
func NewSDKUpstream(o UpstreamOptions) (http.Handler, error) {
	if _, err := NewUpstream(o); err != nil { // the same bounds
		return nil, err
	}
	n := o.ResultBytes
	if n == 0 {
		n = DefaultResultBytes
	}
	text := string(proseText(n))
	delay := o.Delay
	srv := mcp.NewServer(&mcp.Implementation{Name: "chaperone-bench-sdk-echo", Version: "1"}, nil)
	schema := json.RawMessage(`{"type":"object","properties":{"text":{"type":"string"}}}`)
	answer := func(ctx context.Context, _ *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		if delay > 0 {
			t := time.NewTimer(delay)
			defer t.Stop()
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-t.C:
			}
		}
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: text}}}, nil
	}
	srv.AddTool(&mcp.Tool{Name: ToolEcho, Description: "Answers with a fixed text.", InputSchema: schema}, answer)
	srv.AddTool(&mcp.Tool{Name: ToolBlocked, Description: "Answers with a fixed text; meant to be refused by policy.", InputSchema: schema}, answer)
	return mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return srv }, nil), nil
}
