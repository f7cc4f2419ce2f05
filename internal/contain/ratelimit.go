package contain

import (
	"encoding/binary"
	"fmt"
	"hash/maphash"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Bounds of the rate limiter and loop detector.
const (
	// rlMaxRate is the highest rate, in tokens per second, that ParseRate accepts and
	// NewLimiter allows; faster than this is not a limit worth enforcing per call.
	rlMaxRate = 1e6
	// rlMaxBurst is the largest burst NewLimiter allows.
	rlMaxBurst = 1_000_000
	// rlDefaultKeys is the key bound of a Limiter or Loops constructed with 0.
	rlDefaultKeys = 100_000
	// rlMaxKeys is the largest key bound a Limiter or Loops accepts.
	rlMaxKeys = 10_000_000

	// rlMaxRateLen bounds a rate string after trimming; the longest sensible one,
	// "3600000000.000000000/h", is 22 bytes.
	rlMaxRateLen = 32
	// rlMaxDecimals bounds the digits after the point so that every accepted rate can
	// be written back exactly in its own unit (and the smallest is 1e-9/h, not one
	// that underflows to zero).
	rlMaxDecimals = 9
	// rlMaxShards is the most shards a key set is split into; rlMinPerShard keeps
	// small bounds in one shard so that they are exact rather than split into slivers
	// that fill long before the whole does.
	rlMaxShards   = 32
	rlMinPerShard = 64
	// rlEpsilon absorbs floating-point rounding in refills so that a caller who waits
	// the retryAfter it was given is not refused for want of 1e-16 of a token.
	rlEpsilon = 1e-9
)

// ParseRate parses a rate written "N/s", "N/m" or "N/h" (per second, minute or hour) and
// returns it in tokens per second. N is a positive decimal number such as "10", "600"
// or "1.5": digits, optionally a point and at most 9 more digits; no sign, exponent or
// inner spaces. Whitespace around the whole is ignored. The rate must be at most
// 1e6 per second, and the trimmed string at most 32 bytes.
func ParseRate(s string) (float64, error) {
	t := strings.TrimSpace(s)
	if len(t) > rlMaxRateLen {
		return 0, fmt.Errorf("contain: parse rate: must be at most %d bytes, got %d", rlMaxRateLen, len(t))
	}
	num, unit, ok := strings.Cut(t, "/")
	if !ok {
		return 0, fmt.Errorf("contain: parse rate %q: want N/s, N/m or N/h", t)
	}
	var per float64
	switch unit {
	case "s":
		per = 1
	case "m":
		per = 60
	case "h":
		per = 3600
	default:
		return 0, fmt.Errorf("contain: parse rate %q: unit must be s, m or h, got %q", t, unit)
	}
	if !rlDecimal(num) {
		return 0, fmt.Errorf("contain: parse rate %q: N must be a decimal number with at most %d digits after the point, got %q", t, rlMaxDecimals, num)
	}
	n, err := strconv.ParseFloat(num, 64)
	if err != nil || !(n > 0) {
		return 0, fmt.Errorf("contain: parse rate %q: N must be > 0, got %q", t, num)
	}
	r := n / per
	if r > rlMaxRate {
		return 0, fmt.Errorf("contain: parse rate %q: must be at most 1e6 per second, got %g per second", t, r)
	}
	return r, nil
}

// rlDecimal reports whether s is digits, optionally followed by a point and 1 to
// rlMaxDecimals digits.
func rlDecimal(s string) bool {
	whole, frac, dot := strings.Cut(s, ".")
	if whole == "" || (dot && (frac == "" || len(frac) > rlMaxDecimals)) {
		return false
	}
	for _, part := range [2]string{whole, frac} {
		for i := range len(part) {
			if part[i] < '0' || part[i] > '9' {
				return false
			}
		}
	}
	return true
}

// Limiter is a set of token buckets, one per key (an agent, a tool, a user), all with
// the same rate and burst. It is safe for concurrent use.
//
// A bucket holds up to burst tokens and refills continuously at the rate; a key never
// seen before starts full. Memory is bounded: at most maxKeys buckets are held, each
// under a 128-bit keyed hash of its key, so a bucket costs the same whatever the key's
// length. Two distinct keys share a bucket only if their hashes collide (about
// n²/2¹²⁹ for n keys, with a secret per-Limiter seed), and sharing only refuses sooner.
//
// Keys are spread over shards (one per 64 keys of maxKeys, at most 32), each with its
// own lock and its share of maxKeys, so that calls for different keys rarely contend.
// When a new key arrives at a full shard, the buckets that have refilled to full are
// dropped (a full bucket is the same as no bucket); if none has, the call is refused
// rather than a partly drained bucket forgotten, since forgetting would hand its key a
// fresh burst. A shard may thus refuse new keys while others still have room. State
// is per process; or, for a Limiter from [NewSharedLimiter], in a store that replicas
// share. Create a Limiter with [NewLimiter] or [NewSharedLimiter]; the zero value is not
// usable.
type Limiter struct {
	// OnError, if set before the Limiter is first used, receives each error of a shared
	// Limiter's store, for the log: Allow refuses the call and has no error to return.
	OnError func(error)

	rate  float64 // tokens per second
	burst float64
	now   func() time.Time
	base  time.Time // times are held as nanoseconds since base
	seeds rlSeeds
	// shards never changes after NewLimiter; each guards its own buckets.
	shards []rlShard
	// sh, when set, holds the buckets in a store instead of shards; see shared.go.
	sh *shRate
}

// rlShard is a lock and the buckets it guards.
type rlShard struct {
	max int // buckets this shard may hold

	// mu guards buckets and sweepAt.
	mu      sync.Mutex
	buckets map[rlKey]rlBucket
	// sweepAt is a lower bound on when any bucket in the shard is next full. A shard
	// at its bound is scanned only once it has passed, not on every refused call, so
	// that a caller cycling through new keys cannot make each refusal cost a scan.
	sweepAt int64
}

// rlBucket is one key's bucket as of last (nanoseconds since Limiter.base).
type rlBucket struct {
	tokens float64
	last   int64
}

// NewLimiter returns a Limiter whose buckets refill at perSecond tokens per second
// (more than 0, at most 1e6) and hold at most burst tokens (1 to 1,000,000). It
// tracks at most maxKeys keys (1 to 10,000,000; 0 means 100,000). now is
// the clock (time.Now if nil).
func NewLimiter(perSecond float64, burst int, maxKeys int, now func() time.Time) (*Limiter, error) {
	if !(perSecond > 0 && perSecond <= rlMaxRate) {
		return nil, fmt.Errorf("contain: limiter: rate must be more than 0 and at most 1e6 per second, got %g", perSecond)
	}
	if burst < 1 || burst > rlMaxBurst {
		return nil, fmt.Errorf("contain: limiter: burst must be from 1 to %d, got %d", rlMaxBurst, burst)
	}
	caps, err := rlSplit(maxKeys)
	if err != nil {
		return nil, fmt.Errorf("contain: limiter: %w", err)
	}
	if now == nil {
		now = time.Now
	}
	l := &Limiter{
		rate:   perSecond,
		burst:  float64(burst),
		now:    now,
		base:   now(),
		seeds:  rlNewSeeds(),
		shards: make([]rlShard, len(caps)),
	}
	for i, c := range caps {
		l.shards[i] = rlShard{max: c, buckets: map[rlKey]rlBucket{}, sweepAt: math.MinInt64}
	}
	return l, nil
}

// Allow takes one token from key's bucket and reports true. When the bucket has no
// whole token it takes nothing and reports false with how long until one is due,
// rounded up to the millisecond and at least 1ms. When key is new and its shard is
// full of partly drained buckets, Allow refuses with a retryAfter of 1s; so does a
// shared Limiter whose store fails or does not answer in time.
func (l *Limiter) Allow(key string) (ok bool, retryAfter time.Duration) {
	if l.sh != nil {
		return l.shAllow(key)
	}
	k := l.seeds.key(key)
	// The clock is read outside the lock; calls that race may apply their times out
	// of order, which refill ignores rather than count twice.
	t := l.now().Sub(l.base).Nanoseconds()
	s := &l.shards[k.hi%uint64(len(l.shards))]
	s.mu.Lock()
	defer s.mu.Unlock()
	b, found := s.buckets[k]
	if found {
		b = l.refill(b, t)
	} else {
		if len(s.buckets) >= s.max && l.sweep(s, t) == 0 {
			return false, time.Second
		}
		b = rlBucket{tokens: l.burst, last: t}
	}
	if b.tokens < 1-rlEpsilon {
		s.buckets[k] = b
		return false, l.wait(1 - b.tokens)
	}
	b.tokens--
	s.buckets[k] = b
	if !found {
		s.sweepAt = min(s.sweepAt, l.fullAt(b))
	}
	return true, 0
}

// refill adds the tokens earned since b.last. A time before b.last (a racing call or
// a clock set back) earns nothing.
func (l *Limiter) refill(b rlBucket, t int64) rlBucket {
	if t > b.last {
		b.tokens = min(l.burst, b.tokens+float64(t-b.last)/1e9*l.rate)
		b.last = t
	}
	return b
}

// wait returns how long until need more tokens are earned, rounded up to the
// millisecond, at least 1ms and at most the longest Duration. A wait within rlEpsilon
// (relative) of a whole millisecond is rounded down to it: the noise comes from float
// arithmetic, and Allow's own rlEpsilon grants the call once it has passed.
func (l *Limiter) wait(need float64) time.Duration {
	const maxMS = math.MaxInt64 / int64(time.Millisecond)
	x := need * 1000 / l.rate
	ms := math.Ceil(x - x*rlEpsilon)
	switch {
	case !(ms >= 1):
		return time.Millisecond
	case ms >= float64(maxMS):
		return time.Duration(maxMS) * time.Millisecond
	}
	return time.Duration(ms) * time.Millisecond
}

// fullAt returns when b will have refilled to burst, saturating at the largest time.
func (l *Limiter) fullAt(b rlBucket) int64 {
	d := math.Ceil((l.burst - b.tokens) / l.rate * 1e9)
	if !(d < float64(math.MaxInt64-b.last)) {
		return math.MaxInt64
	}
	return b.last + int64(d)
}

// sweep drops the shard's buckets that are full at t and returns how many it dropped.
// Being full is judged by fullAt alone so that sweep and sweepAt agree. s.mu must be
// held.
func (l *Limiter) sweep(s *rlShard, t int64) int {
	if t < s.sweepAt {
		return 0
	}
	n, next := 0, int64(math.MaxInt64)
	for k, b := range s.buckets {
		at := l.fullAt(b)
		if at <= t {
			delete(s.buckets, k)
			n++
			continue
		}
		next = min(next, at)
	}
	s.sweepAt = next
	return n
}

// rlSplit checks a key bound (0 for the default) and splits it into per-shard bounds
// that add up to it exactly.
func rlSplit(maxKeys int) ([]int, error) {
	if maxKeys == 0 {
		maxKeys = rlDefaultKeys
	}
	if maxKeys < 1 || maxKeys > rlMaxKeys {
		return nil, fmt.Errorf("maxKeys must be from 1 to %d (0 for %d), got %d", rlMaxKeys, rlDefaultKeys, maxKeys)
	}
	n := min(max(maxKeys/rlMinPerShard, 1), rlMaxShards)
	caps := make([]int, n)
	for i := range caps {
		caps[i] = maxKeys / n
		if i < maxKeys%n {
			caps[i]++
		}
	}
	return caps, nil
}

// rlKey is a 128-bit keyed hash standing in for a key: fixed in size whatever the key,
// and, with secret seeds, not something a caller can aim at another key's entry.
type rlKey struct{ hi, lo uint64 }

// rlSeeds are the two independent seeds of an rlKey.
type rlSeeds struct{ hi, lo maphash.Seed }

func rlNewSeeds() rlSeeds { return rlSeeds{maphash.MakeSeed(), maphash.MakeSeed()} }

// key hashes one string.
func (s rlSeeds) key(k string) rlKey {
	return rlKey{maphash.String(s.hi, k), maphash.String(s.lo, k)}
}

// keyOf hashes a tuple of strings, each prefixed with its length so that ("ab", "c")
// and ("a", "bc") differ.
func (s rlSeeds) keyOf(parts ...string) rlKey {
	var h maphash.Hash
	sum := func(seed maphash.Seed) uint64 {
		h.SetSeed(seed)
		var n [8]byte
		for _, p := range parts {
			binary.LittleEndian.PutUint64(n[:], uint64(len(p)))
			h.Write(n[:])
			h.WriteString(p)
		}
		return h.Sum64()
	}
	return rlKey{sum(s.hi), sum(s.lo)}
}
