package daemon

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/chaperone-dev/chaperone/internal/config"
	"github.com/chaperone-dev/chaperone/internal/registry"
	"github.com/chaperone-dev/chaperone/internal/sign"
)

// TestApplyManifestsFillsIn: what a tool's entry leaves out, its signed manifest gives —
// cost, undo, idempotency with the default retries, flow labels — and what the entry says
// stays.
func TestApplyManifestsFillsIn(t *testing.T) {
	dir := t.TempDir()
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pem, _ := sign.MarshalPublicKey(pub)
	keyFile := filepath.Join(dir, "pub.pem")
	manifest := filepath.Join(dir, "m.yaml")
	text := []byte(`manifest: chaperone.tools/v1
tools:
  - {name: lookup, description: x, input_schema: {type: object}, class: read, cost: 0.25, undo: nothing, idempotent: true, labels: {trust: trusted, data: public}}
  - {name: send, description: y, input_schema: {type: object}, class: external, cost: 0.5, undo: recall, idempotent: true}
`)
	s, err := sign.Sign(key, sign.ToolManifest, "", text)
	if err != nil {
		t.Fatal(err)
	}
	sig, _ := json.Marshal(registry.Signatures{Signatures: []sign.Signature{s}})
	for path, data := range map[string][]byte{keyFile: pem, manifest: text, registry.SignatureFile(manifest): sig} {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	zero := 0
	cfg := &config.Config{
		Tools: []config.Tool{
			{Upstream: "u", Name: "lookup", Class: "read"},
			{Upstream: "u", Name: "send", Class: "destructive", Cost: 2, Undo: "call the bank", Retries: &zero},
		},
		Registry: config.Registry{Manifests: []string{manifest}},
		Trust:    config.Trust{ToolPublishers: []config.TrustedKey{{Name: "pub", KeyFile: keyFile}}},
	}
	decls := []registry.Declaration{{Name: "lookup", Upstream: "u", UpstreamName: "lookup", Class: "read"},
		{Name: "send", Upstream: "u", UpstreamName: "send", Class: "destructive", Cost: 2, Undo: "call the bank"}}
	if err := applyManifests(cfg, decls); err != nil {
		t.Fatal(err)
	}
	l, sd := decls[0], decls[1]
	if l.Manifest == nil || l.Manifest.Signer != "pub" || l.Cost != 0.25 || l.Undo != "nothing" || !l.Idempotent ||
		l.Retries != config.DefaultRetries || !l.Flow.Trusted || !l.Flow.Public {
		t.Errorf("lookup = %+v", l)
	}
	// The entry's own cost, undo, class (raised) and retries (none) stand.
	if sd.Cost != 2 || sd.Undo != "call the bank" || sd.Class != "destructive" || !sd.Idempotent || sd.Retries != 0 {
		t.Errorf("send = %+v", sd)
	}
}
