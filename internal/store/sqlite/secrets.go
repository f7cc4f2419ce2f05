package sqlite

// Table secrets (migration 0007) backs [secrets.Store]: sealed upstream credentials.
// Every method is one statement, on the write connection or the read pool; SQLite's
// database-wide write lock makes PutSecret's version increment and ReencryptSecret's
// compare-and-swap atomic. Times are integer microseconds since the Unix epoch.
//
// Records are checked before anything is written with the checks of package secrets,
// which the postgres store uses too, so that both refuse the same records with the same
// errors; records read back are checked again, so that a damaged row is reported rather
// than used. Lookups by a name no secret could have answer "none" without asking the
// database. Errors name secrets, never a nonce or a ciphertext.

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/chaperone-dev/chaperone/internal/secrets"
)

var _ secrets.Store = (*DB)(nil)

const secretColumns = `name, description, key_id, nonce, ciphertext, version, created_us, updated_us, updated_by`

// PutSecret creates or replaces the secret r.Name: version 1 on create, the stored
// version + 1 on replace, which keeps the stored Created. It returns the record as
// stored.
func (db *DB) PutSecret(ctx context.Context, r secrets.Record) (secrets.Record, error) {
	w, err := db.writer()
	if err != nil {
		return secrets.Record{}, fmt.Errorf("sqlite: put secret %q: %w", r.Name, err)
	}
	if err := secrets.CheckRecord(r); err != nil {
		return secrets.Record{}, fmt.Errorf("sqlite: put secret: %w", err)
	}
	got, err := scanSecret(w.QueryRowContext(ctx, `INSERT INTO secrets (`+secretColumns+`) VALUES (?, ?, ?, ?, ?, 1, ?, ?, ?)
ON CONFLICT (name) DO UPDATE SET description = excluded.description, key_id = excluded.key_id,
	nonce = excluded.nonce, ciphertext = excluded.ciphertext, version = secrets.version + 1,
	updated_us = excluded.updated_us, updated_by = excluded.updated_by
RETURNING `+secretColumns,
		r.Name, r.Description, r.KeyID, r.Nonce, r.Ciphertext, secretMicros(r.Created), secretMicros(r.Updated), r.UpdatedBy))
	if err != nil {
		return secrets.Record{}, fmt.Errorf("sqlite: put secret %q: %w", r.Name, err)
	}
	return got, nil
}

// Secret returns one secret, and false if there is none.
func (db *DB) Secret(ctx context.Context, name string) (secrets.Record, bool, error) {
	if secrets.CheckName(name) != nil {
		return secrets.Record{}, false, nil
	}
	r, err := scanSecret(db.r.QueryRowContext(ctx, `SELECT `+secretColumns+` FROM secrets WHERE name = ?`, name))
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return secrets.Record{}, false, nil
	case err != nil:
		return secrets.Record{}, false, fmt.Errorf("sqlite: read secret %q: %w", name, err)
	}
	return r, true, nil
}

// Secrets returns every secret, by name as bytes.
func (db *DB) Secrets(ctx context.Context) ([]secrets.Record, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT `+secretColumns+` FROM secrets ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("sqlite: read secrets: %w", err)
	}
	defer rows.Close()
	var rs []secrets.Record
	for rows.Next() {
		r, err := scanSecret(rows)
		if err != nil {
			return nil, fmt.Errorf("sqlite: read secrets: %w", err)
		}
		rs = append(rs, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: read secrets: %w", err)
	}
	return rs, nil
}

// DeleteSecret removes a secret; the error wraps [secrets.ErrUnknownSecret] if there is
// none.
func (db *DB) DeleteSecret(ctx context.Context, name string) error {
	w, err := db.writer()
	if err != nil {
		return fmt.Errorf("sqlite: delete secret %q: %w", name, err)
	}
	if secrets.CheckName(name) != nil {
		return fmt.Errorf("sqlite: delete secret: %w", secrets.ErrUnknownSecret) // no secret has this name
	}
	res, err := w.ExecContext(ctx, `DELETE FROM secrets WHERE name = ?`, name)
	if err != nil {
		return fmt.Errorf("sqlite: delete secret %q: %w", name, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("sqlite: delete secret %q: %w", name, err)
	} else if n == 0 {
		return fmt.Errorf("sqlite: delete secret %q: %w", name, secrets.ErrUnknownSecret)
	}
	return nil
}

// ReencryptSecret replaces the sealed value of name, sets Updated to at and increments
// Version, only if Version is still ifVersion, and reports whether it did.
func (db *DB) ReencryptSecret(ctx context.Context, name string, ifVersion int64, keyID string, nonce, ciphertext []byte, at time.Time) (bool, error) {
	w, err := db.writer()
	if err != nil {
		return false, fmt.Errorf("sqlite: re-encrypt secret %q: %w", name, err)
	}
	if err := secrets.CheckReencrypt(ifVersion, keyID, nonce, ciphertext, at); err != nil {
		return false, fmt.Errorf("sqlite: re-encrypt secret %q: %w", name, err)
	}
	if secrets.CheckName(name) != nil {
		return false, nil // no secret has this name
	}
	res, err := w.ExecContext(ctx, `UPDATE secrets SET key_id = ?, nonce = ?, ciphertext = ?, version = version + 1, updated_us = ?
WHERE name = ? AND version = ?`, keyID, nonce, ciphertext, secretMicros(at), name, ifVersion)
	if err != nil {
		return false, fmt.Errorf("sqlite: re-encrypt secret %q: %w", name, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("sqlite: re-encrypt secret %q: %w", name, err)
	}
	return n == 1, nil
}

// secretMicros is how the secrets table stores a time.
func secretMicros(t time.Time) int64 { return t.UnixMicro() }

// scanSecret reads one row of secretColumns and checks it.
func scanSecret(s scanner) (secrets.Record, error) {
	var (
		r                secrets.Record
		created, updated int64
	)
	if err := s.Scan(&r.Name, &r.Description, &r.KeyID, &r.Nonce, &r.Ciphertext, &r.Version, &created, &updated, &r.UpdatedBy); err != nil {
		return secrets.Record{}, err
	}
	r.Created, r.Updated = time.UnixMicro(created).UTC(), time.UnixMicro(updated).UTC()
	if err := secrets.CheckStored(r); err != nil {
		return secrets.Record{}, err
	}
	return r, nil
}
