package inspect

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// The confusables table: which characters Normalize folds to ASCII, and under which rule.
//
// A character is folded in one of two ways:
//
//   - Presentation forms of Latin letters and digits fold always: fullwidth forms
//     (U+FF01..U+FF5E), mathematical alphanumerics (U+1D400..U+1D7FF), letterlike symbols
//     (ℎ, ℓ, ℝ, ...), Roman numerals that are single letters (Ⅰ, Ⅴ, ⅹ, ...), enclosed and
//     circled letters and digits (Ⓐ, ⓐ, ⒜, 🄰, 🅐, 🅰, ①, ❶, ...) and small capitals
//     (ᴀ, ʙ, ɪ, ...). They are the same letters in another dress; folding them never
//     garbles text of another script. Mathematical Greek folds to plain Greek.
//   - Letters of other scripts that look like Latin letters (Cyrillic а, е, о, р, с, і, ...,
//     Greek ο, ν, ρ, Α, Β, ..., a few Armenian and Cherokee letters) fold only by the word
//     rule of homoglyphFoldText, so that genuine Russian or Greek text stays as it is.
//
// The table is deliberately small: the look-alikes that spoofing and filter evasion use,
// not every entry of Unicode's confusables.txt.

// homoglyphContextual maps letters of other scripts to the Latin letter they look like.
var homoglyphContextual = map[rune]rune{
	// Cyrillic.
	'А': 'A', 'В': 'B', 'Е': 'E', 'К': 'K', 'М': 'M', 'Н': 'H', 'О': 'O', 'Р': 'P',
	'С': 'C', 'Т': 'T', 'У': 'Y', 'Х': 'X', 'Ѕ': 'S', 'І': 'I', 'Ј': 'J', 'Ӏ': 'I',
	'Ү': 'Y', 'Ԛ': 'Q', 'Ԝ': 'W', 'Ѵ': 'V', 'Ь': 'b',
	'а': 'a', 'е': 'e', 'о': 'o', 'р': 'p', 'с': 'c', 'у': 'y', 'х': 'x', 'ѕ': 's',
	'і': 'i', 'ј': 'j', 'ԁ': 'd', 'һ': 'h', 'ԛ': 'q', 'ԝ': 'w', 'ӏ': 'l', 'ү': 'y',
	'ѵ': 'v', 'г': 'r', 'п': 'n', 'ь': 'b',
	// Greek.
	'Α': 'A', 'Β': 'B', 'Ε': 'E', 'Ζ': 'Z', 'Η': 'H', 'Ι': 'I', 'Κ': 'K', 'Μ': 'M',
	'Ν': 'N', 'Ο': 'O', 'Ρ': 'P', 'Τ': 'T', 'Υ': 'Y', 'Χ': 'X', 'Ϲ': 'C',
	'α': 'a', 'γ': 'y', 'ι': 'i', 'κ': 'k', 'ν': 'v', 'ο': 'o', 'ρ': 'p', 'υ': 'u',
	'χ': 'x', 'ϲ': 'c', 'ϳ': 'j',
	// Armenian.
	'Օ': 'O', 'Ս': 'U', 'Տ': 'S',
	'օ': 'o', 'ս': 'u', 'հ': 'h', 'ո': 'n', 'ց': 'g', 'զ': 'q',
	// Cherokee capitals.
	'Ꭺ': 'A', 'Ᏼ': 'B', 'Ꮯ': 'C', 'Ꭼ': 'E', 'Ꮋ': 'H', 'Ꭻ': 'J', 'Ꮶ': 'K', 'Ꮇ': 'M',
	'Ꮲ': 'P', 'Ꮪ': 'S', 'Ꭲ': 'T', 'Ꮩ': 'V', 'Ꮃ': 'W', 'Ꮓ': 'Z', 'Ꮮ': 'L',
}

// homoglyphAlwaysTable maps the presentation forms that are not in a computed range.
var homoglyphAlwaysTable = map[rune]rune{
	// Letterlike symbols (several fill the holes of the mathematical alphabets).
	'ℎ': 'h', 'ℊ': 'g', 'ℓ': 'l', 'ℯ': 'e', 'ℴ': 'o', 'ℬ': 'B', 'ℰ': 'E', 'ℱ': 'F',
	'ℋ': 'H', 'ℐ': 'I', 'ℒ': 'L', 'ℳ': 'M', 'ℛ': 'R', 'ℭ': 'C', 'ℌ': 'H', 'ℑ': 'I',
	'ℜ': 'R', 'ℨ': 'Z', 'ℂ': 'C', 'ℍ': 'H', 'ℕ': 'N', 'ℙ': 'P', 'ℚ': 'Q', 'ℝ': 'R',
	'ℤ': 'Z', 'ℹ': 'i', 'ⅅ': 'D', 'ⅆ': 'd', 'ⅇ': 'e', 'ⅈ': 'i', 'ⅉ': 'j', '\u212A': 'K',
	// Roman numerals that are one letter.
	'Ⅰ': 'I', 'Ⅴ': 'V', 'Ⅹ': 'X', 'Ⅼ': 'L', 'Ⅽ': 'C', 'Ⅾ': 'D', 'Ⅿ': 'M',
	'ⅰ': 'i', 'ⅴ': 'v', 'ⅹ': 'x', 'ⅼ': 'l', 'ⅽ': 'c', 'ⅾ': 'd', 'ⅿ': 'm',
	// Small capitals and Latin look-alikes.
	'ᴀ': 'a', 'ʙ': 'b', 'ᴄ': 'c', 'ᴅ': 'd', 'ᴇ': 'e', 'ꜰ': 'f', 'ɢ': 'g', 'ʜ': 'h',
	'ɪ': 'i', 'ᴊ': 'j', 'ᴋ': 'k', 'ʟ': 'l', 'ᴍ': 'm', 'ɴ': 'n', 'ᴏ': 'o', 'ᴘ': 'p',
	'ʀ': 'r', 'ꜱ': 's', 'ᴛ': 't', 'ᴜ': 'u', 'ᴠ': 'v', 'ᴡ': 'w', 'ʏ': 'y', 'ᴢ': 'z',
	'ɑ': 'a', 'ɡ': 'g', 'ɩ': 'i',
	// Circled digit zero (the others are ranges).
	'⓪': '0',
}

// homoglyphMathGreek lists, in order, the 58 letters of each mathematical Greek alphabet
// (U+1D6A8 onwards, five alphabets).
var homoglyphMathGreek = []rune("ΑΒΓΔΕΖΗΘΙΚΛΜΝΞΟΠΡϴΣΤΥΦΧΨΩ∇αβγδεζηθικλμνξοπρςστυφχψω∂ϵϑϰϕϱϖ")

// homoglyphAlways returns the base character of a presentation form that always folds,
// and whether r is one.
func homoglyphAlways(r rune) (rune, bool) {
	switch {
	case r < 0x0251:
		return 0, false
	case r >= 0xFF01 && r <= 0xFF5E: // fullwidth ASCII
		return r - 0xFF01 + '!', true
	case r >= 0x1D400 && r <= 0x1D6A3: // mathematical Latin alphabets, 52 letters each
		i := (r - 0x1D400) % 52
		if i < 26 {
			return 'A' + i, true
		}
		return 'a' + i - 26, true
	case r == 0x1D6A4:
		return 'i', true
	case r == 0x1D6A5:
		return 'j', true
	case r >= 0x1D6A8 && r <= 0x1D7C9: // mathematical Greek alphabets
		return homoglyphMathGreek[(r-0x1D6A8)%58], true
	case r >= 0x1D7CE && r <= 0x1D7FF: // mathematical digits
		return '0' + (r-0x1D7CE)%10, true
	case r >= 0x24B6 && r <= 0x24CF: // Ⓐ
		return 'A' + r - 0x24B6, true
	case r >= 0x24D0 && r <= 0x24E9: // ⓐ
		return 'a' + r - 0x24D0, true
	case r >= 0x249C && r <= 0x24B5: // ⒜
		return 'a' + r - 0x249C, true
	case r >= 0x2460 && r <= 0x2468: // ①
		return '1' + r - 0x2460, true
	case r >= 0x2776 && r <= 0x277E: // ❶
		return '1' + r - 0x2776, true
	case r >= 0x2780 && r <= 0x2788: // ➀
		return '1' + r - 0x2780, true
	case r >= 0x278A && r <= 0x2792: // ➊
		return '1' + r - 0x278A, true
	case r >= 0x1F110 && r <= 0x1F129: // 🄐
		return 'A' + r - 0x1F110, true
	case r >= 0x1F130 && r <= 0x1F149: // 🄰
		return 'A' + r - 0x1F130, true
	case r >= 0x1F150 && r <= 0x1F169: // 🅐
		return 'A' + r - 0x1F150, true
	case r >= 0x1F170 && r <= 0x1F189: // 🅰
		return 'A' + r - 0x1F170, true
	}
	switch {
	case r <= 0x029F, r >= 0x1D00 && r <= 0x1D22, r >= 0x2102 && r <= 0x217F,
		r == 0x24EA, r == 0xA730, r == 0xA731:
		f, ok := homoglyphAlwaysTable[r]
		return f, ok
	}
	return 0, false
}

// Dense copies of homoglyphContextual for its two ranges, so that the per-character
// lookup on the hot path is an index, not a map access.
const (
	homoglyphLowStart, homoglyphLowEnd           = 0x0370, 0x0590 // Greek, Cyrillic, Armenian
	homoglyphCherokeeStart, homoglyphCherokeeEnd = 0x13A0, 0x1400
)

var (
	homoglyphLow      = homoglyphDense(homoglyphLowStart, homoglyphLowEnd)
	homoglyphCherokee = homoglyphDense(homoglyphCherokeeStart, homoglyphCherokeeEnd)
)

func homoglyphDense(start, end rune) []byte {
	t := make([]byte, end-start)
	for r, l := range homoglyphContextual {
		if r >= start && r < end {
			t[r-start] = byte(l)
		}
	}
	return t
}

// homoglyphLookalike returns the Latin letter that a letter of another script looks
// like, or 0.
func homoglyphLookalike(r rune) rune {
	switch {
	case r >= homoglyphLowStart && r < homoglyphLowEnd:
		return rune(homoglyphLow[r-homoglyphLowStart])
	case r >= homoglyphCherokeeStart && r < homoglyphCherokeeEnd:
		return rune(homoglyphCherokee[r-homoglyphCherokeeStart])
	}
	return 0
}

// homoglyphCandidate reports whether r may fold at all, by either rule. It is the cheap
// test of Normalize's fast path.
func homoglyphCandidate(r rune) bool {
	switch {
	case r < 0x0251,
		r > 0x058F && r < 0x13A0,
		r > 0x13FF && r < 0x1D00,
		r > 0x1D22 && r < 0x2102,
		r > 0x2792 && r < 0xA730,
		r > 0xA731 && r < 0xFF01,
		r > 0xFF5E && r < 0x1D400:
		return false
	}
	if _, ok := homoglyphAlways(r); ok {
		return true
	}
	return homoglyphLookalike(r) != 0
}

// The word rule: which look-alikes fold where (documented on Normalize).

// normWordCounts counts a word's letters by script.
type normWordCounts struct {
	latin  int  // Latin letters, and presentation forms of them
	look   int  // letters of other scripts with a Latin look-alike
	other  int  // letters of other scripts without one
	digits int  // ASCII digits, and presentation forms of them
	forms  bool // whether the word holds presentation forms
}

// normBase returns the character a presentation form stands for (r itself otherwise),
// and whether r is one.
func normBase(r rune) (rune, bool) {
	if r < 0x0251 || r >= 0x02A0 && r < 0x1D00 || r >= 0x2E80 && r < 0xA730 {
		return r, false
	}
	if b, ok := homoglyphAlways(r); ok {
		return b, true
	}
	return r, false
}

func normIsWordRune(r rune) bool {
	if r < utf8.RuneSelf {
		return normIsAlnum(r)
	}
	return normIsLetter(r) || unicode.IsDigit(r) || unicode.IsMark(r)
}

// normIsLetter is unicode.IsLetter with shortcuts for the common blocks.
func normIsLetter(r rune) bool {
	switch {
	case r < utf8.RuneSelf:
		return normIsASCIILetter(byte(r))
	case r >= 0x0400 && r <= 0x052F: // Cyrillic: all letters but a sign and marks
		return r < 0x0482 || r > 0x0489
	case r >= 0x4E00 && r <= 0x9FFF: // CJK unified ideographs
		return true
	}
	return unicode.IsLetter(r)
}

func normCountWord(w string) normWordCounts {
	var c normWordCounts
	for _, r := range w {
		b, form := normBase(r)
		c.forms = c.forms || form
		switch {
		case b < utf8.RuneSelf:
			if normIsASCIILetter(byte(b)) {
				c.latin++
			} else if b >= '0' && b <= '9' {
				c.digits++
			}
		case !normIsLetter(b):
		case homoglyphLookalike(b) != 0:
			c.look++
		case b < 0x0250 || b >= 0x1D00 && unicode.Is(unicode.Latin, b):
			// Below U+0250 every letter is Latin; from there to U+1D00 none is.
			c.latin++
		default:
			c.other++
		}
	}
	return c
}

// normFoldsLookalikes is the word rule: a word's look-alike letters fold when it also
// holds Latin letters, or, in a Latin line, when it is made of them only (two or more,
// or with digits: "р1", "4х4").
func normFoldsLookalikes(c normWordCounts, latinLine bool) bool {
	return c.look > 0 && (c.latin > 0 || latinLine && normLookalikeWord(c))
}

// normLookalikeWord reports whether a word is made of look-alikes (and digits) only.
func normLookalikeWord(c normWordCounts) bool {
	return c.latin == 0 && c.other == 0 && (c.look >= 2 || c.look >= 1 && c.digits > 0)
}

// normLine is the script evidence of one line, and what there is to fold in it.
type normLine struct {
	latin, other int
	// forms says the line has presentation forms, mixed a word mixing Latin letters
	// and look-alikes, lookWord a word of two look-alikes or more and nothing else.
	forms, mixed, lookWord bool
}

// folds reports whether anything in the line folds, given the line's verdict.
func (l normLine) folds(latinLine bool) bool {
	return l.forms || l.mixed || l.lookWord && latinLine
}

func (l normLine) known() bool   { return l.latin+l.other > 0 }
func (l normLine) isLatin() bool { return l.latin > l.other }

// normLineEvidence counts the letters of line that decide whether it is Latin text:
// Latin letters and look-alikes that will fold with them against letters of other
// scripts that have no Latin look-alike. Words made only of look-alikes do not count, so
// that folding them cannot change the verdict on a second pass.
func normLineEvidence(line string) normLine {
	var l normLine
	ascii := true
	for i := 0; i < len(line); i++ {
		if line[i] >= utf8.RuneSelf {
			ascii = false
			break
		}
	}
	if ascii {
		for i := 0; i < len(line); i++ {
			if normIsASCIILetter(line[i]) {
				l.latin++
			}
		}
		return l
	}
	normWords(line, func(start, end int) {
		c := normCountWord(line[start:end])
		l.other += c.other
		l.latin += c.latin
		if c.latin > 0 {
			l.latin += c.look
		}
		l.forms = l.forms || c.forms
		l.mixed = l.mixed || c.latin > 0 && c.look > 0
		l.lookWord = l.lookWord || normLookalikeWord(c)
	})
	if !l.forms {
		// Presentation forms outside words (fullwidth punctuation).
		for _, r := range line {
			if _, form := normBase(r); form {
				l.forms = true
				break
			}
		}
	}
	return l
}

// normWords calls f with the bounds of each word of s: a maximal run of letters, digits
// and marks (presentation forms counted as what they stand for).
func normWords(s string, f func(start, end int)) {
	start := -1
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		b, _ := normBase(r)
		if normIsWordRune(b) {
			if start < 0 {
				start = i
			}
		} else if start >= 0 {
			f(start, i)
			start = -1
		}
		i += n
	}
	if start >= 0 {
		f(start, len(s))
	}
}

// fold folds look-alike letters in s to ASCII, by the rule documented on Normalize.
func (st *normState) fold(s string) string {
	found := false
	for i := 0; i < len(s); {
		if s[i] < utf8.RuneSelf {
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		if homoglyphCandidate(r) {
			found = true
			break
		}
		i += n
	}
	if !found {
		return s
	}
	e := normEdit{src: s}
	prev := normLine{}  // verdict of the last line with evidence
	first := normLine{} // verdict of the first line with evidence
	firstDone := false  // whether first has been looked for
	for start := 0; start < len(s); {
		end := strings.IndexByte(s[start:], '\n')
		if end < 0 {
			end = len(s)
		} else {
			end += start + 1
		}
		line := s[start:end]
		ev := normLineEvidence(line)
		switch {
		case ev.known():
			prev = ev
		case !prev.known() && !firstDone:
			firstDone = true
			for j := end; j < len(s); {
				k := strings.IndexByte(s[j:], '\n')
				if k < 0 {
					k = len(s)
				} else {
					k += j + 1
				}
				if l := normLineEvidence(s[j:k]); l.known() {
					first = l
					break
				}
				j = k
			}
		}
		verdict := prev
		if !prev.known() {
			verdict = first
		}
		if ev.folds(verdict.isLatin()) {
			st.foldLine(&e, start, line, verdict.isLatin())
		}
		start = end
	}
	return e.String()
}

// foldLine folds the look-alikes of one line, at offset off of the edited text.
func (st *normState) foldLine(e *normEdit, off int, line string, latinLine bool) {
	foldWord := func(start, end int) {
		w := line[start:end]
		c := normCountWord(w)
		look := normFoldsLookalikes(c, latinLine)
		// Presentation forms are a trick when they spell a Latin word in Latin text; a
		// lone one, or fullwidth Latin in Japanese, is typography.
		forms := c.latin >= 2 && c.other == 0 && latinLine
		for i := 0; i < len(w); {
			r, n := utf8.DecodeRuneInString(w[i:])
			b, form := normBase(r)
			if l := homoglyphLookalike(b); l != 0 && look {
				st.tricks |= normBitHomoglyph
				e.replaceRune(off+start+i, off+start+i+n, l)
			} else if form {
				if forms && b < utf8.RuneSelf && normIsASCIILetter(byte(b)) {
					st.tricks |= normBitHomoglyph
				}
				e.replaceRune(off+start+i, off+start+i+n, b)
			}
			i += n
		}
	}
	ascii := true
	for i := 0; i < len(line); i++ {
		if line[i] >= utf8.RuneSelf {
			ascii = false
			break
		}
	}
	if ascii {
		return
	}
	start := -1
	for i := 0; i < len(line); {
		r, n := utf8.DecodeRuneInString(line[i:])
		b, form := normBase(r)
		if normIsWordRune(b) {
			if start < 0 {
				start = i
			}
			i += n
			continue
		}
		if start >= 0 {
			foldWord(start, i)
			start = -1
		}
		if form {
			// Fullwidth punctuation and symbols: typography, not a trick.
			e.replaceRune(off+i, off+i+n, b)
		}
		i += n
	}
	if start >= 0 {
		foldWord(start, len(line))
	}
}
