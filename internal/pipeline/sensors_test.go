package pipeline_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chaperone-dev/chaperone/internal/inspect"
	"github.com/chaperone-dev/chaperone/internal/inspect/classifier"
	"github.com/chaperone-dev/chaperone/internal/pipeline"
	"github.com/chaperone-dev/chaperone/internal/policy"
	"github.com/chaperone-dev/chaperone/internal/registry"
	"github.com/chaperone-dev/chaperone/internal/upstream"
)

// newSensors returns the sensors the gateway runs by default, with the embedded model.
func newSensors(tb testing.TB, budget time.Duration) *pipeline.Sensors {
	tb.Helper()
	m, err := inspect.DefaultModel()
	if err != nil {
		tb.Fatal(err)
	}
	pii, err := inspect.NewPIIScanner(nil)
	if err != nil {
		tb.Fatal(err)
	}
	s := &pipeline.Sensors{
		Injection: inspect.NewInjectionDetector(m, 0), Secrets: inspect.NewSecretScanner(), PII: pii,
		Budget: budget, VaultKey: []byte("0123456789abcdef0123456789abcdef"), Nonce: func() string { return "00112233aabbccdd" },
	}
	if err := s.Init(); err != nil {
		tb.Fatal(err)
	}
	return s
}

// mailResult is a tool result of about n bytes: ordinary business mail, as JSON text.
func mailResult(n int) json.RawMessage {
	var b strings.Builder
	for i := 0; b.Len() < n; i++ {
		fmt.Fprintf(&b, "Message %d from maria.schneider@example.com: the quarterly numbers are in reports/q%d.md; "+
			"please review the budget lines before Thursday and let me know if anything is missing. ", i, i%4+1)
	}
	out, _ := json.Marshal(map[string]any{"content": []any{map[string]any{"type": "text", "text": b.String()}}})
	return out
}

var defaultSettings = inspect.ToolSettings{ResultInjection: inspect.InjectionFlag, ResultSecrets: inspect.SecretsRedact, ResultPII: inspect.PIIAllow}

func sensorPipeline(tb testing.TB, s *pipeline.Sensors, result json.RawMessage) (*pipeline.Pipeline, *pipeline.Call) {
	tb.Helper()
	return sensorPipelineWith(tb, s, defaultSettings, result)
}

func sensorPipelineWith(tb testing.TB, s *pipeline.Sensors, set inspect.ToolSettings, result json.RawMessage) (*pipeline.Pipeline, *pipeline.Call) {
	tb.Helper()
	decls := []registry.Declaration{{Name: "mail", Upstream: "srv", UpstreamName: "mail", Class: policy.ClassRead, Sensors: set}}
	reg := newRegistry(tb, decls, map[string][]upstream.Tool{"srv": {{Name: "mail", InputSchema: json.RawMessage(`{"type":"object","properties":{"folder":{"type":"string"}}}`)}}})
	pol := compilePolicy(tb, "rules:\n  - id: read\n    match: {tools: [mail]}\n    effect: allow\n", decls)
	p := pipeline.New(pipeline.Options{
		Tools: reg, Policy: func() *policy.Policy { return pol }, Audit: fakeDiscardAuditor{},
		Upstreams: fakeFixedUpstream{result: result}, Sensors: s,
	})
	c := benchCall()
	c.Tool, c.Arguments = "mail", json.RawMessage(`{"folder":"inbox"}`)
	return p, c
}

// TestSensorBudgetFailsClosed: a result too large to scan inline that the sensors cannot
// finish within their budget is withheld; with on_error: open it passes, unscanned.
func TestSensorBudgetFailsClosed(t *testing.T) {
	big := mailResult(512 << 10)
	s := newSensors(t, time.Nanosecond)
	p, c := sensorPipeline(t, s, big)
	out := p.Handle(t.Context(), c)
	if out.Refusal == nil || out.Refusal.Code != pipeline.CodeSensorUnavailable {
		t.Fatalf("Handle() = %+v, want sensor_unavailable", out.Refusal)
	}
	s = newSensors(t, time.Nanosecond)
	s.FailOpen = true
	p, c = sensorPipeline(t, s, big)
	if out := p.Handle(t.Context(), c); out.Refusal != nil {
		t.Fatalf("Handle() with fail-open = %+v, want the result", out.Refusal)
	}
	// A small result is scanned inline, whatever the budget.
	p, c = sensorPipeline(t, newSensors(t, time.Nanosecond), mailResult(2<<10))
	if out := p.Handle(t.Context(), c); out.Refusal != nil {
		t.Fatalf("Handle(small result) = %+v", out.Refusal)
	}
}

// BenchmarkHandleSensors is one allowed call without and with the content sensors, on
// results of 1 KB and 10 KB, in one run: the difference is what the sensors cost a call.
// See BENCHMARKS.md.
func BenchmarkHandleSensors(b *testing.B) {
	for _, size := range []int{1 << 10, 10 << 10} {
		for _, on := range []bool{false, true} {
			name := fmt.Sprintf("result=%dKB/sensors=%v", size>>10, on)
			b.Run(name, func(b *testing.B) {
				var s *pipeline.Sensors
				if on {
					s = newSensors(b, time.Second)
				}
				p, c := sensorPipeline(b, s, mailResult(size))
				mustAllow(b, p, c)
				ctx := b.Context()
				b.ReportAllocs()
				for b.Loop() {
					if out := p.Handle(ctx, c); out.Refusal != nil {
						b.Fatal(out.Refusal.Message)
					}
				}
			})
		}
	}
}

// TestSensorResultTransforms: what each result setting does to the text the agent gets,
// in content items and structured content alike.
func TestSensorResultTransforms(t *testing.T) {
	const key = "AKIAZ7Q3XW5N4KD2JH6P"
	html := `<p>Invoice for alice@example.com</p><script>steal()</script><div style="display:none">hidden</div>`
	result, _ := json.Marshal(map[string]any{
		"content":           []any{map[string]any{"type": "text", "text": html + " key " + key}},
		"structuredContent": map[string]any{"owner": "alice@example.com", "n": 3},
	})
	for _, tc := range []struct {
		name      string
		set       inspect.ToolSettings
		want, not []string
	}{
		{"defaults redact secrets only", defaultSettings, []string{"[REDACTED:aws_access_key]", "alice@example.com", "<script>"}, []string{key}},
		{"secrets allowed", inspect.ToolSettings{ResultInjection: inspect.InjectionOff, ResultSecrets: inspect.SecretsAllow, ResultPII: inspect.PIIAllow}, []string{key}, nil},
		{"sanitize text", inspect.ToolSettings{ResultSecrets: inspect.SecretsRedact, ResultPII: inspect.PIIAllow, Sanitize: inspect.SanitizeText},
			[]string{"Invoice for alice@example.com"}, []string{"<script>", "steal()", "hidden", "<p>", key}},
		{"mask", inspect.ToolSettings{ResultSecrets: inspect.SecretsRedact, ResultPII: inspect.PIIMask}, []string{"a***@example.com"}, []string{"alice@example.com"}},
		{"redact", inspect.ToolSettings{ResultSecrets: inspect.SecretsRedact, ResultPII: inspect.PIIRedact}, []string{"[EMAIL]"}, []string{"alice@example.com"}},
		{"tokenize", inspect.ToolSettings{ResultSecrets: inspect.SecretsRedact, ResultPII: inspect.PIITokenize}, []string{"[pii:EMAIL:", `"n":3`}, []string{"alice@example.com"}},
		{"spotlight", inspect.ToolSettings{ResultSecrets: inspect.SecretsRedact, ResultPII: inspect.PIIAllow, Spotlight: true, Datamark: true},
			[]string{`<<untrusted-data source=\"mail\" id=\"00112233aabbccdd\">>`, "Invoiceˆforˆalice"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, c := sensorPipelineWith(t, newSensors(t, time.Second), tc.set, result)
			out := p.Handle(t.Context(), c)
			if out.Refusal != nil {
				t.Fatalf("Handle() = %+v", out.Refusal)
			}
			got := string(out.Result)
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("result lacks %q:\n%s", w, out.Result)
				}
			}
			for _, n := range tc.not {
				if strings.Contains(got, n) {
					t.Errorf("result holds %q:\n%s", n, out.Result)
				}
			}
		})
	}
	// A credential blocks the result when the tool says so.
	p, c := sensorPipelineWith(t, newSensors(t, time.Second), inspect.ToolSettings{ResultSecrets: inspect.SecretsBlock, ResultPII: inspect.PIIAllow}, result)
	if out := p.Handle(t.Context(), c); out.Refusal == nil || out.Refusal.Code != pipeline.CodeResultWithheld {
		t.Errorf("Handle() with secrets: block = %+v, want result_withheld", out.Refusal)
	}
}

// TestSensorResultMembersInAnotherCase: a result that puts its payload in a member named
// like "text" in another case, which a client matching names regardless of case (Go's
// encoding/json) shows the model, is scanned all the same: every string of it is.
func TestSensorResultMembersInAnotherCase(t *testing.T) {
	const key = "AKIAZ7Q3XW5N4KD2JH6P"
	for _, res := range []string{
		`{"content":[{"type":"text","text":"nothing here","TEXT":"key ` + key + `"}]}`,
		`{"content":[{"type":"text","text":"nothing here"}],"Content":[{"type":"text","text":"key ` + key + `"}]}`,
		`{"content":[{"type":"resource","resource":{"uri":"file:///a","text":"nothing","Text":"key ` + key + `"}}]}`,
	} {
		p, c := sensorPipeline(t, newSensors(t, time.Second), json.RawMessage(res))
		out := p.Handle(t.Context(), c)
		if out.Refusal != nil {
			t.Fatalf("Handle(%s) = %+v", res, out.Refusal)
		}
		if got := string(out.Result); strings.Contains(got, key) || !strings.Contains(got, "[REDACTED:aws_access_key]") {
			t.Errorf("result %s reached the agent as\n%s\nwant the key redacted", res, got)
		}
	}
	p, c := sensorPipelineWith(t, newSensors(t, time.Second), inspect.ToolSettings{ResultSecrets: inspect.SecretsBlock, ResultPII: inspect.PIIAllow},
		json.RawMessage(`{"content":[{"type":"text","text":"nothing here","Text":"key `+key+`"}]}`))
	if out := p.Handle(t.Context(), c); out.Refusal == nil || out.Refusal.Code != pipeline.CodeResultWithheld {
		t.Errorf("Handle() with secrets: block = %+v, want result_withheld", out.Refusal)
	}
}

// TestSensorClassifier: an external classifier's verdict counts (the higher score wins),
// and when it cannot answer, its fail mode decides.
func TestSensorClassifier(t *testing.T) {
	var answer atomic.Value
	answer.Store(`{"score": 0.97, "label": "INJECTION"}`)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a := answer.Load().(string)
		if a == "down" {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte(a))
	}))
	defer srv.Close()
	mk := func(fail string) *pipeline.Sensors {
		s := newSensors(t, time.Second)
		cl, err := classifier.New(classifier.Options{URL: srv.URL, FailMode: fail, Timeout: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		s.Classifier = cl
		return s
	}
	block := inspect.ToolSettings{ResultInjection: inspect.InjectionBlock, ResultSecrets: inspect.SecretsRedact, ResultPII: inspect.PIIAllow}
	benign := mailResult(1 << 10)
	p, c := sensorPipelineWith(t, mk(classifier.FailOpen), block, benign)
	if out := p.Handle(t.Context(), c); out.Refusal == nil || out.Refusal.Code != pipeline.CodeResultWithheld {
		t.Errorf("classifier says injection: Handle() = %+v, want result_withheld", out.Refusal)
	}
	answer.Store(`[{"label": "BENIGN", "score": 0.99}, {"label": "INJECTION", "score": 0.01}]`)
	if out := p.Handle(t.Context(), c); out.Refusal != nil {
		t.Errorf("classifier says benign: Handle() = %+v", out.Refusal)
	}
	answer.Store("down")
	if out := p.Handle(t.Context(), c); out.Refusal != nil {
		t.Errorf("classifier down, fail open: Handle() = %+v", out.Refusal)
	}
	p, c = sensorPipelineWith(t, mk(classifier.FailClosed), block, benign)
	if out := p.Handle(t.Context(), c); out.Refusal == nil || out.Refusal.Code != pipeline.CodeResultWithheld {
		t.Errorf("classifier down, fail closed: Handle() = %+v, want result_withheld", out.Refusal)
	}
}
