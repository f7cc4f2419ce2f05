package daemon_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/chaperone-dev/chaperone/internal/chaperonetest"
	"github.com/chaperone-dev/chaperone/internal/config"
	"github.com/chaperone-dev/chaperone/internal/store/pgtest"
)

// BenchmarkRelay measures what the gateway adds to a tool call, in one run: the same
// official-SDK client calls the same echo upstream (the SDK's server over streamable HTTP on
// loopback) directly, and through the gateway. Both sub-benchmarks report wall time per call
// and the whole process's CPU time per call (cpu-us/op: client, gateway and upstream share
// this process), so gateway minus direct is the gateway's own cost. Run with
//
//	go test -run='^$' -bench=Relay -benchtime=3s -count=3 ./internal/daemon
//
// and see BENCHMARKS.md. "gateway-async" runs with audit.after: async (the outcome is
// committed with the next batch instead of before the answer). With
// CHAPERONE_TEST_POSTGRES set, "gateway-postgres" runs one replica over PostgreSQL: its
// audit log, sessions and flow journal in the database.
func BenchmarkRelay(b *testing.B) {
	up := mcp.NewServer(&mcp.Implementation{Name: "echo", Version: "1"}, nil)
	up.AddTool(echoTool("Echo the text back."), func(ctx context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "ok"}}}, nil
	})
	hs := httptest.NewServer(mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return up }, nil))
	b.Cleanup(hs.Close) // after the gateway's own cleanup: it holds connections to hs

	g := chaperonetest.Start(b, chaperonetest.Options{
		Upstreams: []config.Upstream{{Name: "echo", URL: hs.URL}},
		Tools:     []config.Tool{{Upstream: "echo", Name: "echo", Class: "read"}},
		Policy:    "rules:\n  - id: echo\n    match: {tools: [echo]}\n    effect: allow\n",
	})
	tok := g.Agents["test-agent"].Token
	ga := chaperonetest.Start(b, chaperonetest.Options{
		Upstreams: []config.Upstream{{Name: "echo", URL: hs.URL}},
		Tools:     []config.Tool{{Upstream: "echo", Name: "echo", Class: "read"}},
		Policy:    "rules:\n  - id: echo\n    match: {tools: [echo]}\n    effect: allow\n",
		Configure: func(c *config.Config) { c.Audit.After = "async" },
	})
	atok := ga.Agents["test-agent"].Token

	type relayCase struct {
		name, url, token string
		par              int // goroutines per GOMAXPROCS
	}
	cases := []relayCase{
		{"direct/p=1", hs.URL, "", 1},
		{"gateway/p=1", g.URL, tok, 1},
		{"gateway-async/p=1", ga.URL, atok, 1},
		{"direct/p=16", hs.URL, "", 16},
		{"gateway/p=16", g.URL, tok, 16},
		{"gateway-async/p=16", ga.URL, atok, 16},
	}
	if os.Getenv(pgtest.EnvDSN) != "" {
		gp := chaperonetest.StartReplicas(b, 1, pgtest.DSN(b), chaperonetest.Options{
			Upstreams: []config.Upstream{{Name: "echo", URL: hs.URL}},
			Tools:     []config.Tool{{Upstream: "echo", Name: "echo", Class: "read"}},
			Policy:    "rules:\n  - id: echo\n    match: {tools: [echo]}\n    effect: allow\n",
		})[0]
		ptok := gp.Agents["test-agent"].Token
		cases = append(cases, relayCase{"gateway-postgres/p=1", gp.URL, ptok, 1}, relayCase{"gateway-postgres/p=16", gp.URL, ptok, 16})
	}
	for _, bc := range cases {
		b.Run(bc.name, func(b *testing.B) {
			b.SetParallelism(bc.par)
			cs := chaperonetest.ConnectURL(b, bc.url, bc.token, "")
			// Arguments differ call to call: the same call repeated is refused as a loop.
			var seq atomic.Int64
			ctx := context.Background()
			b.ReportAllocs()
			cpu0 := cpuTime()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					params := &mcp.CallToolParams{Name: "echo", Arguments: map[string]any{"text": "hello " + strconv.FormatInt(seq.Add(1), 10)}}
					res, err := cs.CallTool(ctx, params)
					if err != nil || res.IsError {
						b.Errorf("CallTool: %v %v", err, res)
						return
					}
				}
			})
			b.StopTimer()
			b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N), "cpu-us/op")
		})
	}
}

// cpuTime is the process's user plus system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
