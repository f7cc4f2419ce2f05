package flow

import (
	"fmt"
	"strings"
	"testing"
)

// sessionWith returns a session that remembers about n values from untrusted results.
func sessionWith(n int) *Session {
	s := NewSession(Limits{})
	s.AddPrompt("Pay the bill in bills/december.txt to DE02120300000000202051 and tell lee@example.com.")
	for i := 0; s.Values() < n; i++ {
		var b strings.Builder
		for j := range 10 {
			fmt.Fprintf(&b, "From: sender%d.%d@mail%d.example, ref INV-%d-%04d, amount %d.%02d EUR, see https://portal%d.example/i/%d\n", i, j, i, i, i*10+j, 100+i, j, i, j)
		}
		s.Ran(Run{RequestID: fmt.Sprint(i), Tool: "list_unread", Labels: untrustedPrivate, Result: textResult(b.String()), Time: t0})
	}
	return s
}

// BenchmarkViewPolicyQuestions is what the information-flow preset asks of a payment: the
// session's state, whether the sinks came from untrusted content, whether they came from
// trusted sources, and one history question.
func BenchmarkViewPolicyQuestions(b *testing.B) {
	for _, n := range []int{100, 500, 2000} {
		b.Run(fmt.Sprintf("values=%d", n), func(b *testing.B) {
			s := sessionWith(n)
			args := map[string]any{"recipient": "DE89 3704 0044 0532 0130 00", "amount": 98.7, "subject": "invoice 2026-03 for December"}
			benchmarkPolicyQuestions(b, s, args)
		})
	}
}

// BenchmarkRan is recording a call that ran with a result of about 4 KiB: the history and
// every value of the result.
func BenchmarkRan(b *testing.B) {
	var sb strings.Builder
	for i := 0; sb.Len() < 4<<10; i++ {
		fmt.Fprintf(&sb, "Message %d from colleague%d@example.com about invoice INV-2026-%04d (amount %d.50 EUR); details at https://intranet.example.com/docs/%d.\n", i, i, i, 100+i, i)
	}
	res := textResult(sb.String())
	b.SetBytes(int64(len(res)))
	b.ReportAllocs()
	for b.Loop() {
		s := NewSession(Limits{})
		s.Ran(Run{Tool: "list_unread", Labels: untrustedPrivate, Result: res, Time: t0})
	}
}

// BenchmarkStoreSession is finding a call's session in a store of 10,000.
func BenchmarkStoreSession(b *testing.B) {
	st := NewStore(StoreOptions{})
	keys := make([]string, 10000)
	for i := range keys {
		keys[i] = fmt.Sprintf("s\x00ses_%08d", i)
		if _, err := st.Session(keys[i], t0); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, err := st.Session(keys[i%len(keys)], t0); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// benchmarkPolicyQuestions asks s, for a payment with args, what a policy asks: taint,
// where the sinks came from, and one history question.
func benchmarkPolicyQuestions(b *testing.B, s *Session, args map[string]any) {
	b.ReportAllocs()
	for b.Loop() {
		s.RLock()
		v := NewView(s, args, payment, t0)
		_ = v.Untrusted() && v.Private()
		_ = v.SinksFromUntrusted()
		_ = v.SinksFromTrusted()
		_ = v.Calls("send_money")
		s.RUnlock()
	}
}
