package upstream

// The SDK client decodes every result into its own types: a tool's inputSchema becomes a
// map[string]any and a CallToolResult is rebuilt from typed content. Re-marshalling those
// loses key order, number precision, fields the SDK does not know, and fails outright on
// content types it does not know. A gateway must pass upstream JSON through unchanged, so
// this file captures the raw "result" member of the JSON-RPC responses to our own requests:
//
//   - stdio and in-process: a [mcp.Connection] wrapper (captureConn) sees every decoded
//     JSON-RPC message, whose Response.Result is still raw JSON. Requests are matched to
//     slots by JSON-RPC ID, registered when the request is written with a context that
//     carries a slot.
//   - streamable HTTP: wrapping the Connection would hide the transport's unexported
//     session hooks (the standalone SSE stream that carries list_changed notifications, and
//     the protocol-version header), so capture happens one layer down, in the
//     http.RoundTripper: the body of a POST made with a context that carries a slot is teed
//     through a small parser (JSON or SSE) that picks out the JSON-RPC response.
//
// When nothing was captured (an HTTP response larger than maxCapture; an SDK list cache
// hit, impossible while protocolVersion predates 2026-07-28) the caller falls back to
// marshalling the SDK's decoded value.

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"mime"
	"net/http"
	"sync"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// maxCapture bounds the bytes buffered to capture one HTTP response or SSE event; it
// matches the SDK's default SSE event limit.
const maxCapture = mcp.DefaultMaxEventSize

// A rawSlot receives the raw result of the requests made with a context carrying it
// (usually one; the SDK may retry a call, and then the last result wins).
type rawSlot struct {
	mu  sync.Mutex
	raw json.RawMessage // guarded by mu

	ids []jsonrpc.ID // registered request IDs; guarded by the captureConn's mu
}

func (s *rawSlot) set(raw json.RawMessage) {
	s.mu.Lock()
	s.raw = raw
	s.mu.Unlock()
}

func (s *rawSlot) get() json.RawMessage {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.raw
}

type slotKey struct{}

func withSlot(ctx context.Context, s *rawSlot) context.Context {
	return context.WithValue(ctx, slotKey{}, s)
}

func slotFrom(ctx context.Context) *rawSlot {
	s, _ := ctx.Value(slotKey{}).(*rawSlot)
	return s
}

// captureTransport wraps a stdio or in-memory transport with a captureConn.
type captureTransport struct {
	inner mcp.Transport
	conn  *captureConn // set by Connect
}

func (t *captureTransport) Connect(ctx context.Context) (mcp.Connection, error) {
	conn, err := t.inner.Connect(ctx)
	if err != nil {
		return nil, err
	}
	t.conn = &captureConn{Connection: conn, pending: make(map[jsonrpc.ID]*rawSlot)}
	return t.conn, nil
}

// captureConn records the raw results of requests written with a slot in their context.
type captureConn struct {
	mcp.Connection

	mu      sync.Mutex
	pending map[jsonrpc.ID]*rawSlot // guarded by mu
}

func (c *captureConn) Write(ctx context.Context, msg jsonrpc.Message) error {
	if s := slotFrom(ctx); s != nil {
		if req, ok := msg.(*jsonrpc.Request); ok && req.IsCall() {
			// Register before writing: the response may be read before Write returns.
			c.mu.Lock()
			c.pending[req.ID] = s
			s.ids = append(s.ids, req.ID)
			c.mu.Unlock()
		}
	}
	return c.Connection.Write(ctx, msg)
}

func (c *captureConn) Read(ctx context.Context) (jsonrpc.Message, error) {
	msg, err := c.Connection.Read(ctx)
	if resp, ok := msg.(*jsonrpc.Response); ok && err == nil {
		c.mu.Lock()
		s := c.pending[resp.ID]
		delete(c.pending, resp.ID)
		c.mu.Unlock()
		if s != nil && resp.Error == nil {
			s.set(resp.Result)
		}
	}
	return msg, err
}

// release forgets the requests registered for s, including any whose response never came.
func (c *captureConn) release(s *rawSlot) {
	c.mu.Lock()
	for _, id := range s.ids {
		if c.pending[id] == s {
			delete(c.pending, id)
		}
	}
	s.ids = nil
	c.mu.Unlock()
}

// httpTransport adds the configured headers to requests for the upstream's origin and
// captures raw results for requests whose context carries a slot.
type httpTransport struct {
	base    http.RoundTripper
	scheme  string
	host    string
	headers map[string]string // secret values: never log
}

func (t *httpTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if len(t.headers) > 0 && req.URL.Scheme == t.scheme && req.URL.Host == t.host {
		req = req.Clone(req.Context()) // a RoundTripper must not modify its request
		for k, v := range t.headers {
			req.Header.Set(k, v)
		}
	}
	resp, err := t.base.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	if s := slotFrom(req.Context()); s != nil && resp.StatusCode == http.StatusOK {
		mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
		switch mt {
		case "application/json":
			resp.Body = &captureBody{ReadCloser: resp.Body, slot: s, limit: maxCapture}
		case "text/event-stream":
			resp.Body = &captureBody{ReadCloser: resp.Body, slot: s, sse: true, limit: maxCapture}
		}
	}
	return resp, nil
}

// captureBody tees an HTTP response body through a parser that offers each complete
// JSON-RPC message to the slot. Read is called by one goroutine at a time.
type captureBody struct {
	io.ReadCloser
	slot  *rawSlot
	sse   bool
	limit int // bytes buffered at most for one JSON body or one SSE event

	buf  []byte // application/json: the body so far; SSE: the current line
	data []byte // SSE: the data of the current event
	// tooLong: the JSON body, or the current SSE line, exceeded limit.
	// eventTooLong: the current SSE event did.
	tooLong, eventTooLong bool
	done                  bool
}

func (b *captureBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if b.done {
		return n, err
	}
	if n > 0 {
		if b.sse {
			b.feedSSE(p[:n])
		} else {
			b.feedJSON(p[:n])
		}
	}
	if err == io.EOF {
		b.done = true
		if !b.sse && !b.tooLong {
			offer(b.slot, b.buf)
		}
		b.buf, b.data = nil, nil
	}
	return n, err
}

func (b *captureBody) feedJSON(p []byte) {
	if b.tooLong || len(b.buf)+len(p) > b.limit {
		b.tooLong, b.buf = true, nil
		return
	}
	b.buf = append(b.buf, p...)
}

func (b *captureBody) feedSSE(p []byte) {
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		chunk := p
		if i >= 0 {
			chunk = p[:i]
		}
		if b.tooLong || len(b.buf)+len(chunk) > b.limit {
			b.tooLong, b.buf = true, b.buf[:0]
		} else {
			b.buf = append(b.buf, chunk...)
		}
		if i < 0 {
			return
		}
		if b.tooLong {
			b.tooLong, b.eventTooLong = false, true
		} else {
			b.line(bytes.TrimSuffix(b.buf, []byte("\r")))
		}
		b.buf = b.buf[:0]
		p = p[i+1:]
	}
}

// line processes one SSE line (https://html.spec.whatwg.org/multipage/server-sent-events.html).
// Only data lines matter: the event type, id and retry fields do not change which
// message is the response.
func (b *captureBody) line(l []byte) {
	switch {
	case len(l) == 0: // end of event
		if !b.eventTooLong && len(b.data) > 0 {
			offer(b.slot, b.data)
		}
		b.data, b.eventTooLong = b.data[:0], false
	case b.eventTooLong:
	case bytes.HasPrefix(l, []byte("data:")):
		v := bytes.TrimPrefix(l[len("data:"):], []byte(" "))
		if len(b.data)+len(v)+1 > b.limit {
			b.eventTooLong = true
			return
		}
		if len(b.data) > 0 {
			b.data = append(b.data, '\n')
		}
		b.data = append(b.data, v...)
	}
}

// offer stores msg's result in s if msg is a successful JSON-RPC response.
func offer(s *rawSlot, msg []byte) {
	var m struct {
		Method string          `json:"method"`
		ID     json.RawMessage `json:"id"`
		Result json.RawMessage `json:"result"`
	}
	if json.Unmarshal(msg, &m) != nil || m.Method != "" || len(m.ID) == 0 || len(m.Result) == 0 {
		return
	}
	s.set(m.Result)
}
