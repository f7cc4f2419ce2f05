package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
)

// MaxResponseBytes bounds what a [Session] reads of one answer: a JSON response body, an
// event stream up to the response, and each event in it.
const MaxResponseBytes = 16 << 20

const (
	// clientVersion is the protocol version a Session asks for.
	clientVersion = "2025-11-25"
	// maxStatusSnippet bounds the part of an unexpected answer's body quoted in an error.
	maxStatusSnippet = 200
	// maxDrainBytes bounds what is read of an unwanted body so its connection can be reused.
	maxDrainBytes = 64 << 10
	// callTimeout bounds one exchange (request, answer and body) of an HTTP client made
	// by NewHTTPClient.
	callTimeout = 2 * time.Minute
)

// errTooLarge reports a body over its bound; callers name the bound.
var errTooLarge = errors.New("too large")

// Target is an MCP endpoint to drive load through.
type Target struct {
	// Name labels the target in reports and errors: "direct", "chaperone", ...
	Name string
	// URL is the streamable HTTP endpoint, http or https.
	URL string
	// Token is the bearer token sent in the Authorization header; empty sends none. It
	// never appears in errors.
	Token string
	// Settle, if set, waits until the target has finished what calls leave it to do in
	// the background (a gateway indexing its audit journal), so that memory samples see
	// its steady state.
	Settle func(context.Context) error
}

// Outcome classifies a tools/call that got an answer.
type Outcome int

// Outcomes of a call. The zero Outcome is returned with an error: the call got no answer
// that could be classified.
const (
	// OutcomeOK is a result without isError.
	OutcomeOK Outcome = iota + 1
	// OutcomeToolError is a result with "isError": true, such as a policy refusal.
	OutcomeToolError
	// OutcomeRPCError is a JSON-RPC error response, such as an unknown tool.
	OutcomeRPCError
)

// String returns the outcome's name.
func (o Outcome) String() string {
	switch o {
	case OutcomeOK:
		return "ok"
	case OutcomeToolError:
		return "tool error"
	case OutcomeRPCError:
		return "rpc error"
	}
	return "none"
}

// NewHTTPClient returns an HTTP/1.1 client for conns concurrent sessions: it keeps up to
// conns idle connections per host (so that closed-loop sessions do not redial), does not
// use proxies, compression or redirects, and bounds dialing (10s), waiting for response
// headers (1m) and each whole exchange (2m).
func NewHTTPClient(conns int) *http.Client {
	conns = max(conns, 1)
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	tr := &http.Transport{
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConnsPerHost:   conns,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: time.Minute,
		ExpectContinueTimeout: time.Second,
		DisableCompression:    true,
		Protocols:             &protocols,
	}
	return &http.Client{
		Transport: tr,
		Timeout:   callTimeout,
		// A redirect would carry the bearer token elsewhere; a 3xx is an error instead.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// Session is one MCP session opened by [Open]. It is meant for load: requests are built
// into a reused buffer and only the id, the error and result.isError of an answer are
// decoded.
//
// A Session is not safe for concurrent use: one goroutine at a time may call its methods.
type Session struct {
	hc   *http.Client
	name string
	// tmpl is the request every exchange copies; its Header is complete after Open and
	// never modified afterwards, so copies share it.
	tmpl      *http.Request
	sessionID string
	version   string
	lastID    int64
	closed    bool
	// limit bounds bodies and events read (MaxResponseBytes; lowered by tests).
	limit int

	body *requestBody  // the last request's body, reused once the transport closed it
	buf  []byte        // response body or event data
	line []byte        // a line longer than br's buffer
	br   *bufio.Reader // event stream reader, made on first use
	resp rpcResponse
}

// rpcResponse is what a Session decodes of a JSON-RPC message.
type rpcResponse struct {
	ID     json.RawMessage `json:"id"`
	Method string          `json:"method"`
	Error  *rpcError       `json:"error"`
	Result *rpcResult      `json:"result"`
}

type rpcError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

type rpcResult struct {
	IsError         bool   `json:"isError"`
	ProtocolVersion string `json:"protocolVersion"`
}

// Open opens an MCP session on t: initialize (asking for protocol version 2025-11-25 and
// taking the one the server answers), then notifications/initialized. Errors name the
// target and the step: `open session on chaperone: initialize: HTTP 401: ...`. If the
// server made a session but opening it failed afterwards, Open ends it with DELETE.
func Open(ctx context.Context, hc *http.Client, t Target) (*Session, error) {
	s, err := newSession(hc, t)
	if err != nil {
		return nil, fmt.Errorf("open session on %s: %w", targetName(t), err)
	}
	if err := s.initialize(ctx); err != nil {
		return nil, fmt.Errorf("open session on %s: %w", s.name, err)
	}
	return s, nil
}

func targetName(t Target) string {
	if t.Name != "" {
		return t.Name
	}
	if u, err := url.Parse(t.URL); err == nil && u.Host != "" {
		return u.Host
	}
	return "target"
}

func newSession(hc *http.Client, t Target) (*Session, error) {
	if hc == nil {
		return nil, errors.New("no HTTP client")
	}
	u, err := url.Parse(t.URL)
	if err != nil {
		return nil, fmt.Errorf("invalid URL: %v", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("invalid URL %q: want http:// or https:// with a host", truncate(t.URL, 128))
	}
	if strings.ContainsFunc(t.Token, func(r rune) bool { return r < 0x21 || r == 0x7f }) {
		return nil, errors.New("invalid token: it contains spaces or control characters")
	}
	req, err := http.NewRequest(http.MethodPost, u.String(), nil)
	if err != nil {
		return nil, fmt.Errorf("invalid URL: %v", err)
	}
	req.Header = http.Header{
		"Content-Type": {"application/json"},
		"Accept":       {"application/json, text/event-stream"},
	}
	if t.Token != "" {
		req.Header["Authorization"] = []string{"Bearer " + t.Token}
	}
	return &Session{hc: hc, name: targetName(t), tmpl: req, limit: MaxResponseBytes}, nil
}

func (s *Session) initialize(ctx context.Context) error {
	rb := s.newBody()
	rb.b = append(rb.b, `{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"`+clientVersion+
		`","capabilities":{},"clientInfo":{"name":"chaperone-bench","version":"1"}}}`...)
	resp, err := s.send(ctx, rb)
	if err != nil {
		return fmt.Errorf("initialize: %w", err)
	}
	sid := resp.Header.Get(sessionHeader)
	if err := s.readResponse(resp, 0); err != nil {
		return fmt.Errorf("initialize: %w", err)
	}
	if strings.ContainsFunc(sid, func(r rune) bool { return r < 0x21 || r > 0x7e }) {
		return errors.New("initialize: Mcp-Session-Id header has characters outside visible ASCII")
	}
	// From here on the header is fixed: every later request shares it.
	h := s.tmpl.Header.Clone()
	if sid != "" {
		h[sessionHeader] = []string{sid}
		s.sessionID = sid
	}
	r := &s.resp
	if r.Error == nil && r.Result.ProtocolVersion != "" {
		s.version = r.Result.ProtocolVersion
		h[versionHeader] = []string{s.version}
	}
	s.tmpl.Header = h
	switch {
	case r.Error != nil:
		return fmt.Errorf("initialize: JSON-RPC error %d: %s", r.Error.Code, printable(truncate(r.Error.Message, maxStatusSnippet)))
	case s.version == "":
		s.abandon(ctx)
		return errors.New("initialize: result has no protocolVersion")
	}

	rb = s.newBody()
	rb.b = append(rb.b, `{"jsonrpc":"2.0","method":"notifications/initialized"}`...)
	if err := s.initialized(ctx, rb); err != nil {
		s.abandon(ctx)
		return fmt.Errorf("notifications/initialized: %w", err)
	}
	return nil
}

// abandon ends a session that failed to open, which the server may have made although
// the caller will never see it; it tries even if ctx has ended.
func (s *Session) abandon(ctx context.Context) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), closeTimeout)
	defer cancel()
	s.Close(ctx) // the open failure is the error to report
}

func (s *Session) initialized(ctx context.Context, rb *requestBody) error {
	resp, err := s.send(ctx, rb)
	if err != nil {
		return err
	}
	defer drainClose(resp.Body)
	if resp.StatusCode/100 != 2 {
		return statusError(resp)
	}
	return nil
}

// ID returns the session id the server assigned (the Mcp-Session-Id header), empty if it
// assigned none.
func (s *Session) ID() string { return s.sessionID }

// ProtocolVersion returns the protocol version negotiated by initialize.
func (s *Session) ProtocolVersion() string { return s.version }

// Call calls tool with args, a JSON object (nil sends {}). A JSON-RPC error and a result
// with isError are outcomes, not errors; the error is for everything that is not an
// answer: transport failures, an HTTP status other than 200, a malformed or oversized
// answer (over MaxResponseBytes), an answer to another request id. Request ids count up
// from 1 in each session.
//
// An event-stream answer is read to its end after the response, so that the connection
// can be reused; a server that keeps the stream open holds the call until the HTTP
// client's timeout or ctx ends it.
func (s *Session) Call(ctx context.Context, tool string, args json.RawMessage) (Outcome, error) {
	if s.closed {
		return 0, fmt.Errorf("call tool %q on %s: session closed", truncate(tool, 64), s.name)
	}
	if len(args) == 0 {
		args = json.RawMessage("{}")
	} else if !isJSONObject(args) {
		return 0, fmt.Errorf("call tool %q on %s: arguments are not a JSON object", truncate(tool, 64), s.name)
	}
	s.lastID++
	id := s.lastID
	rb := s.newBody()
	b := append(rb.b, `{"jsonrpc":"2.0","id":`...)
	b = strconv.AppendInt(b, id, 10)
	b = append(b, `,"method":"tools/call","params":{"name":`...)
	b = appendJSONString(b, tool)
	b = append(b, `,"arguments":`...)
	b = append(b, args...)
	rb.b = append(b, "}}"...)
	if err := s.exchange(ctx, rb, id); err != nil {
		return 0, fmt.Errorf("call tool %q on %s: %w", truncate(tool, 64), s.name, err)
	}
	switch {
	case s.resp.Error != nil:
		return OutcomeRPCError, nil
	case s.resp.Result.IsError:
		return OutcomeToolError, nil
	}
	return OutcomeOK, nil
}

// Close ends the session with DELETE. A server that assigned no session id has nothing
// to end; one that answers 405 does not support ending sessions, which is not an error.
// The Session cannot be used afterwards.
func (s *Session) Close(ctx context.Context) error {
	if s.closed {
		return nil
	}
	s.closed = true
	if s.sessionID == "" {
		return nil
	}
	req := s.tmpl.WithContext(ctx)
	req.Method = http.MethodDelete
	resp, err := s.hc.Do(req)
	if err != nil {
		return fmt.Errorf("close session on %s: %w", s.name, unwrapURLError(err))
	}
	defer drainClose(resp.Body)
	if resp.StatusCode/100 != 2 && resp.StatusCode != http.StatusMethodNotAllowed {
		return fmt.Errorf("close session on %s: %w", s.name, statusError(resp))
	}
	return nil
}

// exchange sends a request with id and decodes its answer into s.resp.
func (s *Session) exchange(ctx context.Context, rb *requestBody, id int64) error {
	resp, err := s.send(ctx, rb)
	if err != nil {
		return err
	}
	return s.readResponse(resp, id)
}

func (s *Session) send(ctx context.Context, rb *requestBody) (*http.Response, error) {
	req := s.tmpl.WithContext(ctx)
	req.Body = rb
	req.ContentLength = int64(len(rb.b))
	resp, err := s.hc.Do(req)
	if err != nil {
		return nil, unwrapURLError(err)
	}
	return resp, nil
}

// unwrapURLError drops the "Post <url>:" prefix; errors name the target instead.
func unwrapURLError(err error) error {
	if ue, ok := errors.AsType[*url.Error](err); ok {
		return ue.Err
	}
	return err
}

// readResponse reads the answer to request id into s.resp and closes its body.
func (s *Session) readResponse(resp *http.Response, id int64) error {
	if resp.StatusCode != http.StatusOK {
		defer drainClose(resp.Body)
		return statusError(resp)
	}
	ct := resp.Header.Get("Content-Type")
	switch {
	case isMediaType(ct, "application/json"):
		defer resp.Body.Close() // read to the end, so the connection is reused
		if resp.ContentLength > int64(s.limit) {
			return fmt.Errorf("response body of %d bytes exceeds %s", resp.ContentLength, sizeText(s.limit))
		}
		return s.readJSON(resp.Body, id)
	case isMediaType(ct, "text/event-stream"):
		defer resp.Body.Close()
		return s.readSSE(resp.Body, id)
	}
	defer drainClose(resp.Body)
	return fmt.Errorf("unexpected content type %q: want application/json or text/event-stream", truncate(ct, 64))
}

// readJSON reads a JSON body holding the response to request id.
func (s *Session) readJSON(r io.Reader, id int64) error {
	data, err := readBounded(r, s.buf[:0], s.limit)
	s.keepBuf(data)
	if errors.Is(err, errTooLarge) {
		return fmt.Errorf("response body exceeds %s", sizeText(s.limit))
	}
	if err != nil {
		return fmt.Errorf("read response: %w", err)
	}
	_, err = s.decode(data, id, false)
	return err
}

// readSSE reads an event stream up to the event holding the response to request id,
// skipping the server's notifications and requests, then reads the rest of the stream
// (within the bound) so that the connection can be reused; the server is expected to end
// the stream after the response, as the specification says it should.
//
// Lines end with "\n" or "\r\n" (a lone "\r" is not a line ending here); fields other
// than "data" are ignored; an event not ended by a blank line is discarded.
func (s *Session) readSSE(r io.Reader, id int64) error {
	if s.br == nil {
		s.br = bufio.NewReaderSize(r, 1024)
	} else {
		s.br.Reset(r)
	}
	br := s.br
	defer br.Reset(nil) // keep no reference to the body
	data := s.buf[:0]
	defer func() { s.keepBuf(data) }()
	hasData := false
	total, event := 0, 0 // bytes consumed: in all, and by the current event
	for {
		line, n, err := s.readLine(br, min(s.limit-event, s.limit-total))
		total += n
		event += n
		if event > s.limit {
			return fmt.Errorf("SSE event exceeds %s", sizeText(s.limit))
		}
		if total > s.limit {
			return fmt.Errorf("event stream exceeds %s before the response", sizeText(s.limit))
		}
		if err == io.EOF {
			return errors.New("event stream ended without the response")
		}
		if err != nil {
			return fmt.Errorf("read event stream: %w", err)
		}
		if len(line) == 0 { // a blank line ends the event
			if hasData {
				done, err := s.decode(data, id, true)
				if err != nil {
					return err
				}
				if done {
					if rest := s.limit - total; rest > 0 {
						br.Discard(rest)
					}
					return nil
				}
			}
			data, hasData, event = data[:0], false, 0
			continue
		}
		field, value, _ := bytes.Cut(line, []byte(":"))
		if string(field) != "data" {
			continue // a comment, or a field other than data
		}
		value, _ = bytes.CutPrefix(value, []byte(" "))
		if hasData {
			data = append(data, '\n')
		}
		data = append(data, value...)
		hasData = true
	}
}

// readLine returns the next line without its line ending, and how many bytes it
// consumed. A line longer than room is not read to its end: errTooLarge is returned with
// n > room.
func (s *Session) readLine(br *bufio.Reader, room int) (line []byte, n int, err error) {
	frag, err := br.ReadSlice('\n')
	if err != bufio.ErrBufferFull {
		return trimEOL(frag), len(frag), err
	}
	acc := append(s.line[:0], frag...)
	for err == bufio.ErrBufferFull && len(acc) <= room {
		frag, err = br.ReadSlice('\n')
		acc = append(acc, frag...)
	}
	if len(acc) <= maxRecycledBytes {
		s.line = acc
	}
	if err == bufio.ErrBufferFull {
		return nil, len(acc), errTooLarge
	}
	return trimEOL(acc), len(acc), err
}

func trimEOL(b []byte) []byte {
	b, ok := bytes.CutSuffix(b, []byte("\n"))
	if ok {
		b, _ = bytes.CutSuffix(b, []byte("\r"))
	}
	return b
}

// decode decodes one JSON-RPC message into s.resp and reports whether it is the response
// to request id. In an event stream, messages from the server that are not responses
// (notifications, requests) are skipped; anything else that is not the response is an
// error.
func (s *Session) decode(data []byte, id int64, stream bool) (bool, error) {
	r := &s.resp
	*r = rpcResponse{ID: r.ID[:0]}
	if err := json.Unmarshal(data, r); err != nil {
		return false, fmt.Errorf("decode response: %v", err)
	}
	if r.Method != "" {
		if stream {
			return false, nil
		}
		return false, fmt.Errorf("expected a response, got a %q message", printable(truncate(r.Method, 64)))
	}
	var want [20]byte
	if !bytes.Equal(r.ID, strconv.AppendInt(want[:0], id, 10)) {
		got := "missing"
		if len(r.ID) > 0 {
			got = printable(truncate(string(r.ID), 32))
		}
		if r.Error != nil {
			return false, fmt.Errorf("response id %s does not match request id %d (JSON-RPC error %d: %s)",
				got, id, r.Error.Code, printable(truncate(r.Error.Message, maxStatusSnippet)))
		}
		return false, fmt.Errorf("response id %s does not match request id %d", got, id)
	}
	if r.Error == nil && r.Result == nil {
		return false, errors.New("response has neither result nor error")
	}
	return true, nil
}

// statusError describes an answer with an unexpected status, quoting the start of its
// body. It leaves the body to the caller.
func statusError(resp *http.Response) error {
	var b [maxStatusSnippet]byte
	n, _ := io.ReadFull(resp.Body, b[:])
	snippet := printable(strings.TrimSpace(string(b[:n])))
	if snippet == "" {
		snippet = "empty body"
	}
	return fmt.Errorf("HTTP %d: %s", resp.StatusCode, snippet)
}

// drainClose reads what remains of body (within a bound) and closes it, so that its
// connection can be reused.
func drainClose(body io.ReadCloser) {
	io.CopyN(io.Discard, body, maxDrainBytes)
	body.Close()
}

// printable replaces control and other non-printing characters of s with spaces, so a
// server's text cannot disturb a terminal or log.
func printable(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsPrint(r) {
			return r
		}
		return ' '
	}, s)
}

// sizeText renders a byte bound: "16 MiB", or bytes when not a whole number of MiB.
func sizeText(n int) string {
	if n >= 1<<20 && n%(1<<20) == 0 {
		return strconv.Itoa(n>>20) + " MiB"
	}
	return strconv.Itoa(n) + " bytes"
}

func (s *Session) keepBuf(b []byte) {
	if cap(b) <= maxRecycledBytes {
		s.buf = b[:0]
	} else {
		s.buf = nil
	}
}

// readBounded appends what r yields until EOF to buf and returns it, or errTooLarge once
// more than limit bytes have been read.
func readBounded(r io.Reader, buf []byte, limit int) ([]byte, error) {
	if cap(buf) == 0 {
		buf = make([]byte, 0, 512)
	}
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if len(buf) > limit {
			return buf, errTooLarge
		}
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}

// isJSONObject reports whether b is valid JSON whose value is an object.
func isJSONObject(b []byte) bool {
	t := bytes.TrimLeft(b, " \t\r\n")
	return len(t) > 0 && t[0] == '{' && json.Valid(b)
}

// appendJSONString appends s as a JSON string.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == '"' || c == '\\' || c >= 0x80 {
			q, _ := json.Marshal(s) // escapes, and replaces invalid UTF-8
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// requestBody is a reusable request body. The transport closes it when done with it (in
// its own goroutine, possibly after the response arrived); only then may its buffer be
// reused, so a body not yet closed is replaced rather than reused.
type requestBody struct {
	// mu guards off and closed, and b while the transport may read it.
	mu     sync.Mutex
	b      []byte
	off    int
	closed bool
}

// newBody returns an empty body, reusing the last one if the transport is done with it.
func (s *Session) newBody() *requestBody {
	rb := s.body
	if rb != nil {
		rb.mu.Lock()
		done := rb.closed
		rb.mu.Unlock()
		if !done || cap(rb.b) > maxRecycledBytes {
			rb = nil
		}
	}
	if rb == nil {
		rb = &requestBody{b: make([]byte, 0, 256)}
		s.body = rb
	}
	rb.b, rb.off, rb.closed = rb.b[:0], 0, false
	return rb
}

func (rb *requestBody) Read(p []byte) (int, error) {
	rb.mu.Lock()
	defer rb.mu.Unlock()
	if rb.closed {
		return 0, errors.New("read after close")
	}
	if rb.off >= len(rb.b) {
		return 0, io.EOF
	}
	n := copy(p, rb.b[rb.off:])
	rb.off += n
	return n, nil
}

func (rb *requestBody) Close() error {
	rb.mu.Lock()
	rb.closed = true
	rb.mu.Unlock()
	return nil
}
