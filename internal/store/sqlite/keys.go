package sqlite

import (
	"cmp"
	"context"
	"database/sql"
	"fmt"
	"slices"
	"time"

	"github.com/chaperone-dev/chaperone/internal/store"
)

// ErrUnknownSigningKey is returned, wrapped, by [DB.RetireSigningKey] for an id no
// stored key has.
var ErrUnknownSigningKey = store.ErrUnknownSigningKey

// SigningKeyRecord is a token signing key as stored. Private is the raw private key:
// the database file is readable by its owner only (0600), and encryption at rest
// arrives with the secrets store.
type SigningKeyRecord = store.SigningKeyRecord

// SigningKeys returns every stored signing key, oldest first.
func (db *DB) SigningKeys(ctx context.Context) ([]SigningKeyRecord, error) {
	keys, err := db.querySigningKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("sqlite: read signing keys: %w", err)
	}
	slices.SortFunc(keys, func(a, b SigningKeyRecord) int {
		return cmp.Or(a.Created.Compare(b.Created), cmp.Compare(a.ID, b.ID))
	})
	return keys, nil
}

func (db *DB) querySigningKeys(ctx context.Context) ([]SigningKeyRecord, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT id, private, created_at, retired_at FROM signing_keys`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var keys []SigningKeyRecord
	for rows.Next() {
		var (
			k       SigningKeyRecord
			created string
			retired sql.NullString
		)
		if err := rows.Scan(&k.ID, &k.Private, &created, &retired); err != nil {
			return nil, err
		}
		var err error
		if k.Created, err = parseTime(created); err != nil {
			return nil, fmt.Errorf("signing key %q: created_at: %w", k.ID, err)
		}
		if retired.Valid {
			if k.Retired, err = parseTime(retired.String); err != nil {
				return nil, fmt.Errorf("signing key %q: retired_at: %w", k.ID, err)
			}
		}
		keys = append(keys, k)
	}
	return keys, rows.Err()
}

// PutSigningKey stores a new key. ID and Private are required; an id already stored is
// an error.
func (db *DB) PutSigningKey(ctx context.Context, k SigningKeyRecord) error {
	if k.ID == "" || len(k.Private) == 0 {
		return fmt.Errorf("sqlite: put signing key %q: id and private key are required", k.ID)
	}
	w, err := db.writer()
	if err != nil {
		return fmt.Errorf("sqlite: put signing key %q: %w", k.ID, err)
	}
	var retired any // NULL while the key signs
	if !k.Retired.IsZero() {
		retired = formatTime(k.Retired)
	}
	res, err := w.ExecContext(ctx, `INSERT INTO signing_keys (id, private, created_at, retired_at) VALUES (?, ?, ?, ?)
ON CONFLICT (id) DO NOTHING`, k.ID, k.Private, formatTime(k.Created), retired)
	if err != nil {
		return fmt.Errorf("sqlite: put signing key %q: %w", k.ID, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("sqlite: put signing key %q: %w", k.ID, err)
	} else if n == 0 {
		return fmt.Errorf("sqlite: put signing key %q: a key with this id is already stored", k.ID)
	}
	return nil
}

// RetireSigningKey marks a key retired at at: it no longer signs, but still verifies
// the tokens it signed until they expire. Retiring a retired key keeps its first
// retirement time. It returns an error wrapping [ErrUnknownSigningKey] for an unknown id.
func (db *DB) RetireSigningKey(ctx context.Context, id string, at time.Time) error {
	w, err := db.writer()
	if err != nil {
		return fmt.Errorf("sqlite: retire signing key %q: %w", id, err)
	}
	res, err := w.ExecContext(ctx, `UPDATE signing_keys SET retired_at = coalesce(retired_at, ?) WHERE id = ?`, formatTime(at), id)
	if err != nil {
		return fmt.Errorf("sqlite: retire signing key %q: %w", id, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("sqlite: retire signing key %q: %w", id, err)
	} else if n == 0 {
		return fmt.Errorf("sqlite: retire signing key %q: %w", id, ErrUnknownSigningKey)
	}
	return nil
}
