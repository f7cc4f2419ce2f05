package identity

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// The JOSE typ of the gateway's short-lived JWTs for upstreams. Each kind has its own typ so
// that none can stand in for another: [Issuer.Verify] accepts only JWT or at+jwt, and
// [VerifyReceipt] and [VerifySubject] accept only their own.
const (
	// TypReceipt is the typ of a decision receipt ([Receipts.Mint]).
	TypReceipt = "chaperone-receipt+jwt"
	// TypSubject is the typ of a subject token for an upstream token exchange
	// ([Receipts.MintSubject]).
	TypSubject = "chaperone-subject+jwt"
)

// Bounds of a receipt's or subject token's lifetime, and the clock skew their verifiers allow.
const (
	MinReceiptTTL = time.Second
	MaxReceiptTTL = 5 * time.Minute
	receiptLeeway = 5 * time.Second
)

// ReceiptOptions configure [Receipts].
type ReceiptOptions struct {
	// Issuer is the iss of every receipt (the gateway's URL). Required.
	Issuer string
	// Keys returns the current key set: the same as the [Issuer]'s, so upstreams verify
	// receipts with the gateway's JWKS. Required.
	Keys func() *KeySet
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// Receipts signs decision receipts and subject tokens: short-lived EdDSA JWTs the gateway
// attaches to upstream calls. A receipt tells an upstream that this gateway decided this
// very call (who, which tool, which task, under which policy version and rules, for which
// arguments); a subject token tells an upstream's token endpoint, in an RFC 8693 token
// exchange, which user the agent acts for. It is safe for concurrent use.
type Receipts struct {
	o ReceiptOptions
}

// NewReceipts returns a receipt signer, or an error naming every problem with the options.
func NewReceipts(o ReceiptOptions) (*Receipts, error) {
	var errs []error
	if o.Issuer == "" {
		errs = append(errs, errors.New("issuer is required"))
	}
	if o.Keys == nil {
		errs = append(errs, errors.New("keys is required"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("new receipts: %w", err)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Receipts{o: o}, nil
}

// ReceiptClaims are what a decision receipt says.
//
// In the JWT: iss, sub, aud (always an array), iat, nbf, exp and jti are the registered
// claims; agent, tool, task, request_id, policy_version, args_hash (strings) and rules and
// chain (arrays) are always present, empty when unknown; user is present only when set.
type ReceiptClaims struct {
	// Audience is the upstream the receipt is for. Required.
	Audience string
	// Subject is who the call is for: the user, or without one the agent, or without
	// either (a request no tool call is behind, such as an MCP session's set-up) the
	// gateway itself (the issuer). [Receipts.Mint] fills it; one set to anything else is
	// refused.
	Subject string
	Agent   string
	User    string
	// Tool is the tool called; empty for requests no tool call is behind.
	Tool          string
	Task          string
	RequestID     string
	PolicyVersion string
	ArgsHash      string
	// Rules are the policy rules that allowed the call.
	Rules []string
	// Chain is the delegation chain of agents, first to the one acting now.
	Chain []string
	// TTL is the receipt's lifetime, between [MinReceiptTTL] and [MaxReceiptTTL]; it is
	// truncated to whole seconds. After [VerifyReceipt] it is exp - iat.
	TTL time.Duration

	// ID and IssuedAt are set by [VerifyReceipt] (jti and iat); Mint ignores them.
	ID       string
	IssuedAt time.Time
}

// receiptJSON is the JWT form of [ReceiptClaims].
type receiptJSON struct {
	Iss           string       `json:"iss"`
	Sub           string       `json:"sub"`
	Aud           audience     `json:"aud"`
	Iat           *numericDate `json:"iat"`
	Nbf           *numericDate `json:"nbf"`
	Exp           *numericDate `json:"exp"`
	Jti           string       `json:"jti"`
	Agent         string       `json:"agent"`
	User          string       `json:"user,omitempty"`
	Tool          string       `json:"tool"`
	Task          string       `json:"task"`
	RequestID     string       `json:"request_id"`
	PolicyVersion string       `json:"policy_version"`
	Rules         []string     `json:"rules"`
	ArgsHash      string       `json:"args_hash"`
	Chain         []string     `json:"chain"`
}

// subjectJSON is the JWT form of a subject token: sub the user, act the agent (RFC 8693 §4.1).
type subjectJSON struct {
	Iss string       `json:"iss"`
	Sub string       `json:"sub"`
	Aud audience     `json:"aud"`
	Iat *numericDate `json:"iat"`
	Nbf *numericDate `json:"nbf"`
	Exp *numericDate `json:"exp"`
	Jti string       `json:"jti"`
	Act *actor       `json:"act,omitempty"`
}

// Mint signs a decision receipt: a JWT (EdDSA, header typ [TypReceipt], kid of the active
// key) with iss, aud, sub (see [ReceiptClaims.Subject]), iat = nbf = now, exp = iat + TTL,
// a random jti, and the call's claims. An upstream verifies it with the gateway's JWKS, or
// with [VerifyReceipt].
func (r *Receipts) Mint(c ReceiptClaims) (string, error) {
	sub := c.User
	if sub == "" {
		sub = c.Agent
	}
	if sub == "" {
		sub = r.o.Issuer
	}
	var errs []error
	if c.Audience == "" {
		errs = append(errs, errors.New("audience is required"))
	}
	if c.Subject != "" && c.Subject != sub {
		errs = append(errs, errors.New("subject is not the user, the agent or the gateway"))
	}
	if err := checkReceiptTTL(c.TTL); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return "", fmt.Errorf("mint receipt: %w", err)
	}
	now := r.o.Now()
	p := receiptJSON{
		Iss: r.o.Issuer, Sub: sub, Aud: audience{c.Audience},
		Iat: toNumericDate(now), Nbf: toNumericDate(now), Exp: expiresAfter(now, c.TTL),
		Jti: newJTI(), Agent: c.Agent, User: c.User, Tool: c.Tool, Task: c.Task,
		RequestID: c.RequestID, PolicyVersion: c.PolicyVersion, Rules: c.Rules,
		ArgsHash: c.ArgsHash, Chain: c.Chain,
	}
	if p.Rules == nil {
		p.Rules = []string{}
	}
	if p.Chain == nil {
		p.Chain = []string{}
	}
	raw, err := r.sign(TypReceipt, p)
	if err != nil {
		return "", fmt.Errorf("mint receipt: %w", err)
	}
	return raw, nil
}

// MintSubject signs a subject token for an RFC 8693 token exchange at an upstream's token
// endpoint: a JWT (EdDSA, typ [TypSubject]) with iss, sub = user, act = {"sub": agent},
// aud = audience, iat = nbf = now, exp = iat + ttl ([MinReceiptTTL] to [MaxReceiptTTL])
// and a random jti. User and audience are required; without an agent there is no act.
func (r *Receipts) MintSubject(user, agent, audience string, ttl time.Duration) (string, error) {
	var errs []error
	if user == "" {
		errs = append(errs, errors.New("user is required"))
	}
	if audience == "" {
		errs = append(errs, errors.New("audience is required"))
	}
	if err := checkReceiptTTL(ttl); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return "", fmt.Errorf("mint subject token: %w", err)
	}
	now := r.o.Now()
	p := subjectJSON{
		Iss: r.o.Issuer, Sub: user, Aud: []string{audience},
		Iat: toNumericDate(now), Nbf: toNumericDate(now), Exp: expiresAfter(now, ttl),
		Jti: newJTI(),
	}
	if agent != "" {
		p.Act = &actor{Sub: agent}
	}
	raw, err := r.sign(TypSubject, p)
	if err != nil {
		return "", fmt.Errorf("mint subject token: %w", err)
	}
	return raw, nil
}

func checkReceiptTTL(ttl time.Duration) error {
	if ttl < MinReceiptTTL || ttl > MaxReceiptTTL {
		return fmt.Errorf("ttl %s is not between %s and %s", ttl, MinReceiptTTL, MaxReceiptTTL)
	}
	return nil
}

// expiresAfter is the exp of a token issued at now for ttl: iat plus ttl in whole seconds.
func expiresAfter(now time.Time, ttl time.Duration) *numericDate {
	d := numericDate(now.Unix() + int64(ttl/time.Second))
	return &d
}

// newJTI returns 128 random bits, base64url.
func newJTI() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand documents it)
	return b64.EncodeToString(b[:])
}

// sign encodes payload as a compact JWS with the given typ, signed by the active key.
func (r *Receipts) sign(typ string, payload any) (string, error) {
	return signCompact(r.o.Keys(), typ, payload)
}

// signCompact encodes payload as a compact JWS with the given typ, signed by ks's active
// key (EdDSA): access tokens, receipts and subject tokens alike.
func signCompact(ks *KeySet, typ string, payload any) (string, error) {
	if ks == nil {
		return "", errors.New("no signing keys")
	}
	key := ks.signer()
	header := struct {
		Alg string `json:"alg"`
		Kid string `json:"kid"`
		Typ string `json:"typ"`
	}{Alg: "EdDSA", Kid: key.ID, Typ: typ}
	hb, err := json.Marshal(header)
	if err != nil {
		return "", err
	}
	pb, err := json.Marshal(payload)
	if err != nil {
		return "", err
	}
	var sb strings.Builder
	sb.Grow(b64.EncodedLen(len(hb)) + b64.EncodedLen(len(pb)) + 90)
	sb.WriteString(b64.EncodeToString(hb))
	sb.WriteByte('.')
	sb.WriteString(b64.EncodeToString(pb))
	sig, err := jwt.SigningMethodEdDSA.Sign(sb.String(), key.Private)
	if err != nil {
		return "", fmt.Errorf("sign: %w", err)
	}
	sb.WriteByte('.')
	sb.WriteString(b64.EncodeToString(sig))
	if sb.Len() > maxJWTBytes {
		return "", fmt.Errorf("token would be %d bytes, more than the %d verify accepts", sb.Len(), maxJWTBytes)
	}
	return sb.String(), nil
}

// verifyTyped checks a compact JWS's form, header (alg EdDSA, typ exactly want up to case,
// kid of a key that verifies at now) and signature, and returns its payload.
func verifyTyped(keys *KeySet, raw, want string, now time.Time) ([]byte, error) {
	j, err := parseCompactJWS(raw, maxJWTBytes)
	if err != nil {
		return nil, err
	}
	if j.header.Alg != "EdDSA" {
		return nil, tokenErr(ReasonBadAlg, "")
	}
	if !strings.EqualFold(j.header.Typ, want) {
		return nil, tokenErr(ReasonMalformed, "typ is not %s", want)
	}
	if j.header.Kid == "" {
		return nil, tokenErr(ReasonUnknownKid, "no kid")
	}
	if keys == nil {
		return nil, tokenErr(ReasonKeysUnavailable, "")
	}
	pub, ok := keys.verifier(j.header.Kid, now)
	if !ok {
		return nil, tokenErr(ReasonUnknownKid, "")
	}
	if err := jwt.SigningMethodEdDSA.Verify(j.signingInput, j.sig, pub); err != nil {
		return nil, tokenErr(ReasonBadSignature, "")
	}
	return j.payload, nil
}

// checkShortLived applies the claim checks receipts and subject tokens share: required
// claims, issuer, audience, times with a 5s leeway, and a lifetime of 1s to 5m.
func checkShortLived(iss, sub, jti string, aud audience, iat, nbf, exp *numericDate, issuer, wantAud string, now time.Time) error {
	switch {
	case exp == nil:
		return tokenErr(ReasonMissingClaim, "no exp")
	case iat == nil:
		return tokenErr(ReasonMissingClaim, "no iat")
	case sub == "":
		return tokenErr(ReasonMissingClaim, "no sub")
	case jti == "":
		return tokenErr(ReasonMissingClaim, "no jti")
	}
	if issuer == "" || iss != issuer {
		return tokenErr(ReasonBadIssuer, "")
	}
	if !aud.contains(wantAud) {
		return tokenErr(ReasonBadAudience, "")
	}
	if err := checkTimes(now, receiptLeeway, exp, nbf, iat); err != nil {
		return err
	}
	// Whole seconds: both are at most maxNumericDate, so this cannot overflow.
	if life := int64(*exp - *iat); life < int64(MinReceiptTTL/time.Second) || life > int64(MaxReceiptTTL/time.Second) {
		return tokenErr(ReasonBadLifetime, "lifetime %ds is not between %s and %s", life, MinReceiptTTL, MaxReceiptTTL)
	}
	return nil
}

// VerifyReceipt checks a decision receipt against keys, for an audience, at now, with a
// leeway of 5s: size and form, typ [TypReceipt], alg EdDSA, kid of a key that still
// verifies, the signature, iss, aud, exp (required, not passed), nbf and iat (iat required;
// neither in the future) and a lifetime between [MinReceiptTTL] and [MaxReceiptTTL]; sub
// and jti are required. It returns the claims, with TTL, ID and IssuedAt from the token.
// Every error is a *[TokenError].
//
// VerifyReceipt does not remember jtis: a receipt can be presented more than once within
// its lifetime; an upstream that must refuse replays keeps the jtis it has seen.
func VerifyReceipt(keys *KeySet, raw, issuer, audience string, now time.Time) (*ReceiptClaims, error) {
	payload, err := verifyTyped(keys, raw, TypReceipt, now)
	if err != nil {
		return nil, err
	}
	var p receiptJSON
	if err := json.Unmarshal(payload, &p); err != nil {
		return nil, &TokenError{Reason: ReasonMalformed, Err: err}
	}
	if err := checkShortLived(p.Iss, p.Sub, p.Jti, p.Aud, p.Iat, p.Nbf, p.Exp, issuer, audience, now); err != nil {
		return nil, err
	}
	return &ReceiptClaims{
		Audience: audience, Subject: p.Sub, Agent: p.Agent, User: p.User, Tool: p.Tool,
		Task: p.Task, RequestID: p.RequestID, PolicyVersion: p.PolicyVersion,
		ArgsHash: p.ArgsHash, Rules: p.Rules, Chain: p.Chain,
		TTL:      time.Duration(*p.Exp-*p.Iat) * time.Second,
		ID:       p.Jti,
		IssuedAt: p.Iat.time(),
	}, nil
}

// VerifySubject checks a subject token ([Receipts.MintSubject]) the way [VerifyReceipt]
// checks a receipt, but for typ [TypSubject], and returns the user (sub) and the agent
// acting for them (act.sub; "" if there is no act). A nested act (a chain) is refused: the
// gateway never mints one. Every error is a *[TokenError].
func VerifySubject(keys *KeySet, raw, issuer, audience string, now time.Time) (user, agent string, err error) {
	payload, err := verifyTyped(keys, raw, TypSubject, now)
	if err != nil {
		return "", "", err
	}
	var p subjectJSON
	if err := json.Unmarshal(payload, &p); err != nil {
		return "", "", &TokenError{Reason: ReasonMalformed, Err: err}
	}
	if err := checkShortLived(p.Iss, p.Sub, p.Jti, p.Aud, p.Iat, p.Nbf, p.Exp, issuer, audience, now); err != nil {
		return "", "", err
	}
	if p.Act != nil {
		if p.Act.Sub == "" || p.Act.Act != nil {
			return "", "", tokenErr(ReasonMalformed, "act is not one agent")
		}
		agent = p.Act.Sub
	}
	return p.Sub, agent, nil
}
