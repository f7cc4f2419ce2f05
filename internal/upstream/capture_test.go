package upstream

import (
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

func TestCaptureBody(t *testing.T) {
	t.Parallel()
	const resp = `{"jsonrpc":"2.0","id":3,"result":{"content":[],"b":1,"a":2}}`
	const want = `{"content":[],"b":1,"a":2}`
	split := strings.Index(resp, `"result"`)
	tests := []struct {
		name  string
		sse   bool
		body  string
		limit int
		want  string // "" means nothing captured
	}{
		{name: "json", body: resp, want: want},
		{name: "json with whitespace", body: " \n" + resp + "\n", want: want},
		{name: "json error response", body: `{"jsonrpc":"2.0","id":3,"error":{"code":-32602,"message":"bad"}}`},
		{name: "json request", body: `{"jsonrpc":"2.0","id":3,"method":"ping","result":{}}`},
		{name: "json notification", body: `{"jsonrpc":"2.0","method":"notifications/x","result":{}}`},
		{name: "json malformed", body: `{"jsonrpc":"2.0","id":3,"result":{`},
		{name: "json too large", body: resp, limit: len(resp) - 1},
		{name: "json at limit", body: resp, limit: len(resp), want: want},
		{name: "sse", sse: true, body: "event: message\ndata: " + resp + "\n\n", want: want},
		{name: "sse no space", sse: true, body: "data:" + resp + "\n\n", want: want},
		{name: "sse crlf", sse: true, body: "event: message\r\ndata: " + resp + "\r\n\r\n", want: want},
		{name: "sse multi-line data", sse: true, body: "data: " + resp[:split] + "\ndata: " + resp[split:] + "\n\n", want: want},
		{name: "sse after other messages", sse: true, body: ": comment\n\nid: 1\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{}}\n\ndata: " + resp + "\n\n", want: want},
		{name: "sse unterminated event", sse: true, body: "data: " + resp + "\n"},
		{name: "sse event too large", sse: true, body: "data: " + resp + "\n\n", limit: len(resp) - 1},
		{name: "sse line too large then good event", sse: true, body: "data: " + strings.Repeat("x", 200) + "\n\ndata: " + resp + "\n\n", limit: 100, want: want},
		{name: "sse overflowing event is dropped whole", sse: true, body: "data: " + strings.Repeat("x", 200) + "\ndata: " + resp + "\n\n", limit: 100},
	}
	for _, tt := range tests {
		for _, chunked := range []bool{false, true} {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				limit := tt.limit
				if limit == 0 {
					limit = maxCapture
				}
				slot := new(rawSlot)
				var r io.Reader = strings.NewReader(tt.body)
				if chunked {
					r = iotest.OneByteReader(r)
				}
				b := &captureBody{ReadCloser: io.NopCloser(r), slot: slot, sse: tt.sse, limit: limit}
				got, err := io.ReadAll(b)
				if err != nil || string(got) != tt.body {
					t.Fatalf("ReadAll = %q, %v; want the body unchanged", got, err)
				}
				if string(slot.get()) != tt.want {
					t.Errorf("captured %q (one byte at a time: %v), want %q", slot.get(), chunked, tt.want)
				}
			})
		}
	}
}

func FuzzCaptureBody(f *testing.F) {
	f.Add(true, "event: message\r\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\r\n\r\n", 64)
	f.Add(false, `{"jsonrpc":"2.0","id":1,"result":{"a":[1,2]}}`, 1024)
	f.Add(true, "data:\ndata:\n\n\r\r\n", 1)
	f.Fuzz(func(t *testing.T, sse bool, body string, limit int) {
		limit = 1 + int(uint(limit)%4096)
		slot := new(rawSlot)
		b := &captureBody{ReadCloser: io.NopCloser(iotest.HalfReader(strings.NewReader(body))), slot: slot, sse: sse, limit: limit}
		got, err := io.ReadAll(b)
		if err != nil || string(got) != body {
			t.Fatalf("ReadAll = %q, %v; want the body unchanged", got, err)
		}
		if len(slot.get()) > limit {
			t.Errorf("captured %d bytes with limit %d", len(slot.get()), limit)
		}
		if len(b.buf) != 0 || len(b.data) != 0 {
			t.Errorf("buffers not released at EOF")
		}
	})
}
