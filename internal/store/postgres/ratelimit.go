package postgres

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/chaperone-dev/chaperone/internal/contain"
)

// Rate limits shared by replicas: *DB is a contain.RateStore. A take is one upsert: the
// bucket's refill is computed by the database from the stored tokens and time and the
// caller's clock, under the row's lock, so concurrent takes from any replica are applied
// one after another.

var _ contain.RateStore = (*DB)(nil)

// shTakeToken takes a token if the refilled bucket has one. $1 limiter, $2 key, $3
// burst, $4 rate per second, $5 now, $6 when a fresh bucket is full again, $7 the least
// that grants (1 - contain.TokenSlack). A now before the stored time earns nothing and
// leaves the stored time, as contain.Limiter does. full_ns saturates below the largest
// bigint.
const shTakeToken = `INSERT INTO rate_buckets AS b (limiter, key, tokens, at_ns, full_ns, granted)
VALUES ($1, $2, $3::float8 - 1, $5::bigint, $6, true)
ON CONFLICT (limiter, key) DO UPDATE SET (tokens, at_ns, full_ns, granted) = (
	SELECT r.rest, r.at_ns, least(r.at_ns::float8 + ceil(($3::float8 - r.rest) / $4::float8 * 1e9), 9.2e18)::bigint, r.ok
	FROM (
		SELECT s.at_ns, s.ok, CASE WHEN s.ok THEN s.t - 1 ELSE s.t END AS rest
		FROM (
			SELECT q.t, q.at_ns, q.t >= $7::float8 AS ok
			FROM (SELECT least($3::float8, b.tokens + greatest($5::bigint - b.at_ns, 0)::float8 / 1e9 * $4::float8) AS t,
				greatest(b.at_ns, $5::bigint) AS at_ns) q
		) s
	) r
)
RETURNING granted, tokens`

// TakeToken takes one token from a shared bucket; see [contain.RateStore].
func (db *DB) TakeToken(ctx context.Context, limiter, key string, perSecond float64, burst int, now time.Time) (ok bool, retryAfter time.Duration, err error) {
	if err := db.writable(); err != nil {
		return false, 0, fmt.Errorf("postgres: take token: %w", err)
	}
	if !(perSecond > 0) || math.IsInf(perSecond, 0) || burst < 1 {
		return false, 0, fmt.Errorf("postgres: take token: rate must be positive and finite and burst at least 1, got %g and %d", perSecond, burst)
	}
	t := shNS(now)
	fresh := shAddNS(t, math.Ceil(1e9/perSecond))
	var tokens float64
	if err := db.pool.QueryRow(ctx, shTakeToken, limiter, shKey(key), float64(burst), perSecond, t, fresh, 1-contain.TokenSlack).
		Scan(&ok, &tokens); err != nil {
		return false, 0, fmt.Errorf("postgres: take token: %w", err)
	}
	if ok {
		return true, 0, nil
	}
	return false, shSeconds((1 - tokens) / perSecond), nil
}

// ExpireRateBuckets deletes the rate buckets that are full by now, which are the same as
// none, in batches, never waiting for a bucket in use, and reports how many it deleted.
// A replica calls it periodically, as it calls [contain.Ledger.Expire].
func (db *DB) ExpireRateBuckets(ctx context.Context, now time.Time) (int, error) {
	if err := db.writable(); err != nil {
		return 0, fmt.Errorf("postgres: expire rate buckets: %w", err)
	}
	n := 0
	for {
		tag, err := db.pool.Exec(ctx, `DELETE FROM rate_buckets WHERE (limiter, key) IN (
	SELECT limiter, key FROM rate_buckets WHERE full_ns <= $1 LIMIT $2 FOR UPDATE SKIP LOCKED)`, shNS(now), shExpireBatch)
		if err != nil {
			return n, fmt.Errorf("postgres: expire rate buckets: %w", err)
		}
		n += int(tag.RowsAffected())
		if tag.RowsAffected() < shExpireBatch {
			return n, nil
		}
	}
}

// shAddNS returns t + d nanoseconds (d >= 0), saturating near the largest int64, as
// shTakeToken does.
func shAddNS(t int64, d float64) int64 {
	const limit = 9.2e18
	if !(d < limit) || float64(t)+d >= limit {
		return limit
	}
	return t + int64(d)
}

// shSeconds converts seconds to a Duration, rounded to the nanosecond and saturating at
// the longest Duration.
func shSeconds(s float64) time.Duration {
	ns := math.Round(s * 1e9)
	switch {
	case !(ns > 0):
		return 0
	case ns >= math.MaxInt64:
		return math.MaxInt64
	}
	return time.Duration(ns)
}
