package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/chaperone-dev/chaperone/internal/config"
	"github.com/chaperone-dev/chaperone/internal/daemon"
	"github.com/chaperone-dev/chaperone/internal/identity"
	"github.com/chaperone-dev/chaperone/internal/registry"
)

// Bounds of the in-process gateway's settings.
const (
	MinRules = 2
	MaxRules = 100_000
)

// The tools the harness's upstream offers: echo is allowed, blocked is denied by policy.
const (
	ToolEcho    = "echo"
	ToolBlocked = "blocked"
)

// GatewayOptions describe the Chaperone gateway the harness starts in this process, in
// front of an upstream. The zero value of each field is the gateway's default pipeline:
// policy, argument validation, result sensors, flow tracking and a durable audit log.
type GatewayOptions struct {
	// UpstreamURL is the upstream's streamable HTTP endpoint. Required.
	UpstreamURL string
	// Rules is the number of policy rules, MinRules (allow echo, deny blocked) to
	// MaxRules; the rest are rules for other tools, a third of them with CEL conditions,
	// which the gateway must index past. 0 means 10.
	Rules int
	// NoFlow labels echo trusted and public, so its results are not tracked as
	// untrusted values (by default they are: untrusted, private).
	NoFlow bool
	// NoSensors turns the result sensors (injection, secrets, personal data) off.
	NoSensors bool
	// AuditAfter is the audit log's audit.after: "durable" (default: outcomes committed
	// before the answer) or "async".
	AuditAfter string
	// Journal is the audit log's audit.journal: "on" (default: events made durable in
	// the append-only journal, then indexed) or "off" (by SQLite's own commit).
	Journal string
	// GroupWait is the audit log's audit.group_wait: how long a batch may wait for more
	// events under load (0: never).
	GroupWait time.Duration
	// DataDir holds the gateway's SQLite database and audit journal; empty: a new
	// directory inside TempDir, removed by Close.
	DataDir string
	// TempDir is where the temporary data directory is made when DataDir is empty;
	// empty: the system's temporary directory. It decides which disk the durable audit
	// log flushes to.
	TempDir string
	// Logger receives the gateway's log; nil discards it.
	Logger *slog.Logger
}

// Gateway is a Chaperone gateway running in this process.
type Gateway struct {
	// URL is the gateway's MCP endpoint and Token the bearer token of its one agent.
	URL, Token string

	cancel  context.CancelFunc
	done    chan error
	tempDir string
	d       *daemon.Daemon
}

// AuditCommits returns the audit commits the gateway has made so far, as its metrics
// count them; an error if its metrics are off, rather than a count of 0.
func (g *Gateway) AuditCommits() (int64, error) {
	m := g.d.Metrics()
	if m == nil {
		return 0, errors.New("bench gateway: its metrics are off, so its audit commits are not counted")
	}
	return m.AuditCommits(), nil
}

// Settle waits until the gateway's audit journal is indexed (see [Target].Settle).
func (g *Gateway) Settle(ctx context.Context) error { return g.d.SyncAudit(ctx) }

// StartGateway starts a gateway in front of o.UpstreamURL and waits until the upstream's
// tools are reconciled (at most 30s). Call Close to stop it.
func StartGateway(ctx context.Context, o GatewayOptions) (*Gateway, error) {
	if o.UpstreamURL == "" {
		return nil, errors.New("bench gateway: the upstream URL is required")
	}
	if o.Rules == 0 {
		o.Rules = 10
	}
	if o.Rules < MinRules || o.Rules > MaxRules {
		return nil, fmt.Errorf("bench gateway: rules must be between %d and %d, got %d", MinRules, MaxRules, o.Rules)
	}
	switch o.AuditAfter {
	case "", "durable", "async":
	default:
		return nil, fmt.Errorf("bench gateway: audit must be durable or async, got %q", o.AuditAfter)
	}
	switch o.Journal {
	case "", "on", "off":
	default:
		return nil, fmt.Errorf("bench gateway: journal must be on or off, got %q", o.Journal)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	g := &Gateway{done: make(chan error, 1)}
	dir := o.DataDir
	if dir == "" {
		var err error
		if dir, err = os.MkdirTemp(o.TempDir, "chaperone-bench-"); err != nil {
			return nil, fmt.Errorf("bench gateway: %w", err)
		}
		g.tempDir = dir
	}
	d, token, err := newGateway(ctx, o, dir)
	if err != nil {
		g.removeTemp()
		return nil, err
	}
	g.URL, g.Token, g.d = d.MCPURL(), token, d
	runCtx, cancel := context.WithCancel(context.Background())
	g.cancel = cancel
	go func() { g.done <- d.Run(runCtx) }()

	waitCtx, stop := context.WithTimeout(ctx, 30*time.Second)
	defer stop()
	for !reconciled(d) {
		select {
		case <-waitCtx.Done():
			_ = g.Close()
			return nil, fmt.Errorf("bench gateway: the upstream's tools were not reconciled: %w", waitCtx.Err())
		case err := <-g.done:
			cancel()
			g.removeTemp()
			return nil, fmt.Errorf("bench gateway: stopped while starting: %v", err)
		case <-time.After(10 * time.Millisecond):
		}
	}
	return g, nil
}

// reconciled reports whether both of the upstream's tools are known and callable.
func reconciled(d *daemon.Daemon) bool {
	ready := 0
	for _, t := range d.Registry().Tools() {
		if t.Status == registry.StatusActive {
			ready++
		}
	}
	return ready == 2
}

func newGateway(ctx context.Context, o GatewayOptions, dir string) (*daemon.Daemon, string, error) {
	policyFile := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(policyFile, []byte(Policy(o.Rules)), 0o600); err != nil {
		return nil, "", fmt.Errorf("bench gateway: %w", err)
	}
	token, sha := identity.NewToken()
	echo := config.Tool{Upstream: "bench", Name: ToolEcho, Class: "read"}
	if o.NoFlow {
		echo.Flow = config.ToolFlow{Trust: "trusted", Data: "public", Sinks: []string{}}
	}
	if o.NoSensors {
		echo.Sensors.Results = config.ResultSensors{Injection: "off", Secrets: "allow", PII: "allow"}
	}
	cfg := &config.Config{
		DataDir:   filepath.Join(dir, "data"),
		Server:    config.Server{Listen: "127.0.0.1:0"},
		Admin:     config.Admin{Listen: "127.0.0.1:0"},
		Upstreams: []config.Upstream{{Name: "bench", URL: o.UpstreamURL}},
		Tools:     []config.Tool{echo, {Upstream: "bench", Name: ToolBlocked, Class: "write"}},
		Agents:    []config.Agent{{ID: "bench-agent", Owner: "bench@example.com", Purpose: "load tests", TokenSHA256: sha}},
		Policy:    config.Policy{Paths: []string{policyFile}},
		Audit:     config.Audit{After: o.AuditAfter, Journal: o.Journal, GroupWait: config.Duration(o.GroupWait)},
		Log:       config.Log{Level: "warn"},
	}
	cfg.ApplyDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, "", fmt.Errorf("bench gateway: configuration: %w", err)
	}
	d, err := daemon.New(ctx, cfg, daemon.Options{Logger: o.Logger})
	if err != nil {
		return nil, "", fmt.Errorf("bench gateway: %w", err)
	}
	return d, token, nil
}

// Policy returns a policy of n rules (n ≥ 2): echo allowed, blocked denied, and n-2 more
// for other agents, by tool name, by class and by name pattern, some with CEL
// conditions. They are candidates for every call (same tools), so the gateway cannot
// index them away: a worst case for its rule matching.
func Policy(n int) string {
	var b strings.Builder
	b.WriteString("rules:\n")
	b.WriteString("  - id: allow-echo\n    match: {agents: [bench-agent], tools: [echo]}\n    effect: allow\n")
	b.WriteString("  - id: deny-blocked\n    match: {tools: [blocked]}\n    effect: deny\n")
	for i := range n - MinRules {
		fmt.Fprintf(&b, "  - id: filler-%d\n", i)
		switch i % 3 {
		case 0:
			fmt.Fprintf(&b, "    match: {agents: [agent-%d], tools: [echo, blocked]}\n", i)
		case 1:
			fmt.Fprintf(&b, "    match: {agents: [agent-%d], classes: [%s]}\n", i, []string{"read", "write", "external", "destructive"}[i%4])
		default:
			fmt.Fprintf(&b, "    match: {agents: [agent-%d], tools: [\"ech*\", \"bl*\"]}\n", i)
		}
		effect := "allow"
		if i%2 == 1 {
			effect = "deny"
		}
		if i%3 == 0 || i%5 == 0 {
			fmt.Fprintf(&b, "    when: 'size(args) > %d'\n", i%7)
		}
		fmt.Fprintf(&b, "    effect: %s\n", effect)
	}
	return b.String()
}

// Close stops the gateway, waits for it (at most 30s) and removes its temporary
// directory.
func (g *Gateway) Close() error {
	g.cancel()
	var err error
	select {
	case err = <-g.done:
	case <-time.After(30 * time.Second):
		err = errors.New("bench gateway: did not stop within 30s")
	}
	g.removeTemp()
	return err
}

func (g *Gateway) removeTemp() {
	if g.tempDir != "" {
		_ = os.RemoveAll(g.tempDir)
	}
}
