// Package insight computes figures over a time window of the audit log: how many calls
// were allowed, approved, denied and refused, why, how fast people decided approvals and
// the gateway contained incidents, which policy versions decided, and what the content
// sensors found. The web console's dashboards and the evidence report (internal/report)
// both use it, so a number reads the same wherever it is shown.
//
// # Use
//
//	f, err := insight.Compute(ctx, store, insight.Window{From: from, To: to, Bucket: time.Hour})
//
// [Compute] seeks the log for the window's start ([SeekTime]) and reads from there to the
// end, feeding each event of the window to an [Accumulator]. A caller that reads the log
// itself (the report does, to collect more than figures) feeds an Accumulator directly.
//
// # What it guarantees
//
//   - The figures depend only on the set of events fed, not on their order, and every list
//     is sorted, so two computations over the same events are equal.
//   - An event belongs to the window when From <= Time < To. Tombstones (events whose
//     content retention removed) are counted in [Figures].Pruned and nothing else.
//   - A record the store cannot read back (see [audit.CorruptError]) is skipped and counted
//     in [Figures].Unreadable: figures over a tampered log are still produced, and say how
//     much they could not see. Checking the chain is [audit.VerifyChain]'s job, not this
//     package's.
//
// # What it assumes
//
// Event times are set by whoever records the event, on its own clock, so in a log written
// by several gateway replicas they are only roughly in Seq order. [SeekTime] allows for
// clocks up to [Slack] apart. A call held for a person's approval is recorded after the
// wait with the time the call arrived, so such events may follow later ones in the log:
// that is why Compute reads to the end of the log instead of stopping at the window's end.
//
// # Definitions
//
// The figures are defined on the fields of [Figures]; the governance figures on
// [Governance]. In short: a call decision is a call.intent, call.refused or call.suggested
// event; an allowed call is a call.intent (decision allow, or approve when a person
// approved it); a call.refused with decision deny was denied by the policy, and any other
// call.refused was refused by something else (a kill switch, a budget, an unknown tool,
// invalid arguments, a declined approval, ...).
package insight
