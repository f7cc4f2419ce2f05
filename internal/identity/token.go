package identity

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Claims are what an access token says.
//
// In the JWT, the registered claims are iss, sub, aud (always an array), exp, nbf, iat and
// jti; the private ones are agent, task, tools (always an array), max_calls (omitted when
// 0), groups (omitted when empty), depth and parent (omitted when empty). The chain of agents
// is carried as the RFC 8693 act claim, outermost the agent acting now:
//
//   - a token issued directly to an agent: sub is the agent and there is no act;
//   - on behalf of a user: sub is the user and act names every agent of the chain, e.g.
//     {"sub":"a2","act":{"sub":"a1"}};
//   - delegated without a user: sub is the first agent and act names the others (the actors
//     for that subject), e.g. sub "a1", act {"sub":"a2"}.
//
// So act holds depth+1 actors exactly when there is a user, and depth actors otherwise; a
// token whose act, depth, agent and sub do not fit together is malformed.
type Claims struct {
	Issuer    string
	Subject   string // User if set, else Chain[0]
	Audience  []string
	Expiry    time.Time
	NotBefore time.Time
	IssuedAt  time.Time
	ID        string // jti
	// Agent is the agent acting now: the token's holder.
	Agent string
	// Chain lists the agents from the first to Agent (at least one); decoded from act.
	Chain []string
	// User is the person the agents act for ("" if none); then Subject == User.
	User       string
	UserGroups []string
	Task       string
	// Tools are the tools the token may call. After [Issuer.Verify] it is never nil: a token
	// without tools grants none.
	Tools []string
	// MaxCalls bounds the calls the token may make; 0 means no bound.
	MaxCalls int64
	// Depth is how many delegations led to this token: len(Chain)-1.
	Depth int
	// Parent is the jti of the token this one was delegated from ("" if none).
	Parent string
}

// actor is one level of the RFC 8693 act claim.
type actor struct {
	Sub string `json:"sub"`
	Act *actor `json:"act,omitempty"`
}

// accessTokenJSON is the JWT form of [Claims].
type accessTokenJSON struct {
	Iss      string       `json:"iss"`
	Sub      string       `json:"sub"`
	Aud      audience     `json:"aud"`
	Exp      *numericDate `json:"exp,omitempty"`
	Nbf      *numericDate `json:"nbf,omitempty"`
	Iat      *numericDate `json:"iat,omitempty"`
	Jti      string       `json:"jti"`
	Agent    string       `json:"agent"`
	Act      *actor       `json:"act,omitempty"`
	Task     string       `json:"task"`
	Tools    []string     `json:"tools"`
	MaxCalls int64        `json:"max_calls,omitempty"`
	Groups   []string     `json:"groups,omitempty"`
	Depth    int          `json:"depth"`
	Parent   string       `json:"parent,omitempty"`
}

// IssuerOptions configure an [Issuer].
type IssuerOptions struct {
	// Issuer is the iss of every token (the gateway's URL). Required.
	Issuer string
	// Audience is the aud of tokens minted without one, and must be in the aud of every
	// token verified. Required.
	Audience string
	// Keys returns the current key set (typically an atomic pointer's Load). Required.
	Keys func() *KeySet
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Leeway is the clock skew allowed on exp, nbf and iat: default 30s, at most 5m.
	Leeway time.Duration
	// MaxTTL is the longest token lifetime (exp - iat): default 1h.
	MaxTTL time.Duration
}

// Issuer mints and verifies the gateway's access tokens (EdDSA-signed JWTs). It is safe for
// concurrent use.
type Issuer struct {
	o IssuerOptions
	// verified remembers tokens whose signature and claims checked out, so that the same
	// token presented on every call of an agent costs a lookup, not an Ed25519 verification.
	verified verifiedCache
}

// NewIssuer returns an issuer, or an error naming every problem with the options.
func NewIssuer(o IssuerOptions) (*Issuer, error) {
	var errs []error
	if o.Issuer == "" {
		errs = append(errs, errors.New("issuer is required"))
	}
	if o.Audience == "" {
		errs = append(errs, errors.New("audience is required"))
	}
	if o.Keys == nil {
		errs = append(errs, errors.New("keys is required"))
	}
	if o.Leeway < 0 || o.Leeway > maxLeeway {
		errs = append(errs, fmt.Errorf("leeway must be between 0s and %s, got %s", maxLeeway, o.Leeway))
	}
	if o.MaxTTL < 0 {
		errs = append(errs, fmt.Errorf("max ttl must be positive, got %s", o.MaxTTL))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("new issuer: %w", err)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Leeway == 0 {
		o.Leeway = defaultLeeway
	}
	if o.MaxTTL == 0 {
		o.MaxTTL = time.Hour
	}
	return &Issuer{o: o}, nil
}

// Mint signs an access token. It fills Issuer, Audience, IssuedAt (now), NotBefore
// (IssuedAt), ID (128 random bits), Subject and Chain ([Agent]) when they are empty. Agent,
// Task and Expiry are required; the lifetime Expiry-IssuedAt must be positive and at most
// MaxTTL. Times are truncated to whole seconds.
func (i *Issuer) Mint(c Claims) (string, error) {
	if c.Issuer == "" {
		c.Issuer = i.o.Issuer
	}
	if len(c.Audience) == 0 {
		c.Audience = []string{i.o.Audience}
	}
	if c.IssuedAt.IsZero() {
		c.IssuedAt = i.o.Now()
	}
	if c.NotBefore.IsZero() {
		c.NotBefore = c.IssuedAt
	}
	if c.ID == "" {
		var b [16]byte
		_, _ = rand.Read(b[:]) // never fails (crypto/rand documents it)
		c.ID = b64.EncodeToString(b[:])
	}
	if len(c.Chain) == 0 && c.Depth == 0 && c.Agent != "" {
		c.Chain = []string{c.Agent}
	}
	if c.Subject == "" {
		c.Subject = c.User
		if c.User == "" && len(c.Chain) > 0 {
			c.Subject = c.Chain[0]
		}
	}
	if err := i.checkMint(&c); err != nil {
		return "", fmt.Errorf("mint: %w", err)
	}
	ks := i.o.Keys()
	if ks == nil {
		return "", errors.New("mint: no signing keys")
	}
	p := accessTokenJSON{
		Iss: c.Issuer, Sub: c.Subject, Aud: c.Audience,
		Exp: toNumericDate(c.Expiry), Nbf: toNumericDate(c.NotBefore), Iat: toNumericDate(c.IssuedAt),
		Jti: c.ID, Agent: c.Agent, Task: c.Task, Tools: c.Tools,
		MaxCalls: c.MaxCalls, Groups: c.UserGroups, Depth: c.Depth, Parent: c.Parent,
	}
	if p.Tools == nil {
		p.Tools = []string{}
	}
	actors := c.Chain[1:] // the subject is the first agent; the others act for it
	if c.User != "" {
		actors = c.Chain // the subject is the user; every agent acts for them
	}
	for _, a := range actors { // innermost (first) to outermost (acting now)
		p.Act = &actor{Sub: a, Act: p.Act}
	}
	tok, err := signCompact(ks, "at+jwt", p)
	if err != nil {
		return "", fmt.Errorf("mint: %w", err)
	}
	return tok, nil
}

// checkMint validates filled-in claims before signing.
func (i *Issuer) checkMint(c *Claims) error {
	var missing []string
	if c.Agent == "" {
		missing = append(missing, "agent")
	}
	if c.Task == "" {
		missing = append(missing, "task")
	}
	if c.Expiry.IsZero() {
		missing = append(missing, "expiry")
	}
	if len(missing) > 0 {
		return fmt.Errorf("missing %s", strings.Join(missing, ", "))
	}
	if c.Issuer != i.o.Issuer {
		return fmt.Errorf("issuer %q is not this issuer", c.Issuer)
	}
	for _, t := range []time.Time{c.IssuedAt, c.NotBefore, c.Expiry} {
		if u := t.Unix(); u < 0 || u > maxNumericDate {
			return fmt.Errorf("time %s out of range", t.Format(time.RFC3339))
		}
	}
	// Whole seconds, as in the token; no time.Duration arithmetic, which could overflow.
	if life := c.Expiry.Unix() - c.IssuedAt.Unix(); life <= 0 || life > int64(i.o.MaxTTL/time.Second) {
		return fmt.Errorf("lifetime %ds is not between 1s and the maximum %s", life, i.o.MaxTTL)
	}
	if c.MaxCalls < 0 {
		return fmt.Errorf("max calls %d is negative", c.MaxCalls)
	}
	return checkChain(c)
}

// checkChain checks that a token's agents, user and subject fit together.
func checkChain(c *Claims) error {
	switch {
	case len(c.Chain) == 0:
		return errors.New("empty chain")
	case c.Chain[len(c.Chain)-1] != c.Agent:
		return errors.New("chain does not end with the agent")
	case c.Depth != len(c.Chain)-1:
		return fmt.Errorf("depth %d does not match a chain of %d agents", c.Depth, len(c.Chain))
	case c.User != "" && c.Subject != c.User:
		return errors.New("subject is not the user")
	case c.User == "" && c.Subject != c.Chain[0]:
		return errors.New("subject is not the first agent")
	case c.User == "" && len(c.UserGroups) > 0:
		return errors.New("user groups without a user")
	}
	for j, a := range c.Chain {
		if a == "" {
			return errors.New("empty agent in chain")
		}
		if slices.Contains(c.Chain[:j], a) {
			return fmt.Errorf("agent %q appears twice in chain", a)
		}
	}
	return nil
}

// Verify checks an access token completely, every time: size (8 KiB), form, the header
// (alg must be EdDSA; typ, if present, JWT or at+jwt; kid of a key that still verifies),
// the signature, iss, aud, exp (required; with leeway), nbf and iat (not in the future,
// with leeway), the required claims (sub, iat, jti, agent, task), the lifetime (at most
// MaxTTL) and the agent chain. Unknown claims are ignored. Every error is a *[TokenError].
//
// A token that verified is remembered (up to a bound) until it expires: presenting the same
// bytes again re-checks only the times, not the signature, which is what costs. The
// returned Claims are shared and must not be modified.
//
// Verify does not know about revocation or call budgets: the caller checks the token ID and
// the agent against its stores.
func (i *Issuer) Verify(raw string) (*Claims, error) {
	now := i.o.Now()
	if c, ok := i.verified.get(raw, now, i.o.Leeway); ok {
		return c, nil
	}
	c, err := i.verify(raw, now)
	if err == nil {
		i.verified.put(raw, c)
	}
	return c, err
}

// verify checks raw completely: format, algorithm, key, signature, then claims.
func (i *Issuer) verify(raw string, now time.Time) (*Claims, error) {
	j, err := parseCompactJWS(raw, maxJWTBytes)
	if err != nil {
		return nil, err
	}
	if j.header.Alg != "EdDSA" {
		return nil, tokenErr(ReasonBadAlg, "")
	}
	if t := j.header.Typ; t != "" && !strings.EqualFold(t, "JWT") && !strings.EqualFold(t, "at+jwt") {
		return nil, tokenErr(ReasonMalformed, "typ is not JWT or at+jwt")
	}
	if j.header.Kid == "" {
		return nil, tokenErr(ReasonUnknownKid, "no kid")
	}
	ks := i.o.Keys()
	if ks == nil {
		return nil, tokenErr(ReasonKeysUnavailable, "")
	}
	pub, ok := ks.verifier(j.header.Kid, now)
	if !ok {
		return nil, tokenErr(ReasonUnknownKid, "")
	}
	if err := jwt.SigningMethodEdDSA.Verify(j.signingInput, j.sig, pub); err != nil {
		return nil, tokenErr(ReasonBadSignature, "")
	}

	var p accessTokenJSON
	if err := json.Unmarshal(j.payload, &p); err != nil {
		return nil, &TokenError{Reason: ReasonMalformed, Err: err}
	}
	switch {
	case p.Exp == nil:
		return nil, tokenErr(ReasonMissingClaim, "no exp")
	case p.Iat == nil:
		return nil, tokenErr(ReasonMissingClaim, "no iat")
	case p.Sub == "":
		return nil, tokenErr(ReasonMissingClaim, "no sub")
	case p.Jti == "":
		return nil, tokenErr(ReasonMissingClaim, "no jti")
	case p.Agent == "":
		return nil, tokenErr(ReasonMissingClaim, "no agent")
	case p.Task == "":
		return nil, tokenErr(ReasonMissingClaim, "no task")
	}
	if p.Iss != i.o.Issuer {
		return nil, tokenErr(ReasonBadIssuer, "")
	}
	if !p.Aud.contains(i.o.Audience) {
		return nil, tokenErr(ReasonBadAudience, "")
	}
	if err := checkTimes(now, i.o.Leeway, p.Exp, p.Nbf, p.Iat); err != nil {
		return nil, err
	}
	// Whole seconds: both are at most maxNumericDate, so this cannot overflow.
	if life := int64(*p.Exp - *p.Iat); life <= 0 || life > int64(i.o.MaxTTL/time.Second) {
		return nil, tokenErr(ReasonBadLifetime, "lifetime %ds, maximum %s", life, i.o.MaxTTL)
	}
	if p.MaxCalls < 0 || p.Depth < 0 {
		return nil, tokenErr(ReasonMalformed, "negative max_calls or depth")
	}

	c := &Claims{
		Issuer: p.Iss, Subject: p.Sub, Audience: p.Aud,
		Expiry: p.Exp.time(), IssuedAt: p.Iat.time(),
		ID: p.Jti, Agent: p.Agent, UserGroups: p.Groups, Task: p.Task, Tools: p.Tools,
		MaxCalls: p.MaxCalls, Depth: p.Depth, Parent: p.Parent,
	}
	if p.Nbf != nil {
		c.NotBefore = p.Nbf.time()
	}
	if c.Tools == nil {
		c.Tools = []string{}
	}
	var actors []string // outermost (acting now) first
	for a := p.Act; a != nil; a = a.Act {
		if len(actors) > p.Depth { // more actors than any consistent token has
			return nil, tokenErr(ReasonMalformed, "act deeper than depth")
		}
		actors = append(actors, a.Sub)
	}
	slices.Reverse(actors)
	switch len(actors) {
	case p.Depth + 1:
		c.User = p.Sub
		c.Chain = actors
	case p.Depth:
		c.Chain = append([]string{p.Sub}, actors...)
	default:
		return nil, tokenErr(ReasonMalformed, "act does not match depth")
	}
	if err := checkChain(c); err != nil {
		return nil, &TokenError{Reason: ReasonMalformed, Err: err}
	}
	return c, nil
}
