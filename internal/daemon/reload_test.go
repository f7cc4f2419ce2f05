package daemon_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chaperone-dev/chaperone/internal/audit"
	"github.com/chaperone-dev/chaperone/internal/chaperonetest"
	"github.com/chaperone-dev/chaperone/internal/config"
	"github.com/chaperone-dev/chaperone/internal/policy"
)

// Two policies that decide the same call differently, each naming its own rule.
const (
	policyA = "rules:\n  - id: a-allows\n    match: {tools: [create_ticket]}\n    effect: allow\n"
	policyB = "rules:\n  - id: b-denies\n    match: {tools: [create_ticket]}\n    effect: deny\n  - id: b-reads\n    match: {tools: [read_inbox]}\n    effect: allow\n"
)

// TestReloadUnderLoad swaps the policy back and forth while agents call, and checks that
// every decision is wholly one version's: its effect, its rules and the version it records
// agree — never a half-loaded policy. Run with -race.
func TestReloadUnderLoad(t *testing.T) {
	g := chaperonetest.Start(t, chaperonetest.Options{
		Upstreams: []config.Upstream{{Name: "demo", Builtin: "demo"}},
		Tools:     []config.Tool{{Upstream: "demo", Name: "create_ticket", Class: "write"}, {Upstream: "demo", Name: "read_inbox", Class: "read"}},
		Policy:    policyA,
		Configure: func(c *config.Config) { c.Policy.WatchInterval = config.Duration(time.Hour) },
	})
	dir := g.PolicyFile
	versions := map[string]string{} // version -> "a" or "b"
	for name, src := range map[string]string{"a": policyA, "b": policyB} {
		versions[policy.VersionOf([]policy.Source{{Name: dir, Data: []byte(src)}})] = name
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var reloads atomic.Int64
	reloader := make(chan struct{})
	go func() {
		defer close(reloader)
		for i := 0; ctx.Err() == nil; i++ {
			src := policyA
			if i%2 == 0 {
				src = policyB
			}
			if err := os.WriteFile(dir, []byte(src), 0o600); err != nil {
				t.Error(err)
				return
			}
			if _, err := g.Daemon.ReloadPolicy(ctx); err != nil && ctx.Err() == nil {
				t.Errorf("ReloadPolicy: %v", err)
				return
			}
			reloads.Add(1)
		}
	}()
	tok := g.Agents["test-agent"].Token
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cs := g.Connect(t, tok, "")
			for i := range 30 {
				// Distinct titles: the same call repeated would be refused as a loop.
				call(t, cs, "create_ticket", map[string]any{"title": fmt.Sprintf("t%d", i), "body": "b"})
			}
		}()
	}
	wg.Wait()
	cancel()
	<-reloader
	if reloads.Load() < 10 {
		t.Fatalf("only %d reloads happened", reloads.Load())
	}

	g.Stop(t)
	seen := map[string]int{}
	for _, e := range allEvents(t, g.Config.Store.SQLite) {
		if e.Tool != "create_ticket" || (e.Kind != audit.KindCallIntent && e.Kind != audit.KindCallRefused) {
			continue
		}
		which, ok := versions[e.PolicyVersion]
		if !ok {
			t.Fatalf("event %d: decided under version %q, which is neither policy", e.Seq, e.PolicyVersion)
		}
		seen[which]++
		switch {
		case which == "a" && (e.Decision != "allow" || len(e.Rules) != 1 || e.Rules[0] != "a-allows"):
			t.Errorf("event %d: version a but decision %s by %v", e.Seq, e.Decision, e.Rules)
		case which == "b" && (e.Decision != "deny" || len(e.Rules) != 1 || e.Rules[0] != "b-denies"):
			t.Errorf("event %d: version b but decision %s by %v", e.Seq, e.Decision, e.Rules)
		}
	}
	if seen["a"]+seen["b"] != 120 || seen["a"] == 0 || seen["b"] == 0 {
		t.Errorf("decisions: %v, want 120 in all, under both versions", seen)
	}
}

// TestPolicyWatch: editing the policy file is enough — the gateway notices, reloads, and a
// broken edit is refused once and keeps the old policy.
func TestPolicyWatch(t *testing.T) {
	g := chaperonetest.Start(t, chaperonetest.Options{
		Upstreams: []config.Upstream{{Name: "demo", Builtin: "demo"}},
		Tools:     []config.Tool{{Upstream: "demo", Name: "create_ticket", Class: "write"}, {Upstream: "demo", Name: "read_inbox", Class: "read"}},
		Policy:    policyA,
		Configure: func(c *config.Config) { c.Policy.WatchInterval = config.Duration(20 * time.Millisecond) },
	})
	vB := policy.VersionOf([]policy.Source{{Name: g.PolicyFile, Data: []byte(policyB)}})
	if err := os.WriteFile(g.PolicyFile, []byte(policyB), 0o600); err != nil {
		t.Fatal(err)
	}
	chaperonetest.WaitFor(t, 10*time.Second, "the edited policy in force", func() bool { return g.Daemon.Policy().Version() == vB })

	if err := os.WriteFile(g.PolicyFile, []byte("rules:\n  - id: broken\n    effect: maybe\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// Several watch intervals pass; the broken file is rejected once and B stays.
	deadline := time.Now().Add(300 * time.Millisecond)
	for time.Now().Before(deadline) {
		if v := g.Daemon.Policy().Version(); v != vB {
			t.Fatalf("policy changed to %s after a broken edit", v)
		}
		time.Sleep(20 * time.Millisecond)
	}
	g.Stop(t)
	rejected := 0
	for _, e := range allEvents(t, g.Config.Store.SQLite) {
		if e.Kind == audit.KindPolicyRejected {
			rejected++
		}
	}
	if rejected != 1 {
		t.Errorf("%d policy.rejected events for one broken edit, want 1", rejected)
	}
}

// TestConfigReload: the tool registry reloads from the configuration file with the policy,
// both validated before either is swapped in; upstream changes wait for a restart.
func TestConfigReload(t *testing.T) {
	g := chaperonetest.Start(t, chaperonetest.Options{
		Upstreams:  []config.Upstream{{Name: "demo", Builtin: "demo"}},
		Tools:      []config.Tool{{Upstream: "demo", Name: "read_inbox", Class: "read"}},
		Policy:     "rules:\n  - id: reads\n    match: {classes: [read]}\n    effect: allow\n",
		ConfigFile: true,
		Configure:  func(c *config.Config) { c.Policy.WatchInterval = config.Duration(time.Hour) },
	})
	cs := g.Connect(t, g.Agents["test-agent"].Token, "")
	ctx := context.Background()

	// Declare a new tool and allow it, in one reload: the policy naming it compiles only
	// against the new registry.
	g.RewriteConfig(t, func(c *config.Config) {
		c.Tools = append(c.Tools, config.Tool{Upstream: "demo", Name: "create_ticket", Class: "write"})
	})
	if err := os.WriteFile(g.PolicyFile, []byte("rules:\n  - id: reads\n    match: {classes: [read]}\n    effect: allow\n  - id: tickets\n    match: {tools: [create_ticket]}\n    effect: allow\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := g.Daemon.ReloadPolicy(ctx); err != nil {
		t.Fatalf("reload: %v", err)
	}
	chaperonetest.WaitFor(t, 10*time.Second, "create_ticket listed", func() bool {
		return slices.Contains(toolNames(t, cs), "create_ticket")
	})
	if got := refusal(t, call(t, cs, "create_ticket", map[string]any{"title": "t", "body": "b"})); got != "" {
		t.Errorf("newly declared tool refused: %s", got)
	}

	// A class change takes effect at once for a tool that stays.
	g.RewriteConfig(t, func(c *config.Config) {
		c.Tools = []config.Tool{{Upstream: "demo", Name: "read_inbox", Class: "write"}, {Upstream: "demo", Name: "create_ticket", Class: "write"}}
	})
	if _, err := g.Daemon.ReloadPolicy(ctx); err != nil {
		t.Fatalf("reload: %v", err)
	}
	if got := refusal(t, call(t, cs, "read_inbox", map[string]any{})); got != "denied_by_policy" {
		t.Errorf("read_inbox reclassified as write: refusal %q, want denied_by_policy", got)
	}

	// Upstreams need a restart: refused, and what is in force stays.
	before := g.Daemon.Policy().Version()
	g.RewriteConfig(t, func(c *config.Config) {
		c.Upstreams = append(c.Upstreams, config.Upstream{Name: "more", URL: "http://127.0.0.1:1/mcp", CallTimeout: config.Duration(time.Second), Environment: "dev"})
	})
	if _, err := g.Daemon.ReloadPolicy(ctx); err == nil || !strings.Contains(err.Error(), "upstreams changed") {
		t.Errorf("reload with a new upstream = %v, want a refusal naming upstreams", err)
	}
	if g.Daemon.Policy().Version() != before {
		t.Errorf("policy changed by a refused reload")
	}
	// A configuration that does not validate is refused too.
	if err := os.WriteFile(g.ConfigPath, []byte("server:\n  listen: nope\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := g.Daemon.ReloadPolicy(ctx); err == nil || !strings.Contains(err.Error(), "server.listen") {
		t.Errorf("reload of an invalid config = %v, want the validation error", err)
	}
	if got := refusal(t, call(t, cs, "create_ticket", map[string]any{"title": "t", "body": "b"})); got != "" {
		t.Errorf("after refused reloads the registry changed: %s", got)
	}
}
