package inspect

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	_ "embed"
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
	"time"
)

//go:embed model/extra.jsonl
var injExtraJSONL []byte

// InjectionTrainingRows returns the extra training rows embedded with the package
// (model/extra.jsonl): texts written for this detector to cover kinds of text the public
// corpus lacks. Benign: e-mails, tickets, chat messages, documentation (including
// security documentation that quotes attacks), code, JSON, logs, tables and tool
// descriptions, many of them full of trigger words. Injections: instructions hidden in
// e-mails, web pages, issues, reviews, file contents and tool descriptions; overrides,
// exfiltration, tool hijacking, persona and developer-mode jailbreaks. They live next to
// the model rather than in testdata because `chaperone sensors train` needs them at run
// time. The rows are decoded on every call (a fresh slice the caller may keep); a
// malformed file is a build defect that TestInjectionTrainingRows catches.
func InjectionTrainingRows() ([]Row, error) {
	rows, err := ReadRows(bytes.NewReader(injExtraJSONL))
	if err != nil {
		return nil, fmt.Errorf("read embedded injection training rows: %v", err)
	}
	return rows, nil
}

// EvalInjection measures the detector on labelled rows ("injection" or "benign"; rows
// with other labels are skipped and counted in Method).
//
// With folds >= 2 it cross-validates: the rows are split into folds deterministically,
// grouped and stratified. Grouped: near-duplicate rows (an e-mail and the same e-mail
// with an attack inserted, see injClusters) are one group and go to one fold, so no row
// is tested against a model that trained on its twin. Stratified: the groups, taken in
// the order of the SHA-256 of their first row's id, each go to the fold that keeps the
// folds' shares of injection and benign rows most even. For each fold a model is trained
// with opts on the other folds plus extra (rows that are never tested on), and each row
// is scored only by a model that did not see it. The threshold is d's if d was built with an explicit one,
// otherwise each fold model's recommended threshold. With folds < 2 it uses d as is.
//
// Groups: "all", "source=<source>", "kind=<kind>", "subset=<subset>". Elapsed counts
// the Detect calls only, not training.
func EvalInjection(d *InjectionDetector, rows []Row, extra []Row, folds int, opts TrainOptions) *Report {
	return EvalInjectionProgress(d, rows, extra, folds, opts, nil)
}

// EvalInjectionProgress is [EvalInjection] that calls progress, if not nil, after each
// row is scored, with the rows scored so far and the rows to score (those labelled
// injection or benign). With cross-validation the count moves a fold at a time, after
// that fold's model is trained.
func EvalInjectionProgress(d *InjectionDetector, rows []Row, extra []Row, folds int, opts TrainOptions, progress func(done, total int)) *Report {
	if d == nil {
		d = NewInjectionDetector(nil, 0)
	}
	var use []Row
	skipped := 0
	for _, r := range rows {
		if r.Label == "injection" || r.Label == "benign" {
			use = append(use, r)
		} else {
			skipped++
		}
	}
	rep := NewReport(CorpusInjection, "")
	var method strings.Builder
	score := func(d *InjectionDetector, r Row) {
		injEvalRow(rep, d, r)
		if progress != nil {
			progress(rep.Rows, len(use))
		}
	}
	if folds >= 2 {
		injCrossValidate(rep, &method, d, use, extra, folds, opts, score)
	} else {
		mode := "rules only"
		if d.model != nil {
			mode = "rules and model"
		}
		fmt.Fprintf(&method, "%s, threshold %.2f; every row scored by the given detector", mode, d.threshold)
		for _, r := range use {
			score(d, r)
		}
	}
	if skipped > 0 {
		fmt.Fprintf(&method, "; %d rows with other labels skipped", skipped)
	}
	rep.Method = method.String()
	return rep
}

// injCrossValidate fills rep with a folds-fold cross-validation; score scores a row and
// counts it in rep.
func injCrossValidate(rep *Report, method *strings.Builder, d *InjectionDetector, rows, extra []Row, folds int, opts TrainOptions, score func(*InjectionDetector, Row)) {
	// Order by id hash, then deal each label round-robin.
	order := make([]int, len(rows))
	keys := make([]uint64, len(rows))
	for i, r := range rows {
		order[i] = i
		sum := sha256.Sum256([]byte(r.ID))
		keys[i] = binary.BigEndian.Uint64(sum[:8])
	}
	injSortBy(order, keys)
	texts := make([]string, len(rows))
	pos := make([]bool, len(rows))
	for i, r := range rows {
		texts[i], pos[i] = r.Text, r.Label == "injection"
	}
	fold := injGroupFolds(order, injTextClusters(texts), pos, folds)
	var thresholds []string
	failed := 0
	for f := 0; f < folds; f++ {
		train := make([]Row, 0, len(rows)+len(extra))
		var test []Row
		for i, r := range rows {
			if fold[i] == f {
				test = append(test, r)
			} else {
				train = append(train, r)
			}
		}
		// A held-out text that also occurs in extra would be seen in training: drop it
		// from the training rows of this fold.
		held := map[uint64]bool{}
		for _, r := range test {
			held[injDigest(r.Text)] = true
		}
		for _, r := range extra {
			if !held[injDigest(r.Text)] {
				train = append(train, r)
			}
		}
		fd := d
		if m, err := Train(train, opts); err == nil {
			th := 0.0
			if d.explicit {
				th = d.threshold
			}
			fd = NewInjectionDetector(m, th)
		} else {
			failed++
		}
		thresholds = append(thresholds, fmt.Sprintf("%.2f", fd.threshold))
		for _, r := range test {
			score(fd, r)
		}
	}
	th := "per-fold recommended thresholds " + strings.Join(thresholds, ", ")
	if d.explicit {
		th = fmt.Sprintf("threshold %.2f", d.threshold)
	}
	fmt.Fprintf(method, "rules and model, %s; %d-fold cross-validation (near-duplicate rows grouped in one fold, groups dealt in SHA-256 order of their first id, balancing labels), each fold's model trained on the other folds plus %d extra rows", th, folds, len(extra))
	if failed > 0 {
		fmt.Fprintf(method, "; training failed for %d folds, which used the given detector", failed)
	}
}

// injSortBy sorts idx by keys[idx[i]], ties by index.
func injSortBy(idx []int, keys []uint64) {
	slices.SortFunc(idx, func(a, b int) int {
		if c := cmp.Compare(keys[a], keys[b]); c != 0 {
			return c
		}
		return cmp.Compare(a, b)
	})
}

// injEvalRow scores one row and counts it.
func injEvalRow(rep *Report, d *InjectionDetector, r Row) {
	start := time.Now()
	res := d.Detect(r.Text)
	rep.Elapsed += time.Since(start)
	rep.Rows++
	rep.Bytes += int64(len(r.Text))
	var c Counts
	pos := r.Label == "injection"
	if pos {
		c.Positives = 1
		if res.Detected {
			c.TruePositives = 1
		} else {
			rep.Miss(r.ID, false)
		}
	} else {
		c.Negatives = 1
		if res.Detected {
			c.FalsePositives = 1
			rep.Miss(r.ID, true)
		}
	}
	groups := []string{"source=" + r.Source}
	if r.Kind != "" {
		groups = append(groups, "kind="+r.Kind)
	}
	if r.Subset != "" {
		groups = append(groups, "subset="+r.Subset)
	}
	rep.Add(c, groups...)
}
