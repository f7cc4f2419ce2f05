package flow

import (
	"fmt"
	"strings"
	"testing"
)

// smallResultSize is the size of the CallToolResult the small benchmarks record: the hot
// path's common case.
const smallResultSize = 256

// smallIBAN is the account number of small result i.
func smallIBAN(i int) string { return fmt.Sprintf("DE89 3704 0044 0532 %04d 00", i%10000) }

// smallResult returns a CallToolResult of exactly smallResultSize bytes: one invoice
// notice with an address, an amount, an account number and a link, all distinct for i.
func smallResult(tb testing.TB, i int) []byte {
	tb.Helper()
	text := fmt.Sprintf("Invoice INV-2026-%04d from billing%d@vendor.example: %d.50 EUR due 2026-04-%02d to %s; see https://portal.example/i/%d. ",
		i%10000, i, 100+i, 1+i%28, smallIBAN(i), i)
	const filler = "Reply to this notice if the amount looks wrong. "
	pad := smallResultSize - len(textResult(text))
	if pad < 0 {
		tb.Fatalf("small result %d is %d bytes before padding, want at most %d", i, len(textResult(text)), smallResultSize)
	}
	text += strings.Repeat(filler, pad/len(filler)+1)[:pad]
	res := textResult(text)
	if len(res) != smallResultSize {
		tb.Fatalf("small result %d is %d bytes, want %d", i, len(res), smallResultSize)
	}
	return res
}

// BenchmarkRan256B is BenchmarkRan on a small result: recording, into a new session, a
// call that ran and returned 256 bytes. Its new_session case is the new session alone, so
// the difference between the two is the cost of recording.
func BenchmarkRan256B(b *testing.B) {
	res := smallResult(b, 1)
	s := NewSession(Limits{})
	s.Ran(Run{Tool: "list_unread", Labels: untrustedPrivate, Result: res, Time: t0})
	if s.Values() == 0 {
		b.Fatalf("Ran(256-byte result) remembered no value, want the result's values")
	}
	b.Run("ran", func(b *testing.B) {
		b.SetBytes(int64(len(res)))
		b.ReportAllocs()
		for b.Loop() {
			s := NewSession(Limits{})
			s.Ran(Run{Tool: "list_unread", Labels: untrustedPrivate, Result: res, Time: t0})
		}
	})
	b.Run("new_session", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			NewSession(Limits{})
		}
	})
}

// BenchmarkViewPolicyQuestions50Results is BenchmarkViewPolicyQuestions on a session that
// recorded 50 small results: the policy-time view of a payment whose recipient came from
// one of them.
func BenchmarkViewPolicyQuestions50Results(b *testing.B) {
	const results = 50
	s := NewSession(Limits{})
	s.AddPrompt("Pay the open invoices from this week's mail and tell me what you paid.")
	for i := range results {
		s.Ran(Run{RequestID: fmt.Sprint(i), Tool: "list_unread", Labels: untrustedPrivate, Result: smallResult(b, i), Time: t0})
	}
	if s.Overflowed() {
		b.Fatalf("session of %d small results overflowed, want every value remembered", results)
	}
	args := map[string]any{"recipient": smallIBAN(results / 2), "amount": 125.5, "subject": "invoice INV-2026-0025"}

	s.RLock()
	v := NewView(s, args, payment, t0)
	untrusted, fromUntrusted, calls := v.Untrusted(), v.SinksFromUntrusted(), v.Calls("list_unread")
	s.RUnlock()
	if !untrusted || !fromUntrusted || calls != results {
		b.Fatalf("view of payment to %q: Untrusted() = %v, SinksFromUntrusted() = %v, Calls(list_unread) = %d; want true, true, %d",
			args["recipient"], untrusted, fromUntrusted, calls, results)
	}
	b.Logf("session of %d results remembers %d values", results, s.Values())

	benchmarkPolicyQuestions(b, s, args)
}
