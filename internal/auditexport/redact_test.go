package auditexport_test

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/chaperone-dev/chaperone/internal/audit"
	"github.com/chaperone-dev/chaperone/internal/auditexport"
	"github.com/chaperone-dev/chaperone/internal/inspect"
)

// The secrets of the tests are ones the scanner finds; AKIAIOSFODNN7EXAMPLE, the key of
// AWS's documentation, is one it deliberately leaves alone.
func TestFixtureSecretsAreDetected(t *testing.T) {
	t.Parallel()
	s := inspect.NewSecretScanner()
	for _, v := range secrets {
		if len(s.Scan(v)) != 1 {
			t.Errorf("SecretScanner.Scan(%q) = %v, want one finding", v, s.Scan(v))
		}
	}
	if len(githubToken) != len("ghp_")+36 {
		t.Errorf("githubToken is %d bytes, want ghp_ and 36", len(githubToken))
	}
}

func TestRedactString(t *testing.T) {
	t.Parallel()
	r := auditexport.NewRedactor()
	for _, tc := range []struct {
		in, want string
		n        int
	}{
		{"", "", 0},
		{"nothing to see", "nothing to see", 0},
		{"key " + awsKey + " here", "key [REDACTED:aws_access_key] here", 1},
		{githubToken + " and " + awsKey, "[REDACTED:github_token] and [REDACTED:aws_access_key]", 2},
		{"password=Xk29fj2KdP0qZ7wL", "password=[REDACTED:generic_secret]", 1},
	} {
		got, n := r.String(tc.in)
		if got != tc.want || n != tc.n {
			t.Errorf("String(%q) = %q, %d; want %q, %d", tc.in, got, n, tc.want, tc.n)
		}
	}
}

func TestRedactJSON(t *testing.T) {
	t.Parallel()
	r := auditexport.NewRedactor()
	for _, tc := range []struct {
		name, in, want string
		n              int
	}{
		{"clean, kept byte for byte", `{ "b": 1.50e3, "a": ["x", null, true], "u": "\u0041<&>" }`,
			`{ "b": 1.50e3, "a": ["x", null, true], "u": "\u0041<&>" }`, 0},
		{"string value", `{"k":"` + awsKey + `"}`, `{"k":"[REDACTED:aws_access_key]"}`, 1},
		{"deep in arrays", `[[{"a":[1,"x ` + githubToken + `"]}]]`, `[[{"a":[1,"x [REDACTED:github_token]"]}]]`, 1},
		{"escaped in the JSON text", `{"k":"AKIAZ3MHQ2L7VXKQ4PJ\u0044"}`, `{"k":"[REDACTED:aws_access_key]"}`, 1},
		{"named by its key", `{"password":"Xk29fj2KdP0qZ7wL","n":2}`, `{"password":"[REDACTED:generic_secret]","n":2}`, 1},
		{"a key", `{"` + awsKey + `":1}`, `{"[REDACTED:aws_access_key]":1}`, 1},
		{"numbers and order kept", `{"z":1.50,"y":-0,"x":"` + awsKey + `","w":1e400}`, `{"z":1.50,"y":-0,"x":"[REDACTED:aws_access_key]","w":1e400}`, 1},
		{"text holding JSON", `{"content":[{"type":"text","text":"{\"api_key\":\"9f8e7d6c5b4a3f2e1d0c9b8a\"}"}]}`,
			`{"content":[{"type":"text","text":"{\"api_key\":\"[REDACTED:generic_secret]\"}"}]}`, 1},
		{"top-level string", `"` + awsKey + `"`, `"[REDACTED:aws_access_key]"`, 1},
		{"HTML and control characters kept", `{"a":"<b>&\n\u0001\u2028 ` + awsKey + `"}`, `{"a":"<b>&\n\u0001\u2028 [REDACTED:aws_access_key]"}`, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, n, err := r.JSON(json.RawMessage(tc.in))
			if err != nil || string(got) != tc.want || n != tc.n {
				t.Errorf("JSON(%s) = %s, %d, %v; want %s, %d", tc.in, got, n, err, tc.want, tc.n)
			}
			if !json.Valid(got) {
				t.Errorf("JSON(%s) = %s: not valid JSON", tc.in, got)
			}
		})
	}
	for _, in := range []string{`{`, `{"a":1}x`, `{"a":1} {"b":2}`, `[1,]`, `nul`, "\"\xff", strings.Repeat("[", auditexport.MaxJSONDepth+1) + strings.Repeat("]", auditexport.MaxJSONDepth+1)} {
		if got, _, err := r.JSON(json.RawMessage(in)); err == nil {
			t.Errorf("JSON(%.40q) = %s, want an error", in, got)
		}
	}
	deep := strings.Repeat("[", auditexport.MaxJSONDepth) + `"` + awsKey + `"` + strings.Repeat("]", auditexport.MaxJSONDepth)
	if got, n, err := r.JSON(json.RawMessage(deep)); err != nil || n != 1 || !json.Valid(got) {
		t.Errorf("JSON(%d levels) = %d, %v; want one redaction", auditexport.MaxJSONDepth, n, err)
	}
}

func TestRedactEvent(t *testing.T) {
	t.Parallel()
	r := auditexport.NewRedactor()
	e := audit.Event{
		Seq: 7, Kind: audit.KindCallRefused, Hash: "sha256:h", PrevHash: "sha256:p",
		Message: "m " + awsKey, Detail: "d " + githubToken, Explanation: "e " + awsKey, Prompt: "p " + githubToken,
		Reason: "r " + awsKey, ArgsSummary: `{"` + awsKey + `":string(3)}`, Tool: awsKey, User: "u " + awsKey,
		Task: "t " + awsKey, IdempotencyKey: githubToken, Scope: "tool:" + awsKey,
		Arguments: json.RawMessage(`{"a":"` + awsKey + `"}`), Result: json.RawMessage(`{"content":[{"type":"text","text":"` + githubToken + `"}]}`),
		Captured: audit.CapturedArguments, Agent: "mail-bot",
	}
	orig := e
	got, n := r.Event(&e)
	if n != 13 {
		t.Errorf("Event redacted %d secrets, want 13", n)
	}
	rec, err := got.MarshalRecord()
	if err != nil {
		t.Fatal(err)
	}
	noSecrets(t, "the redacted event", rec)
	if got.Seq != 7 || got.Hash != "sha256:h" || got.PrevHash != "sha256:p" || got.Agent != "mail-bot" {
		t.Errorf("Event changed the event's place or agent: %+v", got)
	}
	if e.Message != orig.Message || !bytes.Equal(e.Arguments, orig.Arguments) {
		t.Errorf("Event modified its argument")
	}

	bad := audit.Event{Kind: audit.KindCallIntent, Arguments: json.RawMessage(`{"a":`), Result: json.RawMessage(`[` + awsKey)}
	got, n = r.Event(&bad)
	if n != 2 || string(got.Arguments) != `"[REDACTED:unreadable_json]"` || string(got.Result) != `"[REDACTED:unreadable_json]"` {
		t.Errorf("Event(unreadable JSON) = %s, %s, %d; want both replaced", got.Arguments, got.Result, n)
	}
}

// FuzzRedactJSON: any valid JSON comes out valid, and the scanner finds nothing in any of
// its strings, alone or behind its member's name.
func FuzzRedactJSON(f *testing.F) {
	for _, s := range []string{
		`{"path":"/x","key":"` + awsKey + `"}`,
		`[{"token":"` + githubToken + `"},1.5,null,true]`,
		`{"password":"Xk29fj2KdP0qZ7wL"}`,
		`"\u0041KIAZ3MHQ2L7VXKQ4PJD"`,
		`{"content":[{"type":"text","text":"{\"api_key\":\"9f8e7d6c5b4a3f2e1d0c9b8a\"}"}]}`,
		`{"a":{"b":{"c":[]}},"":""}`,
		`1e400`,
	} {
		f.Add([]byte(s))
	}
	r := auditexport.NewRedactor()
	scanner := inspect.NewSecretScanner()
	f.Fuzz(func(t *testing.T, in []byte) {
		got, _, err := r.JSON(in)
		if !json.Valid(in) {
			if err == nil && len(in) > 0 {
				t.Fatalf("JSON(%q) accepted invalid JSON", in)
			}
			return
		}
		if err != nil {
			if strings.Contains(err.Error(), "deeper") {
				return
			}
			t.Fatalf("JSON(%q): %v", in, err)
		}
		if !json.Valid(got) {
			t.Fatalf("JSON(%q) = %q: not valid JSON", in, got)
		}
		checkNoSecret(t, scanner, got)
	})
}

// checkNoSecret walks raw and fails when the scanner finds a secret in a string, alone or
// behind the name of its member.
func checkNoSecret(t *testing.T, s *inspect.SecretScanner, raw []byte) {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var walk func(key string, inMember bool) bool
	walk = func(key string, inMember bool) bool {
		tok, err := dec.Token()
		if err != nil {
			t.Fatalf("walk %q: %v", raw, err)
		}
		switch v := tok.(type) {
		case string:
			if fs := s.Scan(v); len(fs) > 0 {
				t.Fatalf("JSON output %q: string %q still holds %v", raw, v, fs)
			}
			if inMember {
				prefix := key + ": "
				for _, fnd := range s.Scan(prefix + v) {
					if fnd.Span.End > len(prefix) {
						t.Fatalf("JSON output %q: member %q: %q still holds %v", raw, key, v, fnd)
					}
				}
			}
		case json.Delim:
			switch v {
			case '{':
				for dec.More() {
					k, err := dec.Token()
					if err != nil {
						t.Fatal(err)
					}
					if fs := s.Scan(k.(string)); len(fs) > 0 {
						t.Fatalf("JSON output %q: key %q still holds %v", raw, k, fs)
					}
					walk(k.(string), true)
				}
				dec.Token()
			case '[':
				for dec.More() {
					walk("", false)
				}
				dec.Token()
			}
		}
		return true
	}
	walk("", false)
}
