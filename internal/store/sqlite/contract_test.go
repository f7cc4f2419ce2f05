package sqlite_test

import (
	"path/filepath"
	"testing"

	"github.com/chaperone-dev/chaperone/internal/store"
	"github.com/chaperone-dev/chaperone/internal/store/sqlite"
	"github.com/chaperone-dev/chaperone/internal/store/storetest"
)

// TestContract runs the store contract suite against fresh SQLite files.
func TestContract(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) store.Store {
		path := filepath.Join(t.TempDir(), "chaperone.db")
		db, err := sqlite.Open(t.Context(), path)
		if err != nil {
			t.Fatalf("sqlite.Open(%q): %v", path, err)
		}
		t.Cleanup(func() {
			if err := db.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
		return db
	})
}
