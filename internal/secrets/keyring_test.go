package secrets_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/chaperone-dev/chaperone/internal/secrets"
)

// Keys for the tests: fixed, so failures reproduce, and distinct.
var (
	key1 = bytes.Repeat([]byte{0x11}, 32)
	key2 = bytes.Repeat([]byte{0x22}, 32)
	key3 = bytes.Repeat([]byte{0x33}, 32)
)

func std(k []byte) string { return base64.StdEncoding.EncodeToString(k) }

// mustKeyring parses a key file made of lines, failing the test on an error.
func mustKeyring(tb testing.TB, lines ...string) *secrets.Keyring {
	tb.Helper()
	k, err := secrets.ParseKeyring([]byte(strings.Join(lines, "\n")))
	if err != nil {
		tb.Fatalf("ParseKeyring: %v", err)
	}
	return k
}

// keyMaterial lists the forms of a key's bytes that must never appear in output.
func keyMaterial(keys ...[]byte) []string {
	var out []string
	for _, k := range keys {
		out = append(out, base64.StdEncoding.EncodeToString(k), base64.RawURLEncoding.EncodeToString(k), fmt.Sprintf("%x", k), string(k))
		out = append(out, fmt.Sprint(k)) // [17 17 ...]
	}
	return out
}

// noneIn fails the test if s holds any of the forbidden strings.
func noneIn(tb testing.TB, what, s string, forbidden ...string) {
	tb.Helper()
	for _, f := range forbidden {
		if f != "" && strings.Contains(s, f) {
			tb.Errorf("%s holds secret material %q:\n%s", what, f, s)
		}
	}
}

func TestParseKeyring(t *testing.T) {
	t.Parallel()
	many := make([]string, 17)
	for i := range many {
		k := bytes.Repeat([]byte{byte(i + 1)}, 32)
		many[i] = fmt.Sprintf("k%d %s", i, std(k))
	}
	for _, tt := range []struct {
		name    string
		data    string
		wantIDs []string
		wantErr string // a substring; "" for success
	}{
		{"one key", "k1 " + std(key1), []string{"k1"}, ""},
		{"primary first, comments, blank lines, CRLF and tabs",
			"# the chaperone key file\r\n\r\nk2\t" + std(key2) + "\r\n  # old key, kept until rotation\nk1 " + std(key1) + "  \n\n",
			[]string{"k2", "k1"}, ""},
		{"URL alphabet and no padding", "a-1 " + base64.RawURLEncoding.EncodeToString(bytes.Repeat([]byte{0xfb}, 32)) +
			"\nb_2 " + base64.URLEncoding.EncodeToString(bytes.Repeat([]byte{0xfe}, 32)) +
			"\nc3 " + base64.RawStdEncoding.EncodeToString(key3), []string{"a-1", "b_2", "c3"}, ""},
		{"sixteen keys", strings.Join(many[:16], "\n"), nil, ""},
		{"32-byte id", strings.Repeat("k", 32) + " " + std(key1), []string{strings.Repeat("k", 32)}, ""},

		{"empty", "", nil, "no keys"},
		{"comments only", "# nothing\n\n", nil, "no keys"},
		{"seventeen keys", strings.Join(many, "\n"), nil, "line 17: more than 16 keys"},
		{"bad base64", "k1 " + std(key1)[:20] + "!!" + std(key1)[22:], nil, `line 1: key "k1": is not base64`},
		{"31 bytes", "k1 " + std(key1[:31]), nil, `line 1: key "k1": decodes to 31 bytes, want 32`},
		{"33 bytes", "k1 " + std(append(key1, 1)), nil, `line 1: key "k1": decodes to 33 bytes, want 32`},
		{"empty key bytes", "k1 ====", nil, `line 1: key "k1": is not base64`},
		{"duplicate id", "k1 " + std(key1) + "\n# c\nk1 " + std(key2), nil, `line 3: key id "k1" is already used on line 1`},
		{"same key twice", "k1 " + std(key1) + "\nk2 " + std(key1), nil, `line 2: key "k2" is the same key as "k1"`},
		{"id only", "k1", nil, "line 1: want \"<id> <base64 key>\", got 1 fields"},
		{"key only", std(key1), nil, "line 1: want \"<id> <base64 key>\", got 1 fields"},
		{"three fields", "k1 " + std(key1) + " # inline comment", nil, "got 5 fields"},
		{"key and id swapped", std(key1) + " k1", nil, "line 1: key id must be 1 to 32 bytes, got 44"},
		{"upper-case id", "K1 " + std(key1), nil, "line 1: key id must match [a-z0-9][a-z0-9_-]{0,31}; byte 0"},
		{"dot in id", "k.1 " + std(key1), nil, "byte 1 is not allowed"},
		{"33-byte id", strings.Repeat("k", 33) + " " + std(key1), nil, "key id must be 1 to 32 bytes, got 33"},
		{"oversized file", strings.Repeat("#", secrets.MaxKeyFile+1), nil, "key file is 65537 bytes, more than 65536"},
		{"too many lines", strings.Repeat("\n", 5000), nil, "key file has 5001 lines, more than 4096"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			k, err := secrets.ParseKeyring([]byte(tt.data))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseKeyring = %v, %v; want an error containing %q", k, err, tt.wantErr)
				}
				// No error echoes key material, whatever the mistake.
				for _, f := range strings.Fields(tt.data) {
					if len(f) >= 16 {
						noneIn(t, "ParseKeyring's error", err.Error(), f)
					}
				}
				noneIn(t, "ParseKeyring's error", err.Error(), keyMaterial(key1, key2, key3)...)
				return
			}
			if err != nil {
				t.Fatalf("ParseKeyring: %v", err)
			}
			if tt.wantIDs != nil && !slices.Equal(k.IDs(), tt.wantIDs) {
				t.Errorf("IDs() = %v, want %v", k.IDs(), tt.wantIDs)
			}
			if ids := k.IDs(); k.Primary() != ids[0] {
				t.Errorf("Primary() = %q, want the first id %q", k.Primary(), ids[0])
			}
		})
	}
}

func TestSealOpen(t *testing.T) {
	t.Parallel()
	old := mustKeyring(t, "k1 "+std(key1))
	both := mustKeyring(t, "k2 "+std(key2), "k1 "+std(key1))
	value := []byte("sk_live_51H\x00\xffend")

	id, nonce, ct, err := old.Seal("crm-key", value)
	if err != nil || id != "k1" || len(nonce) != secrets.NonceSize || len(ct) != len(value)+secrets.Overhead {
		t.Fatalf("Seal = %q, %d-byte nonce, %d-byte ciphertext, %v; want k1, 24, %d", id, len(nonce), len(ct), err, len(value)+16)
	}
	if bytes.Contains(ct, value) {
		t.Fatal("the ciphertext holds the plaintext")
	}
	// Every keyring holding the key opens it; the primary seals.
	for _, k := range []*secrets.Keyring{old, both} {
		if got, err := k.Open(id, "crm-key", nonce, ct); err != nil || !bytes.Equal(got, value) {
			t.Errorf("%v.Open(k1 seal) = %q, %v; want the value", k, got, err)
		}
	}
	if id2, _, _, _ := both.Seal("crm-key", value); id2 != "k2" {
		t.Errorf("Seal with [k2 k1] used %q, want the primary k2", id2)
	}
	// Nonces are random: sealing the same value twice differs.
	_, nonce2, ct2, _ := old.Seal("crm-key", value)
	if bytes.Equal(nonce, nonce2) || bytes.Equal(ct, ct2) {
		t.Error("two seals of one value share a nonce or a ciphertext")
	}

	flip := func(b []byte, i int) []byte { c := bytes.Clone(b); c[i] ^= 1; return c }
	impostor := mustKeyring(t, "k1 "+std(key3)) // the right id, the wrong key
	for _, tt := range []struct {
		name      string
		k         *secrets.Keyring
		id, sname string
		nonce, ct []byte
		want      error
	}{
		{"wrong key under the right id", impostor, "k1", "crm-key", nonce, ct, secrets.ErrDecrypt},
		{"tampered ciphertext", old, "k1", "crm-key", nonce, flip(ct, 0), secrets.ErrDecrypt},
		{"tampered tag", old, "k1", "crm-key", nonce, flip(ct, len(ct)-1), secrets.ErrDecrypt},
		{"tampered nonce", old, "k1", "crm-key", flip(nonce, 23), ct, secrets.ErrDecrypt},
		{"moved to another name", old, "k1", "crm-key2", nonce, ct, secrets.ErrDecrypt},
		{"truncated ciphertext", old, "k1", "crm-key", nonce, ct[:len(ct)-1], secrets.ErrDecrypt},
		{"unknown key id", old, "k9", "crm-key", nonce, ct, secrets.ErrUnknownKey},
		{"short nonce", old, "k1", "crm-key", nonce[:12], ct, secrets.ErrInvalid},
		{"tag alone", old, "k1", "crm-key", nonce, ct[:16], secrets.ErrInvalid},
		{"bad name", old, "k1", "CRM", nonce, ct, secrets.ErrInvalid},
		{"nil keyring", nil, "k1", "crm-key", nonce, ct, secrets.ErrNoKeyring},
	} {
		got, err := tt.k.Open(tt.id, tt.sname, tt.nonce, tt.ct)
		if !errors.Is(err, tt.want) || got != nil {
			t.Errorf("%s: Open = %q, %v; want nil and an error wrapping %q", tt.name, got, err, tt.want)
			continue
		}
		noneIn(t, tt.name+": Open's error", err.Error(), string(value), "sk_live")
	}
	// The unknown id is named.
	if _, err := old.Open("k9", "crm-key", nonce, ct); err == nil || !strings.Contains(err.Error(), `key "k9"`) {
		t.Errorf("Open(k9) = %v, want an error naming key k9", err)
	}

	for _, tt := range []struct {
		name  string
		k     *secrets.Keyring
		sname string
		value []byte
		want  error
	}{
		{"empty value", old, "crm", nil, secrets.ErrInvalid},
		{"oversized value", old, "crm", make([]byte, secrets.MaxValue+1), secrets.ErrInvalid},
		{"bad name", old, "crm/x", value, secrets.ErrInvalid},
		{"nil keyring", nil, "crm", value, secrets.ErrNoKeyring},
		{"zero keyring", new(secrets.Keyring), "crm", value, secrets.ErrNoKeyring},
	} {
		if id, _, _, err := tt.k.Seal(tt.sname, tt.value); !errors.Is(err, tt.want) {
			t.Errorf("%s: Seal = %q, %v; want an error wrapping %q", tt.name, id, err, tt.want)
		}
	}
	if _, _, ct, err := old.Seal("crm", make([]byte, secrets.MaxValue)); err != nil || len(ct) != secrets.MaxCiphertext {
		t.Errorf("Seal(64 KiB) = %d bytes, %v; want %d", len(ct), err, secrets.MaxCiphertext)
	}
}

func TestKeyringNeverPrintsKeys(t *testing.T) {
	t.Parallel()
	k := mustKeyring(t, "k2 "+std(key2), "k1 "+std(key1))
	var js, text bytes.Buffer
	slog.New(slog.NewJSONHandler(&js, nil)).Info("loaded", "keyring", k)
	slog.New(slog.NewTextHandler(&text, nil)).Info("loaded", "keyring", k)
	jm, _ := json.Marshal(k)
	var outs []string
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d"} {
		outs = append(outs, fmt.Sprintf(verb, k), fmt.Sprintf(verb, *k))
	}
	outs = append(outs, js.String(), text.String(), string(jm), k.String(), k.GoString())
	for _, out := range outs {
		noneIn(t, "printed keyring", out, keyMaterial(key1, key2)...)
	}
	if want := "secrets.Keyring{primary: k2, keys: [k2 k1]}"; k.String() != want || fmt.Sprintf("%+v", k) != want {
		t.Errorf("String() = %q, want %q", k.String(), want)
	}
	if string(jm) != `{"primary":"k2","keys":["k2","k1"]}` {
		t.Errorf("json.Marshal(keyring) = %s, want the ids", jm)
	}
	if !strings.Contains(js.String(), `"keyring":{"primary":"k2","keys":["k2","k1"]}`) {
		t.Errorf("slog JSON = %s, want the ids", js.String())
	}
	var nilK *secrets.Keyring
	if nilK.Primary() != "" || nilK.IDs() != nil || nilK.Has("k1") || nilK.String() != "secrets.Keyring(empty)" {
		t.Errorf("a nil keyring is not empty: %q %v", nilK.Primary(), nilK.IDs())
	}
	if !k.Has("k1") || k.Has("k3") {
		t.Errorf("Has(k1), Has(k3) = %v, %v; want true, false", k.Has("k1"), k.Has("k3"))
	}
	// IDs is a copy.
	ids := k.IDs()
	ids[0] = "zz"
	if k.Primary() != "k2" {
		t.Errorf("changing IDs() changed the primary to %q", k.Primary())
	}
}

func TestLoadKeyring(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	good := "# keys\nk2 " + std(key2) + "\nk1 " + std(key1) + "\n"
	write := func(name, data string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(data), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil { // past the umask
			t.Fatal(err)
		}
		return p
	}
	for _, mode := range []os.FileMode{0o600, 0o400, 0o200} {
		p := write(fmt.Sprintf("ok-%o", mode), good, mode)
		if mode&0o400 == 0 && os.Geteuid() == 0 {
			continue // root reads anyway
		}
		k, err := secrets.LoadKeyring(p)
		if mode&0o400 == 0 {
			if err == nil {
				t.Errorf("LoadKeyring(mode %o) = %v, want a read error", mode, k)
			}
			continue
		}
		if err != nil || k.Primary() != "k2" {
			t.Errorf("LoadKeyring(mode %o) = %v, %v; want primary k2", mode, k, err)
		}
	}
	if runtime.GOOS != "windows" {
		for _, mode := range []os.FileMode{0o644, 0o640, 0o604, 0o660, 0o700, 0o601} {
			p := write(fmt.Sprintf("loose-%o", mode), good, mode)
			k, err := secrets.LoadKeyring(p)
			want := fmt.Sprintf("mode is %#o, must be 0600 or stricter (chmod 600 %s)", mode, p)
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("LoadKeyring(mode %o) = %v, %v; want an error containing %q", mode, k, err, want)
			}
		}
	}
	bad := write("bad", "k1 "+std(key1)+"\nk1 "+std(key2), 0o600)
	if _, err := secrets.LoadKeyring(bad); err == nil || !strings.Contains(err.Error(), bad+`: line 2: key id "k1" is already used on line 1`) {
		t.Errorf("LoadKeyring(duplicate id) = %v, want the path and the line", err)
	} else {
		noneIn(t, "LoadKeyring's error", err.Error(), keyMaterial(key1, key2)...)
	}
	big := write("big", "k1 "+std(key1)+"\n"+strings.Repeat("#", secrets.MaxKeyFile), 0o600)
	if _, err := secrets.LoadKeyring(big); err == nil || !strings.Contains(err.Error(), big+": larger than 65536 bytes") {
		t.Errorf("LoadKeyring(oversized) = %v, want a size error", err)
	}
	if _, err := secrets.LoadKeyring(dir); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("LoadKeyring(a directory) = %v, want not a regular file", err)
	}
	if _, err := secrets.LoadKeyring(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("LoadKeyring(missing) = %v, want ErrNotExist", err)
	}
}

func TestKeyringFromEnv(t *testing.T) {
	t.Parallel()
	k, err := secrets.KeyringFromEnv("k2 " + std(key2) + ";k1 " + std(key1) + ";")
	if err != nil || !slices.Equal(k.IDs(), []string{"k2", "k1"}) {
		t.Fatalf("KeyringFromEnv(;-separated) = %v, %v; want [k2 k1]", k, err)
	}
	k, err = secrets.KeyringFromEnv("k2 " + std(key2) + "\nk1 " + std(key1))
	if err != nil || k.Primary() != "k2" {
		t.Fatalf("KeyringFromEnv(newline-separated) = %v, %v; want primary k2", k, err)
	}
	_, err = secrets.KeyringFromEnv("k1 " + std(key1)[:10])
	if err == nil || !strings.HasPrefix(err.Error(), "secrets: keyring from the environment: line 1:") {
		t.Errorf("KeyringFromEnv(short key) = %v, want a line-numbered error", err)
	}
	if _, err := secrets.KeyringFromEnv(""); err == nil {
		t.Error("KeyringFromEnv(\"\") succeeded, want no keys")
	}
}

func TestGenerateKey(t *testing.T) {
	t.Parallel()
	line, err := secrets.GenerateKey("k-2026")
	if err != nil {
		t.Fatalf("GenerateKey: %v", err)
	}
	if !regexp.MustCompile(`^k-2026 [A-Za-z0-9+/]{43}=$`).MatchString(line) {
		t.Errorf("GenerateKey = %q, want \"k-2026 <base64 of 32 bytes>\"", line)
	}
	other, _ := secrets.GenerateKey("k-2027")
	k := mustKeyring(t, other, line) // two generated keys differ, or this fails
	if k.Primary() != "k-2027" {
		t.Errorf("primary = %q, want k-2027", k.Primary())
	}
	for _, id := range []string{"", "K", "a b", strings.Repeat("a", 33), "-a"} {
		if line, err := secrets.GenerateKey(id); !errors.Is(err, secrets.ErrInvalid) {
			t.Errorf("GenerateKey(%q) = %q, %v; want ErrInvalid", id, line, err)
		}
	}
}

func FuzzParseKeyring(f *testing.F) {
	f.Add([]byte("k1 " + std(key1)))
	f.Add([]byte("# c\r\nk2\t" + std(key2) + "\r\n\nk1 " + std(key1) + "\n"))
	f.Add([]byte("a-1 " + base64.RawURLEncoding.EncodeToString(key3)))
	f.Add([]byte("k1 " + std(key1) + "\nk1 " + std(key2)))
	f.Add([]byte("k1 " + std(key1) + "\nk2 " + std(key1)))
	f.Add([]byte(std(key1) + " k1"))
	f.Add([]byte("K1 ===="))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, data []byte) {
		k, err := secrets.ParseKeyring(data)
		if err != nil {
			if k != nil {
				t.Fatalf("ParseKeyring returned a keyring with error %v", err)
			}
			// An error never quotes a long run of the input: that could be key material.
			for _, f := range strings.Fields(string(data)) {
				if len(f) >= 40 && strings.Contains(err.Error(), f) {
					t.Fatalf("error %q echoes input field %q", err, f)
				}
			}
			return
		}
		ids := k.IDs()
		if len(ids) == 0 || len(ids) > secrets.MaxKeys || k.Primary() != ids[0] {
			t.Fatalf("ParseKeyring accepted %d keys, primary %q", len(ids), k.Primary())
		}
		seen := map[string]bool{}
		for _, id := range ids {
			if seen[id] || secrets.CheckKeyID(id) != nil {
				t.Fatalf("ParseKeyring accepted id %q twice or invalid", id)
			}
			seen[id] = true
		}
		// What was accepted seals and opens.
		id, nonce, ct, err := k.Seal("n", []byte("v"))
		if err != nil || id != ids[0] {
			t.Fatalf("Seal = %q, %v", id, err)
		}
		if p, err := k.Open(id, "n", nonce, ct); err != nil || string(p) != "v" {
			t.Fatalf("Open = %q, %v", p, err)
		}
	})
}
