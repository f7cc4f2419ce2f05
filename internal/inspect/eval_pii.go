package inspect

import (
	"slices"
	"time"
	"unicode/utf8"
)

// EvalPII scans every row and counts per annotated type: Positives = labelled spans of
// the type, TruePositives = those found exactly (type and offsets), Predicted = spans
// found of an annotated type, CorrectPredicted = those that match a label. Rows whose
// annotated types include none of the scanner's types are skipped, and only the
// annotated types the scanner looks for are counted. Negatives/FalsePositives count
// rows with no label of the type and, among them, rows where something of that type
// was reported. Groups "type=<TYPE>" and "source=<source>".
func EvalPII(s *PIIScanner, rows []Row) *Report {
	r := NewReport(CorpusPII, "rules: structure, checksums (Luhn, mod 97, mod 11, Verhoeff, ...), encoded dates, context words for weak checksums; a span counts when type and character offsets match exactly; false positives only against a row's annotated types")
	for _, row := range rows {
		var types []string
		for _, t := range row.AnnotatedTypes {
			if id, ok := piiTypeByName(t); ok && s.on[id] && !slices.Contains(types, t) {
				types = append(types, t)
			}
		}
		if len(types) == 0 {
			continue
		}
		start := time.Now()
		found := s.Scan(row.Text)
		r.Elapsed += time.Since(start)
		r.Rows++
		r.Bytes += int64(len(row.Text))
		spans := evalPIIRuneSpans(row.Text, found)
		for _, t := range types {
			var c Counts
			var labels []Entity
			for _, e := range row.Entities {
				if e.Type == t {
					labels = append(labels, e)
				}
			}
			c.Positives = len(labels)
			for _, e := range labels {
				if slices.Contains(spans, Entity{Type: t, Start: e.Start, End: e.End}) {
					c.TruePositives++
				}
			}
			for _, f := range spans {
				if f.Type != t {
					continue
				}
				c.Predicted++
				if slices.Contains(labels, f) {
					c.CorrectPredicted++
				}
			}
			if len(labels) == 0 {
				c.Negatives = 1
				if c.Predicted > 0 {
					c.FalsePositives = 1
				}
			}
			r.Add(c, "type="+t, "source="+row.Source)
			if c.TruePositives < c.Positives {
				r.Miss(row.ID+":"+t, false)
			}
			if c.CorrectPredicted < c.Predicted {
				r.Miss(row.ID+":"+t, true)
			}
		}
	}
	return r
}

// evalPIIRuneSpans turns findings with byte spans into entities with rune offsets.
func evalPIIRuneSpans(text string, found []Finding) []Entity {
	out := make([]Entity, 0, len(found))
	for _, f := range found {
		if f.Span.Start < 0 || f.Span.End > len(text) || f.Span.Start > f.Span.End {
			continue
		}
		start := utf8.RuneCountInString(text[:f.Span.Start])
		out = append(out, Entity{Type: f.Kind, Start: start, End: start + utf8.RuneCountInString(text[f.Span.Start:f.Span.End])})
	}
	return out
}
