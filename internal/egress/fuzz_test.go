package egress

import (
	"net/netip"
	"strings"
	"testing"
)

var targetSeeds = []struct{ method, uri string }{
	{"GET", "http://api.example.com/v1/items?key=secret"},
	{"GET", "HTTP://API.example.com.:8080"},
	{"GET", "http://[2001:db8::1]:81/x"},
	{"GET", "http://[::ffff:169.254.169.254]/"},
	{"GET", "http://2130706433/"},
	{"GET", "http://0x7f.1/"},
	{"GET", "http://user:pw@api.example.com/"},
	{"GET", "http://api.example.com@evil.example/"},
	{"GET", "http://%31%32%37.0.0.1/"},
	{"GET", "http://[fe80::1%25eth0]/"},
	{"GET", "http://a\\b.example/"},
	{"GET", "https://api.example.com/"},
	{"GET", "/"},
	{"GET", "*"},
	{"POST", "http://api.example.com/a%2Fb?"},
	{"CONNECT", "api.example.com:443"},
	{"CONNECT", "[2001:db8::1]:8443"},
	{"CONNECT", "api.example.com"},
	{"CONNECT", "[::1:443"},
	{"CONNECT", ":443"},
}

func FuzzParseTarget(f *testing.F) {
	for _, s := range targetSeeds {
		f.Add(s.method, s.uri)
	}
	f.Fuzz(func(t *testing.T, method, uri string) {
		tg, rej := parseTarget(method, uri, 1)
		if (tg == nil) == (rej == nil) {
			t.Fatalf("parseTarget(%q, %q) = %v, %v: want exactly one", method, uri, tg, rej)
		}
		if rej != nil {
			if rej.status != 400 || rej.code != CodeBadRequest || rej.message == "" || rej.reason == "" ||
				strings.ContainsAny(rej.message, "\r\n") {
				t.Fatalf("parseTarget(%q, %q) rejection %+v", method, uri, rej)
			}
			return
		}
		if tg.port < 1 || tg.port > 65535 || tg.host == "" || len(tg.host) > 253 ||
			tg.host != strings.ToLower(tg.host) || strings.HasSuffix(tg.host, ".") {
			t.Fatalf("parseTarget(%q, %q) = %+v: bad host or port", method, uri, tg)
		}
		if tg.addr.IsValid() {
			if tg.host != tg.addr.String() || tg.addr.Is4In6() || tg.addr.Zone() != "" {
				t.Fatalf("parseTarget(%q, %q) address %v host %q", method, uri, tg.addr, tg.host)
			}
		} else if _, err := netip.ParseAddr(tg.host); err == nil {
			t.Fatalf("parseTarget(%q, %q) host %q is an address but addr is unset", method, uri, tg.host)
		}
		for i := 0; i < len(tg.host); i++ {
			if c := tg.host[i]; c <= ' ' || c >= 0x7f || strings.IndexByte("@/?#\\%[]", c) >= 0 {
				t.Fatalf("parseTarget(%q, %q) host %q has %q", method, uri, tg.host, c)
			}
		}
		// Round trip: the canonical form parses to the same destination.
		var again *target
		if tg.connect {
			again, rej = parseTarget("CONNECT", tg.hostPort(), 1)
		} else {
			u, _ := tg.auditURL()
			if len(u) >= maxURLBytes {
				return // cut
			}
			again, rej = parseTarget(method, u, 1)
		}
		if rej != nil || again.host != tg.host || again.port != tg.port || again.addr != tg.addr ||
			(!tg.connect && again.path != tg.path) {
			t.Fatalf("parseTarget(%q, %q) = %+v; its canonical form gives %+v, %+v", method, uri, tg, again, rej)
		}
	})
}

func FuzzParseProxyAuthorization(f *testing.F) {
	for _, s := range []string{
		"Bearer tok123", "bearer   tok", basic("agent", "tok123"), basic("", "t:k"), "Basic " + b64("agent"),
		basic("tok", ""), "Basic !!!", "Digest x", "Bearer", "", "Bearer tok 123", "Basic " + b64("a:\x00"),
	} {
		f.Add(s, false)
	}
	f.Add("Bearer a", true)
	f.Fuzz(func(t *testing.T, v string, twice bool) {
		values := []string{v}
		if twice {
			values = append(values, v)
		}
		token, problem := parseProxyAuthorization(values)
		if (token == "") == (problem == "") {
			t.Fatalf("parseProxyAuthorization(%q) = %q, %q: want exactly one", v, token, problem)
		}
		if problem != "" {
			if !knownAuthProblem(problem) {
				t.Fatalf("parseProxyAuthorization(%q) problem %q is not one of the fixed reasons", v, problem)
			}
			return
		}
		if len(token) > MaxTokenBytes {
			t.Fatalf("token of %d bytes", len(token))
		}
		for i := 0; i < len(token); i++ {
			if c := token[i]; c <= ' ' || c >= 0x7f {
				t.Fatalf("token %q has %q", token, c)
			}
		}
		if got, p := parseProxyAuthorization([]string{"Bearer " + token}); got != token {
			t.Fatalf("Bearer round trip of %q = %q (%s)", token, got, p)
		}
		if got, p := parseProxyAuthorization([]string{basic("u", token)}); got != token {
			t.Fatalf("Basic round trip of %q = %q (%s)", token, got, p)
		}
	})
}

// knownAuthProblem reports whether a problem is one of the reasons parseProxyAuthorization
// gives: fixed sentences that never quote the header.
func knownAuthProblem(p string) bool {
	switch p {
	case "missing Proxy-Authorization",
		"several Proxy-Authorization headers",
		"Proxy-Authorization longer than 24576 bytes",
		"malformed Proxy-Authorization: want Bearer or Basic credentials",
		"malformed Proxy-Authorization: Basic credentials are not base64",
		"malformed Proxy-Authorization: Basic credentials without a colon",
		"Basic credentials without a password: the token goes in the password",
		"unsupported Proxy-Authorization scheme: want Bearer or Basic",
		"token longer than 16384 bytes",
		"token with a space, control or non-ASCII character":
		return true
	}
	return false
}

func FuzzCompileRule(f *testing.F) {
	f.Add("api.example.com", "GET", 443, "GET", "http://api.example.com/")
	f.Add("*.example.com", "POST", 8080, "POST", "http://a.example.com:8080/")
	f.Add("203.0.113.0/24", "PUT", 80, "CONNECT", "203.0.113.9:80")
	f.Add("*", "DELETE", 1, "DELETE", "http://x.y/")
	f.Add("https://x/", "get", 0, "GET", "http://x/")
	f.Fuzz(func(t *testing.T, host, ruleMethod string, port int, method, uri string) {
		rules, err := compileRules([]Rule{{Agents: []string{"a"}, Hosts: []string{host}, Methods: []string{ruleMethod}, Ports: []int{port}}}, nil)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error")
			}
			return
		}
		tg, rej := parseTarget(method, uri, 1)
		if rej != nil {
			return
		}
		rule, d := rules.check("a", tg, method)
		if (rule == "") == (d == nil) {
			t.Fatalf("check = %q, %+v: want exactly one", rule, d)
		}
		if d == nil && tg.port != port {
			t.Fatalf("rule for port %d allowed port %d", port, tg.port)
		}
		if d == nil && !tg.connect && method != ruleMethod {
			t.Fatalf("rule for method %q allowed %q", ruleMethod, method)
		}
	})
}
