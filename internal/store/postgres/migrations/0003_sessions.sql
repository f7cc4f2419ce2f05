-- MCP sessions and the journals of their information-flow state, shared by gateway
-- replicas (gateway.SessionStore and flow.Journal; see sessions.go and flow.go).

-- One row per MCP session: the id the gateway handed out in Mcp-Session-Id, the agent it
-- belongs to (to any other agent it does not exist) and the protocol version it
-- negotiated. last_seen is touched at most every quarter of the idle time, not per call.
CREATE TABLE mcp_sessions (
	id         text        COLLATE "C" PRIMARY KEY,
	agent      text        COLLATE "C" NOT NULL,
	protocol   text        NOT NULL,
	created_at timestamptz NOT NULL,
	last_seen  timestamptz NOT NULL
);
CREATE INDEX mcp_sessions_last_seen ON mcp_sessions (last_seen);

-- Flow journals: the inputs of a flow session (prompts and calls that ran), in order,
-- from which every replica rebuilds the same state. Keys are bytea: flow keys hold NUL
-- bytes, which text cannot. A key is stored as 0x00 and the key, or, past 512 bytes, as
-- 0x01 and its SHA-256.
--
-- Every entry's seq comes from flow_seq, so it is above every seq handed out before, for
-- any key: a journal ended and begun again never reuses a seq a replica has applied.
CREATE SEQUENCE flow_seq AS bigint;

-- One row per journal: its last entry (seq), the entry before that (prev, 0 if none),
-- and when it was last appended to or touched, for idle expiry. Appends to one key
-- serialise on this row.
CREATE TABLE flow_heads (
	key     bytea       PRIMARY KEY,
	seq     bigint      NOT NULL CHECK (seq > 0),
	prev    bigint      NOT NULL CHECK (prev >= 0 AND prev < seq),
	last_at timestamptz NOT NULL
);
CREATE INDEX flow_heads_last_at ON flow_heads (last_at);

-- One row per entry: prev is the seq of the key's entry before it (0 for the first), so
-- a reader can tell an entry that follows what it has applied from one that begins the
-- journal again. entry is flow.MarshalEntry's encoding, byte for byte. Deleting a head
-- deletes its entries, including any an append committed while the delete waited for
-- the head's lock.
CREATE TABLE flow_entries (
	key   bytea  NOT NULL REFERENCES flow_heads (key) ON DELETE CASCADE,
	seq   bigint NOT NULL CHECK (seq > 0),
	prev  bigint NOT NULL CHECK (prev >= 0 AND prev < seq),
	entry bytea  NOT NULL,
	PRIMARY KEY (key, seq)
);
