package postgres

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/chaperone-dev/chaperone/internal/identity"
)

// PutAgent stores a new agent. It returns an error wrapping [identity.ErrAgentExists]
// if an agent with the same id is stored, revoked or not. Replicas are told
// (TopicAgent).
func (db *DB) PutAgent(ctx context.Context, rec identity.AgentRecord) error {
	args, err := pgAgentArgs(rec)
	if err != nil {
		return fmt.Errorf("postgres: put agent %q: %w", rec.Agent.ID, err)
	}
	n, err := db.pgWrite(ctx, TopicAgent, rec.Agent.ID, `WITH w AS (
	INSERT INTO agents (id, owner, purpose, environment, capabilities, autonomy, labels,
		status, status_reason, secret_sha256, public_key, created_at, updated_at)
	VALUES ($3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
	ON CONFLICT (id) DO NOTHING RETURNING 1
) SELECT pg_notify($1, $2) FROM w`, args...)
	if err != nil {
		return fmt.Errorf("postgres: put agent %q: %w", rec.Agent.ID, err)
	}
	if n == 0 {
		return fmt.Errorf("postgres: put agent %q: %w", rec.Agent.ID, identity.ErrAgentExists)
	}
	return nil
}

// UpdateAgent replaces everything but the id and creation time of a stored agent. It
// returns an error wrapping [identity.ErrUnknownAgent] if there is none. Replicas are
// told (TopicAgent).
func (db *DB) UpdateAgent(ctx context.Context, rec identity.AgentRecord) error {
	args, err := pgAgentArgs(rec)
	if err != nil {
		return fmt.Errorf("postgres: update agent %q: %w", rec.Agent.ID, err)
	}
	// args is (id, owner ... public_key, created_at, updated_at): created_at is kept.
	set := append(slices.Clone(args[:11]), args[12])
	n, err := db.pgWrite(ctx, TopicAgent, rec.Agent.ID, `WITH w AS (
	UPDATE agents SET owner = $4, purpose = $5, environment = $6, capabilities = $7, autonomy = $8,
		labels = $9, status = $10, status_reason = $11, secret_sha256 = $12, public_key = $13, updated_at = $14
	WHERE id = $3 RETURNING 1
) SELECT pg_notify($1, $2) FROM w`, set...)
	if err != nil {
		return fmt.Errorf("postgres: update agent %q: %w", rec.Agent.ID, err)
	}
	if n == 0 {
		return fmt.Errorf("postgres: update agent %q: %w", rec.Agent.ID, identity.ErrUnknownAgent)
	}
	return nil
}

// pgAgentArgs returns the column values of rec in the order of the agents table.
func pgAgentArgs(rec identity.AgentRecord) ([]any, error) {
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
		pgTime(rec.CreatedAt), pgTime(rec.UpdatedAt)}, nil
}

// Agents returns every stored agent, ordered by id.
func (db *DB) Agents(ctx context.Context) ([]identity.AgentRecord, error) {
	recs, err := db.pgQueryAgents(ctx, "")
	if err != nil {
		return nil, fmt.Errorf("postgres: read agents: %w", err)
	}
	return recs, nil
}

// Agent returns the stored agent with the id, and false if there is none.
func (db *DB) Agent(ctx context.Context, id string) (identity.AgentRecord, bool, error) {
	recs, err := db.pgQueryAgents(ctx, `WHERE id = $1`, id)
	if err != nil {
		return identity.AgentRecord{}, false, fmt.Errorf("postgres: read agent %q: %w", id, err)
	}
	if len(recs) == 0 {
		return identity.AgentRecord{}, false, nil
	}
	return recs[0], true, nil
}

func (db *DB) pgQueryAgents(ctx context.Context, where string, args ...any) ([]identity.AgentRecord, error) {
	rows, err := db.pool.Query(ctx, `SELECT id, owner, purpose, environment, capabilities, autonomy, labels,
	status, status_reason, secret_sha256, public_key, created_at, updated_at FROM agents `+where+` ORDER BY id`, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var recs []identity.AgentRecord
	for rows.Next() {
		var (
			rec              identity.AgentRecord
			a                = &rec.Agent
			caps, labels     []byte
			stat             string
			key              []byte
			created, updated time.Time
		)
		if err := rows.Scan(&a.ID, &a.Owner, &a.Purpose, &a.Environment, &caps, &a.Autonomy, &labels,
			&stat, &rec.StatusReason, &rec.SecretSHA256, &key, &created, &updated); err != nil {
			return nil, err
		}
		a.Status = identity.Status(stat)
		if err := json.Unmarshal(caps, &a.Capabilities); err != nil {
			return nil, fmt.Errorf("agent %q: capabilities: %w", a.ID, err)
		}
		if err := json.Unmarshal(labels, &a.Labels); err != nil {
			return nil, fmt.Errorf("agent %q: labels: %w", a.ID, err)
		}
		if len(a.Labels) == 0 {
			a.Labels = nil
		}
		if key != nil {
			rec.PublicKey = ed25519.PublicKey(key)
		}
		rec.CreatedAt, rec.UpdatedAt = pgReadTime(&created), pgReadTime(&updated)
		recs = append(recs, rec)
	}
	return recs, rows.Err()
}

// PutTask stores a new task. It returns an error wrapping [identity.ErrTaskExists] if a
// task with the same id is stored. Replicas are told (TopicTask).
func (db *DB) PutTask(ctx context.Context, rec identity.TaskRecord) error {
	tools := rec.Tools
	if tools == nil {
		tools = []string{}
	}
	toolsJSON, err := json.Marshal(tools)
	if err != nil {
		return fmt.Errorf("postgres: put task %q: %w", rec.ID, err)
	}
	n, err := db.pgWrite(ctx, TopicTask, rec.ID, `WITH w AS (
	INSERT INTO tasks (id, agent, "user", tools, created_at, expires_at, ended_at, ended_by, end_reason)
	VALUES ($3, $4, $5, $6, $7, $8, $9, $10, $11)
	ON CONFLICT (id) DO NOTHING RETURNING 1
) SELECT pg_notify($1, $2) FROM w`,
		rec.ID, rec.Agent, rec.User, string(toolsJSON), pgTime(rec.CreatedAt), pgTime(rec.ExpiresAt),
		pgNullTime(rec.EndedAt), rec.EndedBy, rec.EndReason)
	if err != nil {
		return fmt.Errorf("postgres: put task %q: %w", rec.ID, err)
	}
	if n == 0 {
		return fmt.Errorf("postgres: put task %q: %w", rec.ID, identity.ErrTaskExists)
	}
	return nil
}

// EndTask marks an open task ended at at. It returns an error wrapping
// [identity.ErrUnknownTask] if there is no such task and [identity.ErrTaskEnded] if it
// has already ended. Replicas are told (TopicTask). The UPDATE, conditional on the task
// being open, is the decision; the read after a refusal only names the reason.
func (db *DB) EndTask(ctx context.Context, id, by, reason string, at time.Time) (err error) {
	defer func() {
		if err != nil {
			err = fmt.Errorf("postgres: end task %q: %w", id, err)
		}
	}()
	n, err := db.pgWrite(ctx, TopicTask, id, `WITH w AS (
	UPDATE tasks SET ended_at = $3, ended_by = $4, end_reason = $5 WHERE id = $6 AND ended_at IS NULL RETURNING 1
) SELECT pg_notify($1, $2) FROM w`, pgTime(at), by, reason, id)
	if err != nil || n == 1 {
		return err
	}
	var ended bool
	err = db.pool.QueryRow(ctx, `SELECT ended_at IS NOT NULL FROM tasks WHERE id = $1`, id).Scan(&ended)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return identity.ErrUnknownTask
	case err != nil:
		return err
	case ended:
		return identity.ErrTaskEnded
	}
	// Open now, so stored after the UPDATE looked: there was no task then.
	return identity.ErrUnknownTask
}

// Tasks returns every stored task, ordered by id.
func (db *DB) Tasks(ctx context.Context) ([]identity.TaskRecord, error) {
	recs, err := db.pgQueryTasks(ctx, "")
	if err != nil {
		return nil, fmt.Errorf("postgres: read tasks: %w", err)
	}
	return recs, nil
}

// Task returns the stored task with the id, and false if there is none.
func (db *DB) Task(ctx context.Context, id string) (identity.TaskRecord, bool, error) {
	recs, err := db.pgQueryTasks(ctx, `WHERE id = $1`, id)
	if err != nil {
		return identity.TaskRecord{}, false, fmt.Errorf("postgres: read task %q: %w", id, err)
	}
	if len(recs) == 0 {
		return identity.TaskRecord{}, false, nil
	}
	return recs[0], true, nil
}

func (db *DB) pgQueryTasks(ctx context.Context, where string, args ...any) ([]identity.TaskRecord, error) {
	rows, err := db.pool.Query(ctx, `SELECT id, agent, "user", tools, created_at, expires_at, ended_at, ended_by, end_reason
FROM tasks `+where+` ORDER BY id`, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var recs []identity.TaskRecord
	for rows.Next() {
		var (
			rec              identity.TaskRecord
			tools            []byte
			created, expires time.Time
			ended            *time.Time
		)
		if err := rows.Scan(&rec.ID, &rec.Agent, &rec.User, &tools, &created, &expires, &ended, &rec.EndedBy, &rec.EndReason); err != nil {
			return nil, err
		}
		if err := json.Unmarshal(tools, &rec.Tools); err != nil {
			return nil, fmt.Errorf("task %q: tools: %w", rec.ID, err)
		}
		if len(rec.Tools) == 0 {
			rec.Tools = nil
		}
		rec.CreatedAt, rec.ExpiresAt, rec.EndedAt = pgReadTime(&created), pgReadTime(&expires), pgReadTime(ended)
		recs = append(recs, rec)
	}
	return recs, rows.Err()
}
