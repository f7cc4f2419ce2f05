package identity

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The reasons a JWT is refused, as [TokenError.Reason]. They are stable: the audit log and
// metrics record them.
const (
	ReasonMalformed       = "malformed"         // not a well-formed compact JWS, or inconsistent claims
	ReasonBadAlg          = "bad_alg"           // algorithm not allowed here, or not the key's
	ReasonUnknownKid      = "unknown_kid"       // no kid, or no verifying key with that kid
	ReasonBadSignature    = "bad_signature"     // signature does not verify
	ReasonBadIssuer       = "bad_issuer"        // iss is not the expected issuer (or, in an assertion, not sub)
	ReasonBadAudience     = "bad_audience"      // aud does not name us
	ReasonExpired         = "expired"           // exp (plus leeway) has passed
	ReasonNotYetValid     = "not_yet_valid"     // nbf or iat is in the future (beyond leeway)
	ReasonMissingClaim    = "missing_claim"     // a required claim is absent
	ReasonBadLifetime     = "bad_lifetime"      // valid for longer than allowed
	ReasonReplayed        = "replayed"          // an assertion's jti was seen before
	ReasonReplayCacheFull = "replay_cache_full" // the replay cache is full; refused rather than forgotten
	ReasonUnknownAgent    = "unknown_agent"     // an assertion's issuer is not a registered agent
	ReasonKeysUnavailable = "keys_unavailable"  // no keys to verify with (e.g. the IdP's JWKS cannot be fetched)
)

// TokenError says why a JWT was refused. Its message is only "token: <reason>": it never
// contains token text, so it is safe to log; Err, when set, adds detail for the audit log
// (never token or key material either).
//
// Every TokenError is an authentication failure: errors.Is(err, [ErrUnauthenticated]) holds.
type TokenError struct {
	Reason string // one of the Reason constants
	Err    error  // optional detail
}

func (e *TokenError) Error() string { return "token: " + e.Reason }

// Unwrap returns the detail, if any.
func (e *TokenError) Unwrap() error { return e.Err }

// Is reports whether target is [ErrUnauthenticated].
func (e *TokenError) Is(target error) bool { return target == ErrUnauthenticated }

func tokenErr(reason string, format string, args ...any) *TokenError {
	if format == "" {
		return &TokenError{Reason: reason}
	}
	return &TokenError{Reason: reason, Err: fmt.Errorf(format, args...)}
}

// maxJWTBytes bounds the gateway's own access tokens and agents' client assertions.
const maxJWTBytes = 8 << 10

// b64 is the only base64 JWS allows: URL alphabet, no padding, and (Strict) no stray bits,
// so each value has exactly one encoding and a token cannot be altered without breaking it.
var b64 = base64.RawURLEncoding.Strict()

// jwsHeader is the part of a JOSE header we read. Any other member is ignored, except crit:
// we understand no extensions, so RFC 7515 §4.1.11 says such a token must be refused.
type jwsHeader struct {
	Alg  string          `json:"alg"`
	Typ  string          `json:"typ"`
	Kid  string          `json:"kid"`
	Crit json.RawMessage `json:"crit"`
}

// compactJWS is a split and decoded, not yet verified, compact JWS.
type compactJWS struct {
	header       jwsHeader
	signingInput string // header.payload, exactly as received
	payload      []byte
	sig          []byte
}

// parseCompactJWS splits and decodes a compact JWS of at most maxLen bytes. It checks only
// form; the caller checks alg, finds the key and verifies the signature.
func parseCompactJWS(raw string, maxLen int) (compactJWS, error) {
	var j compactJWS
	if len(raw) > maxLen {
		return j, tokenErr(ReasonMalformed, "longer than %d bytes", maxLen)
	}
	h, rest, ok1 := strings.Cut(raw, ".")
	p, s, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 || strings.IndexByte(s, '.') >= 0 {
		return j, tokenErr(ReasonMalformed, "not three dot-separated parts")
	}
	// An empty signature is left for the signature check, so that alg "none" is refused as
	// bad_alg, which is what it is.
	if h == "" || p == "" {
		return j, tokenErr(ReasonMalformed, "empty header or payload")
	}
	hb, err := b64.DecodeString(h)
	if err != nil {
		return j, tokenErr(ReasonMalformed, "header is not base64url")
	}
	if err := json.Unmarshal(hb, &j.header); err != nil {
		return j, tokenErr(ReasonMalformed, "header is not a JSON object")
	}
	if j.header.Crit != nil {
		return j, tokenErr(ReasonMalformed, "header has crit")
	}
	if j.payload, err = b64.DecodeString(p); err != nil {
		return j, tokenErr(ReasonMalformed, "payload is not base64url")
	}
	if j.sig, err = b64.DecodeString(s); err != nil {
		return j, tokenErr(ReasonMalformed, "signature is not base64url")
	}
	j.signingInput = raw[:len(h)+1+len(p)]
	return j, nil
}

// numericDate is a JWT NumericDate (RFC 7519 §2): seconds since the epoch. Fractions are
// truncated; values outside years 1970 to 9999 are refused so that no arithmetic on them can
// overflow.
type numericDate int64

const maxNumericDate = 253402300799 // 9999-12-31T23:59:59Z

func (d *numericDate) UnmarshalJSON(b []byte) error {
	// The decoder has checked that b is one JSON value; a number starts with - or a digit,
	// and JSON's number grammar is a subset of ParseFloat's.
	if len(b) == 0 || (b[0] != '-' && (b[0] < '0' || b[0] > '9')) {
		return errors.New("numeric date is not a number")
	}
	f, err := strconv.ParseFloat(string(b), 64)
	if err != nil || math.IsNaN(f) || f < 0 || f > maxNumericDate {
		return errors.New("numeric date out of range")
	}
	*d = numericDate(f)
	return nil
}

func (d *numericDate) time() time.Time { return time.Unix(int64(*d), 0) }

func toNumericDate(t time.Time) *numericDate {
	d := numericDate(t.Unix())
	return &d
}

// audience is the aud claim: one string or an array of strings (RFC 7519 §4.1.3). It is
// always encoded as an array.
type audience []string

func (a *audience) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*a = audience{s}
		return nil
	}
	var ss []string
	if err := json.Unmarshal(b, &ss); err != nil {
		return errors.New("aud is neither a string nor an array of strings")
	}
	*a = ss
	return nil
}

// contains reports whether the audience names want; an empty want matches nothing.
func (a audience) contains(want string) bool {
	return want != "" && slices.Contains(a, want)
}

// checkTimes applies the common time checks: exp required and not passed (with leeway), nbf
// and iat not in the future (with leeway).
func checkTimes(now time.Time, leeway time.Duration, exp, nbf, iat *numericDate) error {
	if exp == nil {
		return tokenErr(ReasonMissingClaim, "no exp")
	}
	if !now.Before(exp.time().Add(leeway)) {
		return tokenErr(ReasonExpired, "")
	}
	if nbf != nil && nbf.time().After(now.Add(leeway)) {
		return tokenErr(ReasonNotYetValid, "nbf in the future")
	}
	if iat != nil && iat.time().After(now.Add(leeway)) {
		return tokenErr(ReasonNotYetValid, "iat in the future")
	}
	return nil
}

// maxLeeway bounds every configurable clock-skew allowance.
const (
	defaultLeeway = 30 * time.Second
	maxLeeway     = 5 * time.Minute
)
