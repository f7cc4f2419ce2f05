package risk

import (
	"strings"
	"testing"
)

func TestAssess(t *testing.T) {
	t.Parallel()
	internal := []string{"example.com"}
	for _, tc := range []struct {
		name    string
		in      Input
		want    int
		factors string
	}{
		{"a read", Input{Class: "read", Tool: "read_file", Args: map[string]any{"path": "a.txt"}}, 5, "class read (+5)"},
		{"a small internal mail", Input{Class: "external", Tool: "send_email", Args: map[string]any{"to": "lee@example.com"}, InternalDomains: internal}, 40, "class external (+40)"},
		{"a subdomain is internal", Input{Class: "external", Tool: "send_email", Args: map[string]any{"to": "lee@mail.Example.com"}, InternalDomains: internal}, 40, "class external (+40)"},
		{"mail outside", Input{Class: "external", Tool: "send_email", Args: map[string]any{"to": []any{"lee@example.com", "Eve <eve@evil.example>"}}, InternalDomains: internal}, 55,
			"class external (+40); outside recipient eve@evil.example (+15)"},
		{"a large payment from untrusted content", Input{Class: "external", Tool: "send_money", Args: map[string]any{"amount": 12500.0, "recipient": "DE89"},
			SessionUntrusted: true, SessionPrivate: true, SinksFromUntrusted: true}, 100,
			"class external (+40); amount 12500 ≥ 10,000 (+30); session has seen untrusted content (+10); session has seen private data (+5); destination from untrusted content (+25)"},
		{"a mid payment", Input{Class: "external", Tool: "send_money", Args: map[string]any{"amount": 1500.5}}, 60, "class external (+40); amount 1500.50 ≥ 1,000 (+20)"},
		{"flow does not raise a read", Input{Class: "read", Tool: "read_file", SessionUntrusted: true, SinksFromUntrusted: true}, 5, "class read (+5)"},
		{"bulk delete", Input{Class: "destructive", Tool: "delete_records", Args: map[string]any{"ids": make([]any, 11)}}, 70,
			"class destructive (+50); bulk: ids has 11 items (+10); destructive verb \"delete\" (+10)"},
		{"verb in an argument and a count", Input{Class: "write", Tool: "run_sql", Args: map[string]any{"query": "DROP TABLE users", "limit": 500.0}}, 45,
			"class write (+25); bulk: limit = 500 (+10); destructive verb \"drop\" (+10)"},
		{"a record of denials", Input{Class: "write", Tool: "t", RecentDenials: 6}, 40, "class write (+25); 6 denied calls in 24h (+15)"},
		{"unknown class", Input{Class: "weird", Tool: "t"}, 50, "unknown class \"weird\" (+50)"},
	} {
		got := Assess(tc.in)
		if got.Value != tc.want || strings.Join(got.FactorNames(), "; ") != tc.factors {
			t.Errorf("%s: %d %q, want %d %q", tc.name, got.Value, strings.Join(got.FactorNames(), "; "), tc.want, tc.factors)
		}
	}
}

func BenchmarkAssess(b *testing.B) {
	in := Input{Class: "external", Tool: "send_money", Args: map[string]any{"amount": 98.7, "recipient": "DE89370400440532013000", "subject": "invoice 2026-03"},
		InternalDomains: []string{"example.com"}, SessionUntrusted: true}
	b.ReportAllocs()
	for b.Loop() {
		Assess(in)
	}
}
