package suite

import (
	"testing"

	"github.com/chaperone-dev/chaperone/internal/policy"
)

// fuzzPolicy is the policy fuzzed suites are decided with.
const fuzzPolicy = `rules:
  - id: internal-mail
    match: {tools: [send_email]}
    when: args.to.endsWith("@example.com")
    effect: allow
  - id: big-payments
    match: {tools: [transfer_money]}
    when: args.amount > 1000 || agent.labels.team == "x" || session.calls > 3
    effect: approve
  - id: no-deletes
    match: {tools: [delete_record]}
    effect: deny
`

// FuzzLoadSuite decodes arbitrary suite files, as Load does after reading the file, and
// decides the cases of those that decode: nothing panics, a suite that decodes has between
// 1 and MaxCases cases, each with a valid effect and non-nil arguments, and every case is
// decided. The policy is compiled once, outside the loop, to keep executions fast.
func FuzzLoadSuite(f *testing.F) {
	head := "policies: [mail.yaml]\ntools:\n  send_email: external\n  transfer_money: destructive\n  delete_record: destructive\ncases:\n"
	for _, s := range []string{
		"",
		"# only a comment\n",
		"cases: []",
		head + "  - {name: a, tool: send_email, expect: allow, args: {to: a@example.com}}\n",
		head + "  - {name: a, tool: transfer_money, expect: approve, args: {amount: 1001, nested: [1, {x: [true, null]}]}, rules: [big-payments]}\n",
		head + "  - {name: a, tool: send_email, expect: allow, principal: {agent: finance-bot, autonomy: 3, labels: {a: b}, groups: [g], chain: [x, y]}, session: {id: s, calls: 9}, now: 2026-03-02T09:00:00Z}\n",
		"tools: {fetch_url: {class: external, upstream: web}}\nprincipal: {agent: x}\ncases:\n  - {name: a, tool: fetch_url, expect: deny}\n",
		"policies: [mail.yaml]\npolicies: [mail.yaml]\n",
		"tools: {send_email: external}\ncases:\n  - &c {name: a, tool: send_email, expect: allow}\n  - *c\n",
		"cases:\n  - {name: a, tool: send_email, expect: permit}\n",
		"cases: [{name: a, args: {n: .inf, b: !!binary aGk=, 1: x}}]",
		"a: 1\n---\nb: 2\n",
		"cases: [{name: a, tool: t, expect: deny, args: {x: [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}}]",
	} {
		f.Add([]byte(s))
	}
	tools := map[string]policy.ToolInfo{"send_email": {Class: "external"}, "transfer_money": {Class: "destructive"}, "delete_record": {Class: "destructive"}}
	p, err := policy.Compile([]policy.Source{{Name: "mail.yaml", Data: []byte(fuzzPolicy)}}, tools)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := parse("x_test.yaml", data)
		if err != nil {
			if s != nil {
				t.Fatalf("parse = %v and a suite", err)
			}
			return
		}
		if n := len(s.Cases); n == 0 || n > MaxCases {
			t.Fatalf("parse = %d cases", n)
		}
		for _, c := range s.Cases {
			if c.Name == "" || c.Facts.Args == nil {
				t.Fatalf("case %+v: no name or nil arguments", c)
			}
			switch c.Want.Effect {
			case policy.Allow, policy.Deny, policy.Approve:
			default:
				t.Fatalf("case %q: effect %q", c.Name, c.Want.Effect)
			}
		}
		if got := s.decide(p); len(got) != len(s.Cases) {
			t.Fatalf("decide = %d results for %d cases", len(got), len(s.Cases))
		}
	})
}
