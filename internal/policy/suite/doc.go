// Package suite runs policy test suites: YAML files of example tool calls and the decision
// a policy bundle must reach for each. It is what `chaperone policy test` runs, and other
// Go tests can use it to check policies they ship.
//
// # Suite files
//
// A suite is a file named *_test.yaml next to the policy files it tests:
//
//	# payments_test.yaml
//	policies: [payments.yaml]            # optional; relative to this file
//	tools:                               # exposed tool name -> class
//	  transfer_money: destructive
//	  read_file: read
//	  fetch_url: {class: external, upstream: web}   # or a mapping with class and upstream
//	principal: {agent: finance-bot}      # optional; the principal of cases that give none
//	cases:
//	  - name: small payment to a known recipient is allowed
//	    principal: {agent: finance-bot, user: dana@example.com, task: t-1, groups: [finance],
//	                chain: [], autonomy: 2, environment: prod, labels: {team: ap}}
//	    tool: transfer_money
//	    args: {recipient_iban: DE02120300000000202051, amount: 84.2, currency: EUR}
//	    session: {calls: 3}              # optional: id, calls, untrusted, private
//	    flow: {untrusted: [recipient], trusted: [], user: [], sinks: [recipient],
//	           calls: {read_file: 1}, totals: {transfer_money.amount: 120}}   # optional
//	    risk: {score: 80, factors: ["class external (+40)"], deviations: ["new_tool"]}  # optional
//	    now: 2026-03-02T09:00:00Z        # optional; default [DefaultNow]
//	    expect: allow                    # allow, deny or approve
//	    rules: [payments-known-recipients]   # optional: the exact Decision.Rules
//
// The keys:
//
//   - policies lists the policy files, in bundle order, relative to the suite's directory.
//     Omitted, the bundle is every *.yaml and *.yml file in the suite's directory that is
//     not itself a suite (*_test.yaml, *_test.yml), in name order.
//   - tools declares the tools the policy is compiled against, since a test has no running
//     registry: each exposed name maps to its class (read, write, external, destructive), or
//     to a mapping with class and optional upstream. A caller may replace them, as
//     `chaperone policy test --tools chaperone.yaml` does with the tools of a configuration.
//   - principal is the default principal of cases that give none (whole, not merged).
//   - cases are the calls. name, tool and expect are required; names are unique within a
//     suite. principal holds agent, owner, purpose, environment, labels and autonomy (the
//     agent's facts) and user, groups, chain and task. args are the call's arguments and
//     are seen by conditions as the gateway would decode them from JSON: every number is a
//     double. rules, if given, must equal [policy.Decision.Rules] exactly, in bundle order;
//     rules: [] expects none (a default deny). session.untrusted and session.private and
//     flow give the information-flow facts (see docs/flow.md): flow.untrusted, trusted and
//     user name the arguments from untrusted content, from trusted sources and from the
//     user's prompt, flow.sinks the call's sink arguments, flow.calls and flow.totals the
//     session's history by tool and by "tool.argument" (windowed questions get the same
//     answers). A case without them is a clean session.
//
// Decoding is strict: an unknown or duplicate key, a value of the wrong type (quote a
// string that YAML would read as a number), an empty value, a YAML alias, more than one
// document, a case whose tool is not declared and an unknown effect are errors, each
// naming file and line. A suite without cases is an error too: it would test nothing.
//
// # Running
//
// [Load] reads a suite and its policy files; [Suite.Run] compiles the bundle once and
// decides every case with [policy.Policy.Evaluate], so a test sees exactly the decisions
// the gateway would make for the same facts. A case passes when the effect, and the rules
// if the case gives them, are as expected. [WriteJUnit] writes results as JUnit XML for CI.
//
// # Bounds
//
// Suite and policy files are at most [MaxFileBytes] each, a suite has at most [MaxCases]
// cases, argument values nest at most [MaxDepth] deep, and [Discover] finds at most
// [MaxSuites] suites.
package suite
