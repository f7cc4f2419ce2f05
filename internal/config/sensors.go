package config

import (
	"fmt"
	"net/url"
	"path/filepath"
	"slices"
	"time"

	"github.com/chaperone-dev/chaperone/internal/inspect"
)

// Sensors configures the content sensors: injection, secrets and personal data in tool
// results and arguments, sanitising and spotlighting of results, and egress checks.
type Sensors struct {
	// Budget bounds the time each sensor may spend on one call's text. A sensor that
	// overruns it counts as failed. Default "50ms"; from "1ms" to "10s".
	Budget Duration `yaml:"budget"`
	// OnError says what a sensor that fails or overruns its budget means: closed (the
	// call is refused, or its result withheld) or open (the sensor found nothing; the
	// failure is audited). Default closed.
	OnError string `yaml:"on_error"`
	// Injection configures the prompt-injection detector.
	Injection InjectionSensor `yaml:"injection"`
	// TokenKeyFile holds the key that makes personal-data placeholders stable (at least
	// 16 bytes). Default: <data_dir>/pii.key, created at first start.
	TokenKeyFile string `yaml:"token_key_file"`
	// Defaults apply to every tool, field by field, where its own sensors leave a field
	// unset.
	Defaults ToolSensors `yaml:"defaults"`
}

// InjectionSensor configures the prompt-injection detector.
type InjectionSensor struct {
	// Threshold is the score (0 to 1) at which a text counts as an injection. Default:
	// the threshold the model was trained for.
	Threshold float64 `yaml:"threshold"`
	// Model is "embedded" (the default: the model shipped with Chaperone), "rules" (no
	// model, rules only) or the path of a model file made by `chaperone sensors train`.
	Model string `yaml:"model"`
	// Classifier, if set, also asks an external classifier (for example a Prompt Guard
	// model served elsewhere); a text's score is the higher of the two.
	Classifier *Classifier `yaml:"classifier"`
}

// Classifier is an external injection classifier reached over HTTP.
type Classifier struct {
	// URL receives POST {"text": ...}; http or https.
	URL string `yaml:"url"`
	// Timeout bounds one request. Default "2s"; at most "30s".
	Timeout Duration `yaml:"timeout"`
	// Fail is what a classifier that cannot answer means: open (score 0, audited) or
	// closed (counts as an injection). Required: there is no safe default for everyone.
	Fail string `yaml:"fail"`
	// Threshold is the classifier's score at which a text counts as an injection.
	// Default 0.5.
	Threshold float64 `yaml:"threshold"`
	// Headers are sent with each request (for example Authorization); values may
	// reference ${ENV} variables and are never printed.
	Headers map[string]string `yaml:"headers"`
}

// ToolSensors are one tool's sensor settings.
type ToolSensors struct {
	// Results says what happens to what the tool returns.
	Results ResultSensors `yaml:"results"`
	// Arguments says what happens to what is sent to the tool.
	Arguments ArgumentSensors `yaml:"arguments"`
	// Egress lists where the tool's arguments may send things.
	Egress Egress `yaml:"egress"`
}

// ResultSensors say what happens to a tool's results on their way to the agent.
type ResultSensors struct {
	// Injection: flag (default: the result passes, the session is marked as having seen
	// an injection and the values it brought in count as untrusted), block (the result is
	// withheld) or off (not scanned).
	Injection string `yaml:"injection"`
	// Secrets: redact (default: each credential is replaced by [REDACTED:kind]), block
	// (the result is withheld) or allow.
	Secrets string `yaml:"secrets"`
	// PII: allow (default), redact ([EMAIL]), mask (j***@example.com) or tokenize (a
	// stable placeholder the gateway swaps back only for tools allowed to receive it).
	PII string `yaml:"pii"`
	// Sanitize: off (default), text (HTML reduced to text) or markup (HTML reduced to
	// safe markup); scripts, styles and hidden elements are dropped either way.
	Sanitize string `yaml:"sanitize"`
	// Spotlight wraps the result's text in a labelled block that tells the model it is
	// data, not instructions. Default false.
	Spotlight *bool `yaml:"spotlight"`
	// Datamark also interleaves a marker between the words of spotlighted text. Default
	// false.
	Datamark *bool `yaml:"datamark"`
}

// ArgumentSensors say what happens to a call's arguments on their way to the tool.
type ArgumentSensors struct {
	// ReceivePII lists the personal-data types ("EMAIL", "IBAN", ... or "*") whose
	// placeholders are swapped back for their values when sent to this tool. Default
	// none: the tool receives the placeholder.
	ReceivePII []string `yaml:"receive_pii"`
}

// Egress lists where a tool's arguments may send things: URLs, hosts and mail
// recipients found in them.
type Egress struct {
	// Allow lists the destinations the tool may reach; empty means any public one.
	// Entries: a host ("api.example.com"), subdomains ("*.example.com"), a mail domain
	// ("@example.com") or address, an IP or CIDR, or a URL prefix
	// ("https://api.example.com/v1/").
	Allow []string `yaml:"allow"`
	// Deny lists destinations refused even if allowed.
	Deny []string `yaml:"deny"`
	// AllowPrivate lets the tool reach private, loopback, link-local and cloud metadata
	// addresses. Default false: they are refused, to stop server-side request forgery.
	AllowPrivate bool `yaml:"allow_private"`
	// Resolve also resolves host names and refuses one whose addresses include a
	// refused one. Default false: literal addresses and well-known private names only.
	Resolve bool `yaml:"resolve"`
}

// The modes of result sensors.
var (
	injectionModes = []string{"flag", "block", "off"}
	secretModes    = []string{"redact", "block", "allow"}
	sanitizeModes  = []string{"off", inspect.SanitizeText, inspect.SanitizeMarkup}
)

func (s *Sensors) applyDefaults(dataDir string) {
	if s.Budget == 0 {
		s.Budget = Duration(50 * time.Millisecond)
	}
	if s.OnError == "" {
		s.OnError = "closed"
	}
	if s.Injection.Model == "" {
		s.Injection.Model = "embedded"
	}
	if s.TokenKeyFile == "" {
		s.TokenKeyFile = filepath.Join(dataDir, "pii.key")
	}
	if c := s.Injection.Classifier; c != nil {
		if c.Timeout == 0 {
			c.Timeout = Duration(2 * time.Second)
		}
		if c.Threshold == 0 {
			c.Threshold = 0.5
		}
	}
	r := &s.Defaults.Results
	if r.Injection == "" {
		r.Injection = "flag"
	}
	if r.Secrets == "" {
		r.Secrets = "redact"
	}
	if r.PII == "" {
		r.PII = inspect.PIIAllow
	}
	if r.Sanitize == "" {
		r.Sanitize = "off"
	}
}

// Effective returns a tool's sensor settings with every field it leaves unset taken
// from defaults. Egress lists are the tool's own if it has any, else the defaults'.
func (t ToolSensors) Effective(defaults ToolSensors) ToolSensors {
	out := t
	r, d := &out.Results, defaults.Results
	for _, f := range []struct {
		v *string
		d string
	}{
		{&r.Injection, d.Injection}, {&r.Secrets, d.Secrets}, {&r.PII, d.PII}, {&r.Sanitize, d.Sanitize},
	} {
		if *f.v == "" {
			*f.v = f.d
		}
	}
	if r.Spotlight == nil {
		r.Spotlight = d.Spotlight
	}
	if r.Datamark == nil {
		r.Datamark = d.Datamark
	}
	if out.Arguments.ReceivePII == nil {
		out.Arguments.ReceivePII = defaults.Arguments.ReceivePII
	}
	e := &out.Egress
	if e.Allow == nil && e.Deny == nil && !e.AllowPrivate && !e.Resolve {
		*e = defaults.Egress
	}
	return out
}

func (s *Sensors) validate() []error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...)))
	}
	if s.Budget.D() < time.Millisecond || s.Budget.D() > 10*time.Second {
		bad("sensors.budget", "must be between 1ms and 10s, got %s", s.Budget.D())
	}
	if s.OnError != "closed" && s.OnError != "open" {
		bad("sensors.on_error", "must be closed or open, got %q", s.OnError)
	}
	in := &s.Injection
	if !(in.Threshold >= 0 && in.Threshold <= 1) {
		bad("sensors.injection.threshold", "must be between 0 and 1, got %v", in.Threshold)
	}
	if in.Model == "" {
		bad("sensors.injection.model", "must be embedded, rules or a model file's path")
	}
	if c := in.Classifier; c != nil {
		f := "sensors.injection.classifier"
		if u, err := url.Parse(c.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad(f+".url", "must be an absolute http or https URL, got %q", c.URL)
		}
		if c.Timeout.D() <= 0 || c.Timeout.D() > 30*time.Second {
			bad(f+".timeout", "must be between 1ns and 30s, got %s", c.Timeout.D())
		}
		if c.Fail != "open" && c.Fail != "closed" {
			bad(f+".fail", "must be open or closed (required: say what an unreachable classifier means), got %q", c.Fail)
		}
		if !(c.Threshold > 0 && c.Threshold <= 1) {
			bad(f+".threshold", "must be above 0 and at most 1, got %v", c.Threshold)
		}
	}
	errs = append(errs, s.Defaults.validate("sensors.defaults")...)
	return errs
}

func (t *ToolSensors) validate(field string) []error {
	var errs []error
	oneOf := func(f, v string, allowed []string) {
		if v != "" && !slices.Contains(allowed, v) {
			errs = append(errs, fmt.Errorf("%s.%s: must be one of %v, got %q", field, f, allowed, v))
		}
	}
	r := &t.Results
	oneOf("results.injection", r.Injection, injectionModes)
	oneOf("results.secrets", r.Secrets, secretModes)
	if r.PII != "" {
		if _, err := inspect.ParsePIIMode(r.PII); err != nil {
			errs = append(errs, fmt.Errorf("%s.results.pii: %v", field, err))
		}
	}
	oneOf("results.sanitize", r.Sanitize, sanitizeModes)
	if r.Datamark != nil && *r.Datamark && (r.Spotlight == nil || !*r.Spotlight) {
		errs = append(errs, fmt.Errorf("%s.results.datamark: needs spotlight: true", field))
	}
	types := inspect.PIITypes()
	for i, ty := range t.Arguments.ReceivePII {
		if ty != "*" && !slices.Contains(types, ty) {
			errs = append(errs, fmt.Errorf("%s.arguments.receive_pii[%d]: unknown type %q (known: %v)", field, i, ty, types))
		}
	}
	if _, err := inspect.CompileEgress(t.Egress.Policy()); err != nil {
		errs = append(errs, fmt.Errorf("%s.egress: %v", field, err))
	}
	return errs
}

// Policy returns the egress lists as the sensors take them.
func (e Egress) Policy() inspect.EgressPolicy {
	return inspect.EgressPolicy{Allow: e.Allow, Deny: e.Deny, AllowPrivate: e.AllowPrivate}
}
