package contain

import (
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// blStart is a Monday at midnight UTC, where the tests' clocks start.
var blStart = time.Date(2025, 1, 6, 0, 0, 0, 0, time.UTC)

// blNew returns baselines configured by o whose clock reads *now.
func blNew(t testing.TB, o BaselineOptions, now *time.Time) *Baselines {
	t.Helper()
	o.Now = func() time.Time { return *now }
	b, err := NewBaselines(o)
	if err != nil {
		t.Fatalf("NewBaselines(%+v): %v", o, err)
	}
	return b
}

// blLearn learns n calls, advancing *now by step after each.
func blLearn(b *Baselines, now *time.Time, agent, tool string, args map[string]any, n int, step time.Duration) {
	for range n {
		b.Learn(agent, tool, args)
		*now = now.Add(step)
	}
}

// blHistory gives agent a day of ordinary use: a call of "read" every 6 minutes from
// midnight to midnight, so 10 calls in each UTC hour and 10 calls an hour of "read".
// It leaves *now at the next midnight, where the last hour holds 9 calls.
func blHistory(b *Baselines, now *time.Time, agent string) {
	*now = blStart
	args := map[string]any{"limit": 10.0, "offset": 0.0, "delta": -5.0, "path": "/x", "deep": map[string]any{"n": 1e9}}
	blLearn(b, now, agent, "read", args, 240, 6*time.Minute)
}

func TestNewBaselinesValidates(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		o       BaselineOptions
		wantErr []string
	}{
		{name: "defaults", o: BaselineOptions{}},
		{name: "bounds", o: BaselineOptions{MinCalls: 1_000_000, RateFactor: 1000, MinRate: 1_000_000, RangeFactor: 1.0001, MaxAgents: 1_000_000, MaxToolsPerAgent: 10_000, MaxArgsPerTool: 1000}},
		{name: "MinCalls", o: BaselineOptions{MinCalls: -1}, wantErr: []string{"contain: baselines: MinCalls must be from 1 to 1000000 (0 for 50), got -1"}},
		{name: "MinCalls high", o: BaselineOptions{MinCalls: 1_000_001}, wantErr: []string{"MinCalls must be from 1 to 1000000 (0 for 50), got 1000001"}},
		{name: "RateFactor", o: BaselineOptions{RateFactor: 1}, wantErr: []string{"contain: baselines: RateFactor must be more than 1 and at most 1000 (0 for 5), got 1"}},
		{name: "RateFactor NaN", o: BaselineOptions{RateFactor: math.NaN()}, wantErr: []string{"RateFactor must be more than 1 and at most 1000 (0 for 5), got NaN"}},
		{name: "RateFactor high", o: BaselineOptions{RateFactor: 1000.5}, wantErr: []string{"RateFactor must be more than 1"}},
		{name: "MinRate", o: BaselineOptions{MinRate: -3}, wantErr: []string{"MinRate must be from 1 to 1000000 (0 for 10), got -3"}},
		{name: "RangeFactor", o: BaselineOptions{RangeFactor: -2}, wantErr: []string{"RangeFactor must be more than 1 and at most 1000 (0 for 2), got -2"}},
		{name: "RangeFactor Inf", o: BaselineOptions{RangeFactor: math.Inf(1)}, wantErr: []string{"RangeFactor must be more than 1"}},
		{name: "MaxAgents", o: BaselineOptions{MaxAgents: 1_000_001}, wantErr: []string{"MaxAgents must be from 1 to 1000000 (0 for 10000), got 1000001"}},
		{name: "MaxToolsPerAgent", o: BaselineOptions{MaxToolsPerAgent: -1}, wantErr: []string{"MaxToolsPerAgent must be from 1 to 10000 (0 for 256), got -1"}},
		{name: "MaxArgsPerTool", o: BaselineOptions{MaxArgsPerTool: 1001}, wantErr: []string{"MaxArgsPerTool must be from 1 to 1000 (0 for 32), got 1001"}},
		{
			name:    "all at once",
			o:       BaselineOptions{MinCalls: -1, RateFactor: 0.5, MaxArgsPerTool: -1},
			wantErr: []string{"MinCalls", "RateFactor", "MaxArgsPerTool"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := NewBaselines(tt.o)
			if len(tt.wantErr) == 0 {
				if err != nil || b == nil {
					t.Fatalf("NewBaselines(%+v) = %v, %v, want baselines", tt.o, b, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("NewBaselines(%+v) succeeded, want an error", tt.o)
			}
			for _, want := range tt.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("NewBaselines(%+v) error = %q, want it to contain %q", tt.o, err, want)
				}
			}
		})
	}
}

func TestBaselinesCheck(t *testing.T) {
	t.Parallel()
	// burst learns n more calls of "read" at the current minute.
	burst := func(n int) func(b *Baselines, now *time.Time) {
		return func(b *Baselines, now *time.Time) {
			blLearn(b, now, "agent", "read", nil, n, 0)
		}
	}
	tests := []struct {
		name  string
		o     BaselineOptions
		setup func(b *Baselines, now *time.Time) // after blHistory
		agent string                             // "agent" if empty
		tool  string
		args  map[string]any
		want  []string
	}{
		{name: "ordinary", tool: "read", args: map[string]any{"limit": 10.0, "offset": 3.0}},
		{name: "no args", tool: "read"},
		{name: "unknown agent", agent: "stranger", tool: "delete"},
		{name: "learning", o: BaselineOptions{MinCalls: 241}, tool: "delete", args: map[string]any{"limit": 1e9}},
		{name: "learnt", o: BaselineOptions{MinCalls: 240}, tool: "delete", want: []string{"new_tool"}},

		// With 240 calls over 24h the mean is 10/h; 9 were in the last hour. After k
		// more, the call checked is the (10+k)th of the hour, against 5×(240+k)/24.
		{name: "rate at the threshold", setup: burst(50), tool: "read"},             // 60 <= 60.42
		{name: "rate over", setup: burst(51), tool: "read", want: []string{"rate"}}, // 61 > 60.63
		{name: "rate over by far", setup: burst(500), tool: "read", want: []string{"rate"}},
		{name: "rate below MinRate", o: BaselineOptions{MinRate: 62}, setup: burst(51), tool: "read"},
		{name: "rate at MinRate", o: BaselineOptions{MinRate: 61}, setup: burst(51), tool: "read", want: []string{"rate"}},
		{name: "rate with a higher factor", o: BaselineOptions{RateFactor: 10}, setup: burst(100), tool: "read"},
		{
			name: "rate once the burst is an hour old",
			setup: func(b *Baselines, now *time.Time) {
				burst(500)(b, now)
				*now = now.Add(time.Hour)
			},
			tool: "read",
		},
		{
			// A tool first seen less than an hour ago counts as an hour old, so a
			// steady new tool is not a burst.
			name: "rate of a new tool",
			setup: func(b *Baselines, now *time.Time) {
				blLearn(b, now, "agent", "write", nil, 100, 0)
			},
			tool: "write",
		},

		// 10 of the 240 calls were made in each UTC hour.
		{
			name: "hour at 1%",
			setup: func(b *Baselines, now *time.Time) {
				burst(760)(b, now) // 1000 calls, 10 of them in 05:00-05:59
				*now = now.Add(5 * time.Hour)
			},
			tool: "read",
		},
		{
			name: "hour under 1%",
			setup: func(b *Baselines, now *time.Time) {
				burst(761)(b, now)
				*now = now.Add(5 * time.Hour)
			},
			tool: "read",
			want: []string{"hour"},
		},
		{
			name: "hour and new tool",
			setup: func(b *Baselines, now *time.Time) {
				burst(761)(b, now)
				*now = now.Add(5*time.Hour + 59*time.Minute)
			},
			tool: "delete",
			want: []string{"hour", "new_tool"},
		},
		{
			name: "hour never used",
			setup: func(b *Baselines, now *time.Time) {
				// All 240 calls at 09:00-09:40 UTC; checked at noon the next day.
				*now = blStart.Add(9 * time.Hour)
				blLearn(b, now, "night-owl", "read", nil, 240, 10*time.Second)
				*now = blStart.Add(36 * time.Hour)
			},
			agent: "night-owl",
			tool:  "read",
			want:  []string{"hour"},
		},

		// limit was always 10, offset 0 and delta -5.
		{name: "arg at the range factor", tool: "read", args: map[string]any{"limit": 20.0}},
		{name: "arg over the range factor", tool: "read", args: map[string]any{"limit": 20.5}, want: []string{"arg:limit"}},
		{name: "arg with a higher factor", o: BaselineOptions{RangeFactor: 3}, tool: "read", args: map[string]any{"limit": 30.0}},
		{name: "arg below the smallest", tool: "read", args: map[string]any{"limit": 0.0}},
		{name: "arg negative, none seen", tool: "read", args: map[string]any{"offset": -1.0}, want: []string{"arg:offset"}},
		{name: "arg negative, negatives seen", tool: "read", args: map[string]any{"delta": -1e9}},
		{name: "arg largest not positive", tool: "read", args: map[string]any{"delta": 1e9, "offset": 1e9}},
		{name: "arg not a number", tool: "read", args: map[string]any{"limit": "1000", "offset": true, "delta": nil, "path": []any{1e9}}},
		{name: "arg not finite", tool: "read", args: map[string]any{"limit": math.Inf(1), "offset": math.NaN()}},
		{name: "arg not learnt", tool: "read", args: map[string]any{"size": 1e12, "n": -1.0}},
		{name: "arg nested", tool: "read", args: map[string]any{"deep": map[string]any{"n": 1e12}}},
		{name: "args of another tool", tool: "write", args: map[string]any{"limit": 1e9}, want: []string{"new_tool"}},
		{
			name:  "several, sorted",
			setup: burst(60),
			tool:  "read",
			args:  map[string]any{"limit": 1e6, "offset": -1.0, "delta": 0.0},
			want:  []string{"arg:limit", "arg:offset", "rate"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var now time.Time
			b := blNew(t, tt.o, &now)
			blHistory(b, &now, "agent")
			if tt.setup != nil {
				tt.setup(b, &now)
			}
			agent := tt.agent
			if agent == "" {
				agent = "agent"
			}
			before, _ := b.Profile(agent)
			got := b.Check(agent, tt.tool, tt.args)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Check(%q, %q, %v) mismatch (-want +got):\n%s", agent, tt.tool, tt.args, diff)
			}
			after, _ := b.Profile(agent)
			if diff := cmp.Diff(before, after); diff != "" {
				t.Errorf("Check learned (-before +after):\n%s", diff)
			}
		})
	}
}

func TestBaselinesLearning(t *testing.T) {
	t.Parallel()
	now := blStart
	b := blNew(t, BaselineOptions{MinCalls: 3}, &now)
	if got := b.Check("a", "t", nil); got != nil {
		t.Errorf("Check of an unknown agent = %v, want nil", got)
	}
	if _, ok := b.Profile("a"); ok {
		t.Errorf("Profile of an unknown agent found")
	}
	for i := 1; i <= 3; i++ {
		if got := b.Check("a", "u", nil); got != nil {
			t.Errorf("Check after %d calls = %v, want nil while learning", i-1, got)
		}
		b.Learn("a", "t", map[string]any{"n": float64(i)})
		p, ok := b.Profile("a")
		if !ok || p.Calls != i || p.Learning != (i < 3) {
			t.Errorf("Profile after %d calls = %+v, %v, want %d calls, learning %v", i, p, ok, i, i < 3)
		}
	}
	want := Profile{
		Calls:     3,
		FirstSeen: blStart,
		Tools:     map[string]int{"t": 3},
		Hours:     [24]int{3},
		Args:      map[string]map[string]ProfileRange{"t": {"n": {Min: 1, Max: 3}}},
	}
	p, _ := b.Profile("a")
	if diff := cmp.Diff(want, p); diff != "" {
		t.Errorf("Profile mismatch (-want +got):\n%s", diff)
	}
	if got := b.Check("a", "u", nil); !cmp.Equal(got, []string{"new_tool"}) {
		t.Errorf("Check after learning = %v, want [new_tool]", got)
	}
}

func TestBaselinesBounds(t *testing.T) {
	t.Parallel()
	now := blStart
	b := blNew(t, BaselineOptions{MinCalls: 1, MaxAgents: 2, MaxToolsPerAgent: 2, MaxArgsPerTool: 2}, &now)

	b.Learn("a", "t1", nil)
	b.Learn("b", "t1", nil)
	b.Learn("c", "t1", nil)
	if _, ok := b.Profile("c"); ok {
		t.Errorf("agent beyond MaxAgents learned")
	}
	if got := b.Check("c", "t9", nil); got != nil {
		t.Errorf("Check of an agent beyond MaxAgents = %v, want nil", got)
	}
	data, _ := b.Encode("a")
	if err := b.Restore("c", data); err == nil || !strings.Contains(err.Error(), "MaxAgents (2)") {
		t.Errorf("Restore of an agent beyond MaxAgents: %v, want an error naming MaxAgents", err)
	}
	if _, ok := b.Profile("c"); ok {
		t.Errorf("refused Restore added the agent")
	}

	for _, tool := range []string{"t2", "t3", "t3", "t4"} {
		b.Learn("a", tool, nil)
	}
	p, _ := b.Profile("a")
	if diff := cmp.Diff(map[string]int{"t1": 1, "t2": 1}, p.Tools); diff != "" || p.Calls != 5 {
		t.Errorf("Profile with MaxToolsPerAgent 2 has %d calls, tools mismatch (-want +got):\n%s", p.Calls, diff)
	}
	if got := b.Check("a", "t3", nil); !cmp.Equal(got, []string{"new_tool"}) {
		t.Errorf("Check of a tool beyond MaxToolsPerAgent = %v, want [new_tool]", got)
	}

	b.Learn("b", "t1", map[string]any{"x": 1.0, "y": 2.0, "z": 3.0})
	b.Learn("b", "t1", map[string]any{"x": 4.0, "y": 5.0, "z": 6.0})
	p, _ = b.Profile("b")
	if n := len(p.Args["t1"]); n != 2 {
		t.Errorf("Profile with MaxArgsPerTool 2 tracks %d args: %v", n, p.Args)
	}
	for name, r := range p.Args["t1"] {
		if r.Max-r.Min != 3 {
			t.Errorf("argument %q has range %v, want both calls learned", name, r)
		}
	}

	// Names that are too long or not UTF-8 are not learned.
	long := strings.Repeat("x", 257)
	b.Learn("b", long, map[string]any{long: 1.0})
	b.Learn("b", "t1", map[string]any{long: 1.0, "\xff": 1.0})
	b.Learn("b", "\xff", nil)
	p, _ = b.Profile("b")
	if diff := cmp.Diff(map[string]int{"t1": 4}, p.Tools); diff != "" || p.Calls != 6 || len(p.Args["t1"]) != 2 {
		t.Errorf("Profile after calls with bad names: %d calls, args %v, tools mismatch (-want +got):\n%s", p.Calls, p.Args, diff)
	}
	if got := b.Check("b", long, nil); !cmp.Equal(got, []string{"new_tool"}) {
		t.Errorf("Check of a tool with too long a name = %v, want [new_tool]", got)
	}
	b2 := blNew(t, BaselineOptions{}, &now)
	b2.Learn(long, "t", nil)
	b2.Learn("\xff", "t", nil)
	b2.Learn(strings.Repeat("x", 256), "t", nil)
	if d := b2.Dirty(); len(d) != 1 {
		t.Errorf("learned agents %q, want only the one with a 256-byte name", d)
	}
}

func TestBaselinesEncodeRestore(t *testing.T) {
	t.Parallel()
	now := blStart
	b := blNew(t, BaselineOptions{MinCalls: 10}, &now)
	if _, ok := b.Encode("a"); ok {
		t.Errorf("Encode of an unknown agent succeeded")
	}
	blHistory(b, &now, "a")
	blLearn(b, &now, "a", "write", map[string]any{"size": 1e6, "mode": -1.5, "name": "x"}, 5, time.Minute)
	b.Learn("a", "<&\u2028 odd \"name\"\n", map[string]any{"é": 0.0, "-0": math.Copysign(0, -1)})
	blLearn(b, &now, "a", "read", nil, 100, time.Second) // a burst in the last hour
	data, ok := b.Encode("a")
	if !ok {
		t.Fatalf("Encode failed")
	}
	want, _ := b.Profile("a")

	for _, into := range []struct {
		name  string
		setup func(b *Baselines)
	}{
		{name: "new agent"},
		{name: "replacing", setup: func(b *Baselines) { blLearn(b, &now, "a", "other", map[string]any{"x": 1.0}, 300, 0) }},
	} {
		t.Run(into.name, func(t *testing.T) {
			b2 := blNew(t, BaselineOptions{MinCalls: 10}, &now)
			if into.setup != nil {
				into.setup(b2)
			}
			if err := b2.Restore("a", data); err != nil {
				t.Fatalf("Restore(Encode()): %v", err)
			}
			got, ok := b2.Profile("a")
			if diff := cmp.Diff(want, got); diff != "" || !ok {
				t.Errorf("Profile after Restore mismatch (-want +got):\n%s", diff)
			}
			if d := b2.Dirty(); len(d) != 0 {
				t.Errorf("Dirty after Restore = %q, want none", d)
			}
			// The last hour's calls came along: the burst still shows as a rate.
			for _, args := range []map[string]any{nil, {"size": 3e6}, {"mode": -1e9}} {
				for _, tool := range []string{"read", "write", "delete"} {
					w, g := b.Check("a", tool, args), b2.Check("a", tool, args)
					if !cmp.Equal(w, g) {
						t.Errorf("Check(%q, %v) after Restore = %v, want %v", tool, args, g, w)
					}
				}
			}
			if got := b2.Check("a", "read", nil); !cmp.Equal(got, []string{"rate"}) {
				t.Errorf("Check of the burst after Restore = %v, want [rate]", got)
			}
			again, _ := b2.Encode("a")
			if string(again) != string(data) {
				t.Errorf("Encode after Restore differs:\n%s\nwant\n%s", again, data)
			}
		})
	}
}

func TestBaselinesRestoreRejects(t *testing.T) {
	t.Parallel()
	now := blStart.Add(30 * time.Minute)
	o := BaselineOptions{MaxToolsPerAgent: 3, MaxArgsPerTool: 2}
	src := blNew(t, o, &now)
	src.Learn("a", "t1", map[string]any{"x": 1.0, "y": 2.0})
	src.Learn("a", "t1", nil)
	now = now.Add(time.Minute)
	src.Learn("a", "t1", nil)
	src.Learn("a", "t2", nil)
	valid, _ := src.Encode("a")

	// mutate returns valid with f applied to its decoded form.
	mutate := func(f func(m map[string]any)) string {
		var m map[string]any
		if err := json.Unmarshal(valid, &m); err != nil {
			t.Fatal(err)
		}
		f(m)
		data, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return string(data)
	}
	tool := func(m map[string]any, name string) map[string]any {
		return m["tools"].(map[string]any)[name].(map[string]any)
	}
	recent := func(m map[string]any) []any { return tool(m, "t1")["recent"].([]any) }
	long := strings.Repeat("x", 257)

	tests := []struct {
		name    string
		agent   string // "a" if empty
		data    string
		wantErr string
	}{
		{name: "empty", data: "", wantErr: "decode: EOF"},
		{name: "not JSON", data: "{", wantErr: "decode: unexpected EOF"},
		{name: "not an object", data: "[]", wantErr: "decode: json: cannot unmarshal array"},
		{name: "null", data: "null", wantErr: "version must be 1, got 0"},
		{name: "trailing data", data: string(valid) + " {}", wantErr: "data after the baseline"},
		{name: "trailing bracket", data: string(valid) + "]", wantErr: "data after the baseline"},
		{name: "too large", data: string(valid) + strings.Repeat(" ", 2<<20), wantErr: "encoding must be at most"},
		{name: "unknown field", data: mutate(func(m map[string]any) { m["extra"] = 1 }), wantErr: `unknown field "extra"`},
		{name: "version", data: mutate(func(m map[string]any) { m["version"] = 2 }), wantErr: "version must be 1, got 2"},
		{name: "calls zero", data: mutate(func(m map[string]any) { m["calls"] = 0 }), wantErr: "calls must be from 1 to 9007199254740992, got 0"},
		{name: "calls huge", data: mutate(func(m map[string]any) { m["calls"] = 1 << 60 }), wantErr: "calls must be from 1 to"},
		{name: "calls fractional", data: mutate(func(m map[string]any) { m["calls"] = 4.5 }), wantErr: "cannot unmarshal number 4.5"},
		{name: "calls string", data: mutate(func(m map[string]any) { m["calls"] = "4" }), wantErr: "cannot unmarshal string"},
		{name: "first_seen missing", data: mutate(func(m map[string]any) { delete(m, "first_seen") }), wantErr: "first_seen is missing"},
		{name: "first_seen bad", data: mutate(func(m map[string]any) { m["first_seen"] = "yesterday" }), wantErr: "decode: parsing time"},
		{name: "first_seen year -1 UTC", data: mutate(func(m map[string]any) { m["first_seen"] = "0000-01-01T00:00:00+01:00" }), wantErr: "first_seen must be in the years 0 to 9999 UTC, got -1"},
		{name: "hours missing", data: mutate(func(m map[string]any) { delete(m, "hours") }), wantErr: "hours must have 24 entries (UTC hours 0 to 23), got 0"},
		{name: "hours 25", data: mutate(func(m map[string]any) { m["hours"] = append(m["hours"].([]any), 0) }), wantErr: "hours must have 24 entries (UTC hours 0 to 23), got 25"},
		{name: "hours negative", data: mutate(func(m map[string]any) { m["hours"].([]any)[3] = -1 }), wantErr: "hours[3] must be from 0 to calls (4), got -1"},
		{name: "hours sum", data: mutate(func(m map[string]any) { m["hours"].([]any)[3] = 1 }), wantErr: "hours must add up to calls (4), got 5"},
		{name: "tools too many", data: mutate(func(m map[string]any) {
			for _, n := range []string{"t3", "t4"} {
				m["tools"].(map[string]any)[n] = map[string]any{"calls": 0, "first_seen": "2025-01-06T00:00:00Z"}
			}
		}), wantErr: "tools must number at most MaxToolsPerAgent (3), got 4"},
		{name: "tool null", data: mutate(func(m map[string]any) { m["tools"].(map[string]any)["t3"] = nil }), wantErr: `tools["t3"].calls must be from 1 to the 0 calls not counted by other tools, got 0`},
		{name: "tool calls zero", data: mutate(func(m map[string]any) { tool(m, "t2")["calls"] = 0 }), wantErr: `tools["t2"].calls must be from 1 to the 1 calls not counted by other tools, got 0`},
		{name: "tool calls over", data: mutate(func(m map[string]any) { tool(m, "t2")["calls"] = 2 }), wantErr: `tools["t2"].calls must be from 1 to the 1 calls`},
		{name: "tool name long", data: mutate(func(m map[string]any) { m["tools"].(map[string]any)[long] = tool(m, "t2") }), wantErr: "name must be at most 256 bytes"},
		{name: "tool first_seen missing", data: mutate(func(m map[string]any) { delete(tool(m, "t2"), "first_seen") }), wantErr: `tools["t2"].first_seen is missing`},
		{name: "tool unknown field", data: mutate(func(m map[string]any) { tool(m, "t2")["rate"] = 1 }), wantErr: `unknown field "rate"`},
		{name: "recent out of order", data: mutate(func(m map[string]any) {
			r := recent(m)
			r[0], r[1] = r[1], r[0]
		}), wantErr: `tools["t1"].recent[1].minute must be after the one before`},
		{name: "recent duplicate", data: mutate(func(m map[string]any) {
			r := recent(m)
			r[1].(map[string]any)["minute"] = r[0].(map[string]any)["minute"]
		}), wantErr: `tools["t1"].recent[1].minute must be after the one before`},
		{name: "recent over an hour", data: mutate(func(m map[string]any) {
			r := recent(m)
			r[1].(map[string]any)["minute"] = r[0].(map[string]any)["minute"].(float64) + 60
		}), wantErr: `tools["t1"].recent[1].minute must be within an hour of the first`},
		{name: "recent minute far", data: mutate(func(m map[string]any) { recent(m)[0].(map[string]any)["minute"] = -(1 << 41) }), wantErr: "recent[0].minute must be from -1099511627776 to 1099511627776"},
		{name: "recent calls zero", data: mutate(func(m map[string]any) { recent(m)[0].(map[string]any)["calls"] = 0 }), wantErr: `tools["t1"].recent[0].calls must be from 1 to the tool's 3 calls not counted in other minutes, got 0`},
		{name: "recent calls over", data: mutate(func(m map[string]any) { recent(m)[1].(map[string]any)["calls"] = 2 }), wantErr: `tools["t1"].recent[1].calls must be from 1 to the tool's 1 calls`},
		{name: "recent too many", data: mutate(func(m map[string]any) {
			r := make([]any, 61)
			for i := range r {
				r[i] = map[string]any{"minute": i, "calls": 1}
			}
			tool(m, "t1")["recent"] = r
		}), wantErr: "recent must have at most 60 minutes, got 61"},
		{name: "args too many", data: mutate(func(m map[string]any) {
			tool(m, "t1")["args"].(map[string]any)["z"] = map[string]any{"min": 1, "max": 1}
		}), wantErr: `tools["t1"].args must number at most MaxArgsPerTool (2), got 3`},
		{name: "arg min over max", data: mutate(func(m map[string]any) {
			tool(m, "t1")["args"].(map[string]any)["x"] = map[string]any{"min": 2, "max": 1}
		}), wantErr: `tools["t1"].args["x"] must have finite min <= max, got 2 and 1`},
		{name: "arg not a number", data: mutate(func(m map[string]any) {
			tool(m, "t1")["args"].(map[string]any)["x"] = map[string]any{"min": "1", "max": 1}
		}), wantErr: "cannot unmarshal string"},
		{name: "arg out of range", data: strings.Replace(string(valid), `"max":1`, `"max":1e999`, 1), wantErr: "cannot unmarshal number 1e999"},
		{name: "arg name long", data: mutate(func(m map[string]any) {
			a := tool(m, "t1")["args"].(map[string]any)
			a[long] = a["x"]
			delete(a, "x")
		}), wantErr: "name must be at most 256 bytes"},
		{name: "agent name long", agent: long, data: string(valid), wantErr: "agent name must be valid UTF-8 of at most 256 bytes"},
		{name: "agent name not UTF-8", agent: "\xff", data: string(valid), wantErr: "agent name must be valid UTF-8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			agent := tt.agent
			if agent == "" {
				agent = "a"
			}
			now := now
			b := blNew(t, o, &now)
			b.Learn("a", "other", map[string]any{"q": 7.0})
			b.Learn("b", "other", nil)
			before, _ := b.Profile("a")
			err := b.Restore(agent, []byte(tt.data))
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Restore(%q, %.200s) = %v, want an error containing %q", agent, tt.data, err, tt.wantErr)
			}
			if !strings.HasPrefix(err.Error(), "contain: baselines: restore ") {
				t.Errorf("Restore error %q lacks its prefix", err)
			}
			after, _ := b.Profile("a")
			if diff := cmp.Diff(before, after); diff != "" {
				t.Errorf("refused Restore changed the profile (-before +after):\n%s", diff)
			}
			if got := b.Dirty(); !cmp.Equal(got, []string{"a", "b"}) {
				t.Errorf("Dirty after a refused Restore = %q, want [a b]", got)
			}
		})
	}
	// The valid encoding itself is accepted, with the same bounds.
	b := blNew(t, o, &now)
	if err := b.Restore("a", valid); err != nil {
		t.Errorf("Restore(valid): %v", err)
	}
}

func TestBaselinesDirty(t *testing.T) {
	t.Parallel()
	now := blStart
	b := blNew(t, BaselineOptions{}, &now)
	if d := b.Dirty(); d != nil {
		t.Errorf("Dirty of empty baselines = %q, want nil", d)
	}
	b.Learn("b", "t", nil)
	b.Learn("a", "t", nil)
	if d := b.Dirty(); !cmp.Equal(d, []string{"a", "b"}) {
		t.Errorf("Dirty = %q, want [a b]", d)
	}
	if d := b.Dirty(); d != nil {
		t.Errorf("second Dirty = %q, want nil", d)
	}
	b.Learn("a", "t", nil)
	b.Check("b", "t", nil)
	b.Profile("b")
	if d := b.Dirty(); !cmp.Equal(d, []string{"a"}) {
		t.Errorf("Dirty after learning a and checking b = %q, want [a]", d)
	}
	b.Learn("a", "t", nil)
	b.Learn("b", "t", nil)
	data, _ := b.Encode("a")
	if d := b.Dirty(); !cmp.Equal(d, []string{"b"}) {
		t.Errorf("Dirty after encoding a = %q, want [b]", d)
	}
	b.Learn("a", "t", nil)
	if err := b.Restore("a", data); err != nil {
		t.Fatal(err)
	}
	if d := b.Dirty(); d != nil {
		t.Errorf("Dirty after restoring a = %q, want nil", d)
	}
}

func TestBaselinesConcurrent(t *testing.T) {
	t.Parallel()
	var clock atomic.Int64
	now := func() time.Time { return blStart.Add(time.Duration(clock.Add(int64(time.Second)))) }
	b, err := NewBaselines(BaselineOptions{MinCalls: 10, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	const (
		agents  = 8
		workers = 16
		calls   = 200
	)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range calls {
				agent := fmt.Sprint("a", (w+i)%agents)
				args := map[string]any{"n": float64(i), "s": "x"}
				tool := fmt.Sprint("t", i%5)
				b.Check(agent, tool, args)
				b.Learn(agent, tool, args)
			}
		})
	}
	var stop atomic.Bool
	var readers sync.WaitGroup
	readers.Go(func() {
		for !stop.Load() {
			for a := range agents {
				b.Profile(fmt.Sprint("a", a))
			}
			b.Dirty()
		}
	})
	readers.Go(func() {
		b.Learn("r", "t", map[string]any{"n": 1.0})
		for !stop.Load() {
			data, ok := b.Encode("r")
			if !ok {
				t.Error("Encode(r) failed")
				return
			}
			if err := b.Restore("r", data); err != nil {
				t.Errorf("Restore(r, Encode(r)): %v", err)
				return
			}
			b.Learn("r", "t", map[string]any{"n": 2.0})
		}
	})
	wg.Wait()
	stop.Store(true)
	readers.Wait()

	total := 0
	for a := range agents {
		p, ok := b.Profile(fmt.Sprint("a", a))
		if !ok {
			t.Fatalf("agent a%d missing", a)
		}
		sum, tools := 0, 0
		for _, n := range p.Hours {
			sum += n
		}
		for _, n := range p.Tools {
			tools += n
		}
		if sum != p.Calls || tools != p.Calls {
			t.Errorf("a%d: %d calls, %d by hour, %d by tool", a, p.Calls, sum, tools)
		}
		total += p.Calls
	}
	if total != workers*calls {
		t.Errorf("learned %d calls, want %d", total, workers*calls)
	}
}

func FuzzBaselineRestore(f *testing.F) {
	now := blStart
	src, err := NewBaselines(BaselineOptions{Now: func() time.Time { return now }})
	if err != nil {
		f.Fatal(err)
	}
	blHistory(src, &now, "a")
	blLearn(src, &now, "a", "write", map[string]any{"size": 1e6, "mode": -1.5}, 5, time.Minute)
	blLearn(src, &now, "a", "read", nil, 3, time.Second)
	data, _ := src.Encode("a")
	f.Add(data)
	f.Add([]byte(`{"version":1,"calls":1,"first_seen":"2025-01-06T00:00:00Z","hours":[1,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0],"tools":{"t":{"calls":1,"first_seen":"2025-01-06T00:00:00Z","recent":[{"minute":29000000,"calls":1}],"args":{"n":{"min":-1,"max":2.5}}}}}`))
	f.Add([]byte(`{"version":1,"calls":2,"first_seen":"0000-01-01T00:00:00Z","hours":[0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,2],"tools":null}`))
	f.Add([]byte(`{"version":1,"calls":1,"first_seen":"2025-01-06T00:00:00+01:00","hours":[0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,1],"tools":{"\u2028<":{"calls":1,"first_seen":"9999-12-31T23:59:59.999999999Z","args":{"-0":{"min":-0,"max":0}}}}}`))
	f.Add([]byte(`{"version":1}`))
	f.Add([]byte(`null`))
	f.Add([]byte(`{`))
	opts := BaselineOptions{MaxToolsPerAgent: 4, MaxArgsPerTool: 4, Now: func() time.Time { return now }}
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := NewBaselines(opts)
		if err != nil {
			t.Fatal(err)
		}
		b.Learn("a", "before", map[string]any{"n": 1.0})
		before, _ := b.Profile("a")
		if err := b.Restore("a", data); err != nil {
			after, _ := b.Profile("a")
			if diff := cmp.Diff(before, after); diff != "" {
				t.Fatalf("refused Restore changed the profile (-before +after):\n%s", diff)
			}
			return
		}
		p1, ok := b.Profile("a")
		if !ok {
			t.Fatal("Profile after Restore: not found")
		}
		enc, ok := b.Encode("a")
		if !ok {
			t.Fatalf("Encode after Restore(%q) failed", data)
		}
		b2, _ := NewBaselines(opts)
		if err := b2.Restore("a", enc); err != nil {
			t.Fatalf("Restore(Encode(Restore(%q))) = %v", data, err)
		}
		p2, _ := b2.Profile("a")
		if diff := cmp.Diff(p1, p2); diff != "" {
			t.Fatalf("round trip of %q changed the profile (-first +second):\n%s", data, diff)
		}
		// Using a restored baseline must not panic either.
		b2.Check("a", "t", map[string]any{"n": 1e300, "m": -1e300})
		b2.Learn("a", "t", map[string]any{"n": 1e300})
	})
}

// blBench returns baselines with an agent that has learned a week of calls to ten
// tools, and the arguments of an ordinary call.
func blBench(b *testing.B) (*Baselines, map[string]any) {
	bl, err := NewBaselines(BaselineOptions{})
	if err != nil {
		b.Fatal(err)
	}
	args := map[string]any{"limit": 10.0, "offset": 0.0, "page": 3.0, "path": "/srv/data", "recursive": true}
	for i := range 1000 {
		bl.Learn("agent", fmt.Sprint("tool-", i%10), args)
	}
	return bl, args
}

func BenchmarkBaselineCheck(b *testing.B) {
	bl, args := blBench(b)
	b.ReportAllocs()
	for b.Loop() {
		bl.Check("agent", "tool-3", args)
	}
}

func BenchmarkBaselineLearn(b *testing.B) {
	bl, args := blBench(b)
	b.ReportAllocs()
	for b.Loop() {
		bl.Learn("agent", "tool-3", args)
	}
}
