-- Approval requests: tool calls held for a person's decision (package approval). Rows
-- are never deleted. Times are RFC 3339 in UTC with exactly nine fractional digits
-- (2026-03-01T09:00:07.123000000Z), so that their text order is time order: expiry and
-- listing compare them in SQL.
CREATE TABLE approvals (
	id             TEXT    NOT NULL PRIMARY KEY,
	call_hash      TEXT    NOT NULL,  -- approval.Hash of the call: the approval is for this call only
	tool           TEXT    NOT NULL,
	upstream       TEXT    NOT NULL,
	arguments      TEXT    NOT NULL CHECK (json_type(arguments) = 'object'),  -- as the agent sent them, compacted
	agent          TEXT    NOT NULL,
	user           TEXT    NOT NULL,  -- '' if the call acts for nobody
	task           TEXT    NOT NULL,
	session_id     TEXT    NOT NULL,
	reason         TEXT    NOT NULL,  -- the agent's stated reason
	rules          TEXT    NOT NULL CHECK (json_type(rules) = 'array'),         -- JSON array of rule names
	policy_version TEXT    NOT NULL,
	risk           INTEGER NOT NULL CHECK (risk BETWEEN 0 AND 100),
	risk_factors   TEXT    NOT NULL CHECK (json_type(risk_factors) = 'array'),  -- JSON array
	explanation    TEXT    NOT NULL,
	undo           TEXT    NOT NULL,
	status         TEXT    NOT NULL CHECK (status IN ('pending', 'approved', 'denied', 'expired', 'used')),
	required       INTEGER NOT NULL CHECK (required >= 1),  -- distinct approvers needed
	approvals      TEXT    NOT NULL CHECK (json_type(approvals) = 'array'),     -- JSON array of {"by", "at"}, in order
	denied_by      TEXT    NOT NULL,
	deny_code      TEXT    NOT NULL,
	deny_text      TEXT    NOT NULL,
	created_at     TEXT    NOT NULL,
	expires_at     TEXT    NOT NULL,
	decided_at     TEXT,              -- NULL until approved, denied or expired
	used_at        TEXT               -- NULL until the approval is consumed
) STRICT;

CREATE INDEX approvals_call_hash ON approvals (call_hash, status);
CREATE INDEX approvals_status ON approvals (status, created_at);
