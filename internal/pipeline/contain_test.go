package pipeline_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chaperone-dev/chaperone/internal/audit"
	"github.com/chaperone-dev/chaperone/internal/contain"
	"github.com/chaperone-dev/chaperone/internal/pipeline"
	"github.com/chaperone-dev/chaperone/internal/policy"
	"github.com/chaperone-dev/chaperone/internal/registry"
	"github.com/chaperone-dev/chaperone/internal/upstream"
)

// containHarness is a pipeline over tools that declare containment properties: put is
// idempotent (retried twice, 50ms per attempt), post is not, and both are writes.
func containHarness(t *testing.T, policySrc string, cs pipeline.Containment) *harness {
	t.Helper()
	decls := []registry.Declaration{
		{Name: "put", Upstream: "srv", UpstreamName: "put", Class: policy.ClassWrite, Idempotent: true, Retries: 2, Timeout: 50 * time.Millisecond},
		{Name: "post", Upstream: "srv", UpstreamName: "post", Class: policy.ClassWrite, Cost: 0.25},
		{Name: "look", Upstream: "srv", UpstreamName: "look", Class: policy.ClassRead},
	}
	var live []upstream.Tool
	for _, d := range decls {
		live = append(live, upstream.Tool{Name: d.UpstreamName, Description: d.Name, InputSchema: json.RawMessage(`{"type":"object"}`)})
	}
	h := &harness{
		reg: newRegistry(t, decls, map[string][]upstream.Tool{"srv": live}),
		pol: compilePolicy(t, policySrc, decls),
		up:  &fakeUpstream{},
		aud: &fakeAuditor{},
	}
	h.p = h.pipeline(pipeline.Options{Contain: cs, Now: time.Now})
	return h
}

const allowAll = `rules:
  - {id: all, match: {}, effect: allow}
`

// TestRetriesOnlyIdempotent: a call of an idempotent tool whose server was unreachable or
// did not answer in time is retried; a call of any other tool never is.
func TestRetriesOnlyIdempotent(t *testing.T) {
	h := containHarness(t, allowAll, pipeline.Containment{})
	var attempts atomic.Int64
	h.up.call = func(ctx context.Context, up, tool string, args json.RawMessage) (json.RawMessage, error) {
		switch n := attempts.Add(1); {
		case n == 1:
			return nil, fmt.Errorf("connect: %w", upstream.ErrUnavailable)
		case n == 2:
			<-ctx.Done() // the tool's 50ms timeout
			return nil, ctx.Err()
		}
		return okResult, nil
	}
	out := h.p.Handle(t.Context(), newCall("put", `{}`))
	if out.Refusal != nil || attempts.Load() != 3 {
		t.Fatalf("idempotent put: %+v after %d attempts, want a result on the third", out.Refusal, attempts.Load())
	}
	_, evs := h.aud.recorded()
	if last := evs[len(evs)-1]; last.Kind != audit.KindCallOutcome || last.Detail != "3 attempts" {
		t.Errorf("outcome event: %s %q, want the attempts recorded", last.Kind, last.Detail)
	}

	attempts.Store(0)
	h.up.call = func(ctx context.Context, up, tool string, args json.RawMessage) (json.RawMessage, error) {
		attempts.Add(1)
		return nil, fmt.Errorf("connect: %w", upstream.ErrUnavailable)
	}
	out = h.p.Handle(t.Context(), newCall("post", `{}`))
	if out.Refusal == nil || out.Refusal.Code != pipeline.CodeToolUnavailable || attempts.Load() != 1 {
		t.Errorf("non-idempotent post: %+v after %d attempts, want one attempt and tool_unavailable", out.Refusal, attempts.Load())
	}
	attempts.Store(0)
	out = h.p.Handle(t.Context(), newCall("put", `{}`))
	if out.Refusal == nil || attempts.Load() != 3 {
		t.Errorf("put failing every time: %+v after %d attempts, want 3 and a refusal", out.Refusal, attempts.Load())
	}
	// A tool error is an answer, not a failure to reach the tool: never retried.
	attempts.Store(0)
	h.up.call = func(ctx context.Context, up, tool string, args json.RawMessage) (json.RawMessage, error) {
		attempts.Add(1)
		return json.RawMessage(`{"isError":true,"content":[]}`), nil
	}
	if h.p.Handle(t.Context(), newCall("put", `{}`)); attempts.Load() != 1 {
		t.Errorf("a tool error was retried: %d attempts", attempts.Load())
	}
}

func newBreakers(t *testing.T, degrade contain.Degrade, triggers ...contain.Trigger) *contain.Breakers {
	t.Helper()
	b, err := contain.NewBreakers(contain.BreakerOptions{Triggers: triggers, Degrade: degrade, Cooldown: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestBreakerSignalsAndDegrade: tool errors and destructive calls are signals; a tripped
// breaker set to suggest-only records writes as suggestions and lets reads run.
func TestBreakerSignalsAndDegrade(t *testing.T) {
	br := newBreakers(t, contain.DegradeSuggestOnly, contain.Trigger{Signal: contain.SignalErrors, Threshold: 2, Window: time.Minute})
	h := containHarness(t, allowAll, pipeline.Containment{Breakers: br})
	h.up.call = func(ctx context.Context, up, tool string, args json.RawMessage) (json.RawMessage, error) {
		if tool == "post" {
			return json.RawMessage(`{"isError":true,"content":[{"type":"text","text":"500"}]}`), nil
		}
		return okResult, nil
	}
	for range 2 {
		if out := h.p.Handle(t.Context(), newCall("post", `{}`)); out.Refusal != nil {
			t.Fatalf("post before the trip: %+v", out.Refusal)
		}
	}
	if st := br.Status(testAgent.ID); st.State != contain.BreakerOpen || st.Signal != contain.SignalErrors {
		t.Fatalf("breaker after 2 tool errors: %+v", st)
	}
	before := len(h.up.recorded())
	out := h.p.Handle(t.Context(), newCall("put", `{}`))
	if out.Refusal == nil || out.Refusal.Code != pipeline.CodeSuggested {
		t.Errorf("a write with the breaker open (suggest-only): %+v, want suggested", out.Refusal)
	}
	if out := h.p.Handle(t.Context(), newCall("look", `{}`)); out.Refusal != nil {
		t.Errorf("a read with the breaker open: %+v", out.Refusal)
	}
	if got := len(h.up.recorded()) - before; got != 1 {
		t.Errorf("%d upstream calls after the trip, want only the read", got)
	}
}

// TestDeviationsReachPolicy: once an agent's baseline is learned, a call of a tool it has
// never used carries risk.deviations, which a rule can hold or deny on.
func TestDeviationsReachPolicy(t *testing.T) {
	bl, err := contain.NewBaselines(contain.BaselineOptions{MinCalls: 3})
	if err != nil {
		t.Fatal(err)
	}
	h := containHarness(t, `rules:
  - {id: all, match: {}, effect: allow}
  - {id: unusual, match: {}, when: '"new_tool" in risk.deviations', effect: deny}
`, pipeline.Containment{Baselines: bl})
	for range 3 {
		if out := h.p.Handle(t.Context(), newCall("look", `{}`)); out.Refusal != nil {
			t.Fatalf("learning: %+v", out.Refusal)
		}
	}
	out := h.p.Handle(t.Context(), newCall("post", `{}`))
	if out.Refusal == nil || !slices.Contains(out.Refusal.Rules, "unusual") {
		t.Fatalf("a tool never used before: %+v, want denied by rule unusual", out.Refusal)
	}
	_, evs := h.aud.recorded()
	if last := evs[len(evs)-1]; !slices.Contains(last.Deviations, "new_tool") {
		t.Errorf("refusal event deviations = %v, want new_tool", last.Deviations)
	}
	if out := h.p.Handle(t.Context(), newCall("look", `{}`)); out.Refusal != nil {
		t.Errorf("a familiar tool: %+v", out.Refusal)
	}
}

// TestBudgetChargesOnIntent: the intent event records what the call charged, and a refused
// call gives back what it reserved.
func TestBudgetChargesOnIntent(t *testing.T) {
	lg, err := contain.NewLedger(contain.LedgerOptions{Limits: contain.Limits{MaxSpend: 1},
		Caps: []contain.Cap{{Name: "posts", Tools: []string{"post"}, Per: "agent", Window: time.Hour, Max: 3}}})
	if err != nil {
		t.Fatal(err)
	}
	h := containHarness(t, allowAll, pipeline.Containment{Ledger: lg})
	c := newCall("post", `{}`)
	c.ReportedSpend, c.ReportedTokens = 0.1, 500
	if out := h.p.Handle(t.Context(), c); out.Refusal != nil {
		t.Fatal(out.Refusal)
	}
	_, evs := h.aud.recorded()
	intent := evs[0]
	if intent.Kind != audit.KindCallIntent || intent.Spend != 0.35 || intent.Tokens != 500 || intent.Charges["posts"] != 1 {
		t.Errorf("intent: kind %s spend %v tokens %d charges %v; want 0.35, 500, posts 1", intent.Kind, intent.Spend, intent.Tokens, intent.Charges)
	}
	// The audit log refuses to record the next intent: the reservation is given back.
	h.aud.fail = func(ctx context.Context, n int, e *audit.Event) error {
		if e.Kind == audit.KindCallIntent {
			return errors.New("disk full")
		}
		return nil
	}
	if out := h.p.Handle(t.Context(), newCall("post", `{}`)); out.Refusal == nil || out.Refusal.Code != pipeline.CodeAuditUnavailable {
		t.Fatalf("post with the audit log failing: %+v", out.Refusal)
	}
	if used, _ := lg.CapUsage("posts", testAgent.ID); used != 1 {
		t.Errorf("cap use after a refused call = %v, want 1 (its reservation released)", used)
	}
}

// BenchmarkHandleContain is BenchmarkHandle (10 rules) without and with every brake on —
// a kill switch registry (one unrelated kill engaged), a breaker, a rate limit, loop
// detection, a learned baseline and a ledger with a cap — in one run, so the difference
// is what containment costs a call. See BENCHMARKS.md.
func BenchmarkHandleContain(b *testing.B) {
	decls, reg := benchGateway(b)
	pol := compilePolicy(b, benchRules(10), decls)
	db, _ := openStore(b)
	kills, err := contain.NewSwitches(b.Context(), db, nil)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := kills.Engage(b.Context(), contain.Scope{Kind: contain.ScopeAgent, Name: "someone-else"}, "ops", "bench"); err != nil {
		b.Fatal(err)
	}
	br, err := contain.NewBreakers(contain.BreakerOptions{Triggers: []contain.Trigger{{Signal: contain.SignalErrors, Threshold: 1e9, Window: time.Minute}}})
	if err != nil {
		b.Fatal(err)
	}
	rl, err := contain.NewLimiter(1e6, 1_000_000, 0, nil)
	if err != nil {
		b.Fatal(err)
	}
	loops, err := contain.NewLoops(10_000, time.Millisecond, 0, nil)
	if err != nil {
		b.Fatal(err)
	}
	bl, err := contain.NewBaselines(contain.BaselineOptions{MinCalls: 1})
	if err != nil {
		b.Fatal(err)
	}
	lg, err := contain.NewLedger(contain.LedgerOptions{Caps: []contain.Cap{{Name: "amounts", Sum: "amount", Per: "agent", Window: time.Hour, Max: 1e15}}})
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name string
		cs   pipeline.Containment
	}{
		{"off", pipeline.Containment{}},
		{"on", pipeline.Containment{Kills: kills, Breakers: br, Ledger: lg, Loops: loops, Baselines: bl,
			RateLimits: []pipeline.RateLimit{{Per: "agent", Limiter: rl}}}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			benchHandle(b, reg, pol, bc.cs)
		})
	}
}

// TestReportedSpendOfRefusedCall: what an agent reports it spent counts against its task
// even when the call it came with is refused, and is on the refusal's record.
func TestReportedSpendOfRefusedCall(t *testing.T) {
	lg, err := contain.NewLedger(contain.LedgerOptions{Limits: contain.Limits{MaxSpend: 1}})
	if err != nil {
		t.Fatal(err)
	}
	h := containHarness(t, "rules:\n  - {id: no, match: {tools: [post]}, effect: deny}\n  - {id: look, match: {tools: [look]}, effect: allow}\n", pipeline.Containment{Ledger: lg})
	c := newCall("post", `{}`)
	c.ReportedSpend, c.ReportedTokens = 0.75, 900
	if out := h.p.Handle(t.Context(), c); out.Refusal == nil || out.Refusal.Code != pipeline.CodeDeniedByPolicy {
		t.Fatalf("denied call: %+v", out.Refusal)
	}
	_, evs := h.aud.recorded()
	if e := evs[len(evs)-1]; e.Kind != audit.KindCallRefused || e.Spend != 0.75 || e.Tokens != 900 {
		t.Errorf("refusal event spend %v tokens %d, want 0.75 and 900", e.Spend, e.Tokens)
	}
	c = newCall("look", `{}`)
	c.ReportedSpend = 0.5
	out := h.p.Handle(t.Context(), c)
	if out.Refusal == nil || out.Refusal.Code != pipeline.CodeBudgetExhausted {
		t.Errorf("a call after 0.75 + 0.5 of 1 spent: %+v, want budget_exhausted", out.Refusal)
	}
	if _, spend, tokens := lg.Usage("t\x00" + testAgent.ID + "\x00t-1"); spend != 1.25 || tokens != 900 {
		t.Errorf("usage = %v spend, %d tokens; want 1.25 and 900 (each report counted once)", spend, tokens)
	}
}

// TestIdempotencyKeyReleasedWhenNotRun: a call whose key was claimed but that never
// reached its tool (held for a person here) frees the key, so the retry runs; the call
// that ran is then answered from its record, without reaching the tool again.
func TestIdempotencyKeyReleasedWhenNotRun(t *testing.T) {
	db, _ := openStore(t)
	idem, err := contain.NewIdempotency(contain.IdempotencyOptions{Store: db})
	if err != nil {
		t.Fatal(err)
	}
	h := containHarness(t, "rules:\n  - {id: person, match: {tools: [post]}, effect: approve}\n", pipeline.Containment{Idempotency: idem})
	approved := false
	h.p = h.pipeline(pipeline.Options{Contain: pipeline.Containment{Idempotency: idem}, Now: time.Now,
		Approve: func(ctx context.Context, hd *pipeline.Hold) (string, *pipeline.Refusal) {
			if !approved {
				return "apr_1", &pipeline.Refusal{Code: pipeline.CodeApprovalPending, Message: "wait"}
			}
			return "apr_1", nil
		}})
	call := func() pipeline.Outcome {
		c := newCall("post", `{}`)
		c.IdempotencyKey = "k-1"
		return h.p.Handle(t.Context(), c)
	}
	if out := call(); out.Refusal == nil || out.Refusal.Code != pipeline.CodeApprovalPending {
		t.Fatalf("first call: %+v, want approval_pending", out.Refusal)
	}
	approved = true
	if out := call(); out.Refusal != nil {
		t.Fatalf("the retry once approved: %+v, want it to run (the key was released)", out.Refusal)
	}
	approved = false // a retry of a call that ran needs no second approval
	if out := call(); out.Refusal != nil || string(out.Result) != string(okResult) {
		t.Errorf("a retry after it ran: %+v %s, want the recorded result", out.Refusal, out.Result)
	}
	if n := len(h.up.recorded()); n != 1 {
		t.Errorf("the tool ran %d times, want once", n)
	}
}
