package cli

import (
	"context"

	"github.com/chaperone-dev/chaperone/internal/config"
	"github.com/chaperone-dev/chaperone/internal/store"
	"github.com/chaperone-dev/chaperone/internal/store/backend"
)

// maxCheckpointPage is how many stored checkpoints are read per query.
const maxCheckpointPage = 1000

// openReadOnly opens a gateway's store for reading: db is a SQLite file, or a postgres://
// URL (the database of replicated gateways).
func openReadOnly(ctx context.Context, db string) (store.Store, error) {
	return backend.OpenReadOnly(ctx, storeConfig(db))
}

// storeConfig is the store a --db value names, with the defaults of the configuration.
func storeConfig(db string) config.Store {
	if config.IsPostgresURL(db) {
		c := config.Config{Store: config.Store{Postgres: &config.Postgres{URL: db}}}
		c.ApplyDefaults()
		return c.Store
	}
	return config.Store{SQLite: db}
}
