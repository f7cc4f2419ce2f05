package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/chaperone-dev/chaperone/internal/audit"
)

var (
	_ audit.ChainStore = (*DB)(nil)
	_ audit.Source     = (*DB)(nil)
)

// MaxPage is the most events ScanEvents and TailEvents return in one call.
const MaxPage = 10_000

// AppendEvents writes events in one transaction, durable when it returns nil;
// on error none of them is written. The batch must continue the stored chain:
// the first event's Seq follows the stored head and its PrevHash is the
// head's Hash, and each next event follows the one before it.
func (db *DB) AppendEvents(ctx context.Context, events []audit.Event) error {
	return db.appendEvents(ctx, events, nil)
}

// AppendChained writes events like AppendEvents, but first calls chain with the
// stored head, read under the write lock (BEGIN IMMEDIATE), to number and hash
// them: several Logs, in several processes sharing the file, then make one
// chain.
func (db *DB) AppendChained(ctx context.Context, events []audit.Event, chain func(headSeq int64, headHash string) error) error {
	return db.appendEvents(ctx, events, chain)
}

func (db *DB) appendEvents(ctx context.Context, events []audit.Event, chain func(int64, string) error) (err error) {
	if len(events) == 0 {
		return nil
	}
	defer func() {
		if err != nil {
			err = fmt.Errorf("sqlite: append %d audit events: %w", len(events), err)
		}
	}()
	w, err := db.writer()
	if err != nil {
		return err
	}
	// Encode before taking the write lock, unless the lock holder numbers them.
	var records []string
	if chain == nil {
		if records, err = eventRecords(events); err != nil {
			return err
		}
	}

	tx, err := w.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tx.Rollback()
		}
	}()
	var headSeq int64
	var headHash string
	err = tx.QueryRowContext(ctx,
		`SELECT seq, coalesce(event ->> '$.hash', '') FROM audit_events ORDER BY seq DESC LIMIT 1`).Scan(&headSeq, &headHash)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("read chain head: %w", err)
	}
	if chain != nil {
		if err := chain(headSeq, headHash); err != nil {
			return err
		}
		if records, err = eventRecords(events); err != nil {
			return err
		}
	}
	if first := events[0]; first.Seq != headSeq+1 || first.PrevHash != headHash {
		return fmt.Errorf("event %d does not continue the stored chain, which ends at event %d", first.Seq, headSeq)
	}
	stmt, err := tx.PrepareContext(ctx, `INSERT INTO audit_events (seq, event) VALUES (?, ?)`)
	if err != nil {
		return err
	}
	defer stmt.Close()
	for i := range events {
		if _, err := stmt.ExecContext(ctx, events[i].Seq, records[i]); err != nil {
			return fmt.Errorf("insert event %d: %w", events[i].Seq, err)
		}
	}
	return tx.Commit()
}

// eventRecords checks that events follow one another and encodes their records.
func eventRecords(events []audit.Event) ([]string, error) {
	records := make([]string, len(events))
	for i := range events {
		if i > 0 && (events[i].Seq != events[i-1].Seq+1 || events[i].PrevHash != events[i-1].Hash) {
			return nil, fmt.Errorf("event %d does not follow event %d", events[i].Seq, events[i-1].Seq)
		}
		b, err := events[i].MarshalRecord()
		if err != nil {
			return nil, err
		}
		records[i] = string(b) // TEXT, so that SQLite's JSON functions read it as JSON
	}
	return records, nil
}

// LastEvent returns the event with the highest Seq, and false if there is
// none.
func (db *DB) LastEvent(ctx context.Context) (audit.Event, bool, error) {
	// The write connection sees every commit of this process at once.
	events, err := db.queryEvents(ctx, db.SQL(),
		`SELECT seq, event FROM audit_events ORDER BY seq DESC LIMIT 1`)
	if err != nil {
		return audit.Event{}, false, fmt.Errorf("sqlite: read last audit event: %w", err)
	}
	if len(events) == 0 {
		return audit.Event{}, false, nil
	}
	return events[0], true, nil
}

// ScanEvents returns at most limit events (and at most [MaxPage]) with Seq
// greater than afterSeq, in ascending order. If a row in that range does not
// hold the canonical record of its own position, it returns an
// [audit.CorruptError] for the first such row and no events.
func (db *DB) ScanEvents(ctx context.Context, afterSeq int64, limit int) ([]audit.Event, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("sqlite: scan audit events after %d: limit %d, want at least 1", afterSeq, limit)
	}
	events, err := db.queryEvents(ctx, db.r,
		`SELECT seq, event FROM audit_events WHERE seq > ? ORDER BY seq LIMIT ?`, afterSeq, min(limit, MaxPage))
	if err != nil {
		return nil, fmt.Errorf("sqlite: scan audit events after %d: %w", afterSeq, err)
	}
	return events, nil
}

// TailEvents returns the last n events (at most [MaxPage]), in ascending
// order.
func (db *DB) TailEvents(ctx context.Context, n int) ([]audit.Event, error) {
	if n < 0 {
		return nil, fmt.Errorf("sqlite: tail %d audit events: negative count", n)
	}
	if n == 0 {
		return nil, nil
	}
	events, err := db.queryEvents(ctx, db.r,
		`SELECT seq, event FROM (SELECT seq, event FROM audit_events ORDER BY seq DESC LIMIT ?) ORDER BY seq`, min(n, MaxPage))
	if err != nil {
		return nil, fmt.Errorf("sqlite: tail %d audit events: %w", n, err)
	}
	return events, nil
}

// queryEvents runs a query returning (seq, event) rows and decodes them.
func (db *DB) queryEvents(ctx context.Context, q *sql.DB, query string, args ...any) ([]audit.Event, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var events []audit.Event
	for rows.Next() {
		var seq int64
		var raw []byte
		if err := rows.Scan(&seq, &raw); err != nil {
			return nil, err
		}
		e, err := audit.ParseRecord(raw)
		if err == nil && e.Seq != seq {
			err = fmt.Errorf("row holds the record of event %d", e.Seq)
		}
		if err != nil {
			return nil, &audit.CorruptError{Seq: seq, Err: err}
		}
		events = append(events, e)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return events, nil
}
