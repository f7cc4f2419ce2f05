package postgres

// MCP sessions shared by replicas: *DB is a gateway.SessionStore (table mcp_sessions,
// migration 0003). Each method is one statement. The compile-time assertion is in
// sessions_test.go: importing package gateway here would make the store depend on the
// ingress, and the ingress's own tests, which open this store, could not import it.

import (
	"context"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
)

const (
	// sjMaxSessionField bounds a session id, agent id or protocol version. Ids come from
	// the client's Mcp-Session-Id header: one that is longer, not UTF-8 or holds a NUL
	// cannot name a stored session, so it is not found without asking the database
	// (which would refuse it with an error, not an answer).
	sjMaxSessionField = 1024
	// sjMaxExpireSessions bounds the sessions one expiry deletes.
	sjMaxExpireSessions = 10000
)

func sjSessionField(s string) bool {
	if len(s) == 0 || len(s) > sjMaxSessionField || !utf8.ValidString(s) {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] == 0 {
			return false
		}
	}
	return true
}

// CreateSession records a new session of agent speaking protocol, last seen at at. An id
// that is already taken is an error: ids are random, and the gateway never reuses one.
func (db *DB) CreateSession(ctx context.Context, id, agent, protocol string, at time.Time) error {
	if err := db.writable(); err != nil {
		return fmt.Errorf("postgres: create session: %w", err)
	}
	if !sjSessionField(id) || !sjSessionField(agent) || !sjSessionField(protocol) {
		return fmt.Errorf("postgres: create session: id, agent and protocol must be 1 to %d bytes of UTF-8 without NUL", sjMaxSessionField)
	}
	if _, err := db.pool.Exec(ctx, `INSERT INTO mcp_sessions (id, agent, protocol, created_at, last_seen) VALUES ($1, $2, $3, $4, $4)`,
		id, agent, protocol, sjTime(at)); err != nil {
		return fmt.Errorf("postgres: create session: %w", err)
	}
	return nil
}

// LookupSession returns the protocol of session id of agent; found is false if there is
// none.
func (db *DB) LookupSession(ctx context.Context, id, agent string) (protocol string, found bool, err error) {
	if !sjSessionField(id) || !sjSessionField(agent) {
		return "", false, nil
	}
	err = db.pool.QueryRow(ctx, `SELECT protocol FROM mcp_sessions WHERE id = $1 AND agent = $2`, id, agent).Scan(&protocol)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return "", false, nil
	case err != nil:
		return "", false, fmt.Errorf("postgres: look up session: %w", err)
	}
	return protocol, true, nil
}

// TouchSession is LookupSession that also moves the session's last-seen time forward to
// at.
func (db *DB) TouchSession(ctx context.Context, id, agent string, at time.Time) (protocol string, found bool, err error) {
	if err := db.writable(); err != nil {
		return "", false, fmt.Errorf("postgres: touch session: %w", err)
	}
	if !sjSessionField(id) || !sjSessionField(agent) {
		return "", false, nil
	}
	err = db.pool.QueryRow(ctx, `UPDATE mcp_sessions SET last_seen = greatest(last_seen, $3) WHERE id = $1 AND agent = $2 RETURNING protocol`,
		id, agent, sjTime(at)).Scan(&protocol)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return "", false, nil
	case err != nil:
		return "", false, fmt.Errorf("postgres: touch session: %w", err)
	}
	return protocol, true, nil
}

// DeleteSession deletes session id of agent; found is false if there was none.
func (db *DB) DeleteSession(ctx context.Context, id, agent string) (found bool, err error) {
	if err := db.writable(); err != nil {
		return false, fmt.Errorf("postgres: delete session: %w", err)
	}
	if !sjSessionField(id) || !sjSessionField(agent) {
		return false, nil
	}
	tag, err := db.pool.Exec(ctx, `DELETE FROM mcp_sessions WHERE id = $1 AND agent = $2`, id, agent)
	if err != nil {
		return false, fmt.Errorf("postgres: delete session: %w", err)
	}
	return tag.RowsAffected() == 1, nil
}

// ExpireSessions deletes at most limit (and at most 10,000) sessions last seen before
// before, oldest first, and returns their ids. A session being touched is skipped: it is
// in use. Of replicas expiring at once, each deleted session is returned to one.
func (db *DB) ExpireSessions(ctx context.Context, before time.Time, limit int) ([]string, error) {
	if err := db.writable(); err != nil {
		return nil, fmt.Errorf("postgres: expire sessions: %w", err)
	}
	if limit <= 0 {
		return nil, nil
	}
	rows, err := db.pool.Query(ctx, `DELETE FROM mcp_sessions WHERE id IN (
	SELECT id FROM mcp_sessions WHERE last_seen < $1 ORDER BY last_seen LIMIT $2 FOR UPDATE SKIP LOCKED)
RETURNING id`, sjTime(before), min(limit, sjMaxExpireSessions))
	if err != nil {
		return nil, fmt.Errorf("postgres: expire sessions: %w", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("postgres: expire sessions: %w", err)
	}
	return ids, nil
}
