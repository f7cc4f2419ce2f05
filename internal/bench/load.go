package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Bounds of a [Load].
const (
	// MaxSessions bounds Load.Sessions.
	MaxSessions = 100_000
	// MaxRate bounds Load.Rate, in calls per second.
	MaxRate = 10_000_000
	// MaxDuration bounds Load.Duration.
	MaxDuration = 24 * time.Hour
	// MaxSamples bounds the latencies a run keeps; see [Run].
	MaxSamples = 10_000_000
)

const (
	// openParallel bounds the sessions opened or closed at once.
	openParallel = 64
	// closeTimeout bounds closing one session at the end of a run.
	closeTimeout = 10 * time.Second
)

// Load describes the load [Run] drives through a target.
type Load struct {
	// Sessions is the number of concurrent sessions, 1..MaxSessions.
	Sessions int
	// Rate is the calls per second over all sessions, at most MaxRate. 0 runs a closed
	// loop: each session calls as fast as it can, back to back.
	Rate float64
	// Duration is how long load is driven, counted once the sessions are open; required,
	// at most MaxDuration.
	Duration time.Duration
	// MaxCalls stops the run after this many calls (0: no bound).
	MaxCalls int64
	// Mix chooses call i's tool and arguments (i counts from 0 over the whole run); nil
	// calls "echo" with {"text":"hello"}. It is called from many goroutines at once and
	// must be safe for that; the arguments it returns must not be modified afterwards.
	Mix func(i int64) (tool string, args json.RawMessage)
}

// Result is what [Run] measured of one target.
type Result struct {
	// Target is the target's name (its URL's host if it has none).
	Target string
	// Sessions and Rate are the Load's.
	Sessions int
	Rate     float64
	// Calls counts completed calls, whatever their outcome; calls cut short because the
	// run's context ended are not counted.
	Calls int64
	// OK, ToolErrors and RPCErrors count the calls of each [Outcome]; Failures counts calls
	// that got no answer: transport and HTTP errors, malformed answers.
	OK, ToolErrors, RPCErrors, Failures int64
	// FirstFailure is the message of the earliest failure, if any.
	FirstFailure string
	// Elapsed is the length of the load phase, from the first call until the last one
	// ended.
	Elapsed time.Duration
	// Latency summarises the latencies of completed calls (a sample of them beyond
	// MaxSamples; Latency.N says how many).
	Latency Percentiles
	// CPU is the CPU time (user and system) the whole process used during the load phase:
	// the harness's client, and anything else running in the process, such as an
	// in-process gateway or upstream.
	CPU time.Duration
	// Throughput is Calls per second of Elapsed.
	Throughput float64
}

// Run drives l through t and reports what it measured.
//
// It opens l.Sessions sessions (at most 64 at a time; if one fails to open, Run opens
// no more, closes those that opened and fails naming how many did), drives load for l.Duration or until
// l.MaxCalls calls, then closes the sessions. hc nil uses NewHTTPClient(l.Sessions).
//
// # Closed loop (Rate 0)
//
// One goroutine per session calls back to back. Calls are handed out by a shared counter,
// so with MaxCalls set exactly MaxCalls calls are made unless Duration ends first. A
// call's latency is the time [Session.Call] took.
//
// # Open loop (Rate > 0)
//
// Call i is scheduled at start + i/Rate, and the next free session takes the next
// scheduled call. Latency is measured from the scheduled time, not from when a session
// became free, so a target that stalls shows its stall in the tail of every call it
// delayed (no coordinated omission). Because timers wake late, a call may be handed out
// up to 1ms before its time; it is then measured from when it started. Scheduled calls
// still waiting when Duration ends are not made: a target that cannot keep up shows as a
// Throughput below Rate.
//
// # Memory
//
// Latencies are recorded per goroutine, without locks, and merged at the end. At most
// MaxSamples are kept in all: each goroutine keeps up to MaxSamples/Sessions, and once
// full keeps every second of the ones it kept and from then on records only every second
// call, doubling again as needed (every k-th call, k a power of two). At the merge, every
// goroutine's samples are thinned to the largest k, so each sample stands for the same
// number of calls. Calls are always all counted.
//
// # Cancellation
//
// When ctx ends, the calls in flight are abandoned (and not counted), the sessions are
// closed, and Run returns what it measured with ctx's error. An error closing sessions is
// returned with the Result as well.
func Run(ctx context.Context, hc *http.Client, t Target, l Load) (Result, error) {
	if err := l.validate(); err != nil {
		return Result{}, err
	}
	if hc == nil {
		hc = NewHTTPClient(l.Sessions)
		defer hc.CloseIdleConnections()
	}
	mix := l.Mix
	if mix == nil {
		args := json.RawMessage(`{"text":"hello"}`)
		mix = func(int64) (string, json.RawMessage) { return "echo", args }
	}
	res := Result{Target: targetName(t), Sessions: l.Sessions, Rate: l.Rate}

	sessions, err := openAll(ctx, hc, t, l.Sessions)
	if err != nil {
		return res, err
	}
	workers := make([]*worker, len(sessions))
	budget := max(MaxSamples/len(sessions), 2) // 2: room to append after halving
	for i := range workers {
		workers[i] = &worker{lat: sampler{budget: budget, stride: 1}}
	}

	cpu0 := processCPU()
	start := time.Now()
	var wg sync.WaitGroup
	if l.Rate == 0 {
		var tickets atomic.Int64
		for i, s := range sessions {
			wg.Go(func() { workers[i].closedLoop(ctx, s, &l, mix, start, &tickets) })
		}
	} else {
		slots := make(chan slot, min(len(sessions), 1024))
		wg.Go(func() { schedule(ctx, start, &l, slots) })
		for i, s := range sessions {
			wg.Go(func() { workers[i].openLoop(ctx, s, &l, mix, start, slots) })
		}
	}
	wg.Wait()
	res.Elapsed = time.Since(start)
	res.CPU = processCPU() - cpu0

	merge(&res, workers)
	closeErr := closeAll(ctx, sessions)
	return res, errors.Join(ctx.Err(), closeErr)
}

func (l *Load) validate() error {
	var errs []error
	if l.Sessions < 1 || l.Sessions > MaxSessions {
		errs = append(errs, fmt.Errorf("load: sessions %d out of range 1..%d", l.Sessions, MaxSessions))
	}
	if l.Rate < 0 || l.Rate > MaxRate || math.IsNaN(l.Rate) {
		errs = append(errs, fmt.Errorf("load: rate %v out of range 0..%d calls per second", l.Rate, MaxRate))
	}
	if l.Duration <= 0 || l.Duration > MaxDuration {
		errs = append(errs, fmt.Errorf("load: duration %v out of range: more than 0, at most %v", l.Duration, MaxDuration))
	}
	if l.MaxCalls < 0 {
		errs = append(errs, fmt.Errorf("load: max calls %d is negative", l.MaxCalls))
	}
	return errors.Join(errs...)
}

// openAll opens n sessions, at most openParallel at a time. After the first failure it
// starts no more, lets those under way finish, closes what opened and returns the
// failure. (Cancelling the opens under way could leave sessions the target created but
// the harness never learnt of.)
func openAll(ctx context.Context, hc *http.Client, t Target, n int) ([]*Session, error) {
	sessions := make([]*Session, n)
	var (
		next, opened atomic.Int64
		failed       atomic.Bool
		once         sync.Once
		firstErr     error
		wg           sync.WaitGroup
	)
	for range min(n, openParallel) {
		wg.Go(func() {
			for !failed.Load() {
				i := next.Add(1) - 1
				if i >= int64(n) {
					return
				}
				s, err := Open(ctx, hc, t)
				if err != nil {
					once.Do(func() { firstErr = err })
					failed.Store(true)
					return
				}
				sessions[i] = s
				opened.Add(1)
			}
		})
	}
	wg.Wait()
	if firstErr == nil {
		return sessions, nil
	}
	live := sessions[:0]
	for _, s := range sessions {
		if s != nil {
			live = append(live, s)
		}
	}
	closeAll(ctx, live) // the open failure is the error to report
	return nil, fmt.Errorf("run on %s: %d of %d sessions opened: %w", targetName(t), opened.Load(), n, firstErr)
}

// closeAll closes sessions, at most openParallel at a time, each within closeTimeout
// even if ctx has ended. It reports how many failed and the first failure.
func closeAll(ctx context.Context, sessions []*Session) error {
	ctx = context.WithoutCancel(ctx)
	var (
		next, failed atomic.Int64
		once         sync.Once
		firstErr     error
		wg           sync.WaitGroup
	)
	for range min(len(sessions), openParallel) {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= int64(len(sessions)) {
					return
				}
				cctx, cancel := context.WithTimeout(ctx, closeTimeout)
				err := sessions[i].Close(cctx)
				cancel()
				if err != nil {
					failed.Add(1)
					once.Do(func() { firstErr = err })
				}
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		return fmt.Errorf("%d of %d sessions failed to close: %w", failed.Load(), len(sessions), firstErr)
	}
	return nil
}

// slot is a scheduled call of the open loop: call i, due at start+at.
type slot struct {
	i  int64
	at time.Duration
}

// dispatchSlack is how early the open loop may hand out a slot. Go's timers wake up to
// about a millisecond late for short sleeps (measured on Linux: a 200µs sleep took
// ~1.1ms), which would show as latency at every rate above a few hundred calls per
// second; a call started early is measured from its actual start instead.
const dispatchSlack = time.Millisecond

// schedule sends the open loop's slots to out as they fall due, then closes out. It
// sleeps until dispatchSlack before the next slot, then sends every slot due by then
// without sleeping; if every session is busy it blocks, and the slots it sends
// afterwards are already late, which their latency shows.
func schedule(ctx context.Context, start time.Time, l *Load, out chan<- slot) {
	defer close(out)
	interval := float64(time.Second) / l.Rate
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for i := int64(0); l.MaxCalls == 0 || i < l.MaxCalls; i++ {
		at := time.Duration(float64(i) * interval)
		if at >= l.Duration {
			return
		}
		if wait := at - dispatchSlack - time.Since(start); wait > 0 {
			timer.Reset(wait)
			select {
			case <-timer.C:
			case <-ctx.Done():
				timer.Stop()
				return
			}
		}
		select {
		case out <- slot{i, at}:
		case <-ctx.Done():
			return
		}
	}
}

// worker is one session's goroutine state; only that goroutine touches it until the
// merge.
type worker struct {
	calls, ok, toolErrors, rpcErrors, failures int64
	firstFailure                               string
	firstFailureAt                             time.Duration // since the load started
	lat                                        sampler
}

func (w *worker) closedLoop(ctx context.Context, s *Session, l *Load, mix func(int64) (string, json.RawMessage), start time.Time, tickets *atomic.Int64) {
	// A context per goroutine, so that requests register with it rather than all with ctx.
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	deadline := start.Add(l.Duration)
	for wctx.Err() == nil {
		t0 := time.Now()
		if !t0.Before(deadline) {
			return
		}
		i := tickets.Add(1) - 1
		if l.MaxCalls > 0 && i >= l.MaxCalls {
			return
		}
		tool, args := mix(i)
		out, err := s.Call(wctx, tool, args)
		if err != nil && wctx.Err() != nil {
			return // cut short by cancellation: not a completed call
		}
		end := time.Now()
		w.record(out, err, end.Sub(t0), end.Sub(start))
	}
}

func (w *worker) openLoop(ctx context.Context, s *Session, l *Load, mix func(int64) (string, json.RawMessage), start time.Time, slots <-chan slot) {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for sl := range slots {
		// Once the run is over, slots still queued are drained and dropped.
		if wctx.Err() != nil || time.Since(start) >= l.Duration {
			continue
		}
		tool, args := mix(sl.i)
		begin := time.Since(start)
		out, err := s.Call(wctx, tool, args)
		if err != nil && wctx.Err() != nil {
			continue
		}
		// From the scheduled time, or from the start if the slot was handed out early.
		end := time.Since(start)
		w.record(out, err, end-min(begin, sl.at), end)
	}
}

func (w *worker) record(out Outcome, err error, latency, at time.Duration) {
	w.calls++
	switch {
	case err != nil:
		w.failures++
		if w.firstFailure == "" {
			w.firstFailure, w.firstFailureAt = err.Error(), at
		}
	case out == OutcomeOK:
		w.ok++
	case out == OutcomeToolError:
		w.toolErrors++
	case out == OutcomeRPCError:
		w.rpcErrors++
	}
	w.lat.add(latency)
}

// merge adds the workers' counts and latencies to r.
func merge(r *Result, workers []*worker) {
	first := time.Duration(math.MaxInt64)
	stride := int64(1)
	total := 0
	for _, w := range workers {
		r.Calls += w.calls
		r.OK += w.ok
		r.ToolErrors += w.toolErrors
		r.RPCErrors += w.rpcErrors
		r.Failures += w.failures
		if w.firstFailure != "" && w.firstFailureAt < first {
			r.FirstFailure, first = w.firstFailure, w.firstFailureAt
		}
		stride = max(stride, w.lat.stride)
		total += len(w.lat.samples)
	}
	samples := make([]time.Duration, 0, total)
	for _, w := range workers {
		samples = w.lat.appendThinned(samples, stride)
		w.lat.samples = nil
	}
	r.Latency = Summarize(samples)
	if r.Elapsed > 0 {
		r.Throughput = float64(r.Calls) / r.Elapsed.Seconds()
	}
}

// sampler keeps an evenly spaced subset of one goroutine's latencies within budget: the
// latencies of its calls number 0, stride, 2*stride, ... (stride a power of two), so that
// samplers with different strides can be thinned to a common one.
type sampler struct {
	samples []time.Duration
	budget  int
	stride  int64
	seen    int64 // calls recorded or skipped
}

func (s *sampler) add(d time.Duration) {
	n := s.seen
	s.seen++
	if n%s.stride != 0 {
		return
	}
	if len(s.samples) >= s.budget {
		// Full: keep calls 0, 2*stride, 4*stride, ... and record half as often.
		kept := s.samples[:0]
		for i := 0; i < len(s.samples); i += 2 {
			kept = append(kept, s.samples[i])
		}
		s.samples = kept
		s.stride *= 2
		if n%s.stride != 0 {
			return
		}
	}
	s.samples = append(s.samples, d)
}

// appendThinned appends to dst the samples of calls that are multiples of stride, a
// multiple of s.stride.
func (s *sampler) appendThinned(dst []time.Duration, stride int64) []time.Duration {
	step := int(stride / s.stride)
	for i := 0; i < len(s.samples); i += step {
		dst = append(dst, s.samples[i])
	}
	return dst
}

// processCPU returns the CPU time (user and system) the process has used, or 0 if the
// system cannot say.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
