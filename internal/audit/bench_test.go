package audit_test

import (
	"context"
	"testing"
	"time"

	"github.com/chaperone-dev/chaperone/internal/audit"
)

// benchEvent returns a typical call intent. Appends copy it, so that the
// benchmarks measure the log, not the caller's preparation of the event.
func benchEvent() audit.Event {
	raw := []byte(`{"to":"bob@example.com","subject":"Quarterly numbers","body":"Hi Bob, see attached.","amount":12.5}`)
	return audit.Event{
		Time:          time.Now(),
		Kind:          audit.KindCallIntent,
		RequestID:     "01JNQ6W3ZK8Q2S4T6V8X0Z2B4D",
		SessionID:     "sess-7f3a",
		Agent:         "mail-assistant",
		User:          "alice@example.com",
		Tool:          "send_email",
		Upstream:      "mail",
		ArgsHash:      audit.HashArgs(raw),
		ArgsSummary:   audit.SummarizeArgs(raw),
		Decision:      "allow",
		Reason:        "allowed_by_policy",
		Rules:         []string{"mail-internal"},
		PolicyVersion: "2026-03-01.1",
	}
}

// benchmarkAppend appends durably to a real SQLite file, from parallelism
// goroutines per GOMAXPROCS (0: one goroutine), and reports events/s.
func benchmarkAppend(b *testing.B, parallelism int) {
	db := tempDB(b)
	l, err := audit.NewLog(b.Context(), db, audit.LogOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close(context.Background())
	ctx := context.Background()
	template := benchEvent()
	b.ReportAllocs()
	b.ResetTimer()
	if parallelism == 0 {
		for b.Loop() {
			e := template
			if err := l.Append(ctx, &e); err != nil {
				b.Fatal(err)
			}
		}
	} else {
		b.SetParallelism(parallelism)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				e := template
				if err := l.Append(ctx, &e); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkAppendSerial is one caller at a time: every event pays a full
// durable commit.
func BenchmarkAppendSerial(b *testing.B) { benchmarkAppend(b, 0) }

// BenchmarkAppendParallel is many concurrent callers, as a busy gateway has:
// group commit shares each disk flush among them.
func BenchmarkAppendParallel(b *testing.B) {
	for _, p := range []struct {
		name string
		n    int
	}{{"x1", 1}, {"x16", 16}} {
		b.Run(p.name, func(b *testing.B) { benchmarkAppend(b, p.n) })
	}
}

func BenchmarkComputeHash(b *testing.B) {
	e := benchEvent()
	e.Seq, e.PrevHash = 12345, "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
	b.ReportAllocs()
	for b.Loop() {
		e.Hash = e.ComputeHash()
	}
}

// BenchmarkSeal is what the writer does to every event: hash it and produce its record.
func BenchmarkSeal(b *testing.B) {
	e := benchEvent()
	e.Seq, e.PrevHash = 12345, "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
	b.ReportAllocs()
	for b.Loop() {
		if _, err := e.Seal(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSummarizeArgs(b *testing.B) {
	raw := []byte(`{"to":"bob@example.com","subject":"Quarterly numbers","body":"Hi Bob, see attached.","amount":12.5,"cc":["a@example.com","b@example.com"],"opts":{"html":false}}`)
	b.ReportAllocs()
	for b.Loop() {
		audit.SummarizeArgs(raw)
	}
}

func BenchmarkVerify(b *testing.B) {
	db := tempDB(b)
	l, err := audit.NewLog(b.Context(), db, audit.LogOptions{})
	if err != nil {
		b.Fatal(err)
	}
	const n = 10_000
	done := make(chan error, n)
	for range n {
		go func() {
			e := benchEvent()
			done <- l.Append(b.Context(), &e)
		}()
	}
	for range n {
		if err := <-done; err != nil {
			b.Fatal(err)
		}
	}
	l.Close(b.Context())
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		r, err := audit.Verify(b.Context(), db)
		if err != nil || r.Broken != nil || r.Events != n {
			b.Fatalf("Verify = %+v, %v", r, err)
		}
	}
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "events/s")
}
