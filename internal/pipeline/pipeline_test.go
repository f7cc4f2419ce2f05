package pipeline_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/chaperone-dev/chaperone/internal/audit"
	"github.com/chaperone-dev/chaperone/internal/identity"
	"github.com/chaperone-dev/chaperone/internal/pipeline"
	"github.com/chaperone-dev/chaperone/internal/policy"
	"github.com/chaperone-dev/chaperone/internal/registry"
	"github.com/chaperone-dev/chaperone/internal/store/sqlite"
	"github.com/chaperone-dev/chaperone/internal/store/sqlite/sqlitetest"
	"github.com/chaperone-dev/chaperone/internal/upstream"
)

var t0 = time.Date(2026, 3, 1, 9, 0, 7, 0, time.UTC)

var errBoom = errors.New("boom")

// ignoreRisk leaves the risk score out of event comparisons; TestRiskOnEvents checks it.
var ignoreRisk = cmpopts.IgnoreFields(audit.Event{}, "Risk", "RiskFactors")

// openStore opens a SQLite store in a temporary directory and the audit log over it.
func openStore(tb testing.TB) (*sqlite.DB, *audit.Log) {
	tb.Helper()
	db, l := sqlitetest.Open(tb)
	return db, l
}

// newRegistry builds a real registry over its own SQLite store and syncs each upstream's live
// tools, so that tools pinned on first use are active.
func newRegistry(tb testing.TB, decls []registry.Declaration, live map[string][]upstream.Tool) *registry.Registry {
	tb.Helper()
	db, log := openStore(tb)
	r := registry.New(decls, registry.Options{Pins: db, Audit: log})
	for up, tools := range live {
		if err := r.Sync(tb.Context(), up, tools); err != nil {
			tb.Fatalf("Sync(%q): %v", up, err)
		}
	}
	return r
}

// upstreamCall is one call a fakeUpstream received.
type upstreamCall struct {
	Upstream, Tool string
	Args           []byte
}

// fakeUpstream records every call and answers with call, or okResult when call is nil.
type fakeUpstream struct {
	call func(ctx context.Context, up, tool string, args json.RawMessage) (json.RawMessage, error)

	mu    sync.Mutex
	calls []upstreamCall
}

var okResult = json.RawMessage(`{"content":[{"type":"text","text":"ok"}]}`)

func (f *fakeUpstream) Call(ctx context.Context, up, tool string, args json.RawMessage) (json.RawMessage, error) {
	f.mu.Lock()
	f.calls = append(f.calls, upstreamCall{up, tool, []byte(args)})
	f.mu.Unlock()
	if f.call == nil {
		return okResult, nil
	}
	return f.call(ctx, up, tool, args)
}

func (f *fakeUpstream) recorded() []upstreamCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]upstreamCall(nil), f.calls...)
}

// fakeAuditor keeps the events it accepted in memory. fail, if set, is asked before the
// n-th append (1-based) and fails it by returning an error.
type fakeAuditor struct {
	fail func(ctx context.Context, n int, e *audit.Event) error

	mu       sync.Mutex
	appended int
	events   []audit.Event
}

func (f *fakeAuditor) Append(ctx context.Context, e *audit.Event) error {
	f.mu.Lock()
	f.appended++
	n := f.appended
	f.mu.Unlock()
	if f.fail != nil {
		if err := f.fail(ctx, n, e); err != nil {
			return err
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	c := *e
	c.Rules = append([]string(nil), e.Rules...)
	f.events = append(f.events, c)
	return nil
}

func (f *fakeAuditor) recorded() (attempts int, events []audit.Event) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.appended, append([]audit.Event(nil), f.events...)
}

const (
	echoSchema = `{"type":"object","properties":{"msg":{"type":"string","maxLength":20},"n":{"type":"number"}},"required":["msg"],"additionalProperties":false}`
	pingSchema = `{"type":"object"}`
	zeroPin    = "sha256:0000000000000000000000000000000000000000000000000000000000000000"
)

// The test gateway's tools: all on upstream srv except pend (never reached), with echo
// exposed under another name than the upstream's.
var testDecls = []registry.Declaration{
	{Name: "echo", Upstream: "srv", UpstreamName: "echo_v1", Class: policy.ClassRead},
	{Name: "ping", Upstream: "srv", UpstreamName: "ping", Class: policy.ClassRead},
	{Name: "count", Upstream: "srv", UpstreamName: "count", Class: policy.ClassRead},
	{Name: "send", Upstream: "srv", UpstreamName: "send", Class: policy.ClassExternal},
	{Name: "write", Upstream: "srv", UpstreamName: "write", Class: policy.ClassWrite},
	{Name: "wipe", Upstream: "srv", UpstreamName: "wipe", Class: policy.ClassDestructive},
	{Name: "quar", Upstream: "srv", UpstreamName: "quar", Class: policy.ClassRead, Pin: zeroPin},
	{Name: "gone", Upstream: "srv", UpstreamName: "gone", Class: policy.ClassRead},
	{Name: "pend", Upstream: "down", UpstreamName: "pend", Class: policy.ClassRead},
}

func testLive() map[string][]upstream.Tool {
	var tools []upstream.Tool
	for _, d := range testDecls {
		if d.Upstream != "srv" || d.Name == "gone" {
			continue
		}
		schema := echoSchema
		if d.Name == "ping" {
			schema = pingSchema
		}
		tools = append(tools, upstream.Tool{Name: d.UpstreamName, Description: d.Name, InputSchema: json.RawMessage(schema)})
	}
	return map[string][]upstream.Tool{"srv": tools}
}

const testPolicy = `rules:
  - id: echo-allowed
    match: {tools: [echo, ping]}
    effect: allow
  - id: send-needs-approval
    match: {tools: [send]}
    effect: approve
  - id: count-small
    match: {tools: [count]}
    when: 'args.n <= 10.0'
    effect: allow
  - id: wipe-allowed
    match: {tools: [wipe]}
    effect: allow
  - id: no-destroy
    match: {classes: [destructive]}
    effect: deny
`

func compilePolicy(tb testing.TB, src string, decls []registry.Declaration) *policy.Policy {
	tb.Helper()
	tools := make(map[string]policy.ToolInfo, len(decls))
	for _, d := range decls {
		tools[d.Name] = policy.ToolInfo{Class: d.Class}
	}
	p, err := policy.Compile([]policy.Source{{Name: "test.yaml", Data: []byte(src)}}, tools)
	if err != nil {
		tb.Fatalf("policy.Compile: %v", err)
	}
	return p
}

// harness is a pipeline over a real registry and policy, a fake upstream and a fake auditor.
type harness struct {
	reg *registry.Registry
	pol *policy.Policy
	up  *fakeUpstream
	aud *fakeAuditor
	p   *pipeline.Pipeline
}

func newHarness(tb testing.TB) *harness {
	tb.Helper()
	h := &harness{
		reg: newRegistry(tb, testDecls, testLive()),
		pol: compilePolicy(tb, testPolicy, testDecls),
		up:  &fakeUpstream{},
		aud: &fakeAuditor{},
	}
	h.p = h.pipeline(pipeline.Options{})
	return h
}

// pipeline returns a pipeline over h's parts, with opts' non-zero fields on top.
func (h *harness) pipeline(opts pipeline.Options) *pipeline.Pipeline {
	if opts.Tools == nil {
		opts.Tools = h.reg
	}
	if opts.Policy == nil {
		opts.Policy = func() *policy.Policy { return h.pol }
	}
	if opts.Upstreams == nil {
		opts.Upstreams = h.up
	}
	if opts.Audit == nil {
		opts.Audit = h.aud
	}
	if opts.Now == nil {
		opts.Now = func() time.Time { return t0 }
	}
	return pipeline.New(opts)
}

var testAgent = &identity.Agent{ID: "mail-assistant", Owner: "alice", Purpose: "mail", Environment: "prod", Labels: map[string]string{"team": "support"}}

func newCall(tool, args string) *pipeline.Call {
	c := &pipeline.Call{
		RequestID: "req-1", Principal: &identity.Principal{Agent: testAgent, User: "alice@example.com", Task: "t-1"},
		SessionID: "sess-1", SessionCalls: 3, Tool: tool,
	}
	if args != "" {
		c.Arguments = json.RawMessage(args)
	}
	return c
}

// baseEvent is the part of every event the pipeline writes for c.
func baseEvent(c *pipeline.Call, kind string) audit.Event {
	return audit.Event{
		Time: t0, Kind: kind, RequestID: c.RequestID, SessionID: c.SessionID, Agent: c.Principal.Agent.ID,
		User: c.Principal.User, Task: c.Principal.Task, Tool: c.Tool, ArgsHash: audit.HashArgs(c.Arguments),
	}
}

func TestHandleRefused(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	version := h.pol.Version()
	longName := strings.Repeat("x", 100)
	huge := `{"msg":"` + strings.Repeat("a", pipeline.MaxArgumentBytes) + `"}`
	tests := []struct {
		name         string
		tool, args   string
		wantCode     pipeline.Code
		wantMsg      string // exact, or a prefix when wantPrefix
		wantPrefix   bool
		wantEffect   policy.Effect // Outcome.Decision.Effect; "" before the policy stage
		wantRules    []string
		wantUpstream string // the event's Upstream
	}{
		{name: "unknown tool", tool: "nope", args: `{}`, wantCode: pipeline.CodeUnknownTool,
			wantMsg: `There is no tool named "nope" for this agent.`},
		{name: "unknown tool with a long name", tool: longName, args: `{}`, wantCode: pipeline.CodeUnknownTool,
			wantMsg: `There is no tool named "` + strings.Repeat("x", 64) + `…" for this agent.`},
		{name: "upstream name of an exposed tool", tool: "echo_v1", args: `{"msg":"hi"}`, wantCode: pipeline.CodeUnknownTool,
			wantMsg: `There is no tool named "echo_v1" for this agent.`},
		{name: "quarantined", tool: "quar", args: `{"msg":"hi"}`, wantCode: pipeline.CodeQuarantined, wantUpstream: "srv",
			wantMsg: `Tool "quar" is quarantined: its definition changed since it was approved.`},
		{name: "pending", tool: "pend", args: `{"msg":"hi"}`, wantCode: pipeline.CodeToolUnavailable, wantUpstream: "down",
			wantMsg: `Tool "pend" is not available: its upstream has not been reached yet.`},
		{name: "missing", tool: "gone", args: `{"msg":"hi"}`, wantCode: pipeline.CodeToolUnavailable, wantUpstream: "srv",
			wantMsg: `Tool "gone" is not available: its upstream no longer offers it.`},
		{name: "args a string", tool: "echo", args: `"hi"`, wantCode: pipeline.CodeInvalidArguments, wantUpstream: "srv",
			wantMsg: `Invalid arguments: arguments must be a JSON object.`},
		{name: "args an array", tool: "echo", args: `[1]`, wantCode: pipeline.CodeInvalidArguments, wantUpstream: "srv",
			wantMsg: `Invalid arguments: arguments must be a JSON object.`},
		{name: "args a number", tool: "echo", args: `1`, wantCode: pipeline.CodeInvalidArguments, wantUpstream: "srv",
			wantMsg: `Invalid arguments: arguments must be a JSON object.`},
		{name: "args not JSON", tool: "echo", args: `{"msg":`, wantCode: pipeline.CodeInvalidArguments, wantUpstream: "srv",
			wantMsg: `Invalid arguments: arguments must be a JSON object.`},
		{name: "args with trailing data", tool: "echo", args: `{"msg":"hi"} {}`, wantCode: pipeline.CodeInvalidArguments, wantUpstream: "srv",
			wantMsg: `Invalid arguments: arguments must be a JSON object.`},
		{name: "null args miss a required argument", tool: "echo", args: `null`, wantCode: pipeline.CodeInvalidArguments, wantUpstream: "srv",
			wantMsg: `Invalid arguments: invalid arguments for "echo"`, wantPrefix: true},
		{name: "schema type", tool: "echo", args: `{"msg":5}`, wantCode: pipeline.CodeInvalidArguments, wantUpstream: "srv",
			wantMsg: `Invalid arguments: invalid arguments for "echo"`, wantPrefix: true},
		{name: "schema bound", tool: "echo", args: `{"msg":"` + strings.Repeat("a", 21) + `"}`, wantCode: pipeline.CodeInvalidArguments, wantUpstream: "srv",
			wantMsg: `Invalid arguments: invalid arguments for "echo"`, wantPrefix: true},
		{name: "unknown argument", tool: "echo", args: `{"msg":"hi","cc":"eve@example.com"}`, wantCode: pipeline.CodeInvalidArguments, wantUpstream: "srv",
			wantMsg: `Invalid arguments: invalid arguments for "echo"`, wantPrefix: true},
		{name: "args with keys differing in case", tool: "echo", args: `{"msg":"hi","MSG":"rm -rf /"}`, wantCode: pipeline.CodeInvalidArguments, wantUpstream: "srv",
			wantMsg: `Invalid arguments: an object has the same key twice: "msg" and "MSG" differ only in case, and servers that match names regardless of case read them as one.`},
		{name: "args over MaxArgumentBytes", tool: "echo", args: huge, wantCode: pipeline.CodeInvalidArguments, wantUpstream: "srv",
			wantMsg: fmt.Sprintf("Invalid arguments: arguments are larger than %d bytes.", pipeline.MaxArgumentBytes)},
		{name: "denied by rule", tool: "wipe", args: `{"msg":"hi"}`, wantCode: pipeline.CodeDeniedByPolicy, wantUpstream: "srv",
			wantMsg: `This call is denied by policy (rule "no-destroy").`, wantEffect: policy.Deny, wantRules: []string{"no-destroy"}},
		{name: "no rule allows", tool: "write", args: `{"msg":"hi"}`, wantCode: pipeline.CodeDeniedByPolicy, wantUpstream: "srv",
			wantMsg: `No policy rule allows this call.`, wantEffect: policy.Deny},
		{name: "condition false", tool: "count", args: `{"msg":"hi","n":50}`, wantCode: pipeline.CodeDeniedByPolicy, wantUpstream: "srv",
			wantMsg: `No policy rule allows this call.`, wantEffect: policy.Deny},
		{name: "condition cannot be evaluated", tool: "count", args: `{"msg":"hi"}`, wantCode: pipeline.CodeDeniedByPolicy, wantUpstream: "srv",
			wantMsg: `This call is denied by policy (rule "count-small").`, wantEffect: policy.Deny, wantRules: []string{"count-small"}},
		{name: "approval required", tool: "send", args: `{"msg":"hi"}`, wantCode: pipeline.CodeApprovalRequired, wantUpstream: "srv",
			wantMsg:    `This call needs a person's approval (rule "send-needs-approval"), and approvals are not enabled on this gateway.`,
			wantEffect: policy.Approve, wantRules: []string{"send-needs-approval"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			aud, up := &fakeAuditor{}, &fakeUpstream{}
			p := h.pipeline(pipeline.Options{Audit: aud, Upstreams: up})
			c := newCall(tt.tool, tt.args)
			out := p.Handle(t.Context(), c)

			if out.Result != nil || out.Refusal == nil {
				t.Fatalf("Handle(%s, %.40s) = result %s, refusal %v, want a refusal", tt.tool, tt.args, out.Result, out.Refusal)
			}
			msgOK := out.Refusal.Message == tt.wantMsg || tt.wantPrefix && strings.HasPrefix(out.Refusal.Message, tt.wantMsg)
			if out.Refusal.Code != tt.wantCode || !msgOK {
				t.Errorf("Handle(%s, %.40s) refusal = %s %q, want %s %q", tt.tool, tt.args, out.Refusal.Code, out.Refusal.Message, tt.wantCode, tt.wantMsg)
			}
			if diff := cmp.Diff(tt.wantRules, out.Refusal.Rules, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("Handle(%s, %.40s) Refusal.Rules (-want +got):\n%s", tt.tool, tt.args, diff)
			}
			if out.Decision.Effect != tt.wantEffect {
				t.Errorf("Handle(%s, %.40s) Decision.Effect = %q, want %q", tt.tool, tt.args, out.Decision.Effect, tt.wantEffect)
			}
			if calls := up.recorded(); len(calls) != 0 {
				t.Errorf("Handle(%s, %.40s) called the upstream: %v", tt.tool, tt.args, calls)
			}

			want := baseEvent(c, audit.KindCallRefused)
			want.Upstream = tt.wantUpstream
			want.ArgsSummary = audit.SummarizeArgs(c.Arguments)
			want.Decision = "refused"
			if tt.wantEffect != "" {
				want.Decision = string(tt.wantEffect)
				want.PolicyVersion = version
				want.Detail = out.Decision.Reason // the policy's own account, and a failed condition's error
				if out.Decision.Err != nil {
					want.Detail += ": " + out.Decision.Err.Error()
				}
				if want.Detail == "" {
					t.Errorf("Handle(%s, %.40s): a policy decision without a reason", tt.tool, tt.args)
				}
			}
			want.Reason, want.Message, want.Rules = string(tt.wantCode), out.Refusal.Message, tt.wantRules
			_, evs := aud.recorded()
			if diff := cmp.Diff([]audit.Event{want}, evs, cmpopts.EquateEmpty(), ignoreRisk); diff != "" {
				t.Errorf("Handle(%s, %.40s) events (-want +got):\n%s", tt.tool, tt.args, diff)
			}
		})
	}
}

func TestHandleAllowed(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	tests := []struct {
		name         string
		tool, args   string
		result       string
		wantUpTool   string
		wantRules    []string
		wantResError bool
	}{
		{name: "echo", tool: "echo", args: `{ "msg" : "hi",  "n": 1.50 }`, result: `{"content":[{"type":"text","text":"hi"}]}`,
			wantUpTool: "echo_v1", wantRules: []string{"echo-allowed"}},
		{name: "tool-level error", tool: "echo", args: `{"msg":"hi"}`, result: `{"content":[{"type":"text","text":"no"}],"isError":true}`,
			wantUpTool: "echo_v1", wantRules: []string{"echo-allowed"}, wantResError: true},
		{name: "condition true", tool: "count", args: `{"msg":"hi","n":10}`, result: `{"content":[]}`,
			wantUpTool: "count", wantRules: []string{"count-small"}},
		{name: "no arguments", tool: "ping", args: "", result: `{"content":[]}`, wantUpTool: "ping", wantRules: []string{"echo-allowed"}},
		{name: "null arguments", tool: "ping", args: "null", result: `{"content":[]}`, wantUpTool: "ping", wantRules: []string{"echo-allowed"}},
		{name: "empty object", tool: "ping", args: "{}", result: `{"content":[]}`, wantUpTool: "ping", wantRules: []string{"echo-allowed"}},
		{name: "non-ASCII and escapes kept", tool: "echo", args: `{"msg":"h\u00e9 ☃ \"x\""}`, result: `{}`, wantUpTool: "echo_v1", wantRules: []string{"echo-allowed"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			aud := &fakeAuditor{}
			var inner time.Duration
			up := &fakeUpstream{call: func(context.Context, string, string, json.RawMessage) (json.RawMessage, error) {
				start := time.Now()
				res := json.RawMessage(tt.result)
				inner = time.Since(start)
				return res, nil
			}}
			p := h.pipeline(pipeline.Options{Audit: aud, Upstreams: up})
			c := newCall(tt.tool, tt.args)
			begin := time.Now()
			out := p.Handle(t.Context(), c)
			total := time.Since(begin)

			if out.Refusal != nil {
				t.Fatalf("Handle(%s, %s) refused: %s %q", tt.tool, tt.args, out.Refusal.Code, out.Refusal.Message)
			}
			if string(out.Result) != tt.result {
				t.Errorf("Handle(%s, %s).Result = %s, want %s", tt.tool, tt.args, out.Result, tt.result)
			}
			if out.Decision.Effect != policy.Allow || !cmp.Equal(out.Decision.Rules, tt.wantRules) || out.Decision.Version != h.pol.Version() {
				t.Errorf("Handle(%s, %s).Decision = %+v, want allow by %v, version %s", tt.tool, tt.args, out.Decision, tt.wantRules, h.pol.Version())
			}
			wantCalls := []upstreamCall{{Upstream: "srv", Tool: tt.wantUpTool, Args: c.Arguments}}
			if diff := cmp.Diff(wantCalls, up.recorded()); diff != "" {
				t.Errorf("upstream calls (-want +got):\n%s", diff)
			}

			_, evs := aud.recorded()
			if len(evs) != 2 {
				t.Fatalf("events = %+v, want intent and outcome", evs)
			}
			intent := baseEvent(c, audit.KindCallIntent)
			intent.Upstream, intent.ArgsSummary = "srv", audit.SummarizeArgs(c.Arguments)
			intent.Decision, intent.Rules, intent.PolicyVersion = "allow", tt.wantRules, h.pol.Version()
			outcome := baseEvent(c, audit.KindCallOutcome)
			outcome.Upstream = "srv"
			outcome.Decision, outcome.Rules, outcome.PolicyVersion = "allow", tt.wantRules, h.pol.Version()
			outcome.ResultBytes, outcome.ResultError = int64(len(tt.result)), tt.wantResError
			outcome.LatencyMicros = evs[1].LatencyMicros // checked below
			if diff := cmp.Diff([]audit.Event{intent, outcome}, evs, cmpopts.EquateEmpty(), ignoreRisk); diff != "" {
				t.Errorf("events (-want +got):\n%s", diff)
			}
			if l := evs[1].LatencyMicros; l < inner.Microseconds() || l > total.Microseconds() {
				t.Errorf("outcome LatencyMicros = %d, want between the upstream's own %d and Handle's %d", l, inner.Microseconds(), total.Microseconds())
			}
		})
	}
}

func TestHandleUpstreamError(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	tests := []struct {
		name     string
		err      error
		wantCode pipeline.Code
		wantMsg  string
	}{
		{name: "unavailable", err: fmt.Errorf("dial: %w", upstream.ErrUnavailable), wantCode: pipeline.CodeToolUnavailable, wantMsg: "The tool's server is not reachable right now."},
		{name: "deadline", err: fmt.Errorf("call: %w", context.DeadlineExceeded), wantCode: pipeline.CodeUpstreamError, wantMsg: "The tool's server did not answer in time."},
		{name: "cancelled", err: context.Canceled, wantCode: pipeline.CodeUpstreamError, wantMsg: "The call was cancelled."},
		{name: "other", err: errors.New("secret internal detail"), wantCode: pipeline.CodeUpstreamError, wantMsg: "The tool's server failed to answer."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			aud := &fakeAuditor{}
			up := &fakeUpstream{call: func(context.Context, string, string, json.RawMessage) (json.RawMessage, error) {
				return json.RawMessage(`{"partial":true}`), tt.err
			}}
			p := h.pipeline(pipeline.Options{Audit: aud, Upstreams: up})
			c := newCall("echo", `{"msg":"hi"}`)
			out := p.Handle(t.Context(), c)
			if out.Result != nil || out.Refusal == nil || out.Refusal.Code != tt.wantCode || out.Refusal.Message != tt.wantMsg {
				t.Fatalf("Handle with upstream error %v = result %s, refusal %+v, want no result, %s %q", tt.err, out.Result, out.Refusal, tt.wantCode, tt.wantMsg)
			}
			if out.Decision.Effect != policy.Allow {
				t.Errorf("Decision.Effect = %q, want allow", out.Decision.Effect)
			}
			if n := len(up.recorded()); n != 1 {
				t.Errorf("upstream calls = %d, want 1", n)
			}
			_, evs := aud.recorded()
			if len(evs) != 2 || evs[0].Kind != audit.KindCallIntent || evs[1].Kind != audit.KindCallOutcome {
				t.Fatalf("events = %+v, want intent and outcome", evs)
			}
			o := evs[1]
			if o.Reason != string(tt.wantCode) || o.Message != tt.wantMsg || o.ResultBytes != 0 || o.RequestID != c.RequestID {
				t.Errorf("outcome = reason %q, message %q, result bytes %d, request %q; want %s, %q, 0, %q", o.Reason, o.Message, o.ResultBytes, o.RequestID, tt.wantCode, tt.wantMsg, c.RequestID)
			}
		})
	}
}

func TestHandleAuditFailure(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	failKind := func(kind string) func(context.Context, int, *audit.Event) error {
		return func(_ context.Context, _ int, e *audit.Event) error {
			if e.Kind == kind {
				return errBoom
			}
			return nil
		}
	}
	tests := []struct {
		name          string
		tool          string
		fail          func(context.Context, int, *audit.Event) error
		wantCode      pipeline.Code
		wantMsg       string
		wantUpCalls   int
		wantKinds     []string // events recorded
		wantAttempted int
	}{
		{name: "intent fails", tool: "echo", fail: failKind(audit.KindCallIntent), wantCode: pipeline.CodeAuditUnavailable,
			wantMsg: "The audit log cannot record this call, so it is refused.", wantUpCalls: 0, wantAttempted: 1},
		{name: "first append fails", tool: "echo", fail: func(_ context.Context, n int, _ *audit.Event) error {
			if n == 1 {
				return errBoom
			}
			return nil
		}, wantCode: pipeline.CodeAuditUnavailable, wantMsg: "The audit log cannot record this call, so it is refused.", wantUpCalls: 0, wantAttempted: 1},
		{name: "outcome fails", tool: "echo", fail: failKind(audit.KindCallOutcome), wantCode: pipeline.CodeAuditUnavailable,
			wantMsg: "The call ran, but the audit log cannot record its outcome, so the result is withheld.", wantUpCalls: 1,
			wantKinds: []string{audit.KindCallIntent}, wantAttempted: 2},
		{name: "refusal not recorded", tool: "nope", fail: failKind(audit.KindCallRefused), wantCode: pipeline.CodeUnknownTool,
			wantMsg: `There is no tool named "nope" for this agent.`, wantAttempted: 1},
		{name: "intent times out", tool: "echo", fail: func(ctx context.Context, _ int, _ *audit.Event) error {
			<-ctx.Done() // AuditTimeout bounds the wait
			return ctx.Err()
		}, wantCode: pipeline.CodeAuditUnavailable, wantMsg: "The audit log cannot record this call, so it is refused.", wantAttempted: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			aud, up := &fakeAuditor{fail: tt.fail}, &fakeUpstream{}
			p := h.pipeline(pipeline.Options{Audit: aud, Upstreams: up, AuditTimeout: 10 * time.Millisecond})
			out := p.Handle(t.Context(), newCall(tt.tool, `{"msg":"hi"}`))
			if out.Result != nil || out.Refusal == nil || out.Refusal.Code != tt.wantCode || out.Refusal.Message != tt.wantMsg {
				t.Fatalf("Handle = result %s, refusal %+v, want no result, %s %q", out.Result, out.Refusal, tt.wantCode, tt.wantMsg)
			}
			if n := len(up.recorded()); n != tt.wantUpCalls {
				t.Errorf("upstream calls = %d, want %d", n, tt.wantUpCalls)
			}
			attempted, evs := aud.recorded()
			var kinds []string
			for _, e := range evs {
				kinds = append(kinds, e.Kind)
			}
			if attempted != tt.wantAttempted || !cmp.Equal(kinds, tt.wantKinds, cmpopts.EquateEmpty()) {
				t.Errorf("audit appends = %d, recorded %v; want %d, %v", attempted, kinds, tt.wantAttempted, tt.wantKinds)
			}
		})
	}
}

// The audit write is detached from the caller's cancellation and bounded by AuditTimeout.
func TestHandleAuditContext(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	var mu sync.Mutex
	var problems []string
	aud := &fakeAuditor{fail: func(ctx context.Context, n int, e *audit.Event) error {
		mu.Lock()
		defer mu.Unlock()
		if ctx.Err() != nil {
			problems = append(problems, fmt.Sprintf("append %d (%s): context done: %v", n, e.Kind, ctx.Err()))
		}
		if dl, ok := ctx.Deadline(); !ok || time.Until(dl) > time.Minute {
			problems = append(problems, fmt.Sprintf("append %d (%s): deadline %v, %v, want within AuditTimeout", n, e.Kind, dl, ok))
		}
		return nil
	}}
	p := h.pipeline(pipeline.Options{Audit: aud, AuditTimeout: time.Minute})
	p.Handle(ctx, newCall("nope", `{}`))
	p.Handle(ctx, newCall("echo", `{"msg":"hi"}`))
	if attempted, _ := aud.recorded(); attempted != 3 {
		t.Errorf("audit appends = %d, want 3 (refusal, intent, outcome)", attempted)
	}
	for _, msg := range problems {
		t.Error(msg)
	}
}

// A caller whose context is cancelled still gets its evidence into the real, durable log.
func TestHandleCancelledCallerAudited(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	db, log := openStore(t)
	up := &fakeUpstream{call: func(ctx context.Context, _, _ string, _ json.RawMessage) (json.RawMessage, error) {
		return nil, ctx.Err()
	}}
	p := h.pipeline(pipeline.Options{Audit: log, Upstreams: up})
	ctx, cancel := context.WithCancel(t.Context())
	cancel()

	refused := newCall("nope", `{}`)
	refused.RequestID = "req-refused"
	if out := p.Handle(ctx, refused); out.Refusal == nil || out.Refusal.Code != pipeline.CodeUnknownTool {
		t.Errorf("Handle(cancelled, nope) refusal = %+v, want unknown_tool", out.Refusal)
	}
	allowed := newCall("echo", `{"msg":"hi"}`)
	allowed.RequestID = "req-allowed"
	if out := p.Handle(ctx, allowed); out.Refusal == nil || out.Refusal.Code != pipeline.CodeUpstreamError || out.Refusal.Message != "The call was cancelled." {
		t.Errorf("Handle(cancelled, echo) refusal = %+v, want upstream_error, cancelled", out.Refusal)
	}

	evs, err := db.ScanEvents(t.Context(), 0, 100)
	if err != nil {
		t.Fatalf("ScanEvents: %v", err)
	}
	var got []string
	for _, e := range evs {
		got = append(got, e.RequestID+" "+e.Kind+" "+e.Reason)
	}
	want := []string{
		"req-refused call.refused unknown_tool",
		"req-allowed call.intent ",
		"req-allowed call.outcome upstream_error",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("durable events (-want +got):\n%s", diff)
	}
	rep, err := audit.Verify(t.Context(), db)
	if err != nil || rep.Broken != nil || rep.Unfinished != 0 {
		t.Errorf("Verify = %+v, %v, want an intact log with no unfinished calls", rep, err)
	}
}

// With no policy to evaluate (the only way to make Evaluate return an error through
// Handle), the call must be refused with policy_error and audited.
func TestHandlePolicyError(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	aud, up := &fakeAuditor{}, &fakeUpstream{}
	p := h.pipeline(pipeline.Options{Audit: aud, Upstreams: up, Policy: func() *policy.Policy { return nil }})
	var out pipeline.Outcome
	func() {
		defer func() {
			if r := recover(); r != nil {
				t.Fatalf("Handle with a nil policy panicked: %v", r)
			}
		}()
		out = p.Handle(t.Context(), newCall("echo", `{"msg":"hi"}`))
	}()
	if out.Refusal == nil || out.Refusal.Code != pipeline.CodePolicyError {
		t.Errorf("Handle with a nil policy refusal = %+v, want policy_error", out.Refusal)
	}
	if n := len(up.recorded()); n != 0 {
		t.Errorf("upstream calls = %d, want 0", n)
	}
	if _, evs := aud.recorded(); len(evs) != 1 || evs[0].Reason != string(pipeline.CodePolicyError) || evs[0].Decision != "deny" {
		t.Errorf("events = %+v, want one call.refused policy_error deny", evs)
	}
}

// Validation and the upstream must see the same arguments. encoding/json keeps the last of
// duplicated keys; an upstream whose parser keeps the first (or rejects them) would act on a
// value that was never validated.
func TestHandleDuplicateArgumentKeys(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	aud, up := &fakeAuditor{}, &fakeUpstream{}
	p := h.pipeline(pipeline.Options{Audit: aud, Upstreams: up})
	out := p.Handle(t.Context(), newCall("echo", `{"msg":`+`"`+strings.Repeat("a", 50)+`","msg":"ok"}`))
	if out.Refusal == nil || out.Refusal.Code != pipeline.CodeInvalidArguments {
		t.Errorf("Handle(duplicated key) refusal = %+v, want invalid_arguments", out.Refusal)
	}
}

func TestHandleConcurrent(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Go(func() {
			c := newCall("echo", `{"msg":"hi"}`)
			c.RequestID = fmt.Sprintf("req-%d", i)
			if out := h.p.Handle(t.Context(), c); out.Refusal != nil {
				t.Errorf("Handle(%s) refused: %+v", c.RequestID, out.Refusal)
			}
		})
	}
	wg.Wait()
	if attempted, _ := h.aud.recorded(); attempted != 32 {
		t.Errorf("audit appends = %d, want 32", attempted)
	}
}

// fakeDiscardAuditor accepts every event and keeps none.
type fakeDiscardAuditor struct{}

func (fakeDiscardAuditor) Append(context.Context, *audit.Event) error { return nil }

// fakeFixedUpstream answers every call with result.
type fakeFixedUpstream struct{ result json.RawMessage }

func (f fakeFixedUpstream) Call(context.Context, string, string, json.RawMessage) (json.RawMessage, error) {
	return f.result, nil
}

const benchSchema = `{"type":"object","properties":{"to":{"type":"string","format":"email"},"amount":{"type":"number","minimum":0}},"required":["to"]}`

// benchGateway returns 200 declared tools on 20 upstreams, all active, and a registry.
func benchGateway(b testing.TB) ([]registry.Declaration, *registry.Registry) {
	classes := []string{policy.ClassRead, policy.ClassWrite, policy.ClassExternal, policy.ClassDestructive}
	var decls []registry.Declaration
	live := map[string][]upstream.Tool{}
	for u := range 20 {
		up := fmt.Sprintf("svc%d", u)
		for t := range 10 {
			name := fmt.Sprintf("tool%d", t)
			decls = append(decls, registry.Declaration{Name: up + "__" + name, Upstream: up, UpstreamName: name, Class: classes[(u+t+2)%4]})
			live[up] = append(live[up], upstream.Tool{Name: name, Description: "Tool " + name, InputSchema: json.RawMessage(benchSchema)})
		}
	}
	return decls, newRegistry(b, decls, live)
}

// benchRules returns n rules over the bench tools: exact names, prefixes and classes, a
// third with CEL conditions; denies whose conditions do not hold; approvals only for other
// agents; and, last, the rule that allows the benchmarked call.
func benchRules(n int) string {
	var s strings.Builder
	s.WriteString("rules:\n")
	conds := []string{
		`args.amount <= %d.0`,
		`user.endsWith("@example.com") && session.calls < %d`,
		`agent.labels.team == "support" || args.amount > %d.0`,
		`args.to.split("@")[1] == "example.com" && task != "t%d"`,
	}
	for i := range n - 1 {
		fmt.Fprintf(&s, "  - id: rule-%d\n    match:\n", i)
		switch {
		case i%10 < 6:
			fmt.Fprintf(&s, "      tools: [svc%d__tool%d]\n", i%20, (i/20)%10)
		case i%10 < 8:
			fmt.Fprintf(&s, "      tools: [\"svc%d__*\"]\n", i%20)
		default:
			fmt.Fprintf(&s, "      classes: [%s]\n", []string{"read", "write", "external", "destructive"}[i%4])
		}
		anyAgent := i%7 == 0
		if anyAgent {
			s.WriteString("      agents: [\"*\"]\n")
		} else {
			fmt.Fprintf(&s, "      agents: [agent-%d, agent-%d]\n", i%50, (i+3)%50)
		}
		switch {
		case i%10 == 3:
			fmt.Fprintf(&s, "    when: 'args.amount > %d.0'\n    effect: deny\n", 1000000+i)
		case (i%10 == 5 || i%10 == 9) && !anyAgent:
			s.WriteString("    effect: approve\n")
		case i%3 == 0:
			fmt.Fprintf(&s, "    when: '%s'\n    effect: allow\n", fmt.Sprintf(conds[i%len(conds)], 100+i))
		default:
			s.WriteString("    effect: allow\n")
		}
	}
	s.WriteString(`  - id: bench-allow
    match: {agents: [agent-bench], tools: [svc3__tool0]}
    when: 'args.amount <= 1000.0 && user.endsWith("@example.com")'
    effect: allow
`)
	return s.String()
}

var benchAgent = &identity.Agent{ID: "agent-bench", Owner: "ops", Environment: "prod", Labels: map[string]string{"team": "support"}}

func benchCall() *pipeline.Call {
	return &pipeline.Call{
		RequestID: "req-bench", Principal: &identity.Principal{Agent: benchAgent, User: "alice@example.com", Task: "t-1"}, SessionID: "sess-1",
		SessionCalls: 7, Tool: "svc3__tool0", Arguments: json.RawMessage(`{"to":"bob@example.com","amount":12.5}`),
	}
}

func mustAllow(b *testing.B, p *pipeline.Pipeline, c *pipeline.Call) {
	b.Helper()
	if out := p.Handle(b.Context(), c); out.Refusal != nil {
		b.Fatalf("Handle(bench call) refused: %+v", out.Refusal)
	}
}

func BenchmarkHandle(b *testing.B) {
	decls, reg := benchGateway(b)
	for _, n := range []int{10, 1000} {
		b.Run(fmt.Sprintf("rules=%d", n), func(b *testing.B) {
			pol := compilePolicy(b, benchRules(n), decls)
			if pol.Rules() != n {
				b.Fatalf("policy has %d rules, want %d", pol.Rules(), n)
			}
			benchHandle(b, reg, pol, pipeline.Containment{})
		})
	}
}

// benchHandle measures one allowed call through a pipeline over reg and pol, with the
// brakes cs, an in-memory auditor and an upstream that answers at once.
func benchHandle(b *testing.B, reg *registry.Registry, pol *policy.Policy, cs pipeline.Containment) {
	p := pipeline.New(pipeline.Options{
		Tools: reg, Policy: func() *policy.Policy { return pol }, Audit: fakeDiscardAuditor{},
		Upstreams: fakeFixedUpstream{result: json.RawMessage(`{"content":[{"type":"text","text":"sent"}]}`)},
		Contain:   cs,
	})
	c := benchCall()
	mustAllow(b, p, c)
	ctx := b.Context()
	b.ReportAllocs()
	for b.Loop() {
		if out := p.Handle(ctx, c); out.Refusal != nil {
			b.Fatal(out.Refusal.Message)
		}
	}
}

// BenchmarkHandleDurableAudit is BenchmarkHandle (10 rules) with the real audit log over
// SQLite: concurrent calls share disk flushes through the log's group commit. The calls
// mostly wait on the disk, so it runs 16 callers per CPU to give the log batches to build.
func BenchmarkHandleDurableAudit(b *testing.B) {
	decls, reg := benchGateway(b)
	pol := compilePolicy(b, benchRules(10), decls)
	_, log := openStore(b)
	p := pipeline.New(pipeline.Options{
		Tools: reg, Policy: func() *policy.Policy { return pol }, Audit: log,
		Upstreams: fakeFixedUpstream{result: json.RawMessage(`{"content":[{"type":"text","text":"sent"}]}`)},
	})
	mustAllow(b, p, benchCall())
	ctx := b.Context()
	b.ReportAllocs()
	b.SetParallelism(16)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		c := benchCall()
		for pb.Next() {
			if out := p.Handle(ctx, c); out.Refusal != nil {
				b.Error(out.Refusal.Message)
				return
			}
		}
	})
}
