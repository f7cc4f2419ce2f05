package audit_test

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/chaperone-dev/chaperone/internal/audit"
)

// The canonical form is a contract with auditors: these bytes are what the
// package documentation describes.
func TestCanonicalForm(t *testing.T) {
	t.Parallel()
	e := audit.Event{
		Seq:         2,
		Time:        time.Date(2026, 3, 1, 9, 0, 7, 123400000, time.UTC),
		Kind:        audit.KindCallRefused,
		Agent:       "mail-assistant",
		Tool:        "send_email",
		Decision:    "deny",
		Message:     "<b> & \u2028 \x01 \b\f\n\r\t \"q\" \\ é",
		Rules:       []string{"no-external"},
		ResultError: true,
		PrevHash:    "sha256:aa",
		Hash:        "sha256:ignored",
	}
	const want = `{"seq":2,"time":"2026-03-01T09:00:07.1234Z","kind":"call.refused","agent":"mail-assistant","tool":"send_email","decision":"deny","message":"<b> & \u2028 \u0001 \b\f\n\r\t \"q\" \\ é","rules":["no-external"],"result_error":true,"prev_hash":"sha256:aa","hash":""}`
	sum := sha256.Sum256([]byte(want))
	wantHash := "sha256:" + hex.EncodeToString(sum[:])
	if got := e.ComputeHash(); got != wantHash {
		t.Errorf("ComputeHash() = %q, want %q", got, wantHash)
	}
	if e.Hash != "sha256:ignored" {
		t.Errorf("ComputeHash modified Hash: %q", e.Hash)
	}

	e.Hash = wantHash
	rec, err := e.MarshalRecord()
	if err != nil {
		t.Fatal(err)
	}
	// The documented shortcut: blank the hash at the end of a stored record.
	i := strings.LastIndex(string(rec), `"hash":`)
	if body := string(rec[:i]) + `"hash":""}`; body != want {
		t.Errorf("record with its hash blanked:\n got %s\nwant %s", body, want)
	}
	back, err := audit.ParseRecord(rec)
	if err != nil {
		t.Fatalf("ParseRecord(MarshalRecord()): %v", err)
	}
	if diff := cmp.Diff(e, back); diff != "" {
		t.Errorf("ParseRecord(MarshalRecord()) (-want +got):\n%s", diff)
	}
}

func TestParseRecordRejectsNonCanonical(t *testing.T) {
	t.Parallel()
	e := audit.Event{Seq: 1, Time: time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC), Kind: "auth.failed", Message: "a<b"}
	e.Hash = e.ComputeHash()
	rec, err := e.MarshalRecord()
	if err != nil {
		t.Fatal(err)
	}
	canonical := string(rec)
	tests := map[string]string{
		"trailing newline":  canonical + "\n",
		"space after colon": strings.Replace(canonical, `"seq":1`, `"seq": 1`, 1),
		"html escape":       strings.Replace(canonical, `a<b`, `a\u003cb`, 1),
		"unknown field":     strings.Replace(canonical, `{"seq":1`, `{"x":1,"seq":1`, 1),
		"key case":          strings.Replace(canonical, `"kind"`, `"KIND"`, 1),
		"duplicate key":     strings.Replace(canonical, `"kind":`, `"kind":"x","kind":`, 1),
		"reordered":         strings.Replace(canonical, `{"seq":1,"time":"2026-03-01T09:00:00Z"`, `{"time":"2026-03-01T09:00:00Z","seq":1`, 1),
		"time offset":       strings.Replace(canonical, `09:00:00Z`, `10:00:00+01:00`, 1),
		"nanoseconds":       strings.Replace(canonical, `09:00:00Z`, `09:00:00.000000001Z`, 1),
		"not json":          "garbage",
	}
	for name, raw := range tests {
		if raw == canonical {
			t.Fatalf("%s: test edit did not apply", name)
		}
		if _, err := audit.ParseRecord([]byte(raw)); err == nil {
			t.Errorf("ParseRecord(%s) = nil error, want a rejection: %s", name, raw)
		}
	}
	if _, err := audit.ParseRecord(rec); err != nil {
		t.Errorf("ParseRecord(canonical) = %v", err)
	}
}
