package audit_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/chaperone-dev/chaperone/internal/audit"
)

// Two Logs over two handles of one database file are two gateway processes: each
// commit continues the head it reads under the write lock, so together they write one
// chain with no fork and no gap.
func TestLogsSharingAStoreMakeOneChain(t *testing.T) {
	path := filepath.Join(t.TempDir(), "chaperone.db")
	const writers, perWriter = 3, 40
	var logs []*audit.Log
	for range writers {
		l, err := audit.NewLog(t.Context(), openDB(t, path), audit.LogOptions{MaxBatch: 8})
		if err != nil {
			t.Fatal(err)
		}
		logs = append(logs, l)
	}
	var wg sync.WaitGroup
	errs := make(chan error, writers*perWriter)
	for w, l := range logs {
		for i := range perWriter {
			wg.Add(1)
			go func() {
				defer wg.Done()
				e := &audit.Event{Time: time.Now(), Kind: audit.KindCallIntent, RequestID: fmt.Sprintf("req-%d-%d", w, i), Tool: "t"}
				if err := l.Append(t.Context(), e); err != nil {
					errs <- err
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("Append: %v", err)
	}
	for _, l := range logs {
		if err := l.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	rep, err := audit.Verify(t.Context(), openDB(t, path))
	if err != nil {
		t.Fatal(err)
	}
	if rep.Broken != nil || rep.Events != writers*perWriter {
		t.Fatalf("Verify = %+v, want %d events and no break", rep, writers*perWriter)
	}
}
