package audit_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/chaperone-dev/chaperone/internal/audit"
	"github.com/chaperone-dev/chaperone/internal/store/sqlite/sqlitetest"
)

// TestAppendAsync: an event queued without waiting is committed in order with the others,
// and its callback hears the commit's result.
func TestAppendAsync(t *testing.T) {
	db, log := sqlitetest.Open(t)
	var mu sync.Mutex
	var results []error
	done := make(chan struct{}, 10)
	for i := range 10 {
		e := &audit.Event{Time: time.Unix(1000, 0), Kind: audit.KindCallOutcome, RequestID: "r" + string(rune('0'+i))}
		if err := log.AppendAsync(context.Background(), e, func(err error) {
			mu.Lock()
			results = append(results, err)
			mu.Unlock()
			done <- struct{}{}
		}); err != nil {
			t.Fatalf("AppendAsync: %v", err)
		}
	}
	for range 10 {
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("callbacks not called within 10s")
		}
	}
	for i, err := range results {
		if err != nil {
			t.Errorf("commit %d: %v", i, err)
		}
	}
	evs, err := db.ScanEvents(context.Background(), 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 10 || evs[0].RequestID != "r0" || evs[9].RequestID != "r9" {
		t.Errorf("stored %d events in order r0..r9? first %q last %q", len(evs), evs[0].RequestID, evs[len(evs)-1].RequestID)
	}
	rep, err := audit.Verify(context.Background(), db)
	if err != nil || rep.Broken != nil || rep.Events != 10 {
		t.Errorf("Verify = %+v, %v", rep, err)
	}
	if err := log.AppendAsync(context.Background(), &audit.Event{Kind: ""}, nil); err == nil {
		t.Errorf("AppendAsync of an invalid event = nil, want an error")
	}
}
