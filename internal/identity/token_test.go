package identity

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/go-cmp/cmp"
)

// jwtT0 is the fixed "now" of the token tests.
var jwtT0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

const (
	testIssuerURL = "https://gateway.example"
	testAudience  = "chaperone"
)

// signJWT builds a compact JWS from any header and claims, signed with method and key, so
// tests can craft tokens an honest issuer never would. For jwt.SigningMethodNone pass
// jwt.UnsafeAllowNoneSignatureType as the key.
func signJWT(tb testing.TB, header map[string]any, claims any, method jwt.SigningMethod, key any) string {
	tb.Helper()
	hb, err := json.Marshal(header)
	if err != nil {
		tb.Fatalf("marshal header: %v", err)
	}
	pb, err := json.Marshal(claims)
	if err != nil {
		tb.Fatalf("marshal claims: %v", err)
	}
	si := b64.EncodeToString(hb) + "." + b64.EncodeToString(pb)
	sig, err := method.Sign(si, key)
	if err != nil {
		tb.Fatalf("%s sign: %v", method.Alg(), err)
	}
	return si + "." + b64.EncodeToString(sig)
}

// jwtParts returns a compact JWS's decoded header and claims as maps.
func jwtParts(tb testing.TB, raw string) (header, claims map[string]any) {
	tb.Helper()
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		tb.Fatalf("token has %d parts", len(parts))
	}
	for i, dst := range []*map[string]any{&header, &claims} {
		b, err := b64.DecodeString(parts[i])
		if err != nil {
			tb.Fatalf("decode part %d: %v", i, err)
		}
		if err := json.Unmarshal(b, dst); err != nil {
			tb.Fatalf("unmarshal part %d: %v", i, err)
		}
	}
	return header, claims
}

// tokenFixture is a key set with one active and one rotated-out key, and issuers over it.
type tokenFixture struct {
	keys    *KeySet
	active  SigningKey
	retired SigningKey // retired at jwtT0-10m, so it verifies until jwtT0+50m
}

const fixtureKeyTTL = time.Hour

func newTokenFixture(tb testing.TB) *tokenFixture {
	tb.Helper()
	old, err := GenerateSigningKey(jwtT0.Add(-48 * time.Hour))
	if err != nil {
		tb.Fatal(err)
	}
	old.Retired = jwtT0.Add(-10 * time.Minute)
	cur, err := GenerateSigningKey(jwtT0.Add(-10 * time.Minute))
	if err != nil {
		tb.Fatal(err)
	}
	ks, err := NewKeySet([]SigningKey{old, cur}, fixtureKeyTTL)
	if err != nil {
		tb.Fatalf("NewKeySet: %v", err)
	}
	return &tokenFixture{keys: ks, active: cur, retired: old}
}

// issuerAt returns an issuer over keys whose clock reads at.
func issuerAt(tb testing.TB, keys *KeySet, at time.Time) *Issuer {
	tb.Helper()
	i, err := NewIssuer(IssuerOptions{Issuer: testIssuerURL, Audience: testAudience, Keys: func() *KeySet { return keys }, Now: func() time.Time { return at }})
	if err != nil {
		tb.Fatalf("NewIssuer: %v", err)
	}
	return i
}

// baseClaims are a typical directly issued token's claims, valid from jwtT0 for 10m.
func baseClaims() Claims {
	return Claims{Agent: "mail-assistant", Task: "task-1", Tools: []string{"mail.search", "mail.send"}, Expiry: jwtT0.Add(10 * time.Minute)}
}

// wireClaims are baseClaims in JWT form with the issuer's defaults, for crafted tokens.
func wireClaims() map[string]any {
	return map[string]any{
		"iss": testIssuerURL, "sub": "mail-assistant", "aud": []string{testAudience},
		"exp": jwtT0.Add(10 * time.Minute).Unix(), "nbf": jwtT0.Unix(), "iat": jwtT0.Unix(),
		"jti": "jti-crafted", "agent": "mail-assistant", "task": "task-1",
		"tools": []string{"mail.search", "mail.send"}, "depth": 0,
	}
}

func without(m map[string]any, key string) map[string]any {
	delete(m, key)
	return m
}

func with(m map[string]any, key string, v any) map[string]any {
	m[key] = v
	return m
}

func mustMint(tb testing.TB, i *Issuer, c Claims) string {
	tb.Helper()
	raw, err := i.Mint(c)
	if err != nil {
		tb.Fatalf("Mint(%+v): %v", c, err)
	}
	return raw
}

func reasonOf(err error) string {
	var te *TokenError
	if errors.As(err, &te) {
		return te.Reason
	}
	if err != nil {
		return "not a TokenError: " + err.Error()
	}
	return ""
}

func TestIssuerVerify(t *testing.T) {
	t.Parallel()
	f := newTokenFixture(t)
	iss := issuerAt(t, f.keys, jwtT0)
	valid := mustMint(t, iss, baseClaims())
	edHeader := map[string]any{"alg": "EdDSA", "typ": "at+jwt", "kid": f.active.ID}
	signed := func(claims map[string]any) string {
		return signJWT(t, edHeader, claims, jwt.SigningMethodEdDSA, f.active.Private)
	}
	other := newTokenFixture(t)
	rsaKey := testRSAKey()
	pub := f.active.Private.Public().(ed25519.PublicKey)
	parts := strings.Split(valid, ".")

	exp := jwtT0.Add(10 * time.Minute)
	leeway := 30 * time.Second
	tests := []struct {
		name       string
		raw        string
		at         time.Time // default jwtT0
		wantReason string    // "" for valid
	}{
		{name: "valid", raw: valid},
		{name: "valid just before exp", raw: valid, at: exp.Add(-time.Second)},
		{name: "expired within leeway", raw: valid, at: exp.Add(leeway - time.Second)},
		{name: "expired at exp plus leeway", raw: valid, at: exp.Add(leeway), wantReason: ReasonExpired},
		{name: "expired just beyond leeway", raw: valid, at: exp.Add(leeway + time.Second), wantReason: ReasonExpired},
		{name: "expired long ago", raw: valid, at: exp.Add(24 * time.Hour), wantReason: ReasonExpired},
		{name: "not yet valid beyond leeway", raw: signed(with(wireClaims(), "nbf", jwtT0.Add(time.Minute).Unix())), wantReason: ReasonNotYetValid},
		{name: "nbf in future within leeway", raw: signed(with(wireClaims(), "nbf", jwtT0.Add(leeway-time.Second).Unix()))},
		{name: "issued in the future", raw: signed(with(with(wireClaims(), "iat", jwtT0.Add(time.Minute).Unix()), "exp", jwtT0.Add(5*time.Minute).Unix())), wantReason: ReasonNotYetValid},
		{name: "wrong audience", raw: mustMint(t, iss, func() Claims { c := baseClaims(); c.Audience = []string{"other-service"}; return c }()), wantReason: ReasonBadAudience},
		{name: "audience as single string", raw: signed(with(wireClaims(), "aud", testAudience))},
		{name: "audience among several", raw: signed(with(wireClaims(), "aud", []string{"x", testAudience}))},
		{name: "wrong issuer", raw: signed(with(wireClaims(), "iss", "https://evil.example")), wantReason: ReasonBadIssuer},
		{name: "unknown kid", raw: mustMint(t, issuerAt(t, other.keys, jwtT0), baseClaims()), wantReason: ReasonUnknownKid},
		{name: "no kid", raw: signJWT(t, map[string]any{"alg": "EdDSA"}, wireClaims(), jwt.SigningMethodEdDSA, f.active.Private), wantReason: ReasonUnknownKid},
		{name: "rotated-out key still verifying", raw: signJWT(t, map[string]any{"alg": "EdDSA", "kid": f.retired.ID}, wireClaims(), jwt.SigningMethodEdDSA, f.retired.Private)},
		{name: "rotated-out key past retired plus max ttl", raw: signJWT(t, map[string]any{"alg": "EdDSA", "kid": f.retired.ID}, with(wireClaims(), "exp", jwtT0.Add(time.Hour).Unix()), jwt.SigningMethodEdDSA, f.retired.Private), at: f.retired.Retired.Add(fixtureKeyTTL), wantReason: ReasonUnknownKid},
		{name: "alg none with empty signature", raw: signJWT(t, map[string]any{"alg": "none", "typ": "JWT", "kid": f.active.ID}, wireClaims(), jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType), wantReason: ReasonBadAlg},
		{name: "alg None capitalised", raw: signJWT(t, map[string]any{"alg": "None", "kid": f.active.ID}, wireClaims(), jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType), wantReason: ReasonBadAlg},
		{name: "HS256 keyed with the Ed25519 public key", raw: signJWT(t, map[string]any{"alg": "HS256", "kid": f.active.ID}, wireClaims(), jwt.SigningMethodHS256, []byte(pub)), wantReason: ReasonBadAlg},
		{name: "RS256 header", raw: signJWT(t, map[string]any{"alg": "RS256", "kid": f.active.ID}, wireClaims(), jwt.SigningMethodRS256, rsaKey), wantReason: ReasonBadAlg},
		{name: "no alg", raw: signJWT(t, map[string]any{"kid": f.active.ID}, wireClaims(), jwt.SigningMethodEdDSA, f.active.Private), wantReason: ReasonBadAlg},
		{name: "tampered payload", raw: tamperPayload(t, valid, func(c map[string]any) { c["tools"] = []string{"mail.search", "mail.delete"} }), wantReason: ReasonBadSignature},
		{name: "tampered header kid", raw: tamperHeader(t, valid, func(h map[string]any) { h["kid"] = f.retired.ID }), wantReason: ReasonBadSignature},
		{name: "signature of another token", raw: parts[0] + "." + parts[1] + "." + strings.Split(mustMint(t, iss, baseClaims()), ".")[2], wantReason: ReasonBadSignature},
		{name: "empty signature", raw: parts[0] + "." + parts[1] + ".", wantReason: ReasonBadSignature},
		{name: "truncated signature", raw: valid[:len(valid)-10], wantReason: ReasonBadSignature},
		{name: "truncated to two parts", raw: parts[0] + "." + parts[1], wantReason: ReasonMalformed},
		{name: "four parts", raw: valid + ".AAAA", wantReason: ReasonMalformed},
		{name: "oversized", raw: signed(with(wireClaims(), "pad", strings.Repeat("x", 9000))), wantReason: ReasonMalformed},
		{name: "empty", raw: "", wantReason: ReasonMalformed},
		{name: "garbage base64", raw: "!!!.@@@.###", wantReason: ReasonMalformed},
		{name: "padded base64", raw: parts[0] + "=." + parts[1] + "." + parts[2], wantReason: ReasonMalformed},
		{name: "header not json", raw: b64.EncodeToString([]byte("EdDSA")) + "." + parts[1] + "." + parts[2], wantReason: ReasonMalformed},
		{name: "crit header", raw: signJWT(t, map[string]any{"alg": "EdDSA", "kid": f.active.ID, "crit": []string{"exp"}}, wireClaims(), jwt.SigningMethodEdDSA, f.active.Private), wantReason: ReasonMalformed},
		{name: "typ of another kind of JWT", raw: signJWT(t, map[string]any{"alg": "EdDSA", "kid": f.active.ID, "typ": "dpop+jwt"}, wireClaims(), jwt.SigningMethodEdDSA, f.active.Private), wantReason: ReasonMalformed},
		{name: "typ JWT", raw: signJWT(t, map[string]any{"alg": "EdDSA", "kid": f.active.ID, "typ": "JWT"}, wireClaims(), jwt.SigningMethodEdDSA, f.active.Private)},
		{name: "payload not json", raw: signJWT(t, edHeader, "not an object", jwt.SigningMethodEdDSA, f.active.Private), wantReason: ReasonMalformed},
		{name: "missing jti", raw: signed(without(wireClaims(), "jti")), wantReason: ReasonMissingClaim},
		{name: "missing agent", raw: signed(without(wireClaims(), "agent")), wantReason: ReasonMissingClaim},
		{name: "missing task", raw: signed(without(wireClaims(), "task")), wantReason: ReasonMissingClaim},
		{name: "missing exp", raw: signed(without(wireClaims(), "exp")), wantReason: ReasonMissingClaim},
		{name: "missing iat", raw: signed(without(wireClaims(), "iat")), wantReason: ReasonMissingClaim},
		{name: "missing sub", raw: signed(without(wireClaims(), "sub")), wantReason: ReasonMissingClaim},
		{name: "exp as string", raw: signed(with(wireClaims(), "exp", "soon")), wantReason: ReasonMalformed},
		{name: "exp beyond year 9999", raw: signed(with(wireClaims(), "exp", 1e15)), wantReason: ReasonMalformed},
		{name: "lifetime over max ttl", raw: signed(with(wireClaims(), "exp", jwtT0.Add(2*time.Hour).Unix())), wantReason: ReasonBadLifetime},
		{name: "exp before iat", raw: signed(with(with(wireClaims(), "iat", jwtT0.Add(5*time.Minute+10*time.Second).Unix()), "exp", jwtT0.Add(5*time.Minute).Unix())), at: jwtT0.Add(5 * time.Minute), wantReason: ReasonBadLifetime},
		{name: "chain not ending with agent", raw: signed(with(with(wireClaims(), "act", map[string]any{"sub": "other-agent"}), "depth", 1)), wantReason: ReasonMalformed},
		{name: "act deeper than depth", raw: signed(with(wireClaims(), "act", map[string]any{"sub": "mail-assistant", "act": map[string]any{"sub": "x", "act": map[string]any{"sub": "y"}}})), wantReason: ReasonMalformed},
		{name: "depth without act", raw: signed(with(wireClaims(), "depth", 2)), wantReason: ReasonMalformed},
		{name: "sub is not the agent without user", raw: signed(with(wireClaims(), "sub", "someone-else")), wantReason: ReasonMalformed},
		{name: "agent twice in chain", raw: signed(with(with(wireClaims(), "act", map[string]any{"sub": "mail-assistant", "act": map[string]any{"sub": "mail-assistant"}}), "depth", 1)), wantReason: ReasonMalformed},
		{name: "groups without user", raw: signed(with(wireClaims(), "groups", []string{"admins"})), wantReason: ReasonMalformed},
		{name: "negative max_calls", raw: signed(with(wireClaims(), "max_calls", -1)), wantReason: ReasonMalformed},
		{name: "tools not an array", raw: signed(with(wireClaims(), "tools", "*")), wantReason: ReasonMalformed},
		{name: "unknown claims ignored", raw: signed(with(wireClaims(), "scope", "admin"))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			at := tt.at
			if at.IsZero() {
				at = jwtT0
			}
			c, err := issuerAt(t, f.keys, at).Verify(tt.raw)
			if got := reasonOf(err); got != tt.wantReason {
				t.Fatalf("Verify(%s) at %s: reason %q (%v), want %q", tt.name, at.Format(time.TimeOnly), got, err, tt.wantReason)
			}
			if err != nil {
				if !errors.Is(err, ErrUnauthenticated) {
					t.Errorf("errors.Is(%v, ErrUnauthenticated) = false, want true", err)
				}
				if s := err.Error(); s != "token: "+tt.wantReason {
					t.Errorf("Error() = %q, want %q", s, "token: "+tt.wantReason)
				}
				return
			}
			if c.Agent != "mail-assistant" || c.Tools == nil {
				t.Errorf("Verify(%s) = %+v, want agent mail-assistant with tools", tt.name, c)
			}
		})
	}
}

func tamperPayload(tb testing.TB, raw string, edit func(map[string]any)) string {
	tb.Helper()
	_, claims := jwtParts(tb, raw)
	edit(claims)
	b, err := json.Marshal(claims)
	if err != nil {
		tb.Fatal(err)
	}
	p := strings.Split(raw, ".")
	return p[0] + "." + b64.EncodeToString(b) + "." + p[2]
}

func tamperHeader(tb testing.TB, raw string, edit func(map[string]any)) string {
	tb.Helper()
	h, _ := jwtParts(tb, raw)
	edit(h)
	b, err := json.Marshal(h)
	if err != nil {
		tb.Fatal(err)
	}
	p := strings.Split(raw, ".")
	return b64.EncodeToString(b) + "." + p[1] + "." + p[2]
}

func TestMintVerifyRoundTrip(t *testing.T) {
	t.Parallel()
	f := newTokenFixture(t)
	iss := issuerAt(t, f.keys, jwtT0)
	common := func(c Claims) Claims {
		c.Issuer, c.Audience = testIssuerURL, []string{testAudience}
		c.IssuedAt, c.NotBefore, c.Expiry = jwtT0, jwtT0, jwtT0.Add(15*time.Minute)
		c.ID, c.Task, c.Tools = "jti-"+c.Agent, "triage-inbox", []string{"mail.search"}
		return c
	}
	tests := []struct {
		name    string
		claims  Claims
		wantSub string
		wantAct any // the act claim in the JWT; nil if absent
	}{
		{
			name:    "direct",
			claims:  common(Claims{Subject: "a1", Agent: "a1", Chain: []string{"a1"}, MaxCalls: 100}),
			wantSub: "a1",
		},
		{
			name:    "on behalf of a user",
			claims:  common(Claims{Subject: "alice", User: "alice", UserGroups: []string{"support"}, Agent: "a1", Chain: []string{"a1"}}),
			wantSub: "alice",
			wantAct: map[string]any{"sub": "a1"},
		},
		{
			name:    "delegated without a user",
			claims:  common(Claims{Subject: "a1", Agent: "a2", Chain: []string{"a1", "a2"}, Depth: 1, Parent: "jti-a1"}),
			wantSub: "a1",
			wantAct: map[string]any{"sub": "a2"},
		},
		{
			name: "depth 2 on behalf of a user",
			claims: common(Claims{Subject: "alice@example.com", User: "alice@example.com", UserGroups: []string{"support", "eu"},
				Agent: "a3", Chain: []string{"a1", "a2", "a3"}, Depth: 2, Parent: "jti-a2", MaxCalls: 5}),
			wantSub: "alice@example.com",
			wantAct: map[string]any{"sub": "a3", "act": map[string]any{"sub": "a2", "act": map[string]any{"sub": "a1"}}},
		},
		{
			name:    "user whose id is an agent id",
			claims:  common(Claims{Subject: "a1", User: "a1", Agent: "a1", Chain: []string{"a1"}}),
			wantSub: "a1",
			wantAct: map[string]any{"sub": "a1"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			raw := mustMint(t, iss, tt.claims)
			got, err := iss.Verify(raw)
			if err != nil {
				t.Fatalf("Verify(Mint(%+v)): %v", tt.claims, err)
			}
			if diff := cmp.Diff(&tt.claims, got); diff != "" {
				t.Errorf("Verify(Mint(c)) mismatch (-want +got):\n%s", diff)
			}
			h, c := jwtParts(t, raw)
			if diff := cmp.Diff(map[string]any{"alg": "EdDSA", "typ": "at+jwt", "kid": f.active.ID}, h); diff != "" {
				t.Errorf("header mismatch (-want +got):\n%s", diff)
			}
			if c["sub"] != tt.wantSub {
				t.Errorf("sub = %v, want %q", c["sub"], tt.wantSub)
			}
			if diff := cmp.Diff(tt.wantAct, c["act"]); diff != "" {
				t.Errorf("act mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestMintFills(t *testing.T) {
	t.Parallel()
	f := newTokenFixture(t)
	iss := issuerAt(t, f.keys, jwtT0.Add(500*time.Millisecond))
	raw := mustMint(t, iss, baseClaims())
	got, err := iss.Verify(raw)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if len(got.ID) != 22 {
		t.Errorf("ID = %q, want 22 base64url characters (128 bits)", got.ID)
	}
	want := &Claims{
		Issuer: testIssuerURL, Subject: "mail-assistant", Audience: []string{testAudience},
		Expiry: jwtT0.Add(10 * time.Minute), NotBefore: jwtT0, IssuedAt: jwtT0, ID: got.ID,
		Agent: "mail-assistant", Chain: []string{"mail-assistant"}, Task: "task-1",
		Tools: []string{"mail.search", "mail.send"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Verify(Mint(baseClaims())) mismatch (-want +got):\n%s", diff)
	}
	if again := mustMint(t, iss, baseClaims()); again == raw {
		t.Error("two Mints of the same claims gave the same token; want distinct jti")
	}
	noTools := baseClaims()
	noTools.Tools = nil
	got, err = iss.Verify(mustMint(t, iss, noTools))
	if err != nil || got.Tools == nil || len(got.Tools) != 0 {
		t.Errorf("Verify(Mint(no tools)) = %+v, %v; want Tools empty and non-nil", got, err)
	}
}

func TestMintRefuses(t *testing.T) {
	t.Parallel()
	f := newTokenFixture(t)
	iss := issuerAt(t, f.keys, jwtT0)
	edit := func(fn func(*Claims)) Claims { c := baseClaims(); fn(&c); return c }
	tests := []struct {
		name   string
		claims Claims
	}{
		{"missing agent", edit(func(c *Claims) { c.Agent = "" })},
		{"missing task", edit(func(c *Claims) { c.Task = "" })},
		{"missing expiry", edit(func(c *Claims) { c.Expiry = time.Time{} })},
		{"zero lifetime", edit(func(c *Claims) { c.Expiry = jwtT0 })},
		{"negative lifetime", edit(func(c *Claims) { c.Expiry = jwtT0.Add(-time.Minute) })},
		{"lifetime over max", edit(func(c *Claims) { c.Expiry = jwtT0.Add(time.Hour + time.Second) })},
		{"lifetime of centuries", edit(func(c *Claims) { c.Expiry = jwtT0.AddDate(500, 0, 0) })},
		{"another issuer", edit(func(c *Claims) { c.Issuer = "https://evil.example" })},
		{"chain not ending with agent", edit(func(c *Claims) { c.Chain = []string{"a1", "a2"}; c.Depth = 1 })},
		{"depth not matching chain", edit(func(c *Claims) { c.Chain = []string{"a1", "mail-assistant"} })},
		{"depth without chain", edit(func(c *Claims) { c.Depth = 1 })},
		{"cycle in chain", edit(func(c *Claims) { c.Chain = []string{"mail-assistant", "a1", "mail-assistant"}; c.Depth = 2 })},
		{"subject not the user", edit(func(c *Claims) { c.User = "alice"; c.Subject = "bob" })},
		{"subject not the first agent", edit(func(c *Claims) { c.Subject = "someone" })},
		{"groups without user", edit(func(c *Claims) { c.UserGroups = []string{"admins"} })},
		{"negative max calls", edit(func(c *Claims) { c.MaxCalls = -1 })},
		{"too large", edit(func(c *Claims) { c.Tools = []string{strings.Repeat("t", maxJWTBytes)} })},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if raw, err := iss.Mint(tt.claims); err == nil {
				t.Errorf("Mint(%+v) = %.20q..., want error", tt.claims, raw)
			}
		})
	}
}

func TestNewIssuerValidates(t *testing.T) {
	t.Parallel()
	keys := func() *KeySet { return nil }
	tests := []struct {
		name string
		o    IssuerOptions
		want []string // substrings of the error; nil for success
	}{
		{"ok", IssuerOptions{Issuer: "i", Audience: "a", Keys: keys}, nil},
		{"everything missing", IssuerOptions{}, []string{"issuer is required", "audience is required", "keys is required"}},
		{"leeway too large", IssuerOptions{Issuer: "i", Audience: "a", Keys: keys, Leeway: 6 * time.Minute}, []string{"leeway"}},
		{"negative leeway", IssuerOptions{Issuer: "i", Audience: "a", Keys: keys, Leeway: -time.Second}, []string{"leeway"}},
		{"negative max ttl", IssuerOptions{Issuer: "i", Audience: "a", Keys: keys, MaxTTL: -time.Second}, []string{"max ttl"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := NewIssuer(tt.o)
			if (err == nil) != (tt.want == nil) {
				t.Fatalf("NewIssuer(%+v) error = %v, want error containing %q", tt.o, err, tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("NewIssuer(%+v) error = %q, want it to contain %q", tt.o, err, w)
				}
			}
		})
	}
}

func TestVerifyNoKeys(t *testing.T) {
	t.Parallel()
	f := newTokenFixture(t)
	raw := mustMint(t, issuerAt(t, f.keys, jwtT0), baseClaims())
	iss, err := NewIssuer(IssuerOptions{Issuer: testIssuerURL, Audience: testAudience, Keys: func() *KeySet { return nil }, Now: func() time.Time { return jwtT0 }})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := iss.Verify(raw); reasonOf(err) != ReasonKeysUnavailable {
		t.Errorf("Verify with no key set = %v, want reason %q", err, ReasonKeysUnavailable)
	}
	if _, err := iss.Mint(baseClaims()); err == nil {
		t.Error("Mint with no key set succeeded, want error")
	}
}

// fuzzIssuer is an issuer over a key derived from a fixed seed, and tokens it minted with
// fixed claims: the same in every fuzzing process, since Ed25519 signatures are
// deterministic.
func fuzzIssuer(tb testing.TB) (*Issuer, map[string]bool) {
	tb.Helper()
	priv := ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize))
	ks, err := NewKeySet([]SigningKey{{ID: keyID(priv.Public().(ed25519.PublicKey)), Private: priv, Created: jwtT0}}, time.Hour)
	if err != nil {
		tb.Fatal(err)
	}
	iss := issuerAt(tb, ks, jwtT0)
	minted := map[string]bool{}
	for i, c := range []Claims{
		baseClaims(),
		{Agent: "a2", Chain: []string{"a1", "a2"}, Depth: 1, User: "alice", UserGroups: []string{"g"}, Task: "t", Tools: []string{"x"}, MaxCalls: 3, Parent: "p", Expiry: jwtT0.Add(time.Minute)},
	} {
		c.ID = "fuzz-jti-" + string(rune('a'+i))
		c.IssuedAt = jwtT0
		minted[mustMint(tb, iss, c)] = true
	}
	return iss, minted
}

func FuzzVerify(f *testing.F) {
	iss, minted := fuzzIssuer(f)
	for raw := range minted {
		f.Add(raw)
		f.Add(raw + ".")
		f.Add(raw[:len(raw)-1])
		p := strings.Split(raw, ".")
		f.Add(p[0] + "." + p[1] + ".")
		f.Add(b64.EncodeToString([]byte(`{"alg":"none"}`)) + "." + p[1] + ".")
	}
	f.Add("")
	f.Add("..")
	f.Add("!!!.@@@.###")
	f.Add(strings.Repeat("a", maxJWTBytes+1))
	f.Fuzz(func(t *testing.T, raw string) {
		c, err := iss.Verify(raw)
		if err == nil && !minted[raw] {
			t.Fatalf("Verify(%q) = %+v, want error: not a token the test minted", raw, c)
		}
		if err != nil && reasonOf(err) == "" {
			t.Fatalf("Verify(%q) error %v is not a *TokenError", raw, err)
		}
		if err != nil && strings.Contains(err.Error(), raw) && len(raw) > 8 {
			t.Fatalf("Verify error %q contains the token", err)
		}
	})
}

// benchClaims are a typical access token: on behalf of a user, delegated once.
func benchClaims() Claims {
	return Claims{
		User: "alice@example.com", UserGroups: []string{"support", "eu-staff"},
		Agent: "research-helper", Chain: []string{"mail-assistant", "research-helper"}, Depth: 1, Parent: "Zm9vYmFyYmF6cXV4cXV1eA",
		Task: "01JQ0XKZ5V3M8R7Y2W9T4B6N1C", Tools: []string{"mail.search", "mail.read", "docs.search", "calendar.list"},
		MaxCalls: 50, Expiry: jwtT0.Add(10 * time.Minute),
	}
}

// BenchmarkVerify: "cached" is the same token presented again, as an agent does on every
// call; "full" is a token's first presentation (the Ed25519 verification dominates).
func BenchmarkVerify(b *testing.B) {
	f := newTokenFixture(b)
	iss := issuerAt(b, f.keys, jwtT0)
	raw := mustMint(b, iss, benchClaims())
	b.Run("cached", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := iss.Verify(raw); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("full", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := iss.verify(raw, jwtT0); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkMint(b *testing.B) {
	f := newTokenFixture(b)
	iss := issuerAt(b, f.keys, jwtT0)
	c := benchClaims()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := iss.Mint(c); err != nil {
			b.Fatal(err)
		}
	}
}

// TestVerifyAllocs pins Verify's allocations for the benchmark's typical token: a full
// verification (53 at the time of writing: JSON decoding of the claims; the crypto
// allocates nothing) and a repeated one, which allocates nothing.
func TestVerifyAllocs(t *testing.T) {
	f := newTokenFixture(t)
	iss := issuerAt(t, f.keys, jwtT0)
	raw := mustMint(t, iss, benchClaims())
	const budget = 60
	if n := testing.AllocsPerRun(50, func() {
		if _, err := iss.verify(raw, jwtT0); err != nil {
			t.Fatal(err)
		}
	}); n > budget {
		t.Errorf("full verification allocates %v times per call, want at most %d", n, budget)
	}
	if n := testing.AllocsPerRun(50, func() {
		if _, err := iss.Verify(raw); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("repeated Verify allocates %v times per call, want 0", n)
	}
}

// TestVerifyCacheExpires: a token remembered as verified is refused once it expires, and a
// different token with the same claims but another signature is verified on its own.
func TestVerifyCacheExpires(t *testing.T) {
	f := newTokenFixture(t)
	now := jwtT0
	iss, err := NewIssuer(IssuerOptions{Issuer: testIssuerURL, Audience: testAudience, Keys: func() *KeySet { return f.keys }, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	raw := mustMint(t, iss, baseClaims())
	if _, err := iss.Verify(raw); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if _, err := iss.Verify(raw); err != nil {
		t.Fatalf("Verify again: %v", err)
	}
	forged := raw[:strings.LastIndex(raw, ".")+1] + base64.RawURLEncoding.EncodeToString(make([]byte, 64))
	if _, err := iss.Verify(forged); err == nil {
		t.Errorf("a token with a forged signature verified after the real one was cached")
	}
	now = jwtT0.Add(10*time.Minute + 31*time.Second) // past exp and the default 30s leeway
	var te *TokenError
	if _, err := iss.Verify(raw); !errors.As(err, &te) || te.Reason != ReasonExpired {
		t.Errorf("Verify after expiry = %v, want %s", err, ReasonExpired)
	}
}
