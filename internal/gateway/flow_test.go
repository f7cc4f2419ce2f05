package gateway

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chaperone-dev/chaperone/internal/pipeline"
)

// endingCalls records prompts and ended sessions.
type endingCalls struct {
	mu      sync.Mutex
	prompts []string
	ended   []string
}

func (e *endingCalls) Handle(_ context.Context, c *pipeline.Call) pipeline.Outcome {
	e.mu.Lock()
	e.prompts = append(e.prompts, c.Prompt)
	e.mu.Unlock()
	return pipeline.Outcome{Refusal: &pipeline.Refusal{Code: pipeline.CodeApprovalRequired, Message: "held", Explanation: "to x first appeared in the result of inbox()"}}
}

func (e *endingCalls) EndSession(id string) {
	e.mu.Lock()
	e.ended = append(e.ended, id)
	e.mu.Unlock()
}

func TestPromptMetaAndSessionEnd(t *testing.T) {
	g, tok := newTestGateway(t)
	calls := &endingCalls{}
	g.opts.Calls = calls
	g.opts.MaxBody = 1 << 20
	now := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	g.opts.Now = func() time.Time { return now }

	w := do(g, tok, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","_meta":{"dev.chaperone/prompt":"pay DE89 3704"}}}`, nil)
	var resp struct {
		Result struct {
			Meta map[string]struct {
				Explanation string `json:"explanation"`
			} `json:"_meta"`
		} `json:"result"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &resp); err != nil || resp.Result.Meta["dev.chaperone/refusal"].Explanation == "" {
		t.Errorf("refusal without explanation: %s", w.Body)
	}
	long := strings.Repeat("a", MaxPromptBytes+1)
	w = do(g, tok, `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"t","_meta":{"dev.chaperone/prompt":"`+long+`"}}}`, nil)
	if !strings.Contains(w.Body.String(), `"code":-32602`) || !strings.Contains(w.Body.String(), "longer than 65536 bytes") {
		t.Errorf("oversized prompt: %s", w.Body)
	}
	w = do(g, tok, `{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"t","_meta":{"dev.chaperone/prompt":7}}}`, nil)
	if !strings.Contains(w.Body.String(), `"code":-32602`) {
		t.Errorf("prompt that is not a string: %s", w.Body)
	}
	w = do(g, tok, `{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"t","_meta":{"dev.chaperone/approval":"`+strings.Repeat("a", 65)+`"}}}`, nil)
	if !strings.Contains(w.Body.String(), `_meta \"dev.chaperone/approval\" is longer than 64 bytes`) {
		t.Errorf("oversized approval id: %s", w.Body)
	}
	w = do(g, tok, `{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"t","_meta":{"dev.chaperone/reason":"`+strings.Repeat("r", MaxReasonBytes+1)+`"}}}`, nil)
	if !strings.Contains(w.Body.String(), `_meta \"dev.chaperone/reason\" is longer than 2048 bytes`) {
		t.Errorf("oversized reason: %s", w.Body)
	}
	if len(calls.prompts) != 1 || calls.prompts[0] != "pay DE89 3704" {
		t.Errorf("prompts reaching the pipeline: %q", calls.prompts)
	}

	// A session deleted by the client and one expired are both ended in the pipeline.
	init := `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18"}}`
	a := do(g, tok, init, nil).Header().Get("Mcp-Session-Id")
	b := do(g, tok, init, nil).Header().Get("Mcp-Session-Id")
	req := httptest.NewRequest(http.MethodDelete, "/mcp", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Mcp-Session-Id", a)
	rec := httptest.NewRecorder()
	g.ServeHTTP(rec, req)
	if rec.Code != http.StatusNoContent {
		t.Fatalf("DELETE = %d %s", rec.Code, rec.Body)
	}
	now = now.Add(time.Hour)
	if n := g.expire(); n != 1 {
		t.Fatalf("expire() = %d, want 1", n)
	}
	if strings.Join(calls.ended, ",") != a+","+b {
		t.Errorf("ended %q, want %q then %q", calls.ended, a, b)
	}
}
