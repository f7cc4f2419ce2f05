package pipeline_test

import (
	"encoding/json"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/chaperone-dev/chaperone/internal/pipeline"
	"github.com/chaperone-dev/chaperone/internal/policy"
)

// TestStagesAreChildrenOfTheCallSpan checks the span tree of an allowed call in-process;
// the OTLP export of the same tree is tested end to end in internal/daemon.
func TestStagesAreChildrenOfTheCallSpan(t *testing.T) {
	decls, reg := benchGateway(t)
	pol := compilePolicy(t, benchRules(10), decls)
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	tr := tp.Tracer("test")
	var decisions []string
	p := pipeline.New(pipeline.Options{
		Tools: reg, Policy: func() *policy.Policy { return pol }, Audit: fakeDiscardAuditor{},
		Upstreams: fakeFixedUpstream{result: json.RawMessage(`{"content":[{"type":"text","text":"sent"}]}`)},
		Tracer:    tr,
		OnCall:    func(d string, _ time.Duration) { decisions = append(decisions, d) },
	})
	ctx, root := tr.Start(t.Context(), "tools/call", trace.WithSpanKind(trace.SpanKindServer))
	out := p.Handle(ctx, benchCall())
	root.End()
	if out.Refusal != nil {
		t.Fatal(out.Refusal.Message)
	}
	byName := map[string]sdktrace.ReadOnlySpan{}
	for _, s := range rec.Ended() {
		byName[s.Name()] = s
	}
	rootID := root.SpanContext().SpanID()
	for _, name := range []string{pipeline.SpanAdmit, pipeline.SpanValidate, pipeline.SpanPolicy, pipeline.SpanBudget,
		pipeline.SpanAuditIntent, pipeline.SpanAuditOutcome} {
		s, ok := byName[name]
		if !ok || s.Parent().SpanID() != rootID {
			t.Errorf("stage %s missing or not a child of the call's span", name)
		}
	}
	up := byName[pipeline.SpanUpstreamPrefix+benchCall().Tool]
	if up == nil || up.SpanKind() != trace.SpanKindClient {
		t.Errorf("no client span for the upstream call")
	}
	var decision string
	for _, kv := range byName["tools/call"].Attributes() {
		if kv.Key == pipeline.AttrDecision {
			decision = kv.Value.AsString()
		}
	}
	if decision != "allow" || len(decisions) != 1 || decisions[0] != "allow" {
		t.Errorf("decision on the call's span = %q, OnCall saw %v", decision, decisions)
	}
}

// BenchmarkHandleTraced is the cost of tracing a call, in one run: tracing off (no tracer),
// a trace that is not sampled, and a sampled trace recorded by the OpenTelemetry SDK (no
// exporter: the export runs on the batch processor's goroutine, off the call's path).
func BenchmarkHandleTraced(b *testing.B) {
	decls, reg := benchGateway(b)
	pol := compilePolicy(b, benchRules(10), decls)
	for _, bc := range []struct {
		name   string
		tracer trace.Tracer
	}{
		{"off", nil},
		{"unsampled", sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.NeverSample())).Tracer("bench")},
		{"sampled", sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample())).Tracer("bench")},
	} {
		b.Run(bc.name, func(b *testing.B) {
			p := pipeline.New(pipeline.Options{
				Tools: reg, Policy: func() *policy.Policy { return pol }, Audit: fakeDiscardAuditor{},
				Upstreams: fakeFixedUpstream{result: json.RawMessage(`{"content":[{"type":"text","text":"sent"}]}`)},
				Tracer:    bc.tracer,
			})
			c := benchCall()
			ctx := b.Context()
			b.ReportAllocs()
			for b.Loop() {
				cctx := ctx
				var root trace.Span
				if bc.tracer != nil {
					cctx, root = bc.tracer.Start(ctx, "tools/call", trace.WithSpanKind(trace.SpanKindServer))
				}
				if out := p.Handle(cctx, c); out.Refusal != nil {
					b.Fatal(out.Refusal.Message)
				}
				if root != nil {
					root.End()
				}
			}
		})
	}
}
