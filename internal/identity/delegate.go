package identity

import (
	"errors"
	"fmt"
	"slices"
	"time"
)

// DelegationRequest is what a token holder asks for a sub-agent.
type DelegationRequest struct {
	// Agent is the sub-agent, already authenticated.
	Agent string
	// Capabilities are the sub-agent's registered capabilities; "*" means any tool.
	Capabilities []string
	// Tools are the tools requested; empty means every tool of the parent the sub-agent may
	// have.
	Tools []string
	// TTL is the requested lifetime; 0 means up to the parent's expiry.
	TTL time.Duration
	// MaxCalls is the requested call budget; 0 means the parent's remaining budget if the
	// parent is bounded, else unbounded.
	MaxCalls int64
}

// WideningError is a refused delegation: the child token would have more than its parent
// or the sub-agent may have.
type WideningError struct {
	What   string // "tools", "expiry", "max_calls", "depth" or "cycle"
	Detail string
}

func (e *WideningError) Error() string {
	return "delegation would widen " + e.What + ": " + e.Detail
}

// ErrNothingToDelegate means the sub-agent may use none of the parent token's tools.
var ErrNothingToDelegate = errors.New("delegation grants no tools: the sub-agent may use none of the parent's")

// Delegate derives a child token's claims from a verified parent token's, for the
// sub-agent in req. Scopes only narrow: Subject, User, UserGroups and Task are copied; the
// chain grows by the sub-agent (which must not be in it already) up to maxDepth
// delegations; the tools are those requested (default: all allowed), each of which must be
// the parent's and among the sub-agent's capabilities; the expiry is at most the parent's;
// the call budget is at most parentRemainingCalls when the parent is bounded. Parent is set
// to the parent's ID; ID, IssuedAt, NotBefore, Issuer and Audience are left for
// [Issuer.Mint].
//
// A request for more than the parent has is refused with a *[WideningError], never
// silently narrowed; invalid arguments give other errors.
func Delegate(parent *Claims, parentRemainingCalls int64, req DelegationRequest, maxDepth int, now time.Time) (Claims, error) {
	switch {
	case parent == nil:
		return Claims{}, errors.New("delegate: no parent token")
	case parent.ID == "":
		return Claims{}, errors.New("delegate: parent token has no id")
	case req.Agent == "":
		return Claims{}, errors.New("delegate: no sub-agent")
	case req.TTL < 0:
		return Claims{}, fmt.Errorf("delegate: negative ttl %s", req.TTL)
	case req.MaxCalls < 0:
		return Claims{}, fmt.Errorf("delegate: negative max calls %d", req.MaxCalls)
	case parent.MaxCalls < 0:
		return Claims{}, fmt.Errorf("delegate: parent has negative max calls %d", parent.MaxCalls)
	case !now.Before(parent.Expiry):
		return Claims{}, errors.New("delegate: parent token has expired")
	}
	if err := checkChain(parent); err != nil {
		return Claims{}, fmt.Errorf("delegate: parent token: %w", err)
	}

	if parent.Depth+1 > maxDepth {
		return Claims{}, &WideningError{What: "depth", Detail: fmt.Sprintf("depth %d is more than the maximum %d", parent.Depth+1, maxDepth)}
	}
	if slices.Contains(parent.Chain, req.Agent) {
		return Claims{}, &WideningError{What: "cycle", Detail: fmt.Sprintf("agent %q is already in the chain", req.Agent)}
	}

	anyTool := slices.Contains(req.Capabilities, "*")
	mayHave := func(tool string) bool { return anyTool || slices.Contains(req.Capabilities, tool) }
	var tools []string
	if len(req.Tools) == 0 {
		for _, t := range parent.Tools {
			if mayHave(t) && !slices.Contains(tools, t) {
				tools = append(tools, t)
			}
		}
		if len(tools) == 0 {
			return Claims{}, ErrNothingToDelegate
		}
	} else {
		for _, t := range req.Tools {
			if !slices.Contains(parent.Tools, t) {
				return Claims{}, &WideningError{What: "tools", Detail: fmt.Sprintf("tool %q is not granted to the parent token", t)}
			}
			if !mayHave(t) {
				return Claims{}, &WideningError{What: "tools", Detail: fmt.Sprintf("tool %q is not among agent %q's capabilities", t, req.Agent)}
			}
			if !slices.Contains(tools, t) {
				tools = append(tools, t)
			}
		}
	}

	expiry := parent.Expiry
	if req.TTL > 0 {
		want := now.Add(req.TTL)
		if want.After(parent.Expiry) {
			return Claims{}, &WideningError{What: "expiry", Detail: fmt.Sprintf("ttl %s goes past the parent's expiry in %s", req.TTL, parent.Expiry.Sub(now))}
		}
		expiry = want
	}

	maxCalls := req.MaxCalls
	if parent.MaxCalls > 0 {
		remaining := min(parentRemainingCalls, parent.MaxCalls)
		if remaining <= 0 {
			return Claims{}, &WideningError{What: "max_calls", Detail: "the parent has no calls left"}
		}
		if maxCalls > remaining {
			return Claims{}, &WideningError{What: "max_calls", Detail: fmt.Sprintf("%d calls requested, the parent has %d left", maxCalls, remaining)}
		}
		if maxCalls == 0 {
			maxCalls = remaining
		}
	}

	return Claims{
		Subject:    parent.Subject,
		Expiry:     expiry,
		Agent:      req.Agent,
		Chain:      append(slices.Clone(parent.Chain), req.Agent),
		User:       parent.User,
		UserGroups: slices.Clone(parent.UserGroups),
		Task:       parent.Task,
		Tools:      tools,
		MaxCalls:   maxCalls,
		Depth:      parent.Depth + 1,
		Parent:     parent.ID,
	}, nil
}
