package postgres

// Table audit_events holds the audit log, one row per event: seq and event, the record
// exactly as it was hashed ([audit.Event.MarshalRecord]), read back only through
// [audit.ParseRecord]. Every append — AppendEvents and AppendChained — is one
// transaction that takes the chain lock (a transaction-level advisory lock), reads the
// head, checks that the batch continues it and inserts it, so that any number of
// writers, in any number of replicas, make one chain with no fork and no gap.
//
// The append is on the hot path of every call, so its transaction goes out in two
// pipelined round trips (see [pgTx]): BEGIN, the lock and the head read together; then
// the insert of the whole batch (one statement over arrays) and COMMIT together.

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/chaperone-dev/chaperone/internal/audit"
)

// MaxPage is the most events ScanEvents and TailEvents return in one call.
const MaxPage = 10_000

// pgChainLock names the advisory lock every append of audit events holds until its
// transaction ends; [DB.LockKey] makes it the schema's own.
const pgChainLock = "audit-chain"

// pgHeadTail is how many characters of the head record an append reads: enough for its
// end, `"hash":"sha256:<64 hex digits>"}`, without reading a record that may be large
// (captured call content).
const pgHeadTail = 256

// AppendEvents writes events in one transaction, durable when it returns nil; on error
// none of them is written. The batch must continue the stored chain: the first event's
// Seq follows the stored head and its PrevHash is the head's Hash, and each next event
// follows the one before it. It holds the chain lock, like [DB.AppendChained], so a
// second writer that read the same head fails instead of forking the log.
func (db *DB) AppendEvents(ctx context.Context, events []audit.Event) error {
	return db.pgAppend(ctx, events, nil)
}

// AppendChained writes events like AppendEvents, but first calls chain with the stored
// head (its Seq and Hash; 0 and "" for an empty log), read under the chain lock, to
// number and hash them: several Logs, in several replicas, then make one chain. It does
// not trust chain: a batch that does not continue the head is refused as AppendEvents
// refuses it. If chain fails, nothing is written and its error is returned, wrapped.
// chain is called once; a nil chain appends events as AppendEvents does.
func (db *DB) AppendChained(ctx context.Context, events []audit.Event, chain func(headSeq int64, headHash string) error) error {
	return db.pgAppend(ctx, events, func(seq int64, hash string) ([]string, error) {
		if err := chain(seq, hash); err != nil {
			return nil, err
		}
		return pgRecords(events)
	})
}

// AppendSealed is AppendChained with the records seal returns (see audit.SealingStore).
func (db *DB) AppendSealed(ctx context.Context, events []audit.Event, seal func(headSeq int64, headHash string) ([]string, error)) error {
	return db.pgAppend(ctx, events, seal)
}

// pgEventRows are the column values of a batch of events, one slice per column, for
// the insert over arrays.
type pgEventRows struct {
	seqs       []int64
	records    []string
	kinds      []string
	requestIDs []string // "" for none, stored as NULL
	pruned     []bool
}

// pgRecords checks that events follow one another and encodes their records.
func pgRecords(events []audit.Event) ([]string, error) {
	records := make([]string, len(events))
	for i := range events {
		e := &events[i]
		if i > 0 && (e.Seq != events[i-1].Seq+1 || e.PrevHash != events[i-1].Hash) {
			return nil, fmt.Errorf("event %d does not follow event %d", e.Seq, events[i-1].Seq)
		}
		b, err := e.MarshalRecord()
		if err != nil {
			return nil, err
		}
		records[i] = string(b)
	}
	return records, nil
}

// pgEventRowsOf returns the rows of events whose records are records.
func pgEventRowsOf(events []audit.Event, records []string) (pgEventRows, error) {
	if len(records) != len(events) {
		return pgEventRows{}, fmt.Errorf("%d records for %d events", len(records), len(events))
	}
	rows := pgEventRows{
		seqs:       make([]int64, len(events)),
		records:    records,
		kinds:      make([]string, len(events)),
		requestIDs: make([]string, len(events)),
		pruned:     make([]bool, len(events)),
	}
	for i := range events {
		e := &events[i]
		rows.seqs[i] = e.Seq
		rows.kinds[i], rows.requestIDs[i] = pgIndexText(e.Kind), pgIndexText(e.RequestID)
		rows.pruned[i] = e.Pruned
	}
	return rows, nil
}

// pgIndexText is s as a text column can hold it, for the columns that only index a
// record: PostgreSQL's text refuses NUL and invalid UTF-8, and one odd request ID must
// not fail the batch of events it is in.
func pgIndexText(s string) string {
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "\uFFFD")
}

func (db *DB) pgAppend(ctx context.Context, events []audit.Event, seal func(int64, string) ([]string, error)) (err error) {
	if len(events) == 0 {
		return nil
	}
	defer func() {
		if err != nil {
			err = fmt.Errorf("postgres: append %d audit events: %w", len(events), err)
		}
	}()
	if err := db.writable(); err != nil {
		return err
	}
	// Encode before taking the lock, unless the lock holder numbers them.
	var records []string
	if seal == nil {
		if records, err = pgRecords(events); err != nil {
			return err
		}
	}
	tx, err := db.pgBegin(ctx)
	if err != nil {
		return err
	}
	defer tx.end()

	// The head is read by a statement of its own, after the lock is granted, so that
	// it sees every append committed before: under READ COMMITTED a statement's
	// snapshot is taken when the statement starts.
	var (
		headSeq int64
		tail    string
		empty   bool
	)
	err = tx.send(ctx, false, func(b *pgx.Batch) {
		b.Queue(`SELECT pg_advisory_xact_lock(hashtextextended($1, 0))`, db.LockKey(pgChainLock))
		b.Queue(`SELECT seq, right(event, $1) FROM audit_events ORDER BY seq DESC LIMIT 1`, pgHeadTail).QueryRow(func(r pgx.Row) error {
			err := r.Scan(&headSeq, &tail)
			if errors.Is(err, pgx.ErrNoRows) {
				empty = true
				return nil
			}
			return err
		})
	})
	if err != nil {
		return fmt.Errorf("read chain head: %w", err)
	}
	headHash := ""
	if !empty {
		if headHash, err = pgRecordHash(tail); err != nil {
			return fmt.Errorf("read chain head: %w", &audit.CorruptError{Seq: headSeq, Err: err})
		}
	}
	if seal != nil {
		if records, err = seal(headSeq, headHash); err != nil {
			return err
		}
	}
	if first := events[0]; first.Seq != headSeq+1 || first.PrevHash != headHash {
		return fmt.Errorf("event %d does not continue the stored chain, which ends at event %d", first.Seq, headSeq)
	}
	rows, err := pgEventRowsOf(events, records)
	if err != nil {
		return err
	}
	err = tx.send(ctx, true, func(b *pgx.Batch) {
		b.Queue(`INSERT INTO audit_events (seq, event, kind, request_id, pruned)
SELECT seq, event, kind, NULLIF(request_id, ''), pruned
FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::boolean[]) AS e(seq, event, kind, request_id, pruned)`,
			rows.seqs, rows.records, rows.kinds, rows.requestIDs, rows.pruned).Exec(func(ct pgconn.CommandTag) error {
			if n := ct.RowsAffected(); n != int64(len(events)) {
				return fmt.Errorf("inserted %d of %d events", n, len(events))
			}
			return nil
		})
	})
	if err != nil {
		return fmt.Errorf("insert events %d to %d: %w", events[0].Seq, events[len(events)-1].Seq, err)
	}
	return nil
}

// pgRecordHash returns the Hash of the event whose canonical record ends with tail. The
// canonical record ends with its hash, `"hash":"<hash>"}`, so the end of a large
// record is enough to continue the chain. A record that does not end so (only a write
// behind the store's back can make one) is an error: the chain cannot be continued
// from it.
func pgRecordHash(tail string) (string, error) {
	const key = `"hash":"`
	i := strings.LastIndex(tail, key)
	if i < 0 || !strings.HasSuffix(tail, `"}`) || i+len(key) > len(tail)-2 {
		return "", errors.New("record does not end with its hash")
	}
	h := tail[i+len(key) : len(tail)-2]
	if strings.ContainsAny(h, `"\`) {
		return "", errors.New("record does not end with its hash")
	}
	return h, nil
}

// LastEvent returns the event with the highest Seq, and false if there is none.
func (db *DB) LastEvent(ctx context.Context) (audit.Event, bool, error) {
	events, err := db.pgQueryEvents(ctx, `SELECT seq, event FROM audit_events ORDER BY seq DESC LIMIT 1`)
	if err != nil {
		return audit.Event{}, false, fmt.Errorf("postgres: read last audit event: %w", err)
	}
	if len(events) == 0 {
		return audit.Event{}, false, nil
	}
	return events[0], true, nil
}

// ScanEvents returns at most limit events (and at most [MaxPage]) with Seq greater than
// afterSeq, in ascending order. If a row in that range does not hold the canonical
// record of its own position, it returns an [audit.CorruptError] for the first such row
// and no events.
func (db *DB) ScanEvents(ctx context.Context, afterSeq int64, limit int) ([]audit.Event, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("postgres: scan audit events after %d: limit %d, want at least 1", afterSeq, limit)
	}
	events, err := db.pgQueryEvents(ctx,
		`SELECT seq, event FROM audit_events WHERE seq > $1 ORDER BY seq LIMIT $2`, afterSeq, min(limit, MaxPage))
	if err != nil {
		return nil, fmt.Errorf("postgres: scan audit events after %d: %w", afterSeq, err)
	}
	return events, nil
}

// TailEvents returns the last n events (at most [MaxPage]), in ascending order.
func (db *DB) TailEvents(ctx context.Context, n int) ([]audit.Event, error) {
	if n < 0 {
		return nil, fmt.Errorf("postgres: tail %d audit events: negative count", n)
	}
	if n == 0 {
		return nil, nil
	}
	events, err := db.pgQueryEvents(ctx,
		`SELECT seq, event FROM (SELECT seq, event FROM audit_events ORDER BY seq DESC LIMIT $1) AS t ORDER BY seq`, min(n, MaxPage))
	if err != nil {
		return nil, fmt.Errorf("postgres: tail %d audit events: %w", n, err)
	}
	return events, nil
}

// pgQueryEvents runs a query returning (seq, event) rows and decodes them.
func (db *DB) pgQueryEvents(ctx context.Context, query string, args ...any) ([]audit.Event, error) {
	rows, err := db.pool.Query(ctx, query, args...)
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

// pgBeginSQL starts every transaction of the store. READ COMMITTED is named rather than
// left to the server's default: a statement that runs after a lock is granted must see
// what the lock's previous holder committed, which REPEATABLE READ or SERIALIZABLE (a
// snapshot taken at the first statement) would hide.
const pgBeginSQL = `BEGIN ISOLATION LEVEL READ COMMITTED`

// pgTx is a transaction on one pooled connection whose statements go out in pipelined
// batches: BEGIN travels with the first batch and COMMIT with the last, so that a
// transaction that needs one answer before it can finish costs two round trips rather
// than five. Whatever happens, [pgTx.end] must be called; it rolls back what was not
// committed.
type pgTx struct {
	conn  *pgxpool.Conn
	begun bool // BEGIN has been sent
}

// pgBegin acquires a connection for a transaction; BEGIN goes out with the first
// batch. It returns ErrReadOnly for a read-only store.
func (db *DB) pgBegin(ctx context.Context) (*pgTx, error) {
	if err := db.writable(); err != nil {
		return nil, err
	}
	c, err := db.pool.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	return &pgTx{conn: c}, nil
}

// send sends, in one round trip, BEGIN if it was not sent yet, the statements queue
// adds to the batch, and COMMIT if commit is set. It returns the first error of a
// statement or of a callback the statements registered. When a statement fails the
// server skips the rest of the batch, COMMIT included; the transaction is then left
// for end to roll back.
//
// A statement whose callback refuses a result does not stop the statements after it,
// which the server has already run: a caller that may refuse a result before
// committing sends COMMIT in a batch of its own.
func (t *pgTx) send(ctx context.Context, commit bool, queue func(b *pgx.Batch)) error {
	b := &pgx.Batch{}
	if !t.begun {
		b.Queue(pgBeginSQL)
		t.begun = true
	}
	queue(b)
	if commit {
		b.Queue(`COMMIT`).Exec(func(ct pgconn.CommandTag) error {
			// COMMIT of a transaction that failed answers ROLLBACK, without an error.
			if ct.String() != "COMMIT" {
				return errors.New("the transaction was rolled back")
			}
			return nil
		})
	}
	return t.conn.SendBatch(ctx, b).Close()
}

// end rolls back whatever the transaction left open and returns the connection to the
// pool. It uses a context of its own: the caller's may be done. A connection whose
// rollback fails is not idle, and the pool closes it instead of reusing it.
func (t *pgTx) end() {
	c := t.conn.Conn()
	if !c.IsClosed() && c.PgConn().TxStatus() != 'I' {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, _ = c.Exec(ctx, `ROLLBACK`)
		cancel()
	}
	t.conn.Release()
}

// pgPayload is the payload of the notification of topic for id, as [DB.Listen] reads
// it: "<topic>:<id>", or "<topic>" alone — which tells listeners to reload every item
// of the topic — when id is empty or could not travel in a notification (see
// [MaxNotifyID]): a listener would drop it, and a notification that is too long would
// fail the write.
func pgPayload(topic, id string) string {
	if id == "" || !prValidID(id) {
		return topic
	}
	return topic + ":" + id
}

// pgWrite runs a data-modifying statement of the form
//
//	WITH w AS (<insert, update or delete> RETURNING ...) SELECT pg_notify($1, $2) FROM w
//
// with $1 the store's channel and $2 the payload of the notification of topic and id
// (args are $3 onwards), and returns how many rows it wrote. The notification is sent
// in the write's own transaction, so it is delivered if and only if the write commits,
// and only if it wrote a row (PostgreSQL sends one notification per distinct payload
// and transaction): one round trip for a write and its notification.
func (db *DB) pgWrite(ctx context.Context, topic, id, query string, args ...any) (int64, error) {
	if err := db.writable(); err != nil {
		return 0, err
	}
	rows, err := db.pool.Query(ctx, query, append([]any{db.channel, pgPayload(topic, id)}, args...)...)
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	var n int64
	for rows.Next() {
		n++
	}
	return n, rows.Err()
}

// pgTime is how the store writes a time: in UTC, truncated to the microsecond,
// PostgreSQL's precision, so that what a method returns is what a later read returns.
func pgTime(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

// pgNullTime is pgTime, or NULL for the zero time.
func pgNullTime(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return pgTime(t)
}

// pgReadTime is a time as read: pgx returns local times.
func pgReadTime(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.UTC()
}
