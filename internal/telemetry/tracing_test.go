package telemetry

import (
	"context"
	"math"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/chaperone-dev/chaperone/internal/telemetry/otlptest"
)

func TestNewTracerProviderOff(t *testing.T) {
	t.Parallel()
	for _, exporter := range []string{"", "none"} {
		// Other fields are not looked at when nothing is exported.
		tp, shutdown, err := NewTracerProvider(context.Background(), TraceOptions{Exporter: exporter, SampleRatio: 7})
		if err != nil {
			t.Fatalf("NewTracerProvider(exporter %q) error: %v", exporter, err)
		}
		_, span := tp.Tracer("test").Start(context.Background(), "op")
		if span.IsRecording() || span.SpanContext().IsValid() {
			t.Errorf("NewTracerProvider(exporter %q) span records or has a context: want a no-op", exporter)
		}
		span.End()
		if err := shutdown(context.Background()); err != nil {
			t.Errorf("shutdown of exporter %q: %v", exporter, err)
		}
	}
}

func TestNewTracerProviderInvalid(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		o    TraceOptions
		want string // in the error
		// secret must not be in the error.
		secret string
	}{
		{name: "unknown exporter", o: TraceOptions{Exporter: "zipkin", Endpoint: "x:1"}, want: `exporter "zipkin": unknown`},
		{name: "grpc empty endpoint", o: TraceOptions{Exporter: ExporterOTLPGRPC}, want: "endpoint: empty"},
		{name: "grpc no port", o: TraceOptions{Exporter: ExporterOTLPGRPC, Endpoint: "127.0.0.1"}, want: "want host:port"},
		{name: "grpc no host", o: TraceOptions{Exporter: ExporterOTLPGRPC, Endpoint: ":4317"}, want: "no host"},
		{name: "grpc port 0", o: TraceOptions{Exporter: ExporterOTLPGRPC, Endpoint: "127.0.0.1:0"}, want: "not in 1 to 65535"},
		{name: "grpc port too big", o: TraceOptions{Exporter: ExporterOTLPGRPC, Endpoint: "127.0.0.1:70000"}, want: "not in 1 to 65535"},
		{name: "grpc URL", o: TraceOptions{Exporter: ExporterOTLPGRPC, Endpoint: "http://127.0.0.1:4317"}, want: "not a URL"},
		{name: "grpc credentials", o: TraceOptions{Exporter: ExporterOTLPGRPC, Endpoint: "user:hunter2@collector:4317"}, want: "not a URL", secret: "hunter2"},
		{name: "http empty endpoint", o: TraceOptions{Exporter: ExporterOTLPHTTP}, want: "endpoint: empty"},
		{name: "http not a URL", o: TraceOptions{Exporter: ExporterOTLPHTTP, Endpoint: "http://[::1"}, want: "not a URL"},
		{name: "http scheme", o: TraceOptions{Exporter: ExporterOTLPHTTP, Endpoint: "ftp://collector:4318/v1/traces"}, want: `scheme "ftp"`},
		{name: "http host:port without scheme", o: TraceOptions{Exporter: ExporterOTLPHTTP, Endpoint: "collector:4318"}, want: "scheme"},
		{name: "http no host", o: TraceOptions{Exporter: ExporterOTLPHTTP, Endpoint: "http:///v1/traces"}, want: "no host"},
		{name: "http bad port", o: TraceOptions{Exporter: ExporterOTLPHTTP, Endpoint: "http://collector:99999/v1/traces"}, want: "not in 1 to 65535"},
		{name: "http credentials", o: TraceOptions{Exporter: ExporterOTLPHTTP, Endpoint: "https://user:hunter2@collector/v1/traces"}, want: "credentials", secret: "hunter2"},
		{name: "http query", o: TraceOptions{Exporter: ExporterOTLPHTTP, Endpoint: "https://collector/v1/traces?api_key=hunter2"}, want: "query", secret: "hunter2"},
		{name: "http fragment", o: TraceOptions{Exporter: ExporterOTLPHTTP, Endpoint: "https://collector/v1/traces#x"}, want: "fragment"},
		{name: "https insecure", o: TraceOptions{Exporter: ExporterOTLPHTTP, Endpoint: "https://collector/v1/traces", Insecure: true}, want: "insecure with an https URL"},
		{name: "ratio negative", o: TraceOptions{Exporter: ExporterOTLPGRPC, Endpoint: "c:4317", SampleRatio: -0.1}, want: "outside (0, 1]"},
		{name: "ratio above 1", o: TraceOptions{Exporter: ExporterOTLPGRPC, Endpoint: "c:4317", SampleRatio: 1.5}, want: "outside (0, 1]"},
		{name: "ratio NaN", o: TraceOptions{Exporter: ExporterOTLPGRPC, Endpoint: "c:4317", SampleRatio: math.NaN()}, want: "outside (0, 1]"},
		{name: "negative timeout", o: TraceOptions{Exporter: ExporterOTLPGRPC, Endpoint: "c:4317", Timeout: -time.Second}, want: "negative"},
		{name: "header name", o: TraceOptions{Exporter: ExporterOTLPGRPC, Endpoint: "c:4317", Headers: map[string]string{"bad name": "v"}}, want: `header "bad name": invalid name`},
		{name: "header value", o: TraceOptions{Exporter: ExporterOTLPHTTP, Endpoint: "http://c:4318", Headers: map[string]string{"Authorization": "Bearer hunter2\r\nX: y"}}, want: `header "Authorization"`, secret: "hunter2"},
		{name: "too many headers", o: TraceOptions{Exporter: ExporterOTLPGRPC, Endpoint: "c:4317", Headers: manyHeaders(maxTraceHeaders + 1)}, want: "more than 64"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tp, shutdown, err := NewTracerProvider(context.Background(), tc.o)
			if err == nil {
				_ = shutdown(context.Background())
				t.Fatalf("NewTracerProvider(%+v) = %v, nil error; want an error with %q", tc.o, tp, tc.want)
			}
			if tp != nil || shutdown != nil {
				t.Errorf("NewTracerProvider(%+v) returned a provider or shutdown with its error", tc.o)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("NewTracerProvider(%+v) error = %q, want it to contain %q", tc.o, err, tc.want)
			}
			if tc.secret != "" && strings.Contains(err.Error(), tc.secret) {
				t.Errorf("NewTracerProvider error %q holds the secret %q", err, tc.secret)
			}
		})
	}
}

func manyHeaders(n int) map[string]string {
	h := map[string]string{}
	for i := range n {
		h["X-H"+strings.Repeat("a", i)] = "v"
	}
	return h
}

func TestNewTracerProviderAllProblems(t *testing.T) {
	t.Parallel()
	_, _, err := NewTracerProvider(context.Background(), TraceOptions{Exporter: ExporterOTLPGRPC, SampleRatio: 2, Timeout: -1})
	if err == nil {
		t.Fatal("NewTracerProvider(three problems) = nil error")
	}
	for _, want := range []string{"endpoint: empty", "sample ratio 2", "timeout -1ns"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("NewTracerProvider(three problems) error = %q, want it to report %q", err, want)
		}
	}
}

// exportCase is one way of exporting to a real receiver.
type exportCase struct {
	name  string
	start func(testing.TB) *otlptest.Receiver
	opts  func(r *otlptest.Receiver) TraceOptions
}

var exportCases = []exportCase{
	{
		name:  "otlp-grpc",
		start: otlptest.StartGRPC,
		opts: func(r *otlptest.Receiver) TraceOptions {
			return TraceOptions{Exporter: ExporterOTLPGRPC, Endpoint: r.Endpoint(), Insecure: true}
		},
	},
	{
		name:  "otlp-http",
		start: otlptest.StartHTTP,
		opts: func(r *otlptest.Receiver) TraceOptions {
			return TraceOptions{Exporter: ExporterOTLPHTTP, Endpoint: r.Endpoint()}
		},
	},
	{
		// A URL without a path is sent to /v1/traces.
		name:  "otlp-http without path",
		start: otlptest.StartHTTP,
		opts: func(r *otlptest.Receiver) TraceOptions {
			return TraceOptions{Exporter: ExporterOTLPHTTP, Endpoint: strings.TrimSuffix(r.Endpoint(), otlptest.TracesPath)}
		},
	},
}

func TestExport(t *testing.T) {
	t.Parallel()
	for _, tc := range exportCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := tc.start(t)
			o := tc.opts(r)
			o.ServiceVersion = "1.2.3"
			o.Headers = map[string]string{"X-Collector-Key": "k-123"}
			tp, shutdown, err := NewTracerProvider(context.Background(), o)
			if err != nil {
				t.Fatalf("NewTracerProvider(%+v) error: %v", o, err)
			}
			tracer := tp.Tracer("github.com/chaperone-dev/chaperone/internal/gateway")
			ctx, parent := tracer.Start(context.Background(), "tools/call search", trace.WithSpanKind(trace.SpanKindServer),
				trace.WithAttributes(attribute.String("mcp.method.name", "tools/call"), attribute.String("gen_ai.tool.name", "search")))
			_, child := tracer.Start(ctx, "upstream search", trace.WithSpanKind(trace.SpanKindClient),
				trace.WithAttributes(attribute.Int64("chaperone.attempts", 2), attribute.Bool("chaperone.retried", true)))
			child.SetStatus(codes.Error, "upstream unavailable")
			child.End()
			parent.End()
			if err := shutdown(context.Background()); err != nil {
				t.Fatalf("shutdown: %v", err)
			}

			spans := r.WaitSpans(t, 2, 10*time.Second)
			byName := map[string]otlptest.Span{}
			for _, s := range spans {
				byName[s.Name] = s
			}
			p, c := byName["tools/call search"], byName["upstream search"]
			if p.SpanID == "" || c.SpanID == "" {
				t.Fatalf("received spans %+v, want the parent and the child", spans)
			}
			if p.SpanID != parent.SpanContext().SpanID().String() || p.ParentSpanID != "" {
				t.Errorf("parent span id %s parent %q, want %s and no parent", p.SpanID, p.ParentSpanID, parent.SpanContext().SpanID())
			}
			if c.TraceID != p.TraceID || c.ParentSpanID != p.SpanID {
				t.Errorf("child trace %s parent %s, want trace %s parent %s", c.TraceID, c.ParentSpanID, p.TraceID, p.SpanID)
			}
			if p.Kind != "server" || c.Kind != "client" {
				t.Errorf("kinds = %s, %s, want server, client", p.Kind, c.Kind)
			}
			if p.Attributes["gen_ai.tool.name"] != "search" || c.Attributes["chaperone.attempts"] != int64(2) || c.Attributes["chaperone.retried"] != true {
				t.Errorf("attributes = %v, %v, want the ones set", p.Attributes, c.Attributes)
			}
			if c.Status != "error" || c.StatusMessage != "upstream unavailable" {
				t.Errorf("child status = %s %q, want error %q", c.Status, c.StatusMessage, "upstream unavailable")
			}
			if p.Resource["service.name"] != ServiceName || p.Resource["service.version"] != "1.2.3" {
				t.Errorf("resource = %v, want service.name %q and service.version 1.2.3", p.Resource, ServiceName)
			}
			if p.Scope != "github.com/chaperone-dev/chaperone/internal/gateway" {
				t.Errorf("scope = %q, want the tracer's name", p.Scope)
			}
			if !p.End.After(p.Start) && !p.End.Equal(p.Start) {
				t.Errorf("parent span ends %v before it starts %v", p.End, p.Start)
			}
			if got := r.Headers().Get("X-Collector-Key"); got != "k-123" {
				t.Errorf("receiver header X-Collector-Key = %q, want %q", got, "k-123")
			}
		})
	}
}

// TestExportHonoursTraceparent: a span started from the trace context an agent sent is
// exported in the agent's trace, as the child of the agent's span.
func TestExportHonoursTraceparent(t *testing.T) {
	t.Parallel()
	for _, tc := range exportCases[:2] {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := tc.start(t)
			// A ratio that samples almost nothing: the agent's sampled flag decides.
			o := tc.opts(r)
			o.SampleRatio = 1e-9
			tp, shutdown, err := NewTracerProvider(context.Background(), o)
			if err != nil {
				t.Fatalf("NewTracerProvider(%+v) error: %v", o, err)
			}
			tracer := tp.Tracer("test")
			_, sampled := tracer.Start(FromMeta(context.Background(), testTraceparent, ""), "sampled by the agent")
			sampled.End()
			unsampledTP := "00-" + strings.Repeat("1", 32) + "-" + testSpanID + "-00"
			_, unsampled := tracer.Start(FromMeta(context.Background(), unsampledTP, ""), "not sampled by the agent")
			unsampled.End()
			if err := shutdown(context.Background()); err != nil {
				t.Fatalf("shutdown: %v", err)
			}
			// Shutdown has flushed: everything that will arrive has.
			spans := r.Spans()
			if len(spans) != 1 {
				t.Fatalf("received %d spans %+v, want only the one the agent sampled", len(spans), spans)
			}
			if s := spans[0]; s.TraceID != testTraceID || s.ParentSpanID != testSpanID {
				t.Errorf("span trace %s parent %s, want trace %s parent %s (the traceparent's)", s.TraceID, s.ParentSpanID, testTraceID, testSpanID)
			}
		})
	}
}
