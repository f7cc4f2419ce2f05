package bench

import (
	"context"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestStartGatewayRefusesBadOptions(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		o    GatewayOptions
		want string
	}{
		{GatewayOptions{}, "the upstream URL is required"},
		{GatewayOptions{UpstreamURL: "http://127.0.0.1:1/mcp", Rules: 1}, "rules must be between 2 and 100000, got 1"},
		{GatewayOptions{UpstreamURL: "http://127.0.0.1:1/mcp", Rules: MaxRules + 1}, "rules must be between"},
		{GatewayOptions{UpstreamURL: "http://127.0.0.1:1/mcp", AuditAfter: "never"}, `audit must be durable or async, got "never"`},
	} {
		if _, err := StartGateway(t.Context(), tc.o); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("StartGateway(%+v) = %v, want %q", tc.o, err, tc.want)
		}
	}
}

// TestGatewayTempDir checks that the gateway keeps its database and journal in a new
// directory inside TempDir, and that Close removes it.
func TestGatewayTempDir(t *testing.T) {
	t.Parallel()
	_, ts := newTestUpstream(t, UpstreamOptions{ResultBytes: 32})
	parent := t.TempDir()
	g, err := StartGateway(t.Context(), GatewayOptions{UpstreamURL: ts.URL, TempDir: parent})
	if err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(parent)
	if err != nil || len(entries) != 1 || !strings.HasPrefix(entries[0].Name(), "chaperone-bench-") {
		t.Fatalf("TempDir holds %v (%v), want one chaperone-bench-* directory", entries, err)
	}
	data := filepath.Join(parent, entries[0].Name())
	if files, err := os.ReadDir(data); err != nil || len(files) == 0 {
		t.Errorf("the data directory holds %d files (%v), want the gateway's database", len(files), err)
	}
	if err := g.Close(); err != nil {
		t.Error(err)
	}
	if _, err := os.Stat(data); !os.IsNotExist(err) {
		t.Errorf("after Close, the data directory: %v; want it removed", err)
	}
	if _, err := StartGateway(t.Context(), GatewayOptions{UpstreamURL: ts.URL, TempDir: filepath.Join(parent, "missing")}); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("StartGateway in a missing TempDir = %v, want an error naming it", err)
	}
}

// TestGatewayEnforces checks that the harness measures a gateway that decides: echo is
// allowed and reaches the upstream, blocked is refused and does not, at every policy
// size.
func TestGatewayEnforces(t *testing.T) {
	t.Parallel()
	up, ts := newTestUpstream(t, UpstreamOptions{ResultBytes: 32})
	for _, rules := range []int{2, 1000} {
		g, err := StartGateway(t.Context(), GatewayOptions{UpstreamURL: ts.URL, Rules: rules})
		if err != nil {
			t.Fatal(err)
		}
		s, err := Open(t.Context(), NewHTTPClient(1), Target{Name: "chaperone", URL: g.URL, Token: g.Token})
		if err != nil {
			t.Fatal(err)
		}
		before := up.Calls()
		if o, err := s.Call(t.Context(), ToolEcho, []byte(`{"text":"a"}`)); err != nil || o != OutcomeOK {
			t.Errorf("rules=%d: echo = %v, %v", rules, o, err)
		}
		if o, err := s.Call(t.Context(), ToolBlocked, []byte(`{"text":"a"}`)); err != nil || o != OutcomeToolError {
			t.Errorf("rules=%d: blocked = %v, %v; want a refusal (a tool error)", rules, o, err)
		}
		if n := up.Calls() - before; n != 1 {
			t.Errorf("rules=%d: the upstream saw %d calls, want only echo's", rules, n)
		}
		_ = s.Close(t.Context())
		if err := g.Close(); err != nil {
			t.Error(err)
		}
	}
}

func TestPolicySize(t *testing.T) {
	t.Parallel()
	for _, n := range []int{2, 10, 1000} {
		if got := strings.Count(Policy(n), "  - id: "); got != n {
			t.Errorf("Policy(%d) has %d rules", n, got)
		}
	}
}

// BenchmarkGateway is a tools/call through the harness's client, a Chaperone gateway in
// this process and the harness's upstream, on loopback: "direct" skips the gateway, so
// gateway minus direct is what the gateway adds. cpu-us/op is the whole process's CPU
// per call (client, gateway and upstream). Run with
//
//	go test -run='^$' -bench=Gateway -benchtime=20000x -count=3 ./internal/bench
func BenchmarkGateway(b *testing.B) {
	up, err := NewUpstream(UpstreamOptions{ResultBytes: 256})
	if err != nil {
		b.Fatal(err)
	}
	ts := httptest.NewServer(up)
	b.Cleanup(ts.Close)
	targets := []struct {
		name string
		o    *GatewayOptions
	}{
		{"direct", nil},
		{"durable", &GatewayOptions{}},
		{"durable-nojournal", &GatewayOptions{Journal: "off"}},
		{"async", &GatewayOptions{AuditAfter: "async"}},
	}
	for _, tc := range targets {
		t := Target{Name: tc.name, URL: ts.URL}
		if tc.o != nil {
			tc.o.UpstreamURL = ts.URL
			g, err := StartGateway(b.Context(), *tc.o)
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { g.Close() })
			t.URL, t.Token = g.URL, g.Token
		}
		for _, sessions := range []int{2, 8, 32} {
			b.Run(fmt.Sprintf("%s/sessions=%d", tc.name, sessions), func(b *testing.B) {
				benchmarkCalls(b, t, sessions)
			})
		}
	}
}

// benchmarkCalls calls through t from one session per goroutine: RunParallel starts
// parallelism × GOMAXPROCS of them, so sessions is rounded to a multiple of GOMAXPROCS.
func benchmarkCalls(b *testing.B, t Target, sessions int) {
	procs := runtime.GOMAXPROCS(0)
	par := max(1, sessions/procs)
	sessions = par * procs
	hc := NewHTTPClient(sessions)
	defer hc.CloseIdleConnections()
	ss, err := openAll(context.Background(), hc, t, sessions)
	if err != nil {
		b.Fatal(err)
	}
	defer closeAll(context.Background(), ss)
	var next, n atomic.Int64
	b.SetParallelism(par)
	cpu0 := processCPU()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		s := ss[next.Add(1)-1]
		for pb.Next() {
			i := n.Add(1)
			if _, err := s.Call(context.Background(), ToolEcho, fmt.Appendf(nil, `{"text":"call %d"}`, i)); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(processCPU()-cpu0)/float64(time.Microsecond)/float64(b.N), "cpu-us/op")
}
