package auditexport

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/chaperone-dev/chaperone/internal/audit"
)

// Filter selects the events an export writes. The zero Filter selects every event.
// Each set field but Progress narrows the selection; an event is selected when it
// passes all of them.
type Filter struct {
	// After selects events with Seq greater than After (0: from the first event).
	After int64
	// From and To select events with From <= Time < To. A zero From or To leaves that
	// side open.
	From, To time.Time
	// Agents selects events whose Agent (the acting agent, not the other agents of its
	// delegation chain) is one of these.
	Agents []string
	// Tasks selects events whose Task is one of these.
	Tasks []string
	// Decisions selects events whose Decision field is one of these, compared exactly.
	// On call events it is what was decided: allow, deny, approve (the policy required
	// a person's approval) or refused (refused before the policy decided: unknown tool,
	// invalid arguments, budget, kill switch, ...). Other kinds use the field for their
	// own outcome: token events allow or refused, auth.failed refused, breaker.changed
	// the breaker's new state, agent.promoted and agent.demoted the new autonomy level,
	// approval events the request's status. Events without a Decision never match.
	Decisions []string
	// Kinds selects events whose Kind is one of these. An entry ending in ".*" selects
	// every kind with that prefix: "call.*" selects call.intent, call.outcome, ...
	Kinds []string
	// Progress, if set, selects nothing: the export calls it after each page of events
	// read, and once at the end, with the number of events read so far (selected or not,
	// tombstones included) and the number written, from the export's goroutine. nil: none.
	Progress func(read, written int)
}

// Validate reports a Filter that can select nothing because of its bounds: From not
// before To, or a negative After.
func (f *Filter) Validate() error {
	var errs []error
	if f.After < 0 {
		errs = append(errs, fmt.Errorf("after %d is negative", f.After))
	}
	if !f.From.IsZero() && !f.To.IsZero() && !f.From.Before(f.To) {
		errs = append(errs, fmt.Errorf("from %s is not before to %s",
			f.From.UTC().Format(time.RFC3339Nano), f.To.UTC().Format(time.RFC3339Nano)))
	}
	return errors.Join(errs...)
}

// Match reports whether f selects e. A nil Filter selects every event.
func (f *Filter) Match(e *audit.Event) bool {
	if f == nil {
		return true
	}
	return f.matchKept(e) &&
		anyOf(f.Agents, e.Agent) && anyOf(f.Tasks, e.Task) && anyOf(f.Decisions, e.Decision)
}

// matchKept applies the parts of f that a tombstone can still be judged by: Seq,
// Time and Kind.
func (f *Filter) matchKept(e *audit.Event) bool {
	if f == nil {
		return true
	}
	if e.Seq <= f.After {
		return false
	}
	if !f.From.IsZero() && e.Time.Before(f.From) {
		return false
	}
	if !f.To.IsZero() && !e.Time.Before(f.To) {
		return false
	}
	return len(f.Kinds) == 0 || slices.ContainsFunc(f.Kinds, func(k string) bool { return kindMatches(k, e.Kind) })
}

// anyOf reports whether set is empty or holds v.
func anyOf(set []string, v string) bool {
	return len(set) == 0 || slices.Contains(set, v)
}

// kindMatches reports whether pattern, a kind or a prefix ending in ".*", matches kind.
func kindMatches(pattern, kind string) bool {
	if prefix, ok := strings.CutSuffix(pattern, "*"); ok && strings.HasSuffix(prefix, ".") {
		return strings.HasPrefix(kind, prefix)
	}
	return pattern == kind
}

// Bounds of [ParseTime].
const (
	// maxTimeInput bounds the length of a time or duration ParseTime reads.
	maxTimeInput = 64
	// maxLookback bounds a duration: 100 years before now.
	maxLookback = 100 * 365 * 24 * time.Hour
)

// ErrBadTime is returned, wrapped, by [ParseTime] for input that is neither a time
// nor a duration it accepts.
var ErrBadTime = errors.New("want an RFC 3339 time (2026-03-01T09:00:00Z), a date (2026-03-01) or a duration before now (24h, 90m, 7d)")

// ParseTime reads a bound of a time range as an auditor writes it: an RFC 3339 time
// ("2026-03-01T09:00:00Z", "2026-03-01T10:00:00+01:00"), a date ("2026-03-01",
// midnight UTC), or a duration meaning that long before now — a Go duration ("24h",
// "1h30m") or a whole number of days ("7d"). A duration must be positive and at most
// 100 years; the input at most 64 bytes. The result is in UTC.
func ParseTime(s string, now time.Time) (time.Time, error) {
	if len(s) > maxTimeInput {
		return time.Time{}, fmt.Errorf("%d bytes, longer than %d: %w", len(s), maxTimeInput, ErrBadTime)
	}
	if s == "" {
		return time.Time{}, fmt.Errorf("empty: %w", ErrBadTime)
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t.UTC(), nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t.UTC(), nil
	}
	d, err := parseLookback(s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q: %w", s, err)
	}
	return now.Add(-d).UTC(), nil
}

// parseLookback reads a positive duration of at most maxLookback: a Go duration or a
// whole number of days ("7d").
func parseLookback(s string) (time.Duration, error) {
	var d time.Duration
	if days, ok := strings.CutSuffix(s, "d"); ok && days != "" && strings.Trim(days, "0123456789") == "" {
		n, err := strconv.ParseInt(days, 10, 64)
		if err != nil || n > int64(maxLookback/(24*time.Hour)) {
			return 0, fmt.Errorf("more than %d days: %w", int64(maxLookback/(24*time.Hour)), ErrBadTime)
		}
		d = time.Duration(n) * 24 * time.Hour
	} else {
		var err error
		if d, err = time.ParseDuration(s); err != nil {
			return 0, ErrBadTime
		}
	}
	switch {
	case d <= 0:
		return 0, fmt.Errorf("duration %s is not positive: %w", d, ErrBadTime)
	case d > maxLookback:
		return 0, fmt.Errorf("duration %s is longer than 100 years: %w", d, ErrBadTime)
	}
	return d, nil
}
