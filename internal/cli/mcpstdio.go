package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/chaperone-dev/chaperone/internal/boundedfile"
	"github.com/chaperone-dev/chaperone/internal/bridge"
	"github.com/chaperone-dev/chaperone/internal/daemon"
)

// tokenEnv names the environment variable that holds the bridge's bearer token when no
// --token-file is given.
const tokenEnv = "CHAPERONE_TOKEN"

// maxTokenFile bounds the token file read.
const maxTokenFile = 64 << 10

// mcpStdio runs the stdio MCP server that relays to a remote Chaperone gateway
// (`chaperone mcp stdio`), for MCP clients that only launch local servers.
func mcpStdio(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	return runMCPStdio(ctx, args, stdin, stdout, stderr, os.LookupEnv)
}

// runMCPStdio is mcpStdio with the environment given.
func runMCPStdio(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, lookupEnv func(string) (string, bool)) error {
	fs := newFlags("mcp stdio", stderr)
	mcpURL := fs.String("url", "", "the Chaperone gateway's MCP endpoint, such as https://gw.example.com/mcp")
	tokenFile := fs.String("token-file", "", "file whose first line is the bearer token, re-read when it changes (default: the "+tokenEnv+" environment variable)")
	insecure := fs.Bool("insecure-http", false, "allow plain http to a host other than loopback: the token crosses the network in clear")
	// Positional arguments are counted here, not by parse, whose error would quote the
	// extra one: possibly a token typed where it does not belong.
	if err := parse(fs, args, len(args)); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{"mcp stdio takes no arguments: the token comes from --token-file F or " + tokenEnv + ", never from the command line"}
	}
	if *mcpURL == "" {
		return usageError{"--url is required: the gateway's MCP endpoint, such as https://gw.example.com/mcp"}
	}
	if _, err := bridge.ParseURL(*mcpURL, *insecure); err != nil {
		return usageError{"--url: " + err.Error()}
	}
	token, err := bridgeToken(*tokenFile, lookupEnv, stderr)
	if err != nil {
		return err
	}
	var source func() (string, error)
	if *tokenFile != "" {
		source = tokenFileSource(*tokenFile)
	}
	err = bridge.Run(ctx, bridge.Options{
		URL:               *mcpURL,
		Token:             token,
		TokenSource:       source,
		AllowInsecureHTTP: *insecure,
		Stderr:            stderr,
		UserAgent:         "chaperone-mcp-stdio/" + daemon.Version,
	}, stdin, stdout)
	if err != nil && ctx.Err() != nil && errors.Is(err, ctx.Err()) {
		return nil // stopped by a signal: the client is closing the server
	}
	return err
}

// bridgeToken reads the bearer token: the first line of file, or else the environment
// variable. Errors never hold the token.
func bridgeToken(file string, lookupEnv func(string) (string, bool), stderr io.Writer) (string, error) {
	if file == "" {
		if v, ok := lookupEnv(tokenEnv); ok && strings.TrimSpace(v) != "" {
			return strings.TrimSpace(v), nil
		}
		return "", usageError{"no token: give --token-file F (the token on its first line) or set " + tokenEnv}
	}
	token, fi, err := readTokenFile(file)
	if err != nil {
		return "", err
	}
	if perm := fi.Mode().Perm(); runtime.GOOS != "windows" && perm&0o044 != 0 {
		fmt.Fprintf(stderr, "chaperone mcp stdio: warning: token file %s is readable by group or others (mode %04o): chmod 600 it\n", file, perm)
	}
	return token, nil
}

// readTokenFile returns the token on the first line of file. Errors never hold the token.
func readTokenFile(file string) (string, fs.FileInfo, error) {
	b, fi, err := boundedfile.Read(file, maxTokenFile)
	if err != nil {
		return "", nil, fmt.Errorf("--token-file: %w", err)
	}
	defer clear(b)
	first, _, _ := bytes.Cut(b, []byte("\n"))
	token := strings.TrimSpace(string(first))
	if token == "" {
		return "", nil, fmt.Errorf("--token-file %s: the first line is empty: put the bearer token there", file)
	}
	return token, fi, nil
}

// tokenFileSource re-reads the token file whenever it changed (its size or modification
// time), so that a refresher can rotate short-lived task tokens under a running bridge.
func tokenFileSource(file string) func() (string, error) {
	var (
		mu   sync.Mutex
		last string
		mod  time.Time
		size int64
	)
	return func() (string, error) {
		fi, err := os.Stat(file)
		if err != nil {
			return "", fmt.Errorf("--token-file: %w", err)
		}
		mu.Lock()
		defer mu.Unlock()
		if last != "" && fi.ModTime().Equal(mod) && fi.Size() == size {
			return last, nil
		}
		tok, _, err := readTokenFile(file)
		if err != nil {
			return "", err
		}
		last, mod, size = tok, fi.ModTime(), fi.Size()
		return tok, nil
	}
}
