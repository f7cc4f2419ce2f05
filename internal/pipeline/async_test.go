package pipeline_test

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"sync"
	"testing"

	"github.com/chaperone-dev/chaperone/internal/audit"
	"github.com/chaperone-dev/chaperone/internal/pipeline"
)

// orderAuditor records, in order, which events were appended durably and which queued.
type orderAuditor struct {
	mu        sync.Mutex
	log       []string
	failAsync bool
}

func (o *orderAuditor) note(s string) {
	o.mu.Lock()
	o.log = append(o.log, s)
	o.mu.Unlock()
}

func (o *orderAuditor) Append(_ context.Context, e *audit.Event) error {
	o.note("durable " + e.Kind)
	return nil
}

func (o *orderAuditor) AppendAsync(_ context.Context, e *audit.Event, then func(error)) error {
	if o.failAsync {
		return errors.New("queue closed")
	}
	o.note("queued " + e.Kind)
	then(nil)
	return nil
}

// TestAsyncAfter: with audit.after async, the intent is still durable before the upstream
// runs; the outcome and refusals are queued; an outcome that cannot even be queued still
// withholds the result.
func TestAsyncAfter(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	aud := &orderAuditor{}
	up := &fakeUpstream{}
	up.call = func(ctx context.Context, _, _ string, _ json.RawMessage) (json.RawMessage, error) {
		aud.note("upstream")
		return okResult, nil
	}
	p := h.pipeline(pipeline.Options{Audit: aud, Upstreams: up, AsyncAfter: true})
	if out := p.Handle(t.Context(), newCall("echo", `{"msg":"hi"}`)); out.Refusal != nil {
		t.Fatalf("allowed call refused: %+v", out.Refusal)
	}
	p.Handle(t.Context(), newCall("wipe", `{"msg":"hi"}`))
	want := []string{"durable call.intent", "upstream", "queued call.outcome", "queued call.refused"}
	if got := aud.log; !slices.Equal(got, want) {
		t.Errorf("order = %q, want %q", got, want)
	}

	aud.failAsync = true
	out := p.Handle(t.Context(), newCall("echo", `{"msg":"hi"}`))
	if out.Refusal == nil || out.Refusal.Code != pipeline.CodeAuditUnavailable || out.Result != nil {
		t.Errorf("outcome not queued: %+v, want audit_unavailable and no result", out)
	}
}
