package egress

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func TestAllowedGET(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	target := h.url("api.test", "/hello?api_key=query-secret&x=1")
	resp, body := h.get(h.client(agentA, tokenA), target)
	if resp.StatusCode != 200 || string(body) != "hello from origin" {
		t.Fatalf("GET %s = %d %q, want 200 %q", target, resp.StatusCode, body, "hello from origin")
	}
	if resp.Header.Get("X-Origin") != "yes" {
		t.Errorf("GET %s: the origin's X-Origin header was not relayed: %v", target, resp.Header)
	}
	for _, k := range []string{"Keep-Alive", "Proxy-Authenticate", RefusalHeader} {
		if v := resp.Header.Get(k); v != "" {
			t.Errorf("GET %s: response header %s = %q reached the agent", target, k, v)
		}
	}
	f := h.lastForward()
	wantReq := Request{
		Method: "GET", Scheme: "http", Host: "api.test", Port: h.port,
		URL: "http://api.test:" + strconv.Itoa(h.port) + "/hello", QueryDropped: true,
		Addrs: []netip.Addr{netip.MustParseAddr("127.0.0.1")}, Rule: "web",
	}
	if diff := cmp.Diff(wantReq, f.req, cmpopts.IgnoreFields(Request{}, "Principal"), cmpopts.EquateComparable(netip.Addr{})); diff != "" {
		t.Errorf("Decide request (-want +got):\n%s", diff)
	}
	if f.req.Principal == nil || f.req.Principal.Agent.ID != agentA {
		t.Errorf("Decide principal = %+v, want agent %s", f.req.Principal, agentA)
	}
	if f.err != nil || f.res.Status != 200 || f.res.Bytes != int64(len(body)) || f.res.Sent != 0 {
		t.Errorf("forward = %+v, %v; want status 200, %d bytes, none sent", f.res, f.err, len(body))
	}
	seen := h.lastSeen()
	if want := "api.test:" + strconv.Itoa(h.port); seen.host != want {
		t.Errorf("origin saw Host %q, want %q", seen.host, want)
	}
	if seen.uri != "/hello?api_key=query-secret&x=1" {
		t.Errorf("origin saw %q, want the path and query forwarded", seen.uri)
	}
	if v := seen.header.Get("Proxy-Authorization"); v != "" {
		t.Errorf("origin saw Proxy-Authorization %q", v)
	}
	if strings.Contains(h.logs.String(), "query-secret") || strings.Contains(h.logs.String(), tokenA) {
		t.Errorf("logs hold the query or the token:\n%s", h.logs)
	}
	h.mu.Lock()
	auths := slices.Clone(h.auths)
	h.mu.Unlock()
	if !slices.Equal(auths, []string{"Bearer " + tokenA}) {
		t.Errorf("Authenticate got %q, want the Basic password as a Bearer token", auths)
	}
}

func TestBearerProxyAuthorization(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	resp, body := h.raw("GET " + h.url("api.test", "/hello") + " HTTP/1.1\r\nHost: api.test\r\n" +
		"Proxy-Authorization: Bearer " + tokenA + "\r\nConnection: close\r\n\r\n")
	if resp.StatusCode != 200 || string(body) != "hello from origin" {
		t.Fatalf("GET with Bearer = %d %q, want 200", resp.StatusCode, body)
	}
}

// TestRefusedByProxy covers the requests the proxy refuses itself: none reaches Decide
// or the origin, each is reported to Refused, and the agent gets the JSON error.
func TestRefusedByProxy(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	a, b := h.client(agentA, tokenA), h.client(agentB, tokenB)
	tests := []struct {
		name       string
		client     *http.Client
		method     string
		target     string
		status     int
		code       string
		reasonHas  string
		noLookupOf string // a name that must not have been resolved
	}{
		{name: "method not allowed", client: a, method: "POST", target: h.url("api.test", "/echo"),
			status: 403, code: CodeEgressDenied, reasonHas: "method POST"},
		{name: "method allowed on another host only", client: a, method: "GET", target: h.url("upload.test", "/echo"),
			status: 403, code: CodeEgressDenied, reasonHas: "method GET"},
		{name: "host not allowed", client: a, method: "GET", target: h.url("other.test", "/hello"),
			status: 403, code: CodeEgressDenied, reasonHas: "allows host other.test", noLookupOf: "other.test"},
		{name: "port not allowed", client: a, method: "GET", target: "http://api.test:1/hello",
			status: 403, code: CodeEgressDenied, reasonHas: "api.test:1"},
		{name: "private address through a name", client: a, method: "GET", target: h.url("intranet.test", "/"),
			status: 403, code: CodeEgressDenied, reasonHas: "resolves to private address 10.1.2.3"},
		{name: "metadata address through a name", client: a, method: "GET", target: h.url("metadata.test", "/"),
			status: 403, code: CodeEgressDenied, reasonHas: "resolves to metadata address 169.254.169.254"},
		{name: "one private address among public ones", client: a, method: "GET", target: h.url("mixed.test", "/hello"),
			status: 403, code: CodeEgressDenied, reasonHas: "private address 10.0.0.7"},
		{name: "loopback outside AllowPrivate", client: a, method: "GET", target: h.url("v6only.test", "/hello"),
			status: 403, code: CodeEgressDenied, reasonHas: "loopback address ::1"},
		{name: "literal metadata address", client: b, method: "GET", target: "http://169.254.169.254/latest/meta-data/",
			status: 403, code: CodeEgressDenied, reasonHas: "metadata address 169.254.169.254"},
		{name: "literal private address", client: b, method: "GET", target: h.url("10.0.0.1", "/"),
			status: 403, code: CodeEgressDenied, reasonHas: "private address 10.0.0.1"},
		{name: "literal loopback outside AllowPrivate", client: b, method: "GET", target: h.url("127.0.0.2", "/"),
			status: 403, code: CodeEgressDenied, reasonHas: "loopback address 127.0.0.2"},
		{name: "IPv4-mapped metadata address", client: b, method: "GET", target: "http://[::ffff:169.254.169.254]/",
			status: 403, code: CodeEgressDenied, reasonHas: "metadata address 169.254.169.254"},
		{name: "NAT64 metadata address", client: b, method: "GET", target: "http://[64:ff9b::a9fe:a9fe]/",
			status: 403, code: CodeEgressDenied, reasonHas: "metadata address 64:ff9b::a9fe:a9fe"},
		{name: "IPv6 loopback", client: b, method: "GET", target: "http://[::1]/",
			status: 403, code: CodeEgressDenied, reasonHas: "loopback address ::1"},
		{name: "unresolvable name", client: b, method: "GET", target: h.url("nowhere.test", "/"),
			status: 502, code: CodeResolveFailed, reasonHas: "resolve nowhere.test"},
		{name: "decimal IPv4 notation", client: b, method: "GET", target: "http://2130706433/",
			status: 400, code: CodeBadRequest, reasonHas: "dotted-decimal"},
		{name: "no credentials", client: h.client("", ""), method: "GET", target: h.url("api.test", "/hello"),
			status: 407, code: CodeUnauthenticated, reasonHas: "missing Proxy-Authorization"},
		{name: "wrong token", client: h.client(agentA, "chp_not-a-token"), method: "GET", target: h.url("api.test", "/hello"),
			status: 407, code: CodeUnauthenticated, reasonHas: "credential refused"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			decided, refused, seen := h.counts()
			req, err := http.NewRequest(tt.method, tt.target, strings.NewReader("payload"))
			if err != nil {
				t.Fatal(err)
			}
			resp, err := tt.client.Do(req)
			if err != nil {
				t.Fatalf("%s %s: %v", tt.method, tt.target, err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			wantError(t, tt.method+" "+tt.target, resp, body, tt.status, tt.code)
			if tt.status == 407 && resp.Header.Get("Proxy-Authenticate") != ProxyAuthenticate {
				t.Errorf("Proxy-Authenticate = %q, want %q", resp.Header.Get("Proxy-Authenticate"), ProxyAuthenticate)
			}
			d2, r2, s2 := h.counts()
			if d2 != decided || s2 != seen {
				t.Errorf("a refused request reached Decide (%d→%d) or the origin (%d→%d)", decided, d2, seen, s2)
			}
			if r2 != refused+1 {
				t.Fatalf("Refused called %d times, want once", r2-refused)
			}
			rc, _ := h.lastRefusal()
			if rc.code != tt.code || !strings.Contains(rc.reason, tt.reasonHas) {
				t.Errorf("Refused(code %q, reason %q), want code %q and a reason containing %q", rc.code, rc.reason, tt.code, tt.reasonHas)
			}
			if tt.status != 407 && tt.status != 400 && (rc.req.Principal == nil || rc.req.Principal.Agent == nil) {
				t.Errorf("Refused request has no principal: %+v", rc.req)
			}
			if tt.noLookupOf != "" && h.resolver.count(tt.noLookupOf) != 0 {
				t.Errorf("%s was looked up although no rule lists it", tt.noLookupOf)
			}
		})
	}
	if logs := h.logs.String(); strings.Contains(logs, tokenA) || strings.Contains(logs, tokenB) || strings.Contains(logs, "chp_not-a-token") {
		t.Errorf("a token reached the logs:\n%s", logs)
	}
}

// TestRedirectToPrivate checks that the proxy never follows a redirect and that the
// client's request to the Location is checked again.
func TestRedirectToPrivate(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	for _, tc := range []struct {
		name, client, token, to, reasonHas string
	}{
		{"name resolving to metadata", agentA, tokenA, "http://metadata.test/latest/meta-data/", "metadata address 169.254.169.254"},
		{"name resolving to private", agentA, tokenA, "http://intranet.test/", "private address 10.1.2.3"},
		{"literal metadata address", agentB, tokenB, "http://169.254.169.254/latest/meta-data/", "metadata address 169.254.169.254"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			target := h.url("api.test", "/redirect?to="+url.QueryEscape(tc.to))
			if tc.client == agentB {
				target = h.url("127.0.0.1", "/redirect?to="+url.QueryEscape(tc.to))
			}
			decided, _, _ := h.counts()
			resp, body := h.get(h.client(tc.client, tc.token), target)
			wantError(t, "GET "+target+" (following redirects)", resp, body, 403, CodeEgressDenied)
			if resp.Request.URL.String() != tc.to {
				t.Errorf("final request to %s, want %s", resp.Request.URL, tc.to)
			}
			if d, _, _ := h.counts(); d != decided+1 {
				t.Errorf("Decide called %d times, want once (for the redirecting request only)", d-decided)
			}
			if rc, _ := h.lastRefusal(); !strings.Contains(rc.reason, tc.reasonHas) {
				t.Errorf("Refused reason %q, want it to contain %q", rc.reason, tc.reasonHas)
			}
		})
	}
	t.Run("302 reaches the client unfollowed", func(t *testing.T) {
		c := h.client(agentA, tokenA)
		c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
		resp, _ := h.get(c, h.url("api.test", "/redirect?to="+url.QueryEscape("http://metadata.test/")))
		if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "http://metadata.test/" {
			t.Errorf("GET /redirect = %d Location %q, want 302 to http://metadata.test/", resp.StatusCode, resp.Header.Get("Location"))
		}
	})
}

func TestConnectTLS(t *testing.T) {
	t.Parallel()
	injected := 0
	h := newHarness(t, func(_ *harness, o *Options) {
		o.Inject = func(context.Context, *Request, http.Header) ([]string, error) {
			injected++
			return nil, nil
		}
	})
	target := "https://secure.test:" + strconv.Itoa(h.tlsPort) + "/hello"
	resp, body := h.get(h.client(agentA, tokenA), target)
	if resp.StatusCode != 200 || string(body) != "hello from origin" || resp.TLS == nil {
		t.Fatalf("GET %s = %d %q (TLS %v), want 200 over TLS", target, resp.StatusCode, body, resp.TLS != nil)
	}
	f := h.lastForward()
	if !f.req.Connect || f.req.Method != "CONNECT" || f.req.Scheme != "https" || f.req.URL != "https://secure.test:"+strconv.Itoa(h.tlsPort) {
		t.Errorf("Decide request = %+v, want a CONNECT to secure.test", f.req)
	}
	if f.err != nil || f.res.Status != 200 || f.res.Sent == 0 || f.res.Bytes <= f.res.Sent {
		t.Errorf("forward = %+v, %v; want status 200 and bytes relayed both ways", f.res, f.err)
	}
	if injected != 0 {
		t.Errorf("Inject called %d times for a tunnel", injected)
	}
}

func TestConnectRefused(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	auth := "Proxy-Authorization: " + basic(agentA, tokenA) + "\r\n"
	tests := []struct {
		name, request string
		status        int
		code          string
	}{
		{"host not allowed", "CONNECT other.test:443 HTTP/1.1\r\nHost: other.test:443\r\n" + auth + "\r\n", 403, CodeEgressDenied},
		{"port not allowed", "CONNECT secure.test:22 HTTP/1.1\r\nHost: secure.test:22\r\n" + auth + "\r\n", 403, CodeEgressDenied},
		{"port 80", "CONNECT api.test:80 HTTP/1.1\r\nHost: api.test:80\r\n" + auth + "\r\n", 403, CodeEgressDenied},
		{"metadata", "CONNECT metadata.test:" + strconv.Itoa(h.tlsPort) + " HTTP/1.1\r\nHost: x\r\n" + auth + "\r\n", 403, CodeEgressDenied},
		{"no port", "CONNECT secure.test HTTP/1.1\r\nHost: secure.test\r\n" + auth + "\r\n", 400, CodeBadRequest},
		{"no credentials", "CONNECT secure.test:" + strconv.Itoa(h.tlsPort) + " HTTP/1.1\r\nHost: x\r\n\r\n", 407, CodeUnauthenticated},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := h.raw(tt.request)
			wantError(t, firstLine(tt.request), resp, body, tt.status, tt.code)
		})
	}
	// And through a Go client: the tunnel is refused, so the request fails.
	_, err := h.client(agentA, tokenA).Get("https://other.test/")
	if err == nil || !strings.Contains(err.Error(), "Forbidden") {
		t.Errorf("GET https://other.test/ through the proxy: err = %v, want the CONNECT refused", err)
	}
	if d, _, s := h.counts(); d != 0 || s != 0 {
		t.Errorf("refused tunnels reached Decide %d times and the origin %d times", d, s)
	}
}

func TestOriginFormAndSchemes(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	auth := "Proxy-Authorization: " + basic(agentA, tokenA) + "\r\n"
	tests := []struct {
		name, request, msgHas string
	}{
		{"origin form", "GET /hello HTTP/1.1\r\nHost: api.test\r\n" + auth + "\r\n", "HTTP proxy"},
		{"https in absolute form", "GET https://secure.test/ HTTP/1.1\r\nHost: secure.test\r\n" + auth + "\r\n", "CONNECT"},
		{"ftp", "GET ftp://api.test/x HTTP/1.1\r\nHost: api.test\r\n" + auth + "\r\n", "Only http"},
		{"user info", "GET http://user:pw@api.test/ HTTP/1.1\r\nHost: api.test\r\n" + auth + "\r\n", "user info"},
		{"asterisk", "OPTIONS * HTTP/1.1\r\nHost: api.test\r\n" + auth + "\r\n", "HTTP proxy"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := h.raw(tt.request)
			wantError(t, firstLine(tt.request), resp, body, 400, CodeBadRequest)
			if !bytes.Contains(body, []byte(tt.msgHas)) {
				t.Errorf("%s: body %s, want it to mention %q", firstLine(tt.request), body, tt.msgHas)
			}
		})
	}
}

func TestHeadersForwarded(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	resp, body := h.raw("GET " + h.url("api.test", "/hello") + " HTTP/1.1\r\n" +
		"Host: evil.test\r\n" +
		"Proxy-Authorization: " + basic(agentA, tokenA) + "\r\n" +
		"Connection: close, X-Drop-Me\r\n" +
		"X-Drop-Me: 1\r\nKeep-Alive: 300\r\nProxy-Connection: keep-alive\r\nTE: trailers\r\nUpgrade: websocket\r\n" +
		"Authorization: Bearer agent-own\r\nX-Keep: kept\r\nAccept-Encoding: gzip\r\n\r\n")
	if resp.StatusCode != 200 {
		t.Fatalf("GET = %d %s, want 200", resp.StatusCode, body)
	}
	seen := h.lastSeen()
	if want := "api.test:" + strconv.Itoa(h.port); seen.host != want {
		t.Errorf("origin saw Host %q, want %q from the URL, not the agent's Host header", seen.host, want)
	}
	for _, k := range []string{"Proxy-Authorization", "X-Drop-Me", "Keep-Alive", "Proxy-Connection", "Te", "Upgrade"} {
		if v, ok := seen.header[k]; ok {
			t.Errorf("origin saw hop-by-hop header %s: %q", k, v)
		}
	}
	for k, want := range map[string]string{"X-Keep": "kept", "Authorization": "Bearer agent-own", "Accept-Encoding": "gzip"} {
		if got := seen.header.Get(k); got != want {
			t.Errorf("origin saw %s = %q, want %q", k, got, want)
		}
	}
	if v, ok := seen.header["User-Agent"]; ok {
		t.Errorf("origin saw User-Agent %q, want none added", v)
	}
}

func TestInject(t *testing.T) {
	t.Parallel()
	const secret = "s3cr3t-upstream-credential-value"
	h := newHarness(t, func(_ *harness, o *Options) {
		o.Inject = func(_ context.Context, r *Request, hd http.Header) ([]string, error) {
			if r.Host != "api.test" {
				return nil, nil
			}
			hd.Set("Authorization", "Bearer "+secret)
			hd.Set("X-Api-Key", secret)
			return []string{"api-test-key"}, nil
		}
	})
	c := h.client(agentA, tokenA)
	req, _ := http.NewRequest("GET", h.url("api.test", "/hello"), nil)
	req.Header.Set("Authorization", "Bearer agent-own-credential")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET = %d, want 200", resp.StatusCode)
	}
	seen := h.lastSeen()
	if got := seen.header.Values("Authorization"); !slices.Equal(got, []string{"Bearer " + secret}) {
		t.Errorf("origin saw Authorization %q, want only the injected one", got)
	}
	if got := seen.header.Get("X-Api-Key"); got != secret {
		t.Errorf("origin saw X-Api-Key %q, want the injected one", got)
	}
	var received bytes.Buffer
	_ = resp.Header.Write(&received)
	received.Write(body)
	if strings.Contains(received.String(), secret) {
		t.Errorf("the injected credential reached the agent:\n%s", received.String())
	}
	if logs := h.logs.String(); strings.Contains(logs, secret) || strings.Contains(logs, tokenA) {
		t.Errorf("logs hold a credential:\n%s", logs)
	}
	if f := h.lastForward(); !slices.Equal(f.res.Injected, []string{"api-test-key"}) {
		t.Errorf("Result.Injected = %q, want the label", f.res.Injected)
	}

	// Where Inject sets nothing, the agent's own Authorization goes through.
	req, _ = http.NewRequest("GET", h.url("127.0.0.1", "/hello"), nil)
	req.Header.Set("Authorization", "Bearer agent-own-credential")
	if resp, err = c.Do(req); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := h.lastSeen().header.Get("Authorization"); got != "Bearer agent-own-credential" {
		t.Errorf("without injection the origin saw Authorization %q, want the agent's", got)
	}
}

func TestInjectError(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(_ *harness, o *Options) {
		o.Inject = func(context.Context, *Request, http.Header) ([]string, error) {
			return nil, errors.New("vault sealed")
		}
	})
	resp, body := h.get(h.client(agentA, tokenA), h.url("api.test", "/hello"))
	wantError(t, "GET with failing Inject", resp, body, 502, CodeUpstream)
	if _, _, s := h.counts(); s != 0 {
		t.Errorf("the origin was reached without its credential")
	}
	if f := h.lastForward(); f.err == nil || !strings.Contains(f.err.Error(), "vault sealed") {
		t.Errorf("forward error = %v, want the Inject failure", f.err)
	}
}

func TestDecideRefusal(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	tests := []struct {
		name       string
		ref        Refusal
		wantStatus int
		wantCode   string
		wantMsg    string
	}{
		{"rate limited", Refusal{Status: 429, Code: "rate_limited", Message: "Slow down."}, 429, "rate_limited", "Slow down."},
		{"defaults", Refusal{}, 403, CodeRefused, "The request was refused by policy."},
		{"bad status and code", Refusal{Status: 200, Code: "Bad Code!", Message: "line one\nline two"}, 403, CodeRefused, "line one line two"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h.mu.Lock()
			h.decide = func(_ context.Context, _ *Request, forward func(context.Context) (Result, error)) *Refusal {
				_ = forward // a refusing Decide never calls it
				ref := tt.ref
				return &ref
			}
			h.mu.Unlock()
			_, _, seen := h.counts()
			resp, body := h.get(h.client(agentA, tokenA), h.url("api.test", "/hello"))
			wantError(t, tt.name, resp, body, tt.wantStatus, tt.wantCode)
			if !bytes.Contains(body, []byte(tt.wantMsg)) {
				t.Errorf("body %s, want message %q", body, tt.wantMsg)
			}
			if _, _, s := h.counts(); s != seen {
				t.Errorf("a refused request reached the origin")
			}
		})
	}
}

func TestDecideMisuse(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	t.Run("allow without forward", func(t *testing.T) {
		h.mu.Lock()
		h.decide = func(context.Context, *Request, func(context.Context) (Result, error)) *Refusal { return nil }
		h.mu.Unlock()
		resp, body := h.get(h.client(agentA, tokenA), h.url("api.test", "/hello"))
		wantError(t, "Decide allowing without forwarding", resp, body, 500, CodeInternal)
	})
	t.Run("forward twice", func(t *testing.T) {
		second := make(chan error, 1)
		h.mu.Lock()
		h.decide = func(ctx context.Context, _ *Request, forward func(context.Context) (Result, error)) *Refusal {
			if _, err := forward(ctx); err != nil {
				t.Errorf("first forward: %v", err)
			}
			_, err := forward(ctx)
			second <- err
			return nil
		}
		h.mu.Unlock()
		_, _, seen := h.counts()
		resp, body := h.get(h.client(agentA, tokenA), h.url("api.test", "/hello"))
		if resp.StatusCode != 200 || string(body) != "hello from origin" {
			t.Errorf("GET = %d %q, want the one forwarded response", resp.StatusCode, body)
		}
		if err := <-second; !errors.Is(err, errForwardUsed) {
			t.Errorf("second forward error = %v, want errForwardUsed", err)
		}
		if _, _, s := h.counts(); s != seen+1 {
			t.Errorf("the origin saw %d requests, want 1", s-seen)
		}
	})
	t.Run("forward after Decide returned", func(t *testing.T) {
		var saved func(context.Context) (Result, error)
		h.mu.Lock()
		h.decide = func(_ context.Context, _ *Request, forward func(context.Context) (Result, error)) *Refusal {
			saved = forward
			return &Refusal{Code: "later"}
		}
		h.mu.Unlock()
		resp, body := h.get(h.client(agentA, tokenA), h.url("api.test", "/hello"))
		wantError(t, "refusal", resp, body, 403, "later")
		if _, err := saved(context.Background()); !errors.Is(err, errForwardUsed) {
			t.Errorf("late forward error = %v, want errForwardUsed", err)
		}
	})
}

// TestDecideCannotRedirectTheDial checks that forward dials the addresses the proxy
// vetted, whatever Decide does to the Request.
func TestDecideCannotRedirectTheDial(t *testing.T) {
	t.Parallel()
	port, accepted := listen(t)
	h := newHarness(t, func(h *harness, o *Options) {
		o.Rules = append(o.Rules, Rule{Agents: []string{agentA}, Hosts: []string{"api.test"}, Ports: []int{port}})
	})
	h.mu.Lock()
	h.decide = func(ctx context.Context, r *Request, forward func(context.Context) (Result, error)) *Refusal {
		r.Addrs = []netip.Addr{netip.MustParseAddr("169.254.169.254")}
		r.Host, r.Port, r.Principal = "metadata.test", 80, nil
		_, _ = forward(ctx)
		return nil
	}
	h.mu.Unlock()
	done := make(chan struct{})
	go func() {
		defer close(done)
		resp, err := h.client(agentA, tokenA).Get("http://api.test:" + strconv.Itoa(port) + "/")
		if err == nil {
			resp.Body.Close()
		}
	}()
	c := <-accepted // the vetted 127.0.0.1 listener got the connection
	br := bufio.NewReader(c)
	req, err := http.ReadRequest(br)
	if err != nil {
		t.Fatal(err)
	}
	if want := "api.test:" + strconv.Itoa(port); req.Host != want {
		t.Errorf("upstream saw Host %q, want %q", req.Host, want)
	}
	fmt.Fprint(c, "HTTP/1.1 204 No Content\r\n\r\n")
	<-done
}

func TestStreamsWithoutBuffering(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	resp, err := h.client(agentA, tokenA).Get(h.url("api.test", "/stream"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	// The origin sends its second chunk only when released, after the agent has read
	// the first: a proxy that buffered the body would deadlock here until the timeout.
	first := make([]byte, len("first chunk;"))
	if _, err := io.ReadFull(resp.Body, first); err != nil || string(first) != "first chunk;" {
		t.Fatalf("first chunk = %q, %v", first, err)
	}
	h.unblock()
	rest, err := io.ReadAll(resp.Body)
	if err != nil || string(rest) != "second chunk" {
		t.Fatalf("rest = %q, %v; want %q", rest, err, "second chunk")
	}
}

// TestTruncatedUpstream checks that a body cut short upstream reaches the agent as cut
// short, not as complete.
func TestTruncatedUpstream(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	c := h.client(agentA, tokenA)
	for _, path := range []string{"/truncated", "/truncated?chunked=1"} {
		resp, err := c.Get(h.url("api.test", path))
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err == nil {
			t.Errorf("GET %s: read %q without error, want the truncation visible", path, body)
		}
		if f := h.lastForward(); f.err == nil || f.res.Status != 200 || f.res.Bytes != 10 {
			t.Errorf("GET %s: forward = %+v, %v; want status 200, 10 bytes and an error", path, f.res, f.err)
		}
	}
}

func TestLargeBodiesBothWays(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	payload := make([]byte, 3<<20+17)
	_, _ = rand.Read(payload)
	resp, err := h.client(agentA, tokenA).Post(h.url("upload.test", "/echo"), "application/octet-stream", bytes.NewReader(payload))
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || !bytes.Equal(got, payload) {
		t.Fatalf("POST /echo: got %d bytes (%v), want the %d sent back intact", len(got), err, len(payload))
	}
	f := h.lastForward()
	if f.res.Sent != int64(len(payload)) || f.res.Bytes != 2*int64(len(payload)) {
		t.Errorf("Result = %+v, want Sent %d and Bytes %d", f.res, len(payload), 2*len(payload))
	}
}

func TestUpstreamTimeouts(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(_ *harness, o *Options) {
		o.ResponseHeaderTimeout = 50 * time.Millisecond
		o.MaxHeaderBytes = 8 << 10
	})
	c := h.client(agentA, tokenA)
	resp, body := h.get(c, h.url("api.test", "/slow"))
	wantError(t, "GET /slow", resp, body, 504, CodeUpstreamTimeout)
	if f := h.lastForward(); f.err == nil || f.res.Status != 504 {
		t.Errorf("forward = %+v, %v; want status 504 and an error", f.res, f.err)
	}
	resp, body = h.get(c, h.url("api.test", "/bigheader"))
	wantError(t, "GET /bigheader", resp, body, 502, CodeUpstream)

	req, _ := http.NewRequest("GET", h.url("api.test", "/hello"), nil)
	req.Header.Set("X-Big", strings.Repeat("x", 9<<10))
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	wantError(t, "GET with a 9 KiB header", resp, body, 431, CodeBadRequest)
}

func TestUpstreamUnreachable(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close() // nothing listens there now
	h := newHarness(t, func(_ *harness, o *Options) {
		o.Rules = append(o.Rules, Rule{Agents: []string{agentA}, Hosts: []string{"api.test"}, Ports: []int{port}})
	})
	target := "http://api.test:" + strconv.Itoa(port) + "/x?token=query-secret"
	resp, body := h.get(h.client(agentA, tokenA), target)
	wantError(t, "GET to a closed port", resp, body, 502, CodeUpstream)
	f := h.lastForward()
	if f.err == nil || strings.Contains(f.err.Error(), "query-secret") {
		t.Errorf("forward error = %v, want an error without the query", f.err)
	}
}

// TestRebinding checks that a name is resolved once per request, that what is dialled
// is what was vetted, and that a name rebound to a metadata address is refused.
func TestRebinding(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	h.resolver.sequence("rebind.test", []string{"127.0.0.1"}, []string{"169.254.169.254"})
	c := h.client(agentA, tokenA)
	resp, body := h.get(c, h.url("rebind.test", "/hello"))
	if resp.StatusCode != 200 {
		t.Fatalf("first GET = %d %s, want 200", resp.StatusCode, body)
	}
	if n := h.resolver.count("rebind.test"); n != 1 {
		t.Fatalf("rebind.test looked up %d times for one request, want 1", n)
	}
	resp, body = h.get(c, h.url("rebind.test", "/hello"))
	wantError(t, "second GET", resp, body, 403, CodeEgressDenied)
	if n := h.resolver.count("rebind.test"); n != 2 {
		t.Errorf("rebind.test looked up %d times for two requests, want 2", n)
	}
}

func TestTransportDialsOnlyVetted(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	p := h.proxy
	if _, err := p.transportDial(context.Background(), "tcp", h.origin.Listener.Addr().String()); !errors.Is(err, errNotVetted) {
		t.Errorf("dial without a vetted target: %v, want errNotVetted", err)
	}
	dt := &dialTarget{hostPort: "api.test:80", addrs: []netip.Addr{netip.MustParseAddr("127.0.0.1")}, port: h.port}
	ctx := context.WithValue(context.Background(), dialKey{}, dt)
	if _, err := p.transportDial(ctx, "tcp", "other.test:80"); !errors.Is(err, errNotVetted) {
		t.Errorf("dial of another host: %v, want errNotVetted", err)
	}
	if _, err := p.dialVetted(context.Background(), "tcp", []netip.Addr{netip.MustParseAddr("10.0.0.1")}, 80); !errors.Is(err, errNotVetted) {
		t.Errorf("dial of an unvetted private address: %v, want the dialer's control to refuse it", err)
	}
	if _, err := p.dialVetted(context.Background(), "udp", dt.addrs, h.port); err == nil {
		t.Errorf("dial over udp succeeded")
	}
}

// connectRaw opens a tunnel through the proxy and returns the connection after the 200.
func (h *harness) connectRaw(authority, token string) (net.Conn, *bufio.Reader, *http.Response) {
	h.t.Helper()
	c, err := net.Dial("tcp", h.addr)
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\nProxy-Authorization: %s\r\n\r\n", authority, authority, basic(agentA, token))
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: "CONNECT"})
	if err != nil {
		h.t.Fatalf("CONNECT %s: %v", authority, err)
	}
	_ = c.SetDeadline(time.Time{})
	return c, br, resp
}

// listen starts a TCP server on 127.0.0.1 whose accepted connections are sent on the
// returned channel.
func listen(t testing.TB) (int, <-chan net.Conn) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	ch := make(chan net.Conn, 16)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { c.Close() })
			ch <- c
		}
	}()
	return l.Addr().(*net.TCPAddr).Port, ch
}

func TestTunnelRelays(t *testing.T) {
	t.Parallel()
	port, accepted := listen(t)
	h := newHarness(t, func(_ *harness, o *Options) {
		o.Rules = append(o.Rules, Rule{Agents: []string{agentA}, Hosts: []string{"127.0.0.1"}, Ports: []int{port}})
	})
	c, br, resp := h.connectRaw("127.0.0.1:"+strconv.Itoa(port), tokenA)
	if resp.StatusCode != 200 {
		t.Fatalf("CONNECT = %d, want 200", resp.StatusCode)
	}
	up := <-accepted
	if _, err := io.WriteString(c, "ping"); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 4)
	_ = up.SetReadDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.ReadFull(up, got); err != nil || string(got) != "ping" {
		t.Fatalf("upstream read %q, %v; want ping", got, err)
	}
	if _, err := io.WriteString(up, "pong"); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.ReadFull(br, got); err != nil || string(got) != "pong" {
		t.Fatalf("agent read %q, %v; want pong", got, err)
	}
	// The upstream ends: the proxy closes the agent's side too.
	up.Close()
	if err := readUntilClosed(c); err != nil {
		t.Errorf("agent side stayed open after the upstream closed: %v", err)
	}
	if f := h.lastForward(); f.err != nil || f.res.Status != 200 || f.res.Sent != 4 || f.res.Bytes != 8 {
		t.Errorf("tunnel forward = %+v, %v; want status 200, 4 sent, 8 in all", f.res, f.err)
	}
}

func TestTunnelIdle(t *testing.T) {
	t.Parallel()
	port, accepted := listen(t)
	h := newHarness(t, func(_ *harness, o *Options) {
		o.IdleTimeout = 50 * time.Millisecond
		o.Rules = append(o.Rules, Rule{Agents: []string{agentA}, Hosts: []string{"127.0.0.1"}, Ports: []int{port}})
	})
	c, _, resp := h.connectRaw("127.0.0.1:"+strconv.Itoa(port), tokenA)
	if resp.StatusCode != 200 {
		t.Fatalf("CONNECT = %d, want 200", resp.StatusCode)
	}
	up := <-accepted
	// Nobody speaks: the proxy closes both ends.
	if err := readUntilClosed(c); err != nil {
		t.Errorf("agent side of a silent tunnel was not closed: %v", err)
	}
	if err := readUntilClosed(up); err != nil {
		t.Errorf("upstream side of a silent tunnel was not closed: %v", err)
	}
}

func TestTunnelEndsWithEitherSide(t *testing.T) {
	t.Parallel()
	port, accepted := listen(t)
	h := newHarness(t, func(_ *harness, o *Options) {
		o.Rules = append(o.Rules, Rule{Agents: []string{agentA}, Hosts: []string{"127.0.0.1"}, Ports: []int{port}})
	})
	c, _, resp := h.connectRaw("127.0.0.1:"+strconv.Itoa(port), tokenA)
	if resp.StatusCode != 200 {
		t.Fatalf("CONNECT = %d, want 200", resp.StatusCode)
	}
	up := <-accepted
	up.Close()
	if err := readUntilClosed(c); err != nil {
		t.Errorf("agent side stayed open after the upstream closed: %v", err)
	}
}

func TestCloseAndMaxTunnels(t *testing.T) {
	t.Parallel()
	port, accepted := listen(t)
	h := newHarness(t, func(_ *harness, o *Options) {
		o.MaxTunnels = 1
		o.Rules = append(o.Rules, Rule{Agents: []string{agentA}, Hosts: []string{"127.0.0.1"}, Ports: []int{port}})
	})
	authority := "127.0.0.1:" + strconv.Itoa(port)
	c, _, resp := h.connectRaw(authority, tokenA)
	if resp.StatusCode != 200 {
		t.Fatalf("first CONNECT = %d, want 200", resp.StatusCode)
	}
	up := <-accepted
	_, _, resp2 := h.connectRaw(authority, tokenA)
	body, _ := io.ReadAll(resp2.Body)
	wantError(t, "second CONNECT with MaxTunnels 1", resp2, body, 503, CodeBusy)

	if err := h.proxy.Close(); err != nil {
		t.Fatal(err)
	}
	if err := readUntilClosed(c); err != nil {
		t.Errorf("agent side stayed open after Close: %v", err)
	}
	if err := readUntilClosed(up); err != nil {
		t.Errorf("upstream side stayed open after Close: %v", err)
	}
	r, b := h.get(h.client(agentA, tokenA), h.url("api.test", "/hello"))
	wantError(t, "GET after Close", r, b, 503, CodeBusy)
}

func TestConcurrentAgents(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	a, b := h.client(agentA, tokenA), h.client(agentB, tokenB)
	var wg sync.WaitGroup
	for i := range 24 {
		wg.Go(func() {
			var c *http.Client
			var target string
			want := 200
			switch i % 4 {
			case 0:
				c, target = a, h.url("api.test", "/hello")
			case 1:
				c, target, want = a, h.url("elsewhere.test", "/hello"), 403
			case 2:
				c, target = b, h.url("127.0.0.1", "/hello")
			case 3:
				c, target, want = b, h.url("intranet.test", "/"), 403
			}
			resp, err := c.Get(target)
			if err != nil {
				t.Errorf("GET %s: %v", target, err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != want {
				t.Errorf("GET %s = %d, want %d", target, resp.StatusCode, want)
			}
		})
	}
	wg.Wait()
}

// TestHTTPSClientUsesConnect checks a client that has only the proxy URL: https with
// CONNECT, http in absolute form, the same credentials.
func TestHTTPSClientUsesConnect(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	c := h.client(agentB, tokenB)
	c.Transport.(*http.Transport).TLSClientConfig.ServerName = "" // verify the certificate for 127.0.0.1
	resp, body := h.get(c, "https://127.0.0.1:"+strconv.Itoa(h.tlsPort)+"/hello")
	if resp.StatusCode != 200 || string(body) != "hello from origin" {
		t.Fatalf("GET over CONNECT = %d %q", resp.StatusCode, body)
	}
}
