package flow

import (
	"bytes"
	"encoding/json"
	"math"
	"testing"
)

// FuzzUnmarshalEntry feeds arbitrary bytes to the journal entry decoder, which reads what
// other replicas wrote to a shared database: it never panics, accepts nothing beyond its
// bounds, and whatever it accepts encodes again into an entry that decodes to the same
// encoding (so every replica applies the same thing), and applies to a session within
// the session's bounds.
func FuzzUnmarshalEntry(f *testing.F) {
	for _, e := range []Entry{
		{Prompt: "Please pay the bill to GB82 WEST 1234 5698 7654 32."},
		{Run: &Run{RequestID: "r1", Tool: "inbox", Args: map[string]any{"q": "bills", "n": 3.0, "l": []any{true, nil}},
			Labels: &Labels{Public: true, Sinks: []string{"to"}}, Result: textResult(sjMallory), Time: t0,
			Injection: 0.8, InjectionSignals: []string{"override"}}},
		{Run: &Run{Tool: "t", Result: json.RawMessage("not json \xff"), Time: t0}},
		{Run: &Run{Tool: "t", Labels: &Labels{Trusted: true, AllSinks: true}, Time: t0}, ResultOmitted: true},
	} {
		b, err := MarshalEntry(e)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"v":1,"run":{"tool":"t","result":null,"args":{}}}`))
	f.Add([]byte(`{"v":1,"run":{"tool":"t","time":"0000-01-01T00:00:00+01:00"}}`))
	f.Add([]byte(`{"v":2,"prompt":""}`))
	f.Add([]byte(`{"v":1,"prompt":"x"} []`))
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := UnmarshalEntry(b)
		if err != nil {
			return
		}
		if len(b) > MaxEntryBytes {
			t.Fatalf("accepted %d bytes, bound %d", len(b), MaxEntryBytes)
		}
		if r := e.Run; r != nil {
			if !(r.Injection >= 0 && r.Injection <= 1) || math.IsNaN(r.Injection) || len(r.InjectionSignals) > MaxEntrySignals ||
				len(r.Result) > MaxJournalResultBytes || (e.ResultOmitted && len(r.Result) > 0) {
				t.Fatalf("accepted a run beyond the bounds: %+v", r)
			}
		}
		b1, err := MarshalEntry(e)
		if err != nil {
			t.Fatalf("MarshalEntry(UnmarshalEntry(%q)): %v", b, err)
		}
		e1, err := UnmarshalEntry(b1)
		if err != nil {
			t.Fatalf("UnmarshalEntry(%q), written by MarshalEntry: %v", b1, err)
		}
		b2, err := MarshalEntry(e1)
		if err != nil || !bytes.Equal(b1, b2) {
			t.Fatalf("encoding is not stable:\n%q\n%q (%v)", b1, b2, err)
		}
		s := NewSession(Limits{MaxBytes: 4096})
		s.mu.Lock()
		s.sjApplyLocked(&e)
		s.mu.Unlock()
		if s.bytes > 4096 {
			t.Fatalf("session holds %d bytes, limit 4096", s.bytes)
		}
	})
}
