package identity

import (
	"context"
	"errors"
	"strings"
	"time"
)

// Failures beyond the token's own reasons (see [TokenError]).
const (
	FailureAgentInactive Failure = "agent_inactive"
	FailureTaskEnded     Failure = "task_ended"
	// FailureRevoked: a kill switch covering the token was pulled after it was issued.
	FailureRevoked Failure = "token_revoked"
	// FailureLookup: the store could not be asked about an agent or a task this process
	// had not heard of (another process may have registered or started it), in time.
	FailureLookup Failure = "lookup_failed"
)

// LookupTimeout bounds the store lookups one authentication makes for agents and tasks
// this process has not heard of.
const LookupTimeout = 2 * time.Second

// AgentLookup finds agents by id, with their current status.
type AgentLookup interface {
	Agent(id string) (*Agent, bool)
}

// TaskLookup reports whether a task is open.
type TaskLookup interface {
	Active(id string) bool
}

// AgentLoader is an [AgentLookup] that can ask its store about an agent it has not
// heard of: [Directory] is one. Load returns an error when the store cannot answer.
type AgentLoader interface {
	AgentLookup
	Load(ctx context.Context, id string) (*Agent, bool, error)
}

// TaskLoader is a [TaskLookup] that can ask its store about a task it has not heard of:
// [Tasks] is one. LoadActive returns an error when the store cannot answer.
type TaskLoader interface {
	TaskLookup
	LoadActive(ctx context.Context, id string) (bool, error)
}

// Authenticator turns the bearer credential of a request into a [Principal]: an access token
// this gateway issued, or a static agent token from the configuration. Every check is made
// on every request — the token's signature, issuer, audience and times, and then, from
// in-memory state, that every agent of its chain is still active and its task still open —
// so suspending an agent or ending a task takes effect on the very next call.
//
// An agent or a task not in memory at all may have been registered or started a moment
// ago by another gateway process sharing the store: when Agents is an [AgentLoader] or
// Tasks a [TaskLoader], the store is asked, within [LookupTimeout]; if it cannot answer,
// the request is refused with [FailureLookup].
type Authenticator struct {
	// Static holds the configuration's agent tokens; nil if there are none.
	Static *Registry
	// Tokens verifies access tokens; nil disables them.
	Tokens *Issuer
	Agents AgentLookup
	Tasks  TaskLookup
	// Revoked, if set, reports whether an access token was revoked after it was issued
	// (a kill switch over its agent, user or task). Static tokens are not revocable this
	// way: suspend the agent.
	Revoked func(*Principal) bool
}

// Authenticate checks an Authorization header value. On failure it returns
// [ErrUnauthenticated] and the precise [Failure], for the audit log only. It is
// [Authenticator.AuthenticateContext] without a request context.
func (a *Authenticator) Authenticate(header string) (*Principal, Failure, error) {
	return a.AuthenticateContext(context.Background(), header)
}

// AuthenticateContext is [Authenticator.Authenticate], with the request's context bounding
// the store lookups it may make (as well as [LookupTimeout]).
func (a *Authenticator) AuthenticateContext(ctx context.Context, header string) (*Principal, Failure, error) {
	if header == "" {
		return nil, FailureMissing, ErrUnauthenticated
	}
	scheme, token, ok := strings.Cut(header, " ")
	// Access tokens may be up to 8 KiB (Verify bounds them); static tokens are short.
	if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" || len(token) > 16<<10 {
		return nil, FailureMalformed, ErrUnauthenticated
	}
	if strings.Count(token, ".") != 2 {
		return a.static(ctx, header)
	}
	if a.Tokens == nil {
		return nil, FailureUnknown, ErrUnauthenticated
	}
	c, err := a.Tokens.Verify(token)
	if err != nil {
		var te *TokenError
		if errors.As(err, &te) {
			return nil, Failure(te.Reason), ErrUnauthenticated
		}
		return nil, FailureMalformed, ErrUnauthenticated
	}
	var ag *Agent
	for _, id := range c.Chain {
		chained, f := a.prActiveAgent(ctx, id)
		if f != "" {
			return nil, f, ErrUnauthenticated
		}
		if id == c.Agent {
			ag = chained
		}
	}
	if ag == nil { // the token's checks put the agent last in its chain; fail closed
		return nil, FailureAgentInactive, ErrUnauthenticated
	}
	if f := a.prActiveTask(ctx, c.Task); f != "" {
		return nil, f, ErrUnauthenticated
	}
	p := &Principal{
		Agent: ag, User: c.User, UserGroups: c.UserGroups, Task: c.Task, Tools: c.Tools,
		Chain: c.Chain, TokenID: c.ID, MaxCalls: c.MaxCalls, Expiry: c.Expiry, IssuedAt: c.IssuedAt,
	}
	if a.Revoked != nil && a.Revoked(p) {
		return nil, FailureRevoked, ErrUnauthenticated
	}
	return p, "", nil
}

func (a *Authenticator) static(ctx context.Context, header string) (*Principal, Failure, error) {
	if a.Static == nil {
		return nil, FailureUnknown, ErrUnauthenticated
	}
	sa, f, err := a.Static.Authenticate(header)
	if err != nil {
		return nil, f, err
	}
	// The directory has the agent's current status: an operator may have suspended it.
	ag, f := a.prActiveAgent(ctx, sa.ID)
	if f != "" {
		return nil, f, ErrUnauthenticated
	}
	// A static token is limited only by the agent's capabilities (tokens it is issued are
	// limited to their task's tools, always within them).
	return &Principal{Agent: ag, Tools: ag.ToolLimit()}, "", nil
}

// prActiveAgent returns the agent id if it is active, or why not. An agent not in
// memory is looked up in the store when Agents can (fail closed on any error).
func (a *Authenticator) prActiveAgent(ctx context.Context, id string) (*Agent, Failure) {
	ag, ok := a.Agents.Agent(id)
	if !ok {
		l, can := a.Agents.(AgentLoader)
		if !can {
			return nil, FailureAgentInactive
		}
		lctx, cancel := context.WithTimeout(ctx, LookupTimeout)
		var err error
		ag, ok, err = l.Load(lctx, id)
		cancel()
		if err != nil {
			return nil, FailureLookup
		}
	}
	if !ok || ag == nil || ag.Status != StatusActive {
		return nil, FailureAgentInactive
	}
	return ag, ""
}

// prActiveTask reports why the task is not open, or "" if it is. Only a task not in
// memory is looked up in the store, when Tasks can: an ended one is refused from memory.
func (a *Authenticator) prActiveTask(ctx context.Context, id string) Failure {
	if a.Tasks.Active(id) {
		return ""
	}
	l, can := a.Tasks.(TaskLoader)
	if !can {
		return FailureTaskEnded
	}
	lctx, cancel := context.WithTimeout(ctx, LookupTimeout)
	defer cancel()
	active, err := l.LoadActive(lctx, id)
	switch {
	case err != nil:
		return FailureLookup
	case !active:
		return FailureTaskEnded
	}
	return ""
}
