package bundle_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"strings"
	"testing"

	"github.com/chaperone-dev/chaperone/internal/policy"
	"github.com/chaperone-dev/chaperone/internal/policy/bundle"
	"github.com/chaperone-dev/chaperone/internal/sign"
)

const mailPolicy = `rules:
  - id: mail-internal
    effect: allow
    agents: ["*"]
    tools: [send_email]
`

func sources() []policy.Source {
	return []policy.Source{
		{Name: "mail.yaml", Data: []byte(mailPolicy)},
		{Name: "team/read.yaml", Data: []byte("rules: []\n")},
	}
}

func newKey(tb testing.TB) ed25519.PrivateKey {
	tb.Helper()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

func trust(tb testing.TB, name string, k ed25519.PrivateKey) *sign.Keyring {
	tb.Helper()
	kr, err := sign.NewKeyring(sign.Key{Name: name, Public: k.Public().(ed25519.PublicKey)})
	if err != nil {
		tb.Fatal(err)
	}
	return kr
}

func TestBundleRoundTripAndVerify(t *testing.T) {
	t.Parallel()
	b, err := bundle.New(sources())
	if err != nil {
		t.Fatal(err)
	}
	if b.Hash != policy.VersionOf(sources()) {
		t.Errorf("Hash = %s, want the policy version of its files", b.Hash)
	}
	release, test := newKey(t), newKey(t)
	if err := b.Sign(release, "release"); err != nil {
		t.Fatal(err)
	}
	// Promotion adds a signature; the content, and so the hash, stays.
	if err := b.Sign(test, "test sign-off"); err != nil {
		t.Fatal(err)
	}
	if err := b.Sign(release, "release again"); err != nil || len(b.Signatures) != 2 {
		t.Fatalf("re-signing with the same key: %v, %d signatures", err, len(b.Signatures))
	}
	raw, err := b.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	back, err := bundle.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	if back.Hash != b.Hash || len(back.Sources()) != 2 || string(back.Sources()[0].Data) != mailPolicy {
		t.Fatalf("round trip: %+v", back)
	}
	if k, err := back.Verify(trust(t, "prod-release", release)); err != nil || k.Name != "prod-release" {
		t.Fatalf("Verify = %q, %v", k.Name, err)
	}
	if _, err := back.Verify(trust(t, "other", newKey(t))); !errors.Is(err, sign.ErrUntrusted) {
		t.Errorf("Verify by an untrusted keyring = %v, want ErrUntrusted", err)
	}

	// Tampering with a file breaks the content address before any signature is looked at.
	tampered := strings.Replace(string(raw), "send_email", "send_money", 1)
	if _, err := bundle.Parse([]byte(tampered)); !errors.Is(err, bundle.ErrTampered) {
		t.Errorf("Parse(tampered file) = %v, want ErrTampered", err)
	}
	// Tampering with the file and its hash together breaks the signature.
	b2, _ := bundle.New([]policy.Source{{Name: "mail.yaml", Data: []byte(strings.Replace(mailPolicy, "send_email", "send_money", 1))}, sources()[1]})
	b2.Signatures = back.Signatures
	raw2, _ := b2.Marshal()
	re, err := bundle.Parse(raw2)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := re.Verify(trust(t, "release", release)); !errors.Is(err, sign.ErrBadSignature) {
		t.Errorf("Verify(rehashed tampered bundle) = %v, want ErrBadSignature", err)
	}
	unsigned, _ := bundle.New(sources())
	if _, err := unsigned.Verify(trust(t, "release", release)); !errors.Is(err, sign.ErrUnsigned) {
		t.Errorf("Verify(unsigned) = %v, want ErrUnsigned", err)
	}
}

func TestParseRefusesBadBundles(t *testing.T) {
	t.Parallel()
	good, _ := bundle.New(sources())
	raw, _ := good.Marshal()
	for name, tc := range map[string]struct{ text, want string }{
		"not json":        {"rules: []", "not a bundle"},
		"unknown field":   {strings.Replace(string(raw), `"format"`, `"extra": 1, "format"`, 1), "unknown field"},
		"wrong format":    {strings.Replace(string(raw), bundle.Format, "v0", 1), "format: must be"},
		"no files":        {`{"format":"` + bundle.Format + `","hash":"sha256:x","files":[]}`, "holds no policy file"},
		"escaping name":   {strings.Replace(string(raw), `"team/read.yaml"`, `"../read.yaml"`, 1), "not a clean relative path"},
		"absolute name":   {strings.Replace(string(raw), `"team/read.yaml"`, `"/etc/read.yaml"`, 1), "not a clean relative path"},
		"not yaml":        {strings.Replace(string(raw), `"team/read.yaml"`, `"team/read.sh"`, 1), "not a .yaml or .yml file"},
		"duplicate":       {strings.Replace(string(raw), `"team/read.yaml"`, `"mail.yaml"`, 1), "appears twice"},
		"trailing data":   {string(raw) + "{}", "data after the JSON object"},
		"hash mismatch":   {strings.Replace(string(raw), good.Hash, "sha256:"+strings.Repeat("0", 64), 1), "does not match its files"},
		"control in name": {strings.Replace(string(raw), `"team/read.yaml"`, `"team/re\nad.yaml"`, 1), "control character"},
	} {
		_, err := bundle.Parse([]byte(tc.text))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Parse = %v, want an error mentioning %q", name, err, tc.want)
		}
	}
	if _, err := bundle.Parse(make([]byte, bundle.MaxBytes+1)); err == nil {
		t.Error("Parse(oversized) succeeded")
	}
	if _, err := bundle.New([]policy.Source{{Name: "x.yaml", Data: []byte{0xff}}}); err == nil {
		t.Error("New(invalid UTF-8) succeeded")
	}
}

func TestName(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ dir, file, want string }{
		{"/etc/chaperone/policies", "/etc/chaperone/policies/mail.yaml", "mail.yaml"},
		{"/etc/chaperone/policies/", "/etc/chaperone/policies/team/mail.yaml", "team/mail.yaml"},
		{"", "/etc/chaperone/policy.yaml", "policy.yaml"},
		{"/other", "/etc/chaperone/policy.yaml", "policy.yaml"},
	} {
		if got := bundle.Name(tc.dir, tc.file); got != tc.want {
			t.Errorf("Name(%q, %q) = %q, want %q", tc.dir, tc.file, got, tc.want)
		}
	}
}

func FuzzParse(f *testing.F) {
	good, _ := bundle.New(sources())
	raw, _ := good.Marshal()
	f.Add(raw)
	f.Add([]byte(`{"format":"` + bundle.Format + `"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := bundle.Parse(data)
		if err != nil {
			return
		}
		if b.Hash != policy.VersionOf(b.Sources()) {
			t.Fatalf("a parsed bundle's hash %s is not its files' %s", b.Hash, policy.VersionOf(b.Sources()))
		}
		again, err := b.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := bundle.Parse(again); err != nil {
			t.Fatalf("a parsed bundle does not parse again: %v", err)
		}
	})
}
