// Package report builds the evidence report of a time window: what Chaperone decided, who
// approved what, how incidents were contained, which policy was in force, and whether the
// audit log that says so is intact. [Build] reads a gateway's store (read-only is enough);
// [Write] puts the report in a directory as report.json, for machines, and report.html,
// one self-contained page for people, readable on screen and on paper.
//
// # Use
//
//	r, err := report.Build(ctx, report.Options{From: from, To: to, Store: db, Keys: keys})
//	if err != nil { ... }
//	err = report.Write("evidence/2026-q1", r)
//
// # What it guarantees
//
//   - Determinism: the same store and options (the clock is [Options].Now) give
//     byte-identical files. Everything is sorted; nothing depends on map order.
//   - No secrets: argument previews go through [approval.Preview], free text a person or
//     agent typed through [approval.RedactText], and the agent directory carries no secret,
//     secret hash or key.
//   - Escaping: every value in the HTML is escaped by html/template; the page has no
//     script and loads nothing from elsewhere.
//   - The figures are [insight.Figures] of the window, so they match the console's.
//   - The verification section is [audit.VerifyChain] over the whole log, anchored in the
//     stored signed checkpoints when trusted keys are given — what `chaperone audit
//     verify` does. A report of a broken log is still built, and says where it broke.
//
// # What it does not do
//
// The report is a summary of the store as it is when it is built; it is evidence only
// together with the verification it carries, which anyone can repeat with `chaperone
// audit verify`. It does not sign itself. With several gateway replicas writing one log,
// "in force" for policy versions is per the order of their policy.loaded events, and two
// versions may have been in force at once on different replicas.
package report
