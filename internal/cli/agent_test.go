package cli

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/pem"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/chaperone-dev/chaperone/internal/api"
	"github.com/chaperone-dev/chaperone/internal/audit"
	"github.com/chaperone-dev/chaperone/internal/identity"
	"github.com/chaperone-dev/chaperone/internal/store/sqlite"
)

const testAdminToken = "chpadm_cli-test-token"

// gateway is a real admin API over a real directory and task list; run runs the command
// line against it.
type gateway struct {
	url, tokenFile string
	agents         *identity.Directory
	tasks          *identity.Tasks
}

func newGateway(tb testing.TB) *gateway {
	tb.Helper()
	dir := tb.TempDir()
	db, err := sqlite.Open(tb.Context(), filepath.Join(dir, "chaperone.db"))
	if err != nil {
		tb.Fatal(err)
	}
	log, err := audit.NewLog(tb.Context(), db, audit.LogOptions{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		log.Close(context.Background())
		db.Close()
	})
	g := &gateway{tokenFile: filepath.Join(dir, "admin.token")}
	if err := os.WriteFile(g.tokenFile, []byte(testAdminToken+"\n"), 0o600); err != nil {
		tb.Fatal(err)
	}
	static := []identity.Registration{{Agent: identity.Agent{ID: "config-bot", Owner: "ops@example.com", Environment: "dev", Capabilities: []string{"*"}}, TokenSHA256: identity.HashToken("chp_x")}}
	if g.agents, err = identity.NewDirectory(tb.Context(), identity.DirectoryOptions{Store: db, Audit: log, Static: static}); err != nil {
		tb.Fatal(err)
	}
	if g.tasks, err = identity.NewTasks(tb.Context(), identity.TasksOptions{Store: db, Audit: log}); err != nil {
		tb.Fatal(err)
	}
	created := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	srv := httptest.NewServer(api.New(api.Options{
		Token: testAdminToken, Agents: g.agents, Tasks: g.tasks,
		Keys: func() []api.KeyInfo {
			return []api.KeyInfo{{ID: "k1", Created: created, Retired: created.Add(time.Hour)}, {ID: "k2", Created: created.Add(time.Hour)}}
		},
		RotateKeys: func(context.Context) (string, error) { return "k3", nil },
	}))
	tb.Cleanup(srv.Close)
	g.url = srv.URL
	return g
}

func (g *gateway) run(tb testing.TB, args ...string) (status int, stdout, stderr string) {
	tb.Helper()
	args = append(args, "--admin-url", g.url, "--token-file", g.tokenFile)
	var out, errb bytes.Buffer
	status = Run(tb.Context(), args, &out, &errb)
	return status, out.String(), errb.String()
}

func TestAgentCommands(t *testing.T) {
	t.Parallel()
	g := newGateway(t)

	// Flags after the positional id, and a boolean flag followed by other flags.
	status, out, errOut := g.run(t, "agent", "register", "--id", "mail", "--owner", "alice@example.com", "--purpose", "sorts mail",
		"--env", "prod", "--capabilities", "read_file, send_email", "--autonomy", "2", "--label", "team=support", "--label", "tier=1",
		"--secret", "--by", "alice")
	if status != 0 {
		t.Fatalf("agent register = %d, stderr %q", status, errOut)
	}
	secret := regexp.MustCompile(`(?m)^client secret: (chs_[A-Za-z0-9_-]{43})$`).FindStringSubmatch(out)
	if secret == nil || !g.agents.VerifySecret("mail", secret[1]) {
		t.Fatalf("agent register printed no usable secret:\n%s", out)
	}
	for _, want := range []string{"registered agent mail", "capabilities:  read_file, send_email", "labels:        team=support, tier=1", "credentials:   client secret", "shown only this once"} {
		if !strings.Contains(out, want) {
			t.Errorf("agent register output lacks %q:\n%s", want, out)
		}
	}

	pub, _, _ := ed25519.GenerateKey(nil)
	der, _ := x509.MarshalPKIXPublicKey(pub)
	keyFile := filepath.Join(t.TempDir(), "key.pem")
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600)
	if status, out, errOut := g.run(t, "agent", "register", "--id", "signer", "--owner", "bob", "--env", "dev", "--capabilities", "*", "--public-key", keyFile); status != 0 || strings.Contains(out, "secret:") {
		t.Fatalf("agent register --public-key = %d, %q, %q; want success without a secret", status, out, errOut)
	}
	if k, ok := g.agents.PublicKey("signer"); !ok || !k.Equal(pub) {
		t.Errorf("PublicKey(signer) = %x, %v; want the key from %s", k, ok, keyFile)
	}

	// The API's refusals reach the operator with their message and exit status 1.
	status, _, errOut = g.run(t, "agent", "register", "--id", "Bad", "--owner", "x", "--env", "dev", "--capabilities", "*", "--secret")
	if status != 1 || !strings.Contains(errOut, `chaperone agent: admin API: invalid: id: must match ^[a-z0-9][a-z0-9._-]{0,63}$, got "Bad" (HTTP 400)`) {
		t.Errorf("agent register --id Bad = %d, %q; want 1 and the API's message", status, errOut)
	}

	status, out, _ = g.run(t, "agent", "list")
	wantList := `ID          OWNER              ENV   STATUS  AUTONOMY  SOURCE    CAPABILITIES
config-bot  ops@example.com    dev   active  0         config    *
mail        alice@example.com  prod  active  2         registry  read_file,send_email
signer      bob                dev   active  0         registry  *
`
	if diff := cmp.Diff(wantList, out); status != 0 || diff != "" {
		t.Errorf("agent list = %d (-want +got):\n%s", status, diff)
	}

	if status, out, errOut := g.run(t, "agent", "suspend", "mail", "--reason", "looping", "--by", "alice"); status != 0 || out != "agent mail is now suspended\n" {
		t.Errorf("agent suspend = %d, %q, %q", status, out, errOut)
	}
	if status, out, _ := g.run(t, "agent", "show", "mail"); status != 0 || !strings.Contains(out, "status:        suspended (looping)") {
		t.Errorf("agent show mail = %d:\n%s", status, out)
	}
	if status, _, errOut := g.run(t, "agent", "suspend", "config-bot", "--reason", "x", "--by", "alice"); status != 1 || !strings.Contains(errOut, "declared in the configuration: edit the configuration (HTTP 409)") {
		t.Errorf("agent suspend config-bot = %d, %q", status, errOut)
	}
	if status, out, _ := g.run(t, "agent", "resume", "mail", "--by", "alice"); status != 0 || out != "agent mail is now active\n" {
		t.Errorf("agent resume = %d, %q", status, out)
	}
	if status, out, _ := g.run(t, "agent", "revoke", "mail", "--reason", "retired", "--by", "alice"); status != 0 || out != "agent mail is now revoked\n" {
		t.Errorf("agent revoke = %d, %q", status, out)
	}
	if status, _, errOut := g.run(t, "agent", "resume", "mail", "--by", "alice"); status != 1 || !strings.Contains(errOut, "revocation is final (HTTP 409)") {
		t.Errorf("agent resume revoked = %d, %q", status, errOut)
	}
	if status, _, errOut := g.run(t, "agent", "show", "nobody"); status != 1 || !strings.Contains(errOut, "no agent has that id (HTTP 404)") {
		t.Errorf("agent show nobody = %d, %q", status, errOut)
	}
}

func TestTaskAndKeyCommands(t *testing.T) {
	t.Parallel()
	g := newGateway(t)
	rec, err := g.tasks.Start(t.Context(), identity.TaskRecord{ID: "tsk_1", Agent: "mail", User: "carol", Tools: []string{"read_file"}, ExpiresAt: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	status, out, _ := g.run(t, "task", "list")
	if status != 0 || !regexp.MustCompile(`(?m)^tsk_1 +mail +carol +open +\S+ +\S+ +read_file$`).MatchString(out) {
		t.Errorf("task list = %d:\n%s", status, out)
	}
	if status, out, errOut := g.run(t, "task", "end", rec.ID, "--by", "op", "--reason", "done"); status != 0 || out != "task tsk_1 ended: every token bound to it is void\n" {
		t.Errorf("task end = %d, %q, %q", status, out, errOut)
	}
	if status, out, _ := g.run(t, "task", "list"); status != 0 || strings.Contains(out, "tsk_1") {
		t.Errorf("task list after end = %d:\n%s", status, out)
	}
	// --all takes no value: the flag after it is still parsed.
	if status, out, _ := g.run(t, "task", "list", "--all"); status != 0 || !regexp.MustCompile(`(?m)^tsk_1 .* ended `).MatchString(out) {
		t.Errorf("task list --all = %d:\n%s", status, out)
	}
	if status, _, errOut := g.run(t, "task", "end", rec.ID, "--by", "op"); status != 1 || !strings.Contains(errOut, "the task has already ended (HTTP 409)") {
		t.Errorf("task end again = %d, %q", status, errOut)
	}

	status, out, _ = g.run(t, "keys", "list")
	want := `KID  CREATED               RETIRED
k1   2026-03-01T09:00:00Z  2026-03-01T10:00:00Z
k2   2026-03-01T10:00:00Z  -
`
	if diff := cmp.Diff(want, out); status != 0 || diff != "" {
		t.Errorf("keys list = %d (-want +got):\n%s", status, diff)
	}
	if status, out, _ := g.run(t, "keys", "rotate"); status != 0 || out != "new signing key: k3\n" {
		t.Errorf("keys rotate = %d, %q", status, out)
	}
}

func TestReorder(t *testing.T) {
	t.Parallel()
	fs := newFlags("x", nil)
	fs.Bool("all", false, "")
	fs.String("by", "", "")
	tests := []struct {
		args, want []string
	}{
		{[]string{"id", "--by", "a"}, []string{"--by", "a", "--", "id"}},
		{[]string{"--all", "id"}, []string{"--all", "--", "id"}},
		{[]string{"--by=a", "id", "--all"}, []string{"--by=a", "--all", "--", "id"}},
		{[]string{"--by", "a", "--", "-odd"}, []string{"--by", "a", "--", "-odd"}},
		{[]string{"--by", "a"}, []string{"--by", "a"}},
	}
	for _, tt := range tests {
		if got := reorder(fs, tt.args); !cmp.Equal(got, tt.want) {
			t.Errorf("reorder(%q) = %q, want %q", tt.args, got, tt.want)
		}
	}
}
