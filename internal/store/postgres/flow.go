package postgres

// Flow journals shared by replicas: *DB is a flow.Journal (tables flow_heads and
// flow_entries, migration 0003).
//
// An append is one statement: it upserts the key's head row, which locks it, taking the
// next value of flow_seq after the lock is held, and inserts the entry with the seq and
// prev the head returned. Appends to one key therefore commit in seq order, and a reader
// that sees an entry sees every entry before it. Deleting a head (end, expiry) deletes
// its entries by the foreign key's cascade, which runs after the head's lock is granted
// and so also deletes an entry appended while the delete waited.

import (
	"context"
	"crypto/sha256"
	"fmt"
	"time"

	"github.com/chaperone-dev/chaperone/internal/flow"
)

var _ flow.Journal = (*DB)(nil)

const (
	// sjMaxKey is the longest flow key stored as itself; a longer one is stored as its
	// SHA-256, so that no key is too long for an index entry.
	sjMaxKey = 512
	// sjMaxSince bounds the entries one read of a journal returns.
	sjMaxSince = 1000
	// sjExpireFlowBatch bounds the journals one expiry statement deletes, so that each
	// statement, with its cascade, stays short.
	sjExpireFlowBatch = 200
)

// sjKey is how a flow key is stored: 0x00 and the key, or, if longer than sjMaxKey, 0x01
// and its SHA-256. The tag keeps a short key from ever equalling a long key's digest.
func sjKey(k string) []byte {
	if len(k) <= sjMaxKey {
		b := make([]byte, 1+len(k))
		copy(b[1:], k)
		return b
	}
	sum := sha256.Sum256([]byte(k))
	return append([]byte{1}, sum[:]...)
}

// sjTime is t as the store writes it: UTC, to the microsecond.
func sjTime(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

const sjAppendFlow = `WITH h AS (
	INSERT INTO flow_heads AS h (key, seq, prev, last_at) VALUES ($1, nextval('flow_seq'), 0, $3)
	ON CONFLICT (key) DO UPDATE SET prev = h.seq, seq = nextval('flow_seq'), last_at = greatest(h.last_at, excluded.last_at)
	RETURNING h.seq, h.prev
)
INSERT INTO flow_entries (key, seq, prev, entry) SELECT $1, seq, prev, $2 FROM h RETURNING seq, prev`

// AppendFlow appends entry to key's journal (see [flow.Journal]) in one round trip.
func (db *DB) AppendFlow(ctx context.Context, key string, entry []byte, at time.Time) (seq, prev int64, err error) {
	if err := db.writable(); err != nil {
		return 0, 0, fmt.Errorf("postgres: append flow entry: %w", err)
	}
	if len(entry) == 0 || len(entry) > flow.MaxEntryBytes {
		return 0, 0, fmt.Errorf("postgres: append flow entry: %d bytes, want 1 to %d", len(entry), flow.MaxEntryBytes)
	}
	if err := db.pool.QueryRow(ctx, sjAppendFlow, sjKey(key), entry, sjTime(at)).Scan(&seq, &prev); err != nil {
		return 0, 0, fmt.Errorf("postgres: append flow entry: %w", err)
	}
	return seq, prev, nil
}

// FlowSince returns at most limit (and at most 1000) entries of key's journal after
// afterSeq, in seq order.
func (db *DB) FlowSince(ctx context.Context, key string, afterSeq int64, limit int) ([]flow.JournalEntry, error) {
	if limit <= 0 {
		return nil, nil
	}
	limit = min(limit, sjMaxSince)
	rows, err := db.pool.Query(ctx, `SELECT seq, prev, entry FROM flow_entries WHERE key = $1 AND seq > $2 ORDER BY seq LIMIT $3`,
		sjKey(key), afterSeq, limit)
	if err != nil {
		return nil, fmt.Errorf("postgres: read flow journal: %w", err)
	}
	defer rows.Close()
	var out []flow.JournalEntry
	for rows.Next() {
		var e flow.JournalEntry
		if err := rows.Scan(&e.Seq, &e.Prev, &e.Entry); err != nil {
			return nil, fmt.Errorf("postgres: read flow journal: %w", err)
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("postgres: read flow journal: %w", err)
	}
	return out, nil
}

// TouchFlow moves the last use of key's journal forward to at.
func (db *DB) TouchFlow(ctx context.Context, key string, at time.Time) error {
	if err := db.writable(); err != nil {
		return fmt.Errorf("postgres: touch flow journal: %w", err)
	}
	if _, err := db.pool.Exec(ctx, `UPDATE flow_heads SET last_at = $2 WHERE key = $1 AND last_at < $2`, sjKey(key), sjTime(at)); err != nil {
		return fmt.Errorf("postgres: touch flow journal: %w", err)
	}
	return nil
}

// EndFlow deletes key's journal.
func (db *DB) EndFlow(ctx context.Context, key string) error {
	if err := db.writable(); err != nil {
		return fmt.Errorf("postgres: end flow journal: %w", err)
	}
	if _, err := db.pool.Exec(ctx, `DELETE FROM flow_heads WHERE key = $1`, sjKey(key)); err != nil {
		return fmt.Errorf("postgres: end flow journal: %w", err)
	}
	return nil
}

// ExpireFlow deletes the journals last used before before, in batches that skip a
// journal being appended to (it is in use), and returns how many it deleted.
func (db *DB) ExpireFlow(ctx context.Context, before time.Time) (int, error) {
	if err := db.writable(); err != nil {
		return 0, fmt.Errorf("postgres: expire flow journals: %w", err)
	}
	n := 0
	for {
		tag, err := db.pool.Exec(ctx, `DELETE FROM flow_heads WHERE key IN (
	SELECT key FROM flow_heads WHERE last_at < $1 LIMIT $2 FOR UPDATE SKIP LOCKED)`, sjTime(before), sjExpireFlowBatch)
		if err != nil {
			return n, fmt.Errorf("postgres: expire flow journals: %w", err)
		}
		n += int(tag.RowsAffected())
		if tag.RowsAffected() < sjExpireFlowBatch {
			return n, nil
		}
	}
}
