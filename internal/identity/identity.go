// Package identity authenticates agents.
//
// # What it guarantees
//
// Every agent is a registered identity with an owner, a purpose and an environment. Until
// task-scoped tokens land, an agent authenticates with a per-agent bearer token: the gateway
// stores only the token's SHA-256 hash, finds the agent by that hash and confirms the match
// with a constant-time comparison. A missing, malformed or unknown token yields
// [ErrUnauthenticated]; the caller cannot tell those cases apart, while [Failure] tells the
// audit log which one it was.
//
// # What it assumes
//
// Tokens are high-entropy random strings (see [NewToken]), so a plain SHA-256 — not a slow
// password hash — is the right digest: there is nothing to brute-force.
//
// # What it does not do
//
// It does not issue short-lived or task-scoped tokens, delegation or on-behalf-of exchange
// (TODO(#3)).
package identity

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
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
	Environment string
	Labels      map[string]string
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
