package storetest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/chaperone-dev/chaperone/internal/console"
	"github.com/chaperone-dev/chaperone/internal/store"
)

// The console's users and sessions (store.Store.Console). Names in the lists below are
// chosen so that byte order differs from a linguistic collation's, which ignores
// punctuation.

func ctConsoleCases() []ctCase {
	return []ctCase{
		{"UserRoundTrip", ctConsoleUserRoundTrip},
		{"UserUpdate", ctConsoleUserUpdate},
		{"UsersByName", ctConsoleUsersByName},
		{"UserDuplicate", ctConsoleUserDuplicate},
		{"UserDelete", ctConsoleUserDelete},
		{"FirstUser", ctConsoleFirstUser},
		{"FirstUserRace", ctConsoleFirstUserRace},
		{"SessionRoundTrip", ctConsoleSessionRoundTrip},
		{"SessionTouch", ctConsoleSessionTouch},
		{"SessionDelete", ctConsoleSessionDelete},
		{"SessionsOfUser", ctConsoleSessionsOfUser},
		{"SessionsPrune", ctConsoleSessionsPrune},
		{"RefusesInvalidUser", ctConsoleInvalidUser},
		{"RefusesInvalidSession", ctConsoleInvalidSession},
		{"UnusableKeys", ctConsoleUnusableKeys},
		{"Cancelled", ctConsoleCancelled},
	}
}

// ctConsoleUser is a valid user, created and updated at ctT0.
func ctConsoleUser(name string) console.User {
	return console.User{
		Name: name, Role: console.RoleViewer,
		PasswordHash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0c2FsdA$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g",
		Created:      ctT0, Updated: ctT0,
	}
}

// ctConsoleID is a session id as the console makes it: the hex SHA-256 of a token.
func ctConsoleID(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// ctConsoleSession is a valid session of user, started at ctT0 for a day.
func ctConsoleSession(token, user string) console.Session {
	return console.Session{
		ID: ctConsoleID(token), User: user, Role: console.RoleApprover, CSRF: "csrf-" + token,
		Created: ctT0, Expires: ctT0.Add(24 * time.Hour), Seen: ctT0,
	}
}

func ctConsoleCreate(t *testing.T, cs console.Store, us ...console.User) {
	t.Helper()
	for _, u := range us {
		if err := cs.CreateUser(t.Context(), u); err != nil {
			t.Fatalf("CreateUser(%q): %v", u.Name, err)
		}
	}
}

func ctConsolePut(t *testing.T, cs console.Store, ss ...console.Session) {
	t.Helper()
	for _, s := range ss {
		if err := cs.PutSession(t.Context(), s); err != nil {
			t.Fatalf("PutSession(%s of %q): %v", s.ID[:8], s.User, err)
		}
	}
}

// ctConsoleWantUser checks that the stored user name is want.
func ctConsoleWantUser(t *testing.T, cs console.Store, want console.User) {
	t.Helper()
	got, ok, err := cs.ConsoleUser(t.Context(), want.Name)
	if err != nil || !ok {
		t.Fatalf("ConsoleUser(%q) = _, %v, %v; want the user", want.Name, ok, err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ConsoleUser(%q) (-want +got):\n%s", want.Name, diff)
	}
	ctUTC(t, "ConsoleUser("+want.Name+") times", got.Created, got.Updated)
}

// ctConsoleWantSession checks that the stored session with want's id is want.
func ctConsoleWantSession(t *testing.T, cs console.Store, want console.Session) {
	t.Helper()
	got, ok, err := cs.ConsoleSession(t.Context(), want.ID)
	if err != nil || !ok {
		t.Fatalf("ConsoleSession(%s) = _, %v, %v; want the session of %q", want.ID[:8], ok, err, want.User)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ConsoleSession(%s) (-want +got):\n%s", want.ID[:8], diff)
	}
	ctUTC(t, "ConsoleSession times", got.Created, got.Expires, got.Seen)
}

// ctConsoleNoSession checks that no session has id.
func ctConsoleNoSession(t *testing.T, cs console.Store, id, why string) {
	t.Helper()
	if got, ok, err := cs.ConsoleSession(t.Context(), id); ok || err != nil {
		t.Errorf("ConsoleSession(%.8s) %s = %+v, %v, %v; want false, nil", id, why, got, ok, err)
	}
}

func ctConsoleUserRoundTrip(t *testing.T, st store.Store) {
	ctx, cs := t.Context(), st.Console()
	if got, ok, err := cs.ConsoleUser(ctx, "alice"); ok || err != nil {
		t.Fatalf("ConsoleUser(alice) on an empty store = %+v, %v, %v; want false, nil", got, ok, err)
	}
	if got, err := cs.ConsoleUsers(ctx); err != nil || len(got) != 0 {
		t.Fatalf("ConsoleUsers() on an empty store = %v, %v; want none", got, err)
	}

	// Times come back in UTC, truncated to the microsecond, whatever zone they were given in.
	zone := time.FixedZone("UTC+5:30", 5*3600+1800)
	full := ctConsoleUser("alice")
	full.Role, full.Disabled = console.RoleAdmin, true
	full.Created = ctT0.Add(789 * time.Nanosecond).In(zone)
	full.Updated = ctT0.Add(time.Hour + time.Microsecond).In(zone)
	ctAllSet(t, "the full console user", full)
	// Before 1970 and far ahead: a time store must not lose the sign or the width.
	old := ctConsoleUser("bob")
	old.Created = time.Date(1969, 12, 31, 23, 59, 59, 999999000, time.UTC)
	old.Updated = time.Date(9999, 12, 31, 23, 59, 59, 999999000, time.UTC)
	ctConsoleCreate(t, cs, full, old)

	full.Created, full.Updated = ctT0, ctT0.Add(time.Hour+time.Microsecond)
	ctConsoleWantUser(t, cs, full)
	ctConsoleWantUser(t, cs, old)
}

func ctConsoleUserUpdate(t *testing.T, st store.Store) {
	ctx, cs := t.Context(), st.Console()
	u := ctConsoleUser("alice")
	ctConsoleCreate(t, cs, u)

	// An update replaces the role, the hash, the flag and Updated; Created stays.
	upd := u
	upd.Role, upd.Disabled, upd.PasswordHash = console.RoleOperator, true, "$argon2id$v=19$m=19456,t=2,p=1$bmV3c2FsdA$bmV3aGFzaA"
	upd.Created, upd.Updated = ctT0.Add(48*time.Hour), ctT0.Add(time.Minute)
	if err := cs.UpdateUser(ctx, upd); err != nil {
		t.Fatalf("UpdateUser(alice): %v", err)
	}
	upd.Created = ctT0
	ctConsoleWantUser(t, cs, upd)

	// And back: false and the first role are written too, not only set values.
	back := upd
	back.Role, back.Disabled, back.Updated = console.RoleViewer, false, ctT0.Add(2*time.Minute)
	if err := cs.UpdateUser(ctx, back); err != nil {
		t.Fatalf("UpdateUser(alice) again: %v", err)
	}
	ctConsoleWantUser(t, cs, back)

	ctCheckErr(t, "UpdateUser(nobody)", cs.UpdateUser(ctx, ctConsoleUser("nobody")), console.ErrUnknownUser)
	if _, ok, err := cs.ConsoleUser(ctx, "nobody"); ok || err != nil {
		t.Errorf("ConsoleUser(nobody) after UpdateUser(nobody) = %v, %v; want false, nil: an update does not create", ok, err)
	}
}

func ctConsoleUsersByName(t *testing.T, st store.Store) {
	ctx, cs := t.Context(), st.Console()
	// As bytes: '-' < '.' < '0' < '@' < '_' < 'a'.
	want := []string{"10", "a-c", "a.b", "a0", "a@b", "a_b", "ab", "z"}
	for _, i := range []int{6, 2, 7, 0, 4, 1, 5, 3} {
		u := ctConsoleUser(want[i])
		u.Created = ctT0.Add(time.Duration(i) * time.Second) // not the order either
		ctConsoleCreate(t, cs, u)
	}
	got, err := cs.ConsoleUsers(ctx)
	if err != nil {
		t.Fatalf("ConsoleUsers: %v", err)
	}
	names := make([]string, len(got))
	for i, u := range got {
		names[i] = u.Name
		if want := ctConsoleUser(u.Name); u.PasswordHash != want.PasswordHash || u.Role != want.Role {
			t.Errorf("ConsoleUsers()[%d] = %+v, want the fields it was created with", i, u)
		}
	}
	if diff := cmp.Diff(want, names); diff != "" {
		t.Errorf("ConsoleUsers() names, by byte order (-want +got):\n%s", diff)
	}
}

func ctConsoleUserDuplicate(t *testing.T, st store.Store) {
	ctx, cs := t.Context(), st.Console()
	u := ctConsoleUser("alice")
	ctConsoleCreate(t, cs, u)
	dup := ctConsoleUser("alice")
	dup.Role, dup.PasswordHash, dup.Updated = console.RoleAdmin, "$argon2id$mallory", ctT0.Add(time.Hour)
	err := cs.CreateUser(ctx, dup)
	ctCheckErr(t, "CreateUser(alice) again", err, console.ErrUserExists)
	if errors.Is(err, console.ErrUnknownUser) {
		t.Errorf("CreateUser(alice) again = %v, which also wraps ErrUnknownUser", err)
	}
	ctConsoleWantUser(t, cs, u) // unchanged
}

func ctConsoleUserDelete(t *testing.T, st store.Store) {
	ctx, cs := t.Context(), st.Console()
	ctConsoleCreate(t, cs, ctConsoleUser("alice"), ctConsoleUser("alice2"), ctConsoleUser("bob"))
	gone := []console.Session{ctConsoleSession("a1", "local:alice"), ctConsoleSession("a2", "local:alice")}
	kept := []console.Session{
		ctConsoleSession("a3", "local:alice2"), ctConsoleSession("a4", "oidc:alice"),
		ctConsoleSession("a5", "local:bob"), ctConsoleSession("a6", "local:carol"),
	}
	ctConsolePut(t, cs, gone...)
	ctConsolePut(t, cs, kept...)

	if err := cs.DeleteUser(ctx, "alice"); err != nil {
		t.Fatalf("DeleteUser(alice): %v", err)
	}
	if _, ok, err := cs.ConsoleUser(ctx, "alice"); ok || err != nil {
		t.Errorf("ConsoleUser(alice) after DeleteUser = %v, %v; want false, nil", ok, err)
	}
	for _, s := range gone {
		ctConsoleNoSession(t, cs, s.ID, "of local:alice after DeleteUser(alice)")
	}
	for _, s := range kept {
		ctConsoleWantSession(t, cs, s)
	}
	ctCheckErr(t, "DeleteUser(alice) again", cs.DeleteUser(ctx, "alice"), console.ErrUnknownUser)
	// An unknown user is an error, and the error deletes nothing.
	ctCheckErr(t, "DeleteUser(carol)", cs.DeleteUser(ctx, "carol"), console.ErrUnknownUser)
	ctConsoleWantSession(t, cs, kept[3])
	users, err := cs.ConsoleUsers(ctx)
	if err != nil || len(users) != 2 || users[0].Name != "alice2" || users[1].Name != "bob" {
		t.Errorf("ConsoleUsers() after DeleteUser(alice) = %+v, %v; want alice2 and bob", users, err)
	}
}

func ctConsoleFirstUser(t *testing.T, st store.Store) {
	ctx, cs := t.Context(), st.Console()
	first := ctConsoleUser("root")
	first.Role = console.RoleAdmin
	if ok, err := cs.CreateFirstUser(ctx, first); !ok || err != nil {
		t.Fatalf("CreateFirstUser(root) on an empty store = %v, %v; want true, nil", ok, err)
	}
	ctConsoleWantUser(t, cs, first)
	for _, name := range []string{"second", "root"} {
		if ok, err := cs.CreateFirstUser(ctx, ctConsoleUser(name)); ok || err != nil {
			t.Errorf("CreateFirstUser(%s) with a user stored = %v, %v; want false, nil", name, ok, err)
		}
	}
	ctConsoleWantUser(t, cs, first) // not replaced by the second root
	if users, err := cs.ConsoleUsers(ctx); err != nil || len(users) != 1 {
		t.Errorf("ConsoleUsers() = %+v, %v; want root alone", users, err)
	}

	// Any user, not only one made by CreateFirstUser, closes setup; deleting every user
	// opens it again.
	if err := cs.DeleteUser(ctx, "root"); err != nil {
		t.Fatalf("DeleteUser(root): %v", err)
	}
	ctConsoleCreate(t, cs, ctConsoleUser("zed"))
	if ok, err := cs.CreateFirstUser(ctx, first); ok || err != nil {
		t.Errorf("CreateFirstUser(root) with zed stored = %v, %v; want false, nil", ok, err)
	}
	if err := cs.DeleteUser(ctx, "zed"); err != nil {
		t.Fatalf("DeleteUser(zed): %v", err)
	}
	if ok, err := cs.CreateFirstUser(ctx, first); !ok || err != nil {
		t.Errorf("CreateFirstUser(root) once every user is deleted = %v, %v; want true, nil", ok, err)
	}
}

// ctConsoleFirstUserRace races replicas finishing setup with different names: one wins,
// and the store holds its user alone.
func ctConsoleFirstUserRace(t *testing.T, st store.Store) {
	ctx, cs := t.Context(), st.Console()
	for round := range ctRounds {
		created := make([]bool, ctRaceN)
		errs := ctRace(ctRaceN, func(i int) error {
			var err error
			created[i], err = cs.CreateFirstUser(ctx, ctConsoleUser(fmt.Sprintf("admin-%d-%02d", round, i)))
			return err
		})
		winner := -1
		for i, err := range errs {
			if err != nil {
				t.Fatalf("round %d: CreateFirstUser racer %d: %v", round, i, err)
			}
			if created[i] {
				if winner >= 0 {
					t.Fatalf("round %d: CreateFirstUser returned true to racers %d and %d, want one", round, winner, i)
				}
				winner = i
			}
		}
		if winner < 0 {
			t.Fatalf("round %d: CreateFirstUser returned true to none of %d racers, want one", round, ctRaceN)
		}
		users, err := cs.ConsoleUsers(ctx)
		want := fmt.Sprintf("admin-%d-%02d", round, winner)
		if err != nil || len(users) != 1 || users[0].Name != want {
			t.Fatalf("round %d: ConsoleUsers() = %+v, %v; want %s alone", round, users, err, want)
		}
		if err := cs.DeleteUser(ctx, want); err != nil {
			t.Fatalf("round %d: DeleteUser(%s): %v", round, want, err)
		}
	}
}

func ctConsoleSessionRoundTrip(t *testing.T, st store.Store) {
	cs := st.Console()
	zone := time.FixedZone("UTC-8", -8*3600)
	full := ctConsoleSession("t1", "oidc:ada@example.com")
	full.Role = console.RoleOperator
	full.Created = ctT0.Add(999 * time.Nanosecond).In(zone)
	full.Expires = ctT0.Add(12 * time.Hour).In(zone)
	full.Seen = ctT0.Add(time.Minute + time.Microsecond).In(zone)
	ctAllSet(t, "the full console session", full)
	ctConsoleNoSession(t, cs, full.ID, "on an empty store")
	ctConsolePut(t, cs, full, ctConsoleSession("t2", "local:alice"))
	full.Created, full.Expires, full.Seen = ctT0, ctT0.Add(12*time.Hour), ctT0.Add(time.Minute+time.Microsecond)
	ctConsoleWantSession(t, cs, full)
	ctConsoleWantSession(t, cs, ctConsoleSession("t2", "local:alice"))
	ctConsoleNoSession(t, cs, ctConsoleID("t3"), "never stored")

	// A session with the same id replaces every field.
	repl := ctConsoleSession("t1", "local:bob")
	repl.Role, repl.CSRF = console.RoleViewer, "another-csrf"
	repl.Created, repl.Expires, repl.Seen = ctT0.Add(time.Hour), ctT0.Add(2*time.Hour), ctT0.Add(90*time.Minute)
	ctConsolePut(t, cs, repl)
	ctConsoleWantSession(t, cs, repl)
	ctConsoleWantSession(t, cs, ctConsoleSession("t2", "local:alice"))
	// An expired session is still returned: the caller judges the times.
	old := ctConsoleSession("t4", "local:alice")
	old.Created, old.Expires, old.Seen = ctT0.AddDate(-2, 0, 0), ctT0.AddDate(-1, 0, 0), ctT0.AddDate(-1, 0, 0)
	ctConsolePut(t, cs, old)
	ctConsoleWantSession(t, cs, old)
}

func ctConsoleSessionTouch(t *testing.T, st store.Store) {
	ctx, cs := t.Context(), st.Console()
	s, other := ctConsoleSession("t1", "local:alice"), ctConsoleSession("t2", "local:alice")
	ctConsolePut(t, cs, s, other)
	for _, seen := range []time.Time{ctT0.Add(time.Hour + 1500*time.Nanosecond), ctT0.Add(-time.Minute)} {
		if err := cs.TouchSession(ctx, s.ID, seen); err != nil {
			t.Fatalf("TouchSession(t1, %v): %v", seen, err)
		}
		s.Seen = seen.UTC().Truncate(time.Microsecond) // set, even backwards
		ctConsoleWantSession(t, cs, s)
	}
	ctConsoleWantSession(t, cs, other) // untouched
	missing := ctConsoleID("gone")
	if err := cs.TouchSession(ctx, missing, ctT0); err != nil {
		t.Errorf("TouchSession(missing) = %v, want nil", err)
	}
	ctConsoleNoSession(t, cs, missing, "after TouchSession(missing): a touch does not create")
}

func ctConsoleSessionDelete(t *testing.T, st store.Store) {
	ctx, cs := t.Context(), st.Console()
	s, other := ctConsoleSession("t1", "local:alice"), ctConsoleSession("t2", "local:alice")
	ctConsolePut(t, cs, s, other)
	for i := range 2 { // the second time, it is gone: still no error
		if err := cs.DeleteSession(ctx, s.ID); err != nil {
			t.Fatalf("DeleteSession(t1) #%d: %v", i+1, err)
		}
		ctConsoleNoSession(t, cs, s.ID, "after DeleteSession(t1)")
	}
	ctConsoleWantSession(t, cs, other)
}

func ctConsoleSessionsOfUser(t *testing.T, st store.Store) {
	ctx, cs := t.Context(), st.Console()
	alice := []console.Session{
		ctConsoleSession("a1", "local:alice"), ctConsoleSession("a2", "local:alice"), ctConsoleSession("a3", "local:alice"),
	}
	others := []console.Session{
		ctConsoleSession("o1", "oidc:alice"), ctConsoleSession("o2", "local:alice2"),
		ctConsoleSession("o3", "local:bob"), ctConsoleSession("o4", "oidc:alice@example.com"),
	}
	ctConsolePut(t, cs, alice...)
	ctConsolePut(t, cs, others...)
	if n, err := cs.DeleteSessions(ctx, "local:alice"); n != 3 || err != nil {
		t.Fatalf("DeleteSessions(local:alice) = %d, %v; want 3, nil", n, err)
	}
	for _, s := range alice {
		ctConsoleNoSession(t, cs, s.ID, "after DeleteSessions(local:alice)")
	}
	for _, s := range others {
		ctConsoleWantSession(t, cs, s)
	}
	if n, err := cs.DeleteSessions(ctx, "local:alice"); n != 0 || err != nil {
		t.Errorf("DeleteSessions(local:alice) again = %d, %v; want 0, nil", n, err)
	}
	if n, err := cs.DeleteSessions(ctx, "oidc:alice"); n != 1 || err != nil {
		t.Errorf("DeleteSessions(oidc:alice) = %d, %v; want 1, nil", n, err)
	}
	ctConsoleWantSession(t, cs, others[3])
}

func ctConsoleSessionsPrune(t *testing.T, st store.Store) {
	ctx, cs := t.Context(), st.Console()
	now, idle := ctT0.Add(time.Hour), ctT0 // prune what expired before now or was idle since before ctT0
	mk := func(token string, expires, seen time.Time) console.Session {
		s := ctConsoleSession(token, "local:alice")
		s.Created, s.Expires, s.Seen = time.Date(1960, 1, 1, 0, 0, 0, 0, time.UTC), expires, seen
		return s
	}
	pruned := []console.Session{
		mk("expired", now.Add(-time.Microsecond), idle.Add(time.Hour)),
		mk("idle", now.Add(time.Hour), idle.Add(-time.Microsecond)),
		mk("both", time.Date(1969, 7, 20, 20, 17, 0, 0, time.UTC), time.Date(1969, 7, 20, 20, 17, 0, 0, time.UTC)),
		mk("idle-long", time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC)),
	}
	kept := []console.Session{
		mk("at-bounds", now, idle), // neither before: strictly earlier is pruned
		mk("far", time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC), now),
		mk("just-after", now.Add(time.Microsecond), idle.Add(time.Microsecond)),
	}
	ctConsolePut(t, cs, pruned...)
	ctConsolePut(t, cs, kept...)
	if n, err := cs.PruneSessions(ctx, now, idle); n != int64(len(pruned)) || err != nil {
		t.Fatalf("PruneSessions(%v, %v) = %d, %v; want %d, nil", now, idle, n, err, len(pruned))
	}
	for _, s := range pruned {
		ctConsoleNoSession(t, cs, s.ID, fmt.Sprintf("(expires %v, seen %v) after PruneSessions", s.Expires, s.Seen))
	}
	for _, s := range kept {
		ctConsoleWantSession(t, cs, s)
	}
	if n, err := cs.PruneSessions(ctx, now, idle); n != 0 || err != nil {
		t.Errorf("PruneSessions again = %d, %v; want 0, nil", n, err)
	}
	// The bounds are compared as times, not as text: one given in another zone prunes the same.
	zone := time.FixedZone("UTC+14", 14*3600)
	if n, err := cs.PruneSessions(ctx, now.Add(time.Microsecond).In(zone), idle.In(zone)); n != 1 || err != nil {
		t.Errorf("PruneSessions(now+1µs, idle) = %d, %v; want 1 (the session expiring at now), nil", n, err)
	}
	ctConsoleNoSession(t, cs, kept[0].ID, "expiring at now, after PruneSessions(now+1µs)")
	if n, err := cs.PruneSessions(ctx, time.Time{}, time.Time{}); n != 0 || err != nil {
		t.Errorf("PruneSessions(zero, zero) = %d, %v; want 0, nil", n, err)
	}
}

func ctConsoleInvalidUser(t *testing.T, st store.Store) {
	ctx, cs := t.Context(), st.Console()
	long := strings.Repeat("h", 513)
	for _, tt := range []struct {
		name    string
		created bool // only a create checks it: an update keeps the stored one
		mod     func(*console.User)
	}{
		{"empty name", true, func(u *console.User) { u.Name = "" }},
		{"NUL in name", true, func(u *console.User) { u.Name = "ali\x00ce" }},
		{"upper-case name", true, func(u *console.User) { u.Name = "Alice" }},
		{"space in name", true, func(u *console.User) { u.Name = "al ice" }},
		{"65-byte name", true, func(u *console.User) { u.Name = strings.Repeat("a", 65) }},
		{"empty role", false, func(u *console.User) { u.Role = "" }},
		{"unknown role", false, func(u *console.User) { u.Role = "root" }},
		{"NUL in role", false, func(u *console.User) { u.Role = "admin\x00" }},
		{"empty hash", false, func(u *console.User) { u.PasswordHash = "" }},
		{"NUL in hash", false, func(u *console.User) { u.PasswordHash = "$argon2id$v=19\x00" }},
		{"hash not UTF-8", false, func(u *console.User) { u.PasswordHash = "$argon2id$\xff" }},
		{"513-byte hash", false, func(u *console.User) { u.PasswordHash = long }},
		{"zero created", true, func(u *console.User) { u.Created = time.Time{} }},
		{"created in year 10000", true, func(u *console.User) { u.Created = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) }},
		{"zero updated", false, func(u *console.User) { u.Updated = time.Time{} }},
		{"updated in year 0", false, func(u *console.User) { u.Updated = time.Date(0, 12, 31, 0, 0, 0, 0, time.UTC) }},
	} {
		bad := ctConsoleUser("alice")
		tt.mod(&bad)
		if ok, err := cs.CreateFirstUser(ctx, bad); ok || err == nil {
			t.Errorf("%s: CreateFirstUser = %v, %v; want false and an error", tt.name, ok, err)
		}
		if err := cs.CreateUser(ctx, bad); err == nil || errors.Is(err, console.ErrUserExists) {
			t.Errorf("%s: CreateUser = %v, want an error about the field", tt.name, err)
		}
		if users, err := cs.ConsoleUsers(ctx); err != nil || len(users) != 0 {
			t.Fatalf("%s: ConsoleUsers() after refused creates = %+v, %v; want none", tt.name, users, err)
		}
	}

	stored := ctConsoleUser("alice")
	ctConsoleCreate(t, cs, stored)
	for _, tt := range []struct {
		name string
		mod  func(*console.User)
	}{
		{"unknown role", func(u *console.User) { u.Role = "superuser" }},
		{"NUL in role", func(u *console.User) { u.Role = "\x00" }},
		{"empty hash", func(u *console.User) { u.PasswordHash = "" }},
		{"NUL in hash", func(u *console.User) { u.PasswordHash = "$argon2id$\x00" }},
		{"hash not UTF-8", func(u *console.User) { u.PasswordHash = "\xc3\x28" }},
		{"513-byte hash", func(u *console.User) { u.PasswordHash = long }},
		{"zero updated", func(u *console.User) { u.Updated = time.Time{} }},
		{"updated in year 10000", func(u *console.User) { u.Updated = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) }},
	} {
		bad := stored
		bad.Disabled = true
		tt.mod(&bad)
		if err := cs.UpdateUser(ctx, bad); err == nil || errors.Is(err, console.ErrUnknownUser) {
			t.Errorf("%s: UpdateUser = %v, want an error about the field", tt.name, err)
		}
	}
	ctConsoleWantUser(t, cs, stored) // no refused update wrote anything
	// Bounds are inclusive: 64-byte names and 512-byte hashes are taken.
	edge := ctConsoleUser(strings.Repeat("a", 64))
	edge.PasswordHash = long[:512]
	ctConsoleCreate(t, cs, edge)
	ctConsoleWantUser(t, cs, edge)
}

func ctConsoleInvalidSession(t *testing.T, st store.Store) {
	ctx, cs := t.Context(), st.Console()
	stored := ctConsoleSession("t1", "local:alice")
	ctConsolePut(t, cs, stored)
	for _, tt := range []struct {
		name string
		mod  func(*console.Session)
	}{
		{"empty id", func(s *console.Session) { s.ID = "" }},
		{"raw token as id", func(s *console.Session) { s.ID = "dGhpcyBpcyBhIHJhdyB0b2tlbiwgbm90IGl0cyBoYXNo" }},
		{"upper-case id", func(s *console.Session) { s.ID = strings.ToUpper(s.ID) }},
		{"63-digit id", func(s *console.Session) { s.ID = s.ID[:63] }},
		{"NUL in id", func(s *console.Session) { s.ID = s.ID[:63] + "\x00" }},
		{"empty user", func(s *console.Session) { s.User = "" }},
		{"user of no kind", func(s *console.Session) { s.User = "alice" }},
		{"empty local name", func(s *console.Session) { s.User = "local:" }},
		{"bad local name", func(s *console.Session) { s.User = "local:Alice" }},
		{"empty oidc subject", func(s *console.Session) { s.User = "oidc:" }},
		{"NUL in user", func(s *console.Session) { s.User = "oidc:ada\x00@example.com" }},
		{"user not UTF-8", func(s *console.Session) { s.User = "oidc:\xff" }},
		{"513-byte user", func(s *console.Session) { s.User = "oidc:" + strings.Repeat("x", 508) }},
		{"unknown role", func(s *console.Session) { s.Role = "owner" }},
		{"NUL in role", func(s *console.Session) { s.Role = "viewer\x00" }},
		{"empty csrf", func(s *console.Session) { s.CSRF = "" }},
		{"NUL in csrf", func(s *console.Session) { s.CSRF = "abc\x00" }},
		{"513-byte csrf", func(s *console.Session) { s.CSRF = strings.Repeat("c", 513) }},
		{"zero created", func(s *console.Session) { s.Created = time.Time{} }},
		{"zero expiry", func(s *console.Session) { s.Expires = time.Time{} }},
		{"expiry in year 10000", func(s *console.Session) { s.Expires = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) }},
		{"zero seen", func(s *console.Session) { s.Seen = time.Time{} }},
	} {
		bad := stored
		bad.Role, bad.CSRF, bad.Seen = console.RoleAdmin, "changed", ctT0.Add(time.Hour)
		tt.mod(&bad)
		if err := cs.PutSession(ctx, bad); err == nil {
			t.Errorf("%s: PutSession succeeded, want an error", tt.name)
		}
	}
	ctConsoleWantSession(t, cs, stored) // no refused put replaced it
	for _, seen := range []time.Time{{}, time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)} {
		if err := cs.TouchSession(ctx, stored.ID, seen); err == nil {
			t.Errorf("TouchSession(t1, %v) succeeded, want an error", seen)
		}
	}
	ctConsoleWantSession(t, cs, stored)
	if n, err := cs.PruneSessions(ctx, time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), ctT0); err == nil {
		t.Errorf("PruneSessions(year 10000, ...) = %d, nil; want an error", n)
	}
	ctConsoleWantSession(t, cs, stored)
	// Bounds are inclusive: a 512-byte user and CSRF token are taken.
	edge := ctConsoleSession("t2", "oidc:"+strings.Repeat("x", 507))
	edge.CSRF = strings.Repeat("c", 512)
	ctConsolePut(t, cs, edge)
	ctConsoleWantSession(t, cs, edge)
}

// ctConsoleUnusableKeys checks that keys no record could have (they come from cookies
// and forms) find nothing and change nothing, without an error: a client must not be
// able to make the store fail.
func ctConsoleUnusableKeys(t *testing.T, st store.Store) {
	ctx, cs := t.Context(), st.Console()
	u := ctConsoleUser("alice")
	s := ctConsoleSession("t1", "local:alice")
	ctConsoleCreate(t, cs, u)
	ctConsolePut(t, cs, s)
	for _, name := range []string{"", "alice\x00", "\x00", "ALICE", "\xff", strings.Repeat("a", 1<<16)} {
		if got, ok, err := cs.ConsoleUser(ctx, name); ok || err != nil {
			t.Errorf("ConsoleUser(%.20q) = %+v, %v, %v; want false, nil", name, got, ok, err)
		}
		ctCheckErr(t, fmt.Sprintf("DeleteUser(%.20q)", name), cs.DeleteUser(ctx, name), console.ErrUnknownUser)
	}
	for _, id := range []string{"", "\x00", s.ID[:63] + "\x00", s.ID + "\x00", strings.ToUpper(s.ID), "\xff", strings.Repeat("f", 1<<16)} {
		if got, ok, err := cs.ConsoleSession(ctx, id); ok || err != nil {
			t.Errorf("ConsoleSession(%.20q) = %+v, %v, %v; want false, nil", id, got, ok, err)
		}
		if err := cs.TouchSession(ctx, id, ctT0.Add(time.Hour)); err != nil {
			t.Errorf("TouchSession(%.20q) = %v, want nil", id, err)
		}
		if err := cs.DeleteSession(ctx, id); err != nil {
			t.Errorf("DeleteSession(%.20q) = %v, want nil", id, err)
		}
	}
	for _, user := range []string{"", "local:alice\x00", "\x00", "oidc:\xff", "local:" + strings.Repeat("a", 1<<16)} {
		if n, err := cs.DeleteSessions(ctx, user); n != 0 || err != nil {
			t.Errorf("DeleteSessions(%.20q) = %d, %v; want 0, nil", user, n, err)
		}
	}
	ctConsoleWantUser(t, cs, u)
	ctConsoleWantSession(t, cs, s)
}

// ctConsoleCancelled checks that writes with a cancelled context fail and write nothing.
func ctConsoleCancelled(t *testing.T, st store.Store) {
	cs := st.Console()
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if ok, err := cs.CreateFirstUser(ctx, ctConsoleUser("root")); ok || err == nil {
		t.Errorf("CreateFirstUser with a cancelled context = %v, %v; want false and an error", ok, err)
	}
	if err := cs.CreateUser(ctx, ctConsoleUser("alice")); err == nil {
		t.Error("CreateUser with a cancelled context succeeded, want an error")
	}
	s := ctConsoleSession("t1", "local:alice")
	if err := cs.PutSession(ctx, s); err == nil {
		t.Error("PutSession with a cancelled context succeeded, want an error")
	}
	if _, _, err := cs.ConsoleUser(ctx, "alice"); err == nil {
		t.Error("ConsoleUser with a cancelled context succeeded, want an error")
	}
	live := t.Context()
	if users, err := cs.ConsoleUsers(live); err != nil || len(users) != 0 {
		t.Errorf("ConsoleUsers() after cancelled creates = %+v, %v; want none", users, err)
	}
	ctConsoleNoSession(t, cs, s.ID, "after a cancelled PutSession")
}
