package upstream_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/chaperone-dev/chaperone/internal/upstream"
)

// stdioServer is the path of the testdata/stdioserver binary built by TestMain.
var stdioServer string

// secretEnv is set in the test process and must not reach children.
const secretEnv = "CHAPERONE_TEST_SECRET"

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "upstream-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	stdioServer = filepath.Join(dir, "stdioserver")
	out, err := exec.Command("go", "build", "-o", stdioServer, "./testdata/stdioserver").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build testdata/stdioserver: %v\n%s", err, out)
		return 1
	}
	// Set here rather than with t.Setenv, which would rule out t.Parallel.
	os.Setenv(secretEnv, "hunter2")
	return m.Run()
}

// start runs c until the test ends, and checks that Run returns nil.
func start(t testing.TB, c *upstream.Client) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run() = %v, want nil", err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("Run did not return within 10s of cancellation")
		}
	})
}

// newClient builds a client for cfg and starts it.
func newClient(t testing.TB, cfg upstream.Config) *upstream.Client {
	t.Helper()
	c, err := upstream.New(cfg)
	if err != nil {
		t.Fatalf("New(%+v): %v", cfg, err)
	}
	start(t, c)
	return c
}

// waitReady waits up to 10s for c to connect.
func waitReady(t testing.TB, c *upstream.Client) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.WaitReady(ctx); err != nil {
		t.Fatalf("WaitReady(%s): %v", c.Name(), err)
	}
}

// waitFor polls cond until it holds or 10s have passed.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		<-tick.C
	}
}

// receive waits up to 10s for a value on ch.
func receive[T any](t testing.TB, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

// signal returns an OnToolsChanged func that sends on the returned channel.
func signal() (func(), chan struct{}) {
	ch := make(chan struct{}, 16)
	return func() {
		select {
		case ch <- struct{}{}:
		default:
		}
	}, ch
}

// recorder is a slog.Handler that keeps every record.
type recorder struct {
	mu      sync.Mutex
	records []slog.Record
}

func (r *recorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *recorder) WithAttrs([]slog.Attr) slog.Handler       { return r }
func (r *recorder) WithGroup(string) slog.Handler            { return r }
func (r *recorder) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.records = append(r.records, rec.Clone())
	return nil
}

// find returns the records with message msg.
func (r *recorder) find(msg string) []slog.Record {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.DeleteFunc(slices.Clone(r.records), func(rec slog.Record) bool { return rec.Message != msg })
}

// attr returns the value of rec's attribute key.
func attr(rec slog.Record, key string) slog.Value {
	var v slog.Value
	rec.Attrs(func(a slog.Attr) bool {
		if a.Key == key {
			v = a.Value
			return false
		}
		return true
	})
	return v
}

// isUnavailable reports whether err wraps upstream.ErrUnavailable.
func isUnavailable(err error) bool { return errors.Is(err, upstream.ErrUnavailable) }
