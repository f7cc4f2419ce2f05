package console

import (
	"context"
	"html/template"
	"net/http"
	"time"

	"github.com/chaperone-dev/chaperone/internal/insight"
)

// figureTTL is how long computed figures are reused: a dashboard refreshed on every change
// must not rescan the log on every call.
const figureTTL = 5 * time.Second

type cachedFigures struct {
	at  time.Time
	fig insight.Figures
}

// figures computes (or reuses) the figures of the span before now, in buckets.
func (c *Console) figures(ctx context.Context, span, bucket time.Duration) (insight.Figures, error) {
	key := span.String() + "/" + bucket.String()
	now := c.now()
	c.figMu.Lock()
	if f, ok := c.figCache[key]; ok && now.Sub(f.at) < figureTTL {
		c.figMu.Unlock()
		return f.fig, nil
	}
	c.figMu.Unlock()
	// Whole buckets, so that the chart's bars do not shift with every refresh.
	to := now.Truncate(bucket).Add(bucket)
	fig, err := insight.Compute(ctx, c.opts.Events, insight.Window{From: to.Add(-span), To: to, Bucket: bucket})
	if err != nil {
		return fig, err
	}
	c.figMu.Lock()
	c.figCache[key] = cachedFigures{at: now, fig: fig}
	c.figMu.Unlock()
	return fig, nil
}

// activity is an agent's use over the last 24 hours.
type activity struct {
	Calls, Refused int64
	LastSeen       time.Time
}

func (c *Console) activity(ctx context.Context) (map[string]activity, error) {
	fig, err := c.figures(ctx, 24*time.Hour, time.Hour)
	if err != nil {
		return nil, err
	}
	out := make(map[string]activity, len(fig.Agents))
	for _, a := range fig.Agents {
		out[a.Agent] = activity{Calls: a.Calls, Refused: a.Refused, LastSeen: a.LastSeen}
	}
	return out, nil
}

// dashboardWindows are the spans the dashboard offers, with their bucket.
var dashboardWindows = []struct {
	Name   string
	Span   time.Duration
	Bucket time.Duration
}{
	{"1h", time.Hour, 2 * time.Minute},
	{"24h", 24 * time.Hour, time.Hour},
	{"7d", 7 * 24 * time.Hour, 6 * time.Hour},
	{"30d", 30 * 24 * time.Hour, 24 * time.Hour},
}

type dashboardView struct {
	Window   string
	Windows  []string
	F        insight.Figures
	Calls    template.HTML
	Reasons  template.HTML
	Rules    template.HTML
	Sensors  template.HTML
	Breakers template.HTML
}

func (c *Console) dashboardPage(w http.ResponseWriter, r *http.Request) {
	name := r.URL.Query().Get("window")
	win := dashboardWindows[1]
	for _, dw := range dashboardWindows {
		if dw.Name == name {
			win = dw
		}
	}
	fig, err := c.figures(r.Context(), win.Span, win.Bucket)
	if err != nil {
		c.log.ErrorContext(r.Context(), "console dashboard", "err", err)
		c.fail(w, r, http.StatusServiceUnavailable, "The audit log cannot be read; try again shortly.")
		return
	}
	v := dashboardView{Window: win.Name, F: fig,
		Calls:    insight.TimeChart(fig.Series),
		Reasons:  insight.BarChart("Top denial and refusal reasons", fig.TopReasons),
		Rules:    insight.BarChart("Top rules behind refusals", fig.TopRules),
		Sensors:  insight.BarChart("Sensor detections", fig.SensorDetections),
		Breakers: insight.BarChart("Breaker trips by agent", fig.BreakerTripsByAgent),
	}
	for _, dw := range dashboardWindows {
		v.Windows = append(v.Windows, dw.Name)
	}
	c.render(w, r, "dashboard", "Dashboard", "dashboard", v)
}
