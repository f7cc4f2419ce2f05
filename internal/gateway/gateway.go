// Package gateway is the MCP ingress: the one streamable HTTP endpoint agents connect to.
//
// It speaks the server side of MCP's streamable HTTP transport itself rather than through
// the MCP SDK's server: a gateway only needs initialize, server/discover, ping, tools/list and
// tools/call, and the SDK server's generic machinery costs more CPU per call than this
// project's whole per-call budget (see BENCHMARKS.md). Every response is a single
// application/json body, which the transport allows for every request.
//
// Order of checks for every POST: authenticate (before anything is parsed; failures are
// audited), content type, body size, JSON-RPC framing, protocol version and standard
// headers, session, then the method. A tools/call goes to the [pipeline].
//
// [Gateway.REST] serves the same tool calls over plain HTTP (POST /v1/tools/{name}:call)
// for agents that do not speak MCP: same authentication, bounds, pipeline and audit.
//
// Protocol revisions: 2026-07-28 (sessionless: server/discover and per-request _meta) and the
// initialize-based 2025-11-25, 2025-06-18, 2025-03-26 and 2024-11-05 over streamable HTTP.
// The 2024-11-05 HTTP+SSE transport (GET /sse) is not served.
package gateway

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/chaperone-dev/chaperone/internal/audit"
	"github.com/chaperone-dev/chaperone/internal/identity"
	"github.com/chaperone-dev/chaperone/internal/pipeline"
	"github.com/chaperone-dev/chaperone/internal/policy"
	"github.com/chaperone-dev/chaperone/internal/registry"
)

// MetaPrompt is the _meta key of a tools/call through which an agent's host reports the
// user's request, so that values the user gave count as trusted (see the flow package).
// The host, not the model, sets _meta: a model cannot claim text came from the user.
const MetaPrompt = "dev.chaperone/prompt"

// MaxPromptBytes bounds a reported prompt.
const MaxPromptBytes = 64 << 10

// Approval _meta keys of a tools/call: the approval id a held call is retried with, false
// under MetaWait when the agent cannot wait for a person (the call ends at once, pending),
// and the agent's stated reason for the call, shown to approvers.
const (
	MetaApproval = "dev.chaperone/approval"
	MetaWait     = "dev.chaperone/wait"
	MetaReason   = "dev.chaperone/reason"
	// MaxReasonBytes bounds a stated reason.
	MaxReasonBytes = 2048
	// maxApprovalIDBytes bounds an approval id (they are 26 bytes).
	maxApprovalIDBytes = 64
)

// Containment _meta keys of a tools/call. MetaIdempotencyKey makes a retried write safe:
// a call with a key that already ran is answered from its record, never run twice (1 to
// 255 printable ASCII characters). MetaUsage reports what the agent spent on its model
// since its previous call — {"input_tokens": N, "output_tokens": N, "cost": X} — which the
// gateway adds to the task's budget.
const (
	MetaIdempotencyKey = "dev.chaperone/idempotency_key"
	MetaUsage          = "dev.chaperone/usage"
	// MaxReportedTokens and MaxReportedCost bound one usage report.
	MaxReportedTokens = 1_000_000_000
	MaxReportedCost   = 1_000_000
)

// usage is a MetaUsage report.
type usage struct {
	InputTokens  int64    `json:"input_tokens"`
	OutputTokens int64    `json:"output_tokens"`
	Cost         *float64 `json:"cost"`
}

// check returns the report's tokens and cost, or what is wrong with it; name is how the
// entry names the report in errors.
func (u *usage) check(name string) (int64, float64, error) {
	if u.InputTokens < 0 || u.OutputTokens < 0 || u.InputTokens > MaxReportedTokens || u.OutputTokens > MaxReportedTokens {
		return 0, 0, fmt.Errorf("%s: input_tokens and output_tokens must be between 0 and %d", name, MaxReportedTokens)
	}
	var cost float64
	if u.Cost != nil {
		cost = *u.Cost
	}
	if !(cost >= 0 && cost <= MaxReportedCost) {
		return 0, 0, fmt.Errorf("%s: cost must be between 0 and %d", name, MaxReportedCost)
	}
	return u.InputTokens + u.OutputTokens, cost, nil
}

// callOptions are what a tool call carries besides its tool and arguments: MCP in the
// call's _meta, REST in the request body. Both entries check them with the same code,
// [callOptions.apply], so the bounds cannot drift apart.
type callOptions struct {
	Prompt   *string
	Approval string
	Wait     *bool
	Reason   string
	IdemKey  string
	Usage    json.RawMessage
}

// optionNames are how an entry names callOptions' fields in its errors.
type optionNames struct {
	prompt, approval, reason, idemKey, usage string
	// strict refuses unknown fields in the usage report.
	strict bool
}

// mcpOptionNames name the _meta keys of a tools/call.
var mcpOptionNames = optionNames{
	prompt: `_meta "` + MetaPrompt + `"`, approval: `_meta "` + MetaApproval + `"`, reason: `_meta "` + MetaReason + `"`,
	idemKey: `_meta "` + MetaIdempotencyKey + `"`, usage: `_meta "` + MetaUsage + `"`,
}

// apply checks o against the bounds every entry shares and sets it on c. It returns the
// usage report (nil if there is none), or an error naming the field, as n names it, and
// the bound it broke.
func (o *callOptions) apply(c *pipeline.Call, n *optionNames) (*usage, error) {
	c.ApprovalID, c.NoWait, c.Reason, c.IdempotencyKey = o.Approval, o.Wait != nil && !*o.Wait, o.Reason, o.IdemKey
	var reported *usage
	if len(o.Usage) > 0 && string(o.Usage) != "null" {
		reported = &usage{}
		var err error
		if n.strict {
			dec := json.NewDecoder(bytes.NewReader(o.Usage))
			dec.DisallowUnknownFields()
			err = dec.Decode(reported)
		} else {
			err = json.Unmarshal(o.Usage, reported)
		}
		if err != nil {
			return nil, fmt.Errorf("%s must be an object of input_tokens, output_tokens (integers) and cost (a number)", n.usage)
		}
		if c.ReportedTokens, c.ReportedSpend, err = reported.check(n.usage); err != nil {
			return nil, err
		}
	}
	for _, f := range []struct {
		name  string
		value string
		max   int
	}{{n.approval, c.ApprovalID, maxApprovalIDBytes}, {n.reason, c.Reason, MaxReasonBytes}, {n.idemKey, c.IdempotencyKey, 255}} {
		if len(f.value) > f.max {
			return nil, fmt.Errorf("%s is longer than %d bytes", f.name, f.max)
		}
	}
	if o.Prompt != nil {
		if len(*o.Prompt) > MaxPromptBytes {
			return nil, fmt.Errorf("%s is longer than %d bytes", n.prompt, MaxPromptBytes)
		}
		c.Prompt = *o.Prompt
	}
	return reported, nil
}

// Protocol versions, newest first.
const (
	Version20260728 = "2026-07-28"
	Version20251125 = "2025-11-25"
)

// Versions are the protocol revisions served, newest first.
var Versions = []string{Version20260728, Version20251125, "2025-06-18", "2025-03-26", "2024-11-05"}

// legacyVersions are the revisions negotiated by initialize.
var legacyVersions = Versions[1:]

// JSON-RPC and MCP error codes.
const (
	codeParseError          = -32700
	codeInvalidRequest      = -32600
	codeMethodNotFound      = -32601
	codeInvalidParams       = -32602
	codeUnauthenticated     = -32001
	codeSessionNotFound     = -32002
	codeHeaderMismatch      = -32020
	codeUnsupportedProtocol = -32022
)

// Authenticator checks an Authorization header.
type Authenticator interface {
	Authenticate(header string) (*identity.Principal, identity.Failure, error)
}

// contextAuthenticator is an Authenticator that may look an agent or a task up in a
// shared store, bounded by the request's context.
type contextAuthenticator interface {
	AuthenticateContext(ctx context.Context, header string) (*identity.Principal, identity.Failure, error)
}

// Calls runs tool calls.
type Calls interface {
	Handle(ctx context.Context, c *pipeline.Call) pipeline.Outcome
}

// Catalog lists the registry's tools.
type Catalog interface {
	Tools() []*registry.Tool
}

// Auditor records events.
type Auditor interface {
	Append(ctx context.Context, e *audit.Event) error
}

// Options configures a [Gateway].
type Options struct {
	Auth        Authenticator
	Calls       Calls
	Catalog     Catalog
	Policy      func() *policy.Policy
	Audit       Auditor
	Logger      *slog.Logger
	MaxBody     int64
	MaxSessions int
	SessionIdle time.Duration
	// Name and Version are the serverInfo agents see.
	Name, Version string
	// ResourceMetadata is the URL of the OAuth protected resource metadata (RFC 9728),
	// announced in the WWW-Authenticate challenge; "" to leave it out.
	ResourceMetadata string
	Now              func() time.Time
	// Tracer, if set, starts a span for every tools/call (and for refused credentials),
	// joined to the agent's trace when the request carries W3C trace context.
	Tracer trace.Tracer
	// Sessions, if set, keeps sessions where every gateway replica finds them (see
	// [SessionStore]); nil keeps them in this process only.
	Sessions SessionStore
	// SessionStoreTimeout bounds each use of Sessions. Default
	// [DefaultSessionStoreTimeout].
	SessionStoreTimeout time.Duration
}

// Gateway is the MCP endpoint. It is an http.Handler.
type Gateway struct {
	opts Options

	// mu guards sessions.
	mu       sync.Mutex
	sessions map[string]*session

	authFailures windowLimiter
}

type session struct {
	id       string
	agentID  string
	protocol string
	calls    atomic.Int64
	lastSeen atomic.Int64 // unix nanos
	// touched is when this replica last touched the session in the session store (unix
	// nanos).
	touched atomic.Int64
}

// New returns a gateway.
func New(opts Options) *Gateway {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.MaxBody == 0 {
		opts.MaxBody = 1 << 20
	}
	if opts.MaxSessions == 0 {
		opts.MaxSessions = 10000
	}
	if opts.SessionIdle == 0 {
		opts.SessionIdle = 30 * time.Minute
	}
	if opts.Name == "" {
		opts.Name = "chaperone"
	}
	sjStoreDefaults(&opts)
	return &Gateway{opts: opts, sessions: map[string]*session{}}
}

// Sessions returns the number of live sessions.
func (g *Gateway) Sessions() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.sessions)
}

// Run expires idle sessions until ctx is done.
func (g *Gateway) Run(ctx context.Context) error {
	t := time.NewTicker(g.opts.SessionIdle / 4)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			g.expire()
		}
	}
}

func (g *Gateway) expire() int {
	now := g.opts.Now()
	cutoff := now.Add(-g.opts.SessionIdle).UnixNano()
	var ended []string
	g.mu.Lock()
	for id, s := range g.sessions {
		if s.lastSeen.Load() < cutoff {
			delete(g.sessions, id)
			ended = append(ended, id)
		}
	}
	g.mu.Unlock()
	if g.opts.Sessions != nil {
		// Idle here is not idle everywhere: only the store says a session is over.
		ended = g.sjExpireShared(now)
	}
	for _, id := range ended {
		g.ended(id)
	}
	return len(ended)
}

// ended tells the pipeline a session is over, so that its flow state goes with it.
func (g *Gateway) ended(id string) {
	if se, ok := g.opts.Calls.(SessionEnder); ok {
		se.EndSession(id)
	}
}

// SessionEnder is implemented by a [Calls] that keeps state per session.
type SessionEnder interface {
	EndSession(id string)
}

// message is one JSON-RPC message from a client.
type message struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	Method  string          `json:"method"`
	Params  json.RawMessage `json:"params"`
	Result  json.RawMessage `json:"result"`
	Error   json.RawMessage `json:"error"`
}

// ServeHTTP implements http.Handler.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	rid := newID("req")
	a := g.arrive(r)
	pr := g.authenticate(w, r, &a, rid)
	if pr == nil {
		writeError(w, http.StatusUnauthorized, nil, codeUnauthenticated, "unauthenticated: a valid bearer token is required")
		return
	}
	agent := pr.Agent
	switch r.Method {
	case http.MethodPost:
	case http.MethodDelete:
		g.deleteSession(w, r, agent)
		return
	default:
		// No server-initiated stream: this gateway never sends requests or notifications of
		// its own, so GET (the SSE listening stream) is not offered.
		w.Header().Set("Allow", "POST, DELETE")
		writeError(w, http.StatusMethodNotAllowed, nil, codeInvalidRequest, "method not allowed: use POST")
		return
	}
	if !isJSONContentType(r.Header.Get("Content-Type")) {
		writeError(w, http.StatusUnsupportedMediaType, nil, codeInvalidRequest, "unsupported content type: must be application/json")
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, g.opts.MaxBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeError(w, http.StatusRequestEntityTooLarge, nil, codeInvalidRequest, fmt.Sprintf("request body larger than %d bytes", g.opts.MaxBody))
			return
		}
		writeError(w, http.StatusBadRequest, nil, codeParseError, "request body could not be read")
		return
	}
	body = bytes.TrimSpace(body)
	if len(body) > 0 && body[0] == '[' {
		writeError(w, http.StatusBadRequest, nil, codeInvalidRequest, "JSON-RPC batches are not supported: send one message per request")
		return
	}
	var m message
	if err := json.Unmarshal(body, &m); err != nil {
		writeError(w, http.StatusBadRequest, nil, codeParseError, "parse error: body is not a JSON-RPC message")
		return
	}
	if m.JSONRPC != "2.0" {
		writeError(w, http.StatusBadRequest, validID(m.ID), codeInvalidRequest, `invalid request: "jsonrpc" must be "2.0"`)
		return
	}
	if m.Method == "" {
		if len(m.ID) > 0 && (m.Result != nil || m.Error != nil) {
			// A response to a server request; this server sends none, so there is nothing to match.
			w.WriteHeader(http.StatusAccepted)
			return
		}
		writeError(w, http.StatusBadRequest, validID(m.ID), codeInvalidRequest, `invalid request: "method" is required`)
		return
	}
	isNotification := len(m.ID) == 0
	if !isNotification && validID(m.ID) == nil {
		writeError(w, http.StatusBadRequest, nil, codeInvalidRequest, `invalid request: "id" must be a string or an integer`)
		return
	}

	proto, herr := g.checkHeaders(r, &m)
	if herr != nil {
		writeError(w, http.StatusBadRequest, m.ID, herr.code, herr.msg)
		return
	}

	var sess *session
	if sid := r.Header.Get("Mcp-Session-Id"); sid != "" && m.Method != "initialize" {
		sess, err = g.session(ctx, sid, agent.ID)
		if err != nil {
			g.sjWriteStoreError(ctx, w, m.ID, err)
			return
		}
		if sess == nil {
			writeError(w, http.StatusNotFound, m.ID, codeSessionNotFound, "session not found: initialize a new session")
			return
		}
		if proto == "" {
			proto = sess.protocol
		}
		sess.lastSeen.Store(g.opts.Now().UnixNano())
	}

	if isNotification {
		// notifications/initialized, notifications/cancelled and the like need no answer.
		w.WriteHeader(http.StatusAccepted)
		return
	}
	switch m.Method {
	case "initialize":
		g.initialize(ctx, w, agent, &m)
	case "server/discover":
		g.discover(w, &m)
	case "ping":
		writeResult(w, m.ID, []byte(`{}`))
	case "tools/list":
		g.listTools(w, pr, &m, proto)
	case "tools/call":
		g.callTool(ctx, w, a, rid, pr, sess, &m, proto, acceptsSSE(r))
	default:
		writeError(w, http.StatusOK, m.ID, codeMethodNotFound, fmt.Sprintf("method not found: %q is not offered by this gateway", truncate(m.Method, 64)))
	}
}

// authenticate checks the request's credential before anything else of it is read. A
// refused one is traced and audited and nil is returned, with the WWW-Authenticate
// challenge already set on w: the caller writes the 401 in its entry's format.
func (g *Gateway) authenticate(w http.ResponseWriter, r *http.Request, a *arrival, rid string) *identity.Principal {
	ctx := r.Context()
	var pr *identity.Principal
	var failure identity.Failure
	var err error
	if ca, ok := g.opts.Auth.(contextAuthenticator); ok {
		pr, failure, err = ca.AuthenticateContext(ctx, r.Header.Get("Authorization"))
	} else {
		pr, failure, err = g.opts.Auth.Authenticate(r.Header.Get("Authorization"))
	}
	a.authenticated()
	if err == nil && (pr == nil || pr.Agent == nil) {
		// An authenticator that neither refuses nor names an agent: fail closed.
		err, failure = errors.New("no principal"), identity.FailureUnknown
	}
	if err != nil {
		g.traceFailedAuth(ctx, *a, rid, string(failure))
		g.auditAuthFailure(ctx, rid, r, failure)
		w.Header().Set("WWW-Authenticate", g.challenge(failure))
		return nil
	}
	return pr
}

type headerError struct {
	code int
	msg  string
}

// checkHeaders validates Mcp-Protocol-Version and, for 2026-07-28, the standard headers and
// the per-request _meta protocol version. A header that disagrees with the body is refused:
// an intermediary that routes or filters on headers must see what the gateway executes.
func (g *Gateway) checkHeaders(r *http.Request, m *message) (string, *headerError) {
	hv := r.Header.Get("Mcp-Protocol-Version")
	if hv != "" && !slices.Contains(Versions, hv) {
		return "", &headerError{codeUnsupportedProtocol, fmt.Sprintf("unsupported protocol version %q (supported: %v)", truncate(hv, 32), Versions)}
	}
	// Decoding params twice costs; only requests that can carry the 2026-07-28 fields pay.
	var meta requestMeta
	if len(m.Params) > 0 && m.Params[0] == '{' && (hv != "" || bytes.Contains(m.Params, []byte(`"_meta"`))) {
		meta = decodeRequestMeta(m.Params)
	}
	var mv string
	if raw, ok := meta.Meta["io.modelcontextprotocol/protocolVersion"]; ok {
		var err error
		if mv, err = decodeString(raw); err != nil || !slices.Contains(Versions, mv) {
			return "", &headerError{codeUnsupportedProtocol, "unsupported protocol version in _meta"}
		}
	}
	if hv < Version20260728 && mv < Version20260728 {
		return hv, nil
	}
	if hv != mv {
		return "", &headerError{codeHeaderMismatch, "Mcp-Protocol-Version header does not match the request's _meta protocol version"}
	}
	if r.Header.Get("Mcp-Method") != m.Method {
		return "", &headerError{codeHeaderMismatch, "Mcp-Method header is missing or does not match the request method"}
	}
	if m.Method == "tools/call" && r.Header.Get("Mcp-Name") != meta.Name {
		return "", &headerError{codeHeaderMismatch, "Mcp-Name header is missing or does not match the tool name"}
	}
	return hv, nil
}

// requestMeta is what checkHeaders reads of a request's params.
type requestMeta struct {
	Meta map[string]json.RawMessage `json:"_meta"`
	Name string                     `json:"name"`
}

// decodeRequestMeta decodes params as far as they are a requestMeta; what does not decode
// is left empty. It is a function of its own so that only the requests that need it pay
// for the value json.Unmarshal makes escape.
func decodeRequestMeta(params json.RawMessage) requestMeta {
	var meta requestMeta
	_ = json.Unmarshal(params, &meta)
	return meta
}

// decodeString decodes raw as a JSON string.
func decodeString(raw json.RawMessage) (string, error) {
	var s string
	err := json.Unmarshal(raw, &s)
	return s, err
}

// isJSONContentType reports whether a request's Content-Type is application/json, with
// or without parameters. The exact value, what clients almost always send, is recognised
// without parsing it.
func isJSONContentType(ct string) bool {
	if ct == "application/json" {
		return true
	}
	mt, _, err := mime.ParseMediaType(ct)
	return err == nil && mt == "application/json"
}

// session returns session id of agentID, nil if there is none; with a session store,
// the store says whether it exists (an error: it could not say).
func (g *Gateway) session(ctx context.Context, id, agentID string) (*session, error) {
	g.mu.Lock()
	s := g.sessions[id]
	g.mu.Unlock()
	// A session belongs to the agent that created it; to any other it does not exist.
	if s != nil && s.agentID != agentID {
		return nil, nil
	}
	if g.opts.Sessions != nil {
		return g.sjShared(ctx, s, id, agentID)
	}
	return s, nil
}

func (g *Gateway) deleteSession(w http.ResponseWriter, r *http.Request, agent *identity.Agent) {
	id := r.Header.Get("Mcp-Session-Id")
	found := false
	if id != "" && g.opts.Sessions != nil {
		var err error
		if found, err = g.sjDelete(r.Context(), id, agent.ID); err != nil {
			g.sjWriteStoreError(r.Context(), w, nil, err)
			return
		}
	} else if id != "" {
		g.mu.Lock()
		if s := g.sessions[id]; s != nil && s.agentID == agent.ID {
			delete(g.sessions, id)
			found = true
		}
		g.mu.Unlock()
	}
	if !found {
		writeError(w, http.StatusNotFound, nil, codeSessionNotFound, "session not found")
		return
	}
	g.ended(id)
	w.WriteHeader(http.StatusNoContent)
}

func (g *Gateway) initialize(ctx context.Context, w http.ResponseWriter, agent *identity.Agent, m *message) {
	var p struct {
		ProtocolVersion string `json:"protocolVersion"`
	}
	if err := json.Unmarshal(m.Params, &p); err != nil || p.ProtocolVersion == "" {
		writeError(w, http.StatusOK, m.ID, codeInvalidParams, "invalid params: initialize needs protocolVersion")
		return
	}
	// Negotiate: the client's version if this server speaks it, else the newest legacy one.
	version := legacyVersions[0]
	if slices.Contains(legacyVersions, p.ProtocolVersion) {
		version = p.ProtocolVersion
	}
	now := g.opts.Now()
	s := &session{id: newID("ses"), agentID: agent.ID, protocol: version}
	s.lastSeen.Store(now.UnixNano())
	g.mu.Lock()
	if len(g.sessions) >= g.opts.MaxSessions {
		g.mu.Unlock()
		g.sjMakeRoom(now)
		g.mu.Lock()
	}
	full := len(g.sessions) >= g.opts.MaxSessions
	if !full {
		g.sessions[s.id] = s
	}
	g.mu.Unlock()
	if full {
		writeError(w, http.StatusServiceUnavailable, m.ID, codeInvalidRequest, fmt.Sprintf("too many sessions (limit %d): try again later", g.opts.MaxSessions))
		return
	}
	if g.opts.Sessions != nil {
		if err := g.sjCreate(ctx, s, now); err != nil {
			g.sjWriteStoreError(ctx, w, m.ID, err)
			return
		}
	}
	res, _ := json.Marshal(map[string]any{
		"protocolVersion": version,
		"capabilities":    map[string]any{"tools": map[string]any{}},
		"serverInfo":      map[string]string{"name": g.opts.Name, "version": g.opts.Version},
		"instructions":    instructions,
	})
	w.Header().Set("Mcp-Session-Id", s.id)
	writeResult(w, m.ID, res)
}

const instructions = "Tools here are governed by Chaperone: calls may be refused by policy with a reason code; a refusal is final for that call."

func (g *Gateway) discover(w http.ResponseWriter, m *message) {
	res, _ := json.Marshal(map[string]any{
		"supportedVersions": Versions,
		"capabilities":      map[string]any{"tools": map[string]any{}},
		"instructions":      instructions,
		"resultType":        "complete",
		"ttlMs":             0,
		"cacheScope":        "private",
		"_meta": map[string]any{
			"io.modelcontextprotocol/serverInfo": map[string]string{"name": g.opts.Name, "version": g.opts.Version},
		},
	})
	writeResult(w, m.ID, res)
}

// VisibleTools returns the listings of the tools a principal may see: active in the
// registry, within its credential's scope, and possibly allowed by policy.
func (g *Gateway) VisibleTools(pr *identity.Principal) []json.RawMessage {
	pol := g.opts.Policy()
	var out []json.RawMessage
	for _, t := range g.opts.Catalog.Tools() {
		if t.Status != registry.StatusActive || !pol.Visible(pr.Agent.ID, t.Name) {
			continue
		}
		if pr.Tools != nil && !slices.Contains(pr.Tools, t.Name) {
			continue
		}
		if t.Environment != "" && t.Environment != pr.Agent.Environment {
			continue
		}
		out = append(out, t.Listing)
	}
	return out
}

func (g *Gateway) listTools(w http.ResponseWriter, pr *identity.Principal, m *message, proto string) {
	var b bytes.Buffer
	b.WriteString(`{"tools":[`)
	for i, l := range g.VisibleTools(pr) {
		if i > 0 {
			b.WriteByte(',')
		}
		b.Write(l)
	}
	b.WriteString(`]`)
	if proto >= Version20260728 {
		// The list is per agent and changes with policy and quarantine: never shared, never
		// cached.
		b.WriteString(`,"resultType":"complete","ttlMs":0,"cacheScope":"private"`)
	}
	b.WriteString(`}`)
	writeResult(w, m.ID, b.Bytes())
}

func (g *Gateway) callTool(ctx context.Context, w http.ResponseWriter, a arrival, rid string, pr *identity.Principal, sess *session, m *message, proto string, sse bool) {
	var p struct {
		Name      string          `json:"name"`
		Arguments json.RawMessage `json:"arguments"`
		Meta      struct {
			Prompt   *string         `json:"dev.chaperone/prompt"`
			Approval string          `json:"dev.chaperone/approval"`
			Wait     *bool           `json:"dev.chaperone/wait"`
			Reason   string          `json:"dev.chaperone/reason"`
			IdemKey  string          `json:"dev.chaperone/idempotency_key"`
			Usage    json.RawMessage `json:"dev.chaperone/usage"`
			// ProgressToken asks for progress notifications while the call runs.
			ProgressToken json.RawMessage `json:"progressToken"`
			traceMeta
		} `json:"_meta"`
	}
	if err := json.Unmarshal(m.Params, &p); err != nil || p.Name == "" {
		writeError(w, http.StatusOK, m.ID, codeInvalidParams, `invalid params: tools/call needs "name" and optional "arguments"`)
		return
	}
	c := &pipeline.Call{RequestID: rid, Principal: pr, Tool: p.Name, Arguments: p.Arguments}
	opts := callOptions{Prompt: p.Meta.Prompt, Approval: p.Meta.Approval, Wait: p.Meta.Wait, Reason: p.Meta.Reason,
		IdemKey: p.Meta.IdemKey, Usage: p.Meta.Usage}
	reported, err := opts.apply(c, &mcpOptionNames)
	if err != nil {
		writeError(w, http.StatusOK, m.ID, codeInvalidParams, "invalid params: "+err.Error())
		return
	}
	if sess != nil {
		c.SessionID = sess.id
		c.SessionCalls = sess.calls.Add(1)
	}
	ctx, span := g.startCall(ctx, a, &p.Meta.traceMeta, rid, pr, sess, m.ID, proto, p.Name, reported)
	defer span.End()
	var pw *progressWriter
	if tok := p.Meta.ProgressToken; len(tok) > 0 && validID(tok) != nil && sse {
		// A call held for a person tells the client it is waiting, over an event stream.
		pw = &progressWriter{w: w, token: tok}
		ctx = pipeline.WithProgress(ctx, pw.progress)
	}
	out := g.opts.Calls.Handle(ctx, c)
	res := out.Result
	if out.Refusal != nil {
		res = refusalResult(rid, out.Refusal, proto)
	} else if proto >= Version20260728 {
		res = markComplete(res)
	}
	if pw != nil && pw.finish(m.ID, res) {
		return
	}
	writeResult(w, m.ID, res)
}

// acceptsSSE reports whether the client accepts an event stream as the response.
func acceptsSSE(r *http.Request) bool {
	for _, v := range r.Header.Values("Accept") {
		if strings.Contains(v, "text/event-stream") {
			return true
		}
	}
	return false
}

// progressWriter turns a tools/call response into an event stream once the call reports
// progress: notifications/progress events, then the response as the last event. Until
// then the response is an ordinary JSON body.
type progressWriter struct {
	mu    sync.Mutex
	w     http.ResponseWriter
	token json.RawMessage
	// started: the event stream is open; done: the response is written (or left to the
	// caller), so no progress follows it.
	started, done bool
	n             int
}

func (p *progressWriter) progress(msg string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done {
		return
	}
	if !p.started {
		p.w.Header().Set("Content-Type", "text/event-stream")
		p.w.Header().Set("Cache-Control", "no-store")
		p.w.WriteHeader(http.StatusOK)
		p.started = true
	}
	p.n++
	params, _ := json.Marshal(map[string]any{"progressToken": p.token, "progress": p.n, "message": msg})
	p.event([]byte(`{"jsonrpc":"2.0","method":"notifications/progress","params":` + string(params) + `}`))
}

// finish writes the response as the stream's last event and reports whether the stream
// had started; if not, the caller writes it as JSON.
func (p *progressWriter) finish(id json.RawMessage, result []byte) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done = true
	if !p.started {
		return false
	}
	p.event([]byte(`{"jsonrpc":"2.0","id":` + string(id) + `,"result":` + string(result) + `}`))
	return true
}

func (p *progressWriter) event(data []byte) {
	fmt.Fprintf(p.w, "event: message\ndata: %s\n\n", data)
	if f, ok := p.w.(http.Flusher); ok {
		f.Flush()
	}
}

// markComplete adds "resultType":"complete", which 2026-07-28 requires of every result, to
// an upstream result that lacks it (upstreams may speak an older revision). The result is a
// JSON object from the upstream client; anything else is passed as it is.
func markComplete(res json.RawMessage) json.RawMessage {
	trimmed := bytes.TrimLeft(res, " \t\r\n")
	if len(trimmed) < 2 || trimmed[0] != '{' || bytes.Contains(res, []byte(`"resultType"`)) {
		return res
	}
	out := make([]byte, 0, len(trimmed)+26)
	out = append(out, `{"resultType":"complete"`...)
	if rest := bytes.TrimLeft(trimmed[1:], " \t\r\n"); len(rest) > 0 && rest[0] != '}' {
		out = append(out, ',')
	}
	return append(out, trimmed[1:]...)
}

// refusalResult renders a refusal as a CallToolResult with isError set: a stable reason code
// and one sentence for the model, and the same in _meta for programs.
func refusalResult(rid string, r *pipeline.Refusal, proto string) []byte {
	type refusal struct {
		Reason      string   `json:"reason"`
		Rules       []string `json:"rules,omitempty"`
		RequestID   string   `json:"request_id"`
		Explanation string   `json:"explanation,omitempty"`
		ApprovalID  string   `json:"approval_id,omitempty"`
	}
	res := map[string]any{
		"content": []map[string]string{{"type": "text", "text": fmt.Sprintf("Refused by Chaperone (%s): %s", r.Code, r.Message)}},
		"isError": true,
		"_meta":   map[string]any{"dev.chaperone/refusal": refusal{Reason: string(r.Code), Rules: r.Rules, RequestID: rid, Explanation: r.Explanation, ApprovalID: r.ApprovalID}},
	}
	if proto >= Version20260728 {
		res["resultType"] = "complete"
	}
	b, _ := json.Marshal(res)
	return b
}

// challenge is the WWW-Authenticate value for a refused credential (RFC 6750 §3, with the
// RFC 9728 resource_metadata parameter MCP clients use to find the token endpoint). The
// error code says no more than "invalid_token" whatever the precise failure.
func (g *Gateway) challenge(f identity.Failure) string {
	c := `Bearer realm="chaperone"`
	if f != identity.FailureMissing {
		c += `, error="invalid_token"`
	}
	if g.opts.ResourceMetadata != "" {
		c += `, resource_metadata="` + g.opts.ResourceMetadata + `"`
	}
	return c
}

func (g *Gateway) auditAuthFailure(ctx context.Context, rid string, r *http.Request, f identity.Failure) {
	// Unauthenticated requests cost the sender nothing, so their records are bounded: at most
	// authFailuresPerSecond a second are written, and the next written one counts the rest.
	suppressed, ok := g.authFailures.admit(g.opts.Now())
	if !ok {
		return
	}
	detail := fmt.Sprintf("%s from %s", f, r.RemoteAddr)
	if suppressed > 0 {
		detail += fmt.Sprintf(" (%d more failed authentications not recorded one by one before this)", suppressed)
	}
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	err := g.opts.Audit.Append(actx, &audit.Event{
		Time: g.opts.Now(), Kind: audit.KindAuthFailed, RequestID: rid,
		Decision: "refused", Reason: string(pipeline.CodeUnauthenticated), Message: "authentication failed",
		Detail: detail,
	})
	if err != nil {
		g.opts.Logger.ErrorContext(ctx, "audit append failed", "request_id", rid, "err", err)
	}
}

// authFailuresPerSecond bounds the auth.failed events written per second.
const authFailuresPerSecond = 20

// windowLimiter admits up to a fixed number of events per one-second window and counts the
// ones it turns away.
type windowLimiter struct {
	mu         sync.Mutex
	window     int64 // unix second
	admitted   int
	suppressed int64
}

// admit reports whether an event may be recorded now and, if so, how many were turned away
// since the last admitted one.
func (l *windowLimiter) admit(now time.Time) (int64, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if sec := now.Unix(); sec != l.window {
		l.window, l.admitted = sec, 0
	}
	if l.admitted >= authFailuresPerSecond {
		l.suppressed++
		return 0, false
	}
	l.admitted++
	n := l.suppressed
	l.suppressed = 0
	return n, true
}

// validID returns id if it is a JSON string or integer, else nil.
func validID(id json.RawMessage) json.RawMessage {
	if len(id) == 0 {
		return nil
	}
	switch id[0] {
	case '"':
		// Valid JSON that starts with a quote is a string: what decoding it into a Go
		// string accepts, without the copy.
		if json.Valid(id) {
			return id
		}
	default:
		if _, err := strconv.ParseInt(string(id), 10, 64); err == nil {
			return id
		}
	}
	return nil
}

func writeResult(w http.ResponseWriter, id json.RawMessage, result []byte) {
	w.Header().Set("Content-Type", "application/json")
	b := make([]byte, 0, len(result)+len(id)+40)
	b = append(b, `{"jsonrpc":"2.0","id":`...)
	b = append(b, id...)
	b = append(b, `,"result":`...)
	b = append(b, result...)
	b = append(b, '}')
	w.Write(b)
}

func writeError(w http.ResponseWriter, status int, id json.RawMessage, code int, msg string) {
	if len(id) == 0 {
		id = json.RawMessage("null")
	}
	body, _ := json.Marshal(map[string]any{
		"jsonrpc": "2.0",
		"id":      id,
		"error":   map[string]any{"code": code, "message": msg},
	})
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(body)
}

// NewRequestID returns a new call's request id, as the MCP and REST entries make them.
func NewRequestID() string { return newID("req") }

func newID(prefix string) string {
	var b [16]byte
	rand.Read(b[:])
	// Built in a buffer on the stack: the returned string is the only allocation.
	var buf [48]byte
	id := append(buf[:0], prefix...)
	id = append(id, '_')
	id = base64.RawURLEncoding.AppendEncode(id, b[:])
	return string(id)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
