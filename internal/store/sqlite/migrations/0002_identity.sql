-- Registered agents: the agent directory's durable record. Agents declared in the
-- configuration are not stored here. Rows are never deleted: a revoked agent keeps its
-- id, so an id is never reused.
CREATE TABLE agents (
	id            TEXT    NOT NULL PRIMARY KEY,
	owner         TEXT    NOT NULL,
	purpose       TEXT    NOT NULL,
	environment   TEXT    NOT NULL CHECK (environment IN ('dev', 'test', 'prod')),
	capabilities  TEXT    NOT NULL CHECK (json_type(capabilities) = 'array'),  -- JSON array of tool names
	autonomy      INTEGER NOT NULL CHECK (autonomy BETWEEN 0 AND 3),
	labels        TEXT    NOT NULL CHECK (json_type(labels) = 'object'),       -- JSON object
	status        TEXT    NOT NULL CHECK (status IN ('active', 'suspended', 'revoked')),
	status_reason TEXT    NOT NULL,
	secret_sha256 TEXT    NOT NULL,   -- hex SHA-256 of the client secret; '' if none
	public_key    BLOB,               -- raw 32-byte Ed25519 key; NULL if none
	created_at    TEXT    NOT NULL,   -- RFC 3339 with nanoseconds, UTC
	updated_at    TEXT    NOT NULL
) STRICT;

-- Tasks, the units of work access tokens are bound to. agent is not a foreign key:
-- agents declared in the configuration have no row in agents.
CREATE TABLE tasks (
	id         TEXT NOT NULL PRIMARY KEY,
	agent      TEXT NOT NULL,
	user       TEXT NOT NULL,  -- '' if the task acts for nobody
	tools      TEXT NOT NULL CHECK (json_type(tools) = 'array'),  -- JSON array
	created_at TEXT NOT NULL,  -- RFC 3339 with nanoseconds, UTC
	expires_at TEXT NOT NULL,
	ended_at   TEXT,           -- NULL while the task is open
	ended_by   TEXT NOT NULL,
	end_reason TEXT NOT NULL
) STRICT;

-- Token signing keys. private holds the raw private key: the database file is
-- readable by its owner only (0600); encryption at rest arrives with the secrets store.
CREATE TABLE signing_keys (
	id         TEXT NOT NULL PRIMARY KEY,
	private    BLOB NOT NULL,
	created_at TEXT NOT NULL,  -- RFC 3339 with nanoseconds, UTC
	retired_at TEXT            -- NULL while the key signs
) STRICT;
