package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/chaperone-dev/chaperone/internal/secrets"
	"github.com/chaperone-dev/chaperone/internal/store"
)

// Sealed secrets (secrets.Store). The store sees only ciphertext: these cases use
// arbitrary bytes of the right sizes, since sealing is package secrets' business.

func ctSecretCases() []ctCase {
	return []ctCase{
		{"RoundTrip", ctSecretRoundTrip},
		{"Replace", ctSecretReplace},
		{"ByName", ctSecretsByName},
		{"Delete", ctSecretDelete},
		{"Reencrypt", ctSecretReencrypt},
		{"ReencryptRace", ctSecretReencryptRace},
		{"PutRace", ctSecretPutRace},
		{"RefusesInvalid", ctSecretInvalid},
		{"UnusableNames", ctSecretUnusableNames},
		{"Cancelled", ctSecretCancelled},
	}
}

// ctSealed returns a nonce and a ciphertext of n bytes, both derived from seed, so that
// records differ where it matters.
func ctSealed(seed byte, n int) (nonce, ciphertext []byte) {
	nonce = bytes.Repeat([]byte{seed}, secrets.NonceSize)
	ciphertext = make([]byte, n)
	for i := range ciphertext {
		ciphertext[i] = seed ^ byte(i)
	}
	return nonce, ciphertext
}

// ctSecret is a valid record named name, created and updated at ctT0.
func ctSecret(name string) secrets.Record {
	nonce, ct := ctSealed(name[0], 40)
	return secrets.Record{
		Name: name, Description: "the " + name + " key", KeyID: "k1", Nonce: nonce, Ciphertext: ct,
		Created: ctT0, Updated: ctT0, UpdatedBy: "admin-api",
	}
}

func ctPutSecret(t *testing.T, st store.Store, r secrets.Record) secrets.Record {
	t.Helper()
	got, err := st.PutSecret(t.Context(), r)
	if err != nil {
		t.Fatalf("PutSecret(%q): %v", r.Name, err)
	}
	return got
}

// ctWantSecret checks that the stored secret want.Name is want, and returns it.
func ctWantSecret(t *testing.T, st store.Store, want secrets.Record) {
	t.Helper()
	got, ok, err := st.Secret(t.Context(), want.Name)
	if err != nil || !ok {
		t.Fatalf("Secret(%q) = _, %v, %v; want the secret", want.Name, ok, err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Secret(%q) (-want +got):\n%s", want.Name, diff)
	}
	ctUTC(t, "Secret("+want.Name+") times", got.Created, got.Updated)
}

func ctSecretRoundTrip(t *testing.T, st store.Store) {
	ctx := t.Context()
	if got, ok, err := st.Secret(ctx, "crm-key"); ok || err != nil {
		t.Fatalf("Secret(crm-key) on an empty store = %+v, %v, %v; want false, nil", got, ok, err)
	}
	if got, err := st.Secrets(ctx); err != nil || len(got) != 0 {
		t.Fatalf("Secrets() on an empty store = %v, %v; want none", got, err)
	}

	// Times come back in UTC, truncated to the microsecond, whatever zone they were given
	// in; bytes come back exactly, NULs and high bytes included; the largest ciphertext
	// and the longest fields fit.
	zone := time.FixedZone("UTC-3", -3*3600)
	nonce, ct := ctSealed(0xff, secrets.MaxCiphertext)
	ct[0], ct[1] = 0, 0x80
	full := secrets.Record{
		Name: "crm.key_v2-" + strings.Repeat("x", secrets.MaxName-11), Description: "CRM API key — prod " + strings.Repeat("é", 89) + "!",
		KeyID: "k-2026_03" + strings.Repeat("z", 23), Nonce: nonce, Ciphertext: ct, Version: 99,
		Created: ctT0.Add(789 * time.Nanosecond).In(zone), Updated: ctT0.Add(time.Hour + time.Microsecond).In(zone),
		UpdatedBy: "cli:" + strings.Repeat("ä", 62),
	}
	ctAllSet(t, "the full secret", full)
	got := ctPutSecret(t, st, full)
	want := full
	want.Version = 1 // the store's, not the caller's
	want.Created, want.Updated = ctT0, ctT0.Add(time.Hour+time.Microsecond)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("PutSecret(full) returned (-want +got):\n%s", diff)
	}
	ctWantSecret(t, st, want)

	// Before 1970 and far ahead: a time store must not lose the sign or the width; the
	// smallest ciphertext and an empty description fit.
	old := ctSecret("0")
	old.Description = ""
	old.Nonce, old.Ciphertext = ctSealed(1, secrets.MinCiphertext)
	old.Created = time.Date(1969, 12, 31, 23, 59, 59, 999999000, time.UTC)
	old.Updated = time.Date(9999, 12, 31, 23, 59, 59, 999999000, time.UTC)
	ctPutSecret(t, st, old)
	old.Version = 1
	ctWantSecret(t, st, old)

	// What the store returned is not aliased to what it keeps.
	got.Ciphertext[5] ^= 1
	ctWantSecret(t, st, want)
}

func ctSecretReplace(t *testing.T, st store.Store) {
	r := ctSecret("crm")
	ctPutSecret(t, st, r)

	// A replace writes every field but Created, and counts the version up.
	upd := r
	upd.Description, upd.KeyID, upd.UpdatedBy = "", "k2", "cli:bob"
	upd.Nonce, upd.Ciphertext = ctSealed(7, 17)
	upd.Created, upd.Updated = ctT0.Add(48*time.Hour), ctT0.Add(time.Minute)
	upd.Version = 1 // ignored
	got := ctPutSecret(t, st, upd)
	upd.Created, upd.Version = ctT0, 2
	if diff := cmp.Diff(upd, got); diff != "" {
		t.Errorf("PutSecret(crm) again returned (-want +got):\n%s", diff)
	}
	ctWantSecret(t, st, upd)
	for v := int64(3); v <= 5; v++ {
		if got := ctPutSecret(t, st, upd); got.Version != v {
			t.Errorf("PutSecret(crm) #%d: Version = %d, want %d", v, got.Version, v)
		}
	}
	// Deleted and set again, a secret starts over.
	if err := st.DeleteSecret(t.Context(), "crm"); err != nil {
		t.Fatalf("DeleteSecret(crm): %v", err)
	}
	again := r
	again.Created = ctT0.Add(time.Hour)
	if got := ctPutSecret(t, st, again); got.Version != 1 || !got.Created.Equal(again.Created) {
		t.Errorf("PutSecret(crm) after delete = version %d, created %v; want 1 and %v", got.Version, got.Created, again.Created)
	}
}

func ctSecretsByName(t *testing.T, st store.Store) {
	// As bytes: '-' < '.' < '0' < '_' < 'a'; a linguistic collation would ignore the
	// punctuation.
	want := []string{"10", "a-c", "a.b", "a0", "a_b", "ab", "z"}
	for _, i := range []int{5, 2, 6, 0, 4, 1, 3} {
		r := ctSecret(want[i])
		r.Created = ctT0.Add(time.Duration(i) * time.Second) // not the order either
		ctPutSecret(t, st, r)
	}
	got, err := st.Secrets(t.Context())
	if err != nil {
		t.Fatalf("Secrets: %v", err)
	}
	names := make([]string, len(got))
	for i, r := range got {
		names[i] = r.Name
		if w := ctSecret(r.Name); !bytes.Equal(r.Ciphertext, w.Ciphertext) || r.Version != 1 {
			t.Errorf("Secrets()[%d] = %+v, want the fields it was put with", i, r)
		}
	}
	if diff := cmp.Diff(want, names); diff != "" {
		t.Errorf("Secrets() names, by byte order (-want +got):\n%s", diff)
	}
}

func ctSecretDelete(t *testing.T, st store.Store) {
	ctx := t.Context()
	ctPutSecret(t, st, ctSecret("a"))
	ctPutSecret(t, st, ctSecret("b"))
	if err := st.DeleteSecret(ctx, "a"); err != nil {
		t.Fatalf("DeleteSecret(a): %v", err)
	}
	if _, ok, err := st.Secret(ctx, "a"); ok || err != nil {
		t.Errorf("Secret(a) after delete = %v, %v; want false, nil", ok, err)
	}
	ctCheckErr(t, "DeleteSecret(a) again", st.DeleteSecret(ctx, "a"), secrets.ErrUnknownSecret)
	ctCheckErr(t, "DeleteSecret(nobody)", st.DeleteSecret(ctx, "nobody"), secrets.ErrUnknownSecret)
	if got, err := st.Secrets(ctx); err != nil || len(got) != 1 || got[0].Name != "b" {
		t.Errorf("Secrets() after deleting a = %v, %v; want b alone", got, err)
	}
}

func ctSecretReencrypt(t *testing.T, st store.Store) {
	ctx := t.Context()
	r := ctSecret("crm")
	r.UpdatedBy = "cli:alice"
	r = ctPutSecret(t, st, r)
	r = ctPutSecret(t, st, r) // version 2
	nonce, ct := ctSealed(9, 33)
	at := ctT0.Add(time.Hour + 321*time.Nanosecond)

	// A stale version does not swap, and changes nothing.
	for _, v := range []int64{1, 3, 1 << 40} {
		if ok, err := st.ReencryptSecret(ctx, "crm", v, "k2", nonce, ct, at); ok || err != nil {
			t.Errorf("ReencryptSecret(crm, version %d) with version 2 stored = %v, %v; want false, nil", v, ok, err)
		}
	}
	ctWantSecret(t, st, r)
	if ok, err := st.ReencryptSecret(ctx, "nobody", 1, "k2", nonce, ct, at); ok || err != nil {
		t.Errorf("ReencryptSecret(nobody) = %v, %v; want false, nil", ok, err)
	}

	// The current version swaps: key, nonce, ciphertext, version and Updated change;
	// who set the value and the rest stay.
	if ok, err := st.ReencryptSecret(ctx, "crm", 2, "k2", nonce, ct, at); !ok || err != nil {
		t.Fatalf("ReencryptSecret(crm, version 2) = %v, %v; want true, nil", ok, err)
	}
	want := r
	want.KeyID, want.Nonce, want.Ciphertext, want.Version = "k2", nonce, ct, 3
	want.Updated = at.Truncate(time.Microsecond)
	ctWantSecret(t, st, want)
	// The same swap again is stale.
	if ok, err := st.ReencryptSecret(ctx, "crm", 2, "k3", nonce, ct, at); ok || err != nil {
		t.Errorf("ReencryptSecret(crm, version 2) again = %v, %v; want false, nil", ok, err)
	}
	ctWantSecret(t, st, want)
	// A set after the swap counts on from it.
	if got := ctPutSecret(t, st, r); got.Version != 4 {
		t.Errorf("PutSecret(crm) after a re-encryption: Version = %d, want 4", got.Version)
	}
}

// ctSecretReencryptRace races compare-and-swaps of one version (rotations on several
// replicas): exactly one wins, and the row holds the winner's ciphertext.
func ctSecretReencryptRace(t *testing.T, st store.Store) {
	ctx := t.Context()
	ctPutSecret(t, st, ctSecret("crm"))
	for round := range ctRounds {
		version := int64(round + 1)
		won := make([]bool, ctRaceN)
		errs := ctRace(ctRaceN, func(i int) error {
			nonce, ct := ctSealed(byte(i), 20+i)
			ok, err := st.ReencryptSecret(ctx, "crm", version, fmt.Sprintf("k%d", i), nonce, ct, ctT0)
			won[i] = ok
			return err
		})
		winner := -1
		for i, err := range errs {
			if err != nil {
				t.Fatalf("round %d: ReencryptSecret #%d: %v", round, i, err)
			}
			if won[i] {
				if winner >= 0 {
					t.Fatalf("round %d: ReencryptSecret of version %d swapped for racers %d and %d, want one", round, version, winner, i)
				}
				winner = i
			}
		}
		if winner < 0 {
			t.Fatalf("round %d: no racer swapped version %d", round, version)
		}
		got, _, err := st.Secret(ctx, "crm")
		if _, ct := ctSealed(byte(winner), 20+winner); err != nil || got.Version != version+1 || got.KeyID != fmt.Sprintf("k%d", winner) || !bytes.Equal(got.Ciphertext, ct) {
			t.Fatalf("round %d: Secret(crm) = version %d key %q, %v; want version %d with racer %d's key and ciphertext", round, got.Version, got.KeyID, err, version+1, winner)
		}
	}
}

// ctSecretPutRace races sets of one secret (operators on several replicas): every set
// gets a version of its own, and none is lost.
func ctSecretPutRace(t *testing.T, st store.Store) {
	ctx := t.Context()
	versions := make([]int64, ctRaceN)
	errs := ctRace(ctRaceN, func(i int) error {
		r := ctSecret("crm")
		r.UpdatedBy = fmt.Sprintf("racer-%d", i)
		got, err := st.PutSecret(ctx, r)
		versions[i] = got.Version
		return err
	})
	seen := map[int64]int{}
	for i, err := range errs {
		if err != nil {
			t.Fatalf("PutSecret #%d: %v", i, err)
		}
		if prev, ok := seen[versions[i]]; ok {
			t.Errorf("PutSecret #%d and #%d both got version %d", prev, i, versions[i])
		}
		seen[versions[i]] = i
	}
	for v := int64(1); v <= ctRaceN; v++ {
		if _, ok := seen[v]; !ok {
			t.Errorf("no racer got version %d; versions: %v", v, versions)
		}
	}
	got, _, err := st.Secret(ctx, "crm")
	if last := fmt.Sprintf("racer-%d", seen[ctRaceN]); err != nil || got.Version != ctRaceN || got.UpdatedBy != last {
		t.Errorf("Secret(crm) after the race = version %d by %q, %v; want version %d by %q", got.Version, got.UpdatedBy, err, ctRaceN, last)
	}
}

func ctSecretInvalid(t *testing.T, st store.Store) {
	ctx := t.Context()
	for _, tt := range []struct {
		name string
		mod  func(*secrets.Record)
	}{
		{"empty name", func(r *secrets.Record) { r.Name = "" }},
		{"65-byte name", func(r *secrets.Record) { r.Name = strings.Repeat("a", 65) }},
		{"upper-case name", func(r *secrets.Record) { r.Name = "CRM" }},
		{"name starting with a dot", func(r *secrets.Record) { r.Name = ".crm" }},
		{"slash in name", func(r *secrets.Record) { r.Name = "crm/key" }},
		{"NUL in name", func(r *secrets.Record) { r.Name = "crm\x00" }},
		{"201-byte description", func(r *secrets.Record) { r.Description = strings.Repeat("d", 201) }},
		{"NUL in description", func(r *secrets.Record) { r.Description = "a\x00b" }},
		{"newline in description", func(r *secrets.Record) { r.Description = "a\nb" }},
		{"description not UTF-8", func(r *secrets.Record) { r.Description = "caf\xe9" }},
		{"empty key id", func(r *secrets.Record) { r.KeyID = "" }},
		{"33-byte key id", func(r *secrets.Record) { r.KeyID = strings.Repeat("k", 33) }},
		{"dot in key id", func(r *secrets.Record) { r.KeyID = "k.1" }},
		{"no nonce", func(r *secrets.Record) { r.Nonce = nil }},
		{"12-byte nonce", func(r *secrets.Record) { r.Nonce = make([]byte, 12) }},
		{"25-byte nonce", func(r *secrets.Record) { r.Nonce = make([]byte, 25) }},
		{"no ciphertext", func(r *secrets.Record) { r.Ciphertext = nil }},
		{"16-byte ciphertext (a tag alone)", func(r *secrets.Record) { r.Ciphertext = make([]byte, 16) }},
		{"oversized ciphertext", func(r *secrets.Record) { r.Ciphertext = make([]byte, secrets.MaxCiphertext+1) }},
		{"zero created", func(r *secrets.Record) { r.Created = time.Time{} }},
		{"created in year 10000", func(r *secrets.Record) { r.Created = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) }},
		{"zero updated", func(r *secrets.Record) { r.Updated = time.Time{} }},
		{"updated in year 0", func(r *secrets.Record) { r.Updated = time.Date(0, 12, 31, 0, 0, 0, 0, time.UTC) }},
		{"empty updated by", func(r *secrets.Record) { r.UpdatedBy = "" }},
		{"129-byte updated by", func(r *secrets.Record) { r.UpdatedBy = strings.Repeat("u", 129) }},
		{"escape in updated by", func(r *secrets.Record) { r.UpdatedBy = "cli:\x1b[31m" }},
	} {
		bad := ctSecret("crm")
		tt.mod(&bad)
		_, err := st.PutSecret(ctx, bad)
		if !errors.Is(err, secrets.ErrInvalid) {
			t.Errorf("%s: PutSecret = %v, want an error wrapping ErrInvalid", tt.name, err)
		}
		if err != nil && bytes.Contains([]byte(err.Error()), bad.Ciphertext) && len(bad.Ciphertext) > 0 {
			t.Errorf("%s: PutSecret's error holds the ciphertext", tt.name)
		}
	}
	if got, err := st.Secrets(ctx); err != nil || len(got) != 0 {
		t.Fatalf("Secrets() after refused puts = %+v, %v; want none", got, err)
	}

	stored := ctPutSecret(t, st, ctSecret("crm"))
	nonce, ct := ctSealed(3, 30)
	for _, tt := range []struct {
		name      string
		version   int64
		keyID     string
		nonce, ct []byte
		at        time.Time
	}{
		{"version 0", 0, "k2", nonce, ct, ctT0},
		{"negative version", -1, "k2", nonce, ct, ctT0},
		{"bad key id", 1, "K2", nonce, ct, ctT0},
		{"short nonce", 1, "k2", nonce[:23], ct, ctT0},
		{"short ciphertext", 1, "k2", nonce, ct[:16], ctT0},
		{"oversized ciphertext", 1, "k2", nonce, make([]byte, secrets.MaxCiphertext+1), ctT0},
		{"zero time", 1, "k2", nonce, ct, time.Time{}},
		{"time in year 10000", 1, "k2", nonce, ct, time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)},
	} {
		if ok, err := st.ReencryptSecret(ctx, "crm", tt.version, tt.keyID, tt.nonce, tt.ct, tt.at); ok || !errors.Is(err, secrets.ErrInvalid) {
			t.Errorf("%s: ReencryptSecret = %v, %v; want false and an error wrapping ErrInvalid", tt.name, ok, err)
		}
	}
	ctWantSecret(t, st, stored) // no refused write changed anything
}

// ctSecretUnusableNames checks that names no secret can have are answered, not sent to
// the database (PostgreSQL refuses a NUL in text with an error).
func ctSecretUnusableNames(t *testing.T, st store.Store) {
	ctx := t.Context()
	ctPutSecret(t, st, ctSecret("crm"))
	nonce, ct := ctSealed(3, 30)
	for _, name := range []string{"", "CRM", "crm\x00", "\xff", strings.Repeat("a", 65), "a b", "../crm"} {
		if got, ok, err := st.Secret(ctx, name); ok || err != nil {
			t.Errorf("Secret(%q) = %+v, %v, %v; want false, nil", name, got, ok, err)
		}
		ctCheckErr(t, fmt.Sprintf("DeleteSecret(%q)", name), st.DeleteSecret(ctx, name), secrets.ErrUnknownSecret)
		if ok, err := st.ReencryptSecret(ctx, name, 1, "k2", nonce, ct, ctT0); ok || err != nil {
			t.Errorf("ReencryptSecret(%q) = %v, %v; want false, nil", name, ok, err)
		}
	}
	if got, err := st.Secrets(ctx); err != nil || len(got) != 1 || got[0].Version != 1 {
		t.Errorf("Secrets() = %+v, %v; want crm alone, untouched", got, err)
	}
}

// ctSecretCancelled checks that writes with a cancelled context fail and write nothing.
func ctSecretCancelled(t *testing.T, st store.Store) {
	stored := ctPutSecret(t, st, ctSecret("crm"))
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := st.PutSecret(ctx, ctSecret("other")); err == nil {
		t.Error("PutSecret with a cancelled context succeeded, want an error")
	}
	if _, err := st.PutSecret(ctx, ctSecret("crm")); err == nil {
		t.Error("PutSecret(crm) with a cancelled context succeeded, want an error")
	}
	nonce, ct := ctSealed(3, 30)
	if ok, err := st.ReencryptSecret(ctx, "crm", 1, "k2", nonce, ct, ctT0); ok || err == nil {
		t.Errorf("ReencryptSecret with a cancelled context = %v, %v; want false and an error", ok, err)
	}
	if err := st.DeleteSecret(ctx, "crm"); err == nil {
		t.Error("DeleteSecret with a cancelled context succeeded, want an error")
	}
	if _, _, err := st.Secret(ctx, "crm"); err == nil {
		t.Error("Secret with a cancelled context succeeded, want an error")
	}
	if _, err := st.Secrets(ctx); err == nil {
		t.Error("Secrets with a cancelled context succeeded, want an error")
	}
	if got, err := st.Secrets(t.Context()); err != nil || len(got) != 1 {
		t.Fatalf("Secrets() after cancelled writes = %+v, %v; want crm alone", got, err)
	}
	ctWantSecret(t, st, stored)
}
