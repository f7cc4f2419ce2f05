package audit_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/chaperone-dev/chaperone/internal/audit"
)

// BenchmarkAppendDurable appends to a real SQLite file, opened as the store opens it
// (WAL, synchronous=FULL: every commit reaches the disk), from a fixed number of
// concurrent appenders. It reports events/s and the mean number of events that shared
// one commit (events/commit), counted with LogOptions.OnCommit. ns/op is wall time per
// event across all appenders.
func BenchmarkAppendDurable(b *testing.B) {
	for _, appenders := range []int{1, 8, 32, 128} {
		b.Run(fmt.Sprintf("appenders=%d", appenders), func(b *testing.B) {
			benchmarkAppendDurable(b, appenders)
		})
	}
}

func benchmarkAppendDurable(b *testing.B, appenders int) {
	db := tempDB(b)
	var commits, committed atomic.Int64
	l, err := audit.NewLog(b.Context(), db, audit.LogOptions{OnCommit: func(batch []audit.Event) {
		commits.Add(1)
		committed.Add(int64(len(batch)))
	}})
	if err != nil {
		b.Fatalf("NewLog: %v", err)
	}
	closed := false
	defer func() {
		if !closed {
			l.Close(context.Background())
		}
	}()
	ctx := context.Background()
	template := benchEvent()

	// Each appender claims events until b.N have been claimed: the work is b.N events
	// whatever the number of appenders.
	var claimed atomic.Int64
	var failed atomic.Pointer[error]
	var wg sync.WaitGroup
	b.ReportAllocs()
	b.ResetTimer()
	for range appenders {
		wg.Go(func() {
			for claimed.Add(1) <= int64(b.N) {
				e := template
				if err := l.Append(ctx, &e); err != nil {
					failed.CompareAndSwap(nil, &err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	if errp := failed.Load(); errp != nil {
		b.Fatalf("Append with %d appenders: %v", appenders, *errp)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	// Every Append returned after its batch was committed, and OnCommit saw the batch
	// before waking its callers: the counts are complete.
	if got := committed.Load(); got != int64(b.N) {
		b.Fatalf("OnCommit saw %d events in %d commits, want %d", got, commits.Load(), b.N)
	}
	b.ReportMetric(float64(committed.Load())/float64(commits.Load()), "events/commit")

	closed = true
	if err := l.Close(context.Background()); err != nil {
		b.Fatalf("Close: %v", err)
	}
	r, err := audit.Verify(context.Background(), db)
	if err != nil || r.Broken != nil || r.Events != int64(b.N) {
		b.Fatalf("Verify after %d appends by %d appenders = %+v, %v; want %d events, chain intact", b.N, appenders, r, err, b.N)
	}
}
