package identity

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/json"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func mustKey(tb testing.TB, created time.Time) SigningKey {
	tb.Helper()
	k, err := GenerateSigningKey(created)
	if err != nil {
		tb.Fatalf("GenerateSigningKey: %v", err)
	}
	return k
}

func TestGenerateSigningKey(t *testing.T) {
	t.Parallel()
	k := mustKey(t, jwtT0)
	pub := k.Private.Public().(ed25519.PublicKey)
	h := sha256.Sum256(pub)
	if want := b64.EncodeToString(h[:12]); k.ID != want {
		t.Errorf("ID = %q, want %q (base64url of the first 12 bytes of SHA-256 of the public key)", k.ID, want)
	}
	if !k.Created.Equal(jwtT0) || !k.Retired.IsZero() {
		t.Errorf("Created, Retired = %v, %v; want %v, zero", k.Created, k.Retired, jwtT0)
	}
	if k2 := mustKey(t, jwtT0); k2.ID == k.ID {
		t.Error("two generated keys share an ID")
	}
}

func jwksKids(tb testing.TB, b []byte) []string {
	tb.Helper()
	var set struct {
		Keys []map[string]string `json:"keys"`
	}
	if err := json.Unmarshal(b, &set); err != nil {
		tb.Fatalf("JWKS is not JSON: %v", err)
	}
	kids := []string{}
	for _, k := range set.Keys {
		kids = append(kids, k["kid"])
	}
	return kids
}

func TestKeySetJWKS(t *testing.T) {
	t.Parallel()
	ttl := time.Hour
	active := mustKey(t, jwtT0.Add(-time.Hour))
	recent := mustKey(t, jwtT0.Add(-2*time.Hour))
	recent.Retired = jwtT0.Add(-time.Hour) // verifies until jwtT0
	old := mustKey(t, jwtT0.Add(-3*time.Hour))
	old.Retired = jwtT0.Add(-90 * time.Minute) // verifies until jwtT0-30m
	ks, err := NewKeySet([]SigningKey{old, active, recent}, ttl)
	if err != nil {
		t.Fatalf("NewKeySet: %v", err)
	}
	if got := ks.signer().ID; got != active.ID {
		t.Errorf("signing key = %q, want the newest active %q", got, active.ID)
	}

	tests := []struct {
		name string
		at   time.Time
		want []string
	}{
		{"all still verifying", jwtT0.Add(-31 * time.Minute), []string{active.ID, recent.ID, old.ID}},
		{"old key expired", jwtT0.Add(-30 * time.Minute), []string{active.ID, recent.ID}},
		{"recent key about to expire", jwtT0.Add(-time.Second), []string{active.ID, recent.ID}},
		{"only the active key", jwtT0, []string{active.ID}},
		{"active key never expires", jwtT0.AddDate(1, 0, 0), []string{active.ID}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if diff := cmp.Diff(tt.want, jwksKids(t, ks.JWKS(tt.at))); diff != "" {
				t.Errorf("JWKS(%v) kids mismatch (-want +got):\n%s", tt.at, diff)
			}
		})
	}

	var set struct {
		Keys []map[string]string `json:"keys"`
	}
	if err := json.Unmarshal(ks.JWKS(jwtT0), &set); err != nil {
		t.Fatal(err)
	}
	pub := active.Private.Public().(ed25519.PublicKey)
	want := []map[string]string{{"kty": "OKP", "crv": "Ed25519", "x": b64.EncodeToString(pub), "kid": active.ID, "alg": "EdDSA", "use": "sig"}}
	if diff := cmp.Diff(want, set.Keys); diff != "" {
		t.Errorf("JWKS mismatch (-want +got):\n%s", diff)
	}
	if a, b := ks.JWKS(jwtT0), ks.JWKS(jwtT0); string(a) != string(b) {
		t.Errorf("JWKS is not deterministic: %s vs %s", a, b)
	}
}

func TestKeySetRotate(t *testing.T) {
	t.Parallel()
	ttl := time.Hour
	first := mustKey(t, jwtT0)
	ks, err := NewKeySet([]SigningKey{first}, ttl)
	if err != nil {
		t.Fatal(err)
	}
	iss1 := issuerAt(t, ks, jwtT0)
	raw := mustMint(t, iss1, baseClaims())

	rotatedAt := jwtT0.Add(time.Minute)
	ks2, second, err := ks.Rotate(rotatedAt)
	if err != nil {
		t.Fatalf("Rotate: %v", err)
	}
	if got := ks2.signer().ID; got != second.ID || got == first.ID {
		t.Errorf("after Rotate the signing key is %q, want the new key %q", got, second.ID)
	}
	if ks.signer().ID != first.ID {
		t.Error("Rotate changed the original key set; want it immutable")
	}
	wantKeys := []SigningKey{second, {ID: first.ID, Private: first.Private, Created: first.Created, Retired: rotatedAt}}
	if diff := cmp.Diff(wantKeys, ks2.Keys()); diff != "" {
		t.Errorf("Keys() after Rotate mismatch (-want +got):\n%s", diff)
	}

	// The old key's token still verifies under the new set until it expires.
	if _, err := issuerAt(t, ks2, jwtT0.Add(5*time.Minute)).Verify(raw); err != nil {
		t.Errorf("Verify(token of rotated-out key) = %v, want valid", err)
	}
	// New tokens are signed with the new key.
	h, _ := jwtParts(t, mustMint(t, issuerAt(t, ks2, rotatedAt), baseClaims()))
	if h["kid"] != second.ID {
		t.Errorf("kid after Rotate = %v, want %q", h["kid"], second.ID)
	}

	// A second rotation after the first key's grace period drops it.
	ks3, third, err := ks2.Rotate(rotatedAt.Add(ttl))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{third.ID, second.ID}, jwksKids(t, ks3.JWKS(rotatedAt.Add(ttl)))); diff != "" {
		t.Errorf("JWKS after second Rotate mismatch (-want +got):\n%s", diff)
	}
	if got := len(ks3.Keys()); got != 2 {
		t.Errorf("len(Keys()) after second Rotate = %d, want 2 (expired key pruned)", got)
	}
}

func TestNewKeySetRefuses(t *testing.T) {
	t.Parallel()
	k := mustKey(t, jwtT0)
	retired := mustKey(t, jwtT0)
	retired.Retired = jwtT0
	tests := []struct {
		name string
		keys []SigningKey
		ttl  time.Duration
	}{
		{"no keys", nil, time.Hour},
		{"no active key", []SigningKey{retired}, time.Hour},
		{"no id", []SigningKey{{Private: k.Private, Created: jwtT0}}, time.Hour},
		{"short private key", []SigningKey{{ID: "x", Private: k.Private[:32], Created: jwtT0}}, time.Hour},
		{"duplicate id", []SigningKey{k, k}, time.Hour},
		{"zero max ttl", []SigningKey{k}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if _, err := NewKeySet(tt.keys, tt.ttl); err == nil {
				t.Errorf("NewKeySet(%s) succeeded, want error", tt.name)
			}
		})
	}
}
