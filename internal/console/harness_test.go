package console_test

import (
	"context"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chaperone-dev/chaperone/internal/console"
	"github.com/chaperone-dev/chaperone/internal/store/sqlite"
	"github.com/chaperone-dev/chaperone/internal/store/sqlite/sqlitetest"
	"github.com/chaperone-dev/chaperone/internal/testclock"
)

// fixture is a console over a real SQLite store, served on loopback.
type fixture struct {
	t     *testing.T
	c     *console.Console
	db    *sqlite.DB
	srv   *httptest.Server
	clock *testclock.Clock
	setup string
}

// newFixture starts a console; edit changes its options before it is built (PublicURL is
// set to the server's URL unless edit sets it).
func newFixture(t *testing.T, edit func(*console.Options)) *fixture {
	t.Helper()
	db, _ := sqlitetest.Open(t)
	f := &fixture{t: t, db: db, clock: testclock.New(time.Now()), setup: console.NewToken()}
	var h http.Handler
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { h.ServeHTTP(w, r) }))
	t.Cleanup(f.srv.Close)
	done := make(chan struct{})
	t.Cleanup(func() { close(done) })
	opts := console.Options{Store: db.Console(), Events: db, PublicURL: f.srv.URL, SetupToken: f.setup, Now: f.clock.Now, Done: done,
		SessionTTL: 8 * time.Hour, IdleTimeout: 30 * time.Minute}
	if edit != nil {
		edit(&opts)
	}
	c, err := console.New(opts)
	if err != nil {
		t.Fatalf("console.New: %v", err)
	}
	f.c, h = c, c
	return f
}

// browser is an HTTP client with its own cookies that does not follow redirects.
type browser struct {
	t      *testing.T
	f      *fixture
	client *http.Client
}

func (f *fixture) browser() *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{t: f.t, f: f, client: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}}
}

type page struct {
	status   int
	body     string
	location string
	header   http.Header
}

func (b *browser) do(req *http.Request) page {
	b.t.Helper()
	resp, err := b.client.Do(req)
	if err != nil {
		b.t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return page{status: resp.StatusCode, body: string(body), location: resp.Header.Get("Location"), header: resp.Header}
}

func (b *browser) get(path string) page {
	b.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, b.f.srv.URL+path, nil)
	return b.do(req)
}

// post sends a form as a browser on the console's own page would (Origin set).
func (b *browser) post(path string, form url.Values) page {
	b.t.Helper()
	return b.postFrom(b.f.srv.URL, path, form)
}

func (b *browser) postFrom(origin, path string, form url.Values) page {
	b.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, b.f.srv.URL+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if origin != "" {
		req.Header.Set("Origin", origin)
	}
	return b.do(req)
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// csrf reads the CSRF token of the first form on a page.
func (b *browser) csrf(path string) string {
	b.t.Helper()
	p := b.get(path)
	m := csrfField.FindStringSubmatch(p.body)
	if m == nil {
		b.t.Fatalf("GET %s: no csrf field (status %d)", path, p.status)
	}
	return html.UnescapeString(m[1])
}

// setupAdmin creates the first admin through the setup page and returns its browser.
func (f *fixture) setupAdmin(name, password string) *browser {
	f.t.Helper()
	b := f.browser()
	p := b.post("/console/setup", url.Values{"csrf": {b.csrf("/console/setup")}, "token": {f.setup}, "name": {name},
		"password": {password}, "confirm": {password}})
	if p.status != http.StatusSeeOther {
		f.t.Fatalf("setup: status %d: %s", p.status, p.body)
	}
	return b
}

// addUser stores a local user directly.
func (f *fixture) addUser(name string, role console.Role, password string) {
	f.t.Helper()
	h, err := console.HashPassword(password)
	if err != nil {
		f.t.Fatal(err)
	}
	now := time.Now().UTC().Truncate(time.Microsecond)
	if err := f.db.Console().CreateUser(context.Background(), console.User{Name: name, Role: role, PasswordHash: h, Created: now, Updated: now}); err != nil {
		f.t.Fatal(err)
	}
}

// login signs a new browser in with a local account.
func (f *fixture) login(name, password string) *browser {
	f.t.Helper()
	b := f.browser()
	p := b.post("/console/login", url.Values{"csrf": {b.csrf("/console/login")}, "name": {name}, "password": {password}})
	if p.status != http.StatusSeeOther {
		f.t.Fatalf("login %s: status %d: %s", name, p.status, p.body)
	}
	return b
}
