package console

import (
	"strings"
	"testing"
	"time"
)

func TestCheckSessionRefusesEachBadField(t *testing.T) {
	now := time.Date(2026, 11, 21, 9, 0, 0, 0, time.UTC)
	good := Session{ID: strings.Repeat("ab", 32), User: "local:alice", Role: RoleApprover, CSRF: "c",
		Created: now, Expires: now.Add(time.Hour), Seen: now}
	if err := CheckSession(good); err != nil {
		t.Fatalf("CheckSession(good) = %v", err)
	}
	for _, tc := range []struct {
		name string
		edit func(*Session)
		want string
	}{
		{"short id", func(s *Session) { s.ID = "abc" }, "64 hex digits"},
		{"upper-case id", func(s *Session) { s.ID = strings.Repeat("AB", 32) }, "lower-case hex"},
		{"raw user", func(s *Session) { s.User = "alice" }, `"local:<name>"`},
		{"bad local name", func(s *Session) { s.User = "local:-x" }, "starting with a letter"},
		{"empty oidc", func(s *Session) { s.User = "oidc:" }, `"oidc:<email or subject>"`},
		{"unknown role", func(s *Session) { s.Role = "root" }, `role "root" is not`},
		{"nul in csrf", func(s *Session) { s.CSRF = "a\x00" }, "NUL byte"},
		{"oversized csrf", func(s *Session) { s.CSRF = strings.Repeat("x", MaxField+1) }, "more than 512"},
		{"no expiry", func(s *Session) { s.Expires = time.Time{} }, "expiry is not set"},
		{"year 10000", func(s *Session) { s.Seen = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) }, "outside 1 to 9999"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := good
			tc.edit(&s)
			err := CheckSession(s)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("CheckSession = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestCheckUserCreatedOnlyWhenCreating(t *testing.T) {
	u := User{Name: "alice", Role: RoleAdmin, PasswordHash: "$argon2id$x", Updated: time.Now()}
	if err := CheckUser(u, false); err != nil {
		t.Errorf("CheckUser(update without created time) = %v, want nil", err)
	}
	if err := CheckUser(u, true); err == nil || !strings.Contains(err.Error(), "created time is not set") {
		t.Errorf("CheckUser(create without created time) = %v, want created time is not set", err)
	}
	if err := CheckUser(User{Name: "alice", Role: RoleAdmin, Updated: time.Now()}, false); err == nil || !strings.Contains(err.Error(), "password hash is empty") {
		t.Errorf("CheckUser(no hash) = %v, want password hash is empty", err)
	}
}
