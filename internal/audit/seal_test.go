package audit_test

import (
	"testing"
	"time"

	"github.com/chaperone-dev/chaperone/internal/audit"
)

// checkSeal checks that Seal gives the hash ComputeHash gives and the record
// MarshalRecord gives, whatever the event holds.
func checkSeal(t *testing.T, e audit.Event) {
	t.Helper()
	want := e
	want.Hash = want.ComputeHash()
	wantRec, wantErr := want.MarshalRecord()

	got := e
	got.Hash = "sha256:stale" // Seal ignores what was there
	rec, err := got.Seal()
	if (err != nil) != (wantErr != nil) {
		t.Fatalf("Seal error %v, MarshalRecord error %v", err, wantErr)
	}
	if err != nil {
		return
	}
	if got.Hash != want.Hash {
		t.Fatalf("Seal set Hash %s, ComputeHash says %s", got.Hash, want.Hash)
	}
	if string(rec) != string(wantRec) {
		t.Fatalf("Seal record\n%s\nMarshalRecord\n%s", rec, wantRec)
	}
}

func TestSeal(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 3, 1, 9, 0, 7, 123456000, time.UTC)
	for _, e := range []audit.Event{
		{Seq: 1, Time: t0, Kind: audit.KindCallIntent, Agent: "a", Tool: "t"},
		{Seq: 9, Time: t0, Kind: audit.KindCallOutcome, RequestID: "req_1", Agent: "a\"<b>", Tool: "t\u2028", Rules: []string{"r1", "r2"},
			PrevHash: "sha256:00", Pruned: true},
		{Seq: 3, Time: t0, Kind: audit.KindCallRefused, Reason: "denied_by_policy", Message: `quote " and \ backslash`},
	} {
		checkSeal(t, e)
		rec, err := e.Seal()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := audit.ParseRecord([]byte(rec)); err != nil {
			t.Errorf("the sealed record of event %d does not parse: %v", e.Seq, err)
		}
	}
	// An event that cannot be encoded fails, as MarshalRecord does.
	bad := audit.Event{Seq: 1, Time: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), Kind: audit.KindCallIntent}
	if _, err := bad.Seal(); err == nil {
		t.Error("Seal of an event with a time past year 9999 succeeded")
	}
}

func FuzzSeal(f *testing.F) {
	f.Add(int64(1), "call.intent", "agent", "tool", "req_x", "msg", "sha256:ab", false)
	f.Add(int64(77), "call.refused", "a\"b", "\x00t", "", "\u2028<>&", "", true)
	f.Fuzz(func(t *testing.T, seq int64, kind, agent, tool, rid, msg, prev string, pruned bool) {
		e := audit.Event{Seq: seq, Time: time.Unix(1_700_000_000, 0).UTC(), Kind: kind, Agent: agent, Tool: tool,
			RequestID: rid, Message: msg, PrevHash: prev, Pruned: pruned}
		checkSeal(t, e)
	})
}
