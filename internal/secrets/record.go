package secrets

import (
	"cmp"
	"context"
	"time"
	"unicode/utf8"

	"golang.org/x/crypto/chacha20poly1305"
)

// Record is a sealed secret as stored. Version, Created and Updated are the store's:
// see [Store.PutSecret].
type Record struct {
	Name        string // [a-z0-9][a-z0-9._-]{0,63}; see CheckName
	Description string // at most 200 bytes of UTF-8 without control bytes; never the value
	KeyID       string // the keyring key that sealed it
	Nonce       []byte // 24 bytes
	Ciphertext  []byte // the sealed value and the 16-byte tag: 17 to 64 KiB + 16 bytes
	Version     int64  // 1 on create, +1 on every change (set or re-encrypt)
	Created     time.Time
	Updated     time.Time // the last change, re-encryption included
	UpdatedBy   string    // who set the value last ("admin-api", "cli:alice"); a re-encryption keeps it
}

// Store keeps sealed secrets. Both backends of package store implement it, check every
// record with [CheckRecord] (and the other Check functions) before writing, and return
// an error wrapping store.ErrReadOnly from every write of a store opened read-only.
// Errors never hold a nonce or a ciphertext.
type Store interface {
	// PutSecret creates or replaces the secret r.Name. The store assigns Version (1, or
	// the stored version + 1) and keeps the stored Created on replace (r.Created is used
	// on create only); it returns the record as stored, times in UTC to the microsecond.
	PutSecret(ctx context.Context, r Record) (Record, error)
	// Secret returns one secret, and false if there is none (or none could have the name).
	Secret(ctx context.Context, name string) (Record, bool, error)
	// Secrets returns every secret, ordered by name as bytes.
	Secrets(ctx context.Context) ([]Record, error)
	// DeleteSecret removes a secret; the error wraps [ErrUnknownSecret] if there is none.
	DeleteSecret(ctx context.Context, name string) error
	// ReencryptSecret replaces the key id, nonce and ciphertext of name, sets Updated to at
	// and increments Version, only if its Version is still ifVersion (compare-and-swap),
	// and reports whether it did. A missing secret is false, not an error.
	ReencryptSecret(ctx context.Context, name string, ifVersion int64, keyID string, nonce, ciphertext []byte, at time.Time) (bool, error)
}

// Bounds of a sealed record.
const (
	NonceSize     = chacha20poly1305.NonceSizeX // 24
	Overhead      = chacha20poly1305.Overhead   // the tag: 16
	MinCiphertext = 1 + Overhead                // a 1-byte value, sealed
	MaxCiphertext = MaxValue + Overhead         // a 64 KiB value, sealed
)

const (
	// minYear and maxYear bound a record's times: a range both backends hold exactly.
	minYear = 1
	maxYear = 9999
	// namePattern and keyIDPattern are the rules CheckName and CheckKeyID enforce, for errors.
	namePattern  = "[a-z0-9][a-z0-9._-]{0,63}"
	keyIDPattern = "[a-z0-9][a-z0-9_-]{0,31}"
	maxKeyID     = 32 // a key id, in bytes
)

// CheckName reports why name cannot be a secret's name, or nil: it must be 1 to 64 bytes
// of a-z, 0-9, '.', '_' and '-', starting with a letter or digit. The error says where
// the name breaks the rule without quoting it, and wraps [ErrInvalid].
func CheckName(name string) error {
	if name == "" || len(name) > MaxName {
		return invalidf("secret name must be 1 to %d bytes, got %d", MaxName, len(name))
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		alnum := 'a' <= c && c <= 'z' || '0' <= c && c <= '9'
		if !alnum && (i == 0 || c != '.' && c != '_' && c != '-') {
			return invalidf("secret name must match %s; byte %d is not allowed there", namePattern, i)
		}
	}
	return nil
}

// CheckKeyID reports why id cannot be a keyring key's id, or nil: 1 to 32 bytes of a-z,
// 0-9, '_' and '-', starting with a letter or digit. The error wraps [ErrInvalid].
func CheckKeyID(id string) error {
	if id == "" || len(id) > maxKeyID {
		return invalidf("key id must be 1 to %d bytes, got %d", maxKeyID, len(id))
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		alnum := 'a' <= c && c <= 'z' || '0' <= c && c <= '9'
		if !alnum && (i == 0 || c != '_' && c != '-') {
			return invalidf("key id must match %s; byte %d is not allowed there", keyIDPattern, i)
		}
	}
	return nil
}

// checkText checks free text: at most limit bytes (at least one if required) of UTF-8
// without control bytes (tabs, newlines and escapes would garble listings and logs).
func checkText(field, s string, limit int, required bool) error {
	switch {
	case required && s == "":
		return invalidf("%s is empty", field)
	case len(s) > limit:
		return invalidf("%s is %d bytes, more than %d", field, len(s), limit)
	case !utf8.ValidString(s):
		return invalidf("%s is not valid UTF-8", field)
	}
	for i, r := range s {
		if r < 0x20 || r == 0x7f || 0x80 <= r && r < 0xa0 {
			return invalidf("%s holds a control character (U+%04X) at byte %d", field, r, i)
		}
	}
	return nil
}

// CheckDescription checks a secret's description: at most 200 bytes of UTF-8 without
// control characters; it may be empty. The error wraps [ErrInvalid].
func CheckDescription(s string) error { return checkText("description", s, MaxDescription, false) }

// CheckUpdatedBy checks who sets a secret: 1 to 128 bytes of UTF-8 without control
// characters. The error wraps [ErrInvalid].
func CheckUpdatedBy(s string) error { return checkText("updated by", s, MaxUpdatedBy, true) }

// CheckValue checks a plaintext's size: 1 byte to 64 KiB. The error wraps [ErrInvalid].
func CheckValue(v []byte) error {
	if len(v) == 0 || len(v) > MaxValue {
		return invalidf("value must be 1 to %d bytes, got %d", MaxValue, len(v))
	}
	return nil
}

// CheckSealed checks a sealed value's key id, nonce and ciphertext sizes. The error
// wraps [ErrInvalid].
func CheckSealed(keyID string, nonce, ciphertext []byte) error {
	if err := CheckKeyID(keyID); err != nil {
		return err
	}
	if len(nonce) != NonceSize {
		return invalidf("nonce is %d bytes, want %d", len(nonce), NonceSize)
	}
	if len(ciphertext) < MinCiphertext || len(ciphertext) > MaxCiphertext {
		return invalidf("ciphertext must be %d to %d bytes, got %d", MinCiphertext, MaxCiphertext, len(ciphertext))
	}
	return nil
}

// CheckTime checks a record's time is set and within years 1 to 9999, which both
// backends hold exactly. The error wraps [ErrInvalid].
func CheckTime(field string, t time.Time) error {
	if t.IsZero() {
		return invalidf("%s is not set", field)
	}
	if y := t.UTC().Year(); y < minYear || y > maxYear {
		return invalidf("%s is in year %d, outside %d to %d", field, y, minYear, maxYear)
	}
	return nil
}

// CheckRecord checks every field of a record a store writes with PutSecret (Version is
// the store's to assign, and not checked), and returns the first problem, wrapping
// [ErrInvalid].
func CheckRecord(r Record) error {
	return cmp.Or(CheckName(r.Name), CheckDescription(r.Description), CheckSealed(r.KeyID, r.Nonce, r.Ciphertext),
		CheckTime("created time", r.Created), CheckTime("updated time", r.Updated), CheckUpdatedBy(r.UpdatedBy))
}

// CheckStored checks a record as read back from a store: the fields CheckRecord checks
// and a Version of at least 1. A store returns an error rather than a record that fails
// it, so that a damaged row is reported, not used.
func CheckStored(r Record) error {
	if r.Version < 1 {
		return invalidf("secret %s: version is %d, want at least 1", quote(r.Name), r.Version)
	}
	if err := CheckRecord(r); err != nil {
		return invalidf("secret %s: %v", quote(r.Name), err)
	}
	return nil
}

// CheckReencrypt checks the arguments of [Store.ReencryptSecret] but the name: an
// expected version of at least 1, a sealed value [CheckSealed] accepts and a time
// [CheckTime] accepts. The error wraps [ErrInvalid].
func CheckReencrypt(ifVersion int64, keyID string, nonce, ciphertext []byte, at time.Time) error {
	if ifVersion < 1 {
		return invalidf("expected version is %d, want at least 1", ifVersion)
	}
	return cmp.Or(CheckSealed(keyID, nonce, ciphertext), CheckTime("re-encryption time", at))
}
