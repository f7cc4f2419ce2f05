package upstream_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/chaperone-dev/chaperone/internal/upstream"
)

// callServer is a streamable HTTP MCP server whose tools/call answers a test chooses:
// everything else (initialize, tools/list, notifications) is fakeServer's. It records the
// requests it saw.
type callServer struct {
	fake   *fakeServer
	answer func(w http.ResponseWriter, r *http.Request, id json.RawMessage)

	inits atomic.Int64
	mu    sync.Mutex
	seen  []seenRequest // guarded by mu
}

type seenRequest struct {
	method string
	body   string
	header http.Header
}

func (s *callServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	var m struct {
		ID     json.RawMessage `json:"id"`
		Method string          `json:"method"`
	}
	_ = json.Unmarshal(body, &m)
	s.mu.Lock()
	s.seen = append(s.seen, seenRequest{method: m.Method, body: string(body), header: r.Header.Clone()})
	s.mu.Unlock()
	if m.Method == "initialize" {
		s.inits.Add(1)
		w.Header().Set("Mcp-Session-Id", fmt.Sprintf("session-%d", s.inits.Load()))
	}
	if m.Method == "tools/call" {
		s.answer(w, r, m.ID)
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	s.fake.ServeHTTP(w, r)
}

// requests returns the recorded requests of method.
func (s *callServer) requests(method string) []seenRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []seenRequest
	for _, r := range s.seen {
		if r.method == method {
			out = append(out, r)
		}
	}
	return out
}

func newCallServer(t *testing.T, answer func(w http.ResponseWriter, r *http.Request, id json.RawMessage)) (*callServer, *upstream.Client) {
	t.Helper()
	s := &callServer{fake: &fakeServer{listResult: `{"tools":[{"name":"t","inputSchema":{"type":"object"}}]}`}, answer: answer}
	ts := httptest.NewServer(s)
	t.Cleanup(ts.Close)
	c := newClient(t, upstream.Config{Name: "direct", URL: ts.URL, CallTimeout: 5 * time.Second})
	waitReady(t, c)
	return s, c
}

func jsonAnswer(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	io.WriteString(w, body)
}

func TestDirectCallCarriesTheSession(t *testing.T) {
	t.Parallel()
	s, c := newCallServer(t, func(w http.ResponseWriter, _ *http.Request, id json.RawMessage) {
		jsonAnswer(w, http.StatusOK, `{"jsonrpc":"2.0","id":`+string(id)+`,"result":{"content":[],"n":1.50}}`)
	})
	raw, err := c.Call(context.Background(), "t", json.RawMessage(`{"a": [1, 2]}`))
	if err != nil {
		t.Fatal(err)
	}
	if string(raw) != `{"content":[],"n":1.50}` {
		t.Errorf("result = %s, want the upstream's bytes", raw)
	}
	calls := s.requests("tools/call")
	if len(calls) != 1 {
		t.Fatalf("upstream saw %d calls", len(calls))
	}
	h := calls[0].header
	if h.Get("Mcp-Session-Id") != "session-1" || h.Get("Mcp-Protocol-Version") != "2025-11-25" {
		t.Errorf("session headers = %q, %q", h.Get("Mcp-Session-Id"), h.Get("Mcp-Protocol-Version"))
	}
	if !strings.Contains(h.Get("Accept"), "text/event-stream") || h.Get("Content-Type") != "application/json" {
		t.Errorf("Accept %q, Content-Type %q", h.Get("Accept"), h.Get("Content-Type"))
	}
	var req struct {
		JSONRPC string          `json:"jsonrpc"`
		ID      any             `json:"id"`
		Params  json.RawMessage `json:"params"`
	}
	if err := json.Unmarshal([]byte(calls[0].body), &req); err != nil {
		t.Fatal(err)
	}
	if _, isString := req.ID.(string); !isString || req.JSONRPC != "2.0" {
		t.Errorf("request id %v (want a string, distinct from the SDK's integers), jsonrpc %q", req.ID, req.JSONRPC)
	}
	if string(req.Params) != `{"name":"t","arguments":{"a": [1, 2]}}` {
		t.Errorf("params = %s: arguments must be sent verbatim", req.Params)
	}
}

func TestDirectCallErrors(t *testing.T) {
	t.Parallel()
	big := strings.Repeat("x", mcp.DefaultMaxEventSize)
	for _, tc := range []struct {
		name        string
		answer      func(w http.ResponseWriter, id json.RawMessage)
		unavailable bool   // the error wraps ErrUnavailable
		wireCode    int64  // the error is the upstream's JSON-RPC error with this code
		mention     string // the error says this
	}{
		{"JSON-RPC error", func(w http.ResponseWriter, id json.RawMessage) {
			jsonAnswer(w, http.StatusOK, `{"jsonrpc":"2.0","id":`+string(id)+`,"error":{"code":-32602,"message":"unknown tool"}}`)
		}, false, -32602, "unknown tool"},
		{"JSON-RPC error with HTTP 400", func(w http.ResponseWriter, id json.RawMessage) {
			jsonAnswer(w, http.StatusBadRequest, `{"jsonrpc":"2.0","id":`+string(id)+`,"error":{"code":-32602,"message":"bad arguments"}}`)
		}, false, -32602, "bad arguments"},
		{"HTTP 500 text", func(w http.ResponseWriter, _ json.RawMessage) {
			http.Error(w, "upstream exploded", http.StatusInternalServerError)
		}, true, 0, `HTTP 500: "upstream exploded\n"`},
		{"HTTP 502 JSON without an answer", func(w http.ResponseWriter, _ json.RawMessage) {
			jsonAnswer(w, http.StatusBadGateway, `{"message":"no"}`)
		}, true, 0, "HTTP 502"},
		{"answer to another request", func(w http.ResponseWriter, _ json.RawMessage) {
			jsonAnswer(w, http.StatusOK, `{"jsonrpc":"2.0","id":"chaperone-999","result":{}}`)
		}, true, 0, "not the answer to request chaperone-1"},
		{"neither result nor error", func(w http.ResponseWriter, id json.RawMessage) {
			jsonAnswer(w, http.StatusOK, `{"jsonrpc":"2.0","id":`+string(id)+`}`)
		}, true, 0, "neither result nor error"},
		{"not JSON", func(w http.ResponseWriter, _ json.RawMessage) {
			jsonAnswer(w, http.StatusOK, `{"jsonrpc":`)
		}, true, 0, "decode response"},
		{"unsupported content type", func(w http.ResponseWriter, _ json.RawMessage) {
			w.Header().Set("Content-Type", "text/html")
			io.WriteString(w, "<html>")
		}, true, 0, `unsupported content type "text/html"`},
		{"oversized JSON", func(w http.ResponseWriter, id json.RawMessage) {
			jsonAnswer(w, http.StatusOK, `{"jsonrpc":"2.0","id":`+string(id)+`,"result":{"text":"`+big+`"}}`)
		}, true, 0, fmt.Sprintf("response larger than %d bytes", mcp.DefaultMaxEventSize)},
		{"stream ends before the answer", func(w http.ResponseWriter, _ json.RawMessage) {
			w.Header().Set("Content-Type", "text/event-stream")
			io.WriteString(w, "data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{}}\n\n")
		}, true, 0, "the stream ended before the response"},
		{"oversized stream event", func(w http.ResponseWriter, id json.RawMessage) {
			w.Header().Set("Content-Type", "text/event-stream")
			io.WriteString(w, "data: {\"jsonrpc\":\"2.0\",\"id\":"+string(id)+",\"result\":{\"text\":\""+big+"\"}}\n\n")
		}, true, 0, fmt.Sprintf("longer than %d bytes", mcp.DefaultMaxEventSize)},
		{"stream event not JSON", func(w http.ResponseWriter, _ json.RawMessage) {
			w.Header().Set("Content-Type", "text/event-stream")
			io.WriteString(w, "data: {oops\n\n")
		}, true, 0, "decode stream event"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, c := newCallServer(t, func(w http.ResponseWriter, _ *http.Request, id json.RawMessage) { tc.answer(w, id) })
			_, err := c.Call(context.Background(), "t", nil)
			if err == nil {
				t.Fatal("Call succeeded")
			}
			if got := errors.Is(err, upstream.ErrUnavailable); got != tc.unavailable {
				t.Errorf("errors.Is(err, ErrUnavailable) = %v, want %v (err: %v)", got, tc.unavailable, err)
			}
			var wire *jsonrpc.Error
			if tc.wireCode != 0 && (!errors.As(err, &wire) || wire.Code != tc.wireCode) {
				t.Errorf("err = %v, want the upstream's JSON-RPC error %d", err, tc.wireCode)
			}
			if !strings.Contains(err.Error(), tc.mention) {
				t.Errorf("err = %v, want it to mention %q", err, tc.mention)
			}
		})
	}
}

func TestDirectCallSessionExpiredReconnects(t *testing.T) {
	t.Parallel()
	var calls atomic.Int64
	s, c := newCallServer(t, func(w http.ResponseWriter, _ *http.Request, id json.RawMessage) {
		if calls.Add(1) == 1 {
			http.Error(w, "session not found", http.StatusNotFound)
			return
		}
		jsonAnswer(w, http.StatusOK, `{"jsonrpc":"2.0","id":`+string(id)+`,"result":{"content":[]}}`)
	})
	_, err := c.Call(context.Background(), "t", nil)
	if !errors.Is(err, upstream.ErrUnavailable) || !strings.Contains(err.Error(), "HTTP 404") {
		t.Fatalf("first call: %v, want unavailable naming HTTP 404", err)
	}
	waitFor(t, "a new session after the 404", func() bool { return s.inits.Load() >= 2 && c.Ready() })
	if _, err := c.Call(context.Background(), "t", nil); err != nil {
		t.Fatalf("call after reconnecting: %v", err)
	}
	last := s.requests("tools/call")
	if got := last[len(last)-1].header.Get("Mcp-Session-Id"); got != "session-2" {
		t.Errorf("call after reconnecting used session %q, want session-2", got)
	}
}

func TestDirectCallCancelledTellsTheUpstream(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	s, c := newCallServer(t, func(w http.ResponseWriter, r *http.Request, _ json.RawMessage) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	})
	defer close(release)
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		waitFor(t, "the call to arrive", func() bool { return len(s.requests("tools/call")) == 1 })
		cancel()
	}()
	_, err := c.Call(ctx, "t", nil)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Call = %v, want context.Canceled", err)
	}
	waitFor(t, "notifications/cancelled", func() bool { return len(s.requests("notifications/cancelled")) == 1 })
	got := s.requests("notifications/cancelled")[0].body
	if !strings.Contains(got, `"requestId":"chaperone-1"`) {
		t.Errorf("cancellation %s does not name the request", got)
	}
}

func TestDirectCallAnswersUpstreamRequests(t *testing.T) {
	t.Parallel()
	s, c := newCallServer(t, func(w http.ResponseWriter, _ *http.Request, id json.RawMessage) {
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprint(w, "data: {\"jsonrpc\":\"2.0\",\"id\":5,\"method\":\"ping\"}\n\n")
		fmt.Fprint(w, "data: {\"jsonrpc\":\"2.0\",\"id\":\"s6\",\"method\":\"sampling/createMessage\",\"params\":{}}\n\n")
		fmt.Fprintf(w, "data: {\"jsonrpc\":\"2.0\",\"id\":%s,\"result\":{\"content\":[]}}\n\n", id)
	})
	raw, err := c.Call(context.Background(), "t", nil)
	if err != nil || string(raw) != `{"content":[]}` {
		t.Fatalf("Call = %s, %v", raw, err)
	}
	// Answers are POSTed without a method; find them among everything the server saw.
	var answers []string
	for _, r := range s.requests("") {
		if r.body != "" { // not the standalone stream's GET
			answers = append(answers, r.body)
		}
	}
	want := []string{
		`{"jsonrpc":"2.0","id":5,"result":{}}`,
		`{"jsonrpc":"2.0","id":"s6","error":{"code":-32601,"message":"method not found: the gateway offers no client capabilities"}}`,
	}
	if strings.Join(answers, "\n") != strings.Join(want, "\n") {
		t.Errorf("answers to the upstream's requests:\n%s\nwant\n%s", strings.Join(answers, "\n"), strings.Join(want, "\n"))
	}
}

func TestDirectCallRefusesInvalidArguments(t *testing.T) {
	t.Parallel()
	s, c := newCallServer(t, func(w http.ResponseWriter, _ *http.Request, id json.RawMessage) {
		jsonAnswer(w, http.StatusOK, `{"jsonrpc":"2.0","id":`+string(id)+`,"result":{}}`)
	})
	_, err := c.Call(context.Background(), "t", json.RawMessage(`{"a":`))
	if err == nil || errors.Is(err, upstream.ErrUnavailable) || !strings.Contains(err.Error(), "not valid JSON") {
		t.Errorf("Call with malformed arguments = %v", err)
	}
	if n := len(s.requests("tools/call")); n != 0 {
		t.Errorf("malformed arguments reached the upstream (%d calls)", n)
	}
}

// BenchmarkCallHTTP is one tools/call from the upstream client to the SDK's own streamable
// HTTP server on loopback (both in this process), as the gateway makes it.
func BenchmarkCallHTTP(b *testing.B) {
	srv := mcp.NewServer(&mcp.Implementation{Name: "echo", Version: "1"}, nil)
	srv.AddTool(&mcp.Tool{Name: "echo", InputSchema: json.RawMessage(`{"type":"object"}`)},
		func(context.Context, *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "ok"}}}, nil
		})
	ts := httptest.NewServer(mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return srv }, &mcp.StreamableHTTPOptions{JSONResponse: true}))
	b.Cleanup(ts.Close)
	c := newClient(b, upstream.Config{Name: "echo", URL: ts.URL})
	waitReady(b, c)
	args := json.RawMessage(`{"text":"hello"}`)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := c.Call(context.Background(), "echo", args); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// TestDirectCallsReuseConnections makes 16 concurrent calls twice: the second round must
// reuse the first round's connections rather than dial again (a transport keeping two
// idle connections, net/http's default, re-dials fourteen of them every burst).
func TestDirectCallsReuseConnections(t *testing.T) {
	t.Parallel()
	const n = 16
	var (
		dials   atomic.Int64
		arrived = make(chan struct{}, n)
		release = make(chan struct{})
	)
	s := &callServer{fake: &fakeServer{listResult: `{"tools":[{"name":"t","inputSchema":{"type":"object"}}]}`}}
	s.answer = func(w http.ResponseWriter, _ *http.Request, id json.RawMessage) {
		arrived <- struct{}{}
		<-release
		jsonAnswer(w, http.StatusOK, `{"jsonrpc":"2.0","id":`+string(id)+`,"result":{"content":[]}}`)
	}
	ts := httptest.NewUnstartedServer(s)
	ts.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			dials.Add(1)
		}
	}
	ts.Start()
	t.Cleanup(ts.Close)
	c := newClient(t, upstream.Config{Name: "conns", URL: ts.URL, CallTimeout: 10 * time.Second})
	waitReady(t, c)

	burst := func() {
		t.Helper()
		var wg sync.WaitGroup
		for range n {
			wg.Go(func() {
				if _, err := c.Call(context.Background(), "t", nil); err != nil {
					t.Error(err)
				}
			})
		}
		for range n { // all n in flight at once, so n connections are open
			<-arrived
		}
		for range n {
			release <- struct{}{}
		}
		wg.Wait()
	}
	burst()
	first := dials.Load()
	burst()
	if again := dials.Load() - first; again != 0 {
		t.Errorf("the second burst of %d calls dialled %d new connections, want 0 (first burst: %d)", n, again, first)
	}
}
