package report_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/chaperone-dev/chaperone/internal/approval"
	"github.com/chaperone-dev/chaperone/internal/audit"
	"github.com/chaperone-dev/chaperone/internal/identity"
	"github.com/chaperone-dev/chaperone/internal/insight"
	"github.com/chaperone-dev/chaperone/internal/report"
	"github.com/chaperone-dev/chaperone/internal/sign"
	"github.com/chaperone-dev/chaperone/internal/store/sqlite"
	"github.com/chaperone-dev/chaperone/internal/testclock"
)

// t0 is the start of the report's window; the window is two hours.
var t0 = time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)

func at(minutes int) time.Time { return t0.Add(time.Duration(minutes) * time.Minute) }

// Values the report must never carry: a credential in a held call's arguments and an
// agent's secret hash.
const (
	argSecret   = "sk-live0123456789abcdefghijklmnop"
	agentSecret = "5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8"
	// hostilePurpose is an agent purpose an attacker who registered the agent chose.
	hostilePurpose = `<script>alert("purpose")</script><img src=x onerror=alert(1)>`
)

// fixture is a real SQLite store filled through the audit log, the approval manager and
// the agent store, as a gateway fills it.
type fixture struct {
	path string
	db   *sqlite.DB
	pub  ed25519.PublicKey
	// deny is the seq of the call.refused the policy denied, in the window.
	deny int64
}

// auditNotifier records approval requests and decisions in the audit log, as the
// gateway's does.
type auditNotifier struct {
	log   *audit.Log
	clock *testclock.Clock
}

func (n auditNotifier) Notify(ctx context.Context, ev approval.Event) error {
	r := ev.Request
	e := &audit.Event{Time: n.clock.Now(), Kind: ev.Kind, Approval: r.ID, Agent: r.Agent, User: r.User, Task: r.Task,
		Tool: r.Tool, Rules: r.Rules, PolicyVersion: r.PolicyVersion, Risk: r.Risk, Decision: string(r.Status)}
	if !r.DecidedAt.IsZero() && ev.Kind != approval.EventExpired {
		e.LatencyMicros = r.DecidedAt.Sub(r.CreatedAt).Microseconds()
	}
	if ev.Kind == approval.EventDenied {
		e.Reason = r.DenyCode
	}
	return n.log.Append(ctx, e)
}

func newFixture(tb testing.TB) *fixture {
	tb.Helper()
	ctx := tb.Context()
	f := &fixture{path: filepath.Join(tb.TempDir(), "chaperone.db")}
	db, err := sqlite.Open(ctx, f.path)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	f.db = db
	log, err := audit.NewLog(ctx, db, audit.LogOptions{})
	if err != nil {
		tb.Fatal(err)
	}
	defer func() {
		if err := log.Close(context.Background()); err != nil {
			tb.Fatal(err)
		}
	}()
	appendAt := func(min int, e audit.Event) int64 {
		tb.Helper()
		e.Time = at(min)
		if err := log.Append(ctx, &e); err != nil {
			tb.Fatalf("Append(%s): %v", e.Kind, err)
		}
		return e.Seq
	}

	for _, a := range []identity.AgentRecord{
		{Agent: identity.Agent{ID: "pay-bot", Owner: "ops@example.com", Purpose: hostilePurpose, Environment: "prod", Autonomy: 1,
			Status: identity.StatusActive, Capabilities: []string{"transfer_money"}}, SecretSHA256: agentSecret, CreatedAt: at(-300), UpdatedAt: at(-300)},
		{Agent: identity.Agent{ID: "mail-bot", Owner: "alice@example.com", Purpose: "Answers the support inbox", Environment: "prod", Autonomy: 2,
			Status: identity.StatusSuspended, Capabilities: []string{"*"}}, CreatedAt: at(-300), UpdatedAt: at(-300)},
	} {
		if err := db.PutAgent(ctx, a); err != nil {
			tb.Fatal(err)
		}
	}

	appendAt(-120, audit.Event{Kind: audit.KindPolicyLoaded, PolicyVersion: "sha256:v1"})
	appendAt(-60, audit.Event{Kind: audit.KindCallIntent, RequestID: "r0", Agent: "mail-bot", Decision: "allow", PolicyVersion: "sha256:v1"})

	clk := testclock.New(t0)
	m := approval.NewManager(approval.Options{Store: db, Notifiers: []approval.Notifier{auditNotifier{log, clk}}, Now: clk.Now})
	hold := func(min int, tool, args, undo string) *approval.Request {
		tb.Helper()
		clk.Set(at(min))
		r, _, err := m.Request(ctx, &approval.Request{Tool: tool, Upstream: "bank", Arguments: json.RawMessage(args),
			Agent: "pay-bot", User: "bob@example.com", Task: "t-7", Reason: "the invoice is due; key " + argSecret,
			Rules: []string{"payments-need-approval"}, PolicyVersion: "sha256:v1", Risk: 80, RiskFactors: []string{"amount", "external"}, Undo: undo})
		if err != nil {
			tb.Fatal(err)
		}
		return r
	}
	// Decided before the window: no letter.
	early := hold(-40, "transfer_money", `{"amount":5}`, "")
	clk.Set(at(-39))
	if _, err := m.Approve(ctx, early.ID, "carol"); err != nil {
		tb.Fatal(err)
	}

	appendAt(1, audit.Event{Kind: audit.KindCallIntent, RequestID: "r1", Agent: "mail-bot", Decision: "allow", PolicyVersion: "sha256:v1"})
	f.deny = appendAt(2, audit.Event{Kind: audit.KindCallRefused, RequestID: "r2", Agent: "pay-bot", Decision: "deny", Reason: "denied_by_policy",
		Rules: []string{"no-external"}, PolicyVersion: "sha256:v1"})

	paid := hold(5, "transfer_money", `{"amount":100,"to":"ACME","api_key":"`+argSecret+`"}`, "Refund it from the bank console within 24 hours.")
	clk.Set(at(6))
	if _, err := m.Approve(ctx, paid.ID, "carol"); err != nil {
		tb.Fatal(err)
	}
	clk.Set(at(7))
	if _, err := m.Consume(ctx, paid.ID, paid.CallHash); err != nil {
		tb.Fatal(err)
	}
	appendAt(7, audit.Event{Kind: audit.KindCallIntent, RequestID: "r5", Agent: "pay-bot", Decision: "approve", Approval: paid.ID, PolicyVersion: "sha256:v1"})

	declined := hold(10, "transfer_money", `{"amount":100000,"to":"ACME"}`, "")
	clk.Set(at(12))
	if _, err := m.Deny(ctx, declined.ID, "dave", "wrong_amount", "a thousand times the invoice"); err != nil {
		tb.Fatal(err)
	}
	mailed := hold(14, "send_email", `{"to":"ceo@example.com"}`, "")
	clk.Set(at(15))
	if _, err := m.Approve(ctx, mailed.ID, "carol"); err != nil {
		tb.Fatal(err)
	}

	appendAt(30, audit.Event{Kind: audit.KindPolicyLoaded, PolicyVersion: "sha256:v2"})
	appendAt(31, audit.Event{Kind: audit.KindCallIntent, RequestID: "r3", Agent: "mail-bot", Decision: "allow", PolicyVersion: "sha256:v2"})
	appendAt(40, audit.Event{Kind: audit.KindKillEngaged, Scope: "agent:pay-bot", Reason: "incident 7",
		Detail: "by alice; 2 calls in flight cancelled, 1 held approvals voided, contained in 3ms", LatencyMicros: 3000})
	appendAt(41, audit.Event{Kind: audit.KindKillLifted, Scope: "agent:pay-bot", Reason: "resolved", Detail: "by alice"})
	appendAt(42, audit.Event{Kind: audit.KindBreakerChanged, Agent: "mail-bot", Decision: "open", Reason: "denials", Detail: "5 denials in 1m"})
	head := appendAt(43, audit.Event{Kind: audit.KindAuthFailed, Decision: "refused", Reason: "unauthenticated"})
	// After the window: not counted.
	appendAt(180, audit.Event{Kind: audit.KindCallIntent, RequestID: "r4", Agent: "mail-bot", Decision: "allow", PolicyVersion: "sha256:v2"})

	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	f.pub = pub
	last, err := db.ScanEvents(ctx, head-1, 1)
	if err != nil || len(last) != 1 {
		tb.Fatalf("ScanEvents(%d, 1) = %v, %v", head-1, last, err)
	}
	cp, err := audit.SignCheckpoint(priv, head, last[0].Hash, at(50))
	if err != nil {
		tb.Fatal(err)
	}
	if err := db.SaveCheckpoint(ctx, cp); err != nil {
		tb.Fatal(err)
	}
	return f
}

// options are the report options over the fixture's window.
func (f *fixture) options() report.Options {
	return report.Options{From: t0, To: at(120), Store: f.db, Keys: []ed25519.PublicKey{f.pub},
		Now:   func() time.Time { return at(600) },
		Title: "Q1 evidence", Undo: map[string]string{"send_email": "Send a correction to the same recipients.", "transfer_money": "config undo"},
		// mail-bot is also registered: the registry's record wins over the declaration.
		Declared: []report.Agent{
			{ID: "mail-bot", Owner: "declared@example.com", Purpose: "stale declaration"},
			{ID: "audit-bot", Owner: "gov@example.com", Purpose: "Reads the audit log", Environment: "prod"},
		}}
}

func build(tb testing.TB, o report.Options) *report.Report {
	tb.Helper()
	r, err := report.Build(tb.Context(), o)
	if err != nil {
		tb.Fatalf("Build: %v", err)
	}
	return r
}

func render(tb testing.TB, r *report.Report) (js, page []byte) {
	tb.Helper()
	var j, h bytes.Buffer
	if err := r.WriteJSON(&j); err != nil {
		tb.Fatal(err)
	}
	if err := r.WriteHTML(&h); err != nil {
		tb.Fatal(err)
	}
	return j.Bytes(), h.Bytes()
}

func TestBuild(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	r := build(t, f.options())

	if r.Title != "Q1 evidence" || !r.GeneratedAt.Equal(at(600)) || !r.Window.From.Equal(t0) || !r.Window.To.Equal(at(120)) {
		t.Errorf("Build: title %q, generated %s, window %+v", r.Title, r.GeneratedAt, r.Window)
	}
	// Only the window's calls: r1, r2, r5, r3 — not r0 before it nor r4 after.
	wantDecisions := insight.Decisions{Allow: 2, Approve: 1, Deny: 1}
	if r.Figures.Decisions != wantDecisions || r.Figures.Calls != 4 {
		t.Errorf("Figures.Decisions = %+v (%d calls), want %+v (4 calls)", r.Figures.Decisions, r.Figures.Calls, wantDecisions)
	}
	if r.Figures.Approvals.Approved != 2 || r.Figures.Approvals.Denied != 1 || r.Figures.Approvals.Requested != 3 {
		t.Errorf("Figures.Approvals = %+v, want 3 requested, 2 approved, 1 denied", r.Figures.Approvals)
	}

	wantPolicies := []report.Policy{
		{Version: "sha256:v1", InForceAtStart: true, LoadedAt: at(-120), From: t0, Until: at(30), Calls: 3},
		{Version: "sha256:v2", LoadedAt: at(30), From: at(30), Until: at(120), Loads: 1, Calls: 1},
	}
	if diff := cmp.Diff(wantPolicies, r.Policies); diff != "" {
		t.Errorf("Policies (-want +got):\n%s", diff)
	}

	wantAgents := []report.Agent{
		{ID: "audit-bot", Owner: "gov@example.com", Purpose: "Reads the audit log", Environment: "prod", Source: "config"},
		{ID: "mail-bot", Owner: "alice@example.com", Purpose: "Answers the support inbox", Environment: "prod", Autonomy: 2, Status: "suspended", Source: "registry"},
		{ID: "pay-bot", Owner: "ops@example.com", Purpose: hostilePurpose, Environment: "prod", Autonomy: 1, Status: "active", Source: "registry"},
	}
	if diff := cmp.Diff(wantAgents, r.Agents); diff != "" {
		t.Errorf("Agents (-want +got):\n%s", diff)
	}

	if len(r.Containment.Kills) != 1 || len(r.Containment.Lifts) != 1 || len(r.Containment.BreakerTrips) != 1 {
		t.Fatalf("Containment = %+v, want one kill, one lift, one trip", r.Containment)
	}
	k := r.Containment.Kills[0]
	if !k.DetailParsed || k.By != "alice" || k.CallsCancelled != 2 || k.ApprovalsVoided != 1 || k.ContainSeconds != 0.003 || k.Scope != "agent:pay-bot" {
		t.Errorf("Containment.Kills[0] = %+v, want alice's kill of agent:pay-bot: 2 calls cancelled, 1 approval voided, 3ms", k)
	}
	if tr := r.Containment.BreakerTrips[0]; tr.Agent != "mail-bot" || tr.Signal != "denials" || !tr.Time.Equal(at(42)) {
		t.Errorf("BreakerTrips[0] = %+v", tr)
	}

	v := r.Verification
	if !v.OK || v.Broken != nil || v.CheckpointsMatched != 1 || v.Anchor == nil || v.NotCovered != 1 || v.Keys[0] != sign.KeyID(f.pub) {
		t.Errorf("Verification = %+v, want an intact chain anchored in the one checkpoint, 1 event after it", v)
	}
	if len(r.Checkpoints) != 1 || !r.Checkpoints[0].Verified || !r.Checkpoints[0].Time.Equal(at(50)) {
		t.Errorf("Checkpoints = %+v, want the one signed at %s, verified", r.Checkpoints, at(50))
	}
}

// The decision letters: one per request decided in the window, approved or declined,
// with who, when, why held, redacted arguments and how to undo.
func TestBuildLetters(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	r := build(t, f.options())
	if len(r.Letters) != 3 {
		t.Fatalf("Letters = %d, want 3 (the request decided before the window has none)", len(r.Letters))
	}
	paid, declined, mailed := r.Letters[0], r.Letters[1], r.Letters[2]

	if paid.Status != "used" || paid.Tool != "transfer_money" || paid.Agent != "pay-bot" || paid.User != "bob@example.com" || paid.Task != "t-7" ||
		len(paid.Approvers) != 1 || paid.Approvers[0].By != "carol" || !paid.Approvers[0].At.Equal(at(6)) ||
		!paid.RequestedAt.Equal(at(5)) || !paid.DecidedAt.Equal(at(6)) || !paid.UsedAt.Equal(at(7)) || paid.DecideSeconds != 60 {
		t.Errorf("letter of the approved payment = %+v", paid)
	}
	if paid.Undo != "Refund it from the bank console within 24 hours." || paid.UndoFrom != "request" {
		t.Errorf("approved payment's undo = %q from %q, want the request's", paid.Undo, paid.UndoFrom)
	}
	if !strings.Contains(string(paid.Arguments), `"api_key":"[redacted]"`) || strings.Contains(string(paid.Arguments), argSecret) {
		t.Errorf("approved payment's argument preview = %s, want the api key redacted", paid.Arguments)
	}
	if cmp.Diff([]string{"payments-need-approval"}, paid.Rules) != "" || paid.PolicyVersion != "sha256:v1" || paid.Risk != 80 {
		t.Errorf("approved payment held by %v of %s, risk %d", paid.Rules, paid.PolicyVersion, paid.Risk)
	}

	if declined.Status != "denied" || declined.DeniedBy != "dave" || declined.DenyCode != "wrong_amount" ||
		declined.DenyText != "a thousand times the invoice" || len(declined.Approvers) != 0 || !declined.DecidedAt.Equal(at(12)) {
		t.Errorf("letter of the declined payment = %+v", declined)
	}
	// No undo on the request: the configuration's.
	if declined.Undo != "config undo" || declined.UndoFrom != "config" {
		t.Errorf("declined payment's undo = %q from %q", declined.Undo, declined.UndoFrom)
	}
	if mailed.Status != "approved" || mailed.Undo != "Send a correction to the same recipients." || mailed.UndoFrom != "config" || !mailed.UsedAt.IsZero() {
		t.Errorf("letter of the approved mail = %+v", mailed)
	}

	o := f.options()
	o.Undo = nil
	if l := build(t, o).Letters[2]; l.Undo != report.NoUndo || l.UndoFrom != "none" {
		t.Errorf("without configured undo: %q from %q, want %q", l.Undo, l.UndoFrom, report.NoUndo)
	}

	_, page := render(t, r)
	for _, want := range []string{
		"On 2026-03-01 at 09:06:00 UTC, carol approved <code>transfer_money</code> (upstream bank) for agent <code>pay-bot</code> acting for bob@example.com in task <code>t-7</code>.",
		"The call ran once, at 2026-03-01 09:07:00 UTC.",
		"On 2026-03-01 at 09:12:00 UTC, dave declined <code>transfer_money</code>",
		"with reason <code>wrong_amount</code>: “a thousand times the invoice”. The call did not run.",
		"Reason held: rules payments-need-approval of policy <span class=\"hash\">sha256:v1</span>; risk 80 of 100 (amount, external).",
		"To undo: Refund it from the bank console within 24 hours.",
		"To undo: Send a correction to the same recipients. (from the gateway's configuration)",
	} {
		if !strings.Contains(string(page), want) {
			t.Errorf("HTML lacks %q", want)
		}
	}
}

// No secret reaches either file: not a credential in held arguments or the agent's stated
// reason, not an agent's secret hash.
func TestBuildNoSecrets(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	js, page := render(t, build(t, f.options()))
	for _, s := range []string{argSecret, agentSecret} {
		if bytes.Contains(js, []byte(s)) || bytes.Contains(page, []byte(s)) {
			t.Errorf("the report carries the secret %q", s)
		}
	}
}

// Two builds of the same store with the same options are byte-equal.
func TestBuildDeterministic(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	js1, page1 := render(t, build(t, f.options()))
	js2, page2 := render(t, build(t, f.options()))
	if !bytes.Equal(js1, js2) {
		t.Errorf("two builds differ in JSON:\n%s", cmp.Diff(string(js1), string(js2)))
	}
	if !bytes.Equal(page1, page2) {
		t.Errorf("two builds differ in HTML:\n%s", cmp.Diff(string(page1), string(page2)))
	}
}

// An event edited in the store makes the verification say the chain broke there; the
// report is still built.
func TestBuildTampered(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	// A forger turns the policy's denial into an allow, keeping the record canonical.
	res, err := f.db.SQL().ExecContext(t.Context(),
		`UPDATE audit_events SET event = replace(event, '"decision":"deny"', '"decision":"allow"') WHERE seq = ?`, f.deny)
	if n, _ := res.RowsAffected(); err != nil || n != 1 {
		t.Fatalf("tamper with event %d: %v (%d rows)", f.deny, err, n)
	}
	r := build(t, f.options())
	v := r.Verification
	if v.OK || v.Broken == nil || v.Broken.Seq != f.deny || !strings.Contains(v.Broken.Problem, "edited") || v.Events != f.deny-1 {
		t.Fatalf("Verification of a tampered log = %+v (broken %+v), want broken at event %d", v, v.Broken, f.deny)
	}
	_, page := render(t, r)
	want := "chain BROKEN at event " + strconv.FormatInt(f.deny, 10)
	if !strings.Contains(string(page), want) {
		t.Errorf("HTML of a tampered log lacks %q", want)
	}
}

// A record that is no longer canonical JSON cannot be read: the report is built, counts
// it, and the verification says the chain broke there.
func TestBuildUnreadableRecord(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	if _, err := f.db.SQL().ExecContext(t.Context(), `UPDATE audit_events SET event = event || ' ' WHERE seq = ?`, f.deny); err != nil {
		t.Fatal(err)
	}
	r := build(t, f.options())
	if r.Figures.Unreadable != 1 || r.Figures.Decisions.Deny != 0 || r.Verification.OK || r.Verification.Broken.Seq != f.deny {
		t.Errorf("report of a log with an unreadable record: unreadable %d, deny %d, verification %+v",
			r.Figures.Unreadable, r.Figures.Decisions.Deny, r.Verification)
	}
	if len(r.Notes) == 0 || !strings.Contains(strings.Join(r.Notes, " "), "could not be read") {
		t.Errorf("Notes = %q, want one about the unreadable record", r.Notes)
	}
}

// A log whose last record cannot be read is reported on with progress as without it:
// the total is then not known, and no error.
func TestBuildProgressUnreadableHead(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	head, ok, err := f.db.LastEvent(t.Context())
	if err != nil || !ok {
		t.Fatalf("LastEvent = %v, %v", ok, err)
	}
	if _, err := f.db.SQL().ExecContext(t.Context(), `UPDATE audit_events SET event = event || ' ' WHERE seq = ?`, head.Seq); err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.db.LastEvent(t.Context()); err == nil {
		t.Fatalf("LastEvent reads the damaged record: the test damages nothing")
	}
	plain, _ := render(t, build(t, f.options()))
	o := f.options()
	calls := 0
	o.Progress = func(report.Phase, int64, int64) { calls++ }
	with, _ := render(t, build(t, o))
	if !bytes.Equal(plain, with) || calls == 0 {
		t.Errorf("report with Progress (%d calls) differs from the one without:\n%s", calls, cmp.Diff(string(plain), string(with)))
	}
}

// Without a trusted key the checkpoints are not checked, and the report says so.
func TestBuildWithoutKeys(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	o := f.options()
	o.Keys = nil
	r := build(t, o)
	v := r.Verification
	if !v.OK || v.CheckpointsStored != 1 || v.CheckpointsChecked != 0 || v.Anchor != nil || len(v.Keys) != 0 {
		t.Errorf("Verification without keys = %+v", v)
	}
	if len(r.Checkpoints) != 1 || r.Checkpoints[0].Verified || r.Checkpoints[0].Problem == "" {
		t.Errorf("Checkpoints without keys = %+v, want not verified, with the reason", r.Checkpoints)
	}
	if !strings.Contains(strings.Join(r.Notes, " "), "No trusted key was given") {
		t.Errorf("Notes = %q, want one about the missing key", r.Notes)
	}
	// A key that did not sign the checkpoint: the chain cannot be trusted to its end.
	other, _, _ := ed25519.GenerateKey(rand.Reader)
	o.Keys = []ed25519.PublicKey{other}
	if v := build(t, o).Verification; v.OK || v.Broken == nil || !strings.Contains(v.Broken.Problem, "not trustworthy") {
		t.Errorf("Verification with a key that signed nothing = %+v, want the checkpoint reported untrustworthy", v)
	}
}

// The policy in force at the window's start is found even when it was loaded long before,
// beyond where the read for the window starts.
func TestBuildPolicyLoadedLongBefore(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "chaperone.db")
	db, err := sqlite.Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	log, err := audit.NewLog(t.Context(), db, audit.LogOptions{})
	if err != nil {
		t.Fatal(err)
	}
	evs := []audit.Event{{Time: at(-10000), Kind: audit.KindPolicyLoaded, PolicyVersion: "sha256:old"}}
	for i := range 1000 {
		evs = append(evs, audit.Event{Time: at(-5000 + i), Kind: audit.KindAuthFailed})
	}
	evs = append(evs, audit.Event{Time: at(1), Kind: audit.KindCallIntent, RequestID: "r", Decision: "allow", PolicyVersion: "sha256:old"})
	for i := range evs {
		if err := log.Append(t.Context(), &evs[i]); err != nil {
			t.Fatal(err)
		}
	}
	if err := log.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	r := build(t, report.Options{From: t0, To: at(60), Store: db, Now: func() time.Time { return at(60) }})
	want := []report.Policy{{Version: "sha256:old", InForceAtStart: true, LoadedAt: at(-10000), From: t0, Until: at(60), Calls: 1}}
	if diff := cmp.Diff(want, r.Policies); diff != "" {
		t.Errorf("Policies (-want +got):\n%s", diff)
	}
	if r.Title != report.DefaultTitle {
		t.Errorf("Title = %q, want the default", r.Title)
	}
}

// progressCall is one call of Options.Progress.
type progressCall struct {
	Phase       report.Phase
	Done, Total int64
}

// Progress is told of each phase from its start (0 read) to its end (every event read),
// in order and never going back; the report is the same as without it.
func TestBuildProgress(t *testing.T) {
	t.Parallel()
	db, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "chaperone.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	log, err := audit.NewLog(t.Context(), db, audit.LogOptions{})
	if err != nil {
		t.Fatal(err)
	}
	const events = 600
	for i := range events {
		e := audit.Event{Time: at(i / 10), Kind: audit.KindCallIntent, RequestID: "r" + strconv.Itoa(i), Agent: "mail-bot", Decision: "allow"}
		if err := log.Append(t.Context(), &e); err != nil {
			t.Fatal(err)
		}
	}
	if err := log.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	o := report.Options{From: t0, To: at(120), Store: db, Now: func() time.Time { return at(600) }}
	plain, _ := render(t, build(t, o))
	var got []progressCall
	o.Progress = func(p report.Phase, done, total int64) { got = append(got, progressCall{p, done, total}) }
	with, _ := render(t, build(t, o))
	if !bytes.Equal(plain, with) {
		t.Errorf("the report built with Progress differs:\n%s", cmp.Diff(string(plain), string(with)))
	}

	var phases []report.Phase
	last := map[report.Phase]progressCall{}
	for i, c := range got {
		if len(phases) == 0 || phases[len(phases)-1] != c.Phase {
			phases = append(phases, c.Phase)
			if c.Done != 0 {
				t.Errorf("phase %s starts at %d, want 0", c.Phase, c.Done)
			}
		} else if prev := got[i-1]; c.Done < prev.Done || c.Total != prev.Total {
			t.Errorf("Progress went from %+v to %+v", prev, c)
		}
		last[c.Phase] = c
	}
	if diff := cmp.Diff([]report.Phase{report.PhaseRead, report.PhaseVerify}, phases); diff != "" {
		t.Errorf("phases (-want +got):\n%s", diff)
	}
	// The window starts at the log's first event: both phases read all of it.
	for _, p := range []report.Phase{report.PhaseRead, report.PhaseVerify} {
		if want := (progressCall{p, events, events}); last[p] != want {
			t.Errorf("last Progress call of %s = %+v, want %+v", p, last[p], want)
		}
	}
	if len(got) < 6 {
		t.Errorf("Progress was called %d times (%+v), want several per phase over %d events", len(got), got, events)
	}
}

// An empty store gives an empty report, not an error.
func TestBuildEmpty(t *testing.T) {
	t.Parallel()
	db, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "chaperone.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	r := build(t, report.Options{From: t0, To: at(60), Store: db, Now: func() time.Time { return at(60) }})
	if r.Figures.Calls != 0 || len(r.Letters) != 0 || len(r.Policies) != 0 || !r.Verification.OK || r.Letters == nil || r.Notes == nil {
		t.Errorf("report of an empty store = %+v", r)
	}
	o := report.Options{From: t0, To: at(60), Store: db, Now: func() time.Time { return at(60) }}
	o.Progress = func(p report.Phase, done, total int64) {
		if done != 0 || total != 0 {
			t.Errorf("Progress(%s, %d, %d) on an empty store, want 0 of 0", p, done, total)
		}
	}
	build(t, o)
	js, page := render(t, r)
	if !bytes.Contains(js, []byte(`"decision_letters": []`)) || !bytes.Contains(page, []byte("No approval request was decided in this window.")) {
		t.Errorf("empty report renders without its empty lists:\n%s", js)
	}
}

func TestBuildOptions(t *testing.T) {
	t.Parallel()
	db, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "chaperone.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, tc := range []struct {
		name string
		o    report.Options
		want string
	}{
		{"no store", report.Options{From: t0, To: at(1)}, "no store"},
		{"no window", report.Options{Store: db}, "from and to are required"},
		{"from after to", report.Options{Store: db, From: at(2), To: at(1)}, "is not before to"},
		{"empty window", report.Options{Store: db, From: at(1), To: at(1)}, "is not before to"},
		{"long title", report.Options{Store: db, From: t0, To: at(1), Title: strings.Repeat("x", report.MaxTitle+1)}, "title of 201 bytes, at most 200"},
		{"bad key", report.Options{Store: db, From: t0, To: at(1), Keys: []ed25519.PublicKey{{1, 2, 3}}}, "key 1 is 3 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := report.Build(t.Context(), tc.o)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Build(%s) = %v, want an error with %q", tc.name, err, tc.want)
			}
		})
	}
}

// Every value in the HTML is escaped: an agent's purpose is text, not markup.
func TestHTMLEscapes(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	_, page := render(t, build(t, f.options()))
	for _, bad := range []string{"<script>alert", "<img"} {
		if bytes.Contains(page, []byte(bad)) {
			t.Errorf("HTML carries %q unescaped", bad)
		}
	}
	if !bytes.Contains(page, []byte("&lt;script&gt;alert(&#34;purpose&#34;)&lt;/script&gt;")) {
		t.Errorf("HTML lacks the hostile purpose, escaped")
	}
	// Self-contained: no script, nothing loaded from elsewhere.
	for _, bad := range []string{"<script", "<img", "<link", "<iframe", "http://", "https://", "@import", "url("} {
		if bytes.Contains(bytes.ReplaceAll(page, []byte(`xmlns="http://www.w3.org/2000/svg"`), nil), []byte(bad)) {
			t.Errorf("HTML holds %q: it must be self-contained, without script", bad)
		}
	}
}

func TestWrite(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	r := build(t, f.options())
	dir := filepath.Join(t.TempDir(), "out", "q1")
	if err := report.Write(dir, r); err != nil {
		t.Fatalf("Write: %v", err)
	}
	js, page := render(t, r)
	for name, want := range map[string][]byte{report.JSONFile: js, report.HTMLFile: page} {
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s: %v; content equal to the rendering: %v", name, err, bytes.Equal(got, want))
		}
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Errorf("Write left %d files in %s, want 2", len(entries), dir)
	}
	// Written again, the files are replaced whole.
	if err := report.Write(dir, r); err != nil {
		t.Fatalf("second Write: %v", err)
	}
}

// A directory that cannot take the files gets none of them, not even a partial one, and
// the error names the path.
func TestWriteFails(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	r := build(t, f.options())

	t.Run("directory under a file", func(t *testing.T) {
		t.Parallel()
		file := filepath.Join(t.TempDir(), "plain")
		if err := os.WriteFile(file, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		dir := filepath.Join(file, "out")
		err := report.Write(dir, r)
		if err == nil || !strings.Contains(err.Error(), dir) {
			t.Errorf("Write(%s) = %v, want an error naming it", dir, err)
		}
	})
	t.Run("file name taken by a directory", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		// report.html is a non-empty directory: the rename of the page fails after
		// report.json's temporary file is written.
		if err := os.MkdirAll(filepath.Join(dir, report.HTMLFile, "x"), 0o755); err != nil {
			t.Fatal(err)
		}
		err := report.Write(dir, r)
		if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, report.HTMLFile)) {
			t.Errorf("Write = %v, want an error naming %s", err, filepath.Join(dir, report.HTMLFile))
		}
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			if strings.HasSuffix(e.Name(), ".tmp") {
				t.Errorf("Write left the temporary file %s", e.Name())
			}
		}
	})
	t.Run("read-only directory", func(t *testing.T) {
		t.Parallel()
		if os.Geteuid() == 0 {
			t.Skip("root writes into read-only directories")
		}
		dir := t.TempDir()
		if err := os.Chmod(dir, 0o500); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Chmod(dir, 0o700) })
		err := report.Write(dir, r)
		if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, report.JSONFile)) {
			t.Errorf("Write into a read-only directory = %v, want an error naming %s", err, filepath.Join(dir, report.JSONFile))
		}
		if entries, _ := os.ReadDir(dir); len(entries) != 0 {
			t.Errorf("Write into a read-only directory left %d files", len(entries))
		}
	})
}
