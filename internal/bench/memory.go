package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// MaxMemorySessions bounds MeasureSessions.
const MaxMemorySessions = 100_000

// MemorySample is the process's memory at one moment, after a full garbage collection.
type MemorySample struct {
	HeapBytes  uint64 // live heap (runtime.MemStats.HeapAlloc after GC)
	RSSBytes   uint64 // resident set size (/proc/self/statm; 0 where there is none)
	Goroutines int
}

// SampleMemory collects garbage and samples the process's memory. It collects twice: what
// sync.Pools hold survives one collection (their victim caches), and pools are caches, not
// what sessions keep.
func SampleMemory() MemorySample {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return MemorySample{HeapBytes: ms.HeapAlloc, RSSBytes: rss(), Goroutines: runtime.NumGoroutine()}
}

// rss reads the resident set size from /proc/self/statm, 0 if it cannot.
func rss() uint64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := bytes.Fields(b)
	if len(f) < 2 {
		return 0
	}
	pages, err := strconv.ParseUint(string(f[1]), 10, 64)
	if err != nil {
		return 0
	}
	return pages * uint64(os.Getpagesize())
}

// SessionMemory is what n open sessions cost this process.
type SessionMemory struct {
	Sessions int
	// Before, Idle and Active are samples before opening the sessions, with all of them
	// open and idle, and after one call on each (the gateway then holds their flow state).
	Before, Idle, Active MemorySample
}

// IdlePerSession and ActivePerSession are the heap bytes per session.
func (m SessionMemory) IdlePerSession() int64 { return perSession(m.Idle, m.Before, m.Sessions) }
func (m SessionMemory) ActivePerSession() int64 {
	return perSession(m.Active, m.Before, m.Sessions)
}

func perSession(after, before MemorySample, n int) int64 {
	if n == 0 {
		return 0
	}
	return (int64(after.HeapBytes) - int64(before.HeapBytes)) / int64(n)
}

// MeasureSessions opens n sessions on t (64 at a time), samples memory, makes one call on
// each with args, samples again, calls active (if set) while the sessions are still
// open, and closes them. What it measures is this whole
// process: the harness's client sessions as well as an in-process gateway's; measure the
// baseline on the upstream alone to tell them apart.
func MeasureSessions(ctx context.Context, hc *http.Client, t Target, n int, tool string, args []byte, active func() error) (SessionMemory, error) {
	if n < 1 || n > MaxMemorySessions {
		return SessionMemory{}, fmt.Errorf("bench: sessions must be between 1 and %d, got %d", MaxMemorySessions, n)
	}
	m := SessionMemory{Sessions: n, Before: SampleMemory()}
	sessions, err := openAll(ctx, hc, t, n)
	if err != nil {
		return m, err
	}
	defer closeAll(ctx, sessions)
	m.Idle = SampleMemory()
	if err := forEach(ctx, n, func(i int) error {
		_, err := sessions[i].Call(ctx, tool, args)
		return err
	}); err != nil {
		return m, err
	}
	if t.Settle != nil {
		if err := t.Settle(ctx); err != nil {
			return m, fmt.Errorf("bench: %s: settle: %w", t.Name, err)
		}
	}
	m.Active = SampleMemory()
	if active != nil {
		if err := active(); err != nil {
			return m, err
		}
	}
	return m, nil
}

// forEach runs f(0..n-1), openParallel at a time, and returns the first error.
func forEach(ctx context.Context, n int, f func(i int) error) error {
	var (
		wg    sync.WaitGroup
		once  sync.Once
		first error
	)
	sem := make(chan struct{}, openParallel)
	for i := range n {
		if ctx.Err() != nil {
			break
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := f(i); err != nil {
				once.Do(func() { first = err })
			}
		})
	}
	wg.Wait()
	if first == nil {
		first = ctx.Err()
	}
	return first
}

// SoakOptions describe a soak: sessions opened, used and closed over and over.
type SoakOptions struct {
	// Duration of the soak (required, at most 24h) and how often memory is sampled
	// (default Duration/10, at least 100ms).
	Duration, Every time.Duration
	// Sessions open at once (default 32) and calls on each before it is closed (default
	// 20).
	Sessions, CallsPerSession int
	// Tool of every call; default echo. Each call's arguments are {"text":"soak N"}
	// with N counting calls: the same call repeated would trip the loop breaker.
	Tool string
}

// Soak churns sessions through t for o.Duration and returns a memory sample taken after
// each o.Every (the first before any load) and the number of calls made. A process whose
// caches are bounded and that leaks nothing shows a flat heap after its first samples.
func Soak(ctx context.Context, hc *http.Client, t Target, o SoakOptions) ([]MemorySample, int64, error) {
	if o.Duration <= 0 || o.Duration > MaxDuration {
		return nil, 0, fmt.Errorf("bench: soak duration must be between 0 and %s, got %s", MaxDuration, o.Duration)
	}
	if o.Every == 0 {
		o.Every = max(o.Duration/10, 100*time.Millisecond)
	}
	if o.Every < 100*time.Millisecond {
		return nil, 0, fmt.Errorf("bench: soak sampling interval must be at least 100ms, got %s", o.Every)
	}
	if o.Sessions == 0 {
		o.Sessions = 32
	}
	if o.CallsPerSession == 0 {
		o.CallsPerSession = 20
	}
	if o.Sessions < 1 || o.Sessions > MaxSessions || o.CallsPerSession < 1 {
		return nil, 0, fmt.Errorf("bench: soak needs 1 to %d sessions and at least one call per session, got %d and %d", MaxSessions, o.Sessions, o.CallsPerSession)
	}
	if o.Tool == "" {
		o.Tool = ToolEcho
	}
	samples := []MemorySample{SampleMemory()}
	ctx, cancel := context.WithTimeout(ctx, o.Duration)
	defer cancel()
	var calls atomic.Int64
	next := time.Now().Add(o.Every)
	for ctx.Err() == nil {
		err := forEach(ctx, o.Sessions, func(int) error {
			s, err := Open(ctx, hc, t)
			if err != nil {
				return err
			}
			defer closeAll(ctx, []*Session{s})
			for range o.CallsPerSession {
				n := calls.Add(1)
				if _, err := s.Call(ctx, o.Tool, fmt.Appendf(nil, `{"text":"soak %d"}`, n)); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil && ctx.Err() == nil {
			return samples, calls.Load(), fmt.Errorf("bench: soak: %w", err)
		}
		if now := time.Now(); !now.Before(next) {
			samples = append(samples, SampleMemory())
			next = now.Add(o.Every)
		}
	}
	if t.Settle != nil {
		if err := t.Settle(context.WithoutCancel(ctx)); err != nil {
			return samples, calls.Load(), fmt.Errorf("bench: soak: settle: %w", err)
		}
	}
	samples = append(samples, SampleMemory())
	if err := ctx.Err(); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return samples, calls.Load(), err
	}
	return samples, calls.Load(), nil
}
