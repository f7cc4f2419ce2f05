-- Signed audit checkpoints (audit.Checkpoint): one row per checkpoint, the record exactly
-- as it was signed and published. seq is the number of events it covers.
CREATE TABLE audit_checkpoints (
	seq    INTEGER PRIMARY KEY CHECK (seq > 0),
	record TEXT    NOT NULL
) STRICT;
