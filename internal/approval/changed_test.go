package approval_test

import (
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/chaperone-dev/chaperone/internal/approval"
	"github.com/chaperone-dev/chaperone/internal/store/sqlite"
)

// TestChangedWakesWaiters: a decision made through another process's Manager reaches
// this process's waiters as soon as Changed is called, not at the next poll; a waiter
// whose request is still pending goes back to waiting.
func TestChangedWakesWaiters(t *testing.T) {
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
	storeA := &readSignal{Store: dbA, reads: make(chan string, 100)}
	// Polling once an hour: only Changed can wake the waiters in time.
	a := approval.NewManager(approval.Options{Store: storeA, PollInterval: time.Hour})
	b := approval.NewManager(approval.Options{Store: dbB, PollInterval: time.Hour})

	var reqs []*approval.Request
	for _, task := range []string{"tsk_approve", "tsk_deny", "tsk_later"} {
		c := call()
		c.Task = task
		r, _, err := a.Request(ctx, c)
		if err != nil {
			t.Fatal(err)
		}
		reqs = append(reqs, r)
	}
	type result struct {
		r   *approval.Request
		err error
	}
	done := make([]chan result, len(reqs))
	for i, r := range reqs {
		done[i] = make(chan result, 1)
		go func() {
			got, err := a.Wait(ctx, r.ID, time.Minute)
			done[i] <- result{got, err}
		}()
	}
	awaitReads := func(n int) {
		t.Helper()
		for range n {
			select {
			case <-storeA.reads:
			case <-time.After(10 * time.Second):
				t.Fatal("the waiters did not read their requests within 10s")
			}
		}
	}
	awaitReads(len(reqs)) // every waiter has seen its request pending

	if _, err := b.Approve(ctx, reqs[0].ID, "erin"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Deny(ctx, reqs[1].ID, "erin", "suspicious", ""); err != nil {
		t.Fatal(err)
	}
	for i := range reqs {
		select {
		case res := <-done[i]:
			t.Fatalf("Wait(%q) returned %+v, %v before Changed: this test no longer tests Changed", reqs[i].ID, res.r, res.err)
		default:
		}
	}

	// Concurrent calls are safe (run with -race), and each wakes every waiter.
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(a.Changed)
	}
	wg.Wait()
	for i, want := range []approval.Status{approval.StatusApproved, approval.StatusDenied} {
		select {
		case res := <-done[i]:
			if res.err != nil || res.r.Status != want {
				t.Errorf("Wait(%q) after Changed = %+v, %v; want %s", reqs[i].ID, res.r, res.err, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("Wait(%q) did not return within 10s of Changed", reqs[i].ID)
		}
	}
	select {
	case res := <-done[2]:
		t.Fatalf("Wait(%q) for a request still pending returned %+v, %v", reqs[2].ID, res.r, res.err)
	default:
	}

	// The last waiter is still waiting, and is woken by the next Changed.
	if _, err := b.Approve(ctx, reqs[2].ID, "erin"); err != nil {
		t.Fatal(err)
	}
	a.Changed()
	select {
	case res := <-done[2]:
		if res.err != nil || res.r.Status != approval.StatusApproved {
			t.Errorf("Wait(%q) after the second Changed = %+v, %v; want approved", reqs[2].ID, res.r, res.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("Wait(%q) did not return within 10s of the second Changed", reqs[2].ID)
	}
}

// TestChangedWithoutWaiters: Changed with nobody waiting does nothing, and a Wait that
// starts afterwards still waits for its decision.
func TestChangedWithoutWaiters(t *testing.T) {
	t.Parallel()
	f := newFixture(t, func(o *approval.Options) { o.PollInterval = time.Hour })
	f.m.Changed()
	f.m.Changed()
	r := f.request(t, call())
	got, err := f.m.Wait(t.Context(), r.ID, 20*time.Millisecond)
	if err != nil || got.Status != approval.StatusPending {
		t.Errorf("Wait(%q, 20ms) after Changed calls = %+v, %v; want it still pending", r.ID, got, err)
	}
}
