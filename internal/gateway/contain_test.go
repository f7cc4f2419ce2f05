package gateway

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/chaperone-dev/chaperone/internal/pipeline"
)

// TestContainmentMeta: the idempotency key and the usage report reach the pipeline; a
// malformed or out-of-bounds value is a protocol error that names the key and the bound.
func TestContainmentMeta(t *testing.T) {
	var got *pipeline.Call
	g, tok := newTestGatewayCalls(t, func(c *pipeline.Call) pipeline.Outcome {
		got = c
		return pipeline.Outcome{Result: json.RawMessage(`{"content":[]}`)}
	})
	call := func(meta string) map[string]json.RawMessage {
		got = nil
		w := do(g, tok, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","_meta":`+meta+`}}`, nil)
		var m map[string]json.RawMessage
		if err := json.Unmarshal(w.Body.Bytes(), &m); err != nil {
			t.Fatalf("_meta %s: %v: %s", meta, err, w.Body)
		}
		return m
	}
	call(`{"dev.chaperone/idempotency_key":"retry-7","dev.chaperone/usage":{"input_tokens":1200,"output_tokens":300,"cost":0.012}}`)
	if got == nil || got.IdempotencyKey != "retry-7" || got.ReportedTokens != 1500 || got.ReportedSpend != 0.012 {
		t.Fatalf("call = %+v, want the key, 1500 tokens and 0.012 spent", got)
	}
	call(`{"dev.chaperone/usage":null}`)
	if got == nil || got.ReportedTokens != 0 || got.ReportedSpend != 0 {
		t.Errorf("usage null: %+v", got)
	}
	for _, tc := range []struct{ meta, want string }{
		{`{"dev.chaperone/usage":"lots"}`, `"dev.chaperone/usage" must be an object`},
		{`{"dev.chaperone/usage":{"input_tokens":-1}}`, "between 0 and 1000000000"},
		{`{"dev.chaperone/usage":{"output_tokens":1000000000000}}`, "between 0 and 1000000000"},
		{`{"dev.chaperone/usage":{"output_tokens":1.5}}`, `"dev.chaperone/usage" must be an object`},
		{`{"dev.chaperone/usage":{"cost":-0.5}}`, "cost must be between 0 and 1000000"},
		{`{"dev.chaperone/usage":{"cost":2e6}}`, "cost must be between 0 and 1000000"},
		{`{"dev.chaperone/idempotency_key":"` + strings.Repeat("k", 256) + `"}`, `"dev.chaperone/idempotency_key" is longer than 255 bytes`},
	} {
		var e struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		}
		json.Unmarshal(call(tc.meta)["error"], &e)
		if got != nil || e.Code != -32602 || !strings.Contains(e.Message, tc.want) {
			t.Errorf("_meta %.60s: %+v, want -32602 saying %q and no call", tc.meta, e, tc.want)
		}
	}
}
