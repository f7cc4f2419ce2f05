// Package approval holds tool calls for a person's decision. When policy says a call
// needs approval, the gateway asks a [Manager] for a [Request], notifies approvers
// ([Notifier], [Webhook]) and either waits for the decision ([Manager.Wait]) or tells
// the agent the call is pending, with the request id, so that it can retry. An
// approval is bound to one exact call ([Hash]) and used at most once
// ([Manager.Consume]).
//
// # What it guarantees
//
//   - An approval authorises exactly the call that was shown: the request's call hash
//     covers the tool, the arguments (as canonical JSON, so key order and whitespace do
//     not matter but every value does), the agent, the user and the task. Arguments
//     that could be read two ways (repeated keys, invalid UTF-8, unpaired surrogate
//     escapes) are refused rather than hashed.
//   - An approval is used at most once: [Store.Consume] is one conditional update, so
//     of any number of gateways racing to execute the call exactly one wins, and only
//     with the right call hash. A consume with the wrong hash changes nothing.
//   - Decisions are final and atomic: the first approve or deny of a pending request
//     wins; later ones fail with [ErrNotPending]. Nothing can be decided or consumed
//     after the request's expiry, and a request nobody decided in time is expired,
//     which counts as denied.
//   - Under the two-person rule ([Options.TwoPerson]) a request is approved only by
//     two distinct people (names compared case-insensitively). The user a call acts
//     for may not approve it unless [Options.AllowSelfApproval]; the agent that made
//     it never may.
//   - Retrying a held call does not create a second request: [Manager.Request] returns
//     the pending one for the same call, and the store refuses a second pending
//     request for a call even when two processes race.
//   - Requests, pending or decided, are durable: they survive a restart of the gateway.
//   - Webhook notifications carry arguments redacted by [Preview], free text redacted by
//     [RedactText], and Slack control characters escaped, so an agent cannot plant
//     links or mentions; a webhook secret signs every body.
//
// # What it assumes
//
//   - The caller authenticated the approver: Approve and Deny take their name as given.
//   - Clocks of the processes sharing a store roughly agree: expiry is decided by the
//     clock of whoever acts.
//
// # What it does not do
//
//   - It does not evaluate policy, compute risk or explain information flows: the
//     caller fills those fields of the [Request].
//   - It does not write the audit log: the gateway records the held call, the decision
//     and the execution.
//   - Notifications are best effort: a failed one is logged, not retried, and never
//     changes a decision. Redaction is a courtesy to readers, not a security boundary.
//
// # Example
//
//	m := approval.NewManager(approval.Options{Store: db, Notifiers: []approval.Notifier{hook}})
//	r, _, err := m.Request(ctx, &approval.Request{Tool: "send_money", Arguments: args, Agent: "finance-assistant", User: "dana@example.com"})
//	// ... a person calls m.Approve(ctx, r.ID, "erin@example.com") ...
//	r, err = m.Wait(ctx, r.ID, 2*time.Minute)
//	if r.Status == approval.StatusApproved {
//		_, err = m.Consume(ctx, r.ID, r.CallHash) // then execute the call
//	}
package approval
