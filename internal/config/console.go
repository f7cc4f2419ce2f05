package config

import (
	"fmt"
	"net/url"
	"os"
	"regexp"
	"strings"
	"time"
)

// Console configures the operator web console. It is served on the admin listener under
// /console/ and signs operators in with a local account or OpenID Connect.
type Console struct {
	// Enabled serves the console. Default true (when the admin API is on).
	Enabled *bool `yaml:"enabled"`
	// PublicURL is the address operators' browsers use, e.g. "https://chaperone.example.com"
	// behind a TLS-terminating proxy. It sets the Secure flag of cookies (https), the origin
	// forms must come from, and the OIDC redirect. Default "http://<admin.listen>"; http is
	// accepted only for a loopback host, because the session cookie would otherwise cross the
	// network in clear.
	PublicURL string `yaml:"public_url"`
	// SessionTTL ends a session this long after sign-in, whatever happens. Default "8h";
	// from "5m" to "168h".
	SessionTTL Duration `yaml:"session_ttl"`
	// IdleTimeout ends a session unused for this long. Default "30m"; from "1m" to
	// session_ttl.
	IdleTimeout Duration `yaml:"idle_timeout"`
	// OIDC signs operators in with an OpenID Connect provider; nil: local accounts only.
	OIDC *ConsoleOIDC `yaml:"oidc"`
}

// ConsoleOIDC is the OpenID Connect provider operators sign in with.
type ConsoleOIDC struct {
	// Issuer is the provider's issuer URL; its discovery document is read from
	// <issuer>/.well-known/openid-configuration. https (http only on loopback).
	Issuer string `yaml:"issuer"`
	// ClientID is the console's client at the provider.
	ClientID string `yaml:"client_id"`
	// ClientSecretFile holds the client secret; "" for a public client (PKCE only).
	// Relative paths are relative to the configuration file.
	ClientSecretFile string `yaml:"client_secret_file"`
	// Scopes asked for besides openid. Default [email, profile].
	Scopes []string `yaml:"scopes"`
	// GroupsClaim names the ID token claim with the user's groups. Default "groups".
	GroupsClaim string `yaml:"groups_claim"`
	// Roles maps each console role to the groups (or e-mail addresses) that get it. A user
	// gets the highest role any of their groups or their e-mail address maps to; a user
	// with none is refused.
	Roles ConsoleRoles `yaml:"roles"`
}

// ConsoleRoles lists, per role, the groups or e-mail addresses that grant it.
type ConsoleRoles struct {
	Viewer   []string `yaml:"viewer"`
	Approver []string `yaml:"approver"`
	Operator []string `yaml:"operator"`
	Admin    []string `yaml:"admin"`
}

// ConsoleEnabled reports whether the console is served.
func (c *Config) ConsoleEnabled() bool {
	return c.Admin.Listen != "off" && (c.Console.Enabled == nil || *c.Console.Enabled)
}

// ClientSecret reads the OIDC client secret file ("" when none is configured).
func (o *ConsoleOIDC) ClientSecret() (string, error) {
	if o.ClientSecretFile == "" {
		return "", nil
	}
	b, err := os.ReadFile(o.ClientSecretFile)
	if err != nil {
		return "", fmt.Errorf("console.oidc.client_secret_file: %w", err)
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "", fmt.Errorf("console.oidc.client_secret_file %s: empty", o.ClientSecretFile)
	}
	return s, nil
}

func (c *Console) applyDefaults() {
	if c.SessionTTL == 0 {
		c.SessionTTL = Duration(8 * time.Hour)
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = Duration(30 * time.Minute)
	}
	if o := c.OIDC; o != nil {
		if o.GroupsClaim == "" {
			o.GroupsClaim = "groups"
		}
		if o.Scopes == nil {
			o.Scopes = []string{"email", "profile"}
		}
	}
}

// consoleScope is what an OAuth scope may look like (RFC 6749 §3.3, printable ASCII
// without space, quote or backslash).
var consoleScope = regexp.MustCompile(`^[\x21\x23-\x5b\x5d-\x7e]{1,64}$`)

func (c *Console) validate() []error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...)))
	}
	if c.PublicURL != "" {
		u, err := url.Parse(c.PublicURL)
		switch {
		case err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") || u.User != nil || u.RawQuery != "" || u.Fragment != "" || (u.Path != "" && u.Path != "/"):
			bad("console.public_url", "must be an origin like https://chaperone.example.com (no path, query or user), got %q", c.PublicURL)
		case u.Scheme == "http" && !IsLoopbackHost(u.Hostname()):
			bad("console.public_url", "must be https unless the host is loopback (the session cookie would cross the network in clear), got %q", c.PublicURL)
		}
	}
	if t := c.SessionTTL.D(); t < 5*time.Minute || t > 168*time.Hour {
		bad("console.session_ttl", "must be between 5m and 168h, got %s", t)
	}
	if t := c.IdleTimeout.D(); t < time.Minute || t > c.SessionTTL.D() {
		bad("console.idle_timeout", "must be between 1m and session_ttl (%s), got %s", c.SessionTTL.D(), t)
	}
	if o := c.OIDC; o != nil {
		if u, err := url.Parse(o.Issuer); err != nil || u.Host == "" || !(u.Scheme == "https" || u.Scheme == "http" && IsLoopbackHost(u.Hostname())) {
			bad("console.oidc.issuer", "must be an https URL (http only on loopback), got %q", o.Issuer)
		}
		if o.ClientID == "" || len(o.ClientID) > 256 {
			bad("console.oidc.client_id", "must be 1 to 256 characters, got %d", len(o.ClientID))
		}
		for i, s := range o.Scopes {
			if !consoleScope.MatchString(s) {
				bad(fmt.Sprintf("console.oidc.scopes[%d]", i), "must be 1 to 64 printable characters without space, quote or backslash, got %q", s)
			}
		}
		r := o.Roles
		if len(r.Viewer)+len(r.Approver)+len(r.Operator)+len(r.Admin) == 0 {
			bad("console.oidc.roles", "must map at least one group or e-mail address to a role: nobody could sign in")
		}
		for role, list := range map[string][]string{"viewer": r.Viewer, "approver": r.Approver, "operator": r.Operator, "admin": r.Admin} {
			for i, g := range list {
				if g == "" || len(g) > 256 {
					bad(fmt.Sprintf("console.oidc.roles.%s[%d]", role, i), "must be 1 to 256 characters, got %d", len(g))
				}
			}
		}
	}
	return errs
}
