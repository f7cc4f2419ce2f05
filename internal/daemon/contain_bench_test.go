package daemon_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/chaperone-dev/chaperone/internal/api"
	"github.com/chaperone-dev/chaperone/internal/chaperonetest"
	"github.com/chaperone-dev/chaperone/internal/config"
)

// BenchmarkTimeToContain measures time-to-contain under load on one node: 8 agents, 4
// sessions each (32 clients), call the gateway in a loop — fast reads of the demo upstream,
// and, for a quarter of the clients, a write to an upstream that blocks until cancelled —
// while an operator kills one agent through the admin API. Each iteration pulls the kill,
// keeps the load on for 100ms more, lifts it and checks that no call of the killed agent
// that started after the kill returned ran. It reports, over the iterations:
//
//	kill-ms      the admin API's kill request, from sending to its answer (it answers once
//	             the calls it cancelled have ended)
//	contain-ms   from sending the kill to the last answer any call of the killed agent got
//	             that was not a refusal — the slowest kill across iterations
//	after-ms     the same, from the kill's answer instead: how long after the command
//	             returned a call in scope still completed (0: none did)
//
// Run with
//
//	go test -run='^$' -bench=TimeToContain -benchtime=20x ./internal/daemon
//
// and see BENCHMARKS.md.
func BenchmarkTimeToContain(b *testing.B) {
	slow := startSlowUpstream(b)
	agents := []string{"a0", "a1", "a2", "a3", "a4", "a5", "a6", "a7"}
	g := chaperonetest.Start(b, chaperonetest.Options{
		Upstreams: []config.Upstream{{Name: "demo", Builtin: "demo"}, {Name: "slow", URL: slow.URL}},
		Tools: []config.Tool{
			{Upstream: "demo", Name: "read_inbox", Class: "read"},
			{Upstream: "slow", Name: "slow_write", Class: "write"},
		},
		Policy: "rules:\n  - {id: all, match: {}, effect: allow}\n",
		Agents: agents,
		Configure: func(c *config.Config) {
			c.Containment.Loops.Enabled = new(bool)
			c.Audit.After = "async"
		},
	})
	go func() { // the slow upstream's started signals are not needed here
		for range slow.started {
		}
	}()

	type callRec struct {
		agent      string
		start, end time.Time
		ran        bool
	}
	var mu sync.Mutex
	var recs []callRec
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i := range 32 {
		agent := agents[i%len(agents)]
		tool, args := "read_inbox", map[string]any{}
		if i%4 == 3 {
			tool, args = "slow_write", map[string]any{"n": i}
		}
		cs := g.Connect(b, g.Agents[agent].Token, "")
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				start := time.Now()
				cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				res, err := cs.CallTool(cctx, &mcp.CallToolParams{Name: tool, Arguments: args})
				cancel()
				if err != nil {
					continue // the load is stopping
				}
				r := callRec{agent: agent, start: start, end: time.Now(), ran: !res.IsError}
				mu.Lock()
				recs = append(recs, r)
				mu.Unlock()
			}
		}()
	}
	time.Sleep(200 * time.Millisecond) // the load is running

	var killMs, containMs, afterMs []float64
	escaped := 0
	b.ResetTimer()
	for i := range b.N {
		victim := agents[i%len(agents)]
		t0 := time.Now()
		code, body := adminPost(b, g, "/v1/kills", map[string]any{"scope": "agent:" + victim, "by": "bench", "reason": "time-to-contain"})
		t1 := time.Now()
		if code != http.StatusCreated {
			b.Fatalf("kill: %d %s", code, body)
		}
		time.Sleep(100 * time.Millisecond)
		mu.Lock()
		last := t0
		for _, r := range recs {
			if r.agent != victim || !r.ran || r.end.Before(t0) {
				continue
			}
			if r.start.After(t1) {
				escaped++
			}
			if r.end.After(last) {
				last = r.end
			}
		}
		recs = recs[:0]
		mu.Unlock()
		if code, body := adminPost(b, g, "/v1/kills/lift", map[string]any{"scope": "agent:" + victim, "by": "bench", "reason": "next"}); code != http.StatusOK {
			b.Fatalf("lift: %d %s", code, body)
		}
		killMs = append(killMs, ms(t1.Sub(t0)))
		containMs = append(containMs, ms(last.Sub(t0)))
		afterMs = append(afterMs, max(0, ms(last.Sub(t1))))
		time.Sleep(50 * time.Millisecond)
	}
	b.StopTimer()
	stop()
	wg.Wait()
	if escaped > 0 {
		b.Fatalf("%d calls of a killed agent that started after the kill returned ran", escaped)
	}
	b.ReportMetric(median(killMs), "kill-ms")
	b.ReportMetric(slices.Max(killMs), "kill-max-ms")
	b.ReportMetric(median(containMs), "contain-ms")
	b.ReportMetric(slices.Max(containMs), "contain-max-ms")
	b.ReportMetric(slices.Max(afterMs), "after-max-ms")
	b.ReportMetric(0, "ns/op")
	if os.Getenv("CHAPERONE_BENCH_VERBOSE") != "" {
		b.Logf("kill ms %v\ncontain ms %v", killMs, containMs)
	}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

// adminPost posts JSON to the admin API.
func adminPost(tb testing.TB, g *chaperonetest.Gateway, path string, body any) (int, string) {
	tb.Helper()
	tok, err := os.ReadFile(g.Config.Admin.TokenFile)
	if err != nil {
		tb.Fatal(err)
	}
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest(http.MethodPost, g.AdminURL+path, bytes.NewReader(b))
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	var out bytes.Buffer
	out.ReadFrom(resp.Body)
	if resp.StatusCode == http.StatusCreated {
		var kr api.KillResult
		if err := json.Unmarshal(out.Bytes(), &kr); err != nil {
			tb.Fatalf("kill answer: %v: %s", err, out.String())
		}
	}
	return resp.StatusCode, fmt.Sprint(out.String())
}
