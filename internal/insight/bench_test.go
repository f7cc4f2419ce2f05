package insight_test

import (
	"testing"
	"time"

	"github.com/chaperone-dev/chaperone/internal/audit"
	"github.com/chaperone-dev/chaperone/internal/insight"
)

// BenchmarkAdd feeds a day's window a mix of call decisions, approvals and sensor
// findings, as a dashboard does when it recomputes its figures.
func BenchmarkAdd(b *testing.B) {
	w := insight.Window{From: t0, To: t0.Add(24 * time.Hour), Bucket: 15 * time.Minute}
	a, err := insight.New(w)
	if err != nil {
		b.Fatal(err)
	}
	evs := fixtureEvents()
	for i := range evs {
		evs[i].Time = t0.Add(time.Duration(i) * 37 * time.Minute)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		a.Add(&evs[i%len(evs)])
		i++
	}
}

// FuzzAdd feeds an Accumulator events made of arbitrary strings: it must not panic, and
// its figures must add up.
func FuzzAdd(f *testing.F) {
	for _, e := range fixtureEvents() {
		sensor := ""
		if len(e.Sensors) > 0 {
			sensor = e.Sensors[0]
		}
		rule := ""
		if len(e.Rules) > 0 {
			rule = e.Rules[0]
		}
		f.Add(e.Kind, e.Decision, e.Reason, e.Agent, sensor, rule, int64(e.Time.Sub(t0)), e.LatencyMicros)
	}
	f.Add("call.refused", "deny", "", "", "session:", ":", int64(-1), int64(-5))
	f.Add("call.intent", "approve", "", "", "args:", "", int64(2*time.Hour-1), int64(1<<62))
	f.Fuzz(func(t *testing.T, kind, decision, reason, agent, sensor, rule string, offset, latency int64) {
		a, err := insight.New(testWindow)
		if err != nil {
			t.Fatal(err)
		}
		e := audit.Event{Time: t0.Add(time.Duration(offset)), Kind: kind, Decision: decision, Reason: reason, Agent: agent,
			Sensors: []string{sensor}, Rules: []string{rule}, LatencyMicros: latency, PolicyVersion: rule, Scope: agent}
		a.Add(&e)
		a.Add(&e)
		f := a.Figures()
		d := f.Decisions
		if sum := d.Allow + d.Approve + d.Deny + d.Refused + d.Suggested; sum != f.Calls {
			t.Errorf("decisions add up to %d, Calls is %d", sum, f.Calls)
		}
		var series int64
		for _, b := range f.Series {
			series += b.Total()
		}
		if series != f.Calls {
			t.Errorf("series adds up to %d, Calls is %d", series, f.Calls)
		}
		if g := f.Governance.WithinAllowLists; g < 0 || g > 1 {
			t.Errorf("WithinAllowLists = %v, want between 0 and 1", g)
		}
		if f.Calls > 2 || f.Events > 2 {
			t.Errorf("two events made %d calls in %d events", f.Calls, f.Events)
		}
	})
}
