package argcheck

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"unicode"
	"unicode/utf8"
)

// MaxArgumentBytes bounds a call's raw arguments before they are decoded.
const MaxArgumentBytes = 1 << 20

// ErrInvalidUTF8 is returned by [DecodeArguments] for arguments that are not valid UTF-8.
var ErrInvalidUTF8 = errors.New("arguments must be valid UTF-8")

// ErrDuplicateKey is returned by [DecodeArguments], wrapped with the two keys, for JSON with
// an object key given twice, compared regardless of case.
var ErrDuplicateKey = errors.New("an object has the same key twice")

// DecodeArguments decodes a call's raw arguments into the form [Validator.Validate] takes.
// Empty input and null mean no arguments. It refuses input over [MaxArgumentBytes], anything
// but a JSON object, and JSON in which any object — at any depth — repeats a key: Go keeps
// the last value, other parsers the first, so a duplicate would let the gateway check one
// value while the upstream acts on another. Keys that differ only in case ("to", "TO")
// count as the same: servers that bind arguments to fields match names regardless of case
// (Go's encoding/json, .NET's default), so an upstream could act on "TO" while the gateway
// checked "to".
func DecodeArguments(raw []byte) (map[string]any, error) {
	if len(raw) > MaxArgumentBytes {
		return nil, fmt.Errorf("arguments are larger than %d bytes", MaxArgumentBytes)
	}
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return map[string]any{}, nil
	}
	// JSON is UTF-8. Go's decoder would replace invalid bytes, so two different keys could
	// decode to one, and an upstream that keeps the bytes would see what was never checked.
	if !utf8.Valid(raw) {
		return nil, ErrInvalidUTF8
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil || m == nil {
		return nil, errors.New("arguments must be a JSON object")
	}
	if a, b, dup := duplicateKeys(raw); dup {
		if a == b {
			return nil, fmt.Errorf("%w: %q", ErrDuplicateKey, truncate(a, 64))
		}
		return nil, fmt.Errorf("%w: %q and %q differ only in case, and servers that match names regardless of case read them as one", ErrDuplicateKey, truncate(a, 64), truncate(b, 64))
	}
	return m, nil
}

// duplicateKeys reports whether any object in data, which must be valid JSON, has a key
// twice, and the two. Keys are compared after unescaping, so "a" and "\u0061" are the same
// key, and regardless of case as encoding/json matches them (Unicode simple folding, so
// "ſ" is an "s").
//
// Keys without escapes are compared as sub-slices of data, and the keys of every open
// object share one slice (an object's keys are the tail from its frame's start), so the
// common case allocates nothing.
func duplicateKeys(data []byte) (first, second string, dup bool) {
	type frame struct {
		object  bool
		wantKey bool
		// start is where the object's keys begin in keys; once it has more than
		// maxListedKeys, they are in set instead.
		start int
		set   map[string]string // folded key: the key as given
	}
	const maxListedKeys = 16 // large objects: a set keeps this linear
	var stackBuf [16]frame
	var keysBuf [32][]byte
	stack, keys := stackBuf[:0], keysBuf[:0]
	for i := 0; i < len(data); i++ {
		switch c := data[i]; c {
		case '{':
			stack = append(stack, frame{object: true, wantKey: true, start: len(keys)})
		case '[':
			stack = append(stack, frame{start: len(keys)})
		case '}', ']':
			keys = keys[:stack[len(stack)-1].start]
			stack = stack[:len(stack)-1]
		case ',':
			if top := len(stack) - 1; top >= 0 && stack[top].object {
				stack[top].wantKey = true
			}
		case '"':
			end, escaped := stringEnd(data, i)
			if top := len(stack) - 1; top >= 0 && stack[top].wantKey {
				f := &stack[top]
				f.wantKey = false
				key := data[i+1 : end]
				if escaped {
					var ok bool
					if key, ok = unescapeKey(data[i : end+1]); !ok {
						return "", "", true // cannot happen for valid JSON; refuse rather than guess
					}
				}
				if f.set != nil {
					folded := foldKey(key)
					if k, dup := f.set[folded]; dup {
						return k, string(key), true
					}
					f.set[folded] = string(key)
				} else {
					// f is the innermost open object, so keys[f.start:] are its own.
					for _, k := range keys[f.start:] {
						if bytes.EqualFold(k, key) {
							return string(k), string(key), true
						}
					}
					keys = append(keys, key)
					if len(keys)-f.start > maxListedKeys {
						f.set = make(map[string]string, 2*(len(keys)-f.start))
						for _, k := range keys[f.start:] {
							f.set[foldKey(k)] = string(k)
						}
						keys = keys[:f.start]
					}
				}
			}
			i = end
		}
	}
	return "", "", false
}

// foldKey returns the same string for keys that bytes.EqualFold calls equal: each rune
// replaced by the smallest of the runes it folds to and from.
func foldKey(key []byte) string {
	b := make([]byte, 0, len(key))
	for _, r := range string(key) {
		least := r
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			least = min(least, f)
		}
		b = utf8.AppendRune(b, least)
	}
	return string(b)
}

// unescapeKey decodes quoted, a JSON string with escapes.
func unescapeKey(quoted []byte) ([]byte, bool) {
	var key string
	if json.Unmarshal(quoted, &key) != nil {
		return nil, false
	}
	return []byte(key), true
}

// stringEnd returns the index of the quote closing the string that starts at data[start],
// and whether the string contains escapes.
func stringEnd(data []byte, start int) (int, bool) {
	escaped := false
	for j := start + 1; j < len(data); j++ {
		switch data[j] {
		case '\\':
			escaped = true
			j++
		case '"':
			return j, escaped
		}
	}
	return len(data) - 1, escaped
}
