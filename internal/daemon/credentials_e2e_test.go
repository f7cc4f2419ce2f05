package daemon_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/chaperone-dev/chaperone/internal/audit"
	"github.com/chaperone-dev/chaperone/internal/chaperonetest"
	"github.com/chaperone-dev/chaperone/internal/config"
	"github.com/chaperone-dev/chaperone/internal/credential"
	"github.com/chaperone-dev/chaperone/internal/identity"
	"github.com/chaperone-dev/chaperone/internal/logtest"
	"github.com/chaperone-dev/chaperone/internal/secrets"
	"github.com/chaperone-dev/chaperone/internal/store/backend"
)

// tokenEndpoint is a real OAuth 2.0 token endpoint (client_secret_basic) issuing
// short-lived access tokens, each one new: for the client_credentials grant, and for the
// refresh_token grant with the current refresh token, which it rotates at every use.
type tokenEndpoint struct {
	clientID, clientSecret string
	lifetime               int // expires_in, seconds

	mu      sync.Mutex
	issued  []string
	refresh []string // every refresh token, the last the only valid one
}

func (te *tokenEndpoint) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	id, secret, ok := r.BasicAuth()
	if !ok || id != te.clientID || secret != te.clientSecret {
		w.WriteHeader(http.StatusUnauthorized)
		io.WriteString(w, `{"error":"invalid_client"}`)
		return
	}
	tok := "at-" + randomText(24)
	te.mu.Lock()
	defer te.mu.Unlock()
	switch r.PostFormValue("grant_type") {
	case "client_credentials":
		te.issued = append(te.issued, tok)
		fmt.Fprintf(w, `{"access_token":%q,"token_type":"Bearer","expires_in":%d}`, tok, te.lifetime)
	case "refresh_token":
		if len(te.refresh) == 0 || r.PostFormValue("refresh_token") != te.refresh[len(te.refresh)-1] {
			w.WriteHeader(http.StatusBadRequest)
			io.WriteString(w, `{"error":"invalid_grant"}`)
			return
		}
		next := "rt-" + randomText(24)
		te.issued, te.refresh = append(te.issued, tok), append(te.refresh, next)
		fmt.Fprintf(w, `{"access_token":%q,"token_type":"Bearer","expires_in":%d,"refresh_token":%q}`, tok, te.lifetime, next)
	default:
		w.WriteHeader(http.StatusBadRequest)
		io.WriteString(w, `{"error":"unsupported_grant_type"}`)
	}
}

// refreshTokens returns every refresh token, the first given by the operator.
func (te *tokenEndpoint) refreshTokens() []string {
	te.mu.Lock()
	defer te.mu.Unlock()
	return append([]string(nil), te.refresh...)
}

func (te *tokenEndpoint) tokens() []string {
	te.mu.Lock()
	defer te.mu.Unlock()
	return append([]string(nil), te.issued...)
}

func randomText(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// echoUpstream is a real streamable HTTP MCP server whose tool "whoami" answers with the
// Authorization header it received — the worst upstream: it echoes the credential back.
// Requests whose credential check fails get 401.
type echoUpstream struct {
	check func(authorization string) bool

	mu   sync.Mutex
	seen []string
}

func newEchoUpstream(t *testing.T, check func(string) bool) (*echoUpstream, string) {
	e := &echoUpstream{check: check}
	srv := mcp.NewServer(&mcp.Implementation{Name: "echo-upstream", Version: "1"}, nil)
	srv.AddTool(&mcp.Tool{Name: "whoami", Description: "Says who called.", InputSchema: json.RawMessage(`{"type":"object","properties":{"n":{"type":"integer"}}}`)},
		func(_ context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			h := req.Extra.Header.Get("Authorization")
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "you called with " + h}}}, nil
		})
	h := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return srv }, nil)
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a := r.Header.Get("Authorization")
		if !e.check(a) {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		e.mu.Lock()
		e.seen = append(e.seen, a)
		e.mu.Unlock()
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(ts.Close)
	return e, ts.URL
}

func (e *echoUpstream) last() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.seen) == 0 {
		return ""
	}
	return e.seen[len(e.seen)-1]
}

// seedSecrets stores secrets in the store the gateway of cfg will open, before it starts:
// what `chaperone secrets set` does against a running gateway.
func seedSecrets(t *testing.T, cfg *config.Config, values map[string]string) {
	t.Helper()
	c := *cfg
	c.ApplyDefaults()
	withVault(t, &c, func(ctx context.Context, v *secrets.Vault) {
		for name, val := range values {
			if _, err := v.Set(ctx, name, []byte(val), "", "test"); err != nil {
				t.Fatal(err)
			}
		}
	})
}

// revealStored reads a secret from the store of cfg's gateway with its key file, as a
// restarted gateway would.
func revealStored(t *testing.T, cfg *config.Config, name string) string {
	t.Helper()
	var out string
	withVault(t, cfg, func(ctx context.Context, v *secrets.Vault) {
		val, err := v.Reveal(ctx, name)
		if err != nil {
			t.Fatalf("reveal %s: %v", name, err)
		}
		out = string(val.Bytes())
	})
	return out
}

// withVault opens the store of cfg's gateway and a vault over it with its key file, and
// calls f with them; the store is closed when f returns.
func withVault(t *testing.T, cfg *config.Config, f func(context.Context, *secrets.Vault)) {
	t.Helper()
	ctx := context.Background()
	st, err := backend.Open(ctx, cfg.Store, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	kr, err := secrets.LoadKeyring(cfg.Secrets.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	v, err := secrets.NewVault(secrets.VaultOptions{Store: st, Keyring: func() *secrets.Keyring { return kr },
		Audit: func(context.Context, *audit.Event) error { return nil }})
	if err != nil {
		t.Fatal(err)
	}
	f(ctx, v)
}

func writeKeys(t *testing.T, path string, ids ...string) []string {
	t.Helper()
	var lines []string
	for _, id := range ids {
		l, err := secrets.GenerateKey(id)
		if err != nil {
			t.Fatal(err)
		}
		lines = append(lines, l)
	}
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return lines
}

// TestCredentialsNeverReachTheAgent drives the credential broker through a running gateway:
// an OAuth client secret and an API key held in the encrypted secret store, tokens obtained
// and refreshed from a real token endpoint, a signed receipt per call, upstreams that echo
// what they received — and then searches everything the agent received, the log, the audit
// log, the admin API's answers and the database files for every credential.
func TestCredentialsNeverReachTheAgent(t *testing.T) {
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "secrets.keys")
	k1 := writeKeys(t, keyFile, "k1")

	te := &tokenEndpoint{clientID: "chaperone-gw", clientSecret: "cs-" + randomText(24), lifetime: 2}
	te.refresh = []string{"rt-" + randomText(24)} // the one the operator stores
	tokenSrv := httptest.NewServer(te)
	t.Cleanup(tokenSrv.Close)
	filesKey := "fk-" + randomText(24)

	crm, crmURL := newEchoUpstream(t, func(a string) bool {
		tok, ok := strings.CutPrefix(a, "Bearer ")
		return ok && slices.Contains(te.tokens(), tok)
	})
	files, filesURL := newEchoUpstream(t, func(a string) bool { return a == "Bearer "+filesKey })
	billing, billingURL := newEchoUpstream(t, func(a string) bool { return strings.HasPrefix(a, "Bearer ey") })
	_, mailURL := newEchoUpstream(t, func(a string) bool {
		tok, ok := strings.CutPrefix(a, "Bearer ")
		return ok && slices.Contains(te.tokens(), tok)
	})

	logger, logs := logtest.New()
	g := chaperonetest.Start(t, chaperonetest.Options{
		Upstreams: []config.Upstream{
			{Name: "crm", URL: crmURL, Credential: &config.Credential{Type: "oauth_client_credentials", TokenURL: tokenSrv.URL,
				ClientID: te.clientID, ClientSecret: "secret:crm-client"}},
			{Name: "files", URL: filesURL, Credential: &config.Credential{Type: "bearer", Secret: "secret:files-key"}},
			{Name: "billing", URL: billingURL, Credential: &config.Credential{Type: "receipt", Audience: "https://billing.example"}},
			{Name: "mail", URL: mailURL, Credential: &config.Credential{Type: "oauth_refresh_token", TokenURL: tokenSrv.URL,
				ClientID: te.clientID, ClientSecret: "secret:crm-client", RefreshToken: "secret:mail-refresh"}},
		},
		Tools: []config.Tool{
			{Upstream: "crm", Name: "whoami", ExposeAs: "crm_whoami", Class: "read"},
			{Upstream: "files", Name: "whoami", ExposeAs: "files_whoami", Class: "read"},
			{Upstream: "billing", Name: "whoami", ExposeAs: "billing_whoami", Class: "read"},
			{Upstream: "mail", Name: "whoami", ExposeAs: "mail_whoami", Class: "read"},
		},
		Policy: "rules:\n  - id: reads\n    match: {classes: [read]}\n    effect: allow\n",
		Logger: logger,
		Configure: func(c *config.Config) {
			c.Secrets = config.Secrets{KeyFile: keyFile}
			c.Audit.Capture = config.CaptureArgumentsAndResults
			seedSecrets(t, c, map[string]string{"crm-client": te.clientSecret, "files-key": filesKey, "mail-refresh": te.refreshTokens()[0]})
		},
	})
	agent := g.Agents["test-agent"]
	cs := g.Connect(t, agent.Token, "")
	var received []string // everything the agent was given
	var n atomic.Int64    // varies the arguments, so that loop detection does not step in
	args := func() map[string]any { return map[string]any{"n": n.Add(1)} }

	call := func(tool string) string {
		t.Helper()
		res := chaperonetest.Call(t, cs, tool, args())
		b, _ := json.Marshal(res)
		received = append(received, string(b))
		if res.IsError {
			t.Fatalf("%s: %s", tool, b)
		}
		return string(b)
	}
	restCall := func(tool string) string {
		t.Helper()
		resp := post(t, strings.TrimSuffix(g.URL, g.Config.Server.Path)+"/v1/tools/"+tool+":call", agent.Token, "application/json", fmt.Sprintf(`{"arguments":{"n":%d}}`, n.Add(1)))
		b, _ := io.ReadAll(resp.Body)
		received = append(received, string(b), fmt.Sprint(resp.Header))
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("REST %s: %d %s", tool, resp.StatusCode, b)
		}
		return string(b)
	}

	// The upstreams saw the credentials (they would refuse otherwise); the agent sees a
	// redaction where an upstream echoed one.
	for _, tool := range []string{"crm_whoami", "files_whoami", "billing_whoami", "mail_whoami"} {
		for _, got := range []string{call(tool), restCall(tool)} {
			// The broker's own redaction, not only the secret sensor's (which may catch a
			// "Bearer" header too): the broker knows the exact values.
			if !strings.Contains(got, "you called with Bearer "+credential.Redaction) {
				t.Errorf("%s answered %s, want the echoed credential replaced by %s", tool, got, credential.Redaction)
			}
		}
	}

	// The receipt the billing upstream received verifies with the gateway's keys and names
	// the call it was for.
	rc, err := identity.VerifyReceipt(g.Daemon.SigningKeys(), strings.TrimPrefix(billing.last(), "Bearer "), strings.TrimSuffix(g.URL, g.Config.Server.Path), "https://billing.example", time.Now())
	if err != nil {
		t.Fatalf("VerifyReceipt: %v", err)
	}
	if rc.Tool != "billing_whoami" || rc.Agent != "test-agent" || rc.PolicyVersion != g.Daemon.Policy().Version() || len(rc.Rules) == 0 {
		t.Errorf("receipt claims = %+v, want tool billing_whoami, agent test-agent, the policy version and its rules", rc)
	}

	// The access token expires (2s) and the gateway fetches a new one by itself.
	first := len(te.tokens())
	chaperonetest.WaitFor(t, 10*time.Second, "a refreshed access token", func() bool {
		call("crm_whoami")
		return len(te.tokens()) > first
	})
	if got := crm.last(); got != "Bearer "+te.tokens()[len(te.tokens())-1] {
		t.Errorf("after the refresh the upstream saw %q, want the newest token", got)
	}

	// The token endpoint rotated the mail upstream's refresh token at each use; the gateway
	// wrote the newest back to the secret store, where a restart will find it.
	rts := te.refreshTokens()
	if len(rts) < 2 {
		t.Fatalf("the refresh token was used %d times, want at least once", len(rts)-1)
	}
	code, body := adminDo(t, g, http.MethodGet, "/v1/secrets/mail-refresh", nil)
	var meta secrets.Meta
	if err := json.Unmarshal(body, &meta); err != nil || code != http.StatusOK || meta.Version != int64(len(rts)) || meta.UpdatedBy != "credential-broker" {
		t.Errorf("GET /v1/secrets/mail-refresh = %d %s, want version %d set by credential-broker", code, body, len(rts))
	}
	if got := revealStored(t, g.Config, "mail-refresh"); got != rts[len(rts)-1] {
		t.Errorf("the stored refresh token is not the newest one the endpoint issued")
	}

	// Key rotation while calls run: a new primary key, every secret re-encrypted under it,
	// no call failing; then the old key leaves the key file and everything still opens.
	k2 := writeKeys(t, filepath.Join(dir, "k2.line"), "k2")
	if err := os.WriteFile(keyFile, []byte(k2[0]+"\n"+k1[0]+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var failed atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			cs := g.Connect(t, agent.Token, "")
			for {
				select {
				case <-stop:
					return
				default:
				}
				res, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: "files_whoami", Arguments: args()})
				if err != nil || res.IsError {
					failed.Add(1)
				}
			}
		})
	}
	code, body = adminDo(t, g, http.MethodPost, "/v1/secret-keys/rotate", map[string]any{})
	close(stop)
	wg.Wait()
	if code != http.StatusOK || failed.Load() != 0 {
		t.Fatalf("rotate = %d %s with %d calls failing meanwhile, want 200 and none", code, body, failed.Load())
	}
	code, body = adminDo(t, g, http.MethodGet, "/v1/secrets", nil)
	received = append(received, string(body)) // not the agent's, but searched all the same
	var list struct {
		Secrets []secrets.Meta `json:"secrets"`
	}
	if err := json.Unmarshal(body, &list); err != nil || code != http.StatusOK || len(list.Secrets) != 3 {
		t.Fatalf("GET /v1/secrets = %d %s", code, body)
	}
	for _, m := range list.Secrets {
		if m.KeyID != "k2" {
			t.Errorf("secret %s is under key %s after rotation, want k2", m.Name, m.KeyID)
		}
	}
	if err := os.WriteFile(keyFile, []byte(k2[0]+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := g.Daemon.ReloadPolicy(context.Background()); err != nil {
		t.Fatalf("reload: %v", err)
	}
	call("files_whoami")
	if files.last() != "Bearer "+filesKey {
		t.Errorf("after dropping the old key the files upstream saw %q", files.last())
	}
	// A policy reload re-reads the key file: a new primary key seals the next secret set.
	k3 := writeKeys(t, filepath.Join(dir, "k3.line"), "k3")
	if err := os.WriteFile(keyFile, []byte(k3[0]+"\n"+k2[0]+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := g.Daemon.ReloadPolicy(context.Background()); err != nil {
		t.Fatalf("reload: %v", err)
	}
	code, body = adminDo(t, g, http.MethodPut, "/v1/secrets/probe", map[string]any{"value": "probe-value-0123"})
	if err := json.Unmarshal(body, &meta); err != nil || code != http.StatusOK || meta.KeyID != "k3" {
		t.Errorf("PUT /v1/secrets/probe after the reload = %d %s, want it sealed with k3", code, body)
	}

	// The audit log names the credentials used, never their values.
	events := allEvents(t, g.Config.Store.SQLite)
	used := map[string]bool{}
	for _, e := range events {
		if e.Kind == audit.KindCallOutcome {
			for _, c := range e.Credentials {
				used[e.Tool+" "+c] = true
			}
		}
	}
	for _, want := range []string{"crm_whoami oauth_client_credentials:crm", "files_whoami bearer:files-key", "billing_whoami receipt:billing"} {
		if !used[want] {
			t.Errorf("no call.outcome of %s", want)
		}
	}

	// The search: no credential anywhere.
	values := map[string]string{"client secret": te.clientSecret, "files key": filesKey}
	for i, tok := range te.tokens() {
		values[fmt.Sprintf("access token %d", i)] = tok
	}
	values["receipt"] = strings.TrimPrefix(billing.last(), "Bearer ")
	for i, rt := range te.refreshTokens() {
		values[fmt.Sprintf("refresh token %d", i)] = rt
	}
	places := map[string]string{"agent": strings.Join(received, "\n"), "log": logs.String()}
	var auditText strings.Builder
	for _, e := range events {
		b, _ := json.Marshal(e)
		auditText.Write(b)
	}
	places["audit log"] = auditText.String()
	for _, f := range []string{g.Config.Store.SQLite, g.Config.Store.SQLite + "-wal"} {
		if b, err := os.ReadFile(f); err == nil {
			places[filepath.Base(f)] = string(b)
		}
	}
	for what, v := range values {
		for where, text := range places {
			if strings.Contains(text, v) {
				t.Errorf("the %s appears in the %s", what, where)
			}
		}
	}
	if !strings.Contains(logs.String(), "upstream") {
		t.Errorf("the log is empty: the search above proved nothing")
	}
}
