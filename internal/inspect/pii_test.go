package inspect

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
)

// piiTestScan scans text with every type and returns "TYPE=value" for each finding.
func piiTestScan(t testing.TB, text string) []string {
	t.Helper()
	s, err := NewPIIScanner(nil)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range s.Scan(text) {
		got = append(got, f.Kind+"="+text[f.Span.Start:f.Span.End])
	}
	return got
}

func TestPIIScanFinds(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, text string
		want       []string
	}{
		// E-mail.
		{"email plain", "write to jane.doe@example.co.uk today", []string{"EMAIL=jane.doe@example.co.uk"}},
		{"email plus tag in mailto", "mailto:john.smith+news@mail.example.com?subject=hi", []string{"EMAIL=john.smith+news@mail.example.com"}},
		{"email apostrophe", `"o'neil@example.ie"`, []string{"EMAIL=o'neil@example.ie"}},
		{"email in angle brackets", "From: Ann <ann_lee@sub.example.museum>", []string{"EMAIL=ann_lee@sub.example.museum"}},
		{"email punycode", "contact x@xn--bcher-kva.xn--tckwe", []string{"EMAIL=x@xn--bcher-kva.xn--tckwe"}},
		{"email unicode", "пишите иван@пример.рф", []string{"EMAIL=иван@пример.рф"}},
		{"email end of sentence", "Mail bob@example.org.", []string{"EMAIL=bob@example.org"}},
		{"two emails", "a.b@example.com,c-d@example.net", []string{"EMAIL=a.b@example.com", "EMAIL=c-d@example.net"}},
		// Phone numbers.
		{"phone NANP dashes", "call 212-555-0187 now", []string{"PHONE=212-555-0187"}},
		{"phone NANP parens", "office (646) 555-0123.", []string{"PHONE=(646) 555-0123"}},
		{"phone NANP dots ext", "415.555.0199 ext. 12", []string{"PHONE=415.555.0199 ext. 12"}},
		{"phone NANP x ext", "555-123-4567x890", []string{"PHONE=555-123-4567x890"}},
		{"phone NANP with 1", "1-800-555-0199", []string{"PHONE=1-800-555-0199"}},
		{"phone intl US", "+1 (312) 555-0147", []string{"PHONE=+1 (312) 555-0147"}},
		{"phone intl UK", "+44 20 7946 0321", []string{"PHONE=+44 20 7946 0321"}},
		{"phone intl UK trunk", "+44 (0)161 496 0000", []string{"PHONE=+44 (0)161 496 0000"}},
		{"phone intl compact", `{"tel":"+4930123456789"}`, []string{"PHONE=+4930123456789"}},
		{"phone intl FR", "+33 6 12 34 56 78", []string{"PHONE=+33 6 12 34 56 78"}},
		{"phone trunk UK", "020 7946 0321", []string{"PHONE=020 7946 0321"}},
		{"phone trunk DE slash", "030/1234567", []string{"PHONE=030/1234567"}},
		{"phone trunk FR pairs", "06 12 34 56 78", []string{"PHONE=06 12 34 56 78"}},
		{"phone area in parens", "(21) 99876-5432", []string{"PHONE=(21) 99876-5432"}},
		{"phone bare with context", "phone: 6465550123", []string{"PHONE=6465550123"}},
		{"phone in JSON after escape", `{"t":"line\nCall 212-555-0187"}`, []string{"PHONE=212-555-0187"}},
		// Payment cards.
		{"card visa compact", "4242424242424242", []string{"CREDIT_CARD=4242424242424242"}},
		{"card visa spaced", "card 4242 4242 4242 4242 exp 12/29", []string{"CREDIT_CARD=4242 4242 4242 4242"}},
		{"card mc dashed", "5105-1051-0510-5100", []string{"CREDIT_CARD=5105-1051-0510-5100"}},
		{"card amex 4-6-5", "3782 822463 10005", []string{"CREDIT_CARD=3782 822463 10005"}},
		{"card discover", "6011111111111117", []string{"CREDIT_CARD=6011111111111117"}},
		{"card jcb", "3530111333300000", []string{"CREDIT_CARD=3530111333300000"}},
		{"card diners 14", "38520000023237", []string{"CREDIT_CARD=38520000023237"}},
		{"card visa 13", "4222222222222", []string{"CREDIT_CARD=4222222222222"}},
		// IBANs.
		{"iban DE grouped", "IBAN: DE89 3704 0044 0532 0130 00", []string{"IBAN=DE89 3704 0044 0532 0130 00"}},
		{"iban GB compact", "GB82WEST12345698765432", []string{"IBAN=GB82WEST12345698765432"}},
		{"iban BE dashed", "BE68-5390-0754-7034", []string{"IBAN=BE68-5390-0754-7034"}},
		{"iban FR", "FR76 3000 6000 0112 3456 7890 189.", []string{"IBAN=FR76 3000 6000 0112 3456 7890 189"}},
		{"iban then word", "CH93 0076 2011 6238 5295 7 X", []string{"IBAN=CH93 0076 2011 6238 5295 7"}},
		// IP addresses.
		{"ipv4", "from 203.0.113.45 at noon", []string{"IP_ADDRESS=203.0.113.45"}},
		{"ipv4 cidr", "allow 198.51.100.0/24;", []string{"IP_ADDRESS=198.51.100.0/24"}},
		{"ipv4 bad cidr", "10.1.0.0/33", []string{"IP_ADDRESS=10.1.0.0"}},
		{"ipv4 port", "host 203.0.113.7:8443", []string{"IP_ADDRESS=203.0.113.7"}},
		{"ipv4 after label", "IP:203.0.113.9 and ID:198.51.100.2", []string{"IP_ADDRESS=203.0.113.9", "IP_ADDRESS=198.51.100.2"}},
		{"ipv4 five parts", "172.20.10.3.1", []string{"IP_ADDRESS=172.20.10.3"}},
		{"ipv6 full", "2001:0db8:85a3:0000:0000:8a2e:0370:7334", []string{"IP_ADDRESS=2001:0db8:85a3:0000:0000:8a2e:0370:7334"}},
		{"ipv6 compressed", "gw 2001:db8:85a3::8a2e:370:7334.", []string{"IP_ADDRESS=2001:db8:85a3::8a2e:370:7334"}},
		{"ipv6 loopback", "bind ::1", []string{"IP_ADDRESS=::1"}},
		{"ipv6 bracket port", "http://[2001:db8::7]:8080/", []string{"IP_ADDRESS=2001:db8::7"}},
		{"ipv6 mapped", "::ffff:198.51.100.7", []string{"IP_ADDRESS=::ffff:198.51.100.7"}},
		{"ipv6 cidr", "route fd00:1234::/48", []string{"IP_ADDRESS=fd00:1234::/48"}},
		{"ipv6 zone", "fe80::a1b2%eth0", []string{"IP_ADDRESS=fe80::a1b2"}},
		// National identifiers.
		{"us ssn", "SSN 536-22-8726", []string{"US_SSN=536-22-8726"}},
		{"us ssn bare with context", "social security number: 536228726", []string{"US_SSN=536228726"}},
		{"us itin", "ITIN 912-78-1234", []string{"US_ITIN=912-78-1234"}},
		{"us mbi", "MBI 5JK2-N34-RT56", []string{"US_MBI=5JK2-N34-RT56"}},
		{"uk nino", "NI number JG 10 37 59 A", []string{"UK_NINO=JG 10 37 59 A"}},
		{"uk nhs with context", "NHS no. 450 557 7104", []string{"UK_NHS=450 557 7104"}},
		{"es nif", "DNI 87654321X", []string{"ES_NIF=87654321X"}},
		{"es nie dash", "NIE Y7654321-G", []string{"ES_NIE=Y7654321-G"}},
		{"it fiscal code", "CF RSSMRA85T10A562S", []string{"IT_FISCAL_CODE=RSSMRA85T10A562S"}},
		{"pl pesel", "PESEL 44051401359", []string{"PL_PESEL=44051401359"}},
		{"se personnummer", "811218-9876", []string{"SE_PERSONNUMMER=811218-9876"}},
		{"se personnummer plus", "640823+3234", []string{"SE_PERSONNUMMER=640823+3234"}},
		{"fi hetu", "311280-888Y", []string{"FI_PERSONAL_IDENTITY_CODE=311280-888Y"}},
		{"tr kimlik", "TC 27182818254", []string{"TR_NATIONAL_ID=27182818254"}},
		{"kr rrn", "850315-1234566", []string{"KR_RRN=850315-1234566"}},
		{"kr frn", "8503155234569", []string{"KR_FRN=8503155234569"}},
		{"sg nric", "NRIC S1234567D and FIN F7654321Q", []string{"SG_NRIC_FIN=S1234567D", "SG_NRIC_FIN=F7654321Q"}},
		{"ca sin dashed", "193-456-787", []string{"CA_SIN=193-456-787"}},
		{"in aadhaar", "2718 2818 2848", []string{"IN_AADHAAR=2718 2818 2848"}},
		{"in pan", "PAN ABCPE1234F", []string{"IN_PAN=ABCPE1234F"}},
		{"au tfn", "TFN 123 456 782", []string{"AU_TFN=123 456 782"}},
		{"au medicare", "2953 14970 1", []string{"AU_MEDICARE=2953 14970 1"}},
		{"za id", "9202204720083", []string{"ZA_ID_NUMBER=9202204720083"}},
		{"de tax id", "Steuer-ID 86095742719", []string{"DE_TAX_ID=86095742719"}},
		{"de kvnr", "KVNR K123456781", []string{"DE_HEALTH_INSURANCE=K123456781"}},
		{"de rvnr", "12010190M015", []string{"DE_SOCIAL_SECURITY=12010190M015"}},
		{"th tnin dashed", "3-1012-34567-89-3", []string{"TH_TNIN=3-1012-34567-89-3"}},
		{"th tnin with context", "Thai ID 1100700123455", []string{"TH_TNIN=1100700123455"}},
		// Several types at once, in order.
		{"mixed", "jo@example.com, +44 20 7946 0321, 10.0.0.8", []string{"EMAIL=jo@example.com", "PHONE=+44 20 7946 0321", "IP_ADDRESS=10.0.0.8"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if diff := cmp.Diff(tt.want, piiTestScan(t, tt.text)); diff != "" {
				t.Errorf("Scan(%q) (-want +got):\n%s", tt.text, diff)
			}
		})
	}
}

func TestPIIScanIgnores(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, text string }{
		// Cards.
		{"card luhn fails", "4242 4242 4242 4241"},
		{"card unknown prefix", "9999999999999995"},
		{"card wrong length for issuer", "424242424242424"},
		{"card mixed separators", "4242-4242 4242-4242"},
		{"card glued to letters", "x4242424242424242"},
		{"card more digits follow", "4242-4242-4242-4242-12"},
		// IBANs.
		{"iban checksum fails", "DE89 3704 0044 0532 0130 01"},
		{"iban lower case", "de89370400440532013000"},
		{"iban mixed case", "DE89 3704 0044 0532 0130 0O"},
		{"iban too short", "GB82WEST1234569876543"},
		{"iban too long", "GB82WEST123456987654321"},
		{"iban stray letter before", "XGB82WEST12345698765432"},
		{"iban slash separators", "DE89/3704/0044/0532/0130/00"},
		{"iban letter where digit", "DE89 3704 0044 0532 0130 0A"},
		{"iban unknown country", "ZZ89370400440532013000"},
		// E-mail.
		{"email no tld", "user@localhost"},
		{"email trailing dot only", "info@presidio."},
		{"email numeric tld", "lodash@4.17.21"},
		{"email retina image", "logo@2x.png"},
		{"email scoped package", "@types/node"},
		{"email double dot", "a..b@example.com"},
		{"email one letter tld", "x@y.z"},
		// IP addresses.
		{"ip octet too big", "192.168.1.256"},
		{"ip three parts", "10.0.1"},
		{"ip version string", "1.2.3.4.5"},
		{"ip version word", "version 1.2.3.4"},
		{"ip v-prefixed", "v1.2.3.4"},
		{"ip glued left", "abc192.168.1.1"},
		{"ip glued right", "192.168.1.1xyz"},
		{"ip leading zero", "192.168.01.1"},
		{"ip six parts", "10.1.2.3.4.5"},
		{"ipv6 glued left", "text2001:db8::1"},
		{"ipv6 glued right", "fe80::1zz"},
		{"ipv6 two double colons", "2001::db8::1"},
		{"ipv6 group too long", "12345:db8::1"},
		{"ipv6 bad embedded v4", "2001:db8::300.1.1.1"},
		{"mac address", "00:1a:2b:3c:4d:5e"},
		{"eui64 like mac", "00:1a:2b:3c:4d:5e:6f:70"},
		{"time", "12:34:56"},
		{"cpp scope", "std::vector and Foo::bar"},
		{"hex words", "dead::beef"},
		{"ratio", "1:2:3:4"},
		// Phones and numbers in general.
		{"date iso", "2024-01-15"},
		{"date dmy", "15-01-2024 and 15.01.2024 and 01/15/2024"},
		{"timestamp", "2024-01-15T10:30:00Z"},
		{"epoch ms", "1700000000000"},
		{"version", "v2.10.3 and 10.0.19041.1"},
		{"uuid", "550e8400-e29b-41d4-a716-446655440000"},
		{"price", "$1,234.56 or 1.234,56 EUR or 12 345 678"},
		{"order id", "ORD-2023-445566"},
		{"order number", "order number 2125550187"},
		{"bare digits", "the answer is 2125550187"},
		{"hex hash", "sha256 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"},
		{"md5", "d41d8cd98f00b204e9800998ecf8427e"},
		{"git sha", "commit 3f9a0c1d2e4b5a6712345678"},
		{"isbn", "978-3-16-148410-0"},
		{"coordinates", "48.8584, 2.2945"},
		{"year list", "2019 2020 2021 2022"},
		{"number list", "100 200 300 400"},
		{"intl unknown code", "+0 123 456 7890"},
		{"intl too long", "+123456789012345678"},
		{"glued phone", "is415-555-0132"},
		{"country code without plus", "91-415-555-0132"},
		{"nanp space bad exchange", "212 055 0187"},
		// National identifiers.
		{"ssn zero group", "536-00-8726"},
		{"ssn 666 area", "666-22-8726"},
		{"ssn mixed separators", "536-22.8726"},
		{"ssn bare without context", "536228726"},
		{"itin bad group", "912-89-1234"},
		{"sin luhn fails", "193-456-788"},
		{"sin spaced without context", "193 456 787"},
		{"sin spaced with a word inside another", "since 193 456 787"},
		{"nhs check fails", "NHS 150 557 7105"},
		{"aadhaar verhoeff fails", "2718 2818 2847"},
		{"aadhaar dashed without context", "2718-2818-2848"},
		{"nif wrong letter", "87654321A"},
		{"nie wrong letter", "X1234567A"},
		{"fiscal code check fails", "RSSMRA85T10A562T"},
		{"pesel without context", "44051401359"},
		{"pesel bad date", "PESEL 44133101359"},
		{"se bad month", "811318-9876"},
		{"fi bad check", "311280-888X"},
		{"fi dot separator", "311280.888Y"},
		{"tr bad check", "27182818255"},
		{"kr bad date", "851315-1234566"},
		{"sg bad check", "S1234567A"},
		{"nino bad prefix", "GB 10 37 59 A"},
		{"za bad date", "9202304720083"},
		{"de tax repeated digits", "11111111111"},
		{"th bare without context", "3101234567893"},
		{"kvnr bad check", "K123456782"},
		{"rvnr bad month", "12011390M015"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := piiTestScan(t, tt.text); len(got) != 0 {
				t.Errorf("Scan(%q) = %q, want nothing", tt.text, got)
			}
		})
	}
}

func TestPIIScanOverlaps(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, text string
		want       []string
	}{
		// The digits of an IBAN could pass as a card; the IBAN is the better reading.
		{"iban over card", "DE89 3704 0044 0532 0130 00", []string{"IBAN=DE89 3704 0044 0532 0130 00"}},
		// An SSN shape starting with 0 reads as a trunk-prefixed phone too.
		{"ssn over phone", "078-05-1124", []string{"US_SSN=078-05-1124"}},
		// A UK NHS number in 3-3-4 is a North American phone shape: the word decides.
		{"nhs with word", "NHS number 943 476 5919", []string{"UK_NHS=943 476 5919"}},
		{"phone without word", "call 943 476 5919", []string{"PHONE=943 476 5919"}},
		// An e-mail with an IP-like domain part is not an e-mail; the IP stays.
		{"ip after at", "root@192.168.0.1", []string{"IP_ADDRESS=192.168.0.1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if diff := cmp.Diff(tt.want, piiTestScan(t, tt.text)); diff != "" {
				t.Errorf("Scan(%q) (-want +got):\n%s", tt.text, diff)
			}
		})
	}
}

func TestNewPIIScanner(t *testing.T) {
	t.Parallel()
	_, err := NewPIIScanner([]string{"EMAIL", "PASSPORT"})
	if err == nil || !strings.Contains(err.Error(), `"PASSPORT"`) || !strings.Contains(err.Error(), "IBAN") {
		t.Errorf("NewPIIScanner(EMAIL, PASSPORT) error = %v, want one naming PASSPORT and listing the types", err)
	}
	s, err := NewPIIScanner([]string{"EMAIL", "IP_ADDRESS"})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"EMAIL", "IP_ADDRESS"}, s.Types()); diff != "" {
		t.Errorf("Types() (-want +got):\n%s", diff)
	}
	text := "a@example.com +44 20 7946 0321 10.0.0.8 4242424242424242"
	var got []string
	for _, f := range s.Scan(text) {
		got = append(got, f.Kind)
	}
	if diff := cmp.Diff([]string{"EMAIL", "IP_ADDRESS"}, got); diff != "" {
		t.Errorf("Scan(%q) kinds (-want +got):\n%s", text, diff)
	}
	all, err := NewPIIScanner(nil)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(PIITypes(), all.Types()); diff != "" {
		t.Errorf("NewPIIScanner(nil).Types() (-want +got):\n%s", diff)
	}
}

func TestPIITypes(t *testing.T) {
	t.Parallel()
	types := PIITypes()
	if !slices.IsSorted(types) {
		t.Errorf("PIITypes() = %v, not sorted", types)
	}
	for _, want := range []string{"EMAIL", "PHONE", "CREDIT_CARD", "IBAN", "IP_ADDRESS", "US_SSN", "IN_AADHAAR", "UK_NHS"} {
		if !slices.Contains(types, want) {
			t.Errorf("PIITypes() lacks %s", want)
		}
	}
	for _, typ := range types {
		if !vaultTypeOK(typ) {
			t.Errorf("type %q cannot name a placeholder", typ)
		}
	}
}

// piiRuneBoundary reports whether i is a boundary between the runes of text as Go
// decodes it (an invalid byte is a rune of its own).
func piiRuneBoundary(text string, i int) bool {
	if i == 0 || i == len(text) {
		return true
	}
	// Look back at most utf8.UTFMax bytes for the start of the rune holding i-1.
	for j := max(0, i-utf8.UTFMax); j < i; j++ {
		if !utf8.RuneStart(text[j]) {
			continue
		}
		if _, size := utf8.DecodeRuneInString(text[j:]); j+size > i {
			return false
		}
	}
	return true
}

// piiCheckFindings checks the invariants of Scan's result on text.
func piiCheckFindings(t testing.TB, text string, fs []Finding) {
	t.Helper()
	prev := 0
	for i, f := range fs {
		if f.Span.Start < prev || f.Span.End <= f.Span.Start || f.Span.End > len(text) {
			t.Fatalf("Scan(%q): finding %d %+v out of order or bounds (previous end %d)", text, i, f, prev)
		}
		if !piiRuneBoundary(text, f.Span.Start) || !piiRuneBoundary(text, f.Span.End) {
			t.Fatalf("Scan(%q): finding %d %+v not on rune boundaries", text, i, f)
		}
		if f.Sensor != SensorPII || !slices.Contains(PIITypes(), f.Kind) || f.Score <= 0 || f.Score > 1 {
			t.Fatalf("Scan(%q): finding %d %+v has a bad sensor, kind or score", text, i, f)
		}
		prev = f.Span.End
	}
}

func TestPIIScanJSON(t *testing.T) {
	t.Parallel()
	text := `{"customer":{"name":"Ann","email":"ann.lee@example.com","phone":"+1 212-555-0187",` +
		`"card":"4242 4242 4242 4242","iban":"GB82WEST12345698765432","ip":"198.51.100.23"},` +
		`"note":"ticket 2024-01-15 v1.2.3 id 550e8400-e29b-41d4-a716-446655440000"}`
	want := []string{
		"EMAIL=ann.lee@example.com",
		"PHONE=+1 212-555-0187",
		"CREDIT_CARD=4242 4242 4242 4242",
		"IBAN=GB82WEST12345698765432",
		"IP_ADDRESS=198.51.100.23",
	}
	if diff := cmp.Diff(want, piiTestScan(t, text)); diff != "" {
		t.Errorf("Scan(JSON) (-want +got):\n%s", diff)
	}
}

func TestPIIScanInvalidUTF8(t *testing.T) {
	t.Parallel()
	s, err := NewPIIScanner(nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, text := range []string{
		"+10000000000000\x800000000000", // found by FuzzPIIScan: a value ending before a stray byte
		"jane@example.com\xff and \xc3@example.com",
		"\xe2\x82 203.0.113.45\x80",
		"4242424242424242\xf0\x9f",
	} {
		fs := s.Scan(text)
		piiCheckFindings(t, text, fs)
		if len(fs) == 0 {
			t.Errorf("Scan(%q) found nothing, want the value before or after the stray bytes", text)
		}
	}
}

// TestPIIScanLinear checks that adversarial inputs scan in time linear in their length:
// an input eight times longer must take about eight times as long, far from the 64
// times a quadratic scan would take.
func TestPIIScanLinear(t *testing.T) {
	if testing.Short() {
		t.Skip("timing test")
	}
	s, err := NewPIIScanner(nil)
	if err != nil {
		t.Fatal(err)
	}
	patterns := []string{"1 ", "1-", "a@", "@.", "a.", "::", "1.", "+1 ", "AB12 ", "1111", "a@b.", "0 (", "x1:", "[pii:A:"}
	for _, p := range patterns {
		// 16 times the text: a linear scan takes about 16 times as long, a quadratic one
		// 256 times. The bound sits between, far enough from both that a loaded machine
		// (or the race detector) does not cross it.
		small := strings.Repeat(p, 5_000/len(p))
		large := strings.Repeat(p, 80_000/len(p))
		best := func(text string) time.Duration {
			d := time.Duration(1 << 62)
			for range 5 {
				start := time.Now()
				fs := s.Scan(text)
				d = min(d, time.Since(start))
				piiCheckFindings(t, text, fs)
			}
			return d
		}
		ds, dl := best(small), best(large)
		if dl > 64*ds+10*time.Millisecond {
			t.Errorf("Scan(%q x %d) took %v, 16x shorter took %v: not linear", p, len(large)/len(p), dl, ds)
		}
	}
}

func TestParsePIIMode(t *testing.T) {
	t.Parallel()
	for _, m := range []string{PIIAllow, PIIRedact, PIIMask, PIITokenize} {
		if got, err := ParsePIIMode(m); err != nil || got != m {
			t.Errorf("ParsePIIMode(%q) = %q, %v, want %q, nil", m, got, err, m)
		}
	}
	for _, m := range []string{"", "Redact", "hash", "block"} {
		if _, err := ParsePIIMode(m); err == nil {
			t.Errorf("ParsePIIMode(%q) succeeded, want an error", m)
		}
	}
}

func TestTransformPII(t *testing.T) {
	t.Parallel()
	s, err := NewPIIScanner(nil)
	if err != nil {
		t.Fatal(err)
	}
	text := "Mail jane.doe@example.com or call +1 (212) 555-0187; card 4242 4242 4242 4242, " +
		"IBAN DE89 3704 0044 0532 0130 00 from 203.0.113.45 / 2001:db8::7, SSN 536-22-8726."
	fs := s.Scan(text)
	if len(fs) != 7 {
		t.Fatalf("Scan(%q) = %v, want 7 findings", text, fs)
	}
	tests := []struct {
		mode, want string
	}{
		{PIIAllow, text},
		{PIIRedact, "Mail [EMAIL] or call [PHONE]; card [CREDIT_CARD], IBAN [IBAN] from [IP_ADDRESS] / [IP_ADDRESS], SSN [US_SSN]."},
		{PIIMask, "Mail j***@example.com or call +* (***) ***-0187; card **** **** **** 4242, " +
			"IBAN DE** **** **** **** **30 00 from 203.*.*.* / 2001:*, SSN ***-**-**26."},
	}
	for _, tt := range tests {
		got, err := TransformPII(text, fs, tt.mode, nil)
		if err != nil || got != tt.want {
			t.Errorf("TransformPII(%s) = %q, %v, want %q, nil", tt.mode, got, err, tt.want)
		}
	}

	v := piiTestVault(t, 100)
	got, err := TransformPII(text, fs, PIITokenize, v)
	if err != nil {
		t.Fatalf("TransformPII(tokenize) error = %v", err)
	}
	for _, f := range fs {
		if value := text[f.Span.Start:f.Span.End]; strings.Contains(got, value) {
			t.Errorf("TransformPII(tokenize) = %q, still holds %q", got, value)
		}
	}
	if n := len(v.Placeholders(got)); n != 7 {
		t.Errorf("Placeholders(%q) found %d, want 7", got, n)
	}
	back, types := v.Detokenize(got)
	if back != text {
		t.Errorf("Detokenize(TransformPII(tokenize)) = %q, want %q", back, text)
	}
	if diff := cmp.Diff([]string{"CREDIT_CARD", "EMAIL", "IBAN", "IP_ADDRESS", "PHONE", "US_SSN"}, types); diff != "" {
		t.Errorf("Detokenize types (-want +got):\n%s", diff)
	}
	again, err := TransformPII(text, fs, PIITokenize, v)
	if err != nil || again != got {
		t.Errorf("TransformPII(tokenize) again = %q, %v, want the same placeholders %q", again, err, got)
	}
}

func TestTransformPIIVaultFull(t *testing.T) {
	t.Parallel()
	text := "a@example.com b@example.com c@example.com"
	s, err := NewPIIScanner([]string{"EMAIL"})
	if err != nil {
		t.Fatal(err)
	}
	v := piiTestVault(t, 2)
	got, err := TransformPII(text, s.Scan(text), PIITokenize, v)
	if err != nil {
		t.Fatalf("TransformPII(full vault) error = %v", err)
	}
	if !strings.HasSuffix(got, " [EMAIL]") || strings.Count(got, "[pii:EMAIL:") != 2 || strings.Contains(got, "c@example.com") {
		t.Errorf("TransformPII(full vault) = %q, want two placeholders then a redaction", got)
	}
}

func TestTransformPIIErrors(t *testing.T) {
	t.Parallel()
	text := "a@example.com and more"
	f := func(start, end int, kind string) Finding {
		return Finding{Sensor: SensorPII, Kind: kind, Span: Span{start, end}, Score: 1}
	}
	tests := []struct {
		name     string
		findings []Finding
		mode     string
		vault    bool
	}{
		{"unknown mode", nil, "hash", false},
		{"tokenize without vault", []Finding{f(0, 13, "EMAIL")}, PIITokenize, false},
		{"span past end", []Finding{f(0, 99, "EMAIL")}, PIIRedact, false},
		{"empty span", []Finding{f(3, 3, "EMAIL")}, PIIRedact, false},
		{"negative span", []Finding{f(-1, 3, "EMAIL")}, PIIMask, false},
		{"overlapping", []Finding{f(0, 10, "EMAIL"), f(5, 13, "EMAIL")}, PIIRedact, false},
		{"out of order", []Finding{f(14, 17, "EMAIL"), f(0, 13, "EMAIL")}, PIIRedact, false},
		{"kind breaks brackets", []Finding{f(0, 13, "EMAIL]")}, PIIRedact, false},
		{"empty kind", []Finding{f(0, 13, "")}, PIITokenize, true},
	}
	for _, tt := range tests {
		var v *Vault
		if tt.vault {
			v = piiTestVault(t, 10)
		}
		if got, err := TransformPII(text, tt.findings, tt.mode, v); err == nil {
			t.Errorf("%s: TransformPII = %q, want an error", tt.name, got)
		}
	}
	if _, err := TransformPII(text, nil, PIITokenize, nil); !errors.Is(err, errPIINoVault) {
		t.Errorf("TransformPII(tokenize, nil vault) error = %v, want errPIINoVault", err)
	}
}

func TestPIIMask(t *testing.T) {
	t.Parallel()
	tests := []struct{ kind, value, want string }{
		{"EMAIL", "jane@example.com", "j***@example.com"},
		{"EMAIL", "éva@example.com", "é***@example.com"},
		{"CREDIT_CARD", "378282246310005", "**** **** **** 0005"},
		{"IBAN", "GB82WEST12345698765432", "GB****************5432"},
		{"PHONE", "+44 20 7946 0321", "+** ** **** 0321"},
		{"PHONE", "030/1234567", "***/***4567"},
		{"IP_ADDRESS", "10.1.2.3/8", "10.*.*.*"},
		{"IP_ADDRESS", "::1", "::*"},
		{"IP_ADDRESS", "fe80::1", "fe80:*"},
		{"US_SSN", "536-22-8726", "***-**-**26"},
		{"ES_NIF", "87654321X", "*******1X"},
	}
	for _, tt := range tests {
		if got := piiMask(tt.kind, tt.value); got != tt.want {
			t.Errorf("piiMask(%s, %q) = %q, want %q", tt.kind, tt.value, got, tt.want)
		}
	}
}

func TestPIIChecksums(t *testing.T) {
	t.Parallel()
	b := func(s string) []byte { return []byte(s) }
	tests := []struct {
		name string
		got  bool
		want bool
	}{
		{"luhn ok", piiLuhn(b("79927398713")), true},
		{"luhn bad", piiLuhn(b("79927398710")), false},
		{"luhn empty", piiLuhn(nil), false},
		{"mod97 ok", piiMod97(b("GB82WEST12345698765432")), true},
		{"mod97 bad", piiMod97(b("GB82WEST12345698765433")), false},
		{"verhoeff ok", piiVerhoeff(b("2363")), true},
		{"verhoeff bad", piiVerhoeff(b("2364")), false},
		{"nhs ok", piiNHSValid(b("9434765919")), true},
		{"nhs check 10 invalid", piiNHSValid(b("1234567890")), false},
		{"tfn ok", piiTFNValid(b("123456782")), true},
		{"tfn bad", piiTFNValid(b("123456783")), false},
		{"tr ok", piiTRValid(b("27182818254")), true},
		{"tr leading zero", piiTRValid(b("07182818254")), false},
		{"de tax ok", piiDETaxValid(b("86095742719")), true},
		{"de tax all distinct", piiDETaxValid(b("12345678903")), false},
		{"pesel ok", piiPESELValid(b("44051401359")), true},
		{"pesel 2000s", piiPESELValid(b("02270803624")), true},
		{"fiscal ok", piiFiscalValid("RSSMRA85T10A562S"), true},
		{"fi ok", piiFIValid("311280-888Y"), true},
		{"fi 2000s", piiFIValid("010101A123N"), true},
		{"nric M", piiNRICValid("M4332674T"), true},
		{"kvnr ok", piiKVNRValid("T987654328"), true},
		{"rvnr ok", piiDESocialValid("53250375K524"), true},
		{"za ok", piiZAValid(b("7506125100080")), true},
		{"th ok", piiTHValid(b("3101234567893")), true},
		{"th bad province", piiTHValid(b("1994567890124")), false},
		{"leap day 2000", piiValidDate(2000, 2, 29), true},
		{"no leap day 1900", piiValidDate(1900, 2, 29), false},
		{"se coordination number", piiSEValid(b("8112789873"), false), true},
		{"se bad day", piiSEValid(b("8112409876"), false), false},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s = %v, want %v", tt.name, tt.got, tt.want)
		}
	}
}
