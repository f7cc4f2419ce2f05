package sqlite_test

import (
	"fmt"
	"testing"

	"github.com/chaperone-dev/chaperone/internal/audit"
)

// BenchmarkAppendEvents commits batches of events durably, as the audit log's
// writer does, and reports events/s.
func BenchmarkAppendEvents(b *testing.B) {
	for _, size := range []int{1, 16, 256} {
		b.Run(fmt.Sprint("batch=", size), func(b *testing.B) {
			db, _ := openTemp(b)
			ctx := b.Context()
			var head audit.Event
			b.ReportAllocs()
			for b.Loop() {
				b.StopTimer()
				events := chain(head, size) // hashing is the log's cost, not the store's
				b.StartTimer()
				if err := db.AppendEvents(ctx, events); err != nil {
					b.Fatal(err)
				}
				head = events[size-1]
			}
			b.ReportMetric(float64(b.N*size)/b.Elapsed().Seconds(), "events/s")
		})
	}
}

// BenchmarkScanEvents reads pages of 1,000 events, as Verify does.
func BenchmarkScanEvents(b *testing.B) {
	db, _ := openTemp(b)
	ctx := b.Context()
	const page = 1000
	if err := db.AppendEvents(ctx, chain(audit.Event{}, page)); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		events, err := db.ScanEvents(ctx, 0, page)
		if err != nil || len(events) != page {
			b.Fatalf("ScanEvents = %d events, %v", len(events), err)
		}
	}
	b.ReportMetric(float64(b.N*page)/b.Elapsed().Seconds(), "events/s")
}
