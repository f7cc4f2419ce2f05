// Package identity is who acts on every call: registered agents, their credentials, the
// gateway's own short-lived access tokens, users they act for, and delegation between them.
// It is the only package that touches JOSE.
//
// # What it guarantees
//
//   - Every agent is a registered identity with an owner, a purpose, an environment,
//     capabilities and a status ([Directory]). Only active agents authenticate; suspending
//     or revoking an agent, or ending a task ([Tasks]), is visible to the very next
//     [Authenticator.Authenticate], which reads in-memory snapshots and does no I/O.
//     Revocation is final.
//   - Access tokens ([Issuer]) are EdDSA-signed JWTs bound to an agent, a task, an audience,
//     a set of tools, an expiry that is never unbounded, and optionally a call budget.
//     Verification is complete every time: the algorithm is pinned (none, HMAC and RSA are
//     refused, so key confusion is impossible), the key id must be known, and signature,
//     issuer, audience, expiry and not-before (with a small leeway) and lifetime are checked.
//   - Signing keys rotate without downtime: a rotated-out key verifies until the tokens it
//     signed have expired ([KeySet]).
//   - Client assertions (RFC 7523) are accepted once: their jti is remembered until they
//     expire, and when the memory is full new assertions are refused rather than old ones
//     forgotten ([AssertionVerifier]).
//   - User tokens for acting on behalf of a user are verified against the identity
//     provider's published keys, issuer and audience ([OIDCVerifier]).
//   - Delegation only narrows: tools, expiry and call budget of a child token are within
//     its parent's, depth is bounded and chains have no cycles ([Delegate]).
//   - Authentication failures look the same to the client; [Failure] tells the audit log
//     the precise reason.
//
// # What it assumes
//
//   - Static agent tokens from the configuration and client secrets are high-entropy random
//     strings ([NewToken]), so a plain SHA-256, compared in constant time, is the right
//     digest: there is nothing to brute-force.
//   - Clocks are roughly synchronised; the leeway absorbs small skew.
//   - One gateway process: task state, replay memory and call budgets are per process until
//     state moves to PostgreSQL (TODO(#10)).
//
// # What it does not do
//
//   - It does not encrypt signing keys at rest (the store file is private to the gateway;
//     TODO(#12)), publish signed audit checkpoints, or revoke single tokens: revocation is
//     by task or by agent.
package identity

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// ErrUnauthenticated is returned for every authentication failure, whatever the cause.
var ErrUnauthenticated = errors.New("unauthenticated")

// MaxTokenBytes bounds a presented token; longer ones are refused before hashing.
const MaxTokenBytes = 4096

// Agent is a registered agent.
type Agent struct {
	ID          string
	Owner       string
	Purpose     string
	Environment string // dev, test or prod
	Labels      map[string]string
	// Capabilities are the exposed tool names the agent may ever be granted; "*" means any.
	Capabilities []string
	// Autonomy is 0 to 3: how much the agent may do without a person (used by approvals).
	Autonomy int
	Status   Status
}

// MayHave reports whether tool is among the agent's capabilities ("*" means any).
func (a *Agent) MayHave(tool string) bool {
	return slices.Contains(a.Capabilities, "*") || slices.Contains(a.Capabilities, tool)
}

// ToolLimit is the limit the agent's capabilities put on a credential: nil for "*" (no
// limit), else a copy of them — never nil, so an agent with no capabilities can call nothing.
func (a *Agent) ToolLimit() []string {
	if slices.Contains(a.Capabilities, "*") {
		return nil
	}
	return append([]string{}, a.Capabilities...)
}

// Status is an agent's standing. Only active agents can do anything.
type Status string

// The statuses of an agent.
const (
	StatusActive    Status = "active"
	StatusSuspended Status = "suspended" // temporarily stopped; resume makes it active again
	StatusRevoked   Status = "revoked"   // permanently stopped
)

// Principal is who is acting on one call: the agent, the user it acts for, the task, and
// what its credential allows.
type Principal struct {
	Agent *Agent
	// User is the person the agent acts for ("" if none); UserGroups their groups from the
	// identity provider.
	User       string
	UserGroups []string
	// Task is the task the credential is bound to ("" for a static agent token).
	Task string
	// Tools limits the tools the credential may call; nil means no limit beyond policy
	// (static agent tokens).
	Tools []string
	// Chain lists the agents from the first to the one acting now (Agent), when the
	// credential was delegated; nil otherwise.
	Chain []string
	// TokenID is the access token's jti ("" for a static agent token).
	TokenID string
	// MaxCalls bounds the calls the credential may make; 0 means no bound.
	MaxCalls int64
	// Expiry is when the credential expires, and IssuedAt when it was issued (both zero
	// for a static agent token).
	Expiry, IssuedAt time.Time
}

// Failure says why authentication failed, for the audit log only.
type Failure string

// The reasons authentication fails.
const (
	FailureMissing   Failure = "missing_token"
	FailureMalformed Failure = "malformed_token"
	FailureUnknown   Failure = "unknown_token"
)

// Registry is an immutable set of agents keyed by token hash; safe for concurrent use.
type Registry struct {
	byHash map[[32]byte]*entry
	byID   map[string]*Agent
}

type entry struct {
	agent *Agent
	hash  [32]byte
}

// Registration is one agent with the hex SHA-256 of its token.
type Registration struct {
	Agent       Agent
	TokenSHA256 string
}

// NewRegistry builds a registry. Two agents may not share an id or a token.
func NewRegistry(regs []Registration) (*Registry, error) {
	r := &Registry{byHash: map[[32]byte]*entry{}, byID: map[string]*Agent{}}
	for _, reg := range regs {
		raw, err := hex.DecodeString(reg.TokenSHA256)
		if err != nil || len(raw) != sha256.Size {
			return nil, fmt.Errorf("agent %q: token hash must be 64 hex digits", reg.Agent.ID)
		}
		var h [32]byte
		copy(h[:], raw)
		if _, dup := r.byID[reg.Agent.ID]; dup {
			return nil, fmt.Errorf("agent %q: registered twice", reg.Agent.ID)
		}
		if _, dup := r.byHash[h]; dup {
			return nil, fmt.Errorf("agent %q: token is shared with another agent", reg.Agent.ID)
		}
		a := reg.Agent
		r.byHash[h] = &entry{agent: &a, hash: h}
		r.byID[a.ID] = &a
	}
	return r, nil
}

// Agent returns the agent with the given id.
func (r *Registry) Agent(id string) (*Agent, bool) {
	a, ok := r.byID[id]
	return a, ok
}

// Authenticate checks an Authorization header value ("Bearer <token>"). It returns the agent,
// or [ErrUnauthenticated] together with the precise [Failure].
func (r *Registry) Authenticate(header string) (*Agent, Failure, error) {
	if header == "" {
		return nil, FailureMissing, ErrUnauthenticated
	}
	scheme, token, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" || len(token) > MaxTokenBytes {
		return nil, FailureMalformed, ErrUnauthenticated
	}
	h := sha256.Sum256([]byte(token))
	e, ok := r.byHash[h]
	// The lookup is keyed by a digest, so its timing says nothing usable about the token; the
	// final comparison is constant-time all the same, so the decision never rests on a
	// variable-time comparison of secret-derived bytes.
	if !ok || subtle.ConstantTimeCompare(h[:], e.hash[:]) != 1 {
		return nil, FailureUnknown, ErrUnauthenticated
	}
	return e.agent, "", nil
}

// NewToken returns a fresh random bearer token (256 bits, URL-safe) and its hex SHA-256.
func NewToken() (token, sha string) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("crypto/rand failed: " + err.Error()) // crypto/rand never fails on supported platforms
	}
	token = "chp_" + base64.RawURLEncoding.EncodeToString(b[:])
	return token, HashToken(token)
}

// HashToken returns the hex SHA-256 of a token, as stored in the configuration.
func HashToken(token string) string {
	h := sha256.Sum256([]byte(token))
	return hex.EncodeToString(h[:])
}
