package gateway

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/trace"
)

func TestParentContext(t *testing.T) {
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	const other = "00-11111111111111111111111111111111-2222222222222222-01"
	h := http.Header{}
	h.Set("Traceparent", other)
	for _, tc := range []struct {
		name, meta, want string
		header           http.Header
	}{
		{"meta", tp, "4bf92f3577b34da6a3ce929d0e0e4736", http.Header{}},
		{"meta wins over header", tp, "4bf92f3577b34da6a3ce929d0e0e4736", h},
		{"header", "", "11111111111111111111111111111111", h},
		{"malformed meta falls back to header", "00-zz-yy-01", "11111111111111111111111111111111", h},
		{"oversized meta ignored", tp + strings.Repeat("x", 2048), "", http.Header{}},
		{"nothing", "", "", http.Header{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sc := trace.SpanContextFromContext(parentContext(context.Background(), tc.header, tc.meta, ""))
			got := ""
			if sc.IsValid() {
				got = sc.TraceID().String()
			}
			if got != tc.want {
				t.Errorf("trace id = %q, want %q", got, tc.want)
			}
		})
	}
}

func FuzzParentContext(f *testing.F) {
	f.Add("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "k=v", "")
	f.Add("", "", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00")
	f.Add("ff-0-0-0", ",,,", "garbage")
	f.Fuzz(func(t *testing.T, traceparent, tracestate, header string) {
		h := http.Header{}
		if header != "" {
			h["Traceparent"] = []string{header}
		}
		sc := trace.SpanContextFromContext(parentContext(context.Background(), h, traceparent, tracestate))
		if sc.IsValid() && !sc.IsRemote() {
			t.Fatalf("a parent from the request is not marked remote: %v", sc)
		}
	})
}
