package egress

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strconv"
	"testing"

	"github.com/chaperone-dev/chaperone/internal/identity"
)

// BenchmarkGET compares a small plain-HTTP GET made directly with the same GET made
// through the proxy (authentication, allow-list, resolution, Decide, forwarding).
func BenchmarkGET(b *testing.B) {
	body := []byte("hello from origin, a short JSON-sized answer of about a hundred bytes........................")
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write(body)
	}))
	defer origin.Close()
	port := portOf(b, origin.URL)
	res := newMapResolver()
	principal := &identity.Principal{Agent: &identity.Agent{ID: agentA, Status: identity.StatusActive}}
	p, err := New(Options{
		Authenticate: func(_ context.Context, authz string) (*identity.Principal, error) {
			if authz != "Bearer "+tokenA {
				return nil, identity.ErrUnauthenticated
			}
			return principal, nil
		},
		Rules: []Rule{{Agents: []string{agentA}, Hosts: []string{"api.test"}, Ports: []int{port}}},
		Decide: func(ctx context.Context, _ *Request, forward func(context.Context) (Result, error)) *Refusal {
			if _, err := forward(ctx); err != nil {
				return &Refusal{Code: "bench_failed"}
			}
			return nil
		},
		Resolver:     res,
		AllowPrivate: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")},
	})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	proxySrv := httptest.NewServer(p)
	defer proxySrv.Close()
	pu, _ := url.Parse(proxySrv.URL)
	pu.User = url.UserPassword(agentA, tokenA)

	run := func(b *testing.B, c *http.Client, target string) {
		b.ReportAllocs()
		b.SetBytes(int64(len(body)))
		for b.Loop() {
			resp, err := c.Get(target)
			if err != nil {
				b.Fatal(err)
			}
			n, _ := io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || n != int64(len(body)) {
				b.Fatalf("GET %s = %d, %d bytes", target, resp.StatusCode, n)
			}
		}
	}
	b.Run("direct", func(b *testing.B) {
		c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
		defer c.CloseIdleConnections()
		run(b, c, origin.URL+"/x")
	})
	b.Run("proxy", func(b *testing.B) {
		c := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(pu), MaxIdleConnsPerHost: 4}}
		defer c.CloseIdleConnections()
		run(b, c, "http://api.test:"+strconv.Itoa(port)+"/x")
	})
}

func BenchmarkRuleCheck(b *testing.B) {
	rules, err := compileRules([]Rule{
		{Agents: []string{"a"}, Hosts: []string{"api.example.com", "*.example.org", "203.0.113.0/24"}, Methods: []string{"GET", "POST"}},
		{Agents: []string{"*"}, Hosts: []string{"*.shared.example"}},
	}, nil)
	if err != nil {
		b.Fatal(err)
	}
	tg, rej := parseTarget("GET", "http://deep.sub.example.org/v1/items?x=1", 1)
	if rej != nil {
		b.Fatal(rej)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, d := rules.check("a", tg, "GET"); d != nil {
			b.Fatal(d.reason)
		}
	}
}
