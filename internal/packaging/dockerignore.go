package packaging

import (
	"bufio"
	"bytes"
	"fmt"
	"path"
	"regexp"
	"strings"
)

// MaxDockerignoreBytes bounds the .dockerignore [ParseDockerignore] reads.
const MaxDockerignoreBytes = 256 << 10

// maxPatterns bounds the patterns of one .dockerignore.
const maxPatterns = 4096

// Dockerignore is a parsed .dockerignore: which paths of the build context Docker leaves
// out.
type Dockerignore struct {
	patterns []ignorePattern
}

type ignorePattern struct {
	line    int
	text    string // cleaned, as matched
	exclude bool   // a "!" line: put back what earlier lines left out
	re      *regexp.Regexp
}

// ParseDockerignore parses a .dockerignore as Docker does: "#" starts a comment line;
// each other line is a pattern, trimmed and cleaned, its leading "/" dropped; "!" in front
// of a pattern puts back what it matches.
func ParseDockerignore(data []byte) (*Dockerignore, error) {
	if len(data) > MaxDockerignoreBytes {
		return nil, &ParseError{Msg: fmt.Sprintf("larger than %d bytes", MaxDockerignoreBytes)}
	}
	d := &Dockerignore{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, MaxDockerignoreBytes+1)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		p := strings.TrimSpace(line)
		if p == "" {
			continue
		}
		var ip ignorePattern
		ip.line = n
		if p[0] == '!' {
			ip.exclude = true
			p = strings.TrimSpace(p[1:])
			if p == "" {
				return nil, errAt(n, `"!" without a pattern`)
			}
		}
		p = path.Clean(p)
		if len(p) > 1 && p[0] == '/' {
			p = p[1:]
		}
		re, err := compileIgnore(p)
		if err != nil {
			return nil, errAt(n, "pattern %q: %v", truncate(p), err)
		}
		ip.text, ip.re = p, re
		if len(d.patterns) == maxPatterns {
			return nil, errAt(n, "more than %d patterns", maxPatterns)
		}
		d.patterns = append(d.patterns, ip)
	}
	if err := sc.Err(); err != nil {
		return nil, &ParseError{Msg: err.Error()}
	}
	return d, nil
}

// compileIgnore turns a pattern into an anchored regular expression: "*" and "?" match
// within one path element, "**" any number of elements, "[...]" a class, "\" escapes.
func compileIgnore(p string) (*regexp.Regexp, error) {
	var b strings.Builder
	b.WriteString("^")
	for i := 0; i < len(p); i++ {
		switch c := p[i]; c {
		case '*':
			if i+1 < len(p) && p[i+1] == '*' {
				i++
				if i+1 < len(p) && p[i+1] == '/' {
					i++
				}
				if i+1 == len(p) {
					b.WriteString(".*")
				} else {
					b.WriteString("(.*/)?")
				}
				continue
			}
			b.WriteString("[^/]*")
		case '?':
			b.WriteString("[^/]")
		case '[', ']':
			b.WriteByte(c)
		case '\\':
			if i+1 < len(p) {
				i++
				b.WriteString(regexp.QuoteMeta(p[i : i+1]))
			} else {
				b.WriteString(`\\`)
			}
		default:
			b.WriteString(regexp.QuoteMeta(p[i : i+1]))
		}
	}
	b.WriteString("$")
	return regexp.Compile(b.String())
}

// Ignored reports whether Docker leaves the context path name (slash-separated, relative
// to the context root) out of the build context: the last pattern that matches name or
// one of its parent directories decides.
func (d *Dockerignore) Ignored(name string) bool {
	name = path.Clean(strings.TrimPrefix(name, "/"))
	var parents []string
	for dir := path.Dir(name); dir != "." && dir != "/"; dir = path.Dir(dir) {
		parents = append(parents, dir)
	}
	ignored := false
	for _, p := range d.patterns {
		match := p.re.MatchString(name)
		for _, dir := range parents {
			if match {
				break
			}
			match = p.re.MatchString(dir)
		}
		if match {
			ignored = !p.exclude
		}
	}
	return ignored
}
