package contain

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// The ways a call can deviate from its agent's baseline, as [Baselines.Check] reports
// them. A numeric argument out of its usual range is reported as
// DeviationArgPrefix followed by the argument's name.
const (
	DeviationNewTool   = "new_tool"
	DeviationRate      = "rate"
	DeviationHour      = "hour"
	DeviationArgPrefix = "arg:"
)

const (
	blDefaultMinCalls    = 50
	blMaxMinCalls        = 1_000_000
	blDefaultRateFactor  = 5
	blDefaultMinRate     = 10
	blMaxMinRate         = 1_000_000
	blDefaultRangeFactor = 2
	blMaxFactor          = 1000
	blDefaultMaxAgents   = 10_000
	blMaxAgents          = 1_000_000
	blDefaultMaxTools    = 256
	blMaxTools           = 10_000
	blDefaultMaxArgs     = 32
	blMaxArgs            = 1_000

	// blMaxName bounds agent, tool and argument names held in a baseline, so that
	// memory is bounded by the counts above.
	blMaxName = 256
	// blMaxCount bounds every counter: an agent stops learning there, which keeps
	// sums of counters from overflowing and counts exact in JSON readers that use
	// doubles.
	blMaxCount = 1 << 53
	// blMaxMinute bounds the Unix minutes read by Restore (about two million years
	// either side of 1970) so that differences between them cannot overflow.
	blMaxMinute = 1 << 40
	// blVersion is the version of the encoding written by Encode.
	blVersion = 1
)

// BaselineOptions configures [NewBaselines]. A zero field takes its default.
type BaselineOptions struct {
	// MinCalls is how many calls an agent makes before its baseline is used: until
	// then it is learning and Check reports nothing for it. Default 50; 1 to
	// 1,000,000.
	MinCalls int
	// RateFactor: a call deviates as "rate" when the agent's calls of the tool in the
	// last hour, this one included, are more than RateFactor times the agent's mean
	// hourly rate for that tool (and at least MinRate). Default 5; more than 1, at
	// most 1000.
	RateFactor float64
	// MinRate is the fewest calls of a tool in the last hour that can deviate as
	// "rate", so that quiet tools do not alarm on a handful of calls. Default 10; 1 to
	// 1,000,000.
	MinRate int
	// RangeFactor: a numeric top-level argument deviates as "arg:<name>" when it is
	// more than RangeFactor times the largest value seen for it (if that is more than
	// 0), or negative when no value seen for it was. Default 2; more than 1, at most
	// 1000.
	RangeFactor float64
	// MaxAgents bounds the agents whose baselines are held. Past it a new agent is
	// not learned and Check reports nothing for it, since there is no baseline to
	// compare with: size it above the number of agents expected. Default 10,000; 1 to
	// 1,000,000.
	MaxAgents int
	// MaxToolsPerAgent bounds the tools learned per agent. Further tools are not
	// learned, so calls to them keep being reported as "new_tool". Default 256; 1 to
	// 10,000.
	MaxToolsPerAgent int
	// MaxArgsPerTool bounds the numeric arguments whose ranges are learned per tool;
	// further ones are ignored. Default 32; 1 to 1,000.
	MaxArgsPerTool int
	// Now is the clock; time.Now if nil.
	Now func() time.Time
}

// Baselines learns what each agent's calls normally look like (which tools, how often,
// at what hours, with what numeric arguments) and reports calls that deviate from it.
// A deviation is a signal for a human or a breaker, not a verdict: Check reports, it
// does not refuse. It is safe for concurrent use; each agent's baseline has its own
// lock, so agents do not contend.
//
// Memory is bounded by the options, at about MaxAgents × MaxToolsPerAgent × (1 KiB +
// MaxArgsPerTool × 300 bytes) at worst. Agent, tool and argument names longer than
// 256 bytes or not valid UTF-8 are not learned (they could not be stored faithfully
// as JSON): such an agent is unknown, such a tool is always new, such an argument is
// ignored. Baselines live in memory; [Baselines.Dirty], [Baselines.Encode] and
// [Baselines.Restore] let the caller persist them. Create them with [NewBaselines];
// the zero value is not usable.
type Baselines struct {
	o          BaselineOptions // with defaults applied
	maxEncoded int             // the most bytes Restore reads

	// mu guards the agents map, not the agents in it, which have their own locks. An
	// agent is never removed, and is only added with its first call learned, so every
	// agent in the map has made at least one call.
	mu     sync.RWMutex
	agents map[string]*blAgent
}

// blAgent is one agent's baseline.
type blAgent struct {
	// mu guards every field below.
	mu        sync.Mutex
	calls     int
	firstSeen time.Time // UTC
	hours     [24]int   // calls by UTC hour of day
	tools     map[string]*blTool
	dirty     bool // changed since last encoded
}

// blTool is one agent's use of one tool.
type blTool struct {
	calls     int
	firstSeen time.Time // UTC
	// counts[i] is the number of calls in the Unix minute minutes[i]. Slot i holds a
	// minute congruent to i mod 60, so the slots cover the last hour, and a slot whose
	// minute is over an hour old counts nothing.
	minutes [60]int64
	counts  [60]int
	args    map[string]ProfileRange
}

// Profile is an agent's baseline as operators see it.
type Profile struct {
	// Calls is how many calls the agent has made (as far as learned).
	Calls int `json:"calls"`
	// FirstSeen is when its first call was learned.
	FirstSeen time.Time `json:"first_seen"`
	// Learning is true while Calls is below MinCalls: no deviation is reported yet.
	Learning bool `json:"learning"`
	// Tools maps each learned tool to how many calls the agent made to it.
	Tools map[string]int `json:"tools"`
	// Hours is how many calls were made in each UTC hour of the day.
	Hours [24]int `json:"hours"`
	// Args maps a tool to the ranges of its numeric arguments seen so far; tools
	// without numeric arguments are left out.
	Args map[string]map[string]ProfileRange `json:"args"`
}

// ProfileRange is the smallest and largest value seen for a numeric argument.
type ProfileRange struct {
	Min float64 `json:"min"`
	Max float64 `json:"max"`
}

// NewBaselines returns empty baselines configured by o. It reports every option out
// of bounds at once.
func NewBaselines(o BaselineOptions) (*Baselines, error) {
	var errs []error
	intOpt := func(v *int, name string, def, hi int) {
		if *v == 0 {
			*v = def
		}
		if *v < 1 || *v > hi {
			errs = append(errs, fmt.Errorf("contain: baselines: %s must be from 1 to %d (0 for %d), got %d", name, hi, def, *v))
		}
	}
	factorOpt := func(v *float64, name string, def float64) {
		if *v == 0 {
			*v = def
		}
		if !(*v > 1 && *v <= blMaxFactor) {
			errs = append(errs, fmt.Errorf("contain: baselines: %s must be more than 1 and at most %d (0 for %g), got %g", name, blMaxFactor, def, *v))
		}
	}
	intOpt(&o.MinCalls, "MinCalls", blDefaultMinCalls, blMaxMinCalls)
	factorOpt(&o.RateFactor, "RateFactor", blDefaultRateFactor)
	intOpt(&o.MinRate, "MinRate", blDefaultMinRate, blMaxMinRate)
	factorOpt(&o.RangeFactor, "RangeFactor", blDefaultRangeFactor)
	intOpt(&o.MaxAgents, "MaxAgents", blDefaultMaxAgents, blMaxAgents)
	intOpt(&o.MaxToolsPerAgent, "MaxToolsPerAgent", blDefaultMaxTools, blMaxTools)
	intOpt(&o.MaxArgsPerTool, "MaxArgsPerTool", blDefaultMaxArgs, blMaxArgs)
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Baselines{o: o, maxEncoded: blMaxEncoded(o), agents: map[string]*blAgent{}}, nil
}

// Check returns the ways a call of tool with args by agent deviates from the agent's
// baseline, sorted: "new_tool" when the agent has never called the tool; "rate" when
// the tool's calls in the last hour, this one included, exceed the agent's usual
// rate (see [BaselineOptions]); "hour" when fewer than 1% of the agent's calls were
// made in the current UTC hour of day; "arg:<name>" for each numeric argument outside
// its usual range. It returns nil when the call deviates in no way, and while the
// agent is learning or unknown. Check does not learn: call [Baselines.Learn] for that.
//
// args is a call's arguments as decoded by encoding/json; only top-level float64
// values are numeric arguments, and only those already learned are checked.
func (b *Baselines) Check(agent, tool string, args map[string]any) []string {
	a := b.agent(agent)
	if a == nil {
		return nil
	}
	now := b.o.Now()
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.calls < b.o.MinCalls {
		return nil
	}
	var out []string
	if a.hours[now.UTC().Hour()]*100 < a.calls {
		out = append(out, DeviationHour)
	}
	t := a.tools[tool]
	if t == nil {
		out = append(out, DeviationNewTool)
		slices.Sort(out)
		return out
	}
	if n := t.recent(blMinute(now)) + 1; n >= b.o.MinRate && float64(n) > b.o.RateFactor*t.hourlyMean(now) {
		out = append(out, DeviationRate)
	}
	// Ranging over what was learned, not over args, bounds the work whatever the
	// call carries.
	for name, r := range t.args {
		v, ok := args[name].(float64)
		if !ok || !blFinite(v) {
			continue
		}
		if (r.Max > 0 && v > b.o.RangeFactor*r.Max) || (v < 0 && r.Min >= 0) {
			out = append(out, DeviationArgPrefix+name)
		}
	}
	slices.Sort(out)
	return out
}

// Learn adds a call of tool with args by agent to the agent's baseline. A new agent
// is not learned once MaxAgents are held; see [BaselineOptions] for the other bounds.
func (b *Baselines) Learn(agent, tool string, args map[string]any) {
	if !blNameOK(agent) {
		return
	}
	now := b.o.Now()
	a := b.agent(agent)
	if a == nil {
		b.mu.Lock()
		if a = b.agents[agent]; a == nil {
			if len(b.agents) >= b.o.MaxAgents {
				b.mu.Unlock()
				return
			}
			// Publish the agent locked, so that nobody sees it before its first
			// call is learned.
			a = &blAgent{firstSeen: now.UTC(), tools: map[string]*blTool{}}
			a.mu.Lock()
			b.agents[strings.Clone(agent)] = a
			b.mu.Unlock()
			defer a.mu.Unlock()
			a.learn(&b.o, now, tool, args)
			return
		}
		b.mu.Unlock()
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.learn(&b.o, now, tool, args)
}

// learn adds a call at now. a.mu must be held.
func (a *blAgent) learn(o *BaselineOptions, now time.Time, tool string, args map[string]any) {
	if a.calls >= blMaxCount {
		return
	}
	now = now.UTC()
	a.calls++
	a.hours[now.Hour()]++
	a.dirty = true
	t := a.tools[tool]
	if t == nil {
		if len(a.tools) >= o.MaxToolsPerAgent || !blNameOK(tool) {
			return
		}
		t = &blTool{firstSeen: now, args: map[string]ProfileRange{}}
		a.tools[strings.Clone(tool)] = t
	}
	t.calls++
	m := blMinute(now)
	if i := blSlot(m); t.minutes[i] != m {
		t.minutes[i], t.counts[i] = m, 1
	} else {
		t.counts[i]++
	}
	for name, v := range args {
		f, ok := v.(float64)
		if !ok || !blFinite(f) {
			continue
		}
		r, ok := t.args[name]
		if !ok {
			if len(t.args) < o.MaxArgsPerTool && blNameOK(name) {
				t.args[strings.Clone(name)] = ProfileRange{Min: f, Max: f}
			}
			continue
		}
		t.args[name] = ProfileRange{Min: min(r.Min, f), Max: max(r.Max, f)}
	}
}

// recent returns the calls in the hour up to minute m. The caller holds the agent's
// lock.
func (t *blTool) recent(m int64) int {
	n := 0
	for i, c := range t.counts {
		if d := m - t.minutes[i]; c > 0 && d >= 0 && d < 60 {
			n += c
		}
	}
	return n
}

// hourlyMean returns the tool's mean calls per hour since first seen, counting less
// than an hour as one so that a tool just adopted does not look like a burst.
func (t *blTool) hourlyMean(now time.Time) float64 {
	return float64(t.calls) / max(1, now.Sub(t.firstSeen).Hours())
}

// Profile returns the agent's baseline, or false if the agent is unknown.
func (b *Baselines) Profile(agent string) (Profile, bool) {
	a := b.agent(agent)
	if a == nil {
		return Profile{}, false
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	p := Profile{
		Calls:     a.calls,
		FirstSeen: a.firstSeen,
		Learning:  a.calls < b.o.MinCalls,
		Tools:     make(map[string]int, len(a.tools)),
		Hours:     a.hours,
		Args:      map[string]map[string]ProfileRange{},
	}
	for name, t := range a.tools {
		p.Tools[name] = t.calls
		if len(t.args) > 0 {
			p.Args[name] = maps.Clone(t.args)
		}
	}
	return p, true
}

// blStored is the encoding of an agent's baseline: a Profile plus what the rate check
// needs, the calls of the last hour and when each tool was first seen.
type blStored struct {
	Version   int                     `json:"version"`
	Calls     int                     `json:"calls"`
	FirstSeen time.Time               `json:"first_seen"`
	Hours     []int                   `json:"hours"`
	Tools     map[string]blStoredTool `json:"tools"`
}

type blStoredTool struct {
	Calls     int                     `json:"calls"`
	FirstSeen time.Time               `json:"first_seen"`
	Recent    []blStoredMinute        `json:"recent,omitempty"`
	Args      map[string]ProfileRange `json:"args,omitempty"`
}

type blStoredMinute struct {
	Minute int64 `json:"minute"` // Unix time / 60
	Calls  int   `json:"calls"`
}

// Encode returns the agent's baseline as JSON for storage, to be given back to
// [Baselines.Restore], and clears the agent's dirty mark. It reports false if the
// agent is unknown, or if its times cannot be written as RFC 3339 (a clock outside
// the years 0 to 9999).
func (b *Baselines) Encode(agent string) ([]byte, bool) {
	a := b.agent(agent)
	if a == nil {
		return nil, false
	}
	m := blMinute(b.o.Now())
	a.mu.Lock()
	defer a.mu.Unlock()
	st := blStored{
		Version:   blVersion,
		Calls:     a.calls,
		FirstSeen: a.firstSeen,
		Hours:     a.hours[:],
		Tools:     make(map[string]blStoredTool, len(a.tools)),
	}
	for name, t := range a.tools {
		var recent []blStoredMinute
		for i, c := range t.counts {
			if d := m - t.minutes[i]; c > 0 && d >= 0 && d < 60 {
				recent = append(recent, blStoredMinute{Minute: t.minutes[i], Calls: c})
			}
		}
		slices.SortFunc(recent, func(x, y blStoredMinute) int { return cmp.Compare(x.Minute, y.Minute) })
		st.Tools[name] = blStoredTool{Calls: t.calls, FirstSeen: t.firstSeen, Recent: recent, Args: t.args}
	}
	// Marshalling under the lock is CPU work on at most maxEncoded bytes; copying the
	// maps out first would cost as much.
	data, err := json.Marshal(st)
	if err != nil {
		return nil, false
	}
	a.dirty = false
	return data, true
}

// Restore replaces the agent's baseline with one returned by [Baselines.Encode]. It
// validates everything it reads against the options' bounds and for consistency (the
// hours add up to the calls, the tools to no more than that, counts are positive,
// numbers finite, names at most 256 bytes) and on any problem returns an error naming
// it, changing nothing. It fails when the agent is new and MaxAgents are held. The
// restored agent is not dirty.
func (b *Baselines) Restore(agent string, data []byte) error {
	if !blNameOK(agent) {
		return fmt.Errorf("contain: baselines: restore %q: agent name must be valid UTF-8 of at most %d bytes", blCut(agent), blMaxName)
	}
	na, err := b.decode(data)
	if err != nil {
		return fmt.Errorf("contain: baselines: restore %q: %w", agent, err)
	}
	a := b.agent(agent)
	if a == nil {
		b.mu.Lock()
		if a = b.agents[agent]; a == nil {
			defer b.mu.Unlock()
			if len(b.agents) >= b.o.MaxAgents {
				return fmt.Errorf("contain: baselines: restore %q: already holding MaxAgents (%d) agents", agent, b.o.MaxAgents)
			}
			b.agents[strings.Clone(agent)] = na
			return nil
		}
		b.mu.Unlock()
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.calls, a.firstSeen, a.hours, a.tools, a.dirty = na.calls, na.firstSeen, na.hours, na.tools, false
	return nil
}

// decode reads and validates an encoded baseline into a new agent.
func (b *Baselines) decode(data []byte) (*blAgent, error) {
	if len(data) > b.maxEncoded {
		return nil, fmt.Errorf("encoding must be at most %d bytes, got %d", b.maxEncoded, len(data))
	}
	var st blStored
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&st); err != nil {
		return nil, fmt.Errorf("decode: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("decode: data after the baseline")
	}
	if st.Version != blVersion {
		return nil, fmt.Errorf("version must be %d, got %d", blVersion, st.Version)
	}
	if st.Calls < 1 || st.Calls > blMaxCount {
		return nil, fmt.Errorf("calls must be from 1 to %d, got %d", blMaxCount, st.Calls)
	}
	if err := blCheckTime(st.FirstSeen); err != nil {
		return nil, fmt.Errorf("first_seen %v", err)
	}
	if len(st.Hours) != 24 {
		return nil, fmt.Errorf("hours must have 24 entries (UTC hours 0 to 23), got %d", len(st.Hours))
	}
	a := &blAgent{calls: st.Calls, firstSeen: st.FirstSeen.UTC(), tools: make(map[string]*blTool, len(st.Tools))}
	sum := 0
	for h, n := range st.Hours {
		if n < 0 || n > st.Calls {
			return nil, fmt.Errorf("hours[%d] must be from 0 to calls (%d), got %d", h, st.Calls, n)
		}
		a.hours[h] = n
		sum += n
	}
	if sum != st.Calls {
		return nil, fmt.Errorf("hours must add up to calls (%d), got %d", st.Calls, sum)
	}
	if len(st.Tools) > b.o.MaxToolsPerAgent {
		return nil, fmt.Errorf("tools must number at most MaxToolsPerAgent (%d), got %d", b.o.MaxToolsPerAgent, len(st.Tools))
	}
	sum = 0
	// Sorted, so that of several problems the same one is reported every time.
	for _, name := range slices.Sorted(maps.Keys(st.Tools)) {
		t, n, err := b.decodeTool(name, st.Tools[name], a.calls-sum)
		if err != nil {
			return nil, err
		}
		a.tools[name] = t
		sum += n
	}
	return a, nil
}

// decodeTool validates one tool of an encoded baseline, which may have at most left
// calls, and returns it and its calls.
func (b *Baselines) decodeTool(name string, st blStoredTool, left int) (*blTool, int, error) {
	if !blNameOK(name) {
		return nil, 0, fmt.Errorf("tools[%q]: name must be at most %d bytes", blCut(name), blMaxName)
	}
	if st.Calls < 1 || st.Calls > left {
		return nil, 0, fmt.Errorf("tools[%q].calls must be from 1 to the %d calls not counted by other tools, got %d", name, left, st.Calls)
	}
	if err := blCheckTime(st.FirstSeen); err != nil {
		return nil, 0, fmt.Errorf("tools[%q].first_seen %v", name, err)
	}
	t := &blTool{calls: st.Calls, firstSeen: st.FirstSeen.UTC(), args: make(map[string]ProfileRange, len(st.Args))}
	if len(st.Recent) > 60 {
		return nil, 0, fmt.Errorf("tools[%q].recent must have at most 60 minutes, got %d", name, len(st.Recent))
	}
	sum := 0
	for i, r := range st.Recent {
		switch {
		case r.Minute < -blMaxMinute || r.Minute > blMaxMinute:
			return nil, 0, fmt.Errorf("tools[%q].recent[%d].minute must be from %d to %d, got %d", name, i, -blMaxMinute, blMaxMinute, r.Minute)
		case i > 0 && r.Minute <= st.Recent[i-1].Minute:
			return nil, 0, fmt.Errorf("tools[%q].recent[%d].minute must be after the one before, got %d", name, i, r.Minute)
		case r.Minute-st.Recent[0].Minute >= 60:
			return nil, 0, fmt.Errorf("tools[%q].recent[%d].minute must be within an hour of the first, got %d", name, i, r.Minute)
		case r.Calls < 1 || r.Calls > st.Calls-sum:
			return nil, 0, fmt.Errorf("tools[%q].recent[%d].calls must be from 1 to the tool's %d calls not counted in other minutes, got %d", name, i, st.Calls-sum, r.Calls)
		}
		sum += r.Calls
		t.minutes[blSlot(r.Minute)], t.counts[blSlot(r.Minute)] = r.Minute, r.Calls
	}
	if len(st.Args) > b.o.MaxArgsPerTool {
		return nil, 0, fmt.Errorf("tools[%q].args must number at most MaxArgsPerTool (%d), got %d", name, b.o.MaxArgsPerTool, len(st.Args))
	}
	for _, arg := range slices.Sorted(maps.Keys(st.Args)) {
		r := st.Args[arg]
		switch {
		case !blNameOK(arg):
			return nil, 0, fmt.Errorf("tools[%q].args[%q]: name must be at most %d bytes", name, blCut(arg), blMaxName)
		case !blFinite(r.Min) || !blFinite(r.Max) || r.Min > r.Max:
			return nil, 0, fmt.Errorf("tools[%q].args[%q] must have finite min <= max, got %g and %g", name, arg, r.Min, r.Max)
		}
		t.args[arg] = r
	}
	return t, st.Calls, nil
}

// Dirty returns the agents whose baselines changed since they were last encoded (or
// restored), sorted, and clears their marks: the caller is expected to encode and
// store each, and to keep the names of those it failed to store for its next try.
func (b *Baselines) Dirty() []string {
	// Collect first so that the map lock is not held while waiting for agents.
	b.mu.RLock()
	names := make([]string, 0, len(b.agents))
	agents := make([]*blAgent, 0, len(b.agents))
	for name, a := range b.agents {
		names = append(names, name)
		agents = append(agents, a)
	}
	b.mu.RUnlock()
	var out []string
	for i, a := range agents {
		a.mu.Lock()
		if a.dirty {
			a.dirty = false
			out = append(out, names[i])
		}
		a.mu.Unlock()
	}
	slices.Sort(out)
	return out
}

// agent returns the agent's baseline, or nil.
func (b *Baselines) agent(name string) *blAgent {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return b.agents[name]
}

// blMaxEncoded returns twice the most bytes Encode can write under o (names escaped
// at up to 6 bytes a byte, numbers at up to 24), leaving room for reformatting.
func blMaxEncoded(o BaselineOptions) int {
	const (
		name   = 6*blMaxName + 3
		number = 24
		stamp  = 40
		arg    = name + 16 + 2*number
		tool   = name + 64 + number + stamp + 60*(24+2*number)
		agent  = 64 + number + stamp + 24*(number+1)
	)
	return 2 * (agent + o.MaxToolsPerAgent*(tool+o.MaxArgsPerTool*arg))
}

// blCheckTime checks a time read by Restore; Encode must be able to write it back.
func blCheckTime(t time.Time) error {
	if t.IsZero() {
		return errors.New("is missing")
	}
	if y := t.UTC().Year(); y < 0 || y > 9999 {
		return fmt.Errorf("must be in the years 0 to 9999 UTC, got %d", y)
	}
	return nil
}

// blNameOK reports whether a name can be learned: bounded, and valid UTF-8 so that
// JSON carries it unchanged.
func blNameOK(s string) bool { return len(s) <= blMaxName && utf8.ValidString(s) }

// blCut shortens a name for an error message.
func blCut(s string) string {
	if len(s) <= 64 {
		return s
	}
	return s[:64] + "..."
}

func blFinite(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) }

// blMinute returns the Unix minute of t.
func blMinute(t time.Time) int64 {
	s := t.Unix()
	m := s / 60
	if s%60 < 0 {
		m--
	}
	return m
}

// blSlot returns the slot of minute m in a tool's ring.
func blSlot(m int64) int { return int((m%60 + 60) % 60) }
