// Package oidctest is a small OpenID provider for tests — not for production. It serves
// discovery, an authorization endpoint without a login form, a token endpoint and a JWKS
// over plain HTTP on 127.0.0.1, and signs ID tokens with a fresh Ed25519 key.
//
// It is strict, so that tests catch a relying party that cuts corners: /authorize accepts
// only registered clients and exact redirect URIs, the code flow, and PKCE with S256;
// /token authenticates the client, accepts each code once, within a minute, for the same
// client and redirect URI, and only with the right PKCE verifier. Every refusal that can
// safely go back to the client does so as an OAuth error (RFC 6749 §4.1.2.1 and §5.2).
// A real browser can follow its redirects, so browser tests can sign in through it.
package oidctest

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// Lifetimes the provider gives what it issues.
const (
	CodeLifetime    = time.Minute
	IDTokenLifetime = 5 * time.Minute
)

const maxFormBytes = 64 << 10

// Provider is a running test OpenID provider. It is safe for concurrent use.
type Provider struct {
	srv *httptest.Server
	key ed25519.PrivateKey
	kid string

	mu sync.Mutex
	// The fields below are guarded by mu.
	clients map[string]client
	user    *user
	codes   map[string]grant
	tamper  func(claims map[string]any)
	offset  time.Duration // added to the wall clock: see Advance
}

type client struct {
	secret    string // "" for a public client
	redirects []string
}

type user struct {
	sub, email string
	groups     []string
}

// grant is what an issued code stands for.
type grant struct {
	clientID, redirectURI string
	challenge             string
	nonce                 string
	user                  user
	expires               time.Time
}

// New starts a provider on 127.0.0.1 with a fresh Ed25519 key; it is closed when the test
// ends.
func New(t testing.TB) *Provider {
	t.Helper()
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatalf("oidctest: generate key: %v", err)
	}
	p := &Provider{
		key:     key,
		kid:     "oidctest-" + randomString(6),
		clients: map[string]client{},
		codes:   map[string]grant{},
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", p.discovery)
	mux.HandleFunc("GET /authorize", p.authorize)
	mux.HandleFunc("POST /token", p.token)
	mux.HandleFunc("GET /jwks", p.jwks)
	p.srv = httptest.NewUnstartedServer(mux)
	p.srv.Config.ReadHeaderTimeout = 10 * time.Second
	p.srv.Config.ReadTimeout = 10 * time.Second
	p.srv.Config.WriteTimeout = 10 * time.Second
	p.srv.Config.IdleTimeout = time.Minute
	p.srv.Config.MaxHeaderBytes = 64 << 10
	p.srv.Start()
	t.Cleanup(p.srv.Close)
	return p
}

// Issuer is the provider's issuer identifier, "http://127.0.0.1:<port>".
func (p *Provider) Issuer() string { return p.srv.URL }

// AddClient registers a client: a public one (PKCE only) if secret is "". Redirect URIs
// must match exactly. Adding a client again replaces it.
func (p *Provider) AddClient(id, secret string, redirectURLs ...string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.clients[id] = client{secret: secret, redirects: slices.Clone(redirectURLs)}
}

// SetUser sets who "signs in" at /authorize from now on. Until it is called, /authorize
// answers access_denied.
func (p *Provider) SetUser(sub, email string, groups ...string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.user = &user{sub: sub, email: email, groups: slices.Clone(groups)}
}

// Tamper lets f alter the claims of the next ID token the provider issues (and only that
// one), before it is signed: for tests that need an expired, misaddressed or otherwise
// wrong token with a valid signature. A claim set to nil is removed.
func (p *Provider) Tamper(f func(claims map[string]any)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.tamper = f
}

// Advance moves the provider's clock forward by d, for tests of code and token expiry.
func (p *Provider) Advance(d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.offset += d
}

// now is the provider's clock; call with p.mu held.
func (p *Provider) now() time.Time { return time.Now().Add(p.offset) }

func (p *Provider) discovery(w http.ResponseWriter, r *http.Request) {
	iss := p.Issuer()
	writeJSON(w, http.StatusOK, map[string]any{
		"issuer":                                iss,
		"authorization_endpoint":                iss + "/authorize",
		"token_endpoint":                        iss + "/token",
		"jwks_uri":                              iss + "/jwks",
		"response_types_supported":              []string{"code"},
		"subject_types_supported":               []string{"public"},
		"id_token_signing_alg_values_supported": []string{"EdDSA"},
		"code_challenge_methods_supported":      []string{"S256"},
		"token_endpoint_auth_methods_supported": []string{"client_secret_basic", "none"},
		"grant_types_supported":                 []string{"authorization_code"},
		"scopes_supported":                      []string{"openid", "email", "profile", "groups"},
		"claims_supported":                      []string{"iss", "sub", "aud", "exp", "iat", "nonce", "email", "groups"},
	})
}

func (p *Provider) jwks(w http.ResponseWriter, r *http.Request) {
	pub := p.key.Public().(ed25519.PublicKey)
	writeJSON(w, http.StatusOK, map[string]any{"keys": []map[string]string{{
		"kty": "OKP", "crv": "Ed25519", "use": "sig", "alg": "EdDSA", "kid": p.kid,
		"x": base64.RawURLEncoding.EncodeToString(pub),
	}}})
}

// authorize signs the current user in without asking anything. Errors in client_id or
// redirect_uri are shown on a page, never redirected (RFC 6749 §4.1.2.1): the redirect
// URI cannot be trusted until both are checked. Other errors go back to the client.
func (p *Provider) authorize(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	q := r.URL.Query()
	for name, vs := range q {
		if len(vs) > 1 {
			http.Error(w, fmt.Sprintf("oidctest: parameter %q given more than once", name), http.StatusBadRequest)
			return
		}
	}
	clientID, redirectURI := q.Get("client_id"), q.Get("redirect_uri")
	p.mu.Lock()
	c, known := p.clients[clientID]
	u := p.user
	p.mu.Unlock()
	if !known {
		http.Error(w, fmt.Sprintf("oidctest: unknown client_id %q", clientID), http.StatusBadRequest)
		return
	}
	if !slices.Contains(c.redirects, redirectURI) {
		http.Error(w, fmt.Sprintf("oidctest: redirect_uri %q is not registered for client %q", redirectURI, clientID), http.StatusBadRequest)
		return
	}
	to, err := url.Parse(redirectURI)
	if err != nil {
		http.Error(w, fmt.Sprintf("oidctest: registered redirect_uri %q does not parse", redirectURI), http.StatusBadRequest)
		return
	}
	back := func(params url.Values) {
		rq := to.Query()
		for k, v := range params {
			rq[k] = v
		}
		if s := q.Get("state"); s != "" {
			rq.Set("state", s)
		}
		to.RawQuery = rq.Encode()
		http.Redirect(w, r, to.String(), http.StatusFound)
	}
	fail := func(code, desc string) { back(url.Values{"error": {code}, "error_description": {desc}}) }
	switch {
	case q.Get("response_type") != "code":
		fail("unsupported_response_type", "only response_type=code is supported")
		return
	case !slices.Contains(strings.Fields(q.Get("scope")), "openid"):
		fail("invalid_scope", "scope must include openid")
		return
	case q.Get("code_challenge_method") != "S256":
		fail("invalid_request", "code_challenge_method must be S256")
		return
	case !validChallenge(q.Get("code_challenge")):
		fail("invalid_request", "code_challenge must be 43 base64url characters")
		return
	case u == nil:
		fail("access_denied", "no user signs in: the test did not call SetUser")
		return
	}
	code := randomString(32)
	p.mu.Lock()
	p.codes[code] = grant{
		clientID: clientID, redirectURI: redirectURI, challenge: q.Get("code_challenge"),
		nonce: q.Get("nonce"), user: *u, expires: p.now().Add(CodeLifetime),
	}
	p.mu.Unlock()
	back(url.Values{"code": {code}})
}

// token redeems a code for an ID token.
func (p *Provider) token(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if ct, _, _ := strings.Cut(r.Header.Get("Content-Type"), ";"); strings.TrimSpace(ct) != "application/x-www-form-urlencoded" {
		oauthError(w, http.StatusBadRequest, "invalid_request", "the body must be application/x-www-form-urlencoded")
		return
	}
	if err := r.ParseForm(); err != nil {
		oauthError(w, http.StatusBadRequest, "invalid_request", "the body is not a form")
		return
	}
	form := r.PostForm
	for name, vs := range form {
		if len(vs) > 1 {
			oauthError(w, http.StatusBadRequest, "invalid_request", fmt.Sprintf("parameter %q given more than once", name))
			return
		}
	}
	if len(r.URL.Query()) > 0 {
		oauthError(w, http.StatusBadRequest, "invalid_request", "parameters belong in the body, not the URL")
		return
	}
	clientID, ok := p.authenticate(w, r)
	if !ok {
		return
	}
	if form.Get("grant_type") != "authorization_code" {
		oauthError(w, http.StatusBadRequest, "unsupported_grant_type", "only authorization_code is supported")
		return
	}
	code := form.Get("code")
	p.mu.Lock()
	g, found := p.codes[code]
	delete(p.codes, code) // a code is good for one attempt, successful or not
	now := p.now()
	p.mu.Unlock()
	switch {
	case code == "" || !found:
		oauthError(w, http.StatusBadRequest, "invalid_grant", "unknown or already used code")
	case g.clientID != clientID:
		oauthError(w, http.StatusBadRequest, "invalid_grant", "the code was issued to another client")
	case !now.Before(g.expires):
		oauthError(w, http.StatusBadRequest, "invalid_grant", "the code has expired")
	case form.Get("redirect_uri") != g.redirectURI:
		oauthError(w, http.StatusBadRequest, "invalid_grant", "redirect_uri does not match the authorization request")
	case !validVerifier(form.Get("code_verifier")):
		oauthError(w, http.StatusBadRequest, "invalid_grant", "code_verifier must be 43 to 128 unreserved characters")
	case subtle.ConstantTimeCompare([]byte(challengeS256(form.Get("code_verifier"))), []byte(g.challenge)) != 1:
		oauthError(w, http.StatusBadRequest, "invalid_grant", "code_verifier does not match the code_challenge")
	default:
		idToken, err := p.sign(p.claims(g, now))
		if err != nil {
			oauthError(w, http.StatusInternalServerError, "server_error", err.Error())
			return
		}
		w.Header().Set("Pragma", "no-cache")
		writeJSON(w, http.StatusOK, map[string]any{
			"access_token": randomString(32), "token_type": "Bearer",
			"expires_in": int(IDTokenLifetime / time.Second), "id_token": idToken,
		})
	}
}

// authenticate identifies the client of a token request: client_secret_basic for a client
// with a secret, client_id in the form for a public one. On failure it has answered.
func (p *Provider) authenticate(w http.ResponseWriter, r *http.Request) (string, bool) {
	formID := r.PostForm.Get("client_id")
	if r.PostForm.Has("client_secret") {
		oauthError(w, http.StatusBadRequest, "invalid_request", "client_secret_post is not supported: use client_secret_basic")
		return "", false
	}
	user, pass, basic := r.BasicAuth()
	if basic {
		id, err1 := url.QueryUnescape(user)
		secret, err2 := url.QueryUnescape(pass)
		p.mu.Lock()
		c, known := p.clients[id]
		p.mu.Unlock()
		if err1 != nil || err2 != nil || !known || c.secret == "" ||
			subtle.ConstantTimeCompare([]byte(secret), []byte(c.secret)) != 1 || (formID != "" && formID != id) {
			w.Header().Set("WWW-Authenticate", `Basic realm="oidctest"`)
			oauthError(w, http.StatusUnauthorized, "invalid_client", "client authentication failed")
			return "", false
		}
		return id, true
	}
	p.mu.Lock()
	c, known := p.clients[formID]
	p.mu.Unlock()
	switch {
	case formID == "" || !known:
		oauthError(w, http.StatusUnauthorized, "invalid_client", "unknown client")
		return "", false
	case c.secret != "":
		oauthError(w, http.StatusUnauthorized, "invalid_client", "this client must authenticate with client_secret_basic")
		return "", false
	}
	return formID, true
}

// claims are an ID token's claims for grant g at now, altered by a pending Tamper.
func (p *Provider) claims(g grant, now time.Time) map[string]any {
	c := map[string]any{
		"iss": p.Issuer(), "aud": g.clientID, "sub": g.user.sub,
		"iat": now.Unix(), "exp": now.Add(IDTokenLifetime).Unix(),
	}
	if g.user.email != "" {
		c["email"] = g.user.email
		c["email_verified"] = true
	}
	if len(g.user.groups) > 0 {
		c["groups"] = g.user.groups
	}
	if g.nonce != "" {
		c["nonce"] = g.nonce
	}
	p.mu.Lock()
	f := p.tamper
	p.tamper = nil
	p.mu.Unlock()
	if f != nil {
		f(c)
		for k, v := range c {
			if v == nil {
				delete(c, k)
			}
		}
	}
	return c
}

// sign makes a compact JWS of claims with the provider's key (EdDSA).
func (p *Provider) sign(claims map[string]any) (string, error) {
	h, err := json.Marshal(map[string]string{"alg": "EdDSA", "typ": "JWT", "kid": p.kid})
	if err != nil {
		return "", err
	}
	c, err := json.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("oidctest: claims: %w", err)
	}
	enc := base64.RawURLEncoding
	input := enc.EncodeToString(h) + "." + enc.EncodeToString(c)
	return input + "." + enc.EncodeToString(ed25519.Sign(p.key, []byte(input))), nil
}

func oauthError(w http.ResponseWriter, status int, code, desc string) {
	writeJSON(w, status, map[string]string{"error": code, "error_description": desc})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, "oidctest: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

func challengeS256(verifier string) string {
	sum := sha256.Sum256([]byte(verifier))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// validChallenge: an S256 challenge is the base64url of 32 bytes.
func validChallenge(s string) bool {
	b, err := base64.RawURLEncoding.Strict().DecodeString(s)
	return err == nil && len(b) == sha256.Size
}

// validVerifier checks RFC 7636 §4.1: 43 to 128 characters from [A-Za-z0-9-._~].
func validVerifier(s string) bool {
	if len(s) < 43 || len(s) > 128 {
		return false
	}
	for i := range len(s) {
		ch := s[i]
		if !(ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9' ||
			ch == '-' || ch == '.' || ch == '_' || ch == '~') {
			return false
		}
	}
	return true
}

// randomString is n random bytes, base64url-encoded.
func randomString(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails (crypto/rand, Go 1.24+)
	return base64.RawURLEncoding.EncodeToString(b)
}
