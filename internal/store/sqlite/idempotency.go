package sqlite

// Table idempotency_keys backs [contain.IdemStore]: one row per (agent, key). A claim is
// one write transaction that inserts unless the row exists and then reads the row, so
// of two callers, in this process or another sharing the file, exactly one creates it.
// Times use [approvalTime], whose text order is time order, so expiry compares text.

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/chaperone-dev/chaperone/internal/contain"
)

var _ contain.IdemStore = (*DB)(nil)

// CreateIdem inserts rec in state running unless a record for (rec.Agent, rec.Key)
// exists, in which case it returns that record and false.
func (db *DB) CreateIdem(ctx context.Context, rec contain.IdemRecord) (existing *contain.IdemRecord, created bool, err error) {
	defer func() {
		if err != nil {
			err = fmt.Errorf("sqlite: create idempotency record %q/%q: %w", rec.Agent, rec.Key, err)
		}
	}()
	if rec.Agent == "" || rec.Key == "" {
		return nil, false, errors.New("agent and key are required")
	}
	w, err := db.writer()
	if err != nil {
		return nil, false, err
	}
	tx, err := w.BeginTx(ctx, nil) // IMMEDIATE: no other writer between insert and read
	if err != nil {
		return nil, false, err
	}
	defer tx.Rollback() // after Commit, a no-op
	res, err := tx.ExecContext(ctx, `INSERT INTO idempotency_keys
	(agent, key, tool, args_hash, request_id, state, result, result_hash, created_at, finished_at)
VALUES (?, ?, ?, ?, ?, 'running', NULL, '', ?, NULL)
ON CONFLICT (agent, key) DO NOTHING`,
		rec.Agent, rec.Key, rec.Tool, rec.ArgsHash, rec.RequestID, approvalTime(rec.CreatedAt))
	if err != nil {
		return nil, false, err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return nil, false, err
	}
	if n == 1 {
		if err := tx.Commit(); err != nil {
			return nil, false, err
		}
		return nil, true, nil
	}
	existing, err = scanIdem(tx.QueryRowContext(ctx, `SELECT agent, key, tool, args_hash, request_id, state, result,
	result_hash, created_at, finished_at FROM idempotency_keys WHERE agent = ? AND key = ?`, rec.Agent, rec.Key))
	if err != nil {
		return nil, false, err
	}
	if err := tx.Commit(); err != nil {
		return nil, false, err
	}
	return existing, false, nil
}

// FinishIdem moves the running record for (agent, key) to state, done or unknown. It
// fails if there is no running record, so a finished outcome is never overwritten.
func (db *DB) FinishIdem(ctx context.Context, agent, key string, state contain.IdemState, result json.RawMessage, resultHash string, at time.Time) error {
	if state != contain.IdemDone && state != contain.IdemUnknown {
		return fmt.Errorf("sqlite: finish idempotency record %q/%q: state %q, want done or unknown", agent, key, state)
	}
	w, err := db.writer()
	if err != nil {
		return fmt.Errorf("sqlite: finish idempotency record %q/%q: %w", agent, key, err)
	}
	var blob any // NULL: the result was not kept
	if result != nil {
		blob = []byte(result)
	}
	res, err := w.ExecContext(ctx, `UPDATE idempotency_keys SET state = ?, result = ?, result_hash = ?, finished_at = ?
WHERE agent = ? AND key = ? AND state = 'running'`,
		string(state), blob, resultHash, approvalTime(at), agent, key)
	if err != nil {
		return fmt.Errorf("sqlite: finish idempotency record %q/%q: %w", agent, key, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("sqlite: finish idempotency record %q/%q: %w", agent, key, err)
	} else if n == 0 {
		return fmt.Errorf("sqlite: finish idempotency record %q/%q: no running record", agent, key)
	}
	return nil
}

// DeleteIdem deletes the record for (agent, key), if any.
func (db *DB) DeleteIdem(ctx context.Context, agent, key string) error {
	w, err := db.writer()
	if err != nil {
		return fmt.Errorf("sqlite: delete idempotency record %q/%q: %w", agent, key, err)
	}
	if _, err := w.ExecContext(ctx, `DELETE FROM idempotency_keys WHERE agent = ? AND key = ?`, agent, key); err != nil {
		return fmt.Errorf("sqlite: delete idempotency record %q/%q: %w", agent, key, err)
	}
	return nil
}

// ExpireIdem deletes the records created before before, whatever their state, and
// returns how many it deleted.
func (db *DB) ExpireIdem(ctx context.Context, before time.Time) (int, error) {
	w, err := db.writer()
	if err != nil {
		return 0, fmt.Errorf("sqlite: expire idempotency records: %w", err)
	}
	res, err := w.ExecContext(ctx, `DELETE FROM idempotency_keys WHERE created_at < ?`, approvalTime(before))
	if err != nil {
		return 0, fmt.Errorf("sqlite: expire idempotency records: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("sqlite: expire idempotency records: %w", err)
	}
	return int(n), nil
}

// scanIdem reads one row of idempotency_keys, in column order.
func scanIdem(s scanner) (*contain.IdemRecord, error) {
	var (
		r        contain.IdemRecord
		state    string
		result   []byte
		created  string
		finished sql.NullString
	)
	if err := s.Scan(&r.Agent, &r.Key, &r.Tool, &r.ArgsHash, &r.RequestID, &state, &result, &r.ResultHash,
		&created, &finished); err != nil {
		return nil, err
	}
	r.State = contain.IdemState(state)
	if result != nil {
		r.Result = json.RawMessage(result)
	}
	var err error
	if r.CreatedAt, err = parseTime(created); err != nil {
		return nil, fmt.Errorf("created_at: %w", err)
	}
	if finished.Valid {
		if r.FinishedAt, err = parseTime(finished.String); err != nil {
			return nil, fmt.Errorf("finished_at: %w", err)
		}
	}
	return &r, nil
}
