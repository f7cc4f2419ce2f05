package flow

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// TestFalsePositives measures value matching on a corpus of benign documents
// (testdata/fp/texts) taken as untrusted content.
//
// False positives: of the argument values in testdata/fp/arguments.txt, none of
// which comes from the texts, how many share a key with the texts' values. It
// fails above 2%.
//
// Recall: every e-mail address, URL, IBAN and amount listed by hand in
// testdata/fp/expected.txt, copied as found and rewritten the way an agent
// copies (case, spaces, scheme, trailing zeros, a JSON number), must share a
// key with the values of the text it appears in. It fails below 100%.
func TestFalsePositives(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob(filepath.Join("testdata", "fp", "texts", "*.txt"))
	if err != nil || len(files) < 30 {
		t.Fatalf("glob texts: %d files, %v; want at least 30", len(files), err)
	}
	texts := map[string]string{}     // file name → text
	perFile := map[string][]string{} // file name → keys
	seen := map[string]string{}      // key → first file
	values := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		name := filepath.Base(f)
		texts[name] = string(b)
		ExtractText(string(b), func(v Value) {
			values++
			perFile[name] = append(perFile[name], v.Key)
			if _, ok := seen[v.Key]; !ok {
				seen[v.Key] = name
			}
		})
	}

	args := readArguments(t, filepath.Join("testdata", "fp", "arguments.txt"))
	if len(args) < 300 {
		t.Fatalf("arguments.txt holds %d arguments, want at least 300", len(args))
	}
	fp := 0
	for _, a := range args {
		var hits []string
		ArgumentValues(a.value, func(v Value) {
			if f, ok := seen[v.Key]; ok && !slices.Contains(hits, v.Key+" (in "+f+")") {
				hits = append(hits, v.Key+" (in "+f+")")
			}
		})
		if len(hits) > 0 {
			fp++
			t.Logf("false positive: arguments.txt:%d %q matches %s", a.line, a.text, strings.Join(hits, ", "))
		}
	}
	fpRate := float64(fp) / float64(len(args))

	expected := readExpected(t, filepath.Join("testdata", "fp", "expected.txt"))
	if len(expected) < 60 {
		t.Fatalf("expected.txt lists %d values, want at least 60", len(expected))
	}
	copies, found := 0, 0
	for _, e := range expected {
		text, ok := texts[e.file]
		if !ok || !strings.Contains(text, e.raw) {
			t.Errorf("expected.txt:%d: %q is not in %s", e.line, e.raw, e.file)
			continue
		}
		for _, c := range rewrites(e.raw) {
			copies++
			var keys []string
			hit := false
			ArgumentValues(c, func(v Value) {
				keys = append(keys, v.Key)
				hit = hit || slices.Contains(perFile[e.file], v.Key)
			})
			if hit {
				found++
			} else {
				t.Errorf("expected.txt:%d: copy %#v of %q (%s) does not match: its keys are %q", e.line, c, e.raw, e.file, keys)
			}
		}
	}
	recall := float64(found) / float64(max(copies, 1))

	t.Logf("flow provenance: false positives %d/%d arguments (%.1f%%) against %d values from %d benign texts; recall %d/%d copied values (%.1f%%) from %d hand-listed e-mails, URLs, IBANs and amounts",
		fp, len(args), 100*fpRate, len(seen), len(files), found, copies, 100*recall, len(expected))
	if fpRate > 0.02 {
		t.Errorf("false-positive rate %.1f%% (%d/%d), want at most 2%%", 100*fpRate, fp, len(args))
	}
	if found != copies {
		t.Errorf("recall %.1f%% (%d/%d), want 100%%", 100*recall, found, copies)
	}
}

type argumentLine struct {
	line  int
	text  string
	value any
}

// readArguments reads one argument value per line: "json:" and a JSON value,
// or a string. Blank lines and lines starting with "# " are skipped.
func readArguments(tb testing.TB, name string) []argumentLine {
	tb.Helper()
	f, err := os.Open(name)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	var args []argumentLine
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if strings.TrimSpace(line) == "" || strings.HasPrefix(line, "# ") {
			continue
		}
		a := argumentLine{line: n, text: line, value: line}
		if j, ok := strings.CutPrefix(line, "json:"); ok {
			if err := json.Unmarshal([]byte(j), &a.value); err != nil {
				tb.Fatalf("%s:%d: %v", name, n, err)
			}
		}
		args = append(args, a)
	}
	if err := sc.Err(); err != nil {
		tb.Fatal(err)
	}
	return args
}

type expectedLine struct {
	line      int
	file, raw string
}

func readExpected(tb testing.TB, name string) []expectedLine {
	tb.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		tb.Fatal(err)
	}
	var out []expectedLine
	for n, line := range strings.Split(string(b), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		file, raw, ok := strings.Cut(line, "\t")
		if !ok {
			tb.Fatalf("%s:%d: want file<TAB>raw value", name, n+1)
		}
		out = append(out, expectedLine{n + 1, file, raw})
	}
	return out
}

var (
	ibanRE   = regexp.MustCompile(`^[A-Z]{2}[0-9]{2}( [0-9A-Z]{1,4})+$`)
	amountRE = regexp.MustCompile(`^[0-9][0-9.,]*$`)
)

// rewrites returns raw and the copies an agent might make of it.
func rewrites(raw string) []any {
	out := []any{raw}
	switch {
	case strings.Contains(raw, "@"):
		out = append(out, strings.ToUpper(raw), "Someone <"+raw+">", " "+raw+"\n")
	case ibanRE.MatchString(raw):
		compact := strings.ReplaceAll(raw, " ", "")
		out = append(out, compact, strings.ToLower(raw), strings.ReplaceAll(raw, " ", "-"),
			"IBAN: "+compact)
	case amountRE.MatchString(raw):
		f := amountFloat(raw)
		out = append(out, f, strconv.FormatFloat(f, 'f', 2, 64), strconv.FormatFloat(f, 'f', -1, 64), "EUR "+raw,
			json.Number(strconv.FormatFloat(f, 'f', -1, 64)))
	default: // a URL
		rest, scheme := strings.CutPrefix(raw, "https://")
		if !scheme {
			out = append(out, "https://"+raw)
		} else {
			out = append(out, rest, strings.TrimPrefix(rest, "www."), "http://"+rest)
		}
		if !strings.ContainsAny(raw, "?#") {
			out = append(out, strings.TrimSuffix(raw, "/")+"/", raw+"#details")
		}
		// Upper-case the scheme and host.
		host := len(raw)
		if k := strings.IndexByte(strings.TrimPrefix(raw, "https://"), '/'); k >= 0 {
			host = k + len(raw) - len(strings.TrimPrefix(raw, "https://"))
		}
		out = append(out, strings.ToUpper(raw[:host])+raw[host:], "see "+raw+".")
	}
	return out
}

// amountFloat parses an amount written as 1,250.00, 1.250,00 or 98.70.
func amountFloat(raw string) float64 {
	s := raw
	if k := strings.LastIndexByte(s, ','); k >= 0 && len(s)-k-1 == 2 {
		s = strings.ReplaceAll(s[:k], ".", "") + "." + s[k+1:] // European
	}
	f, err := strconv.ParseFloat(strings.ReplaceAll(s, ",", ""), 64)
	if err != nil {
		panic("amountFloat(" + raw + "): " + err.Error())
	}
	return f
}
