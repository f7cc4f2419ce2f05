package config

import (
	"strings"
	"testing"
	"time"
)

func TestSensorsDefaultsAndEffective(t *testing.T) {
	c, err := Parse([]byte(validBase + `
sensors:
  defaults:
    results: {pii: mask}
    egress: {allow: ["@example.com"]}
`))
	if err != nil {
		t.Fatal(err)
	}
	on := true
	c.Tools[1].Sensors = ToolSensors{Results: ResultSensors{Injection: "block", Spotlight: &on}, Arguments: ArgumentSensors{ReceivePII: []string{"EMAIL"}}}
	c.ApplyDefaults()
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate = %v", err)
	}
	if c.Sensors.Budget.D() != 50*time.Millisecond || c.Sensors.OnError != "closed" || c.Sensors.Injection.Model != "embedded" || !strings.HasSuffix(c.Sensors.TokenKeyFile, "pii.key") {
		t.Errorf("sensor defaults = %+v", c.Sensors)
	}
	e0 := c.Tools[0].Sensors.Effective(c.Sensors.Defaults)
	if e0.Results.Injection != "flag" || e0.Results.Secrets != "redact" || e0.Results.PII != "mask" || e0.Results.Sanitize != "off" || len(e0.Egress.Allow) != 1 {
		t.Errorf("tool 0 effective = %+v", e0)
	}
	e1 := c.Tools[1].Sensors.Effective(c.Sensors.Defaults)
	if e1.Results.Injection != "block" || e1.Results.PII != "mask" || !*e1.Results.Spotlight || e1.Arguments.ReceivePII[0] != "EMAIL" {
		t.Errorf("tool 1 effective = %+v", e1)
	}
}

func TestSensorsValidate(t *testing.T) {
	on, off := true, false
	for _, tc := range []struct {
		name   string
		mutate func(*Config)
		want   []string
	}{
		{"budget", func(c *Config) { c.Sensors.Budget = Duration(time.Minute) }, []string{"sensors.budget: must be between 1ms and 10s, got 1m0s"}},
		{"on_error", func(c *Config) { c.Sensors.OnError = "maybe" }, []string{`sensors.on_error: must be closed or open, got "maybe"`}},
		{"threshold", func(c *Config) { c.Sensors.Injection.Threshold = 1.5 }, []string{"sensors.injection.threshold: must be between 0 and 1, got 1.5"}},
		{"classifier", func(c *Config) {
			c.Sensors.Injection.Classifier = &Classifier{URL: "ftp://x", Timeout: Duration(time.Hour), Threshold: 0.5}
		},
			[]string{"sensors.injection.classifier.url: must be an absolute http or https URL", "classifier.timeout: must be between", "classifier.fail: must be open or closed"}},
		{"result modes", func(c *Config) {
			c.Tools[0].Sensors.Results = ResultSensors{Injection: "warn", Secrets: "mask", PII: "hash", Sanitize: "html", Spotlight: &off, Datamark: &on}
		}, []string{`tools[0].sensors.results.injection: must be one of [flag block off], got "warn"`,
			`tools[0].sensors.results.secrets: must be one of [redact block allow], got "mask"`,
			`tools[0].sensors.results.pii:`, `tools[0].sensors.results.sanitize:`, "tools[0].sensors.results.datamark: needs spotlight: true"}},
		{"receive type", func(c *Config) { c.Tools[1].Sensors.Arguments.ReceivePII = []string{"EMAIL", "SHOE_SIZE"} },
			[]string{`tools[1].sensors.arguments.receive_pii[1]: unknown type "SHOE_SIZE"`}},
		{"egress entry", func(c *Config) { c.Tools[0].Sensors.Egress.Allow = []string{"http://"} }, []string{"tools[0].sensors.egress:"}},
		{"defaults", func(c *Config) { c.Sensors.Defaults.Results.PII = "shred" }, []string{"sensors.defaults.results.pii:"}},
	} {
		t.Run(tc.name, func(t *testing.T) { wantInvalid(t, tc.mutate, tc.want) })
	}
}

func TestClassifierHeadersExpandedAndRedacted(t *testing.T) {
	c, err := Parse([]byte(validBase + `
sensors:
  injection:
    classifier:
      url: https://guard.example.com/classify
      fail: closed
      headers: {Authorization: "Bearer ${GUARD_TOKEN}"}
`))
	if err != nil {
		t.Fatal(err)
	}
	if err := Expand(c, func(k string) (string, bool) { return "s3cr3t-guard", k == "GUARD_TOKEN" }); err != nil {
		t.Fatal(err)
	}
	c.ApplyDefaults()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.Sensors.Injection.Classifier.Headers["Authorization"] != "Bearer s3cr3t-guard" || c.Sensors.Injection.Classifier.Timeout.D() != 2*time.Second {
		t.Errorf("classifier = %+v", c.Sensors.Injection.Classifier)
	}
	out, _ := c.Redacted().Marshal()
	if strings.Contains(string(out), "s3cr3t-guard") {
		t.Errorf("redacted config shows the classifier's token:\n%s", out)
	}
}

// wantInvalid checks that the valid base configuration, changed by mutate, fails to
// validate with errors containing each of want.
func wantInvalid(t *testing.T, mutate func(*Config), want []string) {
	t.Helper()
	c, err := Parse([]byte(validBase))
	if err != nil {
		t.Fatal(err)
	}
	c.ApplyDefaults()
	mutate(c)
	err = c.Validate()
	if err == nil {
		t.Fatalf("Validate() = nil, want %q", want)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("Validate() = %v\nwant it to contain %q", err, w)
		}
	}
}
