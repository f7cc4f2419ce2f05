package credential

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode"

	"github.com/chaperone-dev/chaperone/internal/identity"
)

// Values that must never appear in an error or a log.
const (
	testClientID     = "gateway client" // a space: form-encoded as '+' in Basic auth
	testClientSecret = "cs:with/special+chars&=%and-more"
)

// tokenEndpoint is a real OAuth token endpoint on loopback; handle answers each request
// after the method and content type have been checked.
type tokenEndpoint struct {
	*httptest.Server
	hits   atomic.Int64
	handle func(w http.ResponseWriter, r *http.Request, form url.Values)
}

func newTokenEndpoint(tb testing.TB, handle func(w http.ResponseWriter, r *http.Request, form url.Values)) *tokenEndpoint {
	tb.Helper()
	te := &tokenEndpoint{handle: handle}
	te.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		te.hits.Add(1)
		if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/x-www-form-urlencoded" {
			writeJSON(w, http.StatusBadRequest, map[string]any{"error": "invalid_request"})
			return
		}
		if err := r.ParseForm(); err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]any{"error": "invalid_request"})
			return
		}
		te.handle(w, r, r.PostForm)
	}))
	tb.Cleanup(te.Close)
	return te
}

func (te *tokenEndpoint) tokenURL() string { return te.URL + "/token" }

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// clientAuthOK checks client_secret_basic as RFC 6749 §2.3.1 defines it: the id and the
// secret are each form-urlencoded, then sent as HTTP Basic.
func clientAuthOK(r *http.Request) bool {
	u, p, ok := r.BasicAuth()
	if !ok {
		return false
	}
	id, err1 := url.QueryUnescape(u)
	secret, err2 := url.QueryUnescape(p)
	return err1 == nil && err2 == nil && id == testClientID && secret == testClientSecret
}

func ccSpec(tokenURL string) Spec {
	return Spec{Type: TypeOAuthClientCredentials, TokenURL: tokenURL, ClientID: testClientID, ClientSecret: "secret:crm-client"}
}

func TestClientCredentialsSharedAndCached(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	var problems atomic.Value
	te := newTokenEndpoint(t, func(w http.ResponseWriter, r *http.Request, f url.Values) {
		<-release
		var bad []string
		if !clientAuthOK(r) {
			bad = append(bad, "client auth")
		}
		if f.Get("grant_type") != "client_credentials" {
			bad = append(bad, "grant_type "+f.Get("grant_type"))
		}
		if f.Get("scope") != "crm.read crm.write" || f.Get("audience") != "crm-api" || f.Get("resource") != "https://crm.example/" {
			bad = append(bad, fmt.Sprintf("scope/audience/resource %q", f))
		}
		if f.Has("client_id") || f.Has("client_secret") {
			bad = append(bad, "client credentials in the body")
		}
		if len(bad) > 0 {
			problems.Store(strings.Join(bad, "; "))
			writeJSON(w, http.StatusUnauthorized, map[string]any{"error": "invalid_client"})
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"access_token": "at-shared-0001", "token_type": "bearer", "expires_in": 3600})
	})
	e := newEnv(t, "secret:crm-client", testClientSecret)
	spec := ccSpec(te.tokenURL())
	spec.Scopes, spec.Audience, spec.Resource = []string{"crm.read", "crm.write"}, "crm-api", "https://crm.example/"
	b := e.broker(t, map[string]Spec{"crm": spec})

	const n = 50
	var started, done sync.WaitGroup
	got := make([]string, n)
	errs := make([]error, n)
	for i := range n {
		started.Add(1)
		done.Go(func() {
			started.Done()
			h := http.Header{}
			_, errs[i] = b.Apply(context.Background(), "crm", &CallInfo{Upstream: "crm"}, h)
			got[i] = h.Get("Authorization")
		})
	}
	started.Wait()
	waitFor(t, "the first token request", func() bool { return te.hits.Load() >= 1 })
	close(release)
	done.Wait()
	for i := range n {
		if errs[i] != nil || got[i] != "Bearer at-shared-0001" {
			t.Fatalf("Apply #%d = %v, Authorization %q; want Bearer at-shared-0001", i, errs[i], got[i])
		}
	}
	if p := problems.Load(); p != nil {
		t.Fatalf("token endpoint refused the request: %s", p)
	}
	if h := te.hits.Load(); h != 1 {
		t.Errorf("token endpoint hit %d times by %d concurrent Applies, want 1", h, n)
	}
	e.clock.Advance(50 * time.Minute)
	used, err := b.Apply(context.Background(), "crm", nil, http.Header{})
	if err != nil || used != "oauth_client_credentials:crm" {
		t.Errorf("Apply later = %q, %v; want oauth_client_credentials:crm", used, err)
	}
	if h := te.hits.Load(); h != 1 {
		t.Errorf("token endpoint hit %d times, want the cached token reused", h)
	}
	if !b.Redactor().Contains([]byte("at-shared-0001")) || !b.Redactor().Contains([]byte(testClientSecret)) {
		t.Error("the redactor does not know the access token and the client secret")
	}
	assertNoSecrets(t, "log", e.log.String(), testClientSecret, "at-shared-0001")
}

// waitFor polls cond until it holds, failing the test after 10s.
func waitFor(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// countingEndpoint answers client_credentials with at-1, at-2, ... and expires_in, unless
// fail is set, then with status 500.
func countingEndpoint(tb testing.TB, expiresIn int, fail *atomic.Bool) *tokenEndpoint {
	var n atomic.Int64
	return newTokenEndpoint(tb, func(w http.ResponseWriter, r *http.Request, f url.Values) {
		if fail != nil && fail.Load() {
			http.Error(w, "upstream identity provider is down", http.StatusInternalServerError)
			return
		}
		if !clientAuthOK(r) {
			writeJSON(w, http.StatusUnauthorized, map[string]any{"error": "invalid_client"})
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"access_token": fmt.Sprintf("at-%d", n.Add(1)), "expires_in": expiresIn})
	})
}

func bearerOf(tb testing.TB, b *Broker, upstream string, ci *CallInfo) (string, error) {
	tb.Helper()
	h := http.Header{}
	_, err := b.Apply(context.Background(), upstream, ci, h)
	return strings.TrimPrefix(h.Get("Authorization"), "Bearer "), err
}

func TestTokenRefreshedBeforeExpiry(t *testing.T) {
	t.Parallel()
	te := countingEndpoint(t, 120, nil) // skew min(60s, 12s) = 12s: refreshed from 108s
	e := newEnv(t, "secret:crm-client", testClientSecret)
	b := e.broker(t, map[string]Spec{"crm": ccSpec(te.tokenURL())})
	for _, step := range []struct {
		at        time.Duration
		want      string
		wantFetch int64
	}{
		{0, "at-1", 1},
		{107 * time.Second, "at-1", 1},
		{108 * time.Second, "at-2", 2},
		{215 * time.Second, "at-2", 2},
		{216 * time.Second, "at-3", 3},
	} {
		e.clock.Set(t0.Add(step.at))
		got, err := bearerOf(t, b, "crm", nil)
		if err != nil || got != step.want || te.hits.Load() != step.wantFetch {
			t.Errorf("at +%s: token %q, %v, %d fetches; want %q after %d", step.at, got, err, te.hits.Load(), step.want, step.wantFetch)
		}
	}
	// Without expires_in a token lasts 300s (refreshed at 270s).
	te2 := newTokenEndpoint(t, func(w http.ResponseWriter, r *http.Request, f url.Values) {
		writeJSON(w, http.StatusOK, map[string]any{"access_token": "no-expiry-token"})
	})
	b2 := e.broker(t, map[string]Spec{"crm": ccSpec(te2.tokenURL())})
	e.clock.Set(t0)
	bearerOf(t, b2, "crm", nil)
	e.clock.Set(t0.Add(269 * time.Second))
	bearerOf(t, b2, "crm", nil)
	if h := te2.hits.Load(); h != 1 {
		t.Errorf("token without expires_in fetched %d times within 269s, want 1", h)
	}
	e.clock.Set(t0.Add(270 * time.Second))
	bearerOf(t, b2, "crm", nil)
	if h := te2.hits.Load(); h != 2 {
		t.Errorf("token without expires_in fetched %d times by 270s, want 2", h)
	}
}

func TestFailedFetchIsRateLimited(t *testing.T) {
	t.Parallel()
	var fail atomic.Bool
	fail.Store(true)
	te := countingEndpoint(t, 100, &fail) // refreshed from 90s
	e := newEnv(t, "secret:crm-client", testClientSecret)
	b := e.broker(t, map[string]Spec{"crm": ccSpec(te.tokenURL())})

	step := func(at time.Duration, wantToken string, wantErr string, wantHits int64) {
		t.Helper()
		e.clock.Set(t0.Add(at))
		got, err := bearerOf(t, b, "crm", nil)
		switch {
		case wantErr == "" && err != nil:
			t.Errorf("at +%s: Apply = %v, want token %q", at, err, wantToken)
		case wantErr != "" && (err == nil || !strings.Contains(err.Error(), wantErr)):
			t.Errorf("at +%s: Apply = %q, %v; want error containing %q", at, got, err, wantErr)
		case wantErr == "" && got != wantToken:
			t.Errorf("at +%s: token %q, want %q", at, got, wantToken)
		}
		if h := te.hits.Load(); h != wantHits {
			t.Errorf("at +%s: %d token requests, want %d", at, h, wantHits)
		}
	}
	const down = `credential for upstream "crm": token endpoint: status 500`
	step(0, "", down, 1)
	step(0, "", down, 1)                        // within the second: the error, no request
	step(999*time.Millisecond, "", down, 1)     // still within
	step(time.Second, "", down, 2)              // one retry a second
	fail.Store(false)                           //
	step(1500*time.Millisecond, "", down, 2)    // recovered, but within the second
	step(2*time.Second, "at-1", "", 3)          // fetched: valid until 102s, refreshed from 92s
	step(91*time.Second, "at-1", "", 3)         // cached
	fail.Store(true)                            //
	step(92*time.Second, "at-1", "", 4)         // renewal fails: the current token still works
	step(92500*time.Millisecond, "at-1", "", 4) // and is used without a request
	step(93*time.Second, "at-1", "", 5)         // retried a second later
	step(102*time.Second, "", down, 6)          // expired: the error now
	fail.Store(false)
	step(103*time.Second, "at-2", "", 7)
	if !strings.Contains(e.log.String(), "upstream token not renewed") {
		t.Errorf("log does not record the failed renewal:\n%s", e.log.String())
	}
	assertNoSecrets(t, "log", e.log.String(), testClientSecret, "at-1", "at-2")
}

func TestWaitingForTokenHonoursCancellation(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	te := newTokenEndpoint(t, func(w http.ResponseWriter, r *http.Request, f url.Values) {
		<-release
		writeJSON(w, http.StatusOK, map[string]any{"access_token": "late-token-1"})
	})
	e := newEnv(t, "secret:crm-client", testClientSecret)
	b := e.broker(t, map[string]Spec{"crm": ccSpec(te.tokenURL())})
	var wg sync.WaitGroup
	var leaderErr error
	wg.Go(func() { _, leaderErr = b.Apply(context.Background(), "crm", nil, http.Header{}) })
	waitFor(t, "the token request", func() bool { return te.hits.Load() == 1 })
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := b.Apply(ctx, "crm", nil, http.Header{}); !errors.Is(err, context.Canceled) {
		t.Errorf("Apply(canceled ctx) while a fetch is under way = %v, want context.Canceled", err)
	}
	close(release)
	wg.Wait()
	if leaderErr != nil {
		t.Errorf("the fetching Apply = %v", leaderErr)
	}
}

func TestRefreshTokenRotation(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	current := "rt-initial-0001" // the refresh token the endpoint accepts; guarded by mu
	rotations := 0
	te := newTokenEndpoint(t, func(w http.ResponseWriter, r *http.Request, f url.Values) {
		mu.Lock()
		defer mu.Unlock()
		if _, _, basic := r.BasicAuth(); basic || f.Get("client_id") != "public-gw" {
			writeJSON(w, http.StatusUnauthorized, map[string]any{"error": "invalid_client"})
			return
		}
		if f.Get("grant_type") != "refresh_token" || f.Get("scope") != "mail.read" {
			writeJSON(w, http.StatusBadRequest, map[string]any{"error": "invalid_request"})
			return
		}
		if f.Get("refresh_token") != current {
			writeJSON(w, http.StatusBadRequest, map[string]any{"error": "invalid_grant", "error_description": "refresh token " + f.Get("refresh_token") + " is revoked"})
			return
		}
		rotations++
		current = fmt.Sprintf("rt-rotated-%04d", rotations)
		writeJSON(w, http.StatusOK, map[string]any{"access_token": fmt.Sprintf("at-mail-%04d", rotations), "expires_in": 60, "refresh_token": current})
	})
	e := newEnv(t, "secret:mail-rt", "rt-initial-0001")
	type save struct{ ref, token string }
	var saves []save
	var saveFails atomic.Bool
	o := e.options()
	o.SaveRefreshToken = func(ctx context.Context, ref string, token []byte) error {
		saves = append(saves, save{ref, string(token)}) // called by the one fetching caller
		if saveFails.Load() {
			return errors.New("vault is read-only")
		}
		return nil
	}
	b := e.brokerWith(t, o, map[string]Spec{"mail": {
		Type: TypeOAuthRefreshToken, TokenURL: te.tokenURL(), ClientID: "public-gw", RefreshToken: "secret:mail-rt", Scopes: []string{"mail.read"},
	}})

	tok, err := bearerOf(t, b, "mail", nil)
	if err != nil || tok != "at-mail-0001" {
		t.Fatalf("first Apply = %q, %v; want at-mail-0001", tok, err)
	}
	if len(saves) != 1 || saves[0] != (save{"secret:mail-rt", "rt-rotated-0001"}) {
		t.Fatalf("SaveRefreshToken calls = %v, want one with secret:mail-rt and rt-rotated-0001", saves)
	}
	// The endpoint now accepts only the rotated token: the broker must use it.
	e.clock.Advance(60 * time.Second)
	tok, err = bearerOf(t, b, "mail", nil)
	if err != nil || tok != "at-mail-0002" {
		t.Fatalf("Apply after expiry = %q, %v; want at-mail-0002 (with the rotated refresh token)", tok, err)
	}
	if len(saves) != 2 || saves[1].token != "rt-rotated-0002" {
		t.Fatalf("SaveRefreshToken calls = %v, want the second rotation saved", saves)
	}

	// A save that fails is logged (by ref name), and the rotated token still used.
	saveFails.Store(true)
	e.clock.Advance(60 * time.Second)
	if tok, err := bearerOf(t, b, "mail", nil); err != nil || tok != "at-mail-0003" {
		t.Fatalf("Apply with a failing save = %q, %v; want at-mail-0003", tok, err)
	}
	if log := e.log.String(); !strings.Contains(log, "rotated refresh token not saved") || !strings.Contains(log, "secret:mail-rt") {
		t.Errorf("log does not name the unsaved refresh token's ref:\n%s", log)
	}
	saveFails.Store(false)
	e.clock.Advance(60 * time.Second)
	if tok, err := bearerOf(t, b, "mail", nil); err != nil || tok != "at-mail-0004" {
		t.Fatalf("Apply after the failed save = %q, %v; want at-mail-0004 (rotated token kept in memory)", tok, err)
	}

	// The operator revokes the chain and puts a fresh token in the vault: the broker gets
	// invalid_grant once, then reads the reference again.
	mu.Lock()
	current = "rt-from-operator-01"
	mu.Unlock()
	e.secrets.set("secret:mail-rt", "rt-from-operator-01")
	e.clock.Advance(60 * time.Second)
	_, err = bearerOf(t, b, "mail", nil)
	if err == nil || !strings.Contains(err.Error(), "status 400: invalid_grant") {
		t.Fatalf("Apply with a revoked refresh token = %v, want invalid_grant", err)
	}
	assertNoSecrets(t, "invalid_grant error", err.Error(), "rt-rotated-0004")
	if !strings.Contains(err.Error(), Redaction) {
		t.Errorf("error %q: the echoed refresh token was not redacted", err)
	}
	e.clock.Advance(time.Second)
	if tok, err := bearerOf(t, b, "mail", nil); err != nil || tok != "at-mail-0005" {
		t.Fatalf("Apply after the operator's fix = %q, %v; want at-mail-0005", tok, err)
	}
	assertNoSecrets(t, "log", e.log.String(), "rt-initial-0001", "rt-rotated-0001", "rt-rotated-0002", "rt-rotated-0004", "rt-from-operator-01", "at-mail-0001", "at-mail-0005")
	for _, v := range []string{"rt-initial-0001", "rt-rotated-0003", "at-mail-0004"} {
		if !b.Redactor().Contains([]byte(v)) {
			t.Errorf("the redactor does not know %q", v)
		}
	}
}

func TestTokenExchangePerUser(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "secret:crm-client", testClientSecret)
	var n atomic.Int64
	var problems sync.Map
	te := newTokenEndpoint(t, func(w http.ResponseWriter, r *http.Request, f url.Values) {
		fail := func(p string) {
			problems.Store(p, true)
			writeJSON(w, http.StatusBadRequest, map[string]any{"error": "invalid_request"})
		}
		if !clientAuthOK(r) {
			fail("client auth")
			return
		}
		if f.Get("grant_type") != "urn:ietf:params:oauth:grant-type:token-exchange" ||
			f.Get("subject_token_type") != "urn:ietf:params:oauth:token-type:jwt" ||
			f.Get("requested_token_type") != "urn:ietf:params:oauth:token-type:access_token" {
			fail("grant parameters " + f.Encode())
			return
		}
		aud := f.Get("audience")
		if aud == "" {
			aud = "http://" + r.Host + "/token" // without an audience the subject token is for the endpoint
		}
		user, agent, err := identity.VerifySubject(e.keys, f.Get("subject_token"), gatewayIssuer, aud, e.clock.Now())
		if err != nil {
			fail("subject token: " + err.Error())
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"access_token": fmt.Sprintf("at-%s-%s-%d", user, agent, n.Add(1)), "token_type": "Bearer", "expires_in": 600, "issued_token_type": "urn:ietf:params:oauth:token-type:access_token"})
	})
	spec := Spec{Type: TypeTokenExchange, TokenURL: te.tokenURL(), ClientID: testClientID, ClientSecret: "secret:crm-client", Audience: "crm"}
	noAud := spec
	noAud.Audience = ""
	b := e.broker(t, map[string]Spec{"crm": spec, "crm2": noAud})
	for _, step := range []struct {
		upstream, user, agent, want string
		hits                        int64
	}{
		{"crm", "alice", "a1", "at-alice-a1-1", 1},
		{"crm", "bob", "a1", "at-bob-a1-2", 2},
		{"crm", "alice", "a1", "at-alice-a1-1", 2}, // cached per user
		{"crm", "alice", "a2", "at-alice-a2-3", 3}, // and per acting agent
		{"crm2", "alice", "a1", "at-alice-a1-4", 4},
	} {
		got, err := bearerOf(t, b, step.upstream, &CallInfo{Upstream: step.upstream, User: step.user, Agent: step.agent, Tool: "crm.read"})
		if err != nil || got != step.want || te.hits.Load() != step.hits {
			t.Errorf("%s for %s/%s: %q, %v after %d requests; want %q after %d", step.upstream, step.user, step.agent, got, err, te.hits.Load(), step.want, step.hits)
		}
	}
	problems.Range(func(k, _ any) bool { t.Errorf("token endpoint refused: %s", k); return true })

	h := http.Header{}
	_, err := b.Apply(context.Background(), "crm", &CallInfo{Upstream: "crm", Agent: "a1", Tool: "crm.read"}, h)
	if err == nil || !strings.Contains(err.Error(), "token_exchange needs a user to act for") {
		t.Errorf("Apply of a call without a user = %v, want refused", err)
	}
	if len(h) != 0 || te.hits.Load() != 4 {
		t.Errorf("refused Apply set %v or reached the endpoint (%d requests)", h, te.hits.Load())
	}
}

// TestTokenExchangeSessionSetup: requests that carry no call (an MCP session's initialize
// and tool lists) act for nobody; they get the client's own client_credentials token, not
// a token for some user.
func TestTokenExchangeSessionSetup(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "secret:crm-client", testClientSecret)
	var grants sync.Map
	var n atomic.Int64
	te := newTokenEndpoint(t, func(w http.ResponseWriter, r *http.Request, f url.Values) {
		if !clientAuthOK(r) {
			writeJSON(w, http.StatusUnauthorized, map[string]any{"error": "invalid_client"})
			return
		}
		grants.Store(f.Get("grant_type"), true)
		if f.Get("grant_type") == "client_credentials" && f.Get("subject_token") != "" {
			writeJSON(w, http.StatusBadRequest, map[string]any{"error": "invalid_request"})
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"access_token": fmt.Sprintf("at-%s-%d", f.Get("grant_type")[:6], n.Add(1)), "token_type": "Bearer", "expires_in": 600})
	})
	b := e.broker(t, map[string]Spec{"crm": {Type: TypeTokenExchange, TokenURL: te.tokenURL(), ClientID: testClientID, ClientSecret: "secret:crm-client"}})
	for range 2 {
		if tok, err := bearerOf(t, b, "crm", &CallInfo{Upstream: "crm"}); err != nil || tok != "at-client-1" {
			t.Fatalf("session set-up token = %q, %v; want the client's own token, fetched once", tok, err)
		}
	}
	if tok, err := bearerOf(t, b, "crm", &CallInfo{Upstream: "crm", User: "alice", Agent: "a1", Tool: "crm.read"}); err != nil || tok != "at-urn:ie-2" {
		t.Errorf("a user's call = %q, %v; want an exchanged token", tok, err)
	}
	if _, ok := grants.Load("client_credentials"); !ok {
		t.Errorf("the set-up token was not a client_credentials grant")
	}

	public := e.broker(t, map[string]Spec{"crm": {Type: TypeTokenExchange, TokenURL: te.tokenURL(), ClientID: testClientID}})
	if _, err := public.Apply(context.Background(), "crm", &CallInfo{Upstream: "crm"}, http.Header{}); err == nil || !strings.Contains(err.Error(), "needs client_secret") {
		t.Errorf("set-up for a public client = %v, want refused: it has no token of its own", err)
	}
}

func TestTokenEndpointErrors(t *testing.T) {
	t.Parallel()
	const leaked = "at-leaked-0123456789"
	other := newHeaderServer(t) // a redirect target that must never be reached
	for _, tc := range []struct {
		name   string
		status int
		body   string
		ctype  string
		want   []string
	}{
		{"invalid_client", 401, `{"error":"invalid_client","error_description":"client secret ` + testClientSecret + ` is wrong"}`, "", []string{"status 401: invalid_client", Redaction}},
		{"server error", 500, "internal error: " + testClientSecret, "text/plain", []string{"token endpoint: status 500"}},
		{"html", 200, "<html><body>Login " + leaked + "</body></html>", "text/html", []string{"status 200: the body is not a JSON object"}},
		{"oversized", 200, `{"access_token":"` + leaked + `","pad":"` + strings.Repeat("x", 70<<10) + `"}`, "", []string{"status 200: response is larger than 65536 bytes"}},
		{"missing access_token", 200, `{"token_type":"Bearer","expires_in":60}`, "", []string{"no access_token"}},
		{"token_type mac", 200, `{"access_token":"` + leaked + `","token_type":"mac"}`, "", []string{`token_type "mac" is not Bearer`}},
		{"expires_in negative", 200, `{"access_token":"` + leaked + `","expires_in":-5}`, "", []string{"expires_in is not an integer between 1 and 86400"}},
		{"expires_in zero", 200, `{"access_token":"` + leaked + `","expires_in":0}`, "", []string{"expires_in is not an integer"}},
		{"expires_in too long", 200, `{"access_token":"` + leaked + `","expires_in":86401}`, "", []string{"expires_in is not an integer"}},
		{"expires_in fraction", 200, `{"access_token":"` + leaked + `","expires_in":3600.5}`, "", []string{"expires_in is not an integer"}},
		{"expires_in string", 200, `{"access_token":"` + leaked + `","expires_in":"3600"}`, "", []string{"expires_in is not a number"}},
		{"access_token empty", 200, `{"access_token":""}`, "", []string{"access_token is 0 bytes"}},
		{"access_token number", 200, `{"access_token":12345678901}`, "", []string{"access_token is not a string"}},
		{"access_token with CRLF", 200, `{"access_token":"abc\r\nX-Evil: 1"}`, "", []string{"access_token holds a byte that is not printable ASCII"}},
		{"access_token too long", 200, `{"access_token":"` + strings.Repeat("a", MaxTokenLen+1) + `"}`, "", []string{"access_token is 8193 bytes"}},
		{"error with status 200", 200, `{"error":"server_error"}`, "", []string{"status 200: server_error"}},
		{"json array", 200, `["` + leaked + `"]`, "", []string{"not a JSON object"}},
		{"trailing garbage", 200, `{"access_token":"` + leaked + `"} x`, "", []string{"not a JSON object"}},
		{"400 not oauth", 400, `{"message":"bad"}`, "", []string{"status 400: the body is not an OAuth error response"}},
		{"bad error code", 400, `{"error":"bad\"code"}`, "", []string{"the error member is not an RFC 6749 error code"}},
		{"description sanitised", 400, `{"error":"invalid_scope","error_description":"bad\u001b[31m scope\u202e\u0000 here` + strings.Repeat("é", 300) + `"}`, "", []string{`status 400: invalid_scope ("bad [31m scope`}},
		{"redirect", 302, "", "", []string{"status 302"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			te := newTokenEndpoint(t, func(w http.ResponseWriter, r *http.Request, f url.Values) {
				if tc.status == 302 {
					http.Redirect(w, r, other.URL+"/steal", http.StatusFound)
					return
				}
				w.Header().Set("Content-Type", cmpOr(tc.ctype, "application/json"))
				w.WriteHeader(tc.status)
				w.Write([]byte(tc.body))
			})
			e := newEnv(t, "secret:crm-client", testClientSecret)
			b := e.broker(t, map[string]Spec{"crm": ccSpec(te.tokenURL())})
			h := http.Header{}
			_, err := b.Apply(context.Background(), "crm", nil, h)
			if err == nil {
				t.Fatalf("Apply = nil error, header %v; want refused", h)
			}
			msg := err.Error()
			for _, w := range append(tc.want, `credential for upstream "crm": token endpoint`) {
				if !strings.Contains(msg, w) {
					t.Errorf("Apply error %q does not contain %q", msg, w)
				}
			}
			if len(h) != 0 {
				t.Errorf("failed Apply set headers %v", h)
			}
			var te2 *TokenEndpointError
			if !errors.As(err, &te2) || te2.Status != tc.status {
				t.Errorf("errors.As(%v, *TokenEndpointError) = %+v, want status %d", err, te2, tc.status)
			}
			if len(msg) > 400 {
				t.Errorf("error is %d bytes, want the body never quoted: %q", len(msg), msg)
			}
			for _, r := range msg {
				if r != ' ' && !unicode.IsPrint(r) {
					t.Errorf("error holds the unprintable %U: %q", r, msg)
				}
			}
			assertNoSecrets(t, "Apply error", msg, testClientSecret, leaked, "X-Evil")
			assertNoSecrets(t, "log", e.log.String(), testClientSecret, leaked)
		})
	}
	other.mu.Lock()
	defer other.mu.Unlock()
	if len(other.seen) != 0 {
		t.Errorf("the redirect target received %d requests; redirects must not be followed", len(other.seen))
	}
	t.Run("unreachable", func(t *testing.T) {
		dead := httptest.NewServer(http.NotFoundHandler())
		dead.Close()
		e := newEnv(t, "secret:crm-client", testClientSecret)
		b := e.broker(t, map[string]Spec{"crm": ccSpec(dead.URL + "/token")})
		_, err := b.Apply(context.Background(), "crm", nil, http.Header{})
		if err == nil || !strings.Contains(err.Error(), `credential for upstream "crm": token request:`) {
			t.Errorf("Apply to a closed endpoint = %v, want a token request error", err)
		}
		if err != nil {
			assertNoSecrets(t, "Apply error", err.Error(), testClientSecret)
		}
	})
	t.Run("client secret unresolvable", func(t *testing.T) {
		te := countingEndpoint(t, 60, nil)
		e := newEnv(t)
		b := e.broker(t, map[string]Spec{"crm": ccSpec(te.tokenURL())})
		_, err := b.Apply(context.Background(), "crm", nil, http.Header{})
		if err == nil || !strings.Contains(err.Error(), "resolve secret:crm-client") || te.hits.Load() != 0 {
			t.Errorf("Apply without the client secret = %v after %d requests, want a resolve error and none", err, te.hits.Load())
		}
	})
}

func TestParseTokenResponse(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		body string
		want tokenResponse
	}{
		{`{"access_token":"abc","token_type":"Bearer","expires_in":60}`, tokenResponse{AccessToken: "abc", ExpiresIn: time.Minute}},
		{`{"access_token":"abc","token_type":"BEARER"}`, tokenResponse{AccessToken: "abc", ExpiresIn: DefaultExpiresIn}},
		{`{"access_token":"abc","expires_in":86400,"refresh_token":"r1","scope":"x y","extra":{"a":[1]}}`, tokenResponse{AccessToken: "abc", ExpiresIn: 24 * time.Hour, RefreshToken: "r1"}},
		{`{"access_token":"abc","expires_in":1}`, tokenResponse{AccessToken: "abc", ExpiresIn: time.Second}},
		{` {"access_token":"abc"} `, tokenResponse{AccessToken: "abc", ExpiresIn: DefaultExpiresIn}},
	} {
		got, err := parseTokenResponse(200, []byte(tc.body))
		if err != nil || got != tc.want {
			t.Errorf("parseTokenResponse(200, %s) = %+v, %v; want %+v", tc.body, got, err, tc.want)
		}
	}
	for _, body := range []string{
		``, `null`, `{}`, `{"access_token":null}`, `{"access_token":"a b"}`, `{"access_token":"abc","refresh_token":""}`,
		`{"access_token":"abc","refresh_token":5}`, `{"access_token":"abc","token_type":5}`, `{"access_token":"abc","expires_in":1e3}`,
		`{"access_token":"abc","expires_in":99999999999999999999999}`, `{"access_token":"abc","error":"x"}`,
	} {
		if got, err := parseTokenResponse(200, []byte(body)); err == nil {
			t.Errorf("parseTokenResponse(200, %s) = %+v, want an error", body, got)
		}
	}
}

func FuzzParseTokenResponse(f *testing.F) {
	for _, s := range []struct {
		status int
		body   string
	}{
		{200, `{"access_token":"abc","token_type":"Bearer","expires_in":60}`},
		{200, `{"access_token":"abc","refresh_token":"def","expires_in":3600}`},
		{200, `{"access_token":"abc","token_type":"mac"}`},
		{200, `{"access_token":"abc","expires_in":-5}`},
		{200, `<html></html>`},
		{400, `{"error":"invalid_grant","error_description":"revoked \u001b token"}`},
		{401, `{"error":"invalid_client"}`},
		{500, `oops`},
		{200, `{"error":"x","access_token":"a"}`},
		{302, ``},
	} {
		f.Add(s.status, []byte(s.body))
	}
	f.Fuzz(func(t *testing.T, status int, body []byte) {
		r, err := parseTokenResponse(status, body)
		if err != nil {
			var te *TokenEndpointError
			if !errors.As(err, &te) {
				t.Fatalf("error %v is not a *TokenEndpointError", err)
			}
			if len(te.Description) > maxDescription {
				t.Fatalf("description is %d bytes, more than %d", len(te.Description), maxDescription)
			}
			if msg := err.Error(); len(msg) > 512 {
				t.Fatalf("error is %d bytes: the body leaks into it: %q", len(msg), msg)
			}
			for _, c := range te.Description + te.Code {
				if c != ' ' && !unicode.IsPrint(c) {
					t.Fatalf("error holds the unprintable %U", c)
				}
			}
			return
		}
		if status != 200 {
			t.Fatalf("status %d accepted", status)
		}
		if len(r.AccessToken) == 0 || len(r.AccessToken) > MaxTokenLen || strings.ContainsAny(r.AccessToken, " \r\n\t") {
			t.Fatalf("access token %q accepted", r.AccessToken)
		}
		if r.ExpiresIn < time.Second || r.ExpiresIn > MaxExpiresIn*time.Second {
			t.Fatalf("expires_in %s accepted", r.ExpiresIn)
		}
		if len(r.RefreshToken) > MaxTokenLen || strings.ContainsAny(r.RefreshToken, " \r\n\t") {
			t.Fatalf("refresh token %q accepted", r.RefreshToken)
		}
	})
}
