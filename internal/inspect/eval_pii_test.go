package inspect

import (
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestPIICorpus(t *testing.T) {
	f, err := os.Open("testdata/corpora/pii.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows, err := ReadRows(f)
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewPIIScanner(nil)
	if err != nil {
		t.Fatal(err)
	}
	r := EvalPII(s, rows)
	var b strings.Builder
	r.Format(&b)
	t.Log("\n" + b.String())
	for _, typ := range []string{"EMAIL", "PHONE", "CREDIT_CARD", "IBAN", "IP_ADDRESS"} {
		c := r.Groups["type="+typ]
		if c == nil {
			t.Errorf("no rows of type %s", typ)
			continue
		}
		if p, rc := c.Precision(), c.Recall(); p < 0.9 || rc < 0.9 {
			t.Errorf("type %s: precision %.3f, recall %.3f, want both >= 0.90", typ, p, rc)
		}
	}
}

func TestEvalPII(t *testing.T) {
	t.Parallel()
	s, err := NewPIIScanner([]string{"EMAIL", "PHONE"})
	if err != nil {
		t.Fatal(err)
	}
	rows := []Row{
		// Found exactly.
		{ID: "r1", Text: "mail a@example.com", Source: "s1", AnnotatedTypes: []string{"EMAIL"},
			Entities: []Entity{{Type: "EMAIL", Start: 5, End: 18}}},
		// Offsets in characters: "é" is one character, two bytes.
		{ID: "r2", Text: "é b@example.com", Source: "s1", AnnotatedTypes: []string{"EMAIL"},
			Entities: []Entity{{Type: "EMAIL", Start: 2, End: 15}}},
		// A phone where none is labelled: a false positive.
		{ID: "r3", Text: "call 212-555-0187", Source: "s2", AnnotatedTypes: []string{"PHONE"}, Entities: []Entity{}},
		// Only a type the scanner does not look for: skipped.
		{ID: "r4", Text: "a@example.com", Source: "s2", AnnotatedTypes: []string{"US_PASSPORT"}, Entities: []Entity{}},
		// A labelled phone not found, and an e-mail found with other offsets.
		{ID: "r5", Text: "no phone, c@example.org", Source: "s2", AnnotatedTypes: []string{"EMAIL", "PHONE"},
			Entities: []Entity{{Type: "PHONE", Start: 0, End: 8}, {Type: "EMAIL", Start: 10, End: 22}}},
		// An unannotated type found is neither right nor wrong.
		{ID: "r6", Text: "d@example.com 212-555-0187", Source: "s2", AnnotatedTypes: []string{"EMAIL"},
			Entities: []Entity{{Type: "EMAIL", Start: 0, End: 13}}},
	}
	r := EvalPII(s, rows)
	if r.Rows != 5 || r.Corpus != CorpusPII {
		t.Errorf("EvalPII: Rows = %d, Corpus = %q, want 5, %q", r.Rows, r.Corpus, CorpusPII)
	}
	want := map[string]Counts{
		"all":        {Positives: 5, TruePositives: 3, Negatives: 1, FalsePositives: 1, Predicted: 5, CorrectPredicted: 3},
		"type=EMAIL": {Positives: 4, TruePositives: 3, Predicted: 4, CorrectPredicted: 3},
		"type=PHONE": {Positives: 1, TruePositives: 0, Negatives: 1, FalsePositives: 1, Predicted: 1, CorrectPredicted: 0},
		"source=s1":  {Positives: 2, TruePositives: 2, Predicted: 2, CorrectPredicted: 2},
		"source=s2":  {Positives: 3, TruePositives: 1, Negatives: 1, FalsePositives: 1, Predicted: 3, CorrectPredicted: 1},
	}
	for g, w := range want {
		if got := r.Groups[g]; got == nil || *got != w {
			t.Errorf("EvalPII group %s = %+v, want %+v", g, got, w)
		}
	}
	if len(r.Groups) != len(want) {
		t.Errorf("EvalPII groups = %v, want %d", r.Groups, len(want))
	}
	if diff := cmp.Diff([]string{"r5:EMAIL", "r5:PHONE"}, r.Misses); diff != "" {
		t.Errorf("EvalPII misses (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"r3:PHONE", "r5:EMAIL"}, r.FalsePositives); diff != "" {
		t.Errorf("EvalPII false positives (-want +got):\n%s", diff)
	}
}
