package audit

import (
	"fmt"
	"maps"
	"slices"
	"time"
)

// Tombstone returns what remains of e once its retention has run out: its place in the
// chain (Seq, PrevHash, Hash), when and what it was (Time, Kind) and the request it
// belonged to, marked Pruned. Everything else — agent, tool, arguments, messages — is
// gone. [VerifyChain] accepts a tombstone only behind a signed checkpoint.
func Tombstone(e Event) Event {
	return Event{Seq: e.Seq, Time: e.Time, Kind: e.Kind, RequestID: e.RequestID, Pruned: true, PrevHash: e.PrevHash, Hash: e.Hash}
}

// Retention says how long events are kept, by kind. Zero keeps them for ever.
type Retention struct {
	// Default applies to the kinds Kinds does not name.
	Default time.Duration
	// Kinds maps an event kind to its retention; a zero value keeps that kind for ever
	// even when Default is set.
	Kinds map[string]time.Duration
}

// On reports whether anything is ever pruned.
func (r Retention) On() bool {
	if r.Default > 0 {
		return true
	}
	for _, d := range r.Kinds {
		if d > 0 {
			return true
		}
	}
	return false
}

// Expired reports whether e's retention has run out at now.
func (r Retention) Expired(e *Event, now time.Time) bool {
	d, ok := r.Kinds[e.Kind]
	if !ok {
		d = r.Default
	}
	return d > 0 && e.Time.Before(now.Add(-d))
}

// Candidates returns the kinds that may hold expired events, sorted, and nil when every
// kind may (Default is set).
func (r Retention) Candidates() []string {
	if r.Default > 0 {
		return nil
	}
	var kinds []string
	for _, k := range slices.Sorted(maps.Keys(r.Kinds)) {
		if r.Kinds[k] > 0 {
			kinds = append(kinds, k)
		}
	}
	return kinds
}

// Validate reports a negative retention.
func (r Retention) Validate() error {
	if r.Default < 0 {
		return fmt.Errorf("audit retention: default %s is negative", r.Default)
	}
	for k, d := range r.Kinds {
		if d < 0 {
			return fmt.Errorf("audit retention: kind %q: %s is negative", k, d)
		}
	}
	return nil
}
