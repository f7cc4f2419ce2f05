package config

import (
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// credBase has a url upstream with a credential, a command upstream with secret
// environment, and the egress proxy on.
const credBase = `
secrets: {key_file: secrets.keys}
upstreams:
  - name: crm
    url: "https://crm.example.com/mcp"
    credential: {type: oauth_client_credentials, token_url: "https://idp.example.com/token", client_id: gw, client_secret: "secret:crm-client"}
  - name: files
    command: /usr/bin/files-mcp
    secret_env: {FILES_TOKEN: "secret:files-token", REGION: "env:FILES_REGION"}
tools:
  - {upstream: crm, name: lookup, class: read}
agents:
  - id: a1
    owner: o@example.com
    token_sha256: 0000000000000000000000000000000000000000000000000000000000000000
egress:
  listen: "127.0.0.1:8081"
  allow_private: ["127.0.0.1", "10.9.0.0/16"]
  rules:
    - name: github
      agents: [a1]
      hosts: [api.github.com]
      methods: [GET, POST]
      credential: {type: bearer, secret: "secret:github-token"}
`

func TestCredentialsDefaultsAndValidation(t *testing.T) {
	c, err := Parse([]byte(credBase))
	if err != nil {
		t.Fatal(err)
	}
	c.ApplyDefaults()
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate = %v", err)
	}
	if c.Secrets.CacheFor() != 30*time.Second || !c.Secrets.Configured() {
		t.Errorf("secrets defaults = %+v", c.Secrets)
	}
	r := c.Egress.Rules[0]
	if !slices.Equal(r.Ports, []int{80, 443}) || c.Egress.DialTimeout.D() != 10*time.Second || c.Egress.IdleTimeout.D() != 5*time.Minute {
		t.Errorf("egress defaults = %+v", c.Egress)
	}
	want := []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32"), netip.MustParsePrefix("10.9.0.0/16")}
	if got := c.Egress.AllowPrivatePrefixes(); !slices.Equal(got, want) {
		t.Errorf("AllowPrivatePrefixes = %v, want %v", got, want)
	}
	if s := c.Upstreams[0].Credential.Spec(); s.Type != "oauth_client_credentials" || s.ClientSecret != "secret:crm-client" {
		t.Errorf("Spec = %+v", s)
	}

	for name, tc := range map[string]struct {
		edit func(string) string
		want string
	}{
		"store off": {func(s string) string { return strings.Replace(s, "secrets: {key_file: secrets.keys}", "", 1) },
			"upstreams[0].credential.client_secret: secret:crm-client names the secret store, which is off"},
		"both key sources": {func(s string) string {
			return strings.Replace(s, "key_file: secrets.keys", "key_file: k, key_env: K", 1)
		},
			"secrets: key_file and key_env are alternatives"},
		"bad ref": {func(s string) string { return strings.Replace(s, `"env:FILES_REGION"`, `"vault:x"`, 1) },
			"upstreams[1].secret_env.REGION"},
		"bad env name": {func(s string) string { return strings.Replace(s, "REGION:", "1REGION:", 1) },
			`"1REGION" is not an environment variable name`},
		"credential on command": {func(s string) string {
			return strings.Replace(s, "secret_env: {FILES_TOKEN", "credential: {type: bearer, secret: \"env:X\"}\n    secret_env: {FILES_TOKEN", 1)
		}, "upstreams[1].credential: needs url"},
		"unknown type": {func(s string) string { return strings.Replace(s, "type: oauth_client_credentials", "type: magic", 1) },
			"upstreams[0].credential"},
		"no token url": {func(s string) string {
			return strings.Replace(s, `token_url: "https://idp.example.com/token", `, "", 1)
		},
			"upstreams[0].credential"},
		"egress bad method": {func(s string) string { return strings.Replace(s, "methods: [GET, POST]", "methods: [get]", 1) },
			`egress.rules[0].methods[0]: must be an upper-case HTTP method`},
		"egress bad port": {func(s string) string { return strings.Replace(s, "methods: [GET, POST]", "ports: [0]", 1) },
			"egress.rules[0].ports[0]: must be between 1 and 65535"},
		"egress no hosts": {func(s string) string { return strings.Replace(s, "hosts: [api.github.com]", "hosts: []", 1) },
			"egress.rules[0].hosts: must list at least one host"},
		"egress bad prefix": {func(s string) string { return strings.Replace(s, `"10.9.0.0/16"`, `"10.9.0.0/99"`, 1) },
			"egress.allow_private[1]: must be an IP address or CIDR"},
		"egress bad listen": {func(s string) string { return strings.Replace(s, `"127.0.0.1:8081"`, `"8081"`, 1) },
			"egress.listen: must be host:port"},
		"egress rules without listen": {func(s string) string { return strings.Replace(s, `listen: "127.0.0.1:8081"`, "", 1) },
			"egress.listen: is not set, so the proxy is off"},
		"tool named egress": {func(s string) string {
			return strings.Replace(s, "name: lookup, class: read}", "name: lookup, expose_as: egress, class: read}", 1)
		},
			`tools: "egress" is the egress proxy's tool`},
		"egress rule credential": {func(s string) string { return strings.Replace(s, `"secret:github-token"`, `"github-token"`, 1) },
			"egress.rules[0].credential: secret"},
	} {
		c, err := Parse([]byte(tc.edit(credBase)))
		if err == nil {
			c.ApplyDefaults()
			err = c.Validate()
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", name, err, tc.want)
		}
	}
}

func TestSecretsKeyFileIsRelativeToTheConfig(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "chaperone.yaml")
	c, err := Parse([]byte(credBase))
	if err != nil {
		t.Fatal(err)
	}
	c.resolvePaths(dir)
	if want := filepath.Join(dir, "secrets.keys"); c.Secrets.KeyFile != want {
		t.Errorf("key_file = %q, want %q (relative to %s)", c.Secrets.KeyFile, want, path)
	}
}
