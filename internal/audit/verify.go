package audit

import (
	"cmp"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"
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
	// From is the seq the verification started after: 0 for the whole log, the
	// checkpoint's Seq for [VerifyOptions].From.
	From int64
	// Checkpoints counts the signed checkpoints the chain was found to match.
	Checkpoints int
	// Anchor is the newest checkpoint the chain matched, nil if none. Events after
	// Anchor.Seq are covered by the chain only: deleting them would not show.
	Anchor *Checkpoint
	// Pruned counts the tombstones met: events whose content retention removed.
	Pruned int64
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
	return VerifyChain(ctx, src, VerifyOptions{})
}

// VerifyOptions anchor a verification in signed checkpoints.
type VerifyOptions struct {
	// Keys are the public keys whose checkpoints are trusted.
	Keys []ed25519.PublicKey
	// Checkpoints are checked against the chain: each must carry a good signature by one
	// of Keys, and the event at its Seq must have its Head. The newest one also bounds the
	// log from below: a log that ends before it has lost events.
	Checkpoints []Checkpoint
	// From, if set, verifies only the events after From.Seq, chained from From.Head,
	// reading no event before it: time proportional to the range. Its signature is
	// checked with Keys.
	From *Checkpoint
}

// VerifyChain is [Verify] anchored in signed checkpoints: besides every link of the
// chain, it checks each checkpoint's signature and that the chain passes through its
// head, so that events deleted from the end of the log, or a log rewritten as a whole,
// are detected up to the newest checkpoint. A tombstone (a pruned event) is accepted only
// behind a checkpoint: its content is gone, but it must still link the chain. A
// checkpoint that does not verify, or that the chain does not match, is reported as the
// break.
func VerifyChain(ctx context.Context, src Source, opts VerifyOptions) (Report, error) {
	v := verifier{open: make(map[string]int64), anchors: map[int64]*Checkpoint{}}
	for i := range opts.Checkpoints {
		c := &opts.Checkpoints[i]
		if err := c.Check(opts.Keys); err != nil {
			v.fail(c.Seq, fmt.Sprintf("checkpoint at event %d is not trustworthy: %v", c.Seq, err))
			return v.report(), nil
		}
		if prev, ok := v.anchors[c.Seq]; ok && prev.Head != c.Head {
			v.fail(c.Seq, fmt.Sprintf("checkpoints signed %s and %s disagree about event %d: the log was forked or rewritten",
				prev.Time.Format(time.RFC3339), c.Time.Format(time.RFC3339), c.Seq))
			return v.report(), nil
		}
		v.anchors[c.Seq] = c
		if c.Seq > v.covered {
			v.covered, v.newest = c.Seq, c
		}
	}
	if f := opts.From; f != nil {
		if err := f.Check(opts.Keys); err != nil {
			v.fail(f.Seq, fmt.Sprintf("checkpoint at event %d is not trustworthy: %v", f.Seq, err))
			return v.report(), nil
		}
		v.seq, v.head, v.from = f.Seq, f.Head, f.Seq
		v.anchor = f
		if f.Seq > v.covered {
			v.covered, v.newest = f.Seq, f
		}
	}
	r, err := v.walk(ctx, src)
	if err != nil || r.Broken != nil {
		return r, err
	}
	if v.covered > v.seq {
		v.fail(v.seq+1, fmt.Sprintf("event %d missing: the log ends at event %d, but the checkpoint signed %s covers %d events (events deleted from the end)",
			v.seq+1, v.seq, v.newest.Time.Format(time.RFC3339), v.covered))
	}
	return v.report(), nil
}

// walk reads the events after v.seq and checks each.
func (v *verifier) walk(ctx context.Context, src Source) (Report, error) {
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

	from    int64                 // the seq verification started after
	anchors map[int64]*Checkpoint // the signed checkpoints, by Seq
	covered int64                 // the highest Seq a checkpoint covers
	newest  *Checkpoint           // the checkpoint at covered
	anchor  *Checkpoint           // the newest checkpoint the chain matched so far
	matched int                   // checkpoints matched
	pruned  int64                 // tombstones met
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
	switch {
	case e.Pruned && e.Seq > v.covered:
		v.fail(e.Seq, fmt.Sprintf("event %d pruned ahead of every signed checkpoint: its content was removed where nothing vouches for it", e.Seq))
		return false
	case e.Pruned && !validHash(e.Hash):
		v.fail(e.Seq, fmt.Sprintf("event %d pruned, and its hash is not a sha256 hash", e.Seq))
		return false
	case e.Pruned:
		v.pruned++
	case e.ComputeHash() != e.Hash:
		v.fail(e.Seq, fmt.Sprintf("event %d edited: hash does not match its content", e.Seq))
		return false
	}
	if e.PrevHash != v.head {
		if e.Seq == v.from+1 && v.from > 0 {
			v.fail(e.Seq, fmt.Sprintf("event %d prev_hash does not match the head of the checkpoint at event %d", e.Seq, v.from))
		} else if e.Seq == 1 {
			v.fail(e.Seq, "event 1 has a prev_hash: the first event links to nothing")
		} else {
			v.fail(e.Seq, fmt.Sprintf("event %d prev_hash does not match the hash of event %d (events reordered, or removed and renumbered)", e.Seq, e.Seq-1))
		}
		return false
	}
	if c, ok := v.anchors[e.Seq]; ok {
		if c.Head != e.Hash {
			v.fail(e.Seq, fmt.Sprintf("event %d does not match the checkpoint signed %s: the log was rewritten up to here", e.Seq, c.Time.Format(time.RFC3339)))
			return false
		}
		v.matched++
		v.anchor = c
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
	r := Report{Events: v.seq - v.from, Head: v.head, Broken: v.broken, Unfinished: int64(len(v.open)),
		From: v.from, Checkpoints: v.matched, Anchor: v.anchor, Pruned: v.pruned}
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
