package bridge_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/chaperone-dev/chaperone/internal/bridge"
	"github.com/chaperone-dev/chaperone/internal/chaperonetest"
	"github.com/chaperone-dev/chaperone/internal/config"
	"github.com/chaperone-dev/chaperone/internal/logtest"
)

// wait bounds every wait of these tests; it is never what a test measures.
const wait = 30 * time.Second

// stdio is a client driving [bridge.Run] over pipes, as an MCP host drives a server it
// launched: it writes lines to the bridge's stdin and reads lines from its stdout.
type stdio struct {
	t      *testing.T
	in     *io.PipeWriter
	lines  chan string
	done   chan error
	stderr *logtest.Buffer
	token  string
	// pending holds lines read while waiting for another.
	pending []string
}

// startStdio runs the bridge with opts (Stderr is set here) until the test ends.
func startStdio(t *testing.T, opts bridge.Options) *stdio {
	t.Helper()
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	s := &stdio{t: t, in: inW, lines: make(chan string, 64), done: make(chan error, 1), stderr: &logtest.Buffer{}, token: opts.Token}
	opts.Stderr = s.stderr
	go func() {
		err := bridge.Run(context.Background(), opts, inR, outW)
		outW.Close()
		s.done <- err
	}()
	go func() {
		defer close(s.lines)
		sc := bufio.NewScanner(outR)
		sc.Buffer(nil, 64<<20)
		for sc.Scan() {
			s.lines <- sc.Text()
		}
	}()
	t.Cleanup(func() {
		inW.Close()
		for range s.lines {
		}
		if strings.Contains(s.stderr.String(), s.token) {
			t.Errorf("stderr holds the bearer token:\n%s", s.stderr)
		}
	})
	return s
}

// send writes one line to the bridge's stdin.
func (s *stdio) send(line string) {
	s.t.Helper()
	done := make(chan error, 1)
	go func() {
		_, err := io.WriteString(s.in, line+"\n")
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			s.t.Fatalf("write stdin: %v", err)
		}
	case <-time.After(wait):
		s.t.Fatalf("the bridge did not read stdin within %s", wait)
	}
}

// next returns the next line of stdout.
func (s *stdio) next() string {
	s.t.Helper()
	if len(s.pending) > 0 {
		l := s.pending[0]
		s.pending = s.pending[1:]
		return l
	}
	select {
	case l, ok := <-s.lines:
		if !ok {
			s.t.Fatalf("stdout ended; stderr:\n%s", s.stderr)
		}
		if strings.Contains(l, s.token) {
			s.t.Errorf("stdout holds the bearer token: %s", l)
		}
		return l
	case <-time.After(wait):
		s.t.Fatalf("no line on stdout within %s; stderr:\n%s", wait, s.stderr)
	}
	return ""
}

// response returns the line answering id (as JSON text, such as `1` or `"a"`), keeping
// the lines before it for later.
func (s *stdio) response(id string) string {
	s.t.Helper()
	for i, l := range s.pending {
		if lineID(l) == id {
			s.pending = append(s.pending[:i:i], s.pending[i+1:]...)
			return l
		}
	}
	var skipped []string
	for {
		var l string
		select {
		case got, ok := <-s.lines:
			if !ok {
				s.t.Fatalf("stdout ended before the response to %s; stderr:\n%s", id, s.stderr)
			}
			l = got
		case <-time.After(wait):
			s.t.Fatalf("no response to %s within %s; stderr:\n%s", id, wait, s.stderr)
		}
		if lineID(l) == id {
			s.pending = append(s.pending, skipped...)
			return l
		}
		skipped = append(skipped, l)
	}
}

// close ends stdin and returns the lines written after and Run's error.
func (s *stdio) close() ([]string, error) {
	s.t.Helper()
	s.in.Close()
	rest := s.pending
	s.pending = nil
	for l := range s.lines {
		rest = append(rest, l)
	}
	select {
	case err := <-s.done:
		return rest, err
	case <-time.After(wait):
		s.t.Fatalf("Run did not return within %s after stdin ended", wait)
	}
	return nil, nil
}

func lineID(l string) string {
	var m struct {
		ID     json.RawMessage `json:"id"`
		Method *string         `json:"method"`
	}
	if json.Unmarshal([]byte(l), &m) != nil || m.Method != nil {
		return ""
	}
	return string(m.ID)
}

// rpcError decodes an error response; it fails the test for anything else.
func rpcError(t *testing.T, line string) (code int, message string) {
	t.Helper()
	var m struct {
		JSONRPC string          `json:"jsonrpc"`
		Result  json.RawMessage `json:"result"`
		Error   *struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if err := json.Unmarshal([]byte(line), &m); err != nil || m.Error == nil || m.JSONRPC != "2.0" || m.Result != nil {
		t.Fatalf("line %s: want a JSON-RPC error response", line)
	}
	return m.Error.Code, m.Error.Message
}

// result decodes a successful response's result.
func result(t *testing.T, line string, out any) {
	t.Helper()
	var m struct {
		Result json.RawMessage `json:"result"`
		Error  json.RawMessage `json:"error"`
	}
	if err := json.Unmarshal([]byte(line), &m); err != nil || m.Error != nil || m.Result == nil {
		t.Fatalf("line %s: want a result", line)
	}
	if err := json.Unmarshal(m.Result, out); err != nil {
		t.Fatalf("result of %s: %v", line, err)
	}
}

const gatewayPolicy = `
rules:
  - id: no-forbidden-tickets
    match: {tools: [create_ticket]}
    when: args.title == "forbidden"
    effect: deny
  - id: everything-else
    effect: allow
`

func startGateway(t *testing.T) *chaperonetest.Gateway {
	t.Helper()
	return chaperonetest.Start(t, chaperonetest.Options{
		Upstreams: []config.Upstream{{Name: "demo", Builtin: "demo"}},
		Tools: []config.Tool{
			{Upstream: "demo", Name: "read_inbox", Class: "read"},
			{Upstream: "demo", Name: "create_ticket", Class: "write"},
		},
		Policy: gatewayPolicy,
	})
}

// recorder is a real HTTP transport that also records each request's method and
// headers, and the session ids the server assigns.
type recorder struct {
	mu       sync.Mutex
	requests []recorded
}

type recorded struct {
	method string
	header http.Header
	status int
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(req)
	rec := recorded{method: req.Method, header: req.Header.Clone()}
	if resp != nil {
		rec.status = resp.StatusCode
	}
	r.mu.Lock()
	r.requests = append(r.requests, rec)
	r.mu.Unlock()
	return resp, err
}

func (r *recorder) all() []recorded {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]recorded(nil), r.requests...)
}

var requestIDs = regexp.MustCompile(`req_[A-Za-z0-9_-]+`)

// TestGatewayStdio drives the bridge in front of the real gateway with the lines an MCP
// host writes: the session is set up, tools are listed and called, the gateway's refusal
// arrives exactly as the gateway sends it, and the session is ended when stdin closes.
func TestGatewayStdio(t *testing.T) {
	g := startGateway(t)
	token := g.Agents["test-agent"].Token
	rec := &recorder{}
	s := startStdio(t, bridge.Options{URL: g.URL, Token: token, HTTPClient: &http.Client{Transport: rec}})

	s.send(`{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"host","version":"1"}}}`)
	var init struct {
		ProtocolVersion string `json:"protocolVersion"`
		ServerInfo      struct{ Name string }
	}
	result(t, s.response("0"), &init)
	if init.ProtocolVersion != "2025-06-18" {
		t.Errorf("initialize negotiated %q, want 2025-06-18", init.ProtocolVersion)
	}
	s.send(`{"jsonrpc":"2.0","method":"notifications/initialized"}`)

	s.send(`{"jsonrpc":"2.0","id":"list","method":"tools/list"}`)
	var list struct{ Tools []struct{ Name string } }
	result(t, s.response(`"list"`), &list)
	var names []string
	for _, tl := range list.Tools {
		names = append(names, tl.Name)
	}
	if diff := cmp.Diff([]string{"create_ticket", "read_inbox"}, names); diff != "" {
		t.Errorf("tools/list names (-want +got):\n%s", diff)
	}

	s.send(`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"create_ticket","arguments":{"title":"printer","body":"jammed"}}}`)
	var ok struct {
		IsError bool `json:"isError"`
		Content []struct{ Text string }
	}
	result(t, s.response("2"), &ok)
	if ok.IsError || len(ok.Content) == 0 {
		t.Errorf("allowed tools/call: %+v, want a result", ok)
	}

	denyCall := `{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"create_ticket","arguments":{"title":"forbidden","body":"x"}}}`
	s.send(denyCall)
	denied := s.response("3")
	var refused struct {
		IsError bool `json:"isError"`
		Meta    struct {
			Refusal struct {
				Reason string
				Rules  []string
			} `json:"dev.chaperone/refusal"`
		} `json:"_meta"`
	}
	result(t, denied, &refused)
	if !refused.IsError || refused.Meta.Refusal.Reason != "denied_by_policy" || !cmp.Equal(refused.Meta.Refusal.Rules, []string{"no-forbidden-tickets"}) {
		t.Errorf("denied tools/call = %s, want a denied_by_policy refusal by no-forbidden-tickets", denied)
	}
	// The same call made straight to the gateway gets the same answer, but for its request id.
	direct := postDirect(t, g.URL, token, "2025-06-18", denyCall)
	if got, want := requestIDs.ReplaceAllString(denied, "req_X"), requestIDs.ReplaceAllString(direct, "req_X"); got != want {
		t.Errorf("refusal through the bridge differs from the gateway's:\n got %s\nwant %s", got, want)
	}

	s.send(`{"jsonrpc":"2.0","id":"p","method":"ping"}`)
	if got := s.response(`"p"`); got != `{"jsonrpc":"2.0","id":"p","result":{}}` {
		t.Errorf("ping = %s", got)
	}
	// The server-to-client stream was tried (the gateway offers none).
	chaperonetest.WaitFor(t, wait, "the GET stream attempt", func() bool {
		for _, r := range rec.all() {
			if r.method == http.MethodGet {
				return true
			}
		}
		return false
	})

	rest, err := s.close()
	if err != nil || len(rest) != 0 {
		t.Errorf("after stdin ended: Run = %v, further lines %q; want nil, none", err, rest)
	}

	reqs := rec.all()
	sid := ""
	for _, r := range reqs {
		if r.method == http.MethodPost && r.header.Get("Mcp-Session-Id") != "" {
			sid = r.header.Get("Mcp-Session-Id")
			if v := r.header.Get("Mcp-Protocol-Version"); v != "2025-06-18" {
				t.Errorf("POST in the session: Mcp-Protocol-Version %q, want 2025-06-18", v)
			}
		}
	}
	if sid == "" {
		t.Fatal("no request carried the session id the gateway assigned")
	}
	if r := reqs[0]; r.header.Get("Mcp-Session-Id") != "" || r.header.Get("Mcp-Protocol-Version") != "" {
		t.Errorf("initialize carried session headers: %v", r.header)
	}
	var gets, deletes int
	for _, r := range reqs {
		switch r.method {
		case http.MethodGet:
			gets++
			if r.status != http.StatusMethodNotAllowed {
				t.Errorf("GET stream: status %d, want the gateway's 405", r.status)
			}
		case http.MethodDelete:
			deletes++
			if r.header.Get("Mcp-Session-Id") != sid || r.status != http.StatusNoContent {
				t.Errorf("DELETE: session %q status %d, want %q 204", r.header.Get("Mcp-Session-Id"), r.status, sid)
			}
		}
	}
	if gets != 1 || deletes != 1 {
		t.Errorf("GET %d times, DELETE %d times; want once each", gets, deletes)
	}
	// The session is over: the gateway no longer knows it.
	req, _ := http.NewRequest(http.MethodPost, g.URL, strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"ping"}`))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Mcp-Session-Id", sid)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("ping in the ended session: HTTP %d, want 404", resp.StatusCode)
	}
	if strings.Contains(s.stderr.String(), "level=WARN") || strings.Contains(s.stderr.String(), "level=ERROR") {
		t.Errorf("stderr of a clean run:\n%s", s.stderr)
	}
}

// postDirect sends one message to the gateway without the bridge and returns its answer.
func postDirect(t *testing.T, url, token, version, body string) string {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Mcp-Protocol-Version", version)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := json.Compact(&out, b); err != nil {
		t.Fatalf("gateway answer %q: %v", b, err)
	}
	return out.String()
}

// TestGatewaySDKClient connects the official Go SDK's client to the gateway through the
// bridge, over stdio pipes: with the SDK's newest protocol revision (stateless, headers
// repeating the method and tool name) and with a session-based one.
func TestGatewaySDKClient(t *testing.T) {
	g := startGateway(t)
	token := g.Agents["test-agent"].Token
	for _, version := range []string{"", "2025-11-25"} {
		t.Run("version "+version, func(t *testing.T) {
			inR, inW := io.Pipe()
			outR, outW := io.Pipe()
			stderr := &logtest.Buffer{}
			done := make(chan error, 1)
			go func() {
				err := bridge.Run(context.Background(), bridge.Options{URL: g.URL, Token: token, Stderr: stderr}, inR, outW)
				outW.Close()
				done <- err
			}()
			c := mcp.NewClient(&mcp.Implementation{Name: "sdk-over-stdio", Version: "1"}, nil)
			ctx, cancel := context.WithTimeout(context.Background(), wait)
			defer cancel()
			var opts *mcp.ClientSessionOptions
			if version != "" {
				opts = &mcp.ClientSessionOptions{ProtocolVersion: version}
			}
			cs, err := c.Connect(ctx, &mcp.IOTransport{Reader: outR, Writer: inW}, opts)
			if err != nil {
				t.Fatalf("Connect through the bridge: %v; stderr:\n%s", err, stderr)
			}
			want := version
			if want == "" {
				want = "2026-07-28"
			}
			if got := cs.InitializeResult().ProtocolVersion; got != want {
				t.Errorf("negotiated %q, want %q", got, want)
			}
			if diff := cmp.Diff([]string{"create_ticket", "read_inbox"}, chaperonetest.ToolNames(t, cs)); diff != "" {
				t.Errorf("tools (-want +got):\n%s", diff)
			}
			res := chaperonetest.Call(t, cs, "read_inbox", map[string]any{"limit": 1})
			if res.IsError || len(res.Content) == 0 {
				t.Errorf("read_inbox: %+v, want a result", res)
			}
			res = chaperonetest.Call(t, cs, "create_ticket", map[string]any{"title": "forbidden", "body": "x"})
			if got := chaperonetest.Refusal(t, res); got != "denied_by_policy" {
				t.Errorf("denied call: refusal %q, want denied_by_policy", got)
			}
			if err := cs.Ping(ctx, nil); err != nil {
				t.Errorf("Ping: %v", err)
			}
			if err := cs.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run = %v, want nil after the client closed", err)
				}
			case <-time.After(wait):
				t.Fatal("Run did not return after the client closed stdin")
			}
			if strings.Contains(stderr.String(), token) {
				t.Errorf("stderr holds the token")
			}
		})
	}
}

// TestGatewayWrongToken: a token the gateway refuses gets the initialize request an
// error saying so, never the token itself.
func TestGatewayWrongToken(t *testing.T) {
	g := startGateway(t)
	const wrong = "chp_not-a-token-the-gateway-knows"
	s := startStdio(t, bridge.Options{URL: g.URL, Token: wrong})
	s.send(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"h","version":"1"}}}`)
	code, msg := rpcError(t, s.response("1"))
	if code != -32001 || !strings.Contains(msg, "refused the bearer token") || !strings.Contains(msg, "401") {
		t.Errorf("initialize with a wrong token: error %d %q, want -32001 saying the token was refused (401)", code, msg)
	}
	s.send(`{"jsonrpc":"2.0","method":"notifications/initialized"}`)
	if rest, err := s.close(); err != nil || len(rest) != 0 {
		t.Errorf("Run = %v, lines %q", err, rest)
	}
	if !strings.Contains(s.stderr.String(), "refused the bearer token") {
		t.Errorf("the refused notification is not reported on stderr:\n%s", s.stderr)
	}
}

// fakeGateway is a small MCP endpoint on loopback whose answers a test scripts.
type fakeGateway struct {
	*httptest.Server
	mu       sync.Mutex
	messages []string // bodies POSTed, in arrival order
	headers  []http.Header
}

func newFake(t *testing.T, h func(w http.ResponseWriter, r *http.Request, body []byte)) *fakeGateway {
	t.Helper()
	f := &fakeGateway{}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		if r.Method == http.MethodPost {
			f.messages = append(f.messages, string(body))
		}
		f.headers = append(f.headers, r.Header.Clone())
		f.mu.Unlock()
		h(w, r, body)
	}))
	t.Cleanup(f.Close)
	return f
}

func (f *fakeGateway) posted() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.messages...)
}

// method returns the JSON-RPC method and id of a body.
func method(body []byte) (string, string) {
	var m struct {
		ID     json.RawMessage `json:"id"`
		Method string          `json:"method"`
	}
	_ = json.Unmarshal(body, &m)
	return m.Method, string(m.ID)
}

func writeJSON(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	io.WriteString(w, body)
}

// echo answers every request with an empty result and every notification with 202.
func echo(w http.ResponseWriter, r *http.Request, body []byte) {
	if r.Method != http.MethodPost {
		w.WriteHeader(http.StatusMethodNotAllowed)
		return
	}
	_, id := method(body)
	if id == "" {
		w.WriteHeader(http.StatusAccepted)
		return
	}
	writeJSON(w, 200, `{"jsonrpc":"2.0","id":`+id+`,"result":{}}`)
}

const testToken = "chp_bridge-test-token-0123456789"

// TestInputErrors: lines that cannot be relayed get an error if they had an id, else a
// note on stderr, and the bridge goes on.
func TestInputErrors(t *testing.T) {
	f := newFake(t, echo)
	s := startStdio(t, bridge.Options{URL: f.URL, Token: testToken, MaxMessageBytes: 1024})
	big := strings.Repeat("a", 2000)
	cases := []struct {
		name, line string
		id         string // "" for no answer
		code       int
		msg        string
	}{
		{"malformed with id", `{"jsonrpc":"2.0","id":7,"method":"ping",`, "7", -32700, "not valid JSON"},
		{"malformed with string id", `{"id":"x\u0041","jsonrpc":"2.0","method":}`, `"xA"`, -32700, "not valid JSON"},
		{"not JSON", `hello`, "", 0, ""},
		{"not an object", `[{"jsonrpc":"2.0","id":8,"method":"ping"}]`, "", 0, ""},
		{"oversized with id", `{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"x":"` + big + `"}}`, "9", -32600, "larger than 1024 bytes"},
		{"oversized with id after the bound", `{"jsonrpc":"2.0","method":"tools/call","params":{"x":"` + big + `"},"id":10}`, "", 0, ""},
		{"oversized notification", `{"jsonrpc":"2.0","method":"notifications/x","params":{"x":"` + big + `"}}`, "", 0, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s.send(c.line)
			// A ping after each line: its answer proves the bridge runs on, and that no
			// answer to the bad line came before it.
			s.send(`{"jsonrpc":"2.0","id":"after","method":"ping"}`)
			if c.id != "" {
				code, msg := rpcError(t, s.response(c.id))
				if code != c.code || !strings.Contains(msg, c.msg) {
					t.Errorf("error %d %q, want %d containing %q", code, msg, c.code, c.msg)
				}
			}
			if got := s.response(`"after"`); got != `{"jsonrpc":"2.0","id":"after","result":{}}` {
				t.Errorf("ping after: %s", got)
			}
			if len(s.pending) != 0 {
				t.Errorf("unexpected lines: %q", s.pending)
				s.pending = nil
			}
		})
	}
	if rest, err := s.close(); err != nil || len(rest) != 0 {
		t.Errorf("Run = %v, lines %q", err, rest)
	}
	for _, p := range f.posted() {
		if method, _ := method([]byte(p)); method != "ping" {
			t.Errorf("relayed %q; only the pings should reach the gateway", p)
		}
	}
	if n := strings.Count(s.stderr.String(), "message dropped"); n != 4 {
		t.Errorf("stderr notes %d dropped messages, want 4:\n%s", n, s.stderr)
	}
}

// TestHTTPFailures: each way the gateway can fail a request becomes a JSON-RPC error for
// that request, naming what happened.
func TestHTTPFailures(t *testing.T) {
	other := newFake(t, echo) // a redirect's target, which must not be contacted
	f := newFake(t, func(w http.ResponseWriter, r *http.Request, body []byte) {
		if r.Method != http.MethodPost {
			w.WriteHeader(http.StatusMethodNotAllowed)
			return
		}
		m, id := method(body)
		switch m {
		case "initialize":
			w.Header().Set("Mcp-Session-Id", "ses_1")
			writeJSON(w, 200, `{"jsonrpc":"2.0","id":`+id+`,"result":{"protocolVersion":"2025-11-25","capabilities":{}}}`)
		case "boom":
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(500)
			io.WriteString(w, "<html>oops</html>")
		case "gone":
			writeJSON(w, 404, `{"jsonrpc":"2.0","id":`+id+`,"error":{"code":-32002,"message":"session not found"}}`)
		case "mismatch":
			writeJSON(w, 400, `{"jsonrpc":"2.0","id":`+id+`,"error":{"code":-32020,"message":"Mcp-Method header is missing","data":{"k":1}}}`)
		case "otherid":
			writeJSON(w, 503, `{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"too many sessions"}}`)
		case "forbidden":
			writeJSON(w, 403, `{"error":"insufficient_scope"}`)
		case "accepted":
			w.WriteHeader(http.StatusAccepted)
		case "html":
			w.Header().Set("Content-Type", "text/html")
			io.WriteString(w, "<p>hi</p>")
		case "badjson":
			writeJSON(w, 200, `{"jsonrpc":"2.0","id":`+id+`,`)
		case "moved":
			http.Redirect(w, r, other.URL, http.StatusTemporaryRedirect)
		case "huge":
			writeJSON(w, 200, `{"jsonrpc":"2.0","id":`+id+`,"result":{"x":"`+strings.Repeat("a", 4096)+`"}}`)
		default:
			echo(w, r, body)
		}
	})
	s := startStdio(t, bridge.Options{URL: f.URL, Token: testToken, MaxMessageBytes: 2048})
	s.send(`{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25"}}`)
	s.response("0")
	cases := []struct {
		method string
		code   int
		want   string
	}{
		{"boom", -32603, "HTTP 500 Internal Server Error"},
		{"gone", -32603, "session expired"},
		{"otherid", -32603, "HTTP 503 Service Unavailable: too many sessions"},
		{"forbidden", -32001, "refused the bearer token (HTTP 403"},
		{"accepted", -32603, "HTTP 202 without a response"},
		{"html", -32603, `content type "text/html"`},
		{"badjson", -32603, "invalid JSON"},
		{"moved", -32603, "HTTP 307 Temporary Redirect: check the URL"},
		{"huge", -32603, "larger than 2048 bytes"},
	}
	for i, c := range cases {
		t.Run(c.method, func(t *testing.T) {
			id := fmt.Sprint(100 + i)
			s.send(`{"jsonrpc":"2.0","id":` + id + `,"method":"` + c.method + `"}`)
			code, msg := rpcError(t, s.response(id))
			if code != c.code || !strings.Contains(msg, c.want) {
				t.Errorf("%s: error %d %q, want %d containing %q", c.method, code, msg, c.code, c.want)
			}
		})
	}
	t.Run("the gateway's own error passes unchanged", func(t *testing.T) {
		s.send(`{"jsonrpc":"2.0","id":"m","method":"mismatch"}`)
		want := `{"jsonrpc":"2.0","id":"m","error":{"code":-32020,"message":"Mcp-Method header is missing","data":{"k":1}}}`
		if got := s.response(`"m"`); got != want {
			t.Errorf("got %s\nwant %s", got, want)
		}
	})
	if rest, err := s.close(); err != nil || len(rest) != 0 {
		t.Errorf("Run = %v, lines %q", err, rest)
	}
	if n := len(other.posted()); n != 0 {
		t.Errorf("the redirect was followed: its target got %d requests", n)
	}
}

// TestUnreachable: a gateway that cannot be reached fails each request with an error
// that does not repeat the URL.
func TestUnreachable(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL + "/mcp?tenant=secret-tenant"
	srv.Close()
	s := startStdio(t, bridge.Options{URL: url, Token: testToken})
	s.send(`{"jsonrpc":"2.0","id":1,"method":"ping"}`)
	code, msg := rpcError(t, s.response("1"))
	if code != -32603 || !strings.Contains(msg, "could not reach the Chaperone gateway") || strings.Contains(msg, "secret-tenant") {
		t.Errorf("error %d %q, want -32603 saying the gateway is unreachable, without the URL", code, msg)
	}
	if _, err := s.close(); err != nil {
		t.Errorf("Run = %v", err)
	}
}

// TestConcurrentRequests: a slow call blocks neither a ping nor its own cancellation; the
// cancelled call's HTTP request ends at the gateway, and nothing is written for it.
func TestConcurrentRequests(t *testing.T) {
	started := make(chan string, 4)
	release := make(chan struct{})
	ended := make(chan string, 4)
	f := newFake(t, func(w http.ResponseWriter, r *http.Request, body []byte) {
		m, id := method(body)
		if m != "tools/call" {
			echo(w, r, body)
			return
		}
		started <- id
		select {
		case <-release:
			writeJSON(w, 200, `{"jsonrpc":"2.0","id":`+id+`,"result":{"content":[]}}`)
		case <-r.Context().Done():
			ended <- id
		}
	})
	s := startStdio(t, bridge.Options{URL: f.URL, Token: testToken, DrainTimeout: wait})
	s.send(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"slow"}}`)
	s.send(`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"slow"}}`)
	recvWithin(t, started)
	recvWithin(t, started)

	s.send(`{"jsonrpc":"2.0","id":3,"method":"ping"}`)
	if got := s.response("3"); got != `{"jsonrpc":"2.0","id":3,"result":{}}` {
		t.Errorf("ping while calls run: %s", got)
	}

	s.send(`{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":2,"reason":"user"}}`)
	if id := recvWithin(t, ended); id != "2" {
		t.Errorf("the gateway saw request %s end, want 2", id)
	}
	s.send(`{"jsonrpc":"2.0","id":4,"method":"ping"}`)
	s.response("4")

	// Call 1 is still in flight when stdin ends: it is answered before Run returns.
	s.in.Close()
	close(release)
	rest, err := s.close()
	if err != nil {
		t.Errorf("Run = %v", err)
	}
	if diff := cmp.Diff([]string{`{"jsonrpc":"2.0","id":1,"result":{"content":[]}}`}, rest); diff != "" {
		t.Errorf("lines after stdin ended (-want +got):\n%s", diff)
	}
	cancelled := false
	for _, p := range f.posted() {
		cancelled = cancelled || strings.Contains(p, "notifications/cancelled")
	}
	if !cancelled {
		t.Error("the cancellation was not relayed to the gateway")
	}
}

func recvWithin(t *testing.T, ch <-chan string) string {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(wait):
		t.Fatalf("nothing within %s", wait)
	}
	return ""
}

// TestInFlightBound: beyond MaxInFlight a request is answered with an error at once.
func TestInFlightBound(t *testing.T) {
	started := make(chan string, 1)
	release := make(chan struct{})
	f := newFake(t, func(w http.ResponseWriter, r *http.Request, body []byte) {
		m, id := method(body)
		if m == "tools/call" {
			started <- id
			<-release
		}
		echo(w, r, body)
	})
	s := startStdio(t, bridge.Options{URL: f.URL, Token: testToken, MaxInFlight: 1, DrainTimeout: wait})
	s.send(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"slow"}}`)
	recvWithin(t, started)
	s.send(`{"jsonrpc":"2.0","id":2,"method":"ping"}`)
	code, msg := rpcError(t, s.response("2"))
	if code != -32603 || !strings.Contains(msg, "too many messages in flight (limit 1)") {
		t.Errorf("error %d %q, want the in-flight limit", code, msg)
	}
	close(release)
	if got := s.response("1"); got != `{"jsonrpc":"2.0","id":1,"result":{}}` {
		t.Errorf("slow call: %s", got)
	}
	if _, err := s.close(); err != nil {
		t.Errorf("Run = %v", err)
	}
}

// TestEventStreams: an answer that is an event stream is written event by event, in
// order, up to the response; the server-to-client stream a session opens is relayed and
// reopened after its last event; the session's headers go with every request.
func TestEventStreams(t *testing.T) {
	var (
		mu      sync.Mutex
		gets    []http.Header
		deleted []string
	)
	f := newFake(t, func(w http.ResponseWriter, r *http.Request, body []byte) {
		switch r.Method {
		case http.MethodGet:
			mu.Lock()
			gets = append(gets, r.Header.Clone())
			n := len(gets)
			mu.Unlock()
			if n > 1 {
				w.WriteHeader(http.StatusMethodNotAllowed)
				return
			}
			w.Header().Set("Content-Type", "text/event-stream")
			io.WriteString(w, "id: e1\ndata: \n\n: keep-alive\n\nevent: message\nid: e2\ndata: {\"jsonrpc\":\"2.0\",\n")
			io.WriteString(w, "data:  \"method\":\"notifications/tools/list_changed\"}\n\n")
			return
		case http.MethodDelete:
			mu.Lock()
			deleted = append(deleted, r.Header.Get("Mcp-Session-Id"))
			mu.Unlock()
			w.WriteHeader(http.StatusNoContent)
			return
		}
		m, id := method(body)
		switch m {
		case "initialize":
			w.Header().Set("Mcp-Session-Id", "ses_abc")
			w.Header().Set("Content-Type", "text/event-stream")
			io.WriteString(w, "event: message\r\ndata: {\"jsonrpc\":\"2.0\",\"id\":"+id+",\"result\":{\"protocolVersion\":\"2025-03-26\"}}\r\n\r\n")
		case "tools/call":
			w.Header().Set("Content-Type", "text/event-stream")
			io.WriteString(w, ": comment\n\nevent: ping\ndata: {}\n\n")
			io.WriteString(w, "data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{\"progressToken\":\"t\",\"progress\":1}}\n\n")
			io.WriteString(w, "data: {\"jsonrpc\":\"2.0\",\"id\":"+id+",\"result\":{\"content\":[]}}\n\n")
			io.WriteString(w, "data: {\"jsonrpc\":\"2.0\",\"method\":\"after/the/response\"}\n\n")
		case "cut":
			w.Header().Set("Content-Type", "text/event-stream")
			io.WriteString(w, "data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\",\"params\":{}}\n\n")
		default:
			echo(w, r, body)
		}
	})
	s := startStdio(t, bridge.Options{URL: f.URL, Token: testToken, StreamRetryDelay: time.Millisecond})
	s.send(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-03-26"}}`)
	if got := s.response("1"); got != `{"jsonrpc":"2.0","id":1,"result":{"protocolVersion":"2025-03-26"}}` {
		t.Errorf("initialize = %s", got)
	}
	if got := s.next(); got != `{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}` {
		t.Errorf("server-to-client stream: %s", got)
	}
	s.send(`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"x","_meta":{"progressToken":"t"}}}`)
	want := []string{
		`{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"t","progress":1}}`,
		`{"jsonrpc":"2.0","id":2,"result":{"content":[]}}`,
	}
	got := []string{s.next(), s.next()}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("tools/call event stream (-want +got):\n%s", diff)
	}
	s.send(`{"jsonrpc":"2.0","id":3,"method":"cut"}`)
	if got := s.next(); !strings.Contains(got, "notifications/message") {
		t.Errorf("first event of the cut stream: %s", got)
	}
	code, msg := rpcError(t, s.response("3"))
	if code != -32603 || !strings.Contains(msg, "event stream ended before the response") {
		t.Errorf("cut stream: error %d %q", code, msg)
	}
	chaperonetest.WaitFor(t, wait, "the stream reopened", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(gets) == 2
	})
	if rest, err := s.close(); err != nil || len(rest) != 0 {
		t.Errorf("Run = %v, lines %q", err, rest)
	}

	mu.Lock()
	defer mu.Unlock()
	if len(gets) != 2 {
		t.Fatalf("GET %d times, want 2 (the stream, then its reopening)", len(gets))
	}
	for i, h := range gets {
		if h.Get("Mcp-Session-Id") != "ses_abc" || h.Get("Mcp-Protocol-Version") != "2025-03-26" || h.Get("Accept") != "text/event-stream" {
			t.Errorf("GET %d headers: %v", i, h)
		}
	}
	if got := gets[1].Get("Last-Event-ID"); got != "e2" {
		t.Errorf("reopened stream: Last-Event-ID %q, want e2", got)
	}
	if diff := cmp.Diff([]string{"ses_abc"}, deleted); diff != "" {
		t.Errorf("DELETE sessions (-want +got):\n%s", diff)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, h := range f.headers {
		if h.Get("Authorization") != "Bearer "+testToken {
			t.Errorf("request %d: Authorization %q", i, h.Get("Authorization"))
		}
	}
}

// TestStandardHeaders: a 2026-07-28 request carries the protocol version, method and name
// headers its body implies; older ones carry none of them.
func TestStandardHeaders(t *testing.T) {
	f := newFake(t, echo)
	s := startStdio(t, bridge.Options{URL: f.URL, Token: testToken})
	lines := []string{
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read_inbox","arguments":{},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}`,
		`{"jsonrpc":"2.0","id":2,"method":"resources/read","params":{"uri":"file:///a","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}`,
		`{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"bad\nname","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}`,
		`{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"old"}}`,
	}
	want := []map[string]string{
		{"Mcp-Protocol-Version": "2026-07-28", "Mcp-Method": "tools/call", "Mcp-Name": "read_inbox"},
		{"Mcp-Protocol-Version": "2026-07-28", "Mcp-Method": "resources/read", "Mcp-Name": "file:///a"},
		{"Mcp-Protocol-Version": "2026-07-28", "Mcp-Method": "tools/call", "Mcp-Name": ""},
		{"Mcp-Protocol-Version": "", "Mcp-Method": "", "Mcp-Name": ""},
	}
	for i, l := range lines {
		s.send(l)
		s.response(fmt.Sprint(i + 1))
		f.mu.Lock()
		h := f.headers[len(f.headers)-1]
		f.mu.Unlock()
		got := map[string]string{}
		for k := range want[i] {
			got[k] = h.Get(k)
		}
		if diff := cmp.Diff(want[i], got); diff != "" {
			t.Errorf("headers of %s (-want +got):\n%s", l, diff)
		}
	}
	if _, err := s.close(); err != nil {
		t.Errorf("Run = %v", err)
	}
}

// TestRunRefuses: Run checks its options before it reads anything.
func TestRunRefuses(t *testing.T) {
	cases := []struct {
		name string
		opts bridge.Options
		want string
	}{
		{"plain http to another host", bridge.Options{URL: "http://gw.example.com/mcp", Token: testToken}, "plain http is allowed only to a loopback host"},
		{"not http", bridge.Options{URL: "ftp://127.0.0.1/mcp", Token: testToken}, `must be http or https, got scheme "ftp"`},
		{"credentials in the URL", bridge.Options{URL: "https://user:hunter2@gw.example.com/mcp", Token: testToken}, "must not carry user information"},
		{"no host", bridge.Options{URL: "https:///mcp", Token: testToken}, "no host"},
		{"unparsable", bridge.Options{URL: "https://gw.example.com/%zz?pw=hunter2", Token: testToken}, "invalid URL"},
		{"no token", bridge.Options{URL: "https://gw.example.com/mcp"}, "no bearer token"},
		{"token with a newline", bridge.Options{URL: "https://gw.example.com/mcp", Token: "hunter2\nX-Evil: 1"}, "space or a control character"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var stdout bytes.Buffer
			err := bridge.Run(context.Background(), c.opts, strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"ping"}`+"\n"), &stdout)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Run = %v, want an error containing %q", err, c.want)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("error %q repeats a secret", err)
			}
			if stdout.Len() != 0 {
				t.Errorf("stdout = %q, want nothing", stdout.String())
			}
		})
	}
	if _, err := bridge.ParseURL("http://gw.example.com/mcp", true); err != nil {
		t.Errorf("ParseURL(plain http, allowed) = %v", err)
	}
	for _, u := range []string{"http://127.0.0.1:8080/mcp", "http://localhost/mcp", "http://[::1]:9/mcp", "https://gw.example.com/mcp"} {
		if _, err := bridge.ParseURL(u, false); err != nil {
			t.Errorf("ParseURL(%q) = %v, want nil", u, err)
		}
	}
}

// TestContextCancel: when ctx ends Run returns at once with its error, even with a
// request in flight and stdin still open.
func TestContextCancel(t *testing.T) {
	started := make(chan string, 1)
	f := newFake(t, func(w http.ResponseWriter, r *http.Request, body []byte) {
		if m, id := method(body); m == "tools/call" {
			started <- id
			<-r.Context().Done()
			return
		}
		echo(w, r, body)
	})
	inR, inW := io.Pipe()
	defer inW.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- bridge.Run(ctx, bridge.Options{URL: f.URL, Token: testToken}, inR, io.Discard)
	}()
	if _, err := io.WriteString(inW, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"slow"}}`+"\n"); err != nil {
		t.Fatal(err)
	}
	recvWithin(t, started)
	cancel()
	select {
	case err := <-done:
		if err != context.Canceled {
			t.Errorf("Run = %v, want context.Canceled", err)
		}
	case <-time.After(wait):
		t.Fatal("Run did not return after ctx was cancelled")
	}
}

// TestTokenSource: with a TokenSource, every request carries the token it gives now — a
// rotated short-lived token is picked up without restarting the bridge — and when it
// fails, the last good token goes out and the failure is logged once, without a token.
func TestTokenSource(t *testing.T) {
	f := newFake(t, echo)
	var mu sync.Mutex
	current, fail := "tok-1", false
	s := startStdio(t, bridge.Options{URL: f.URL, Token: testToken, TokenSource: func() (string, error) {
		mu.Lock()
		defer mu.Unlock()
		if fail {
			return "bad token with spaces", nil
		}
		return current, nil
	}})
	auth := func(i int) string {
		t.Helper()
		s.send(fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"ping"}`, i))
		s.response(fmt.Sprint(i))
		f.mu.Lock()
		defer f.mu.Unlock()
		return f.headers[len(f.headers)-1].Get("Authorization")
	}
	if got := auth(1); got != "Bearer tok-1" {
		t.Errorf("first request: %q", got)
	}
	mu.Lock()
	current = "tok-2"
	mu.Unlock()
	if got := auth(2); got != "Bearer tok-2" {
		t.Errorf("after the rotation: %q", got)
	}
	mu.Lock()
	fail = true
	mu.Unlock()
	for i := 3; i <= 4; i++ {
		if got := auth(i); got != "Bearer tok-2" {
			t.Errorf("request %d while the source fails: %q, want the last good token", i, got)
		}
	}
	if _, err := s.close(); err != nil {
		t.Errorf("Run = %v", err)
	}
	log := s.stderr.String()
	if n := strings.Count(log, "could not read a new bearer token"); n != 1 {
		t.Errorf("the failure was logged %d times, want once:\n%s", n, log)
	}
	if strings.Contains(log, "tok-") || strings.Contains(log, "spaces") {
		t.Errorf("a token reached the log:\n%s", log)
	}
}
