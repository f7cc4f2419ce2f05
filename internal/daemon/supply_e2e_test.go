package daemon_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chaperone-dev/chaperone/internal/audit"
	"github.com/chaperone-dev/chaperone/internal/chaperonetest"
	"github.com/chaperone-dev/chaperone/internal/config"
	"github.com/chaperone-dev/chaperone/internal/daemon"
	"github.com/chaperone-dev/chaperone/internal/policy"
	"github.com/chaperone-dev/chaperone/internal/policy/bundle"
	"github.com/chaperone-dev/chaperone/internal/registry"
	"github.com/chaperone-dev/chaperone/internal/sign"
)

// signer is an Ed25519 key with its public half written to a PEM file, as an operator
// lists it under trust.
type signer struct {
	key     ed25519.PrivateKey
	pubFile string
}

func newSigner(t *testing.T) signer {
	t.Helper()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pem, err := sign.MarshalPublicKey(k.Public().(ed25519.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "signer.pub")
	if err := os.WriteFile(path, pem, 0o600); err != nil {
		t.Fatal(err)
	}
	return signer{key: k, pubFile: path}
}

// rugPullManifest describes the rugpull server's send_email as it honestly is.
func rugPullManifest() string {
	return `manifest: chaperone.tools/v1
publisher: mail-team
upstream: mail
tools:
  - name: send_email
    version: 2.1.0
    description: ` + chaperonetest.RugPullHonest["send_email"] + `
    input_schema: ` + chaperonetest.RugPullSchemas["send_email"] + `
    class: external
    owner: mail-team@example.com
    undo: Mail cannot be recalled.
`
}

// writeManifest writes text to dir/mail.manifest.yaml and, if s is not nil, signs it.
func writeManifest(t *testing.T, dir, text string, s *signer) string {
	t.Helper()
	path := filepath.Join(dir, "mail.manifest.yaml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	if s != nil {
		sig, err := sign.Sign(s.key, sign.ToolManifest, "mail-team", []byte(text))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(registry.Signatures{Signatures: []sign.Signature{sig}})
		if err := os.WriteFile(registry.SignatureFile(path), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return path
}

const mailPolicy = `rules:
  - id: mail-tools
    match:
      tools: [send_email, lookup]
    effect: allow
`

// TestRugPullAgainstStdioUpstream: a real stdio MCP server changes its tools' descriptions
// after the first call. The tool its signed manifest describes is quarantined at once and
// no operator can approve the change; the tool pinned on first use is quarantined too,
// the review's finding shows in the diff, and only an approval that names the reviewed
// hash and accepts the finding makes it callable again.
func TestRugPullAgainstStdioUpstream(t *testing.T) {
	t.Parallel()
	publisher := newSigner(t)
	manifest := writeManifest(t, t.TempDir(), rugPullManifest(), &publisher)
	g := chaperonetest.Start(t, chaperonetest.Options{
		Upstreams: []config.Upstream{chaperonetest.StdioUpstream("mail", "rugpull")},
		Tools: []config.Tool{
			{Upstream: "mail", Name: "send_email", Class: "external"},
			{Upstream: "mail", Name: "lookup", Class: "read"},
		},
		Policy: mailPolicy,
		Configure: func(c *config.Config) {
			c.Registry.Manifests = []string{manifest}
			c.Trust.ToolPublishers = []config.TrustedKey{{Name: "mail-publisher", KeyFile: publisher.pubFile}}
		},
	})
	reg := g.Daemon.Registry()
	send, _ := reg.Lookup("send_email")
	if send.Status != registry.StatusActive || send.Manifest == nil || send.Manifest.Signer != "mail-publisher" || send.Undo != "Mail cannot be recalled." {
		t.Fatalf("send_email = %s (%s), manifest %+v", send.Status, send.Reason, send.Manifest)
	}
	cs := g.Connect(t, g.Agents["test-agent"].Token, "")
	if got := refusal(t, call(t, cs, "send_email", map[string]any{"to": "bob@example.com", "body": "hi"})); got != "" {
		t.Fatalf("first send_email refused: %s", got)
	}

	// The server pulls the rug and announces it; the gateway re-reads its tools.
	chaperonetest.WaitFor(t, 15*time.Second, "both tools quarantined", func() bool {
		_ = g.Daemon.SyncUpstream(context.Background(), "mail")
		s, _ := reg.Lookup("send_email")
		l, _ := reg.Lookup("lookup")
		return s.Status == registry.StatusQuarantined && l.Status == registry.StatusQuarantined
	})
	for _, tool := range []string{"send_email", "lookup"} {
		if got := refusal(t, call(t, cs, tool, map[string]any{"to": "bob@example.com", "body": "hi", "q": "bob"})); got != "quarantined" {
			t.Errorf("%s after the rug pull: refusal %q, want quarantined", tool, got)
		}
	}
	names := chaperonetest.ToolNames(t, cs)
	if len(names) != 0 {
		t.Errorf("tools still listed after the rug pull: %v", names)
	}

	// send_email: the diff shows the new description against the manifest's, and no
	// approval can make the mismatch callable.
	var c registry.Comparison
	adminGet(t, g, "/v1/tools/send_email/diff", &c)
	if c.Against != "manifest" || c.Signer != "mail-publisher" || len(c.Changes) != 1 || c.Changes[0].Field != "description" ||
		c.Changes[0].Old != chaperonetest.RugPullHonest["send_email"] || c.Changes[0].New != chaperonetest.RugPullPoisoned["send_email"] {
		t.Errorf("send_email diff = %+v", c)
	}
	if code, b := approveRequest(t, g, "send_email", `{"by":"alice","accept_findings":true}`); code != http.StatusConflict ||
		!strings.Contains(string(b), "signed manifest") {
		t.Errorf("approving a definition that contradicts its manifest = %d %s, want 409", code, b)
	}

	// lookup: pinned on first use; the diff shows the change and the injection finding.
	adminGet(t, g, "/v1/tools/lookup/diff", &c)
	if c.Against != "pin" || !strings.Contains(c.Finding, "reads as a prompt injection") || len(c.Changes) != 1 ||
		c.Changes[0].New != chaperonetest.RugPullPoisoned["lookup"] {
		t.Errorf("lookup diff = %+v", c)
	}
	if code, _ := approveRequest(t, g, "lookup", `{"by":"alice","hash":"`+c.LiveHash+`"}`); code != http.StatusConflict {
		t.Errorf("approving a flagged definition without accepting the finding = %d, want 409", code)
	}
	if code, b := approveRequest(t, g, "lookup", `{"by":"alice","hash":"`+c.LiveHash+`","accept_findings":true}`); code != http.StatusOK {
		t.Fatalf("approval = %d %s", code, b)
	}
	if got := refusal(t, call(t, cs, "lookup", map[string]any{"q": "bob"})); got != "" {
		t.Errorf("lookup after its approval: refusal %q", got)
	}

	g.Stop(t)
	var drifted, approved []string
	for _, e := range allEvents(t, g.Config.Store.SQLite) {
		switch e.Kind {
		case audit.KindToolDrift:
			drifted = append(drifted, e.Tool)
		case audit.KindToolApproved:
			approved = append(approved, e.Tool+" "+e.Detail)
		}
	}
	if strings.Join(drifted, ",") == "" || len(drifted) != 2 {
		t.Errorf("tool.drift events for %v, want one each for send_email and lookup", drifted)
	}
	if len(approved) != 2 || !strings.HasPrefix(approved[0], "send_email pinned sha256:") || !strings.HasSuffix(approved[0], "by manifest:mail-publisher") ||
		!strings.HasSuffix(approved[1], "by operator:alice") {
		t.Errorf("tool.approved events = %q", approved)
	}
}

// TestManifestRefusedAtStart: a configuration whose manifest is tampered with, unsigned or
// signed by a stranger does not start, and says which.
func TestManifestRefusedAtStart(t *testing.T) {
	t.Parallel()
	publisher, stranger := newSigner(t), newSigner(t)
	for name, tc := range map[string]struct {
		write func(dir string) string
		want  error
	}{
		"tampered": {func(dir string) string {
			p := writeManifest(t, dir, rugPullManifest(), &publisher)
			if err := os.WriteFile(p, []byte(strings.Replace(rugPullManifest(), "class: external", "class: read", 1)), 0o600); err != nil {
				t.Fatal(err)
			}
			return p
		}, sign.ErrBadSignature},
		"unsigned":       {func(dir string) string { return writeManifest(t, dir, rugPullManifest(), nil) }, sign.ErrUnsigned},
		"wrong signer":   {func(dir string) string { return writeManifest(t, dir, rugPullManifest(), &stranger) }, sign.ErrUntrusted},
		"class lowered":  {func(dir string) string { return writeManifest(t, dir, rugPullManifest(), &publisher) }, nil},
		"bad public key": {func(dir string) string { return writeManifest(t, dir, rugPullManifest(), &publisher) }, nil},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			cfg := &config.Config{
				DataDir:   t.TempDir(),
				Server:    config.Server{Listen: "127.0.0.1:0"},
				Admin:     config.Admin{Listen: "off"},
				Upstreams: []config.Upstream{chaperonetest.StdioUpstream("mail", "rugpull")},
				Tools:     []config.Tool{{Upstream: "mail", Name: "send_email", Class: "external"}},
				Registry:  config.Registry{Manifests: []string{tc.write(t.TempDir())}},
				Trust:     config.Trust{ToolPublishers: []config.TrustedKey{{Name: "mail-publisher", KeyFile: publisher.pubFile}}},
			}
			var want string
			if tc.want != nil {
				want = tc.want.Error()
			}
			switch name {
			case "class lowered":
				cfg.Tools[0].Class = "read"
				want = "tools[0].class: read is lower than external, the class its manifest (signed by mail-publisher) gives"
			case "bad public key":
				cfg.Trust.ToolPublishers[0].KeyFile = writeTemp(t, "not a key")
				want = `trust.tool_publishers: trusted key "mail-publisher"`
			}
			cfg.ApplyDefaults()
			if err := cfg.Validate(); err != nil {
				t.Fatal(err)
			}
			d, err := daemon.New(t.Context(), cfg, daemon.Options{PolicySources: []policy.Source{{Name: "p.yaml", Data: []byte("rules: []\n")}}})
			if err == nil {
				stopNow(t, d)
				t.Fatalf("daemon.New succeeded, want an error")
			}
			if (tc.want != nil && !errors.Is(err, tc.want)) || !strings.Contains(err.Error(), want) {
				t.Errorf("daemon.New = %v\nwant it to mention %q", err, want)
			}
		})
	}
}

// stopNow releases a daemon that was built but should not have been.
func stopNow(t *testing.T, d *daemon.Daemon) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := d.Run(ctx); err != nil {
		t.Error(err)
	}
}

func writeTemp(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// makeBundle writes a bundle of the policy text to path, signed by the signers given.
func makeBundle(t *testing.T, path, text string, by ...signer) *bundle.Bundle {
	t.Helper()
	b, err := bundle.New([]policy.Source{{Name: "policy.yaml", Data: []byte(text)}})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range by {
		if err := b.Sign(s.key, "release"); err != nil {
			t.Fatal(err)
		}
	}
	raw, err := b.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	return b
}

const denyAllButInbox = `rules:
  - id: inbox
    match:
      tools: [read_inbox]
    effect: allow
`

// TestSignedPolicyBundles: with policy.require_signed, the gateway runs the bundle its
// trusted signer signed and names the bundle and the signer on every audit event; an
// unsigned, tampered or wrongly signed bundle is refused with a clear error while the last
// good one stays in force — across a restart too.
func TestSignedPolicyBundles(t *testing.T) {
	t.Parallel()
	release, stranger := newSigner(t), newSigner(t)
	path := filepath.Join(t.TempDir(), "policy.bundle")
	good := makeBundle(t, path, denyAllButInbox, release)
	g := chaperonetest.Start(t, chaperonetest.Options{
		Upstreams: []config.Upstream{{Name: "demo", Builtin: "demo"}},
		Tools:     []config.Tool{{Upstream: "demo", Name: "read_inbox", Class: "read"}, {Upstream: "demo", Name: "create_ticket", Class: "write"}},
		Configure: func(c *config.Config) {
			c.Policy = config.Policy{Bundle: path, RequireSigned: true}
			c.Trust.PolicySigners = []config.TrustedKey{{Name: "release-team", KeyFile: release.pubFile}}
		},
	})
	if v := g.Daemon.Policy().Version(); v != good.Hash {
		t.Fatalf("policy version %s, want the bundle's hash %s", v, good.Hash)
	}
	cs := g.Connect(t, g.Agents["test-agent"].Token, "")
	if got := refusal(t, call(t, cs, "read_inbox", map[string]any{})); got != "" {
		t.Fatalf("read_inbox refused: %s", got)
	}

	allowTickets := denyAllButInbox + "  - id: tickets\n    match:\n      tools: [create_ticket]\n    effect: allow\n"
	for name, write := range map[string]func(){
		"unsigned":     func() { makeBundle(t, path, allowTickets) },
		"wrong signer": func() { makeBundle(t, path, allowTickets, stranger) },
		"tampered": func() {
			raw, _ := os.ReadFile(path)
			edited := strings.Replace(string(raw), "read_inbox", "create_ticket", 1)
			if err := os.WriteFile(path, []byte(edited), 0o600); err != nil {
				t.Fatal(err)
			}
		},
		"re-signed after an edit by a stranger": func() {
			b := makeBundle(t, path, allowTickets, stranger)
			b.Signatures = good.Signatures // the trusted signature of another hash
			raw, _ := b.Marshal()
			if err := os.WriteFile(path, raw, 0o600); err != nil {
				t.Fatal(err)
			}
		},
	} {
		makeBundle(t, path, denyAllButInbox, release)
		write()
		_, err := g.Daemon.ReloadPolicy(t.Context())
		if err == nil {
			t.Errorf("%s: reload succeeded", name)
			continue
		}
		if !strings.Contains(err.Error(), "policy bundle") && !strings.Contains(err.Error(), path) {
			t.Errorf("%s: error %q names neither the bundle nor its file", name, err)
		}
		if v := g.Daemon.Policy().Version(); v != good.Hash {
			t.Errorf("%s: policy %s in force, want the last good %s", name, v, good.Hash)
		}
		if got := refusal(t, call(t, cs, "create_ticket", map[string]any{"title": "x", "body": "y"})); got != "denied_by_policy" {
			t.Errorf("%s: create_ticket = %q under the refused bundle, want denied_by_policy", name, got)
		}
	}

	// A restart with the bad bundle in place keeps the last good one, and says so.
	makeBundle(t, path, allowTickets)
	g.Restart(t)
	if v := g.Daemon.Policy().Version(); v != good.Hash {
		t.Fatalf("after a restart with an unsigned bundle: policy %s, want the last good %s", v, good.Hash)
	}

	// A newly signed bundle is taken.
	next := makeBundle(t, path, allowTickets, release)
	if v, err := g.Daemon.ReloadPolicy(t.Context()); err != nil || v != next.Hash {
		t.Fatalf("reload of a signed bundle = %s, %v", v, err)
	}
	cs = g.Connect(t, g.Agents["test-agent"].Token, "")
	if got := refusal(t, call(t, cs, "create_ticket", map[string]any{"title": "x", "body": "y"})); got != "" {
		t.Errorf("create_ticket under the new bundle: %s", got)
	}
	g.Stop(t)

	rejected := 0
	for _, e := range allEvents(t, g.Config.Store.SQLite) {
		if e.Kind == audit.KindPolicyRejected {
			rejected++
			continue
		}
		if e.PolicyVersion == "" || e.PolicySigner != "release-team" {
			// Events before the first policy loaded carry none; every later one does.
			if e.Kind == audit.KindPolicyLoaded || e.Seq > 1 {
				t.Errorf("event %d (%s): policy %q signed by %q, want a bundle hash signed by release-team", e.Seq, e.Kind, e.PolicyVersion, e.PolicySigner)
			}
		}
	}
	if rejected < 5 {
		t.Errorf("%d policy.rejected events, want one per refused bundle and one at the restart", rejected)
	}
}

// TestUnsignedBundleWithNothingToFallBackOn: at a first start there is no last good
// bundle, so an unsigned one stops the gateway from starting, with a clear error.
func TestUnsignedBundleWithNothingToFallBackOn(t *testing.T) {
	t.Parallel()
	release := newSigner(t)
	path := filepath.Join(t.TempDir(), "policy.bundle")
	makeBundle(t, path, denyAllButInbox)
	cfg := &config.Config{
		DataDir:   t.TempDir(),
		Server:    config.Server{Listen: "127.0.0.1:0"},
		Admin:     config.Admin{Listen: "off"},
		Upstreams: []config.Upstream{{Name: "demo", Builtin: "demo"}},
		Tools:     []config.Tool{{Upstream: "demo", Name: "read_inbox", Class: "read"}},
		Policy:    config.Policy{Bundle: path, RequireSigned: true},
		Trust:     config.Trust{PolicySigners: []config.TrustedKey{{Name: "release-team", KeyFile: release.pubFile}}},
	}
	cfg.ApplyDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	d, err := daemon.New(t.Context(), cfg, daemon.Options{})
	if err == nil {
		stopNow(t, d)
		t.Fatal("daemon.New succeeded with an unsigned bundle")
	}
	if !errors.Is(err, sign.ErrUnsigned) || !strings.Contains(err.Error(), "policy.require_signed accepts only bundles signed by trust.policy_signers") {
		t.Errorf("daemon.New = %v", err)
	}
}

// TestBundlePromotedUnchanged: one bundle file runs in a test gateway and, once the
// production signer has added its signature (which leaves its hash alone), in a
// production gateway that trusts only that signer — with the same policy version in both.
// A dev agent is never routed to a production upstream.
func TestBundlePromotedUnchanged(t *testing.T) {
	t.Parallel()
	testSigner, prodSigner := newSigner(t), newSigner(t)
	path := filepath.Join(t.TempDir(), "policy.bundle")
	b := makeBundle(t, path, denyAllButInbox, testSigner)
	start := func(env string, s signer) *chaperonetest.Gateway {
		return chaperonetest.Start(t, chaperonetest.Options{
			Upstreams: []config.Upstream{{Name: "demo", Builtin: "demo", Environment: env}},
			Tools:     []config.Tool{{Upstream: "demo", Name: "read_inbox", Class: "read"}},
			Agents:    []string{"agent-" + env, "dev-agent"},
			Configure: func(c *config.Config) {
				c.Policy = config.Policy{Bundle: path, RequireSigned: true}
				c.Trust.PolicySigners = []config.TrustedKey{{Name: env + "-release", KeyFile: s.pubFile}}
				c.Agents[0].Environment = env
			},
		})
	}
	testGW := start("test", testSigner)

	// Production refuses the bundle until its own signer signed it.
	prodCfg := func() error {
		_, err := bundleVerify(path, prodSigner)
		return err
	}
	if err := prodCfg(); !errors.Is(err, sign.ErrUntrusted) {
		t.Fatalf("the test-signed bundle verifies for production: %v", err)
	}
	if err := b.Sign(prodSigner.key, "prod sign-off"); err != nil {
		t.Fatal(err)
	}
	raw, _ := b.Marshal()
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	prodGW := start("prod", prodSigner)
	if tv, pv := testGW.Daemon.Policy().Version(), prodGW.Daemon.Policy().Version(); tv != b.Hash || pv != b.Hash {
		t.Errorf("policy versions: test %s, prod %s, want both %s", tv, pv, b.Hash)
	}
	if got := refusal(t, call(t, prodGW.Connect(t, prodGW.Agents["agent-prod"].Token, ""), "read_inbox", map[string]any{})); got != "" {
		t.Errorf("prod agent in prod: %s", got)
	}
	if got := refusal(t, call(t, prodGW.Connect(t, prodGW.Agents["dev-agent"].Token, ""), "read_inbox", map[string]any{})); got != "environment_mismatch" {
		t.Errorf("dev agent calling a prod upstream: refusal %q, want environment_mismatch", got)
	}
}

func bundleVerify(path string, s signer) (sign.Key, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return sign.Key{}, err
	}
	b, err := bundle.Parse(raw)
	if err != nil {
		return sign.Key{}, err
	}
	kr, err := sign.NewKeyring(sign.Key{Name: "prod-release", Public: s.key.Public().(ed25519.PublicKey)})
	if err != nil {
		return sign.Key{}, err
	}
	return b.Verify(kr)
}

// adminGet GETs an admin API path and decodes its JSON answer into v.
func adminGet(t *testing.T, g *chaperonetest.Gateway, path string, v any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, g.AdminURL+path, nil)
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(readFile(t, g.Config.Admin.TokenFile)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: HTTP %d", path, resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
}
