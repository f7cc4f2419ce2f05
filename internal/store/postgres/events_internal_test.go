package postgres

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/chaperone-dev/chaperone/internal/audit"
)

// pgTail is what right(event, pgHeadTail) returns: the last pgHeadTail characters.
func pgTail(rec string) string {
	n := 0
	for i := len(rec); i > 0; {
		_, size := utf8.DecodeLastRuneInString(rec[:i])
		i -= size
		if n++; n == pgHeadTail {
			return rec[i:]
		}
	}
	return rec
}

// pgVerbatim reports whether the JSON encoder writes s as it is, between quotes.
func pgVerbatim(s string) bool {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	return enc.Encode(s) == nil && b.String() == `"`+s+`"`+"\n"
}

func TestRecordHash(t *testing.T) {
	t.Parallel()
	sha := "sha256:" + strings.Repeat("ab", 32)
	for _, tt := range []struct {
		tail, want string
		ok         bool
	}{
		{`{"seq":1,"prev_hash":"","hash":"` + sha + `"}`, sha, true},
		{`…","prev_hash":"x","hash":""}`, "", true},
		{`"prev_hash":"` + sha + `"}`, "", false}, // a prev_hash is not the hash
		{`{"hash":"a"} `, "", false},
		{`{"hash":"a\"b"}`, "", false},
		{`{"hash":"a\\"}`, "", false},
		{`"hash":"}`, "", false},
		{`"}`, "", false},
		{``, "", false},
	} {
		got, err := pgRecordHash(tt.tail)
		if got != tt.want || (err == nil) != tt.ok {
			t.Errorf("pgRecordHash(%q) = %q, %v; want %q, ok %v", tt.tail, got, err, tt.want, tt.ok)
		}
	}
}

// FuzzRecordHash: the hash read from the end of a stored record is the event's hash,
// for every hash the encoder writes as it is and that fits in the tail read; for any
// other input it is an error or a hash without a quote or a backslash, never a panic.
func FuzzRecordHash(f *testing.F) {
	for _, s := range []string{"sha256:" + strings.Repeat("0f", 32), "", "h", "é€😀", `"`, `\`, "\x00", "\u2028", "<&>",
		strings.Repeat("x", 300)} {
		f.Add(s, "message")
	}
	f.Fuzz(func(t *testing.T, hash, message string) {
		if got, err := pgRecordHash(hash); err == nil && strings.ContainsAny(got, `"\`) {
			t.Fatalf("pgRecordHash(%q) = %q, which holds a quote or a backslash", hash, got)
		}
		e := audit.Event{Seq: 7, Time: time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC), Kind: audit.KindCallIntent,
			Message: message, PrevHash: "sha256:prev", Hash: hash}
		rec, err := e.MarshalRecord()
		if err != nil {
			t.Fatal(err)
		}
		got, err := pgRecordHash(pgTail(string(rec)))
		fits := utf8.RuneCountInString(hash) <= pgHeadTail-len(`"hash":""}`)
		switch {
		case pgVerbatim(hash) && fits && (err != nil || got != hash):
			t.Fatalf("pgRecordHash(tail of a record with hash %q) = %q, %v; want the hash", hash, got, err)
		case err == nil && got != hash:
			t.Fatalf("pgRecordHash(tail of a record with hash %q) = %q; want the hash or an error", hash, got)
		}
	})
}
