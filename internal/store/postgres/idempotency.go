package postgres

// Table idempotency_keys backs [contain.IdemStore]: one row per (agent, key). A claim is
// an INSERT ... ON CONFLICT DO NOTHING: of two callers, in one replica or two, the
// primary key lets exactly one create the row; the other waits for the first's
// transaction and then reads its row.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/chaperone-dev/chaperone/internal/contain"
)

// pgIdemClaims bounds the attempts of CreateIdem when the record it found is deleted
// (expired) before it could read it.
const pgIdemClaims = 3

const pgIdemColumns = `agent, key, tool, args_hash, request_id, state, result, result_hash, created_at, finished_at`

// CreateIdem inserts rec in state running unless a record for (rec.Agent, rec.Key)
// exists, in which case it returns that record and false. CreatedAt is kept to the
// microsecond.
func (db *DB) CreateIdem(ctx context.Context, rec contain.IdemRecord) (existing *contain.IdemRecord, created bool, err error) {
	defer func() {
		if err != nil {
			err = fmt.Errorf("postgres: create idempotency record %q/%q: %w", rec.Agent, rec.Key, err)
		}
	}()
	if rec.Agent == "" || rec.Key == "" {
		return nil, false, errors.New("agent and key are required")
	}
	if err := db.writable(); err != nil {
		return nil, false, err
	}
	for range pgIdemClaims {
		tag, err := db.pool.Exec(ctx, `INSERT INTO idempotency_keys (`+pgIdemColumns+`)
VALUES ($1, $2, $3, $4, $5, 'running', NULL, '', $6, NULL)
ON CONFLICT (agent, key) DO NOTHING`,
			rec.Agent, rec.Key, rec.Tool, rec.ArgsHash, rec.RequestID, pgTime(rec.CreatedAt))
		if err != nil {
			return nil, false, err
		}
		if tag.RowsAffected() == 1 {
			return nil, true, nil
		}
		// A new statement, so a new snapshot: it sees the row the conflict waited for.
		existing, err = pgScanIdem(db.pool.QueryRow(ctx, `SELECT `+pgIdemColumns+` FROM idempotency_keys
WHERE agent = $1 AND key = $2`, rec.Agent, rec.Key))
		if errors.Is(err, pgx.ErrNoRows) {
			continue // deleted in between: claim again
		}
		if err != nil {
			return nil, false, err
		}
		return existing, false, nil
	}
	return nil, false, fmt.Errorf("the record was deleted %d times while it was being claimed", pgIdemClaims)
}

// FinishIdem moves the running record for (agent, key) to state, done or unknown. It
// fails if there is no running record, so a finished outcome is never overwritten.
func (db *DB) FinishIdem(ctx context.Context, agent, key string, state contain.IdemState, result json.RawMessage, resultHash string, at time.Time) error {
	if state != contain.IdemDone && state != contain.IdemUnknown {
		return fmt.Errorf("postgres: finish idempotency record %q/%q: state %q, want done or unknown", agent, key, state)
	}
	if err := db.writable(); err != nil {
		return fmt.Errorf("postgres: finish idempotency record %q/%q: %w", agent, key, err)
	}
	var blob []byte // NULL: the result was not kept
	if result != nil {
		blob = []byte(result)
	}
	tag, err := db.pool.Exec(ctx, `UPDATE idempotency_keys SET state = $1, result = $2, result_hash = $3, finished_at = $4
WHERE agent = $5 AND key = $6 AND state = 'running'`,
		string(state), blob, resultHash, pgTime(at), agent, key)
	if err != nil {
		return fmt.Errorf("postgres: finish idempotency record %q/%q: %w", agent, key, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("postgres: finish idempotency record %q/%q: no running record", agent, key)
	}
	return nil
}

// DeleteIdem deletes the record for (agent, key), if any.
func (db *DB) DeleteIdem(ctx context.Context, agent, key string) error {
	if err := db.writable(); err != nil {
		return fmt.Errorf("postgres: delete idempotency record %q/%q: %w", agent, key, err)
	}
	if _, err := db.pool.Exec(ctx, `DELETE FROM idempotency_keys WHERE agent = $1 AND key = $2`, agent, key); err != nil {
		return fmt.Errorf("postgres: delete idempotency record %q/%q: %w", agent, key, err)
	}
	return nil
}

// ExpireIdem deletes the records created before before, whatever their state, and
// returns how many it deleted.
func (db *DB) ExpireIdem(ctx context.Context, before time.Time) (int, error) {
	if err := db.writable(); err != nil {
		return 0, fmt.Errorf("postgres: expire idempotency records: %w", err)
	}
	tag, err := db.pool.Exec(ctx, `DELETE FROM idempotency_keys WHERE created_at < $1`, pgTime(before))
	if err != nil {
		return 0, fmt.Errorf("postgres: expire idempotency records: %w", err)
	}
	return int(tag.RowsAffected()), nil
}

// pgScanIdem reads one row of pgIdemColumns.
func pgScanIdem(row pgx.Row) (*contain.IdemRecord, error) {
	var (
		r        contain.IdemRecord
		state    string
		result   []byte
		created  time.Time
		finished *time.Time
	)
	if err := row.Scan(&r.Agent, &r.Key, &r.Tool, &r.ArgsHash, &r.RequestID, &state, &result, &r.ResultHash,
		&created, &finished); err != nil {
		return nil, err
	}
	r.State = contain.IdemState(state)
	if result != nil {
		r.Result = json.RawMessage(result)
	}
	r.CreatedAt, r.FinishedAt = pgReadTime(&created), pgReadTime(finished)
	return &r, nil
}
