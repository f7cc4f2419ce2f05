package postgres_test

import (
	"testing"

	"github.com/chaperone-dev/chaperone/internal/store"
	"github.com/chaperone-dev/chaperone/internal/store/pgtest"
	"github.com/chaperone-dev/chaperone/internal/store/postgres"
	"github.com/chaperone-dev/chaperone/internal/store/storetest"
)

// TestContract runs the store contract suite against PostgreSQL, each subtest in a fresh
// schema of its own (dropped when it ends). It skips without CHAPERONE_TEST_POSTGRES.
func TestContract(t *testing.T) {
	t.Parallel()
	pgtest.Server(t) // skip the whole suite at once when no server is configured
	storetest.Run(t, func(t *testing.T) store.Store {
		db, err := postgres.Open(t.Context(), pgtest.DSN(t), postgres.Options{})
		if err != nil {
			t.Fatalf("postgres.Open: %v", err)
		}
		t.Cleanup(func() {
			if err := db.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
		return db
	})
}
