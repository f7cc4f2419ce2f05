package console

import (
	"context"
	"errors"
	"time"
)

// Role is what a console user may do. Roles are ordered: each can do everything the
// ones before it can.
//
//	viewer    read every page
//	approver  also approve and decline held calls
//	operator  also pull and lift kill switches, suspend, resume and revoke agents
//	admin     also manage console users, reload the policy, approve tool definitions
type Role string

// The roles, from least to most.
const (
	RoleViewer   Role = "viewer"
	RoleApprover Role = "approver"
	RoleOperator Role = "operator"
	RoleAdmin    Role = "admin"
)

// User is a local console account. Users who sign in through OIDC are not stored: their
// role comes from their groups at each sign-in.
type User struct {
	Name string // the login name: 1 to 64 of [a-z0-9._@-]
	Role Role
	// PasswordHash is the PHC string of the password's Argon2id hash
	// ("$argon2id$v=19$m=...,t=...,p=...$<salt>$<hash>"); never the password.
	PasswordHash string
	Disabled     bool
	Created      time.Time
	Updated      time.Time
}

// Session is a signed-in browser. The cookie holds a random token; ID is the SHA-256 of
// it in hex, so a copy of the database does not sign anyone in.
type Session struct {
	ID   string
	User string // "local:<name>" or "oidc:<email or subject>"
	Role Role
	// CSRF is the token every form of this session must carry back.
	CSRF    string
	Created time.Time
	// Expires is when the session ends whatever happens (the absolute lifetime); Seen the
	// last request, for the idle timeout.
	Expires time.Time
	Seen    time.Time
}

// ErrUserExists is returned, wrapped, by CreateUser for a name already taken.
var ErrUserExists = errors.New("console user already exists")

// ErrUnknownUser is returned, wrapped, by UpdateUser and DeleteUser for a name no user has.
var ErrUnknownUser = errors.New("unknown console user")

// Store keeps console users and sessions. Both backends implement it.
type Store interface {
	// CreateFirstUser stores u only if no console user exists yet, in one transaction, and
	// reports whether it did: of replicas racing to finish setup, one wins.
	CreateFirstUser(ctx context.Context, u User) (bool, error)
	// CreateUser stores a new user; ErrUserExists if the name is taken.
	CreateUser(ctx context.Context, u User) error
	// UpdateUser replaces a stored user's role, password hash, disabled flag and Updated
	// time; ErrUnknownUser if there is none.
	UpdateUser(ctx context.Context, u User) error
	// DeleteUser removes a user and every session of "local:<name>"; ErrUnknownUser if there
	// is none.
	DeleteUser(ctx context.Context, name string) error
	// ConsoleUser returns one user, and false if there is none.
	ConsoleUser(ctx context.Context, name string) (User, bool, error)
	// ConsoleUsers returns every user, by name.
	ConsoleUsers(ctx context.Context) ([]User, error)

	// PutSession stores a session, replacing one with the same ID.
	PutSession(ctx context.Context, s Session) error
	// ConsoleSession returns one session, and false if there is none (expired ones too:
	// the caller checks the times).
	ConsoleSession(ctx context.Context, id string) (Session, bool, error)
	// TouchSession sets a session's Seen; no error if it is gone.
	TouchSession(ctx context.Context, id string, seen time.Time) error
	// DeleteSession removes one session; no error if it is gone.
	DeleteSession(ctx context.Context, id string) error
	// DeleteSessions removes every session of user ("local:<name>" or "oidc:...") and
	// returns how many.
	DeleteSessions(ctx context.Context, user string) (int64, error)
	// PruneSessions removes the sessions that expired before t, or were last seen before
	// idleBefore, and returns how many.
	PruneSessions(ctx context.Context, t, idleBefore time.Time) (int64, error)
}
