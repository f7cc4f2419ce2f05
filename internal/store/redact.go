package store

import (
	"net/url"
	"strings"
)

// RedactDSN returns a database connection string with its password replaced by
// REDACTED, safe to print and log: the password of a URL's user info or of its
// password= query parameter, or the password= field of the key=value form. A URL that
// does not parse is replaced whole, since where its password is cannot be known.
func RedactDSN(dsn string) string {
	if !strings.Contains(dsn, "://") {
		// The key=value form allows spaces around '=' and quoted values: what follows
		// the password keyword is cut rather than parsed.
		if i := strings.Index(strings.ToLower(dsn), "password"); i >= 0 {
			return dsn[:i] + "password=REDACTED …"
		}
		return dsn
	}
	u, err := url.Parse(dsn)
	// A password with an unescaped '#', '?' or '/' splits the URL elsewhere than its
	// author meant, and its pieces land in the host, the query or the fragment: an '@'
	// anywhere but in the user info means the password cannot be located.
	if err != nil || u.Fragment != "" || strings.ContainsRune(u.Path+u.RawQuery, '@') || u.User == nil && strings.Contains(dsn, "@") {
		return "[REDACTED]"
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), "REDACTED")
	}
	if q := u.Query(); q.Has("password") {
		q.Set("password", "REDACTED")
		u.RawQuery = q.Encode()
	}
	return u.String()
}
