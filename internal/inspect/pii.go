package inspect

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Personal-data detection works in one pass over the text with hand-written matchers
// instead of regular expressions: each matcher starts only where a value can start (an
// '@', the first character of a word, a run of address characters) and looks at a
// bounded stretch of text from there, so a scan is linear in the length of the text.
// A candidate counts only when its structure holds: a checksum where the identifier has
// one (Luhn, mod 97, mod 11, Verhoeff, ...), a valid date where it encodes one, a known
// issuer or country prefix, and clean boundaries (a value glued to a longer word or
// number is not one). Identifiers whose checksum is weak (one chance in ten or so of a
// random number passing) are only taken bare when a context word names them nearby.
//
// The type names are those of Microsoft Presidio's entities.

// piiType indexes the supported personal-data types.
type piiType uint8

const (
	piiEmail piiType = iota
	piiPhone
	piiCard
	piiIBAN
	piiIP
	piiUSSSN
	piiUSITIN
	piiUSMBI
	piiUKNINO
	piiUKNHS
	piiESNIF
	piiESNIE
	piiITFiscal
	piiPLPESEL
	piiSEPersonnummer
	piiFIPIC
	piiTRNationalID
	piiKRRRN
	piiKRFRN
	piiSGNRIC
	piiCASIN
	piiINAadhaar
	piiINPAN
	piiAUTFN
	piiAUMedicare
	piiZAID
	piiDETaxID
	piiDEHealth
	piiDESocial
	piiTHTNIN
	piiNumTypes
)

// piiTypeNames are the names of the types, as findings and settings spell them.
var piiTypeNames = [piiNumTypes]string{
	piiEmail:          "EMAIL",
	piiPhone:          "PHONE",
	piiCard:           "CREDIT_CARD",
	piiIBAN:           "IBAN",
	piiIP:             "IP_ADDRESS",
	piiUSSSN:          "US_SSN",
	piiUSITIN:         "US_ITIN",
	piiUSMBI:          "US_MBI",
	piiUKNINO:         "UK_NINO",
	piiUKNHS:          "UK_NHS",
	piiESNIF:          "ES_NIF",
	piiESNIE:          "ES_NIE",
	piiITFiscal:       "IT_FISCAL_CODE",
	piiPLPESEL:        "PL_PESEL",
	piiSEPersonnummer: "SE_PERSONNUMMER",
	piiFIPIC:          "FI_PERSONAL_IDENTITY_CODE",
	piiTRNationalID:   "TR_NATIONAL_ID",
	piiKRRRN:          "KR_RRN",
	piiKRFRN:          "KR_FRN",
	piiSGNRIC:         "SG_NRIC_FIN",
	piiCASIN:          "CA_SIN",
	piiINAadhaar:      "IN_AADHAAR",
	piiINPAN:          "IN_PAN",
	piiAUTFN:          "AU_TFN",
	piiAUMedicare:     "AU_MEDICARE",
	piiZAID:           "ZA_ID_NUMBER",
	piiDETaxID:        "DE_TAX_ID",
	piiDEHealth:       "DE_HEALTH_INSURANCE",
	piiDESocial:       "DE_SOCIAL_SECURITY",
	piiTHTNIN:         "TH_TNIN",
}

// PIITypes returns the names of the supported personal-data types, sorted.
func PIITypes() []string {
	names := make([]string, 0, piiNumTypes)
	for _, n := range piiTypeNames {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

func piiTypeByName(name string) (piiType, bool) {
	for t, n := range piiTypeNames {
		if n == name {
			return piiType(t), true
		}
	}
	return 0, false
}

// PIIScanner finds personal data in text. Safe for concurrent use.
type PIIScanner struct {
	// on says which types to look for; never changed after NewPIIScanner.
	on [piiNumTypes]bool
}

// NewPIIScanner scans for the given types (nil or empty: every supported type); an
// unknown type is an error naming it and listing the supported ones.
func NewPIIScanner(types []string) (*PIIScanner, error) {
	s := &PIIScanner{}
	if len(types) == 0 {
		for t := range s.on {
			s.on[t] = true
		}
		return s, nil
	}
	for _, name := range types {
		t, ok := piiTypeByName(name)
		if !ok {
			return nil, fmt.Errorf("unknown personal-data type %q: want one of %s", name, strings.Join(PIITypes(), ", "))
		}
		s.on[t] = true
	}
	return s, nil
}

// Types returns the names of the types the scanner looks for, sorted.
func (s *PIIScanner) Types() []string {
	var names []string
	for t, on := range s.on {
		if on {
			names = append(names, piiTypeNames[t])
		}
	}
	slices.Sort(names)
	return names
}

// Scan returns the personal data in text: Sensor=SensorPII, Kind=type name, Span=byte
// range, sorted by position, non-overlapping (on overlap it keeps the more specific,
// better validated value, then the longer one).
func (s *PIIScanner) Scan(text string) []Finding {
	c := piiCollector{on: &s.on}
	if s.on[piiEmail] {
		piiFindEmails(text, &c)
	}
	if s.on[piiIP] {
		piiFindIPs(text, &c)
	}
	s.scanWords(text, &c)
	return c.findings()
}

// scanWords runs the matchers that start at the first character of a word: numbers,
// IBANs and national identifiers.
func (s *PIIScanner) scanWords(text string, c *piiCollector) {
	var g piiGroups
	numeric := s.on[piiCard] || s.on[piiPhone]
	for i := 0; i < len(text); {
		b := text[i]
		if !piiIsAlnum(b) || piiIsJSONEscape(text, i) {
			i++
			continue
		}
		j, digits := i, 0
		for j < len(text) && piiIsAlnum(text[j]) {
			if piiIsDigit(text[j]) {
				digits++
			}
			j++
		}
		if piiIsDigit(b) {
			if digits == j-i {
				piiParseGroups(text, i, &g)
				if numeric {
					if s.on[piiCard] {
						piiFindCard(text, &g, c)
					}
					if s.on[piiPhone] {
						piiFindPhone(text, i, &g, c)
					}
				}
				s.findNumericIDs(text, i, &g, c)
			}
			s.findDigitLedIDs(text, i, j, c)
		} else if digits > 0 || (j-i == 2 && j+1 < len(text) && text[j] == ' ' && piiIsDigit(text[j+1])) {
			if s.on[piiIBAN] {
				piiFindIBAN(text, i, c)
			}
			s.findLetterLedIDs(text, i, j, c)
		}
		i = j
	}
}

// piiCand is a candidate value before overlaps are resolved.
type piiCand struct {
	typ        piiType
	start, end int
	score      float64
}

// piiCollector gathers the candidates of one scan.
type piiCollector struct {
	on    *[piiNumTypes]bool
	cands []piiCand
}

func (c *piiCollector) want(t piiType) bool { return c.on[t] }

func (c *piiCollector) add(t piiType, start, end int, score float64) {
	if !c.on[t] || start >= end {
		return
	}
	c.cands = append(c.cands, piiCand{typ: t, start: start, end: end, score: min(score, 1)})
}

// piiBetter reports whether a should be kept rather than b when they overlap.
func piiBetter(a, b piiCand) bool {
	if a.score != b.score {
		return a.score > b.score
	}
	if la, lb := a.end-a.start, b.end-b.start; la != lb {
		return la > lb
	}
	return a.typ < b.typ
}

// findings resolves overlaps and returns the findings in order.
func (c *piiCollector) findings() []Finding {
	if len(c.cands) == 0 {
		return nil
	}
	slices.SortFunc(c.cands, func(a, b piiCand) int {
		if a.start != b.start {
			return a.start - b.start
		}
		return b.end - a.end
	})
	kept := c.cands[:0]
	for _, x := range c.cands {
		if n := len(kept); n > 0 && x.start < kept[n-1].end {
			// Kept values do not overlap and start in order, so x can only overlap
			// the last one.
			if piiBetter(x, kept[n-1]) {
				kept[n-1] = x
			}
			continue
		}
		kept = append(kept, x)
	}
	out := make([]Finding, len(kept))
	for i, x := range kept {
		out[i] = Finding{Sensor: SensorPII, Kind: piiTypeNames[x.typ], Span: Span{x.start, x.end}, Score: x.score}
	}
	return out
}

// Character classes and boundaries.

func piiIsDigit(b byte) bool  { return '0' <= b && b <= '9' }
func piiIsUpper(b byte) bool  { return 'A' <= b && b <= 'Z' }
func piiIsLower(b byte) bool  { return 'a' <= b && b <= 'z' }
func piiIsLetter(b byte) bool { return piiIsUpper(b) || piiIsLower(b) }
func piiIsAlnum(b byte) bool  { return piiIsDigit(b) || piiIsLetter(b) }

func piiUpper(b byte) byte {
	if piiIsLower(b) {
		return b - 'a' + 'A'
	}
	return b
}

// piiIsJSONEscape reports whether text[i] is the letter of a JSON escape such as \n,
// so that "\n415-555-0132" in raw JSON still starts a value after the escape.
func piiIsJSONEscape(text string, i int) bool {
	switch text[i] {
	case 'n', 't', 'r', 'b', 'f':
		return i > 0 && text[i-1] == '\\' && (i < 2 || text[i-2] != '\\')
	}
	return false
}

// piiLeftOK reports whether a value may start at i: it is not glued to a word or to a
// longer token ("ID-", "v.", "x_", "12/") on its left.
func piiLeftOK(text string, i int) bool {
	if i <= 0 {
		return true
	}
	p := text[i-1]
	if piiIsAlnum(p) {
		return piiIsJSONEscape(text, i-1)
	}
	if p == '_' {
		return false
	}
	if (p == '-' || p == '.') && i >= 2 && piiIsAlnum(text[i-2]) {
		return piiIsJSONEscape(text, i-2)
	}
	if p == '/' && i >= 2 && piiIsDigit(text[i-2]) {
		return false // "12/31/2023", "DE89/3704/0044"
	}
	return true
}

// piiRightOK reports whether a value may end at j: it is not followed by more of a word
// or by a joiner and more of a token ("-12", ".5").
func piiRightOK(text string, j int) bool {
	if j >= len(text) {
		return true
	}
	n := text[j]
	if piiIsAlnum(n) || n == '_' {
		return false
	}
	if (n == '-' || n == '.') && j+1 < len(text) && piiIsAlnum(text[j+1]) {
		return false
	}
	return true
}

// piiContextWindow is how many bytes before a value piiContext looks for a word.
const piiContextWindow = 48

// piiContext reports whether one of words (lower case ASCII, or any UTF-8) starts a word
// in the piiContextWindow bytes before start, matching ASCII letters in any case.
func piiContext(text string, start int, words []string) bool {
	lo := max(0, start-piiContextWindow)
	win := text[lo:start]
	for _, w := range words {
		if piiIndexWord(win, w) >= 0 {
			return true
		}
	}
	return false
}

// piiIndexWord finds word in s as a whole word (perhaps with a plural s), ignoring
// ASCII case; it returns the index or -1.
func piiIndexWord(s, word string) int {
	for i := 0; i+len(word) <= len(s); i++ {
		if i > 0 && piiIsLetter(s[i-1]) {
			continue
		}
		ok := true
		for k := 0; k < len(word); k++ {
			a := s[i+k]
			if piiIsUpper(a) {
				a += 'a' - 'A'
			}
			if a != word[k] {
				ok = false
				break
			}
		}
		if !ok {
			continue
		}
		e := i + len(word)
		if e < len(s) && (s[e] == 's' || s[e] == 'S') {
			e++
		}
		if e == len(s) || !piiIsLetter(s[e]) {
			return i
		}
	}
	return -1
}

// Groups of digits.

// piiMaxGroups is the most digit groups a number may have.
const piiMaxGroups = 8

// piiGroups are the digit groups of a number written with separators, such as
// "+1 (415) 555-0132" or "4012 8888 8888 1881": group k is text[start[k]:end[k]].
type piiGroups struct {
	n          int
	start, end [piiMaxGroups]int
	// more says that another group follows the last one parsed.
	more bool
}

func (g *piiGroups) len(k int) int { return g.end[k] - g.start[k] }

// sep returns the separator before group k (k >= 1).
func (g *piiGroups) sep(text string, k int) string { return text[g.end[k-1]:g.start[k]] }

// digits returns how many digits the first k groups hold.
func (g *piiGroups) digits(k int) int {
	n := 0
	for m := 0; m < k; m++ {
		n += g.len(m)
	}
	return n
}

// collect appends the digits of the first k groups to buf.
func (g *piiGroups) collect(text string, k int, buf []byte) []byte {
	for m := 0; m < k; m++ {
		buf = append(buf, text[g.start[m]:g.end[m]]...)
	}
	return buf
}

func piiIsSep(b byte) bool {
	switch b {
	case ' ', '-', '.', '/', ':', '(', ')':
		return true
	}
	return false
}

// piiParseGroups reads the digit groups from i: runs of digits separated by one
// separator character, or by a parenthesis and a space or dash ("(415) 555").
func piiParseGroups(text string, i int, g *piiGroups) {
	g.n, g.more = 0, false
	j := i
	for {
		s := j
		for j < len(text) && piiIsDigit(text[j]) {
			j++
		}
		g.start[g.n], g.end[g.n] = s, j
		g.n++
		k := j
		for k < len(text) && k-j < 2 && piiIsSep(text[k]) {
			k++
		}
		if k == j || k >= len(text) || !piiIsDigit(text[k]) || !piiSepOK(text[j:k]) {
			return
		}
		if g.n == piiMaxGroups {
			g.more = true
			return
		}
		j = k
	}
}

func piiSepOK(sep string) bool {
	if len(sep) == 1 {
		return true
	}
	a, b := sep[0], sep[1]
	return (a == ')' && (b == ' ' || b == '-')) || ((a == ' ' || a == '-') && b == '(')
}

// piiStopOK reports whether a value made of the first k groups may end there: the next
// group is separated by a single space (a new value may start there), or nothing that
// continues the token follows.
func piiStopOK(text string, g *piiGroups, k int) bool {
	if k < g.n {
		return g.sep(text, k) == " "
	}
	return !g.more && piiRightOK(text, g.end[k-1])
}

// piiUniformSep reports whether groups 1..k-1 are all separated by the same single
// character, one of allowed, and returns it (0 when k is 1).
func piiUniformSep(text string, g *piiGroups, k int, allowed string) (byte, bool) {
	if k > g.n {
		return 0, false
	}
	var sep byte
	for m := 1; m < k; m++ {
		s := g.sep(text, m)
		if len(s) != 1 || strings.IndexByte(allowed, s[0]) < 0 || (sep != 0 && s[0] != sep) {
			return 0, false
		}
		sep = s[0]
	}
	return sep, true
}

// piiShape reports whether the number has at least len(lens) groups of those lengths,
// uniformly separated by one of allowed, ending cleanly after them.
func piiShape(text string, g *piiGroups, allowed string, lens ...int) bool {
	if g.n < len(lens) {
		return false
	}
	for m, l := range lens {
		if g.len(m) != l {
			return false
		}
	}
	_, ok := piiUniformSep(text, g, len(lens), allowed)
	return ok && piiStopOK(text, g, len(lens))
}

// E-mail addresses.

// piiMaxLocal and piiMaxDomain bound the parts of an address (RFC 5321).
const (
	piiMaxLocal  = 64
	piiMaxDomain = 253
)

func piiFindEmails(text string, c *piiCollector) {
	for off := 0; off < len(text); {
		k := strings.IndexByte(text[off:], '@')
		if k < 0 {
			return
		}
		at := off + k
		off = at + 1
		if start, end, ok := piiEmailAt(text, at); ok {
			c.add(piiEmail, start, end, 0.95)
			off = end
		}
	}
}

func piiIsLocalChar(b byte) bool {
	return piiIsAlnum(b) || b == '.' || b == '_' || b == '%' || b == '+' || b == '-' || b == '\''
}

// piiEmailAt reads the address around the '@' at text[at]. The local part is letters
// and digits of any script and . _ % + - ' (not leading); the domain is at least two
// labels of letters, digits and hyphens, the last a top-level domain.
func piiEmailAt(text string, at int) (start, end int, ok bool) {
	s := at
	for s > 0 {
		if b := text[s-1]; b < utf8.RuneSelf {
			if !piiIsLocalChar(b) {
				break
			}
			s--
		} else {
			r, size := utf8.DecodeLastRuneInString(text[:s])
			if !unicode.IsLetter(r) && !unicode.IsDigit(r) && !unicode.Is(unicode.Mn, r) {
				break
			}
			s -= size
		}
		if at-s > piiMaxLocal {
			return 0, 0, false
		}
	}
	if s < at && piiIsJSONEscape(text, s) {
		s++
	}
	for s < at && (text[s] == '.' || text[s] == '\'') {
		s++
	}
	if s == at || text[at-1] == '.' || strings.Contains(text[s:at], "..") {
		return 0, 0, false
	}
	// The domain: labels of letters, digits and hyphens (any script), split by dots.
	e := at + 1
	for e < len(text) {
		b := text[e]
		if piiIsAlnum(b) || b == '-' || b == '.' {
			e++
		} else if b >= utf8.RuneSelf {
			r, size := utf8.DecodeRuneInString(text[e:])
			if !unicode.IsLetter(r) && !unicode.IsDigit(r) && !unicode.Is(unicode.Mn, r) {
				break
			}
			e += size
		} else {
			break
		}
		if e-at-1 > piiMaxDomain+1 {
			return 0, 0, false
		}
	}
	for e > at+1 && text[e-1] == '.' {
		e--
	}
	domain := text[at+1 : e]
	if len(domain) == 0 || len(domain) > piiMaxDomain {
		return 0, 0, false
	}
	labels := 0
	var first, last string
	for rest := domain; ; {
		label, tail, more := strings.Cut(rest, ".")
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return 0, 0, false
		}
		if labels == 0 {
			first = label
		}
		labels++
		last = label
		if !more {
			break
		}
		rest = tail
	}
	if labels < 2 || !piiIsTLD(last) {
		return 0, 0, false
	}
	// "icon@2x.png": an image name, not an address.
	if labels == 2 && len(first) >= 2 && first[len(first)-1] == 'x' && strings.Trim(first[:len(first)-1], "0123456789") == "" {
		return 0, 0, false
	}
	return s, e, true
}

// piiIsTLD reports whether label can be a top-level domain: letters, or an
// internationalised name in its ASCII form ("xn--p1ai").
func piiIsTLD(label string) bool {
	if strings.HasPrefix(label, "xn--") {
		return len(label) > 4
	}
	if len(label) < 2 {
		return false
	}
	for _, r := range label {
		if !unicode.IsLetter(r) {
			return false
		}
	}
	return true
}

// IP addresses.

func piiIsIPChar(b byte) bool {
	return piiIsDigit(b) || ('a' <= b && b <= 'f') || ('A' <= b && b <= 'F') || b == ':' || b == '.'
}

// piiFindIPs looks at each maximal run of hexadecimal digits, colons and dots that
// holds a digit and either a colon or three dots.
func piiFindIPs(text string, c *piiCollector) {
	for i := 0; i < len(text); {
		if !piiIsIPChar(text[i]) {
			i++
			continue
		}
		j, colons, dots, digits := i, 0, 0, 0
		for j < len(text) && piiIsIPChar(text[j]) {
			switch b := text[j]; {
			case b == ':':
				colons++
			case b == '.':
				dots++
			case piiIsDigit(b):
				digits++
			}
			j++
		}
		if digits > 0 && (colons >= 2 || dots >= 3) {
			piiIPRun(text, i, j, colons > 0, c)
		}
		i = j
	}
}

// piiIPRun examines the run text[rs:re].
func piiIPRun(text string, rs, re int, hasColon bool, c *piiCollector) {
	if re < len(text) && (piiIsAlnum(text[re]) || text[re] == '_') {
		return // glued to a word on the right: "fe80::1text"
	}
	s, e := rs, re
	for e > s && text[e-1] == '.' {
		e--
	}
	if e-s >= 2 && text[e-1] == ':' && text[e-2] != ':' {
		e--
	}
	leftOK := piiLeftOK(text, s)
	if !hasColon {
		if leftOK {
			piiIPv4At(text, s, e, e == re, c)
		}
		return
	}
	if leftOK && piiIPv6OK(text[s:e]) {
		end := e
		if e == re {
			end = piiCIDR(text, e, 128)
		}
		c.add(piiIP, s, end, 0.9)
		return
	}
	// Not an IPv6 address: an IPv4 address with a port ("10.0.0.1:8080"), or after a
	// label ("IP:10.0.0.1").
	if f := strings.IndexByte(text[s:e], ':'); f > 0 && leftOK && piiIPv4At(text, s, s+f, false, c) {
		return
	}
	if l := strings.LastIndexByte(text[s:e], ':'); l >= 0 && s+l+1 < e {
		piiIPv4At(text, s+l+1, e, e == re, c)
	}
}

// piiMaxIPv6 is the longest IPv6 address in text form (with an embedded IPv4 address).
const piiMaxIPv6 = len("ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255")

// piiIPv6OK reports whether a is an IPv6 address as people write them: it parses,
// holds a decimal digit (so "dead::beef" or "a::b" in code are not taken) and is not
// a hardware address of two-digit groups.
func piiIPv6OK(a string) bool {
	if len(a) > piiMaxIPv6 || strings.Count(a, ":") < 2 || !strings.ContainsAny(a, "0123456789") {
		return false
	}
	ip, err := netip.ParseAddr(a)
	if err != nil || !ip.Is6() {
		return false
	}
	if !strings.Contains(a, "::") {
		mac := true
		for _, grp := range strings.Split(a, ":") {
			if len(grp) != 2 {
				mac = false
				break
			}
		}
		if mac {
			return false
		}
	}
	return true
}

// piiIPv4At looks for a dotted IPv4 address in text[s:e] and reports whether it found
// one. A run of five numbers whose first four make an address counts only when it does
// not look like a version number (every part a single digit); longer runs never count.
func piiIPv4At(text string, s, e int, cidr bool, c *piiCollector) bool {
	var parts [6]int // end of each part
	n, p := 0, s
	for p < e {
		q := p
		for q < e && text[q] != '.' {
			q++
		}
		if n == len(parts) {
			return false
		}
		parts[n] = q
		n++
		p = q + 1
	}
	if n < 4 || n > 5 || text[e-1] == '.' {
		return false
	}
	long := false
	ps := s
	for k := 0; k < 4; k++ {
		part := text[ps:parts[k]]
		if !piiOctet(part) {
			return false
		}
		long = long || len(part) > 1
		ps = parts[k] + 1
	}
	end := parts[3]
	if n == 5 {
		last := text[parts[3]+1 : parts[4]]
		if !long || len(last) == 0 || len(last) > 3 || strings.Trim(last, "0123456789") != "" {
			return false
		}
		cidr = false
	}
	if piiAfterWord(text, s, "version", "ver", "v", "release", "build", "rev", "revision", "firmware") {
		return false
	}
	if cidr {
		end = piiCIDR(text, end, 32)
	}
	c.add(piiIP, s, end, 0.85)
	return true
}

func piiOctet(p string) bool {
	if len(p) == 0 || len(p) > 3 || (len(p) > 1 && p[0] == '0') {
		return false
	}
	v := 0
	for i := 0; i < len(p); i++ {
		if !piiIsDigit(p[i]) {
			return false
		}
		v = v*10 + int(p[i]-'0')
	}
	return v <= 255
}

// piiCIDR extends an address ending at e by a prefix length "/n" (n <= maxBits).
func piiCIDR(text string, e, maxBits int) int {
	if e >= len(text) || text[e] != '/' {
		return e
	}
	j, v := e+1, 0
	for j < len(text) && piiIsDigit(text[j]) && j-e <= 3 {
		v = v*10 + int(text[j]-'0')
		j++
	}
	if j == e+1 || (j-e-1 > 1 && text[e+1] == '0') || v > maxBits || (j < len(text) && (piiIsAlnum(text[j]) || text[j] == '/')) {
		return e
	}
	return j
}

// piiAfterWord reports whether the word just before s (skipping spaces, colons and
// equals signs) is one of words, ignoring ASCII case.
func piiAfterWord(text string, s int, words ...string) bool {
	j := s
	for j > 0 && (text[j-1] == ' ' || text[j-1] == ':' || text[j-1] == '=') && s-j < 4 {
		j--
	}
	k := j
	for k > 0 && piiIsLetter(text[k-1]) && j-k < 16 {
		k--
	}
	if k == j {
		return false
	}
	w := text[k:j]
	for _, x := range words {
		if strings.EqualFold(w, x) {
			return true
		}
	}
	return false
}

// Phone numbers.

// piiPhoneWords name a phone number nearby; "number" counts only when no word naming
// another kind of number is there too.
var (
	piiPhoneWords    = []string{"phone", "tel", "telephone", "mobile", "cell", "call", "fax", "whatsapp", "sms", "contact", "telefon", "telefono", "tlf"}
	piiNumberWords   = []string{"number", "numero", "num", "no"}
	piiNotPhoneWords = []string{"order", "invoice", "account", "tracking", "reference", "ref", "serial", "card", "id", "customer", "transaction", "ticket", "case", "item", "part", "model", "version", "routing", "policy", "confirmation", "booking", "po", "passport", "tax", "license", "licence", "social", "insurance", "member", "patient", "employee", "student", "registration"}
)

func piiPhoneContext(text string, start int) bool {
	if piiContext(text, start, piiPhoneWords) {
		return true
	}
	return piiContext(text, start, piiNumberWords) && !piiContext(text, start, piiNotPhoneWords)
}

// piiFindPhone looks for a phone number whose first digit group starts at i:
// international ("+CC ..."), North American ("(415) 555-0132", "415-555-0132"),
// national with a trunk prefix ("030 1234567", "090-1234-5678") or an area code in
// parentheses ("(11) 98456-5666"), or a bare national number next to a word such as
// "phone". Dates, versions, prices and runs of digits without such cues are not taken.
func piiFindPhone(text string, i int, g *piiGroups, c *piiCollector) {
	var pre byte
	if i > 0 {
		pre = text[i-1]
	}
	switch {
	case pre == '+':
		if piiLeftOK(text, i-1) {
			piiPhoneIntl(text, i, g, c, false)
		}
	case pre == '(' && g.n >= 2 && strings.HasPrefix(g.sep(text, 1), ")"):
		if piiLeftOK(text, i-1) {
			piiPhoneParen(text, i, g, c)
		}
	case piiLeftOK(text, i) && !(pre == ' ' && i >= 2 && piiIsDigit(text[i-2])):
		// A national number does not start right after another group of digits: in
		// "0044 0532 0130 01" the groups belong to something longer.
		piiPhoneNational(text, i, g, c)
	}
}

// piiCallingCodeLen returns the length of the country calling code that starts d, or
// 0 if no code starts it (calling codes form a prefix code).
func piiCallingCodeLen(d string) int {
	if d == "" || d[0] == '0' {
		return 0
	}
	if d[0] == '1' || d[0] == '7' {
		return 1
	}
	if len(d) < 2 {
		return 0
	}
	switch d[:2] {
	case "20", "27", "30", "31", "32", "33", "34", "36", "39", "40", "41", "43", "44", "45", "46", "47", "48", "49",
		"51", "52", "53", "54", "55", "56", "57", "58", "60", "61", "62", "63", "64", "65", "66",
		"81", "82", "84", "86", "90", "91", "92", "93", "94", "95", "98":
		return 2
	case "21", "22", "23", "24", "25", "26", "29", "35", "37", "38", "42", "50", "59",
		"67", "68", "69", "80", "85", "87", "88", "96", "97", "99":
		if len(d) >= 3 {
			return 3
		}
	}
	return 0
}

// piiPhoneSeps checks the separators of the first k groups: spaces, dashes, dots (if
// allowed) or slashes, and balanced parentheses; open says a parenthesis before the
// first group is open.
func piiPhoneSeps(text string, g *piiGroups, k int, dots, open bool) bool {
	for m := 1; m < k; m++ {
		for _, b := range []byte(g.sep(text, m)) {
			switch b {
			case '(':
				if open {
					return false
				}
				open = true
			case ')':
				if !open {
					return false
				}
				open = false
			case '.':
				if !dots {
					return false
				}
			case ':':
				return false
			}
		}
	}
	return !open
}

// piiPhoneIntl matches an international number whose country code starts group 0
// (after a '+' at i-1, or after the international prefix 00 when intl00 is set, which
// then starts group 0 and is followed by the code alone: "0044 20 7946 0321").
func piiPhoneIntl(text string, i int, g *piiGroups, c *piiCollector, intl00 bool) {
	g0 := text[g.start[0]:g.end[0]]
	start, skip := i-1, 0
	if intl00 {
		start, skip = i, 2
		g0 = g0[2:]
	}
	cc := piiCallingCodeLen(g0)
	if cc == 0 || cc > len(g0) || (intl00 && (cc != len(g0) || g.n < 3)) {
		return
	}
	for k := g.n; k >= 1; k-- {
		total := g.digits(k) - skip
		end, ok := piiPhoneEnd(text, g, k)
		if !ok || total < 8 || total > 15 || total-cc < 6 || !piiPhoneSeps(text, g, k, true, false) {
			continue
		}
		singles := 0 // one-digit groups other than a trunk "(0)"
		for m := 1; m < k; m++ {
			if g.len(m) == 1 && text[g.start[m]] != '0' {
				singles++
			}
		}
		if singles > 1 {
			continue
		}
		c.add(piiPhone, start, end, 0.8)
		return
	}
}

// piiNANP matches a North American number from group m: "415-555-0132", "415.555.0132",
// "415 555 0132", or with the area code in parentheses ("(415) 555-0132",
// "(415)5550132") when paren is set. Written with spaces the area code and exchange
// must start with 2-9, as the numbering plan has them; with dashes, dots or
// parentheses the shape is telling enough, and made-up numbers ("555-123-4567") are
// still phone numbers. It returns how many groups it used and where the number ends,
// or 0.
func piiNANP(text string, g *piiGroups, m int, paren bool) (int, int) {
	if g.n < m+2 || g.len(m) != 3 {
		return 0, 0
	}
	k := 0
	if paren {
		if s := g.sep(text, m+1); s != ")" && s != ") " && s != ")-" {
			return 0, 0
		}
		switch {
		case g.len(m+1) == 7:
			k = m + 2
		case g.n >= m+3 && g.len(m+1) == 3 && g.len(m+2) == 4:
			if s := g.sep(text, m+2); s == "-" || s == " " || s == "." {
				k = m + 3
			}
		}
	} else if g.n >= m+3 && g.len(m+1) == 3 && g.len(m+2) == 4 {
		s := g.sep(text, m+1)
		if s == g.sep(text, m+2) && (s == "-" || s == "." || (s == " " && text[g.start[m]] >= '2' && text[g.start[m+1]] >= '2')) {
			k = m + 3
		}
	}
	if k == 0 {
		return 0, 0
	}
	end, ok := piiPhoneEnd(text, g, k)
	if !ok {
		return 0, 0
	}
	return k, end
}

// piiPhoneEnd reports where a phone number made of the first k groups ends, taking an
// extension with it ("x123", " ext. 123"), and whether it may end there.
func piiPhoneEnd(text string, g *piiGroups, k int) (int, bool) {
	end := g.end[k-1]
	if k < g.n {
		return end, g.sep(text, k) == " "
	}
	if g.more {
		return 0, false
	}
	if e := piiPhoneExt(text, end); e > end {
		return e, true
	}
	return end, piiRightOK(text, end)
}

// piiPhoneExt returns the end of an extension written after a phone number ending at
// end, or end.
func piiPhoneExt(text string, end int) int {
	p := end
	if p < len(text) && text[p] == ' ' {
		p++
	}
	rest := text[p:]
	switch {
	case len(rest) >= 9 && strings.EqualFold(rest[:9], "extension"):
		p += 9
	case len(rest) >= 3 && strings.EqualFold(rest[:3], "ext"):
		p += 3
		if p < len(text) && text[p] == '.' {
			p++
		}
	case len(rest) >= 1 && (rest[0] == 'x' || rest[0] == 'X'):
		p++
	default:
		return end
	}
	if p < len(text) && text[p] == ' ' && p > end+1 {
		p++
	}
	d := p
	for p < len(text) && piiIsDigit(text[p]) && p-d < 6 {
		p++
	}
	if p == d || !piiRightOK(text, p) {
		return end
	}
	return p
}

func piiPhoneParen(text string, i int, g *piiGroups, c *piiCollector) {
	if k, end := piiNANP(text, g, 0, true); k > 0 {
		c.add(piiPhone, i-1, end, 0.7)
		return
	}
	// Another country's area code in parentheses: "(11) 98456-5666", "(020) 7946 0958".
	if l := g.len(0); l < 2 || l > 5 {
		return
	}
	for k := g.n; k >= 2; k-- {
		total := g.digits(k)
		end, ok := piiPhoneEnd(text, g, k)
		if !ok || total < 9 || total > 12 || !piiPhoneSeps(text, g, k, false, true) {
			continue
		}
		if _, ok := piiUniformSepFrom(text, g, 2, k, " -"); !ok || !piiGroupsAtLeast(g, 1, k, 2) {
			continue
		}
		c.add(piiPhone, i-1, end, 0.6)
		return
	}
}

// piiUniformSepFrom is piiUniformSep for the separators before groups from..k-1.
func piiUniformSepFrom(text string, g *piiGroups, from, k int, allowed string) (byte, bool) {
	var sep byte
	for m := from; m < k; m++ {
		s := g.sep(text, m)
		if len(s) != 1 || strings.IndexByte(allowed, s[0]) < 0 || (sep != 0 && s[0] != sep) {
			return 0, false
		}
		sep = s[0]
	}
	return sep, true
}

// piiGroupsAtLeast reports whether groups from..k-1 have at least l digits each.
func piiGroupsAtLeast(g *piiGroups, from, k, l int) bool {
	for m := from; m < k; m++ {
		if g.len(m) < l {
			return false
		}
	}
	return true
}

// piiDateLike reports whether the first groups read as a date (d-m-yyyy, yyyy-m-d).
func piiDateLike(g *piiGroups, k int) bool {
	if k < 3 {
		return false
	}
	l0, l1, l2 := g.len(0), g.len(1), g.len(2)
	return (l0 <= 2 && l1 <= 2 && l2 == 4) || (l0 == 4 && l1 <= 2 && l2 <= 2)
}

func piiPhoneNational(text string, i int, g *piiGroups, c *piiCollector) {
	if k, end := piiNANP(text, g, 0, false); k > 0 {
		c.add(piiPhone, i, end, 0.7)
		return
	}
	if g.n >= 2 && g.len(0) == 1 && text[i] == '1' {
		// "1-415-555-0132", "1 (415) 555-0132"
		switch s := g.sep(text, 1); s {
		case "-", " ", ".":
			if k, end := piiNANP(text, g, 1, false); k > 0 && g.sep(text, 2) == s {
				c.add(piiPhone, i, end, 0.7)
				return
			}
		case " (", "-(":
			if k, end := piiNANP(text, g, 1, true); k > 0 {
				c.add(piiPhone, i, end, 0.7)
				return
			}
		}
	}
	if text[i] == '0' && g.n >= 2 {
		if l := g.len(0); l >= 3 && l <= 5 && text[i+1] == '0' {
			piiPhoneIntl(text, i, g, c, true)
			return
		}
		piiPhoneTrunk(text, i, g, c)
		return
	}
	if end, ok := piiPhoneEnd(text, g, 1); ok && piiBarePhone(text[i:g.end[0]]) && piiPhoneContext(text, i) {
		c.add(piiPhone, i, end, 0.5)
	}
}

// piiPhoneTrunk matches a national number written with its trunk prefix 0 and groups:
// "030 1234567", "090-1234-5678", "0 (532) 123 45 67", "01 23 45 67 89".
func piiPhoneTrunk(text string, i int, g *piiGroups, c *piiCollector) {
	l0 := g.len(0)
	areaLen := l0
	second := byte(0)
	if l0 == 1 {
		// A lone trunk digit goes with an area code in parentheses: "0 (532) 1234567".
		if g.sep(text, 1) != " (" {
			return
		}
		areaLen = g.len(1)
		second = text[g.start[1]]
	} else {
		second = text[i+1]
	}
	if areaLen < 2 || areaLen > 5 || second == '0' {
		return
	}
	for k := g.n; k >= 2; k-- {
		total := g.digits(k)
		end, ok := piiPhoneEnd(text, g, k)
		if !ok || total < 9 || total > 12 || piiDateLike(g, k) || !piiPhoneSeps(text, g, k, false, false) {
			continue
		}
		from := 1
		if l0 == 1 {
			from = 2
		}
		if !piiGroupsAtLeast(g, from, k, 2) {
			continue
		}
		slash := false
		for m := 1; m < k; m++ {
			if strings.IndexByte(g.sep(text, m), '/') >= 0 && m > 1 {
				slash = true
			}
		}
		if slash {
			continue
		}
		c.add(piiPhone, i, end, 0.6)
		return
	}
}

// piiBarePhone reports whether an unseparated run of digits is shaped like a national
// phone number: North American (10 digits, or 11 with the leading 1), a Chinese
// mobile, or 10 or 11 digits with a trunk prefix 0.
func piiBarePhone(d string) bool {
	nanp := func(d string) bool { return len(d) == 10 && d[0] >= '2' && d[3] >= '2' }
	switch len(d) {
	case 10:
		return nanp(d) || (d[0] == '0' && d[1] != '0')
	case 11:
		return (d[0] == '1' && (nanp(d[1:]) || d[1] >= '3')) || (d[0] == '0' && d[1] != '0')
	}
	return false
}
