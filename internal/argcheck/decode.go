package argcheck

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf8"
)

// MaxArgumentBytes bounds a call's raw arguments before they are decoded.
const MaxArgumentBytes = 1 << 20

// ErrInvalidUTF8 is returned by [DecodeArguments] for arguments that are not valid UTF-8.
var ErrInvalidUTF8 = errors.New("arguments must be valid UTF-8")

// ErrDuplicateKey is returned by [DecodeArguments] for JSON with an object key given twice.
var ErrDuplicateKey = errors.New("an object has the same key twice")

// DecodeArguments decodes a call's raw arguments into the form [Validator.Validate] takes.
// Empty input and null mean no arguments. It refuses input over [MaxArgumentBytes], anything
// but a JSON object, and JSON in which any object — at any depth — repeats a key: Go keeps
// the last value, other parsers the first, so a duplicate would let the gateway check one
// value while the upstream acts on another.
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
	if duplicateKeys(raw) {
		return nil, ErrDuplicateKey
	}
	return m, nil
}

// duplicateKeys reports whether any object in data, which must be valid JSON, has a key
// twice. Keys are compared after unescaping, so "a" and "\u0061" are the same key.
func duplicateKeys(data []byte) bool {
	type frame struct {
		object  bool
		wantKey bool
		keys    []string
		set     map[string]struct{}
	}
	var stack []frame
	for i := 0; i < len(data); i++ {
		switch c := data[i]; c {
		case '{':
			stack = append(stack, frame{object: true, wantKey: true})
		case '[':
			stack = append(stack, frame{})
		case '}', ']':
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
				key := string(data[i+1 : end])
				if escaped {
					if json.Unmarshal(data[i:end+1], &key) != nil {
						return true // cannot happen for valid JSON; refuse rather than guess
					}
				}
				if f.set != nil {
					if _, dup := f.set[key]; dup {
						return true
					}
					f.set[key] = struct{}{}
				} else {
					for _, k := range f.keys {
						if k == key {
							return true
						}
					}
					f.keys = append(f.keys, key)
					if len(f.keys) > 16 { // large objects: a set keeps this linear
						f.set = make(map[string]struct{}, 2*len(f.keys))
						for _, k := range f.keys {
							f.set[k] = struct{}{}
						}
						f.keys = nil
					}
				}
			}
			i = end
		}
	}
	return false
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
