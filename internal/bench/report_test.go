package bench

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// TestCompareCommitsPerCall reads a target's commit counter around each run and reports
// its increase per call; here the counter is the upstream's call count, one per call.
// A counter that cannot be read fails the comparison, naming it, instead of reporting 0.
func TestCompareCommitsPerCall(t *testing.T) {
	t.Parallel()
	up, ts := newTestUpstream(t, UpstreamOptions{ResultBytes: 16})
	hc := NewHTTPClient(2)
	load := []Load{{Sessions: 2, Duration: 200 * time.Millisecond}}
	baseline := Measured{Target: Target{Name: "direct", URL: ts.URL}}
	counted := Measured{Target: Target{Name: "counted", URL: ts.URL}, Commits: func() (int64, error) { return up.Calls(), nil }}
	cs, err := Compare(t.Context(), hc, baseline, []Measured{counted}, load, 2, nil)
	if err != nil {
		t.Fatal(err)
	}
	o := cs[0].Targets[0]
	if !o.CommitsKnown || o.CommitsPerCall != 1 {
		t.Errorf("commits per call = %v (known %v), want 1: one upstream call per call", o.CommitsPerCall, o.CommitsKnown)
	}
	var b strings.Builder
	if err := WriteText(&b, cs); err != nil || !strings.Contains(b.String(), "; 1.00 audit commits per call") {
		t.Errorf("WriteText = %v\n%s\nwant the commits per call", err, b.String())
	}

	broken := Measured{Target: Target{Name: "broken", URL: ts.URL}, Commits: func() (int64, error) { return 0, errors.New("metrics are off") }}
	if _, err := Compare(t.Context(), hc, baseline, []Measured{broken}, load, 1, nil); err == nil || !strings.Contains(err.Error(), "broken: read audit commits: metrics are off") {
		t.Errorf("Compare with an unreadable counter = %v, want an error naming the target and the counter", err)
	}
}
