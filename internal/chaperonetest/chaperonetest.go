// Package chaperonetest runs a real Chaperone gateway in-process for tests: real SQLite in a
// temporary directory, real listeners on loopback, real upstreams, the real audit log.
package chaperonetest

import (
	"context"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/chaperone-dev/chaperone/internal/config"
	"github.com/chaperone-dev/chaperone/internal/daemon"
	"github.com/chaperone-dev/chaperone/internal/demo"
	"github.com/chaperone-dev/chaperone/internal/identity"
	"github.com/chaperone-dev/chaperone/internal/inspect"
	"github.com/chaperone-dev/chaperone/internal/registry"
)

// Agent is a registered test agent and its bearer token.
type Agent struct {
	ID    string
	Token string
}

// Options describe the gateway to start.
type Options struct {
	Upstreams []config.Upstream
	Tools     []config.Tool
	// Policy is the policy file's YAML.
	Policy string
	// Agents are registered with fresh tokens; default one agent "test-agent".
	Agents []string
	// FirstUse is the registry's first_use setting (default "pin").
	FirstUse string
	// Configure, if set, may change the configuration before it is validated.
	Configure func(*config.Config)
	// ConfigFile writes the configuration to a file the gateway runs from, so that reloads
	// re-read it (see [Gateway.RewriteConfig]).
	ConfigFile bool
	// Logger receives the daemon's log; nil discards it.
	Logger *slog.Logger
	// EgressResolver resolves the egress proxy's destinations (see daemon.Options).
	EgressResolver inspect.Resolver
}

// Gateway is a running gateway.
type Gateway struct {
	Daemon     *daemon.Daemon
	Config     *config.Config
	URL        string
	AdminURL   string
	DataDir    string
	PolicyFile string
	Agents     map[string]Agent
	// Demo is the demo upstream's state when a builtin demo upstream is configured.
	Demo *demo.State
	// ConfigPath is the file the gateway runs from, with Options.ConfigFile.
	ConfigPath string

	opts daemon.Options
	stop func()
}

// Start builds and runs a gateway and stops it when the test ends. It waits until every
// upstream has been reconciled once (no tool is pending).
func Start(t testing.TB, o Options) *Gateway {
	t.Helper()
	dir := t.TempDir()
	g := &Gateway{DataDir: filepath.Join(dir, "data"), PolicyFile: filepath.Join(dir, "policy.yaml"), Agents: map[string]Agent{}}
	if err := os.WriteFile(g.PolicyFile, []byte(o.Policy), 0o600); err != nil {
		t.Fatal(err)
	}
	if len(o.Agents) == 0 {
		o.Agents = []string{"test-agent"}
	}
	cfg := &config.Config{
		DataDir:   g.DataDir,
		Server:    config.Server{Listen: "127.0.0.1:0"},
		Admin:     config.Admin{Listen: "127.0.0.1:0"},
		Registry:  config.Registry{FirstUse: o.FirstUse},
		Upstreams: o.Upstreams,
		Tools:     o.Tools,
		Policy:    config.Policy{Paths: []string{g.PolicyFile}},
		Log:       config.Log{Level: "warn"},
		// Held calls are refused (approval_required) unless a test turns approvals on
		// in Configure: a held call would otherwise wait for a person.
		Approvals: config.Approvals{Enabled: new(bool)},
	}
	for _, id := range o.Agents {
		tok, sha := identity.NewToken()
		g.Agents[id] = Agent{ID: id, Token: tok}
		cfg.Agents = append(cfg.Agents, config.Agent{ID: id, Owner: "owner@example.com", Purpose: "tests", TokenSHA256: sha})
	}
	if o.Configure != nil {
		o.Configure(cfg)
	}
	cfg.ApplyDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatalf("test config: %v", err)
	}
	g.Config = cfg
	g.opts = daemon.Options{DemoState: &g.Demo, Logger: o.Logger, EgressResolver: o.EgressResolver}
	if o.ConfigFile {
		g.ConfigPath = filepath.Join(dir, "chaperone.yaml")
		g.RewriteConfig(t, nil)
		g.opts.ConfigPath = g.ConfigPath
	}
	g.run(t)
	return g
}

// run builds and runs the daemon of g's configuration and waits until every tool is
// reconciled.
func (g *Gateway) run(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	d, err := daemon.New(ctx, g.Config, g.opts)
	if err != nil {
		cancel()
		t.Fatalf("daemon.New: %v", err)
	}
	g.Daemon, g.URL, g.AdminURL = d, d.MCPURL(), d.AdminURL()
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	var once sync.Once
	g.stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("daemon.Run: %v", err)
				}
			case <-time.After(30 * time.Second):
				t.Errorf("daemon did not stop within 30s")
			}
		})
	}
	t.Cleanup(g.stop)
	WaitFor(t, 30*time.Second, "every tool reconciled", func() bool {
		for _, tl := range d.Registry().Tools() {
			if tl.Status == registry.StatusPending {
				return false
			}
		}
		return true
	})
}

// Restart stops the gateway and starts it again over the same data directory and
// configuration, as an operator's restart would. Its URLs change (new ports); the demo
// upstream starts afresh.
func (g *Gateway) Restart(t testing.TB) {
	t.Helper()
	g.stop()
	g.run(t)
}

// RewriteConfig writes the gateway's configuration file anew, changed by mutate (if not
// nil); the gateway picks it up at its next reload.
func (g *Gateway) RewriteConfig(t testing.TB, mutate func(*config.Config)) {
	t.Helper()
	cp := *g.Config
	cp.Tools = append([]config.Tool(nil), g.Config.Tools...)
	cp.Upstreams = append([]config.Upstream(nil), g.Config.Upstreams...)
	if mutate != nil {
		mutate(&cp)
	}
	b, err := cp.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(g.ConfigPath, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// Stop shuts the gateway down and waits for it, so its store can be inspected offline.
func (g *Gateway) Stop(t testing.TB) {
	t.Helper()
	g.stop()
}

// WaitFor polls cond until it holds or the deadline passes.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Connect opens an MCP client session (the official Go SDK's client) to the gateway as the
// agent with the given token. version selects the protocol revision ("" for the SDK's newest).
func (g *Gateway) Connect(t testing.TB, token, version string) *mcp.ClientSession {
	t.Helper()
	return ConnectURL(t, g.URL, token, version)
}

// ConnectURL opens an SDK client session to any streamable HTTP MCP endpoint with a bearer token.
func ConnectURL(t testing.TB, url, token, version string) *mcp.ClientSession {
	t.Helper()
	c := mcp.NewClient(&mcp.Implementation{Name: "chaperonetest", Version: "1"}, nil)
	tr := &mcp.StreamableClientTransport{Endpoint: url, HTTPClient: &http.Client{Transport: BearerTransport(token)}}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var opts *mcp.ClientSessionOptions
	if version != "" {
		opts = &mcp.ClientSessionOptions{ProtocolVersion: version}
	}
	cs, err := c.Connect(ctx, tr, opts)
	if err != nil {
		t.Fatalf("connect to %s: %v", url, err)
	}
	t.Cleanup(func() { cs.Close() })
	return cs
}

// BearerTransport adds "Authorization: Bearer token" to every request.
func BearerTransport(token string) http.RoundTripper {
	return roundTripper(func(r *http.Request) (*http.Response, error) {
		r = r.Clone(r.Context())
		if token != "" {
			r.Header.Set("Authorization", "Bearer "+token)
		}
		return http.DefaultTransport.RoundTrip(r)
	})
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// StartReplicas starts n gateways over one PostgreSQL database (dsn), as replicas behind a
// load balancer would run: one configuration — agents, tokens, policy, data directory
// for the shared key files — each replica with its own listeners and upstream
// connections. The first is started, and its first-start work (schema, signing keys, key
// files) done, before the others.
func StartReplicas(t testing.TB, n int, dsn string, o Options) []*Gateway {
	t.Helper()
	configure := o.Configure
	o.Configure = func(c *config.Config) {
		c.Store = config.Store{Postgres: &config.Postgres{URL: dsn}}
		if configure != nil {
			configure(c)
		}
	}
	first := Start(t, o)
	out := []*Gateway{first}
	for range n - 1 {
		g := &Gateway{Config: first.Config, DataDir: first.DataDir, PolicyFile: first.PolicyFile, Agents: first.Agents}
		g.opts = daemon.Options{DemoState: &g.Demo}
		g.run(t)
		out = append(out, g)
	}
	return out
}
