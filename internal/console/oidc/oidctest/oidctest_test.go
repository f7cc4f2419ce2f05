package oidctest_test

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/chaperone-dev/chaperone/internal/console/oidc/oidctest"
	"github.com/chaperone-dev/chaperone/internal/identity"
	"github.com/google/go-cmp/cmp"
)

const (
	redirect = "http://127.0.0.1:9/cb?keep=1"
	verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
	secret   = "s3cret"
)

func challenge() string {
	sum := sha256.Sum256([]byte(verifier))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

func newProvider(t *testing.T) *oidctest.Provider {
	t.Helper()
	p := oidctest.New(t)
	p.AddClient("pub", "", redirect)
	p.AddClient("conf", secret, redirect)
	p.SetUser("user-1", "bob@example.com", "admins")
	return p
}

// authorizeParams are a valid authorization request's parameters for client "pub".
func authorizeParams() url.Values {
	return url.Values{
		"response_type": {"code"}, "client_id": {"pub"}, "redirect_uri": {redirect}, "scope": {"openid email"},
		"state": {"st"}, "nonce": {"nn"}, "code_challenge": {challenge()}, "code_challenge_method": {"S256"},
	}
}

var noFollow = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// authorize GETs /authorize with q and returns the status and, for a redirect, its target.
func authorize(t *testing.T, p *oidctest.Provider, q url.Values) (int, *url.URL) {
	t.Helper()
	resp, err := noFollow.Get(p.Issuer() + "/authorize?" + q.Encode())
	if err != nil {
		t.Fatalf("GET /authorize: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		return resp.StatusCode, nil
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		t.Fatalf("GET /authorize: Location: %v", err)
	}
	return resp.StatusCode, loc
}

// code runs a valid authorization request for clientID and returns the code.
func code(t *testing.T, p *oidctest.Provider, clientID string) string {
	t.Helper()
	q := authorizeParams()
	q.Set("client_id", clientID)
	status, loc := authorize(t, p, q)
	if status != http.StatusFound || loc.Query().Get("code") == "" {
		t.Fatalf("authorize(%s) = %d %v, want a redirect with a code", clientID, status, loc)
	}
	return loc.Query().Get("code")
}

// token posts form to /token, with Basic auth if user is not "", and returns the status and
// the decoded JSON answer.
func token(t *testing.T, p *oidctest.Provider, form url.Values, user, pass string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, p.Issuer()+"/token", strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST /token: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("POST /token: answer %q is not JSON: %v", b, err)
	}
	return resp.StatusCode, m
}

func tokenForm(code string) url.Values {
	return url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {redirect}, "code_verifier": {verifier}}
}

func TestAuthorize(t *testing.T) {
	t.Parallel()
	p := newProvider(t)
	tests := []struct {
		name       string
		edit       func(q url.Values)
		noUser     bool
		wantStatus int
		wantError  string // the OAuth error in the redirect, "" for a code
	}{
		{name: "valid", wantStatus: http.StatusFound},
		{name: "unknown client is not redirected", edit: func(q url.Values) { q.Set("client_id", "nobody") }, wantStatus: http.StatusBadRequest},
		{name: "unregistered redirect is not redirected", edit: func(q url.Values) { q.Set("redirect_uri", "http://127.0.0.1:9/cb") }, wantStatus: http.StatusBadRequest},
		{name: "repeated parameter", edit: func(q url.Values) { q.Add("state", "other") }, wantStatus: http.StatusBadRequest},
		{name: "implicit flow", edit: func(q url.Values) { q.Set("response_type", "id_token") }, wantStatus: http.StatusFound, wantError: "unsupported_response_type"},
		{name: "no openid scope", edit: func(q url.Values) { q.Set("scope", "email") }, wantStatus: http.StatusFound, wantError: "invalid_scope"},
		{name: "plain PKCE", edit: func(q url.Values) { q.Set("code_challenge_method", "plain") }, wantStatus: http.StatusFound, wantError: "invalid_request"},
		{name: "no PKCE", edit: func(q url.Values) { q.Del("code_challenge"); q.Del("code_challenge_method") }, wantStatus: http.StatusFound, wantError: "invalid_request"},
		{name: "malformed challenge", edit: func(q url.Values) { q.Set("code_challenge", "short") }, wantStatus: http.StatusFound, wantError: "invalid_request"},
		{name: "nobody signs in", noUser: true, wantStatus: http.StatusFound, wantError: "access_denied"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			pp := p
			if tt.noUser {
				pp = oidctest.New(t)
				pp.AddClient("pub", "", redirect)
			}
			q := authorizeParams()
			if tt.edit != nil {
				tt.edit(q)
			}
			status, loc := authorize(t, pp, q)
			if status != tt.wantStatus {
				t.Fatalf("authorize(%s) status = %d, want %d", tt.name, status, tt.wantStatus)
			}
			if loc == nil {
				return
			}
			got := loc.Query()
			if got.Get("state") != "st" || got.Get("keep") != "1" {
				t.Errorf("authorize(%s) redirect query = %v, want state and the redirect URI's own query kept", tt.name, got)
			}
			if got.Get("error") != tt.wantError {
				t.Errorf("authorize(%s) error = %q, want %q", tt.name, got.Get("error"), tt.wantError)
			}
			if (got.Get("code") != "") != (tt.wantError == "") {
				t.Errorf("authorize(%s) code = %q with error %q: want a code exactly when there is no error", tt.name, got.Get("code"), got.Get("error"))
			}
		})
	}
}

func TestToken(t *testing.T) {
	t.Parallel()
	p := newProvider(t)
	v, err := identity.NewOIDCVerifier(identity.OIDCConfig{Issuer: p.Issuer(), JWKSURL: p.Issuer() + "/jwks", Audience: "conf"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		// request builds the request: form and Basic credentials.
		request    func(t *testing.T) (form url.Values, user, pass string)
		wantStatus int
		wantError  string
	}{
		{name: "confidential client", wantStatus: http.StatusOK, request: func(t *testing.T) (url.Values, string, string) {
			return tokenForm(code(t, p, "conf")), "conf", secret
		}},
		{name: "wrong secret", wantStatus: http.StatusUnauthorized, wantError: "invalid_client", request: func(t *testing.T) (url.Values, string, string) {
			return tokenForm(code(t, p, "conf")), "conf", "guess"
		}},
		{name: "confidential client without its secret", wantStatus: http.StatusUnauthorized, wantError: "invalid_client", request: func(t *testing.T) (url.Values, string, string) {
			f := tokenForm(code(t, p, "conf"))
			f.Set("client_id", "conf")
			return f, "", ""
		}},
		{name: "client_secret_post", wantStatus: http.StatusBadRequest, wantError: "invalid_request", request: func(t *testing.T) (url.Values, string, string) {
			f := tokenForm(code(t, p, "conf"))
			f.Set("client_id", "conf")
			f.Set("client_secret", secret)
			return f, "", ""
		}},
		{name: "public client with a made-up secret", wantStatus: http.StatusUnauthorized, wantError: "invalid_client", request: func(t *testing.T) (url.Values, string, string) {
			return tokenForm(code(t, p, "pub")), "pub", "anything"
		}},
		{name: "no client", wantStatus: http.StatusUnauthorized, wantError: "invalid_client", request: func(t *testing.T) (url.Values, string, string) {
			return tokenForm(code(t, p, "pub")), "", ""
		}},
		{name: "wrong grant type", wantStatus: http.StatusBadRequest, wantError: "unsupported_grant_type", request: func(t *testing.T) (url.Values, string, string) {
			f := tokenForm(code(t, p, "conf"))
			f.Set("grant_type", "password")
			return f, "conf", secret
		}},
		{name: "wrong redirect uri", wantStatus: http.StatusBadRequest, wantError: "invalid_grant", request: func(t *testing.T) (url.Values, string, string) {
			f := tokenForm(code(t, p, "conf"))
			f.Set("redirect_uri", "http://127.0.0.1:9/cb")
			return f, "conf", secret
		}},
		{name: "no verifier", wantStatus: http.StatusBadRequest, wantError: "invalid_grant", request: func(t *testing.T) (url.Values, string, string) {
			f := tokenForm(code(t, p, "conf"))
			f.Del("code_verifier")
			return f, "conf", secret
		}},
		{name: "code of another client", wantStatus: http.StatusBadRequest, wantError: "invalid_grant", request: func(t *testing.T) (url.Values, string, string) {
			return tokenForm(code(t, p, "pub")), "conf", secret
		}},
		{name: "repeated parameter", wantStatus: http.StatusBadRequest, wantError: "invalid_request", request: func(t *testing.T) (url.Values, string, string) {
			f := tokenForm(code(t, p, "conf"))
			f.Add("code", "other")
			return f, "conf", secret
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			form, user, pass := tt.request(t)
			status, got := token(t, p, form, user, pass)
			if status != tt.wantStatus {
				t.Fatalf("token(%s) status = %d (%v), want %d", tt.name, status, got, tt.wantStatus)
			}
			if e, _ := got["error"].(string); e != tt.wantError {
				t.Fatalf("token(%s) error = %q, want %q", tt.name, e, tt.wantError)
			}
			if tt.wantError != "" {
				return
			}
			raw, _ := got["id_token"].(string)
			id, err := v.Verify(t.Context(), raw)
			if err != nil {
				t.Fatalf("token(%s): id_token does not verify: %v", tt.name, err)
			}
			want := &identity.UserIdentity{Subject: "user-1", Email: "bob@example.com", Groups: []string{"admins"}, Issuer: p.Issuer(), Nonce: "nn", EmailVerified: true}
			if diff := cmp.Diff(want, id); diff != "" {
				t.Errorf("token(%s) id_token mismatch (-want +got):\n%s", tt.name, diff)
			}
			// The code is spent.
			if status, again := token(t, p, form, user, pass); status != http.StatusBadRequest || again["error"] != "invalid_grant" {
				t.Errorf("token(%s) again = %d %v, want 400 invalid_grant", tt.name, status, again)
			}
		})
	}
}

func TestTamperAppliesOnce(t *testing.T) {
	t.Parallel()
	p := newProvider(t)
	claims := func() map[string]any {
		t.Helper()
		_, got := token(t, p, tokenForm(code(t, p, "conf")), "conf", secret)
		raw, _ := got["id_token"].(string)
		parts := strings.Split(raw, ".")
		if len(parts) != 3 {
			t.Fatalf("id_token %q is not a compact JWS", raw)
		}
		b, err := base64.RawURLEncoding.DecodeString(parts[1])
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	p.Tamper(func(m map[string]any) { m["aud"] = "someone-else"; m["nonce"] = nil })
	first := claims()
	if first["aud"] != "someone-else" {
		t.Errorf("tampered aud = %v, want someone-else", first["aud"])
	}
	if _, ok := first["nonce"]; ok {
		t.Errorf("tampered token has a nonce %v, want it removed", first["nonce"])
	}
	if second := claims(); second["aud"] != "conf" || second["nonce"] != "nn" {
		t.Errorf("token after the tampered one: aud %v nonce %v, want conf and nn", second["aud"], second["nonce"])
	}
}

func TestCodeExpires(t *testing.T) {
	t.Parallel()
	p := newProvider(t)
	c := code(t, p, "conf")
	p.Advance(oidctest.CodeLifetime)
	if status, got := token(t, p, tokenForm(c), "conf", secret); status != http.StatusBadRequest || got["error"] != "invalid_grant" {
		t.Errorf("token with a code a minute old = %d %v, want 400 invalid_grant", status, got)
	}
}
