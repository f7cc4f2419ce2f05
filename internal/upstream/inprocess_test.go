package upstream_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/chaperone-dev/chaperone/internal/demo"
	"github.com/chaperone-dev/chaperone/internal/upstream"
)

// callResult is the part of a CallToolResult the tests look at.
type callResult struct {
	Content []struct {
		Type string `json:"type"`
		Text string `json:"text"`
	} `json:"content"`
	IsError bool `json:"isError"`
}

func decodeResult(t testing.TB, raw json.RawMessage) callResult {
	t.Helper()
	var r callResult
	if err := json.Unmarshal(raw, &r); err != nil {
		t.Fatalf("result %s: %v", raw, err)
	}
	return r
}

func (r callResult) text() string {
	var b strings.Builder
	for _, c := range r.Content {
		b.WriteString(c.Text)
	}
	return b.String()
}

func newDemo(t testing.TB) (*upstream.Client, *demo.State) {
	t.Helper()
	srv, st := demo.NewServer(demo.Options{})
	c := newClient(t, upstream.Config{Name: "demo", Server: srv})
	waitReady(t, c)
	return c, st
}

func TestInProcessTools(t *testing.T) {
	t.Parallel()
	c, _ := newDemo(t)
	tools, err := c.Tools(context.Background())
	if err != nil {
		t.Fatalf("Tools: %v", err)
	}
	var names []string
	for _, tool := range tools {
		names = append(names, tool.Name)
		// The demo writes "type" first; a re-marshalled map would start with
		// "additionalProperties".
		if !bytes.HasPrefix(tool.InputSchema, []byte(`{"type":"object","properties":{`)) {
			t.Errorf("tool %s: InputSchema = %s, want the demo's JSON as sent", tool.Name, tool.InputSchema)
		}
		if !bytes.Contains(tool.InputSchema, []byte(`"additionalProperties":false`)) {
			t.Errorf("tool %s: InputSchema = %s, want additionalProperties false", tool.Name, tool.InputSchema)
		}
		if tool.Description == "" || tool.Title == "" || !json.Valid(tool.Annotations) {
			t.Errorf("tool %s: description=%q title=%q annotations=%s", tool.Name, tool.Description, tool.Title, tool.Annotations)
		}
	}
	slices.Sort(names)
	if diff := cmp.Diff(slices.Sorted(maps.Keys(demo.Classes())), names); diff != "" {
		t.Errorf("Tools() names (-want +got):\n%s", diff)
	}
}

func TestInProcessRawSchema(t *testing.T) {
	t.Parallel()
	// Key order, a number beyond float64 precision and unknown keywords all survive.
	const schema = `{"type":"object","properties":{"z":{"type":"integer","maximum":9007199254740993},"a":{"type":"string","x-vendor":{"k":[1,2.50]}}},"additionalProperties":false,"$comment":"raw"}`
	srv := mcp.NewServer(&mcp.Implementation{Name: "raw"}, nil)
	srv.AddTool(&mcp.Tool{Name: "t", InputSchema: json.RawMessage(schema), Annotations: &mcp.ToolAnnotations{Title: "T"}},
		func(context.Context, *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			return &mcp.CallToolResult{StructuredContent: json.RawMessage(`{"b":1,"a":12345678901234567890}`), Content: []mcp.Content{}}, nil
		})
	c := newClient(t, upstream.Config{Name: "raw", Server: srv})
	waitReady(t, c)

	tools, err := c.Tools(context.Background())
	if err != nil {
		t.Fatalf("Tools: %v", err)
	}
	if len(tools) != 1 || string(tools[0].InputSchema) != schema {
		t.Fatalf("Tools() = %+v, want one tool with InputSchema %s", tools, schema)
	}
	if got, want := string(tools[0].Annotations), `"title":"T"`; !strings.Contains(got, want) {
		t.Errorf("Annotations = %s, want it to contain %s", got, want)
	}

	raw, err := c.Call(context.Background(), "t", nil)
	if err != nil {
		t.Fatalf("Call(t): %v", err)
	}
	if want := `"structuredContent":{"b":1,"a":12345678901234567890}`; !strings.Contains(string(raw), want) {
		t.Errorf("Call(t) = %s, want it to contain %s", raw, want)
	}
}

func TestInProcessCalls(t *testing.T) {
	t.Parallel()
	c, st := newDemo(t)
	tests := []struct {
		tool, args string
		wantErr    bool
		want       string
	}{
		{"read_inbox", `{"limit":2}`, false, "examp1e-support.net"},
		{"read_file", `{"path":"/srv/demo/notes/todo.md"}`, false, "# To do"},
		{"read_file", `{"path":"/srv/demo/missing"}`, true, "no such file"},
		{"fetch_url", `{"url":"https://docs.example.com/api/authentication"}`, false, "Authorization"},
		{"fetch_url", `{"url":"https://example.org/"}`, true, "not reachable from the demo"},
		{"create_ticket", `{"title":"Badge reader","body":"Floor 3"}`, false, "TCK-1001"},
		{"send_email", `{"to":"jonas.weber@example.com","subject":"Hi","body":"x"}`, false, "MSG-1001"},
		{"transfer_money", `{"recipient_iban":"DE89370400440532013000","amount":12.5,"currency":"EUR"}`, false, "TXN-1001"},
		{"delete_record", `{"table":"tickets","id":"TCK-1001"}`, false, "deleted"},
		{"delete_record", `{"table":"tickets","id":"x","cascade":true}`, true, "cascade"},
	}
	for _, tt := range tests {
		raw, err := c.Call(context.Background(), tt.tool, json.RawMessage(tt.args))
		if err != nil {
			t.Errorf("Call(%s, %s): %v", tt.tool, tt.args, err)
			continue
		}
		r := decodeResult(t, raw)
		if r.IsError != tt.wantErr || !strings.Contains(r.text(), tt.want) {
			t.Errorf("Call(%s, %s) = %s, want isError=%v and text containing %q", tt.tool, tt.args, raw, tt.wantErr, tt.want)
		}
	}
	if got := len(st.Outbox()) + len(st.Transfers()) + len(st.Deleted()); got != 3 {
		t.Errorf("recorded effects = %d, want 3", got)
	}
}

func TestInProcessCallErrors(t *testing.T) {
	t.Parallel()
	c, _ := newDemo(t)
	ctx := context.Background()

	_, err := c.Call(ctx, "no_such_tool", nil)
	var wireErr *jsonrpc.Error
	if !errors.As(err, &wireErr) || isUnavailable(err) {
		t.Errorf("Call(no_such_tool) = %v, want a JSON-RPC error that is not ErrUnavailable", err)
	}

	if _, err := c.Call(ctx, "read_file", json.RawMessage(`{"path":`)); err == nil || isUnavailable(err) {
		t.Errorf("Call(read_file, malformed JSON) = %v, want an error that is not ErrUnavailable", err)
	}

	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := c.Call(cancelled, "read_file", json.RawMessage(`{"path":"notes/todo.md"}`)); !errors.Is(err, context.Canceled) {
		t.Errorf("Call(cancelled ctx) = %v, want context.Canceled", err)
	}
}

func TestNotRunning(t *testing.T) {
	t.Parallel()
	srv, _ := demo.NewServer(demo.Options{})
	c, err := upstream.New(upstream.Config{Name: "idle", Server: srv})
	if err != nil {
		t.Fatal(err)
	}
	if c.Ready() {
		t.Errorf("Ready() = true before Run")
	}
	if _, err := c.Call(context.Background(), "read_file", nil); !isUnavailable(err) {
		t.Errorf("Call before Run = %v, want ErrUnavailable", err)
	}
	if _, err := c.Tools(context.Background()); !isUnavailable(err) {
		t.Errorf("Tools before Run = %v, want ErrUnavailable", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if err := c.WaitReady(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("WaitReady before Run = %v, want context.DeadlineExceeded", err)
	}
	if err := c.Close(); err != nil {
		t.Errorf("Close() = %v", err)
	}
	if err := c.Run(context.Background()); err != nil {
		t.Errorf("Run after Close = %v, want nil at once", err)
	}
}

func TestCloseStopsRun(t *testing.T) {
	t.Parallel()
	srv, _ := demo.NewServer(demo.Options{})
	c, err := upstream.New(upstream.Config{Name: "closing", Server: srv})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- c.Run(context.Background()) }()
	waitReady(t, c)
	if err := c.Close(); err != nil {
		t.Errorf("Close() = %v", err)
	}
	if err := receive(t, done, "Run to return after Close"); err != nil {
		t.Errorf("Run() = %v, want nil", err)
	}
	if c.Ready() {
		t.Errorf("Ready() = true after Close")
	}
	if err := c.Run(context.Background()); err == nil {
		t.Errorf("second Run() = nil, want an error")
	}
}

func TestCallTimeout(t *testing.T) {
	t.Parallel()
	srv := mcp.NewServer(&mcp.Implementation{Name: "slow"}, nil)
	srv.AddTool(&mcp.Tool{Name: "slow", InputSchema: json.RawMessage(`{"type":"object"}`)},
		func(ctx context.Context, _ *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			<-ctx.Done()
			return nil, ctx.Err()
		})
	srv.AddTool(&mcp.Tool{Name: "fast", InputSchema: json.RawMessage(`{"type":"object"}`)},
		func(context.Context, *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "ok"}}}, nil
		})
	const timeout = 50 * time.Millisecond
	c := newClient(t, upstream.Config{Name: "slow", Server: srv, CallTimeout: timeout})
	waitReady(t, c)

	begin := time.Now()
	_, err := c.Call(context.Background(), "slow", nil)
	if elapsed := time.Since(begin); !errors.Is(err, context.DeadlineExceeded) || elapsed > 5*time.Second {
		t.Fatalf("Call(slow) = %v after %v, want context.DeadlineExceeded after about %v", err, elapsed, timeout)
	}
	if isUnavailable(err) {
		t.Errorf("Call(slow) = %v, want a deadline error, not ErrUnavailable", err)
	}
	if _, err := c.Call(context.Background(), "fast", nil); err != nil {
		t.Errorf("Call(fast) after a timeout: %v", err)
	}
}

func TestConcurrentCalls(t *testing.T) {
	t.Parallel()
	c, st := newDemo(t)
	const workers, calls = 16, 25
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range calls {
				tool, args := "read_file", `{"path":"bills/march.txt"}`
				if i%5 == 0 {
					tool, args = "create_ticket", fmt.Sprintf(`{"title":"w%d-%d","body":""}`, w, i)
				}
				raw, err := c.Call(context.Background(), tool, json.RawMessage(args))
				if err != nil {
					t.Errorf("Call(%s): %v", tool, err)
					return
				}
				if r := decodeResult(t, raw); r.IsError {
					t.Errorf("Call(%s) = %s", tool, raw)
					return
				}
			}
		})
	}
	wg.Wait()
	if got, want := len(st.Tickets()), workers*calls/5; got != want {
		t.Errorf("tickets = %d, want %d", got, want)
	}
}

func TestInProcessToolListChanged(t *testing.T) {
	t.Parallel()
	srv, _ := demo.NewServer(demo.Options{})
	onChange, changed := signal()
	c := newClient(t, upstream.Config{Name: "demo", Server: srv, OnToolsChanged: onChange})
	waitReady(t, c)
	receive(t, changed, "OnToolsChanged after connect")

	srv.AddTool(&mcp.Tool{Name: "extra", InputSchema: json.RawMessage(`{"type":"object"}`)},
		func(context.Context, *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			return &mcp.CallToolResult{}, nil
		})
	receive(t, changed, "OnToolsChanged after AddTool")
	tools, err := c.Tools(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(tools, func(tl upstream.Tool) bool { return tl.Name == "extra" }) {
		t.Errorf("Tools() after AddTool lacks %q", "extra")
	}
}

func BenchmarkCallInProcess(b *testing.B) {
	c, _ := newDemo(b)
	ctx := context.Background()
	args := json.RawMessage(`{"path":"/srv/demo/bills/march.txt"}`)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Call(ctx, "read_file", args); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCallInProcessDirectSDK is the baseline for BenchmarkCallInProcess: the same
// call through a bare SDK client session, without supervision or raw capture.
func BenchmarkCallInProcessDirectSDK(b *testing.B) {
	srv, _ := demo.NewServer(demo.Options{})
	ctx := context.Background()
	st, ct := mcp.NewInMemoryTransports()
	ss, err := srv.Connect(ctx, st, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer ss.Close()
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "bench"}, nil).Connect(ctx, ct, &mcp.ClientSessionOptions{ProtocolVersion: "2025-11-25"})
	if err != nil {
		b.Fatal(err)
	}
	defer cs.Close()
	params := &mcp.CallToolParams{Name: "read_file", Arguments: json.RawMessage(`{"path":"/srv/demo/bills/march.txt"}`)}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := cs.CallTool(ctx, params); err != nil {
			b.Fatal(err)
		}
	}
}
