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
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

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

// Bounds of what the console stores. They match the sqlite store's.
const (
	pgConsoleMaxName  = 64  // a login name, as console.User documents
	pgConsoleMaxField = 512 // a password hash, a session's user or CSRF token
	pgConsoleIDLen    = 64  // hex SHA-256
	pgConsoleMinYear  = 1
	pgConsoleMaxYear  = 9999
	pgConsoleQuoteLen = 64 // how much of a bad key an error quotes
)

const pgConsoleUserColumns = `name, role, password_hash, disabled, created_at, updated_at`

const pgConsoleSessionColumns = `id, "user", role, csrf, created_at, expires_at, seen_at`

// pgConsoleQuote quotes at most pgConsoleQuoteLen bytes of s, so that an oversized key
// does not make an oversized error.
func pgConsoleQuote(s string) string {
	if len(s) > pgConsoleQuoteLen {
		return strconv.Quote(s[:pgConsoleQuoteLen]) + "..."
	}
	return strconv.Quote(s)
}

// pgConsoleText checks a string field: 1 to limit bytes of UTF-8 without NUL.
func pgConsoleText(field, s string, limit int) error {
	switch {
	case s == "":
		return fmt.Errorf("%s is empty", field)
	case len(s) > limit:
		return fmt.Errorf("%s is %d bytes, more than %d", field, len(s), limit)
	case !utf8.ValidString(s):
		return fmt.Errorf("%s is not valid UTF-8", field)
	case strings.IndexByte(s, 0) >= 0:
		return fmt.Errorf("%s holds a NUL byte", field)
	}
	return nil
}

// pgConsoleName checks a login name: 1 to 64 of [a-z0-9._@-].
func pgConsoleName(n string) error {
	if n == "" || len(n) > pgConsoleMaxName {
		return fmt.Errorf("name must be 1 to %d bytes, got %d", pgConsoleMaxName, len(n))
	}
	for i := 0; i < len(n); i++ {
		c := n[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '@' || c == '-') {
			return fmt.Errorf("name must be of a-z, 0-9 and . _ @ -, got byte %q at %d", c, i)
		}
	}
	return nil
}

// pgConsoleRole checks a role is one of the four.
func pgConsoleRole(r console.Role) error {
	switch r {
	case console.RoleViewer, console.RoleApprover, console.RoleOperator, console.RoleAdmin:
		return nil
	}
	if err := pgConsoleText("role", string(r), pgConsoleMaxName); err != nil {
		return err
	}
	return fmt.Errorf("role %s is not viewer, approver, operator or admin", pgConsoleQuote(string(r)))
}

// pgConsoleTimeOK checks a record's time is set and within years 1 to 9999, a range both
// backends hold exactly.
func pgConsoleTimeOK(field string, t time.Time) error {
	if t.IsZero() {
		return fmt.Errorf("%s is not set", field)
	}
	return pgConsoleTimeRange(field, t)
}

func pgConsoleTimeRange(field string, t time.Time) error {
	if y := t.UTC().Year(); y < pgConsoleMinYear || y > pgConsoleMaxYear {
		return fmt.Errorf("%s is in year %d, outside %d to %d", field, y, pgConsoleMinYear, pgConsoleMaxYear)
	}
	return nil
}

// pgConsoleID checks a session id: 64 lower-case hex digits, the SHA-256 of the token, so
// that a raw token is never stored.
func pgConsoleID(id string) error {
	if len(id) != pgConsoleIDLen {
		return fmt.Errorf("session id must be %d hex digits (a SHA-256), got %d bytes", pgConsoleIDLen, len(id))
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return fmt.Errorf("session id must be lower-case hex, got byte %q at %d", c, i)
		}
	}
	return nil
}

// pgConsoleSessionUser checks a session's user: "local:<name>" or "oidc:<email or
// subject>".
func pgConsoleSessionUser(u string) error {
	if err := pgConsoleText("user", u, pgConsoleMaxField); err != nil {
		return err
	}
	if name, ok := strings.CutPrefix(u, "local:"); ok {
		if err := pgConsoleName(name); err != nil {
			return fmt.Errorf("user: %w", err)
		}
		return nil
	}
	if rest, ok := strings.CutPrefix(u, "oidc:"); ok && rest != "" {
		return nil
	}
	return fmt.Errorf(`user must be "local:<name>" or "oidc:<email or subject>", got %s`, pgConsoleQuote(u))
}

// pgConsoleCheckUser checks every field of a user the store writes (Created only when
// created is set: an update keeps the stored one), and returns the first problem.
func pgConsoleCheckUser(u console.User, created bool) error {
	var createdErr error
	if created {
		createdErr = pgConsoleTimeOK("created time", u.Created)
	}
	return cmp.Or(pgConsoleName(u.Name), pgConsoleRole(u.Role),
		pgConsoleText("password hash", u.PasswordHash, pgConsoleMaxField), createdErr, pgConsoleTimeOK("updated time", u.Updated))
}

// pgConsoleCheckSession checks every field of a session, and returns the first problem.
func pgConsoleCheckSession(s console.Session) error {
	return cmp.Or(pgConsoleID(s.ID), pgConsoleSessionUser(s.User), pgConsoleRole(s.Role),
		pgConsoleText("csrf token", s.CSRF, pgConsoleMaxField), pgConsoleTimeOK("created time", s.Created),
		pgConsoleTimeOK("expiry", s.Expires), pgConsoleTimeOK("seen time", s.Seen))
}

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
		return false, fmt.Errorf("postgres: create first console user %s: %w", pgConsoleQuote(u.Name), err)
	}
	if err := pgConsoleCheckUser(u, true); err != nil {
		return false, fmt.Errorf("postgres: create first console user %s: %w", pgConsoleQuote(u.Name), err)
	}
	tx, err := c.db.pgBegin(ctx)
	if err != nil {
		return false, fmt.Errorf("postgres: create first console user %s: %w", pgConsoleQuote(u.Name), err)
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
		return false, fmt.Errorf("postgres: create first console user %s: %w", pgConsoleQuote(u.Name), err)
	}
	return inserted == 1, nil
}

// CreateUser stores a new user; the error wraps [console.ErrUserExists] if the name is
// taken.
func (c ConsoleStore) CreateUser(ctx context.Context, u console.User) error {
	if err := c.db.writable(); err != nil {
		return fmt.Errorf("postgres: create console user %s: %w", pgConsoleQuote(u.Name), err)
	}
	if err := pgConsoleCheckUser(u, true); err != nil {
		return fmt.Errorf("postgres: create console user %s: %w", pgConsoleQuote(u.Name), err)
	}
	tag, err := c.db.pool.Exec(ctx, `INSERT INTO console_users (`+pgConsoleUserColumns+`) VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (name) DO NOTHING`,
		u.Name, string(u.Role), u.PasswordHash, u.Disabled, pgTime(u.Created), pgTime(u.Updated))
	if err != nil {
		return fmt.Errorf("postgres: create console user %s: %w", pgConsoleQuote(u.Name), err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("postgres: create console user %s: %w", pgConsoleQuote(u.Name), console.ErrUserExists)
	}
	return nil
}

// UpdateUser replaces a stored user's role, password hash, disabled flag and Updated
// time, keeping its Created time; the error wraps [console.ErrUnknownUser] if there is
// none.
func (c ConsoleStore) UpdateUser(ctx context.Context, u console.User) error {
	if err := c.db.writable(); err != nil {
		return fmt.Errorf("postgres: update console user %s: %w", pgConsoleQuote(u.Name), err)
	}
	if err := pgConsoleCheckUser(u, false); err != nil {
		return fmt.Errorf("postgres: update console user %s: %w", pgConsoleQuote(u.Name), err)
	}
	tag, err := c.db.pool.Exec(ctx, `UPDATE console_users SET role = $2, password_hash = $3, disabled = $4, updated_at = $5
WHERE name = $1`, u.Name, string(u.Role), u.PasswordHash, u.Disabled, pgTime(u.Updated))
	if err != nil {
		return fmt.Errorf("postgres: update console user %s: %w", pgConsoleQuote(u.Name), err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("postgres: update console user %s: %w", pgConsoleQuote(u.Name), console.ErrUnknownUser)
	}
	return nil
}

// DeleteUser removes a user and every session of "local:<name>" in one statement; the
// error wraps [console.ErrUnknownUser] if there is no such user, and then nothing is
// deleted.
func (c ConsoleStore) DeleteUser(ctx context.Context, name string) error {
	if err := c.db.writable(); err != nil {
		return fmt.Errorf("postgres: delete console user %s: %w", pgConsoleQuote(name), err)
	}
	if pgConsoleName(name) != nil {
		// No user can have this name.
		return fmt.Errorf("postgres: delete console user %s: %w", pgConsoleQuote(name), console.ErrUnknownUser)
	}
	var n int64
	err := c.db.pool.QueryRow(ctx, `WITH u AS (
	DELETE FROM console_users WHERE name = $1 RETURNING 1
), s AS (
	DELETE FROM console_sessions WHERE "user" = $2 AND EXISTS (SELECT 1 FROM u)
)
SELECT count(*) FROM u`, name, "local:"+name).Scan(&n)
	if err != nil {
		return fmt.Errorf("postgres: delete console user %s: %w", pgConsoleQuote(name), err)
	}
	if n == 0 {
		return fmt.Errorf("postgres: delete console user %s: %w", pgConsoleQuote(name), console.ErrUnknownUser)
	}
	return nil
}

// ConsoleUser returns one user, and false if there is none.
func (c ConsoleStore) ConsoleUser(ctx context.Context, name string) (console.User, bool, error) {
	if pgConsoleName(name) != nil {
		return console.User{}, false, nil
	}
	u, err := pgConsoleScanUser(c.db.pool.QueryRow(ctx, `SELECT `+pgConsoleUserColumns+` FROM console_users WHERE name = $1`, name))
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return console.User{}, false, nil
	case err != nil:
		return console.User{}, false, fmt.Errorf("postgres: read console user %s: %w", pgConsoleQuote(name), err)
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
	if err := pgConsoleRole(u.Role); err != nil {
		return console.User{}, fmt.Errorf("user %s: %w", pgConsoleQuote(u.Name), err)
	}
	u.Created, u.Updated = pgReadTime(&created), pgReadTime(&updated)
	return u, nil
}

// PutSession stores a session, replacing one with the same ID.
func (c ConsoleStore) PutSession(ctx context.Context, s console.Session) error {
	if err := c.db.writable(); err != nil {
		return fmt.Errorf("postgres: put console session: %w", err)
	}
	if err := pgConsoleCheckSession(s); err != nil {
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
	if pgConsoleID(id) != nil {
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
	if err := pgConsoleRole(s.Role); err != nil {
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
	if err := pgConsoleTimeOK("seen time", seen); err != nil {
		return fmt.Errorf("postgres: touch console session: %w", err)
	}
	if pgConsoleID(id) != nil {
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
	if pgConsoleID(id) != nil {
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
		return 0, fmt.Errorf("postgres: delete console sessions of %s: %w", pgConsoleQuote(user), err)
	}
	if pgConsoleSessionUser(user) != nil {
		return 0, nil // no session has this user
	}
	tag, err := c.db.pool.Exec(ctx, `DELETE FROM console_sessions WHERE "user" = $1`, user)
	if err != nil {
		return 0, fmt.Errorf("postgres: delete console sessions of %s: %w", pgConsoleQuote(user), err)
	}
	return tag.RowsAffected(), nil
}

// PruneSessions removes the sessions that expired before t, or were last seen before
// idleBefore, and returns how many.
func (c ConsoleStore) PruneSessions(ctx context.Context, t, idleBefore time.Time) (int64, error) {
	if err := c.db.writable(); err != nil {
		return 0, fmt.Errorf("postgres: prune console sessions: %w", err)
	}
	if err := cmp.Or(pgConsoleTimeRange("expiry bound", t), pgConsoleTimeRange("idle bound", idleBefore)); err != nil {
		return 0, fmt.Errorf("postgres: prune console sessions: %w", err)
	}
	tag, err := c.db.pool.Exec(ctx, `DELETE FROM console_sessions WHERE expires_at < $1 OR seen_at < $2`,
		pgTime(t), pgTime(idleBefore))
	if err != nil {
		return 0, fmt.Errorf("postgres: prune console sessions: %w", err)
	}
	return tag.RowsAffected(), nil
}
