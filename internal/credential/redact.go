package credential

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"math/bits"
	"slices"
	"sync"
	"time"
)

// Redaction is what [Redactor.Redact] puts in place of a credential value.
const Redaction = "[REDACTED:credential]"

// Bounds of the redactor.
const (
	// MinRedactLen is the shortest value the redactor looks for. A shorter one is not
	// redacted: a 4-byte password such as "test" or "1234" would also match ordinary
	// words and numbers in every tool result, corrupting them, and where the redactions
	// land would reveal the value anyway.
	MinRedactLen = 8
	// maxRedactValues bounds the values remembered; beyond it, expired tokens are
	// forgotten first, then the tokens closest to expiry. Static secrets are never
	// forgotten.
	maxRedactValues = 10000
	// tokenGrace is how long an access or refresh token is still redacted after it
	// expired, and receiptGrace the same for receipts and subject tokens, which are made
	// per call and are many.
	tokenGrace   = 10 * time.Minute
	receiptGrace = time.Minute
	// window is the length of the anchor the matcher indexes; no pattern is shorter.
	window = 8
)

// Redactor replaces credential values in byte strings. It knows every value its broker
// has resolved or obtained: static secrets (and basic auth's user:password pair), access
// and refresh tokens, subject tokens and receipts. It finds each value of at least
// [MinRedactLen] bytes in these forms:
//
//   - raw;
//   - escaped as a JSON string's contents (a value holding '"', '\', control characters,
//     or '<', '>', '&', which Go's encoder escapes), with and without HTML escaping;
//   - base64, in the standard and URL alphabets, padded and unpadded; and where the value
//     sits inside a longer base64 text (the password inside a Basic credential), the
//     characters that encode only the value's bytes, at each of the three alignments.
//     The one or two characters at each end that mix the value's bits with its
//     neighbours' stay, so up to 4 bits of the value at each end may remain.
//
// It does not find values percent-encoded, split across writes, or transformed otherwise.
// It is safe for concurrent use.
type Redactor struct {
	now func() time.Time

	mu sync.RWMutex
	// values maps each value to the time it may be forgotten (zero: never); guarded by mu.
	values map[string]time.Time
	// m matches the patterns of values; guarded by mu (written under the write lock).
	m *matcher
	// pruneAt is the size of values at which expired values are next dropped; guarded by mu.
	pruneAt int
}

func newRedactor(now func() time.Time) *Redactor {
	return &Redactor{now: now, values: map[string]time.Time{}, m: newMatcher(0), pruneAt: 256}
}

// Add makes v known for good, like the static secrets the broker resolves itself: for
// credentials resolved elsewhere (a command upstream's environment). Values shorter than
// [MinRedactLen] are ignored; v is copied.
func (r *Redactor) Add(v []byte) { r.add(string(v), time.Time{}) }

// add makes v known until until (zero: forever); callers add a grace period to a token's
// expiry. Values shorter than MinRedactLen are ignored.
func (r *Redactor) add(v string, until time.Time) {
	if len(v) < MinRedactLen {
		return
	}
	r.mu.RLock()
	old, ok := r.values[v]
	r.mu.RUnlock()
	if ok && (old.IsZero() || !until.IsZero() && !until.After(old)) {
		return // the common case: a static secret resolved again
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if old, ok := r.values[v]; ok {
		if !old.IsZero() && (until.IsZero() || until.After(old)) {
			r.values[v] = until
		}
		return
	}
	r.values[v] = until
	if len(r.values) >= r.pruneAt {
		r.prune()
		return // prune rebuilt the matcher, v included
	}
	if !r.m.add(v) {
		r.rebuild()
	}
}

// prune drops the values whose time has passed and, beyond maxRedactValues, the ones that
// may be forgotten first (down to three quarters of the bound, so that the next prune is
// far off), then rebuilds the matcher. Called with mu held for writing.
func (r *Redactor) prune() {
	now := r.now()
	var expiring []string
	for v, until := range r.values {
		switch {
		case until.IsZero():
		case until.Before(now):
			delete(r.values, v)
		default:
			expiring = append(expiring, v)
		}
	}
	if len(r.values) > maxRedactValues && len(expiring) > 0 {
		slices.SortFunc(expiring, func(a, b string) int { return r.values[a].Compare(r.values[b]) })
		drop := min(len(r.values)-maxRedactValues*3/4, len(expiring))
		for _, v := range expiring[:drop] {
			delete(r.values, v)
		}
	}
	r.pruneAt = min(max(2*len(r.values), 256), maxRedactValues+1)
	r.rebuild()
}

// rebuild makes a matcher for every value, with room for as many again: a value has at
// most 13 patterns. Called with mu held for writing.
func (r *Redactor) rebuild() {
	m := newMatcher(2 * 13 * len(r.values))
	for v := range r.values {
		m.add(v)
	}
	r.m = m
}

// Redact returns b with every form of every known value replaced by [Redaction], and how
// many stretches it replaced (overlapping or adjacent matches count once). When nothing
// matches it returns b itself, not a copy.
func (r *Redactor) Redact(b []byte) ([]byte, int) {
	r.mu.RLock()
	var found []span
	r.m.scan(b, func(s span) bool {
		found = append(found, s)
		return true
	})
	r.mu.RUnlock()
	if len(found) == 0 {
		return b, 0
	}
	// scan reports matches in the order of their anchors, not of their starts.
	slices.SortFunc(found, func(x, y span) int { return x.start - y.start })
	out := make([]byte, 0, len(b))
	n, last := 0, 0 // last: end of the input copied to out so far
	cur := found[0]
	flush := func() {
		out = append(out, b[last:cur.start]...)
		out = append(out, Redaction...)
		last = cur.end
		n++
	}
	for _, s := range found[1:] {
		if s.start <= cur.end {
			cur.end = max(cur.end, s.end)
			continue
		}
		flush()
		cur = s
	}
	flush()
	return append(out, b[last:]...), n
}

// Contains reports whether b holds any form of a known value.
func (r *Redactor) Contains(b []byte) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	found := false
	r.m.scan(b, func(span) bool { found = true; return false })
	return found
}

// redactString is Redact for strings.
func (r *Redactor) redactString(s string) string {
	out, n := r.Redact([]byte(s))
	if n == 0 {
		return s
	}
	return string(out)
}

// patterns returns the forms of v the redactor looks for, each at least window bytes.
func patterns(v string) []string {
	out := []string{v}
	add := func(p string) {
		if len(p) >= window && !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	for _, html := range []bool{true, false} {
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(html)
		if enc.Encode(v) == nil {
			j := bytes.TrimSpace(buf.Bytes())
			add(string(j[1 : len(j)-1]))
		}
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding} {
		add(enc.EncodeToString([]byte(v)))
		raw := enc.WithPadding(base64.NoPadding)
		add(raw.EncodeToString([]byte(v)))
		// Inside a longer base64 text v starts k bytes into a 3-byte group. Character i of
		// the encoding of k filler bytes followed by v covers bits [6i, 6i+6); it encodes
		// only v when those bits lie within [8k, 8k+8len(v)).
		for k := range 3 {
			stream := make([]byte, k, k+len(v))
			stream = append(stream, v...)
			e := raw.EncodeToString(stream)
			first, last := (8*k+5)/6, (8*k+8*len(v))/6
			add(e[first:last])
		}
	}
	return out
}

// span is where a pattern matched: b[start:end].
type span struct{ start, end int }

// anchored is a pattern indexed by the window bytes at off.
type anchored struct {
	p   string
	off int
}

// matcher finds many patterns in one pass. Each pattern is indexed by one window of 8 of
// its bytes, its anchor, chosen among its start, middle and end as the one fewest patterns
// share (JWTs, for one, all start alike). At each position of the input, a Bloom-like bit
// filter over the anchors rules out almost every position at the cost of one load, one
// multiplication and one bit test; the rest are checked against the patterns with that
// anchor. Not safe for concurrent writes.
type matcher struct {
	filter   []uint64
	shift    uint // 64 - log2(len(filter)*64)
	byAnchor map[uint64][]anchored
	all      map[string]struct{} // every pattern, to add each once
}

// newMatcher returns a matcher sized for about n patterns: 16 filter bits per pattern, at
// least 2^16 bits, so a position passes the filter with probability below 1/16.
func newMatcher(n int) *matcher {
	nbits := 1 << 16
	for nbits < 16*n {
		nbits <<= 1
	}
	return &matcher{
		filter:   make([]uint64, nbits/64),
		shift:    uint(64 - bits.TrailingZeros(uint(nbits))),
		byAnchor: map[uint64][]anchored{},
		all:      map[string]struct{}{},
	}
}

const hashMul = 0x9E3779B97F4A7C15 // 2^64 / golden ratio: Fibonacci hashing

func (m *matcher) slot(w uint64) uint64 { return (w * hashMul) >> m.shift }

func windowAt(p string, off int) uint64 {
	return binary.LittleEndian.Uint64([]byte(p[off : off+window]))
}

// add adds v's patterns, and reports false if the filter is now too full to be useful (the
// caller rebuilds a bigger one).
func (m *matcher) add(v string) bool {
	for _, p := range patterns(v) {
		if _, dup := m.all[p]; dup {
			continue
		}
		m.all[p] = struct{}{}
		off := len(p) - window
		for _, o := range []int{(len(p) - window) / 2, 0} {
			if len(m.byAnchor[windowAt(p, o)]) < len(m.byAnchor[windowAt(p, off)]) {
				off = o
			}
		}
		w := windowAt(p, off)
		m.byAnchor[w] = append(m.byAnchor[w], anchored{p: p, off: off})
		h := m.slot(w)
		m.filter[h>>6] |= 1 << (h & 63)
	}
	return 16*len(m.all) <= len(m.filter)*64
}

// scan calls fn with every match of every pattern in b, in the order of the matches'
// anchors, until fn returns false.
func (m *matcher) scan(b []byte, fn func(span) bool) {
	if len(m.all) == 0 {
		return
	}
	filter, shift, mask := m.filter, m.shift, uint64(len(m.filter)-1)
	for i := 0; i+window <= len(b); i++ {
		w := binary.LittleEndian.Uint64(b[i : i+window])
		h := (w * hashMul) >> shift
		if filter[(h>>6)&mask]&(1<<(h&63)) == 0 {
			continue
		}
		for _, a := range m.byAnchor[w] {
			start := i - a.off
			if start >= 0 && len(b)-start >= len(a.p) && string(b[start:start+len(a.p)]) == a.p {
				if !fn(span{start, start + len(a.p)}) {
					return
				}
			}
		}
	}
}
