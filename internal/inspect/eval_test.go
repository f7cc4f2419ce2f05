package inspect

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestReadRowsErrors(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"empty", "\n\n", "no rows"},
		{"not json", `{"id":"a","text":"x","label":"secret"}` + "\nnope\n", "line 2"},
		{"two values", `{"id":"a","text":"x","label":"secret"} {"id":"b"}`, "line 1: more than one JSON value"},
		{"no id", `{"text":"x","label":"secret"}`, "row without an id"},
		{"no label", `{"id":"a","text":"x"}`, `row "a": neither a label nor an entity list`},
		{"span outside", `{"id":"a","text":"héllo","entities":[{"type":"EMAIL","start":2,"end":6}]}`, `entities[0]: type "EMAIL" at [2, 6) is not a span of the 5 characters`},
		{"empty span", `{"id":"a","text":"hello","entities":[{"type":"EMAIL","start":2,"end":2}]}`, "entities[0]"},
		{"too long", `{"id":"a","text":"` + strings.Repeat("x", MaxCorpusLine) + `","label":"secret"}`, "line 1: longer than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ReadRows(strings.NewReader(tc.in))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("ReadRows() error = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestDetectCorpus(t *testing.T) {
	for _, tc := range []struct {
		rows []Row
		want string
		err  string
	}{
		{[]Row{{ID: "a", Label: "benign"}, {ID: "b", Label: "injection"}}, CorpusInjection, ""},
		{[]Row{{ID: "a", Label: "secret"}}, CorpusSecrets, ""},
		{[]Row{{ID: "a", Entities: []Entity{}}}, CorpusPII, ""},
		{[]Row{{ID: "a", Label: "benign"}}, "", "every row is benign"},
		{[]Row{{ID: "a", Label: "secret"}, {ID: "b", Label: "injection"}}, "", `row "b": a injection row in a secrets corpus`},
		{[]Row{{ID: "a", Label: "spam"}}, "", `unknown label "spam"`},
	} {
		got, err := DetectCorpus(tc.rows)
		if got != tc.want || (tc.err == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("DetectCorpus(%+v) = %q, %v; want %q, %q", tc.rows, got, err, tc.want, tc.err)
		}
	}
}

// FuzzReadRows: the corpus decoder never panics, and every row it accepts has an id,
// valid UTF-8 text and entity spans inside the text.
func FuzzReadRows(f *testing.F) {
	f.Add(`{"id":"a","text":"x","label":"secret"}`)
	f.Add(`{"id":"p","text":"mail bob@example.com","entities":[{"type":"EMAIL","start":5,"end":20}],"annotated_types":["EMAIL"]}`)
	f.Add("\n\n{\"id\":\"a\"}\n")
	f.Fuzz(func(t *testing.T, in string) {
		rows, err := ReadRows(strings.NewReader(in))
		if err != nil {
			return
		}
		for _, r := range rows {
			if r.ID == "" || !utf8.ValidString(r.Text) {
				t.Fatalf("accepted row %+v", r)
			}
			n := utf8.RuneCountInString(r.Text)
			for _, e := range r.Entities {
				if e.Start < 0 || e.End <= e.Start || e.End > n {
					t.Fatalf("accepted entity %+v outside %d characters", e, n)
				}
			}
		}
		DetectCorpus(rows)
	})
}
