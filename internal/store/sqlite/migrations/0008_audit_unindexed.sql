-- The audit log's two secondary indexes go. No query of the store uses the request_id
-- index, and the kind index serves only retention (PruneEvents), which reads a range of
-- seq anyway. Both were derived from the record's JSON, so every append parsed each
-- record to maintain them: about half of what indexing an event into this table cost.
-- The kind and request_id columns stay: they are virtual, computed only when a query
-- reads them, and still answer ad hoc queries.
DROP INDEX audit_events_kind;
DROP INDEX audit_events_request_id;
