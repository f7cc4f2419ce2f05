// Package backend opens the store a configuration selects: SQLite or PostgreSQL.
package backend

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"time"

	"github.com/chaperone-dev/chaperone/internal/audit/journal"
	"github.com/chaperone-dev/chaperone/internal/config"
	"github.com/chaperone-dev/chaperone/internal/store"
	"github.com/chaperone-dev/chaperone/internal/store/postgres"
	"github.com/chaperone-dev/chaperone/internal/store/sqlite"
)

// Options returns the PostgreSQL pool options of a configuration.
func Options(p *config.Postgres) postgres.Options {
	return postgres.Options{MaxConns: int32(p.MaxConns), StatementTimeout: p.StatementTimeout.D(),
		LockTimeout: p.StatementTimeout.D(), ConnectTimeout: p.ConnectTimeout.D()}
}

// Open opens the configured store and applies pending migrations. A PostgreSQL database
// that does not answer is retried, with backoff, for up to its startup_timeout (each
// failure logged), so replicas and their database can start in any order; a schema newer
// than this binary is not retried.
func Open(ctx context.Context, c config.Store, log *slog.Logger) (store.Store, error) {
	p := c.Postgres
	if p == nil {
		return sqlite.Open(ctx, c.SQLite)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	deadline := time.Now().Add(p.StartupTimeout.D())
	wait := 250 * time.Millisecond
	for {
		db, err := postgres.Open(ctx, p.URL, Options(p))
		if err == nil {
			return db, nil
		}
		if !retryable(err) || time.Now().Add(wait).After(deadline) {
			return nil, err
		}
		log.WarnContext(ctx, "database not reachable; retrying", "store", store.RedactDSN(p.URL), "in", wait, "err", err)
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%w (while waiting for the database: %w)", err, ctx.Err())
		case <-time.After(wait):
		}
		wait = min(2*wait, 5*time.Second)
	}
}

// OpenReadOnly opens the configured store for reading only, for offline tools (verify,
// export): no migration runs.
func OpenReadOnly(ctx context.Context, c config.Store) (store.Store, error) {
	if p := c.Postgres; p != nil {
		return postgres.OpenReadOnly(ctx, p.URL, Options(p))
	}
	db, err := sqlite.OpenReadOnly(ctx, c.SQLite)
	if err != nil {
		return nil, err
	}
	// A gateway makes events durable in its audit journal and copies them into the
	// database a few milliseconds later: a reader waits for what was written before it
	// looked, and refuses a database a stopped gateway left behind its journal.
	if err := journal.WaitIndexed(ctx, journal.DirFor(c.SQLite), db, journalWait); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// journalWait bounds how long a reader waits for a running gateway to copy its audit
// journal into the database.
const journalWait = 5 * time.Second

// Status lists the migrations this binary knows and which the configured database has,
// without changing it: on a database with no Chaperone schema yet, all are pending.
func Status(ctx context.Context, c config.Store) ([]store.Migration, error) {
	var known []store.Migration
	var db store.Store
	var err error
	if p := c.Postgres; p != nil {
		known = postgres.Known()
		db, err = postgres.OpenReadOnly(ctx, p.URL, Options(p))
	} else {
		known = sqlite.Known()
		db, err = sqlite.OpenReadOnly(ctx, c.SQLite)
	}
	switch {
	case err == nil:
		defer db.Close()
		return db.Migrations(ctx)
	case errors.Is(err, store.ErrNoSchema) || errors.Is(err, fs.ErrNotExist):
		return known, nil
	}
	return nil, err
}

// retryable reports whether opening may succeed later: the database did not answer.
func retryable(err error) bool {
	return errors.Is(err, postgres.ErrUnreachable)
}
