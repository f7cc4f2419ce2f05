package daemon_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/chaperone-dev/chaperone/internal/chaperonetest"
	"github.com/chaperone-dev/chaperone/internal/cli"
	"github.com/chaperone-dev/chaperone/internal/config"
	"github.com/chaperone-dev/chaperone/internal/store/sqlite"
	"github.com/chaperone-dev/chaperone/internal/telemetry/otlptest"
)

const (
	agentTraceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	agentSpanID  = "00f067aa0ba902b7"
)

// spansOf returns the spans of one trace by name (the last one of each name).
func spansOf(spans []otlptest.Span, traceID string) map[string][]otlptest.Span {
	out := map[string][]otlptest.Span{}
	for _, s := range spans {
		if s.TraceID == traceID {
			out[s.Name] = append(out[s.Name], s)
		}
	}
	return out
}

func TestTracesJoinTheAgentsTraceOverHTTP(t *testing.T) {
	t.Parallel()
	rcv := otlptest.StartHTTP(t)
	g := startSensors(t, func(c *config.Config) {
		c.Audit.Capture = config.CaptureNone
		c.Telemetry.Traces = config.Traces{Exporter: "otlp-http", Endpoint: rcv.Endpoint(), SampleRatio: 1, Timeout: config.Duration(5 * time.Second)}
	})
	cs := g.Connect(t, g.Agents["test-agent"].Token, "2025-11-25")
	res := chaperonetest.CallMeta(t, cs, "read_inbox", map[string]any{}, mcp.Meta{
		"traceparent": "00-" + agentTraceID + "-" + agentSpanID + "-01",
		"tracestate":  "vendor=agent",
	})
	if res.IsError {
		t.Fatalf("read_inbox refused: %s", chaperonetest.Refusal(t, res))
	}
	g.Stop(t) // flushes the exporter

	byName := spansOf(rcv.Spans(), agentTraceID)
	root := byName["tools/call read_inbox"]
	var server, client otlptest.Span
	for _, s := range root {
		switch s.Kind {
		case "server":
			server = s
		case "client":
			client = s
		}
	}
	if server.SpanID == "" || server.ParentSpanID != agentSpanID {
		t.Fatalf("no server span joined to the agent's span %s; spans of the trace: %v", agentSpanID, names(byName))
	}
	for k, want := range map[string]any{
		"gen_ai.tool.name": "read_inbox", "gen_ai.operation.name": "execute_tool", "mcp.method.name": "tools/call",
		"gen_ai.agent.id": "test-agent", "chaperone.decision": "allow", "chaperone.upstream": "demo",
		"mcp.protocol.version": "2025-11-25",
	} {
		if got := server.Attributes[k]; got != want {
			t.Errorf("server span %s = %v, want %v", k, got, want)
		}
	}
	if _, ok := server.Attributes["mcp.session.id"]; !ok {
		t.Error("server span has no mcp.session.id")
	}
	if _, ok := server.Attributes["gen_ai.tool.call.arguments"]; ok {
		t.Error("arguments in a span although capture is off")
	}
	for _, stage := range []string{"chaperone.authenticate", "chaperone.admit", "chaperone.validate", "chaperone.sensors.call",
		"chaperone.policy", "chaperone.budget", "chaperone.audit.intent", "chaperone.sensors.result", "chaperone.audit.outcome"} {
		sp := byName[stage]
		if len(sp) != 1 || sp[0].ParentSpanID != server.SpanID {
			t.Errorf("stage %s: %d spans, want 1 child of the call's span", stage, len(sp))
		}
	}
	if client.ParentSpanID != server.SpanID || client.Attributes["chaperone.upstream"] != "demo" {
		t.Errorf("upstream call span = %+v", client)
	}
	if p := byName["chaperone.policy"]; len(p) == 1 && p[0].Attributes["chaperone.decision"] != "allow" {
		t.Errorf("policy span attributes = %v", p[0].Attributes)
	}
	if inj := byName["chaperone.sensor.injection"]; len(inj) == 0 {
		t.Error("no injection sensor span on the result")
	}
	if sc := byName["chaperone.sensor.secrets"]; len(sc) == 0 {
		t.Error("no secret sensor span")
	}
	if server.Resource["service.name"] != "chaperone" {
		t.Errorf("resource = %v", server.Resource)
	}
}

func names(m map[string][]otlptest.Span) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestTracesOverGRPCFromTheTraceparentHeader(t *testing.T) {
	t.Parallel()
	rcv := otlptest.StartGRPC(t)
	g := startSensors(t, func(c *config.Config) {
		c.Telemetry.Traces = config.Traces{Exporter: "otlp-grpc", Endpoint: rcv.Endpoint(), Insecure: true, SampleRatio: 1,
			Capture: true, Timeout: config.Duration(5 * time.Second)}
	})
	tok := g.Agents["test-agent"].Token
	// A denied call, carrying a credential in its arguments: the span says why, and the
	// captured arguments have the credential redacted.
	body := `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"send_email","arguments":{"to":"bob@example.com","subject":"key","body":"AKIAQ3EGT6KXZJ4YV7PB"},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}`
	req, _ := http.NewRequest(http.MethodPost, g.URL, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Mcp-Protocol-Version", "2026-07-28")
	req.Header.Set("Mcp-Method", "tools/call")
	req.Header.Set("Mcp-Name", "send_email")
	req.Header.Set("Traceparent", "00-"+agentTraceID+"-"+agentSpanID+"-01")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	answer, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(answer), "denied_by_policy") {
		t.Fatalf("send_email with a credential: HTTP %d %s", resp.StatusCode, answer)
	}
	// An unauthenticated request is traced too.
	bad, _ := http.NewRequest(http.MethodPost, g.URL, strings.NewReader(body))
	bad.Header.Set("Authorization", "Bearer nope")
	bad.Header.Set("Content-Type", "application/json")
	bad.Header.Set("Traceparent", "00-"+agentTraceID+"-"+agentSpanID+"-01")
	if resp, err := http.DefaultClient.Do(bad); err == nil {
		resp.Body.Close()
	}
	g.Stop(t)

	byName := spansOf(rcv.Spans(), agentTraceID)
	calls := byName["tools/call send_email"]
	if len(calls) != 1 || calls[0].ParentSpanID != agentSpanID {
		t.Fatalf("call spans = %+v; trace has %v", calls, names(byName))
	}
	sp := calls[0]
	if sp.Status != "error" || sp.Attributes["chaperone.refusal.code"] != "denied_by_policy" ||
		sp.Attributes["error.type"] != "tool_error" {
		t.Errorf("denied call span: status %s, attributes %v", sp.Status, sp.Attributes)
	}
	rules, _ := sp.Attributes["chaperone.policy.rules"].([]any)
	if len(rules) != 1 || rules[0] != "no-secrets-out" {
		t.Errorf("rules = %v", sp.Attributes["chaperone.policy.rules"])
	}
	args, _ := sp.Attributes["gen_ai.tool.call.arguments"].(string)
	if !strings.Contains(args, "bob@example.com") || strings.Contains(args, "AKIAQ3EGT6KXZJ4YV7PB") || !strings.Contains(args, "REDACTED") {
		t.Errorf("captured arguments = %q, want them with the credential redacted", args)
	}
	if p := byName["chaperone.policy"]; len(p) != 1 || p[0].Attributes["chaperone.refusal.code"] != "denied_by_policy" {
		t.Errorf("the policy stage is not marked as the one that refused: %+v", p)
	}
	if _, ran := byName["chaperone.audit.intent"]; ran {
		t.Error("a denied call has an intent stage")
	}
	var failed bool
	for _, a := range byName["chaperone.authenticate"] {
		if a.Status == "error" && a.Attributes["error.type"] == "unauthenticated" {
			failed = true
		}
	}
	if !failed {
		t.Error("no span for the refused credential")
	}
}

func TestCheckpointsAnchorTheLogAcrossRestarts(t *testing.T) {
	t.Parallel()
	anchorFile := filepath.Join(t.TempDir(), "checkpoints.jsonl")
	g := startSensors(t, func(c *config.Config) {
		c.Audit.Checkpoints.Publish = []config.Anchor{{File: anchorFile}}
	})
	cs := g.Connect(t, g.Agents["test-agent"].Token, "2025-11-25")
	for range 3 {
		chaperonetest.Call(t, cs, "read_inbox", map[string]any{})
	}
	cp, ok, err := g.Daemon.Checkpoint(t.Context())
	if err != nil || !ok {
		t.Fatalf("Checkpoint = %v, %v", ok, err)
	}
	chaperonetest.Call(t, cs, "read_inbox", map[string]any{})
	g.Stop(t) // a last checkpoint at shutdown covers the call after cp

	db := filepath.Join(g.DataDir, "chaperone.db")
	out := runCLI(t, "audit", "verify", "--data-dir", g.DataDir, "--checkpoints", anchorFile)
	if !strings.Contains(out, "chain intact") || !strings.Contains(out, "signed checkpoints match") || strings.Contains(out, "not covered") {
		t.Fatalf("verify of an intact, anchored log:\n%s", out)
	}
	out = runCLI(t, "audit", "verify", "--data-dir", g.DataDir, "--from", itoa(cp.Seq))
	if !strings.Contains(out, "after the checkpoint at event "+itoa(cp.Seq)) {
		t.Fatalf("verify --from:\n%s", out)
	}

	w, err := sqlite.Open(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	// The events after cp deleted: verifying from cp still sees the shutdown checkpoint.
	if _, err := w.SQL().Exec(`DELETE FROM audit_events WHERE seq > ?`, cp.Seq); err != nil {
		t.Fatal(err)
	}
	out, code := runCLICode(t, "audit", "verify", "--data-dir", g.DataDir, "--from", itoa(cp.Seq))
	if code == 0 || !strings.Contains(out, "deleted from the end") {
		t.Fatalf("verify --from after deleting the events after it (exit %d):\n%s", code, out)
	}
	// Someone with the database deletes the newest events (and the stored checkpoints): the
	// published anchor still shows it.
	if _, err := w.SQL().Exec(`DELETE FROM audit_events WHERE seq > ?`, cp.Seq-1); err != nil {
		t.Fatal(err)
	}
	if _, err := w.SQL().Exec(`DELETE FROM audit_checkpoints`); err != nil {
		t.Fatal(err)
	}
	w.Close()
	out, code = runCLICode(t, "audit", "verify", "--data-dir", g.DataDir, "--checkpoints", anchorFile)
	if code == 0 || !strings.Contains(out, "deleted from the end") {
		t.Fatalf("verify after deleting the newest events (exit %d):\n%s", code, out)
	}
	// Without the published file, an auditor who names the key expects an anchored log:
	// one with no checkpoint left fails rather than passes with a note.
	out, code = runCLICode(t, "audit", "verify", "--data-dir", g.DataDir, "--key", filepath.Join(g.DataDir, "audit-signing.key.pub"))
	if code == 0 || !strings.Contains(out, "UNANCHORED") {
		t.Fatalf("verify --key of a log stripped of its checkpoints (exit %d):\n%s", code, out)
	}
	out = runCLI(t, "audit", "verify", "--data-dir", g.DataDir)
	if !strings.Contains(out, "no signed checkpoint covers this log") {
		t.Fatalf("verify without a key of an unanchored log:\n%s", out)
	}
}

// runCLI runs the chaperone command and returns its standard output; it must succeed.
func runCLI(t *testing.T, args ...string) string {
	t.Helper()
	out, code := runCLICode(t, args...)
	if code != 0 {
		t.Fatalf("chaperone %v: exit %d\n%s", args, code, out)
	}
	return out
}

func runCLICode(t *testing.T, args ...string) (string, int) {
	t.Helper()
	var buf bytes.Buffer
	code := cli.Run(t.Context(), args, &buf, &buf)
	return buf.String(), code
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func TestMetricsEndpointFollowsTheEvidence(t *testing.T) {
	t.Parallel()
	g := startSensors(t, nil)
	cs := g.Connect(t, g.Agents["test-agent"].Token, "2025-11-25")
	chaperonetest.Call(t, cs, "read_inbox", map[string]any{})
	res := chaperonetest.Call(t, cs, "send_email", map[string]any{"to": "bob@example.com", "subject": "k", "body": "AKIAQ3EGT6KXZJ4YV7PB"})
	if chaperonetest.Refusal(t, res) != "denied_by_policy" {
		t.Fatalf("send_email = %s", chaperonetest.Refusal(t, res))
	}
	if _, err := g.Daemon.Kill(t.Context(), "agent:test-agent", "alice", "drill"); err != nil {
		t.Fatal(err)
	}
	url := g.Daemon.MetricsURL()
	if url != g.AdminURL+"/metrics" {
		t.Fatalf("MetricsURL = %q", url)
	}
	var body string
	chaperonetest.WaitFor(t, 10*time.Second, "metrics of the kill", func() bool {
		resp, err := http.Get(url) // no admin token: metrics carry names and counts only
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET /metrics: HTTP %d", resp.StatusCode)
		}
		body = string(b)
		return strings.Contains(body, "chaperone_kills_total 1")
	})
	for _, want := range []string{
		`chaperone_calls_total{agent="test-agent",decision="allow",tool="read_inbox"} 1`,
		`chaperone_calls_total{agent="test-agent",decision="deny",tool="send_email"} 1`,
		`chaperone_denials_total{reason="denied_by_policy",rule="no-secrets-out"} 1`,
		`chaperone_sensor_detections_total{direction="call",kind="aws_access_key",sensor="secret"} 1`,
		`chaperone_time_to_contain_seconds_count 1`,
		`chaperone_call_duration_seconds_count{decision="allow"} 1`,
		`chaperone_upstream_latency_seconds_count{tool="read_inbox",upstream="demo"} 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if strings.Contains(body, "AKIAQ3EGT6KXZJ4YV7PB") {
		t.Error("/metrics carries a credential")
	}
	// The agent endpoint does not serve metrics.
	if resp, err := http.Get(strings.TrimSuffix(g.URL, g.Config.Server.Path) + "/metrics"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Error("/metrics is served on the agent listener")
		}
	}
}

// TestRetentionPrunesBehindTheCheckpointOnly: audit.retention turns expired events into
// tombstones, only up to the newest checkpoint, and the log still verifies. The metrics
// are on a listener of their own here, and then not on the admin listener.
func TestRetentionPrunesBehindTheCheckpointOnly(t *testing.T) {
	t.Parallel()
	g := startSensors(t, func(c *config.Config) {
		c.Audit.Retention.Kinds = map[string]config.Duration{"call.intent": config.Duration(time.Hour)}
		c.Telemetry.Metrics.Listen = "127.0.0.1:0"
	})
	cs := g.Connect(t, g.Agents["test-agent"].Token, "2025-11-25")
	chaperonetest.Call(t, cs, "read_inbox", map[string]any{})
	chaperonetest.Call(t, cs, "read_file", map[string]any{"path": "notes.txt"})
	if _, ok, err := g.Daemon.Checkpoint(t.Context()); !ok || err != nil {
		t.Fatalf("Checkpoint = %v, %v", ok, err)
	}
	chaperonetest.Call(t, cs, "read_inbox", map[string]any{})
	later := time.Now().Add(2 * time.Hour)
	if n, err := g.Daemon.Prune(t.Context(), later); err != nil || n != 2 {
		t.Fatalf("Prune = %d, %v; want the 2 intents behind the checkpoint", n, err)
	}
	if n, err := g.Daemon.Prune(t.Context(), later); err != nil || n != 0 {
		t.Fatalf("Prune again = %d, %v; the intent after the checkpoint must stay", n, err)
	}

	url := g.Daemon.MetricsURL()
	if url == "" || strings.HasPrefix(url, g.AdminURL) {
		t.Fatalf("MetricsURL = %q, want a listener of its own", url)
	}
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: HTTP %d", url, resp.StatusCode)
	}
	if resp, err := http.Get(g.AdminURL + "/metrics"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Error("/metrics also served on the admin listener")
		}
	}

	g.Stop(t)
	out := runCLI(t, "audit", "verify", "--data-dir", g.DataDir, "--key", filepath.Join(g.DataDir, "audit-signing.key.pub"))
	if !strings.Contains(out, "chain intact") || !strings.Contains(out, "pruned: 2 events") {
		t.Fatalf("verify of the pruned log:\n%s", out)
	}
}
