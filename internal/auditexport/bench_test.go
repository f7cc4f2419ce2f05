package auditexport_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"testing"

	"github.com/chaperone-dev/chaperone/internal/audit"
	"github.com/chaperone-dev/chaperone/internal/auditexport"
)

// benchLog is a log of n events: calls (intent and outcome) with captured arguments
// and results, one in a hundred carrying a secret, and a refusal every tenth call.
func benchLog(b *testing.B, n int) memSource {
	b.Helper()
	evs := make([]audit.Event, 0, n)
	for i := 0; len(evs) < n; i++ {
		req := fmt.Sprintf("r%d", i)
		value := fmt.Sprintf("report-%d.txt", i)
		if i%100 == 0 {
			value = "key " + awsKey
		}
		args := json.RawMessage(fmt.Sprintf(`{"path":"/srv/%s","limit":%d}`, value, i%50))
		if i%10 == 9 {
			evs = append(evs, audit.Event{Kind: audit.KindCallRefused, RequestID: req, SessionID: "s1", Agent: "mail-bot", User: "alice@example.com",
				Tool: "send_email", Decision: "deny", Reason: "denied_by_policy", Rules: []string{"no-external"}, Message: "Mail to outside addresses is not allowed.",
				Captured: audit.CapturedArguments, Arguments: args})
			continue
		}
		evs = append(evs,
			audit.Event{Kind: audit.KindCallIntent, RequestID: req, SessionID: "s1", Agent: "mail-bot", User: "alice@example.com", Task: "t-1",
				Tool: "read_file", Upstream: "files", Decision: "allow", Rules: []string{"reads"}, PolicyVersion: "v1",
				ArgsSummary: "{limit:number, path:string(20)}", Captured: audit.CapturedArguments, Arguments: args},
			audit.Event{Kind: audit.KindCallOutcome, RequestID: req, SessionID: "s1", Agent: "mail-bot", Tool: "read_file", Upstream: "files",
				LatencyMicros: 1800, ResultBytes: 64, Captured: audit.CapturedResult,
				Result: json.RawMessage(`{"content":[{"type":"text","text":"Quarterly numbers are attached; nothing unusual."}]}`)})
	}
	return chain(b, evs[:n])
}

func benchmarkWrite(b *testing.B, write func(context.Context, audit.Source, io.Writer, auditexport.Filter) (auditexport.Stats, error)) {
	src := benchLog(b, 10_000)
	b.ReportAllocs()
	for b.Loop() {
		st, err := write(b.Context(), src, io.Discard, auditexport.Filter{})
		if err != nil || st.Written != len(src) {
			b.Fatalf("wrote %d of %d events: %v", st.Written, len(src), err)
		}
	}
}

func BenchmarkWriteJSONL(b *testing.B) { benchmarkWrite(b, auditexport.WriteJSONL) }

func BenchmarkWriteOCSF(b *testing.B) { benchmarkWrite(b, auditexport.WriteOCSF) }
