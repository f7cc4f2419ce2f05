package sqlite

// Tables console_users and console_sessions (migration 0006) back [console.Store],
// reached through [DB.Console]. Every method is one statement on the write connection
// or the read pool, except DeleteUser, whose two deletes share a transaction. Times are
// integer microseconds since the Unix epoch, so they round-trip exactly at the
// precision both backends keep and SQL compares them as numbers.
//
// Records are checked before anything is written, with the same bounds as the postgres
// store: PostgreSQL's text refuses NUL bytes and invalid UTF-8, and a record one backend
// takes must not be refused by the other. Lookups by a key no record could have answer
// "none" without asking the database.

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/chaperone-dev/chaperone/internal/console"
)

// Console returns the console's users and sessions in this database. Its write methods
// return an error wrapping [ErrReadOnly] on a DB from [OpenReadOnly].
//
// The methods live on a type of their own rather than on DB because the postgres store
// already has TouchSession and DeleteSession for MCP sessions, with other signatures;
// both backends offer the console the same way.
func (db *DB) Console() console.Store { return ConsoleStore{db: db} }

// ConsoleStore is the [console.Store] of a [DB]: see [DB.Console].
type ConsoleStore struct {
	db *DB
}

var _ console.Store = ConsoleStore{}

const consoleUserColumns = `name, role, password_hash, disabled, created_us, updated_us`

const consoleSessionColumns = `id, user, role, csrf, created_us, expires_us, seen_us`

// consoleMicros is how the console tables store a time.
func consoleMicros(t time.Time) int64 { return t.UnixMicro() }

// consoleFromMicros is a stored time as read.
func consoleFromMicros(us int64) time.Time { return time.UnixMicro(us).UTC() }

func consoleDisabled(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

// CreateFirstUser stores u only if no console user exists yet, and reports whether it
// did. The check and the insert are one statement, which SQLite runs under its
// database-wide write lock: of processes racing on one file, one inserts.
func (c ConsoleStore) CreateFirstUser(ctx context.Context, u console.User) (bool, error) {
	w, err := c.db.writer()
	if err != nil {
		return false, fmt.Errorf("sqlite: create first console user %s: %w", console.Quote(u.Name), err)
	}
	if err := console.CheckUser(u, true); err != nil {
		return false, fmt.Errorf("sqlite: create first console user %s: %w", console.Quote(u.Name), err)
	}
	res, err := w.ExecContext(ctx, `INSERT INTO console_users (`+consoleUserColumns+`)
SELECT ?, ?, ?, ?, ?, ? WHERE NOT EXISTS (SELECT 1 FROM console_users)`,
		u.Name, string(u.Role), u.PasswordHash, consoleDisabled(u.Disabled), consoleMicros(u.Created), consoleMicros(u.Updated))
	if err != nil {
		return false, fmt.Errorf("sqlite: create first console user %s: %w", console.Quote(u.Name), err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("sqlite: create first console user %s: %w", console.Quote(u.Name), err)
	}
	return n == 1, nil
}

// CreateUser stores a new user; the error wraps [console.ErrUserExists] if the name is
// taken.
func (c ConsoleStore) CreateUser(ctx context.Context, u console.User) error {
	w, err := c.db.writer()
	if err != nil {
		return fmt.Errorf("sqlite: create console user %s: %w", console.Quote(u.Name), err)
	}
	if err := console.CheckUser(u, true); err != nil {
		return fmt.Errorf("sqlite: create console user %s: %w", console.Quote(u.Name), err)
	}
	res, err := w.ExecContext(ctx, `INSERT INTO console_users (`+consoleUserColumns+`) VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (name) DO NOTHING`,
		u.Name, string(u.Role), u.PasswordHash, consoleDisabled(u.Disabled), consoleMicros(u.Created), consoleMicros(u.Updated))
	if err != nil {
		return fmt.Errorf("sqlite: create console user %s: %w", console.Quote(u.Name), err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("sqlite: create console user %s: %w", console.Quote(u.Name), err)
	} else if n == 0 {
		return fmt.Errorf("sqlite: create console user %s: %w", console.Quote(u.Name), console.ErrUserExists)
	}
	return nil
}

// UpdateUser replaces a stored user's role, password hash, disabled flag and Updated
// time, keeping its Created time; the error wraps [console.ErrUnknownUser] if there is
// none.
func (c ConsoleStore) UpdateUser(ctx context.Context, u console.User) error {
	w, err := c.db.writer()
	if err != nil {
		return fmt.Errorf("sqlite: update console user %s: %w", console.Quote(u.Name), err)
	}
	if err := console.CheckUser(u, false); err != nil {
		return fmt.Errorf("sqlite: update console user %s: %w", console.Quote(u.Name), err)
	}
	res, err := w.ExecContext(ctx, `UPDATE console_users SET role = ?, password_hash = ?, disabled = ?, updated_us = ?
WHERE name = ?`, string(u.Role), u.PasswordHash, consoleDisabled(u.Disabled), consoleMicros(u.Updated), u.Name)
	if err != nil {
		return fmt.Errorf("sqlite: update console user %s: %w", console.Quote(u.Name), err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("sqlite: update console user %s: %w", console.Quote(u.Name), err)
	} else if n == 0 {
		return fmt.Errorf("sqlite: update console user %s: %w", console.Quote(u.Name), console.ErrUnknownUser)
	}
	return nil
}

// DeleteUser removes a user and every session of "local:<name>" in one transaction; the
// error wraps [console.ErrUnknownUser] if there is no such user, and then nothing is
// deleted.
func (c ConsoleStore) DeleteUser(ctx context.Context, name string) (err error) {
	defer func() {
		if err != nil {
			err = fmt.Errorf("sqlite: delete console user %s: %w", console.Quote(name), err)
		}
	}()
	w, err := c.db.writer()
	if err != nil {
		return err
	}
	if console.CheckName(name) != nil {
		return console.ErrUnknownUser // no user can have this name
	}
	tx, err := w.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback() // after Commit, a no-op
	res, err := tx.ExecContext(ctx, `DELETE FROM console_users WHERE name = ?`, name)
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err != nil {
		return err
	} else if n == 0 {
		return console.ErrUnknownUser
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM console_sessions WHERE user = ?`, "local:"+name); err != nil {
		return err
	}
	return tx.Commit()
}

// ConsoleUser returns one user, and false if there is none.
func (c ConsoleStore) ConsoleUser(ctx context.Context, name string) (console.User, bool, error) {
	if console.CheckName(name) != nil {
		return console.User{}, false, nil
	}
	u, err := consoleScanUser(c.db.r.QueryRowContext(ctx, `SELECT `+consoleUserColumns+` FROM console_users WHERE name = ?`, name))
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return console.User{}, false, nil
	case err != nil:
		return console.User{}, false, fmt.Errorf("sqlite: read console user %s: %w", console.Quote(name), err)
	}
	return u, true, nil
}

// ConsoleUsers returns every user, by name as bytes.
func (c ConsoleStore) ConsoleUsers(ctx context.Context) ([]console.User, error) {
	rows, err := c.db.r.QueryContext(ctx, `SELECT `+consoleUserColumns+` FROM console_users ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("sqlite: read console users: %w", err)
	}
	defer rows.Close()
	var us []console.User
	for rows.Next() {
		u, err := consoleScanUser(rows)
		if err != nil {
			return nil, fmt.Errorf("sqlite: read console users: %w", err)
		}
		us = append(us, u)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: read console users: %w", err)
	}
	return us, nil
}

// consoleScanUser reads one row of consoleUserColumns. A role the console does not know
// is an error, not a user: a session must never carry a role nobody checked.
func consoleScanUser(s scanner) (console.User, error) {
	var (
		u                console.User
		role             string
		disabled         int64
		created, updated int64
	)
	if err := s.Scan(&u.Name, &role, &u.PasswordHash, &disabled, &created, &updated); err != nil {
		return console.User{}, err
	}
	u.Role, u.Disabled = console.Role(role), disabled != 0
	if err := console.CheckRole(u.Role); err != nil {
		return console.User{}, fmt.Errorf("user %s: %w", console.Quote(u.Name), err)
	}
	u.Created, u.Updated = consoleFromMicros(created), consoleFromMicros(updated)
	return u, nil
}

// PutSession stores a session, replacing one with the same ID.
func (c ConsoleStore) PutSession(ctx context.Context, s console.Session) error {
	w, err := c.db.writer()
	if err != nil {
		return fmt.Errorf("sqlite: put console session: %w", err)
	}
	if err := console.CheckSession(s); err != nil {
		return fmt.Errorf("sqlite: put console session: %w", err)
	}
	if _, err := w.ExecContext(ctx, `INSERT INTO console_sessions (`+consoleSessionColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (id) DO UPDATE SET user = excluded.user, role = excluded.role, csrf = excluded.csrf,
	created_us = excluded.created_us, expires_us = excluded.expires_us, seen_us = excluded.seen_us`,
		s.ID, s.User, string(s.Role), s.CSRF, consoleMicros(s.Created), consoleMicros(s.Expires), consoleMicros(s.Seen)); err != nil {
		return fmt.Errorf("sqlite: put console session: %w", err)
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
		created, expires, seen int64
	)
	err := c.db.r.QueryRowContext(ctx, `SELECT `+consoleSessionColumns+` FROM console_sessions WHERE id = ?`, id).
		Scan(&s.ID, &s.User, &role, &s.CSRF, &created, &expires, &seen)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return console.Session{}, false, nil
	case err != nil:
		return console.Session{}, false, fmt.Errorf("sqlite: read console session: %w", err)
	}
	s.Role = console.Role(role)
	if err := console.CheckRole(s.Role); err != nil {
		return console.Session{}, false, fmt.Errorf("sqlite: read console session: %w", err)
	}
	s.Created, s.Expires, s.Seen = consoleFromMicros(created), consoleFromMicros(expires), consoleFromMicros(seen)
	return s, true, nil
}

// TouchSession sets a session's Seen; no error if it is gone.
func (c ConsoleStore) TouchSession(ctx context.Context, id string, seen time.Time) error {
	w, err := c.db.writer()
	if err != nil {
		return fmt.Errorf("sqlite: touch console session: %w", err)
	}
	if err := console.CheckTime("seen time", seen); err != nil {
		return fmt.Errorf("sqlite: touch console session: %w", err)
	}
	if console.CheckSessionID(id) != nil {
		return nil // no session has this id
	}
	if _, err := w.ExecContext(ctx, `UPDATE console_sessions SET seen_us = ? WHERE id = ?`, consoleMicros(seen), id); err != nil {
		return fmt.Errorf("sqlite: touch console session: %w", err)
	}
	return nil
}

// DeleteSession removes one session; no error if it is gone.
func (c ConsoleStore) DeleteSession(ctx context.Context, id string) error {
	w, err := c.db.writer()
	if err != nil {
		return fmt.Errorf("sqlite: delete console session: %w", err)
	}
	if console.CheckSessionID(id) != nil {
		return nil
	}
	if _, err := w.ExecContext(ctx, `DELETE FROM console_sessions WHERE id = ?`, id); err != nil {
		return fmt.Errorf("sqlite: delete console session: %w", err)
	}
	return nil
}

// DeleteSessions removes every session of user and returns how many.
func (c ConsoleStore) DeleteSessions(ctx context.Context, user string) (int64, error) {
	w, err := c.db.writer()
	if err != nil {
		return 0, fmt.Errorf("sqlite: delete console sessions of %s: %w", console.Quote(user), err)
	}
	if console.CheckSessionUser(user) != nil {
		return 0, nil // no session has this user
	}
	res, err := w.ExecContext(ctx, `DELETE FROM console_sessions WHERE user = ?`, user)
	if err != nil {
		return 0, fmt.Errorf("sqlite: delete console sessions of %s: %w", console.Quote(user), err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("sqlite: delete console sessions of %s: %w", console.Quote(user), err)
	}
	return n, nil
}

// PruneSessions removes the sessions that expired before t, or were last seen before
// idleBefore, and returns how many.
func (c ConsoleStore) PruneSessions(ctx context.Context, t, idleBefore time.Time) (int64, error) {
	w, err := c.db.writer()
	if err != nil {
		return 0, fmt.Errorf("sqlite: prune console sessions: %w", err)
	}
	if err := cmp.Or(console.CheckTimeRange("expiry bound", t), console.CheckTimeRange("idle bound", idleBefore)); err != nil {
		return 0, fmt.Errorf("sqlite: prune console sessions: %w", err)
	}
	res, err := w.ExecContext(ctx, `DELETE FROM console_sessions WHERE expires_us < ? OR seen_us < ?`,
		consoleMicros(t), consoleMicros(idleBefore))
	if err != nil {
		return 0, fmt.Errorf("sqlite: prune console sessions: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("sqlite: prune console sessions: %w", err)
	}
	return n, nil
}
