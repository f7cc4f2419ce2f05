package postgres

// Tables console_users and console_sessions (migration 0004) back [console.Store],
// reached through [DB.Console], and are shared by every replica: a session started on
// one is known to all, and a user deleted on one is signed out everywhere. Every method
// is one statement, except CreateFirstUser, which is one transaction (see there).
//
// Records are checked before anything is written, with the same bounds as the sqlite
// store: PostgreSQL's text refuses NUL bytes (and invalid UTF-8) with an error that
// would say nothing useful, and a record one backend takes must not be refused by the
// other. Lookups by a key no record could have answer "none" without asking the
// database, which would refuse such a key with an error rather than an answer.

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/chaperone-dev/chaperone/internal/console"
)

// Console returns the console's users and sessions in this database. Its write methods
// return an error wrapping [store.ErrReadOnly] on a DB from [OpenReadOnly].
//
// The methods live on a type of their own rather than on DB because DB already has
// TouchSession and DeleteSession for MCP sessions (gateway.SessionStore), with other
// signatures.
func (db *DB) Console() console.Store { return ConsoleStore{db: db} }

// ConsoleStore is the [console.Store] of a [DB]: see [DB.Console].
type ConsoleStore struct {
	db *DB
}

var _ console.Store = ConsoleStore{}

const pgConsoleUserColumns = `name, role, password_hash, disabled, created_at, updated_at`

const pgConsoleSessionColumns = `id, "user", role, csrf, created_at, expires_at, seen_at`

// CreateFirstUser stores u only if no console user exists yet, and reports whether it
// did; of replicas racing to finish setup, one does.
//
// Under READ COMMITTED, which every connection of the pool uses, INSERT ... WHERE NOT
// EXISTS alone is not enough: two transactions can both see an empty table and insert
// two different names. So the transaction first locks the table in SHARE ROW EXCLUSIVE
// mode, which conflicts with itself and with the ROW EXCLUSIVE lock every INSERT takes
// (but not with readers), and only then runs the insert: its statement snapshot is taken
// after the lock is granted, so it sees every user committed by the lock's previous
// holders and by any CreateUser. The lock is on the table of the store's schema, so
// stores in other schemas do not wait for it, and the wait is bounded by lock_timeout.
// BEGIN, the lock, the insert and COMMIT travel in one round trip.
func (c ConsoleStore) CreateFirstUser(ctx context.Context, u console.User) (bool, error) {
	if err := c.db.writable(); err != nil {
		return false, fmt.Errorf("postgres: create first console user %s: %w", console.Quote(u.Name), err)
	}
	if err := console.CheckUser(u, true); err != nil {
		return false, fmt.Errorf("postgres: create first console user %s: %w", console.Quote(u.Name), err)
	}
	tx, err := c.db.pgBegin(ctx)
	if err != nil {
		return false, fmt.Errorf("postgres: create first console user %s: %w", console.Quote(u.Name), err)
	}
	defer tx.end()
	var inserted int64
	err = tx.send(ctx, true, func(b *pgx.Batch) {
		b.Queue(`LOCK TABLE console_users IN SHARE ROW EXCLUSIVE MODE`)
		b.Queue(`INSERT INTO console_users (`+pgConsoleUserColumns+`)
SELECT $1, $2, $3, $4, $5, $6 WHERE NOT EXISTS (SELECT 1 FROM console_users)`,
			u.Name, string(u.Role), u.PasswordHash, u.Disabled, pgTime(u.Created), pgTime(u.Updated),
		).Exec(func(ct pgconn.CommandTag) error {
			inserted = ct.RowsAffected()
			return nil
		})
	})
	if err != nil {
		return false, fmt.Errorf("postgres: create first console user %s: %w", console.Quote(u.Name), err)
	}
	return inserted == 1, nil
}

// CreateUser stores a new user; the error wraps [console.ErrUserExists] if the name is
// taken.
func (c ConsoleStore) CreateUser(ctx context.Context, u console.User) error {
	if err := c.db.writable(); err != nil {
		return fmt.Errorf("postgres: create console user %s: %w", console.Quote(u.Name), err)
	}
	if err := console.CheckUser(u, true); err != nil {
		return fmt.Errorf("postgres: create console user %s: %w", console.Quote(u.Name), err)
	}
	tag, err := c.db.pool.Exec(ctx, `INSERT INTO console_users (`+pgConsoleUserColumns+`) VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (name) DO NOTHING`,
		u.Name, string(u.Role), u.PasswordHash, u.Disabled, pgTime(u.Created), pgTime(u.Updated))
	if err != nil {
		return fmt.Errorf("postgres: create console user %s: %w", console.Quote(u.Name), err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("postgres: create console user %s: %w", console.Quote(u.Name), console.ErrUserExists)
	}
	return nil
}

// UpdateUser replaces a stored user's role, password hash, disabled flag and Updated
// time, keeping its Created time; the error wraps [console.ErrUnknownUser] if there is
// none.
func (c ConsoleStore) UpdateUser(ctx context.Context, u console.User) error {
	if err := c.db.writable(); err != nil {
		return fmt.Errorf("postgres: update console user %s: %w", console.Quote(u.Name), err)
	}
	if err := console.CheckUser(u, false); err != nil {
		return fmt.Errorf("postgres: update console user %s: %w", console.Quote(u.Name), err)
	}
	tag, err := c.db.pool.Exec(ctx, `UPDATE console_users SET role = $2, password_hash = $3, disabled = $4, updated_at = $5
WHERE name = $1`, u.Name, string(u.Role), u.PasswordHash, u.Disabled, pgTime(u.Updated))
	if err != nil {
		return fmt.Errorf("postgres: update console user %s: %w", console.Quote(u.Name), err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("postgres: update console user %s: %w", console.Quote(u.Name), console.ErrUnknownUser)
	}
	return nil
}

// DeleteUser removes a user and every session of "local:<name>" in one statement; the
// error wraps [console.ErrUnknownUser] if there is no such user, and then nothing is
// deleted.
func (c ConsoleStore) DeleteUser(ctx context.Context, name string) error {
	if err := c.db.writable(); err != nil {
		return fmt.Errorf("postgres: delete console user %s: %w", console.Quote(name), err)
	}
	if console.CheckName(name) != nil {
		// No user can have this name.
		return fmt.Errorf("postgres: delete console user %s: %w", console.Quote(name), console.ErrUnknownUser)
	}
	var n int64
	err := c.db.pool.QueryRow(ctx, `WITH u AS (
	DELETE FROM console_users WHERE name = $1 RETURNING 1
), s AS (
	DELETE FROM console_sessions WHERE "user" = $2 AND EXISTS (SELECT 1 FROM u)
)
SELECT count(*) FROM u`, name, "local:"+name).Scan(&n)
	if err != nil {
		return fmt.Errorf("postgres: delete console user %s: %w", console.Quote(name), err)
	}
	if n == 0 {
		return fmt.Errorf("postgres: delete console user %s: %w", console.Quote(name), console.ErrUnknownUser)
	}
	return nil
}

// ConsoleUser returns one user, and false if there is none.
func (c ConsoleStore) ConsoleUser(ctx context.Context, name string) (console.User, bool, error) {
	if console.CheckName(name) != nil {
		return console.User{}, false, nil
	}
	u, err := pgConsoleScanUser(c.db.pool.QueryRow(ctx, `SELECT `+pgConsoleUserColumns+` FROM console_users WHERE name = $1`, name))
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return console.User{}, false, nil
	case err != nil:
		return console.User{}, false, fmt.Errorf("postgres: read console user %s: %w", console.Quote(name), err)
	}
	return u, true, nil
}

// ConsoleUsers returns every user, by name as bytes.
func (c ConsoleStore) ConsoleUsers(ctx context.Context) ([]console.User, error) {
	rows, err := c.db.pool.Query(ctx, `SELECT `+pgConsoleUserColumns+` FROM console_users ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("postgres: read console users: %w", err)
	}
	defer rows.Close()
	var us []console.User
	for rows.Next() {
		u, err := pgConsoleScanUser(rows)
		if err != nil {
			return nil, fmt.Errorf("postgres: read console users: %w", err)
		}
		us = append(us, u)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("postgres: read console users: %w", err)
	}
	return us, nil
}

// pgConsoleScanUser reads one row of pgConsoleUserColumns. A role the console does not
// know is an error, not a user: a session must never carry a role nobody checked.
func pgConsoleScanUser(row pgx.Row) (console.User, error) {
	var (
		u                console.User
		role             string
		created, updated time.Time
	)
	if err := row.Scan(&u.Name, &role, &u.PasswordHash, &u.Disabled, &created, &updated); err != nil {
		return console.User{}, err
	}
	u.Role = console.Role(role)
	if err := console.CheckRole(u.Role); err != nil {
		return console.User{}, fmt.Errorf("user %s: %w", console.Quote(u.Name), err)
	}
	u.Created, u.Updated = pgReadTime(&created), pgReadTime(&updated)
	return u, nil
}

// PutSession stores a session, replacing one with the same ID.
func (c ConsoleStore) PutSession(ctx context.Context, s console.Session) error {
	if err := c.db.writable(); err != nil {
		return fmt.Errorf("postgres: put console session: %w", err)
	}
	if err := console.CheckSession(s); err != nil {
		return fmt.Errorf("postgres: put console session: %w", err)
	}
	if _, err := c.db.pool.Exec(ctx, `INSERT INTO console_sessions (`+pgConsoleSessionColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (id) DO UPDATE SET "user" = excluded."user", role = excluded.role, csrf = excluded.csrf,
	created_at = excluded.created_at, expires_at = excluded.expires_at, seen_at = excluded.seen_at`,
		s.ID, s.User, string(s.Role), s.CSRF, pgTime(s.Created), pgTime(s.Expires), pgTime(s.Seen)); err != nil {
		return fmt.Errorf("postgres: put console session: %w", err)
	}
	return nil
}

// ConsoleSession returns one session, and false if there is none; it does not look at
// the session's times.
func (c ConsoleStore) ConsoleSession(ctx context.Context, id string) (console.Session, bool, error) {
	if console.CheckSessionID(id) != nil {
		return console.Session{}, false, nil
	}
	var (
		s                      console.Session
		role                   string
		created, expires, seen time.Time
	)
	err := c.db.pool.QueryRow(ctx, `SELECT `+pgConsoleSessionColumns+` FROM console_sessions WHERE id = $1`, id).
		Scan(&s.ID, &s.User, &role, &s.CSRF, &created, &expires, &seen)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return console.Session{}, false, nil
	case err != nil:
		return console.Session{}, false, fmt.Errorf("postgres: read console session: %w", err)
	}
	s.Role = console.Role(role)
	if err := console.CheckRole(s.Role); err != nil {
		return console.Session{}, false, fmt.Errorf("postgres: read console session: %w", err)
	}
	s.Created, s.Expires, s.Seen = pgReadTime(&created), pgReadTime(&expires), pgReadTime(&seen)
	return s, true, nil
}

// TouchSession sets a session's Seen; no error if it is gone.
func (c ConsoleStore) TouchSession(ctx context.Context, id string, seen time.Time) error {
	if err := c.db.writable(); err != nil {
		return fmt.Errorf("postgres: touch console session: %w", err)
	}
	if err := console.CheckTime("seen time", seen); err != nil {
		return fmt.Errorf("postgres: touch console session: %w", err)
	}
	if console.CheckSessionID(id) != nil {
		return nil // no session has this id
	}
	if _, err := c.db.pool.Exec(ctx, `UPDATE console_sessions SET seen_at = $2 WHERE id = $1`, id, pgTime(seen)); err != nil {
		return fmt.Errorf("postgres: touch console session: %w", err)
	}
	return nil
}

// DeleteSession removes one session; no error if it is gone.
func (c ConsoleStore) DeleteSession(ctx context.Context, id string) error {
	if err := c.db.writable(); err != nil {
		return fmt.Errorf("postgres: delete console session: %w", err)
	}
	if console.CheckSessionID(id) != nil {
		return nil
	}
	if _, err := c.db.pool.Exec(ctx, `DELETE FROM console_sessions WHERE id = $1`, id); err != nil {
		return fmt.Errorf("postgres: delete console session: %w", err)
	}
	return nil
}

// DeleteSessions removes every session of user and returns how many.
func (c ConsoleStore) DeleteSessions(ctx context.Context, user string) (int64, error) {
	if err := c.db.writable(); err != nil {
		return 0, fmt.Errorf("postgres: delete console sessions of %s: %w", console.Quote(user), err)
	}
	if console.CheckSessionUser(user) != nil {
		return 0, nil // no session has this user
	}
	tag, err := c.db.pool.Exec(ctx, `DELETE FROM console_sessions WHERE "user" = $1`, user)
	if err != nil {
		return 0, fmt.Errorf("postgres: delete console sessions of %s: %w", console.Quote(user), err)
	}
	return tag.RowsAffected(), nil
}

// PruneSessions removes the sessions that expired before t, or were last seen before
// idleBefore, and returns how many.
func (c ConsoleStore) PruneSessions(ctx context.Context, t, idleBefore time.Time) (int64, error) {
	if err := c.db.writable(); err != nil {
		return 0, fmt.Errorf("postgres: prune console sessions: %w", err)
	}
	if err := cmp.Or(console.CheckTimeRange("expiry bound", t), console.CheckTimeRange("idle bound", idleBefore)); err != nil {
		return 0, fmt.Errorf("postgres: prune console sessions: %w", err)
	}
	tag, err := c.db.pool.Exec(ctx, `DELETE FROM console_sessions WHERE expires_at < $1 OR seen_at < $2`,
		pgTime(t), pgTime(idleBefore))
	if err != nil {
		return 0, fmt.Errorf("postgres: prune console sessions: %w", err)
	}
	return tag.RowsAffected(), nil
}
