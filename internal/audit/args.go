package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"slices"
	"strconv"
	"strings"
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
	return hashPrefix + hex.EncodeToString(sum[:])
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
func SummarizeArgs(raw []byte) string {
	if len(bytes.TrimSpace(raw)) == 0 {
		return "(none)"
	}
	invalid := "(invalid json, " + strconv.Itoa(len(raw)) + " bytes)"
	if !json.Valid(raw) {
		return invalid
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber() // numbers are never parsed: only their type is shown
	tok, err := dec.Token()
	if err != nil {
		return invalid
	}
	if tok != json.Delim('{') {
		s, err := describeValue(dec, tok)
		if err != nil {
			return invalid
		}
		return s
	}
	var args []argSummary
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return invalid
		}
		name, ok := tok.(string)
		if !ok {
			return invalid
		}
		tok, err = dec.Token()
		if err != nil {
			return invalid
		}
		typ, err := describeValue(dec, tok)
		if err != nil {
			return invalid
		}
		a := argSummary{typ: typ}
		a.name, a.cut = cutName(name)
		args = append(args, a)
	}
	slices.SortStableFunc(args, func(a, b argSummary) int { return strings.Compare(a.name, b.name) })
	return renderArgs(args)
}

// argSummary is one top-level argument as SummarizeArgs shows it.
type argSummary struct {
	name string // at most maxNameBytes, valid UTF-8
	cut  bool   // name was longer
	typ  string
}

func (a argSummary) String() string {
	name := a.name
	if a.cut || !plainName(name) {
		name = strconv.Quote(name)
	}
	if a.cut {
		name += "…"
	}
	return name + ":" + a.typ
}

// renderArgs joins args within maxSummaryBytes, counting those left out.
func renderArgs(args []argSummary) string {
	var b strings.Builder
	b.WriteByte('{')
	for i, a := range args {
		item := a.String()
		if i > 0 {
			item = ", " + item
		}
		// Keep room for the closing brace and, while more follow, for the
		// note counting them should the next one not fit.
		need := len(item) + len("}")
		if rest := len(args) - i - 1; rest > 0 {
			need += len(moreNote(rest, true))
		}
		if b.Len()+need > maxSummaryBytes {
			b.WriteString(moreNote(len(args)-i, i > 0))
			break
		}
		b.WriteString(item)
	}
	b.WriteByte('}')
	return b.String()
}

func moreNote(n int, sep bool) string {
	s := "+" + strconv.Itoa(n) + " more"
	if sep {
		s = ", " + s
	}
	return s
}

// cutName returns name made valid UTF-8 and cut to at most maxNameBytes on a
// character boundary, and whether it was cut.
func cutName(name string) (string, bool) {
	name = strings.ToValidUTF8(name, "\uFFFD")
	if len(name) <= maxNameBytes {
		return name, false
	}
	end := 0
	for i, r := range name {
		if i+utf8.RuneLen(r) > maxNameBytes {
			break
		}
		end = i + utf8.RuneLen(r)
	}
	return name[:end], true
}

// plainName reports whether name can be shown unquoted.
func plainName(name string) bool {
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		switch c := name[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '_', c == '-', c == '.', c == '$', c == '@', c == '/':
		default:
			return false
		}
	}
	return true
}

var errNotValue = errors.New("token does not start a value")

// describeValue consumes the rest of the value that starts with tok and
// returns its type and size.
func describeValue(dec *json.Decoder, tok json.Token) (string, error) {
	switch t := tok.(type) {
	case string:
		return "string(" + strconv.Itoa(utf8.RuneCountInString(t)) + ")", nil
	case json.Number:
		return "number", nil
	case bool:
		return "bool", nil
	case nil:
		return "null", nil
	case json.Delim:
		var kind string
		switch t {
		case '{':
			kind = "object"
		case '[':
			kind = "array"
		default:
			return "", errNotValue
		}
		n := 0
		for dec.More() {
			if kind == "object" {
				if _, err := dec.Token(); err != nil { // the key
					return "", err
				}
			}
			if err := skipValue(dec); err != nil {
				return "", err
			}
			n++
		}
		if _, err := dec.Token(); err != nil { // the closing delimiter
			return "", err
		}
		return kind + "(" + strconv.Itoa(n) + ")", nil
	}
	return "", errNotValue
}

// skipValue consumes the next value, however deeply nested.
func skipValue(dec *json.Decoder) error {
	depth := 0
	for {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		if d, ok := tok.(json.Delim); ok {
			if d == '{' || d == '[' {
				depth++
			} else {
				depth--
			}
		}
		if depth == 0 {
			return nil
		}
	}
}
