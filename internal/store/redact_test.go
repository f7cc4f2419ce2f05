package store

import (
	"strings"
	"testing"
)

func TestRedactDSN(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"postgres://chaperone:s3cret@db:5432/c?sslmode=require", "postgres://chaperone:REDACTED@db:5432/c?sslmode=require"},
		{"postgres://chaperone@db/c?password=s3cret", "postgres://chaperone@db/c?password=REDACTED"},
		{"postgres://db/c", "postgres://db/c"},
		{"host=db user=chaperone Password=s3cret dbname=c", "host=db user=chaperone password=REDACTED …"},
		{"host=db password = 's3 cret'", "host=db password=REDACTED …"},
		{"postgres://u:0#0000@db/c", "[REDACTED]"},
		{"postgres://chaperone:s3cret@db:bad-port/c", "[REDACTED]"},
	} {
		if got := RedactDSN(tc.in); got != tc.want {
			t.Errorf("RedactDSN(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// FuzzRedactDSN: whatever the rest of the string, a password in the user info or in a
// password= field never survives.
func FuzzRedactDSN(f *testing.F) {
	f.Add("db:5432/c?sslmode=disable", "s3cret-pass")
	f.Add("", "p@ss:w/rd")
	f.Fuzz(func(t *testing.T, rest, password string) {
		if len(password) < 6 || strings.Contains("REDACTED", password) {
			return
		}
		for _, dsn := range []string{
			"postgres://u:" + password + "@" + rest,
			"host=db password=" + password + " " + rest,
		} {
			got := RedactDSN(dsn)
			// The same DSN with another password of the same length: if its redaction shows
			// the password too, the rest made it (escaping "\xa0" as "%A0" next to zeros
			// spells "000000"), not the user info.
			other := strings.Repeat("z", len(password))
			if other == password {
				other = strings.Repeat("y", len(password))
			}
			base := RedactDSN(strings.Replace(dsn, password, other, 1))
			if strings.Contains(got, password) && !strings.Contains(base, password) && !strings.Contains(rest, password) &&
				!strings.Contains("host=db postgres://u:", password) {
				t.Fatalf("RedactDSN(%q) = %q: the password survived", dsn, got)
			}
		}
	})
}
