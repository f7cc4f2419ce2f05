package sqlite_test

import (
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/chaperone-dev/chaperone/internal/contain"
)

func idemRecord(agent, key, requestID string, created time.Time) contain.IdemRecord {
	return contain.IdemRecord{
		Agent: agent, Key: key, Tool: "send_money", ArgsHash: "sha256:aa", RequestID: requestID,
		State: contain.IdemRunning, CreatedAt: created,
	}
}

func TestIdemLifecycle(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db, _ := openTemp(t)

	rec := idemRecord("finance", "pay-1", "req-1", t0)
	if got, created, err := db.CreateIdem(ctx, rec); err != nil || !created || got != nil {
		t.Fatalf("CreateIdem(new) = %v, %v, %v; want nil, true, nil", got, created, err)
	}
	// A second claim, even with other fields, gets the first record.
	other := idemRecord("finance", "pay-1", "req-2", t0.Add(time.Second))
	other.ArgsHash = "sha256:bb"
	got, created, err := db.CreateIdem(ctx, other)
	if err != nil || created {
		t.Fatalf("CreateIdem(existing) = %v, %v, %v; want the record, false", got, created, err)
	}
	if diff := cmp.Diff(&rec, got); diff != "" {
		t.Errorf("CreateIdem(existing) record (-want +got):\n%s", diff)
	}
	// Keys are per agent.
	if _, created, err := db.CreateIdem(ctx, idemRecord("mail", "pay-1", "req-3", t0)); err != nil || !created {
		t.Errorf("CreateIdem(other agent, same key) = %v, %v; want created", created, err)
	}

	result := json.RawMessage(`{"content":[{"type":"text","text":"sent"}]}`)
	finished := t0.Add(2*time.Second + 7*time.Nanosecond)
	if err := db.FinishIdem(ctx, "finance", "pay-1", contain.IdemDone, result, "sha256:rr", finished); err != nil {
		t.Fatalf("FinishIdem: %v", err)
	}
	got, created, err = db.CreateIdem(ctx, other)
	if err != nil || created {
		t.Fatalf("CreateIdem(done) = %v, %v, %v; want the record, false", got, created, err)
	}
	want := rec
	want.State, want.Result, want.ResultHash, want.FinishedAt = contain.IdemDone, result, "sha256:rr", finished
	if diff := cmp.Diff(&want, got); diff != "" {
		t.Errorf("CreateIdem(done) record (-want +got):\n%s", diff)
	}
	// A finished outcome is never overwritten.
	if err := db.FinishIdem(ctx, "finance", "pay-1", contain.IdemUnknown, nil, "", finished); err == nil {
		t.Errorf("FinishIdem(done record) succeeded, want an error")
	}
	if err := db.FinishIdem(ctx, "finance", "nope", contain.IdemDone, result, "sha256:rr", finished); err == nil {
		t.Errorf("FinishIdem(missing record) succeeded, want an error")
	}
	if err := db.FinishIdem(ctx, "mail", "pay-1", contain.IdemRunning, nil, "", finished); err == nil {
		t.Errorf("FinishIdem(state running) succeeded, want an error")
	}

	// A result not kept is NULL, and reads back as nil.
	if err := db.FinishIdem(ctx, "mail", "pay-1", contain.IdemDone, nil, "sha256:big", finished); err != nil {
		t.Fatalf("FinishIdem(not kept): %v", err)
	}
	got, _, err = db.CreateIdem(ctx, idemRecord("mail", "pay-1", "req-4", t0))
	if err != nil || got == nil || got.State != contain.IdemDone || got.Result != nil || got.ResultHash != "sha256:big" {
		t.Errorf("CreateIdem(done, not kept) = %+v, %v; want done with a nil result", got, err)
	}

	// Unknown.
	if _, _, err := db.CreateIdem(ctx, idemRecord("finance", "pay-2", "req-5", t0)); err != nil {
		t.Fatalf("CreateIdem(pay-2): %v", err)
	}
	if err := db.FinishIdem(ctx, "finance", "pay-2", contain.IdemUnknown, nil, "", finished); err != nil {
		t.Fatalf("FinishIdem(unknown): %v", err)
	}
	if got, _, err := db.CreateIdem(ctx, idemRecord("finance", "pay-2", "req-6", t0)); err != nil || got == nil || got.State != contain.IdemUnknown || got.RequestID != "req-5" {
		t.Errorf("CreateIdem(unknown) = %+v, %v; want unknown from req-5", got, err)
	}

	// Delete lets the key be claimed again; deleting a missing key is not an error.
	if err := db.DeleteIdem(ctx, "finance", "pay-2"); err != nil {
		t.Fatalf("DeleteIdem: %v", err)
	}
	if err := db.DeleteIdem(ctx, "finance", "pay-2"); err != nil {
		t.Errorf("DeleteIdem(missing): %v", err)
	}
	if _, created, err := db.CreateIdem(ctx, idemRecord("finance", "pay-2", "req-7", t0.Add(time.Hour))); err != nil || !created {
		t.Errorf("CreateIdem after DeleteIdem = %v, %v; want created", created, err)
	}

	// Expiry goes by creation time, whatever the state: pay-1 (twice) at t0, pay-2 at t0+1h.
	if n, err := db.ExpireIdem(ctx, t0); err != nil || n != 0 {
		t.Errorf("ExpireIdem(t0) = %d, %v; want 0 (strictly before)", n, err)
	}
	if n, err := db.ExpireIdem(ctx, t0.Add(time.Minute)); err != nil || n != 2 {
		t.Errorf("ExpireIdem(t0+1m) = %d, %v; want 2", n, err)
	}
	if _, created, err := db.CreateIdem(ctx, idemRecord("finance", "pay-1", "req-8", t0)); err != nil || !created {
		t.Errorf("CreateIdem after ExpireIdem = %v, %v; want created", created, err)
	}
	if _, created, err := db.CreateIdem(ctx, idemRecord("finance", "pay-2", "req-9", t0)); err != nil || created {
		t.Errorf("CreateIdem(pay-2, unexpired) = %v, %v; want existing", created, err)
	}
	if _, _, err := db.CreateIdem(ctx, contain.IdemRecord{Agent: "finance"}); err == nil {
		t.Errorf("CreateIdem(no key) succeeded, want an error")
	}
}

func TestIdemCreateConcurrent(t *testing.T) {
	t.Parallel()
	db, _ := openTemp(t)
	const goroutines = 20
	var (
		wg      sync.WaitGroup
		start   = make(chan struct{})
		created atomic.Int64
		mu      sync.Mutex
		owners  = map[string]int{} // request id of the record each loser saw
	)
	for i := range goroutines {
		wg.Go(func() {
			<-start
			rec := idemRecord("finance", "pay-1", fmt.Sprint("req-", i), t0)
			got, ok, err := db.CreateIdem(t.Context(), rec)
			switch {
			case err != nil:
				t.Errorf("CreateIdem #%d: %v", i, err)
			case ok:
				created.Add(1)
				mu.Lock()
				owners[rec.RequestID]++
				mu.Unlock()
			default:
				mu.Lock()
				owners[got.RequestID]++
				mu.Unlock()
			}
		})
	}
	close(start)
	wg.Wait()
	if n := created.Load(); n != 1 {
		t.Errorf("%d concurrent CreateIdem of one key created %d records, want 1", goroutines, n)
	}
	if len(owners) != 1 {
		t.Errorf("concurrent CreateIdem callers saw records of %v, want one request", owners)
	}
}
