package egress

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/chaperone-dev/chaperone/internal/inspect"
)

// Bounds of the allow-list.
const (
	// MaxRules is the most rules [Options].Rules may hold.
	MaxRules = 1024
	// MaxRuleAgents is the most agent ids one rule may name.
	MaxRuleAgents = 1024
	// MaxRuleMethods is the most methods one rule may list.
	MaxRuleMethods = 32
	// MaxRulePorts is the most ports one rule may list.
	MaxRulePorts = 1024
	// maxIDLen bounds an agent id or rule name.
	maxIDLen = 256
	// maxMethodLen bounds a method name.
	maxMethodLen = 32
)

// Rule allows some agents to reach some hosts with some methods on some ports. A request
// is allowed when ONE rule that applies to its agent allows its host, its method and its
// port together: the rules of an agent are a union of rules, not of their lists, so a
// rule allowing GET on one host and another allowing POST on a second host never allow
// POST on the first.
type Rule struct {
	// Name labels the rule in [Request].Rule and in errors; empty means "rules[i]", its
	// index. Names are unique.
	Name string
	// Agents lists the agent ids this rule applies to; "*" applies it to every agent.
	Agents []string
	// Hosts lists the hosts the rule allows, as [inspect.EgressPolicy] entries:
	// "api.example.com", "*.example.com" (subdomains at any depth, not example.com
	// itself), an address ("203.0.113.7", "2001:db8::7") or a CIDR range
	// ("203.0.113.0/24"). "*" alone allows every host. An address or range matches only
	// requests that give the address literally: a host name is matched by its name alone,
	// and a name no rule lists is refused without being looked up, so the proxy cannot
	// be made to query DNS for arbitrary names (a channel to leak data through). URL
	// prefixes and e-mail entries are errors here.
	//
	// Being listed never makes a private, loopback, link-local or metadata address
	// reachable: that takes [Options].AllowPrivate, which is checked on every address a
	// name resolves to. Listing a private address or range that AllowPrivate does not
	// cover is an error, since it could never be reached.
	Hosts []string
	// Methods lists the upper-case HTTP methods allowed on plain-HTTP requests; empty
	// means GET and HEAD. CONNECT may not be listed: a tunnel is allowed when the rule
	// allows its host and port, whatever Methods say, because the proxy does not see
	// inside a tunnel. Tunnels to port 80 are always refused, so that plain HTTP is sent
	// to the proxy in absolute form, where methods are checked and credentials injected.
	Methods []string
	// Ports lists the destination ports allowed; empty means 80 and 443.
	Ports []int
}

// compiledRule is a checked [Rule].
type compiledRule struct {
	name    string
	anyHost bool
	hosts   *inspect.Egress
	methods []string
	ports   map[int]bool
}

// ruleSet is the compiled allow-list, immutable after compileRules.
type ruleSet struct {
	byAgent map[string][]*compiledRule
	every   []*compiledRule // rules naming "*"
}

var defaultMethods = []string{"GET", "HEAD"}

// compileRules checks every rule and reports every problem at once, each naming the rule,
// the field, the index and the bound or form it broke.
func compileRules(rules []Rule, allowPrivate []netip.Prefix) (*ruleSet, error) {
	if len(rules) > MaxRules {
		return nil, fmt.Errorf("rules: %d rules, more than the %d allowed", len(rules), MaxRules)
	}
	s := &ruleSet{byAgent: map[string][]*compiledRule{}}
	var errs []error
	names := map[string]int{}
	for i, r := range rules {
		label := fmt.Sprintf("rules[%d]", i)
		name := r.Name
		if name == "" {
			name = label
		} else {
			label = fmt.Sprintf("rules[%d] (%q)", i, clip(r.Name, 64))
			if problem := idProblem(r.Name); problem != "" {
				errs = append(errs, fmt.Errorf("%s: name: %s", label, problem))
			} else if j, dup := names[r.Name]; dup {
				errs = append(errs, fmt.Errorf("%s: name also used by rules[%d]", label, j))
			}
			names[r.Name] = i
		}
		c, rerrs := compileRule(r, allowPrivate)
		for _, err := range rerrs {
			errs = append(errs, fmt.Errorf("%s: %w", label, err))
		}
		if len(rerrs) > 0 {
			continue
		}
		c.name = name
		for _, a := range uniq(r.Agents) {
			if a == "*" {
				s.every = append(s.every, c)
			} else {
				s.byAgent[a] = append(s.byAgent[a], c)
			}
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return s, nil
}

// compileRule checks one rule.
func compileRule(r Rule, allowPrivate []netip.Prefix) (*compiledRule, []error) {
	var errs []error
	c := &compiledRule{ports: map[int]bool{}}

	switch {
	case len(r.Agents) == 0:
		errs = append(errs, errors.New(`agents: empty: name agent ids, or "*" for every agent`))
	case len(r.Agents) > MaxRuleAgents:
		errs = append(errs, fmt.Errorf("agents: %d ids, more than the %d allowed", len(r.Agents), MaxRuleAgents))
	default:
		for i, a := range r.Agents {
			if problem := idProblem(a); problem != "" {
				errs = append(errs, fmt.Errorf("agents[%d] %q: %s", i, clip(a, 64), problem))
			}
		}
	}

	var entries []string
	switch {
	case len(r.Hosts) == 0:
		errs = append(errs, errors.New(`hosts: empty: list the hosts the rule allows, or "*" for every host`))
	case len(r.Hosts) > inspect.MaxEgressEntries:
		errs = append(errs, fmt.Errorf("hosts: %d entries, more than the %d allowed", len(r.Hosts), inspect.MaxEgressEntries))
	default:
		for i, h := range r.Hosts {
			e := strings.TrimSpace(h)
			if e == "*" {
				c.anyHost = true
				continue
			}
			if err := checkHostEntry(e, allowPrivate); err != nil {
				errs = append(errs, fmt.Errorf("hosts[%d] %q: %w", i, clip(h, 64), err))
				continue
			}
			entries = append(entries, e)
		}
	}
	if !c.anyHost && len(entries) > 0 {
		// Addresses are vetted by the proxy against AllowPrivate, so the list itself
		// allows private entries; checkHostEntry already refused the unreachable ones.
		e, err := inspect.CompileEgress(inspect.EgressPolicy{Allow: entries, AllowPrivate: true})
		if err != nil {
			errs = append(errs, fmt.Errorf("hosts: %w", err))
		}
		c.hosts = e
	}

	methods := r.Methods
	if len(methods) == 0 {
		methods = defaultMethods
	}
	if len(methods) > MaxRuleMethods {
		errs = append(errs, fmt.Errorf("methods: %d methods, more than the %d allowed", len(methods), MaxRuleMethods))
	} else {
		for i, m := range methods {
			if problem := methodProblem(m); problem != "" {
				errs = append(errs, fmt.Errorf("methods[%d] %q: %s", i, clip(m, 32), problem))
				continue
			}
			if !slices.Contains(c.methods, m) {
				c.methods = append(c.methods, m)
			}
		}
	}

	ports := r.Ports
	if len(ports) == 0 {
		ports = []int{80, 443}
	}
	if len(ports) > MaxRulePorts {
		errs = append(errs, fmt.Errorf("ports: %d ports, more than the %d allowed", len(ports), MaxRulePorts))
	} else {
		for i, p := range ports {
			if p < 1 || p > 65535 {
				errs = append(errs, fmt.Errorf("ports[%d] %d: not between 1 and 65535", i, p))
				continue
			}
			c.ports[p] = true
		}
	}
	return c, errs
}

// checkHostEntry refuses entries that have no meaning for an HTTP proxy, and private
// addresses and ranges that AllowPrivate does not let the proxy reach. The rest is
// checked by [inspect.CompileEgress].
func checkHostEntry(e string, allowPrivate []netip.Prefix) error {
	switch {
	case e == "":
		return errors.New("empty entry")
	case strings.Contains(e, "://"):
		return errors.New("URL prefixes are not supported here: list the host and set the rule's ports")
	case strings.Contains(e, "@"):
		return errors.New("e-mail entries do not apply to web requests")
	}
	lit := strings.Trim(e, "[]")
	_, aerr := netip.ParseAddr(lit)
	_, perr := netip.ParsePrefix(lit)
	if strings.Contains(e, ":") && aerr != nil && perr != nil {
		return errors.New("a port in a host entry: list the host and set the rule's ports")
	}
	if _, err := inspect.CompileEgress(inspect.EgressPolicy{Allow: []string{e}, AllowPrivate: true}); err != nil {
		return unwrapEntryError(e, err)
	}
	var p netip.Prefix
	if a, err := netip.ParseAddr(lit); err == nil {
		a = a.Unmap()
		p = netip.PrefixFrom(a, a.BitLen())
	} else if q, err := netip.ParsePrefix(lit); err == nil {
		p = q
	} else {
		return nil // a host name: its addresses are vetted when it is resolved
	}
	kind, private := inspect.PrivateAddr(p.Addr())
	if !private {
		return nil
	}
	if lastKind, _ := inspect.PrivateAddr(lastAddr(p)); lastKind != kind {
		return nil // the range is not wholly private: its public part is reachable
	}
	for _, ap := range allowPrivate {
		if ap.Overlaps(p) {
			return nil
		}
	}
	what := "address"
	if !p.IsSingleIP() {
		what = "range"
	}
	return fmt.Errorf("%s %s %s, unreachable unless AllowPrivate covers it", article(phrase(kind)), phrase(kind), what)
}

// lastAddr is the last address of a prefix.
func lastAddr(p netip.Prefix) netip.Addr {
	p = p.Masked()
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// article is "a" or "an" for a word.
func article(w string) string {
	if w != "" && strings.IndexByte("aeiou", w[0]) >= 0 {
		return "an"
	}
	return "a"
}

// unwrapEntryError drops the `allow[0] "entry": ` prefix [inspect.CompileEgress] puts on
// the error of a one-entry list, since the caller names the entry by its own index. It
// only shapes the message; nothing branches on it.
func unwrapEntryError(entry string, err error) error {
	if rest, ok := strings.CutPrefix(err.Error(), fmt.Sprintf("allow[0] %q: ", entry)); ok {
		return errors.New(rest)
	}
	return err
}

// idProblem says what is wrong with an agent id or rule name, or "".
func idProblem(s string) string {
	switch {
	case s == "":
		return "empty"
	case len(s) > maxIDLen:
		return fmt.Sprintf("longer than %d bytes", maxIDLen)
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] == 0x7f {
			return "contains a space or control character"
		}
	}
	return ""
}

// methodProblem says what is wrong with a method in a rule, or "".
func methodProblem(m string) string {
	switch {
	case m == "":
		return "empty"
	case len(m) > maxMethodLen:
		return fmt.Sprintf("longer than %d bytes", maxMethodLen)
	case m == "CONNECT":
		return "CONNECT is allowed by the rule's hosts and ports, not listed as a method"
	}
	for i := 0; i < len(m); i++ {
		c := m[i]
		if !(c >= 'A' && c <= 'Z') && c != '-' && c != '_' {
			return "not an upper-case method name"
		}
	}
	return ""
}

// denial is why the allow-list refused a request: a sentence for the agent and a reason
// for the audit log.
type denial struct {
	message, reason string
}

// check finds the first rule applying to agent that allows the target. It returns the
// rule's name, or why no rule allows it.
func (s *ruleSet) check(agent string, t *target, method string) (string, *denial) {
	if t.connect && t.port == 80 {
		return "", &denial{
			message: "Tunnels to port 80 are refused: send plain HTTP requests to the proxy in absolute form.",
			reason:  "CONNECT to port 80",
		}
	}
	hostOK, methodOK := false, false
	for _, rules := range [2][]*compiledRule{s.byAgent[agent], s.every} {
		for _, r := range rules {
			if !r.allowsHost(t) {
				continue
			}
			hostOK = true
			if !t.connect && !slices.Contains(r.methods, method) {
				continue
			}
			methodOK = true
			if !r.ports[t.port] {
				continue
			}
			return r.name, nil
		}
	}
	host := t.hostPort()
	switch {
	case !hostOK:
		return "", &denial{
			message: fmt.Sprintf("%s is not on this agent's egress allow-list.", t.host),
			reason:  fmt.Sprintf("no rule for agent %q allows host %s", clip(agent, 64), t.host),
		}
	case !methodOK:
		return "", &denial{
			message: fmt.Sprintf("Method %s is not allowed for %s.", clip(method, 32), t.host),
			reason:  fmt.Sprintf("no rule for agent %q allows method %s on host %s", clip(agent, 64), clip(method, 32), t.host),
		}
	}
	return "", &denial{
		message: fmt.Sprintf("Port %d is not allowed for %s.", t.port, t.host),
		reason:  fmt.Sprintf("no rule for agent %q allows %s", clip(agent, 64), host),
	}
}

// allowsHost reports whether the rule's hosts match the target's host by name, or by
// address when the target gives one literally.
func (r *compiledRule) allowsHost(t *target) bool {
	if r.anyHost {
		return true
	}
	if r.hosts == nil {
		return false
	}
	v := r.hosts.Check([]inspect.Destination{{Kind: inspect.DestinationHost, Value: t.host}})
	return len(v) == 1 && v[0].Allowed
}

// uniq returns s without repeats, in order.
func uniq(s []string) []string {
	out := make([]string, 0, len(s))
	for _, v := range s {
		if !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	return out
}

// phrase turns a kind from [inspect.PrivateAddr] into words.
func phrase(kind string) string {
	switch kind {
	case "link_local":
		return "link-local"
	case "cgnat":
		return "shared (CGNAT)"
	}
	return kind
}
