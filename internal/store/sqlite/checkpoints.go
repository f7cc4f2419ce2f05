package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/chaperone-dev/chaperone/internal/audit"
)

var _ audit.CheckpointStore = (*DB)(nil)

// MaxCheckpoints is the most checkpoints Checkpoints returns in one call.
const MaxCheckpoints = 10_000

// SaveCheckpoint stores c; storing the same checkpoint twice is not an error, a different
// one for a stored Seq is.
func (db *DB) SaveCheckpoint(ctx context.Context, c audit.Checkpoint) error {
	w, err := db.writer()
	if err != nil {
		return err
	}
	rec, err := c.MarshalJSON()
	if err != nil {
		return err
	}
	res, err := w.ExecContext(ctx, `INSERT INTO audit_checkpoints (seq, record) VALUES (?, ?) ON CONFLICT (seq) DO NOTHING`, c.Seq, string(rec))
	if err != nil {
		return fmt.Errorf("sqlite: save checkpoint at event %d: %w", c.Seq, err)
	}
	if n, _ := res.RowsAffected(); n == 1 {
		return nil
	}
	var have string
	if err := w.QueryRowContext(ctx, `SELECT record FROM audit_checkpoints WHERE seq = ?`, c.Seq).Scan(&have); err != nil {
		return fmt.Errorf("sqlite: save checkpoint at event %d: %w", c.Seq, err)
	}
	if have != string(rec) {
		old, err := audit.ParseCheckpoint([]byte(have))
		if err != nil || old.Head != c.Head {
			return fmt.Errorf("sqlite: save checkpoint at event %d: a different checkpoint for that event is stored", c.Seq)
		}
	}
	return nil
}

// LatestCheckpoint returns the checkpoint with the highest Seq.
func (db *DB) LatestCheckpoint(ctx context.Context) (audit.Checkpoint, bool, error) {
	cps, err := db.queryCheckpoints(ctx, `SELECT seq, record FROM audit_checkpoints ORDER BY seq DESC LIMIT 1`)
	if err != nil || len(cps) == 0 {
		return audit.Checkpoint{}, false, err
	}
	return cps[0], true, nil
}

// Checkpoints returns at most limit (and at most [MaxCheckpoints]) checkpoints with Seq
// greater than afterSeq, in ascending order.
func (db *DB) Checkpoints(ctx context.Context, afterSeq int64, limit int) ([]audit.Checkpoint, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("sqlite: list checkpoints: limit %d, want at least 1", limit)
	}
	return db.queryCheckpoints(ctx, `SELECT seq, record FROM audit_checkpoints WHERE seq > ? ORDER BY seq LIMIT ?`, afterSeq, min(limit, MaxCheckpoints))
}

// Checkpoint returns the checkpoint at seq.
func (db *DB) Checkpoint(ctx context.Context, seq int64) (audit.Checkpoint, bool, error) {
	cps, err := db.queryCheckpoints(ctx, `SELECT seq, record FROM audit_checkpoints WHERE seq = ?`, seq)
	if err != nil || len(cps) == 0 {
		return audit.Checkpoint{}, false, err
	}
	return cps[0], true, nil
}

func (db *DB) queryCheckpoints(ctx context.Context, query string, args ...any) ([]audit.Checkpoint, error) {
	rows, err := db.SQL().QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: read checkpoints: %w", err)
	}
	defer rows.Close()
	var out []audit.Checkpoint
	for rows.Next() {
		var seq int64
		var rec string
		if err := rows.Scan(&seq, &rec); err != nil {
			return nil, fmt.Errorf("sqlite: read checkpoints: %w", err)
		}
		c, err := audit.ParseCheckpoint([]byte(rec))
		if err == nil && c.Seq != seq {
			err = fmt.Errorf("row %d holds the checkpoint of event %d", seq, c.Seq)
		}
		if err != nil {
			return nil, fmt.Errorf("sqlite: checkpoint row %d: %w", seq, err)
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// prunePage is how many events PruneEvents rewrites per transaction.
const prunePage = 500

// PruneEvents replaces with tombstones ([audit.Tombstone]) the events with Seq at most
// upTo — the newest signed checkpoint — for which expired returns true, reading only
// events of the given kinds (nil: every kind). It commits a page at a time and returns
// how many it pruned. A record is replaced only if it is still what was read, so a
// concurrent writer cannot be overwritten.
func (db *DB) PruneEvents(ctx context.Context, upTo int64, kinds []string, expired func(*audit.Event) bool) (int64, error) {
	w, err := db.writer()
	if err != nil {
		return 0, err
	}
	query := `SELECT seq, event FROM audit_events WHERE seq > ? AND seq <= ? AND event ->> '$.pruned' IS NULL`
	args := []any{nil, upTo}
	if kinds != nil {
		if len(kinds) == 0 {
			return 0, nil
		}
		query += ` AND event ->> '$.kind' IN (?` + strings.Repeat(", ?", len(kinds)-1) + `)`
		for _, k := range kinds {
			args = append(args, k)
		}
	}
	query += ` ORDER BY seq LIMIT ` + fmt.Sprint(prunePage)
	var pruned, after int64
	for {
		args[0] = after
		events, err := db.queryEvents(ctx, w, query, args...)
		if err != nil {
			return pruned, fmt.Errorf("sqlite: prune audit events after %d: %w", after, err)
		}
		if len(events) == 0 {
			return pruned, nil
		}
		n, err := db.tombstone(ctx, w, events, expired)
		pruned += n
		if err != nil {
			return pruned, err
		}
		after = events[len(events)-1].Seq
	}
}

// tombstone rewrites the expired events of one page in one transaction.
func (db *DB) tombstone(ctx context.Context, w *sql.DB, events []audit.Event, expired func(*audit.Event) bool) (n int64, err error) {
	tx, err := w.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("sqlite: prune: %w", err)
	}
	defer func() {
		if err != nil {
			tx.Rollback()
			n = 0
		}
	}()
	for i := range events {
		e := &events[i]
		if !expired(e) {
			continue
		}
		old, err := e.MarshalRecord()
		if err != nil {
			return 0, err
		}
		ts := audit.Tombstone(*e)
		rec, err := ts.MarshalRecord()
		if err != nil {
			return 0, err
		}
		res, err := tx.ExecContext(ctx, `UPDATE audit_events SET event = ? WHERE seq = ? AND event = ?`, string(rec), e.Seq, string(old))
		if err != nil {
			return 0, fmt.Errorf("sqlite: prune event %d: %w", e.Seq, err)
		}
		if k, _ := res.RowsAffected(); k != 1 {
			return 0, fmt.Errorf("sqlite: prune event %d: %w", e.Seq, errors.New("the record changed while it was being pruned"))
		}
		n++
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("sqlite: prune: %w", err)
	}
	return n, nil
}
