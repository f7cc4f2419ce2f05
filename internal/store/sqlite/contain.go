package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/chaperone-dev/chaperone/internal/contain"
	"github.com/chaperone-dev/chaperone/internal/store"
)

var _ contain.KillStore = (*DB)(nil)

// EngageKill stores an engaged kill; a scope with an engaged kill is refused with
// [contain.ErrKillEngaged] by the table's unique index, atomically.
func (db *DB) EngageKill(ctx context.Context, k contain.Kill) (contain.Kill, error) {
	w, err := db.writer()
	if err != nil {
		return contain.Kill{}, fmt.Errorf("sqlite: engage kill %s: %w", k.Scope, err)
	}
	res, err := w.ExecContext(ctx, `INSERT INTO kills (scope, reason, engaged_by, engaged_at) VALUES (?, ?, ?, ?)`,
		k.Scope.String(), k.Reason, k.By, approvalTime(k.EngagedAt))
	if err != nil {
		if strings.Contains(err.Error(), "UNIQUE constraint failed") {
			return contain.Kill{}, fmt.Errorf("sqlite: engage kill %s: %w", k.Scope, contain.ErrKillEngaged)
		}
		return contain.Kill{}, fmt.Errorf("sqlite: engage kill %s: %w", k.Scope, err)
	}
	if k.ID, err = res.LastInsertId(); err != nil {
		return contain.Kill{}, fmt.Errorf("sqlite: engage kill %s: %w", k.Scope, err)
	}
	k.EngagedAt = k.EngagedAt.UTC()
	return k, nil
}

// LiftKill marks the scope's engaged kill lifted.
func (db *DB) LiftKill(ctx context.Context, scope contain.Scope, by, reason string, at time.Time) (contain.Kill, error) {
	w, err := db.writer()
	if err != nil {
		return contain.Kill{}, fmt.Errorf("sqlite: lift kill %s: %w", scope, err)
	}
	rows, err := w.QueryContext(ctx, `UPDATE kills SET lifted_by = ?, lifted_reason = ?, lifted_at = ?
WHERE scope = ? AND lifted_at IS NULL RETURNING `+killColumns, by, reason, approvalTime(at), scope.String())
	if err != nil {
		return contain.Kill{}, fmt.Errorf("sqlite: lift kill %s: %w", scope, err)
	}
	kills, err := scanKills(rows)
	if err != nil {
		return contain.Kill{}, fmt.Errorf("sqlite: lift kill %s: %w", scope, err)
	}
	if len(kills) == 0 {
		return contain.Kill{}, fmt.Errorf("sqlite: lift kill %s: %w", scope, contain.ErrNotKilled)
	}
	return kills[0], nil
}

// Kills returns every kill, oldest first.
func (db *DB) Kills(ctx context.Context) ([]contain.Kill, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT `+killColumns+` FROM kills ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("sqlite: read kills: %w", err)
	}
	kills, err := scanKills(rows)
	if err != nil {
		return nil, fmt.Errorf("sqlite: read kills: %w", err)
	}
	return kills, nil
}

const killColumns = `id, scope, reason, engaged_by, engaged_at, lifted_by, lifted_reason, lifted_at`

func scanKills(rows *sql.Rows) ([]contain.Kill, error) {
	defer rows.Close()
	var out []contain.Kill
	for rows.Next() {
		var k contain.Kill
		var scope, engaged string
		var liftedBy, liftedReason, lifted sql.NullString
		if err := rows.Scan(&k.ID, &scope, &k.Reason, &k.By, &engaged, &liftedBy, &liftedReason, &lifted); err != nil {
			return nil, err
		}
		var err error
		if k.Scope, err = contain.ParseScope(scope); err != nil {
			return nil, fmt.Errorf("kill %d: %w", k.ID, err)
		}
		if k.EngagedAt, err = time.Parse(time.RFC3339Nano, engaged); err != nil {
			return nil, fmt.Errorf("kill %d: engaged_at: %w", k.ID, err)
		}
		if lifted.Valid {
			if k.LiftedAt, err = time.Parse(time.RFC3339Nano, lifted.String); err != nil {
				return nil, fmt.Errorf("kill %d: lifted_at: %w", k.ID, err)
			}
			k.LiftedBy, k.LiftedReason = liftedBy.String, liftedReason.String
		}
		out = append(out, k)
	}
	return out, rows.Err()
}

// BreakerRecord is an agent's breaker that is not closed, as stored.
type BreakerRecord = store.BreakerRecord

// SetBreaker stores the agent's breaker state; state "closed" deletes it.
func (db *DB) SetBreaker(ctx context.Context, r BreakerRecord) error {
	w, err := db.writer()
	if err != nil {
		return fmt.Errorf("sqlite: set breaker %q: %w", r.Agent, err)
	}
	if r.State == "closed" {
		_, err = w.ExecContext(ctx, `DELETE FROM breakers WHERE agent = ?`, r.Agent)
	} else {
		_, err = w.ExecContext(ctx, `INSERT INTO breakers (agent, state, signal, detail, opened_at) VALUES (?, ?, ?, ?, ?)
ON CONFLICT (agent) DO UPDATE SET state = excluded.state, signal = excluded.signal, detail = excluded.detail, opened_at = excluded.opened_at`,
			r.Agent, r.State, r.Signal, r.Detail, approvalTime(r.OpenedAt))
	}
	if err != nil {
		return fmt.Errorf("sqlite: set breaker %q: %w", r.Agent, err)
	}
	return nil
}

// Breakers returns the stored breakers that are not closed.
func (db *DB) Breakers(ctx context.Context) ([]BreakerRecord, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT agent, state, signal, detail, opened_at FROM breakers ORDER BY agent`)
	if err != nil {
		return nil, fmt.Errorf("sqlite: read breakers: %w", err)
	}
	defer rows.Close()
	var out []BreakerRecord
	for rows.Next() {
		var r BreakerRecord
		var at string
		if err := rows.Scan(&r.Agent, &r.State, &r.Signal, &r.Detail, &at); err != nil {
			return nil, fmt.Errorf("sqlite: read breakers: %w", err)
		}
		if r.OpenedAt, err = time.Parse(time.RFC3339Nano, at); err != nil {
			return nil, fmt.Errorf("sqlite: read breakers: agent %q: %w", r.Agent, err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: read breakers: %w", err)
	}
	return out, nil
}

// PutBaseline stores an agent's encoded baseline.
func (db *DB) PutBaseline(ctx context.Context, agent string, profile []byte, at time.Time) error {
	w, err := db.writer()
	if err != nil {
		return fmt.Errorf("sqlite: put baseline %q: %w", agent, err)
	}
	_, err = w.ExecContext(ctx, `INSERT INTO baselines (agent, profile, updated_at) VALUES (?, ?, ?)
ON CONFLICT (agent) DO UPDATE SET profile = excluded.profile, updated_at = excluded.updated_at`,
		agent, string(profile), approvalTime(at))
	if err != nil {
		return fmt.Errorf("sqlite: put baseline %q: %w", agent, err)
	}
	return nil
}

// Baselines calls f with every stored baseline; an error from f stops the walk and is
// returned.
func (db *DB) Baselines(ctx context.Context, f func(agent string, profile []byte) error) error {
	rows, err := db.r.QueryContext(ctx, `SELECT agent, profile FROM baselines ORDER BY agent`)
	if err != nil {
		return fmt.Errorf("sqlite: read baselines: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var agent, profile string
		if err := rows.Scan(&agent, &profile); err != nil {
			return fmt.Errorf("sqlite: read baselines: %w", err)
		}
		if err := f(agent, []byte(profile)); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("sqlite: read baselines: %w", err)
	}
	return nil
}
