package argcheck

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"strings"
)

// hostRule confines a URL argument to http(s) and a set of hosts.
//
// Host names are compared lower-cased, without port and without one
// trailing dot. Only ASCII host names are compared: Unicode names are
// refused, because look-alike characters and differing IDNA mappings
// between parsers make a Unicode name unsafe to compare as a string.
// Operators list the punycode ("xn--") form instead.
type hostRule struct {
	exact map[string]struct{}
	// suffixes holds ".example.com" for each "*.example.com".
	suffixes []string
	ips      []netip.Addr
	// deniedMsg is built once: it only names the configured hosts.
	deniedMsg string
}

func newHostRule(hosts []string) (*hostRule, []error) {
	r := &hostRule{
		exact:     map[string]struct{}{},
		deniedMsg: "host is not one of the allowed hosts " + trimList(hosts),
	}
	var errs []error
	for i, h := range hosts {
		if err := r.add(h); err != nil {
			errs = append(errs, fmt.Errorf("url_hosts[%d] %q: %s", i, h, err))
		}
	}
	return r, errs
}

// add parses one configured host and records it.
func (r *hostRule) add(h string) error {
	switch {
	case h == "":
		return errors.New("must not be empty")
	case strings.Contains(h, "://"):
		return errors.New("must be a bare host name without a scheme")
	case strings.ContainsAny(h, "/?#"):
		return errors.New("must be a bare host name without a path")
	case strings.ContainsRune(h, '@'):
		return errors.New("must be a bare host name without user information")
	case strings.ContainsRune(h, '%'):
		return errors.New("must not contain %: percent-escapes and IPv6 zones are not allowed")
	case !isASCII(h):
		return errors.New("must be ASCII: write Unicode host names in their punycode (xn--) form")
	}
	if ip, ok := parseIP(h); ok {
		r.ips = append(r.ips, ip)
		return nil
	}
	if strings.Contains(h, ":") {
		return errors.New("must be a bare host name without a port")
	}
	name := strings.TrimSuffix(strings.ToLower(h), ".")
	if rest, ok := strings.CutPrefix(name, "*."); ok {
		if !isDNSName(rest) {
			return errors.New(`must be a DNS name, "*." followed by a DNS name, or an IP address`)
		}
		r.suffixes = append(r.suffixes, "."+rest)
		return nil
	}
	if !isDNSName(name) {
		return errors.New(`must be a DNS name, "*." followed by a DNS name, or an IP address`)
	}
	r.exact[name] = struct{}{}
	return nil
}

// parseIP parses an IP literal, with or without the brackets of an IPv6
// URL host. Zoned addresses are not IP literals here.
func parseIP(h string) (netip.Addr, bool) {
	if inner, ok := strings.CutPrefix(h, "["); ok {
		h, ok = strings.CutSuffix(inner, "]")
		if !ok {
			return netip.Addr{}, false
		}
	}
	ip, err := netip.ParseAddr(h)
	if err != nil || ip.Zone() != "" {
		return netip.Addr{}, false
	}
	return ip, true
}

// Messages for refused URLs. They explain the rule, never the value.
const (
	msgURLChars    = "must not contain whitespace, control characters or backslashes"
	msgURLParse    = "is not a valid URL"
	msgURLScheme   = "must be an http or https URL"
	msgURLAbs      = "must be an absolute URL with a host"
	msgURLUserinfo = "must not contain user information (user@host)"
	msgURLUnicode  = "host must be ASCII: Unicode host names are refused because look-alike characters and differing IDNA mappings make them unsafe to compare; use the punycode (xn--) form"
	msgURLZone     = "host must not be an IPv6 address with a zone"
	msgURLHostName = "host is not a valid DNS name or IP address"
)

// check returns "" when s is acceptable, else why it is refused.
func (r *hostRule) check(s string) string {
	// Parsers disagree about these (WHATWG strips tabs and newlines and
	// reads "\" as "/"), so refuse them rather than guess which the
	// upstream uses.
	for i := 0; i < len(s); i++ {
		if b := s[i]; b <= ' ' || b == 0x7f || b == '\\' {
			return msgURLChars
		}
	}
	// url.Parse errors quote the input: never pass them on.
	u, err := url.Parse(s)
	if err != nil {
		return msgURLParse
	}
	if u.Scheme != "http" && u.Scheme != "https" { // url.Parse lower-cases the scheme
		return msgURLScheme
	}
	if u.Opaque != "" || u.Host == "" {
		return msgURLAbs
	}
	if u.User != nil {
		return msgURLUserinfo
	}
	host := u.Hostname()
	if !isASCII(host) {
		return msgURLUnicode
	}
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	if ip, ok := parseHostIP(host); ok {
		if ip.Zone() != "" {
			return msgURLZone
		}
		for _, allowed := range r.ips {
			if ip == allowed {
				return ""
			}
		}
		return r.deniedMsg
	}
	// The strict syntax check keeps characters url.Parse tolerates in a
	// host (such as ";" or "!") from reaching the suffix match, where
	// "evil.com;.example.com" would otherwise pass for a subdomain.
	if !isDNSName(host) {
		return msgURLHostName
	}
	if _, ok := r.exact[host]; ok {
		return ""
	}
	for _, suf := range r.suffixes {
		// isDNSName has ruled out empty labels, so a longer host with this
		// suffix is a proper subdomain.
		if len(host) > len(suf) && strings.HasSuffix(host, suf) {
			return ""
		}
	}
	return r.deniedMsg
}

// parseHostIP parses host as an IP address. Only hosts made of hex digits,
// dots and colons (and a zone) are tried, which spares the common DNS name
// the allocation of a parse error.
func parseHostIP(host string) (netip.Addr, bool) {
	if strings.IndexByte(host, ':') < 0 && strings.Trim(host, "0123456789.") != "" {
		return netip.Addr{}, false
	}
	ip, err := netip.ParseAddr(host)
	return ip, err == nil
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// isDNSName reports whether s is a lower-case host name: dot-separated
// labels of letters, digits, '-' and '_', none empty, within DNS lengths.
func isDNSName(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	label := 0
	for i := 0; i < len(s); i++ {
		switch b := s[i]; {
		case b == '.':
			if label == 0 {
				return false
			}
			label = 0
		case 'a' <= b && b <= 'z', '0' <= b && b <= '9', b == '-', b == '_':
			label++
			if label > 63 {
				return false
			}
		default:
			return false
		}
	}
	return label > 0
}
