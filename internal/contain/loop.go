package contain

import (
	"fmt"
	"sync"
	"time"
)

// Bounds of [NewLoops].
const (
	loopMaxRepeats = 10_000
	loopMinWindow  = time.Millisecond
	loopMaxWindow  = 24 * time.Hour
)

// Loops detects runaway loops: an agent making the same call, with the same arguments,
// in the same context, over and over within a short window. It is safe for concurrent
// use.
//
// For each (context, tool, arguments) key it keeps the times of the latest
// maxRepeats+1 calls, so memory is bounded by maxKeys × (maxRepeats+1) timestamps plus
// a fixed overhead per key. Keys are held as 128-bit keyed hashes, so the strings
// passed in are not retained; two keys are confused only if their hashes collide
// (about n²/2¹²⁹ for n keys), which could only report a loop early.
//
// Keys are spread over shards (one per 64 keys of maxKeys, at most 32), each with its
// own lock and its share of maxKeys. Keys not seen for a window are forgotten as calls
// pass. When a new key arrives at a full shard whose keys are all still active, the
// least recently seen key is forgotten. Unlike a rate limit, which must not forget a
// drained bucket, a loop detector is a brake rather than an allowance: forgetting a
// key costs at most a late detection of that key's loop (it needs maxRepeats+1 calls
// again), never a call that should have been refused by a limit. State is per
// process. Create a Loops with [NewLoops]; the zero value is not usable.
type Loops struct {
	max    int   // identical calls allowed within the window
	window int64 // nanoseconds
	now    func() time.Time
	base   time.Time // times are held as nanoseconds since base
	seeds  rlSeeds
	// shards never changes after NewLoops; each guards its own entries.
	shards []loopShard
}

// loopShard is a lock and the entries it guards.
type loopShard struct {
	max int // entries this shard may hold

	// mu guards entries, every entry in it, and the recency list from newest to
	// oldest through the entries' older and newer links.
	mu      sync.Mutex
	entries map[rlKey]*loopEntry
	newest  *loopEntry
	oldest  *loopEntry
}

// loopEntry is one key's recent calls.
type loopEntry struct {
	key          rlKey
	newer, older *loopEntry
	// ring holds the times of the latest calls in order, from ring[start], n of them.
	// It grows by doubling up to maxRepeats+1 so that keys called once stay small.
	ring     []int64
	start, n int
}

// NewLoops returns a loop detector that allows maxRepeats identical calls (1 to
// 10,000) within window (1ms to 24h) and reports the next one as a loop. It tracks at
// most maxKeys keys (1 to 10,000,000; 0 means 100,000). now is the clock (time.Now if
// nil).
func NewLoops(maxRepeats int, window time.Duration, maxKeys int, now func() time.Time) (*Loops, error) {
	if maxRepeats < 1 || maxRepeats > loopMaxRepeats {
		return nil, fmt.Errorf("contain: loops: maxRepeats must be from 1 to %d, got %d", loopMaxRepeats, maxRepeats)
	}
	if window < loopMinWindow || window > loopMaxWindow {
		return nil, fmt.Errorf("contain: loops: window must be from %v to %v, got %v", loopMinWindow, loopMaxWindow, window)
	}
	caps, err := rlSplit(maxKeys)
	if err != nil {
		return nil, fmt.Errorf("contain: loops: %w", err)
	}
	if now == nil {
		now = time.Now
	}
	l := &Loops{
		max:    maxRepeats,
		window: int64(window),
		now:    now,
		base:   now(),
		seeds:  rlNewSeeds(),
		shards: make([]loopShard, len(caps)),
	}
	for i, c := range caps {
		l.shards[i] = loopShard{max: c, entries: map[rlKey]*loopEntry{}}
	}
	return l, nil
}

// Observe records one call of tool with arguments hashing to argsHash in the context
// ctxKey (an MCP session, a task or an agent). It returns how many identical calls,
// this one included, fall within the window, and whether that is more than
// maxRepeats. n never exceeds maxRepeats+1, the most that are remembered. A call
// reported as a loop still counts, so an agent that keeps hammering stays in a loop
// until it pauses for a whole window.
func (l *Loops) Observe(ctxKey, tool, argsHash string) (n int, loop bool) {
	k := l.seeds.keyOf(ctxKey, tool, argsHash)
	// The clock is read outside the lock; each entry keeps its times in order by
	// treating a time earlier than its newest as equal to it.
	t := l.now().Sub(l.base).Nanoseconds()
	s := &l.shards[k.hi%uint64(len(l.shards))]
	s.mu.Lock()
	defer s.mu.Unlock()
	// Entries idle for a window count nothing, so dropping them loses nothing; the
	// list is in order of last call, so they are all at its old end.
	for s.oldest != nil && t-s.oldest.last() >= l.window {
		s.remove(s.oldest)
	}
	e := s.entries[k]
	if e == nil {
		if len(s.entries) >= s.max {
			s.remove(s.oldest)
		}
		e = &loopEntry{key: k, ring: make([]int64, min(4, l.max+1))}
		s.entries[k] = e
	} else {
		s.unlink(e)
	}
	s.pushNewest(e)
	n = e.record(t, l.window, l.max+1)
	return n, n > l.max
}

// last returns the time of the entry's newest call; an entry is never empty.
func (e *loopEntry) last() int64 {
	return e.ring[(e.start+e.n-1)%len(e.ring)]
}

// record adds a call at t, forgetting calls outside the window and, beyond limit
// calls, the oldest, and returns how many calls it holds.
func (e *loopEntry) record(t, window int64, limit int) int {
	if e.n > 0 {
		t = max(t, e.last())
	}
	for e.n > 0 && t-e.ring[e.start] >= window {
		e.start = (e.start + 1) % len(e.ring)
		e.n--
	}
	if e.n == len(e.ring) {
		if len(e.ring) < limit {
			ring := make([]int64, min(2*len(e.ring), limit))
			for i := range e.n {
				ring[i] = e.ring[(e.start+i)%len(e.ring)]
			}
			e.ring, e.start = ring, 0
		} else {
			e.start = (e.start + 1) % len(e.ring)
			e.n--
		}
	}
	e.ring[(e.start+e.n)%len(e.ring)] = t
	e.n++
	return e.n
}

// pushNewest puts an unlinked entry at the new end of the list.
func (s *loopShard) pushNewest(e *loopEntry) {
	e.older, e.newer = s.newest, nil
	if s.newest != nil {
		s.newest.newer = e
	} else {
		s.oldest = e
	}
	s.newest = e
}

// unlink takes an entry out of the list.
func (s *loopShard) unlink(e *loopEntry) {
	if e.newer != nil {
		e.newer.older = e.older
	} else {
		s.newest = e.older
	}
	if e.older != nil {
		e.older.newer = e.newer
	} else {
		s.oldest = e.newer
	}
	e.newer, e.older = nil, nil
}

// remove forgets an entry.
func (s *loopShard) remove(e *loopEntry) {
	s.unlink(e)
	delete(s.entries, e.key)
}
