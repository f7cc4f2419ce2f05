// Package egress is the HTTP forward proxy that agents and sandboxes use for their own web
// requests: they are pointed at it with HTTP_PROXY and HTTPS_PROXY, and every request they
// make goes through the same checks and the same audit as a tool call.
//
// # What it guarantees
//
//   - Every request is authenticated: the agent's token comes in Proxy-Authorization,
//     as "Bearer <token>" or as the password of "Basic" credentials (what curl -U and
//     HTTP_PROXY=http://agent:token@host send). A missing or refused credential gets 407
//     with a Proxy-Authenticate challenge; the token is never logged, put in an error or
//     passed to any callback other than [Options].Authenticate.
//   - Deny by default: a request is allowed only when one of the agent's [Rule]s allows
//     its host, method and port together. Host names no rule lists are refused without
//     being looked up.
//   - No server-side request forgery: the host is resolved BEFORE the decision, and
//     refused if ANY of its addresses is private, loopback, link-local, metadata or
//     otherwise special ([inspect.PrivateAddr]) and not covered by
//     [Options].AllowPrivate; literal addresses likewise, in any notation a client might
//     use (only dotted-decimal IPv4 is accepted; other numeric forms are refused). The
//     proxy then connects only to the addresses it vetted and never resolves the name
//     again, so rebinding the name in between reaches nothing. The dialer re-checks the
//     address it connects to.
//   - Redirects are never followed: a 3xx goes back to the agent, whose request to the
//     Location is a new request, authenticated, allow-listed and vetted like the first.
//   - Every request the allow-list passes goes through [Options].Decide (the gateway's
//     policy pipeline), which audits it and may refuse it; every request the proxy
//     refuses itself is reported to [Options].Refused.
//   - Plain HTTP is forwarded without hop-by-hop headers (Connection and the headers it
//     names, Proxy-Authorization, Proxy-Authenticate, Proxy-Connection, Keep-Alive, TE,
//     Trailer, Transfer-Encoding, Upgrade), with the Host header set from the URL, bodies
//     streamed both ways without buffering, status and headers preserved, and bounded
//     response header size and wait; an origin's Chaperone-Refusal header is dropped, so
//     it cannot pass for the gateway. Credentials from [Options].Inject replace the
//     agent's own headers of the same names (so the agent's Authorization is dropped only
//     when Inject sets one); they never reach the agent from the proxy, nor its logs.
//   - HTTPS uses CONNECT: the host and port are allow-listed and vetted, then the proxy
//     connects to the vetted address, answers "200 Connection established" and relays
//     bytes both ways until either side ends, the tunnel is silent for
//     [Options].IdleTimeout, forward's context ends or [Proxy.Close] is called.
//   - Everything is bounded: header sizes, token and header lengths, addresses per name,
//     open tunnels, dial, lookup, response-header and idle times. Errors to the agent are
//     one sentence in {"error": {"code": "...", "message": "..."}} with the code also in
//     the Chaperone-Refusal header, never internal details.
//
// # What it assumes
//
//   - The proxy is the http.Server's handler itself, not mounted on a ServeMux (which
//     would mangle absolute-form and CONNECT requests); the server sets
//     DisableGeneralOptionsHandler (or it answers "OPTIONS *" itself) and bounds header
//     read time. The agent's sandbox cannot reach the network except through the proxy.
//
// # What it does not do
//
//   - It does not intercept TLS: methods, paths and bodies inside a tunnel are not seen,
//     so [Rule].Methods constrain plain HTTP only, and credentials are never injected
//     into tunnels. Tunnels to port 80 are refused, so that plain HTTP there goes through
//     the checks; on other ports a tunnel may carry anything, so allow a host only the
//     ports it needs.
//   - It does not support CONNECT over HTTP/2, protocol upgrades (WebSocket over plain
//     HTTP), trailers, or https URLs in absolute form (https goes through CONNECT).
//   - It does not rate-limit, record audit events or evaluate policy itself: Decide and
//     Refused do. It does not scan bodies, and cannot stop an origin that echoes an
//     injected credential back in its response.
//   - It does not stop DNS as a channel inside an allowed wildcard ("*.example.com"
//     names chosen by the agent are looked up); list exact names where that matters.
//   - The query string is forwarded but left out of [Request].URL, since it may carry
//     secrets; the path is kept.
package egress

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/chaperone-dev/chaperone/internal/identity"
	"github.com/chaperone-dev/chaperone/internal/inspect"
)

// Refusal codes the proxy itself sends, in the body and the [RefusalHeader] header, and
// passes to [Options].Refused.
const (
	// CodeBadRequest: not a proxy request, or a malformed one (400, 431).
	CodeBadRequest = "bad_request"
	// CodeUnauthenticated: credentials missing or refused (407).
	CodeUnauthenticated = "unauthenticated"
	// CodeEgressDenied: not on the agent's allow-list, or a private or metadata address
	// (403).
	CodeEgressDenied = "egress_denied"
	// CodeResolveFailed: the host name did not resolve, or not in time (502).
	CodeResolveFailed = "resolve_failed"
	// CodeUnsupported: CONNECT over HTTP/2 (501).
	CodeUnsupported = "unsupported"
	// CodeBusy: too many open tunnels, or the proxy is closing (503).
	CodeBusy = "busy"
)

// Codes of failures after the decision, sent to the agent by forward (and returned to
// Decide as errors), and the code of a [Refusal] without a valid one.
const (
	// CodeUpstream: the upstream server could not be reached or answered badly (502).
	CodeUpstream = "upstream_error"
	// CodeUpstreamTimeout: the upstream server did not answer in time (504).
	CodeUpstreamTimeout = "upstream_timeout"
	// CodeInternal: the gateway failed (500), e.g. Decide allowed without forwarding.
	CodeInternal = "internal_error"
	// CodeRefused replaces a [Refusal] code that is not lower-case letters, digits and
	// underscores.
	CodeRefused = "refused"
)

// RefusalHeader carries the code of every error response the proxy writes.
const RefusalHeader = "Chaperone-Refusal"

// ProxyAuthenticate is the challenge sent with every 407.
const ProxyAuthenticate = `Bearer realm="chaperone", Basic realm="chaperone"`

// Defaults and bounds of [Options].
const (
	DefaultDialTimeout           = 10 * time.Second
	DefaultIdleTimeout           = 2 * time.Minute
	DefaultResponseHeaderTimeout = 30 * time.Second
	DefaultMaxHeaderBytes        = 64 << 10
	DefaultMaxTunnels            = 1024
	// MaxHeaderBytesLimit is the largest MaxHeaderBytes accepted.
	MaxHeaderBytesLimit = 16 << 20
	// MaxTokenBytes bounds the token in Proxy-Authorization (access tokens are JWTs).
	MaxTokenBytes = 16 << 10
	// maxAuthorizationBytes bounds the Proxy-Authorization value: a Basic encoding of a
	// MaxTokenBytes token and a user name.
	maxAuthorizationBytes = 24 << 10
	// maxURLBytes bounds [Request].URL; longer paths are cut and end in "...".
	maxURLBytes = 2048
	// maxMessageBytes bounds the message of a [Refusal] sent to the agent.
	maxMessageBytes = 300
	// bufSize is the relay buffer size.
	bufSize = 32 << 10
)

// Options configures a [Proxy]. Authenticate and Decide are required.
type Options struct {
	// Authenticate checks the agent's credential. It is given "Bearer <token>" whatever
	// form the agent used: Proxy-Authorization "Bearer <token>", or "Basic" credentials
	// with the token as the password (the user name is ignored). It returns the
	// principal, or an error to refuse (407).
	Authenticate func(ctx context.Context, authorization string) (*identity.Principal, error)
	// Rules is the allow-list; see [Rule]. An agent no rule names may reach nothing.
	Rules []Rule
	// Decide runs a request the allow-list passed through the gateway's policy pipeline:
	// it returns nil to allow, having called forward exactly once, or a *Refusal, without
	// having called it. forward performs the upstream exchange and writes the response to
	// the agent, bounded by its ctx; it returns the status and byte counts for the audit
	// log, and an error when the exchange failed (the agent has then been sent a 502 or
	// 504). forward must be called before Decide returns; calling it again, or after
	// Decide returned, does nothing and returns an error.
	Decide func(ctx context.Context, r *Request, forward func(ctx context.Context) (Result, error)) *Refusal
	// Refused is told about every request the proxy refuses itself (malformed, not
	// authenticated, not on the allow-list, private address, unresolvable, busy), for the
	// audit log: code is one of the Code constants and reason says precisely why. It may
	// be nil.
	Refused func(ctx context.Context, r *Request, code, reason string)
	// Inject sets upstream credentials on a plain-HTTP request to an allowed host: the
	// headers it sets in h replace the agent's headers of the same names. It returns
	// the credentials' labels (for the audit log), never their values. It is never
	// called for CONNECT. nil injects nothing.
	Inject func(ctx context.Context, r *Request, h http.Header) ([]string, error)
	// Resolver looks up host names; nil means net.DefaultResolver.
	Resolver inspect.Resolver
	// AllowPrivate lists private, loopback, link-local or metadata ranges that may be
	// reached anyway (tests, a sidecar); every other such address is refused.
	AllowPrivate []netip.Prefix
	// DialTimeout bounds a name lookup and a connection (default 10s).
	DialTimeout time.Duration
	// IdleTimeout ends an exchange or tunnel silent that long, in both directions
	// (default 2m).
	IdleTimeout time.Duration
	// ResponseHeaderTimeout bounds the wait for an upstream's response headers (default
	// 30s).
	ResponseHeaderTimeout time.Duration
	// MaxHeaderBytes bounds the agent's request line and headers and the upstream's
	// response headers (default 64 KiB, at most 16 MiB).
	MaxHeaderBytes int
	// MaxTunnels bounds the CONNECT tunnels open at once (default 1024).
	MaxTunnels int
	// Logger receives diagnostics; nil discards them. Tokens, credentials and query
	// strings are never logged.
	Logger *slog.Logger
}

// Request is one request the proxy decides, as [Options].Decide, Inject and Refused see
// it. Fields the proxy had not established when it refused are zero.
type Request struct {
	// Principal is the authenticated caller; nil before authentication.
	Principal *identity.Principal
	// Method is the HTTP method; "CONNECT" for a tunnel.
	Method string
	// Scheme is "http", or "https" for a tunnel.
	Scheme string
	// Host is the destination host: lower-case, without a trailing dot, brackets or
	// port; an address in its canonical form.
	Host string
	// Port is the destination port.
	Port int
	// URL is the destination without user info and without the query string
	// ("http://api.example.com/v1/items"); for a tunnel, "https://host:port". Paths
	// longer than 2 KiB are cut and end in "...".
	URL string
	// QueryDropped reports that the request had a query string, forwarded but left out
	// of URL because it may carry secrets.
	QueryDropped bool
	// Connect reports a CONNECT tunnel.
	Connect bool
	// Addrs are the vetted addresses of Host, the only ones the proxy will connect to.
	Addrs []netip.Addr
	// Rule is the name of the rule that allowed the request.
	Rule string
}

// Result is what forward reports for the audit log.
type Result struct {
	// Status is the status sent to the agent (200 for an established tunnel).
	Status int
	// Bytes counts the body bytes relayed both ways (both directions of a tunnel).
	Bytes int64
	// Sent counts those of Bytes that went from the agent to the upstream.
	Sent int64
	// Injected lists the labels of the credentials Inject set.
	Injected []string
}

// Refusal is Decide's refusal, sent to the agent as {"error": {"code", "message"}}.
type Refusal struct {
	// Status is the HTTP status: 403 if zero or not an error status; 429 for rate limits.
	Status int
	// Code is a stable lower-case reason code ("policy_denied", "rate_limited");
	// CodeRefused if empty or not made of lower-case letters, digits and underscores.
	Code string
	// Message is one sentence for the agent, without internal details; it is cut to
	// 300 bytes.
	Message string
}

// Log attribute keys.
const (
	logAgent  = "agent"
	logHost   = "host"
	logPort   = "port"
	logMethod = "method"
	logCode   = "code"
	logReason = "reason"
	logStatus = "status"
)

// Proxy is the egress proxy, an http.Handler. It is safe for concurrent use.
type Proxy struct {
	authenticate func(context.Context, string) (*identity.Principal, error)
	decide       func(context.Context, *Request, func(context.Context) (Result, error)) *Refusal
	refused      func(context.Context, *Request, string, string)
	inject       func(context.Context, *Request, http.Header) ([]string, error)
	rules        *ruleSet
	resolver     inspect.Resolver
	allowPrivate []netip.Prefix
	dialTimeout  time.Duration
	idleTimeout  time.Duration
	maxHeader    int
	maxTunnels   int
	log          *slog.Logger
	dialer       *net.Dialer
	transport    *http.Transport
	bufs         sync.Pool // *[]byte of bufSize

	// mu guards closed and tunnels.
	mu      sync.Mutex
	closed  bool
	tunnels map[*tunnel]struct{}
}

var _ http.Handler = (*Proxy)(nil)

// New checks the options and compiles the rules, reporting every problem at once.
func New(o Options) (*Proxy, error) {
	var errs []error
	if o.Authenticate == nil {
		errs = append(errs, errors.New("authenticate: required"))
	}
	if o.Decide == nil {
		errs = append(errs, errors.New("decide: required: allowed requests go through the policy pipeline"))
	}
	var allow []netip.Prefix
	for i, ap := range o.AllowPrivate {
		switch {
		case !ap.IsValid():
			errs = append(errs, fmt.Errorf("allow_private[%d]: invalid prefix", i))
			continue
		case ap != ap.Masked():
			errs = append(errs, fmt.Errorf("allow_private[%d] %s: host bits set: want %s", i, ap, ap.Masked()))
			continue
		}
		if ap.Addr().Is4In6() && ap.Bits() >= 96 {
			ap = netip.PrefixFrom(ap.Addr().Unmap(), ap.Bits()-96)
		}
		allow = append(allow, ap)
	}
	rules, err := compileRules(o.Rules, allow)
	if err != nil {
		errs = append(errs, err)
	}
	duration := func(name string, d, def time.Duration) time.Duration {
		if d < 0 {
			errs = append(errs, fmt.Errorf("%s: %s is negative", name, d))
		}
		if d <= 0 {
			return def
		}
		return d
	}
	p := &Proxy{
		authenticate: o.Authenticate,
		decide:       o.Decide,
		refused:      o.Refused,
		inject:       o.Inject,
		rules:        rules,
		resolver:     o.Resolver,
		allowPrivate: allow,
		dialTimeout:  duration("dial_timeout", o.DialTimeout, DefaultDialTimeout),
		idleTimeout:  duration("idle_timeout", o.IdleTimeout, DefaultIdleTimeout),
		maxHeader:    o.MaxHeaderBytes,
		maxTunnels:   o.MaxTunnels,
		log:          o.Logger,
		tunnels:      map[*tunnel]struct{}{},
	}
	respTimeout := duration("response_header_timeout", o.ResponseHeaderTimeout, DefaultResponseHeaderTimeout)
	switch {
	case o.MaxHeaderBytes < 0:
		errs = append(errs, fmt.Errorf("max_header_bytes: %d is negative", o.MaxHeaderBytes))
	case o.MaxHeaderBytes > MaxHeaderBytesLimit:
		errs = append(errs, fmt.Errorf("max_header_bytes: %d, more than the %d allowed", o.MaxHeaderBytes, MaxHeaderBytesLimit))
	case o.MaxHeaderBytes == 0:
		p.maxHeader = DefaultMaxHeaderBytes
	}
	switch {
	case o.MaxTunnels < 0:
		errs = append(errs, fmt.Errorf("max_tunnels: %d is negative", o.MaxTunnels))
	case o.MaxTunnels == 0:
		p.maxTunnels = DefaultMaxTunnels
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if p.resolver == nil {
		p.resolver = net.DefaultResolver
	}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	p.dialer = &net.Dialer{Timeout: p.dialTimeout, KeepAlive: 30 * time.Second, ControlContext: p.control}
	p.transport = &http.Transport{
		Proxy:                  nil,
		DialContext:            p.transportDial,
		DisableCompression:     true, // relay the agent's Accept-Encoding and the body as they are
		MaxIdleConns:           256,
		MaxIdleConnsPerHost:    16,
		IdleConnTimeout:        90 * time.Second,
		ResponseHeaderTimeout:  respTimeout,
		ExpectContinueTimeout:  time.Second,
		MaxResponseHeaderBytes: int64(p.maxHeader),
	}
	p.bufs.New = func() any { b := make([]byte, bufSize); return &b }
	return p, nil
}

// Close refuses new requests, closes every open tunnel and the idle upstream
// connections. Plain-HTTP exchanges in flight end with the server's Shutdown.
func (p *Proxy) Close() error {
	p.mu.Lock()
	p.closed = true
	open := make([]*tunnel, 0, len(p.tunnels))
	for tn := range p.tunnels {
		open = append(open, tn)
	}
	p.mu.Unlock()
	for _, tn := range open {
		tn.close()
	}
	p.transport.CloseIdleConnections()
	return nil
}

// ServeHTTP handles one proxy request: an absolute-form http request or a CONNECT.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	req := &Request{Method: r.Method, Connect: r.Method == http.MethodConnect}
	if req.Connect {
		// A refused CONNECT ends the connection: what the client sends next was meant
		// for a tunnel. An established tunnel never sends these headers.
		w.Header().Set("Connection", "close")
	}
	if p.isClosed() {
		p.refuse(ctx, w, req, http.StatusServiceUnavailable, CodeBusy, "The proxy is shutting down.", "proxy closed")
		return
	}
	if n := headerBytes(r); n > p.maxHeader {
		p.refuse(ctx, w, req, http.StatusRequestHeaderFieldsTooLarge, CodeBadRequest,
			fmt.Sprintf("The request line and headers exceed %d bytes.", p.maxHeader),
			fmt.Sprintf("request line and headers of %d bytes, more than %d", n, p.maxHeader))
		return
	}
	t, rej := parseTarget(r.Method, r.RequestURI, r.ProtoMajor)
	if rej != nil {
		p.refuse(ctx, w, req, rej.status, rej.code, rej.message, rej.reason)
		return
	}
	req.Scheme, req.Host, req.Port = t.scheme, t.host, t.port
	req.URL, req.QueryDropped = t.auditURL()

	token, problem := parseProxyAuthorization(r.Header.Values("Proxy-Authorization"))
	if problem != "" {
		p.refuse(ctx, w, req, http.StatusProxyAuthRequired, CodeUnauthenticated,
			"Proxy authentication is required: send the agent token as a Bearer token or as the Basic password.", problem)
		return
	}
	principal, err := p.authenticate(ctx, "Bearer "+token)
	if err != nil || principal == nil || principal.Agent == nil {
		reason := "credential refused"
		if err != nil {
			reason += ": " + clip(err.Error(), 200)
		}
		p.refuse(ctx, w, req, http.StatusProxyAuthRequired, CodeUnauthenticated,
			"Proxy authentication failed: the credential was not accepted.", reason)
		return
	}
	req.Principal = principal

	rule, d := p.rules.check(principal.Agent.ID, t, r.Method)
	if d != nil {
		p.refuse(ctx, w, req, http.StatusForbidden, CodeEgressDenied, d.message, d.reason)
		return
	}
	req.Rule = rule

	v := p.resolve(ctx, t)
	if v.code != "" {
		p.refuse(ctx, w, req, v.status, v.code, v.message, v.reason)
		return
	}
	req.Addrs = slices.Clone(v.addrs)
	// forward dials v.addrs, not req.Addrs, which Decide could change.
	p.decideAndForward(ctx, w, r, t, req, v.addrs)
}

// errForwardUsed is returned by forward when it is called a second time or after Decide
// returned.
var errForwardUsed = errors.New("forward already called, or called after Decide returned")

// decideAndForward hands the request to Decide with a forward that works once.
func (p *Proxy) decideAndForward(ctx context.Context, w http.ResponseWriter, r *http.Request, t *target, req *Request, addrs []netip.Addr) {
	const (
		fresh = iota
		forwarding
		done
	)
	// Decide may change *req; what is logged and forwarded comes from before it.
	agent, host := req.Principal.Agent.ID, t.host
	var state atomic.Int32
	finished := make(chan struct{})
	forward := func(fctx context.Context) (Result, error) {
		if !state.CompareAndSwap(fresh, forwarding) {
			return Result{}, errForwardUsed
		}
		defer close(finished)
		if fctx == nil {
			fctx = ctx
		}
		if t.connect {
			return p.tunnel(fctx, w, t, addrs)
		}
		return p.forwardHTTP(fctx, w, r, t, req, addrs)
	}
	ref := p.decide(ctx, req, forward)
	if state.CompareAndSwap(fresh, done) {
		if ref == nil {
			p.log.LogAttrs(ctx, slog.LevelError, "decide allowed without forwarding",
				slog.String(logAgent, agent), slog.String(logHost, host))
			writeError(w, http.StatusInternalServerError, CodeInternal, "The gateway failed to complete the request.")
			return
		}
		status, code, msg := refusalParts(ref)
		p.log.LogAttrs(ctx, slog.LevelDebug, "egress refused by policy",
			slog.String(logAgent, agent), slog.String(logHost, host),
			slog.String(logCode, code), slog.Int(logStatus, status))
		writeError(w, status, code, msg)
		return
	}
	<-finished
	if ref != nil {
		p.log.LogAttrs(ctx, slog.LevelError, "decide refused after forwarding",
			slog.String(logAgent, agent), slog.String(logHost, host))
	}
}

// refusalParts normalises Decide's refusal.
func refusalParts(ref *Refusal) (int, string, string) {
	status := ref.Status
	if status < 400 || status > 599 {
		status = http.StatusForbidden
	}
	code := ref.Code
	if !validCode(code) {
		code = CodeRefused
	}
	msg := sentence(ref.Message)
	if msg == "" {
		msg = "The request was refused by policy."
	}
	return status, code, msg
}

// refuse reports a refusal of the proxy's own to Refused and the log, and answers it.
func (p *Proxy) refuse(ctx context.Context, w http.ResponseWriter, req *Request, status int, code, message, reason string) {
	if p.refused != nil {
		p.refused(ctx, req, code, reason)
	}
	agent := ""
	if req.Principal != nil && req.Principal.Agent != nil {
		agent = req.Principal.Agent.ID
	}
	p.log.LogAttrs(ctx, slog.LevelDebug, "egress refused",
		slog.String(logAgent, agent), slog.String(logMethod, clip(req.Method, 32)),
		slog.String(logHost, req.Host), slog.Int(logPort, req.Port),
		slog.String(logCode, code), slog.String(logReason, reason))
	writeError(w, status, code, message)
}

// errorBody is the JSON of an error response.
type errorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// writeError sends an error response.
func writeError(w http.ResponseWriter, status int, code, message string) {
	var b errorBody
	b.Error.Code, b.Error.Message = code, message
	body, err := json.Marshal(b)
	if err != nil { // a struct of two strings always marshals
		body = []byte(`{"error":{"code":"internal_error","message":"The gateway failed."}}`)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Content-Length", strconv.Itoa(len(body)+1))
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	h.Set(RefusalHeader, code)
	if status == http.StatusProxyAuthRequired {
		h.Set("Proxy-Authenticate", ProxyAuthenticate)
	}
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
}

// hopByHop are the headers that concern one connection, never forwarded.
var hopByHop = []string{
	"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authorization", "Proxy-Authenticate",
	"Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

// copyHeader copies src into dst without hop-by-hop headers and the headers src's
// Connection header names.
func copyHeader(dst, src http.Header) {
	var named map[string]bool
	for _, v := range src["Connection"] {
		for f := range strings.SplitSeq(v, ",") {
			if f = strings.TrimSpace(f); f != "" {
				if named == nil {
					named = map[string]bool{}
				}
				named[http.CanonicalHeaderKey(f)] = true
			}
		}
	}
	for k, vv := range src {
		if isHopByHop(k) || named[k] {
			continue
		}
		dst[k] = append([]string(nil), vv...)
	}
}

func isHopByHop(k string) bool {
	for _, h := range hopByHop {
		if strings.EqualFold(k, h) {
			return true
		}
	}
	return false
}

// headerBytes is the size of the request line and headers, roughly as received.
func headerBytes(r *http.Request) int {
	n := len(r.Method) + len(r.RequestURI) + len(r.Host) + 16
	for k, vv := range r.Header {
		for _, v := range vv {
			n += len(k) + len(v) + 4
		}
	}
	return n
}

// errIdle ends an exchange that was silent for the idle timeout.
var errIdle = errors.New("idle timeout")

// forwardHTTP performs a plain-HTTP exchange with the upstream and relays the response.
func (p *Proxy) forwardHTTP(ctx context.Context, w http.ResponseWriter, r *http.Request, t *target, req *Request, addrs []netip.Addr) (Result, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	idle := time.AfterFunc(p.idleTimeout, func() { cancel(errIdle) })
	defer idle.Stop()
	touch := func() { idle.Reset(p.idleTimeout) }

	hostPort := t.hostPort()
	ctx = context.WithValue(ctx, dialKey{}, &dialTarget{hostPort: hostPort, addrs: addrs, port: t.port})
	out, err := http.NewRequestWithContext(ctx, r.Method, "", nil)
	if err != nil { // the method was already accepted by the server; fail closed all the same
		writeError(w, http.StatusBadRequest, CodeBadRequest, "The request method is invalid.")
		return Result{Status: http.StatusBadRequest}, fmt.Errorf("forward %s: %w", hostPort, err)
	}
	out.URL = &url.URL{Scheme: "http", Host: t.urlHost(), Path: t.path, RawPath: t.rawPath, RawQuery: t.rawQuery}
	out.Host = t.urlHost()
	copyHeader(out.Header, r.Header)
	if _, ok := out.Header["User-Agent"]; !ok {
		out.Header.Set("User-Agent", "") // not Go's default
	}
	var sent atomic.Int64
	if r.ContentLength != 0 && r.Body != nil && r.Body != http.NoBody {
		out.Body = &countReader{r: r.Body, n: &sent, touch: touch}
		out.ContentLength = r.ContentLength
	}

	var injected []string
	var secretValues [][]byte
	if p.inject != nil {
		h := http.Header{}
		labels, err := p.inject(ctx, req, h)
		if err != nil {
			writeError(w, http.StatusBadGateway, CodeUpstream, "The gateway could not prepare the request to the upstream server.")
			return Result{Status: http.StatusBadGateway}, fmt.Errorf("inject credentials for %s: %w", hostPort, err)
		}
		for k, vv := range h {
			if isHopByHop(k) {
				continue
			}
			out.Header[http.CanonicalHeaderKey(k)] = append([]string(nil), vv...)
		}
		injected = labels
		secretValues = injectedValues(h)
	}

	resp, err := p.transport.RoundTrip(out)
	if err != nil {
		err = upstreamError(err)
		status, code, msg := http.StatusBadGateway, CodeUpstream, "The upstream server could not be reached."
		if isTimeout(ctx, err) {
			status, code, msg = http.StatusGatewayTimeout, CodeUpstreamTimeout, "The upstream server did not answer in time."
		}
		writeError(w, status, code, msg)
		return Result{Status: status, Bytes: sent.Load(), Sent: sent.Load(), Injected: injected},
			fmt.Errorf("forward %s %s: %w", clip(r.Method, 32), hostPort, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusSwitchingProtocols {
		writeError(w, http.StatusBadGateway, CodeUpstream, "Protocol upgrades are not supported through this proxy.")
		return Result{Status: http.StatusBadGateway, Bytes: sent.Load(), Sent: sent.Load(), Injected: injected},
			fmt.Errorf("forward %s %s: upstream switched protocols", clip(r.Method, 32), hostPort)
	}
	touch()
	copyHeader(w.Header(), resp.Header)
	// Only the proxy speaks for the gateway: an origin cannot fake its refusals.
	w.Header().Del(RefusalHeader)
	var body io.Reader = resp.Body
	if len(secretValues) > 0 {
		// An origin that echoes the credential (a debugging endpoint, an error page) must
		// not hand it to the agent: replace it in the headers and the streamed body, whose
		// length then changes.
		redactHeader(w.Header(), secretValues)
		w.Header().Del("Content-Length")
		body = newRedactReader(resp.Body, secretValues)
	}
	w.WriteHeader(resp.StatusCode)
	n, err := p.relayBody(w, body, touch)
	res := Result{Status: resp.StatusCode, Bytes: sent.Load() + n, Sent: sent.Load(), Injected: injected}
	if err != nil {
		// The status is sent: end the connection so the agent sees a truncated body
		// rather than a complete one.
		if c, _, herr := http.NewResponseController(w).Hijack(); herr == nil {
			_ = c.Close()
		}
		if cause := context.Cause(ctx); cause != nil && ctx.Err() != nil {
			err = cause
		}
		return res, fmt.Errorf("relay response from %s: %w", hostPort, err)
	}
	return res, nil
}

// relayBody copies an upstream body to the agent, flushing every chunk so that nothing
// waits in a buffer. It returns the bytes written and the first read or write error.
func (p *Proxy) relayBody(w http.ResponseWriter, body io.Reader, touch func()) (int64, error) {
	rc := http.NewResponseController(w)
	return p.copyChunks(w, body, touch, func() error {
		if err := rc.Flush(); err != nil && !errors.Is(err, http.ErrNotSupported) {
			return err
		}
		return nil
	})
}

// countReader counts the agent's request body as the transport reads it.
type countReader struct {
	r     io.ReadCloser
	n     *atomic.Int64
	touch func()
}

func (c *countReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	if n > 0 {
		c.n.Add(int64(n))
		c.touch()
	}
	return n, err
}

func (c *countReader) Close() error { return c.r.Close() }

// upstreamError drops the *url.Error wrapper, whose text holds the URL and so the query.
func upstreamError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// isTimeout reports whether an upstream failure was a timeout or the idle limit.
func isTimeout(ctx context.Context, err error) bool {
	if errors.Is(context.Cause(ctx), errIdle) || errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// tunnel is one open CONNECT tunnel, closed by its relay, by [Proxy.Close] or by its
// context.
type tunnel struct {
	// mu guards closed and conns.
	mu     sync.Mutex
	closed bool
	conns  []net.Conn
}

// attach makes c part of the tunnel, closing it at once if the tunnel was closed.
func (tn *tunnel) attach(c net.Conn) {
	tn.mu.Lock()
	closed := tn.closed
	if !closed {
		tn.conns = append(tn.conns, c)
	}
	tn.mu.Unlock()
	if closed {
		_ = c.Close()
	}
}

// close closes both ends; it may be called any number of times, concurrently.
func (tn *tunnel) close() {
	tn.mu.Lock()
	tn.closed = true
	conns := tn.conns
	tn.conns = nil
	tn.mu.Unlock()
	for _, c := range conns {
		_ = c.Close()
	}
}

func (p *Proxy) isClosed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.closed
}

// openTunnel registers a tunnel, or reports that the proxy is closed or full.
func (p *Proxy) openTunnel() (*tunnel, string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.closed:
		return nil, "The proxy is shutting down."
	case len(p.tunnels) >= p.maxTunnels:
		return nil, "Too many tunnels are open; try again later."
	}
	tn := &tunnel{}
	p.tunnels[tn] = struct{}{}
	return tn, ""
}

func (p *Proxy) closeTunnel(tn *tunnel) {
	tn.close()
	p.mu.Lock()
	delete(p.tunnels, tn)
	p.mu.Unlock()
}

// tunnel connects to the vetted addresses, answers the CONNECT and relays both ways.
func (p *Proxy) tunnel(ctx context.Context, w http.ResponseWriter, t *target, addrs []netip.Addr) (Result, error) {
	hostPort := t.hostPort()
	tn, busy := p.openTunnel()
	if tn == nil {
		writeError(w, http.StatusServiceUnavailable, CodeBusy, busy)
		return Result{Status: http.StatusServiceUnavailable}, fmt.Errorf("connect %s: %s", hostPort, strings.ToLower(strings.TrimSuffix(busy, ".")))
	}
	defer p.closeTunnel(tn)
	up, err := p.dialVetted(ctx, "tcp", addrs, t.port)
	if err != nil {
		status, code, msg := http.StatusBadGateway, CodeUpstream, "The upstream server could not be reached."
		if isTimeout(ctx, err) {
			status, code, msg = http.StatusGatewayTimeout, CodeUpstreamTimeout, "The upstream server did not answer in time."
		}
		writeError(w, status, code, msg)
		return Result{Status: status}, fmt.Errorf("connect %s: %w", hostPort, err)
	}
	tn.attach(up)
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		writeError(w, http.StatusInternalServerError, CodeInternal, "The gateway failed to open the tunnel.")
		return Result{Status: http.StatusInternalServerError}, fmt.Errorf("connect %s: take over the agent's connection: %w", hostPort, err)
	}
	tn.attach(conn)
	// The server's read and write deadlines are for requests, not for a tunnel.
	_ = conn.SetDeadline(time.Time{})
	if _, err := io.WriteString(conn, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
		return Result{Status: http.StatusOK}, fmt.Errorf("connect %s: answer the agent: %w", hostPort, err)
	}
	sent, recv := p.splice(ctx, tn, brw.Reader, conn, up)
	return Result{Status: http.StatusOK, Bytes: sent + recv, Sent: sent}, nil
}

// splice relays bytes both ways until either side ends, the tunnel is silent for the
// idle timeout in both directions, or ctx ends; then it closes both ends. fromAgent
// reads the agent's connection, including what the server had already buffered.
func (p *Proxy) splice(ctx context.Context, tn *tunnel, fromAgent io.Reader, agent, up net.Conn) (sent, recv int64) {
	idle := time.AfterFunc(p.idleTimeout, tn.close)
	defer idle.Stop()
	stop := context.AfterFunc(ctx, tn.close)
	defer stop()
	touch := func() { idle.Reset(p.idleTimeout) }
	var wg sync.WaitGroup
	wg.Go(func() {
		sent = p.pipe(up, fromAgent, touch)
		tn.close()
	})
	recv = p.pipe(agent, up, touch)
	tn.close()
	wg.Wait()
	return sent, recv
}

// pipe copies src to dst until either fails, calling touch on every chunk.
func (p *Proxy) pipe(dst io.Writer, src io.Reader, touch func()) int64 {
	n, _ := p.copyChunks(dst, src, touch, nil)
	return n
}

// copyChunks copies src to dst through a pooled buffer, calling touch on every chunk and
// then flush, if set. It returns the bytes written and the first error other than EOF.
func (p *Proxy) copyChunks(dst io.Writer, src io.Reader, touch func(), flush func() error) (int64, error) {
	bp := p.bufs.Get().(*[]byte)
	defer p.bufs.Put(bp)
	buf := *bp
	var n int64
	for {
		m, rerr := src.Read(buf)
		if m > 0 {
			touch()
			k, werr := dst.Write(buf[:m])
			n += int64(k)
			if werr != nil {
				return n, werr
			}
			if flush != nil {
				if err := flush(); err != nil {
					return n, err
				}
			}
		}
		if rerr == io.EOF {
			return n, nil
		}
		if rerr != nil {
			return n, rerr
		}
	}
}

// target is the destination of a proxy request.
type target struct {
	connect  bool
	scheme   string
	host     string     // lower-case, no trailing dot, no brackets; an address canonical
	addr     netip.Addr // set when the host is a literal address
	port     int
	path     string // decoded path, as url.URL.Path
	rawPath  string // as url.URL.RawPath
	rawQuery string
	query    bool // the target had a "?"
}

// hostPort is the host and port as a dialer is given them.
func (t *target) hostPort() string {
	return net.JoinHostPort(t.host, strconv.Itoa(t.port))
}

// urlHost is the host of the outbound URL and Host header: the port only if not 80.
func (t *target) urlHost() string {
	h := t.host
	if t.addr.Is6() {
		h = "[" + h + "]"
	}
	if t.port != 80 {
		h += ":" + strconv.Itoa(t.port)
	}
	return h
}

// auditURL is [Request].URL, and whether a query was dropped from it.
func (t *target) auditURL() (string, bool) {
	if t.connect {
		h := t.host
		if t.addr.Is6() {
			h = "[" + h + "]"
		}
		return "https://" + h + ":" + strconv.Itoa(t.port), false
	}
	u := url.URL{Scheme: "http", Host: t.urlHost(), Path: t.path, RawPath: t.rawPath}
	s := u.String()
	if len(s) > maxURLBytes {
		s = clip(s, maxURLBytes)
	}
	return s, t.query
}

// rejection is why a request target was refused.
type rejection struct {
	status          int
	code            string
	message, reason string
}

func badRequest(message, reason string) *rejection {
	return &rejection{status: http.StatusBadRequest, code: CodeBadRequest, message: message, reason: reason}
}

const originFormMessage = "This is an HTTP proxy: send requests in absolute form (GET http://host/path) " +
	"or open tunnels with CONNECT host:port."

// parseTarget parses a request target: an absolute http URL, or for CONNECT an authority
// "host:port". Hosts are checked strictly: names of letters, digits, hyphens and
// underscores in labels of at most 63 bytes, IPv4 addresses in dotted-decimal form only,
// IPv6 addresses in brackets without a zone; no user info, no percent-encoding.
func parseTarget(method, requestURI string, protoMajor int) (*target, *rejection) {
	switch {
	case requestURI == "":
		return nil, badRequest(originFormMessage, "empty request target")
	case method == http.MethodConnect:
		if protoMajor != 1 {
			return nil, &rejection{status: http.StatusNotImplemented, code: CodeUnsupported,
				message: "CONNECT is supported over HTTP/1.1 only.", reason: fmt.Sprintf("CONNECT over HTTP/%d", protoMajor)}
		}
		if strings.HasPrefix(requestURI, "/") {
			return nil, badRequest("CONNECT takes host:port.", "CONNECT with a path")
		}
		t := &target{connect: true, scheme: "https"}
		var problem string
		t.host, t.addr, t.port, problem = parseAuthority(requestURI, 0)
		if problem != "" {
			return nil, badRequest("The CONNECT target is malformed: "+problem+".", "CONNECT target: "+problem)
		}
		return t, nil
	case requestURI == "*" || strings.HasPrefix(requestURI, "/"):
		return nil, badRequest(originFormMessage, "origin-form request target")
	}
	scheme, rest, ok := strings.Cut(requestURI, "://")
	if !ok || scheme == "" {
		return nil, badRequest(originFormMessage, "request target is not an absolute URL")
	}
	switch strings.ToLower(scheme) {
	case "http":
	case "https":
		return nil, badRequest("HTTPS goes through a CONNECT tunnel: set HTTPS_PROXY to this proxy.",
			"https URL in absolute form")
	default:
		return nil, badRequest("Only http URLs are proxied, and HTTPS through CONNECT.",
			fmt.Sprintf("scheme %q", clip(scheme, 32)))
	}
	if strings.ContainsRune(requestURI, '#') {
		return nil, badRequest("The request URL is malformed: it has a fragment.", "fragment in request target")
	}
	end := strings.IndexAny(rest, "/?")
	if end < 0 {
		end = len(rest)
	}
	t := &target{scheme: "http"}
	var problem string
	t.host, t.addr, t.port, problem = parseAuthority(rest[:end], 80)
	if problem != "" {
		return nil, badRequest("The request URL is malformed: "+problem+".", "request URL: "+problem)
	}
	u, err := url.ParseRequestURI("http://" + rest)
	if err != nil {
		return nil, badRequest("The request URL is malformed.", "request URL does not parse")
	}
	t.path, t.rawPath, t.rawQuery, t.query = u.Path, u.RawPath, u.RawQuery, u.RawQuery != "" || u.ForceQuery
	if t.path == "" {
		t.path, t.rawPath = "/", ""
	}
	return t, nil
}

// parseAuthority parses "host[:port]". Without a port it returns defaultPort; a zero
// defaultPort makes the port required. The problem is a phrase for the agent.
func parseAuthority(s string, defaultPort int) (host string, addr netip.Addr, port int, problem string) {
	if s == "" {
		return "", netip.Addr{}, 0, "no host"
	}
	if len(s) > 300 {
		return "", netip.Addr{}, 0, "the host is longer than 253 bytes"
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f {
			if c >= utf8.RuneSelf {
				return "", netip.Addr{}, 0, "a non-ASCII host name (give its punycode xn-- form)"
			}
			return "", netip.Addr{}, 0, "a space or control character in the host"
		}
		switch c {
		case '@':
			return "", netip.Addr{}, 0, "user info in the URL"
		case '/', '?', '#', '\\', '%':
			return "", netip.Addr{}, 0, fmt.Sprintf("the character %q in the host", c)
		}
	}
	hostPart, portPart, hasPort := s, "", false
	if s[0] == '[' {
		j := strings.IndexByte(s, ']')
		if j < 0 {
			return "", netip.Addr{}, 0, "an unclosed [ in the host"
		}
		hostPart = s[1:j]
		switch after := s[j+1:]; {
		case after == "":
		case after[0] == ':':
			portPart, hasPort = after[1:], true
		default:
			return "", netip.Addr{}, 0, "characters after the IPv6 address"
		}
		a, err := netip.ParseAddr(hostPart)
		if err != nil || !a.Is6() {
			return "", netip.Addr{}, 0, "an invalid IPv6 address"
		}
		addr = a.Unmap()
		host = addr.String()
	} else {
		if i := strings.LastIndexByte(s, ':'); i >= 0 {
			hostPart, portPart, hasPort = s[:i], s[i+1:], true
		}
		if strings.ContainsAny(hostPart, "[]:") {
			return "", netip.Addr{}, 0, "an IPv6 address without brackets"
		}
		var p string
		host, addr, p = normHost(hostPart)
		if p != "" {
			return "", netip.Addr{}, 0, p
		}
	}
	switch {
	case hasPort:
		p, ok := parsePort(portPart)
		if !ok {
			return "", netip.Addr{}, 0, fmt.Sprintf("an invalid port %q", clip(portPart, 16))
		}
		port = p
	case defaultPort == 0:
		return "", netip.Addr{}, 0, "no port"
	default:
		port = defaultPort
	}
	return host, addr, port, ""
}

// parsePort parses a decimal port from 1 to 65535.
func parsePort(s string) (int, bool) {
	if s == "" || len(s) > 5 {
		return 0, false
	}
	n := 0
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
		n = n*10 + int(s[i]-'0')
	}
	return n, n >= 1 && n <= 65535
}

// normHost normalises a host name or IPv4 address: lower-cased, without a trailing dot.
// A host whose last label is numeric must be a dotted-decimal IPv4 address: other
// notations ("2130706433", "0x7f.1", "0177.0.0.1", "127.1") mean different things to
// different resolvers and are refused.
func normHost(h string) (string, netip.Addr, string) {
	h = strings.ToLower(strings.TrimSuffix(h, "."))
	if h == "" {
		return "", netip.Addr{}, "no host"
	}
	if len(h) > 253 {
		return "", netip.Addr{}, "the host is longer than 253 bytes"
	}
	last := h[strings.LastIndexByte(h, '.')+1:]
	if numericLabel(last) {
		a, err := netip.ParseAddr(h)
		if err != nil || !a.Is4() {
			return "", netip.Addr{}, "a numeric host that is not a dotted-decimal IPv4 address"
		}
		return a.String(), a, ""
	}
	label := 0
	for i := 0; i < len(h); i++ {
		c := h[i]
		switch {
		case c == '.':
			if label == 0 {
				return "", netip.Addr{}, "an empty label in the host name"
			}
			label = 0
			continue
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '_':
		default:
			return "", netip.Addr{}, fmt.Sprintf("the character %q in the host", c)
		}
		label++
		if label > 63 {
			return "", netip.Addr{}, "a host name label longer than 63 bytes"
		}
	}
	if label == 0 {
		return "", netip.Addr{}, "an empty label in the host name"
	}
	return h, netip.Addr{}, ""
}

// numericLabel reports whether a label reads as a number to some resolver: decimal
// digits, or "0x" and hexadecimal digits.
func numericLabel(s string) bool {
	if s == "" {
		return false
	}
	if len(s) >= 2 && s[0] == '0' && s[1] == 'x' {
		for i := 2; i < len(s); i++ {
			if c := s[i]; !(c >= '0' && c <= '9') && !(c >= 'a' && c <= 'f') {
				return false
			}
		}
		return true
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// parseProxyAuthorization extracts the agent's token from the Proxy-Authorization
// header's values: "Bearer <token>", or "Basic base64(user:token)". On failure it
// returns a reason for the audit log, which never includes the header's value.
func parseProxyAuthorization(values []string) (token, problem string) {
	switch {
	case len(values) == 0:
		return "", "missing Proxy-Authorization"
	case len(values) > 1:
		return "", "several Proxy-Authorization headers"
	}
	v := strings.TrimSpace(values[0])
	if len(v) > maxAuthorizationBytes {
		return "", fmt.Sprintf("Proxy-Authorization longer than %d bytes", maxAuthorizationBytes)
	}
	scheme, cred, ok := strings.Cut(v, " ")
	cred = strings.TrimLeft(cred, " ")
	if !ok || cred == "" {
		return "", "malformed Proxy-Authorization: want Bearer or Basic credentials"
	}
	switch {
	case strings.EqualFold(scheme, "Bearer"):
		token = cred
	case strings.EqualFold(scheme, "Basic"):
		raw, err := base64.StdEncoding.DecodeString(cred)
		if err != nil {
			raw, err = base64.RawStdEncoding.DecodeString(cred)
		}
		if err != nil {
			return "", "malformed Proxy-Authorization: Basic credentials are not base64"
		}
		_, pass, ok := strings.Cut(string(raw), ":")
		if !ok {
			return "", "malformed Proxy-Authorization: Basic credentials without a colon"
		}
		if pass == "" {
			return "", "Basic credentials without a password: the token goes in the password"
		}
		token = pass
	default:
		return "", "unsupported Proxy-Authorization scheme: want Bearer or Basic"
	}
	if len(token) > MaxTokenBytes {
		return "", fmt.Sprintf("token longer than %d bytes", MaxTokenBytes)
	}
	for i := 0; i < len(token); i++ {
		if c := token[i]; c <= ' ' || c >= 0x7f {
			return "", "token with a space, control or non-ASCII character"
		}
	}
	return token, ""
}

// validCode reports whether a refusal code is 1 to 64 lower-case letters, digits and
// underscores, starting with a letter.
func validCode(c string) bool {
	if c == "" || len(c) > 64 || c[0] < 'a' || c[0] > 'z' {
		return false
	}
	for i := 0; i < len(c); i++ {
		if b := c[i]; !(b >= 'a' && b <= 'z') && !(b >= '0' && b <= '9') && b != '_' {
			return false
		}
	}
	return true
}

// sentence makes a message safe to send: control characters become spaces, invalid
// UTF-8 is replaced, and it is cut to maxMessageBytes.
func sentence(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == '\u2028' || r == '\u2029' {
			return ' '
		}
		return r
	}, s)
	return clip(strings.TrimSpace(s), maxMessageBytes)
}

// clip cuts s to at most n bytes on a rune boundary, ending in "..." when cut.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	i := max(n-3, 0)
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i] + "..."
}
