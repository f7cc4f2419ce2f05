package sign_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"strings"
	"testing"

	"github.com/chaperone-dev/chaperone/internal/sign"
)

func newKey(t testing.TB) ed25519.PrivateKey {
	t.Helper()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func pub(k ed25519.PrivateKey) ed25519.PublicKey { return k.Public().(ed25519.PublicKey) }

func TestVerify(t *testing.T) {
	t.Parallel()
	alice, bob, mallory := newKey(t), newKey(t), newKey(t)
	kr, err := sign.NewKeyring(sign.Key{Name: "alice", Public: pub(alice)}, sign.Key{Name: "bob", Public: pub(bob)})
	if err != nil {
		t.Fatal(err)
	}
	msg := []byte("tools: [send_email]")
	good, err := sign.Sign(alice, sign.ToolManifest, "Alice's team", msg)
	if err != nil {
		t.Fatal(err)
	}
	k, err := kr.Verify(sign.ToolManifest, msg, []sign.Signature{good})
	if err != nil || k.Name != "alice" {
		t.Fatalf("Verify = %q, %v; want alice", k.Name, err)
	}
	// The keyring names the signer, whatever the signature calls itself.
	liar, _ := sign.Sign(bob, sign.ToolManifest, "alice", msg)
	if k, err := kr.Verify(sign.ToolManifest, msg, []sign.Signature{liar}); err != nil || k.Name != "bob" {
		t.Fatalf("Verify(bob claiming alice) = %q, %v; want bob", k.Name, err)
	}
	untrusted, _ := sign.Sign(mallory, sign.ToolManifest, "mallory", msg)
	// An untrusted signature beside a good one is ignored.
	if k, err := kr.Verify(sign.ToolManifest, msg, []sign.Signature{untrusted, good}); err != nil || k.Name != "alice" {
		t.Fatalf("Verify(untrusted, good) = %q, %v", k.Name, err)
	}
	tampered := good
	tampered.Sig = strings.Replace(good.Sig, good.Sig[:4], "AAAA", 1)

	for name, tc := range map[string]struct {
		purpose sign.Purpose
		msg     []byte
		sigs    []sign.Signature
		want    error
	}{
		"unsigned":          {sign.ToolManifest, msg, nil, sign.ErrUnsigned},
		"untrusted signer":  {sign.ToolManifest, msg, []sign.Signature{untrusted}, sign.ErrUntrusted},
		"changed content":   {sign.ToolManifest, []byte("tools: [send_money]"), []sign.Signature{good}, sign.ErrBadSignature},
		"other purpose":     {sign.PolicyBundle, msg, []sign.Signature{good}, sign.ErrBadSignature},
		"forged signature":  {sign.ToolManifest, msg, []sign.Signature{tampered}, sign.ErrBadSignature},
		"not base64":        {sign.ToolManifest, msg, []sign.Signature{{KeyID: good.KeyID, Sig: "!!"}}, sign.ErrBadSignature},
		"bad beside good":   {sign.ToolManifest, msg, []sign.Signature{good, tampered}, sign.ErrBadSignature},
		"too many":          {sign.ToolManifest, msg, make([]sign.Signature, sign.MaxSignatures+1), sign.ErrBadSignature},
		"short signature":   {sign.ToolManifest, msg, []sign.Signature{{KeyID: good.KeyID, Sig: "AAAA"}}, sign.ErrBadSignature},
		"empty key id":      {sign.ToolManifest, msg, []sign.Signature{{Sig: good.Sig}}, sign.ErrUntrusted},
		"other key same id": {sign.ToolManifest, msg, []sign.Signature{{KeyID: sign.KeyID(pub(bob)), Sig: good.Sig}}, sign.ErrBadSignature},
	} {
		if _, err := kr.Verify(tc.purpose, tc.msg, tc.sigs); !errors.Is(err, tc.want) {
			t.Errorf("%s: Verify = %v, want %v", name, err, tc.want)
		}
	}
	var empty *sign.Keyring
	if _, err := empty.Verify(sign.ToolManifest, msg, []sign.Signature{good}); !errors.Is(err, sign.ErrUntrusted) {
		t.Errorf("nil keyring: Verify = %v, want ErrUntrusted", err)
	}
}

func TestSignRefusesBadInput(t *testing.T) {
	t.Parallel()
	k := newKey(t)
	if _, err := sign.Sign(k[:10], sign.ToolManifest, "x", nil); err == nil {
		t.Error("Sign with a short key succeeded")
	}
	if _, err := sign.Sign(k, sign.ToolManifest, "a\nb", nil); err == nil {
		t.Error("Sign with a control character in the signer succeeded")
	}
	if _, err := sign.Sign(k, sign.ToolManifest, strings.Repeat("x", sign.MaxSignerLength+1), nil); err == nil {
		t.Error("Sign with an oversized signer succeeded")
	}
}

func TestNewKeyringRefusesAmbiguity(t *testing.T) {
	t.Parallel()
	a, b := newKey(t), newKey(t)
	for name, keys := range map[string][]sign.Key{
		"same name": {{Name: "x", Public: pub(a)}, {Name: "x", Public: pub(b)}},
		"same key":  {{Name: "x", Public: pub(a)}, {Name: "y", Public: pub(a)}},
		"no name":   {{Public: pub(a)}},
		"short key": {{Name: "x", Public: pub(a)[:8]}},
	} {
		if _, err := sign.NewKeyring(keys...); err == nil {
			t.Errorf("%s: NewKeyring succeeded", name)
		}
	}
}

func TestKeysPEM(t *testing.T) {
	t.Parallel()
	key := newKey(t)
	priv, err := sign.MarshalPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	back, err := sign.ParsePrivateKey(priv)
	if err != nil || !back.Equal(key) {
		t.Fatalf("ParsePrivateKey = %v, %v", back, err)
	}
	pubPEM, err := sign.MarshalPublicKey(pub(key))
	if err != nil {
		t.Fatal(err)
	}
	other := newKey(t)
	otherPEM, _ := sign.MarshalPublicKey(pub(other))
	keys, err := sign.ParsePublicKeys(append(append(pubPEM, otherPEM...), priv...))
	if err != nil || len(keys) != 3 || !keys[0].Equal(key.Public()) || !keys[2].Equal(key.Public()) {
		t.Fatalf("ParsePublicKeys = %d keys, %v", len(keys), err)
	}
	for name, b := range map[string][]byte{
		"empty":        nil,
		"not pem":      []byte("hello"),
		"wrong block":  []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
		"garbage body": []byte("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"),
	} {
		if _, err := sign.ParsePublicKeys(b); err == nil {
			t.Errorf("%s: ParsePublicKeys succeeded", name)
		}
	}
	if _, err := sign.ParsePrivateKey(pubPEM); err == nil {
		t.Error("ParsePrivateKey(public key) succeeded")
	}
}

func FuzzParsePublicKeys(f *testing.F) {
	k := newKey(f)
	p, _ := sign.MarshalPublicKey(pub(k))
	s, _ := sign.MarshalPrivateKey(k)
	f.Add(p)
	f.Add(s)
	f.Add([]byte("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		keys, err := sign.ParsePublicKeys(b)
		if err == nil {
			for _, k := range keys {
				if len(k) != ed25519.PublicKeySize {
					t.Fatalf("a key of %d bytes", len(k))
				}
			}
		}
		_, _ = sign.ParsePrivateKey(b)
	})
}
