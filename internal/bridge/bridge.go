// Package bridge relays MCP's stdio transport to a Chaperone gateway's streamable HTTP
// endpoint, for MCP clients that only launch local servers (`chaperone mcp stdio`).
//
// The bridge is a raw JSON-RPC relay, not an MCP server and client pair: every message
// read from standard input is POSTed, unchanged, to the gateway, and every message the
// gateway answers with is written to standard output, unchanged but for its whitespace
// (one message per line). Ids, errors, _meta, progress and methods the bridge has never
// heard of pass through untouched.
//
// What it guarantees: standard output carries only JSON-RPC messages, one per line; every
// request read gets exactly one response unless the client cancelled it (the gateway's, or
// a JSON-RPC error saying why there is none); a slow request never delays another; the
// bearer token travels only in the Authorization header, to the configured URL, and never
// over plain HTTP to another host unless the operator allowed it; the token never reaches
// standard error or an error message.
//
// What it does not do: decide anything. The gateway authenticates, authorises and audits;
// the bridge neither inspects tool calls nor retries them. It reads only what it must to
// relay: a message's id and method, the protocol version and session the gateway assigns,
// and the fields that HTTP headers repeat for protocol revision 2026-07-28.
package bridge

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/chaperone-dev/chaperone/internal/config"
)

// Defaults of [Options].
const (
	// DefaultMaxMessageBytes bounds one message in either direction: 16 MiB.
	DefaultMaxMessageBytes = 16 << 20
	// DefaultMaxInFlight bounds the messages being relayed at once.
	DefaultMaxInFlight = 64
	// DefaultRequestTimeout bounds one POST, its event stream included.
	DefaultRequestTimeout = time.Hour
	// DefaultDrainTimeout is how long the bridge waits for requests in flight once standard
	// input ends.
	DefaultDrainTimeout = 5 * time.Second
	// DefaultStreamRetryDelay is the pause before the server-to-client stream is reopened.
	DefaultStreamRetryDelay = time.Second
)

const (
	maxTokenBytes      = 16 << 10
	maxSessionIDBytes  = 1024
	maxVersionBytes    = 64
	maxErrorBodyBytes  = 1 << 20
	maxStreamFailures  = 3
	deleteTimeout      = 5 * time.Second
	abandonTimeout     = time.Second
	newProtocolVersion = "2026-07-28" // the first revision with Mcp-Method and Mcp-Name headers
)

// JSON-RPC error codes the bridge answers with.
const (
	codeParseError     = -32700
	codeInvalidRequest = -32600
	codeInternal       = -32603
	// codeUnauthenticated is the gateway's own code for a refused token.
	codeUnauthenticated = -32001
)

// Options configure [Run].
type Options struct {
	// URL is the gateway's MCP endpoint, such as "https://gw.example.com/mcp". It must be
	// http or https; plain http only to a loopback host unless AllowInsecureHTTP is set.
	URL string
	// Token is the bearer token sent with every request. Required; never logged.
	Token string
	// TokenSource, if set, is asked for the current token before every request — a file a
	// token refresher rewrites, for short-lived task tokens. When it fails or gives a token
	// that cannot be sent, the last good one (at first, Token) is used and the failure is
	// logged once, without the token.
	TokenSource func() (string, error)
	// AllowInsecureHTTP permits plain http to a host other than loopback. The token then
	// crosses the network in clear; Run warns on Stderr.
	AllowInsecureHTTP bool
	// HTTPClient sends the requests. Nil selects a client that follows no redirects (a
	// redirect is reported, not followed with the token).
	HTTPClient *http.Client
	// Stderr receives diagnostics; nil discards them. Standard output is the protocol's.
	Stderr io.Writer
	// UserAgent, if set, is sent as the User-Agent header.
	UserAgent string
	// MaxMessageBytes bounds one message in either direction (default
	// [DefaultMaxMessageBytes]).
	MaxMessageBytes int
	// MaxInFlight bounds the messages relayed at once (default [DefaultMaxInFlight]); a
	// request beyond it is answered with an error at once.
	MaxInFlight int
	// RequestTimeout bounds one request to the gateway, its answer included (default
	// [DefaultRequestTimeout]).
	RequestTimeout time.Duration
	// DrainTimeout is how long requests in flight may finish once standard input ends
	// (default [DefaultDrainTimeout]).
	DrainTimeout time.Duration
	// StreamRetryDelay is the pause before the server-to-client event stream is reopened
	// after it ended (default [DefaultStreamRetryDelay]).
	StreamRetryDelay time.Duration
}

// ParseURL checks the gateway URL of [Options]: http or https with a host, no user
// information (credentials belong in the token), and plain http only to a loopback host
// unless allowInsecureHTTP. Its errors never repeat the whole URL.
func ParseURL(raw string, allowInsecureHTTP bool) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("invalid URL: %w", err)
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, fmt.Errorf("the URL must be http or https, got scheme %q", truncate(u.Scheme, 16))
	case u.Host == "":
		return nil, errors.New("the URL has no host")
	case u.User != nil:
		return nil, errors.New("the URL must not carry user information: the token goes in the token file")
	case u.Scheme == "http" && !config.IsLoopbackHost(u.Hostname()) && !allowInsecureHTTP:
		return nil, fmt.Errorf("plain http is allowed only to a loopback host, not %q: the token would cross the network in clear (use https)", truncate(u.Hostname(), 253))
	}
	return u, nil
}

// checkToken refuses a token that cannot be sent in an Authorization header. Its errors
// never hold the token.
func checkToken(tok string) error {
	if tok == "" {
		return errors.New("no bearer token")
	}
	if len(tok) > maxTokenBytes {
		return fmt.Errorf("the bearer token is longer than %d bytes", maxTokenBytes)
	}
	for i := 0; i < len(tok); i++ {
		if c := tok[i]; c <= ' ' || c == 0x7f {
			return errors.New("the bearer token contains a space or a control character")
		}
	}
	return nil
}

// Run relays MCP messages between stdin and stdout (newline-delimited JSON-RPC) and the
// gateway at opts.URL until stdin ends or ctx is done. At the end of stdin it lets the
// requests in flight finish (for at most opts.DrainTimeout), ends the gateway session and
// returns nil; when ctx is done it abandons them and returns ctx's error. Diagnostics go
// to opts.Stderr only.
//
// A read of stdin or a write of stdout blocked when Run returns stays blocked: the
// process is expected to exit.
func Run(ctx context.Context, opts Options, stdin io.Reader, stdout io.Writer) error {
	u, err := ParseURL(opts.URL, opts.AllowInsecureHTTP)
	if err != nil {
		return err
	}
	if err := checkToken(opts.Token); err != nil {
		return err
	}
	b := newBridge(opts, u, stdout)
	// The query is left out: it may carry what is not for logs.
	b.log.Info("relaying MCP over stdio", "gateway", u.Scheme+"://"+u.Host+u.Path)
	if u.Scheme == "http" && !config.IsLoopbackHost(u.Hostname()) {
		b.log.Warn("sending the bearer token over plain http to a host other than loopback", "host", u.Host)
	}

	relayCtx, cancelRelays := context.WithCancel(ctx)
	defer cancelRelays()
	lines := make(chan inputLine)
	stopReading := make(chan struct{})
	go readLines(&lineReader{r: bufio.NewReader(stdin), max: b.opts.MaxMessageBytes}, lines, stopReading)
	defer close(stopReading)

	var readErr error
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case l, ok := <-lines:
			if !ok {
				break loop
			}
			if l.err != nil {
				readErr = fmt.Errorf("read standard input: %w", l.err)
				break loop
			}
			b.dispatch(relayCtx, ctx, l)
		}
	}
	if ctx.Err() == nil && !waitTimeout(&b.relays, b.opts.DrainTimeout) {
		b.log.Warn("requests still in flight after the end of input; abandoning them", "drain_timeout", b.opts.DrainTimeout)
	}
	cancelRelays()
	waitTimeout(&b.relays, abandonTimeout)
	b.close()
	waitTimeout(&b.listeners, abandonTimeout)
	b.deleteSession(context.WithoutCancel(ctx))
	if readErr != nil {
		return readErr
	}
	return ctx.Err()
}

// bridge is one Run's state.
type bridge struct {
	opts   Options
	url    string
	client *http.Client
	log    *slog.Logger
	out    *lineWriter
	slots  chan struct{} // one per message in flight

	writeFailed sync.Once // stdout failed: said once

	token     atomic.Pointer[string] // the last good token
	tokenWarn sync.Once              // a TokenSource failure: said once

	relays    sync.WaitGroup // relay goroutines
	listeners sync.WaitGroup // server-to-client stream goroutines

	mu sync.Mutex
	// Guarded by mu:
	sessionID  string           // the gateway's Mcp-Session-Id, "" for none
	protocol   string           // the protocol revision initialize negotiated
	inflight   map[string]*call // requests in flight by id key
	stopListen context.CancelFunc
	closed     bool // no stream is opened any more
}

func newBridge(opts Options, u *url.URL, stdout io.Writer) *bridge {
	if opts.MaxMessageBytes <= 0 {
		opts.MaxMessageBytes = DefaultMaxMessageBytes
	}
	if opts.MaxInFlight <= 0 {
		opts.MaxInFlight = DefaultMaxInFlight
	}
	if opts.RequestTimeout <= 0 {
		opts.RequestTimeout = DefaultRequestTimeout
	}
	if opts.DrainTimeout <= 0 {
		opts.DrainTimeout = DefaultDrainTimeout
	}
	if opts.StreamRetryDelay <= 0 {
		opts.StreamRetryDelay = DefaultStreamRetryDelay
	}
	if opts.Stderr == nil {
		opts.Stderr = io.Discard
	}
	client := opts.HTTPClient
	if client == nil {
		client = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	b := &bridge{
		opts:     opts,
		url:      u.String(),
		client:   client,
		log:      slog.New(slog.NewTextHandler(opts.Stderr, nil)).With("component", "mcp-stdio"),
		out:      &lineWriter{w: stdout},
		slots:    make(chan struct{}, opts.MaxInFlight),
		inflight: map[string]*call{},
	}
	tok := opts.Token
	b.token.Store(&tok)
	return b
}

// currentToken is the token to send now: TokenSource's, or the last good one.
func (b *bridge) currentToken() string {
	if b.opts.TokenSource != nil {
		tok, err := b.opts.TokenSource()
		if err == nil {
			err = checkToken(tok)
		}
		if err == nil {
			b.token.Store(&tok)
			return tok
		}
		b.tokenWarn.Do(func() {
			b.log.Warn("could not read a new bearer token; sending the last good one", "err", err)
		})
	}
	return *b.token.Load()
}

// call is a request in flight.
type call struct {
	key    string
	cancel context.CancelFunc
	// aborted: the client cancelled it (notifications/cancelled), so nothing is written
	// for it.
	aborted atomic.Bool
}

// inputLine is one line of stdin, or the error that ended it.
type inputLine struct {
	data      []byte
	oversized bool
	err       error
}

// readLines reads lr into out until the input ends (out is then closed) or stop is closed.
func readLines(lr *lineReader, out chan<- inputLine, stop <-chan struct{}) {
	defer close(out)
	for {
		line, oversized, err := lr.next()
		if errors.Is(err, io.EOF) {
			return
		}
		l := inputLine{data: bytes.Clone(line), oversized: oversized, err: err}
		select {
		case out <- l:
		case <-stop:
			return
		}
		if err != nil {
			return
		}
	}
}

// message is what the bridge reads of a message from the client.
type message struct {
	body   []byte
	id     json.RawMessage // nil for none (or null)
	method string
	// hasMethod: a request or notification; without, a response to the server.
	hasMethod bool
	// metaVersion is params._meta's protocol version (2026-07-28 requests carry it).
	metaVersion string
	// name is the tool or prompt name, or the resource URI, that Mcp-Name repeats.
	name string
	// cancels is the id key of the request a notifications/cancelled cancels.
	cancels string
}

func (m *message) isRequest() bool { return m.hasMethod && m.id != nil }

// Why a line is not relayed.
var (
	errNotJSON   = errors.New("not valid JSON")
	errNotObject = errors.New("not a JSON object")
)

// parseMessage reads what the relay needs of one message. It fails only for input that
// is not JSON (errNotJSON) or not a JSON object (errNotObject): anything else goes to the
// gateway, which judges it.
func parseMessage(body []byte) (*message, error) {
	body = bytes.TrimSpace(body)
	if !json.Valid(body) {
		return nil, errNotJSON
	}
	if body[0] != '{' {
		return nil, errNotObject
	}
	var raw struct {
		ID     json.RawMessage `json:"id"`
		Method json.RawMessage `json:"method"`
		Params json.RawMessage `json:"params"`
	}
	if err := json.Unmarshal(body, &raw); err != nil {
		return nil, errNotObject
	}
	m := &message{body: body, hasMethod: raw.Method != nil}
	if idKey(raw.ID) != "" {
		m.id = raw.ID
	}
	_ = json.Unmarshal(raw.Method, &m.method)
	if len(raw.Params) == 0 || raw.Params[0] != '{' {
		return m, nil
	}
	var p struct {
		Meta struct {
			ProtocolVersion json.RawMessage `json:"io.modelcontextprotocol/protocolVersion"`
		} `json:"_meta"`
		Name      json.RawMessage `json:"name"`
		URI       json.RawMessage `json:"uri"`
		RequestID json.RawMessage `json:"requestId"`
	}
	if json.Unmarshal(raw.Params, &p) != nil {
		return m, nil
	}
	_ = json.Unmarshal(p.Meta.ProtocolVersion, &m.metaVersion)
	switch m.method {
	case "tools/call", "prompts/get":
		_ = json.Unmarshal(p.Name, &m.name)
	case "resources/read":
		_ = json.Unmarshal(p.URI, &m.name)
	case "notifications/cancelled":
		m.cancels = idKey(p.RequestID)
	}
	return m, nil
}

// dispatch handles one line of input: a message to relay, or one refused on the spot.
// base is Run's context, which outlives every request: the server-to-client stream that a
// successful initialize opens derives from it.
func (b *bridge) dispatch(ctx, base context.Context, l inputLine) {
	if l.oversized {
		b.reject(scanID(l.data), codeInvalidRequest, fmt.Sprintf("invalid request: message larger than %d bytes", b.opts.MaxMessageBytes))
		return
	}
	body := bytes.TrimSpace(l.data)
	if len(body) == 0 {
		return
	}
	m, err := parseMessage(body)
	if err != nil {
		if errors.Is(err, errNotObject) {
			b.reject(nil, codeInvalidRequest, "invalid request: a message must be a JSON object")
			return
		}
		b.reject(scanID(body), codeParseError, "parse error: the message is not valid JSON")
		return
	}
	if m.cancels != "" {
		b.abort(m.cancels)
	}
	select {
	case b.slots <- struct{}{}:
	default:
		msg := fmt.Sprintf("too many messages in flight (limit %d): try again when some have been answered", b.opts.MaxInFlight)
		if m.isRequest() {
			b.writeError(m.id, codeInternal, msg)
		} else {
			b.log.Warn("message dropped", "method", m.method, "reason", msg)
		}
		return
	}
	var c *call
	if m.isRequest() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithCancel(ctx)
		c = b.register(m, cancel)
	}
	b.relays.Add(1)
	go func() {
		defer b.relays.Done()
		defer func() { <-b.slots }()
		if c != nil {
			defer b.unregister(c)
			defer c.cancel()
		}
		b.relay(ctx, base, m, c)
	}()
}

// reject answers a message that cannot be relayed: with a JSON-RPC error if it had an id,
// else on stderr only.
func (b *bridge) reject(id json.RawMessage, code int, msg string) {
	if id != nil {
		b.writeError(id, code, msg)
		return
	}
	b.log.Warn("message dropped", "reason", msg)
}

// register records a request in flight so that the client can cancel it.
func (b *bridge) register(m *message, cancel context.CancelFunc) *call {
	c := &call{key: idKey(m.id), cancel: cancel}
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, dup := b.inflight[c.key]; !dup {
		b.inflight[c.key] = c
	}
	return c
}

func (b *bridge) unregister(c *call) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.inflight[c.key] == c {
		delete(b.inflight, c.key)
	}
}

// abort ends the HTTP request of a request the client cancelled: the gateway sees the
// request end and stops its work. The cancellation itself is relayed too.
func (b *bridge) abort(key string) {
	b.mu.Lock()
	c := b.inflight[key]
	b.mu.Unlock()
	if c != nil {
		c.aborted.Store(true)
		c.cancel()
	}
}

// session returns the session id and negotiated protocol revision to send.
func (b *bridge) session() (id, protocol string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.sessionID, b.protocol
}

// relay POSTs m to the gateway and writes what comes back. c is m's call if m is a
// request, else nil.
func (b *bridge) relay(ctx, base context.Context, m *message, c *call) {
	ctx, cancel := context.WithTimeout(ctx, b.opts.RequestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, b.url, bytes.NewReader(m.body))
	if err != nil {
		b.fail(m, c, codeInternal, "could not build the request to the gateway")
		return
	}
	b.setAuth(req.Header)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	initialize := m.method == "initialize" && m.isRequest()
	var sid, proto string
	if !initialize {
		sid, proto = b.session()
	}
	if validVersion(m.metaVersion) {
		proto = m.metaVersion
	}
	if sid != "" {
		req.Header.Set("Mcp-Session-Id", sid)
	}
	if proto != "" {
		req.Header.Set("Mcp-Protocol-Version", proto)
	}
	// 2026-07-28 repeats the method and name in headers; a value no header can carry is
	// left out, and the gateway refuses the request for the mismatch.
	if proto >= newProtocolVersion && m.hasMethod {
		if validHeaderValue(m.method) {
			req.Header.Set("Mcp-Method", m.method)
		}
		if m.name != "" && validHeaderValue(m.name) {
			req.Header.Set("Mcp-Name", m.name)
		}
	}
	resp, err := b.client.Do(req)
	if err != nil {
		b.fail(m, c, codeInternal, b.sendError(ctx, err))
		return
	}
	defer resp.Body.Close()
	status := resp.StatusCode
	switch {
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		b.fail(m, c, codeUnauthenticated, fmt.Sprintf("the Chaperone gateway refused the bearer token (HTTP %d %s): check --token-file or CHAPERONE_TOKEN", status, http.StatusText(status)))
	case status == http.StatusNotFound && sid != "":
		b.fail(m, c, codeInternal, "session expired: the Chaperone gateway no longer knows this session (HTTP 404 Not Found); initialize a new session")
	case status/100 == 2:
		b.relayAnswer(ctx, base, m, c, resp, initialize)
	default:
		b.relayFailure(ctx, m, c, resp)
	}
}

// relayAnswer writes a 2xx answer: a JSON body or an event stream.
func (b *bridge) relayAnswer(ctx, base context.Context, m *message, c *call, resp *http.Response, initialize bool) {
	ct, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if ct == "text/event-stream" {
		b.relayStream(ctx, base, m, c, resp, initialize)
		return
	}
	body, err := readBounded(resp.Body, b.opts.MaxMessageBytes)
	switch {
	case err != nil:
		b.fail(m, c, codeInternal, b.readError(ctx, err))
		return
	case len(bytes.TrimSpace(body)) == 0:
		if m.isRequest() {
			b.fail(m, c, codeInternal, fmt.Sprintf("the Chaperone gateway answered HTTP %d without a response to the request", resp.StatusCode))
		}
		return
	case ct != "application/json":
		b.fail(m, c, codeInternal, fmt.Sprintf("the Chaperone gateway answered HTTP %d with content type %q, not JSON or an event stream", resp.StatusCode, truncate(ct, 64)))
		return
	}
	a := decodeAnswer(body)
	started := initialize && a.answers(m.id) && a.isResult
	if started {
		b.setSession(resp.Header.Get("Mcp-Session-Id"), a.protocolVersion)
	}
	if err := b.write(c, body); err != nil {
		b.fail(m, c, codeInternal, "the Chaperone gateway answered with invalid JSON")
		return
	}
	if started {
		b.startListening(base)
	}
}

// relayStream writes each message of an event stream, in order, until the response to
// m (if m is a request) or the end of the stream.
func (b *bridge) relayStream(ctx, base context.Context, m *message, c *call, resp *http.Response, initialize bool) {
	sr := newSSEReader(resp.Body, b.opts.MaxMessageBytes)
	for {
		ev, err := sr.next()
		if err != nil {
			switch {
			case !m.isRequest():
				if !errors.Is(err, io.EOF) && ctx.Err() == nil {
					b.log.Warn("event stream broken", "method", m.method, "err", err)
				}
			case errors.Is(err, io.EOF):
				b.fail(m, c, codeInternal, "the Chaperone gateway's event stream ended before the response")
			default:
				b.fail(m, c, codeInternal, b.readError(ctx, err))
			}
			return
		}
		if !ev.isMessage() {
			continue
		}
		a := decodeAnswer(ev.data)
		final := m.isRequest() && a.answers(m.id)
		started := final && initialize && a.isResult
		if started {
			b.setSession(resp.Header.Get("Mcp-Session-Id"), a.protocolVersion)
		}
		if err := b.write(c, ev.data); err != nil {
			b.log.Warn("event stream message dropped", "reason", "not valid JSON")
			continue
		}
		if started {
			b.startListening(base)
		}
		if final {
			return
		}
	}
}

// relayFailure handles a non-2xx answer. The gateway's own JSON-RPC error for the request
// (the protocol's errors: a bad header, a batch, too many sessions) passes through as it
// is; anything else becomes an internal error naming the status.
func (b *bridge) relayFailure(ctx context.Context, m *message, c *call, resp *http.Response) {
	body, err := readBounded(resp.Body, maxErrorBodyBytes)
	if err != nil && ctx.Err() != nil {
		b.fail(m, c, codeInternal, b.readError(ctx, err))
		return
	}
	a := decodeAnswer(body)
	if a.answers(m.id) && a.isError {
		if b.write(c, body) == nil {
			return
		}
	}
	msg := fmt.Sprintf("the Chaperone gateway answered HTTP %d %s", resp.StatusCode, http.StatusText(resp.StatusCode))
	if a.errorMessage != "" {
		msg += ": " + truncate(a.errorMessage, 200)
	} else if resp.StatusCode/100 == 3 || resp.StatusCode == http.StatusNotFound {
		msg += ": check the URL"
	}
	b.fail(m, c, codeInternal, msg)
}

// fail reports that m got no answer: to the client as a JSON-RPC error if m is a request
// it did not cancel, on stderr if m is a notification or response.
func (b *bridge) fail(m *message, c *call, code int, msg string) {
	if c != nil && c.aborted.Load() {
		return
	}
	if m.isRequest() {
		b.writeError(m.id, code, msg)
		return
	}
	what := m.method
	if !m.hasMethod {
		what = "(response)"
	}
	b.log.Warn("message not delivered", "method", what, "reason", msg)
}

// write writes one message from the gateway to stdout, unless the client cancelled the
// request it answers.
func (b *bridge) write(c *call, msg []byte) error {
	if c != nil && c.aborted.Load() {
		return nil
	}
	err := b.out.write(msg)
	if errors.Is(err, errNotJSON) {
		return err
	}
	if err != nil {
		b.writeFailed.Do(func() { b.log.Error("cannot write standard output", "err", err) })
	}
	return nil
}

// writeError writes a JSON-RPC error response for id.
func (b *bridge) writeError(id json.RawMessage, code int, msg string) {
	type rpcError struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	}
	out, err := json.Marshal(struct {
		JSONRPC string          `json:"jsonrpc"`
		ID      json.RawMessage `json:"id"`
		Error   rpcError        `json:"error"`
	}{"2.0", id, rpcError{code, msg}})
	if err != nil {
		b.log.Error("cannot encode an error response", "err", err)
		return
	}
	_ = b.write(nil, out)
}

// errStopping is the error of a request abandoned because the bridge is stopping (a
// request the client cancelled gets none).
const errStopping = "abandoned: chaperone mcp stdio is stopping"

// sendError explains why a request got no answer at all, without the URL.
func (b *bridge) sendError(ctx context.Context, err error) string {
	switch {
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return fmt.Sprintf("no answer from the Chaperone gateway within %s", b.opts.RequestTimeout)
	case errors.Is(ctx.Err(), context.Canceled):
		return errStopping
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return "could not reach the Chaperone gateway: " + err.Error()
}

// readError explains why an answer could not be read.
func (b *bridge) readError(ctx context.Context, err error) string {
	switch {
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return fmt.Sprintf("no complete answer from the Chaperone gateway within %s", b.opts.RequestTimeout)
	case errors.Is(ctx.Err(), context.Canceled):
		return errStopping
	}
	var tl tooLargeError
	if errors.As(err, &tl) {
		return fmt.Sprintf("the Chaperone gateway's answer is larger than %d bytes", tl.limit)
	}
	return "reading the Chaperone gateway's answer: " + err.Error()
}

func (b *bridge) setAuth(h http.Header) {
	h.Set("Authorization", "Bearer "+b.currentToken())
	if b.opts.UserAgent != "" {
		h.Set("User-Agent", b.opts.UserAgent)
	}
}

// setSession records the session and protocol revision of a successful initialize, before
// its response is written: the client's next message may follow at once. The previous
// session's server-to-client stream stops.
func (b *bridge) setSession(sid, proto string) {
	if !validSessionID(sid) {
		if sid != "" {
			b.log.Warn("ignoring an invalid session id from the gateway")
		}
		sid = ""
	}
	if !validVersion(proto) {
		proto = ""
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.sessionID, b.protocol = sid, proto
	if b.stopListen != nil {
		b.stopListen()
		b.stopListen = nil
	}
}

// startListening opens the server-to-client stream of the current session, after the
// initialize response is written: nothing the server sends on its own may precede it.
func (b *bridge) startListening(base context.Context) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed || b.stopListen != nil {
		return
	}
	sid, proto := b.sessionID, b.protocol
	ctx, cancel := context.WithCancel(context.WithoutCancel(base))
	b.stopListen = cancel
	b.listeners.Add(1)
	go func() {
		defer b.listeners.Done()
		defer cancel()
		b.listen(ctx, sid, proto)
	}()
}

// close stops the server-to-client stream; none is opened afterwards.
func (b *bridge) close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	if b.stopListen != nil {
		b.stopListen()
		b.stopListen = nil
	}
}

// listen relays the server-to-client event stream (GET) of a session: notifications and
// requests the gateway sends on its own. A gateway that offers none answers 405, and the
// bridge does without. A stream that ends is reopened, resuming after its last event;
// after maxStreamFailures attempts in a row that bring nothing, the bridge gives up.
func (b *bridge) listen(ctx context.Context, sid, proto string) {
	var lastID string
	failures := 0
	for {
		n, stop := b.openStream(ctx, sid, proto, &lastID)
		if stop || ctx.Err() != nil {
			return
		}
		if n > 0 {
			failures = 0
		} else if failures++; failures >= maxStreamFailures {
			b.log.Warn("server-to-client stream given up", "attempts", failures)
			return
		}
		t := time.NewTimer(b.opts.StreamRetryDelay)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// openStream opens the GET stream once and relays its messages. It returns how many
// messages it relayed, and stop when the stream must not be reopened.
func (b *bridge) openStream(ctx context.Context, sid, proto string, lastID *string) (n int, stop bool) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, b.url, nil)
	if err != nil {
		return 0, true
	}
	b.setAuth(req.Header)
	req.Header.Set("Accept", "text/event-stream")
	if sid != "" {
		req.Header.Set("Mcp-Session-Id", sid)
	}
	if proto != "" {
		req.Header.Set("Mcp-Protocol-Version", proto)
	}
	if *lastID != "" {
		req.Header.Set("Last-Event-ID", *lastID)
	}
	resp, err := b.client.Do(req)
	if err != nil {
		if ctx.Err() == nil {
			b.log.Warn("server-to-client stream not opened", "reason", b.sendError(ctx, err))
		}
		return 0, false
	}
	defer resp.Body.Close()
	ct, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	switch {
	case resp.StatusCode == http.StatusMethodNotAllowed:
		return 0, true // the gateway sends nothing on its own
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		b.log.Warn("server-to-client stream not opened", "reason", "the gateway refused the bearer token", "status", resp.StatusCode)
		return 0, true
	case resp.StatusCode == http.StatusNotFound:
		return 0, true // the session is over; the next initialize opens a new stream
	case resp.StatusCode/100 != 2 || ct != "text/event-stream":
		b.log.Warn("server-to-client stream not opened", "status", resp.StatusCode, "content_type", truncate(ct, 64))
		return 0, false
	}
	sr := newSSEReader(resp.Body, b.opts.MaxMessageBytes)
	for {
		ev, err := sr.next()
		if err != nil {
			if !errors.Is(err, io.EOF) && ctx.Err() == nil {
				b.log.Warn("server-to-client stream broken", "err", err)
			}
			return n, false
		}
		if ev.hasID {
			*lastID = ev.id
		}
		if !ev.isMessage() {
			continue
		}
		if b.write(nil, ev.data) != nil {
			b.log.Warn("event stream message dropped", "reason", "not valid JSON")
			continue
		}
		n++
	}
}

// deleteSession ends the gateway session, best effort.
func (b *bridge) deleteSession(ctx context.Context) {
	sid, proto := b.session()
	if sid == "" {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, deleteTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodDelete, b.url, nil)
	if err != nil {
		return
	}
	b.setAuth(req.Header)
	req.Header.Set("Mcp-Session-Id", sid)
	if proto != "" {
		req.Header.Set("Mcp-Protocol-Version", proto)
	}
	resp, err := b.client.Do(req)
	if err != nil {
		b.log.Warn("session not ended", "reason", b.sendError(ctx, err))
		return
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxErrorBodyBytes))
	resp.Body.Close()
	// 404: already gone; 405: the server does not let clients end sessions.
	if resp.StatusCode/100 != 2 && resp.StatusCode != http.StatusNotFound && resp.StatusCode != http.StatusMethodNotAllowed {
		b.log.Warn("session not ended", "status", resp.StatusCode)
	}
}

// waitTimeout waits for wg at most d and reports whether it finished.
func waitTimeout(wg *sync.WaitGroup, d time.Duration) bool {
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-t.C:
		return false
	}
}

// truncate shortens s to at most n bytes, on a rune boundary, for messages.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
