// Package secrets holds the upstream credentials Chaperone injects into tool calls (API
// keys, OAuth client secrets and refresh tokens, passwords), so that agents never see
// them.
//
// # What it guarantees
//
//   - At rest, every secret is sealed with XChaCha20-Poly1305 under a key of the
//     operator's [Keyring], with a random 24-byte nonce and the secret's name as
//     associated data: a database copy reveals nothing without the key file, and a
//     ciphertext copied to another name, or altered, does not open.
//   - Plaintext crosses APIs only as a [Value], whose String, GoString, Format, LogValue
//     and MarshalJSON all give "[redacted]". Errors and audit events name secrets and key
//     ids, never values, nor key material; parse errors do not echo their input either,
//     since a mistyped reference or key line may be a secret itself.
//   - [Vault.Set], [Vault.Delete] and [Vault.Rotate] are refused when their audit event
//     cannot be written: the event is recorded before the change is made (fail closed).
//     If the store then fails, the log holds an event for a change that did not happen,
//     and the caller gets the error: the log holds more than happened, never less.
//   - [Vault.Rotate] re-encrypts every secret not under the primary key with one
//     compare-and-swap per secret, so it is safe while the gateway serves calls, while
//     operators set secrets and while another replica rotates: readers keep opening a
//     row with the key it names until the swap.
//   - Both store backends refuse the same records with the same errors: they check every
//     field with the functions of this package ([CheckRecord] and friends).
//
// # What it does not do
//
//   - It does not protect plaintext in the gateway's memory: [Vault.Reveal] caches
//     plaintext for [VaultOptions.CacheTTL], and Go cannot reliably wipe memory.
//   - It does not hide which secrets exist, their sizes (within the AEAD's 16-byte tag)
//     or when they changed: names, descriptions and times are stored in the clear.
//   - It does not manage the key file: the operator writes it (see [GenerateKey]), keeps
//     it out of the database's backups, and reloads it; [Vault.Rotate] re-encrypts, and
//     only then may an old key be dropped.
//   - The version an audit event of [Vault.Set] names is predicted before the write: if
//     two replicas set the same secret at the same moment, one event may name the version
//     the other write got. Within one process, sets are serialised and the version exact.
//   - It has no notion of who may read a secret: whoever holds a [*Vault] may reveal
//     every secret. The gateway decides which upstream gets which credential.
package secrets

import (
	"bytes"
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/chaperone-dev/chaperone/internal/boundedfile"
)

// Errors callers branch on. Each is returned wrapped, with a message naming the secret,
// the key id or the bound that was broken.
var (
	// ErrUnknownSecret: no secret has the name.
	ErrUnknownSecret = errors.New("unknown secret")
	// ErrInvalid: an input (a name, a value's size, a description, who acts, a record's
	// field) is not acceptable; the message says which and the bound it broke.
	ErrInvalid = errors.New("invalid secret input")
	// ErrUnknownKey: a sealed secret names a key id the keyring does not have. Put the
	// key back in the key file; drop it only after [Vault.Rotate] has finished.
	ErrUnknownKey = errors.New("key is not in the keyring")
	// ErrDecrypt: a sealed secret did not open: the key with its id is not the one that
	// sealed it, or the ciphertext, nonce or name was changed.
	ErrDecrypt = errors.New("sealed secret does not open: wrong key, altered ciphertext, or moved from another name")
	// ErrNotAudited: the audit event of a change could not be written, so the change was
	// refused and not made.
	ErrNotAudited = errors.New("refused: the audit log could not record the change")
	// ErrNoKeyring: no keyring is loaded, so nothing can be sealed or opened.
	ErrNoKeyring = errors.New("no secrets keyring is loaded")
)

// invalidError is an input problem: it matches [ErrInvalid] without repeating its text.
type invalidError struct{ msg string }

func (e *invalidError) Error() string        { return e.msg }
func (e *invalidError) Is(target error) bool { return target == ErrInvalid }

func invalidf(format string, args ...any) error {
	return &invalidError{msg: fmt.Sprintf(format, args...)}
}

// redacted is what every printed form of a secret is.
const redacted = "[redacted]"

// Value is a secret's plaintext. Every way of printing, logging or encoding it gives
// "[redacted]"; only [Value.Bytes] gives the plaintext, as a copy. The zero Value is
// empty. A Value is immutable and safe to share between goroutines.
//
// The plaintext sits behind a function, which fmt prints as an address: a Value held in
// an unexported field, where fmt cannot call its Format method, or printed with a verb
// fmt deems wrong for it, still does not show its bytes. That also makes Values
// incomparable with ==; use [Value.Equal], which takes constant time.
type Value struct {
	read func() []byte // returns the plaintext, which no caller may change; nil when empty
}

// valueOf wraps b, which the caller gives up: nobody may change it afterwards.
func valueOf(b []byte) Value {
	if len(b) == 0 {
		return Value{}
	}
	return Value{read: func() []byte { return b }}
}

// NewValue returns a Value holding a copy of b.
func NewValue(b []byte) Value { return valueOf(bytes.Clone(b)) }

// plain returns the plaintext, not to be changed.
func (v Value) plain() []byte {
	if v.read == nil {
		return nil
	}
	return v.read()
}

// Bytes returns a copy of the plaintext.
func (v Value) Bytes() []byte { return bytes.Clone(v.plain()) }

// Len is the plaintext's length in bytes.
func (v Value) Len() int { return len(v.plain()) }

// IsZero reports whether the Value is empty.
func (v Value) IsZero() bool { return v.Len() == 0 }

// Equal reports, in time independent of the contents, whether the plaintext is b.
func (v Value) Equal(b []byte) bool { return subtle.ConstantTimeCompare(v.plain(), b) == 1 }

// String returns "[redacted]".
func (Value) String() string { return redacted }

// GoString returns "[redacted]".
func (Value) GoString() string { return redacted }

// Format prints "[redacted]" whatever the verb and flags.
func (Value) Format(f fmt.State, _ rune) { io.WriteString(f, redacted) }

// LogValue returns "[redacted]".
func (Value) LogValue() slog.Value { return slog.StringValue(redacted) }

// MarshalJSON returns "[redacted]" as a JSON string.
func (Value) MarshalJSON() ([]byte, error) { return []byte(`"` + redacted + `"`), nil }

// MarshalText returns "[redacted]", for encoders that prefer text.
func (Value) MarshalText() ([]byte, error) { return []byte(redacted), nil }

// Bounds of what the package accepts.
const (
	MaxName        = 64       // a secret's name, in bytes
	MaxValue       = 64 << 10 // a secret's plaintext, in bytes
	MaxDescription = 200      // a secret's description, in bytes
	MaxUpdatedBy   = 128      // who set a secret, in bytes
	MaxRef         = 4096     // a reference, in bytes
	MaxEnvName     = 255      // an environment variable's name, in bytes
	quoteLen       = 64       // how much of a bad name an error quotes
)

// RefKind is where a [Ref] points.
type RefKind string

// Kinds of references.
const (
	RefSecret RefKind = "secret" // a secret in the vault: secret:NAME
	RefEnv    RefKind = "env"    // an environment variable of the gateway: env:VAR
	RefFile   RefKind = "file"   // the content of a file: file:/abs/path
)

// Ref is a reference to a secret in the configuration: where to find a value, not the
// value. Make one with [ParseRef]; the zero Ref refers to nothing and does not resolve.
type Ref struct {
	Kind   RefKind
	Target string // the secret's name, the variable's name or the file's absolute path
}

// String is the reference as written: "secret:NAME", "env:VAR" or "file:/abs/path".
func (r Ref) String() string {
	if r.Kind == "" {
		return ""
	}
	return string(r.Kind) + ":" + r.Target
}

// IsZero reports whether r refers to nothing.
func (r Ref) IsZero() bool { return r == Ref{} }

// refShapes is the list of accepted forms, for errors.
const refShapes = "secret:NAME, env:VAR or file:/abs/path"

// ParseRef parses a reference: secret:NAME (a name [CheckName] accepts), env:VAR (1 to
// 255 of A-Z, a-z, 0-9 and _, not starting with a digit) or file:/abs/path (an absolute,
// clean path). It is strict: an unknown scheme, an empty target, a relative or unclean
// path, a NUL or other control byte, invalid UTF-8 or more than 4096 bytes is an error.
// Errors say which bound was broken but do not echo the reference, which may be a
// secret pasted where a reference belongs; the errors wrap [ErrInvalid].
func ParseRef(s string) (Ref, error) {
	switch {
	case s == "":
		return Ref{}, invalidf("reference is empty, want %s", refShapes)
	case len(s) > MaxRef:
		return Ref{}, invalidf("reference is %d bytes, more than %d", len(s), MaxRef)
	case !utf8.ValidString(s):
		return Ref{}, invalidf("reference is not valid UTF-8")
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == 0x7f {
			return Ref{}, invalidf("reference holds a control byte (0x%02x) at %d", c, i)
		}
	}
	scheme, target, ok := strings.Cut(s, ":")
	if !ok {
		return Ref{}, invalidf("reference has no scheme, want %s", refShapes)
	}
	switch RefKind(scheme) {
	case RefSecret:
		if err := CheckName(target); err != nil {
			return Ref{}, fmt.Errorf("reference secret:NAME: %w", err)
		}
	case RefEnv:
		if err := checkEnvName(target); err != nil {
			return Ref{}, fmt.Errorf("reference env:VAR: %w", err)
		}
	case RefFile:
		switch {
		case target == "":
			return Ref{}, invalidf("reference file:PATH: the path is empty")
		case !filepath.IsAbs(target):
			return Ref{}, invalidf("reference file:PATH: the path must be absolute")
		case filepath.Clean(target) != target:
			return Ref{}, invalidf("reference file:PATH: the path must be clean (no //, . or .. elements, no trailing /)")
		}
	default:
		if isWord(scheme) {
			return Ref{}, invalidf("reference scheme %q is not one of secret, env or file", scheme)
		}
		return Ref{}, invalidf("reference scheme (%d bytes) is not one of secret, env or file", len(scheme))
	}
	return Ref{Kind: RefKind(scheme), Target: target}, nil
}

// isWord reports whether s is a short run of ASCII letters: a mistyped scheme ("vault",
// "Secret") worth naming in an error, rather than text that may be a secret.
func isWord(s string) bool {
	if s == "" || len(s) > 10 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i] | 0x20; c < 'a' || c > 'z' {
			return false
		}
	}
	return true
}

// checkEnvName checks an environment variable's name, without echoing it.
func checkEnvName(n string) error {
	if n == "" || len(n) > MaxEnvName {
		return invalidf("variable name must be 1 to %d bytes, got %d", MaxEnvName, len(n))
	}
	for i := 0; i < len(n); i++ {
		c := n[i]
		ok := c == '_' || 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || i > 0 && '0' <= c && c <= '9'
		if !ok {
			return invalidf("variable name must be of A-Z, a-z, 0-9 and _, not starting with a digit; byte %d is not", i)
		}
	}
	return nil
}

// Resolve returns the value ref points at: the vault's secret (v may be nil for the
// other kinds), the environment variable (unset or empty is an error), or the file's
// content (a regular file, or a link to one, of at most 64 KiB, with one trailing
// newline removed; empty is an error). Errors name the reference, never the value;
// a missing secret wraps [ErrUnknownSecret].
func Resolve(ctx context.Context, ref Ref, v *Vault) (Value, error) {
	if err := ctx.Err(); err != nil {
		return Value{}, fmt.Errorf("secrets: resolve %s: %w", ref, err)
	}
	// A Ref built by hand rather than parsed is checked as if parsed.
	if _, err := ParseRef(ref.String()); err != nil {
		return Value{}, fmt.Errorf("secrets: resolve: %w", err)
	}
	switch ref.Kind {
	case RefSecret:
		if v == nil {
			return Value{}, fmt.Errorf("secrets: resolve %s: no vault is configured", ref)
		}
		return v.Reveal(ctx, ref.Target)
	case RefEnv:
		s, ok := os.LookupEnv(ref.Target)
		switch {
		case !ok:
			return Value{}, fmt.Errorf("secrets: resolve %s: the variable is not set", ref)
		case s == "":
			return Value{}, fmt.Errorf("secrets: resolve %s: the variable is empty", ref)
		case len(s) > MaxValue:
			return Value{}, fmt.Errorf("secrets: resolve %s: the variable is %d bytes, more than %d", ref, len(s), MaxValue)
		}
		return valueOf([]byte(s)), nil
	default: // RefFile: ParseRef accepted nothing else
		b, err := readValueFile(ref.Target)
		if err != nil {
			return Value{}, fmt.Errorf("secrets: resolve %s: %w", ref, err)
		}
		return valueOf(b), nil
	}
}

// readValueFile reads a secret from a regular file of at most MaxValue bytes (after one
// trailing newline is removed) and refuses an empty one.
func readValueFile(path string) ([]byte, error) {
	b, _, err := boundedfile.Read(path, MaxValue+2) // room for a trailing "\r\n"
	if errors.Is(err, boundedfile.ErrTooLarge) {
		return nil, fmt.Errorf("the file holds more than %d bytes", MaxValue)
	}
	if err != nil {
		return nil, err
	}
	b = TrimNewline(b)
	switch {
	case len(b) > MaxValue:
		return nil, fmt.Errorf("the file holds more than %d bytes", MaxValue)
	case len(b) == 0:
		return nil, errors.New("the file is empty")
	}
	return b, nil
}

// TrimNewline removes one trailing "\n" or "\r\n" from b: what an editor or echo adds
// to a file or a pipe, and never part of a credential.
func TrimNewline(b []byte) []byte {
	if n := len(b); n > 0 && b[n-1] == '\n' {
		b = b[:n-1]
		if n := len(b); n > 0 && b[n-1] == '\r' {
			b = b[:n-1]
		}
	}
	return b
}

// quote quotes at most quoteLen bytes of s, so that an oversized name does not make an
// oversized error.
func quote(s string) string {
	if len(s) > quoteLen {
		return strconv.Quote(s[:quoteLen]) + "..."
	}
	return strconv.Quote(s)
}
