package pipeline_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/chaperone-dev/chaperone/internal/audit"
	"github.com/chaperone-dev/chaperone/internal/pipeline"
)

// TestExecutionCarriesTheCallAndCredentials shows what the upstream side sees of an allowed
// call and that the credentials it reports end up on the outcome event.
func TestExecutionCarriesTheCallAndCredentials(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	aud := &fakeAuditor{}
	var seen *pipeline.Execution
	up := &fakeUpstream{call: func(ctx context.Context, _, _ string, _ json.RawMessage) (json.RawMessage, error) {
		ex, ok := pipeline.ExecutionFrom(ctx)
		if !ok {
			return nil, errors.New("no execution in the upstream call's context")
		}
		seen = ex
		ex.UsedCredential("bearer:crm-key")
		ex.UsedCredential("bearer:crm-key") // listed once
		ex.UsedCredential("receipt:srv")
		return okResult, nil
	}}
	p := h.pipeline(pipeline.Options{Audit: aud, Upstreams: up})
	c := newCall("echo", `{"msg":"hi"}`)
	if out := p.Handle(t.Context(), c); out.Refusal != nil {
		t.Fatalf("Handle refused: %s %s", out.Refusal.Code, out.Refusal.Message)
	}
	if seen == nil || seen.Call != c || seen.Tool.Name != "echo" || seen.Decision.Version != h.pol.Version() || seen.ArgsHash != audit.HashArgs(c.Arguments) {
		t.Fatalf("Execution = %+v, want the call, its tool, decision and args hash", seen)
	}
	_, evs := aud.recorded()
	if len(evs) != 2 || strings.Join(evs[1].Credentials, ",") != "bearer:crm-key,receipt:srv" {
		t.Fatalf("outcome Credentials = %v, want [bearer:crm-key receipt:srv]", evs[len(evs)-1].Credentials)
	}
	if len(evs[0].Credentials) != 0 {
		t.Errorf("intent Credentials = %v, want none (nothing was sent yet)", evs[0].Credentials)
	}
}

func TestCredentialFailureRefusesTheCall(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	aud := &fakeAuditor{}
	up := &fakeUpstream{call: func(ctx context.Context, _, _ string, _ json.RawMessage) (json.RawMessage, error) {
		ex, _ := pipeline.ExecutionFrom(ctx)
		ex.CredentialFailed(errors.New(`upstream srv: oauth token endpoint answered 401 invalid_client`))
		return nil, errors.New("transport: credential unavailable")
	}}
	p := h.pipeline(pipeline.Options{Audit: aud, Upstreams: up})
	out := p.Handle(t.Context(), newCall("echo", `{"msg":"hi"}`))
	if out.Refusal == nil || out.Refusal.Code != pipeline.CodeCredentialUnavailable {
		t.Fatalf("Handle = %+v, want refusal %s", out, pipeline.CodeCredentialUnavailable)
	}
	if strings.Contains(out.Refusal.Message, "invalid_client") {
		t.Errorf("the agent's message %q tells it why the credential failed; only the log may", out.Refusal.Message)
	}
	_, evs := aud.recorded()
	last := evs[len(evs)-1]
	if last.Kind != audit.KindCallOutcome || last.Reason != string(pipeline.CodeCredentialUnavailable) || !strings.Contains(last.Detail, "invalid_client") {
		t.Errorf("outcome = %+v, want reason credential_unavailable with the cause in Detail", last)
	}
}

// TestRedactRunsBeforeAnythingSeesTheResult: a credential an upstream echoes back is gone
// from what the agent receives and from the captured result in the audit log.
func TestRedactRunsBeforeAnythingSeesTheResult(t *testing.T) {
	t.Parallel()
	const secret = "sk-live-0123456789abcdef"
	h := newHarness(t)
	aud := &fakeAuditor{}
	up := &fakeUpstream{call: func(context.Context, string, string, json.RawMessage) (json.RawMessage, error) {
		return json.RawMessage(`{"content":[{"type":"text","text":"your key is ` + secret + `"}]}`), nil
	}}
	redact := func(res json.RawMessage) (json.RawMessage, int) {
		n := bytes.Count(res, []byte(secret))
		return bytes.ReplaceAll(res, []byte(secret), []byte("[REDACTED:credential]")), n
	}
	p := h.pipeline(pipeline.Options{Audit: aud, Upstreams: up, Redact: redact, Capture: pipeline.Capture{Results: true}})
	out := p.Handle(t.Context(), newCall("echo", `{"msg":"hi"}`))
	if out.Refusal != nil {
		t.Fatalf("Handle refused: %s", out.Refusal.Message)
	}
	if bytes.Contains(out.Result, []byte(secret)) || !bytes.Contains(out.Result, []byte("[REDACTED:credential]")) {
		t.Errorf("result = %s, want the credential redacted", out.Result)
	}
	_, evs := aud.recorded()
	for _, e := range evs {
		b, _ := json.Marshal(e)
		if bytes.Contains(b, []byte(secret)) {
			t.Errorf("%s event carries the credential: %s", e.Kind, b)
		}
	}
	if o := evs[len(evs)-1]; !strings.Contains(strings.Join(o.Sensors, " "), "redacted:credential:1") {
		t.Errorf("outcome Sensors = %v, want redacted:credential:1", o.Sensors)
	}
}
