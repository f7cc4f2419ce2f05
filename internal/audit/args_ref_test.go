package audit

import (
	"bytes"
	"encoding/json"
	"errors"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// SummarizeArgsRef is the Decoder-based SummarizeArgs that the single-pass
// one replaced, kept as the reference the fuzz target compares it with.
var SummarizeArgsRef = summarizeArgsRef

// summarizeArgsRef is SummarizeArgs as it was before the single-pass
// scanner: it re-walks the input with [json.Decoder.Token]. It is slow but
// obviously right; do not change it to match SummarizeArgs.
func summarizeArgsRef(raw []byte) string {
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
		s, err := describeValueRef(dec, tok)
		if err != nil {
			return invalid
		}
		return s
	}
	var args []refArgSummary
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
		typ, err := describeValueRef(dec, tok)
		if err != nil {
			return invalid
		}
		a := refArgSummary{typ: typ}
		a.name, a.cut = cutNameRef(name)
		args = append(args, a)
	}
	slices.SortStableFunc(args, func(a, b refArgSummary) int { return strings.Compare(a.name, b.name) })
	return renderArgsRef(args)
}

type refArgSummary struct {
	name string // at most maxNameBytes, valid UTF-8
	cut  bool   // name was longer
	typ  string
}

func (a refArgSummary) String() string {
	name := a.name
	if a.cut || !plainNameRef(name) {
		name = strconv.Quote(name)
	}
	if a.cut {
		name += "…"
	}
	return name + ":" + a.typ
}

func renderArgsRef(args []refArgSummary) string {
	var b strings.Builder
	b.WriteByte('{')
	for i, a := range args {
		item := a.String()
		if i > 0 {
			item = ", " + item
		}
		need := len(item) + len("}")
		if rest := len(args) - i - 1; rest > 0 {
			need += len(moreNoteRef(rest, true))
		}
		if b.Len()+need > maxSummaryBytes {
			b.WriteString(moreNoteRef(len(args)-i, i > 0))
			break
		}
		b.WriteString(item)
	}
	b.WriteByte('}')
	return b.String()
}

func moreNoteRef(n int, sep bool) string {
	s := "+" + strconv.Itoa(n) + " more"
	if sep {
		s = ", " + s
	}
	return s
}

func cutNameRef(name string) (string, bool) {
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

func plainNameRef(name string) bool {
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

var errNotValueRef = errors.New("token does not start a value")

func describeValueRef(dec *json.Decoder, tok json.Token) (string, error) {
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
			return "", errNotValueRef
		}
		n := 0
		for dec.More() {
			if kind == "object" {
				if _, err := dec.Token(); err != nil { // the key
					return "", err
				}
			}
			if err := skipValueRef(dec); err != nil {
				return "", err
			}
			n++
		}
		if _, err := dec.Token(); err != nil { // the closing delimiter
			return "", err
		}
		return kind + "(" + strconv.Itoa(n) + ")", nil
	}
	return "", errNotValueRef
}

func skipValueRef(dec *json.Decoder) error {
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
