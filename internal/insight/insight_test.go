package insight_test

import (
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/chaperone-dev/chaperone/internal/audit"
	"github.com/chaperone-dev/chaperone/internal/insight"
)

// t0 is the start of the test window.
var t0 = time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)

// at is t0 plus minutes.
func at(minutes float64) time.Time { return t0.Add(time.Duration(minutes * float64(time.Minute))) }

// testWindow is two hours from t0 in buckets of an hour.
var testWindow = insight.Window{From: t0, To: t0.Add(2 * time.Hour), Bucket: time.Hour}

// fixtureEvents are events of every kind the figures count, a few outside the window,
// and a tombstone.
func fixtureEvents() []audit.Event {
	return []audit.Event{
		{Time: at(-5), Kind: audit.KindPolicyLoaded, PolicyVersion: "sha256:old"},
		{Time: at(-1), Kind: audit.KindCallIntent, RequestID: "r0", Agent: "early-bot", Decision: "allow"},
		{Time: at(0), Kind: audit.KindPolicyLoaded, PolicyVersion: "sha256:aa"},
		{Time: at(1), Kind: audit.KindCallIntent, RequestID: "r1", Agent: "mail-bot", Decision: "allow", PolicyVersion: "sha256:aa", Spend: 1.5,
			Sensors: []string{"args:secret:aws_access_key", "prompt:injection:0.93:instruction_override", "args:pii:EMAIL"}},
		{Time: at(2), Kind: audit.KindCallOutcome, RequestID: "r1", Agent: "mail-bot",
			Sensors: []string{"injection:0.91:role_play", "redacted:secret:2", "tokenized:pii:3", "pii:PHONE"}},
		{Time: at(3), Kind: audit.KindCallRefused, RequestID: "r2", Agent: "pay-bot", Decision: "deny", Reason: "denied_by_policy",
			Rules: []string{"no-external", "no-pay"}, PolicyVersion: "sha256:aa", Sensors: []string{"session:injection:0.50"}},
		{Time: at(4), Kind: audit.KindCallRefused, RequestID: "r3", Agent: "pay-bot", Decision: "refused", Reason: "unknown_tool"},
		{Time: at(5), Kind: audit.KindCallRefused, RequestID: "r4", Agent: "mail-bot", Decision: "refused", Reason: "egress_denied",
			Sensors: []string{"egress:denied:evil.example"}},
		{Time: at(6), Kind: audit.KindCallRefused, RequestID: "r5", Agent: "mail-bot", Decision: "deny", Reason: "policy_error", PolicyVersion: "sha256:aa"},
		{Time: at(7), Kind: audit.KindCallRefused, RequestID: "r6", Agent: "pay-bot", Decision: "allow", Reason: "budget_exhausted",
			Rules: []string{"no-pay"}, PolicyVersion: "sha256:aa"},
		{Time: at(8), Kind: audit.KindApprovalRequested, Approval: "apr_1", Agent: "pay-bot"},
		{Time: at(10), Kind: audit.KindApprovalApproved, Approval: "apr_1", Agent: "pay-bot", LatencyMicros: 120e6},
		{Time: at(11), Kind: audit.KindCallIntent, RequestID: "r7", Agent: "pay-bot", Decision: "approve", PolicyVersion: "sha256:aa", Spend: 2},
		{Time: at(12), Kind: audit.KindApprovalRequested, Approval: "apr_2", Agent: "pay-bot"},
		{Time: at(13), Kind: audit.KindApprovalDenied, Approval: "apr_2", Agent: "pay-bot", Reason: "wrong_amount", LatencyMicros: 60e6},
		{Time: at(14), Kind: audit.KindApprovalExpired, Approval: "apr_3", Agent: "pay-bot"},
		{Time: at(15), Kind: audit.KindCallSuggested, RequestID: "r8", Agent: "intern-bot", Decision: "allow", Reason: "suggested", PolicyVersion: "sha256:aa"},
		{Time: at(61), Kind: audit.KindPolicyLoaded, PolicyVersion: "sha256:bb"},
		{Time: at(62), Kind: audit.KindCallIntent, RequestID: "r9", Agent: "mail-bot", Decision: "allow", PolicyVersion: "sha256:bb"},
		{Time: at(63), Kind: audit.KindBreakerChanged, Agent: "pay-bot", Decision: "open", Reason: "denials"},
		{Time: at(64), Kind: audit.KindBreakerChanged, Agent: "pay-bot", Decision: "half_open"},
		{Time: at(65), Kind: audit.KindKillEngaged, Scope: "agent:pay-bot", Reason: "incident 7", Detail: "by alice; 1 calls in flight cancelled", LatencyMicros: 3000},
		{Time: at(66), Kind: audit.KindKillLifted, Scope: "agent:pay-bot", Reason: "resolved"},
		{Time: at(67), Kind: audit.KindKillEngaged, Scope: "all", Reason: "drill", LatencyMicros: 1000},
		{Time: at(68), Kind: audit.KindAuthFailed, Decision: "refused", Reason: "unauthenticated"},
		{Time: at(69), Kind: audit.KindTaskEnded, Task: "t-1", Agent: "mail-bot", Steps: 4, Spend: 3, Tokens: 100},
		{Time: at(70), Kind: audit.KindTaskEnded, Task: "t-2", Agent: "pay-bot", Steps: 10, Spend: 5, Tokens: 50},
		{Time: at(71), Kind: audit.KindTaskEnded, Task: "t-3", Steps: 1},
		{Time: at(72), Kind: audit.KindPolicyLoaded, PolicyVersion: "sha256:aa"},
		{Time: at(73), Kind: audit.KindCallIntent, RequestID: "r10", Pruned: true},
		{Time: at(120), Kind: audit.KindCallIntent, RequestID: "r11", Agent: "late-bot", Decision: "allow"},
	}
}

// wantFigures are the figures of fixtureEvents over testWindow.
func wantFigures() insight.Figures {
	return insight.Figures{
		Window: insight.Span{From: t0, To: at(120), BucketSeconds: 3600},
		Events: 27,
		Pruned: 1,
		Calls:  9,
		Decisions: insight.Decisions{
			Allow: 2, Approve: 1, Deny: 2, Refused: 3, Suggested: 1,
		},
		Series: []insight.Bucket{
			{Start: t0, Allow: 1, Approved: 1, Deny: 2, Refused: 3, Suggested: 1},
			{Start: at(60), Allow: 1},
		},
		TopReasons: []insight.Count{{"budget_exhausted", 1}, {"denied_by_policy", 1}, {"egress_denied", 1}, {"policy_error", 1}, {"unknown_tool", 1}},
		TopRules:   []insight.Count{{"no-pay", 2}, {"no-external", 1}},
		Approvals: insight.Approvals{Requested: 2, Approved: 1, Denied: 1, Expired: 1, Rate: 1.0 / 3,
			MedianSeconds: 120, P90Seconds: 120},
		Tasks:               insight.Tasks{Ended: 3, StepsMean: 5, StepsMedian: 4, StepsMax: 10, Spend: 8, SpendMean: 8.0 / 3, Tokens: 150, CallSpend: 3.5},
		BreakerTrips:        1,
		BreakerTripsByAgent: []insight.Count{{"pay-bot", 1}},
		SensorDetections:    []insight.Count{{"injection", 2}, {"pii", 2}, {"egress", 1}, {"secret", 1}, {"session_injection", 1}},
		SensorActions:       []insight.Count{{"redacted", 1}, {"tokenized", 1}},
		Kills: []insight.Kill{
			{Time: at(65), Scope: "agent:pay-bot", Reason: "incident 7", Detail: "by alice; 1 calls in flight cancelled", ContainSeconds: 0.003},
			{Time: at(67), Scope: "all", Reason: "drill", ContainSeconds: 0.001},
		},
		KillsLifted:  1,
		AuthFailures: 1,
		PoliciesLoaded: []insight.PolicyLoad{
			{Version: "sha256:aa", FirstLoaded: t0, Loads: 2},
			{Version: "sha256:bb", FirstLoaded: at(61), Loads: 1},
		},
		PoliciesDeciding: []insight.Count{{"sha256:aa", 6}, {"sha256:bb", 1}},
		Agents: []insight.AgentFigures{
			{Agent: "intern-bot", Calls: 1, LastSeen: at(15)},
			{Agent: "mail-bot", Calls: 4, Refused: 2, LastSeen: at(69)},
			{Agent: "pay-bot", Calls: 4, Refused: 3, LastSeen: at(70)},
		},
		Governance: insight.Governance{
			WithinAllowLists: 3.0 / 9, AllowedCalls: 3,
			// The policy's denial (r2) and the egress refusal (r4); not the policy error.
			UnsafeAttempts: 2, MeanSecondsBetweenUnsafe: 3600,
			ContainMeanSeconds: 0.002, ContainMaxSeconds: 0.003,
		},
	}
}

func accumulate(tb testing.TB, w insight.Window, evs []audit.Event) insight.Figures {
	tb.Helper()
	a, err := insight.New(w)
	if err != nil {
		tb.Fatalf("New(%+v): %v", w, err)
	}
	for i := range evs {
		a.Add(&evs[i])
	}
	return a.Figures()
}

func TestFigures(t *testing.T) {
	t.Parallel()
	got := accumulate(t, testWindow, fixtureEvents())
	if diff := cmp.Diff(wantFigures(), got); diff != "" {
		t.Errorf("Figures of the fixture (-want +got):\n%s", diff)
	}
}

// The figures do not depend on the order the events are fed in, and asking twice gives
// the same answer.
func TestFiguresOrderIndependent(t *testing.T) {
	t.Parallel()
	want := accumulate(t, testWindow, fixtureEvents())
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 20 {
		evs := fixtureEvents()
		r.Shuffle(len(evs), func(i, j int) { evs[i], evs[j] = evs[j], evs[i] })
		a, err := insight.New(testWindow)
		if err != nil {
			t.Fatal(err)
		}
		for j := range evs {
			a.Add(&evs[j])
		}
		if diff := cmp.Diff(want, a.Figures()); diff != "" {
			t.Fatalf("shuffle %d: Figures (-want +got):\n%s", i, diff)
		}
		if diff := cmp.Diff(want, a.Figures()); diff != "" {
			t.Fatalf("shuffle %d: second Figures call (-want +got):\n%s", i, diff)
		}
	}
}

// An empty window has zero figures and empty, non-nil lists.
func TestFiguresEmpty(t *testing.T) {
	t.Parallel()
	f := accumulate(t, testWindow, nil)
	if f.Calls != 0 || f.Governance != (insight.Governance{}) || f.Approvals != (insight.Approvals{}) {
		t.Errorf("Figures of nothing = %+v, want zeros", f)
	}
	for name, n := range map[string]bool{
		"TopReasons": f.TopReasons == nil, "TopRules": f.TopRules == nil, "Kills": f.Kills == nil,
		"Agents": f.Agents == nil, "PoliciesLoaded": f.PoliciesLoaded == nil, "SensorDetections": f.SensorDetections == nil,
		"BreakerTripsByAgent": f.BreakerTripsByAgent == nil, "PoliciesDeciding": f.PoliciesDeciding == nil, "SensorActions": f.SensorActions == nil,
	} {
		if n {
			t.Errorf("Figures of nothing: %s is nil, want empty", name)
		}
	}
	if len(f.Series) != 2 || f.Series[1].Start != at(60) {
		t.Errorf("Figures of nothing: Series = %+v, want 2 empty buckets", f.Series)
	}
}

// The window bounds are From inclusive, To exclusive; the last bucket may be cut short.
func TestFiguresWindowBounds(t *testing.T) {
	t.Parallel()
	w := insight.Window{From: t0, To: at(90), Bucket: time.Hour}
	evs := []audit.Event{
		{Time: t0.Add(-time.Microsecond), Kind: audit.KindCallIntent, Decision: "allow"},
		{Time: t0, Kind: audit.KindCallIntent, Decision: "allow"},
		{Time: at(89.99), Kind: audit.KindCallRefused, Decision: "deny"},
		{Time: at(90), Kind: audit.KindCallIntent, Decision: "allow"},
	}
	f := accumulate(t, w, evs)
	want := []insight.Bucket{{Start: t0, Allow: 1}, {Start: at(60), Deny: 1}}
	if diff := cmp.Diff(want, f.Series); diff != "" {
		t.Errorf("Series (-want +got):\n%s", diff)
	}
}

func TestWindowValidate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		w    insight.Window
		want string // a substring of the error; "" for none
	}{
		{"ok", insight.Window{From: t0, To: at(60), Bucket: time.Minute}, ""},
		{"exactly the most buckets", insight.Window{From: t0, To: t0.Add(insight.MaxBuckets * time.Second), Bucket: time.Second}, ""},
		{"one bucket too many", insight.Window{From: t0, To: t0.Add(insight.MaxBuckets*time.Second + 1), Bucket: time.Second}, "1001 buckets, at most 1000"},
		{"from equals to", insight.Window{From: t0, To: t0, Bucket: time.Minute}, "is not before to"},
		{"to before from", insight.Window{From: at(1), To: t0, Bucket: time.Minute}, "is not before to"},
		{"zero bucket", insight.Window{From: t0, To: at(60), Bucket: 0}, "bucket 0s is not positive"},
		{"negative bucket", insight.Window{From: t0, To: at(60), Bucket: -time.Second}, "is not positive"},
		{"zero from", insight.Window{To: at(60), Bucket: time.Minute}, "from and to are required"},
		{"centuries", insight.Window{From: time.Date(2, 1, 1, 0, 0, 0, 0, time.UTC), To: time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC), Bucket: 24 * time.Hour}, "at most 1000"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := insight.New(tc.w)
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("New(%+v) = %v, want no error", tc.w, err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("New(%+v) = %v, want an error with %q", tc.w, err, tc.want)
			}
		})
	}
}

func TestAutoBucket(t *testing.T) {
	t.Parallel()
	day := 24 * time.Hour
	for _, tc := range []struct {
		span, want time.Duration
	}{
		{time.Second, time.Second},
		{time.Minute, time.Second},
		{time.Hour, time.Minute},
		{24 * time.Hour, 30 * time.Minute},
		{7 * day, 3 * time.Hour},
		{30 * day, 12 * time.Hour},
		{365 * day, 7 * day},
		{100 * 365 * day, 609 * day},
	} {
		got := insight.AutoBucket(tc.span)
		if got != tc.want {
			t.Errorf("AutoBucket(%s) = %s, want %s", tc.span, got, tc.want)
		}
		if err := (insight.Window{From: t0, To: t0.Add(tc.span), Bucket: got}).Validate(); err != nil {
			t.Errorf("AutoBucket(%s) = %s makes an invalid window: %v", tc.span, got, err)
		}
	}
}

// Past MaxKeys distinct names, counts go to Other and memory stays bounded.
func TestCountsBounded(t *testing.T) {
	t.Parallel()
	a, err := insight.New(insight.Window{From: t0, To: at(60), Bucket: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	for i := range insight.MaxKeys + 5 {
		e := audit.Event{Time: at(1), Kind: audit.KindCallRefused, Decision: "refused", Reason: "r" + strings.Repeat("x", i%7) + string(rune('a'+i%26)) + itoa(i),
			Agent: "agent-" + itoa(i), PolicyVersion: "v" + itoa(i)}
		a.Add(&e)
	}
	f := a.Figures()
	if len(f.Agents) != insight.MaxKeys || f.AgentEventsOmitted != 5 {
		t.Errorf("after %d agents: %d listed, %d events omitted; want %d and 5", insight.MaxKeys+5, len(f.Agents), f.AgentEventsOmitted, insight.MaxKeys)
	}
	last := f.PoliciesDeciding[len(f.PoliciesDeciding)-1]
	if last != (insight.Count{insight.Other, 5}) {
		t.Errorf("PoliciesDeciding ends with %+v, want {%s 5}", last, insight.Other)
	}
	if len(f.TopReasons) != insight.TopN {
		t.Errorf("TopReasons has %d entries, want %d", len(f.TopReasons), insight.TopN)
	}
}

func itoa(i int) string {
	if i == 0 {
		return "0"
	}
	var b []byte
	for ; i > 0; i /= 10 {
		b = append([]byte{byte('0' + i%10)}, b...)
	}
	return string(b)
}
