package inspect

import (
	"slices"
	"testing"
	"unicode/utf8"
)

func FuzzSanitize(f *testing.F) {
	for _, s := range []string{
		"",
		"plain < text",
		`<p class=x>Hi <b>there</b> <a href="https://example.com">link</a></p>`,
		`<img src=x onerror=alert(1)><svg onload=alert(1)>`,
		`<a href="&#106;avascript:alert(1)">x</a>`,
		`<noscript><p title="</noscript><img src=x onerror=alert(1)>">`,
		`<!-- unclosed <script>alert(1)</script>`,
		`<div style="display:none"><p>hidden</p></div><ul><li>a<li>b</ul>`,
		`<table><tr><td>1<td>2</table><pre> x </pre>`,
		`<scr<script>ipt>alert(1)</script><textarea><b></textarea>`,
		"<p>\xff\x00</p>",
	} {
		f.Add(s, false)
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, s string, markup bool) {
		mode := SanitizeText
		if markup {
			mode = SanitizeMarkup
		}
		out, removed, err := Sanitize(s, mode)
		if err != nil {
			t.Fatalf("Sanitize(%q, %s) error: %v", s, mode, err)
		}
		if !utf8.ValidString(out) {
			t.Fatalf("Sanitize(%q, %s) = %q is not valid UTF-8", s, mode, out)
		}
		if len(out) > htmlLengthBound(s) {
			t.Fatalf("Sanitize(%q, %s) = %d bytes, more than the bound %d", s, mode, len(out), htmlLengthBound(s))
		}
		if !slices.IsSorted(removed) || len(slices.Compact(slices.Clone(removed))) != len(removed) {
			t.Fatalf("Sanitize(%q, %s) removed = %v, want sorted and unique", s, mode, removed)
		}
		if !markup {
			return
		}
		htmlCheckSafeMarkup(t, s, out)
		// Safe markup is a fixed point.
		if again, _, _ := Sanitize(out, SanitizeMarkup); again != out {
			t.Fatalf("Sanitize(%q, markup) = %q, sanitised again = %q", s, out, again)
		}
	})
}
