package inspect

import (
	"fmt"
	"time"
)

// EvalSecrets scans every row and counts: a row labelled "secret" is a positive (true
// positive if Scan finds anything), a "benign" row a negative (false positive if Scan
// finds anything). Groups: "source=<source>", "type=<type>" of positives and "subset=<subset>".
// Sets Rows, Bytes, Elapsed (scan time only), Method describing the ruleset.
func EvalSecrets(s *SecretScanner, rows []Row) *Report {
	rep := NewReport(CorpusSecrets, fmt.Sprintf(
		"embedded ruleset: %d kinds (%d token formats, structural detectors, generic key/value judged by entropy, character classes and length); keyword prefilter; a row counts as flagged when Scan finds anything",
		len(SecretKinds()), len(secretPrefixRules)))
	for _, r := range rows {
		start := time.Now()
		found := len(s.Scan(r.Text)) > 0
		rep.Elapsed += time.Since(start)
		rep.Rows++
		rep.Bytes += int64(len(r.Text))
		groups := []string{"source=" + r.Source}
		if r.Subset != "" {
			groups = append(groups, "subset="+r.Subset)
		}
		var c Counts
		switch r.Label {
		case "secret":
			c.Positives = 1
			if found {
				c.TruePositives = 1
			} else {
				rep.Miss(r.ID, false)
			}
			if r.Type != "" {
				groups = append(groups, "type="+r.Type)
			}
		case "benign":
			c.Negatives = 1
			if found {
				c.FalsePositives = 1
				rep.Miss(r.ID, true)
			}
		default:
			continue
		}
		rep.Add(c, groups...)
	}
	return rep
}
