package identity_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/chaperone-dev/chaperone/internal/identity"
)

// TestAuthenticator: every credential is checked completely on every request, and the
// agent's and task's current state decides — not what the token says.
func TestAuthenticator(t *testing.T) {
	e := newEnv(t)
	staticTok, staticSHA := identity.NewToken()
	dir := e.directory(t, identity.Registration{
		Agent:       identity.Agent{ID: "cfg-agent", Owner: "o", Environment: "dev", Capabilities: []string{"*"}, Status: identity.StatusActive},
		TokenSHA256: staticSHA,
	})
	static, err := identity.NewRegistry([]identity.Registration{{Agent: identity.Agent{ID: "cfg-agent"}, TokenSHA256: staticSHA}})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"planner", "helper", "revoked-one"} {
		pub, _, _ := ed25519.GenerateKey(rand.Reader)
		if _, err := dir.Register(t.Context(), identity.AgentSpec{Agent: identity.Agent{ID: id, Owner: "o", Purpose: "p", Environment: "dev", Capabilities: []string{"*"}}, PublicKey: pub}, "test"); err != nil {
			t.Fatalf("Register %s: %v", id, err)
		}
	}
	tasks, err := identity.NewTasks(t.Context(), identity.TasksOptions{Store: e.db, Audit: e.audit, Now: e.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	open, _ := tasks.Start(t.Context(), identity.TaskRecord{Agent: "planner", Tools: []string{"a"}, ExpiresAt: t0.Add(time.Hour)})
	ended, _ := tasks.Start(t.Context(), identity.TaskRecord{Agent: "planner", Tools: []string{"a"}, ExpiresAt: t0.Add(time.Hour)})
	if err := tasks.End(t.Context(), ended.ID, "test", "done"); err != nil {
		t.Fatal(err)
	}
	key, _ := identity.GenerateSigningKey(t0)
	ks, _ := identity.NewKeySet([]identity.SigningKey{key}, time.Hour)
	iss, err := identity.NewIssuer(identity.IssuerOptions{Issuer: "https://gw", Audience: "https://gw", Keys: func() *identity.KeySet { return ks }, Now: e.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	mint := func(c identity.Claims) string {
		if c.Expiry.IsZero() {
			c.Expiry = t0.Add(10 * time.Minute)
		}
		tok, err := iss.Mint(c)
		if err != nil {
			t.Fatalf("Mint: %v", err)
		}
		return tok
	}
	a := &identity.Authenticator{Static: static, Tokens: iss, Agents: dir, Tasks: tasks}

	good := mint(identity.Claims{Agent: "planner", Task: open.ID, Tools: []string{"a"}})
	delegated := mint(identity.Claims{Agent: "helper", Chain: []string{"planner", "helper"}, Depth: 1, Subject: "planner", Task: open.ID, Tools: []string{"a"}})
	revokedTok := mint(identity.Claims{Agent: "revoked-one", Task: open.ID, Tools: []string{"a"}})
	if err := dir.SetStatus(t.Context(), "revoked-one", identity.StatusRevoked, "compromised", "test"); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name   string
		header string
		want   identity.Failure // "" for success
	}{
		{"access token", "Bearer " + good, ""},
		{"delegated token", "Bearer " + delegated, ""},
		{"static token", "Bearer " + staticTok, ""},
		{"lower-case scheme", "bearer " + good, ""},
		{"missing", "", identity.FailureMissing},
		{"basic scheme", "Basic " + good, identity.FailureMalformed},
		{"oversized", "Bearer " + strings.Repeat("a", 20000), identity.FailureMalformed},
		{"unknown static token", "Bearer chp_nope", identity.FailureUnknown},
		{"tampered signature", "Bearer " + good[:len(good)-4] + "AAAA", identity.Failure(identity.ReasonBadSignature)},
		{"revoked agent", "Bearer " + revokedTok, identity.FailureAgentInactive},
		{"ended task", "Bearer " + mint(identity.Claims{Agent: "planner", Task: ended.ID, Tools: []string{"a"}}), identity.FailureTaskEnded},
		{"unknown task", "Bearer " + mint(identity.Claims{Agent: "planner", Task: "tsk_unknown", Tools: []string{"a"}}), identity.FailureTaskEnded},
		{"unregistered agent", "Bearer " + mint(identity.Claims{Agent: "ghost", Task: open.ID, Tools: []string{"a"}}), identity.FailureAgentInactive},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, f, err := a.Authenticate(tc.header)
			if tc.want == "" {
				if err != nil || p == nil || p.Agent == nil {
					t.Fatalf("Authenticate = %v, %q, %v; want a principal", p, f, err)
				}
				return
			}
			if !errors.Is(err, identity.ErrUnauthenticated) || f != tc.want {
				t.Errorf("Authenticate = %q, %v; want %q", f, err, tc.want)
			}
		})
	}

	// The principal carries the token's limits, and a parent's suspension stops its child.
	p, _, _ := a.Authenticate("Bearer " + delegated)
	if p.Agent.ID != "helper" || p.Task != open.ID || len(p.Chain) != 2 || p.TokenID == "" || p.Tools == nil {
		t.Errorf("delegated principal = %+v", p)
	}
	if p, _, _ := a.Authenticate("Bearer " + staticTok); p.Tools != nil || p.Task != "" {
		t.Errorf("static principal of an agent with every capability is limited: %+v", p)
	}
	// A static agent with declared capabilities is limited to them.
	limitedTok, limitedSHA := identity.NewToken()
	reg := identity.Registration{Agent: identity.Agent{ID: "cfg-limited", Owner: "o", Environment: "dev", Capabilities: []string{"read_file"}, Status: identity.StatusActive}, TokenSHA256: limitedSHA}
	dir2 := e.directory(t, reg)
	static2, _ := identity.NewRegistry([]identity.Registration{reg})
	a2 := &identity.Authenticator{Static: static2, Agents: dir2, Tasks: tasks}
	if p, _, err := a2.Authenticate("Bearer " + limitedTok); err != nil || len(p.Tools) != 1 || p.Tools[0] != "read_file" {
		t.Errorf("static agent with capabilities [read_file]: principal %+v, %v", p, err)
	}
	if err := dir.SetStatus(t.Context(), "planner", identity.StatusSuspended, "investigating", "test"); err != nil {
		t.Fatal(err)
	}
	if _, f, err := a.Authenticate("Bearer " + delegated); err == nil || f != identity.FailureAgentInactive {
		t.Errorf("child of a suspended parent = %q, %v; want agent_inactive", f, err)
	}
}
