package auditexport_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/chaperone-dev/chaperone/internal/audit"
	"github.com/chaperone-dev/chaperone/internal/auditexport"
)

// selected returns the events of src that f matches, tombstones excluded.
func selected(src memSource, f *auditexport.Filter) []audit.Event {
	var out []audit.Event
	for i := range src {
		if !src[i].Pruned && f.Match(&src[i]) {
			out = append(out, src[i])
		}
	}
	return out
}

func TestFilterNarrows(t *testing.T) {
	t.Parallel()
	src := fixture(t)
	all := selected(src, &auditexport.Filter{})
	if len(all) != len(src)-1 {
		t.Fatalf("the zero Filter selects %d of %d live events", len(all), len(src)-1)
	}
	for _, tc := range []struct {
		name string
		f    auditexport.Filter
		want func(e *audit.Event) bool
	}{
		{"after", auditexport.Filter{After: 10}, func(e *audit.Event) bool { return e.Seq > 10 }},
		{"from", auditexport.Filter{From: t0.Add(20 * time.Minute)}, func(e *audit.Event) bool { return !e.Time.Before(t0.Add(20 * time.Minute)) }},
		{"to", auditexport.Filter{To: t0.Add(5 * time.Minute)}, func(e *audit.Event) bool { return e.Time.Before(t0.Add(5 * time.Minute)) }},
		{"agent", auditexport.Filter{Agents: []string{"pay-bot"}}, func(e *audit.Event) bool { return e.Agent == "pay-bot" }},
		{"agents", auditexport.Filter{Agents: []string{"pay-bot", "intern-bot"}}, func(e *audit.Event) bool { return e.Agent == "pay-bot" || e.Agent == "intern-bot" }},
		{"task", auditexport.Filter{Tasks: []string{"t-2"}}, func(e *audit.Event) bool { return e.Task == "t-2" }},
		{"decision", auditexport.Filter{Decisions: []string{"deny", "refused"}}, func(e *audit.Event) bool { return e.Decision == "deny" || e.Decision == "refused" }},
		{"kind", auditexport.Filter{Kinds: []string{audit.KindCallRefused}}, func(e *audit.Event) bool { return e.Kind == audit.KindCallRefused }},
		{"kind prefix", auditexport.Filter{Kinds: []string{"agent.*"}}, func(e *audit.Event) bool { return strings.HasPrefix(e.Kind, "agent.") }},
		{"combined", auditexport.Filter{Kinds: []string{"call.*"}, Agents: []string{"mail-bot"}, Decisions: []string{"allow"}, From: t0.Add(6 * time.Minute)},
			func(e *audit.Event) bool {
				return strings.HasPrefix(e.Kind, "call.") && e.Agent == "mail-bot" && e.Decision == "allow" && !e.Time.Before(t0.Add(6*time.Minute))
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := selected(src, &tc.f)
			if len(got) == 0 || len(got) >= len(all) {
				t.Fatalf("Filter %+v selects %d of %d events, want some but not all", tc.f, len(got), len(all))
			}
			n := 0
			for i := range all {
				if tc.want(&all[i]) {
					n++
				}
			}
			for i := range got {
				if !tc.want(&got[i]) {
					t.Errorf("Filter %+v selects %s, which it should not", tc.f, describe(&got[i]))
				}
			}
			if n != len(got) {
				t.Errorf("Filter %+v selects %d events, want %d", tc.f, len(got), n)
			}
		})
	}
	// The combination selects fewer than any of its parts alone.
	combined := selected(src, &auditexport.Filter{Kinds: []string{"call.*"}, Agents: []string{"mail-bot"}, Decisions: []string{"allow"}})
	for _, part := range []auditexport.Filter{{Kinds: []string{"call.*"}}, {Agents: []string{"mail-bot"}}, {Decisions: []string{"allow"}}} {
		if n := len(selected(src, &part)); n <= len(combined) {
			t.Errorf("Filter %+v alone selects %d events, the combination %d; want more", part, n, len(combined))
		}
	}
}

func TestFilterBounds(t *testing.T) {
	t.Parallel()
	at := func(d time.Duration) *audit.Event {
		return &audit.Event{Seq: 5, Kind: audit.KindCallIntent, Time: t0.Add(d)}
	}
	f := auditexport.Filter{From: t0, To: t0.Add(time.Hour)}
	for _, tc := range []struct {
		name string
		e    *audit.Event
		want bool
	}{
		{"at from: inclusive", at(0), true},
		{"just before from", at(-time.Microsecond), false},
		{"inside", at(30 * time.Minute), true},
		{"just before to", at(time.Hour - time.Microsecond), true},
		{"at to: exclusive", at(time.Hour), false},
	} {
		if got := f.Match(tc.e); got != tc.want {
			t.Errorf("%s: Match(%s) = %v, want %v", tc.name, tc.e.Time.Format(time.RFC3339Nano), got, tc.want)
		}
	}
	if !(*auditexport.Filter)(nil).Match(at(0)) {
		t.Errorf("a nil Filter does not match")
	}
	if (&auditexport.Filter{After: 5}).Match(at(0)) {
		t.Errorf("Filter{After: 5} matches event 5")
	}
	if (&auditexport.Filter{Decisions: []string{"allow"}}).Match(at(0)) {
		t.Errorf("a Decisions filter matches an event without a decision")
	}
	if (&auditexport.Filter{Kinds: []string{"call"}}).Match(at(0)) || (&auditexport.Filter{Kinds: []string{"call*"}}).Match(at(0)) {
		t.Errorf("a kind without \".*\" matches as a prefix")
	}
}

func TestFilterValidate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		f  auditexport.Filter
		ok bool
	}{
		{auditexport.Filter{}, true},
		{auditexport.Filter{From: t0, To: t0.Add(time.Second)}, true},
		{auditexport.Filter{From: t0}, true},
		{auditexport.Filter{From: t0, To: t0}, false},
		{auditexport.Filter{From: t0.Add(time.Hour), To: t0}, false},
		{auditexport.Filter{After: -1}, false},
	} {
		if err := tc.f.Validate(); (err == nil) != tc.ok {
			t.Errorf("Filter%+v.Validate() = %v, want ok %v", tc.f, err, tc.ok)
		}
	}
}

func TestParseTime(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		in   string
		want time.Time
	}{
		{"2026-03-01T09:00:00Z", time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)},
		{"2026-03-01T10:00:00+01:00", time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)},
		{"2026-03-01T09:00:00.123456Z", time.Date(2026, 3, 1, 9, 0, 0, 123456000, time.UTC)},
		{"2026-03-01", time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)},
		{"24h", now.Add(-24 * time.Hour)},
		{"1h30m", now.Add(-90 * time.Minute)},
		{"7d", now.Add(-7 * 24 * time.Hour)},
		{"36500d", now.Add(-36500 * 24 * time.Hour)},
	} {
		got, err := auditexport.ParseTime(tc.in, now)
		if err != nil || !got.Equal(tc.want) || got.Location() != time.UTC {
			t.Errorf("ParseTime(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
	for _, in := range []string{
		"", "yesterday", "-24h", "0s", "0d", "d", "7 d", "1.5d", "-7d", "36501d", "876001h",
		"99999999999999999999d", "2026-13-01", "2026-03-01T25:00:00Z", "2026-03-01 09:00:00",
		strings.Repeat("1", 65) + "h",
	} {
		if got, err := auditexport.ParseTime(in, now); err == nil || !errors.Is(err, auditexport.ErrBadTime) {
			t.Errorf("ParseTime(%q) = %v, %v; want an ErrBadTime", in, got, err)
		}
	}
}

func FuzzParseTime(f *testing.F) {
	for _, s := range []string{"2026-03-01T09:00:00Z", "2026-03-01", "24h", "7d", "1h30m", "-1h", "0d", "x", "", "9999-12-31T23:59:59.999999999+14:00"} {
		f.Add(s)
	}
	now := time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, s string) {
		got, err := auditexport.ParseTime(s, now)
		if err != nil {
			if !errors.Is(err, auditexport.ErrBadTime) {
				t.Fatalf("ParseTime(%q) error %v is not an ErrBadTime", s, err)
			}
			return
		}
		if len(s) > 64 {
			t.Fatalf("ParseTime accepted %d bytes", len(s))
		}
		if got.Location() != time.UTC {
			t.Fatalf("ParseTime(%q) = %v, not in UTC", s, got)
		}
		if _, perr := time.Parse(time.RFC3339Nano, s); perr != nil {
			if _, derr := time.Parse(time.DateOnly, s); derr != nil {
				// A duration: strictly before now, at most 100 years.
				if !got.Before(now) || now.Sub(got) > 100*365*24*time.Hour {
					t.Fatalf("ParseTime(%q) = %v, not within 100 years before %v", s, got, now)
				}
			}
		}
	})
}
