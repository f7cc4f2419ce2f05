package audit

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
)

// Source reads a log's events for [Verify].
type Source interface {
	// ScanEvents returns at most limit events with Seq greater than afterSeq,
	// in ascending Seq order, and none when there are no more. If a stored
	// record in the range cannot be read, it returns a [CorruptError]
	// (possibly wrapped) for the first such record; Verify then reads the
	// events before it one at a time.
	ScanEvents(ctx context.Context, afterSeq int64, limit int) ([]Event, error)
}

// Report is the result of [Verify].
type Report struct {
	// Events is the number of events verified: all of them if Broken is nil,
	// those before the break otherwise.
	Events int64
	// Head is the Hash of the last verified event, "" for an empty log.
	// Compare it with a copy kept elsewhere to detect a truncated or
	// replaced log, which the chain alone cannot show.
	Head string
	// Broken is the first broken link, nil if the chain is intact.
	Broken *Break
	// Unfinished counts the call intents, among the verified events, with no
	// outcome for their request ID: calls during which the gateway stopped,
	// or calls still running. It is informational, not a break.
	Unfinished int64
	// UnfinishedRequests lists the request IDs of the first
	// maxUnfinishedListed unfinished intents, in log order.
	UnfinishedRequests []string
}

// Break is where a log's chain is broken.
type Break struct {
	Seq     int64  // the first event that is missing, edited or misplaced
	Problem string // what is wrong, for a person, starting with "event <Seq>"
}

const (
	verifyPage          = 1000 // events read per call to the Source
	maxUnfinishedListed = 20   // request IDs listed in Report.UnfinishedRequests
)

// Verify reads the whole log from src and checks every link of the chain: seqs
// start at 1 without gaps, every hash matches its event's content, and every
// prev_hash equals the previous event's hash (the first event's is empty). It
// stops at the first broken link and reports it in Report.Broken; an error
// means the log could not be read, not that it is broken.
//
// A log cut short at its end, or replaced as a whole by a consistent forgery,
// passes: compare Report.Head with a copy of the head kept elsewhere.
func Verify(ctx context.Context, src Source) (Report, error) {
	v := verifier{open: make(map[string]int64)}
	limit := verifyPage
	for {
		events, err := src.ScanEvents(ctx, v.seq, limit)
		if ce, ok := errors.AsType[*CorruptError](err); ok && ce.Seq > v.seq {
			switch {
			case ce.Seq == v.seq+1:
				v.fail(ce.Seq, fmt.Sprintf("event %d unreadable: %v", ce.Seq, ce.Err))
				return v.report(), nil
			case limit > 1:
				// The first break may be among the events before the
				// unreadable one: read them one at a time.
				limit = 1
				continue
			default:
				v.fail(v.seq+1, v.gap(ce.Seq))
				return v.report(), nil
			}
		}
		if err != nil {
			return v.report(), fmt.Errorf("audit: verify: read events after %d: %w", v.seq, err)
		}
		if len(events) == 0 {
			return v.report(), nil
		}
		for i := range events {
			if !v.check(&events[i]) {
				return v.report(), nil
			}
		}
	}
}

// verifier walks the chain one event at a time.
type verifier struct {
	seq    int64            // Seq of the last verified event
	head   string           // Hash of the last verified event
	broken *Break           // the first break, once found
	open   map[string]int64 // request ID -> Seq of its intent, for intents without outcome
}

// check verifies e against the chain so far and reports whether it holds.
func (v *verifier) check(e *Event) bool {
	switch want := v.seq + 1; {
	case e.Seq > want:
		v.fail(want, v.gap(e.Seq))
		return false
	case e.Seq < want:
		v.fail(want, fmt.Sprintf("event %d out of order: found event %d after event %d", want, e.Seq, v.seq))
		return false
	}
	if e.ComputeHash() != e.Hash {
		v.fail(e.Seq, fmt.Sprintf("event %d edited: hash does not match its content", e.Seq))
		return false
	}
	if e.PrevHash != v.head {
		if e.Seq == 1 {
			v.fail(e.Seq, "event 1 has a prev_hash: the first event links to nothing")
		} else {
			v.fail(e.Seq, fmt.Sprintf("event %d prev_hash does not match the hash of event %d (events reordered, or removed and renumbered)", e.Seq, e.Seq-1))
		}
		return false
	}
	v.seq, v.head = e.Seq, e.Hash
	switch e.Kind {
	case KindCallIntent:
		v.open[e.RequestID] = e.Seq
	case KindCallOutcome:
		delete(v.open, e.RequestID)
	}
	return true
}

// gap describes the events missing between the last verified one and found.
func (v *verifier) gap(found int64) string {
	if v.seq == 0 {
		return fmt.Sprintf("event 1 missing (found %d first)", found)
	}
	return fmt.Sprintf("event %d missing (found %d after %d)", v.seq+1, found, v.seq)
}

func (v *verifier) fail(seq int64, problem string) {
	v.broken = &Break{Seq: seq, Problem: problem}
}

func (v *verifier) report() Report {
	r := Report{Events: v.seq, Head: v.head, Broken: v.broken, Unfinished: int64(len(v.open))}
	ids := slices.SortedFunc(maps.Keys(v.open), func(a, b string) int {
		return cmp.Compare(v.open[a], v.open[b])
	})
	if len(ids) > maxUnfinishedListed {
		ids = ids[:maxUnfinishedListed]
	}
	if len(ids) > 0 {
		r.UnfinishedRequests = ids
	}
	return r
}
