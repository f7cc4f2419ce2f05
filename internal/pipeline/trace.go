package pipeline

import (
	"context"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/chaperone-dev/chaperone/internal/audit"
	"github.com/chaperone-dev/chaperone/internal/policy"
)

// Span names of the pipeline's stages. Each is a child of the call's span, which the
// ingress starts ("tools/call <tool>", kind server).
const (
	SpanAdmit          = "chaperone.admit"         // lookup, kill switches, status, scope, breakers, rate limits, loops
	SpanValidate       = "chaperone.validate"      // placeholders swapped back, arguments decoded and validated
	SpanSensorsCall    = "chaperone.sensors.call"  // the sensors on the arguments and prompt
	SpanSensorEgress   = "chaperone.sensor.egress" // destinations in the arguments against the allow-list
	SpanSensorInject   = "chaperone.sensor.injection"
	SpanSensorSecrets  = "chaperone.sensor.secrets"
	SpanSensorPII      = "chaperone.sensor.pii"
	SpanPolicy         = "chaperone.policy"         // flow, risk, baselines and the policy's decision
	SpanApproval       = "chaperone.approval"       // the wait for a person's decision
	SpanAuditIntent    = "chaperone.audit.intent"   // the intent made durable before the upstream is called
	SpanSensorsResult  = "chaperone.sensors.result" // the sensors on the result
	SpanAuditOutcome   = "chaperone.audit.outcome"  // the outcome's record
	SpanUpstreamPrefix = "tools/call "              // the upstream call (kind client), followed by the tool's name
)

// Attribute keys. Where the OpenTelemetry semantic conventions for generative AI and MCP
// have a name, it is used; Chaperone's own facts are under chaperone.*.
const (
	AttrToolName       = attribute.Key("gen_ai.tool.name")
	AttrToolCallID     = attribute.Key("gen_ai.tool.call.id")
	AttrToolArguments  = attribute.Key("gen_ai.tool.call.arguments")
	AttrToolResult     = attribute.Key("gen_ai.tool.call.result")
	AttrOperation      = attribute.Key("gen_ai.operation.name")
	AttrAgentID        = attribute.Key("gen_ai.agent.id")
	AttrUserID         = attribute.Key("user.id")
	AttrMCPMethod      = attribute.Key("mcp.method.name")
	AttrMCPSession     = attribute.Key("mcp.session.id")
	AttrErrorType      = attribute.Key("error.type")
	AttrTask           = attribute.Key("chaperone.task.id")
	AttrChain          = attribute.Key("chaperone.delegation.chain")
	AttrUpstream       = attribute.Key("chaperone.upstream")
	AttrDecision       = attribute.Key("chaperone.decision")
	AttrRules          = attribute.Key("chaperone.policy.rules")
	AttrPolicyVersion  = attribute.Key("chaperone.policy.version")
	AttrRisk           = attribute.Key("chaperone.risk.score")
	AttrRiskFactors    = attribute.Key("chaperone.risk.factors")
	AttrRefusal        = attribute.Key("chaperone.refusal.code")
	AttrSensors        = attribute.Key("chaperone.sensors")
	AttrSpend          = attribute.Key("chaperone.cost")
	AttrTokens         = attribute.Key("chaperone.tokens")
	AttrApproval       = attribute.Key("chaperone.approval.id")
	AttrResultBytes    = attribute.Key("chaperone.result.bytes")
	AttrFound          = attribute.Key("chaperone.sensor.found")
	AttrInjectionScore = attribute.Key("chaperone.sensor.injection.score")
)

// noSpan is what a stage gets when tracing is off: it records nothing.
var noSpan = trace.SpanFromContext(context.Background())

// span starts a stage's span, a child of ctx's; with tracing off it returns ctx and a
// span that does nothing, at no cost.
func (p *Pipeline) span(ctx context.Context, name string) (context.Context, trace.Span) {
	if p.opts.Tracer == nil {
		return ctx, noSpan
	}
	return p.opts.Tracer.Start(ctx, name)
}

// spanAt records a stage that has already run, from start to end.
func (p *Pipeline) spanAt(ctx context.Context, name string, start, end time.Time, attrs ...attribute.KeyValue) {
	if p.opts.Tracer == nil {
		return
	}
	_, sp := p.opts.Tracer.Start(ctx, name, trace.WithTimestamp(start), trace.WithAttributes(attrs...))
	sp.End(trace.WithTimestamp(end))
}

// endStage ends a stage's span; a refusal code marks it as the stage that refused.
func endStage(sp trace.Span, code Code) {
	if code != "" && sp.IsRecording() {
		sp.SetAttributes(AttrRefusal.String(string(code)))
	}
	sp.End()
}

// annotate adds what became of the call to the call's span (ctx's): who, what, the
// decision and why, and, when capture is on, the arguments and result with credentials
// redacted. It runs once per call, when Handle returns.
func (p *Pipeline) annotate(ctx context.Context, c *Call, ev *audit.Event, out *Outcome) {
	sp := trace.SpanFromContext(ctx)
	if !sp.IsRecording() {
		return
	}
	// The ingress named the call (tool, call id, agent, operation) when it started the span.
	attrs := []attribute.KeyValue{AttrDecision.String(decisionOf(out))}
	str := func(k attribute.Key, v string) {
		if v != "" {
			attrs = append(attrs, k.String(v))
		}
	}
	str(AttrUserID, ev.User)
	str(AttrTask, ev.Task)
	str(AttrUpstream, ev.Upstream)
	str(AttrPolicyVersion, out.Decision.Version)
	str(AttrApproval, ev.Approval)
	if len(ev.Chain) > 0 {
		attrs = append(attrs, AttrChain.StringSlice(ev.Chain))
	}
	if len(out.Decision.Rules) > 0 {
		attrs = append(attrs, AttrRules.StringSlice(out.Decision.Rules))
	}
	if ev.Risk > 0 || out.Risk > 0 {
		attrs = append(attrs, AttrRisk.Int(max(ev.Risk, out.Risk)))
	}
	if len(ev.RiskFactors) > 0 {
		attrs = append(attrs, AttrRiskFactors.StringSlice(ev.RiskFactors))
	}
	if len(ev.Sensors) > 0 {
		attrs = append(attrs, AttrSensors.StringSlice(ev.Sensors))
	}
	if ev.Spend > 0 {
		attrs = append(attrs, AttrSpend.Float64(ev.Spend))
	}
	if ev.Tokens > 0 {
		attrs = append(attrs, AttrTokens.Int64(ev.Tokens))
	}
	if out.Result != nil {
		attrs = append(attrs, AttrResultBytes.Int(len(out.Result)))
	}
	if p.opts.TraceCapture {
		if len(c.Arguments) > 0 {
			args, _ := p.redactJSON(c.Arguments)
			attrs = append(attrs, AttrToolArguments.String(string(args)))
		}
		if out.Result != nil {
			// What the agent was given: the result sensors have already worked on it.
			res, _ := p.redactJSON(out.Result)
			attrs = append(attrs, AttrToolResult.String(string(res)))
		}
	}
	if r := out.Refusal; r != nil {
		attrs = append(attrs, AttrRefusal.String(string(r.Code)), AttrErrorType.String("tool_error"))
		sp.SetStatus(codes.Error, string(r.Code))
	}
	sp.SetAttributes(attrs...)
}

// decisionOf names what became of a call for spans and metrics: allow, approve (ran after
// a person approved), or the refusal's code.
func decisionOf(out *Outcome) string {
	if out.Refusal != nil {
		return string(out.Refusal.Code)
	}
	if out.Decision.Effect != "" {
		return string(out.Decision.Effect)
	}
	return "allow"
}

// SpanBudget is the stage that charges the call to its credential's and task's budgets.
const SpanBudget = "chaperone.budget"

// stageTracker keeps the span of the stage a call is in: one stage at a time, each a
// child of the call's span. A nil tracker (tracing off) does nothing.
type stageTracker struct {
	tracer trace.Tracer
	sp     trace.Span
}

func (p *Pipeline) stages() *stageTracker {
	if p.opts.Tracer == nil {
		return nil
	}
	return &stageTracker{tracer: p.opts.Tracer}
}

// next ends the current stage and starts the stage name as a child of ctx's span. It
// returns the context for the stage's own work (children of the stage).
func (s *stageTracker) next(ctx context.Context, name string, opts ...trace.SpanStartOption) context.Context {
	if s == nil {
		return ctx
	}
	if s.sp != nil {
		s.sp.End()
	}
	ctx, s.sp = s.tracer.Start(ctx, name, opts...)
	return ctx
}

// current is the open stage's span, or one that records nothing.
func (s *stageTracker) current() trace.Span {
	if s == nil || s.sp == nil {
		return noSpan
	}
	return s.sp
}

// end ends the open stage; a refusal marks it as the stage that refused.
func (s *stageTracker) end(out *Outcome) {
	if s == nil || s.sp == nil {
		return
	}
	var code Code
	if out.Refusal != nil {
		code = out.Refusal.Code
	}
	endStage(s.sp, code)
	s.sp = nil
}

// sensorTimes are the times the secret and personal-data scans started and ended, taken
// inside the scan (which may run on another goroutine: it is read after scan returns).
// With tracing off (on false) it reads no clock.
type sensorTimes struct {
	on bool
	t  [3]time.Time
	n  int
}

// sensorTimes returns the clock of one scan: running only when spans are recorded.
func (p *Pipeline) sensorTimes() sensorTimes { return sensorTimes{on: p.opts.Tracer != nil} }

func (t *sensorTimes) start() {
	if t.on {
		t.t[0], t.n = time.Now(), 1
	}
}

func (t *sensorTimes) split() {
	if t.on && t.n < len(t.t) {
		t.t[t.n] = time.Now()
		t.n++
	}
}

// traceScans records the secret and personal-data scans as spans of ctx's stage. A scan
// that ran out of time (err) has no reliable times: it is recorded as one failed span.
func (p *Pipeline) traceScans(ctx context.Context, tm *sensorTimes, err error, secrets, pii []string) {
	if p.opts.Tracer == nil || !trace.SpanFromContext(ctx).IsRecording() {
		return
	}
	if err != nil || tm.n != len(tm.t) { // on error the scan may still run: tm is not read
		_, sp := p.opts.Tracer.Start(ctx, SpanSensorSecrets)
		sp.SetStatus(codes.Error, "scan did not finish within the sensor budget")
		sp.End()
		return
	}
	p.spanAt(ctx, SpanSensorSecrets, tm.t[0], tm.t[1], AttrFound.StringSlice(secrets))
	p.spanAt(ctx, SpanSensorPII, tm.t[1], tm.t[2], AttrFound.StringSlice(pii))
}

// traceInjection ends the injection sensor's span with what it found.
func traceInjection(sp trace.Span, inj policy.Injection, err error) {
	if sp.IsRecording() {
		if err != nil {
			sp.RecordError(err)
			sp.SetStatus(codes.Error, "injection sensor unavailable")
		} else {
			sp.SetAttributes(AttrInjectionScore.Float64(inj.Score), AttrFound.StringSlice(inj.Signals))
		}
	}
	sp.End()
}
