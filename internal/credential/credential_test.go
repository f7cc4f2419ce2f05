package credential

import (
	"context"
	"encoding/base64"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chaperone-dev/chaperone/internal/identity"
	"github.com/chaperone-dev/chaperone/internal/logtest"
	"github.com/chaperone-dev/chaperone/internal/testclock"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

const gatewayIssuer = "https://gateway.example"

// secretStore is a Resolver over a map, counting calls; it may be changed concurrently.
type secretStore struct {
	mu     sync.Mutex
	values map[string]string
	calls  atomic.Int64
}

func newSecrets(kv ...string) *secretStore {
	s := &secretStore{values: map[string]string{}}
	for i := 0; i+1 < len(kv); i += 2 {
		s.values[kv[i]] = kv[i+1]
	}
	return s
}

func (s *secretStore) set(ref, v string) {
	s.mu.Lock()
	s.values[ref] = v
	s.mu.Unlock()
}

func (s *secretStore) resolve(_ context.Context, ref string) ([]byte, error) {
	s.calls.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.values[ref]
	if !ok {
		return nil, fmt.Errorf("secret %s is not set", ref)
	}
	return []byte(v), nil
}

// env is what most tests need: a clock, keys and receipts, secrets and a log buffer.
type env struct {
	clock    *testclock.Clock
	keys     *identity.KeySet
	receipts *identity.Receipts
	secrets  *secretStore
	log      *logtest.Buffer
}

func newEnv(tb testing.TB, kv ...string) *env {
	tb.Helper()
	clock := testclock.New(t0)
	k, err := identity.GenerateSigningKey(t0.Add(-time.Hour))
	if err != nil {
		tb.Fatal(err)
	}
	ks, err := identity.NewKeySet([]identity.SigningKey{k}, time.Hour)
	if err != nil {
		tb.Fatal(err)
	}
	r, err := identity.NewReceipts(identity.ReceiptOptions{Issuer: gatewayIssuer, Keys: func() *identity.KeySet { return ks }, Now: clock.Now})
	if err != nil {
		tb.Fatal(err)
	}
	return &env{clock: clock, keys: ks, receipts: r, secrets: newSecrets(kv...), log: &logtest.Buffer{}}
}

func (e *env) options() Options {
	return Options{
		Resolve: e.secrets.resolve, Receipts: e.receipts, Now: e.clock.Now,
		Logger: slog.New(slog.NewTextHandler(e.log, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
}

func (e *env) broker(tb testing.TB, specs map[string]Spec) *Broker {
	tb.Helper()
	return e.brokerWith(tb, e.options(), specs)
}

func (e *env) brokerWith(tb testing.TB, o Options, specs map[string]Spec) *Broker {
	tb.Helper()
	b, err := New(o, specs)
	if err != nil {
		tb.Fatalf("New: %v", err)
	}
	return b
}

// headerServer is an upstream that records the headers of each request it receives.
type headerServer struct {
	*httptest.Server
	mu   sync.Mutex
	seen []http.Header // guarded by mu
}

func newHeaderServer(tb testing.TB) *headerServer {
	tb.Helper()
	hs := &headerServer{}
	hs.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hs.mu.Lock()
		hs.seen = append(hs.seen, r.Header.Clone())
		hs.mu.Unlock()
		w.Write([]byte("ok"))
	}))
	tb.Cleanup(hs.Close)
	return hs
}

func (hs *headerServer) last(tb testing.TB) http.Header {
	tb.Helper()
	hs.mu.Lock()
	defer hs.mu.Unlock()
	if len(hs.seen) == 0 {
		tb.Fatal("the upstream received no request")
	}
	return hs.seen[len(hs.seen)-1]
}

// get sends one GET to url through b's transport for upstream, with ci in the context if
// not nil, and returns the error, if any.
func get(tb testing.TB, b *Broker, upstream, url string, ci *CallInfo) error {
	tb.Helper()
	ctx := context.Background()
	if ci != nil {
		ctx = WithCall(ctx, ci)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		tb.Fatal(err)
	}
	c := &http.Client{Transport: b.Transport(upstream, nil)}
	res, err := c.Do(req)
	if err != nil {
		return err
	}
	res.Body.Close()
	return nil
}

// assertNoSecrets fails if s holds any of the values.
func assertNoSecrets(tb testing.TB, what, s string, values ...string) {
	tb.Helper()
	for _, v := range values {
		if v != "" && strings.Contains(s, v) {
			tb.Errorf("%s contains the secret %q:\n%s", what, v, s)
		}
	}
}

func TestSpecValidate(t *testing.T) {
	t.Parallel()
	ok := []Spec{
		{Type: TypeBearer, Secret: "secret:crm-key"},
		{Type: TypeBearer, Secret: "env:CRM_KEY", Header: "x-api-auth"},
		{Type: TypeHeader, Secret: "file:/etc/chaperone/crm.key", Header: "X-Api-Key", Prefix: "Token "},
		{Type: TypeBasic, Username: "svc", Password: "secret:pw"},
		{Type: TypeOAuthClientCredentials, TokenURL: "https://idp.example/token", ClientID: "gw", ClientSecret: "secret:cs", Scopes: []string{"crm.read", "crm:write"}, Audience: "crm", Resource: "https://crm.example/"},
		{Type: TypeOAuthClientCredentials, TokenURL: "http://127.0.0.1:8080/token", ClientID: "gw", ClientSecret: "secret:cs"},
		{Type: TypeOAuthClientCredentials, TokenURL: "http://localhost/token", ClientID: "gw", ClientSecret: "secret:cs"},
		{Type: TypeOAuthClientCredentials, TokenURL: "http://[::1]/token", ClientID: "gw", ClientSecret: "secret:cs"},
		{Type: TypeOAuthRefreshToken, TokenURL: "https://idp.example/token", ClientID: "gw", RefreshToken: "secret:rt"},
		{Type: TypeTokenExchange, TokenURL: "https://idp.example/token", ClientID: "gw", ClientSecret: "secret:cs", Audience: "crm"},
		{Type: TypeReceipt},
		{Type: TypeReceipt, TTL: time.Second, Audience: "billing"},
		{Type: TypeReceipt, TTL: 5 * time.Minute},
	}
	for _, s := range ok {
		if err := s.Validate(); err != nil {
			t.Errorf("Validate(%+v) = %v, want nil", s, err)
		}
	}
	for _, tc := range []struct {
		name string
		spec Spec
		want []string // substrings of the error
	}{
		{"no type", Spec{}, []string{"type: is required, want one of bearer"}},
		{"unknown type", Spec{Type: "mac"}, []string{`type: "mac" is not one of`}},
		{"bearer without secret", Spec{Type: TypeBearer}, []string{"secret: is required for type bearer"}},
		{"literal secret instead of ref", Spec{Type: TypeBearer, Secret: "sk_live_abcdef"}, []string{"secret: reference has no scheme, want secret:NAME"}},
		{"bad secret name", Spec{Type: TypeBearer, Secret: "secret:CRM KEY"}, []string{"secret: reference secret:NAME: secret name must match"}},
		{"empty secret name", Spec{Type: TypeBearer, Secret: "secret:"}, []string{"secret name must be 1 to 64 bytes, got 0"}},
		{"bad env name", Spec{Type: TypeBearer, Secret: "env:1X"}, []string{"variable name must be of A-Z"}},
		{"relative file", Spec{Type: TypeBearer, Secret: "file:crm.key"}, []string{"the path must be absolute"}},
		{"unclean file", Spec{Type: TypeBearer, Secret: "file:/etc/../crm.key"}, []string{"the path must be clean"}},
		{"ref with newline", Spec{Type: TypeBearer, Secret: "secret:a\nb"}, []string{"control byte (0x0a) at 8"}},
		{"prefix on bearer", Spec{Type: TypeBearer, Secret: "secret:k", Prefix: "Token "}, []string{"prefix: does not apply to type bearer"}},
		{"ttl on bearer", Spec{Type: TypeBearer, Secret: "secret:k", TTL: time.Second}, []string{"ttl: does not apply to type bearer"}},
		{"bad header name", Spec{Type: TypeHeader, Secret: "secret:k", Header: "X Api"}, []string{`header: "X Api" is not a valid HTTP header name`}},
		{"reserved header", Spec{Type: TypeHeader, Secret: "secret:k", Header: "content-length"}, []string{"header: Content-Length frames the request"}},
		{"mcp header", Spec{Type: TypeBearer, Secret: "secret:k", Header: "Mcp-Session-Id"}, []string{"header: Mcp-Session-Id"}},
		{"prefix with CRLF", Spec{Type: TypeHeader, Secret: "secret:k", Prefix: "Token\r\nX-Evil: 1"}, []string{"prefix: must be at most 64 bytes of header text"}},
		{"prefix too long", Spec{Type: TypeHeader, Secret: "secret:k", Prefix: strings.Repeat("p", 65)}, []string{"prefix: must be at most 64 bytes"}},
		{"basic username with colon", Spec{Type: TypeBasic, Username: "a:b", Password: "secret:pw"}, []string{"username: must be 1 to 256 printable bytes without ':'"}},
		{"basic without password", Spec{Type: TypeBasic, Username: "a"}, []string{"password: is required for type basic"}},
		{"cc without anything", Spec{Type: TypeOAuthClientCredentials}, []string{"token_url: is required", "client_id: is required", "client_secret: is required"}},
		{"token url http remote", Spec{Type: TypeOAuthClientCredentials, TokenURL: "http://idp.example/token", ClientID: "gw", ClientSecret: "secret:cs"}, []string{`token_url: "http://idp.example/token" must use https (http only on a loopback host)`}},
		{"token url with user info", Spec{Type: TypeOAuthClientCredentials, TokenURL: "https://gw:pw@idp.example/token", ClientID: "gw", ClientSecret: "secret:cs"}, []string{"token_url: must not carry credentials"}},
		{"token url relative", Spec{Type: TypeOAuthClientCredentials, TokenURL: "/token", ClientID: "gw", ClientSecret: "secret:cs"}, []string{"token_url: \"/token\" is not an absolute URL with a host"}},
		{"token url ftp", Spec{Type: TypeOAuthClientCredentials, TokenURL: "ftp://idp.example/token", ClientID: "gw", ClientSecret: "secret:cs"}, []string{`token_url: "ftp://idp.example/token" must use https`}},
		{"token url fragment", Spec{Type: TypeOAuthClientCredentials, TokenURL: "https://idp.example/token#x", ClientID: "gw", ClientSecret: "secret:cs"}, []string{"token_url: must not have a fragment"}},
		{"client id control", Spec{Type: TypeOAuthClientCredentials, TokenURL: "https://idp.example/token", ClientID: "g\x01w", ClientSecret: "secret:cs"}, []string{"client_id: must be 1 to 256 printable ASCII bytes"}},
		{"scope with space", Spec{Type: TypeOAuthClientCredentials, TokenURL: "https://idp.example/token", ClientID: "gw", ClientSecret: "secret:cs", Scopes: []string{"a b"}}, []string{"scopes[0]: must be 1 to 256 bytes of RFC 6749 scope characters"}},
		{"scope twice", Spec{Type: TypeOAuthClientCredentials, TokenURL: "https://idp.example/token", ClientID: "gw", ClientSecret: "secret:cs", Scopes: []string{"a", "a"}}, []string{`scopes[1]: "a" is listed twice`}},
		{"too many scopes", Spec{Type: TypeOAuthClientCredentials, TokenURL: "https://idp.example/token", ClientID: "gw", ClientSecret: "secret:cs", Scopes: manyScopes(33)}, []string{"scopes: 33 scopes, more than 32"}},
		{"resource relative", Spec{Type: TypeOAuthClientCredentials, TokenURL: "https://idp.example/token", ClientID: "gw", ClientSecret: "secret:cs", Resource: "crm"}, []string{"resource: is not an absolute URI"}},
		{"resource fragment", Spec{Type: TypeOAuthClientCredentials, TokenURL: "https://idp.example/token", ClientID: "gw", ClientSecret: "secret:cs", Resource: "https://crm.example/#a"}, []string{"resource: must not have a fragment"}},
		{"refresh without refresh token", Spec{Type: TypeOAuthRefreshToken, TokenURL: "https://idp.example/token", ClientID: "gw"}, []string{"refresh_token: is required for type oauth_refresh_token"}},
		{"refresh token on cc", Spec{Type: TypeOAuthClientCredentials, TokenURL: "https://idp.example/token", ClientID: "gw", ClientSecret: "secret:cs", RefreshToken: "secret:rt"}, []string{"refresh_token: does not apply to type oauth_client_credentials"}},
		{"receipt ttl too short", Spec{Type: TypeReceipt, TTL: 500 * time.Millisecond}, []string{"ttl: 500ms is not between 1s and 5m0s"}},
		{"receipt ttl too long", Spec{Type: TypeReceipt, TTL: 6 * time.Minute}, []string{"ttl: 6m0s is not between 1s and 5m0s"}},
		{"receipt ttl negative", Spec{Type: TypeReceipt, TTL: -time.Second}, []string{"ttl: -1s is not between"}},
		{"receipt with secret", Spec{Type: TypeReceipt, Secret: "secret:k"}, []string{"secret: does not apply to type receipt"}},
		{"audience control", Spec{Type: TypeReceipt, Audience: "a\nb"}, []string{"audience: must be 1 to 1024 printable ASCII bytes"}},
		{"every problem at once", Spec{Type: TypeBasic, Username: "a:b", Header: "Host", Prefix: "x", Secret: "nope"}, []string{"username:", "header: Host", "prefix: does not apply", "secret: does not apply", "password: is required"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.spec.Validate()
			if err == nil {
				t.Fatalf("Validate(%+v) = nil, want errors %q", tc.spec, tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate(%+v) = %q, want it to contain %q", tc.spec, err, w)
				}
			}
		})
	}
	t.Run("a secret pasted as a reference is not echoed", func(t *testing.T) {
		const pasted = "sk_live_4eC39HqLyjWDarjtT1zdp7dc"
		for _, s := range []Spec{
			{Type: TypeBearer, Secret: pasted},
			{Type: TypeBasic, Username: "u", Password: pasted},
			{Type: TypeOAuthClientCredentials, TokenURL: "https://i.example/t", ClientID: "c", ClientSecret: pasted},
			{Type: TypeOAuthRefreshToken, TokenURL: "https://i.example/t", ClientID: "c", RefreshToken: "secret:" + pasted},
			{Type: TypeBearer, Secret: "env:" + pasted + "-"},
		} {
			err := s.Validate()
			if err == nil {
				t.Fatalf("Validate(%+v) = nil, want an error", s)
			}
			assertNoSecrets(t, "Validate error", err.Error(), pasted)
		}
	})
}

func manyScopes(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("s%d", i)
	}
	return out
}

func TestNewValidates(t *testing.T) {
	t.Parallel()
	_, err := New(Options{}, map[string]Spec{
		"crm":     {Type: TypeBearer, Secret: "secret:crm-key"},
		"billing": {Type: TypeReceipt},
		"bad":     {Type: "mac"},
		"":        {Type: TypeReceipt},
	})
	if err == nil {
		t.Fatal("New = nil error, want one")
	}
	for _, w := range []string{`upstream "bad": type: "mac"`, "an upstream has no name", "resolve is required", "receipts is required"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("New error %q does not contain %q", err, w)
		}
	}
	// A public token_exchange client needs receipts but no resolver.
	e := newEnv(t)
	if _, err := New(Options{Receipts: e.receipts}, map[string]Spec{"x": {Type: TypeTokenExchange, TokenURL: "https://i.example/t", ClientID: "c"}}); err != nil {
		t.Errorf("New(public token_exchange, no resolver) = %v, want nil", err)
	}
}

func TestApplyStatic(t *testing.T) {
	t.Parallel()
	const (
		crmKey   = "crm-key-0123456789abcdef"
		apiToken = "tok_9f8e7d6c5b4a"
		password = `p@ss:w"rd\with:colons`
	)
	e := newEnv(t, "secret:crm-key", crmKey, "env:API_TOKEN", apiToken+"\n", "file:/run/pw", password+"\r\n")
	b := e.broker(t, map[string]Spec{
		"crm":    {Type: TypeBearer, Secret: "secret:crm-key"},
		"api":    {Type: TypeHeader, Secret: "env:API_TOKEN", Header: "x-api-key", Prefix: "Token "},
		"raw":    {Type: TypeHeader, Secret: "secret:crm-key", Header: "X-Key"},
		"legacy": {Type: TypeBasic, Username: "svc-chaperone", Password: "file:/run/pw"},
		"proxy":  {Type: TypeBasic, Username: "svc", Password: "file:/run/pw", Header: "Proxy-Authorization"},
	})
	srv := newHeaderServer(t)
	for _, tc := range []struct {
		upstream, header, want, label string
	}{
		{"crm", "Authorization", "Bearer " + crmKey, "bearer:crm-key"},
		{"api", "X-Api-Key", "Token " + apiToken, "header:API_TOKEN"},
		{"raw", "X-Key", crmKey, "header:crm-key"},
		{"legacy", "Authorization", "Basic " + base64.StdEncoding.EncodeToString([]byte("svc-chaperone:"+password)), "basic:/run/pw"},
		{"proxy", "Proxy-Authorization", "Basic " + base64.StdEncoding.EncodeToString([]byte("svc:"+password)), "basic:/run/pw"},
	} {
		t.Run(tc.upstream, func(t *testing.T) {
			ci := &CallInfo{Upstream: tc.upstream, Tool: "t"}
			if err := get(t, b, tc.upstream, srv.URL, ci); err != nil {
				t.Fatalf("GET through the transport: %v", err)
			}
			h := srv.last(t)
			if got := h.Get(tc.header); got != tc.want {
				t.Errorf("upstream saw %s: %q, want %q", tc.header, got, tc.want)
			}
			if tc.header != "Authorization" && h.Get("Authorization") != "" {
				t.Errorf("upstream saw an Authorization header %q; only %s was configured", h.Get("Authorization"), tc.header)
			}
			if got := ci.Used(); len(got) != 1 || got[0] != tc.label {
				t.Errorf("Used() = %q, want [%q]", got, tc.label)
			}
			if tc.upstream == "legacy" {
				// The server decodes the pair the way a real one would.
				r := &http.Request{Header: h}
				u, p, ok := r.BasicAuth()
				if !ok || u != "svc-chaperone" || p != password {
					t.Errorf("BasicAuth() = %q, %q, %v; want svc-chaperone and the password", u, p, ok)
				}
			}
		})
	}
	if !b.Redactor().Contains([]byte("x " + crmKey + " y")) {
		t.Error("the redactor does not know a resolved secret")
	}
}

func TestApplyNoSpec(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "secret:k", "0123456789")
	b := e.broker(t, map[string]Spec{"crm": {Type: TypeBearer, Secret: "secret:k"}})
	h := http.Header{"X-Keep": {"1"}}
	used, err := b.Apply(context.Background(), "other", &CallInfo{}, h)
	if used != "" || err != nil || len(h) != 1 || h.Get("X-Keep") != "1" {
		t.Errorf("Apply(no spec) = %q, %v, header %v; want \"\", nil, untouched", used, err, h)
	}
	if n := e.secrets.calls.Load(); n != 0 {
		t.Errorf("resolver called %d times for an upstream without a credential", n)
	}
}

func TestApplyResolveFailures(t *testing.T) {
	t.Parallel()
	const bad = "line1\nline2-secret"
	e := newEnv(t, "secret:empty", "\n", "secret:ctl", bad, "secret:big", strings.Repeat("x", maxSecret+1))
	b := e.broker(t, map[string]Spec{
		"missing": {Type: TypeBearer, Secret: "secret:missing"},
		"empty":   {Type: TypeBearer, Secret: "secret:empty"},
		"ctl":     {Type: TypeBearer, Secret: "secret:ctl"},
		"big":     {Type: TypeHeader, Secret: "secret:big"},
	})
	for _, tc := range []struct{ upstream, want string }{
		{"missing", `credential for upstream "missing": resolve secret:missing: secret secret:missing is not set`},
		{"empty", `credential for upstream "empty": resolve secret:empty: the secret is empty`},
		{"ctl", `credential for upstream "ctl": resolve secret:ctl: the secret holds control characters`},
		{"big", `credential for upstream "big": resolve secret:big: the secret is 8193 bytes, more than 8192`},
	} {
		h := http.Header{}
		used, err := b.Apply(context.Background(), tc.upstream, nil, h)
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("Apply(%s) = %q, %v; want error %q", tc.upstream, used, err, tc.want)
			continue
		}
		if len(h) != 0 {
			t.Errorf("Apply(%s) failed but set headers %v", tc.upstream, h)
		}
		assertNoSecrets(t, "Apply error", err.Error(), bad, "line2-secret")
	}
	if _, err := b.Apply(context.Background(), "missing", nil, nil); err == nil {
		t.Error("Apply with a nil header map succeeded")
	}
}

func TestApplyResolvesEveryTime(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "secret:k", "first-value-123")
	b := e.broker(t, map[string]Spec{"crm": {Type: TypeBearer, Secret: "secret:k"}})
	h := http.Header{}
	if _, err := b.Apply(context.Background(), "crm", nil, h); err != nil || h.Get("Authorization") != "Bearer first-value-123" {
		t.Fatalf("Apply = %v, header %q", err, h.Get("Authorization"))
	}
	e.secrets.set("secret:k", "second-value-456")
	if _, err := b.Apply(context.Background(), "crm", nil, h); err != nil || h.Get("Authorization") != "Bearer second-value-456" {
		t.Fatalf("Apply after rotation = %v, header %q, want the new secret", err, h.Get("Authorization"))
	}
	// Both values stay known to the redactor: the old one may still be in flight.
	for _, v := range []string{"first-value-123", "second-value-456"} {
		if !b.Redactor().Contains([]byte(v)) {
			t.Errorf("redactor does not know %q", v)
		}
	}
}

func TestApplyReceipt(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	b := e.broker(t, map[string]Spec{
		"billing": {Type: TypeReceipt},
		"ledger":  {Type: TypeReceipt, Audience: "https://ledger.example", TTL: 2 * time.Minute, Header: "X-Chaperone-Receipt"},
	})
	srv := newHeaderServer(t)
	ci := &CallInfo{
		Upstream: "billing", Tool: "billing.refund", Agent: "support-bot", User: "alice", Task: "task-9",
		RequestID: "req-1", PolicyVersion: "v7", ArgsHash: "sha256:00ff", Rules: []string{"refunds-small"}, Chain: []string{"support-bot"},
	}
	if err := get(t, b, "billing", srv.URL, ci); err != nil {
		t.Fatal(err)
	}
	raw, ok := strings.CutPrefix(srv.last(t).Get("Authorization"), "Bearer ")
	if !ok {
		t.Fatalf("Authorization = %q, want a Bearer receipt", srv.last(t).Get("Authorization"))
	}
	c, err := identity.VerifyReceipt(e.keys, raw, gatewayIssuer, "billing", t0)
	if err != nil {
		t.Fatalf("VerifyReceipt(the receipt the upstream saw): %v", err)
	}
	if c.Tool != "billing.refund" || c.Subject != "alice" || c.Agent != "support-bot" || c.Task != "task-9" ||
		c.RequestID != "req-1" || c.PolicyVersion != "v7" || c.ArgsHash != "sha256:00ff" || c.TTL != DefaultReceiptTTL ||
		len(c.Rules) != 1 || c.Rules[0] != "refunds-small" || len(c.Chain) != 1 {
		t.Errorf("receipt claims = %+v, want the call's", c)
	}
	if got := ci.Used(); len(got) != 1 || got[0] != "receipt:billing" {
		t.Errorf("Used() = %q, want [receipt:billing]", got)
	}
	if !b.Redactor().Contains([]byte(raw)) {
		t.Error("the redactor does not know the receipt")
	}
	if _, err := identity.VerifyReceipt(e.keys, raw, gatewayIssuer, "billing", t0.Add(DefaultReceiptTTL+6*time.Second)); err == nil {
		t.Error("the receipt verifies after its TTL")
	}

	// A request no call is behind: the receipt names no tool and is the gateway's own.
	if err := get(t, b, "ledger", srv.URL, nil); err != nil {
		t.Fatal(err)
	}
	raw2, _ := strings.CutPrefix(srv.last(t).Get("X-Chaperone-Receipt"), "Bearer ")
	c2, err := identity.VerifyReceipt(e.keys, raw2, gatewayIssuer, "https://ledger.example", t0.Add(119*time.Second))
	if err != nil {
		t.Fatalf("VerifyReceipt(session receipt): %v", err)
	}
	if c2.Tool != "" || c2.Subject != gatewayIssuer || c2.TTL != 2*time.Minute {
		t.Errorf("session receipt claims = %+v, want no tool, sub the gateway, ttl 2m", c2)
	}
	if _, err := identity.VerifyReceipt(e.keys, raw2, gatewayIssuer, "billing", t0); err == nil {
		t.Error("a receipt for ledger verifies for billing")
	}
}

func TestRefParsing(t *testing.T) {
	t.Parallel()
	for ref, name := range map[string]string{"secret:crm-key": "crm-key", "env:CRM_KEY": "CRM_KEY", "file:/run/s/k": "/run/s/k"} {
		if err := checkRef(ref); err != nil {
			t.Errorf("checkRef(%q) = %v", ref, err)
		}
		if got := refName(ref); got != name {
			t.Errorf("refName(%q) = %q, want %q", ref, got, name)
		}
	}
	for _, ref := range []string{"", "secret", "vault:x", "secret:-a", "secret:A", "env:", "env:A-B", "file:", "file:/a/", strings.Repeat("a", maxRef+1)} {
		if err := checkRef(ref); err == nil {
			t.Errorf("checkRef(%q) = nil, want an error", ref)
		}
	}
}

func FuzzCheckRef(f *testing.F) {
	for _, s := range []string{"secret:crm-key", "env:CRM_KEY", "file:/run/s/k", "", "secret:", "file:/a/../b", "vault:x", "secret:a\x00b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, ref string) {
		err := checkRef(ref)
		if err != nil && len(ref) >= 8 && strings.Contains(err.Error(), ref) {
			t.Fatalf("checkRef(%q) echoes its input: %v", ref, err)
		}
		if err == nil {
			if !strings.HasPrefix(ref, "secret:") && !strings.HasPrefix(ref, "env:") && !strings.HasPrefix(ref, "file:/") {
				t.Fatalf("checkRef(%q) = nil for an unknown scheme", ref)
			}
			if refName(ref) == "" {
				t.Fatalf("checkRef(%q) = nil with an empty name", ref)
			}
			// A valid reference is safe in a header-less log line: no control bytes.
			for i := 0; i < len(ref); i++ {
				if ref[i] < 0x20 || ref[i] == 0x7f {
					t.Fatalf("checkRef(%q) = nil with a control byte", ref)
				}
			}
		}
	})
}
