package flow

import (
	"fmt"
	"strings"
	"testing"
)

// benchMail is a list_unread result of about 4 KiB: three messages as JSON, the
// shape a mail MCP server returns, with addresses, links, amounts, an IBAN, a
// phone number, dates and ordinary prose.
const benchMail = `{"messages":[{"id":"msg-18c2f7a9e1","from":"Northgrid Energy Billing <billing@northgrid-energy.example>","to":"lee.park@example.com","date":"2026-03-02T08:14:09Z","subject":"Your March statement is ready (account 4471-0093-2210)","snippet":"Hello Lee, your statement for February is now available.","body":"Hello Lee,\n\nyour statement for the period 01.02.2026 to 28.02.2026 is now available in your customer portal at https://my.northgrid-energy.example/statements/2026-02?ref=mail.\n\nAmount due: 98.70 EUR\nDue date: 15.03.2026\nDirect debit from: DE89 3704 0044 0532 0130 00 (ending 3000)\n\nYour consumption was 312 kWh, 4.2% lower than in the same month last year. Tips on saving energy: www.northgrid-energy.example/tips.\n\nIf you have questions, call us on +49 (30) 901-8820 (Mon-Fri, 8:00-18:00) or reply to this e-mail.\n\nKind regards,\nYour Northgrid Energy team\n\nNorthgrid Energy GmbH, Friedrichstr. 200, 10117 Berlin. Registered at Amtsgericht Charlottenburg HRB 187654 B."},{"id":"msg-18c2f80b44","from":"Sam Okafor <sam.okafor@partner-agency.example>","to":"lee.park@example.com","cc":"design-team@partner-agency.example","date":"2026-03-02T09:41:55Z","subject":"Re: Q2 campaign assets","snippet":"Thanks for the feedback on the drafts!","body":"Hi Lee,\n\nthanks for the feedback on the drafts! We have updated the banner sizes (1200x628 and 1080x1080) and uploaded everything to the shared folder: https://files.partner-agency.example/share/q2-campaign/v3/ \u2014 the password is in the calendar invite.\n\nThe quote for the additional video edit is 1,250.00 EUR net; invoice INV-2026-0117 will follow once you confirm. Our bank details have not changed.\n\nCould we do a 30-minute call on Thursday at 14:30? I can also do Friday morning.\n\nBest,\nSam\n\n--\nSam Okafor | Account Director\nPartner Agency Ltd, 14 Harbour Road, Bristol BS1 5TY\nT +44 117 496 0123 | partner-agency.example"},{"id":"msg-18c2f93c02","from":"GitHub <noreply@github.com>","to":"lee.park@example.com","date":"2026-03-02T11:03:12Z","subject":"[northgrid/portal] Pull request #482: Fix rounding of amounts in statements","snippet":"@lpark requested your review","body":"@lpark requested your review on: northgrid/portal#482 Fix rounding of amounts in statements.\n\nThis change rounds amounts half-even before formatting, so 98.705 shows as 98.70 instead of 98.71. Files changed: src/billing/format.go, src/billing/format_test.go, docs/billing.md.\n\nView it on GitHub: https://github.com/northgrid/portal/pull/482\nYou are receiving this because your review was requested. Reply to this email directly, view it on GitHub, or unsubscribe: https://github.com/notifications/unsubscribe-auth/AAKQ7XJ3M4ZXHVQ2LK5W3TLZ7Q\n\nCommit 9f3c2e1a7b4d: round half-even (tx-77abc12)."}],"next_page_token":"CiQKIGM3ZjE4YTk1LTRiMjEtNDZlZC05ZGY5LTNjNWQxYTAyZjQ3NRAB","result_size_estimate":3}`

// benchText64K is about 64 KiB of mail results with varying values.
func benchText64K() string {
	var b strings.Builder
	for i := 0; b.Len() < 64<<10; i++ {
		r := strings.NewReplacer("98.70", fmt.Sprintf("%d.%02d", 90+i, i%100), "INV-2026-0117", fmt.Sprintf("INV-2026-%04d", i),
			"lee.park@", fmt.Sprintf("lee.park%d@", i))
		b.WriteString(r.Replace(benchMail))
		b.WriteByte('\n')
	}
	return b.String()
}

func BenchmarkExtractText(b *testing.B) {
	for _, tc := range []struct {
		name string
		text string
	}{
		{"mail_4KiB", benchMail},
		{"mail_64KiB", benchText64K()},
		{"prose_64KiB", strings.Repeat("The quick brown fox jumps over the lazy dog, and then it rests for a while. ", 64<<10/76)},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.SetBytes(int64(len(tc.text)))
			b.ReportAllocs()
			n := 0
			for b.Loop() {
				ExtractText(tc.text, func(Value) { n++ })
			}
		})
	}
}

func BenchmarkArgumentValues(b *testing.B) {
	args := map[string]any{
		"recipient": "DE89 3704 0044 0532 0130 00",
		"amount":    98.7,
		"subject":   "Northgrid Energy March statement",
	}
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		ArgumentValues(args, func(Value) { n++ })
	}
}
