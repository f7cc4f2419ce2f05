package interop_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/chaperone-dev/chaperone/internal/argcheck"
	"github.com/chaperone-dev/chaperone/internal/audit"
	"github.com/chaperone-dev/chaperone/internal/chaperonetest"
	"github.com/chaperone-dev/chaperone/internal/config"
	"github.com/chaperone-dev/chaperone/internal/store/sqlite"
)

// Environment variables that steer the test; see the package documentation.
const (
	requireEnv  = "CHAPERONE_REQUIRE_INTEROP"
	npmCacheEnv = "CHAPERONE_NPM_CACHE"
)

// Bounds on the external commands.
const (
	installTimeout = 5 * time.Minute
	clientTimeout  = 60 * time.Second
	probeTimeout   = 10 * time.Second
)

// minNodeMajor is the oldest Node.js the pinned packages were tried with. The Inspector
// declares node >= 22.19 but its CLI works on 20.
const minNodeMajor = 20

// completeMarker is written into an installation directory once npm install succeeded.
const completeMarker = ".chaperone-interop-complete"

const agentID = "interop-agent"

// policyYAML is the gateway's policy. Reads are allowed; get-sum is a read, but a deny rule
// with a condition refuses large operands; write_file is denied outright (so it is also
// hidden), and create_directory needs a person's approval.
const policyYAML = `
rules:
  - id: reads
    description: The interop agent may use every read tool.
    match:
      agents: [interop-agent]
      classes: [read]
    effect: allow
  - id: no-big-sums
    description: Sums of large numbers are refused.
    match:
      tools: [get-sum]
    when: args.a > 1000.0 || args.b > 1000.0
    effect: deny
  - id: directories-need-a-person
    match:
      tools: [create_directory]
    effect: approve
  - id: no-file-writes
    match:
      tools: [write_file]
    effect: deny
`

// wantTools is what every client must see in tools/list: the declared tools that policy
// may allow. write_file is declared but denied outright; get-env, edit_file, read_file and
// the rest of the upstreams' tools are not declared.
var wantTools = []string{"create_directory", "echo", "get-sum", "list_directory", "read_text_file"}

const helloText = "hello from the chaperone interop test\n"

// TestInterop runs the official MCP reference servers behind a gateway and drives the
// gateway with the official TypeScript SDK client and the MCP Inspector's CLI.
func TestInterop(t *testing.T) {
	pkgs := installPackages(t)
	root := fsRoot(t)

	g := chaperonetest.Start(t, chaperonetest.Options{
		Upstreams: []config.Upstream{
			{Name: "fs", Command: pkgs.node, Args: []string{pkgs.filesystemServer, root}},
			{Name: "everything", Command: pkgs.node, Args: []string{pkgs.everythingServer, "stdio"}},
		},
		Tools: []config.Tool{
			{Upstream: "fs", Name: "read_text_file", Class: "read", Arguments: argcheck.Overlay{"path": {PathPrefixes: []string{root}}}},
			{Upstream: "fs", Name: "list_directory", Class: "read", Arguments: argcheck.Overlay{"path": {PathPrefixes: []string{root}}}},
			{Upstream: "fs", Name: "write_file", Class: "write", Arguments: argcheck.Overlay{"path": {PathPrefixes: []string{root}}}},
			{Upstream: "fs", Name: "create_directory", Class: "write", Arguments: argcheck.Overlay{"path": {PathPrefixes: []string{root}}}},
			{Upstream: "everything", Name: "echo", Class: "read", Arguments: argcheck.Overlay{"message": {MaxLength: ptr(200)}}},
			{Upstream: "everything", Name: "get-sum", Class: "read"},
		},
		Policy: policyYAML,
		Agents: []string{agentID},
	})
	token := g.Agents[agentID].Token
	var seen auditExpectations

	t.Run("clients", func(t *testing.T) {
		t.Run("typescript-sdk", func(t *testing.T) {
			t.Parallel()
			testSDKClient(t, pkgs, g.URL, token, root, &seen)
		})
		t.Run("inspector-cli", func(t *testing.T) {
			t.Parallel()
			testInspector(t, pkgs, g.URL, token, root, &seen)
		})
	})

	t.Run("refused calls left no trace upstream", func(t *testing.T) {
		for _, name := range []string{"new.txt", "newdir"} {
			if _, err := os.Lstat(filepath.Join(root, name)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("Lstat(%s) = %v, want not exist: a refused call reached the filesystem server", name, err)
			}
		}
	})

	// Stop the gateway and read the evidence offline, as an auditor would.
	dbPath := g.Config.Store.SQLite
	g.Stop(t)
	checkAudit(t, dbPath, &seen)
}

// callCase is one tools/call and what the client must get back.
type callCase struct {
	name string
	tool string
	args any
	// wantText is the upstream's whole text content for a call that runs; wantContains,
	// if set, replaces it with substrings the text must contain.
	wantText     string
	wantContains []string
	// wantReason is the refusal code, "" for a call that runs; wantRules the rules it names.
	wantReason string
	wantRules  []string
}

func sdkCases(root string) []callCase {
	hello := filepath.Join(root, "hello.txt")
	return []callCase{
		{name: "read file", tool: "read_text_file", args: map[string]any{"path": hello}, wantText: helloText},
		{name: "list directory", tool: "list_directory", args: map[string]any{"path": root}, wantContains: []string{"[FILE] hello.txt", "[DIR] notes"}},
		{name: "echo", tool: "echo", args: map[string]any{"message": "interop says hi"}, wantText: "Echo: interop says hi"},
		{name: "small sum allowed", tool: "get-sum", args: map[string]any{"a": 2, "b": 3}, wantText: "The sum of 2 and 3 is 5."},

		{name: "large sum denied by condition", tool: "get-sum", args: map[string]any{"a": 5000, "b": 1}, wantReason: "denied_by_policy", wantRules: []string{"no-big-sums"}},
		{name: "write denied", tool: "write_file", args: map[string]any{"path": filepath.Join(root, "new.txt"), "content": "x"}, wantReason: "denied_by_policy", wantRules: []string{"no-file-writes"}},
		{name: "mkdir needs approval", tool: "create_directory", args: map[string]any{"path": filepath.Join(root, "newdir")}, wantReason: "approval_required", wantRules: []string{"directories-need-a-person"}},

		{name: "undeclared get-env", tool: "get-env", args: map[string]any{}, wantReason: "unknown_tool"},
		{name: "undeclared edit_file", tool: "edit_file", args: map[string]any{"path": hello, "edits": []any{}}, wantReason: "unknown_tool"},
		{name: "undeclared read_file", tool: "read_file", args: map[string]any{"path": hello}, wantReason: "unknown_tool"},
		{name: "no such tool", tool: "no_such_tool", args: map[string]any{}, wantReason: "unknown_tool"},

		{name: "path escape with dot-dot", tool: "read_text_file", args: map[string]any{"path": root + "/../../etc/passwd"}, wantReason: "invalid_arguments"},
		{name: "path outside root", tool: "read_text_file", args: map[string]any{"path": "/etc/passwd"}, wantReason: "invalid_arguments"},
		{name: "relative path", tool: "list_directory", args: map[string]any{"path": "notes"}, wantReason: "invalid_arguments"},
		{name: "wrong type string", tool: "echo", args: map[string]any{"message": 42}, wantReason: "invalid_arguments"},
		{name: "wrong type number", tool: "get-sum", args: map[string]any{"a": "2", "b": 3}, wantReason: "invalid_arguments"},
		{name: "missing required", tool: "echo", args: map[string]any{}, wantReason: "invalid_arguments"},
		{name: "unknown argument", tool: "read_text_file", args: map[string]any{"path": hello, "mode": "w"}, wantReason: "invalid_arguments"},
		{name: "overlay max_length", tool: "echo", args: map[string]any{"message": strings.Repeat("a", 201)}, wantReason: "invalid_arguments"},
	}
}

func testSDKClient(t *testing.T, pkgs *npmPackages, url, token, root string, seen *auditExpectations) {
	script := pkgs.script(t, "sdk-client.mjs")
	cases := sdkCases(root)
	type request struct {
		Method    string `json:"method"`
		Name      string `json:"name,omitempty"`
		Arguments any    `json:"arguments,omitempty"`
	}
	reqs := []request{{Method: "tools/list"}}
	for _, c := range cases {
		reqs = append(reqs, request{Method: "tools/call", Name: c.tool, Arguments: c.args})
	}
	callsJSON, err := json.Marshal(reqs)
	if err != nil {
		t.Fatal(err)
	}
	run := pkgs.run(t, []string{"CHAPERONE_TOKEN=" + token}, script, url, string(callsJSON))
	if run.exit != 0 {
		t.Fatalf("sdk-client.mjs exited %d\nstderr:\n%s", run.exit, run.stderr)
	}
	type line struct {
		Method string          `json:"method"`
		Name   string          `json:"name"`
		Result json.RawMessage `json:"result"`
		Error  *struct {
			Code    any    `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	var lines []line
	sc := bufio.NewScanner(bytes.NewReader(run.stdout))
	sc.Buffer(nil, 4<<20)
	for sc.Scan() {
		var l line
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("sdk-client.mjs printed a line that is not JSON: %v\n%s", err, sc.Bytes())
		}
		lines = append(lines, l)
	}
	// One line for initialize, one per request.
	if len(lines) != 1+len(reqs) {
		t.Fatalf("sdk-client.mjs printed %d lines, want %d\nstdout:\n%s\nstderr:\n%s", len(lines), 1+len(reqs), run.stdout, run.stderr)
	}
	for _, l := range lines[1:] {
		if l.Error != nil {
			t.Errorf("%s %s: JSON-RPC error %v: %s", l.Method, l.Name, l.Error.Code, l.Error.Message)
		}
	}

	t.Run("initialize", func(t *testing.T) {
		var init struct {
			ProtocolVersion string `json:"protocolVersion"`
			ServerInfo      struct {
				Name string `json:"name"`
			} `json:"serverInfo"`
		}
		if err := json.Unmarshal(lines[0].Result, &init); err != nil {
			t.Fatalf("initialize line %s: %v", lines[0].Result, err)
		}
		t.Logf("TypeScript SDK negotiated protocol %s with %q", init.ProtocolVersion, init.ServerInfo.Name)
		if init.ServerInfo.Name != "chaperone" {
			t.Errorf("serverInfo.name = %q, want chaperone", init.ServerInfo.Name)
		}
	})
	t.Run("tools/list", func(t *testing.T) {
		checkToolList(t, lines[1].Result)
	})
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			l := lines[2+i]
			if l.Error != nil {
				t.Fatalf("tools/call %s: JSON-RPC error instead of a result", c.tool)
			}
			checkCall(t, c, l.Result, seen)
		})
	}

	t.Run("wrong token", func(t *testing.T) {
		run := pkgs.run(t, []string{"CHAPERONE_TOKEN=chp_not_a_valid_token"}, script, url, `[{"method":"tools/list"}]`)
		if run.exit == 0 {
			t.Errorf("sdk-client.mjs with a wrong token exited 0, want a failed connection\nstdout:\n%s", run.stdout)
		}
		if !bytes.Contains(run.stderr, []byte("401")) {
			t.Errorf("sdk-client.mjs with a wrong token: stderr does not mention HTTP 401:\n%s", run.stderr)
		}
		seen.authFailed()
	})
}

// inspectorEras are the protocol eras the Inspector is run in: "legacy" negotiates with
// initialize (2025-11-25 and older), "modern" pins the sessionless 2026-07-28 revision.
var inspectorEras = []string{"legacy", "modern"}

func testInspector(t *testing.T, pkgs *npmPackages, url, token, root string, seen *auditExpectations) {
	// The Inspector keeps client settings and secrets under HOME; give it its own.
	home := t.TempDir()
	// The token goes in a session config file rather than --header, so it is not in argv.
	cfg, err := json.Marshal(map[string]any{"mcpServers": map[string]any{"chaperone": map[string]any{
		"type": "streamable-http", "url": url, "headers": map[string]string{"Authorization": "Bearer " + token},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(t.TempDir(), "inspector.json")
	if err := os.WriteFile(cfgPath, cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	env := []string{
		"HOME=" + home,
		"MCP_INSPECTOR_SECRET_STORE=memory",
		"MCP_CLIENT_CONFIG_PATH=" + filepath.Join(home, "client.json"),
	}
	hello := filepath.Join(root, "hello.txt")
	cases := []callCase{
		{name: "read file", tool: "read_text_file", args: map[string]any{"path": hello}, wantText: helloText},
		{name: "echo", tool: "echo", args: map[string]any{"message": "interop says hi"}, wantText: "Echo: interop says hi"},
		{name: "large sum denied by condition", tool: "get-sum", args: map[string]any{"a": 5000, "b": 1}, wantReason: "denied_by_policy", wantRules: []string{"no-big-sums"}},
		{name: "path escape with dot-dot", tool: "read_text_file", args: map[string]any{"path": root + "/../../etc/passwd"}, wantReason: "invalid_arguments"},
		{name: "wrong type", tool: "echo", args: map[string]any{"message": 42}, wantReason: "invalid_arguments"},
		{name: "mkdir needs approval", tool: "create_directory", args: map[string]any{"path": filepath.Join(root, "newdir")}, wantReason: "approval_required", wantRules: []string{"directories-need-a-person"}},
	}

	for _, era := range inspectorEras {
		t.Run(era, func(t *testing.T) {
			t.Parallel()
			inspect := func(t *testing.T, args ...string) cmdResult {
				t.Helper()
				base := []string{pkgs.inspectorCLI, "--config", cfgPath, "--server", "chaperone",
					"--protocol-era", era, "--stored-auth-only", "--format", "json"}
				return pkgs.run(t, env, append(base, args...)...)
			}
			t.Run("tools/list", func(t *testing.T) {
				t.Parallel()
				r := inspect(t, "--method", "tools/list")
				if r.exit != 0 {
					t.Errorf("inspector tools/list exited %d\nstderr:\n%s", r.exit, r.stderr)
				}
				checkToolList(t, inspectorResult(t, r))
			})
			for _, c := range cases {
				t.Run(c.name, func(t *testing.T) {
					t.Parallel()
					args, err := json.Marshal(c.args)
					if err != nil {
						t.Fatal(err)
					}
					r := inspect(t, "--method", "tools/call", "--tool-name", c.tool, "--tool-args-json", string(args))
					// The Inspector exits 0 for a result and 5 for a result with isError set.
					wantExit := 0
					if c.wantReason != "" {
						wantExit = 5
					}
					if r.exit != wantExit {
						t.Errorf("inspector tools/call %s exited %d, want %d\nstderr:\n%s", c.tool, r.exit, wantExit, r.stderr)
					}
					checkCall(t, c, inspectorResult(t, r), seen)
				})
			}
			// The Inspector looks a tool up in tools/list before calling it, so it refuses
			// an undeclared tool itself: to a real client the tool does not exist.
			t.Run("undeclared tool is not found", func(t *testing.T) {
				t.Parallel()
				r := inspect(t, "--method", "tools/call", "--tool-name", "get-env", "--tool-args-json", "{}")
				if r.exit == 0 {
					t.Errorf("inspector tools/call get-env exited 0, want a failure\nstdout:\n%s", r.stdout)
				}
				if !bytes.Contains(r.stderr, []byte(`"tool_not_found"`)) {
					t.Errorf("inspector tools/call get-env: stderr lacks the tool_not_found error:\n%s", r.stderr)
				}
			})
		})
	}
}

// inspectorResult decodes the Inspector's --format json output: {"result": ...} on stdout.
func inspectorResult(t *testing.T, r cmdResult) json.RawMessage {
	t.Helper()
	var out struct {
		Result json.RawMessage `json:"result"`
	}
	if err := json.Unmarshal(r.stdout, &out); err != nil || out.Result == nil {
		t.Fatalf("inspector exited %d without a JSON result on stdout (%v)\nstdout:\n%s\nstderr:\n%s", r.exit, err, r.stdout, r.stderr)
	}
	return out.Result
}

// checkToolList checks a ListToolsResult: exactly wantTools, with the upstreams' schemas.
func checkToolList(t *testing.T, raw json.RawMessage) {
	t.Helper()
	var res struct {
		Tools []struct {
			Name        string `json:"name"`
			Description string `json:"description"`
			InputSchema struct {
				Type       string         `json:"type"`
				Properties map[string]any `json:"properties"`
				Required   []string       `json:"required"`
			} `json:"inputSchema"`
		} `json:"tools"`
	}
	if err := json.Unmarshal(raw, &res); err != nil {
		t.Fatalf("tools/list result %s: %v", raw, err)
	}
	var names []string
	for _, tl := range res.Tools {
		names = append(names, tl.Name)
		if tl.Description == "" || tl.InputSchema.Type != "object" {
			t.Errorf("tool %s: description %q, inputSchema.type %q; want the upstream's definition", tl.Name, tl.Description, tl.InputSchema.Type)
		}
		if tl.Name == "echo" && (tl.InputSchema.Properties["message"] == nil || !slices.Equal(tl.InputSchema.Required, []string{"message"})) {
			t.Errorf("echo inputSchema = %+v, want the upstream's (required message)", tl.InputSchema)
		}
	}
	slices.Sort(names)
	if diff := cmp.Diff(wantTools, names); diff != "" {
		t.Errorf("tools/list names mismatch (-want +got):\n%s", diff)
	}
}

// toolResult is a CallToolResult as it crosses the wire.
type toolResult struct {
	Content []struct {
		Type string `json:"type"`
		Text string `json:"text"`
	} `json:"content"`
	IsError bool `json:"isError"`
	Meta    struct {
		Refusal *struct {
			Reason    string   `json:"reason"`
			Rules     []string `json:"rules"`
			RequestID string   `json:"request_id"`
		} `json:"dev.chaperone/refusal"`
	} `json:"_meta"`
}

// checkCall checks one CallToolResult against c and records what the audit log must hold.
func checkCall(t *testing.T, c callCase, raw json.RawMessage, seen *auditExpectations) {
	t.Helper()
	var res toolResult
	if err := json.Unmarshal(raw, &res); err != nil {
		t.Fatalf("tools/call %s: result %s: %v", c.tool, raw, err)
	}
	var text string
	if len(res.Content) > 0 {
		text = res.Content[0].Text
	}
	if c.wantReason == "" {
		if res.IsError || res.Meta.Refusal != nil {
			t.Fatalf("tools/call %s(%v) = error %q, want a result", c.tool, c.args, text)
		}
		seen.allowed(c.tool)
		if len(res.Content) != 1 || res.Content[0].Type != "text" {
			t.Fatalf("tools/call %s(%v) content = %+v, want one text item", c.tool, c.args, res.Content)
		}
		if c.wantContains == nil && text != c.wantText {
			t.Errorf("tools/call %s(%v) text = %q, want %q", c.tool, c.args, text, c.wantText)
		}
		for _, s := range c.wantContains {
			if !strings.Contains(text, s) {
				t.Errorf("tools/call %s(%v) text = %q, want it to contain %q", c.tool, c.args, text, s)
			}
		}
		return
	}
	r := res.Meta.Refusal
	if !res.IsError || r == nil {
		t.Fatalf("tools/call %s(%v) = %s, want a refusal %s", c.tool, c.args, raw, c.wantReason)
	}
	if r.Reason != c.wantReason {
		t.Errorf("tools/call %s(%v) refusal reason = %q, want %q (text %q)", c.tool, c.args, r.Reason, c.wantReason, text)
	}
	if prefix := "Refused by Chaperone (" + c.wantReason + "): "; !strings.HasPrefix(text, prefix) || len(text) == len(prefix) {
		t.Errorf("tools/call %s(%v) refusal text = %q, want a sentence after %q", c.tool, c.args, text, prefix)
	}
	if c.wantRules != nil && !slices.Equal(r.Rules, c.wantRules) {
		t.Errorf("tools/call %s(%v) refusal rules = %q, want %q", c.tool, c.args, r.Rules, c.wantRules)
	}
	if r.RequestID == "" {
		t.Errorf("tools/call %s(%v) refusal has no request_id", c.tool, c.args)
	}
	seen.refused(r.RequestID, c.tool, r.Reason)
}

// auditExpectations collects, from both clients, what the audit log must show.
type auditExpectations struct {
	// mu guards the fields below.
	mu          sync.Mutex
	allowedN    map[string]int // tool -> calls that ran
	refusals    map[string]refusalSeen
	authFailedN int
}

type refusalSeen struct{ tool, reason string }

func (a *auditExpectations) allowed(tool string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.allowedN == nil {
		a.allowedN = map[string]int{}
	}
	a.allowedN[tool]++
}

func (a *auditExpectations) refused(requestID, tool, reason string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.refusals == nil {
		a.refusals = map[string]refusalSeen{}
	}
	a.refusals[requestID] = refusalSeen{tool, reason}
}

func (a *auditExpectations) authFailed() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.authFailedN++
}

// checkAudit reads the stopped gateway's store and checks it against what the clients saw.
func checkAudit(t *testing.T, dbPath string, seen *auditExpectations) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	db, err := sqlite.OpenReadOnly(ctx, dbPath)
	if err != nil {
		t.Fatalf("sqlite.OpenReadOnly(%s): %v", dbPath, err)
	}
	defer db.Close()

	rep, err := audit.Verify(ctx, db)
	if err != nil {
		t.Fatalf("audit.Verify: %v", err)
	}
	if rep.Broken != nil {
		t.Errorf("audit.Verify: chain broken at event %d: %s", rep.Broken.Seq, rep.Broken.Problem)
	}
	if rep.Unfinished != 0 {
		t.Errorf("audit.Verify: %d call intents without outcome: %v", rep.Unfinished, rep.UnfinishedRequests)
	}
	evs, err := db.ScanEvents(ctx, 0, 100_000)
	if err != nil {
		t.Fatalf("ScanEvents: %v", err)
	}
	if int64(len(evs)) != rep.Events {
		t.Errorf("audit.Verify checked %d events, the store holds %d", rep.Events, len(evs))
	}

	seen.mu.Lock()
	defer seen.mu.Unlock()
	outcomes := map[string]int{}
	intents, authFailed := 0, 0
	pinned := map[string]bool{}
	refusedByID := map[string]audit.Event{}
	for _, e := range evs {
		switch e.Kind {
		case audit.KindCallIntent:
			intents++
		case audit.KindCallOutcome:
			outcomes[e.Tool]++
			if e.Agent != agentID || e.ResultError {
				t.Errorf("event %d: outcome of %s by agent %q, result_error %v; want a successful call by %s", e.Seq, e.Tool, e.Agent, e.ResultError, agentID)
			}
		case audit.KindCallRefused:
			refusedByID[e.RequestID] = e
		case audit.KindAuthFailed:
			authFailed++
		case audit.KindToolPinned:
			pinned[e.Tool] = true
		}
		// Argument values and results are never logged, only sizes and hashes.
		record, _ := e.MarshalRecord()
		for _, secret := range []string{"interop says hi", "hello from the chaperone", "/etc/passwd"} {
			if bytes.Contains(record, []byte(secret)) {
				t.Errorf("event %d (%s) holds an argument or result value %q: %s", e.Seq, e.Kind, secret, record)
			}
		}
	}
	if diff := cmp.Diff(seen.allowedN, outcomes); diff != "" {
		t.Errorf("call.outcome events by tool differ from the calls that ran (-calls +audit):\n%s", diff)
	}
	if n := total(outcomes); intents != n {
		t.Errorf("%d call.intent events, want %d (one per call that ran)", intents, n)
	}
	for id, want := range seen.refusals {
		e, ok := refusedByID[id]
		switch {
		case !ok:
			t.Errorf("refusal %s (%s, %s) has no call.refused event", id, want.tool, want.reason)
		case e.Tool != want.tool || e.Reason != want.reason || e.Agent != agentID || e.Decision == "":
			t.Errorf("event %d for refusal %s: tool %q reason %q agent %q decision %q; want tool %q reason %q agent %q",
				e.Seq, id, e.Tool, e.Reason, e.Agent, e.Decision, want.tool, want.reason, agentID)
		}
	}
	if len(refusedByID) != len(seen.refusals) {
		t.Errorf("%d call.refused events, want %d (one per refusal a client saw)", len(refusedByID), len(seen.refusals))
	}
	if authFailed < seen.authFailedN {
		t.Errorf("%d auth.failed events, want at least %d", authFailed, seen.authFailedN)
	}
	for _, tool := range []string{"read_text_file", "list_directory", "write_file", "create_directory", "echo", "get-sum"} {
		if !pinned[tool] {
			t.Errorf("no tool.pinned event for declared tool %s (pinned: %v)", tool, pinned)
		}
	}
	for _, tool := range []string{"get-env", "edit_file", "read_file"} {
		if pinned[tool] {
			t.Errorf("undeclared tool %s was pinned", tool)
		}
	}
}

func total(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

func ptr[T any](v T) *T { return &v }

// fsRoot makes the filesystem server's root directory: hello.txt and notes/todo.txt. The
// path has its symlinks resolved, as the server resolves its allowed directories.
func fsRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	root = filepath.Join(root, "root")
	if err := os.MkdirAll(filepath.Join(root, "notes"), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, text := range map[string]string{"hello.txt": helloText, "notes/todo.txt": "write the interop test\n"} {
		if err := os.WriteFile(filepath.Join(root, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// npmPackages is a complete installation of testdata/package.json.
type npmPackages struct {
	node string // the node binary, absolute
	dir  string // the installation: package.json and node_modules
	// Entry points, absolute.
	filesystemServer, everythingServer, inspectorCLI string
}

// unavailable ends the test when the npm packages cannot be used: a skip, or with
// CHAPERONE_REQUIRE_INTEROP=1 a failure.
func unavailable(t *testing.T, format string, args ...any) {
	t.Helper()
	why := fmt.Sprintf(format, args...)
	if os.Getenv(requireEnv) == "1" {
		t.Fatalf("interop test cannot run, and %s=1 requires it: %s", requireEnv, why)
	}
	t.Skipf("skipping interop test: %s (set %s=1 to make this a failure)", why, requireEnv)
}

// installPackages returns the installation of testdata/package.json, installing it first
// if no complete one exists. Concurrent test processes may both install; each installs into
// a fresh directory and renames it into place, and the loser uses the winner's.
func installPackages(t *testing.T) *npmPackages {
	t.Helper()
	if testing.Short() && os.Getenv(requireEnv) != "1" {
		t.Skipf("skipping interop test in -short mode (set %s=1 to run it)", requireEnv)
	}
	if runtime.GOOS == "windows" {
		// path_prefixes overlays take slash-separated absolute paths, which t.TempDir is not.
		t.Skip("skipping interop test on Windows")
	}
	node, err := exec.LookPath("node")
	if err != nil {
		unavailable(t, "node is not on PATH")
	}
	if node, err = filepath.Abs(node); err != nil {
		t.Fatal(err)
	}
	npm, err := exec.LookPath("npm")
	if err != nil {
		unavailable(t, "npm is not on PATH")
	}
	if err := checkNode(node); err != nil {
		unavailable(t, "%v", err)
	}
	pkgJSON, err := os.ReadFile(filepath.Join("testdata", "package.json"))
	if err != nil {
		t.Fatal(err)
	}
	lock, err := os.ReadFile(filepath.Join("testdata", "package-lock.json"))
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	h.Write(pkgJSON)
	h.Write([]byte{0})
	h.Write(lock)
	key := hex.EncodeToString(h.Sum(nil))

	base := os.Getenv(npmCacheEnv)
	if base == "" {
		ucd, err := os.UserCacheDir()
		if err != nil {
			unavailable(t, "no cache directory for the npm packages (%v); set %s", err, npmCacheEnv)
		}
		base = filepath.Join(ucd, "chaperone")
	}
	dir, err := filepath.Abs(filepath.Join(base, "interop-"+key[:16]))
	if err != nil {
		t.Fatal(err)
	}
	if !installed(dir, key) {
		start := time.Now()
		if err := npmInstall(t.Context(), npm, dir, key, pkgJSON, lock); err != nil {
			unavailable(t, "install the pinned npm packages into %s: %v", dir, err)
		}
		t.Logf("installed the pinned npm packages into %s in %s", dir, time.Since(start).Round(time.Second))
	}
	p := &npmPackages{node: node, dir: dir}
	mods := filepath.Join(dir, "node_modules", "@modelcontextprotocol")
	for _, e := range []struct {
		dst      *string
		pkg, bin string
		sub      []string // relative to the bin's directory
	}{
		{&p.filesystemServer, "server-filesystem", "mcp-server-filesystem", nil},
		{&p.everythingServer, "server-everything", "mcp-server-everything", nil},
		// The Inspector's launcher ("mcp-inspector --cli") imports ../../cli/build/index.js.
		{&p.inspectorCLI, "inspector", "mcp-inspector", []string{"..", "..", "cli", "build", "index.js"}},
	} {
		entry, err := binEntry(filepath.Join(mods, e.pkg), e.bin)
		if err != nil {
			unavailable(t, "installation %s is unusable (remove it to reinstall): %v", dir, err)
		}
		if e.sub != nil {
			entry = filepath.Join(append([]string{filepath.Dir(entry)}, e.sub...)...)
		}
		if _, err := os.Stat(entry); err != nil {
			unavailable(t, "installation %s is unusable (remove it to reinstall): %v", dir, err)
		}
		*e.dst = entry
	}
	return p
}

// checkNode checks that node runs and is new enough.
func checkNode(node string) error {
	ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, node, "--version").Output()
	if err != nil {
		return fmt.Errorf("node --version: %v", err)
	}
	v := strings.TrimSpace(string(out))
	major, _, _ := strings.Cut(strings.TrimPrefix(v, "v"), ".")
	if n, err := strconv.Atoi(major); err != nil || n < minNodeMajor {
		return fmt.Errorf("node %s is too old: need %d or newer", v, minNodeMajor)
	}
	return nil
}

func installed(dir, key string) bool {
	b, err := os.ReadFile(filepath.Join(dir, completeMarker))
	return err == nil && string(b) == key
}

// npmInstall installs package.json and its lock into dir.
func npmInstall(ctx context.Context, npm, dir, key string, pkgJSON, lock []byte) error {
	ctx, cancel := context.WithTimeout(ctx, installTimeout)
	defer cancel()
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dir), filepath.Base(dir)+".tmp-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp) // nothing left to remove once renamed
	if err := os.WriteFile(filepath.Join(tmp, "package.json"), pkgJSON, 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(tmp, "package-lock.json"), lock, 0o644); err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, npm, "install", "--no-audit", "--no-fund", "--ignore-scripts=false")
	cmd.Dir = tmp
	cmd.Env = append(os.Environ(), "npm_config_update_notifier=false")
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		return fmt.Errorf("npm install did not finish within %s: %s", installTimeout, tail(out))
	}
	if err != nil {
		return fmt.Errorf("npm install: %v: %s", err, tail(out))
	}
	if err := os.WriteFile(filepath.Join(tmp, completeMarker), []byte(key), 0o644); err != nil {
		return err
	}
	if err := os.Rename(tmp, dir); err != nil {
		if installed(dir, key) {
			return nil // another test process finished first
		}
		// A directory without the marker is an installation that never completed.
		if err := os.RemoveAll(dir); err != nil {
			return err
		}
		return os.Rename(tmp, dir)
	}
	return nil
}

// binEntry returns the file a package's package.json names for a "bin" command.
func binEntry(pkgDir, name string) (string, error) {
	b, err := os.ReadFile(filepath.Join(pkgDir, "package.json"))
	if err != nil {
		return "", err
	}
	var pj struct {
		Name string          `json:"name"`
		Bin  json.RawMessage `json:"bin"`
	}
	if err := json.Unmarshal(b, &pj); err != nil {
		return "", fmt.Errorf("%s/package.json: %v", pkgDir, err)
	}
	var rel string
	var one string
	bins := map[string]string{}
	switch {
	case json.Unmarshal(pj.Bin, &one) == nil:
		rel = one // "bin": "path" names the command after the package
	case json.Unmarshal(pj.Bin, &bins) == nil:
		rel = bins[name]
	}
	if rel == "" {
		return "", fmt.Errorf("%s/package.json: no bin %q", pkgDir, name)
	}
	return filepath.Join(pkgDir, filepath.FromSlash(rel)), nil
}

// script copies testdata/<name> into the installation so that Node resolves its imports from
// the installation's node_modules, and returns its path. The copy's name carries a hash of
// its content, and it is renamed into place, so concurrent runs cannot see a partial file.
func (p *npmPackages) script(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	ext := filepath.Ext(name)
	dst := filepath.Join(p.dir, strings.TrimSuffix(name, ext)+"-"+hex.EncodeToString(sum[:6])+ext)
	if cur, err := os.ReadFile(dst); err == nil && bytes.Equal(cur, b) {
		return dst
	}
	f, err := os.CreateTemp(p.dir, name+".tmp-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(b); err != nil {
		f.Close()
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(f.Name(), dst); err != nil {
		t.Fatal(err)
	}
	return dst
}

// cmdResult is what a finished node command left.
type cmdResult struct {
	exit           int
	stdout, stderr []byte
}

// run runs node with args and extra environment entries, within clientTimeout.
func (p *npmPackages) run(t *testing.T, env []string, args ...string) cmdResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), clientTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, p.node, args...)
	cmd.Dir = p.dir
	cmd.Env = append(os.Environ(), env...)
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	script := filepath.Base(args[0])
	if ctx.Err() != nil {
		t.Fatalf("node %s did not finish within %s\nstdout:\n%s\nstderr:\n%s", script, clientTimeout, stdout.Bytes(), stderr.Bytes())
	}
	var exitErr *exec.ExitError
	if err != nil && !errors.As(err, &exitErr) {
		t.Fatalf("node %s: %v", script, err)
	}
	t.Logf("node %s: exit %d after %s", script, cmd.ProcessState.ExitCode(), time.Since(start).Round(time.Millisecond))
	return cmdResult{exit: cmd.ProcessState.ExitCode(), stdout: stdout.Bytes(), stderr: stderr.Bytes()}
}

// tail returns the end of a command's output, enough to see why it failed.
func tail(out []byte) string {
	const n = 4000
	if len(out) > n {
		out = out[len(out)-n:]
	}
	return string(bytes.TrimSpace(out))
}
