package inspect

import "strings"

// National identifiers, IBANs and payment cards: identifiers with a structure and,
// mostly, a checksum.
//
// Each national-identifier matcher checks the identifier's structure and, where it has
// one, its checksum or encoded date. Identifiers whose checksum lets about one random
// number in ten through (CA_SIN, AU_TFN, AU_MEDICARE, UK_NHS, IN_AADHAAR, SE_PERSONNUMMER
// in ten digits, PL_PESEL, TH_TNIN) or that have none (US_SSN, US_ITIN) are taken bare,
// as a plain run of digits, only next to a word naming them; written in their usual
// groups they are taken anyway, with a lower score unless such a word is near.

// Context words naming an identifier, lower case.
var (
	piiSSNWords      = []string{"ssn", "social security", "social sec"}
	piiITINWords     = []string{"itin", "taxpayer", "tax id", "tin"}
	piiSINWords      = []string{"sin", "social insurance", "nas", "assurance sociale"}
	piiTFNWords      = []string{"tfn", "tax file"}
	piiMedicareWords = []string{"medicare"}
	piiNHSWords      = []string{"nhs", "national health", "health service"}
	piiAadhaarWords  = []string{"aadhaar", "aadhar", "uidai", "uid"}
	piiPESELWords    = []string{"pesel"}
	piiSEWords       = []string{"personnummer", "pnr", "personal identity", "samordningsnummer", "person number"}
	piiTHWords       = []string{"thai", "tnin", "national id", "citizen id", "ประชาชน", "ประจำตัว"}
	piiIDWords       = []string{"id", "identity", "identification", "national", "citizen", "kimlik", "tckn", "steuer", "idnr", "tax", "rrn", "frn", "registration"}
)

// piiCtxScore raises a base score when a context word is near.
func piiCtxScore(text string, start int, base float64, words []string) float64 {
	if piiContext(text, start, words) {
		return base + 0.3
	}
	return base
}

// findNumericIDs looks for identifiers written only with digits and separators, from
// the groups starting at i.
func (s *PIIScanner) findNumericIDs(text string, i int, g *piiGroups, c *piiCollector) {
	if !piiLeftOK(text, i) {
		return
	}
	var buf [24]byte
	switch g.len(0) {
	case 1:
		if c.want(piiTHTNIN) && piiShape(text, g, "- ", 1, 4, 5, 2, 1) {
			if d := g.collect(text, 5, buf[:0]); piiTHValid(d) {
				c.add(piiTHTNIN, i, g.end[4], 0.85)
			}
		}
	case 2:
		if c.want(piiDETaxID) && piiShape(text, g, " ", 2, 3, 3, 3) {
			if d := g.collect(text, 4, buf[:0]); piiDETaxValid(d) {
				c.add(piiDETaxID, i, g.end[3], 0.85)
			}
		}
	case 3:
		if piiShape(text, g, "- .", 3, 2, 4) {
			d := g.collect(text, 3, buf[:0])
			sep := g.sep(text, 1)
			if c.want(piiUSSSN) && piiSSNValid(d) {
				c.add(piiUSSSN, i, g.end[2], piiCtxScore(text, i, 0.65, piiSSNWords))
			}
			if c.want(piiUSITIN) && sep != "." && piiITINValid(d) {
				c.add(piiUSITIN, i, g.end[2], piiCtxScore(text, i, 0.65, piiITINWords))
			}
		}
		// Three groups of three digits separated by spaces are as often a list of
		// numbers ("100 200 300") as an identifier: they need a word naming it.
		if piiShape(text, g, " -", 3, 3, 3) {
			d := g.collect(text, 3, buf[:0])
			dash := g.sep(text, 1) == "-"
			if c.want(piiCASIN) && piiSINValid(d) && (dash || piiContext(text, i, piiSINWords)) {
				c.add(piiCASIN, i, g.end[2], piiCtxScore(text, i, 0.5, piiSINWords))
			}
			if c.want(piiAUTFN) && !dash && piiTFNValid(d) && piiContext(text, i, piiTFNWords) {
				c.add(piiAUTFN, i, g.end[2], 0.8)
			}
		}
		if c.want(piiUKNHS) && piiShape(text, g, " -", 3, 3, 4) {
			if d := g.collect(text, 3, buf[:0]); piiNHSValid(d) {
				c.add(piiUKNHS, i, g.end[2], piiCtxScore(text, i, 0.5, piiNHSWords))
			}
		}
	case 4:
		// Aadhaar numbers are printed in groups of four separated by spaces; other
		// separators make them look like any other grouped number, so they need a word.
		if c.want(piiINAadhaar) && piiShape(text, g, " -:", 4, 4, 4) {
			d := g.collect(text, 3, buf[:0])
			ctx := piiContext(text, i, piiAadhaarWords)
			if piiAadhaarValid(d) && (ctx || (g.sep(text, 1) == " " && !piiYears(text, g, 3))) {
				c.add(piiINAadhaar, i, g.end[2], piiCtxScore(text, i, 0.6, piiAadhaarWords))
			}
		}
		if c.want(piiAUMedicare) && piiShape(text, g, " ", 4, 5, 1) {
			if d := g.collect(text, 3, buf[:0]); piiMedicareValid(d) {
				c.add(piiAUMedicare, i, g.end[2], piiCtxScore(text, i, 0.6, piiMedicareWords))
			}
		}
	case 6:
		if piiShape(text, g, "-", 6, 7) {
			piiKR(text, i, g.end[1], g.collect(text, 2, buf[:0]), true, c)
		}
		if c.want(piiSEPersonnummer) && piiShape(text, g, "-", 6, 4) {
			if d := g.collect(text, 2, buf[:0]); piiSEValid(d, false) {
				c.add(piiSEPersonnummer, i, g.end[1], 0.85)
			}
		}
	case 8:
		if c.want(piiSEPersonnummer) && piiShape(text, g, "-", 8, 4) {
			if d := g.collect(text, 2, buf[:0]); piiSEValid(d, true) {
				c.add(piiSEPersonnummer, i, g.end[1], 0.85)
			}
		}
	}
	if !piiStopOK(text, g, 1) {
		return
	}
	// A bare run of digits.
	d := g.collect(text, 1, buf[:0])
	end := g.end[0]
	switch len(d) {
	case 8:
		if c.want(piiAUTFN) && piiTFNValid(d) && piiContext(text, i, piiTFNWords) {
			c.add(piiAUTFN, i, end, 0.8)
		}
	case 9:
		if c.want(piiUSSSN) && piiSSNValid(d) && piiContext(text, i, piiSSNWords) {
			c.add(piiUSSSN, i, end, 0.8)
		}
		if c.want(piiUSITIN) && piiITINValid(d) && piiContext(text, i, piiITINWords) {
			c.add(piiUSITIN, i, end, 0.8)
		}
		if c.want(piiCASIN) && piiSINValid(d) && piiContext(text, i, piiSINWords) {
			c.add(piiCASIN, i, end, 0.8)
		}
		if c.want(piiAUTFN) && piiTFNValid(d) && piiContext(text, i, piiTFNWords) {
			c.add(piiAUTFN, i, end, 0.8)
		}
	case 10:
		if c.want(piiUKNHS) && piiNHSValid(d) && piiContext(text, i, piiNHSWords) {
			c.add(piiUKNHS, i, end, 0.8)
		}
		if c.want(piiAUMedicare) && piiMedicareValid(d) && piiContext(text, i, piiMedicareWords) {
			c.add(piiAUMedicare, i, end, 0.8)
		}
		if c.want(piiSEPersonnummer) && piiSEValid(d, false) && piiContext(text, i, piiSEWords) {
			c.add(piiSEPersonnummer, i, end, 0.8)
		}
	case 11:
		if c.want(piiTRNationalID) && piiTRValid(d) {
			c.add(piiTRNationalID, i, end, piiCtxScore(text, i, 0.6, piiIDWords))
		}
		if c.want(piiDETaxID) && piiDETaxValid(d) {
			c.add(piiDETaxID, i, end, piiCtxScore(text, i, 0.6, piiIDWords))
		}
		if c.want(piiPLPESEL) && piiPESELValid(d) && piiContext(text, i, piiPESELWords) {
			c.add(piiPLPESEL, i, end, 0.9)
		}
	case 12:
		if c.want(piiINAadhaar) && piiAadhaarValid(d) && piiContext(text, i, piiAadhaarWords) {
			c.add(piiINAadhaar, i, end, 0.8)
		}
		if c.want(piiSEPersonnummer) && piiSEValid(d, true) {
			c.add(piiSEPersonnummer, i, end, 0.8)
		}
	case 13:
		if c.want(piiZAID) && piiZAValid(d) {
			c.add(piiZAID, i, end, 0.85)
		}
		piiKR(text, i, end, d, false, c)
		if c.want(piiTHTNIN) && piiTHValid(d) && piiContext(text, i, piiTHWords) {
			c.add(piiTHTNIN, i, end, 0.9)
		}
	}
}

// piiYears reports whether the first k groups are all years (1900-2099): "2019 2020".
func piiYears(text string, g *piiGroups, k int) bool {
	for m := 0; m < k; m++ {
		if y := text[g.start[m]:g.end[m]]; len(y) != 4 || (y[:2] != "19" && y[:2] != "20") {
			return false
		}
	}
	return true
}

// piiKR matches a Korean resident or foreign registration number (YYMMDD-GNNNNNC):
// the date must be valid for the century the gender digit G gives. Written with its
// dash it counts without a valid check digit (numbers issued since October 2020 have
// none); bare it needs one.
func piiKR(text string, start, end int, d []byte, dashed bool, c *piiCollector) {
	frn, ok := piiKRDate(d)
	if !ok {
		return
	}
	sum := 0
	for k, w := range [12]int{2, 3, 4, 5, 6, 7, 8, 9, 2, 3, 4, 5} {
		sum += int(d[k]-'0') * w
	}
	t, check := piiKRRRN, (11-sum%11)%10
	if frn {
		t, check = piiKRFRN, (13-sum%11)%10
	}
	valid := int(d[12]-'0') == check
	switch {
	case valid:
		c.add(t, start, end, 0.85)
	case dashed:
		c.add(t, start, end, 0.6)
	}
}

func piiKRDate(d []byte) (frn, ok bool) {
	century := 0
	switch d[6] {
	case '1', '2', '5', '6':
		century = 1900
	case '3', '4', '7', '8':
		century = 2000
	case '9', '0':
		century = 1800
	}
	y, m, day := piiNum(d[0:2]), piiNum(d[2:4]), piiNum(d[4:6])
	return d[6] >= '5' && d[6] <= '8', piiValidDate(century+y, m, day)
}

// findDigitLedIDs looks for identifiers that start with a digit and hold letters or
// other separators: ES_NIF, FI_PERSONAL_IDENTITY_CODE, US_MBI, DE_SOCIAL_SECURITY and
// SE_PERSONNUMMER with a '+' (born over a hundred years ago). [i, j) is the word.
func (s *PIIScanner) findDigitLedIDs(text string, i, j int, c *piiCollector) {
	if !piiLeftOK(text, i) {
		return
	}
	w := text[i:j]
	nd := 0
	for nd < len(w) && piiIsDigit(w[nd]) {
		nd++
	}
	// ES_NIF: 7 or 8 digits and a check letter, perhaps after a dash.
	if c.want(piiESNIF) && (nd == 7 || nd == 8) {
		if len(w) == nd+1 && piiIsLetter(w[nd]) && piiRightOK(text, j) && piiNIFValid(w[:nd], w[nd]) {
			c.add(piiESNIF, i, j, 0.85)
		} else if len(w) == nd && j+2 <= len(text) && text[j] == '-' && piiIsLetter(text[j+1]) && piiRightOK(text, j+2) && piiNIFValid(w, text[j+1]) {
			c.add(piiESNIF, i, j+2, 0.85)
		}
	}
	// FI_PERSONAL_IDENTITY_CODE: DDMMYY, a century sign, NNN and a check character.
	if c.want(piiFIPIC) && nd >= 6 {
		switch {
		case len(w) == 11 && nd == 6 && piiRightOK(text, j):
			if piiFIValid(w) {
				c.add(piiFIPIC, i, j, 0.95)
			}
		case len(w) == 6 && j+5 <= len(text) && (text[j] == '-' || text[j] == '+'):
			if end := j + 5; (end == len(text) || !piiIsAlnum(text[end])) && piiRightOK(text, end) && piiFIValid(text[i:end]) {
				c.add(piiFIPIC, i, end, 0.95)
			}
		}
	}
	// SE_PERSONNUMMER with a plus: YYMMDD+NNNC.
	if c.want(piiSEPersonnummer) && len(w) == 6 && nd == 6 && j+5 <= len(text) && text[j] == '+' && piiRightOK(text, j+5) {
		if tail := text[j+1 : j+5]; strings.Trim(tail, "0123456789") == "" {
			d := []byte(w + tail)
			if piiSEValid(d, false) {
				c.add(piiSEPersonnummer, i, j+5, 0.85)
			}
		}
	}
	// US_MBI: 11 characters, as one word or in groups of 4, 3 and 4.
	if c.want(piiUSMBI) && nd == 1 {
		if len(w) == 11 && piiRightOK(text, j) && piiMBIValid(w) {
			c.add(piiUSMBI, i, j, 0.6)
		} else if len(w) == 4 && j+9 <= len(text) && text[j] == '-' && text[j+4] == '-' && piiRightOK(text, j+9) {
			m := w + text[j+1:j+4] + text[j+5:j+9]
			if piiMBIValid(m) {
				c.add(piiUSMBI, i, j+9, 0.6)
			}
		}
	}
	// DE_SOCIAL_SECURITY: area, DDMMYY, the birth name's initial, serial, check digit.
	if c.want(piiDESocial) && len(w) == 12 && nd == 8 && piiRightOK(text, j) && piiDESocialValid(w) {
		c.add(piiDESocial, i, j, 0.85)
	}
}

// findLetterLedIDs looks for identifiers that start with a letter: ES_NIE, SG_NRIC_FIN,
// UK_NINO, IT_FISCAL_CODE, IN_PAN and DE_HEALTH_INSURANCE. [i, j) is the word.
func (s *PIIScanner) findLetterLedIDs(text string, i, j int, c *piiCollector) {
	if !piiLeftOK(text, i) {
		return
	}
	w := text[i:j]
	first := piiUpper(w[0])
	// ES_NIE: X, Y or Z, 7 digits and a check letter, perhaps after a dash.
	if c.want(piiESNIE) && (first == 'X' || first == 'Y' || first == 'Z') && len(w) >= 8 && piiAllDigits(w[1:8]) {
		num := string(rune('0'+first-'X')) + w[1:8]
		if len(w) == 9 && piiIsLetter(w[8]) && piiRightOK(text, j) && piiNIFValid(num, w[8]) {
			c.add(piiESNIE, i, j, 0.9)
		} else if len(w) == 8 && j+2 <= len(text) && text[j] == '-' && piiIsLetter(text[j+1]) && piiRightOK(text, j+2) && piiNIFValid(num, text[j+1]) {
			c.add(piiESNIE, i, j+2, 0.9)
		}
	}
	// SG_NRIC_FIN: S, T, F, G or M, 7 digits and a check letter.
	if c.want(piiSGNRIC) && len(w) == 9 && piiAllDigits(w[1:8]) && piiIsLetter(w[8]) && piiRightOK(text, j) && piiNRICValid(w) {
		c.add(piiSGNRIC, i, j, 0.85)
	}
	if c.want(piiUKNINO) && len(w) <= 9 {
		if end := piiNINOEnd(text, i, j); end > 0 {
			c.add(piiUKNINO, i, end, 0.6)
		}
	}
	if c.want(piiITFiscal) && len(w) == 16 && piiRightOK(text, j) && piiFiscalValid(w) {
		c.add(piiITFiscal, i, j, 0.95)
	}
	if c.want(piiINPAN) && len(w) == 10 && piiRightOK(text, j) && piiPANValid(w) {
		c.add(piiINPAN, i, j, 0.6)
	}
	if c.want(piiDEHealth) && len(w) == 10 && piiIsLetter(w[0]) && piiAllDigits(w[1:]) && piiRightOK(text, j) && piiKVNRValid(w) {
		c.add(piiDEHealth, i, j, 0.8)
	}
}

// Validators. Each takes the characters of the identifier without separators.

func piiAllDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if !piiIsDigit(s[i]) {
			return false
		}
	}
	return len(s) > 0
}

// piiNum reads a short run of digits.
func piiNum(d []byte) int {
	v := 0
	for _, b := range d {
		v = v*10 + int(b-'0')
	}
	return v
}

// piiValidDate reports whether y-m-d is a date of the Gregorian calendar.
func piiValidDate(y, m, d int) bool {
	if m < 1 || m > 12 || d < 1 {
		return false
	}
	days := [13]int{0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31}[m]
	if m == 2 && y%4 == 0 && (y%100 != 0 || y%400 == 0) {
		days = 29
	}
	return d <= days
}

// piiValidDateAnyCentury reports whether yy-m-d is a valid date in 19yy or 20yy.
func piiValidDateAnyCentury(yy, m, d int) bool {
	return piiValidDate(1900+yy, m, d) || piiValidDate(2000+yy, m, d)
}

// piiSSNValid checks a US social security number: no zero area, group or serial, no
// area 666 or 900-999 (those are ITINs), not a single repeated digit, not a number
// published in advertising.
func piiSSNValid(d []byte) bool {
	if len(d) != 9 {
		return false
	}
	s := string(d)
	area := s[:3]
	if area == "000" || area == "666" || area >= "900" || s[3:5] == "00" || s[5:] == "0000" {
		return false
	}
	if strings.Count(s, s[:1]) == len(s) {
		return false
	}
	switch {
	case s == "123456789", s == "078051120", s == "219099999", strings.HasPrefix(s, "98765432"):
		return false
	}
	return true
}

// piiITINValid checks a US individual taxpayer identification number: 9NN, then a
// group of 50-65, 70-88, 90-92 or 94-99.
func piiITINValid(d []byte) bool {
	if len(d) != 9 || d[0] != '9' {
		return false
	}
	g := piiNum(d[3:5])
	return (g >= 50 && g <= 65) || (g >= 70 && g <= 88) || (g >= 90 && g <= 92) || g >= 94
}

// piiSINValid checks a Canadian social insurance number: Luhn, not starting with 0 or
// 8 (unassigned).
func piiSINValid(d []byte) bool {
	return len(d) == 9 && d[0] != '0' && d[0] != '8' && piiLuhn(d)
}

// piiTFNValid checks an Australian tax file number (8 or 9 digits, weighted mod 11).
func piiTFNValid(d []byte) bool {
	var w []int
	switch len(d) {
	case 9:
		w = []int{1, 4, 3, 7, 5, 8, 6, 9, 10}
	case 8:
		w = []int{10, 7, 8, 4, 6, 3, 5, 1}
	default:
		return false
	}
	sum := 0
	for k, x := range w {
		sum += int(d[k]-'0') * x
	}
	return sum%11 == 0 && strings.Count(string(d), string(d[:1])) != len(d)
}

// piiMedicareValid checks an Australian Medicare number: first digit 2-6, weighted
// check digit in the ninth place, issue number 1-9 in the tenth.
func piiMedicareValid(d []byte) bool {
	if len(d) != 10 || d[0] < '2' || d[0] > '6' || d[9] == '0' {
		return false
	}
	sum := 0
	for k, x := range [8]int{1, 3, 7, 9, 1, 3, 7, 9} {
		sum += int(d[k]-'0') * x
	}
	return sum%10 == int(d[8]-'0')
}

// piiNHSValid checks a UK NHS number (10 digits, weighted mod 11).
func piiNHSValid(d []byte) bool {
	if len(d) != 10 || strings.Count(string(d), string(d[:1])) == len(d) {
		return false
	}
	sum := 0
	for k := 0; k < 9; k++ {
		sum += int(d[k]-'0') * (10 - k)
	}
	check := 11 - sum%11
	if check == 11 {
		check = 0
	}
	return check != 10 && check == int(d[9]-'0')
}

var (
	piiVerhoeffD = [10][10]uint8{
		{0, 1, 2, 3, 4, 5, 6, 7, 8, 9},
		{1, 2, 3, 4, 0, 6, 7, 8, 9, 5},
		{2, 3, 4, 0, 1, 7, 8, 9, 5, 6},
		{3, 4, 0, 1, 2, 8, 9, 5, 6, 7},
		{4, 0, 1, 2, 3, 9, 5, 6, 7, 8},
		{5, 9, 8, 7, 6, 0, 4, 3, 2, 1},
		{6, 5, 9, 8, 7, 1, 0, 4, 3, 2},
		{7, 6, 5, 9, 8, 2, 1, 0, 4, 3},
		{8, 7, 6, 5, 9, 3, 2, 1, 0, 4},
		{9, 8, 7, 6, 5, 4, 3, 2, 1, 0},
	}
	piiVerhoeffP = [8][10]uint8{
		{0, 1, 2, 3, 4, 5, 6, 7, 8, 9},
		{1, 5, 7, 6, 2, 8, 3, 0, 9, 4},
		{5, 8, 0, 3, 7, 9, 6, 1, 4, 2},
		{8, 9, 1, 6, 0, 4, 3, 5, 2, 7},
		{9, 4, 5, 3, 1, 2, 7, 6, 8, 0},
		{4, 2, 8, 6, 5, 7, 3, 9, 0, 1},
		{2, 7, 9, 3, 8, 0, 6, 4, 1, 5},
		{7, 0, 4, 6, 9, 1, 3, 2, 5, 8},
	}
)

// piiVerhoeff checks a number's Verhoeff check digit (its last).
func piiVerhoeff(d []byte) bool {
	c := uint8(0)
	for k := 0; k < len(d); k++ {
		c = piiVerhoeffD[c][piiVerhoeffP[k%8][d[len(d)-1-k]-'0']]
	}
	return len(d) > 0 && c == 0
}

// piiAadhaarValid checks an Indian Aadhaar number: 12 digits, first 2-9, Verhoeff.
func piiAadhaarValid(d []byte) bool {
	return len(d) == 12 && d[0] >= '2' && piiVerhoeff(d)
}

// piiTRValid checks a Turkish identity number: 11 digits, first not 0, two check
// digits.
func piiTRValid(d []byte) bool {
	if len(d) != 11 || d[0] == '0' {
		return false
	}
	v := func(k int) int { return int(d[k] - '0') }
	odd := v(0) + v(2) + v(4) + v(6) + v(8)
	even := v(1) + v(3) + v(5) + v(7)
	if ((odd*7-even)%10+10)%10 != v(9) {
		return false
	}
	sum := 0
	for k := 0; k < 10; k++ {
		sum += v(k)
	}
	return sum%10 == v(10)
}

// piiDETaxValid checks a German tax identification number: 11 digits, first not 0,
// among the first ten exactly one digit repeated (twice or three times), ISO 7064
// MOD 11,10 check digit.
func piiDETaxValid(d []byte) bool {
	if len(d) != 11 || d[0] == '0' {
		return false
	}
	var counts [10]int
	for _, b := range d[:10] {
		counts[b-'0']++
	}
	repeated := 0
	for _, n := range counts {
		if n > 3 {
			return false
		}
		if n >= 2 {
			repeated++
		}
	}
	if repeated != 1 {
		return false
	}
	product := 10
	for _, b := range d[:10] {
		sum := (int(b-'0') + product) % 10
		if sum == 0 {
			sum = 10
		}
		product = (sum * 2) % 11
	}
	check := 11 - product
	if check == 10 {
		check = 0
	}
	return check == int(d[10]-'0')
}

// piiPESELValid checks a Polish PESEL: a birth date whose month encodes the century,
// and a weighted check digit.
func piiPESELValid(d []byte) bool {
	if len(d) != 11 {
		return false
	}
	y, m, day := piiNum(d[0:2]), piiNum(d[2:4]), piiNum(d[4:6])
	century := 1900
	switch {
	case m > 80:
		century, m = 1800, m-80
	case m > 60:
		century, m = 2200, m-60
	case m > 40:
		century, m = 2100, m-40
	case m > 20:
		century, m = 2000, m-20
	}
	if !piiValidDate(century+y, m, day) {
		return false
	}
	sum := 0
	for k, w := range [10]int{1, 3, 7, 9, 1, 3, 7, 9, 1, 3} {
		sum += int(d[k]-'0') * w
	}
	return (10-sum%10)%10 == int(d[10]-'0')
}

// piiSEValid checks a Swedish personal identity number: YYMMDDNNNC (or with the century,
// CCYYMMDDNNNC, century 18-20), the day perhaps plus 60 (a coordination number), and a
// Luhn digit over the ten digits.
func piiSEValid(d []byte, century bool) bool {
	if century {
		if len(d) != 12 || (string(d[:2]) != "18" && string(d[:2]) != "19" && string(d[:2]) != "20") {
			return false
		}
		y := piiNum(d[:4])
		m, day := piiNum(d[4:6]), piiNum(d[6:8])
		if day > 60 {
			day -= 60
		}
		if !piiValidDate(y, m, day) {
			return false
		}
		d = d[2:]
	} else {
		if len(d) != 10 {
			return false
		}
		m, day := piiNum(d[2:4]), piiNum(d[4:6])
		if day > 60 {
			day -= 60
		}
		if !piiValidDateAnyCentury(piiNum(d[:2]), m, day) {
			return false
		}
	}
	return piiLuhn(d)
}

// piiZAValid checks a South African identity number: YYMMDD, gender sequence,
// citizenship 0-2, 8 or 9, Luhn.
func piiZAValid(d []byte) bool {
	if len(d) != 13 || d[10] > '2' || (d[11] != '8' && d[11] != '9') {
		return false
	}
	return piiValidDateAnyCentury(piiNum(d[0:2]), piiNum(d[2:4]), piiNum(d[4:6])) && piiLuhn(d)
}

// piiTHProvince reports whether a two-digit code is a Thai province code.
func piiTHProvince(p int) bool {
	return (p >= 10 && p <= 27) || (p >= 30 && p <= 58) || (p >= 60 && p <= 67) ||
		(p >= 70 && p <= 77) || (p >= 80 && p <= 86) || (p >= 90 && p <= 96)
}

// piiTHValid checks a Thai national identity number: 13 digits, first 1-8, a province
// code, weighted mod 11 check digit.
func piiTHValid(d []byte) bool {
	if len(d) != 13 || d[0] < '1' || d[0] > '8' || !piiTHProvince(piiNum(d[1:3])) {
		return false
	}
	sum := 0
	for k := 0; k < 12; k++ {
		sum += int(d[k]-'0') * (13 - k)
	}
	return (11-sum%11)%10 == int(d[12]-'0')
}

// piiNIFLetters are the check letters of Spanish NIF and NIE numbers.
const piiNIFLetters = "TRWAGMYFPDXBNJZSQVHLCKE"

// piiNIFValid checks the letter of a Spanish NIF (or NIE, its prefix turned into a
// digit): the number mod 23.
func piiNIFValid(num string, letter byte) bool {
	if !piiAllDigits(num) {
		return false
	}
	v := 0
	for i := 0; i < len(num); i++ {
		v = (v*10 + int(num[i]-'0')) % 23
	}
	return piiNIFLetters[v] == piiUpper(letter)
}

// piiFIValid checks a Finnish personal identity code DDMMYYCNNNX: the date for the
// century sign C, and X = the table character at DDMMYYNNN mod 31.
func piiFIValid(w string) bool {
	if len(w) != 11 || !piiAllDigits(w[:6]) || !piiAllDigits(w[7:10]) {
		return false
	}
	century := 0
	switch w[6] {
	case '+':
		century = 1800
	case '-', 'Y', 'X', 'W', 'V', 'U':
		century = 1900
	case 'A', 'B', 'C', 'D', 'E', 'F':
		century = 2000
	default:
		return false
	}
	b := []byte(w)
	if !piiValidDate(century+piiNum(b[4:6]), piiNum(b[2:4]), piiNum(b[0:2])) {
		return false
	}
	v := 0
	for _, x := range append(b[:6:6], b[7:10]...) {
		v = v*10 + int(x-'0')
	}
	return "0123456789ABCDEFHJKLMNPRSTUVWXY"[v%31] == w[10]
}

// piiMBIAlpha reports whether b is a letter an MBI may hold (not S, L, O, I, B or Z).
func piiMBIAlpha(b byte) bool {
	b = piiUpper(b)
	return piiIsUpper(b) && strings.IndexByte("SLOIBZ", b) < 0
}

// piiMBIValid checks the format of a US Medicare beneficiary identifier.
func piiMBIValid(m string) bool {
	if len(m) != 11 || m[0] < '1' || m[0] > '9' {
		return false
	}
	an := func(b byte) bool { return piiIsDigit(b) || piiMBIAlpha(b) }
	return piiMBIAlpha(m[1]) && an(m[2]) && piiIsDigit(m[3]) && piiMBIAlpha(m[4]) && an(m[5]) &&
		piiIsDigit(m[6]) && piiMBIAlpha(m[7]) && piiMBIAlpha(m[8]) && piiIsDigit(m[9]) && piiIsDigit(m[10])
}

// piiDESocialValid checks a German pension insurance number: area (2 digits), DDMMYY
// (the day perhaps plus 50), the initial of the birth name, a serial (2 digits) and a
// check digit over the 12 digits with the letter as its position in the alphabet.
func piiDESocialValid(w string) bool {
	if len(w) != 12 || !piiAllDigits(w[:8]) || !piiIsLetter(w[8]) || !piiAllDigits(w[9:]) {
		return false
	}
	b := []byte(w)
	day, m := piiNum(b[2:4]), piiNum(b[4:6])
	if day > 50 {
		day -= 50
	}
	if !piiValidDateAnyCentury(piiNum(b[6:8]), m, day) {
		return false
	}
	l := int(piiUpper(w[8])-'A') + 1
	var digits [12]int
	for k := 0; k < 8; k++ {
		digits[k] = int(b[k] - '0')
	}
	digits[8], digits[9] = l/10, l%10
	digits[10], digits[11] = int(b[9]-'0'), int(b[10]-'0')
	sum := 0
	for k, w := range [12]int{2, 1, 2, 5, 7, 1, 2, 1, 2, 1, 2, 1} {
		p := digits[k] * w
		sum += p/10 + p%10
	}
	return sum%10 == int(b[11]-'0')
}

// piiNRICValid checks a Singapore NRIC or FIN: prefix S, T, F, G or M, 7 digits and
// the check letter of the weighted sum.
func piiNRICValid(w string) bool {
	p := piiUpper(w[0])
	sum := 0
	for k, x := range [7]int{2, 7, 6, 5, 4, 3, 2} {
		sum += int(w[1+k]-'0') * x
	}
	var table string
	switch p {
	case 'S':
		table = "JZIHGFEDCBA"
	case 'T':
		table, sum = "JZIHGFEDCBA", sum+4
	case 'F':
		table = "XWUTRQPNMLK"
	case 'G':
		table, sum = "XWUTRQPNMLK", sum+4
	case 'M':
		table, sum = "XWUTRQPNJLK", sum+3
	default:
		return false
	}
	return table[sum%11] == piiUpper(w[8])
}

// piiNINOEnd matches a UK National Insurance number at i ([i, j) is its first word):
// two prefix letters, six digits (perhaps in pairs separated by spaces), a suffix
// A-D. It returns the end, or 0.
func piiNINOEnd(text string, i, j int) int {
	if j-i != 2 && j-i != 8 && j-i != 9 {
		return 0
	}
	a, b := piiUpper(text[i]), piiUpper(text[i+1])
	if !piiIsUpper(a) || !piiIsUpper(b) || strings.IndexByte("DFIQUV", a) >= 0 || strings.IndexByte("DFIOQUV", b) >= 0 {
		return 0
	}
	switch string([]byte{a, b}) {
	case "BG", "GB", "KN", "NK", "NT", "TN", "ZZ":
		return 0
	}
	p, digits := i+2, 0
	if p < len(text) && text[p] == ' ' {
		p++
	}
	for digits < 6 {
		if p >= len(text) || !piiIsDigit(text[p]) {
			return 0
		}
		p++
		digits++
		if (digits == 2 || digits == 4) && p+1 < len(text) && text[p] == ' ' && piiIsDigit(text[p+1]) {
			p++
		}
	}
	if p+1 < len(text) && text[p] == ' ' {
		p++
	}
	if p >= len(text) || !strings.ContainsRune("ABCDabcd", rune(text[p])) {
		return 0
	}
	p++
	if !piiRightOK(text, p) {
		return 0
	}
	return p
}

var (
	piiFiscalOdd = [36]int{ // 0-9 then A-Z
		1, 0, 5, 7, 9, 13, 15, 17, 19, 21,
		1, 0, 5, 7, 9, 13, 15, 17, 19, 21, 2, 4, 18, 20, 11, 3, 6, 8, 12, 14, 16, 10, 22, 25, 24, 23,
	}
)

// piiFiscalValid checks an Italian fiscal code: surname and name letters, birth year,
// month letter, day (plus 40 for women), municipality, check letter; digits may be
// replaced by the letters LMNPQRSTUV (omocodia).
func piiFiscalValid(w string) bool {
	var b [16]byte
	for k := 0; k < 16; k++ {
		b[k] = piiUpper(w[k])
	}
	digitOrOmo := func(x byte) bool { return piiIsDigit(x) || strings.IndexByte("LMNPQRSTUV", x) >= 0 }
	for k := 0; k < 16; k++ {
		switch k {
		case 6, 7, 9, 10, 12, 13, 14:
			if !digitOrOmo(b[k]) {
				return false
			}
		case 8:
			if strings.IndexByte("ABCDEHLMPRST", b[k]) < 0 {
				return false
			}
		default:
			if !piiIsUpper(b[k]) {
				return false
			}
		}
	}
	sum := 0
	for k := 0; k < 15; k++ {
		x := b[k]
		idx := int(x - '0')
		if piiIsUpper(x) {
			idx = int(x-'A') + 10
		}
		if k%2 == 0 {
			sum += piiFiscalOdd[idx]
		} else if piiIsUpper(x) {
			sum += int(x - 'A')
		} else {
			sum += int(x - '0')
		}
	}
	return byte('A'+sum%26) == b[15]
}

// piiPANValid checks the format of an Indian permanent account number: five upper case
// letters (the fourth the holder's kind), four digits, a letter.
func piiPANValid(w string) bool {
	for k := 0; k < 10; k++ {
		switch {
		case k >= 5 && k <= 8:
			if !piiIsDigit(w[k]) {
				return false
			}
		case !piiIsUpper(w[k]):
			return false
		}
	}
	return strings.IndexByte("ABCFGHLJPTK", w[3]) >= 0
}

// piiKVNRValid checks a German health insurance number: a letter, eight digits and a
// check digit over the letter's two-digit position and the digits, weighted 1, 2.
func piiKVNRValid(w string) bool {
	l := int(piiUpper(w[0])-'A') + 1
	digits := [10]int{l / 10, l % 10}
	for k := 1; k <= 8; k++ {
		digits[k+1] = int(w[k] - '0')
	}
	sum := 0
	for k, x := range digits {
		p := x * (1 + k%2)
		sum += p/10 + p%10
	}
	return sum%10 == int(w[9]-'0')
}

// IBANs.

// piiIBANFormats are the BBAN formats of the IBAN registry (SWIFT): n digits, a upper
// case letters, c upper case letters or digits; the IBAN is the country code, two check
// digits and the BBAN.
var piiIBANFormats = map[string]string{
	"AD": "4n4n12c", "AE": "3n16n", "AL": "8n16c", "AT": "5n11n", "AZ": "4a20c",
	"BA": "3n3n8n2n", "BE": "3n7n2n", "BG": "4a4n2n8c", "BH": "4a14c", "BI": "5n5n11n2n",
	"BR": "8n5n10n1a1c", "BY": "4c4n16c", "CH": "5n12c", "CR": "4n14n", "CY": "3n5n16c",
	"CZ": "4n6n10n", "DE": "8n10n", "DJ": "5n5n11n2n", "DK": "4n9n1n", "DO": "4c20n",
	"EE": "2n2n11n1n", "EG": "4n4n17n", "ES": "4n4n1n1n10n", "FI": "3n11n", "FK": "2a12n",
	"FO": "4n9n1n", "FR": "5n5n11c2n", "GB": "4a6n8n", "GE": "2a16n", "GI": "4a15c",
	"GL": "4n9n1n", "GR": "3n4n16c", "GT": "4c20c", "HN": "4a20n", "HR": "7n10n",
	"HU": "3n4n1n15n1n", "IE": "4a6n8n", "IL": "3n3n13n", "IQ": "4a3n12n", "IS": "4n2n6n10n",
	"IT": "1a5n5n12c", "JO": "4a4n18c", "KW": "4a22c", "KZ": "3n13c", "LB": "4n20c",
	"LC": "4a24c", "LI": "5n12c", "LT": "5n11n", "LU": "3n13c", "LV": "4a13c",
	"LY": "3n3n15n", "MC": "5n5n11c2n", "MD": "2c18c", "ME": "3n13n2n", "MK": "3n10c2n",
	"MN": "4n12n", "MR": "5n5n11n2n", "MT": "4a5n18c", "MU": "4a2n2n12n3n3a", "NI": "4a20n",
	"NL": "4a10n", "NO": "4n6n1n", "OM": "3n16c", "PK": "4a16c", "PL": "8n16n",
	"PS": "4a21c", "PT": "4n4n11n2n", "QA": "4a21c", "RO": "4a16c", "RS": "3n13n2n",
	"RU": "9n5n15c", "SA": "2n18c", "SC": "4a2n2n16n3a", "SD": "2n12n", "SE": "3n16n1n",
	"SI": "5n8n2n", "SK": "4n6n10n", "SM": "1a5n5n12c", "SO": "4n3n12n", "ST": "4n4n11n2n",
	"SV": "4a20n", "TL": "3n14n2n", "TN": "2n3n13n2n", "TR": "5n1n16c", "UA": "6n19c",
	"VA": "3n15n", "VG": "4a16n", "XK": "4n10n2n", "YE": "4a4n18c",
}

// piiMaxIBAN is the longest IBAN.
const piiMaxIBAN = 34

// piiFindIBAN reads an IBAN at i: upper case, written compactly or in groups of four
// separated by single spaces or dashes, of its country's length and BBAN format, with
// valid mod-97 check digits.
func piiFindIBAN(text string, i int, c *piiCollector) {
	if i+4 > len(text) || !piiIsUpper(text[i]) || !piiIsUpper(text[i+1]) || !piiIsDigit(text[i+2]) || !piiIsDigit(text[i+3]) || !piiLeftOK(text, i) {
		return
	}
	format, ok := piiIBANFormats[text[i:i+2]]
	if !ok {
		return
	}
	want := 4 + piiFormatLen(format)
	var buf [piiMaxIBAN]byte
	n, j := 0, i
	var sep byte // the group separator, or 0 when written compactly
	for n < want {
		if n == 4 && j < len(text) && (text[j] == ' ' || text[j] == '-') {
			sep = text[j]
		}
		if n > 0 && n%4 == 0 && sep != 0 {
			if j >= len(text) || text[j] != sep {
				return
			}
			j++
		}
		if j >= len(text) || (!piiIsUpper(text[j]) && !piiIsDigit(text[j])) {
			return
		}
		buf[n] = text[j]
		n++
		j++
	}
	if !piiRightOK(text, j) {
		return
	}
	iban := buf[:n]
	if !piiBBANMatches(iban[4:], format) || !piiMod97(iban) {
		return
	}
	c.add(piiIBAN, i, j, 1)
}

// piiFormatLen returns the length a BBAN format describes.
func piiFormatLen(format string) int {
	total, v := 0, 0
	for i := 0; i < len(format); i++ {
		if b := format[i]; piiIsDigit(b) {
			v = v*10 + int(b-'0')
		} else {
			total += v
			v = 0
		}
	}
	return total
}

func piiBBANMatches(bban []byte, format string) bool {
	p, v := 0, 0
	for i := 0; i < len(format); i++ {
		b := format[i]
		if piiIsDigit(b) {
			v = v*10 + int(b-'0')
			continue
		}
		for ; v > 0; v-- {
			if p >= len(bban) {
				return false
			}
			ch := bban[p]
			switch b {
			case 'n':
				if !piiIsDigit(ch) {
					return false
				}
			case 'a':
				if !piiIsUpper(ch) {
					return false
				}
			}
			p++
		}
	}
	return p == len(bban)
}

// piiMod97 checks an IBAN's check digits (ISO 7064 MOD 97-10).
func piiMod97(iban []byte) bool {
	r := 0
	for k := 0; k < len(iban); k++ {
		ch := iban[(k+4)%len(iban)]
		if piiIsDigit(ch) {
			r = (r*10 + int(ch-'0')) % 97
		} else {
			r = (r*100 + int(ch-'A') + 10) % 97
		}
	}
	return r == 1
}

// Payment cards.

// piiFindCard looks for a card number of 13 to 19 digits at the start of the groups:
// unseparated, or in groups (the first of four digits) separated uniformly by spaces
// or dashes, with a known issuer prefix for its length and a valid Luhn digit.
func piiFindCard(text string, g *piiGroups, c *piiCollector) {
	if !piiLeftOK(text, g.start[0]) {
		return
	}
	var buf [24]byte
	for k := g.n; k >= 1; k-- {
		nd := g.digits(k)
		if nd < 13 || nd > 19 || (k > 1 && g.len(0) != 4) {
			continue
		}
		if _, ok := piiUniformSep(text, g, k, " -"); !ok || !piiStopOK(text, g, k) {
			continue
		}
		short := false
		for m := 1; m < k; m++ {
			if l := g.len(m); l > 6 || (l < 3 && m < k-1) {
				short = true
			}
		}
		if short {
			continue
		}
		d := g.collect(text, k, buf[:0])
		if piiCardIIN(d) && piiLuhn(d) {
			c.add(piiCard, g.start[0], g.end[k-1], 0.9)
			return
		}
	}
}

// piiCardIIN reports whether a card number's issuer prefix allows its length.
func piiCardIIN(d []byte) bool {
	n := len(d)
	p := func(k int) int {
		v := 0
		for i := 0; i < k; i++ {
			v = v*10 + int(d[i]-'0')
		}
		return v
	}
	p2, p3, p4 := p(2), p(3), p(4)
	switch {
	case d[0] == '4': // Visa
		return n == 13 || n == 16 || n == 19
	case p2 >= 51 && p2 <= 55, p4 >= 2221 && p4 <= 2720: // Mastercard
		return n == 16
	case p4 >= 2200 && p4 <= 2204: // Mir
		return n >= 16
	case p2 == 34 || p2 == 37: // American Express
		return n == 15
	case p3 >= 300 && p3 <= 305, p2 == 36, p2 == 38, p2 == 39: // Diners Club
		return n >= 14
	case p4 == 6011, p3 >= 644 && p3 <= 649, p2 == 65, p2 == 62: // Discover, UnionPay
		return n >= 16
	case p4 >= 3528 && p4 <= 3589: // JCB
		return n >= 16
	case p2 == 50, p2 >= 56 && p2 <= 69: // Maestro, RuPay
		return n >= 13
	case p4 == 2131 || p4 == 1800: // JCB, fifteen digits
		return n == 15
	case d[0] == '1': // UATP
		return n == 15
	case p2 == 81 || p2 == 82 || p4 == 9792: // RuPay, Troy
		return n == 16
	}
	return false
}

// piiLuhn checks the Luhn (mod 10) digit of a number.
func piiLuhn(d []byte) bool {
	sum := 0
	for i := len(d) - 1; i >= 0; i-- {
		v := int(d[i] - '0')
		if (len(d)-1-i)%2 == 1 {
			v *= 2
			if v > 9 {
				v -= 9
			}
		}
		sum += v
	}
	return len(d) > 0 && sum%10 == 0
}
