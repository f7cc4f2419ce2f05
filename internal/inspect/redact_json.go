package inspect

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"
)

// Bounds of redaction.
const (
	// secretRedactRounds bounds how often a text is handed to the scanner again after a
	// redaction (each [SecretScanner.Redact] itself rescans up to three times).
	// A text in which secrets are still found after that is replaced whole by
	// secretRedactedWhole.
	secretRedactRounds = 3
	// MaxRedactJSONDepth is the deepest nesting of arrays and objects
	// [SecretScanner.RedactJSON] walks. Deeper JSON is an error: callers replace the
	// value whole (see RedactedUnreadableJSON) rather than pass it on unscanned.
	MaxRedactJSONDepth = 512
)

// Markers written in place of content that cannot be shown.
const (
	// secretRedactedWhole replaces a text in which secrets are still found after
	// secretRedactRounds rounds of redaction.
	secretRedactedWhole = "[REDACTED:secret]"
	// RedactedUnreadableJSON, a JSON string, stands in for JSON that cannot be walked
	// (not valid JSON, or nested deeper than MaxRedactJSONDepth), so that nothing
	// unscanned leaves.
	RedactedUnreadableJSON = `"[REDACTED:unreadable_json]"`
)

// errSecretTooDeep reports JSON nested deeper than MaxRedactJSONDepth.
var errSecretTooDeep = fmt.Errorf("json nested deeper than %d levels", MaxRedactJSONDepth)

// RedactText returns s with every secret the scanner finds replaced by
// "[REDACTED:<kind>]", and how many it replaced. The result is scanned again until
// nothing more is found, at most three rounds; a text that still holds a secret
// after that is replaced whole by "[REDACTED:secret]". A text without secrets is
// returned as it is, with 0.
func (r *SecretScanner) RedactText(s string) (string, int) {
	if s == "" {
		return s, 0
	}
	total := 0
	for range secretRedactRounds {
		out, n := r.Redact(s)
		if n == 0 {
			return s, total
		}
		total += n
		s = out
		if len(r.Scan(s)) == 0 {
			return s, total
		}
	}
	return secretRedactedWhole, total + 1
}

// member redacts the string value v of the object member named key. Some secrets are
// recognised only by the name they are assigned to ({"password":"..."}), so v is
// scanned behind its key as well as on its own; only the part of a finding that lies
// in v is replaced.
func (r *SecretScanner) redactMember(key, v string) (string, int) {
	total := 0
	for range secretRedactRounds {
		prefix := key + ": "
		found := r.Scan(prefix + v)
		var b []byte
		last, n := 0, 0
		for _, f := range found {
			start, end := f.Span.Start-len(prefix), f.Span.End-len(prefix)
			if end <= 0 {
				continue // in the key: the key is redacted on its own
			}
			start = max(start, last)
			if start >= end {
				continue
			}
			b = append(b, v[last:start]...)
			b = append(b, "[REDACTED:"...)
			b = append(b, f.Kind...)
			b = append(b, ']')
			last = end
			n++
		}
		if n > 0 {
			b = append(b, v[last:]...)
			v = string(b)
			total += n
		}
		out, m := r.RedactText(v)
		v = out
		total += m
		if n == 0 && m == 0 {
			return v, total
		}
	}
	if r.memberClean(key, v) {
		return v, total
	}
	return secretRedactedWhole, total + 1
}

// memberClean reports whether the scanner finds nothing in v, on its own or behind key.
func (r *SecretScanner) memberClean(key, v string) bool {
	prefix := key + ": "
	for _, f := range r.Scan(prefix + v) {
		if f.Span.End > len(prefix) {
			return false
		}
	}
	return len(r.Scan(v)) == 0
}

// JSON returns raw with the secrets in its strings redacted, and how many it
// redacted. It walks the JSON value: every string — object keys and values, at any
// depth — passes through [SecretScanner.RedactText], and a string value is also scanned
// behind the name of its member. The result is valid JSON with the same structure,
// member order and numbers. When nothing is redacted raw itself is returned,
// byte for byte; otherwise the result is compact. Empty input is returned as it is.
// It fails for input that is not one valid JSON value or is nested deeper than
// [MaxRedactJSONDepth].
func (r *SecretScanner) RedactJSON(raw json.RawMessage) (json.RawMessage, int, error) {
	if len(raw) == 0 {
		return raw, 0, nil
	}
	w := secretJSONRewriter{r: r, dec: json.NewDecoder(bytes.NewReader(raw))}
	w.dec.UseNumber()
	w.out = make([]byte, 0, len(raw)+64)
	tok, err := w.dec.Token()
	if err != nil {
		return nil, 0, fmt.Errorf("redact json: %w", err)
	}
	if err := w.value(tok, "", false, 0); err != nil {
		return nil, 0, fmt.Errorf("redact json: %w", err)
	}
	if _, err := w.dec.Token(); !errors.Is(err, io.EOF) {
		return nil, 0, errors.New("redact json: data after the value")
	}
	if w.n == 0 {
		return raw, 0, nil
	}
	return w.out, w.n, nil
}

// secretJSONRewriter writes a JSON value token by token, redacting its strings.
type secretJSONRewriter struct {
	r   *SecretScanner
	dec *json.Decoder
	out []byte
	n   int // secrets redacted
}

// value writes the value that starts with tok. key is the name of the member the value
// belongs to, when inMember.
func (w *secretJSONRewriter) value(tok json.Token, key string, inMember bool, depth int) error {
	switch t := tok.(type) {
	case string:
		var s string
		var n int
		if inMember {
			s, n = w.r.redactMember(key, t)
		} else {
			s, n = w.r.RedactText(t)
		}
		w.n += n
		w.out = secretAppendJSONString(w.out, s)
	case json.Number:
		w.out = append(w.out, t...)
	case bool:
		if t {
			w.out = append(w.out, "true"...)
		} else {
			w.out = append(w.out, "false"...)
		}
	case nil:
		w.out = append(w.out, "null"...)
	case json.Delim:
		if depth >= MaxRedactJSONDepth {
			return errSecretTooDeep
		}
		switch t {
		case '{':
			return w.object(depth + 1)
		case '[':
			return w.array(depth + 1)
		}
		return fmt.Errorf("unexpected %q", rune(t))
	default:
		return fmt.Errorf("unexpected token %T", tok)
	}
	return nil
}

func (w *secretJSONRewriter) object(depth int) error {
	w.out = append(w.out, '{')
	for i := 0; w.dec.More(); i++ {
		tok, err := w.dec.Token()
		if err != nil {
			return err
		}
		key, ok := tok.(string)
		if !ok {
			return fmt.Errorf("object key is %T, not a string", tok)
		}
		if i > 0 {
			w.out = append(w.out, ',')
		}
		k, n := w.r.RedactText(key)
		w.n += n
		w.out = secretAppendJSONString(w.out, k)
		w.out = append(w.out, ':')
		tok, err = w.dec.Token()
		if err != nil {
			return err
		}
		if err := w.value(tok, key, true, depth); err != nil {
			return err
		}
	}
	if _, err := w.dec.Token(); err != nil { // the closing brace
		return err
	}
	w.out = append(w.out, '}')
	return nil
}

func (w *secretJSONRewriter) array(depth int) error {
	w.out = append(w.out, '[')
	for i := 0; w.dec.More(); i++ {
		tok, err := w.dec.Token()
		if err != nil {
			return err
		}
		if i > 0 {
			w.out = append(w.out, ',')
		}
		if err := w.value(tok, "", false, depth); err != nil {
			return err
		}
	}
	if _, err := w.dec.Token(); err != nil { // the closing bracket
		return err
	}
	w.out = append(w.out, ']')
	return nil
}

// secretAppendJSONString appends s as a JSON string, escaped as the audit log encodes text:
// quotes, backslashes and control characters escaped, U+2028 and U+2029 escaped, HTML
// characters as they are, invalid UTF-8 replaced by U+FFFD.
func secretAppendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c == '\n':
				b = append(b, '\\', 'n')
			case c == '\r':
				b = append(b, '\\', 'r')
			case c == '\t':
				b = append(b, '\\', 't')
			case c < 0x20:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, "\ufffd"...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xf])
		default:
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return append(b, '"')
}
