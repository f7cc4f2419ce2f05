package bench

import (
	"slices"
	"time"
)

// Percentiles summarises latencies. Percentiles are by nearest rank: the p-th percentile
// of N sorted samples is the sample at index ceil(p/100*N)-1, always an observed value.
type Percentiles struct {
	P50, P90, P99, P999, Max time.Duration
	// Mean is the arithmetic mean, rounded towards zero.
	Mean time.Duration
	// N is the number of samples summarised.
	N int
}

// Summarize returns the percentiles of samples, which it sorts in place (so a caller
// that needs the order keeps a copy). No samples give the zero Percentiles.
func Summarize(samples []time.Duration) Percentiles {
	n := len(samples)
	if n == 0 {
		return Percentiles{}
	}
	slices.Sort(samples)
	return Percentiles{
		P50:  nearestRank(samples, 50, 100),
		P90:  nearestRank(samples, 90, 100),
		P99:  nearestRank(samples, 99, 100),
		P999: nearestRank(samples, 999, 1000),
		Max:  samples[n-1],
		Mean: mean(samples),
		N:    n,
	}
}

// nearestRank returns the (num/den*100)-th percentile of sorted, in integer arithmetic so
// that 99.9 is exact.
func nearestRank(sorted []time.Duration, num, den int) time.Duration {
	k := (num*len(sorted) + den - 1) / den // ceil(num/den*N)
	return sorted[max(k-1, 0)]
}

// mean returns the mean of samples without overflow, adding quotients and remainders
// by N separately.
func mean(samples []time.Duration) time.Duration {
	n := int64(len(samples))
	var q, r int64
	for _, s := range samples {
		q += int64(s) / n
		r += int64(s) % n
		if r >= n {
			q, r = q+1, r-n
		} else if r <= -n {
			q, r = q-1, r+n
		}
	}
	return time.Duration(q)
}

// CPUPerCall returns the process CPU time per completed call, 0 without calls.
func (r Result) CPUPerCall() time.Duration {
	if r.Calls <= 0 {
		return 0
	}
	return r.CPU / time.Duration(r.Calls)
}

// Median combines rounds of the same run into one Result: each numeric field is the
// median of that field across the rounds, taken separately (so the fields of the median
// need not agree with one another: Throughput is not Calls/Elapsed of the median). With
// an even number of rounds the median is the mean of the two middle values. CPU is set so
// that CPUPerCall of the median is the median CPU per call (CPU itself is that times the
// median Calls). Target is the first round's; FirstFailure the first one any round has.
// One round is returned as it is; none gives the zero Result.
func Median(results []Result) Result {
	switch len(results) {
	case 0:
		return Result{}
	case 1:
		return results[0]
	}
	ints := func(f func(Result) int64) int64 { return median(field(results, f), midInt) }
	floats := func(f func(Result) float64) float64 { return median(field(results, f), midFloat) }
	durations := func(f func(Result) time.Duration) time.Duration {
		return time.Duration(ints(func(r Result) int64 { return int64(f(r)) }))
	}

	out := Result{
		Target:     results[0].Target,
		Sessions:   int(ints(func(r Result) int64 { return int64(r.Sessions) })),
		Rate:       floats(func(r Result) float64 { return r.Rate }),
		Calls:      ints(func(r Result) int64 { return r.Calls }),
		OK:         ints(func(r Result) int64 { return r.OK }),
		ToolErrors: ints(func(r Result) int64 { return r.ToolErrors }),
		RPCErrors:  ints(func(r Result) int64 { return r.RPCErrors }),
		Failures:   ints(func(r Result) int64 { return r.Failures }),
		Elapsed:    durations(func(r Result) time.Duration { return r.Elapsed }),
		Throughput: floats(func(r Result) float64 { return r.Throughput }),
		Latency: Percentiles{
			P50:  durations(func(r Result) time.Duration { return r.Latency.P50 }),
			P90:  durations(func(r Result) time.Duration { return r.Latency.P90 }),
			P99:  durations(func(r Result) time.Duration { return r.Latency.P99 }),
			P999: durations(func(r Result) time.Duration { return r.Latency.P999 }),
			Max:  durations(func(r Result) time.Duration { return r.Latency.Max }),
			Mean: durations(func(r Result) time.Duration { return r.Latency.Mean }),
			N:    int(ints(func(r Result) int64 { return int64(r.Latency.N) })),
		},
	}
	for _, r := range results {
		if r.FirstFailure != "" {
			out.FirstFailure = r.FirstFailure
			break
		}
	}
	if perCall := durations(Result.CPUPerCall); out.Calls > 0 {
		out.CPU = perCall * time.Duration(out.Calls)
	} else {
		out.CPU = durations(func(r Result) time.Duration { return r.CPU })
	}
	return out
}

// field returns f of each result.
func field[T any](results []Result, f func(Result) T) []T {
	v := make([]T, len(results))
	for i, r := range results {
		v[i] = f(r)
	}
	return v
}

// median returns the median of v, which it sorts; mid combines the two middle values of
// an even count. v must not be empty.
func median[T int64 | float64](v []T, mid func(a, b T) T) T {
	slices.Sort(v)
	m := len(v) / 2
	if len(v)%2 == 1 {
		return v[m]
	}
	return mid(v[m-1], v[m])
}

// midInt is the mean of a and b without overflow, rounded towards zero.
func midInt(a, b int64) int64 { return a/2 + b/2 + (a%2+b%2)/2 }

func midFloat(a, b float64) float64 { return a/2 + b/2 }
