package inspect

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// piiFuzzSeeds are starting inputs for the fuzz targets: values of every kind, near
// misses and raw JSON.
var piiFuzzSeeds = []string{
	"",
	"jane.doe@example.co.uk +1 (212) 555-0187 4242 4242 4242 4242",
	"IBAN DE89 3704 0044 0532 0130 00, GB82WEST12345698765432",
	"203.0.113.45/24 2001:db8::7 [::ffff:198.51.100.7]:80 fe80::1%eth0",
	"SSN 536-22-8726 NHS 943 476 5919 87654321X Y7654321-G 311280-888Y",
	"RSSMRA85T10A562S S1234567D JG 10 37 59 A 2718 2818 2848 ABCPE1234F",
	`{"t":"line\nCall 212-555-0187","e":"a@b.co","n":4242424242424242}`,
	"4242 4242 4242 4242 4242 4242 4242",
	"1.2.3.4.5 v1.2.3.4 12:34:56 00:1a:2b:3c:4d:5e std::cout 2024-01-15",
	"пишите иван@пример.рф or o'neil@example.ie",
	"+44 (0)20 7946 0321 ext. 99 and 030/1234567 and (21) 99876-5432",
	"[pii:EMAIL:0123456789abcdef] [pii:",
	"\xff\xfe@\xc3.com 1\u00a0415 555 0132",
}

// FuzzPIIScan checks the invariants of Scan and TransformPII: findings are in order,
// within the text, on rune boundaries and deterministic; redacting, masking and
// tokenizing never leave a found value in the output; tokenizing then detokenizing
// gives the text back exactly.
func FuzzPIIScan(f *testing.F) {
	for _, s := range piiFuzzSeeds {
		f.Add(s)
	}
	s, err := NewPIIScanner(nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, text string) {
		fs := s.Scan(text)
		piiCheckFindings(t, text, fs)
		again := s.Scan(text)
		if len(again) != len(fs) {
			t.Fatalf("Scan(%q) not deterministic: %v, then %v", text, fs, again)
		}
		for i := range fs {
			if fs[i] != again[i] {
				t.Fatalf("Scan(%q) not deterministic: %v, then %v", text, fs, again)
			}
		}
		// Text with every found value blanked out: where a value may still occur.
		blank := []byte(text)
		for _, x := range fs {
			for k := x.Span.Start; k < x.Span.End; k++ {
				blank[k] = 0
			}
		}
		outside := string(blank)

		v, err := NewVault(piiTestKey, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, mode := range []string{PIIRedact, PIIMask, PIITokenize} {
			out, err := TransformPII(text, fs, mode, v)
			if err != nil {
				t.Fatalf("TransformPII(%q, %s) error = %v", text, mode, err)
			}
			var want strings.Builder
			prev := 0
			for _, x := range fs {
				value := text[x.Span.Start:x.Span.End]
				var repl string
				switch mode {
				case PIIRedact:
					repl = "[" + x.Kind + "]"
				case PIIMask:
					repl = piiMask(x.Kind, value)
				case PIITokenize:
					if repl, err = v.Token(x.Kind, value); err != nil {
						repl = "[" + x.Kind + "]"
					}
				}
				if strings.Contains(repl, value) {
					t.Fatalf("TransformPII(%s) replaces %q with %q, which holds it", mode, value, repl)
				}
				want.WriteString(text[prev:x.Span.Start])
				want.WriteString(repl)
				prev = x.Span.End
				// Redaction and placeholders hold brackets, which no value does, so
				// no value can form across their edges either.
				if mode != PIIMask && strings.Count(out, value) > strings.Count(outside, value) {
					t.Fatalf("TransformPII(%q, %s) = %q still holds %q", text, mode, out, value)
				}
			}
			want.WriteString(text[prev:])
			if out != want.String() {
				t.Fatalf("TransformPII(%q, %s) = %q, want %q", text, mode, out, want.String())
			}
			if utf8.ValidString(text) && !utf8.ValidString(out) {
				t.Fatalf("TransformPII(%q, %s) = %q is not valid UTF-8", text, mode, out)
			}
			if mode == PIITokenize {
				if back, _ := v.Detokenize(out); back != text {
					t.Fatalf("Detokenize(TransformPII(%q, tokenize)) = %q, want the text back", text, back)
				}
			}
		}
	})
}

// FuzzVaultDetokenize checks that a placeholder anywhere in any text swaps back to its
// value and that nothing else changes.
func FuzzVaultDetokenize(f *testing.F) {
	f.Add("EMAIL", "jane@example.com", `{"to":"`)
	f.Add("PHONE", "+1 212-555-0187", "[pii:PHONE:")
	f.Add("IBAN", "DE89 3704 0044 0532 0130 00", "[pii:IBAN:0123456789abcdef]")
	f.Add("X", "a\"b", "")
	f.Add("email", "x", "[[[")
	f.Fuzz(func(t *testing.T, typ, value, text string) {
		v, err := NewVault(piiTestKey, 4)
		if err != nil {
			t.Fatal(err)
		}
		// With nothing issued, nothing changes.
		if got, types := v.Detokenize(text); got != text || types != nil {
			t.Fatalf("Detokenize(%q) on an empty vault = %q, %v", text, got, types)
		}
		if got := v.Placeholders(text); got != nil {
			t.Fatalf("Placeholders(%q) on an empty vault = %v", text, got)
		}
		ph, err := v.Token(typ, value)
		if err != nil {
			if ph != "" {
				t.Fatalf("Token(%q, %q) = %q with error %v", typ, value, ph, err)
			}
			return
		}
		if !vaultPlaceholderRE.MatchString(ph) || !strings.Contains(ph, ":"+typ+":") {
			t.Fatalf("Token(%q, %q) = %q, not a placeholder of the type", typ, value, ph)
		}
		if again, err := v.Token(typ, value); err != nil || again != ph {
			t.Fatalf("Token(%q, %q) again = %q, %v, want %q", typ, value, again, err, ph)
		}
		combined := text + ph + text + ph
		n := strings.Count(combined, ph)
		got, types := v.Detokenize(combined)
		if want := strings.ReplaceAll(combined, ph, value); got != want {
			t.Fatalf("Detokenize(%q) = %q, want %q", combined, got, want)
		}
		if len(types) != 1 || types[0] != typ {
			t.Fatalf("Detokenize(%q) types = %v, want [%s]", combined, types, typ)
		}
		ps := v.Placeholders(combined)
		if len(ps) != n {
			t.Fatalf("Placeholders(%q) = %v, want %d", combined, ps, n)
		}
		for _, p := range ps {
			if combined[p.Span.Start:p.Span.End] != ph || p.Kind != typ {
				t.Fatalf("Placeholders(%q) = %v, want spans of %q", combined, ps, ph)
			}
		}
	})
}
