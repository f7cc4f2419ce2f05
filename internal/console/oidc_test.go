package console_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/chaperone-dev/chaperone/internal/console"
	"github.com/chaperone-dev/chaperone/internal/console/oidc"
	"github.com/chaperone-dev/chaperone/internal/console/oidc/oidctest"
)

// oidcFixture is a console that signs in through the test OpenID provider.
func oidcFixture(t *testing.T) (*fixture, *oidctest.Provider) {
	t.Helper()
	idp := oidctest.New(t)
	f := newFixture(t, func(o *console.Options) {
		redirect := o.PublicURL + "/console/oidc/callback"
		idp.AddClient("console", "s3cret-client", redirect)
		c, err := oidc.New(oidc.Config{Issuer: idp.Issuer(), ClientID: "console", ClientSecret: "s3cret-client", RedirectURL: redirect})
		if err != nil {
			t.Fatal(err)
		}
		o.OIDC = &console.OIDC{Client: c, Roles: map[console.Role][]string{
			console.RoleViewer:   {"staff"},
			console.RoleApprover: {"finance-approvers"},
			console.RoleAdmin:    {"root@example.com"},
		}}
	})
	return f, idp
}

// ssoSignIn follows the sign-in through the provider and returns the callback's answer.
func (b *browser) ssoSignIn(next string) page {
	b.t.Helper()
	start := b.get("/console/oidc/start?next=" + url.QueryEscape(next))
	if start.status != http.StatusSeeOther {
		b.t.Fatalf("oidc start: %d %s", start.status, start.body)
	}
	req, _ := http.NewRequest(http.MethodGet, start.location, nil)
	auth := b.do(req)
	if auth.status != http.StatusFound && auth.status != http.StatusSeeOther {
		b.t.Fatalf("authorize: %d %s", auth.status, auth.body)
	}
	req, _ = http.NewRequest(http.MethodGet, auth.location, nil)
	return b.do(req)
}

func TestSingleSignOnGivesTheRoleOfTheGroups(t *testing.T) {
	f, idp := oidcFixture(t)

	idp.SetUser("u-1", "ann@example.com", "staff", "finance-approvers")
	b := f.browser()
	p := b.ssoSignIn("/console/audit")
	if p.status != http.StatusSeeOther || p.location != "/console/audit" {
		t.Fatalf("callback: %d %q %s", p.status, p.location, p.body)
	}
	if p := b.get("/console/audit"); p.status != http.StatusOK || !strings.Contains(p.body, "oidc:ann@example.com") || !strings.Contains(p.body, ">approver<") {
		t.Fatalf("signed-in page: %d", p.status)
	}
	// An approver, not an operator: the kill switch is refused.
	if p := b.post("/console/kill", url.Values{"csrf": {b.csrf("/console/audit")}, "scope": {"all"}, "reason": {"r"}, "confirm": {"yes"}}); p.status != http.StatusForbidden {
		t.Fatalf("approver pulling the kill switch: %d", p.status)
	}

	// The e-mail address maps to admin.
	idp.SetUser("u-2", "root@example.com")
	a := f.browser()
	if p := a.ssoSignIn("/console/users"); p.status != http.StatusSeeOther {
		t.Fatalf("admin callback: %d", p.status)
	}
	if p := a.get("/console/users"); p.status != http.StatusOK {
		t.Fatalf("admin by e-mail: users page %d", p.status)
	}

	// No group with a role: refused.
	idp.SetUser("u-3", "zed@example.com", "contractors")
	z := f.browser()
	if p := z.ssoSignIn("/console/approvals"); p.status != http.StatusForbidden || !strings.Contains(p.body, "none of your groups has a console role") {
		t.Fatalf("no role: %d", p.status)
	}
	if p := z.get("/console/approvals"); p.status != http.StatusSeeOther {
		t.Fatalf("a user without a role got a session: %d", p.status)
	}
}

func TestSingleSignOnRefusesForgedCallbacks(t *testing.T) {
	f, idp := oidcFixture(t)
	idp.SetUser("u-1", "ann@example.com", "staff")

	// A callback this browser did not start (login CSRF): no state cookie.
	victim := f.browser()
	attacker := f.browser()
	start := attacker.get("/console/oidc/start")
	req, _ := http.NewRequest(http.MethodGet, start.location, nil)
	auth := attacker.do(req)
	req, _ = http.NewRequest(http.MethodGet, auth.location, nil)
	if p := victim.do(req); p.status != http.StatusBadRequest || !strings.Contains(p.body, "state mismatch") {
		t.Fatalf("foreign callback: %d", p.status)
	}
	// A state that does not match the cookie's.
	b := f.browser()
	start = b.get("/console/oidc/start")
	req, _ = http.NewRequest(http.MethodGet, start.location, nil)
	auth = b.do(req)
	u, _ := url.Parse(auth.location)
	q := u.Query()
	q.Set("state", "tampered")
	u.RawQuery = q.Encode()
	req, _ = http.NewRequest(http.MethodGet, u.String(), nil)
	if p := b.do(req); p.status != http.StatusBadRequest {
		t.Fatalf("tampered state: %d", p.status)
	}
	// The provider's error is shown, not a session.
	req, _ = http.NewRequest(http.MethodGet, f.srv.URL+"/console/oidc/callback?error=access_denied&state=x", nil)
	if p := b.do(req); p.status != http.StatusUnauthorized {
		t.Fatalf("provider error: %d", p.status)
	}
	// An ID token for another audience is refused.
	idp.Tamper(func(c map[string]any) { c["aud"] = "another-client" })
	if p := f.browser().ssoSignIn("/console/approvals"); p.status != http.StatusUnauthorized {
		t.Fatalf("wrong audience: %d", p.status)
	}
	// An unverified e-mail address grants nothing, even one mapped to admin.
	idp.SetUser("u-9", "root@example.com")
	idp.Tamper(func(c map[string]any) { c["email_verified"] = false })
	if p := f.browser().ssoSignIn("/console/approvals"); p.status != http.StatusForbidden {
		t.Fatalf("unverified e-mail mapped to admin: %d", p.status)
	}
	if n, _ := f.db.Console().PruneSessions(context.Background(), f.clock.Now().Add(24*365*3600e9), f.clock.Now()); n != 0 {
		t.Fatalf("refused sign-ins left %d sessions", n)
	}
}
