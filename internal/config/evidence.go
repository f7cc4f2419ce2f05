package config

import (
	"fmt"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Checkpoints configures the signed checkpoints of the audit log: the gateway signs the
// chain's head (count, head hash, time) with its own Ed25519 key and publishes it outside
// its store, so that events deleted from the end of the log, or a log rewritten as a
// whole, are detected by `chaperone audit verify`.
type Checkpoints struct {
	// Interval is how often a checkpoint is made when events were added; "0s" turns
	// checkpoints off (and with them pruning). One is also made at shutdown. Default "1m";
	// at least 1s.
	Interval *Duration `yaml:"interval"`
	// KeyFile holds the signing key (PKCS #8 PEM), created 0600 at first start. Default
	// <data_dir>/audit-signing.key; the public key is written beside it as .pub.
	KeyFile string `yaml:"key_file"`
	// Publish are the places each checkpoint is sent to, beside the store.
	Publish []Anchor `yaml:"publish"`
}

// Anchor is one place checkpoints are published to; exactly one of its fields is set.
type Anchor struct {
	// File appends each checkpoint as a JSON line to this path (best on another mount,
	// or shipped off the machine).
	File string `yaml:"file"`
	// Webhook POSTs each checkpoint as JSON.
	Webhook *AnchorHTTP `yaml:"webhook"`
	// ObjectStore PUTs each checkpoint as its own object under URL (which ends with "/")
	// with If-None-Match: *, so that no object is ever replaced.
	ObjectStore *AnchorHTTP `yaml:"object_store"`
}

// AnchorHTTP is an HTTP place checkpoints are sent to.
type AnchorHTTP struct {
	URL string `yaml:"url"`
	// Headers are sent with every request; values expand ${VAR}.
	Headers map[string]string `yaml:"headers"`
	// Timeout bounds one request. Default "10s".
	Timeout Duration `yaml:"timeout"`
}

// Retention says how long audit events keep their content. An event whose retention has
// run out becomes a tombstone — its place in the chain, kind and time stay, its content
// goes — and only behind a signed checkpoint, so the chain stays verifiable.
type Retention struct {
	// Default applies to every kind not in Kinds; "0s" (the default) keeps events for
	// ever.
	Default Duration `yaml:"default"`
	// Kinds maps an event kind (call.outcome, auth.failed, ...) to its retention; "0s"
	// keeps that kind for ever.
	Kinds map[string]Duration `yaml:"kinds"`
	// Interval is how often the gateway prunes. Default "1h".
	Interval Duration `yaml:"interval"`
}

// Telemetry configures traces and metrics.
type Telemetry struct {
	Traces  Traces  `yaml:"traces"`
	Metrics Metrics `yaml:"metrics"`
}

// Traces configures OpenTelemetry traces. Nothing is exported unless Exporter is set.
type Traces struct {
	// Exporter is "none" (the default), "otlp-grpc" or "otlp-http".
	Exporter string `yaml:"exporter"`
	// Endpoint is host:port for otlp-grpc, or the URL of the traces endpoint for otlp-http
	// (http://collector:4318/v1/traces).
	Endpoint string `yaml:"endpoint"`
	// Insecure sends otlp-grpc without TLS (otlp-http follows the URL's scheme).
	Insecure bool `yaml:"insecure"`
	// Headers are sent with every export; values expand ${VAR}.
	Headers map[string]string `yaml:"headers"`
	// Timeout bounds one export. Default "10s".
	Timeout Duration `yaml:"timeout"`
	// SampleRatio is the share of new traces recorded, in (0, 1]; a trace an agent started
	// follows the agent's sampling decision. Default 1.
	SampleRatio float64 `yaml:"sample_ratio"`
	// Capture adds call arguments and results to spans, after the secret sensor has
	// redacted them. Off by default: spans carry names, decisions and sizes only.
	Capture bool `yaml:"capture"`
}

// Metrics configures the Prometheus endpoint.
type Metrics struct {
	// Listen is where GET /metrics is served: "admin" (the default: on the admin API's
	// listener, without its token), "off", or an address of its own (127.0.0.1:9464).
	Listen string `yaml:"listen"`
}

// Every is the checkpoint interval; 0 when checkpoints are off.
func (c Checkpoints) Every() time.Duration {
	if c.Interval == nil {
		return 0
	}
	return c.Interval.D()
}

// Exporters of traces.
var traceExporters = []string{"none", "otlp-grpc", "otlp-http"}

func (a *Audit) evidenceDefaults(dataDir string) {
	if a.Checkpoints.Interval == nil {
		d := Duration(time.Minute)
		a.Checkpoints.Interval = &d
	}
	if a.Checkpoints.KeyFile == "" {
		a.Checkpoints.KeyFile = filepath.Join(dataDir, "audit-signing.key")
	}
	for _, p := range a.Checkpoints.Publish {
		for _, h := range []*AnchorHTTP{p.Webhook, p.ObjectStore} {
			if h != nil && h.Timeout == 0 {
				h.Timeout = Duration(10 * time.Second)
			}
		}
	}
	if a.Retention.Interval == 0 {
		a.Retention.Interval = Duration(time.Hour)
	}
}

func (t *Telemetry) defaults() {
	if t.Traces.Exporter == "" {
		t.Traces.Exporter = "none"
	}
	if t.Traces.Timeout == 0 {
		t.Traces.Timeout = Duration(10 * time.Second)
	}
	if t.Traces.SampleRatio == 0 {
		t.Traces.SampleRatio = 1
	}
	if t.Metrics.Listen == "" {
		t.Metrics.Listen = "admin"
	}
}

func (a *Audit) validateEvidence() []error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...)))
	}
	cp := a.Checkpoints
	if iv := cp.Every(); iv < 0 || (iv > 0 && iv < time.Second) {
		bad("audit.checkpoints.interval", "must be 0s (off) or at least 1s, got %s", iv)
	}
	for i, p := range cp.Publish {
		field := fmt.Sprintf("audit.checkpoints.publish[%d]", i)
		n := 0
		if p.File != "" {
			n++
		}
		if p.Webhook != nil {
			n++
			checkAnchorURL(&errs, field+".webhook", p.Webhook, false)
		}
		if p.ObjectStore != nil {
			n++
			checkAnchorURL(&errs, field+".object_store", p.ObjectStore, true)
		}
		if n != 1 {
			bad(field, "must set exactly one of file, webhook and object_store, got %d", n)
		}
	}
	if len(cp.Publish) > 0 && cp.Every() == 0 {
		bad("audit.checkpoints.publish", "needs audit.checkpoints.interval above 0s")
	}
	r := a.Retention
	if r.Default < 0 {
		bad("audit.retention.default", "must not be negative, got %s", r.Default.D())
	}
	for k, d := range r.Kinds {
		if d < 0 {
			bad("audit.retention.kinds."+k, "must not be negative, got %s", d.D())
		}
		if k == "" || strings.ContainsAny(k, " \t\n") {
			bad("audit.retention.kinds", "event kind %q is not a kind like call.outcome", k)
		}
	}
	if r.Interval < Duration(time.Minute) {
		bad("audit.retention.interval", "must be at least 1m, got %s", r.Interval.D())
	}
	if a.RetentionOn() && cp.Every() == 0 {
		bad("audit.retention", "prunes only behind a signed checkpoint: it needs audit.checkpoints.interval above 0s")
	}
	return errs
}

// RetentionOn reports whether any event kind is ever pruned.
func (a *Audit) RetentionOn() bool {
	if a.Retention.Default > 0 {
		return true
	}
	for _, d := range a.Retention.Kinds {
		if d > 0 {
			return true
		}
	}
	return false
}

func checkAnchorURL(errs *[]error, field string, h *AnchorHTTP, dir bool) {
	u, err := url.Parse(h.URL)
	switch {
	case err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "":
		*errs = append(*errs, fmt.Errorf("%s.url: must be an http(s) URL, got %q", field, h.URL))
	case dir && !strings.HasSuffix(u.Path, "/"):
		*errs = append(*errs, fmt.Errorf("%s.url: must end with \"/\" (objects are named under it), got %q", field, h.URL))
	}
	if h.Timeout < 0 {
		*errs = append(*errs, fmt.Errorf("%s.timeout: must not be negative", field))
	}
}

func (t *Telemetry) validate() []error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...)))
	}
	tr := t.Traces
	if !slices.Contains(traceExporters, tr.Exporter) {
		bad("telemetry.traces.exporter", "must be none, otlp-grpc or otlp-http, got %q", tr.Exporter)
	}
	switch tr.Exporter {
	case "otlp-grpc":
		if tr.Endpoint == "" || strings.Contains(tr.Endpoint, "://") {
			bad("telemetry.traces.endpoint", "must be host:port for otlp-grpc, got %q", tr.Endpoint)
		}
	case "otlp-http":
		if u, err := url.Parse(tr.Endpoint); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			bad("telemetry.traces.endpoint", "must be an http(s) URL for otlp-http, got %q", tr.Endpoint)
		}
	}
	if tr.SampleRatio <= 0 || tr.SampleRatio > 1 {
		bad("telemetry.traces.sample_ratio", "must be above 0 and at most 1, got %v", tr.SampleRatio)
	}
	if tr.Timeout < 0 {
		bad("telemetry.traces.timeout", "must not be negative, got %s", tr.Timeout.D())
	}
	if l := t.Metrics.Listen; l != "admin" && l != "off" {
		if host, _, ok := strings.Cut(l, ":"); !ok || strings.Contains(host, "/") {
			bad("telemetry.metrics.listen", "must be admin, off or host:port, got %q", l)
		}
	}
	return errs
}
