// Package audit is Chaperone's evidence: an append-only, hash-chained log of
// every tool call (allowed or refused), every failed authentication and every
// change to the tool registry or the policy.
//
// A [Log] appends [Event] values to a [Store] (the embedded default is
// internal/store/sqlite). [Verify] walks a stored log and reports the first
// broken link; [Format] renders an event as one line for a person.
//
// # Use
//
// The gateway records the intent of an allowed call before it calls the
// upstream, and the outcome after. When Append returns an error the event is
// not known to be recorded and the call is refused:
//
//	intent := audit.Event{Time: now, Kind: audit.KindCallIntent, RequestID: id, Agent: agent, Tool: tool,
//		ArgsHash: audit.HashArgs(raw), ArgsSummary: audit.SummarizeArgs(raw), Decision: "allow"}
//	if err := log.Append(ctx, &intent); err != nil {
//		return refuse("audit_unavailable", err)
//	}
//	result, err := upstream.Call(ctx, ...)
//	// The call ran: record its outcome even if the agent has gone away.
//	octx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
//	defer cancel()
//	outcome := audit.Event{Time: now2, Kind: audit.KindCallOutcome, RequestID: id, ...}
//	if err := log.Append(octx, &outcome); err != nil { ... }
//
// # What it guarantees
//
//   - Durable before return: when [Log.Append] returns nil, the event is
//     committed by the store (for SQLite: in the WAL with synchronous=FULL)
//     and survives a crash or power loss. Concurrent appends are committed in
//     batches (group commit), so they share a disk flush.
//   - Never best-effort: an event that cannot be recorded is an error for its
//     caller, never dropped. A failed commit fails every event of its batch and
//     the chain continues from the last committed event.
//   - Tamper-evident inside the chain: every event carries the hash of the one
//     before it, and its own hash covers its content and that link. [Verify]
//     detects an edited event, an event deleted from the middle (a gap in
//     Seq), events reordered or deleted and renumbered (a prev_hash that does
//     not match), and records that are not in canonical form.
//   - Crashes show: a call.intent without a call.outcome for its request ID is
//     counted in [Report].Unfinished.
//
// # What it assumes
//
//   - One [Log] per store, and the Log the only writer of the store's events.
//     Stores should refuse a batch that does not continue their chain (the
//     SQLite store does), so a second writer fails instead of forking it.
//   - Callers set Time, Kind, and RequestID on call intents and outcomes;
//     events without them are refused ([ErrInvalidEvent]). Callers keep
//     secrets and argument values out of events: arguments are recorded as
//     [HashArgs] and [SummarizeArgs]. The one exception is content capture,
//     which an operator turns on (audit.capture): then call events carry the
//     arguments and results as they were, unredacted (see [Event].Captured).
//     Captured content is covered by the chain like everything else, so it
//     cannot be removed later without breaking the chain from that event on.
//
// # What it does not do
//
//   - A chain cannot show that events were removed from its end, or that the
//     whole log was replaced by a consistent forgery: every remaining prefix
//     of a valid chain is valid. Detecting that needs an anchor outside the
//     store: keep [Report].Head (or the head hash at a point in time)
//     elsewhere and compare. Signed, externally published checkpoints are
//     planned; until then the chain is evidence against edits, not against
//     someone who can rewrite the whole store.
//   - It does not sign events or encrypt them, and does not rotate or expire
//     them.
//
// # Canonical form and hash
//
// An event's Hash is "sha256:" followed by the lower-case hex SHA-256 of its
// canonical form with Hash set to "". The canonical form is what Go's
// encoding/json produces for the [Event] struct through an Encoder with
// SetEscapeHTML(false), without the newline Encode appends
// ([Event.MarshalRecord]):
//
//   - one JSON object, no whitespace, keys in struct field order: seq, time,
//     kind, request_id, session_id, agent, user, tool, upstream, args_hash,
//     args_summary, decision, reason, message, rules, policy_version,
//     latency_us, result_bytes, result_error, detail, task, chain, token_id,
//     shadow_decision, shadow_rules, arguments, result, captured, prev_hash,
//     hash;
//   - seq, time, kind, prev_hash and hash always present; every other key
//     omitted when its value is "", 0, false or an empty list (so records
//     without captured content are exactly as they were before capture
//     existed);
//   - time in RFC 3339 in UTC with "Z", with at most 6 fractional digits and
//     trailing zeros (and a bare ".") dropped: "2026-03-01T09:00:07.1234Z";
//   - numbers as decimal integers; rules as a JSON array of strings;
//   - strings as UTF-8, escaping only `"` and `\` (as \" and \\), \b \f \n \r
//     \t, other bytes below 0x20 as \u00XX with lower-case hex, and U+2028 and
//     U+2029 as \u2028 and \u2029. Everything else, including <, > and & and
//     all other non-ASCII characters, is written as it is. The log replaces
//     invalid UTF-8 with U+FFFD before hashing;
//   - arguments and result, when present, are JSON values embedded as they
//     are, compacted: whitespace outside strings removed (Go's json.Compact),
//     and nothing else changed — not the key order, not the escapes inside
//     strings (a `\u003c` stays six characters), not the spelling of numbers.
//     The log compacts them, and replaces invalid UTF-8 with U+FFFD, before
//     hashing, and refuses an event whose content is not valid JSON.
//
// So the canonical bytes always end in `"hash":""}`, and a stored record
// (the canonical form with the hash filled in, which the SQLite store keeps
// in audit_events.event) can be checked without re-encoding anything: replace
// its final `"hash":"sha256:..."}` with `"hash":""}` and hash the bytes. In
// Python:
//
//	import hashlib, json, sqlite3
//	db = sqlite3.connect("file:chaperone.db?mode=ro", uri=True)
//	prev, want = "", 1
//	for seq, rec in db.execute("SELECT seq, event FROM audit_events ORDER BY seq"):
//	    e = json.loads(rec)
//	    assert seq == e["seq"] == want, f"event {want} missing or misplaced"
//	    body = rec[: rec.rindex('"hash":')] + '"hash":""}'
//	    assert e["hash"] == "sha256:" + hashlib.sha256(body.encode()).hexdigest(), f"event {seq} edited"
//	    assert e["prev_hash"] == prev, f"event {seq} prev_hash does not match"
//	    prev, want = e["hash"], want + 1
//	print(want - 1, "events, head", prev)
package audit
