package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/chaperone-dev/chaperone/internal/bench"
)

// benchReport is the JSON `chaperone bench --json` prints.
type benchReport struct {
	Comparisons []struct {
		Sessions int     `json:"sessions"`
		Rate     float64 `json:"rate"`
		Rounds   int     `json:"rounds"`
		Baseline struct {
			Target string  `json:"target"`
			Calls  int64   `json:"calls"`
			OK     int64   `json:"ok"`
			P50    float64 `json:"p50_us"`
		} `json:"baseline"`
		Targets []struct {
			Target          string   `json:"target"`
			Calls           int64    `json:"calls"`
			OK              int64    `json:"ok"`
			ToolErrors      int64    `json:"tool_errors"`
			RPCErrors       int64    `json:"rpc_errors"`
			P50             float64  `json:"p50_us"`
			P999            float64  `json:"p999_us"`
			ThroughputRatio float64  `json:"throughput_ratio"`
			AddedP50        float64  `json:"added_p50_us"`
			CPU             *float64 `json:"cpu_per_call_us"`
			Commits         *float64 `json:"audit_commits_per_call"`
		} `json:"targets"`
	} `json:"comparisons"`
}

func runBench(t *testing.T, args ...string) benchReport {
	t.Helper()
	code, out, errOut := runCLI(t, "", append([]string{"bench", "--json"}, args...)...)
	if code != 0 {
		t.Fatalf("bench %v = %d\n%s\n%s", args, code, out, errOut)
	}
	var r benchReport
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("bench output is not the JSON report: %v\n%s", err, out)
	}
	return r
}

func TestBenchComparesChaperoneWithDirect(t *testing.T) {
	r := runBench(t, "--sessions", "2", "--rate", "100", "--rate-sessions", "3", "--duration", "300ms", "--rounds", "2", "--deny", "0.25")
	if len(r.Comparisons) != 2 {
		t.Fatalf("%d comparisons, want a closed-loop and an open-loop one", len(r.Comparisons))
	}
	closed, open := r.Comparisons[0], r.Comparisons[1]
	if closed.Sessions != 2 || closed.Rate != 0 || open.Sessions != 3 || open.Rate != 100 || closed.Rounds != 2 {
		t.Errorf("runs = %+v / %+v", closed, open)
	}
	for _, c := range r.Comparisons {
		if c.Baseline.Target != "direct" || c.Baseline.Calls == 0 || c.Baseline.OK != c.Baseline.Calls {
			t.Errorf("baseline %+v: every direct call should succeed", c.Baseline)
		}
		if len(c.Targets) != 1 || c.Targets[0].Target != "chaperone" {
			t.Fatalf("targets = %+v, want chaperone alone", c.Targets)
		}
		g := c.Targets[0]
		if g.Calls == 0 || g.RPCErrors != 0 {
			t.Errorf("chaperone: %+v", g)
		}
		// A quarter of the calls go to the tool the policy denies: refusals are tool
		// errors, and they are counted as such.
		if denied := float64(g.ToolErrors) / float64(g.Calls); denied < 0.2 || denied > 0.3 {
			t.Errorf("chaperone refused %d of %d calls, want about a quarter", g.ToolErrors, g.Calls)
		}
		if g.CPU == nil || g.ThroughputRatio <= 0 || g.P999 < g.P50 || math.Abs(g.AddedP50-(g.P50-c.Baseline.P50)) > 0.2 {
			t.Errorf("chaperone figures inconsistent: %+v against baseline p50 %v", g, c.Baseline.P50)
		}
	}
	// The open loop holds its rate: 100 calls/s for 0.3s is about 30 calls a round.
	if n := open.Baseline.Calls; n < 15 || n > 45 {
		t.Errorf("open loop made %d direct calls in a round, want about 30", n)
	}
}

// TestBenchAuditCommits: one session's calls come one at a time, so each call's intent
// and outcome are committed alone, two commits per call, with or without a group wait
// (which waits only when events queue up); the report counts them.
func TestBenchAuditCommits(t *testing.T) {
	for _, args := range [][]string{nil, {"--group-wait", "1ms"}} {
		r := runBench(t, append([]string{"--sessions", "1", "--rate", "0", "--duration", "200ms", "--rounds", "1"}, args...)...)
		g := r.Comparisons[0].Targets[0]
		if g.Commits == nil || *g.Commits < 1.9 || *g.Commits > 2.1 {
			t.Errorf("bench %v: audit commits per call = %v, want 2 (the intent's and the outcome's)", args, g.Commits)
		}
	}
}

// TestBenchProfiles writes a CPU profile and an execution trace of a run, and refuses a
// file it cannot create before measuring anything. The run's gateway keeps its data in
// --tmp-dir and removes it afterwards.
func TestBenchProfiles(t *testing.T) {
	dir, tmp := t.TempDir(), t.TempDir()
	prof, tr := filepath.Join(dir, "cpu.pprof"), filepath.Join(dir, "run.trace")
	runBench(t, "--sessions", "1", "--rate", "0", "--duration", "200ms", "--rounds", "1", "--cpuprofile", prof, "--trace", tr, "--tmp-dir", tmp)
	if entries, err := os.ReadDir(tmp); err != nil || len(entries) != 0 {
		t.Errorf("--tmp-dir holds %v (%v) after the run, want the gateway's data directory removed", entries, err)
	}
	if b, err := os.ReadFile(prof); err != nil || len(b) < 2 || b[0] != 0x1f || b[1] != 0x8b {
		t.Errorf("--cpuprofile wrote %d bytes (%v), want a gzipped profile", len(b), err)
	}
	if b, err := os.ReadFile(tr); err != nil || !bytes.HasPrefix(b, []byte("go 1.")) || !bytes.Contains(b[:min(len(b), 16)], []byte(" trace")) {
		t.Errorf("--trace wrote %q... (%v), want a runtime execution trace", b[:min(len(b), 16)], err)
	}
	code, _, errOut := runCLI(t, "", "bench", "--sessions", "1", "--rate", "0", "--duration", "100ms", "--rounds", "1", "--trace", filepath.Join(dir, "missing", "run.trace"))
	if code == 0 || !strings.Contains(errOut, "run.trace") {
		t.Errorf("--trace into a missing directory = %d, %q; want an error naming the file", code, errOut)
	}
}

// TestBenchAnotherGateway measures an MCP endpoint given by URL and token file in front
// of an upstream given by URL, as a comparison with another gateway is run, without
// starting Chaperone in the process; the target's CPU comes from its process id.
func TestBenchAnotherGateway(t *testing.T) {
	up, err := bench.NewUpstream(bench.UpstreamOptions{ResultBytes: 64})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(up)
	t.Cleanup(ts.Close)
	g, err := bench.StartGateway(t.Context(), bench.GatewayOptions{UpstreamURL: ts.URL, AuditAfter: "async", Rules: 1000})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte(g.Token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	before := up.Calls()
	r := runBench(t, "--sessions", "2", "--rate", "0", "--duration", "300ms", "--rounds", "1",
		"--upstream", ts.URL, "--target", g.URL, "--token-file", tokenFile, "--target-name", "other",
		"--target-pid", strconv.Itoa(os.Getpid()), "--no-chaperone")
	c := r.Comparisons[0]
	if len(c.Targets) != 1 || c.Targets[0].Target != "other" || c.Targets[0].OK == 0 || c.Targets[0].CPU == nil {
		t.Fatalf("targets = %+v, want the other gateway with its CPU", c.Targets)
	}
	if got, want := up.Calls()-before, c.Baseline.Calls+c.Targets[0].Calls; got != want {
		t.Errorf("the upstream answered %d calls, want %d (direct and through the other gateway)", got, want)
	}

	// A wrong token is a failure of the run, named.
	if err := os.WriteFile(tokenFile, []byte("wrong"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, errOut := runCLI(t, "", "bench", "--sessions", "1", "--rate", "0", "--duration", "100ms", "--rounds", "1",
		"--upstream", ts.URL, "--target", g.URL, "--token-file", tokenFile, "--no-chaperone")
	if code == 0 || !strings.Contains(errOut, "401") {
		t.Errorf("bench with a wrong token = %d, %s", code, errOut)
	}
}

func TestBenchUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--deny", "1.5"}, "--deny must be between 0 and 1, got 1.5"},
		{[]string{"--sessions", "8,x"}, `--sessions: "x" is not a number of sessions`},
		{[]string{"--sessions", "0"}, `--sessions: "0" is not a number of sessions from 1 to 100000`},
		{[]string{"--sessions", "", "--rate", "0"}, "nothing to run"},
		{[]string{"--rate", "-1"}, "--rate must be between 0 and"},
		{[]string{"--duration", "0s"}, "--duration must be between 0 and 24h0m0s, got 0s"},
		{[]string{"--no-chaperone"}, "--no-chaperone leaves nothing to measure"},
		{[]string{"--tmp-dir", "no-such-dir"}, `--tmp-dir "no-such-dir" is not a directory`},
		{[]string{"--tmp-dir", "bench_test.go"}, `--tmp-dir "bench_test.go" is not a directory`},
		{[]string{"--token-file", "t"}, "describe a --target, and none was given"},
		{[]string{"--upstream-listen", "0.0.0.0:0"}, "listens on loopback only"},
		{[]string{"--result-bytes", "-1"}, "result"},
		{[]string{"--rules", "1", "--duration", "1ms"}, "rules must be between 2 and 100000, got 1"},
		{[]string{"--audit", "sometimes", "--duration", "1ms"}, `audit must be durable or async, got "sometimes"`},
		{[]string{"--group-wait", "11ms", "--duration", "1ms"}, "audit.group_wait: must be between 0s and 10ms, got 11ms"},
		{[]string{"--rounds", "0", "--duration", "1ms"}, "rounds must be between 1 and 100, got 0"},
		{[]string{"memory", "--sessions", "0"}, "--sessions must be between 1 and 100000, got 0"},
		{[]string{"upstream", "--listen", "192.0.2.1:1"}, "listens on loopback only"},
		{[]string{"--upstream-kind", "fast"}, `upstream kind must be lean or sdk, got "fast"`},
		{[]string{"upstream", "--kind", "sdk", "--result-bytes", "-2"}, "result bytes -2 is negative"},
	} {
		code, out, errOut := runCLI(t, "", append([]string{"bench"}, tc.args...)...)
		if code == 0 || !strings.Contains(errOut, tc.want) {
			t.Errorf("bench %v = %d, %q %q; want a failure saying %q", tc.args, code, out, errOut, tc.want)
		}
	}
}

func TestBenchMemory(t *testing.T) {
	// 2,000 sessions: the connections' buffers (64 calls run at once, each holding an agent
	// and an upstream connection) are then a small share of each session's figure.
	code, out, errOut := runCLI(t, "", "bench", "memory", "--sessions", "2000", "--soak", "2s", "--json")
	if code != 0 {
		t.Fatalf("bench memory = %d\n%s\n%s", code, out, errOut)
	}
	var m memoryReport
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		t.Fatal(err)
	}
	// The gateway keeps something per session (the session, its flow state), and not
	// much: a buffer per session, or a flow history allocated whole (it was 12 KiB),
	// breaks these bounds.
	if m.ActivePerSession <= 0 || m.IdlePerSession > 4<<10 || m.ActivePerSession > 8<<10 {
		t.Errorf("per session: idle %d B, active %d B", m.IdlePerSession, m.ActivePerSession)
	}
	if m.RSSWithSessions == 0 || m.SoakCalls == 0 || len(m.SoakHeap) < 3 {
		t.Fatalf("report %+v", m)
	}
	// Sessions opened and closed over and over leave the heap where the first round
	// left it: what each session held is freed.
	first, last := m.SoakHeap[1], m.SoakHeap[len(m.SoakHeap)-1]
	if last > first+first/4+4<<20 {
		t.Errorf("heap grew over the soak from %d to %d bytes (%d calls): %v", first, last, m.SoakCalls, m.SoakHeap)
	}
	if g := m.SoakGoroutines; g[len(g)-1] > g[1]+16 {
		t.Errorf("goroutines grew over the soak: %v", g)
	}
}

func TestBenchUpstreamServesUntilStopped(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan int, 1)
	var out, errOut strings.Builder
	go func() { done <- Run(ctx, []string{"bench", "upstream", "--listen", "127.0.0.1:0"}, &out, &errOut) }()
	cancel()
	if code := <-done; code != 0 {
		t.Errorf("bench upstream = %d: %s", code, errOut.String())
	}
}

// TestBenchSDKUpstream runs the comparison with the upstream built on the official SDK,
// which answers with event streams.
func TestBenchSDKUpstream(t *testing.T) {
	r := runBench(t, "--upstream-kind", "sdk", "--sessions", "2", "--rate", "0", "--duration", "300ms", "--rounds", "1")
	c := r.Comparisons[0]
	if c.Baseline.OK == 0 || c.Baseline.OK != c.Baseline.Calls || len(c.Targets) != 1 || c.Targets[0].OK == 0 || c.Targets[0].RPCErrors != 0 {
		t.Errorf("comparison %+v", c)
	}
}
