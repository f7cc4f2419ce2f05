package telemetry

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

const (
	testTraceID     = "4bf92f3577b34da6a3ce929d0e0e4736"
	testSpanID      = "00f067aa0ba902b7"
	testTraceparent = "00-" + testTraceID + "-" + testSpanID + "-01"
)

func TestFromMeta(t *testing.T) {
	t.Parallel()
	ctx := FromMeta(context.Background(), testTraceparent, "vendor=abc,other=1")
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() || !sc.IsRemote() || !sc.IsSampled() {
		t.Fatalf("FromMeta(%q) span context = %+v, want a valid, remote, sampled one", testTraceparent, sc)
	}
	if got := sc.TraceID().String(); got != testTraceID {
		t.Errorf("FromMeta(%q) trace id = %s, want %s", testTraceparent, got, testTraceID)
	}
	if got := sc.SpanID().String(); got != testSpanID {
		t.Errorf("FromMeta(%q) span id = %s, want %s", testTraceparent, got, testSpanID)
	}
	if got := sc.TraceState().String(); got != "vendor=abc,other=1" {
		t.Errorf("FromMeta tracestate = %q, want %q", got, "vendor=abc,other=1")
	}
}

func TestFromMetaMalformed(t *testing.T) {
	t.Parallel()
	tests := map[string]string{
		"empty":             "",
		"garbage":           "not a traceparent",
		"upper-case hex":    "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01",
		"zero trace id":     "00-00000000000000000000000000000000-" + testSpanID + "-01",
		"zero span id":      "00-" + testTraceID + "-0000000000000000-01",
		"version ff":        "ff-" + testTraceID + "-" + testSpanID + "-01",
		"short trace id":    "00-4bf92f3577b34da6-" + testSpanID + "-01",
		"extra field in 00": testTraceparent + "-extra",
		"missing flags":     "00-" + testTraceID + "-" + testSpanID,
		"oversized":         "01-" + testTraceID + "-" + testSpanID + "-01-" + strings.Repeat("a", 300),
		"non-hex":           "00-" + strings.Repeat("z", 32) + "-" + testSpanID + "-01",
	}
	for name, tp := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if sc := trace.SpanContextFromContext(FromMeta(context.Background(), tp, "a=b")); sc.IsValid() {
				t.Errorf("FromMeta(%q) = valid span context %v, want none: the call starts its own trace", tp, sc)
			}
			// A parent the context already holds (from the HTTP headers) stays.
			parent := FromHTTP(context.Background(), http.Header{"Traceparent": {testTraceparent}})
			if sc := trace.SpanContextFromContext(FromMeta(parent, tp, "")); sc.TraceID().String() != testTraceID {
				t.Errorf("FromMeta(parent, %q) trace id = %s, want the parent's %s", tp, sc.TraceID(), testTraceID)
			}
		})
	}
}

// TestFromMetaFutureVersion shows that the "oversized" case above is refused for its
// size: a later version with a short extra field is accepted.
func TestFromMetaFutureVersion(t *testing.T) {
	t.Parallel()
	tp := "01-" + testTraceID + "-" + testSpanID + "-01-" + strings.Repeat("a", 100)
	if sc := trace.SpanContextFromContext(FromMeta(context.Background(), tp, "")); sc.TraceID().String() != testTraceID {
		t.Errorf("FromMeta(%q) trace id = %s, want %s", tp, sc.TraceID(), testTraceID)
	}
}

func TestFromMetaOversizedTracestate(t *testing.T) {
	t.Parallel()
	ts := "vendor=" + strings.Repeat("a", maxTracestateBytes)
	sc := trace.SpanContextFromContext(FromMeta(context.Background(), testTraceparent, ts))
	if !sc.IsValid() {
		t.Fatalf("FromMeta with an oversized tracestate: span context invalid, want the traceparent kept")
	}
	if got := sc.TraceState().Len(); got != 0 {
		t.Errorf("FromMeta with an oversized tracestate kept %d members, want 0", got)
	}
}

func TestFromHTTP(t *testing.T) {
	t.Parallel()
	h := http.Header{}
	h.Set("traceparent", testTraceparent)
	h.Set("tracestate", "k=v")
	sc := trace.SpanContextFromContext(FromHTTP(context.Background(), h))
	if sc.TraceID().String() != testTraceID || sc.SpanID().String() != testSpanID || sc.TraceState().Get("k") != "v" {
		t.Errorf("FromHTTP(%v) = %v, want trace %s span %s state k=v", h, sc, testTraceID, testSpanID)
	}
	if sc := trace.SpanContextFromContext(FromHTTP(context.Background(), http.Header{})); sc.IsValid() {
		t.Errorf("FromHTTP(no headers) = %v, want no span context", sc)
	}
	bad := http.Header{"Traceparent": {"00-zz"}}
	if sc := trace.SpanContextFromContext(FromHTTP(context.Background(), bad)); sc.IsValid() {
		t.Errorf("FromHTTP(%v) = %v, want no span context", bad, sc)
	}
}

func TestToMeta(t *testing.T) {
	t.Parallel()
	if got := ToMeta(context.Background()); got != nil {
		t.Errorf("ToMeta(no span) = %v, want nil", got)
	}
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })

	ctx := FromMeta(context.Background(), testTraceparent, "vendor=abc")
	ctx, span := tp.Tracer("test").Start(ctx, "tools/call")
	span.End()
	got := ToMeta(ctx)
	sc := span.SpanContext()
	want := map[string]string{
		MetaTraceparent: "00-" + testTraceID + "-" + sc.SpanID().String() + "-01",
		MetaTracestate:  "vendor=abc",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ToMeta(child of the agent's span) (-want +got):\n%s", diff)
	}
	ended := rec.Ended()
	if len(ended) != 1 || ended[0].Parent().SpanID().String() != testSpanID {
		t.Fatalf("recorded spans = %v, want one whose parent is %s", ended, testSpanID)
	}
}

func TestMetaRoundTrip(t *testing.T) {
	t.Parallel()
	in := map[string]string{MetaTraceparent: testTraceparent, MetaTracestate: "a=1,b=2"}
	got := ToMeta(FromMeta(context.Background(), in[MetaTraceparent], in[MetaTracestate]))
	if diff := cmp.Diff(in, got); diff != "" {
		t.Errorf("ToMeta(FromMeta(x)) (-x +got):\n%s", diff)
	}
}

func FuzzFromMeta(f *testing.F) {
	f.Add(testTraceparent, "vendor=abc")
	f.Add("00-"+testTraceID+"-"+testSpanID+"-00", "")
	f.Add("01-"+testTraceID+"-"+testSpanID+"-03-future", "a=b,c=d")
	f.Add("ff-"+testTraceID+"-"+testSpanID+"-01", "")
	f.Add("", "k=v")
	f.Add("00-zz", "=,=")
	f.Fuzz(func(t *testing.T, traceparent, tracestate string) {
		ctx := FromMeta(context.Background(), traceparent, tracestate)
		sc := trace.SpanContextFromContext(ctx)
		meta := ToMeta(ctx)
		if !sc.IsValid() {
			if meta != nil {
				t.Fatalf("ToMeta(FromMeta(%q, %q)) = %v without a valid span context", traceparent, tracestate, meta)
			}
			return
		}
		if !sc.IsRemote() {
			t.Fatalf("FromMeta(%q) span context is not remote", traceparent)
		}
		if len(traceparent) > maxTraceparentBytes {
			t.Fatalf("FromMeta accepted a traceparent of %d bytes, more than %d", len(traceparent), maxTraceparentBytes)
		}
		// What Chaperone writes, it reads back as the same.
		again := ToMeta(FromMeta(context.Background(), meta[MetaTraceparent], meta[MetaTracestate]))
		if diff := cmp.Diff(meta, again); diff != "" {
			t.Fatalf("FromMeta/ToMeta round trip of %q, %q (-first +second):\n%s", traceparent, tracestate, diff)
		}
	})
}
