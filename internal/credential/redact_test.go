package credential

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chaperone-dev/chaperone/internal/testclock"
)

func redactorWith(values ...string) (*Redactor, *testclock.Clock) {
	clock := testclock.New(t0)
	r := newRedactor(clock.Now)
	for _, v := range values {
		r.add(v, time.Time{})
	}
	return r, clock
}

func TestRedactForms(t *testing.T) {
	t.Parallel()
	const (
		plain  = "sk_live_0123456789abcdef"
		quoted = `pa"ss\word<&>tail`
	)
	// Bytes whose standard and URL base64 differ ('+' and '/' against '-' and '_').
	binary := "\xfb\xff\xbf\xfb\xef\xbe-secret-bytes"
	if base64.StdEncoding.EncodeToString([]byte(binary)) == base64.URLEncoding.EncodeToString([]byte(binary)) {
		t.Fatal("test value does not exercise both alphabets")
	}
	r, _ := redactorWith(plain, quoted, binary)
	jsonOf := func(v string, html bool) string {
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(html)
		enc.Encode(map[string]string{"v": v})
		return strings.TrimSpace(buf.String())
	}
	for _, tc := range []struct{ name, in, want string }{
		{"raw", "key=" + plain + ";", "key=" + Redaction + ";"},
		{"raw twice", plain + " and " + plain, Redaction + " and " + Redaction},
		{"json escaped, html", jsonOf(quoted, true), `{"v":"` + Redaction + `"}`},
		{"json escaped, no html", jsonOf(quoted, false), `{"v":"` + Redaction + `"}`},
		{"json of binary", jsonOf(binary, true), `{"v":"` + Redaction + `"}`},
		{"base64 std", "x " + base64.StdEncoding.EncodeToString([]byte(plain)) + " y", "x " + Redaction + " y"},
		{"base64 std of binary", "x " + base64.StdEncoding.EncodeToString([]byte(binary)) + " y", "x " + Redaction + " y"},
		{"base64 url of binary", "x " + base64.URLEncoding.EncodeToString([]byte(binary)) + " y", "x " + Redaction + " y"},
		{"base64 raw std", "x " + base64.RawStdEncoding.EncodeToString([]byte(binary)) + " y", "x " + Redaction + " y"},
		{"base64 raw url", "x " + base64.RawURLEncoding.EncodeToString([]byte(quoted)) + " y", "x " + Redaction + " y"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, n := r.Redact([]byte(tc.in))
			if string(out) != tc.want || n != strings.Count(tc.want, Redaction) {
				t.Errorf("Redact(%q) = %q, %d; want %q, %d", tc.in, out, n, tc.want, strings.Count(tc.want, Redaction))
			}
			if !r.Contains([]byte(tc.in)) {
				t.Errorf("Contains(%q) = false", tc.in)
			}
		})
	}
}

// TestRedactInsideBase64 checks a value base64-encoded as part of a longer text (the
// password in a Basic credential) at every alignment: at most the two characters at each
// end that mix its bits with its neighbours' survive.
func TestRedactInsideBase64(t *testing.T) {
	t.Parallel()
	const pw = "hunter2-but-longer"
	r, _ := redactorWith(pw)
	for _, user := range []string{"", "a", "ab", "abc", "svc-chaperone"} {
		for _, suffix := range []string{"", "x", "xy", "-and-more"} {
			for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawURLEncoding} {
				pair := user + ":" + pw + suffix
				in := enc.EncodeToString([]byte(pair))
				out, n := r.Redact([]byte(in))
				if n != 1 {
					t.Errorf("Redact(base64(%q)) = %q, %d replacements; want 1", pair, out, n)
					continue
				}
				// What may remain: the encoding of what is not the password, plus 2 characters
				// at each end, plus padding.
				budget := (len(user)+1)*4/3 + 1 + len(suffix)*4/3 + 1 + 4 + 2
				if left := len(out) - len(Redaction); left > budget {
					t.Errorf("Redact(base64(%q)) = %q: %d characters left, want at most %d", pair, out, left, budget)
				}
			}
		}
	}
}

func TestRedactorAdd(t *testing.T) {
	t.Parallel()
	r, clock := redactorWith()
	v := []byte("env-secret-from-elsewhere")
	r.Add(v)
	v[0] = 'X' // Add copied it
	r.Add([]byte("short"))
	clock.Advance(24 * time.Hour)
	for range 600 { // prunes: an added value is never forgotten
		r.add(fmt.Sprintf("filler-token-%04d", clock.Now().UnixNano()), clock.Now())
		clock.Advance(time.Second)
	}
	if out, n := r.Redact([]byte("A=env-secret-from-elsewhere short")); n != 1 || string(out) != "A="+Redaction+" short" {
		t.Errorf("Redact = %q, %d; want the added value redacted and the short one left", out, n)
	}
}

func TestRedactNothingFound(t *testing.T) {
	t.Parallel()
	r, _ := redactorWith("abc1234", "long-enough-secret") // the first is 7 bytes: not tracked
	in := []byte(`{"result":"the code is abc1234, see long-enough-secre"}`)
	out, n := r.Redact(in)
	if n != 0 || &out[0] != &in[0] || len(out) != len(in) {
		t.Errorf("Redact(no match) = %q, %d; want the input itself, 0", out, n)
	}
	if r.Contains(in) {
		t.Errorf("Contains(%q) = true; a value under %d bytes must not be matched (false positives)", in, MinRedactLen)
	}
	empty, _ := redactorWith()
	if out, n := empty.Redact(in); n != 0 || &out[0] != &in[0] {
		t.Errorf("empty redactor: Redact = %q, %d", out, n)
	}
	if out, n := r.Redact(nil); n != 0 || out != nil {
		t.Errorf("Redact(nil) = %q, %d", out, n)
	}
}

func TestRedactOverlapping(t *testing.T) {
	t.Parallel()
	r, _ := redactorWith("secret-long-value-1", "value-1-tail-part", "ABCDEFGH")
	for _, tc := range []struct {
		in   string
		want string
		n    int
	}{
		{"x secret-long-value-1-tail-part y", "x " + Redaction + " y", 1},       // overlapping: one stretch
		{"ABCDEFGHABCDEFGH", Redaction, 1},                                      // adjacent: one stretch
		{"ABCDEFGH ABCDEFGH", Redaction + " " + Redaction, 2},                   // apart: two
		{"ABCDEFG", "ABCDEFG", 0},                                               // shorter than the value
		{"prefix-ABCDEFGH", "prefix-" + Redaction, 1},                           // at the very end
		{"ABCDEFGH-suffix", Redaction + "-suffix", 1},                           // at the very start
		{"secret-long-value-", "secret-long-value-", 0},                         // a prefix only
		{"\x00\xffsecret-long-value-1\xff", "\x00\xff" + Redaction + "\xff", 1}, // binary around
	} {
		out, n := r.Redact([]byte(tc.in))
		if string(out) != tc.want || n != tc.n {
			t.Errorf("Redact(%q) = %q, %d; want %q, %d", tc.in, out, n, tc.want, tc.n)
		}
	}
}

func TestRedactorForgetsExpiredTokens(t *testing.T) {
	t.Parallel()
	r, clock := redactorWith("static-secret-value")
	for i := range 300 {
		r.add(fmt.Sprintf("token-%04d-xxxxxxxx", i), t0.Add(time.Minute))
	}
	if !r.Contains([]byte("token-0007-xxxxxxxx")) {
		t.Fatal("a fresh token is not redacted")
	}
	clock.Advance(2 * time.Minute)
	for i := range 300 { // enough adds to trigger a prune
		r.add(fmt.Sprintf("later-%04d-xxxxxxxx", i), t0.Add(time.Hour))
	}
	if r.Contains([]byte("token-0007-xxxxxxxx")) {
		t.Error("a token past its time is still tracked after a prune")
	}
	if !r.Contains([]byte("static-secret-value")) || !r.Contains([]byte("later-0299-xxxxxxxx")) {
		t.Error("a static secret or a live token was forgotten")
	}
}

func TestRedactorBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("adds 10,100 values")
	}
	t.Parallel()
	r, _ := redactorWith("static-secret-value")
	for i := range maxRedactValues + 100 {
		r.add(fmt.Sprintf("token-%06d-xxxxxx", i), t0.Add(time.Hour+time.Duration(i)*time.Second))
	}
	r.mu.RLock()
	n := len(r.values)
	r.mu.RUnlock()
	if n > maxRedactValues {
		t.Errorf("redactor holds %d values, more than %d", n, maxRedactValues)
	}
	if !r.Contains([]byte("static-secret-value")) {
		t.Error("the static secret was forgotten")
	}
	if !r.Contains([]byte(fmt.Sprintf("token-%06d-xxxxxx", maxRedactValues+99))) {
		t.Error("the token that expires last was forgotten")
	}
	if r.Contains([]byte("token-000000-xxxxxx")) {
		t.Error("the token that expires first was kept beyond the bound")
	}
}

func TestRedactConcurrent(t *testing.T) {
	t.Parallel()
	r, _ := redactorWith()
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 200 {
				r.add(fmt.Sprintf("w%d-token-%04d", w, i), t0.Add(time.Hour))
			}
		})
		wg.Go(func() {
			for i := range 200 {
				v := fmt.Sprintf("w%d-token-%04d", w, i)
				r.Redact([]byte("x " + v + " y"))
			}
		})
	}
	wg.Wait()
	for w := range 4 {
		v := fmt.Sprintf("w%d-token-0199", w)
		if out, n := r.Redact([]byte(v)); n != 1 {
			t.Errorf("Redact(%q) = %q after concurrent adds", v, out)
		}
	}
}

func FuzzRedact(f *testing.F) {
	f.Add("sk_live_0123456789", []byte(`{"a":"sk_live_0123456789"}`))
	f.Add(`pa"ss\word<>`, []byte(`"pa\"ss\\word\u003c\u003e"`))
	f.Add("\xfb\xff\xbfsecret", []byte("+/+/c2VjcmV0"))
	f.Add("short", []byte("short short"))
	f.Add("aaaaaaaaaaaa", []byte("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"))
	f.Fuzz(func(t *testing.T, value string, text []byte) {
		r, _ := redactorWith(value)
		orig := bytes.Clone(text)
		out, n := r.Redact(text)
		if !bytes.Equal(text, orig) {
			t.Fatal("Redact modified its input")
		}
		if (n == 0) != bytes.Equal(out, text) {
			t.Fatalf("Redact = %q, %d: count and output disagree", out, n)
		}
		if n > 0 && !r.Contains(text) {
			t.Fatal("Redact replaced something Contains does not find")
		}
		if len(value) < MinRedactLen {
			if n != 0 {
				t.Fatalf("a %d-byte value was redacted", len(value))
			}
			return
		}
		// A value holding '[' or ']' can be recreated by splicing the redaction marker next
		// to part of it; otherwise no occurrence may remain.
		if !strings.ContainsAny(value, "[]") && bytes.Contains(out, []byte(value)) {
			t.Fatalf("Redact(%q) = %q: the value remains", text, out)
		}
		mid := len(text) / 2
		with := append(append(bytes.Clone(text[:mid]), value...), text[mid:]...)
		if !r.Contains(with) {
			t.Fatalf("Contains(%q) = false with the value inserted", with)
		}
	})
}

// TestRedactSharedPrefixes checks values that all start alike, as JWTs do: each is found,
// and none of the matcher's anchors is shared by many patterns (which would make every
// scan slow).
func TestRedactSharedPrefixes(t *testing.T) {
	t.Parallel()
	const header = "eyJhbGciOiJFZERTQSIsImtpZCI6ImsxIiwidHlwIjoiY2hhcGVyb25lLXJlY2VpcHQrand0In0."
	r, _ := redactorWith()
	values := make([]string, 500)
	for i := range values {
		var sig [32]byte
		rand.Read(sig[:])
		values[i] = header + "payload." + base64.RawURLEncoding.EncodeToString(sig[:])
		r.add(values[i], t0.Add(time.Hour))
	}
	v := values[123]
	out, n := r.Redact([]byte(`{"echo":"Bearer ` + v + `"}`))
	if n != 1 || string(out) != `{"echo":"Bearer `+Redaction+`"}` {
		t.Errorf("Redact = %q, %d; want the receipt redacted", out, n)
	}
	if r.Contains([]byte(header + "payload.")) {
		t.Error("Contains(shared prefix only) = true")
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	for w, as := range r.m.byAnchor {
		if len(as) > 8 {
			t.Errorf("anchor %x is shared by %d patterns", w, len(as))
		}
	}
}
