package postgres

import (
	"context"
	"embed"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/chaperone-dev/chaperone/internal/store"
)

// migrationFiles holds the schema, one file per version: NNNN_name.sql, numbered from 1
// without gaps. A released file is never edited; a change is a new file.
//
//go:embed migrations/*.sql
var migrationFiles embed.FS

// migrationLock is the advisory lock key migrations run under ("chaperone" in ASCII,
// truncated), so that replicas starting together apply each migration once.
const migrationLock int64 = 0x6368617065726f6e

type migration = store.MigrationFile

// migrations returns the embedded migrations in version order.
func migrations() ([]migration, error) {
	return store.ReadMigrations(migrationFiles, "migrations")
}

const createMigrations = `CREATE TABLE IF NOT EXISTS schema_migrations (
	version    bigint      PRIMARY KEY,
	name       text        NOT NULL,
	applied_at timestamptz NOT NULL
)`

// migrate applies each pending migration in a transaction of its own, holding the
// migration lock, and refuses a database newer than this binary.
func migrate(ctx context.Context, pool *pgxpool.Pool) error {
	ms, err := migrations()
	if err != nil {
		return err
	}
	latest := ms[len(ms)-1].Version
	for _, m := range ms {
		if err := apply(ctx, pool, m, latest); err != nil {
			return err
		}
	}
	return nil
}

func apply(ctx context.Context, pool *pgxpool.Pool, m migration, latest int64) error {
	tx, err := pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("migration %s: %w", m.Name, err)
	}
	defer rollback(tx)
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, migrationLock); err != nil {
		return fmt.Errorf("migration %s: take the migration lock: %w", m.Name, err)
	}
	if _, err := tx.Exec(ctx, createMigrations); err != nil {
		return fmt.Errorf("create schema_migrations: %w", err)
	}
	current, err := schemaVersion(ctx, tx)
	if err != nil {
		return err
	}
	if current > latest {
		return fmt.Errorf("schema version %d, this binary knows up to %d: %w", current, latest, store.ErrNewerSchema)
	}
	if current >= m.Version {
		return tx.Commit(ctx)
	}
	if _, err := tx.Exec(ctx, m.SQL); err != nil {
		return fmt.Errorf("migration %s: %w", m.Name, err)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)`,
		m.Version, m.Name, time.Now().UTC()); err != nil {
		return fmt.Errorf("migration %s: record version: %w", m.Name, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("migration %s: commit: %w", m.Name, err)
	}
	return nil
}

// checkSchema reports whether the database has a schema this binary can read, without
// changing anything.
func checkSchema(ctx context.Context, pool *pgxpool.Pool) error {
	var exists bool
	if err := pool.QueryRow(ctx, `SELECT to_regclass('schema_migrations') IS NOT NULL`).Scan(&exists); err != nil {
		return fmt.Errorf("read schema: %w", err)
	}
	if !exists {
		return fmt.Errorf("%w: no schema_migrations table", store.ErrNoSchema)
	}
	ms, err := migrations()
	if err != nil {
		return err
	}
	current, err := schemaVersion(ctx, pool)
	if err != nil {
		return err
	}
	latest := ms[len(ms)-1].Version
	switch {
	case current == 0:
		return fmt.Errorf("%w: no schema version recorded", store.ErrNoSchema)
	case current > latest:
		return fmt.Errorf("schema version %d, this binary knows up to %d: %w", current, latest, store.ErrNewerSchema)
	}
	return nil
}

type queryRower interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

func schemaVersion(ctx context.Context, q queryRower) (int64, error) {
	var v *int64
	if err := q.QueryRow(ctx, `SELECT max(version) FROM schema_migrations`).Scan(&v); err != nil {
		return 0, fmt.Errorf("read schema version: %w", err)
	}
	if v == nil {
		return 0, nil
	}
	return *v, nil
}

// Migrations lists the schema versions this binary knows, with when each was applied.
func (db *DB) Migrations(ctx context.Context) ([]store.Migration, error) {
	ms, err := migrations()
	if err != nil {
		return nil, err
	}
	applied := map[int64]time.Time{}
	rows, err := db.pool.Query(ctx, `SELECT version, applied_at FROM schema_migrations`)
	if err != nil {
		return nil, fmt.Errorf("postgres: read migrations: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var v int64
		var at time.Time
		if err := rows.Scan(&v, &at); err != nil {
			return nil, fmt.Errorf("postgres: read migrations: %w", err)
		}
		applied[v] = at
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("postgres: read migrations: %w", err)
	}
	return store.MigrationStatus(ms, applied), nil
}

// Known lists the migrations this binary carries, all pending.
func Known() []store.Migration {
	ms, _ := migrations() // the embedded files are checked by the tests
	return store.MigrationStatus(ms, nil)
}
