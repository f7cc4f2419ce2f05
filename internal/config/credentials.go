package config

import (
	"fmt"
	"maps"
	"net"
	"net/netip"
	"regexp"
	"slices"
	"time"

	"github.com/chaperone-dev/chaperone/internal/credential"
	"github.com/chaperone-dev/chaperone/internal/secrets"
)

// Secrets configures the gateway's encrypted store of upstream credentials. Values are
// sealed with XChaCha20-Poly1305 under a key from a key file or an environment variable;
// they are set through the admin API (`chaperone secrets set`), never returned by it.
type Secrets struct {
	// KeyFile holds the encryption keys, one "<id> <base64 32 bytes>" per line, the first
	// the primary (`chaperone secrets keygen` prints one). Mode 0600 or stricter.
	// Relative paths are relative to the configuration file.
	KeyFile string `yaml:"key_file"`
	// KeyEnv names an environment variable holding the keys in the same format (lines or
	// ";"-separated), for platforms that inject secrets as variables. Used when key_file
	// is empty.
	KeyEnv string `yaml:"key_env"`
	// CacheTTL is how long a decrypted value is kept in memory. Default "30s"; from "0s"
	// (no cache) to "10m".
	CacheTTL *Duration `yaml:"cache_ttl"`
}

// Configured reports whether a key source is configured: without one, the secret store
// is off and secret: references are refused.
func (s *Secrets) Configured() bool { return s.KeyFile != "" || s.KeyEnv != "" }

// CacheFor returns how long a decrypted value is kept in memory.
func (s *Secrets) CacheFor() time.Duration {
	if s.CacheTTL == nil {
		return 30 * time.Second
	}
	return s.CacheTTL.D()
}

// Credential is how the gateway authenticates to an upstream (or, in an egress rule, to
// the rule's hosts) on the agent's behalf. Values are references: "secret:NAME" (the
// secret store), "env:VAR" or "file:/path".
type Credential struct {
	// Type is bearer, header, basic, oauth_client_credentials, oauth_refresh_token,
	// token_exchange or receipt.
	Type string `yaml:"type"`
	// Header is the header to set. Default "Authorization".
	Header string `yaml:"header"`
	// Prefix goes before the value for type header (e.g. "Token ").
	Prefix string `yaml:"prefix"`
	// Secret is the key or token (bearer, header).
	Secret string `yaml:"secret"`
	// Username and Password (a reference) for basic.
	Username string `yaml:"username"`
	Password string `yaml:"password"`
	// TokenURL, ClientID and ClientSecret (a reference) for the OAuth types.
	TokenURL     string `yaml:"token_url"`
	ClientID     string `yaml:"client_id"`
	ClientSecret string `yaml:"client_secret"`
	// Scopes, Audience and Resource are sent to the token endpoint when set.
	Scopes   []string `yaml:"scopes"`
	Audience string   `yaml:"audience"`
	Resource string   `yaml:"resource"`
	// RefreshToken (a reference) for oauth_refresh_token; a rotated refresh token is
	// written back when it is a secret: reference.
	RefreshToken string `yaml:"refresh_token"`
	// TTL is a receipt's lifetime. Default "30s"; from "1s" to "5m".
	TTL Duration `yaml:"ttl"`
}

// EgressProxy is the HTTP forward proxy agents and sandboxes send their own web requests
// through.
type EgressProxy struct {
	// Listen is the proxy's address, e.g. "127.0.0.1:8081"; "" (the default) turns it off.
	Listen string `yaml:"listen"`
	// Rules are the per-agent allow-lists; a request no rule allows is refused.
	Rules []EgressRule `yaml:"rules"`
	// AllowPrivate lists private, loopback or link-local prefixes that may be reached
	// anyway (a sidecar, a test); every other such address, and every cloud metadata
	// address, is refused, also when a DNS name or a redirect leads there.
	AllowPrivate []string `yaml:"allow_private"`
	// DialTimeout bounds connecting to a destination. Default "10s".
	DialTimeout Duration `yaml:"dial_timeout"`
	// IdleTimeout closes a CONNECT tunnel silent for this long. Default "5m".
	IdleTimeout Duration `yaml:"idle_timeout"`
}

// EgressRule allows agents to reach hosts with methods.
type EgressRule struct {
	// Name identifies the rule in the audit log and names its credential.
	Name string `yaml:"name"`
	// Agents are the agent ids the rule applies to; "*" for every agent.
	Agents []string `yaml:"agents"`
	// Hosts are destinations: "api.example.com", "*.example.com", an IP or a CIDR.
	Hosts []string `yaml:"hosts"`
	// Methods are upper-case HTTP methods. Default [GET, HEAD].
	Methods []string `yaml:"methods"`
	// Ports are destination ports. Default [80, 443].
	Ports []int `yaml:"ports"`
	// Credential is attached to plain-HTTP requests the rule allows (HTTPS tunnels are
	// not intercepted, so they cannot carry one).
	Credential *Credential `yaml:"credential"`
}

// EgressTool is the name policy rules give the egress proxy's requests.
const EgressTool = "egress"

var egressRuleName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,63}$`)

func (e *EgressProxy) applyDefaults() {
	if e.DialTimeout == 0 {
		e.DialTimeout = Duration(10 * time.Second)
	}
	if e.IdleTimeout == 0 {
		e.IdleTimeout = Duration(5 * time.Minute)
	}
	for i := range e.Rules {
		r := &e.Rules[i]
		if len(r.Methods) == 0 {
			r.Methods = []string{"GET", "HEAD"}
		}
		if len(r.Ports) == 0 {
			r.Ports = []int{80, 443}
		}
	}
}

// AllowPrivatePrefixes returns AllowPrivate parsed (validated before).
func (e *EgressProxy) AllowPrivatePrefixes() []netip.Prefix {
	out := make([]netip.Prefix, 0, len(e.AllowPrivate))
	for _, s := range e.AllowPrivate {
		if p, err := parsePrefix(s); err == nil {
			out = append(out, p)
		}
	}
	return out
}

// parsePrefix accepts a CIDR or a single address.
func parsePrefix(s string) (netip.Prefix, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("must be an IP address or CIDR, got %q", s)
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

func (e *EgressProxy) validate(checkCredential func(field string, c *Credential) []error) []error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...)))
	}
	if e.Listen != "" {
		if _, _, err := net.SplitHostPort(e.Listen); err != nil {
			bad("egress.listen", "must be host:port, got %q", e.Listen)
		}
		if len(e.Rules) == 0 {
			bad("egress.rules", "the proxy is on but no rule allows anything: add rules or turn egress.listen off")
		}
	} else if len(e.Rules) > 0 || len(e.AllowPrivate) > 0 {
		bad("egress.listen", "is not set, so the proxy is off and its rules and allow_private would do nothing: set it (e.g. 127.0.0.1:8082) or remove them")
	}
	for i, s := range e.AllowPrivate {
		if _, err := parsePrefix(s); err != nil {
			bad(fmt.Sprintf("egress.allow_private[%d]", i), "%v", err)
		}
	}
	if d := e.DialTimeout.D(); d < 100*time.Millisecond || d > time.Minute {
		bad("egress.dial_timeout", "must be between 100ms and 1m, got %s", d)
	}
	if d := e.IdleTimeout.D(); d < time.Second || d > 24*time.Hour {
		bad("egress.idle_timeout", "must be between 1s and 24h, got %s", d)
	}
	names := map[string]bool{}
	for i, r := range e.Rules {
		f := fmt.Sprintf("egress.rules[%d]", i)
		switch {
		case !egressRuleName.MatchString(r.Name):
			bad(f+".name", "must match %s, got %q", egressRuleName, r.Name)
		case names[r.Name]:
			bad(f+".name", "duplicate rule %q", r.Name)
		}
		names[r.Name] = true
		if len(r.Agents) == 0 {
			bad(f+".agents", `must list agent ids or "*"`)
		}
		if len(r.Hosts) == 0 {
			bad(f+".hosts", "must list at least one host")
		}
		for j, m := range r.Methods {
			if !slices.Contains([]string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}, m) {
				bad(fmt.Sprintf("%s.methods[%d]", f, j), "must be an upper-case HTTP method (GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS), got %q", m)
			}
		}
		for j, p := range r.Ports {
			if p < 1 || p > 65535 {
				bad(fmt.Sprintf("%s.ports[%d]", f, j), "must be between 1 and 65535, got %d", p)
			}
		}
		if r.Credential != nil {
			errs = append(errs, checkCredential(f+".credential", r.Credential)...)
		}
	}
	return errs
}

// validateCredentials checks upstream credentials, secret environment and the egress
// proxy. Filled in below with the broker's own checks.
func (c *Config) validateCredentials() []error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...)))
	}
	if c.Secrets.KeyFile != "" && c.Secrets.KeyEnv != "" {
		bad("secrets", "key_file and key_env are alternatives; set one")
	}
	if c.Secrets.KeyEnv != "" && !envName.MatchString(c.Secrets.KeyEnv) {
		bad("secrets.key_env", "must be an environment variable name, got %q", c.Secrets.KeyEnv)
	}
	if t := c.Secrets.CacheFor(); t < 0 || t > 10*time.Minute {
		bad("secrets.cache_ttl", "must be between 0s and 10m, got %s", t)
	}
	for i, u := range c.Upstreams {
		f := fmt.Sprintf("upstreams[%d]", i)
		if u.Credential != nil {
			if u.URL == "" {
				bad(f+".credential", "needs url: a command upstream gets credentials through secret_env")
			}
			errs = append(errs, c.checkCredential(f+".credential", u.Credential)...)
		}
		if len(u.SecretEnv) > 0 && u.Command == "" {
			bad(f+".secret_env", "needs command")
		}
		for _, k := range slices.Sorted(maps.Keys(u.SecretEnv)) {
			if !envName.MatchString(k) {
				bad(f+".secret_env", "%q is not an environment variable name", k)
			}
			errs = append(errs, c.checkRef(f+".secret_env."+k, u.SecretEnv[k])...)
		}
	}
	errs = append(errs, c.Egress.validate(c.checkCredential)...)
	if c.Egress.Listen != "" {
		// The proxy's requests are calls of the tool "egress", which policy rules name.
		if names, err := ExposedNames(c.Tools); err == nil && slices.Contains(names, EgressTool) {
			bad("tools", "%q is the egress proxy's tool while egress.listen is set; expose the declared tool under another name (expose_as)", EgressTool)
		}
	}
	return errs
}

// envName is what an environment variable name may be.
var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,127}$`)

// Spec returns the credential as the broker takes it.
func (cr *Credential) Spec() credential.Spec {
	return credential.Spec{Type: cr.Type, Header: cr.Header, Prefix: cr.Prefix, Secret: cr.Secret,
		Username: cr.Username, Password: cr.Password, TokenURL: cr.TokenURL, ClientID: cr.ClientID,
		ClientSecret: cr.ClientSecret, Scopes: cr.Scopes, Audience: cr.Audience, Resource: cr.Resource,
		RefreshToken: cr.RefreshToken, TTL: cr.TTL.D()}
}

// refs returns the secret references of a credential, by field.
func (cr *Credential) refs() map[string]string {
	out := map[string]string{}
	for k, v := range map[string]string{"secret": cr.Secret, "password": cr.Password, "client_secret": cr.ClientSecret, "refresh_token": cr.RefreshToken} {
		if v != "" {
			out[k] = v
		}
	}
	return out
}

// checkRef checks a secret reference, and that the secret store it may name is configured.
func (c *Config) checkRef(field, ref string) []error {
	r, err := secrets.ParseRef(ref)
	if err != nil {
		return []error{fmt.Errorf("%s: %w", field, err)}
	}
	if r.Kind == secrets.RefSecret && !c.Secrets.Configured() {
		return []error{fmt.Errorf("%s: %s names the secret store, which is off: set secrets.key_file or secrets.key_env", field, r)}
	}
	return nil
}

// checkCredential checks one credential: the broker's own checks, then its references.
func (c *Config) checkCredential(field string, cr *Credential) []error {
	var errs []error
	for _, e := range cr.Spec().Problems() {
		errs = append(errs, fmt.Errorf("%s: %w", field, e))
	}
	if len(errs) > 0 {
		return errs
	}
	refs := cr.refs()
	for _, k := range slices.Sorted(maps.Keys(refs)) {
		errs = append(errs, c.checkRef(field+"."+k, refs[k])...)
	}
	return errs
}
