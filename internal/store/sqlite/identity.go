package sqlite

import (
	"context"
	"crypto/ed25519"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/chaperone-dev/chaperone/internal/identity"
)

var (
	_ identity.AgentStore = (*DB)(nil)
	_ identity.TaskStore  = (*DB)(nil)
)

// PutAgent stores a new agent. It returns an error wrapping [identity.ErrAgentExists]
// if an agent with the same id is stored, revoked or not.
func (db *DB) PutAgent(ctx context.Context, rec identity.AgentRecord) error {
	w, err := db.writer()
	if err != nil {
		return fmt.Errorf("sqlite: put agent %q: %w", rec.Agent.ID, err)
	}
	args, err := agentArgs(rec)
	if err != nil {
		return fmt.Errorf("sqlite: put agent %q: %w", rec.Agent.ID, err)
	}
	res, err := w.ExecContext(ctx, `INSERT INTO agents (id, owner, purpose, environment, capabilities, autonomy, labels,
	status, status_reason, secret_sha256, public_key, created_at, updated_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (id) DO NOTHING`, args...)
	if err != nil {
		return fmt.Errorf("sqlite: put agent %q: %w", rec.Agent.ID, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("sqlite: put agent %q: %w", rec.Agent.ID, err)
	} else if n == 0 {
		return fmt.Errorf("sqlite: put agent %q: %w", rec.Agent.ID, identity.ErrAgentExists)
	}
	return nil
}

// UpdateAgent replaces everything but the id and creation time of a stored agent. It
// returns an error wrapping [identity.ErrUnknownAgent] if there is none.
func (db *DB) UpdateAgent(ctx context.Context, rec identity.AgentRecord) error {
	w, err := db.writer()
	if err != nil {
		return fmt.Errorf("sqlite: update agent %q: %w", rec.Agent.ID, err)
	}
	args, err := agentArgs(rec)
	if err != nil {
		return fmt.Errorf("sqlite: update agent %q: %w", rec.Agent.ID, err)
	}
	// args is (id, owner ... public_key, created_at, updated_at): set owner through
	// public_key and updated_at, keep created_at, select by id.
	set := append(slices.Clone(args[1:11]), args[12], args[0])
	res, err := w.ExecContext(ctx, `UPDATE agents SET owner = ?, purpose = ?, environment = ?, capabilities = ?,
	autonomy = ?, labels = ?, status = ?, status_reason = ?, secret_sha256 = ?, public_key = ?, updated_at = ?
WHERE id = ?`, set...)
	if err != nil {
		return fmt.Errorf("sqlite: update agent %q: %w", rec.Agent.ID, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("sqlite: update agent %q: %w", rec.Agent.ID, err)
	} else if n == 0 {
		return fmt.Errorf("sqlite: update agent %q: %w", rec.Agent.ID, identity.ErrUnknownAgent)
	}
	return nil
}

// agentArgs returns the column values of rec in the order of the agents table.
func agentArgs(rec identity.AgentRecord) ([]any, error) {
	a := rec.Agent
	caps := a.Capabilities
	if caps == nil {
		caps = []string{}
	}
	capsJSON, err := json.Marshal(caps)
	if err != nil {
		return nil, err
	}
	labels := a.Labels
	if labels == nil {
		labels = map[string]string{}
	}
	labelsJSON, err := json.Marshal(labels)
	if err != nil {
		return nil, err
	}
	var key []byte // NULL when there is no key
	if rec.PublicKey != nil {
		key = rec.PublicKey
	}
	return []any{a.ID, a.Owner, a.Purpose, a.Environment, string(capsJSON), a.Autonomy, string(labelsJSON),
		string(a.Status), rec.StatusReason, rec.SecretSHA256, key,
		formatTime(rec.CreatedAt), formatTime(rec.UpdatedAt)}, nil
}

// Agents returns every stored agent, ordered by id.
func (db *DB) Agents(ctx context.Context) ([]identity.AgentRecord, error) {
	recs, err := db.queryAgents(ctx, "")
	if err != nil {
		return nil, fmt.Errorf("sqlite: read agents: %w", err)
	}
	return recs, nil
}

// Agent returns the stored agent with the id, and false if there is none.
func (db *DB) Agent(ctx context.Context, id string) (identity.AgentRecord, bool, error) {
	recs, err := db.queryAgents(ctx, `WHERE id = ?`, id)
	if err != nil {
		return identity.AgentRecord{}, false, fmt.Errorf("sqlite: read agent %q: %w", id, err)
	}
	if len(recs) == 0 {
		return identity.AgentRecord{}, false, nil
	}
	return recs[0], true, nil
}

func (db *DB) queryAgents(ctx context.Context, where string, args ...any) ([]identity.AgentRecord, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT id, owner, purpose, environment, capabilities, autonomy, labels,
	status, status_reason, secret_sha256, public_key, created_at, updated_at FROM agents `+where+` ORDER BY id`, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var recs []identity.AgentRecord
	for rows.Next() {
		var (
			rec                identity.AgentRecord
			a                  = &rec.Agent
			caps, labels, stat string
			key                []byte
			created, updated   string
		)
		if err := rows.Scan(&a.ID, &a.Owner, &a.Purpose, &a.Environment, &caps, &a.Autonomy, &labels,
			&stat, &rec.StatusReason, &rec.SecretSHA256, &key, &created, &updated); err != nil {
			return nil, err
		}
		a.Status = identity.Status(stat)
		if err := json.Unmarshal([]byte(caps), &a.Capabilities); err != nil {
			return nil, fmt.Errorf("agent %q: capabilities: %w", a.ID, err)
		}
		if err := json.Unmarshal([]byte(labels), &a.Labels); err != nil {
			return nil, fmt.Errorf("agent %q: labels: %w", a.ID, err)
		}
		if len(a.Labels) == 0 {
			a.Labels = nil
		}
		if key != nil {
			rec.PublicKey = ed25519.PublicKey(key)
		}
		if rec.CreatedAt, err = parseTime(created); err != nil {
			return nil, fmt.Errorf("agent %q: created_at: %w", a.ID, err)
		}
		if rec.UpdatedAt, err = parseTime(updated); err != nil {
			return nil, fmt.Errorf("agent %q: updated_at: %w", a.ID, err)
		}
		recs = append(recs, rec)
	}
	return recs, rows.Err()
}

// PutTask stores a new task. It returns an error wrapping [identity.ErrTaskExists] if a
// task with the same id is stored.
func (db *DB) PutTask(ctx context.Context, rec identity.TaskRecord) error {
	w, err := db.writer()
	if err != nil {
		return fmt.Errorf("sqlite: put task %q: %w", rec.ID, err)
	}
	tools := rec.Tools
	if tools == nil {
		tools = []string{}
	}
	toolsJSON, err := json.Marshal(tools)
	if err != nil {
		return fmt.Errorf("sqlite: put task %q: %w", rec.ID, err)
	}
	var ended any // NULL while open
	if !rec.EndedAt.IsZero() {
		ended = formatTime(rec.EndedAt)
	}
	res, err := w.ExecContext(ctx, `INSERT INTO tasks (id, agent, user, tools, created_at, expires_at, ended_at, ended_by, end_reason)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (id) DO NOTHING`,
		rec.ID, rec.Agent, rec.User, string(toolsJSON), formatTime(rec.CreatedAt), formatTime(rec.ExpiresAt),
		ended, rec.EndedBy, rec.EndReason)
	if err != nil {
		return fmt.Errorf("sqlite: put task %q: %w", rec.ID, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("sqlite: put task %q: %w", rec.ID, err)
	} else if n == 0 {
		return fmt.Errorf("sqlite: put task %q: %w", rec.ID, identity.ErrTaskExists)
	}
	return nil
}

// EndTask marks an open task ended at at. It returns an error wrapping
// [identity.ErrUnknownTask] if there is no such task and [identity.ErrTaskEnded] if it
// has already ended.
func (db *DB) EndTask(ctx context.Context, id, by, reason string, at time.Time) (err error) {
	defer func() {
		if err != nil {
			err = fmt.Errorf("sqlite: end task %q: %w", id, err)
		}
	}()
	w, err := db.writer()
	if err != nil {
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
	var ended sql.NullString
	err = tx.QueryRowContext(ctx, `SELECT ended_at FROM tasks WHERE id = ?`, id).Scan(&ended)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return identity.ErrUnknownTask
	case err != nil:
		return err
	case ended.Valid:
		return identity.ErrTaskEnded
	}
	if _, err := tx.ExecContext(ctx, `UPDATE tasks SET ended_at = ?, ended_by = ?, end_reason = ? WHERE id = ?`,
		formatTime(at), by, reason, id); err != nil {
		return err
	}
	return tx.Commit()
}

// Tasks returns every stored task, ordered by id.
func (db *DB) Tasks(ctx context.Context) ([]identity.TaskRecord, error) {
	recs, err := db.queryTasks(ctx, "")
	if err != nil {
		return nil, fmt.Errorf("sqlite: read tasks: %w", err)
	}
	return recs, nil
}

// Task returns the stored task with the id, and false if there is none.
func (db *DB) Task(ctx context.Context, id string) (identity.TaskRecord, bool, error) {
	recs, err := db.queryTasks(ctx, `WHERE id = ?`, id)
	if err != nil {
		return identity.TaskRecord{}, false, fmt.Errorf("sqlite: read task %q: %w", id, err)
	}
	if len(recs) == 0 {
		return identity.TaskRecord{}, false, nil
	}
	return recs[0], true, nil
}

func (db *DB) queryTasks(ctx context.Context, where string, args ...any) ([]identity.TaskRecord, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT id, agent, user, tools, created_at, expires_at, ended_at, ended_by, end_reason
FROM tasks `+where+` ORDER BY id`, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var recs []identity.TaskRecord
	for rows.Next() {
		var (
			rec              identity.TaskRecord
			tools            string
			created, expires string
			ended            sql.NullString
		)
		if err := rows.Scan(&rec.ID, &rec.Agent, &rec.User, &tools, &created, &expires, &ended, &rec.EndedBy, &rec.EndReason); err != nil {
			return nil, err
		}
		if err := json.Unmarshal([]byte(tools), &rec.Tools); err != nil {
			return nil, fmt.Errorf("task %q: tools: %w", rec.ID, err)
		}
		if len(rec.Tools) == 0 {
			rec.Tools = nil
		}
		var err error
		if rec.CreatedAt, err = parseTime(created); err != nil {
			return nil, fmt.Errorf("task %q: created_at: %w", rec.ID, err)
		}
		if rec.ExpiresAt, err = parseTime(expires); err != nil {
			return nil, fmt.Errorf("task %q: expires_at: %w", rec.ID, err)
		}
		if ended.Valid {
			if rec.EndedAt, err = parseTime(ended.String); err != nil {
				return nil, fmt.Errorf("task %q: ended_at: %w", rec.ID, err)
			}
		}
		recs = append(recs, rec)
	}
	return recs, rows.Err()
}

// formatTime is how times are stored: RFC 3339 with nanoseconds, in UTC.
func formatTime(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

func parseTime(s string) (time.Time, error) { return time.Parse(time.RFC3339Nano, s) }
