package telemetry

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	dto "github.com/prometheus/client_model/go"
)

// dashboardPath is the Grafana dashboard, relative to this package.
var dashboardPath = filepath.Join("..", "..", "deploy", "grafana", "chaperone.json")

type dashboard struct {
	Title         string  `json:"title"`
	UID           string  `json:"uid"`
	SchemaVersion int     `json:"schemaVersion"`
	Panels        []panel `json:"panels"`
	Templating    struct {
		List []struct {
			Name       string          `json:"name"`
			Type       string          `json:"type"`
			Query      json.RawMessage `json:"query"`
			Definition string          `json:"definition"`
			Datasource *datasourceRef  `json:"datasource"`
		} `json:"list"`
	} `json:"templating"`
}

type datasourceRef struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type panel struct {
	ID         int            `json:"id"`
	Type       string         `json:"type"`
	Title      string         `json:"title"`
	Datasource *datasourceRef `json:"datasource"`
	Targets    []struct {
		Expr       string         `json:"expr"`
		Datasource *datasourceRef `json:"datasource"`
	} `json:"targets"`
	Panels []panel `json:"panels"` // of a collapsed row
}

func loadDashboard(t *testing.T) dashboard {
	t.Helper()
	raw, err := os.ReadFile(dashboardPath)
	if err != nil {
		t.Fatalf("read dashboard: %v", err)
	}
	var d dashboard
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("decode %s: %v", dashboardPath, err)
	}
	return d
}

// allPanels returns the panels of d, those inside rows included.
func allPanels(ps []panel) []panel {
	var out []panel
	for _, p := range ps {
		out = append(out, p)
		out = append(out, allPanels(p.Panels)...)
	}
	return out
}

// knownMetrics returns the names a query may use: every chaperone_ metric of the
// registry (a histogram by its _bucket, _sum and _count series) and every go_ and
// process_ metric its collectors gather.
func knownMetrics(t *testing.T) (known map[string]string, chaperone []string) {
	t.Helper()
	m := NewMetrics()
	known = map[string]string{}
	for name, typ := range m.families {
		chaperone = append(chaperone, name)
		if typ == "histogram" {
			for _, s := range []string{"_bucket", "_sum", "_count"} {
				known[name+s] = name
			}
			continue
		}
		known[name] = name
	}
	mfs, err := m.reg.Gather()
	if err != nil {
		t.Fatalf("Gather() error: %v", err)
	}
	for _, mf := range mfs {
		name := mf.GetName()
		switch mf.GetType() {
		case dto.MetricType_HISTOGRAM:
			for _, s := range []string{"_bucket", "_sum", "_count"} {
				known[name+s] = name
			}
		case dto.MetricType_SUMMARY:
			known[name], known[name+"_sum"], known[name+"_count"] = name, name, name
		default:
			known[name] = name
		}
	}
	slices.Sort(chaperone)
	return known, chaperone
}

// TestDashboardMetrics keeps the dashboard and the code in step: every metric a panel
// queries exists, and every chaperone_ metric is on some panel.
func TestDashboardMetrics(t *testing.T) {
	t.Parallel()
	d := loadDashboard(t)
	known, chaperone := knownMetrics(t)
	used := map[string]bool{}
	exprs := 0
	for _, p := range allPanels(d.Panels) {
		for _, tg := range p.Targets {
			if strings.TrimSpace(tg.Expr) == "" {
				t.Errorf("panel %q has a target without expr", p.Title)
				continue
			}
			exprs++
			names := promMetricNames(tg.Expr)
			if len(names) == 0 {
				t.Errorf("panel %q: expr %q uses no chaperone_, go_ or process_ metric", p.Title, tg.Expr)
			}
			for _, n := range names {
				base, ok := known[n]
				if !ok {
					t.Errorf("panel %q: expr %q uses %s, which the metrics registry does not describe", p.Title, tg.Expr, n)
					continue
				}
				used[base] = true
			}
		}
	}
	if exprs == 0 {
		t.Fatal("the dashboard has no queries")
	}
	for _, name := range chaperone {
		if !used[name] {
			t.Errorf("metric %s is on no dashboard panel", name)
		}
	}
	for _, v := range d.Templating.List {
		for _, n := range promMetricNames(v.Definition) {
			if _, ok := known[n]; !ok {
				t.Errorf("template variable %q uses %s, which the metrics registry does not describe", v.Name, n)
			}
		}
	}
}

func TestDashboardShape(t *testing.T) {
	t.Parallel()
	d := loadDashboard(t)
	if d.SchemaVersion != 39 || d.UID == "" || d.Title == "" {
		t.Errorf("dashboard schemaVersion %d uid %q title %q, want 39 and a uid and title", d.SchemaVersion, d.UID, d.Title)
	}
	vars := map[string]string{}
	for _, v := range d.Templating.List {
		vars[v.Name] = v.Type
		switch v.Name {
		case "datasource":
			if string(v.Query) != `"prometheus"` {
				t.Errorf("variable datasource query = %s, want \"prometheus\"", v.Query)
			}
		case "agent", "tool":
			if v.Datasource == nil || v.Datasource.UID != "${datasource}" {
				t.Errorf("variable %s datasource = %+v, want uid ${datasource}", v.Name, v.Datasource)
			}
		}
	}
	if diff := cmp.Diff(map[string]string{"datasource": "datasource", "agent": "query", "tool": "query"}, vars); diff != "" {
		t.Errorf("template variables (-want +got):\n%s", diff)
	}
	ids := map[int]string{}
	for _, p := range allPanels(d.Panels) {
		if prev, dup := ids[p.ID]; dup {
			t.Errorf("panels %q and %q share id %d", prev, p.Title, p.ID)
		}
		ids[p.ID] = p.Title
		switch p.Type {
		case "row":
			continue
		case "timeseries", "stat", "bargauge":
		default:
			t.Errorf("panel %q has type %q, want timeseries, stat or bargauge", p.Title, p.Type)
		}
		if p.Datasource == nil || p.Datasource.Type != "prometheus" || p.Datasource.UID != "${datasource}" {
			t.Errorf("panel %q datasource = %+v, want prometheus ${datasource}", p.Title, p.Datasource)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no queries", p.Title)
		}
	}
}

func TestPromMetricNames(t *testing.T) {
	t.Parallel()
	tests := []struct {
		expr string
		want []string
	}{
		{`chaperone_calls_total`, []string{"chaperone_calls_total"}},
		{`sum by (decision) (rate(chaperone_calls_total{agent=~"$agent", tool=~"$tool"}[$__rate_interval]))`, []string{"chaperone_calls_total"}},
		{`histogram_quantile(0.9, sum by (le) (rate(chaperone_upstream_latency_seconds_bucket[5m])))`, []string{"chaperone_upstream_latency_seconds_bucket"}},
		{`sum(rate(chaperone_task_spend_total[1h])) / sum(rate(chaperone_tasks_completed_total[1h]))`, []string{"chaperone_task_spend_total", "chaperone_tasks_completed_total"}},
		{`go_goroutines + process_resident_memory_bytes`, []string{"go_goroutines", "process_resident_memory_bytes"}},
		// Not metric names: strings, label matchers, other metrics, variables, words inside names.
		{`chaperone_x{kind="chaperone_y", chaperone_label="v"}`, []string{"chaperone_x"}},
		{`up{job='chaperone_z'} or node_go_x or my_chaperone_total`, nil},
		{`rate(x[$chaperone_var]) + ${chaperone_other}`, nil},
		{"sum(`chaperone_raw`) + chaperone_after_raw", []string{"chaperone_after_raw"}},
		{`{__name__="chaperone_calls_total"}`, nil},
		{`5chaperone_x`, nil},
		{`chaperone_a:rate5m`, []string{"chaperone_a:rate5m"}},
		{`"unterminated chaperone_x`, nil},
		{`chaperone_q{a="\"chaperone_esc\""}`, []string{"chaperone_q"}},
		{``, nil},
	}
	for _, tc := range tests {
		if diff := cmp.Diff(tc.want, promMetricNames(tc.expr)); diff != "" {
			t.Errorf("promMetricNames(%q) (-want +got):\n%s", tc.expr, diff)
		}
	}
}

func FuzzPromMetricNames(f *testing.F) {
	for _, s := range []string{
		`sum by (decision) (rate(chaperone_calls_total{agent=~"$agent"}[$__rate_interval]))`,
		`histogram_quantile(0.9, sum by (le) (rate(chaperone_x_bucket[5m])))`,
		`go_goroutines`, `"\"`, "`", `{`, `}}}`, `${`, `$`, `chaperone_`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, expr string) {
		for _, n := range promMetricNames(expr) {
			if !strings.HasPrefix(n, "chaperone_") && !strings.HasPrefix(n, "go_") && !strings.HasPrefix(n, "process_") {
				t.Fatalf("promMetricNames(%q) returned %q without a known prefix", expr, n)
			}
			if !strings.Contains(expr, n) {
				t.Fatalf("promMetricNames(%q) returned %q, which is not in it", expr, n)
			}
			for i := range len(n) {
				if !isPromIdent(n[i]) {
					t.Fatalf("promMetricNames(%q) returned %q, not an identifier", expr, n)
				}
			}
		}
	})
}

// promMetricNames returns, in order, the names of the chaperone_, go_ and process_
// metrics a PromQL expression uses: identifiers outside string literals and label
// matchers ({...}), not part of a longer word or number, and not a Grafana variable
// ($name or ${name}).
func promMetricNames(expr string) []string {
	var names []string
	braces := 0
	for i := 0; i < len(expr); {
		c := expr[i]
		switch {
		case c == '"' || c == '\'' || c == '`':
			i = skipPromString(expr, i)
		case c == '{':
			braces++
			i++
		case c == '}':
			braces = max(braces-1, 0)
			i++
		case c == '$':
			i++
			if i < len(expr) && expr[i] == '{' {
				if end := strings.IndexByte(expr[i:], '}'); end >= 0 {
					i += end + 1
				} else {
					i = len(expr)
				}
				continue
			}
			for i < len(expr) && isPromIdent(expr[i]) {
				i++
			}
		case isPromIdentStart(c) && (i == 0 || !isPromIdent(expr[i-1])):
			j := i
			for j < len(expr) && isPromIdent(expr[j]) {
				j++
			}
			word := expr[i:j]
			if braces == 0 && (strings.HasPrefix(word, "chaperone_") || strings.HasPrefix(word, "go_") || strings.HasPrefix(word, "process_")) {
				names = append(names, word)
			}
			i = j
		default:
			i++
		}
	}
	return names
}

// skipPromString returns the index after the string literal that starts at i. Double-
// and single-quoted strings take backslash escapes; raw (backtick) strings do not. An
// unterminated string runs to the end.
func skipPromString(expr string, i int) int {
	quote := expr[i]
	for j := i + 1; j < len(expr); j++ {
		switch {
		case expr[j] == '\\' && quote != '`':
			j++
		case expr[j] == quote:
			return j + 1
		}
	}
	return len(expr)
}

func isPromIdentStart(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' || c == ':'
}

func isPromIdent(c byte) bool { return isPromIdentStart(c) || c >= '0' && c <= '9' }
