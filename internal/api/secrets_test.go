package api_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/chaperone-dev/chaperone/internal/api"
	"github.com/chaperone-dev/chaperone/internal/audit"
	"github.com/chaperone-dev/chaperone/internal/logtest"
	"github.com/chaperone-dev/chaperone/internal/secrets"
	"github.com/chaperone-dev/chaperone/internal/store/sqlite"
	"github.com/chaperone-dev/chaperone/internal/store/sqlite/sqlitetest"
)

// secretValue is the value the tests store; no response or log line may hold it.
const secretValue = "sk_live_TOPSECRET-4242"

// secretsServer is the admin API over a real vault over SQLite. Every response body is
// kept, to be searched for the value.
type secretsServer struct {
	url      string
	db       *sqlite.DB
	vault    *secrets.Vault
	keyring  atomic.Pointer[secrets.Keyring]
	failLog  atomic.Bool
	logs     *logtest.Buffer
	mu       sync.Mutex
	received []string
}

func testKeyring(tb testing.TB, lines ...string) *secrets.Keyring {
	tb.Helper()
	k, err := secrets.ParseKeyring([]byte(strings.Join(lines, "\n")))
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

func keyLine(id string, b byte) string {
	return id + " " + base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{b}, 32))
}

func newSecretsServer(tb testing.TB) *secretsServer {
	tb.Helper()
	db, log := sqlitetest.Open(tb)
	s := &secretsServer{db: db, logs: &logtest.Buffer{}}
	s.keyring.Store(testKeyring(tb, keyLine("k1", 1)))
	v, err := secrets.NewVault(secrets.VaultOptions{
		Store: db, Keyring: s.keyring.Load,
		Audit: func(ctx context.Context, e *audit.Event) error {
			if s.failLog.Load() {
				return errors.New("audit disk full")
			}
			return log.Append(ctx, e)
		},
	})
	if err != nil {
		tb.Fatal(err)
	}
	s.vault = v
	srv := httptest.NewServer(api.New(api.Options{
		Token: adminToken, Secrets: v,
		Logger: slog.New(slog.NewTextHandler(s.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}))
	tb.Cleanup(srv.Close)
	s.url = srv.URL
	tb.Cleanup(func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, b := range append(s.received, s.logs.String()) {
			if strings.Contains(b, "TOPSECRET") {
				tb.Errorf("a response or log line holds the secret value: %s", b)
			}
		}
	})
	return s
}

func (s *secretsServer) do(tb testing.TB, method, path, body string) (int, []byte) {
	tb.Helper()
	req, err := http.NewRequestWithContext(tb.Context(), method, s.url+path, strings.NewReader(body))
	if err != nil {
		tb.Fatal(err)
	}
	req.Header.Set("Authorization", bearer)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatal(err)
	}
	s.mu.Lock()
	s.received = append(s.received, string(b))
	s.mu.Unlock()
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		tb.Errorf("%s %s: Content-Type %q", method, path, ct)
	}
	return resp.StatusCode, b
}

func putBody(value, description, by string) string {
	m := map[string]string{"value": value}
	if description != "" {
		m["description"] = description
	}
	if by != "" {
		m["by"] = by
	}
	b, _ := json.Marshal(m)
	return string(b)
}

func TestSecretsAPI(t *testing.T) {
	t.Parallel()
	s := newSecretsServer(t)
	ctx := t.Context()

	status, body := s.do(t, "GET", "/v1/secrets", "")
	if status != http.StatusOK || strings.TrimSpace(string(body)) != "{\n  \"secrets\": []\n}" {
		t.Errorf("GET /v1/secrets on an empty vault = %d %s, want an empty list", status, body)
	}

	status, body = s.do(t, "PUT", "/v1/secrets/crm-key", putBody(secretValue, "CRM production key", "alice"))
	var m secrets.Meta
	if err := json.Unmarshal(body, &m); status != http.StatusOK || err != nil {
		t.Fatalf("PUT /v1/secrets/crm-key = %d %s", status, body)
	}
	if m.Name != "crm-key" || m.Version != 1 || m.KeyID != "k1" || m.UpdatedBy != "admin-api:alice" || m.Description != "CRM production key" {
		t.Errorf("PUT answered %+v", m)
	}
	var fields map[string]any
	json.Unmarshal(body, &fields)
	if _, ok := fields["value"]; ok {
		t.Errorf("PUT's answer has a value field: %s", body)
	}
	if v, err := s.vault.Reveal(ctx, "crm-key"); err != nil || !v.Equal([]byte(secretValue)) {
		t.Errorf("Reveal(crm-key) after PUT = %v, %v; want the value", v, err)
	}

	// Replaced without naming anyone; "rotate" is a secret's name like any other.
	if status, body := s.do(t, "PUT", "/v1/secrets/crm-key", putBody(secretValue+"-2", "", "")); status != http.StatusOK || !strings.Contains(string(body), `"updated_by": "admin-api"`) || !strings.Contains(string(body), `"version": 2`) {
		t.Errorf("PUT crm-key again = %d %s, want version 2 by admin-api", status, body)
	}
	if status, body := s.do(t, "PUT", "/v1/secrets/rotate", putBody(secretValue, "", "")); status != http.StatusOK {
		t.Errorf("PUT /v1/secrets/rotate = %d %s, want a secret named rotate", status, body)
	}

	status, body = s.do(t, "GET", "/v1/secrets", "")
	var list api.SecretList
	if err := json.Unmarshal(body, &list); status != http.StatusOK || err != nil || len(list.Secrets) != 2 || list.Secrets[0].Name != "crm-key" || list.Secrets[1].Name != "rotate" {
		t.Errorf("GET /v1/secrets = %d %s, want crm-key and rotate", status, body)
	}
	status, body = s.do(t, "GET", "/v1/secrets/crm-key", "")
	var one secrets.Meta
	if err := json.Unmarshal(body, &one); status != http.StatusOK || err != nil || !cmp.Equal(one, list.Secrets[0]) {
		t.Errorf("GET /v1/secrets/crm-key = %d %s, want %+v", status, body, list.Secrets[0])
	}

	// Rotation, once the key file has a new primary, with and without a body.
	s.keyring.Store(testKeyring(t, keyLine("k2", 2), keyLine("k1", 1)))
	status, body = s.do(t, "POST", "/v1/secret-keys/rotate", `{"by": "carol"}`)
	var res secrets.RotateResult
	if err := json.Unmarshal(body, &res); status != http.StatusOK || err != nil || res != (secrets.RotateResult{Primary: "k2", Reencrypted: 2}) {
		t.Errorf("POST /v1/secret-keys/rotate = %d %s, want 2 re-encrypted under k2", status, body)
	}
	status, body = s.do(t, "POST", "/v1/secret-keys/rotate", "")
	if err := json.Unmarshal(body, &res); status != http.StatusOK || err != nil || res != (secrets.RotateResult{Primary: "k2", Current: 2}) {
		t.Errorf("POST /v1/secret-keys/rotate again = %d %s, want 2 current", status, body)
	}

	status, body = s.do(t, "DELETE", "/v1/secrets/rotate?by=dave", "")
	if status != http.StatusOK || !strings.Contains(string(body), `"deleted": true`) {
		t.Errorf("DELETE /v1/secrets/rotate = %d %s", status, body)
	}
	status, body = s.do(t, "DELETE", "/v1/secrets/rotate", "")
	wantError(t, "DELETE /v1/secrets/rotate again", status, body, http.StatusNotFound, "no secret has that name")
	status, body = s.do(t, "GET", "/v1/secrets/nobody", "")
	wantError(t, "GET /v1/secrets/nobody", status, body, http.StatusNotFound, "no secret has that name")

	// Who acted is on record.
	events, err := s.db.TailEvents(ctx, 20)
	if err != nil {
		t.Fatal(err)
	}
	var msgs []string
	for _, e := range events {
		msgs = append(msgs, e.Message)
	}
	for _, want := range []string{"secret crm-key set by admin-api:alice", "secret crm-key set by admin-api", "secrets re-encrypted under key k2 by admin-api:carol", "secret rotate deleted by admin-api:dave"} {
		if !strings.Contains(strings.Join(msgs, "\n"), want) {
			t.Errorf("audit messages %q lack %q", msgs, want)
		}
	}
}

func TestSecretsAPIRefusals(t *testing.T) {
	t.Parallel()
	s := newSecretsServer(t)
	shape := `body must be {"value": "<1 byte to 64 KiB>", "description": "<optional, at most 200 bytes>", "by": "<optional: who sets it>"}`
	for _, tt := range []struct {
		name, method, path, body string
		status                   int
		msg                      string
	}{
		{"unknown field", "PUT", "/v1/secrets/crm", `{"value": "` + secretValue + `", "valeu": 1}`, 400, shape + `: unknown field "valeu"`},
		{"syntax error inside the value", "PUT", "/v1/secrets/crm", `{"value": "` + secretValue + "\x01" + `"}`, 400, shape + ": body is not valid JSON"},
		{"unterminated value", "PUT", "/v1/secrets/crm", `{"value": "` + secretValue, 400, shape + ": body is not valid JSON"},
		{"trailing data", "PUT", "/v1/secrets/crm", putBody(secretValue, "", "") + ` {"value": "` + secretValue + `"}`, 400, shape + ": trailing data after the JSON object"},
		{"value of the wrong type", "PUT", "/v1/secrets/crm", `{"value": 4242}`, 400, shape + `: wrong type for "value"`},
		{"no value", "PUT", "/v1/secrets/crm", `{"description": "x"}`, 400, shape + ": value is missing"},
		{"empty body", "PUT", "/v1/secrets/crm", ``, 400, shape + ": the body is empty"},
		{"empty value", "PUT", "/v1/secrets/crm", `{"value": ""}`, 400, `invalid: set "crm": value must be 1 to 65536 bytes, got 0`},
		{"oversized value", "PUT", "/v1/secrets/crm", putBody(strings.Repeat("v", secrets.MaxValue+1), "", ""), 400, `invalid: set "crm": value must be 1 to 65536 bytes, got 65537`},
		{"oversized body", "PUT", "/v1/secrets/crm", putBody(strings.Repeat(`"`, secrets.MaxValue), "", ""), 413, "body exceeds 131072 bytes"},
		{"bad name", "PUT", "/v1/secrets/CRM", putBody(secretValue, "", ""), 400, "invalid: set: secret name must match [a-z0-9][a-z0-9._-]{0,63}; byte 0 is not allowed there"},
		{"escaped slash in name", "PUT", "/v1/secrets/a%2Fb", putBody(secretValue, "", ""), 400, "invalid: set: secret name must match [a-z0-9][a-z0-9._-]{0,63}; byte 1 is not allowed there"},
		{"long description", "PUT", "/v1/secrets/crm", putBody(secretValue, strings.Repeat("d", 201), ""), 400, `invalid: set "crm": description is 201 bytes, more than 200`},
		{"long by", "PUT", "/v1/secrets/crm", putBody(secretValue, "", strings.Repeat("b", 119)), 400, "invalid: by is 119 bytes, more than 118"},
		{"control character in by", "PUT", "/v1/secrets/crm", putBody(secretValue, "", "a\x1bb"), 400, `invalid: set "crm": updated by holds a control character (U+001B) at byte 11`},
		{"bad name on GET", "GET", "/v1/secrets/Crm", "", 400, "invalid: read: secret name must match [a-z0-9][a-z0-9._-]{0,63}; byte 0 is not allowed there"},
		{"long by on DELETE", "DELETE", "/v1/secrets/crm?by=" + strings.Repeat("b", 200), "", 400, "invalid: by is 200 bytes, more than 118"},
		{"unknown field on rotate", "POST", "/v1/secret-keys/rotate", `{"who": "x"}`, 400, `body must be {"by": "<optional: who rotates>"} or nothing: unknown field "who"`},
	} {
		status, body := s.do(t, tt.method, tt.path, tt.body)
		wantError(t, tt.name, status, body, tt.status, tt.msg)
	}
	// The largest value fits, though its body is larger than other routes allow.
	if status, body := s.do(t, "PUT", "/v1/secrets/big", putBody(strings.Repeat("v", secrets.MaxValue), "", "")); status != http.StatusOK {
		t.Errorf("PUT of a 64 KiB value = %d %s, want 200", status, body)
	}
	if ms, _ := s.vault.List(t.Context()); len(ms) != 1 || ms[0].Name != "big" {
		t.Errorf("List() after the refusals = %+v, want big alone", ms)
	}

	// A change the audit log cannot record is refused, and not made.
	s.failLog.Store(true)
	status, body := s.do(t, "PUT", "/v1/secrets/crm", putBody(secretValue, "", ""))
	wantError(t, "PUT with a failing audit log", status, body, http.StatusServiceUnavailable, "refused: the audit log could not record the change, so it was not made")
	status, body = s.do(t, "DELETE", "/v1/secrets/big", "")
	wantError(t, "DELETE with a failing audit log", status, body, http.StatusServiceUnavailable, "refused: the audit log could not record the change, so it was not made")
	s.failLog.Store(false)
	if ms, _ := s.vault.List(t.Context()); len(ms) != 1 || ms[0].Name != "big" {
		t.Errorf("List() after unaudited changes = %+v, want big alone", ms)
	}

	// A rotation that cannot open a secret says which, with 409.
	s.keyring.Store(testKeyring(t, keyLine("k2", 2)))
	status, body = s.do(t, "POST", "/v1/secret-keys/rotate", "")
	var e map[string]string
	json.Unmarshal(body, &e)
	if status != http.StatusConflict || !strings.Contains(e["error"], `open "big": key "k1": key is not in the keyring (it has k2)`) {
		t.Errorf("rotate without the old key = %d %s, want 409 naming big and k1", status, body)
	}
	// Without a keyring, nothing is stored.
	s.keyring.Store(nil)
	status, body = s.do(t, "PUT", "/v1/secrets/crm", putBody(secretValue, "", ""))
	wantError(t, "PUT without a keyring", status, body, http.StatusServiceUnavailable, "no secrets keyring is loaded (secrets.key_file)")
}

func TestSecretsAPINotWiredAndUnauthenticated(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(api.New(api.Options{Token: adminToken}))
	t.Cleanup(srv.Close)
	s := newSecretsServer(t)
	routes := []struct{ method, path, body string }{
		{"GET", "/v1/secrets", ""},
		{"GET", "/v1/secrets/crm", ""},
		{"PUT", "/v1/secrets/crm", putBody(secretValue, "", "")},
		{"DELETE", "/v1/secrets/crm", ""},
		{"POST", "/v1/secret-keys/rotate", ""},
	}
	for _, r := range routes {
		notWired := &secretsServer{url: srv.URL, logs: &logtest.Buffer{}}
		status, body := notWired.do(t, r.method, r.path, r.body)
		wantError(t, r.method+" "+r.path+" not wired", status, body, http.StatusNotImplemented, "the secret vault is not wired in this gateway (secrets.key_file)")

		for _, auth := range []string{"", "Bearer wrong", "Basic " + adminToken} {
			req, _ := http.NewRequestWithContext(t.Context(), r.method, s.url+r.path, strings.NewReader(r.body))
			if auth != "" {
				req.Header.Set("Authorization", auth)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			wantError(t, r.method+" "+r.path+" with "+auth, resp.StatusCode, b, http.StatusUnauthorized, "unauthenticated: the admin token is required")
		}
	}
	if ms, _ := s.vault.List(t.Context()); len(ms) != 0 {
		t.Errorf("unauthenticated requests stored %+v", ms)
	}
}
