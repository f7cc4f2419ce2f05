-- The operator console's local users and signed-in sessions, shared by gateway replicas
-- (console.Store; see console.go). Text keys and the names users are listed by use
-- COLLATE "C", so that their order is byte order, as in SQLite.

-- Local console accounts. Users who sign in through OIDC are not stored.
CREATE TABLE console_users (
	name          text        COLLATE "C" NOT NULL PRIMARY KEY,  -- the login name
	role          text        NOT NULL CHECK (role IN ('viewer', 'approver', 'operator', 'admin')),
	password_hash text        NOT NULL,  -- PHC string of the Argon2id hash, never the password
	disabled      boolean     NOT NULL,
	created_at    timestamptz NOT NULL,
	updated_at    timestamptz NOT NULL
);

-- Signed-in browsers. id is the hex SHA-256 of the cookie's token, so a copy of this
-- table signs no one in. "user" is "local:<name>" or "oidc:<email or subject>", so it is
-- not a foreign key; deleting a local user deletes its sessions in the same statement.
CREATE TABLE console_sessions (
	id         text        COLLATE "C" NOT NULL PRIMARY KEY,
	"user"     text        COLLATE "C" NOT NULL,
	role       text        NOT NULL CHECK (role IN ('viewer', 'approver', 'operator', 'admin')),
	csrf       text        NOT NULL,
	created_at timestamptz NOT NULL,
	expires_at timestamptz NOT NULL,  -- the absolute end
	seen_at    timestamptz NOT NULL   -- the last request, for the idle timeout
);

CREATE INDEX console_sessions_user ON console_sessions ("user");
CREATE INDEX console_sessions_expires ON console_sessions (expires_at);
CREATE INDEX console_sessions_seen ON console_sessions (seen_at);
