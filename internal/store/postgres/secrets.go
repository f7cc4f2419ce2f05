package postgres

// Table secrets (migration 0005) backs [secrets.Store]: sealed upstream credentials,
// shared by every replica. Every method is one statement. PutSecret's upsert and
// ReencryptSecret's conditional update each lock the row they change, so that of
// replicas racing on one secret, versions are handed out once each and one
// compare-and-swap of a version wins.
//
// Records are checked before anything is written with the checks of package secrets,
// which the sqlite store uses too, so that both refuse the same records with the same
// errors; records read back are checked again, so that a damaged row is reported rather
// than used. Lookups by a name no secret could have answer "none" without asking the
// database. Errors name secrets, never a nonce or a ciphertext.

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/chaperone-dev/chaperone/internal/secrets"
)

var _ secrets.Store = (*DB)(nil)

const pgSecretColumns = `name, description, key_id, nonce, ciphertext, version, created_at, updated_at, updated_by`

// PutSecret creates or replaces the secret r.Name: version 1 on create, the stored
// version + 1 on replace, which keeps the stored Created. It returns the record as
// stored.
func (db *DB) PutSecret(ctx context.Context, r secrets.Record) (secrets.Record, error) {
	if err := db.writable(); err != nil {
		return secrets.Record{}, fmt.Errorf("postgres: put secret %q: %w", r.Name, err)
	}
	if err := secrets.CheckRecord(r); err != nil {
		return secrets.Record{}, fmt.Errorf("postgres: put secret: %w", err)
	}
	got, err := pgScanSecret(db.pool.QueryRow(ctx, `INSERT INTO secrets (`+pgSecretColumns+`) VALUES ($1, $2, $3, $4, $5, 1, $6, $7, $8)
ON CONFLICT (name) DO UPDATE SET description = excluded.description, key_id = excluded.key_id,
	nonce = excluded.nonce, ciphertext = excluded.ciphertext, version = secrets.version + 1,
	updated_at = excluded.updated_at, updated_by = excluded.updated_by
RETURNING `+pgSecretColumns,
		r.Name, r.Description, r.KeyID, r.Nonce, r.Ciphertext, pgTime(r.Created), pgTime(r.Updated), r.UpdatedBy))
	if err != nil {
		return secrets.Record{}, fmt.Errorf("postgres: put secret %q: %w", r.Name, err)
	}
	return got, nil
}

// Secret returns one secret, and false if there is none.
func (db *DB) Secret(ctx context.Context, name string) (secrets.Record, bool, error) {
	if secrets.CheckName(name) != nil {
		return secrets.Record{}, false, nil
	}
	r, err := pgScanSecret(db.pool.QueryRow(ctx, `SELECT `+pgSecretColumns+` FROM secrets WHERE name = $1`, name))
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return secrets.Record{}, false, nil
	case err != nil:
		return secrets.Record{}, false, fmt.Errorf("postgres: read secret %q: %w", name, err)
	}
	return r, true, nil
}

// Secrets returns every secret, by name as bytes.
func (db *DB) Secrets(ctx context.Context) ([]secrets.Record, error) {
	rows, err := db.pool.Query(ctx, `SELECT `+pgSecretColumns+` FROM secrets ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("postgres: read secrets: %w", err)
	}
	defer rows.Close()
	var rs []secrets.Record
	for rows.Next() {
		r, err := pgScanSecret(rows)
		if err != nil {
			return nil, fmt.Errorf("postgres: read secrets: %w", err)
		}
		rs = append(rs, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("postgres: read secrets: %w", err)
	}
	return rs, nil
}

// DeleteSecret removes a secret; the error wraps [secrets.ErrUnknownSecret] if there is
// none.
func (db *DB) DeleteSecret(ctx context.Context, name string) error {
	if err := db.writable(); err != nil {
		return fmt.Errorf("postgres: delete secret %q: %w", name, err)
	}
	if secrets.CheckName(name) != nil {
		return fmt.Errorf("postgres: delete secret: %w", secrets.ErrUnknownSecret) // no secret has this name
	}
	tag, err := db.pool.Exec(ctx, `DELETE FROM secrets WHERE name = $1`, name)
	if err != nil {
		return fmt.Errorf("postgres: delete secret %q: %w", name, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("postgres: delete secret %q: %w", name, secrets.ErrUnknownSecret)
	}
	return nil
}

// ReencryptSecret replaces the sealed value of name, sets Updated to at and increments
// Version, only if Version is still ifVersion, and reports whether it did. Under READ
// COMMITTED, an UPDATE that waited for another's row lock re-checks its WHERE clause on
// the row as committed, so of racers holding one version, one swaps.
func (db *DB) ReencryptSecret(ctx context.Context, name string, ifVersion int64, keyID string, nonce, ciphertext []byte, at time.Time) (bool, error) {
	if err := db.writable(); err != nil {
		return false, fmt.Errorf("postgres: re-encrypt secret %q: %w", name, err)
	}
	if err := secrets.CheckReencrypt(ifVersion, keyID, nonce, ciphertext, at); err != nil {
		return false, fmt.Errorf("postgres: re-encrypt secret %q: %w", name, err)
	}
	if secrets.CheckName(name) != nil {
		return false, nil // no secret has this name
	}
	tag, err := db.pool.Exec(ctx, `UPDATE secrets SET key_id = $3, nonce = $4, ciphertext = $5, version = version + 1, updated_at = $6
WHERE name = $1 AND version = $2`, name, ifVersion, keyID, nonce, ciphertext, pgTime(at))
	if err != nil {
		return false, fmt.Errorf("postgres: re-encrypt secret %q: %w", name, err)
	}
	return tag.RowsAffected() == 1, nil
}

// pgScanSecret reads one row of pgSecretColumns and checks it.
func pgScanSecret(row pgx.Row) (secrets.Record, error) {
	var (
		r                secrets.Record
		created, updated time.Time
	)
	if err := row.Scan(&r.Name, &r.Description, &r.KeyID, &r.Nonce, &r.Ciphertext, &r.Version, &created, &updated, &r.UpdatedBy); err != nil {
		return secrets.Record{}, err
	}
	r.Created, r.Updated = pgReadTime(&created), pgReadTime(&updated)
	if err := secrets.CheckStored(r); err != nil {
		return secrets.Record{}, err
	}
	return r, nil
}
