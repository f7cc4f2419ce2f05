package flow

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
)

// extractKeys returns the keys ExtractText yields for text, first occurrence
// order, without duplicates.
func extractKeys(text string) []string {
	var keys []string
	ExtractText(text, func(v Value) {
		if !slices.Contains(keys, v.Key) {
			keys = append(keys, v.Key)
		}
	})
	return keys
}

func argumentKeys(arg any) []string {
	var keys []string
	ArgumentValues(arg, func(v Value) {
		if !slices.Contains(keys, v.Key) {
			keys = append(keys, v.Key)
		}
	})
	return keys
}

func leafKeys(s string) []string {
	var keys []string
	Leaf(s, func(v Value) { keys = append(keys, v.Key) })
	return keys
}

type extractCase struct {
	name string
	text string
	want []string
}

var extractCases = []extractCase{
	// E-mail addresses.
	{"email", "Write to Lee.Park@Example.com.", []string{"e:lee.park@example.com", "h:example.com"}},
	{"email angle brackets", "From: Lee <lee@example.com>", []string{"e:lee@example.com", "h:example.com"}},
	{"email mailto", "mailto:billing@northgrid-energy.co.uk?subject=x", []string{"e:billing@northgrid-energy.co.uk", "h:northgrid-energy.co.uk"}},
	{"email plus tag and digits", "cc: ops+alerts2@mail.example.org;", []string{"e:ops+alerts2@mail.example.org", "h:mail.example.org"}},
	{"email shared provider host is stop-listed", "lee.park1984@gmail.com", []string{"e:lee.park1984@gmail.com"}},
	{"shared platform host is stop-listed", "https://github.com/northgrid/portal/pull/482", []string{"u:github.com/northgrid/portal/pull/482"}},
	{"email no tld", "root@localhost and a@b.c", nil},
	{"email double dot", "lee..park@example.com", []string{"h:example.com"}},
	{"email too short", "a@b.co", []string{"e:a@b.co", "h:b.co"}},

	// URLs.
	{"url https", "see https://Evil.com/x/ now", []string{"u:evil.com/x", "h:evil.com"}},
	{"url www fragment", "http://www.evil.com/x#a", []string{"u:evil.com/x", "h:evil.com"}},
	{"url www without scheme", "visit www.Evil.com.", []string{"u:evil.com", "h:evil.com"}},
	{"url query kept", "https://pay.example.net/collect?id=77&to=DE89#top", []string{"u:pay.example.net/collect?id=77&to=de89", "h:pay.example.net"}},
	{"url trailing punctuation", "Go to https://evil.com/a/b?, then https://evil.com/c!", []string{"u:evil.com/a/b", "h:evil.com", "u:evil.com/c"}},
	{"url in parentheses", "(see https://evil.com/x)", []string{"u:evil.com/x", "h:evil.com"}},
	{"url balanced parentheses", "[w](https://en.example.org/wiki/Foo_(bar)).", []string{"u:en.example.org/wiki/foo_(bar)", "h:en.example.org"}},
	{"url in quotes", `href="https://evil.com/login"`, []string{"u:evil.com/login", "h:evil.com"}},
	{"url port and userinfo", "https://user:pw@evil.com:8443/x and http://evil.com:80/y", []string{"u:evil.com:8443/x", "h:evil.com", "u:evil.com/y"}},
	{"url percent-encoded unreserved", "https://evil.com/%7Euser/%41b%2F", []string{"u:evil.com/~user/ab%2f", "h:evil.com"}},
	{"url ipv4", "http://203.0.113.9:8080/admin", []string{"u:203.0.113.9:8080/admin", "h:203.0.113.9"}},
	{"url localhost host is stop-listed", "http://localhost:3000/api/items", []string{"u:localhost:3000/api/items"}},
	{"url just a scheme", "https:// and http://", nil},
	{"url upper case scheme", "HTTPS://EVIL.COM/X", []string{"u:evil.com/x", "h:evil.com"}},
	{"url ends at backslash", `{"u":"https://evil.com/x\nmore"}`, []string{"u:evil.com/x", "h:evil.com"}},

	// Bare domains.
	{"bare domain", "Reply to evil-example.net today.", []string{"h:evil-example.net"}},
	{"bare domain with path", "pay at pay.example.co.uk/collect.", []string{"u:pay.example.co.uk/collect", "h:pay.example.co.uk"}},
	{"bare domain port", "connect to db.internal.example:5432", []string{"h:db.internal.example"}},
	{"bare domain upper case", "EXAMPLE.COM", []string{"h:example.com"}},
	{"file names are not domains", "open december.txt, report.PDF, node.js and config.yaml", nil},
	{"sentence join is not a domain", "It ended.Next we left. See e.g. the U.S.A. at 5 p.m.", nil},
	{"domain glued to word", "evil.com_x", nil},
	{"ipv4", "server 10.0.0.12 and 127.0.0.1 and 0.0.0.0", []string{"h:10.0.0.12"}},
	{"ipv4 cidr", "allow 192.168.1.0/24", []string{"h:192.168.1.0"}},
	{"not ipv4", "300.1.2.3", nil},

	// IBANs.
	{"iban grouped", "IBAN: DE89 3704 0044 0532 0130 00 (Commerzbank)", []string{"i:de89370400440532013000"}},
	{"iban grouped lower case", "de89 3704 0044 0532 0130 00", []string{"i:de89370400440532013000"}},
	{"iban grouped letters", "GB82 WEST 1234 5698 7654 32.", []string{"i:gb82west12345698765432"}},
	{"iban contiguous", "to DE89370400440532013000.", []string{"i:de89370400440532013000"}},
	{"iban hyphens", "DE89-3704-0044-0532-0130-00", []string{"i:de89370400440532013000"}},
	{"iban grouped then words", "DE89 3704 0044 0532 0130 00 ab12 is it", []string{"i:de89370400440532013000"}},
	{"iban grouped bad checksum is an account number", "DE00 3704 0044 0532 0130 00", []string{"i:370400440532013000"}},

	// Account, card and phone numbers.
	{"phone international", "Call +49 (30) 123-4567 now", []string{"i:49301234567"}},
	{"phone trunk prefix", "Tel. 030 1234 5678.", []string{"i:03012345678"}},
	{"phone parenthesised area", "(030) 1234567", []string{"i:0301234567"}},
	{"phone dots", "030.1234.5678", []string{"i:03012345678"}},
	{"card number", "Card 4111 1111 1111 1111 expires", []string{"i:4111111111111111"}},
	{"account hyphens", "Account 1234-5678-90", []string{"i:1234567890"}},
	{"account slash", "Ref 01/2026/0042", []string{"i:0120260042"}},
	{"account plain digits", "Konto 12345678", []string{"i:12345678", "n:12345678"}},
	{"too few digits", "ext. 123-456, room 12 34", nil},
	{"spaces do not join unrelated numbers", "in 2025 1500 people came", []string{"n:1500"}},
	{"account glued to letters is a token", "1234567abc", []string{"i:1234567abc"}},
	{"decimal is not an account", "1234567.89", []string{"n:1234567.89"}},

	// Dates and times yield nothing.
	{"iso date", "due 2026-03-15, 2026/03/15 or 2026.03.15", nil},
	{"european dates", "am 15.03.2026, 15/03/2026, 3-15-2026 oder 03/15/2026", nil},
	{"iso datetime", "2026-03-15T10:30:00Z and 2026-03-15T10:30:00.123+01:00", nil},
	{"icalendar", "DTSTART:20260315T103000Z\nDTEND:20260315", nil},
	{"times", "at 10:30, 9:05 or 23:59:59.", nil},
	{"year range", "2025-2026 and 1999/2000", nil},
	{"month name date", "15-Jan-2026 and Jan-15-2026", nil},

	// Amounts and numbers.
	{"amount decimal", "Total: 98.70 EUR", []string{"n:98.7"}},
	{"amount comma thousands", "1,250.00 due", []string{"n:1250"}},
	{"amount european", "Betrag 1.250,00 €", []string{"n:1250"}},
	{"amount european decimals with currency", "98,70 € und EUR 12,50", []string{"n:98.7", "n:12.5"}},
	{"amount european decimals without currency", "98,70", nil},
	{"amount currency symbol", "€84.20 or $1,000 or £300", []string{"n:84.2", "n:1000", "n:300"}},
	{"amount currency glued", "98.70EUR", []string{"n:98.7"}},
	{"amount trailing zeros", "100.0 and 42.500", []string{"n:100", "n:42.5"}},
	{"leading zeros are codes", "0176-contract, +0100, Date: 08:14:09 -0500, 007", nil},
	{"amount negative", "balance -45.90", []string{"n:45.9"}},
	{"integers", "1500 and 300", []string{"n:1500", "n:300"}},
	{"short numbers", "5, 12, 1.5, 0.25, 07, 0.50", nil},
	{"small fraction", "0.125", []string{"n:0.125"}},
	{"years", "in 2026, 1999 and 2100", nil},
	{"year written as amount", "2,026.00 and $2000 and 2100.50", []string{"n:2026", "n:2000", "n:2100.5"}},
	{"json array is not thousands", "[100,200] and [1,250]", []string{"n:100", "n:200", "n:250"}},
	{"european thousands with currency", "1.250.000 EUR", []string{"n:1250000"}},
	{"number glued to letters", "1500px 4GB 3rd", nil},
	{"ranges and fractions", "100-200 and 1/2 and 24/7", nil},
	{"quantities are not amounts", "12.5% of 300%, 250 g flour, 312 kWh, 2.4 kg, 1,200 km, 184 ms", nil},
	{"quantity with currency is an amount", "300 EUR per km", []string{"n:300"}},
	{"per unit", "$49.99/month", []string{"n:49.99"}},

	// Paths.
	{"absolute path", "read /etc/passwd.", []string{"p:/etc/passwd"}},
	{"home path", "cat ~/secrets/key.pem", []string{"p:~/secrets/key.pem"}},
	{"relative path with extension", "see bills/december.txt", []string{"p:bills/december.txt"}},
	{"dot relative path", "./out/report.pdf and ../up/x.md", []string{"p:out/report.pdf", "p:../up/x.md"}},
	{"windows path", `C:\Users\Lee\Documents`, []string{"p:c:/users/lee/documents"}},
	{"relative path three segments", "src/internal/flow", []string{"p:src/internal/flow"}},
	{"path cleaned", "/var//log/../tmp/", []string{"p:/var/tmp"}},
	{"not paths", "and/or, w/o, n/a, 24/7, input/output, TCP/IP, km/h, / and /s", nil},
	{"short absolute path", "/etc /tmp", nil},
	{"backslash escapes are not paths", `Agenda:\n1. Timeline\n2. Root cause\n\nIncident doc`, nil},
	{"unc path", `\\fileserver\share\q1.xlsx`, []string{"p:/fileserver/share/q1.xlsx"}},

	// Distinctive tokens.
	{"invoice number", "Invoice INV-2026-0042.", []string{"i:inv20260042"}},
	{"token mixed", "tx-77abc12 sk_live_51HxYz ghp_abc123def456", []string{"i:tx77abc12", "i:sklive51hxyz", "i:ghpabc123def456"}},
	{"token long digit part", "order-12345 and INV-20260042", []string{"i:order12345", "i:inv20260042"}},
	{"camel case", "AbCdEfGhIjKl and getElementById", []string{"i:abcdefghijkl", "i:getelementbyid"}},
	{"uuid", "id 123e4567-e89b-12d3-a456-426614174000", []string{"i:123e4567e89b12d3a456426614174000"}},
	{"token after slash", "ref/tx-77abc12", []string{"i:tx77abc12"}},
	{"not tokens", "m-311, COVID-19, 12-month, 1500-word, v1.2.3 x86_64 ISO-8859-1 Apache-2.0 HelloWorld", []string{"n:1500"}},
	{"dictionary words", "Northgrid Energy sends its quarterly statement", nil},
	{"non-ascii word", "Müller2026abcdef and Straße-12345678", nil},

	// Normalisation.
	{"zero width inside email", "lee\u200b@exam\u200dple.com", []string{"e:lee@example.com", "h:example.com"}},
	{"bidi controls", "\u202eevil.com\u202c/x", []string{"u:evil.com/x", "h:evil.com"}},
	{"fullwidth", "ｌｅｅ＠ｅｘａｍｐｌｅ．ｃｏｍ", []string{"e:lee@example.com", "h:example.com"}},
	{"nbsp in iban", "DE89\u00a03704\u00a00044\u00a00532\u00a00130\u00a000", []string{"i:de89370400440532013000"}},
	{"invalid utf-8 separates", "lee\xff@example.com", []string{"h:example.com"}},
	{"json escapes", `{"from":"Lee \u003clee@example.com\u003e","url":"https:\/\/evil.com\/x"}`, []string{"e:lee@example.com", "h:example.com", "u:evil.com/x", "h:evil.com"}},
	{"json escaped newline", `["Invoice\nINV-2026-0042"]`, []string{"i:inv20260042"}},
	{"json surrogate pair", `["\ud83d\ude00 lee@example.com"]`, []string{"e:lee@example.com", "h:example.com"}},
	{"prose", "Hi Lee, thanks for the update. I will check with the team tomorrow and get back to you. Best, Sam", nil},
	{"empty", "", nil},
}

func TestExtractText(t *testing.T) {
	t.Parallel()
	for _, tc := range extractCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := extractKeys(tc.text)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("ExtractText(%q) keys (-want +got):\n%s", tc.text, diff)
			}
		})
	}
}

func TestExtractTextRaw(t *testing.T) {
	t.Parallel()
	tests := []struct {
		text string
		key  string
		raw  string
	}{
		{"Write to Lee.Park@Example.com.", "e:lee.park@example.com", "Lee.Park@Example.com"},
		{"(see https://evil.com/x).", "u:evil.com/x", "https://evil.com/x"},
		{"IBAN DE89 3704 0044 0532 0130 00 ok", "i:de89370400440532013000", "DE89 3704 0044 0532 0130 00"},
		{"pay -45.90 now", "n:45.9", "45.90"},
		{"lee\u200b@example.com", "e:lee@example.com", "lee\u200b@example.com"},
		{"ｌｅｅ＠ｅｘａｍｐｌｅ．ｃｏｍ", "e:lee@example.com", "ｌｅｅ＠ｅｘａｍｐｌｅ．ｃｏｍ"},
		{`{"a":"\u003clee@example.com\u003e"}`, "e:lee@example.com", "lee@example.com"},
		{"Invoice INV-2026-0042.", "i:inv20260042", "INV-2026-0042"},
	}
	for _, tc := range tests {
		var got []string
		ExtractText(tc.text, func(v Value) {
			if v.Key == tc.key {
				got = append(got, v.Raw)
			}
		})
		if len(got) == 0 || got[0] != tc.raw {
			t.Errorf("ExtractText(%q): Raw of %s = %q, want %q", tc.text, tc.key, got, tc.raw)
		}
	}
}

func TestExtractTextKinds(t *testing.T) {
	t.Parallel()
	text := "lee@example.com https://evil.com/x 98.70 INV-2026-0042 /etc/passwd"
	var got []string
	ExtractText(text, func(v Value) {
		if !strings.HasPrefix(v.Key, v.Kind.prefix()) {
			t.Errorf("ExtractText(%q): key %q has kind %v", text, v.Key, v.Kind)
		}
		got = append(got, v.Kind.String())
	})
	want := []string{"email", "host", "url", "host", "number", "identifier", "path"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ExtractText(%q) kinds (-want +got):\n%s", text, diff)
	}
}

func TestKindString(t *testing.T) {
	t.Parallel()
	for k, want := range map[Kind]string{
		KindEmail: "email", KindURL: "url", KindHost: "host", KindNumber: "number",
		KindIdent: "identifier", KindPath: "path", 0: "kind(0)", 42: "kind(42)",
	} {
		if got := k.String(); got != want {
			t.Errorf("Kind(%d).String() = %q, want %q", uint8(k), got, want)
		}
	}
}

func TestExtractTextLongValues(t *testing.T) {
	t.Parallel()
	long := "https://evil.com/" + strings.Repeat("a", MaxKeyBytes)
	if diff := cmp.Diff([]string{"h:evil.com"}, extractKeys(long)); diff != "" {
		t.Errorf("ExtractText(long URL) keys (-want +got):\n%s", diff)
	}
	tok := "x1" + strings.Repeat("ab12", MaxKeyBytes)
	if got := extractKeys(tok); got != nil {
		t.Errorf("ExtractText(long token) = %q, want nothing", got)
	}
	// Hidden characters make Raw long but are not part of the value.
	padded := "lee@ex" + strings.Repeat("\u200b", 200) + "ample.com"
	ExtractText(padded, func(v Value) {
		if len(v.Raw) > MaxKeyBytes || !utf8.ValidString(v.Raw) {
			t.Errorf("ExtractText(padded): Raw is %d bytes, valid UTF-8 %v", len(v.Raw), utf8.ValidString(v.Raw))
		}
	})
	if diff := cmp.Diff([]string{"e:lee@example.com", "h:example.com"}, extractKeys(padded)); diff != "" {
		t.Errorf("ExtractText(padded) keys (-want +got):\n%s", diff)
	}
}

type argumentCase struct {
	name string
	arg  any
	want []string
}

var argumentCases = []argumentCase{
	{"email", "Lee@Example.com", []string{"e:lee@example.com", "h:example.com"}},
	{"email spaces", "  lee@example.com ", []string{"e:lee@example.com", "h:example.com"}},
	{"display name", "Lee <lee@example.com>", []string{"i:leeleeexamplecom", "e:lee@example.com", "h:example.com"}},
	{"url", "https://Evil.com/x/", []string{"u:evil.com/x", "h:evil.com"}},
	{"url bare", "evil.com/x", []string{"u:evil.com/x", "h:evil.com"}},
	{"domain", "evil.com", []string{"h:evil.com"}},
	{"iban grouped", "DE89 3704 0044 0532 0130 00", []string{"i:de89370400440532013000"}},
	{"iban hyphens", "DE89-3704-0044-0532-0130-00", []string{"i:de89370400440532013000"}},
	{"phone", "+49 (30) 123-4567", []string{"i:49301234567"}},
	{"amount string", "98.70", []string{"n:98.7"}},
	{"amount grouped", "1,250.00", []string{"n:1250"}},
	{"amount european", "1.250,00", []string{"n:1250"}},
	{"amount european decimals", "98,70", []string{"n:98.7"}},
	{"amount european thousands", "1.250.000", []string{"n:1250000", "i:1250000"}},
	{"amount currency", "EUR 84.20", []string{"n:84.2"}},
	{"amount currency suffix", "84.20 €", []string{"n:84.2"}},
	{"amount float", 98.7, []string{"n:98.7"}},
	{"amount float integer", 1500.0, []string{"n:1500"}},
	{"float year is an amount", 2026.0, []string{"n:2026"}},
	{"float short", 12.0, nil},
	{"float small fraction", 1.5, nil},
	{"float negative", -45.9, []string{"n:45.9"}},
	{"float account", 12345678.0, []string{"n:12345678", "i:12345678"}},
	{"float nan", jsonNaN(), nil},
	{"json number", json.Number("98.70"), []string{"n:98.7"}},
	{"int", 1500, []string{"n:1500"}},
	{"string year", "2026", nil},
	{"string digits", "12345678", []string{"n:12345678", "i:12345678"}},
	{"path", "/etc/passwd", []string{"p:/etc/passwd"}},
	{"path windows", `C:\Users\x\key.pem`, []string{"p:c:/users/x/key.pem"}},
	{"name", "Northgrid Energy", []string{"i:northgridenergy"}},
	{"name unicode", "Müller Straße", []string{"i:müllerstraße"}},
	{"name fullwidth and hidden", "Ｎｏｒｔｈ\u200bgrid", []string{"i:northgrid"}},
	{"short reply", "ok", nil},
	{"short word", "yes", nil},
	{"short code", "m-311", nil},
	{"five letters", "hello", nil},
	{"subject", "Invoice INV-2026-0042 for December", []string{"i:invoiceinv20260042fordecember", "i:inv20260042"}},
	{"long text has no whole ident", strings.Repeat("word ", 30) + "lee@example.com", []string{"e:lee@example.com", "h:example.com"}},
	{"bool", true, nil},
	{"nil", nil, nil},
	{"list", []any{"lee@example.com", 98.7, nil, false}, []string{"e:lee@example.com", "h:example.com", "n:98.7"}},
	{"object values not keys", map[string]any{"recipient": "DE89 3704 0044 0532 0130 00", "amount": 98.7, "evil.com": "ok"},
		[]string{"n:98.7", "i:de89370400440532013000"}},
	{"nested", map[string]any{"to": []any{map[string]any{"email": "lee@example.com"}}}, []string{"e:lee@example.com", "h:example.com"}},
	{"too deep", nest(40, "lee@example.com"), nil},
	{"deep enough", nest(31, "lee@example.com"), []string{"e:lee@example.com", "h:example.com"}},
}

func jsonNaN() float64 {
	var zero float64
	return zero / zero
}

// nest wraps v in depth levels of one-element lists.
func nest(depth int, v any) any {
	for range depth {
		v = []any{v}
	}
	return v
}

func TestArgumentValues(t *testing.T) {
	t.Parallel()
	for _, tc := range argumentCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := argumentKeys(tc.arg)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("ArgumentValues(%#v) keys (-want +got):\n%s", tc.arg, diff)
			}
		})
	}
}

func TestLeaf(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want []string
	}{
		{"Northgrid Energy", []string{"i:northgridenergy"}},
		{"Lee <lee@example.com>", []string{"i:leeleeexamplecom"}},
		{"lee@example.com", []string{"e:lee@example.com", "h:example.com"}},
		{"https://evil.com/pay", []string{"u:evil.com/pay", "h:evil.com"}},
		{"98.70", []string{"n:98.7"}},
		{"2026", nil},
		{"DE89 3704 0044 0532 0130 00", []string{"i:de89370400440532013000"}},
		{"Pending", []string{"i:pending"}},
		{"paid", nil},
		{"", nil},
		{"   ", nil},
		// Free text inside a field is for ExtractText, not Leaf.
		{"Please pay INV-2026-0042 today", []string{"i:pleasepayinv20260042today"}},
		{strings.Repeat("a", 129), nil},
		{strings.Repeat("a", 128), []string{"i:" + strings.Repeat("a", 128)}},
	}
	for _, tc := range tests {
		if diff := cmp.Diff(tc.want, leafKeys(tc.in)); diff != "" {
			t.Errorf("Leaf(%q) keys (-want +got):\n%s", tc.in, diff)
		}
	}
}

// TestCopyRewrites checks that the rewrites an agent makes when copying a value
// from a text into an argument keep the key, and that near misses do not.
func TestCopyRewrites(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		text  string
		arg   any
		match bool
	}{
		{"email case", "From: Lee.Park@Example.COM", "lee.park@example.com", true},
		{"email in display form", "lee@example.com", "Lee Park <LEE@example.com>", true},
		{"email other address same domain", "lee@northgrid.example", "sam@northgrid.example", true}, // via the host
		{"email other domain", "lee@northgrid.example", "lee@southgrid.example", false},
		{"url scheme removed", "https://Evil.com/x/", "evil.com/x", true},
		{"url scheme added", "go to evil.com/x", "https://evil.com/x", true},
		{"url www and fragment", "http://www.evil.com/x#a", "https://evil.com/x/", true},
		{"url host only", "https://evil.com/collect?id=1", "evil.com", true},
		{"url other host", "https://evil.com/x", "https://evil.org/x", false},
		{"iban spaces added", "DE89370400440532013000", "DE89 3704 0044 0532 0130 00", true},
		{"iban spaces removed", "DE89 3704 0044 0532 0130 00", "de89370400440532013000", true},
		{"iban hyphens", "DE89 3704 0044 0532 0130 00", "DE89-3704-0044-0532-0130-00", true},
		{"iban other", "DE89 3704 0044 0532 0130 00", "DE02 1203 0000 0000 2020 51", false},
		{"phone reformatted", "Call +49 (30) 123-4567", "+49301234567", true},
		{"account reformatted", "Account 1234-5678-90", "1234567890", true},
		{"account as json number", "Konto 1234-5678", 12345678.0, true},
		{"amount float", "Total: 98.70 EUR", 98.7, true},
		{"amount string trailing zero", "Total: 98.7", "98.70", true},
		{"amount grouped", "Total 1,250.00", 1250.0, true},
		{"amount european", "Summe 1.250,00 €", "1250", true},
		{"amount json number", "Total: 98.70", json.Number("98.7"), true},
		{"amount other", "Total: 98.70", 98.07, false},
		{"year is not an amount", "in 2026", 2026.0, false},
		{"short number", "12 items", 12.0, false},
		{"path dot slash", "./out/report.pdf", "out/report.pdf", true},
		{"path case", "bills/December.txt", "BILLS/december.txt", true},
		{"path windows", `C:\Users\Lee\key.pem`, "c:/users/lee/key.pem", true},
		{"token punctuation", "Invoice INV-2026-0042.", "inv 2026 0042", true},
		{"token case", "tx-77abc12", "TX-77ABC12", true},
		{"structured field", "Northgrid Energy", "northgrid energy", false}, // a text, not a field: see Leaf
		{"short token", "code m-311", "m-311", false},
		{"common word", "please confirm", "confirm", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			seen := map[string]bool{}
			ExtractText(tc.text, func(v Value) { seen[v.Key] = true })
			var hit []string
			ArgumentValues(tc.arg, func(v Value) {
				if seen[v.Key] {
					hit = append(hit, v.Key)
				}
			})
			if got := len(hit) > 0; got != tc.match {
				t.Errorf("text %q, argument %#v: match = %v (%q), want %v", tc.text, tc.arg, got, hit, tc.match)
			}
		})
	}
}

func TestLeafMatchesArgument(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for _, s := range []string{"Northgrid Energy", "DE89 3704 0044 0532 0130 00", "Lee <lee@example.com>"} {
		Leaf(s, func(v Value) { seen[v.Key] = true })
	}
	for _, arg := range []string{"northgrid energy", "NORTHGRID-ENERGY", "DE89370400440532013000", "Lee <lee@example.com>"} {
		hit := false
		ArgumentValues(arg, func(v Value) { hit = hit || seen[v.Key] })
		if !hit {
			t.Errorf("ArgumentValues(%q) does not match the remembered leaves", arg)
		}
	}
}

func TestArgumentValuesDeterministic(t *testing.T) {
	t.Parallel()
	arg := map[string]any{"a": "lee@example.com", "b": 98.7, "c": []any{"DE89 3704 0044 0532 0130 00"}, "d": "x", "e": "https://evil.com/x"}
	first := argumentKeys(arg)
	for range 20 {
		if got := argumentKeys(arg); !slices.Equal(got, first) {
			t.Fatalf("ArgumentValues order changed: %q, then %q", first, got)
		}
	}
}

func TestExtractTextAllocs(t *testing.T) {
	text := "From: Lee <lee@example.com>\nPlease pay 98.70 EUR to DE89 3704 0044 0532 0130 00 by 2026-03-15.\n"
	n := testing.AllocsPerRun(100, func() { ExtractText(text, func(Value) {}) })
	// One key string per value (4): a body built for a key is built with its prefix.
	if n > 4 {
		t.Errorf("ExtractText allocates %v times per run, want at most 4", n)
	}
}

// TestExtractTextLinearTime guards against quadratic scans: each adversarial
// pattern repeated to 256 KiB is scanned in milliseconds (under a second with
// the race detector), while a quadratic scan takes minutes. The bound is loose
// so that a slow machine does not fail it.
func TestExtractTextLinearTime(t *testing.T) {
	if testing.Short() {
		t.Skip("slow")
	}
	t.Parallel()
	patterns := []string{
		"/a", "%a", "+a", "~a", `\a`, "a.", "a-", "a@", "ab12@", "1 ", "0 ", "1,", "1-", "1.", "1/", "-1",
		"+1 ", "(1) ", "+(1)", "0 0 0 x", "DE89 ", "DE89 3704 ", "www.", "a.b/", "/a.b", "/x.com",
		"1.1.1.1.", "0.0.0.0/", "https://a.b/(", "1,000,", "$1", "EUR 1,", "10:", "C:\\a", "~/a", "./",
		"a/b%c+d~", "lee@example.com ", "é",
	}
	for _, p := range patterns {
		text := strings.Repeat(p, (256<<10)/len(p))
		start := time.Now()
		ExtractText(text, func(Value) {})
		ArgumentValues(text, func(Value) {})
		ExtractText("["+strings.Repeat(`\u0041`+p, (256<<10)/(len(p)+6)), func(Value) {})
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("ExtractText(%q repeated to 256 KiB) took %v", p, d)
		}
	}
}

// TestCurrencyCode compares currencyCode, which compares in a buffer of its own, with the
// upper-casing definition it replaced, on every three-byte string over letters of both
// cases, digits, punctuation and bytes of multi-byte UTF-8 sequences.
func TestCurrencyCode(t *testing.T) {
	reference := func(c string) bool {
		switch strings.ToUpper(c) {
		case "EUR", "USD", "GBP", "CHF", "JPY", "CAD", "AUD", "NZD", "SEK", "NOK", "DKK", "PLN",
			"CZK", "HUF", "INR", "CNY", "BRL", "MXN", "ZAR", "SGD", "HKD":
			return c == strings.ToUpper(c) || c == strings.ToLower(c)
		}
		return false
	}
	alphabet := "ABCDEFGHIJKLMNOPRSUVXYZabcdefghijklmnoprsuvxyz09 .$\x80\xbf\xc4\xb1\xc5\xbf\xff"
	n := 0
	for i := range len(alphabet) {
		for j := range len(alphabet) {
			for k := range len(alphabet) {
				c := string([]byte{alphabet[i], alphabet[j], alphabet[k]})
				if got, want := currencyCode(c), reference(c); got != want {
					t.Errorf("currencyCode(%q) = %v, want %v", c, got, want)
				}
				if reference(c) {
					n++
				}
			}
		}
	}
	if n < 2*21 {
		t.Errorf("%d codes recognised, want every code in upper and in lower case", n)
	}
}
