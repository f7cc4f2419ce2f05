package flow

import "time"

// AnyTool in a history question means every tool.
const AnyTool = "*"

// history is what a session has done: running counts and totals since it began, and the
// most recent calls for questions about a time window.
//
// Counts and totals are updated when a call runs, so asking costs a map lookup. A
// windowed question walks back from the newest call and stops at the first one outside
// the window; it never looks at more than the entries kept. When the window reaches back
// past the oldest entry kept and older calls were dropped, the answer is the whole
// session's count or total: an upper bound, so that an "at most" rule errs towards
// refusing.
type history struct {
	counts map[string]int64
	all    int64
	sums   map[sumKey]float64
	ring   []entry // grows as calls come, up to limit entries
	limit  int
	next   int
	// dropped says the ring has wrapped: older calls are no longer kept.
	dropped bool
}

type sumKey struct{ tool, arg string }

type entry struct {
	tool string
	at   int64 // unix nanos
	nums []numArg
}

type numArg struct {
	arg string
	v   float64
}

// newHistory keeps the last n calls. The ring grows with the session rather than being
// allocated whole: most sessions make a few calls, and a gateway holds thousands of them.
func newHistory(n int) history {
	return history{counts: map[string]int64{}, sums: map[sumKey]float64{}, limit: max(n, 1)}
}

// add records a call of tool with args at t. Only top-level numeric arguments are totalled.
func (h *history) add(tool string, args map[string]any, t time.Time) {
	h.counts[tool]++
	h.all++
	var nums []numArg
	for k, v := range args {
		if f, ok := v.(float64); ok {
			nums = append(nums, numArg{k, f})
			h.sums[sumKey{tool, k}] += f
		}
	}
	e := entry{tool: tool, at: t.UnixNano(), nums: nums}
	if len(h.ring) < h.limit {
		h.ring = append(h.ring, e)
		h.next = len(h.ring) % h.limit
		return
	}
	h.ring[h.next] = e
	h.next = (h.next + 1) % len(h.ring)
	h.dropped = true
}

func (h *history) count(tool string) int64 {
	if tool == AnyTool {
		return h.all
	}
	return h.counts[tool]
}

func (h *history) total(tool, arg string) float64 {
	if tool != AnyTool {
		return h.sums[sumKey{tool, arg}]
	}
	var t float64
	for k, v := range h.sums {
		if k.arg == arg {
			t += v
		}
	}
	return t
}

// walk calls f for the kept entries from the newest back to the first one before cutoff.
// It reports whether the window is complete: false when it reached the oldest kept entry,
// still inside the window, and older ones were dropped.
func (h *history) walk(cutoff int64, f func(*entry)) bool {
	n := len(h.ring)
	for i := 0; i < n; i++ {
		e := &h.ring[(h.next-1-i+2*n)%n]
		if e.at < cutoff {
			return true
		}
		f(e)
	}
	return !h.dropped
}

func (h *history) countWithin(tool string, d time.Duration, now time.Time) int64 {
	var n int64
	complete := h.walk(now.Add(-d).UnixNano(), func(e *entry) {
		if tool == AnyTool || e.tool == tool {
			n++
		}
	})
	if !complete {
		return h.count(tool)
	}
	return n
}

func (h *history) totalWithin(tool, arg string, d time.Duration, now time.Time) float64 {
	var t float64
	complete := h.walk(now.Add(-d).UnixNano(), func(e *entry) {
		if tool != AnyTool && e.tool != tool {
			return
		}
		for _, na := range e.nums {
			if na.arg == arg {
				t += na.v
			}
		}
	})
	if !complete {
		return h.total(tool, arg)
	}
	return t
}
