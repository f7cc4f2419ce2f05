package pipeline_test

import (
	"slices"
	"testing"
	"time"

	"github.com/chaperone-dev/chaperone/internal/audit"
	"github.com/chaperone-dev/chaperone/internal/contain"
	"github.com/chaperone-dev/chaperone/internal/identity"
	"github.com/chaperone-dev/chaperone/internal/pipeline"
)

// TestPrincipalLimits: what a credential allows narrows what the policy allows — its task's
// tools, its call budget — and an agent never reaches an upstream of another environment.
func TestPrincipalLimits(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	decls := slices.Clone(testDecls)
	for i := range decls {
		if decls[i].Name == "ping" {
			decls[i].Environment = "dev" // testAgent is a prod agent
		}
	}
	reg := newRegistry(t, decls, testLive())
	budgets := contain.NewBudgets(func() time.Time { return t0 })
	aud, up := &fakeAuditor{}, &fakeUpstream{}
	p := h.pipeline(pipeline.Options{Tools: reg, Audit: aud, Upstreams: up, Budgets: budgets})

	scoped := &identity.Principal{Agent: testAgent, User: "dana@example.com", Task: "tsk_1", Tools: []string{"echo"},
		Chain: []string{"planner", "mail-assistant"}, TokenID: "jti-1", MaxCalls: 2, Expiry: t0.Add(time.Hour)}
	callAs := func(pr *identity.Principal, tool, args string) pipeline.Outcome {
		c := newCall(tool, args)
		c.Principal = pr
		return p.Handle(t.Context(), c)
	}
	code := func(o pipeline.Outcome) pipeline.Code {
		if o.Refusal == nil {
			return ""
		}
		return o.Refusal.Code
	}
	if got := code(callAs(scoped, "echo", `{"msg":"hi"}`)); got != "" {
		t.Errorf("call in scope refused: %s", got)
	}
	if got := code(callAs(scoped, "send", `{"to":"a@example.com"}`)); got != pipeline.CodeOutOfScope {
		t.Errorf("call outside the token's tools = %q, want out_of_scope", got)
	}
	if got := code(callAs(scoped, "echo", `{"msg":"hi"}`)); got != "" {
		t.Errorf("second call of a budget of 2 refused: %s", got)
	}
	if got := code(callAs(scoped, "echo", `{"msg":"hi"}`)); got != pipeline.CodeBudgetExhausted {
		t.Errorf("third call of a budget of 2 = %q, want budget_exhausted", got)
	}
	if got := code(callAs(&identity.Principal{Agent: testAgent}, "ping", `{}`)); got != pipeline.CodeEnvironment {
		t.Errorf("prod agent to a dev upstream = %q, want environment_mismatch", got)
	}
	if n := len(up.recorded()); n != 2 {
		t.Errorf("upstream calls = %d, want 2 (only the two calls within scope and budget)", n)
	}
	_, evs := aud.recorded()
	var outcome *audit.Event
	for i := range evs {
		if evs[i].Kind == audit.KindCallOutcome {
			outcome = &evs[i]
			break
		}
	}
	if outcome == nil || outcome.User != "dana@example.com" || outcome.Task != "tsk_1" || outcome.TokenID != "jti-1" ||
		!slices.Equal(outcome.Chain, []string{"planner", "mail-assistant"}) {
		t.Errorf("outcome event does not name the principal: %+v", outcome)
	}
}
