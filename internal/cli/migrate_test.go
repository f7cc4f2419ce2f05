package cli

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/chaperone-dev/chaperone/internal/store/pgtest"
)

// migrate --status changes nothing and lists every migration pending on a new store;
// migrate applies them; --status then shows them applied. On both backends.
func TestMigrateCommand(t *testing.T) {
	for _, tc := range []struct {
		name string
		db   func(t *testing.T) string
	}{
		{"sqlite", func(t *testing.T) string { return filepath.Join(t.TempDir(), "chaperone.db") }},
		{"postgres", func(t *testing.T) string { return pgtest.DSN(t) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db := tc.db(t)
			code, out, errOut := runCLI(t, "", "migrate", "--status", "--db", db)
			if code != 0 || !strings.Contains(out, "0001_initial.sql") || !strings.Contains(out, "pending") || strings.Contains(out, "applied") {
				t.Fatalf("migrate --status on a new store = %d\n%s%s\nwant every migration pending", code, out, errOut)
			}
			code, out, errOut = runCLI(t, "", "migrate", "--status", "--db", db)
			if code != 0 || strings.Contains(out, "applied") {
				t.Fatalf("migrate --status changed the store: %d\n%s%s", code, out, errOut)
			}
			code, out, errOut = runCLI(t, "", "migrate", "--db", db)
			if code != 0 || !strings.Contains(out, "schema up to date") || strings.Contains(out, "pending") {
				t.Fatalf("migrate = %d\n%s%s", code, out, errOut)
			}
			code, out, _ = runCLI(t, "", "migrate", "--status", "--db", db)
			if code != 0 || strings.Contains(out, "pending") || !strings.Contains(out, "applied 20") {
				t.Fatalf("migrate --status after migrate = %d\n%s", code, out)
			}
			// The offline tools read the same store: an empty log verifies.
			if code, out, errOut := runCLI(t, "", "audit", "verify", "--db", db); code != 0 {
				t.Errorf("audit verify --db %s = %d\n%s%s", tc.name, code, out, errOut)
			}
		})
	}
}

func TestMigrateRedactsThePassword(t *testing.T) {
	code, out, errOut := runCLI(t, "", "migrate", "--status", "--db", "postgres://chaperone:hunter2@127.0.0.1:1/x?connect_timeout=1")
	if code == 0 {
		t.Fatalf("migrate against a closed port succeeded:\n%s", out)
	}
	if strings.Contains(out+errOut, "hunter2") {
		t.Errorf("the password was printed:\n%s%s", out, errOut)
	}
}
