package bench

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestRunClosedLoop(t *testing.T) {
	t.Parallel()
	up, srv := newTestUpstream(t, UpstreamOptions{})
	res, err := Run(context.Background(), NewHTTPClient(4), Target{Name: "direct", URL: srv.URL},
		Load{Sessions: 4, Duration: 300 * time.Millisecond})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if res.Calls == 0 || res.Failures != 0 || res.FirstFailure != "" {
		t.Fatalf("Run = %+v, want calls and no failures", res)
	}
	if got := up.Calls(); got != res.Calls {
		t.Errorf("Result.Calls = %d, upstream answered %d", res.Calls, got)
	}
	if res.OK != res.Calls || res.Latency.N != int(res.Calls) {
		t.Errorf("OK = %d, Latency.N = %d, want both = Calls %d", res.OK, res.Latency.N, res.Calls)
	}
	if res.Target != "direct" || res.Sessions != 4 || res.Rate != 0 {
		t.Errorf("Result labels = %q, %d, %v; want direct, 4, 0", res.Target, res.Sessions, res.Rate)
	}
	if res.Elapsed < 300*time.Millisecond {
		t.Errorf("Elapsed = %v, want at least the duration", res.Elapsed)
	}
	if want := float64(res.Calls) / res.Elapsed.Seconds(); math.Abs(res.Throughput-want) > 1e-9*want {
		t.Errorf("Throughput = %v, want Calls/Elapsed = %v", res.Throughput, want)
	}
	if res.Latency.P50 <= 0 || res.Latency.P50 > res.Latency.P99 || res.Latency.P99 > res.Latency.Max {
		t.Errorf("Latency = %+v, want 0 < P50 <= P99 <= Max", res.Latency)
	}
	if res.CPU <= 0 || res.CPUPerCall() <= 0 {
		t.Errorf("CPU = %v, CPUPerCall = %v; want both positive", res.CPU, res.CPUPerCall())
	}
	if got := up.Sessions(); got != 0 {
		t.Errorf("upstream has %d live sessions after Run, want 0", got)
	}
}

func TestRunOpenLoop(t *testing.T) {
	t.Parallel()
	up, srv := newTestUpstream(t, UpstreamOptions{})
	res, err := Run(context.Background(), nil, Target{Name: "direct", URL: srv.URL},
		Load{Sessions: 4, Rate: 200, Duration: 500 * time.Millisecond})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if res.Calls < 50 || res.Calls > 150 {
		t.Errorf("Run at 200/s for 500ms made %d calls, want about 100 (50..150)", res.Calls)
	}
	if res.Failures != 0 || up.Calls() != res.Calls || res.Rate != 200 {
		t.Errorf("Run = %+v, upstream calls %d; want no failures, all calls answered, rate 200", res, up.Calls())
	}
}

// With one session and calls slower than the rate, later calls wait for the session; their
// latency counts from when they were scheduled, so it grows well beyond the tool's delay
// (call k of a 10ms schedule ends no sooner than 50ms*(k+1), so its latency is at least
// 40ms*k+50ms).
func TestRunOpenLoopMeasuresFromSchedule(t *testing.T) {
	t.Parallel()
	_, srv := newTestUpstream(t, UpstreamOptions{Delay: 50 * time.Millisecond})
	res, err := Run(context.Background(), nil, Target{Name: "slow", URL: srv.URL},
		Load{Sessions: 1, Rate: 100, Duration: 300 * time.Millisecond})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if res.Calls < 2 || res.Calls > 6 {
		t.Fatalf("Calls = %d, want 2..6 (one 50ms call at a time for 300ms)", res.Calls)
	}
	if want := 40*time.Millisecond*time.Duration(res.Calls-1) + 50*time.Millisecond; res.Latency.Max < want {
		t.Errorf("Latency.Max = %v after %d calls, want at least %v: latency must count from the scheduled time", res.Latency.Max, res.Calls, want)
	}
}

func TestRunMaxCalls(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name string
		rate float64
	}{{"closed loop", 0}, {"open loop", 5000}} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			up, srv := newTestUpstream(t, UpstreamOptions{})
			var seen [37]atomic.Int32
			mix := func(i int64) (string, json.RawMessage) {
				if i >= 0 && i < int64(len(seen)) {
					seen[i].Add(1)
				}
				return "echo", nil
			}
			res, err := Run(context.Background(), NewHTTPClient(8), Target{Name: "direct", URL: srv.URL},
				Load{Sessions: 8, Rate: tt.rate, Duration: time.Minute, MaxCalls: 37, Mix: mix})
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			if res.Calls != 37 || up.Calls() != 37 {
				t.Errorf("Run with MaxCalls 37: Calls = %d, upstream answered %d; want 37", res.Calls, up.Calls())
			}
			for i := range seen {
				if n := seen[i].Load(); n != 1 {
					t.Errorf("Mix(%d) called %d times, want once", i, n)
				}
			}
		})
	}
}

func TestRunMix(t *testing.T) {
	t.Parallel()
	up, srv := newTestUpstream(t, UpstreamOptions{})
	mix := func(i int64) (string, json.RawMessage) {
		if i%2 == 0 {
			return "echo", json.RawMessage(`{"text":"x"}`)
		}
		return "missing", nil
	}
	res, err := Run(context.Background(), nil, Target{Name: "direct", URL: srv.URL},
		Load{Sessions: 3, Duration: time.Minute, MaxCalls: 20, Mix: mix})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if res.OK != 10 || res.RPCErrors != 10 || res.ToolErrors != 0 || res.Failures != 0 {
		t.Errorf("Run = OK %d, RPCErrors %d, ToolErrors %d, Failures %d; want 10, 10, 0, 0",
			res.OK, res.RPCErrors, res.ToolErrors, res.Failures)
	}
	if up.Calls() != 20 {
		t.Errorf("upstream answered %d calls, want 20", up.Calls())
	}
}

func TestRunFailingTarget(t *testing.T) {
	t.Parallel()
	srv := fakeMCP(t, func(w http.ResponseWriter, _ *http.Request, _ string, _ []byte) {
		http.Error(w, "upstream exploded", http.StatusInternalServerError)
	})
	res, err := Run(context.Background(), nil, Target{Name: "broken", URL: srv.URL},
		Load{Sessions: 2, Duration: time.Minute, MaxCalls: 10})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if res.Calls != 10 || res.Failures != 10 || res.OK != 0 {
		t.Errorf("Run = Calls %d, Failures %d, OK %d; want 10, 10, 0", res.Calls, res.Failures, res.OK)
	}
	if !strings.Contains(res.FirstFailure, "HTTP 500: upstream exploded") || !strings.Contains(res.FirstFailure, "broken") {
		t.Errorf("FirstFailure = %q, want the target and HTTP 500", res.FirstFailure)
	}
}

func TestRunCancel(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name string
		rate float64
	}{{"closed loop", 0}, {"open loop", 1000}} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			up, srv := newTestUpstream(t, UpstreamOptions{})
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			mix := func(i int64) (string, json.RawMessage) {
				if i == 50 {
					cancel()
				}
				return "echo", nil
			}
			res, err := Run(ctx, nil, Target{Name: "direct", URL: srv.URL},
				Load{Sessions: 4, Rate: tt.rate, Duration: time.Hour, Mix: mix})
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("Run after cancel: error %v, want context.Canceled", err)
			}
			if res.Calls < 40 || res.Failures != 0 {
				t.Errorf("Run after cancel = Calls %d, Failures %d; want the calls made before it, no failures", res.Calls, res.Failures)
			}
			if got := up.Sessions(); got != 0 {
				t.Errorf("upstream has %d live sessions after a canceled Run, want 0", got)
			}
		})
	}
}

func TestRunOpenFailure(t *testing.T) {
	t.Parallel()
	up, err := NewUpstream(UpstreamOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var inits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Mcp-Session-Id") == "" && r.Method == http.MethodPost && inits.Add(1) > 3 {
			http.Error(w, "no more sessions", http.StatusUnauthorized)
			return
		}
		up.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	_, err = Run(context.Background(), nil, Target{Name: "gw", URL: srv.URL}, Load{Sessions: 10, Duration: time.Second})
	if err == nil {
		t.Fatal("Run = nil error, want the open failure")
	}
	if msg := err.Error(); !strings.Contains(msg, "of 10 sessions opened") || !strings.Contains(msg, "initialize: HTTP 401: no more sessions") {
		t.Errorf("Run error = %q, want how many opened and the failure", msg)
	}
	if up.Calls() != 0 || up.Sessions() != 0 {
		t.Errorf("after the failed open: upstream calls %d, live sessions %d; want 0, 0", up.Calls(), up.Sessions())
	}
}

func TestLoadValidate(t *testing.T) {
	t.Parallel()
	ok := Load{Sessions: 1, Duration: time.Second}
	tests := []struct {
		name string
		edit func(*Load)
		want string
	}{
		{"no sessions", func(l *Load) { l.Sessions = 0 }, "sessions 0 out of range 1..100000"},
		{"too many sessions", func(l *Load) { l.Sessions = MaxSessions + 1 }, "sessions 100001 out of range"},
		{"negative rate", func(l *Load) { l.Rate = -1 }, "rate -1 out of range 0..10000000"},
		{"NaN rate", func(l *Load) { l.Rate = math.NaN() }, "rate NaN"},
		{"infinite rate", func(l *Load) { l.Rate = math.Inf(1) }, "rate +Inf"},
		{"no duration", func(l *Load) { l.Duration = 0 }, "duration 0s out of range"},
		{"too long", func(l *Load) { l.Duration = MaxDuration + time.Second }, "at most 24h0m0s"},
		{"negative max calls", func(l *Load) { l.MaxCalls = -1 }, "max calls -1 is negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			l := ok
			tt.edit(&l)
			_, err := Run(context.Background(), nil, Target{Name: "x", URL: "http://127.0.0.1:1/"}, l)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Run(%+v) error = %v, want one containing %q", l, err, tt.want)
			}
		})
	}
	err := (&Load{Sessions: -1, Rate: -1}).validate()
	if err == nil || !strings.Contains(err.Error(), "sessions") || !strings.Contains(err.Error(), "rate") || !strings.Contains(err.Error(), "duration") {
		t.Errorf("validate of three bad fields = %v, want all three reported", err)
	}
}

func TestSampler(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		budget     int
		n          int
		wantStride int64
	}{
		{"under budget", 10, 7, 1},
		{"exactly budget", 8, 8, 1},
		{"one halving", 8, 9, 2},
		{"many halvings", 8, 1000, 128},
		{"smallest budget", 2, 100, 64},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := sampler{budget: tt.budget, stride: 1}
			for i := range tt.n {
				s.add(time.Duration(i)) // the latency is the call's number
				if len(s.samples) > tt.budget {
					t.Fatalf("after %d calls: %d samples, budget %d", i+1, len(s.samples), tt.budget)
				}
			}
			if s.stride != tt.wantStride {
				t.Errorf("stride = %d, want %d", s.stride, tt.wantStride)
			}
			// The samples are calls 0, stride, 2*stride, ... up to the last call.
			want := (int64(tt.n)-1)/s.stride + 1
			if int64(len(s.samples)) != want {
				t.Errorf("%d samples, want %d", len(s.samples), want)
			}
			for i, d := range s.samples {
				if int64(d) != int64(i)*s.stride {
					t.Fatalf("sample %d = call %d, want call %d", i, d, int64(i)*s.stride)
				}
			}
		})
	}
}

// Workers with different strides are thinned to the largest, so every merged sample
// stands for the same number of calls.
func TestMergeThinsToCommonStride(t *testing.T) {
	t.Parallel()
	fast := &worker{lat: sampler{budget: 4, stride: 1}}
	slow := &worker{lat: sampler{budget: 4, stride: 1}}
	for i := range 16 {
		fast.record(OutcomeOK, nil, time.Millisecond, time.Duration(i))
	}
	for i := range 4 {
		slow.record(OutcomeOK, nil, time.Second, time.Duration(i))
	}
	slow.record(0, errors.New("later failure"), time.Second, 100)
	fast.record(0, errors.New("first failure"), time.Second, 50)
	var r Result
	merge(&r, []*worker{fast, slow})
	// fast: 17 calls at stride 8 -> calls 0, 8, 16; slow: 5 calls at stride 2 -> 0, 2, 4,
	// thinned to stride 8 -> call 0.
	if r.Latency.N != 4 {
		t.Errorf("merged %d samples, want 4", r.Latency.N)
	}
	if r.Calls != 22 || r.OK != 20 || r.Failures != 2 || r.FirstFailure != "first failure" {
		t.Errorf("merged = Calls %d, OK %d, Failures %d, FirstFailure %q; want 22, 20, 2, first failure",
			r.Calls, r.OK, r.Failures, r.FirstFailure)
	}
}
