package identity

import (
	"container/heap"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/json"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// AssertionOptions configure an [AssertionVerifier].
type AssertionOptions struct {
	// Audience is the token endpoint's URL; an assertion's aud must contain it. If empty,
	// every assertion is refused.
	Audience string
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Leeway is the clock skew allowed: 0 means the default 30s; more than 5m means 5m.
	Leeway time.Duration
	// MaxLifetime is the longest an assertion may still be valid for when presented:
	// default 5m.
	MaxLifetime time.Duration
	// ReplayCapacity bounds the replay cache: default 100000.
	ReplayCapacity int
}

// AssertionVerifier verifies client assertions (RFC 7523 private_key_jwt): JWTs an agent
// signs with its registered Ed25519 key to prove itself at the token endpoint. Each
// assertion is accepted at most once. It is safe for concurrent use.
type AssertionVerifier struct {
	o AssertionOptions

	mu sync.Mutex
	// seen holds the assertions accepted and not yet expired; guarded by mu.
	seen replayCache
}

// NewAssertionVerifier returns a verifier, applying defaults to unset options.
func NewAssertionVerifier(o AssertionOptions) *AssertionVerifier {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Leeway <= 0 {
		o.Leeway = defaultLeeway
	}
	o.Leeway = min(o.Leeway, maxLeeway)
	if o.MaxLifetime <= 0 {
		o.MaxLifetime = 5 * time.Minute
	}
	if o.ReplayCapacity <= 0 {
		o.ReplayCapacity = 100000
	}
	return &AssertionVerifier{o: o, seen: replayCache{byKey: map[[32]byte]struct{}{}}}
}

type assertionJSON struct {
	Iss string       `json:"iss"`
	Sub string       `json:"sub"`
	Aud audience     `json:"aud"`
	Exp *numericDate `json:"exp"`
	Nbf *numericDate `json:"nbf"`
	Iat *numericDate `json:"iat"`
	Jti string       `json:"jti"`
}

// Verify checks a client assertion and returns the agent it proves. keyOf returns a
// registered agent's public key. The checks: size and form; alg EdDSA; iss == sub, an agent
// keyOf knows; its signature; aud contains the Audience; exp required, not passed, and at
// most MaxLifetime (plus leeway) away; nbf and iat not in the future; jti required and never
// accepted before. Every error is a *[TokenError].
//
// Accepted assertions are remembered until they expire (exp plus leeway). When that cache
// is full, new assertions are refused (reason replay_cache_full) rather than a remembered
// one forgotten.
func (v *AssertionVerifier) Verify(raw string, keyOf func(agentID string) (ed25519.PublicKey, bool)) (agentID string, err error) {
	now := v.o.Now()
	j, err := parseCompactJWS(raw, maxJWTBytes)
	if err != nil {
		return "", err
	}
	if j.header.Alg != "EdDSA" {
		return "", tokenErr(ReasonBadAlg, "")
	}
	// The claims are read before the signature is checked because iss names the key; nothing
	// is decided on them until it is.
	var p assertionJSON
	if err := json.Unmarshal(j.payload, &p); err != nil {
		return "", &TokenError{Reason: ReasonMalformed, Err: err}
	}
	if p.Iss == "" || p.Sub == "" {
		return "", tokenErr(ReasonMissingClaim, "no iss or sub")
	}
	if p.Iss != p.Sub {
		return "", tokenErr(ReasonBadIssuer, "iss is not sub")
	}
	pub, ok := keyOf(p.Iss)
	if !ok || len(pub) != ed25519.PublicKeySize {
		return "", tokenErr(ReasonUnknownAgent, "")
	}
	if err := jwt.SigningMethodEdDSA.Verify(j.signingInput, j.sig, pub); err != nil {
		return "", tokenErr(ReasonBadSignature, "")
	}
	if !p.Aud.contains(v.o.Audience) {
		return "", tokenErr(ReasonBadAudience, "")
	}
	if p.Jti == "" {
		return "", tokenErr(ReasonMissingClaim, "no jti")
	}
	if err := checkTimes(now, v.o.Leeway, p.Exp, p.Nbf, p.Iat); err != nil {
		return "", err
	}
	exp := p.Exp.time()
	if exp.Sub(now) > v.o.MaxLifetime+v.o.Leeway {
		return "", tokenErr(ReasonBadLifetime, "valid for more than %s", v.o.MaxLifetime)
	}

	// The cache key binds the jti to its issuer, and has a fixed size whatever the jti's.
	key := sha256.Sum256([]byte(p.Iss + "\x00" + p.Jti))
	v.mu.Lock()
	defer v.mu.Unlock()
	v.seen.expire(now)
	if _, dup := v.seen.byKey[key]; dup {
		return "", tokenErr(ReasonReplayed, "")
	}
	if len(v.seen.byKey) >= v.o.ReplayCapacity {
		return "", tokenErr(ReasonReplayCacheFull, "")
	}
	// Remember it for as long as it would be accepted: up to exp plus leeway.
	v.seen.add(key, exp.Add(v.o.Leeway))
	return p.Iss, nil
}

// replayCache is a set of keys, each forgotten at its expiry: a map for lookups and a
// min-heap by expiry for removal. Not safe for concurrent use.
type replayCache struct {
	byKey map[[32]byte]struct{}
	queue replayQueue
}

func (c *replayCache) add(key [32]byte, until time.Time) {
	c.byKey[key] = struct{}{}
	heap.Push(&c.queue, replayEntry{key: key, until: until})
}

// expire forgets every key whose expiry is not after now.
func (c *replayCache) expire(now time.Time) {
	for len(c.queue) > 0 && !c.queue[0].until.After(now) {
		e := heap.Pop(&c.queue).(replayEntry)
		delete(c.byKey, e.key)
	}
}

type replayEntry struct {
	key   [32]byte
	until time.Time
}

type replayQueue []replayEntry

func (q replayQueue) Len() int           { return len(q) }
func (q replayQueue) Less(i, j int) bool { return q[i].until.Before(q[j].until) }
func (q replayQueue) Swap(i, j int)      { q[i], q[j] = q[j], q[i] }
func (q *replayQueue) Push(x any)        { *q = append(*q, x.(replayEntry)) }
func (q *replayQueue) Pop() any {
	old := *q
	e := old[len(old)-1]
	*q = old[:len(old)-1]
	return e
}
