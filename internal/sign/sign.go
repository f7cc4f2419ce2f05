// Package sign is how Chaperone signs what it must not load unless someone it trusts
// vouched for it — tool manifests, policy bundles — and encodes the Ed25519 keys involved,
// the audit log's checkpoint keys among them.
//
// A signature covers a purpose and a message: the bytes signed are the purpose, a NUL byte
// and the message. A signature made for one purpose (a tool manifest) therefore never
// verifies for another (a policy bundle), even over the same bytes.
//
// Trust comes from a [Keyring] the operator configured: the name of a signer is the name
// the keyring gives its key, never what a signature claims about itself.
package sign

import (
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Purpose says what a signature is for; it is part of what is signed.
type Purpose string

// The purposes Chaperone signs for.
const (
	ToolManifest Purpose = "chaperone tool manifest v1"
	PolicyBundle Purpose = "chaperone policy bundle v1"
)

// Signature is one detached signature.
type Signature struct {
	// Signer is the name the signer gave itself when signing: informational only; a
	// keyring names the key it trusts.
	Signer string `json:"signer,omitempty"`
	// KeyID names the public key that verifies it; see [KeyID].
	KeyID string `json:"key_id"`
	// Sig is the base64 (standard, padded) Ed25519 signature of [SignedBytes].
	Sig string `json:"signature"`
}

// Bounds of signatures.
const (
	// MaxSignatures bounds the signatures one document may carry.
	MaxSignatures = 16
	// MaxSignerLength bounds a signer's self-given name.
	MaxSignerLength = 128
)

// SignedBytes is what a signature for purpose p over msg covers: p, a NUL byte, msg.
func SignedBytes(p Purpose, msg []byte) []byte {
	b := make([]byte, 0, len(p)+1+len(msg))
	b = append(b, p...)
	b = append(b, 0)
	return append(b, msg...)
}

// Sign signs msg for purpose p with key; signer is the name recorded beside it.
func Sign(key ed25519.PrivateKey, p Purpose, signer string, msg []byte) (Signature, error) {
	if len(key) != ed25519.PrivateKeySize {
		return Signature{}, fmt.Errorf("sign: key of %d bytes, want %d", len(key), ed25519.PrivateKeySize)
	}
	if err := checkSigner(signer); err != nil {
		return Signature{}, err
	}
	sig := ed25519.Sign(key, SignedBytes(p, msg))
	return Signature{Signer: signer, KeyID: KeyID(key.Public().(ed25519.PublicKey)), Sig: base64.StdEncoding.EncodeToString(sig)}, nil
}

func checkSigner(s string) error {
	if len(s) > MaxSignerLength {
		return fmt.Errorf("sign: signer name of %d bytes, at most %d", len(s), MaxSignerLength)
	}
	if strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return errors.New("sign: signer name has a control character")
	}
	return nil
}

// Key is a public key an operator trusts, under the name the operator gave it.
type Key struct {
	Name   string
	Public ed25519.PublicKey
}

// ID returns the key's id; see [KeyID].
func (k Key) ID() string { return KeyID(k.Public) }

// Keyring is a set of trusted keys. The zero value trusts nobody.
type Keyring struct {
	keys []Key
}

// NewKeyring returns a keyring of keys. Two keys with the same name, or the same key twice,
// are an error: a name must say who signed.
func NewKeyring(keys ...Key) (*Keyring, error) {
	kr := &Keyring{}
	names := map[string]bool{}
	ids := map[string]string{}
	for i, k := range keys {
		if len(k.Public) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("sign: key %d (%q): %d bytes, want an Ed25519 public key of %d", i+1, k.Name, len(k.Public), ed25519.PublicKeySize)
		}
		if k.Name == "" {
			return nil, fmt.Errorf("sign: key %d has no name", i+1)
		}
		if names[k.Name] {
			return nil, fmt.Errorf("sign: two keys are named %q", k.Name)
		}
		if other, dup := ids[k.ID()]; dup {
			return nil, fmt.Errorf("sign: keys %q and %q are the same key", other, k.Name)
		}
		names[k.Name], ids[k.ID()] = true, k.Name
		kr.keys = append(kr.keys, Key{Name: k.Name, Public: slices.Clone(k.Public)})
	}
	return kr, nil
}

// Len returns how many keys the keyring trusts.
func (kr *Keyring) Len() int {
	if kr == nil {
		return 0
	}
	return len(kr.keys)
}

func (kr *Keyring) byID(id string) (Key, bool) {
	if kr == nil {
		return Key{}, false
	}
	for _, k := range kr.keys {
		if k.ID() == id {
			return k, true
		}
	}
	return Key{}, false
}

// Errors of [Keyring.Verify], wrapped with what was found.
var (
	// ErrUnsigned: the document carries no signature.
	ErrUnsigned = errors.New("not signed")
	// ErrUntrusted: every signature is by a key the keyring does not trust.
	ErrUntrusted = errors.New("not signed by a trusted key")
	// ErrBadSignature: a signature by a trusted key does not verify — the content changed
	// after it was signed, or the signature was forged.
	ErrBadSignature = errors.New("signature does not verify")
)

// Verify returns the trusted key of the first signature in sigs that is by a trusted key
// and verifies msg for purpose p. A signature by a trusted key that does not verify is
// never skipped over: it means the content was changed or the signature forged, and Verify
// fails with [ErrBadSignature] even if another signature verifies.
func (kr *Keyring) Verify(p Purpose, msg []byte, sigs []Signature) (Key, error) {
	if len(sigs) == 0 {
		return Key{}, ErrUnsigned
	}
	if len(sigs) > MaxSignatures {
		return Key{}, fmt.Errorf("%d signatures, at most %d: %w", len(sigs), MaxSignatures, ErrBadSignature)
	}
	signed := SignedBytes(p, msg)
	var found *Key
	var untrusted []string
	for _, s := range sigs {
		k, ok := kr.byID(s.KeyID)
		if !ok {
			untrusted = append(untrusted, describe(s))
			continue
		}
		raw, err := base64.StdEncoding.DecodeString(s.Sig)
		if err != nil || len(raw) != ed25519.SignatureSize || !ed25519.Verify(k.Public, signed, raw) {
			return Key{}, fmt.Errorf("the signature by trusted key %q (%s): %w: the content was changed after it was signed, or the signature is forged", k.Name, k.ID(), ErrBadSignature)
		}
		if found == nil {
			found = &k
		}
	}
	if found == nil {
		return Key{}, fmt.Errorf("signed by %s: %w", strings.Join(untrusted, ", "), ErrUntrusted)
	}
	return *found, nil
}

func describe(s Signature) string {
	if s.Signer == "" {
		return fmt.Sprintf("key %s", s.KeyID)
	}
	return fmt.Sprintf("%q (key %s)", s.Signer, s.KeyID)
}

// KeyID names a public key: "ed25519:" and the first 16 hex digits of the SHA-256 of the
// key's 32 bytes.
func KeyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return "ed25519:" + hex.EncodeToString(sum[:8])
}

// MarshalPrivateKey encodes key as a PKCS #8 PEM block ("PRIVATE KEY"), the form
// `openssl pkey` reads.
func MarshalPrivateKey(key ed25519.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// ParsePrivateKey decodes a PKCS #8 PEM Ed25519 private key.
func ParsePrivateKey(b []byte) (ed25519.PrivateKey, error) {
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "PRIVATE KEY" {
		return nil, errors.New("private key: not a PEM \"PRIVATE KEY\" block")
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("private key: %w", err)
	}
	ek, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("private key: a %T, want an Ed25519 key", k)
	}
	return ek, nil
}

// MarshalPublicKey encodes pub as a PKIX PEM block ("PUBLIC KEY").
func MarshalPublicKey(pub ed25519.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("encode public key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}

// ParsePublicKeys decodes every PKIX PEM Ed25519 public key in b, in order. A "PRIVATE
// KEY" block yields its public half, so a signer's own key file verifies what it signed.
func ParsePublicKeys(b []byte) ([]ed25519.PublicKey, error) {
	var keys []ed25519.PublicKey
	for n := 1; ; n++ {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		switch blk.Type {
		case "PUBLIC KEY":
			k, err := x509.ParsePKIXPublicKey(blk.Bytes)
			if err != nil {
				return nil, fmt.Errorf("public key %d: %w", n, err)
			}
			ek, ok := k.(ed25519.PublicKey)
			if !ok {
				return nil, fmt.Errorf("public key %d: a %T, want an Ed25519 key", n, k)
			}
			keys = append(keys, ek)
		case "PRIVATE KEY":
			k, err := ParsePrivateKey(pem.EncodeToMemory(blk))
			if err != nil {
				return nil, fmt.Errorf("key %d: %w", n, err)
			}
			keys = append(keys, k.Public().(ed25519.PublicKey))
		default:
			return nil, fmt.Errorf("key %d: PEM block %q, want \"PUBLIC KEY\"", n, blk.Type)
		}
	}
	if len(keys) == 0 {
		return nil, errors.New("no PEM \"PUBLIC KEY\" block found")
	}
	return keys, nil
}
