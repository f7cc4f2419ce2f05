package egress

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chaperone-dev/chaperone/internal/identity"
	"github.com/chaperone-dev/chaperone/internal/logtest"
)

// Test agents and their tokens.
const (
	agentA = "agent-a"
	agentB = "agent-b"
	tokenA = "chp_tokenA-0123456789abcdef"
	tokenB = "chp_tokenB-0123456789abcdef"
)

// mapResolver is a map-backed test resolver: a name resolves to the addresses the map
// gives it, in order; an unknown name fails as if it did not exist. A name may have a
// sequence of answers, one per lookup, the last repeating (for rebinding). It counts
// lookups per name.
type mapResolver struct {
	// mu guards answers and lookups.
	mu      sync.Mutex
	answers map[string][][]netip.Addr
	lookups map[string]int
}

func newMapResolver() *mapResolver {
	r := &mapResolver{answers: map[string][][]netip.Addr{}, lookups: map[string]int{}}
	r.set("api.test", "127.0.0.1")
	r.set("secure.test", "127.0.0.1")
	r.set("upload.test", "127.0.0.1")
	r.set("metadata.test", "169.254.169.254")
	r.set("intranet.test", "10.1.2.3")
	r.set("mixed.test", "127.0.0.1", "10.0.0.7")
	r.set("v6only.test", "::1")
	return r
}

// set gives name one answer.
func (r *mapResolver) set(name string, addrs ...string) {
	r.sequence(name, addrs)
}

// sequence gives name one answer per lookup, the last repeating.
func (r *mapResolver) sequence(name string, answers ...[]string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.answers[name] = nil
	for _, ans := range answers {
		var as []netip.Addr
		for _, a := range ans {
			as = append(as, netip.MustParseAddr(a))
		}
		r.answers[name] = append(r.answers[name], as)
	}
}

func (r *mapResolver) count(name string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lookups[name]
}

func (r *mapResolver) LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	n := r.lookups[host]
	r.lookups[host]++
	seq, ok := r.answers[host]
	if !ok || len(seq) == 0 {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	return append([]netip.Addr(nil), seq[min(n, len(seq)-1)]...), nil
}

// refusedCall is one call of Options.Refused.
type refusedCall struct {
	req          Request
	code, reason string
}

// forwarded is one forward call made by the default Decide.
type forwarded struct {
	req Request
	res Result
	err error
}

// originSeen is what the origin saw of one request.
type originSeen struct {
	host   string
	uri    string
	header http.Header
}

// harness is a proxy between real clients and real origin servers on 127.0.0.1.
type harness struct {
	t        testing.TB
	proxy    *Proxy
	srv      *httptest.Server
	addr     string // the proxy's host:port
	origin   *httptest.Server
	port     int // the origin's port
	tls      *httptest.Server
	tlsPort  int
	resolver *mapResolver
	logs     *logtest.Buffer
	// release unblocks the origin's /stream and /slow handlers; see unblock.
	release     chan struct{}
	releaseOnce sync.Once

	// decide, if set, replaces the default Decide (record and forward).
	decide func(ctx context.Context, r *Request, forward func(context.Context) (Result, error)) *Refusal

	// mu guards the records below.
	mu       sync.Mutex
	auths    []string
	decided  []Request
	forwards []forwarded
	refusals []refusedCall
	seen     []originSeen
}

// newHarness starts an origin, a TLS origin and the proxy. edit may change the options
// before the proxy is built.
func newHarness(t testing.TB, edit func(h *harness, o *Options)) *harness {
	t.Helper()
	h := &harness{t: t, resolver: newMapResolver(), logs: &logtest.Buffer{}, release: make(chan struct{})}
	t.Cleanup(h.unblock)

	h.origin = httptest.NewServer(h.originHandler())
	t.Cleanup(h.origin.Close)
	h.port = portOf(t, h.origin.URL)
	h.tls = httptest.NewTLSServer(h.originHandler())
	t.Cleanup(h.tls.Close)
	h.tlsPort = portOf(t, h.tls.URL)

	o := Options{
		Authenticate: func(_ context.Context, authz string) (*identity.Principal, error) {
			h.mu.Lock()
			h.auths = append(h.auths, authz)
			h.mu.Unlock()
			switch authz {
			case "Bearer " + tokenA:
				return &identity.Principal{Agent: &identity.Agent{ID: agentA, Status: identity.StatusActive}}, nil
			case "Bearer " + tokenB:
				return &identity.Principal{Agent: &identity.Agent{ID: agentB, Status: identity.StatusActive}}, nil
			}
			return nil, identity.ErrUnauthenticated
		},
		Rules: []Rule{
			{
				Name:   "web",
				Agents: []string{agentA},
				Hosts: []string{"api.test", "secure.test", "metadata.test", "intranet.test", "mixed.test",
					"rebind.test", "v6only.test", "127.0.0.1"},
				Ports: []int{h.port, h.tlsPort, 80},
			},
			{Name: "upload", Agents: []string{agentA}, Hosts: []string{"upload.test"}, Methods: []string{"POST", "PUT"}, Ports: []int{h.port}},
			{Name: "anything", Agents: []string{agentB}, Hosts: []string{"*"}, Ports: []int{h.port, h.tlsPort, 80}},
		},
		Decide: func(ctx context.Context, r *Request, forward func(context.Context) (Result, error)) *Refusal {
			h.mu.Lock()
			h.decided = append(h.decided, *r)
			custom := h.decide
			h.mu.Unlock()
			if custom != nil {
				return custom(ctx, r, forward)
			}
			res, err := forward(ctx)
			h.mu.Lock()
			h.forwards = append(h.forwards, forwarded{req: *r, res: res, err: err})
			h.mu.Unlock()
			return nil
		},
		Refused: func(_ context.Context, r *Request, code, reason string) {
			h.mu.Lock()
			defer h.mu.Unlock()
			h.refusals = append(h.refusals, refusedCall{req: *r, code: code, reason: reason})
		},
		Resolver:     h.resolver,
		AllowPrivate: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")},
		Logger:       slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if edit != nil {
		edit(h, &o)
	}
	p, err := New(o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	h.proxy = p
	h.srv = httptest.NewUnstartedServer(p)
	// As the daemon must: "OPTIONS *" is otherwise answered by the server itself.
	h.srv.Config.DisableGeneralOptionsHandler = true
	h.srv.Start()
	t.Cleanup(func() {
		h.srv.Close()
		_ = p.Close()
	})
	h.addr = strings.TrimPrefix(h.srv.URL, "http://")
	return h
}

// originHandler serves the test origin.
func (h *harness) originHandler() http.Handler {
	mux := http.NewServeMux()
	record := func(r *http.Request) {
		h.mu.Lock()
		defer h.mu.Unlock()
		h.seen = append(h.seen, originSeen{host: r.Host, uri: r.RequestURI, header: r.Header.Clone()})
	}
	mux.HandleFunc("/hello", func(w http.ResponseWriter, r *http.Request) {
		record(r)
		w.Header().Set("X-Origin", "yes")
		w.Header().Set("Keep-Alive", "timeout=5")
		w.Header().Set("Proxy-Authenticate", `Basic realm="origin"`)
		w.Header().Set(RefusalHeader, "forged_by_origin")
		fmt.Fprint(w, "hello from origin")
	})
	mux.HandleFunc("/redirect", func(w http.ResponseWriter, r *http.Request) {
		record(r)
		http.Redirect(w, r, r.URL.Query().Get("to"), http.StatusFound)
	})
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		record(r)
		w.Header().Set("Content-Type", "application/octet-stream")
		_, _ = io.Copy(w, r.Body)
	})
	mux.HandleFunc("/stream", func(w http.ResponseWriter, r *http.Request) {
		record(r)
		fmt.Fprint(w, "first chunk;")
		_ = http.NewResponseController(w).Flush()
		select {
		case <-h.release:
		case <-r.Context().Done():
			return
		}
		fmt.Fprint(w, "second chunk")
	})
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		record(r)
		select {
		case <-h.release:
		case <-r.Context().Done():
		}
	})
	// /truncated?chunked=1 sends part of a body, then drops the connection.
	mux.HandleFunc("/truncated", func(w http.ResponseWriter, r *http.Request) {
		record(r)
		c, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		if r.URL.Query().Get("chunked") != "" {
			fmt.Fprint(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\na\r\n0123456789\r\n")
			return
		}
		fmt.Fprint(c, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")
	})
	mux.HandleFunc("/bigheader", func(w http.ResponseWriter, r *http.Request) {
		record(r)
		w.Header().Set("X-Big", strings.Repeat("b", 200<<10))
	})
	return mux
}

// unblock releases the origin's /stream and /slow handlers.
func (h *harness) unblock() { h.releaseOnce.Do(func() { close(h.release) }) }

func portOf(t testing.TB, raw string) int {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	p, err := strconv.Atoi(u.Port())
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// client returns a Go HTTP client using the proxy with user:token, trusting the TLS
// origin's certificate for any name.
func (h *harness) client(user, token string) *http.Client {
	pu := &url.URL{Scheme: "http", Host: h.addr}
	if token != "" {
		pu.User = url.UserPassword(user, token)
	}
	pool := x509.NewCertPool()
	pool.AddCert(h.tls.Certificate())
	return &http.Client{
		Transport: &http.Transport{
			Proxy: http.ProxyURL(pu),
			// httptest's certificate is for example.com and 127.0.0.1.
			TLSClientConfig:   &tls.Config{RootCAs: pool, ServerName: "example.com"},
			DisableKeepAlives: true,
		},
		Timeout: 30 * time.Second,
	}
}

// get fetches a URL through the proxy with a Go client and returns the response and body.
func (h *harness) get(c *http.Client, target string) (*http.Response, []byte) {
	h.t.Helper()
	resp, err := c.Get(target)
	if err != nil {
		h.t.Fatalf("GET %s: %v", target, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		h.t.Fatalf("GET %s: read body: %v", target, err)
	}
	return resp, body
}

// raw sends raw bytes to the proxy and reads one response.
func (h *harness) raw(request string) (*http.Response, []byte) {
	h.t.Helper()
	c, err := net.Dial("tcp", h.addr)
	if err != nil {
		h.t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.WriteString(c, request); err != nil {
		h.t.Fatal(err)
	}
	method := "GET"
	if strings.HasPrefix(request, "CONNECT ") {
		method = "CONNECT"
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: method})
	if err != nil {
		h.t.Fatalf("read response to %q: %v", firstLine(request), err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, body
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\r\n")
	return l
}

// basic is the Proxy-Authorization value curl sends for -U user:token.
func basic(user, token string) string {
	return "Basic " + b64(user+":"+token)
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// url builds an http URL on the origin's port for a host.
func (h *harness) url(host, path string) string {
	return "http://" + net.JoinHostPort(host, strconv.Itoa(h.port)) + path
}

// wantError checks an error response of the proxy.
func wantError(t testing.TB, what string, resp *http.Response, body []byte, status int, code string) {
	t.Helper()
	if resp.StatusCode != status {
		t.Fatalf("%s: status = %d, want %d (body %s)", what, resp.StatusCode, status, body)
	}
	if got := resp.Header.Get(RefusalHeader); got != code {
		t.Errorf("%s: %s = %q, want %q", what, RefusalHeader, got, code)
	}
	var e errorBody
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("%s: body %q is not the JSON error: %v", what, body, err)
	}
	if e.Error.Code != code || e.Error.Message == "" {
		t.Errorf("%s: body = %+v, want code %q and a message", what, e, code)
	}
	if strings.ContainsAny(e.Error.Message, "\n\r") {
		t.Errorf("%s: message %q spans lines", what, e.Error.Message)
	}
}

func (h *harness) lastRefusal() (refusedCall, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.refusals) == 0 {
		return refusedCall{}, false
	}
	return h.refusals[len(h.refusals)-1], true
}

func (h *harness) counts() (decided, refused, seen int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.decided), len(h.refusals), len(h.seen)
}

// lastForward returns the result of the last forward of the default Decide, once every
// request it was given has one: the agent may have its response before forward returns.
func (h *harness) lastForward() forwarded {
	h.t.Helper()
	waitFor(h.t, "forward results", func() bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		return len(h.forwards) > 0 && len(h.forwards) >= len(h.decided)
	})
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.forwards[len(h.forwards)-1]
}

func (h *harness) lastSeen() originSeen {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.seen) == 0 {
		h.t.Fatal("the origin saw no request")
	}
	return h.seen[len(h.seen)-1]
}

// waitFor waits until cond holds, failing after a generous deadline; it asserts an
// outcome, not a duration.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// readUntilClosed reads c until it ends (EOF or reset), and fails only if it does not
// end before a generous deadline.
func readUntilClosed(c net.Conn) error {
	_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return err
	}
	return nil
}
