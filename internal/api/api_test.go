package api_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/chaperone-dev/chaperone/internal/api"
	"github.com/chaperone-dev/chaperone/internal/audit"
	"github.com/chaperone-dev/chaperone/internal/policy"
	"github.com/chaperone-dev/chaperone/internal/registry"
	"github.com/chaperone-dev/chaperone/internal/store/sqlite"
	"github.com/chaperone-dev/chaperone/internal/store/sqlite/sqlitetest"
	"github.com/chaperone-dev/chaperone/internal/upstream"
)

const adminToken = "chpadm_0123456789abcdefghijklmnopqrstuvwxyz"

var errBoom = errors.New("boom")

// fakePins is a PinStore made of functions, for failures on demand.
type fakePins struct {
	pin    func(ctx context.Context, tool string) (registry.Pin, bool, error)
	setPin func(ctx context.Context, p registry.Pin) error
}

func (f fakePins) Pin(ctx context.Context, tool string) (registry.Pin, bool, error) {
	return f.pin(ctx, tool)
}

func (f fakePins) SetPin(ctx context.Context, p registry.Pin) error { return f.setPin(ctx, p) }

const (
	goodSchema = `{"type":"object","properties":{"path":{"type":"string"}}}`
	badSchema  = `{"type":"string"}` // not an object schema: argcheck refuses it
	policyV1   = "rules:\n  - id: reads\n    match: {classes: [read]}\n    effect: allow\n"
	policyV2   = "rules:\n  - id: reads\n    match: {classes: [read]}\n    effect: allow\n  - id: search\n    match: {tools: [search]}\n    effect: approve\n"
)

var decls = []registry.Declaration{
	{Name: "bad", Upstream: "fs", UpstreamName: "bad", Class: "read"},
	{Name: "read_file", Upstream: "fs", UpstreamName: "read", Class: "read"},
	{Name: "search", Upstream: "web", UpstreamName: "search", Class: "external"},
}

var liveFS = []upstream.Tool{
	{Name: "read", Description: "Read a file.", InputSchema: json.RawMessage(goodSchema)},
	{Name: "bad", Description: "Unenforceable.", InputSchema: json.RawMessage(badSchema)},
}

// server is an admin API over a real registry (first use: quarantine) and policy.
type server struct {
	url     string
	db      *sqlite.DB
	reg     *registry.Registry
	policy  atomic.Pointer[policy.Policy]
	reloads atomic.Int32
	// next is the policy source the next reload compiles.
	next atomic.Pointer[string]
}

// newServer starts the API; pins, if not nil, replaces the SQLite pin store.
func newServer(tb testing.TB, pins registry.PinStore) *server {
	tb.Helper()
	db, log := sqlitetest.Open(tb)
	if pins == nil {
		pins = db
	}
	s := &server{db: db}
	s.reg = registry.New(decls, registry.Options{QuarantineFirstUse: true, Pins: pins, Audit: log})
	if err := s.reg.Sync(tb.Context(), "fs", liveFS); err != nil {
		tb.Fatalf("Sync(fs): %v", err)
	}
	p, err := compile(policyV1)
	if err != nil {
		tb.Fatalf("compile policy: %v", err)
	}
	s.policy.Store(p)
	src := policyV2
	s.next.Store(&src)

	h := api.New(api.Options{
		Token:    adminToken,
		Registry: s.reg,
		Policy:   s.policy.Load,
		Reload: func(ctx context.Context) (string, error) {
			s.reloads.Add(1)
			p, err := compile(*s.next.Load())
			if err != nil {
				return "", err
			}
			s.policy.Store(p)
			return p.Version(), nil
		},
		Status: func() api.Status {
			return api.Status{Version: "v0.1.0", PolicyVersion: s.policy.Load().Version(), Sessions: 2, Upstreams: map[string]bool{"fs": true, "web": false}}
		},
	})
	srv := httptest.NewServer(h)
	tb.Cleanup(srv.Close)
	s.url = srv.URL
	return s
}

func compile(src string) (*policy.Policy, error) {
	tools := map[string]policy.ToolInfo{}
	for _, d := range decls {
		tools[d.Name] = policy.ToolInfo{Class: d.Class}
	}
	return policy.Compile([]policy.Source{{Name: "policy.yaml", Data: []byte(src)}}, tools)
}

// do sends a request with the given Authorization header ("" for none) and returns the
// status and body, after checking the headers every response carries.
func (s *server) do(tb testing.TB, method, path, auth, body string) (int, []byte) {
	tb.Helper()
	req, err := http.NewRequestWithContext(tb.Context(), method, s.url+path, strings.NewReader(body))
	if err != nil {
		tb.Fatalf("NewRequest: %v", err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatalf("%s %s: read body: %v", method, path, err)
	}
	for k, want := range map[string]string{"Content-Type": "application/json", "X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"} {
		if got := resp.Header.Get(k); got != want {
			tb.Errorf("%s %s: header %s = %q, want %q", method, path, k, got, want)
		}
	}
	return resp.StatusCode, b
}

const bearer = "Bearer " + adminToken

var requestID = regexp.MustCompile(`^[0-9a-f]{16}$`)

// wantError checks an error response: status, message and a request id.
func wantError(tb testing.TB, call string, status int, body []byte, wantStatus int, wantMsg string) {
	tb.Helper()
	var got map[string]string
	if err := json.Unmarshal(body, &got); err != nil {
		tb.Fatalf("%s body %q: %v", call, body, err)
	}
	if status != wantStatus || got["error"] != wantMsg || !requestID.MatchString(got["request_id"]) || len(got) != 2 {
		tb.Errorf("%s = %d %s, want %d {error: %q, request_id: <16 hex>}", call, status, body, wantStatus, wantMsg)
	}
}

func TestAuth(t *testing.T) {
	t.Parallel()
	s := newServer(t, nil)
	routes := []struct{ method, path, body string }{
		{"GET", "/v1/status", ""},
		{"GET", "/v1/tools", ""},
		{"POST", "/v1/tools/read_file/approve", `{"by":"mallory"}`},
		{"POST", "/v1/policy/reload", ""},
		{"GET", "/v1/nothing-here", ""},
	}
	headers := []struct{ name, auth string }{
		{"no header", ""},
		{"wrong token", "Bearer chpadm_wrong"},
		{"empty token", "Bearer "},
		{"token prefix", bearer[:len(bearer)-1]},
		{"token with suffix", bearer + "x"},
		{"basic scheme", "Basic " + adminToken},
		{"token without scheme", adminToken},
	}
	for _, r := range routes {
		for _, h := range headers {
			t.Run(r.method+" "+r.path+"/"+h.name, func(t *testing.T) {
				t.Parallel()
				status, body := s.do(t, r.method, r.path, h.auth, r.body)
				wantError(t, r.method+" "+r.path, status, body, http.StatusUnauthorized, "unauthenticated: the admin token is required")
			})
		}
	}
	t.Cleanup(func() {
		if n := s.reloads.Load(); n != 0 {
			t.Errorf("Reload called %d times by unauthenticated requests", n)
		}
		if tl, _ := s.reg.Lookup("read_file"); tl.Status != registry.StatusQuarantined {
			t.Errorf("read_file status = %q after unauthenticated approvals, want quarantined", tl.Status)
		}
	})
}

func TestTools(t *testing.T) {
	t.Parallel()
	s := newServer(t, nil)
	status, body := s.do(t, "GET", "/v1/tools", bearer, "")
	if status != http.StatusOK {
		t.Fatalf("GET /v1/tools = %d %s, want 200", status, body)
	}
	var got []api.Tool
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatalf("GET /v1/tools body %s: %v", body, err)
	}
	hash := func(i int) string {
		_, h, err := registry.DefinitionHash(&liveFS[i])
		if err != nil {
			t.Fatalf("DefinitionHash: %v", err)
		}
		return h
	}
	want := []api.Tool{
		{Name: "bad", Upstream: "fs", UpstreamName: "bad", Class: "read", Status: "quarantined", Reason: "it awaits an operator's first approval", LiveHash: hash(1)},
		{Name: "read_file", Upstream: "fs", UpstreamName: "read", Class: "read", Status: "quarantined", Reason: "it awaits an operator's first approval", LiveHash: hash(0)},
		{Name: "search", Upstream: "web", UpstreamName: "search", Class: "external", Status: "pending", Reason: "its upstream has not been reached yet"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("GET /v1/tools (-want +got):\n%s", diff)
	}
}

func TestApproveBadRequest(t *testing.T) {
	t.Parallel()
	s := newServer(t, nil)
	const msg = `body must be {"by": "<who approves, 1 to 128 characters>", "hash": "<the reviewed live hash, optional>", "accept_findings": false}`
	tests := []struct{ name, body string }{
		{"empty body", ""},
		{"not JSON", "by=alice"},
		{"missing by", `{}`},
		{"empty by", `{"by":""}`},
		{"null by", `{"by":null}`},
		{"by not a string", `{"by":5}`},
		{"unknown field", `{"by":"alice","reason":"because"}`},
		{"by too long", `{"by":"` + strings.Repeat("a", 129) + `"}`},
		{"array", `[{"by":"alice"}]`},
		{"body over 64 KiB", `{"by":"` + strings.Repeat("a", 70<<10) + `"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			status, body := s.do(t, "POST", "/v1/tools/read_file/approve", bearer, tt.body)
			wantError(t, "POST approve "+tt.name, status, body, http.StatusBadRequest, msg)
		})
	}
	t.Cleanup(func() {
		if tl, _ := s.reg.Lookup("read_file"); tl.Status != registry.StatusQuarantined {
			t.Errorf("read_file status = %q after bad approvals, want quarantined", tl.Status)
		}
		if _, ok, _ := s.db.Pin(context.Background(), "read_file"); ok {
			t.Errorf("a bad approval stored a pin")
		}
	})
}

func TestApproveErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		tool       string
		pins       registry.PinStore // nil: the SQLite store
		wantStatus int
		wantMsg    string
	}{
		{name: "unknown tool", tool: "nope", wantStatus: http.StatusNotFound, wantMsg: "no declared tool has that name"},
		{name: "upstream name", tool: "read", wantStatus: http.StatusNotFound, wantMsg: "no declared tool has that name"},
		{name: "nothing to approve", tool: "search", wantStatus: http.StatusConflict, wantMsg: "the tool's upstream has not offered a definition yet"},
		{name: "unenforceable definition", tool: "bad", wantStatus: http.StatusUnprocessableEntity,
			wantMsg: "the definition was pinned but cannot be enforced: its input schema or argument overlay cannot be enforced"},
		{name: "pin store fails", tool: "read_file", wantStatus: http.StatusInternalServerError, wantMsg: "approval could not be recorded",
			pins: fakePins{
				pin:    func(context.Context, string) (registry.Pin, bool, error) { return registry.Pin{}, false, nil },
				setPin: func(context.Context, registry.Pin) error { return errBoom },
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newServer(t, tt.pins)
			status, body := s.do(t, "POST", "/v1/tools/"+tt.tool+"/approve", bearer, `{"by":"alice"}`)
			wantError(t, "POST approve "+tt.tool, status, body, tt.wantStatus, tt.wantMsg)
			if strings.Contains(string(body), errBoom.Error()) {
				t.Errorf("POST approve %s body %s leaks the cause", tt.tool, body)
			}
			if tl, ok := s.reg.Lookup(tt.tool); ok && tl.Status == registry.StatusActive {
				t.Errorf("%s is active after a failed approval", tt.tool)
			}
		})
	}
}

func TestApprove(t *testing.T) {
	t.Parallel()
	s := newServer(t, nil)
	by := strings.Repeat("b", 128)
	status, body := s.do(t, "POST", "/v1/tools/read_file/approve", bearer, `{"by":"`+by+`"}`)
	if status != http.StatusOK {
		t.Fatalf("POST approve read_file = %d %s, want 200", status, body)
	}
	_, h, _ := registry.DefinitionHash(&liveFS[0])
	var got api.Tool
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatalf("body %s: %v", body, err)
	}
	want := api.Tool{Name: "read_file", Upstream: "fs", UpstreamName: "read", Class: "read", Status: "active", Hash: h, LiveHash: h}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("POST approve read_file (-want +got):\n%s", diff)
	}
	if tl, _ := s.reg.Lookup("read_file"); tl.Status != registry.StatusActive {
		t.Errorf("registry read_file status = %q, want active", tl.Status)
	}
	p, ok, err := s.db.Pin(t.Context(), "read_file")
	if err != nil || !ok || p.Hash != h || p.ApprovedBy != "operator:"+by {
		t.Errorf("stored pin = %+v, %v, %v, want hash %s approved by operator:%s", p, ok, err, h, by)
	}
	evs, err := s.db.ScanEvents(t.Context(), 0, 100)
	if err != nil {
		t.Fatalf("ScanEvents: %v", err)
	}
	if len(evs) != 1 || evs[0].Kind != audit.KindToolApproved || evs[0].Tool != "read_file" {
		t.Errorf("audit events = %+v, want one tool.approved for read_file", evs)
	}
}

func TestReload(t *testing.T) {
	t.Parallel()
	s := newServer(t, nil)
	old := s.policy.Load().Version()
	status, body := s.do(t, "POST", "/v1/policy/reload", bearer, "")
	v2, _ := compile(policyV2)
	if got := string(body); status != http.StatusOK || got != "{\n  \"policy_version\": \""+v2.Version()+"\"\n}\n" {
		t.Fatalf("POST reload = %d %s, want 200 with the new version %s", status, body, v2.Version())
	}
	if got := s.policy.Load().Version(); got == old || got != v2.Version() {
		t.Errorf("policy version after reload = %s, want %s", got, v2.Version())
	}
}

func TestReloadFailureKeepsOldPolicy(t *testing.T) {
	t.Parallel()
	s := newServer(t, nil)
	old := s.policy.Load().Version()
	broken := "rules:\n  - id: oops\n    match: {tools: [send_mial]}\n    effect: allow\n"
	s.next.Store(&broken)
	_, wantErr := compile(broken)
	if wantErr == nil {
		t.Fatal("the broken policy compiled")
	}

	status, body := s.do(t, "POST", "/v1/policy/reload", bearer, "")
	var got map[string]string
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatalf("body %s: %v", body, err)
	}
	want := map[string]string{"error": wantErr.Error(), "policy_version": old}
	if status != http.StatusUnprocessableEntity {
		t.Errorf("POST reload (broken) status = %d, want 422", status)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("POST reload (broken) body (-want +got):\n%s", diff)
	}
	if !strings.Contains(got["error"], `policy.yaml:3: rule "oops"`) {
		t.Errorf("POST reload (broken) error = %q, want it to name the file, line and rule", got["error"])
	}
	if v := s.policy.Load().Version(); v != old {
		t.Errorf("policy version after a failed reload = %s, want the old %s", v, old)
	}
}

func TestStatus(t *testing.T) {
	t.Parallel()
	s := newServer(t, nil)
	status, body := s.do(t, "GET", "/v1/status", bearer, "")
	if status != http.StatusOK {
		t.Fatalf("GET /v1/status = %d %s, want 200", status, body)
	}
	var got api.Status
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatalf("body %s: %v", body, err)
	}
	want := api.Status{Version: "v0.1.0", PolicyVersion: s.policy.Load().Version(), Sessions: 2, Upstreams: map[string]bool{"fs": true, "web": false}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("GET /v1/status (-want +got):\n%s", diff)
	}
}

// TestDiffAndBoundApproval: the diff of a tool awaiting first approval shows its whole
// definition as added, with the live hash; an approval naming another hash is refused
// and leaves the tool quarantined; one naming the reviewed hash pins it, after which the
// diff is empty.
func TestDiffAndBoundApproval(t *testing.T) {
	t.Parallel()
	s := newServer(t, nil)
	status, body := s.do(t, "GET", "/v1/tools/read_file/diff", bearer, "")
	if status != http.StatusOK {
		t.Fatalf("GET diff = %d %s", status, body)
	}
	var c registry.Comparison
	if err := json.Unmarshal(body, &c); err != nil {
		t.Fatal(err)
	}
	_, h, _ := registry.DefinitionHash(&liveFS[0])
	if c.Against != "" || c.LiveHash != h || c.Status != registry.StatusQuarantined || len(c.Changes) != 3 ||
		c.Changes[1].Field != "description" || c.Changes[1].New != "Read a file." {
		t.Fatalf("diff before approval = %+v", c)
	}
	status, body = s.do(t, "POST", "/v1/tools/read_file/approve", bearer, `{"by":"alice","hash":"sha256:`+strings.Repeat("0", 64)+`"}`)
	if status != http.StatusConflict || !strings.Contains(string(body), "a different definition from the one reviewed") {
		t.Fatalf("approve with a stale hash = %d %s, want 409", status, body)
	}
	if tl, _ := s.reg.Lookup("read_file"); tl.Status != registry.StatusQuarantined {
		t.Fatalf("status after a refused approval = %s", tl.Status)
	}
	if status, body = s.do(t, "POST", "/v1/tools/read_file/approve", bearer, `{"by":"alice","hash":"`+h+`"}`); status != http.StatusOK {
		t.Fatalf("approve with the reviewed hash = %d %s", status, body)
	}
	_, body = s.do(t, "GET", "/v1/tools/read_file/diff", bearer, "")
	c = registry.Comparison{}
	if err := json.Unmarshal(body, &c); err != nil || c.Against != "pin" || len(c.Changes) != 0 || c.ApprovedHash != h {
		t.Fatalf("diff after approval = %+v, %v", c, err)
	}
	if status, _ := s.do(t, "GET", "/v1/tools/nope/diff", bearer, ""); status != http.StatusNotFound {
		t.Errorf("diff of an unknown tool = %d, want 404", status)
	}
}
