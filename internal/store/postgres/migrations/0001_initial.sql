-- Chaperone's schema for PostgreSQL: the tables of the sqlite store's migrations 1 to 5,
-- in one migration.
--
-- Times are timestamptz. PostgreSQL keeps microseconds, so the store truncates every
-- time it writes to the microsecond, and reads times back in UTC.
--
-- Text columns that lists are ordered by, or that are keys, use COLLATE "C": their order
-- is byte order, as in SQLite, whatever the database's default collation.
--
-- JSON that the store builds itself (lists of names, labels, approvals given) is jsonb.
-- JSON that must come back byte for byte (a call's arguments, whose hash an approval is
-- bound to; a baseline as package contain encoded it) is json, which PostgreSQL checks
-- and keeps as written. Audit records and checkpoints are text: their hash or signature
-- is over exactly those bytes.

-- The audit log: one row per event. The event column holds the record exactly as it was
-- hashed (audit.Event.MarshalRecord: canonical JSON with its hash); it is the only copy
-- of the event, and every read goes through audit.ParseRecord. seq is the event's
-- position in the log.
--
-- kind, request_id and pruned index the record. They are written by the store from the
-- event it encodes, in the same INSERT (or, for pruned, the same UPDATE), not generated
-- from the record with PostgreSQL's JSON functions: those refuse a record with a \u0000
-- escape in any string (a prompt or argument an agent sent), which would make the
-- append fail, and with it the whole batch of other callers' events. They are never
-- read back as the event's content.
CREATE TABLE audit_events (
	seq        bigint  PRIMARY KEY CHECK (seq > 0),
	event      text    NOT NULL,
	kind       text    COLLATE "C" NOT NULL,
	request_id text    COLLATE "C",  -- NULL if the event has none
	pruned     boolean NOT NULL DEFAULT false  -- the record is a tombstone (audit.Tombstone)
);

CREATE INDEX audit_events_kind ON audit_events (kind, seq);
CREATE INDEX audit_events_request_id ON audit_events (request_id) WHERE request_id IS NOT NULL;

-- Signed audit checkpoints (audit.Checkpoint): one row per checkpoint, the record exactly
-- as it was signed and published. seq is the number of events it covers.
CREATE TABLE audit_checkpoints (
	seq    bigint PRIMARY KEY CHECK (seq > 0),
	record text   NOT NULL
);

-- Tool definition pins: the registry's trust-on-first-approval record, one row per
-- exposed tool name.
CREATE TABLE tool_pins (
	tool        text        COLLATE "C" NOT NULL PRIMARY KEY,
	upstream    text        NOT NULL,
	hash        text        NOT NULL,
	definition  bytea       NOT NULL,  -- canonical JSON of the pinned definition
	approved_by text        NOT NULL,
	approved_at timestamptz NOT NULL
);

-- Registered agents: the agent directory's durable record. Agents declared in the
-- configuration are not stored here. Rows are never deleted: a revoked agent keeps its
-- id, so an id is never reused.
CREATE TABLE agents (
	id            text        COLLATE "C" NOT NULL PRIMARY KEY,
	owner         text        NOT NULL,
	purpose       text        NOT NULL,
	environment   text        NOT NULL CHECK (environment IN ('dev', 'test', 'prod')),
	capabilities  jsonb       NOT NULL CHECK (jsonb_typeof(capabilities) = 'array'),  -- tool names
	autonomy      bigint      NOT NULL CHECK (autonomy BETWEEN 0 AND 3),
	labels        jsonb       NOT NULL CHECK (jsonb_typeof(labels) = 'object'),
	status        text        NOT NULL CHECK (status IN ('active', 'suspended', 'revoked')),
	status_reason text        NOT NULL,
	secret_sha256 text        NOT NULL,  -- hex SHA-256 of the client secret; '' if none
	public_key    bytea,                 -- raw 32-byte Ed25519 key; NULL if none
	created_at    timestamptz NOT NULL,
	updated_at    timestamptz NOT NULL
);

-- Tasks, the units of work access tokens are bound to. agent is not a foreign key:
-- agents declared in the configuration have no row in agents. ("user" is a reserved
-- word in PostgreSQL, hence the quotes.)
CREATE TABLE tasks (
	id         text        COLLATE "C" NOT NULL PRIMARY KEY,
	agent      text        NOT NULL,
	"user"     text        NOT NULL,  -- '' if the task acts for nobody
	tools      jsonb       NOT NULL CHECK (jsonb_typeof(tools) = 'array'),
	created_at timestamptz NOT NULL,
	expires_at timestamptz NOT NULL,
	ended_at   timestamptz,           -- NULL while the task is open
	ended_by   text        NOT NULL,
	end_reason text        NOT NULL
);

-- Token signing keys. private holds the raw private key: restrict who can read this
-- table; encryption at rest arrives with the secrets store.
CREATE TABLE signing_keys (
	id         text        COLLATE "C" NOT NULL PRIMARY KEY,
	private    bytea       NOT NULL,
	created_at timestamptz NOT NULL,
	retired_at timestamptz            -- NULL while the key signs
);

-- Approval requests: tool calls held for a person's decision (package approval). Rows
-- are never deleted.
CREATE TABLE approvals (
	id             text        COLLATE "C" NOT NULL PRIMARY KEY,
	call_hash      text        COLLATE "C" NOT NULL,  -- approval.Hash of the call: the approval is for this call only
	tool           text        NOT NULL,
	upstream       text        NOT NULL,
	arguments      json        NOT NULL CHECK (json_typeof(arguments) = 'object'),  -- as the agent sent them, compacted
	agent          text        NOT NULL,
	"user"         text        NOT NULL,  -- '' if the call acts for nobody
	task           text        NOT NULL,
	session_id     text        NOT NULL,
	reason         text        NOT NULL,  -- the agent's stated reason
	rules          jsonb       NOT NULL CHECK (jsonb_typeof(rules) = 'array'),         -- rule names
	policy_version text        NOT NULL,
	risk           bigint      NOT NULL CHECK (risk BETWEEN 0 AND 100),
	risk_factors   jsonb       NOT NULL CHECK (jsonb_typeof(risk_factors) = 'array'),
	explanation    text        NOT NULL,
	undo           text        NOT NULL,
	status         text        NOT NULL CHECK (status IN ('pending', 'approved', 'denied', 'expired', 'used')),
	required       bigint      NOT NULL CHECK (required >= 1),  -- distinct approvers needed
	approvals      jsonb       NOT NULL CHECK (jsonb_typeof(approvals) = 'array'),     -- [{"by", "at"}], in order
	denied_by      text        NOT NULL,
	deny_code      text        NOT NULL,
	deny_text      text        NOT NULL,
	created_at     timestamptz NOT NULL,
	expires_at     timestamptz NOT NULL,
	decided_at     timestamptz,           -- NULL until approved, denied or expired
	used_at        timestamptz            -- NULL until the approval is consumed
);

CREATE INDEX approvals_call_hash ON approvals (call_hash, status);
CREATE INDEX approvals_status ON approvals (status, created_at);

-- Kill switches, engaged and lifted (package contain). Rows are never deleted: a lifted
-- kill stays as the record of who pulled it, why and when, and its engaged_at still
-- voids the tokens and approvals of its scope that were issued before it.
CREATE TABLE kills (
	id            bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	scope         text        COLLATE "C" NOT NULL,  -- "all", or "<kind>:<name>" with kind agent, user, task, tool or upstream
	reason        text        NOT NULL,
	engaged_by    text        NOT NULL,
	engaged_at    timestamptz NOT NULL,
	lifted_by     text,                  -- NULL while the kill is engaged
	lifted_reason text,
	lifted_at     timestamptz
);

-- At most one engaged kill per scope: what makes EngageKill atomic across replicas.
CREATE UNIQUE INDEX kills_engaged ON kills (scope) WHERE lifted_at IS NULL;

-- Circuit breakers that are not closed: one row per agent whose breaker is open or
-- half-open; closing a breaker deletes its row (the audit log keeps its history).
CREATE TABLE breakers (
	agent     text        COLLATE "C" NOT NULL PRIMARY KEY,
	state     text        NOT NULL CHECK (state IN ('open', 'half_open')),
	signal    text        NOT NULL,  -- the signal that tripped it, or "operator"
	detail    text        NOT NULL,
	opened_at timestamptz NOT NULL
);

-- Idempotency keys: a retried write with the same key is answered from the first call's
-- record, never executed twice. Rows expire after the configured retention.
CREATE TABLE idempotency_keys (
	agent       text        COLLATE "C" NOT NULL,
	key         text        COLLATE "C" NOT NULL,
	tool        text        NOT NULL,
	args_hash   text        NOT NULL,
	request_id  text        NOT NULL,  -- the call that executed
	state       text        NOT NULL CHECK (state IN ('running', 'done', 'unknown')),
	result      bytea,                 -- the CallToolResult JSON of a done call; NULL if too large to keep
	result_hash text        NOT NULL,  -- "sha256:<hex>" of the result, '' until done
	created_at  timestamptz NOT NULL,
	finished_at timestamptz,
	PRIMARY KEY (agent, key)
);

CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);

-- Agents' learned baselines: what normal looks like, as package contain encodes it.
CREATE TABLE baselines (
	agent      text        COLLATE "C" NOT NULL PRIMARY KEY,
	profile    json        NOT NULL,
	updated_at timestamptz NOT NULL
);
