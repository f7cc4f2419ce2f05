// Package flow is information-flow control for agent sessions: what a session has seen,
// where each value it holds came from, and what it has done.
//
// Prompt injection cannot be reliably detected, so Chaperone follows the data instead:
// content an outsider can influence must not choose where money, mail or data goes.
//
// # Labels
//
// Every tool declares what its results are ([Labels]): trusted or untrusted (content an
// outsider can influence: inbound mail, web pages, shared documents, tickets, messages
// from other people) and private or public (data that must not leave). A tool that
// declares nothing is taken to return untrusted, private content: the safe assumption
// costs approvals, never a leak. A tool's sinks are the arguments that choose where its
// effect lands (a recipient, an account, a URL, a path); a write, external or destructive
// tool that names none has every argument as a sink, a read tool none.
//
// # Session state
//
// A [Session] is one agent context: an MCP session, or, for calls made without one, the
// task (or else the agent) they belong to. From the results of the calls it let through
// it knows whether the context has seen untrusted content and whether it has seen private
// data — the facts the Agents Rule of Two needs — and it remembers the values those
// results held (see Values), each with the call it first appeared in. Values from the
// user's prompt and from trusted tools are remembered as trusted. A call that was
// refused did not run: it changes nothing. A new session starts clean.
//
// An argument is from untrusted content when one of its values was seen in an untrusted
// result and never in a trusted source; it is from trusted sources when every one of its
// values was seen in a trusted source. A value the agent made up itself is neither.
//
// # Bounds
//
// A session remembers at most [Limits].MaxBytes of values (256 KiB by default: a few
// thousand typical values; each value costs its key, at most 64 bytes of its text as
// found, and about 80 bytes of bookkeeping). When untrusted values no longer fit, the
// session is marked overflowed and from then on every argument value not known to be
// trusted counts as untrusted — forgetting fails closed. Trusted values that do not fit
// are dropped, which can only make more arguments untrusted. The history keeps running
// counts and totals for the whole session and the last [Limits].HistoryEntries calls for
// windowed questions (see [Session.CallsWithin]).
//
// The package does no I/O and imports no other Chaperone package.
package flow
