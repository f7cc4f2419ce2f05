package upstream

// A lean HTTP/1.1 client for the direct calls of httpcall.go to upstreams on plain http://.
//
// net/http's Transport runs each exchange through two goroutines per connection
// (persistConn's readLoop and writeLoop), handing the request and the response between them
// and the caller over channels, and http.Client adds its own layer on top. In profiles of
// the gateway that relay was about a fifth of the CPU of a call, and every hand-off is one
// more wake-up on a busy machine. h1Transport runs the whole exchange on the calling
// goroutine instead: take a kept-alive connection (or dial one), write the request with one
// flush, parse the answer with http.ReadResponse (the standard parser, which knows
// Content-Length, chunked and close-delimited bodies), and put the connection back once
// the caller has read the body to its end.
//
// It deliberately does not do: TLS or HTTP/2 (https:// upstreams stay on net/http),
// proxies (the wiring in client.go uses it only when no proxy applies), request bodies of
// unknown length, transparent gzip (it never asks for it), or retrying a request any byte
// of which may have reached the server: tools/call is not idempotent.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/net/http/httpguts"
)

const (
	// h1DialTimeout bounds connecting to the upstream.
	h1DialTimeout = 10 * time.Second
	// h1KeepAlive is the TCP keep-alive probe interval, as in http.DefaultTransport.
	h1KeepAlive = 30 * time.Second
	// h1IdleTimeout is how long an unused connection is kept, as in http.DefaultTransport.
	h1IdleTimeout = 90 * time.Second
	// h1MaxHeaderBytes bounds the bytes read before a response's body starts (status line,
	// header fields and any 1xx responses).
	h1MaxHeaderBytes = 1 << 20
	// h1Max1xx bounds the informational responses skipped before the final one.
	h1Max1xx = 5
	// h1MaxDrain is how much of an unread body Close discards, without waiting, to keep the
	// connection; with more left (or not yet arrived) the connection is closed instead.
	h1MaxDrain = 4 << 10
	// h1UserAgent is sent when the request has no User-Agent, as net/http does.
	h1UserAgent = "Go-http-client/1.1"
)

var (
	// errH1HeaderTooLarge reports a response whose header exceeds h1MaxHeaderBytes.
	errH1HeaderTooLarge = fmt.Errorf("response header larger than %d bytes", h1MaxHeaderBytes)
	// errH1WouldBlock is returned by reads that must not wait when no data has arrived.
	errH1WouldBlock = errors.New("no data available without waiting")
	// aLongTimeAgo is a deadline in the past: it fails pending and future I/O at once.
	aLongTimeAgo = time.Unix(1, 0)
)

// h1Transport is an http.RoundTripper for plain http:// URLs that runs each exchange on
// the calling goroutine over a pool of kept-alive HTTP/1.1 connections (see the top of this
// file). It is safe for concurrent use.
//
// The request's context cancels the exchange at any stage (dialling, writing, waiting for
// the header, reading the body); the error then wraps the context's error, and the
// connection is closed. A connection goes back to the pool only when its response body was
// read to the end (or had at most h1MaxDrain bytes left, already received, at Close) and
// neither side asked to close it.
type h1Transport struct {
	dialer      net.Dialer
	maxIdle     int           // idle connections kept per host:port
	idleTimeout time.Duration // idle connections older than this are closed, not reused
	now         func() time.Time

	mu sync.Mutex
	// The fields below are guarded by mu.
	idle  map[string][]*h1Conn // by host:port, oldest first: reuse takes the last
	sweep *time.Timer          // closes expired idle connections; nil when not armed
}

var _ http.RoundTripper = (*h1Transport)(nil)

// newH1Transport returns a transport that keeps up to maxIdle idle connections per
// host:port.
func newH1Transport(maxIdle int) *h1Transport {
	return &h1Transport{
		dialer:      net.Dialer{Timeout: h1DialTimeout, KeepAlive: h1KeepAlive},
		maxIdle:     maxIdle,
		idleTimeout: h1IdleTimeout,
		now:         time.Now,
		idle:        make(map[string][]*h1Conn),
	}
}

// h1Request is what RoundTrip checked and worked out about a request before sending it.
type h1Request struct {
	method, host, uri string
	addr              string // host:port to dial
	length            int64  // of the body
	writeLength       bool   // send Content-Length (also when 0: POST, PUT, PATCH)
	close             bool   // the request asks to close the connection
	closeInHeader     bool   // ... in its own Connection header
}

// RoundTrip implements [http.RoundTripper] for http:// URLs; anything else is an error.
// It always closes the request body.
func (t *h1Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	body := req.Body
	if body == http.NoBody {
		body = nil
	}
	r, err := checkRequest(req, body != nil)
	if err != nil {
		closeBody(body)
		return nil, err
	}
	ctx := req.Context()
	if err := ctx.Err(); err != nil {
		closeBody(body)
		return nil, fmt.Errorf("send request: %w", err)
	}

	var (
		pc   *h1Conn
		stop func() bool
	)
	for fresh := false; ; fresh = true {
		if pc, err = t.conn(ctx, r.addr, fresh); err != nil {
			closeBody(body)
			return nil, err
		}
		stop = pc.watch(ctx)
		pc.written = 0
		err = writeRequest(pc.bw, req, &r, body)
		if err == nil {
			break
		}
		stop()
		pc.close()
		var bodyErr *requestBodyError
		switch {
		case ctx.Err() != nil:
			closeBody(body)
			return nil, fmt.Errorf("write request: %w", ctx.Err())
		case errors.As(err, &bodyErr):
			closeBody(body)
			return nil, err
		case !fresh && pc.reused && pc.written == 0 && (body == nil || req.GetBody != nil):
			// Nothing reached the server: the connection died after the check in conn.
			// Take a fresh one, once.
			if body != nil {
				body.Close()
				if body, err = req.GetBody(); err != nil {
					return nil, fmt.Errorf("request body: %w", err)
				}
				if body == http.NoBody {
					body = nil
				}
			}
			continue
		}
		closeBody(body)
		return nil, fmt.Errorf("write request: %w", err)
	}
	closeBody(body)

	resp, err := pc.readResponse(req)
	if err != nil {
		stop()
		pc.close()
		if ctx.Err() != nil {
			return nil, fmt.Errorf("read response: %w", ctx.Err())
		}
		return nil, fmt.Errorf("read response: %w", err)
	}
	keep := !r.close && !resp.Close // resp.Close covers HTTP/1.0 and close-delimited bodies
	if resp.Body == http.NoBody {
		stopped := stop()
		t.release(pc, keep && stopped)
		return resp, nil
	}
	resp.Body = &h1Body{t: t, pc: pc, rc: resp.Body, ctx: ctx, stop: stop, keep: keep, length: resp.ContentLength}
	return resp, nil
}

// CloseIdleConnections closes the pooled connections. Connections in use are unaffected.
func (t *h1Transport) CloseIdleConnections() {
	t.mu.Lock()
	idle := t.idle
	t.idle = make(map[string][]*h1Conn)
	if t.sweep != nil {
		t.sweep.Stop()
		t.sweep = nil
	}
	t.mu.Unlock()
	for _, list := range idle {
		for _, pc := range list {
			pc.close()
		}
	}
}

// checkRequest validates req and works out what to send. It refuses anything it could not
// send faithfully rather than guess: other schemes, bodies of unknown length, and bytes in
// the method, target, Host or header fields that would end a line or a token early.
func checkRequest(req *http.Request, hasBody bool) (h1Request, error) {
	var r h1Request
	u := req.URL
	if u == nil {
		return r, errors.New("request has no URL")
	}
	if u.Scheme != "http" {
		return r, fmt.Errorf("unsupported scheme %q (only http)", u.Scheme)
	}
	if u.Host == "" {
		return r, errors.New("request URL has no host")
	}
	r.addr = u.Host
	if u.Port() == "" {
		r.addr = net.JoinHostPort(u.Hostname(), "80")
	}
	r.method = req.Method
	if r.method == "" {
		r.method = http.MethodGet
	}
	if !httpguts.ValidHeaderFieldName(r.method) { // a method is a token, as a field name is
		return r, fmt.Errorf("invalid method %q", r.method)
	}
	r.host = req.Host
	if r.host == "" {
		r.host = u.Host
	}
	if r.host == "" || !httpguts.ValidHostHeader(r.host) {
		return r, errors.New("invalid Host")
	}
	r.uri = u.RequestURI()
	if !validTarget(r.uri) {
		return r, errors.New("invalid request target: control character or space in the URL")
	}
	for k, vv := range req.Header {
		if !httpguts.ValidHeaderFieldName(k) {
			return r, fmt.Errorf("invalid header field name %q", k)
		}
		for _, v := range vv {
			if !httpguts.ValidHeaderFieldValue(v) {
				// Not the value: it may be a credential.
				return r, fmt.Errorf("invalid value for header field %q: control character", k)
			}
		}
		if strings.EqualFold(k, "Connection") && httpguts.HeaderValuesContainsToken(vv, "close") {
			r.close, r.closeInHeader = true, true
		}
	}
	r.close = r.close || req.Close
	if len(req.TransferEncoding) > 0 || len(req.Trailer) > 0 {
		return r, errors.New("transfer encodings and trailers are not supported")
	}
	switch {
	case !hasBody && req.ContentLength > 0:
		return r, fmt.Errorf("ContentLength=%d with no body", req.ContentLength)
	case !hasBody:
	case req.ContentLength > 0:
		r.length = req.ContentLength
	default:
		return r, errors.New("request body of unknown length (set ContentLength; byte slices, bytes.Reader and strings.Reader bodies have it)")
	}
	switch r.method {
	case http.MethodPost, http.MethodPut, http.MethodPatch:
		r.writeLength = true
	default:
		r.writeLength = r.length > 0
	}
	return r, nil
}

// requestBodyError is a failure to read the request body, as opposed to writing to the
// connection.
type requestBodyError struct{ err error }

func (e *requestBodyError) Error() string { return "read request body: " + e.err.Error() }
func (e *requestBodyError) Unwrap() error { return e.err }

// writeRequest writes the request checked as r to bw, with exactly r.length bytes of body,
// and flushes it. Errors from body are *requestBodyError.
func writeRequest(bw *bufio.Writer, req *http.Request, r *h1Request, body io.Reader) error {
	bw.WriteString(r.method)
	bw.WriteByte(' ')
	bw.WriteString(r.uri)
	bw.WriteString(" HTTP/1.1\r\nHost: ")
	bw.WriteString(r.host)
	bw.WriteString("\r\n")
	if ua, ok := req.Header["User-Agent"]; !ok {
		bw.WriteString("User-Agent: " + h1UserAgent + "\r\n")
	} else if len(ua) > 0 && ua[0] != "" {
		bw.WriteString("User-Agent: ")
		bw.WriteString(ua[0])
		bw.WriteString("\r\n")
	}
	for k, vv := range req.Header {
		if h1Excluded(k) {
			continue
		}
		for _, v := range vv {
			bw.WriteString(k)
			bw.WriteString(": ")
			bw.WriteString(v)
			bw.WriteString("\r\n")
		}
	}
	if r.writeLength {
		bw.WriteString("Content-Length: ")
		bw.Write(strconv.AppendInt(bw.AvailableBuffer(), r.length, 10))
		bw.WriteString("\r\n")
	}
	if r.close && !r.closeInHeader {
		bw.WriteString("Connection: close\r\n")
	}
	bw.WriteString("\r\n")

	if body != nil {
		if err := copyBody(bw, body, r.length); err != nil {
			return err
		}
	}
	return bw.Flush()
}

// copyBody copies exactly n bytes of body to bw through bw's own buffer (no allocation),
// and checks that body has no more.
func copyBody(bw *bufio.Writer, body io.Reader, n int64) error {
	empty := 0
	for n > 0 {
		if bw.Available() == 0 {
			if err := bw.Flush(); err != nil {
				return err
			}
		}
		buf := bw.AvailableBuffer()
		buf = buf[:min(int64(cap(buf)), n)]
		k, err := body.Read(buf)
		if k > 0 {
			bw.Write(buf[:k]) // appends buf to itself: no copy past the buffered data
			n -= int64(k)
			empty = 0
		} else if err == nil {
			if empty++; empty > 100 {
				return &requestBodyError{io.ErrNoProgress}
			}
		}
		if err == io.EOF {
			if n > 0 {
				return &requestBodyError{fmt.Errorf("%d bytes short of ContentLength", n)}
			}
			break
		}
		if err != nil {
			return &requestBodyError{err}
		}
	}
	if bw.Available() == 0 {
		if err := bw.Flush(); err != nil {
			return err
		}
	}
	k, err := body.Read(bw.AvailableBuffer()[:1])
	if k > 0 {
		return &requestBodyError{errors.New("longer than ContentLength")}
	}
	if err != nil && err != io.EOF {
		return &requestBodyError{err}
	}
	return nil
}

// h1Excluded reports whether header field k of a request is written by writeRequest
// itself (or, for Trailer, not at all), as net/http does.
func h1Excluded(k string) bool {
	switch len(k) {
	case 4:
		return strings.EqualFold(k, "Host")
	case 7:
		return strings.EqualFold(k, "Trailer")
	case 10:
		return strings.EqualFold(k, "User-Agent")
	case 14:
		return strings.EqualFold(k, "Content-Length")
	case 17:
		return strings.EqualFold(k, "Transfer-Encoding")
	}
	return false
}

// conn returns a connection to addr: the most recently used idle one that is still open,
// or, if there is none or fresh is set, a new one.
func (t *h1Transport) conn(ctx context.Context, addr string, fresh bool) (*h1Conn, error) {
	for !fresh {
		pc := t.takeIdle(addr)
		if pc == nil {
			break
		}
		if pc.alive() {
			pc.attach()
			return pc, nil
		}
		pc.close()
	}
	nc, err := t.dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("dial %s: %w", addr, ctx.Err())
		}
		return nil, err // net's errors name the operation and the address
	}
	return newH1Conn(nc, addr), nil
}

// takeIdle removes and returns the newest idle connection to addr, or nil. Expired
// connections it finds on the way are closed.
func (t *h1Transport) takeIdle(addr string) *h1Conn {
	t.mu.Lock()
	list := t.idle[addr]
	if len(list) == 0 {
		t.mu.Unlock()
		return nil
	}
	pc := list[len(list)-1]
	if t.expired(pc, t.now()) {
		// The newest has expired, so all have.
		delete(t.idle, addr)
		t.mu.Unlock()
		for _, pc := range list {
			pc.close()
		}
		return nil
	}
	list[len(list)-1] = nil
	t.idle[addr] = list[:len(list)-1]
	t.mu.Unlock()
	return pc
}

func (t *h1Transport) expired(pc *h1Conn, now time.Time) bool {
	return now.Sub(pc.idleSince) >= t.idleTimeout
}

// release pools pc if reuse is set and closes it otherwise.
func (t *h1Transport) release(pc *h1Conn, reuse bool) {
	if !reuse || !pc.detach() {
		pc.close()
		return
	}
	pc.idleSince = t.now()
	pc.reused = true
	var evicted *h1Conn
	t.mu.Lock()
	list := append(t.idle[pc.key], pc)
	if len(list) > t.maxIdle {
		evicted = list[0]
		n := copy(list, list[1:])
		list[n] = nil
		list = list[:n]
	}
	t.idle[pc.key] = list
	if t.sweep == nil {
		t.sweep = time.AfterFunc(t.idleTimeout, t.sweepIdle)
	}
	t.mu.Unlock()
	if evicted != nil {
		evicted.close()
	}
}

// sweepIdle closes the idle connections that have expired and re-arms the sweep timer for
// the next expiry, if any connection is left.
func (t *h1Transport) sweepIdle() {
	now := t.now()
	var expired []*h1Conn
	var next time.Time // when the oldest remaining connection expires
	t.mu.Lock()
	for addr, list := range t.idle {
		i := 0
		for i < len(list) && t.expired(list[i], now) {
			i++
		}
		expired = append(expired, list[:i]...)
		n := copy(list, list[i:])
		clear(list[n:])
		list = list[:n]
		if n == 0 {
			delete(t.idle, addr)
			continue
		}
		t.idle[addr] = list
		if at := list[0].idleSince.Add(t.idleTimeout); next.IsZero() || at.Before(next) {
			next = at
		}
	}
	switch {
	case next.IsZero():
		if t.sweep != nil {
			t.sweep.Stop() // when called other than by the timer
		}
		t.sweep = nil
	case t.sweep == nil:
		t.sweep = time.AfterFunc(next.Sub(now), t.sweepIdle)
	default:
		t.sweep.Reset(next.Sub(now))
	}
	t.mu.Unlock()
	for _, pc := range expired {
		pc.close()
	}
}

// h1Conn is one connection. It is used by one exchange at a time; ownership passes through
// the pool, under h1Transport.mu.
type h1Conn struct {
	nc  net.Conn
	raw syscall.RawConn // for reads that must not wait; nil if nc has no file descriptor
	br  *bufio.Reader   // reads through h1Conn.Read
	bw  *bufio.Writer   // writes through h1Conn.Write
	key string          // host:port, the pool's key

	reused    bool      // it has been in the pool
	idleSince time.Time // when it last went into the pool
	written   int64     // bytes of the current request that reached the socket
	// readLimit is how many more bytes reads may return: h1MaxHeaderBytes while reading a
	// response header, unlimited otherwise.
	readLimit int64
	// nonblocking makes Read return errH1WouldBlock instead of waiting for data.
	nonblocking bool

	// State of readNow, kept here so that a read allocates nothing.
	rawBuf  []byte
	rawN    int
	rawErr  error
	probe   [1]byte
	readFn  func(fd uintptr) bool // pc.rawRead
	abortFn func()                // pc.abort
}

func newH1Conn(nc net.Conn, key string) *h1Conn {
	pc := &h1Conn{nc: nc, key: key, readLimit: math.MaxInt64}
	if sc, ok := nc.(syscall.Conn); ok {
		if raw, err := sc.SyscallConn(); err == nil {
			pc.raw = raw
		}
	}
	pc.readFn, pc.abortFn = pc.rawRead, pc.abort
	pc.attach()
	return pc
}

// Read reads from the connection for br, within readLimit.
func (pc *h1Conn) Read(p []byte) (int, error) {
	if pc.readLimit <= 0 {
		return 0, errH1HeaderTooLarge
	}
	if int64(len(p)) > pc.readLimit {
		p = p[:pc.readLimit]
	}
	var n int
	var err error
	if pc.nonblocking {
		n, err = pc.readNow(p)
	} else {
		n, err = pc.nc.Read(p)
	}
	pc.readLimit -= int64(n)
	return n, err
}

// Write writes to the connection for bw, counting what reached the socket.
func (pc *h1Conn) Write(p []byte) (int, error) {
	n, err := pc.nc.Write(p)
	pc.written += int64(n)
	return n, err
}

// readNow reads what has already arrived, without waiting: errH1WouldBlock if nothing has.
// A read deadline in the past cannot do this: Go's poller then fails the read before
// asking the kernel, so it would not see an EOF that is already there.
func (pc *h1Conn) readNow(p []byte) (int, error) {
	if pc.raw == nil || len(p) == 0 {
		return 0, errH1WouldBlock
	}
	pc.rawBuf = p
	err := pc.raw.Read(pc.readFn)
	n, rerr := pc.rawN, pc.rawErr
	pc.rawBuf, pc.rawErr = nil, nil
	switch {
	case err != nil:
		return 0, err
	case n > 0:
		return n, nil
	case rerr == nil:
		return 0, io.EOF
	case rerr == syscall.EAGAIN || rerr == syscall.EWOULDBLOCK:
		return 0, errH1WouldBlock
	default:
		return 0, rerr
	}
}

// rawRead is readNow's one non-blocking read(2) on the socket (which Go keeps in
// non-blocking mode); returning true tells the poller not to wait.
func (pc *h1Conn) rawRead(fd uintptr) bool {
	n, err := syscall.Read(int(fd), pc.rawBuf)
	for err == syscall.EINTR {
		n, err = syscall.Read(int(fd), pc.rawBuf)
	}
	pc.rawN, pc.rawErr = max(n, 0), err
	return true
}

// alive reports whether an idle connection can carry a request: the server has neither
// closed it nor sent anything unasked. It costs one non-blocking read(2).
func (pc *h1Conn) alive() bool {
	if pc.br != nil && pc.br.Buffered() > 0 {
		return false
	}
	if pc.raw == nil {
		return true // cannot tell; a failure will show when writing or reading
	}
	_, err := pc.readNow(pc.probe[:])
	return err == errH1WouldBlock
}

// watch makes ctx's end fail the connection's pending and future I/O, until the returned
// stop is called; stop reports whether that had not happened yet (as [context.AfterFunc]).
func (pc *h1Conn) watch(ctx context.Context) (stop func() bool) {
	if ctx.Done() == nil {
		return neverStopped
	}
	return context.AfterFunc(ctx, pc.abortFn)
}

func neverStopped() bool { return true }

func (pc *h1Conn) abort() { _ = pc.nc.SetDeadline(aLongTimeAgo) }

func (pc *h1Conn) close() { _ = pc.nc.Close() }

// The buffers of idle connections go back to pools: a gateway keeps up to 256 idle
// connections per upstream, and 8 KiB of buffers each would be most of its memory.
var (
	h1Readers = sync.Pool{New: func() any { return bufio.NewReader(nil) }}
	h1Writers = sync.Pool{New: func() any { return bufio.NewWriter(nil) }}
)

// attach gives pc its buffers for an exchange.
func (pc *h1Conn) attach() {
	if pc.br == nil {
		pc.br = h1Readers.Get().(*bufio.Reader)
		pc.br.Reset(pc)
	}
	if pc.bw == nil {
		pc.bw = h1Writers.Get().(*bufio.Writer)
		pc.bw.Reset(pc)
	}
}

// detach returns pc's buffers to their pools as it goes idle, and reports whether they
// were empty: bytes left in either mean the connection cannot carry another exchange.
func (pc *h1Conn) detach() bool {
	if pc.br.Buffered() > 0 || pc.bw.Buffered() > 0 {
		return false
	}
	pc.br.Reset(nil)
	pc.bw.Reset(nil)
	h1Readers.Put(pc.br)
	h1Writers.Put(pc.bw)
	pc.br, pc.bw = nil, nil
	return true
}

// readResponse reads the final response's header, skipping informational (1xx) ones.
func (pc *h1Conn) readResponse(req *http.Request) (*http.Response, error) {
	pc.readLimit = h1MaxHeaderBytes
	for n := 0; ; n++ {
		resp, err := http.ReadResponse(pc.br, req)
		if err != nil {
			if errors.Is(err, errH1HeaderTooLarge) {
				return nil, errH1HeaderTooLarge
			}
			return nil, err
		}
		switch {
		case resp.StatusCode == http.StatusSwitchingProtocols:
			return nil, errors.New("unexpected 101 Switching Protocols")
		case resp.StatusCode >= 100 && resp.StatusCode < 200:
			if n >= h1Max1xx {
				return nil, fmt.Errorf("more than %d informational responses", h1Max1xx)
			}
			continue
		}
		pc.readLimit = math.MaxInt64
		return resp, nil
	}
}

// h1Body is a response body that returns its connection to the pool, or closes it, once
// the body has ended. Close may be called concurrently with Read: it then closes the
// connection, which ends the Read.
type h1Body struct {
	t      *h1Transport
	pc     *h1Conn
	rc     io.ReadCloser // http.ReadResponse's body; never closed, as its Close reads to EOF
	ctx    context.Context
	stop   func() bool // ends the ctx watch; false if ctx already ended the connection
	keep   bool        // the connection may be reused after the body
	length int64       // Content-Length, or -1
	n      int64       // bytes read so far

	mu sync.Mutex
	// The fields below are guarded by mu.
	reading  bool  // a Read is using the connection
	closed   bool  // Close was called
	released bool  // the connection was pooled or closed (or is being)
	err      error // io.EOF after the end; otherwise why reading failed
}

func (b *h1Body) Read(p []byte) (int, error) {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return 0, http.ErrBodyReadAfterClose
	}
	if b.err != nil {
		err := b.err
		b.mu.Unlock()
		return 0, err
	}
	b.reading = true
	b.mu.Unlock()

	n, err := b.rc.Read(p)

	b.mu.Lock()
	b.reading = false
	b.n += int64(n)
	if b.closed { // Close closed the connection under this Read
		b.mu.Unlock()
		if err != nil && err != io.EOF {
			err = http.ErrBodyReadAfterClose
		}
		return n, err
	}
	if err != nil && err != io.EOF {
		if ctxErr := b.ctx.Err(); ctxErr != nil {
			err = fmt.Errorf("read response body: %w", ctxErr)
		}
	}
	release := err != nil
	if release {
		b.err, b.released = err, true
	}
	b.mu.Unlock()
	if release {
		b.release(err == io.EOF && b.keep)
	}
	return n, err
}

// Close releases the connection: to the pool if the body has ended, or if what is left of
// it (at most h1MaxDrain bytes) has already arrived; otherwise it closes it. It never waits
// for the server.
func (b *h1Body) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	if b.released {
		b.mu.Unlock()
		return nil
	}
	b.released = true
	reading := b.reading
	b.mu.Unlock()
	if reading {
		b.release(false) // closing the connection ends the Read
		return nil
	}
	b.release(b.keep && b.drain())
	return nil
}

// drain discards the rest of the body if it has already arrived; it reports whether the
// body ended. Only Close calls it, with no Read in progress.
func (b *h1Body) drain() bool {
	if b.length >= 0 && b.length-b.n > h1MaxDrain {
		return false
	}
	b.pc.nonblocking = true
	_, err := io.CopyN(io.Discard, b.rc, h1MaxDrain+1)
	b.pc.nonblocking = false
	return err == io.EOF
}

func (b *h1Body) release(reuse bool) {
	stopped := b.stop()
	b.t.release(b.pc, reuse && stopped)
}

// closeBody closes a request body, if any.
func closeBody(body io.Closer) {
	if body != nil {
		body.Close()
	}
}

// validTarget reports whether s may be sent as the request target: no control characters
// and no spaces.
func validTarget(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c == 0x7f {
			return false
		}
	}
	return s != ""
}
