package cli

// The scanner of TestDocCommands: it finds the command lines in Markdown — fenced blocks and
// inline code — and splits them as a POSIX shell would (see docs_test.go for the rules).

import (
	"errors"
	"path"
	"regexp"
	"slices"
	"strings"
)

// docCommand is one command found in a Markdown document.
type docCommand struct {
	line     int      // 1-based line of the document where the command line starts
	text     string   // the command line as written (one logical line, or a code span)
	prog     string   // progChaperone or progMake
	args     []string // the words after the program, placeholders substituted
	synopsis bool     // usage grammar, not a command: not run
	err      error    // the command line could not be split: it is reported, not run
}

// docCommands returns the chaperone and make commands of a Markdown document in the
// order they appear, following the rules at the top of this file.
func docCommands(src string) []docCommand {
	lines := strings.Split(src, "\n")
	for i, l := range lines {
		lines[i] = strings.TrimSuffix(l, "\r")
	}
	var (
		out       []docCommand
		para      []string
		paraStart int
	)
	flush := func() {
		if len(para) > 0 {
			out = append(out, spanCommands(strings.Join(para, "\n"), paraStart)...)
		}
		para = nil
	}
	for i := 0; i < len(lines); i++ {
		if f, ok := openFence(lines[i]); ok {
			flush()
			j := i + 1
			var body []string
			for ; j < len(lines) && !f.closedBy(lines[j]); j++ {
				body = append(body, f.strip(lines[j]))
			}
			out = append(out, blockCommands(f.lang, body, i+2)...)
			i = j
			continue
		}
		if strings.TrimSpace(lines[i]) == "" {
			flush()
			continue
		}
		if len(para) == 0 {
			paraStart = i + 1
		}
		para = append(para, lines[i])
	}
	flush()
	return out
}

// fence is the opening line of a fenced code block.
type fence struct {
	indent int    // spaces before the fence, removed from the block's lines
	char   byte   // '`' or '~'
	n      int    // length of the fence
	lang   string // the first word of the info string, lower case
}

// openFence reports whether line opens a fenced code block, and how.
func openFence(line string) (fence, bool) {
	rest := strings.TrimLeft(line, " ")
	f := fence{indent: len(line) - len(rest)}
	if rest == "" || (rest[0] != '`' && rest[0] != '~') {
		return fence{}, false
	}
	f.char = rest[0]
	for f.n < len(rest) && rest[f.n] == f.char {
		f.n++
	}
	info := strings.TrimSpace(rest[f.n:])
	if f.n < 3 || (f.char == '`' && strings.Contains(info, "`")) {
		return fence{}, false
	}
	if fields := strings.Fields(info); len(fields) > 0 {
		f.lang = strings.ToLower(fields[0])
	}
	return f, true
}

// closedBy reports whether line closes the block f opened.
func (f fence) closedBy(line string) bool {
	rest := strings.TrimLeft(line, " ")
	n := 0
	for n < len(rest) && rest[n] == f.char {
		n++
	}
	return n >= f.n && strings.TrimSpace(rest[n:]) == ""
}

// strip removes the fence's indentation from a line of its block.
func (f fence) strip(line string) string {
	n := 0
	for n < f.indent && n < len(line) && line[n] == ' ' {
		n++
	}
	return line[n:]
}

// blockCommands returns the commands of a fenced block whose first line is line first.
func blockCommands(lang string, body []string, first int) []docCommand {
	every := false
	switch lang {
	case "sh", "bash", "shell", "zsh":
		every = !slices.ContainsFunc(body, func(l string) bool { return strings.HasPrefix(l, "$ ") })
	case "console", "":
	default:
		return nil
	}
	var out []docCommand
	for k := 0; k < len(body); k++ {
		start, l := first+k, body[k]
		if !every {
			var prompted bool
			if l, prompted = strings.CutPrefix(l, "$ "); !prompted {
				continue
			}
		}
		for strings.HasSuffix(l, `\`) && k+1 < len(body) {
			k++
			l = l[:len(l)-1] + " " + body[k]
		}
		out = append(out, lineCommands(l, start, 0)...)
	}
	return out
}

// spanCommands returns the commands in the inline code spans of a paragraph that starts
// at line first.
func spanCommands(text string, first int) []docCommand {
	var out []docCommand
	for i := 0; i < len(text); {
		switch text[i] {
		case '\\':
			i += 2
			continue
		case '`':
		default:
			i++
			continue
		}
		n := backtickRun(text, i)
		end := -1
		for j := i + n; j < len(text); {
			if text[j] != '`' {
				j++
				continue
			}
			m := backtickRun(text, j)
			if m == n {
				end = j
				break
			}
			j += m
		}
		if end < 0 {
			i += n // a literal run of backticks
			continue
		}
		span := strings.ReplaceAll(text[i+n:end], "\n", " ")
		if len(span) >= 2 && span[0] == ' ' && span[len(span)-1] == ' ' && strings.TrimSpace(span) != "" {
			span = span[1 : len(span)-1]
		}
		// In a table cell a code span writes | as \|.
		span = strings.ReplaceAll(span, `\|`, "|")
		out = append(out, lineCommands(span, first+strings.Count(text[:i], "\n"), 0)...)
		i = end + n
	}
	return out
}

// backtickRun is the length of the run of backticks at text[i].
func backtickRun(text string, i int) int {
	n := 0
	for i+n < len(text) && text[i+n] == '`' {
		n++
	}
	return n
}

// chaperoneWord finds chaperone written as a program name in a command line.
var chaperoneWord = regexp.MustCompile(`(^|[\s/(|;&])chaperone(\s|$)`)

// lineCommands returns the chaperone and make commands of one command line, those inside
// its substitutions included.
func lineCommands(text string, line, depth int) []docCommand {
	text = strings.TrimSpace(text)
	segs, subs, err := splitShell(text)
	if err != nil {
		if chaperoneWord.MatchString(text) {
			return []docCommand{{line: line, text: text, prog: progChaperone, err: err}}
		}
		return nil
	}
	var out []docCommand
	for _, s := range segs {
		if c, ok := commandOf(s); ok {
			c.line, c.text = line, text
			out = append(out, c)
		}
	}
	if depth < maxSubstitutionDepth {
		for _, s := range subs {
			out = append(out, lineCommands(s, line, depth+1)...)
		}
	}
	return out
}

var (
	shellAssignment = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*=`)
	angleWord       = regexp.MustCompile(`<[A-Za-z][A-Za-z0-9_.-]*>`)
	angleAt         = regexp.MustCompile(`^<[A-Za-z][A-Za-z0-9_.-]*>`)
)

// commandOf returns the chaperone or make command a simple command is, if it is one.
func commandOf(s shellSegment) (docCommand, bool) {
	w := s.words
	for len(w) > 0 && !w[0].quoted && shellAssignment.MatchString(w[0].text) {
		w = w[1:]
	}
	if len(w) > 0 && !w[0].quoted && w[0].text == "sudo" {
		w = w[1:]
	}
	if len(w) == 0 {
		return docCommand{}, false
	}
	c := docCommand{synopsis: s.grammar}
	switch p := w[0].text; {
	case p == "chaperone" || (strings.HasSuffix(p, "/chaperone") && !strings.ContainsAny(p, " \t")):
		c.prog, w = progChaperone, w[1:]
	case p == "go" && len(w) >= 3 && w[1].text == "run" && path.Clean(w[2].text) == "cmd/chaperone":
		c.prog, w = progChaperone, w[3:]
	case p == "make":
		c.prog, w = progMake, w[1:]
	default:
		return docCommand{}, false
	}
	for _, x := range w {
		if c.prog == progMake && (strings.HasPrefix(x.text, "-") || shellAssignment.MatchString(x.text)) {
			continue // an option or a variable, not a target
		}
		c.args = append(c.args, substitutePlaceholders(x))
	}
	return c, len(c.args) > 0
}

// substitutePlaceholders replaces the placeholders of a word with values that parse.
func substitutePlaceholders(w shellWord) string {
	if w.expand {
		return "1"
	}
	if v, ok := docPlaceholders[w.text]; ok && !w.quoted {
		return v
	}
	s := angleWord.ReplaceAllString(w.text, "x")
	return strings.ReplaceAll(s, "…", "0")
}

// shellWord is one word of a command line, its quotes removed.
type shellWord struct {
	text   string
	quoted bool // some of it was quoted or escaped
	expand bool // the whole word is one expansion: $VAR, ${VAR}, $(...) or `...`
}

// shellSegment is one simple command of a command line: the words between the operators
// | || && ; and &, without redirections.
type shellSegment struct {
	words   []shellWord
	grammar bool // it holds usage-synopsis notation: [optional], (a | b), a|b, PATH...
}

// splitShell splits a command line into its simple commands as a POSIX shell would, as far
// as finding the commands needs: quotes, escapes, comments, operators and redirections.
// It also returns the command lines inside $(...), `...` and <(...), which it leaves in
// their words unexpanded. It fails on an unterminated quote or substitution, a
// redirection without a file and a here-document.
func splitShell(s string) ([]shellSegment, []string, error) {
	var (
		segs   []shellSegment
		subs   []string
		cur    shellSegment
		word   strings.Builder
		inWord bool
		quoted bool
		start  int  // where the current word starts in s
		drop   bool // the next word is a redirection's file, not part of the command
	)
	begin := func(i int) {
		if !inWord {
			inWord, start = true, i
		}
	}
	endWord := func(end int) {
		if !inWord {
			return
		}
		w := shellWord{text: word.String(), quoted: quoted, expand: wholeExpansion(s[start:end])}
		word.Reset()
		inWord, quoted = false, false
		if drop {
			drop = false
			return
		}
		if !w.quoted && strings.HasSuffix(w.text, "...") {
			cur.grammar = true
		}
		cur.words = append(cur.words, w)
	}
	endSeg := func() error {
		if drop {
			return errors.New("redirection without a file")
		}
		if len(cur.words) > 0 {
			segs = append(segs, cur)
		}
		cur = shellSegment{}
		return nil
	}
	substitution := func(i, open int) (int, error) {
		end, err := closeParen(s, open)
		if err != nil {
			return 0, err
		}
		subs = append(subs, s[open:end])
		word.WriteString(s[i : end+1])
		return end + 1, nil
	}
	for i := 0; i < len(s); {
		c := s[i]
		next := byte(0)
		if i+1 < len(s) {
			next = s[i+1]
		}
		var err error
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			endWord(i)
			i++
		case c == '#' && !inWord:
			i = len(s)
		case c == '\\':
			begin(i)
			quoted = true
			if i+1 < len(s) {
				word.WriteByte(next)
			}
			i += 2
		case c == '\'':
			begin(i)
			quoted = true
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				return nil, nil, errors.New("unterminated ' quote")
			}
			word.WriteString(s[i+1 : i+1+j])
			i += j + 2
		case c == '"':
			begin(i)
			quoted = true
			i, err = doubleQuoted(s, i+1, &word, &subs)
		case c == '`':
			begin(i)
			j := strings.IndexByte(s[i+1:], '`')
			if j < 0 {
				return nil, nil, errors.New("unterminated ` substitution")
			}
			subs = append(subs, s[i+1:i+1+j])
			word.WriteString(s[i : i+j+2])
			i += j + 2
		case (c == '$' || c == '<' || c == '>') && next == '(':
			begin(i)
			i, err = substitution(i, i+2)
		case c == '<' && angleAt.MatchString(s[i:]):
			// <token>: a placeholder, not a redirection.
			begin(i)
			m := angleAt.FindString(s[i:])
			word.WriteString(m)
			i += len(m)
		case c == '<' || c == '>' || (c == '&' && next == '>'):
			if c == '<' && next == '<' {
				return nil, nil, errors.New("here-documents are not supported")
			}
			if inWord && !quoted && shellDigits(word.String()) {
				word.Reset() // 2>: the descriptor, not a word
				inWord = false
			} else {
				endWord(i)
			}
			if drop {
				return nil, nil, errors.New("redirection without a file")
			}
			i++
			if c == '&' || (i < len(s) && (s[i] == '>' || s[i] == '&' || s[i] == '|')) {
				i++ // &> >> >& >|
			}
			drop = true
		case c == '|' && inWord && next != 0 && next != '|' && !shellBlank(next):
			cur.grammar = true // a|b: alternatives in a synopsis
			word.WriteByte(c)
			i++
		case c == '|' || c == '&' || c == ';':
			endWord(i)
			err = endSeg()
			i++
			if (c == '|' || c == '&') && next == c {
				i++
			}
		case (c == '[' || c == '(') && !inWord:
			cur.grammar = true // [optional], (a | b)
			begin(i)
			word.WriteByte(c)
			i++
		default:
			begin(i)
			word.WriteByte(c)
			i++
		}
		if err != nil {
			return nil, nil, err
		}
	}
	endWord(len(s))
	if err := endSeg(); err != nil {
		return nil, nil, err
	}
	return segs, subs, nil
}

// doubleQuoted reads a double-quoted string from s[i:], just after its opening quote, into
// word, and returns where it ends.
func doubleQuoted(s string, i int, word *strings.Builder, subs *[]string) (int, error) {
	for i < len(s) {
		switch c := s[i]; {
		case c == '"':
			return i + 1, nil
		case c == '\\' && i+1 < len(s) && strings.IndexByte("$`\"\\\n", s[i+1]) >= 0:
			word.WriteByte(s[i+1])
			i += 2
		case c == '$' && i+1 < len(s) && s[i+1] == '(':
			end, err := closeParen(s, i+2)
			if err != nil {
				return 0, err
			}
			*subs = append(*subs, s[i+2:end])
			word.WriteString(s[i : end+1])
			i = end + 1
		case c == '`':
			j := strings.IndexByte(s[i+1:], '`')
			if j < 0 {
				return 0, errors.New("unterminated ` substitution")
			}
			*subs = append(*subs, s[i+1:i+1+j])
			word.WriteString(s[i : i+j+2])
			i += j + 2
		default:
			word.WriteByte(c)
			i++
		}
	}
	return 0, errors.New(`unterminated " quote`)
}

// closeParen returns the index of the ")" that closes a "(" just before s[i:].
func closeParen(s string, i int) (int, error) {
	depth := 1
	for j := i; j < len(s); j++ {
		switch s[j] {
		case '\\':
			j++
		case '\'':
			k := strings.IndexByte(s[j+1:], '\'')
			if k < 0 {
				return 0, errors.New("unterminated ' quote")
			}
			j += k + 1
		case '"':
			for j++; j < len(s) && s[j] != '"'; j++ {
				if s[j] == '\\' {
					j++
				}
			}
			if j >= len(s) {
				return 0, errors.New(`unterminated " quote`)
			}
		case '(':
			depth++
		case ')':
			if depth--; depth == 0 {
				return j, nil
			}
		}
	}
	return 0, errors.New("unterminated $( substitution")
}

var shellVariable = regexp.MustCompile(`^\$([A-Za-z_][A-Za-z0-9_]*|\{[^{}]*\})$`)

// wholeExpansion reports whether a word as written is one expansion, quoted or not.
func wholeExpansion(raw string) bool {
	if len(raw) >= 2 && raw[0] == '"' && raw[len(raw)-1] == '"' {
		raw = raw[1 : len(raw)-1]
	}
	switch {
	case shellVariable.MatchString(raw):
		return true
	case strings.HasPrefix(raw, "$("):
		end, err := closeParen(raw, 2)
		return err == nil && end == len(raw)-1
	case len(raw) >= 2 && raw[0] == '`':
		return strings.IndexByte(raw[1:], '`') == len(raw)-2
	}
	return false
}

func shellDigits(s string) bool {
	return s != "" && strings.Trim(s, "0123456789") == ""
}

func shellBlank(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// makeTarget finds the targets a Makefile rule line defines: "name other: deps".
var makeTarget = regexp.MustCompile(`^([A-Za-z0-9_./%-]+(?:[ \t]+[A-Za-z0-9_./%-]+)*)[ \t]*::?(?:[^=]|$)`)

// makeTargets returns the targets a Makefile defines, special targets (.PHONY) excepted.
func makeTargets(src string) []string {
	var out []string
	for l := range strings.SplitSeq(src, "\n") {
		m := makeTarget.FindStringSubmatch(strings.TrimSuffix(l, "\r"))
		if m == nil {
			continue
		}
		for _, t := range strings.Fields(m[1]) {
			if !strings.HasPrefix(t, ".") && !slices.Contains(out, t) {
				out = append(out, t)
			}
		}
	}
	return out
}
