package main

import (
	"bufio"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/rogpeppe/go-internal/testscript"

	"github.com/chaperone-dev/chaperone/internal/chaperonetest"
	"github.com/chaperone-dev/chaperone/internal/identity"
	"github.com/chaperone-dev/chaperone/internal/store/sqlite"
)

// TestMain lets the test binary stand in for the chaperone binary: with CHAPERONE_RUN_MAIN=1
// it runs the command line and exits.
// testscript.Main also puts a "chaperone" command, the same binary, on the scripts' PATH.
func TestMain(m *testing.M) {
	if os.Getenv("CHAPERONE_RUN_MAIN") == "1" {
		main()
		return
	}
	testscript.Main(m, map[string]func(){"chaperone": main})
}

// TestScripts runs cmd/chaperone/testdata/script/*.txtar: the command line's behaviour,
// output and exit statuses.
func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{Dir: filepath.Join("testdata", "script")})
}

// chaperone runs the binary (this test binary standing in) with args.
func chaperone(ctx context.Context, dir string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, os.Args[0], args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CHAPERONE_RUN_MAIN=1")
	return cmd
}

// TestServeDemo runs `chaperone serve --demo` as a process, as a newcomer would, reads the
// banner, drives it with the official Go SDK client, then uses the operator commands on it
// and stops it with SIGINT.
func TestServeDemo(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	srv := chaperone(ctx, dir, "serve", "--demo", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0")
	out, err := srv.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	srv.Stderr = io.Discard
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer srv.Process.Kill()

	banner := map[string]string{}
	sc := bufio.NewScanner(out)
	fields := regexp.MustCompile(`^\s+(MCP endpoint|Bearer token|Admin API)\s+(\S+)`)
	for sc.Scan() && len(banner) < 3 {
		if m := fields.FindStringSubmatch(sc.Text()); m != nil {
			banner[m[1]] = m[2]
		}
	}
	go io.Copy(io.Discard, out)
	if len(banner) < 3 {
		t.Fatalf("banner incomplete: %v", banner)
	}

	cs := chaperonetest.ConnectURL(t, banner["MCP endpoint"], banner["Bearer token"], "")
	for _, tc := range []struct {
		tool    string
		args    map[string]any
		refused bool
	}{
		// Before the session has read untrusted, private content, internal mail goes out —
		// unless it carries a credential (the secret sensor and rule no-secrets-out).
		{"send_email", map[string]any{"to": "colleague@example.com", "subject": "key", "body": "use AKIAZ7Q3XW5N4KD2JH6P"}, true},
		{"send_email", map[string]any{"to": "colleague@example.com", "subject": "hi", "body": "lunch?"}, false},
		{"read_inbox", map[string]any{}, false},
		{"read_file", map[string]any{"path": "/srv/demo/bills/march.txt"}, false},
		{"read_file", map[string]any{"path": "/srv/demo/../../etc/passwd"}, true},
		// After it, mail to an address nobody trusted named needs a person (the Rule of Two).
		{"send_email", map[string]any{"to": "colleague@example.com", "subject": "hi", "body": "lunch?"}, true},
		{"send_email", map[string]any{"to": "someone@elsewhere.net", "subject": "hi", "body": "x"}, true},
		{"transfer_money", map[string]any{"recipient_iban": "DE02120300000000202051", "amount": 84.2, "currency": "EUR"}, true},
		{"delete_record", map[string]any{"table": "customers", "id": "1"}, true},
	} {
		res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: tc.tool, Arguments: tc.args})
		if err != nil {
			t.Fatalf("CallTool(%s): %v", tc.tool, err)
		}
		if res.IsError != tc.refused {
			t.Errorf("CallTool(%s, %v): isError %v, want %v", tc.tool, tc.args, res.IsError, tc.refused)
		}
	}
	cs.Close()

	run := func(wantCode int, args ...string) string {
		t.Helper()
		cmd := chaperone(ctx, dir, args...)
		b, err := cmd.CombinedOutput()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatalf("chaperone %v: %v", args, err)
		}
		if code != wantCode {
			t.Fatalf("chaperone %v: exit %d, want %d\n%s", args, code, wantCode, b)
		}
		return string(b)
	}
	tail := run(0, "audit", "tail", "-n", "50")
	for _, want := range []string{"denied_by_policy", "no-secrets-out", "approval_pending", "approval.requested", "invalid_arguments", "call.intent", "call.outcome", "tool.pinned"} {
		if !strings.Contains(tail, want) {
			t.Errorf("audit tail lacks %q:\n%s", want, tail)
		}
	}
	if strings.Contains(tail, "elsewhere.net") || strings.Contains(tail, "AKIAZ7Q3XW5N4KD2JH6P") {
		t.Errorf("audit tail shows an argument value:\n%s", tail)
	}
	if got := run(0, "audit", "verify"); !strings.Contains(got, "chain intact") {
		t.Errorf("audit verify: %s", got)
	}
	list := run(0, "tools", "list", "--admin-url", banner["Admin API"])
	if !strings.Contains(list, "transfer_money") || !strings.Contains(list, "active") {
		t.Errorf("tools list:\n%s", list)
	}
	if got := run(1, "tools", "approve", "no_such_tool", "--by", "tester", "--admin-url", banner["Admin API"]); !strings.Contains(got, "no declared tool") {
		t.Errorf("approve unknown tool: %s", got)
	}
	if got := run(0, "tools", "approve", "read_file", "--by", "tester", "--admin-url", banner["Admin API"]); !strings.Contains(got, "approved read_file") {
		t.Errorf("approve: %s", got)
	}

	if err := srv.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if err := srv.Wait(); err != nil {
		t.Errorf("serve after SIGINT: %v (want a clean exit)", err)
	}

	// Edit one event behind the gateway's back: verify must name it and fail.
	db, err := sqlite.Open(ctx, filepath.Join(dir, "chaperone-data", "chaperone.db"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.SQL().ExecContext(ctx, `UPDATE audit_events SET event = json_set(event, '$.tool', 'read_inbox') WHERE seq = 5`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if got := run(1, "audit", "verify"); !strings.Contains(got, "BROKEN at event 5") {
		t.Errorf("audit verify after tampering: %s", got)
	}
}

// TestServeConfig runs `chaperone serve --config FILE` as a process with a real
// configuration, and reloads it with SIGHUP: a new tool and the rule allowing it arrive
// together.
func TestServeConfig(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	tok, sha := identity.NewToken()
	writeFile := func(name, content string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	config := func(tools string) string {
		return `data_dir: data
server: {listen: "127.0.0.1:0"}
admin: {listen: "off"}
upstreams:
  - {name: demo, builtin: demo}
tools:
` + tools + `agents:
  - {id: ops-bot, owner: ops@example.com, token_sha256: ` + sha + `}
policy: {paths: [policy.yaml], watch_interval: 0s}
`
	}
	writeFile("chaperone.yaml", config("  - {upstream: demo, name: read_inbox, class: read}\n"))
	writeFile("policy.yaml", "rules:\n  - id: reads\n    match: {classes: [read]}\n    effect: allow\n")

	srv := chaperone(ctx, dir, "serve", "--config", "chaperone.yaml")
	out, err := srv.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	srv.Stderr = io.Discard
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer srv.Process.Kill()
	sc := bufio.NewScanner(out)
	var url string
	for sc.Scan() {
		if u, ok := strings.CutPrefix(sc.Text(), "chaperone "); ok {
			if i := strings.Index(u, "serving MCP at "); i >= 0 {
				url = strings.TrimSpace(u[i+len("serving MCP at "):])
				break
			}
		}
	}
	go io.Copy(io.Discard, out)
	if url == "" {
		t.Fatal("no 'serving MCP at' line")
	}
	cs := chaperonetest.ConnectURL(t, url, tok, "")
	if got := chaperonetest.ToolNames(t, cs); !slices.Equal(got, []string{"read_inbox"}) {
		t.Fatalf("tools = %v, want [read_inbox]", got)
	}

	writeFile("chaperone.yaml", config("  - {upstream: demo, name: read_inbox, class: read}\n  - {upstream: demo, name: create_ticket, class: write}\n"))
	writeFile("policy.yaml", "rules:\n  - id: reads\n    match: {classes: [read]}\n    effect: allow\n  - id: tickets\n    match: {tools: [create_ticket]}\n    effect: allow\n")
	if err := srv.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	chaperonetest.WaitFor(t, 20*time.Second, "create_ticket after SIGHUP", func() bool {
		return slices.Contains(chaperonetest.ToolNames(t, cs), "create_ticket")
	})
	if got := chaperonetest.Refusal(t, chaperonetest.Call(t, cs, "create_ticket", map[string]any{"title": "t", "body": "b"})); got != "" {
		t.Errorf("create_ticket after reload refused: %s", got)
	}
	cs.Close()
	if err := srv.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if err := srv.Wait(); err != nil {
		t.Errorf("serve after SIGINT: %v", err)
	}
}
