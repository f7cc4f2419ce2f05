package policy

import (
	"go/build"
	"strings"
	"testing"
)

// TestImports keeps the package pure: no I/O packages and no other internal package.
func TestImports(t *testing.T) {
	t.Parallel()
	pkg, err := build.ImportDir(".", 0)
	if err != nil {
		t.Fatalf("build.ImportDir() error: %v", err)
	}
	banned := []string{"os", "os/exec", "io/fs", "io/ioutil", "net", "net/http", "database/sql", "syscall", "unsafe", "log", "log/slog"}
	for _, imp := range pkg.Imports {
		for _, b := range banned {
			if imp == b {
				t.Errorf("package imports %q; policy must do no I/O", imp)
			}
		}
		if strings.Contains(imp, "/internal/") || strings.HasPrefix(imp, "internal/") {
			t.Errorf("package imports %q; policy must not depend on other internal packages", imp)
		}
	}
}
