package storetest

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/chaperone-dev/chaperone/internal/approval"
	"github.com/chaperone-dev/chaperone/internal/store"
)

// ctPending returns a pending request for call hash, created at created and expiring 15
// minutes later.
func ctPending(id, hash string, created time.Time) *approval.Request {
	return &approval.Request{
		ID: id, CallHash: hash, Tool: "send_money", Upstream: "bank",
		Arguments: json.RawMessage(`{"amount":80,"to":"ACME"}`),
		Agent:     "finance-assistant", User: "dana@example.com", Task: "tsk_1", SessionID: "s1",
		Status: approval.StatusPending, Required: 1,
		CreatedAt: created, ExpiresAt: created.Add(15 * time.Minute),
	}
}

func ctCreate(t *testing.T, st store.Store, r *approval.Request) {
	t.Helper()
	if err := st.CreateApproval(t.Context(), r); err != nil {
		t.Fatalf("CreateApproval(%q): %v", r.ID, err)
	}
}

// ctApprovalTimes returns every time of r, for ctUTC.
func ctApprovalTimes(r *approval.Request) []time.Time {
	ts := []time.Time{r.CreatedAt, r.ExpiresAt, r.DecidedAt, r.UsedAt}
	for _, v := range r.Approvals {
		ts = append(ts, v.At)
	}
	return ts
}

// ctApprovalIDs returns the ids of rs, in order.
func ctApprovalIDs(rs []approval.Request) []string {
	var ids []string
	for _, r := range rs {
		ids = append(ids, r.ID)
	}
	return ids
}

func ctApprovalCases() []ctCase {
	return []ctCase{
		{"RoundTripEveryField", ctApprovalRoundTrip},
		{"CreateRefusesInvalid", ctApprovalInvalid},
		{"PendingApproval", ctApprovalPending},
		{"ListFilterLimit", ctApprovalList},
		{"Decisions", ctApprovalDecisions},
		{"Consume", ctApprovalConsume},
		{"Expire", ctApprovalExpire},
		{"DeclineCounts", ctApprovalDeclineCounts},
		{"ConsumeRace", ctApprovalConsumeRace},
		{"ApproveAndConsumeRace", ctApprovalApproveConsumeRace},
		{"TwoPersonRace", ctApprovalTwoPersonRace},
		{"SameApproverRace", ctApprovalSameApproverRace},
		{"ApproveOrDenyRace", ctApprovalDecideRace},
		{"PendingExistsRace", ctApprovalPendingRace},
		{"ExpireRace", ctApprovalExpireRace},
	}
}

func ctApprovalRoundTrip(t *testing.T, st store.Store) {
	ctx := t.Context()
	full := &approval.Request{
		ID: "apr_full", CallHash: "sha256:aa", Tool: "send_money", Upstream: "bank",
		Arguments: json.RawMessage(`{"memo":"loyer <&> é 🏠","amount":80.50,"nested":{"z":[1,2],"a":null}}`),
		Agent:     "finance-assistant", User: "dana@example.com", Task: "tsk_1", SessionID: "sess-1",
		Reason: "monthly rent — März", Rules: []string{"payments-need-a-person", "two-person"}, PolicyVersion: "sha256:pp",
		Risk: 80, RiskFactors: []string{"new recipient", "amount"}, Explanation: "amount read from mail",
		Undo: "call refund", Status: approval.StatusDenied, Required: 2,
		Approvals: []approval.Verdict{{By: "erin", At: ctT0.Add(time.Second)}},
		DeniedBy:  "frank", DenyCode: "wrong_amount", DenyText: "should be 800",
		CreatedAt: ctT0, ExpiresAt: ctT0.Add(15 * time.Minute),
		DecidedAt: ctT0.Add(2 * time.Second), UsedAt: ctT0.Add(3*time.Second + 7*time.Microsecond),
	}
	ctAllSet(t, "the full approval request", full)
	bare := ctPending("apr_bare", "sha256:bb", ctT0)
	bare.Arguments = nil // read back as {}
	for _, r := range []*approval.Request{full, bare} {
		ctCreate(t, st, r)
	}
	got, err := st.Approval(ctx, full.ID)
	if err != nil {
		t.Fatalf("Approval(%q): %v", full.ID, err)
	}
	if diff := cmp.Diff(full, got); diff != "" {
		t.Errorf("Approval(%q) (-want +got):\n%s", full.ID, diff)
	}
	ctUTC(t, "Approval(apr_full) times", ctApprovalTimes(got)...)
	got, err = st.Approval(ctx, bare.ID)
	if err != nil {
		t.Fatalf("Approval(%q): %v", bare.ID, err)
	}
	bare.Arguments = json.RawMessage(`{}`)
	if diff := cmp.Diff(bare, got); diff != "" {
		t.Errorf("Approval(%q) (-want +got):\n%s", bare.ID, diff)
	}
	list, err := st.Approvals(ctx, approval.Filter{})
	if err != nil {
		t.Fatalf("Approvals: %v", err)
	}
	// Both created at ctT0: newest first, then by id descending.
	if diff := cmp.Diff([]approval.Request{*full, *bare}, list); diff != "" {
		t.Errorf("Approvals() (-want +got):\n%s", diff)
	}
	if _, err := st.Approval(ctx, "apr_nope"); !errors.Is(err, approval.ErrNotFound) {
		t.Errorf("Approval(apr_nope) = %v, want ErrNotFound", err)
	}
}

func ctApprovalInvalid(t *testing.T, st store.Store) {
	ctx := t.Context()
	stored := ctPending("apr_stored", "sha256:stored", ctT0)
	stored.Status = approval.StatusUsed
	ctCreate(t, st, stored)
	for _, tt := range []struct {
		name string
		mod  func(*approval.Request)
	}{
		{"no id", func(r *approval.Request) { r.ID = "" }},
		{"no call hash", func(r *approval.Request) { r.CallHash = "" }},
		{"id taken", func(r *approval.Request) { r.ID = stored.ID }},
		{"arguments not an object", func(r *approval.Request) { r.Arguments = json.RawMessage(`[1]`) }},
		{"arguments not JSON", func(r *approval.Request) { r.Arguments = json.RawMessage(`{"a":`) }},
		{"risk 101", func(r *approval.Request) { r.Risk = 101 }},
		{"risk -1", func(r *approval.Request) { r.Risk = -1 }},
		{"unknown status", func(r *approval.Request) { r.Status = "maybe" }},
		{"required 0", func(r *approval.Request) { r.Required = 0 }},
	} {
		r := ctPending("apr_bad", "sha256:bad-"+tt.name, ctT0)
		tt.mod(r)
		if err := st.CreateApproval(ctx, r); err == nil {
			t.Errorf("CreateApproval(%s) succeeded, want an error", tt.name)
		}
	}
	list, err := st.Approvals(ctx, approval.Filter{})
	if err != nil || len(list) != 1 || list[0].ID != stored.ID || list[0].CallHash != stored.CallHash {
		t.Errorf("Approvals() after refused creates = %v, %v; want only %q as stored", ctApprovalIDs(list), err, stored.ID)
	}
}

func ctApprovalPending(t *testing.T, st store.Store) {
	ctx := t.Context()
	// Times whose RFC 3339 text order is not their time order: 09:00:07.1 sorts after
	// 09:00:07.123 as text.
	older := ctPending("apr_older", "sha256:h", ctT0.Truncate(time.Second).Add(100*time.Millisecond))
	ctCreate(t, st, older)
	// A decided request for the same call is never returned, and does not block.
	used := ctPending("apr_used", "sha256:h", older.CreatedAt.Add(23*time.Millisecond))
	used.Status = approval.StatusUsed
	ctCreate(t, st, used)
	// A second pending request for the same call is refused while the first is pending,
	// and not stored.
	newer := ctPending("apr_newer", "sha256:h", older.CreatedAt.Add(23*time.Millisecond))
	ctCheckErr(t, "CreateApproval(a second pending request for the same call)", st.CreateApproval(ctx, newer), approval.ErrPendingExists)
	if _, err := st.Approval(ctx, newer.ID); !errors.Is(err, approval.ErrNotFound) {
		t.Errorf("Approval(%q) after ErrPendingExists = %v, want ErrNotFound", newer.ID, err)
	}

	check := func(name, hash string, now time.Time, want *approval.Request) {
		t.Helper()
		got, ok, err := st.PendingApproval(ctx, hash, now)
		if err != nil {
			t.Fatalf("PendingApproval(%s): %v", name, err)
		}
		switch {
		case want == nil && ok:
			t.Errorf("PendingApproval(%s) = %q, want none", name, got.ID)
		case want != nil && !ok:
			t.Errorf("PendingApproval(%s) = none, want %q", name, want.ID)
		case want != nil:
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("PendingApproval(%s) (-want +got):\n%s", name, diff)
			}
		}
	}
	check("pending", "sha256:h", older.CreatedAt.Add(time.Second), older)
	check("just before expiry", "sha256:h", older.ExpiresAt.Add(-time.Microsecond), older)
	check("at expiry", "sha256:h", older.ExpiresAt, nil)
	check("other call", "sha256:other", older.CreatedAt, nil)
	check("a prefix of the call hash", "sha256:", older.CreatedAt, nil)

	// At the first one's expiry, a new pending request for the call is allowed.
	newer.CreatedAt = older.ExpiresAt
	newer.ExpiresAt = newer.CreatedAt.Add(time.Minute)
	ctCreate(t, st, newer)
	check("before the first's expiry, the newest", "sha256:h", older.ExpiresAt.Add(-time.Second), newer)
	check("after the first's expiry, the new one", "sha256:h", newer.CreatedAt, newer)
	check("all expired", "sha256:h", newer.ExpiresAt, nil)
}

func ctApprovalList(t *testing.T, st store.Store) {
	ctx := t.Context()
	base := ctT0.Truncate(time.Second)
	var ids []string
	// Offsets whose RFC 3339 text order is not their time order.
	for i, off := range []time.Duration{0, 100 * time.Millisecond, 123 * time.Millisecond, time.Second, 1500 * time.Millisecond} {
		r := ctPending(fmt.Sprintf("apr_%d", i), fmt.Sprintf("sha256:%d", i), base.Add(off))
		if i%2 == 1 {
			r.Tool = "read_file"
			r.Status = approval.StatusDenied
		}
		ctCreate(t, st, r)
		ids = append([]string{r.ID}, ids...) // newest first
	}
	for _, tt := range []struct {
		name string
		f    approval.Filter
		want []string
	}{
		{"all", approval.Filter{}, ids},
		{"limit", approval.Filter{Limit: 2}, ids[:2]},
		{"limit 1", approval.Filter{Limit: 1}, ids[:1]},
		{"negative limit is the default", approval.Filter{Limit: -1}, ids},
		{"limit above the maximum is the maximum", approval.Filter{Limit: approval.MaxListLimit + 1}, ids},
		{"status", approval.Filter{Status: approval.StatusDenied}, []string{"apr_3", "apr_1"}},
		{"tool", approval.Filter{Tool: "send_money"}, []string{"apr_4", "apr_2", "apr_0"}},
		{"status and tool", approval.Filter{Status: approval.StatusPending, Tool: "send_money", Limit: 2}, []string{"apr_4", "apr_2"}},
		{"status and tool, none", approval.Filter{Status: approval.StatusPending, Tool: "read_file"}, nil},
		{"a tool that is a prefix", approval.Filter{Tool: "send"}, nil},
	} {
		rs, err := st.Approvals(ctx, tt.f)
		if err != nil {
			t.Fatalf("Approvals(%s): %v", tt.name, err)
		}
		if diff := cmp.Diff(tt.want, ctApprovalIDs(rs)); diff != "" {
			t.Errorf("Approvals(%s) (-want +got):\n%s", tt.name, diff)
		}
	}
}

func ctApprovalDecisions(t *testing.T, st store.Store) {
	ctx := t.Context()
	at := ctT0.Add(time.Minute)

	// One approver.
	one := ctPending("apr_one", "sha256:one", ctT0)
	ctCreate(t, st, one)
	got, err := st.AddApproval(ctx, one.ID, "erin", at)
	if err != nil {
		t.Fatalf("AddApproval(%q): %v", one.ID, err)
	}
	want := *one
	want.Status, want.DecidedAt, want.Approvals = approval.StatusApproved, at, []approval.Verdict{{By: "erin", At: at}}
	if diff := cmp.Diff(&want, got); diff != "" {
		t.Errorf("AddApproval(%q) (-want +got):\n%s", one.ID, diff)
	}
	ctUTC(t, "AddApproval result times", ctApprovalTimes(got)...)
	if stored, err := st.Approval(ctx, one.ID); err != nil || !cmp.Equal(got, stored) {
		t.Errorf("Approval(%q) after approve = %+v, %v; want %+v", one.ID, stored, err, got)
	}
	ctCheckErr(t, "AddApproval(approved request)", ctErr(st.AddApproval(ctx, one.ID, "frank", at)), approval.ErrNotPending)
	ctCheckErr(t, "Deny(approved request)", ctErr(st.Deny(ctx, one.ID, "frank", "other", "x", at)), approval.ErrNotPending)

	// Two approvers, compared case-insensitively.
	two := ctPending("apr_two", "sha256:two", ctT0)
	two.Required = 2
	ctCreate(t, st, two)
	got, err = st.AddApproval(ctx, two.ID, "erin", at)
	if err != nil || got.Status != approval.StatusPending || len(got.Approvals) != 1 || !got.DecidedAt.IsZero() {
		t.Fatalf("AddApproval(%q, erin) = %+v, %v; want pending with one approval", two.ID, got, err)
	}
	ctCheckErr(t, "AddApproval(ERIN after erin)", ctErr(st.AddApproval(ctx, two.ID, "ERIN", at)), approval.ErrSameApprover)
	got, err = st.AddApproval(ctx, two.ID, "frank", at.Add(time.Second))
	if err != nil || got.Status != approval.StatusApproved || !got.DecidedAt.Equal(at.Add(time.Second)) {
		t.Fatalf("AddApproval(%q, frank) = %+v, %v; want approved", two.ID, got, err)
	}
	wantVerdicts := []approval.Verdict{{By: "erin", At: at}, {By: "frank", At: at.Add(time.Second)}}
	if diff := cmp.Diff(wantVerdicts, got.Approvals); diff != "" {
		t.Errorf("approvals of %q (-want +got):\n%s", two.ID, diff)
	}
	if stored, err := st.Approval(ctx, two.ID); err != nil || !cmp.Equal(got, stored) {
		t.Errorf("Approval(%q) after two approvals = %+v, %v; want %+v", two.ID, stored, err, got)
	}

	// Deny.
	denied := ctPending("apr_denied", "sha256:denied", ctT0)
	ctCreate(t, st, denied)
	got, err = st.Deny(ctx, denied.ID, "erin", "wrong_amount", "too much", at)
	if err != nil {
		t.Fatalf("Deny(%q): %v", denied.ID, err)
	}
	want = *denied
	want.Status, want.DecidedAt, want.DeniedBy, want.DenyCode, want.DenyText = approval.StatusDenied, at, "erin", "wrong_amount", "too much"
	if diff := cmp.Diff(&want, got); diff != "" {
		t.Errorf("Deny(%q) (-want +got):\n%s", denied.ID, diff)
	}
	if stored, err := st.Approval(ctx, denied.ID); err != nil || !cmp.Equal(got, stored) {
		t.Errorf("Approval(%q) after deny = %+v, %v; want %+v", denied.ID, stored, err, got)
	}
	ctCheckErr(t, "AddApproval(denied request)", ctErr(st.AddApproval(ctx, denied.ID, "frank", at)), approval.ErrNotPending)
	ctCheckErr(t, "Deny(denied request)", ctErr(st.Deny(ctx, denied.ID, "frank", "other", "x", at)), approval.ErrNotPending)

	// A decision at or after the expiry marks the request expired.
	late := ctPending("apr_late", "sha256:late", ctT0)
	ctCreate(t, st, late)
	ctCheckErr(t, "AddApproval(at expiry)", ctErr(st.AddApproval(ctx, late.ID, "erin", late.ExpiresAt)), approval.ErrExpired)
	if r, err := st.Approval(ctx, late.ID); err != nil || r.Status != approval.StatusExpired || !r.DecidedAt.Equal(late.ExpiresAt) || len(r.Approvals) != 0 {
		t.Errorf("Approval(%q) after a late approve = %+v, %v; want expired at %v with no approval", late.ID, r, err, late.ExpiresAt)
	}
	ctCheckErr(t, "Deny(expired request)", ctErr(st.Deny(ctx, late.ID, "erin", "other", "x", late.ExpiresAt)), approval.ErrExpired)
	ctCheckErr(t, "AddApproval(expired request, before its expiry)", ctErr(st.AddApproval(ctx, late.ID, "erin", at)), approval.ErrExpired)
	lateDeny := ctPending("apr_late_deny", "sha256:late-deny", ctT0)
	ctCreate(t, st, lateDeny)
	ctCheckErr(t, "Deny(after expiry)", ctErr(st.Deny(ctx, lateDeny.ID, "erin", "other", "x", lateDeny.ExpiresAt.Add(time.Hour))), approval.ErrExpired)
	if r, err := st.Approval(ctx, lateDeny.ID); err != nil || r.Status != approval.StatusExpired || r.DeniedBy != "" {
		t.Errorf("Approval(%q) after a late deny = %+v, %v; want expired, not denied", lateDeny.ID, r, err)
	}

	ctCheckErr(t, "AddApproval(apr_nope)", ctErr(st.AddApproval(ctx, "apr_nope", "erin", at)), approval.ErrNotFound)
	ctCheckErr(t, "Deny(apr_nope)", ctErr(st.Deny(ctx, "apr_nope", "erin", "other", "x", at)), approval.ErrNotFound)

	// A decision without a name of who decided is refused, and changes nothing.
	blank := ctPending("apr_blank", "sha256:blank", ctT0)
	ctCreate(t, st, blank)
	if _, err := st.AddApproval(ctx, blank.ID, "", at); err == nil {
		t.Error("AddApproval(by \"\") succeeded, want an error")
	}
	if _, err := st.Deny(ctx, blank.ID, "", "other", "x", at); err == nil {
		t.Error("Deny(by \"\") succeeded, want an error")
	}
	if _, err := st.Deny(ctx, blank.ID, "erin", "", "x", at); err == nil {
		t.Error("Deny(code \"\") succeeded, want an error")
	}
	if r, err := st.Approval(ctx, blank.ID); err != nil || !cmp.Equal(blank, r) {
		t.Errorf("Approval(%q) after refused decisions = %+v, %v; want it unchanged", blank.ID, r, err)
	}
}

// ctErr drops the request of a decision, keeping its error.
func ctErr(_ *approval.Request, err error) error { return err }

func ctApprovalConsume(t *testing.T, st store.Store) {
	ctx := t.Context()
	at := ctT0.Add(time.Minute)
	approved := ctPending("apr_ok", "sha256:ok", ctT0)
	ctCreate(t, st, approved)
	if _, err := st.AddApproval(ctx, approved.ID, "erin", at); err != nil {
		t.Fatal(err)
	}
	denied := ctPending("apr_denied", "sha256:denied", ctT0)
	ctCreate(t, st, denied)
	if _, err := st.Deny(ctx, denied.ID, "erin", "other", "x", at); err != nil {
		t.Fatal(err)
	}
	expired := ctPending("apr_expired", "sha256:expired", ctT0)
	ctCreate(t, st, expired)
	if _, err := st.AddApproval(ctx, expired.ID, "erin", expired.ExpiresAt); !errors.Is(err, approval.ErrExpired) {
		t.Fatalf("AddApproval(at expiry) = %v, want ErrExpired", err)
	}
	pending := ctPending("apr_pending", "sha256:pending", ctT0)
	ctCreate(t, st, pending)

	for _, tt := range []struct {
		name, id, hash string
		now            time.Time
		want           error
	}{
		{"unknown", "apr_nope", "sha256:ok", at, approval.ErrNotFound},
		{"wrong call", approved.ID, "sha256:pending", at, approval.ErrMismatch},
		{"approved, at its expiry", approved.ID, approved.CallHash, approved.ExpiresAt, approval.ErrExpired},
		{"denied", denied.ID, denied.CallHash, at, approval.ErrNotApproved},
		{"expired request", expired.ID, expired.CallHash, at, approval.ErrNotApproved},
		{"expired request is expired too", expired.ID, expired.CallHash, at, approval.ErrExpired},
		{"pending", pending.ID, pending.CallHash, at, approval.ErrNotApproved},
	} {
		ctCheckErr(t, "Consume("+tt.name+")", ctErr(st.Consume(ctx, tt.id, tt.hash, tt.now)), tt.want)
	}
	// None of the refused consumes used the approval.
	used, err := st.Consume(ctx, approved.ID, approved.CallHash, at.Add(time.Second))
	if err != nil {
		t.Fatalf("Consume(%q): %v", approved.ID, err)
	}
	want, err := st.Approval(ctx, approved.ID)
	if err != nil {
		t.Fatal(err)
	}
	if want.Status != approval.StatusUsed || !want.UsedAt.Equal(at.Add(time.Second)) || !want.DecidedAt.Equal(at) {
		t.Errorf("Approval(%q) after Consume = %+v; want used at %v, decided at %v", approved.ID, want, at.Add(time.Second), at)
	}
	if diff := cmp.Diff(want, used); diff != "" {
		t.Errorf("Consume(%q) returned (-stored +returned):\n%s", approved.ID, diff)
	}
	ctUTC(t, "Consume result times", ctApprovalTimes(used)...)
	ctCheckErr(t, "Consume(used)", ctErr(st.Consume(ctx, approved.ID, approved.CallHash, at)), approval.ErrUsed)
}

func ctApprovalExpire(t *testing.T, st store.Store) {
	ctx := t.Context()
	exp1 := ctPending("apr_exp1", "sha256:exp1", ctT0.Add(time.Second))
	exp2 := ctPending("apr_exp2", "sha256:exp2", ctT0.Add(2*time.Second))
	exp0 := ctPending("apr_exp0", "sha256:exp0", ctT0)
	later := ctPending("apr_later", "sha256:later", ctT0.Add(time.Minute))
	decided := ctPending("apr_decided", "sha256:decided", ctT0)
	decided.Status = approval.StatusDenied
	for _, r := range []*approval.Request{exp2, later, exp1, decided, exp0} {
		ctCreate(t, st, r)
	}
	if got, err := st.ExpireApprovals(ctx, exp0.ExpiresAt.Add(-time.Microsecond)); err != nil || len(got) != 0 {
		t.Errorf("ExpireApprovals(before any expiry) = %v, %v; want none", ctApprovalIDs(got), err)
	}
	// At exp1's expiry: exp0 and exp1 (at or past their expiry), oldest first.
	now := exp1.ExpiresAt
	got, err := st.ExpireApprovals(ctx, now)
	if err != nil {
		t.Fatalf("ExpireApprovals(%v): %v", now, err)
	}
	var want []approval.Request
	for _, r := range []*approval.Request{exp0, exp1} {
		w := *r
		w.Status, w.DecidedAt = approval.StatusExpired, now
		want = append(want, w)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ExpireApprovals(%v) (-want +got):\n%s", now, diff)
	}
	for _, r := range got {
		ctUTC(t, "ExpireApprovals result times", ctApprovalTimes(&r)...)
	}
	if again, err := st.ExpireApprovals(ctx, now); err != nil || len(again) != 0 {
		t.Errorf("ExpireApprovals(%v) again = %v, %v; want none: each request is returned once", now, ctApprovalIDs(again), err)
	}
	for _, w := range want {
		if r, err := st.Approval(ctx, w.ID); err != nil || !cmp.Equal(&w, r) {
			t.Errorf("Approval(%q) after expiry = %+v, %v; want %+v", w.ID, r, err, w)
		}
	}
	if rs, err := st.Approvals(ctx, approval.Filter{Status: approval.StatusExpired}); err != nil || !cmp.Equal([]string{"apr_exp1", "apr_exp0"}, ctApprovalIDs(rs)) {
		t.Errorf("Approvals(expired) = %v, %v; want apr_exp1, apr_exp0", ctApprovalIDs(rs), err)
	}
	got, err = st.ExpireApprovals(ctx, later.ExpiresAt.Add(time.Hour))
	if err != nil || !cmp.Equal([]string{"apr_exp2", "apr_later"}, ctApprovalIDs(got)) {
		t.Errorf("ExpireApprovals(later) = %v, %v; want apr_exp2, apr_later", ctApprovalIDs(got), err)
	}
	if r, err := st.Approval(ctx, decided.ID); err != nil || r.Status != approval.StatusDenied {
		t.Errorf("Approval(%q) after expiry = %+v, %v; want still denied", decided.ID, r, err)
	}
}

func ctApprovalDeclineCounts(t *testing.T, st store.Store) {
	ctx := t.Context()
	at := ctT0.Add(time.Minute)
	if got, err := st.DeclineCounts(ctx, ctT0); err != nil || len(got) != 0 {
		t.Errorf("DeclineCounts on an empty store = %v, %v; want none", got, err)
	}
	for i, d := range []struct {
		code string
		at   time.Time
	}{
		{"wrong_amount", at},
		{"wrong_amount", at.Add(time.Hour)},
		{"suspicious", at.Add(time.Hour)},
		{"other", at.Add(2 * time.Hour)},
	} {
		r := ctPending(fmt.Sprintf("apr_dc%d", i), fmt.Sprintf("sha256:dc%d", i), ctT0)
		r.ExpiresAt = ctT0.Add(24 * time.Hour)
		ctCreate(t, st, r)
		if _, err := st.Deny(ctx, r.ID, "erin", d.code, "", d.at); err != nil {
			t.Fatalf("Deny(%q): %v", r.ID, err)
		}
	}
	// Approved, expired and pending requests are not declines.
	ok := ctPending("apr_ok", "sha256:ok", ctT0)
	ctCreate(t, st, ok)
	if _, err := st.AddApproval(ctx, ok.ID, "erin", at); err != nil {
		t.Fatal(err)
	}
	ctCreate(t, st, ctPending("apr_pending", "sha256:pending", ctT0))
	if _, err := st.ExpireApprovals(ctx, ctT0.Add(16*time.Minute)); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		since time.Time
		want  map[string]int
	}{
		{ctT0, map[string]int{"wrong_amount": 2, "suspicious": 1, "other": 1}},
		{at, map[string]int{"wrong_amount": 2, "suspicious": 1, "other": 1}},
		{at.Add(time.Microsecond), map[string]int{"wrong_amount": 1, "suspicious": 1, "other": 1}},
		{at.Add(time.Hour), map[string]int{"wrong_amount": 1, "suspicious": 1, "other": 1}},
		{at.Add(2 * time.Hour), map[string]int{"other": 1}},
		{at.Add(3 * time.Hour), map[string]int{}},
	} {
		got, err := st.DeclineCounts(ctx, tt.since)
		if err != nil {
			t.Fatalf("DeclineCounts(%v): %v", tt.since, err)
		}
		if len(got) == 0 && len(tt.want) == 0 {
			continue
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("DeclineCounts(%v) (-want +got):\n%s", tt.since, diff)
		}
	}
}

// ctApprovedRequest stores a request approved by erin at ctT0+1m.
func ctApprovedRequest(t *testing.T, st store.Store, id string) *approval.Request {
	t.Helper()
	r := ctPending(id, "sha256:"+id, ctT0)
	ctCreate(t, st, r)
	got, err := st.AddApproval(t.Context(), r.ID, "erin", ctT0.Add(time.Minute))
	if err != nil || got.Status != approval.StatusApproved {
		t.Fatalf("AddApproval(%q) = %+v, %v; want approved", id, got, err)
	}
	return got
}

func ctApprovalConsumeRace(t *testing.T, st store.Store) {
	ctx := t.Context()
	for round := range ctRounds {
		r := ctApprovedRequest(t, st, fmt.Sprint("apr_race_", round))
		at := ctT0.Add(2 * time.Minute)
		errs := ctRace(ctRaceN, func(int) error { return ctErr(st.Consume(ctx, r.ID, r.CallHash, at)) })
		ctOneWinner(t, fmt.Sprintf("round %d: Consume of one approval", round), errs, approval.ErrUsed)
		if got, err := st.Approval(ctx, r.ID); err != nil || got.Status != approval.StatusUsed || !got.UsedAt.Equal(at) {
			t.Errorf("Approval(%q) after the race = %+v, %v; want used at %v", r.ID, got, err, at)
		}
	}
}

// ctApprovalApproveConsumeRace races approvals and consumes of one request, as gateway
// replicas would: exactly one approval and one consume win.
func ctApprovalApproveConsumeRace(t *testing.T, st store.Store) {
	ctx := t.Context()
	r := ctPending("apr_race", "sha256:race", ctT0)
	ctCreate(t, st, r)
	at := ctT0.Add(time.Minute)
	approveErrs := make([]error, ctRaceN)
	consumeErrs := ctRace(ctRaceN, func(i int) error {
		approveErrs[i] = ctErr(st.AddApproval(ctx, r.ID, fmt.Sprint("approver-", i), at))
		return ctErr(st.Consume(ctx, r.ID, r.CallHash, at))
	})
	ctOneWinner(t, "AddApproval of one request by different people", approveErrs, approval.ErrNotPending)
	// A racer that consumed before the approval gets ErrNotApproved.
	ctOneWinner(t, "Consume of one request", consumeErrs, approval.ErrUsed, approval.ErrNotApproved)
	got, err := st.Approval(ctx, r.ID)
	if err != nil || got.Status != approval.StatusUsed || len(got.Approvals) != 1 {
		t.Errorf("Approval(%q) after the race = %+v, %v; want used with one approval", r.ID, got, err)
	}
}

// ctApprovalTwoPersonRace races distinct approvers on a request that needs two: the
// first two count, in the order the store took them, and the rest find it decided.
func ctApprovalTwoPersonRace(t *testing.T, st store.Store) {
	ctx := t.Context()
	r := ctPending("apr_two", "sha256:two", ctT0)
	r.Required = 2
	ctCreate(t, st, r)
	at := ctT0.Add(time.Minute)
	results := make([]*approval.Request, ctRaceN)
	errs := ctRace(ctRaceN, func(i int) error {
		var err error
		results[i], err = st.AddApproval(ctx, r.ID, fmt.Sprint("approver-", i), at.Add(time.Duration(i)*time.Second))
		return err
	})
	var pending, approved []int
	for i, err := range errs {
		switch {
		case err == nil && results[i].Status == approval.StatusPending:
			pending = append(pending, i)
		case err == nil && results[i].Status == approval.StatusApproved:
			approved = append(approved, i)
		case err == nil:
			t.Errorf("AddApproval by racer %d = status %q, want pending or approved", i, results[i].Status)
		case !errors.Is(err, approval.ErrNotPending):
			t.Errorf("AddApproval by racer %d = %v, want ErrNotPending", i, err)
		}
	}
	if len(pending) != 1 || len(approved) != 1 {
		t.Fatalf("%d racing approvers of a two-person request: %d left it pending and %d approved it, want 1 and 1", ctRaceN, len(pending), len(approved))
	}
	first, second := pending[0], approved[0]
	want := []approval.Verdict{
		{By: fmt.Sprint("approver-", first), At: at.Add(time.Duration(first) * time.Second)},
		{By: fmt.Sprint("approver-", second), At: at.Add(time.Duration(second) * time.Second)},
	}
	got, err := st.Approval(ctx, r.ID)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got.Approvals); diff != "" {
		t.Errorf("approvals after the race (-want +got):\n%s", diff)
	}
	if got.Status != approval.StatusApproved || !got.DecidedAt.Equal(want[1].At) {
		t.Errorf("Approval(%q) after the race = %+v; want approved at %v", r.ID, got, want[1].At)
	}
	if diff := cmp.Diff(got, results[second]); diff != "" {
		t.Errorf("the approving AddApproval's result (-stored +returned):\n%s", diff)
	}
}

// ctApprovalSameApproverRace races one person (in different cases) approving a
// two-person request: one approval counts, the rest are ErrSameApprover.
func ctApprovalSameApproverRace(t *testing.T, st store.Store) {
	ctx := t.Context()
	r := ctPending("apr_same", "sha256:same", ctT0)
	r.Required = 2
	ctCreate(t, st, r)
	names := []string{"erin", "ERIN", "Erin", "eRIN"}
	errs := ctRace(ctRaceN, func(i int) error {
		return ctErr(st.AddApproval(ctx, r.ID, names[i%len(names)], ctT0.Add(time.Minute)))
	})
	ctOneWinner(t, "AddApproval by one person in different cases", errs, approval.ErrSameApprover)
	got, err := st.Approval(ctx, r.ID)
	if err != nil || got.Status != approval.StatusPending || len(got.Approvals) != 1 || !strings.EqualFold(got.Approvals[0].By, "erin") {
		t.Errorf("Approval(%q) after the race = %+v, %v; want pending with one approval by erin", r.ID, got, err)
	}
}

// ctApprovalDecideRace races approvals against denials: one decision wins and the
// stored request is that decision, whole.
func ctApprovalDecideRace(t *testing.T, st store.Store) {
	ctx := t.Context()
	r := ctPending("apr_decide", "sha256:decide", ctT0)
	ctCreate(t, st, r)
	at := ctT0.Add(time.Minute)
	results := make([]*approval.Request, ctRaceN)
	errs := ctRace(ctRaceN, func(i int) error {
		var err error
		if i%2 == 0 {
			results[i], err = st.AddApproval(ctx, r.ID, fmt.Sprint("approver-", i), at)
		} else {
			results[i], err = st.Deny(ctx, r.ID, fmt.Sprint("denier-", i), "suspicious", "", at)
		}
		return err
	})
	w := ctOneWinner(t, "AddApproval and Deny of one request", errs, approval.ErrNotPending)
	got, err := st.Approval(ctx, r.ID)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(results[w], got); diff != "" {
		t.Errorf("stored request after the race (-winner +stored):\n%s", diff)
	}
	if got.Status == approval.StatusApproved && got.DeniedBy != "" || got.Status == approval.StatusDenied && len(got.Approvals) != 0 {
		t.Errorf("stored request after the race mixes decisions: %+v", got)
	}
}

// ctApprovalPendingRace creates pending requests for one call from many goroutines,
// round after round (warm connections race harder than fresh ones): each round stores
// exactly one.
func ctApprovalPendingRace(t *testing.T, st store.Store) {
	ctx := t.Context()
	var want []string
	for round := range ctRounds {
		errs := ctRace(ctRaceN, func(i int) error {
			return st.CreateApproval(ctx, ctPending(fmt.Sprintf("apr_%d_%02d", round, i), fmt.Sprint("sha256:same-call-", round),
				ctT0.Add(time.Duration(round)*time.Minute+time.Duration(i)*time.Millisecond)))
		})
		w := ctOneWinner(t, fmt.Sprintf("round %d: CreateApproval of pending requests for one call", round), errs, approval.ErrPendingExists)
		want = append([]string{fmt.Sprintf("apr_%d_%02d", round, w)}, want...) // newest first
	}
	rs, err := st.Approvals(ctx, approval.Filter{})
	if err != nil || !cmp.Equal(want, ctApprovalIDs(rs)) {
		t.Errorf("Approvals() after the races = %v, %v; want only the winners %v", ctApprovalIDs(rs), err, want)
	}
}

// ctApprovalExpireRace expires from many goroutines at once: each request is returned
// by exactly one call.
func ctApprovalExpireRace(t *testing.T, st store.Store) {
	ctx := t.Context()
	const n = 10
	for i := range n {
		ctCreate(t, st, ctPending(fmt.Sprint("apr_", i), fmt.Sprint("sha256:", i), ctT0))
	}
	results := make([][]approval.Request, ctRaceN)
	errs := ctRace(ctRaceN, func(i int) error {
		var err error
		results[i], err = st.ExpireApprovals(ctx, ctT0.Add(time.Hour))
		return err
	})
	seen := map[string]int{}
	for i, err := range errs {
		if err != nil {
			t.Errorf("ExpireApprovals by racer %d: %v", i, err)
		}
		for _, r := range results[i] {
			seen[r.ID]++
		}
	}
	if len(seen) != n {
		t.Errorf("racing ExpireApprovals returned %d distinct requests, want %d: %v", len(seen), n, seen)
	}
	for id, k := range seen {
		if k != 1 {
			t.Errorf("racing ExpireApprovals returned %q %d times, want once", id, k)
		}
	}
}
