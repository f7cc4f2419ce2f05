package identity

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

const testTokenEndpoint = "https://gateway.example/oauth/token"

// assertionAgents are two registered agents' keys.
type assertionAgents struct {
	a, b ed25519.PrivateKey
}

func newAssertionAgents(tb testing.TB) assertionAgents {
	tb.Helper()
	_, a, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	_, b, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	return assertionAgents{a: a, b: b}
}

func (ag assertionAgents) keyOf(id string) (ed25519.PublicKey, bool) {
	switch id {
	case "agent-a":
		return ag.a.Public().(ed25519.PublicKey), true
	case "agent-b":
		return ag.b.Public().(ed25519.PublicKey), true
	}
	return nil, false
}

// assertionClaims are a valid assertion by agent-a at jwtT0, valid for a minute.
func assertionClaims(jti string) map[string]any {
	return map[string]any{
		"iss": "agent-a", "sub": "agent-a", "aud": testTokenEndpoint,
		"iat": jwtT0.Unix(), "exp": jwtT0.Add(time.Minute).Unix(), "jti": jti,
	}
}

func signAssertion(tb testing.TB, key ed25519.PrivateKey, claims map[string]any) string {
	tb.Helper()
	return signJWT(tb, map[string]any{"alg": "EdDSA", "typ": "JWT"}, claims, jwt.SigningMethodEdDSA, key)
}

func newTestAssertionVerifier(at func() time.Time, capacity int) *AssertionVerifier {
	return NewAssertionVerifier(AssertionOptions{Audience: testTokenEndpoint, Now: at, ReplayCapacity: capacity})
}

func TestAssertionVerify(t *testing.T) {
	t.Parallel()
	ag := newAssertionAgents(t)
	valid := signAssertion(t, ag.a, assertionClaims("jti-1"))
	pubA := ag.a.Public().(ed25519.PublicKey)
	tests := []struct {
		name       string
		raw        string
		replay     bool      // verify once first, so this is a replay
		at         time.Time // default jwtT0
		wantReason string
	}{
		{name: "valid", raw: valid},
		{name: "valid for agent b", raw: signAssertion(t, ag.b, with(with(assertionClaims("jti-1"), "iss", "agent-b"), "sub", "agent-b"))},
		{name: "audience in an array", raw: signAssertion(t, ag.a, with(assertionClaims("jti-1"), "aud", []string{"x", testTokenEndpoint}))},
		{name: "replayed jti", raw: valid, replay: true, wantReason: ReasonReplayed},
		{name: "missing jti", raw: signAssertion(t, ag.a, without(assertionClaims("x"), "jti")), wantReason: ReasonMissingClaim},
		{name: "no exp", raw: signAssertion(t, ag.a, without(assertionClaims("jti-1"), "exp")), wantReason: ReasonMissingClaim},
		{name: "expired", raw: valid, at: jwtT0.Add(time.Minute + 30*time.Second), wantReason: ReasonExpired},
		{name: "expired within leeway", raw: valid, at: jwtT0.Add(time.Minute + 29*time.Second)},
		{name: "too long-lived", raw: signAssertion(t, ag.a, with(assertionClaims("jti-1"), "exp", jwtT0.Add(time.Hour).Unix())), wantReason: ReasonBadLifetime},
		{name: "lifetime at the limit", raw: signAssertion(t, ag.a, with(assertionClaims("jti-1"), "exp", jwtT0.Add(5*time.Minute+30*time.Second).Unix()))},
		{name: "issued in the future", raw: signAssertion(t, ag.a, with(assertionClaims("jti-1"), "iat", jwtT0.Add(time.Minute).Unix())), wantReason: ReasonNotYetValid},
		{name: "wrong audience", raw: signAssertion(t, ag.a, with(assertionClaims("jti-1"), "aud", "https://other.example/token")), wantReason: ReasonBadAudience},
		{name: "no audience", raw: signAssertion(t, ag.a, without(assertionClaims("jti-1"), "aud")), wantReason: ReasonBadAudience},
		{name: "iss is not sub", raw: signAssertion(t, ag.a, with(assertionClaims("jti-1"), "sub", "agent-b")), wantReason: ReasonBadIssuer},
		{name: "no iss", raw: signAssertion(t, ag.a, without(assertionClaims("jti-1"), "iss")), wantReason: ReasonMissingClaim},
		{name: "unknown agent", raw: signAssertion(t, ag.a, with(with(assertionClaims("jti-1"), "iss", "agent-x"), "sub", "agent-x")), wantReason: ReasonUnknownAgent},
		{name: "signed by another agent's key", raw: signAssertion(t, ag.b, assertionClaims("jti-1")), wantReason: ReasonBadSignature},
		{name: "tampered claims", raw: tamperPayload(t, valid, func(c map[string]any) { c["iss"], c["sub"] = "agent-b", "agent-b" }), wantReason: ReasonBadSignature},
		{name: "alg none", raw: signJWT(t, map[string]any{"alg": "none"}, assertionClaims("jti-1"), jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType), wantReason: ReasonBadAlg},
		{name: "HS256 keyed with the agent's public key", raw: signJWT(t, map[string]any{"alg": "HS256"}, assertionClaims("jti-1"), jwt.SigningMethodHS256, []byte(pubA)), wantReason: ReasonBadAlg},
		{name: "four parts", raw: valid + ".x", wantReason: ReasonMalformed},
		{name: "oversized", raw: signAssertion(t, ag.a, with(assertionClaims("jti-1"), "pad", strings.Repeat("x", maxJWTBytes))), wantReason: ReasonMalformed},
		{name: "garbage", raw: "eyJ.eyJ.sig", wantReason: ReasonMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			at := tt.at
			if at.IsZero() {
				at = jwtT0
			}
			v := newTestAssertionVerifier(func() time.Time { return at }, 0)
			if tt.replay {
				if _, err := v.Verify(tt.raw, ag.keyOf); err != nil {
					t.Fatalf("first Verify(%s) = %v, want success", tt.name, err)
				}
			}
			id, err := v.Verify(tt.raw, ag.keyOf)
			if got := reasonOf(err); got != tt.wantReason {
				t.Fatalf("Verify(%s) = %q, %v (reason %q), want reason %q", tt.name, id, err, got, tt.wantReason)
			}
			if err == nil && id != "agent-a" && id != "agent-b" {
				t.Errorf("Verify(%s) = %q, want the signing agent", tt.name, id)
			}
			if err != nil && !errors.Is(err, ErrUnauthenticated) {
				t.Errorf("errors.Is(%v, ErrUnauthenticated) = false, want true", err)
			}
		})
	}
}

func TestAssertionReplayCache(t *testing.T) {
	t.Parallel()
	ag := newAssertionAgents(t)
	now := jwtT0
	v := newTestAssertionVerifier(func() time.Time { return now }, 2)
	verify := func(raw string) string {
		t.Helper()
		_, err := v.Verify(raw, ag.keyOf)
		return reasonOf(err)
	}
	first := signAssertion(t, ag.a, assertionClaims("j1"))
	steps := []struct {
		name string
		at   time.Time
		raw  string
		want string
	}{
		{"first", jwtT0, first, ""},
		{"same jti by another agent is not a replay", jwtT0, signAssertion(t, ag.b, with(with(assertionClaims("j1"), "iss", "agent-b"), "sub", "agent-b")), ""},
		{"cache full", jwtT0, signAssertion(t, ag.a, assertionClaims("j2")), ReasonReplayCacheFull},
		{"invalid assertions do not reach the cache", jwtT0, signAssertion(t, ag.b, assertionClaims("j3")), ReasonBadSignature},
		{"replay while remembered", jwtT0.Add(time.Minute + 29*time.Second), first, ReasonReplayed},
		{"forgotten only once no longer acceptable", jwtT0.Add(time.Minute + 30*time.Second), first, ReasonExpired},
		{"room again after expiry", jwtT0.Add(time.Minute + 30*time.Second), signAssertion(t, ag.a, with(assertionClaims("j2"), "exp", jwtT0.Add(3*time.Minute).Unix())), ""},
	}
	for _, s := range steps {
		now = s.at
		if got := verify(s.raw); got != s.want {
			t.Fatalf("step %q: Verify reason %q, want %q", s.name, got, s.want)
		}
	}
}

func TestAssertionEmptyAudienceRefusesAll(t *testing.T) {
	t.Parallel()
	ag := newAssertionAgents(t)
	v := NewAssertionVerifier(AssertionOptions{Now: func() time.Time { return jwtT0 }})
	raw := signAssertion(t, ag.a, with(assertionClaims("j"), "aud", ""))
	if _, err := v.Verify(raw, ag.keyOf); reasonOf(err) != ReasonBadAudience {
		t.Errorf("Verify with no configured audience = %v, want reason %q", err, ReasonBadAudience)
	}
}

func TestAssertionConcurrentReplay(t *testing.T) {
	t.Parallel()
	ag := newAssertionAgents(t)
	v := newTestAssertionVerifier(func() time.Time { return jwtT0 }, 0)
	raw := signAssertion(t, ag.a, assertionClaims("once"))
	const n = 16
	errs := make(chan error, n)
	for range n {
		go func() {
			_, err := v.Verify(raw, ag.keyOf)
			errs <- err
		}()
	}
	ok := 0
	for range n {
		if err := <-errs; err == nil {
			ok++
		} else if reasonOf(err) != ReasonReplayed {
			t.Errorf("concurrent Verify = %v, want success or replayed", err)
		}
	}
	if ok != 1 {
		t.Errorf("%d concurrent Verify calls of one assertion succeeded, want exactly 1", ok)
	}
}

func FuzzAssertionVerify(f *testing.F) {
	// A fixed key and fixed claims: the same assertions in every fuzzing process.
	seed := make([]byte, ed25519.SeedSize)
	seed[0] = 1
	ag := assertionAgents{a: ed25519.NewKeyFromSeed(seed), b: ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize))}
	minted := map[string]bool{}
	for _, jti := range []string{"f1", "f2"} {
		raw := signAssertion(f, ag.a, assertionClaims(jti))
		minted[raw] = true
		f.Add(raw)
		f.Add(raw[:len(raw)-2])
		p := strings.Split(raw, ".")
		f.Add(b64.EncodeToString([]byte(`{"alg":"none"}`)) + "." + p[1] + ".")
	}
	f.Add("")
	f.Add("a.b.c")
	v := newTestAssertionVerifier(func() time.Time { return jwtT0 }, 0)
	f.Fuzz(func(t *testing.T, raw string) {
		id, err := v.Verify(raw, ag.keyOf)
		if err == nil && !minted[raw] {
			t.Fatalf("Verify(%q) = %q, want error: not an assertion the test signed", raw, id)
		}
		if err != nil && reasonOf(err) == "" {
			t.Fatalf("Verify(%q) error %v is not a *TokenError", raw, err)
		}
	})
}
