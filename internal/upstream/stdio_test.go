package upstream_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/chaperone-dev/chaperone/internal/upstream"
)

func TestStdioToolsAllPages(t *testing.T) {
	t.Parallel()
	c := newClient(t, upstream.Config{Name: "stdio", Command: stdioServer})
	waitReady(t, c)
	tools, err := c.Tools(context.Background())
	if err != nil {
		t.Fatalf("Tools: %v", err)
	}
	var names []string
	for _, tl := range tools {
		names = append(names, tl.Name)
		if want := `{"type":"object","additionalProperties":true}`; string(tl.InputSchema) != want {
			t.Errorf("tool %s: InputSchema = %s, want %s", tl.Name, tl.InputSchema, want)
		}
	}
	slices.Sort(names)
	// The server pages two tools at a time.
	if diff := cmp.Diff([]string{"crash", "echo", "env", "slow", "spawn"}, names); diff != "" {
		t.Errorf("Tools() names (-want +got):\n%s", diff)
	}
}

func TestStdioEcho(t *testing.T) {
	t.Parallel()
	c := newClient(t, upstream.Config{Name: "stdio", Command: stdioServer})
	waitReady(t, c)
	raw, err := c.Call(context.Background(), "echo", json.RawMessage(`{"b": 1, "a": [true]}`))
	if err != nil {
		t.Fatalf("Call(echo): %v", err)
	}
	// Arguments travel verbatim (compacted by the JSON encoder), key order included.
	if got, want := decodeResult(t, raw).text(), `{"b":1,"a":[true]}`; got != want {
		t.Errorf("Call(echo) text = %s, want %s", got, want)
	}
}

func TestStdioEnvIsMinimal(t *testing.T) {
	t.Parallel()
	if os.Getenv(secretEnv) == "" {
		t.Fatalf("%s is not set in the test process", secretEnv)
	}
	c := newClient(t, upstream.Config{Name: "stdio", Command: stdioServer, Env: []string{"CHAPERONE_VISIBLE=yes", "HOME=/nonexistent/home"}})
	waitReady(t, c)
	raw, err := c.Call(context.Background(), "env", nil)
	if err != nil {
		t.Fatalf("Call(env): %v", err)
	}
	var env map[string]string
	if err := json.Unmarshal([]byte(decodeResult(t, raw).text()), &env); err != nil {
		t.Fatalf("env result %s: %v", raw, err)
	}
	want := map[string]string{"CHAPERONE_VISIBLE": "yes", "HOME": "/nonexistent/home"}
	if p, ok := os.LookupEnv("PATH"); ok {
		want["PATH"] = p
	}
	if diff := cmp.Diff(want, env); diff != "" {
		t.Errorf("child environment (-want +got):\n%s", diff)
	}
}

func TestStdioRestartAfterCrash(t *testing.T) {
	t.Parallel()
	const backoff = 200 * time.Millisecond
	onChange, changed := signal()
	c := newClient(t, upstream.Config{
		Name: "stdio", Command: stdioServer, OnToolsChanged: onChange,
		InitialBackoff: backoff, MaxBackoff: time.Second,
	})
	waitReady(t, c)
	receive(t, changed, "OnToolsChanged after the first connect")

	_, err := c.Call(context.Background(), "crash", nil)
	crashed := time.Now()
	if !isUnavailable(err) {
		t.Fatalf("Call(crash) = %v, want ErrUnavailable", err)
	}
	waitFor(t, "Ready() to turn false", func() bool { return !c.Ready() })

	// While down, calls fail at once instead of waiting for the restart.
	begin := time.Now()
	_, err = c.Call(context.Background(), "echo", nil)
	if elapsed := time.Since(begin); !isUnavailable(err) || elapsed > backoff/4 {
		t.Errorf("Call(echo) while down = %v after %v, want ErrUnavailable at once", err, elapsed)
	}
	if _, err := c.Tools(context.Background()); !isUnavailable(err) {
		t.Errorf("Tools() while down = %v, want ErrUnavailable", err)
	}

	receive(t, changed, "OnToolsChanged after the restart")
	if !c.Ready() {
		t.Errorf("Ready() = false after OnToolsChanged for the reconnect")
	}
	if down := time.Since(crashed); down < backoff/2 {
		t.Errorf("restarted %v after the crash, want at least %v (backoff with jitter)", down, backoff/2)
	}
	if _, err := c.Call(context.Background(), "echo", nil); err != nil {
		t.Errorf("Call(echo) after restart: %v", err)
	}
}

func TestStdioMissingCommandRetries(t *testing.T) {
	t.Parallel()
	rec := &recorder{}
	c, err := upstream.New(upstream.Config{
		Name: "missing", Command: "/nonexistent/chaperone-no-such-command",
		InitialBackoff: 5 * time.Millisecond, MaxBackoff: 20 * time.Millisecond, Logger: slog.New(rec),
	})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	waitFor(t, "three failed connection attempts", func() bool { return len(rec.find("upstream connect failed")) >= 3 })
	cancel()
	if err := receive(t, done, "Run to return"); err != nil {
		t.Errorf("Run() = %v, want nil", err)
	}
	if c.Ready() {
		t.Errorf("Ready() = true for a missing command")
	}
	// Delays grow: the third retry waits at least as long as the first.
	fails := rec.find("upstream connect failed")
	first, third := attr(fails[0], "retry_in").Duration(), attr(fails[2], "retry_in").Duration()
	if first < 2*time.Millisecond || third < 10*time.Millisecond || third > 20*time.Millisecond {
		t.Errorf("retry_in = %v then %v, want about 2.5-5ms then 10-20ms", first, third)
	}
}

func TestStdioStderrIsLogged(t *testing.T) {
	t.Parallel()
	rec := &recorder{}
	c := newClient(t, upstream.Config{Name: "stdio", Command: stdioServer, Logger: slog.New(rec)})
	waitReady(t, c)
	var lines []string
	waitFor(t, "two stderr lines", func() bool {
		lines = nil
		for _, r := range rec.find("upstream stderr") {
			lines = append(lines, attr(r, "line").String())
		}
		return len(lines) >= 2
	})
	if lines[0] != "stdioserver: started" {
		t.Errorf("first stderr line = %q, want %q", lines[0], "stdioserver: started")
	}
	if len(lines[1]) != 1024 || strings.Trim(lines[1], "x") != "" {
		t.Errorf("second stderr line has %d bytes, want the 5000-byte line cut to 1024", len(lines[1]))
	}
}

func TestStdioShutdownKillsProcessGroup(t *testing.T) {
	t.Parallel()
	c, err := upstream.New(upstream.Config{Name: "stdio", Command: stdioServer})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	waitReady(t, c)
	raw, err := c.Call(context.Background(), "spawn", nil)
	if err != nil {
		t.Fatalf("Call(spawn): %v", err)
	}
	pid, err := strconv.Atoi(decodeResult(t, raw).text())
	if err != nil {
		t.Fatalf("spawn result %s: %v", raw, err)
	}
	if !alive(pid) {
		t.Fatalf("grandchild %d is not running", pid)
	}
	cancel()
	if err := receive(t, done, "Run to return"); err != nil {
		t.Errorf("Run() = %v, want nil", err)
	}
	waitFor(t, "the grandchild to die", func() bool { return !alive(pid) })
}

// alive reports whether pid is a running (not zombie) process.
func alive(pid int) bool {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if errors.Is(err, os.ErrNotExist) {
		return false
	}
	// Format: pid (comm) state ...
	if i := bytes.LastIndexByte(stat, ')'); i >= 0 && len(stat) > i+2 {
		return stat[i+2] != 'Z' && stat[i+2] != 'X'
	}
	return true
}
