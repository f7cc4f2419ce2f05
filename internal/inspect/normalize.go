package inspect

import (
	"strings"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

// Normalized is a text with its hidden-text tricks undone, ready for the sensors.
type Normalized struct {
	// Text is what the sensors scan: the visible text with invisible characters removed
	// and look-alike characters folded, followed by what was hidden in it (HTML comments,
	// invisibly styled elements, decoded encodings), each on lines of its own. Spans of
	// findings on a normalized text are offsets into Text.
	Text string
	// Tricks names the hiding techniques found, each once, in a fixed order.
	Tricks []string
}

// Bounds of Normalize.
const (
	// MaxNormalizeBytes is how much of a text Normalize looks at; the rest is passed
	// through unchanged.
	MaxNormalizeBytes = 1 << 20
	// MaxHiddenBytes bounds the hidden text Normalize appends (comments, invisible
	// elements, decoded encodings), in total.
	MaxHiddenBytes = 64 << 10
)

// normMaxDepth is how deep hidden text is looked into: text hidden in text hidden in
// the input is still normalised, but nothing hidden in it is extracted or decoded.
const normMaxDepth = 2

// The hiding techniques Normalize undoes, as named in [Normalized.Tricks]. Tricks lists
// them in the order they are declared here.
const (
	// TrickZeroWidth is invisible characters: zero-width spaces and joiners, word
	// joiners, invisible operators, byte order marks inside text, soft hyphens, the
	// Mongolian vowel separator and fillers that render as nothing.
	TrickZeroWidth = "zero_width"
	// TrickBidi is bidirectional controls (embeddings, overrides, isolates, marks), which
	// reorder what is displayed.
	TrickBidi = "bidi"
	// TrickUnicodeTags is Unicode tag characters (U+E0000..U+E007F), invisible copies of
	// ASCII that can carry a whole hidden sentence.
	TrickUnicodeTags = "unicode_tags"
	// TrickVariationSelectors is runs of variation selectors, which can encode arbitrary
	// bytes invisibly after a visible character.
	TrickVariationSelectors = "variation_selectors"
	// TrickHomoglyph is look-alike letters from other scripts or presentation forms
	// (fullwidth, mathematical, circled, small capitals) in place of ASCII.
	TrickHomoglyph = "homoglyph"
	// TrickHTMLComment is text inside <!-- -->, which a rendered page does not show.
	TrickHTMLComment = "html_comment"
	// TrickInvisibleStyle is HTML elements a browser does not show: hidden, display:none,
	// visibility:hidden, zero opacity or font size, off-screen or clipped, text the colour
	// of its background.
	TrickInvisibleStyle = "invisible_style"
	// TrickBase64 is base64 (standard, URL-safe or MIME-wrapped) that decodes to prose.
	TrickBase64 = "base64"
	// TrickHex is hexadecimal that decodes to prose.
	TrickHex = "hex"
	// TrickURLEncoding is percent-encoding of letters and digits, which never need it.
	TrickURLEncoding = "url_encoding"
	// TrickHTMLEntities is numeric character references for letters and digits.
	TrickHTMLEntities = "html_entities"
	// TrickEscapes is \xHH and \uHHHH escapes of letters and digits.
	TrickEscapes = "escapes"
)

// normTricks are the trick names in their fixed order; a trick's bit is its index.
var normTricks = [...]string{
	TrickZeroWidth, TrickBidi, TrickUnicodeTags, TrickVariationSelectors, TrickHomoglyph,
	TrickHTMLComment, TrickInvisibleStyle, TrickBase64, TrickHex, TrickURLEncoding,
	TrickHTMLEntities, TrickEscapes,
}

const (
	normBitZeroWidth = 1 << iota
	normBitBidi
	normBitUnicodeTags
	normBitVariationSelectors
	normBitHomoglyph
	normBitHTMLComment
	normBitInvisibleStyle
	normBitBase64
	normBitHex
	normBitURLEncoding
	normBitHTMLEntities
	normBitEscapes
)

// Normalize undoes hidden-text tricks in s, so that the sensors see what a reader (or a
// model) would be told. It is called on every text before scanning.
//
// The visible part of Text is s with invisible characters (zero-width, bidirectional
// controls, tag characters, runs of variation selectors) removed, HTML comments and
// invisibly styled HTML elements removed, and look-alike letters folded to ASCII. Its
// length may differ from that of s, but nothing is reordered. What was hidden follows
// it, each piece after a "\n": the text of the comments and invisible elements, the ASCII
// carried by tag characters, and the decoded text of base64, hex, percent-encoding,
// character references and escapes, when it decodes to prose (binary, images, hashes,
// keys and JSON Web Tokens are left alone). Hidden pieces are normalised in turn, two
// levels deep.
//
// Look-alike letters are folded by this rule: presentation forms (fullwidth,
// mathematical, letterlike, enclosed and circled, small capitals) always fold, and are
// reported as a trick when they spell a Latin word of two letters or more on a Latin
// line (a lone "ɴ", or fullwidth "ＰＣ" in Japanese, is typography). Letters of
// other scripts that look like Latin letters (Cyrillic "а", Greek "ο", ...) fold only in
// a word that also holds Latin letters ("Іgnore"), or in a word of at least two letters
// made only of such look-alikes when its line is Latin text: a line is Latin text when
// it holds more Latin letters than letters of other scripts that have no Latin
// look-alike; a line without letters of either kind takes the verdict of the nearest
// line before it that has them, or else after it. So genuine Russian or Greek prose is
// left as it is, while "АТТАСК" in an English sentence becomes "ATTACK".
//
// When Normalize changes anything it also drops invalid UTF-8, so its Text is valid
// UTF-8 whenever s is valid or anything was undone. It looks at the first
// MaxNormalizeBytes of s and appends at most MaxHiddenBytes of hidden text. It runs in
// time linear in the length of s; a text with nothing to undo is returned as it is,
// without allocating.
func Normalize(s string) Normalized {
	head, tail := s, ""
	if len(s) > MaxNormalizeBytes {
		cut := MaxNormalizeBytes
		for i := 0; i < utf8.UTFMax-1 && cut > 0 && !utf8.RuneStart(s[cut]); i++ {
			cut--
		}
		head, tail = s[:cut], s[cut:]
	}
	if !normNeedsWork(head) {
		return Normalized{Text: s}
	}
	st := normState{budget: MaxHiddenBytes}
	vis := st.run(head, 0)
	n := len(vis) + len(tail)
	pieces := 0
	for _, h := range st.hidden {
		if h != "" {
			n += 1 + len(h)
			pieces++
		}
	}
	if pieces == 0 && st.tricks == 0 && vis == head {
		return Normalized{Text: s}
	}
	var b strings.Builder
	b.Grow(n)
	b.WriteString(vis)
	b.WriteString(tail)
	for _, h := range st.hidden {
		if h != "" {
			b.WriteByte('\n')
			b.WriteString(h)
		}
	}
	return Normalized{Text: b.String(), Tricks: st.trickList()}
}

// normState is one Normalize call's findings.
type normState struct {
	tricks uint16
	// hidden are the hidden pieces, already normalised, in the order found.
	hidden []string
	// budget is how many more bytes of hidden text may be appended.
	budget int
}

func (st *normState) trickList() []string {
	if st.tricks == 0 {
		return nil
	}
	var out []string
	for i, name := range normTricks {
		if st.tricks&(1<<i) != 0 {
			out = append(out, name)
		}
	}
	return out
}

// run normalises s found at the given depth and returns its visible part; hidden pieces
// go to st.hidden.
func (st *normState) run(s string, depth int) string {
	// Invalid UTF-8 is dropped first: removing a character between invalid bytes could
	// otherwise join them into a new one.
	s = strings.ToValidUTF8(s, "")
	v := st.strip(s, depth)
	v = st.fold(v)
	if depth < normMaxDepth {
		if h := st.extractHTML(v, depth); h != v {
			v = st.fold(h)
		}
		st.decode(v, depth)
	}
	return v
}

// addPiece appends hidden text found at depth, normalised, within the budget.
func (st *normState) addPiece(p string, depth int) {
	p = strings.TrimSpace(p)
	if p == "" || st.budget <= 0 {
		return
	}
	p = normTruncate(p, st.budget)
	st.budget -= len(p)
	i := len(st.hidden)
	st.hidden = append(st.hidden, "")
	v := strings.TrimSpace(st.run(p, depth+1))
	st.hidden[i] = v
	st.budget += len(p) - len(v)
}

// normTruncate cuts s to at most n bytes, at a character boundary.
func normTruncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// normEdit builds a copy of src with some ranges replaced, allocating only once the
// first replacement is made. Replacements must come in order and not overlap.
type normEdit struct {
	src    string
	b      strings.Builder
	active bool
	copied int
}

func (e *normEdit) replace(start, end int, with string) {
	if !e.active {
		e.active = true
		e.b.Grow(len(e.src))
	}
	e.b.WriteString(e.src[e.copied:start])
	e.b.WriteString(with)
	e.copied = end
}

func (e *normEdit) replaceRune(start, end int, r rune) {
	if !e.active {
		e.active = true
		e.b.Grow(len(e.src))
	}
	e.b.WriteString(e.src[e.copied:start])
	e.b.WriteRune(r)
	e.copied = end
}

func (e *normEdit) String() string {
	if !e.active {
		return e.src
	}
	e.b.WriteString(e.src[e.copied:])
	return e.b.String()
}

// Byte classes of the fast path and the encoding scanner.
const (
	normClassB64   = 1 << iota // base64 alphabet, standard or URL-safe
	normClassHex               // hexadecimal digit
	normClassUpper             // A-Z
	normClassLower             // a-z
	normClassSym               // digit, '+' or '/': what base64 of prose always holds
	normClassAttn              // '<', '%', '&', '\\': may start markup or an escape
)

var normByteClass = func() (t [256]uint8) {
	for c := 'A'; c <= 'Z'; c++ {
		t[c] |= normClassB64 | normClassUpper
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] |= normClassB64 | normClassLower
	}
	for c := '0'; c <= '9'; c++ {
		t[c] |= normClassB64 | normClassHex | normClassSym
	}
	for _, c := range "abcdefABCDEF" {
		t[c] |= normClassHex
	}
	t['+'] |= normClassB64 | normClassSym
	t['/'] |= normClassB64 | normClassSym
	t['-'] |= normClassB64
	t['_'] |= normClassB64
	for _, c := range "<%&\\" {
		t[c] |= normClassAttn
	}
	return t
}()

// Lengths from which runs are looked at as possible encodings.
const (
	normMinBase64 = 24 // 18 bytes decoded
	normMinHex    = 32 // 16 bytes decoded
	// normMinEscapes is how many escaped letters or digits make a line worth decoding.
	normMinEscapes = 3
)

// normNeedsWork reports whether s might hold anything Normalize would undo. It is the
// fast path: one pass, no allocation.
func normNeedsWork(s string) bool {
	run, hexRun := 0, 0
	var seen uint8
	for i := 0; i < len(s); {
		c := s[i]
		if c >= utf8.RuneSelf {
			r, n := utf8.DecodeRuneInString(s[i:])
			if normInvisibleKind(r) != normVisible || homoglyphCandidate(r) {
				return true
			}
			i += n
			run, hexRun, seen = 0, 0, 0
			continue
		}
		cl := normByteClass[c]
		if cl&normClassB64 != 0 {
			run++
			seen |= cl
			if cl&normClassHex != 0 {
				hexRun++
				if hexRun >= normMinHex {
					return true
				}
			} else {
				hexRun = 0
			}
			if run >= normMinBase64 && seen&(normClassUpper|normClassLower|normClassSym) == normClassUpper|normClassLower|normClassSym {
				return true
			}
			i++
			continue
		}
		run, hexRun, seen = 0, 0, 0
		if cl&normClassAttn != 0 && normAttention(s, i) {
			return true
		}
		i++
	}
	return false
}

// normAttention reports whether the '<', '%', '&' or '\\' at s[i] may start markup or
// an escape of a letter or digit.
func normAttention(s string, i int) bool {
	rest := s[i+1:]
	switch s[i] {
	case '<':
		return len(rest) > 0 && normIsASCIILetter(rest[0]) || strings.HasPrefix(rest, "!--")
	case '%':
		_, ok := normPercentAt(s, i)
		return ok
	case '&':
		return len(rest) > 1 && rest[0] == '#'
	case '\\':
		return len(rest) > 2 && (rest[0] == 'x' || rest[0] == 'u')
	}
	return false
}

func normIsASCIILetter(c byte) bool { return c|0x20 >= 'a' && c|0x20 <= 'z' }

func normIsAlnum(r rune) bool {
	return r < utf8.RuneSelf && (normIsASCIILetter(byte(r)) || r >= '0' && r <= '9')
}

// Kinds of invisible characters.
const (
	normVisible = iota
	normZeroWidth
	normBidi
	normTag
	normSelector
)

func normInvisibleKind(r rune) int {
	switch {
	case r < 0xAD:
		return normVisible
	case r == 0xAD, r == 0x34F, r == 0x115F, r == 0x1160, r == 0x17B4, r == 0x17B5,
		r == 0x180E, r >= 0x200B && r <= 0x200D, r >= 0x2060 && r <= 0x2064,
		r == 0x3164, r == 0xFEFF, r == 0xFFA0:
		return normZeroWidth
	case r == 0x61C, r == 0x200E, r == 0x200F, r >= 0x202A && r <= 0x202E,
		r >= 0x2066 && r <= 0x2069:
		return normBidi
	case r >= 0xE0000 && r <= 0xE007F:
		return normTag
	case r >= 0xFE00 && r <= 0xFE0F, r >= 0xE0100 && r <= 0xE01EF:
		return normSelector
	}
	return normVisible
}

// strip removes invisible characters from s. At depths where hidden text is still
// extracted, tag characters and runs of variation selectors are decoded into pieces.
func (st *normState) strip(s string, depth int) string {
	e := normEdit{src: s}
	prev := rune(-1) // the last character kept
	for i := 0; i < len(s); {
		if s[i] < utf8.RuneSelf {
			prev = rune(s[i])
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		kind := normInvisibleKind(r)
		switch kind {
		case normVisible:
			prev = r
			i += n
			continue
		case normZeroWidth:
			next, _ := utf8.DecodeRuneInString(s[i+n:])
			switch {
			case (r == 0x200C || r == 0x200D) && normJoinerBetween(prev, next):
				// Joiners inside emoji sequences and complex scripts are part of the
				// text.
				prev = r
				i += n
				continue
			case r == 0xFEFF && i == 0:
				// A byte order mark hides nothing.
			default:
				st.tricks |= normBitZeroWidth
			}
			e.replace(i, i+n, "")
			i += n
		case normBidi:
			st.tricks |= normBitBidi
			e.replace(i, i+n, "")
			i += n
		case normTag:
			end := normRunEnd(s, i, normTag)
			if prev == 0x1F3F4 && normEmojiTagSequence(s[i:end]) {
				// A subdivision flag such as England's: black flag, tags, cancel tag.
				prev = 0xE007F
				i = end
				continue
			}
			st.tricks |= normBitUnicodeTags
			if depth < normMaxDepth {
				st.addPiece(normDecodeTags(s[i:end]), depth)
			}
			e.replace(i, end, "")
			i = end
		case normSelector:
			end, count, others := normSelectorRun(s, i)
			if count == 1 {
				// One selector picks a glyph variant (emoji or text presentation).
				prev = r
				i += n
				continue
			}
			st.tricks |= normBitVariationSelectors | others
			if depth < normMaxDepth {
				if b := normDecodeSelectors(s[i:end]); normProse(b, false) {
					st.addPiece(normCleanPiece(string(b)), depth)
				}
			}
			e.replace(i, end, "")
			i = end
		}
	}
	return e.String()
}

// normJoinerBetween reports whether a zero-width joiner or non-joiner between prev and
// next is ordinary: both are non-ASCII, not spaces and not look-alikes that may fold to
// ASCII (emoji, Arabic, Indic scripts).
func normJoinerBetween(prev, next rune) bool {
	return prev >= utf8.RuneSelf && next >= utf8.RuneSelf && next != utf8.RuneError &&
		!unicode.IsSpace(prev) && !unicode.IsSpace(next) &&
		normInvisibleKind(next) == normVisible &&
		!homoglyphCandidate(prev) && !homoglyphCandidate(next)
}

// normRunEnd returns the end of the run of characters of one invisible kind at s[i].
func normRunEnd(s string, i, kind int) int {
	for i < len(s) {
		r, n := utf8.DecodeRuneInString(s[i:])
		if normInvisibleKind(r) != kind {
			break
		}
		i += n
	}
	return i
}

// normSelectorRun returns the end of the run of variation selectors at s[i], the number
// of selectors in it and the trick bits of other invisible characters between them
// (which are removed anyway, so they must not split a run).
func normSelectorRun(s string, i int) (end, count int, others uint16) {
	var between uint16
	for j := i; j < len(s); {
		r, n := utf8.DecodeRuneInString(s[j:])
		j += n
		switch normInvisibleKind(r) {
		case normSelector:
			count++
			end = j
			others |= between
		case normZeroWidth:
			between |= normBitZeroWidth
		case normBidi:
			between |= normBitBidi
		default:
			return end, count, others
		}
	}
	return end, count, others
}

// normEmojiTagSequence reports whether tags is the tail of an emoji tag sequence: up to
// seven tag letters or digits and a cancel tag.
func normEmojiTagSequence(tags string) bool {
	n := 0
	for _, r := range tags {
		n++
		switch {
		case r == 0xE007F:
			return n >= 2 && len(tags) == 4*n
		case r >= 0xE0061 && r <= 0xE007A, r >= 0xE0030 && r <= 0xE0039:
		default:
			return false
		}
		if n > 7 {
			return false
		}
	}
	return false
}

// normDecodeTags returns the ASCII that tag characters stand for: the printable
// characters, and tab and line breaks.
func normDecodeTags(tags string) string {
	var b strings.Builder
	for _, r := range tags {
		switch c := r - 0xE0000; {
		case c >= 0x20 && c <= 0x7E, c == '\t', c == '\n', c == '\r':
			b.WriteByte(byte(c))
		}
	}
	return b.String()
}

// normDecodeSelectors returns the bytes a run of variation selectors encodes: VS1..VS16
// stand for 0..15, VS17..VS256 for 16..255.
func normDecodeSelectors(sel string) []byte {
	var b []byte
	for _, r := range sel {
		if normInvisibleKind(r) != normSelector {
			continue
		}
		if r <= 0xFE0F {
			b = append(b, byte(r-0xFE00))
		} else {
			b = append(b, byte(r-0xE0100+16))
		}
	}
	return b
}

// normCollapseSpace trims s and collapses its runs of white space to one space.
func normCollapseSpace(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// normCleanPiece makes decoded bytes safe to append: valid UTF-8 without control
// characters other than tab and line breaks.
func normCleanPiece(s string) string {
	s = strings.ToValidUTF8(s, "")
	return strings.Map(func(r rune) rune {
		if r == '\t' || r == '\n' || r == '\r' || r >= ' ' && r != 0x7F && (r < 0x80 || r >= 0xA0) {
			return r
		}
		return -1
	}, s)
}

// normProse reports whether decoded bytes read as text rather than binary, a key or a
// hash: valid UTF-8 with few control characters, some letters, at least half letters or
// digits outside white space, and words (spaces, or a script written without them). A
// partial decoding may end inside a character.
func normProse(b []byte, partial bool) bool {
	if len(b) >= 8 && normUTF16Shape(b) {
		return false // checked by the caller on the converted text
	}
	runes, letters, digits, spaces, bad, unspaced := 0, 0, 0, 0, 0, 0
	for i := 0; i < len(b); {
		r, n := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && n <= 1 {
			if partial && len(b)-i < utf8.UTFMax && !utf8.FullRune(b[i:]) {
				break
			}
			bad++
			runes++
			i++
			continue
		}
		runes++
		i += n
		switch {
		case r == ' ' || r == '\t' || r == '\n' || r == '\r':
			spaces++
		case r < ' ' || r == 0x7F || r >= 0x80 && r < 0xA0 || r == utf8.RuneError:
			bad++
		case r >= '0' && r <= '9':
			digits++
		case normIsLetter(r):
			letters++
			if r >= 0x2E80 {
				unspaced++ // CJK and other scripts written without spaces
			}
		}
	}
	// Binary fails on control bytes and invalid UTF-8 long before the rest; keys,
	// hashes and identifiers fail for want of spaces; the letters and digits keep out
	// runs of symbols.
	solid := runes - spaces
	return runes >= 8 && bad*20 <= runes && letters >= 4 && 2*(letters+digits) >= solid &&
		(spaces > 0 || unspaced >= 4)
}

// normUTF16Shape reports whether b looks like UTF-16LE ASCII (PowerShell's
// -EncodedCommand): every odd byte zero, every even byte printable ASCII or a newline.
func normUTF16Shape(b []byte) bool {
	for i := 0; i+1 < len(b); i += 2 {
		if b[i+1] != 0 || b[i] == 0 || b[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// normFromUTF16 converts UTF-16LE bytes to UTF-8.
func normFromUTF16(b []byte) []byte {
	u := make([]uint16, len(b)/2)
	for i := range u {
		u[i] = uint16(b[2*i]) | uint16(b[2*i+1])<<8
	}
	return []byte(string(utf16.Decode(u)))
}

// normTextOf returns decoded bytes as text if they read as prose (converting UTF-16LE
// first), and whether they do.
func normTextOf(b []byte, partial bool) ([]byte, bool) {
	if len(b) >= 8 && normUTF16Shape(b) {
		if partial && len(b)%2 == 1 {
			b = b[:len(b)-1]
		}
		b = normFromUTF16(b)
	}
	return b, normProse(b, partial)
}

// normB64Value maps both base64 alphabets to their values; 0xFF marks other bytes.
var normB64Value = func() (t [256]byte) {
	for i := range t {
		t[i] = 0xFF
	}
	const std = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	for i := range len(std) {
		t[std[i]] = byte(i)
	}
	t['-'], t['_'] = 62, 63
	return t
}()

// normDecodeBase64 decodes the base64 in s (line breaks skipped, stopping at padding)
// into dst until dst is full, and returns the bytes written.
func normDecodeBase64(dst []byte, s string) int {
	var acc uint32
	k, n := 0, 0
	for i := 0; i < len(s) && n < len(dst); i++ {
		v := normB64Value[s[i]]
		if v == 0xFF {
			if s[i] == '=' {
				break
			}
			continue
		}
		acc = acc<<6 | uint32(v)
		k++
		if k == 4 {
			for j := 2; j >= 0 && n < len(dst); j-- {
				dst[n] = byte(acc >> (8 * j))
				n++
			}
			acc, k = 0, 0
		}
	}
	switch {
	case k == 2 && n < len(dst):
		dst[n] = byte(acc >> 4)
		n++
	case k == 3:
		for j := 1; j >= 0 && n < len(dst); j-- {
			dst[n] = byte(acc >> (2 + 8*j))
			n++
		}
	}
	return n
}

func normHexValue(c byte) byte {
	switch {
	case c >= '0' && c <= '9':
		return c - '0'
	case c|0x20 >= 'a' && c|0x20 <= 'f':
		return c | 0x20 - 'a' + 10
	}
	return 0xFF
}

// normDecodeHex decodes pairs of hex digits of s into dst until dst is full.
func normDecodeHex(dst []byte, s string) int {
	n := 0
	for i := 0; i+1 < len(s) && n < len(dst); i += 2 {
		dst[n] = normHexValue(s[i])<<4 | normHexValue(s[i+1])
		n++
	}
	return n
}

// normPrefix is how many decoded bytes are checked before decoding a run in full.
const normPrefix = 192

// decode looks for encoded runs in s and appends what decodes to prose.
func (st *normState) decode(s string, depth int) {
	for i := 0; i < len(s); {
		if normByteClass[s[i]]&normClassB64 == 0 {
			i++
			continue
		}
		end := normBase64RunEnd(s, i)
		st.decodeRun(s, i, end, depth)
		i = end
	}
	st.decodeEscapes(s, depth)
}

// normBase64RunEnd returns the end of the run of base64 characters at s[i]: padding
// included, and continued over line breaks when the lines look MIME-wrapped (at least
// 40 characters, a multiple of four, no padding).
func normBase64RunEnd(s string, i int) int {
	for {
		j := i
		for j < len(s) && normByteClass[s[j]]&normClassB64 != 0 {
			j++
		}
		line := j - i
		pad := 0
		for j < len(s) && s[j] == '=' && pad < 2 {
			j++
			pad++
		}
		if pad > 0 || line < 40 || line%4 != 0 {
			return j
		}
		k := j
		if k < len(s) && s[k] == '\r' {
			k++
		}
		if k < len(s) && s[k] == '\n' {
			k++
		} else {
			return j
		}
		if k >= len(s) || normByteClass[s[k]]&normClassB64 == 0 {
			return j
		}
		i = k
	}
}

// decodeRun examines one run of base64 characters, s[start:end].
func (st *normState) decodeRun(s string, start, end, depth int) {
	run := s[start:end]
	if len(run) < normMinBase64 {
		return
	}
	// JSON Web Tokens: base64url JSON, dot-separated.
	if strings.HasPrefix(run, "eyJ") && (end < len(s) && s[end] == '.' || start > 0 && s[start-1] == '.') {
		return
	}
	if normDataURI(s, start) {
		return
	}
	hex := run
	if len(hex) > 2 && hex[0] == '0' && hex[1]|0x20 == 'x' {
		hex = hex[2:]
	}
	if len(hex) >= normMinHex && normAllHex(hex) {
		if st.tryDecoded(hex, depth, normBitHex, len(hex)/2) {
			return
		}
	}
	if st.tryBase64(run, depth) {
		return
	}
	// A prefix or suffix joined by '-' or '_' ("key_SGVsbG8...") misaligns the whole;
	// try the parts.
	if strings.ContainsAny(run, "-_") {
		for part := range strings.FieldsFuncSeq(run, func(r rune) bool { return r == '-' || r == '_' }) {
			st.tryBase64(part, depth)
		}
	}
}

func (st *normState) tryBase64(run string, depth int) bool {
	core := strings.TrimRight(run, "=")
	if len(core) < normMinBase64 || len(core)%4 == 1 {
		return false
	}
	var seen uint8
	for i := 0; i < len(core); i++ {
		seen |= normByteClass[core[i]]
	}
	if seen&(normClassUpper|normClassLower|normClassSym) != normClassUpper|normClassLower|normClassSym {
		return false
	}
	return st.tryDecoded(run, depth, normBitBase64, len(core)*3/4)
}

// tryDecoded decodes a run as hex (bit normBitHex) or base64, first a prefix into a stack
// buffer to reject binary without allocating, then in full (within the hidden-text
// budget), and appends it as a piece if it reads as prose.
func (st *normState) tryDecoded(run string, depth int, bit uint16, size int) bool {
	hex := bit == normBitHex
	var buf [normPrefix]byte
	n := normDecodeAs(hex, buf[:], run)
	if _, ok := normTextOf(buf[:n], n < size); !ok {
		return false
	}
	// Check as much as may be appended (and a prefix's worth when nothing may): text
	// followed by binary is not prose.
	full := buf[:n]
	if limit := min(size, max(st.budget, 0)+normPrefix); limit > n {
		full = make([]byte, limit)
		full = full[:normDecodeAs(hex, full, run)]
	}
	text, ok := normTextOf(full, len(full) < size)
	if !ok {
		return false
	}
	st.tricks |= bit
	st.addPiece(normCleanPiece(string(text)), depth)
	return true
}

// normDecodeAs decodes run as hex or base64 into dst.
func normDecodeAs(hex bool, dst []byte, run string) int {
	if hex {
		return normDecodeHex(dst, run)
	}
	return normDecodeBase64(dst, run)
}

func normAllHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if normByteClass[s[i]]&normClassHex == 0 {
			return false
		}
	}
	return true
}

// normDataURI reports whether the run at s[i] is the payload of a data: URI of a type
// other than text (an image, a font, ...).
func normDataURI(s string, i int) bool {
	const marker = ";base64,"
	if i < len(marker) || s[i-len(marker):i] != marker {
		return false
	}
	head := s[max(0, i-256) : i-len(marker)]
	at := strings.LastIndex(head, "data:")
	if at < 0 {
		return false
	}
	mime := head[at+len("data:"):]
	if k := strings.IndexByte(mime, ';'); k >= 0 {
		mime = mime[:k]
	}
	return !strings.HasPrefix(strings.ToLower(mime), "text/")
}

// normPercentAt decodes the escape %HH at s[i], reporting whether there is one.
func normPercentAt(s string, i int) (byte, bool) {
	if i+2 >= len(s) {
		return 0, false
	}
	h, l := normHexValue(s[i+1]), normHexValue(s[i+2])
	if h == 0xFF || l == 0xFF {
		return 0, false
	}
	return h<<4 | l, true
}

// normCharRefAt decodes a numeric character reference (&#NN; or &#xHH;, the semicolon
// optional) at s[i], returning the character and the reference's length.
func normCharRefAt(s string, i int) (rune, int) {
	j := i + 2
	if j > len(s) || s[i+1] != '#' {
		return 0, 0
	}
	base := rune(10)
	if j < len(s) && s[j]|0x20 == 'x' {
		base = 16
		j++
	}
	v, digits := rune(0), 0
	for ; j < len(s) && digits < 8; j++ {
		d := rune(normHexValue(s[j]))
		if d == 0xFF || d >= base {
			break
		}
		v = v*base + d
		digits++
	}
	if digits == 0 {
		return 0, 0
	}
	if j < len(s) && s[j] == ';' {
		j++
	}
	return v, j - i
}

// normEscapeAt decodes \xHH or \uHHHH at s[i], returning the value and the length.
func normEscapeAt(s string, i int) (rune, int) {
	digits := 0
	switch {
	case i+1 >= len(s):
		return 0, 0
	case s[i+1] == 'x':
		digits = 2
	case s[i+1] == 'u':
		digits = 4
	default:
		return 0, 0
	}
	if i+2+digits > len(s) {
		return 0, 0
	}
	v := rune(0)
	for j := i + 2; j < i+2+digits; j++ {
		d := normHexValue(s[j])
		if d == 0xFF {
			return 0, 0
		}
		v = v<<4 | rune(d)
	}
	return v, 2 + digits
}

// decodeEscapes decodes, line by line, percent-encoding, numeric character references
// and \x or \u escapes, where a line escapes at least normMinEscapes letters or digits
// (which never need escaping): the line's decoded text becomes a piece.
func (st *normState) decodeEscapes(s string, depth int) {
	for start := 0; start < len(s); {
		end := strings.IndexByte(s[start:], '\n')
		if end < 0 {
			end = len(s)
		} else {
			end += start
		}
		line := s[start:end]
		start = end + 1
		pct, ref, esc := 0, 0, 0
		for i := 0; i < len(line); i++ {
			switch line[i] {
			case '%':
				if c, ok := normPercentAt(line, i); ok && normIsAlnum(rune(c)) {
					pct++
				}
			case '&':
				if r, _ := normCharRefAt(line, i); normIsAlnum(r) {
					ref++
				}
			case '\\':
				if r, _ := normEscapeAt(line, i); normIsAlnum(r) {
					esc++
				}
			}
		}
		if pct < normMinEscapes && ref < normMinEscapes && esc < normMinEscapes {
			continue
		}
		var b strings.Builder
		b.Grow(len(line))
		for i := 0; i < len(line); {
			switch line[i] {
			case '%':
				if c, ok := normPercentAt(line, i); ok && pct >= normMinEscapes {
					b.WriteByte(c)
					i += 3
					continue
				}
			case '&':
				if r, n := normCharRefAt(line, i); n > 0 && ref >= normMinEscapes {
					b.WriteRune(normValidRune(r))
					i += n
					continue
				}
			case '\\':
				if r, n := normEscapeAt(line, i); n > 0 && esc >= normMinEscapes {
					if utf16.IsSurrogate(r) {
						if r2, n2 := normEscapeAt(line, i+n); n2 == 6 {
							if d := utf16.DecodeRune(r, r2); d != utf8.RuneError {
								b.WriteRune(d)
								i += n + n2
								continue
							}
						}
					}
					b.WriteRune(normValidRune(r))
					i += n
					continue
				}
			}
			b.WriteByte(line[i])
			i++
		}
		if pct >= normMinEscapes {
			st.tricks |= normBitURLEncoding
		}
		if ref >= normMinEscapes {
			st.tricks |= normBitHTMLEntities
		}
		if esc >= normMinEscapes {
			st.tricks |= normBitEscapes
		}
		st.addPiece(normCleanPiece(b.String()), depth)
	}
}

// normValidRune replaces what is not a character (surrogates, out of range) with U+FFFD.
func normValidRune(r rune) rune {
	if !utf8.ValidRune(r) {
		return utf8.RuneError
	}
	return r
}
