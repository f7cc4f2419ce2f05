-- The audit log: one row per event. The event column holds the record exactly
-- as it was hashed (audit.Event.MarshalRecord: canonical JSON with its hash);
-- it is the only copy of the event. seq is the event's position in the log.
-- kind and request_id are derived from the record for indexing and cannot be
-- written on their own, so they can never disagree with it.
CREATE TABLE audit_events (
	seq        INTEGER PRIMARY KEY CHECK (seq > 0),
	event      TEXT    NOT NULL,
	kind       TEXT    GENERATED ALWAYS AS (event ->> '$.kind') VIRTUAL,
	request_id TEXT    GENERATED ALWAYS AS (event ->> '$.request_id') VIRTUAL
) STRICT;

CREATE INDEX audit_events_kind ON audit_events (kind, seq);
CREATE INDEX audit_events_request_id ON audit_events (request_id) WHERE request_id IS NOT NULL;

-- Tool definition pins: the registry's trust-on-first-approval record, one row
-- per exposed tool name.
CREATE TABLE tool_pins (
	tool        TEXT NOT NULL PRIMARY KEY,
	upstream    TEXT NOT NULL,
	hash        TEXT NOT NULL,
	definition  BLOB NOT NULL, -- canonical JSON of the pinned definition
	approved_by TEXT NOT NULL,
	approved_at TEXT NOT NULL  -- RFC 3339 with nanoseconds, UTC
) STRICT;
