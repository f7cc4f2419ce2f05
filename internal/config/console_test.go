package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestConsoleDefaultsAndValidation(t *testing.T) {
	c, err := Parse([]byte(validBase))
	if err != nil {
		t.Fatal(err)
	}
	c.ApplyDefaults()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if !c.ConsoleEnabled() || c.Console.SessionTTL.D() != 8*time.Hour || c.Console.IdleTimeout.D() != 30*time.Minute {
		t.Fatalf("console defaults = %+v", c.Console)
	}
	c.Admin.Listen = "off"
	if c.ConsoleEnabled() {
		t.Fatal("console on without the admin listener")
	}

	for name, tc := range map[string]struct{ yaml, want string }{
		"http off loopback": {"console: {public_url: \"http://chaperone.example.com\"}", "console.public_url: must be https unless the host is loopback"},
		"path":              {"console: {public_url: \"https://chaperone.example.com/console\"}", "console.public_url: must be an origin"},
		"ttl":               {"console: {session_ttl: 1m}", "console.session_ttl: must be between 5m and 168h"},
		"idle > ttl":        {"console: {session_ttl: 1h, idle_timeout: 2h}", "console.idle_timeout: must be between 1m and session_ttl"},
		"oidc http issuer":  {"console: {oidc: {issuer: \"http://idp.example.com\", client_id: c, roles: {admin: [ops]}}}", "console.oidc.issuer: must be an https URL"},
		"oidc no roles":     {"console: {oidc: {issuer: \"https://idp.example.com\", client_id: c}}", "console.oidc.roles: must map at least one"},
		"oidc no client":    {"console: {oidc: {issuer: \"https://idp.example.com\", roles: {viewer: [all]}}}", "console.oidc.client_id: must be 1 to 256"},
		"oidc bad scope":    {"console: {oidc: {issuer: \"https://idp.example.com\", client_id: c, scopes: [\"a b\"], roles: {viewer: [all]}}}", "console.oidc.scopes[0]"},
		"unknown field":     {"console: {public_url: \"https://x.example\", colour: red}", "colour"},
	} {
		c, err := Parse([]byte(validBase + tc.yaml + "\n"))
		if err == nil {
			c.ApplyDefaults()
			err = c.Validate()
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", name, err, tc.want)
		}
	}

	ok, err := Parse([]byte(validBase + `console:
  public_url: "https://chaperone.example.com"
  oidc:
    issuer: "https://idp.example.com"
    client_id: chaperone-console
    client_secret_file: console-oidc.secret
    roles: {approver: [finance], admin: ["root@example.com"]}
`))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	ok.resolvePaths(dir)
	ok.ApplyDefaults()
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	if o := ok.Console.OIDC; o.GroupsClaim != "groups" || len(o.Scopes) != 2 || o.ClientSecretFile != filepath.Join(dir, "console-oidc.secret") {
		t.Fatalf("oidc defaults = %+v", o)
	}
	if _, err := ok.Console.OIDC.ClientSecret(); err == nil {
		t.Fatal("a missing secret file read without error")
	}
	if err := os.WriteFile(ok.Console.OIDC.ClientSecretFile, []byte("  s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if s, err := ok.Console.OIDC.ClientSecret(); err != nil || s != "s3cret" {
		t.Fatalf("secret = %q, %v", s, err)
	}
}
