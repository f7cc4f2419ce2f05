package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/chaperone-dev/chaperone/internal/approval"
	"github.com/chaperone-dev/chaperone/internal/audit"
	"github.com/chaperone-dev/chaperone/internal/contain"
	"github.com/chaperone-dev/chaperone/internal/identity"
	"github.com/chaperone-dev/chaperone/internal/pipeline"
	"github.com/chaperone-dev/chaperone/internal/policy"
	"github.com/chaperone-dev/chaperone/internal/registry"
	"github.com/chaperone-dev/chaperone/internal/store/sqlite"
	"github.com/chaperone-dev/chaperone/internal/store/sqlite/sqlitetest"
	"github.com/chaperone-dev/chaperone/internal/upstream"
)

// The REST harness's tools, all on upstream "srv": echo answers with its msg, fail with a
// tool-level error, write and send count their runs, wipe is never allowed to run.
var restDecls = []registry.Declaration{
	{Name: "echo", Upstream: "srv", UpstreamName: "echo", Class: policy.ClassRead},
	{Name: "fail", Upstream: "srv", UpstreamName: "fail", Class: policy.ClassRead},
	{Name: "write", Upstream: "srv", UpstreamName: "write", Class: policy.ClassWrite},
	{Name: "send", Upstream: "srv", UpstreamName: "send", Class: policy.ClassExternal},
	{Name: "wipe", Upstream: "srv", UpstreamName: "wipe", Class: policy.ClassDestructive},
}

const restPolicy = `rules:
  - id: reads-and-writes
    match: {tools: [echo, fail, write]}
    effect: allow
  - id: send-needs-approval
    match: {tools: [send]}
    effect: approve
  - id: no-destroy
    match: {classes: [destructive]}
    effect: deny
`

const echoSchemaREST = `{"type":"object","properties":{"msg":{"type":"string","maxLength":40}},"required":["msg"],"additionalProperties":false}`

// restResourceMetadata is announced in the harness's WWW-Authenticate challenges.
const restResourceMetadata = "https://gw.example/.well-known/oauth-protected-resource"

// restHarness is a gateway over a real pipeline: a real registry, policy and audit log
// over SQLite, a real MCP upstream (in process, through the real upstream client), real
// approvals and idempotency records; served over real HTTP on 127.0.0.1, the MCP endpoint
// at /mcp and the REST entry beside it.
type restHarness struct {
	db        *sqlite.DB
	g         *Gateway
	srv       *httptest.Server
	token     string
	approvals *approval.Manager
	// handled counts the calls that reached the pipeline.
	handled atomic.Int64
	// runs counts each tool's executions at the upstream.
	runs map[string]*atomic.Int64
	// hold bounds how long a held call that may wait waits for a person.
	hold time.Duration
}

// countingCalls counts the calls that reach the pipeline.
type countingCalls struct {
	p *pipeline.Pipeline
	n *atomic.Int64
}

func (c countingCalls) Handle(ctx context.Context, call *pipeline.Call) pipeline.Outcome {
	c.n.Add(1)
	return c.p.Handle(ctx, call)
}

// oneUpstream runs every call on one upstream client.
type oneUpstream struct{ c *upstream.Client }

func (o oneUpstream) Call(ctx context.Context, _, tool string, args json.RawMessage) (json.RawMessage, error) {
	return o.c.Call(ctx, tool, args)
}

func newRESTHarness(tb testing.TB) *restHarness {
	tb.Helper()
	h := &restHarness{runs: map[string]*atomic.Int64{}, hold: time.Minute}
	db, log := sqlitetest.Open(tb)
	h.db = db

	srv := mcp.NewServer(&mcp.Implementation{Name: "srv", Version: "1"}, nil)
	for _, d := range restDecls {
		n := &atomic.Int64{}
		h.runs[d.Name] = n
		schema := `{"type":"object","properties":{"path":{"type":"string"},"to":{"type":"string"}}}`
		if d.Name == "echo" {
			schema = echoSchemaREST
		}
		name := d.Name
		srv.AddTool(&mcp.Tool{Name: name, InputSchema: json.RawMessage(schema)},
			func(_ context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
				run := n.Add(1)
				switch name {
				case "echo":
					var a struct{ Msg string }
					json.Unmarshal(req.Params.Arguments, &a)
					return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: a.Msg}}}, nil
				case "fail":
					return &mcp.CallToolResult{IsError: true, Content: []mcp.Content{&mcp.TextContent{Text: "no such file"}}}, nil
				}
				return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: fmt.Sprintf("%s #%d", name, run)}}}, nil
			})
	}
	uc, err := upstream.New(upstream.Config{Name: "srv", Server: srv})
	if err != nil {
		tb.Fatalf("upstream.New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- uc.Run(ctx) }()
	tb.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			tb.Errorf("upstream Run: %v", err)
		}
	})
	wctx, wcancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer wcancel()
	if err := uc.WaitReady(wctx); err != nil {
		tb.Fatalf("upstream WaitReady: %v", err)
	}
	live, err := uc.Tools(wctx)
	if err != nil {
		tb.Fatalf("upstream Tools: %v", err)
	}
	reg := registry.New(restDecls, registry.Options{Pins: db, Audit: log})
	if err := reg.Sync(wctx, "srv", live); err != nil {
		tb.Fatalf("registry Sync: %v", err)
	}

	infos := map[string]policy.ToolInfo{}
	for _, d := range restDecls {
		infos[d.Name] = policy.ToolInfo{Class: d.Class}
	}
	pol, err := policy.Compile([]policy.Source{{Name: "rest.yaml", Data: []byte(restPolicy)}}, infos)
	if err != nil {
		tb.Fatalf("policy.Compile: %v", err)
	}
	idem, err := contain.NewIdempotency(contain.IdempotencyOptions{Store: db})
	if err != nil {
		tb.Fatal(err)
	}
	h.approvals = approval.NewManager(approval.Options{Store: db})
	p := pipeline.New(pipeline.Options{
		Tools: reg, Policy: func() *policy.Policy { return pol }, Upstreams: oneUpstream{uc}, Audit: log,
		Capture: pipeline.Capture{Arguments: true, Results: true},
		Contain: pipeline.Containment{Idempotency: idem},
		Approve: h.approve,
	})

	tok, sha := identity.NewToken()
	agents, err := identity.NewRegistry([]identity.Registration{{Agent: identity.Agent{ID: "a1"}, TokenSHA256: sha}})
	if err != nil {
		tb.Fatal(err)
	}
	h.token = tok
	h.g = New(Options{
		Auth: staticAuth{agents}, Calls: countingCalls{p, &h.handled}, Catalog: reg,
		Policy: func() *policy.Policy { return pol }, Audit: log, MaxBody: 64 << 10,
		ResourceMetadata: restResourceMetadata,
	})
	mux := http.NewServeMux()
	mux.Handle("/mcp", h.g)
	mux.Handle("/", h.g.REST())
	h.srv = httptest.NewServer(mux)
	tb.Cleanup(h.srv.Close)
	return h
}

// approve is the harness's approver, a smaller version of the daemon's: it asks people
// through the approval manager, waits for them if the agent can (up to h.hold), and lets
// the call run only on an approval of exactly this call, consumed once.
func (h *restHarness) approve(ctx context.Context, hold *pipeline.Hold) (string, *pipeline.Refusal) {
	c, pr := hold.Call, hold.Call.Principal
	args := c.Arguments
	if t := bytes.TrimSpace(args); len(t) == 0 || string(t) == "null" {
		args = json.RawMessage(`{}`)
	}
	hash, err := approval.Hash(hold.Tool.Name, args, pr.Agent.ID, pr.User, pr.Task)
	if err != nil {
		return "", &pipeline.Refusal{Code: pipeline.CodeApprovalRequired, Message: "unbindable"}
	}
	var r *approval.Request
	if c.ApprovalID != "" {
		if r, err = h.approvals.Get(ctx, c.ApprovalID); err != nil || r.CallHash != hash {
			return "", &pipeline.Refusal{Code: pipeline.CodeApprovalDenied, Message: "There is no such approval for this call."}
		}
	} else if r, _, err = h.approvals.Request(ctx, &approval.Request{Tool: hold.Tool.Name, Upstream: hold.Tool.Upstream,
		Arguments: args, Agent: pr.Agent.ID, Reason: c.Reason, Rules: hold.Decision.Rules}); err != nil {
		return "", &pipeline.Refusal{Code: pipeline.CodeApprovalRequired, Message: "approvals unavailable"}
	}
	if r.Status == approval.StatusPending && !c.NoWait {
		if w, err := h.approvals.Wait(ctx, r.ID, h.hold); err == nil {
			r = w
		}
	}
	switch r.Status {
	case approval.StatusApproved:
		if _, err := h.approvals.Consume(ctx, r.ID, hash); err != nil {
			return r.ID, &pipeline.Refusal{Code: pipeline.CodeApprovalDenied, Message: "Approval " + r.ID + " was already used."}
		}
		return r.ID, nil
	case approval.StatusPending:
		return r.ID, &pipeline.Refusal{Code: pipeline.CodeApprovalPending, Message: "A person has been asked to approve this call (approval " + r.ID + ")."}
	}
	return r.ID, &pipeline.Refusal{Code: pipeline.CodeApprovalDenied, Message: "Approval " + r.ID + " is " + string(r.Status) + "."}
}

// restReply is a REST response as the tests read it.
type restReply struct {
	Status    int
	Header    http.Header
	Raw       []byte
	RequestID string          `json:"request_id"`
	Result    json.RawMessage `json:"result"`
	Error     *restError      `json:"error"`
}

// send sends one request over HTTP; contentType "" sends none, token "" no credential. It
// may be called from any goroutine.
func (h *restHarness) send(method, path, contentType, token, body string) (*restReply, error) {
	req, err := http.NewRequest(method, h.srv.URL+path, strings.NewReader(body))
	if err != nil {
		return nil, err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := h.srv.Client().Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("%s %s: read body: %w", method, path, err)
	}
	r := &restReply{Status: resp.StatusCode, Header: resp.Header, Raw: raw}
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, r); err != nil {
			return nil, fmt.Errorf("%s %s = %d with a body that is not JSON: %q", method, path, resp.StatusCode, raw)
		}
	}
	return r, nil
}

// post is send from the test's goroutine: an error fails the test.
func (h *restHarness) post(tb testing.TB, method, path, contentType, token, body string) *restReply {
	tb.Helper()
	r, err := h.send(method, path, contentType, token, body)
	if err != nil {
		tb.Fatal(err)
	}
	return r
}

// call calls a tool over REST with the harness's token.
func (h *restHarness) call(tb testing.TB, tool, body string) *restReply {
	tb.Helper()
	return h.post(tb, http.MethodPost, "/v1/tools/"+tool+":call", "application/json", h.token, body)
}

// callAsync calls a tool over REST from another goroutine; the reply arrives on the
// channel, or nil after the error is reported.
func (h *restHarness) callAsync(tb testing.TB, tool, body string) <-chan *restReply {
	ch := make(chan *restReply, 1)
	go func() {
		r, err := h.send(http.MethodPost, "/v1/tools/"+tool+":call", "application/json", h.token, body)
		if err != nil {
			tb.Error(err)
		}
		ch <- r
	}()
	return ch
}

// mcpCall calls a tool over MCP, sessionless, and returns the JSON-RPC response.
func (h *restHarness) mcpCall(tb testing.TB, params string) (status int, hdr http.Header, body []byte) {
	tb.Helper()
	req, err := http.NewRequest(http.MethodPost, h.srv.URL+"/mcp",
		strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":`+params+`}`))
	if err != nil {
		tb.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+h.token)
	resp, err := h.srv.Client().Do(req)
	if err != nil {
		tb.Fatalf("MCP tools/call: %v", err)
	}
	defer resp.Body.Close()
	body, _ = io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, body
}

// events returns the audit events after seq.
func (h *restHarness) events(tb testing.TB, after int64) []audit.Event {
	tb.Helper()
	ev, err := h.db.ScanEvents(context.Background(), after, 1000)
	if err != nil {
		tb.Fatalf("ScanEvents: %v", err)
	}
	return ev
}

// lastSeq is the sequence number of the newest audit event.
func (h *restHarness) lastSeq(tb testing.TB) int64 {
	tb.Helper()
	ev, err := h.db.TailEvents(context.Background(), 1)
	if err != nil {
		tb.Fatalf("TailEvents: %v", err)
	}
	if len(ev) == 0 {
		return 0
	}
	return ev[0].Seq
}

// checkRequestID checks that a reply carries one request id, in its header and body.
func checkRequestID(tb testing.TB, what string, r *restReply) {
	tb.Helper()
	hid := r.Header.Get(RequestIDHeader)
	if !strings.HasPrefix(hid, "req_") || hid != r.RequestID {
		tb.Errorf("%s: %s header %q, body request_id %q; want the same req_ id", what, RequestIDHeader, hid, r.RequestID)
	}
}

func TestRESTCallReturnsUpstreamResult(t *testing.T) {
	t.Parallel()
	h := newRESTHarness(t)
	for _, tc := range []struct{ tool, args string }{
		{"echo", `{"msg":"hello"}`},
		{"fail", `{}`}, // a tool-level error is a result, not a refusal
	} {
		r := h.call(t, tc.tool, `{"arguments":`+tc.args+`}`)
		checkRequestID(t, tc.tool, r)
		if r.Status != http.StatusOK || r.Error != nil || len(r.Result) == 0 {
			t.Fatalf("REST %s = %d %s, want 200 with a result", tc.tool, r.Status, r.Raw)
		}
		if ct := r.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("REST %s Content-Type = %q, want application/json", tc.tool, ct)
		}
		// The same call over MCP returns the same result, byte for byte.
		_, _, body := h.mcpCall(t, `{"name":"`+tc.tool+`","arguments":`+tc.args+`}`)
		var m struct {
			Result json.RawMessage `json:"result"`
		}
		if err := json.Unmarshal(body, &m); err != nil {
			t.Fatalf("MCP %s: %v: %s", tc.tool, err, body)
		}
		if !bytes.Equal(r.Result, m.Result) {
			t.Errorf("REST %s result = %s, MCP result = %s; want the same", tc.tool, r.Result, m.Result)
		}
	}
	var res struct {
		IsError bool `json:"isError"`
		Content []struct{ Text string }
	}
	json.Unmarshal(h.call(t, "echo", `{"arguments":{"msg":"hi"}}`).Result, &res)
	if res.IsError || len(res.Content) != 1 || res.Content[0].Text != "hi" {
		t.Errorf("echo result = %+v, want the text hi", res)
	}
	json.Unmarshal(h.call(t, "fail", `{}`).Result, &res)
	if !res.IsError {
		t.Errorf("fail result = %+v, want isError", res)
	}
}

func TestRESTRefusals(t *testing.T) {
	t.Parallel()
	h := newRESTHarness(t)
	for _, tc := range []struct {
		name, tool, body string
		status           int
		code             pipeline.Code
		rules            []string
	}{
		{"unknown tool", "nope", `{}`, http.StatusNotFound, pipeline.CodeUnknownTool, nil},
		{"denied", "wipe", `{"arguments":{}}`, http.StatusForbidden, pipeline.CodeDeniedByPolicy, []string{"no-destroy"}},
		{"invalid arguments", "echo", `{"arguments":{"msg":7}}`, http.StatusUnprocessableEntity, pipeline.CodeInvalidArguments, nil},
		{"arguments not an object", "echo", `{"arguments":[1]}`, http.StatusUnprocessableEntity, pipeline.CodeInvalidArguments, nil},
		{"duplicate argument", "echo", `{"arguments":{"msg":"a","msg":"b"}}`, http.StatusUnprocessableEntity, pipeline.CodeInvalidArguments, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := h.lastSeq(t)
			r := h.call(t, tc.tool, tc.body)
			checkRequestID(t, tc.name, r)
			if r.Status != tc.status || r.Error == nil || r.Error.Code != string(tc.code) || r.Error.Message == "" || r.Result != nil {
				t.Fatalf("REST %s %s = %d %s, want %d with code %s", tc.tool, tc.body, r.Status, r.Raw, tc.status, tc.code)
			}
			if diff := cmp.Diff(tc.rules, r.Error.Rules); diff != "" {
				t.Errorf("rules (-want +got):\n%s", diff)
			}
			// Refused, and on record as refused under the request id the agent was given.
			ev := h.events(t, before)
			if len(ev) != 1 || ev[0].Kind != audit.KindCallRefused || ev[0].RequestID != r.RequestID || ev[0].Reason != string(tc.code) {
				t.Errorf("audit events = %+v, want one call.refused %s for %s", ev, tc.code, r.RequestID)
			}
		})
	}
	if n := h.runs["wipe"].Load(); n != 0 {
		t.Errorf("wipe ran %d times", n)
	}
}

// TestRESTBadRequests: a request the entry cannot take is refused before the pipeline,
// with a status and an error naming what was wrong and the bound it broke.
func TestRESTBadRequests(t *testing.T) {
	t.Parallel()
	h := newRESTHarness(t)
	big := `{"arguments":{"msg":"` + strings.Repeat("x", 64<<10) + `"}}`
	for _, tc := range []struct {
		name, method, path, ctype, body string
		status                          int
		code, msg                       string
	}{
		{"invalid JSON", "POST", "/v1/tools/echo:call", "application/json", `{"arguments":`, 400, restInvalidRequest, "not valid JSON"},
		{"syntax error says where", "POST", "/v1/tools/echo:call", "application/json", `{"wait":tru}`, 400, restInvalidRequest, "at byte"},
		{"empty body", "POST", "/v1/tools/echo:call", "application/json", ``, 400, restInvalidRequest, "must be a JSON object"},
		{"array body", "POST", "/v1/tools/echo:call", "application/json", `[{}]`, 400, restInvalidRequest, "must be a JSON object"},
		{"string body", "POST", "/v1/tools/echo:call", "application/json", `"hi"`, 400, restInvalidRequest, "must be a JSON object"},
		{"unknown field", "POST", "/v1/tools/echo:call", "application/json", `{"argument":{}}`, 400, restInvalidRequest, `unknown field "argument"`},
		{"MCP _meta is not a field", "POST", "/v1/tools/echo:call", "application/json", `{"_meta":{}}`, 400, restInvalidRequest, `unknown field "_meta"`},
		{"repeated field", "POST", "/v1/tools/echo:call", "application/json", `{"wait":true,"wait":false}`, 400, restInvalidRequest, `field "wait" appears more than once`},
		{"trailing data", "POST", "/v1/tools/echo:call", "application/json", `{} {}`, 400, restInvalidRequest, "after top-level value"},
		{"wait not a bool", "POST", "/v1/tools/echo:call", "application/json", `{"wait":"no"}`, 400, restInvalidRequest, `field "wait" must be true or false`},
		{"reason not a string", "POST", "/v1/tools/echo:call", "application/json", `{"reason":1}`, 400, restInvalidRequest, `field "reason" must be a string`},
		{"usage not an object", "POST", "/v1/tools/echo:call", "application/json", `{"usage":"lots"}`, 400, restInvalidRequest, `field "usage" must be an object`},
		{"usage unknown field", "POST", "/v1/tools/echo:call", "application/json", `{"usage":{"tokens":5}}`, 400, restInvalidRequest, `field "usage" must be an object`},
		{"usage negative", "POST", "/v1/tools/echo:call", "application/json", `{"usage":{"input_tokens":-1}}`, 400, restInvalidRequest, "between 0 and 1000000000"},
		{"usage cost too high", "POST", "/v1/tools/echo:call", "application/json", `{"usage":{"cost":2e6}}`, 400, restInvalidRequest, "cost must be between 0 and 1000000"},
		{"approval id too long", "POST", "/v1/tools/echo:call", "application/json", `{"approval_id":"` + strings.Repeat("a", 65) + `"}`, 400, restInvalidRequest, `field "approval_id" is longer than 64 bytes`},
		{"reason too long", "POST", "/v1/tools/echo:call", "application/json", `{"reason":"` + strings.Repeat("r", MaxReasonBytes+1) + `"}`, 400, restInvalidRequest, `field "reason" is longer than 2048 bytes`},
		{"key too long", "POST", "/v1/tools/echo:call", "application/json", `{"idempotency_key":"` + strings.Repeat("k", 256) + `"}`, 400, restInvalidRequest, `field "idempotency_key" is longer than 255 bytes`},
		{"oversized body", "POST", "/v1/tools/echo:call", "application/json", big, 413, restBodyTooLarge, "larger than 65536 bytes"},
		{"wrong content type", "POST", "/v1/tools/echo:call", "text/plain", `{}`, 415, restUnsupportedType, "application/json"},
		{"no content type", "POST", "/v1/tools/echo:call", "", `{}`, 415, restUnsupportedType, "application/json"},
		{"wrong method", "GET", "/v1/tools/echo:call", "", ``, 405, restMethodNotAllowed, "POST"},
		{"no :call", "POST", "/v1/tools/echo", "application/json", `{}`, 404, restNotFound, "/v1/tools/{name}:call"},
		{"empty name", "POST", "/v1/tools/:call", "application/json", `{}`, 404, restNotFound, "/v1/tools/{name}:call"},
		{"nested path", "POST", "/v1/tools/a/b:call", "application/json", `{}`, 404, restNotFound, "/v1/tools/{name}:call"},
		{"other path", "GET", "/v1/other", "", ``, 404, restNotFound, "/v1/tools/{name}:call"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := h.handled.Load()
			r := h.post(t, tc.method, tc.path, tc.ctype, h.token, tc.body)
			checkRequestID(t, tc.name, r)
			if r.Status != tc.status || r.Error == nil || r.Error.Code != tc.code || !strings.Contains(r.Error.Message, tc.msg) {
				t.Errorf("%s %s %.40q = %d %s, want %d %s saying %q", tc.method, tc.path, tc.body, r.Status, r.Raw, tc.status, tc.code, tc.msg)
			}
			if tc.status == http.StatusMethodNotAllowed && r.Header.Get("Allow") != "POST" {
				t.Errorf("405 Allow = %q, want POST", r.Header.Get("Allow"))
			}
			if n := h.handled.Load() - before; n != 0 {
				t.Errorf("%d calls reached the pipeline, want none", n)
			}
		})
	}
}

// TestRESTAuthentication: a missing or bad credential gets the 401 and the challenge the
// MCP endpoint gives, is audited like there, and comes before any other check.
func TestRESTAuthentication(t *testing.T) {
	t.Parallel()
	h := newRESTHarness(t)
	for _, tc := range []struct {
		name, header string
		failure      identity.Failure
	}{
		{"no token", "", identity.FailureMissing},
		{"unknown token", "Bearer chp_" + strings.Repeat("A", 43), identity.FailureUnknown},
		{"forged token", "Bearer " + h.token[:len(h.token)-1] + "x", identity.FailureUnknown},
		{"not bearer", "Basic dXNlcjpwYXNz", identity.FailureMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var challenges []string
			for _, path := range []string{"/mcp", "/v1/tools/echo:call", "/v1/tools/nope", "/v1/elsewhere"} {
				before := h.lastSeq(t)
				req, _ := http.NewRequest(http.MethodPost, h.srv.URL+path, strings.NewReader(`{"arguments":{"msg":"x"}}`))
				req.Header.Set("Content-Type", "application/json")
				if tc.header != "" {
					req.Header.Set("Authorization", tc.header)
				}
				resp, err := h.srv.Client().Do(req)
				if err != nil {
					t.Fatal(err)
				}
				raw, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusUnauthorized {
					t.Fatalf("POST %s = %d %s, want 401", path, resp.StatusCode, raw)
				}
				challenges = append(challenges, resp.Header.Get("WWW-Authenticate"))
				rid := resp.Header.Get(RequestIDHeader)
				if path != "/mcp" {
					var r restReply
					if err := json.Unmarshal(raw, &r); err != nil || r.Error == nil || r.Error.Code != "unauthenticated" || r.RequestID != rid || rid == "" {
						t.Errorf("POST %s body %s, want code unauthenticated and request id %q", path, raw, rid)
					}
					if strings.Contains(string(raw), h.token) {
						t.Errorf("POST %s echoes the credential: %s", path, raw)
					}
				}
				ev := h.events(t, before)
				if len(ev) != 1 || ev[0].Kind != audit.KindAuthFailed || ev[0].Reason != "unauthenticated" ||
					!strings.HasPrefix(ev[0].Detail, string(tc.failure)+" from 127.0.0.1:") || (path != "/mcp" && ev[0].RequestID != rid) {
					t.Errorf("POST %s audit = %+v, want one auth.failed %s with request id %q", path, ev, tc.failure, rid)
				}
			}
			want := `Bearer realm="chaperone", error="invalid_token", resource_metadata="` + restResourceMetadata + `"`
			if tc.failure == identity.FailureMissing {
				want = `Bearer realm="chaperone", resource_metadata="` + restResourceMetadata + `"`
			}
			for i, c := range challenges {
				if c != want {
					t.Errorf("challenge #%d = %q, want %q (the MCP endpoint's)", i, c, want)
				}
			}
		})
	}
	if n := h.handled.Load(); n != 0 {
		t.Errorf("%d unauthenticated calls reached the pipeline", n)
	}
}

// TestRESTApproval: a held call that cannot wait is 202 with the approval id; retried with
// it once a person approved, it runs, once. One that waits blocks until a person decides.
func TestRESTApproval(t *testing.T) {
	t.Parallel()
	h := newRESTHarness(t)
	body := `{"arguments":{"to":"bob"},"wait":false,"reason":"bob asked"}`
	r := h.call(t, "send", body)
	checkRequestID(t, "held call", r)
	if r.Status != http.StatusAccepted || r.Error == nil || r.Error.Code != string(pipeline.CodeApprovalPending) || !strings.HasPrefix(r.Error.ApprovalID, "apr_") {
		t.Fatalf("held call = %d %s, want 202 approval_pending with an approval id", r.Status, r.Raw)
	}
	id := r.Error.ApprovalID
	req, err := h.approvals.Get(context.Background(), id)
	if err != nil || req.Reason != "bob asked" || req.Tool != "send" {
		t.Fatalf("approval %s = %+v, %v; want the send call with its reason", id, req, err)
	}
	// Retried before anyone decided: still pending, same approval.
	if r := h.call(t, "send", `{"arguments":{"to":"bob"},"wait":false,"approval_id":"`+id+`"}`); r.Status != http.StatusAccepted || r.Error.ApprovalID != id {
		t.Fatalf("retry while pending = %d %s, want 202 with %s", r.Status, r.Raw, id)
	}
	if _, err := h.approvals.Approve(context.Background(), id, "carol"); err != nil {
		t.Fatalf("Approve: %v", err)
	}
	// Another call cannot use the approval.
	if r := h.call(t, "send", `{"arguments":{"to":"mallory"},"wait":false,"approval_id":"`+id+`"}`); r.Status != http.StatusForbidden || r.Error.Code != string(pipeline.CodeApprovalDenied) {
		t.Errorf("other call with the approval = %d %s, want 403 approval_denied", r.Status, r.Raw)
	}
	r = h.call(t, "send", `{"arguments":{"to":"bob"},"wait":false,"approval_id":"`+id+`"}`)
	if r.Status != http.StatusOK || r.Error != nil || !strings.Contains(string(r.Result), "send #1") {
		t.Fatalf("retry with the approval = %d %s, want 200 with the result", r.Status, r.Raw)
	}
	// The approval covers one execution.
	if r := h.call(t, "send", `{"arguments":{"to":"bob"},"wait":false,"approval_id":"`+id+`"}`); r.Status == http.StatusOK {
		t.Errorf("second use of the approval = %d %s, want a refusal", r.Status, r.Raw)
	}
	if n := h.runs["send"].Load(); n != 1 {
		t.Errorf("send ran %d times, want 1", n)
	}

	// wait defaults to true: the call blocks until a person decides.
	got := h.callAsync(t, "send", `{"arguments":{"to":"dave"}}`)
	var pending []approval.Request
	deadline := time.Now().Add(30 * time.Second)
	for len(pending) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no pending approval request appeared for the waiting call")
		}
		pending, err = h.approvals.List(context.Background(), approval.Filter{Status: approval.StatusPending, Tool: "send"})
		if err != nil {
			t.Fatal(err)
		}
		select {
		case r := <-got:
			if r != nil {
				t.Fatalf("waiting call answered before anyone decided: %d %s", r.Status, r.Raw)
			}
			t.FailNow()
		case <-time.After(5 * time.Millisecond):
		}
	}
	if _, err := h.approvals.Approve(context.Background(), pending[0].ID, "carol"); err != nil {
		t.Fatal(err)
	}
	if r := <-got; r == nil || r.Status != http.StatusOK || !strings.Contains(string(r.Result), "send #2") {
		t.Errorf("waiting call after approval = %d %s, want 200 with the result", r.Status, r.Raw)
	}
}

// TestRESTIdempotency: a retried call with the same key is answered from its record, not
// run again — also when the retries race; the key cannot be reused for another call.
func TestRESTIdempotency(t *testing.T) {
	t.Parallel()
	h := newRESTHarness(t)
	first := h.call(t, "write", `{"arguments":{"path":"/a"},"idempotency_key":"k-1"}`)
	if first.Status != http.StatusOK {
		t.Fatalf("first call = %d %s", first.Status, first.Raw)
	}
	before := h.lastSeq(t)
	again := h.call(t, "write", `{"arguments":{"path":"/a"},"idempotency_key":"k-1"}`)
	if again.Status != http.StatusOK || !bytes.Equal(again.Result, first.Result) || again.RequestID == first.RequestID {
		t.Errorf("retry = %d %s, want 200 with the first result %s under a new request id", again.Status, again.Raw, first.Result)
	}
	if ev := h.events(t, before); len(ev) != 1 || ev[0].Kind != audit.KindCallDeduplicated || ev[0].RequestID != again.RequestID {
		t.Errorf("retry's audit = %+v, want one call.deduplicated", ev)
	}
	if r := h.call(t, "write", `{"arguments":{"path":"/b"},"idempotency_key":"k-1"}`); r.Status != http.StatusConflict || r.Error.Code != string(pipeline.CodeIdempotencyConflict) {
		t.Errorf("key reused for another call = %d %s, want 409 idempotency_conflict", r.Status, r.Raw)
	}

	const racers = 8
	var chans []<-chan *restReply
	for range racers {
		chans = append(chans, h.callAsync(t, "write", `{"arguments":{"path":"/race"},"idempotency_key":"k-race"}`))
	}
	var replies []*restReply
	for _, ch := range chans {
		if r := <-ch; r != nil {
			replies = append(replies, r)
		}
	}
	if len(replies) != racers {
		t.Fatalf("%d of %d racing calls answered", len(replies), racers)
	}
	for i, r := range replies {
		if r.Status != http.StatusOK || !bytes.Equal(r.Result, replies[0].Result) {
			t.Errorf("racer %d = %d %s, want 200 with %s", i, r.Status, r.Raw, replies[0].Result)
		}
	}
	if n := h.runs["write"].Load(); n != 2 {
		t.Errorf("write ran %d times, want 2 (once per key)", n)
	}
}

// TestRESTAuditMatchesMCP runs the same calls through MCP on one gateway and through REST
// on another, identical one: the audit events must be the same, field for field, but for
// the request ids (compared by order of appearance), times and upstream latencies.
func TestRESTAuditMatchesMCP(t *testing.T) {
	t.Parallel()
	type step struct {
		tool, args string
		// options as REST fields; meta is the same as MCP _meta.
		options, meta string
	}
	steps := []step{
		{"echo", `{"msg":"hello"}`, ``, ``},
		{"fail", `{}`, ``, ``},
		{"wipe", `{}`, ``, ``},
		{"nope", `{"a":1}`, ``, ``},
		{"echo", `{"msg":7}`, ``, ``},
		{"echo", `{"msg":"p"}`, `,"prompt":"say p","reason":"asked","usage":{"input_tokens":10,"output_tokens":5,"cost":0.25}`,
			`,"_meta":{"dev.chaperone/prompt":"say p","dev.chaperone/reason":"asked","dev.chaperone/usage":{"input_tokens":10,"output_tokens":5,"cost":0.25}}`},
		{"write", `{"path":"/x"}`, `,"idempotency_key":"same"`, `,"_meta":{"dev.chaperone/idempotency_key":"same"}`},
		{"write", `{"path":"/x"}`, `,"idempotency_key":"same"`, `,"_meta":{"dev.chaperone/idempotency_key":"same"}`},
		{"write", `{"path":"/y"}`, `,"idempotency_key":"same"`, `,"_meta":{"dev.chaperone/idempotency_key":"same"}`},
	}
	viaMCP, viaREST := newRESTHarness(t), newRESTHarness(t)
	mcpStart, restStart := viaMCP.lastSeq(t), viaREST.lastSeq(t)
	for _, s := range steps {
		if status, _, body := viaMCP.mcpCall(t, `{"name":"`+s.tool+`","arguments":`+s.args+s.meta+`}`); status != http.StatusOK || !bytes.Contains(body, []byte(`"result"`)) {
			t.Fatalf("MCP %s = %d %s", s.tool, status, body)
		}
		if r := viaREST.call(t, s.tool, `{"arguments":`+s.args+s.options+`}`); r.RequestID == "" {
			t.Fatalf("REST %s = %d %s", s.tool, r.Status, r.Raw)
		}
	}
	mcpEvents, restEvents := viaMCP.events(t, mcpStart), viaREST.events(t, restStart)
	if len(mcpEvents) < len(steps) {
		t.Fatalf("MCP wrote %d events for %d calls", len(mcpEvents), len(steps))
	}
	opts := cmp.Options{cmpopts.IgnoreFields(audit.Event{}, "Seq", "Time", "LatencyMicros", "PrevHash", "Hash"), cmpopts.EquateEmpty()}
	if diff := cmp.Diff(anonymize(mcpEvents), anonymize(restEvents), opts); diff != "" {
		t.Errorf("audit events (-MCP +REST):\n%s", diff)
	}
}

// anonymize replaces request ids, in RequestID and in messages, by their order of first
// appearance.
func anonymize(events []audit.Event) []audit.Event {
	ids := map[string]string{}
	var order []string
	out := make([]audit.Event, len(events))
	for i, e := range events {
		if _, ok := ids[e.RequestID]; !ok && e.RequestID != "" {
			ids[e.RequestID] = fmt.Sprintf("request#%d", len(order))
			order = append(order, e.RequestID)
		}
		out[i] = e
	}
	for i := range out {
		out[i].RequestID = ids[out[i].RequestID]
		for _, id := range order {
			out[i].Message = strings.ReplaceAll(out[i].Message, id, ids[id])
		}
	}
	return out
}

// TestRESTOptionsReachPipeline: every body field reaches the pipeline's call as the same
// _meta key does over MCP, and a REST call is sessionless whatever headers it sends.
func TestRESTOptionsReachPipeline(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var got []*pipeline.Call
	g, tok := newTestGatewayCalls(t, func(c *pipeline.Call) pipeline.Outcome {
		mu.Lock()
		got = append(got, c)
		mu.Unlock()
		return pipeline.Outcome{Result: json.RawMessage(`{"content":[]}`)}
	})
	sid := do(g, tok, `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18"}}`, nil).Header().Get("Mcp-Session-Id")
	if sid == "" {
		t.Fatal("initialize gave no session")
	}
	do(g, tok, `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"t","arguments":{"a":1},"_meta":{`+
		`"dev.chaperone/approval":"apr_1","dev.chaperone/wait":false,"dev.chaperone/reason":"r","dev.chaperone/idempotency_key":"k",`+
		`"dev.chaperone/usage":{"input_tokens":3,"output_tokens":4,"cost":0.5},"dev.chaperone/prompt":"p"}}}`, nil)
	w := doREST(g, tok, "/v1/tools/t:call", `{"arguments":{"a":1},"approval_id":"apr_1","wait":false,"reason":"r","idempotency_key":"k",`+
		`"usage":{"input_tokens":3,"output_tokens":4,"cost":0.5},"prompt":"p"}`, map[string]string{"Mcp-Session-Id": sid})
	if w.Code != http.StatusOK {
		t.Fatalf("REST = %d %s", w.Code, w.Body)
	}
	if len(got) != 2 {
		t.Fatalf("%d calls reached the pipeline, want 2", len(got))
	}
	mcpCall, restCall := *got[0], *got[1]
	if restCall.SessionID != "" || restCall.SessionCalls != 0 {
		t.Errorf("REST call session = %q (%d calls), want none", restCall.SessionID, restCall.SessionCalls)
	}
	if restCall.RequestID != w.Header().Get(RequestIDHeader) {
		t.Errorf("REST call request id %q, header %q", restCall.RequestID, w.Header().Get(RequestIDHeader))
	}
	want := pipeline.Call{Tool: "t", Arguments: json.RawMessage(`{"a":1}`), Prompt: "p", ApprovalID: "apr_1", NoWait: true,
		Reason: "r", IdempotencyKey: "k", ReportedSpend: 0.5, ReportedTokens: 7}
	ignore := cmpopts.IgnoreFields(pipeline.Call{}, "RequestID", "Principal")
	for name, c := range map[string]pipeline.Call{"MCP": mcpCall, "REST": restCall} {
		if diff := cmp.Diff(want, c, ignore); diff != "" {
			t.Errorf("%s call (-want +got):\n%s", name, diff)
		}
	}
	// Defaults: wait, no options.
	doREST(g, tok, "/v1/tools/t:call", `{}`, nil)
	if c := got[2]; c.NoWait || c.ApprovalID != "" || c.Arguments != nil || c.ReportedTokens != 0 {
		t.Errorf("call without options = %+v, want the defaults", c)
	}
	doREST(g, tok, "/v1/tools/t:call", `{"arguments":null,"wait":null,"usage":null,"prompt":null,"reason":null}`, nil)
	if c := got[3]; c.NoWait || c.Arguments != nil || c.Prompt != "" {
		t.Errorf("call with null options = %+v, want the defaults", c)
	}
}

// TestRESTBoundsShareMCPMessages: the same out-of-bounds value gets the same message over
// both entries, but for how each names the field.
func TestRESTBoundsShareMCPMessages(t *testing.T) {
	t.Parallel()
	g, tok := newTestGateway(t)
	for _, tc := range []struct{ key, field, value string }{
		{MetaUsage, "usage", `{"input_tokens":-1}`},
		{MetaUsage, "usage", `{"output_tokens":1.5}`},
		{MetaUsage, "usage", `{"cost":-0.5}`},
		{MetaUsage, "usage", `[]`},
		{MetaApproval, "approval_id", `"` + strings.Repeat("a", 65) + `"`},
		{MetaReason, "reason", `"` + strings.Repeat("r", MaxReasonBytes+1) + `"`},
		{MetaIdempotencyKey, "idempotency_key", `"` + strings.Repeat("k", 256) + `"`},
		{MetaPrompt, "prompt", `"` + strings.Repeat("p", MaxPromptBytes+1) + `"`},
	} {
		g.opts.MaxBody = 1 << 20
		w := do(g, tok, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","_meta":{"`+tc.key+`":`+tc.value+`}}}`, nil)
		var m struct{ Error struct{ Message string } }
		json.Unmarshal(w.Body.Bytes(), &m)
		rw := doREST(g, tok, "/v1/tools/t:call", `{"`+tc.field+`":`+tc.value+`}`, nil)
		var r restReply
		json.Unmarshal(rw.Body.Bytes(), &r)
		if rw.Code != http.StatusBadRequest || r.Error == nil {
			t.Errorf("REST %s=%.30s = %d %s, want 400", tc.field, tc.value, rw.Code, rw.Body)
			continue
		}
		want := strings.Replace(strings.TrimPrefix(m.Error.Message, "invalid params: "), `_meta "`+tc.key+`"`, `field "`+tc.field+`"`, 1)
		if got := strings.TrimPrefix(r.Error.Message, "invalid request: "); got != want || !strings.Contains(got, tc.field) {
			t.Errorf("REST %s message %q, want %q (the MCP message %q)", tc.field, got, want, m.Error.Message)
		}
	}
}

// TestRESTToolNames: the name is the path segment before ":call", unescaped; names with
// colons or escaped slashes are names like any other.
func TestRESTToolNames(t *testing.T) {
	t.Parallel()
	var tools []string
	g, tok := newTestGatewayCalls(t, func(c *pipeline.Call) pipeline.Outcome {
		tools = append(tools, c.Tool)
		return pipeline.Outcome{Result: json.RawMessage(`{}`)}
	})
	for _, tc := range []struct{ path, want string }{
		{"/v1/tools/read_file:call", "read_file"},
		{"/v1/tools/ns:tool:call", "ns:tool"},
		{"/v1/tools/a%2Fb:call", "a/b"},
		{"/v1/tools/caf%C3%A9:call", "café"},
	} {
		tools = nil
		w := doREST(g, tok, tc.path, `{}`, nil)
		if w.Code != http.StatusOK || len(tools) != 1 || tools[0] != tc.want {
			t.Errorf("POST %s = %d, tool %q; want 200 calling %q", tc.path, w.Code, tools, tc.want)
		}
	}
}

// TestRESTStatusCoversEveryCode reads the pipeline package's source for its Code constants:
// each must have its own REST status, so a new code cannot fall through to a 500 unnoticed.
func TestRESTStatusCoversEveryCode(t *testing.T) {
	t.Parallel()
	codes := pipelineCodes(t)
	if len(codes) < 25 || codes[pipeline.CodeDeniedByPolicy] != "CodeDeniedByPolicy" {
		t.Fatalf("found %d codes in the pipeline's source (%v): the scan is broken", len(codes), codes)
	}
	for code, name := range codes {
		s, ok := restStatus[code]
		if !ok {
			t.Errorf("pipeline.%s (%q) has no REST status: add it to restStatus and docs/rest.md", name, code)
			continue
		}
		if (s < 400 || s > 599) && code != pipeline.CodeApprovalPending {
			t.Errorf("pipeline.%s has status %d, want an error status", name, s)
		}
	}
	for code := range restStatus {
		if _, ok := codes[code]; !ok {
			t.Errorf("restStatus maps %q, which the pipeline does not define", code)
		}
	}
	if HTTPStatus("no_such_code") != http.StatusInternalServerError {
		t.Errorf("an unmapped code is not a 500")
	}
}

// pipelineCodes returns the pipeline's Code constants, value to name, from its source.
func pipelineCodes(tb testing.TB) map[pipeline.Code]string {
	tb.Helper()
	files, err := filepath.Glob(filepath.Join("..", "pipeline", "*.go"))
	if err != nil || len(files) == 0 {
		tb.Fatalf("pipeline sources: %v (%d files)", err, len(files))
	}
	fset := token.NewFileSet()
	codes := map[pipeline.Code]string{}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		af, err := parser.ParseFile(fset, f, nil, parser.SkipObjectResolution)
		if err != nil {
			tb.Fatalf("parse %s: %v", f, err)
		}
		for _, d := range af.Decls {
			gd, ok := d.(*ast.GenDecl)
			if !ok || gd.Tok != token.CONST {
				continue
			}
			for _, spec := range gd.Specs {
				vs := spec.(*ast.ValueSpec)
				typed := false
				if id, ok := vs.Type.(*ast.Ident); ok && id.Name == "Code" {
					typed = true
				}
				for i, name := range vs.Names {
					if i >= len(vs.Values) {
						continue
					}
					v, isCode := vs.Values[i], typed
					if call, ok := v.(*ast.CallExpr); ok && len(call.Args) == 1 {
						if fn, ok := call.Fun.(*ast.Ident); ok && fn.Name == "Code" {
							v, isCode = call.Args[0], true
						}
					}
					if !isCode {
						continue
					}
					lit, ok := v.(*ast.BasicLit)
					if !ok || lit.Kind != token.STRING {
						tb.Fatalf("pipeline.%s is a Code but not a string literal: this scan cannot read it", name.Name)
					}
					s, err := strconv.Unquote(lit.Value)
					if err != nil {
						tb.Fatal(err)
					}
					codes[pipeline.Code(s)] = name.Name
				}
			}
		}
	}
	return codes
}

// TestRESTRefusalFields: a refusal passes on the pipeline's code, message, rules,
// explanation and approval id; a call that ends with neither a result nor a refusal is a
// 500, never an empty 200.
func TestRESTRefusalFields(t *testing.T) {
	t.Parallel()
	g, tok := newTestGatewayCalls(t, func(c *pipeline.Call) pipeline.Outcome {
		switch c.Tool {
		case "held":
			return pipeline.Outcome{Refusal: &pipeline.Refusal{Code: pipeline.CodeApprovalPending, Message: "Asked.", Rules: []string{"r1", "r2"},
				Explanation: "to came from inbox()", ApprovalID: "apr_x"}}
		case "limited":
			return pipeline.Outcome{Refusal: &pipeline.Refusal{Code: pipeline.CodeRateLimited, Message: "Slow down."}}
		case "empty":
			return pipeline.Outcome{}
		}
		return pipeline.Outcome{Refusal: &pipeline.Refusal{Code: "brand_new_code", Message: "?"}}
	})
	w := doREST(g, tok, "/v1/tools/held:call", `{}`, nil)
	want := `{"request_id":"` + w.Header().Get(RequestIDHeader) + `","error":{"code":"approval_pending","message":"Asked.","rules":["r1","r2"],"explanation":"to came from inbox()","approval_id":"apr_x"}}`
	if w.Code != http.StatusAccepted || w.Body.String() != want {
		t.Errorf("held = %d %s, want 202 %s", w.Code, w.Body, want)
	}
	if w := doREST(g, tok, "/v1/tools/limited:call", `{}`, nil); w.Code != http.StatusTooManyRequests || strings.Contains(w.Body.String(), `"rules"`) {
		t.Errorf("limited = %d %s, want 429 without empty fields", w.Code, w.Body)
	}
	if w := doREST(g, tok, "/v1/tools/empty:call", `{}`, nil); w.Code != http.StatusInternalServerError || !strings.Contains(w.Body.String(), `"internal_error"`) {
		t.Errorf("empty outcome = %d %s, want 500 internal_error", w.Code, w.Body)
	}
	if w := doREST(g, tok, "/v1/tools/other:call", `{}`, nil); w.Code != http.StatusInternalServerError || !strings.Contains(w.Body.String(), `"brand_new_code"`) {
		t.Errorf("unmapped code = %d %s, want 500 with the code", w.Code, w.Body)
	}
}

// doREST serves one REST request through the handler, without a network.
func doREST(g *Gateway, token, path, body string, hdr map[string]string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodPost, path, strings.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	if token != "" {
		r.Header.Set("Authorization", "Bearer "+token)
	}
	for k, v := range hdr {
		r.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	g.REST().ServeHTTP(w, r)
	return w
}

// restSeeds are bodies for the fuzz targets.
var restSeeds = []string{
	`{}`,
	`{"arguments":{"msg":"hi"}}`,
	`{"arguments":{"a":[1,{"b":null}]},"approval_id":"apr_1","wait":false,"reason":"r","idempotency_key":"k","usage":{"input_tokens":1,"output_tokens":2,"cost":0.1},"prompt":"p"}`,
	`{"arguments":null,"wait":null,"usage":null}`,
	`{"wait":"no"}`,
	`{"usage":{"tokens":1}}`,
	`{"wait":true,"wait":false}`,
	`{"unknown":1}`,
	`{} {}`,
	`[]`,
	`{"arguments":`,
	`{"reason":"\u00e9\ud800"}`,
	` {"prompt":"x"} `,
	``,
}

// FuzzDecodeRESTRequest: decoding never panics; a body it accepts round-trips, and a body it
// refuses gets a bounded message.
func FuzzDecodeRESTRequest(f *testing.F) {
	for _, s := range restSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := decodeRESTRequest(body)
		if err != nil {
			if msg := err.Error(); msg == "" || len(msg) > 400 {
				t.Fatalf("decodeRESTRequest(%q) error %q: empty or unbounded", body, msg)
			}
			return
		}
		o := req.options
		m := map[string]any{}
		if req.Arguments != nil {
			m["arguments"] = req.Arguments
		}
		if o.Usage != nil {
			m["usage"] = o.Usage
		}
		if o.Wait != nil {
			m["wait"] = *o.Wait
		}
		if o.Prompt != nil {
			m["prompt"] = *o.Prompt
		}
		for k, v := range map[string]string{"approval_id": o.Approval, "reason": o.Reason, "idempotency_key": o.IdemKey} {
			if v != "" {
				m[k] = v
			}
		}
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(m); err != nil {
			t.Fatalf("re-encode %q: %v", body, err)
		}
		again := buf.Bytes()
		req2, err := decodeRESTRequest(again)
		if err != nil {
			t.Fatalf("decodeRESTRequest(%s), re-encoded from %q: %v", again, body, err)
		}
		if diff := cmp.Diff(req, req2, cmp.AllowUnexported(restRequest{}, callOptions{}), cmp.Comparer(func(a, b json.RawMessage) bool {
			return bytes.Equal(compactJSON(a), compactJSON(b))
		})); diff != "" {
			t.Fatalf("round trip of %q (-first +second):\n%s", body, diff)
		}
	})
}

func compactJSON(raw json.RawMessage) []byte {
	var b bytes.Buffer
	if json.Compact(&b, raw) != nil {
		return raw
	}
	return b.Bytes()
}

// FuzzREST throws arbitrary bodies and paths at the REST entry: it never panics, and every
// answer is a JSON object with the request id of its header and exactly one of result and
// error, with a status that fits.
func FuzzREST(f *testing.F) {
	for _, s := range restSeeds {
		f.Add("t", s)
		f.Add("refuse", s)
	}
	g, tok := newTestGateway(f)
	f.Fuzz(func(t *testing.T, name, body string) {
		path := "/v1/tools/" + escapeSegment(name) + ":call"
		w := doREST(g, tok, path, body, nil)
		var r struct {
			RequestID string           `json:"request_id"`
			Result    *json.RawMessage `json:"result"`
			Error     *restError       `json:"error"`
		}
		if err := json.Unmarshal(w.Body.Bytes(), &r); err != nil {
			t.Fatalf("POST %s %q = %d with a body that is not JSON: %q", path, body, w.Code, w.Body)
		}
		if r.RequestID == "" || r.RequestID != w.Header().Get(RequestIDHeader) {
			t.Fatalf("request id %q, header %q", r.RequestID, w.Header().Get(RequestIDHeader))
		}
		if (r.Result == nil) == (r.Error == nil) || (r.Result != nil) != (w.Code == http.StatusOK) {
			t.Fatalf("POST %s %q = %d %s: want a result with 200 or an error otherwise", path, body, w.Code, w.Body)
		}
	})
}

// escapeSegment path-escapes s as one segment, or stands in for an empty one.
func escapeSegment(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-' || c == '.' {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	if b.Len() == 0 {
		return "t"
	}
	return b.String()
}

// BenchmarkRESTvsMCP compares one tool call through each entry: first the entries' own cost
// with the pipeline replaced by a fixed answer, then through a real pipeline, audit log and
// upstream.
func BenchmarkRESTvsMCP(b *testing.B) {
	const args = `{"path":"/srv/demo/bills/march.txt"}`
	g, tok := newTestGateway(b)
	b.Run("ingress/mcp", func(b *testing.B) {
		body := `{"jsonrpc":"2.0","id":42,"method":"tools/call","params":{"name":"read_file","arguments":` + args + `}}`
		b.ReportAllocs()
		for b.Loop() {
			if w := do(g, tok, body, nil); w.Code != http.StatusOK {
				b.Fatal(w.Code)
			}
		}
	})
	rest := g.REST()
	b.Run("ingress/rest", func(b *testing.B) {
		body := `{"arguments":` + args + `}`
		b.ReportAllocs()
		for b.Loop() {
			r := httptest.NewRequest(http.MethodPost, "/v1/tools/read_file:call", strings.NewReader(body))
			r.Header.Set("Content-Type", "application/json")
			r.Header.Set("Authorization", "Bearer "+tok)
			w := httptest.NewRecorder()
			rest.ServeHTTP(w, r)
			if w.Code != http.StatusOK {
				b.Fatal(w.Code)
			}
		}
	})

	h := newRESTHarness(b)
	b.Run("pipeline/mcp", func(b *testing.B) {
		body := `{"jsonrpc":"2.0","id":42,"method":"tools/call","params":{"name":"echo","arguments":{"msg":"hi"}}}`
		b.ReportAllocs()
		for b.Loop() {
			if w := do(h.g, h.token, body, nil); w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `"hi"`) {
				b.Fatal(w.Code, w.Body)
			}
		}
	})
	hrest := h.g.REST()
	b.Run("pipeline/rest", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			r := httptest.NewRequest(http.MethodPost, "/v1/tools/echo:call", strings.NewReader(`{"arguments":{"msg":"hi"}}`))
			r.Header.Set("Content-Type", "application/json")
			r.Header.Set("Authorization", "Bearer "+h.token)
			w := httptest.NewRecorder()
			hrest.ServeHTTP(w, r)
			if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `"hi"`) {
				b.Fatal(w.Code, w.Body)
			}
		}
	})
}

// nilAuth neither refuses nor names a principal: a broken authenticator.
type nilAuth struct{}

func (nilAuth) Authenticate(string) (*identity.Principal, identity.Failure, error) {
	return nil, "", nil
}

// TestAuthenticatorWithoutPrincipalFailsClosed: an authenticator that accepts without
// naming an agent is treated as a refusal by both entries, never as a call.
func TestAuthenticatorWithoutPrincipalFailsClosed(t *testing.T) {
	t.Parallel()
	g, _ := newTestGatewayCalls(t, func(*pipeline.Call) pipeline.Outcome {
		t.Error("a call reached the pipeline without a principal")
		return pipeline.Outcome{Result: json.RawMessage(`{}`)}
	})
	g.opts.Auth = nilAuth{}
	if w := do(g, "x", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t"}}`, nil); w.Code != http.StatusUnauthorized {
		t.Errorf("MCP = %d %s, want 401", w.Code, w.Body)
	}
	if w := doREST(g, "x", "/v1/tools/t:call", `{}`, nil); w.Code != http.StatusUnauthorized || w.Header().Get("WWW-Authenticate") == "" {
		t.Errorf("REST = %d %s, want 401 with a challenge", w.Code, w.Body)
	}
}

// TestRESTTracing: a REST call starts the same server span as an MCP tools/call, joined to
// the agent's trace through the HTTP traceparent header, with the authentication as its
// child; a refused credential is a span of its own.
func TestRESTTracing(t *testing.T) {
	t.Parallel()
	rec := tracetest.NewSpanRecorder()
	g, tok := newTestGateway(t)
	g.opts.Tracer = sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec)).Tracer("test")
	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	hdr := map[string]string{"Traceparent": "00-" + traceID + "-00f067aa0ba902b7-01"}
	w := doREST(g, tok, "/v1/tools/read_file:call", `{"arguments":{}}`, hdr)
	if w.Code != http.StatusOK {
		t.Fatalf("REST = %d %s", w.Code, w.Body)
	}
	doREST(g, "", "/v1/tools/read_file:call", `{}`, hdr)
	byName := map[string]sdktrace.ReadOnlySpan{}
	for _, s := range rec.Ended() {
		byName[s.Name()] = s
		if got := s.SpanContext().TraceID().String(); got != traceID {
			t.Errorf("span %q in trace %s, want %s", s.Name(), got, traceID)
		}
	}
	call, ok := byName["tools/call read_file"]
	if !ok {
		t.Fatalf("spans %v: no tools/call span", byName)
	}
	attrs := map[string]string{}
	for _, kv := range call.Attributes() {
		attrs[string(kv.Key)] = kv.Value.String()
	}
	if attrs[string(pipeline.AttrToolCallID)] != w.Header().Get(RequestIDHeader) || attrs[string(pipeline.AttrToolName)] != "read_file" {
		t.Errorf("call span attributes %v, want the request id %s and tool read_file", attrs, w.Header().Get(RequestIDHeader))
	}
	auths := 0
	for _, s := range rec.Ended() {
		if s.Name() == SpanAuthenticate {
			auths++
		}
	}
	if auths != 2 {
		t.Errorf("%d %s spans, want 2 (the call's and the refused credential's)", auths, SpanAuthenticate)
	}
}
