package bench

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func ms(n int) time.Duration { return time.Duration(n) * time.Millisecond }

func TestSummarize(t *testing.T) {
	t.Parallel()
	oneToThousand := make([]time.Duration, 1000)
	for i := range oneToThousand {
		oneToThousand[i] = ms(i + 1)
	}
	rand.New(rand.NewPCG(1, 2)).Shuffle(len(oneToThousand), func(i, j int) {
		oneToThousand[i], oneToThousand[j] = oneToThousand[j], oneToThousand[i]
	})
	tests := []struct {
		name    string
		samples []time.Duration
		want    Percentiles
	}{
		{"1..1000 ms shuffled", oneToThousand, Percentiles{
			P50: ms(500), P90: ms(900), P99: ms(990), P999: ms(999), Max: ms(1000), Mean: 500*time.Millisecond + 500*time.Microsecond, N: 1000}},
		{"empty", nil, Percentiles{}},
		{"one sample", []time.Duration{ms(7)}, Percentiles{P50: ms(7), P90: ms(7), P99: ms(7), P999: ms(7), Max: ms(7), Mean: ms(7), N: 1}},
		// Nearest rank: ceil(0.5*3)-1 = 1, ceil(0.9*3)-1 = 2.
		{"three samples", []time.Duration{ms(30), ms(10), ms(20)}, Percentiles{P50: ms(20), P90: ms(30), P99: ms(30), P999: ms(30), Max: ms(30), Mean: ms(20), N: 3}},
		// ceil(0.5*10)-1 = 4, ceil(0.9*10)-1 = 8, ceil(0.99*10)-1 = 9.
		{"ten samples", []time.Duration{ms(1), ms(2), ms(3), ms(4), ms(5), ms(6), ms(7), ms(8), ms(9), ms(100)}, Percentiles{
			P50: ms(5), P90: ms(9), P99: ms(100), P999: ms(100), Max: ms(100), Mean: ms(145) / 10, N: 10}},
		// ceil(0.999*2000)-1 = 1997: the 1998th sample, not the 1999th.
		{"2000 samples", seq(2000), Percentiles{P50: 999, P90: 1799, P99: 1979, P999: 1997, Max: 1999, Mean: 999, N: 2000}},
		{"huge values do not overflow the mean", []time.Duration{1<<62 + 1, 1<<62 + 1, 1<<62 + 1}, Percentiles{
			P50: 1<<62 + 1, P90: 1<<62 + 1, P99: 1<<62 + 1, P999: 1<<62 + 1, Max: 1<<62 + 1, Mean: 1<<62 + 1, N: 3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := Summarize(tt.samples)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Summarize (-want +got):\n%s", diff)
			}
		})
	}
}

// seq returns 0, 1, ..., n-1 nanoseconds.
func seq(n int) []time.Duration {
	s := make([]time.Duration, n)
	for i := range s {
		s[i] = time.Duration(i)
	}
	return s
}

func TestMedian(t *testing.T) {
	t.Parallel()
	r1 := Result{Target: "chaperone", Sessions: 8, Rate: 100, Calls: 1000, OK: 990, Failures: 10, FirstFailure: "",
		Elapsed: 10 * time.Second, CPU: 2 * time.Second, Throughput: 100,
		Latency: Percentiles{P50: ms(5), P90: ms(9), P99: ms(20), P999: ms(40), Max: ms(50), Mean: ms(6), N: 1000}}
	r2 := Result{Target: "chaperone", Sessions: 8, Rate: 100, Calls: 3000, OK: 3000, FirstFailure: "HTTP 500: x",
		Elapsed: 12 * time.Second, CPU: 3 * time.Second, Throughput: 250,
		Latency: Percentiles{P50: ms(1), P90: ms(30), P99: ms(10), P999: ms(80), Max: ms(90), Mean: ms(2), N: 3000}}
	r3 := Result{Target: "chaperone", Sessions: 8, Rate: 100, Calls: 2000, OK: 1995, Failures: 5, FirstFailure: "HTTP 502: y",
		Elapsed: 11 * time.Second, CPU: 8 * time.Second, Throughput: 180,
		Latency: Percentiles{P50: ms(3), P90: ms(10), P99: ms(30), P999: ms(60), Max: ms(70), Mean: ms(4), N: 2000}}
	// CPU per call: 2ms, 1ms, 4ms: median 2ms; with the median Calls (2000), CPU 4s.
	want := Result{Target: "chaperone", Sessions: 8, Rate: 100, Calls: 2000, OK: 1995, Failures: 5, FirstFailure: "HTTP 500: x",
		Elapsed: 11 * time.Second, CPU: 4 * time.Second, Throughput: 180,
		Latency: Percentiles{P50: ms(3), P90: ms(10), P99: ms(20), P999: ms(60), Max: ms(70), Mean: ms(4), N: 2000}}
	got := Median([]Result{r1, r2, r3})
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Median of three (-want +got):\n%s", diff)
	}
	if got.CPUPerCall() != 2*time.Millisecond {
		t.Errorf("Median CPUPerCall = %v, want the median per call, 2ms", got.CPUPerCall())
	}

	two := Median([]Result{r1, r2})
	if two.Calls != 2000 || two.Throughput != 175 || two.Latency.P50 != 3*time.Millisecond || two.Elapsed != 11*time.Second {
		t.Errorf("Median of two = Calls %d, Throughput %v, P50 %v, Elapsed %v; want the means of the middle pair: 2000, 175, 3ms, 11s",
			two.Calls, two.Throughput, two.Latency.P50, two.Elapsed)
	}
	if diff := cmp.Diff(r2, Median([]Result{r2})); diff != "" {
		t.Errorf("Median of one (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(Result{}, Median(nil)); diff != "" {
		t.Errorf("Median of none (-want +got):\n%s", diff)
	}
	noCalls := Median([]Result{{CPU: time.Second}, {CPU: 3 * time.Second}, {CPU: 2 * time.Second}})
	if noCalls.CPU != 2*time.Second {
		t.Errorf("Median without calls: CPU = %v, want the median CPU, 2s", noCalls.CPU)
	}
}

func TestCPUPerCall(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		r    Result
		want time.Duration
	}{
		{Result{Calls: 4, CPU: time.Millisecond}, 250 * time.Microsecond},
		{Result{Calls: 0, CPU: time.Second}, 0},
		{Result{Calls: -1, CPU: time.Second}, 0},
	} {
		if got := tt.r.CPUPerCall(); got != tt.want {
			t.Errorf("Result{Calls: %d, CPU: %v}.CPUPerCall() = %v, want %v", tt.r.Calls, tt.r.CPU, got, tt.want)
		}
	}
}
