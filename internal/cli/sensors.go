package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/chaperone-dev/chaperone/internal/inspect"
	"github.com/chaperone-dev/chaperone/internal/progress"
)

// readCorpus reads and decodes a labelled JSONL corpus.
func readCorpus(path string) ([]inspect.Row, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	rows, err := inspect.ReadRows(f)
	if err != nil {
		return nil, fmt.Errorf("corpus %s: %w", path, err)
	}
	return rows, nil
}

// loadModel reads the injection model a flag names: "embedded", "rules" (none) or a file.
func loadModel(name string) (*inspect.Model, error) {
	switch name {
	case "rules":
		return nil, nil
	case "embedded", "":
		return inspect.DefaultModel()
	}
	b, err := os.ReadFile(name)
	if err != nil {
		return nil, err
	}
	return inspect.LoadModel(b)
}

// sensorsEval measures a sensor on a labelled corpus.
func sensorsEval(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("sensors eval", stderr)
	corpus := fs.String("corpus", "", "labelled JSONL corpus (injection, secrets or pii; see docs/sensors.md)")
	model := fs.String("model", "embedded", "injection model: embedded, rules or a model file")
	threshold := fs.Float64("threshold", 0, "injection threshold (0: the model's)")
	folds := fs.Int("folds", -1, "injection: cross-validate with N folds (default: 5 when the model was trained on rows of the corpus, else none)")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	if *corpus == "" {
		return usageError{"--corpus is required"}
	}
	rows, err := readCorpus(*corpus)
	if err != nil {
		return err
	}
	kind, err := inspect.DetectCorpus(rows)
	if err != nil {
		return fmt.Errorf("corpus %s: %w", *corpus, err)
	}
	// The rows evaluated, on a terminal. The secret and personal-data evaluations report
	// no progress of their own: their line moves once, when they are done.
	bar := progress.New(stderr, progress.Options{Label: "evaluating rows", Total: int64(len(rows)), Getenv: os.Getenv})
	defer bar.Stop()
	var rep *inspect.Report
	switch kind {
	case inspect.CorpusSecrets:
		rep = inspect.EvalSecrets(inspect.NewSecretScanner(), rows)
		bar.Set(int64(len(rows)))
	case inspect.CorpusPII:
		s, err := inspect.NewPIIScanner(nil)
		if err != nil {
			return err
		}
		rep = inspect.EvalPII(s, rows)
		bar.Set(int64(len(rows)))
	case inspect.CorpusInjection:
		m, err := loadModel(*model)
		if err != nil {
			return fmt.Errorf("model: %w", err)
		}
		n := *folds
		if n < 0 {
			n = 0
			// Rows the model learned from say nothing about it: measure a model that did
			// not see them instead.
			for _, r := range rows {
				if m != nil && m.TrainedOn(r.Text) {
					n = 5
					break
				}
			}
		}
		var extra []inspect.Row
		if n >= 2 {
			if extra, err = inspect.InjectionTrainingRows(); err != nil {
				return err
			}
		}
		var onRow func(done, total int)
		if bar.Enabled() {
			onRow = func(done, total int) {
				bar.SetTotal(int64(total))
				bar.Set(int64(done))
			}
		}
		rep = inspect.EvalInjectionProgress(inspect.NewInjectionDetector(m, *threshold), rows, extra, n, inspect.TrainOptions{}, onRow)
	}
	bar.Done()
	rep.Format(stdout)
	return nil
}

// sensorsTrain trains the injection model.
func sensorsTrain(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("sensors train", stderr)
	var corpora []string
	fs.Func("corpus", "labelled injection corpus (JSONL); repeat for more", func(s string) error {
		corpora = append(corpora, s)
		return nil
	})
	out := fs.String("out", "", "where to write the model (JSON)")
	noExtra := fs.Bool("no-extra", false, "train on the corpora only, without the examples shipped with Chaperone")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	if len(corpora) == 0 || *out == "" {
		return usageError{"--corpus and --out are required"}
	}
	var rows []inspect.Row
	for _, c := range corpora {
		rs, err := readCorpus(c)
		if err != nil {
			return err
		}
		rows = append(rows, rs...)
	}
	if !*noExtra {
		extra, err := inspect.InjectionTrainingRows()
		if err != nil {
			return err
		}
		rows = append(rows, extra...)
	}
	m, err := inspect.Train(rows, inspect.TrainOptions{})
	if err != nil {
		return fmt.Errorf("train: %w", err)
	}
	b, err := m.Marshal()
	if err != nil {
		return err
	}
	o, err := openOutput(stdout, *out, "model")
	if err != nil {
		return err
	}
	if _, err := o.w.Write(b); err != nil {
		o.abort()
		return fmt.Errorf("write model %s: %w", *out, err)
	}
	if err := o.commit(); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "trained on %d rows; wrote %s (%d bytes, threshold %.2f)\n", len(rows), *out, len(b), m.Threshold())
	return nil
}

// sensorsScan runs every sensor on a text and shows what they found.
func sensorsScan(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := newFlags("sensors scan", stderr)
	file := fs.String("file", "-", "the text to scan (- for standard input)")
	model := fs.String("model", "embedded", "injection model: embedded, rules or a model file")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	var r io.Reader = stdin
	if *file != "-" {
		f, err := os.Open(*file)
		if err != nil {
			return err
		}
		defer f.Close()
		r = f
	}
	const maxScan = 16 << 20
	b, err := io.ReadAll(io.LimitReader(r, maxScan+1))
	if err != nil {
		return err
	}
	if len(b) > maxScan {
		return fmt.Errorf("text: longer than %d bytes", maxScan)
	}
	m, err := loadModel(*model)
	if err != nil {
		return fmt.Errorf("model: %w", err)
	}
	text := string(b)
	inj := inspect.NewInjectionDetector(m, 0).Detect(text)
	pii, err := inspect.NewPIIScanner(nil)
	if err != nil {
		return err
	}
	type span struct {
		Kind  string `json:"kind"`
		Start int    `json:"start"`
		End   int    `json:"end"`
	}
	spans := func(fs []inspect.Finding) []span {
		out := []span{}
		for _, f := range fs {
			out = append(out, span{f.Kind, f.Span.Start, f.Span.End})
		}
		return out
	}
	rep := struct {
		Injection inspect.InjectionResult `json:"injection"`
		Secrets   []span                  `json:"secrets"`
		PII       []span                  `json:"pii"`
	}{inj, spans(inspect.NewSecretScanner().Scan(text)), spans(pii.Scan(text))}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	verdict := "no injection"
	if inj.Detected {
		verdict = "INJECTION"
	}
	fmt.Fprintf(stdout, "injection: %s (score %.2f, model %.2f)\n", verdict, inj.Score, inj.Model)
	if len(inj.Tricks) > 0 {
		fmt.Fprintf(stdout, "  hidden text: %s\n", strings.Join(inj.Tricks, ", "))
	}
	for _, e := range inj.Evidence {
		fmt.Fprintf(stdout, "  %-24s %.2f  %q\n", e.Signal, e.Score, e.Text)
	}
	// Values are not printed: the point of a secret sensor is not to show secrets.
	fmt.Fprintf(stdout, "secrets: %d\n", len(rep.Secrets))
	for _, s := range rep.Secrets {
		fmt.Fprintf(stdout, "  %-24s bytes %d-%d\n", s.Kind, s.Start, s.End)
	}
	fmt.Fprintf(stdout, "personal data: %d\n", len(rep.PII))
	for _, s := range rep.PII {
		fmt.Fprintf(stdout, "  %-24s bytes %d-%d\n", s.Kind, s.Start, s.End)
	}
	return nil
}
