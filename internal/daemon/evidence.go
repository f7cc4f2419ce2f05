package daemon

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/chaperone-dev/chaperone/internal/audit"
	"github.com/chaperone-dev/chaperone/internal/audit/anchor"
	"github.com/chaperone-dev/chaperone/internal/pipeline"
	"github.com/chaperone-dev/chaperone/internal/sign"
	"github.com/chaperone-dev/chaperone/internal/telemetry"
)

// tracerName is the instrumentation scope of Chaperone's spans.
const tracerName = "github.com/chaperone-dev/chaperone"

// buildTelemetry makes the metrics (unless they are off) and the tracer provider. The
// tracer is nil when nothing is exported, so that no stage pays for spans.
func (d *Daemon) buildTelemetry(ctx context.Context) error {
	t := d.cfg.Telemetry
	if t.Metrics.Listen != "off" {
		d.metrics = telemetry.NewMetrics()
	}
	if t.Traces.Exporter == "none" {
		return nil
	}
	tp, shutdown, err := telemetry.NewTracerProvider(ctx, telemetry.TraceOptions{
		Exporter: t.Traces.Exporter, Endpoint: t.Traces.Endpoint, Insecure: t.Traces.Insecure,
		Headers: t.Traces.Headers, Timeout: t.Traces.Timeout.D(), SampleRatio: t.Traces.SampleRatio,
		ServiceVersion: Version,
	})
	if err != nil {
		return fmt.Errorf("telemetry.traces: %w", err)
	}
	d.tracer, d.traceShutdown = tp.Tracer(tracerName, trace.WithInstrumentationVersion(Version)), shutdown
	return nil
}

// onCommit is the audit log's commit hook: the metrics follow the evidence.
func (d *Daemon) onCommit(events []audit.Event) {
	if c := d.console.Load(); c != nil && len(events) > 0 {
		c.Changed()
	}
	if d.metrics == nil || len(events) == 0 {
		return
	}
	d.metrics.Observe(events)
	d.metrics.AuditHead(events[len(events)-1].Seq)
}

// buildCheckpointer loads (or makes, at first start) the audit signing key and the
// places checkpoints are published to. Checkpoints off: nil.
func (d *Daemon) buildCheckpointer() error {
	cp := d.cfg.Audit.Checkpoints
	if cp.Every() == 0 {
		return nil
	}
	key, err := signingKey(cp.KeyFile)
	if err != nil {
		return fmt.Errorf("audit.checkpoints.key_file: %w", err)
	}
	var pubs []audit.Publisher
	for _, p := range cp.Publish {
		switch {
		case p.File != "":
			pubs = append(pubs, &anchor.File{Path: p.File})
		case p.Webhook != nil:
			pubs = append(pubs, &anchor.Webhook{URL: p.Webhook.URL, HTTPOptions: anchor.HTTPOptions{Headers: p.Webhook.Headers, Timeout: p.Webhook.Timeout.D()}})
		case p.ObjectStore != nil:
			pubs = append(pubs, &anchor.ObjectStore{Prefix: p.ObjectStore.URL, HTTPOptions: anchor.HTTPOptions{Headers: p.ObjectStore.Headers, Timeout: p.ObjectStore.Timeout.D()}})
		}
	}
	d.checkpointer, err = audit.NewCheckpointer(audit.CheckpointerOptions{
		Key: key, Events: d.store, Store: d.store, Publish: pubs, Logger: d.log.With("component", "checkpoints"),
		OnWritten: d.metrics.CheckpointWritten, OnFailed: d.metrics.CheckpointPublishFailed,
	})
	return err
}

// signingKey reads the Ed25519 key at path, or makes one there (0600) with its public
// half beside it (path + ".pub"), for auditors to pin.
func signingKey(path string) (ed25519.PrivateKey, error) {
	// A fresh key is made first, so that a failure cannot leave an empty key file behind;
	// it is used only if the file does not exist yet.
	_, fresh, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	freshPEM, err := sign.MarshalPrivateKey(fresh)
	if err != nil {
		return nil, err
	}
	pemText, err := secretFile(path, func() string { return strings.TrimSpace(string(freshPEM)) })
	if err != nil {
		return nil, err
	}
	key, err := sign.ParsePrivateKey([]byte(pemText))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	pub, err := sign.MarshalPublicKey(key.Public().(ed25519.PublicKey))
	if err != nil {
		return nil, err
	}
	if have, err := os.ReadFile(path + ".pub"); err != nil || string(have) != string(pub) {
		if err := os.WriteFile(path+".pub", pub, 0o644); err != nil {
			return nil, fmt.Errorf("write public key: %w", err)
		}
	}
	return key, nil
}

// checkpoint makes a checkpoint now, if the head moved.
func (d *Daemon) checkpoint(ctx context.Context) {
	if d.checkpointer == nil {
		return
	}
	if _, _, err := d.checkpointShared(ctx); err != nil && ctx.Err() == nil {
		d.log.WarnContext(ctx, "audit checkpoint", "err", err)
	}
}

// Checkpoint makes an audit checkpoint now (if events were added since the last one) and
// returns the newest; false when checkpoints are off or the log is empty.
func (d *Daemon) Checkpoint(ctx context.Context) (audit.Checkpoint, bool, error) {
	if d.checkpointer == nil {
		return audit.Checkpoint{}, false, nil
	}
	return d.checkpointShared(ctx)
}

// Prune turns the events whose retention has run out, behind the newest signed
// checkpoint, into tombstones, and returns how many.
func (d *Daemon) Prune(ctx context.Context, now time.Time) (int64, error) {
	ret := d.retention()
	if !ret.On() || d.checkpointer == nil {
		return 0, nil
	}
	var n int64
	var err error
	d.exclusively(ctx, "audit-retention", func() {
		cp, ok, lerr := d.store.LatestCheckpoint(ctx)
		if lerr != nil || !ok {
			err = lerr
			return
		}
		n, err = d.store.PruneEvents(ctx, cp.Seq, ret.Candidates(), func(e *audit.Event) bool { return ret.Expired(e, now) })
	})
	return n, err
}

func (d *Daemon) retention() audit.Retention {
	r := d.cfg.Audit.Retention
	out := audit.Retention{Default: r.Default.D(), Kinds: map[string]time.Duration{}}
	for k, v := range r.Kinds {
		out.Kinds[k] = v.D()
	}
	return out
}

// evidenceLoops runs the checkpointer and the pruner until ctx is done.
func (d *Daemon) evidenceLoops(ctx context.Context, spawn func(func())) {
	if d.checkpointer == nil {
		return
	}
	spawn(func() { every(ctx, d.cfg.Audit.Checkpoints.Every(), func(time.Time) { d.checkpoint(ctx) }) })
	if !d.retention().On() {
		return
	}
	spawn(func() {
		every(ctx, d.cfg.Audit.Retention.Interval.D(), func(now time.Time) {
			n, err := d.Prune(ctx, now)
			if err != nil && ctx.Err() == nil {
				d.log.WarnContext(ctx, "audit pruning", "err", err)
			} else if n > 0 {
				d.log.InfoContext(ctx, "audit events pruned behind the newest checkpoint", "events", n)
			}
		})
	})
}

// every calls f with the time at every tick of interval until ctx is done.
func every(ctx context.Context, interval time.Duration, f func(time.Time)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			f(now)
		}
	}
}

// metricsListener binds the metrics endpoint's own listener, if it has one.
func (d *Daemon) metricsListener() error {
	l := d.cfg.Telemetry.Metrics.Listen
	if d.metrics == nil || l == "admin" || l == "off" {
		return nil
	}
	ln, err := net.Listen("tcp", l)
	if err != nil {
		return fmt.Errorf("telemetry.metrics.listen %s: %w", l, err)
	}
	d.metricsLn = ln
	return nil
}

// withMetrics serves GET /metrics beside h, without h's authentication: the metrics carry
// names and counts, never call content.
func (d *Daemon) withMetrics(h http.Handler) http.Handler {
	if d.metrics == nil || d.cfg.Telemetry.Metrics.Listen != "admin" {
		return h
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", d.metrics.Handler())
	mux.Handle("/", h)
	return mux
}

// MetricsURL is the URL of the metrics endpoint, or "" when there is none.
func (d *Daemon) MetricsURL() string {
	switch {
	case d.metrics == nil:
		return ""
	case d.metricsLn != nil:
		return "http://" + d.metricsLn.Addr().String() + "/metrics"
	case d.adminLn != nil && d.cfg.Telemetry.Metrics.Listen == "admin":
		return d.AdminURL() + "/metrics"
	}
	return ""
}

// Metrics are the gateway's metrics (nil when off), for tests and the console.
func (d *Daemon) Metrics() *telemetry.Metrics { return d.metrics }

// taskUsage is what a task has cost so far, from the budget ledger; zero without one.
func (d *Daemon) taskUsage(agent, task string) (int64, float64, int64) {
	if d.ledger == nil {
		return 0, 0, 0
	}
	return d.ledger.Usage(pipeline.BudgetKey(agent, task, ""))
}
