package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"

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
	tokenFile := fs.String("token-file", "", "file whose first line is the bearer token (default: the "+tokenEnv+" environment variable)")
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
	err = bridge.Run(ctx, bridge.Options{
		URL:               *mcpURL,
		Token:             token,
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
	b, fi, err := boundedfile.Read(file, maxTokenFile)
	if err != nil {
		return "", fmt.Errorf("--token-file: %w", err)
	}
	defer clear(b)
	first, _, _ := bytes.Cut(b, []byte("\n"))
	token := strings.TrimSpace(string(first))
	if token == "" {
		return "", fmt.Errorf("--token-file %s: the first line is empty: put the bearer token there", file)
	}
	if perm := fi.Mode().Perm(); runtime.GOOS != "windows" && perm&0o044 != 0 {
		fmt.Fprintf(stderr, "chaperone mcp stdio: warning: token file %s is readable by group or others (mode %04o): chmod 600 it\n", file, perm)
	}
	return token, nil
}
