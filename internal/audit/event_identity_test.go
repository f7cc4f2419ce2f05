package audit

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestIdentityFieldsRoundTrip: the principal's task, delegation chain and token id are part
// of the canonical record, so they are hashed and read back exactly.
func TestIdentityFieldsRoundTrip(t *testing.T) {
	e := Event{Seq: 1, Time: time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC), Kind: KindCallRefused, RequestID: "r1",
		Agent: "sub", User: "dana@example.com", Task: "tsk_1", Chain: []string{"main", "sub"}, TokenID: "jti1"}
	e.Hash = e.ComputeHash()
	raw, err := e.MarshalRecord()
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseRecord(raw)
	if err != nil {
		t.Fatalf("ParseRecord(%s): %v", raw, err)
	}
	if diff := cmp.Diff(e, got); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
	edited := got
	edited.Chain = []string{"sub"}
	if edited.ComputeHash() == e.Hash {
		t.Errorf("the chain is not covered by the hash")
	}
}
