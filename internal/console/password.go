package console

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"golang.org/x/crypto/argon2"
)

// Argon2id parameters for new hashes: OWASP's recommended minimum for Argon2id
// (19 MiB, 2 passes, 1 lane), which keeps a sign-in near 50 ms on one core.
const (
	argonMemoryKiB = 19 * 1024
	argonTime      = 2
	argonThreads   = 1
	argonSaltLen   = 16
	argonKeyLen    = 32
)

// Bounds a stored hash's parameters must keep, so that an edited database row cannot
// make a sign-in take gigabytes or minutes.
const (
	maxArgonMemoryKiB = 256 * 1024
	maxArgonTime      = 10
	maxArgonThreads   = 16
	maxPHCLen         = 256
)

// Password bounds.
const (
	MinPasswordLen = 12
	MaxPasswordLen = 256
)

// ErrBadHash is returned, wrapped, for a stored password hash that is not an Argon2id PHC
// string within the bounds.
var ErrBadHash = errors.New("not an Argon2id password hash")

// CheckPassword reports why a new password is not acceptable, or nil.
func CheckPassword(p string) error {
	n := utf8.RuneCountInString(p)
	switch {
	case !utf8.ValidString(p):
		return errors.New("password must be valid UTF-8")
	case n < MinPasswordLen:
		return fmt.Errorf("password must be at least %d characters, got %d", MinPasswordLen, n)
	case len(p) > MaxPasswordLen:
		return fmt.Errorf("password must be at most %d bytes, got %d", MaxPasswordLen, len(p))
	}
	return nil
}

// HashPassword returns the PHC string of p's Argon2id hash with a fresh salt.
func HashPassword(p string) (string, error) {
	salt := make([]byte, argonSaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	key := argon2.IDKey([]byte(p), salt, argonTime, argonMemoryKiB, argonThreads, argonKeyLen)
	enc := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, argonMemoryKiB, argonTime, argonThreads,
		enc.EncodeToString(salt), enc.EncodeToString(key)), nil
}

// phc is a parsed Argon2id PHC string.
type phc struct {
	memory  uint32
	time    uint32
	threads uint8
	salt    []byte
	key     []byte
}

// parsePHC reads "$argon2id$v=19$m=<KiB>,t=<passes>,p=<lanes>$<salt>$<hash>" (unpadded
// standard base64), refusing parameters outside the bounds.
func parsePHC(s string) (phc, error) {
	var h phc
	if len(s) > maxPHCLen {
		return h, fmt.Errorf("%w: longer than %d bytes", ErrBadHash, maxPHCLen)
	}
	parts := strings.Split(s, "$")
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" {
		return h, fmt.Errorf("%w: want $argon2id$v=19$m=<KiB>,t=<passes>,p=<lanes>$<salt>$<hash>", ErrBadHash)
	}
	if parts[2] != "v="+strconv.Itoa(argon2.Version) {
		return h, fmt.Errorf("%w: version %q, want v=%d", ErrBadHash, parts[2], argon2.Version)
	}
	params := strings.Split(parts[3], ",")
	if len(params) != 3 {
		return h, fmt.Errorf("%w: parameters %q, want m=<KiB>,t=<passes>,p=<lanes>", ErrBadHash, parts[3])
	}
	num := func(field, prefix string, hi uint64) (uint64, error) {
		v, ok := strings.CutPrefix(field, prefix)
		if !ok {
			return 0, fmt.Errorf("%w: parameter %q, want %s<n>", ErrBadHash, field, prefix)
		}
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil || n < 1 || n > hi || v != strconv.FormatUint(n, 10) {
			return 0, fmt.Errorf("%w: parameter %q out of 1..%d", ErrBadHash, field, hi)
		}
		return n, nil
	}
	m, err := num(params[0], "m=", maxArgonMemoryKiB)
	if err != nil {
		return h, err
	}
	t, err := num(params[1], "t=", maxArgonTime)
	if err != nil {
		return h, err
	}
	p, err := num(params[2], "p=", maxArgonThreads)
	if err != nil {
		return h, err
	}
	if m < 8*p {
		return h, fmt.Errorf("%w: memory %d KiB is less than 8 per lane", ErrBadHash, m)
	}
	enc := base64.RawStdEncoding.Strict()
	if h.salt, err = enc.DecodeString(parts[4]); err != nil || len(h.salt) < 8 || len(h.salt) > 64 {
		return h, fmt.Errorf("%w: salt must be 8 to 64 bytes of base64", ErrBadHash)
	}
	if h.key, err = enc.DecodeString(parts[5]); err != nil || len(h.key) < 16 || len(h.key) > 64 {
		return h, fmt.Errorf("%w: hash must be 16 to 64 bytes of base64", ErrBadHash)
	}
	h.memory, h.time, h.threads = uint32(m), uint32(t), uint8(p)
	return h, nil
}

// VerifyPassword reports whether p matches the PHC string stored. A malformed stored
// hash is an error, never a match.
func VerifyPassword(stored, p string) (bool, error) {
	h, err := parsePHC(stored)
	if err != nil {
		return false, err
	}
	if len(p) > MaxPasswordLen {
		return false, nil
	}
	key := argon2.IDKey([]byte(p), h.salt, h.time, h.memory, h.threads, uint32(len(h.key)))
	return subtle.ConstantTimeCompare(key, h.key) == 1, nil
}
