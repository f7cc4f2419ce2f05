package inspect

import (
	"os"
	"strings"
	"testing"
)

func secretLoadCorpus(tb testing.TB) []Row {
	tb.Helper()
	f, err := os.Open("testdata/corpora/secrets.jsonl")
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	rows, err := ReadRows(f)
	if err != nil {
		tb.Fatalf("ReadRows(secrets.jsonl): %v", err)
	}
	return rows
}

func TestSecretsCorpus(t *testing.T) {
	rows := secretLoadCorpus(t)
	rep := EvalSecrets(NewSecretScanner(), rows)
	var b strings.Builder
	rep.Format(&b)
	t.Log("\n" + b.String())
	all := rep.Groups["all"]
	if all == nil {
		t.Fatal(`EvalSecrets: no "all" group`)
	}
	if r := all.Recall(); r < 0.95 {
		t.Errorf("recall on secret rows = %.3f, want >= 0.95", r)
	}
	if fp := all.FalsePositiveRate(); fp > 0.02 {
		t.Errorf("false-positive rate on benign rows = %.3f, want <= 0.02", fp)
	}
	if rep.Rows != len(rows) {
		t.Errorf("Report.Rows = %d, want %d", rep.Rows, len(rows))
	}
}

func TestEvalSecretsCounts(t *testing.T) {
	t.Parallel()
	rows := []Row{
		{ID: "p1", Text: "GH_TOKEN=ghp_VhexlhHNPZDj004bFx0pOGHg9TBsg3uhZQzs", Label: "secret", Type: "github_token", Source: "a", Subset: "tps"},
		{ID: "p2", Text: "nothing here", Label: "secret", Type: "github_token", Source: "a", Subset: "tps"},
		{ID: "n1", Text: "commit 86f7e437faa5a7fce15d1ddcb9eaeaea377667b8", Label: "benign", Type: "git_commit_sha", Source: "b", Subset: "fps"},
		{ID: "n2", Text: "DB_PASSWORD=VBTdkpHSy21mrr", Label: "benign", Type: "lookalike", Source: "b", Subset: "fps"},
	}
	rep := EvalSecrets(NewSecretScanner(), rows)
	if rep.Corpus != CorpusSecrets || rep.Rows != 4 || rep.Method == "" {
		t.Errorf("EvalSecrets: corpus %q, rows %d, method %q", rep.Corpus, rep.Rows, rep.Method)
	}
	var bytes int64
	for _, r := range rows {
		bytes += int64(len(r.Text))
	}
	if rep.Bytes != bytes {
		t.Errorf("EvalSecrets: bytes %d, want %d", rep.Bytes, bytes)
	}
	want := map[string]Counts{
		"all":               {Positives: 2, TruePositives: 1, Negatives: 2, FalsePositives: 1},
		"source=a":          {Positives: 2, TruePositives: 1},
		"source=b":          {Negatives: 2, FalsePositives: 1},
		"type=github_token": {Positives: 2, TruePositives: 1},
		"subset=tps":        {Positives: 2, TruePositives: 1},
		"subset=fps":        {Negatives: 2, FalsePositives: 1},
	}
	for g, w := range want {
		if got := rep.Groups[g]; got == nil || *got != w {
			t.Errorf("EvalSecrets group %q = %+v, want %+v", g, got, w)
		}
	}
	if _, ok := rep.Groups["type=git_commit_sha"]; ok {
		t.Error(`EvalSecrets grouped a benign row by type; types are of positives only`)
	}
	if strings.Join(rep.Misses, " ") != "p2" || strings.Join(rep.FalsePositives, " ") != "n2" {
		t.Errorf("EvalSecrets misses %v, false positives %v, want [p2], [n2]", rep.Misses, rep.FalsePositives)
	}
}
