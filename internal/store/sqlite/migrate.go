package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"time"

	"github.com/chaperone-dev/chaperone/internal/store"
)

// migrationFiles holds the schema, one file per version: NNNN_name.sql,
// numbered from 1 without gaps. A released file is never edited; a change is a
// new file.
//
//go:embed migrations/*.sql
var migrationFiles embed.FS

type migration = store.MigrationFile

// migrations returns the embedded migrations in version order.
func migrations() ([]migration, error) {
	return store.ReadMigrations(migrationFiles, "migrations")
}

// migrate brings the schema of the database behind w up to date, applying
// each pending migration in a transaction of its own.
func migrate(ctx context.Context, w *sql.DB) error {
	ms, err := migrations()
	if err != nil {
		return err
	}
	const create = `CREATE TABLE IF NOT EXISTS schema_migrations (
	version    INTEGER PRIMARY KEY,
	applied_at TEXT NOT NULL
) STRICT`
	if _, err := w.ExecContext(ctx, create); err != nil {
		return fmt.Errorf("create schema_migrations: %w", err)
	}
	current, err := schemaVersion(ctx, w)
	if err != nil {
		return err
	}
	latest := ms[len(ms)-1].Version
	if current > latest {
		return fmt.Errorf("schema version %d, this binary knows up to %d: %w", current, latest, ErrNewerSchema)
	}
	for _, m := range ms[current:] {
		if err := apply(ctx, w, m, latest); err != nil {
			return err
		}
	}
	return nil
}

// apply runs m unless the database already has it. It reads the version
// inside m's transaction, so two processes opening the same new database do
// not both apply it.
func apply(ctx context.Context, w *sql.DB, m migration, latest int64) (err error) {
	tx, err := w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("migration %s: %w", m.Name, err)
	}
	defer func() {
		if err != nil {
			tx.Rollback()
		}
	}()
	current, err := schemaVersion(ctx, tx)
	if err != nil {
		return err
	}
	if current > latest {
		return fmt.Errorf("schema version %d, this binary knows up to %d: %w", current, latest, ErrNewerSchema)
	}
	if current >= m.Version {
		return tx.Commit()
	}
	if _, err := tx.ExecContext(ctx, m.SQL); err != nil {
		return fmt.Errorf("migration %s: %w", m.Name, err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)`,
		m.Version, time.Now().UTC().Format(time.RFC3339Nano)); err != nil {
		return fmt.Errorf("migration %s: record version: %w", m.Name, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("migration %s: commit: %w", m.Name, err)
	}
	return nil
}

// checkSchema reports whether the database behind r has a schema this binary
// can read, without changing anything.
func checkSchema(ctx context.Context, r *sql.DB) error {
	var n int
	err := r.QueryRowContext(ctx,
		`SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = 'schema_migrations'`).Scan(&n)
	if err != nil {
		return fmt.Errorf("read schema: %w", err)
	}
	if n == 0 {
		return fmt.Errorf("%w: no schema_migrations table", store.ErrNoSchema)
	}
	ms, err := migrations()
	if err != nil {
		return err
	}
	current, err := schemaVersion(ctx, r)
	if err != nil {
		return err
	}
	latest := ms[len(ms)-1].Version
	switch {
	case current == 0:
		return fmt.Errorf("%w: no schema version recorded", store.ErrNoSchema)
	case current > latest:
		return fmt.Errorf("schema version %d, this binary knows up to %d: %w", current, latest, ErrNewerSchema)
	}
	return nil
}

// querier is what *sql.DB and *sql.Tx have in common here.
type querier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// schemaVersion returns the highest applied migration, 0 if none.
func schemaVersion(ctx context.Context, q querier) (int64, error) {
	var v sql.NullInt64
	if err := q.QueryRowContext(ctx, `SELECT max(version) FROM schema_migrations`).Scan(&v); err != nil {
		return 0, fmt.Errorf("read schema version: %w", err)
	}
	return v.Int64, nil
}

// Migrations lists the schema versions this binary knows, with when each was applied.
func (db *DB) Migrations(ctx context.Context) ([]store.Migration, error) {
	ms, err := migrations()
	if err != nil {
		return nil, err
	}
	applied := map[int64]time.Time{}
	rows, err := db.r.QueryContext(ctx, `SELECT version, applied_at FROM schema_migrations`)
	if err != nil {
		return nil, fmt.Errorf("sqlite: read migrations: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var v int64
		var at string
		if err := rows.Scan(&v, &at); err != nil {
			return nil, fmt.Errorf("sqlite: read migrations: %w", err)
		}
		t, err := time.Parse(time.RFC3339Nano, at)
		if err != nil {
			return nil, fmt.Errorf("sqlite: read migrations: version %d: %w", v, err)
		}
		applied[v] = t
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: read migrations: %w", err)
	}
	return store.MigrationStatus(ms, applied), nil
}

// Known lists the migrations this binary carries, all pending.
func Known() []store.Migration {
	ms, _ := migrations() // the embedded files are checked by the tests
	return store.MigrationStatus(ms, nil)
}
