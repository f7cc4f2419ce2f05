// Package policy decides, for one tool call, whether it is allowed, denied or needs a
// person's approval. Policies are YAML files of rules; [Compile] turns a bundle of them
// into a [Policy] once, and [Policy.Evaluate] turns the facts of one call into a
// [Decision].
//
// # Policy files
//
// A policy file is a YAML mapping with one key, rules, a list of rules:
//
//	rules:
//	  - id: read-tools                  # required
//	    description: agents may read    # optional
//	    match:                          # optional; an omitted list means "any"
//	      agents: [mail-assistant, "*"]
//	      tools: [read_inbox, "files__*"]
//	      classes: [read, write, external, destructive]
//	    when: 'args.amount <= 1000.0 && user.endsWith("@example.com")'   # optional
//	    effect: allow                   # allow, deny or approve
//
// The fields:
//
//   - id names the rule in decisions and the audit log. It matches
//     [a-z0-9][a-z0-9._-]{0,63} and is unique across all files of the bundle.
//   - match.agents lists agent ids; "*" matches any agent.
//   - match.tools lists exposed tool names; "*" matches any tool, and a name ending in "*"
//     matches every tool whose name starts with what comes before it. "*" may appear
//     nowhere else. A name must be a tool given to Compile, and a pattern must match at
//     least one.
//   - match.classes lists tool risk classes: read, write, external, destructive.
//   - when is a CEL condition (see Conditions) that must type-check to bool.
//   - effect is allow, deny, approve or hold ("approve" means the call needs a person;
//     "hold" adds a person's approval to a call other rules allow, and allows nothing by
//     itself).
//   - on is call (the default) or result. A rule on results judges what a call returned,
//     after it ran, from what the content sensors found in it (the variable result); its
//     effect must be deny, which withholds the result from the agent. Rules on results
//     never decide calls and calls never see them; see [Policy.EvaluateResult].
//
// Decoding is strict: an unknown key, a duplicate key, a value of the wrong shape, and an
// empty or null match, match list or when are errors (omit the key to match any call or
// to have no condition; a forgotten value must not widen a rule). YAML aliases and more than one
// YAML document per file are not supported. An empty file, or an empty rules list,
// holds no rules. Compile reports every problem at once, each naming file, line and rule,
// for example:
//
//	policies/mail.yaml:12: rule "no-external": match.tools: unknown tool "send_mial"
//
// The bundle order of the rules is the order of the files given to Compile, then the
// order of the rules within each file.
//
// # Matching
//
// A rule's match matches a call when every list it gives contains the call's value: the
// lists are ANDed, the entries within a list ORed, and an omitted list matches anything.
// Tool patterns and classes are expanded against the tools given to Compile, so the
// class a rule matches on is the class the registry had at compile time. A rule applies
// to a call when its match matches and its condition, if it has one, evaluates to true.
//
// # Decisions
//
// Deny overrides approve, and approve overrides allow:
//
//  1. If any applying rule denies, the call is denied.
//  2. Otherwise, if no applying rule allows or says approve, the call is denied by
//     default ("no rule allows this call"): hold rules alone allow nothing.
//  3. Otherwise, if any applying rule says approve or hold, the call needs approval.
//  4. Otherwise the call is allowed.
//
// Evaluation fails closed. If a condition cannot be evaluated (a missing map key, a
// failed conversion, the cost limit exceeded), the call is denied, the decision names
// that rule with the reason "condition of rule "x" could not be evaluated", and
// [Decision.Err] holds the error. This is a decision, not a Go error: Evaluate returns an
// error only when it cannot decide at all (nil facts), and then also a deny.
//
// Evaluate only looks at the rules indexed under the call's tool whose agents match. It
// evaluates the deny rules first, in bundle order, and stops at the first one that
// applies or whose condition fails. Then it evaluates every approve and allow rule in
// bundle order; a condition failing there denies the call at once, even if an approve
// rule already applied. So a deny decision names one rule: the first deny rule that
// applied, or the rule whose condition failed; later rules that would also have denied
// are not evaluated.
//
// [Decision.Rules] holds the ids of the applying rules of the winning effect, in bundle
// order: one rule for a deny, every applying approve rule for an approval, every applying
// allow rule for an allow, and none for the default deny. [Decision.Reason] is one short
// sentence naming the first of them: `denied by rule "x"`, `approval required by rule
// "x"`, `allowed by rule "x"`, `condition of rule "x" could not be evaluated` or `no rule
// allows this call`. A call of a tool unknown to the policy is denied by default; a call
// whose [Tool.Class] is set and differs from the class given to Compile is denied with
// [Decision.Err] set, because the policy was compiled for another registry.
//
// [Decision.Version] is the [Policy.Version] that decided: "sha256:" and the hex SHA-256
// over the sources in the order given, each written as its name, a NUL byte, the length
// of its data as a big-endian uint64, and the data. The same sources always give the same
// version; renaming, reordering or editing a file changes it. The tools given to Compile
// are not part of the version.
//
// # Visibility
//
// [Policy.Visible] reports whether an agent may ever see a tool: some allow or approve
// rule matches the agent and tool, conditions ignored, and no deny rule without a
// condition does. It filters the tool list an agent is shown; it decides no call.
//
// # Conditions
//
// Conditions are CEL expressions (https://cel.dev) with the standard library, the string
// extension functions at version 5 (split, lowerAscii, replace, format, ...) and
// comparisons across int, uint and double. They see these variables:
//
//	agent    map(string, dyn)  id, owner, purpose, environment (strings),
//	                           labels (map(string, string)), autonomy (int, 0 to 3)
//	user     string            the person the agent acts for, "" if none
//	groups   list(string)      the user's groups from their identity provider
//	chain    list(string)      the agents from the first to the caller, when the
//	                           credential was delegated; empty otherwise
//	task     string            the task id, "" if none
//	tool     map(string, string)  name, upstream, class
//	args     map(string, dyn)  the call's arguments as decoded from JSON: every number
//	                           is a double, objects are maps, arrays are lists
//	session  map(string, dyn)  id (string), calls (int: calls so far in the session)
//	now      google.protobuf.Timestamp  the time of the call
//	sensors  map(string, dyn)  what the content sensors found in the call's arguments,
//	                           its prompt and its session (see [Sensors])
//	result   map(string, dyn)  what they found in the call's result; rules with
//	                           on: result only (see [Result])
//
// Selecting a field agent, tool or session do not have (agent.idd) is a compile error.
// Reading an argument that is absent (args.amount when there is no amount) is an
// evaluation error and so denies the call: test for it with has(args.amount) first when
// an argument is optional. One evaluation of one condition may cost at most 1,000,000
// CEL cost units; beyond that it fails.
//
// # Guarantees
//
//   - Evaluate returns one of [Allow], [Deny] and [Approve], never an empty effect, and
//     denies whenever it cannot tell (fail closed).
//   - A compiled [Policy] is immutable and safe for concurrent use; Evaluate does not
//     write to the [Facts] it is given.
//   - The package does no I/O and keeps no global state: decisions depend only on the
//     compiled sources, the tools given to Compile and the facts.
//   - Compile either returns a policy in which every rule compiled, or an error; never a
//     partial policy.
//
// # Assumptions
//
//   - The caller fills in the facts truthfully: it has authenticated the agent,
//     resolved the tool and its class from the registry, decoded the arguments and read
//     the clock. The policy judges the facts; it does not check them.
//   - The tools given to Compile are the ones calls are made against. When the registry
//     changes, the caller compiles the policy again.
//
// # What it does not do
//
//   - It does not read policy files, watch them or reload them; the caller passes their
//     content to Compile and swaps in the new [Policy].
//   - It does not hold calls for approval, notify anyone or record decisions; the
//     caller carries out the [Decision] and writes the audit event.
//   - It does not bound the size of the sources; the caller does. Conditions are bounded
//     to 8 KiB each and their evaluation by the cost limit.
//   - CEL's time zone functions (now.getHours("Europe/Berlin")) load the time zone
//     database through the time package; that is the one place where evaluation may read
//     the file system.
package policy
