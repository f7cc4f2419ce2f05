package daemon_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/chaperone-dev/chaperone/internal/audit"
	"github.com/chaperone-dev/chaperone/internal/chaperonetest"
	"github.com/chaperone-dev/chaperone/internal/config"
)

// oauthPolicy lets every agent read and file tickets, lets only "planner" send mail, and
// never lets anyone delete; transfer_money has no rule, so no agent may ever call it.
const oauthPolicy = `
rules:
  - id: reads
    match: {classes: [read]}
    effect: allow
  - id: tickets
    match: {tools: [create_ticket]}
    effect: allow
  - id: mail-for-planner
    match: {agents: [planner], tools: [send_email]}
    effect: allow
  - id: never-delete
    match: {tools: [delete_record]}
    effect: deny
`

const (
	grantExchange   = "urn:ietf:params:oauth:grant-type:token-exchange"
	typeAccessToken = "urn:ietf:params:oauth:token-type:access_token"
	typeJWT         = "urn:ietf:params:oauth:token-type:jwt"
	typeJWTBearer   = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
)

// startOAuth starts a gateway with the demo upstream's tools, oauthPolicy and one declared
// agent, "test-agent".
func startOAuth(t *testing.T, configure func(*config.Config)) *chaperonetest.Gateway {
	t.Helper()
	if testing.Short() {
		t.Skip("starts a gateway")
	}
	tool := func(name, class string) config.Tool { return config.Tool{Upstream: "demo", Name: name, Class: class} }
	return chaperonetest.Start(t, chaperonetest.Options{
		Upstreams: []config.Upstream{{Name: "demo", Builtin: "demo"}},
		Tools: []config.Tool{
			tool("read_inbox", "read"), tool("read_file", "read"), tool("create_ticket", "write"),
			tool("send_email", "external"), tool("delete_record", "destructive"), tool("transfer_money", "destructive"),
		},
		Policy:    oauthPolicy,
		Configure: configure,
	})
}

// tokenURL is the gateway's token endpoint, which is also the audience of client assertions.
func tokenURL(g *chaperonetest.Gateway) string {
	return strings.TrimSuffix(g.URL, "/mcp") + "/oauth/token"
}

// registerSecretAgent registers an agent with a client secret and returns the secret.
func registerSecretAgent(t *testing.T, g *chaperonetest.Gateway, id string, capabilities ...string) string {
	t.Helper()
	var out struct {
		Secret string `json:"secret"`
	}
	admin(t, g, "POST", "/v1/agents", map[string]any{"id": id, "owner": "ops@example.com", "purpose": "oauth tests",
		"environment": "dev", "capabilities": capabilities, "with_secret": true}, 201, &out)
	if out.Secret == "" {
		t.Fatalf("POST /v1/agents %s: no secret in the answer", id)
	}
	return out.Secret
}

// registerKeyAgent registers an agent with a fresh Ed25519 key and returns the private key.
func registerKeyAgent(t *testing.T, g *chaperonetest.Gateway, id string, capabilities ...string) ed25519.PrivateKey {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	admin(t, g, "POST", "/v1/agents", map[string]any{"id": id, "owner": "ops@example.com", "purpose": "oauth tests",
		"environment": "dev", "capabilities": capabilities, "public_key": base64.StdEncoding.EncodeToString(pub)}, 201, nil)
	return priv
}

// tokenResponse is one answer of the token endpoint.
type tokenResponse struct {
	status int
	header http.Header
	body   map[string]any
}

// String shows the answer without the token itself.
func (r tokenResponse) String() string {
	b := map[string]any{}
	for k, v := range r.body {
		b[k] = v
	}
	if tok, ok := b["access_token"].(string); ok {
		b["access_token"] = fmt.Sprintf("<%d bytes>", len(tok))
	}
	return fmt.Sprintf("%d %v", r.status, b)
}

// str returns a string member of the JSON answer.
func (r tokenResponse) str(key string) string {
	s, _ := r.body[key].(string)
	return s
}

// rawToken sends any request to the token endpoint; basic, if not nil, is the Basic user
// and password, form-urlencoded as RFC 6749 §2.3.1 wants.
func rawToken(t *testing.T, g *chaperonetest.Gateway, method, contentType, body string, basic []string) tokenResponse {
	t.Helper()
	req, err := http.NewRequest(method, tokenURL(g), strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if basic != nil {
		req.SetBasicAuth(url.QueryEscape(basic[0]), url.QueryEscape(basic[1]))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, tokenURL(g), err)
	}
	defer resp.Body.Close()
	var m map[string]any
	json.NewDecoder(resp.Body).Decode(&m) // 405 has no JSON body; m stays nil
	return tokenResponse{status: resp.StatusCode, header: resp.Header, body: m}
}

// formToken posts a form with optional Basic credentials.
func formToken(t *testing.T, g *chaperonetest.Gateway, basic []string, form url.Values) tokenResponse {
	t.Helper()
	return rawToken(t, g, http.MethodPost, "application/x-www-form-urlencoded", form.Encode(), basic)
}

// mustToken asks for a token with Basic credentials and fails the test unless it is issued.
func mustToken(t *testing.T, g *chaperonetest.Gateway, id, secret string, form url.Values) tokenResponse {
	t.Helper()
	r := formToken(t, g, []string{id, secret}, form)
	if r.status != http.StatusOK || r.str("access_token") == "" {
		t.Fatalf("token for %s with %v = %v, want 200 and a token", id, form, r)
	}
	return r
}

// exchangeForm is a token exchange of subject (of type typ) with extra parameters.
func exchangeForm(subject, typ string, extra url.Values) url.Values {
	f := url.Values{"grant_type": {grantExchange}, "subject_token": {subject}, "subject_token_type": {typ}}
	for k, v := range extra {
		f[k] = v
	}
	return f
}

// jwtPart decodes part i (0 header, 1 claims) of a compact JWS.
func jwtPart(t *testing.T, token string, i int) map[string]any {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("token %.20q... has %d parts, want 3", token, len(parts))
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[i])
	if err != nil {
		t.Fatalf("token part %d: %v", i, err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("token part %d: %v", i, err)
	}
	return m
}

// signAssertion builds a client assertion for agent with the given header and claim
// changes; a nil value in claims deletes the claim.
func signAssertion(t *testing.T, g *chaperonetest.Gateway, agent string, key ed25519.PrivateKey, header, claims map[string]any) string {
	t.Helper()
	now := time.Now()
	h := map[string]any{"alg": "EdDSA", "typ": "JWT"}
	c := map[string]any{"iss": agent, "sub": agent, "aud": tokenURL(g), "jti": rand.Text(),
		"iat": now.Unix(), "exp": now.Add(2 * time.Minute).Unix()}
	for k, v := range header {
		h[k] = v
	}
	for k, v := range claims {
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
	}
	return jws(t, h, c, func(in []byte) []byte { return ed25519.Sign(key, in) })
}

// callN makes n read_inbox calls and returns their refusal codes ("" for a call that ran).
func callN(t *testing.T, g *chaperonetest.Gateway, token string, n int) []string {
	t.Helper()
	cs := g.Connect(t, token, "")
	out := make([]string, n)
	for i := range out {
		out[i] = refusal(t, call(t, cs, "read_inbox", map[string]any{}))
	}
	return out
}

// TestTokenRequestShape: malformed requests are refused before any token is minted.
func TestTokenRequestShape(t *testing.T) {
	g := startOAuth(t, nil)
	secret := registerSecretAgent(t, g, "planner", "read_inbox", "read_file")
	basic := []string{"planner", secret}
	form := "application/x-www-form-urlencoded"
	manyTools := make([]string, 257)
	for i := range manyTools {
		manyTools[i] = "t" + strconv.Itoa(i)
	}

	tests := []struct {
		name        string
		method      string
		contentType string
		body        string
		wantStatus  int
		wantErr     string // "" when no JSON error is expected
	}{
		{name: "well-formed", method: "POST", contentType: form, body: "grant_type=client_credentials", wantStatus: 200},
		{name: "GET instead of POST", method: "GET", body: "", wantStatus: 405},
		{name: "JSON content type", method: "POST", contentType: "application/json", body: `{"grant_type":"client_credentials"}`, wantStatus: 400, wantErr: "invalid_request"},
		{name: "no content type", method: "POST", body: "grant_type=client_credentials", wantStatus: 400, wantErr: "invalid_request"},
		{name: "missing grant_type", method: "POST", contentType: form, body: "scope=read_inbox", wantStatus: 400, wantErr: "invalid_request"},
		{name: "unsupported grant_type", method: "POST", contentType: form, body: "grant_type=password&username=a&password=b", wantStatus: 400, wantErr: "unsupported_grant_type"},
		{name: "grant_type given twice", method: "POST", contentType: form, body: "grant_type=client_credentials&grant_type=client_credentials", wantStatus: 400, wantErr: "invalid_request"},
		{name: "scope given twice", method: "POST", contentType: form, body: "grant_type=client_credentials&scope=read_inbox&scope=read_file", wantStatus: 400, wantErr: "invalid_request"},
		{name: "body over 64 KiB", method: "POST", contentType: form, body: "grant_type=client_credentials&pad=" + strings.Repeat("a", 65<<10), wantStatus: 400, wantErr: "invalid_request"},
		{name: "expires_in 0", method: "POST", contentType: form, body: "grant_type=client_credentials&expires_in=0", wantStatus: 400, wantErr: "invalid_request"},
		{name: "expires_in negative", method: "POST", contentType: form, body: "grant_type=client_credentials&expires_in=-5", wantStatus: 400, wantErr: "invalid_request"},
		{name: "expires_in over max_token_ttl", method: "POST", contentType: form, body: "grant_type=client_credentials&expires_in=3601", wantStatus: 400, wantErr: "invalid_request"},
		{name: "expires_in not a number", method: "POST", contentType: form, body: "grant_type=client_credentials&expires_in=ten", wantStatus: 400, wantErr: "invalid_request"},
		{name: "expires_in overflowing a Duration", method: "POST", contentType: form, body: "grant_type=client_credentials&expires_in=9223372037", wantStatus: 400, wantErr: "invalid_request"},
		{name: "expires_in wrapping to under a second", method: "POST", contentType: form, body: "grant_type=client_credentials&expires_in=18446744074", wantStatus: 400, wantErr: "invalid_request"},
		{name: "max_calls 0", method: "POST", contentType: form, body: "grant_type=client_credentials&max_calls=0", wantStatus: 400, wantErr: "invalid_request"},
		{name: "max_calls huge", method: "POST", contentType: form, body: "grant_type=client_credentials&max_calls=1000000001", wantStatus: 400, wantErr: "invalid_request"},
		{name: "max_calls not a number", method: "POST", contentType: form, body: "grant_type=client_credentials&max_calls=many", wantStatus: 400, wantErr: "invalid_request"},
		{name: "scope with 257 tools", method: "POST", contentType: form, body: url.Values{"grant_type": {"client_credentials"}, "scope": {strings.Join(manyTools, " ")}}.Encode(), wantStatus: 400, wantErr: "invalid_request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := rawToken(t, g, tt.method, tt.contentType, tt.body, basic)
			if r.status != tt.wantStatus || r.str("error") != tt.wantErr {
				t.Errorf("%s /oauth/token %.80q = %v, want %d %q", tt.method, tt.body, r, tt.wantStatus, tt.wantErr)
			}
			if tt.wantErr != "" && r.str("error_description") == "" {
				t.Errorf("%s /oauth/token %.80q: error_description empty, want a sentence", tt.method, tt.body)
			}
			if tt.method == "POST" {
				if got := r.header.Get("Cache-Control"); got != "no-store" {
					t.Errorf("%s /oauth/token %.80q: Cache-Control = %q, want no-store", tt.method, tt.body, got)
				}
			}
		})
	}
}

// TestTokenClientAuthentication: every failed client authentication is 401 invalid_client
// with a challenge, and a token.refused event naming the precise reason.
func TestTokenClientAuthentication(t *testing.T) {
	g := startOAuth(t, nil)
	secret := registerSecretAgent(t, g, "planner", "read_inbox")
	suspendedSecret := registerSecretAgent(t, g, "paused", "read_inbox")
	admin(t, g, "POST", "/v1/agents/paused/suspend", map[string]string{"by": "ops", "reason": "test"}, 200, nil)
	revokedSecret := registerSecretAgent(t, g, "retired", "read_inbox")
	admin(t, g, "POST", "/v1/agents/retired/revoke", map[string]string{"by": "ops", "reason": "test"}, 200, nil)
	key := registerKeyAgent(t, g, "signer", "read_inbox")
	otherKey := registerKeyAgent(t, g, "other-signer", "read_inbox")
	declared := g.Agents["test-agent"]

	cc := func(extra url.Values) url.Values {
		f := url.Values{"grant_type": {"client_credentials"}}
		for k, v := range extra {
			f[k] = v
		}
		return f
	}
	withAssertion := func(a string) url.Values {
		return cc(url.Values{"client_assertion_type": {typeJWTBearer}, "client_assertion": {a}})
	}
	// A control: a valid assertion is accepted once; its replay is a row below.
	used := signAssertion(t, g, "signer", key, nil, nil)
	if r := formToken(t, g, nil, withAssertion(used)); r.status != 200 {
		t.Fatalf("token with a fresh assertion = %v, want 200", r)
	}
	if r := formToken(t, g, nil, cc(url.Values{"client_id": {"planner"}, "client_secret": {secret}})); r.status != 200 {
		t.Fatalf("token with client_secret_post = %v, want 200", r)
	}

	tests := []struct {
		name   string
		basic  []string
		form   url.Values
		detail string // what the token.refused event's detail must contain
	}{
		{name: "no authentication", form: cc(nil), detail: "0 client authentication methods"},
		{name: "client_id alone", form: cc(url.Values{"client_id": {"planner"}}), detail: "0 client authentication methods"},
		{name: "Basic and client_secret", basic: []string{"planner", secret}, form: cc(url.Values{"client_secret": {secret}}), detail: "2 client authentication methods"},
		{name: "client_secret and assertion", form: cc(url.Values{"client_id": {"signer"}, "client_secret": {"x"}, "client_assertion_type": {typeJWTBearer}, "client_assertion": {signAssertion(t, g, "signer", key, nil, nil)}}), detail: "2 client authentication methods"},
		{name: "wrong secret (Basic)", basic: []string{"planner", "chs_wrong"}, form: cc(nil), detail: "wrong secret"},
		{name: "wrong secret (post)", form: cc(url.Values{"client_id": {"planner"}, "client_secret": {"chs_wrong"}}), detail: "wrong secret"},
		{name: "unknown agent", basic: []string{"nobody", secret}, form: cc(nil), detail: "wrong secret, unknown agent"},
		{name: "suspended agent", basic: []string{"paused", suspendedSecret}, form: cc(nil), detail: "agent not active"},
		{name: "revoked agent", basic: []string{"retired", revokedSecret}, form: cc(nil), detail: "agent not active"},
		{name: "declared agent with its static token as secret", basic: []string{"test-agent", declared.Token}, form: cc(nil), detail: "wrong secret"},
		{name: "client_id differs from Basic user", basic: []string{"planner", secret}, form: cc(url.Values{"client_id": {"signer"}}), detail: "client_id differs from the Basic user"},
		{name: "Basic with an empty secret", basic: []string{"planner", ""}, form: cc(nil), detail: "secret"},
		{name: "declared agent, Basic with an empty secret", basic: []string{"test-agent", ""}, form: cc(nil), detail: "secret"},
		{name: "assertion with the wrong aud", form: withAssertion(signAssertion(t, g, "signer", key, nil, map[string]any{"aud": "https://elsewhere.example/oauth/token"})), detail: "bad_audience"},
		{name: "assertion expired", form: withAssertion(signAssertion(t, g, "signer", key, nil, map[string]any{"iat": time.Now().Add(-4 * time.Minute).Unix(), "exp": time.Now().Add(-2 * time.Minute).Unix()})), detail: "expired"},
		{name: "assertion replayed", form: withAssertion(used), detail: "replayed"},
		{name: "assertion signed by another agent's key", form: withAssertion(signAssertion(t, g, "signer", otherKey, nil, nil)), detail: "bad_signature"},
		{name: "assertion alg none", form: withAssertion(unsigned(signAssertion(t, g, "signer", key, map[string]any{"alg": "none"}, nil))), detail: "bad_alg"},
		{name: "assertion without jti", form: withAssertion(signAssertion(t, g, "signer", key, nil, map[string]any{"jti": nil})), detail: "missing_claim"},
		{name: "assertion of an unknown agent", form: withAssertion(signAssertion(t, g, "nobody", key, nil, nil)), detail: "unknown_agent"},
		{name: "assertion_type missing", form: cc(url.Values{"client_assertion": {signAssertion(t, g, "signer", key, nil, nil)}}), detail: "client_assertion_type is not jwt-bearer"},
		{name: "assertion with a different client_id", form: cc(url.Values{"client_id": {"planner"}, "client_assertion_type": {typeJWTBearer}, "client_assertion": {signAssertion(t, g, "signer", key, nil, nil)}}), detail: "client_id differs from the assertion's subject"},
	}
	var want []string // details of the refusals that must be on record
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := formToken(t, g, tt.basic, tt.form)
			challenge := r.header.Get("WWW-Authenticate")
			if r.status != 401 || r.str("error") != "invalid_client" || !strings.HasPrefix(challenge, "Basic ") {
				t.Errorf("POST /oauth/token %s (basic %q) = %v, WWW-Authenticate %q, want 401 invalid_client with a challenge", tt.name, tt.basic, r, challenge)
			}
			want = append(want, tt.detail)
		})
	}

	g.Stop(t)
	var refused []audit.Event
	for _, e := range allEvents(t, g.Config.Store.SQLite) {
		if e.Kind == audit.KindTokenRefused && e.Reason == "invalid_client" {
			refused = append(refused, e)
		}
	}
	if len(refused) != len(want) {
		t.Errorf("token.refused invalid_client events: %d, want %d (one per refused request)", len(refused), len(want))
	}
	for _, d := range want {
		if !slices.ContainsFunc(refused, func(e audit.Event) bool { return strings.Contains(e.Detail, d) && e.Decision == "refused" }) {
			t.Errorf("no token.refused event whose detail contains %q; events: %v", d, details(refused))
		}
	}
}

// unsigned drops a compact JWS's signature, as alg "none" wants.
func unsigned(token string) string { return token[:strings.LastIndex(token, ".")+1] }

func details(evs []audit.Event) []string {
	var out []string
	for _, e := range evs {
		out = append(out, e.Detail)
	}
	return out
}

// TestTokenScope: a scope is refused, not trimmed, when it names a tool the agent may never
// have; tools policy never lets the agent call are left out.
func TestTokenScope(t *testing.T) {
	g := startOAuth(t, nil)
	// send_email is planner's only; delete_record is denied; transfer_money has no rule.
	secret := registerSecretAgent(t, g, "scoper", "read_inbox", "read_file", "send_email", "delete_record", "transfer_money")
	tests := []struct {
		name       string
		scope      string // "" sends none
		wantStatus int
		wantErr    string
		wantScope  string
	}{
		{name: "default scope: every capable tool policy allows", wantStatus: 200, wantScope: "read_file read_inbox"},
		{name: "within capabilities", scope: "read_inbox", wantStatus: 200, wantScope: "read_inbox"},
		{name: "repeated tool", scope: "read_inbox read_inbox", wantStatus: 200, wantScope: "read_inbox"},
		{name: "policy-denied tool left out", scope: "read_inbox delete_record", wantStatus: 200, wantScope: "read_inbox"},
		{name: "tool allowed only to another agent left out", scope: "send_email read_file", wantStatus: 200, wantScope: "read_file"},
		{name: "nothing left after policy", scope: "delete_record transfer_money send_email", wantStatus: 400, wantErr: "invalid_scope"},
		{name: "unknown tool", scope: "read_inbox no_such_tool", wantStatus: 400, wantErr: "invalid_scope"},
		{name: "tool outside capabilities", scope: "read_inbox create_ticket", wantStatus: 400, wantErr: "invalid_scope"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			form := url.Values{"grant_type": {"client_credentials"}}
			if tt.scope != "" {
				form.Set("scope", tt.scope)
			}
			r := formToken(t, g, []string{"scoper", secret}, form)
			if r.status != tt.wantStatus || r.str("error") != tt.wantErr || r.str("scope") != tt.wantScope {
				t.Errorf("token with scope %q = %v, want %d error %q scope %q", tt.scope, r, tt.wantStatus, tt.wantErr, tt.wantScope)
			}
			if r.status == 200 {
				claims := jwtPart(t, r.str("access_token"), 1)
				if got := fmt.Sprint(claims["tools"]); got != "["+tt.wantScope+"]" {
					t.Errorf("token with scope %q: tools claim %s, want [%s]", tt.scope, got, tt.wantScope)
				}
			}
		})
	}
}

// TestTokenTasks: a token may join an open task of its agent, never another's or a closed
// one, and never outlives its task.
func TestTokenTasks(t *testing.T) {
	g := startOAuth(t, nil)
	secret := registerSecretAgent(t, g, "tasker", "read_inbox", "read_file")
	otherSecret := registerSecretAgent(t, g, "other", "read_inbox", "read_file")
	first := mustToken(t, g, "tasker", secret, url.Values{"grant_type": {"client_credentials"}, "scope": {"read_inbox"}, "expires_in": {"60"}})
	open := first.str("task")
	ended := mustToken(t, g, "tasker", secret, url.Values{"grant_type": {"client_credentials"}, "scope": {"read_inbox"}}).str("task")
	admin(t, g, "POST", "/v1/tasks/"+ended+"/end", map[string]string{"by": "ops", "reason": "done"}, 200, nil)

	type task struct {
		ID        string    `json:"id"`
		ExpiresAt time.Time `json:"expires_at"`
	}
	var tasks []task
	admin(t, g, "GET", "/v1/tasks", nil, 200, &tasks)
	i := slices.IndexFunc(tasks, func(x task) bool { return x.ID == open })
	if i < 0 {
		t.Fatalf("GET /v1/tasks = %v, want task %s among them", tasks, open)
	}
	taskExpiry := tasks[i].ExpiresAt

	tests := []struct {
		name       string
		id, secret string
		form       url.Values
		wantStatus int
		wantErr    string
	}{
		{name: "reuse an open task", id: "tasker", secret: secret, form: url.Values{"scope": {"read_inbox"}, "task": {open}}, wantStatus: 200},
		{name: "reuse, asking to outlive the task", id: "tasker", secret: secret, form: url.Values{"scope": {"read_inbox"}, "task": {open}, "expires_in": {"3600"}}, wantStatus: 200},
		{name: "reuse with a tool outside the task", id: "tasker", secret: secret, form: url.Values{"scope": {"read_file"}, "task": {open}}, wantStatus: 400, wantErr: "invalid_scope"},
		{name: "another agent's task", id: "other", secret: otherSecret, form: url.Values{"scope": {"read_inbox"}, "task": {open}}, wantStatus: 400, wantErr: "invalid_grant"},
		{name: "ended task", id: "tasker", secret: secret, form: url.Values{"scope": {"read_inbox"}, "task": {ended}}, wantStatus: 400, wantErr: "invalid_grant"},
		{name: "unknown task", id: "tasker", secret: secret, form: url.Values{"scope": {"read_inbox"}, "task": {"tsk_no_such_task"}}, wantStatus: 400, wantErr: "invalid_grant"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.form.Set("grant_type", "client_credentials")
			r := formToken(t, g, []string{tt.id, tt.secret}, tt.form)
			if r.status != tt.wantStatus || r.str("error") != tt.wantErr {
				t.Fatalf("token as %s with %v = %v, want %d %q", tt.id, tt.form, r, tt.wantStatus, tt.wantErr)
			}
			if r.status != 200 {
				return
			}
			claims := jwtPart(t, r.str("access_token"), 1)
			if r.str("task") != open || claims["task"] != open {
				t.Errorf("token as %s with %v: task %q, claim %v, want %s", tt.id, tt.form, r.str("task"), claims["task"], open)
			}
			exp := time.Unix(int64(claims["exp"].(float64)), 0)
			if exp.After(taskExpiry) {
				t.Errorf("token as %s with %v: exp %s, after its task's expiry %s", tt.id, tt.form, exp, taskExpiry)
			}
			if got, _ := r.body["expires_in"].(float64); got > 60 {
				t.Errorf("token as %s with %v: expires_in %v, want at most the task's 60", tt.id, tt.form, got)
			}
		})
	}
	// The token works against the MCP endpoint and is bound to the task.
	if status, _ := mcpStatus(t, g, first.str("access_token")); status != 200 {
		t.Errorf("tools/list with the task token: HTTP %d, want 200", status)
	}
}

// TestTokenExchange: token exchange for a user and for a sub-agent, and every way it is
// refused.
func TestTokenExchange(t *testing.T) {
	idp := newOIDCIssuer(t)
	untrusted := newOIDCIssuer(t)
	g := startOAuth(t, func(c *config.Config) {
		c.Identity.MaxDelegationDepth = 1
		c.Identity.OIDC = []config.OIDCProvider{{Issuer: idp.url, JWKSURL: idp.url, Audience: "chaperone-test"}}
	})
	planner := registerSecretAgent(t, g, "planner", "read_inbox", "read_file", "create_ticket")
	helper := registerSecretAgent(t, g, "helper", "read_inbox", "read_file", "create_ticket")
	third := registerSecretAgent(t, g, "third", "*")
	asPlanner, asHelper, asThird := []string{"planner", planner}, []string{"helper", helper}, []string{"third", third}

	parent := mustToken(t, g, "planner", planner, url.Values{"grant_type": {"client_credentials"}, "scope": {"read_inbox read_file"}, "max_calls": {"3"}, "expires_in": {"120"}})
	pt := parent.str("access_token")
	child := formToken(t, g, asHelper, exchangeForm(pt, typeAccessToken, url.Values{"scope": {"read_file"}, "max_calls": {"1"}}))
	if child.status != 200 {
		t.Fatalf("delegation planner → helper = %v, want 200", child)
	}
	if claims := jwtPart(t, child.str("access_token"), 1); claims["task"] != parent.str("task") || claims["depth"] != 1.0 {
		t.Errorf("delegated token claims task %v depth %v, want task %s depth 1", claims["task"], claims["depth"], parent.str("task"))
	}
	endedParent := mustToken(t, g, "planner", planner, url.Values{"grant_type": {"client_credentials"}, "scope": {"read_inbox"}})
	admin(t, g, "POST", "/v1/tasks/"+endedParent.str("task")+"/end", map[string]string{"by": "ops", "reason": "done"}, 200, nil)
	// The parent's header and claims with another token's signature.
	tampered := unsigned(pt) + endedParent.str("access_token")[strings.LastIndex(endedParent.str("access_token"), ".")+1:]
	// A user token of the trusted issuer, signed with another key.
	forged := untrusted.userToken(t, "u-1", "dana@example.com", nil, "chaperone-test")
	forgedParts := strings.Split(forged, ".")
	trustedParts := strings.Split(idp.userToken(t, "u-1", "dana@example.com", nil, "chaperone-test"), ".")
	badSig := trustedParts[0] + "." + trustedParts[1] + "." + forgedParts[2]

	tests := []struct {
		name       string
		basic      []string
		form       url.Values
		wantStatus int
		wantErr    string
	}{
		{name: "on behalf of a user", basic: asPlanner, form: exchangeForm(idp.userToken(t, "u-1", "dana@example.com", []string{"staff"}, "chaperone-test"), typeJWT, url.Values{"scope": {"read_inbox"}}), wantStatus: 200},
		{name: "subject_token missing", basic: asPlanner, form: url.Values{"grant_type": {grantExchange}, "subject_token_type": {typeJWT}}, wantStatus: 400, wantErr: "invalid_request"},
		{name: "unsupported subject_token_type", basic: asPlanner, form: exchangeForm(pt, "urn:ietf:params:oauth:token-type:saml2", nil), wantStatus: 400, wantErr: "invalid_request"},
		{name: "subject_token_type missing", basic: asHelper, form: exchangeForm(pt, "", nil), wantStatus: 400, wantErr: "invalid_request"},
		{name: "actor_token given", basic: asHelper, form: exchangeForm(pt, typeAccessToken, url.Values{"actor_token": {pt}, "actor_token_type": {typeAccessToken}}), wantStatus: 400, wantErr: "invalid_request"},
		{name: "user token from an untrusted issuer", basic: asPlanner, form: exchangeForm(forged, typeJWT, nil), wantStatus: 400, wantErr: "invalid_grant"},
		{name: "user token with a bad signature", basic: asPlanner, form: exchangeForm(badSig, typeJWT, nil), wantStatus: 400, wantErr: "invalid_grant"},
		{name: "user token for another audience", basic: asPlanner, form: exchangeForm(idp.userToken(t, "u-1", "dana@example.com", nil, "another-service"), typeJWT, nil), wantStatus: 400, wantErr: "invalid_grant"},
		{name: "user token not a JWT", basic: asPlanner, form: exchangeForm("not-a-jwt", typeJWT, nil), wantStatus: 400, wantErr: "invalid_grant"},
		{name: "parent token with a bad signature", basic: asHelper, form: exchangeForm(tampered, typeAccessToken, nil), wantStatus: 400, wantErr: "invalid_grant"},
		{name: "delegation beyond max_delegation_depth", basic: asThird, form: exchangeForm(child.str("access_token"), typeAccessToken, nil), wantStatus: 400, wantErr: "invalid_scope"},
		{name: "delegation back to an agent of the chain", basic: asPlanner, form: exchangeForm(pt, typeAccessToken, nil), wantStatus: 400, wantErr: "invalid_scope"},
		{name: "child wider than parent", basic: asHelper, form: exchangeForm(pt, typeAccessToken, url.Values{"scope": {"read_file create_ticket"}}), wantStatus: 400, wantErr: "invalid_scope"},
		{name: "child max_calls above the parent's remainder", basic: asHelper, form: exchangeForm(pt, typeAccessToken, url.Values{"max_calls": {"3"}}), wantStatus: 400, wantErr: "invalid_scope"},
		{name: "child expires_in beyond the parent's", basic: asHelper, form: exchangeForm(pt, typeAccessToken, url.Values{"expires_in": {"600"}}), wantStatus: 400, wantErr: "invalid_scope"},
		{name: "child in another task", basic: asHelper, form: exchangeForm(pt, typeAccessToken, url.Values{"task": {endedParent.str("task")}}), wantStatus: 400, wantErr: "invalid_scope"},
		{name: "parent whose task ended", basic: asHelper, form: exchangeForm(endedParent.str("access_token"), typeAccessToken, nil), wantStatus: 400, wantErr: "invalid_grant"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := formToken(t, g, tt.basic, tt.form)
			if r.status != tt.wantStatus || r.str("error") != tt.wantErr {
				t.Errorf("token exchange as %s (type %q) = %v, want %d %q", tt.basic[0], tt.form.Get("subject_token_type"), r, tt.wantStatus, tt.wantErr)
			}
		})
	}

	t.Run("expired parent token", func(t *testing.T) {
		short := mustToken(t, g, "planner", planner, url.Values{"grant_type": {"client_credentials"}, "scope": {"read_inbox"}, "expires_in": {"1"}})
		form := exchangeForm(short.str("access_token"), typeAccessToken, nil)
		var r tokenResponse
		deadline := time.Now().Add(3 * time.Second)
		for {
			r = formToken(t, g, asHelper, form)
			if r.status != 200 || time.Now().After(deadline) {
				break
			}
			// The bounded poll the brief allows: the token lives one second.
			time.Sleep(50 * time.Millisecond)
		}
		if r.status == 200 {
			t.Fatalf("token exchange of a 1s parent token still succeeds after 3s: %v", r)
		}
		if r.status != 400 || r.str("error") != "invalid_grant" {
			t.Errorf("exchange of an expired parent token = %v, want 400 invalid_grant (as for any other invalid subject token)", r)
		}
	})

	g.Stop(t)
	var sawDepth bool
	for _, e := range allEvents(t, g.Config.Store.SQLite) {
		if e.Kind == audit.KindDelegationRefused && e.Agent == "third" && strings.Contains(e.Detail, "depth") {
			sawDepth = true
		}
	}
	if !sawDepth {
		t.Errorf("no token.widening_refused event for third's second-level delegation")
	}
}

// TestBudgetEndToEnd: max_calls is enforced on calls, and a child's budget comes out of its
// parent's.
func TestBudgetEndToEnd(t *testing.T) {
	g := startOAuth(t, nil)
	planner := registerSecretAgent(t, g, "planner", "read_inbox", "read_file", "send_email")
	helper := registerSecretAgent(t, g, "helper", "read_inbox", "read_file", "send_email")
	cc := func(maxCalls string) url.Values {
		return url.Values{"grant_type": {"client_credentials"}, "scope": {"read_inbox send_email"}, "max_calls": {maxCalls}}
	}

	t.Run("max_calls 2", func(t *testing.T) {
		tok := mustToken(t, g, "planner", planner, cc("2")).str("access_token")
		if diff := cmp.Diff([]string{"", "", "budget_exhausted"}, callN(t, g, tok, 3)); diff != "" {
			t.Errorf("3 calls with max_calls=2: refusals (-want +got):\n%s", diff)
		}
	})
	t.Run("child takes its calls from the parent", func(t *testing.T) {
		parent := mustToken(t, g, "planner", planner, cc("3")).str("access_token")
		child := formToken(t, g, []string{"helper", helper}, exchangeForm(parent, typeAccessToken, url.Values{"scope": {"read_inbox"}, "max_calls": {"1"}}))
		if child.status != 200 {
			t.Fatalf("delegation with max_calls=1 = %v, want 200", child)
		}
		if diff := cmp.Diff([]string{"", "", "budget_exhausted"}, callN(t, g, parent, 3)); diff != "" {
			t.Errorf("parent's 3 calls after a 1-call child of its 3: refusals (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff([]string{"", "budget_exhausted"}, callN(t, g, child.str("access_token"), 2)); diff != "" {
			t.Errorf("child's 2 calls with max_calls=1: refusals (-want +got):\n%s", diff)
		}
	})
	t.Run("refused delegation leaves the parent's budget", func(t *testing.T) {
		parent := mustToken(t, g, "planner", planner, cc("3")).str("access_token")
		// Policy lets only planner send mail, so this delegation is refused...
		r := formToken(t, g, []string{"helper", helper}, exchangeForm(parent, typeAccessToken, url.Values{"scope": {"send_email"}, "max_calls": {"2"}}))
		if r.status != 400 || r.str("error") != "invalid_scope" {
			t.Fatalf("delegation of a tool policy hides from helper = %v, want 400 invalid_scope", r)
		}
		// ...and must not have spent any of the parent's calls.
		got := callN(t, g, parent, 3)
		if diff := cmp.Diff([]string{"", "", ""}, got); diff != "" {
			t.Errorf("a refused delegation spent the parent's calls: refusals (-want +got):\n%s", diff)
		}
	})
}

// TestOAuthMetadata: RFC 8414 and RFC 9728 metadata, the JWKS, and key rotation.
func TestOAuthMetadata(t *testing.T) {
	g := startOAuth(t, nil)
	secret := registerSecretAgent(t, g, "planner", "read_inbox")
	base := strings.TrimSuffix(g.URL, "/mcp")
	get := func(t *testing.T, path string, out any) http.Header {
		t.Helper()
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("GET %s = %d, want 200", path, resp.StatusCode)
		}
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		return resp.Header
	}
	type jwks struct {
		Keys []struct{ Kty, Crv, X, Kid, Alg, Use string } `json:"keys"`
	}
	kids := func(t *testing.T) []string {
		var set jwks
		h := get(t, "/oauth/jwks", &set)
		if ct := h.Get("Content-Type"); ct != "application/jwk-set+json" {
			t.Errorf("GET /oauth/jwks: Content-Type %q, want application/jwk-set+json", ct)
		}
		var out []string
		for _, k := range set.Keys {
			if k.Kty != "OKP" || k.Crv != "Ed25519" || k.Alg != "EdDSA" || k.Use != "sig" {
				t.Errorf("GET /oauth/jwks: key %+v, want OKP Ed25519 EdDSA sig", k)
			}
			if x, err := base64.RawURLEncoding.DecodeString(k.X); err != nil || len(x) != ed25519.PublicKeySize {
				t.Errorf("GET /oauth/jwks: key %s x has %d bytes (%v), want %d", k.Kid, len(x), err, ed25519.PublicKeySize)
			}
			out = append(out, k.Kid)
		}
		return out
	}
	newToken := func(t *testing.T) string {
		return mustToken(t, g, "planner", secret, url.Values{"grant_type": {"client_credentials"}}).str("access_token")
	}

	t.Run("authorization server metadata", func(t *testing.T) {
		var m struct {
			Issuer        string   `json:"issuer"`
			TokenEndpoint string   `json:"token_endpoint"`
			JWKSURI       string   `json:"jwks_uri"`
			Grants        []string `json:"grant_types_supported"`
			AuthMethods   []string `json:"token_endpoint_auth_methods_supported"`
			SigningAlgs   []string `json:"token_endpoint_auth_signing_alg_values_supported"`
			Scopes        []string `json:"scopes_supported"`
		}
		get(t, "/.well-known/oauth-authorization-server", &m)
		if m.Issuer != base || m.TokenEndpoint != base+"/oauth/token" || m.JWKSURI != base+"/oauth/jwks" {
			t.Errorf("GET /.well-known/oauth-authorization-server: issuer %q token_endpoint %q jwks_uri %q, want %q, %q, %q",
				m.Issuer, m.TokenEndpoint, m.JWKSURI, base, base+"/oauth/token", base+"/oauth/jwks")
		}
		for _, c := range []struct {
			what      string
			got, want []string
		}{
			{"grant_types_supported", m.Grants, []string{"client_credentials", grantExchange}},
			{"token_endpoint_auth_methods_supported", m.AuthMethods, []string{"client_secret_basic", "client_secret_post", "private_key_jwt"}},
			{"token_endpoint_auth_signing_alg_values_supported", m.SigningAlgs, []string{"EdDSA"}},
			{"scopes_supported", m.Scopes, []string{"create_ticket", "delete_record", "read_file", "read_inbox", "send_email", "transfer_money"}},
		} {
			if diff := cmp.Diff(c.want, c.got); diff != "" {
				t.Errorf("GET /.well-known/oauth-authorization-server: %s (-want +got):\n%s", c.what, diff)
			}
		}
	})
	for _, path := range []string{"/.well-known/oauth-protected-resource", "/.well-known/oauth-protected-resource/mcp"} {
		t.Run("protected resource metadata at "+path, func(t *testing.T) {
			var m struct {
				Resource string   `json:"resource"`
				Servers  []string `json:"authorization_servers"`
				Bearer   []string `json:"bearer_methods_supported"`
			}
			get(t, path, &m)
			if m.Resource != g.URL || !slices.Equal(m.Servers, []string{base}) || !slices.Equal(m.Bearer, []string{"header"}) {
				t.Errorf("GET %s = %+v, want resource %q, authorization_servers [%s], bearer [header]", path, m, g.URL, base)
			}
		})
	}
	t.Run("jwks and rotation", func(t *testing.T) {
		old := newToken(t)
		oldKid, _ := jwtPart(t, old, 0)["kid"].(string)
		if got := kids(t); !slices.Equal(got, []string{oldKid}) {
			t.Fatalf("GET /oauth/jwks kids = %v, want [%s] (the token header's kid)", got, oldKid)
		}
		var rotated struct {
			Kid string `json:"kid"`
		}
		admin(t, g, "POST", "/v1/keys/rotate", nil, 200, &rotated)
		if rotated.Kid == "" || rotated.Kid == oldKid {
			t.Fatalf("POST /v1/keys/rotate kid = %q, want a new kid (old %q)", rotated.Kid, oldKid)
		}
		if got, _ := jwtPart(t, newToken(t), 0)["kid"].(string); got != rotated.Kid {
			t.Errorf("token after rotation: kid %q, want %q", got, rotated.Kid)
		}
		if status, _ := mcpStatus(t, g, old); status != 200 {
			t.Errorf("tools/list with a token signed before rotation: HTTP %d, want 200", status)
		}
		if diff := cmp.Diff([]string{rotated.Kid, oldKid}, kids(t)); diff != "" {
			t.Errorf("GET /oauth/jwks after rotation: kids (-want +got):\n%s", diff)
		}
	})
}
