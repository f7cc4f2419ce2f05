// Package console is the operator web console: server-rendered pages for approvers,
// operators and auditors — the approvals queue, the agent directory, the kill switch, the
// audit explorer, dashboards and the policy in force — served by the gateway on its admin
// listener under /console/.
//
// Everything is rendered on the server with html/template from embedded files; one small
// script (static/console.js) only refreshes the live parts of a page when the server says
// something changed (server-sent events on /console/live). Every control is a plain HTML
// form, so the console works, slower, without it.
//
// Security: operators sign in with a local account (Argon2id password hashes; the first
// admin is created with a one-time setup token printed at first start) or OpenID Connect.
// A session is a random token in an HttpOnly, SameSite=Lax cookie (Secure when the public
// URL is https) whose SHA-256 is stored; it ends after the session TTL or when idle. Every
// form carries the session's CSRF token and must come from the console's own origin. The
// content security policy allows only the console's own script and stylesheet: no inline
// script or style, no frames, no foreign form targets. Roles are ordered (viewer, approver,
// operator, admin) and checked on every action.
package console

import (
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/chaperone-dev/chaperone/internal/api"
	"github.com/chaperone-dev/chaperone/internal/audit"
	"github.com/chaperone-dev/chaperone/internal/console/oidc"
	"github.com/chaperone-dev/chaperone/internal/insight"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Prefix is where the console is served.
const Prefix = "/console"

// OIDC is the OpenID Connect sign-in: the client and how groups map to roles.
type OIDC struct {
	Client *oidc.Client
	// Roles maps each role to the groups or e-mail addresses that grant it.
	Roles map[Role][]string
}

// Options wires the console.
type Options struct {
	// API is what the admin API is wired with: the console acts through the same
	// components (approvals, agents, tasks, containment, policy, shadow rules).
	API api.Options
	// Store keeps console users and sessions.
	Store Store
	// Events reads the audit log.
	Events audit.Source
	// Verify checks the audit chain with the stored checkpoints; nil: not offered.
	Verify func(ctx context.Context) (audit.Report, error)
	// PublicURL is the origin browsers use, e.g. "https://chaperone.example.com". https
	// makes cookies Secure. Required.
	PublicURL string
	// SessionTTL and IdleTimeout bound a session's life. Defaults 8h and 30m.
	SessionTTL, IdleTimeout time.Duration
	// SetupToken, when not "", lets the first admin be created at /console/setup; it
	// works once. Give it only when no console user exists.
	SetupToken string
	// OIDC enables single sign-on; nil: local accounts only.
	OIDC *OIDC
	// Done ends the live event streams (the daemon's shutdown).
	Done   <-chan struct{}
	Logger *slog.Logger
	Now    func() time.Time
}

// Console is the console's HTTP handler.
type Console struct {
	opts   Options
	log    *slog.Logger
	now    func() time.Time
	origin string
	secure bool
	pages  map[string]*template.Template
	mux    *http.ServeMux
	csp    string

	setupMu    sync.Mutex
	setupToken [32]byte // SHA-256 of the token; zero when none or used
	setupOpen  bool

	logins *loginLimiter
	hashes chan struct{} // bounds concurrent password hashing (memory-hard)

	live *broadcaster

	verifyMu   sync.Mutex
	lastVerify *verifyResult

	figMu    sync.Mutex
	figCache map[string]cachedFigures
}

// New returns the console, or an error naming what is wrong with opts.
func New(opts Options) (*Console, error) {
	u, err := url.Parse(opts.PublicURL)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, fmt.Errorf("console: public URL must be an http(s) origin, got %q", opts.PublicURL)
	}
	if opts.Store == nil || opts.Events == nil {
		return nil, errors.New("console: a store and an audit source are required")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.SessionTTL <= 0 {
		opts.SessionTTL = 8 * time.Hour
	}
	if opts.IdleTimeout <= 0 || opts.IdleTimeout > opts.SessionTTL {
		opts.IdleTimeout = min(30*time.Minute, opts.SessionTTL)
	}
	c := &Console{
		opts: opts, log: opts.Logger, now: opts.Now,
		origin: u.Scheme + "://" + u.Host, secure: u.Scheme == "https",
		logins: newLoginLimiter(), hashes: make(chan struct{}, 2),
		live: newBroadcaster(), figCache: map[string]cachedFigures{},
	}
	if opts.SetupToken != "" {
		c.setupToken, c.setupOpen = sha256.Sum256([]byte(opts.SetupToken)), true
	}
	formAction := "'self'"
	c.csp = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
		"form-action " + formAction + "; frame-ancestors 'none'; base-uri 'none'"
	if c.pages, err = parsePages(); err != nil {
		return nil, err
	}
	c.routes()
	return c, nil
}

// Changed tells the live pages that something they show may have changed. It never
// blocks; changes close together reach a browser as one.
func (c *Console) Changed() { c.live.bump() }

// SetupOpen reports whether the one-time setup token still works.
func (c *Console) SetupOpen() bool {
	c.setupMu.Lock()
	defer c.setupMu.Unlock()
	return c.setupOpen
}

// ServeHTTP serves the console.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", c.csp)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	// same-origin, not no-referrer: with no-referrer browsers send "Origin: null" on form
	// posts, which would defeat the origin check below.
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
	if c.secure {
		h.Set("Strict-Transport-Security", "max-age=31536000")
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	c.mux.ServeHTTP(w, r)
}

// maxFormBytes bounds a form post.
const maxFormBytes = 64 << 10

func (c *Console) routes() {
	m := http.NewServeMux()
	static, _ := fs.Sub(staticFS, "static")
	fileServer := http.StripPrefix(Prefix+"/static/", http.FileServerFS(static))
	m.Handle("GET "+Prefix+"/static/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-cache")
		fileServer.ServeHTTP(w, r)
	}))
	m.HandleFunc("GET "+Prefix+"/static/charts.css", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/css; charset=utf-8")
		w.Header().Set("Cache-Control", "no-cache")
		_, _ = w.Write([]byte(insight.ChartCSS))
	})
	m.HandleFunc("GET "+Prefix+"/{$}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, Prefix+"/approvals", http.StatusSeeOther)
	})
	m.HandleFunc("GET "+Prefix, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, Prefix+"/approvals", http.StatusSeeOther)
	})

	// Signing in and out: no session needed.
	m.HandleFunc("GET "+Prefix+"/setup", c.setupPage)
	m.HandleFunc("POST "+Prefix+"/setup", c.setup)
	m.HandleFunc("GET "+Prefix+"/login", c.loginPage)
	m.HandleFunc("POST "+Prefix+"/login", c.login)
	m.HandleFunc("GET "+Prefix+"/oidc/start", c.oidcStart)
	m.HandleFunc("GET "+Prefix+"/oidc/callback", c.oidcCallback)
	m.Handle("POST "+Prefix+"/logout", c.action(RoleViewer, c.logout))

	// Pages: every role reads.
	m.Handle("GET "+Prefix+"/approvals", c.page(RoleViewer, c.approvalsPage))
	m.Handle("GET "+Prefix+"/agents", c.page(RoleViewer, c.agentsPage))
	m.Handle("GET "+Prefix+"/agents/{id}", c.page(RoleViewer, c.agentPage))
	m.Handle("GET "+Prefix+"/kill", c.page(RoleViewer, c.killPage))
	m.Handle("GET "+Prefix+"/audit", c.page(RoleViewer, c.auditPage))
	m.Handle("GET "+Prefix+"/sessions/{id}", c.page(RoleViewer, c.sessionPage))
	m.Handle("GET "+Prefix+"/dashboard", c.page(RoleViewer, c.dashboardPage))
	m.Handle("GET "+Prefix+"/policies", c.page(RoleViewer, c.policiesPage))
	m.Handle("GET "+Prefix+"/users", c.page(RoleAdmin, c.usersPage))
	m.Handle("GET "+Prefix+"/live", c.session(RoleViewer, c.liveStream))

	// Actions: each names the least role that may take it.
	m.Handle("POST "+Prefix+"/approvals/{id}/approve", c.action(RoleApprover, c.approve))
	m.Handle("POST "+Prefix+"/approvals/{id}/decline", c.action(RoleApprover, c.decline))
	m.Handle("POST "+Prefix+"/agents/{id}/{op}", c.action(RoleOperator, c.agentAction))
	m.Handle("POST "+Prefix+"/kill", c.action(RoleOperator, c.kill))
	m.Handle("POST "+Prefix+"/kill/lift", c.action(RoleOperator, c.lift))
	m.Handle("POST "+Prefix+"/audit/verify", c.action(RoleOperator, c.verify))
	m.Handle("POST "+Prefix+"/policies/reload", c.action(RoleAdmin, c.reload))
	m.Handle("POST "+Prefix+"/users", c.action(RoleAdmin, c.createUser))
	m.Handle("POST "+Prefix+"/users/{name}/{op}", c.action(RoleAdmin, c.userAction))
	c.mux = m
}

// roleRank orders the roles; an unknown role ranks below every known one.
func roleRank(r Role) int {
	switch r {
	case RoleViewer:
		return 1
	case RoleApprover:
		return 2
	case RoleOperator:
		return 3
	case RoleAdmin:
		return 4
	}
	return 0
}

// Can reports whether r may do what need allows.
func (r Role) Can(need Role) bool { return roleRank(r) >= roleRank(need) && roleRank(need) > 0 }

// ParseRole reads a role name.
func ParseRole(s string) (Role, error) {
	r := Role(s)
	if roleRank(r) == 0 {
		return "", fmt.Errorf("role must be viewer, approver, operator or admin, got %q", truncate(s, 32))
	}
	return r, nil
}

type ctxKey struct{}

// current is the signed-in session of a request.
func current(r *http.Request) *Session {
	s, _ := r.Context().Value(ctxKey{}).(*Session)
	return s
}

// session wraps h so that it runs only for a signed-in session whose role is at least
// need. A browser without a session is sent to sign in; a session without the role gets
// 403.
func (c *Console) session(need Role, h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		s, err := c.authenticate(r)
		if err != nil {
			c.log.ErrorContext(r.Context(), "console session lookup", "err", err)
			c.fail(w, r, http.StatusServiceUnavailable, "The session store cannot be read; try again shortly.")
			return
		}
		if s == nil {
			if r.Method == http.MethodGet && r.Header.Get("Accept") != "text/event-stream" {
				http.Redirect(w, r, Prefix+"/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
				return
			}
			c.fail(w, r, http.StatusUnauthorized, "Your session has ended: sign in again.")
			return
		}
		if !s.Role.Can(need) {
			c.fail(w, r, http.StatusForbidden, fmt.Sprintf("This needs the %s role; you are signed in as %s.", need, s.Role))
			return
		}
		h(w, r.WithContext(context.WithValue(r.Context(), ctxKey{}, s)))
	})
}

// page is a session-checked GET handler.
func (c *Console) page(need Role, h http.HandlerFunc) http.Handler { return c.session(need, h) }

// action is a session-checked POST handler that also checks the request's origin and
// CSRF token.
func (c *Console) action(need Role, h http.HandlerFunc) http.Handler {
	return c.session(need, func(w http.ResponseWriter, r *http.Request) {
		if !c.sameOrigin(r) {
			c.fail(w, r, http.StatusForbidden, "The form was not sent from this console.")
			return
		}
		if err := r.ParseForm(); err != nil {
			c.fail(w, r, http.StatusBadRequest, "The form could not be read (at most 64 KiB).")
			return
		}
		if !tokenEqual(r.PostForm.Get("csrf"), current(r).CSRF) {
			c.fail(w, r, http.StatusForbidden, "The form has expired or was not sent from this console: reload the page and try again.")
			return
		}
		h(w, r)
	})
}

// sameOrigin refuses a form posted from another site: by Origin when the browser sends
// one, and by Sec-Fetch-Site. A request with neither header comes from a program, not a
// browser a page could have tricked, and still needs its CSRF token.
func (c *Console) sameOrigin(r *http.Request) bool {
	s := r.Header.Get("Sec-Fetch-Site")
	if o := r.Header.Get("Origin"); o != "" && o != "null" {
		return o == c.origin && (s == "" || s == "same-origin")
	}
	return s == "" || s == "same-origin"
}

// fail answers an error page (or plain text to a live refresh).
func (c *Console) fail(w http.ResponseWriter, r *http.Request, status int, msg string) {
	w.Header().Set("Cache-Control", "no-store")
	c.renderStatus(w, r, status, "error", "Error", "", struct {
		Status  int
		Message string
	}{status, msg})
}

// back redirects to the page a form came from (a console path only), with a message.
func (c *Console) back(w http.ResponseWriter, r *http.Request, fallback, msg string, isErr bool) {
	to := r.PostForm.Get("back")
	if !strings.HasPrefix(to, Prefix+"/") || strings.HasPrefix(to, "//") || strings.ContainsAny(to, "\\\r\n") {
		to = fallback
	}
	setFlash(w, c.secure, msg, isErr)
	http.Redirect(w, r, to, http.StatusSeeOther)
}

// sessionHash is the stored ID of a session token.
func sessionHash(token string) string {
	h := sha256.Sum256([]byte(token))
	return hex.EncodeToString(h[:])
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && n < len(s) && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n] + "…"
}
