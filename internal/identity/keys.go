package identity

import (
	"cmp"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"
)

// SigningKey is one Ed25519 key of the gateway's token issuer.
type SigningKey struct {
	ID      string // kid: see [GenerateSigningKey]
	Private ed25519.PrivateKey
	Created time.Time
	// Retired is when the key stopped signing; zero while it signs. A retired key still
	// verifies the tokens it signed until they have all expired.
	Retired time.Time
}

// GenerateSigningKey returns a fresh key created at now. Its ID is the base64url form of the
// first 12 bytes of the SHA-256 of the public key.
func GenerateSigningKey(now time.Time) (SigningKey, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return SigningKey{}, fmt.Errorf("generate signing key: %w", err)
	}
	return SigningKey{ID: keyID(priv.Public().(ed25519.PublicKey)), Private: priv, Created: now}, nil
}

func keyID(pub ed25519.PublicKey) string {
	h := sha256.Sum256(pub)
	return b64.EncodeToString(h[:12])
}

// KeySet is the issuer's keys: the newest non-retired key signs, and every key verifies
// until its Retired time plus the maximum token lifetime has passed, so tokens signed by a
// rotated-out key stay valid until they expire. A KeySet is immutable and safe for
// concurrent use; rotation builds a new one (see [KeySet.Rotate]).
type KeySet struct {
	keys        []SigningKey // newest first
	active      int          // index in keys of the signing key
	maxTokenTTL time.Duration
	byID        map[string]verifyKey
}

type verifyKey struct {
	pub   ed25519.PublicKey
	until time.Time // zero: while the key is active, no limit
}

// NewKeySet builds a key set. maxTokenTTL is the longest lifetime of a token the keys sign;
// it should also cover the verifier's leeway. It is an error if no key is active, or if keys
// are malformed or share an ID.
func NewKeySet(keys []SigningKey, maxTokenTTL time.Duration) (*KeySet, error) {
	if maxTokenTTL <= 0 {
		return nil, fmt.Errorf("new key set: max token ttl must be positive, got %s", maxTokenTTL)
	}
	ks := &KeySet{maxTokenTTL: maxTokenTTL, byID: make(map[string]verifyKey, len(keys)), active: -1}
	for i, k := range keys {
		if k.ID == "" {
			return nil, fmt.Errorf("new key set: key %d: no id", i)
		}
		if len(k.Private) != ed25519.PrivateKeySize {
			return nil, fmt.Errorf("new key set: key %q: not an Ed25519 private key", k.ID)
		}
		if _, dup := ks.byID[k.ID]; dup {
			return nil, fmt.Errorf("new key set: key %q: listed twice", k.ID)
		}
		k.Private = slices.Clone(k.Private)
		vk := verifyKey{pub: k.Private.Public().(ed25519.PublicKey)}
		if !k.Retired.IsZero() {
			vk.until = k.Retired.Add(maxTokenTTL)
		}
		ks.byID[k.ID] = vk
		ks.keys = append(ks.keys, k)
	}
	slices.SortFunc(ks.keys, func(a, b SigningKey) int {
		if c := b.Created.Compare(a.Created); c != 0 {
			return c
		}
		return cmp.Compare(a.ID, b.ID)
	})
	for i, k := range ks.keys {
		if k.Retired.IsZero() {
			ks.active = i
			break
		}
	}
	if ks.active < 0 {
		return nil, errors.New("new key set: no active (non-retired) key")
	}
	return ks, nil
}

// Keys returns the set's keys, newest first, for storing.
func (ks *KeySet) Keys() []SigningKey {
	out := make([]SigningKey, len(ks.keys))
	for i, k := range ks.keys {
		k.Private = slices.Clone(k.Private)
		out[i] = k
	}
	return out
}

// signer returns the key that signs.
func (ks *KeySet) signer() *SigningKey { return &ks.keys[ks.active] }

// verifier returns the public key with the given ID if it still verifies at now.
func (ks *KeySet) verifier(kid string, now time.Time) (ed25519.PublicKey, bool) {
	vk, ok := ks.byID[kid]
	if !ok || (!vk.until.IsZero() && !now.Before(vk.until)) {
		return nil, false
	}
	return vk.pub, true
}

type jwk struct {
	Kty string `json:"kty"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Kid string `json:"kid"`
	Alg string `json:"alg"`
	Use string `json:"use"`
}

// JWKS returns the RFC 7517 JSON Web Key Set of the keys that still verify at now, newest
// first, for relying parties that verify the gateway's tokens themselves.
func (ks *KeySet) JWKS(now time.Time) []byte {
	set := struct {
		Keys []jwk `json:"keys"`
	}{Keys: []jwk{}}
	for _, k := range ks.keys {
		pub, ok := ks.verifier(k.ID, now)
		if !ok {
			continue
		}
		set.Keys = append(set.Keys, jwk{Kty: "OKP", Crv: "Ed25519", X: b64.EncodeToString(pub), Kid: k.ID, Alg: "EdDSA", Use: "sig"})
	}
	b, err := json.Marshal(set)
	if err != nil {
		panic("identity: marshal jwks: " + err.Error()) // only strings: cannot fail
	}
	return b
}

// Rotate returns a new set in which a fresh key signs and every previously active key is
// retired at now, together with the new key. Keys that no longer verify at now are dropped.
func (ks *KeySet) Rotate(now time.Time) (*KeySet, SigningKey, error) {
	nk, err := GenerateSigningKey(now)
	if err != nil {
		return nil, SigningKey{}, fmt.Errorf("rotate: %w", err)
	}
	keys := []SigningKey{nk}
	for _, k := range ks.keys {
		if k.Retired.IsZero() {
			k.Retired = now
		}
		if !now.Before(k.Retired.Add(ks.maxTokenTTL)) {
			continue
		}
		keys = append(keys, k)
	}
	next, err := NewKeySet(keys, ks.maxTokenTTL)
	if err != nil {
		return nil, SigningKey{}, fmt.Errorf("rotate: %w", err)
	}
	return next, nk, nil
}
