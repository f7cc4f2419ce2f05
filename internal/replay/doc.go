// Package replay runs recorded agent sessions through the gateway's pipeline again, offline,
// to see what a configuration and a policy decide for them: `chaperone replay`. [Export]
// writes such a trace from the audit log (`chaperone audit export --format trace`) for the
// calls whose arguments the gateway captured (audit.capture).
//
// # Traces
//
// [ReadTrace] reads a trace: JSON Lines of session, prompt, call and model records, as
// specified in the trace format document (docs: trace.md). Lines of different sessions may
// interleave; order within a session is kept. Unknown record types and unknown fields are
// ignored. A session without a time starts at 2026-01-01T00:00:00Z, and a
// call without a time happens N seconds after its session's start, N being its position in
// the session counting from 1, so that time-based rules decide the same way on every run.
// Traces are bounded: [MaxLineBytes] per line, [MaxLines] lines, [MaxSessions] sessions.
//
// # Replay
//
// [Run] replays each session on its own, from empty session state, through the real
// [pipeline.Pipeline]: registry lookup, capability scope, environment, argument validation
// (schema and overlay) and policy. No upstream is contacted: a call that runs returns its
// recorded result ({"content":[]} when none was recorded). A refused call does not run and
// changes nothing. A call needing approval is treated as approved ([ApprovalsGranted],
// the default) or refused ([ApprovalsDenied]).
//
// The registry holds the tools the configuration declares, under the same exposed names,
// classes, overlays and environments as in the gateway. Their definitions come from
// [LoadDefinitions]: the gateway's store, else a directory of input schemas. A tool with no
// definition gets a permissive schema that accepts any argument name, leaving its overlay as
// the only check, and the report warns about it.
//
// # Output
//
// The [Report] has one [Decision] per call, in the trace's order; [Report.WriteJSONL] writes
// them as JSON Lines, for example
//
//	{"session":"s1","id":"c3","tool":"send_money","decision":"approve","reason":"approval_required","rules":["payments-need-a-person"]}
//
// reason (the pipeline's refusal code), rules and risk are omitted when empty: an allowed
// call has no reason, a default deny no rules, and risk is not computed yet. The same trace,
// configuration, definitions and policy always give byte-identical output: nothing depends
// on the clock or on map order. [Diff] compares two replays of one trace.
//
// # What it does not do
//
// Replay does not replay definition pinning (every definition it is given counts as
// approved), call budgets of task tokens, upstream failures or the result sensors and flow
// tracking that later versions of the pipeline add. Its audit events are discarded.
package replay
