package config

import (
	"strings"
	"testing"
	"time"
)

func TestEvidenceDefaults(t *testing.T) {
	c, err := Parse([]byte(validBase))
	if err != nil {
		t.Fatal(err)
	}
	c.ApplyDefaults()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.Audit.Checkpoints.Every() != time.Minute || !strings.HasSuffix(c.Audit.Checkpoints.KeyFile, "audit-signing.key") ||
		c.Audit.Retention.Interval.D() != time.Hour || c.Audit.RetentionOn() {
		t.Errorf("audit defaults = %+v", c.Audit)
	}
	if tr := c.Telemetry.Traces; tr.Exporter != "none" || tr.SampleRatio != 1 || tr.Capture || c.Telemetry.Metrics.Listen != "admin" {
		t.Errorf("telemetry defaults = %+v", c.Telemetry)
	}

	off, err := Parse([]byte(validBase + "audit:\n  checkpoints: {interval: 0s}\n"))
	if err != nil {
		t.Fatal(err)
	}
	off.ApplyDefaults()
	if off.Audit.Checkpoints.Every() != 0 {
		t.Errorf("interval 0s = %s, want off", off.Audit.Checkpoints.Every())
	}
}

func TestEvidenceParsesAndExpands(t *testing.T) {
	t.Setenv("ANCHOR_TOKEN", "s3cr3t")
	c, err := Parse([]byte(validBase + `
audit:
  checkpoints:
    interval: 30s
    publish:
      - file: anchors/checkpoints.jsonl
      - webhook: {url: "https://anchor.example.com/hook", headers: {Authorization: "Bearer ${ANCHOR_TOKEN}"}}
      - object_store: {url: "https://bucket.example.com/chaperone/"}
  retention:
    kinds: {auth.failed: 168h, call.outcome: 2160h}
telemetry:
  traces: {exporter: otlp-http, endpoint: "http://127.0.0.1:4318/v1/traces", sample_ratio: 0.5}
  metrics: {listen: "127.0.0.1:9464"}
`))
	if err != nil {
		t.Fatal(err)
	}
	if err := Expand(c, func(k string) (string, bool) {
		return map[string]string{"ANCHOR_TOKEN": "s3cr3t"}[k], k == "ANCHOR_TOKEN"
	}); err != nil {
		t.Fatal(err)
	}
	c.resolvePaths("/etc/chaperone")
	c.ApplyDefaults()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	p := c.Audit.Checkpoints.Publish
	if p[0].File != "/etc/chaperone/anchors/checkpoints.jsonl" || p[1].Webhook.Headers["Authorization"] != "Bearer s3cr3t" ||
		p[2].ObjectStore.Timeout.D() != 10*time.Second || !c.Audit.RetentionOn() {
		t.Errorf("audit = %+v", c.Audit)
	}
}

func TestEvidenceValidate(t *testing.T) {
	zero := Duration(0)
	for _, tc := range []struct {
		name   string
		mutate func(*Config)
		want   []string
	}{
		{"interval", func(c *Config) { d := Duration(time.Millisecond); c.Audit.Checkpoints.Interval = &d },
			[]string{"audit.checkpoints.interval: must be 0s (off) or at least 1s, got 1ms"}},
		{"two anchors in one", func(c *Config) {
			c.Audit.Checkpoints.Publish = []Anchor{{File: "/x", Webhook: &AnchorHTTP{URL: "https://a.example/"}}}
		}, []string{"audit.checkpoints.publish[0]: must set exactly one of file, webhook and object_store, got 2"}},
		{"object store url", func(c *Config) {
			c.Audit.Checkpoints.Publish = []Anchor{{ObjectStore: &AnchorHTTP{URL: "https://bucket.example/prefix"}}}
		}, []string{`audit.checkpoints.publish[0].object_store.url: must end with "/"`}},
		{"webhook url", func(c *Config) { c.Audit.Checkpoints.Publish = []Anchor{{Webhook: &AnchorHTTP{URL: "ftp://x"}}} },
			[]string{"audit.checkpoints.publish[0].webhook.url: must be an http(s) URL"}},
		{"retention without checkpoints", func(c *Config) {
			c.Audit.Checkpoints.Interval = &zero
			c.Audit.Retention.Kinds = map[string]Duration{"auth.failed": Duration(time.Hour)}
		}, []string{"audit.retention: prunes only behind a signed checkpoint"}},
		{"negative retention", func(c *Config) { c.Audit.Retention.Default = Duration(-time.Hour) },
			[]string{"audit.retention.default: must not be negative"}},
		{"exporter", func(c *Config) { c.Telemetry.Traces.Exporter = "zipkin" },
			[]string{`telemetry.traces.exporter: must be none, otlp-grpc or otlp-http, got "zipkin"`}},
		{"grpc endpoint", func(c *Config) {
			c.Telemetry.Traces.Exporter, c.Telemetry.Traces.Endpoint = "otlp-grpc", "http://x:4317"
		},
			[]string{"telemetry.traces.endpoint: must be host:port for otlp-grpc"}},
		{"http endpoint", func(c *Config) { c.Telemetry.Traces.Exporter = "otlp-http" },
			[]string{"telemetry.traces.endpoint: must be an http(s) URL for otlp-http"}},
		{"ratio", func(c *Config) { c.Telemetry.Traces.SampleRatio = 1.5 }, []string{"telemetry.traces.sample_ratio: must be above 0 and at most 1, got 1.5"}},
		{"metrics listen", func(c *Config) { c.Telemetry.Metrics.Listen = "everywhere" }, []string{`telemetry.metrics.listen: must be admin, off or host:port, got "everywhere"`}},
	} {
		t.Run(tc.name, func(t *testing.T) { wantInvalid(t, tc.mutate, tc.want) })
	}
}

func TestEvidenceHeadersRedacted(t *testing.T) {
	c, err := Parse([]byte(validBase + `
audit:
  checkpoints:
    publish:
      - webhook: {url: "https://anchor.example.com/hook", headers: {Authorization: "Bearer hunter2"}}
telemetry:
  traces: {exporter: otlp-grpc, endpoint: "127.0.0.1:4317", headers: {x-api-key: "hunter2"}}
`))
	if err != nil {
		t.Fatal(err)
	}
	c.ApplyDefaults()
	b, err := c.Redacted().Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "hunter2") {
		t.Fatalf("redacted config shows a header value:\n%s", b)
	}
	if c.Audit.Checkpoints.Publish[0].Webhook.Headers["Authorization"] != "Bearer hunter2" {
		t.Fatal("Redacted changed the configuration it copied")
	}
}
