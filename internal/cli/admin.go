package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/chaperone-dev/chaperone/internal/api"
)

// adminClient talks to a running gateway's admin API.
type adminClient struct {
	url   string
	token string
	http  *http.Client
}

func adminFlags(fs *flag.FlagSet) func() (*adminClient, error) {
	url := fs.String("admin-url", "http://127.0.0.1:8081", "admin API base URL")
	tokenFile := fs.String("token-file", "", "admin token file (default <data-dir>/admin.token)")
	dataDir := fs.String("data-dir", "chaperone-data", "data directory")
	return func() (*adminClient, error) {
		p := *tokenFile
		if p == "" {
			p = filepath.Join(*dataDir, "admin.token")
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("read admin token: %w", err)
		}
		return &adminClient{url: strings.TrimRight(*url, "/"), token: strings.TrimSpace(string(b)), http: &http.Client{Timeout: 30 * time.Second}}, nil
	}
}

// connect parses the flags of an admin command that takes no others and returns the
// client for the running gateway.
func connect(name string, args []string, stderr io.Writer) (*adminClient, error) {
	fs := newFlags(name, stderr)
	client := adminFlags(fs)
	if err := parse(fs, args, 0); err != nil {
		return nil, err
	}
	return client()
}

// do sends a request and decodes a 2xx JSON answer into out; other answers become errors
// carrying the API's message.
func (c *adminClient) do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.url+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("admin API: %w", err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return fmt.Errorf("admin API: %w", err)
	}
	if resp.StatusCode/100 != 2 {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(data, &e) == nil && e.Error != "" {
			return fmt.Errorf("admin API: %s (HTTP %d)", e.Error, resp.StatusCode)
		}
		return fmt.Errorf("admin API: HTTP %d", resp.StatusCode)
	}
	if out != nil {
		return json.Unmarshal(data, out)
	}
	return nil
}

func toolsList(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c, err := connect("tools list", args, stderr)
	if err != nil {
		return err
	}
	var tools []api.Tool
	if err := c.do(ctx, http.MethodGet, "/v1/tools", nil, &tools); err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tUPSTREAM\tENV\tCLASS\tSTATUS\tPINNED\tMANIFEST\tREASON")
	for _, t := range tools {
		manifest := "-"
		if m := t.Manifest; m != nil {
			manifest = m.Signer
			if m.Version != "" {
				manifest += " v" + m.Version
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", t.Name, t.Upstream, dash(t.Environment), t.Class, t.Status,
			shortHash(t.Hash), manifest, t.Reason)
	}
	return tw.Flush()
}

func shortHash(h string) string {
	if len(h) > 19 {
		return h[:19]
	}
	if h == "" {
		return "-"
	}
	return h
}

func policyReload(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c, err := connect("policy reload", args, stderr)
	if err != nil {
		return err
	}
	var out struct {
		PolicyVersion string `json:"policy_version"`
	}
	if err := c.do(ctx, http.MethodPost, "/v1/policy/reload", nil, &out); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "policy in force: %s\n", out.PolicyVersion)
	return nil
}

func policyShadow(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c, err := connect("policy shadow", args, stderr)
	if err != nil {
		return err
	}
	var rep api.ShadowReport
	if err := c.do(ctx, http.MethodGet, "/v1/policy/shadow", nil, &rep); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "policy %s\n", rep.PolicyVersion)
	if len(rep.Rules) == 0 {
		fmt.Fprintln(stdout, "no rules in shadow mode")
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SHADOW RULE\tAPPLIED\tWOULD HAVE CHANGED")
	for _, r := range rep.Rules {
		fmt.Fprintf(tw, "%s\t%d\t%d\n", r.Rule, r.Applied, r.Changed)
	}
	return tw.Flush()
}

// reorder moves flags before positional arguments, so `approve NAME --by x` works with the
// standard flag package, which stops at the first non-flag. A flag takes the next argument
// as its value unless it is written -f=v or is a boolean flag of fs; everything after "--"
// is positional.
func reorder(fs *flag.FlagSet, args []string) []string {
	var flags, pos []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			pos = append(pos, args[i+1:]...)
			break
		}
		if strings.HasPrefix(a, "-") && len(a) > 1 {
			flags = append(flags, a)
			if !strings.Contains(a, "=") && !isBoolFlag(fs, strings.TrimLeft(a, "-")) {
				if i+1 == len(args) {
					// A flag that needs a value ends the line: hand over the flags alone, so
					// the flag package says it needs an argument instead of taking "--" or a
					// positional argument as its value.
					return flags
				}
				flags = append(flags, args[i+1])
				i++
			}
			continue
		}
		pos = append(pos, a)
	}
	if len(pos) > 0 {
		flags = append(flags, "--")
	}
	return append(flags, pos...)
}

// isBoolFlag reports whether fs defines name as a flag that takes no value.
func isBoolFlag(fs *flag.FlagSet, name string) bool {
	f := fs.Lookup(name)
	if f == nil {
		return false
	}
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}
