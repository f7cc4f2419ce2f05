package identity

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/go-cmp/cmp"

	"github.com/chaperone-dev/chaperone/internal/testclock"
)

// testIdP is a real OIDC issuer for tests: it serves a JWKS over HTTP and signs users'
// tokens with RSA (RS256) and ECDSA P-256 (ES256) keys.
type testIdP struct {
	srv     *httptest.Server
	rsa     *rsa.PrivateKey
	ec      *ecdsa.PrivateKey
	fetches atomic.Int32

	mu sync.Mutex
	// jwks is the document served; guarded by mu.
	jwks []byte
}

func newTestIdP(tb testing.TB, rsaKey *rsa.PrivateKey) *testIdP {
	tb.Helper()
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	idp := &testIdP{rsa: rsaKey, ec: ec}
	idp.serve(tb, map[string]any{"rsa-1": &rsaKey.PublicKey, "ec-1": &ec.PublicKey})
	idp.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		idp.fetches.Add(1)
		idp.mu.Lock()
		b := idp.jwks
		idp.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(b)
	}))
	tb.Cleanup(idp.srv.Close)
	return idp
}

// serve sets the JWKS the issuer publishes: kid to public key.
func (idp *testIdP) serve(tb testing.TB, keys map[string]any) {
	tb.Helper()
	var list []map[string]string
	for kid, k := range keys {
		switch k := k.(type) {
		case *rsa.PublicKey:
			list = append(list, map[string]string{"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256",
				"n": b64.EncodeToString(k.N.Bytes()), "e": b64.EncodeToString(big.NewInt(int64(k.E)).Bytes())})
		case *ecdsa.PublicKey:
			b, err := k.Bytes()
			if err != nil {
				tb.Fatal(err)
			}
			list = append(list, map[string]string{"kty": "EC", "kid": kid, "crv": "P-256",
				"x": b64.EncodeToString(b[1:33]), "y": b64.EncodeToString(b[33:])})
		default:
			tb.Fatalf("unsupported key %T", k)
		}
	}
	b, err := json.Marshal(map[string]any{"keys": list})
	if err != nil {
		tb.Fatal(err)
	}
	idp.mu.Lock()
	idp.jwks = b
	idp.mu.Unlock()
}

func (idp *testIdP) issuer() string { return idp.srv.URL }

// userClaims are a valid user token's claims at jwtT0.
func (idp *testIdP) userClaims() map[string]any {
	return map[string]any{
		"iss": idp.issuer(), "sub": "user-123", "aud": "chaperone-client", "email": "alice@example.com",
		"groups": []string{"support", "eu"}, "iat": jwtT0.Unix(), "exp": jwtT0.Add(time.Hour).Unix(),
	}
}

func (idp *testIdP) signRS(tb testing.TB, kid string, claims map[string]any) string {
	tb.Helper()
	return signJWT(tb, map[string]any{"alg": "RS256", "kid": kid, "typ": "JWT"}, claims, jwt.SigningMethodRS256, idp.rsa)
}

func (idp *testIdP) signES(tb testing.TB, key *ecdsa.PrivateKey, kid string, claims map[string]any) string {
	tb.Helper()
	return signJWT(tb, map[string]any{"alg": "ES256", "kid": kid}, claims, jwt.SigningMethodES256, key)
}

func newTestOIDCVerifier(tb testing.TB, jwksURL, issuer string, now func() time.Time) *OIDCVerifier {
	tb.Helper()
	v, err := NewOIDCVerifier(OIDCConfig{Issuer: issuer, JWKSURL: jwksURL, Audience: "chaperone-client", Now: now})
	if err != nil {
		tb.Fatalf("NewOIDCVerifier: %v", err)
	}
	return v
}

// testRSAKey is shared by the OIDC tests: 2048-bit generation is slow.
var testRSAKey = sync.OnceValue(func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
})

func TestOIDCVerify(t *testing.T) {
	t.Parallel()
	idp := newTestIdP(t, testRSAKey())
	pemPub, err := x509.MarshalPKIXPublicKey(&idp.rsa.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	rsaPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pemPub})
	strangerEC, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	c := idp.userClaims
	tests := []struct {
		name       string
		raw        string
		at         time.Time
		want       *UserIdentity
		wantReason string
	}{
		{name: "valid RS256", raw: idp.signRS(t, "rsa-1", c()),
			want: &UserIdentity{Subject: "user-123", Email: "alice@example.com", Groups: []string{"support", "eu"}, Issuer: idp.issuer()}},
		{name: "valid ES256", raw: idp.signES(t, idp.ec, "ec-1", c()),
			want: &UserIdentity{Subject: "user-123", Email: "alice@example.com", Groups: []string{"support", "eu"}, Issuer: idp.issuer()}},
		{name: "groups as a single string", raw: idp.signRS(t, "rsa-1", with(c(), "groups", "admins")),
			want: &UserIdentity{Subject: "user-123", Email: "alice@example.com", Groups: []string{"admins"}, Issuer: idp.issuer()}},
		{name: "no groups or email", raw: idp.signRS(t, "rsa-1", without(without(c(), "groups"), "email")),
			want: &UserIdentity{Subject: "user-123", Issuer: idp.issuer()}},
		{name: "audience in an array", raw: idp.signRS(t, "rsa-1", with(c(), "aud", []string{"other", "chaperone-client"})),
			want: &UserIdentity{Subject: "user-123", Email: "alice@example.com", Groups: []string{"support", "eu"}, Issuer: idp.issuer()}},
		{name: "nonce returned", raw: idp.signRS(t, "rsa-1", with(c(), "nonce", "n-0S6_WzA2Mj")),
			want: &UserIdentity{Subject: "user-123", Email: "alice@example.com", Groups: []string{"support", "eu"}, Issuer: idp.issuer(), Nonce: "n-0S6_WzA2Mj"}},
		{name: "nonce of the wrong type", raw: idp.signRS(t, "rsa-1", with(c(), "nonce", 7)), wantReason: ReasonMalformed},
		{name: "nonce null", raw: idp.signRS(t, "rsa-1", with(c(), "nonce", nil)),
			want: &UserIdentity{Subject: "user-123", Email: "alice@example.com", Groups: []string{"support", "eu"}, Issuer: idp.issuer()}},
		{name: "email verified", raw: idp.signRS(t, "rsa-1", with(c(), "email_verified", true)),
			want: &UserIdentity{Subject: "user-123", Email: "alice@example.com", Groups: []string{"support", "eu"}, Issuer: idp.issuer(), EmailVerified: true}},
		{name: "email_verified as a string", raw: idp.signRS(t, "rsa-1", with(c(), "email_verified", "true")), wantReason: ReasonMalformed},
		{name: "groups of the wrong type", raw: idp.signRS(t, "rsa-1", with(c(), "groups", 7)), wantReason: ReasonMalformed},
		{name: "groups with a non-string", raw: idp.signRS(t, "rsa-1", with(c(), "groups", []any{"a", 1})), wantReason: ReasonMalformed},
		{name: "expired", raw: idp.signRS(t, "rsa-1", c()), at: jwtT0.Add(time.Hour + 30*time.Second), wantReason: ReasonExpired},
		{name: "not yet valid", raw: idp.signRS(t, "rsa-1", with(c(), "nbf", jwtT0.Add(time.Minute).Unix())), wantReason: ReasonNotYetValid},
		{name: "no exp", raw: idp.signRS(t, "rsa-1", without(c(), "exp")), wantReason: ReasonMissingClaim},
		{name: "no sub", raw: idp.signRS(t, "rsa-1", without(c(), "sub")), wantReason: ReasonMissingClaim},
		{name: "wrong audience", raw: idp.signRS(t, "rsa-1", with(c(), "aud", "another-client")), wantReason: ReasonBadAudience},
		{name: "wrong issuer", raw: idp.signRS(t, "rsa-1", with(c(), "iss", "https://evil.example")), wantReason: ReasonBadIssuer},
		{name: "unknown kid", raw: idp.signES(t, strangerEC, "ec-9", c()), wantReason: ReasonUnknownKid},
		{name: "known kid, another key", raw: idp.signES(t, strangerEC, "ec-1", c()), wantReason: ReasonBadSignature},
		{name: "alg none", raw: signJWT(t, map[string]any{"alg": "none", "kid": "rsa-1"}, c(), jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType), wantReason: ReasonBadAlg},
		{name: "HS256 keyed with the RSA public key", raw: signJWT(t, map[string]any{"alg": "HS256", "kid": "rsa-1"}, c(), jwt.SigningMethodHS256, rsaPEM), wantReason: ReasonBadAlg},
		{name: "HS256 keyed with the RSA modulus", raw: signJWT(t, map[string]any{"alg": "HS256", "kid": "rsa-1"}, c(), jwt.SigningMethodHS256, idp.rsa.N.Bytes()), wantReason: ReasonBadAlg},
		{name: "ES256 header on the RSA key", raw: signJWT(t, map[string]any{"alg": "ES256", "kid": "rsa-1"}, c(), jwt.SigningMethodES256, strangerEC), wantReason: ReasonBadAlg},
		{name: "RS256 header on the EC key", raw: signJWT(t, map[string]any{"alg": "RS256", "kid": "ec-1"}, c(), jwt.SigningMethodRS256, idp.rsa), wantReason: ReasonBadAlg},
		{name: "PS256", raw: signJWT(t, map[string]any{"alg": "PS256", "kid": "rsa-1"}, c(), jwt.SigningMethodPS256, idp.rsa), wantReason: ReasonBadAlg},
		{name: "no kid", raw: signJWT(t, map[string]any{"alg": "RS256"}, c(), jwt.SigningMethodRS256, idp.rsa), wantReason: ReasonUnknownKid},
		{name: "tampered claims", raw: tamperPayload(t, idp.signRS(t, "rsa-1", c()), func(m map[string]any) { m["groups"] = []string{"admins"} }), wantReason: ReasonBadSignature},
		{name: "oversized", raw: idp.signRS(t, "rsa-1", with(c(), "pad", strings.Repeat("x", 16<<10))), wantReason: ReasonMalformed},
		{name: "garbage", raw: "not a token", wantReason: ReasonMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			at := tt.at
			if at.IsZero() {
				at = jwtT0
			}
			v := newTestOIDCVerifier(t, idp.srv.URL, idp.issuer(), func() time.Time { return at })
			got, err := v.Verify(t.Context(), tt.raw)
			if r := reasonOf(err); r != tt.wantReason {
				t.Fatalf("Verify(%s) = %v (reason %q), want reason %q", tt.name, err, r, tt.wantReason)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Verify(%s) mismatch (-want +got):\n%s", tt.name, diff)
			}
		})
	}
}

func TestOIDCKeyRotationAndRefreshLimit(t *testing.T) {
	t.Parallel()
	idp := newTestIdP(t, testRSAKey())
	clk := testclock.New(jwtT0)
	v := newTestOIDCVerifier(t, idp.srv.URL, idp.issuer(), clk.Now)
	ec2, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ec3, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	claims := idp.userClaims()
	claims["exp"] = jwtT0.Add(24 * time.Hour).Unix()
	tok1 := idp.signRS(t, "rsa-1", claims)
	tok2 := idp.signES(t, ec2, "ec-2", claims)
	tok3 := idp.signES(t, ec3, "ec-3", claims)

	steps := []struct {
		name        string
		advance     time.Duration
		serve       map[string]any // if set, the issuer publishes these keys first
		raw         string
		wantReason  string
		wantFetches int32
	}{
		{name: "first use fetches", raw: tok1, wantFetches: 1},
		{name: "cached", raw: tok1, wantFetches: 1},
		{name: "kid not yet published", raw: tok2, wantReason: ReasonUnknownKid, wantFetches: 1},
		{name: "issuer rotates; refetch within min refresh is refused", serve: map[string]any{"rsa-1": &idp.rsa.PublicKey, "ec-2": &ec2.PublicKey},
			advance: 30 * time.Second, raw: tok2, wantReason: ReasonUnknownKid, wantFetches: 1},
		{name: "after min refresh the new kid is fetched", advance: 30 * time.Second, raw: tok2, wantFetches: 2},
		{name: "old key still published", raw: tok1, wantFetches: 2},
		{name: "issuer rotates again; rate-limited", serve: map[string]any{"ec-3": &ec3.PublicKey},
			advance: 59 * time.Second, raw: tok3, wantReason: ReasonUnknownKid, wantFetches: 2},
		{name: "refetch drops the unpublished key", advance: time.Second, raw: tok3, wantFetches: 3},
		{name: "dropped key refused", raw: tok1, wantReason: ReasonUnknownKid, wantFetches: 3},
	}
	for _, s := range steps {
		if s.serve != nil {
			idp.serve(t, s.serve)
		}
		clk.Advance(s.advance)
		_, err := v.Verify(t.Context(), s.raw)
		if r := reasonOf(err); r != s.wantReason {
			t.Fatalf("step %q: Verify = %v (reason %q), want reason %q", s.name, err, r, s.wantReason)
		}
		if got := idp.fetches.Load(); got != s.wantFetches {
			t.Fatalf("step %q: %d JWKS fetches, want %d", s.name, got, s.wantFetches)
		}
	}
}

func TestOIDCConcurrentFirstUseFetchesOnce(t *testing.T) {
	t.Parallel()
	idp := newTestIdP(t, testRSAKey())
	v := newTestOIDCVerifier(t, idp.srv.URL, idp.issuer(), func() time.Time { return jwtT0 })
	raw := idp.signES(t, idp.ec, "ec-1", idp.userClaims())
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			if _, err := v.Verify(t.Context(), raw); err != nil {
				t.Errorf("concurrent Verify = %v, want success", err)
			}
		})
	}
	wg.Wait()
	if got := idp.fetches.Load(); got != 1 {
		t.Errorf("%d JWKS fetches for concurrent first use, want 1", got)
	}
}

func TestOIDCJWKSFailures(t *testing.T) {
	t.Parallel()
	idp := newTestIdP(t, testRSAKey())
	raw := idp.signRS(t, "rsa-1", idp.userClaims())

	down := httptest.NewServer(http.NotFoundHandler())
	downURL := down.URL
	down.Close()
	tests := []struct {
		name    string
		handler http.HandlerFunc // nil: the server is down
		wantErr string
	}{
		{name: "server down", wantErr: "fetch jwks"},
		{name: "error status", handler: func(w http.ResponseWriter, r *http.Request) { http.Error(w, "boom", http.StatusInternalServerError) }, wantErr: "status 500"},
		{name: "oversized response", handler: func(w http.ResponseWriter, r *http.Request) {
			_, _ = w.Write([]byte(`{"keys":[],"pad":"` + strings.Repeat("x", maxJWKSBytes) + `"}`))
		}, wantErr: "larger than"},
		{name: "redirect off https", handler: func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "http://idp.example/jwks", http.StatusFound)
		}, wantErr: "must use https"},
		{name: "not json", handler: func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("<html>")) }, wantErr: "not a JWK set"},
		{name: "no usable keys", handler: func(w http.ResponseWriter, r *http.Request) {
			_, _ = w.Write([]byte(`{"keys":[{"kty":"oct","kid":"rsa-1","k":"c2VjcmV0"},{"kty":"RSA","kid":"small","n":"AQAB","e":"AQAB"}]}`))
		}, wantErr: "no usable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			u := downURL
			if tt.handler != nil {
				srv := httptest.NewServer(tt.handler)
				t.Cleanup(srv.Close)
				u = srv.URL
			}
			v := newTestOIDCVerifier(t, u, idp.issuer(), func() time.Time { return jwtT0 })
			_, err := v.Verify(t.Context(), raw)
			if r := reasonOf(err); r != ReasonKeysUnavailable {
				t.Fatalf("Verify with JWKS %s = %v (reason %q), want reason %q", tt.name, err, r, ReasonKeysUnavailable)
			}
			if !strings.Contains(err.(*TokenError).Err.Error(), tt.wantErr) {
				t.Errorf("Verify with JWKS %s: detail %q, want it to contain %q", tt.name, err.(*TokenError).Err, tt.wantErr)
			}
			// A second try within MinRefresh does not hammer the issuer and still fails.
			if _, err := v.Verify(t.Context(), raw); reasonOf(err) != ReasonKeysUnavailable {
				t.Errorf("second Verify = %v, want reason %q", err, ReasonKeysUnavailable)
			}
		})
	}
}

func TestOIDCVerifyCanceled(t *testing.T) {
	t.Parallel()
	idp := newTestIdP(t, testRSAKey())
	v := newTestOIDCVerifier(t, idp.srv.URL, idp.issuer(), func() time.Time { return jwtT0 })
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := v.Verify(ctx, idp.signRS(t, "rsa-1", idp.userClaims())); reasonOf(err) != ReasonKeysUnavailable {
		t.Errorf("Verify with canceled context = %v, want reason %q", err, ReasonKeysUnavailable)
	}
}

func TestNewOIDCVerifierValidates(t *testing.T) {
	t.Parallel()
	ok := OIDCConfig{Issuer: "https://idp.example", JWKSURL: "https://idp.example/jwks", Audience: "client"}
	edit := func(fn func(*OIDCConfig)) OIDCConfig { c := ok; fn(&c); return c }
	tests := []struct {
		name string
		c    OIDCConfig
		want []string // substrings of the error; nil for success
	}{
		{"ok", ok, nil},
		{"http on loopback", edit(func(c *OIDCConfig) { c.JWKSURL = "http://127.0.0.1:8080/jwks"; c.Issuer = "http://localhost:8080" }), nil},
		{"http on ipv6 loopback", edit(func(c *OIDCConfig) { c.JWKSURL = "http://[::1]:8080/jwks" }), nil},
		{"http elsewhere", edit(func(c *OIDCConfig) { c.JWKSURL = "http://idp.example/jwks" }), []string{"jwks url", "must use https"}},
		{"loopback-looking hostname", edit(func(c *OIDCConfig) { c.JWKSURL = "http://127.0.0.1.evil.example/jwks" }), []string{"must use https"}},
		{"relative url", edit(func(c *OIDCConfig) { c.JWKSURL = "/jwks" }), []string{"jwks url"}},
		{"everything missing", OIDCConfig{}, []string{"issuer: is required", "jwks url: is required", "audience is required"}},
		{"leeway too large", edit(func(c *OIDCConfig) { c.Leeway = time.Hour }), []string{"leeway"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := NewOIDCVerifier(tt.c)
			if (err == nil) != (tt.want == nil) {
				t.Fatalf("NewOIDCVerifier(%+v) error = %v, want error containing %q", tt.c, err, tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("NewOIDCVerifier(%+v) error = %q, want it to contain %q", tt.c, err, w)
				}
			}
		})
	}
}
