package contain

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

var rlParseTests = []struct {
	in      string
	want    float64
	wantErr string // a substring of the error; "" for success
}{
	{in: "10/s", want: 10},
	{in: "600/m", want: 10},
	{in: "3600/h", want: 1},
	{in: "1.5/s", want: 1.5},
	{in: "0.5/m", want: 0.5 / 60},
	{in: "  7/h\n", want: 7.0 / 3600},
	{in: "007/s", want: 7},
	{in: "1000000/s", want: 1e6},
	{in: "60000000/m", want: 1e6},
	{in: "3600000000/h", want: 1e6},
	{in: "0.000000001/h", want: 1e-9 / 3600},
	{in: "1.123456789/s", want: 1.123456789},

	{in: "", wantErr: "want N/s, N/m or N/h"},
	{in: "10", wantErr: "want N/s, N/m or N/h"},
	{in: "10/d", wantErr: "unit must be s, m or h"},
	{in: "10/", wantErr: "unit must be s, m or h"},
	{in: "10/S", wantErr: "unit must be s, m or h"},
	{in: "10/s/s", wantErr: "unit must be s, m or h"},
	{in: "10/ s", wantErr: "unit must be s, m or h"},
	{in: "10 /s", wantErr: "N must be a decimal number"},
	{in: "/s", wantErr: "N must be a decimal number"},
	{in: "-1/s", wantErr: "N must be a decimal number"},
	{in: "+1/s", wantErr: "N must be a decimal number"},
	{in: "1e3/s", wantErr: "N must be a decimal number"},
	{in: ".5/s", wantErr: "N must be a decimal number"},
	{in: "5./s", wantErr: "N must be a decimal number"},
	{in: "1.2.3/s", wantErr: "N must be a decimal number"},
	{in: "0x10/s", wantErr: "N must be a decimal number"},
	{in: "Inf/s", wantErr: "N must be a decimal number"},
	{in: "NaN/s", wantErr: "N must be a decimal number"},
	{in: "1_000/s", wantErr: "N must be a decimal number"},
	{in: "0.0000000001/s", wantErr: "at most 9 digits after the point"},
	{in: "0/s", wantErr: "N must be > 0"},
	{in: "0.000000000/h", wantErr: "N must be > 0"},
	{in: "1000001/s", wantErr: "must be at most 1e6 per second"},
	{in: "60000001/m", wantErr: "must be at most 1e6 per second"},
	{in: "3600000001/h", wantErr: "must be at most 1e6 per second"},
	{in: "99999999999999999999999999999/s", wantErr: "must be at most 1e6 per second"},
	{in: strings.Repeat("1", 40) + "/s", wantErr: "must be at most 32 bytes"},
}

func TestParseRate(t *testing.T) {
	t.Parallel()
	for _, tt := range rlParseTests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseRate(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseRate(%q) = %v, %v, want error containing %q", tt.in, got, err, tt.wantErr)
				}
				if !strings.HasPrefix(err.Error(), "contain: parse rate") {
					t.Errorf("ParseRate(%q) error %q lacks the contain: parse rate prefix", tt.in, err)
				}
				return
			}
			if err != nil || math.Abs(got-tt.want) > 1e-12*tt.want {
				t.Fatalf("ParseRate(%q) = %v, %v, want %v", tt.in, got, err, tt.want)
			}
		})
	}
}

func FuzzParseRate(f *testing.F) {
	for _, tt := range rlParseTests {
		f.Add(tt.in)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRate(s)
		if err != nil {
			if r != 0 {
				t.Fatalf("ParseRate(%q) = %v with error %v, want 0", s, r, err)
			}
			return
		}
		if !(r > 0 && r <= 1e6) {
			t.Fatalf("ParseRate(%q) = %v, want a rate in (0, 1e6]", s, r)
		}
		// Every accepted N has at most 9 decimals, so per hour the rate is exactly
		// representable with 9 decimals too.
		f := strconv.FormatFloat(r*3600, 'f', 9, 64) + "/h"
		r2, err := ParseRate(f)
		if err != nil {
			t.Fatalf("ParseRate(%q) (formatted from ParseRate(%q) = %v): %v", f, s, r, err)
		}
		if math.Abs(r2-r) > 1e-9*r {
			t.Fatalf("ParseRate(%q) = %v, want %v as ParseRate(%q)", f, r2, r, s)
		}
	})
}

func TestNewLimiterValidates(t *testing.T) {
	t.Parallel()
	tests := []struct {
		rate    float64
		burst   int
		maxKeys int
		wantErr string
	}{
		{0, 1, 0, "contain: limiter: rate must be more than 0 and at most 1e6 per second, got 0"},
		{-1, 1, 0, "rate must be more than 0"},
		{math.NaN(), 1, 0, "rate must be more than 0"},
		{math.Inf(1), 1, 0, "rate must be more than 0"},
		{1e6 + 1, 1, 0, "rate must be more than 0"},
		{1, 0, 0, "contain: limiter: burst must be from 1 to 1000000, got 0"},
		{1, 1_000_001, 0, "burst must be from 1 to 1000000, got 1000001"},
		{1, 1, -1, "contain: limiter: maxKeys must be from 1 to 10000000 (0 for 100000), got -1"},
		{1, 1, 10_000_001, "maxKeys must be from 1 to 10000000"},
		{1e6, 1_000_000, 10_000_000, ""},
		{1e-12, 1, 1, ""},
	}
	for _, tt := range tests {
		l, err := NewLimiter(tt.rate, tt.burst, tt.maxKeys, nil)
		if tt.wantErr == "" {
			if err != nil || l == nil {
				t.Errorf("NewLimiter(%v, %d, %d) = %v, %v, want a limiter", tt.rate, tt.burst, tt.maxKeys, l, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("NewLimiter(%v, %d, %d) error = %v, want %q", tt.rate, tt.burst, tt.maxKeys, err, tt.wantErr)
		}
	}
}

// rlAllow calls l.Allow and fails the test unless it returns want and wantRetry.
func rlAllow(t testing.TB, l *Limiter, key string, want bool, wantRetry time.Duration) {
	t.Helper()
	ok, retry := l.Allow(key)
	if ok != want || retry != wantRetry {
		t.Fatalf("Allow(%q) = %v, %v, want %v, %v", key, ok, retry, want, wantRetry)
	}
}

func TestLimiterBurstThenRefill(t *testing.T) {
	t.Parallel()
	now := time.Unix(1000, 0)
	l, err := NewLimiter(2, 3, 0, func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		rlAllow(t, l, "agent", true, 0)
	}
	rlAllow(t, l, "agent", false, 500*time.Millisecond)
	now = now.Add(499 * time.Millisecond)
	rlAllow(t, l, "agent", false, time.Millisecond)
	now = now.Add(time.Millisecond)
	rlAllow(t, l, "agent", true, 0)
	rlAllow(t, l, "agent", false, 500*time.Millisecond)

	// A long pause refills to the burst, not beyond.
	now = now.Add(time.Hour)
	for range 3 {
		rlAllow(t, l, "agent", true, 0)
	}
	rlAllow(t, l, "agent", false, 500*time.Millisecond)

	// A clock set back earns nothing and does not disturb the bucket.
	now = now.Add(-time.Minute)
	rlAllow(t, l, "agent", false, 500*time.Millisecond)
}

func TestLimiterRetryAfter(t *testing.T) {
	t.Parallel()
	tests := []struct {
		rate      float64
		burst     int
		wantRetry time.Duration
	}{
		{rate: 1, burst: 1, wantRetry: time.Second},
		{rate: 3, burst: 1, wantRetry: 334 * time.Millisecond},   // 333.3ms rounds up
		{rate: 1.5, burst: 2, wantRetry: 667 * time.Millisecond}, // 666.7ms rounds up
		{rate: 1.0 / 60, burst: 1, wantRetry: time.Minute},
		{rate: 1e6, burst: 5, wantRetry: time.Millisecond}, // 1µs rounds up to 1ms
		// 1e12s is beyond the longest Duration, so retryAfter saturates at ~292 years.
		{rate: 1e-12, burst: 1, wantRetry: math.MaxInt64 / time.Millisecond * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.rate), func(t *testing.T) {
			now := time.Unix(0, 0)
			l, err := NewLimiter(tt.rate, tt.burst, 0, func() time.Time { return now })
			if err != nil {
				t.Fatal(err)
			}
			for range tt.burst {
				rlAllow(t, l, "k", true, 0)
			}
			rlAllow(t, l, "k", false, tt.wantRetry)
			if tt.rate > 1e-12 {
				// Waiting exactly retryAfter is enough.
				now = now.Add(tt.wantRetry)
				rlAllow(t, l, "k", true, 0)
			}
		})
	}
}

func TestLimiterFractionalRate(t *testing.T) {
	t.Parallel()
	now := time.Unix(0, 0)
	l, err := NewLimiter(0.25, 1, 0, func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	granted := 0
	// At 0.25/s a bucket that starts full grants at 0s, 4s, 8s, ... 96s: 25 calls.
	for range 1000 {
		if ok, _ := l.Allow("k"); ok {
			granted++
		}
		now = now.Add(100 * time.Millisecond)
	}
	if granted != 25 {
		t.Errorf("granted %d calls in 100s at 0.25/s with burst 1, want 25", granted)
	}
}

func TestLimiterKeysIndependent(t *testing.T) {
	t.Parallel()
	now := time.Unix(0, 0)
	l, err := NewLimiter(1, 2, 0, func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"a", "b", "", strings.Repeat("x", 1<<16)} {
		rlAllow(t, l, k, true, 0)
		rlAllow(t, l, k, true, 0)
		rlAllow(t, l, k, false, time.Second)
	}
}

func TestLimiterKeyBound(t *testing.T) {
	t.Parallel()
	now := time.Unix(0, 0)
	l, err := NewLimiter(1, 2, 2, func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	rlAllow(t, l, "a", true, 0) // a: 1 of 2, full in 1s
	now = now.Add(500 * time.Millisecond)
	rlAllow(t, l, "b", true, 0) // b: 1 of 2, full in 1s
	// The bound is reached and neither bucket is full: a new key is refused, and the
	// known ones are unaffected.
	rlAllow(t, l, "c", false, time.Second)
	rlAllow(t, l, "a", true, 0) // a refilled to 1.5 and is down to 0.5, full at 2s
	now = now.Add(time.Second)
	// At 1.5s b has refilled and makes room; a has not.
	rlAllow(t, l, "c", true, 0)
	if got := len(l.shards[0].buckets); got != 2 {
		t.Errorf("holding %d buckets after evicting the full one, want 2", got)
	}
	// b was forgotten: it starts again with a full bucket, evicting nothing since
	// neither a nor c is full.
	rlAllow(t, l, "b", false, time.Second)
	now = now.Add(time.Hour)
	rlAllow(t, l, "b", true, 0)
	rlAllow(t, l, "b", true, 0)
	rlAllow(t, l, "b", false, time.Second)
}

func TestLimiterKeyBoundNewBucketFull(t *testing.T) {
	t.Parallel()
	now := time.Unix(0, 0)
	l, err := NewLimiter(1, 3, 2, func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		rlAllow(t, l, "a", true, 0) // a: empty, full at 3s
	}
	rlAllow(t, l, "b", true, 0)            // b: full at 1s
	rlAllow(t, l, "c", false, time.Second) // nothing is full
	now = now.Add(time.Second)
	rlAllow(t, l, "c", true, 0) // b is full and dropped; c is full at 2s
	now = now.Add(time.Second)
	// c, added after the last sweep, is full before a: it must be found.
	rlAllow(t, l, "d", true, 0)
	now = now.Add(500 * time.Millisecond)
	rlAllow(t, l, "e", false, time.Second) // d is full at 3s, a at 3s
	now = now.Add(500 * time.Millisecond)
	rlAllow(t, l, "e", true, 0)
	if got := len(l.shards[0].buckets); got != 1 {
		t.Errorf("holding %d buckets, want only e's once a and d are full", got)
	}
}

func TestRLSplit(t *testing.T) {
	t.Parallel()
	for _, maxKeys := range []int{0, 1, 2, 63, 64, 127, 128, 1000, 2047, 2048, 100_001, 10_000_000} {
		caps, err := rlSplit(maxKeys)
		if err != nil {
			t.Fatalf("rlSplit(%d): %v", maxKeys, err)
		}
		want := maxKeys
		if want == 0 {
			want = 100_000
		}
		sum := 0
		for _, c := range caps {
			if c < 1 {
				t.Errorf("rlSplit(%d) = %v, has an empty shard", maxKeys, caps)
			}
			sum += c
		}
		if sum != want || len(caps) > 32 || (want < 128 && len(caps) != 1) {
			t.Errorf("rlSplit(%d) = %d shards holding %d, want at most 32 holding %d", maxKeys, len(caps), sum, want)
		}
	}
}

func TestLimiterConcurrent(t *testing.T) {
	t.Parallel()
	const (
		rate    = 100.0
		burst   = 10
		workers = 50
		calls   = 200
		step    = 100 * time.Microsecond
	)
	start := time.Unix(0, 0)
	var clock atomic.Int64
	now := func() time.Time { return start.Add(time.Duration(clock.Load())) }
	l, err := NewLimiter(rate, burst, 0, now)
	if err != nil {
		t.Fatal(err)
	}
	var granted, other atomic.Int64
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for range calls {
				clock.Add(int64(step))
				if ok, _ := l.Allow("shared"); ok {
					granted.Add(1)
				}
				if ok, _ := l.Allow(fmt.Sprint("own", w)); ok {
					other.Add(1)
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Duration(clock.Load()).Seconds()
	limit := int64(burst + rate*elapsed)
	if g := granted.Load(); g > limit || g < burst {
		t.Errorf("granted %d calls on one key over %vs at %v/s with burst %d, want %d to %d", g, elapsed, rate, burst, burst, limit)
	}
	if g := other.Load(); g > workers*limit || g < workers*burst {
		t.Errorf("granted %d calls over %d keys, want %d to %d", g, workers, workers*burst, workers*limit)
	}
}

func BenchmarkLimiterAllow(b *testing.B) {
	l, err := NewLimiter(1e6, 1000, 0, nil)
	if err != nil {
		b.Fatal(err)
	}
	keys := make([]string, 10_000)
	for i := range keys {
		keys[i] = fmt.Sprintf("agent-%d", i)
	}
	var seq atomic.Uint32
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := int(seq.Add(7919))
		for pb.Next() {
			l.Allow(keys[i%len(keys)])
			i++
		}
	})
}

// BenchmarkLimiterRefuseAtBound measures refusing new keys when every shard is full of
// drained buckets: the case sweepAt keeps from scanning a shard per call.
func BenchmarkLimiterRefuseAtBound(b *testing.B) {
	now := time.Unix(0, 0)
	l, err := NewLimiter(1, 10, 0, func() time.Time { return now })
	if err != nil {
		b.Fatal(err)
	}
	// Fill every shard: stop after 1000 refusals in a row, which a shard with room
	// would survive with probability (31/32)^1000.
	for i, refused := 0, 0; refused < 1000; i++ {
		if ok, _ := l.Allow(fmt.Sprint("k", i)); ok {
			refused = 0
		} else {
			refused++
		}
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if ok, _ := l.Allow(strconv.Itoa(i)); ok {
			b.Fatal("new key allowed at the bound")
		}
		i++
	}
}
