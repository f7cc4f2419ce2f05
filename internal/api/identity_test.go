package api_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/chaperone-dev/chaperone/internal/api"
	"github.com/chaperone-dev/chaperone/internal/audit"
	"github.com/chaperone-dev/chaperone/internal/identity"
	"github.com/chaperone-dev/chaperone/internal/store/sqlite/sqlitetest"
)

// switchAudit is the real audit log, with failures on demand.
type switchAudit struct {
	log  *audit.Log
	fail atomic.Bool
}

func (s *switchAudit) Append(ctx context.Context, e *audit.Event) error {
	if s.fail.Load() {
		return errBoom
	}
	return s.log.Append(ctx, e)
}

// idServer is an admin API over a real directory and task list on SQLite.
type idServer struct {
	*server
	agents *identity.Directory
	tasks  *identity.Tasks
	audit  *switchAudit
	keys   []api.KeyInfo
	rotErr atomic.Bool
}

var declared = identity.Registration{
	Agent:       identity.Agent{ID: "config-bot", Owner: "ops@example.com", Environment: "dev", Capabilities: []string{"*"}},
	TokenSHA256: identity.HashToken("chp_static"),
}

func newIDServer(tb testing.TB) *idServer {
	tb.Helper()
	db, log := sqlitetest.Open(tb)
	s := &idServer{audit: &switchAudit{log: log}}
	var err error
	s.agents, err = identity.NewDirectory(tb.Context(), identity.DirectoryOptions{Store: db, Audit: s.audit, Static: []identity.Registration{declared}})
	if err != nil {
		tb.Fatalf("NewDirectory: %v", err)
	}
	s.tasks, err = identity.NewTasks(tb.Context(), identity.TasksOptions{Store: db, Audit: s.audit})
	if err != nil {
		tb.Fatalf("NewTasks: %v", err)
	}
	created := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	s.keys = []api.KeyInfo{{ID: "k1", Created: created, Retired: created.Add(time.Hour)}, {ID: "k2", Created: created.Add(time.Hour)}}
	h := api.New(api.Options{
		Token:  adminToken,
		Agents: s.agents,
		Tasks:  s.tasks,
		Keys:   func() []api.KeyInfo { return s.keys },
		RotateKeys: func(ctx context.Context) (string, error) {
			if s.rotErr.Load() {
				return "", errBoom
			}
			return "k3", nil
		},
	})
	srv := httptest.NewServer(h)
	tb.Cleanup(srv.Close)
	s.server = &server{url: srv.URL}
	return s
}

// identityRoutes are every route this file covers, with a valid body.
var identityRoutes = []struct{ method, path, body string }{
	{"GET", "/v1/agents", ""},
	{"POST", "/v1/agents", `{"id":"x","owner":"o","environment":"dev","capabilities":["*"],"with_secret":true}`},
	{"GET", "/v1/agents/config-bot", ""},
	{"POST", "/v1/agents/config-bot/suspend", `{"by":"op","reason":"r"}`},
	{"POST", "/v1/agents/config-bot/resume", `{"by":"op"}`},
	{"POST", "/v1/agents/config-bot/revoke", `{"by":"op","reason":"r"}`},
	{"GET", "/v1/tasks", ""},
	{"POST", "/v1/tasks/t/end", `{"by":"op"}`},
	{"GET", "/v1/keys", ""},
	{"POST", "/v1/keys/rotate", ""},
}

func TestIdentityRoutesNeedToken(t *testing.T) {
	t.Parallel()
	s := newIDServer(t)
	for _, r := range identityRoutes {
		for _, auth := range []string{"", "Bearer chpadm_wrong", adminToken} {
			status, body := s.do(t, r.method, r.path, auth, r.body)
			wantError(t, r.method+" "+r.path, status, body, http.StatusUnauthorized, "unauthenticated: the admin token is required")
		}
	}
	if got := s.agents.List(); len(got) != 1 {
		t.Errorf("agents after unauthenticated requests = %d, want only the declared one", len(got))
	}
}

func TestIdentityRoutesNotWired(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(api.New(api.Options{Token: adminToken}))
	t.Cleanup(srv.Close)
	s := &server{url: srv.URL}
	for _, r := range identityRoutes {
		status, body := s.do(t, r.method, r.path, bearer, r.body)
		var want string
		switch {
		case strings.HasPrefix(r.path, "/v1/agents"):
			want = "the agent directory is not enabled in this gateway"
		case strings.HasPrefix(r.path, "/v1/tasks"):
			want = "tasks are not enabled in this gateway"
		default:
			want = "token signing keys are not enabled in this gateway"
		}
		wantError(t, r.method+" "+r.path, status, body, http.StatusNotImplemented, want)
	}
}

func TestRegisterAgentBadRequest(t *testing.T) {
	t.Parallel()
	s := newIDServer(t)
	rsaLike, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&rsaLike.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	ecPEM := string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
	const shape = "body must be an agent: {id, owner, purpose, environment, capabilities, autonomy, labels, public_key, with_secret, by}"
	valid := `"owner":"alice","environment":"prod","capabilities":["read_file"],"with_secret":true`
	tests := []struct {
		name, body string
		status     int
		msg        string
	}{
		{"empty body", ``, 400, shape},
		{"not JSON", `{`, 400, shape},
		{"unknown field", `{"id":"a",` + valid + `,"admin":true}`, 400, shape + `: unknown field "admin"`},
		{"wrong type", `{"id":"a",` + valid + `,"autonomy":"high"}`, 400, shape + `: wrong type for "autonomy"`},
		{"trailing data", `{"id":"a",` + valid + `} {}`, 400, shape},
		{"too large", `{"id":"a","purpose":"` + strings.Repeat("p", 70<<10) + `"}`, 413, "body exceeds 65536 bytes"},
		{"bad id", `{"id":"A B",` + valid + `}`, 400, `invalid: id: must match ^[a-z0-9][a-z0-9._-]{0,63}$, got "A B"`},
		{"several problems", `{"id":"a","autonomy":7,"capabilities":["*"],"with_secret":true}`, 400,
			`invalid: owner: is required; environment: must be dev, test or prod, got ""; autonomy: must be between 0 and 3, got 7`},
		{"no credential", `{"id":"a","owner":"alice","environment":"prod","capabilities":["*"]}`, 400,
			"invalid: credential: give a public key or ask for a secret: an agent needs a way to authenticate"},
		{"key not base64", `{"id":"a",` + valid + `,"public_key":"not base64!"}`, 400,
			`invalid: public_key: must be the base64 of a raw 32-byte Ed25519 key or a PEM "PUBLIC KEY" block`},
		{"key too short", `{"id":"a",` + valid + `,"public_key":"AAAA"}`, 400, "invalid: public_key: must be a 32-byte Ed25519 key, got 3 bytes"},
		{"PEM not Ed25519", `{"id":"a",` + valid + `,"public_key":` + jsonString(ecPEM) + `}`, 400, "invalid: public_key: must be an Ed25519 key, got *ecdsa.PublicKey"},
		{"PEM private key", `{"id":"a",` + valid + `,"public_key":"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----"}`, 400,
			`invalid: public_key: PEM must be exactly one "PUBLIC KEY" block`},
		{"declared id", `{"id":"config-bot",` + valid + `}`, 409, "an agent with that id already exists (ids are never reused, even after revocation)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			status, body := s.do(t, "POST", "/v1/agents", bearer, tt.body)
			wantError(t, "POST /v1/agents "+tt.name, status, body, tt.status, tt.msg)
		})
	}
	t.Cleanup(func() {
		if got := s.agents.List(); len(got) != 1 {
			t.Errorf("agents after bad registrations = %d, want only the declared one", len(got))
		}
	})
}

func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func TestRegisterAgent(t *testing.T) {
	t.Parallel()
	s := newIDServer(t)
	pub, _, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	pemKey := string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
	sum := sha256.Sum256(pub)
	fingerprint := "sha256:" + hex.EncodeToString(sum[:])

	// With a secret: shown once, in the 201 answer.
	status, body := s.do(t, "POST", "/v1/agents", bearer,
		`{"id":"mail","owner":"alice@example.com","purpose":"sorts mail","environment":"prod","capabilities":["read_file","send_email"],"autonomy":2,"labels":{"team":"support"},"with_secret":true,"by":"alice"}`)
	if status != http.StatusCreated {
		t.Fatalf("POST /v1/agents (secret) = %d %s, want 201", status, body)
	}
	var reg api.RegisteredAgent
	if err := json.Unmarshal(body, &reg); err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^chs_[A-Za-z0-9_-]{43}$`).MatchString(reg.Secret) || !s.agents.VerifySecret("mail", reg.Secret) {
		t.Errorf("POST /v1/agents secret = %q, want a chs_ secret the directory accepts", reg.Secret)
	}
	wantMail := api.Agent{ID: "mail", Owner: "alice@example.com", Purpose: "sorts mail", Environment: "prod",
		Capabilities: []string{"read_file", "send_email"}, Autonomy: 2, Labels: map[string]string{"team": "support"},
		Status: "active", Source: "registry", HasSecret: true, CreatedAt: reg.CreatedAt, UpdatedAt: reg.CreatedAt}
	if diff := cmp.Diff(wantMail, reg.Agent); diff != "" || reg.CreatedAt.IsZero() {
		t.Errorf("POST /v1/agents (-want +got):\n%s", diff)
	}

	// With a key, in each accepted encoding: no secret in the answer.
	for i, key := range []string{pemKey, base64.StdEncoding.EncodeToString(pub), base64.RawURLEncoding.EncodeToString(pub)} {
		id := []string{"pem", "std", "url"}[i]
		status, body := s.do(t, "POST", "/v1/agents", bearer,
			`{"id":"`+id+`","owner":"bob","environment":"dev","capabilities":["*"],"public_key":`+jsonString(key)+`}`)
		if status != http.StatusCreated || strings.Contains(string(body), `"secret"`) {
			t.Fatalf("POST /v1/agents (%s key) = %d %s, want 201 without a secret", id, status, body)
		}
		var got api.Agent
		json.Unmarshal(body, &got)
		if got.KeyFingerprint != fingerprint || got.HasSecret {
			t.Errorf("POST /v1/agents (%s key): fingerprint %q, has_secret %v; want %q, false", id, got.KeyFingerprint, got.HasSecret, fingerprint)
		}
		if k, ok := s.agents.PublicKey(id); !ok || !k.Equal(pub) {
			t.Errorf("PublicKey(%q) = %x, %v; want the registered key", id, k, ok)
		}
	}

	status, body = s.do(t, "POST", "/v1/agents", bearer, `{"id":"mail","owner":"x","environment":"dev","capabilities":["*"],"with_secret":true}`)
	wantError(t, "POST /v1/agents (again)", status, body, http.StatusConflict, "an agent with that id already exists (ids are never reused, even after revocation)")

	// Lists and shows never carry a secret or its hash, nor raw key material.
	status, body = s.do(t, "GET", "/v1/agents", bearer, "")
	if status != http.StatusOK {
		t.Fatalf("GET /v1/agents = %d %s", status, body)
	}
	for _, leak := range []string{reg.Secret, identity.HashToken(reg.Secret), base64.StdEncoding.EncodeToString(pub), hex.EncodeToString(pub), "chp_static", declared.TokenSHA256} {
		if strings.Contains(string(body), leak) {
			t.Errorf("GET /v1/agents leaks %q", leak)
		}
	}
	var list []api.Agent
	if err := json.Unmarshal(body, &list); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, a := range list {
		ids = append(ids, a.ID+"/"+a.Source)
	}
	if diff := cmp.Diff([]string{"config-bot/config", "mail/registry", "pem/registry", "std/registry", "url/registry"}, ids); diff != "" {
		t.Errorf("GET /v1/agents ids (-want +got):\n%s", diff)
	}

	status, body = s.do(t, "GET", "/v1/agents/mail", bearer, "")
	var one api.Agent
	if json.Unmarshal(body, &one); status != http.StatusOK || !cmp.Equal(wantMail, one) {
		t.Errorf("GET /v1/agents/mail = %d %s, want %+v", status, body, wantMail)
	}
	status, body = s.do(t, "GET", "/v1/agents/nobody", bearer, "")
	wantError(t, "GET /v1/agents/nobody", status, body, http.StatusNotFound, "no agent has that id")
}

func TestAgentStatus(t *testing.T) {
	t.Parallel()
	s := newIDServer(t)
	if _, err := s.agents.Register(t.Context(), identity.AgentSpec{
		Agent:      identity.Agent{ID: "mail", Owner: "alice", Environment: "prod", Capabilities: []string{"*"}},
		WithSecret: true,
	}, "alice"); err != nil {
		t.Fatal(err)
	}
	const shape = `body must be {"by": "<who>", "reason": "<why>"}`
	steps := []struct {
		name, path, body string
		status           int
		msg              string // error message, or "" for success
		want             identity.Status
	}{
		{"no body", "/v1/agents/mail/suspend", ``, 400, shape, identity.StatusActive},
		{"unknown field", "/v1/agents/mail/suspend", `{"by":"op","reason":"r","force":true}`, 400, shape + `: unknown field "force"`, identity.StatusActive},
		{"no reason", "/v1/agents/mail/suspend", `{"by":"op"}`, 400, "invalid: reason: is required", identity.StatusActive},
		{"no by", "/v1/agents/mail/revoke", `{"reason":"r"}`, 400, "invalid: by: is required", identity.StatusActive},
		{"unknown agent", "/v1/agents/nobody/suspend", `{"by":"op","reason":"r"}`, 404, "no agent has that id", identity.StatusActive},
		{"declared agent", "/v1/agents/config-bot/suspend", `{"by":"op","reason":"r"}`, 409, "the agent is declared in the configuration: edit the configuration", identity.StatusActive},
		{"resume active", "/v1/agents/mail/resume", `{"by":"op"}`, 409, "the agent already has that status", identity.StatusActive},
		{"suspend", "/v1/agents/mail/suspend", `{"by":"op","reason":"looping"}`, 200, "", identity.StatusSuspended},
		{"suspend again", "/v1/agents/mail/suspend", `{"by":"op","reason":"looping"}`, 409, "the agent already has that status", identity.StatusSuspended},
		{"resume", "/v1/agents/mail/resume", `{"by":"op"}`, 200, "", identity.StatusActive},
		{"revoke", "/v1/agents/mail/revoke", `{"by":"op","reason":"key leaked"}`, 200, "", identity.StatusRevoked},
		{"resume revoked", "/v1/agents/mail/resume", `{"by":"op"}`, 409, "the agent is revoked: revocation is final", identity.StatusRevoked},
	}
	for _, st := range steps {
		status, body := s.do(t, "POST", st.path, bearer, st.body)
		switch {
		case st.msg != "":
			wantError(t, st.name+": POST "+st.path, status, body, st.status, st.msg)
		default:
			var got api.Agent
			if json.Unmarshal(body, &got); status != st.status || got.Status != string(st.want) {
				t.Errorf("%s: POST %s = %d %s, want %d with status %s", st.name, st.path, status, body, st.status, st.want)
			}
		}
		if a, _ := s.agents.Agent("mail"); a.Status != st.want {
			t.Errorf("after %s: status %s, want %s", st.name, a.Status, st.want)
		}
	}
}

func TestSuspendAuditFailure(t *testing.T) {
	t.Parallel()
	s := newIDServer(t)
	if _, err := s.agents.Register(t.Context(), identity.AgentSpec{
		Agent:      identity.Agent{ID: "mail", Owner: "alice", Environment: "prod", Capabilities: []string{"*"}},
		WithSecret: true,
	}, "alice"); err != nil {
		t.Fatal(err)
	}
	s.audit.fail.Store(true)
	status, body := s.do(t, "POST", "/v1/agents/mail/suspend", bearer, `{"by":"op","reason":"incident"}`)
	wantError(t, "POST /v1/agents/mail/suspend (audit down)", status, body, http.StatusInternalServerError,
		"the change took effect, but its audit record could not be written: check the audit log")
	if a, _ := s.agents.Agent("mail"); a.Status != identity.StatusSuspended {
		t.Errorf("status after suspension with audit down = %s, want suspended", a.Status)
	}
	status, body = s.do(t, "POST", "/v1/agents", bearer, `{"id":"new","owner":"x","environment":"dev","capabilities":["*"],"with_secret":true}`)
	wantError(t, "POST /v1/agents (audit down)", status, body, http.StatusInternalServerError, "the agent could not be registered")
	if strings.Contains(string(body), "chs_") {
		t.Errorf("POST /v1/agents (audit down) leaks a secret: %s", body)
	}
}

func TestTasksAPI(t *testing.T) {
	t.Parallel()
	s := newIDServer(t)
	rec, err := s.tasks.Start(t.Context(), identity.TaskRecord{Agent: "mail", User: "carol", Tools: []string{"read_file"}, ExpiresAt: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	list := func(query string) []api.Task {
		t.Helper()
		status, body := s.do(t, "GET", "/v1/tasks"+query, bearer, "")
		if status != http.StatusOK {
			t.Fatalf("GET /v1/tasks%s = %d %s", query, status, body)
		}
		var out []api.Task
		if err := json.Unmarshal(body, &out); err != nil {
			t.Fatal(err)
		}
		return out
	}
	if got := list(""); len(got) != 1 || got[0].ID != rec.ID || got[0].State != "open" || got[0].User != "carol" {
		t.Errorf("GET /v1/tasks = %+v, want the open task", got)
	}
	status, body := s.do(t, "GET", "/v1/tasks?all=yes", bearer, "")
	wantError(t, "GET /v1/tasks?all=yes", status, body, 400, `all: must be 1 or 0, got "yes"`)

	for _, tt := range []struct {
		name, path, body string
		status           int
		msg              string
	}{
		{"no by", "/v1/tasks/" + rec.ID + "/end", `{}`, 400, "invalid: by: is required"},
		{"bad body", "/v1/tasks/" + rec.ID + "/end", `[]`, 400, `body must be {"by": "<who>", "reason": "<why, optional>"}`},
		{"unknown", "/v1/tasks/tsk_nope/end", `{"by":"op"}`, 404, "no task has that id"},
	} {
		status, body := s.do(t, "POST", tt.path, bearer, tt.body)
		wantError(t, tt.name+": POST "+tt.path, status, body, tt.status, tt.msg)
	}
	status, body = s.do(t, "POST", "/v1/tasks/"+rec.ID+"/end", bearer, `{"by":"op","reason":"done"}`)
	var ended api.Task
	if json.Unmarshal(body, &ended); status != 200 || ended.State != "ended" || ended.EndedBy != "op" || ended.EndReason != "done" {
		t.Errorf("POST /v1/tasks/%s/end = %d %s, want 200 and the ended task", rec.ID, status, body)
	}
	if s.tasks.Active(rec.ID) {
		t.Errorf("Active(%q) = true after the API ended it", rec.ID)
	}
	status, body = s.do(t, "POST", "/v1/tasks/"+rec.ID+"/end", bearer, `{"by":"op"}`)
	wantError(t, "POST end again", status, body, 409, "the task has already ended")

	if got := list(""); len(got) != 0 {
		t.Errorf("GET /v1/tasks after end = %+v, want none", got)
	}
	if got := list("?all=1"); len(got) != 1 || got[0].State != "ended" {
		t.Errorf("GET /v1/tasks?all=1 = %+v, want the ended task", got)
	}
}

func TestKeys(t *testing.T) {
	t.Parallel()
	s := newIDServer(t)
	status, body := s.do(t, "GET", "/v1/keys", bearer, "")
	want := `[
  {
    "kid": "k1",
    "created": "2026-03-01T09:00:00Z",
    "retired": "2026-03-01T10:00:00Z"
  },
  {
    "kid": "k2",
    "created": "2026-03-01T10:00:00Z"
  }
]
`
	if status != 200 || string(body) != want {
		t.Errorf("GET /v1/keys = %d %s, want 200 %s", status, body, want)
	}
	status, body = s.do(t, "POST", "/v1/keys/rotate", bearer, "")
	if status != 200 || strings.TrimSpace(string(body)) != "{\n  \"kid\": \"k3\"\n}" {
		t.Errorf("POST /v1/keys/rotate = %d %s, want 200 {kid: k3}", status, body)
	}
	s.rotErr.Store(true)
	status, body = s.do(t, "POST", "/v1/keys/rotate", bearer, "")
	wantError(t, "POST /v1/keys/rotate (failing)", status, body, 500, "key rotation failed")
}
