package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// fakeMCP serves initialize (session "s1", version 2025-06-18), notifications (202) and
// DELETE (200) itself, and hands every other request to answer with its raw id.
func fakeMCP(t testing.TB, answer func(w http.ResponseWriter, r *http.Request, id string, body []byte)) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodDelete {
			return
		}
		body, _ := io.ReadAll(r.Body)
		var m struct {
			ID     json.RawMessage `json:"id"`
			Method string          `json:"method"`
		}
		json.Unmarshal(body, &m)
		switch {
		case m.Method == "initialize":
			w.Header().Set("Mcp-Session-Id", "s1")
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"result":{"protocolVersion":"2025-06-18","capabilities":{}}}`, m.ID)
		case len(m.ID) == 0:
			w.WriteHeader(http.StatusAccepted)
		default:
			answer(w, r, string(m.ID), body)
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

func writeJSON(w http.ResponseWriter, body string) {
	w.Header().Set("Content-Type", "application/json")
	io.WriteString(w, body)
}

func writeSSE(w http.ResponseWriter, stream string) {
	w.Header().Set("Content-Type", "text/event-stream")
	io.WriteString(w, stream)
}

func openTest(t testing.TB, url string) *Session {
	t.Helper()
	s, err := Open(context.Background(), NewHTTPClient(1), Target{Name: "fake", URL: url, Token: "tok"})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
	return s
}

func TestSessionAgainstUpstream(t *testing.T) {
	t.Parallel()
	up, srv := newTestUpstream(t, UpstreamOptions{})
	ctx := context.Background()
	s, err := Open(ctx, NewHTTPClient(1), Target{Name: "direct", URL: srv.URL})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if s.ID() == "" || s.ProtocolVersion() != "2025-11-25" {
		t.Errorf("session id %q, version %q; want an id and 2025-11-25", s.ID(), s.ProtocolVersion())
	}
	if got := up.Sessions(); got != 1 {
		t.Errorf("upstream Sessions() = %d, want 1", got)
	}
	calls := []struct {
		tool string
		args json.RawMessage
		want Outcome
	}{
		{"echo", json.RawMessage(`{"text":"hello"}`), OutcomeOK},
		{"blocked", nil, OutcomeOK},
		{"echo", json.RawMessage(" {\n} "), OutcomeOK},
		{"nope", nil, OutcomeRPCError},
	}
	for _, c := range calls {
		got, err := s.Call(ctx, c.tool, c.args)
		if err != nil || got != c.want {
			t.Errorf("Call(%q, %s) = %v, %v; want %v", c.tool, c.args, got, err, c.want)
		}
	}
	for range 100 {
		if got, err := s.Call(ctx, "echo", nil); err != nil || got != OutcomeOK {
			t.Fatalf("Call(echo) = %v, %v; want ok", got, err)
		}
	}
	if got := up.Calls(); got != int64(len(calls)+100) {
		t.Errorf("upstream Calls() = %d, want %d", got, len(calls)+100)
	}
	for _, args := range []string{`[1]`, `{"a":`, `"x"`} {
		if _, err := s.Call(ctx, "echo", json.RawMessage(args)); err == nil || !strings.Contains(err.Error(), "not a JSON object") {
			t.Errorf("Call(echo, %s) error = %v, want one saying the arguments are not a JSON object", args, err)
		}
	}
	if err := s.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if got := up.Sessions(); got != 0 {
		t.Errorf("upstream Sessions() after Close = %d, want 0", got)
	}
	if _, err := s.Call(ctx, "echo", nil); err == nil || !strings.Contains(err.Error(), "session closed") {
		t.Errorf("Call after Close error = %v, want session closed", err)
	}
	if err := s.Close(ctx); err != nil {
		t.Errorf("second Close = %v, want nil", err)
	}
}

func TestCallOutcomes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		answer func(w http.ResponseWriter, id string)
		want   Outcome
	}{
		{"json result", func(w http.ResponseWriter, id string) {
			writeJSON(w, `{"jsonrpc":"2.0","id":`+id+`,"result":{"content":[{"type":"text","text":"x"}]}}`)
		}, OutcomeOK},
		{"json isError false", func(w http.ResponseWriter, id string) {
			writeJSON(w, `{"jsonrpc":"2.0","id":`+id+`,"result":{"isError":false}}`)
		}, OutcomeOK},
		{"json tool error", func(w http.ResponseWriter, id string) {
			writeJSON(w, `{"jsonrpc":"2.0","id":`+id+`,"result":{"content":[],"isError":true}}`)
		}, OutcomeToolError},
		{"json rpc error", func(w http.ResponseWriter, id string) {
			writeJSON(w, `{"jsonrpc":"2.0","id":`+id+`,"error":{"code":-32602,"message":"unknown tool"}}`)
		}, OutcomeRPCError},
		{"content type with parameters", func(w http.ResponseWriter, id string) {
			w.Header().Set("Content-Type", "Application/JSON; charset=utf-8")
			io.WriteString(w, `{"jsonrpc":"2.0","id":`+id+`,"result":{}}`)
		}, OutcomeOK},
		{"sse notification then response", func(w http.ResponseWriter, id string) {
			writeSSE(w, "event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{\"progress\":1}}\n\n"+
				"event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":"+id+",\"result\":{\"isError\":false}}\n\n")
		}, OutcomeOK},
		{"sse tool error", func(w http.ResponseWriter, id string) {
			writeSSE(w, "data: {\"jsonrpc\":\"2.0\",\"id\":"+id+",\"result\":{\"isError\":true}}\n\n")
		}, OutcomeToolError},
		{"sse rpc error", func(w http.ResponseWriter, id string) {
			writeSSE(w, "data: {\"jsonrpc\":\"2.0\",\"id\":"+id+",\"error\":{\"code\":-1,\"message\":\"no\"}}\n\n")
		}, OutcomeRPCError},
		{"sse comments, fields, CRLF, split data, server request", func(w http.ResponseWriter, id string) {
			writeSSE(w, ": keep-alive\r\n\r\n"+
				"id: 7\r\nretry: 100\r\nevent: message\r\ndata: {\"jsonrpc\":\"2.0\",\"id\":\"srv-1\",\"method\":\"sampling/createMessage\"}\r\n\r\n"+
				"data:{\"jsonrpc\":\"2.0\",\r\ndata: \"id\":"+id+",\r\ndata: \"result\":{\"isError\":true}}\r\n\r\n")
		}, OutcomeToolError},
		{"sse with more after the response", func(w http.ResponseWriter, id string) {
			writeSSE(w, "data: {\"jsonrpc\":\"2.0\",\"id\":"+id+",\"result\":{}}\n\n"+
				"data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\"}\n\n")
		}, OutcomeOK},
		{"large sse event", func(w http.ResponseWriter, id string) {
			writeSSE(w, "data: {\"jsonrpc\":\"2.0\",\"id\":"+id+",\"result\":{\"content\":[{\"type\":\"text\",\"text\":\""+
				strings.Repeat("a", 100_000)+"\"}]}}\n\n")
		}, OutcomeOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := fakeMCP(t, func(w http.ResponseWriter, _ *http.Request, id string, _ []byte) { tt.answer(w, id) })
			s := openTest(t, srv.URL)
			for i := range 3 { // more than once: buffers and connections are reused
				got, err := s.Call(context.Background(), "echo", nil)
				if err != nil || got != tt.want {
					t.Fatalf("Call #%d = %v, %v; want %v", i+1, got, err, tt.want)
				}
			}
		})
	}
}

func TestCallErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		answer func(w http.ResponseWriter, id string)
		want   string
	}{
		{"mismatched id", func(w http.ResponseWriter, id string) {
			writeJSON(w, `{"jsonrpc":"2.0","id":999,"result":{}}`)
		}, "response id 999 does not match request id 1"},
		{"string id", func(w http.ResponseWriter, id string) {
			writeJSON(w, `{"jsonrpc":"2.0","id":"1","result":{}}`)
		}, `response id "1" does not match request id 1`},
		{"missing id", func(w http.ResponseWriter, id string) {
			writeJSON(w, `{"jsonrpc":"2.0","result":{}}`)
		}, "response id missing does not match"},
		{"null id with error", func(w http.ResponseWriter, id string) {
			writeJSON(w, `{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"parse error"}}`)
		}, "response id null does not match request id 1 (JSON-RPC error -32700: parse error)"},
		{"sse mismatched id", func(w http.ResponseWriter, id string) {
			writeSSE(w, "data: {\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{}}\n\n")
		}, "response id 2 does not match request id 1"},
		{"HTTP 500", func(w http.ResponseWriter, id string) {
			http.Error(w, "boom\x1b[31m", http.StatusInternalServerError)
		}, "HTTP 500: boom [31m"},
		{"HTTP 502 empty", func(w http.ResponseWriter, id string) {
			w.WriteHeader(http.StatusBadGateway)
		}, "HTTP 502: empty body"},
		{"HTTP 404 long body", func(w http.ResponseWriter, id string) {
			w.WriteHeader(http.StatusNotFound)
			io.WriteString(w, strings.Repeat("n", 300)+"TAIL")
		}, "HTTP 404: " + strings.Repeat("n", 200)},
		{"redirect", func(w http.ResponseWriter, id string) {
			http.Redirect(w, &http.Request{}, "http://elsewhere.invalid/", http.StatusFound)
		}, "HTTP 302"},
		{"neither result nor error", func(w http.ResponseWriter, id string) {
			writeJSON(w, `{"jsonrpc":"2.0","id":`+id+`}`)
		}, "neither result nor error"},
		{"null result", func(w http.ResponseWriter, id string) {
			writeJSON(w, `{"jsonrpc":"2.0","id":`+id+`,"result":null}`)
		}, "neither result nor error"},
		{"malformed json", func(w http.ResponseWriter, id string) {
			writeJSON(w, `{"jsonrpc":"2.0","id":`)
		}, "decode response"},
		{"result not an object", func(w http.ResponseWriter, id string) {
			writeJSON(w, `{"jsonrpc":"2.0","id":`+id+`,"result":[]}`)
		}, "decode response"},
		{"notification as the answer", func(w http.ResponseWriter, id string) {
			writeJSON(w, `{"jsonrpc":"2.0","method":"notifications/message"}`)
		}, `expected a response, got a "notifications/message" message`},
		{"unexpected content type", func(w http.ResponseWriter, id string) {
			w.Header().Set("Content-Type", "text/html")
			io.WriteString(w, "<html>")
		}, `unexpected content type "text/html"`},
		{"sse ends without response", func(w http.ResponseWriter, id string) {
			writeSSE(w, "data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\"}\n\n")
		}, "event stream ended without the response"},
		{"sse response not ended by a blank line", func(w http.ResponseWriter, id string) {
			writeSSE(w, "data: {\"jsonrpc\":\"2.0\",\"id\":"+id+",\"result\":{}}\n")
		}, "event stream ended without the response"},
		{"sse malformed data", func(w http.ResponseWriter, id string) {
			writeSSE(w, "data: {not json\n\n")
		}, "decode response"},
		{"oversized json body", func(w http.ResponseWriter, id string) {
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"jsonrpc":"2.0","id":`+id+`,"result":{"content":[{"type":"text","text":"`)
			io.WriteString(w, strings.Repeat("x", MaxResponseBytes))
			io.WriteString(w, `"}]}}`)
		}, "response body exceeds 16 MiB"},
		{"oversized json body announced", func(w http.ResponseWriter, id string) {
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Content-Length", fmt.Sprint(MaxResponseBytes+1))
			io.WriteString(w, strings.Repeat(" ", MaxResponseBytes+1))
		}, "exceeds 16 MiB"},
		{"oversized sse event", func(w http.ResponseWriter, id string) {
			w.Header().Set("Content-Type", "text/event-stream")
			io.WriteString(w, `data: {"jsonrpc":"2.0","id":`+id+`,"result":{"content":[{"type":"text","text":"`)
			io.WriteString(w, strings.Repeat("x", MaxResponseBytes))
			io.WriteString(w, "\"}]}}\n\n")
		}, "SSE event exceeds 16 MiB"},
		{"oversized sse event in many lines", func(w http.ResponseWriter, id string) {
			w.Header().Set("Content-Type", "text/event-stream")
			line := "data: " + strings.Repeat("y", 1000) + "\n"
			for range MaxResponseBytes/len(line) + 1 {
				io.WriteString(w, line)
			}
		}, "SSE event exceeds 16 MiB"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := fakeMCP(t, func(w http.ResponseWriter, _ *http.Request, id string, _ []byte) { tt.answer(w, id) })
			s := openTest(t, srv.URL)
			got, err := s.Call(context.Background(), "echo", nil)
			if err == nil {
				t.Fatalf("Call = %v, nil; want an error containing %q", got, tt.want)
			}
			if msg := err.Error(); !strings.Contains(msg, tt.want) || !strings.HasPrefix(msg, `call tool "echo" on fake: `) {
				t.Errorf("Call error = %q, want one starting %q and containing %q", msg, `call tool "echo" on fake: `, tt.want)
			}
			if len(err.Error()) > 600 {
				t.Errorf("Call error is %d bytes long, want a bounded message", len(err.Error()))
			}
			if strings.Contains(err.Error(), "TAIL") {
				t.Errorf("Call error %q quotes more than %d bytes of the body", err, maxStatusSnippet)
			}
			if got != 0 {
				t.Errorf("Call outcome with an error = %v, want none", got)
			}
		})
	}
}

// A stream of small events that together exceed the bound before the response is
// refused; the bound is lowered so the test stays small.
func TestReadSSEStreamBound(t *testing.T) {
	t.Parallel()
	note := "data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\"}\n\n"
	s := &Session{limit: 1 << 20}
	err := s.readSSE(strings.NewReader(strings.Repeat(note, (1<<20)/len(note)+1)), 1)
	if err == nil || err.Error() != "event stream exceeds 1 MiB before the response" {
		t.Errorf("readSSE = %v, want the stream bound", err)
	}
	s = &Session{limit: 100}
	err = s.readSSE(strings.NewReader("data: "+strings.Repeat("z", 95)+"\n\n"), 1)
	if err == nil || err.Error() != "SSE event exceeds 100 bytes" {
		t.Errorf("readSSE = %v, want the event bound", err)
	}
}

func TestOpenErrors(t *testing.T) {
	t.Parallel()
	const token = "s3cret-token"
	tests := []struct {
		name    string
		handler http.HandlerFunc
		url     string // overrides the server's
		token   string
		want    string
	}{
		{"unauthorized", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			io.WriteString(w, `{"jsonrpc":"2.0","id":null,"error":{"code":-32001,"message":"unauthenticated"}}`)
		}, "", token, "open session on gw: initialize: HTTP 401: "},
		{"initialize refused", func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, `{"jsonrpc":"2.0","id":0,"error":{"code":-32602,"message":"bad version"}}`)
		}, "", token, "open session on gw: initialize: JSON-RPC error -32602: bad version"},
		{"no protocol version", func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, `{"jsonrpc":"2.0","id":0,"result":{}}`)
		}, "", token, "initialize: result has no protocolVersion"},
		{"bad session id", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Mcp-Session-Id", "a b")
			writeJSON(w, `{"jsonrpc":"2.0","id":0,"result":{"protocolVersion":"2025-11-25"}}`)
		}, "", token, "Mcp-Session-Id header has characters outside visible ASCII"},
		{"initialized refused", func(w http.ResponseWriter, r *http.Request) {
			body, _ := io.ReadAll(r.Body)
			if strings.Contains(string(body), "notifications/initialized") {
				http.Error(w, "no thanks", http.StatusBadRequest)
				return
			}
			writeJSON(w, `{"jsonrpc":"2.0","id":0,"result":{"protocolVersion":"2025-11-25"}}`)
		}, "", token, "open session on gw: notifications/initialized: HTTP 400: no thanks"},
		{"bad scheme", nil, "ftp://example.com/mcp", token, `open session on gw: invalid URL "ftp://example.com/mcp"`},
		{"no host", nil, "http:///mcp", token, "invalid URL"},
		{"token with newline", nil, "", "abc\r\nX-Evil: 1", "open session on gw: invalid token"},
		{"connection refused", nil, "http://127.0.0.1:1/mcp", token, "open session on gw: initialize: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			url := tt.url
			if tt.handler != nil {
				srv := httptest.NewServer(tt.handler)
				t.Cleanup(srv.Close)
				url = srv.URL
			} else if url == "" {
				url = "http://127.0.0.1:1/"
			}
			s, err := Open(context.Background(), NewHTTPClient(1), Target{Name: "gw", URL: url, Token: tt.token})
			if err == nil {
				s.Close(context.Background())
				t.Fatalf("Open = nil error, want one containing %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Open error = %q, want one containing %q", err, tt.want)
			}
			if strings.Contains(err.Error(), token) || strings.Contains(err.Error(), "X-Evil") {
				t.Errorf("Open error %q reveals the token", err)
			}
		})
	}
}

func TestOpenNilClient(t *testing.T) {
	t.Parallel()
	if _, err := Open(context.Background(), nil, Target{Name: "x", URL: "http://127.0.0.1:1/"}); err == nil || !strings.Contains(err.Error(), "no HTTP client") {
		t.Errorf("Open(nil client) error = %v, want one saying there is no HTTP client", err)
	}
}

func TestRequestsOnTheWire(t *testing.T) {
	t.Parallel()
	type seen struct {
		header http.Header
		body   string
	}
	var (
		mu   sync.Mutex
		reqs []seen
	)
	srv := fakeMCP(t, func(w http.ResponseWriter, r *http.Request, id string, body []byte) {
		mu.Lock()
		reqs = append(reqs, seen{r.Header.Clone(), string(body)})
		mu.Unlock()
		writeJSON(w, `{"jsonrpc":"2.0","id":`+id+`,"result":{}}`)
	})
	ctx := context.Background()
	for _, token := range []string{"tok", ""} {
		mu.Lock()
		reqs = nil
		mu.Unlock()
		s, err := Open(ctx, NewHTTPClient(1), Target{Name: "fake", URL: srv.URL, Token: token})
		if err != nil {
			t.Fatal(err)
		}
		tools := []string{"echo", `we"ird\tool`, "ünïcode"}
		for _, tool := range tools {
			if _, err := s.Call(ctx, tool, json.RawMessage(`{"a":1}`)); err != nil {
				t.Fatalf("Call(%q): %v", tool, err)
			}
		}
		s.Close(ctx)
		mu.Lock()
		if len(reqs) != len(tools) {
			t.Fatalf("server saw %d calls, want %d", len(reqs), len(tools))
		}
		for i, r := range reqs {
			var m struct {
				JSONRPC string `json:"jsonrpc"`
				ID      int64  `json:"id"`
				Method  string `json:"method"`
				Params  struct {
					Name      string          `json:"name"`
					Arguments json.RawMessage `json:"arguments"`
				} `json:"params"`
			}
			if err := json.Unmarshal([]byte(r.body), &m); err != nil {
				t.Fatalf("call %d body %q is not JSON: %v", i, r.body, err)
			}
			if m.JSONRPC != "2.0" || m.ID != int64(i+1) || m.Method != "tools/call" || m.Params.Name != tools[i] || string(m.Params.Arguments) != `{"a":1}` {
				t.Errorf("call %d body = %s, want tools/call of %q with id %d and the arguments", i, r.body, tools[i], i+1)
			}
			want := map[string]string{
				"Content-Type":         "application/json",
				"Accept":               "application/json, text/event-stream",
				"Mcp-Session-Id":       "s1",
				"Mcp-Protocol-Version": "2025-06-18",
				"Authorization":        "",
			}
			if token != "" {
				want["Authorization"] = "Bearer " + token
			}
			got := map[string]string{}
			for k := range want {
				got[k] = r.header.Get(k)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("token %q, call %d headers (-want +got):\n%s", token, i, diff)
			}
		}
		mu.Unlock()
	}
}

// The server answers before it has read a large request body, so the transport may still
// be writing the body when Call returns: the next call must not reuse that buffer (the
// race detector checks).
func TestCallServerAnswersBeforeReadingBody(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > 1<<20 {
			http.Error(w, "too big", http.StatusRequestEntityTooLarge)
			return
		}
		body, _ := io.ReadAll(r.Body)
		switch {
		case strings.Contains(string(body), `"initialize"`):
			w.Header().Set("Mcp-Session-Id", "s1")
			writeJSON(w, `{"jsonrpc":"2.0","id":0,"result":{"protocolVersion":"2025-11-25"}}`)
		case strings.Contains(string(body), `"notifications/`):
			w.WriteHeader(http.StatusAccepted)
		default:
			var m struct{ ID json.RawMessage }
			json.Unmarshal(body, &m)
			writeJSON(w, `{"jsonrpc":"2.0","id":`+string(m.ID)+`,"result":{}}`)
		}
	}))
	t.Cleanup(srv.Close)
	s := openTest(t, srv.URL)
	big := json.RawMessage(`{"pad":"` + strings.Repeat("p", 4<<20) + `"}`)
	for range 5 {
		if _, err := s.Call(context.Background(), "echo", big); err == nil || !strings.Contains(err.Error(), "HTTP 413") {
			t.Fatalf("Call with a large body = %v, want HTTP 413", err)
		}
		if got, err := s.Call(context.Background(), "echo", nil); err != nil || got != OutcomeOK {
			t.Fatalf("Call after a refused body = %v, %v; want ok", got, err)
		}
	}
}

func TestClose(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		status  int
		session bool
		wantErr string
		deletes int
	}{
		{"ok", http.StatusOK, true, "", 1},
		{"no content", http.StatusNoContent, true, "", 1},
		{"not supported", http.StatusMethodNotAllowed, true, "", 1},
		{"unknown session", http.StatusNotFound, true, "close session on fake: HTTP 404", 1},
		{"stateless server", http.StatusOK, false, "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var (
				mu      sync.Mutex
				deletes int
			)
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Method == http.MethodDelete {
					mu.Lock()
					deletes++
					mu.Unlock()
					w.WriteHeader(tt.status)
					return
				}
				body, _ := io.ReadAll(r.Body)
				if !strings.Contains(string(body), `"initialize"`) {
					w.WriteHeader(http.StatusAccepted)
					return
				}
				if tt.session {
					w.Header().Set("Mcp-Session-Id", "s1")
				}
				writeJSON(w, `{"jsonrpc":"2.0","id":0,"result":{"protocolVersion":"2025-11-25"}}`)
			}))
			t.Cleanup(srv.Close)
			s, err := Open(context.Background(), NewHTTPClient(1), Target{Name: "fake", URL: srv.URL})
			if err != nil {
				t.Fatal(err)
			}
			err = s.Close(context.Background())
			if tt.wantErr == "" && err != nil {
				t.Errorf("Close = %v, want nil", err)
			}
			if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Errorf("Close = %v, want an error containing %q", err, tt.wantErr)
			}
			mu.Lock()
			defer mu.Unlock()
			if deletes != tt.deletes {
				t.Errorf("server saw %d DELETEs, want %d", deletes, tt.deletes)
			}
		})
	}
}

func TestOutcomeString(t *testing.T) {
	t.Parallel()
	for o, want := range map[Outcome]string{0: "none", OutcomeOK: "ok", OutcomeToolError: "tool error", OutcomeRPCError: "rpc error"} {
		if got := o.String(); got != want {
			t.Errorf("Outcome(%d).String() = %q, want %q", int(o), got, want)
		}
	}
}

func BenchmarkClientCall(b *testing.B) {
	_, srv := newTestUpstream(b, UpstreamOptions{})
	ctx := context.Background()
	s, err := Open(ctx, NewHTTPClient(1), Target{Name: "direct", URL: srv.URL, Token: "tok"})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close(ctx)
	args := json.RawMessage(`{"text":"hello"}`)
	b.ReportAllocs()
	for b.Loop() {
		if out, err := s.Call(ctx, "echo", args); err != nil || out != OutcomeOK {
			b.Fatalf("Call = %v, %v", out, err)
		}
	}
}
