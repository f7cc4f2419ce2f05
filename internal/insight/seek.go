package insight

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/chaperone-dev/chaperone/internal/audit"
)

// Slack is how far apart the clocks of the gateways writing one log may be: [SeekTime]
// starts this much before the time asked for.
const Slack = time.Minute

const (
	// seekProbe is how many events SeekTime reads at each probe. One event's time can
	// mislead: a call held for approval is recorded after the wait, with the time it
	// arrived. The latest time of a few consecutive events bounds when the first of them
	// was recorded, as long as one of them was recorded promptly.
	seekProbe = 16
	// scanPage is how many events Scan reads at a time. Small, because an event may carry
	// captured arguments and results.
	scanPage = 256
)

// SeekTime returns a seq to read the log after so as to miss no event at or after t:
// the seq of the last event found to have been recorded before t minus [Slack], or 0. It
// binary-searches the log by seq, reading a few events at each probe, so it costs a
// number of reads logarithmic in the log's length. A record that cannot be read counts as
// not before t, which can only make the result smaller (more to read), never skip events.
func SeekTime(ctx context.Context, src audit.Source, t time.Time) (afterSeq int64, err error) {
	if t.IsZero() {
		return 0, nil
	}
	target := t.Add(-Slack)
	// probe reads the events from seq on. found is false past the end of the log; before
	// reports whether they were all recorded before target, and first is the seq of the
	// first of them.
	probe := func(seq int64) (first int64, before, found bool, err error) {
		evs, err := src.ScanEvents(ctx, seq-1, seekProbe)
		if _, ok := errors.AsType[*audit.CorruptError](err); ok {
			return seq, false, true, nil
		}
		if err != nil {
			return 0, false, false, fmt.Errorf("insight: seek %s: read audit log after event %d: %w", t.UTC().Format(time.RFC3339), seq-1, err)
		}
		if len(evs) == 0 {
			return 0, false, false, nil
		}
		latest := evs[0].Time
		for i := range evs {
			if evs[i].Time.After(latest) {
				latest = evs[i].Time
			}
		}
		return evs[0].Seq, latest.Before(target), true, nil
	}
	// Invariant: lo is 0 or an event recorded before target; hi is past the end of the log
	// or a seq from which events are not all before target.
	lo, hi := int64(0), int64(-1)
	for step := int64(1); hi < 0; step *= 2 {
		m := lo + step
		first, before, found, err := probe(m)
		switch {
		case err != nil:
			return 0, err
		case !found || !before:
			hi = m
		case first <= lo:
			return 0, fmt.Errorf("insight: seek %s: audit log returned event %d when asked for events from %d", t.UTC().Format(time.RFC3339), first, m)
		default:
			lo = first
		}
		if step > 1<<61 {
			return lo, nil
		}
	}
	for hi-lo > 1 {
		mid := lo + (hi-lo)/2
		first, before, found, err := probe(mid)
		switch {
		case err != nil:
			return 0, err
		case !found || !before || first >= hi:
			hi = mid
		case first <= lo:
			return 0, fmt.Errorf("insight: seek %s: audit log returned event %d when asked for events from %d", t.UTC().Format(time.RFC3339), first, mid)
		default:
			lo = first
		}
	}
	return lo, nil
}

// ScanStats says what [Scan] read.
type ScanStats struct {
	// Events counts the events handed to the callback.
	Events int64
	// Unreadable counts the records that could not be read back and were skipped.
	Unreadable int64
	// LastSeq is the seq of the last record read or skipped.
	LastSeq int64
}

// Scan reads the log after afterSeq to its end, in seq order, and calls fn with each
// event; fn must not keep the pointer. A record the store cannot read back (an
// [audit.CorruptError]) is skipped and counted. An error from fn stops the scan and is
// returned as it is.
func Scan(ctx context.Context, src audit.Source, afterSeq int64, fn func(*audit.Event) error) (ScanStats, error) {
	st := ScanStats{LastSeq: afterSeq}
	limit := scanPage
	// corruptAt is the seq of the unreadable record being stepped around, 0 if none.
	var corruptAt int64
	for {
		evs, err := src.ScanEvents(ctx, st.LastSeq, limit)
		if ce, ok := errors.AsType[*audit.CorruptError](err); ok && ce.Seq > st.LastSeq {
			if limit > 1 {
				// The readable events before it are read one at a time, then it is skipped.
				limit, corruptAt = 1, ce.Seq
				continue
			}
			st.Unreadable++
			st.LastSeq = ce.Seq
			if ce.Seq >= corruptAt {
				limit, corruptAt = scanPage, 0
			}
			continue
		}
		if err != nil {
			return st, fmt.Errorf("insight: read audit log after event %d: %w", st.LastSeq, err)
		}
		if len(evs) == 0 {
			return st, nil
		}
		for i := range evs {
			e := &evs[i]
			if e.Seq <= st.LastSeq {
				return st, fmt.Errorf("insight: audit log returned event %d after event %d", e.Seq, st.LastSeq)
			}
			st.LastSeq = e.Seq
			st.Events++
			if err := fn(e); err != nil {
				return st, err
			}
		}
		if corruptAt > 0 && st.LastSeq >= corruptAt {
			limit, corruptAt = scanPage, 0
		}
	}
}

// Compute returns the figures of the window: it seeks the log for w.From ([SeekTime]),
// reads it from there to its end ([Scan]) and adds up the events whose time is in the
// window.
func Compute(ctx context.Context, src audit.Source, w Window) (Figures, error) {
	a, err := New(w)
	if err != nil {
		return Figures{}, err
	}
	after, err := SeekTime(ctx, src, w.From)
	if err != nil {
		return Figures{}, err
	}
	st, err := Scan(ctx, src, after, func(e *audit.Event) error {
		a.Add(e)
		return nil
	})
	if err != nil {
		return Figures{}, err
	}
	f := a.Figures()
	f.Unreadable = st.Unreadable
	return f, nil
}
