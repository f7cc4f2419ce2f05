package inspect

import (
	"fmt"
	"strings"
	"testing"
)

// piiBenchJSON returns a JSON tool result of about n bytes: customer records with
// personal data among ordinary fields (ids, dates, amounts, versions, prose).
func piiBenchJSON(n int) string {
	var b strings.Builder
	b.WriteString(`{"results":[`)
	for i := 0; b.Len() < n-400; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"id":"%08x-e29b-41d4-a716-4466554400%02d","created":"2024-01-%02dT10:%02d:00Z",`, 0x550e8400+i, i%100, 1+i%28, i%60)
		fmt.Fprintf(&b, `"name":"Customer %d","email":"customer.%d@example.com","phone":"+1 212-555-%04d",`, i, i, 100+i%9000)
		fmt.Fprintf(&b, `"amount":%d.%02d,"currency":"EUR","sku":"SKU-%06d","version":"2.%d.%d",`, 100+i*7, i%100, i*31, i%10, i%7)
		fmt.Fprintf(&b, `"note":"Order shipped on 2024-02-%02d via the usual carrier; call back if the parcel is late.\nThanks!"}`, 1+i%28)
	}
	b.WriteString(`],"next":null}`)
	return b.String()
}

func BenchmarkPIIScan10KB(b *testing.B) {
	s, err := NewPIIScanner(nil)
	if err != nil {
		b.Fatal(err)
	}
	text := piiBenchJSON(10 << 10)
	if len(s.Scan(text)) == 0 {
		b.Fatal("no findings in the benchmark text")
	}
	b.SetBytes(int64(len(text)))
	b.ReportAllocs()
	for b.Loop() {
		s.Scan(text)
	}
}

func BenchmarkPIIScanProse10KB(b *testing.B) {
	s, err := NewPIIScanner(nil)
	if err != nil {
		b.Fatal(err)
	}
	para := "The gateway forwards each request to the upstream server after the policy allows it; results come back through the sensors, which look for injected instructions, credentials and personal data before the agent sees them. "
	text := strings.Repeat(para, (10<<10)/len(para)+1)[:10<<10]
	b.SetBytes(int64(len(text)))
	b.ReportAllocs()
	for b.Loop() {
		s.Scan(text)
	}
}

func BenchmarkTransformPIITokenize10KB(b *testing.B) {
	s, err := NewPIIScanner(nil)
	if err != nil {
		b.Fatal(err)
	}
	v, err := NewVault(piiTestKey, 0)
	if err != nil {
		b.Fatal(err)
	}
	text := piiBenchJSON(10 << 10)
	fs := s.Scan(text)
	b.SetBytes(int64(len(text)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := TransformPII(text, fs, PIITokenize, v); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVaultDetokenize10KB(b *testing.B) {
	s, err := NewPIIScanner(nil)
	if err != nil {
		b.Fatal(err)
	}
	v, err := NewVault(piiTestKey, 0)
	if err != nil {
		b.Fatal(err)
	}
	text := piiBenchJSON(10 << 10)
	out, err := TransformPII(text, s.Scan(text), PIITokenize, v)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(out)))
	b.ReportAllocs()
	for b.Loop() {
		v.Detokenize(out)
	}
}
