package identity

import (
	"crypto/ed25519"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/go-cmp/cmp"
)

const receiptAud = "billing"

func receiptsAt(tb testing.TB, keys *KeySet, at time.Time) *Receipts {
	tb.Helper()
	r, err := NewReceipts(ReceiptOptions{Issuer: testIssuerURL, Keys: func() *KeySet { return keys }, Now: func() time.Time { return at }})
	if err != nil {
		tb.Fatalf("NewReceipts: %v", err)
	}
	return r
}

func fullReceiptClaims() ReceiptClaims {
	return ReceiptClaims{
		Audience: receiptAud, Agent: "mail-assistant", User: "alice", Tool: "billing.refund",
		Task: "task-1", RequestID: "req-7", PolicyVersion: "v42", ArgsHash: "sha256:abcd",
		Rules: []string{"allow-refunds", "small-amounts"}, Chain: []string{"planner", "mail-assistant"},
		TTL: 30 * time.Second,
	}
}

// wireReceipt is a valid receipt payload at jwtT0, for crafted tokens.
func wireReceipt() map[string]any {
	return map[string]any{
		"iss": testIssuerURL, "sub": "alice", "aud": []string{receiptAud},
		"iat": jwtT0.Unix(), "nbf": jwtT0.Unix(), "exp": jwtT0.Add(30 * time.Second).Unix(),
		"jti": "jti-crafted", "agent": "mail-assistant", "tool": "billing.refund", "task": "task-1",
		"request_id": "r", "policy_version": "v", "rules": []string{}, "args_hash": "", "chain": []string{},
	}
}

func TestReceiptMintVerify(t *testing.T) {
	t.Parallel()
	f := newTokenFixture(t)
	r := receiptsAt(t, f.keys, jwtT0)
	raw, err := r.Mint(fullReceiptClaims())
	if err != nil {
		t.Fatalf("Mint: %v", err)
	}
	header, claims := jwtParts(t, raw)
	if header["typ"] != TypReceipt || header["alg"] != "EdDSA" || header["kid"] != f.active.ID {
		t.Errorf("header = %v, want typ %s, alg EdDSA, kid %s", header, TypReceipt, f.active.ID)
	}
	if claims["sub"] != "alice" || claims["exp"] != float64(jwtT0.Unix()+30) || claims["iat"] != float64(jwtT0.Unix()) {
		t.Errorf("claims = %v, want sub alice, iat %d, exp iat+30", claims, jwtT0.Unix())
	}
	for _, k := range []string{"agent", "tool", "task", "request_id", "policy_version", "rules", "args_hash", "chain", "jti", "nbf"} {
		if _, ok := claims[k]; !ok {
			t.Errorf("claims lack %q: %v", k, claims)
		}
	}
	// Within the leeway after exp it still verifies.
	got, err := VerifyReceipt(f.keys, raw, testIssuerURL, receiptAud, jwtT0.Add(34*time.Second))
	if err != nil {
		t.Fatalf("VerifyReceipt: %v", err)
	}
	want := fullReceiptClaims()
	want.Subject = "alice"
	want.ID = claims["jti"].(string)
	want.IssuedAt = jwtT0
	if diff := cmp.Diff(&want, got); diff != "" {
		t.Errorf("VerifyReceipt claims (-want +got):\n%s", diff)
	}

	// A second receipt for the same call has another jti.
	raw2, err := r.Mint(fullReceiptClaims())
	if err != nil {
		t.Fatal(err)
	}
	if _, c2 := jwtParts(t, raw2); c2["jti"] == claims["jti"] {
		t.Errorf("two receipts share jti %v", c2["jti"])
	}
}

func TestReceiptSubject(t *testing.T) {
	t.Parallel()
	f := newTokenFixture(t)
	r := receiptsAt(t, f.keys, jwtT0)
	for _, tc := range []struct {
		name        string
		agent, user string
		want        string
	}{
		{"user", "a1", "alice", "alice"},
		{"agent without user", "a1", "", "a1"},
		{"session set-up: neither", "", "", testIssuerURL},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw, err := r.Mint(ReceiptClaims{Audience: receiptAud, Agent: tc.agent, User: tc.user, TTL: time.Second})
			if err != nil {
				t.Fatalf("Mint: %v", err)
			}
			c, err := VerifyReceipt(f.keys, raw, testIssuerURL, receiptAud, jwtT0)
			if err != nil {
				t.Fatalf("VerifyReceipt: %v", err)
			}
			if c.Subject != tc.want || c.Agent != tc.agent || c.User != tc.user || c.TTL != time.Second {
				t.Errorf("claims = %+v, want sub %q agent %q user %q ttl 1s", c, tc.want, tc.agent, tc.user)
			}
		})
	}
}

func TestReceiptMintRefuses(t *testing.T) {
	t.Parallel()
	f := newTokenFixture(t)
	r := receiptsAt(t, f.keys, jwtT0)
	for _, tc := range []struct {
		name string
		edit func(*ReceiptClaims)
		want string
	}{
		{"ttl zero", func(c *ReceiptClaims) { c.TTL = 0 }, "ttl 0s is not between 1s and 5m0s"},
		{"ttl below 1s", func(c *ReceiptClaims) { c.TTL = 500 * time.Millisecond }, "ttl 500ms"},
		{"ttl above 5m", func(c *ReceiptClaims) { c.TTL = 5*time.Minute + time.Second }, "ttl 5m1s"},
		{"ttl negative", func(c *ReceiptClaims) { c.TTL = -time.Second }, "ttl -1s"},
		{"no audience", func(c *ReceiptClaims) { c.Audience = "" }, "audience is required"},
		{"foreign subject", func(c *ReceiptClaims) { c.Subject = "mallory" }, "subject is not the user"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := fullReceiptClaims()
			tc.edit(&c)
			raw, err := r.Mint(c)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Mint = %q, %v; want error containing %q", raw, err, tc.want)
			}
		})
	}
	t.Run("all problems at once", func(t *testing.T) {
		_, err := r.Mint(ReceiptClaims{TTL: time.Hour})
		if err == nil || !strings.Contains(err.Error(), "audience") || !strings.Contains(err.Error(), "ttl 1h0m0s") {
			t.Errorf("Mint = %v, want both audience and ttl named", err)
		}
	})
	t.Run("no keys", func(t *testing.T) {
		r, err := NewReceipts(ReceiptOptions{Issuer: testIssuerURL, Keys: func() *KeySet { return nil }})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := r.Mint(fullReceiptClaims()); err == nil {
			t.Error("Mint without keys succeeded")
		}
	})
}

func TestNewReceiptsValidates(t *testing.T) {
	t.Parallel()
	_, err := NewReceipts(ReceiptOptions{})
	if err == nil || !strings.Contains(err.Error(), "issuer is required") || !strings.Contains(err.Error(), "keys is required") {
		t.Errorf("NewReceipts({}) = %v, want issuer and keys named", err)
	}
}

func TestVerifyReceiptRefuses(t *testing.T) {
	t.Parallel()
	f := newTokenFixture(t)
	r := receiptsAt(t, f.keys, jwtT0)
	good, err := r.Mint(ReceiptClaims{Audience: receiptAud, Agent: "a1", TTL: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	_, otherKey, _ := ed25519.GenerateKey(nil)
	hdr := func(typ, kid string) map[string]any {
		return map[string]any{"alg": "EdDSA", "typ": typ, "kid": kid}
	}
	signed := func(header map[string]any, claims map[string]any) string {
		return signJWT(t, header, claims, jwt.SigningMethodEdDSA, f.active.Private)
	}
	subject, err := r.MintSubject("alice", "a1", receiptAud, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	access := mustMint(t, issuerAt(t, f.keys, jwtT0), Claims{Agent: "a1", Task: "t", Audience: []string{receiptAud}, Expiry: jwtT0.Add(time.Minute)})
	parts := strings.Split(good, ".")
	sig := []byte(parts[2])
	// Another base64url character: still well-formed, a different signature. (Flipping a
	// bit could leave the alphabet, e.g. 'A' to '@', and test the parser instead.)
	if sig[3] == 'A' {
		sig[3] = 'B'
	} else {
		sig[3] = 'A'
	}
	for _, tc := range []struct {
		name   string
		raw    string
		keys   *KeySet
		at     time.Time
		aud    string
		reason string
	}{
		{"tampered signature", parts[0] + "." + parts[1] + "." + string(sig), nil, jwtT0, receiptAud, ReasonBadSignature},
		{"forged: signed by another key with the active kid", signJWT(t, hdr(TypReceipt, f.active.ID), wireReceipt(), jwt.SigningMethodEdDSA, otherKey), nil, jwtT0, receiptAud, ReasonBadSignature},
		{"wrong audience", good, nil, jwtT0, "crm", ReasonBadAudience},
		{"empty audience", good, nil, jwtT0, "", ReasonBadAudience},
		{"expired", good, nil, jwtT0.Add(36 * time.Second), receiptAud, ReasonExpired},
		{"not yet valid", good, nil, jwtT0.Add(-6 * time.Second), receiptAud, ReasonNotYetValid},
		{"access token typ", access, nil, jwtT0, receiptAud, ReasonMalformed},
		{"subject token typ", subject, nil, jwtT0, receiptAud, ReasonMalformed},
		{"no typ", signed(map[string]any{"alg": "EdDSA", "kid": f.active.ID}, wireReceipt()), nil, jwtT0, receiptAud, ReasonMalformed},
		{"typ JWT", signed(hdr("JWT", f.active.ID), wireReceipt()), nil, jwtT0, receiptAud, ReasonMalformed},
		{"unknown kid", signed(hdr(TypReceipt, "nope"), wireReceipt()), nil, jwtT0, receiptAud, ReasonUnknownKid},
		{"no kid", signed(hdr(TypReceipt, ""), wireReceipt()), nil, jwtT0, receiptAud, ReasonUnknownKid},
		{"retired key past its window", signJWT(t, hdr(TypReceipt, f.retired.ID), wireReceipt(), jwt.SigningMethodEdDSA, f.retired.Private), nil, jwtT0.Add(51 * time.Minute), receiptAud, ReasonUnknownKid},
		{"alg none", signJWT(t, map[string]any{"alg": "none", "typ": TypReceipt, "kid": f.active.ID}, wireReceipt(), jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType), nil, jwtT0, receiptAud, ReasonBadAlg},
		{"alg HS256 with the public key", signJWT(t, map[string]any{"alg": "HS256", "typ": TypReceipt, "kid": f.active.ID}, wireReceipt(), jwt.SigningMethodHS256, []byte(f.active.Private.Public().(ed25519.PublicKey))), nil, jwtT0, receiptAud, ReasonBadAlg},
		{"wrong issuer", signed(hdr(TypReceipt, f.active.ID), with(wireReceipt(), "iss", "https://evil.example")), nil, jwtT0, receiptAud, ReasonBadIssuer},
		{"lifetime over 5m", signed(hdr(TypReceipt, f.active.ID), with(wireReceipt(), "exp", jwtT0.Add(301*time.Second).Unix())), nil, jwtT0, receiptAud, ReasonBadLifetime},
		{"lifetime zero", signed(hdr(TypReceipt, f.active.ID), with(wireReceipt(), "exp", jwtT0.Unix())), nil, jwtT0.Add(-time.Second), receiptAud, ReasonBadLifetime},
		{"no exp", signed(hdr(TypReceipt, f.active.ID), without(wireReceipt(), "exp")), nil, jwtT0, receiptAud, ReasonMissingClaim},
		{"no iat", signed(hdr(TypReceipt, f.active.ID), without(wireReceipt(), "iat")), nil, jwtT0, receiptAud, ReasonMissingClaim},
		{"no jti", signed(hdr(TypReceipt, f.active.ID), without(wireReceipt(), "jti")), nil, jwtT0, receiptAud, ReasonMissingClaim},
		{"no sub", signed(hdr(TypReceipt, f.active.ID), without(wireReceipt(), "sub")), nil, jwtT0, receiptAud, ReasonMissingClaim},
		{"rules not an array", signed(hdr(TypReceipt, f.active.ID), with(wireReceipt(), "rules", "allow")), nil, jwtT0, receiptAud, ReasonMalformed},
		{"crit header", signed(map[string]any{"alg": "EdDSA", "typ": TypReceipt, "kid": f.active.ID, "crit": []string{"x"}}, wireReceipt()), nil, jwtT0, receiptAud, ReasonMalformed},
		{"oversized", strings.Repeat("a", 9000), nil, jwtT0, receiptAud, ReasonMalformed},
		{"garbage", "not.a.jwt", nil, jwtT0, receiptAud, ReasonMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			keys := tc.keys
			if keys == nil {
				keys = f.keys
			}
			c, err := VerifyReceipt(keys, tc.raw, testIssuerURL, tc.aud, tc.at)
			if got := reasonOf(err); got != tc.reason {
				t.Fatalf("VerifyReceipt = %+v, %v (reason %q), want reason %q", c, err, got, tc.reason)
			}
		})
	}
	t.Run("nil keys", func(t *testing.T) {
		if _, err := VerifyReceipt(nil, good, testIssuerURL, receiptAud, jwtT0); reasonOf(err) != ReasonKeysUnavailable {
			t.Errorf("VerifyReceipt(nil keys) = %v, want %s", err, ReasonKeysUnavailable)
		}
	})
	t.Run("issuer must be given", func(t *testing.T) {
		if _, err := VerifyReceipt(f.keys, good, "", receiptAud, jwtT0); reasonOf(err) != ReasonBadIssuer {
			t.Errorf("VerifyReceipt(issuer \"\") = %v, want %s", err, ReasonBadIssuer)
		}
	})
}

// TestReceiptIsNotAnAccessToken checks both ways that a receipt and an access token for the
// same issuer, audience and key cannot stand in for each other: only typ tells them apart.
func TestReceiptIsNotAnAccessToken(t *testing.T) {
	t.Parallel()
	f := newTokenFixture(t)
	iss := issuerAt(t, f.keys, jwtT0)
	r := receiptsAt(t, f.keys, jwtT0)
	receipt, err := r.Mint(ReceiptClaims{Audience: testAudience, Agent: "mail-assistant", Task: "task-1", TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if c, err := iss.Verify(receipt); err == nil {
		t.Errorf("Issuer.Verify(receipt) = %+v, want refused", c)
	}
	subject, err := r.MintSubject("alice", "mail-assistant", testAudience, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if c, err := iss.Verify(subject); err == nil {
		t.Errorf("Issuer.Verify(subject token) = %+v, want refused", c)
	}
	access := mustMint(t, iss, baseClaims())
	if c, err := VerifyReceipt(f.keys, access, testIssuerURL, testAudience, jwtT0); reasonOf(err) != ReasonMalformed {
		t.Errorf("VerifyReceipt(access token) = %+v, %v; want %s", c, err, ReasonMalformed)
	}
	if u, a, err := VerifySubject(f.keys, access, testIssuerURL, testAudience, jwtT0); reasonOf(err) != ReasonMalformed {
		t.Errorf("VerifySubject(access token) = %q, %q, %v; want %s", u, a, err, ReasonMalformed)
	}
}

func TestSubjectToken(t *testing.T) {
	t.Parallel()
	f := newTokenFixture(t)
	r := receiptsAt(t, f.keys, jwtT0)
	const aud = "https://idp.example/token"
	raw, err := r.MintSubject("alice", "mail-assistant", aud, 60*time.Second)
	if err != nil {
		t.Fatalf("MintSubject: %v", err)
	}
	header, claims := jwtParts(t, raw)
	if header["typ"] != TypSubject {
		t.Errorf("typ = %v, want %s", header["typ"], TypSubject)
	}
	if act, _ := claims["act"].(map[string]any); act["sub"] != "mail-assistant" || claims["sub"] != "alice" {
		t.Errorf("claims = %v, want sub alice and act.sub mail-assistant", claims)
	}
	user, agent, err := VerifySubject(f.keys, raw, testIssuerURL, aud, jwtT0.Add(59*time.Second))
	if err != nil || user != "alice" || agent != "mail-assistant" {
		t.Errorf("VerifySubject = %q, %q, %v; want alice, mail-assistant", user, agent, err)
	}
	if _, _, err := VerifySubject(f.keys, raw, testIssuerURL, aud, jwtT0.Add(66*time.Second)); reasonOf(err) != ReasonExpired {
		t.Errorf("VerifySubject after exp = %v, want %s", err, ReasonExpired)
	}
	if _, _, err := VerifySubject(f.keys, raw, testIssuerURL, "other", jwtT0); reasonOf(err) != ReasonBadAudience {
		t.Errorf("VerifySubject wrong audience = %v, want %s", err, ReasonBadAudience)
	}
	if c, err := VerifyReceipt(f.keys, raw, testIssuerURL, aud, jwtT0); err == nil {
		t.Errorf("VerifyReceipt(subject token) = %+v, want refused", c)
	}
	receipt, err := r.Mint(ReceiptClaims{Audience: aud, User: "alice", Agent: "mail-assistant", TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := VerifySubject(f.keys, receipt, testIssuerURL, aud, jwtT0); reasonOf(err) != ReasonMalformed {
		t.Errorf("VerifySubject(receipt) = %v, want %s", err, ReasonMalformed)
	}
	chained := signJWT(t, map[string]any{"alg": "EdDSA", "typ": TypSubject, "kid": f.active.ID}, map[string]any{
		"iss": testIssuerURL, "sub": "alice", "aud": aud, "iat": jwtT0.Unix(), "exp": jwtT0.Unix() + 60, "jti": "j",
		"act": map[string]any{"sub": "a2", "act": map[string]any{"sub": "a1"}},
	}, jwt.SigningMethodEdDSA, f.active.Private)
	if _, _, err := VerifySubject(f.keys, chained, testIssuerURL, aud, jwtT0); reasonOf(err) != ReasonMalformed {
		t.Errorf("VerifySubject(nested act) = %v, want %s", err, ReasonMalformed)
	}
	for _, tc := range []struct {
		user, aud string
		ttl       time.Duration
		want      string
	}{
		{"", aud, time.Minute, "user is required"},
		{"alice", "", time.Minute, "audience is required"},
		{"alice", aud, 10 * time.Minute, "ttl 10m0s"},
	} {
		if _, err := r.MintSubject(tc.user, "a", tc.aud, tc.ttl); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("MintSubject(%q, %q, %s) = %v, want error containing %q", tc.user, tc.aud, tc.ttl, err, tc.want)
		}
	}
}

func FuzzVerifyReceipt(f *testing.F) {
	// A fixed key: the same seeds in every fuzzing process.
	seed := make([]byte, ed25519.SeedSize)
	seed[0] = 7
	key := SigningKey{ID: "k1", Private: ed25519.NewKeyFromSeed(seed), Created: jwtT0.Add(-time.Hour)}
	keys, err := NewKeySet([]SigningKey{key}, time.Hour)
	if err != nil {
		f.Fatal(err)
	}
	// Signed by hand, not by Mint, whose jti is random: every fuzzing process must hold
	// the same seeds.
	minted := map[string]bool{}
	header := map[string]any{"alg": "EdDSA", "typ": TypReceipt, "kid": "k1"}
	for _, c := range []map[string]any{wireReceipt(), with(with(wireReceipt(), "sub", "a1"), "exp", jwtT0.Unix()+1)} {
		raw := signJWT(f, header, c, jwt.SigningMethodEdDSA, key.Private)
		if _, err := VerifyReceipt(keys, raw, testIssuerURL, receiptAud, jwtT0); err != nil {
			f.Fatalf("seed does not verify: %v", err)
		}
		minted[raw] = true
		f.Add(raw)
		f.Add(raw[:len(raw)-2])
		p := strings.Split(raw, ".")
		f.Add(b64.EncodeToString([]byte(`{"alg":"none","typ":"chaperone-receipt+jwt"}`)) + "." + p[1] + ".")
	}
	f.Add("")
	f.Add("a.b.c")
	f.Fuzz(func(t *testing.T, raw string) {
		c, err := VerifyReceipt(keys, raw, testIssuerURL, receiptAud, jwtT0)
		if err == nil && !minted[raw] {
			t.Fatalf("VerifyReceipt(%q) = %+v, want error: not a receipt the test signed", raw, c)
		}
		if err != nil && reasonOf(err) == "" {
			t.Fatalf("VerifyReceipt(%q) error %v is not a *TokenError", raw, err)
		}
		if err == nil && (c.TTL < MinReceiptTTL || c.TTL > MaxReceiptTTL) {
			t.Fatalf("VerifyReceipt(%q) TTL %s out of bounds", raw, c.TTL)
		}
	})
}
