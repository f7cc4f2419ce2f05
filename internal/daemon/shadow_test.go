package daemon_test

import (
	"testing"

	"github.com/chaperone-dev/chaperone/internal/api"
	"github.com/chaperone-dev/chaperone/internal/audit"
	"github.com/chaperone-dev/chaperone/internal/chaperonetest"
	"github.com/chaperone-dev/chaperone/internal/config"
)

// TestShadowRollout: a rule in shadow mode changes nothing an agent sees, but every call it
// would have decided is counted and recorded.
func TestShadowRollout(t *testing.T) {
	g := chaperonetest.Start(t, chaperonetest.Options{
		Upstreams: []config.Upstream{{Name: "demo", Builtin: "demo"}},
		Tools:     []config.Tool{{Upstream: "demo", Name: "send_email", Class: "external"}, {Upstream: "demo", Name: "read_inbox", Class: "read"}},
		Policy: `
rules:
  - id: mail
    match: {tools: [send_email, read_inbox]}
    effect: allow
  - id: candidate-internal-mail-only
    mode: shadow
    match: {tools: [send_email]}
    when: '!args.to.endsWith("@example.com")'
    effect: deny
`,
	})
	cs := g.Connect(t, g.Agents["test-agent"].Token, "")
	for _, to := range []string{"a@example.com", "b@elsewhere.net", "c@elsewhere.net"} {
		if got := refusal(t, call(t, cs, "send_email", map[string]any{"to": to, "subject": "s", "body": "b"})); got != "" {
			t.Errorf("send_email to %s refused (%s): a shadow rule enforced", to, got)
		}
	}
	call(t, cs, "read_inbox", map[string]any{})

	var rep api.ShadowReport
	admin(t, g, "GET", "/v1/policy/shadow", nil, 200, &rep)
	if rep.PolicyVersion != g.Daemon.Policy().Version() || len(rep.Rules) != 1 {
		t.Fatalf("shadow report = %+v", rep)
	}
	if r := rep.Rules[0]; r.Rule != "candidate-internal-mail-only" || r.Applied != 2 || r.Changed != 2 {
		t.Errorf("shadow counts = %+v, want applied 2, changed 2", r)
	}

	g.Stop(t)
	shadowed := 0
	for _, e := range allEvents(t, g.Config.Store.SQLite) {
		if e.Kind == audit.KindCallIntent && e.ShadowDecision == "deny" && e.Decision == "allow" {
			shadowed++
		}
		if e.Kind == audit.KindCallIntent && e.Tool == "read_inbox" && e.ShadowDecision != "" {
			t.Errorf("a tool no shadow rule names got a shadow decision: %+v", e)
		}
	}
	if shadowed != 2 {
		t.Errorf("%d intents record a would-be deny, want 2", shadowed)
	}
}
