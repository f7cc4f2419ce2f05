package cli

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/chaperone-dev/chaperone/internal/api"
	"github.com/chaperone-dev/chaperone/internal/audit"
	"github.com/chaperone-dev/chaperone/internal/secrets"
	"github.com/chaperone-dev/chaperone/internal/store/sqlite/sqlitetest"
)

// cliSecret is the value the tests set; no output may hold it.
const cliSecret = "sk_live_CLISECRET-77"

// secretsGateway is a real admin API over a real vault over SQLite.
type secretsGateway struct {
	url, tokenFile string
	vault          *secrets.Vault
	keyring        atomic.Pointer[secrets.Keyring]
	failAudit      atomic.Bool
}

func cliKeyring(tb testing.TB, ids ...string) *secrets.Keyring {
	tb.Helper()
	var lines []string
	for _, id := range ids { // a key's bytes depend on its id alone
		lines = append(lines, id+" "+base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{id[len(id)-1]}, 32)))
	}
	k, err := secrets.ParseKeyring([]byte(strings.Join(lines, "\n")))
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

func newSecretsGateway(tb testing.TB) *secretsGateway {
	tb.Helper()
	db, log := sqlitetest.Open(tb)
	g := &secretsGateway{tokenFile: filepath.Join(tb.TempDir(), "admin.token")}
	if err := os.WriteFile(g.tokenFile, []byte(testAdminToken+"\n"), 0o600); err != nil {
		tb.Fatal(err)
	}
	g.keyring.Store(cliKeyring(tb, "k1"))
	v, err := secrets.NewVault(secrets.VaultOptions{Store: db, Keyring: g.keyring.Load, Audit: func(ctx context.Context, e *audit.Event) error {
		if g.failAudit.Load() {
			return errors.New("audit disk full")
		}
		return log.Append(ctx, e)
	}})
	if err != nil {
		tb.Fatal(err)
	}
	g.vault = v
	srv := httptest.NewServer(api.New(api.Options{Token: testAdminToken, Secrets: v}))
	tb.Cleanup(srv.Close)
	g.url = srv.URL
	return g
}

// admin is the flags that point a command at the gateway.
func (g *secretsGateway) admin() []string {
	return []string{"--admin-url", g.url, "--token-file", g.tokenFile}
}

// run runs a command line through Run, as main does.
func (g *secretsGateway) run(tb testing.TB, args ...string) (status int, stdout, stderr string) {
	tb.Helper()
	var out, errb bytes.Buffer
	status = Run(tb.Context(), append(args, g.admin()...), &out, &errb)
	noSecretIn(tb, strings.Join(args, " "), out.String()+errb.String())
	return status, out.String(), errb.String()
}

// set runs secrets set with stdin as standard input.
func (g *secretsGateway) set(tb testing.TB, stdin string, args ...string) (stdout, stderr string, err error) {
	tb.Helper()
	var out, errb bytes.Buffer
	err = secretsSet(tb.Context(), append(args, g.admin()...), strings.NewReader(stdin), &out, &errb)
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	noSecretIn(tb, "secrets set "+strings.Join(args, " "), out.String()+errb.String()+msg)
	return out.String(), errb.String(), err
}

func noSecretIn(tb testing.TB, what, s string) {
	tb.Helper()
	if strings.Contains(s, "CLISECRET") || strings.Contains(s, "hunter2") {
		tb.Errorf("%s: the output holds the secret value:\n%s", what, s)
	}
}

func (g *secretsGateway) wantValue(tb testing.TB, name, want string) {
	tb.Helper()
	v, err := g.vault.Reveal(tb.Context(), name)
	if err != nil || !v.Equal([]byte(want)) {
		tb.Errorf("Reveal(%s) = %d bytes, %v; want the %d bytes set", name, v.Len(), err, len(want))
	}
}

func TestSecretsSet(t *testing.T) {
	g := newSecretsGateway(t)
	dir := t.TempDir()

	// From standard input, one trailing newline removed.
	out, _, err := g.set(t, cliSecret+"\n", "crm-key", "--description", "CRM production key", "--by", "alice")
	if err != nil || out != "secret crm-key set: version 1, sealed with key k1\n" {
		t.Fatalf("secrets set crm-key < value = %q, %v", out, err)
	}
	g.wantValue(t, "crm-key", cliSecret)
	if m, err := g.vault.Meta(t.Context(), "crm-key"); err != nil || m.Description != "CRM production key" || m.UpdatedBy != "admin-api:alice" {
		t.Errorf("Meta(crm-key) = %+v, %v; want the description and admin-api:alice", m, err)
	}

	// From a file, with the flags before the name, a CRLF removed; inner newlines kept.
	file := filepath.Join(dir, "pem")
	os.WriteFile(file, []byte("line1\nline2-"+cliSecret+"\r\n"), 0o600)
	if out, _, err := g.set(t, "ignored", "--from-file", file, "pem-key"); err != nil || !strings.Contains(out, "version 1") {
		t.Errorf("secrets set --from-file = %q, %v", out, err)
	}
	g.wantValue(t, "pem-key", "line1\nline2-"+cliSecret)

	// From the environment; a second set is version 2.
	t.Setenv("CHP_CLI_TEST_SECRET", cliSecret+"-env")
	if out, _, err := g.set(t, "", "crm-key", "--from-env", "CHP_CLI_TEST_SECRET"); err != nil || !strings.Contains(out, "version 2") {
		t.Errorf("secrets set --from-env = %q, %v", out, err)
	}
	g.wantValue(t, "crm-key", cliSecret+"-env")

	for _, tt := range []struct {
		name, stdin string
		args        []string
		wantErr     string
		usage       bool
	}{
		{"empty stdin", "", []string{"crm-key"}, "the value on standard input is empty", true},
		{"newline only", "\n", []string{"crm-key"}, "the value on standard input is empty", true},
		{"oversized stdin", strings.Repeat("v", secrets.MaxValue+1), []string{"crm-key"}, "the value on standard input is more than 65536 bytes", false},
		{"not UTF-8", "caf\xe9" + cliSecret, []string{"crm-key"}, "the value of crm-key is not valid UTF-8", false},
		{"both sources", cliSecret, []string{"crm-key", "--from-file", file, "--from-env", "HOME"}, "give at most one of --from-file and --from-env", true},
		{"unset variable", "", []string{"crm-key", "--from-env", "CHP_CLI_TEST_UNSET"}, "resolve env:CHP_CLI_TEST_UNSET: the variable is not set", false},
		{"bad variable name", "", []string{"crm-key", "--from-env", "A-B"}, "variable name must be of A-Z", false},
		{"missing file", "", []string{"crm-key", "--from-file", filepath.Join(dir, "nope")}, "no such file", false},
		{"empty file", "", []string{"crm-key", "--from-file", writeFile(t, dir, "empty", "")}, "the file is empty", false},
		{"bad name", cliSecret, []string{"CRM"}, "secret name must match [a-z0-9][a-z0-9._-]{0,63}; byte 0 is not allowed there", true},
		{"no name", cliSecret, nil, "give exactly one NAME", true},
		{"long description", cliSecret, []string{"crm-key", "--description", strings.Repeat("d", 201)}, `admin API: invalid: set "crm-key": description is 201 bytes, more than 200 (HTTP 400)`, false},
	} {
		_, _, err := g.set(t, tt.stdin, tt.args...)
		var ue usageError
		if err == nil || !strings.Contains(err.Error(), tt.wantErr) || errors.As(err, &ue) != tt.usage {
			t.Errorf("%s: secrets set = %v, want a usage error %v containing %q", tt.name, err, tt.usage, tt.wantErr)
		}
	}
	g.wantValue(t, "crm-key", cliSecret+"-env") // no refused set changed it

	// A change the gateway cannot audit is refused with the API's message.
	g.failAudit.Store(true)
	if _, _, err := g.set(t, "new"+cliSecret, "crm-key"); err == nil || !strings.Contains(err.Error(), "admin API: refused: the audit log could not record the change, so it was not made (HTTP 503)") {
		t.Errorf("secrets set with a failing audit log = %v, want the API's refusal", err)
	}
	g.failAudit.Store(false)
	g.wantValue(t, "crm-key", cliSecret+"-env")
}

func writeFile(tb testing.TB, dir, name, content string) string {
	tb.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		tb.Fatal(err)
	}
	return p
}

// TestSecretsSetRefusesValueArguments checks that a value given on the command line,
// where shell history and ps would keep it, is refused before anything is read or sent,
// and never echoed.
func TestSecretsSetRefusesValueArguments(t *testing.T) {
	t.Parallel()
	g := newSecretsGateway(t)
	for _, args := range [][]string{
		{"secrets", "set", "crm-key", "hunter2"},
		{"secrets", "set", "crm-key", "--description", "d", cliSecret},
		{"secrets", "set", "--value", cliSecret, "crm-key"},
		{"secrets", "set", "crm-key", "--value=" + cliSecret},
		{"secrets", "set", "crm-key", "--password", "hunter2"},
	} {
		status, out, errOut := g.run(t, args...)
		if status != exitUsage || out != "" {
			t.Errorf("%q = %d, stdout %q; want exit status %d and no output", args, status, out, exitUsage)
		}
		if !strings.Contains(errOut, "give exactly one NAME") && !strings.Contains(errOut, "flag provided but not defined") {
			t.Errorf("%q: stderr %q, want the reason", args, errOut)
		}
	}
	if ms, err := g.vault.List(t.Context()); err != nil || len(ms) != 0 {
		t.Errorf("List() after refused commands = %+v, %v; want nothing stored", ms, err)
	}
}

func TestSecretsCommands(t *testing.T) {
	t.Parallel()
	g := newSecretsGateway(t)
	if status, out, errOut := g.run(t, "secrets", "list"); status != 0 || out != "no secrets stored\n" {
		t.Errorf("secrets list on an empty vault = %d %q %q", status, out, errOut)
	}
	for _, name := range []string{"crm-key", "billing"} {
		if _, _, err := g.set(t, cliSecret, name, "--by", "alice", "--description", "the "+name); err != nil {
			t.Fatal(err)
		}
	}
	status, out, errOut := g.run(t, "secrets", "list")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if status != 0 || len(lines) != 3 || !strings.HasPrefix(lines[0], "NAME") ||
		!strings.HasPrefix(lines[1], "billing") || !strings.Contains(lines[1], "admin-api:alice") || !strings.Contains(lines[1], "the billing") ||
		!strings.HasPrefix(lines[2], "crm-key") || !strings.Contains(lines[2], " 1 ") || !strings.Contains(lines[2], "k1") {
		t.Errorf("secrets list = %d\n%s%s", status, out, errOut)
	}

	// A new primary key, then the rotation.
	g.keyring.Store(cliKeyring(t, "k2", "k1"))
	status, out, errOut = g.run(t, "secrets", "rotate", "--by", "carol")
	if status != 0 || !strings.Contains(out, "every secret is under key k2: 2 re-encrypted, 0 already under it, 0 deleted meanwhile") {
		t.Errorf("secrets rotate = %d %q %q", status, out, errOut)
	}
	g.keyring.Store(cliKeyring(t, "k2"))
	g.wantValue(t, "crm-key", cliSecret)

	if status, out, errOut := g.run(t, "secrets", "delete", "billing", "--by", "dave"); status != 0 || out != "secret billing deleted\n" {
		t.Errorf("secrets delete billing = %d %q %q", status, out, errOut)
	}
	status, _, errOut = g.run(t, "secrets", "delete", "billing")
	if status != exitFail || !strings.Contains(errOut, "chaperone secrets: admin API: no secret has that name (HTTP 404)") {
		t.Errorf("secrets delete billing again = %d %q; want 1 and the API's message", status, errOut)
	}
	for _, tt := range []struct {
		args    []string
		wantErr string
	}{
		{[]string{"secrets", "delete"}, "give the secret's name"},
		{[]string{"secrets", "delete", "Bad"}, "secret name must match"},
		{[]string{"secrets", "delete", "a", "b"}, `unexpected argument "b"`},
		{[]string{"secrets", "rotate", "extra"}, `unexpected argument "extra"`},
		{[]string{"secrets", "list", "--all"}, "flag provided but not defined: -all"},
		{[]string{"secrets", "frobnicate"}, `unknown subcommand "frobnicate"`},
	} {
		if status, _, errOut := g.run(t, tt.args...); status != exitUsage || !strings.Contains(errOut, tt.wantErr) {
			t.Errorf("%q = %d %q; want %d and %q", tt.args, status, errOut, exitUsage, tt.wantErr)
		}
	}
	var errb bytes.Buffer
	if status := Run(t.Context(), []string{"secrets"}, &bytes.Buffer{}, &errb); status != exitUsage || !strings.Contains(errb.String(), "missing subcommand") {
		t.Errorf("secrets = %d %q; want %d and missing subcommand", status, errb.String(), exitUsage)
	}
}

func TestSecretsKeygen(t *testing.T) {
	t.Parallel()
	var out, errb bytes.Buffer
	if status := Run(t.Context(), []string{"secrets", "keygen", "--id", "k-2026"}, &out, &errb); status != 0 {
		t.Fatalf("secrets keygen = %d %q", status, errb.String())
	}
	k, err := secrets.ParseKeyring(out.Bytes())
	if err != nil || k.Primary() != "k-2026" {
		t.Fatalf("secrets keygen printed %q: ParseKeyring = %v, %v", out.String(), k, err)
	}
	if !strings.Contains(errb.String(), "Put this line first in the key file") || strings.Contains(errb.String(), strings.Fields(out.String())[1]) {
		t.Errorf("secrets keygen stderr = %q, want the hint and not the key", errb.String())
	}
	for _, args := range [][]string{{"secrets", "keygen"}, {"secrets", "keygen", "--id", "Bad"}, {"secrets", "keygen", "--id", "k", "extra"}} {
		out.Reset()
		errb.Reset()
		if status := Run(t.Context(), args, &out, &errb); status != exitUsage || out.Len() != 0 {
			t.Errorf("%q = %d, stdout %q; want %d and no key", args, status, out.String(), exitUsage)
		}
	}
}
