package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/chaperone-dev/chaperone/internal/contain"
	"github.com/chaperone-dev/chaperone/internal/store"
)

// EngageKill stores an engaged kill and returns it with its ID and EngagedAt as stored
// (UTC, microseconds). A scope with an engaged kill is refused with
// [contain.ErrKillEngaged] by the table's unique index, atomically across replicas.
// Replicas are told (TopicKill).
func (db *DB) EngageKill(ctx context.Context, k contain.Kill) (contain.Kill, error) {
	if err := db.writable(); err != nil {
		return contain.Kill{}, fmt.Errorf("postgres: engage kill %s: %w", k.Scope, err)
	}
	k.EngagedAt = pgTime(k.EngagedAt)
	err := db.pool.QueryRow(ctx, `WITH w AS (
	INSERT INTO kills (scope, reason, engaged_by, engaged_at) VALUES ($3, $4, $5, $6) RETURNING id
) SELECT id, pg_notify($1, $2) FROM w`, db.channel, pgPayload(TopicKill, ""),
		k.Scope.String(), k.Reason, k.By, k.EngagedAt).Scan(&k.ID, nil)
	if err != nil {
		if pe, ok := errors.AsType[*pgconn.PgError](err); ok && pe.Code == "23505" && pe.ConstraintName == "kills_engaged" {
			return contain.Kill{}, fmt.Errorf("postgres: engage kill %s: %w", k.Scope, contain.ErrKillEngaged)
		}
		return contain.Kill{}, fmt.Errorf("postgres: engage kill %s: %w", k.Scope, err)
	}
	return k, nil
}

// LiftKill marks the scope's engaged kill lifted, or fails with an error wrapping
// [contain.ErrNotKilled]. Replicas are told (TopicKill).
func (db *DB) LiftKill(ctx context.Context, scope contain.Scope, by, reason string, at time.Time) (contain.Kill, error) {
	if err := db.writable(); err != nil {
		return contain.Kill{}, fmt.Errorf("postgres: lift kill %s: %w", scope, err)
	}
	rows, err := db.pool.Query(ctx, `WITH w AS (
	UPDATE kills SET lifted_by = $3, lifted_reason = $4, lifted_at = $5
	WHERE scope = $6 AND lifted_at IS NULL RETURNING `+pgKillColumns+`
) SELECT w.*, pg_notify($1, $2) FROM w`, db.channel, pgPayload(TopicKill, ""), by, reason, pgTime(at), scope.String())
	if err != nil {
		return contain.Kill{}, fmt.Errorf("postgres: lift kill %s: %w", scope, err)
	}
	kills, err := pgScanKills(rows, true)
	if err != nil {
		return contain.Kill{}, fmt.Errorf("postgres: lift kill %s: %w", scope, err)
	}
	if len(kills) == 0 {
		return contain.Kill{}, fmt.Errorf("postgres: lift kill %s: %w", scope, contain.ErrNotKilled)
	}
	return kills[0], nil
}

// Kills returns every kill, oldest first.
func (db *DB) Kills(ctx context.Context) ([]contain.Kill, error) {
	rows, err := db.pool.Query(ctx, `SELECT `+pgKillColumns+` FROM kills ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("postgres: read kills: %w", err)
	}
	kills, err := pgScanKills(rows, false)
	if err != nil {
		return nil, fmt.Errorf("postgres: read kills: %w", err)
	}
	return kills, nil
}

const pgKillColumns = `id, scope, reason, engaged_by, engaged_at, lifted_by, lifted_reason, lifted_at`

// pgScanKills reads rows of pgKillColumns, followed by a column it skips if notified.
func pgScanKills(rows pgx.Rows, notified bool) ([]contain.Kill, error) {
	defer rows.Close()
	var out []contain.Kill
	for rows.Next() {
		var (
			k                      contain.Kill
			scope                  string
			engaged                time.Time
			liftedBy, liftedReason *string
			lifted                 *time.Time
		)
		dest := []any{&k.ID, &scope, &k.Reason, &k.By, &engaged, &liftedBy, &liftedReason, &lifted}
		if notified {
			dest = append(dest, nil)
		}
		if err := rows.Scan(dest...); err != nil {
			return nil, err
		}
		var err error
		if k.Scope, err = contain.ParseScope(scope); err != nil {
			return nil, fmt.Errorf("kill %d: %w", k.ID, err)
		}
		k.EngagedAt = pgReadTime(&engaged)
		if lifted != nil {
			k.LiftedAt = pgReadTime(lifted)
			if liftedBy != nil {
				k.LiftedBy = *liftedBy
			}
			if liftedReason != nil {
				k.LiftedReason = *liftedReason
			}
		}
		out = append(out, k)
	}
	return out, rows.Err()
}

// SetBreaker stores the agent's breaker state; state "closed" deletes it.
func (db *DB) SetBreaker(ctx context.Context, r store.BreakerRecord) error {
	if err := db.writable(); err != nil {
		return fmt.Errorf("postgres: set breaker %q: %w", r.Agent, err)
	}
	var err error
	if r.State == "closed" {
		_, err = db.pool.Exec(ctx, `DELETE FROM breakers WHERE agent = $1`, r.Agent)
	} else {
		_, err = db.pool.Exec(ctx, `INSERT INTO breakers (agent, state, signal, detail, opened_at) VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (agent) DO UPDATE SET state = excluded.state, signal = excluded.signal, detail = excluded.detail, opened_at = excluded.opened_at`,
			r.Agent, r.State, r.Signal, r.Detail, pgTime(r.OpenedAt))
	}
	if err != nil {
		return fmt.Errorf("postgres: set breaker %q: %w", r.Agent, err)
	}
	return nil
}

// Breakers returns the stored breakers that are not closed, ordered by agent.
func (db *DB) Breakers(ctx context.Context) ([]store.BreakerRecord, error) {
	rows, err := db.pool.Query(ctx, `SELECT agent, state, signal, detail, opened_at FROM breakers ORDER BY agent`)
	if err != nil {
		return nil, fmt.Errorf("postgres: read breakers: %w", err)
	}
	defer rows.Close()
	var out []store.BreakerRecord
	for rows.Next() {
		var r store.BreakerRecord
		var at time.Time
		if err := rows.Scan(&r.Agent, &r.State, &r.Signal, &r.Detail, &at); err != nil {
			return nil, fmt.Errorf("postgres: read breakers: %w", err)
		}
		r.OpenedAt = pgReadTime(&at)
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("postgres: read breakers: %w", err)
	}
	return out, nil
}

// PutBaseline stores an agent's encoded baseline, which must be JSON; it is read back
// byte for byte.
func (db *DB) PutBaseline(ctx context.Context, agent string, profile []byte, at time.Time) error {
	if err := db.writable(); err != nil {
		return fmt.Errorf("postgres: put baseline %q: %w", agent, err)
	}
	_, err := db.pool.Exec(ctx, `INSERT INTO baselines (agent, profile, updated_at) VALUES ($1, $2::json, $3)
ON CONFLICT (agent) DO UPDATE SET profile = excluded.profile, updated_at = excluded.updated_at`,
		agent, string(profile), pgTime(at))
	if err != nil {
		return fmt.Errorf("postgres: put baseline %q: %w", agent, err)
	}
	return nil
}

// Baselines calls f with every stored baseline, ordered by agent; an error from f stops
// the walk and is returned. The baselines are read before f is first called, so that f
// may use the store without waiting for the connection the read holds.
func (db *DB) Baselines(ctx context.Context, f func(agent string, profile []byte) error) error {
	rows, err := db.pool.Query(ctx, `SELECT agent, profile FROM baselines ORDER BY agent`)
	if err != nil {
		return fmt.Errorf("postgres: read baselines: %w", err)
	}
	type baseline struct {
		agent   string
		profile []byte
	}
	all, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (baseline, error) {
		var b baseline
		err := r.Scan(&b.agent, &b.profile)
		return b, err
	})
	if err != nil {
		return fmt.Errorf("postgres: read baselines: %w", err)
	}
	for _, b := range all {
		if err := f(b.agent, b.profile); err != nil {
			return err
		}
	}
	return nil
}
