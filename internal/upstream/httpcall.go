package upstream

// The hot path to streamable-HTTP upstreams. The SDK's client decodes every message twice
// (into jsonrpc and then into typed results), allocating a 32 KiB buffer per message and
// routing each answer through goroutines; measured, that was the largest share of the
// gateway's CPU per call. tools/call does not need any of it: the gateway passes the result
// through as raw JSON. So calls are sent here as one POST on the session the SDK set up
// (its Mcp-Session-Id and negotiated protocol version), and the answer — one JSON body or
// an SSE stream — is read directly. The SDK session still does everything else: initialize,
// tools/list, the standalone stream that carries list_changed notifications, reconnecting.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"

	"github.com/chaperone-dev/chaperone/internal/telemetry"
)

// maxErrorSnippet bounds the part of an unexpected HTTP answer quoted in an error.
const maxErrorSnippet = 200

// cancelTimeout bounds the notifications/cancelled sent after a call was abandoned.
const cancelTimeout = 2 * time.Second

// httpSession is what a direct call needs of a streamable-HTTP session.
type httpSession struct {
	id    string // Mcp-Session-Id; empty for a server that does not use sessions
	proto string // negotiated protocol version
	// ids numbers this session's direct requests. They are strings ("chaperone-N"), so
	// they can never collide with the SDK's integer IDs on the same session.
	ids atomic.Int64
}

// wireMessage is a JSON-RPC message as far as a direct call reads it.
type wireMessage struct {
	Method string          `json:"method"`
	ID     json.RawMessage `json:"id"`
	Result json.RawMessage `json:"result"`
	Error  *jsonrpc.Error  `json:"error"`
}

// callHTTP calls tools/call on s directly. Errors are classified like the SDK path's:
// transport failures wrap [ErrUnavailable], the upstream's JSON-RPC errors are
// *jsonrpc.Error.
func (c *Client) callHTTP(ctx context.Context, s *session, tool string, args json.RawMessage) (json.RawMessage, error) {
	op := "call tool " + strconv.Quote(tool)
	id := "chaperone-" + strconv.FormatInt(s.http.ids.Add(1), 10)
	body, err := callBody(ctx, id, tool, args)
	if err != nil {
		return nil, fmt.Errorf("upstream %q: %s: %w", c.cfg.Name, op, err)
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.CallTimeout)
	defer cancel()

	resp, err := c.post(ctx, s.http, body)
	if err != nil {
		if ctx.Err() != nil {
			c.cancelled(s.http, id)
		}
		return nil, c.requestError(ctx, op, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound && s.http.id != "" {
		// The upstream forgot the session (restart, expiry): end it, so that the
		// supervisor connects again, and fail this call as unavailable.
		go func() { _ = s.cs.Close() }()
		return nil, fmt.Errorf("upstream %q: %s: %w: the upstream ended the session (HTTP 404)", c.cfg.Name, op, ErrUnavailable)
	}
	mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	var m *wireMessage
	switch {
	case resp.StatusCode == http.StatusOK && mt == "text/event-stream":
		m, err = c.readStream(ctx, s.http, resp.Body, id)
	case mt == "application/json":
		m, err = readJSONAnswer(resp.Body, id)
		if resp.StatusCode != http.StatusOK && (err != nil || m.Error == nil) {
			// Only a JSON-RPC error answering this request is taken from a failed status.
			m, err = nil, statusError(resp.StatusCode, nil)
		}
	default:
		snippet, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorSnippet))
		if resp.StatusCode == http.StatusOK {
			err = fmt.Errorf("unsupported content type %q", mt)
		} else {
			err = statusError(resp.StatusCode, snippet)
		}
	}
	if err != nil {
		if ctx.Err() != nil {
			c.cancelled(s.http, id)
		}
		return nil, c.requestError(ctx, op, err)
	}
	if m.Error != nil {
		return nil, fmt.Errorf("upstream %q: %s: %w", c.cfg.Name, op, m.Error)
	}
	if len(m.Result) == 0 || string(m.Result) == "null" {
		return nil, fmt.Errorf("upstream %q: %s: %w: the response has neither result nor error", c.cfg.Name, op, ErrUnavailable)
	}
	return m.Result, nil
}

// callBody encodes the tools/call request. args must be a JSON object (or empty: {}).
func callBody(ctx context.Context, id, tool string, args json.RawMessage) ([]byte, error) {
	if len(args) == 0 {
		args = json.RawMessage(`{}`)
	} else if !json.Valid(args) {
		// Checked here so that malformed arguments are not mistaken for a transport failure.
		return nil, errors.New("arguments are not valid JSON")
	}
	name, err := json.Marshal(tool)
	if err != nil {
		return nil, err
	}
	b := make([]byte, 0, 96+len(id)+len(name)+len(args))
	b = append(b, `{"jsonrpc":"2.0","id":"`...)
	b = append(b, id...)
	b = append(b, `","method":"tools/call","params":{"name":`...)
	b = append(b, name...)
	b = append(b, `,"arguments":`...)
	b = append(b, args...)
	if tc := telemetry.ToMeta(ctx); tc != nil {
		// The upstream joins the caller's trace (the MCP semantic conventions carry W3C
		// trace context in params._meta).
		meta, err := json.Marshal(tc)
		if err != nil {
			return nil, err
		}
		b = append(b, `,"_meta":`...)
		b = append(b, meta...)
	}
	return append(b, "}}"...), nil
}

// post sends one JSON-RPC message of the session: on the calling goroutine over plain
// http:// (c.direct, see h1.go), through net/http otherwise.
func (c *Client) post(ctx context.Context, hs *httpSession, body []byte) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.cfg.URL, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	h := req.Header
	h["Content-Type"] = []string{"application/json"}
	h["Accept"] = []string{"application/json, text/event-stream"}
	if hs.proto != "" {
		h["Mcp-Protocol-Version"] = []string{hs.proto}
	}
	if hs.id != "" {
		h["Mcp-Session-Id"] = []string{hs.id}
	}
	if c.direct != nil {
		return c.direct.RoundTrip(req)
	}
	return c.http.Do(req)
}

// cancelled tells the upstream, in the background and best effort, that the request id
// was abandoned, as the SDK does when a call's context ends.
func (c *Client) cancelled(hs *httpSession, id string) {
	body := []byte(`{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":"` + id + `","reason":"abandoned by the gateway"}}`)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), cancelTimeout)
		defer cancel()
		if resp, err := c.post(ctx, hs, body); err == nil {
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxErrorSnippet))
			resp.Body.Close()
		}
	}()
}

// statusError describes an HTTP answer that is not a JSON-RPC response.
func statusError(code int, snippet []byte) error {
	if len(snippet) == 0 {
		return fmt.Errorf("HTTP %d", code)
	}
	return fmt.Errorf("HTTP %d: %q", code, snippet)
}

// readJSONAnswer reads a single JSON-RPC response to id, at most maxCapture bytes.
func readJSONAnswer(r io.Reader, id string) (*wireMessage, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxCapture+1))
	if err != nil {
		return nil, fmt.Errorf("read response: %w", err)
	}
	if len(b) > maxCapture {
		return nil, fmt.Errorf("response larger than %d bytes", maxCapture)
	}
	return decodeAnswer(b, id)
}

// decodeAnswer decodes the response to id; anything else is an error.
func decodeAnswer(b []byte, id string) (*wireMessage, error) {
	m := new(wireMessage)
	if err := json.Unmarshal(b, m); err != nil {
		return nil, fmt.Errorf("decode response: %w", err)
	}
	if !sameID(m.ID, id) || m.Method != "" {
		return nil, fmt.Errorf("the response is not the answer to request %s", id)
	}
	return m, nil
}

// sameID reports whether raw is the JSON string id.
func sameID(raw json.RawMessage, id string) bool {
	return len(raw) == len(id)+2 && raw[0] == '"' && raw[len(raw)-1] == '"' && string(raw[1:len(raw)-1]) == id
}

// readStream reads an SSE answer until the response to id. Notifications on the way
// (progress, logging) are skipped; requests from the upstream are answered: ping with an
// empty result, anything else (sampling, elicitation, roots: the gateway offers none) with
// method not found. Each event is bounded by maxCapture.
func (c *Client) readStream(ctx context.Context, hs *httpSession, r io.Reader, id string) (*wireMessage, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), maxCapture)
	var data []byte
	for {
		more := sc.Scan()
		var line []byte
		if more {
			line = bytes.TrimSuffix(sc.Bytes(), []byte("\r"))
		}
		if len(line) == 0 { // end of an event (or of the stream)
			if len(data) > 0 {
				m, done, err := c.streamEvent(ctx, hs, data, id)
				if done || err != nil {
					return m, err
				}
				data = data[:0]
			}
			if !more {
				break
			}
			continue
		}
		if v, ok := bytes.CutPrefix(line, []byte("data:")); ok {
			v = bytes.TrimPrefix(v, []byte(" "))
			if len(data)+len(v)+1 > maxCapture {
				return nil, fmt.Errorf("stream event larger than %d bytes", maxCapture)
			}
			if len(data) > 0 {
				data = append(data, '\n')
			}
			data = append(data, v...)
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, fmt.Errorf("stream line longer than %d bytes", maxCapture)
		}
		return nil, fmt.Errorf("read stream: %w", err)
	}
	return nil, errors.New("the stream ended before the response")
}

// streamEvent handles one SSE event's data; done reports that it was the response to id.
func (c *Client) streamEvent(ctx context.Context, hs *httpSession, data []byte, id string) (_ *wireMessage, done bool, _ error) {
	var m wireMessage
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, false, fmt.Errorf("decode stream event: %w", err)
	}
	switch {
	case m.Method == "" && sameID(m.ID, id):
		// The scanner reuses its buffer: the result must not alias it.
		m.Result = bytes.Clone(m.Result)
		return &m, true, nil
	case m.Method != "" && len(m.ID) > 0:
		c.answerRequest(ctx, hs, &m)
	}
	return nil, false, nil
}

// answerRequest answers a request the upstream sent on a call's stream.
func (c *Client) answerRequest(ctx context.Context, hs *httpSession, m *wireMessage) {
	var answer []byte
	if m.Method == "ping" {
		answer = fmt.Appendf(nil, `{"jsonrpc":"2.0","id":%s,"result":{}}`, m.ID)
	} else {
		answer = fmt.Appendf(nil, `{"jsonrpc":"2.0","id":%s,"error":{"code":-32601,"message":"method not found: the gateway offers no client capabilities"}}`, m.ID)
	}
	resp, err := c.post(ctx, hs, answer)
	if err != nil {
		c.log.DebugContext(ctx, "answering an upstream request failed", "method", m.Method, "err", err)
		return
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxErrorSnippet))
	resp.Body.Close()
}
