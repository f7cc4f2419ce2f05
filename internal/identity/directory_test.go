package identity_test

import (
	"context"
	"crypto/ed25519"
	"errors"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/chaperone-dev/chaperone/internal/audit"
	"github.com/chaperone-dev/chaperone/internal/identity"
	"github.com/chaperone-dev/chaperone/internal/store/sqlite"
	"github.com/chaperone-dev/chaperone/internal/store/sqlite/sqlitetest"
	"github.com/chaperone-dev/chaperone/internal/testclock"
)

var t0 = time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)

// failingAudit is the real audit log, with failures on demand.
type failingAudit struct {
	log  *audit.Log
	fail atomic.Bool
}

var errAuditDown = errors.New("audit store unavailable")

func (f *failingAudit) Append(ctx context.Context, e *audit.Event) error {
	if f.fail.Load() {
		return errAuditDown
	}
	return f.log.Append(ctx, e)
}

// env is a real SQLite database and audit log in a temporary directory.
type env struct {
	db    *sqlite.DB
	audit *failingAudit
	clock *testclock.Clock
}

func newEnv(tb testing.TB) *env {
	tb.Helper()
	db, log := sqlitetest.Open(tb)
	return &env{db: db, audit: &failingAudit{log: log}, clock: testclock.New(t0)}
}

func (e *env) directory(tb testing.TB, static ...identity.Registration) *identity.Directory {
	tb.Helper()
	d, err := identity.NewDirectory(tb.Context(), identity.DirectoryOptions{Store: e.db, Audit: e.audit, Now: e.clock.Now, Static: static})
	if err != nil {
		tb.Fatalf("NewDirectory: %v", err)
	}
	return d
}

// events returns the kind and agent of every audit event so far.
func (e *env) events(tb testing.TB) []audit.Event {
	tb.Helper()
	evs, err := e.db.TailEvents(tb.Context(), 1000)
	if err != nil {
		tb.Fatalf("TailEvents: %v", err)
	}
	return evs
}

func validSpec(id string) identity.AgentSpec {
	return identity.AgentSpec{
		Agent: identity.Agent{
			ID: id, Owner: "alice@example.com", Purpose: "sorts mail", Environment: "prod",
			Capabilities: []string{"read_file", "send_email"}, Autonomy: 2,
			Labels: map[string]string{"team": "support"},
		},
		WithSecret: true,
	}
}

var staticAgent = identity.Registration{
	Agent:       identity.Agent{ID: "config-bot", Owner: "ops@example.com", Environment: "dev", Capabilities: []string{"*"}},
	TokenSHA256: identity.HashToken("chp_static"),
}

func TestRegisterInvalid(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	d := e.directory(t)
	key := make(ed25519.PublicKey, ed25519.PublicKeySize)
	tests := []struct {
		name   string
		mutate func(*identity.AgentSpec)
		by     string
		want   string
	}{
		{"empty id", func(s *identity.AgentSpec) { s.Agent.ID = "" }, "alice", `id: must match ^[a-z0-9][a-z0-9._-]{0,63}$, got ""`},
		{"upper-case id", func(s *identity.AgentSpec) { s.Agent.ID = "Bot" }, "alice", `id: must match`},
		{"long id", func(s *identity.AgentSpec) { s.Agent.ID = strings.Repeat("a", 65) }, "alice", `id: must match`},
		{"no owner", func(s *identity.AgentSpec) { s.Agent.Owner = " " }, "alice", "owner: is required"},
		{"long owner", func(s *identity.AgentSpec) { s.Agent.Owner = strings.Repeat("o", 257) }, "alice", "owner: at most 256 bytes, got 257"},
		{"control in purpose", func(s *identity.AgentSpec) { s.Agent.Purpose = "a\nb" }, "alice", "purpose: must be printable UTF-8"},
		{"bad environment", func(s *identity.AgentSpec) { s.Agent.Environment = "staging" }, "alice", `environment: must be dev, test or prod, got "staging"`},
		{"negative autonomy", func(s *identity.AgentSpec) { s.Agent.Autonomy = -1 }, "alice", "autonomy: must be between 0 and 3, got -1"},
		{"autonomy 4", func(s *identity.AgentSpec) { s.Agent.Autonomy = 4 }, "alice", "autonomy: must be between 0 and 3, got 4"},
		{"no capabilities", func(s *identity.AgentSpec) { s.Agent.Capabilities = nil }, "alice", `capabilities: must not be empty (use "*" for any tool)`},
		{"bad capability", func(s *identity.AgentSpec) { s.Agent.Capabilities = []string{"ok", "rm -rf"} }, "alice", `capabilities[1]: must be "*" or a tool name`},
		{"duplicate capability", func(s *identity.AgentSpec) { s.Agent.Capabilities = []string{"a", "a"} }, "alice", `capabilities[1]: duplicate "a"`},
		{"bad label key", func(s *identity.AgentSpec) { s.Agent.Labels = map[string]string{"Team": "x"} }, "alice", `labels: key must match ^[a-z0-9_.-]{1,63}$, got "Team"`},
		{"long label value", func(s *identity.AgentSpec) { s.Agent.Labels = map[string]string{"team": strings.Repeat("v", 257)} }, "alice", "labels.team: must be valid UTF-8 of at most 256 bytes, got 257 bytes"},
		{"too many labels", func(s *identity.AgentSpec) {
			s.Agent.Labels = map[string]string{}
			for i := range 33 {
				s.Agent.Labels[strings.Repeat("k", i+1)] = "v"
			}
		}, "alice", "labels: at most 32 labels, got 33"},
		{"short key", func(s *identity.AgentSpec) { s.PublicKey = key[:31] }, "alice", "public_key: must be a 32-byte Ed25519 key, got 31 bytes"},
		{"no credential", func(s *identity.AgentSpec) { s.WithSecret = false }, "alice", "credential: give a public key or ask for a secret"},
		{"no by", func(s *identity.AgentSpec) {}, "", "by: is required"},
		{"long by", func(s *identity.AgentSpec) {}, strings.Repeat("b", 129), "by: at most 128 bytes, got 129"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := validSpec("mail")
			tt.mutate(&spec)
			secret, err := d.Register(t.Context(), spec, tt.by)
			var ve *identity.ValidationError
			if !errors.As(err, &ve) || !strings.Contains(err.Error(), tt.want) || secret != "" {
				t.Errorf("Register(%s) = %q, %v; want a ValidationError containing %q", tt.name, secret, err, tt.want)
			}
		})
	}
	if got := d.List(); len(got) != 0 {
		t.Errorf("List after invalid registrations = %v, want none", got)
	}
	if got := e.events(t); len(got) != 0 {
		t.Errorf("audit events after invalid registrations = %d, want none", len(got))
	}
}

func TestRegisterReportsEveryProblem(t *testing.T) {
	t.Parallel()
	d := newEnv(t).directory(t)
	_, err := d.Register(t.Context(), identity.AgentSpec{Agent: identity.Agent{Autonomy: 9}}, "")
	var ve *identity.ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("Register(empty) = %v, want a ValidationError", err)
	}
	var fields []string
	for _, p := range ve.Problems {
		f, _, _ := strings.Cut(p, ":")
		fields = append(fields, f)
	}
	want := []string{"id", "owner", "environment", "autonomy", "capabilities", "credential", "by"}
	if diff := cmp.Diff(want, fields); diff != "" {
		t.Errorf("Register(empty) problem fields (-want +got):\n%s", diff)
	}
}

func TestRegister(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	d := e.directory(t, staticAgent)
	pub, _, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}

	secret, err := d.Register(t.Context(), validSpec("mail"), "alice")
	if err != nil {
		t.Fatalf("Register(mail): %v", err)
	}
	if !regexp.MustCompile(`^chs_[A-Za-z0-9_-]{43}$`).MatchString(secret) {
		t.Errorf("Register(mail) secret = %q, want chs_ and 43 base64url characters", secret)
	}
	keySpec := validSpec("signer")
	keySpec.WithSecret, keySpec.PublicKey = false, pub
	if s, err := d.Register(t.Context(), keySpec, "bob"); err != nil || s != "" {
		t.Fatalf("Register(signer) = %q, %v; want no secret, nil", s, err)
	}

	for _, tt := range []struct {
		id, secret string
		want       bool
	}{
		{"mail", "", false},
		{"mail", secret + "x", false},
		{"mail", strings.Repeat("x", identity.MaxTokenBytes+1), false},
		{"nobody", secret, false},
		{"signer", secret, false},           // no secret
		{"config-bot", "chp_static", false}, // declared agents use their static token
		{"mail", secret, true},
	} {
		if got := d.VerifySecret(tt.id, tt.secret); got != tt.want {
			t.Errorf("VerifySecret(%q, %q) = %v, want %v", tt.id, tt.secret, got, tt.want)
		}
	}
	if k, ok := d.PublicKey("signer"); !ok || !k.Equal(pub) {
		t.Errorf("PublicKey(signer) = %x, %v; want %x, true", k, ok, pub)
	}
	for _, id := range []string{"mail", "nobody", "config-bot"} {
		if k, ok := d.PublicKey(id); ok {
			t.Errorf("PublicKey(%q) = %x, true; want none", id, k)
		}
	}
	if a, ok := d.Agent("mail"); !ok || a.Status != identity.StatusActive || a.Owner != "alice@example.com" {
		t.Errorf("Agent(mail) = %+v, %v; want the active agent", a, ok)
	}

	wantList := []identity.AgentRecord{
		{Agent: identity.Agent{ID: "config-bot", Owner: "ops@example.com", Environment: "dev", Capabilities: []string{"*"}, Status: identity.StatusActive}, Declared: true},
		{Agent: withStatus(validSpec("mail").Agent, identity.StatusActive), SecretSHA256: identity.HashToken(secret), CreatedAt: t0, UpdatedAt: t0},
		{Agent: withStatus(keySpec.Agent, identity.StatusActive), PublicKey: pub, CreatedAt: t0, UpdatedAt: t0},
	}
	if diff := cmp.Diff(wantList, d.List()); diff != "" {
		t.Errorf("List (-want +got):\n%s", diff)
	}
	// A reopened directory reads the same agents back from the store.
	if diff := cmp.Diff(wantList, e.directory(t, staticAgent).List()); diff != "" {
		t.Errorf("List after reopening (-want +got):\n%s", diff)
	}
	// List hands out copies.
	l := d.List()
	l[1].Agent.Capabilities[0], l[1].Agent.Labels["team"] = "changed", "changed"
	if diff := cmp.Diff(wantList, d.List()); diff != "" {
		t.Errorf("List after modifying a copy (-want +got):\n%s", diff)
	}

	evs := e.events(t)
	if len(evs) != 2 || evs[0].Kind != audit.KindAgentRegistered || evs[0].Agent != "mail" ||
		evs[0].Detail != "owner=alice@example.com env=prod capabilities=read_file,send_email autonomy=2 secret=true public_key=false by=alice" {
		t.Errorf("audit events = %+v, want agent.registered for mail then signer", evs)
	}
	for _, ev := range evs {
		if strings.Contains(ev.Detail+ev.Message, secret) {
			t.Errorf("audit event %d holds the secret", ev.Seq)
		}
	}
}

func withStatus(a identity.Agent, s identity.Status) identity.Agent {
	a.Status = s
	return a
}

func TestRegisterExists(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	d := e.directory(t, staticAgent)
	if _, err := d.Register(t.Context(), validSpec("mail"), "alice"); err != nil {
		t.Fatalf("Register(mail): %v", err)
	}
	if err := d.SetStatus(t.Context(), "mail", identity.StatusRevoked, "gone", "alice"); err != nil {
		t.Fatalf("SetStatus(mail, revoked): %v", err)
	}
	for _, id := range []string{"mail", "config-bot"} {
		if s, err := d.Register(t.Context(), validSpec(id), "alice"); !errors.Is(err, identity.ErrAgentExists) || s != "" {
			t.Errorf("Register(%q) again = %q, %v; want ErrAgentExists", id, s, err)
		}
	}
	// The store refuses a duplicate on its own too.
	if err := e.db.PutAgent(t.Context(), identity.AgentRecord{Agent: withStatus(validSpec("mail").Agent, identity.StatusActive)}); !errors.Is(err, identity.ErrAgentExists) {
		t.Errorf("PutAgent(mail) again = %v, want ErrAgentExists", err)
	}
}

func TestNewDirectoryCollision(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	if _, err := e.directory(t).Register(t.Context(), validSpec("config-bot"), "alice"); err != nil {
		t.Fatalf("Register: %v", err)
	}
	_, err := identity.NewDirectory(t.Context(), identity.DirectoryOptions{Store: e.db, Audit: e.audit, Static: []identity.Registration{staticAgent}})
	if err == nil || !strings.Contains(err.Error(), `stored agent "config-bot" is also declared in the configuration`) {
		t.Errorf("NewDirectory with a colliding static agent = %v, want an error naming it", err)
	}
	_, err = identity.NewDirectory(t.Context(), identity.DirectoryOptions{Store: e.db, Audit: e.audit, Static: []identity.Registration{{Agent: identity.Agent{ID: "x"}}, {Agent: identity.Agent{ID: "x"}}}})
	if err == nil || !strings.Contains(err.Error(), `agent "x" declared twice`) {
		t.Errorf("NewDirectory with a duplicate static agent = %v, want an error naming it", err)
	}
	if _, err := identity.NewDirectory(t.Context(), identity.DirectoryOptions{Store: e.db}); err == nil {
		t.Error("NewDirectory without audit succeeded, want an error")
	}
}

func TestSetStatus(t *testing.T) {
	t.Parallel()
	type step struct {
		to     identity.Status
		reason string
		by     string
	}
	tests := []struct {
		name    string
		id      string
		before  []identity.Status // applied first, each must succeed
		step    step
		wantErr error  // sentinel, or nil
		wantMsg string // for validation errors
		want    identity.Status
	}{
		{name: "unknown agent", id: "nobody", step: step{identity.StatusSuspended, "r", "op"}, wantErr: identity.ErrUnknownAgent},
		{name: "declared agent", id: "config-bot", step: step{identity.StatusSuspended, "r", "op"}, wantErr: identity.ErrDeclaredAgent},
		{name: "resume revoked", id: "mail", before: []identity.Status{identity.StatusRevoked}, step: step{identity.StatusActive, "", "op"}, wantErr: identity.ErrAgentRevoked, want: identity.StatusRevoked},
		{name: "suspend revoked", id: "mail", before: []identity.Status{identity.StatusRevoked}, step: step{identity.StatusSuspended, "r", "op"}, wantErr: identity.ErrAgentRevoked, want: identity.StatusRevoked},
		{name: "revoke revoked", id: "mail", before: []identity.Status{identity.StatusRevoked}, step: step{identity.StatusRevoked, "r", "op"}, wantErr: identity.ErrAgentRevoked, want: identity.StatusRevoked},
		{name: "suspend suspended", id: "mail", before: []identity.Status{identity.StatusSuspended}, step: step{identity.StatusSuspended, "r", "op"}, wantErr: identity.ErrStatusUnchanged, want: identity.StatusSuspended},
		{name: "resume active", id: "mail", step: step{identity.StatusActive, "", "op"}, wantErr: identity.ErrStatusUnchanged, want: identity.StatusActive},
		{name: "suspend without reason", id: "mail", step: step{identity.StatusSuspended, "", "op"}, wantMsg: "reason: is required", want: identity.StatusActive},
		{name: "revoke without reason", id: "mail", step: step{identity.StatusRevoked, " ", "op"}, wantMsg: "reason: is required", want: identity.StatusActive},
		{name: "without by", id: "mail", step: step{identity.StatusSuspended, "r", ""}, wantMsg: "by: is required", want: identity.StatusActive},
		{name: "long reason", id: "mail", step: step{identity.StatusSuspended, strings.Repeat("r", 1025), "op"}, wantMsg: "reason: at most 1024 bytes, got 1025", want: identity.StatusActive},
		{name: "unknown status", id: "mail", step: step{"paused", "r", "op"}, wantMsg: `status: must be active, suspended or revoked, got "paused"`, want: identity.StatusActive},
		{name: "suspend", id: "mail", step: step{identity.StatusSuspended, "looping", "op"}, want: identity.StatusSuspended},
		{name: "resume", id: "mail", before: []identity.Status{identity.StatusSuspended}, step: step{identity.StatusActive, "", "op"}, want: identity.StatusActive},
		{name: "revoke active", id: "mail", step: step{identity.StatusRevoked, "key leaked", "op"}, want: identity.StatusRevoked},
		{name: "revoke suspended", id: "mail", before: []identity.Status{identity.StatusSuspended}, step: step{identity.StatusRevoked, "key leaked", "op"}, want: identity.StatusRevoked},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			d := e.directory(t, staticAgent)
			secret, err := d.Register(t.Context(), validSpec("mail"), "alice")
			if err != nil {
				t.Fatalf("Register: %v", err)
			}
			for _, s := range tt.before {
				if err := d.SetStatus(t.Context(), "mail", s, "setup", "op"); err != nil {
					t.Fatalf("SetStatus(mail, %s): %v", s, err)
				}
			}
			nEvents := len(e.events(t))
			e.clock.Advance(time.Minute)
			err = d.SetStatus(t.Context(), tt.id, tt.step.to, tt.step.reason, tt.step.by)
			switch {
			case tt.wantErr != nil:
				if !errors.Is(err, tt.wantErr) {
					t.Errorf("SetStatus(%q, %q) = %v, want %v", tt.id, tt.step.to, err, tt.wantErr)
				}
			case tt.wantMsg != "":
				var ve *identity.ValidationError
				if !errors.As(err, &ve) || !strings.Contains(err.Error(), tt.wantMsg) {
					t.Errorf("SetStatus(%q, %q) = %v, want a ValidationError containing %q", tt.id, tt.step.to, err, tt.wantMsg)
				}
			case err != nil:
				t.Fatalf("SetStatus(%q, %q) = %v, want nil", tt.id, tt.step.to, err)
			}
			if tt.want == "" {
				return
			}
			a, _ := d.Agent("mail")
			if a.Status != tt.want {
				t.Errorf("Agent(mail).Status = %q, want %q", a.Status, tt.want)
			}
			if got, want := d.VerifySecret("mail", secret), tt.want == identity.StatusActive; got != want {
				t.Errorf("VerifySecret(mail) = %v with status %s, want %v", got, tt.want, want)
			}
			// The store agrees.
			rec, _ := e.directory(t, staticAgent).Record("mail")
			if rec.Agent.Status != tt.want {
				t.Errorf("stored status = %q, want %q", rec.Agent.Status, tt.want)
			}
			evs := e.events(t)
			if tt.wantErr != nil || tt.wantMsg != "" {
				if len(evs) != nEvents {
					t.Errorf("refused SetStatus wrote %d audit events", len(evs)-nEvents)
				}
				return
			}
			last := evs[len(evs)-1]
			kind := map[identity.Status]string{identity.StatusSuspended: audit.KindAgentSuspended, identity.StatusActive: audit.KindAgentResumed, identity.StatusRevoked: audit.KindAgentRevoked}[tt.want]
			if last.Kind != kind || last.Agent != "mail" || last.Reason != tt.step.reason || !strings.HasSuffix(last.Detail, "to="+string(tt.want)+" by=op") {
				t.Errorf("last audit event = %+v, want %s of mail by op", last, kind)
			}
			if rec.UpdatedAt != t0.Add(time.Minute) || rec.StatusReason != tt.step.reason {
				t.Errorf("stored updated_at, reason = %v, %q; want %v, %q", rec.UpdatedAt, rec.StatusReason, t0.Add(time.Minute), tt.step.reason)
			}
		})
	}
}

func TestSetStatusAuditFailureStillSuspends(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	d := e.directory(t)
	secret, err := d.Register(t.Context(), validSpec("mail"), "alice")
	if err != nil {
		t.Fatalf("Register: %v", err)
	}
	e.audit.fail.Store(true)
	err = d.SetStatus(t.Context(), "mail", identity.StatusSuspended, "exfiltrating", "op")
	if !errors.Is(err, identity.ErrNotAudited) || !errors.Is(err, errAuditDown) {
		t.Errorf("SetStatus with audit down = %v, want ErrNotAudited wrapping the audit error", err)
	}
	if a, _ := d.Agent("mail"); a.Status != identity.StatusSuspended {
		t.Errorf("Agent(mail).Status = %q after unaudited suspension, want suspended", a.Status)
	}
	if d.VerifySecret("mail", secret) {
		t.Error("VerifySecret(mail) = true after unaudited suspension")
	}
	if rec, _ := e.directory(t).Record("mail"); rec.Agent.Status != identity.StatusSuspended {
		t.Errorf("stored status = %q after unaudited suspension, want suspended", rec.Agent.Status)
	}
}

func TestRegisterAuditFailureRevokes(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	d := e.directory(t)
	e.audit.fail.Store(true)
	secret, err := d.Register(t.Context(), validSpec("mail"), "alice")
	if !errors.Is(err, errAuditDown) || secret != "" {
		t.Errorf("Register with audit down = %q, %v; want no secret and the audit error", secret, err)
	}
	for name, dir := range map[string]*identity.Directory{"memory": d, "store": e.directory(t)} {
		if a, ok := dir.Agent("mail"); !ok || a.Status != identity.StatusRevoked {
			t.Errorf("%s: Agent(mail) = %+v, %v; want revoked", name, a, ok)
		}
	}
	e.audit.fail.Store(false)
	if _, err := d.Register(t.Context(), validSpec("mail"), "alice"); !errors.Is(err, identity.ErrAgentExists) {
		t.Errorf("Register(mail) after failed registration = %v, want ErrAgentExists", err)
	}
}

// TestSuspensionVisibleAtOnce checks that every read that starts after SetStatus returns
// sees the suspension, while readers run concurrently (run with -race).
func TestSuspensionVisibleAtOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	d := e.directory(t)
	secret, err := d.Register(t.Context(), validSpec("mail"), "alice")
	if err != nil {
		t.Fatalf("Register: %v", err)
	}
	var (
		suspended atomic.Bool // set once SetStatus has returned
		stop      atomic.Bool
		stale     atomic.Int64 // reads after the suspension that saw the agent active
		reads     atomic.Int64
		wg        sync.WaitGroup
	)
	for range 8 {
		wg.Go(func() {
			for !stop.Load() {
				after := suspended.Load()
				a, ok := d.Agent("mail")
				active := ok && a.Status == identity.StatusActive
				verified := d.VerifySecret("mail", secret)
				if after && (active || verified) {
					stale.Add(1)
				}
				reads.Add(1)
			}
		})
	}
	// Let the readers run against the active agent first.
	for reads.Load() < 1000 {
		runtime.Gosched()
	}
	if err := d.SetStatus(t.Context(), "mail", identity.StatusSuspended, "incident", "op"); err != nil {
		stop.Store(true)
		wg.Wait()
		t.Fatalf("SetStatus: %v", err)
	}
	suspended.Store(true)
	for n := reads.Load(); reads.Load() < n+10000; {
		runtime.Gosched()
	}
	stop.Store(true)
	wg.Wait()
	if n := stale.Load(); n != 0 {
		t.Errorf("%d reads after SetStatus returned saw the agent active", n)
	}
}
