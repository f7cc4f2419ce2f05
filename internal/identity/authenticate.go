package identity

import (
	"errors"
	"strings"
)

// Failures beyond the token's own reasons (see [TokenError]).
const (
	FailureAgentInactive Failure = "agent_inactive"
	FailureTaskEnded     Failure = "task_ended"
	// FailureRevoked: a kill switch covering the token was pulled after it was issued.
	FailureRevoked Failure = "token_revoked"
)

// AgentLookup finds agents by id, with their current status.
type AgentLookup interface {
	Agent(id string) (*Agent, bool)
}

// TaskLookup reports whether a task is open.
type TaskLookup interface {
	Active(id string) bool
}

// Authenticator turns the bearer credential of a request into a [Principal]: an access token
// this gateway issued, or a static agent token from the configuration. Every check is made
// on every request — the token's signature, issuer, audience and times, and then, from
// in-memory state, that every agent of its chain is still active and its task still open —
// so suspending an agent or ending a task takes effect on the very next call.
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
// [ErrUnauthenticated] and the precise [Failure], for the audit log only.
func (a *Authenticator) Authenticate(header string) (*Principal, Failure, error) {
	if header == "" {
		return nil, FailureMissing, ErrUnauthenticated
	}
	scheme, token, ok := strings.Cut(header, " ")
	// Access tokens may be up to 8 KiB (Verify bounds them); static tokens are short.
	if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" || len(token) > 16<<10 {
		return nil, FailureMalformed, ErrUnauthenticated
	}
	if strings.Count(token, ".") != 2 {
		return a.static(header)
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
	for _, id := range c.Chain {
		if ag, ok := a.Agents.Agent(id); !ok || ag.Status != StatusActive {
			return nil, FailureAgentInactive, ErrUnauthenticated
		}
	}
	ag, _ := a.Agents.Agent(c.Agent)
	if !a.Tasks.Active(c.Task) {
		return nil, FailureTaskEnded, ErrUnauthenticated
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

func (a *Authenticator) static(header string) (*Principal, Failure, error) {
	if a.Static == nil {
		return nil, FailureUnknown, ErrUnauthenticated
	}
	sa, f, err := a.Static.Authenticate(header)
	if err != nil {
		return nil, f, err
	}
	// The directory has the agent's current status: an operator may have suspended it.
	ag, ok := a.Agents.Agent(sa.ID)
	if !ok || ag.Status != StatusActive {
		return nil, FailureAgentInactive, ErrUnauthenticated
	}
	// A static token is limited only by the agent's capabilities (tokens it is issued are
	// limited to their task's tools, always within them).
	return &Principal{Agent: ag, Tools: ag.ToolLimit()}, "", nil
}
