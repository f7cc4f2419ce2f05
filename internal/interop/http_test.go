package interop_test

import (
	"bufio"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/chaperone-dev/chaperone/internal/chaperonetest"
	"github.com/chaperone-dev/chaperone/internal/config"
)

// loopbackPreload makes every Node HTTP server listen on 127.0.0.1 whatever port it
// asks for: the reference server listens on all interfaces, and a test's servers listen
// on loopback only.
const loopbackPreload = `import http from "node:http";
const listen = http.Server.prototype.listen;
http.Server.prototype.listen = function (port, ...rest) {
  if (typeof port === "number" || typeof port === "string") {
    if (typeof rest[0] === "string") rest.shift();
    return listen.call(this, Number(port), "127.0.0.1", ...rest);
  }
  return listen.call(this, port, ...rest);
};
`

const httpPolicyYAML = `
rules:
  - id: reads
    match: {agents: [interop-agent], classes: [read]}
    effect: allow
  - id: no-big-sums
    match: {tools: [get-sum]}
    when: args.a > 1000.0 || args.b > 1000.0
    effect: deny
`

// TestInteropHTTPUpstream puts the gateway in front of the reference server-everything
// over streamable HTTP (the official TypeScript SDK's server, which answers calls with
// event streams), so that the gateway's own tools/call path to HTTP upstreams is
// exercised against a server it was not written with.
func TestInteropHTTPUpstream(t *testing.T) {
	pkgs := installPackages(t)
	url := startEverythingHTTP(t, pkgs)

	g := chaperonetest.Start(t, chaperonetest.Options{
		Upstreams: []config.Upstream{{Name: "everything", URL: url}},
		Tools: []config.Tool{
			{Upstream: "everything", Name: "echo", Class: "read"},
			{Upstream: "everything", Name: "get-sum", Class: "read"},
			{Upstream: "everything", Name: "trigger-long-running-operation", Class: "read"},
			{Upstream: "everything", Name: "get-structured-content", Class: "read"},
		},
		Policy: httpPolicyYAML,
		Agents: []string{agentID},
	})
	cs := g.Connect(t, g.Agents[agentID].Token, "")

	for _, c := range []struct {
		tool string
		args map[string]any
		want string
	}{
		{"echo", map[string]any{"message": "over http"}, "Echo: over http"},
		{"get-sum", map[string]any{"a": 2, "b": 3}, "The sum of 2 and 3 is 5."},
		// Answers after a while, on an event stream.
		{"trigger-long-running-operation", map[string]any{"duration": 0.3, "steps": 3}, "Long running operation completed. Duration: 0.3 seconds, Steps: 3."},
	} {
		res := chaperonetest.Call(t, cs, c.tool, c.args)
		if res.IsError || len(res.Content) == 0 {
			t.Errorf("%s: %+v", c.tool, res)
			continue
		}
		if got := res.Content[0].(*mcp.TextContent).Text; got != c.want {
			t.Errorf("%s = %q, want %q", c.tool, got, c.want)
		}
	}
	// Structured content reaches the agent as the upstream sent it.
	res := chaperonetest.Call(t, cs, "get-structured-content", map[string]any{"location": "New York"})
	if res.IsError || res.StructuredContent == nil {
		t.Errorf("get-structured-content: %+v", res)
	}
	// A refusal still happens before the upstream is reached.
	res = chaperonetest.Call(t, cs, "get-sum", map[string]any{"a": 5000, "b": 1})
	if reason := chaperonetest.Refusal(t, res); reason != "denied_by_policy" {
		t.Errorf("large sum: refusal %q, want denied_by_policy", reason)
	}
}

// startEverythingHTTP runs server-everything's streamable HTTP transport on a free
// loopback port until the test ends, and returns its MCP URL.
func startEverythingHTTP(t *testing.T, pkgs *npmPackages) string {
	t.Helper()
	preload := filepath.Join(t.TempDir(), "loopback.mjs")
	if err := os.WriteFile(preload, []byte(loopbackPreload), 0o600); err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, pkgs.node, "--import", preload, pkgs.everythingServer, "streamableHttp")
	cmd.Dir = pkgs.dir
	cmd.Env = append(os.Environ(), "PORT="+strconv.Itoa(port))
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 5 * time.Second
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("start server-everything streamableHttp: %v", err)
	}
	var (
		mu   sync.Mutex
		logs strings.Builder
	)
	listening := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		once := sync.Once{}
		for sc.Scan() {
			mu.Lock()
			logs.WriteString(sc.Text() + "\n")
			mu.Unlock()
			if strings.Contains(sc.Text(), "listening on port") {
				once.Do(func() { close(listening) })
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
	})
	select {
	case <-listening:
	case <-time.After(30 * time.Second):
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("server-everything did not listen within 30s:\n%s", logs.String())
	}
	// The preload must have kept it on loopback: nothing answers on another address.
	if addr := nonLoopbackAddr(); addr != "" {
		if c, err := net.DialTimeout("tcp", net.JoinHostPort(addr, strconv.Itoa(port)), time.Second); err == nil {
			c.Close()
			t.Fatalf("server-everything listens on %s too, not only on loopback", addr)
		}
	}
	return "http://127.0.0.1:" + strconv.Itoa(port) + "/mcp"
}

// freePort returns a loopback port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// nonLoopbackAddr returns one of this machine's IPv4 addresses that is not loopback, ""
// if it has none.
func nonLoopbackAddr() string {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return ""
	}
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && !ipn.IP.IsLoopback() && ipn.IP.To4() != nil {
			return ipn.IP.String()
		}
	}
	return ""
}
