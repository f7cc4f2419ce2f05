package gateway

import (
	"context"
	"net/http"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/chaperone-dev/chaperone/internal/identity"
	"github.com/chaperone-dev/chaperone/internal/pipeline"
	"github.com/chaperone-dev/chaperone/internal/telemetry"
)

// SpanAuthenticate is the span of checking the request's credential.
const SpanAuthenticate = "chaperone.authenticate"

// arrival is when a request came in and how long authenticating it took: the call's
// span, which can only start once the body names the tool, starts at the arrival.
// Without a tracer it reads no clock.
type arrival struct {
	start, authEnd time.Time
	header         http.Header
}

func (g *Gateway) arrive(r *http.Request) arrival {
	if g.opts.Tracer == nil {
		return arrival{}
	}
	return arrival{start: time.Now(), header: r.Header}
}

func (a *arrival) authenticated() {
	if !a.start.IsZero() {
		a.authEnd = time.Now()
	}
}

// parentContext returns ctx carrying the agent's trace: the W3C trace context in the
// tools/call's _meta if it has a valid one (per message, so it wins), else the HTTP
// traceparent header. A malformed or oversized one is ignored: the call starts a trace
// of its own.
func parentContext(ctx context.Context, h http.Header, traceparent, tracestate string) context.Context {
	if meta := telemetry.FromMeta(ctx, traceparent, tracestate); trace.SpanContextFromContext(meta).IsValid() {
		return meta
	}
	return telemetry.FromHTTP(ctx, h)
}

// startCall starts the server span of a tools/call, as the OpenTelemetry MCP conventions
// name it, with the authentication that preceded it as its first child.
func (g *Gateway) startCall(ctx context.Context, a arrival, meta *traceMeta, rid string, pr *identity.Principal, sess *session, id []byte, proto, tool string, u *usage) (context.Context, trace.Span) {
	if g.opts.Tracer == nil {
		return ctx, trace.SpanFromContext(ctx)
	}
	ctx = parentContext(ctx, a.header, meta.TraceParent, meta.TraceState)
	attrs := []attribute.KeyValue{
		pipeline.AttrMCPMethod.String("tools/call"), pipeline.AttrToolName.String(tool),
		pipeline.AttrOperation.String("execute_tool"), pipeline.AttrToolCallID.String(rid),
		attribute.String("jsonrpc.request.id", string(id)), attribute.String("network.transport", "tcp"),
		attribute.String("network.protocol.name", "http"), pipeline.AttrAgentID.String(pr.Agent.ID),
	}
	if proto != "" {
		attrs = append(attrs, attribute.String("mcp.protocol.version", proto))
	}
	if sess != nil {
		attrs = append(attrs, pipeline.AttrMCPSession.String(sess.id))
	}
	if u != nil {
		attrs = append(attrs, attribute.Int64("gen_ai.usage.input_tokens", u.InputTokens), attribute.Int64("gen_ai.usage.output_tokens", u.OutputTokens))
	}
	ctx, sp := g.opts.Tracer.Start(ctx, "tools/call "+tool, trace.WithSpanKind(trace.SpanKindServer),
		trace.WithTimestamp(a.start), trace.WithAttributes(attrs...))
	_, as := g.opts.Tracer.Start(ctx, SpanAuthenticate, trace.WithTimestamp(a.start),
		trace.WithAttributes(pipeline.AttrAgentID.String(pr.Agent.ID), attribute.String("chaperone.credential", credentialKind(pr))))
	as.End(trace.WithTimestamp(a.authEnd))
	return ctx, sp
}

// traceFailedAuth records a refused credential as a span of its own, in the agent's trace
// if its HTTP request carried one.
func (g *Gateway) traceFailedAuth(ctx context.Context, a arrival, rid, failure string) {
	if g.opts.Tracer == nil {
		return
	}
	ctx = parentContext(ctx, a.header, "", "")
	_, sp := g.opts.Tracer.Start(ctx, SpanAuthenticate, trace.WithSpanKind(trace.SpanKindServer), trace.WithTimestamp(a.start),
		trace.WithAttributes(pipeline.AttrToolCallID.String(rid), attribute.String("error.type", "unauthenticated"),
			attribute.String("chaperone.auth.failure", failure)))
	sp.SetStatus(codes.Error, "unauthenticated")
	sp.End(trace.WithTimestamp(a.authEnd))
}

// credentialKind says what kind of credential authenticated the request, never the
// credential: a static token, or an issued token's id.
func credentialKind(pr *identity.Principal) string {
	if pr.TokenID != "" {
		return "issued:" + pr.TokenID
	}
	return "static"
}

// traceMeta are the W3C trace context keys of a request's _meta.
type traceMeta struct {
	TraceParent string `json:"traceparent"`
	TraceState  string `json:"tracestate"`
}
