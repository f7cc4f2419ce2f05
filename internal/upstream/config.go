package upstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// Defaults for the zero values of [Config] durations.
const (
	DefaultCallTimeout    = 30 * time.Second
	DefaultConnectTimeout = 10 * time.Second
	DefaultInitialBackoff = 500 * time.Millisecond
	DefaultMaxBackoff     = 30 * time.Second
)

// Config describes one upstream MCP server. Exactly one of Command, URL and Server is set.
type Config struct {
	// Name identifies the upstream, e.g. "files". Letters, digits, '.', '_' and '-', at
	// most 64 bytes. It appears in errors; add it to Logger yourself if you want it in logs.
	Name string

	// Command is the program of a stdio upstream, started and supervised by [Client.Run].
	// It is looked up in the gateway's PATH when it contains no slash.
	Command string
	// Args are the command's arguments.
	Args []string
	// Env holds "KEY=VALUE" entries added to the child's environment. The child does not
	// inherit the gateway's environment: it gets PATH and HOME from the gateway, then Env
	// (which may override them), and nothing else.
	Env []string
	// Dir is the child's working directory; empty means the gateway's.
	Dir string

	// URL is the endpoint of a streamable HTTP upstream (http or https, no user info).
	URL string
	// Headers are added to every HTTP request to URL, e.g. Authorization. Values are
	// secrets as far as this package is concerned: they never appear in logs or errors.
	// They are not sent after a redirect (redirects are not followed at all).
	Headers map[string]string

	// SecretEnv, if set, is called each time a stdio child starts and returns "KEY=VALUE"
	// entries added after Env: credentials the gateway holds for the child, resolved at
	// start so a replaced secret reaches the next child. An error fails the start (and is
	// retried with backoff like any other); it must name the secret, never its value.
	SecretEnv func(ctx context.Context) ([]string, error)
	// Credentials, if set, wraps the HTTP transport of a streamable HTTP upstream: the
	// credential broker's RoundTripper, which attaches the credential of the call in the
	// request's context. It is applied inside the origin check, so it only ever sees
	// requests to URL.
	Credentials func(base http.RoundTripper) http.RoundTripper

	// Server is an in-process upstream, connected through in-memory transports.
	Server *mcp.Server

	// CallTimeout bounds each tools/call and each tools/list. Default 30s.
	CallTimeout time.Duration
	// ConnectTimeout bounds starting and initialising a session. Default 10s.
	ConnectTimeout time.Duration
	// InitialBackoff is the delay before the first reconnect attempt. Default 500ms.
	InitialBackoff time.Duration
	// MaxBackoff caps the delay between reconnect attempts. Default 30s.
	MaxBackoff time.Duration

	// Logger receives lifecycle logs and, at Debug, the child's stderr. Nil discards.
	Logger *slog.Logger

	// OnToolsChanged, if set, is called after each successful (re)connect and whenever the
	// upstream sends notifications/tools/list_changed. Calls come from one goroutine owned
	// by Run, never under a lock of this package, and are coalesced: a notification that
	// arrives while OnToolsChanged runs causes exactly one more call. It may call
	// [Client.Tools].
	OnToolsChanged func()
}

// maxNameLen bounds Config.Name.
const maxNameLen = 64

// reservedHeaders are set by the MCP transport itself and may not be configured.
var reservedHeaders = []string{
	"Accept", "Connection", "Content-Length", "Content-Type", "Host", "Last-Event-Id",
	"Mcp-Protocol-Version", "Mcp-Session-Id", "Transfer-Encoding", "Upgrade",
}

// validate reports every problem with c at once. It does not mutate c.
func (c *Config) validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: "+format, append([]any{field}, args...)...))
	}

	switch {
	case c.Name == "":
		bad("Name", "must be set")
	case len(c.Name) > maxNameLen:
		bad("Name", "longer than %d bytes", maxNameLen)
	case strings.IndexFunc(c.Name, func(r rune) bool { return !isNameRune(r) }) >= 0:
		bad("Name", "%q: only letters, digits, '.', '_' and '-' are allowed", c.Name)
	}

	n := 0
	for _, set := range []bool{c.Command != "", c.URL != "", c.Server != nil} {
		if set {
			n++
		}
	}
	if n != 1 {
		bad("Command/URL/Server", "exactly one must be set, got %d", n)
	}

	if c.Command == "" {
		if len(c.Args) > 0 {
			bad("Args", "set without Command")
		}
		if len(c.Env) > 0 {
			bad("Env", "set without Command")
		}
		if c.Dir != "" {
			bad("Dir", "set without Command")
		}
	}
	for i, kv := range c.Env {
		// Never echo the entry: its value may be a secret.
		k, _, ok := strings.Cut(kv, "=")
		switch {
		case !ok:
			bad(fmt.Sprintf("Env[%d]", i), `missing "=" (want KEY=VALUE)`)
		case k == "":
			bad(fmt.Sprintf("Env[%d]", i), "empty key")
		case strings.ContainsAny(kv, "\x00"):
			bad(fmt.Sprintf("Env[%d]", i), "%s: contains a NUL byte", k)
		}
	}

	if c.URL != "" {
		if err := validateURL(c.URL); err != nil {
			bad("URL", "%v", err)
		}
	} else if len(c.Headers) > 0 {
		bad("Headers", "set without URL")
	}
	for k, v := range c.Headers {
		field := fmt.Sprintf("Headers[%q]", k)
		switch {
		case !validHeaderName(k):
			bad("Headers", "invalid header name %q", k)
		case isReserved(k):
			bad(field, "set by the MCP transport, cannot be configured")
		case strings.ContainsAny(v, "\r\n\x00"):
			bad(field, "value contains CR, LF or NUL")
		}
	}

	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"CallTimeout", c.CallTimeout}, {"ConnectTimeout", c.ConnectTimeout},
		{"InitialBackoff", c.InitialBackoff}, {"MaxBackoff", c.MaxBackoff},
	} {
		if d.v < 0 {
			bad(d.name, "negative duration %v", d.v)
		}
	}
	if c.InitialBackoff > 0 && c.MaxBackoff > 0 && c.InitialBackoff > c.MaxBackoff {
		bad("InitialBackoff", "%v is greater than MaxBackoff %v", c.InitialBackoff, c.MaxBackoff)
	}
	return errors.Join(errs...)
}

// withDefaults returns a copy of c with zero values replaced by defaults.
func (c Config) withDefaults() Config {
	if c.CallTimeout == 0 {
		c.CallTimeout = DefaultCallTimeout
	}
	if c.ConnectTimeout == 0 {
		c.ConnectTimeout = DefaultConnectTimeout
	}
	switch {
	case c.InitialBackoff == 0 && c.MaxBackoff == 0:
		c.InitialBackoff, c.MaxBackoff = DefaultInitialBackoff, DefaultMaxBackoff
	case c.InitialBackoff == 0:
		c.InitialBackoff = min(DefaultInitialBackoff, c.MaxBackoff)
	case c.MaxBackoff == 0:
		c.MaxBackoff = max(DefaultMaxBackoff, c.InitialBackoff)
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// validateURL checks an upstream URL without echoing it: it may carry secrets.
func validateURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return errors.New("not a valid URL")
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return fmt.Errorf("scheme %q: want http or https", u.Scheme)
	case u.Host == "":
		return errors.New("missing host")
	case u.User != nil:
		return errors.New("contains user info; put credentials in Headers")
	case u.Fragment != "":
		return errors.New("contains a fragment")
	}
	return nil
}

// safeURL renders an upstream URL for logs: scheme, host and path only.
func safeURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return ""
	}
	return (&url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}).String()
}

func isNameRune(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-'
}

// validHeaderName reports whether s is an RFC 9110 token.
func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := range len(s) {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0 {
			continue
		}
		return false
	}
	return true
}

func isReserved(name string) bool {
	return slices.Contains(reservedHeaders, http.CanonicalHeaderKey(name))
}
