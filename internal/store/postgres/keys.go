package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/chaperone-dev/chaperone/internal/store"
)

// SigningKeys returns every stored signing key, oldest first (ties by id).
func (db *DB) SigningKeys(ctx context.Context) ([]store.SigningKeyRecord, error) {
	rows, err := db.pool.Query(ctx, `SELECT id, private, created_at, retired_at FROM signing_keys ORDER BY created_at, id`)
	if err != nil {
		return nil, fmt.Errorf("postgres: read signing keys: %w", err)
	}
	defer rows.Close()
	var keys []store.SigningKeyRecord
	for rows.Next() {
		var (
			k       store.SigningKeyRecord
			created time.Time
			retired *time.Time
		)
		if err := rows.Scan(&k.ID, &k.Private, &created, &retired); err != nil {
			return nil, fmt.Errorf("postgres: read signing keys: %w", err)
		}
		k.Created, k.Retired = pgReadTime(&created), pgReadTime(retired)
		keys = append(keys, k)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("postgres: read signing keys: %w", err)
	}
	return keys, nil
}

// PutSigningKey stores a new key. ID and Private are required; an id already stored is
// an error. Replicas are told (TopicKey).
func (db *DB) PutSigningKey(ctx context.Context, k store.SigningKeyRecord) error {
	if k.ID == "" || len(k.Private) == 0 {
		return fmt.Errorf("postgres: put signing key %q: id and private key are required", k.ID)
	}
	n, err := db.pgWrite(ctx, TopicKey, "", `WITH w AS (
	INSERT INTO signing_keys (id, private, created_at, retired_at) VALUES ($3, $4, $5, $6)
	ON CONFLICT (id) DO NOTHING RETURNING 1
) SELECT pg_notify($1, $2) FROM w`, k.ID, k.Private, pgTime(k.Created), pgNullTime(k.Retired))
	if err != nil {
		return fmt.Errorf("postgres: put signing key %q: %w", k.ID, err)
	}
	if n == 0 {
		return fmt.Errorf("postgres: put signing key %q: a key with this id is already stored", k.ID)
	}
	return nil
}

// RetireSigningKey marks a key retired at at: it no longer signs, but still verifies
// the tokens it signed until they expire. Retiring a retired key keeps its first
// retirement time. It returns an error wrapping [store.ErrUnknownSigningKey] for an
// unknown id. Replicas are told (TopicKey).
func (db *DB) RetireSigningKey(ctx context.Context, id string, at time.Time) error {
	n, err := db.pgWrite(ctx, TopicKey, "", `WITH w AS (
	UPDATE signing_keys SET retired_at = coalesce(retired_at, $3) WHERE id = $4 RETURNING 1
) SELECT pg_notify($1, $2) FROM w`, pgTime(at), id)
	if err != nil {
		return fmt.Errorf("postgres: retire signing key %q: %w", id, err)
	}
	if n == 0 {
		return fmt.Errorf("postgres: retire signing key %q: %w", id, store.ErrUnknownSigningKey)
	}
	return nil
}
