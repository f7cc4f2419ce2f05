package flow

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

// checkValue reports what is wrong with a yielded value, or "".
func checkValue(v Value) string {
	switch {
	case v.Kind < KindEmail || v.Kind > KindPath:
		return "unknown kind"
	case len(v.Key) <= 2:
		return "empty key"
	case len(v.Key) > MaxKeyBytes:
		return "key too long"
	case !utf8.ValidString(v.Key):
		return "key not valid UTF-8"
	case !strings.HasPrefix(v.Key, v.Kind.prefix()):
		return "key without its kind's prefix"
	case len(v.Raw) > MaxKeyBytes:
		return "raw too long"
	}
	return ""
}

func collect(f func(yield func(Value))) []Value {
	var vs []Value
	f(func(v Value) { vs = append(vs, v) })
	return vs
}

func FuzzExtractText(f *testing.F) {
	for _, tc := range extractCases {
		f.Add(tc.text)
	}
	for _, tc := range argumentCases {
		if s, ok := tc.arg.(string); ok {
			f.Add(s)
		}
	}
	f.Fuzz(func(t *testing.T, text string) {
		vs := collect(func(y func(Value)) { ExtractText(text, y) })
		for _, v := range vs {
			if msg := checkValue(v); msg != "" {
				t.Fatalf("ExtractText(%q) yielded %+v: %s", text, v, msg)
			}
		}
		if again := collect(func(y func(Value)) { ExtractText(text, y) }); !slices.Equal(vs, again) {
			t.Fatalf("ExtractText(%q) is not deterministic: %v, then %v", text, vs, again)
		}
		// Copy round trip: a value copied as found into an argument has the
		// same key. Raw that was cut, or that holds JSON escapes decoded only
		// in a JSON text, is not a copy of the value.
		jsonText := looksLikeJSON(text)
		for _, v := range vs {
			if v.Kind != KindEmail && v.Kind != KindURL && v.Kind != KindIdent {
				continue
			}
			if len(v.Raw) > MaxKeyBytes-utf8.UTFMax || (jsonText && strings.Contains(v.Raw, `\`)) {
				continue
			}
			found := false
			ArgumentValues(v.Raw, func(w Value) { found = found || w.Key == v.Key })
			if !found {
				t.Fatalf("ExtractText(%q) yielded %s from %q, but ArgumentValues(%q) = %v",
					text, v.Key, v.Raw, v.Raw, collect(func(y func(Value)) { ArgumentValues(v.Raw, y) }))
			}
		}
	})
}

func FuzzArgumentValues(f *testing.F) {
	for _, tc := range argumentCases {
		b, err := json.Marshal(tc.arg)
		if err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte(`{"recipient":"DE89 3704 0044 0532 0130 00","amount":98.7,"subject":"Invoice INV-2026-0042"}`))
	f.Add([]byte(`[1e400, -0, 1e21, 123456789012345678901234567890]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var arg any
		dec := json.NewDecoder(strings.NewReader(string(data)))
		if err := dec.Decode(&arg); err != nil {
			arg = string(data)
		}
		vs := collect(func(y func(Value)) { ArgumentValues(arg, y) })
		for _, v := range vs {
			if msg := checkValue(v); msg != "" {
				t.Fatalf("ArgumentValues(%s) yielded %+v: %s", data, v, msg)
			}
		}
		if again := collect(func(y func(Value)) { ArgumentValues(arg, y) }); !slices.Equal(vs, again) {
			t.Fatalf("ArgumentValues(%s) is not deterministic: %v, then %v", data, vs, again)
		}
		if s, ok := arg.(string); ok {
			// Leaf yields a subset of what ArgumentValues yields.
			for _, v := range collect(func(y func(Value)) { Leaf(s, y) }) {
				if msg := checkValue(v); msg != "" {
					t.Fatalf("Leaf(%q) yielded %+v: %s", s, v, msg)
				}
				if !slices.Contains(vs, v) {
					t.Fatalf("Leaf(%q) yielded %+v, which ArgumentValues does not", s, v)
				}
			}
		}
	})
}
