package daemon_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/chaperone-dev/chaperone/internal/audit"
	"github.com/chaperone-dev/chaperone/internal/chaperonetest"
	"github.com/chaperone-dev/chaperone/internal/config"
	"github.com/chaperone-dev/chaperone/internal/credential"
	"github.com/chaperone-dev/chaperone/internal/logtest"
)

// nameResolver is a small map-backed DNS for the egress proxy in tests: it lets a test
// point names at loopback origins and at private and metadata addresses. Names it does
// not know do not resolve.
type nameResolver map[string][]string

func (r nameResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	var out []netip.Addr
	for _, a := range r[host] {
		out = append(out, netip.MustParseAddr(a))
	}
	if len(out) == 0 {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	return out, nil
}

// TestEgressProxy runs agents' own HTTP requests through the gateway's egress proxy with
// Go's client and curl: the allow-list, the policy (GET allowed, POST not), private and
// metadata addresses reached through a name and through a redirect, credentials injected
// for the allowed host and kept from the agent, and every request in the audit log.
func TestEgressProxy(t *testing.T) {
	var mu sync.Mutex
	var seenAuth []string
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seenAuth = append(seenAuth, r.Header.Get("Authorization"))
		mu.Unlock()
		switch r.URL.Path {
		case "/echo": // the worst origin: it hands the credential back
			w.Header().Set("X-Seen-Authorization", r.Header.Get("Authorization"))
			io.WriteString(w, "you sent "+r.Header.Get("Authorization"))
		case "/redirect":
			http.Redirect(w, r, "http://metadata.test/latest/meta-data/", http.StatusFound)
		default:
			io.WriteString(w, "hello from the origin")
		}
	}))
	t.Cleanup(origin.Close)
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(origin.URL, "http://"))
	portNum, err := strconv.Atoi(port)
	if err != nil {
		t.Fatalf("origin port %q: %v", port, err)
	}
	apiKey := "ak-" + randomText(24)
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "secrets.keys")
	writeKeys(t, keyFile, "k1")
	logger, logs := logtest.New()

	g := chaperonetest.Start(t, chaperonetest.Options{
		Policy: "rules:\n  - id: egress-reads\n    match: {tools: [egress]}\n    when: args.method == \"GET\" || args.connect\n    effect: allow\n",
		Logger: logger,
		EgressResolver: nameResolver{"api.test": {"127.0.0.1"}, "metadata.test": {"169.254.169.254"},
			"intranet.test": {"10.1.2.3"}, "other.test": {"127.0.0.1"}},
		Configure: func(c *config.Config) {
			c.Secrets = config.Secrets{KeyFile: keyFile}
			c.Egress = config.EgressProxy{Listen: "127.0.0.1:0", AllowPrivate: []string{"127.0.0.1"},
				Rules: []config.EgressRule{{Name: "api", Agents: []string{"test-agent"}, Hosts: []string{"api.test", "metadata.test", "intranet.test"},
					Methods: []string{"GET", "POST"}, Ports: []int{portNum, 80},
					Credential: &config.Credential{Type: "bearer", Secret: "secret:api-key"}}}}
			seedSecrets(t, c, map[string]string{"api-key": apiKey})
		},
	})
	agent := g.Agents["test-agent"]
	proxyURL, _ := url.Parse(g.Daemon.EgressURL())
	proxyURL.User = url.UserPassword("test-agent", agent.Token)
	client := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(proxyURL)}}
	var received strings.Builder

	get := func(method, target string) (int, string, http.Header) {
		t.Helper()
		req, _ := http.NewRequest(method, target, nil)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, target, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		received.Write(b)
		for k, v := range resp.Header {
			received.WriteString(k + ": " + strings.Join(v, ",") + "\n")
		}
		return resp.StatusCode, string(b), resp.Header
	}
	base := "http://api.test:" + port

	// Allowed by the rule and by the policy: the origin answers, and it saw the credential
	// the gateway injected.
	code, body, _ := get(http.MethodGet, base+"/hello")
	if code != http.StatusOK || body != "hello from the origin" {
		t.Fatalf("GET allowed = %d %q", code, body)
	}
	mu.Lock()
	lastAuth := seenAuth[len(seenAuth)-1]
	mu.Unlock()
	if lastAuth != "Bearer "+apiKey {
		t.Errorf("the origin saw Authorization %q, want the injected credential", lastAuth)
	}

	// An origin that echoes the injected credential: the agent gets it redacted, in the
	// body and in the headers.
	code, body, h := get(http.MethodGet, base+"/echo")
	if code != http.StatusOK || body != "you sent "+credential.Redaction || h.Get("X-Seen-Authorization") != credential.Redaction {
		t.Errorf("GET /echo = %d %q (header %q), want the credential redacted", code, body, h.Get("X-Seen-Authorization"))
	}

	// Allowed by the rule, denied by the policy (deny by default: no rule allows POST).
	code, _, h = get(http.MethodPost, base+"/hello")
	if code != http.StatusForbidden || h.Get("Chaperone-Refusal") != "denied_by_policy" {
		t.Errorf("POST = %d %s, want 403 denied_by_policy", code, h.Get("Chaperone-Refusal"))
	}
	// Not on the allow-list: another host (which resolves, but is never looked up).
	if code, _, h := get(http.MethodGet, "http://other.test:"+port+"/"); code != http.StatusForbidden || h.Get("Chaperone-Refusal") != "egress_denied" {
		t.Errorf("other host = %d %s, want 403 egress_denied", code, h.Get("Chaperone-Refusal"))
	}
	// Private and metadata addresses through a name the allow-list names.
	for _, target := range []string{"http://metadata.test/latest/meta-data/", "http://intranet.test/", "http://169.254.169.254/latest/"} {
		if code, _, h := get(http.MethodGet, target); code != http.StatusForbidden || h.Get("Chaperone-Refusal") != "egress_denied" {
			t.Errorf("GET %s = %d %s, want 403 egress_denied", target, code, h.Get("Chaperone-Refusal"))
		}
	}
	// A redirect from the allowed host to the metadata address: the client follows it
	// through the proxy, and the follow-up is refused.
	if code, _, h := get(http.MethodGet, base+"/redirect"); code != http.StatusForbidden || h.Get("Chaperone-Refusal") != "egress_denied" {
		t.Errorf("redirect to metadata = %d %s, want the follow-up refused with 403 egress_denied", code, h.Get("Chaperone-Refusal"))
	}
	// No token: 407.
	noAuth := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(&url.URL{Scheme: "http", Host: proxyURL.Host})}}
	if resp, err := noAuth.Get(base + "/hello"); err != nil || resp.StatusCode != http.StatusProxyAuthRequired {
		t.Errorf("without a token: %v %v, want 407", resp, err)
	} else {
		resp.Body.Close()
	}

	// curl, as a sandbox would use it, including -L through the redirect.
	curl, err := exec.LookPath("curl")
	if err != nil {
		if os.Getenv("CHAPERONE_REQUIRE_CURL") != "" {
			t.Fatal("curl is required (CHAPERONE_REQUIRE_CURL) and not installed")
		}
		t.Log("curl not installed: the curl half of the test is skipped")
	} else {
		run := func(args ...string) string {
			out, err := exec.Command(curl, append([]string{"-s", "-x", "http://" + proxyURL.Host, "-U", "test-agent:" + agent.Token,
				"-o", "/dev/null", "-w", "%{http_code}"}, args...)...).Output()
			var ee *exec.ExitError
			if err != nil && !errors.As(err, &ee) {
				t.Fatalf("curl: %v", err)
			}
			return string(out)
		}
		if got := run(base + "/hello"); got != "200" {
			t.Errorf("curl GET = %s, want 200", got)
		}
		if got := run("-L", base+"/redirect"); got != "403" {
			t.Errorf("curl -L to the redirect = %s, want 403 on the follow-up", got)
		}
		if got := run("http://metadata.test/"); got != "403" {
			t.Errorf("curl to metadata.test = %s, want 403", got)
		}
	}

	// The audit log has every request as a call of the egress tool, and the credential as
	// a name.
	var intents, outcomes, refused int
	for _, e := range allEvents(t, g.Config.Store.SQLite) {
		if e.Tool != "egress" {
			continue
		}
		switch e.Kind {
		case audit.KindCallIntent:
			intents++
		case audit.KindCallOutcome:
			outcomes++
			if strings.Join(e.Credentials, ",") != "bearer:api-key" {
				t.Errorf("egress outcome Credentials = %v, want [bearer:api-key]", e.Credentials)
			}
		case audit.KindCallRefused:
			refused++
		}
		b := e.Detail + e.Message + e.Reason + strings.Join(e.Sensors, " ")
		if strings.Contains(b, apiKey) || strings.Contains(b, agent.Token) {
			t.Errorf("an egress event carries a credential: %+v", e)
		}
	}
	if intents < 2 || outcomes != intents || refused < 6 {
		t.Errorf("egress events: %d intents, %d outcomes, %d refused; want every request on record", intents, outcomes, refused)
	}
	if strings.Contains(received.String(), apiKey) {
		t.Errorf("the injected credential reached the agent")
	}
	for what, v := range map[string]string{"api key": apiKey, "agent token": agent.Token} {
		if strings.Contains(logs.String(), v) {
			t.Errorf("the %s is in the log", what)
		}
	}
}
