-- The audit log's kind and request_id columns go. Migration 8 kept them on the grounds
-- that virtual columns are computed only when a query reads them; in a STRICT table
-- SQLite computes them on every insert as well, to check their declared type, so every
-- appended event was still parsed as JSON: a third of the journal indexer's time in a
-- gateway's CPU profile, about half of an insert in the store's benchmark. No query of the
-- store reads them. Ad hoc queries read the record itself:
-- event ->> '$.kind', event ->> '$.request_id'.
ALTER TABLE audit_events DROP COLUMN kind;
ALTER TABLE audit_events DROP COLUMN request_id;
