package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/chaperone-dev/chaperone/internal/contain"
	"github.com/chaperone-dev/chaperone/internal/identity"
	"github.com/chaperone-dev/chaperone/internal/policy"
	"github.com/chaperone-dev/chaperone/internal/registry"
	"github.com/chaperone-dev/chaperone/internal/upstream"
)

// The reason codes of containment.
const (
	// CodeKilled: a kill switch covers the call (the agent, its user, task, tool or
	// upstream, or everything); a call in flight when it was pulled is cancelled.
	CodeKilled Code = "killed"
	// CodeBreakerOpen: the agent's circuit breaker has tripped and it is degraded.
	CodeBreakerOpen Code = "breaker_open"
	// CodeRateLimited: a rate limit of the agent, tool or user is reached; retry later.
	CodeRateLimited Code = "rate_limited"
	// CodeLoopDetected: the same call with the same arguments was repeated too often.
	CodeLoopDetected Code = "loop_detected"
	// CodeIdempotencyConflict: the idempotency key was used for another call.
	CodeIdempotencyConflict Code = "idempotency_conflict"
	// CodeIdempotencyUnknown: the earlier call with the idempotency key may or may not
	// have run, so the retry is not executed.
	CodeIdempotencyUnknown Code = "idempotency_unknown"
)

// Containment are the brakes a pipeline applies. Every field is optional: nil turns that
// brake off.
type Containment struct {
	// Kills are the kill switches: checked first, and they cancel calls in flight.
	Kills *contain.Switches
	// Breakers degrade an agent whose behaviour trips them.
	Breakers *contain.Breakers
	// Ledger holds task budgets (steps, spend, tokens) and impact caps.
	Ledger *contain.Ledger
	// RateLimits are token buckets, each per agent, tool or user.
	RateLimits []RateLimit
	// Loops refuses the same call repeated with the same arguments.
	Loops *contain.Loops
	// Baselines learn what each agent does and report deviations.
	Baselines *contain.Baselines
	// Idempotency answers a retried call with an idempotency key from its record.
	Idempotency *contain.Idempotency
}

// RateLimit is one limiter, keyed per agent, tool or user.
type RateLimit struct {
	Per     string // "agent", "tool" or "user"
	Limiter *contain.Limiter
}

// callState is what containment remembers about one call while it runs.
type callState struct {
	agent string
	// signalled: a breaker signal was raised for the call, so a probe it was fails.
	signalled bool
	// suggest: the agent's breaker leaves it suggest-only.
	suggest bool
}

// signal raises a breaker signal for the call's agent.
func (p *Pipeline) signal(st *callState, s contain.Signal, weight float64) {
	if b := p.opts.Contain.Breakers; b != nil {
		b.Observe(st.agent, s, weight)
		if s != contain.SignalSpend {
			// Spend is not misbehaviour: a probe that costs money may still succeed.
			st.signalled = true
		}
	}
}

// subjectOf is the call as kill switches see it.
func subjectOf(c *Call, t *registry.Tool) *contain.Subject {
	sub := TokenSubject(c.Principal)
	sub.Tool = c.Tool
	if t != nil {
		sub.Tool, sub.Upstream = t.Name, t.Upstream
	}
	return sub
}

// TokenSubject is an access token as kill switches see it, for revocation.
func TokenSubject(p *identity.Principal) *contain.Subject {
	sub := &contain.Subject{Agents: p.Chain, User: p.User, Task: p.Task}
	if len(sub.Agents) == 0 {
		sub.Agents = []string{p.Agent.ID}
	}
	return sub
}

func killedMessage(k *contain.Kill) string {
	return fmt.Sprintf("A kill switch covering this call (%s) is engaged: nothing in its scope runs until an operator lifts it.", k.Scope)
}

// killedBy returns the kill that cancelled ctx, if one did.
func killedBy(ctx context.Context) (*contain.Kill, bool) {
	if ke, ok := errors.AsType[*contain.KilledError](context.Cause(ctx)); ok {
		return &ke.Kill, true
	}
	return nil, false
}

// admit applies the brakes that need nothing but the call and its tool: the breaker, the
// rate limits and loop detection. It returns the refusal code and message, or "", and
// whether the call is the breaker's probe: then the caller reports, when the call ends,
// whether it raised a signal (Breakers.ProbeDone), whatever admit returned.
func (p *Pipeline) admit(c *Call, t *registry.Tool, argsHash string, st *callState) (Code, string, bool) {
	cs := &p.opts.Contain
	probe := false
	if cs.Breakers != nil {
		adm := cs.Breakers.Admit(st.agent)
		switch {
		case adm.Probe:
			probe = true
		case adm.State == contain.BreakerClosed:
		case adm.Degrade == contain.DegradeBlock:
			return CodeBreakerOpen, breakerMessage(adm, "every call is refused"), false
		case t.Class == policy.ClassRead:
		case adm.Degrade == contain.DegradeSuggestOnly:
			st.suggest = true
		default:
			return CodeBreakerOpen, breakerMessage(adm, "only read tools may be called"), false
		}
	}
	for _, rl := range cs.RateLimits {
		var key string
		switch rl.Per {
		case "agent":
			key = st.agent
		case "tool":
			key = t.Name
		case "user":
			key = c.Principal.User
		}
		if key == "" {
			continue
		}
		if ok, retry := rl.Limiter.Allow(key); !ok {
			return CodeRateLimited, fmt.Sprintf("The rate limit per %s is reached; retry in %s.", rl.Per, retry.Round(time.Millisecond)), probe
		}
	}
	if cs.Loops != nil {
		if n, loop := cs.Loops.Observe(flowKey(c), t.Name, argsHash); loop {
			p.signal(st, contain.SignalLoops, 1)
			return CodeLoopDetected, fmt.Sprintf("The same call (%s with the same arguments) was made %d times in a short time: this looks like a loop, so it is refused. Change the arguments, or pause.", t.Name, n), probe
		}
	}
	return "", "", probe
}

func breakerMessage(adm contain.Admission, what string) string {
	msg := fmt.Sprintf("This agent's circuit breaker has tripped (%s): %s", adm.Signal, what)
	if !adm.Until.IsZero() {
		return msg + fmt.Sprintf(" until at least %s.", adm.Until.UTC().Format(time.RFC3339))
	}
	return msg + " until an operator resets it."
}

// budgetKey names the context a call's budget belongs to: its task; for a call without
// one, its MCP session; else its agent.
func budgetKey(c *Call) string {
	return BudgetKey(c.Principal.Agent.ID, c.Principal.Task, c.SessionID)
}

// BudgetKey is the budget context of a call by agent in task and MCP session, as the
// ledger keys it; the daemon rebuilds budgets from the audit log with it.
func BudgetKey(agent, task, session string) string {
	switch {
	case task != "":
		return "t\x00" + agent + "\x00" + task
	case session != "":
		return "s\x00" + session
	default:
		return "a\x00" + agent
	}
}

// idemClaim is a call's claim on its idempotency key, held from Begin until the call ends.
type idemClaim struct {
	p                     *Pipeline
	ctx                   context.Context // not cancelled with the call: the record must be written
	agent, key, requestID string
	ended                 bool
}

// end records how the call that reached its tool ended: its result, which retries are
// answered from; a failure to reach the server, which frees the key for a retry; or any
// other failure, after which the outcome is unknown and retries are refused.
func (c *idemClaim) end(res json.RawMessage, callErr error) {
	c.ended = true
	idem := c.p.opts.Contain.Idempotency
	var err error
	switch {
	case callErr == nil:
		err = idem.Finish(c.ctx, c.agent, c.key, res)
	case errors.Is(callErr, upstream.ErrUnavailable):
		err = idem.Abandon(c.ctx, c.agent, c.key, false)
	default:
		err = idem.Abandon(c.ctx, c.agent, c.key, true)
	}
	if err != nil {
		c.p.opts.Logger.ErrorContext(c.ctx, "idempotency record not written", "request_id", c.requestID, "err", err)
	}
}

// release frees the key of a call refused before it reached its tool, so that a retry
// may run it; after end it does nothing.
func (c *idemClaim) release() {
	if c.ended {
		return
	}
	if err := c.p.opts.Contain.Idempotency.Abandon(c.ctx, c.agent, c.key, false); err != nil {
		c.p.opts.Logger.ErrorContext(c.ctx, "idempotency key not released", "request_id", c.requestID, "err", err)
	}
}

// retryBase is the first backoff between attempts of an idempotent tool's call.
const retryBase = 100 * time.Millisecond

// callUpstream calls the tool, bounded by its timeout, and retries an idempotent tool's
// call that failed before reaching its server or timed out, with exponential backoff and
// jitter. It returns how many attempts were made.
func (p *Pipeline) callUpstream(ctx context.Context, t *registry.Tool, args json.RawMessage) (json.RawMessage, int, error) {
	attempts := 1
	if t.Idempotent {
		attempts += t.Retries
	}
	backoff := retryBase
	for i := 1; ; i++ {
		cctx, cancel := ctx, context.CancelFunc(func() {})
		if t.Timeout > 0 {
			cctx, cancel = context.WithTimeout(ctx, t.Timeout)
		}
		res, err := p.opts.Upstreams.Call(cctx, t.Upstream, t.UpstreamName, args)
		cancel()
		if err == nil || i >= attempts || ctx.Err() != nil ||
			!(errors.Is(err, upstream.ErrUnavailable) || errors.Is(err, context.DeadlineExceeded)) {
			return res, i, err
		}
		wait := backoff/2 + rand.N(backoff/2+1)
		select {
		case <-ctx.Done():
			return nil, i, err
		case <-time.After(wait):
		}
		backoff *= 2
	}
}
