package console

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/chaperone-dev/chaperone/internal/console/oidc"
)

// Cookie names. With https the session cookie takes the __Host- prefix, which browsers
// accept only Secure, host-only and with Path=/.
const (
	cookieSession       = "chaperone_session"
	cookieSessionSecure = "__Host-chaperone_session"
	cookiePre           = "chaperone_pre"   // double-submit token of the sign-in forms
	cookieOIDC          = "chaperone_oidc"  // state, nonce and PKCE verifier of a sign-in under way
	cookieFlash         = "chaperone_flash" // the message the next page shows
)

// NewToken returns 32 random bytes, base64url without padding: session tokens, CSRF
// tokens, the setup token.
func NewToken() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic("console: crypto/rand failed: " + err.Error()) // the runtime cannot go on without randomness
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// tokenEqual compares two tokens in constant time; an empty token never matches.
func tokenEqual(got, want string) bool {
	if got == "" || want == "" {
		return false
	}
	g, w := sha256.Sum256([]byte(got)), sha256.Sum256([]byte(want))
	return subtle.ConstantTimeCompare(g[:], w[:]) == 1
}

func (c *Console) sessionCookieName() string {
	if c.secure {
		return cookieSessionSecure
	}
	return cookieSession
}

// authenticate returns the request's live session, nil when it has none (or it ended), and
// an error only when the store cannot be read.
func (c *Console) authenticate(r *http.Request) (*Session, error) {
	ck, err := r.Cookie(c.sessionCookieName())
	if err != nil || ck.Value == "" || len(ck.Value) > 128 {
		return nil, nil
	}
	id := sessionHash(ck.Value)
	s, ok, err := c.opts.Store.ConsoleSession(r.Context(), id)
	if err != nil || !ok {
		return nil, err
	}
	now := c.now()
	if !now.Before(s.Expires) || now.Sub(s.Seen) >= c.opts.IdleTimeout {
		if err := c.opts.Store.DeleteSession(r.Context(), id); err != nil {
			c.log.WarnContext(r.Context(), "console: delete ended session", "err", err)
		}
		return nil, nil
	}
	// A local account is read again on every request, so that disabling, deleting or
	// demoting it takes effect at once, even for a session that raced the change.
	if name, ok := strings.CutPrefix(s.User, "local:"); ok {
		u, found, err := c.opts.Store.ConsoleUser(r.Context(), name)
		if err != nil {
			return nil, err
		}
		if !found || u.Disabled {
			if err := c.opts.Store.DeleteSession(r.Context(), id); err != nil {
				c.log.WarnContext(r.Context(), "console: delete session of a removed user", "err", err)
			}
			return nil, nil
		}
		s.Role = u.Role
	}
	// The idle clock needs only minute precision: spare the store a write per request.
	// Live streams do not count as use.
	if now.Sub(s.Seen) > time.Minute && !strings.HasSuffix(r.URL.Path, "/live") {
		if err := c.opts.Store.TouchSession(r.Context(), id, now); err != nil {
			c.log.WarnContext(r.Context(), "console: touch session", "err", err)
		}
	}
	return &s, nil
}

// startSession stores a new session for user and sets its cookie.
func (c *Console) startSession(ctx context.Context, w http.ResponseWriter, user string, role Role) error {
	token, now := NewToken(), c.now().UTC().Truncate(time.Microsecond)
	s := Session{ID: sessionHash(token), User: user, Role: role, CSRF: NewToken(), Created: now, Expires: now.Add(c.opts.SessionTTL), Seen: now}
	if err := c.opts.Store.PutSession(ctx, s); err != nil {
		return err
	}
	http.SetCookie(w, &http.Cookie{Name: c.sessionCookieName(), Value: token, Path: "/", HttpOnly: true, Secure: c.secure,
		SameSite: http.SameSiteLaxMode, Expires: s.Expires})
	return nil
}

func (c *Console) setCookie(w http.ResponseWriter, name, value, path string, maxAge int) {
	http.SetCookie(w, &http.Cookie{Name: name, Value: value, Path: path, HttpOnly: true, Secure: c.secure,
		SameSite: http.SameSiteLaxMode, MaxAge: maxAge})
}

// preToken returns the sign-in forms' double-submit token, setting its cookie if needed.
func (c *Console) preToken(w http.ResponseWriter, r *http.Request) string {
	if ck, err := r.Cookie(cookiePre); err == nil && len(ck.Value) == 43 {
		return ck.Value
	}
	t := NewToken()
	c.setCookie(w, cookiePre, t, Prefix+"/", 3600)
	return t
}

// preOK checks a sign-in form: from this origin, carrying the token of its cookie.
func (c *Console) preOK(r *http.Request) bool {
	ck, err := r.Cookie(cookiePre)
	return err == nil && c.sameOrigin(r) && r.ParseForm() == nil && tokenEqual(r.PostForm.Get("csrf"), ck.Value)
}

// nextPath is where to go after signing in: a console path from the form, else the queue.
func nextPath(s string) string {
	if !strings.HasPrefix(s, Prefix+"/") || strings.HasPrefix(s, "//") || strings.ContainsAny(s, "\\\r\n") || strings.HasPrefix(s, Prefix+"/log") {
		return Prefix + "/approvals"
	}
	return s
}

type signInView struct {
	CSRF, Next, Name, Error string
	OIDC                    bool
	SetupOpen               bool
}

func (c *Console) loginPage(w http.ResponseWriter, r *http.Request) {
	if s, _ := c.authenticate(r); s != nil {
		http.Redirect(w, r, nextPath(r.URL.Query().Get("next")), http.StatusSeeOther)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	c.renderBody(w, r, "login", "Sign in", "", signInView{CSRF: c.preToken(w, r), Next: nextPath(r.URL.Query().Get("next")),
		OIDC: c.opts.OIDC != nil, SetupOpen: c.SetupOpen()})
}

// login checks a local account's password. Failures are answered the same whatever
// failed, and a name with too many recent failures is refused before its hash is computed.
func (c *Console) login(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	if !c.preOK(r) {
		c.fail(w, r, http.StatusForbidden, "The sign-in form has expired or was not sent from this console: reload it and try again.")
		return
	}
	name, pass, next := strings.TrimSpace(r.PostForm.Get("name")), r.PostForm.Get("password"), nextPath(r.PostForm.Get("next"))
	again := func(msg string) {
		c.renderStatus(w, r, http.StatusUnauthorized, "login", "Sign in", "", signInView{CSRF: c.preToken(w, r), Next: next, Name: truncate(name, 64), Error: msg,
			OIDC: c.opts.OIDC != nil, SetupOpen: c.SetupOpen()})
	}
	if wait := c.logins.blocked(name, c.now()); wait > 0 {
		c.log.WarnContext(r.Context(), "console sign-in refused: too many failures", "user", truncate(name, 64))
		again(fmt.Sprintf("Too many failed attempts for this account: try again in %s.", wait.Round(time.Minute)))
		return
	}
	u, ok, err := c.opts.Store.ConsoleUser(r.Context(), name)
	if err != nil {
		c.log.ErrorContext(r.Context(), "console user lookup", "err", err)
		c.fail(w, r, http.StatusServiceUnavailable, "The user store cannot be read; try again shortly.")
		return
	}
	good := false
	c.hashes <- struct{}{}
	if ok && !u.Disabled {
		good, err = VerifyPassword(u.PasswordHash, pass)
		if err != nil {
			c.log.ErrorContext(r.Context(), "console: stored password hash unreadable", "user", name, "err", err)
		}
	} else {
		// Spend the same time on an unknown name, so that timing does not tell names apart.
		_, _ = VerifyPassword(dummyHash(), pass)
	}
	<-c.hashes
	if !good {
		c.logins.fail(name, c.now())
		c.log.WarnContext(r.Context(), "console sign-in failed", "user", truncate(name, 64))
		again("The name or password is wrong, or the account is disabled.")
		return
	}
	c.logins.reset(name)
	if err := c.startSession(r.Context(), w, "local:"+u.Name, u.Role); err != nil {
		c.log.ErrorContext(r.Context(), "console session store", "err", err)
		c.fail(w, r, http.StatusServiceUnavailable, "The session could not be stored; try again shortly.")
		return
	}
	c.log.InfoContext(r.Context(), "console sign-in", "user", "local:"+u.Name, "role", u.Role)
	http.Redirect(w, r, next, http.StatusSeeOther)
}

// dummyHash is verified against for unknown names (its password is random and unknown).
var dummyHash = sync.OnceValue(func() string {
	h, err := HashPassword(NewToken())
	if err != nil {
		panic("console: " + err.Error()) // crypto/rand failed: nothing can go on
	}
	return h
})

func (c *Console) logout(w http.ResponseWriter, r *http.Request) {
	s := current(r)
	if err := c.opts.Store.DeleteSession(r.Context(), s.ID); err != nil {
		c.log.ErrorContext(r.Context(), "console sign-out", "err", err)
		c.fail(w, r, http.StatusServiceUnavailable, "The session could not be ended; try again.")
		return
	}
	http.SetCookie(w, &http.Cookie{Name: c.sessionCookieName(), Value: "", Path: "/", HttpOnly: true, Secure: c.secure, MaxAge: -1, SameSite: http.SameSiteLaxMode})
	http.Redirect(w, r, Prefix+"/login", http.StatusSeeOther)
}

// setupPage offers the creation of the first admin while the setup token is unused.
func (c *Console) setupPage(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	if !c.SetupOpen() {
		c.fail(w, r, http.StatusGone, "Setup is done: sign in with an existing account.")
		return
	}
	c.renderBody(w, r, "setup", "First start", "", signInView{CSRF: c.preToken(w, r)})
}

// setup creates the first admin, once: it needs the setup token printed at first start,
// and of replicas racing, the store lets one win.
func (c *Console) setup(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	if !c.preOK(r) {
		c.fail(w, r, http.StatusForbidden, "The setup form has expired or was not sent from this console: reload it and try again.")
		return
	}
	name, pass := strings.TrimSpace(r.PostForm.Get("name")), r.PostForm.Get("password")
	again := func(status int, msg string) {
		c.renderStatus(w, r, status, "setup", "First start", "", signInView{CSRF: c.preToken(w, r), Name: truncate(name, 64), Error: msg})
	}
	c.setupMu.Lock()
	defer c.setupMu.Unlock()
	if !c.setupOpen {
		c.fail(w, r, http.StatusGone, "Setup is done: sign in with an existing account.")
		return
	}
	given := sha256.Sum256([]byte(strings.TrimSpace(r.PostForm.Get("token"))))
	if subtle.ConstantTimeCompare(given[:], c.setupToken[:]) != 1 {
		c.log.WarnContext(r.Context(), "console setup refused: wrong setup token")
		again(http.StatusForbidden, "The setup token is wrong: use the one the gateway printed at first start.")
		return
	}
	if err := CheckName(name); err != nil {
		again(http.StatusBadRequest, capitalize(err.Error()))
		return
	}
	if err := CheckPassword(pass); err != nil {
		again(http.StatusBadRequest, capitalize(err.Error()))
		return
	}
	if pass != r.PostForm.Get("confirm") {
		again(http.StatusBadRequest, "The two passwords differ.")
		return
	}
	hash, err := HashPassword(pass)
	if err != nil {
		c.fail(w, r, http.StatusInternalServerError, "The password could not be hashed.")
		return
	}
	now := c.now().UTC().Truncate(time.Microsecond)
	created, err := c.opts.Store.CreateFirstUser(r.Context(), User{Name: name, Role: RoleAdmin, PasswordHash: hash, Created: now, Updated: now})
	if err != nil {
		c.log.ErrorContext(r.Context(), "console setup", "err", err)
		c.fail(w, r, http.StatusServiceUnavailable, "The account could not be stored; try again shortly.")
		return
	}
	c.setupOpen, c.setupToken = false, [32]byte{}
	if !created {
		c.fail(w, r, http.StatusGone, "Another replica finished setup first: sign in with that account.")
		return
	}
	c.log.InfoContext(r.Context(), "console setup: first admin created", "user", name)
	if err := c.startSession(r.Context(), w, "local:"+name, RoleAdmin); err != nil {
		c.fail(w, r, http.StatusServiceUnavailable, "The account was created but the session could not be stored: sign in.")
		return
	}
	http.Redirect(w, r, Prefix+"/approvals", http.StatusSeeOther)
}

// oidcStart sends the browser to the identity provider. State, nonce and the PKCE
// verifier ride in a short-lived cookie, so that any replica can finish the sign-in.
func (c *Console) oidcStart(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	if c.opts.OIDC == nil {
		c.fail(w, r, http.StatusNotFound, "Single sign-on is not configured.")
		return
	}
	state, err1 := oidc.NewState()
	nonce, err2 := oidc.NewState()
	verifier, err3 := oidc.NewVerifier()
	if err := errors.Join(err1, err2, err3); err != nil {
		c.fail(w, r, http.StatusInternalServerError, "Random values could not be made.")
		return
	}
	to, err := c.opts.OIDC.Client.AuthCodeURL(r.Context(), state, nonce, verifier)
	if err != nil {
		c.log.ErrorContext(r.Context(), "console oidc start", "err", err)
		c.fail(w, r, http.StatusBadGateway, "The identity provider cannot be reached; try again shortly or sign in with a local account.")
		return
	}
	next := nextPath(r.URL.Query().Get("next"))
	c.setCookie(w, cookieOIDC, strings.Join([]string{state, nonce, verifier, url.QueryEscape(next)}, "."), Prefix+"/oidc/", 600)
	http.Redirect(w, r, to, http.StatusSeeOther)
}

// oidcCallback finishes a sign-in: the state must match the cookie's, the code is
// exchanged with the verifier, and the ID token's nonce must match.
func (c *Console) oidcCallback(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	if c.opts.OIDC == nil {
		c.fail(w, r, http.StatusNotFound, "Single sign-on is not configured.")
		return
	}
	ck, err := r.Cookie(cookieOIDC)
	c.setCookie(w, cookieOIDC, "", Prefix+"/oidc/", -1)
	q := r.URL.Query()
	if e := q.Get("error"); e != "" {
		c.fail(w, r, http.StatusUnauthorized, "The identity provider refused the sign-in: "+truncate(e, 64)+".")
		return
	}
	parts := []string{}
	if err == nil {
		parts = strings.Split(ck.Value, ".")
	}
	if len(parts) != 4 || !tokenEqual(q.Get("state"), parts[0]) {
		c.fail(w, r, http.StatusBadRequest, "This sign-in was not started here or has expired (state mismatch): start again.")
		return
	}
	id, err := c.opts.OIDC.Client.Exchange(r.Context(), q.Get("code"), parts[2], parts[1])
	if err != nil {
		c.log.WarnContext(r.Context(), "console oidc sign-in failed", "err", err)
		c.fail(w, r, http.StatusUnauthorized, "The sign-in could not be completed: the identity provider's answer was not accepted.")
		return
	}
	// An e-mail address grants a role only when the provider vouches for it: some
	// providers let users type any address.
	email := ""
	if id.EmailVerified {
		email = id.Email
	}
	role := c.oidcRole(email, id.Groups)
	who := id.Email
	if who == "" {
		who = id.Subject
	}
	if role == "" {
		c.log.WarnContext(r.Context(), "console oidc sign-in without a role", "user", who, "groups", id.Groups)
		c.fail(w, r, http.StatusForbidden, "You are signed in at the identity provider, but none of your groups has a console role.")
		return
	}
	if err := c.startSession(r.Context(), w, "oidc:"+who, role); err != nil {
		c.fail(w, r, http.StatusServiceUnavailable, "The session could not be stored; try again shortly.")
		return
	}
	c.log.InfoContext(r.Context(), "console sign-in", "user", "oidc:"+who, "role", role)
	next, _ := url.QueryUnescape(parts[3])
	http.Redirect(w, r, nextPath(next), http.StatusSeeOther)
}

// oidcRole is the highest role the user's e-mail address or groups map to, "" for none.
func (c *Console) oidcRole(email string, groups []string) Role {
	var best Role
	for role, list := range c.opts.OIDC.Roles {
		for _, g := range list {
			if (email != "" && strings.EqualFold(g, email)) || slices.Contains(groups, g) {
				if roleRank(role) > roleRank(best) {
					best = role
				}
			}
		}
	}
	return best
}

// loginLimiter counts failed sign-ins per name: after maxLoginFailures within
// loginWindow, the name is refused until the oldest failure leaves the window.
type loginLimiter struct {
	mu       sync.Mutex
	failures map[string][]time.Time
}

const (
	maxLoginFailures = 5
	loginWindow      = 15 * time.Minute
	maxTrackedNames  = 10000
)

func newLoginLimiter() *loginLimiter { return &loginLimiter{failures: map[string][]time.Time{}} }

func (l *loginLimiter) recent(name string, now time.Time) []time.Time {
	f := l.failures[name]
	for len(f) > 0 && now.Sub(f[0]) >= loginWindow {
		f = f[1:]
	}
	if len(f) == 0 {
		delete(l.failures, name)
		return nil
	}
	l.failures[name] = f
	return f
}

// blocked returns how long name must wait, 0 if it may try.
func (l *loginLimiter) blocked(name string, now time.Time) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	f := l.recent(name, now)
	if len(f) < maxLoginFailures {
		return 0
	}
	return loginWindow - now.Sub(f[0])
}

func (l *loginLimiter) fail(name string, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.failures) >= maxTrackedNames {
		for n := range l.failures {
			l.recent(n, now)
		}
		if len(l.failures) >= maxTrackedNames {
			return // under a flood of names, keep the ones tracked; each still has its bound
		}
	}
	l.failures[name] = append(l.recent(name, now), now)
}

func (l *loginLimiter) reset(name string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.failures, name)
}

// setFlash leaves a message for the next page.
func setFlash(w http.ResponseWriter, secure bool, msg string, isErr bool) {
	kind := "ok"
	if isErr {
		kind = "err"
	}
	http.SetCookie(w, &http.Cookie{Name: cookieFlash, Value: kind + ":" + url.QueryEscape(truncate(msg, 300)), Path: Prefix + "/",
		HttpOnly: true, Secure: secure, SameSite: http.SameSiteLaxMode, MaxAge: 60})
}

// takeFlash reads and clears the message left for this page.
func (c *Console) takeFlash(w http.ResponseWriter, r *http.Request) (string, bool) {
	ck, err := r.Cookie(cookieFlash)
	if err != nil {
		return "", false
	}
	if r.Header.Get("X-Console-Live") == "" {
		c.setCookie(w, cookieFlash, "", Prefix+"/", -1)
	} else {
		return "", false // a live refresh must not eat the message the page shows
	}
	kind, msg, _ := strings.Cut(ck.Value, ":")
	text, err := url.QueryUnescape(msg)
	if err != nil {
		return "", false
	}
	return truncate(text, 300), kind == "err"
}

func capitalize(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}
