package inspect

import (
	"context"
	"net/netip"
	"net/url"
	"strings"
	"testing"
)

// egressFuzzSeeds are URL, host and e-mail values, tricky ones first.
var egressFuzzSeeds = []string{
	"http://127.0.0.1/", "http://2130706433/", "http://0x7f.1/", "http://0177.0.0.1/",
	"http://[::ffff:127.0.0.1]/", "http://[::ffff:7f00:1]:80/", "http://169.254.169.254/latest",
	"http://[fd00:ec2::254]/", "http://%31%32%37.1/", "http://localhost./", "http://a.localhost/",
	"https://good.com@evil.com/", "https://good.com\\@evil.com/", "https:\\\\evil.com", "http:evil.com",
	"ht\ttp://127.0.0.1/", "https://gööd.com/", "https://[fe80::1%25eth0]/", "file:///etc/passwd",
	"gopher://127.0.0.1:6379/_x", "mailto:a@example.com?cc=b@[127.0.0.1]", "a@example.com, B <b@[10.0.0.1]>",
	"root@localhost", "example.com:8080/x", "::1", "[::1]:22", "0x7f.0.0.1:80", "https://api.example.com/v1/../x",
	"", " ", "@", "http://", "http://[", "http://[]/", "http://:0/", "http://1.2.3.4.5/", "https://x.com:99999/",
}

func FuzzEgressCheck(f *testing.F) {
	for _, s := range egressFuzzSeeds {
		f.Add(s)
	}
	strict, err := CompileEgress(EgressPolicy{})
	if err != nil {
		f.Fatal(err)
	}
	lax, err := CompileEgress(EgressPolicy{AllowPrivate: true, Allow: []string{"*.example.com", "@example.com", "https://api.example.com/v1/", "0.0.0.0/0"}})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, s string) {
		dests := []Destination{
			{Kind: DestinationURL, Value: s},
			{Kind: DestinationHost, Value: s},
			{Kind: DestinationEmail, Value: s},
			{Kind: DestinationHost, Host: s},
		}
		// One key per map: the order of a map's keys is random, and sorting them in a
		// different order would make coverage flaky for the fuzzer.
		var found []Destination
		for _, k := range []string{"url", "to", "x", "address"} {
			found = append(found, Destinations(map[string]any{k: s})...)
		}
		found = append(found, Destinations(map[string]any{"list": []any{s, map[string]any{"host": s}}})...)
		for _, d := range found {
			switch d.Kind {
			case DestinationURL, DestinationHost, DestinationEmail, DestinationLimit:
			default:
				t.Fatalf("Destinations(%q) kind %q", s, d.Kind)
			}
			if d.Arg == "" {
				t.Fatalf("Destinations(%q) destination without an argument path: %+v", s, d)
			}
		}
		dests = append(dests, found...)

		vs := strict.Check(dests)
		if len(vs) != len(dests) {
			t.Fatalf("Check returned %d verdicts for %d destinations", len(vs), len(dests))
		}
		for i, v := range vs {
			if v.Allowed == (v.Reason != "") {
				t.Fatalf("Check(%+v) = %v with reason %q", dests[i], v.Allowed, v.Reason)
			}
			if !v.Allowed {
				continue
			}
			h := v.Destination.Host
			if a, err := netip.ParseAddr(h); err == nil {
				if k, ok := PrivateAddr(a); ok {
					t.Fatalf("Check(%+v) allowed a %s address %s", dests[i], k, a)
				}
			} else if k, ok := egressPrivateName(h); ok {
				t.Fatalf("Check(%+v) allowed a %s name %q", dests[i], k, h)
			}
			// Checking the verdict's destination again gives the same verdict.
			if again := strict.Check([]Destination{v.Destination})[0]; again != v {
				t.Fatalf("Check is not stable: %+v then %+v", v, again)
			}
		}
		// An independent parser: whatever net/url reads as a private literal address
		// must be refused.
		if u, err := url.Parse(strings.TrimSpace(s)); err == nil && u.Host != "" {
			if a, err := netip.ParseAddr(u.Hostname()); err == nil {
				if _, private := PrivateAddr(a); private && vs[0].Allowed {
					t.Fatalf("Check(url %q) allowed, but net/url reads the private address %s", s, a)
				}
			}
			if strings.EqualFold(strings.TrimSuffix(u.Hostname(), "."), "localhost") && vs[0].Allowed {
				t.Fatalf("Check(url %q) allowed localhost", s)
			}
		}
		lax.Check(dests)
		// Every name resolves to a loopback address (among others) here: only public
		// literal addresses and e-mail recipients can pass.
		for i, v := range strict.Resolve(context.Background(), egressLoopbackResolver{}, dests) {
			if !v.Allowed || v.Destination.Kind == DestinationEmail {
				continue
			}
			a, err := netip.ParseAddr(v.Destination.Host)
			if err != nil {
				t.Fatalf("Resolve(%+v) allowed a name that resolves to loopback", dests[i])
			}
			if _, private := PrivateAddr(a); private {
				t.Fatalf("Resolve(%+v) allowed the private address %s", dests[i], a)
			}
		}
	})
}

// egressLoopbackResolver resolves every name to a public address and 127.0.0.1, as a
// rebinding attacker's DNS server would.
type egressLoopbackResolver struct{}

func (egressLoopbackResolver) LookupNetIP(context.Context, string, string) ([]netip.Addr, error) {
	return []netip.Addr{netip.MustParseAddr("93.184.215.14"), netip.MustParseAddr("127.0.0.1")}, nil
}

// egressEntryExample returns a destination an entry names, and whether the entry names
// exactly that kind of destination (not a range).
func egressEntryExample(entry string) (Destination, bool) {
	s := strings.TrimSpace(entry)
	switch {
	case strings.Contains(s, "://"):
		return Destination{Kind: DestinationURL, Value: strings.Replace(s, "://*.", "://x.", 1)}, true
	case strings.HasPrefix(s, "@"):
		return Destination{Kind: DestinationEmail, Value: "a" + strings.Replace(s, "@*.", "@x.", 1)}, true
	case strings.Contains(s, "@"):
		return Destination{Kind: DestinationEmail, Value: s}, true
	case strings.HasPrefix(s, "*."):
		return Destination{Kind: DestinationHost, Value: "x" + s[1:]}, true
	case strings.Contains(s, "/"):
		p, err := netip.ParsePrefix(strings.Trim(s, "[]"))
		if err != nil {
			return Destination{}, false
		}
		return Destination{Kind: DestinationHost, Value: p.Addr().String()}, false
	}
	if a, err := netip.ParseAddr(strings.Trim(s, "[]")); err == nil {
		return Destination{Kind: DestinationHost, Value: a.String()}, true
	}
	return Destination{Kind: DestinationHost, Value: s}, true
}

func FuzzCompileEgress(f *testing.F) {
	for _, s := range []string{
		"api.example.com", "*.example.com", "@example.com", "@*.example.com", "ops@example.com",
		"203.0.113.0/24", "2001:db8::/32", "203.0.113.7", "[2001:db8::1]", "https://api.example.com/v1/",
		"https://*.example.com/", "http://[2001:db8::1]:8080/x", "ftp://files.example.com/pub", "Example.COM.",
		"xn--bcher-kva.de", "localhost", "10.0.0.0/8", "*", "*@x.com", "a b", "https://u@x.com/", "0x7f.1",
		"::/0", "::ffff:0:0/96", "https://x.com/a/../b", "https://x.com/%2e%2e/", "a@b", "\"a b\"@example.com",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, entry string) {
		deny, err := CompileEgress(EgressPolicy{Deny: []string{entry}})
		d, exact := egressEntryExample(entry)
		if err == nil && d.Kind != "" {
			// A deny entry refuses what it names.
			if v := deny.Check([]Destination{d})[0]; v.Allowed {
				t.Fatalf("Deny [%q] allows %+v", entry, d)
			}
		}
		allow, err := CompileEgress(EgressPolicy{Allow: []string{entry}, Schemes: []string{"http", "https"}})
		if err == nil && exact {
			// An allow entry (which may not be private) allows what it names.
			if v := allow.Check([]Destination{d})[0]; !v.Allowed {
				t.Fatalf("Allow [%q] refuses %+v: %s", entry, d, v.Reason)
			}
		}
		if err != nil && err.Error() == "" {
			t.Fatalf("CompileEgress(Allow [%q]) returned an empty error", entry)
		}
		CompileEgress(EgressPolicy{Allow: []string{entry}, Deny: []string{entry}, AllowPrivate: true, Schemes: []string{entry}})
	})
}
