package console

import (
	"bytes"
	"encoding/json"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"time"
)

// view is what every page template gets.
type view struct {
	Title    string
	Nav      string // the menu entry to mark current
	S        *Session
	CSRF     string
	Flash    string
	FlashErr bool
	Path     string // this page's path and query, where forms send the browser back to
	Data     any
}

// Can reports whether the signed-in role may do what role allows.
func (v view) Can(role string) bool { return v.S != nil && v.S.Role.Can(Role(role)) }

var funcs = template.FuncMap{
	"time": func(t time.Time) string {
		if t.IsZero() {
			return "—"
		}
		return t.UTC().Format("2006-01-02 15:04:05Z")
	},
	"isotime": func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
	"micros":  func(us int64) string { return fmtDuration(time.Duration(us) * time.Microsecond) },
	"seconds": func(s float64) string {
		return fmtDuration(time.Duration(s * float64(time.Second)))
	},
	"pct": func(f float64) string { return fmt.Sprintf("%.1f%%", f*100) },
	"pretty": func(raw json.RawMessage) string {
		var b bytes.Buffer
		if len(raw) == 0 {
			return "(none)"
		}
		if err := json.Indent(&b, raw, "", "  "); err != nil {
			return string(raw)
		}
		return b.String()
	},
	"join":  strings.Join,
	"short": func(s string) string { return truncate(s, 19) },
	"add":   func(a, b int) int { return a + b },
	"list":  func(s ...string) []string { return s },
}

func fmtDuration(d time.Duration) string {
	switch {
	case d <= 0:
		return "0s"
	case d < time.Millisecond:
		return fmt.Sprintf("%dµs", d.Microseconds())
	case d < time.Second:
		return fmt.Sprintf("%.1fms", float64(d.Microseconds())/1000)
	case d < time.Minute:
		return fmt.Sprintf("%.1fs", d.Seconds())
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	}
	return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
}

// parsePages parses each page template with the layout.
func parsePages() (map[string]*template.Template, error) {
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return nil, err
	}
	base, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html")
	if err != nil {
		return nil, fmt.Errorf("console: layout: %w", err)
	}
	pages := map[string]*template.Template{}
	for _, n := range names {
		name := strings.TrimSuffix(path.Base(n), ".html")
		if name == "layout" {
			continue
		}
		t, err := template.Must(base.Clone()).ParseFS(templateFS, n)
		if err != nil {
			return nil, fmt.Errorf("console: template %s: %w", n, err)
		}
		pages[name] = t
	}
	return pages, nil
}

// render writes a full page for a signed-in request.
func (c *Console) render(w http.ResponseWriter, r *http.Request, name, title, nav string, data any) {
	c.renderStatus(w, r, http.StatusOK, name, title, nav, data)
}

// renderBody writes a page with status 200.
func (c *Console) renderBody(w http.ResponseWriter, r *http.Request, name, title, nav string, data any) {
	c.renderStatus(w, r, http.StatusOK, name, title, nav, data)
}

// renderStatus executes a page into a buffer first, so that a template error never sends
// half a page.
func (c *Console) renderStatus(w http.ResponseWriter, r *http.Request, status int, name, title, nav string, data any) {
	t, ok := c.pages[name]
	if !ok {
		http.Error(w, "console: no page "+name, http.StatusInternalServerError)
		return
	}
	v := view{Title: title, Nav: nav, S: current(r), Path: r.URL.RequestURI(), Data: data}
	if v.S != nil {
		v.CSRF = v.S.CSRF
	}
	v.Flash, v.FlashErr = c.takeFlash(w, r)
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "layout.html", v); err != nil {
		c.log.ErrorContext(r.Context(), "console render", "page", name, "err", err)
		http.Error(w, "The page could not be rendered.", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}
