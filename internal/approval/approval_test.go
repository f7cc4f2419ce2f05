package approval_test

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/chaperone-dev/chaperone/internal/approval"
	"github.com/chaperone-dev/chaperone/internal/store/sqlite"
	"github.com/chaperone-dev/chaperone/internal/store/sqlite/sqlitetest"
	"github.com/chaperone-dev/chaperone/internal/testclock"
)

var t0 = time.Date(2026, 3, 1, 9, 0, 7, 123456000, time.UTC)

// recorder is a Notifier that records events; it fails with err if set.
type recorder struct {
	err    error
	mu     sync.Mutex
	events []approval.Event
	ch     chan approval.Event
}

func newRecorder() *recorder { return &recorder{ch: make(chan approval.Event, 100)} }

func (r *recorder) Notify(ctx context.Context, ev approval.Event) error {
	r.mu.Lock()
	r.events = append(r.events, ev)
	r.mu.Unlock()
	r.ch <- ev
	return r.err
}

// kinds returns the kinds of the events recorded so far, and forgets them.
func (r *recorder) kinds() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var ks []string
	for _, ev := range r.events {
		ks = append(ks, ev.Kind+" "+ev.Request.ID)
	}
	r.events = nil
	return ks
}

// next returns the next event, failing the test after a deadline.
func (r *recorder) next(tb testing.TB) approval.Event {
	tb.Helper()
	select {
	case ev := <-r.ch:
		return ev
	case <-time.After(10 * time.Second):
		tb.Fatal("no notification within 10s")
		return approval.Event{}
	}
}

// readSignal wraps a Store and signals each read of a request.
type readSignal struct {
	approval.Store
	reads chan string
}

func (s *readSignal) Approval(ctx context.Context, id string) (*approval.Request, error) {
	r, err := s.Store.Approval(ctx, id)
	select {
	case s.reads <- id:
	default:
	}
	return r, err
}

type fixture struct {
	m     *approval.Manager
	db    *sqlite.DB
	clock *testclock.Clock
	rec   *recorder
}

// newFixture returns a Manager on a fresh database with a fake clock at t0 and a
// recording notifier; mod adjusts the options.
func newFixture(tb testing.TB, mod func(*approval.Options)) *fixture {
	tb.Helper()
	db, _ := sqlitetest.Open(tb)
	f := &fixture{db: db, clock: testclock.New(t0), rec: newRecorder()}
	o := approval.Options{
		Store: db, Notifiers: []approval.Notifier{f.rec}, Now: f.clock.Now,
		ApproveURL: func(id string) string { return "https://gw.example/approvals/" + id },
	}
	if mod != nil {
		mod(&o)
	}
	f.m = approval.NewManager(o)
	return f
}

func call() *approval.Request {
	return &approval.Request{
		Tool: "send_money", Upstream: "bank",
		Arguments: json.RawMessage(`{ "to": "ACME", "amount": 80 }`),
		Agent:     "finance-assistant", User: "dana@example.com", Task: "tsk_1", SessionID: "s1",
		Reason: "monthly rent", Rules: []string{"payments-need-a-person"}, PolicyVersion: "sha256:pv",
		Risk: 80, RiskFactors: []string{"new recipient"},
	}
}

func (f *fixture) request(tb testing.TB, r *approval.Request) *approval.Request {
	tb.Helper()
	got, created, err := f.m.Request(tb.Context(), r)
	if err != nil || !created {
		tb.Fatalf("Request(%s) = %v, %v; want a new request", r.Tool, created, err)
	}
	return got
}

func TestRequest(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	f := newFixture(t, nil)

	in := call()
	orig := in.Clone()
	got, created, err := f.m.Request(ctx, in)
	if err != nil || !created {
		t.Fatalf("Request = %v, %v; want created", created, err)
	}
	if diff := cmp.Diff(orig, in); diff != "" {
		t.Errorf("Request modified its argument (-before +after):\n%s", diff)
	}
	hash, err := approval.Hash(in.Tool, in.Arguments, in.Agent, in.User, in.Task)
	if err != nil {
		t.Fatal(err)
	}
	want := orig.Clone()
	want.ID, want.CallHash, want.Status, want.Required = got.ID, hash, approval.StatusPending, 1
	want.Arguments = json.RawMessage(`{"to":"ACME","amount":80}`)
	want.CreatedAt, want.ExpiresAt = t0, t0.Add(approval.DefaultTimeout)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Request (-want +got):\n%s", diff)
	}
	if !strings.HasPrefix(got.ID, "apr_") || len(got.ID) != 4+22 {
		t.Errorf("Request ID = %q, want apr_ and 22 characters", got.ID)
	}
	if stored, err := f.m.Get(ctx, got.ID); err != nil || !cmp.Equal(got, stored) {
		t.Errorf("Get(%q) = %+v, %v; want %+v", got.ID, stored, err, got)
	}
	ev := f.rec.next(t)
	if ev.Kind != approval.EventRequested || ev.URL != "https://gw.example/approvals/"+got.ID || !cmp.Equal(*got, ev.Request) {
		t.Errorf("notification = %+v, want approval.requested of %q with its URL", ev, got.ID)
	}

	// The same call again, its arguments reordered and re-spaced: the same request, not
	// a new one, and no notification.
	f.clock.Advance(time.Minute)
	again := call()
	again.Arguments = json.RawMessage(`{"amount":80,"to":"ACME"}`)
	again.Reason = "retrying"
	dup, created, err := f.m.Request(ctx, again)
	if err != nil || created || dup.ID != got.ID {
		t.Errorf("Request(same call) = %q, %v, %v; want the existing %q, not created", dup.ID, created, err, got.ID)
	}
	// Another user: another call.
	other := call()
	other.User = "erin@example.com"
	o := f.request(t, other)
	if o.ID == got.ID || o.CallHash == got.CallHash {
		t.Errorf("Request(other user) = %q %s, want a new request with another hash", o.ID, o.CallHash)
	}
	if diff := cmp.Diff([]string{"approval.requested " + got.ID, "approval.requested " + o.ID}, f.rec.kinds()); diff != "" {
		t.Errorf("notifications (-want +got):\n%s", diff)
	}

	for _, tt := range []struct {
		name string
		mod  func(*approval.Request)
	}{
		{"array arguments", func(r *approval.Request) { r.Arguments = json.RawMessage(`[1,2]`) }},
		{"invalid arguments", func(r *approval.Request) { r.Arguments = json.RawMessage(`{"a":`) }},
		{"repeated key", func(r *approval.Request) { r.Arguments = json.RawMessage(`{"a":1,"a":2}`) }},
		{"no tool", func(r *approval.Request) { r.Tool = "" }},
		{"risk 101", func(r *approval.Request) { r.Risk = 101 }},
		{"negative risk", func(r *approval.Request) { r.Risk = -1 }},
		{"control character in agent", func(r *approval.Request) { r.Agent = "a\nb" }},
		{"long user", func(r *approval.Request) { r.User = strings.Repeat("u", approval.MaxName+1) }},
	} {
		r := call()
		tt.mod(r)
		if _, _, err := f.m.Request(ctx, r); !errors.Is(err, approval.ErrInvalid) {
			t.Errorf("Request(%s) = %v, want ErrInvalid", tt.name, err)
		}
	}
	if _, _, err := f.m.Request(ctx, nil); !errors.Is(err, approval.ErrInvalid) {
		t.Errorf("Request(nil) = %v, want ErrInvalid", err)
	}
}

func (f *fixture) mustList(tb testing.TB, s approval.Status) []approval.Request {
	tb.Helper()
	rs, err := f.m.List(tb.Context(), approval.Filter{Status: s})
	if err != nil {
		tb.Fatalf("List(%q): %v", s, err)
	}
	return rs
}

func TestApproveAndConsume(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	f := newFixture(t, nil)
	r := f.request(t, call())

	f.clock.Advance(time.Minute)
	got, err := f.m.Approve(ctx, r.ID, "erin@example.com")
	if err != nil {
		t.Fatalf("Approve(%q): %v", r.ID, err)
	}
	if got.Status != approval.StatusApproved || !got.DecidedAt.Equal(t0.Add(time.Minute)) ||
		!cmp.Equal(got.Approvals, []approval.Verdict{{By: "erin@example.com", At: t0.Add(time.Minute)}}) {
		t.Errorf("Approve(%q) = %+v, want approved by erin at t0+1m", r.ID, got)
	}
	if _, err := f.m.Approve(ctx, r.ID, "frank@example.com"); !errors.Is(err, approval.ErrNotPending) {
		t.Errorf("second Approve(%q) = %v, want ErrNotPending", r.ID, err)
	}
	if _, err := f.m.Deny(ctx, r.ID, "frank@example.com", "suspicious", ""); !errors.Is(err, approval.ErrNotPending) {
		t.Errorf("Deny(%q) after approve = %v, want ErrNotPending", r.ID, err)
	}

	// Another call's hash: refused, and the approval stays consumable.
	other := call()
	other.Arguments = json.RawMessage(`{"to":"ACME","amount":8000}`)
	otherHash, err := approval.Hash(other.Tool, other.Arguments, other.Agent, other.User, other.Task)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.m.Consume(ctx, r.ID, otherHash); !errors.Is(err, approval.ErrMismatch) {
		t.Errorf("Consume(%q, other call) = %v, want ErrMismatch", r.ID, err)
	}
	if cur, err := f.m.Get(ctx, r.ID); err != nil || cur.Status != approval.StatusApproved {
		t.Errorf("Get(%q) after mismatch = %+v, %v; want still approved", r.ID, cur, err)
	}

	used, err := f.m.Consume(ctx, r.ID, r.CallHash)
	if err != nil || used.Status != approval.StatusUsed || !used.UsedAt.Equal(t0.Add(time.Minute)) {
		t.Fatalf("Consume(%q) = %+v, %v; want used", r.ID, used, err)
	}
	if _, err := f.m.Consume(ctx, r.ID, r.CallHash); !errors.Is(err, approval.ErrUsed) {
		t.Errorf("Consume(%q) again = %v, want ErrUsed", r.ID, err)
	}
	if _, err := f.m.Consume(ctx, "apr_nope", r.CallHash); !errors.Is(err, approval.ErrNotFound) {
		t.Errorf("Consume(apr_nope) = %v, want ErrNotFound", err)
	}
	if _, err := f.m.Approve(ctx, "apr_nope", "erin"); !errors.Is(err, approval.ErrNotFound) {
		t.Errorf("Approve(apr_nope) = %v, want ErrNotFound", err)
	}

	// A pending request cannot be consumed.
	p := call()
	p.Task = "tsk_2"
	pr := f.request(t, p)
	if _, err := f.m.Consume(ctx, pr.ID, pr.CallHash); !errors.Is(err, approval.ErrNotApproved) {
		t.Errorf("Consume(pending) = %v, want ErrNotApproved", err)
	}
	if diff := cmp.Diff([]string{"approval.requested " + r.ID, "approval.approved " + r.ID, "approval.requested " + pr.ID}, f.rec.kinds()); diff != "" {
		t.Errorf("notifications (-want +got):\n%s", diff)
	}
}

func TestDeny(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	f := newFixture(t, nil)

	r := f.request(t, call())
	for _, tt := range []struct {
		name, by, code, text string
		want                 error
	}{
		{"unknown reason", "erin", "too_expensive", "", approval.ErrUnknownDeclineReason},
		{"empty reason", "erin", "", "", approval.ErrUnknownDeclineReason},
		{"other without text", "erin", "other", "  ", approval.ErrInvalid},
		{"no denier", "", "suspicious", "", approval.ErrInvalid},
		{"long text", "erin", "suspicious", strings.Repeat("x", approval.MaxText+1), approval.ErrInvalid},
	} {
		if _, err := f.m.Deny(ctx, r.ID, tt.by, tt.code, tt.text); !errors.Is(err, tt.want) {
			t.Errorf("Deny(%s) = %v, want %v", tt.name, err, tt.want)
		}
	}
	got, err := f.m.Deny(ctx, r.ID, "dana@example.com", "wrong_amount", "it is 800") // the user may deny
	if err != nil {
		t.Fatalf("Deny(%q): %v", r.ID, err)
	}
	if got.Status != approval.StatusDenied || got.DeniedBy != "dana@example.com" || got.DenyCode != "wrong_amount" ||
		got.DenyText != "it is 800" || !got.DecidedAt.Equal(t0) {
		t.Errorf("Deny(%q) = %+v, want denied by dana for wrong_amount", r.ID, got)
	}
	if _, err := f.m.Deny(ctx, r.ID, "erin", "suspicious", ""); !errors.Is(err, approval.ErrNotPending) {
		t.Errorf("second Deny(%q) = %v, want ErrNotPending", r.ID, err)
	}
	if _, err := f.m.Approve(ctx, r.ID, "erin"); !errors.Is(err, approval.ErrNotPending) {
		t.Errorf("Approve(%q) after deny = %v, want ErrNotPending", r.ID, err)
	}
	if _, err := f.m.Consume(ctx, r.ID, r.CallHash); !errors.Is(err, approval.ErrNotApproved) {
		t.Errorf("Consume(%q) after deny = %v, want ErrNotApproved", r.ID, err)
	}

	for i, code := range []string{"other", "wrong_amount", "suspicious"} {
		c := call()
		c.Task = "tsk_deny_" + string(rune('a'+i))
		cr := f.request(t, c)
		if _, err := f.m.Deny(ctx, cr.ID, "erin", code, "looks wrong"); err != nil {
			t.Fatalf("Deny(%q, %s): %v", cr.ID, code, err)
		}
	}
	counts, err := f.m.DeclineCounts(ctx, t0)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]int{"other": 1, "wrong_amount": 2, "suspicious": 1}, counts); diff != "" {
		t.Errorf("DeclineCounts (-want +got):\n%s", diff)
	}
	if kinds := f.rec.kinds(); len(kinds) != 8 || kinds[1] != "approval.denied "+r.ID {
		t.Errorf("notifications = %v, want 4 requested and 4 denied, the first denial of %q", kinds, r.ID)
	}

	// Configured reasons replace the defaults.
	g := newFixture(t, func(o *approval.Options) { o.DeclineReasons = []string{"nope"} })
	gr := g.request(t, call())
	if _, err := g.m.Deny(ctx, gr.ID, "erin", "suspicious", ""); !errors.Is(err, approval.ErrUnknownDeclineReason) {
		t.Errorf("Deny(suspicious) with reasons [nope] = %v, want ErrUnknownDeclineReason", err)
	}
	if _, err := g.m.Deny(ctx, gr.ID, "erin", "nope", ""); err != nil {
		t.Errorf("Deny(nope) with reasons [nope] = %v", err)
	}
}

func TestExpiry(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	f := newFixture(t, func(o *approval.Options) { o.Timeout = 5 * time.Minute })

	// Deciding after the deadline: refused, and the request is marked expired.
	late := f.request(t, call())
	f.clock.Advance(5 * time.Minute)
	if _, err := f.m.Approve(ctx, late.ID, "erin"); !errors.Is(err, approval.ErrExpired) {
		t.Errorf("Approve(%q) at expiry = %v, want ErrExpired", late.ID, err)
	}
	if r, err := f.m.Get(ctx, late.ID); err != nil || r.Status != approval.StatusExpired {
		t.Errorf("Get(%q) = %+v, %v; want expired", late.ID, r, err)
	}
	for name, err := range map[string]error{
		"Approve": func() error { _, err := f.m.Approve(ctx, late.ID, "erin"); return err }(),
		"Deny":    func() error { _, err := f.m.Deny(ctx, late.ID, "erin", "suspicious", ""); return err }(),
	} {
		if !errors.Is(err, approval.ErrExpired) && !errors.Is(err, approval.ErrNotPending) {
			t.Errorf("%s(%q) after expiry = %v, want ErrExpired or ErrNotPending", name, late.ID, err)
		}
	}
	if _, err := f.m.Consume(ctx, late.ID, late.CallHash); !errors.Is(err, approval.ErrNotApproved) {
		t.Errorf("Consume(%q) expired = %v, want ErrNotApproved", late.ID, err)
	}

	// An approval not consumed before the deadline cannot be consumed after it.
	c := call()
	c.Task = "tsk_2"
	slow := f.request(t, c)
	if _, err := f.m.Approve(ctx, slow.ID, "erin"); err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(5 * time.Minute)
	if _, err := f.m.Consume(ctx, slow.ID, slow.CallHash); !errors.Is(err, approval.ErrExpired) {
		t.Errorf("Consume(%q) after expiry = %v, want ErrExpired", slow.ID, err)
	}

	// Run expires what is due, notifying for each.
	c.Task = "tsk_3"
	due := f.request(t, c)
	f.clock.Advance(5 * time.Minute)
	if diff := cmp.Diff([]string{
		"approval.requested " + late.ID, "approval.expired " + late.ID,
		"approval.requested " + slow.ID, "approval.approved " + slow.ID,
		"approval.requested " + due.ID,
	}, f.rec.kinds()); diff != "" {
		t.Errorf("notifications before Run (-want +got):\n%s", diff)
	}
	for range 5 { // drain the channel
		f.rec.next(t)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		f.m.Run(runCtx, time.Millisecond)
	}()
	ev := f.rec.next(t)
	cancel()
	<-done
	if ev.Kind != approval.EventExpired || ev.Request.ID != due.ID || ev.Request.Status != approval.StatusExpired {
		t.Errorf("Run notification = %s %s %s, want approval.expired %s expired", ev.Kind, ev.Request.ID, ev.Request.Status, due.ID)
	}
	if kinds := f.rec.kinds(); len(kinds) != 1 {
		t.Errorf("notifications from Run = %v, want one", kinds)
	}
	if _, err := f.m.Approve(ctx, due.ID, "erin"); !errors.Is(err, approval.ErrExpired) {
		t.Errorf("Approve(%q) after Run expired it = %v, want ErrExpired", due.ID, err)
	}
	if got := f.mustList(t, approval.StatusExpired); len(got) != 2 {
		t.Errorf("List(expired) = %d requests, want 2", len(got))
	}
}

func TestTwoPersonRule(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	f := newFixture(t, func(o *approval.Options) {
		o.TwoPerson = func(tool string) bool { return tool == "send_money" }
	})
	r := f.request(t, call())
	if r.Required != 2 {
		t.Fatalf("Request(send_money).Required = %d, want 2", r.Required)
	}
	one := call()
	one.Tool = "read_file"
	oneReq := f.request(t, one)
	if oneReq.Required != 1 {
		t.Errorf("Request(read_file).Required = %d, want 1", oneReq.Required)
	}

	got, err := f.m.Approve(ctx, r.ID, "erin@example.com")
	if err != nil || got.Status != approval.StatusPending || len(got.Approvals) != 1 {
		t.Fatalf("first Approve(%q) = %+v, %v; want still pending with one approval", r.ID, got, err)
	}
	if _, err := f.m.Consume(ctx, r.ID, r.CallHash); !errors.Is(err, approval.ErrNotApproved) {
		t.Errorf("Consume(%q) after one of two approvals = %v, want ErrNotApproved", r.ID, err)
	}
	if _, err := f.m.Approve(ctx, r.ID, "Erin@Example.com"); !errors.Is(err, approval.ErrSameApprover) {
		t.Errorf("Approve(%q) by the same person again = %v, want ErrSameApprover", r.ID, err)
	}
	got, err = f.m.Approve(ctx, r.ID, "frank@example.com")
	if err != nil || got.Status != approval.StatusApproved || len(got.Approvals) != 2 {
		t.Fatalf("second Approve(%q) = %+v, %v; want approved with two approvals", r.ID, got, err)
	}
	if diff := cmp.Diff([]string{
		"approval.requested " + r.ID, "approval.requested " + oneReq.ID, "approval.approved " + r.ID,
	}, f.rec.kinds()); diff != "" {
		t.Errorf("notifications (-want +got):\n%s", diff)
	}
}

func TestSelfApproval(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	f := newFixture(t, nil)
	r := f.request(t, call())
	for _, by := range []string{"dana@example.com", "DANA@example.com", "finance-assistant"} {
		if _, err := f.m.Approve(ctx, r.ID, by); !errors.Is(err, approval.ErrSelfApproval) {
			t.Errorf("Approve(%q, %s) = %v, want ErrSelfApproval", r.ID, by, err)
		}
	}
	for _, by := range []string{"", " erin", strings.Repeat("e", approval.MaxName+1)} {
		if _, err := f.m.Approve(ctx, r.ID, by); !errors.Is(err, approval.ErrInvalid) {
			t.Errorf("Approve(%q, %q) = %v, want ErrInvalid", r.ID, by, err)
		}
	}
	if cur, err := f.m.Get(ctx, r.ID); err != nil || cur.Status != approval.StatusPending || len(cur.Approvals) != 0 {
		t.Errorf("Get(%q) after refused approvals = %+v, %v; want pending without approvals", r.ID, cur, err)
	}

	g := newFixture(t, func(o *approval.Options) { o.AllowSelfApproval = true })
	gr := g.request(t, call())
	if _, err := g.m.Approve(ctx, gr.ID, "finance-assistant"); !errors.Is(err, approval.ErrSelfApproval) {
		t.Errorf("Approve by the agent with AllowSelfApproval = %v, want ErrSelfApproval", err)
	}
	if got, err := g.m.Approve(ctx, gr.ID, "dana@example.com"); err != nil || got.Status != approval.StatusApproved {
		t.Errorf("Approve by the user with AllowSelfApproval = %+v, %v; want approved", got, err)
	}
}

func TestWaitWokenInProcess(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db, _ := sqlitetest.Open(t)
	store := &readSignal{Store: db, reads: make(chan string, 1)}
	// Polling once an hour: only the in-process broadcast can wake the waiter in time.
	m := approval.NewManager(approval.Options{Store: store, PollInterval: time.Hour})
	r, _, err := m.Request(ctx, call())
	if err != nil {
		t.Fatal(err)
	}

	for _, decide := range []struct {
		name string
		do   func(id string) error
		want approval.Status
	}{
		{"approve", func(id string) error { _, err := m.Approve(ctx, id, "erin"); return err }, approval.StatusApproved},
		{"deny", func(id string) error { _, err := m.Deny(ctx, id, "erin", "suspicious", ""); return err }, approval.StatusDenied},
	} {
		c := call()
		c.Task = "tsk_" + decide.name
		r, _, err = m.Request(ctx, c)
		if err != nil {
			t.Fatal(err)
		}
		type result struct {
			r   *approval.Request
			err error
		}
		done := make(chan result, 1)
		start := time.Now()
		go func() {
			got, err := m.Wait(ctx, r.ID, time.Minute)
			done <- result{got, err}
		}()
		<-store.reads // the waiter has read the request: it is pending
		if err := decide.do(r.ID); err != nil {
			t.Fatalf("%s(%q): %v", decide.name, r.ID, err)
		}
		res := <-done
		if res.err != nil || res.r.Status != decide.want {
			t.Errorf("Wait(%q) after %s = %+v, %v; want %s", r.ID, decide.name, res.r, res.err, decide.want)
		}
		if el := time.Since(start); el > 30*time.Second {
			t.Errorf("Wait(%q) returned %v after %s, want at once", r.ID, el, decide.name)
		}
	}
}

func TestWaitSeesOtherProcess(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "chaperone.db")
	open := func() *sqlite.DB {
		db, err := sqlite.Open(ctx, path)
		if err != nil {
			t.Fatalf("Open(%q): %v", path, err)
		}
		t.Cleanup(func() { db.Close() })
		return db
	}
	dbA, dbB := open(), open()
	storeA := &readSignal{Store: dbA, reads: make(chan string, 1)}
	const poll = 20 * time.Millisecond
	a := approval.NewManager(approval.Options{Store: storeA, PollInterval: poll})
	b := approval.NewManager(approval.Options{Store: dbB, PollInterval: time.Hour})

	r, _, err := a.Request(ctx, call())
	if err != nil {
		t.Fatal(err)
	}
	type result struct {
		r   *approval.Request
		err error
		at  time.Time
	}
	done := make(chan result, 1)
	go func() {
		got, err := a.Wait(ctx, r.ID, time.Minute)
		done <- result{got, err, time.Now()}
	}()
	<-storeA.reads
	if _, err := b.Approve(ctx, r.ID, "erin"); err != nil {
		t.Fatalf("Approve(%q) through the second handle: %v", r.ID, err)
	}
	decided := time.Now()
	res := <-done
	if res.err != nil || res.r.Status != approval.StatusApproved {
		t.Fatalf("Wait(%q) = %+v, %v; want approved", r.ID, res.r, res.err)
	}
	// Within PollInterval, with generous room for a loaded machine under -race.
	if el := res.at.Sub(decided); el > poll+5*time.Second {
		t.Errorf("Wait(%q) saw the decision %v after it was made, want within about %v", r.ID, el, poll)
	}
	// The approval is consumed once, whichever process tries.
	if _, err := b.Consume(ctx, r.ID, r.CallHash); err != nil {
		t.Errorf("Consume through B: %v", err)
	}
	if _, err := a.Consume(ctx, r.ID, r.CallHash); !errors.Is(err, approval.ErrUsed) {
		t.Errorf("Consume through A after B = %v, want ErrUsed", err)
	}
}

func TestWaitTimeoutAndCancel(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	f := newFixture(t, nil)
	r := f.request(t, call())

	got, err := f.m.Wait(ctx, r.ID, 30*time.Millisecond)
	if err != nil || got.Status != approval.StatusPending || got.ID != r.ID {
		t.Errorf("Wait(%q, 30ms) = %+v, %v; want the pending request", r.ID, got, err)
	}
	got, err = f.m.Wait(ctx, r.ID, 0)
	if err != nil || got.Status != approval.StatusPending {
		t.Errorf("Wait(%q, 0) = %+v, %v; want the pending request", r.ID, got, err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if got, err := f.m.Wait(cctx, r.ID, time.Minute); !errors.Is(err, context.Canceled) {
		t.Errorf("Wait(%q) with a canceled context = %+v, %v; want context.Canceled", r.ID, got, err)
	}
	if _, err := f.m.Wait(ctx, "apr_nope", time.Minute); !errors.Is(err, approval.ErrNotFound) {
		t.Errorf("Wait(apr_nope) = %v, want ErrNotFound", err)
	}

	// Past the deadline, Wait returns the request expired, and says so to notifiers.
	f.clock.Advance(approval.DefaultTimeout)
	got, err = f.m.Wait(ctx, r.ID, time.Minute)
	if err != nil || got.Status != approval.StatusExpired {
		t.Errorf("Wait(%q) past expiry = %+v, %v; want expired", r.ID, got, err)
	}
	if diff := cmp.Diff([]string{"approval.requested " + r.ID, "approval.expired " + r.ID}, f.rec.kinds()); diff != "" {
		t.Errorf("notifications (-want +got):\n%s", diff)
	}
}

func TestPendingSurvivesReopen(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "chaperone.db")
	db, err := sqlite.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	clk := testclock.New(t0)
	m := approval.NewManager(approval.Options{Store: db, Now: clk.Now})
	r, _, err := m.Request(ctx, call())
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	db, err = sqlite.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	clk.Advance(time.Minute)
	m = approval.NewManager(approval.Options{Store: db, Now: clk.Now})
	got, err := m.Get(ctx, r.ID)
	if err != nil {
		t.Fatalf("Get(%q) after reopen: %v", r.ID, err)
	}
	if diff := cmp.Diff(r, got); diff != "" {
		t.Errorf("request after reopen (-want +got):\n%s", diff)
	}
	again, created, err := m.Request(ctx, call())
	if err != nil || created || again.ID != r.ID {
		t.Errorf("Request(same call) after reopen = %q, %v, %v; want the pending %q", again.ID, created, err, r.ID)
	}
	if _, err := m.Approve(ctx, r.ID, "erin"); err != nil {
		t.Fatalf("Approve(%q) after reopen: %v", r.ID, err)
	}
	if _, err := m.Consume(ctx, r.ID, r.CallHash); err != nil {
		t.Errorf("Consume(%q) after reopen: %v", r.ID, err)
	}
}

func TestNotifierFailureDoesNotBlock(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	f := newFixture(t, nil)
	f.rec.err = errors.New("webhook down")
	r := f.request(t, call())
	got, err := f.m.Approve(ctx, r.ID, "erin")
	if err != nil || got.Status != approval.StatusApproved {
		t.Errorf("Approve(%q) with a failing notifier = %+v, %v; want approved", r.ID, got, err)
	}
	// A canceled caller does not cancel the notification.
	c := call()
	c.Task = "tsk_2"
	cctx, cancel := context.WithCancel(ctx)
	var seen error
	g := newFixture(t, func(o *approval.Options) {
		o.Notifiers = []approval.Notifier{notifierFunc(func(ctx context.Context, ev approval.Event) error {
			cancel()
			seen = ctx.Err()
			return nil
		})}
	})
	if _, _, err := g.m.Request(cctx, c); err != nil {
		t.Fatal(err)
	}
	if seen != nil {
		t.Errorf("notifier context = %v after the caller's was canceled, want live", seen)
	}
}

type notifierFunc func(ctx context.Context, ev approval.Event) error

func (f notifierFunc) Notify(ctx context.Context, ev approval.Event) error { return f(ctx, ev) }

func TestList(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	f := newFixture(t, nil)
	var ids []string
	for i := range 3 {
		c := call()
		c.Task = "tsk_" + string(rune('a'+i))
		f.clock.Advance(time.Second)
		ids = append([]string{f.request(t, c).ID}, ids...)
	}
	if _, err := f.m.Deny(ctx, ids[1], "erin", "suspicious", ""); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		f    approval.Filter
		want []string
	}{
		{"all, newest first", approval.Filter{}, ids},
		{"pending", approval.Filter{Status: approval.StatusPending}, []string{ids[0], ids[2]}},
		{"limit", approval.Filter{Limit: 1}, ids[:1]},
		{"tool", approval.Filter{Tool: "read_file"}, nil},
	} {
		rs, err := f.m.List(ctx, tt.f)
		if err != nil {
			t.Fatalf("List(%s): %v", tt.name, err)
		}
		var got []string
		for _, r := range rs {
			got = append(got, r.ID)
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("List(%s) (-want +got):\n%s", tt.name, diff)
		}
	}
}
