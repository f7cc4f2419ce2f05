package config

import (
	"fmt"
	"math"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/chaperone-dev/chaperone/internal/contain"
)

// Containment configures the brakes that stop an agent gone wrong. Kill switches need no
// configuration: they are pulled at run time (`chaperone kill`).
type Containment struct {
	// Budgets bound each task: for a call made with a static agent token, its MCP
	// session; without one, the agent.
	Budgets Budgets `yaml:"budgets"`
	// Caps bound the sum of an argument, or the number of calls, over a window.
	Caps []Cap `yaml:"caps"`
	// RateLimits are token buckets per agent, per tool or per user.
	RateLimits []RateLimit `yaml:"rate_limits"`
	// Loops refuses the same call repeated with the same arguments.
	Loops Loops `yaml:"loops"`
	// Breakers trip per agent on signals and degrade it.
	Breakers Breakers `yaml:"breakers"`
	// Baselines learn each agent's normal behaviour and flag deviations.
	Baselines Baselines `yaml:"baselines"`
	// Idempotency configures idempotency keys (`_meta` dev.chaperone/idempotency_key).
	Idempotency Idempotency `yaml:"idempotency"`
	// Webhooks are told of every kill switch pulled or lifted and every breaker
	// transition, in the form of approval webhooks.
	Webhooks []Webhook `yaml:"webhooks"`
}

// Budgets bound one task. 0 means no bound.
type Budgets struct {
	// MaxSteps bounds the tool calls.
	MaxSteps int64 `yaml:"max_steps"`
	// MaxSpend bounds the money spent: the declared cost of each call plus what the agent
	// reports (`_meta` dev.chaperone/usage).
	MaxSpend float64 `yaml:"max_spend"`
	// MaxTokens bounds the model tokens the agent reports.
	MaxTokens int64 `yaml:"max_tokens"`
}

// Cap bounds the total of an argument, or the number of calls, per agent, user or task
// over a sliding window: "at most 10000 in amount per agent per day".
type Cap struct {
	// Name identifies the cap in refusals and the audit log; [a-z0-9][a-z0-9_-]{0,63}.
	Name string `yaml:"name"`
	// Tools are the exposed tool names it counts; empty means every tool.
	Tools []string `yaml:"tools"`
	// Sum is the top-level numeric argument added up; empty counts calls.
	Sum string `yaml:"sum"`
	// Per is agent, user or task. Default agent.
	Per string `yaml:"per"`
	// Window is the sliding window. Default "24h"; from 1s to 8760h.
	Window Duration `yaml:"window"`
	// Max is the bound; more than 0.
	Max float64 `yaml:"max"`
}

// RateLimit is a token bucket for each agent, tool or user.
type RateLimit struct {
	// Per is agent, tool or user.
	Per string `yaml:"per"`
	// Rate is "N/s", "N/m" or "N/h".
	Rate string `yaml:"rate"`
	// Burst is the most calls at once. Default: the rate per second rounded up, at least 1.
	Burst int `yaml:"burst"`
}

// Loops configures runaway-loop detection: a call repeated with the same arguments in
// the same context.
type Loops struct {
	// Enabled turns it on. Default true.
	Enabled *bool `yaml:"enabled"`
	// MaxRepeats identical calls are allowed within Window; the next is refused. Default 10.
	MaxRepeats int `yaml:"max_repeats"`
	// Window default "1m"; from 1s to 24h.
	Window Duration `yaml:"window"`
}

// On reports whether loop detection is on.
func (l *Loops) On() bool { return l.Enabled == nil || *l.Enabled }

// Breakers configures behavioural circuit breakers, one per agent. With no triggers there
// are none.
type Breakers struct {
	// Triggers trip an agent's breaker: a signal's count (or, for spend, amount) within a
	// window reaching a threshold.
	Triggers []BreakerTrigger `yaml:"triggers"`
	// Degrade is what a tripped breaker leaves the agent: read_only, suggest_only or
	// block. Default read_only.
	Degrade string `yaml:"degrade"`
	// Cooldown is how long a breaker stays open before one probe call is let through.
	// Default "5m"; from 1s to 168h.
	Cooldown Duration `yaml:"cooldown"`
}

// BreakerTrigger trips a breaker when Signal reaches Threshold within Window.
type BreakerTrigger struct {
	// Signal is denials, injections, destructive, errors, spend, deviations or loops.
	Signal string `yaml:"signal"`
	// Threshold is a count, or an amount for spend; more than 0.
	Threshold float64 `yaml:"threshold"`
	// Window default "10m"; from 1s to 168h.
	Window Duration `yaml:"window"`
}

// Baselines configures per-agent baselines.
type Baselines struct {
	// Enabled turns learning on; deviations are then facts for policy (baseline.deviations)
	// and signals for breakers. Default true.
	Enabled *bool `yaml:"enabled"`
	// MinCalls an agent makes before its baseline is used. Default 50.
	MinCalls int `yaml:"min_calls"`
	// RateFactor flags a tool called at more than this many times the agent's usual hourly
	// rate. Default 5.
	RateFactor float64 `yaml:"rate_factor"`
	// RangeFactor flags a numeric argument above this many times the largest value seen.
	// Default 2.
	RangeFactor float64 `yaml:"range_factor"`
}

// On reports whether baselines are learned.
func (b *Baselines) On() bool { return b.Enabled == nil || *b.Enabled }

// Idempotency configures idempotency keys.
type Idempotency struct {
	// Retention is how long a key is remembered. Default "24h"; from 1m to 720h.
	Retention Duration `yaml:"retention"`
}

// BreakerSignals are the signals a breaker trigger may name.
var BreakerSignals = []contain.Signal{contain.SignalDenials, contain.SignalInjections, contain.SignalDestructive,
	contain.SignalErrors, contain.SignalSpend, contain.SignalDeviations, contain.SignalLoops}

var capName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,63}$`)

func (c *Containment) applyDefaults() {
	for i := range c.Caps {
		if c.Caps[i].Per == "" {
			c.Caps[i].Per = "agent"
		}
		if c.Caps[i].Window == 0 {
			c.Caps[i].Window = Duration(24 * time.Hour)
		}
	}
	for i := range c.RateLimits {
		if c.RateLimits[i].Burst == 0 {
			if r, err := contain.ParseRate(c.RateLimits[i].Rate); err == nil {
				c.RateLimits[i].Burst = max(1, int(math.Ceil(min(r, 1e6))))
			}
		}
	}
	if c.Loops.MaxRepeats == 0 {
		c.Loops.MaxRepeats = 10
	}
	if c.Loops.Window == 0 {
		c.Loops.Window = Duration(time.Minute)
	}
	if c.Breakers.Degrade == "" {
		c.Breakers.Degrade = string(contain.DegradeReadOnly)
	}
	if c.Breakers.Cooldown == 0 {
		c.Breakers.Cooldown = Duration(5 * time.Minute)
	}
	for i := range c.Breakers.Triggers {
		if c.Breakers.Triggers[i].Window == 0 {
			c.Breakers.Triggers[i].Window = Duration(10 * time.Minute)
		}
	}
	if c.Baselines.MinCalls == 0 {
		c.Baselines.MinCalls = 50
	}
	if c.Baselines.RateFactor == 0 {
		c.Baselines.RateFactor = 5
	}
	if c.Baselines.RangeFactor == 0 {
		c.Baselines.RangeFactor = 2
	}
	if c.Idempotency.Retention == 0 {
		c.Idempotency.Retention = Duration(24 * time.Hour)
	}
	defaultWebhooks(c.Webhooks)
}

// validate reports every problem of the containment section. tools are the exposed tool
// names, nil when the tools themselves are invalid (then tool names are not checked).
func (c *Containment) validate(tools []string) []error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...)))
	}
	finite := func(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }
	b := c.Budgets
	if b.MaxSteps < 0 || b.MaxTokens < 0 || !finite(b.MaxSpend) || b.MaxSpend < 0 {
		bad("containment.budgets", "max_steps, max_spend and max_tokens must be at least 0 (0: no bound), got %+v", b)
	}
	if len(c.Caps) > 64 {
		bad("containment.caps", "at most 64 caps, got %d", len(c.Caps))
	}
	names := map[string]bool{}
	for i, cp := range c.Caps {
		f := fmt.Sprintf("containment.caps[%d]", i)
		if !capName.MatchString(cp.Name) {
			bad(f+".name", "must match %s, got %q", capName, cp.Name)
		} else if names[cp.Name] {
			bad(f+".name", "duplicate cap %q", cp.Name)
		}
		names[cp.Name] = true
		for j, t := range cp.Tools {
			if tools != nil && !slices.Contains(tools, t) {
				bad(fmt.Sprintf("%s.tools[%d]", f, j), "unknown tool %q (want an exposed tool name)", t)
			}
		}
		if cp.Sum != "" && !toolName.MatchString(cp.Sum) {
			bad(f+".sum", "must be a top-level argument name matching %s, got %q", toolName, cp.Sum)
		}
		if !slices.Contains([]string{"agent", "user", "task"}, cp.Per) {
			bad(f+".per", "must be agent, user or task, got %q", cp.Per)
		}
		if w := cp.Window.D(); w < time.Second || w > 8760*time.Hour {
			bad(f+".window", "must be between 1s and 8760h, got %s", w)
		}
		if !finite(cp.Max) || cp.Max <= 0 {
			bad(f+".max", "must be more than 0, got %v", cp.Max)
		}
	}
	if len(c.RateLimits) > 16 {
		bad("containment.rate_limits", "at most 16 rate limits, got %d", len(c.RateLimits))
	}
	for i, rl := range c.RateLimits {
		f := fmt.Sprintf("containment.rate_limits[%d]", i)
		if !slices.Contains([]string{"agent", "tool", "user"}, rl.Per) {
			bad(f+".per", "must be agent, tool or user, got %q", rl.Per)
		}
		if _, err := contain.ParseRate(rl.Rate); err != nil {
			bad(f+".rate", "%v", err)
		}
		if rl.Burst < 1 || rl.Burst > 1_000_000 {
			bad(f+".burst", "must be between 1 and 1000000, got %d", rl.Burst)
		}
	}
	if l := c.Loops; l.MaxRepeats < 1 || l.MaxRepeats > 10_000 {
		bad("containment.loops.max_repeats", "must be between 1 and 10000, got %d", l.MaxRepeats)
	}
	if w := c.Loops.Window.D(); w < time.Second || w > 24*time.Hour {
		bad("containment.loops.window", "must be between 1s and 24h, got %s", w)
	}
	br := c.Breakers
	if len(br.Triggers) > 32 {
		bad("containment.breakers.triggers", "at most 32 triggers, got %d", len(br.Triggers))
	}
	for i, t := range br.Triggers {
		f := fmt.Sprintf("containment.breakers.triggers[%d]", i)
		if !slices.Contains(BreakerSignals, contain.Signal(t.Signal)) {
			bad(f+".signal", "must be one of %s, got %q", joinSignals(), t.Signal)
		}
		if !finite(t.Threshold) || t.Threshold <= 0 {
			bad(f+".threshold", "must be more than 0, got %v", t.Threshold)
		}
		if w := t.Window.D(); w < time.Second || w > 168*time.Hour {
			bad(f+".window", "must be between 1s and 168h, got %s", w)
		}
	}
	switch contain.Degrade(br.Degrade) {
	case contain.DegradeReadOnly, contain.DegradeSuggestOnly, contain.DegradeBlock:
	default:
		bad("containment.breakers.degrade", "must be read_only, suggest_only or block, got %q", br.Degrade)
	}
	if d := br.Cooldown.D(); d < time.Second || d > 168*time.Hour {
		bad("containment.breakers.cooldown", "must be between 1s and 168h, got %s", d)
	}
	bl := c.Baselines
	if bl.MinCalls < 1 || bl.MinCalls > 1_000_000 {
		bad("containment.baselines.min_calls", "must be between 1 and 1000000, got %d", bl.MinCalls)
	}
	if !finite(bl.RateFactor) || bl.RateFactor <= 1 || bl.RateFactor > 1000 {
		bad("containment.baselines.rate_factor", "must be more than 1 and at most 1000, got %v", bl.RateFactor)
	}
	if !finite(bl.RangeFactor) || bl.RangeFactor <= 1 || bl.RangeFactor > 1000 {
		bad("containment.baselines.range_factor", "must be more than 1 and at most 1000, got %v", bl.RangeFactor)
	}
	if r := c.Idempotency.Retention.D(); r < time.Minute || r > 720*time.Hour {
		bad("containment.idempotency.retention", "must be between 1m and 720h, got %s", r)
	}
	return append(errs, checkWebhooks("containment.webhooks", c.Webhooks)...)
}

func joinSignals() string {
	s := make([]string, len(BreakerSignals))
	for i, sg := range BreakerSignals {
		s[i] = string(sg)
	}
	return strings.Join(s, ", ")
}
