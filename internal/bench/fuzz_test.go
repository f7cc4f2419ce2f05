package bench

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// fuzzLimit keeps the parsers' bound small, so the fuzzer reaches it.
const fuzzLimit = 4 << 10

// FuzzReadJSON: any body gives an answer or an error, never a panic; an answer is the
// response to the request's id with a result or an error.
func FuzzReadJSON(f *testing.F) {
	for _, seed := range []string{
		`{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"x"}]}}`,
		`{"jsonrpc":"2.0","id":1,"result":{"isError":true}}`,
		`{"jsonrpc":"2.0","id":1,"error":{"code":-32602,"message":"unknown tool"}}`,
		`{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"parse error"}}`,
		`{"jsonrpc":"2.0","id":2,"result":{}}`,
		`{"jsonrpc":"2.0","id":1,"result":null}`,
		`{"jsonrpc":"2.0","method":"notifications/message"}`,
		`{"jsonrpc":"2.0","id":`,
		`[]`,
		"",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		s := &Session{limit: fuzzLimit}
		if err := s.readJSON(bytes.NewReader(body), 1); err == nil {
			checkAnswer(t, s, body)
		}
	})
}

// FuzzReadSSE: any event stream gives an answer or an error, never a panic, and reading
// stays within the bound.
func FuzzReadSSE(f *testing.F) {
	for _, seed := range []string{
		"event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\"}\n\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\n\n",
		": comment\r\nid: 3\r\ndata:{\"jsonrpc\":\"2.0\",\r\ndata: \"id\":1,\"result\":{\"isError\":true}}\r\n\r\n",
		"data: {\"jsonrpc\":\"2.0\",\"id\":1,\"error\":{\"code\":-1,\"message\":\"no\"}}\n\n",
		"data: {\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{}}\n\n",
		"data: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\n",
		"data: " + strings.Repeat("a", 2000) + "\n\n",
		"data\n\n",
		"\n\n\n",
		"",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, stream []byte) {
		s := &Session{limit: fuzzLimit}
		if err := s.readSSE(bytes.NewReader(stream), 1); err == nil {
			checkAnswer(t, s, stream)
		}
		if cap(s.line) > maxRecycledBytes {
			t.Fatalf("kept a %d-byte line buffer", cap(s.line))
		}
	})
}

func checkAnswer(t *testing.T, s *Session, input []byte) {
	t.Helper()
	r := s.resp
	if string(r.ID) != "1" || (r.Error == nil && r.Result == nil) || r.Method != "" {
		t.Fatalf("accepted %q as the answer to id 1: id %s, error %v, result %v, method %q", input, r.ID, r.Error, r.Result, r.Method)
	}
}

// FuzzUpstreamRequest: any request body gets a JSON answer (or 202 for a notification),
// never a panic; answers with a result echo a valid id.
func FuzzUpstreamRequest(f *testing.F) {
	for _, seed := range []string{
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hi"}}}`,
		`{"jsonrpc":"2.0","id":"a","method":"tools/call","params":{"name":"nope"}}`,
		`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18"}}`,
		`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`,
		`{"jsonrpc":"2.0","id":-5e3,"method":"ping"}`,
		`{"jsonrpc":"2.0","method":"notifications/initialized"}`,
		`{"jsonrpc":"2.0","id":{},"method":"ping"}`,
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":[]}`,
		`[{"jsonrpc":"2.0","id":1,"method":"ping"}]`,
		`{"jsonrpc":`,
		``,
	} {
		f.Add([]byte(seed), true)
	}
	up, err := NewUpstream(UpstreamOptions{})
	if err != nil {
		f.Fatal(err)
	}
	sid := recorderSession(f, up)
	f.Fuzz(func(t *testing.T, body []byte, withSession bool) {
		req := httptest.NewRequest("POST", "/", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		if withSession {
			req.Header.Set("Mcp-Session-Id", sid)
		}
		rec := httptest.NewRecorder()
		up.ServeHTTP(rec, req)
		if rec.Code == http.StatusAccepted {
			return
		}
		if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
			t.Fatalf("answer to %q: Content-Type %q", body, ct)
		}
		var reply struct {
			JSONRPC string           `json:"jsonrpc"`
			ID      json.RawMessage  `json:"id"`
			Result  json.RawMessage  `json:"result"`
			Error   *json.RawMessage `json:"error"`
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &reply); err != nil {
			t.Fatalf("answer to %q is not JSON: %v: %q", body, err, rec.Body)
		}
		if reply.JSONRPC != "2.0" || (reply.Result == nil) == (reply.Error == nil) {
			t.Fatalf("answer to %q is not a JSON-RPC response: %q", body, rec.Body)
		}
		if reply.Result != nil && validRequestID(reply.ID) == nil {
			t.Fatalf("answer to %q has a result with id %s", body, reply.ID)
		}
		if reply.Result != nil && rec.Code != http.StatusOK {
			t.Fatalf("answer to %q has a result with status %d", body, rec.Code)
		}
	})
}
