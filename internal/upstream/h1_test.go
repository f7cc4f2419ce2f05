package upstream

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// h1WaitFor waits up to 10s for cond.
func h1WaitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// countingServer is an httptest server that counts the connections it accepted and
// closed.
type countingServer struct {
	*httptest.Server
	opened, closed atomic.Int64
}

func newCountingServer(t testing.TB, h http.Handler) *countingServer {
	t.Helper()
	s := &countingServer{Server: httptest.NewUnstartedServer(h)}
	s.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		switch st {
		case http.StateNew:
			s.opened.Add(1)
		case http.StateClosed, http.StateHijacked:
			s.closed.Add(1)
		}
	}
	s.Start()
	t.Cleanup(s.Close)
	return s
}

// rawServer is a hand-written HTTP server on loopback for the tests that need a server to
// misbehave: serve runs once per accepted connection, which it owns.
type rawServer struct {
	ln       net.Listener
	accepted atomic.Int64
	wg       sync.WaitGroup

	mu    sync.Mutex
	conns []net.Conn // guarded by mu
}

func newRawServer(t testing.TB, serve func(c net.Conn, br *bufio.Reader)) *rawServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &rawServer{ln: ln}
	s.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.accepted.Add(1)
			s.mu.Lock()
			s.conns = append(s.conns, c)
			s.mu.Unlock()
			s.wg.Go(func() {
				defer c.Close()
				serve(c, bufio.NewReader(c))
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		s.mu.Lock()
		for _, c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
	return s
}

func (s *rawServer) url() string { return "http://" + s.ln.Addr().String() + "/mcp" }

// readRequest reads one request and its body on the server side.
func readRequest(br *bufio.Reader) (*http.Request, string, error) {
	req, err := http.ReadRequest(br)
	if err != nil {
		return nil, "", err
	}
	b, err := io.ReadAll(req.Body)
	return req, string(b), err
}

// post sends body to u with rt.
func post(ctx context.Context, rt http.RoundTripper, u, body string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, strings.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	return rt.RoundTrip(req)
}

// postRead sends body to u and reads the whole answer.
func postRead(t testing.TB, rt http.RoundTripper, u, body string) (*http.Response, string) {
	t.Helper()
	resp, err := post(context.Background(), rt, u, body)
	if err != nil {
		t.Fatalf("POST %s: %v", body, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("POST %s: read body: %v", body, err)
	}
	return resp, string(b)
}

func (t *h1Transport) idleCount() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for _, list := range t.idle {
		n += len(list)
	}
	return n
}

// newestIdle returns the connection the next request would try first, or nil.
func (t *h1Transport) newestIdle() *h1Conn {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, list := range t.idle {
		if len(list) > 0 {
			return list[len(list)-1]
		}
	}
	return nil
}

// echo answers with the request's body, as JSON with a Content-Length.
func echo(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Seen-Length", r.Header.Get("Content-Length"))
	w.Write(b)
}

func TestH1KeepAliveReusesOneConnection(t *testing.T) {
	t.Parallel()
	var (
		mu   sync.Mutex
		seen []http.Header
	)
	s := newCountingServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Header.Clone())
		mu.Unlock()
		echo(w, r)
	}))
	tr := newH1Transport(maxIdleConns)
	defer tr.CloseIdleConnections()
	for i := range 20 {
		body := fmt.Sprintf(`{"n":%d}`, i)
		resp, got := postRead(t, tr, s.URL+"/mcp?x=1", body)
		if resp.StatusCode != http.StatusOK || got != body {
			t.Fatalf("POST %s = %d %q, want 200 and the body echoed", body, resp.StatusCode, got)
		}
		if cl := resp.Header.Get("X-Seen-Length"); cl != fmt.Sprint(len(body)) {
			t.Errorf("server saw Content-Length %q, want %d", cl, len(body))
		}
	}
	if n := s.opened.Load(); n != 1 {
		t.Errorf("20 sequential calls opened %d connections, want 1", n)
	}
	if n := tr.idleCount(); n != 1 {
		t.Errorf("idle connections = %d, want 1", n)
	}
	mu.Lock()
	defer mu.Unlock()
	if h := seen[0]; h.Get("Content-Type") != "application/json" || h.Get("User-Agent") != h1UserAgent {
		t.Errorf("server saw headers %v", h)
	}
}

func TestH1Concurrent(t *testing.T) {
	t.Parallel()
	s := newCountingServer(t, http.HandlerFunc(echo))
	tr := newH1Transport(maxIdleConns)
	var wg sync.WaitGroup
	for g := range 32 {
		wg.Go(func() {
			for i := range 10 {
				body := fmt.Sprintf(`{"g":%d,"i":%d}`, g, i)
				resp, err := post(context.Background(), tr, s.URL, body)
				if err != nil {
					t.Errorf("POST %s: %v", body, err)
					return
				}
				b, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil || string(b) != body {
					t.Errorf("POST %s = %q, %v", body, b, err)
				}
			}
		})
	}
	wg.Wait()
	opened := s.opened.Load()
	if opened > 32 {
		t.Errorf("32 goroutines opened %d connections, want at most 32", opened)
	}
	if n := tr.idleCount(); int64(n) != opened {
		t.Errorf("idle connections = %d, want all %d that were opened", n, opened)
	}
	tr.CloseIdleConnections()
	if n := tr.idleCount(); n != 0 {
		t.Errorf("idle connections after CloseIdleConnections = %d", n)
	}
	h1WaitFor(t, "the server to see every connection closed", func() bool { return s.closed.Load() == opened })
}

// TestH1ResponseFraming sends two requests for each way of ending a response, and checks
// the answer and whether the second request reused the connection.
func TestH1ResponseFraming(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		response   string
		closeAfter bool // the server closes the connection after answering
		status     int
		body       string
		header     [2]string // a header field of the answer to check
		reused     bool
	}{
		{name: "content-length", response: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
			status: 200, body: "hello", reused: true},
		{name: "chunked", response: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhel\r\n2\r\nlo\r\n0\r\n\r\n",
			status: 200, body: "hello", reused: true},
		{name: "chunked with trailer", response: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-T\r\n\r\n5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n",
			status: 200, body: "hello", reused: true},
		{name: "no content", response: "HTTP/1.1 204 No Content\r\n\r\n",
			status: 204, reused: true},
		{name: "1xx first", response: "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
			status: 200, body: "ok", reused: true},
		{name: "not found passes through", response: "HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nnot found",
			status: 404, body: "not found", reused: true},
		{name: "redirect returned as is", response: "HTTP/1.1 307 Temporary Redirect\r\nLocation: http://elsewhere.invalid/\r\nContent-Length: 0\r\n\r\n",
			status: 307, header: [2]string{"Location", "http://elsewhere.invalid/"}, reused: true},
		{name: "close-delimited", response: "HTTP/1.1 200 OK\r\n\r\nuntil the end", closeAfter: true,
			status: 200, body: "until the end"},
		{name: "connection close", response: "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok", closeAfter: true,
			status: 200, body: "ok"},
		{name: "HTTP/1.0", response: "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", closeAfter: true,
			status: 200, body: "ok"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var requests atomic.Int64
			s := newRawServer(t, func(c net.Conn, br *bufio.Reader) {
				for {
					if _, _, err := readRequest(br); err != nil {
						return
					}
					requests.Add(1)
					io.WriteString(c, tc.response)
					if tc.closeAfter {
						return
					}
				}
			})
			tr := newH1Transport(maxIdleConns)
			defer tr.CloseIdleConnections()
			for i := range 2 {
				resp, body := postRead(t, tr, s.url(), "{}")
				if resp.StatusCode != tc.status || body != tc.body {
					t.Errorf("request %d: %d %q, want %d %q", i, resp.StatusCode, body, tc.status, tc.body)
				}
				if k := tc.header[0]; k != "" && resp.Header.Get(k) != tc.header[1] {
					t.Errorf("request %d: %s = %q, want %q", i, k, resp.Header.Get(k), tc.header[1])
				}
				if got, want := tr.idleCount(), map[bool]int{true: 1, false: 0}[tc.reused]; got != want {
					t.Errorf("request %d: idle connections = %d, want %d", i, got, want)
				}
			}
			want := map[bool]int64{true: 1, false: 2}[tc.reused]
			if n := s.accepted.Load(); n != want {
				t.Errorf("two requests used %d connections, want %d", n, want)
			}
			if n := requests.Load(); n != 2 {
				t.Errorf("the server saw %d requests, want 2", n)
			}
		})
	}
}

func TestH1StreamsEventStreams(t *testing.T) {
	t.Parallel()
	next := make(chan struct{})
	s := newCountingServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "data: one\n\n")
		w.(http.Flusher).Flush()
		select {
		case <-next:
		case <-r.Context().Done():
			return
		}
		io.WriteString(w, "data: two\n\n")
	}))
	tr := newH1Transport(maxIdleConns)
	defer tr.CloseIdleConnections()
	// RoundTrip returns, and the first event can be read, while the handler is still
	// waiting to send the second: nothing waits for, or buffers, the whole body.
	resp, err := post(context.Background(), tr, s.URL, "{}")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	if !sc.Scan() || sc.Text() != "data: one" {
		t.Fatalf("first line = %q, %v; want %q", sc.Text(), sc.Err(), "data: one")
	}
	close(next)
	var rest []string
	for sc.Scan() {
		rest = append(rest, sc.Text())
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(rest, "|"); got != "|data: two|" {
		t.Errorf("rest of the stream = %q", got)
	}
	if n := tr.idleCount(); n != 1 {
		t.Errorf("idle connections after the stream ended = %d, want 1", n)
	}
}

// TestH1ServerClosesIdleConnections has a server that closes every connection after one
// answer without saying so: each next call must notice, take a new connection, and reach
// the server exactly once.
func TestH1ServerClosesIdleConnections(t *testing.T) {
	t.Parallel()
	var (
		mu   sync.Mutex
		seen []string
	)
	s := newRawServer(t, func(c net.Conn, br *bufio.Reader) {
		_, body, err := readRequest(br)
		if err != nil {
			return
		}
		mu.Lock()
		seen = append(seen, body)
		mu.Unlock()
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	})
	tr := newH1Transport(maxIdleConns)
	defer tr.CloseIdleConnections()
	var want []string
	for i := range 3 {
		body := fmt.Sprintf(`{"n":%d}`, i)
		want = append(want, body)
		if _, got := postRead(t, tr, s.url(), body); got != "ok" {
			t.Fatalf("POST %s = %q", body, got)
		}
		pc := tr.newestIdle()
		if pc == nil {
			t.Fatalf("POST %s: no idle connection", body)
		}
		h1WaitFor(t, "the server's close to arrive", func() bool { return !pc.alive() })
	}
	mu.Lock()
	defer mu.Unlock()
	if strings.Join(seen, " ") != strings.Join(want, " ") {
		t.Errorf("the server saw %q, want each request once: %q", seen, want)
	}
	if n := s.accepted.Load(); n != 3 {
		t.Errorf("connections = %d, want 3", n)
	}
}

func TestH1RequestConnectionClose(t *testing.T) {
	t.Parallel()
	var closes atomic.Int64
	s := newCountingServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Close {
			closes.Add(1)
		}
		echo(w, r)
	}))
	tr := newH1Transport(maxIdleConns)
	for range 2 {
		req, _ := http.NewRequest(http.MethodPost, s.URL, strings.NewReader("{}"))
		req.Close = true
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		io.ReadAll(resp.Body)
		resp.Body.Close()
		if n := tr.idleCount(); n != 0 {
			t.Errorf("idle connections after a request with Connection: close = %d", n)
		}
	}
	if n := closes.Load(); n != 2 {
		t.Errorf("the server saw Connection: close %d times, want 2", n)
	}
	if n := s.opened.Load(); n != 2 {
		t.Errorf("connections = %d, want 2", n)
	}
}

func TestH1ServerDiesMidBody(t *testing.T) {
	t.Parallel()
	for name, response := range map[string]string{
		"content-length": "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten b",
		"chunked":        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n64\r\nonly ten b",
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			s := newRawServer(t, func(c net.Conn, br *bufio.Reader) {
				if _, _, err := readRequest(br); err == nil {
					io.WriteString(c, response)
				}
			})
			tr := newH1Transport(maxIdleConns)
			resp, err := post(context.Background(), tr, s.url(), "{}")
			if err != nil {
				t.Fatal(err)
			}
			b, err := io.ReadAll(resp.Body)
			if !errors.Is(err, io.ErrUnexpectedEOF) || string(b) != "only ten b" {
				t.Errorf("ReadAll = %q, %v; want the ten bytes and io.ErrUnexpectedEOF", b, err)
			}
			resp.Body.Close()
			if n := tr.idleCount(); n != 0 {
				t.Errorf("idle connections = %d, want 0", n)
			}
		})
	}
}

// h1Goroutines counts the goroutines running this file's code.
func h1Goroutines() int {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	n := 0
	for g := range bytes.SplitSeq(buf, []byte("\n\n")) {
		if bytes.Contains(g, []byte("upstream.(*h1")) {
			n++
		}
	}
	return n
}

// TestH1Cancellation is not parallel: at its end no goroutine may be left in h1.go.
func TestH1Cancellation(t *testing.T) {
	arrived := make(chan struct{}, 1)
	s := newCountingServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.ReadAll(r.Body)
		if r.URL.Path == "/body" {
			w.Header().Set("Content-Type", "text/event-stream")
			io.WriteString(w, "data: partial\n\n")
			w.(http.Flusher).Flush()
		}
		if r.URL.Path != "/deadline" {
			arrived <- struct{}{}
		}
		<-r.Context().Done() // until the client goes away
	}))
	// A server that never reads: a large request fills the socket buffers and blocks.
	deaf := newRawServer(t, func(net.Conn, *bufio.Reader) { <-t.Context().Done() })
	tr := newH1Transport(maxIdleConns)
	const prompt = 2 * time.Second

	t.Run("waiting for the header", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		go func() { <-arrived; cancel() }()
		start := time.Now()
		_, err := post(ctx, tr, s.URL+"/head", "{}")
		if !errors.Is(err, context.Canceled) {
			t.Errorf("RoundTrip = %v, want it to wrap context.Canceled", err)
		}
		if d := time.Since(start); d > prompt {
			t.Errorf("RoundTrip returned %v after the cancellation", d)
		}
	})
	t.Run("deadline waiting for the header", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		_, err := post(ctx, tr, s.URL+"/deadline", "{}")
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("RoundTrip = %v, want it to wrap context.DeadlineExceeded", err)
		}
	})
	t.Run("reading the body", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		resp, err := post(ctx, tr, s.URL+"/body", "{}")
		if err != nil {
			t.Fatal(err)
		}
		<-arrived
		br := bufio.NewReader(resp.Body)
		if line, err := br.ReadString('\n'); line != "data: partial\n" {
			t.Fatalf("first line = %q, %v", line, err)
		}
		cancel()
		start := time.Now()
		_, err = io.ReadAll(br)
		if !errors.Is(err, context.Canceled) {
			t.Errorf("reading after the cancellation = %v, want it to wrap context.Canceled", err)
		}
		if d := time.Since(start); d > prompt {
			t.Errorf("Read returned %v after the cancellation", d)
		}
		if err := resp.Body.Close(); err != nil {
			t.Errorf("Close = %v", err)
		}
	})
	t.Run("writing the request", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		go func() {
			for deaf.accepted.Load() == 0 {
				time.Sleep(5 * time.Millisecond)
			}
			cancel()
		}()
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, deaf.url(), bytes.NewReader(make([]byte, 64<<20)))
		_, err := tr.RoundTrip(req)
		if !errors.Is(err, context.Canceled) {
			t.Errorf("RoundTrip = %v, want it to wrap context.Canceled", err)
		}
	})
	if n := tr.idleCount(); n != 0 {
		t.Errorf("idle connections after cancelled exchanges = %d, want 0", n)
	}
	h1WaitFor(t, "the server to see every connection closed", func() bool { return s.closed.Load() == s.opened.Load() })
	h1WaitFor(t, "no goroutine left in h1.go", func() bool { return h1Goroutines() == 0 })
}

// closeTracker records whether a request body was closed.
type closeTracker struct {
	io.Reader
	closed atomic.Bool
}

func (c *closeTracker) Close() error { c.closed.Store(true); return nil }

func TestH1RefusesBadRequests(t *testing.T) {
	t.Parallel()
	const secret = "s3cret"
	s := newRawServer(t, func(net.Conn, *bufio.Reader) {})
	base, _ := url.Parse(s.url())
	for _, tc := range []struct {
		name    string
		edit    func(r *http.Request)
		mention string
	}{
		{"CRLF in a header value", func(r *http.Request) {
			r.Header["Authorization"] = []string{"Bearer " + secret + "\r\nX-Injected: 1"}
		}, `invalid value for header field "Authorization"`},
		{"LF in a header value", func(r *http.Request) { r.Header["X-A"] = []string{secret + "\n"} }, "invalid value"},
		{"NUL in a header value", func(r *http.Request) { r.Header["X-A"] = []string{secret + "\x00"} }, "invalid value"},
		{"space in a header name", func(r *http.Request) { r.Header["X Bad"] = []string{"1"} }, "invalid header field name"},
		{"CRLF in a header name", func(r *http.Request) { r.Header["X-A\r\nX-B"] = []string{"1"} }, "invalid header field name"},
		{"colon in a header name", func(r *http.Request) { r.Header["X:B"] = []string{"1"} }, "invalid header field name"},
		{"CRLF in Host", func(r *http.Request) { r.Host = "h\r\nX-Injected: 1" }, "invalid Host"},
		{"space in the method", func(r *http.Request) { r.Method = "GET /x HTTP/1.1\r\n" }, "invalid method"},
		{"space in the target", func(r *http.Request) { r.URL.RawQuery = "a b" }, "invalid request target"},
		{"https", func(r *http.Request) { r.URL.Scheme = "https" }, `unsupported scheme "https"`},
		{"no host", func(r *http.Request) { r.URL.Host = "" }, "no host"},
		{"body of unknown length", func(r *http.Request) { r.ContentLength = -1 }, "unknown length"},
		{"chunked request", func(r *http.Request) { r.TransferEncoding = []string{"chunked"} }, "not supported"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			u := *base
			body := &closeTracker{Reader: strings.NewReader("{}")}
			req := &http.Request{Method: http.MethodPost, URL: &u, Header: http.Header{}, Body: body, ContentLength: 2}
			req = req.WithContext(context.Background())
			tc.edit(req)
			_, err := newH1Transport(1).RoundTrip(req)
			if err == nil || !strings.Contains(err.Error(), tc.mention) {
				t.Errorf("RoundTrip = %v, want an error mentioning %q", err, tc.mention)
			}
			if err != nil && strings.Contains(err.Error(), secret) {
				t.Errorf("the error %q shows a header value", err)
			}
			if !body.closed.Load() {
				t.Errorf("the request body was not closed")
			}
		})
	}
	if n := s.accepted.Load(); n != 0 {
		t.Errorf("refused requests opened %d connections", n)
	}
}

func TestH1RequestBodyLength(t *testing.T) {
	t.Parallel()
	var requests atomic.Int64
	s := newCountingServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		echo(w, r)
	}))
	tr := newH1Transport(1)
	for _, tc := range []struct {
		name    string
		body    io.Reader
		length  int64
		mention string
	}{
		{"shorter than ContentLength", strings.NewReader("12345"), 10, "5 bytes short of ContentLength"},
		{"longer than ContentLength", strings.NewReader("12345"), 3, "longer than ContentLength"},
	} {
		req, _ := http.NewRequest(http.MethodPost, s.URL, io.NopCloser(tc.body))
		req.ContentLength = tc.length
		if _, err := tr.RoundTrip(req); err == nil || !strings.Contains(err.Error(), tc.mention) {
			t.Errorf("%s: RoundTrip = %v, want an error mentioning %q", tc.name, err, tc.mention)
		}
	}
	if n := requests.Load(); n != 0 {
		t.Errorf("the server received %d requests with a wrong body length", n)
	}
	// A GET without a body sends no Content-Length; a request with a plain reader of
	// known length is fine.
	req, _ := http.NewRequest(http.MethodPut, s.URL, io.NopCloser(strings.NewReader("abc")))
	req.ContentLength = 3
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := io.ReadAll(resp.Body); string(b) != "abc" || resp.Header.Get("X-Seen-Length") != "3" {
		t.Errorf("PUT = %q with Content-Length %q", b, resp.Header.Get("X-Seen-Length"))
	}
	resp.Body.Close()
	req, _ = http.NewRequest(http.MethodGet, s.URL, nil)
	resp, err = tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if cl := resp.Header.Get("X-Seen-Length"); cl != "" {
		t.Errorf("GET sent Content-Length %q", cl)
	}
}

func TestH1BadResponses(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, response, mention string
	}{
		{"garbage", "garbage\r\n\r\n", "malformed HTTP response"},
		{"bad status", "HTTP/1.1 2000 OK\r\n\r\n", "malformed HTTP status code"},
		{"bad content length", "HTTP/1.1 200 OK\r\nContent-Length: -5\r\n\r\n", "Content-Length"},
		{"oversized header", "HTTP/1.1 200 OK\r\nX-Big: " + strings.Repeat("a", 2<<20) + "\r\n\r\n", "response header larger than 1048576 bytes"},
		{"endless 1xx", strings.Repeat("HTTP/1.1 100 Continue\r\n\r\n", 10), "more than 5 informational responses"},
		{"switching protocols", "HTTP/1.1 101 Switching Protocols\r\n\r\n", "unexpected 101"},
		{"nothing", "", "unexpected EOF"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newRawServer(t, func(c net.Conn, br *bufio.Reader) {
				if _, _, err := readRequest(br); err == nil {
					io.WriteString(c, tc.response)
				}
			})
			tr := newH1Transport(1)
			_, err := post(context.Background(), tr, s.url(), "{}")
			if err == nil || !strings.Contains(err.Error(), tc.mention) {
				t.Errorf("RoundTrip = %v, want an error mentioning %q", err, tc.mention)
			}
			if n := tr.idleCount(); n != 0 {
				t.Errorf("idle connections = %d, want 0", n)
			}
		})
	}
}

// TestH1CloseBeforeEOF checks what Close does to a body that was not read to the end.
func TestH1CloseBeforeEOF(t *testing.T) {
	t.Parallel()
	hold := make(chan struct{})
	t.Cleanup(func() { close(hold) })
	s := newCountingServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/small":
			io.WriteString(w, strings.Repeat("s", 100))
		case "/large":
			io.WriteString(w, strings.Repeat("l", 1<<20))
		case "/open":
			w.Header().Set("Content-Type", "text/event-stream")
			io.WriteString(w, "data: first\n\n")
			w.(http.Flusher).Flush()
			select {
			case <-hold:
			case <-r.Context().Done():
			}
		}
	}))
	for _, tc := range []struct {
		path   string
		reused bool
	}{
		{"/small", true}, // the rest is there already: drained
		{"/large", false},
		{"/open", false}, // the rest has not come: Close must not wait for it
	} {
		t.Run(tc.path, func(t *testing.T) {
			t.Parallel()
			tr := newH1Transport(1)
			resp, err := post(context.Background(), tr, s.URL+tc.path, "{}")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := resp.Body.Read(make([]byte, 1)); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			resp.Body.Close()
			if d := time.Since(start); d > time.Second {
				t.Errorf("Close took %v", d)
			}
			if got, want := tr.idleCount(), map[bool]int{true: 1, false: 0}[tc.reused]; got != want {
				t.Errorf("idle connections = %d, want %d", got, want)
			}
			if _, err := resp.Body.Read(make([]byte, 1)); !errors.Is(err, http.ErrBodyReadAfterClose) {
				t.Errorf("Read after Close = %v, want http.ErrBodyReadAfterClose", err)
			}
		})
	}
	t.Run("concurrent with a blocked Read", func(t *testing.T) {
		t.Parallel()
		tr := newH1Transport(1)
		resp, err := post(context.Background(), tr, s.URL+"/open", "{}")
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() {
			_, err := io.ReadAll(resp.Body)
			done <- err
		}()
		h1WaitFor(t, "the first event to be read", func() bool {
			b := resp.Body.(*h1Body)
			b.mu.Lock()
			defer b.mu.Unlock()
			return b.n > 0 && b.reading
		})
		resp.Body.Close()
		select {
		case err := <-done:
			if err == nil {
				t.Errorf("ReadAll succeeded on a closed body")
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Close did not end the blocked Read")
		}
		if n := tr.idleCount(); n != 0 {
			t.Errorf("idle connections = %d, want 0", n)
		}
	})
}

// pipeConn is an idle connection put in the pool by hand: its peer end is served by fn.
func pipeConn(t *testing.T, tr *h1Transport, addr string, fn func(peer net.Conn)) {
	t.Helper()
	c, peer := net.Pipe()
	var wg sync.WaitGroup
	wg.Go(func() { defer peer.Close(); fn(peer) })
	t.Cleanup(func() { c.Close(); wg.Wait() })
	tr.release(newH1Conn(c, addr), true)
}

// TestH1RetriesOnlyWhenNothingWasWritten uses pooled connections that fail in ways the
// liveness check cannot see (net.Pipe has no file descriptor).
func TestH1RetriesOnlyWhenNothingWasWritten(t *testing.T) {
	t.Parallel()
	t.Run("write fails at once: retried on a new connection", func(t *testing.T) {
		t.Parallel()
		var requests atomic.Int64
		s := newCountingServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			requests.Add(1)
			echo(w, r)
		}))
		tr := newH1Transport(maxIdleConns)
		pipeConn(t, tr, s.Listener.Addr().String(), func(net.Conn) {}) // closed at once
		if _, body := postRead(t, tr, s.URL, `{"once":1}`); body != `{"once":1}` {
			t.Errorf("body = %q", body)
		}
		if n := requests.Load(); n != 1 {
			t.Errorf("the server saw %d requests, want 1", n)
		}
	})
	t.Run("request written, then the connection fails: not retried", func(t *testing.T) {
		t.Parallel()
		var requests atomic.Int64
		s := newCountingServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			requests.Add(1)
			echo(w, r)
		}))
		tr := newH1Transport(maxIdleConns)
		var got atomic.Int64
		pipeConn(t, tr, s.Listener.Addr().String(), func(peer net.Conn) {
			if _, _, err := readRequest(bufio.NewReader(peer)); err == nil {
				got.Add(1)
			}
		})
		_, err := post(context.Background(), tr, s.URL, `{"once":1}`)
		if err == nil || !strings.Contains(err.Error(), "read response") {
			t.Errorf("RoundTrip = %v, want a failure reading the response", err)
		}
		if got.Load() != 1 || requests.Load() != 0 || s.opened.Load() != 0 {
			t.Errorf("the request reached the first connection %d times and was sent again %d times (%d connections), want 1, 0, 0",
				got.Load(), requests.Load(), s.opened.Load())
		}
	})
}

// fakeClock is a time source the tests move by hand.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func TestH1IdleTimeout(t *testing.T) {
	t.Parallel()
	s := newCountingServer(t, http.HandlerFunc(echo))
	clock := &fakeClock{now: time.Unix(1e9, 0)}
	tr := newH1Transport(maxIdleConns)
	tr.now = clock.Now
	defer tr.CloseIdleConnections()

	postRead(t, tr, s.URL, "{}")
	clock.Advance(h1IdleTimeout - time.Second)
	postRead(t, tr, s.URL, "{}")
	if n := s.opened.Load(); n != 1 {
		t.Errorf("connections after a call within the idle timeout = %d, want 1", n)
	}
	clock.Advance(h1IdleTimeout)
	postRead(t, tr, s.URL, "{}")
	if n := s.opened.Load(); n != 2 {
		t.Errorf("connections after a call past the idle timeout = %d, want 2", n)
	}
	h1WaitFor(t, "the expired connection to be closed", func() bool { return s.closed.Load() == 1 })

	clock.Advance(h1IdleTimeout)
	tr.sweepIdle()
	if n := tr.idleCount(); n != 0 {
		t.Errorf("idle connections after the sweep = %d, want 0", n)
	}
	tr.mu.Lock()
	armed := tr.sweep != nil
	tr.mu.Unlock()
	if armed {
		t.Errorf("the sweep timer is armed with no idle connection left")
	}
	h1WaitFor(t, "the swept connection to be closed", func() bool { return s.closed.Load() == 2 })
}

func TestH1MaxIdle(t *testing.T) {
	t.Parallel()
	const n = 4
	arrived := make(chan struct{}, n)
	release := make(chan struct{})
	s := newCountingServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		<-release
		echo(w, r)
	}))
	tr := newH1Transport(2)
	defer tr.CloseIdleConnections()
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			resp, err := post(context.Background(), tr, s.URL, "{}")
			if err != nil {
				t.Error(err)
				return
			}
			io.ReadAll(resp.Body)
			resp.Body.Close()
		})
	}
	for range n {
		<-arrived
	}
	close(release)
	wg.Wait()
	if got := tr.idleCount(); got != 2 {
		t.Errorf("idle connections = %d, want 2 (the bound)", got)
	}
	h1WaitFor(t, "the server to see two connections closed", func() bool { return s.closed.Load() == n-2 })
}

// TestNewUsesH1ForPlainHTTP checks the wiring: direct calls over http:// take h1Transport,
// https:// ones net/http.
func TestNewUsesH1ForPlainHTTP(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		url string
		h1  bool
	}{
		{"http://127.0.0.1:9/mcp", true},
		{"https://127.0.0.1:9/mcp", false},
	} {
		c, err := New(Config{Name: "x", URL: tc.url})
		if err != nil {
			t.Fatal(err)
		}
		if got := c.h1 != nil && c.direct != nil; got != tc.h1 {
			t.Errorf("New(%s): direct calls on h1Transport = %v, want %v", tc.url, got, tc.h1)
		}
	}
}

// FuzzH1WriteRequest checks that whatever a request carries, h1Transport either refuses it
// or writes exactly it: the standard parser reads back the same method, target, Host and
// header field, and no other field (no injection).
func FuzzH1WriteRequest(f *testing.F) {
	f.Add("POST", "/mcp?a=1", "127.0.0.1:8080", "Authorization", "Bearer x", "{}")
	f.Add("GET", "/", "example.com", "X-A", "a\r\nX-Injected: 1", "")
	f.Add("POST", "/", "h\r\nX: 1", "X-B", " padded\t", "body")
	f.Add("PO ST", "/a b", "h", "X C", "\x00", "")
	f.Add("POST", "/", "h", "Connection", "close", "x")
	f.Add("POST", "/", "h", "Host", "other", "x")
	f.Fuzz(func(t *testing.T, method, target, host, name, value, body string) {
		u, err := url.Parse("http://h" + target)
		if err != nil || !strings.HasPrefix(target, "/") {
			return
		}
		req := &http.Request{Method: method, URL: u, Host: host, Header: http.Header{name: {value}}, ContentLength: int64(len(body))}
		if body != "" {
			req.Body = io.NopCloser(strings.NewReader(body))
		}
		r, err := checkRequest(req, req.Body != nil)
		if err != nil {
			return
		}
		var out bytes.Buffer
		bw := bufio.NewWriter(&out)
		var src io.Reader
		if req.Body != nil {
			src = req.Body
		}
		if err := writeRequest(bw, req, &r, src); err != nil {
			t.Fatalf("writeRequest: %v", err)
		}
		got, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(out.Bytes())))
		if err != nil {
			t.Fatalf("the written request does not parse: %v\n%q", err, out.Bytes())
		}
		gotBody, err := io.ReadAll(got.Body)
		if err != nil || string(gotBody) != body {
			t.Fatalf("body = %q, %v; want %q", gotBody, err, body)
		}
		if got.Method != r.method || got.RequestURI != r.uri || got.Host != r.host {
			t.Fatalf("request line/Host = %q %q %q, want %q %q %q", got.Method, got.RequestURI, got.Host, r.method, r.uri, r.host)
		}
		key := http.CanonicalHeaderKey(name)
		want := map[string]bool{"User-Agent": true, "Content-Length": true, "Connection": true}
		if !h1Excluded(name) || key == "User-Agent" {
			want[key] = true
			vals := got.Header.Values(key)
			if key == "User-Agent" && value == "" {
				vals = []string{""} // an empty User-Agent is left out
			}
			if len(vals) != 1 || vals[0] != strings.Trim(value, " \t") {
				t.Fatalf("%s = %q, want [%q]", key, vals, value)
			}
		}
		for k := range got.Header {
			if !want[k] {
				t.Fatalf("unexpected header field %q in\n%q", k, out.Bytes())
			}
		}
	})
}

// BenchmarkH1Transport compares h1Transport with net/http's transport (called directly, and
// through an http.Client as callHTTP used to) on one httptest server: a 256-byte JSON POST
// answered with 256 bytes of JSON. Allocations include the server's, the same for all.
func BenchmarkH1Transport(b *testing.B) {
	pad := func(prefix, suffix string) []byte {
		return []byte(prefix + strings.Repeat("x", 256-len(prefix)-len(suffix)) + suffix)
	}
	reqBody := pad(`{"jsonrpc":"2.0","id":"chaperone-1","method":"tools/call","params":{"name":"echo","arguments":{"text":"`, `"}}}`)
	answer := pad(`{"jsonrpc":"2.0","id":"chaperone-1","result":{"content":[{"type":"text","text":"`, `"}]}}`)
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		h := w.Header()
		h["Content-Type"] = []string{"application/json"}
		h["Content-Length"] = []string{"256"}
		w.Write(answer)
	}))
	b.Cleanup(ts.Close)
	std := func() *http.Transport {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConnsPerHost, tr.MaxIdleConns = maxIdleConns, maxIdleConns
		return tr
	}
	h1 := newH1Transport(maxIdleConns)
	stdTr, clientTr := std(), std()
	client := &http.Client{Transport: clientTr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	b.Cleanup(func() {
		h1.CloseIdleConnections()
		stdTr.CloseIdleConnections()
		clientTr.CloseIdleConnections()
	})
	for _, bc := range []struct {
		name string
		rt   func(*http.Request) (*http.Response, error)
	}{
		{"h1", h1.RoundTrip},
		{"std", stdTr.RoundTrip},
		{"std-client", client.Do},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				req, _ := http.NewRequestWithContext(ctx, http.MethodPost, ts.URL, bytes.NewReader(reqBody))
				req.Header["Content-Type"] = []string{"application/json"}
				req.Header["Accept"] = []string{"application/json, text/event-stream"}
				resp, err := bc.rt(req)
				if err != nil {
					b.Fatal(err)
				}
				if n, err := io.Copy(io.Discard, resp.Body); err != nil || n != 256 {
					b.Fatalf("read %d bytes: %v", n, err)
				}
				resp.Body.Close()
				cancel()
			}
		})
	}
}
