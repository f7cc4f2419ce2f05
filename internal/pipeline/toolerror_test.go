package pipeline

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// referenceIsError is what an MCP client reads: the exact member isError, the last one
// if repeated, decoded with encoding/json.
func referenceIsError(b []byte) bool {
	var m map[string]json.RawMessage
	if json.Unmarshal(b, &m) != nil {
		return false
	}
	return string(bytes.TrimSpace(m["isError"])) == "true"
}

func TestIsToolError(t *testing.T) {
	t.Parallel()
	big := `{"content":[{"type":"text","text":"` + strings.Repeat(`a \"quoted\" {brace} [x], `, 400) + `"}],`
	for _, tc := range []struct {
		in   string
		want bool
	}{
		{`{"content":[],"isError":true}`, true},
		{`{"isError": true , "content":[]}`, true},
		{`{"content":[],"isError":false}`, false},
		{`{"content":[]}`, false},
		{`{}`, false},
		{big + `"isError":true}`, true},
		{big + `"isError":false}`, false},
		// Only the top level counts.
		{`{"content":[{"type":"text","isError":true}],"structuredContent":{"isError":true}}`, false},
		{`{"content":[{"text":"\"isError\":true"}]}`, false},
		// The last of repeated members wins, as in encoding/json.
		{`{"isError":true,"isError":false}`, false},
		{`{"isError":false,"isError":true}`, true},
		// Names are exact (encoding/json's struct matching would also take ISERROR).
		{`{"ISERROR":true}`, false},
		// An escaped name is decoded, then compared.
		{`{"is\u0045rror":true}`, true},
		{`{"isError":"true"}`, false},
		{`{"isError":1}`, false},
		{`[true]`, false},
		{`null`, false},
		{``, false},
	} {
		if got := isToolError(json.RawMessage(tc.in)); got != tc.want {
			t.Errorf("isToolError(%.60s) = %v, want %v", tc.in, got, tc.want)
		}
		if json.Valid([]byte(tc.in)) && referenceIsError([]byte(tc.in)) != tc.want {
			t.Errorf("the reference disagrees with the table on %.60s", tc.in)
		}
	}
}

// FuzzIsToolError checks the top-level scan against encoding/json on every valid JSON
// input: a result the upstream sent is valid JSON (it was decoded from its answer).
func FuzzIsToolError(f *testing.F) {
	for _, s := range []string{
		`{"content":[],"isError":true}`, `{"a":{"isError":true}}`, `{"isError":false,"isError":true}`,
		`{"is\u0045rror":true}`, `{"x":"\\\"","isError":true}`, `{ "isError" : true }`, `[1]`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got := isToolError(b) // must not panic on anything
		if json.Valid(b) && got != referenceIsError(b) {
			t.Fatalf("isToolError(%q) = %v, encoding/json says %v", b, got, !got)
		}
	})
}

func BenchmarkIsToolError10KB(b *testing.B) {
	res := json.RawMessage(`{"content":[{"type":"text","text":"` + strings.Repeat("the quick brown fox jumps over the lazy dog ", 240) + `"}],"isError":false}`)
	b.SetBytes(int64(len(res)))
	b.ReportAllocs()
	for b.Loop() {
		isToolError(res)
	}
}
