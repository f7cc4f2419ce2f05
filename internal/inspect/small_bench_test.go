package inspect

import (
	"encoding/json"
	"strings"
	"testing"
)

// The benchmarks in this file measure the sensors the pipeline runs on one tool call at
// the hot path's common size: a 256-byte clean result, a 256-byte argument set and a
// 256-byte user prompt, where nothing is found. The 10KB benchmarks next to them measure
// the same entry points on large texts.

// smallBenchSize is the size of each small input.
const smallBenchSize = 256

// smallBenchResult is the text of a clean tool result, cut to smallBenchSize bytes. The
// pipeline hands a result's text to the sensors, not its JSON envelope.
var smallBenchResult = (`Ticket OPS-4821 (status: open, priority: P2, updated 2024-06-02T10:14:22Z)
Title: Nightly export job exceeds its window
The export of the billing tables started at 01:00 and finished at 03:42, forty minutes past the window. Disk I/O on the replica peaked during the index rebuild. Next step: move the rebuild to Sunday.
`)[:smallBenchSize]

// smallBenchPrompt is a benign user prompt, cut to smallBenchSize bytes: the text the
// injection detector reads on a call.
var smallBenchPrompt = (`Please find the ticket about the nightly export job that overran its window, summarise what happened in three sentences, and add a note that the index rebuild moves to Sunday. Keep the summary factual and mention the replica disk I/O; do not change the ticket's status or its priority.`)[:smallBenchSize]

// smallBenchArgs returns an argument set whose JSON encoding is smallBenchSize bytes: a
// search tool's arguments with a path, a URL, a query, a list and a free-text note.
func smallBenchArgs(tb testing.TB) map[string]any {
	tb.Helper()
	args := map[string]any{
		"path":             "/srv/reports/2024/q2/export-summary.md",
		"source":           "https://docs.example.com/runbooks/billing-export",
		"query":            "export job window overrun",
		"limit":            20,
		"include_archived": false,
		"fields":           []any{"title", "status", "owner"},
		"note":             "",
	}
	raw, err := json.Marshal(args)
	if err != nil {
		tb.Fatalf("json.Marshal(args): %v", err)
	}
	pad := smallBenchSize - len(raw)
	if pad < 0 {
		tb.Fatalf("argument set is %d bytes without its note, want at most %d", len(raw), smallBenchSize)
	}
	const filler = "Compare with last quarter's runs and list the slowest steps first. "
	args["note"] = strings.Repeat(filler, pad/len(filler)+1)[:pad]
	if raw, err = json.Marshal(args); err != nil || len(raw) != smallBenchSize {
		tb.Fatalf("argument set is %d bytes (err %v), want %d", len(raw), err, smallBenchSize)
	}
	return args
}

// smallArgTexts returns the strings of an argument set, as the pipeline gathers them for
// the secret and personal-data sensors: every string value, at any depth.
func smallArgTexts(v any, out []string) []string {
	switch x := v.(type) {
	case string:
		out = append(out, x)
	case map[string]any:
		for _, e := range x {
			out = smallArgTexts(e, out)
		}
	case []any:
		for _, e := range x {
			out = smallArgTexts(e, out)
		}
	}
	return out
}

// smallBenchInputs are the texts a sensor reads for a result and for an argument set.
func smallBenchInputs(tb testing.TB) []struct {
	name  string
	texts []string
} {
	tb.Helper()
	if len(smallBenchResult) != smallBenchSize || len(smallBenchPrompt) != smallBenchSize {
		tb.Fatalf("result is %d bytes and prompt %d, want %d each", len(smallBenchResult), len(smallBenchPrompt), smallBenchSize)
	}
	return []struct {
		name  string
		texts []string
	}{
		{"result", []string{smallBenchResult}},
		{"args", smallArgTexts(smallBenchArgs(tb), nil)},
	}
}

// BenchmarkInjectionDetect256B measures the injection detector (rules and the default
// model) on a clean result and on a user prompt; the pipeline runs it on those two, not on
// arguments.
func BenchmarkInjectionDetect256B(b *testing.B) {
	d := injBenchDetector(b)
	for _, c := range []struct{ name, text string }{
		{"result", smallBenchResult},
		{"prompt", smallBenchPrompt},
	} {
		b.Run(c.name, func(b *testing.B) {
			if r := d.Detect(c.text); r.Detected {
				b.Fatalf("Detect(clean %s) = %+v, want no detection", c.name, r)
			}
			b.SetBytes(int64(len(c.text)))
			b.ReportAllocs()
			for b.Loop() {
				d.Detect(c.text)
			}
		})
	}
}

// BenchmarkSecretScan256B measures the secret scanner on a clean result and on each
// string of an argument set, as the pipeline calls it.
func BenchmarkSecretScan256B(b *testing.B) {
	benchmarkScan256B(b, NewSecretScanner().Scan)
}

// BenchmarkPIIScan256B measures the personal-data scanner (every type) on a clean result
// and on each string of an argument set, as the pipeline calls it.
func BenchmarkPIIScan256B(b *testing.B) {
	s, err := NewPIIScanner(nil)
	if err != nil {
		b.Fatalf("NewPIIScanner(nil): %v", err)
	}
	benchmarkScan256B(b, s.Scan)
}

// benchmarkScan256B runs scan over each small input, after checking that it finds
// nothing in them (a change that starts finding things fails the benchmark).
func benchmarkScan256B[F any](b *testing.B, scan func(string) []F) {
	for _, c := range smallBenchInputs(b) {
		b.Run(c.name, func(b *testing.B) {
			for _, x := range c.texts {
				if fs := scan(x); len(fs) != 0 {
					b.Fatalf("Scan(%q) = %v, want nothing", x, fs)
				}
			}
			b.SetBytes(smallBenchSize)
			b.ReportAllocs()
			for b.Loop() {
				for _, x := range c.texts {
					scan(x)
				}
			}
		})
	}
}

// BenchmarkEgressCheck256B measures the egress sensor on a small argument set: finding
// its destinations and checking them against the default policy, which the pipeline uses
// for a tool without egress settings.
func BenchmarkEgressCheck256B(b *testing.B) {
	e, err := CompileEgress(EgressPolicy{})
	if err != nil {
		b.Fatalf("CompileEgress(default): %v", err)
	}
	args := smallBenchArgs(b)
	vs := e.Check(Destinations(args))
	if len(vs) == 0 {
		b.Fatal("Check(Destinations(args)) found no destination, want the source URL")
	}
	for _, v := range vs {
		if !v.Allowed {
			b.Fatalf("Check(%q) = denied (%s), want allowed", v.Destination.Value, v.Reason)
		}
	}
	b.SetBytes(smallBenchSize)
	b.ReportAllocs()
	for b.Loop() {
		e.Check(Destinations(args))
	}
}

// BenchmarkSanitize256B measures sanitising a clean result in both modes, which the
// pipeline runs on a result's content when the tool's settings ask for it.
func BenchmarkSanitize256B(b *testing.B) {
	for _, mode := range []string{SanitizeText, SanitizeMarkup} {
		b.Run(mode, func(b *testing.B) {
			out, removed, err := Sanitize(smallBenchResult, mode)
			if err != nil || len(removed) != 0 || out != smallBenchResult {
				b.Fatalf("Sanitize(clean, %q) = changed %v, removed %v, err %v; want it unchanged", mode, out != smallBenchResult, removed, err)
			}
			b.SetBytes(smallBenchSize)
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := Sanitize(smallBenchResult, mode); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkSpotlight256B measures wrapping a clean result in a data block, with and
// without datamarking, which the pipeline does when the tool's settings ask for it.
func BenchmarkSpotlight256B(b *testing.B) {
	for _, datamark := range []bool{false, true} {
		name := "plain"
		if datamark {
			name = "datamark"
		}
		b.Run(name, func(b *testing.B) {
			o := SpotlightOptions{Label: "tickets.search", Datamark: datamark, Nonce: "9f86d081884c7d65"}
			out, err := Spotlight(smallBenchResult, o)
			if err != nil {
				b.Fatalf("Spotlight(clean, %+v): %v", o, err)
			}
			if !strings.Contains(out, o.Nonce) {
				b.Fatalf("Spotlight(clean, %+v) = %q, want a block carrying the nonce", o, out)
			}
			b.SetBytes(smallBenchSize)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Spotlight(smallBenchResult, o); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
