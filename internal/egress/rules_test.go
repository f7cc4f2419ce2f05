package egress

import (
	"context"
	"net/netip"
	"strings"
	"testing"

	"github.com/chaperone-dev/chaperone/internal/identity"
)

func validOptions() Options {
	return Options{
		Authenticate: func(context.Context, string) (*identity.Principal, error) { return nil, identity.ErrUnauthenticated },
		Decide: func(context.Context, *Request, func(context.Context) (Result, error)) *Refusal {
			return &Refusal{}
		},
		Rules: []Rule{{Agents: []string{"a"}, Hosts: []string{"api.example.com"}}},
	}
}

func TestNewReportsEveryProblem(t *testing.T) {
	t.Parallel()
	o := Options{
		AllowPrivate: []netip.Prefix{netip.MustParsePrefix("10.0.0.1/8"), {}},
		Rules: []Rule{
			{Name: "dup", Agents: nil, Hosts: []string{"api.example.com"}},
			{Name: "dup", Agents: []string{"a b"}, Hosts: nil},
			{Agents: []string{"a"}, Hosts: []string{"https://api.example.com/", "ops@example.com", "bad host!", "10.0.0.0/8",
				"169.254.169.254", "*.*.example.com", "", "api.example.com:8080", "0.0.0.0/8"}},
			{Agents: []string{"a"}, Hosts: []string{"api.example.com"}, Methods: []string{"get", "CONNECT", ""}, Ports: []int{0, 70000}},
		},
		DialTimeout:    -1,
		MaxHeaderBytes: MaxHeaderBytesLimit + 1,
		MaxTunnels:     -1,
	}
	_, err := New(o)
	if err == nil {
		t.Fatal("New accepted invalid options")
	}
	for _, want := range []string{
		"authenticate: required",
		"decide: required",
		"allow_private[0] 10.0.0.1/8: host bits set: want 10.0.0.0/8",
		"allow_private[1]: invalid prefix",
		`rules[0] ("dup"): agents: empty`,
		`rules[1] ("dup"): name also used by rules[0]`,
		`rules[1] ("dup"): agents[0] "a b": contains a space`,
		`rules[1] ("dup"): hosts: empty`,
		`rules[2]: hosts[0] "https://api.example.com/": URL prefixes are not supported`,
		`rules[2]: hosts[1] "ops@example.com": e-mail entries`,
		`rules[2]: hosts[2] "bad host!": invalid host name`,
		`rules[2]: hosts[3] "10.0.0.0/8": a private range, unreachable unless AllowPrivate covers it`,
		`rules[2]: hosts[4] "169.254.169.254": a metadata address`,
		`rules[2]: hosts[5] "*.*.example.com"`,
		`rules[2]: hosts[6] "": empty entry`,
		`rules[2]: hosts[7] "api.example.com:8080": a port in a host entry`,
		`rules[2]: hosts[8] "0.0.0.0/8": an unspecified range`,
		`rules[3]: methods[0] "get": not an upper-case method name`,
		`rules[3]: methods[1] "CONNECT": CONNECT is allowed by the rule's hosts and ports`,
		`rules[3]: methods[2] "": empty`,
		`rules[3]: ports[0] 0: not between 1 and 65535`,
		`rules[3]: ports[1] 70000: not between 1 and 65535`,
		"dial_timeout: -1ns is negative",
		"max_header_bytes: 16777217, more than the 16777216 allowed",
		"max_tunnels: -1 is negative",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("New error lacks %q; got:\n%v", want, err)
		}
	}
	if strings.Contains(err.Error(), "allow[0]") {
		t.Errorf("New error names inspect's internal list index:\n%v", err)
	}
}

func TestNewBounds(t *testing.T) {
	t.Parallel()
	o := validOptions()
	o.Rules = make([]Rule, MaxRules+1)
	if _, err := New(o); err == nil || !strings.Contains(err.Error(), "more than the 1024 allowed") {
		t.Errorf("New with %d rules: %v, want the bound named", MaxRules+1, err)
	}
	o = validOptions()
	o.Rules[0].Methods = make([]string, MaxRuleMethods+1)
	if _, err := New(o); err == nil || !strings.Contains(err.Error(), "methods: 33 methods, more than the 32 allowed") {
		t.Errorf("New with 33 methods: %v, want the bound named", err)
	}
}

func TestNewAcceptsPrivateCoveredByAllowPrivate(t *testing.T) {
	t.Parallel()
	o := validOptions()
	o.AllowPrivate = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("::ffff:127.0.0.1/128")}
	o.Rules = []Rule{{Agents: []string{"*"}, Hosts: []string{"10.1.0.0/16", "10.2.3.4", "127.0.0.1", "*.example.com", "2001:db8::/32", "*",
		"0.0.0.0/0", "::/0", "8.0.0.0/7"}}}
	p, err := New(o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if _, ok := p.vet(netip.MustParseAddr("127.0.0.1")); !ok {
		t.Errorf("an IPv4-mapped AllowPrivate prefix does not cover 127.0.0.1")
	}
	if kind, ok := p.vet(netip.MustParseAddr("169.254.169.254")); ok || kind != "metadata" {
		t.Errorf("vet(169.254.169.254) = %q, %v; want metadata refused", kind, ok)
	}
	if _, ok := p.vet(netip.MustParseAddr("93.184.216.34")); !ok {
		t.Errorf("vet of a public address refused it")
	}
}

func TestNewAcceptsPartlyPublicRanges(t *testing.T) {
	t.Parallel()
	o := validOptions()
	o.Rules[0].Hosts = []string{"0.0.0.0/0", "::/0", "8.0.0.0/7"}
	if _, err := New(o); err != nil {
		t.Errorf("New with ranges that are not wholly private: %v", err)
	}
}

func TestRuleCheck(t *testing.T) {
	t.Parallel()
	rules, err := compileRules([]Rule{
		{Name: "read", Agents: []string{"a"}, Hosts: []string{"api.example.com"}, Methods: []string{"GET"}},
		{Name: "upload", Agents: []string{"a"}, Hosts: []string{"upload.example.com"}, Methods: []string{"POST"}, Ports: []int{8443}},
		{Name: "shared", Agents: []string{"*"}, Hosts: []string{"*.shared.example"}},
		{Name: "anything", Agents: []string{"b"}, Hosts: []string{"*"}, Methods: []string{"GET"}},
		{Name: "range", Agents: []string{"c"}, Hosts: []string{"203.0.113.0/24"}},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		agent, method, uri string
		rule               string // "" for a denial
		reasonHas          string
	}{
		{"a", "GET", "http://api.example.com/x", "read", ""},
		{"a", "GET", "http://API.Example.COM./x", "read", ""},
		{"a", "HEAD", "http://api.example.com/x", "", "method HEAD"},
		{"a", "POST", "http://api.example.com/x", "", "method POST"},
		{"a", "POST", "http://upload.example.com:8443/x", "upload", ""},
		{"a", "POST", "http://upload.example.com/x", "", "upload.example.com:80"},
		{"a", "GET", "http://upload.example.com:8443/x", "", "method GET"},
		{"a", "GET", "http://x.shared.example/", "shared", ""},
		{"z", "GET", "http://deep.x.shared.example/", "shared", ""},
		{"z", "GET", "http://shared.example/", "", "host shared.example"},
		{"a", "CONNECT", "api.example.com:443", "read", ""},
		{"a", "CONNECT", "upload.example.com:8443", "upload", ""},
		{"a", "CONNECT", "api.example.com:80", "", "CONNECT to port 80"},
		{"a", "CONNECT", "api.example.com:22", "", "api.example.com:22"},
		{"b", "GET", "http://anything.example.org/", "anything", ""},
		{"b", "DELETE", "http://anything.example.org/", "", "method DELETE"},
		{"c", "GET", "http://203.0.113.9/", "range", ""},
		{"c", "GET", "http://in-range.example/", "", "host in-range.example"},
		{"nobody", "GET", "http://api.example.com/", "", `agent "nobody"`},
	}
	for _, tt := range tests {
		tg, rej := parseTarget(tt.method, tt.uri, 1)
		if rej != nil {
			t.Fatalf("parseTarget(%s %s): %+v", tt.method, tt.uri, rej)
		}
		rule, d := rules.check(tt.agent, tg, tt.method)
		switch {
		case tt.rule != "" && (rule != tt.rule || d != nil):
			t.Errorf("check(%s, %s %s) = %q, %+v; want rule %q", tt.agent, tt.method, tt.uri, rule, d, tt.rule)
		case tt.rule == "" && d == nil:
			t.Errorf("check(%s, %s %s) = %q, want a denial", tt.agent, tt.method, tt.uri, rule)
		case tt.rule == "" && !strings.Contains(d.reason, tt.reasonHas):
			t.Errorf("check(%s, %s %s) reason %q, want it to contain %q", tt.agent, tt.method, tt.uri, d.reason, tt.reasonHas)
		case d != nil && (d.message == "" || strings.ContainsAny(d.message, "\r\n")):
			t.Errorf("check(%s, %s %s) message %q, want one line", tt.agent, tt.method, tt.uri, d.message)
		}
	}
}

func TestParseTarget(t *testing.T) {
	t.Parallel()
	tests := []struct {
		method, uri string
		host        string
		port        int
		url         string
		query       bool
		status      int // non-zero for a rejection
	}{
		{"GET", "http://api.example.com/v1/items?key=secret", "api.example.com", 80, "http://api.example.com/v1/items", true, 0},
		{"GET", "HTTP://API.example.com.:8080", "api.example.com", 8080, "http://api.example.com:8080/", false, 0},
		{"GET", "http://api.example.com/a%2Fb?", "api.example.com", 80, "http://api.example.com/a%2Fb", true, 0},
		{"GET", "http://203.0.113.7:81/x", "203.0.113.7", 81, "http://203.0.113.7:81/x", false, 0},
		{"GET", "http://[2001:db8::1]/", "2001:db8::1", 80, "http://[2001:db8::1]/", false, 0},
		{"GET", "http://[::ffff:10.0.0.1]/", "10.0.0.1", 80, "http://10.0.0.1/", false, 0},
		{"CONNECT", "api.example.com:443", "api.example.com", 443, "https://api.example.com:443", false, 0},
		{"CONNECT", "[2001:db8::1]:8443", "2001:db8::1", 8443, "https://[2001:db8::1]:8443", false, 0},
		{"GET", "/", "", 0, "", false, 400},
		{"GET", "*", "", 0, "", false, 400},
		{"GET", "", "", 0, "", false, 400},
		{"GET", "https://api.example.com/", "", 0, "", false, 400},
		{"GET", "ftp://api.example.com/", "", 0, "", false, 400},
		{"GET", "http:api.example.com/", "", 0, "", false, 400},
		{"GET", "http://user:pw@api.example.com/", "", 0, "", false, 400},
		{"GET", "http://api.example.com@evil.example/", "", 0, "", false, 400},
		{"GET", "http://api.example.com#frag", "", 0, "", false, 400},
		{"GET", "http:///x", "", 0, "", false, 400},
		{"GET", "http://api.example.com:/", "", 0, "", false, 400},
		{"GET", "http://api.example.com:0/", "", 0, "", false, 400},
		{"GET", "http://api.example.com:65536/", "", 0, "", false, 400},
		{"GET", "http://api.example.com:+80/", "", 0, "", false, 400},
		{"GET", "http://2130706433/", "", 0, "", false, 400},
		{"GET", "http://0x7f.0.0.1/", "", 0, "", false, 400},
		{"GET", "http://0177.0.0.1/", "", 0, "", false, 400},
		{"GET", "http://127.1/", "", 0, "", false, 400},
		{"GET", "http://%31%32%37.0.0.1/", "", 0, "", false, 400},
		{"GET", "http://[fe80::1%25eth0]/", "", 0, "", false, 400},
		{"GET", "http://::1/", "", 0, "", false, 400},
		{"GET", "http://a..b/", "", 0, "", false, 400},
		{"GET", "http://a../", "", 0, "", false, 400},
		{"CONNECT", "0..:1", "", 0, "", false, 400},
		{"GET", "http://exa mple.com/", "", 0, "", false, 400},
		{"GET", "http://gööd.example/", "", 0, "", false, 400},
		{"GET", "http://" + strings.Repeat("a", 64) + ".example/", "", 0, "", false, 400},
		{"GET", "http://a\\b.example/", "", 0, "", false, 400},
		{"CONNECT", "api.example.com", "", 0, "", false, 400},
		{"CONNECT", "/path", "", 0, "", false, 400},
		{"CONNECT", "user@api.example.com:443", "", 0, "", false, 400},
		{"CONNECT", "api.example.com:443/x", "", 0, "", false, 400},
		{"CONNECT", "[::1:443", "", 0, "", false, 400},
	}
	for _, tt := range tests {
		tg, rej := parseTarget(tt.method, tt.uri, 1)
		if tt.status != 0 {
			if rej == nil || rej.status != tt.status || rej.message == "" || rej.reason == "" {
				t.Errorf("parseTarget(%s %q) = %+v, %+v; want a %d rejection", tt.method, tt.uri, tg, rej, tt.status)
			}
			continue
		}
		if rej != nil {
			t.Errorf("parseTarget(%s %q) rejected: %+v", tt.method, tt.uri, rej)
			continue
		}
		u, q := tg.auditURL()
		if tg.host != tt.host || tg.port != tt.port || u != tt.url || q != tt.query {
			t.Errorf("parseTarget(%s %q) = host %q port %d url %q query %v; want %q %d %q %v",
				tt.method, tt.uri, tg.host, tg.port, u, q, tt.host, tt.port, tt.url, tt.query)
		}
	}
	if _, rej := parseTarget("CONNECT", "api.example.com:443", 2); rej == nil || rej.status != 501 || rej.code != CodeUnsupported {
		t.Errorf("parseTarget of CONNECT over HTTP/2 = %+v, want 501 unsupported", rej)
	}
	long := "http://api.example.com/" + strings.Repeat("p", 4000)
	if tg, rej := parseTarget("GET", long, 1); rej != nil {
		t.Errorf("parseTarget of a long path rejected it: %+v", rej)
	} else if u, _ := tg.auditURL(); len(u) > maxURLBytes || !strings.HasSuffix(u, "...") {
		t.Errorf("auditURL of a long path is %d bytes, want at most %d ending in ...", len(u), maxURLBytes)
	}
}

func TestParseProxyAuthorization(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		values []string
		token  string // "" for a failure
	}{
		{"bearer", []string{"Bearer tok123"}, "tok123"},
		{"bearer any case", []string{"bEaReR   tok123"}, "tok123"},
		{"basic", []string{basic("agent", "tok123")}, "tok123"},
		{"basic empty user", []string{basic("", "tok123")}, "tok123"},
		{"basic colon in token", []string{basic("agent", "tok:123")}, "tok:123"},
		{"basic unpadded", []string{"Basic " + strings.TrimRight(b64("agent:tok1"), "=")}, "tok1"},
		{"missing", nil, ""},
		{"two headers", []string{"Bearer a", "Bearer b"}, ""},
		{"no credentials", []string{"Bearer"}, ""},
		{"empty bearer", []string{"Bearer  "}, ""},
		{"unknown scheme", []string{"Digest x"}, ""},
		{"basic not base64", []string{"Basic !!!"}, ""},
		{"basic without colon", []string{"Basic " + b64("agenttok")}, ""},
		{"basic without password", []string{basic("tok123", "")}, ""},
		{"token with space", []string{"Bearer tok 123"}, ""},
		{"token with control", []string{basic("a", "tok\x00")}, ""},
		{"token too long", []string{"Bearer " + strings.Repeat("t", MaxTokenBytes+1)}, ""},
		{"header too long", []string{"Bearer " + strings.Repeat("t", maxAuthorizationBytes)}, ""},
	}
	for _, tt := range tests {
		token, problem := parseProxyAuthorization(tt.values)
		if token != tt.token {
			t.Errorf("%s: parseProxyAuthorization = %q (%s), want %q", tt.name, token, problem, tt.token)
		}
		if (token == "") == (problem == "") {
			t.Errorf("%s: token %q and problem %q: want exactly one", tt.name, token, problem)
		}
		for _, v := range tt.values {
			if len(v) > 8 && strings.Contains(problem, v) {
				t.Errorf("%s: problem %q quotes the header value", tt.name, problem)
			}
		}
	}
}

func TestRefusalParts(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("é", 400)
	status, code, msg := refusalParts(&Refusal{Status: 451, Code: "legal_hold", Message: long})
	if status != 451 || code != "legal_hold" || len(msg) > maxMessageBytes || !strings.HasSuffix(msg, "...") {
		t.Errorf("refusalParts = %d %q %d bytes, want 451 legal_hold and a cut message", status, code, len(msg))
	}
	for _, c := range []string{"", "Upper", "9lives", "has space", "dash-ed", strings.Repeat("a", 65)} {
		if validCode(c) {
			t.Errorf("validCode(%q) = true", c)
		}
	}
}
