package inspect

// Egress allow-lists: where the arguments of a tool call send things (URLs, hosts, e-mail
// recipients), and whether the tool's policy lets them go there. Private, loopback,
// link-local and cloud-metadata destinations are refused by default to stop server-side
// request forgery.
//
// The checks come in three strengths. Check decides on the text alone: literal addresses
// in every encoding an SSRF payload uses, and names that can only be private. Resolve also
// resolves host names, through a resolver the caller supplies, and refuses a name if any
// of its addresses is refused. Neither can stop a name that resolves to a public address
// when checked and to a private one when the tool connects (DNS rebinding): DialControl
// does, by checking the address actually connected to, in the dialer of the code that
// connects.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/mail"
	"net/netip"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"unicode/utf8"
)

// Destination kinds, as in [Destination].Kind.
const (
	// DestinationURL is an absolute URL ("https://api.example.com/v1/x").
	DestinationURL = "url"
	// DestinationHost is a host name or address, with an optional port and path
	// ("db.example.com:5432", "10.0.0.5", "example.com/page").
	DestinationHost = "host"
	// DestinationEmail is an e-mail recipient ("ops@example.com").
	DestinationEmail = "email"
	// DestinationLimit marks arguments that [Destinations] could not examine completely:
	// more than [MaxDestinations] destinations, nesting deeper than [MaxDestinationDepth],
	// or a value of a type encoding/json does not produce. Its Value says which; Check
	// always refuses it, so what was not examined is not let through.
	DestinationLimit = "limit"
)

// Bounds of the egress checks.
const (
	// MaxDestinations is the most destinations [Destinations] returns.
	MaxDestinations = 256
	// MaxDestinationDepth is the deepest nesting of objects and arrays [Destinations]
	// examines; the arguments object itself is at depth 1.
	MaxDestinationDepth = 32
	// MaxEgressEntries is the most entries an allow-list or deny-list may have.
	MaxEgressEntries = 4096
	// MaxEgressEntryLen is the longest entry, in bytes.
	MaxEgressEntryLen = 2048
	// egressMaxFreeMail is the longest value, outside an argument named for recipients,
	// that is still examined as a list of e-mail addresses.
	egressMaxFreeMail = 1024
)

// ErrEgressDenied is wrapped by the errors of the function [Egress.DialControl] returns,
// so that callers can tell a refused connection with errors.Is.
var ErrEgressDenied = errors.New("egress denied")

// EgressPolicy is one tool's egress lists. The zero value allows every public destination
// and denies private ones.
//
// # Entries
//
// Allow and Deny entries are written in one of these forms (host names are
// case-insensitive and may end in a dot; non-ASCII names must be given in their punycode
// "xn--" form):
//
//   - "api.example.com": a host name. It matches URLs and hosts with exactly that name,
//     on any port.
//   - "*.example.com": every subdomain of example.com at any depth ("a.example.com",
//     "a.b.example.com"), but not example.com itself, which needs its own entry. The
//     wildcard is only allowed as the whole leftmost label.
//   - "203.0.113.7", "2001:db8::7", "203.0.113.0/24", "2001:db8::/32": an address or a
//     CIDR range (with no host bits set). It matches literal addresses in URLs and hosts,
//     in every notation ("http://3405803783/" is 203.0.113.7), and in [Egress.Resolve]
//     and [Egress.DialControl] the addresses a name resolves to and the address
//     connected to. IPv4 addresses are written in dotted-decimal form.
//   - "@example.com", "@*.example.com": every e-mail recipient at that domain, or at its
//     subdomains.
//   - "ops@example.com": that one e-mail recipient (compared case-insensitively).
//   - "https://api.example.com/v1/": a URL prefix. It matches URLs with the same scheme,
//     host (which may be "*.example.com") and port (the scheme's default port if none is
//     given), whose path, after percent-decoding, removal of "." and ".." segments and of
//     ";" parameters, and with "\" read as "/", lies under the prefix's path: a path ending
//     in "/" matches the paths that begin with it ("https://api.example.com/v1/x" but not
//     ".../v10" nor ".../v1"), a path not ending in "/" matches itself and the paths under
//     it ("/v1" matches "/v1" and "/v1/x", not "/v10"). A URL prefix has no user info,
//     query or fragment.
//
// In Allow, host name, wildcard and address entries allow URLs and hosts; e-mail entries
// allow recipients; URL prefixes allow URLs. In Deny, host name, wildcard and address
// entries also refuse e-mail recipients at that domain (a deny is meant to be broad).
// Host destinations without a scheme ("example.com/page") are never matched by URL
// prefixes.
type EgressPolicy struct {
	// Allow lists the destinations the tool may reach; empty means any (public)
	// destination. An entry cannot make a private address reachable: that takes
	// AllowPrivate, and an Allow entry that can only match private destinations is an
	// error without it.
	Allow []string
	// Deny lists destinations refused even if allowed.
	Deny []string
	// AllowPrivate lets the tool reach private, loopback, link-local and metadata
	// addresses (off by default).
	AllowPrivate bool
	// Schemes lists the URL schemes the tool may use, in lower case; empty means http,
	// https, ws and wss. The schemes of URL prefixes in Allow are allowed as well.
	Schemes []string
}

// Egress is a compiled [EgressPolicy]. It is immutable and safe for concurrent use.
type Egress struct {
	allowPrivate bool
	// allowAny is set when the policy has no Allow entries.
	allowAny bool
	schemes  map[string]bool
	allow    egressList
	deny     egressList
}

// egressList is one compiled list. Each map holds the entry text, for reasons.
type egressList struct {
	names       map[string]string // exact host name
	wild        map[string]string // "*.base" keyed by base
	mailDomains map[string]string
	mailWild    map[string]string // "@*.base" keyed by base
	mailboxes   map[string]string // "local@domain", lower case
	prefixes    []netip.Prefix
	prefixText  []string
	urls        []egressURLEntry
}

// egressURLEntry is a compiled URL prefix.
type egressURLEntry struct {
	text   string
	scheme string
	host   string     // name, or wildcard base when wild
	addr   netip.Addr // when the host is an address
	wild   bool
	port   int // effective port
	path   string
}

var egressDefaultSchemes = []string{"http", "https", "ws", "wss"}

// CompileEgress checks a policy's entries and prepares it. Every invalid entry is
// reported, each naming the list, its index, the entry and why it is invalid.
func CompileEgress(p EgressPolicy) (*Egress, error) {
	e := &Egress{
		allowPrivate: p.AllowPrivate,
		allowAny:     len(p.Allow) == 0,
		schemes:      map[string]bool{},
	}
	var errs []error
	schemes := p.Schemes
	if len(schemes) == 0 {
		schemes = egressDefaultSchemes
	}
	for i, s := range schemes {
		if sc, rest, ok := egressScheme(s + ":"); !ok || rest != "" || sc != s {
			errs = append(errs, fmt.Errorf("schemes[%d] %q: not a lower-case URL scheme", i, s))
			continue
		}
		e.schemes[s] = true
	}
	errs = append(errs, e.allow.compile("allow", p.Allow, !p.AllowPrivate)...)
	errs = append(errs, e.deny.compile("deny", p.Deny, false)...)
	for _, u := range e.allow.urls {
		e.schemes[u.scheme] = true
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return e, nil
}

// compile adds entries to l. When noPrivate is set, an entry that can only match private
// destinations is an error.
func (l *egressList) compile(field string, entries []string, noPrivate bool) []error {
	var errs []error
	if len(entries) > MaxEgressEntries {
		return []error{fmt.Errorf("%s: %d entries, more than the %d allowed", field, len(entries), MaxEgressEntries)}
	}
	for i, raw := range entries {
		if err := l.add(raw, noPrivate); err != nil {
			errs = append(errs, fmt.Errorf("%s[%d] %q: %v", field, i, egressClip(raw), err))
		}
	}
	return errs
}

// egressClip shortens an entry quoted in an error.
func egressClip(s string) string {
	if len(s) <= 80 {
		return s
	}
	i := 77
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i] + "..."
}

func egressSet(m *map[string]string, k, v string) {
	if *m == nil {
		*m = map[string]string{}
	}
	if _, ok := (*m)[k]; !ok {
		(*m)[k] = v
	}
}

// add parses one entry (see [EgressPolicy]) into l.
func (l *egressList) add(raw string, noPrivate bool) error {
	s := strings.TrimSpace(raw)
	switch {
	case s == "":
		return errors.New("empty entry")
	case len(s) > MaxEgressEntryLen:
		return fmt.Errorf("longer than %d bytes", MaxEgressEntryLen)
	case strings.Contains(s, "://"):
		u, err := egressParseURLEntry(s)
		if err != nil {
			return err
		}
		if noPrivate {
			if err := egressPrivateEntry(u.host, u.addr, u.wild); err != nil {
				return err
			}
		}
		u.text = s
		l.urls = append(l.urls, u)
		return nil
	case strings.HasPrefix(s, "@"):
		dom := s[1:]
		wild := strings.HasPrefix(dom, "*.")
		if wild {
			dom = dom[2:]
		}
		h, err := egressEntryName(dom)
		if err != nil {
			return fmt.Errorf("e-mail domain: %v", err)
		}
		if noPrivate {
			if err := egressPrivateEntry(h, netip.Addr{}, wild); err != nil {
				return err
			}
		}
		if wild {
			egressSet(&l.mailWild, h, s)
		} else {
			egressSet(&l.mailDomains, h, s)
		}
		return nil
	case strings.Contains(s, "@"):
		at := strings.LastIndexByte(s, '@')
		local := s[:at]
		if local == "*" {
			return fmt.Errorf("for every recipient at a domain write %q", s[at:])
		}
		if a, err := mail.ParseAddress(s); err != nil || a.Address != s || a.Name != "" || !egressASCII(local) {
			return errors.New("invalid e-mail address: want local@domain, without a display name")
		}
		h, err := egressEntryName(s[at+1:])
		if err != nil {
			return fmt.Errorf("e-mail domain: %v", err)
		}
		if noPrivate {
			if err := egressPrivateEntry(h, netip.Addr{}, false); err != nil {
				return err
			}
		}
		egressSet(&l.mailboxes, egressLower(local)+"@"+h, s)
		return nil
	case strings.HasPrefix(s, "*."):
		h, err := egressEntryName(s[2:])
		if err != nil {
			return fmt.Errorf("wildcard: %v", err)
		}
		if noPrivate {
			if err := egressPrivateEntry(h, netip.Addr{}, true); err != nil {
				return err
			}
		}
		egressSet(&l.wild, h, s)
		return nil
	case strings.Contains(s, "*"):
		return errors.New("a wildcard is only allowed as a leading \"*.\" label")
	case strings.Contains(s, "/"):
		p, err := netip.ParsePrefix(strings.Trim(s, "[]"))
		if err != nil {
			return errors.New("invalid CIDR range")
		}
		if p.Addr().Zone() != "" {
			return errors.New("CIDR range with an IPv6 zone")
		}
		if p != p.Masked() {
			return fmt.Errorf("host bits set: want %s", p.Masked())
		}
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		if noPrivate {
			if kind, ok := egressPrefixPrivate(p); ok {
				return fmt.Errorf("lies in the %s range: allowing it takes AllowPrivate", egressPhrase(kind))
			}
		}
		l.prefixes = append(l.prefixes, p)
		l.prefixText = append(l.prefixText, s)
		return nil
	}
	if a, err := netip.ParseAddr(strings.Trim(s, "[]")); err == nil {
		if a.Zone() != "" {
			return errors.New("address with an IPv6 zone")
		}
		a = a.Unmap()
		if noPrivate {
			if kind, ok := PrivateAddr(a); ok {
				return fmt.Errorf("is a %s address: allowing it takes AllowPrivate", egressPhrase(kind))
			}
		}
		l.prefixes = append(l.prefixes, netip.PrefixFrom(a, a.BitLen()))
		l.prefixText = append(l.prefixText, s)
		return nil
	}
	h, err := egressEntryName(s)
	if err != nil {
		if strings.Contains(s, ":") {
			return fmt.Errorf("%v (for a port write a URL prefix such as \"https://host:8443/\")", err)
		}
		return err
	}
	if noPrivate {
		if err := egressPrivateEntry(h, netip.Addr{}, false); err != nil {
			return err
		}
	}
	egressSet(&l.names, h, s)
	return nil
}

// egressEntryName normalises a host name in an entry; addresses are not names.
func egressEntryName(s string) (string, error) {
	h, a, problem := egressNormHost(s, false, false)
	if problem != "" {
		return "", errors.New(problem)
	}
	if h == "" {
		return "", errors.New("empty host name")
	}
	if a.IsValid() {
		return "", errors.New("not a host name: write IPv4 addresses in dotted-decimal form, without a wildcard or @")
	}
	return h, nil
}

// egressPrivateEntry refuses an Allow entry for a private destination.
func egressPrivateEntry(h string, a netip.Addr, wild bool) error {
	if a.IsValid() {
		if kind, ok := PrivateAddr(a); ok {
			return fmt.Errorf("is a %s address: allowing it takes AllowPrivate", egressPhrase(kind))
		}
		return nil
	}
	probe := h
	if wild {
		probe = "x." + h
	}
	if kind, ok := egressPrivateName(probe); ok {
		return fmt.Errorf("names %s hosts: allowing them takes AllowPrivate", egressPhrase(kind))
	}
	return nil
}

// egressParseURLEntry parses a URL prefix entry.
func egressParseURLEntry(s string) (egressURLEntry, error) {
	var u egressURLEntry
	i := strings.Index(s, "://")
	body := s
	if strings.HasPrefix(s[i+3:], "*.") {
		u.wild = true
		body = s[:i+3] + s[i+5:]
	}
	t := egressParseURL(body)
	switch {
	case t.scheme == "":
		return u, errors.New("URL prefix without a valid scheme")
	case t.problem != "":
		return u, fmt.Errorf("URL prefix: %s", t.problem)
	case t.host == "":
		return u, errors.New("URL prefix without a host")
	case t.hasQuery:
		return u, errors.New("URL prefix with a query or fragment")
	case u.wild && t.addr.IsValid():
		return u, errors.New("wildcard before an address")
	}
	u.scheme, u.host, u.addr = t.scheme, t.host, t.addr
	u.port = egressEffectivePort(t.scheme, t.port)
	u.path = t.path
	return u, nil
}

// Destination is one place an argument sends something.
type Destination struct {
	// Kind is DestinationURL, DestinationHost, DestinationEmail or DestinationLimit.
	Kind string
	// Value is the destination as found: the URL, the host, the e-mail address. For a
	// DestinationLimit it says what was not examined.
	Value string
	// Host is the host part, or the e-mail domain: lower-cased, without a trailing dot,
	// an IP address in its canonical form. A non-ASCII host is lower-cased and left as
	// it is; Check refuses it.
	Host string
	// Path is the path of a URL or host, as found.
	Path string
	// Arg is the argument path where it was found, e.g. "to[0]" or "request.url".
	Arg string
}

// Destinations finds the destinations in decoded JSON arguments (map[string]any, []any,
// string, float64, json.Number, bool and nil, as encoding/json decodes them):
//
//   - any string value that is an absolute URL with a host ("https://...", "ftp://...",
//     "gopher://..."; "file:" URLs and the "http:host" and "http:\\host" forms lenient
//     parsers accept count too, and are refused by Check), after trimming surrounding
//     spaces and removing tabs and line breaks, as WHATWG URL parsers do;
//   - any string value that is wholly a list of e-mail addresses ("a@example.com",
//     "Name <a@example.com>, b@example.org"), and the recipients of "mailto:" URLs;
//   - the values of arguments whose name says they are a destination, even when they
//     are not written as URLs: names ending in url, uri, link, href, endpoint, webhook,
//     website, host or hostname give hosts ("example.com:8080/x") and are examined even
//     when malformed; names ending in domain, server, address, addr, ip, target,
//     destination, proxy, origin, remote, site, peer or upstream give hosts only when
//     the value is a well-formed host with a dot or an address; names ending in to, cc,
//     bcc, recipient(s), email(s), mail, mailto, rcpt, attendee(s) or invitee(s) give
//     e-mail recipients when the value has an "@" (a value that then does not parse is
//     still returned, and refused by Check). Array elements take the name of their array.
//
// Object keys are visited in sorted order, so the result is deterministic. At most
// [MaxDestinations] destinations are returned and [MaxDestinationDepth] levels examined;
// beyond either, and for values of other types, a [DestinationLimit] destination is
// returned in place of what was not examined.
func Destinations(args map[string]any) []Destination {
	w := egressWalker{}
	w.object(args, 1)
	return w.out
}

// egressHint is what an argument's name says about its values.
type egressHint uint8

const (
	egressHintNone egressHint = iota
	egressHintURL             // url, host: always a destination
	egressHintWeak            // domain, address, ...: a destination when well formed
	egressHintMail            // to, cc, recipient: e-mail when it has an "@"
)

var (
	egressURLWords = []string{"url", "urls", "uri", "uris", "link", "links", "href", "endpoint",
		"endpoints", "webhook", "webhooks", "website", "homepage", "host", "hosts", "hostname",
		"hostnames", "fqdn"}
	egressWeakWords = []string{"domain", "domains", "server", "servers", "address", "addresses",
		"addr", "ip", "ips", "ipaddress", "target", "targets", "destination", "destinations",
		"dest", "proxy", "origin", "remote", "site", "peer", "upstream"}
	egressMailWords = []string{"to", "cc", "bcc", "recipient", "recipients", "email", "emails",
		"mail", "mailto", "rcpt", "attendee", "attendees", "invitee", "invitees", "emailaddress",
		"emailaddresses"}
)

// egressKeyHint classifies an argument name by its last word ("callback_url",
// "smtpHost", "notifyEmail", "reply-to").
func egressKeyHint(key string) egressHint {
	prev, last := egressLastWords(key)
	switch {
	case egressWordIn(last, egressMailWords):
		return egressHintMail
	case egressWordIn(prev, egressMailWords) && egressWordIn(last, []string{"address", "addresses", "addr", "list"}):
		return egressHintMail
	case strings.EqualFold(prev, "host") && strings.EqualFold(last, "name"),
		egressWordIn(last, egressURLWords):
		return egressHintURL
	case egressWordIn(last, egressWeakWords):
		return egressHintWeak
	}
	return egressHintNone
}

func egressWordIn(w string, set []string) bool {
	if w == "" {
		return false
	}
	for _, s := range set {
		if strings.EqualFold(w, s) {
			return true
		}
	}
	return false
}

// egressLastWords returns the last two words of a name, split at non-alphanumerics and
// camel-case boundaries ("baseURL" is "base" "URL", "IPAddress" is "IP" "Address").
func egressLastWords(k string) (prev, last string) {
	start := -1
	for i := 0; i <= len(k); i++ {
		if i == len(k) || !egressAlnum(k[i]) {
			if start >= 0 {
				prev, last = last, k[start:i]
				start = -1
			}
			continue
		}
		if start < 0 {
			start = i
			continue
		}
		c, p := k[i], k[i-1]
		// "IPAddress" is "IP" "Address", but "URLs" and "IPs" are one word.
		if egressUpper(c) && (egressLowerC(p) || egressDigit(p) ||
			(egressUpper(p) && i+1 < len(k) && egressLowerC(k[i+1]) &&
				(k[i+1] != 's' || (i+2 < len(k) && egressLowerC(k[i+2]))))) {
			prev, last = last, k[start:i]
			start = i
		}
	}
	return prev, last
}

// egressWalker collects destinations. path is the argument path of the value being
// visited, built in place so that only found destinations allocate one.
type egressWalker struct {
	out  []Destination
	full bool
	path []byte
}

func (w *egressWalker) add(d Destination) {
	if w.full {
		return
	}
	if len(w.out) == MaxDestinations {
		w.out[MaxDestinations-1] = Destination{Kind: DestinationLimit, Arg: d.Arg,
			Value: fmt.Sprintf("more than %d destinations", MaxDestinations)}
		w.full = true
		return
	}
	w.out = append(w.out, d)
}

func (w *egressWalker) limit(why string) {
	w.add(Destination{Kind: DestinationLimit, Value: why, Arg: string(w.path)})
}

func (w *egressWalker) object(m map[string]any, depth int) {
	if depth > MaxDestinationDepth {
		w.limit(fmt.Sprintf("arguments nested deeper than %d levels", MaxDestinationDepth))
		return
	}
	var buf [16]string
	keys := buf[:0]
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if w.full {
			return
		}
		n := len(w.path)
		if n > 0 {
			w.path = append(w.path, '.')
		}
		w.path = append(w.path, k...)
		w.value(m[k], egressKeyHint(k), depth)
		w.path = w.path[:n]
	}
}

func (w *egressWalker) value(v any, hint egressHint, depth int) {
	switch x := v.(type) {
	case nil, bool, float64, float32, int, int64, int32, uint, uint64, uint32, json.Number:
	case string:
		w.str(x, hint)
	case map[string]any:
		w.object(x, depth+1)
	case []any:
		if depth+1 > MaxDestinationDepth {
			w.limit(fmt.Sprintf("arguments nested deeper than %d levels", MaxDestinationDepth))
			return
		}
		for i, e := range x {
			if w.full {
				return
			}
			n := len(w.path)
			w.path = append(w.path, '[')
			w.path = strconv.AppendInt(w.path, int64(i), 10)
			w.path = append(w.path, ']')
			w.value(e, hint, depth+1)
			w.path = w.path[:n]
		}
	case []string:
		for i, e := range x {
			n := len(w.path)
			w.path = append(w.path, '[')
			w.path = strconv.AppendInt(w.path, int64(i), 10)
			w.path = append(w.path, ']')
			w.str(e, hint)
			w.path = w.path[:n]
		}
	default:
		w.limit(fmt.Sprintf("argument of unsupported type %T", v))
	}
}

// str examines one string value.
func (w *egressWalker) str(v string, hint egressHint) {
	t := egressTrim(v)
	if t == "" {
		return
	}
	scheme, rest, ok := egressSchemeOf(t)
	if !ok && hint == egressHintNone && strings.IndexByte(t, '@') < 0 {
		return // plain text: no scheme, no address
	}
	if ok {
		if scheme == "mailto" {
			w.mailto(rest)
			return
		}
		if egressURLish(scheme, rest) {
			p := egressParseURL(t)
			w.add(Destination{Kind: DestinationURL, Value: t, Host: p.host, Path: p.rawPath, Arg: string(w.path)})
			return
		}
	}
	switch hint {
	case egressHintURL:
		p := egressParseHostValue(t)
		w.add(Destination{Kind: DestinationHost, Value: t, Host: p.host, Path: p.rawPath, Arg: string(w.path)})
	case egressHintWeak:
		if strings.IndexByte(t, '@') >= 0 {
			w.mails(t, true)
			return
		}
		p := egressParseHostValue(t)
		// A lone number ("123456789") is an ID more often than an address here.
		if p.problem == "" && p.host != "" && (strings.ContainsAny(t, ".:") || egressIsPrivateName(p.host)) {
			w.add(Destination{Kind: DestinationHost, Value: t, Host: p.host, Path: p.rawPath, Arg: string(w.path)})
		}
	case egressHintMail:
		if strings.IndexByte(t, '@') >= 0 {
			w.mails(t, false)
		}
	default:
		if strings.IndexByte(t, '@') >= 0 && len(t) <= egressMaxFreeMail {
			w.mails(t, true)
		}
	}
}

// egressIsPrivateName reports whether a dotless name is one that is never an ordinary
// word ("localhost", "metadata").
func egressIsPrivateName(h string) bool {
	k, ok := egressPrivateName(h)
	return ok && k != "single-label"
}

// mails adds the recipients of an address list. When strict, the list is only taken
// for one if every address parses and has a domain with a top-level domain; otherwise
// every piece is added, the malformed ones for Check to refuse.
func (w *egressWalker) mails(s string, strict bool) {
	pieces := egressSplitMail(s)
	if strict {
		if len(pieces) == 0 {
			return
		}
		for _, p := range pieces {
			t := egressParseMailbox(p)
			if t.problem != "" || !(t.literal || egressHasTLD(t.host)) {
				return
			}
		}
	}
	for _, p := range pieces {
		t := egressParseMailbox(p)
		val := p
		if t.problem == "" {
			val = t.spec
		}
		w.add(Destination{Kind: DestinationEmail, Value: val, Host: t.host, Arg: string(w.path)})
	}
}

// mailto adds the recipients of a mailto: URL (after the colon): the path and the to,
// cc and bcc header fields.
func (w *egressWalker) mailto(rest string) {
	to, query, _ := strings.Cut(rest, "?")
	query, _, _ = strings.Cut(query, "#")
	if d, err := url.PathUnescape(to); err == nil {
		to = d
	}
	if strings.TrimSpace(to) != "" {
		w.mails(to, false)
	}
	q, _ := url.ParseQuery(query)
	for _, k := range slices.Sorted(maps.Keys(q)) {
		if egressWordIn(k, []string{"to", "cc", "bcc"}) {
			for _, v := range q[k] {
				if strings.TrimSpace(v) != "" {
					w.mails(v, false)
				}
			}
		}
	}
}

// egressSplitMail splits an address list into its addresses ("Name <a@b.c>" stays
// whole). It accepts ";" as well as "," between addresses.
func egressSplitMail(s string) []string {
	if !strings.ContainsAny(s, "\"<>()\\:") {
		// Fast path: bare addresses separated by commas or semicolons.
		var out []string
		simple := true
		for p := range strings.FieldsFuncSeq(s, func(r rune) bool { return r == ',' || r == ';' }) {
			if p = strings.TrimSpace(p); p == "" {
				continue
			}
			if _, _, ok := egressSimpleMailbox(p); !ok {
				simple = false
				break
			}
			out = append(out, p)
		}
		if simple {
			return out
		}
	}
	if list, err := mail.ParseAddressList(s); err == nil {
		out := make([]string, 0, len(list))
		for _, a := range list {
			out = append(out, a.Address)
		}
		return out
	}
	var out []string
	quoted, angle, start := false, 0, 0
	for i := 0; i <= len(s); i++ {
		if i < len(s) {
			switch c := s[i]; {
			case c == '"':
				quoted = !quoted
				continue
			case quoted:
				continue
			case c == '<':
				angle++
				continue
			case c == '>':
				angle = max(0, angle-1)
				continue
			case angle > 0 || (c != ',' && c != ';'):
				continue
			}
		}
		if p := strings.TrimSpace(s[start:i]); p != "" {
			out = append(out, p)
		}
		start = i + 1
	}
	return out
}

// egressHasTLD reports whether a host name ends in a plausible top-level domain.
func egressHasTLD(h string) bool {
	i := strings.LastIndexByte(h, '.')
	if i < 0 {
		return false
	}
	tld := h[i+1:]
	if strings.HasPrefix(tld, "xn--") {
		return true
	}
	if len(tld) < 2 {
		return false
	}
	for j := 0; j < len(tld); j++ {
		if c := tld[j]; c < 'a' || c > 'z' {
			return false
		}
	}
	return true
}

// egressTarget is a destination parsed for checking.
type egressTarget struct {
	scheme   string
	host     string     // normalised host or e-mail domain
	addr     netip.Addr // when host is an address: unmapped, without zone
	port     int        // explicit port, 0 if none
	rawPath  string     // path as found
	path     string     // path for matching (see egressCleanPath)
	hasQuery bool
	literal  bool   // e-mail: the domain is an address literal ("[192.0.2.1]")
	spec     string // e-mail: the address as parsed
	mailbox  string // e-mail: lower-case local@domain
	problem  string // set when malformed: the reason to refuse
}

func (t *egressTarget) fail(problem string) {
	if t.problem == "" {
		t.problem = problem
	}
}

// egressTargetOf parses a destination from its Value (or Host when Value is empty), so
// that Host and Path cannot make it look other than it is. It returns the kind it was
// checked as: a host whose value is a URL is checked as a URL, a URL without a scheme as
// a host.
func egressTargetOf(d Destination) (egressTarget, string) {
	v := d.Value
	if v == "" {
		v = d.Host
	}
	switch d.Kind {
	case DestinationURL, DestinationHost:
		if scheme, rest, ok := egressSchemeOf(egressTrim(v)); ok && egressURLish(scheme, rest) {
			return egressParseURL(v), DestinationURL
		}
		return egressParseHostValue(v), DestinationHost
	case DestinationEmail:
		return egressParseMailbox(v), DestinationEmail
	}
	return egressTarget{}, d.Kind
}

// Verdict is the egress decision on one destination.
type Verdict struct {
	// Destination is the destination decided, with Host normalised.
	Destination Destination
	Allowed     bool
	// Reason says why it was refused ("not on the allow-list", "on the deny-list
	// (entry ...)", "private address 10.0.0.5", "metadata address 169.254.169.254",
	// "resolves to loopback 127.0.0.1", "scheme file not allowed", "user info in URL",
	// ...); empty when allowed.
	Reason string
}

// Check decides every destination without resolving names. Literal addresses, in every
// notation (decimal, octal and hexadecimal IPv4 like http://2130706433/ and
// http://0x7f.1/, IPv4-mapped and NAT64 IPv6 like http://[::ffff:127.0.0.1]/,
// percent-encoded hosts), are checked against the private and metadata ranges; names
// that can only be private ("localhost", "*.localhost", "metadata.google.internal",
// "*.internal", "*.local", single-label names) count as private. A URL with user info, a
// backslash or control character in it, a non-ASCII host or any other ambiguity that
// URL parsers resolve differently is refused. Names are allowed or refused by the lists
// alone: use [Egress.Resolve] to check their addresses.
func (e *Egress) Check(dests []Destination) []Verdict {
	out := make([]Verdict, len(dests))
	for i, d := range dests {
		out[i], _, _, _ = e.decide(d)
	}
	return out
}

// decide checks one destination without resolving it. pending is set when the verdict
// is "not on the allow-list" but the name might still be allowed by the addresses it
// resolves to (the Allow list has address entries).
func (e *Egress) decide(d Destination) (v Verdict, t egressTarget, kind string, pending bool) {
	t, kind = egressTargetOf(d)
	v.Destination = d
	if kind != DestinationLimit {
		v.Destination.Host = t.host
	}
	refuse := func(reason string) (Verdict, egressTarget, string, bool) {
		v.Reason = reason
		return v, t, kind, false
	}
	if e == nil {
		return refuse("no egress policy")
	}
	switch kind {
	case DestinationURL, DestinationHost, DestinationEmail:
	case DestinationLimit:
		if d.Value == "" {
			return refuse("destination limit")
		}
		return refuse(d.Value)
	default:
		return refuse(fmt.Sprintf("unknown destination kind %q", egressClip(d.Kind)))
	}
	if kind == DestinationURL && !e.schemes[t.scheme] {
		return refuse(fmt.Sprintf("scheme %s not allowed", t.scheme))
	}
	if t.problem != "" {
		return refuse(t.problem)
	}
	if t.host == "" {
		if kind == DestinationEmail {
			return refuse("e-mail address without a domain")
		}
		return refuse("no host")
	}
	if entry, ok := e.deny.match(kind, t, true); ok {
		return refuse(fmt.Sprintf("on the deny-list (entry %q)", entry))
	}
	if !e.allowPrivate {
		if t.addr.IsValid() {
			if k, ok := PrivateAddr(t.addr); ok {
				return refuse(egressPhrase(k) + " address " + t.addr.String())
			}
		} else if k, ok := egressPrivateName(t.host); ok {
			return refuse(egressPhrase(k) + " name " + t.host)
		}
	}
	if !e.allowAny {
		if _, ok := e.allow.match(kind, t, false); !ok {
			v.Reason = "not on the allow-list"
			pending = kind != DestinationEmail && !t.addr.IsValid() && len(e.allow.prefixes) > 0
			return v, t, kind, pending
		}
	}
	v.Allowed = true
	return v, t, kind, false
}

// match reports the first entry of l that matches t. broad is set for deny-lists: host
// entries then match e-mail domains too.
func (l *egressList) match(kind string, t egressTarget, broad bool) (string, bool) {
	switch kind {
	case DestinationURL, DestinationHost:
		if kind == DestinationURL {
			for i := range l.urls {
				if l.urls[i].matches(t) {
					return l.urls[i].text, true
				}
			}
		}
		if t.addr.IsValid() {
			return l.matchAddr(t.addr)
		}
		return l.matchName(t.host)
	case DestinationEmail:
		if e, ok := l.mailboxes[t.mailbox]; ok && t.mailbox != "" {
			return e, true
		}
		if !t.addr.IsValid() {
			if e, ok := l.mailDomains[t.host]; ok {
				return e, true
			}
			if e, ok := egressMatchWild(l.mailWild, t.host); ok {
				return e, true
			}
		}
		if broad {
			if t.addr.IsValid() {
				return l.matchAddr(t.addr)
			}
			return l.matchName(t.host)
		}
	}
	return "", false
}

func (l *egressList) matchName(h string) (string, bool) {
	if e, ok := l.names[h]; ok {
		return e, true
	}
	return egressMatchWild(l.wild, h)
}

// egressMatchWild matches h against wildcard bases: "a.b.example.com" against
// "b.example.com", "example.com" and "com".
func egressMatchWild(wild map[string]string, h string) (string, bool) {
	if len(wild) == 0 {
		return "", false
	}
	for i := strings.IndexByte(h, '.'); i >= 0; {
		h = h[i+1:]
		if e, ok := wild[h]; ok {
			return e, true
		}
		i = strings.IndexByte(h, '.')
	}
	return "", false
}

// matchAddr matches an unmapped address; an IPv4 address also matches IPv6 ranges that
// hold its IPv4-mapped form ("::/0").
func (l *egressList) matchAddr(a netip.Addr) (string, bool) {
	var mapped netip.Addr
	if a.Is4() {
		mapped = netip.AddrFrom16(a.As16())
	}
	for i, p := range l.prefixes {
		if p.Contains(a) || (mapped.IsValid() && p.Contains(mapped)) {
			return l.prefixText[i], true
		}
	}
	return "", false
}

func (u *egressURLEntry) matches(t egressTarget) bool {
	if t.scheme != u.scheme {
		return false
	}
	switch {
	case u.addr.IsValid():
		if t.addr != u.addr {
			return false
		}
	case t.addr.IsValid():
		return false
	case u.wild:
		if !strings.HasSuffix(t.host, u.host) || len(t.host) <= len(u.host) || t.host[len(t.host)-len(u.host)-1] != '.' {
			return false
		}
	case t.host != u.host:
		return false
	}
	if egressEffectivePort(t.scheme, t.port) != u.port {
		return false
	}
	return egressPathUnder(t.path, u.path)
}

// egressPathUnder reports whether a cleaned path p lies under a prefix's cleaned path.
func egressPathUnder(p, prefix string) bool {
	if prefix == "/" || p == prefix {
		return true
	}
	if strings.HasSuffix(prefix, "/") {
		return strings.HasPrefix(p, prefix)
	}
	return strings.HasPrefix(p, prefix) && p[len(prefix)] == '/'
}

func egressEffectivePort(scheme string, port int) int {
	if port != 0 {
		return port
	}
	switch scheme {
	case "http", "ws":
		return 80
	case "https", "wss":
		return 443
	case "ftp":
		return 21
	case "gopher":
		return 70
	}
	return 0
}

// Resolver is what [Egress.Resolve] needs; *net.Resolver has it.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// Resolve checks destinations like [Egress.Check] and also resolves the host names of
// URLs and hosts through r: a name is refused if ANY of its addresses is private or
// metadata (unless AllowPrivate) or deny-listed, and a name that does not resolve, or not
// before ctx ends, is refused (fail closed) with the reason. A name not on the allow-list
// by name is allowed if all its addresses are covered by the list's address entries.
// Each name is looked up once per call. E-mail domains are not resolved: mail goes to the
// domain's mail exchangers, which the tool's mail server connects to, not the tool.
//
// The answer holds at the time of the lookup only: a name can resolve differently when
// the tool connects. Use [Egress.DialControl] where the connection is made.
func (e *Egress) Resolve(ctx context.Context, r Resolver, dests []Destination) []Verdict {
	type lookup struct {
		addrs []netip.Addr
		err   error
	}
	cache := map[string]lookup{}
	out := make([]Verdict, len(dests))
	for i, d := range dests {
		v, t, kind, pending := e.decide(d)
		if (kind != DestinationURL && kind != DestinationHost) || t.addr.IsValid() || (!v.Allowed && !pending) {
			out[i] = v
			continue
		}
		l, ok := cache[t.host]
		if !ok {
			switch {
			case r == nil:
				l.err = errors.New("no resolver")
			case ctx.Err() != nil:
				l.err = ctx.Err()
			default:
				l.addrs, l.err = r.LookupNetIP(ctx, "ip", t.host)
			}
			cache[t.host] = l
		}
		out[i] = e.resolved(v, t, l.addrs, l.err, pending)
	}
	return out
}

// resolved completes a verdict with the addresses a name resolved to.
func (e *Egress) resolved(v Verdict, t egressTarget, addrs []netip.Addr, err error, pending bool) Verdict {
	v.Allowed = false
	if err != nil {
		v.Reason = fmt.Sprintf("%s does not resolve: %v", t.host, err)
		return v
	}
	if len(addrs) == 0 {
		v.Reason = t.host + " resolves to no address"
		return v
	}
	covered := true
	for _, a := range addrs {
		if !a.IsValid() {
			v.Reason = "resolves to an invalid address"
			return v
		}
		a = a.Unmap().WithZone("")
		if entry, ok := e.deny.matchAddr(a); ok {
			v.Reason = fmt.Sprintf("resolves to %s, on the deny-list (entry %q)", a, entry)
			return v
		}
		if !e.allowPrivate {
			if k, ok := PrivateAddr(a); ok {
				v.Reason = "resolves to " + egressPhrase(k) + " " + a.String()
				return v
			}
		}
		if pending {
			if _, ok := e.allow.matchAddr(a); !ok {
				covered = false
			}
		}
	}
	if pending && !covered {
		v.Reason = "not on the allow-list"
		return v
	}
	v.Allowed, v.Reason = true, ""
	return v
}

// DialControl returns a function for net.Dialer.ControlContext that refuses connections
// to addresses the policy denies: private, loopback, link-local and metadata addresses
// unless AllowPrivate, and deny-listed addresses and ranges. It checks the address
// actually connected to, after name resolution, so a name that is rebound to a private
// address between the check and the connection is still refused. Its errors wrap
// [ErrEgressDenied]; networks other than TCP and UDP over IP are refused.
//
// It does not apply host-name or URL entries (the dialer only knows the address), and it
// checks the proxy, not the destination, when the connection goes through a proxy.
func (e *Egress) DialControl() func(ctx context.Context, network, address string, c syscall.RawConn) error {
	return func(_ context.Context, network, address string, _ syscall.RawConn) error {
		return e.checkDial(network, address)
	}
}

func (e *Egress) checkDial(network, address string) error {
	if e == nil {
		return fmt.Errorf("dial %s %q: no egress policy: %w", egressClip(network), egressClip(address), ErrEgressDenied)
	}
	switch network {
	case "tcp", "tcp4", "tcp6", "udp", "udp4", "udp6":
	default:
		return fmt.Errorf("dial %s %q: not a TCP or UDP network: %w", egressClip(network), egressClip(address), ErrEgressDenied)
	}
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("dial %s %q: not an address and port: %w", network, egressClip(address), ErrEgressDenied)
	}
	a := ap.Addr().Unmap().WithZone("")
	if entry, ok := e.deny.matchAddr(a); ok {
		return fmt.Errorf("dial %s %s: on the deny-list (entry %q): %w", network, address, entry, ErrEgressDenied)
	}
	if !e.allowPrivate {
		if k, ok := PrivateAddr(a); ok {
			return fmt.Errorf("dial %s %s: %s address: %w", network, address, egressPhrase(k), ErrEgressDenied)
		}
	}
	return nil
}

// egressRange is one private range and its kind.
type egressRange struct {
	p    netip.Prefix
	kind string
}

// egressRanges are the private ranges, most specific first. Documentation ranges
// (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24, 2001:db8::/32) are not private: they
// are not routed, so they reach nothing, and examples and tests use them.
var egressRanges = []egressRange{
	{netip.MustParsePrefix("169.254.169.254/32"), "metadata"}, // AWS, GCP, Azure, OpenStack, ...
	{netip.MustParsePrefix("169.254.170.2/32"), "metadata"},   // AWS ECS task metadata
	{netip.MustParsePrefix("100.100.100.200/32"), "metadata"}, // Alibaba Cloud
	{netip.MustParsePrefix("192.0.0.192/32"), "metadata"},     // Oracle Cloud
	{netip.MustParsePrefix("fd00:ec2::254/128"), "metadata"},  // AWS over IPv6
	{netip.MustParsePrefix("0.0.0.0/8"), "unspecified"},       // "this network"; 0.0.0.0 reaches the local host
	{netip.MustParsePrefix("10.0.0.0/8"), "private"},
	{netip.MustParsePrefix("100.64.0.0/10"), "cgnat"},
	{netip.MustParsePrefix("127.0.0.0/8"), "loopback"},
	{netip.MustParsePrefix("169.254.0.0/16"), "link_local"},
	{netip.MustParsePrefix("172.16.0.0/12"), "private"},
	{netip.MustParsePrefix("192.0.0.0/24"), "reserved"},
	{netip.MustParsePrefix("192.168.0.0/16"), "private"},
	{netip.MustParsePrefix("198.18.0.0/15"), "reserved"}, // benchmarking; also fake-IP proxies
	{netip.MustParsePrefix("224.0.0.0/4"), "multicast"},
	{netip.MustParsePrefix("255.255.255.255/32"), "broadcast"},
	{netip.MustParsePrefix("240.0.0.0/4"), "reserved"},
	{netip.MustParsePrefix("::/128"), "unspecified"},
	{netip.MustParsePrefix("::1/128"), "loopback"},
	{netip.MustParsePrefix("64:ff9b:1::/48"), "private"}, // local-use NAT64
	{netip.MustParsePrefix("100::/64"), "reserved"},      // discard-only
	{netip.MustParsePrefix("fc00::/7"), "private"},       // unique local
	{netip.MustParsePrefix("fe80::/10"), "link_local"},
	{netip.MustParsePrefix("fec0::/10"), "private"}, // deprecated site-local
	{netip.MustParsePrefix("ff00::/8"), "multicast"},
}

// IPv6 ranges that embed an IPv4 address, which is what they reach.
var (
	egressCompat    = netip.MustParsePrefix("::/96")           // IPv4-compatible (deprecated)
	egressSIIT      = netip.MustParsePrefix("::ffff:0:0:0/96") // IPv4-translated
	egressNAT64     = netip.MustParsePrefix("64:ff9b::/96")
	egressSixToFour = netip.MustParsePrefix("2002::/16")
)

// PrivateAddr reports whether an address is one an agent's tool must not reach by
// default, and which kind it is: "loopback", "private" (RFC 1918, IPv6 unique local and
// site-local, local-use NAT64), "link_local", "metadata" (169.254.169.254,
// 169.254.170.2, 100.100.100.200, 192.0.0.192, fd00:ec2::254), "cgnat" (100.64.0.0/10),
// "unspecified" (0.0.0.0/8, ::), "multicast", "broadcast", "reserved" (240.0.0.0/4,
// 192.0.0.0/24, 198.18.0.0/15, 100::/64, IPv4-compatible IPv6) or "invalid" (the zero
// Addr). IPv4-mapped, IPv4-translated, NAT64 (64:ff9b::/96) and 6to4 addresses are judged
// by the IPv4 address they embed. Documentation ranges are not private.
func PrivateAddr(a netip.Addr) (string, bool) {
	if !a.IsValid() {
		return "invalid", true
	}
	a = a.WithZone("").Unmap()
	for _, r := range egressRanges {
		if r.p.Contains(a) {
			return r.kind, true
		}
	}
	if !a.Is6() {
		return "", false
	}
	b := a.As16()
	switch {
	case egressCompat.Contains(a), egressSIIT.Contains(a):
		if k, ok := PrivateAddr(netip.AddrFrom4([4]byte(b[12:16]))); ok {
			return k, true
		}
		if egressCompat.Contains(a) {
			return "reserved", true
		}
	case egressNAT64.Contains(a):
		return PrivateAddr(netip.AddrFrom4([4]byte(b[12:16])))
	case egressSixToFour.Contains(a):
		return PrivateAddr(netip.AddrFrom4([4]byte(b[2:6])))
	}
	return "", false
}

// egressPrefixPrivate reports whether a whole range lies in one private range.
func egressPrefixPrivate(p netip.Prefix) (string, bool) {
	if p.IsSingleIP() {
		return PrivateAddr(p.Addr())
	}
	for _, r := range egressRanges {
		if r.p.Bits() <= p.Bits() && r.p.Contains(p.Addr()) {
			return r.kind, true
		}
	}
	return "", false
}

// egressPrivateNameTLDs are top-level domains that are never delegated in the public
// DNS, so names in them can only be local.
var egressPrivateNameTLDs = []string{"internal", "local", "localdomain", "lan", "intranet",
	"corp", "home", "private", "test", "invalid"}

// egressMetadataNames are the names of cloud metadata services.
var egressMetadataNames = []string{"metadata.google.internal", "metadata.goog", "metadata",
	"instance-data", "instance-data.ec2.internal"}

// egressPrivateName reports whether a normalised host name can only be private.
func egressPrivateName(h string) (string, bool) {
	switch {
	case h == "localhost" || strings.HasSuffix(h, ".localhost"):
		return "loopback", true
	case slices.Contains(egressMetadataNames, h):
		return "metadata", true
	case strings.IndexByte(h, '.') < 0:
		return "single-label", true
	case h == "home.arpa" || strings.HasSuffix(h, ".home.arpa"):
		return "private", true
	}
	if slices.Contains(egressPrivateNameTLDs, h[strings.LastIndexByte(h, '.')+1:]) {
		return "private", true
	}
	return "", false
}

// egressPhrase turns a kind from PrivateAddr or egressPrivateName into words.
func egressPhrase(kind string) string {
	switch kind {
	case "link_local":
		return "link-local"
	case "cgnat":
		return "shared (CGNAT)"
	}
	return kind
}

// egressScheme splits "scheme:rest" and lower-cases the scheme.
func egressScheme(s string) (scheme, rest string, ok bool) {
	for i := 0; i < len(s) && i <= 32; i++ {
		c := s[i]
		switch {
		case egressUpper(c) || egressLowerC(c):
		case i > 0 && (egressDigit(c) || c == '+' || c == '-' || c == '.'):
		case i > 0 && c == ':':
			return egressLower(s[:i]), s[i+1:], true
		default:
			return "", "", false
		}
	}
	return "", "", false
}

// egressSpecial reports the schemes WHATWG parsers treat specially: they accept any
// number of slashes and backslashes after the colon, and end the host at a backslash.
func egressSpecial(scheme string) bool {
	switch scheme {
	case "http", "https", "ws", "wss", "ftp", "file":
		return true
	}
	return false
}

// egressURLish reports whether "scheme:rest" is a URL with (or claiming) a host rather
// than text like "Note: ..." or "localhost:8080".
func egressURLish(scheme, rest string) bool {
	// The first two characters, ignoring tabs and line breaks as WHATWG parsers do.
	var first [2]byte
	n := 0
	for i := 0; i < len(rest) && n < 2; i++ {
		if c := rest[i]; c != '\t' && c != '\n' && c != '\r' {
			first[n] = c
			n++
		}
	}
	switch {
	case n == 2 && first[0] == '/' && first[1] == '/':
		return true
	case !egressSpecial(scheme) || n == 0:
		return false
	}
	return first[0] == '/' || first[0] == '\\' || !strings.ContainsAny(rest, " \u00a0")
}

// egressSchemeOf is egressScheme for a value whose tabs and line breaks have not been
// removed: it ignores them in the scheme, as WHATWG parsers do, without copying the
// value. The rest is returned as it is.
func egressSchemeOf(t string) (scheme, rest string, ok bool) {
	colon := strings.IndexByte(t[:min(len(t), 1024)], ':')
	if colon <= 0 {
		return "", "", false
	}
	n, tabs := 0, false
	for i := 0; i < colon; i++ {
		c := t[i]
		switch {
		case c == '\t' || c == '\n' || c == '\r':
			tabs = true
			continue
		case egressUpper(c) || egressLowerC(c):
		case n > 0 && (egressDigit(c) || c == '+' || c == '-' || c == '.'):
		default:
			return "", "", false
		}
		n++
		if n > 32 {
			return "", "", false
		}
	}
	if n == 0 {
		return "", "", false
	}
	scheme = t[:colon]
	if tabs {
		scheme, _ = egressDropTabs(scheme)
	}
	return egressLower(scheme), t[colon+1:], true
}

// egressTrim removes leading and trailing C0 controls and spaces, as URL parsers do.
func egressTrim(s string) string {
	i, j := 0, len(s)
	for i < j && s[i] <= ' ' {
		i++
	}
	for j > i && s[j-1] <= ' ' {
		j--
	}
	return s[i:j]
}

// egressDropTabs removes tabs and line breaks (as WHATWG URL parsers do) and reports
// whether s had any control character.
func egressDropTabs(s string) (string, bool) {
	ctl := false
	for i := 0; i < len(s); i++ {
		if s[i] < ' ' || s[i] == 0x7f {
			ctl = true
			break
		}
	}
	if !ctl {
		return s, false
	}
	return strings.Map(func(r rune) rune {
		if r == '\t' || r == '\n' || r == '\r' {
			return -1
		}
		return r
	}, s), true
}

// egressParseURL parses an absolute URL the way the most lenient parsers would, and
// records as a problem anything that parsers disagree on.
func egressParseURL(v string) egressTarget {
	var t egressTarget
	s, ctl := egressDropTabs(egressTrim(v))
	if ctl {
		t.fail("control character in URL")
	}
	scheme, rest, ok := egressScheme(s)
	if !ok {
		t.fail("not an absolute URL")
		return t
	}
	t.scheme = scheme
	special := egressSpecial(scheme)
	if special {
		n := 0
		for n < len(rest) && (rest[n] == '/' || rest[n] == '\\') {
			n++
		}
		if scheme == "file" && n != 2 {
			// file:/path and file:///path have no host.
			t.rawPath = "/" + rest[n:]
			t.path = egressCleanPath(t.rawPath)
			return t
		}
		if rest[:n] != "//" {
			t.fail("malformed URL: want " + scheme + "://host")
		}
		rest = rest[n:]
	} else if strings.HasPrefix(rest, "//") {
		rest = rest[2:]
	} else {
		t.fail("URL without a host")
		return t
	}
	egressParseAuthority(&t, rest, special)
	return t
}

// egressParseHostValue parses a host as an argument gives it: "example.com",
// "example.com:8443", "10.0.0.5", "[::1]:80", "::1", "example.com/path".
func egressParseHostValue(v string) egressTarget {
	var t egressTarget
	s, ctl := egressDropTabs(egressTrim(v))
	if ctl {
		t.fail("control character in host")
	}
	if h, p, _ := strings.Cut(s, "/"); strings.Count(h, ":") >= 2 && !strings.ContainsAny(h, "[]") {
		// An IPv6 address without brackets, perhaps with a zone or a prefix length.
		if i := strings.IndexByte(h, '%'); i >= 0 {
			h = h[:i]
		}
		a, err := netip.ParseAddr(h)
		if err != nil {
			t.host = egressLower(h)
			t.fail("invalid IPv6 address")
			return t
		}
		t.addr = a.Unmap()
		t.host = t.addr.String()
		if len(h) < len(s) {
			t.rawPath = "/" + p
		}
		t.path = egressCleanPath(t.rawPath)
		return t
	}
	s = strings.TrimPrefix(s, "//")
	egressParseAuthority(&t, s, true)
	return t
}

// egressParseAuthority parses "[userinfo@]host[:port][/path][?query][#fragment]".
func egressParseAuthority(t *egressTarget, rest string, special bool) {
	end := strings.IndexAny(rest, "/?#")
	if end < 0 {
		end = len(rest)
	}
	if special && strings.IndexByte(rest[:end], '\\') >= 0 {
		// WHATWG parsers end the host at the backslash, others do not.
		t.fail("backslash in URL authority")
	}
	if w := strings.IndexAny(rest[:end], " \u00a0"); w >= 0 {
		// The host ends at a space ("https://example.com is down"), but user info
		// after it is read differently by different parsers
		// ("http://1.1.1.1 &@2.2.2.2# @3.3.3.3/").
		if strings.IndexByte(rest[w:end], '@') >= 0 {
			t.fail("user info in URL")
		}
		end = w
	}
	auth, remainder := rest[:end], rest[end:]
	if at := strings.LastIndexByte(auth, '@'); at >= 0 {
		t.fail("user info in URL")
		auth = auth[at+1:]
	}
	host, port, bracketed, problem := egressSplitHostPort(auth)
	if problem != "" {
		t.fail(problem)
	}
	p, problem := egressPort(port)
	if problem != "" {
		t.fail(problem)
	}
	t.port = p
	h, a, problem := egressNormHost(host, bracketed, true)
	t.host, t.addr = h, a
	if problem != "" {
		t.fail(problem)
	}
	q := strings.IndexAny(remainder, "?#")
	if q >= 0 {
		t.hasQuery = true
		remainder = remainder[:q]
	}
	t.rawPath = remainder
	t.path = egressCleanPath(remainder)
}

func egressSplitHostPort(auth string) (host, port string, bracketed bool, problem string) {
	if strings.HasPrefix(auth, "[") {
		j := strings.IndexByte(auth, ']')
		if j < 0 {
			return auth[1:], "", true, "unclosed [ in host"
		}
		host, after := auth[1:j], auth[j+1:]
		if after == "" {
			return host, "", true, ""
		}
		if after[0] != ':' {
			return host, "", true, "invalid characters after IPv6 address"
		}
		return host, after[1:], true, ""
	}
	if i := strings.LastIndexByte(auth, ':'); i >= 0 {
		return auth[:i], auth[i+1:], false, ""
	}
	return auth, "", false, ""
}

// egressPort parses a port; "" is no port.
func egressPort(s string) (int, string) {
	if s == "" {
		return 0, ""
	}
	n := 0
	for i := 0; i < len(s); i++ {
		if !egressDigit(s[i]) {
			return 0, fmt.Sprintf("invalid port %q", egressClip(s))
		}
		n = n*10 + int(s[i]-'0')
		if n > 65535 {
			return 0, fmt.Sprintf("invalid port %q", egressClip(s))
		}
	}
	if n == 0 {
		return 0, "invalid port 0"
	}
	return n, ""
}

// egressNormHost normalises a host: percent-decoded (when percent is set, as WHATWG URL
// parsers do), lower-cased, without a trailing dot; a host whose last label is a number
// is an IPv4 address in one of the notations inet_aton accepts ("2130706433", "0x7f.1",
// "0177.0.0.1", "127.1").
func egressNormHost(h string, bracketed, percent bool) (string, netip.Addr, string) {
	if bracketed {
		if i := strings.IndexByte(h, '%'); i >= 0 {
			h = h[:i] // zone, "%25eth0" in URLs
		}
		a, err := netip.ParseAddr(h)
		if err != nil || !a.Is6() {
			return egressLower(h), netip.Addr{}, "invalid IPv6 address"
		}
		a = a.Unmap()
		return a.String(), a, ""
	}
	if percent && strings.IndexByte(h, '%') >= 0 {
		d, err := url.PathUnescape(h)
		if err != nil {
			return egressLower(h), netip.Addr{}, "invalid percent-encoding in host"
		}
		h = d
	}
	if !egressASCII(h) {
		return strings.ToLower(h), netip.Addr{}, "non-ASCII host name (give its punycode xn-- form)"
	}
	h = egressLower(h)
	h = strings.TrimSuffix(h, ".")
	if h == "" {
		return "", netip.Addr{}, ""
	}
	last := h[strings.LastIndexByte(h, '.')+1:]
	if egressNumericLabel(last) {
		a, ok := egressParseIPv4(h)
		if !ok {
			return h, netip.Addr{}, "invalid IPv4 address"
		}
		return a.String(), a, ""
	}
	if len(h) > 253 {
		return h, netip.Addr{}, "host name longer than 253 bytes"
	}
	label := 0
	for i := 0; i < len(h); i++ {
		c := h[i]
		switch {
		case c == '.':
			if label == 0 {
				return h, netip.Addr{}, "invalid host name (empty label)"
			}
			label = 0
			continue
		case egressLowerC(c) || egressDigit(c) || c == '-' || c == '_':
		default:
			return h, netip.Addr{}, fmt.Sprintf("invalid host name (character %q)", c)
		}
		label++
		if label > 63 {
			return h, netip.Addr{}, "invalid host name (label longer than 63 bytes)"
		}
	}
	if label == 0 {
		return h, netip.Addr{}, "invalid host name (empty label)"
	}
	return h, netip.Addr{}, ""
}

// egressNumericLabel reports whether a label is a number to a WHATWG or inet_aton parser:
// decimal digits, or "0x" and hexadecimal digits.
func egressNumericLabel(s string) bool {
	if s == "" {
		return false
	}
	if len(s) >= 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X') {
		for i := 2; i < len(s); i++ {
			if !egressHex(s[i]) {
				return false
			}
		}
		return true
	}
	for i := 0; i < len(s); i++ {
		if !egressDigit(s[i]) {
			return false
		}
	}
	return true
}

// egressParseIPv4 parses the one to four dotted numbers of inet_aton and WHATWG URL
// parsers, each decimal, octal (leading 0) or hexadecimal (0x); the last fills the
// remaining bytes.
func egressParseIPv4(h string) (netip.Addr, bool) {
	var parts [4]uint64
	n := 0
	for s := range strings.SplitSeq(h, ".") {
		if n == 4 {
			return netip.Addr{}, false
		}
		v, ok := egressIPv4Part(s)
		if !ok {
			return netip.Addr{}, false
		}
		parts[n] = v
		n++
	}
	var ip uint64
	for i := 0; i < n-1; i++ {
		if parts[i] > 255 {
			return netip.Addr{}, false
		}
		ip |= parts[i] << (8 * (3 - i))
	}
	if parts[n-1] >= 1<<(8*(5-n)) {
		return netip.Addr{}, false
	}
	ip |= parts[n-1]
	return netip.AddrFrom4([4]byte{byte(ip >> 24), byte(ip >> 16), byte(ip >> 8), byte(ip)}), true
}

func egressIPv4Part(s string) (uint64, bool) {
	if s == "" {
		return 0, false
	}
	base, digits := uint64(10), s
	switch {
	case len(s) >= 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X'):
		base, digits = 16, s[2:]
	case len(s) >= 2 && s[0] == '0':
		base, digits = 8, s[1:]
	}
	var v uint64
	for i := 0; i < len(digits); i++ {
		c := digits[i]
		var d uint64
		switch {
		case egressDigit(c):
			d = uint64(c - '0')
		case c >= 'a' && c <= 'f':
			d = uint64(c-'a') + 10
		case c >= 'A' && c <= 'F':
			d = uint64(c-'A') + 10
		default:
			return 0, false
		}
		if d >= base {
			return 0, false
		}
		v = v*base + d
		if v > 0xffffffff {
			return 0, false
		}
	}
	return v, true
}

// egressCleanPath prepares a URL path for prefix matching: percent-decoded, "\" read as
// "/", ";" parameters dropped from each segment, "." and ".." segments removed, a
// trailing "/" kept.
func egressCleanPath(p string) string {
	if p == "" {
		return "/"
	}
	if p[0] == '/' && !strings.Contains(p, "/.") && !strings.Contains(p, "//") && !strings.ContainsAny(p, "%\\;") {
		return p // already clean
	}
	if strings.IndexByte(p, '%') >= 0 {
		if d, err := url.PathUnescape(p); err == nil {
			p = d
		}
	}
	p = strings.ReplaceAll(p, "\\", "/")
	if strings.IndexByte(p, ';') >= 0 {
		segs := strings.Split(p, "/")
		for i, s := range segs {
			segs[i], _, _ = strings.Cut(s, ";")
		}
		p = strings.Join(segs, "/")
	}
	trailing := strings.HasSuffix(p, "/") || strings.HasSuffix(p, "/.") || strings.HasSuffix(p, "/..") || p == "." || p == ".."
	c := path.Clean("/" + p)
	if trailing && c != "/" {
		c += "/"
	}
	return c
}

// egressParseMailbox parses one e-mail address ("a@example.com", "Name <a@example.com>",
// "a@[192.0.2.1]").
func egressParseMailbox(v string) egressTarget {
	var t egressTarget
	s := strings.TrimSpace(v)
	spec := s
	var a *mail.Address
	var err error
	if _, _, ok := egressSimpleMailbox(s); ok {
		a = &mail.Address{Address: s}
	} else {
		a, err = mail.ParseAddress(s)
	}
	if err != nil {
		// net/mail refuses a domain with a trailing dot, which DNS allows.
		if t, ok := strings.CutSuffix(s, "."); ok {
			a, err = mail.ParseAddress(t)
		} else if t, ok := strings.CutSuffix(s, ".>"); ok {
			a, err = mail.ParseAddress(t + ">")
		}
	}
	if err == nil {
		spec = a.Address
	} else {
		t.fail("invalid e-mail address")
		if i, j := strings.LastIndexByte(s, '<'), strings.LastIndexByte(s, '>'); i >= 0 && j > i {
			spec = s[i+1 : j]
		}
	}
	t.spec = spec
	at := strings.LastIndexByte(spec, '@')
	if at <= 0 {
		t.fail("invalid e-mail address")
		return t
	}
	local, dom := spec[:at], spec[at+1:]
	if strings.HasPrefix(dom, "[") && strings.HasSuffix(dom, "]") {
		lit := dom[1 : len(dom)-1]
		if len(lit) > 5 && strings.EqualFold(lit[:5], "ipv6:") {
			lit = lit[5:]
		}
		a, err := netip.ParseAddr(lit)
		if err != nil || a.Zone() != "" {
			t.host = egressLower(dom)
			t.fail("invalid address literal in e-mail domain")
			return t
		}
		t.addr = a.Unmap()
		t.host = t.addr.String()
		t.literal = true
	} else {
		h, a, problem := egressNormHost(dom, false, false)
		t.host, t.addr = h, a
		if problem != "" {
			t.fail(problem)
		}
	}
	t.mailbox = strings.ToLower(local) + "@" + t.host
	return t
}

// egressSimpleMailbox recognises the common "local@domain" with a dot-atom local part
// and a plain domain, which net/mail would parse the same, without its cost.
func egressSimpleMailbox(s string) (local, domain string, ok bool) {
	at := strings.IndexByte(s, '@')
	if at <= 0 || at == len(s)-1 {
		return "", "", false
	}
	local, domain = s[:at], s[at+1:]
	if local[0] == '.' || local[len(local)-1] == '.' || strings.Contains(local, "..") {
		return "", "", false
	}
	for i := 0; i < len(local); i++ {
		if c := local[i]; !egressAlnum(c) && strings.IndexByte(".!#$%&'*+-/=?^_`{|}~", c) < 0 {
			return "", "", false
		}
	}
	if domain[0] == '.' || domain[len(domain)-1] == '.' || strings.Contains(domain, "..") {
		return "", "", false
	}
	for i := 0; i < len(domain); i++ {
		if c := domain[i]; !egressAlnum(c) && c != '-' && c != '.' {
			return "", "", false
		}
	}
	return local, domain, true
}

func egressASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// egressLower lower-cases ASCII letters, without allocating when there are none.
func egressLower(s string) string {
	for i := 0; i < len(s); i++ {
		if egressUpper(s[i]) {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if egressUpper(b[j]) {
					b[j] += 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}

func egressUpper(c byte) bool  { return c >= 'A' && c <= 'Z' }
func egressLowerC(c byte) bool { return c >= 'a' && c <= 'z' }
func egressDigit(c byte) bool  { return c >= '0' && c <= '9' }
func egressHex(c byte) bool {
	return egressDigit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}
func egressAlnum(c byte) bool { return egressUpper(c) || egressLowerC(c) || egressDigit(c) }
