package sqlite

// Table approvals backs [approval.Store]: one row per request, never deleted. Every
// decision is one IMMEDIATE transaction on the write connection whose UPDATE is
// conditional on the status it read (and on the expiry), so the decision is atomic
// against other goroutines and against other processes sharing the file: SQLite has
// one writer at a time. Times in this table have a fixed width so that SQL can compare
// them as text (see [approvalTime]).

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/chaperone-dev/chaperone/internal/approval"
)

var _ approval.Store = (*DB)(nil)

// approvalColumns are the columns of approvals, in the order scanApproval reads them.
const approvalColumns = `id, call_hash, tool, upstream, arguments, agent, user, task, session_id, reason, rules,
	policy_version, risk, risk_factors, explanation, undo, status, required, approvals, denied_by, deny_code,
	deny_text, created_at, expires_at, decided_at, used_at`

// approvalTimeLayout is RFC 3339 with exactly nine fractional digits: unlike
// time.RFC3339Nano, which drops trailing zeros, its text order is time order.
const approvalTimeLayout = "2006-01-02T15:04:05.000000000Z07:00"

// approvalTime is how the approvals table stores a time: UTC, fixed width.
func approvalTime(t time.Time) string { return t.UTC().Format(approvalTimeLayout) }

// nullTime is approvalTime, or NULL for the zero time.
func nullTime(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return approvalTime(t)
}

// verdictJSON is an approval as stored in the approvals column.
type verdictJSON struct {
	By string `json:"by"`
	At string `json:"at"`
}

func marshalVerdicts(vs []approval.Verdict) (string, error) {
	out := make([]verdictJSON, 0, len(vs))
	for _, v := range vs {
		out = append(out, verdictJSON{By: v.By, At: approvalTime(v.At)})
	}
	b, err := json.Marshal(out)
	return string(b), err
}

func marshalStrings(s []string) (string, error) {
	if s == nil {
		s = []string{}
	}
	b, err := json.Marshal(s)
	return string(b), err
}

// CreateApproval stores a new request. If r is pending and a pending request for the
// same call hash, unexpired at r.CreatedAt, is stored, it returns an error wrapping
// [approval.ErrPendingExists]; the check and the insert are one transaction.
func (db *DB) CreateApproval(ctx context.Context, r *approval.Request) (err error) {
	defer func() {
		if err != nil {
			err = fmt.Errorf("sqlite: create approval %q: %w", r.ID, err)
		}
	}()
	if r.ID == "" || r.CallHash == "" {
		return errors.New("id and call hash are required")
	}
	w, err := db.writer()
	if err != nil {
		return err
	}
	rules, err := marshalStrings(r.Rules)
	if err != nil {
		return err
	}
	factors, err := marshalStrings(r.RiskFactors)
	if err != nil {
		return err
	}
	verdicts, err := marshalVerdicts(r.Approvals)
	if err != nil {
		return err
	}
	args := string(r.Arguments)
	if args == "" {
		args = "{}"
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
	if r.Status == approval.StatusPending {
		var id string
		err := tx.QueryRowContext(ctx, `SELECT id FROM approvals
WHERE call_hash = ? AND status = 'pending' AND expires_at > ? LIMIT 1`, r.CallHash, approvalTime(r.CreatedAt)).Scan(&id)
		switch {
		case err == nil:
			return approval.ErrPendingExists
		case !errors.Is(err, sql.ErrNoRows):
			return err
		}
	}
	res, err := tx.ExecContext(ctx, `INSERT INTO approvals (`+approvalColumns+`)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (id) DO NOTHING`,
		r.ID, r.CallHash, r.Tool, r.Upstream, args, r.Agent, r.User, r.Task, r.SessionID, r.Reason, rules,
		r.PolicyVersion, r.Risk, factors, r.Explanation, r.Undo, string(r.Status), r.Required, verdicts,
		r.DeniedBy, r.DenyCode, r.DenyText, approvalTime(r.CreatedAt), approvalTime(r.ExpiresAt),
		nullTime(r.DecidedAt), nullTime(r.UsedAt))
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err != nil {
		return err
	} else if n == 0 {
		return errors.New("a request with this id is already stored")
	}
	return tx.Commit()
}

// Approval returns the request with the id, or an error wrapping
// [approval.ErrNotFound].
func (db *DB) Approval(ctx context.Context, id string) (*approval.Request, error) {
	r, err := scanApproval(db.r.QueryRowContext(ctx, `SELECT `+approvalColumns+` FROM approvals WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		err = approval.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("sqlite: read approval %q: %w", id, err)
	}
	return r, nil
}

// PendingApproval returns the newest pending request for callHash unexpired at now.
func (db *DB) PendingApproval(ctx context.Context, callHash string, now time.Time) (*approval.Request, bool, error) {
	r, err := scanApproval(db.r.QueryRowContext(ctx, `SELECT `+approvalColumns+` FROM approvals
WHERE call_hash = ? AND status = 'pending' AND expires_at > ?
ORDER BY created_at DESC, id DESC LIMIT 1`, callHash, approvalTime(now)))
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil, false, nil
	case err != nil:
		return nil, false, fmt.Errorf("sqlite: read pending approval: %w", err)
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
		where, args = append(where, "status = ?"), append(args, string(f.Status))
	}
	if f.Tool != "" {
		where, args = append(where, "tool = ?"), append(args, f.Tool)
	}
	q := `SELECT ` + approvalColumns + ` FROM approvals`
	if len(where) > 0 {
		q += ` WHERE ` + strings.Join(where, " AND ")
	}
	q += ` ORDER BY created_at DESC, id DESC LIMIT ?`
	args = append(args, f.EffectiveLimit())
	rs, err := db.queryApprovals(ctx, db.r, q, args...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: read approvals: %w", err)
	}
	return rs, nil
}

// AddApproval records by's approval at now; see [approval.Store].
func (db *DB) AddApproval(ctx context.Context, id, by string, now time.Time) (*approval.Request, error) {
	r, err := db.decide(ctx, id, now, func(r *approval.Request) error {
		if by == "" {
			return errors.New("approver is required")
		}
		for _, v := range r.Approvals {
			if strings.EqualFold(v.By, by) {
				return approval.ErrSameApprover
			}
		}
		r.Approvals = append(r.Approvals, approval.Verdict{By: by, At: now.UTC()})
		if len(r.Approvals) >= r.Required {
			r.Status, r.DecidedAt = approval.StatusApproved, now.UTC()
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("sqlite: add approval to %q: %w", id, err)
	}
	return r, nil
}

// Deny records by's denial at now; see [approval.Store].
func (db *DB) Deny(ctx context.Context, id, by, code, text string, now time.Time) (*approval.Request, error) {
	r, err := db.decide(ctx, id, now, func(r *approval.Request) error {
		if by == "" || code == "" {
			return errors.New("denier and code are required")
		}
		r.Status, r.DecidedAt = approval.StatusDenied, now.UTC()
		r.DeniedBy, r.DenyCode, r.DenyText = by, code, text
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("sqlite: deny %q: %w", id, err)
	}
	return r, nil
}

// decide applies change to the pending request with the id, in one transaction. If
// the request has expired at now it marks it expired instead and returns
// approval.ErrExpired.
func (db *DB) decide(ctx context.Context, id string, now time.Time, change func(*approval.Request) error) (r *approval.Request, err error) {
	w, err := db.writer()
	if err != nil {
		return nil, err
	}
	tx, err := w.BeginTx(ctx, nil) // IMMEDIATE: the write lock is ours from here
	if err != nil {
		return nil, err
	}
	committed := false
	defer func() {
		if !committed {
			tx.Rollback()
		}
	}()
	r, err = scanApproval(tx.QueryRowContext(ctx, `SELECT `+approvalColumns+` FROM approvals WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, approval.ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	switch {
	case r.Status == approval.StatusExpired:
		return nil, approval.ErrExpired
	case r.Status != approval.StatusPending:
		return nil, approval.ErrNotPending
	case !now.Before(r.ExpiresAt):
		if _, err := tx.ExecContext(ctx, `UPDATE approvals SET status = 'expired', decided_at = ?
WHERE id = ? AND status = 'pending'`, approvalTime(now), id); err != nil {
			return nil, err
		}
		if err := tx.Commit(); err != nil {
			return nil, err
		}
		committed = true
		return nil, approval.ErrExpired
	}
	if err := change(r); err != nil {
		return nil, err
	}
	verdicts, err := marshalVerdicts(r.Approvals)
	if err != nil {
		return nil, err
	}
	res, err := tx.ExecContext(ctx, `UPDATE approvals
SET status = ?, approvals = ?, denied_by = ?, deny_code = ?, deny_text = ?, decided_at = ?
WHERE id = ? AND status = 'pending' AND expires_at > ?`,
		string(r.Status), verdicts, r.DeniedBy, r.DenyCode, r.DenyText, nullTime(r.DecidedAt), id, approvalTime(now))
	if err != nil {
		return nil, err
	}
	if n, err := res.RowsAffected(); err != nil {
		return nil, err
	} else if n != 1 {
		return nil, approval.ErrNotPending // cannot happen: the transaction holds the write lock
	}
	if err := tx.Commit(); err != nil {
		return nil, err
	}
	committed = true
	return r, nil
}

// Consume marks the approved request with the id used, if callHash is its call hash
// and it has not expired at now; see [approval.Store]. The UPDATE is the decision;
// the read after a refusal only names the reason.
func (db *DB) Consume(ctx context.Context, id, callHash string, now time.Time) (r *approval.Request, err error) {
	defer func() {
		if err != nil {
			err = fmt.Errorf("sqlite: consume approval %q: %w", id, err)
		}
	}()
	w, err := db.writer()
	if err != nil {
		return nil, err
	}
	tx, err := w.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback() // after Commit, a no-op
	r, err = scanApproval(tx.QueryRowContext(ctx, `UPDATE approvals SET status = 'used', used_at = ?
WHERE id = ? AND status = 'approved' AND call_hash = ? AND expires_at > ?
RETURNING `+approvalColumns, approvalTime(now), id, callHash, approvalTime(now)))
	if err == nil {
		if err := tx.Commit(); err != nil {
			return nil, err
		}
		return r, nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return nil, err
	}
	var status, hash string
	err = tx.QueryRowContext(ctx, `SELECT status, call_hash FROM approvals WHERE id = ?`, id).Scan(&status, &hash)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil, approval.ErrNotFound
	case err != nil:
		return nil, err
	case hash != callHash:
		return nil, approval.ErrMismatch
	}
	switch approval.Status(status) {
	case approval.StatusUsed:
		return nil, approval.ErrUsed
	case approval.StatusApproved: // and so past its expiry
		return nil, approval.ErrExpired
	case approval.StatusExpired:
		return nil, fmt.Errorf("%w: %w", approval.ErrNotApproved, approval.ErrExpired)
	default:
		return nil, approval.ErrNotApproved
	}
}

// ExpireApprovals marks every pending request whose expiry is at or before now
// expired, with DecidedAt now, and returns them, oldest first. One UPDATE does it, so
// a request is returned by one call only.
func (db *DB) ExpireApprovals(ctx context.Context, now time.Time) ([]approval.Request, error) {
	w, err := db.writer()
	if err != nil {
		return nil, fmt.Errorf("sqlite: expire approvals: %w", err)
	}
	rs, err := db.queryApprovals(ctx, w, `UPDATE approvals SET status = 'expired', decided_at = ?
WHERE status = 'pending' AND expires_at <= ?
RETURNING `+approvalColumns, approvalTime(now), approvalTime(now))
	if err != nil {
		return nil, fmt.Errorf("sqlite: expire approvals: %w", err)
	}
	slices.SortFunc(rs, func(a, b approval.Request) int {
		return cmp.Or(a.CreatedAt.Compare(b.CreatedAt), cmp.Compare(a.ID, b.ID))
	})
	return rs, nil
}

// DeclineCounts counts the requests denied at or after since, by deny code.
func (db *DB) DeclineCounts(ctx context.Context, since time.Time) (map[string]int, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT deny_code, count(*) FROM approvals
WHERE status = 'denied' AND decided_at >= ? GROUP BY deny_code`, approvalTime(since))
	if err != nil {
		return nil, fmt.Errorf("sqlite: count declines: %w", err)
	}
	defer rows.Close()
	counts := map[string]int{}
	for rows.Next() {
		var code string
		var n int
		if err := rows.Scan(&code, &n); err != nil {
			return nil, fmt.Errorf("sqlite: count declines: %w", err)
		}
		counts[code] = n
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: count declines: %w", err)
	}
	return counts, nil
}

// rowQuerier is what *sql.DB and *sql.Tx have in common here.
type rowQuerier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// queryApprovals runs q, which returns approvalColumns, and reads every row.
func (db *DB) queryApprovals(ctx context.Context, q rowQuerier, query string, args ...any) ([]approval.Request, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var rs []approval.Request
	for rows.Next() {
		r, err := scanApproval(rows)
		if err != nil {
			return nil, err
		}
		rs = append(rs, *r)
	}
	return rs, rows.Err()
}

// scanner is what *sql.Row and *sql.Rows have in common.
type scanner interface {
	Scan(dest ...any) error
}

// scanApproval reads one row of approvalColumns.
func scanApproval(s scanner) (*approval.Request, error) {
	var (
		r                        approval.Request
		args, rules, factors, vs string
		status                   string
		created, expires         string
		decided, used            sql.NullString
	)
	if err := s.Scan(&r.ID, &r.CallHash, &r.Tool, &r.Upstream, &args, &r.Agent, &r.User, &r.Task, &r.SessionID,
		&r.Reason, &rules, &r.PolicyVersion, &r.Risk, &factors, &r.Explanation, &r.Undo, &status, &r.Required,
		&vs, &r.DeniedBy, &r.DenyCode, &r.DenyText, &created, &expires, &decided, &used); err != nil {
		return nil, err
	}
	r.Status = approval.Status(status)
	r.Arguments = json.RawMessage(args)
	if err := json.Unmarshal([]byte(rules), &r.Rules); err != nil {
		return nil, fmt.Errorf("approval %q: rules: %w", r.ID, err)
	}
	if err := json.Unmarshal([]byte(factors), &r.RiskFactors); err != nil {
		return nil, fmt.Errorf("approval %q: risk_factors: %w", r.ID, err)
	}
	if len(r.Rules) == 0 {
		r.Rules = nil
	}
	if len(r.RiskFactors) == 0 {
		r.RiskFactors = nil
	}
	var verdicts []verdictJSON
	if err := json.Unmarshal([]byte(vs), &verdicts); err != nil {
		return nil, fmt.Errorf("approval %q: approvals: %w", r.ID, err)
	}
	for _, v := range verdicts {
		at, err := parseTime(v.At)
		if err != nil {
			return nil, fmt.Errorf("approval %q: approvals: %w", r.ID, err)
		}
		r.Approvals = append(r.Approvals, approval.Verdict{By: v.By, At: at})
	}
	var err error
	if r.CreatedAt, err = parseTime(created); err != nil {
		return nil, fmt.Errorf("approval %q: created_at: %w", r.ID, err)
	}
	if r.ExpiresAt, err = parseTime(expires); err != nil {
		return nil, fmt.Errorf("approval %q: expires_at: %w", r.ID, err)
	}
	for _, t := range []struct {
		name string
		s    sql.NullString
		dst  *time.Time
	}{{"decided_at", decided, &r.DecidedAt}, {"used_at", used, &r.UsedAt}} {
		if t.s.Valid {
			if *t.dst, err = parseTime(t.s.String); err != nil {
				return nil, fmt.Errorf("approval %q: %s: %w", r.ID, t.name, err)
			}
		}
	}
	return &r, nil
}
