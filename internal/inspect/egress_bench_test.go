package inspect

import (
	"context"
	"strings"
	"testing"
)

// egressBenchArgs are the arguments of a typical e-mail tool call.
func egressBenchArgs() map[string]any {
	return map[string]any{
		"to":      []any{"alice@example.com", "Bob Jones <bob@example.org>"},
		"cc":      "carol@example.com, dan@example.com",
		"subject": "Re: quarterly numbers",
		"body": strings.Repeat("Hi team, the numbers for the quarter are attached. Let me know "+
			"if anything looks off before Friday's review.\n", 20),
		"attachments": []any{
			map[string]any{"name": "q3.pdf", "url": "https://files.example.com/share/q3.pdf"},
		},
		"priority": "normal",
		"html":     false,
	}
}

func BenchmarkEgressCheck(b *testing.B) {
	e, err := CompileEgress(EgressPolicy{Allow: []string{"@example.com", "@example.org", "https://files.example.com/share/"}})
	if err != nil {
		b.Fatal(err)
	}
	args := egressBenchArgs()
	b.ReportAllocs()
	for b.Loop() {
		vs := e.Check(Destinations(args))
		if len(vs) != 5 || !vs[0].Allowed {
			b.Fatalf("Check = %+v", vs)
		}
	}
}

func BenchmarkEgressDialControl(b *testing.B) {
	e, err := CompileEgress(EgressPolicy{Deny: []string{"198.51.100.0/24", "2001:db8::/32"}})
	if err != nil {
		b.Fatal(err)
	}
	ctl := e.DialControl()
	b.ReportAllocs()
	for b.Loop() {
		if err := ctl(context.Background(), "tcp", "93.184.215.14:443", nil); err != nil {
			b.Fatal(err)
		}
	}
}
