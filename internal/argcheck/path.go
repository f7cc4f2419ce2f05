package argcheck

import (
	"fmt"
	"path"
	"strings"
	"unicode/utf8"
)

// pathRule confines a filesystem path argument to a set of directories.
//
// The check is lexical: it looks only at the string. It cannot see symlinks
// (a link inside an allowed directory that points outside it is the
// upstream's responsibility), nor what the path names by the time the
// upstream opens it.
type pathRule struct {
	prefixes []string
	// escapeMsg is built once: it only names the configured directories.
	escapeMsg string
}

func newPathRule(prefixes []string) (*pathRule, []error) {
	var errs []error
	for i, p := range prefixes {
		switch {
		case !utf8.ValidString(p) || hasControl(p) || strings.ContainsRune(p, '\\'):
			errs = append(errs, fmt.Errorf("path_prefixes[%d] %q: must not contain control characters or backslashes", i, p))
		case !strings.HasPrefix(p, "/") || path.Clean(p) != p:
			errs = append(errs, fmt.Errorf("path_prefixes[%d] %q: must be an absolute, clean path (like %q)", i, p, cleanAbs(p)))
		}
	}
	return &pathRule{
		prefixes:  append([]string(nil), prefixes...),
		escapeMsg: "escapes the allowed directories " + trimList(prefixes),
	}, errs
}

// cleanAbs suggests the absolute, clean form of a configured prefix.
func cleanAbs(p string) string { return path.Clean("/" + p) }

// Messages for refused paths. They explain the rule, never the value.
const (
	msgPathNotAbs    = "must be an absolute path"
	msgPathUTF8      = "must be valid UTF-8"
	msgPathControl   = "must not contain NUL bytes or control characters"
	msgPathBackslash = `must not contain backslashes (a Windows upstream would treat "\" as a separator)`
	msgPathEncoded   = "must not contain percent-encoded dots, slashes, backslashes or percent signs (an upstream that decodes them could be led out of the allowed directories)"
	msgPathDotDot    = `must not contain ".." segments (a symlink before one could resolve outside the allowed directories)`
)

// check returns "" when p is acceptable, else why it is refused.
func (r *pathRule) check(p string) string {
	if !utf8.ValidString(p) {
		return msgPathUTF8
	}
	if hasControl(p) {
		return msgPathControl
	}
	if strings.IndexByte(p, '\\') >= 0 {
		return msgPathBackslash
	}
	// In a filesystem path "%2e" is three literal characters, not a dot.
	// But some upstreams URL-decode path arguments (or hand them to
	// something that does), and then "%2e%2e%2f" is "../" that the lexical
	// check below never saw. Refusing encoded dots and slashes, and
	// encoded backslashes and percent signs (double encoding), costs little:
	// real file names rarely contain them.
	if hasEncodedSeparator(p) {
		return msgPathEncoded
	}
	if !strings.HasPrefix(p, "/") {
		return msgPathNotAbs
	}
	if !r.under(path.Clean(p)) {
		return r.escapeMsg
	}
	// The cleaned path is inside, but the upstream resolves the raw path,
	// and "dir/link/../x" leaves the allowed directory if link is a symlink
	// pointing elsewhere. Refuse ".." outright rather than trust cleaning.
	if hasDotDot(p) {
		return msgPathDotDot
	}
	return ""
}

// under reports whether the clean, absolute path p equals a prefix or lies
// below one at a segment boundary ("/srv/data-evil" is not under "/srv/data").
func (r *pathRule) under(p string) bool {
	for _, pre := range r.prefixes {
		if pre == "/" || p == pre ||
			(len(p) > len(pre) && p[len(pre)] == '/' && strings.HasPrefix(p, pre)) {
			return true
		}
	}
	return false
}

// hasEncodedSeparator reports whether s contains %2e, %2f, %5c or %25, in
// any case.
func hasEncodedSeparator(s string) bool {
	for i := 0; i+2 < len(s); i++ {
		if s[i] != '%' {
			continue
		}
		hi, lo := s[i+1], s[i+2]
		if 'A' <= lo && lo <= 'Z' {
			lo += 'a' - 'A'
		}
		if (hi == '2' && (lo == 'e' || lo == 'f' || lo == '5')) || (hi == '5' && lo == 'c') {
			return true
		}
	}
	return false
}

// hasDotDot reports whether the slash-separated path p has a ".." segment.
func hasDotDot(p string) bool {
	for p != "" {
		seg, rest, _ := strings.Cut(p, "/")
		if seg == ".." {
			return true
		}
		p = rest
	}
	return false
}
