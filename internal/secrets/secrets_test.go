package secrets_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chaperone-dev/chaperone/internal/secrets"
)

const plaintext = "sk_live_hunter2-Zq9"

func TestValueNeverPrints(t *testing.T) {
	t.Parallel()
	raw := []byte(plaintext)
	v := secrets.NewValue(raw)
	raw[0] = 'X' // NewValue copied
	if got := v.Bytes(); string(got) != plaintext {
		t.Fatalf("Bytes() = %q, want the plaintext", got)
	}
	b := v.Bytes()
	b[0] = 'Y' // Bytes copies
	if !v.Equal([]byte(plaintext)) || v.Equal(b) || v.Len() != len(plaintext) || v.IsZero() {
		t.Fatalf("Equal/Len/IsZero: a change to Bytes() reached the Value, or they are wrong")
	}

	// Exported fields, which fmt formats with the Value's methods, and unexported ones,
	// which it can only walk by reflection.
	type holder struct {
		Name   string
		Value  secrets.Value
		Ptr    *secrets.Value
		hidden secrets.Value
		ptr    *secrets.Value
		list   []secrets.Value
	}
	h := holder{Name: "crm", Value: v, Ptr: &v, hidden: v, ptr: &v, list: []secrets.Value{v}}
	var outs []string
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%T %v", "%10.3s"} {
		outs = append(outs, fmt.Sprintf(verb, v), fmt.Sprintf(verb, &v), fmt.Sprintf(verb, h), fmt.Sprintf(verb, &h), fmt.Sprintf(verb, []secrets.Value{v}))
	}
	outs = append(outs, fmt.Sprint(v), fmt.Sprintln(v, h), v.String(), v.GoString(), fmt.Errorf("wrapped: %v", v).Error())
	var js, text bytes.Buffer
	slog.New(slog.NewJSONHandler(&js, nil)).Info("resolved", "value", v, "holder", h, slog.Any("ptr", &v), slog.Group("g", "v", v))
	slog.New(slog.NewTextHandler(&text, nil)).Info("resolved", "value", v, "holder", h)
	outs = append(outs, js.String(), text.String())
	for _, x := range []any{v, &v, h, map[string]secrets.Value{"k": v}} {
		b, err := json.Marshal(x)
		if err != nil {
			t.Fatalf("json.Marshal(%T): %v", x, err)
		}
		outs = append(outs, string(b))
	}
	tx, _ := v.MarshalText()
	outs = append(outs, string(tx))
	for _, out := range outs {
		if strings.Contains(out, plaintext) || strings.Contains(out, "hunter2") || strings.Contains(out, fmt.Sprintf("%x", plaintext)) ||
			strings.Contains(out, fmt.Sprint([]byte(plaintext)[:8])[1:20]) {
			t.Errorf("the plaintext leaked: %s", out)
		}
	}
	for _, want := range []string{fmt.Sprintf("%v", v), fmt.Sprintf("%#v", v), v.String()} {
		if want != "[redacted]" {
			t.Errorf("a printed Value is %q, want [redacted]", want)
		}
	}
	if b, _ := json.Marshal(v); string(b) != `"[redacted]"` {
		t.Errorf("json.Marshal(Value) = %s, want \"[redacted]\"", b)
	}
	if !strings.Contains(js.String(), `"value":"[redacted]"`) {
		t.Errorf("slog JSON = %s, want value [redacted]", js.String())
	}
	var zero secrets.Value
	if !zero.IsZero() || zero.Len() != 0 || zero.Bytes() == nil && len(zero.Bytes()) != 0 {
		t.Error("the zero Value is not empty")
	}
}

func TestParseRef(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		in      string
		want    secrets.Ref
		wantErr string // a substring; "" for success
	}{
		{"secret:crm-key", secrets.Ref{Kind: secrets.RefSecret, Target: "crm-key"}, ""},
		{"secret:a.b_c-0", secrets.Ref{Kind: secrets.RefSecret, Target: "a.b_c-0"}, ""},
		{"env:CRM_API_KEY", secrets.Ref{Kind: secrets.RefEnv, Target: "CRM_API_KEY"}, ""},
		{"env:_x9", secrets.Ref{Kind: secrets.RefEnv, Target: "_x9"}, ""},
		{"file:/run/secrets/crm key", secrets.Ref{Kind: secrets.RefFile, Target: "/run/secrets/crm key"}, ""},
		{"file:/", secrets.Ref{Kind: secrets.RefFile, Target: "/"}, ""},

		{"", secrets.Ref{}, "reference is empty"},
		{"crm-key", secrets.Ref{}, "reference has no scheme, want secret:NAME, env:VAR or file:/abs/path"},
		{"vault:crm", secrets.Ref{}, `reference scheme "vault" is not one of secret, env or file`},
		{"Secret:crm", secrets.Ref{}, `reference scheme "Secret" is not one of`},
		{"sk-live-0123456789:abc", secrets.Ref{}, "reference scheme (18 bytes) is not one of"},
		{"secret:", secrets.Ref{}, "reference secret:NAME: secret name must be 1 to 64 bytes, got 0"},
		{"secret:CRM", secrets.Ref{}, "reference secret:NAME: secret name must match [a-z0-9][a-z0-9._-]{0,63}; byte 0"},
		{"secret:" + strings.Repeat("a", 65), secrets.Ref{}, "got 65"},
		{"secret:crm/key", secrets.Ref{}, "byte 3 is not allowed"},
		{"env:", secrets.Ref{}, "reference env:VAR: variable name must be 1 to 255 bytes, got 0"},
		{"env:1X", secrets.Ref{}, "not starting with a digit; byte 0 is not"},
		{"env:A-B", secrets.Ref{}, "byte 1 is not"},
		{"env:" + strings.Repeat("A", 256), secrets.Ref{}, "got 256"},
		{"file:", secrets.Ref{}, "reference file:PATH: the path is empty"},
		{"file:run/secrets/x", secrets.Ref{}, "the path must be absolute"},
		{"file:/run/../etc/shadow", secrets.Ref{}, "the path must be clean"},
		{"file:/run/secrets/", secrets.Ref{}, "the path must be clean"},
		{"file:/run//x", secrets.Ref{}, "the path must be clean"},
		{"secret:crm\x00", secrets.Ref{}, "reference holds a control byte (0x00) at 10"},
		{"file:/x\nsecret:y", secrets.Ref{}, "control byte (0x0a) at 7"},
		{"env:A\x7f", secrets.Ref{}, "control byte (0x7f)"},
		{"file:/caf\xe9", secrets.Ref{}, "reference is not valid UTF-8"},
		{"file:/" + strings.Repeat("a", secrets.MaxRef), secrets.Ref{}, "reference is 4102 bytes, more than 4096"},
	} {
		got, err := secrets.ParseRef(tt.in)
		if tt.wantErr == "" {
			if err != nil || got != tt.want {
				t.Errorf("ParseRef(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
			} else if got.String() != tt.in {
				t.Errorf("ParseRef(%q).String() = %q, want the input", tt.in, got.String())
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.Is(err, secrets.ErrInvalid) || !got.IsZero() {
			t.Errorf("ParseRef(%q) = %+v, %v; want an ErrInvalid containing %q", tt.in, got, err, tt.wantErr)
		}
	}
	// A secret pasted where a reference belongs is not echoed.
	for _, in := range []string{"sk_live_" + plaintext, "bearer:" + plaintext, "secret:" + strings.ToUpper(plaintext), "env:" + plaintext, "file:" + plaintext} {
		if _, err := secrets.ParseRef(in); err == nil || strings.Contains(err.Error(), "hunter2") || strings.Contains(err.Error(), "HUNTER2") {
			t.Errorf("ParseRef(%q) = %v, want an error that does not echo it", in, err)
		}
	}
}

func FuzzParseRef(f *testing.F) {
	for _, s := range []string{"secret:crm-key", "env:CRM_API_KEY", "file:/run/secrets/crm", "vault:x", "secret:", "file:a/b",
		"file:/a/../b", "env:1", "secret:a\x00", "x", "", "file:/caf\xe9", ":"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := secrets.ParseRef(s)
		if err != nil {
			if !r.IsZero() || !errors.Is(err, secrets.ErrInvalid) {
				t.Fatalf("ParseRef(%q) = %+v, %v; want the zero Ref and ErrInvalid", s, r, err)
			}
			if scheme, target, ok := strings.Cut(s, ":"); ok && len(target) >= 8 && !strings.Contains(scheme, target) && strings.Contains(err.Error(), target) {
				t.Fatalf("ParseRef(%q) error %q echoes the target", s, err)
			}
			return
		}
		// Round trip: what was accepted prints as written and parses back the same.
		if r.String() != s {
			t.Fatalf("ParseRef(%q).String() = %q", s, r.String())
		}
		if again, err := secrets.ParseRef(r.String()); err != nil || again != r {
			t.Fatalf("ParseRef(ParseRef(%q).String()) = %+v, %v; want %+v", s, again, err, r)
		}
	})
}

func TestResolve(t *testing.T) {
	// Not parallel: it sets environment variables.
	ctx := t.Context()
	dir := t.TempDir()
	file := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	t.Setenv("CHP_TEST_SECRET", plaintext)
	t.Setenv("CHP_TEST_EMPTY", "")
	t.Setenv("CHP_TEST_NEWLINE", plaintext+"\n") // the environment is taken as it is

	link := filepath.Join(dir, "link")
	if err := os.Symlink(file("target", plaintext+"\n"), link); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		ref, want string
	}{
		{"env:CHP_TEST_SECRET", plaintext},
		{"env:CHP_TEST_NEWLINE", plaintext + "\n"},
		{"file:" + file("plain", plaintext), plaintext},
		{"file:" + file("nl", plaintext+"\n"), plaintext},
		{"file:" + file("crlf", plaintext+"\r\n"), plaintext},
		{"file:" + file("two", plaintext+"\n\n"), plaintext + "\n"}, // only one newline goes
		{"file:" + file("inner", "a\nb\n"), "a\nb"},
		{"file:" + file("max", strings.Repeat("v", secrets.MaxValue)+"\r\n"), strings.Repeat("v", secrets.MaxValue)},
		{"file:" + link, plaintext},
	} {
		ref, err := secrets.ParseRef(tt.ref)
		if err != nil {
			t.Fatalf("ParseRef(%q): %v", tt.ref, err)
		}
		v, err := secrets.Resolve(ctx, ref, nil)
		if err != nil || !v.Equal([]byte(tt.want)) {
			t.Errorf("Resolve(%s) = %d bytes, %v; want %d bytes", tt.ref, v.Len(), err, len(tt.want))
		}
	}

	big := file("big", strings.Repeat("v", secrets.MaxValue+1))
	for _, tt := range []struct {
		ref     secrets.Ref
		wantErr string
	}{
		{secrets.Ref{Kind: secrets.RefEnv, Target: "CHP_TEST_UNSET_VAR"}, "resolve env:CHP_TEST_UNSET_VAR: the variable is not set"},
		{secrets.Ref{Kind: secrets.RefEnv, Target: "CHP_TEST_EMPTY"}, "resolve env:CHP_TEST_EMPTY: the variable is empty"},
		{secrets.Ref{Kind: secrets.RefFile, Target: big}, "the file holds more than 65536 bytes"},
		{secrets.Ref{Kind: secrets.RefFile, Target: file("empty", "")}, "the file is empty"},
		{secrets.Ref{Kind: secrets.RefFile, Target: file("newline-only", "\n")}, "the file is empty"},
		{secrets.Ref{Kind: secrets.RefFile, Target: dir}, "not a regular file"},
		{secrets.Ref{Kind: secrets.RefFile, Target: filepath.Join(dir, "missing")}, "no such file"},
		{secrets.Ref{Kind: secrets.RefFile, Target: "relative/path"}, "the path must be absolute"},
		{secrets.Ref{Kind: secrets.RefSecret, Target: "crm"}, "resolve secret:crm: no vault is configured"},
		{secrets.Ref{Kind: "vault", Target: "crm"}, "is not one of secret, env or file"},
		{secrets.Ref{}, "reference is empty"},
	} {
		v, err := secrets.Resolve(ctx, tt.ref, nil)
		if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !v.IsZero() {
			t.Errorf("Resolve(%+v) = %d bytes, %v; want an error containing %q", tt.ref, v.Len(), err, tt.wantErr)
		} else if strings.Contains(err.Error(), "vvvvvvvv") {
			t.Errorf("Resolve(%+v) error holds the file's content", tt.ref)
		}
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := secrets.Resolve(cancelled, secrets.Ref{Kind: secrets.RefEnv, Target: "CHP_TEST_SECRET"}, nil); !errors.Is(err, cancelled.Err()) {
		t.Errorf("Resolve with a cancelled context = %v, want its error", err)
	}
}
