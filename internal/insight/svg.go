package insight

import (
	"bytes"
	"fmt"
	"html/template"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// ChartCSS colours the charts of [TimeChart] and [BarChart]. The charts carry no style of
// their own — only class names and presentation attributes — so that they render under a
// Content-Security-Policy without 'unsafe-inline' styles; a page embeds ChartCSS in its
// stylesheet.
const ChartCSS = `.ch{display:block;max-width:100%;height:auto;font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;font-size:11px}
.ch-allow{fill:#2e7d32}
.ch-approved{fill:#1565c0}
.ch-deny{fill:#c62828}
.ch-refused{fill:#ef8f00}
.ch-bar{fill:#546e7a}
.ch-axis{fill:none;stroke:#9e9e9e;stroke-width:1}
.ch-label{fill:#212121}
`

// Geometry of the charts, in viewBox units.
const (
	chartWidth   = 640
	timeHeight   = 250
	timeLeft     = 48  // room for the y-axis labels
	timeRight    = 12  //
	timeTop      = 24  // room for the title
	timePlot     = 160 // height of the plot area
	barRow       = 22  // height of one row of a bar chart
	barLabelW    = 220 // width of a bar chart's labels
	barTop       = 28
	maxBarRows   = 50 // rows a bar chart draws; the rest are summed up in one line
	maxLabelRune = 36 // characters of a bar chart's label
)

// chartRect, chartLine and chartText are the shapes a chart template draws.
type (
	chartRect struct{ Class, X, Y, W, H string }
	chartLine struct{ X1, Y1, X2, Y2 string }
	chartText struct{ X, Y, Anchor, S string }
	chart     struct {
		W, H         int
		Title, Label string
		Rects        []chartRect
		Lines        []chartLine
		Texts        []chartText
	}
)

// chartTemplate renders a chart. html/template escapes every text and attribute, so
// reason codes and agent ids, which are untrusted, cannot break out of the markup.
var chartTemplate = template.Must(template.New("chart").Parse(
	`<svg xmlns="http://www.w3.org/2000/svg" class="ch" width="{{.W}}" height="{{.H}}" viewBox="0 0 {{.W}} {{.H}}" role="img" aria-label="{{.Label}}">` +
		`<title>{{.Title}}</title>` +
		`{{range .Rects}}<rect class="{{.Class}}" x="{{.X}}" y="{{.Y}}" width="{{.W}}" height="{{.H}}"></rect>{{end}}` +
		`{{range .Lines}}<line class="ch-axis" x1="{{.X1}}" y1="{{.Y1}}" x2="{{.X2}}" y2="{{.Y2}}"></line>{{end}}` +
		`{{range .Texts}}<text class="ch-label" x="{{.X}}" y="{{.Y}}" text-anchor="{{.Anchor}}">{{.S}}</text>{{end}}` +
		`</svg>`))

// render executes the chart template.
func (c *chart) render() template.HTML {
	c.Title, c.Label = clean(c.Title), clean(c.Label)
	for i := range c.Texts {
		c.Texts[i].S = clean(c.Texts[i].S)
	}
	var b bytes.Buffer
	if err := chartTemplate.Execute(&b, c); err != nil {
		// The template and its data are ours: it cannot fail but for a bug, and a page
		// without a chart is better than no page.
		return template.HTML("")
	}
	return template.HTML(b.String())
}

// num formats a coordinate.
func num(v float64) string { return strconv.FormatFloat(v, 'f', 2, 64) }

// noData is the chart of an empty series: a frame saying so.
func noData(title string) template.HTML {
	c := chart{W: chartWidth, H: 80, Title: title, Label: title + ": no data"}
	c.Lines = []chartLine{
		{"0.5", "20.5", num(chartWidth - 0.5), "20.5"},
		{"0.5", "79.5", num(chartWidth - 0.5), "79.5"},
	}
	c.Texts = []chartText{
		{"0", "14", "start", title},
		{num(chartWidth / 2), "54", "middle", "No data"},
	}
	return c.render()
}

// TimeChart draws the call decisions of series as stacked bars, one per bucket: allowed
// at the bottom, then approved, denied and refused (suggested calls, which did not run,
// are drawn with the refused). It has a y axis from 0 to the largest bucket, the first
// and last buckets' start times (UTC) under the x axis, and a legend. An empty series,
// or one without a call, draws a "No data" frame.
func TimeChart(series []Bucket) template.HTML {
	const title = "Call decisions over time"
	var maxTotal int64
	var sum Bucket
	for _, b := range series {
		maxTotal = max(maxTotal, b.Total())
		sum.Allow += b.Allow
		sum.Approved += b.Approved
		sum.Deny += b.Deny
		sum.Refused += b.Refused + b.Suggested
	}
	if maxTotal == 0 {
		return noData(title)
	}
	first, last := series[0].Start.UTC(), series[len(series)-1].Start.UTC()
	c := chart{W: chartWidth, H: timeHeight, Title: title,
		Label: fmt.Sprintf("Call decisions from %s to %s: %d allowed, %d approved by a person, %d denied by policy, %d refused",
			first.Format(time.RFC3339), last.Format(time.RFC3339), sum.Allow, sum.Approved, sum.Deny, sum.Refused)}
	plotW := float64(chartWidth - timeLeft - timeRight)
	bottom := float64(timeTop + timePlot)
	slot := plotW / float64(len(series))
	barW, pad := slot, 0.0
	if slot > 4 {
		pad = slot * 0.15
		barW = slot - 2*pad
	}
	scale := float64(timePlot) / float64(maxTotal)
	for i, b := range series {
		x := float64(timeLeft) + float64(i)*slot + pad
		y := bottom
		for _, part := range []struct {
			class string
			n     int64
		}{{"ch-allow", b.Allow}, {"ch-approved", b.Approved}, {"ch-deny", b.Deny}, {"ch-refused", b.Refused + b.Suggested}} {
			if part.n == 0 {
				continue
			}
			h := float64(part.n) * scale
			y -= h
			c.Rects = append(c.Rects, chartRect{part.class, num(x), num(y), num(barW), num(h)})
		}
	}
	c.Lines = []chartLine{
		{num(timeLeft - 0.5), num(timeTop), num(timeLeft - 0.5), num(bottom + 0.5)},
		{num(timeLeft - 0.5), num(bottom + 0.5), num(chartWidth - timeRight), num(bottom + 0.5)},
	}
	layout := "2006-01-02 15:04"
	c.Texts = []chartText{
		{"0", "14", "start", title},
		{num(timeLeft - 6), num(timeTop + 8), "end", strconv.FormatInt(maxTotal, 10)},
		{num(timeLeft - 6), num(bottom), "end", "0"},
		{num(timeLeft), num(bottom + 16), "start", first.Format(layout)},
	}
	if len(series) > 1 {
		c.Texts = append(c.Texts, chartText{num(chartWidth - timeRight), num(bottom + 16), "end", last.Format(layout) + " UTC"})
	}
	legendY := bottom + 44
	x := float64(timeLeft)
	for _, l := range []struct{ class, text string }{
		{"ch-allow", "allowed"}, {"ch-approved", "approved by a person"}, {"ch-deny", "denied by policy"}, {"ch-refused", "refused"},
	} {
		c.Rects = append(c.Rects, chartRect{l.class, num(x), num(legendY - 9), "10", "10"})
		c.Texts = append(c.Texts, chartText{num(x + 14), num(legendY), "start", l.text})
		x += 14 + float64(len(l.text))*6.5 + 18
	}
	return c.render()
}

// BarChart draws items as horizontal bars under title, in the order given, each with its
// name and count; at most 50, the rest summed up in a last line. Names are cut to 36
// characters. No items draw a "No data" frame.
func BarChart(title string, items []Count) template.HTML {
	if len(items) == 0 {
		return noData(title)
	}
	shown := items[:min(len(items), maxBarRows)]
	var maxCount, rest int64
	for _, it := range shown {
		maxCount = max(maxCount, it.Count)
	}
	for _, it := range items[len(shown):] {
		rest += it.Count
	}
	rows := len(shown)
	if rest > 0 || len(items) > len(shown) {
		rows++
	}
	c := chart{W: chartWidth, H: barTop + rows*barRow + 8, Title: title,
		Label: fmt.Sprintf("%s: %d entries", title, len(items))}
	c.Texts = []chartText{{"0", "14", "start", title}}
	barMax := float64(chartWidth - barLabelW - 60)
	for i, it := range shown {
		y := float64(barTop + i*barRow)
		w := 0.0
		if maxCount > 0 && it.Count > 0 {
			w = max(1, float64(it.Count)/float64(maxCount)*barMax)
		}
		c.Rects = append(c.Rects, chartRect{"ch-bar", num(barLabelW), num(y + 3), num(w), num(barRow - 6)})
		c.Texts = append(c.Texts,
			chartText{num(barLabelW - 6), num(y + 15), "end", cutLabel(it.Name)},
			chartText{num(barLabelW + w + 6), num(y + 15), "start", strconv.FormatInt(it.Count, 10)})
	}
	if rows > len(shown) {
		y := float64(barTop + len(shown)*barRow)
		c.Texts = append(c.Texts, chartText{num(barLabelW - 6), num(y + 15), "end",
			fmt.Sprintf("%d more, %d in all", len(items)-len(shown), rest)})
	}
	c.Lines = []chartLine{{num(barLabelW - 0.5), num(barTop), num(barLabelW - 0.5), num(float64(barTop + len(shown)*barRow))}}
	return c.render()
}

// clean makes s fit for XML text: invalid UTF-8 and control characters (which XML 1.0
// does not allow, and the escaper passes through) become U+FFFD.
func clean(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	return strings.Map(func(r rune) rune {
		if (r < 0x20 && r != '\t' && r != '\n' && r != '\r') || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == 0xfffe || r == 0xffff {
			return '\uFFFD'
		}
		return r
	}, s)
}

// cutLabel cuts s to maxLabelRune characters, marking the cut with an ellipsis.
func cutLabel(s string) string {
	if utf8.RuneCountInString(s) <= maxLabelRune {
		return s
	}
	r := []rune(s)
	return string(r[:maxLabelRune-1]) + "…"
}
