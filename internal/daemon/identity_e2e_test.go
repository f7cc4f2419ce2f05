package daemon_test

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chaperone-dev/chaperone/internal/audit"
	"github.com/chaperone-dev/chaperone/internal/chaperonetest"
	"github.com/chaperone-dev/chaperone/internal/config"
)

// jws signs a compact JWS by hand, so the tests do not share the gateway's JOSE code.
func jws(t *testing.T, header, claims map[string]any, sign func([]byte) []byte) string {
	t.Helper()
	enc := func(v any) string {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return base64.RawURLEncoding.EncodeToString(b)
	}
	input := enc(header) + "." + enc(claims)
	return input + "." + base64.RawURLEncoding.EncodeToString(sign([]byte(input)))
}

// oidcIssuer is a real OIDC-style issuer for the test: a JWKS endpoint over HTTP and an RSA
// key that signs user tokens.
type oidcIssuer struct {
	url string
	key *rsa.PrivateKey
}

func newOIDCIssuer(t *testing.T) *oidcIssuer {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	jwks, _ := json.Marshal(map[string]any{"keys": []map[string]string{{
		"kty": "RSA", "kid": "idp-1", "alg": "RS256", "use": "sig",
		"n": base64.RawURLEncoding.EncodeToString(key.N.Bytes()),
		"e": base64.RawURLEncoding.EncodeToString(big.NewInt(int64(key.E)).Bytes()),
	}}})
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(jwks) }))
	t.Cleanup(hs.Close)
	return &oidcIssuer{url: hs.URL, key: key}
}

func (o *oidcIssuer) userToken(t *testing.T, sub, email string, groups []string, aud string) string {
	now := time.Now()
	return jws(t, map[string]any{"alg": "RS256", "typ": "JWT", "kid": "idp-1"},
		map[string]any{"iss": o.url, "sub": sub, "email": email, "groups": groups, "aud": aud,
			"iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix()},
		func(in []byte) []byte {
			h := sha256.Sum256(in)
			sig, err := rsa.SignPKCS1v15(rand.Reader, o.key, crypto.SHA256, h[:])
			if err != nil {
				t.Fatal(err)
			}
			return sig
		})
}

// adminDo calls the gateway's admin API and returns the status and body; a transport
// failure is a test error and status 0 (it may run on another goroutine).
func adminDo(t *testing.T, g *chaperonetest.Gateway, method, path string, body any) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = strings.NewReader(string(b))
	}
	req, _ := http.NewRequest(method, g.AdminURL+path, rd)
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(readFile(t, g.Config.Admin.TokenFile)))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Errorf("%s %s: %v", method, path, err)
		return 0, nil
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, data
}

// admin calls the gateway's admin API, fails the test unless it answers wantStatus, and
// decodes the answer into out.
func admin(t *testing.T, g *chaperonetest.Gateway, method, path string, body any, wantStatus int, out any) {
	t.Helper()
	code, data := adminDo(t, g, method, path, body)
	if code != wantStatus {
		t.Fatalf("%s %s = %d %s, want %d", method, path, code, data, wantStatus)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			t.Fatalf("%s %s: %v: %s", method, path, err, data)
		}
	}
}

// adminStatus calls the gateway's admin API and returns its status, decoding a 2xx
// answer into out.
func adminStatus(t *testing.T, g *chaperonetest.Gateway, method, path string, body any, out any) int {
	t.Helper()
	code, data := adminDo(t, g, method, path, body)
	if out != nil && code/100 == 2 {
		if err := json.Unmarshal(data, out); err != nil {
			t.Errorf("%s %s: %v: %s", method, path, err, data)
		}
	}
	return code
}

// tokenRequest posts a form to the token endpoint, with Basic credentials when user is set.
func tokenRequest(t *testing.T, g *chaperonetest.Gateway, user, secret string, form url.Values) (int, map[string]any) {
	t.Helper()
	base := strings.TrimSuffix(g.URL, "/mcp")
	req, _ := http.NewRequest(http.MethodPost, base+"/oauth/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if user != "" {
		req.SetBasicAuth(url.QueryEscape(user), url.QueryEscape(secret))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	json.NewDecoder(resp.Body).Decode(&m)
	return resp.StatusCode, m
}

func assertion(t *testing.T, g *chaperonetest.Gateway, agent string, key ed25519.PrivateKey, jti string) string {
	now := time.Now()
	aud := strings.TrimSuffix(g.URL, "/mcp") + "/oauth/token"
	return jws(t, map[string]any{"alg": "EdDSA", "typ": "JWT"},
		map[string]any{"iss": agent, "sub": agent, "aud": aud, "jti": jti, "iat": now.Unix(), "exp": now.Add(2 * time.Minute).Unix()},
		func(in []byte) []byte { return ed25519.Sign(key, in) })
}

// mcpStatus sends tools/list with a bearer token and returns the HTTP status and the
// WWW-Authenticate header.
func mcpStatus(t *testing.T, g *chaperonetest.Gateway, token string) (int, string) {
	t.Helper()
	resp := post(t, g.URL, token, "application/json", `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`)
	return resp.StatusCode, resp.Header.Get("WWW-Authenticate")
}

const identityPolicy = `
rules:
  - id: reads
    match: {classes: [read]}
    effect: allow
  - id: tickets-for-finance-users
    match: {tools: [create_ticket]}
    when: '"finance" in groups'
    effect: allow
`

// TestIdentityEndToEnd: an agent obtains a task-scoped token, calls within scope, is refused
// outside it, delegates a narrower token to a sub-agent, acts on behalf of a user from an
// OIDC issuer, and loses access the moment its task ends or it is suspended.
func TestIdentityEndToEnd(t *testing.T) {
	idp := newOIDCIssuer(t)
	g := chaperonetest.Start(t, chaperonetest.Options{
		Upstreams: []config.Upstream{{Name: "demo", Builtin: "demo"}},
		Tools: []config.Tool{
			{Upstream: "demo", Name: "read_inbox", Class: "read"},
			{Upstream: "demo", Name: "read_file", Class: "read"},
			{Upstream: "demo", Name: "create_ticket", Class: "write"},
		},
		Policy: identityPolicy,
		Configure: func(c *config.Config) {
			c.Identity.OIDC = []config.OIDCProvider{{Issuer: idp.url, JWKSURL: idp.url, Audience: "chaperone-test"}}
		},
	})

	var planner struct {
		Secret string `json:"secret"`
	}
	admin(t, g, "POST", "/v1/agents", map[string]any{"id": "planner", "owner": "dana@example.com", "purpose": "plans",
		"environment": "dev", "capabilities": []string{"read_inbox", "read_file", "create_ticket"}, "autonomy": 1, "with_secret": true}, 201, &planner)
	subPub, subKey, _ := ed25519.GenerateKey(rand.Reader)
	admin(t, g, "POST", "/v1/agents", map[string]any{"id": "helper", "owner": "dana@example.com", "purpose": "reads files",
		"environment": "dev", "capabilities": []string{"read_file", "read_inbox", "create_ticket"},
		"public_key": base64.StdEncoding.EncodeToString(subPub)}, 201, nil)

	// 1. A task-scoped token for the planner.
	status, tok := tokenRequest(t, g, "planner", planner.Secret, url.Values{"grant_type": {"client_credentials"}, "scope": {"read_inbox read_file"}, "max_calls": {"10"}})
	if status != 200 {
		t.Fatalf("client_credentials = %d %v", status, tok)
	}
	access, task := tok["access_token"].(string), tok["task"].(string)
	if tok["scope"] != "read_file read_inbox" || task == "" {
		t.Errorf("token response scope %q task %q", tok["scope"], task)
	}
	cs := g.Connect(t, access, "")
	if got := toolNames(t, cs); !slices.Equal(got, []string{"read_file", "read_inbox"}) {
		t.Errorf("tools with the task token = %v, want the task's two", got)
	}
	if got := refusal(t, call(t, cs, "read_inbox", map[string]any{})); got != "" {
		t.Errorf("call within scope refused: %s", got)
	}
	if got := refusal(t, call(t, cs, "create_ticket", map[string]any{"title": "x", "body": "y"})); got != "out_of_scope" {
		t.Errorf("call outside the task's scope: refusal %q, want out_of_scope", got)
	}

	// Asking for more than the agent may ever have is refused, not trimmed.
	if status, m := tokenRequest(t, g, "planner", planner.Secret, url.Values{"grant_type": {"client_credentials"}, "scope": {"read_inbox delete_everything"}}); status != 400 || m["error"] != "invalid_scope" {
		t.Errorf("scope beyond the registry = %d %v, want 400 invalid_scope", status, m)
	}
	if status, m := tokenRequest(t, g, "planner", "chs_wrong", url.Values{"grant_type": {"client_credentials"}}); status != 401 || m["error"] != "invalid_client" {
		t.Errorf("wrong secret = %d %v, want 401 invalid_client", status, m)
	}

	// 2. Delegation: the helper, proving itself with a signed assertion, exchanges the
	// planner's token for a narrower one.
	form := func(jti, scope string) url.Values {
		return url.Values{
			"grant_type": {"urn:ietf:params:oauth:grant-type:token-exchange"}, "subject_token": {access},
			"subject_token_type":    {"urn:ietf:params:oauth:token-type:access_token"},
			"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"},
			"client_assertion":      {assertion(t, g, "helper", subKey, jti)}, "scope": {scope},
		}
	}
	status, child := tokenRequest(t, g, "", "", form("a-1", "read_file"))
	if status != 200 {
		t.Fatalf("delegation = %d %v", status, child)
	}
	childCS := g.Connect(t, child["access_token"].(string), "")
	if got := toolNames(t, childCS); !slices.Equal(got, []string{"read_file"}) {
		t.Errorf("child tools = %v, want [read_file]", got)
	}
	if got := refusal(t, call(t, childCS, "read_file", map[string]any{"path": "/srv/demo/bills/march.txt"})); got != "" {
		t.Errorf("child call within scope refused: %s", got)
	}
	if got := refusal(t, call(t, childCS, "read_inbox", map[string]any{})); got != "out_of_scope" {
		t.Errorf("child call outside its narrower scope: %q, want out_of_scope", got)
	}
	// Widening is refused and audited.
	if status, m := tokenRequest(t, g, "", "", form("a-2", "read_file create_ticket")); status != 400 || m["error"] != "invalid_scope" {
		t.Errorf("widening delegation = %d %v, want 400 invalid_scope", status, m)
	}
	// A one-time assertion cannot be replayed.
	if status, m := tokenRequest(t, g, "", "", form("a-1", "read_file")); status != 401 || m["error"] != "invalid_client" {
		t.Errorf("replayed assertion = %d %v, want 401 invalid_client", status, m)
	}

	// 3. On behalf of a user: the planner exchanges Dana's token from the identity provider.
	obo := url.Values{
		"grant_type": {"urn:ietf:params:oauth:grant-type:token-exchange"}, "scope": {"create_ticket read_inbox"},
		"subject_token":      {idp.userToken(t, "u-123", "dana@example.com", []string{"staff", "finance"}, "chaperone-test")},
		"subject_token_type": {"urn:ietf:params:oauth:token-type:jwt"},
	}
	status, ob := tokenRequest(t, g, "planner", planner.Secret, obo)
	if status != 200 {
		t.Fatalf("on-behalf-of = %d %v", status, ob)
	}
	oboCS := g.Connect(t, ob["access_token"].(string), "")
	if got := refusal(t, call(t, oboCS, "create_ticket", map[string]any{"title": "expense", "body": "for dana"})); got != "" {
		t.Errorf("on-behalf-of call for a finance user refused: %s", got)
	}
	obo.Set("subject_token", idp.userToken(t, "u-9", "eve@example.com", []string{"staff"}, "chaperone-test"))
	_, eve := tokenRequest(t, g, "planner", planner.Secret, obo)
	if got := refusal(t, call(t, g.Connect(t, eve["access_token"].(string), ""), "create_ticket", map[string]any{"title": "x", "body": "y"})); got != "denied_by_policy" {
		t.Errorf("on-behalf-of call for a non-finance user: %q, want denied_by_policy", got)
	}
	obo.Set("subject_token", idp.userToken(t, "u-123", "dana@example.com", nil, "another-service"))
	if status, m := tokenRequest(t, g, "planner", planner.Secret, obo); status != 400 || m["error"] != "invalid_grant" {
		t.Errorf("user token for another audience = %d %v, want 400 invalid_grant", status, m)
	}

	// 4. Ending the task revokes every token bound to it at once, the delegated one too.
	admin(t, g, "POST", "/v1/tasks/"+task+"/end", map[string]string{"by": "dana", "reason": "done"}, 200, nil)
	for name, tk := range map[string]string{"parent": access, "child": child["access_token"].(string)} {
		if status, _ := mcpStatus(t, g, tk); status != 401 {
			t.Errorf("%s token after its task ended: HTTP %d, want 401", name, status)
		}
	}

	// 5. Suspension takes effect on the very next call; resume restores.
	oboTok := ob["access_token"].(string)
	admin(t, g, "POST", "/v1/agents/planner/suspend", map[string]string{"by": "ops", "reason": "investigating"}, 200, nil)
	if status, _ := mcpStatus(t, g, oboTok); status != 401 {
		t.Errorf("token of a suspended agent: HTTP %d, want 401", status)
	}
	admin(t, g, "POST", "/v1/agents/planner/resume", map[string]string{"by": "ops", "reason": "cleared"}, 200, nil)
	if status, _ := mcpStatus(t, g, oboTok); status != 200 {
		t.Errorf("token after resume: HTTP %d, want 200", status)
	}

	// 6. A prod agent cannot reach a dev upstream's tools.
	var prod struct {
		Secret string `json:"secret"`
	}
	admin(t, g, "POST", "/v1/agents", map[string]any{"id": "prod-bot-2", "owner": "ops@example.com", "purpose": "prod only",
		"environment": "prod", "capabilities": []string{"read_inbox"}, "with_secret": true}, 201, &prod)
	status, pt := tokenRequest(t, g, "prod-bot-2", prod.Secret, url.Values{"grant_type": {"client_credentials"}})
	if status != 200 {
		t.Fatalf("prod agent token = %d %v", status, pt)
	}
	if got := refusal(t, call(t, g.Connect(t, pt["access_token"].(string), ""), "read_inbox", map[string]any{})); got != "environment_mismatch" {
		t.Errorf("prod agent on a dev upstream: %q, want environment_mismatch", got)
	}

	// 7. Discovery: the challenge points at the protected resource metadata.
	status, challenge := mcpStatus(t, g, "")
	if status != 401 || !strings.Contains(challenge, "resource_metadata=") {
		t.Errorf("unauthenticated challenge = %d %q", status, challenge)
	}
	resp, err := http.Get(strings.TrimSuffix(g.URL, "/mcp") + "/.well-known/oauth-protected-resource")
	if err != nil {
		t.Fatal(err)
	}
	var prm map[string]any
	json.NewDecoder(resp.Body).Decode(&prm)
	resp.Body.Close()
	if prm["resource"] != g.URL || prm["authorization_servers"] == nil {
		t.Errorf("protected resource metadata = %v", prm)
	}

	// The evidence names both the user and the agent, and the delegation chain.
	g.Stop(t)
	var sawOBO, sawChain, sawWidening bool
	for _, e := range allEvents(t, g.Config.Store.SQLite) {
		if e.Kind == audit.KindCallOutcome && e.User == "dana@example.com" && e.Agent == "planner" {
			sawOBO = true
		}
		if e.Kind == audit.KindCallOutcome && slices.Equal(e.Chain, []string{"planner", "helper"}) {
			sawChain = true
		}
		if e.Kind == audit.KindDelegationRefused {
			sawWidening = true
		}
	}
	if !sawOBO || !sawChain || !sawWidening {
		t.Errorf("audit: on-behalf-of call %v, delegated call with chain %v, widening refusal %v; want all", sawOBO, sawChain, sawWidening)
	}
	if rep := verify(t, g.Config.Store.SQLite); rep.Broken != nil {
		t.Errorf("audit chain broken: %+v", rep.Broken)
	}
}
