package approval_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/chaperone-dev/chaperone/internal/approval"
)

var previewTests = []struct {
	name, in, want string
}{
	{"plain", `{"to":"ACME","amount":80.50,"ok":true,"n":null}`, `{"to":"ACME","amount":80.50,"ok":true,"n":null}`},
	{"order and repeats kept", `{ "b" : 1 , "a" : 2, "b": 3 }`, `{"b":1,"a":2,"b":3}`},
	{"numbers as written", `{"big":1e400,"neg":-0.0}`, `{"big":1e400,"neg":-0.0}`},
	{"secret keys", `{"password":"hunter2","Api_Key":12345,"X-Api-Key":"k","user_token":["a"],"Authorization":{"scheme":"Basic"},"db_passwd":null,"client_secret":"s","credentials":"c","private_key":"p","Cookie":"c=1","session_id":"s","apikey":"a"}`,
		`{"password":"[redacted]","Api_Key":"[redacted]","X-Api-Key":"[redacted]","user_token":"[redacted]","Authorization":"[redacted]","db_passwd":"[redacted]","client_secret":"[redacted]","credentials":"[redacted]","private_key":"[redacted]","Cookie":"[redacted]","session_id":"[redacted]","apikey":"[redacted]"}`},
	{"nested secret key", `{"config":{"auth":{"token":"t0k"},"name":"x"},"list":[{"secret":1},2]}`,
		`{"config":{"auth":{"token":"[redacted]"},"name":"x"},"list":[{"secret":"[redacted]"},2]}`},
	{"stripe key", `{"note":"use sk_live_abcdefgh12345678 now"}`, `{"note":"use [redacted] now"}`},
	{"openai key", `["sk-proj-abcdefghijklmnop1234"]`, `["[redacted]"]`},
	{"github tokens", `{"a":"ghp_abcdefghijklmnopqrstuvwxyz0123456789","b":"github_pat_11ABCDEFG0abcdefghijklmn_xyz"}`, `{"a":"[redacted]","b":"[redacted]"}`},
	{"slack token", `{"a":"xoxb-1234567890-abcdef"}`, `{"a":"[redacted]"}`},
	{"aws key id", `{"a":"id AKIAIOSFODNN7EXAMPLE."}`, `{"a":"id [redacted]."}`},
	{"jwt", `{"a":"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.sig-nature_x"}`, `{"a":"[redacted]"}`},
	{"bearer", `{"h":"Bearer abcdefghijklmnop.qrs"}`, `{"h":"[redacted]"}`},
	{"pem", `{"k":"-----BEGIN RSA PRIVATE KEY-----\nMIIB\n-----END RSA PRIVATE KEY-----\nafter"}`, `{"k":"[redacted]\nafter"}`},
	{"unterminated pem", `{"k":"x -----BEGIN PRIVATE KEY-----\nMIIB"}`, `{"k":"x [redacted]"}`},
	{"url password", `{"dsn":"postgres://app:s3cr3t@db:5432/x"}`, `{"dsn":"postgres://app:[redacted]@db:5432/x"}`},
	{"credential as key", `{"ghp_abcdefghijklmnopqrstuvwxyz0123456789":1}`, `{"[redacted]":1}`},
	{"look-alikes kept", `{"a":"desk-lamp","b":"task-123","c":"AKIA","d":"sk-short","e":"eyJ only"}`, `{"a":"desk-lamp","b":"task-123","c":"AKIA","d":"sk-short","e":"eyJ only"}`},
	{"html kept readable", `{"a":"<b>&amp;</b>"}`, `{"a":"<b>&amp;</b>"}`},
	{"long string", `{"a":"` + strings.Repeat("x", 2500) + `"}`, `{"a":"` + strings.Repeat("x", 2000) + `…(500 more bytes)"}`},
	{"long string cut on a rune", `{"a":"x` + strings.Repeat("é", 1500) + `"}`, `{"a":"x` + strings.Repeat("é", 999) + `…(1002 more bytes)"}`},
	{"not an object", `[1,"a"]`, `[1,"a"]`},
	{"empty", ``, `{}`},
	{"invalid", `{"a":`, `"[unparseable arguments]"`},
	{"trailing data", `{} x`, `"[unparseable arguments]"`},
}

func TestPreview(t *testing.T) {
	t.Parallel()
	for _, tt := range previewTests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := approval.Preview(json.RawMessage(tt.in))
			if string(got) != tt.want {
				t.Errorf("Preview(%.80s) = %.200s, want %.200s", tt.in, got, tt.want)
			}
			if !json.Valid(got) {
				t.Errorf("Preview(%.80s) = %.80s, not valid JSON", tt.in, got)
			}
		})
	}
}

func TestRedactText(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"pay with sk_test_abcdefgh12345678": "pay with [redacted]",
		"nothing secret here":               "nothing secret here",
		"https://u:pw@host/path":            "https://u:[redacted]@host/path",
	} {
		if got := approval.RedactText(in); got != want {
			t.Errorf("RedactText(%q) = %q, want %q", in, got, want)
		}
	}
}

// secretKeyOracle is the brief's list of secret key names, kept apart from the
// implementation's.
var secretKeyOracle = []string{"password", "passwd", "secret", "token", "api_key", "apikey", "authorization",
	"credential", "private_key", "cookie", "session"}

func FuzzPreview(f *testing.F) {
	for _, tt := range previewTests {
		f.Add([]byte(tt.in))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		out := approval.Preview(in)
		if !json.Valid(out) {
			t.Fatalf("Preview(%q) = %q, not valid JSON", in, out)
		}
		dec := json.NewDecoder(bytes.NewReader(out))
		dec.UseNumber()
		tok, err := dec.Token()
		if err != nil {
			t.Fatalf("Preview(%q) = %q: %v", in, out, err)
		}
		if err := checkPreview(dec, tok); err != nil {
			t.Fatalf("Preview(%q) = %s: %v", in, out, err)
		}
	})
}

// checkPreview walks the preview value starting with tok, repeated keys included:
// every value of a secret-named key is "[redacted]", and no string is longer than the
// cut allows.
func checkPreview(dec *json.Decoder, tok json.Token) error {
	const maxString = 2000 + len("…(18446744073709551615 more bytes)")
	switch tok {
	case json.Delim('{'):
		for dec.More() {
			kt, err := dec.Token()
			if err != nil {
				return err
			}
			key := kt.(string)
			if len(key) > maxString {
				return fmt.Errorf("key of %d bytes", len(key))
			}
			vt, err := dec.Token()
			if err != nil {
				return err
			}
			l := strings.ToLower(key)
			for _, p := range secretKeyOracle {
				if strings.Contains(l, p) && vt != approval.Redacted {
					return fmt.Errorf("secret-named key %q has value %v", key, vt)
				}
			}
			if err := checkPreview(dec, vt); err != nil {
				return err
			}
		}
		_, err := dec.Token()
		return err
	case json.Delim('['):
		for dec.More() {
			et, err := dec.Token()
			if err != nil {
				return err
			}
			if err := checkPreview(dec, et); err != nil {
				return err
			}
		}
		_, err := dec.Token()
		return err
	}
	if s, ok := tok.(string); ok && len(s) > maxString {
		return fmt.Errorf("string of %d bytes", len(s))
	}
	return nil
}
