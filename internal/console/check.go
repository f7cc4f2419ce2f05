package console

import (
	"cmp"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Bounds of what a console store holds; both backends check them with the functions
// below before writing, so they refuse the same records with the same errors.
const (
	MaxName      = 64  // a login name, as User documents
	MaxField     = 512 // a password hash, a session's user or CSRF token
	SessionIDLen = 64  // hex SHA-256
	minYear      = 1
	maxYear      = 9999
	quoteLen     = 64 // how much of a bad key an error quotes
)

// Quote quotes at most quoteLen bytes of s, so that an oversized key
// does not make an oversized error.
func Quote(s string) string {
	if len(s) > quoteLen {
		return strconv.Quote(s[:quoteLen]) + "..."
	}
	return strconv.Quote(s)
}

// checkText checks a string field: 1 to limit bytes of UTF-8 without NUL.
func checkText(field, s string, limit int) error {
	switch {
	case s == "":
		return fmt.Errorf("%s is empty", field)
	case len(s) > limit:
		return fmt.Errorf("%s is %d bytes, more than %d", field, len(s), limit)
	case !utf8.ValidString(s):
		return fmt.Errorf("%s is not valid UTF-8", field)
	case strings.IndexByte(s, 0) >= 0:
		return fmt.Errorf("%s holds a NUL byte", field)
	}
	return nil
}

// CheckName reports why a local login name is not acceptable, or nil: it must be 1 to
// 64 of a-z, 0-9 and . _ @ -, starting with a letter or digit.
func CheckName(n string) error {
	if n == "" || len(n) > MaxName {
		return fmt.Errorf("user name must be 1 to %d bytes, got %d", MaxName, len(n))
	}
	for i := 0; i < len(n); i++ {
		c := n[i]
		alnum := 'a' <= c && c <= 'z' || '0' <= c && c <= '9'
		if !alnum && (i == 0 || c != '.' && c != '_' && c != '@' && c != '-') {
			return fmt.Errorf("user name must be of a-z, 0-9 and . _ @ -, starting with a letter or digit; got byte %q at %d", c, i)
		}
	}
	return nil
}

// CheckRole checks a role is one of the four.
func CheckRole(r Role) error {
	switch r {
	case RoleViewer, RoleApprover, RoleOperator, RoleAdmin:
		return nil
	}
	if err := checkText("role", string(r), MaxName); err != nil {
		return err
	}
	return fmt.Errorf("role %s is not viewer, approver, operator or admin", Quote(string(r)))
}

// CheckTime checks a record's time is set and within years 1 to 9999, a range both
// backends hold exactly.
func CheckTime(field string, t time.Time) error {
	if t.IsZero() {
		return fmt.Errorf("%s is not set", field)
	}
	return CheckTimeRange(field, t)
}

func CheckTimeRange(field string, t time.Time) error {
	if y := t.UTC().Year(); y < minYear || y > maxYear {
		return fmt.Errorf("%s is in year %d, outside %d to %d", field, y, minYear, maxYear)
	}
	return nil
}

// CheckSessionID checks a session id: 64 lower-case hex digits, the SHA-256 of the token, so
// that a raw token is never stored.
func CheckSessionID(id string) error {
	if len(id) != SessionIDLen {
		return fmt.Errorf("session id must be %d hex digits (a SHA-256), got %d bytes", SessionIDLen, len(id))
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return fmt.Errorf("session id must be lower-case hex, got byte %q at %d", c, i)
		}
	}
	return nil
}

// CheckSessionUser checks a session's user: "local:<name>" or "oidc:<email or
// subject>".
func CheckSessionUser(u string) error {
	if err := checkText("user", u, MaxField); err != nil {
		return err
	}
	if name, ok := strings.CutPrefix(u, "local:"); ok {
		if err := CheckName(name); err != nil {
			return fmt.Errorf("user: %w", err)
		}
		return nil
	}
	if rest, ok := strings.CutPrefix(u, "oidc:"); ok && rest != "" {
		return nil
	}
	return fmt.Errorf(`user must be "local:<name>" or "oidc:<email or subject>", got %s`, Quote(u))
}

// CheckUser checks every field of a user the store writes (Created only when
// created is set: an update keeps the stored one), and returns the first problem.
func CheckUser(u User, created bool) error {
	var createdErr error
	if created {
		createdErr = CheckTime("created time", u.Created)
	}
	return cmp.Or(CheckName(u.Name), CheckRole(u.Role),
		checkText("password hash", u.PasswordHash, MaxField), createdErr, CheckTime("updated time", u.Updated))
}

// CheckSession checks every field of a session, and returns the first problem.
func CheckSession(s Session) error {
	return cmp.Or(CheckSessionID(s.ID), CheckSessionUser(s.User), CheckRole(s.Role),
		checkText("csrf token", s.CSRF, MaxField), CheckTime("created time", s.Created),
		CheckTime("expiry", s.Expires), CheckTime("seen time", s.Seen))
}
