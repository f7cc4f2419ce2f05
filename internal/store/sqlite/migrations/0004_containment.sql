-- Containment (package contain). Times are RFC 3339 in UTC with exactly nine fractional
-- digits, like the approvals table, so that their text order is time order.

-- Kill switches, engaged and lifted. Rows are never deleted: a lifted kill stays as the
-- record of who pulled it, why and when, and its engaged_at still voids the tokens and
-- approvals of its scope that were issued before it.
CREATE TABLE kills (
	id            INTEGER NOT NULL PRIMARY KEY,
	scope         TEXT    NOT NULL,  -- "all", or "<kind>:<name>" with kind agent, user, task, tool or upstream
	reason        TEXT    NOT NULL,
	engaged_by    TEXT    NOT NULL,
	engaged_at    TEXT    NOT NULL,
	lifted_by     TEXT,              -- NULL while the kill is engaged
	lifted_reason TEXT,
	lifted_at     TEXT
) STRICT;

-- At most one engaged kill per scope.
CREATE UNIQUE INDEX kills_engaged ON kills (scope) WHERE lifted_at IS NULL;

-- Circuit breakers that are not closed: one row per agent whose breaker is open or
-- half-open; closing a breaker deletes its row (the audit log keeps its history).
CREATE TABLE breakers (
	agent     TEXT NOT NULL PRIMARY KEY,
	state     TEXT NOT NULL CHECK (state IN ('open', 'half_open')),
	signal    TEXT NOT NULL,  -- the signal that tripped it, or "operator"
	detail    TEXT NOT NULL,
	opened_at TEXT NOT NULL
) STRICT;

-- Idempotency keys: a retried write with the same key is answered from the first call's
-- record, never executed twice. Rows expire after the configured retention.
CREATE TABLE idempotency_keys (
	agent       TEXT NOT NULL,
	key         TEXT NOT NULL,
	tool        TEXT NOT NULL,
	args_hash   TEXT NOT NULL,
	request_id  TEXT NOT NULL,  -- the call that executed
	state       TEXT NOT NULL CHECK (state IN ('running', 'done', 'unknown')),
	result      BLOB,           -- the CallToolResult JSON of a done call; NULL if too large to keep
	result_hash TEXT NOT NULL,  -- "sha256:<hex>" of the result, '' until done
	created_at  TEXT NOT NULL,
	finished_at TEXT,
	PRIMARY KEY (agent, key)
) STRICT;

CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);

-- Agents' learned baselines: what normal looks like, as package contain encodes it.
CREATE TABLE baselines (
	agent      TEXT NOT NULL PRIMARY KEY,
	profile    TEXT NOT NULL CHECK (json_valid(profile)),
	updated_at TEXT NOT NULL
) STRICT;
