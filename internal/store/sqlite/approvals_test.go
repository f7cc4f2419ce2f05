package sqlite_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/chaperone-dev/chaperone/internal/approval"
	"github.com/chaperone-dev/chaperone/internal/store/sqlite"
)

// pendingRequest returns a pending request for call hash, created at created and
// expiring 15 minutes later.
func pendingRequest(id, hash string, created time.Time) *approval.Request {
	return &approval.Request{
		ID: id, CallHash: hash, Tool: "send_money", Upstream: "bank",
		Arguments: json.RawMessage(`{"amount":80,"to":"ACME"}`),
		Agent:     "finance-assistant", User: "dana@example.com", Task: "tsk_1", SessionID: "s1",
		Status: approval.StatusPending, Required: 1,
		CreatedAt: created, ExpiresAt: created.Add(15 * time.Minute),
	}
}

func mustCreate(tb testing.TB, db *sqlite.DB, r *approval.Request) {
	tb.Helper()
	if err := db.CreateApproval(tb.Context(), r); err != nil {
		tb.Fatalf("CreateApproval(%q): %v", r.ID, err)
	}
}

func TestApprovalRoundTrip(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db, _ := openTemp(t)

	full := &approval.Request{
		ID: "apr_full", CallHash: "sha256:aa", Tool: "send_money", Upstream: "bank",
		Arguments: json.RawMessage(`{"amount":80,"memo":"rent <&>"}`),
		Agent:     "finance-assistant", User: "dana@example.com", Task: "tsk_1", SessionID: "sess-1",
		Reason: "monthly rent", Rules: []string{"payments-need-a-person", "two-person"}, PolicyVersion: "sha256:pp",
		Risk: 80, RiskFactors: []string{"new recipient", "amount"}, Explanation: "amount read from mail",
		Undo: "call refund", Status: approval.StatusDenied, Required: 2,
		Approvals: []approval.Verdict{{By: "erin", At: t0.Add(time.Second)}},
		DeniedBy:  "frank", DenyCode: "wrong_amount", DenyText: "should be 800",
		CreatedAt: t0, ExpiresAt: t0.Add(15 * time.Minute),
		DecidedAt: t0.Add(2 * time.Second), UsedAt: t0.Add(3*time.Second + 7*time.Nanosecond),
	}
	bare := pendingRequest("apr_bare", "sha256:bb", t0)
	bare.Arguments = nil // stored as {}
	for _, r := range []*approval.Request{full, bare} {
		mustCreate(t, db, r)
	}
	got, err := db.Approval(ctx, full.ID)
	if err != nil {
		t.Fatalf("Approval(%q): %v", full.ID, err)
	}
	if diff := cmp.Diff(full, got); diff != "" {
		t.Errorf("Approval(%q) (-want +got):\n%s", full.ID, diff)
	}
	got, err = db.Approval(ctx, bare.ID)
	if err != nil {
		t.Fatalf("Approval(%q): %v", bare.ID, err)
	}
	bare.Arguments = json.RawMessage(`{}`)
	if diff := cmp.Diff(bare, got); diff != "" {
		t.Errorf("Approval(%q) (-want +got):\n%s", bare.ID, diff)
	}

	if _, err := db.Approval(ctx, "apr_nope"); !errors.Is(err, approval.ErrNotFound) {
		t.Errorf("Approval(apr_nope) = %v, want ErrNotFound", err)
	}
	if err := db.CreateApproval(ctx, full); err == nil {
		t.Errorf("CreateApproval(%q) again succeeded, want an error", full.ID)
	}
	for _, tt := range []struct {
		name string
		mod  func(*approval.Request)
	}{
		{"no id", func(r *approval.Request) { r.ID = "" }},
		{"no hash", func(r *approval.Request) { r.CallHash = "" }},
		{"array arguments", func(r *approval.Request) { r.Arguments = json.RawMessage(`[1]`) }},
		{"risk 101", func(r *approval.Request) { r.Risk = 101 }},
		{"status", func(r *approval.Request) { r.Status = "maybe" }},
		{"required 0", func(r *approval.Request) { r.Required = 0 }},
	} {
		r := pendingRequest("apr_bad_"+tt.name, "sha256:bad-"+tt.name, t0)
		tt.mod(r)
		if err := db.CreateApproval(ctx, r); err == nil {
			t.Errorf("CreateApproval(%s) succeeded, want an error", tt.name)
		}
	}
}

func TestPendingApproval(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db, _ := openTemp(t)

	// Times whose RFC3339Nano text order is not their time order: 09:00:07.1 sorts
	// after 09:00:07.123 as RFC3339Nano text.
	older := pendingRequest("apr_older", "sha256:h", t0.Truncate(time.Second).Add(100*time.Millisecond))
	mustCreate(t, db, older)
	// A decided request for the same call is never returned, and does not block.
	used := pendingRequest("apr_used", "sha256:h", older.CreatedAt.Add(23*time.Millisecond))
	used.Status = approval.StatusUsed
	mustCreate(t, db, used)
	// A second pending request for the same call is refused while the first is pending.
	newer := pendingRequest("apr_newer", "sha256:h", older.CreatedAt.Add(23*time.Millisecond))
	if err := db.CreateApproval(ctx, newer); !errors.Is(err, approval.ErrPendingExists) {
		t.Fatalf("CreateApproval(second pending for the same call) = %v, want ErrPendingExists", err)
	}

	check := func(name, hash string, now time.Time, wantID string) {
		t.Helper()
		got, ok, err := db.PendingApproval(ctx, hash, now)
		if err != nil {
			t.Fatalf("PendingApproval(%s): %v", name, err)
		}
		var gotID string
		if ok {
			gotID = got.ID
		}
		if gotID != wantID {
			t.Errorf("PendingApproval(%s) = %q, %v; want %q", name, gotID, ok, wantID)
		}
	}
	check("pending", "sha256:h", older.CreatedAt.Add(time.Second), "apr_older")
	check("just before expiry", "sha256:h", older.ExpiresAt.Add(-time.Nanosecond), "apr_older")
	check("at expiry", "sha256:h", older.ExpiresAt, "")
	check("other call", "sha256:other", older.CreatedAt, "")

	// After the first one's expiry, a new pending request is allowed.
	newer.CreatedAt = older.ExpiresAt
	newer.ExpiresAt = newer.CreatedAt.Add(time.Minute)
	mustCreate(t, db, newer)
	check("after expiry, the new one", "sha256:h", newer.CreatedAt, "apr_newer")
	check("all expired", "sha256:h", newer.ExpiresAt, "")
}

func TestApprovalsList(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db, _ := openTemp(t)

	base := t0.Truncate(time.Second)
	var ids []string
	for i, off := range []time.Duration{0, 100 * time.Millisecond, 123 * time.Millisecond, time.Second, 1500 * time.Millisecond} {
		r := pendingRequest(fmt.Sprintf("apr_%d", i), fmt.Sprintf("sha256:%d", i), base.Add(off))
		if i%2 == 1 {
			r.Tool = "read_file"
			r.Status = approval.StatusDenied
		}
		mustCreate(t, db, r)
		ids = append([]string{r.ID}, ids...) // newest first
	}
	for _, tt := range []struct {
		name string
		f    approval.Filter
		want []string
	}{
		{"all", approval.Filter{}, ids},
		{"limit", approval.Filter{Limit: 2}, ids[:2]},
		{"negative limit is the default", approval.Filter{Limit: -1}, ids},
		{"status", approval.Filter{Status: approval.StatusDenied}, []string{"apr_3", "apr_1"}},
		{"tool", approval.Filter{Tool: "send_money"}, []string{"apr_4", "apr_2", "apr_0"}},
		{"status and tool", approval.Filter{Status: approval.StatusPending, Tool: "read_file"}, nil},
	} {
		rs, err := db.Approvals(ctx, tt.f)
		if err != nil {
			t.Fatalf("Approvals(%s): %v", tt.name, err)
		}
		var got []string
		for _, r := range rs {
			got = append(got, r.ID)
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("Approvals(%s) (-want +got):\n%s", tt.name, diff)
		}
	}
}

func TestApprovalDecisions(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db, _ := openTemp(t)
	at := t0.Add(time.Minute)

	// One approver.
	one := pendingRequest("apr_one", "sha256:one", t0)
	mustCreate(t, db, one)
	got, err := db.AddApproval(ctx, one.ID, "erin", at)
	if err != nil {
		t.Fatalf("AddApproval(%q): %v", one.ID, err)
	}
	want := *one
	want.Status, want.DecidedAt, want.Approvals = approval.StatusApproved, at, []approval.Verdict{{By: "erin", At: at}}
	if diff := cmp.Diff(&want, got); diff != "" {
		t.Errorf("AddApproval(%q) (-want +got):\n%s", one.ID, diff)
	}
	if stored, err := db.Approval(ctx, one.ID); err != nil || !cmp.Equal(got, stored) {
		t.Errorf("Approval(%q) after approve = %+v, %v; want %+v", one.ID, stored, err, got)
	}
	if _, err := db.AddApproval(ctx, one.ID, "frank", at); !errors.Is(err, approval.ErrNotPending) {
		t.Errorf("AddApproval(%q) again = %v, want ErrNotPending", one.ID, err)
	}
	if _, err := db.Deny(ctx, one.ID, "frank", "other", "x", at); !errors.Is(err, approval.ErrNotPending) {
		t.Errorf("Deny(%q) after approve = %v, want ErrNotPending", one.ID, err)
	}

	// Two approvers.
	two := pendingRequest("apr_two", "sha256:two", t0)
	two.Required = 2
	mustCreate(t, db, two)
	got, err = db.AddApproval(ctx, two.ID, "erin", at)
	if err != nil || got.Status != approval.StatusPending || len(got.Approvals) != 1 || !got.DecidedAt.IsZero() {
		t.Fatalf("AddApproval(%q, erin) = %+v, %v; want pending with one approval", two.ID, got, err)
	}
	if _, err := db.AddApproval(ctx, two.ID, "ERIN", at); !errors.Is(err, approval.ErrSameApprover) {
		t.Errorf("AddApproval(%q, ERIN) = %v, want ErrSameApprover", two.ID, err)
	}
	got, err = db.AddApproval(ctx, two.ID, "frank", at.Add(time.Second))
	if err != nil || got.Status != approval.StatusApproved || !got.DecidedAt.Equal(at.Add(time.Second)) {
		t.Fatalf("AddApproval(%q, frank) = %+v, %v; want approved", two.ID, got, err)
	}
	if diff := cmp.Diff([]approval.Verdict{{By: "erin", At: at}, {By: "frank", At: at.Add(time.Second)}}, got.Approvals); diff != "" {
		t.Errorf("approvals of %q (-want +got):\n%s", two.ID, diff)
	}

	// Deny.
	denied := pendingRequest("apr_denied", "sha256:denied", t0)
	mustCreate(t, db, denied)
	got, err = db.Deny(ctx, denied.ID, "erin", "wrong_amount", "too much", at)
	if err != nil {
		t.Fatalf("Deny(%q): %v", denied.ID, err)
	}
	if got.Status != approval.StatusDenied || got.DeniedBy != "erin" || got.DenyCode != "wrong_amount" || got.DenyText != "too much" || !got.DecidedAt.Equal(at) {
		t.Errorf("Deny(%q) = %+v, want denied by erin for wrong_amount", denied.ID, got)
	}
	if _, err := db.AddApproval(ctx, denied.ID, "frank", at); !errors.Is(err, approval.ErrNotPending) {
		t.Errorf("AddApproval(%q) after deny = %v, want ErrNotPending", denied.ID, err)
	}

	// Expiry on decision: marks it expired.
	late := pendingRequest("apr_late", "sha256:late", t0)
	mustCreate(t, db, late)
	if _, err := db.AddApproval(ctx, late.ID, "erin", late.ExpiresAt); !errors.Is(err, approval.ErrExpired) {
		t.Errorf("AddApproval(%q) at expiry = %v, want ErrExpired", late.ID, err)
	}
	if r, err := db.Approval(ctx, late.ID); err != nil || r.Status != approval.StatusExpired || !r.DecidedAt.Equal(late.ExpiresAt) {
		t.Errorf("Approval(%q) after late approve = %+v, %v; want expired", late.ID, r, err)
	}
	if _, err := db.Deny(ctx, late.ID, "erin", "other", "x", late.ExpiresAt); !errors.Is(err, approval.ErrExpired) {
		t.Errorf("Deny(%q) when expired = %v, want ErrExpired", late.ID, err)
	}
	if _, err := db.AddApproval(ctx, "apr_nope", "erin", at); !errors.Is(err, approval.ErrNotFound) {
		t.Errorf("AddApproval(apr_nope) = %v, want ErrNotFound", err)
	}
	if _, err := db.Deny(ctx, "apr_nope", "erin", "other", "x", at); !errors.Is(err, approval.ErrNotFound) {
		t.Errorf("Deny(apr_nope) = %v, want ErrNotFound", err)
	}

	// Consume.
	for _, tt := range []struct {
		name, id, hash string
		now            time.Time
		want           error
	}{
		{"unknown", "apr_nope", "sha256:one", at, approval.ErrNotFound},
		{"wrong call", one.ID, "sha256:two", at, approval.ErrMismatch},
		{"expired approval", one.ID, "sha256:one", one.ExpiresAt, approval.ErrExpired},
		{"denied", denied.ID, "sha256:denied", at, approval.ErrNotApproved},
		{"expired request", late.ID, "sha256:late", at, approval.ErrNotApproved},
		{"expired request is expired too", late.ID, "sha256:late", at, approval.ErrExpired},
	} {
		if _, err := db.Consume(ctx, tt.id, tt.hash, tt.now); !errors.Is(err, tt.want) {
			t.Errorf("Consume(%s) = %v, want %v", tt.name, err, tt.want)
		}
	}
	pend := pendingRequest("apr_pend", "sha256:pend", t0)
	mustCreate(t, db, pend)
	if _, err := db.Consume(ctx, pend.ID, pend.CallHash, at); !errors.Is(err, approval.ErrNotApproved) {
		t.Errorf("Consume(pending) = %v, want ErrNotApproved", err)
	}
	used, err := db.Consume(ctx, one.ID, one.CallHash, at)
	if err != nil || used.Status != approval.StatusUsed || !used.UsedAt.Equal(at) {
		t.Fatalf("Consume(%q) = %+v, %v; want used", one.ID, used, err)
	}
	if _, err := db.Consume(ctx, one.ID, one.CallHash, at); !errors.Is(err, approval.ErrUsed) {
		t.Errorf("Consume(%q) again = %v, want ErrUsed", one.ID, err)
	}

	// Expire: only pending requests at or past their expiry, each once.
	exp1 := pendingRequest("apr_exp1", "sha256:exp1", t0.Add(time.Second))
	exp2 := pendingRequest("apr_exp2", "sha256:exp2", t0.Add(2*time.Second))
	for _, r := range []*approval.Request{exp2, exp1} {
		mustCreate(t, db, r)
	}
	now := exp1.ExpiresAt
	expired, err := db.ExpireApprovals(ctx, now)
	if err != nil {
		t.Fatalf("ExpireApprovals: %v", err)
	}
	var gotIDs []string
	for _, r := range expired {
		if r.Status != approval.StatusExpired || !r.DecidedAt.Equal(now) {
			t.Errorf("expired request %q = %+v, want status expired decided at %v", r.ID, r, now)
		}
		gotIDs = append(gotIDs, r.ID)
	}
	if diff := cmp.Diff([]string{"apr_pend", "apr_exp1"}, gotIDs); diff != "" {
		t.Errorf("ExpireApprovals(%v) (-want +got):\n%s", now, diff)
	}
	if again, err := db.ExpireApprovals(ctx, now); err != nil || len(again) != 0 {
		t.Errorf("ExpireApprovals again = %v, %v; want none", again, err)
	}

	// Decline counts.
	// denied is apr_denied, decided at at.
	for i, code := range []string{"wrong_amount", "suspicious"} {
		r := pendingRequest(fmt.Sprintf("apr_dc%d", i), fmt.Sprintf("sha256:dc%d", i), at.Add(time.Hour-time.Minute))
		mustCreate(t, db, r)
		if _, err := db.Deny(ctx, r.ID, "erin", code, "", at.Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	for _, tt := range []struct {
		since time.Time
		want  map[string]int
	}{
		{t0, map[string]int{"wrong_amount": 2, "suspicious": 1}},
		{at.Add(time.Hour), map[string]int{"wrong_amount": 1, "suspicious": 1}},
		{at.Add(2 * time.Hour), map[string]int{}},
	} {
		got, err := db.DeclineCounts(ctx, tt.since)
		if err != nil {
			t.Fatalf("DeclineCounts(%v): %v", tt.since, err)
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("DeclineCounts(%v) (-want +got):\n%s", tt.since, diff)
		}
	}
}

func TestApprovalsReadOnly(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db, path := openTemp(t)
	r := pendingRequest("apr_ro", "sha256:ro", t0)
	mustCreate(t, db, r)
	db.Close()

	ro, err := sqlite.OpenReadOnly(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	if got, err := ro.Approval(ctx, r.ID); err != nil || got.ID != r.ID {
		t.Errorf("Approval read-only = %v, %v; want %q", got, err, r.ID)
	}
	writes := map[string]error{"CreateApproval": ro.CreateApproval(ctx, pendingRequest("apr_x", "sha256:x", t0))}
	_, writes["AddApproval"] = ro.AddApproval(ctx, r.ID, "erin", t0)
	_, writes["Deny"] = ro.Deny(ctx, r.ID, "erin", "other", "x", t0)
	_, writes["Consume"] = ro.Consume(ctx, r.ID, r.CallHash, t0)
	_, writes["ExpireApprovals"] = ro.ExpireApprovals(ctx, t0)
	for name, err := range writes {
		if !errors.Is(err, sqlite.ErrReadOnly) {
			t.Errorf("%s on read-only = %v, want ErrReadOnly", name, err)
		}
	}
}

// TestConsumeRaceAcrossHandles races approvals and consumes of one request through two
// handles on the same file, as two gateway processes would: exactly one consume wins.
func TestConsumeRaceAcrossHandles(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "chaperone.db")
	var dbs [2]*sqlite.DB
	for i := range dbs {
		db, err := sqlite.Open(ctx, path)
		if err != nil {
			t.Fatalf("Open(%q) #%d: %v", path, i, err)
		}
		t.Cleanup(func() { db.Close() })
		dbs[i] = db
	}
	r := pendingRequest("apr_race", "sha256:race", t0)
	mustCreate(t, dbs[0], r)
	at := t0.Add(time.Minute)

	const perHandle = 20
	var (
		wg         sync.WaitGroup
		mu         sync.Mutex
		approvals  int
		consumes   int
		unexpected []error
	)
	for h, db := range dbs {
		for g := range perHandle {
			wg.Go(func() {
				_, aerr := db.AddApproval(ctx, r.ID, fmt.Sprintf("approver-%d-%d", h, g), at)
				_, cerr := db.Consume(ctx, r.ID, r.CallHash, at)
				mu.Lock()
				defer mu.Unlock()
				switch {
				case aerr == nil:
					approvals++
				case !errors.Is(aerr, approval.ErrNotPending):
					unexpected = append(unexpected, aerr)
				}
				switch {
				case cerr == nil:
					consumes++
				case !errors.Is(cerr, approval.ErrUsed) && !errors.Is(cerr, approval.ErrNotApproved):
					unexpected = append(unexpected, cerr)
				}
			})
		}
	}
	wg.Wait()
	if approvals != 1 || consumes != 1 || len(unexpected) > 0 {
		t.Errorf("%d goroutines on 2 handles: %d approvals and %d consumes succeeded, unexpected errors %v; want exactly 1 each, none",
			2*perHandle, approvals, consumes, unexpected)
	}
	got, err := dbs[1].Approval(ctx, r.ID)
	if err != nil || got.Status != approval.StatusUsed || len(got.Approvals) != 1 {
		t.Errorf("Approval(%q) after the race = %+v, %v; want used with one approval", r.ID, got, err)
	}
}
