package inspect

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// piiTestKey is a fixed test key; vaults in production get random ones.
var piiTestKey = []byte("0123456789abcdef0123456789abcdef")

func piiTestVault(t testing.TB, max int) *Vault {
	t.Helper()
	v, err := NewVault(piiTestKey, max)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

var vaultPlaceholderRE = regexp.MustCompile(`^\[pii:[A-Z][A-Z0-9_]*:[0-9a-f]{16}\]$`)

func TestNewVault(t *testing.T) {
	t.Parallel()
	if _, err := NewVault([]byte("too short"), 10); err == nil || !strings.Contains(err.Error(), "16") {
		t.Errorf("NewVault(9-byte key) error = %v, want one naming the 16-byte minimum", err)
	}
	key := []byte("0123456789abcdef")
	v, err := NewVault(key, 0)
	if err != nil {
		t.Fatal(err)
	}
	if v.max != VaultDefaultMax {
		t.Errorf("NewVault(key, 0).max = %d, want %d", v.max, VaultDefaultMax)
	}
	// The vault keeps its own copy of the key.
	ph1, _ := v.Token("EMAIL", "a@example.com")
	key[0] = 'X'
	ph2, _ := v.Token("EMAIL", "a@example.com")
	if ph1 != ph2 {
		t.Errorf("Token changed after the caller's key slice changed: %q, then %q", ph1, ph2)
	}
}

func TestVaultTokenStable(t *testing.T) {
	t.Parallel()
	v := piiTestVault(t, 10)
	a, err := v.Token("EMAIL", "jane@example.com")
	if err != nil {
		t.Fatal(err)
	}
	if !vaultPlaceholderRE.MatchString(a) || !strings.HasPrefix(a, "[pii:EMAIL:") {
		t.Errorf("Token(EMAIL) = %q, want the form [pii:EMAIL:<16 hex>]", a)
	}
	if strings.Contains(a, "jane") || strings.Contains(a, "example") {
		t.Errorf("Token(EMAIL) = %q reveals the value", a)
	}
	b, _ := v.Token("EMAIL", "jane@example.com")
	if a != b {
		t.Errorf("Token twice = %q, %q, want the same", a, b)
	}
	// The same value under another type is another placeholder, and so is another value.
	c, _ := v.Token("USER_EMAIL", "jane@example.com")
	d, _ := v.Token("EMAIL", "john@example.com")
	if c == a || d == a || c == d {
		t.Errorf("Token gave %q, %q, %q for different type or value, want all different", a, c, d)
	}
	// A new vault with the same key gives the same placeholder; another key another.
	if e, _ := piiTestVault(t, 10).Token("EMAIL", "jane@example.com"); e != a {
		t.Errorf("Token with the same key = %q, want %q", e, a)
	}
	other, err := NewVault([]byte("another key of sixteen bytes or more"), 10)
	if err != nil {
		t.Fatal(err)
	}
	if f, _ := other.Token("EMAIL", "jane@example.com"); f == a {
		t.Errorf("Token with another key = %q, want a different placeholder", f)
	}
	if v.Len() != 3 {
		t.Errorf("Len() = %d, want 3", v.Len())
	}
}

func TestVaultTokenRefuses(t *testing.T) {
	t.Parallel()
	v := piiTestVault(t, 10)
	tests := []struct{ typ, value string }{
		{"", "x"},
		{"email", "x"},
		{"EMAIL]", "x"},
		{"1EMAIL", "x"},
		{strings.Repeat("A", vaultMaxType+1), "x"},
		{"EMAIL", ""},
		{"EMAIL", `a"b@example.com`},
		{"EMAIL", `a\b@example.com`},
		{"EMAIL", "a\nb"},
		{"EMAIL", "\xff\xfe"},
		{"EMAIL", strings.Repeat("a", VaultMaxValue+1)},
	}
	for _, tt := range tests {
		if ph, err := v.Token(tt.typ, tt.value); err == nil {
			t.Errorf("Token(%q, %.20q) = %q, want an error", tt.typ, tt.value, ph)
		}
	}
	if v.Len() != 0 {
		t.Errorf("Len() = %d after refused tokens, want 0", v.Len())
	}
}

func TestVaultFull(t *testing.T) {
	t.Parallel()
	v := piiTestVault(t, 2)
	a, err1 := v.Token("EMAIL", "a@example.com")
	_, err2 := v.Token("EMAIL", "b@example.com")
	if err1 != nil || err2 != nil {
		t.Fatalf("Token = %v, %v, want no errors below the bound", err1, err2)
	}
	if ph, err := v.Token("EMAIL", "c@example.com"); !errors.Is(err, ErrVaultFull) || ph != "" {
		t.Errorf("Token on a full vault = %q, %v, want \"\", ErrVaultFull", ph, err)
	}
	// A value already held still gets its placeholder.
	if ph, err := v.Token("EMAIL", "a@example.com"); err != nil || ph != a {
		t.Errorf("Token(held value) on a full vault = %q, %v, want %q, nil", ph, err, a)
	}
}

func TestVaultDetokenize(t *testing.T) {
	t.Parallel()
	v := piiTestVault(t, 10)
	email, _ := v.Token("EMAIL", "jane@example.com")
	iban, _ := v.Token("IBAN", "DE89 3704 0044 0532 0130 00")
	other := piiTestVault(t, 10)
	foreign, _ := other.Token("PHONE", "+1 212-555-0187")
	forged := "[pii:EMAIL:0000000000000000]"

	args := fmt.Sprintf(`{"to":%q,"cc":["%s"],"body":"pay to %s, ask %s %s","n":1}`, email, email, iban, foreign, forged)
	got, types := v.Detokenize(args)
	want := `{"to":"jane@example.com","cc":["jane@example.com"],"body":"pay to DE89 3704 0044 0532 0130 00, ask ` + foreign + " " + forged + `","n":1}`
	if got != want {
		t.Errorf("Detokenize(%s) = %s, want %s", args, got, want)
	}
	if diff := cmp.Diff([]string{"EMAIL", "IBAN"}, types); diff != "" {
		t.Errorf("Detokenize types (-want +got):\n%s", diff)
	}
	var decoded map[string]any
	if err := json.Unmarshal([]byte(got), &decoded); err != nil {
		t.Errorf("Detokenize broke the JSON: %v", err)
	}

	// Text without placeholders of this vault comes back unchanged, with no types.
	for _, text := range []string{"", "plain", "[pii:", "[pii:EMAIL:", "[pii:EMAIL:3f9a0c1d2e4b5a6]", "[pii:EMAIL:3F9A0C1D2E4B5A67]", foreign, forged} {
		if got, types := v.Detokenize(text); got != text || types != nil {
			t.Errorf("Detokenize(%q) = %q, %v, want it unchanged", text, got, types)
		}
	}
	// Nested or adjacent placeholders.
	text := "[" + email + email + "]" + "[pii:" + iban
	got, _ = v.Detokenize(text)
	if want := "[jane@example.comjane@example.com][pii:DE89 3704 0044 0532 0130 00"; got != want {
		t.Errorf("Detokenize(%q) = %q, want %q", text, got, want)
	}
}

func TestVaultPlaceholders(t *testing.T) {
	t.Parallel()
	v := piiTestVault(t, 10)
	email, _ := v.Token("EMAIL", "jane@example.com")
	ip, _ := v.Token("IP_ADDRESS", "10.0.0.1")
	text := "send " + email + " from " + ip + " and [pii:PHONE:0123456789abcdef]"
	got := v.Placeholders(text)
	start := len("send ")
	start2 := start + len(email) + len(" from ")
	want := []Finding{
		{Sensor: SensorPII, Kind: "EMAIL", Span: Span{start, start + len(email)}, Score: 1},
		{Sensor: SensorPII, Kind: "IP_ADDRESS", Span: Span{start2, start2 + len(ip)}, Score: 1},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Placeholders(%q) (-want +got):\n%s", text, diff)
	}
	if got := v.Placeholders("nothing here"); got != nil {
		t.Errorf("Placeholders(no placeholders) = %v, want nil", got)
	}
}

func TestVaultConcurrent(t *testing.T) {
	t.Parallel()
	v := piiTestVault(t, 1000)
	var wg sync.WaitGroup
	results := make([][]string, 8)
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 100 {
				value := fmt.Sprintf("user%d@example.com", i)
				ph, err := v.Token("EMAIL", value)
				if err != nil {
					t.Errorf("Token(%q) error = %v", value, err)
					return
				}
				if back, _ := v.Detokenize("to " + ph); back != "to "+value {
					t.Errorf("Detokenize(Token(%q)) = %q", value, back)
				}
				v.Placeholders(ph)
				results[w] = append(results[w], ph)
			}
		}()
	}
	wg.Wait()
	for w := 1; w < len(results); w++ {
		if diff := cmp.Diff(results[0], results[w]); diff != "" {
			t.Errorf("goroutine %d got other placeholders (-want +got):\n%s", w, diff)
		}
	}
	if v.Len() != 100 {
		t.Errorf("Len() = %d, want 100", v.Len())
	}
}
