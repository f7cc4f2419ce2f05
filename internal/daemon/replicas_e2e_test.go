package daemon_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/chaperone-dev/chaperone/internal/api"
	"github.com/chaperone-dev/chaperone/internal/audit"
	"github.com/chaperone-dev/chaperone/internal/chaperonetest"
	"github.com/chaperone-dev/chaperone/internal/config"
	"github.com/chaperone-dev/chaperone/internal/daemon"
	"github.com/chaperone-dev/chaperone/internal/store/pgtest"
	"github.com/chaperone-dev/chaperone/internal/store/postgres"
)

// Three gateway replicas over one PostgreSQL database, as behind a load balancer. These
// tests are the acceptance: a kill on one refuses on all within a second, an
// approval on one releases a call held on another, replicas cannot jointly overspend, and
// the audit chain they write together verifies.

// startReplicas runs n replicas of the containment test gateway (demo upstream plus the
// slow upstream) over a fresh schema.
func startReplicas(t *testing.T, n int, slow *slowUpstream, configure func(*config.Config)) ([]*chaperonetest.Gateway, string) {
	t.Helper()
	dsn := pgtest.DSN(t)
	gs := chaperonetest.StartReplicas(t, n, dsn, chaperonetest.Options{
		Upstreams: []config.Upstream{{Name: "demo", Builtin: "demo"}, {Name: "slow", URL: slow.URL}},
		Tools: []config.Tool{
			{Upstream: "demo", Name: "read_inbox", Class: "read"},
			{Upstream: "demo", Name: "create_ticket", Class: "write"},
			{Upstream: "demo", Name: "send_email", Class: "external"},
			{Upstream: "demo", Name: "transfer_money", Class: "destructive"},
			{Upstream: "demo", Name: "delete_record", Class: "destructive"},
			{Upstream: "slow", Name: "slow_write", Class: "write"},
		},
		Policy: containPolicy,
		Configure: func(c *config.Config) {
			c.Approvals.Enabled = nil
			hold := config.Duration(0)
			c.Approvals.Hold = &hold
			if configure != nil {
				configure(c)
			}
		},
	})
	return gs, dsn
}

// TestReplicasKillReachesEveryReplica: a kill pulled on replica A refuses the next call on
// B and C, and cancels the call in flight on C, within the one-second target.
func TestReplicasKillReachesEveryReplica(t *testing.T) {
	slow := startSlowUpstream(t)
	gs, _ := startReplicas(t, 3, slow, nil)
	tok := gs[0].Agents["test-agent"].Token
	var sessions []*mcp.ClientSession
	for _, g := range gs {
		cs := g.Connect(t, tok, "")
		if r := chaperonetest.Refusal(t, chaperonetest.Call(t, cs, "read_inbox", map[string]any{})); r != "" {
			t.Fatalf("read before the kill on %s: %q", g.URL, r)
		}
		sessions = append(sessions, cs)
	}
	// A call in flight on replica C, stuck at its upstream.
	inflight := make(chan string, 1)
	go func() {
		res, err := sessions[2].CallTool(context.Background(), &mcp.CallToolParams{Name: "slow_write", Arguments: map[string]any{"n": 1}})
		if err != nil {
			inflight <- "error: " + err.Error()
			return
		}
		inflight <- chaperonetest.RefusalField(res, "reason")
	}()
	select {
	case <-slow.started:
	case <-time.After(10 * time.Second):
		t.Fatal("the slow call never reached its upstream")
	}

	start := time.Now()
	admin(t, gs[0], "POST", "/v1/kills", map[string]any{"scope": "agent:test-agent", "by": "alice", "reason": "runaway"}, 201, nil)
	engaged := time.Since(start)
	contained := make([]time.Duration, len(gs))
	var wg sync.WaitGroup
	for i, cs := range sessions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Since(start) < 5*time.Second {
				res, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: "read_inbox", Arguments: map[string]any{}})
				if err == nil && chaperonetest.RefusalField(res, "reason") == "killed" {
					contained[i] = time.Since(start)
					return
				}
				time.Sleep(2 * time.Millisecond)
			}
		}()
	}
	wg.Wait()
	var reason string
	select {
	case reason = <-inflight:
	case <-time.After(5 * time.Second):
		t.Fatal("the call in flight on replica C was not cancelled")
	}
	cancelled := time.Since(start)
	if reason != "killed" {
		t.Errorf("the call in flight on C ended with %q, want killed", reason)
	}
	for i, d := range contained {
		if d == 0 || d > time.Second {
			t.Errorf("replica %d refused the agent %v after the kill, want within 1s", i, d)
		}
	}
	t.Logf("time to contain across 3 replicas: kill stored on A in %v; next call refused on A %v, B %v, C %v; call in flight on C ended by %v",
		engaged, contained[0], contained[1], contained[2], cancelled)
}

// TestReplicasApprovalReleasesHeldCallElsewhere: an agent held on replica B is released
// as soon as a person approves on replica A.
func TestReplicasApprovalReleasesHeldCallElsewhere(t *testing.T) {
	slow := startSlowUpstream(t)
	gs, _ := startReplicas(t, 3, slow, func(c *config.Config) {
		hold := config.Duration(30 * time.Second)
		c.Approvals.Hold = &hold
	})
	cs := gs[1].Connect(t, gs[1].Agents["test-agent"].Token, "")
	done := make(chan *mcp.CallToolResult, 1)
	go func() {
		res, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: "transfer_money", Arguments: payment(120)})
		if err != nil {
			t.Errorf("held call: %v", err)
		}
		done <- res
	}()
	var pending []api.Approval
	chaperonetest.WaitFor(t, 10*time.Second, "the held call's approval request on replica A", func() bool {
		pending = nil
		adminStatus(t, gs[0], "GET", "/v1/approvals", nil, &pending)
		return len(pending) == 1
	})
	start := time.Now()
	admin(t, gs[0], "POST", "/v1/approvals/"+pending[0].ID+"/approve", map[string]string{"by": "bob"}, 200, nil)
	select {
	case res := <-done:
		if r := chaperonetest.Refusal(t, res); r != "" {
			t.Fatalf("held call after approval on another replica: %q", r)
		}
		released := time.Since(start)
		if released > time.Second {
			t.Errorf("the held call ran %v after the approval, want within 1s", released)
		}
		t.Logf("approval on replica A released the call held on replica B in %v", released)
	case <-time.After(10 * time.Second):
		t.Fatal("the held call on replica B was not released by the approval on replica A")
	}
	if got := gs[1].Demo.Transfers(); len(got) != 1 {
		t.Errorf("transfers on B's upstream: %d, want exactly 1", len(got))
	}
}

// TestReplicasShareBudgetsAndOneChain: calls spread over three replicas at once never
// exceed a cap they share, and the audit chain they wrote together verifies.
func TestReplicasShareBudgetsAndOneChain(t *testing.T) {
	slow := startSlowUpstream(t)
	const capMax, perReplica = 12, 10
	gs, dsn := startReplicas(t, 3, slow, func(c *config.Config) {
		c.Containment.Caps = []config.Cap{{Name: "tickets", Tools: []string{"create_ticket"}, Per: "agent", Window: config.Duration(time.Hour), Max: capMax}}
	})
	var allowed, capped atomic.Int64
	var wg sync.WaitGroup
	for _, g := range gs {
		for range 2 {
			cs := g.Connect(t, g.Agents["test-agent"].Token, "")
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range perReplica / 2 {
					res := chaperonetest.Call(t, cs, "create_ticket", map[string]any{"title": fmt.Sprintf("t%d", i), "body": "b"})
					switch r := chaperonetest.Refusal(t, res); r {
					case "":
						allowed.Add(1)
					case "budget_exhausted":
						capped.Add(1)
					default:
						t.Errorf("create_ticket: %q", r)
					}
				}
			}()
		}
	}
	wg.Wait()
	if allowed.Load() != capMax || capped.Load() != 3*perReplica-capMax {
		t.Errorf("%d allowed and %d capped across 3 replicas, want exactly %d allowed and %d capped", allowed.Load(), capped.Load(), capMax, 3*perReplica-capMax)
	}
	for _, g := range gs {
		g.Stop(t)
	}
	db, err := postgres.OpenReadOnly(t.Context(), dsn, postgres.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rep, err := audit.Verify(t.Context(), db)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Broken != nil || rep.Unfinished != 0 {
		t.Fatalf("audit chain written by 3 replicas: %+v, want unbroken, every intent with its outcome", rep)
	}
	var intents, refused int
	for after := int64(0); ; {
		evs, err := db.ScanEvents(t.Context(), after, 1000)
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) == 0 {
			break
		}
		for _, e := range evs {
			if e.Tool == "create_ticket" && e.Kind == audit.KindCallIntent {
				intents++
			}
			if e.Tool == "create_ticket" && e.Kind == audit.KindCallRefused {
				refused++
			}
		}
		after = evs[len(evs)-1].Seq
	}
	if intents != capMax || refused != 3*perReplica-capMax {
		t.Errorf("the shared chain records %d create_ticket calls executed and %d refused, want %d and %d", intents, refused, capMax, 3*perReplica-capMax)
	}
}

// TestReplicaReadinessFollowsTheDatabase: a replica that loses its database refuses calls
// (fail closed) and reports not ready, without crashing; it recovers when the database
// is back.
func TestReplicaReadinessFollowsTheDatabase(t *testing.T) {
	slow := startSlowUpstream(t)
	dsn := pgtest.DSN(t)
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	proxy := startTCPProxy(t, u.Host)
	u.Host = proxy.addr
	gs, _ := startReplicasAt(t, u.String(), slow)
	g := gs[0]
	base := strings.TrimSuffix(g.URL, g.Config.Server.Path)
	if code, body := get(t, base+"/readyz"); code != 200 {
		t.Fatalf("readyz with the database up: %d %s", code, body)
	}
	cs := g.Connect(t, g.Agents["test-agent"].Token, "")
	if r := chaperonetest.Refusal(t, chaperonetest.Call(t, cs, "read_inbox", map[string]any{})); r != "" {
		t.Fatalf("read with the database up: %q", r)
	}

	proxy.down()
	code, body := get(t, base+"/readyz")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "store (postgres) unreachable") {
		t.Errorf("readyz with the database down: %d %q, want 503 naming the store", code, body)
	}
	if code, _ := get(t, base+"/healthz"); code != 200 {
		t.Errorf("healthz with the database down: %d, want 200 (alive)", code)
	}
	res, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: "read_inbox", Arguments: map[string]any{}})
	if err == nil && chaperonetest.RefusalField(res, "reason") == "" {
		t.Errorf("a call with the database down ran; want it refused")
	}

	proxy.up()
	chaperonetest.WaitFor(t, 15*time.Second, "readyz after the database is back", func() bool {
		code, _ := get(t, base+"/readyz")
		return code == 200
	})
	cs = g.Connect(t, g.Agents["test-agent"].Token, "")
	if r := chaperonetest.Refusal(t, chaperonetest.Call(t, cs, "read_inbox", map[string]any{})); r != "" {
		t.Errorf("read after the database is back: %q", r)
	}
}

func startReplicasAt(t *testing.T, dsn string, slow *slowUpstream) ([]*chaperonetest.Gateway, string) {
	t.Helper()
	return chaperonetest.StartReplicas(t, 1, dsn, chaperonetest.Options{
		Upstreams: []config.Upstream{{Name: "demo", Builtin: "demo"}, {Name: "slow", URL: slow.URL}},
		Tools: []config.Tool{
			{Upstream: "demo", Name: "read_inbox", Class: "read"},
			{Upstream: "slow", Name: "slow_write", Class: "write"},
		},
		Policy: "rules:\n  - {id: reads, match: {classes: [read]}, effect: allow}\n",
		Configure: func(c *config.Config) {
			c.Store.Postgres.StatementTimeout = config.Duration(time.Second)
			c.Store.Postgres.ConnectTimeout = config.Duration(time.Second)
		},
	}), dsn
}

func get(t *testing.T, u string) (int, string) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// tcpProxy forwards loopback connections to the database, and can cut every connection
// and refuse new ones: the database failing, as the replica sees it.
type tcpProxy struct {
	addr   string
	target string
	mu     sync.Mutex
	isDown bool
	conns  []net.Conn
}

func startTCPProxy(t *testing.T, target string) *tcpProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &tcpProxy{addr: ln.Addr().String(), target: target}
	t.Cleanup(func() { ln.Close(); p.down() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			if p.isDown {
				p.mu.Unlock()
				c.Close()
				continue
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				p.mu.Unlock()
				c.Close()
				continue
			}
			p.conns = append(p.conns, c, s)
			p.mu.Unlock()
			go func() { io.Copy(s, c); s.Close() }()
			go func() { io.Copy(c, s); c.Close() }()
		}
	}()
	return p
}

func (p *tcpProxy) down() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.isDown = true
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

func (p *tcpProxy) up() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.isDown = false
}

// TestReplicasSessionContinuesWithItsHistory: an agent's MCP session behind a round-robin
// load balancer moves between replicas at every request, and keeps what it read: the
// address an injected e-mail read through one replica planted cannot be mailed through
// another.
func TestReplicasSessionContinuesWithItsHistory(t *testing.T) {
	dsn := pgtest.DSN(t)
	gs := chaperonetest.StartReplicas(t, 3, dsn, chaperonetest.Options{
		Upstreams: []config.Upstream{{Name: "demo", Builtin: "demo"}},
		Tools: []config.Tool{
			{Upstream: "demo", Name: "read_inbox", Class: "read", Flow: config.ToolFlow{Trust: "untrusted", Data: "private"}},
			{Upstream: "demo", Name: "send_email", Class: "external", Flow: config.ToolFlow{Trust: "trusted", Data: "public", Sinks: []string{"to"}}},
		},
		Policy: `rules:
  - {id: allow-all, effect: allow}
  - {id: no-untrusted-recipient, match: {tools: [send_email]}, when: 'sinks_from_untrusted()', effect: deny}
`,
		Agents: []string{"mailer"},
	})
	var backends []*url.URL
	for _, g := range gs {
		u, err := url.Parse(g.URL)
		if err != nil {
			t.Fatal(err)
		}
		backends = append(backends, u)
	}
	var next, served atomic.Int64
	seen := make([]atomic.Int64, len(gs))
	lb := httptest.NewServer(&httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			i := next.Add(1) % int64(len(backends))
			seen[i].Add(1)
			served.Add(1)
			r.SetURL(backends[i])
			r.Out.URL.Path = backends[i].Path
		},
		FlushInterval: -1,
	})
	t.Cleanup(lb.Close)

	cs := chaperonetest.ConnectURL(t, lb.URL, gs[0].Agents["mailer"].Token, "2025-11-25")
	// Before the session read anything, mail to the address goes out.
	if r := chaperonetest.Refusal(t, chaperonetest.Call(t, cs, "send_email", map[string]any{"to": "archive@examp1e-support.net", "subject": "s", "body": "b"})); r != "" {
		t.Fatalf("mail before reading the inbox: %q", r)
	}
	chaperonetest.Call(t, cs, "read_inbox", map[string]any{})
	for i := range 3 { // every replica in turn serves the next call
		res := chaperonetest.Call(t, cs, "send_email", map[string]any{"to": "archive@examp1e-support.net", "subject": "fwd", "body": fmt.Sprint(i)})
		if r := chaperonetest.Refusal(t, res); r != "denied_by_policy" {
			t.Fatalf("steered mail %d after the inbox was read through another replica: %q, want denied_by_policy", i, r)
		}
	}
	for i := range seen {
		if seen[i].Load() == 0 {
			t.Errorf("replica %d served none of the session's %d requests", i, served.Load())
		}
	}
}

// TestReplicasStartingTogetherMakeOneSigningKey: replicas started at once on an empty
// database create the first token signing key once — two would leave each replica
// signing with a key the others learn of only later.
func TestReplicasStartingTogetherMakeOneSigningKey(t *testing.T) {
	dsn := pgtest.DSN(t)
	dir := t.TempDir()
	policy := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(policy, []byte("rules:\n  - {id: none, match: {classes: [read]}, effect: deny}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	const n = 3
	ds := make([]*daemon.Daemon, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		cfg := &config.Config{
			DataDir: filepath.Join(dir, fmt.Sprint("replica-", i)),
			Server:  config.Server{Listen: "127.0.0.1:0"},
			Admin:   config.Admin{Listen: "off"},
			Store:   config.Store{Postgres: &config.Postgres{URL: dsn}},
			Policy:  config.Policy{Paths: []string{policy}},
		}
		cfg.ApplyDefaults()
		if err := cfg.Validate(); err != nil {
			t.Fatal(err)
		}
		wg.Go(func() { ds[i], errs[i] = daemon.New(context.Background(), cfg, daemon.Options{}) })
	}
	wg.Wait()
	for i, d := range ds {
		if errs[i] != nil {
			t.Fatalf("replica %d: daemon.New: %v", i, errs[i])
		}
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := d.Run(ctx); err != nil {
			t.Errorf("replica %d: Run: %v", i, err)
		}
	}
	db, err := postgres.OpenReadOnly(t.Context(), dsn, postgres.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	keys, err := db.SigningKeys(t.Context())
	if err != nil || len(keys) != 1 {
		t.Fatalf("signing keys after %d replicas started together: %d (%v), want exactly 1", n, len(keys), err)
	}
}
