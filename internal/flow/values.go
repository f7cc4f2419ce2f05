package flow

// Values
//
// This file finds the values a session remembers and a call's arguments are
// matched against. A value has a [Kind] and a canonical Key ("e:lee@example.com",
// "n:98.7"); two values match when their keys are equal. Canonical forms absorb
// the rewrites an agent makes when it copies a value (case, spacing, grouping,
// URL scheme, trailing zeros), and only distinctive values are yielded, so that
// short common tokens never match. Everything here is ASCII-oriented: values are
// made of ASCII letters and digits, except whole-value identifiers.
//
// # Scanning
//
// [ExtractText] normalises the text, then makes one left-to-right pass. A value
// can start only after a separator: the start of the text or any byte that is not
// a letter, digit or one of _ . - / \ ~ + %. At each start the recognisers below
// are tried in order; the first that matches consumes its text, so a number that
// is part of an identifier, account number or date is never also an amount. When
// none matches, the run of letters, digits and _ . - / \ ~ + % is skipped; the
// pieces of that run after a / \ ~ + or % are still tried with every recogniser
// but the path one ("ref/tx-77abc12" yields the token). Every recogniser looks
// ahead a bounded distance or at most to the end of the run, or consumes what it
// looked at, so the scan is linear in the length of the text.
//
// Normalisation, before scanning (Raw always holds the text as found):
//   - zero-width and invisible characters (U+00AD, U+200B–U+200F, U+2060–U+2064,
//     U+FEFF) and bidi controls (U+202A–U+202E, U+2066–U+2069) are dropped;
//   - fullwidth ASCII (U+FF01–U+FF5E) becomes ASCII; U+2010, U+2011 and U+2212
//     become "-"; every Unicode space becomes a space; every currency symbol
//     (€, £, ¥, ...) becomes "$";
//   - invalid UTF-8, control characters, and non-ASCII punctuation and symbols
//     are separators; non-ASCII letters, digits and marks join words but are
//     never part of a value, so no value is cut out of a non-ASCII word (and
//     internationalised domain names are not recognised);
//   - a text whose first non-space byte is "{" or "[" is read as JSON: the
//     escapes \uXXXX, \/, \\ and \" are decoded and \b \f \n \r \t are
//     separators, so that "\u003clee@example.com\u003e" yields the address.
//
// # Recognisers, in order
//
//  1. URL, from "http://" or "https://" (any case) or "www.": it ends at
//     whitespace, a quote, < > ` or \, a non-ASCII character, or a closing
//     bracket ) ] } without its opening partner; then trailing . , ; : ! ? are
//     dropped. Key (KindURL): host lower-cased, leading "www." dropped, user
//     information dropped, port kept unless 80 or 443, then path and query;
//     fragment removed, percent-encoded unreserved characters decoded, all
//     lower-cased, trailing "/" and a trailing "?" removed. So
//     "https://Evil.com/x/", "evil.com/x" and "http://www.evil.com/x#a" are all
//     "u:evil.com/x". The host is also yielded (KindHost). A URL longer than
//     [MaxKeyBytes] is skipped, but its host is still yielded. Other schemes
//     (ftp, mailto, file) are not URLs; "mailto:" is a separator before an
//     address.
//  2. Date or time, yielding nothing: YYYY-MM-DD, YYYY/MM/DD, YYYY.MM.DD (with
//     an optional ISO time and zone after "T"), DD.MM.YYYY, DD/MM/YYYY,
//     DD-MM-YYYY (and MM/DD/YYYY), YYYYMMDD with a valid date in 1900–2100
//     (with an optional "T" and six digits, as in iCalendar), YYYY-YYYY year
//     ranges, and times H:MM, HH:MM:SS(.fff) with an optional zone.
//  3. E-mail address: a local part of letters, digits and . _ % + - (not
//     starting or ending with ".", no ".."), "@", a domain of at least two
//     labels whose last is letters only and at least two long. Key (KindEmail)
//     lower-cased; the domain is also yielded (KindHost).
//  4. IBAN written in groups: two letters, two digits, then groups of four
//     letters or digits separated by single spaces, the last group 1–4 long,
//     15–34 characters in all, with a valid ISO 7064 mod-97 checksum (the
//     longest prefix of groups that validates is taken). Key (KindIdent)
//     lower-case letters and digits. An IBAN written without spaces, or with
//     hyphens, is a distinctive token (8) with the same key, checksum or not.
//     Grouped digits that fail the checksum may still be an account number (7b).
//  5. Bare domain or IPv4 address, optionally with ":port" and a path: labels
//     of letters, digits and hyphens; the last label letters only, 2–24 long,
//     all lower or all upper case (so "end.Next" is not a domain), and not a
//     common file extension (txt pdf doc docx xls xlsx csv json md png jpg jpeg
//     gif html htm xml yaml yml zip gz tar js ts go py rb java c h cpp sh log
//     ini cfg conf eml ics pptx ppt odt rtf svg mp3 mp4 wav mov exe dll bin bak
//     tmp). Any such TLD is accepted, so dotted names in code and logs
//     ("os.path", "tom.berger") are hosts too. With a path it yields KindURL and
//     KindHost, without one KindHost only. An IPv4 address with "/N" (CIDR)
//     yields only its host. A name directly followed by "@" is the local part of
//     an address that is not valid and yields nothing.
//  6. File path: a run of letters, digits and . _ - ~ + % / (a drive letter and
//     colon may lead) holding a "/". Backslashes separate only in Windows paths
//     ("C:\Users\x", "\\server\share", ".\x"); elsewhere a backslash is more
//     often an escape ("line\nline") and the run is not a path. An absolute
//     path ("/", "~/", "./", "../", a drive, "\\") needs a segment of at least 2
//     characters holding a letter; a relative one needs a last segment with a
//     file extension ("bills/december.txt") or at least three segments one of
//     which holds a letter and is at least 3 long ("src/flow/values"). So
//     "and/or", "w/o", "n/a", "24/7", "input/output" are not paths. Key
//     (KindPath): backslashes as slashes, path.Clean, lower-cased.
//  7. Number, in this order:
//     a. amount with structure: "1,250.00" and "1,250" (comma thousands;
//     except a bare "1,250" right after "[" or "digit," or right before "]",
//     which is a JSON array of two numbers), "1.250,00" (dot thousands with
//     exactly two decimals), and, next to a currency symbol or code (EUR USD
//     GBP CHF JPY CAD AUD NZD SEK NOK DKK PLN CZK HUF INR CNY BRL MXN ZAR SGD
//     HKD), "98,70" and "1.250.000";
//     b. account, card or phone number: digit groups joined by single spaces,
//     hyphens, dots or slashes, with an optional leading "+" and parenthesised
//     groups ("+49 (30) 123-4567"), at least 7 digits. Spaces join groups only
//     when the number starts with "+", "(" or "0", or has at least three
//     groups of which all but the last have the same length, 3 or 4 ("1234
//     5678 9012"); otherwise "in 2025 1500 people" would be one number. Two
//     groups joined by one dot are a decimal, and four dotted groups that make
//     an IPv4 address or groups that make a date are not accounts. Key
//     (KindIdent): the digits. A plain run of 7 or more digits also yields
//     KindNumber;
//     c. plain number "1500", "98.70", with an optional leading "-" (ignored).
//     Key (KindNumber): canonical decimal — digits only, thousands separators
//     and trailing fraction zeros removed ("98.70" → "98.7", "1,250.00" →
//     "1250", "100.0" → "100"). A number is yielded only with at least 3
//     significant digits (the 0 of "0.25" does not count), not written with a
//     leading zero ("0176", the "0100" of "+0100": codes and zones), not
//     followed by a unit of measure or "%" unless a currency is next to it
//     ("250 g", "312 kWh", "12.5%" are quantities), and an integer 1900–2100
//     only when written as an amount (grouping, decimals or a currency next to
//     it): "2026" is a year, "2,026.00 EUR" is not. A number glued to letters
//     ("1500px", "v1.2.3") is not a number, nor is "100-200" or "1/2". Version
//     strings yield nothing unless they are distinctive tokens.
//  8. Distinctive token: a run of letters, digits and _ . - (trailing . and -
//     dropped) of at least 8 characters, with letters and digits and, if some
//     part between . _ - mixes letters and digits ("tx-77abc12", "sk_live_51Hx")
//     at least 2 digits, else at least two all-digit parts with 4 or more digits
//     in all, or one all-digit part of 5 or more ("INV-2026-0042",
//     "order-12345"; not "COVID-19", "Apache-2.0", "12-month", "1500-word"), and
//     no month name as a part ("15-Jan-2026"). Or a run of at least 12 letters
//     with two or more lower-to-upper case changes ("AbCdEfGhIjKl",
//     "getElementById"). Key (KindIdent): the lower-cased letters and digits.
//
// # Whole values
//
// [ArgumentValues] (for a string) and [Leaf] also read the whole trimmed string
// as one value: an e-mail address, a URL or bare domain, a number (currency
// symbols and codes, a sign and the forms of 7a–7c allowed, plus "98,70" and
// "1.250.000" without a currency), a path; otherwise, for a string of at most 128
// bytes, the lower-cased Unicode letters and digits (KindIdent) — so a short
// structured field copied verbatim matches: "Northgrid Energy" is
// "i:northgridenergy". A float64 argument yields its KindNumber form
// (strconv.FormatFloat, so 98.7 meets "98.70" at "n:98.7") when it has at least
// 3 significant digits — the year rule does not apply, since only text written
// as an amount yields a year-like number — and, for an integer of 7 to 15
// digits, its KindIdent form too (an account number sent as a JSON number).
//
// # Limits and stop list
//
// A key is at most [MaxKeyBytes] bytes; longer candidates are skipped, not
// cut. Keys of every kind but KindNumber and KindHost need at least 6 characters
// after the prefix; host keys need 4. Never yielded: the hosts localhost,
// localhost.localdomain, 127.0.0.1, 0.0.0.0, ::1, w3.org and schema.org (in
// every HTML and XML document); the shared mailbox providers gmail.com,
// googlemail.com, outlook.com, hotmail.com, live.com, msn.com, yahoo.com,
// icloud.com, me.com, aol.com, proton.me, protonmail.com, gmx.de, gmx.net,
// web.de, mail.com, yandex.ru; the shared platforms github.com, gitlab.com,
// bitbucket.org, google.com, docs.google.com, drive.google.com, youtube.com,
// dropbox.com, microsoft.com, sharepoint.com, amazon.com, linkedin.com,
// wikipedia.org (millions of unrelated tenants: the host says nothing about the
// destination, while the address or URL still has its own key, and tenant
// subdomains such as evil.sharepoint.com are kept); identifiers of the ISO 8859
// character sets ("ISO-8859-1"). Texts longer than 1 GiB are scanned up to that
// length.

import (
	"encoding/json"
	"maps"
	"math"
	"path"
	"slices"
	"sort"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Kind is the kind of a remembered value.
type Kind uint8

const (
	// KindEmail is an e-mail address; key prefix "e:", lower-cased address.
	KindEmail Kind = iota + 1
	// KindURL is a URL; key prefix "u:", lower-cased, scheme, leading "www.",
	// fragment and trailing "/" removed, query kept.
	KindURL
	// KindHost is a host name or IP address; key prefix "h:", lower-cased,
	// without port or leading "www.".
	KindHost
	// KindNumber is an amount or other number; key prefix "n:", canonical
	// decimal.
	KindNumber
	// KindIdent is an identifier: an IBAN, an account, card or phone number, a
	// distinctive token or a whole short field; key prefix "i:", lower-case
	// letters and digits only.
	KindIdent
	// KindPath is a file path; key prefix "p:", cleaned and lower-cased.
	KindPath
)

// String returns the kind's name: "email", "url", "host", "number",
// "identifier" or "path".
func (k Kind) String() string {
	switch k {
	case KindEmail:
		return "email"
	case KindURL:
		return "url"
	case KindHost:
		return "host"
	case KindNumber:
		return "number"
	case KindIdent:
		return "identifier"
	case KindPath:
		return "path"
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

func (k Kind) prefix() string {
	switch k {
	case KindEmail:
		return "e:"
	case KindURL:
		return "u:"
	case KindHost:
		return "h:"
	case KindNumber:
		return "n:"
	case KindIdent:
		return "i:"
	case KindPath:
		return "p:"
	}
	return "?:"
}

// Value is a value found in text or in an argument.
type Value struct {
	Kind Kind
	// Key is the canonical form with the kind prefix, e.g.
	// "e:lee@example.com"; it is what matching compares.
	Key string
	// Raw is the text as found, for explanations; at most MaxKeyBytes bytes,
	// cut on a rune boundary.
	Raw string
}

// MaxKeyBytes bounds a Key and a Raw. Longer candidate values are skipped,
// not cut.
const MaxKeyBytes = 256

const (
	// maxArgDepth bounds the nesting ArgumentValues walks.
	maxArgDepth = 32
	// maxLeafBytes is the longest string that has a whole-value KindIdent form.
	maxLeafBytes = 128
	// maxTextBytes bounds how much of a text is scanned.
	maxTextBytes = 1 << 30
	// minKeyChars is the shortest key body of an e-mail, URL, identifier or
	// path; minHostChars of a host.
	minKeyChars  = 6
	minHostChars = 4
)

// ExtractText calls yield for each distinctive value in text (a tool result's
// text, a user prompt), in order of appearance. Duplicates may be yielded;
// callers dedupe.
func ExtractText(text string, yield func(Value)) {
	if len(text) > maxTextBytes {
		text = text[:maxTextBytes]
	}
	t := normalise(text)
	t.scan(yield)
}

// ArgumentValues calls yield for each value a call argument can match: for a
// string, its whole-value forms and the values [ExtractText] finds in it; for a
// number (a float64 as encoding/json decodes it, an int or int64), its
// KindNumber form if distinctive, and for a json.Number what its text yields;
// for []any and map[string]any, recursively the same for every element or map
// value (not keys; map values in key order, so the sequence is deterministic);
// anything else, bool and nil included, yields nothing. Nesting deeper than 32
// levels is ignored.
func ArgumentValues(v any, yield func(Value)) {
	argumentValues(v, yield, 0)
}

func argumentValues(v any, yield func(Value), depth int) {
	if depth > maxArgDepth {
		return
	}
	switch v := v.(type) {
	case string:
		if len(v) > maxTextBytes {
			v = v[:maxTextBytes]
		}
		t := normalise(v)
		t.whole(yield)
		t.scan(yield)
	case json.Number:
		argumentValues(string(v), yield, depth)
	case float64:
		floatValues(v, yield)
	case int:
		floatValues(float64(v), yield)
	case int64:
		floatValues(float64(v), yield)
	case []any:
		for _, e := range v {
			argumentValues(e, yield, depth+1)
		}
	case map[string]any:
		for _, k := range slices.Sorted(maps.Keys(v)) {
			argumentValues(v[k], yield, depth+1)
		}
	}
}

// Leaf calls yield for the whole-value forms of one string taken from a
// structured (JSON) result field, e.g. "Northgrid Energy" from
// {"account_name":"Northgrid Energy"}, so that a short field copied verbatim can
// be matched. It yields the whole-value forms [ArgumentValues] yields for a
// string, and nothing for a string longer than 128 bytes: that is a text, for
// [ExtractText].
func Leaf(s string, yield func(Value)) {
	if len(s) > maxLeafBytes {
		return
	}
	t := normalise(s)
	t.whole(yield)
}

func floatValues(v float64, yield func(Value)) {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return
	}
	a := math.Abs(v)
	body := strconv.FormatFloat(a, 'f', -1, 64)
	raw := strconv.FormatFloat(v, 'f', -1, 64)
	if significantDigits(body) >= 3 {
		emit(found{kind: KindNumber, body: body}, raw, yield)
	}
	if a == math.Trunc(a) && a >= 1e6 && a < 1e15 {
		emit(found{kind: KindIdent, body: body}, raw, yield)
	}
}

// found is one value a recogniser found: its kind and its key without prefix.
type found struct {
	kind Kind
	body string
	// key, if not "", is the whole key (kind's prefix, then body), which a recogniser
	// that builds the body anyway builds with it, so that emit does not copy it again;
	// body is then key[2:].
	key string
}

// keyed is the value of kind k whose whole key, prefix included, is key.
func keyed(k Kind, key string) found {
	return found{kind: k, body: key[len(k.prefix()):], key: key}
}

// keyedBytes is the value of kind k whose body is body, its key built in one allocation.
func keyedBytes(k Kind, body []byte) found {
	var buf [2 + MaxKeyBytes]byte
	return keyed(k, string(append(append(buf[:0], k.prefix()...), body...)))
}

// match is what a recogniser consumed (up to end) and found there.
type match struct {
	end  int
	n    int
	vals [2]found
}

func (m *match) add(k Kind, body string) {
	m.addFound(found{kind: k, body: body})
}

func (m *match) addFound(f found) {
	if m.n < len(m.vals) {
		m.vals[m.n] = f
		m.n++
	}
}

// emit yields f unless it is too short, too long or stop-listed.
func emit(f found, raw string, yield func(Value)) {
	switch f.kind {
	case KindHost:
		if len(f.body) < minHostChars || stopHost(f.body) {
			return
		}
	case KindNumber:
		if f.body == "" {
			return
		}
	default:
		if utf8.RuneCountInString(f.body) < minKeyChars {
			return
		}
		if f.kind == KindIdent && strings.HasPrefix(f.body, "iso8859") {
			return
		}
	}
	if len(f.body)+2 > MaxKeyBytes {
		return
	}
	key := f.key
	if key == "" {
		key = f.kind.prefix() + f.body
	}
	yield(Value{Kind: f.kind, Key: key, Raw: cutRaw(raw)})
}

func cutRaw(s string) string {
	if len(s) <= MaxKeyBytes {
		return s
	}
	n := MaxKeyBytes
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// stopHost reports whether a host key is too generic to mean a destination.
func stopHost(h string) bool {
	switch h {
	case "localhost", "localhost.localdomain", "127.0.0.1", "0.0.0.0", "::1",
		"w3.org", "schema.org",
		"gmail.com", "googlemail.com", "outlook.com", "hotmail.com", "live.com", "msn.com",
		"yahoo.com", "icloud.com", "me.com", "aol.com", "proton.me", "protonmail.com",
		"gmx.de", "gmx.net", "web.de", "mail.com", "yandex.ru",
		"github.com", "gitlab.com", "bitbucket.org", "google.com", "docs.google.com", "drive.google.com",
		"youtube.com", "dropbox.com", "microsoft.com", "sharepoint.com", "amazon.com", "linkedin.com",
		"wikipedia.org":
		return true
	}
	return false
}

// Normalisation.

// nonASCIIWord stands in the normalised text for a non-ASCII letter, digit or
// mark: it joins words but is never part of a value.
const nonASCIIWord = 0x01

// normText is a text prepared for scanning.
type normText struct {
	// s is the normalised text: printable ASCII, whitespace and nonASCIIWord.
	s    string
	orig string
	// shifts map offsets in s back to orig: from s[k.norm] on, s[n] came
	// from orig[n-k.norm+k.orig], up to the next shift. Empty when s == orig.
	shifts []shift
}

type shift struct{ norm, orig int32 }

// origAt returns the offset in orig of the character that became s[n], or
// len(orig) for n == len(s).
func (t *normText) origAt(n int) int {
	if n >= len(t.s) {
		return len(t.orig)
	}
	k := sort.Search(len(t.shifts), func(k int) bool { return int(t.shifts[k].norm) > n }) - 1
	if k < 0 {
		return n
	}
	return n - int(t.shifts[k].norm) + int(t.shifts[k].orig)
}

// raw returns the text as found that became s[a:b], with any dropped
// characters inside it or directly after it.
func (t *normText) raw(a, b int) string {
	if len(t.shifts) == 0 {
		return t.orig[a:b]
	}
	return t.orig[t.origAt(a):t.origAt(b)]
}

func normalise(text string) normText {
	jsonMode := looksLikeJSON(text)
	i := plainPrefix(text, jsonMode)
	if i == len(text) {
		return normText{s: text, orig: text}
	}
	buf := make([]byte, 0, len(text))
	buf = append(buf, text[:i]...)
	var shifts []shift
	for i < len(text) {
		// Copy what needs no normalisation in one go.
		if n := plainPrefix(text[i:], jsonMode); n > 0 {
			buf = append(buf, text[i:i+n]...)
			i += n
			continue
		}
		var r rune
		size := 1
		if c := text[i]; c < utf8.RuneSelf {
			r = rune(c)
			if c == '\\' && jsonMode {
				r, size = jsonEscape(text, i)
			}
		} else {
			r, size = utf8.DecodeRuneInString(text[i:])
			if r == utf8.RuneError && size == 1 {
				r = ' '
			}
		}
		b, keep := mapRune(r)
		if keep {
			buf = append(buf, b)
		}
		i += size
		if keep && size == 1 {
			continue
		}
		// The next byte of buf comes from text[i]: record the change of offset.
		sh := shift{int32(len(buf)), int32(i)}
		if n := len(shifts); n > 0 && shifts[n-1].norm == sh.norm {
			shifts[n-1] = sh
		} else {
			shifts = append(shifts, sh)
		}
	}
	return normText{s: string(buf), orig: text, shifts: shifts}
}

// plainPrefix returns the length of the prefix of text that needs no
// normalisation.
func plainPrefix(text string, jsonMode bool) int {
	for i := 0; i < len(text); i++ {
		c := text[i]
		if c >= 0x7f || (c < 0x20 && c != '\t' && c != '\n' && c != '\r') || (c == '\\' && jsonMode) {
			return i
		}
	}
	return len(text)
}

func looksLikeJSON(text string) bool {
	for i := 0; i < len(text); i++ {
		switch text[i] {
		case ' ', '\t', '\n', '\r':
			continue
		case '{', '[':
			return true
		}
		return false
	}
	return false
}

// jsonEscape decodes the JSON escape at text[i] == '\\'. Escapes that only
// format text decode to a space.
func jsonEscape(text string, i int) (rune, int) {
	if i+1 >= len(text) {
		return '\\', 1
	}
	switch text[i+1] {
	case '"', '\\', '/':
		return rune(text[i+1]), 2
	case 'b', 'f', 'n', 'r', 't':
		return ' ', 2
	case 'u':
		r, ok := hex4(text, i+2)
		if !ok {
			return '\\', 1
		}
		if utf16IsHigh(r) {
			if lo, ok := hex4(text, i+8); ok && i+7 < len(text) && text[i+6] == '\\' && text[i+7] == 'u' && utf16IsLow(lo) {
				return (r-0xD800)<<10 + (lo - 0xDC00) + 0x10000, 12
			}
		}
		if utf16IsHigh(r) || utf16IsLow(r) {
			return ' ', 6
		}
		return r, 6
	}
	return '\\', 1
}

func utf16IsHigh(r rune) bool { return r >= 0xD800 && r < 0xDC00 }
func utf16IsLow(r rune) bool  { return r >= 0xDC00 && r < 0xE000 }

func hex4(s string, i int) (rune, bool) {
	if i+4 > len(s) {
		return 0, false
	}
	var r rune
	for k := i; k < i+4; k++ {
		d, ok := hexDigit(s[k])
		if !ok {
			return 0, false
		}
		r = r<<4 | rune(d)
	}
	return r, true
}

func hexDigit(c byte) (byte, bool) {
	switch {
	case isDigit(c):
		return c - '0', true
	case c|0x20 >= 'a' && c|0x20 <= 'f':
		return c | 0x20 - 'a' + 10, true
	}
	return 0, false
}

// mapRune maps one character of the text to its normalised byte, or drops it.
func mapRune(r rune) (byte, bool) {
	switch {
	case r == '\t' || r == '\n' || r == '\r':
		return byte(r), true
	case r < 0x20 || r == 0x7f:
		return ' ', true
	case r < 0x7f:
		return byte(r), true
	case hiddenRune(r):
		return 0, false
	case r >= 0xFF01 && r <= 0xFF5E:
		return byte(r - 0xFEE0), true
	case r == 0x2010 || r == 0x2011 || r == 0x2212:
		return '-', true
	case unicode.IsSpace(r):
		return ' ', true
	case unicode.Is(unicode.Sc, r):
		return '$', true
	case unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.IsMark(r):
		return nonASCIIWord, true
	}
	return ' ', true
}

// hiddenRune reports whether r is an invisible character that is dropped.
func hiddenRune(r rune) bool {
	switch {
	case r == 0x00AD, r == 0xFEFF:
		return true
	case r >= 0x200B && r <= 0x200F, r >= 0x202A && r <= 0x202E,
		r >= 0x2060 && r <= 0x2064, r >= 0x2066 && r <= 0x2069:
		return true
	}
	return false
}

// Character classes of the normalised text.

func isDigit(c byte) bool  { return c-'0' < 10 }
func isLetter(c byte) bool { return (c|0x20)-'a' < 26 }
func isAlnum(c byte) bool  { return isDigit(c) || isLetter(c) }
func isLower(c byte) bool  { return c-'a' < 26 }
func isUpper(c byte) bool  { return c-'A' < 26 }

// isWordByte reports whether c continues a word: a value must not be
// directly followed by one.
func isWordByte(c byte) bool { return isAlnum(c) || c == '_' || c == nonASCIIWord }

// isJoin reports whether c belongs to a run that values cannot start inside.
func isJoin(c byte) bool {
	switch c {
	case '_', '.', '-', '/', '\\', '~', '+', '%', nonASCIIWord:
		return true
	}
	return isAlnum(c)
}

func isTokenByte(c byte) bool { return isAlnum(c) || c == '_' || c == '.' || c == '-' }

func isURLByte(c byte) bool {
	if c <= ' ' || c >= 0x7f {
		return false
	}
	switch c {
	case '"', '\'', '<', '>', '`', '\\':
		return false
	}
	return true
}

func digitRun(s string, i int) int {
	for i < len(s) && isDigit(s[i]) {
		i++
	}
	return i
}

// significantDigits counts the digits of a canonical decimal, not counting
// the 0 of a number below 1.
func significantDigits(body string) int {
	n := len(body)
	if strings.Contains(body, ".") {
		n--
	}
	if strings.HasPrefix(body, "0.") {
		n--
	}
	return n
}

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

// The scan.

// scan yields the values of the text.
func (t *normText) scan(yield func(Value)) {
	s := t.s
	for i := 0; i < len(s); {
		c := s[i]
		if i > 0 && isJoin(s[i-1]) {
			i++
			continue
		}
		start := i
		if c == '-' && i+1 < len(s) && isDigit(s[i+1]) {
			start = i + 1 // a sign is not part of a number
		}
		if m, ok := recognise(s, start, false); ok {
			for _, f := range m.vals[:m.n] {
				emit(f, t.raw(start, m.end), yield)
			}
			i = max(m.end, start+1)
			continue
		}
		if isJoin(c) {
			i = t.skip(s, i, yield)
		} else {
			i++
		}
	}
}

// skip passes over the run at i that no recogniser matched, trying the pieces
// of the run after a / \ ~ + or % as values of their own.
func (t *normText) skip(s string, i int, yield func(Value)) int {
	j := i + 1
	for j < len(s) && isJoin(s[j]) {
		j++
	}
	for k := i + 1; k < j; k++ {
		switch s[k-1] {
		case '/', '\\', '~', '+', '%':
		default:
			continue
		}
		if !isAlnum(s[k]) {
			continue
		}
		if m, ok := recognise(s, k, true); ok {
			for _, f := range m.vals[:m.n] {
				emit(f, t.raw(k, m.end), yield)
			}
			k = max(m.end, k+1) - 1
			j = max(j, m.end)
		}
	}
	return j
}

// recognise tries the recognisers at a start position. On a piece of a run
// paths are not tried: the run was tried as a path, and trying each of its
// suffixes would cost quadratic time. A cheap look at the run of join bytes
// from i rules out most recognisers before they scan. Every recogniser scans
// at most to the end of the run (the piece), a bounded distance, or what it
// consumes.
func recognise(s string, i int, piece bool) (match, bool) {
	c := s[i]
	switch {
	case c == '(' || c == '+':
		return matchPhone(s, i)
	case c == '/' || c == '~' || c == '.' || c == '\\':
		return matchPath(s, i)
	case !isAlnum(c) && c != '_':
		return match{}, false
	}
	// The run from i; for a piece, only up to the next piece of the run, so
	// that looking at every piece stays linear.
	end, dot, slash := i+1, false, false
	for ; end < len(s) && isJoin(s[end]); end++ {
		c := s[end]
		if piece && (c == '/' || c == '\\' || c == '~' || c == '+' || c == '%') {
			break
		}
		dot = dot || c == '.'
		slash = slash || c == '/' || c == '\\'
	}
	if l := c | 0x20; l == 'h' || l == 'w' {
		if m, ok := matchURL(s, i); ok {
			return m, true
		}
	}
	if isDigit(c) {
		if e, ok := matchDateTime(s, i); ok {
			return match{end: e}, true
		}
	}
	if piece || (end < len(s) && s[end] == '@') { // a local part may hold + and %
		if m, ok := matchEmail(s, i); ok {
			return m, true
		}
	}
	if end == i+4 && isLetter(c) {
		if m, ok := matchIBAN(s, i); ok {
			return m, true
		}
	}
	if dot {
		if m, ok := matchDomain(s, i); ok {
			return m, true
		}
	}
	if !piece && (slash || end == i+1 && end < len(s) && s[end] == ':') {
		if m, ok := matchPath(s, i); ok {
			return m, true
		}
	}
	if isDigit(c) {
		if m, ok := matchNumber(s, i); ok {
			return m, true
		}
	}
	if end-i >= 8 {
		return matchToken(s, i)
	}
	return match{}, false
}

// URLs and hosts.

func matchURL(s string, i int) (match, bool) {
	rest := i
	switch {
	case hasPrefixFold(s[i:], "https://"):
		rest = i + len("https://")
	case hasPrefixFold(s[i:], "http://"):
		rest = i + len("http://")
	case hasPrefixFold(s[i:], "www.") && i+4 < len(s) && isAlnum(s[i+4]):
	default:
		return match{}, false
	}
	end := urlEnd(s, rest)
	m := match{end: max(end, rest)}
	host, port, tail, ok := splitURL(s[rest:m.end])
	if !ok {
		return m, true // consumed, yields nothing
	}
	hk := hostKey(host)
	m.addFound(urlValue(hk, port, tail))
	m.add(KindHost, hk)
	return m, true
}

// urlEnd returns where the URL text starting at start ends.
func urlEnd(s string, start int) int {
	var paren, bracket, brace int
	j := start
scan:
	for ; j < len(s); j++ {
		switch c := s[j]; c {
		case '(':
			paren++
		case '[':
			bracket++
		case '{':
			brace++
		case ')':
			if paren == 0 {
				break scan
			}
			paren--
		case ']':
			if bracket == 0 {
				break scan
			}
			bracket--
		case '}':
			if brace == 0 {
				break scan
			}
			brace--
		default:
			if !isURLByte(c) {
				break scan
			}
		}
	}
	for j > start {
		switch s[j-1] {
		case '.', ',', ';', ':', '!', '?':
			j--
			continue
		}
		break
	}
	return j
}

// splitURL splits the part of a URL after its scheme into a lower-cased host,
// a port and the rest (path, query, fragment).
func splitURL(u string) (host, port, tail string, ok bool) {
	auth := u
	if k := strings.IndexAny(u, "/?#"); k >= 0 {
		auth, tail = u[:k], u[k:]
	}
	if at := strings.LastIndexByte(auth, '@'); at >= 0 {
		auth = auth[at+1:]
	}
	if strings.HasPrefix(auth, "[") {
		e := strings.IndexByte(auth, ']')
		if e < 0 {
			return "", "", "", false
		}
		host, auth = strings.ToLower(auth[1:e]), auth[e+1:]
		if host == "" || strings.Trim(host, "0123456789abcdef:.") != "" || !strings.Contains(host, ":") {
			return "", "", "", false
		}
		if auth != "" {
			if auth[0] != ':' {
				return "", "", "", false
			}
			port = auth[1:]
		}
	} else {
		host, port, _ = strings.Cut(auth, ":")
		host = strings.ToLower(strings.TrimSuffix(host, "."))
		if !validHostName(host) {
			return "", "", "", false
		}
	}
	if len(port) > 5 || strings.Trim(port, "0123456789") != "" {
		return "", "", "", false
	}
	return host, port, tail, true
}

// validHostName reports whether h (lower case) is a DNS name of one or more
// labels or an IPv4 address.
func validHostName(h string) bool {
	if h == "" || len(h) > 253 {
		return false
	}
	for label := range strings.SplitSeq(h, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			if c := label[i]; !isAlnum(c) && c != '-' {
				return false
			}
		}
	}
	return true
}

// hostKey is the key body of a lower-case host: without a leading "www.".
func hostKey(h string) string {
	if rest, ok := strings.CutPrefix(h, "www."); ok && strings.Contains(rest, ".") {
		return rest
	}
	return h
}

// urlValue is the value of a URL. Its key body is host, port unless default, path and
// query, without fragment, lower-cased, without trailing "/" or "?".
func urlValue(hk, port, tail string) found {
	if k := strings.IndexByte(tail, '#'); k >= 0 {
		tail = tail[:k]
	}
	var b strings.Builder
	b.Grow(2 + len(hk) + len(port) + len(tail) + 3)
	b.WriteString(KindURL.prefix())
	if strings.Contains(hk, ":") {
		b.WriteString("[" + hk + "]")
	} else {
		b.WriteString(hk)
	}
	if port != "" && port != "80" && port != "443" {
		b.WriteString(":" + port)
	}
	for k := 0; k < len(tail); k++ {
		c := tail[k]
		if c == '%' && k+2 < len(tail) {
			hi, ok1 := hexDigit(tail[k+1])
			lo, ok2 := hexDigit(tail[k+2])
			if r := hi<<4 | lo; ok1 && ok2 && unreserved(r) {
				c = r
				k += 2
			}
		}
		if isUpper(c) {
			c |= 0x20
		}
		b.WriteByte(c)
	}
	// The prefix ends in ':', so trimming never reaches into it.
	key := b.String()
	for {
		switch {
		case strings.HasSuffix(key, "/"):
			key = key[:len(key)-1]
			continue
		case strings.HasSuffix(key, "?"):
			key = key[:len(key)-1]
			continue
		}
		return keyed(KindURL, key)
	}
}

func unreserved(c byte) bool {
	return isAlnum(c) || c == '-' || c == '.' || c == '_' || c == '~'
}

// matchDomain matches a bare host name or IPv4 address with an optional port
// and path.
func matchDomain(s string, i int) (match, bool) {
	j := i
	for j < len(s) && (isAlnum(s[j]) || s[j] == '-' || s[j] == '.') {
		j++
	}
	for j > i && (s[j-1] == '.' || s[j-1] == '-') {
		j--
	}
	name := s[i:j]
	ip := isIPv4(name)
	if (j < len(s) && isWordByte(s[j])) || (!ip && !isBareDomain(name)) {
		return match{}, false
	}
	if j < len(s) && s[j] == '@' && !ip {
		// The local part of an address that is not valid.
		return match{end: j}, true
	}
	hk := strings.ToLower(name)
	if !ip {
		hk = hostKey(hk)
	}
	e, port := j, ""
	if e+1 < len(s) && s[e] == ':' && isDigit(s[e+1]) {
		k := digitRun(s, e+1)
		if k-e-1 <= 5 && (k == len(s) || !isWordByte(s[k])) {
			port, e = s[e+1:k], k
		}
	}
	m := match{end: e}
	if e < len(s) && s[e] == '/' {
		m.end = max(urlEnd(s, e), e)
		if tail := s[e+1 : m.end]; !ip || port != "" || len(tail) == 0 || len(tail) > 2 || digitRun(tail, 0) != len(tail) {
			m.addFound(urlValue(hk, port, s[e:m.end]))
		} // else a CIDR block: the host alone
	}
	m.add(KindHost, hk)
	return m, true
}

func isIPv4(s string) bool {
	if s == "" || !isDigit(s[0]) {
		return false
	}
	parts := 0
	for p := range strings.SplitSeq(s, ".") {
		parts++
		if p == "" || len(p) > 3 || parts > 4 {
			return false
		}
		n := 0
		for i := 0; i < len(p); i++ {
			if !isDigit(p[i]) {
				return false
			}
			n = n*10 + int(p[i]-'0')
		}
		if n > 255 {
			return false
		}
	}
	return parts == 4
}

// isBareDomain reports whether name, found without a scheme, is a domain.
func isBareDomain(name string) bool {
	tld, ok := domainLabels(name)
	if !ok || len(tld) > 24 {
		return false
	}
	lower, upper := false, false
	for i := 0; i < len(tld); i++ {
		lower = lower || isLower(tld[i])
		upper = upper || isUpper(tld[i])
	}
	return !(lower && upper) && !fileExt(strings.ToLower(tld))
}

// domainLabels checks that name is two or more DNS labels, the last letters
// only and at least two long, and returns the last.
func domainLabels(name string) (tld string, ok bool) {
	if len(name) > 253 || !strings.Contains(name, ".") {
		return "", false
	}
	for label := range strings.SplitSeq(name, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return "", false
		}
		tld = label
	}
	if len(tld) < 2 {
		return "", false
	}
	for i := 0; i < len(tld); i++ {
		if !isLetter(tld[i]) {
			return "", false
		}
	}
	return tld, true
}

// fileExt reports whether a lower-case name ending is a common file
// extension, which a bare name.ext is more likely to be than a domain.
func fileExt(e string) bool {
	switch e {
	case "txt", "pdf", "doc", "docx", "xls", "xlsx", "csv", "json", "md", "png", "jpg", "jpeg",
		"gif", "html", "htm", "xml", "yaml", "yml", "zip", "gz", "tar", "js", "ts", "go", "py",
		"rb", "java", "c", "h", "cpp", "sh", "log", "ini", "cfg", "conf", "eml", "ics", "pptx",
		"ppt", "odt", "rtf", "svg", "mp3", "mp4", "wav", "mov", "exe", "dll", "bin", "bak", "tmp":
		return true
	}
	return false
}

// E-mail addresses.

func isLocalByte(c byte) bool {
	return isAlnum(c) || c == '.' || c == '_' || c == '%' || c == '+' || c == '-'
}

func matchEmail(s string, i int) (match, bool) {
	j := i
	for j < len(s) && j-i <= 64 && isLocalByte(s[j]) {
		j++
	}
	if j == i || j >= len(s) || s[j] != '@' {
		return match{}, false
	}
	local := s[i:j]
	if local[0] == '.' || local[len(local)-1] == '.' || strings.Contains(local, "..") {
		return match{}, false
	}
	k := j + 1
	for k < len(s) && (isAlnum(s[k]) || s[k] == '-' || s[k] == '.') {
		k++
	}
	for k > j+1 && (s[k-1] == '.' || s[k-1] == '-') {
		k--
	}
	if k < len(s) && (isWordByte(s[k]) || s[k] == '@') {
		return match{}, false
	}
	domain := s[j+1 : k]
	if _, ok := domainLabels(domain); !ok {
		return match{}, false
	}
	m := match{end: k}
	m.add(KindEmail, strings.ToLower(s[i:k]))
	m.add(KindHost, hostKey(strings.ToLower(domain)))
	return m, true
}

// IBANs written in groups.

func matchIBAN(s string, i int) (match, bool) {
	if i+4 > len(s) || !isLetter(s[i]) || !isLetter(s[i+1]) || !isDigit(s[i+2]) || !isDigit(s[i+3]) ||
		(i+4 < len(s) && isWordByte(s[i+4])) {
		return match{}, false
	}
	var buf [34]byte
	n := 0
	for k := range 4 {
		buf[n] = s[i+k] | 0x20
		n++
	}
	var ends [16]int // ends[g]: text end and length after group g
	var lens [16]int
	ng := 0
	for j := i + 4; ng < len(ends) && j+1 < len(s) && s[j] == ' '; {
		k := j + 1
		for k < len(s) && isAlnum(s[k]) && k-j-1 < 5 {
			k++
		}
		l := k - j - 1
		if l == 0 || l > 4 || n+l > len(buf) || (k < len(s) && isWordByte(s[k])) {
			break
		}
		for _, c := range []byte(s[j+1 : k]) {
			if isUpper(c) {
				c |= 0x20
			}
			buf[n] = c
			n++
		}
		ends[ng], lens[ng] = k, n
		ng++
		j = k
		if l < 4 {
			break
		}
	}
	for g := ng - 1; g >= 0; g-- {
		if lens[g] >= 15 && ibanValid(buf[:lens[g]]) {
			m := match{end: ends[g]}
			m.addFound(keyedBytes(KindIdent, buf[:lens[g]]))
			return m, true
		}
	}
	return match{}, false
}

// ibanValid checks the ISO 7064 mod-97 checksum of a lower-case IBAN.
func ibanValid(b []byte) bool {
	v := 0
	for k := range b {
		c := b[(k+4)%len(b)]
		switch {
		case isDigit(c):
			v = (v*10 + int(c-'0')) % 97
		case isLower(c):
			v = (v*100 + int(c-'a') + 10) % 97
		default:
			return false
		}
	}
	return v == 1
}

// Paths.

func isPathByte(c byte) bool {
	return isAlnum(c) || c == '.' || c == '_' || c == '-' || c == '~' || c == '/' || c == '\\' || c == '+' || c == '%'
}

func matchPath(s string, i int) (match, bool) {
	j := i
	drive := false
	if i+2 < len(s) && isLetter(s[i]) && s[i+1] == ':' && (s[i+2] == '\\' || s[i+2] == '/') {
		drive = true
		j = i + 2
	}
	for j < len(s) && isPathByte(s[j]) {
		j++
	}
	for j > i && s[j-1] == '.' && (j-i < 2 || s[j-2] != '.') {
		j--
	}
	if j < len(s) && s[j] == nonASCIIWord {
		return match{}, false
	}
	p := s[i:j]
	if strings.Contains(p, "\\") {
		// Backslashes separate only in Windows paths: C:\x, \\server\x, .\x.
		// Elsewhere they are more often escapes ("line\nline").
		if !drive && !strings.HasPrefix(p, "\\\\") && !strings.HasPrefix(p, ".\\") && !strings.HasPrefix(p, "..\\") {
			return match{}, false
		}
		p = strings.ReplaceAll(p, "\\", "/")
	}
	if !strings.Contains(p, "/") {
		return match{}, false
	}
	abs := drive || p[0] == '/' || strings.HasPrefix(p, "~/") || strings.HasPrefix(p, "./") || strings.HasPrefix(p, "../")
	segs, long, named := 0, false, false
	last := ""
	for seg := range strings.SplitSeq(p, "/") {
		if seg == "" || seg == "." || seg == ".." || seg == "~" {
			continue
		}
		segs++
		last = seg
		letter := strings.IndexFunc(seg, func(r rune) bool { return r < utf8.RuneSelf && isLetter(byte(r)) }) >= 0
		named = named || (letter && len(seg) >= 2)
		long = long || (letter && len(seg) >= 3)
	}
	switch {
	case abs:
		if !named {
			return match{}, false
		}
	case hasExt(last):
	case segs >= 3 && long:
	default:
		return match{}, false
	}
	key := strings.ToLower(path.Clean(p))
	if key == "/" || key == "." {
		return match{}, false
	}
	m := match{end: j}
	m.add(KindPath, key)
	return m, true
}

// hasExt reports whether a path segment is a file name with an extension.
func hasExt(seg string) bool {
	k := strings.LastIndexByte(seg, '.')
	if k <= 0 || len(seg)-k-1 < 1 || len(seg)-k-1 > 5 {
		return false
	}
	letter := false
	for i := k + 1; i < len(seg); i++ {
		if !isAlnum(seg[i]) {
			return false
		}
		letter = letter || isLetter(seg[i])
	}
	return letter
}

// Dates and times.

// matchDateTime matches a date or time at i and returns its end.
func matchDateTime(s string, i int) (int, bool) {
	d1 := digitRun(s, i)
	n1 := d1 - i
	e := -1
	switch {
	case n1 == 4 && d1+1 < len(s) && (s[d1] == '-' || s[d1] == '/' || s[d1] == '.'):
		sep := s[d1]
		d2 := digitRun(s, d1+1)
		if d2-d1-1 == 4 && sep != '.' && yearLike(s[i:d1]) && yearLike(s[d1+1:d2]) {
			e = d2 // year range
			break
		}
		if d2-d1-1 < 1 || d2-d1-1 > 2 || d2+1 >= len(s) || s[d2] != sep {
			break
		}
		d3 := digitRun(s, d2+1)
		if d3-d2-1 < 1 || d3-d2-1 > 2 || atoi(s[d1+1:d2]) < 1 || atoi(s[d1+1:d2]) > 12 || atoi(s[d2+1:d3]) < 1 || atoi(s[d2+1:d3]) > 31 {
			break
		}
		e = d3
		if e+1 < len(s) && (s[e] == 'T' || s[e] == 't') && isDigit(s[e+1]) {
			if te, ok := matchTime(s, e+1); ok {
				e = te
			}
		}
	case n1 >= 1 && n1 <= 2 && d1+1 < len(s) && (s[d1] == '.' || s[d1] == '/' || s[d1] == '-'):
		sep := s[d1]
		d2 := digitRun(s, d1+1)
		if d2-d1-1 < 1 || d2-d1-1 > 2 || d2+1 >= len(s) || s[d2] != sep {
			break
		}
		d3 := digitRun(s, d2+1)
		a, b := atoi(s[i:d1]), atoi(s[d1+1:d2])
		if d3-d2-1 != 4 || a < 1 || b < 1 || a > 31 || b > 31 || min(a, b) > 12 {
			break
		}
		e = d3
	case n1 == 8 && yearLike(s[i:i+4]):
		mo, da := atoi(s[i+4:i+6]), atoi(s[i+6:i+8])
		if mo < 1 || mo > 12 || da < 1 || da > 31 {
			break
		}
		e = d1
		if e+7 <= len(s) && (s[e] == 'T' || s[e] == 't') && digitRun(s, e+1) == e+7 {
			e += 7
			if e < len(s) && (s[e] == 'Z' || s[e] == 'z') {
				e++
			}
		}
	case n1 >= 1 && n1 <= 2:
		if te, ok := matchTime(s, i); ok {
			e = te
		}
	}
	if e < 0 || !dateBoundary(s, e) {
		return 0, false
	}
	return e, true
}

func dateBoundary(s string, e int) bool {
	if e >= len(s) {
		return true
	}
	c := s[e]
	if isWordByte(c) {
		return false
	}
	switch c {
	case '.', '/', '-', ':', ',':
		return e+1 >= len(s) || !isDigit(s[e+1])
	}
	return true
}

// matchTime matches HH:MM, HH:MM:SS(.fff) and an optional zone (Z, +HH:MM).
func matchTime(s string, i int) (int, bool) {
	d1 := digitRun(s, i)
	if d1-i < 1 || d1-i > 2 || atoi(s[i:d1]) > 24 || d1+2 >= len(s) || s[d1] != ':' || digitRun(s, d1+1) != d1+3 || atoi(s[d1+1:d1+3]) > 59 {
		return 0, false
	}
	e := d1 + 3
	if e+2 < len(s) && s[e] == ':' && digitRun(s, e+1) == e+3 {
		e += 3
		if e+1 < len(s) && s[e] == '.' && isDigit(s[e+1]) {
			e = digitRun(s, e+1)
		}
	}
	switch {
	case e < len(s) && (s[e] == 'Z' || s[e] == 'z'):
		e++
	case e+2 < len(s) && (s[e] == '+' || s[e] == '-') && digitRun(s, e+1) >= e+3:
		k := digitRun(s, e+1)
		if k-e-1 == 2 && k+2 < len(s) && s[k] == ':' && digitRun(s, k+1) == k+3 {
			k += 3
		}
		if k-e-1 <= 4 || s[e+3] == ':' {
			e = k
		}
	}
	return e, true
}

func yearLike(s string) bool {
	return len(s) == 4 && s >= "1900" && s <= "2100"
}

// atoi converts a short run of digits.
func atoi(s string) int {
	n := 0
	for i := 0; i < len(s); i++ {
		n = n*10 + int(s[i]-'0')
	}
	return n
}

// Numbers.

func matchNumber(s string, i int) (match, bool) {
	if m, ok := matchStructuredAmount(s, i); ok {
		return m, true
	}
	if m, ok := matchPhone(s, i); ok {
		return m, true
	}
	return matchPlainNumber(s, i)
}

// numBoundary reports whether a number may end at e. listOK lets a comma and
// a digit follow (a list of numbers).
func numBoundary(s string, e int, listOK bool) bool {
	if e >= len(s) {
		return true
	}
	c := s[e]
	if isLetter(c) {
		return currencyCodeAt(s, e)
	}
	if isWordByte(c) {
		return false
	}
	switch c {
	case '.', '-', '/', ':':
		return e+1 >= len(s) || !isDigit(s[e+1])
	case ',':
		return listOK || e+1 >= len(s) || !isDigit(s[e+1])
	}
	return true
}

// currencyCodeAt reports whether a currency code is at s[e:], not followed by
// a letter or digit.
func currencyCodeAt(s string, e int) bool {
	return e+3 <= len(s) && currencyCode(s[e:e+3]) && (e+3 == len(s) || !isWordByte(s[e+3]))
}

// currencyCode reports whether c, three bytes of a text, is a currency code written
// all in upper or all in lower case. It compares in a buffer of its own rather than
// upper-casing c, which would allocate for every word before or after a number.
func currencyCode(c string) bool {
	if len(c) != 3 {
		return false
	}
	var up [3]byte
	upper, lower := true, true
	for i := range len(up) {
		switch b := c[i]; {
		case isUpper(b):
			lower = false
			up[i] = b
		case isLower(b):
			upper = false
			up[i] = b - ('a' - 'A')
		default:
			return false
		}
	}
	switch string(up[:]) {
	case "EUR", "USD", "GBP", "CHF", "JPY", "CAD", "AUD", "NZD", "SEK", "NOK", "DKK", "PLN",
		"CZK", "HUF", "INR", "CNY", "BRL", "MXN", "ZAR", "SGD", "HKD":
		return upper || lower
	}
	return false
}

// currencyBefore reports whether a currency symbol or code directly precedes
// the number at i (a space may separate them).
func currencyBefore(s string, i int) bool {
	j := i
	if j > 0 && s[j-1] == ' ' {
		j--
	}
	if j > 0 && s[j-1] == '$' {
		return true
	}
	return j >= 3 && currencyCode(s[j-3:j]) && (j == 3 || !isWordByte(s[j-4]))
}

// currencyAfter reports whether a currency symbol or code directly follows
// the number ending at e (a space may separate them).
func currencyAfter(s string, e int) bool {
	if e < len(s) && s[e] == ' ' {
		e++
	}
	if e < len(s) && s[e] == '$' {
		return true
	}
	return currencyCodeAt(s, e)
}

// thousands reads groups of sep and exactly three digits after a first group
// ending at j; it returns where they end and how many there were (at most 6).
func thousands(s string, j int, sep byte) (int, int) {
	n := 0
	for n < 6 && j+3 < len(s) && s[j] == sep && digitRun(s, j+1) == j+4 {
		j += 4
		n++
	}
	return j, n
}

func matchStructuredAmount(s string, i int) (match, bool) {
	d1 := digitRun(s, i)
	cur := currencyBefore(s, i)
	if d1-i <= 3 {
		// European: 1.250,00, or 1.250.000 next to a currency.
		if e, n := thousands(s, d1, '.'); n > 0 {
			if e+2 < len(s) && s[e] == ',' && digitRun(s, e+1) == e+3 && numBoundary(s, e+3, false) {
				return numberMatch(s[i:e], s[e+1:e+3], e+3, true), true
			}
			if numBoundary(s, e, false) && (cur || currencyAfter(s, e)) {
				return numberMatch(s[i:e], "", e, true), true
			}
		}
		// Comma thousands: 1,250.00 and 1,250.
		if e, n := thousands(s, d1, ','); n > 0 {
			frac, end := "", e
			if e+1 < len(s) && s[e] == '.' && isDigit(s[e+1]) {
				end = digitRun(s, e+1)
				frac = s[e+1 : end]
			}
			if numBoundary(s, end, false) {
				cur := cur || currencyAfter(s, end)
				array := (i > 0 && (s[i-1] == '[' || (s[i-1] == ',' && i > 1 && isDigit(s[i-2])))) ||
					(end < len(s) && s[end] == ']')
				switch {
				case !cur && unitAfter(s, end):
					return match{end: end}, true
				case cur || frac != "" || !array:
					return numberMatch(s[i:e], frac, end, true), true
				}
			}
		}
	}
	// European decimals next to a currency: 98,70 €.
	if d1+2 < len(s) && s[d1] == ',' && digitRun(s, d1+1) == d1+3 && numBoundary(s, d1+3, false) &&
		(cur || currencyAfter(s, d1+3)) {
		return numberMatch(s[i:d1], s[d1+1:d1+3], d1+3, true), true
	}
	return match{}, false
}

func matchPlainNumber(s string, i int) (match, bool) {
	d1 := digitRun(s, i)
	end, frac := d1, ""
	if d1+1 < len(s) && s[d1] == '.' && isDigit(s[d1+1]) {
		end = digitRun(s, d1+1)
		frac = s[d1+1 : end]
	}
	if !numBoundary(s, end, true) {
		return match{}, false
	}
	cur := currencyBefore(s, i) || currencyAfter(s, end)
	if !cur && unitAfter(s, end) {
		return match{end: end}, true
	}
	return numberMatch(s[i:d1], frac, end, cur || frac != ""), true
}

// unitAfter reports whether a unit of measure or a percent sign follows the
// number ending at e: a quantity, not an amount.
func unitAfter(s string, e int) bool {
	if e < len(s) && s[e] == ' ' {
		e++
	}
	if e < len(s) && s[e] == '%' {
		return true
	}
	k := e
	for k < len(s) && k-e <= 7 && isLetter(s[k]) {
		k++
	}
	if k == e || (k < len(s) && isWordByte(s[k])) {
		return false
	}
	switch strings.ToLower(s[e:k]) {
	case "g", "kg", "mg", "t", "ml", "cl", "dl", "l", "km", "m", "cm", "mm", "mi", "ft",
		"kwh", "mwh", "kw", "mw", "w", "v", "hz", "khz", "mhz", "ghz",
		"kb", "mb", "gb", "tb", "kib", "mib", "gib", "tib",
		"ms", "s", "sec", "secs", "min", "mins", "h", "hrs", "hours", "minutes", "seconds",
		"metres", "meters", "kcal", "cal", "px", "pt", "dpi", "rpm", "kmh", "mph":
		return true
	}
	return false
}

// numberMatch consumes a number up to end, finding it if distinctive.
func numberMatch(intPart, frac string, end int, form bool) match {
	m := match{end: end}
	if f, ok := canonNumber(intPart, frac, form); ok {
		m.addFound(f)
	}
	return m
}

// canonNumber is the number written with integer part intPart (separators are
// dropped) and fraction frac, its key body the canonical decimal, and whether it is
// distinctive. form says it was written as an amount.
func canonNumber(intPart, frac string, form bool) (found, bool) {
	if len(intPart) > 1 && intPart[0] == '0' {
		return found{}, false // 0176, 0100: a code or a zone, not an amount
	}
	prefix := KindNumber.prefix()
	var b strings.Builder
	b.Grow(len(prefix) + len(intPart) + len(frac) + 1)
	b.WriteString(prefix)
	for i := 0; i < len(intPart); i++ {
		if c := intPart[i]; isDigit(c) && (c != '0' || b.Len() > len(prefix)) {
			b.WriteByte(c)
		}
	}
	if b.Len() == len(prefix) {
		b.WriteByte('0')
	}
	frac = strings.TrimRight(frac, "0")
	if frac != "" {
		b.WriteByte('.')
		b.WriteString(frac)
	}
	f := keyed(KindNumber, b.String())
	if significantDigits(f.body) < 3 || len(f.body)+2 > MaxKeyBytes {
		return found{}, false
	}
	if frac == "" && !form && yearLike(f.body) {
		return found{}, false
	}
	return f, true
}

// matchPhone matches an account, card or phone number: at least 7 digits in
// groups.
func matchPhone(s string, i int) (match, bool) {
	const maxScan = 48
	limit := min(len(s), i+maxScan)
	type group struct {
		start, end int
		sep        byte // separator before the group; 0 for none
	}
	var groups [16]group
	ng := 0
	j := i
	lead := false
	if s[j] == '+' {
		lead = true
		j++
	}
	var sep byte
	for j < limit && ng < len(groups) {
		gs := j
		switch {
		case s[j] == '(':
			k := digitRun(s, j+1)
			if k == j+1 || k-j-1 > 5 || k >= limit || s[k] != ')' {
				break
			}
			if ng == 0 {
				lead = true
			}
			j = k + 1
		case isDigit(s[j]):
			j = digitRun(s, j)
			if j > limit {
				j = limit
			}
		}
		if j == gs {
			break
		}
		groups[ng] = group{gs, j, sep}
		ng++
		if j < limit && (s[j] == '(' || (s[j-1] == ')' && isDigit(s[j]))) {
			sep = 0
			continue
		}
		if j+1 < limit && (s[j] == ' ' || s[j] == '-' || s[j] == '.' || s[j] == '/') && (isDigit(s[j+1]) || s[j+1] == '(') {
			sep = s[j]
			j++
			continue
		}
		break
	}
	if ng == 0 {
		return match{}, false
	}
	spaceOK := lead || s[groups[0].start] == '0'
	if !spaceOK && ng >= 3 {
		l := groups[0].end - groups[0].start
		spaceOK = l == 3 || l == 4
		for g := 1; g < ng && spaceOK; g++ {
			gl := groups[g].end - groups[g].start
			spaceOK = gl == l || (g == ng-1 && gl <= l)
		}
	}
	if !spaceOK {
		for g := 1; g < ng; g++ {
			if groups[g].sep == ' ' {
				ng = g
				break
			}
		}
	}
	// A last group glued to a word, or followed by a decimal part, is not part
	// of the number.
	for ng > 0 {
		e := groups[ng-1].end
		if e < len(s) && (isWordByte(s[e]) || ((s[e] == '.' || s[e] == ',') && e+1 < len(s) && isDigit(s[e+1]))) {
			ng--
			continue
		}
		break
	}
	if ng == 0 || (ng == 2 && groups[1].sep == '.') {
		return match{}, false
	}
	end := groups[ng-1].end
	if e, ok := matchDateTime(s[:end], i); (ok && e == end) || isIPv4(s[i:end]) {
		// What is left once a glued group is dropped is a date or an
		// address.
		return match{}, false
	}
	var buf [maxScan]byte
	digits := buf[:0]
	for k := i; k < end; k++ {
		if isDigit(s[k]) {
			digits = append(digits, s[k])
		}
	}
	if len(digits) < 7 {
		return match{}, false
	}
	m := match{end: end}
	ident := keyedBytes(KindIdent, digits)
	m.addFound(ident)
	if ng == 1 && !lead {
		if f, ok := canonNumber(ident.body, "", false); ok {
			m.addFound(f)
		}
	}
	return m, true
}

// Distinctive tokens.

// matchToken matches a distinctive token at i. Its end is the end of the run
// of token bytes even when it does not match.
func matchToken(s string, i int) (match, bool) {
	j := i
	for j < len(s) && isTokenByte(s[j]) {
		j++
	}
	m := match{end: j}
	if j < len(s) && s[j] == nonASCIIWord {
		return m, false
	}
	e := j
	for e > i && (s[e-1] == '.' || s[e-1] == '-') {
		e--
	}
	tok := s[i:e]
	if len(tok) < 8 || len(tok) > MaxKeyBytes || !distinctiveToken(tok) {
		return m, false
	}
	m.end = e
	m.addFound(identToken(tok))
	return m, true
}

func distinctiveToken(tok string) bool {
	var letters, digits, digitParts, maxDigitPart, changes int
	mixed, month := false, false
	partStart, pl, pd := 0, 0, 0
	for k := 0; k <= len(tok); k++ {
		if k == len(tok) || tok[k] == '.' || tok[k] == '-' || tok[k] == '_' {
			switch {
			case pl > 0 && pd > 0:
				mixed = true
			case pd > 0:
				digitParts++
				maxDigitPart = max(maxDigitPart, pd)
			case pl > 0:
				month = month || monthName(tok[partStart:k])
			}
			partStart, pl, pd = k+1, 0, 0
			continue
		}
		c := tok[k]
		switch {
		case isDigit(c):
			digits++
			pd++
		case isLetter(c):
			letters++
			pl++
			if k > 0 && isUpper(c) && isLower(tok[k-1]) {
				changes++
			}
		}
	}
	switch {
	case letters > 0 && digits > 0 && mixed:
		return digits >= 2
	case letters > 0 && digits > 0:
		return !month && (digitParts >= 2 && digits >= 4 || maxDigitPart >= 5)
	}
	return digits == 0 && letters >= 12 && changes >= 2
}

func monthName(w string) bool {
	switch strings.ToLower(w) {
	case "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec",
		"january", "february", "march", "april", "june", "july", "august", "september",
		"october", "november", "december":
		return true
	}
	return false
}

// identToken is the identifier of a distinctive token: its ASCII letters and digits,
// lower-cased.
func identToken(tok string) found {
	var buf [MaxKeyBytes]byte
	b := buf[:0]
	for i := 0; i < len(tok); i++ {
		c := tok[i]
		if isUpper(c) {
			c |= 0x20
		}
		if isAlnum(c) {
			b = append(b, c)
		}
	}
	return keyedBytes(KindIdent, b)
}

// Whole values.

// whole yields the whole-value forms of the normalised string.
func (t *normText) whole(yield func(Value)) {
	a, b := 0, len(t.s)
	for a < b && isSpaceByte(t.s[a]) {
		a++
	}
	for b > a && isSpaceByte(t.s[b-1]) {
		b--
	}
	if a == b {
		return
	}
	s, raw := t.s[a:b], t.raw(a, b)
	emitAll := func(m match) {
		for _, f := range m.vals[:m.n] {
			emit(f, raw, yield)
		}
	}
	if m, ok := matchEmail(s, 0); ok && m.end == len(s) {
		emitAll(m)
		return
	}
	if m, ok := matchURL(s, 0); ok && m.end == len(s) {
		emitAll(m)
		return
	}
	if m, ok := matchDomain(s, 0); ok && m.end == len(s) {
		emitAll(m)
		return
	}
	if f, recognised, ok := wholeNumber(s); recognised {
		if ok {
			emit(f, raw, yield)
		}
		return
	}
	if m, ok := matchPath(s, 0); ok && m.end == len(s) {
		emitAll(m)
		return
	}
	if len(t.orig) <= maxLeafBytes {
		emit(identWhole(t.orig), raw, yield)
	}
}

func isSpaceByte(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// wholeNumber reads s as a number, with an optional sign and currency. It
// returns the number (see canonNumber), whether s is a number, and whether it is
// distinctive.
func wholeNumber(s string) (f found, recognised, ok bool) {
	form := false
	s = strings.TrimLeft(s, "+-")
	if r, cut := strings.CutPrefix(s, "$"); cut {
		s, form = r, true
	} else if len(s) > 3 && currencyCode(s[:3]) && !isLetter(s[3]) {
		s, form = s[3:], true
	}
	s = strings.TrimLeft(strings.TrimLeft(s, " "), "+-")
	if r, cut := strings.CutSuffix(s, "$"); cut {
		s, form = r, true
	} else if len(s) > 3 && currencyCode(s[len(s)-3:]) && !isLetter(s[len(s)-4]) {
		s, form = s[:len(s)-3], true
	}
	s = strings.TrimRight(s, " ")
	if s == "" || !isDigit(s[0]) {
		return found{}, false, false
	}
	d1 := digitRun(s, 0)
	if d1 == len(s) {
		f, ok = canonNumber(s, "", form)
		return f, true, ok
	}
	if d1 <= 3 {
		if e, n := thousands(s, d1, ','); n > 0 {
			switch {
			case e == len(s):
				f, ok = canonNumber(s, "", true)
				return f, true, ok
			case e+1 < len(s) && s[e] == '.' && digitRun(s, e+1) == len(s):
				f, ok = canonNumber(s[:e], s[e+1:], true)
				return f, true, ok
			}
		}
		if e, n := thousands(s, d1, '.'); n > 0 {
			switch {
			case e == len(s) && n >= 2:
				f, ok = canonNumber(s, "", true)
				return f, true, ok
			case e+1 < len(s) && s[e] == ',' && len(s)-e-1 <= 2 && digitRun(s, e+1) == len(s):
				f, ok = canonNumber(s[:e], s[e+1:], true)
				return f, true, ok
			}
		}
	}
	if (s[d1] == '.' || s[d1] == ',') && d1+1 < len(s) && digitRun(s, d1+1) == len(s) {
		if s[d1] == ',' && len(s)-d1-1 > 2 {
			return found{}, false, false
		}
		f, ok = canonNumber(s[:d1], s[d1+1:], true)
		return f, true, ok
	}
	return found{}, false, false
}

// identWhole is the whole-value identifier of s: its Unicode letters and
// digits, lower-cased, ignoring hidden characters and mapping fullwidth forms.
func identWhole(s string) found {
	var b strings.Builder
	b.Grow(2 + len(s))
	b.WriteString(KindIdent.prefix())
	for _, r := range s {
		if r >= 0xFF01 && r <= 0xFF5E {
			r -= 0xFEE0
		}
		if r == utf8.RuneError || !(unicode.IsLetter(r) || unicode.IsDigit(r)) {
			continue
		}
		b.WriteRune(unicode.ToLower(r))
	}
	return keyed(KindIdent, b.String())
}
