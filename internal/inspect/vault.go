package inspect

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"unicode/utf8"
)

// Placeholders look like "[pii:EMAIL:3f9a0c1d2e4b5a67]": ASCII, nothing JSON escapes,
// easy to copy, unlikely in ordinary text, and naming the type. The tag is the first 8
// bytes of HMAC-SHA256(key, type, value) in lower case hex, so the same value always
// gets the same placeholder in a session and the placeholder reveals nothing about it.
const (
	vaultPrefix = "[pii:"
	vaultTagLen = 16 // hex digits
	// vaultMaxType is the longest type name a placeholder may carry.
	vaultMaxType = 64
	// VaultMinKey is the shortest key NewVault accepts, in bytes.
	VaultMinKey = 16
	// VaultDefaultMax is how many values a vault holds when NewVault is given no bound.
	VaultDefaultMax = 10_000
	// VaultMaxValue is the longest value a vault holds, in bytes.
	VaultMaxValue = 4096
)

// ErrVaultFull is returned by [Vault.Token] when the vault holds as many values as it
// may. The caller redacts the value instead: it never passes through.
var ErrVaultFull = errors.New("personal-data vault is full")

// Vault holds the values behind placeholders for one session. Safe for concurrent use.
// Bounded: it holds at most the number of values it was made with.
type Vault struct {
	key []byte
	max int

	// mu guards entries.
	mu sync.RWMutex
	// entries maps each placeholder issued to the type and value behind it.
	entries map[string]vaultEntry
}

type vaultEntry struct {
	typ, value string
}

// NewVault makes a vault whose placeholders are keyed by key (at least 16 bytes; an
// HMAC-SHA256 of type and value truncated to 8 bytes hex keeps placeholders stable for
// the same value and reveals nothing about it) and which holds at most max values
// (max <= 0: 10,000).
func NewVault(key []byte, max int) (*Vault, error) {
	if len(key) < VaultMinKey {
		return nil, fmt.Errorf("personal-data vault key is %d bytes, want at least %d", len(key), VaultMinKey)
	}
	if max <= 0 {
		max = VaultDefaultMax
	}
	return &Vault{key: slices.Clone(key), max: max, entries: make(map[string]vaultEntry)}, nil
}

// vaultTypeOK reports whether typ can name a type in a placeholder: 1 to vaultMaxType
// upper case letters, digits and underscores, starting with a letter.
func vaultTypeOK(typ string) bool {
	if typ == "" || len(typ) > vaultMaxType || !piiIsUpper(typ[0]) {
		return false
	}
	for i := 0; i < len(typ); i++ {
		if b := typ[i]; !piiIsUpper(b) && !piiIsDigit(b) && b != '_' {
			return false
		}
	}
	return true
}

// vaultValueOK reports whether a value may go into the vault: valid UTF-8 of at most
// VaultMaxValue bytes with nothing JSON would escape (quote, backslash, control
// characters), so that swapping it back into raw JSON text keeps the JSON valid.
func vaultValueOK(value string) error {
	if value == "" || len(value) > VaultMaxValue {
		return fmt.Errorf("personal-data value is %d bytes, want 1 to %d", len(value), VaultMaxValue)
	}
	if !utf8.ValidString(value) {
		return errors.New("personal-data value is not valid UTF-8")
	}
	for i := 0; i < len(value); i++ {
		if b := value[i]; b < 0x20 || b == 0x7f || b == '"' || b == '\\' {
			return fmt.Errorf("personal-data value holds byte %#02x, which JSON text would escape", b)
		}
	}
	return nil
}

// placeholder computes the placeholder of a value of a type.
func (v *Vault) placeholder(typ, value string) string {
	m := hmac.New(sha256.New, v.key)
	m.Write([]byte(typ))
	m.Write([]byte{0})
	m.Write([]byte(value))
	var sum [sha256.Size]byte
	tag := m.Sum(sum[:0])
	return vaultPrefix + typ + ":" + hex.EncodeToString(tag[:vaultTagLen/2]) + "]"
}

// Token returns the placeholder for a value of a type, remembering it. The same type and
// value always give the same placeholder. When the vault is full it returns
// [ErrVaultFull] (the caller then redacts instead: fail closed, never passes the value
// through). A type that is not upper case letters, digits and underscores, a value the
// vault cannot carry back into JSON safely (see [VaultMaxValue]; no quotes, backslashes
// or control characters) and a clash of placeholders are errors too.
func (v *Vault) Token(typ, value string) (string, error) {
	if !vaultTypeOK(typ) {
		return "", fmt.Errorf("personal-data type %q is not upper case letters, digits and underscores of at most %d bytes", typ, vaultMaxType)
	}
	if err := vaultValueOK(value); err != nil {
		return "", err
	}
	ph := v.placeholder(typ, value)
	v.mu.Lock()
	defer v.mu.Unlock()
	if e, ok := v.entries[ph]; ok {
		if e.typ != typ || e.value != value {
			// Two values share 64 bits of HMAC: refuse rather than swap in the wrong one.
			return "", fmt.Errorf("personal-data placeholder %s already stands for another value", ph)
		}
		return ph, nil
	}
	if len(v.entries) >= v.max {
		return "", ErrVaultFull
	}
	v.entries[ph] = vaultEntry{typ: typ, value: value}
	return ph, nil
}

// Len returns how many values the vault holds.
func (v *Vault) Len() int {
	v.mu.RLock()
	defer v.mu.RUnlock()
	return len(v.entries)
}

// vaultParse reads a placeholder at text[i:], which starts with vaultPrefix, and returns
// its end and type, or -1.
func vaultParse(text string, i int) (end int, typ string) {
	p := i + len(vaultPrefix)
	t := p
	for p < len(text) && p-t <= vaultMaxType && (piiIsUpper(text[p]) || piiIsDigit(text[p]) || text[p] == '_') {
		p++
	}
	if p == t || p-t > vaultMaxType || p >= len(text) || text[p] != ':' || !piiIsUpper(text[t]) {
		return -1, ""
	}
	typ = text[t:p]
	p++
	h := p
	for p < len(text) && p-h < vaultTagLen && (piiIsDigit(text[p]) || ('a' <= text[p] && text[p] <= 'f')) {
		p++
	}
	if p-h != vaultTagLen || p >= len(text) || text[p] != ']' {
		return -1, ""
	}
	return p + 1, typ
}

// scan calls fn for each placeholder of this vault in text, in order, with its span
// and entry. The caller holds mu.
func (v *Vault) scan(text string, fn func(start, end int, e vaultEntry)) {
	for off := 0; off < len(text); {
		k := strings.Index(text[off:], vaultPrefix)
		if k < 0 {
			return
		}
		i := off + k
		end, _ := vaultParse(text, i)
		if end < 0 {
			off = i + 1
			continue
		}
		if e, ok := v.entries[text[i:end]]; ok {
			fn(i, end, e)
			off = end
			continue
		}
		off = i + 1
	}
}

// Detokenize replaces every placeholder of this vault in text with its value, returning
// the new text and the types it swapped back (each once, sorted). Placeholders this
// vault did not issue are left as they are. Values hold nothing JSON escapes, so a
// placeholder inside a JSON string in raw JSON text is swapped safely.
func (v *Vault) Detokenize(text string) (string, []string) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	var b strings.Builder
	var types []string
	prev := 0
	v.scan(text, func(start, end int, e vaultEntry) {
		if prev == 0 {
			b.Grow(len(text))
		}
		b.WriteString(text[prev:start])
		b.WriteString(e.value)
		prev = end
		if !slices.Contains(types, e.typ) {
			types = append(types, e.typ)
		}
	})
	if types == nil {
		return text, nil
	}
	b.WriteString(text[prev:])
	slices.Sort(types)
	return b.String(), types
}

// Placeholders reports the placeholders of this vault found in text with their types
// (so a caller can decide whether the destination may receive them before swapping):
// Sensor=SensorPII, Kind=type, Span=byte range, Score=1.
func (v *Vault) Placeholders(text string) []Finding {
	v.mu.RLock()
	defer v.mu.RUnlock()
	var out []Finding
	v.scan(text, func(start, end int, e vaultEntry) {
		out = append(out, Finding{Sensor: SensorPII, Kind: e.typ, Span: Span{start, end}, Score: 1})
	})
	return out
}

// Modes and transforms.

// Modes of handling personal data.
const (
	// PIIAllow lets personal data through unchanged.
	PIIAllow = "allow"
	// PIIRedact replaces each value with its type in brackets: "[EMAIL]".
	PIIRedact = "redact"
	// PIIMask hides most of each value, keeping a little to stay useful:
	// "j***@example.com", "**** **** **** 1234".
	PIIMask = "mask"
	// PIITokenize replaces each value with a placeholder of a [Vault], which the
	// gateway swaps back only for tools allowed to receive the type.
	PIITokenize = "tokenize"
)

// ParsePIIMode checks a mode name.
func ParsePIIMode(s string) (string, error) {
	switch s {
	case PIIAllow, PIIRedact, PIIMask, PIITokenize:
		return s, nil
	}
	return "", fmt.Errorf("unknown personal-data mode %q: want %s, %s, %s or %s", s, PIIAllow, PIIRedact, PIIMask, PIITokenize)
}

// errPIINoVault is returned by TransformPII when tokenizing without a vault.
var errPIINoVault = errors.New("tokenize personal data: no vault")

// TransformPII rewrites text according to mode for the given findings (from Scan on the
// same text): redact replaces each with "[<TYPE>]" (e.g. "[EMAIL]"); mask keeps a
// little to stay useful (e-mail "j***@example.com", card "**** **** **** 1234", IBAN
// keeps the country and last 4, phone keeps the last 2-4 digits, IP keeps the first
// octet/hextet, others keep the last 2 characters); tokenize replaces each with
// v.Token(...), and redacts a value the vault cannot hold (fail closed). allow returns
// text unchanged. v may be nil except for tokenize (error). Findings must lie in text,
// in order and without overlaps, with a type name of upper case letters, digits and
// underscores; anything else is an error.
func TransformPII(text string, findings []Finding, mode string, v *Vault) (string, error) {
	if _, err := ParsePIIMode(mode); err != nil {
		return "", err
	}
	if mode == PIITokenize && v == nil {
		return "", errPIINoVault
	}
	if mode == PIIAllow || len(findings) == 0 {
		return text, nil
	}
	prev := 0
	for i, f := range findings {
		if f.Span.Start < prev || f.Span.End <= f.Span.Start || f.Span.End > len(text) {
			return "", fmt.Errorf("transform personal data: finding %d: span [%d, %d) is not after %d and within the %d bytes of the text", i, f.Span.Start, f.Span.End, prev, len(text))
		}
		if !vaultTypeOK(f.Kind) {
			return "", fmt.Errorf("transform personal data: finding %d: type %q is not upper case letters, digits and underscores of at most %d bytes", i, f.Kind, vaultMaxType)
		}
		prev = f.Span.End
	}
	var b strings.Builder
	b.Grow(len(text) + 16*len(findings))
	prev = 0
	for _, f := range findings {
		b.WriteString(text[prev:f.Span.Start])
		value := text[f.Span.Start:f.Span.End]
		switch mode {
		case PIIRedact:
			piiWriteRedacted(&b, f.Kind)
		case PIIMask:
			b.WriteString(piiMask(f.Kind, value))
		case PIITokenize:
			if ph, err := v.Token(f.Kind, value); err == nil {
				b.WriteString(ph)
			} else {
				piiWriteRedacted(&b, f.Kind)
			}
		}
		prev = f.Span.End
	}
	b.WriteString(text[prev:])
	return b.String(), nil
}

func piiWriteRedacted(b *strings.Builder, kind string) {
	b.WriteByte('[')
	b.WriteString(kind)
	b.WriteByte(']')
}

// piiMask hides most of a value of the given type.
func piiMask(kind, value string) string {
	switch kind {
	case "EMAIL":
		if at := strings.LastIndexByte(value, '@'); at > 0 {
			_, size := utf8.DecodeRuneInString(value)
			return value[:size] + "***" + value[at:]
		}
	case "CREDIT_CARD":
		return "**** **** **** " + piiLastAlnum(value, 4)
	case "IBAN":
		return piiMaskKeep(value, 2, 4)
	case "PHONE":
		keep := 2
		if n := piiCountDigits(value); n >= 10 {
			keep = 4
		} else if n >= 8 {
			keep = 3
		}
		return piiMaskKeep(value, 0, keep)
	case "IP_ADDRESS":
		if k := strings.IndexAny(value, ".:"); k >= 0 {
			switch {
			case value[k] == '.':
				return value[:k] + ".*.*.*"
			case k == 0:
				return "::*"
			}
			return value[:k] + ":*"
		}
	}
	return piiMaskKeep(value, 0, 2)
}

// piiMaskKeep replaces every letter and digit of value with '*' except the first head
// and the last tail of them, keeping separators.
func piiMaskKeep(value string, head, tail int) string {
	n := 0
	for i := 0; i < len(value); i++ {
		if piiIsAlnum(value[i]) {
			n++
		}
	}
	if head+tail >= n {
		head, tail = 0, min(tail, n/2)
	}
	b := []byte(value)
	k := 0
	for i := range b {
		if !piiIsAlnum(b[i]) {
			if b[i] >= utf8.RuneSelf {
				b[i] = '*'
			}
			continue
		}
		if k >= head && k < n-tail {
			b[i] = '*'
		}
		k++
	}
	return string(b)
}

// piiLastAlnum returns the last n letters and digits of value.
func piiLastAlnum(value string, n int) string {
	var out []byte
	for i := len(value) - 1; i >= 0 && len(out) < n; i-- {
		if piiIsAlnum(value[i]) {
			out = append(out, value[i])
		}
	}
	slices.Reverse(out)
	return string(out)
}

func piiCountDigits(s string) int {
	n := 0
	for i := 0; i < len(s); i++ {
		if piiIsDigit(s[i]) {
			n++
		}
	}
	return n
}
