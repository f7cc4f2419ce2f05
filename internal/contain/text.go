package contain

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// isControl reports C0 and C1 control characters, which have no place in names and
// reasons an operator reads back.
func isControl(r rune) bool { return r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) }

// cut shortens s to n bytes for an error message.
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// checkActor checks who acted and why, for an operator's action: both required, at most
// limit bytes, UTF-8 without control characters. Errors wrap sentinel.
func checkActor(sentinel error, limit int, by, reason string) error {
	for _, f := range [...]struct{ name, v string }{{"by", by}, {"reason", reason}} {
		switch {
		case strings.TrimSpace(f.v) == "":
			return fmt.Errorf("%w: %s is required", sentinel, f.name)
		case len(f.v) > limit:
			return fmt.Errorf("%w: %s is longer than %d bytes", sentinel, f.name, limit)
		case !utf8.ValidString(f.v) || strings.ContainsFunc(f.v, isControl):
			return fmt.Errorf("%w: %s must be UTF-8 without control characters", sentinel, f.name)
		}
	}
	return nil
}
