package audit_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/chaperone-dev/chaperone/internal/audit"
)

// Captured content is part of the canonical form: embedded compacted, and nothing else about
// it changed, so that the stored record reads back byte for byte.
func TestCanonicalFormWithCapturedContent(t *testing.T) {
	t.Parallel()
	e := audit.Event{
		Seq:       1,
		Time:      t0,
		Kind:      audit.KindCallIntent,
		RequestID: "req-1",
		Arguments: json.RawMessage(`{"to":"a@example.com","n":1.50e3,"s":"<\u003c>` + "\u2028" + `"}`),
		Captured:  audit.CapturedArguments,
	}
	const want = `{"seq":1,"time":"2026-03-01T09:00:07.123456Z","kind":"call.intent","request_id":"req-1","arguments":{"to":"a@example.com","n":1.50e3,"s":"<\u003c>` + "\u2028" + `"},"captured":"arguments","prev_hash":"","hash":""}`
	rec, err := e.MarshalRecord()
	if err != nil {
		t.Fatal(err)
	}
	if string(rec) != want {
		t.Errorf("MarshalRecord():\n got %s\nwant %s", rec, want)
	}
	e.Hash = e.ComputeHash()
	rec, _ = e.MarshalRecord()
	back, err := audit.ParseRecord(rec)
	if err != nil {
		t.Fatalf("ParseRecord(MarshalRecord()): %v", err)
	}
	if diff := cmp.Diff(e, back); diff != "" {
		t.Errorf("ParseRecord(MarshalRecord()) (-want +got):\n%s", diff)
	}
	if back.ComputeHash() != e.Hash {
		t.Errorf("hash after read-back = %s, want %s", back.ComputeHash(), e.Hash)
	}
}

// An event with captured content goes through the real log into real SQLite, reads back
// exactly as it was hashed, and the chain verifies.
func TestCapturedContentStoredAndVerified(t *testing.T) {
	t.Parallel()
	db := tempDB(t)
	l := newLog(t, db, audit.LogOptions{})

	intent := event(audit.KindCallIntent, "req-1")
	// Not compact and not ASCII: the log compacts it before hashing.
	intent.Arguments = json.RawMessage("{ \"iban\" : \"DE89 3704\",\n\t\"amount\": 98.70, \"note\": \"caf\xc3\xa9 <b>\\u0026\", \"bad\": \"\xff\" }")
	intent.Captured = audit.CapturedArguments
	outcome := event(audit.KindCallOutcome, "req-1")
	outcome.Result = json.RawMessage(`{"content":[{"type":"text","text":"ok"}], "isError":false}`)
	outcome.Captured = audit.CapturedResult
	plain := event(audit.KindCallRefused, "req-2") // capture off: no new keys
	for _, e := range []*audit.Event{&intent, &outcome, &plain} {
		if err := l.Append(t.Context(), e); err != nil {
			t.Fatalf("Append(%s): %v", e.Kind, err)
		}
	}
	wantArgs := "{\"iban\":\"DE89 3704\",\"amount\":98.70,\"note\":\"caf\xc3\xa9 <b>\\u0026\",\"bad\":\"\uFFFD\"}"
	if string(intent.Arguments) != wantArgs {
		t.Errorf("recorded arguments = %s, want %s", intent.Arguments, wantArgs)
	}

	got, err := db.ScanEvents(t.Context(), 0, 10)
	if err != nil {
		t.Fatalf("ScanEvents: %v", err)
	}
	if diff := cmp.Diff([]audit.Event{intent, outcome, plain}, got); diff != "" {
		t.Errorf("events read back (-want +got):\n%s", diff)
	}
	for _, e := range got {
		if e.ComputeHash() != e.Hash {
			t.Errorf("event %d: ComputeHash() = %s, stored %s", e.Seq, e.ComputeHash(), e.Hash)
		}
	}
	rec, _ := got[2].MarshalRecord()
	for _, key := range []string{`"arguments"`, `"result"`, `"captured"`} {
		if bytes.Contains(rec, []byte(key)) {
			t.Errorf("event without captured content has %s: %s", key, rec)
		}
	}
	rep, err := audit.Verify(t.Context(), db)
	if err != nil || rep.Broken != nil || rep.Events != 3 {
		t.Errorf("Verify() = %+v, %v; want 3 events, intact", rep, err)
	}
}

func TestAppendRefusesInvalidContent(t *testing.T) {
	t.Parallel()
	l := newLog(t, tempDB(t), audit.LogOptions{})
	for name, mutate := range map[string]func(*audit.Event){
		"arguments": func(e *audit.Event) { e.Arguments = json.RawMessage(`{"a":`) },
		"result":    func(e *audit.Event) { e.Result = json.RawMessage(`not json`) },
		"blank":     func(e *audit.Event) { e.Arguments = json.RawMessage("  ") },
	} {
		e := event(audit.KindCallIntent, "req-"+name)
		mutate(&e)
		if err := l.Append(t.Context(), &e); !errors.Is(err, audit.ErrInvalidEvent) {
			t.Errorf("Append(%s not JSON) = %v, want ErrInvalidEvent", name, err)
		}
	}
}

// audit tail shows what was captured and how big it is, never the value.
func TestFormatCapturedShowsSizeOnly(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		e    audit.Event
		want string
	}{
		{audit.Event{Seq: 1, Time: t0, Kind: audit.KindCallIntent, Arguments: json.RawMessage(`{"password":"hunter2"}`), Captured: audit.CapturedArguments}, "captured=arguments(22B)"},
		{audit.Event{Seq: 2, Time: t0, Kind: audit.KindCallOutcome, Result: json.RawMessage(`{"content":[]}`), Captured: audit.CapturedResult}, "captured=result(14B)"},
		{audit.Event{Seq: 3, Time: t0, Kind: audit.KindCallIntent, Captured: audit.CapturedTooLarge}, "captured=too_large"},
	} {
		var b strings.Builder
		audit.Format(&b, tc.e)
		if !strings.Contains(b.String(), tc.want) || strings.Contains(b.String(), "hunter2") || strings.Contains(b.String(), "content") {
			t.Errorf("Format(%s) = %q, want it to contain %q and no value", tc.e.Captured, b.String(), tc.want)
		}
	}
}

// FuzzCapturedContentRoundTrip: any JSON value, in the form the log stores it (invalid UTF-8
// replaced, compacted), survives MarshalRecord and ParseRecord byte for byte, so the stored
// record re-hashes to its hash.
func FuzzCapturedContentRoundTrip(f *testing.F) {
	for _, s := range []string{`{"a":1}`, "{ \"k\" : [1, 2.50e3, null, true] }", `"\u003c<\u2028` + "\u2028\xff" + `"`, `{"a":{"a":{}}}`, `[]`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		raw = []byte(strings.ToValidUTF8(string(raw), "\uFFFD"))
		var b bytes.Buffer
		if json.Compact(&b, raw) != nil {
			return
		}
		e := audit.Event{Seq: 1, Time: t0, Kind: audit.KindCallOutcome, RequestID: "r", Result: b.Bytes(), Captured: audit.CapturedResult}
		e.Hash = e.ComputeHash()
		rec, err := e.MarshalRecord()
		if err != nil {
			t.Fatalf("MarshalRecord(%q): %v", raw, err)
		}
		back, err := audit.ParseRecord(rec)
		if err != nil {
			t.Fatalf("ParseRecord(MarshalRecord(%q)): %v", raw, err)
		}
		if !bytes.Equal(back.Result, b.Bytes()) || back.ComputeHash() != e.Hash {
			t.Fatalf("round trip of %q: result %q, want %q", raw, back.Result, b.Bytes())
		}
	})
}
