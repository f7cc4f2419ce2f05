package console_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chaperone-dev/chaperone/internal/console"
)

const adminPass = "correct horse battery"

func TestSetupCreatesTheFirstAdminOnce(t *testing.T) {
	f := newFixture(t, nil)
	b := f.browser()
	csrf := b.csrf("/console/setup")

	wrong := b.post("/console/setup", url.Values{"csrf": {csrf}, "token": {"not-the-token"}, "name": {"root"}, "password": {adminPass}, "confirm": {adminPass}})
	if wrong.status != http.StatusForbidden || !strings.Contains(wrong.body, "setup token is wrong") {
		t.Fatalf("wrong token: status %d, body %q", wrong.status, wrong.body)
	}
	short := b.post("/console/setup", url.Values{"csrf": {csrf}, "token": {f.setup}, "name": {"root"}, "password": {"short"}, "confirm": {"short"}})
	if short.status != http.StatusBadRequest || !strings.Contains(short.body, "at least 12 characters") {
		t.Fatalf("short password: status %d", short.status)
	}
	if users, _ := f.db.Console().ConsoleUsers(context.Background()); len(users) != 0 {
		t.Fatalf("refused setups stored users: %v", users)
	}

	ok := b.post("/console/setup", url.Values{"csrf": {csrf}, "token": {f.setup}, "name": {"root"}, "password": {adminPass}, "confirm": {adminPass}})
	if ok.status != http.StatusSeeOther || ok.location != "/console/approvals" {
		t.Fatalf("setup: status %d location %q", ok.status, ok.location)
	}
	u, found, err := f.db.Console().ConsoleUser(context.Background(), "root")
	if err != nil || !found || u.Role != console.RoleAdmin || strings.Contains(u.PasswordHash, adminPass) || !strings.HasPrefix(u.PasswordHash, "$argon2id$") {
		t.Fatalf("stored admin = %+v, %v, %v", u, found, err)
	}
	// The setup signed the browser in.
	if p := b.get("/console/users"); p.status != http.StatusOK || !strings.Contains(p.body, "root") {
		t.Fatalf("users page after setup: %d", p.status)
	}
	// The token works once.
	again := f.browser()
	p := again.get("/console/setup")
	if p.status != http.StatusGone {
		t.Fatalf("setup page after use: status %d", p.status)
	}
	if f.c.SetupOpen() {
		t.Fatal("SetupOpen after use")
	}
}

func TestSetupRacingBrowsersMakeOneAdmin(t *testing.T) {
	f := newFixture(t, nil)
	const n = 6
	browsers := make([]*browser, n)
	tokens := make([]string, n)
	for i := range browsers {
		browsers[i] = f.browser()
		tokens[i] = browsers[i].csrf("/console/setup")
	}
	var wg sync.WaitGroup
	statuses := make([]int, n)
	for i := range browsers {
		wg.Go(func() {
			name := "admin" + string(rune('a'+i))
			statuses[i] = browsers[i].post("/console/setup", url.Values{"csrf": {tokens[i]}, "token": {f.setup}, "name": {name},
				"password": {adminPass}, "confirm": {adminPass}}).status
		})
	}
	wg.Wait()
	won := 0
	for _, s := range statuses {
		if s == http.StatusSeeOther {
			won++
		} else if s != http.StatusGone {
			t.Errorf("losing setup: status %d, want 410", s)
		}
	}
	users, _ := f.db.Console().ConsoleUsers(context.Background())
	if won != 1 || len(users) != 1 {
		t.Fatalf("%d setups won, %d users stored; want 1 and 1", won, len(users))
	}
}

func TestLoginPasswordsLockoutAndSessionEnd(t *testing.T) {
	f := newFixture(t, nil)
	f.addUser("alice", console.RoleApprover, adminPass)

	b := f.browser()
	csrf := b.csrf("/console/login")
	for i := range 5 {
		p := b.post("/console/login", url.Values{"csrf": {csrf}, "name": {"alice"}, "password": {"wrong password " + string(rune('a'+i))}})
		if p.status != http.StatusUnauthorized || !strings.Contains(p.body, "name or password is wrong") {
			t.Fatalf("attempt %d: status %d", i, p.status)
		}
	}
	// Locked now, even with the right password.
	p := b.post("/console/login", url.Values{"csrf": {csrf}, "name": {"alice"}, "password": {adminPass}})
	if p.status != http.StatusUnauthorized || !strings.Contains(p.body, "Too many failed attempts") {
		t.Fatalf("after 5 failures: status %d body %q", p.status, p.body)
	}
	f.clock.Advance(16 * time.Minute)
	b = f.login("alice", adminPass)
	if p := b.get("/console/approvals"); p.status != http.StatusNotImplemented && p.status != http.StatusOK {
		t.Fatalf("signed in page: %d", p.status)
	}
	// An unknown user is refused the same way.
	u := f.browser()
	if p := u.post("/console/login", url.Values{"csrf": {u.csrf("/console/login")}, "name": {"mallory"}, "password": {adminPass}}); p.status != http.StatusUnauthorized {
		t.Fatalf("unknown user: %d", p.status)
	}

	// Idle for longer than the idle timeout: signed out.
	f.clock.Advance(31 * time.Minute)
	if p := b.get("/console/agents"); p.status != http.StatusSeeOther || !strings.HasPrefix(p.location, "/console/login?next=") {
		t.Fatalf("idle session: status %d location %q", p.status, p.location)
	}
	// Absolute lifetime: active all along, still ends.
	b = f.login("alice", adminPass)
	for range 17 {
		f.clock.Advance(29 * time.Minute)
		b.get("/console/kill")
	}
	if p := b.get("/console/kill"); p.status != http.StatusSeeOther {
		t.Fatalf("session past its TTL: status %d", p.status)
	}
}

func TestDisabledUserCannotSignIn(t *testing.T) {
	f := newFixture(t, nil)
	admin := f.setupAdmin("root", adminPass)
	f.addUser("bob", console.RoleViewer, adminPass)
	bob := f.login("bob", adminPass)
	csrf := admin.csrf("/console/users")
	if p := admin.post("/console/users/bob/disable", url.Values{"csrf": {csrf}}); p.status != http.StatusSeeOther {
		t.Fatalf("disable: %d", p.status)
	}
	// Disabling signed bob out everywhere…
	if p := bob.get("/console/kill"); p.status != http.StatusSeeOther {
		t.Fatalf("disabled user's session still works: %d", p.status)
	}
	// …and he cannot sign in again.
	nb := f.browser()
	if p := nb.post("/console/login", url.Values{"csrf": {nb.csrf("/console/login")}, "name": {"bob"}, "password": {adminPass}}); p.status != http.StatusUnauthorized {
		t.Fatalf("disabled login: %d", p.status)
	}
	// An admin cannot lock themself out.
	if p := admin.post("/console/users/root/disable", url.Values{"csrf": {csrf}}); p.status != http.StatusSeeOther {
		t.Fatalf("self disable: %d", p.status)
	}
	if u, _, _ := f.db.Console().ConsoleUser(context.Background(), "root"); u.Disabled {
		t.Fatal("admin disabled themself")
	}
}

func TestFormsNeedTheirCSRFTokenAndOrigin(t *testing.T) {
	f := newFixture(t, nil)
	b := f.setupAdmin("root", adminPass)
	csrf := b.csrf("/console/users")
	form := func(token string) url.Values {
		return url.Values{"csrf": {token}, "name": {"eve"}, "role": {"admin"}, "password": {adminPass}}
	}
	if p := b.post("/console/users", form("")); p.status != http.StatusForbidden {
		t.Fatalf("no csrf: %d", p.status)
	}
	if p := b.post("/console/users", form(console.NewToken())); p.status != http.StatusForbidden {
		t.Fatalf("wrong csrf: %d", p.status)
	}
	if p := b.postFrom("https://evil.example", "/console/users", form(csrf)); p.status != http.StatusForbidden {
		t.Fatalf("foreign origin: %d", p.status)
	}
	if _, found, _ := f.db.Console().ConsoleUser(context.Background(), "eve"); found {
		t.Fatal("a forged form created a user")
	}
	if p := b.post("/console/users", form(csrf)); p.status != http.StatusSeeOther {
		t.Fatalf("good form: %d", p.status)
	}
	if _, found, _ := f.db.Console().ConsoleUser(context.Background(), "eve"); !found {
		t.Fatal("the good form created no user")
	}
	// The sign-in form has its own token: a login forged from elsewhere is refused.
	nb := f.browser()
	nb.csrf("/console/login")
	if p := nb.postFrom("https://evil.example", "/console/login", url.Values{"csrf": {"x"}, "name": {"eve"}, "password": {adminPass}}); p.status != http.StatusForbidden {
		t.Fatalf("forged login: %d", p.status)
	}
}

func TestRolesGateEveryAction(t *testing.T) {
	f := newFixture(t, nil)
	f.addUser("vera", console.RoleViewer, adminPass)
	f.addUser("abe", console.RoleApprover, adminPass)
	vera, abe := f.login("vera", adminPass), f.login("abe", adminPass)
	cases := []struct {
		b      *browser
		path   string
		status int
	}{
		{vera, "/console/approvals/x/approve", http.StatusForbidden},
		{vera, "/console/kill", http.StatusForbidden},
		{abe, "/console/kill", http.StatusForbidden},
		{abe, "/console/agents/a/suspend", http.StatusForbidden},
		{abe, "/console/users", http.StatusForbidden},
		{abe, "/console/policies/reload", http.StatusForbidden},
		// Allowed to try, refused further down for want of a backend: not 403.
		{abe, "/console/approvals/x/approve", http.StatusNotImplemented},
	}
	for _, c := range cases {
		p := c.b.post(c.path, url.Values{"csrf": {c.b.csrf("/console/kill")}, "scope": {"all"}, "reason": {"r"}, "confirm": {"yes"}})
		if p.status != c.status {
			t.Errorf("POST %s: status %d, want %d", c.path, p.status, c.status)
		}
	}
	if p := vera.get("/console/users"); p.status != http.StatusForbidden {
		t.Errorf("viewer GET users: %d", p.status)
	}
	// Controls show only to the roles that may use them.
	f.addUser("olga", console.RoleOperator, adminPass)
	olga := f.login("olga", adminPass)
	for b, want := range map[*browser]bool{vera: false, abe: false, olga: true} {
		if p := b.get("/console/audit"); strings.Contains(p.body, `id="verify"`) != want {
			t.Errorf("verify control shown = %v, want %v (status %d)", !want, want, p.status)
		}
	}
}

func TestSecurityHeadersAndCookies(t *testing.T) {
	f := newFixture(t, nil)
	b := f.setupAdmin("root", adminPass)
	for _, path := range []string{"/console/login", "/console/approvals", "/console/static/console.css", "/console/nope"} {
		p := b.get(path)
		csp := p.header.Get("Content-Security-Policy")
		for _, want := range []string{"default-src 'none'", "script-src 'self'", "style-src 'self'", "frame-ancestors 'none'", "form-action 'self'"} {
			if !strings.Contains(csp, want) {
				t.Errorf("%s: CSP %q lacks %q", path, csp, want)
			}
		}
		if strings.Contains(csp, "unsafe-inline") {
			t.Errorf("%s: CSP allows inline code", path)
		}
		if p.header.Get("X-Frame-Options") != "DENY" || p.header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s: frame/nosniff headers missing", path)
		}
	}
	// No inline script or style in any page: the policy would block it.
	for _, path := range []string{"/console/approvals", "/console/agents", "/console/kill", "/console/audit", "/console/dashboard", "/console/policies", "/console/users"} {
		p := b.get(path)
		if p.status != http.StatusOK && p.status != http.StatusNotImplemented {
			t.Errorf("GET %s: %d", path, p.status)
		}
		if strings.Contains(p.body, "<script>") || strings.Contains(p.body, " style=") || strings.Contains(p.body, "<style") {
			t.Errorf("%s has inline script or style", path)
		}
	}

	// Over https the cookie is Secure with the __Host- prefix.
	fs := newFixture(t, func(o *console.Options) { o.PublicURL = "https://chaperone.example" })
	nb := fs.browser()
	csrf := nb.csrf("/console/setup")
	req, _ := http.NewRequest(http.MethodPost, fs.srv.URL+"/console/setup", strings.NewReader(url.Values{"csrf": {csrf}, "token": {fs.setup},
		"name": {"root"}, "password": {adminPass}, "confirm": {adminPass}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", "https://chaperone.example")
	resp, err := nb.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	var session *http.Cookie
	for _, c := range resp.Cookies() {
		if strings.Contains(c.Name, "session") {
			session = c
		}
	}
	if session == nil || session.Name != "__Host-chaperone_session" || !session.Secure || !session.HttpOnly || session.SameSite != http.SameSiteLaxMode || session.Path != "/" {
		t.Fatalf("https session cookie = %+v", session)
	}
	if resp.Header.Get("Strict-Transport-Security") == "" {
		t.Error("no HSTS over https")
	}
	// The stored session id is the token's hash, not the token.
	if _, found, _ := fs.db.Console().ConsoleSession(context.Background(), session.Value); found {
		t.Fatal("the cookie's token is stored as is")
	}
}

func TestSignOutEndsTheSession(t *testing.T) {
	f := newFixture(t, nil)
	b := f.setupAdmin("root", adminPass)
	if p := b.post("/console/logout", url.Values{"csrf": {b.csrf("/console/kill")}}); p.status != http.StatusSeeOther {
		t.Fatalf("logout: %d", p.status)
	}
	if p := b.get("/console/kill"); p.status != http.StatusSeeOther {
		t.Fatalf("after logout: %d", p.status)
	}
}

func TestLiveStreamSendsChanges(t *testing.T) {
	f := newFixture(t, nil)
	b := f.setupAdmin("root", adminPass)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, f.srv.URL+"/console/live", nil)
	resp, err := b.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("content type %q", ct)
	}
	buf := make([]byte, 256)
	n, _ := resp.Body.Read(buf) // the retry line
	if !strings.Contains(string(buf[:n]), "retry:") {
		t.Fatalf("first bytes %q", buf[:n])
	}
	go func() {
		for ctx.Err() == nil {
			f.c.Changed()
			time.Sleep(50 * time.Millisecond)
		}
	}()
	var got strings.Builder
	for !strings.Contains(got.String(), "event: change") {
		n, err := resp.Body.Read(buf)
		if err != nil {
			t.Fatalf("stream ended before a change: %v (read %q)", err, got.String())
		}
		got.Write(buf[:n])
	}
	// Without a session the stream is refused.
	anon := f.browser()
	req, _ = http.NewRequest(http.MethodGet, f.srv.URL+"/console/live", nil)
	req.Header.Set("Accept", "text/event-stream")
	if p := anon.do(req); p.status != http.StatusUnauthorized {
		t.Fatalf("anonymous stream: %d", p.status)
	}
}

func TestAccountChangesReachLiveSessions(t *testing.T) {
	f := newFixture(t, nil)
	f.setupAdmin("root", adminPass)
	f.addUser("carl", console.RoleOperator, adminPass)
	carl := f.login("carl", adminPass)
	if p := carl.get("/console/audit"); !strings.Contains(p.body, `id="verify"`) {
		t.Fatal("operator sees no verify control")
	}
	// Demoted behind the console's back (another replica, or the store directly): the
	// session's next request has the new role.
	ctx := context.Background()
	u, _, _ := f.db.Console().ConsoleUser(ctx, "carl")
	u.Role = console.RoleViewer
	if err := f.db.Console().UpdateUser(ctx, u); err != nil {
		t.Fatal(err)
	}
	if p := carl.get("/console/audit"); p.status != http.StatusOK || strings.Contains(p.body, `id="verify"`) {
		t.Fatalf("demoted session still acts as operator (status %d)", p.status)
	}
	if p := carl.post("/console/audit/verify", url.Values{"csrf": {carl.csrf("/console/audit")}}); p.status != http.StatusForbidden {
		t.Fatalf("demoted session verified: %d", p.status)
	}
	// Deleted: the session ends.
	if err := f.db.Console().DeleteUser(ctx, "carl"); err != nil {
		t.Fatal(err)
	}
	if p := carl.get("/console/audit"); p.status != http.StatusSeeOther {
		t.Fatalf("deleted user's session: %d", p.status)
	}
}
