package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime/pprof"
	"runtime/trace"
	"strconv"
	"strings"
	"time"

	"github.com/chaperone-dev/chaperone/internal/bench"
	"github.com/chaperone-dev/chaperone/internal/boundedfile"
	"github.com/chaperone-dev/chaperone/internal/config"
)

// benchCmd is `chaperone bench`: load through Chaperone (in this process) and any other
// MCP endpoint, against the same upstream called directly, in one run.
func benchCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 {
		switch args[0] {
		case "upstream":
			return benchUpstream(ctx, args[1:], stdout, stderr)
		case "memory":
			return benchMemory(ctx, args[1:], stdout, stderr)
		}
	}
	fs := newFlags("bench", stderr)
	sessions := fs.String("sessions", "8,32", "closed-loop runs at these numbers of concurrent sessions (comma-separated; empty for none)")
	rate := fs.Float64("rate", 500, "also an open-loop run at this many calls per second in all (0: none)")
	rateSessions := fs.Int("rate-sessions", 32, "sessions of the open-loop run")
	duration := fs.Duration("duration", 5*time.Second, "load time of each run")
	rounds := fs.Int("rounds", 3, "rounds: each target runs once per round, in turn; medians are reported")
	resultBytes := fs.Int("result-bytes", 256, "size of the text of each result of the built-in upstream")
	delay := fs.Duration("upstream-delay", 0, "time the built-in upstream takes per call (a tool's own latency)")
	kind := fs.String("upstream-kind", "lean", "the built-in upstream: lean (a few µs per call) or sdk (built on the official MCP Go SDK)")
	deny := fs.Float64("deny", 0, "fraction of calls to the tool the policy denies (0 to 1)")
	rules := fs.Int("rules", 10, fmt.Sprintf("policy rules of the in-process gateway (%d to %d)", bench.MinRules, bench.MaxRules))
	noFlow := fs.Bool("no-flow", false, "label the echo tool trusted and public (no untrusted values tracked)")
	noSensors := fs.Bool("no-sensors", false, "turn the result sensors off")
	audit := fs.String("audit", "durable", "audit.after of the in-process gateway: durable or async")
	journal := fs.String("journal", "on", "audit.journal of the in-process gateway: on or off")
	groupWait := fs.Duration("group-wait", 0, "audit.group_wait of the in-process gateway: how long a batch of audit events may wait for more under load (0: never)")
	tmpDir := fs.String("tmp-dir", "", "the in-process gateway keeps its database and audit journal in a new directory inside this one, removed afterwards (default: the system's temporary directory); it decides which disk the durable audit log flushes to")
	upstreamURL := fs.String("upstream", "", "call this upstream directly as the baseline instead of starting the built-in one (it must offer the tools called)")
	upstreamListen := fs.String("upstream-listen", "127.0.0.1:0", "address of the built-in upstream (loopback)")
	target := fs.String("target", "", "also measure this MCP endpoint (another gateway in front of the same upstream)")
	targetName := fs.String("target-name", "target", "the --target's name in the report")
	tokenFile := fs.String("token-file", "", "file holding the --target's bearer token")
	targetPID := fs.Int("target-pid", 0, "process id serving --target, to report its CPU per call (Linux)")
	noChaperone := fs.Bool("no-chaperone", false, "do not start Chaperone in this process (measure --target only)")
	tool := fs.String("tool", bench.ToolEcho, "the tool every allowed call calls (another gateway may name it differently, e.g. with a prefix)")
	deniedTool := fs.String("denied-tool", bench.ToolBlocked, "the tool the --deny share of calls calls")
	jsonOut := fs.Bool("json", false, "print the results as JSON")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	traceFile := fs.String("trace", "", "write a runtime execution trace of the whole run to this file (go tool trace reads it)")
	if err := parse(fs, args, 0); err != nil {
		return err
	}

	loads, err := benchLoads(*sessions, *rate, *rateSessions, *duration)
	if err != nil {
		return err
	}
	if *deny < 0 || *deny > 1 {
		return usageError{fmt.Sprintf("--deny must be between 0 and 1, got %g", *deny)}
	}
	if *tmpDir != "" {
		if fi, err := os.Stat(*tmpDir); err != nil || !fi.IsDir() {
			return usageError{fmt.Sprintf("--tmp-dir %q is not a directory", *tmpDir)}
		}
	}
	if *noChaperone && *target == "" {
		return usageError{"--no-chaperone leaves nothing to measure: give a --target"}
	}
	if (*tokenFile != "" || *targetPID != 0) && *target == "" {
		return usageError{"--token-file and --target-pid describe a --target, and none was given"}
	}
	mix := benchMix(*tool, *deniedTool, *deny)
	for i := range loads {
		loads[i].Mix = mix
	}

	baselineURL := *upstreamURL
	if baselineURL == "" {
		up, err := newBenchUpstream(*kind, bench.UpstreamOptions{ResultBytes: *resultBytes, Delay: *delay})
		if err != nil {
			return err
		}
		url, stop, err := serveLoopback(*upstreamListen, up)
		if err != nil {
			return err
		}
		defer stop()
		baselineURL = url
	}
	baseline := bench.Measured{Target: bench.Target{Name: "direct", URL: baselineURL}, InProcess: *upstreamURL == ""}
	var targets []bench.Measured
	if !*noChaperone {
		g, err := bench.StartGateway(ctx, bench.GatewayOptions{
			UpstreamURL: baselineURL, Rules: *rules, NoFlow: *noFlow, NoSensors: *noSensors, AuditAfter: *audit,
			Journal: *journal, TempDir: *tmpDir, GroupWait: *groupWait,
		})
		if err != nil {
			return err
		}
		defer g.Close()
		targets = append(targets, bench.Measured{Target: bench.Target{Name: "chaperone", URL: g.URL, Token: g.Token}, InProcess: true, Commits: g.AuditCommits})
	}
	if *target != "" {
		m := bench.Measured{Target: bench.Target{Name: *targetName, URL: *target}}
		if *tokenFile != "" {
			b, _, err := boundedfile.Read(*tokenFile, 64<<10)
			if err != nil {
				return fmt.Errorf("--token-file: %w", err)
			}
			m.Token = strings.TrimSpace(string(b))
		}
		if *targetPID != 0 {
			m.CPU = bench.ProcessCPU(*targetPID)
			if _, err := m.CPU(); err != nil {
				return fmt.Errorf("--target-pid: %w", err)
			}
		}
		targets = append(targets, m)
	}

	stopProfile, err := startRecording("--cpuprofile", *cpuProfile, pprof.StartCPUProfile, pprof.StopCPUProfile)
	if err != nil {
		return err
	}
	defer stopProfile()
	stopTrace, err := startRecording("--trace", *traceFile, trace.Start, trace.Stop)
	if err != nil {
		return err
	}
	defer stopTrace()
	maxSessions := 1
	for _, l := range loads {
		maxSessions = max(maxSessions, l.Sessions)
	}
	hc := bench.NewHTTPClient(maxSessions)
	defer hc.CloseIdleConnections()
	progress := func(msg string) { fmt.Fprintln(stderr, msg) }
	if !isTerminal(stderr) {
		progress = nil
	}
	cs, err := bench.Compare(ctx, hc, baseline, targets, loads, *rounds, progress)
	if err != nil {
		return err
	}
	if *jsonOut {
		return bench.WriteJSON(stdout, cs)
	}
	return bench.WriteText(stdout, cs)
}

// startRecording creates path and starts a recorder (a CPU profile, an execution trace)
// writing to it; the returned func stops it and closes the file. An empty path records
// nothing.
func startRecording(flag, path string, start func(io.Writer) error, stop func()) (func(), error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", flag, err)
	}
	if err := start(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", flag, err)
	}
	return func() {
		stop()
		f.Close()
	}, nil
}

// benchLoads builds the runs the flags ask for.
func benchLoads(sessions string, rate float64, rateSessions int, d time.Duration) ([]bench.Load, error) {
	var loads []bench.Load
	for f := range strings.SplitSeq(sessions, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 || n > bench.MaxSessions {
			return nil, usageError{fmt.Sprintf("--sessions: %q is not a number of sessions from 1 to %d", f, bench.MaxSessions)}
		}
		loads = append(loads, bench.Load{Sessions: n, Duration: d})
	}
	if rate < 0 || rate > bench.MaxRate {
		return nil, usageError{fmt.Sprintf("--rate must be between 0 and %d, got %g", bench.MaxRate, rate)}
	}
	if rate > 0 {
		if rateSessions < 1 || rateSessions > bench.MaxSessions {
			return nil, usageError{fmt.Sprintf("--rate-sessions must be between 1 and %d, got %d", bench.MaxSessions, rateSessions)}
		}
		loads = append(loads, bench.Load{Sessions: rateSessions, Rate: rate, Duration: d})
	}
	if len(loads) == 0 {
		return nil, usageError{"nothing to run: give --sessions or --rate"}
	}
	if d <= 0 || d > bench.MaxDuration {
		return nil, usageError{fmt.Sprintf("--duration must be between 0 and %s, got %s", bench.MaxDuration, d)}
	}
	return loads, nil
}

// benchMix calls tool, and denied for a fraction deny of the calls, spread
// evenly (call i is denied when the running count of denials falls behind i×deny). Each
// call's text differs: the gateway's loop breaker refuses the same call made over and
// over, as an agent stuck in a loop makes it.
func benchMix(tool, denied string, deny float64) func(int64) (string, json.RawMessage) {
	return func(i int64) (string, json.RawMessage) {
		args := json.RawMessage(fmt.Appendf(nil, `{"text":"hello %d"}`, i))
		if deny > 0 && int64(float64(i+1)*deny) > int64(float64(i)*deny) {
			return denied, args
		}
		return tool, args
	}
}

// serveLoopback serves h on addr, which must be a loopback address, and returns its URL
// and a function that stops it.
func serveLoopback(addr string, h http.Handler) (string, func(), error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return "", nil, usageError{fmt.Sprintf("listen address %q: %v", addr, err)}
	}
	if !config.IsLoopbackHost(host) {
		return "", nil, usageError{fmt.Sprintf("listen address %q: the harness's upstream listens on loopback only", addr)}
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return "http://" + ln.Addr().String() + "/mcp", func() { _ = srv.Close() }, nil
}

// benchUpstream is `chaperone bench upstream`: the harness's upstream on its own, for a
// gateway in another process to sit in front of.
func benchUpstream(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("bench upstream", stderr)
	listen := fs.String("listen", "127.0.0.1:9100", "address to listen on (loopback)")
	resultBytes := fs.Int("result-bytes", 256, "size of the text of each result")
	delay := fs.Duration("delay", 0, "time each call takes")
	kind := fs.String("kind", "lean", "lean (a few µs per call) or sdk (built on the official MCP Go SDK)")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	up, err := newBenchUpstream(*kind, bench.UpstreamOptions{ResultBytes: *resultBytes, Delay: *delay})
	if err != nil {
		return err
	}
	url, stop, err := serveLoopback(*listen, up)
	if err != nil {
		return err
	}
	defer stop()
	fmt.Fprintf(stdout, "upstream listening on %s (tools: %s, %s); stop with Ctrl-C\n", url, bench.ToolEcho, bench.ToolBlocked)
	<-ctx.Done()
	return nil
}

// newBenchUpstream makes the harness's upstream of a kind.
func newBenchUpstream(kind string, o bench.UpstreamOptions) (http.Handler, error) {
	var h http.Handler
	var err error
	switch kind {
	case "lean":
		h, err = bench.NewUpstream(o)
	case "sdk":
		h, err = bench.NewSDKUpstream(o)
	default:
		return nil, usageError{fmt.Sprintf("upstream kind must be lean or sdk, got %q", kind)}
	}
	if err != nil {
		return nil, usageError{err.Error()}
	}
	return h, nil
}

// benchMemory is `chaperone bench memory`: what sessions cost the gateway, and a soak.
func benchMemory(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("bench memory", stderr)
	sessions := fs.Int("sessions", 10_000, fmt.Sprintf("sessions to open (1 to %d; the gateway allows 10,000 by default)", bench.MaxMemorySessions))
	soak := fs.Duration("soak", 0, "then churn sessions through the gateway for this long and sample memory (0: no soak)")
	jsonOut := fs.Bool("json", false, "print the results as JSON")
	memProfile := fs.String("memprofile", "", "write a heap profile, taken while the sessions are open, to this file")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	if *sessions < 1 || *sessions > bench.MaxMemorySessions {
		return usageError{fmt.Sprintf("--sessions must be between 1 and %d, got %d", bench.MaxMemorySessions, *sessions)}
	}
	if *soak < 0 || *soak > bench.MaxDuration {
		return usageError{fmt.Sprintf("--soak must be between 0 and %s, got %s", bench.MaxDuration, *soak)}
	}
	up, err := bench.NewUpstream(bench.UpstreamOptions{ResultBytes: 256})
	if err != nil {
		return err
	}
	url, stop, err := serveLoopback("127.0.0.1:0", up)
	if err != nil {
		return err
	}
	defer stop()
	g, err := bench.StartGateway(ctx, bench.GatewayOptions{UpstreamURL: url})
	if err != nil {
		return err
	}
	defer g.Close()
	hc := bench.NewHTTPClient(64)
	defer hc.CloseIdleConnections()
	args1 := []byte(`{"text":"hello"}`)
	// The harness's own share: the same sessions on the upstream alone.
	direct, err := bench.MeasureSessions(ctx, hc, bench.Target{Name: "direct", URL: url}, *sessions, bench.ToolEcho, args1, nil)
	if err != nil {
		return err
	}
	var profile func() error
	if *memProfile != "" {
		profile = func() error { return writeHeapProfile(*memProfile) }
	}
	gw, err := bench.MeasureSessions(ctx, hc, bench.Target{Name: "chaperone", URL: g.URL, Token: g.Token, Settle: g.Settle}, *sessions, bench.ToolEcho, args1, profile)
	if err != nil {
		return err
	}
	out := memoryReport{
		Sessions:            *sessions,
		HarnessPerSession:   direct.ActivePerSession(),
		IdlePerSession:      gw.IdlePerSession() - direct.IdlePerSession(),
		ActivePerSession:    gw.ActivePerSession() - direct.ActivePerSession(),
		RSSBefore:           gw.Before.RSSBytes,
		RSSWithSessions:     gw.Active.RSSBytes,
		HeapWithSessions:    gw.Active.HeapBytes,
		GoroutinesAtSession: gw.Active.Goroutines,
	}
	if *soak > 0 {
		samples, calls, err := bench.Soak(ctx, hc, bench.Target{Name: "chaperone", URL: g.URL, Token: g.Token, Settle: g.Settle}, bench.SoakOptions{Duration: *soak})
		if err != nil {
			return err
		}
		out.SoakCalls = calls
		for _, s := range samples {
			out.SoakHeap = append(out.SoakHeap, s.HeapBytes)
			out.SoakGoroutines = append(out.SoakGoroutines, s.Goroutines)
		}
	}
	if *jsonOut {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	return out.writeText(stdout)
}

// writeHeapProfile writes the live heap's profile to path.
func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

type memoryReport struct {
	Sessions            int      `json:"sessions"`
	HarnessPerSession   int64    `json:"harness_bytes_per_session"`
	IdlePerSession      int64    `json:"gateway_bytes_per_idle_session"`
	ActivePerSession    int64    `json:"gateway_bytes_per_active_session"`
	RSSBefore           uint64   `json:"rss_before_bytes"`
	RSSWithSessions     uint64   `json:"rss_with_sessions_bytes"`
	HeapWithSessions    uint64   `json:"heap_with_sessions_bytes"`
	GoroutinesAtSession int      `json:"goroutines_with_sessions"`
	SoakCalls           int64    `json:"soak_calls,omitempty"`
	SoakHeap            []uint64 `json:"soak_heap_bytes,omitempty"`
	SoakGoroutines      []int    `json:"soak_goroutines,omitempty"`
}

func (m memoryReport) writeText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%d sessions open at once\n", m.Sessions)
	fmt.Fprintf(&b, "  gateway heap per idle session:    %s\n", bytesText(m.IdlePerSession))
	fmt.Fprintf(&b, "  gateway heap per active session:  %s (after one call each: flow state, usage)\n", bytesText(m.ActivePerSession))
	fmt.Fprintf(&b, "  harness client per session:       %s (subtracted above)\n", bytesText(m.HarnessPerSession))
	fmt.Fprintf(&b, "  process RSS: %s before, %s with the sessions open (gateway, harness and upstream)\n",
		bytesText(int64(m.RSSBefore)), bytesText(int64(m.RSSWithSessions)))
	if len(m.SoakHeap) > 0 {
		fmt.Fprintf(&b, "soak: %d calls; live heap after GC at each sample:", m.SoakCalls)
		for _, h := range m.SoakHeap {
			fmt.Fprintf(&b, " %s", bytesText(int64(h)))
		}
		fmt.Fprintf(&b, "\n  goroutines: %v\n", m.SoakGoroutines)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func bytesText(n int64) string {
	switch {
	case n >= 1<<30 || n <= -1<<30:
		return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
	case n >= 1<<20 || n <= -1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10 || n <= -1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// isTerminal reports whether f (an io.Reader or io.Writer) is a character device (a
// terminal), where prompts and progress are shown; in pipes and files it is not.
func isTerminal(f any) bool {
	file, ok := f.(*os.File)
	if !ok {
		return false
	}
	st, err := file.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
