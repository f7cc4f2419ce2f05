package cli

import (
	"bufio"
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestReadmeQuickstart follows the README as a newcomer would: its first commands run the
// demo and the tests; it builds the binary from this checkout, starts the demo gateway as
// the README's `serve --demo` line does (on free ports, in a fresh data directory), plays
// the demo scenario against it twice — a second telling must find the gateway as usable as
// the first — and stops it with an interrupt, which must end it cleanly.
func TestReadmeQuickstart(t *testing.T) {
	t.Parallel()
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, _ := strings.Cut(string(readme), "```sh\n")
	first, _, _ := strings.Cut(rest, "```")
	for _, want := range []string{"go run ./cmd/chaperone demo", "make test"} {
		if !strings.Contains(first, want) {
			t.Errorf("the README's first commands lack %q:\n%s", want, first)
		}
	}
	if !strings.Contains(string(readme), "go run ./cmd/chaperone serve --demo") {
		t.Error("the README does not say how to run the demo gateway")
	}

	dir := t.TempDir()
	bin := filepath.Join(dir, "chaperone")
	build := exec.Command("go", "build", "-o", bin, "./cmd/chaperone")
	build.Dir = "../.."
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	data := filepath.Join(dir, "chaperone-data")
	mcpAddr, adminAddr := freeAddr(t), freeAddr(t)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	serve := exec.CommandContext(ctx, bin, "serve", "--demo", "--data-dir", data, "--listen", mcpAddr, "--admin-listen", adminAddr)
	var serveErr bytes.Buffer
	serve.Stderr = &serveErr
	out, err := serve.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := serve.Start(); err != nil {
		t.Fatal(err)
	}
	running := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(out)
		ok := false
		for sc.Scan() {
			if strings.Contains(sc.Text(), "Chaperone demo gateway is running.") && !ok {
				ok = true
				running <- true
			}
		}
		if !ok {
			running <- false
		}
	}()
	select {
	case ok := <-running:
		if !ok {
			t.Fatalf("serve --demo ended before it was running:\n%s", serveErr.String())
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("serve --demo did not start within 60s:\n%s", serveErr.String())
	}

	for i := range 2 {
		demo := exec.CommandContext(ctx, bin, "demo", "--gateway", "http://"+mcpAddr+"/mcp", "--admin-url", "http://"+adminAddr,
			"--data-dir", data, "--color", "never")
		story, err := demo.CombinedOutput()
		if err != nil {
			t.Fatalf("telling %d: chaperone demo: %v\n%s", i+1, err, story)
		}
		for _, want := range []string{"✘ refused denied_by_policy", "why: recipient_iban GB33…5555 first appeared in the result of read_inbox()",
			"✔ allowed TXN-", "✘ refused killed", "events, chain intact"} {
			if !strings.Contains(string(story), want) {
				t.Errorf("telling %d lacks %q:\n%s", i+1, want, story)
			}
		}
	}

	if err := serve.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- serve.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("serve --demo after an interrupt: %v\n%s", err, serveErr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("serve --demo did not stop within 30s of an interrupt")
	}
}

// freeAddr returns a loopback address no one listens on now.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}
