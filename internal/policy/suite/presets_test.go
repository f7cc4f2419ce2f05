package suite_test

import (
	"path/filepath"
	"testing"

	"github.com/chaperone-dev/chaperone/internal/policy/suite"
)

// presetsDir holds the policy presets operators copy; every preset ships a suite.
var presetsDir = filepath.Join("..", "..", "..", "policies", "presets")

// TestPresets runs every preset's suite: each preset compiles with the tools its suite
// declares, and every case passes.
func TestPresets(t *testing.T) {
	t.Parallel()
	paths, err := suite.Discover(presetsDir)
	if err != nil {
		t.Fatalf("Discover(%q): %v", presetsDir, err)
	}
	policies, err := filepath.Glob(filepath.Join(presetsDir, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if want := len(policies) - len(paths); len(paths) == 0 || len(paths) != want {
		t.Fatalf("Discover(%q) = %d suites for %d policy files, want one suite per preset", presetsDir, len(paths), want)
	}
	for _, p := range paths {
		t.Run(filepath.Base(p), func(t *testing.T) {
			t.Parallel()
			s, err := suite.Load(p)
			if err != nil {
				t.Fatalf("Load(%q): %v", p, err)
			}
			if len(s.Cases) < 6 {
				t.Errorf("Load(%q): %d cases, want at least 6", p, len(s.Cases))
			}
			r := s.Run()
			if r.Err != nil {
				t.Fatalf("Run(%q): %v", p, r.Err)
			}
			for _, c := range r.Cases {
				if !c.Pass {
					t.Errorf("%s:%d %s: %s", p, c.Line, c.Name, c.Message())
				}
			}
		})
	}
}
