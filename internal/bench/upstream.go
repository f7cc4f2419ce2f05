package bench

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Bounds of [UpstreamOptions] and of what an [Upstream] accepts.
const (
	// DefaultResultBytes is the size of a tools/call result's text when
	// UpstreamOptions.ResultBytes is zero.
	DefaultResultBytes = 64
	// MaxResultBytes bounds UpstreamOptions.ResultBytes.
	MaxResultBytes = 16 << 20
	// MaxDelay bounds UpstreamOptions.Delay.
	MaxDelay = 10 * time.Second
	// MaxRequestBytes bounds the body of a request to an Upstream; a larger one gets 413.
	MaxRequestBytes = 1 << 20
	// maxUpstreamSessions bounds (about: checked without a lock) the live sessions of an
	// Upstream; initialize beyond it gets 503.
	maxUpstreamSessions = 1 << 20
)

// Protocol versions the upstream negotiates; the first is its choice when the client asks
// for one it does not speak.
var upstreamVersions = [...]string{"2025-11-25", "2025-06-18", "2025-03-26"}

// JSON-RPC error codes.
const (
	codeParseError     = -32700
	codeInvalidRequest = -32600
	codeMethodNotFound = -32601
	codeInvalidParams  = -32602
)

// UpstreamOptions configures an [Upstream].
type UpstreamOptions struct {
	// ResultBytes is the size of the text in each tools/call result: 0 means
	// DefaultResultBytes (64); at most MaxResultBytes (16 MiB).
	ResultBytes int
	// Delay is the simulated tool latency of each tools/call, slept (not spun) before the
	// answer: 0 (the default) answers at once; at most MaxDelay (10s).
	Delay time.Duration
}

// Upstream is a lean MCP server for load tests, speaking streamable HTTP with JSON
// answers only. It offers two tools, "echo" and "blocked", which both answer with the
// same precomputed text; "blocked" exists so that a gateway policy has something to
// refuse. It is an [net/http.Handler], safe for concurrent use; the caller serves it, with
// the server timeouts it wants.
type Upstream struct {
	delay time.Duration
	// Pre-built response tails, each following `{"jsonrpc":"2.0","id":<id>`.
	callTail []byte
	listTail []byte
	pingTail []byte
	initTail [len(upstreamVersions)][]byte

	calls atomic.Int64
	// sessions maps live session ids to struct{}; written once per session and read on
	// every request, the case sync.Map is made for. live counts its entries.
	sessions sync.Map
	live     atomic.Int64
	// states recycles per-request buffers.
	states sync.Pool
}

// upstreamRequest is what the upstream decodes of a request: one json.Unmarshal, no more.
type upstreamRequest struct {
	JSONRPC string          `json:"jsonrpc"`
	Method  string          `json:"method"`
	ID      json.RawMessage `json:"id"`
	Params  struct {
		Name            string `json:"name"`
		ProtocolVersion string `json:"protocolVersion"`
	} `json:"params"`
}

// requestState is one request's scratch space, recycled through Upstream.states.
type requestState struct {
	body []byte
	out  []byte
	req  upstreamRequest
}

// maxRecycledBytes bounds the buffers kept for reuse, so that one large request or
// response does not pin its memory.
const maxRecycledBytes = 64 << 10

// NewUpstream returns an Upstream configured by o, or an error naming the option out of
// bounds.
func NewUpstream(o UpstreamOptions) (*Upstream, error) {
	switch {
	case o.ResultBytes < 0:
		return nil, fmt.Errorf("upstream options: result bytes %d is negative", o.ResultBytes)
	case o.ResultBytes > MaxResultBytes:
		return nil, fmt.Errorf("upstream options: result bytes %d exceeds the maximum of 16 MiB (%d)", o.ResultBytes, MaxResultBytes)
	case o.Delay < 0:
		return nil, fmt.Errorf("upstream options: delay %v is negative", o.Delay)
	case o.Delay > MaxDelay:
		return nil, fmt.Errorf("upstream options: delay %v exceeds the maximum of %v", o.Delay, MaxDelay)
	}
	n := o.ResultBytes
	if n == 0 {
		n = DefaultResultBytes
	}
	u := &Upstream{delay: o.Delay}
	u.states.New = func() any { return new(requestState) }

	const open = `,"result":{"content":[{"type":"text","text":"`
	const closing = `"}]}}`
	tail := make([]byte, 0, len(open)+n+len(closing))
	tail = append(tail, open...)
	tail = append(tail, proseText(n)...)
	u.callTail = append(tail, closing...)

	const schema = `{"type":"object","properties":{"text":{"type":"string"}}}`
	u.listTail = []byte(`,"result":{"tools":[` +
		`{"name":"echo","description":"Answers with a fixed text.","inputSchema":` + schema + `},` +
		`{"name":"blocked","description":"Answers with a fixed text; meant to be refused by policy.","inputSchema":` + schema + `}` +
		`]}}`)
	u.pingTail = []byte(`,"result":{}}`)
	for i, v := range upstreamVersions {
		u.initTail[i] = []byte(`,"result":{"protocolVersion":"` + v +
			`","capabilities":{"tools":{}},"serverInfo":{"name":"chaperone-bench-echo","version":"1"}}}`)
	}
	return u, nil
}

// proseText returns n bytes of lowercase prose-like text: plain words that no inspector
// should take for an injection or a secret.
func proseText(n int) []byte {
	const line = "the quick brown fox jumps over the lazy dog "
	b := bytes.Repeat([]byte(line), n/len(line)+1)
	return b[:n]
}

// Calls reports how many tools/call requests the upstream has answered, including those
// naming an unknown tool.
func (u *Upstream) Calls() int64 { return u.calls.Load() }

// Sessions reports how many sessions are live: initialized and not deleted.
func (u *Upstream) Sessions() int { return int(u.live.Load()) }

// Header values assigned directly into header maps (never modified).
var (
	headerJSON   = []string{"application/json"}
	headerAllow  = []string{"POST, DELETE"}
	responseHead = []byte(`{"jsonrpc":"2.0","id":`)
)

// Header names in canonical form, for direct map access.
const (
	sessionHeader = "Mcp-Session-Id"
	versionHeader = "Mcp-Protocol-Version"
)

// ServeHTTP answers one streamable HTTP request.
func (u *Upstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodPost:
	case http.MethodDelete:
		u.deleteSession(w, r)
		return
	default:
		w.Header()["Allow"] = headerAllow
		writeRPCError(w, http.StatusMethodNotAllowed, nil, codeInvalidRequest,
			fmt.Sprintf("method %s not allowed: use POST or DELETE", truncate(r.Method, 16)))
		return
	}
	if ct := r.Header.Get("Content-Type"); !isMediaType(ct, "application/json") {
		writeRPCError(w, http.StatusUnsupportedMediaType, nil, codeInvalidRequest,
			fmt.Sprintf("unsupported content type %q: must be application/json", truncate(ct, 64)))
		return
	}

	st := u.states.Get().(*requestState)
	defer u.recycle(st)
	var err error
	st.body, err = readBounded(http.MaxBytesReader(w, r.Body, MaxRequestBytes), st.body[:0], MaxRequestBytes)
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			writeRPCError(w, http.StatusRequestEntityTooLarge, nil, codeInvalidRequest, "request body exceeds 1 MiB")
			return
		}
		writeRPCError(w, http.StatusBadRequest, nil, codeParseError, "request body could not be read")
		return
	}
	req := &st.req
	*req = upstreamRequest{ID: req.ID[:0]}
	if code, msg := decodeRequest(st.body, req); code != 0 {
		writeRPCError(w, http.StatusBadRequest, validRequestID(req.ID), code, msg)
		return
	}
	notification := len(req.ID) == 0
	if req.Method == "initialize" && !notification {
		u.initialize(w, st)
		return
	}

	id := r.Header[sessionHeader]
	switch {
	case len(id) == 0 || id[0] == "":
		writeRPCError(w, http.StatusBadRequest, req.ID, codeInvalidRequest, "missing Mcp-Session-Id header: initialize first")
		return
	case !u.known(id[0]):
		writeRPCError(w, http.StatusNotFound, req.ID, codeInvalidRequest, "unknown Mcp-Session-Id: initialize a new session")
		return
	}
	if v := r.Header[versionHeader]; len(v) > 0 && versionIndex(v[0]) < 0 {
		writeRPCError(w, http.StatusBadRequest, req.ID, codeInvalidRequest,
			fmt.Sprintf("unsupported Mcp-Protocol-Version %q", truncate(v[0], 32)))
		return
	}
	if notification {
		w.WriteHeader(http.StatusAccepted)
		return
	}

	switch req.Method {
	case "tools/call":
		if req.Params.Name != "echo" && req.Params.Name != "blocked" {
			u.calls.Add(1)
			writeRPCError(w, http.StatusOK, req.ID, codeInvalidParams,
				fmt.Sprintf("unknown tool %q: this server offers \"echo\" and \"blocked\"", truncate(req.Params.Name, 64)))
			return
		}
		if u.delay > 0 {
			t := time.NewTimer(u.delay)
			select {
			case <-t.C:
			case <-r.Context().Done():
				t.Stop()
				return // the client is gone: nobody to answer
			}
		}
		u.calls.Add(1)
		u.writeResult(w, st, u.callTail)
	case "tools/list":
		u.writeResult(w, st, u.listTail)
	case "ping":
		u.writeResult(w, st, u.pingTail)
	default:
		writeRPCError(w, http.StatusOK, req.ID, codeMethodNotFound,
			fmt.Sprintf("method not found: %q", truncate(req.Method, 64)))
	}
}

// decodeRequest decodes body into req and checks it is a JSON-RPC request or
// notification; on failure it returns a JSON-RPC error code and message.
func decodeRequest(body []byte, req *upstreamRequest) (code int, msg string) {
	if err := json.Unmarshal(body, req); err != nil {
		if _, ok := errors.AsType[*json.SyntaxError](err); ok || len(bytes.TrimSpace(body)) == 0 {
			return codeParseError, "parse error: body is not JSON"
		}
		return codeInvalidRequest, "invalid request: body is not a JSON-RPC message object"
	}
	switch {
	case req.JSONRPC != "2.0":
		return codeInvalidRequest, `invalid request: "jsonrpc" must be "2.0"`
	case req.Method == "":
		return codeInvalidRequest, `invalid request: "method" is required`
	case len(req.ID) > 0 && validRequestID(req.ID) == nil:
		return codeInvalidRequest, `invalid request: "id" must be a string or a number`
	}
	return 0, ""
}

// validRequestID returns id if it is a JSON string or number (already known to be valid
// JSON), else nil.
func validRequestID(id json.RawMessage) json.RawMessage {
	if len(id) > 0 && (id[0] == '"' || id[0] == '-' || (id[0] >= '0' && id[0] <= '9')) {
		return id
	}
	return nil
}

func (u *Upstream) initialize(w http.ResponseWriter, st *requestState) {
	if u.live.Load() >= maxUpstreamSessions {
		writeRPCError(w, http.StatusServiceUnavailable, st.req.ID, codeInvalidRequest,
			fmt.Sprintf("too many sessions: at most %d", maxUpstreamSessions))
		return
	}
	i := max(versionIndex(st.req.Params.ProtocolVersion), 0)
	id := rand.Text()
	u.sessions.Store(id, struct{}{})
	u.live.Add(1)
	w.Header()[sessionHeader] = []string{id}
	u.writeResult(w, st, u.initTail[i])
}

func versionIndex(v string) int {
	for i, s := range upstreamVersions {
		if s == v {
			return i
		}
	}
	return -1
}

func (u *Upstream) known(id string) bool {
	_, ok := u.sessions.Load(id)
	return ok
}

func (u *Upstream) deleteSession(w http.ResponseWriter, r *http.Request) {
	id := r.Header.Get(sessionHeader)
	if id == "" {
		writeRPCError(w, http.StatusBadRequest, nil, codeInvalidRequest, "missing Mcp-Session-Id header")
		return
	}
	if _, ok := u.sessions.LoadAndDelete(id); !ok {
		writeRPCError(w, http.StatusNotFound, nil, codeInvalidRequest, "unknown Mcp-Session-Id")
		return
	}
	u.live.Add(-1)
	w.WriteHeader(http.StatusOK)
}

// writeResult writes `{"jsonrpc":"2.0","id":<id>` followed by tail, with status 200.
func (u *Upstream) writeResult(w http.ResponseWriter, st *requestState, tail []byte) {
	w.Header()["Content-Type"] = headerJSON
	out := append(st.out[:0], responseHead...)
	out = append(out, st.req.ID...)
	if len(tail) <= 4<<10 {
		out = append(out, tail...)
		w.Write(out)
	} else {
		// Large results are written in place rather than copied.
		w.Write(out)
		w.Write(tail)
	}
	st.out = out
}

func (u *Upstream) recycle(st *requestState) {
	if cap(st.body) > maxRecycledBytes || cap(st.out) > maxRecycledBytes || cap(st.req.ID) > maxRecycledBytes {
		return
	}
	u.states.Put(st)
}

// writeRPCError writes a JSON-RPC error response with the given HTTP status; id nil
// stands for null.
func writeRPCError(w http.ResponseWriter, status int, id json.RawMessage, code int, msg string) {
	if len(id) == 0 {
		id = json.RawMessage("null")
	}
	type rpcErr struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	}
	body, _ := json.Marshal(struct {
		JSONRPC string          `json:"jsonrpc"`
		ID      json.RawMessage `json:"id"`
		Error   rpcErr          `json:"error"`
	}{"2.0", id, rpcErr{code, msg}})
	w.Header()["Content-Type"] = headerJSON
	w.WriteHeader(status)
	w.Write(body)
}

// isMediaType reports whether the Content-Type value ct names the media type mt,
// ignoring parameters and case.
func isMediaType(ct, mt string) bool {
	ct, _, _ = strings.Cut(ct, ";")
	return strings.EqualFold(strings.TrimSpace(ct), mt)
}

// truncate shortens s to at most n bytes for use in a message.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
