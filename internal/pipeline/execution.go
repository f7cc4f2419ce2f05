package pipeline

import (
	"context"
	"encoding/json"
	"slices"
	"sync"

	"github.com/chaperone-dev/chaperone/internal/policy"
	"github.com/chaperone-dev/chaperone/internal/registry"
)

// CodeCredentialUnavailable: the gateway could not obtain the upstream credential the call
// needs (its secret is missing, the token endpoint refused or did not answer), so the call
// did not reach the tool.
const CodeCredentialUnavailable Code = "credential_unavailable"

// Execution is an allowed call on its way to the upstream, as the code that executes it
// sees it: the [Options.Upstreams] implementation finds it in its context with
// [ExecutionFrom], attaches the credential the call may use, and reports what it used.
type Execution struct {
	Call     *Call
	Tool     *registry.Tool
	Decision policy.Decision
	// ArgsHash is the audit hash of the arguments the upstream receives.
	ArgsHash string

	mu      sync.Mutex
	used    []string
	credErr error
}

type executionKey struct{}

func withExecution(ctx context.Context, e *Execution) context.Context {
	return context.WithValue(ctx, executionKey{}, e)
}

// ExecutionFrom returns the execution of the call ctx belongs to, if any.
func ExecutionFrom(ctx context.Context) (*Execution, bool) {
	e, ok := ctx.Value(executionKey{}).(*Execution)
	return e, ok
}

// UsedCredential records that the call was sent with a credential, as "<type>:<name>"
// (never a value); the call's outcome event lists them. Safe for concurrent use.
func (e *Execution) UsedCredential(label string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if label != "" && !slices.Contains(e.used, label) {
		e.used = append(e.used, label)
	}
}

// CredentialFailed records that the credential the call needs could not be obtained: the
// call is then refused with [CodeCredentialUnavailable] whatever the upstream call
// returned. err must name the credential, never hold its value.
func (e *Execution) CredentialFailed(err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.credErr == nil {
		e.credErr = err
	}
}

func (e *Execution) credentials() ([]string, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.used), e.credErr
}

// Redactor removes, from a tool result, values the agent must never see: the upstream
// credentials the gateway holds. It returns the result (the input when nothing was found)
// and how many values it replaced; the result must stay valid JSON.
type Redactor func(res json.RawMessage) (json.RawMessage, int)
