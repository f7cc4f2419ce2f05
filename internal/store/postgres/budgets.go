package postgres

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/chaperone-dev/chaperone/internal/contain"
)

// Budgets shared by replicas: *DB is a contain.LedgerStore.
//
// A take is one batch, sent in one round trip and run by the server as one implicit
// transaction: (1) upsert the context row with the reported use, which locks it; (2)
// take a transaction-level advisory lock per cap key, in ascending lock id order; (3)
// one statement that reads the context and the caps' windows, decides, and takes only if
// everything fits. Every transaction that changes a context or a cap's buckets (take,
// release) locks the context row first and then the cap keys in that order, so that two
// cannot deadlock; expiry never waits for a lock (SKIP LOCKED). Locks are held until the
// batch commits on the server, never across a round trip.

var _ contain.LedgerStore = (*DB)(nil)

const (
	// shMaxKey is the longest key stored as itself; a longer one is stored as its
	// SHA-256, so that no key is too long for an index entry.
	shMaxKey = 512
	// shExpireBatch bounds the rows one expiry statement deletes, so that each is short
	// and holds few locks.
	shExpireBatch = 5000
)

// shKey is how a key is stored: 0x00 and the key, or, if longer than shMaxKey, 0x01 and
// its SHA-256. The tag keeps a short key from ever equalling a long key's digest.
func shKey(k string) []byte {
	if len(k) <= shMaxKey {
		b := make([]byte, 1+len(k))
		copy(b[1:], k)
		return b
	}
	sum := sha256.Sum256([]byte(k))
	return append([]byte{1}, sum[:]...)
}

// shLockID is the advisory lock id of a cap key: the first 8 bytes of a SHA-256 over the
// store's channel (which names its schema) and the cap key, each length-prefixed. Two
// cap keys that share an id only wait for each other.
func (db *DB) shLockID(name, per string, key []byte) int64 {
	h := sha256.New()
	var n [8]byte
	for _, p := range [][]byte{[]byte("chaperone/budget-cap"), []byte(db.channel), []byte(name), []byte(per), key} {
		binary.BigEndian.PutUint64(n[:], uint64(len(p)))
		h.Write(n[:])
		h.Write(p)
	}
	return int64(binary.BigEndian.Uint64(h.Sum(nil)))
}

// shCapArgs are the columns of a take's or release's caps, as arrays for unnest.
type shCapArgs struct {
	caps, pers []string
	keys       [][]byte
	locks      []int64 // sorted and distinct: the order they are taken in
}

func (db *DB) shCapArgs(n int, at func(i int) (name, per, key string)) shCapArgs {
	a := shCapArgs{caps: make([]string, n), pers: make([]string, n), keys: make([][]byte, n), locks: make([]int64, n)}
	for i := range n {
		cp, per, key := at(i)
		a.caps[i], a.pers[i], a.keys[i] = cp, per, shKey(key)
		a.locks[i] = db.shLockID(cp, per, a.keys[i])
	}
	slices.Sort(a.locks)
	a.locks = slices.Compact(a.locks)
	return a
}

const (
	shTouchContext = `INSERT INTO budget_contexts AS c (context, steps, spend, tokens, last_at)
VALUES ($1, 0, $2, $3, $4)
ON CONFLICT (context) DO UPDATE SET
	spend = c.spend + excluded.spend,
	tokens = CASE WHEN c.tokens > 9223372036854775807 - excluded.tokens THEN 9223372036854775807
		ELSE c.tokens + excluded.tokens END,
	last_at = greatest(c.last_at, excluded.last_at)`

	// shLockCaps takes the advisory locks in the order of the array, which is sorted.
	shLockCaps = `SELECT pg_advisory_xact_lock(id) FROM unnest($1::bigint[]) AS id`

	// shTake decides and takes. Data-modifying CTEs see the statement's snapshot, taken
	// after the locks above: every change to these rows by a take or release that
	// committed before is visible, and none can be under way.
	shTake = `WITH c AS (
	SELECT steps, spend, tokens FROM budget_contexts WHERE context = $1
), t AS (
	SELECT * FROM unnest($6::text[], $7::text[], $8::bytea[], $9::bigint[], $10::bigint[], $11::bigint[], $12::float8[], $13::float8[])
		WITH ORDINALITY AS t(cap, per, key, wfrom, wcur, life, bound, amount, i)
), w AS (
	SELECT t.i, t.cap, t.per, t.key, t.life, t.amount,
		coalesce(s.used, 0) AS used,
		coalesce(s.used, 0) + t.amount <= t.bound AS fits,
		greatest(t.wcur, coalesce(s.newest, t.wcur)) AS start_ns
	FROM t LEFT JOIN LATERAL (
		SELECT sum(b.amount) AS used, max(b.start_ns) AS newest
		FROM budget_cap_buckets b
		WHERE b.cap = t.cap AND b.per = t.per AND b.key = t.key AND b.start_ns >= t.wfrom
	) s ON true
), ok AS (
	SELECT c.steps < $3 AND c.spend + $2 <= $4 AND c.tokens <= $5
		AND coalesce((SELECT bool_and(fits) FROM w), true) AS ok
	FROM c
), upc AS (
	UPDATE budget_contexts SET steps = steps + 1, spend = spend + $2
	WHERE context = $1 AND (SELECT ok FROM ok)
), upb AS (
	INSERT INTO budget_cap_buckets AS b (cap, per, key, start_ns, until_ns, amount)
	SELECT cap, per, key, start_ns, start_ns + life, amount FROM w WHERE (SELECT ok FROM ok)
	ON CONFLICT (cap, per, key, start_ns) DO UPDATE SET
		amount = b.amount + excluded.amount,
		until_ns = greatest(b.until_ns, excluded.until_ns)
)
SELECT ok.ok, c.steps, c.spend, c.tokens,
	(SELECT array_agg(used ORDER BY i) FROM w),
	(SELECT array_agg(start_ns ORDER BY i) FROM w)
FROM ok, c`
)

// TakeBudget takes what one call needs, atomically across replicas; see
// [contain.LedgerStore].
func (db *DB) TakeBudget(ctx context.Context, t contain.BudgetTake) (contain.BudgetTaken, error) {
	if err := db.writable(); err != nil {
		return contain.BudgetTaken{}, fmt.Errorf("postgres: take budget: %w", err)
	}
	n := len(t.Caps)
	a := db.shCapArgs(n, func(i int) (string, string, string) { c := &t.Caps[i]; return c.Name, c.Per, c.Key })
	froms, curs, lives := make([]int64, n), make([]int64, n), make([]int64, n)
	bounds, amounts := make([]float64, n), make([]float64, n)
	for i, c := range t.Caps {
		froms[i], curs[i] = c.Span()
		lives[i] = int64(c.BucketLife())
		bounds[i], amounts[i] = c.Bound(), c.Amount
	}
	maxSteps, spendBound, maxTokens := t.Bounds()
	ctxKey := shKey(t.Context)

	var (
		b      pgx.Batch
		ok     bool
		st     contain.BudgetState
		starts []int64
	)
	b.Queue(shTouchContext, ctxKey, t.ReportedSpend, t.ReportedTokens, t.At)
	if len(a.locks) > 0 {
		b.Queue(shLockCaps, a.locks)
	}
	b.Queue(shTake, ctxKey, t.Cost, maxSteps, spendBound, maxTokens,
		a.caps, a.pers, a.keys, froms, curs, lives, bounds, amounts).QueryRow(func(row pgx.Row) error {
		return row.Scan(&ok, &st.Steps, &st.Spend, &st.Tokens, &st.CapUsed, &starts)
	})
	if err := db.pool.SendBatch(ctx, &b).Close(); err != nil {
		return contain.BudgetTaken{}, fmt.Errorf("postgres: take budget: %w", err)
	}
	if !ok {
		if ex := t.Check(st); ex != nil {
			return contain.BudgetTaken{}, ex
		}
		// The database and Check disagree only if float rounding differs between them:
		// refuse, as the database did.
		return contain.BudgetTaken{}, errors.New("postgres: take budget: refused by the database although it fits")
	}
	if len(starts) != n {
		return contain.BudgetTaken{}, fmt.Errorf("postgres: take budget: %d buckets returned for %d caps", len(starts), n)
	}
	taken := contain.BudgetTaken{Context: t.Context, Cost: t.Cost}
	if n > 0 {
		taken.Caps = make([]contain.CapTaken, n)
		for i, c := range t.Caps {
			taken.Caps[i] = contain.CapTaken{Name: c.Name, Per: c.Per, Key: c.Key, Start: starts[i], Amount: c.Amount}
		}
	}
	return taken, nil
}

const (
	shReleaseContext = `UPDATE budget_contexts SET steps = greatest(steps - 1, 0), spend = greatest(spend - $2, 0)
WHERE context = $1`

	shReleaseCaps = `UPDATE budget_cap_buckets b SET amount = greatest(b.amount - t.amount, 0)
FROM unnest($1::text[], $2::text[], $3::bytea[], $4::bigint[], $5::float8[]) AS t(cap, per, key, start_ns, amount)
WHERE b.cap = t.cap AND b.per = t.per AND b.key = t.key AND b.start_ns = t.start_ns`
)

// ReleaseBudget gives back what TakeBudget took; see [contain.LedgerStore].
func (db *DB) ReleaseBudget(ctx context.Context, t contain.BudgetTaken) error {
	if err := db.writable(); err != nil {
		return fmt.Errorf("postgres: release budget: %w", err)
	}
	n := len(t.Caps)
	a := db.shCapArgs(n, func(i int) (string, string, string) { c := &t.Caps[i]; return c.Name, c.Per, c.Key })
	starts, amounts := make([]int64, n), make([]float64, n)
	for i, c := range t.Caps {
		starts[i], amounts[i] = c.Start, c.Amount
	}
	var b pgx.Batch
	b.Queue(shReleaseContext, shKey(t.Context), t.Cost)
	if n > 0 {
		b.Queue(shLockCaps, a.locks)
		b.Queue(shReleaseCaps, a.caps, a.pers, a.keys, starts, amounts)
	}
	if err := db.pool.SendBatch(ctx, &b).Close(); err != nil {
		return fmt.Errorf("postgres: release budget: %w", err)
	}
	return nil
}

// ReportBudget adds reported use to a context; see [contain.LedgerStore].
func (db *DB) ReportBudget(ctx context.Context, key string, at time.Time, spend float64, tokens int64) error {
	if err := db.writable(); err != nil {
		return fmt.Errorf("postgres: report budget: %w", err)
	}
	if _, err := db.pool.Exec(ctx, shTouchContext, shKey(key), spend, tokens, at.UTC()); err != nil {
		return fmt.Errorf("postgres: report budget: %w", err)
	}
	return nil
}

// BudgetUsage reports a context's use; see [contain.LedgerStore].
func (db *DB) BudgetUsage(ctx context.Context, key string) (steps int64, spend float64, tokens int64, err error) {
	err = db.pool.QueryRow(ctx, `SELECT steps, spend, tokens FROM budget_contexts WHERE context = $1`, shKey(key)).
		Scan(&steps, &spend, &tokens)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return 0, 0, 0, nil
	case err != nil:
		return 0, 0, 0, fmt.Errorf("postgres: budget usage: %w", err)
	}
	return steps, spend, tokens, nil
}

// CapUsage reports the use of a cap's window; see [contain.LedgerStore].
func (db *DB) CapUsage(ctx context.Context, w contain.CapWindow) (float64, error) {
	from, _ := w.Span()
	var used float64
	err := db.pool.QueryRow(ctx, `SELECT coalesce(sum(amount), 0) FROM budget_cap_buckets
WHERE cap = $1 AND per = $2 AND key = $3 AND start_ns >= $4`, w.Name, w.Per, shKey(w.Key), from).Scan(&used)
	if err != nil {
		return 0, fmt.Errorf("postgres: cap usage: %w", err)
	}
	return used, nil
}

const (
	shExpireContexts = `DELETE FROM budget_contexts WHERE context IN (
	SELECT context FROM budget_contexts WHERE last_at < $1 LIMIT $2 FOR UPDATE SKIP LOCKED)`

	// shExpireBuckets deletes buckets that no longer count and reports how many it
	// deleted and how many cap keys it left without a bucket. The NOT EXISTS sees the
	// statement's snapshot, in which the deleted rows still are: they are excluded by
	// name.
	shExpireBuckets = `WITH gone AS (
	DELETE FROM budget_cap_buckets WHERE (cap, per, key, start_ns) IN (
		SELECT cap, per, key, start_ns FROM budget_cap_buckets WHERE until_ns <= $1
		LIMIT $2 FOR UPDATE SKIP LOCKED)
	RETURNING cap, per, key, start_ns
)
SELECT (SELECT count(*) FROM gone),
	(SELECT count(*) FROM (SELECT DISTINCT cap, per, key FROM gone) g WHERE NOT EXISTS (
		SELECT 1 FROM budget_cap_buckets b
		WHERE b.cap = g.cap AND b.per = g.per AND b.key = g.key
			AND NOT EXISTS (SELECT 1 FROM gone x
				WHERE x.cap = b.cap AND x.per = b.per AND x.key = b.key AND x.start_ns = b.start_ns)))`
)

// ExpireBudgets deletes idle contexts and buckets that no longer count, in batches; see
// [contain.LedgerStore].
func (db *DB) ExpireBudgets(ctx context.Context, idleBefore, now time.Time) (contexts, keys int, err error) {
	if err := db.writable(); err != nil {
		return 0, 0, fmt.Errorf("postgres: expire budgets: %w", err)
	}
	for {
		tag, err := db.pool.Exec(ctx, shExpireContexts, idleBefore, shExpireBatch)
		if err != nil {
			return contexts, keys, fmt.Errorf("postgres: expire budget contexts: %w", err)
		}
		contexts += int(tag.RowsAffected())
		if tag.RowsAffected() < shExpireBatch {
			break
		}
	}
	nowNS := shNS(now)
	for {
		var deleted, emptied int64
		if err := db.pool.QueryRow(ctx, shExpireBuckets, nowNS, shExpireBatch).Scan(&deleted, &emptied); err != nil {
			return contexts, keys, fmt.Errorf("postgres: expire cap buckets: %w", err)
		}
		keys += int(emptied)
		if deleted < shExpireBatch {
			return contexts, keys, nil
		}
	}
}

// shNS returns t in nanoseconds since the Unix epoch, saturating outside the years
// 1678 to 2262 that an int64 holds.
func shNS(t time.Time) int64 {
	switch {
	case t.Before(time.Unix(0, math.MinInt64)):
		return math.MinInt64
	case t.After(time.Unix(0, math.MaxInt64)):
		return math.MaxInt64
	}
	return t.UnixNano()
}
