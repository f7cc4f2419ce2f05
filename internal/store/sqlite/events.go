package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/chaperone-dev/chaperone/internal/audit"
)

var (
	_ audit.SealingStore = (*DB)(nil)
	_ audit.Source       = (*DB)(nil)
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
	return db.appendEvents(ctx, events, func(seq int64, hash string) ([]string, error) {
		if err := chain(seq, hash); err != nil {
			return nil, err
		}
		return eventRecords(events)
	})
}

// AppendSealed is AppendChained with the records seal returns (see audit.SealingStore).
func (db *DB) AppendSealed(ctx context.Context, events []audit.Event, seal func(headSeq int64, headHash string) ([]string, error)) error {
	return db.appendEvents(ctx, events, seal)
}

func (db *DB) appendEvents(ctx context.Context, events []audit.Event, seal func(int64, string) ([]string, error)) (err error) {
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
	if seal == nil {
		if records, err = eventRecords(events); err != nil {
			return err
		}
	}

	if err := db.prepareAppend(ctx, w); err != nil {
		return err
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
	headSeq, headHash, err := db.chainHead(ctx, tx)
	if err != nil {
		return err
	}
	if seal != nil {
		if records, err = seal(headSeq, headHash); err != nil {
			return err
		}
		if len(records) != len(events) {
			return fmt.Errorf("sealed %d records for %d events", len(records), len(events))
		}
	}
	if first := events[0]; first.Seq != headSeq+1 || first.PrevHash != headHash {
		return fmt.Errorf("event %d does not continue the stored chain, which ends at event %d", first.Seq, headSeq)
	}
	if err := db.insertEvents(ctx, tx, events, records); err != nil {
		return err
	}
	db.setHead(chainHead{}) // unknown until the commit's outcome is
	if err := tx.Commit(); err != nil {
		return err
	}
	last := &events[len(events)-1]
	db.setHead(chainHead{seq: last.Seq, hash: last.Hash, known: true})
	return nil
}

// insertRows is how many events one INSERT statement writes: one statement per row costs
// the statement's setup and reset each time, which is most of a small row's insert.
const insertRows = 16

// insertEvents inserts the events' rows, insertRows to a statement and the rest one by one.
func (db *DB) insertEvents(ctx context.Context, tx *sql.Tx, events []audit.Event, records []string) error {
	i := 0
	if len(events) >= insertRows {
		many := tx.StmtContext(ctx, db.insManyStmt)
		defer many.Close()
		args := make([]any, 2*insertRows)
		for ; len(events)-i >= insertRows; i += insertRows {
			for j := range insertRows {
				args[2*j], args[2*j+1] = events[i+j].Seq, records[i+j]
			}
			if _, err := many.ExecContext(ctx, args...); err != nil {
				return fmt.Errorf("insert events %d to %d: %w", events[i].Seq, events[i+insertRows-1].Seq, err)
			}
		}
	}
	if i == len(events) {
		return nil
	}
	one := tx.StmtContext(ctx, db.insStmt)
	defer one.Close()
	for ; i < len(events); i++ {
		if _, err := one.ExecContext(ctx, events[i].Seq, records[i]); err != nil {
			return fmt.Errorf("insert event %d: %w", events[i].Seq, err)
		}
	}
	return nil
}

// chainHead reads the stored chain's head inside tx, which holds the write lock. Decoding
// the newest event for its hash costs more than the rest of a small append, so the head
// this process's last append left is reused when the table still ends there (another
// process sharing the file may have appended since: then it is read in full).
func (db *DB) chainHead(ctx context.Context, tx *sql.Tx) (int64, string, error) {
	db.headMu.Lock()
	h := db.head
	db.headMu.Unlock()
	if h.known {
		var maxSeq int64
		if err := tx.StmtContext(ctx, db.maxSeqStmt).QueryRowContext(ctx).Scan(&maxSeq); err != nil {
			return 0, "", fmt.Errorf("read chain head: %w", err)
		}
		if maxSeq == h.seq {
			return h.seq, h.hash, nil
		}
	}
	var seq int64
	var hash string
	err := tx.QueryRowContext(ctx,
		`SELECT seq, coalesce(event ->> '$.hash', '') FROM audit_events ORDER BY seq DESC LIMIT 1`).Scan(&seq, &hash)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return 0, "", fmt.Errorf("read chain head: %w", err)
	}
	return seq, hash, nil
}

// prepareAppend prepares the append's statements on w, unless an earlier append did.
func (db *DB) prepareAppend(ctx context.Context, w *sql.DB) error {
	db.stmtMu.Lock()
	defer db.stmtMu.Unlock()
	if db.insStmt != nil {
		return nil
	}
	maxSeq, err := w.PrepareContext(ctx, `SELECT coalesce(max(seq), 0) FROM audit_events`)
	if err != nil {
		return fmt.Errorf("prepare: %w", err)
	}
	ins, err := w.PrepareContext(ctx, `INSERT INTO audit_events (seq, event) VALUES (?, ?)`)
	if err != nil {
		maxSeq.Close()
		return fmt.Errorf("prepare: %w", err)
	}
	many, err := w.PrepareContext(ctx, `INSERT INTO audit_events (seq, event) VALUES (?, ?)`+strings.Repeat(`, (?, ?)`, insertRows-1))
	if err != nil {
		maxSeq.Close()
		ins.Close()
		return fmt.Errorf("prepare: %w", err)
	}
	db.maxSeqStmt, db.insStmt, db.insManyStmt = maxSeq, ins, many
	return nil
}

func (db *DB) setHead(h chainHead) {
	db.headMu.Lock()
	db.head = h
	db.headMu.Unlock()
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
