package inspect

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
)

func mustCompileEgress(t testing.TB, p EgressPolicy) *Egress {
	t.Helper()
	e, err := CompileEgress(p)
	if err != nil {
		t.Fatalf("CompileEgress(%+v): %v", p, err)
	}
	return e
}

// checkOne checks one destination of the given kind and value.
func checkOne(e *Egress, kind, value string) Verdict {
	return e.Check([]Destination{{Kind: kind, Value: value, Arg: "x"}})[0]
}

func TestPrivateAddr(t *testing.T) {
	t.Parallel()
	tests := []struct {
		addr string
		kind string // "" for public
	}{
		// IPv4
		{"0.0.0.0", "unspecified"},
		{"0.1.2.3", "unspecified"},
		{"10.0.0.5", "private"},
		{"10.255.255.255", "private"},
		{"172.16.0.1", "private"},
		{"172.31.255.254", "private"},
		{"172.32.0.1", ""},
		{"172.15.255.255", ""},
		{"192.168.1.1", "private"},
		{"127.0.0.1", "loopback"},
		{"127.255.255.254", "loopback"},
		{"169.254.0.1", "link_local"},
		{"169.254.169.254", "metadata"},
		{"169.254.170.2", "metadata"},
		{"100.100.100.200", "metadata"},
		{"192.0.0.192", "metadata"},
		{"100.64.0.1", "cgnat"},
		{"100.127.255.255", "cgnat"},
		{"100.128.0.1", ""},
		{"192.0.0.8", "reserved"},
		{"198.18.0.1", "reserved"},
		{"198.19.255.255", "reserved"},
		{"224.0.0.1", "multicast"},
		{"239.255.255.250", "multicast"},
		{"240.0.0.1", "reserved"},
		{"255.255.255.255", "broadcast"},
		{"8.8.8.8", ""},
		{"1.1.1.1", ""},
		{"192.0.2.1", ""},    // documentation: not private
		{"198.51.100.1", ""}, // documentation
		{"203.0.113.9", ""},  // documentation
		// IPv6
		{"::", "unspecified"},
		{"::1", "loopback"},
		{"fe80::1", "link_local"},
		{"fe80::1%eth0", "link_local"},
		{"febf::1", "link_local"},
		{"fc00::1", "private"},
		{"fd12:3456::1", "private"},
		{"fec0::1", "private"},
		{"fd00:ec2::254", "metadata"},
		{"ff02::1", "multicast"},
		{"100::1", "reserved"},
		{"64:ff9b:1::1", "private"},
		{"2001:4860:4860::8888", ""},
		{"2001:db8::1", ""}, // documentation
		// IPv6 forms embedding IPv4
		{"::ffff:127.0.0.1", "loopback"},
		{"::ffff:169.254.169.254", "metadata"},
		{"::ffff:10.1.2.3", "private"},
		{"::ffff:8.8.8.8", ""},
		{"::ffff:0:127.0.0.1", "loopback"}, // IPv4-translated
		{"::127.0.0.1", "loopback"},        // IPv4-compatible
		{"::8.8.8.8", "reserved"},
		{"64:ff9b::7f00:1", "loopback"}, // NAT64 of 127.0.0.1
		{"64:ff9b::a9fe:a9fe", "metadata"},
		{"64:ff9b::808:808", ""},
		{"2002:7f00:1::1", "loopback"}, // 6to4 of 127.0.0.1
		{"2002:a00:1::", "private"},
		{"2002:808:808::1", ""},
	}
	for _, tt := range tests {
		a := netip.MustParseAddr(tt.addr)
		kind, ok := PrivateAddr(a)
		if kind != tt.kind || ok != (tt.kind != "") {
			t.Errorf("PrivateAddr(%s) = %q, %v, want %q, %v", tt.addr, kind, ok, tt.kind, tt.kind != "")
		}
	}
	if kind, ok := PrivateAddr(netip.Addr{}); !ok || kind != "invalid" {
		t.Errorf("PrivateAddr(zero) = %q, %v, want \"invalid\", true", kind, ok)
	}
}

// TestEgressSSRFEncodings checks the notations of 127.0.0.1 and 169.254.169.254 that SSRF
// payloads use.
func TestEgressSSRFEncodings(t *testing.T) {
	t.Parallel()
	e := mustCompileEgress(t, EgressPolicy{})
	tests := []struct {
		url    string
		reason string
	}{
		{"http://127.0.0.1/", "loopback address 127.0.0.1"},
		{"http://127.0.0.1:8080/admin", "loopback address 127.0.0.1"},
		{"http://2130706433/", "loopback address 127.0.0.1"},
		{"http://0x7f000001/", "loopback address 127.0.0.1"},
		{"http://0x7f.1/", "loopback address 127.0.0.1"},
		{"http://0x7F.0x0.0x0.0x1/", "loopback address 127.0.0.1"},
		{"http://0177.0.0.1/", "loopback address 127.0.0.1"},
		{"http://017700000001/", "loopback address 127.0.0.1"},
		{"http://127.1/", "loopback address 127.0.0.1"},
		{"http://127.0.1/", "loopback address 127.0.0.1"},
		{"http://127.000.000.001/", "loopback address 127.0.0.1"},
		{"http://127.0.0.1./", "loopback address 127.0.0.1"},
		{"http://[::1]/", "loopback address ::1"},
		{"http://[::ffff:127.0.0.1]/", "loopback address 127.0.0.1"},
		{"http://[::ffff:7f00:1]/", "loopback address 127.0.0.1"},
		{"http://[0:0:0:0:0:ffff:127.0.0.1]/", "loopback address 127.0.0.1"},
		{"http://[::127.0.0.1]/", "loopback address ::7f00:1"},
		{"http://[64:ff9b::127.0.0.1]/", "loopback address 64:ff9b::7f00:1"},
		{"http://%31%32%37.0.0.1/", "loopback address 127.0.0.1"},
		{"http://0/", "unspecified address 0.0.0.0"},
		{"http://0.0.0.0:80/", "unspecified address 0.0.0.0"},
		{"http://[::]/", "unspecified address ::"},
		{"http://169.254.169.254/latest/meta-data/", "metadata address 169.254.169.254"},
		{"http://2852039166/", "metadata address 169.254.169.254"},
		{"http://0xa9fea9fe/", "metadata address 169.254.169.254"},
		{"http://0xa9.0xfe.0xa9.0xfe/", "metadata address 169.254.169.254"},
		{"http://0251.0376.0251.0376/", "metadata address 169.254.169.254"},
		{"http://169.254.43518/", "metadata address 169.254.169.254"},
		{"http://169.16689662/", "metadata address 169.254.169.254"},
		{"http://[::ffff:169.254.169.254]/", "metadata address 169.254.169.254"},
		{"http://[::ffff:a9fe:a9fe]/", "metadata address 169.254.169.254"},
		{"http://[fd00:ec2::254]/latest/", "metadata address fd00:ec2::254"},
		{"http://100.100.100.200/latest/meta-data/", "metadata address 100.100.100.200"},
		{"http://[fe80::1%25eth0]/", "link-local address fe80::1"},
		{"http://10.0.0.5/", "private address 10.0.0.5"},
		{"HTTP://LOCALHOST/", "loopback name localhost"},
		{"http://localhost./", "loopback name localhost"},
		{"http://app.localhost:3000/", "loopback name app.localhost"},
		{"http://%6c%6f%63%61%6c%68%6f%73%74/", "loopback name localhost"},
		{"http://metadata.google.internal/computeMetadata/v1/", "metadata name metadata.google.internal"},
		{"http://metadata/computeMetadata/v1/", "metadata name metadata"},
		{"http://db.internal:5432/", "private name db.internal"},
		{"http://printer.local/", "private name printer.local"},
		{"http://router.home.arpa/", "private name router.home.arpa"},
		{"http://jenkins/job/x", "single-label name jenkins"},
		{"gopher://127.0.0.1:6379/_INFO", "scheme gopher not allowed"},
		{"file:///etc/passwd", "scheme file not allowed"},
		{"dict://127.0.0.1:11211/stat", "scheme dict not allowed"},
		{"http://256.0.0.1/", "invalid IPv4 address"},
		{"http://1.2.3.4.5/", "invalid IPv4 address"},
		{"http://08.0.0.1/", "invalid IPv4 address"},
		{"http://0x100000000/", "invalid IPv4 address"},
	}
	for _, tt := range tests {
		for _, kind := range []string{DestinationURL, DestinationHost} {
			v := checkOne(e, kind, tt.url)
			if v.Allowed || v.Reason != tt.reason {
				t.Errorf("Check(%s %q) = %v %q, want refused %q", kind, tt.url, v.Allowed, v.Reason, tt.reason)
			}
		}
	}
	// The same addresses as bare hosts, as a "host" argument gives them (inet_aton
	// accepts the same notations).
	for _, h := range []string{"2130706433", "0x7f.1", "127.1", "0177.0.0.1", "[::1]:22", "::1", "::ffff:127.0.0.1", "localhost:6379", "LocalHost."} {
		if v := checkOne(e, DestinationHost, h); v.Allowed {
			t.Errorf("Check(host %q) allowed, want refused", h)
		}
	}
	// Public addresses and names pass.
	for _, u := range []string{"http://8.8.8.8/", "http://134744072/", "https://[2001:4860:4860::8888]/", "https://example.com/", "wss://example.com/socket", "http://203.0.113.9/"} {
		if v := checkOne(e, DestinationURL, u); !v.Allowed {
			t.Errorf("Check(url %q) refused: %s", u, v.Reason)
		}
	}
	// AllowPrivate lets them through.
	priv := mustCompileEgress(t, EgressPolicy{AllowPrivate: true})
	for _, tt := range tests {
		if strings.HasPrefix(tt.reason, "scheme") || strings.HasPrefix(tt.reason, "invalid") {
			continue
		}
		if v := checkOne(priv, DestinationURL, tt.url); !v.Allowed {
			t.Errorf("AllowPrivate: Check(url %q) refused: %s", tt.url, v.Reason)
		}
	}
}

// TestEgressURLTricks checks URLs that parsers read differently.
func TestEgressURLTricks(t *testing.T) {
	t.Parallel()
	e := mustCompileEgress(t, EgressPolicy{Allow: []string{"good.com", "api.example.com"}})
	tests := []struct {
		name, url string
		allowed   bool
		reason    string
		host      string
	}{
		{"plain", "https://good.com/x", true, "", "good.com"},
		{"mixed case", "HTTPS://GoOd.CoM/X", true, "", "good.com"},
		{"trailing dot", "https://good.com./x", true, "", "good.com"},
		{"port", "https://good.com:8443/x", true, "", "good.com"},
		{"two trailing dots", "https://good.com../", false, "invalid host name (empty label)", "good.com."},
		{"userinfo", "https://good.com@evil.com/", false, "user info in URL", "evil.com"},
		{"userinfo on allowed host", "https://user:pass@good.com/", false, "user info in URL", "good.com"},
		{"userinfo two ats", "https://a@good.com@evil.com/", false, "user info in URL", "evil.com"},
		{"backslash userinfo", "https://good.com\\@evil.com/", false, "backslash in URL authority", ""},
		{"backslash host end", "https://evil.com\\.good.com/", false, "backslash in URL authority", ""},
		{"backslash slashes", "https:\\\\evil.com/", false, "malformed URL: want https://host", "evil.com"},
		{"one slash", "https:/evil.com/", false, "malformed URL: want https://host", "evil.com"},
		{"no slash", "https:evil.com", false, "malformed URL: want https://host", "evil.com"},
		{"three slashes", "https:///good.com/", false, "malformed URL: want https://host", "good.com"},
		{"tab", "https://go\tod.com/", false, "control character in URL", "good.com"},
		{"newline in scheme", "h\nttps://good.com/", false, "control character in URL", "good.com"},
		{"tab between slashes", "https:/\t/good.com/", false, "control character in URL", "good.com"},
		{"newline", "https://good.com\n.evil.com/", false, "control character in URL", "good.com.evil.com"},
		{"suffix trick", "https://good.com.evil.com/", false, "not on the allow-list", "good.com.evil.com"},
		{"prefix trick", "https://evilgood.com/", false, "not on the allow-list", "evilgood.com"},
		{"idn", "https://gööd.com/", false, "non-ASCII host name (give its punycode xn-- form)", "gööd.com"},
		{"fullwidth dot", "https://good\uff0ecom/", false, "non-ASCII host name (give its punycode xn-- form)", "good\uff0ecom"},
		{"cyrillic homograph", "https://gооd.com/", false, "non-ASCII host name (give its punycode xn-- form)", "gооd.com"},
		{"punycode", "https://xn--gd-eka.com/", false, "not on the allow-list", "xn--gd-eka.com"},
		{"bad port", "https://good.com:99999/", false, "invalid port \"99999\"", "good.com"},
		{"port letters", "https://good.com:80a/", false, "invalid port \"80a\"", "good.com"},
		{"unclosed bracket", "http://[::1/", false, "unclosed [ in host", ""},
		{"bad ipv6", "http://[1.2.3.4]/", false, "invalid IPv6 address", "1.2.3.4"},
		{"bad host char", "https://good.com%2f.evil.com/", false, "invalid host name (character '/')", "good.com/.evil.com"},
		{"bad percent", "https://good%zz.com/", false, "invalid percent-encoding in host", "good%zz.com"},
		{"no host", "https:///", false, "malformed URL: want https://host", ""},
		{"empty host", "https://:443/", false, "no host", ""},
		{"space and user info", "http://good.com &@evil.com# @evil.org/", false, "user info in URL", "good.com"},
		{"space ends host", "https://good.com is where I work", true, "", "good.com"},
		{"surrounding space", "  https://good.com/x \n", true, "", "good.com"},
		{"underscore", "https://my_host.good.com/", false, "not on the allow-list", "my_host.good.com"},
		{"long label", "https://" + strings.Repeat("a", 64) + ".com/", false, "invalid host name (label longer than 63 bytes)", strings.Repeat("a", 64) + ".com"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			v := checkOne(e, DestinationURL, tt.url)
			if v.Allowed != tt.allowed || v.Reason != tt.reason {
				t.Errorf("Check(url %q) = %v %q, want %v %q", tt.url, v.Allowed, v.Reason, tt.allowed, tt.reason)
			}
			if tt.host != "" && v.Destination.Host != tt.host {
				t.Errorf("Check(url %q).Destination.Host = %q, want %q", tt.url, v.Destination.Host, tt.host)
			}
		})
	}
}

func TestEgressWildcard(t *testing.T) {
	t.Parallel()
	e := mustCompileEgress(t, EgressPolicy{Allow: []string{"*.example.com", "exact.org"}})
	tests := []struct {
		host    string
		allowed bool
	}{
		{"a.example.com", true},
		{"a.b.example.com", true},
		{"A.EXAMPLE.COM.", true},
		{"example.com", false}, // the wildcard does not cover the domain itself
		{"badexample.com", false},
		{"example.com.evil.com", false},
		{"a.example.co", false},
		{"exact.org", true},
		{"sub.exact.org", false},
	}
	for _, tt := range tests {
		for _, d := range []Destination{{Kind: DestinationHost, Value: tt.host}, {Kind: DestinationURL, Value: "https://" + tt.host + "/p"}} {
			v := e.Check([]Destination{d})[0]
			if v.Allowed != tt.allowed {
				t.Errorf("Check(%s %q) = %v %q, want allowed %v", d.Kind, d.Value, v.Allowed, v.Reason, tt.allowed)
			}
			if !tt.allowed && v.Reason != "not on the allow-list" {
				t.Errorf("Check(%s %q).Reason = %q, want \"not on the allow-list\"", d.Kind, d.Value, v.Reason)
			}
		}
	}
	// Host name entries do not allow e-mail to the domain.
	if v := checkOne(e, DestinationEmail, "a@exact.org"); v.Allowed {
		t.Errorf("Check(email a@exact.org) allowed by a host entry, want refused")
	}
}

func TestEgressEmail(t *testing.T) {
	t.Parallel()
	e := mustCompileEgress(t, EgressPolicy{
		Allow: []string{"@example.com", "@*.corp.example.org", "ops@partner.net"},
		Deny:  []string{"ceo@example.com", "evil.example.com"},
	})
	tests := []struct {
		addr    string
		allowed bool
		reason  string
	}{
		{"alice@example.com", true, ""},
		{"Alice Smith <alice@Example.COM>", true, ""},
		{"alice@example.com.", true, ""},
		{"Alice <alice@example.com.>", true, ""},
		{"alice@example.com..", false, "invalid e-mail address"},
		{"bob@sub.example.com", false, "not on the allow-list"},
		{"bob@team.corp.example.org", true, ""},
		{"bob@corp.example.org", false, "not on the allow-list"},
		{"ops@partner.net", true, ""},
		{"OPS@PARTNER.NET", true, ""},
		{"sales@partner.net", false, "not on the allow-list"},
		{"ceo@example.com", false, "on the deny-list (entry \"ceo@example.com\")"},
		{"CEO@example.com", false, "on the deny-list (entry \"ceo@example.com\")"},
		{"x@evil.example.com", false, "on the deny-list (entry \"evil.example.com\")"},
		{"\"a@example.com\"@evil.com", false, "not on the allow-list"},
		{"alice@example.com.evil.com", false, "not on the allow-list"},
		{"root@localhost", false, "loopback name localhost"},
		{"root@[127.0.0.1]", false, "loopback address 127.0.0.1"},
		{"root@[IPv6:::1]", false, "invalid e-mail address"},
		{"root@[10.0.0.1]", false, "private address 10.0.0.1"},
		{"a@exämple.com", false, "non-ASCII host name (give its punycode xn-- form)"},
		{"not an address", false, "invalid e-mail address"},
		{"a@", false, "invalid e-mail address"},
		{"@example.com", false, "invalid e-mail address"},
	}
	for _, tt := range tests {
		v := checkOne(e, DestinationEmail, tt.addr)
		if v.Allowed != tt.allowed || v.Reason != tt.reason {
			t.Errorf("Check(email %q) = %v %q, want %v %q", tt.addr, v.Allowed, v.Reason, tt.allowed, tt.reason)
		}
	}
	// E-mail entries do not allow URLs to the domain.
	if v := checkOne(e, DestinationURL, "https://example.com/"); v.Allowed {
		t.Errorf("Check(url https://example.com/) allowed by an e-mail entry, want refused")
	}
}

func TestEgressURLPrefix(t *testing.T) {
	t.Parallel()
	e := mustCompileEgress(t, EgressPolicy{Allow: []string{
		"https://api.example.com/v1/",
		"https://files.example.com/pub",
		"https://*.cdn.example.net/",
		"http://203.0.113.7:8080/hook",
	}})
	tests := []struct {
		url     string
		allowed bool
	}{
		{"https://api.example.com/v1/", true},
		{"https://api.example.com/v1/users?id=3#top", true},
		{"https://API.example.com:443/v1/users", true},
		{"https://api.example.com/v10", false},
		{"https://api.example.com/v1", false},
		{"https://api.example.com/v2/", false},
		{"https://api.example.com.evil.com/v1/", false},
		{"https://api.example.com:8443/v1/", false},
		{"http://api.example.com/v1/", false},
		{"https://api.example.com/v1/../admin", false},
		{"https://api.example.com/v1/%2e%2e/admin", false},
		{"https://api.example.com/v1/%2E%2E%2Fadmin", false},
		{"https://api.example.com/v1\\..\\admin", false},
		{"https://api.example.com/v1/..;/admin", false},
		{"https://api.example.com/v1/x/../y", true},
		{"https://api.example.com//v1/x", true},
		{"https://files.example.com/pub", true},
		{"https://files.example.com/pub/a.txt", true},
		{"https://files.example.com/public", false},
		{"https://files.example.com/pub/../private", false},
		{"https://a.cdn.example.net/x.js", true},
		{"https://cdn.example.net/x.js", false},
		{"http://203.0.113.7:8080/hook", true},
		{"http://3405803783:8080/hook/x", true},
		{"http://203.0.113.7/hook", false},
		{"https://good.com@api.example.com/v1/", false},
	}
	for _, tt := range tests {
		v := checkOne(e, DestinationURL, tt.url)
		if v.Allowed != tt.allowed {
			t.Errorf("Check(url %q) = %v %q, want allowed %v", tt.url, v.Allowed, v.Reason, tt.allowed)
		}
	}
	// A URL prefix does not allow a host destination.
	if v := checkOne(e, DestinationHost, "api.example.com"); v.Allowed {
		t.Errorf("Check(host api.example.com) allowed by a URL prefix, want refused")
	}
	// A URL prefix with another scheme allows that scheme.
	ftp := mustCompileEgress(t, EgressPolicy{Allow: []string{"ftp://files.example.com/", "example.org"}})
	if v := checkOne(ftp, DestinationURL, "ftp://files.example.com/a"); !v.Allowed {
		t.Errorf("Check(url ftp://files.example.com/a) refused: %s", v.Reason)
	}
	if v := checkOne(ftp, DestinationURL, "gopher://example.org/"); v.Allowed || v.Reason != "scheme gopher not allowed" {
		t.Errorf("Check(url gopher://example.org/) = %v %q, want refused \"scheme gopher not allowed\"", v.Allowed, v.Reason)
	}
}

func TestEgressDeny(t *testing.T) {
	t.Parallel()
	e := mustCompileEgress(t, EgressPolicy{Deny: []string{"evil.com", "*.evil.org", "198.51.100.0/24", "https://example.com/admin", "2001:db8:bad::/48"}})
	tests := []struct {
		kind, value string
		reason      string
	}{
		{DestinationURL, "https://evil.com/", "on the deny-list (entry \"evil.com\")"},
		{DestinationHost, "EVIL.COM.", "on the deny-list (entry \"evil.com\")"},
		{DestinationEmail, "x@evil.com", "on the deny-list (entry \"evil.com\")"},
		{DestinationURL, "https://a.evil.org/", "on the deny-list (entry \"*.evil.org\")"},
		{DestinationURL, "http://198.51.100.20/", "on the deny-list (entry \"198.51.100.0/24\")"},
		{DestinationURL, "http://[::ffff:198.51.100.20]/", "on the deny-list (entry \"198.51.100.0/24\")"},
		{DestinationURL, "http://3325256724/", "on the deny-list (entry \"198.51.100.0/24\")"},
		{DestinationEmail, "x@[198.51.100.1]", "on the deny-list (entry \"198.51.100.0/24\")"},
		{DestinationURL, "https://example.com/admin/users", "on the deny-list (entry \"https://example.com/admin\")"},
		{DestinationURL, "https://example.com/x/../admin", "on the deny-list (entry \"https://example.com/admin\")"},
		{DestinationURL, "https://[2001:db8:bad::1]/", "on the deny-list (entry \"2001:db8:bad::/48\")"},
	}
	for _, tt := range tests {
		v := checkOne(e, tt.kind, tt.value)
		if v.Allowed || v.Reason != tt.reason {
			t.Errorf("Check(%s %q) = %v %q, want refused %q", tt.kind, tt.value, v.Allowed, v.Reason, tt.reason)
		}
	}
	for _, u := range []string{"https://evil.org/", "https://example.com/administrator", "https://notevil.com/", "http://198.51.101.1/"} {
		if v := checkOne(e, DestinationURL, u); !v.Allowed {
			t.Errorf("Check(url %q) refused: %s", u, v.Reason)
		}
	}
}

func TestEgressAddressAllowEntries(t *testing.T) {
	t.Parallel()
	e := mustCompileEgress(t, EgressPolicy{Allow: []string{"203.0.113.0/24", "2001:db8::7"}})
	for _, tt := range []struct {
		value   string
		allowed bool
	}{
		{"http://203.0.113.200/", true},
		{"http://[::ffff:203.0.113.5]/", true},
		{"http://203.0.114.1/", false},
		{"http://[2001:db8::7]:8080/", true},
		{"http://[2001:db8::8]/", false},
		{"https://example.com/", false}, // a name needs Resolve to match address entries
	} {
		if v := checkOne(e, DestinationURL, tt.value); v.Allowed != tt.allowed {
			t.Errorf("Check(url %q) = %v %q, want allowed %v", tt.value, v.Allowed, v.Reason, tt.allowed)
		}
	}
}

func TestEgressOtherKinds(t *testing.T) {
	t.Parallel()
	e := mustCompileEgress(t, EgressPolicy{AllowPrivate: true})
	vs := e.Check([]Destination{
		{Kind: DestinationLimit, Value: "more than 256 destinations"},
		{Kind: "ftp-site", Value: "example.com"},
		{Kind: DestinationHost, Host: "example.com"},
		{Kind: DestinationHost, Value: "https://127.0.0.1/", Host: "example.com"},
		{Kind: DestinationURL, Value: "example.com/path"},
		{Kind: DestinationHost, Value: ""},
	})
	want := []struct {
		allowed bool
		reason  string
	}{
		{false, "more than 256 destinations"},
		{false, "unknown destination kind \"ftp-site\""},
		{true, ""},
		{true, ""}, // the Value decides, not the Host; AllowPrivate is set
		{true, ""},
		{false, "no host"},
	}
	for i, w := range want {
		if vs[i].Allowed != w.allowed || vs[i].Reason != w.reason {
			t.Errorf("Check(%+v) = %v %q, want %v %q", vs[i].Destination, vs[i].Allowed, vs[i].Reason, w.allowed, w.reason)
		}
	}
	if got := vs[3].Destination.Host; got != "127.0.0.1" {
		t.Errorf("Check(host with URL value).Destination.Host = %q, want the value's host 127.0.0.1", got)
	}
	// A nil or zero Egress fails closed.
	var none *Egress
	if v := checkOne(none, DestinationURL, "https://example.com/"); v.Allowed || v.Reason != "no egress policy" {
		t.Errorf("nil Egress: Check = %v %q, want refused", v.Allowed, v.Reason)
	}
	if v := none.Resolve(context.Background(), nil, []Destination{{Kind: DestinationHost, Value: "example.com"}})[0]; v.Allowed {
		t.Errorf("nil Egress: Resolve allowed")
	}
	if err := none.DialControl()(context.Background(), "tcp", "93.184.215.14:443", nil); !errors.Is(err, ErrEgressDenied) {
		t.Errorf("nil Egress: DialControl = %v, want ErrEgressDenied", err)
	}
	if v := checkOne(&Egress{}, DestinationURL, "https://example.com/"); v.Allowed {
		t.Errorf("zero Egress: Check allowed, want refused")
	}
	strict := mustCompileEgress(t, EgressPolicy{Allow: []string{"example.com"}})
	if v := checkOne(strict, DestinationHost, "https://evil.com/"); v.Allowed {
		t.Errorf("Check(host https://evil.com/) allowed: a host destination's value must decide")
	}
}

func TestCompileEgressErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		p    EgressPolicy
		want string // substring of the error
	}{
		{"empty", EgressPolicy{Allow: []string{" "}}, `allow[0] " ": empty entry`},
		{"bare wildcard", EgressPolicy{Allow: []string{"*"}}, `allow[0] "*": a wildcard is only allowed as a leading "*." label`},
		{"inner wildcard", EgressPolicy{Allow: []string{"api.*.example.com"}}, `a wildcard is only allowed`},
		{"empty wildcard", EgressPolicy{Allow: []string{"*."}}, `allow[0] "*.": wildcard: empty host name`},
		{"empty mail domain", EgressPolicy{Deny: []string{"@"}}, `deny[0] "@": e-mail domain: empty host name`},
		{"empty mail wildcard", EgressPolicy{Deny: []string{"@*."}}, `e-mail domain: empty host name`},
		{"dot", EgressPolicy{Deny: []string{"."}}, `empty host name`},
		{"star at", EgressPolicy{Allow: []string{"*@example.com"}}, `for every recipient at a domain write "@example.com"`},
		{"host bits", EgressPolicy{Deny: []string{"203.0.113.5/24"}}, `deny[0] "203.0.113.5/24": host bits set: want 203.0.113.0/24`},
		{"bad cidr", EgressPolicy{Deny: []string{"10.0.0.0/33"}}, `invalid CIDR range`},
		{"port", EgressPolicy{Allow: []string{"example.com:8443"}}, `for a port write a URL prefix`},
		{"query", EgressPolicy{Allow: []string{"https://example.com/x?a=b"}}, `URL prefix with a query or fragment`},
		{"userinfo", EgressPolicy{Allow: []string{"https://u@example.com/"}}, `URL prefix: user info in URL`},
		{"url no host", EgressPolicy{Allow: []string{"https:///x"}}, `URL prefix`},
		{"bad scheme", EgressPolicy{Allow: []string{"1http://example.com/"}}, `URL prefix without a valid scheme`},
		{"non-ascii", EgressPolicy{Allow: []string{"bücher.de"}}, `non-ASCII host name (give its punycode xn-- form)`},
		{"odd ipv4", EgressPolicy{Allow: []string{"0x7f.1"}}, `write IPv4 addresses in dotted-decimal form`},
		{"private cidr", EgressPolicy{Allow: []string{"10.1.0.0/16"}}, `lies in the private range: allowing it takes AllowPrivate`},
		{"loopback ip", EgressPolicy{Allow: []string{"127.0.0.1"}}, `is a loopback address`},
		{"metadata url", EgressPolicy{Allow: []string{"http://169.254.169.254/"}}, `is a metadata address`},
		{"localhost", EgressPolicy{Allow: []string{"localhost"}}, `names loopback hosts: allowing them takes AllowPrivate`},
		{"internal wildcard", EgressPolicy{Allow: []string{"*.internal"}}, `names private hosts`},
		{"single label", EgressPolicy{Allow: []string{"jenkins"}}, `names single-label hosts`},
		{"zone", EgressPolicy{Deny: []string{"fe80::1%eth0"}}, `address with an IPv6 zone`},
		{"too long", EgressPolicy{Deny: []string{strings.Repeat("a", MaxEgressEntryLen+1)}}, `longer than 2048 bytes`},
		{"too many", EgressPolicy{Deny: make([]string, MaxEgressEntries+1)}, `deny: 4097 entries, more than the 4096 allowed`},
		{"scheme case", EgressPolicy{Schemes: []string{"HTTPS"}}, `schemes[0] "HTTPS": not a lower-case URL scheme`},
		{"bad mailbox", EgressPolicy{Allow: []string{"Bob <bob@example.com>"}}, `invalid e-mail address`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e, err := CompileEgress(tt.p)
			if err == nil {
				t.Fatalf("CompileEgress(%+v) = %v, nil; want an error containing %q", tt.p, e, tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("CompileEgress(%+v) error = %q, want it to contain %q", tt.p, err, tt.want)
			}
		})
	}
	// Every bad entry is reported.
	_, err := CompileEgress(EgressPolicy{Allow: []string{"ok.com", "*", "a b"}, Deny: []string{"1.2.3.4/99"}})
	if err == nil || strings.Count(err.Error(), "\n") != 2 {
		t.Errorf("CompileEgress with three bad entries: error %q, want three lines", err)
	}
	// Private entries are fine with AllowPrivate, and in deny-lists.
	for _, p := range []EgressPolicy{
		{Allow: []string{"10.1.0.0/16", "localhost", "*.internal", "http://169.254.169.254/"}, AllowPrivate: true},
		{Deny: []string{"10.0.0.0/8", "localhost", "jenkins"}},
		{Allow: []string{"203.0.113.0/24", "0.0.0.0/0", "::/0", "xn--bcher-kva.de", "@example.com", "ops@example.com", "https://[2001:db8::1]:8443/x/", "*.example.com", "Example.COM."}},
		{Schemes: []string{"https", "git+ssh"}},
	} {
		if _, err := CompileEgress(p); err != nil {
			t.Errorf("CompileEgress(%+v): %v", p, err)
		}
	}
}

// fakeResolver answers from a table and counts lookups.
type fakeResolver struct {
	addrs map[string][]string
	calls atomic.Int32
	block bool // wait for the context instead of answering
}

func (r *fakeResolver) LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error) {
	r.calls.Add(1)
	if r.block {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	if network != "ip" {
		return nil, fmt.Errorf("network %q", network)
	}
	list, ok := r.addrs[host]
	if !ok {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	var out []netip.Addr
	for _, s := range list {
		out = append(out, netip.MustParseAddr(s))
	}
	return out, nil
}

func TestEgressResolve(t *testing.T) {
	t.Parallel()
	r := &fakeResolver{addrs: map[string][]string{
		"public.example.com":   {"93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"},
		"rebind.example.com":   {"93.184.215.14", "127.0.0.1"}, // one bad address is enough
		"meta.example.com":     {"169.254.169.254"},
		"mapped.example.com":   {"::ffff:10.0.0.8"},
		"denied.example.com":   {"198.51.100.3"},
		"empty.example.com":    {},
		"cdn.example.net":      {"203.0.113.10", "203.0.113.11"},
		"halfcdn.example.net":  {"203.0.113.10", "192.0.2.1"},
		"internal.example.org": {"10.1.2.3"},
	}}
	e := mustCompileEgress(t, EgressPolicy{Deny: []string{"198.51.100.0/24"}})
	dests := []Destination{
		{Kind: DestinationURL, Value: "https://public.example.com/"},
		{Kind: DestinationURL, Value: "https://rebind.example.com/"},
		{Kind: DestinationHost, Value: "meta.example.com:80"},
		{Kind: DestinationURL, Value: "http://mapped.example.com/"},
		{Kind: DestinationURL, Value: "http://denied.example.com/"},
		{Kind: DestinationURL, Value: "http://nx.example.com/"},
		{Kind: DestinationURL, Value: "http://empty.example.com/"},
		{Kind: DestinationURL, Value: "http://127.0.0.1/"},           // refused before resolving
		{Kind: DestinationEmail, Value: "a@nx.example.com"},          // e-mail domains are not resolved
		{Kind: DestinationURL, Value: "https://PUBLIC.example.com/"}, // cached
	}
	got := e.Resolve(context.Background(), r, dests)
	want := []struct {
		allowed bool
		reason  string
	}{
		{true, ""},
		{false, "resolves to loopback 127.0.0.1"},
		{false, "resolves to metadata 169.254.169.254"},
		{false, "resolves to private 10.0.0.8"},
		{false, "resolves to 198.51.100.3, on the deny-list (entry \"198.51.100.0/24\")"},
		{false, "nx.example.com does not resolve: lookup nx.example.com: no such host"},
		{false, "empty.example.com resolves to no address"},
		{false, "loopback address 127.0.0.1"},
		{true, ""},
		{true, ""},
	}
	for i, w := range want {
		if got[i].Allowed != w.allowed || got[i].Reason != w.reason {
			t.Errorf("Resolve(%q) = %v %q, want %v %q", dests[i].Value, got[i].Allowed, got[i].Reason, w.allowed, w.reason)
		}
	}
	if n := r.calls.Load(); n != 7 {
		t.Errorf("Resolve made %d lookups, want 7 (one per distinct name)", n)
	}

	// AllowPrivate lets private addresses through, not deny-listed ones.
	priv := mustCompileEgress(t, EgressPolicy{AllowPrivate: true, Deny: []string{"198.51.100.0/24"}})
	got = priv.Resolve(context.Background(), r, dests[:5])
	for i, w := range []bool{true, true, true, true, false} {
		if got[i].Allowed != w {
			t.Errorf("AllowPrivate: Resolve(%q) = %v %q, want allowed %v", dests[i].Value, got[i].Allowed, got[i].Reason, w)
		}
	}

	// Address entries allow a name whose addresses they all cover.
	cidr := mustCompileEgress(t, EgressPolicy{Allow: []string{"203.0.113.0/24", "public.example.com"}})
	got = cidr.Resolve(context.Background(), r, []Destination{
		{Kind: DestinationURL, Value: "https://cdn.example.net/x"},
		{Kind: DestinationURL, Value: "https://halfcdn.example.net/x"},
		{Kind: DestinationURL, Value: "https://public.example.com/x"},
		{Kind: DestinationURL, Value: "https://internal.example.org/x"},
	})
	for i, w := range []struct {
		allowed bool
		reason  string
	}{{true, ""}, {false, "not on the allow-list"}, {true, ""}, {false, "resolves to private 10.1.2.3"}} {
		if got[i].Allowed != w.allowed || got[i].Reason != w.reason {
			t.Errorf("address entries: Resolve(%q) = %v %q, want %v %q", got[i].Destination.Value, got[i].Allowed, got[i].Reason, w.allowed, w.reason)
		}
	}
	// Without address entries a name not on the list is refused without a lookup.
	names := mustCompileEgress(t, EgressPolicy{Allow: []string{"example.org"}})
	before := r.calls.Load()
	if v := names.Resolve(context.Background(), r, dests[:1])[0]; v.Allowed || v.Reason != "not on the allow-list" {
		t.Errorf("Resolve(not listed) = %v %q, want refused \"not on the allow-list\"", v.Allowed, v.Reason)
	}
	if r.calls.Load() != before {
		t.Errorf("Resolve looked up a name the allow-list refuses")
	}
	// No resolver: fail closed.
	if v := e.Resolve(context.Background(), nil, dests[:1])[0]; v.Allowed || !strings.Contains(v.Reason, "no resolver") {
		t.Errorf("Resolve(nil resolver) = %v %q, want refused", v.Allowed, v.Reason)
	}
}

func TestEgressResolveContext(t *testing.T) {
	t.Parallel()
	e := mustCompileEgress(t, EgressPolicy{})
	dests := []Destination{{Kind: DestinationURL, Value: "https://a.example.com/"}, {Kind: DestinationURL, Value: "https://b.example.com/"}}

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	r := &fakeResolver{block: true}
	got := e.Resolve(ctx, r, dests)
	for i, v := range got {
		if v.Allowed || !strings.Contains(v.Reason, "context deadline exceeded") {
			t.Errorf("Resolve with a stuck resolver: dests[%d] = %v %q, want refused for the deadline", i, v.Allowed, v.Reason)
		}
	}
	if n := r.calls.Load(); n != 1 {
		t.Errorf("Resolve after the deadline made %d lookups, want 1", n)
	}

	done, cancel2 := context.WithCancel(context.Background())
	cancel2()
	r2 := &fakeResolver{addrs: map[string][]string{"a.example.com": {"93.184.215.14"}}}
	if v := e.Resolve(done, r2, dests[:1])[0]; v.Allowed || !strings.Contains(v.Reason, "context canceled") {
		t.Errorf("Resolve with a cancelled context = %v %q, want refused", v.Allowed, v.Reason)
	}
	if r2.calls.Load() != 0 {
		t.Errorf("Resolve with a cancelled context looked up names")
	}
}

func TestEgressDialControl(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	addr := ln.Addr().String()

	dial := func(p EgressPolicy, address string) error {
		e := mustCompileEgress(t, p)
		d := net.Dialer{Timeout: 5 * time.Second, ControlContext: e.DialControl()}
		c, err := d.DialContext(context.Background(), "tcp", address)
		if err == nil {
			c.Close()
		}
		return err
	}
	err = dial(EgressPolicy{}, addr)
	if !errors.Is(err, ErrEgressDenied) {
		t.Fatalf("Dial(%s) with the default policy = %v, want ErrEgressDenied", addr, err)
	}
	if !strings.Contains(err.Error(), "loopback address") {
		t.Errorf("Dial(%s) error %q does not say why", addr, err)
	}
	// A name that resolves to loopback (as after DNS rebinding) is refused too: the
	// check is on the address connected to.
	_, port, _ := net.SplitHostPort(addr)
	if err := dial(EgressPolicy{}, net.JoinHostPort("localhost", port)); !errors.Is(err, ErrEgressDenied) {
		t.Errorf("Dial(localhost:%s) = %v, want ErrEgressDenied", port, err)
	}
	if err := dial(EgressPolicy{AllowPrivate: true}, addr); err != nil {
		t.Errorf("Dial(%s) with AllowPrivate = %v, want success", addr, err)
	}
	if err := dial(EgressPolicy{AllowPrivate: true, Deny: []string{"127.0.0.0/8"}}, addr); !errors.Is(err, ErrEgressDenied) {
		t.Errorf("Dial(%s) with 127.0.0.0/8 denied = %v, want ErrEgressDenied", addr, err)
	}

	e := mustCompileEgress(t, EgressPolicy{})
	ctl := e.DialControl()
	for _, tt := range []struct {
		network, address string
		ok               bool
	}{
		{"tcp", "93.184.215.14:443", true},
		{"tcp6", "[2606:2800:21f:cb07:6820:80da:af6b:8b2c]:443", true},
		{"udp", "8.8.8.8:53", true},
		{"tcp", "[::ffff:127.0.0.1]:80", false},
		{"tcp", "169.254.169.254:80", false},
		{"tcp4", "10.0.0.1:80", false},
		{"tcp6", "[fe80::1%eth0]:80", false},
		{"tcp", "0.0.0.0:80", false},
		{"unix", "/var/run/docker.sock", false},
		{"tcp", "example.com:80", false},
		{"tcp", "garbage", false},
	} {
		err := ctl(context.Background(), tt.network, tt.address, nil)
		if (err == nil) != tt.ok || (err != nil && !errors.Is(err, ErrEgressDenied)) {
			t.Errorf("DialControl(%s, %s) = %v, want ok %v", tt.network, tt.address, err, tt.ok)
		}
	}
}

func TestDestinations(t *testing.T) {
	t.Parallel()
	args := map[string]any{
		"to":      []any{"alice@example.com", "Bob <bob@example.org>"},
		"cc":      "carol@example.com, \"Smith, Dan\" <dan@example.net>; eve@example.com",
		"subject": "Quarterly report: numbers inside",
		"body":    "Hi all, see https://intranet/report. Mail me at boss@example.com.",
		"request": map[string]any{
			"url":     "https://api.example.com/v1/items?q=1",
			"method":  "GET",
			"headers": map[string]any{"Referer": "https://ref.example.com/"},
		},
		"callbackUrl": "hooks.example.com/cb",
		"smtp_host":   "mail.example.com:587",
		"server":      "finance", // a weak hint: not a host without a dot
		"domain":      "example.co.uk",
		"ipAddress":   "10.0.0.9",
		"notes":       []any{"ftp://files.example.com/pub", 3.0, true, nil, "mailto:x@example.com?cc=y@example.com"},
		"reply_to":    "Bob <bob@>",
		"website":     "http:\\\\evil.com",
		"contact":     "dave@example.io",
		"path_to":     "/tmp/out",
		"count":       2.0,
	}
	got := Destinations(args)
	want := []Destination{
		{Kind: DestinationHost, Value: "hooks.example.com/cb", Host: "hooks.example.com", Path: "/cb", Arg: "callbackUrl"},
		{Kind: DestinationEmail, Value: "carol@example.com", Host: "example.com", Arg: "cc"},
		{Kind: DestinationEmail, Value: "dan@example.net", Host: "example.net", Arg: "cc"},
		{Kind: DestinationEmail, Value: "eve@example.com", Host: "example.com", Arg: "cc"},
		{Kind: DestinationEmail, Value: "dave@example.io", Host: "example.io", Arg: "contact"},
		{Kind: DestinationHost, Value: "example.co.uk", Host: "example.co.uk", Arg: "domain"},
		{Kind: DestinationHost, Value: "10.0.0.9", Host: "10.0.0.9", Path: "", Arg: "ipAddress"},
		{Kind: DestinationURL, Value: "ftp://files.example.com/pub", Host: "files.example.com", Path: "/pub", Arg: "notes[0]"},
		{Kind: DestinationEmail, Value: "x@example.com", Host: "example.com", Arg: "notes[4]"},
		{Kind: DestinationEmail, Value: "y@example.com", Host: "example.com", Arg: "notes[4]"},
		{Kind: DestinationEmail, Value: "Bob <bob@>", Arg: "reply_to"},
		{Kind: DestinationURL, Value: "https://ref.example.com/", Host: "ref.example.com", Path: "/", Arg: "request.headers.Referer"},
		{Kind: DestinationURL, Value: "https://api.example.com/v1/items?q=1", Host: "api.example.com", Path: "/v1/items", Arg: "request.url"},
		{Kind: DestinationHost, Value: "mail.example.com:587", Host: "mail.example.com", Arg: "smtp_host"},
		{Kind: DestinationEmail, Value: "alice@example.com", Host: "example.com", Arg: "to[0]"},
		{Kind: DestinationEmail, Value: "bob@example.org", Host: "example.org", Arg: "to[1]"},
		{Kind: DestinationURL, Value: "http:\\\\evil.com", Host: "evil.com", Arg: "website"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Destinations mismatch (-want +got):\n%s", diff)
	}
	// Every one of them is refused or allowed as expected under a strict policy.
	e := mustCompileEgress(t, EgressPolicy{Allow: []string{"@example.com", "https://api.example.com/v1/"}})
	allowed := map[string]bool{}
	for _, v := range e.Check(got) {
		if v.Allowed {
			allowed[v.Destination.Arg+" "+v.Destination.Value] = true
		}
	}
	wantAllowed := map[string]bool{
		"cc carol@example.com": true, "cc eve@example.com": true, "notes[4] x@example.com": true,
		"notes[4] y@example.com": true, "request.url https://api.example.com/v1/items?q=1": true,
		"to[0] alice@example.com": true,
	}
	if diff := cmp.Diff(wantAllowed, allowed); diff != "" {
		t.Errorf("allowed destinations mismatch (-want +got):\n%s", diff)
	}
}

func TestDestinationsValues(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		key   string
		value any
		kinds []string // kinds found, in order; nil for none
	}{
		{"plain text", "text", "hello world", nil},
		{"text with url inside", "text", "see https://example.com for more", nil},
		{"text with address inside", "text", "write to bob@example.com please", nil},
		{"note colon", "text", "Note: http is a protocol", nil},
		{"windows path", "path", `C:\Users\bob`, nil},
		{"localhost port in text", "text", "localhost:8080", nil},
		{"package version", "pkg", "left-pad@1.3.0", nil},
		{"git remote", "remote_repo", "git@github.com:org/repo.git", nil},
		{"handle", "text", "@alice", nil},
		{"url any key", "q", "https://example.com/", []string{"url"}},
		{"url tab", "q", "ht\ttps://169.254.169.254/", []string{"url"}},
		{"url newlines in scheme", "q", "h\nt\r\ntp:/\n/127.0.0.1/", []string{"url"}},
		{"url long tab run", "q", "ht" + strings.Repeat("\t", 500) + "tp://127.0.0.1/", []string{"url"}},
		{"multi-line text with colon", "body", "Hi team,\nthe numbers: attached\n", nil},
		{"gopher", "payload", "gopher://127.0.0.1:6379/_SET", []string{"url"}},
		{"file url", "x", "file:///etc/passwd", []string{"url"}},
		{"lenient http", "x", "http:evil.com", []string{"url"}},
		{"urn", "id", "urn:isbn:0451450523", nil},
		{"address any key", "contact", "Bob <bob@example.com>", []string{"email"}},
		{"address literal any key", "x", "root@[127.0.0.1]", []string{"email"}},
		{"dotless domain any key", "x", "root@localhost", nil},
		{"to without at", "to", "#general", nil},
		{"to phone", "to", "+15551234567", nil},
		{"to with at", "to", "a@b", []string{"email"}},
		{"host malformed", "host", "evil.com/a b", []string{"host"}},
		{"host single label", "hostname", "jenkins", []string{"host"}},
		{"url key schemeless", "url", "example.com", []string{"host"}},
		{"server with dot", "server", "db.example.com", []string{"host"}},
		{"server localhost", "server", "localhost", []string{"host"}},
		{"server word", "server", "primary", nil},
		{"target number", "target", "123456789", nil},
		{"target dotted", "target", "127.1", []string{"host"}},
		{"address postal", "address", "221B Baker Street", nil},
		{"address email", "address", "bob@example.com", []string{"email"}},
		{"ghost is not host", "ghost", "boo", nil},
		{"photo is not to", "photo", "a@b", nil},
		{"empty", "url", "  ", nil},
		{"number", "url", 3.0, nil},
		{"array hint", "recipients", []any{"a@example.com", []any{"b@example.com"}}, []string{"email", "email"}},
		{"object does not inherit", "url", map[string]any{"name": "x.example.com"}, nil},
		{"unsupported type", "x", struct{}{}, []string{"limit"}},
		{"strings slice", "to", []string{"a@example.com"}, []string{"email"}},
		{"long text with at", "body", strings.Repeat("word ", 300) + "a@example.com", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var kinds []string
			for _, d := range Destinations(map[string]any{tt.key: tt.value}) {
				kinds = append(kinds, d.Kind)
			}
			if diff := cmp.Diff(tt.kinds, kinds); diff != "" {
				t.Errorf("Destinations(%q: %#v) kinds mismatch (-want +got):\n%s", tt.key, tt.value, diff)
			}
		})
	}
}

func TestEgressKeyHint(t *testing.T) {
	t.Parallel()
	for key, want := range map[string]egressHint{
		"url": egressHintURL, "baseURL": egressHintURL, "image_url": egressHintURL, "redirect-uri": egressHintURL,
		"URLs": egressHintURL, "webhookUrl": egressHintURL, "host": egressHintURL, "smtpHost": egressHintURL,
		"host_name": egressHintURL, "HostName": egressHintURL, "endpoint": egressHintURL,
		"to": egressHintMail, "cc": egressHintMail, "BCC": egressHintMail, "reply_to": egressHintMail,
		"recipients": egressHintMail, "notifyEmail": egressHintMail, "email_address": egressHintMail,
		"toAddress": egressHintMail, "attendees": egressHintMail,
		"domain": egressHintWeak, "IPAddress": egressHintWeak, "address": egressHintWeak, "proxy": egressHintWeak,
		"ghost": egressHintNone, "photo": egressHintNone, "text": egressHintNone, "": egressHintNone,
		"curl": egressHintNone, "hosting_plan": egressHintNone, "__": egressHintNone,
	} {
		if got := egressKeyHint(key); got != want {
			t.Errorf("egressKeyHint(%q) = %d, want %d", key, got, want)
		}
	}
}

func TestDestinationsBounds(t *testing.T) {
	t.Parallel()
	var many []any
	for i := range 300 {
		many = append(many, fmt.Sprintf("https://h%d.example.com/", i))
	}
	got := Destinations(map[string]any{"links": many})
	if len(got) != MaxDestinations {
		t.Fatalf("Destinations(300 URLs) returned %d, want %d", len(got), MaxDestinations)
	}
	last := got[MaxDestinations-1]
	if last.Kind != DestinationLimit || last.Value != "more than 256 destinations" {
		t.Errorf("Destinations(300 URLs) last = %+v, want a limit destination", last)
	}
	e := mustCompileEgress(t, EgressPolicy{})
	if v := e.Check([]Destination{last})[0]; v.Allowed {
		t.Errorf("Check(limit destination) allowed, want refused")
	}
	// Exactly the maximum fits without a limit marker.
	got = Destinations(map[string]any{"links": many[:MaxDestinations]})
	if len(got) != MaxDestinations || got[MaxDestinations-1].Kind != DestinationURL {
		t.Errorf("Destinations(%d URLs) = %d, last kind %q; want all of them", MaxDestinations, len(got), got[len(got)-1].Kind)
	}

	// Nesting: a URL at depth 32 is found, one deeper is replaced by a limit.
	nest := func(depth int) map[string]any {
		m := map[string]any{"u": "http://127.0.0.1/"}
		for range depth - 1 {
			m = map[string]any{"n": m}
		}
		return m
	}
	if got := Destinations(nest(MaxDestinationDepth)); len(got) != 1 || got[0].Kind != DestinationURL {
		t.Errorf("Destinations(depth %d) = %+v, want the URL", MaxDestinationDepth, got)
	}
	got = Destinations(nest(MaxDestinationDepth + 1))
	if len(got) != 1 || got[0].Kind != DestinationLimit || !strings.Contains(got[0].Value, "nested deeper than 32") {
		t.Errorf("Destinations(depth %d) = %+v, want one limit destination", MaxDestinationDepth+1, got)
	}
	var arr any = "http://127.0.0.1/"
	for range 100 {
		arr = []any{arr}
	}
	got = Destinations(map[string]any{"a": arr})
	if len(got) != 1 || got[0].Kind != DestinationLimit {
		t.Errorf("Destinations(100 nested arrays) = %+v, want one limit destination", got)
	}
	if Destinations(nil) != nil {
		t.Errorf("Destinations(nil) != nil")
	}
}

// TestEgressCorpus measures how Destinations recognises the e-mail addresses and IP
// addresses labelled in the PII corpus, each given as an argument value, and that the
// other labelled values (phone numbers, national IDs, card numbers, IBANs) and the free
// texts of the injection corpus are not taken for destinations.
func TestEgressCorpus(t *testing.T) {
	t.Parallel()
	pii := readCorpusForEgress(t, "testdata/corpora/pii.jsonl")
	rep := NewReport(CorpusPII, "Destinations on each labelled value: EMAIL under argument \"value\", IP_ADDRESS under \"host\", every other type under \"value\" and \"address\"; whole rows of the injection corpus under \"text\"")
	start := time.Now()
	for _, row := range pii {
		runes := []rune(row.Text)
		for _, ent := range row.Entities {
			val := string(runes[ent.Start:ent.End])
			rep.Rows++
			rep.Bytes += int64(len(val))
			var c Counts
			switch ent.Type {
			case "EMAIL":
				c.Positives = 1
				d := Destinations(map[string]any{"value": val})
				if len(d) == 1 && d[0].Kind == DestinationEmail {
					c.TruePositives = 1
				} else {
					rep.Miss(row.ID+":"+ent.Type, false)
				}
			case "IP_ADDRESS":
				c.Positives = 1
				d := Destinations(map[string]any{"host": val})
				if _, err := netip.ParseAddr(d[0].Host); len(d) == 1 && d[0].Kind == DestinationHost && err == nil {
					c.TruePositives = 1
				} else {
					rep.Miss(row.ID+":"+ent.Type, false)
				}
			default:
				c.Negatives = 1
				if d := Destinations(map[string]any{"value": val, "address": val}); len(d) > 0 {
					c.FalsePositives = 1
					rep.Miss(row.ID+":"+ent.Type, true)
				}
			}
			rep.Add(c, "type="+ent.Type)
		}
	}
	inj := readCorpusForEgress(t, "testdata/corpora/injection.jsonl")
	for _, row := range inj {
		rep.Rows++
		rep.Bytes += int64(len(row.Text))
		c := Counts{Negatives: 1}
		if d := Destinations(map[string]any{"text": row.Text}); len(d) > 0 {
			c.FalsePositives = 1
			rep.Miss(row.ID, true)
		}
		rep.Add(c, "source=injection-corpus-text")
	}
	rep.Elapsed = time.Since(start)
	var b strings.Builder
	rep.Format(&b)
	t.Logf("\n%s", b.String())
	all := rep.Groups["all"]
	if all.Recall() < 1 {
		t.Errorf("recall %.3f, want every labelled e-mail and IP address found", all.Recall())
	}
	if all.FalsePositiveRate() > 0.01 {
		t.Errorf("false-positive rate %.3f, want at most 1%%", all.FalsePositiveRate())
	}
}

func readCorpusForEgress(t *testing.T, name string) []Row {
	t.Helper()
	f, err := os.Open(name)
	if err != nil {
		t.Skipf("corpus: %v", err)
	}
	defer f.Close()
	rows, err := ReadRows(f)
	if err != nil {
		t.Fatalf("ReadRows(%s): %v", name, err)
	}
	return rows
}

// TestEgressHostNormalisation checks the host each notation normalises to.
func TestEgressHostNormalisation(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"Example.COM.":         "example.com",
		"0x7f.1":               "127.0.0.1",
		"3405803783":           "203.0.113.7",
		"1.2.3":                "1.2.0.3",
		"0xcb.0x0.0x71.07":     "203.0.113.7",
		"[::FFFF:203.0.113.7]": "203.0.113.7",
		"[2001:DB8::1]:443":    "2001:db8::1",
		"xn--bcher-kva.de":     "xn--bcher-kva.de",
		"a_b.example":          "a_b.example",
	} {
		d := Destinations(map[string]any{"host": in})
		if len(d) != 1 || d[0].Host != want {
			t.Errorf("Destinations(host %q) = %+v, want host %q", in, d, want)
		}
		if len(d) == 1 && !utf8.ValidString(d[0].Host) {
			t.Errorf("Destinations(host %q).Host is not valid UTF-8", in)
		}
	}
}
