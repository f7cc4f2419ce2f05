package inspect

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"
	"unicode/utf8"
)

// Bounds of a labelled corpus.
const (
	// MaxCorpusLine is the longest line ReadRows accepts.
	MaxCorpusLine = 1 << 20
	// MaxCorpusRows is the most rows ReadRows accepts.
	MaxCorpusRows = 1_000_000
)

// Row is one labelled example of a corpus (JSONL, one object per line). An injection or
// secrets corpus labels each row as a whole ("injection" or "secret" against "benign");
// a personal-data corpus lists the entities of each row with character offsets and the
// types that were annotated.
type Row struct {
	ID     string `json:"id"`
	Text   string `json:"text"`
	Label  string `json:"label"`
	Kind   string `json:"kind"`
	Type   string `json:"type"`
	Source string `json:"source"`
	Subset string `json:"subset"`
	// Entities are the personal data in Text, with offsets in characters (runes).
	Entities []Entity `json:"entities"`
	// AnnotatedTypes are the entity types annotated for this row: a type not listed
	// was not looked for, so a finding of it is neither right nor wrong.
	AnnotatedTypes []string `json:"annotated_types"`
}

// Entity is one labelled span of personal data, with offsets in characters.
type Entity struct {
	Type  string `json:"type"`
	Start int    `json:"start"`
	End   int    `json:"end"`
}

// Corpus kinds, as DetectCorpus tells them apart.
const (
	CorpusInjection = "injection"
	CorpusSecrets   = "secrets"
	CorpusPII       = "pii"
)

// ReadRows decodes a JSONL corpus. Blank lines are skipped; every other line must be a
// JSON object with an id and a text, and a label or an entity list. It reports the line
// of the first bad row.
func ReadRows(r io.Reader) ([]Row, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), MaxCorpusLine)
	var rows []Row
	line := 0
	for sc.Scan() {
		line++
		b := bytes.TrimSpace(sc.Bytes())
		if len(b) == 0 {
			continue
		}
		if len(rows) == MaxCorpusRows {
			return nil, fmt.Errorf("line %d: more than %d rows", line, MaxCorpusRows)
		}
		var row Row
		dec := json.NewDecoder(bytes.NewReader(b))
		if err := dec.Decode(&row); err != nil {
			return nil, fmt.Errorf("line %d: %v", line, err)
		}
		if dec.More() {
			return nil, fmt.Errorf("line %d: more than one JSON value", line)
		}
		if err := row.check(); err != nil {
			return nil, fmt.Errorf("line %d: %v", line, err)
		}
		rows = append(rows, row)
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, fmt.Errorf("line %d: longer than %d bytes", line+1, MaxCorpusLine)
		}
		return nil, err
	}
	if len(rows) == 0 {
		return nil, errors.New("no rows")
	}
	return rows, nil
}

func (r *Row) check() error {
	switch {
	case r.ID == "":
		return errors.New("row without an id")
	case !utf8.ValidString(r.Text):
		return fmt.Errorf("row %q: text is not valid UTF-8", r.ID)
	case r.Label == "" && r.Entities == nil:
		return fmt.Errorf("row %q: neither a label nor an entity list", r.ID)
	}
	n := utf8.RuneCountInString(r.Text)
	for i, e := range r.Entities {
		if e.Type == "" || e.Start < 0 || e.End <= e.Start || e.End > n {
			return fmt.Errorf("row %q: entities[%d]: type %q at [%d, %d) is not a span of the %d characters of the text", r.ID, i, e.Type, e.Start, e.End, n)
		}
	}
	return nil
}

// DetectCorpus tells which sensor a corpus measures from its labels: "injection" or
// "secret" labels, or entity lists. It is an error if the rows mix them.
func DetectCorpus(rows []Row) (string, error) {
	kind := ""
	for _, r := range rows {
		var k string
		switch {
		case r.Label == "injection":
			k = CorpusInjection
		case r.Label == "secret":
			k = CorpusSecrets
		case r.Entities != nil || r.AnnotatedTypes != nil:
			k = CorpusPII
		case r.Label == "benign":
			continue
		default:
			return "", fmt.Errorf("row %q: unknown label %q: want injection, secret or benign", r.ID, r.Label)
		}
		if kind != "" && k != kind {
			return "", fmt.Errorf("row %q: a %s row in a %s corpus", r.ID, k, kind)
		}
		kind = k
	}
	if kind == "" {
		return "", errors.New("every row is benign: nothing tells which sensor the corpus is for")
	}
	return kind, nil
}

// Counts are one group's outcomes. For whole-row sensors a positive is a row labelled
// positive and a negative a benign row; for personal data a positive is a labelled span
// and Predicted counts the spans the sensor reported of the annotated types.
type Counts struct {
	Positives      int
	TruePositives  int
	Negatives      int
	FalsePositives int
	// Predicted and CorrectPredicted count reported spans (personal data only).
	Predicted        int
	CorrectPredicted int
}

// Recall is TruePositives/Positives, or -1 when there are no positives.
func (c Counts) Recall() float64 { return ratio(c.TruePositives, c.Positives) }

// FalsePositiveRate is FalsePositives/Negatives, or -1 when there are no negatives.
func (c Counts) FalsePositiveRate() float64 { return ratio(c.FalsePositives, c.Negatives) }

// Precision is the share of positive verdicts that were right: for whole-row sensors
// TruePositives/(TruePositives+FalsePositives), for spans CorrectPredicted/Predicted;
// -1 when there were none.
func (c Counts) Precision() float64 {
	if c.Predicted > 0 || c.CorrectPredicted > 0 {
		return ratio(c.CorrectPredicted, c.Predicted)
	}
	return ratio(c.TruePositives, c.TruePositives+c.FalsePositives)
}

func ratio(a, b int) float64 {
	if b == 0 {
		return -1
	}
	return float64(a) / float64(b)
}

func (c *Counts) add(o Counts) {
	c.Positives += o.Positives
	c.TruePositives += o.TruePositives
	c.Negatives += o.Negatives
	c.FalsePositives += o.FalsePositives
	c.Predicted += o.Predicted
	c.CorrectPredicted += o.CorrectPredicted
}

// Report is what one evaluation of a sensor on a corpus measured.
type Report struct {
	// Corpus is CorpusInjection, CorpusSecrets or CorpusPII.
	Corpus string
	// Method says how the sensor was run and on which rows it was measured, for example
	// "rules and model, threshold 0.5; 5-fold cross-validation".
	Method string
	Rows   int
	Bytes  int64
	// Elapsed is the time the scans took, excluding decoding and any training.
	Elapsed time.Duration
	// Groups are keyed "all", "source=S", "kind=K" or "type=T".
	Groups map[string]*Counts
	// Misses lists the ids of rows (or row:type for spans) the sensor got wrong, at
	// most 50 of each: false negatives first, then false positives.
	Misses, FalsePositives []string
}

// NewReport starts a report.
func NewReport(corpus, method string) *Report {
	return &Report{Corpus: corpus, Method: method, Groups: map[string]*Counts{}}
}

// Add counts one row's outcome in the "all" group and in each of the named groups.
func (r *Report) Add(c Counts, groups ...string) {
	for _, g := range append([]string{"all"}, groups...) {
		if r.Groups[g] == nil {
			r.Groups[g] = &Counts{}
		}
		r.Groups[g].add(c)
	}
}

// Miss notes a row the sensor got wrong.
func (r *Report) Miss(id string, falsePositive bool) {
	if falsePositive {
		if len(r.FalsePositives) < 50 {
			r.FalsePositives = append(r.FalsePositives, id)
		}
	} else if len(r.Misses) < 50 {
		r.Misses = append(r.Misses, id)
	}
}

// Format writes the report as a table.
func (r *Report) Format(w io.Writer) {
	fmt.Fprintf(w, "corpus: %s (%d rows, %d bytes)\nmethod: %s\n", r.Corpus, r.Rows, r.Bytes, r.Method)
	secs := r.Elapsed.Seconds()
	if secs > 0 {
		fmt.Fprintf(w, "scan time: %s (%.0f rows/s, %.1f MB/s)\n", r.Elapsed.Round(time.Microsecond), float64(r.Rows)/secs, float64(r.Bytes)/secs/1e6)
	}
	keys := make([]string, 0, len(r.Groups))
	for k := range r.Groups {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if (keys[i] == "all") != (keys[j] == "all") {
			return keys[i] == "all"
		}
		return keys[i] < keys[j]
	})
	width := 5
	for _, k := range keys {
		width = max(width, len(k))
	}
	fmt.Fprintf(w, "%-*s  %9s %9s %8s %8s %9s\n", width, "group", "positives", "negatives", "recall", "fp-rate", "precision")
	for _, k := range keys {
		c := r.Groups[k]
		fmt.Fprintf(w, "%-*s  %9d %9d %8s %8s %9s\n", width, k, c.Positives, c.Negatives, pct(c.Recall()), pct(c.FalsePositiveRate()), pct(c.Precision()))
	}
	if len(r.Misses) > 0 {
		fmt.Fprintf(w, "missed: %s\n", strings.Join(r.Misses, " "))
	}
	if len(r.FalsePositives) > 0 {
		fmt.Fprintf(w, "false positives: %s\n", strings.Join(r.FalsePositives, " "))
	}
}

func pct(v float64) string {
	if v < 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f%%", 100*v)
}
