package telemetry

import (
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/chaperone-dev/chaperone/internal/audit"
)

// series gathers the metric name from m's registry: each series by its labels
// ("a=x,b=y", sorted by name) with its value; a histogram's series have two entries,
// "<labels>|count" and "<labels>|sum".
func series(t testing.TB, m *Metrics, name string) map[string]float64 {
	t.Helper()
	mfs, err := m.reg.Gather()
	if err != nil {
		t.Fatalf("Gather() error: %v", err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, mt := range mf.GetMetric() {
			var labels []string
			for _, l := range mt.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			sort.Strings(labels)
			key := strings.Join(labels, ",")
			switch mf.GetType() {
			case dto.MetricType_COUNTER:
				out[key] = mt.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				out[key] = mt.GetGauge().GetValue()
			case dto.MetricType_HISTOGRAM:
				out[key+"|count"] = float64(mt.GetHistogram().GetSampleCount())
				out[key+"|sum"] = mt.GetHistogram().GetSampleSum()
			default:
				t.Fatalf("metric %s has type %s, not expected here", name, mf.GetType())
			}
		}
	}
	return out
}

func checkSeries(t *testing.T, m *Metrics, name string, want map[string]float64) {
	t.Helper()
	got := series(t, m, name)
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b float64) bool { return math.Abs(a-b) < 1e-9 })); diff != "" {
		t.Errorf("%s (-want +got):\n%s", name, diff)
	}
}

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func TestObserveCalls(t *testing.T) {
	t.Parallel()
	m := NewMetrics()
	m.Observe([]audit.Event{
		{Kind: audit.KindCallIntent, Agent: "a1", Tool: "search", Decision: "allow", Rules: []string{"allow-search"}},
		{Kind: audit.KindCallIntent, Agent: "a1", Tool: "search", Decision: "allow"},
		{Kind: audit.KindCallIntent, Agent: "a2", Tool: "delete", Decision: "approve", Rules: []string{"hold-deletes"}},
		// Refused by the policy with rules: inside the allow-lists (a rule named the call).
		{Kind: audit.KindCallRefused, Agent: "a1", Tool: "send", Decision: "deny", Reason: "denied_by_policy", Rules: []string{"no-send", "no-external"}},
		// Refused by default: no rule allowed it.
		{Kind: audit.KindCallRefused, Agent: "a1", Tool: "send", Decision: "deny", Reason: "denied_by_policy"},
		// Refused before the policy was asked.
		{Kind: audit.KindCallRefused, Agent: "a1", Tool: "made-up-tool-9f3", Decision: "refused", Reason: "unknown_tool"},
		{Kind: audit.KindCallRefused, Agent: "a2", Tool: "search", Decision: "refused", Reason: "out_of_scope"},
		{Kind: audit.KindCallRefused, Agent: "a2", Tool: "search", Reason: "environment_mismatch"},
		{Kind: audit.KindCallRefused, Agent: "a2", Tool: "fetch", Decision: "refused", Reason: "egress_denied"},
		{Kind: audit.KindCallRefused, Agent: "a2", Tool: "fetch", Decision: "refused", Reason: "quarantined"},
		// Held for approval; refused after the policy allowed it.
		{Kind: audit.KindCallRefused, Agent: "a2", Tool: "delete", Decision: "approve", Reason: "approval_pending", Rules: []string{"hold-deletes"}},
		{Kind: audit.KindCallRefused, Agent: "a1", Tool: "search", Decision: "allow", Reason: "budget_exhausted"},
		// A decision that is none of the policy's counts as refused.
		{Kind: audit.KindCallRefused, Agent: "a1", Tool: "search", Decision: "bogus", Reason: "policy_error"},
		{Kind: audit.KindCallSuggested, Agent: "a3", Tool: "delete", Decision: "allow", Reason: "suggested"},
		{Kind: audit.KindCallDeduplicated, Agent: "a1", Tool: "search", Decision: "allow"},
		// Not calls of their own.
		{Kind: audit.KindCallOutcome, Agent: "a1", Tool: "search", Upstream: "u1", Decision: "allow", LatencyMicros: 1500},
		{Kind: audit.KindPolicyLoaded},
	})

	checkSeries(t, m, "chaperone_calls_total", map[string]float64{
		"agent=a1,decision=allow,tool=search":        3, // 2 intents and the budget refusal
		"agent=a2,decision=approve,tool=delete":      2,
		"agent=a1,decision=deny,tool=send":           2,
		"agent=a1,decision=refused,tool=(unknown)":   1,
		"agent=a2,decision=refused,tool=search":      2,
		"agent=a2,decision=refused,tool=fetch":       2,
		"agent=a1,decision=refused,tool=search":      1,
		"agent=a3,decision=suggested,tool=delete":    1,
		"agent=a1,decision=deduplicated,tool=search": 1,
	})
	checkSeries(t, m, "chaperone_allowlist_calls_total", map[string]float64{
		"inside=true":  10,
		"inside=false": 5, // default deny, unknown tool, out of scope, environment, egress
	})
	checkSeries(t, m, "chaperone_denials_total", map[string]float64{
		"reason=denied_by_policy,rule=no-send":      1,
		"reason=denied_by_policy,rule=no-external":  1,
		"reason=denied_by_policy,rule=":             1,
		"reason=unknown_tool,rule=":                 1,
		"reason=out_of_scope,rule=":                 1,
		"reason=environment_mismatch,rule=":         1,
		"reason=egress_denied,rule=":                1,
		"reason=quarantined,rule=":                  1,
		"reason=approval_pending,rule=hold-deletes": 1,
		"reason=budget_exhausted,rule=":             1,
		"reason=policy_error,rule=":                 1,
	})
	if got := testutil.ToFloat64(m.events.WithLabelValues(audit.KindCallRefused)); got != 10 {
		t.Errorf("chaperone_audit_events_total{kind=call.refused} = %v, want 10", got)
	}
	if got := testutil.ToFloat64(m.events.WithLabelValues(audit.KindPolicyLoaded)); got != 1 {
		t.Errorf("chaperone_audit_events_total{kind=policy.loaded} = %v, want 1", got)
	}
	// The made-up tool name is no label value anywhere.
	for name := range m.families {
		for key := range series(t, m, name) {
			if strings.Contains(key, "made-up") {
				t.Errorf("%s has series %q, which names a tool the agent made up", name, key)
			}
		}
	}
}

func TestObserveApprovals(t *testing.T) {
	t.Parallel()
	m := NewMetrics()
	m.Observe([]audit.Event{
		{Kind: "approval.requested", Approval: "ap1"},
		{Kind: "approval.requested", Approval: "ap2"},
		{Kind: "approval.requested", Approval: "ap3"},
		{Kind: "approval.requested", Approval: "ap4"},
		{Kind: "approval.approved", Approval: "ap1", LatencyMicros: 30_000_000},
		{Kind: "approval.denied", Approval: "ap2", LatencyMicros: 90_000_000},
		{Kind: "approval.denied", Approval: "ap3"}, // no latency: counted, not timed
		{Kind: "approval.expired", Approval: "ap4", LatencyMicros: 5_000_000},
	})
	if got := testutil.ToFloat64(m.approvalReqs); got != 4 {
		t.Errorf("chaperone_approval_requests_total = %v, want 4", got)
	}
	const want = `
# HELP chaperone_approvals_total Approval requests settled, by outcome (approved, declined, expired).
# TYPE chaperone_approvals_total counter
chaperone_approvals_total{outcome="approved"} 1
chaperone_approvals_total{outcome="declined"} 2
chaperone_approvals_total{outcome="expired"} 1
`
	if err := testutil.CollectAndCompare(m.approvals, strings.NewReader(want), "chaperone_approvals_total"); err != nil {
		t.Errorf("chaperone_approvals_total: %v", err)
	}
	checkSeries(t, m, "chaperone_approval_decision_seconds", map[string]float64{
		"outcome=approved|count": 1, "outcome=approved|sum": 30,
		"outcome=declined|count": 1, "outcome=declined|sum": 90,
	})
}

func TestObserveSensors(t *testing.T) {
	t.Parallel()
	m := NewMetrics()
	m.Observe([]audit.Event{
		{Kind: audit.KindCallIntent, Tool: "send", Decision: "allow", Sensors: []string{
			"prompt:injection:0.91:instruction_override,hidden:zero_width",
			"args:secret:aws_access_key", "args:pii:EMAIL", "args:pii:PHONE",
			"detokenized:pii:2", "detokenized:EMAIL", "session:injection:0.90", "args:unscanned",
		}},
		{Kind: audit.KindCallRefused, Tool: "fetch", Decision: "refused", Reason: "egress_denied", Sensors: []string{
			"egress:denied:evil.example", "args:secret:github_token",
		}},
		{Kind: audit.KindCallOutcome, Tool: "fetch", Sensors: []string{
			"injection:0.93:instruction_override", "secret:aws_access_key", "pii:EMAIL",
			"redacted:secret:2", "tokenize:pii:3", "tokenized:pii:3", "sanitized:hidden_text", "result:unscanned",
			"result:unreadable", "egress:allowed:fine.example", "bogus:note", "", "injection",
		}},
		// Sensors of other kinds do not count.
		{Kind: audit.KindCallSuggested, Sensors: []string{"secret:x"}},
	})
	checkSeries(t, m, "chaperone_sensor_detections_total", map[string]float64{
		"direction=call,kind=,sensor=injection":              1,
		"direction=call,kind=aws_access_key,sensor=secret":   1,
		"direction=call,kind=github_token,sensor=secret":     1,
		"direction=call,kind=EMAIL,sensor=pii":               1,
		"direction=call,kind=PHONE,sensor=pii":               1,
		"direction=call,kind=,sensor=egress":                 1,
		"direction=result,kind=,sensor=injection":            2,
		"direction=result,kind=aws_access_key,sensor=secret": 1,
		"direction=result,kind=EMAIL,sensor=pii":             1,
	})
}

func TestParseSensorNote(t *testing.T) {
	t.Parallel()
	tests := []struct {
		note, sensor, kind string
		ok                 bool
	}{
		{"injection:0.93:instruction_override,role_play", SensorInjection, "", true},
		{"injection:0.50", SensorInjection, "", true},
		{"prompt:injection:0.91:classifier", SensorInjection, "", true},
		{"secret:aws_access_key", SensorSecret, "aws_access_key", true},
		{"args:secret:private_key", SensorSecret, "private_key", true},
		{"pii:EMAIL", SensorPII, "EMAIL", true},
		{"args:pii:IBAN", SensorPII, "IBAN", true},
		{"egress:denied:169.254.169.254", SensorEgress, "", true},
		{"egress:denied", SensorEgress, "", true},
		// Actions, gaps, repeats and unknowns.
		{"session:injection:0.90", "", "", false},
		{"redacted:secret:2", "", "", false},
		{"tokenize:pii:3", "", "", false},
		{"tokenized:pii:3", "", "", false},
		{"redact:pii:1", "", "", false},
		{"detokenized:pii:2", "", "", false},
		{"detokenized:EMAIL", "", "", false},
		{"sanitized:hidden_text", "", "", false},
		{"result:unscanned", "", "", false},
		{"result:unreadable", "", "", false},
		{"args:unscanned", "", "", false},
		{"args:injection:0.9", "", "", false},
		{"prompt:secret:x", "", "", false},
		{"egress:allowed:example.com", "", "", false},
		{"egress", "", "", false},
		{"", "", "", false},
		{"Secret:x", "", "", false},
	}
	for _, tc := range tests {
		sensor, kind, ok := parseSensorNote(tc.note)
		if sensor != tc.sensor || kind != tc.kind || ok != tc.ok {
			t.Errorf("parseSensorNote(%q) = %q, %q, %v, want %q, %q, %v", tc.note, sensor, kind, ok, tc.sensor, tc.kind, tc.ok)
		}
	}
}

func FuzzParseSensorNote(f *testing.F) {
	for _, s := range []string{
		"injection:0.93:a,b", "prompt:injection:0.1", "secret:aws", "args:secret:k", "pii:EMAIL",
		"args:pii:IBAN", "egress:denied:h", "redacted:secret:2", "session:injection:0.9", "", ":", "args:", "prompt:",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, note string) {
		sensor, kind, ok := parseSensorNote(note)
		if !ok {
			if sensor != "" || kind != "" {
				t.Fatalf("parseSensorNote(%q) = %q, %q, false: values without a detection", note, sensor, kind)
			}
			return
		}
		switch sensor {
		case SensorInjection, SensorEgress:
			if kind != "" {
				t.Fatalf("parseSensorNote(%q) kind = %q, want none for %s", note, kind, sensor)
			}
		case SensorSecret, SensorPII:
			if !strings.HasSuffix(note, kind) {
				t.Fatalf("parseSensorNote(%q) kind = %q, not the note's tail", note, kind)
			}
		default:
			t.Fatalf("parseSensorNote(%q) sensor = %q, not a known sensor", note, sensor)
		}
		// What reaches a label is bounded however long the note.
		if v := cleanLabel(kind); len(v) > MaxLabelBytes || !utf8.ValidString(v) {
			t.Fatalf("cleanLabel(kind of %q) = %q: not bounded", note, v)
		}
	})
}

func TestObserveContainment(t *testing.T) {
	t.Parallel()
	m := NewMetrics()
	m.Observe([]audit.Event{
		{Kind: audit.KindBreakerChanged, Agent: "a1", Decision: "open"},
		{Kind: audit.KindBreakerChanged, Agent: "a1", Decision: "half_open"},
		{Kind: audit.KindBreakerChanged, Agent: "a1", Decision: "closed"},
		{Kind: audit.KindBreakerChanged, Agent: "a2", Decision: "open"},
		{Kind: audit.KindKillEngaged, Scope: "agent:a1", LatencyMicros: 4_000},
		{Kind: audit.KindKillEngaged, Scope: "agent:a2", LatencyMicros: 250_000},
		{Kind: audit.KindKillEngaged, Scope: "all"}, // nothing in flight: counted, not timed
		{Kind: audit.KindKillLifted, Scope: "all"},
	})
	checkSeries(t, m, "chaperone_breaker_transitions_total", map[string]float64{"to=open": 2, "to=half_open": 1, "to=closed": 1})
	if got := testutil.ToFloat64(m.breakerTrips); got != 2 {
		t.Errorf("chaperone_breaker_trips_total = %v, want 2", got)
	}
	if got := testutil.ToFloat64(m.kills); got != 3 {
		t.Errorf("chaperone_kills_total = %v, want 3", got)
	}
	checkSeries(t, m, "chaperone_time_to_contain_seconds", map[string]float64{"|count": 2, "|sum": 0.254})
}

func TestObserveUpstream(t *testing.T) {
	t.Parallel()
	m := NewMetrics()
	m.Observe([]audit.Event{
		{Kind: audit.KindCallOutcome, Upstream: "u1", Tool: "search", LatencyMicros: 20_000},
		{Kind: audit.KindCallOutcome, Upstream: "u1", Tool: "search", LatencyMicros: 30_000, ResultError: true},
		{Kind: audit.KindCallOutcome, Upstream: "u1", Tool: "search", LatencyMicros: 1_000, Reason: "tool_unavailable"},
		{Kind: audit.KindCallOutcome, Upstream: "u2", Tool: "send", LatencyMicros: 2_000_000, Reason: "upstream_error"},
		{Kind: audit.KindCallOutcome, Upstream: "u2", Tool: "send", Reason: "result_withheld"},
		{Kind: audit.KindCallOutcome, Upstream: "u2", Tool: "send", LatencyMicros: -5}, // forged: not timed
	})
	checkSeries(t, m, "chaperone_upstream_latency_seconds", map[string]float64{
		"tool=search,upstream=u1|count": 3, "tool=search,upstream=u1|sum": 0.051,
		"tool=send,upstream=u2|count": 2, "tool=send,upstream=u2|sum": 2,
	})
	checkSeries(t, m, "chaperone_upstream_errors_total", map[string]float64{
		"kind=tool_error,tool=search,upstream=u1":  1,
		"kind=unavailable,tool=search,upstream=u1": 1,
		"kind=failed,tool=send,upstream=u2":        1,
	})
}

func TestObserveBudgetsAndTasks(t *testing.T) {
	t.Parallel()
	m := NewMetrics()
	m.Observe([]audit.Event{
		{Kind: audit.KindCallIntent, Agent: "a1", Decision: "allow", Spend: 0.25, Tokens: 1000},
		{Kind: audit.KindCallRefused, Agent: "a1", Decision: "refused", Reason: "budget_exhausted", Spend: 0.5, Tokens: 200},
		{Kind: audit.KindCallIntent, Agent: "a2", Decision: "allow", Tokens: 7},
		// Forged amounts never panic a counter or move it backwards.
		{Kind: audit.KindCallIntent, Agent: "a3", Decision: "allow", Spend: -3, Tokens: -9},
		{Kind: audit.KindCallIntent, Agent: "a3", Decision: "allow", Spend: math.NaN()},
		{Kind: audit.KindCallIntent, Agent: "a3", Decision: "allow", Spend: math.Inf(1)},
		// Spend on an outcome is no charge.
		{Kind: audit.KindCallOutcome, Agent: "a1", Spend: 100},
		{Kind: audit.KindTaskEnded, Task: "t1", Spend: 1.5, Steps: 12},
		{Kind: audit.KindTaskEnded, Task: "t2", Spend: 0.5, Steps: 0},
		{Kind: audit.KindTaskEnded, Task: "t3", Spend: -1, Steps: -4},
	})
	checkSeries(t, m, "chaperone_budget_spend_total", map[string]float64{"agent=a1": 0.75})
	checkSeries(t, m, "chaperone_budget_tokens_total", map[string]float64{"agent=a1": 1200, "agent=a2": 7})
	if got := testutil.ToFloat64(m.tasksCompleted); got != 3 {
		t.Errorf("chaperone_tasks_completed_total = %v, want 3", got)
	}
	if got := testutil.ToFloat64(m.taskSpend); got != 2 {
		t.Errorf("chaperone_task_spend_total = %v, want 2", got)
	}
	checkSeries(t, m, "chaperone_task_steps", map[string]float64{"|count": 2, "|sum": 12})
}

func TestDirectInstruments(t *testing.T) {
	t.Parallel()
	m := NewMetrics()
	m.ObserveCall("allow", 3*time.Millisecond)
	m.ObserveCall("allow", time.Millisecond)
	m.ObserveCall("deny", -time.Second) // counts as 0
	m.CheckpointWritten()
	m.CheckpointWritten()
	m.CheckpointPublishFailed("webhook")
	m.CheckpointPublishFailed("file")
	m.CheckpointPublishFailed("webhook")
	m.AuditHead(41)
	m.AuditHead(42)
	checkSeries(t, m, "chaperone_call_duration_seconds", map[string]float64{
		"decision=allow|count": 2, "decision=allow|sum": 0.004,
		"decision=deny|count": 1, "decision=deny|sum": 0,
	})
	if got := testutil.ToFloat64(m.checkpoints); got != 2 {
		t.Errorf("chaperone_audit_checkpoints_total = %v, want 2", got)
	}
	checkSeries(t, m, "chaperone_audit_checkpoint_publish_errors_total", map[string]float64{"sink=webhook": 2, "sink=file": 1})
	if got := testutil.ToFloat64(m.auditHead); got != 42 {
		t.Errorf("chaperone_audit_head_seq = %v, want 42", got)
	}
}

func TestLabelBounds(t *testing.T) {
	t.Parallel()
	m := NewMetrics()
	var batch []audit.Event
	for i := range MaxLabelValues + 100 {
		batch = append(batch, audit.Event{Kind: audit.KindCallIntent, Agent: "a1", Tool: fmt.Sprintf("tool-%04d", i), Decision: "allow"})
	}
	m.Observe(batch)
	calls := series(t, m, "chaperone_calls_total")
	if len(calls) != MaxLabelValues+1 {
		t.Errorf("chaperone_calls_total has %d series, want %d (the first %d tools and %q)", len(calls), MaxLabelValues+1, MaxLabelValues, OtherLabel)
	}
	if got := calls["agent=a1,decision=allow,tool=other"]; got != 100 {
		t.Errorf(`chaperone_calls_total{tool="other"} = %v, want 100`, got)
	}
	if got := calls["agent=a1,decision=allow,tool=tool-0499"]; got != 1 {
		t.Errorf(`chaperone_calls_total{tool="tool-0499"} = %v, want 1 (within the bound)`, got)
	}
	// The bound is per label name: a tool past it is "other" in every metric, and a
	// tool already seen keeps its name.
	m.Observe([]audit.Event{
		{Kind: audit.KindCallOutcome, Upstream: "u1", Tool: "tool-0550", LatencyMicros: 10},
		{Kind: audit.KindCallOutcome, Upstream: "u1", Tool: "tool-0001", LatencyMicros: 10},
	})
	checkSeries(t, m, "chaperone_upstream_latency_seconds", map[string]float64{
		"tool=other,upstream=u1|count": 1, "tool=other,upstream=u1|sum": 0.00001,
		"tool=tool-0001,upstream=u1|count": 1, "tool=tool-0001,upstream=u1|sum": 0.00001,
	})

	// Long and invalid values.
	long := strings.Repeat("é", 100) // 200 bytes
	m2 := NewMetrics()
	m2.Observe([]audit.Event{
		{Kind: audit.KindCallIntent, Agent: long, Tool: "bad\xff\xfename", Decision: "allow"},
	})
	for key := range series(t, m2, "chaperone_calls_total") {
		if !utf8.ValidString(key) {
			t.Errorf("chaperone_calls_total series %q is not valid UTF-8", key)
		}
		agent, _, _ := strings.Cut(strings.TrimPrefix(key, "agent="), ",")
		if len(agent) != MaxLabelBytes || agent != strings.Repeat("é", MaxLabelBytes/2) {
			t.Errorf("agent label = %q (%d bytes), want the first %d bytes of the agent", agent, len(agent), MaxLabelBytes)
		}
		if !strings.Contains(key, "tool=bad\uFFFDname") {
			t.Errorf("series %q: want the invalid bytes of the tool replaced with U+FFFD", key)
		}
	}
}

func TestCleanLabel(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{"", ""},
		{"search", "search"},
		{"a\xffb", "a\uFFFDb"},
		{strings.Repeat("x", 128), strings.Repeat("x", 128)},
		{strings.Repeat("x", 129), strings.Repeat("x", 128)},
		// A 3-byte character across the bound is dropped whole.
		{strings.Repeat("x", 127) + "€", strings.Repeat("x", 127)},
		{strings.Repeat("x", 125) + "€", strings.Repeat("x", 125) + "€"},
		{strings.Repeat("x", 126) + "€", strings.Repeat("x", 126)},
	}
	for _, tc := range tests {
		if got := cleanLabel(tc.in); got != tc.want {
			t.Errorf("cleanLabel(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestNilMetrics(t *testing.T) {
	t.Parallel()
	var m *Metrics
	m.Observe([]audit.Event{{Kind: audit.KindCallIntent}})
	m.ObserveCall("allow", time.Second)
	m.CheckpointWritten()
	m.CheckpointPublishFailed("file")
	m.AuditHead(1)
	if m.Registry() != nil {
		t.Errorf("(*Metrics)(nil).Registry() = non-nil, want nil")
	}
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusNotFound {
		t.Errorf("(*Metrics)(nil).Handler() status = %d, want %d", rec.Code, http.StatusNotFound)
	}
}

// allKinds is a batch that feeds every metric derived from events.
func allKinds() []audit.Event {
	return []audit.Event{
		{Kind: audit.KindCallIntent, Agent: "a1", Tool: "search", Decision: "allow", Spend: 0.1, Tokens: 10, Sensors: []string{"args:pii:EMAIL"}},
		{Kind: audit.KindCallRefused, Agent: "a1", Tool: "x", Decision: "refused", Reason: "unknown_tool"},
		{Kind: audit.KindCallOutcome, Agent: "a1", Tool: "search", Upstream: "u1", LatencyMicros: 900, ResultError: true},
		{Kind: "approval.requested"},
		{Kind: "approval.approved", LatencyMicros: 1_000_000},
		{Kind: audit.KindBreakerChanged, Decision: "open"},
		{Kind: audit.KindKillEngaged, LatencyMicros: 1000},
		{Kind: audit.KindTaskEnded, Spend: 1, Steps: 3},
	}
}

// TestFamilies checks that m.families, which the dashboard test relies on, names
// exactly the chaperone_ metrics the registry exposes.
func TestFamilies(t *testing.T) {
	t.Parallel()
	m := NewMetrics()
	m.Observe(allKinds())
	m.ObserveCall("allow", time.Millisecond)
	m.CheckpointWritten()
	m.CheckpointPublishFailed("file")
	m.AuditHead(1)
	mfs, err := m.reg.Gather()
	if err != nil {
		t.Fatalf("Gather() error: %v", err)
	}
	gathered := map[string]string{}
	for _, mf := range mfs {
		if strings.HasPrefix(mf.GetName(), "chaperone_") {
			gathered[mf.GetName()] = strings.ToLower(mf.GetType().String())
		}
	}
	if diff := cmp.Diff(m.families, gathered); diff != "" {
		t.Errorf("families and gathered chaperone_ metrics differ (-families +gathered):\n%s", diff)
	}
}

func TestHandlerScrape(t *testing.T) {
	t.Parallel()
	m := NewMetrics()
	m.Observe(allKinds())
	m.ObserveCall("allow", time.Millisecond)
	srv := httptest.NewServer(m.Handler())
	t.Cleanup(srv.Close)

	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics status = %d, want 200", resp.StatusCode)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("GET /metrics Content-Type = %q, want text/plain", ct)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read /metrics: %v", err)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(string(body)))
	if err != nil {
		t.Fatalf("parse /metrics: %v\n%s", err, body)
	}
	for _, name := range []string{
		"chaperone_calls_total", "chaperone_allowlist_calls_total", "chaperone_upstream_latency_seconds",
		"chaperone_call_duration_seconds", "chaperone_sensor_detections_total", "go_goroutines",
	} {
		if _, ok := families[name]; !ok {
			t.Errorf("scrape lacks %s", name)
		}
	}
	calls := families["chaperone_calls_total"]
	var total float64
	for _, mt := range calls.GetMetric() {
		total += mt.GetCounter().GetValue()
	}
	if total != 2 {
		t.Errorf("scraped chaperone_calls_total sums to %v, want 2", total)
	}
	if !slices.ContainsFunc(calls.GetMetric(), func(mt *dto.Metric) bool {
		return slices.ContainsFunc(mt.GetLabel(), func(l *dto.LabelPair) bool { return l.GetName() == "tool" && l.GetValue() == UnknownTool })
	}) {
		t.Errorf("scraped chaperone_calls_total has no series with tool=%q", UnknownTool)
	}
}

func TestObserveConcurrent(t *testing.T) {
	t.Parallel()
	m := NewMetrics()
	batch := benchBatch()
	const workers, rounds = 8, 20
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for range rounds {
				m.Observe(batch)
				m.ObserveCall("allow", time.Millisecond)
			}
		})
	}
	wg.Go(func() {
		for range rounds {
			rec := httptest.NewRecorder()
			m.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
		}
	})
	wg.Wait()
	var events float64
	for _, v := range series(t, m, "chaperone_audit_events_total") {
		events += v
	}
	if want := float64(workers * rounds * len(batch)); events != want {
		t.Errorf("chaperone_audit_events_total sums to %v, want %v", events, want)
	}
	// One commit per Observe; an empty batch is no commit.
	m.Observe(nil)
	if got, want := series(t, m, "chaperone_audit_commits_total")[""], float64(workers*rounds); got != want || m.AuditCommits() != int64(want) {
		t.Errorf("chaperone_audit_commits_total = %v, AuditCommits() = %d; want %v", got, m.AuditCommits(), want)
	}
}

// benchBatch is 256 events of the kinds a busy gateway commits.
func benchBatch() []audit.Event {
	tools := []string{"search", "fetch", "send_email", "delete_file", "read_file", "query_db"}
	agents := []string{"agent-1", "agent-2", "agent-3"}
	var out []audit.Event
	for i := range 256 {
		tool, agent := tools[i%len(tools)], agents[i%len(agents)]
		var e audit.Event
		switch i % 8 {
		case 0, 1:
			e = audit.Event{Kind: audit.KindCallIntent, Tool: tool, Agent: agent, Decision: "allow", Rules: []string{"allow-" + tool}, Spend: 0.01, Tokens: 120}
		case 2, 3:
			e = audit.Event{Kind: audit.KindCallOutcome, Tool: tool, Agent: agent, Upstream: "upstream-a", LatencyMicros: int64(500 + i*37), Sensors: []string{"pii:EMAIL", "tokenize:pii:1"}}
		case 4:
			e = audit.Event{Kind: audit.KindCallRefused, Tool: tool, Agent: agent, Decision: "deny", Reason: "denied_by_policy", Rules: []string{"no-" + tool}}
		case 5:
			e = audit.Event{Kind: audit.KindCallRefused, Tool: "made-up", Agent: agent, Decision: "refused", Reason: "unknown_tool", Sensors: []string{"args:secret:aws_access_key"}}
		case 6:
			e = audit.Event{Kind: "approval.approved", Tool: tool, Agent: agent, LatencyMicros: 12_000_000}
		case 7:
			e = audit.Event{Kind: audit.KindTaskEnded, Spend: 0.4, Steps: 9}
		}
		e.Seq, e.Time = int64(i+1), t0
		out = append(out, e)
	}
	return out
}

func BenchmarkObserve(b *testing.B) {
	m := NewMetrics()
	batch := benchBatch()
	m.Observe(batch) // series exist from here on, as in a running gateway
	b.ReportAllocs()
	for b.Loop() {
		m.Observe(batch)
	}
}
