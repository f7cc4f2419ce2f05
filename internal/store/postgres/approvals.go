package postgres

// Table approvals backs [approval.Store]: one row per request, never deleted. Every
// decision holds across replicas:
//
//   - CreateApproval of a pending request holds an advisory lock on its call hash while
//     it checks for a pending request and inserts, so of two replicas creating a request
//     for one call, one fails with approval.ErrPendingExists.
//   - AddApproval and Deny lock the row (SELECT ... FOR UPDATE), decide in Go, and write
//     with an UPDATE still conditional on the status and the expiry.
//   - Consume and ExpireApprovals are one conditional UPDATE each: of two replicas that
//     race, the second waits for the first's row lock, re-reads the row and no longer
//     matches it.
//
// Every change sends TopicApproval with the request's id, in its transaction.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/chaperone-dev/chaperone/internal/approval"
)

// pgApprovalColumns are the columns of approvals, in the order pgScanApproval reads them.
const pgApprovalColumns = `id, call_hash, tool, upstream, arguments, agent, "user", task, session_id, reason, rules,
	policy_version, risk, risk_factors, explanation, undo, status, required, approvals, denied_by, deny_code,
	deny_text, created_at, expires_at, decided_at, used_at`

// pgApprovalLockClass is the first key of the advisory locks CreateApproval takes ("appr"
// in ASCII); the second is a hash of the call hash. Two-key advisory locks never
// conflict with one-key ones such as the chain lock.
const pgApprovalLockClass int32 = 0x61707072

// pgVerdictTimeLayout is RFC 3339 with exactly nine fractional digits, the form the
// sqlite store gives the times in the approvals column.
const pgVerdictTimeLayout = "2006-01-02T15:04:05.000000000Z07:00"

// pgVerdict is an approval as stored in the approvals column.
type pgVerdict struct {
	By string `json:"by"`
	At string `json:"at"`
}

func pgMarshalVerdicts(vs []approval.Verdict) (string, error) {
	out := make([]pgVerdict, 0, len(vs))
	for _, v := range vs {
		out = append(out, pgVerdict{By: v.By, At: pgTime(v.At).Format(pgVerdictTimeLayout)})
	}
	b, err := json.Marshal(out)
	return string(b), err
}

func pgMarshalStrings(s []string) (string, error) {
	if s == nil {
		s = []string{}
	}
	b, err := json.Marshal(s)
	return string(b), err
}

// CreateApproval stores a new request. If r is pending and a pending request for the
// same call hash, unexpired at r.CreatedAt, is stored, it returns an error wrapping
// [approval.ErrPendingExists]; the check and the insert are atomic across replicas.
// Times are kept to the microsecond.
func (db *DB) CreateApproval(ctx context.Context, r *approval.Request) (err error) {
	defer func() {
		if err != nil {
			err = fmt.Errorf("postgres: create approval %q: %w", r.ID, err)
		}
	}()
	if r.ID == "" || r.CallHash == "" {
		return errors.New("id and call hash are required")
	}
	rules, err := pgMarshalStrings(r.Rules)
	if err != nil {
		return err
	}
	factors, err := pgMarshalStrings(r.RiskFactors)
	if err != nil {
		return err
	}
	verdicts, err := pgMarshalVerdicts(r.Approvals)
	if err != nil {
		return err
	}
	args := string(r.Arguments)
	if args == "" {
		args = "{}"
	}
	pending := r.Status == approval.StatusPending
	tx, err := db.pgBegin(ctx)
	if err != nil {
		return err
	}
	defer tx.end()
	var exists bool
	var inserted int64
	// One round trip: BEGIN, the lock, the check-and-insert, COMMIT. The insert runs
	// after the lock is granted, so its check sees the requests of every creator that
	// held the lock before.
	err = tx.send(ctx, true, func(b *pgx.Batch) {
		if pending {
			b.Queue(`SELECT pg_advisory_xact_lock($1, hashtext($2))`, pgApprovalLockClass, r.CallHash)
		}
		b.Queue(`WITH pending AS (
	SELECT 1 FROM approvals
	WHERE $3::boolean AND call_hash = $5 AND status = 'pending' AND expires_at > $26::timestamptz
	LIMIT 1
), w AS (
	INSERT INTO approvals (`+pgApprovalColumns+`)
	SELECT $4, $5, $6, $7, $8::json, $9, $10, $11, $12, $13, $14::jsonb, $15, $16, $17::jsonb, $18, $19, $20, $21,
		$22::jsonb, $23, $24, $25, $26, $27::timestamptz, $28::timestamptz, $29::timestamptz
	WHERE NOT EXISTS (SELECT 1 FROM pending)
	ON CONFLICT (id) DO NOTHING
	RETURNING 1
)
SELECT EXISTS (SELECT 1 FROM pending), (SELECT count(*) FROM w), (SELECT pg_notify($1, $2) FROM w)`,
			db.channel, pgPayload(TopicApproval, r.ID), pending,
			r.ID, r.CallHash, r.Tool, r.Upstream, args, r.Agent, r.User, r.Task, r.SessionID, r.Reason, rules,
			r.PolicyVersion, r.Risk, factors, r.Explanation, r.Undo, string(r.Status), r.Required, verdicts,
			r.DeniedBy, r.DenyCode, r.DenyText, pgTime(r.CreatedAt), pgTime(r.ExpiresAt),
			pgNullTime(r.DecidedAt), pgNullTime(r.UsedAt),
		).QueryRow(func(row pgx.Row) error {
			return row.Scan(&exists, &inserted, nil)
		})
	})
	switch {
	case err != nil:
		return err
	case inserted == 1:
		return nil
	case exists:
		return approval.ErrPendingExists
	default:
		return errors.New("a request with this id is already stored")
	}
}

// Approval returns the request with the id, or an error wrapping
// [approval.ErrNotFound].
func (db *DB) Approval(ctx context.Context, id string) (*approval.Request, error) {
	r, err := pgScanApproval(db.pool.QueryRow(ctx, `SELECT `+pgApprovalColumns+` FROM approvals WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		err = approval.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("postgres: read approval %q: %w", id, err)
	}
	return r, nil
}

// PendingApproval returns the newest pending request for callHash unexpired at now.
func (db *DB) PendingApproval(ctx context.Context, callHash string, now time.Time) (*approval.Request, bool, error) {
	r, err := pgScanApproval(db.pool.QueryRow(ctx, `SELECT `+pgApprovalColumns+` FROM approvals
WHERE call_hash = $1 AND status = 'pending' AND expires_at > $2
ORDER BY created_at DESC, id DESC LIMIT 1`, callHash, pgTime(now)))
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return nil, false, nil
	case err != nil:
		return nil, false, fmt.Errorf("postgres: read pending approval: %w", err)
	}
	return r, true, nil
}

// Approvals returns the requests f selects, newest first.
func (db *DB) Approvals(ctx context.Context, f approval.Filter) ([]approval.Request, error) {
	var (
		where []string
		args  []any
	)
	if f.Status != "" {
		args = append(args, string(f.Status))
		where = append(where, fmt.Sprintf("status = $%d", len(args)))
	}
	if f.Tool != "" {
		args = append(args, f.Tool)
		where = append(where, fmt.Sprintf("tool = $%d", len(args)))
	}
	q := `SELECT ` + pgApprovalColumns + ` FROM approvals`
	if len(where) > 0 {
		q += ` WHERE ` + strings.Join(where, " AND ")
	}
	args = append(args, f.EffectiveLimit())
	q += fmt.Sprintf(` ORDER BY created_at DESC, id DESC LIMIT $%d`, len(args))
	rows, err := db.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("postgres: read approvals: %w", err)
	}
	rs, err := pgCollectApprovals(rows)
	if err != nil {
		return nil, fmt.Errorf("postgres: read approvals: %w", err)
	}
	return rs, nil
}

// AddApproval records by's approval at now; see [approval.Store].
func (db *DB) AddApproval(ctx context.Context, id, by string, now time.Time) (*approval.Request, error) {
	r, err := db.pgDecide(ctx, id, now, func(r *approval.Request, now time.Time) error {
		if by == "" {
			return errors.New("approver is required")
		}
		for _, v := range r.Approvals {
			if strings.EqualFold(v.By, by) {
				return approval.ErrSameApprover
			}
		}
		r.Approvals = append(r.Approvals, approval.Verdict{By: by, At: now})
		if len(r.Approvals) >= r.Required {
			r.Status, r.DecidedAt = approval.StatusApproved, now
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: add approval to %q: %w", id, err)
	}
	return r, nil
}

// Deny records by's denial at now; see [approval.Store].
func (db *DB) Deny(ctx context.Context, id, by, code, text string, now time.Time) (*approval.Request, error) {
	r, err := db.pgDecide(ctx, id, now, func(r *approval.Request, now time.Time) error {
		if by == "" || code == "" {
			return errors.New("denier and code are required")
		}
		r.Status, r.DecidedAt = approval.StatusDenied, now
		r.DeniedBy, r.DenyCode, r.DenyText = by, code, text
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: deny %q: %w", id, err)
	}
	return r, nil
}

// pgDecide applies change to the pending request with the id, in one transaction that
// holds the row's lock from the read to the write; change gets now as stored (UTC,
// microseconds). If the request has expired at now it marks it expired instead and
// returns approval.ErrExpired.
func (db *DB) pgDecide(ctx context.Context, id string, now time.Time, change func(*approval.Request, time.Time) error) (*approval.Request, error) {
	now = pgTime(now)
	tx, err := db.pgBegin(ctx)
	if err != nil {
		return nil, err
	}
	defer tx.end()
	var r *approval.Request
	err = tx.send(ctx, false, func(b *pgx.Batch) {
		b.Queue(`SELECT `+pgApprovalColumns+` FROM approvals WHERE id = $1 FOR UPDATE`, id).QueryRow(func(row pgx.Row) error {
			var err error
			r, err = pgScanApproval(row)
			return err
		})
	})
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return nil, approval.ErrNotFound
	case err != nil:
		return nil, err
	case r.Status == approval.StatusExpired:
		return nil, approval.ErrExpired
	case r.Status != approval.StatusPending:
		return nil, approval.ErrNotPending
	case !now.Before(r.ExpiresAt):
		err := tx.send(ctx, true, func(b *pgx.Batch) {
			b.Queue(`WITH w AS (
	UPDATE approvals SET status = 'expired', decided_at = $3 WHERE id = $4 AND status = 'pending' RETURNING 1
) SELECT pg_notify($1, $2) FROM w`, db.channel, pgPayload(TopicApproval, id), now, id)
		})
		if err != nil {
			return nil, err
		}
		return nil, approval.ErrExpired
	}
	if err := change(r, now); err != nil {
		return nil, err
	}
	verdicts, err := pgMarshalVerdicts(r.Approvals)
	if err != nil {
		return nil, err
	}
	var updated bool
	err = tx.send(ctx, true, func(b *pgx.Batch) {
		b.Queue(`WITH w AS (
	UPDATE approvals SET status = $3, approvals = $4, denied_by = $5, deny_code = $6, deny_text = $7, decided_at = $8
	WHERE id = $9 AND status = 'pending' AND expires_at > $10
	RETURNING 1
) SELECT pg_notify($1, $2) FROM w`, db.channel, pgPayload(TopicApproval, id),
			string(r.Status), verdicts, r.DeniedBy, r.DenyCode, r.DenyText, pgNullTime(r.DecidedAt), id, now,
		).QueryRow(func(row pgx.Row) error {
			err := row.Scan(nil)
			updated = err == nil
			if errors.Is(err, pgx.ErrNoRows) {
				return nil
			}
			return err
		})
	})
	if err != nil {
		return nil, err
	}
	if !updated {
		return nil, approval.ErrNotPending // cannot happen: the transaction holds the row's lock
	}
	return r, nil
}

// Consume marks the approved request with the id used, if callHash is its call hash
// and it has not expired at now; see [approval.Store]. The UPDATE is the decision, in
// one round trip with its notification; the read after a refusal only names the
// reason.
func (db *DB) Consume(ctx context.Context, id, callHash string, now time.Time) (r *approval.Request, err error) {
	defer func() {
		if err != nil {
			err = fmt.Errorf("postgres: consume approval %q: %w", id, err)
		}
	}()
	if err := db.writable(); err != nil {
		return nil, err
	}
	now = pgTime(now)
	r, err = pgScanApproval(db.pool.QueryRow(ctx, `WITH w AS (
	UPDATE approvals SET status = 'used', used_at = $3
	WHERE id = $4 AND status = 'approved' AND call_hash = $5 AND expires_at > $3
	RETURNING `+pgApprovalColumns+`
) SELECT w.*, pg_notify($1, $2) FROM w`, db.channel, pgPayload(TopicApproval, id), now, id, callHash), nil)
	if err == nil {
		return r, nil
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return nil, err
	}
	var (
		status, hash string
		expires      time.Time
	)
	err = db.pool.QueryRow(ctx, `SELECT status, call_hash, expires_at FROM approvals WHERE id = $1`, id).Scan(&status, &hash, &expires)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return nil, approval.ErrNotFound
	case err != nil:
		return nil, err
	case hash != callHash:
		return nil, approval.ErrMismatch
	}
	switch approval.Status(status) {
	case approval.StatusUsed:
		return nil, approval.ErrUsed
	case approval.StatusApproved:
		if now.Before(expires) {
			// Approved after the UPDATE looked, when it was not approved yet.
			return nil, approval.ErrNotApproved
		}
		return nil, approval.ErrExpired
	case approval.StatusExpired:
		return nil, fmt.Errorf("%w: %w", approval.ErrNotApproved, approval.ErrExpired)
	default:
		return nil, approval.ErrNotApproved
	}
}

// ExpireApprovals marks every pending request whose expiry is at or before now
// expired, with DecidedAt now, and returns them, oldest first. One UPDATE does it, so
// a request is returned by one call only, in whichever replica. Each one is notified.
func (db *DB) ExpireApprovals(ctx context.Context, now time.Time) (rs []approval.Request, err error) {
	defer func() {
		if err != nil {
			err = fmt.Errorf("postgres: expire approvals: %w", err)
		}
	}()
	now = pgTime(now)
	tx, err := db.pgBegin(ctx)
	if err != nil {
		return nil, err
	}
	defer tx.end()
	err = tx.send(ctx, false, func(b *pgx.Batch) {
		b.Queue(`UPDATE approvals SET status = 'expired', decided_at = $1
WHERE status = 'pending' AND expires_at <= $1
RETURNING `+pgApprovalColumns, now).Query(func(rows pgx.Rows) error {
			var err error
			rs, err = pgCollectApprovals(rows)
			return err
		})
	})
	if err != nil || len(rs) == 0 {
		return nil, err // nothing changed: end rolls back
	}
	slices.SortFunc(rs, func(a, b approval.Request) int {
		if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	payloads := make([]string, len(rs))
	for i := range rs {
		payloads[i] = pgPayload(TopicApproval, rs[i].ID)
	}
	err = tx.send(ctx, true, func(b *pgx.Batch) {
		b.Queue(`SELECT pg_notify($1, p) FROM unnest($2::text[]) AS p`, db.channel, payloads)
	})
	if err != nil {
		return nil, err
	}
	return rs, nil
}

// DeclineCounts counts the requests denied at or after since, by deny code.
func (db *DB) DeclineCounts(ctx context.Context, since time.Time) (map[string]int, error) {
	rows, err := db.pool.Query(ctx, `SELECT deny_code, count(*) FROM approvals
WHERE status = 'denied' AND decided_at >= $1 GROUP BY deny_code`, pgTime(since))
	if err != nil {
		return nil, fmt.Errorf("postgres: count declines: %w", err)
	}
	defer rows.Close()
	counts := map[string]int{}
	for rows.Next() {
		var code string
		var n int
		if err := rows.Scan(&code, &n); err != nil {
			return nil, fmt.Errorf("postgres: count declines: %w", err)
		}
		counts[code] = n
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("postgres: count declines: %w", err)
	}
	return counts, nil
}

// pgCollectApprovals reads every row of rows, which return pgApprovalColumns.
func pgCollectApprovals(rows pgx.Rows) ([]approval.Request, error) {
	defer rows.Close()
	var rs []approval.Request
	for rows.Next() {
		r, err := pgScanApproval(rows)
		if err != nil {
			return nil, err
		}
		rs = append(rs, *r)
	}
	return rs, rows.Err()
}

// pgScanApproval reads one row of pgApprovalColumns, followed by the columns extra
// scans into (nil skips one).
func pgScanApproval(row pgx.Row, extra ...any) (*approval.Request, error) {
	var (
		r                        approval.Request
		args, rules, factors, vs []byte
		status                   string
		created, expires         time.Time
		decided, used            *time.Time
	)
	dest := append([]any{&r.ID, &r.CallHash, &r.Tool, &r.Upstream, &args, &r.Agent, &r.User, &r.Task, &r.SessionID,
		&r.Reason, &rules, &r.PolicyVersion, &r.Risk, &factors, &r.Explanation, &r.Undo, &status, &r.Required,
		&vs, &r.DeniedBy, &r.DenyCode, &r.DenyText, &created, &expires, &decided, &used}, extra...)
	if err := row.Scan(dest...); err != nil {
		return nil, err
	}
	r.Status = approval.Status(status)
	r.Arguments = json.RawMessage(args)
	if err := json.Unmarshal(rules, &r.Rules); err != nil {
		return nil, fmt.Errorf("approval %q: rules: %w", r.ID, err)
	}
	if err := json.Unmarshal(factors, &r.RiskFactors); err != nil {
		return nil, fmt.Errorf("approval %q: risk_factors: %w", r.ID, err)
	}
	if len(r.Rules) == 0 {
		r.Rules = nil
	}
	if len(r.RiskFactors) == 0 {
		r.RiskFactors = nil
	}
	var verdicts []pgVerdict
	if err := json.Unmarshal(vs, &verdicts); err != nil {
		return nil, fmt.Errorf("approval %q: approvals: %w", r.ID, err)
	}
	for _, v := range verdicts {
		at, err := time.Parse(time.RFC3339Nano, v.At)
		if err != nil {
			return nil, fmt.Errorf("approval %q: approvals: %w", r.ID, err)
		}
		r.Approvals = append(r.Approvals, approval.Verdict{By: v.By, At: at.UTC()})
	}
	r.CreatedAt, r.ExpiresAt = pgReadTime(&created), pgReadTime(&expires)
	r.DecidedAt, r.UsedAt = pgReadTime(decided), pgReadTime(used)
	return &r, nil
}
