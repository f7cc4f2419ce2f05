package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"

	"github.com/chaperone-dev/chaperone/internal/audit"
)

// MaxCheckpoints is the most checkpoints Checkpoints returns in one call.
const MaxCheckpoints = 10_000

// SaveCheckpoint stores c; storing the same checkpoint twice is not an error, a different
// one for a stored Seq is.
func (db *DB) SaveCheckpoint(ctx context.Context, c audit.Checkpoint) error {
	if err := db.writable(); err != nil {
		return fmt.Errorf("postgres: save checkpoint at event %d: %w", c.Seq, err)
	}
	rec, err := c.MarshalJSON()
	if err != nil {
		return err
	}
	tag, err := db.pool.Exec(ctx, `INSERT INTO audit_checkpoints (seq, record) VALUES ($1, $2) ON CONFLICT (seq) DO NOTHING`, c.Seq, string(rec))
	if err != nil {
		return fmt.Errorf("postgres: save checkpoint at event %d: %w", c.Seq, err)
	}
	if tag.RowsAffected() == 1 {
		return nil
	}
	var have string
	if err := db.pool.QueryRow(ctx, `SELECT record FROM audit_checkpoints WHERE seq = $1`, c.Seq).Scan(&have); err != nil {
		return fmt.Errorf("postgres: save checkpoint at event %d: %w", c.Seq, err)
	}
	if have != string(rec) {
		old, err := audit.ParseCheckpoint([]byte(have))
		if err != nil || old.Head != c.Head {
			return fmt.Errorf("postgres: save checkpoint at event %d: a different checkpoint for that event is stored", c.Seq)
		}
	}
	return nil
}

// LatestCheckpoint returns the checkpoint with the highest Seq.
func (db *DB) LatestCheckpoint(ctx context.Context) (audit.Checkpoint, bool, error) {
	cps, err := db.pgQueryCheckpoints(ctx, `SELECT seq, record FROM audit_checkpoints ORDER BY seq DESC LIMIT 1`)
	if err != nil || len(cps) == 0 {
		return audit.Checkpoint{}, false, err
	}
	return cps[0], true, nil
}

// Checkpoints returns at most limit (and at most [MaxCheckpoints]) checkpoints with Seq
// greater than afterSeq, in ascending order.
func (db *DB) Checkpoints(ctx context.Context, afterSeq int64, limit int) ([]audit.Checkpoint, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("postgres: list checkpoints: limit %d, want at least 1", limit)
	}
	return db.pgQueryCheckpoints(ctx, `SELECT seq, record FROM audit_checkpoints WHERE seq > $1 ORDER BY seq LIMIT $2`, afterSeq, min(limit, MaxCheckpoints))
}

// Checkpoint returns the checkpoint at seq.
func (db *DB) Checkpoint(ctx context.Context, seq int64) (audit.Checkpoint, bool, error) {
	cps, err := db.pgQueryCheckpoints(ctx, `SELECT seq, record FROM audit_checkpoints WHERE seq = $1`, seq)
	if err != nil || len(cps) == 0 {
		return audit.Checkpoint{}, false, err
	}
	return cps[0], true, nil
}

func (db *DB) pgQueryCheckpoints(ctx context.Context, query string, args ...any) ([]audit.Checkpoint, error) {
	rows, err := db.pool.Query(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("postgres: read checkpoints: %w", err)
	}
	defer rows.Close()
	var out []audit.Checkpoint
	for rows.Next() {
		var seq int64
		var rec []byte
		if err := rows.Scan(&seq, &rec); err != nil {
			return nil, fmt.Errorf("postgres: read checkpoints: %w", err)
		}
		c, err := audit.ParseCheckpoint(rec)
		if err == nil && c.Seq != seq {
			err = fmt.Errorf("row %d holds the checkpoint of event %d", seq, c.Seq)
		}
		if err != nil {
			return nil, fmt.Errorf("postgres: checkpoint row %d: %w", seq, err)
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("postgres: read checkpoints: %w", err)
	}
	return out, nil
}

// pgPrunePage is how many events PruneEvents reads, and rewrites in one transaction, at
// a time.
const pgPrunePage = 500

// PruneEvents replaces with tombstones ([audit.Tombstone]) the events with Seq at most
// upTo — the newest signed checkpoint — for which expired returns true, reading only
// events of the given kinds (nil: every kind) that are not tombstones already. It
// commits a page at a time and returns how many it pruned. A record is replaced only if
// it is still what was read, so a concurrent writer cannot be overwritten.
func (db *DB) PruneEvents(ctx context.Context, upTo int64, kinds []string, expired func(*audit.Event) bool) (int64, error) {
	if err := db.writable(); err != nil {
		return 0, fmt.Errorf("postgres: prune audit events: %w", err)
	}
	query := `SELECT seq, event FROM audit_events WHERE seq > $1 AND seq <= $2 AND NOT pruned`
	args := []any{int64(0), upTo}
	if kinds != nil {
		if len(kinds) == 0 {
			return 0, nil
		}
		query += ` AND kind = ANY($3::text[])`
		args = append(args, kinds)
	}
	query += fmt.Sprintf(` ORDER BY seq LIMIT %d`, pgPrunePage)
	var pruned, after int64
	for {
		args[0] = after
		events, err := db.pgQueryEvents(ctx, query, args...)
		if err != nil {
			return pruned, fmt.Errorf("postgres: prune audit events after %d: %w", after, err)
		}
		if len(events) == 0 {
			return pruned, nil
		}
		n, err := db.pgTombstone(ctx, events, expired)
		pruned += n
		if err != nil {
			return pruned, err
		}
		after = events[len(events)-1].Seq
	}
}

// pgTombstone rewrites the expired events of one page in one transaction: all of them,
// or none if one changed since it was read.
func (db *DB) pgTombstone(ctx context.Context, events []audit.Event, expired func(*audit.Event) bool) (int64, error) {
	var seqs []int64
	var news, olds []string
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
		seqs, news, olds = append(seqs, e.Seq), append(news, string(rec)), append(olds, string(old))
	}
	if len(seqs) == 0 {
		return 0, nil
	}
	tx, err := db.pgBegin(ctx)
	if err != nil {
		return 0, fmt.Errorf("postgres: prune: %w", err)
	}
	defer tx.end()
	var done []int64
	err = tx.send(ctx, false, func(b *pgx.Batch) {
		b.Queue(`UPDATE audit_events AS a SET event = v.new, pruned = true
FROM unnest($1::bigint[], $2::text[], $3::text[]) AS v(seq, new, old)
WHERE a.seq = v.seq AND a.event = v.old
RETURNING a.seq`, seqs, news, olds).Query(func(rows pgx.Rows) error {
			var err error
			done, err = pgx.CollectRows(rows, pgx.RowTo[int64])
			return err
		})
	})
	if err != nil {
		return 0, fmt.Errorf("postgres: prune events %d to %d: %w", seqs[0], seqs[len(seqs)-1], err)
	}
	if len(done) != len(seqs) {
		for _, s := range seqs {
			if !slices.Contains(done, s) {
				return 0, fmt.Errorf("postgres: prune event %d: %w", s, errors.New("the record changed while it was being pruned"))
			}
		}
	}
	if err := tx.send(ctx, true, func(*pgx.Batch) {}); err != nil {
		return 0, fmt.Errorf("postgres: prune: %w", err)
	}
	return int64(len(seqs)), nil
}
