package argcheck

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestDecodeArguments(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		wantErr  string // "" for success
		wantLen  int
	}{
		{"empty", ``, "", 0},
		{"null", ` null `, "", 0},
		{"object", `{"a":1,"b":{"c":[1,{"d":2}]}}`, "", 2},
		{"same key in different objects", `{"a":{"x":1},"b":{"x":2},"c":[{"x":1},{"x":2}]}`, "", 3},
		{"key text inside a value", `{"a":"\"a\":1","b":"a"}`, "", 2},
		{"duplicate top level", `{"to":"a@example.com","to":"x@evil.net"}`, "same key twice", 0},
		{"duplicate nested", `{"a":{"b":1,"b":2}}`, "same key twice", 0},
		{"duplicate in array of objects", `{"a":[{"b":1},{"c":1,"c":2}]}`, "same key twice", 0},
		{"duplicate by escape", `{"a":1,"\u0061":2}`, "same key twice", 0},
		{"duplicate in a large object", `{` + manyKeys(40) + `,"k7":0}`, "same key twice", 0},
		{"parent key again after a nested object", `{"a":{"b":1,"c":2},"a":3}`, "same key twice", 0},
		{"parent key reused inside a nested object", `{"a":{"a":1,"b":{"a":2}},"b":[{"a":3}],"c":0}`, "", 3},
		{"parent key again after a large nested object", `{"x":1,"o":{` + manyKeys(40) + `},"x":2}`, "same key twice", 0},
		{"large nested objects side by side", `{"o":{` + manyKeys(40) + `},"p":{` + manyKeys(40) + `},"q":[{` + manyKeys(20) + `}]}`, "", 3},
		{"duplicate in a large object after a nested one", `{` + manyKeys(20) + `,"n":{"k7":1},"k7":0}`, "same key twice", 0},
		{"duplicate deep down", strings.Repeat(`{"a":[`, 40) + `{"k":1,"k":2}` + strings.Repeat(`]}`, 40), "same key twice", 0},
		{"deep without duplicates", strings.Repeat(`{"a":0,"b":[`, 40) + `{"a":1,"b":2}` + strings.Repeat(`]}`, 40), "", 2},
		{"duplicate by escape after a nested object", `{"ab":{"ab":1},"\u0061b":2}`, "same key twice", 0},
		{"keys differing in case", `{"to":"a@example.com","TO":"x@evil.net"}`, `"to" and "TO" differ only in case`, 0},
		{"keys differing in case, nested", `{"a":{"Amount":1,"amount":2}}`, "differ only in case", 0},
		{"keys differing in case in a large object", `{` + manyKeys(40) + `,"K7":0}`, `"k7" and "K7" differ only in case`, 0},
		{"a key folding to another by a non-ASCII letter", `{"subject":"a","\u017Fubject":"b"}`, "differ only in case", 0},
		{"the Kelvin sign folds to k", `{"k1":0,"\u212A1":1}`, "differ only in case", 0},
		{"same letters in different objects", `{"a":{"to":1},"b":{"TO":2}}`, "", 2},
		{"array", `[1,2]`, "must be a JSON object", 0},
		{"string", `"x"`, "must be a JSON object", 0},
		{"malformed", `{"a":`, "must be a JSON object", 0},
		{"invalid UTF-8 keys that decode alike", "{\"\xf4\":0,\"\xce\":0}", "valid UTF-8", 0},
		{"oversized", `{"a":"` + strings.Repeat("x", MaxArgumentBytes) + `"}`, "larger than", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := DecodeArguments([]byte(tc.in))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Errorf("DecodeArguments(%.60q) = %v, want error containing %q", tc.in, err, tc.wantErr)
				}
				return
			}
			if err != nil || len(m) != tc.wantLen {
				t.Errorf("DecodeArguments(%.60q) = %v (%d keys), %v; want %d keys", tc.in, m, len(m), err, tc.wantLen)
			}
		})
	}
}

func manyKeys(n int) string {
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`"k` + string(rune('0'+i/10)) + string(rune('0'+i%10)) + `":0`)
	}
	return strings.Replace(b.String(), `"k07"`, `"k7"`, 1)
}

// referenceDuplicate finds duplicate keys the slow, obviously right way: the standard
// decoder's token stream, comparing every pair of keys with strings.EqualFold.
func referenceDuplicate(data []byte) bool {
	dec := json.NewDecoder(bytes.NewReader(data))
	var walk func() bool
	walk = func() bool {
		tok, err := dec.Token()
		if err != nil {
			return false
		}
		switch tok {
		case json.Delim('{'):
			var seen []string
			for dec.More() {
				k, _ := dec.Token()
				key := k.(string)
				for _, s := range seen {
					if strings.EqualFold(s, key) {
						return true
					}
				}
				seen = append(seen, key)
				if walk() {
					return true
				}
			}
			dec.Token()
		case json.Delim('['):
			for dec.More() {
				if walk() {
					return true
				}
			}
			dec.Token()
		}
		return false
	}
	return walk()
}

// FuzzDecodeArguments: never panics; agrees with the standard decoder on validity and with
// a token-stream reference on duplicate keys.
func FuzzDecodeArguments(f *testing.F) {
	for _, s := range []string{`{}`, `{"a":1,"a":2}`, `{"a":{"b":[{"c":1,"\u0063":2}]}}`, `{"a":"\\\"","b":"}"}`, `[]`, `{"a":`, `{"to":1,"TO":2}`, `{"\u017F":1,"S":2}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := DecodeArguments(data)
		var ref map[string]any
		refErr := json.Unmarshal(bytes.TrimSpace(data), &ref)
		trimmed := bytes.TrimSpace(data)
		empty := len(trimmed) == 0 || string(trimmed) == "null"
		switch {
		case !empty && !utf8.Valid(trimmed):
			if !errors.Is(err, ErrInvalidUTF8) {
				t.Fatalf("DecodeArguments(%q) = %v, want ErrInvalidUTF8", data, err)
			}
		case empty:
			if err != nil {
				t.Fatalf("empty input refused: %v", err)
			}
		case refErr != nil || ref == nil:
			if err == nil {
				t.Fatalf("accepted %q, which is not a JSON object", data)
			}
		default:
			dup := referenceDuplicate(trimmed)
			if dup != errors.Is(err, ErrDuplicateKey) {
				t.Fatalf("DecodeArguments(%q) = %v, reference duplicate = %v", data, err, dup)
			}
			if !dup && (err != nil || len(m) != len(ref)) {
				t.Fatalf("DecodeArguments(%q) = %v, %v; want %v", data, m, err, ref)
			}
		}
	})
}

// TestDuplicateKeysAllocs pins that checking keys without escapes allocates nothing: it
// runs on every call's arguments.
func TestDuplicateKeysAllocs(t *testing.T) {
	data := []byte(`{"to":"bob@example.com","amount":12.5,"meta":{"tags":["a","b"],"to":{"x":1}},"list":[{"k":1},{"k":2}]}`)
	if n := testing.AllocsPerRun(100, func() { duplicateKeys(data) }); n != 0 {
		t.Errorf("duplicateKeys(%s) allocates %v times, want 0", data, n)
	}
}
