package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strings"
	"text/tabwriter"
	"time"
)

// MaxRounds bounds Compare's rounds.
const MaxRounds = 100

// A Measured target is a [Target] with, optionally, a way to read the CPU time of the
// process serving it (for a gateway running in another process).
type Measured struct {
	Target
	// CPU, if set, returns the serving process's CPU time so far; Compare reads it
	// around each run.
	CPU func() (time.Duration, error)
	// InProcess says the target runs in this process: its CPU per call, minus the
	// baseline's, is what it adds (the harness's client and upstream cost the same in
	// both).
	InProcess bool
	// Commits, if set, returns how many audit commits the target has made so far (an
	// in-process Chaperone's chaperone_audit_commits_total); Compare reads it around each
	// run and reports them per call, which says how well concurrent calls shared their
	// flushes.
	Commits func() (int64, error)
}

// Comparison is one load measured on the baseline and on each target, each figure the
// median over the rounds.
type Comparison struct {
	Load     Load
	Rounds   int
	Baseline Result
	Targets  []Overhead
}

// Overhead is a target's result and what it adds to the baseline.
type Overhead struct {
	Result
	// AddedP50, AddedP99 and AddedP999 are the target's latency percentiles minus the
	// baseline's.
	AddedP50, AddedP99, AddedP999 time.Duration
	// ThroughputRatio is the target's throughput over the baseline's.
	ThroughputRatio float64
	// AddedCPU is the CPU per call the target adds: for an in-process target, this
	// process's CPU per call minus the baseline's; for a target with a CPU reader, the
	// serving process's CPU per call. Zero when neither is known (CPUKnown false).
	AddedCPU time.Duration
	CPUKnown bool
	// CommitsPerCall is the audit commits the target made per call, when it has a
	// commit counter (CommitsKnown).
	CommitsPerCall float64
	CommitsKnown   bool
}

// Compare measures every load on baseline and on each target, in rounds: within a round
// the targets run one after the other (baseline first), so that a change in the machine's
// load during the run touches all of them alike. progress, if set, is told about each run.
func Compare(ctx context.Context, hc *http.Client, baseline Measured, targets []Measured, loads []Load, rounds int, progress func(string)) ([]Comparison, error) {
	if rounds < 1 || rounds > MaxRounds {
		return nil, fmt.Errorf("bench: rounds must be between 1 and %d, got %d", MaxRounds, rounds)
	}
	if len(loads) == 0 {
		return nil, errors.New("bench: no load to run")
	}
	all := append([]Measured{baseline}, targets...)
	var out []Comparison
	for _, l := range loads {
		results := make([][]Result, len(all))
		external := make([][]time.Duration, len(all)) // serving process CPU per run
		commits := make([][]float64, len(all))        // audit commits per call, per run
		for round := range rounds {
			for i, m := range all {
				if progress != nil {
					progress(fmt.Sprintf("round %d/%d: %s, %s", round+1, rounds, m.Name, describeLoad(l)))
				}
				r, per, err := runMeasured(ctx, hc, m, l)
				if err != nil {
					return out, err
				}
				results[i] = append(results[i], r)
				external[i] = append(external[i], per.cpu)
				if per.commitsKnown {
					commits[i] = append(commits[i], per.commits)
				}
			}
		}
		c := Comparison{Load: l, Rounds: rounds, Baseline: Median(results[0])}
		for i := 1; i < len(all); i++ {
			o := overhead(c.Baseline, Median(results[i]), all[i], external[i])
			if len(commits[i]) > 0 {
				o.CommitsPerCall, o.CommitsKnown = median(commits[i], midFloat), true
			}
			c.Targets = append(c.Targets, o)
		}
		out = append(out, c)
	}
	return out, nil
}

// perCall is what m's own readers measured of a run, per call.
type perCall struct {
	cpu          time.Duration // the serving process's CPU; 0 without a CPU reader
	commits      float64       // audit commits, if commitsKnown
	commitsKnown bool
}

// runMeasured runs l on m and reads m's CPU and commit counters, those it has, around
// the run.
func runMeasured(ctx context.Context, hc *http.Client, m Measured, l Load) (Result, perCall, error) {
	var cpu0 time.Duration
	var commits0 int64
	var err error
	if m.CPU != nil {
		if cpu0, err = m.CPU(); err != nil {
			return Result{}, perCall{}, fmt.Errorf("bench: %s: read CPU: %w", m.Name, err)
		}
	}
	if m.Commits != nil {
		if commits0, err = m.Commits(); err != nil {
			return Result{}, perCall{}, fmt.Errorf("bench: %s: read audit commits: %w", m.Name, err)
		}
	}
	r, err := Run(ctx, hc, m.Target, l)
	if err != nil {
		return r, perCall{}, err
	}
	if r.Failures > 0 {
		return r, perCall{}, fmt.Errorf("bench: %s: %d of %d calls failed; the first: %s", m.Name, r.Failures, r.Calls, r.FirstFailure)
	}
	var per perCall
	if r.Calls == 0 {
		return r, per, nil
	}
	if m.CPU != nil {
		cpu1, err := m.CPU()
		if err != nil {
			return r, perCall{}, fmt.Errorf("bench: %s: read CPU: %w", m.Name, err)
		}
		per.cpu = (cpu1 - cpu0) / time.Duration(r.Calls)
	}
	if m.Commits != nil {
		commits1, err := m.Commits()
		if err != nil {
			return r, perCall{}, fmt.Errorf("bench: %s: read audit commits: %w", m.Name, err)
		}
		per.commits, per.commitsKnown = float64(commits1-commits0)/float64(r.Calls), true
	}
	return r, per, nil
}

func overhead(base, r Result, m Measured, external []time.Duration) Overhead {
	o := Overhead{
		Result:    r,
		AddedP50:  r.Latency.P50 - base.Latency.P50,
		AddedP99:  r.Latency.P99 - base.Latency.P99,
		AddedP999: r.Latency.P999 - base.Latency.P999,
	}
	if base.Throughput > 0 {
		o.ThroughputRatio = r.Throughput / base.Throughput
	}
	switch {
	case m.CPU != nil:
		o.AddedCPU, o.CPUKnown = medianDuration(external), true
	case m.InProcess:
		o.AddedCPU, o.CPUKnown = r.CPUPerCall()-base.CPUPerCall(), true
	}
	return o
}

func medianDuration(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	v := make([]int64, len(ds))
	for i, d := range ds {
		v[i] = int64(d)
	}
	return time.Duration(median(v, midInt))
}

func describeLoad(l Load) string {
	if l.Rate > 0 {
		return fmt.Sprintf("%d sessions at %g calls/s for %s", l.Sessions, l.Rate, l.Duration)
	}
	return fmt.Sprintf("%d sessions, closed loop, for %s", l.Sessions, l.Duration)
}

// WriteText writes comparisons as tables for people.
func WriteText(w io.Writer, cs []Comparison) error {
	var b strings.Builder
	for i, c := range cs {
		if i > 0 {
			b.WriteString("\n")
		}
		fmt.Fprintf(&b, "%s, medians of %d rounds\n", capitalize(describeLoad(c.Load)), c.Rounds)
		tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "target\tcalls/s\tp50\tp90\tp99\tp99.9\tCPU/call\terrors\t")
		row := func(r Result) {
			fmt.Fprintf(tw, "%s\t%.0f\t%s\t%s\t%s\t%s\t%s\t%d\t\n", r.Target, r.Throughput,
				us(r.Latency.P50), us(r.Latency.P90), us(r.Latency.P99), us(r.Latency.P999), us(r.CPUPerCall()), r.ToolErrors+r.RPCErrors)
		}
		row(c.Baseline)
		for _, o := range c.Targets {
			row(o.Result)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		for _, o := range c.Targets {
			fmt.Fprintf(&b, "%s adds %s at p50, %s at p99, %s at p99.9; throughput %.2f× %s",
				o.Target, signedUS(o.AddedP50), signedUS(o.AddedP99), signedUS(o.AddedP999), o.ThroughputRatio, c.Baseline.Target)
			if o.CPUKnown {
				fmt.Fprintf(&b, "; its CPU per call %s", us(o.AddedCPU))
			}
			if o.CommitsKnown {
				fmt.Fprintf(&b, "; %.2f audit commits per call", o.CommitsPerCall)
			}
			b.WriteString("\n")
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func capitalize(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// us formats d in microseconds, to one decimal below 100 µs.
func us(d time.Duration) string {
	v := float64(d) / float64(time.Microsecond)
	if math.Abs(v) < 100 {
		return fmt.Sprintf("%.1fµs", v)
	}
	return fmt.Sprintf("%.0fµs", v)
}

func signedUS(d time.Duration) string {
	if d >= 0 {
		return "+" + us(d)
	}
	return us(d)
}

// jsonComparison is the machine-readable form of a Comparison: times in microseconds.
type jsonComparison struct {
	Sessions int          `json:"sessions"`
	Rate     float64      `json:"rate"`
	Duration string       `json:"duration"`
	Rounds   int          `json:"rounds"`
	Baseline jsonResult   `json:"baseline"`
	Targets  []jsonTarget `json:"targets"`
}

type jsonResult struct {
	Target     string  `json:"target"`
	Calls      int64   `json:"calls"`
	OK         int64   `json:"ok"`
	ToolErrors int64   `json:"tool_errors"`
	RPCErrors  int64   `json:"rpc_errors"`
	Throughput float64 `json:"calls_per_second"`
	P50        float64 `json:"p50_us"`
	P90        float64 `json:"p90_us"`
	P99        float64 `json:"p99_us"`
	P999       float64 `json:"p999_us"`
	Max        float64 `json:"max_us"`
	CPUPerCall float64 `json:"process_cpu_per_call_us"`
}

type jsonTarget struct {
	jsonResult
	AddedP50        float64  `json:"added_p50_us"`
	AddedP99        float64  `json:"added_p99_us"`
	AddedP999       float64  `json:"added_p999_us"`
	ThroughputRatio float64  `json:"throughput_ratio"`
	AddedCPU        *float64 `json:"cpu_per_call_us,omitempty"`
	CommitsPerCall  *float64 `json:"audit_commits_per_call,omitempty"`
}

func micros(d time.Duration) float64 { return math.Round(float64(d)/float64(time.Microsecond)*10) / 10 }

func toJSONResult(r Result) jsonResult {
	return jsonResult{
		Target: r.Target, Calls: r.Calls, OK: r.OK, ToolErrors: r.ToolErrors, RPCErrors: r.RPCErrors,
		Throughput: math.Round(r.Throughput), P50: micros(r.Latency.P50), P90: micros(r.Latency.P90),
		P99: micros(r.Latency.P99), P999: micros(r.Latency.P999), Max: micros(r.Latency.Max),
		CPUPerCall: micros(r.CPUPerCall()),
	}
}

// WriteJSON writes comparisons as one JSON document: times in microseconds.
func WriteJSON(w io.Writer, cs []Comparison) error {
	out := make([]jsonComparison, 0, len(cs))
	for _, c := range cs {
		jc := jsonComparison{Sessions: c.Load.Sessions, Rate: c.Load.Rate, Duration: c.Load.Duration.String(), Rounds: c.Rounds, Baseline: toJSONResult(c.Baseline)}
		for _, o := range c.Targets {
			jt := jsonTarget{jsonResult: toJSONResult(o.Result), AddedP50: micros(o.AddedP50), AddedP99: micros(o.AddedP99),
				AddedP999: micros(o.AddedP999), ThroughputRatio: math.Round(o.ThroughputRatio*1000) / 1000}
			if o.CPUKnown {
				v := micros(o.AddedCPU)
				jt.AddedCPU = &v
			}
			if o.CommitsKnown {
				v := math.Round(o.CommitsPerCall*1000) / 1000
				jt.CommitsPerCall = &v
			}
			jc.Targets = append(jc.Targets, jt)
		}
		out = append(out, jc)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(map[string]any{"comparisons": out})
}
