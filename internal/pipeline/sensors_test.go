package pipeline_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chaperone-dev/chaperone/internal/inspect"
	"github.com/chaperone-dev/chaperone/internal/pipeline"
	"github.com/chaperone-dev/chaperone/internal/policy"
	"github.com/chaperone-dev/chaperone/internal/registry"
	"github.com/chaperone-dev/chaperone/internal/upstream"
)

// newSensors returns the sensors the gateway runs by default, with the embedded model.
func newSensors(tb testing.TB, budget time.Duration) *pipeline.Sensors {
	tb.Helper()
	m, err := inspect.DefaultModel()
	if err != nil {
		tb.Fatal(err)
	}
	pii, err := inspect.NewPIIScanner(nil)
	if err != nil {
		tb.Fatal(err)
	}
	s := &pipeline.Sensors{
		Injection: inspect.NewInjectionDetector(m, 0), Secrets: inspect.NewSecretScanner(), PII: pii,
		Budget: budget, VaultKey: []byte("0123456789abcdef0123456789abcdef"), Nonce: func() string { return "00112233aabbccdd" },
	}
	if err := s.Init(); err != nil {
		tb.Fatal(err)
	}
	return s
}

// mailResult is a tool result of about n bytes: ordinary business mail, as JSON text.
func mailResult(n int) json.RawMessage {
	var b strings.Builder
	for i := 0; b.Len() < n; i++ {
		fmt.Fprintf(&b, "Message %d from maria.schneider@example.com: the quarterly numbers are in reports/q%d.md; "+
			"please review the budget lines before Thursday and let me know if anything is missing. ", i, i%4+1)
	}
	out, _ := json.Marshal(map[string]any{"content": []any{map[string]any{"type": "text", "text": b.String()}}})
	return out
}

func sensorPipeline(tb testing.TB, s *pipeline.Sensors, result json.RawMessage) (*pipeline.Pipeline, *pipeline.Call) {
	tb.Helper()
	decls := []registry.Declaration{{Name: "mail", Upstream: "srv", UpstreamName: "mail", Class: policy.ClassRead,
		Sensors: inspect.ToolSettings{ResultInjection: inspect.InjectionFlag, ResultSecrets: inspect.SecretsRedact, ResultPII: inspect.PIIAllow}}}
	reg := newRegistry(tb, decls, map[string][]upstream.Tool{"srv": {{Name: "mail", InputSchema: json.RawMessage(`{"type":"object","properties":{"folder":{"type":"string"}}}`)}}})
	pol := compilePolicy(tb, "rules:\n  - id: read\n    match: {tools: [mail]}\n    effect: allow\n", decls)
	p := pipeline.New(pipeline.Options{
		Tools: reg, Policy: func() *policy.Policy { return pol }, Audit: fakeDiscardAuditor{},
		Upstreams: fakeFixedUpstream{result: result}, Sensors: s,
	})
	c := benchCall()
	c.Tool, c.Arguments = "mail", json.RawMessage(`{"folder":"inbox"}`)
	return p, c
}

// TestSensorBudgetFailsClosed: a result too large to scan inline that the sensors cannot
// finish within their budget is withheld; with on_error: open it passes, unscanned.
func TestSensorBudgetFailsClosed(t *testing.T) {
	big := mailResult(512 << 10)
	s := newSensors(t, time.Nanosecond)
	p, c := sensorPipeline(t, s, big)
	out := p.Handle(t.Context(), c)
	if out.Refusal == nil || out.Refusal.Code != pipeline.CodeSensorUnavailable {
		t.Fatalf("Handle() = %+v, want sensor_unavailable", out.Refusal)
	}
	s = newSensors(t, time.Nanosecond)
	s.FailOpen = true
	p, c = sensorPipeline(t, s, big)
	if out := p.Handle(t.Context(), c); out.Refusal != nil {
		t.Fatalf("Handle() with fail-open = %+v, want the result", out.Refusal)
	}
	// A small result is scanned inline, whatever the budget.
	p, c = sensorPipeline(t, newSensors(t, time.Nanosecond), mailResult(2<<10))
	if out := p.Handle(t.Context(), c); out.Refusal != nil {
		t.Fatalf("Handle(small result) = %+v", out.Refusal)
	}
}

// BenchmarkHandleSensors is one allowed call without and with the content sensors, on
// results of 1 KB and 10 KB, in one run: the difference is what the sensors cost a call.
// See BENCHMARKS.md.
func BenchmarkHandleSensors(b *testing.B) {
	for _, size := range []int{1 << 10, 10 << 10} {
		for _, on := range []bool{false, true} {
			name := fmt.Sprintf("result=%dKB/sensors=%v", size>>10, on)
			b.Run(name, func(b *testing.B) {
				var s *pipeline.Sensors
				if on {
					s = newSensors(b, time.Second)
				}
				p, c := sensorPipeline(b, s, mailResult(size))
				mustAllow(b, p, c)
				ctx := b.Context()
				b.ReportAllocs()
				for b.Loop() {
					if out := p.Handle(ctx, c); out.Refusal != nil {
						b.Fatal(out.Refusal.Message)
					}
				}
			})
		}
	}
}
