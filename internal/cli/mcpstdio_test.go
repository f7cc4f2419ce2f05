package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
)

const secretArg = "s3cr3t-token-value"

func noEnv(string) (string, bool) { return "", false }

func TestMCPStdioRefuses(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	blankFirst := filepath.Join(dir, "blank-first")
	for p, content := range map[string]string{empty: "", blankFirst: "\n" + secretArg + "\n"} {
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	const url = "http://127.0.0.1:9/mcp"
	cases := []struct {
		name  string
		args  []string
		usage bool
		want  string
	}{
		{"token as a flag", []string{"--url", url, "--token", secretArg}, true, "flag provided but not defined: -token"},
		{"token as a flag with =", []string{"--url", url, "--token=" + secretArg}, true, "flag provided but not defined: -token"},
		{"token as an argument", []string{"--url", url, secretArg}, true, "takes no arguments"},
		{"no url", []string{"--token-file", empty}, true, "--url is required"},
		{"plain http to another host", []string{"--url", "http://gw.example.com/mcp"}, true, "plain http is allowed only to a loopback host"},
		{"not http", []string{"--url", "file:///etc/passwd"}, true, "must be http or https"},
		{"no token at all", []string{"--url", url}, true, "no token: give --token-file F"},
		{"missing token file", []string{"--url", url, "--token-file", filepath.Join(dir, "nope")}, false, "no such file"},
		{"empty token file", []string{"--url", url, "--token-file", empty}, false, "the first line is empty"},
		{"token not on the first line", []string{"--url", url, "--token-file", blankFirst}, false, "the first line is empty"},
		{"token file is a directory", []string{"--url", url, "--token-file", dir}, false, "not a regular file"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			err := runMCPStdio(t.Context(), c.args, strings.NewReader(""), &stdout, &stderr, noEnv)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("mcp stdio %q = %v, want an error containing %q", c.args, err, c.want)
			}
			var ue usageError
			if errors.As(err, &ue) != c.usage {
				t.Errorf("mcp stdio %q: usage error %v, want %v", c.args, !c.usage, c.usage)
			}
			if strings.Contains(err.Error()+stderr.String(), secretArg) {
				t.Errorf("mcp stdio %q repeats the token: %v\n%s", c.args, err, stderr.String())
			}
			if stdout.Len() != 0 {
				t.Errorf("stdout = %q, want nothing: it is the protocol's", stdout.String())
			}
		})
	}
}

// TestMCPStdioRelays runs the command against a small MCP endpoint on loopback with the
// token from a file or the environment, and checks what the endpoint received.
func TestMCPStdioRelays(t *testing.T) {
	var (
		mu   sync.Mutex
		auth []string
		ua   string
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.WriteHeader(http.StatusMethodNotAllowed)
			return
		}
		mu.Lock()
		auth = append(auth, r.Header.Get("Authorization"))
		ua = r.Header.Get("User-Agent")
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"jsonrpc":"2.0","id":1,"result":{}}`)
	}))
	defer srv.Close()
	dir := t.TempDir()
	file := filepath.Join(dir, "token")
	if err := os.WriteFile(file, []byte("  tok-from-file \nsecond line\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := func(k string) (string, bool) {
		if k == "CHAPERONE_TOKEN" {
			return " tok-from-env\n", true
		}
		return "", false
	}
	run := func(args []string, lookupEnv func(string) (string, bool)) (string, string) {
		t.Helper()
		var stdout, stderr bytes.Buffer
		stdin := strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"ping"}` + "\n")
		if err := runMCPStdio(context.Background(), append([]string{"--url", srv.URL}, args...), stdin, &stdout, &stderr, lookupEnv); err != nil {
			t.Fatalf("mcp stdio %q = %v; stderr:\n%s", args, err, stderr.String())
		}
		if got := stdout.String(); got != `{"jsonrpc":"2.0","id":1,"result":{}}`+"\n" {
			t.Errorf("mcp stdio %q: stdout %q, want the ping's answer", args, got)
		}
		return stdout.String(), stderr.String()
	}

	if _, stderr := run([]string{"--token-file", file}, noEnv); strings.Contains(stderr, "warning") || strings.Contains(stderr, "level=WARN") {
		t.Errorf("stderr with a private token file: %q, want no warning", stderr)
	}
	run(nil, env)
	run([]string{"--token-file", file}, env) // the file wins
	if runtime.GOOS != "windows" {
		if err := os.Chmod(file, 0o644); err != nil {
			t.Fatal(err)
		}
		if _, stderr := run([]string{"--token-file", file}, noEnv); !strings.Contains(stderr, "readable by group or others (mode 0644)") || strings.Contains(stderr, "tok-from-file") {
			t.Errorf("stderr with a world-readable token file: %q, want a warning without the token", stderr)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	want := []string{"Bearer tok-from-file", "Bearer tok-from-env", "Bearer tok-from-file", "Bearer tok-from-file"}
	if runtime.GOOS == "windows" {
		want = want[:3]
	}
	if strings.Join(auth, "|") != strings.Join(want, "|") {
		t.Errorf("Authorization headers %q, want %q", auth, want)
	}
	if !strings.HasPrefix(ua, "chaperone-mcp-stdio/") {
		t.Errorf("User-Agent %q", ua)
	}
}

// TestDocsClientConfigs keeps docs/mcp-clients.md honest: every JSON snippet parses, and
// every one that launches the bridge gives it a command line it accepts (it gets as far as
// reading the token file, which does not exist here).
func TestDocsClientConfigs(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "mcp-clients.md"))
	if err != nil {
		t.Fatal(err)
	}
	blocks := strings.Split(string(doc), "```json\n")[1:]
	if len(blocks) < 5 {
		t.Fatalf("docs/mcp-clients.md has %d JSON snippets, want at least 5", len(blocks))
	}
	launches := 0
	for i, b := range blocks {
		body, _, ok := strings.Cut(b, "```")
		if !ok {
			t.Fatalf("JSON snippet %d is not closed", i)
		}
		var cfg struct {
			MCPServers map[string]struct {
				Command string   `json:"command"`
				Args    []string `json:"args"`
			} `json:"mcpServers"`
			Servers map[string]struct {
				Type    string   `json:"type"`
				Command string   `json:"command"`
				Args    []string `json:"args"`
			} `json:"servers"`
		}
		if err := json.Unmarshal([]byte(body), &cfg); err != nil {
			t.Errorf("JSON snippet %d: %v\n%s", i, err, body)
			continue
		}
		var argvs [][]string
		for _, s := range cfg.MCPServers {
			if s.Command != "" {
				argvs = append(argvs, s.Args)
			}
		}
		for _, s := range cfg.Servers {
			if s.Type == "stdio" {
				argvs = append(argvs, s.Args)
			}
		}
		for _, args := range argvs {
			launches++
			if len(args) < 2 || args[0] != "mcp" || args[1] != "stdio" {
				t.Errorf("JSON snippet %d launches %q, want chaperone mcp stdio", i, args)
				continue
			}
			err := runMCPStdio(t.Context(), args[2:], strings.NewReader(""), io.Discard, io.Discard, noEnv)
			if err == nil || !strings.Contains(err.Error(), "--token-file: ") {
				t.Errorf("JSON snippet %d: mcp stdio %q = %v, want it to reach the token file", i, args[2:], err)
			}
		}
	}
	if launches != 3 {
		t.Errorf("%d snippets launch the bridge, want 3 (Claude Desktop, Cursor, VS Code)", launches)
	}
}

// TestMCPStdioRereadsTheTokenFile: a token file rewritten under a running bridge (a
// refresher rotating short-lived task tokens) is read again before the next request.
func TestMCPStdioRereadsTheTokenFile(t *testing.T) {
	var (
		mu   sync.Mutex
		auth []string
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.WriteHeader(http.StatusMethodNotAllowed)
			return
		}
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		auth = append(auth, r.Header.Get("Authorization"))
		mu.Unlock()
		var m struct {
			ID json.RawMessage `json:"id"`
		}
		json.Unmarshal(body, &m)
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"jsonrpc":"2.0","id":`+string(m.ID)+`,"result":{}}`)
	}))
	defer srv.Close()
	file := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(file, []byte("tok-1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	done := make(chan error, 1)
	var stderr bytes.Buffer
	go func() {
		done <- runMCPStdio(context.Background(), []string{"--url", srv.URL, "--token-file", file}, inR, outW, &stderr, noEnv)
		outW.Close()
	}()
	lines := bufio.NewScanner(outR)
	ping := func(id int) {
		t.Helper()
		fmt.Fprintf(inW, `{"jsonrpc":"2.0","id":%d,"method":"ping"}`+"\n", id)
		if !lines.Scan() {
			t.Fatalf("no answer to ping %d", id)
		}
	}
	ping(1)
	// A new token of another length, so the change shows even within the file system's
	// time resolution.
	if err := os.WriteFile(file, []byte("tok-rotated\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ping(2)
	inW.Close()
	for lines.Scan() {
	}
	if err := <-done; err != nil {
		t.Fatalf("mcp stdio = %v\n%s", err, stderr.String())
	}
	mu.Lock()
	defer mu.Unlock()
	if strings.Join(auth, "|") != "Bearer tok-1|Bearer tok-rotated" {
		t.Errorf("Authorization headers %q, want the rotated token on the second request", auth)
	}
}
