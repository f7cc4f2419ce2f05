package upstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os/exec"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/chaperone-dev/chaperone/internal/telemetry"
)

// ErrUnavailable is returned (wrapped) by [Client.Call] and [Client.Tools] when the
// upstream is not connected or the transport failed during the request. The call may or
// may not have reached the upstream when the transport failed mid-request.
var ErrUnavailable = errors.New("upstream unavailable")

const (
	// clientName and clientVersion are sent to upstreams as clientInfo.
	clientName    = "chaperone"
	clientVersion = "0.1.0-dev"
	// protocolVersion is the MCP version offered to upstreams. 2025-11-25 is the newest
	// version with stateful sessions. Offering 2026-07-28 (the SDK's default) makes the SDK
	// probe with server/discover and, where accepted, switch to SEP-2575 behaviour: tool
	// lists served from a client-side TTL cache, and list_changed delivered through a
	// subscriptions/listen request that is registered asynchronously after Connect returns,
	// so a change right after connecting is lost (seen in tests against the SDK's own
	// server). Upstreams that only speak an older version negotiate down as usual.
	protocolVersion = "2025-11-25"
	// stableAfter is how long a connection must stay up for the backoff to reset.
	stableAfter = 30 * time.Second
	// maxIdleConns is how many keep-alive connections to a streamable-HTTP upstream stay
	// open between calls.
	maxIdleConns = 256
	// maxToolPages bounds the pages Tools follows, against an upstream that never stops
	// handing out cursors.
	maxToolPages = 100
)

// Tool is a tool as the upstream describes it.
type Tool struct {
	Name        string
	Description string
	// InputSchema is exactly the JSON the upstream sent (see "Raw JSON" in the package
	// documentation), or nil if the upstream sent none.
	InputSchema json.RawMessage
	// OutputSchema is the JSON of the tool's outputSchema as the upstream sent it, or nil.
	OutputSchema json.RawMessage
	// Annotations is the upstream's raw annotations object, or nil.
	Annotations json.RawMessage
	Title       string
}

// Client is a supervised connection to one upstream MCP server. Its methods are safe for
// concurrent use.
type Client struct {
	cfg     Config
	log     *slog.Logger
	sdk     *mcp.Client
	env     []string          // stdio: the child's environment
	http    *http.Client      // streamable HTTP: the SDK's traffic; direct calls when direct is nil
	pool    *http.Transport   // c.http's connections
	direct  http.RoundTripper // streamable HTTP over http://: direct calls (h1.go); else nil
	h1      *h1Transport      // direct's connections
	changed chan struct{}     // capacity 1: the tool list may have changed

	sess atomic.Pointer[session] // the live session; nil while disconnected

	mu sync.Mutex
	// The fields below are guarded by mu.
	ready   chan struct{}      // closed while connected
	started bool               // Run was called
	closed  bool               // Close was called
	stop    context.CancelFunc // cancels Run; nil unless Run is running
	done    chan struct{}      // closed when Run returns
}

// session is one connection to the upstream.
type session struct {
	cs      *mcp.ClientSession
	capture *captureConn       // stdio and in-process; nil for HTTP
	ss      *mcp.ServerSession // in-process only
	cmd     *exec.Cmd          // stdio only
	stderr  *lineLogger        // stdio only
	http    *httpSession       // streamable HTTP only: where calls go directly
}

// release forgets the raw-capture registrations of a finished request.
func (s *session) release(slot *rawSlot) {
	if s.capture != nil {
		s.capture.release(slot)
	}
}

// New validates cfg and returns a Client for it. It does not connect: call [Client.Run].
func New(cfg Config) (*Client, error) {
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("upstream %q: %w", cfg.Name, err)
	}
	cfg = cfg.withDefaults()
	c := &Client{
		cfg:     cfg,
		log:     cfg.Logger,
		changed: make(chan struct{}, 1),
		ready:   make(chan struct{}),
		done:    make(chan struct{}),
	}
	c.sdk = mcp.NewClient(&mcp.Implementation{Name: clientName, Version: clientVersion}, &mcp.ClientOptions{
		Logger: cfg.Logger,
		// Advertise nothing: no roots, sampling or elicitation are bridged to upstreams.
		Capabilities: &mcp.ClientCapabilities{},
		ToolListChangedHandler: func(context.Context, *mcp.ToolListChangedRequest) {
			c.toolsChanged()
		},
	})
	switch {
	case cfg.Command != "":
		c.env = childEnv(cfg.Env)
	case cfg.URL != "":
		u, _ := url.Parse(cfg.URL) // validated
		tr := http.DefaultTransport.(*http.Transport).Clone()
		// Every concurrent call holds a connection: keep as many idle as calls are likely
		// to run at once, or each burst closes and re-dials (the default keeps two).
		tr.MaxIdleConnsPerHost = maxIdleConns
		tr.MaxIdleConns = maxIdleConns
		c.pool = tr
		c.http = &http.Client{
			Transport: c.wrapTransport(tr, u),
			// A redirect would carry the request (and, through httpTransport, headers)
			// elsewhere; MCP endpoints have no reason to redirect.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
		// Direct calls over plain http:// run on the calling goroutine (h1.go), unless a
		// proxy applies, which only net/http speaks. The RoundTripper is called as is: like
		// c.http, it follows no redirects.
		if proxy, err := tr.Proxy(&http.Request{URL: u}); u.Scheme == "http" && proxy == nil && err == nil {
			c.h1 = newH1Transport(maxIdleConns)
			c.direct = c.wrapTransport(c.h1, u)
		}
	}
	return c, nil
}

// wrapTransport adds to base what every HTTP request to the upstream gets: the
// credentials, the configured headers and raw-result capture.
func (c *Client) wrapTransport(base http.RoundTripper, u *url.URL) http.RoundTripper {
	if c.cfg.Credentials != nil {
		base = c.cfg.Credentials(base)
	}
	return &httpTransport{base: base, scheme: u.Scheme, host: u.Host, headers: c.cfg.Headers}
}

// Name returns the upstream's name.
func (c *Client) Name() string { return c.cfg.Name }

// Ready reports whether the upstream is connected now.
func (c *Client) Ready() bool { return c.sess.Load() != nil }

// WaitReady waits until the upstream is connected or ctx is done, and returns ctx's error
// in the latter case.
func (c *Client) WaitReady(ctx context.Context) error {
	c.mu.Lock()
	ready := c.ready
	c.mu.Unlock()
	select {
	case <-ready:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Run connects to the upstream and keeps it connected until ctx is done or [Client.Close]
// is called, then closes the session, stops the child and returns nil. Run may be called
// once; it returns an error only for a second call.
func (c *Client) Run(ctx context.Context) error {
	c.mu.Lock()
	if c.started {
		c.mu.Unlock()
		return fmt.Errorf("upstream %q: Run called twice", c.cfg.Name)
	}
	c.started = true
	if c.closed {
		c.mu.Unlock()
		close(c.done)
		return nil
	}
	ctx, cancel := context.WithCancel(ctx)
	c.stop = cancel
	c.mu.Unlock()

	var wg sync.WaitGroup
	if c.cfg.OnToolsChanged != nil {
		wg.Go(func() { c.notifyLoop(ctx) })
	}
	c.supervise(ctx)
	cancel()
	wg.Wait()
	// Closed on the transports themselves: httpTransport has no CloseIdleConnections, so
	// c.http.CloseIdleConnections would do nothing.
	if c.pool != nil {
		c.pool.CloseIdleConnections()
	}
	if c.h1 != nil {
		c.h1.CloseIdleConnections()
	}
	close(c.done)
	return nil
}

// Close stops Run, if it is running, and waits for it to return. It must not be called
// from OnToolsChanged.
func (c *Client) Close() error {
	c.mu.Lock()
	c.closed = true
	stop, started := c.stop, c.started
	c.mu.Unlock()
	if stop != nil {
		stop()
	}
	if started {
		<-c.done
	}
	return nil
}

// supervise connects, waits for the session to end, and reconnects with backoff, until
// ctx is done.
func (c *Client) supervise(ctx context.Context) {
	backoff := c.cfg.InitialBackoff
	for {
		up, err := c.runSession(ctx)
		if ctx.Err() != nil {
			return
		}
		if up >= stableAfter {
			backoff = c.cfg.InitialBackoff
		}
		delay := jitter(backoff, rand.Float64())
		if up > 0 {
			c.log.WarnContext(ctx, "upstream disconnected", "err", err, "connected_for", up.Round(time.Millisecond), "retry_in", delay)
		} else {
			c.log.WarnContext(ctx, "upstream connect failed", "err", err, "retry_in", delay)
		}
		backoff = min(2*backoff, c.cfg.MaxBackoff)

		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// jitter spreads d over [d/2, d] with r in [0, 1), so that many upstreams (or gateways)
// that failed together do not retry in lockstep. Not security-relevant: math/rand is fine.
func jitter(d time.Duration, r float64) time.Duration {
	return d/2 + time.Duration(r*float64(d-d/2))
}

// runSession connects once and returns when the session has ended, with how long it was
// connected (0 if connecting failed) and why it ended (nil when ctx is done).
func (c *Client) runSession(ctx context.Context) (time.Duration, error) {
	s, err := c.connect(ctx)
	if err != nil {
		return 0, err
	}
	start := time.Now()
	c.setSession(s)
	ir := s.cs.InitializeResult()
	attrs := []any{"transport", c.transport(), "protocol_version", ir.ProtocolVersion}
	if ir.ServerInfo != nil {
		attrs = append(attrs, "server_name", ir.ServerInfo.Name, "server_version", ir.ServerInfo.Version)
	}
	c.log.InfoContext(ctx, "upstream connected", attrs...)
	c.toolsChanged()

	ended := make(chan error, 1)
	go func() { ended <- s.cs.Wait() }() // returns once the connection is closed; received below

	select {
	case err = <-ended:
		c.setSession(nil)
		if err == nil {
			err = errors.New("session closed by upstream")
		}
	case <-ctx.Done():
		c.setSession(nil)
		c.shutdown(s, ended)
		err = nil
	}
	_ = s.cs.Close() // idempotent; returns at once now that the connection is done
	if s.ss != nil {
		_ = s.ss.Close()
	}
	if s.cmd != nil {
		signalGroup(s.cmd, syscall.SIGKILL) // grandchildren of a child that died
		s.stderr.flush()
	}
	return time.Since(start), err
}

// shutdown ends a live session because Run is stopping, and waits until it has ended.
func (c *Client) shutdown(s *session, ended <-chan error) {
	switch {
	case s.cmd != nil:
		// Ask the whole group to stop, then insist. The connection ends when the child's
		// stdout closes, which also fails its in-flight calls.
		signalGroup(s.cmd, syscall.SIGTERM)
		t := time.NewTimer(terminateGrace)
		defer t.Stop()
		select {
		case <-ended:
			return
		case <-t.C:
		}
		signalGroup(s.cmd, syscall.SIGKILL)
	case s.ss != nil:
		// Close the client end of the in-memory pipe: both sides see EOF, which fails
		// in-flight calls and cancels in-flight handlers. (ServerSession.Close would
		// wait for handlers, and subscriptions/listen never ends on its own.)
		_ = s.capture.Close()
	default:
		// Streamable HTTP: Close waits for in-flight calls (each bounded by CallTimeout),
		// then ends the HTTP session.
		_ = s.cs.Close()
	}
	<-ended
}

// connect starts one session, within ConnectTimeout.
func (c *Client) connect(ctx context.Context) (*session, error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.ConnectTimeout)
	defer cancel()
	switch {
	case c.cfg.Server != nil:
		st, ct := mcp.NewInMemoryTransports()
		ss, err := c.cfg.Server.Connect(ctx, st, nil)
		if err != nil {
			return nil, fmt.Errorf("connect in-process server: %w", err)
		}
		t := &captureTransport{inner: ct}
		cs, err := c.sdk.Connect(ctx, t, &mcp.ClientSessionOptions{ProtocolVersion: protocolVersion})
		if err != nil {
			if t.conn != nil {
				_ = t.conn.Close()
			}
			_ = ss.Close()
			return nil, fmt.Errorf("initialize: %w", err)
		}
		return &session{cs: cs, capture: t.conn, ss: ss}, nil

	case c.cfg.Command != "":
		stderr := &lineLogger{log: c.log}
		cmd := c.command(stderr)
		if c.cfg.SecretEnv != nil {
			extra, err := c.cfg.SecretEnv(ctx)
			if err != nil {
				return nil, fmt.Errorf("start %s: credentials: %w", c.cfg.Command, err)
			}
			cmd.Env = append(slices.Clip(cmd.Env), extra...)
		}
		t := &captureTransport{inner: &mcp.CommandTransport{Command: cmd, TerminateDuration: terminateGrace}}
		cs, err := c.sdk.Connect(ctx, t, &mcp.ClientSessionOptions{ProtocolVersion: protocolVersion})
		if err != nil {
			signalGroup(cmd, syscall.SIGKILL)
			stderr.flush()
			return nil, fmt.Errorf("start %s: %w", c.cfg.Command, err)
		}
		return &session{cs: cs, capture: t.conn, cmd: cmd, stderr: stderr}, nil

	default:
		t := &mcp.StreamableClientTransport{Endpoint: c.cfg.URL, HTTPClient: c.http}
		cs, err := c.sdk.Connect(ctx, t, &mcp.ClientSessionOptions{ProtocolVersion: protocolVersion})
		if err != nil {
			return nil, fmt.Errorf("connect %s: %w", safeURL(c.cfg.URL), err)
		}
		return &session{cs: cs, http: &httpSession{id: cs.ID(), proto: cs.InitializeResult().ProtocolVersion}}, nil
	}
}

func (c *Client) transport() string {
	switch {
	case c.cfg.Server != nil:
		return "in-process"
	case c.cfg.Command != "":
		return "stdio"
	default:
		return "streamable-http"
	}
}

// setSession publishes the live session (nil: disconnected).
func (c *Client) setSession(s *session) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sess.Store(s)
	if s != nil {
		close(c.ready)
	} else {
		c.ready = make(chan struct{})
	}
}

// toolsChanged schedules a call of OnToolsChanged. It never blocks: it may run on the
// SDK's message-handling goroutine, which OnToolsChanged's own tools/list needs.
func (c *Client) toolsChanged() {
	select {
	case c.changed <- struct{}{}:
	default: // one is already pending, and will see this change too
	}
}

func (c *Client) notifyLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.changed:
			c.cfg.OnToolsChanged()
		}
	}
}

// Tools returns the upstream's full tool list (all pages) from the live server, within
// CallTimeout. Errors wrap [ErrUnavailable] when the upstream is not connected or the
// transport failed, and ctx's error when the deadline passed or ctx was cancelled.
func (c *Client) Tools(ctx context.Context) ([]Tool, error) {
	const op = "list tools"
	s := c.sess.Load()
	if s == nil {
		return nil, fmt.Errorf("upstream %q: %s: %w", c.cfg.Name, op, ErrUnavailable)
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.CallTimeout)
	defer cancel()

	var tools []Tool
	seen := map[string]bool{}
	params := &mcp.ListToolsParams{}
	for range maxToolPages {
		slot := new(rawSlot)
		res, err := s.cs.ListTools(withSlot(ctx, slot), params)
		s.release(slot)
		if err != nil {
			return nil, c.requestError(ctx, op, err)
		}
		page, err := toolsFromPage(slot.get(), res)
		if err != nil {
			return nil, fmt.Errorf("upstream %q: %s: %w", c.cfg.Name, op, err)
		}
		tools = append(tools, page...)
		if res.NextCursor == "" {
			return tools, nil
		}
		if seen[res.NextCursor] {
			return nil, fmt.Errorf("upstream %q: %s: cursor repeated", c.cfg.Name, op)
		}
		seen[res.NextCursor] = true
		params = &mcp.ListToolsParams{Cursor: res.NextCursor}
	}
	return nil, fmt.Errorf("upstream %q: %s: more than %d pages", c.cfg.Name, op, maxToolPages)
}

// toolsFromPage builds the tools of one tools/list page from its raw result, keeping only
// the tools the SDK kept (it drops tools with invalid x-mcp-header annotations, which it
// would refuse to call). Without a raw result it marshals the SDK's values.
func toolsFromPage(raw json.RawMessage, res *mcp.ListToolsResult) ([]Tool, error) {
	if raw == nil {
		tools := make([]Tool, 0, len(res.Tools))
		for _, t := range res.Tools {
			tool := Tool{Name: t.Name, Title: t.Title, Description: t.Description}
			if t.InputSchema != nil {
				b, err := json.Marshal(t.InputSchema)
				if err != nil {
					return nil, fmt.Errorf("tool %q: input schema: %w", t.Name, err)
				}
				tool.InputSchema = b
			}
			if t.OutputSchema != nil {
				b, err := json.Marshal(t.OutputSchema)
				if err != nil {
					return nil, fmt.Errorf("tool %q: output schema: %w", t.Name, err)
				}
				tool.OutputSchema = b
			}
			if t.Annotations != nil {
				b, err := json.Marshal(t.Annotations)
				if err != nil {
					return nil, fmt.Errorf("tool %q: annotations: %w", t.Name, err)
				}
				tool.Annotations = b
			}
			tools = append(tools, tool)
		}
		return tools, nil
	}

	var page struct {
		Tools []struct {
			Name         string          `json:"name"`
			Title        string          `json:"title"`
			Description  string          `json:"description"`
			InputSchema  json.RawMessage `json:"inputSchema"`
			OutputSchema json.RawMessage `json:"outputSchema"`
			Annotations  json.RawMessage `json:"annotations"`
		} `json:"tools"`
	}
	if err := json.Unmarshal(raw, &page); err != nil {
		return nil, fmt.Errorf("decode result: %w", err)
	}
	kept := make(map[string]bool, len(res.Tools))
	for _, t := range res.Tools {
		kept[t.Name] = true
	}
	tools := make([]Tool, 0, len(res.Tools))
	for _, t := range page.Tools {
		if !kept[t.Name] {
			continue
		}
		tool := Tool{Name: t.Name, Title: t.Title, Description: t.Description, InputSchema: t.InputSchema,
			OutputSchema: t.OutputSchema, Annotations: t.Annotations}
		if string(tool.InputSchema) == "null" {
			tool.InputSchema = nil
		}
		if string(tool.OutputSchema) == "null" {
			tool.OutputSchema = nil
		}
		if string(tool.Annotations) == "null" {
			tool.Annotations = nil
		}
		tools = append(tools, tool)
	}
	return tools, nil
}

// Call calls tools/call within CallTimeout and returns the raw JSON of the upstream's
// CallToolResult (content, structuredContent, isError, ...). A tool-level error
// (isError: true) is a successful return. args is sent verbatim; nil means {}.
//
// Errors wrap [ErrUnavailable] when the upstream is not connected or the transport failed,
// ctx's error when the deadline passed or ctx was cancelled, and otherwise the upstream's
// JSON-RPC error (a *jsonrpc.Error, e.g. for an unknown tool).
//
// On streamable HTTP the call is one POST on the SDK's session, read directly (see
// httpcall.go); results larger than 16 MiB are refused. Stdio and in-process upstreams go
// through the SDK.
func (c *Client) Call(ctx context.Context, tool string, args json.RawMessage) (json.RawMessage, error) {
	s := c.sess.Load()
	if s == nil {
		return nil, fmt.Errorf("upstream %q: call tool %q: %w", c.cfg.Name, tool, ErrUnavailable)
	}
	if s.http != nil {
		return c.callHTTP(ctx, s, tool, args)
	}
	params := &mcp.CallToolParams{Name: tool}
	if tc := telemetry.ToMeta(ctx); tc != nil {
		// The upstream joins the caller's trace (the MCP semantic conventions carry W3C
		// trace context in params._meta).
		params.Meta = mcp.Meta{}
		for k, v := range tc {
			params.Meta[k] = v
		}
	}
	if len(args) > 0 {
		// Checked here so that malformed arguments are not mistaken for a transport
		// failure when the SDK fails to marshal them.
		if !json.Valid(args) {
			return nil, fmt.Errorf("upstream %q: call tool %q: arguments are not valid JSON", c.cfg.Name, tool)
		}
		params.Arguments = args
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.CallTimeout)
	defer cancel()

	slot := new(rawSlot)
	res, err := s.cs.CallTool(withSlot(ctx, slot), params)
	s.release(slot)
	raw := slot.get()
	if err != nil {
		var wireErr *jsonrpc.Error
		if raw != nil && ctx.Err() == nil && !errors.As(err, &wireErr) {
			// The upstream answered, but the SDK could not decode the result (e.g. a
			// content type it does not know). The raw result is what we pass on anyway.
			c.log.DebugContext(ctx, "passing through a result the SDK could not decode", "tool", tool, "err", err)
			return raw, nil
		}
		return nil, c.requestError(ctx, fmt.Sprintf("call tool %q", tool), err)
	}
	if raw == nil {
		if raw, err = json.Marshal(res); err != nil {
			return nil, fmt.Errorf("upstream %q: call tool %q: encode result: %w", c.cfg.Name, tool, err)
		}
	}
	return raw, nil
}

// requestError classifies the error of a request made with ctx.
func (c *Client) requestError(ctx context.Context, op string, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil {
		return fmt.Errorf("upstream %q: %s: %w", c.cfg.Name, op, ctxErr)
	}
	var wireErr *jsonrpc.Error
	if errors.As(err, &wireErr) && !isTransportCode(wireErr.Code) {
		return fmt.Errorf("upstream %q: %s: %w", c.cfg.Name, op, err)
	}
	return fmt.Errorf("upstream %q: %s: %w: %w", c.cfg.Name, op, ErrUnavailable, err)
}

// isTransportCode reports whether a JSON-RPC error code is one the SDK uses for its own
// connection state (client or server closing, rejected by the transport) rather than an
// answer from the upstream.
func isTransportCode(code int64) bool {
	return code == -32003 || code == -32004 || code == -32005
}
