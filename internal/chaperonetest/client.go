package chaperonetest

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// Call calls a tool through an SDK client session, failing the test on a protocol error.
func Call(t testing.TB, cs *mcp.ClientSession, tool string, args any) *mcp.CallToolResult {
	t.Helper()
	return CallMeta(t, cs, tool, args, nil)
}

// CallMeta is Call with _meta on the request, as an agent's host sends it (the user's
// prompt, an approval id, ...).
func CallMeta(t testing.TB, cs *mcp.ClientSession, tool string, args any, meta mcp.Meta) *mcp.CallToolResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: tool, Arguments: args, Meta: meta})
	if err != nil {
		t.Fatalf("CallTool(%s): %v", tool, err)
	}
	return res
}

// RefusalField returns a field of a refusal's _meta["dev.chaperone/refusal"] (such as
// "approval_id" or "explanation"), "" for a call that ran or a field it lacks.
func RefusalField(res *mcp.CallToolResult, field string) string {
	m, _ := res.Meta["dev.chaperone/refusal"].(map[string]any)
	v, _ := m[field].(string)
	return v
}

// Refusal returns the reason code of a call Chaperone refused, or "" if the call ran. A
// refusal must carry its code both in _meta and in the text the model reads.
func Refusal(t testing.TB, res *mcp.CallToolResult) string {
	t.Helper()
	if !res.IsError {
		return ""
	}
	m, _ := res.Meta["dev.chaperone/refusal"].(map[string]any)
	code, _ := m["reason"].(string)
	if code == "" {
		t.Fatalf("isError result without a Chaperone refusal: %+v", res)
	}
	text := res.Content[0].(*mcp.TextContent).Text
	if !strings.Contains(text, code) {
		t.Errorf("refusal text %q does not name its code %q", text, code)
	}
	return code
}

// ToolNames lists the tools the session sees, sorted.
func ToolNames(t testing.TB, cs *mcp.ClientSession) []string {
	t.Helper()
	res, err := cs.ListTools(context.Background(), nil)
	if err != nil {
		t.Fatalf("ListTools: %v", err)
	}
	var names []string
	for _, tl := range res.Tools {
		names = append(names, tl.Name)
	}
	slices.Sort(names)
	return names
}
