package secrets

import (
	"bytes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"strings"

	"golang.org/x/crypto/chacha20poly1305"

	"github.com/chaperone-dev/chaperone/internal/boundedfile"
)

// Bounds of a keyring.
const (
	KeySize     = chacha20poly1305.KeySize // 32 bytes
	MaxKeys     = 16                       // keys in one keyring
	MaxKeyFile  = 64 << 10                 // a key file, in bytes
	maxKeyLines = 4096                     // lines of a key file, comments included
)

// adPrefix starts the associated data of every seal; the secret's name follows it, so a
// ciphertext moved to another name does not open. The version leaves room for another
// construction later.
const adPrefix = "chaperone-secret-v1\x00"

// Keyring is the operator's secret-encryption keys: the first one, the primary, seals;
// every one opens what it sealed. A Keyring is immutable and safe for concurrent use.
// Every printed form (String, GoString, Format, LogValue, MarshalJSON) shows the key ids
// only, never key material.
type Keyring struct {
	ids  []string          // in file order: ids[0] is the primary
	keys map[string]keyOps // by id
}

// keyOps is one key's AEAD, reachable only through functions: fmt prints a func as an
// address, so no verb and no reflection (a Keyring printed by value, a bad verb) can
// reach the key schedule behind them.
type keyOps struct {
	seal func(dst, nonce, plaintext, additionalData []byte) []byte
	open func(dst, nonce, ciphertext, additionalData []byte) ([]byte, error)
}

func newKeyOps(aead cipher.AEAD) keyOps { return keyOps{seal: aead.Seal, open: aead.Open} }

// ParseKeyring parses a key file: one key per line, "<id> <key>", where id matches
// [a-z0-9][a-z0-9_-]{0,31} and is unique and key is 32 bytes in base64 (standard or URL
// alphabet, padded or not); blank lines and lines starting with '#' are ignored. The
// first key is the primary. At most 16 keys and 64 KiB. Errors name the line and the
// key id but never echo key material (nor a malformed line, which may hold some).
func ParseKeyring(data []byte) (*Keyring, error) {
	if len(data) > MaxKeyFile {
		return nil, fmt.Errorf("key file is %d bytes, more than %d", len(data), MaxKeyFile)
	}
	k := &Keyring{keys: map[string]keyOps{}}
	firstLine := map[string]int{} // the line each id was defined on
	var keys [][]byte             // raw keys, to refuse one key under two ids
	defer func() {
		for _, key := range keys {
			clear(key)
		}
	}()
	lines := bytes.Split(data, []byte("\n"))
	if len(lines) > maxKeyLines {
		return nil, fmt.Errorf("key file has %d lines, more than %d", len(lines), maxKeyLines)
	}
	for i, raw := range lines {
		n := i + 1
		line := bytes.TrimSpace(raw)
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		fields := strings.Fields(string(line))
		if len(fields) != 2 {
			return nil, fmt.Errorf("line %d: want \"<id> <base64 key>\", got %d fields", n, len(fields))
		}
		id, enc := fields[0], fields[1]
		if err := CheckKeyID(id); err != nil {
			// Not quoted: a line written "<key> <id>" would put the key here.
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		if prev, ok := firstLine[id]; ok {
			return nil, fmt.Errorf("line %d: key id %q is already used on line %d", n, id, prev)
		}
		if len(k.ids) == MaxKeys {
			return nil, fmt.Errorf("line %d: more than %d keys", n, MaxKeys)
		}
		key, err := decodeKey(enc)
		if err != nil {
			return nil, fmt.Errorf("line %d: key %q: %w", n, id, err)
		}
		keys = append(keys, key)
		for j, other := range keys[:len(keys)-1] {
			if subtle.ConstantTimeCompare(key, other) == 1 {
				return nil, fmt.Errorf("line %d: key %q is the same key as %q: give every key its own random bytes (chaperone secrets keygen)", n, id, k.ids[j])
			}
		}
		aead, err := chacha20poly1305.NewX(key)
		if err != nil {
			return nil, fmt.Errorf("line %d: key %q: %w", n, id, err)
		}
		firstLine[id] = n
		k.ids = append(k.ids, id)
		k.keys[id] = newKeyOps(aead)
	}
	if len(k.ids) == 0 {
		return nil, errors.New("no keys: want at least one line \"<id> <base64 key>\"")
	}
	return k, nil
}

// decodeKey decodes a base64 key of KeySize bytes. Its errors say nothing of the input
// beyond its length.
func decodeKey(enc string) ([]byte, error) {
	for _, e := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding, base64.RawStdEncoding, base64.RawURLEncoding} {
		if b, err := e.DecodeString(enc); err == nil {
			if len(b) != KeySize {
				clear(b)
				return nil, fmt.Errorf("decodes to %d bytes, want %d", len(b), KeySize)
			}
			return b, nil
		}
	}
	return nil, errors.New("is not base64 (standard or URL alphabet)")
}

// LoadKeyring reads and parses the key file at path (see [ParseKeyring]). It refuses a
// file that is not regular or whose mode grants anything to group or others: the mode
// must be 0600 or stricter.
func LoadKeyring(path string) (*Keyring, error) {
	data, fi, err := boundedfile.Read(path, MaxKeyFile)
	defer clear(data)
	if err != nil {
		return nil, fmt.Errorf("secrets: load key file: %w", err) // the error names the path
	}
	// Windows has no such mode bits: there the file's ACL is the operator's to set.
	if perm := fi.Mode().Perm(); perm&^0o600 != 0 && runtime.GOOS != "windows" {
		return nil, fmt.Errorf("secrets: load key file %s: mode is %#o, must be 0600 or stricter (chmod 600 %s)", path, perm, path)
	}
	k, err := ParseKeyring(data)
	if err != nil {
		return nil, fmt.Errorf("secrets: load key file %s: %w", path, err)
	}
	return k, nil
}

// KeyringFromEnv parses a keyring given in an environment variable's value: the key
// file's format, with ';' or newlines between keys.
func KeyringFromEnv(value string) (*Keyring, error) {
	k, err := ParseKeyring([]byte(strings.ReplaceAll(value, ";", "\n")))
	if err != nil {
		return nil, fmt.Errorf("secrets: keyring from the environment: %w", err)
	}
	return k, nil
}

// GenerateKey returns a key file line "<id> <base64 key>" with 32 random bytes, for the
// operator to add to the key file (first, to make it the primary).
func GenerateKey(id string) (line string, err error) {
	if err := CheckKeyID(id); err != nil {
		return "", fmt.Errorf("secrets: generate key: %w", err)
	}
	key := make([]byte, KeySize)
	defer clear(key)
	if _, err := rand.Read(key); err != nil {
		return "", fmt.Errorf("secrets: generate key: %w", err)
	}
	return id + " " + base64.StdEncoding.EncodeToString(key), nil
}

// Primary returns the id of the key new seals use; "" for a nil Keyring.
func (k *Keyring) Primary() string {
	if k.empty() {
		return ""
	}
	return k.ids[0]
}

// IDs returns the key ids, primary first, in file order.
func (k *Keyring) IDs() []string {
	if k == nil {
		return nil
	}
	return append([]string(nil), k.ids...)
}

// Has reports whether the keyring has a key with id.
func (k *Keyring) Has(id string) bool {
	if k == nil {
		return false
	}
	_, ok := k.keys[id]
	return ok
}

// empty reports whether k has no keys: nil, or not made by ParseKeyring.
func (k *Keyring) empty() bool { return k == nil || len(k.ids) == 0 }

func additionalData(name string) []byte { return []byte(adPrefix + name) }

// Seal encrypts plaintext for the secret name with the primary key and a random nonce,
// and returns the key's id, the nonce and the ciphertext (plaintext plus a 16-byte tag).
func (k *Keyring) Seal(name string, plaintext []byte) (keyID string, nonce, ciphertext []byte, err error) {
	if err := CheckName(name); err != nil {
		return "", nil, nil, fmt.Errorf("secrets: seal: %w", err)
	}
	if k.empty() {
		return "", nil, nil, fmt.Errorf("secrets: seal %q: %w", name, ErrNoKeyring)
	}
	if err := CheckValue(plaintext); err != nil {
		return "", nil, nil, fmt.Errorf("secrets: seal %q: %w", name, err)
	}
	id := k.ids[0]
	nonce = make([]byte, NonceSize)
	if _, err := rand.Read(nonce); err != nil {
		return "", nil, nil, fmt.Errorf("secrets: seal %q: %w", name, err)
	}
	return id, nonce, k.keys[id].seal(nil, nonce, plaintext, additionalData(name)), nil
}

// Open decrypts what Seal returned for the secret name. The error wraps [ErrUnknownKey]
// (naming the id) when the keyring has no key keyID, [ErrDecrypt] when the ciphertext
// does not open under it for this name, and [ErrInvalid] when a size is wrong.
func (k *Keyring) Open(keyID, name string, nonce, ciphertext []byte) ([]byte, error) {
	if err := CheckName(name); err != nil {
		return nil, fmt.Errorf("secrets: open: %w", err)
	}
	if k.empty() {
		return nil, fmt.Errorf("secrets: open %q: %w", name, ErrNoKeyring)
	}
	if err := CheckSealed(keyID, nonce, ciphertext); err != nil {
		return nil, fmt.Errorf("secrets: open %q: %w", name, err)
	}
	ops, ok := k.keys[keyID]
	if !ok {
		return nil, fmt.Errorf("secrets: open %q: key %q: %w (it has %s)", name, keyID, ErrUnknownKey, strings.Join(k.ids, ", "))
	}
	p, err := ops.open(nil, nonce, ciphertext, additionalData(name))
	if err != nil {
		return nil, fmt.Errorf("secrets: open %q with key %q: %w", name, keyID, ErrDecrypt)
	}
	return p, nil
}

// String describes the keyring by its key ids.
func (k *Keyring) String() string {
	if k.empty() {
		return "secrets.Keyring(empty)"
	}
	return fmt.Sprintf("secrets.Keyring{primary: %s, keys: [%s]}", k.ids[0], strings.Join(k.ids, " "))
}

// GoString is String.
func (k *Keyring) GoString() string { return k.String() }

// Format prints String whatever the verb, so that no verb reaches the key material.
func (k *Keyring) Format(f fmt.State, _ rune) { io.WriteString(f, k.String()) }

// MarshalJSON encodes the key ids: {"primary": "k2", "keys": ["k2", "k1"]}.
func (k *Keyring) MarshalJSON() ([]byte, error) {
	v := struct {
		Primary string   `json:"primary"`
		Keys    []string `json:"keys"`
	}{Primary: k.Primary(), Keys: k.IDs()}
	return json.Marshal(v)
}

// LogValue logs the key ids.
func (k *Keyring) LogValue() slog.Value {
	if k.empty() {
		return slog.StringValue("empty")
	}
	return slog.GroupValue(slog.String("primary", k.ids[0]), slog.Any("keys", k.ids))
}
