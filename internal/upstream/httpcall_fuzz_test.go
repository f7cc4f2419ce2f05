package upstream

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"testing"
)

// refusingTransport fails every request: the fuzzed streams' answers to upstream requests
// go nowhere.
type refusingTransport struct{}

func (refusingTransport) RoundTrip(*http.Request) (*http.Response, error) {
	return nil, errors.New("refused")
}

// FuzzDirectAnswer feeds arbitrary bytes to the direct call's answer readers, as a JSON
// body and as an SSE stream: they must return a result or an error, never panic, and a
// result is always the answer to the request.
func FuzzDirectAnswer(f *testing.F) {
	f.Add([]byte(`{"jsonrpc":"2.0","id":"chaperone-1","result":{"content":[]}}`))
	f.Add([]byte("data: {\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"ping\"}\r\n\r\ndata: {\"jsonrpc\":\"2.0\",\"id\":\"chaperone-1\",\r\ndata: \"result\":{}}\n\n"))
	f.Add([]byte(`{"jsonrpc":"2.0","id":"chaperone-1","error":{"code":-32602,"message":"x"}}`))
	f.Add([]byte("data: {\"id\":\"chaperone-1\"}"))
	c := &Client{
		cfg:  Config{Name: "fuzz", URL: "http://127.0.0.1:9/mcp"},
		log:  slog.New(slog.DiscardHandler),
		http: &http.Client{Transport: refusingTransport{}},
	}
	hs := &httpSession{id: "s", proto: protocolVersion}
	f.Fuzz(func(t *testing.T, b []byte) {
		if m, err := readJSONAnswer(bytes.NewReader(b), "chaperone-1"); err == nil && !sameID(m.ID, "chaperone-1") {
			t.Fatalf("JSON answer with id %s accepted", m.ID)
		}
		m, err := c.readStream(context.Background(), hs, io.NopCloser(bytes.NewReader(b)), "chaperone-1")
		if err == nil && (m == nil || !sameID(m.ID, "chaperone-1") || m.Method != "") {
			t.Fatalf("stream answer %+v accepted", m)
		}
	})
}
