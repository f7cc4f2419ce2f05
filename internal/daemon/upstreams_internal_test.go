package daemon

import (
	"testing"
	"time"

	"github.com/chaperone-dev/chaperone/internal/config"
)

func TestSameUpstreams(t *testing.T) {
	base := config.Upstream{Name: "u", URL: "https://x.example.com/mcp", CallTimeout: config.Duration(time.Second)}
	with := func(f func(*config.Upstream)) []config.Upstream {
		u := base
		f(&u)
		return []config.Upstream{u}
	}
	for _, tc := range []struct {
		name string
		a, b []config.Upstream
		want bool
	}{
		{"same", []config.Upstream{base}, []config.Upstream{base}, true},
		{"empty and absent maps", with(func(u *config.Upstream) { u.Headers = map[string]string{} }), []config.Upstream{base}, true},
		{"none and empty list", nil, []config.Upstream{}, true},
		{"header value", with(func(u *config.Upstream) { u.Headers = map[string]string{"A": "1"} }), with(func(u *config.Upstream) { u.Headers = map[string]string{"A": "2"} }), false},
		{"timeout", with(func(u *config.Upstream) { u.CallTimeout = config.Duration(2 * time.Second) }), []config.Upstream{base}, false},
		{"environment", with(func(u *config.Upstream) { u.Environment = "prod" }), []config.Upstream{base}, false},
		{"one more", []config.Upstream{base, base}, []config.Upstream{base}, false},
	} {
		if got := sameUpstreams(tc.a, tc.b); got != tc.want {
			t.Errorf("%s: sameUpstreams = %v, want %v", tc.name, got, tc.want)
		}
	}
}
