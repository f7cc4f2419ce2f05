package credential

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

func BenchmarkApplyBearer(b *testing.B) {
	e := newEnv(b, "secret:crm-key", "crm-api-key-0123456789abcdef")
	br := e.broker(b, map[string]Spec{"crm": {Type: TypeBearer, Secret: "secret:crm-key"}})
	ci := &CallInfo{Upstream: "crm", Tool: "crm.lookup"}
	h := http.Header{}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := br.Apply(ctx, "crm", ci, h); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkApplyOAuthCached(b *testing.B) {
	te := newTokenEndpoint(b, func(w http.ResponseWriter, r *http.Request, f url.Values) {
		writeJSON(w, http.StatusOK, map[string]any{"access_token": "at-bench-0123456789", "expires_in": 3600})
	})
	e := newEnv(b, "secret:crm-client", testClientSecret)
	br := e.broker(b, map[string]Spec{"crm": ccSpec(te.tokenURL())})
	ci := &CallInfo{Upstream: "crm", Tool: "crm.lookup"}
	h := http.Header{}
	ctx := context.Background()
	if _, err := br.Apply(ctx, "crm", ci, h); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := br.Apply(ctx, "crm", ci, h); err != nil {
			b.Fatal(err)
		}
	}
	if te.hits.Load() != 1 {
		b.Fatalf("token endpoint hit %d times, want 1", te.hits.Load())
	}
}

// BenchmarkRedact scans a 16 KiB tool result for 20 known values, 3 of which occur in it.
func BenchmarkRedact(b *testing.B) {
	r, _ := redactorWith()
	values := make([]string, 20)
	for i := range values {
		var buf [16]byte
		rand.Read(buf[:])
		values[i] = hex.EncodeToString(buf[:])
		r.add(values[i], time.Time{})
	}
	var sb strings.Builder
	for i := 0; sb.Len() < 16<<10; i++ {
		sb.WriteString(`{"id":12345,"name":"Customer record","email":"someone@example.com","note":"lorem ipsum dolor sit amet"},`)
		if i%50 == 7 {
			sb.WriteString(`"leak":"` + values[i%20] + `",`)
		}
	}
	in := []byte(sb.String()[:16<<10])
	if _, n := r.Redact(in); n == 0 {
		b.Fatal("the result holds no known value")
	}
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		r.Redact(in)
	}
}

// BenchmarkRedactClean is the common case: nothing to redact.
func BenchmarkRedactClean(b *testing.B) {
	r, _ := redactorWith()
	for range 20 {
		var buf [16]byte
		rand.Read(buf[:])
		r.add(hex.EncodeToString(buf[:]), time.Time{})
	}
	in := []byte(strings.Repeat(`{"id":12345,"name":"Customer record","note":"lorem ipsum"},`, 300)[:16<<10])
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		r.Redact(in)
	}
}
