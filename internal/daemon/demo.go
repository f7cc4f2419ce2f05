package daemon

import (
	_ "embed"
	"path/filepath"
	"time"

	"github.com/chaperone-dev/chaperone/internal/argcheck"
	"github.com/chaperone-dev/chaperone/internal/config"
	"github.com/chaperone-dev/chaperone/internal/identity"
	"github.com/chaperone-dev/chaperone/internal/policy"
)

//go:embed demo-policy.yaml
var demoPolicy []byte

// DemoAgent is the id of the demo's agent.
const DemoAgent = "demo-assistant"

// Demo is the demo gateway's configuration, the demo agent's fresh bearer token and the
// embedded demo policy.
type Demo struct {
	Config *config.Config
	Token  string
	Policy []policy.Source
}

// DemoConfig returns a validated configuration for `chaperone serve --demo`: the built-in
// demo upstream, its seven tools with their risk classes and argument overlays, one agent
// with a new random token, and the embedded demo policy. State lives under dataDir.
func DemoConfig(dataDir, listen, adminListen string) (*Demo, error) {
	token, sha := identity.NewToken()
	maxLen := func(n int) *int { return &n }
	// Mail and files hold private content anyone can write to; the tools that act return
	// only a status.
	untrustedPrivate := config.ToolFlow{Trust: "untrusted", Data: "private"}
	// What mail and web pages say reaches the model inside a labelled data block.
	on := true
	spotlight := config.ToolSensors{Results: config.ResultSensors{Spotlight: &on}}
	trustedPublic := func(sinks ...string) config.ToolFlow {
		return config.ToolFlow{Trust: "trusted", Data: "public", Sinks: sinks}
	}
	c := &config.Config{
		DataDir:   dataDir,
		Server:    config.Server{Listen: listen},
		Admin:     config.Admin{Listen: adminListen},
		Upstreams: []config.Upstream{{Name: "demo", Builtin: "demo"}},
		Tools: []config.Tool{
			{Upstream: "demo", Name: "read_inbox", Class: "read", Flow: untrustedPrivate, Sensors: spotlight},
			{Upstream: "demo", Name: "read_file", Class: "read", Flow: untrustedPrivate, Arguments: argcheck.Overlay{
				"path": {PathPrefixes: []string{"/srv/demo"}, MaxLength: maxLen(512)},
			}},
			{Upstream: "demo", Name: "fetch_url", Class: "external", Flow: config.ToolFlow{Trust: "untrusted", Data: "public", Sinks: []string{"url"}}, Arguments: argcheck.Overlay{
				"url": {URLHosts: []string{"docs.example.com"}},
			}, Sensors: config.ToolSensors{
				Results: config.ResultSensors{Sanitize: "text", Spotlight: &on},
				Egress:  config.Egress{Allow: []string{"docs.example.com"}},
			}},
			{Upstream: "demo", Name: "create_ticket", Class: "write", Flow: config.ToolFlow{Trust: "trusted", Data: "public", Sinks: []string{}}},
			{Upstream: "demo", Name: "send_email", Class: "external", Flow: trustedPublic("to"), Arguments: argcheck.Overlay{
				"subject": {MaxLength: maxLen(200)},
			}},
			{Upstream: "demo", Name: "transfer_money", Class: "destructive", Flow: trustedPublic("recipient_iban"), Arguments: argcheck.Overlay{
				"recipient_iban": {Pattern: `[A-Z]{2}[0-9]{2}[A-Z0-9]{11,30}`},
			}},
			{Upstream: "demo", Name: "delete_record", Class: "destructive", Flow: trustedPublic("table", "id")},
		},
		Agents: []config.Agent{{
			ID: DemoAgent, Owner: "demo@example.com", Purpose: "reads mail and files, opens tickets, pays bills",
			Environment: "dev", TokenSHA256: sha,
		}},
		Policy: config.Policy{Paths: []string{"(embedded) demo-policy.yaml"}},
		// A held call ends at once with its approval id: approve it with
		// `chaperone approvals approve` and call again.
		Approvals: config.Approvals{Hold: new(config.Duration)},
		Risk:      config.Risk{InternalDomains: []string{"example.com"}},
		// The brakes: a session has 100 steps, payments at most 5,000 a day, and an agent
		// that keeps hitting denials or injection attempts is left read-only.
		Containment: config.Containment{
			Budgets: config.Budgets{MaxSteps: 100},
			Caps: []config.Cap{{Name: "payments-per-day", Tools: []string{"transfer_money"}, Sum: "amount",
				Per: "agent", Window: config.Duration(24 * time.Hour), Max: 5000}},
			RateLimits: []config.RateLimit{{Per: "agent", Rate: "5/s", Burst: 20}},
			Breakers: config.Breakers{Cooldown: config.Duration(2 * time.Minute), Triggers: []config.BreakerTrigger{
				{Signal: "denials", Threshold: 5, Window: config.Duration(10 * time.Minute)},
				{Signal: "injections", Threshold: 2, Window: config.Duration(10 * time.Minute)},
			}},
		},
	}
	c.ApplyDefaults()
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &Demo{Config: c, Token: token, Policy: []policy.Source{{Name: filepath.Join("demo", "demo-policy.yaml"), Data: demoPolicy}}}, nil
}
