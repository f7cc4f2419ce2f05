-- The operator console's local users and signed-in sessions (console.Store; see
-- console.go). Times are integer microseconds since the Unix epoch, UTC: fixed width
-- whatever the year, so that SQL compares them as numbers (PruneSessions), and exact at
-- the precision both backends keep.

-- Local console accounts. Users who sign in through OIDC are not stored.
CREATE TABLE console_users (
	name          TEXT    NOT NULL PRIMARY KEY,  -- the login name; ordered as bytes
	role          TEXT    NOT NULL CHECK (role IN ('viewer', 'approver', 'operator', 'admin')),
	password_hash TEXT    NOT NULL,              -- PHC string of the Argon2id hash, never the password
	disabled      INTEGER NOT NULL CHECK (disabled IN (0, 1)),
	created_us    INTEGER NOT NULL,
	updated_us    INTEGER NOT NULL
) STRICT;

-- Signed-in browsers. id is the hex SHA-256 of the cookie's token, so a copy of this
-- table signs no one in. user is "local:<name>" or "oidc:<email or subject>", so it is
-- not a foreign key; deleting a local user deletes its sessions in the same transaction.
CREATE TABLE console_sessions (
	id         TEXT    NOT NULL PRIMARY KEY,
	user       TEXT    NOT NULL,
	role       TEXT    NOT NULL CHECK (role IN ('viewer', 'approver', 'operator', 'admin')),
	csrf       TEXT    NOT NULL,
	created_us INTEGER NOT NULL,
	expires_us INTEGER NOT NULL,  -- the absolute end
	seen_us    INTEGER NOT NULL   -- the last request, for the idle timeout
) STRICT;

CREATE INDEX console_sessions_user ON console_sessions (user);
CREATE INDEX console_sessions_expires ON console_sessions (expires_us);
CREATE INDEX console_sessions_seen ON console_sessions (seen_us);
