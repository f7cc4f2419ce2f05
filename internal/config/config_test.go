package config

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestLoadExample(t *testing.T) {
	t.Setenv("TICKETS_API_TOKEN", "tk-secret-value-123")
	c, err := Load(filepath.Join("..", "..", "docs", "examples", "chaperone.yaml"))
	if err != nil {
		t.Fatalf("Load(example) = %v", err)
	}
	if got := c.Upstreams[1].Headers["Authorization"]; got != "Bearer tk-secret-value-123" {
		t.Errorf("expanded header = %q", got)
	}
	if !filepath.IsAbs(c.Policy.Paths[0]) || !strings.HasSuffix(c.Policy.Paths[0], filepath.Join("examples", "policies")) {
		t.Errorf("policy path not resolved against the file: %q", c.Policy.Paths[0])
	}
	if c.Registry.FirstUse != "quarantine" || c.Server.ReadHeaderTimeout.D().Seconds() != 5 {
		t.Errorf("values or defaults wrong: first_use %q, read_header_timeout %s", c.Registry.FirstUse, c.Server.ReadHeaderTimeout.D())
	}
	out, err := c.Redacted().Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), "tk-secret-value-123") {
		t.Errorf("redacted config shows the secret:\n%s", out)
	}
	if c.Upstreams[1].Headers["Authorization"] != "Bearer tk-secret-value-123" {
		t.Errorf("Redacted changed the original")
	}
}

func TestLoadMissingEnvNamesVariable(t *testing.T) {
	_, err := Load(filepath.Join("..", "..", "docs", "examples", "chaperone.yaml"))
	if err == nil || !strings.Contains(err.Error(), "TICKETS_API_TOKEN") || !strings.Contains(err.Error(), "upstreams[1].headers.Authorization") {
		t.Errorf("Load without env = %v, want an error naming the field and the variable", err)
	}
}

func TestParseStrict(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"unknown key", "server:\n  listne: x\n", "listne"},
		{"two documents", "data_dir: a\n---\ndata_dir: b\n", "more than one YAML document"},
		{"bad duration", "server:\n  read_timeout: 5\n", "invalid duration"},
		{"duration not a string", "server:\n  read_timeout: [1]\n", "duration must be a string"},
		{"wrong type", "upstreams: 3\n", "cannot unmarshal"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.in))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Parse(%q) = %v, want error containing %q", tc.in, err, tc.want)
			}
		})
	}
	if c, err := Parse(nil); err != nil || c == nil {
		t.Errorf("Parse(empty) = %v, %v; want an empty config", c, err)
	}
}

const validBase = `
upstreams:
  - {name: demo, builtin: demo}
  - {name: other, url: "https://x.example.com/mcp"}
tools:
  - {upstream: demo, name: read_file, class: read}
  - {upstream: other, name: read_file, class: read}
agents:
  - id: a1
    owner: o@example.com
    token_sha256: 0000000000000000000000000000000000000000000000000000000000000000
`

func TestValidate(t *testing.T) {
	c, err := Parse([]byte(validBase))
	if err != nil {
		t.Fatal(err)
	}
	c.ApplyDefaults()
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate(valid) = %v", err)
	}
	if c.Audit.Capture != CaptureNone || c.Audit.CaptureMaxBytes != 65536 || c.Audit.CapturesArguments() {
		t.Errorf("audit defaults = %+v, want capture none, capture_max_bytes 65536", c.Audit)
	}
	names, err := ExposedNames(c.Tools)
	if err != nil || names[0] != "demo__read_file" || names[1] != "other__read_file" {
		t.Errorf("ExposedNames = %v, %v; want namespaced names on collision", names, err)
	}

	for _, tc := range []struct {
		name   string
		mutate func(*Config)
		want   []string
	}{
		{"listen", func(c *Config) { c.Server.Listen = "9000" }, []string{`server.listen: invalid address "9000"`}},
		{"body bound", func(c *Config) { c.Server.MaxBodyBytes = 1 << 30 }, []string{"server.max_body_bytes: must be between 1024 and 67108864"}},
		{"upstream kind", func(c *Config) { c.Upstreams[0].URL = "http://x" }, []string{"upstreams[0]: exactly one of command, url or builtin"}},
		{"upstream url creds", func(c *Config) { c.Upstreams[1].URL = "https://u:p@x.example.com" }, []string{"upstreams[1].url: must not carry credentials"}},
		{"tool class", func(c *Config) { c.Tools[0].Class = "harmless" }, []string{`tools[0].class: must be one of read, write, external, destructive, got "harmless"`}},
		{"tool upstream", func(c *Config) { c.Tools[0].Upstream = "nope" }, []string{`tools[0].upstream: unknown upstream "nope"`}},
		{"pin format", func(c *Config) { c.Tools[0].Pin = "md5:abc" }, []string{"tools[0].pin"}},
		{"expose collision", func(c *Config) { c.Tools[0].ExposeAs = "read_file" }, []string{`tools[1]: exposed name "read_file" is already used by tools[0]`}},
		{"agent owner", func(c *Config) { c.Agents[0].Owner = "" }, []string{"agents[0].owner: is required"}},
		{"agent token", func(c *Config) { c.Agents[0].TokenSHA256 = "plaintext-token" }, []string{"agents[0].token_sha256"}},
		{"agent env", func(c *Config) { c.Agents[0].Environment = "staging" }, []string{`agents[0].environment: must be dev, test or prod, got "staging"`}},
		{"audit capture", func(c *Config) { c.Audit.Capture = "everything" }, []string{`audit.capture: must be none, arguments or arguments_and_results, got "everything"`}},
		{"audit capture bound", func(c *Config) { c.Audit.CaptureMaxBytes = 100 }, []string{"audit.capture_max_bytes: must be between 1024 and 16777216, got 100"}},
		{"audit capture too big", func(c *Config) { c.Audit.CaptureMaxBytes = 32 << 20 }, []string{"audit.capture_max_bytes: must be between 1024 and 16777216, got 33554432"}},
		{"audit after", func(c *Config) { c.Audit.After = "eventually" }, []string{`audit.after: must be durable or async, got "eventually"`}},
		{"audit group wait too long", func(c *Config) { c.Audit.GroupWait = Duration(11 * time.Millisecond) }, []string{`audit.group_wait: must be between 0s and 10ms, got 11ms`}},
		{"audit group wait negative", func(c *Config) { c.Audit.GroupWait = Duration(-time.Microsecond) }, []string{`audit.group_wait: must be between 0s and 10ms, got -1µs`}},
		{"approval hold beyond the write timeout", func(c *Config) { h := Duration(5 * time.Minute); c.Approvals.Hold = &h },
			[]string{"approvals.hold: must be at least 0s and less than server.write_timeout (2m0s), got 5m0s"}},
		{"approval timeout", func(c *Config) { c.Approvals.Timeout = Duration(time.Second) }, []string{"approvals.timeout: must be between 5s and 168h, got 1s"}},
		{"two-person unknown tool", func(c *Config) { c.Approvals.TwoPerson = []string{"pay"} }, []string{`approvals.two_person[0]: unknown tool "pay"`}},
		{"decline reasons", func(c *Config) { c.Approvals.DeclineReasons = []string{"Bad Reason"} },
			[]string{`approvals.decline_reasons[0]: must match`, `approvals.decline_reasons: must include "other"`}},
		{"webhook over plain http", func(c *Config) {
			c.Approvals.Webhooks = []Webhook{{URL: "http://hooks.example.com/x", Timeout: Duration(time.Second)}}
		},
			[]string{`approvals.webhooks[0].url: http is allowed only on a loopback address`}},
		{"webhook with credentials", func(c *Config) {
			c.Approvals.Webhooks = []Webhook{{URL: "https://u:p@hooks.example.com/x", Timeout: Duration(time.Second)}}
		},
			[]string{`approvals.webhooks[0].url: must not carry credentials`}},
		{"internal domain", func(c *Config) { c.Risk.InternalDomains = []string{"not a domain"} }, []string{`risk.internal_domains[0]: must be a domain name`}},
		{"risk threshold", func(c *Config) { c.Autonomy.RiskThreshold = 101 }, []string{"autonomy.risk_threshold: must be between 1 and 100, got 101"}},
		{"flow labels", func(c *Config) { c.Tools[0].Flow.Trust = "maybe" }, []string{`tools[0].flow: trust: unknown value "maybe"`}},
		{"tool cost", func(c *Config) { c.Tools[0].Cost = -1 }, []string{"tools[0].cost: must be between 0 and 1000000, got -1"}},
		{"retries on a tool that is not idempotent", func(c *Config) { n := 2; c.Tools[0].Retries = &n },
			[]string{"tools[0].retries: only an idempotent tool may be retried"}},
		{"retries bound", func(c *Config) { n := 9; c.Tools[0].Idempotent, c.Tools[0].Retries = true, &n }, []string{"tools[0].retries: must be between 0 and 5, got 9"}},
		{"budgets", func(c *Config) { c.Containment.Budgets.MaxSteps = -1 }, []string{"containment.budgets: max_steps, max_spend and max_tokens must be at least 0"}},
		{"cap", func(c *Config) {
			c.Containment.Caps = []Cap{{Name: "Pay!", Tools: []string{"nope"}, Per: "planet", Window: Duration(time.Millisecond), Max: 0}}
		}, []string{`containment.caps[0].name: must match`, `containment.caps[0].tools[0]: unknown tool "nope"`, `containment.caps[0].per: must be agent, user or task, got "planet"`,
			"containment.caps[0].window: must be between 1s and 8760h, got 1ms", "containment.caps[0].max: must be more than 0, got 0"}},
		{"duplicate cap", func(c *Config) {
			c.Containment.Caps = []Cap{{Name: "x", Per: "agent", Window: Duration(time.Hour), Max: 1}, {Name: "x", Per: "agent", Window: Duration(time.Hour), Max: 1}}
		}, []string{`containment.caps[1].name: duplicate cap "x"`}},
		{"rate limit", func(c *Config) {
			c.Containment.RateLimits = []RateLimit{{Per: "galaxy", Rate: "10/fortnight", Burst: 1}}
		},
			[]string{`containment.rate_limits[0].per: must be agent, tool or user, got "galaxy"`, "containment.rate_limits[0].rate:"}},
		{"loops", func(c *Config) { c.Containment.Loops.MaxRepeats = 0 }, []string{"containment.loops.max_repeats: must be between 1 and 10000, got 0"}},
		{"breaker trigger", func(c *Config) {
			c.Containment.Breakers.Triggers = []BreakerTrigger{{Signal: "vibes", Threshold: -1, Window: Duration(time.Minute)}}
		}, []string{`containment.breakers.triggers[0].signal: must be one of denials, injections`, "containment.breakers.triggers[0].threshold: must be more than 0, got -1"}},
		{"breaker degrade", func(c *Config) { c.Containment.Breakers.Degrade = "nap" }, []string{`containment.breakers.degrade: must be read_only, suggest_only or block, got "nap"`}},
		{"containment webhook over plain http", func(c *Config) {
			c.Containment.Webhooks = []Webhook{{URL: "http://hooks.example.com/x", Timeout: Duration(time.Second)}}
		}, []string{`containment.webhooks[0].url: http is allowed only on a loopback address`}},
		{"idempotency shorter than a call", func(c *Config) { c.Containment.Idempotency.Retention = Duration(time.Minute) },
			[]string{"containment.idempotency.retention: must be longer than the longest call"}},
		{"manifests without publishers", func(c *Config) { c.Registry.Manifests = []string{"/etc/m.yaml"} },
			[]string{"registry: manifests and require_signed need trust.tool_publishers"}},
		{"require signed tools without publishers", func(c *Config) { c.Registry.RequireSigned = true },
			[]string{"registry: manifests and require_signed need trust.tool_publishers"}},
		{"paths and bundle", func(c *Config) { c.Policy.Bundle, c.Policy.Paths = "/etc/p.bundle", []string{"/etc/p.yaml"} }, []string{"policy: give paths or bundle, not both"}},
		{"require signed policy without bundle", func(c *Config) { c.Policy.RequireSigned = true },
			[]string{"policy.require_signed: needs policy.bundle and trust.policy_signers"}},
		{"trusted keys", func(c *Config) {
			c.Trust.PolicySigners = []TrustedKey{{Name: "Release!", KeyFile: "k.pub"}, {Name: "ok"}, {Name: "ok", KeyFile: "k"}}
		}, []string{`trust.policy_signers[0].name: must match`, "trust.policy_signers[1].key_file: is required", `trust.policy_signers[2].name: duplicate name "ok"`}},
		{"tool in another environment", func(c *Config) { c.Tools[0].Environment = "prod" },
			[]string{`tools[0].environment: is prod, but upstream "demo" is in dev`}},
		{"dev agent given a prod tool", func(c *Config) {
			c.Upstreams[1].Environment = "prod"
			c.Agents[0].Capabilities = []string{"demo__read_file", "other__read_file"}
		}, []string{`agents[0].capabilities[1]: tool "other__read_file" lives on upstream "other" in prod; a dev agent cannot reach it`}},
		{"all at once", func(c *Config) {
			c.Server.Listen = "bad"
			c.Agents[0].Owner = ""
			c.Log.Level = "loud"
		}, []string{"server.listen", "agents[0].owner", "log.level"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, _ := Parse([]byte(validBase))
			c.ApplyDefaults()
			tc.mutate(c)
			err := c.Validate()
			if err == nil {
				t.Fatalf("Validate() = nil, want errors %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate() = %v\nwant it to contain %q", err, w)
				}
			}
		})
	}
}

func TestExpandUnsetIsError(t *testing.T) {
	c := &Config{Upstreams: []Upstream{{Name: "x", Env: map[string]string{"K": "${NOPE}"}}}}
	err := Expand(c, func(string) (string, bool) { return "", false })
	if err == nil || !strings.Contains(err.Error(), "NOPE") || !strings.Contains(err.Error(), "upstreams[0].env.K") {
		t.Errorf("Expand = %v, want an error naming the field and the variable", err)
	}
}

// FuzzParse: the configuration decoder never panics, and whatever it accepts can be
// defaulted and validated without panicking.
func FuzzParse(f *testing.F) {
	f.Add([]byte(validBase))
	f.Add([]byte("server:\n  listen: 127.0.0.1:1\n  read_timeout: 5s\n"))
	f.Add([]byte("tools:\n  - {upstream: a, name: b, class: read, arguments: {p: {path_prefixes: [/x]}}}\n"))
	f.Add([]byte("{{{"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data)
		if err != nil {
			return
		}
		c.ApplyDefaults()
		_ = c.Validate()
		_, _ = c.Redacted().Marshal()
	})
}

func TestAuditCapture(t *testing.T) {
	for _, tc := range []struct {
		yaml          string
		args, results bool
		maxBytes      int64
	}{
		{"", false, false, 65536},
		{"audit: {capture: none}\n", false, false, 65536},
		{"audit: {capture: arguments, capture_max_bytes: 1024}\n", true, false, 1024},
		{"audit: {capture: arguments_and_results, capture_max_bytes: 16777216}\n", true, true, 16 << 20},
	} {
		c, err := Parse([]byte(validBase + tc.yaml))
		if err != nil {
			t.Fatalf("Parse(%q): %v", tc.yaml, err)
		}
		c.ApplyDefaults()
		if err := c.Validate(); err != nil {
			t.Fatalf("Validate(%q): %v", tc.yaml, err)
		}
		if c.Audit.CapturesArguments() != tc.args || c.Audit.CapturesResults() != tc.results || c.Audit.CaptureMaxBytes != tc.maxBytes {
			t.Errorf("%q: audit = %+v (arguments %v, results %v), want arguments %v, results %v, max %d",
				tc.yaml, c.Audit, c.Audit.CapturesArguments(), c.Audit.CapturesResults(), tc.args, tc.results, tc.maxBytes)
		}
	}
	if _, err := Parse([]byte("audit: {capture: all, redact: true}\n")); err == nil || !strings.Contains(err.Error(), "redact") {
		t.Errorf("Parse(unknown audit key) = %v, want an error naming it", err)
	}
}
