package pipeline_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/chaperone-dev/chaperone/internal/audit"
	"github.com/chaperone-dev/chaperone/internal/inspect"
	"github.com/chaperone-dev/chaperone/internal/pipeline"
	"github.com/chaperone-dev/chaperone/internal/store/sqlite"
)

// captured is the content part of an event.
type captured struct {
	Kind, Captured    string
	Arguments, Result string
}

func contentOf(events []audit.Event) []captured {
	out := make([]captured, len(events))
	for i, e := range events {
		out[i] = captured{Kind: e.Kind, Captured: e.Captured, Arguments: string(e.Arguments), Result: string(e.Result)}
	}
	return out
}

func TestCapture(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	args := pipeline.Capture{Arguments: true}
	both := pipeline.Capture{Arguments: true, Results: true}
	result := `{"content":[{"type":"text","text":"ok"}]}`
	tests := []struct {
		name       string
		capture    pipeline.Capture
		tool, args string
		upstream   func(context.Context, string, string, json.RawMessage) (json.RawMessage, error)
		want       []captured
	}{
		{name: "off", tool: "echo", args: `{"msg":"hi"}`,
			want: []captured{{Kind: audit.KindCallIntent}, {Kind: audit.KindCallOutcome}}},
		{name: "arguments, compacted", capture: args, tool: "echo", args: "{ \"msg\" :\n \"hi\" }",
			want: []captured{{Kind: audit.KindCallIntent, Captured: "arguments", Arguments: `{"msg":"hi"}`}, {Kind: audit.KindCallOutcome}}},
		{name: "arguments and results", capture: both, tool: "echo", args: `{"msg":"hi"}`,
			want: []captured{
				{Kind: audit.KindCallIntent, Captured: "arguments", Arguments: `{"msg":"hi"}`},
				{Kind: audit.KindCallOutcome, Captured: "result", Result: result},
			}},
		{name: "refused by policy", capture: both, tool: "wipe", args: `{"msg":"rm -rf"}`,
			want: []captured{{Kind: audit.KindCallRefused, Captured: "arguments", Arguments: `{"msg":"rm -rf"}`}}},
		{name: "unknown tool", capture: args, tool: "nope", args: `{"x":1}`,
			want: []captured{{Kind: audit.KindCallRefused, Captured: "arguments", Arguments: `{"x":1}`}}},
		{name: "no arguments", capture: args, tool: "ping", args: "",
			want: []captured{{Kind: audit.KindCallIntent, Captured: "arguments"}, {Kind: audit.KindCallOutcome}}},
		{name: "null arguments", capture: args, tool: "ping", args: "null",
			want: []captured{{Kind: audit.KindCallIntent, Captured: "arguments"}, {Kind: audit.KindCallOutcome}}},
		{name: "invalid JSON", capture: args, tool: "echo", args: `{"msg":`,
			want: []captured{{Kind: audit.KindCallRefused, Captured: "invalid_json"}}},
		// Arguments that are not UTF-8 are refused (argcheck.ErrInvalidUTF8), and not
		// captured: the log holds valid JSON only.
		{name: "not UTF-8", capture: args, tool: "echo", args: "{\"msg\":\"\xff\"}",
			want: []captured{{Kind: audit.KindCallRefused, Captured: "invalid_json"}}},
		{name: "arguments too large", capture: pipeline.Capture{Arguments: true, Results: true, MaxBytes: 16}, tool: "echo", args: `{"msg":"0123456789"}`,
			want: []captured{
				{Kind: audit.KindCallIntent, Captured: "too_large"},
				{Kind: audit.KindCallOutcome, Captured: "too_large"}, // the result is larger too
			}},
		{name: "at the bound", capture: pipeline.Capture{Arguments: true, MaxBytes: 12}, tool: "echo", args: `{"msg":"hi"}`,
			want: []captured{{Kind: audit.KindCallIntent, Captured: "arguments", Arguments: `{"msg":"hi"}`}, {Kind: audit.KindCallOutcome}}},
		{name: "upstream failed", capture: both, tool: "echo", args: `{"msg":"hi"}`,
			upstream: func(context.Context, string, string, json.RawMessage) (json.RawMessage, error) { return nil, errBoom },
			want:     []captured{{Kind: audit.KindCallIntent, Captured: "arguments", Arguments: `{"msg":"hi"}`}, {Kind: audit.KindCallOutcome}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			aud := &fakeAuditor{}
			p := h.pipeline(pipeline.Options{Audit: aud, Upstreams: &fakeUpstream{call: tt.upstream}, Capture: tt.capture})
			p.Handle(t.Context(), newCall(tt.tool, tt.args))
			_, events := aud.recorded()
			if diff := cmp.Diff(tt.want, contentOf(events)); diff != "" {
				t.Errorf("Handle(%s, %q) with capture %+v: events (-want +got):\n%s", tt.tool, tt.args, tt.capture, diff)
			}
		})
	}
}

// With capture off, no argument or result value reaches the database file: not in the
// events, not in the write-ahead log. With capture on, the same run stores them, which shows
// the search would find them.
func TestCaptureOffStoresNoValues(t *testing.T) {
	t.Parallel()
	const secretArg, secretResult = "sk-live-4242-do-not-store", "result-secret-7e3a"
	for _, tc := range []struct {
		capture pipeline.Capture
		want    bool
	}{
		{pipeline.Capture{}, false},
		{pipeline.Capture{Arguments: true, Results: true}, true},
	} {
		dir := t.TempDir()
		path := filepath.Join(dir, "chaperone.db")
		db, err := sqlite.Open(t.Context(), path)
		if err != nil {
			t.Fatal(err)
		}
		log, err := audit.NewLog(t.Context(), db, audit.LogOptions{})
		if err != nil {
			t.Fatal(err)
		}
		h := newHarness(t)
		up := &fakeUpstream{call: func(context.Context, string, string, json.RawMessage) (json.RawMessage, error) {
			return json.RawMessage(`{"content":[{"type":"text","text":"` + secretResult + `"}]}`), nil
		}}
		p := h.pipeline(pipeline.Options{Audit: log, Upstreams: up, Capture: tc.capture})
		for _, c := range []struct{ tool, args string }{
			{"echo", `{"msg":"` + secretArg[:20] + `"}`},       // allowed (msg is at most 20 characters)
			{"wipe", `{"msg":"` + secretArg + `"}`},            // denied by policy
			{"nope", `{"token":"` + secretArg + `"}`},          // unknown tool
			{"echo", `{"msg":"x","key":"` + secretArg + `"}`},  // invalid arguments
			{"send", `{"msg":"` + secretArg[:20] + `","n":1}`}, // needs approval
		} {
			p.Handle(t.Context(), newCall(c.tool, c.args))
		}
		if err := log.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
		var all []byte
		entries, _ := os.ReadDir(dir)
		for _, e := range entries { // the database, its WAL and shared memory
			b, err := os.ReadFile(filepath.Join(dir, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			all = append(all, b...)
		}
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
		for _, s := range []string{secretArg[:20], secretResult} {
			if got := bytes.Contains(all, []byte(s)); got != tc.want {
				t.Errorf("capture %+v: database files contain %q = %v, want %v", tc.capture, s, got, tc.want)
			}
		}
		if !tc.want && !strings.Contains(string(all), "call.refused") {
			t.Errorf("capture off: database files hold no call.refused event: the search proves nothing")
		}
	}
}

// TestCaptureRedactsWithTheSharedRedactor: captured arguments go through the secret
// scanner's JSON redactor, which also reads a value behind its member's name, and JSON
// too deep to walk is not recorded rather than recorded unscanned.
func TestCaptureRedactsWithTheSharedRedactor(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	const pw = "Xk29fj2KdP0qZ7wL"
	deep := strings.Repeat(`{"a":`, inspect.MaxRedactJSONDepth+1) + `"AKIAZ7Q3XW5N4KD2JH6P"` + strings.Repeat("}", inspect.MaxRedactJSONDepth+1)
	for _, tc := range []struct {
		name, args, captured string
		leak                 string
	}{
		{"secret named by its key", `{"password":"` + pw + `","user":"alice"}`, "arguments", pw},
		{"too deep to scan", deep, "invalid_json", "AKIAZ7Q3XW5N4KD2JH6P"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			aud := &fakeAuditor{}
			p := h.pipeline(pipeline.Options{Audit: aud, Sensors: newSensors(t, time.Second), Capture: pipeline.Capture{Arguments: true, MaxBytes: 1 << 20}})
			p.Handle(t.Context(), newCall("nope", tc.args))
			_, evs := aud.recorded()
			if len(evs) != 1 || evs[0].Captured != tc.captured || strings.Contains(string(evs[0].Arguments), tc.leak) {
				t.Fatalf("captured %q: %s", evs[0].Captured, evs[0].Arguments)
			}
			if tc.captured == "arguments" && !strings.Contains(string(evs[0].Arguments), `"user":"alice"`) {
				t.Errorf("the rest of the arguments was not kept: %s", evs[0].Arguments)
			}
		})
	}
}
