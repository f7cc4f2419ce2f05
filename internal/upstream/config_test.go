package upstream

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

func TestNewValidates(t *testing.T) {
	t.Parallel()
	srv := mcp.NewServer(&mcp.Implementation{Name: "s"}, nil)
	tests := []struct {
		name    string
		cfg     Config
		wantErr []string // substrings of the error; nil means valid
		secret  string   // must not appear in the error
	}{
		{name: "command", cfg: Config{Name: "files", Command: "npx", Args: []string{"-y", "x"}, Env: []string{"A=1", "B="}, Dir: "/tmp"}},
		{name: "url", cfg: Config{Name: "remote", URL: "https://mcp.example.com/mcp", Headers: map[string]string{"Authorization": "Bearer x"}}},
		{name: "server", cfg: Config{Name: "demo.v2_x-1", Server: srv}},
		{name: "no name", cfg: Config{Server: srv}, wantErr: []string{"Name: must be set"}},
		{name: "bad name", cfg: Config{Name: "a b", Server: srv}, wantErr: []string{`Name: "a b"`}},
		{name: "long name", cfg: Config{Name: strings.Repeat("a", 65), Server: srv}, wantErr: []string{"Name: longer than 64"}},
		{name: "none", cfg: Config{Name: "x"}, wantErr: []string{"exactly one must be set, got 0"}},
		{name: "two", cfg: Config{Name: "x", Command: "a", URL: "https://h/"}, wantErr: []string{"exactly one must be set, got 2"}},
		{name: "args without command", cfg: Config{Name: "x", Server: srv, Args: []string{"a"}, Env: []string{"A=1"}, Dir: "/"},
			wantErr: []string{"Args: set without Command", "Env: set without Command", "Dir: set without Command"}},
		{name: "env without equals", cfg: Config{Name: "x", Command: "a", Env: []string{"TOKENhunter2"}}, wantErr: []string{`Env[0]: missing "="`}, secret: "hunter2"},
		{name: "env empty key", cfg: Config{Name: "x", Command: "a", Env: []string{"=hunter2"}}, wantErr: []string{"Env[0]: empty key"}, secret: "hunter2"},
		{name: "url scheme", cfg: Config{Name: "x", URL: "ftp://h/"}, wantErr: []string{`URL: scheme "ftp"`}},
		{name: "url user info", cfg: Config{Name: "x", URL: "https://u:hunter2@h/"}, wantErr: []string{"URL: contains user info"}, secret: "hunter2"},
		{name: "url no host", cfg: Config{Name: "x", URL: "https:///p"}, wantErr: []string{"URL: missing host"}},
		{name: "url unparsable", cfg: Config{Name: "x", URL: "https://h/%zz?k=hunter2"}, wantErr: []string{"URL: not a valid URL"}, secret: "hunter2"},
		{name: "headers without url", cfg: Config{Name: "x", Server: srv, Headers: map[string]string{"A": "b"}}, wantErr: []string{"Headers: set without URL"}},
		{name: "reserved header", cfg: Config{Name: "x", URL: "https://h/", Headers: map[string]string{"mcp-session-id": "hunter2"}}, wantErr: []string{`Headers["mcp-session-id"]: set by the MCP transport`}, secret: "hunter2"},
		{name: "bad header name", cfg: Config{Name: "x", URL: "https://h/", Headers: map[string]string{"Bad Name": "v"}}, wantErr: []string{`invalid header name "Bad Name"`}},
		{name: "header value newline", cfg: Config{Name: "x", URL: "https://h/", Headers: map[string]string{"Authorization": "hunter2\r\nX: y"}}, wantErr: []string{"value contains CR, LF or NUL"}, secret: "hunter2"},
		{name: "negative", cfg: Config{Name: "x", Server: srv, CallTimeout: -1, MaxBackoff: -time.Second}, wantErr: []string{"CallTimeout: negative", "MaxBackoff: negative"}},
		{name: "backoff order", cfg: Config{Name: "x", Server: srv, InitialBackoff: time.Minute, MaxBackoff: time.Second}, wantErr: []string{"InitialBackoff: 1m0s is greater than MaxBackoff 1s"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := New(tt.cfg)
			if tt.wantErr == nil {
				if err != nil || c == nil {
					t.Fatalf("New() = %v, want a client", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("New() = nil error, want %q", tt.wantErr)
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("New() = %q, want it to contain %q", err, w)
				}
			}
			if tt.secret != "" && strings.Contains(err.Error(), tt.secret) {
				t.Errorf("New() = %q, leaks %q", err, tt.secret)
			}
		})
	}
}

func TestDefaults(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name          string
		in            Config
		initial, maxb time.Duration
	}{
		{"zero", Config{}, DefaultInitialBackoff, DefaultMaxBackoff},
		{"small max", Config{MaxBackoff: 100 * time.Millisecond}, 100 * time.Millisecond, 100 * time.Millisecond},
		{"large initial", Config{InitialBackoff: time.Minute}, time.Minute, time.Minute},
		{"both", Config{InitialBackoff: time.Second, MaxBackoff: 2 * time.Second}, time.Second, 2 * time.Second},
	}
	for _, tt := range tests {
		got := tt.in.withDefaults()
		want := Config{CallTimeout: DefaultCallTimeout, ConnectTimeout: DefaultConnectTimeout, InitialBackoff: tt.initial, MaxBackoff: tt.maxb}
		if diff := cmp.Diff(want, got, cmpopts.IgnoreFields(Config{}, "Logger")); diff != "" {
			t.Errorf("%s: withDefaults() (-want +got):\n%s", tt.name, diff)
		}
	}
}

func TestJitter(t *testing.T) {
	t.Parallel()
	for _, d := range []time.Duration{0, 1, 3, time.Millisecond, 30 * time.Second} {
		for _, r := range []float64{0, 0.5, 0.999999} {
			got := jitter(d, r)
			if got < d/2 || got > d {
				t.Errorf("jitter(%v, %v) = %v, want within [%v, %v]", d, r, got, d/2, d)
			}
		}
	}
	if got, want := jitter(time.Second, 0.5), 750*time.Millisecond; got != want {
		t.Errorf("jitter(1s, 0.5) = %v, want %v", got, want)
	}
}

func TestChildEnv(t *testing.T) {
	t.Setenv("PATH", "/bin")
	t.Setenv("HOME", "/home/gw")
	t.Setenv("CHAPERONE_CHILD_ENV_SECRET", "x")
	got := childEnv([]string{"A=1", "PATH=/opt/bin"})
	want := []string{"PATH=/bin", "HOME=/home/gw", "A=1", "PATH=/opt/bin"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("childEnv (-want +got):\n%s", diff)
	}
}

// lines is a slog.Handler collecting the "line" attribute of each record.
type lines struct {
	mu  sync.Mutex
	got []string
}

func (l *lines) Enabled(context.Context, slog.Level) bool { return true }
func (l *lines) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *lines) WithGroup(string) slog.Handler            { return l }
func (l *lines) Handle(_ context.Context, r slog.Record) error {
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "line" {
			l.mu.Lock()
			l.got = append(l.got, a.Value.String())
			l.mu.Unlock()
		}
		return true
	})
	return nil
}

func TestLineLogger(t *testing.T) {
	t.Parallel()
	h := &lines{}
	w := &lineLogger{log: slog.New(h)}
	long := strings.Repeat("y", maxStderrLine+10)
	for _, chunk := range []string{"one\r\ntw", "o\n", long[:500], long[500:] + "\n", "\n", "tail"} {
		if n, err := w.Write([]byte(chunk)); n != len(chunk) || err != nil {
			t.Fatalf("Write(%q) = %d, %v", chunk, n, err)
		}
	}
	w.flush()
	want := []string{"one", "two", long[:maxStderrLine], "", "tail"}
	if diff := cmp.Diff(want, h.got); diff != "" {
		t.Errorf("logged lines (-want +got):\n%s", diff)
	}
}
