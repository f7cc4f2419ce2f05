package oidc

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/chaperone-dev/chaperone/internal/console/oidc/oidctest"
	"github.com/chaperone-dev/chaperone/internal/identity"
	"github.com/chaperone-dev/chaperone/internal/testclock"
)

const (
	testRedirect     = "http://127.0.0.1:9/console/oidc/callback"
	testPublicID     = "console"
	testConfidential = "console-confidential"
	testSecret       = "s3cr:et/+%&=" // needs form-encoding in the Basic header
)

// newTestProvider starts a test IdP with a public and a confidential client and a user.
func newTestProvider(t *testing.T) *oidctest.Provider {
	t.Helper()
	p := oidctest.New(t)
	p.AddClient(testPublicID, "", testRedirect)
	p.AddClient(testConfidential, testSecret, testRedirect)
	p.SetUser("user-42", "alice@example.com", "ops", "eu")
	return p
}

func newTestClient(t *testing.T, c Config) *Client {
	t.Helper()
	if c.ClientID == "" {
		c.ClientID = testPublicID
	}
	if c.RedirectURL == "" {
		c.RedirectURL = testRedirect
	}
	cl, err := New(c)
	if err != nil {
		t.Fatalf("New(%+v): %v", c, err)
	}
	return cl
}

// signIn starts a sign-in and lets the test IdP answer it, as a browser would: it returns
// the code from the redirect back, and the nonce and verifier the sign-in started with.
func signIn(t *testing.T, c *Client) (code, nonce, verifier string) {
	t.Helper()
	state := mustRandom(t, NewState)
	nonce = mustRandom(t, NewState)
	verifier = mustRandom(t, NewVerifier)
	to, err := c.AuthCodeURL(t.Context(), state, nonce, verifier)
	if err != nil {
		t.Fatalf("AuthCodeURL: %v", err)
	}
	q := follow(t, to)
	if e := q.Get("error"); e != "" {
		t.Fatalf("authorize answered error %q: %s", e, q.Get("error_description"))
	}
	if got := q.Get("state"); got != state {
		t.Fatalf("authorize returned state %q, want %q", got, state)
	}
	return q.Get("code"), nonce, verifier
}

// follow GETs u without following the redirect and returns the query of the redirect.
func follow(t *testing.T, u string) url.Values {
	t.Helper()
	hc := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := hc.Get(u)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET %s: status %d (%s), want 302", u, resp.StatusCode, b)
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		t.Fatalf("GET %s: Location: %v", u, err)
	}
	if got := loc.Scheme + "://" + loc.Host + loc.Path; got != testRedirect {
		t.Fatalf("GET %s: redirected to %q, want %q", u, got, testRedirect)
	}
	return loc.Query()
}

func mustRandom(t *testing.T, f func() (string, error)) string {
	t.Helper()
	s, err := f()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func tokenReason(err error) string {
	var te *identity.TokenError
	if errors.As(err, &te) {
		return te.Reason
	}
	return ""
}

func providerCode(err error) string {
	var pe *ProviderError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

// roundTripFunc is an http.RoundTripper made of a function.
type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func isDiscovery(r *http.Request) bool {
	return strings.HasSuffix(r.URL.Path, "/.well-known/openid-configuration")
}

func TestSignIn(t *testing.T) {
	t.Parallel()
	p := newTestProvider(t)
	for _, tt := range []struct{ name, id, secret string }{
		{"public client", testPublicID, ""},
		{"confidential client", testConfidential, testSecret},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := newTestClient(t, Config{Issuer: p.Issuer(), ClientID: tt.id, ClientSecret: tt.secret})
			code, nonce, verifier := signIn(t, c)
			got, err := c.Exchange(t.Context(), code, verifier, nonce)
			if err != nil {
				t.Fatalf("Exchange: %v", err)
			}
			want := &identity.UserIdentity{Subject: "user-42", Email: "alice@example.com", Groups: []string{"ops", "eu"}, Issuer: p.Issuer(), Nonce: nonce, EmailVerified: true}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("Exchange mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestAuthCodeURL(t *testing.T) {
	t.Parallel()
	p := newTestProvider(t)
	c := newTestClient(t, Config{Issuer: p.Issuer(), Scopes: []string{"email", "groups"}})
	// The example of RFC 7636 appendix B, whose challenge the RFC gives.
	verifier := "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
	to, err := c.AuthCodeURL(t.Context(), "st", "no", verifier)
	if err != nil {
		t.Fatalf("AuthCodeURL: %v", err)
	}
	u, err := url.Parse(to)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := u.Scheme+"://"+u.Host+u.Path, p.Issuer()+"/authorize"; got != want {
		t.Errorf("AuthCodeURL endpoint = %q, want %q", got, want)
	}
	want := url.Values{
		"response_type": {"code"}, "client_id": {testPublicID}, "redirect_uri": {testRedirect},
		"scope": {"openid email groups"}, "state": {"st"}, "nonce": {"no"},
		"code_challenge": {"E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"}, "code_challenge_method": {"S256"},
	}
	if diff := cmp.Diff(want, u.Query()); diff != "" {
		t.Errorf("AuthCodeURL query mismatch (-want +got):\n%s", diff)
	}
}

func TestAuthCodeURLRefusesBadInput(t *testing.T) {
	t.Parallel()
	// No IdP runs: input is checked before discovery.
	c := newTestClient(t, Config{Issuer: "https://idp.invalid"})
	good := strings.Repeat("a", 43)
	tests := []struct {
		name, state, nonce, verifier, want string
	}{
		{"no state", "", good, good, "state: is required"},
		{"no nonce", good, "", good, "nonce: is required"},
		{"state with a space", "a b", good, good, "state: character 1"},
		{"oversized state", strings.Repeat("s", maxStateBytes+1), good, good, "at most 512"},
		{"short verifier", good, good, "abc", "code verifier: must be 43 to 128 characters, got 3"},
		{"long verifier", good, good, strings.Repeat("a", 129), "got 129"},
		{"verifier with a slash", good, good, strings.Repeat("a", 42) + "/", "code verifier: character 42"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := c.AuthCodeURL(t.Context(), tt.state, tt.nonce, tt.verifier)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("AuthCodeURL(%s) = %v, want error containing %q", tt.name, err, tt.want)
			}
			if errors.Is(err, ErrDiscovery) {
				t.Errorf("AuthCodeURL(%s) = %v: bad input should be refused before discovery", tt.name, err)
			}
		})
	}
}

func TestExchangeRefused(t *testing.T) {
	t.Parallel()
	p := newTestProvider(t)
	tests := []struct {
		name string
		// exchange runs the sign-in's exchange, however the case breaks it.
		exchange   func(t *testing.T, c *Client) error
		config     Config // ClientID and Issuer default to the public client at p
		wantIs     error
		wantReason string // identity.TokenError reason
		wantCode   string // ProviderError code
		wantText   string
	}{
		{name: "wrong nonce", wantIs: ErrNonceMismatch, exchange: func(t *testing.T, c *Client) error {
			code, _, verifier := signIn(t, c)
			_, err := c.Exchange(t.Context(), code, verifier, mustRandom(t, NewState))
			return err
		}},
		{name: "wrong PKCE verifier", wantCode: "invalid_grant", wantText: "code_verifier does not match", exchange: func(t *testing.T, c *Client) error {
			code, nonce, _ := signIn(t, c)
			_, err := c.Exchange(t.Context(), code, mustRandom(t, NewVerifier), nonce)
			return err
		}},
		{name: "code reused", wantCode: "invalid_grant", wantText: "already used", exchange: func(t *testing.T, c *Client) error {
			code, nonce, verifier := signIn(t, c)
			if _, err := c.Exchange(t.Context(), code, verifier, nonce); err != nil {
				t.Fatalf("first Exchange: %v", err)
			}
			_, err := c.Exchange(t.Context(), code, verifier, nonce)
			return err
		}},
		{name: "code forged", wantCode: "invalid_grant", exchange: func(t *testing.T, c *Client) error {
			_, err := c.Exchange(t.Context(), "forged-code", mustRandom(t, NewVerifier), mustRandom(t, NewState))
			return err
		}},
		{name: "code expired", wantCode: "invalid_grant", wantText: "expired", exchange: func(t *testing.T, _ *Client) error {
			// A provider of its own: moving its clock would spoil the other cases' tokens.
			p := newTestProvider(t)
			c := newTestClient(t, Config{Issuer: p.Issuer()})
			code, nonce, verifier := signIn(t, c)
			p.Advance(oidctest.CodeLifetime)
			_, err := c.Exchange(t.Context(), code, verifier, nonce)
			return err
		}},
		{name: "code of another client", wantCode: "invalid_grant", wantText: "another client", exchange: func(t *testing.T, c *Client) error {
			other := newTestClient(t, Config{Issuer: p.Issuer(), ClientID: testConfidential, ClientSecret: testSecret})
			code, nonce, verifier := signIn(t, other)
			_, err := c.Exchange(t.Context(), code, verifier, nonce)
			return err
		}},
		{name: "wrong client secret", config: Config{ClientID: testConfidential, ClientSecret: "wrong-secret"},
			wantCode: "invalid_client", exchange: func(t *testing.T, c *Client) error {
				good := newTestClient(t, Config{Issuer: p.Issuer(), ClientID: testConfidential, ClientSecret: testSecret})
				code, nonce, verifier := signIn(t, good)
				_, err := c.Exchange(t.Context(), code, verifier, nonce)
				return err
			}},
		{name: "expired id token", wantReason: identity.ReasonExpired, exchange: func(t *testing.T, c *Client) error {
			code, nonce, verifier := signIn(t, c)
			p.Tamper(func(m map[string]any) { m["exp"] = time.Now().Add(-time.Hour).Unix() })
			_, err := c.Exchange(t.Context(), code, verifier, nonce)
			return err
		}},
		{name: "aud mismatch", wantReason: identity.ReasonBadAudience, exchange: func(t *testing.T, c *Client) error {
			code, nonce, verifier := signIn(t, c)
			p.Tamper(func(m map[string]any) { m["aud"] = "another-client" })
			_, err := c.Exchange(t.Context(), code, verifier, nonce)
			return err
		}},
		{name: "iss mismatch in the id token", wantReason: identity.ReasonBadIssuer, exchange: func(t *testing.T, c *Client) error {
			code, nonce, verifier := signIn(t, c)
			p.Tamper(func(m map[string]any) { m["iss"] = "https://evil.example" })
			_, err := c.Exchange(t.Context(), code, verifier, nonce)
			return err
		}},
		{name: "nonce missing from the id token", wantIs: ErrNonceMismatch, exchange: func(t *testing.T, c *Client) error {
			code, nonce, verifier := signIn(t, c)
			p.Tamper(func(m map[string]any) { m["nonce"] = nil })
			_, err := c.Exchange(t.Context(), code, verifier, nonce)
			return err
		}},
		{name: "nonce of the wrong type", wantReason: identity.ReasonMalformed, exchange: func(t *testing.T, c *Client) error {
			code, nonce, verifier := signIn(t, c)
			p.Tamper(func(m map[string]any) { m["nonce"] = []string{nonce} })
			_, err := c.Exchange(t.Context(), code, verifier, nonce)
			return err
		}},
		{name: "id token signed by another key", wantReason: identity.ReasonBadSignature,
			config: Config{HTTPClient: &http.Client{Transport: resignTransport(t)}},
			exchange: func(t *testing.T, c *Client) error {
				code, nonce, verifier := signIn(t, c)
				_, err := c.Exchange(t.Context(), code, verifier, nonce)
				return err
			}},
		{name: "bad input", wantText: "oidc exchange: code is required", exchange: func(t *testing.T, c *Client) error {
			_, err := c.Exchange(t.Context(), "", mustRandom(t, NewVerifier), "n")
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Not parallel: Tamper and Advance change the shared provider.
			cfg := tt.config
			cfg.Issuer = p.Issuer()
			c := newTestClient(t, cfg)
			err := tt.exchange(t, c)
			if err == nil {
				t.Fatalf("Exchange(%s) succeeded, want an error", tt.name)
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("Exchange(%s) = %v, want errors.Is %v", tt.name, err, tt.wantIs)
			}
			if got := tokenReason(err); got != tt.wantReason {
				t.Errorf("Exchange(%s) = %v: token reason %q, want %q", tt.name, err, got, tt.wantReason)
			}
			if got := providerCode(err); got != tt.wantCode {
				t.Errorf("Exchange(%s) = %v: provider error %q, want %q", tt.name, err, got, tt.wantCode)
			}
			if !strings.Contains(err.Error(), tt.wantText) {
				t.Errorf("Exchange(%s) = %q, want it to contain %q", tt.name, err, tt.wantText)
			}
			if strings.Contains(err.Error(), testSecret) || strings.Contains(err.Error(), "wrong-secret") {
				t.Errorf("Exchange(%s) = %q: the error shows the client secret", tt.name, err)
			}
		})
	}
}

// resignTransport replaces the signature of every ID token the token endpoint sends with
// one made by a stranger's key, keeping the header (and so the kid) as it was.
func resignTransport(t *testing.T) http.RoundTripper {
	_, stranger, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return roundTripFunc(func(r *http.Request) (*http.Response, error) {
		resp, err := http.DefaultTransport.RoundTrip(r)
		if err != nil || !strings.HasSuffix(r.URL.Path, "/token") || resp.StatusCode != http.StatusOK {
			return resp, err
		}
		var body map[string]any
		err = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if err != nil {
			return nil, err
		}
		raw, _ := body["id_token"].(string)
		input := raw[:strings.LastIndexByte(raw, '.')]
		body["id_token"] = input + "." + base64.RawURLEncoding.EncodeToString(ed25519.Sign(stranger, []byte(input)))
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		resp.Body = io.NopCloser(bytes.NewReader(b))
		resp.ContentLength = int64(len(b))
		resp.Header.Del("Content-Length")
		return resp, nil
	})
}

// fakeIdP serves a discovery document naming its own URL as the issuer (unless edit
// changes it) and lets token answer the token endpoint.
func fakeIdP(t *testing.T, edit func(doc map[string]any), token http.HandlerFunc) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		base := "http://" + r.Host
		switch r.URL.Path {
		case "/.well-known/openid-configuration":
			doc := map[string]any{
				"issuer": base, "authorization_endpoint": base + "/authorize",
				"token_endpoint": base + "/token", "jwks_uri": base + "/jwks",
			}
			if edit != nil {
				edit(doc)
			}
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(doc)
		case "/token":
			if token == nil {
				http.NotFound(w, r)
				return
			}
			token(w, r)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestDiscoveryFailures(t *testing.T) {
	t.Parallel()
	huge := strings.Repeat("x", maxResponseBytes)
	tests := []struct {
		name string
		// setup returns the issuer to configure.
		setup func(t *testing.T) string
		want  string
	}{
		{name: "issuer mismatch", want: `issuer "https://idp.example" is not the configured issuer`, setup: func(t *testing.T) string {
			return fakeIdP(t, func(doc map[string]any) { doc["issuer"] = "https://idp.example" }, nil)
		}},
		{name: "issuer with a trailing slash", want: "is not the configured issuer", setup: func(t *testing.T) string {
			u := fakeIdP(t, nil, nil)
			return u + "/"
		}},
		{name: "oversized document", want: "larger than 1048576 bytes", setup: func(t *testing.T) string {
			return fakeIdP(t, func(doc map[string]any) { doc["pad"] = huge }, nil)
		}},
		{name: "token endpoint off https", want: `token_endpoint: "http://idp.example/token" must use https`, setup: func(t *testing.T) string {
			return fakeIdP(t, func(doc map[string]any) { doc["token_endpoint"] = "http://idp.example/token" }, nil)
		}},
		{name: "no jwks_uri", want: "jwks_uri is missing", setup: func(t *testing.T) string {
			return fakeIdP(t, func(doc map[string]any) { delete(doc, "jwks_uri") }, nil)
		}},
		{name: "no PKCE", want: `code_challenge_methods_supported does not include "S256"`, setup: func(t *testing.T) string {
			return fakeIdP(t, func(doc map[string]any) { doc["code_challenge_methods_supported"] = []string{"plain"} }, nil)
		}},
		{name: "not found", want: "status 404", setup: func(t *testing.T) string {
			srv := httptest.NewServer(http.NotFoundHandler())
			t.Cleanup(srv.Close)
			return srv.URL
		}},
		{name: "unreachable", want: "connect", setup: func(t *testing.T) string {
			srv := httptest.NewServer(http.NotFoundHandler())
			srv.Close()
			return srv.URL
		}},
		{name: "redirect off https", want: `"http://idp.example/.well-known/openid-configuration" must use https`, setup: func(t *testing.T) string {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				http.Redirect(w, r, "http://idp.example"+r.URL.Path, http.StatusFound)
			}))
			t.Cleanup(srv.Close)
			return srv.URL
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := newTestClient(t, Config{Issuer: tt.setup(t)})
			_, err := c.AuthCodeURL(t.Context(), "state", "nonce", strings.Repeat("v", 43))
			if !errors.Is(err, ErrDiscovery) {
				t.Fatalf("AuthCodeURL with %s = %v, want ErrDiscovery", tt.name, err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("AuthCodeURL with %s = %q, want it to contain %q", tt.name, err, tt.want)
			}
			// Exchange needs discovery too, and reports the same failure.
			_, err = c.Exchange(t.Context(), "code", strings.Repeat("v", 43), "nonce")
			if !errors.Is(err, ErrDiscovery) {
				t.Errorf("Exchange with %s = %v, want ErrDiscovery", tt.name, err)
			}
		})
	}
}

func TestTokenEndpointFailures(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		token    http.HandlerFunc
		want     string
		wantCode string
	}{
		{name: "oversized response", want: "token response: larger than 1048576 bytes", token: func(w http.ResponseWriter, r *http.Request) {
			_, _ = fmt.Fprintf(w, `{"id_token":"%s"}`, strings.Repeat("x", maxResponseBytes))
		}},
		{name: "server error without body", want: "token response: status 500", token: func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusInternalServerError)
		}},
		{name: "redirect not followed", want: "token response: status 307", token: func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "/elsewhere", http.StatusTemporaryRedirect)
		}},
		{name: "oauth error with control characters", wantCode: "invalid_grant", want: "invalid_grant (status 400): bad?code", token: func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write([]byte(`{"error":"invalid_grant","error_description":"bad\ncode"}`))
		}},
		{name: "oauth error echoing the secret", wantCode: "invalid_client", want: "invalid_client (status 401): bad secret [redacted]", token: func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusUnauthorized)
			_ = json.NewEncoder(w).Encode(map[string]string{"error": "invalid_client", "error_description": "bad secret " + testSecret})
		}},
		{name: "no id_token", want: "no id_token", token: func(w http.ResponseWriter, r *http.Request) {
			_, _ = w.Write([]byte(`{"access_token":"a","token_type":"Bearer"}`))
		}},
		{name: "id_token not a string", want: `member "id_token" is a JSON number`, token: func(w http.ResponseWriter, r *http.Request) {
			_, _ = w.Write([]byte(`{"id_token":7}`))
		}},
		{name: "not json", want: "not a JSON object", token: func(w http.ResponseWriter, r *http.Request) {
			_, _ = w.Write([]byte(`<html>`))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := newTestClient(t, Config{Issuer: fakeIdP(t, nil, tt.token), ClientID: "c", ClientSecret: testSecret})
			_, err := c.Exchange(t.Context(), "code", strings.Repeat("v", 43), "nonce")
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Exchange with %s = %v, want error containing %q", tt.name, err, tt.want)
			}
			if got := providerCode(err); got != tt.wantCode {
				t.Errorf("Exchange with %s = %v: provider error %q, want %q", tt.name, err, got, tt.wantCode)
			}
			if strings.Contains(err.Error(), testSecret) {
				t.Errorf("Exchange with %s = %q: the error shows the client secret", tt.name, err)
			}
		})
	}
}

func TestTokenRequest(t *testing.T) {
	t.Parallel()
	var (
		mu   sync.Mutex
		form url.Values
		user string
		pass string
		ok   bool
	)
	issuer := fakeIdP(t, nil, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		_ = r.ParseForm()
		form = r.PostForm
		user, pass, ok = r.BasicAuth()
		w.WriteHeader(http.StatusBadRequest)
		_, _ = w.Write([]byte(`{"error":"invalid_grant"}`))
	})
	verifier := strings.Repeat("v", 43)
	for _, tt := range []struct {
		name, secret string
		wantForm     url.Values
		wantBasic    bool
	}{
		{name: "public client", wantForm: url.Values{"grant_type": {"authorization_code"}, "code": {"the-code"},
			"redirect_uri": {testRedirect}, "code_verifier": {verifier}, "client_id": {"c id"}}},
		{name: "confidential client", secret: testSecret, wantBasic: true, wantForm: url.Values{"grant_type": {"authorization_code"},
			"code": {"the-code"}, "redirect_uri": {testRedirect}, "code_verifier": {verifier}}},
	} {
		c := newTestClient(t, Config{Issuer: issuer, ClientID: "c id", ClientSecret: tt.secret})
		if _, err := c.Exchange(t.Context(), "the-code", verifier, "nonce"); providerCode(err) != "invalid_grant" {
			t.Fatalf("%s: Exchange = %v, want the provider's invalid_grant", tt.name, err)
		}
		mu.Lock()
		if diff := cmp.Diff(tt.wantForm, form); diff != "" {
			t.Errorf("%s: token request form mismatch (-want +got):\n%s", tt.name, diff)
		}
		if ok != tt.wantBasic {
			t.Errorf("%s: Basic auth sent = %v, want %v", tt.name, ok, tt.wantBasic)
		}
		if tt.wantBasic && (user != "c+id" || pass != url.QueryEscape(testSecret)) {
			t.Errorf("%s: Basic auth = %q:%q, want the form-encoded client id and secret", tt.name, user, pass)
		}
		mu.Unlock()
	}
}

func TestDiscoveryRetry(t *testing.T) {
	t.Parallel()
	p := newTestProvider(t)
	var down atomic.Bool
	var fetches atomic.Int32
	down.Store(true)
	hc := &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		if isDiscovery(r) {
			fetches.Add(1)
			if down.Load() {
				return nil, errors.New("connection refused (test)")
			}
		}
		return http.DefaultTransport.RoundTrip(r)
	})}
	clk := testclock.New(time.Now())
	c := newTestClient(t, Config{Issuer: p.Issuer(), HTTPClient: hc, Now: clk.Now})
	verifier := strings.Repeat("v", 43)
	steps := []struct {
		name        string
		up          bool
		advance     time.Duration
		wantErr     string
		wantFetches int32
	}{
		{name: "first use while the IdP is down", wantErr: "connection refused (test)", wantFetches: 1},
		{name: "at once again: not retried", up: true, wantErr: "not retried for another 10s", wantFetches: 1},
		{name: "still within 10s", up: true, advance: 9 * time.Second, wantErr: "not retried for another 1s after", wantFetches: 1},
		{name: "after 10s: retried and found", up: true, advance: time.Second, wantFetches: 2},
		{name: "cached even while the IdP is down", up: false, advance: time.Minute, wantFetches: 2},
	}
	for _, s := range steps {
		down.Store(!s.up)
		clk.Advance(s.advance)
		_, err := c.AuthCodeURL(t.Context(), "state", "nonce", verifier)
		switch {
		case s.wantErr == "" && err != nil:
			t.Fatalf("step %q: AuthCodeURL = %v, want success", s.name, err)
		case s.wantErr != "" && (!errors.Is(err, ErrDiscovery) || !strings.Contains(err.Error(), s.wantErr)):
			t.Fatalf("step %q: AuthCodeURL = %v, want ErrDiscovery containing %q", s.name, err, s.wantErr)
		}
		if got := fetches.Load(); got != s.wantFetches {
			t.Fatalf("step %q: %d discovery fetches, want %d", s.name, got, s.wantFetches)
		}
	}
	// The sign-in works end to end with the late discovery.
	code, nonce, v := signIn(t, c)
	if _, err := c.Exchange(t.Context(), code, v, nonce); err != nil {
		t.Fatalf("Exchange after a retried discovery: %v", err)
	}
}

func TestDiscoveryCanceledIsNotAFailure(t *testing.T) {
	t.Parallel()
	p := newTestProvider(t)
	c := newTestClient(t, Config{Issuer: p.Issuer()})
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	verifier := strings.Repeat("v", 43)
	if _, err := c.AuthCodeURL(ctx, "state", "nonce", verifier); !errors.Is(err, context.Canceled) || !errors.Is(err, ErrDiscovery) {
		t.Fatalf("AuthCodeURL with a canceled context = %v, want ErrDiscovery wrapping context.Canceled", err)
	}
	if _, err := c.AuthCodeURL(t.Context(), "state", "nonce", verifier); err != nil {
		t.Fatalf("AuthCodeURL after a canceled one = %v, want success without waiting out a cooldown", err)
	}
}

func TestConcurrentFirstUseDiscoversOnce(t *testing.T) {
	t.Parallel()
	p := newTestProvider(t)
	var fetches atomic.Int32
	release := make(chan struct{})
	hc := &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		if isDiscovery(r) {
			fetches.Add(1)
			<-release // hold the first discovery until every caller has arrived or is waiting
		}
		return http.DefaultTransport.RoundTrip(r)
	})}
	c := newTestClient(t, Config{Issuer: p.Issuer(), HTTPClient: hc})
	var wg sync.WaitGroup
	var started sync.WaitGroup
	for range 16 {
		started.Add(1)
		wg.Go(func() {
			started.Done()
			if _, err := c.AuthCodeURL(t.Context(), "state", "nonce", strings.Repeat("v", 43)); err != nil {
				t.Errorf("concurrent AuthCodeURL = %v, want success", err)
			}
		})
	}
	started.Wait()
	close(release)
	wg.Wait()
	if got := fetches.Load(); got != 1 {
		t.Errorf("%d discovery fetches for concurrent first use, want 1", got)
	}
}

func TestAuthorizationEndpointQueryKept(t *testing.T) {
	t.Parallel()
	issuer := fakeIdP(t, func(doc map[string]any) {
		doc["authorization_endpoint"] = "https://idp.example/authorize?p=b2c_signin&client_id=spoofed"
	}, nil)
	c := newTestClient(t, Config{Issuer: issuer})
	to, err := c.AuthCodeURL(t.Context(), "state", "nonce", strings.Repeat("v", 43))
	if err != nil {
		t.Fatalf("AuthCodeURL: %v", err)
	}
	u, err := url.Parse(to)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	if got := q["p"]; len(got) != 1 || got[0] != "b2c_signin" {
		t.Errorf("AuthCodeURL p = %q, want the endpoint's own [b2c_signin]", got)
	}
	if got := q["client_id"]; len(got) != 1 || got[0] != testPublicID {
		t.Errorf("AuthCodeURL client_id = %q, want only ours", got)
	}
}

func TestNewValidates(t *testing.T) {
	t.Parallel()
	ok := Config{Issuer: "https://idp.example", ClientID: "console", RedirectURL: "https://chaperone.example/console/oidc/callback"}
	edit := func(fn func(*Config)) Config { c := ok; fn(&c); return c }
	tests := []struct {
		name string
		c    Config
		want []string // substrings of the error; nil for success
	}{
		{"ok", ok, nil},
		{"http on loopback", edit(func(c *Config) { c.Issuer = "http://127.0.0.1:5556/dex"; c.RedirectURL = "http://localhost:8080/cb" }), nil},
		{"http issuer elsewhere", edit(func(c *Config) { c.Issuer = "http://idp.example" }), []string{`issuer: "http://idp.example" must use https`}},
		{"loopback-looking host", edit(func(c *Config) { c.Issuer = "http://127.0.0.1.evil.example" }), []string{"must use https"}},
		{"issuer with a query", edit(func(c *Config) { c.Issuer = "https://idp.example/?tenant=a" }), []string{"no query or fragment"}},
		{"issuer with user info", edit(func(c *Config) { c.Issuer = "https://u:p@idp.example" }), []string{"must not carry credentials"}},
		{"relative redirect", edit(func(c *Config) { c.RedirectURL = "/console/oidc/callback" }), []string{"redirect url: \"/console/oidc/callback\" is not an absolute URL"}},
		{"redirect with a fragment", edit(func(c *Config) { c.RedirectURL = "https://chaperone.example/cb#x" }), []string{"redirect url", "no fragment"}},
		{"http redirect elsewhere", edit(func(c *Config) { c.RedirectURL = "http://chaperone.example/cb" }), []string{"redirect url", "must use https"}},
		{"scope with a space", edit(func(c *Config) { c.Scopes = []string{"email", "a b"} }), []string{`scopes[1]`, `"a b"`}},
		{"too many scopes", edit(func(c *Config) { c.Scopes = make([]string, 33) }), []string{"at most 32, got 33"}},
		{"client id with a newline", edit(func(c *Config) { c.ClientID = "a\nb" }), []string{"client id must be"}},
		{"secret with a newline", edit(func(c *Config) { c.ClientSecret = "top\nsecret" }), []string{"client secret must be"}},
		{"everything missing", Config{}, []string{"issuer: is required", "client id is required", "redirect url: is required"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := New(tt.c)
			if (err == nil) != (tt.want == nil) {
				t.Fatalf("New(%s) error = %v, want error containing %q", tt.name, err, tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("New(%s) error = %q, want it to contain %q", tt.name, err, w)
				}
			}
			if err != nil && strings.Contains(err.Error(), "top\nsecret") {
				t.Errorf("New(%s) error = %q: it shows the client secret", tt.name, err)
			}
		})
	}
}

func TestNewDefaults(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name   string
		scopes []string
		want   []string
	}{
		{"none", nil, []string{"openid", "email", "profile"}},
		{"openid added", []string{"email", "groups"}, []string{"openid", "email", "groups"}},
		{"openid kept once", []string{"email", "openid", "email"}, []string{"openid", "email"}},
	} {
		c := newTestClient(t, Config{Issuer: "https://idp.example", Scopes: tt.scopes})
		if diff := cmp.Diff(tt.want, c.c.Scopes); diff != "" {
			t.Errorf("New with scopes %q (%s): scopes mismatch (-want +got):\n%s", tt.scopes, tt.name, diff)
		}
		if c.c.GroupsClaim != "groups" {
			t.Errorf("New: groups claim = %q, want default \"groups\"", c.c.GroupsClaim)
		}
	}
}

func TestClientPrintsNoSecret(t *testing.T) {
	t.Parallel()
	c := newTestClient(t, Config{Issuer: "https://idp.example", ClientSecret: testSecret})
	for _, verb := range []string{"%v", "%+v", "%#v", "%s"} {
		if got := fmt.Sprintf(verb, c); strings.Contains(got, testSecret) {
			t.Errorf("Sprintf(%q, client) = %q: it shows the client secret", verb, got)
		}
	}
}

func TestRandomValues(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for _, f := range []func() (string, error){NewState, NewVerifier, NewState, NewVerifier} {
		s := mustRandom(t, f)
		if err := checkVerifier(s); err != nil {
			t.Errorf("random value %q is not a valid PKCE verifier: %v", s, err)
		}
		if strings.Contains(s, ".") {
			t.Errorf("random value %q contains '.', which the console uses as a cookie separator", s)
		}
		if seen[s] {
			t.Errorf("random value %q drawn twice", s)
		}
		seen[s] = true
	}
}
