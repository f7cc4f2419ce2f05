package contain

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

// brClock is a fake clock safe for concurrent use.
type brClock struct {
	mu sync.Mutex
	t  time.Time
}

func brNewClock() *brClock { return &brClock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)} }

func (c *brClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *brClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// brRecorder collects the changes told to OnChange.
type brRecorder struct {
	mu      sync.Mutex
	changes []BreakerChange
}

func (r *brRecorder) OnChange(c BreakerChange) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.changes = append(r.changes, c)
}

func (r *brRecorder) Take() []BreakerChange {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.changes
	r.changes = nil
	return out
}

// brNewBreakers returns breakers on a fake clock that record their changes.
func brNewBreakers(t testing.TB, o BreakerOptions) (*Breakers, *brClock, *brRecorder) {
	t.Helper()
	clk, rec := brNewClock(), &brRecorder{}
	if o.Now == nil {
		o.Now = clk.Now
	}
	if o.OnChange == nil {
		o.OnChange = rec.OnChange
	}
	b, err := NewBreakers(o)
	if err != nil {
		t.Fatalf("NewBreakers(%+v): %v", o, err)
	}
	return b, clk, rec
}

func brOneTrigger(s Signal, threshold float64, window time.Duration) BreakerOptions {
	return BreakerOptions{Triggers: []Trigger{{Signal: s, Threshold: threshold, Window: window}}}
}

func brWantState(t *testing.T, b *Breakers, agent string, want BreakerState) {
	t.Helper()
	if got := b.Status(agent).State; got != want {
		t.Fatalf("Status(%q).State = %s, want %s", agent, got, want)
	}
}

func TestBreakerTripsAtThreshold(t *testing.T) {
	t.Parallel()
	for _, s := range Signals() {
		t.Run(string(s), func(t *testing.T) {
			t.Parallel()
			b, clk, rec := brNewBreakers(t, brOneTrigger(s, 3, time.Minute))
			for i := range 2 {
				b.Observe("a1", s, 1)
				if ad := b.Admit("a1"); ad.State != BreakerClosed || ad.Degrade != "" {
					t.Fatalf("Admit after %d of 3 = %+v, want closed with full rights", i+1, ad)
				}
			}
			if got := rec.Take(); len(got) != 0 {
				t.Fatalf("changes below the threshold: %+v", got)
			}
			b.Observe("a1", s, 1)
			ad := b.Admit("a1")
			want := Admission{State: BreakerOpen, Degrade: DegradeReadOnly, Since: clk.Now(), Until: clk.Now().Add(5 * time.Minute), Signal: s}
			if ad != want {
				t.Errorf("Admit at the threshold = %+v, want %+v", ad, want)
			}
			wantChanges := []BreakerChange{{
				Agent: "a1", From: BreakerClosed, To: BreakerOpen, Cause: BreakerCauseTrigger, Degrade: DegradeReadOnly,
				Signal: s, Total: 3, Threshold: 3, Window: time.Minute, At: clk.Now(),
				Detail: fmt.Sprintf("%s reached 3 within 1m0s (threshold 3)", s),
			}}
			if got := rec.Take(); !reflect.DeepEqual(got, wantChanges) {
				t.Errorf("changes = %+v, want %+v", got, wantChanges)
			}
			if ad := b.Admit("other"); ad.State != BreakerClosed {
				t.Errorf("Admit(other) = %+v, want closed: breakers are per agent", ad)
			}
		})
	}
}

func TestBreakerSeveralTriggersPerSignal(t *testing.T) {
	t.Parallel()
	b, _, rec := brNewBreakers(t, BreakerOptions{Triggers: []Trigger{
		{Signal: SignalErrors, Threshold: 100, Window: time.Hour},
		{Signal: SignalErrors, Threshold: 2, Window: time.Second},
		{Signal: SignalDenials, Threshold: 1, Window: time.Second},
	}})
	b.Observe("a", SignalErrors, 1)
	b.Observe("a", SignalErrors, 1)
	got := rec.Take()
	if len(got) != 1 || got[0].Threshold != 2 || got[0].Window != time.Second {
		t.Fatalf("changes = %+v, want one trip by the 2-in-1s trigger", got)
	}
	st := b.Status("a")
	if st.Triggers[0].Total != 2 || st.Triggers[1].Total != 2 || st.Triggers[2].Total != 0 {
		t.Errorf("Status totals = %+v, want 2, 2, 0", st.Triggers)
	}
}

func TestBreakerWindowSlides(t *testing.T) {
	t.Parallel()
	b, clk, _ := brNewBreakers(t, brOneTrigger(SignalDenials, 3, time.Minute))
	total := func() float64 { return b.Status("a").Triggers[0].Total }

	b.Observe("a", SignalDenials, 2)
	clk.Advance(59 * time.Second) // within the window: counted still
	if got := total(); got != 2 {
		t.Fatalf("total 59s later = %g, want 2", got)
	}
	clk.Advance(time.Second) // a full window later: slid out
	if got := total(); got != 0 {
		t.Fatalf("total 60s later = %g, want 0", got)
	}
	b.Observe("a", SignalDenials, 2)
	brWantState(t, b, "a", BreakerClosed) // 2 + 2 would trip, but the first 2 are gone

	// A steady drip: the window holds exactly its 60 buckets' worth, below the threshold.
	clk.Advance(time.Minute)
	for range 120 {
		clk.Advance(time.Second)
		b.Observe("a", SignalDenials, 0.04)
	}
	if got := total(); math.Abs(got-60*0.04) > 1e-9 {
		t.Errorf("total of a steady drip = %g, want %g (60 buckets of 0.04)", got, 60*0.04)
	}
	brWantState(t, b, "a", BreakerClosed)
}

func TestBreakerWindowAcrossTheEpoch(t *testing.T) {
	t.Parallel()
	clk := &brClock{t: time.Date(1969, 12, 31, 23, 59, 30, 500, time.UTC)}
	b, _, _ := brNewBreakers(t, BreakerOptions{Triggers: []Trigger{{Signal: SignalDenials, Threshold: 3, Window: time.Minute}}, Now: clk.Now})
	b.Observe("a", SignalDenials, 2)
	clk.Advance(59 * time.Second) // across 1970, still within the window
	if got := b.Status("a").Triggers[0].Total; got != 2 {
		t.Fatalf("total 59s later = %g, want 2", got)
	}
	clk.Advance(time.Second)
	if got := b.Status("a").Triggers[0].Total; got != 0 {
		t.Fatalf("total 60s later = %g, want 0", got)
	}
}

func TestBreakerClockStepsBack(t *testing.T) {
	t.Parallel()
	b, clk, _ := brNewBreakers(t, brOneTrigger(SignalDenials, 3, time.Minute))
	b.Observe("a", SignalDenials, 1)
	clk.Advance(-time.Hour)
	b.Observe("a", SignalDenials, 1)
	if got := b.Status("a").Triggers[0].Total; got != 2 {
		t.Errorf("total after the clock stepped back = %g, want 2 (newer weight kept)", got)
	}
	b.Observe("a", SignalDenials, 1)
	brWantState(t, b, "a", BreakerOpen)
	if ad := b.Admit("a"); ad.State != BreakerOpen || ad.Probe {
		t.Errorf("Admit with the clock before since = %+v, want open, no probe", ad)
	}
}

func TestBreakerIgnores(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		signal Signal
		weight float64
	}{
		{"signal without a trigger", SignalErrors, 10},
		{"unknown signal", "bogus", 10},
		{"operator is not an agent signal", SignalOperator, 10},
		{"empty signal", "", 10},
		{"zero weight", SignalDenials, 0},
		{"negative weight", SignalDenials, -5},
		{"NaN weight", SignalDenials, math.NaN()},
		{"+Inf weight", SignalDenials, math.Inf(1)},
		{"-Inf weight", SignalDenials, math.Inf(-1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b, _, rec := brNewBreakers(t, brOneTrigger(SignalDenials, 1, time.Minute))
			for range 5 {
				b.Observe("a", tt.signal, tt.weight)
			}
			if st := b.Status("a"); st.State != BreakerClosed || st.Triggers[0].Total != 0 {
				t.Errorf("Status after Observe(%q, %g) = %+v, want closed with nothing counted", tt.signal, tt.weight, st)
			}
			if n := len(b.agents); n != 0 {
				t.Errorf("%d agents tracked, want 0", n)
			}
			if got := rec.Take(); len(got) != 0 {
				t.Errorf("changes = %+v, want none", got)
			}
		})
	}
}

func TestBreakerSpend(t *testing.T) {
	t.Parallel()
	t.Run("weighted", func(t *testing.T) {
		t.Parallel()
		b, _, _ := brNewBreakers(t, brOneTrigger(SignalSpend, 10, time.Hour))
		b.Observe("a", SignalSpend, 4.5)
		b.Observe("a", SignalSpend, 5)
		brWantState(t, b, "a", BreakerClosed)
		b.Observe("a", SignalSpend, 0.5)
		brWantState(t, b, "a", BreakerOpen)
	})
	t.Run("decimal amounts reach their sum", func(t *testing.T) {
		t.Parallel()
		b, _, rec := brNewBreakers(t, brOneTrigger(SignalSpend, 1, time.Hour))
		for range 9 {
			b.Observe("a", SignalSpend, 0.1)
		}
		brWantState(t, b, "a", BreakerClosed)
		b.Observe("a", SignalSpend, 0.1) // 0.1 ten times is 0.9999999999999999
		brWantState(t, b, "a", BreakerOpen)
		if c := rec.Take(); len(c) != 1 || c[0].Signal != SignalSpend || math.Abs(c[0].Total-1) > 1e-9 {
			t.Errorf("changes = %+v, want one spend trip at a total of 1", c)
		}
	})
	t.Run("a probe that spends within the velocity closes the breaker", func(t *testing.T) {
		t.Parallel()
		b, clock, _ := brNewBreakers(t, brOneTrigger(SignalSpend, 10, time.Minute))
		b.Observe("a", SignalSpend, 10)
		brWantState(t, b, "a", BreakerOpen)
		clock.Advance(10 * time.Minute) // past the cool-down and the window
		if adm := b.Admit("a"); !adm.Probe {
			t.Fatalf("Admit after the cool-down = %+v, want the probe", adm)
		}
		b.Observe("a", SignalSpend, 1) // a paid probe, far below the velocity
		brWantState(t, b, "a", BreakerHalfOpen)
		b.ProbeDone("a", true)
		brWantState(t, b, "a", BreakerClosed)
		// A probe whose spend reaches the velocity again reopens it.
		b.Observe("a", SignalSpend, 10)
		clock.Advance(10 * time.Minute)
		b.Admit("a")
		b.Observe("a", SignalSpend, 10)
		brWantState(t, b, "a", BreakerOpen)
	})
	t.Run("huge amounts", func(t *testing.T) {
		t.Parallel()
		b, _, _ := brNewBreakers(t, brOneTrigger(SignalSpend, math.MaxFloat64, time.Hour))
		b.Observe("a", SignalSpend, math.MaxFloat64/2)
		brWantState(t, b, "a", BreakerClosed)
		b.Observe("a", SignalSpend, math.MaxFloat64)
		brWantState(t, b, "a", BreakerOpen) // the sum overflows to +Inf, which trips
	})
}

func TestBreakerDegrade(t *testing.T) {
	t.Parallel()
	tests := []struct {
		opt, want Degrade
	}{
		{"", DegradeReadOnly},
		{DegradeReadOnly, DegradeReadOnly},
		{DegradeSuggestOnly, DegradeSuggestOnly},
		{DegradeBlock, DegradeBlock},
	}
	for _, tt := range tests {
		t.Run(string(tt.want)+"/"+string(tt.opt), func(t *testing.T) {
			t.Parallel()
			o := brOneTrigger(SignalLoops, 1, time.Minute)
			o.Degrade = tt.opt
			b, clk, rec := brNewBreakers(t, o)
			b.Observe("a", SignalLoops, 1)
			if ad := b.Admit("a"); ad.Degrade != tt.want {
				t.Errorf("Admit open: Degrade = %q, want %q", ad.Degrade, tt.want)
			}
			if st := b.Status("a"); st.Degrade != tt.want {
				t.Errorf("Status: Degrade = %q, want %q", st.Degrade, tt.want)
			}
			clk.Advance(5 * time.Minute)
			if ad := b.Admit("a"); !ad.Probe || ad.Degrade != "" {
				t.Errorf("Admit of the probe = %+v, want full rights", ad)
			}
			if ad := b.Admit("a"); ad.State != BreakerHalfOpen || ad.Degrade != tt.want {
				t.Errorf("Admit half-open, not the probe = %+v, want Degrade %q", ad, tt.want)
			}
			for _, c := range rec.Take() {
				if c.Degrade != tt.want {
					t.Errorf("change %s to %s: Degrade = %q, want %q", c.From, c.To, c.Degrade, tt.want)
				}
			}
		})
	}
}

// brTripped returns breakers with agent "a" tripped by a denial at the fake clock's start,
// with a cool-down of 5m, and the recorded changes taken.
func brTripped(t *testing.T) (*Breakers, *brClock, *brRecorder) {
	t.Helper()
	b, clk, rec := brNewBreakers(t, BreakerOptions{Triggers: []Trigger{
		{Signal: SignalDenials, Threshold: 1, Window: time.Hour},
		{Signal: SignalErrors, Threshold: 100, Window: time.Hour},
	}})
	b.Observe("a", SignalDenials, 1)
	brWantState(t, b, "a", BreakerOpen)
	rec.Take()
	return b, clk, rec
}

func TestBreakerCooldownAndProbe(t *testing.T) {
	t.Parallel()
	t.Run("cool-down then one probe", func(t *testing.T) {
		t.Parallel()
		b, clk, rec := brTripped(t)
		t0 := clk.Now()
		clk.Advance(5*time.Minute - time.Nanosecond)
		if ad := b.Admit("a"); ad.State != BreakerOpen || ad.Probe || ad.Until != t0.Add(5*time.Minute) {
			t.Fatalf("Admit before the cool-down ends = %+v, want open until %v", ad, t0.Add(5*time.Minute))
		}
		clk.Advance(time.Nanosecond)
		probe := b.Admit("a")
		want := Admission{State: BreakerHalfOpen, Probe: true, Since: clk.Now(), Until: clk.Now().Add(5 * time.Minute), Signal: SignalDenials}
		if probe != want {
			t.Fatalf("Admit when the cool-down ends = %+v, want %+v", probe, want)
		}
		for range 3 {
			if ad := b.Admit("a"); ad.Probe || ad.State != BreakerHalfOpen || ad.Degrade != DegradeReadOnly {
				t.Fatalf("Admit with a probe in flight = %+v, want half-open degraded", ad)
			}
		}
		c := rec.Take()
		if len(c) != 1 || c[0].From != BreakerOpen || c[0].To != BreakerHalfOpen || c[0].Cause != BreakerCauseCooldown || c[0].Signal != SignalDenials {
			t.Errorf("changes = %+v, want open to half-open by cool-down", c)
		}
	})
	t.Run("probe ok closes and clears", func(t *testing.T) {
		t.Parallel()
		b, clk, rec := brTripped(t)
		b.Observe("a", SignalErrors, 7) // counted while open
		clk.Advance(5 * time.Minute)
		b.Admit("a")
		b.ProbeDone("a", true)
		st := b.Status("a")
		if st.State != BreakerClosed || st.Triggers[0].Total != 0 || st.Triggers[1].Total != 0 || st.Signal != "" || st.Degrade != "" {
			t.Errorf("Status after a good probe = %+v, want closed with windows cleared", st)
		}
		if ad := b.Admit("a"); ad != (Admission{State: BreakerClosed}) {
			t.Errorf("Admit after a good probe = %+v, want closed", ad)
		}
		c := rec.Take()
		if len(c) != 2 || c[1].From != BreakerHalfOpen || c[1].To != BreakerClosed || c[1].Cause != BreakerCauseProbeOK || c[1].Signal != "" {
			t.Errorf("changes = %+v, want ..., half-open to closed by probe_ok", c)
		}
		b.ProbeDone("a", false) // late and closed: nothing
		brWantState(t, b, "a", BreakerClosed)
	})
	t.Run("probe failed reopens", func(t *testing.T) {
		t.Parallel()
		b, clk, rec := brTripped(t)
		clk.Advance(5 * time.Minute)
		b.Admit("a")
		clk.Advance(time.Second)
		b.ProbeDone("a", false)
		ad := b.Admit("a")
		want := Admission{State: BreakerOpen, Degrade: DegradeReadOnly, Since: clk.Now(), Until: clk.Now().Add(5 * time.Minute), Signal: SignalDenials}
		if ad != want {
			t.Errorf("Admit after a failed probe = %+v, want %+v (fresh cool-down)", ad, want)
		}
		c := rec.Take()
		if len(c) != 2 || c[1].From != BreakerHalfOpen || c[1].To != BreakerOpen || c[1].Cause != BreakerCauseProbeFailed || c[1].Signal != "" {
			t.Errorf("changes = %+v, want ..., half-open to open by probe_failed", c)
		}
	})
	t.Run("signal during half-open reopens", func(t *testing.T) {
		t.Parallel()
		b, clk, rec := brTripped(t)
		clk.Advance(5 * time.Minute)
		b.Admit("a")
		b.Observe("a", SignalLoops, 1) // no trigger names it: nothing
		brWantState(t, b, "a", BreakerHalfOpen)
		b.Observe("a", SignalErrors, 1) // below its threshold, but the probe failed
		brWantState(t, b, "a", BreakerOpen)
		b.ProbeDone("a", true) // too late: ignored
		brWantState(t, b, "a", BreakerOpen)
		c := rec.Take()
		if len(c) != 2 || c[1].To != BreakerOpen || c[1].Cause != BreakerCauseProbeFailed || c[1].Signal != SignalErrors || c[1].Threshold != 100 {
			t.Errorf("changes = %+v, want ..., half-open to open by errors", c)
		}
		if st := b.Status("a"); st.Signal != SignalErrors || !st.Since.Equal(clk.Now()) {
			t.Errorf("Status = %+v, want open since now by errors", st)
		}
	})
	t.Run("lost probe given up after the cool-down", func(t *testing.T) {
		t.Parallel()
		b, clk, rec := brTripped(t)
		clk.Advance(5 * time.Minute)
		if !b.Admit("a").Probe {
			t.Fatal("first Admit after the cool-down is not the probe")
		}
		clk.Advance(5*time.Minute - time.Nanosecond)
		if ad := b.Admit("a"); ad.Probe {
			t.Fatalf("Admit before the probe is given up = %+v, want no probe", ad)
		}
		clk.Advance(time.Nanosecond)
		if ad := b.Admit("a"); !ad.Probe || ad.State != BreakerHalfOpen {
			t.Fatalf("Admit once the probe is lost = %+v, want the new probe", ad)
		}
		if ad := b.Admit("a"); ad.Probe {
			t.Fatalf("Admit after the new probe = %+v, want no probe", ad)
		}
		if c := rec.Take(); len(c) != 1 {
			t.Errorf("changes = %+v, want only open to half-open (giving up a probe is no transition)", c)
		}
	})
}

func TestBreakerOneProbe(t *testing.T) {
	t.Parallel()
	b, clk, _ := brTripped(t)
	for round := range 20 {
		clk.Advance(5 * time.Minute)
		start := make(chan struct{})
		var wg sync.WaitGroup
		var mu sync.Mutex
		probes := 0
		for range 50 {
			wg.Go(func() {
				<-start
				if ad := b.Admit("a"); ad.Probe {
					mu.Lock()
					probes++
					mu.Unlock()
				} else if ad.State != BreakerHalfOpen || ad.Degrade == "" {
					t.Errorf("round %d: Admit not the probe = %+v, want half-open degraded", round, ad)
				}
			})
		}
		close(start)
		wg.Wait()
		if probes != 1 {
			t.Fatalf("round %d: %d of 50 concurrent Admits were the probe, want 1", round, probes)
		}
		b.ProbeDone("a", false)
	}
}

func TestBreakerOperator(t *testing.T) {
	t.Parallel()
	t.Run("trip holds until reset", func(t *testing.T) {
		t.Parallel()
		b, clk, rec := brNewBreakers(t, brOneTrigger(SignalDenials, 1, time.Minute))
		if err := b.Trip("a", "alice", "exfiltration suspected"); err != nil {
			t.Fatalf("Trip: %v", err)
		}
		t0 := clk.Now()
		clk.Advance(100 * time.Hour)
		ad := b.Admit("a")
		if want := (Admission{State: BreakerOpen, Degrade: DegradeReadOnly, Since: t0, Signal: SignalOperator}); ad != want {
			t.Fatalf("Admit long after an operator's trip = %+v, want %+v (no cool-down)", ad, want)
		}
		st := b.Status("a")
		if st.By != "alice" || st.Detail != "exfiltration suspected" || st.Signal != SignalOperator || !st.Until.IsZero() {
			t.Errorf("Status = %+v, want by alice, detail the reason, no until", st)
		}
		err := b.Trip("a", "bob", "again")
		if !errors.Is(err, ErrBreakerOpen) {
			t.Errorf("Trip of a tripped breaker = %v, want %v", err, ErrBreakerOpen)
		}
		if err := b.Reset("a", "bob", "false alarm"); err != nil {
			t.Fatalf("Reset: %v", err)
		}
		if ad := b.Admit("a"); ad.State != BreakerClosed {
			t.Errorf("Admit after Reset = %+v, want closed", ad)
		}
		want := []BreakerChange{
			{Agent: "a", From: BreakerClosed, To: BreakerOpen, Cause: BreakerCauseOperator, Degrade: DegradeReadOnly, Signal: SignalOperator, By: "alice", Reason: "exfiltration suspected", Detail: "exfiltration suspected", At: t0},
			{Agent: "a", From: BreakerOpen, To: BreakerClosed, Cause: BreakerCauseOperator, By: "bob", Reason: "false alarm", Detail: "false alarm", At: clk.Now()},
		}
		if got := rec.Take(); !reflect.DeepEqual(got, want) {
			t.Errorf("changes =\n%+v\nwant\n%+v", got, want)
		}
	})
	t.Run("trip pins an automatic trip and ends a probe", func(t *testing.T) {
		t.Parallel()
		b, clk, rec := brTripped(t)
		clk.Advance(5 * time.Minute)
		if !b.Admit("a").Probe {
			t.Fatal("no probe")
		}
		if err := b.Trip("a", "alice", "hold it"); err != nil {
			t.Fatalf("Trip while half-open: %v", err)
		}
		b.ProbeDone("a", true)
		brWantState(t, b, "a", BreakerOpen)
		clk.Advance(time.Hour)
		if ad := b.Admit("a"); ad.Probe || ad.State != BreakerOpen {
			t.Errorf("Admit = %+v, want held open", ad)
		}
		c := rec.Take()
		if len(c) != 2 || c[1].From != BreakerHalfOpen || c[1].To != BreakerOpen || c[1].Cause != BreakerCauseOperator {
			t.Errorf("changes = %+v, want ..., half-open to open by operator", c)
		}
	})
	t.Run("reset clears windows", func(t *testing.T) {
		t.Parallel()
		b, _, _ := brNewBreakers(t, brOneTrigger(SignalDenials, 2, time.Minute))
		b.Observe("a", SignalDenials, 2)
		if err := b.Reset("a", "alice", "known cause"); err != nil {
			t.Fatalf("Reset: %v", err)
		}
		b.Observe("a", SignalDenials, 1)
		brWantState(t, b, "a", BreakerClosed)
	})
	errTests := []struct {
		name              string
		agent, by, reason string
		reset             bool
		want              error
	}{
		{"reset closed", "a", "alice", "why", true, ErrBreakerClosed},
		{"reset unknown agent", "nobody", "alice", "why", true, ErrBreakerClosed},
		{"trip empty agent", "", "alice", "why", false, ErrBreakerInput},
		{"reset empty agent", "", "alice", "why", true, ErrBreakerInput},
		{"trip long agent", strings.Repeat("a", MaxBreakerAgentID+1), "alice", "why", false, ErrBreakerInput},
		{"trip control in agent", "a\n", "alice", "why", false, ErrBreakerInput},
		{"trip empty by", "a", "", "why", false, ErrBreakerInput},
		{"trip blank reason", "a", "alice", "  ", false, ErrBreakerInput},
		{"reset empty reason", "a", "alice", "", true, ErrBreakerInput},
		{"trip long reason", "a", "alice", strings.Repeat("x", MaxBreakerText+1), false, ErrBreakerInput},
		{"trip invalid UTF-8 by", "a", "\xff", "why", false, ErrBreakerInput},
		{"trip control in reason", "a", "alice", "a\x1bb", false, ErrBreakerInput},
	}
	for _, tt := range errTests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b, _, rec := brNewBreakers(t, brOneTrigger(SignalDenials, 1, time.Minute))
			op, err := "Trip", error(nil)
			if tt.reset {
				op, err = "Reset", b.Reset(tt.agent, tt.by, tt.reason)
			} else {
				err = b.Trip(tt.agent, tt.by, tt.reason)
			}
			if !errors.Is(err, tt.want) {
				t.Errorf("%s(%q, %q, %q) = %v, want %v", op, tt.agent, tt.by, tt.reason, err, tt.want)
			}
			if err != nil && !strings.HasPrefix(err.Error(), "contain: ") {
				t.Errorf("%s error %q does not start with the package", op, err)
			}
			brWantState(t, b, tt.agent, BreakerClosed)
			if c := rec.Take(); len(c) != 0 {
				t.Errorf("changes = %+v, want none", c)
			}
		})
	}
}

func TestBreakerOnChange(t *testing.T) {
	t.Parallel()
	t.Run("a whole life in order", func(t *testing.T) {
		t.Parallel()
		b, clk, rec := brNewBreakers(t, BreakerOptions{
			Triggers: []Trigger{{Signal: SignalInjections, Threshold: 2, Window: 10 * time.Minute}},
			Degrade:  DegradeBlock,
			Cooldown: time.Minute,
		})
		at := func(d time.Duration) time.Time { return brNewClock().Now().Add(d) }
		b.Observe("a", SignalInjections, 1)
		b.Observe("a", SignalInjections, 1) // trips at 0
		clk.Advance(time.Minute)
		b.Admit("a") // probe at 1m
		clk.Advance(time.Second)
		b.Observe("a", SignalInjections, 1) // fails it at 1m1s
		clk.Advance(time.Minute)
		b.Admit("a") // probe at 2m1s
		b.ProbeDone("a", true)
		want := []BreakerChange{
			{Agent: "a", From: BreakerClosed, To: BreakerOpen, Cause: BreakerCauseTrigger, Degrade: DegradeBlock, Signal: SignalInjections, Total: 2, Threshold: 2, Window: 10 * time.Minute, Detail: "injections reached 2 within 10m0s (threshold 2)", At: at(0)},
			{Agent: "a", From: BreakerOpen, To: BreakerHalfOpen, Cause: BreakerCauseCooldown, Degrade: DegradeBlock, Signal: SignalInjections, Detail: "cool-down over, probe admitted", At: at(time.Minute)},
			{Agent: "a", From: BreakerHalfOpen, To: BreakerOpen, Cause: BreakerCauseProbeFailed, Degrade: DegradeBlock, Signal: SignalInjections, Total: 3, Threshold: 2, Window: 10 * time.Minute, Detail: "injections during the probe (3 within 10m0s)", At: at(61 * time.Second)},
			{Agent: "a", From: BreakerOpen, To: BreakerHalfOpen, Cause: BreakerCauseCooldown, Degrade: DegradeBlock, Signal: SignalInjections, Detail: "cool-down over, probe admitted", At: at(121 * time.Second)},
			{Agent: "a", From: BreakerHalfOpen, To: BreakerClosed, Cause: BreakerCauseProbeOK, Detail: "probe succeeded", At: at(121 * time.Second)},
		}
		got := rec.Take()
		if len(got) != len(want) {
			t.Fatalf("%d changes, want %d: %+v", len(got), len(want), got)
		}
		for i := range want {
			if !reflect.DeepEqual(got[i], want[i]) {
				t.Errorf("change %d =\n%+v\nwant\n%+v", i, got[i], want[i])
			}
		}
	})
	t.Run("told after the lock is released", func(t *testing.T) {
		t.Parallel()
		var b *Breakers
		var seen []BreakerChange
		var statuses []BreakerState
		b, _, _ = brNewBreakers(t, BreakerOptions{
			Triggers: []Trigger{{Signal: SignalDenials, Threshold: 1, Window: time.Minute}},
			OnChange: func(c BreakerChange) {
				seen = append(seen, c)
				statuses = append(statuses, b.Status(c.Agent).State) // would deadlock under the lock
				if c.To == BreakerOpen && c.Cause == BreakerCauseTrigger {
					if err := b.Reset(c.Agent, "auto", "auto-reset"); err != nil {
						t.Errorf("Reset from OnChange: %v", err)
					}
				}
			},
		})
		b.Observe("a", SignalDenials, 1)
		if len(seen) != 2 || seen[0].To != BreakerOpen || seen[1].To != BreakerClosed {
			t.Fatalf("changes = %+v, want the trip then the reset, in order", seen)
		}
		if want := []BreakerState{BreakerOpen, BreakerClosed}; !reflect.DeepEqual(statuses, want) {
			t.Errorf("states seen from OnChange = %v, want %v", statuses, want)
		}
	})
	t.Run("a panicking OnChange does not wedge the agent", func(t *testing.T) {
		t.Parallel()
		var calls []BreakerState
		b, _, _ := brNewBreakers(t, BreakerOptions{
			Triggers: []Trigger{{Signal: SignalDenials, Threshold: 1, Window: time.Minute}},
			OnChange: func(c BreakerChange) {
				calls = append(calls, c.To)
				if len(calls) == 1 {
					panic("boom")
				}
			},
		})
		func() {
			defer func() {
				if recover() == nil {
					t.Error("the panic of OnChange was swallowed")
				}
			}()
			b.Observe("a", SignalDenials, 1)
		}()
		brWantState(t, b, "a", BreakerOpen)
		if err := b.Reset("a", "alice", "after the panic"); err != nil {
			t.Fatalf("Reset: %v", err)
		}
		if want := []BreakerState{BreakerOpen, BreakerClosed}; !reflect.DeepEqual(calls, want) {
			t.Errorf("OnChange told %v, want %v", calls, want)
		}
	})
	t.Run("nil OnChange", func(t *testing.T) {
		t.Parallel()
		b, err := NewBreakers(brOneTrigger(SignalDenials, 1, time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		b.Observe("a", SignalDenials, 1)
		if err := b.Reset("a", "alice", "why"); err != nil {
			t.Fatalf("Reset: %v", err)
		}
	})
}

func TestBreakerRestore(t *testing.T) {
	t.Parallel()
	t.Run("states", func(t *testing.T) {
		t.Parallel()
		b, clk, rec := brNewBreakers(t, brOneTrigger(SignalDenials, 1, time.Minute))
		now := clk.Now()
		for _, r := range []struct {
			agent  string
			state  BreakerState
			signal string
			since  time.Time
		}{
			{"open", BreakerOpen, "denials", now.Add(-time.Minute)},
			{"half", BreakerHalfOpen, "errors", now.Add(-time.Minute)},
			{"held", BreakerOpen, "operator", now.Add(-time.Hour)},
			{"cooled", BreakerOpen, "", now.Add(-time.Hour)},
			{"future", BreakerOpen, "loops", now.Add(time.Hour)},
		} {
			if err := b.Restore(r.agent, r.state, r.signal, "from storage", r.since); err != nil {
				t.Fatalf("Restore(%q, %s): %v", r.agent, r.state, err)
			}
		}
		for _, tt := range []struct {
			agent string
			want  Admission
		}{
			{"open", Admission{State: BreakerOpen, Degrade: DegradeReadOnly, Since: now.Add(-time.Minute), Until: now.Add(4 * time.Minute), Signal: SignalDenials}},
			{"half", Admission{State: BreakerOpen, Degrade: DegradeReadOnly, Since: now.Add(-time.Minute), Until: now.Add(4 * time.Minute), Signal: SignalErrors}},
			{"held", Admission{State: BreakerOpen, Degrade: DegradeReadOnly, Since: now.Add(-time.Hour), Signal: SignalOperator}},
			{"cooled", Admission{State: BreakerHalfOpen, Probe: true, Since: now, Until: now.Add(5 * time.Minute)}},
			{"future", Admission{State: BreakerOpen, Degrade: DegradeReadOnly, Since: now, Until: now.Add(5 * time.Minute), Signal: SignalLoops}},
		} {
			if got := b.Admit(tt.agent); got != tt.want {
				t.Errorf("Admit(%q) after Restore = %+v, want %+v", tt.agent, got, tt.want)
			}
		}
		if st := b.Status("open"); st.Detail != "from storage" {
			t.Errorf("Status(open).Detail = %q, want the restored detail", st.Detail)
		}
		if got := rec.Take(); len(got) != 1 || got[0].Agent != "cooled" {
			t.Errorf("changes = %+v, want only the probe of cooled (Restore tells nothing)", got)
		}
		if err := b.Reset("held", "alice", "restored hold lifted"); err != nil {
			t.Errorf("Reset of a restored hold: %v", err)
		}
		if err := b.Restore("open", BreakerClosed, "", "", time.Time{}); err != nil {
			t.Errorf("Restore closed: %v", err)
		}
		brWantState(t, b, "open", BreakerClosed)
		var names []string
		for _, s := range b.List() {
			names = append(names, s.Agent)
		}
		if want := []string{"cooled", "future", "half"}; !reflect.DeepEqual(names, want) {
			t.Errorf("List agents = %v, want %v", names, want)
		}
	})
	bad := []struct {
		name   string
		agent  string
		state  BreakerState
		signal string
		detail string
		since  time.Time
	}{
		{"empty agent", "", BreakerOpen, "denials", "", time.Unix(1, 0)},
		{"unknown state", "a", "tripped", "denials", "", time.Unix(1, 0)},
		{"empty state", "a", "", "denials", "", time.Unix(1, 0)},
		{"unknown signal", "a", BreakerOpen, "bogus", "", time.Unix(1, 0)},
		{"long detail", "a", BreakerOpen, "denials", strings.Repeat("x", MaxBreakerText+1), time.Unix(1, 0)},
		{"invalid UTF-8 detail", "a", BreakerOpen, "denials", "\xff", time.Unix(1, 0)},
		{"open without since", "a", BreakerOpen, "denials", "", time.Time{}},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b, _, _ := brNewBreakers(t, brOneTrigger(SignalDenials, 1, time.Minute))
			err := b.Restore(tt.agent, tt.state, tt.signal, tt.detail, tt.since)
			if !errors.Is(err, ErrBreakerInput) {
				t.Errorf("Restore(%q, %q, %q) = %v, want %v", tt.agent, tt.state, tt.signal, err, ErrBreakerInput)
			}
			brWantState(t, b, tt.agent, BreakerClosed)
		})
	}
}

func TestBreakerOptions(t *testing.T) {
	t.Parallel()
	ok := Trigger{Signal: SignalDenials, Threshold: 5, Window: time.Minute}
	tests := []struct {
		name string
		o    BreakerOptions
		want []string // each line of the error, in order
	}{
		{"no triggers", BreakerOptions{}, []string{"contain: breakers: triggers must have from 1 to 32 entries, got 0"}},
		{"too many triggers", BreakerOptions{Triggers: make([]Trigger, 33)}, nil}, // checked by prefix below
		{"zero window", BreakerOptions{Triggers: []Trigger{ok, {Signal: SignalErrors, Threshold: 1}}}, []string{"contain: breakers: triggers[1].window must be from 1s to 168h, got 0s"}},
		{"window too long", BreakerOptions{Triggers: []Trigger{{Signal: SignalErrors, Threshold: 1, Window: 169 * time.Hour}}}, []string{"contain: breakers: triggers[0].window must be from 1s to 168h, got 169h0m0s"}},
		{"window too short", BreakerOptions{Triggers: []Trigger{{Signal: SignalErrors, Threshold: 1, Window: 999 * time.Millisecond}}}, []string{"contain: breakers: triggers[0].window must be from 1s to 168h, got 999ms"}},
		{"zero threshold", BreakerOptions{Triggers: []Trigger{{Signal: SignalErrors, Window: time.Minute}}}, []string{"contain: breakers: triggers[0].threshold must be positive and finite, got 0"}},
		{"negative threshold", BreakerOptions{Triggers: []Trigger{{Signal: SignalErrors, Threshold: -1, Window: time.Minute}}}, []string{"contain: breakers: triggers[0].threshold must be positive and finite, got -1"}},
		{"NaN threshold", BreakerOptions{Triggers: []Trigger{{Signal: SignalErrors, Threshold: math.NaN(), Window: time.Minute}}}, []string{"contain: breakers: triggers[0].threshold must be positive and finite, got NaN"}},
		{"Inf threshold", BreakerOptions{Triggers: []Trigger{{Signal: SignalErrors, Threshold: math.Inf(1), Window: time.Minute}}}, []string{"contain: breakers: triggers[0].threshold must be positive and finite, got +Inf"}},
		{"unknown signal", BreakerOptions{Triggers: []Trigger{{Signal: "chaos", Threshold: 1, Window: time.Minute}}}, []string{`contain: breakers: triggers[0].signal must be one of denials, injections, destructive, errors, spend, deviations, loops, got "chaos"`}},
		{"operator signal", BreakerOptions{Triggers: []Trigger{{Signal: SignalOperator, Threshold: 1, Window: time.Minute}}}, []string{`contain: breakers: triggers[0].signal must be one of denials, injections, destructive, errors, spend, deviations, loops, got "operator"`}},
		{"unknown degrade", BreakerOptions{Triggers: []Trigger{ok}, Degrade: "sulk"}, []string{`contain: breakers: degrade must be one of read_only, suggest_only, block, got "sulk"`}},
		{"negative cooldown", BreakerOptions{Triggers: []Trigger{ok}, Cooldown: -time.Second}, []string{"contain: breakers: cooldown must be from 1s to 168h, got -1s"}},
		{"short cooldown", BreakerOptions{Triggers: []Trigger{ok}, Cooldown: time.Millisecond}, []string{"contain: breakers: cooldown must be from 1s to 168h, got 1ms"}},
		{"long cooldown", BreakerOptions{Triggers: []Trigger{ok}, Cooldown: 200 * time.Hour}, []string{"contain: breakers: cooldown must be from 1s to 168h, got 200h0m0s"}},
		{"negative max agents", BreakerOptions{Triggers: []Trigger{ok}, MaxAgents: -1}, []string{"contain: breakers: max_agents must be from 1 to 10000000, got -1"}},
		{"huge max agents", BreakerOptions{Triggers: []Trigger{ok}, MaxAgents: MaxBreakerAgents + 1}, []string{"contain: breakers: max_agents must be from 1 to 10000000, got 10000001"}},
		{"every problem at once", BreakerOptions{Triggers: []Trigger{{Signal: "x", Threshold: 0, Window: 0}}, Degrade: "y", Cooldown: -1, MaxAgents: -1}, []string{
			`contain: breakers: triggers[0].signal must be one of denials, injections, destructive, errors, spend, deviations, loops, got "x"`,
			"contain: breakers: triggers[0].threshold must be positive and finite, got 0",
			"contain: breakers: triggers[0].window must be from 1s to 168h, got 0s",
			`contain: breakers: degrade must be one of read_only, suggest_only, block, got "y"`,
			"contain: breakers: cooldown must be from 1s to 168h, got -1ns",
			"contain: breakers: max_agents must be from 1 to 10000000, got -1",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b, err := NewBreakers(tt.o)
			if err == nil || b != nil {
				t.Fatalf("NewBreakers(%s) = %v, %v, want an error", tt.name, b, err)
			}
			got := strings.Split(err.Error(), "\n")
			if tt.want == nil {
				if !strings.HasPrefix(got[0], "contain: breakers: triggers must have from 1 to 32 entries, got 33") {
					t.Errorf("NewBreakers error = %q, want the trigger count first", err)
				}
				return
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("NewBreakers error =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
	t.Run("defaults", func(t *testing.T) {
		t.Parallel()
		b, err := NewBreakers(BreakerOptions{Triggers: []Trigger{ok, ok}}) // duplicates are allowed
		if err != nil {
			t.Fatalf("NewBreakers: %v", err)
		}
		if b.degrade != DegradeReadOnly || b.cooldown != 5*time.Minute || b.maxAgents != 100_000 || b.now == nil {
			t.Errorf("defaults = %s, %s, %d, want read_only, 5m, 100000 and a clock", b.degrade, b.cooldown, b.maxAgents)
		}
	})
	t.Run("bounds are inclusive", func(t *testing.T) {
		t.Parallel()
		_, err := NewBreakers(BreakerOptions{
			Triggers:  []Trigger{{Signal: SignalSpend, Threshold: math.SmallestNonzeroFloat64, Window: time.Second}, {Signal: SignalSpend, Threshold: math.MaxFloat64, Window: 168 * time.Hour}},
			Cooldown:  168 * time.Hour,
			MaxAgents: MaxBreakerAgents,
		})
		if err != nil {
			t.Errorf("NewBreakers at the bounds: %v", err)
		}
	})
}

func TestBreakerParse(t *testing.T) {
	t.Parallel()
	for _, s := range Signals() {
		if got, err := ParseSignal(string(s)); got != s || err != nil {
			t.Errorf("ParseSignal(%q) = %q, %v, want %q", s, got, err, s)
		}
	}
	for _, s := range []string{"", "operator", "Denials", "denials ", "probe"} {
		if got, err := ParseSignal(s); err == nil {
			t.Errorf("ParseSignal(%q) = %q, want an error", s, got)
		}
	}
	if len(Signals()) != 7 {
		t.Errorf("Signals() = %v, want 7", Signals())
	}
	Signals()[0] = "mutated"
	if Signals()[0] != SignalDenials {
		t.Error("Signals returns the package's own array")
	}
	for _, d := range []Degrade{DegradeReadOnly, DegradeSuggestOnly, DegradeBlock} {
		if got, err := ParseDegrade(string(d)); got != d || err != nil {
			t.Errorf("ParseDegrade(%q) = %q, %v, want %q", d, got, err, d)
		}
	}
	if got, err := ParseDegrade("readonly"); err == nil {
		t.Errorf("ParseDegrade(readonly) = %q, want an error", got)
	}
}

func TestBreakerMaxAgents(t *testing.T) {
	t.Parallel()
	o := brOneTrigger(SignalDenials, 2, time.Minute)
	o.MaxAgents = 2
	b, clk, _ := brNewBreakers(t, o)
	b.Observe("quiet", SignalDenials, 1)
	b.Observe("bad", SignalDenials, 2) // open
	b.Observe("new", SignalDenials, 5)
	if got := b.Dropped(); got != 1 {
		t.Errorf("Dropped() = %d, want 1", got)
	}
	brWantState(t, b, "new", BreakerClosed)
	if got := b.Status("new").Triggers[0].Total; got != 0 {
		t.Errorf("total of an untracked agent = %g, want 0", got)
	}

	clk.Advance(59 * time.Second) // quiet is not quiet for the longest window yet
	b.Observe("new", SignalDenials, 1)
	if got := b.Dropped(); got != 2 {
		t.Errorf("Dropped() = %d, want 2", got)
	}
	clk.Advance(time.Second) // now it is; bad is open and never forgotten
	b.Observe("new", SignalDenials, 1)
	if got := b.Status("new").Triggers[0].Total; got != 1 {
		t.Errorf("total of new = %g, want 1 once quiet was forgotten", got)
	}
	if _, ok := b.agents["quiet"]; ok {
		t.Error("quiet, closed and quiet for a window, was not forgotten")
	}

	clk.Advance(24 * time.Hour)
	b.Observe("third", SignalDenials, 1)                              // forgets new
	b.Observe("fourth", SignalDenials, 1)                             // no room: third is fresh
	if err := b.Trip("held", "alice", "over the bound"); err != nil { // never refused
		t.Fatalf("Trip past MaxAgents: %v", err)
	}
	if err := b.Restore("restored", BreakerOpen, "denials", "", clk.Now()); err != nil {
		t.Fatalf("Restore past MaxAgents: %v", err)
	}
	var names []string
	for _, s := range b.List() {
		names = append(names, s.Agent)
	}
	if want := []string{"bad", "held", "restored"}; !reflect.DeepEqual(names, want) {
		t.Errorf("List agents = %v, want %v", names, want)
	}
	if got := b.Dropped(); got != 3 {
		t.Errorf("Dropped() = %d, want 3", got)
	}
	// Reset agents can be forgotten at once; what operators tripped or restored counts
	// toward the bound, so it takes all three to make room.
	for _, a := range []string{"bad", "held", "restored"} {
		if err := b.Reset(a, "alice", "done"); err != nil {
			t.Fatal(err)
		}
	}
	b.Observe("fourth", SignalDenials, 1)
	if got := b.Status("fourth").Triggers[0].Total; got != 1 {
		t.Errorf("total of fourth = %g, want 1 once the reset agents were forgotten", got)
	}
	if n := len(b.agents); n != 2 {
		t.Errorf("%d agents tracked, want 2 (third and fourth)", n)
	}
}

func TestBreakerStatusJSON(t *testing.T) {
	t.Parallel()
	b, clk, _ := brNewBreakers(t, brOneTrigger(SignalDenials, 2, time.Minute))
	b.Observe("a", SignalDenials, 2)
	st := b.Status("a")
	raw, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"agent":"a","state":"open","degrade":"read_only","since":"2026-03-01T12:00:00Z","until":"2026-03-01T12:05:00Z","signal":"denials","detail":"denials reached 2 within 1m0s (threshold 2)","triggers":[{"signal":"denials","threshold":2,"window":"1m0s","total":2}]}`
	if string(raw) != want {
		t.Errorf("json.Marshal(Status) =\n%s\nwant\n%s", raw, want)
	}
	var back BreakerStatus
	if err := json.Unmarshal(raw, &back); err != nil {
		t.Fatalf("json.Unmarshal: %v", err)
	}
	if !reflect.DeepEqual(back, st) {
		t.Errorf("round trip = %+v, want %+v", back, st)
	}
	closed, _ := json.Marshal(b.Status("nobody"))
	if want := `{"agent":"nobody","state":"closed","triggers":[{"signal":"denials","threshold":2,"window":"1m0s","total":0}]}`; string(closed) != want {
		t.Errorf("json.Marshal(closed Status) = %s, want %s", closed, want)
	}
	if err := json.Unmarshal([]byte(`{"window":"soon"}`), new(BreakerTriggerStatus)); err == nil {
		t.Error("Unmarshal of a bad window: no error")
	}
	_ = clk
}

// TestBreakerRace hammers a few agents from many goroutines while the clock moves, then
// checks that each agent's told changes form one chain that ends in its state, and that
// the internal invariants hold.
func TestBreakerRace(t *testing.T) {
	t.Parallel()
	clk := brNewClock()
	var mu sync.Mutex
	changes := map[string][]BreakerChange{}
	b, err := NewBreakers(BreakerOptions{
		Triggers: []Trigger{
			{Signal: SignalDenials, Threshold: 3, Window: 10 * time.Second},
			{Signal: SignalErrors, Threshold: 5, Window: time.Minute},
		},
		Cooldown:  time.Second,
		MaxAgents: 4,
		Now:       clk.Now,
		OnChange: func(c BreakerChange) {
			mu.Lock()
			changes[c.Agent] = append(changes[c.Agent], c)
			mu.Unlock()
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	agents := []string{"a", "b", "c", "d", "e", "f"}
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(g), 1))
			for range 2000 {
				agent := agents[r.IntN(len(agents))]
				switch n := r.IntN(100); {
				case n < 40:
					if ad := b.Admit(agent); ad.Probe {
						b.ProbeDone(agent, r.IntN(2) == 0)
					}
				case n < 70:
					b.Observe(agent, []Signal{SignalDenials, SignalErrors, SignalLoops}[r.IntN(3)], r.Float64()*2)
				case n < 80:
					b.ProbeDone(agent, r.IntN(2) == 0)
				case n < 88:
					_ = b.Reset(agent, "op", "race")
				case n < 92:
					_ = b.Trip(agent, "op", "race")
				case n < 96:
					b.List()
				default:
					clk.Advance(time.Duration(r.IntN(3000)) * time.Millisecond)
				}
			}
		})
	}
	wg.Wait()

	for _, agent := range agents {
		chain := changes[agent]
		state := BreakerClosed
		for i, c := range chain {
			if c.From != state {
				t.Fatalf("agent %s change %d = %s to %s, want from %s: changes told out of order", agent, i, c.From, c.To, state)
			}
			state = c.To
		}
		if st := b.Status(agent); st.State != state {
			t.Errorf("Status(%s).State = %s, want %s, the last change told", agent, st.State, state)
		}
	}
	b.mu.RLock()
	defer b.mu.RUnlock()
	for name, a := range b.agents {
		a.mu.Lock()
		switch {
		case a.gone:
			t.Errorf("agent %s: gone but still in the map", name)
		case a.closed.Load() != (a.state == BreakerClosed):
			t.Errorf("agent %s: closed flag %v for state %s", name, a.closed.Load(), a.state)
		case a.held && a.state != BreakerOpen:
			t.Errorf("agent %s: held in state %s", name, a.state)
		case (a.state == BreakerHalfOpen) != !a.probeAt.IsZero():
			t.Errorf("agent %s: state %s with probe admitted at %v", name, a.state, a.probeAt)
		case a.delivering || len(a.outbox) > 0:
			t.Errorf("agent %s: changes left untold: %+v", name, a.outbox)
		}
		a.mu.Unlock()
	}
	if n := len(b.agents); n > 4+len(agents) {
		t.Errorf("%d agents tracked", n)
	}
}

func TestBreakerAdmitClosedAllocs(t *testing.T) {
	b, _, _ := brNewBreakers(t, brOneTrigger(SignalDenials, 1e9, time.Minute))
	b.Observe("a", SignalDenials, 1)
	if n := testing.AllocsPerRun(1000, func() { b.Admit("a") }); n != 0 {
		t.Errorf("Admit of a known closed agent: %g allocations, want 0", n)
	}
	if n := testing.AllocsPerRun(1000, func() { b.Admit("unknown") }); n != 0 {
		t.Errorf("Admit of an unknown agent: %g allocations, want 0", n)
	}
	if n := testing.AllocsPerRun(1000, func() { b.Observe("a", SignalDenials, 1) }); n != 0 {
		t.Errorf("Observe below the threshold: %g allocations, want 0", n)
	}
}

func BenchmarkBreakerAdmitClosed(b *testing.B) {
	br, _, _ := brNewBreakers(b, brOneTrigger(SignalDenials, 1e18, time.Minute))
	agents := make([]string, 64)
	for i := range agents {
		agents[i] = fmt.Sprintf("agent-%d", i)
		br.Observe(agents[i], SignalDenials, 1)
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if br.Admit(agents[i%len(agents)]).State != BreakerClosed {
				b.Error("not closed")
			}
			i++
		}
	})
}

func BenchmarkBreakerObserve(b *testing.B) {
	br, _, _ := brNewBreakers(b, BreakerOptions{Triggers: []Trigger{
		{Signal: SignalDenials, Threshold: 1e18, Window: time.Minute},
		{Signal: SignalDenials, Threshold: 1e18, Window: time.Hour},
	}})
	b.ReportAllocs()
	for b.Loop() {
		br.Observe("agent", SignalDenials, 1)
	}
}
