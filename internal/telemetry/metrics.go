package telemetry

import (
	"math"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/chaperone-dev/chaperone/internal/audit"
)

// Reason codes of refused calls (internal/pipeline) that the metrics tell apart.
const (
	reasonUnknownTool     = "unknown_tool"
	reasonOutOfScope      = "out_of_scope"
	reasonEnvironment     = "environment_mismatch"
	reasonEgressDenied    = "egress_denied"
	reasonDeniedByPolicy  = "denied_by_policy"
	reasonToolUnavailable = "tool_unavailable"
	reasonUpstreamError   = "upstream_error"
)

// UnknownTool is the tool label of a call refused because it named no tool the agent
// has: the name an agent made up is not a label value.
const UnknownTool = "(unknown)"

// Histogram buckets, in seconds unless named otherwise.
var (
	// callDurationBuckets span a whole call through the gateway: 50µs to 30s.
	callDurationBuckets = []float64{
		0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
		0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30,
	}
	// upstreamBuckets span an upstream tool call: 1ms to 60s.
	upstreamBuckets = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}
	// containBuckets span the time a kill switch takes to end every call it cancels:
	// 1ms to 10s.
	containBuckets = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}
	// approvalBuckets span the time a person takes to decide: 1s to a day.
	approvalBuckets = []float64{1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400, 28800, 86400}
	// stepBuckets count the calls of a task that reached their tool.
	stepBuckets = []float64{1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 5000}
)

// Metrics are Chaperone's Prometheus metrics. Most are derived from the audit events
// the log has committed ([Metrics.Observe]), so that the metrics and the evidence
// agree; a few are fed directly ([Metrics.ObserveCall], [Metrics.CheckpointWritten],
// [Metrics.CheckpointPublishFailed], [Metrics.AuditHead]). They live in a registry of
// their own, never the global one, together with the Go runtime and process
// collectors, and are served by [Metrics.Handler].
//
// Every label value is bounded: at most [MaxLabelValues] distinct values per label
// name, each at most [MaxLabelBytes] long and valid UTF-8.
//
// All methods are safe for concurrent use, and safe on a nil *Metrics, where they do
// nothing: a component may hold a nil *Metrics when metrics are off.
type Metrics struct {
	reg     *prometheus.Registry
	handler http.Handler
	// families names every chaperone_ metric with its type ("counter", "gauge",
	// "histogram"). It is written only by NewMetrics.
	families map[string]string
	labels   labelSets

	calls           *prometheus.CounterVec
	denials         *prometheus.CounterVec
	allowlist       *prometheus.CounterVec
	approvalReqs    prometheus.Counter
	approvals       *prometheus.CounterVec
	approvalTime    *prometheus.HistogramVec
	detections      *prometheus.CounterVec
	breakerChanges  *prometheus.CounterVec
	breakerTrips    prometheus.Counter
	kills           prometheus.Counter
	containTime     prometheus.Histogram
	upstreamLatency *prometheus.HistogramVec
	upstreamErrors  *prometheus.CounterVec
	budgetSpend     *prometheus.CounterVec
	budgetTokens    *prometheus.CounterVec
	tasksCompleted  prometheus.Counter
	taskSpend       prometheus.Counter
	taskSteps       prometheus.Histogram
	events          *prometheus.CounterVec
	commits         atomic.Int64 // chaperone_audit_commits_total
	callDuration    *prometheus.HistogramVec
	checkpoints     prometheus.Counter
	publishErrors   *prometheus.CounterVec
	auditHead       prometheus.Gauge
}

// NewMetrics returns the metrics, registered in a new private registry with the Go
// runtime and process collectors.
func NewMetrics() *Metrics {
	m := &Metrics{
		reg:      prometheus.NewRegistry(),
		families: make(map[string]string),
		labels:   newLabelSets(),
	}
	m.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	m.calls = m.counterVec("chaperone_calls_total", "Tool calls, by the decision that ended them.", "tool", "agent", "decision")
	m.denials = m.counterVec("chaperone_denials_total", "Refused calls, once per rule that decided (rule empty when none did).", "reason", "rule")
	m.allowlist = m.counterVec("chaperone_allowlist_calls_total", "Tool calls, by whether they fell inside what the agent is allowed.", "inside")
	m.approvalReqs = m.counter("chaperone_approval_requests_total", "Approval requests put to people.")
	m.approvals = m.counterVec("chaperone_approvals_total", "Approval requests settled, by outcome (approved, declined, expired).", "outcome")
	m.approvalTime = m.histogramVec("chaperone_approval_decision_seconds", "Time from an approval request to a person's decision.", approvalBuckets, "outcome")
	m.detections = m.counterVec("chaperone_sensor_detections_total", "Content sensor detections, by sensor, kind of finding and direction (call or result).", "sensor", "kind", "direction")
	m.breakerChanges = m.counterVec("chaperone_breaker_transitions_total", "Circuit breaker state changes, by the new state.", "to")
	m.breakerTrips = m.counter("chaperone_breaker_trips_total", "Circuit breakers that opened.")
	m.kills = m.counter("chaperone_kills_total", "Kill switches engaged.")
	m.containTime = m.histogram("chaperone_time_to_contain_seconds", "Time from engaging a kill switch until every call it cancelled had ended.", containBuckets)
	m.upstreamLatency = m.histogramVec("chaperone_upstream_latency_seconds", "Latency of upstream tool calls.", upstreamBuckets, "upstream", "tool")
	m.upstreamErrors = m.counterVec("chaperone_upstream_errors_total", "Upstream tool calls that failed, by kind (tool_error, unavailable, failed).", "upstream", "tool", "kind")
	m.budgetSpend = m.counterVec("chaperone_budget_spend_total", "Spend charged by tool calls, in the budget's units.", "agent")
	m.budgetTokens = m.counterVec("chaperone_budget_tokens_total", "Model tokens agents reported with their tool calls.", "agent")
	m.tasksCompleted = m.counter("chaperone_tasks_completed_total", "Tasks that ended.")
	m.taskSpend = m.counter("chaperone_task_spend_total", "Spend of the tasks that ended, in the budget's units.")
	m.taskSteps = m.histogram("chaperone_task_steps", "Calls of an ended task that reached their tool.", stepBuckets)
	m.events = m.counterVec("chaperone_audit_events_total", "Audit events committed, by kind.", "kind")
	m.register(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "chaperone_audit_commits_total",
		Help: "Audit batches committed, each in one store commit (with the audit journal, one write and one flush); chaperone_audit_events_total over this is the events that shared a commit.",
	}, func() float64 { return float64(m.commits.Load()) }), "chaperone_audit_commits_total", "counter")
	m.callDuration = m.histogramVec("chaperone_call_duration_seconds", "Time the gateway took over a whole tool call, by decision.", callDurationBuckets, "decision")
	m.checkpoints = m.counter("chaperone_audit_checkpoints_total", "Audit checkpoints written.")
	m.publishErrors = m.counterVec("chaperone_audit_checkpoint_publish_errors_total", "Audit checkpoints a sink failed to publish.", "sink")
	m.auditHead = m.gauge("chaperone_audit_head_seq", "Sequence number of the last committed audit event.")

	m.handler = promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		// A collector that fails is left out of the scrape; the rest is served.
		ErrorHandling:       promhttp.ContinueOnError,
		MaxRequestsInFlight: 4,
		Timeout:             10 * time.Second,
	})
	return m
}

func (m *Metrics) counter(name, help string) prometheus.Counter {
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
	m.register(c, name, "counter")
	return c
}

func (m *Metrics) counterVec(name, help string, labels ...string) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
	m.register(c, name, "counter")
	return c
}

func (m *Metrics) gauge(name, help string) prometheus.Gauge {
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help})
	m.register(g, name, "gauge")
	return g
}

func (m *Metrics) histogram(name, help string, buckets []float64) prometheus.Histogram {
	h := prometheus.NewHistogram(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets})
	m.register(h, name, "histogram")
	return h
}

func (m *Metrics) histogramVec(name, help string, buckets []float64, labels ...string) *prometheus.HistogramVec {
	h := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets}, labels)
	m.register(h, name, "histogram")
	return h
}

// register adds c to the registry. The metrics are fixed at compile time, so a failure
// is a programming error (a duplicate name) and panics in every test.
func (m *Metrics) register(c prometheus.Collector, name, typ string) {
	m.reg.MustRegister(c)
	m.families[name] = typ
}

// Handler returns the HTTP handler that serves the metrics in the Prometheus text
// (or, when asked, protobuf) exposition format. A collector that fails is left out of
// the response, never a panic; at most 4 scrapes run at once and each is cut off after
// 10s. On a nil *Metrics it answers 404.
func (m *Metrics) Handler() http.Handler {
	if m == nil {
		return http.NotFoundHandler()
	}
	return m.handler
}

// Registry returns the private registry the metrics live in, for a caller that adds
// collectors of its own or gathers in tests. Nil on a nil *Metrics.
func (m *Metrics) Registry() *prometheus.Registry {
	if m == nil {
		return nil
	}
	return m.reg
}

// AuditCommits returns chaperone_audit_commits_total: the audit batches committed so far.
// 0 on a nil *Metrics.
func (m *Metrics) AuditCommits() int64 {
	if m == nil {
		return 0
	}
	return m.commits.Load()
}

// Observe derives the metrics from a batch of committed audit events. The audit log
// calls it after every commit, on its writer goroutine: it does no I/O, takes no lock
// for longer than a map lookup, and never fails. Events of kinds it does not know only
// count in chaperone_audit_events_total.
func (m *Metrics) Observe(events []audit.Event) {
	if m == nil || len(events) == 0 {
		return
	}
	m.commits.Add(1)
	for i := range events {
		m.observe(&events[i])
	}
}

func (m *Metrics) observe(e *audit.Event) {
	m.events.WithLabelValues(m.labels.kind.value(e.Kind)).Inc()
	switch e.Kind {
	case audit.KindCallIntent:
		m.call(e, e.Decision)
		m.budget(e)
		m.sensors(e, "call")
	case audit.KindCallRefused:
		m.call(e, refusedDecision(e.Decision))
		m.denial(e)
		m.budget(e)
		m.sensors(e, "call")
	case audit.KindCallSuggested:
		m.call(e, "suggested")
	case audit.KindCallDeduplicated:
		m.call(e, "deduplicated")
	case audit.KindCallOutcome:
		m.outcome(e)
		m.sensors(e, "result")
	case audit.KindApprovalRequested:
		m.approvalReqs.Inc()
	case audit.KindApprovalApproved:
		m.approval(e, "approved")
	case audit.KindApprovalDenied:
		m.approval(e, "declined")
	case audit.KindApprovalExpired:
		m.approvals.WithLabelValues("expired").Inc()
	case audit.KindBreakerChanged:
		m.breakerChanges.WithLabelValues(m.labels.to.value(e.Decision)).Inc()
		if e.Decision == "open" {
			m.breakerTrips.Inc()
		}
	case audit.KindKillEngaged:
		m.kills.Inc()
		if e.LatencyMicros > 0 {
			m.containTime.Observe(micros(e.LatencyMicros))
		}
	case audit.KindTaskEnded:
		m.tasksCompleted.Inc()
		if positive(e.Spend) {
			m.taskSpend.Add(e.Spend)
		}
		if e.Steps >= 0 {
			m.taskSteps.Observe(float64(e.Steps))
		}
	}
}

// refusedDecision is the decision label of a refused call: what the policy decided, or
// "refused" when the call was refused before the policy was asked.
func refusedDecision(d string) string {
	switch d {
	case "deny", "approve", "allow":
		return d
	}
	return "refused"
}

// call counts one call with its decision, and whether it fell inside the allow-lists.
func (m *Metrics) call(e *audit.Event, decision string) {
	tool := e.Tool
	if e.Kind == audit.KindCallRefused && e.Reason == reasonUnknownTool {
		tool = UnknownTool
	}
	m.calls.WithLabelValues(m.labels.tool.value(tool), m.labels.agent.value(e.Agent), m.labels.decision.value(decision)).Inc()
	inside := "true"
	if outsideAllowlist(e) {
		inside = "false"
	}
	m.allowlist.WithLabelValues(inside).Inc()
}

// outsideAllowlist says whether a call fell outside everything the agent is allowed:
// refused because the tool is unknown to it, outside its task's scope or environment,
// or a destination it may not reach, or denied by the policy with no rule deciding
// (nothing allowed it: deny by default).
func outsideAllowlist(e *audit.Event) bool {
	if e.Kind != audit.KindCallRefused {
		return false
	}
	switch e.Reason {
	case reasonUnknownTool, reasonOutOfScope, reasonEnvironment, "environment", reasonEgressDenied:
		return true
	case reasonDeniedByPolicy:
		return len(e.Rules) == 0
	}
	return false
}

// denial counts a refused call once per rule that decided it, or once with rule "".
func (m *Metrics) denial(e *audit.Event) {
	reason := m.labels.reason.value(e.Reason)
	if len(e.Rules) == 0 {
		m.denials.WithLabelValues(reason, "").Inc()
		return
	}
	for _, r := range e.Rules {
		m.denials.WithLabelValues(reason, m.labels.rule.value(r)).Inc()
	}
}

// budget counts what a call charged and the tokens its agent reported.
func (m *Metrics) budget(e *audit.Event) {
	if !positive(e.Spend) && e.Tokens <= 0 {
		return
	}
	agent := m.labels.agent.value(e.Agent)
	if positive(e.Spend) {
		m.budgetSpend.WithLabelValues(agent).Add(e.Spend)
	}
	if e.Tokens > 0 {
		m.budgetTokens.WithLabelValues(agent).Add(float64(e.Tokens))
	}
}

// outcome records an upstream call's latency and, if it failed, how.
func (m *Metrics) outcome(e *audit.Event) {
	upstream, tool := m.labels.upstream.value(e.Upstream), m.labels.tool.value(e.Tool)
	if e.LatencyMicros >= 0 {
		m.upstreamLatency.WithLabelValues(upstream, tool).Observe(micros(e.LatencyMicros))
	}
	var kind string
	switch {
	case e.ResultError:
		kind = "tool_error"
	case e.Reason == reasonToolUnavailable:
		kind = "unavailable"
	case e.Reason == reasonUpstreamError:
		kind = "failed"
	default:
		return
	}
	m.upstreamErrors.WithLabelValues(upstream, tool, kind).Inc()
}

// approval counts a decided approval request and the time the person took.
func (m *Metrics) approval(e *audit.Event, outcome string) {
	m.approvals.WithLabelValues(outcome).Inc()
	if e.LatencyMicros > 0 {
		m.approvalTime.WithLabelValues(outcome).Observe(micros(e.LatencyMicros))
	}
}

// sensors counts the detections among an event's Sensors entries.
func (m *Metrics) sensors(e *audit.Event, direction string) {
	for _, note := range e.Sensors {
		sensor, kind, ok := parseSensorNote(note)
		if !ok {
			continue
		}
		if kind != "" {
			kind = m.labels.kind.value(kind)
		}
		m.detections.WithLabelValues(sensor, kind, direction).Inc()
	}
}

// ObserveCall records the time the gateway took over a whole tool call, by the
// decision that ended it (allow, deny, approve, refused, ...). A negative duration
// counts as 0.
func (m *Metrics) ObserveCall(decision string, d time.Duration) {
	if m == nil {
		return
	}
	m.callDuration.WithLabelValues(m.labels.decision.value(decision)).Observe(max(d, 0).Seconds())
}

// CheckpointWritten counts an audit checkpoint written.
func (m *Metrics) CheckpointWritten() {
	if m == nil {
		return
	}
	m.checkpoints.Inc()
}

// CheckpointPublishFailed counts a checkpoint the named sink failed to publish.
func (m *Metrics) CheckpointPublishFailed(sink string) {
	if m == nil {
		return
	}
	m.publishErrors.WithLabelValues(m.labels.sink.value(sink)).Inc()
}

// AuditHead sets the sequence number of the last committed audit event.
func (m *Metrics) AuditHead(seq int64) {
	if m == nil {
		return
	}
	m.auditHead.Set(float64(seq))
}

// micros converts microseconds to seconds.
func micros(us int64) float64 { return float64(us) / 1e6 }

// positive says whether v is a finite number above 0: a counter only goes up, and
// Add panics on a negative value.
func positive(v float64) bool { return v > 0 && !math.IsInf(v, 1) }
