package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"slices"
	"strconv"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

const (
	// maxSummaryBytes bounds the length of SummarizeArgs's result.
	maxSummaryBytes = 512
	// maxNameBytes bounds each argument name shown by SummarizeArgs; longer
	// names are cut and marked with "…".
	maxNameBytes = 64
)

// HashArgs returns "sha256:" and the lower-case hex SHA-256 of raw, the
// argument bytes exactly as the agent sent them.
func HashArgs(raw []byte) string {
	sum := sha256.Sum256(raw)
	return hashString(&sum)
}

// SummarizeArgs returns a redacted summary of a call's JSON arguments, for
// the audit log: the top-level names, sorted, each with its value's type and
// size, and never a value.
//
//	{"to":"bob@example.com","amount":12.5,"cc":[]}  ->  {amount:number, cc:array(0), to:string(15)}
//
// Types are number, bool, null, string(characters), array(elements) and
// object(keys). Names that are not plain identifiers are quoted; names longer
// than 64 bytes are cut and marked with "…"; a name repeated in the input is
// listed as often as it occurs. Arguments that are not an object are
// summarized as a single type ("array(3)"), empty input as "(none)" and
// anything that is not valid JSON as "(invalid json, N bytes)". The result is
// at most 512 bytes: names that do not fit are counted ("+12 more").
//
// Names, types and sizes are what [json.Decoder] would report: strings are
// counted in characters after decoding, where each byte of invalid UTF-8 and
// each \u escape of a lone surrogate becomes one U+FFFD.
func SummarizeArgs(raw []byte) string {
	if len(bytes.TrimSpace(raw)) == 0 {
		return "(none)"
	}
	// Everything below relies on this check: argScanner trusts its input to
	// be exactly one valid JSON value and checks nothing itself.
	if !json.Valid(raw) {
		return invalidArgs(raw)
	}
	s := argScanner{data: raw}
	s.skipSpace()
	if s.data[s.pos] != '{' {
		var buf [32]byte
		return string(s.value().appendTo(buf[:0]))
	}
	s.pos++ // {
	// Most calls have a handful of arguments; keep them off the heap.
	var stack [16]argSummary
	args := stack[:0]
	for {
		s.skipSpace()
		if s.data[s.pos] == '}' {
			break
		}
		if s.data[s.pos] == ',' {
			s.pos++
			s.skipSpace()
		}
		name, ok := s.name()
		if !ok {
			return invalidArgs(raw)
		}
		s.skipSpace()
		s.pos++ // :
		s.skipSpace()
		a := argSummary{typ: s.value()}
		a.name, a.cut = cutName(name)
		args = append(args, a)
	}
	slices.SortStableFunc(args, func(a, b argSummary) int { return bytes.Compare(a.name, b.name) })
	return renderArgs(args)
}

func invalidArgs(raw []byte) string {
	return "(invalid json, " + strconv.Itoa(len(raw)) + " bytes)"
}

// argSummary is one top-level argument as SummarizeArgs shows it.
type argSummary struct {
	name []byte // at most maxNameBytes, valid UTF-8; may alias the input
	cut  bool   // name was longer
	typ  argType
}

func (a argSummary) appendTo(b []byte) []byte {
	if a.cut || !plainName(a.name) {
		b = strconv.AppendQuote(b, string(a.name))
	} else {
		b = append(b, a.name...)
	}
	if a.cut {
		b = append(b, "…"...)
	}
	b = append(b, ':')
	return a.typ.appendTo(b)
}

// argType is the type and size of a JSON value.
type argType struct {
	kind argKind
	n    int // characters, elements or keys; only for sized kinds
}

type argKind uint8

const (
	kindNumber argKind = iota
	kindBool
	kindNull
	kindString
	kindArray
	kindObject
)

var kindNames = [...]string{
	kindNumber: "number",
	kindBool:   "bool",
	kindNull:   "null",
	kindString: "string",
	kindArray:  "array",
	kindObject: "object",
}

func (t argType) appendTo(b []byte) []byte {
	b = append(b, kindNames[t.kind]...)
	if t.kind == kindString || t.kind == kindArray || t.kind == kindObject {
		b = append(b, '(')
		b = strconv.AppendInt(b, int64(t.n), 10)
		b = append(b, ')')
	}
	return b
}

// renderArgs joins args within maxSummaryBytes, counting those left out.
func renderArgs(args []argSummary) string {
	// Room for a full summary plus the one item that may overshoot it
	// before being taken back; longer items still work, on the heap.
	var buf [2 * maxSummaryBytes]byte
	b := append(buf[:0], '{')
	for i, a := range args {
		start := len(b)
		if i > 0 {
			b = append(b, ", "...)
		}
		b = a.appendTo(b)
		// Keep room for the closing brace and, while more follow, for the
		// note counting them should the next one not fit.
		need := len("}")
		if rest := len(args) - i - 1; rest > 0 {
			var note [32]byte
			need += len(appendMoreNote(note[:0], rest, true))
		}
		if len(b)+need > maxSummaryBytes {
			b = appendMoreNote(b[:start], len(args)-i, i > 0)
			break
		}
	}
	b = append(b, '}')
	return string(b)
}

func appendMoreNote(b []byte, n int, sep bool) []byte {
	if sep {
		b = append(b, ", "...)
	}
	b = append(b, '+')
	b = strconv.AppendInt(b, int64(n), 10)
	return append(b, " more"...)
}

// cutName returns name, which must be valid UTF-8, cut to at most
// maxNameBytes on a character boundary, and whether it was cut.
func cutName(name []byte) ([]byte, bool) {
	if len(name) <= maxNameBytes {
		return name, false
	}
	end := 0
	for end < len(name) {
		_, size := utf8.DecodeRune(name[end:])
		if end+size > maxNameBytes {
			break
		}
		end += size
	}
	return name[:end], true
}

// plainName reports whether name can be shown unquoted.
func plainName(name []byte) bool {
	if len(name) == 0 {
		return false
	}
	for _, c := range name {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '_', c == '-', c == '.', c == '$', c == '@', c == '/':
		default:
			return false
		}
	}
	return true
}

// argScanner walks a document that json.Valid has accepted, in one pass
// and without allocating. Because the input is known to be valid it checks
// nothing: every method would misbehave, possibly panic, on invalid JSON.
type argScanner struct {
	data []byte
	pos  int // next byte to read
}

func (s *argScanner) skipSpace() {
	for s.pos < len(s.data) {
		switch s.data[s.pos] {
		case ' ', '\t', '\n', '\r':
			s.pos++
		default:
			return
		}
	}
}

// name consumes the object key at s.pos and returns it decoded: a slice of
// the input when it needs no decoding, a copy otherwise. It reports false
// only if encoding/json cannot decode the key, which valid JSON rules out.
func (s *argScanner) name() ([]byte, bool) {
	start := s.pos
	s.pos = stringEnd(s.data, start)
	quoted := s.data[start:s.pos]
	body := quoted[1 : len(quoted)-1]
	if bytes.IndexByte(body, '\\') < 0 && utf8.Valid(body) {
		return body, true
	}
	// Escapes and invalid UTF-8 are rare in names: let encoding/json
	// decode them, so that names read exactly as json.Decoder reads them.
	var name string
	if err := json.Unmarshal(quoted, &name); err != nil {
		return nil, false
	}
	return []byte(name), true
}

// value consumes the value at s.pos and returns its type and size.
func (s *argScanner) value() argType {
	switch s.data[s.pos] {
	case '"':
		start := s.pos
		s.pos = stringEnd(s.data, start)
		return argType{kind: kindString, n: decodedLen(s.data[start+1 : s.pos-1])}
	case '{':
		return argType{kind: kindObject, n: s.container()}
	case '[':
		return argType{kind: kindArray, n: s.container()}
	case 't':
		s.pos += len("true")
		return argType{kind: kindBool}
	case 'f':
		s.pos += len("false")
		return argType{kind: kindBool}
	case 'n':
		s.pos += len("null")
		return argType{kind: kindNull}
	}
	for s.pos < len(s.data) && isNumberByte(s.data[s.pos]) {
		s.pos++
	}
	return argType{kind: kindNumber}
}

func isNumberByte(c byte) bool {
	return '0' <= c && c <= '9' || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E'
}

// container consumes the object or array at s.pos and returns how many
// members or elements it has directly: one more than its commas outside
// nested values and strings, or none if it is empty.
func (s *argScanner) container() int {
	s.pos++ // { or [
	s.skipSpace()
	if c := s.data[s.pos]; c == '}' || c == ']' {
		s.pos++
		return 0
	}
	n, depth := 1, 1
	for {
		switch s.data[s.pos] {
		case '"':
			s.pos = stringEnd(s.data, s.pos)
			continue
		case '{', '[':
			depth++
		case '}', ']':
			depth--
			if depth == 0 {
				s.pos++
				return n
			}
		case ',':
			if depth == 1 {
				n++
			}
		}
		s.pos++
	}
}

// stringEnd returns the index just past the closing quote of the string
// whose opening quote is data[open].
func stringEnd(data []byte, open int) int {
	i := open + 1
	for {
		q := i + bytes.IndexByte(data[i:], '"')
		// The quote ends the string unless an odd number of backslashes
		// precede it. The opening quote stops the count.
		k := q
		for data[k-1] == '\\' {
			k--
		}
		if (q-k)%2 == 0 {
			return q + 1
		}
		i = q + 1
	}
}

// decodedLen returns the number of characters in the string whose body
// (without quotes) is body, as encoding/json decodes it: every escape is one
// character, except that a \u escape of a high surrogate directly followed
// by one of a low surrogate is one character for both, and every byte of
// invalid UTF-8 is one U+FFFD, as utf8.RuneCount counts it.
func decodedLen(body []byte) int {
	n := 0
	for {
		i := bytes.IndexByte(body, '\\')
		if i < 0 {
			return n + utf8.RuneCount(body)
		}
		n += utf8.RuneCount(body[:i]) + 1
		if body[i+1] != 'u' {
			body = body[i+2:]
			continue
		}
		r := hex4(body[i+2 : i+6])
		body = body[i+6:]
		if utf16.IsSurrogate(r) && len(body) >= 6 && body[0] == '\\' && body[1] == 'u' &&
			utf16.DecodeRune(r, hex4(body[2:6])) != unicode.ReplacementChar {
			body = body[6:]
		}
	}
}

// hex4 returns the value of four hexadecimal digits.
func hex4(b []byte) rune {
	var r rune
	for _, c := range b[:4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c = c - 'a' + 10
		default:
			c = c - 'A' + 10
		}
		r = r<<4 | rune(c)
	}
	return r
}
