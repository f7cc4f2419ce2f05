package policy

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// benchTools returns 200 tools on 20 upstreams, with classes spread over all four.
func benchTools() map[string]ToolInfo {
	classes := []string{ClassRead, ClassWrite, ClassExternal, ClassDestructive}
	tools := make(map[string]ToolInfo, 200)
	for u := range 20 {
		for t := range 10 {
			tools[fmt.Sprintf("svc%d__tool%d", u, t)] = ToolInfo{Class: classes[(u+t+2)%4]}
		}
	}
	return tools
}

// benchPolicy returns n rules spread over the benchTools: mostly exact tool names for a
// few agents, some prefix patterns and classes, a third with conditions; about 70% allow,
// 20% approve and 10% deny (the deny conditions do not hold for benchFacts).
func benchPolicy(n int) []byte {
	var b strings.Builder
	b.WriteString("rules:\n")
	conds := []string{
		`args.amount <= %d.0`,
		`user.endsWith("@example.com") && session.calls < %d`,
		`agent.labels.team == "support" || args.amount > %d.0`,
		`args.to.split("@")[1] == "example.com" && task != "t%d"`,
	}
	for i := range n {
		fmt.Fprintf(&b, "  - id: rule-%d\n    match:\n", i)
		switch {
		case i%10 < 6:
			fmt.Fprintf(&b, "      tools: [svc%d__tool%d]\n", i%20, (i/20)%10)
		case i%10 < 8:
			fmt.Fprintf(&b, "      tools: [\"svc%d__*\"]\n", i%20)
		default:
			fmt.Fprintf(&b, "      classes: [%s]\n", []string{"read", "write", "external", "destructive"}[i%4])
		}
		if i%7 == 0 {
			b.WriteString("      agents: [\"*\"]\n")
		} else {
			fmt.Fprintf(&b, "      agents: [agent-%d, agent-%d]\n", i%50, (i+3)%50)
		}
		effect := "allow"
		switch i % 10 {
		case 3:
			effect = "deny"
		case 5, 9:
			effect = "approve"
		}
		if effect == "deny" {
			fmt.Fprintf(&b, "    when: 'args.amount > %d.0'\n", 1000000+i)
		} else if i%3 == 0 {
			fmt.Fprintf(&b, "    when: '%s'\n", fmt.Sprintf(conds[i%len(conds)], 100+i))
		}
		fmt.Fprintf(&b, "    effect: %s\n", effect)
	}
	return []byte(b.String())
}

var benchSmallPolicy = []byte(`rules:
  - id: read
    match: {agents: [agent-3], classes: [read]}
    effect: allow
  - id: svc3
    match: {tools: ["svc3__*"]}
    when: 'args.amount <= 1000.0'
    effect: allow
  - id: svc3-tool0
    match: {agents: [agent-3, agent-4], tools: [svc3__tool0]}
    effect: allow
  - id: internal
    match: {tools: [svc3__tool0]}
    when: 'args.to.endsWith("@example.com")'
    effect: allow
  - id: big
    match: {tools: ["svc3__*"]}
    when: 'args.amount > 5000.0'
    effect: deny
  - id: destructive
    match: {classes: [destructive]}
    effect: deny
  - id: external
    match: {classes: [external]}
    effect: approve
  - id: busy
    when: 'session.calls > 1000'
    effect: deny
  - id: other
    match: {agents: [agent-9], tools: [svc3__tool1]}
    effect: allow
  - id: prod
    match: {agents: [agent-3]}
    when: 'agent.environment == "prod" && agent.labels.team == "support"'
    effect: allow
`)

// benchFacts is the call the benchmarks evaluate: svc3__tool0 is a write tool.
func benchFacts() *Facts {
	return &Facts{
		Agent:   Agent{ID: "agent-3", Owner: "alice@example.com", Environment: "prod", Labels: map[string]string{"team": "support"}},
		User:    "bob@example.com",
		Task:    "task-1",
		Tool:    Tool{Name: "svc3__tool0", Upstream: "svc3", Class: ClassWrite},
		Args:    map[string]any{"amount": 50.0, "to": "carol@example.com"},
		Session: Session{ID: "s-1", Calls: 12},
		Now:     time.Date(2025, 3, 4, 10, 30, 0, 0, time.UTC),
	}
}

func BenchmarkEvaluate(b *testing.B) {
	for _, bc := range []struct {
		name string
		src  []byte
	}{
		{"rules=10", benchSmallPolicy},
		{"rules=100", benchPolicy(100)},
		{"rules=1000", benchPolicy(1000)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			p, err := Compile([]Source{{Name: "bench.yaml", Data: bc.src}}, benchTools())
			if err != nil {
				b.Fatalf("Compile() error: %v", err)
			}
			f := benchFacts()
			d, err := p.Evaluate(f)
			if err != nil || d.Effect == Deny {
				b.Fatalf("Evaluate() = %+v, %v; want a call that is not denied", d, err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := p.Evaluate(f); err != nil {
					b.Fatal(err)
				}
			}
			tr := p.tools[f.Tool.Name]
			b.ReportMetric(float64(len(tr.deny)+len(tr.rest)), "indexed-rules")
			b.ReportMetric(float64(len(d.Rules)), "matched-rules")
		})
	}
}

func BenchmarkCompile(b *testing.B) {
	src := []Source{{Name: "bench.yaml", Data: benchPolicy(1000)}}
	tools := benchTools()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Compile(src, tools); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVisible(b *testing.B) {
	p, err := Compile([]Source{{Name: "bench.yaml", Data: benchPolicy(1000)}}, benchTools())
	if err != nil {
		b.Fatalf("Compile() error: %v", err)
	}
	b.ReportAllocs()
	for b.Loop() {
		p.Visible("agent-3", "svc3__tool0")
	}
}

// TestEvaluateAllocs pins the allocations of Evaluate: one for Decision.Rules when no
// condition runs, and a bounded number per condition (mostly CEL's cost tracking).
func TestEvaluateAllocs(t *testing.T) {
	tests := []struct {
		name   string
		policy string
		max    float64
	}{
		{"default deny", `rules: [{id: a, match: {tools: [pay]}, effect: allow}]`, 0},
		{"unconditional allow", `rules: [{id: a, effect: allow}, {id: b, match: {agents: [other]}, effect: deny}]`, 1},
		{"unconditional deny", `rules: [{id: a, effect: allow}, {id: b, effect: deny}]`, 1},
		{"one condition", `rules: [{id: a, when: 'user.endsWith("@example.com")', effect: allow}]`, 8},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := mustCompile(t, tt.policy)
			f := facts("mail", "read_inbox", map[string]any{"amount": 10.0})
			got := testing.AllocsPerRun(100, func() {
				if _, err := p.Evaluate(f); err != nil {
					t.Fatal(err)
				}
			})
			t.Logf("Evaluate() allocates %v times per call", got)
			if got > tt.max {
				t.Errorf("Evaluate() allocates %v times per call, want at most %v", got, tt.max)
			}
		})
	}
}
