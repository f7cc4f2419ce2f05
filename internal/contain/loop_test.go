package contain

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// loopObserve calls l.Observe and fails the test unless it returns wantN and a loop
// exactly when wantLoop.
func loopObserve(t testing.TB, l *Loops, ctxKey, tool, args string, wantN int, wantLoop bool) {
	t.Helper()
	n, loop := l.Observe(ctxKey, tool, args)
	if n != wantN || loop != wantLoop {
		t.Fatalf("Observe(%q, %q, %q) = %d, %v, want %d, %v", ctxKey, tool, args, n, loop, wantN, wantLoop)
	}
}

func TestNewLoopsValidates(t *testing.T) {
	t.Parallel()
	tests := []struct {
		repeats int
		window  time.Duration
		maxKeys int
		wantErr string
	}{
		{0, time.Minute, 0, "contain: loops: maxRepeats must be from 1 to 10000, got 0"},
		{10_001, time.Minute, 0, "maxRepeats must be from 1 to 10000, got 10001"},
		{3, 0, 0, "contain: loops: window must be from 1ms to 24h0m0s, got 0s"},
		{3, -time.Second, 0, "window must be from 1ms to 24h0m0s, got -1s"},
		{3, 25 * time.Hour, 0, "window must be from 1ms to 24h0m0s, got 25h0m0s"},
		{3, time.Minute, -1, "contain: loops: maxKeys must be from 1 to 10000000 (0 for 100000), got -1"},
		{3, time.Minute, 10_000_001, "maxKeys must be from 1 to 10000000"},
		{1, time.Millisecond, 1, ""},
		{10_000, 24 * time.Hour, 10_000_000, ""},
	}
	for _, tt := range tests {
		l, err := NewLoops(tt.repeats, tt.window, tt.maxKeys, nil)
		if tt.wantErr == "" {
			if err != nil || l == nil {
				t.Errorf("NewLoops(%d, %v, %d) = %v, %v, want a detector", tt.repeats, tt.window, tt.maxKeys, l, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("NewLoops(%d, %v, %d) error = %v, want %q", tt.repeats, tt.window, tt.maxKeys, err, tt.wantErr)
		}
	}
}

func TestLoopsLimit(t *testing.T) {
	t.Parallel()
	for _, repeats := range []int{1, 2, 3, 10} {
		t.Run(fmt.Sprint(repeats), func(t *testing.T) {
			now := time.Unix(0, 0)
			l, err := NewLoops(repeats, time.Minute, 0, func() time.Time { return now })
			if err != nil {
				t.Fatal(err)
			}
			for i := 1; i <= repeats; i++ {
				loopObserve(t, l, "s1", "read", "h1", i, false)
				now = now.Add(time.Second)
			}
			// The next identical call is a loop, and so is every one after it: n
			// saturates at repeats+1.
			for range 5 {
				loopObserve(t, l, "s1", "read", "h1", repeats+1, true)
			}
		})
	}
}

func TestLoopsWindowSlides(t *testing.T) {
	t.Parallel()
	now := time.Unix(0, 0)
	l, err := NewLoops(3, 10*time.Second, 0, func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	loopObserve(t, l, "s", "t", "a", 1, false) // 0s
	now = now.Add(4 * time.Second)
	loopObserve(t, l, "s", "t", "a", 2, false) // 4s
	now = now.Add(4 * time.Second)
	loopObserve(t, l, "s", "t", "a", 3, false) // 8s
	now = now.Add(2 * time.Second)
	// At 10s the call at 0s is a whole window old and no longer counts.
	loopObserve(t, l, "s", "t", "a", 3, false) // 10s
	now = now.Add(time.Second - time.Nanosecond)
	loopObserve(t, l, "s", "t", "a", 4, true) // 11s-1ns: 4s, 8s, 10s and now

	// Hammering keeps the loop going; the refused calls count.
	for range 100 {
		now = now.Add(100 * time.Millisecond)
		loopObserve(t, l, "s", "t", "a", 4, true)
	}
	// A pause of less than a window is not enough ...
	now = now.Add(9 * time.Second)
	loopObserve(t, l, "s", "t", "a", 4, true)
	// ... a whole window is.
	now = now.Add(10 * time.Second)
	loopObserve(t, l, "s", "t", "a", 1, false)

	// A clock set back (or calls racing) cannot make calls leave the window early:
	// a time before a key's newest call counts as that call's time.
	now = time.Unix(100, 0)
	loopObserve(t, l, "s", "t", "b", 1, false)
	now = time.Unix(50, 0)
	loopObserve(t, l, "s", "t", "b", 2, false)
	loopObserve(t, l, "s", "t", "b", 3, false)
	now = time.Unix(109, 0)
	loopObserve(t, l, "s", "t", "b", 4, true)
	now = time.Unix(110, 0)
	loopObserve(t, l, "s", "t", "b", 2, false)
}

func TestLoopsKeysIndependent(t *testing.T) {
	t.Parallel()
	now := time.Unix(0, 0)
	l, err := NewLoops(1, time.Minute, 0, func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	loopObserve(t, l, "s", "t", "a", 1, false)
	loopObserve(t, l, "s", "t", "b", 1, false)
	loopObserve(t, l, "s", "u", "a", 1, false)
	loopObserve(t, l, "r", "t", "a", 1, false)
	// The parts are delimited, not concatenated.
	loopObserve(t, l, "st", "", "a", 1, false)
	loopObserve(t, l, "", "st", "a", 1, false)
	loopObserve(t, l, "s", "ta", "", 1, false)
	loopObserve(t, l, strings.Repeat("s", 1<<16), "t", "a", 1, false)
	loopObserve(t, l, "s", "t", "a", 2, true)
}

func TestLoopsKeyBound(t *testing.T) {
	t.Parallel()
	now := time.Unix(0, 0)
	l, err := NewLoops(5, 10*time.Second, 2, func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	held := func() int {
		s := &l.shards[0]
		s.mu.Lock()
		defer s.mu.Unlock()
		return len(s.entries)
	}
	loopObserve(t, l, "s", "t", "a", 1, false) // 0s
	now = now.Add(5 * time.Second)
	loopObserve(t, l, "s", "t", "b", 1, false) // 5s
	loopObserve(t, l, "s", "t", "b", 2, false)
	now = now.Add(5 * time.Second)
	// At 10s a has been idle for a whole window and is dropped to make room; b is kept.
	loopObserve(t, l, "s", "t", "c", 1, false)
	loopObserve(t, l, "s", "t", "b", 3, false)
	if got := held(); got != 2 {
		t.Fatalf("holding %d keys, want 2", got)
	}
	// Nothing is idle: the least recently seen key, c, is forgotten for d.
	loopObserve(t, l, "s", "t", "d", 1, false)
	loopObserve(t, l, "s", "t", "b", 4, false)
	// c starts again from 1 (a late detection at worst), evicting d, which in turn
	// starts again, evicting b.
	loopObserve(t, l, "s", "t", "c", 1, false)
	loopObserve(t, l, "s", "t", "d", 1, false)
	if got := held(); got != 2 {
		t.Fatalf("holding %d keys, want 2", got)
	}
	// Idle keys are dropped as calls pass, whichever key is called.
	now = now.Add(time.Minute)
	loopObserve(t, l, "s", "t", "e", 1, false)
	if got := held(); got != 1 {
		t.Errorf("holding %d keys after the others were idle for a window, want 1", got)
	}
}

func TestLoopsRing(t *testing.T) {
	t.Parallel()
	start := time.Unix(0, 0)
	now := start
	l, err := NewLoops(100, time.Hour, 0, func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	at := func(d time.Duration) { now = start.Add(d) }
	for i := 1; i <= 101; i++ {
		at(time.Duration(i-1) * time.Second)
		loopObserve(t, l, "s", "t", "a", i, i == 101)
	}
	// The calls leave the window one by one, oldest first, across the ring's wrap.
	at(time.Hour + 500*time.Millisecond) // 0s leaves
	loopObserve(t, l, "s", "t", "a", 101, true)
	at(time.Hour + 1500*time.Millisecond) // 1s leaves
	loopObserve(t, l, "s", "t", "a", 101, true)
	at(time.Hour + 100500*time.Millisecond) // 2s to 100s leave
	loopObserve(t, l, "s", "t", "a", 3, false)

	// However long the hammering, a key holds at most maxRepeats+1 times.
	for range 1000 {
		l.Observe("s", "t", "b")
	}
	for i := range l.shards {
		for _, e := range l.shards[i].entries {
			if len(e.ring) > 101 {
				t.Errorf("ring holds %d times, want at most 101", len(e.ring))
			}
		}
	}
}

func TestLoopsConcurrent(t *testing.T) {
	t.Parallel()
	const (
		repeats = 50
		workers = 20
		calls   = 100
	)
	start := time.Unix(0, 0)
	var clock atomic.Int64
	now := func() time.Time { return start.Add(time.Duration(clock.Add(int64(time.Microsecond)))) }
	l, err := NewLoops(repeats, time.Hour, 64, now)
	if err != nil {
		t.Fatal(err)
	}
	var loops atomic.Int64
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range calls {
				if _, loop := l.Observe("shared", "t", "a"); loop {
					loops.Add(1)
				}
				l.Observe(fmt.Sprint("own", w), "t", fmt.Sprint(i%10))
			}
		})
	}
	wg.Wait()
	// Evictions go on all along (201 keys, room for 64), but the shared key is never
	// the least recently seen: between two of its calls each worker makes at most
	// one other. So exactly the calls beyond the first repeats are loops.
	if got, want := loops.Load(), int64(workers*calls-repeats); got != want {
		t.Errorf("%d of %d identical calls were loops, want %d", got, workers*calls, want)
	}
}

func BenchmarkLoopsObserve(b *testing.B) {
	l, err := NewLoops(10, time.Minute, 0, nil)
	if err != nil {
		b.Fatal(err)
	}
	tools := []string{"read_file", "write_file", "search", "fetch"}
	sessions := make([]string, 1000)
	for i := range sessions {
		sessions[i] = fmt.Sprintf("session-%d", i)
	}
	var seq atomic.Uint32
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := int(seq.Add(7919))
		for pb.Next() {
			l.Observe(sessions[i%len(sessions)], tools[i%len(tools)], "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08")
			i++
		}
	})
}
