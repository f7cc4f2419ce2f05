package identity

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// OIDCConfig configures an [OIDCVerifier] for one OpenID Connect issuer.
type OIDCConfig struct {
	// Issuer is the iss users' tokens must carry. Required: an https URL (http only on a
	// loopback host).
	Issuer string
	// JWKSURL is where the issuer publishes its keys. Required: an https URL (http only on a
	// loopback host).
	JWKSURL string
	// Audience must be in the aud of users' tokens (the gateway's client ID). Required.
	Audience string
	// GroupsClaim names the claim holding the user's groups: default "groups".
	GroupsClaim string
	// HTTPClient fetches the JWKS; default a client with a 10s timeout that follows at most
	// 3 redirects, none off https (except to loopback). Every fetch also has a 10s deadline.
	HTTPClient *http.Client
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Leeway is the clock skew allowed on exp, nbf and iat: default 30s, at most 5m.
	Leeway time.Duration
	// MinRefresh is the least time between two JWKS fetches: a token with an unknown kid
	// triggers a refetch at most this often (default 1m).
	MinRefresh time.Duration
}

// UserIdentity is the user a verified OIDC token names.
type UserIdentity struct {
	Subject string
	Email   string // "" if the token has none
	Groups  []string
	Issuer  string
	// Nonce is the token's nonce claim, "" if it has none. The verifier does not check it:
	// only the relying party that sent the authentication request knows the value to expect.
	Nonce string
	// EmailVerified is the email_verified claim: whether the provider vouches that the user
	// controls Email. False when absent.
	EmailVerified bool
}

// The bounds on what an identity provider sends.
const (
	maxOIDCTokenBytes = 16 << 10 // user tokens carry groups, so allow more than our own
	maxJWKSBytes      = 1 << 20
	jwksFetchTimeout  = 10 * time.Second
)

// OIDCVerifier verifies users' tokens from one OpenID Connect issuer, fetching its keys
// lazily and caching them. It is safe for concurrent use.
type OIDCVerifier struct {
	c OIDCConfig

	mu sync.Mutex
	// The fields below are guarded by mu.
	keys        map[string]oidcKey // nil until a fetch succeeds
	lastAttempt time.Time          // start of the last fetch, successful or not
	inflight    *jwksFetch         // the fetch under way, if any
}

// jwksFetch is one fetch that concurrent callers wait for; err is set before done closes.
type jwksFetch struct {
	done chan struct{}
	err  error
}

type oidcKey struct {
	alg string // the JWK's alg, "" if it had none
	pub crypto.PublicKey
}

// NewOIDCVerifier returns a verifier, or an error naming every problem with the config.
func NewOIDCVerifier(c OIDCConfig) (*OIDCVerifier, error) {
	var errs []error
	if err := CheckIdPURL(c.Issuer); err != nil {
		errs = append(errs, fmt.Errorf("issuer: %w", err))
	}
	if err := CheckIdPURL(c.JWKSURL); err != nil {
		errs = append(errs, fmt.Errorf("jwks url: %w", err))
	}
	if c.Audience == "" {
		errs = append(errs, errors.New("audience is required"))
	}
	if c.Leeway < 0 || c.Leeway > maxLeeway {
		errs = append(errs, fmt.Errorf("leeway must be between 0s and %s, got %s", maxLeeway, c.Leeway))
	}
	if c.MinRefresh < 0 {
		errs = append(errs, fmt.Errorf("min refresh must not be negative, got %s", c.MinRefresh))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("oidc issuer %q: %w", c.Issuer, err)
	}
	if c.GroupsClaim == "" {
		c.GroupsClaim = "groups"
	}
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{
			Timeout: jwksFetchTimeout,
			// A redirect must not lead the key fetch off https.
			CheckRedirect: func(req *http.Request, via []*http.Request) error {
				if len(via) >= 3 {
					return errors.New("more than 3 redirects")
				}
				return CheckIdPURL(req.URL.String())
			},
		}
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Leeway == 0 {
		c.Leeway = defaultLeeway
	}
	if c.MinRefresh == 0 {
		c.MinRefresh = time.Minute
	}
	return &OIDCVerifier{c: c}, nil
}

// MaxIdPURL is the longest identity-provider URL [CheckIdPURL] accepts.
const MaxIdPURL = 2048

// CheckIdPURL checks a URL the gateway sends requests to at an identity provider (an
// issuer, a JWKS, token or discovery endpoint): absolute, https (http only on a loopback
// host), no user info, at most MaxIdPURL bytes.
func CheckIdPURL(s string) error {
	if s == "" {
		return errors.New("is required")
	}
	if len(s) > MaxIdPURL {
		return fmt.Errorf("longer than %d bytes", MaxIdPURL)
	}
	u, err := url.Parse(s)
	switch {
	case err == nil && u.User != nil:
		// Not quoted: the user info may be a password.
		return errors.New("must not carry credentials (user info) in the URL")
	case err != nil || u.Host == "" || u.Opaque != "":
		return fmt.Errorf("%q is not an absolute URL with a host", s)
	}
	switch {
	case u.Scheme == "https":
		return nil
	case u.Scheme == "http" && isLoopbackHost(u.Hostname()):
		return nil
	default:
		return fmt.Errorf("%q must use https (http only on a loopback host)", s)
	}
}

func isLoopbackHost(h string) bool {
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// Verify checks a user's token: size (16 KiB) and form; alg RS256, ES256 or EdDSA, matching
// the key; kid of a key in the issuer's JWKS (an unknown kid refetches it, at most once per
// MinRefresh); the signature; iss, aud, exp (required), nbf and iat with leeway; sub
// required. The groups claim may be a string or an array of strings; any other type is
// refused rather than ignored. The nonce claim, if present, must be a string and is returned
// unchecked in [UserIdentity.Nonce]. Every error is a *[TokenError].
func (v *OIDCVerifier) Verify(ctx context.Context, raw string) (*UserIdentity, error) {
	j, err := parseCompactJWS(raw, maxOIDCTokenBytes)
	if err != nil {
		return nil, err
	}
	var method jwt.SigningMethod
	switch j.header.Alg {
	case "RS256":
		method = jwt.SigningMethodRS256
	case "ES256":
		method = jwt.SigningMethodES256
	case "EdDSA":
		method = jwt.SigningMethodEdDSA
	default:
		return nil, tokenErr(ReasonBadAlg, "")
	}
	if j.header.Kid == "" {
		return nil, tokenErr(ReasonUnknownKid, "no kid")
	}
	k, err := v.key(ctx, j.header.Kid)
	if err != nil {
		return nil, err
	}
	if !keyFitsAlg(k, j.header.Alg) {
		return nil, tokenErr(ReasonBadAlg, "alg does not match the key")
	}
	if err := method.Verify(j.signingInput, j.sig, k.pub); err != nil {
		return nil, tokenErr(ReasonBadSignature, "")
	}

	var p map[string]json.RawMessage
	if err := json.Unmarshal(j.payload, &p); err != nil {
		return nil, tokenErr(ReasonMalformed, "claims are not a JSON object")
	}
	var (
		iss, sub, email string
		nonce           string
		emailVerified   bool
		aud             audience
		exp, nbf, iat   *numericDate
	)
	for _, f := range []struct {
		name string
		dst  any
	}{{"iss", &iss}, {"sub", &sub}, {"email", &email}, {"aud", &aud}, {"exp", &exp}, {"nbf", &nbf}, {"iat", &iat}, {"nonce", &nonce}, {"email_verified", &emailVerified}} {
		if b, ok := p[f.name]; ok {
			if err := json.Unmarshal(b, f.dst); err != nil {
				return nil, tokenErr(ReasonMalformed, "claim %q has the wrong type", f.name)
			}
		}
	}
	if iss != v.c.Issuer {
		return nil, tokenErr(ReasonBadIssuer, "")
	}
	if !aud.contains(v.c.Audience) {
		return nil, tokenErr(ReasonBadAudience, "")
	}
	if err := checkTimes(v.c.Now(), v.c.Leeway, exp, nbf, iat); err != nil {
		return nil, err
	}
	if sub == "" {
		return nil, tokenErr(ReasonMissingClaim, "no sub")
	}
	groups, err := groupsClaim(p[v.c.GroupsClaim])
	if err != nil {
		return nil, &TokenError{Reason: ReasonMalformed, Err: fmt.Errorf("claim %q: %w", v.c.GroupsClaim, err)}
	}
	return &UserIdentity{Subject: sub, Email: email, Groups: groups, Issuer: iss, Nonce: nonce, EmailVerified: emailVerified}, nil
}

// groupsClaim decodes a groups claim: absent or null, one string, or an array of strings.
func groupsClaim(b json.RawMessage) ([]string, error) {
	if len(b) == 0 || string(b) == "null" {
		return nil, nil
	}
	if b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return nil, err
		}
		return []string{s}, nil
	}
	var ss []string
	if err := json.Unmarshal(b, &ss); err != nil {
		return nil, errors.New("neither a string nor an array of strings")
	}
	return ss, nil
}

func keyFitsAlg(k oidcKey, alg string) bool {
	if k.alg != "" && k.alg != alg {
		return false
	}
	switch pub := k.pub.(type) {
	case *rsa.PublicKey:
		return alg == "RS256"
	case *ecdsa.PublicKey:
		return alg == "ES256" && pub.Curve == elliptic.P256()
	case ed25519.PublicKey:
		return alg == "EdDSA"
	}
	return false
}

// errRefreshLimited: the JWKS was fetched less than MinRefresh ago.
var errRefreshLimited = errors.New("jwks fetched less than min refresh ago")

// key returns the issuer's key with the given kid, fetching the JWKS if it has not been
// fetched yet or does not have the kid, subject to MinRefresh.
func (v *OIDCVerifier) key(ctx context.Context, kid string) (oidcKey, error) {
	v.mu.Lock()
	k, ok := v.keys[kid]
	v.mu.Unlock()
	if ok {
		return k, nil
	}
	err := v.refresh(ctx)
	v.mu.Lock()
	k, ok = v.keys[kid]
	fetched := v.keys != nil
	v.mu.Unlock()
	switch {
	case ok:
		return k, nil
	case !fetched && err != nil:
		return oidcKey{}, &TokenError{Reason: ReasonKeysUnavailable, Err: err}
	case errors.Is(err, errRefreshLimited):
		return oidcKey{}, &TokenError{Reason: ReasonUnknownKid, Err: err}
	case err != nil:
		// The kid may be in the keys we could not fetch.
		return oidcKey{}, &TokenError{Reason: ReasonKeysUnavailable, Err: err}
	default:
		return oidcKey{}, tokenErr(ReasonUnknownKid, "")
	}
}

// refresh fetches the JWKS, unless a fetch started less than MinRefresh ago; concurrent
// callers share one fetch. The lock is never held across the fetch.
func (v *OIDCVerifier) refresh(ctx context.Context) error {
	v.mu.Lock()
	if f := v.inflight; f != nil {
		v.mu.Unlock()
		select {
		case <-f.done:
			return f.err
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	now := v.c.Now()
	if !v.lastAttempt.IsZero() && now.Sub(v.lastAttempt) < v.c.MinRefresh {
		v.mu.Unlock()
		return errRefreshLimited
	}
	v.lastAttempt = now
	f := &jwksFetch{done: make(chan struct{})}
	v.inflight = f
	v.mu.Unlock()

	keys, err := v.fetch(ctx)

	v.mu.Lock()
	if err == nil {
		v.keys = keys
	}
	v.inflight = nil
	f.err = err
	v.mu.Unlock()
	close(f.done)
	return err
}

func (v *OIDCVerifier) fetch(ctx context.Context) (map[string]oidcKey, error) {
	ctx, cancel := context.WithTimeout(ctx, jwksFetchTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, v.c.JWKSURL, nil)
	if err != nil {
		return nil, fmt.Errorf("fetch jwks: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := v.c.HTTPClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetch jwks: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetch jwks: status %d", resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSBytes+1))
	if err != nil {
		return nil, fmt.Errorf("fetch jwks: %w", err)
	}
	if len(body) > maxJWKSBytes {
		return nil, fmt.Errorf("fetch jwks: response larger than %d bytes", maxJWKSBytes)
	}
	keys, err := parseJWKS(body)
	if err != nil {
		return nil, fmt.Errorf("fetch jwks: %w", err)
	}
	return keys, nil
}

// parseJWKS decodes a JWK Set, keeping the signature keys it can use: RSA (2048 to 8192
// bits), EC P-256 and Ed25519, each with a kid. Other keys are skipped; a kid listed twice
// keeps its first key.
func parseJWKS(b []byte) (map[string]oidcKey, error) {
	var set struct {
		Keys []struct {
			Kty string `json:"kty"`
			Use string `json:"use"`
			Alg string `json:"alg"`
			Kid string `json:"kid"`
			Crv string `json:"crv"`
			N   string `json:"n"`
			E   string `json:"e"`
			X   string `json:"x"`
			Y   string `json:"y"`
		} `json:"keys"`
	}
	if err := json.Unmarshal(b, &set); err != nil {
		return nil, errors.New("not a JWK set")
	}
	keys := map[string]oidcKey{}
	for _, k := range set.Keys {
		if k.Kid == "" || (k.Use != "" && k.Use != "sig") {
			continue
		}
		if _, dup := keys[k.Kid]; dup {
			continue
		}
		var pub crypto.PublicKey
		switch {
		case k.Kty == "RSA":
			n, err1 := b64.DecodeString(k.N)
			e, err2 := b64.DecodeString(k.E)
			if err1 != nil || err2 != nil || len(e) == 0 || len(e) > 4 {
				continue
			}
			nb := new(big.Int).SetBytes(n)
			ei := new(big.Int).SetBytes(e).Int64()
			if nb.BitLen() < 2048 || nb.BitLen() > 8192 || ei < 3 || ei > 1<<31-1 || ei%2 == 0 {
				continue
			}
			pub = &rsa.PublicKey{N: nb, E: int(ei)}
		case k.Kty == "EC" && k.Crv == "P-256":
			x, err1 := b64.DecodeString(k.X)
			y, err2 := b64.DecodeString(k.Y)
			if err1 != nil || err2 != nil || len(x) != 32 || len(y) != 32 {
				continue
			}
			ec, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), append(append([]byte{4}, x...), y...))
			if err != nil {
				continue
			}
			pub = ec
		case k.Kty == "OKP" && k.Crv == "Ed25519":
			x, err := b64.DecodeString(k.X)
			if err != nil || len(x) != ed25519.PublicKeySize {
				continue
			}
			pub = ed25519.PublicKey(x)
		default:
			continue
		}
		keys[k.Kid] = oidcKey{alg: k.Alg, pub: pub}
	}
	if len(keys) == 0 {
		return nil, errors.New("no usable signature keys")
	}
	return keys, nil
}
