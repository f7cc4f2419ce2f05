package insight_test

import (
	"encoding/xml"
	"errors"
	"html/template"
	"io"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chaperone-dev/chaperone/internal/insight"
)

// hostile is text an agent or upstream could put in a reason code, rule id or agent id.
const hostile = `<script>alert("x")</script>' onload="evil()" &amp; ]]>`

// wellFormed fails tb unless svg is one well-formed XML element, an <svg> with a <title>,
// role="img" and an aria-label, and returns the text of its <text> elements and its
// classes.
func wellFormed(tb testing.TB, svg template.HTML) (texts, classes []string) {
	tb.Helper()
	dec := xml.NewDecoder(strings.NewReader(string(svg)))
	var depth int
	var inText, sawTitle bool
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			tb.Fatalf("chart is not well-formed XML: %v\n%s", err, svg)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			attrs := map[string]string{}
			for _, a := range t.Attr {
				attrs[a.Name.Local] = a.Value
				if a.Name.Local == "style" || strings.HasPrefix(a.Name.Local, "on") {
					tb.Errorf("chart has a %q attribute, which a strict CSP refuses", a.Name.Local)
				}
				if a.Name.Local == "class" {
					classes = append(classes, a.Value)
				}
			}
			if depth == 0 && (t.Name.Local != "svg" || attrs["role"] != "img" || attrs["aria-label"] == "") {
				tb.Errorf("chart root is <%s %v>, want <svg role=img aria-label=...>", t.Name.Local, attrs)
			}
			switch t.Name.Local {
			case "title":
				sawTitle = true
			case "text":
				inText = true
				texts = append(texts, "")
			case "script", "style", "foreignObject":
				tb.Errorf("chart has a <%s> element", t.Name.Local)
			}
			depth++
		case xml.EndElement:
			depth--
			inText = false
		case xml.CharData:
			if inText {
				texts[len(texts)-1] += string(t)
			}
		}
	}
	if !sawTitle {
		tb.Errorf("chart has no <title>:\n%s", svg)
	}
	return texts, classes
}

// allowedClass matches the class names the page's stylesheet colours.
var allowedClass = regexp.MustCompile(`^(ch|ch-allow|ch-approved|ch-deny|ch-refused|ch-bar|ch-axis|ch-label)$`)

func checkClasses(tb testing.TB, classes []string) {
	tb.Helper()
	for _, c := range classes {
		if !allowedClass.MatchString(c) {
			tb.Errorf("chart uses class %q, not one ChartCSS styles", c)
		}
	}
}

func TestBarChartEscapes(t *testing.T) {
	t.Parallel()
	svg := insight.BarChart(hostile, []insight.Count{{Name: hostile, Count: 3}, {Name: "deny", Count: 1}})
	if strings.Contains(string(svg), "<script") || strings.Contains(string(svg), `"evil()"`) {
		t.Fatalf("BarChart let hostile text through:\n%s", svg)
	}
	texts, classes := wellFormed(t, svg)
	checkClasses(t, classes)
	// The name is cut to 36 characters, but what is shown is the text as it was.
	if !strings.Contains(strings.Join(texts, "\n"), `<script>alert("x")</script>' onload=`) {
		t.Errorf("BarChart texts = %q, want the hostile name shown as text", texts)
	}
}

func TestTimeChart(t *testing.T) {
	t.Parallel()
	start := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	series := []insight.Bucket{
		{Start: start, Allow: 5, Approved: 1, Deny: 2, Refused: 1},
		{Start: start.Add(time.Hour)},
		{Start: start.Add(2 * time.Hour), Allow: 1, Suggested: 2},
	}
	svg := insight.TimeChart(series)
	texts, classes := wellFormed(t, svg)
	checkClasses(t, classes)
	count := map[string]int{}
	for _, c := range classes {
		count[c]++
	}
	// Bars (one rect per non-empty part) plus one legend swatch per class.
	want := map[string]int{"ch": 1, "ch-allow": 3, "ch-approved": 2, "ch-deny": 2, "ch-refused": 3, "ch-axis": 2}
	for c, n := range want {
		if count[c] != n {
			t.Errorf("TimeChart has %d elements of class %s, want %d", count[c], c, n)
		}
	}
	joined := strings.Join(texts, "|")
	for _, w := range []string{"9", "0", "2026-03-01 09:00", "2026-03-01 11:00 UTC", "allowed", "denied by policy"} {
		if !strings.Contains(joined, w) {
			t.Errorf("TimeChart texts %q lack %q", texts, w)
		}
	}
}

// An empty series, or one without a call, draws a "No data" frame, not a panic.
func TestChartsNoData(t *testing.T) {
	t.Parallel()
	for name, svg := range map[string]template.HTML{
		"nil series":    insight.TimeChart(nil),
		"empty buckets": insight.TimeChart([]insight.Bucket{{}, {}}),
		"no bars":       insight.BarChart("Top reasons", nil),
	} {
		texts, classes := wellFormed(t, svg)
		checkClasses(t, classes)
		if !strings.Contains(strings.Join(texts, " "), "No data") {
			t.Errorf("%s: chart texts %q, want \"No data\"", name, texts)
		}
	}
}

// More than 50 bars are summed up in one line.
func TestBarChartManyItems(t *testing.T) {
	t.Parallel()
	items := make([]insight.Count, 80)
	for i := range items {
		items[i] = insight.Count{Name: strings.Repeat("x", i), Count: int64(100 - i)}
	}
	texts, classes := wellFormed(t, insight.BarChart("Many", items))
	bars := 0
	for _, c := range classes {
		if c == "ch-bar" {
			bars++
		}
	}
	if bars != 50 {
		t.Errorf("BarChart of 80 items draws %d bars, want 50", bars)
	}
	if last := texts[len(texts)-1]; last != "30 more, 1065 in all" {
		t.Errorf("BarChart of 80 items ends with %q, want the 30 others summed up", last)
	}
}

func FuzzBarChart(f *testing.F) {
	f.Add(hostile, int64(3))
	f.Add("", int64(0))
	f.Add("\xff\xfe", int64(-1))
	f.Add("a\x00b\x01\u0085\ufffe", int64(2))
	f.Add(strings.Repeat("é", 100), int64(1<<62))
	f.Fuzz(func(t *testing.T, name string, n int64) {
		svg := insight.BarChart(name, []insight.Count{{Name: name, Count: n}, {Name: "other", Count: 1}})
		if strings.Contains(string(svg), "<script") {
			t.Fatalf("BarChart(%q) let <script through:\n%s", name, svg)
		}
		_, classes := wellFormed(t, svg)
		checkClasses(t, classes)
	})
}
