package telemetry

import (
	"context"
	"net/http"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// The keys of W3C trace context in an MCP request's params._meta, per the OpenTelemetry
// semantic conventions for MCP (and MCP SEP-414, which exempts them from the _meta key
// prefix rule).
const (
	MetaTraceparent = "traceparent"
	MetaTracestate  = "tracestate"
)

// Bounds on trace context read from a request. A traceparent of version 00 is 55
// bytes; a longer one than maxTraceparentBytes is ignored. A tracestate longer than
// maxTracestateBytes is dropped and the traceparent kept, as W3C trace context allows.
const (
	maxTraceparentBytes = 256
	maxTracestateBytes  = 4096
)

// traceContext is the W3C trace context propagator; it holds no state.
var traceContext = propagation.TraceContext{}

// FromHTTP returns ctx with the remote span context of the W3C traceparent and
// tracestate headers in h. Missing, oversized or malformed headers are ignored: ctx is
// returned as it is and the call starts a trace of its own.
func FromHTTP(ctx context.Context, h http.Header) context.Context {
	tp := h.Get(MetaTraceparent)
	if tp == "" || len(tp) > maxTraceparentBytes {
		return ctx
	}
	return FromMeta(ctx, tp, h.Get(MetaTracestate))
}

// FromMeta returns ctx with the remote span context of an MCP request's
// params._meta["traceparent"] and params._meta["tracestate"]. A missing, oversized or
// malformed traceparent is ignored, never an error: ctx is returned as it is, so a
// parent taken from the HTTP headers ([FromHTTP]) stays, and without one the call
// starts a trace of its own. An oversized or malformed tracestate is dropped.
func FromMeta(ctx context.Context, traceparent, tracestate string) context.Context {
	if traceparent == "" || len(traceparent) > maxTraceparentBytes {
		return ctx
	}
	if len(tracestate) > maxTracestateBytes {
		tracestate = ""
	}
	return traceContext.Extract(ctx, metaCarrier{traceparent: traceparent, tracestate: tracestate})
}

// ToMeta returns the W3C trace context of the span in ctx as params._meta entries
// ("traceparent" and, when there is one, "tracestate"), for a request Chaperone sends
// on. It returns nil when ctx holds no valid span context.
func ToMeta(ctx context.Context) map[string]string {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return nil
	}
	m := propagation.MapCarrier{}
	traceContext.Inject(ctx, m)
	if len(m) == 0 {
		return nil
	}
	return m
}

// metaCarrier carries the two trace context values of a request to the propagator
// without building a map.
type metaCarrier struct{ traceparent, tracestate string }

func (c metaCarrier) Get(key string) string {
	switch key {
	case MetaTraceparent:
		return c.traceparent
	case MetaTracestate:
		return c.tracestate
	}
	return ""
}

// Set is never called: the carrier is only read.
func (metaCarrier) Set(string, string) {}

func (metaCarrier) Keys() []string { return []string{MetaTraceparent, MetaTracestate} }
