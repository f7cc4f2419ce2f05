// Package auditexport writes Chaperone's audit log out for people and systems that do
// not read its store: JSON Lines of the log's own records ([WriteJSONL]) and OCSF
// events for a SIEM ([WriteOCSF]), selected by a [Filter]. internal/replay writes the
// third format, the trace `chaperone replay` reads, with the same filter and redaction.
//
// # What it guarantees
//
//   - No detected secret leaves: every field of an event that can carry text an agent,
//     a user or an upstream chose, including captured arguments and results, passes
//     through Chaperone's secret scanner ([Redactor]) before it is written, and an
//     event in which something was redacted is marked ("export_redacted"). Captured
//     JSON stays valid JSON; JSON that cannot be walked is replaced whole.
//   - Deterministic: the same log and filter give the same bytes.
//   - Tombstones (events whose content retention removed) are never written, and are
//     counted so the reader knows what is missing.
//
// # What it assumes
//
//   - The chain was verified on the store (`chaperone audit verify`). An export is a
//     copy for reading: a redacted record no longer hashes to its hash, and nothing
//     stops a copy from being edited once written.
//
// # What it does not do
//
//   - It cannot find secrets the scanner does not recognise (see
//     internal/inspect's SecretScanner): redaction lowers the risk of sharing an
//     export, it does not make captured content public.
package auditexport
