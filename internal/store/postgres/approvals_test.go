package postgres_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"

	"github.com/chaperone-dev/chaperone/internal/approval"
	"github.com/chaperone-dev/chaperone/internal/store/pgtest"
	"github.com/chaperone-dev/chaperone/internal/store/postgres"
)

// pgPending returns a pending request for call hash, created at created and expiring 15
// minutes later.
func pgPending(id, hash string, created time.Time) *approval.Request {
	return &approval.Request{
		ID: id, CallHash: hash, Tool: "send_money", Upstream: "bank",
		Arguments: json.RawMessage(`{"amount":80,"to":"ACME"}`),
		Agent:     "finance-assistant", User: "dana@example.com", Task: "tsk_1", SessionID: "s1",
		Status: approval.StatusPending, Required: 1,
		CreatedAt: created, ExpiresAt: created.Add(15 * time.Minute),
	}
}

// pgNotes listens on db's channel from a connection of its own. Its next method returns
// the payloads notified since the last call: it sends a sentinel and reads up to it,
// since PostgreSQL delivers notifications in commit order.
type pgNotes struct {
	db   *postgres.DB
	conn *pgx.Conn
	n    int
}

func pgListen(t *testing.T, dsn string, db *postgres.DB) *pgNotes {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	if _, err := conn.Exec(t.Context(), "LISTEN "+pgx.Identifier{db.Channel()}.Sanitize()); err != nil {
		t.Fatal(err)
	}
	return &pgNotes{db: db, conn: conn}
}

func (l *pgNotes) next(t *testing.T) []string {
	t.Helper()
	l.n++
	sentinel := fmt.Sprint("sentinel-", l.n)
	if _, err := l.db.Pool().Exec(t.Context(), `SELECT pg_notify($1, $2)`, l.db.Channel(), sentinel); err != nil {
		t.Fatal(err)
	}
	var got []string
	for {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		n, err := l.conn.WaitForNotification(ctx)
		cancel()
		if err != nil {
			t.Fatalf("wait for notifications (so far %q): %v", got, err)
		}
		if n.Payload == sentinel {
			return got
		}
		got = append(got, n.Payload)
	}
}

// Of many creators of a pending request for one call, on several replicas, exactly one
// succeeds, round after round; requests for other calls are not held up.
func TestCreateApprovalPendingRace(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	dbs := pgReplicas(t, 2)
	const rounds, racers = 5, 16
	for round := range rounds {
		errs := make([]error, racers)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range racers {
			wg.Go(func() {
				<-start
				r := pgPending(fmt.Sprintf("apr_race_%d_%d", round, i), fmt.Sprint("sha256:same-", round), pgT0)
				errs[i] = dbs[i%2].CreateApproval(ctx, r)
			})
			wg.Go(func() {
				<-start
				r := pgPending(fmt.Sprintf("apr_other_%d_%d", round, i), fmt.Sprintf("sha256:other-%d-%d", round, i), pgT0)
				if err := dbs[i%2].CreateApproval(ctx, r); err != nil {
					t.Errorf("CreateApproval for call %d of round %d: %v", i, round, err)
				}
			})
		}
		close(start)
		wg.Wait()
		var wins int
		for i, err := range errs {
			switch {
			case err == nil:
				wins++
			case !errors.Is(err, approval.ErrPendingExists):
				t.Errorf("round %d, racer %d: %v, want ErrPendingExists", round, i, err)
			}
		}
		if wins != 1 {
			t.Fatalf("round %d: %d of %d creators of a pending request for one call succeeded, want 1", round, wins, racers)
		}
	}
	rs, err := dbs[0].Approvals(ctx, approval.Filter{Status: approval.StatusPending, Limit: approval.MaxListLimit})
	if err != nil || len(rs) != rounds*(racers+1) {
		t.Errorf("pending requests after the races = %d, %v; want %d", len(rs), err, rounds*(racers+1))
	}
}

// Many approvers and consumers on two replicas: one approval and one consume win.
func TestConsumeRaceAcrossReplicas(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	dbs := pgReplicas(t, 2)
	r := pgPending("apr_race", "sha256:race", pgT0)
	if err := dbs[0].CreateApproval(ctx, r); err != nil {
		t.Fatal(err)
	}
	at := pgT0.Add(time.Minute)
	const perReplica = 12
	var (
		wg                  sync.WaitGroup
		mu                  sync.Mutex
		approvals, consumes int
		unexpected          []error
	)
	for h, db := range dbs {
		for g := range perReplica {
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
		t.Errorf("%d goroutines on 2 replicas: %d approvals and %d consumes succeeded, unexpected errors %v; want exactly 1 each, none",
			2*perReplica, approvals, consumes, unexpected)
	}
	got, err := dbs[1].Approval(ctx, r.ID)
	if err != nil || got.Status != approval.StatusUsed || len(got.Approvals) != 1 {
		t.Errorf("Approval(%q) after the race = %+v, %v; want used with one approval", r.ID, got, err)
	}
}

// Two replicas expiring at once return each request once.
func TestExpireApprovalsAcrossReplicas(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	dbs := pgReplicas(t, 2)
	const n = 20
	for i := range n {
		if err := dbs[0].CreateApproval(ctx, pgPending(fmt.Sprintf("apr_%02d", i), fmt.Sprint("sha256:", i), pgT0)); err != nil {
			t.Fatal(err)
		}
	}
	seen := make(map[string]int)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := range 6 {
		wg.Go(func() {
			rs, err := dbs[i%2].ExpireApprovals(ctx, pgT0.Add(time.Hour))
			if err != nil {
				t.Errorf("ExpireApprovals: %v", err)
			}
			mu.Lock()
			defer mu.Unlock()
			for _, r := range rs {
				seen[r.ID]++
			}
		})
	}
	wg.Wait()
	if len(seen) != n {
		t.Errorf("%d requests expired, want %d", len(seen), n)
	}
	for id, k := range seen {
		if k != 1 {
			t.Errorf("request %s returned by %d calls, want 1", id, k)
		}
	}
}

// Every change of a request is notified, in its transaction; a refused one is not.
func TestApprovalNotifications(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	dsn := pgtest.DSN(t)
	db := pgOpen(t, dsn)
	l := pgListen(t, dsn, db)
	at := pgT0.Add(time.Minute)

	one := pgPending("apr_one", "sha256:one", pgT0)
	if err := db.CreateApproval(ctx, one); err != nil {
		t.Fatal(err)
	}
	if err := db.CreateApproval(ctx, pgPending("apr_dup", "sha256:one", pgT0)); !errors.Is(err, approval.ErrPendingExists) {
		t.Fatalf("CreateApproval(same call) = %v, want ErrPendingExists", err)
	}
	if err := db.CreateApproval(ctx, one); err == nil {
		t.Fatal("CreateApproval(same id) succeeded")
	}
	if _, err := db.Consume(ctx, one.ID, one.CallHash, at); !errors.Is(err, approval.ErrNotApproved) {
		t.Fatalf("Consume(pending) = %v, want ErrNotApproved", err)
	}
	if diff := cmp.Diff([]string{"approval:apr_one"}, l.next(t)); diff != "" {
		t.Errorf("notifications of create and refused writes (-want +got):\n%s", diff)
	}

	if _, err := db.AddApproval(ctx, one.ID, "erin", at); err != nil {
		t.Fatal(err)
	}
	if _, err := db.AddApproval(ctx, one.ID, "frank", at); !errors.Is(err, approval.ErrNotPending) {
		t.Fatalf("AddApproval(approved) = %v, want ErrNotPending", err)
	}
	if _, err := db.Consume(ctx, one.ID, one.CallHash, at); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Consume(ctx, one.ID, one.CallHash, at); !errors.Is(err, approval.ErrUsed) {
		t.Fatalf("Consume(used) = %v, want ErrUsed", err)
	}
	denied := pgPending("apr_denied", "sha256:denied", pgT0)
	late := pgPending("apr_late", "sha256:late", pgT0)
	swept := pgPending("apr_swept", "sha256:swept", pgT0.Add(-time.Hour))
	for _, r := range []*approval.Request{denied, late, swept} {
		if err := db.CreateApproval(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := db.Deny(ctx, denied.ID, "erin", "wrong_amount", "", at); err != nil {
		t.Fatal(err)
	}
	if _, err := db.AddApproval(ctx, late.ID, "erin", late.ExpiresAt); !errors.Is(err, approval.ErrExpired) {
		t.Fatalf("AddApproval at expiry = %v, want ErrExpired", err)
	}
	rs, err := db.ExpireApprovals(ctx, at)
	if err != nil || len(rs) != 1 || rs[0].ID != swept.ID {
		t.Fatalf("ExpireApprovals = %v, %v; want %s", rs, err, swept.ID)
	}
	want := []string{
		"approval:apr_one", "approval:apr_one", // approved, consumed
		"approval:apr_denied", "approval:apr_late", "approval:apr_swept", // created
		"approval:apr_denied", "approval:apr_late", "approval:apr_swept", // denied, marked expired, swept
	}
	if diff := cmp.Diff(want, l.next(t)); diff != "" {
		t.Errorf("notifications of decisions (-want +got):\n%s", diff)
	}
}

// Times are kept to the microsecond, in UTC; arguments come back byte for byte, as
// their hash was computed over them.
func TestApprovalStoredForms(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db := pgOpen(t, pgtest.DSN(t))
	cet := time.FixedZone("CET", 3600)
	created := time.Date(2026, 3, 1, 10, 0, 7, 123456789, cet)
	r := pgPending("apr_forms", "sha256:forms", created)
	r.Arguments = json.RawMessage(`{"b":1.0,"a":1e2,"s":"\u0000\u00e9"}`)
	if err := db.CreateApproval(ctx, r); err != nil {
		t.Fatal(err)
	}
	got, err := db.AddApproval(ctx, r.ID, "erin", created.Add(time.Nanosecond))
	if err != nil {
		t.Fatal(err)
	}
	stored, err := db.Approval(ctx, r.ID)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(got, stored); diff != "" {
		t.Errorf("AddApproval returned what is not stored (-returned +stored):\n%s", diff)
	}
	micro := created.UTC().Truncate(time.Microsecond)
	if !stored.CreatedAt.Equal(micro) || stored.CreatedAt.Location() != time.UTC ||
		!stored.Approvals[0].At.Equal(micro) || stored.Approvals[0].At.Location() != time.UTC {
		t.Errorf("stored times %v and %v, want %v in UTC", stored.CreatedAt, stored.Approvals[0].At, micro)
	}
	if string(stored.Arguments) != string(r.Arguments) {
		t.Errorf("stored arguments %s, want %s", stored.Arguments, r.Arguments)
	}
}
