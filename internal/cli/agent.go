package cli

import (
	"context"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/chaperone-dev/chaperone/internal/api"
)

// maxKeyFile bounds a public key file: a PEM Ed25519 key is about 113 bytes.
const maxKeyFile = 4096

func agentRegister(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("agent register", stderr)
	client := adminFlags(fs)
	id := fs.String("id", "", "agent id, [a-z0-9][a-z0-9._-]{0,63}; required")
	owner := fs.String("owner", "", "the accountable person, e.g. an email address; required")
	purpose := fs.String("purpose", "", "what the agent is for")
	env := fs.String("env", "", "environment: dev, test or prod; required")
	caps := fs.String("capabilities", "", `comma-separated tool names the agent may ever be granted, or "*"; required`)
	autonomy := fs.Int("autonomy", 0, "0 to 3: how much the agent may do without a person")
	labels := map[string]string{}
	fs.Func("label", "a label `k=v` (repeatable)", func(s string) error {
		k, v, ok := strings.Cut(s, "=")
		if !ok || k == "" {
			return fmt.Errorf("want k=v, got %q", s)
		}
		if _, dup := labels[k]; dup {
			return fmt.Errorf("label %q given twice", k)
		}
		labels[k] = v
		return nil
	})
	keyFile := fs.String("public-key", "", "`FILE` holding the agent's Ed25519 public key (PEM, or base64 of the raw 32 bytes)")
	withSecret := fs.Bool("secret", false, "generate a client secret for the agent (shown once)")
	by := fs.String("by", "", "who registers the agent (recorded in the audit log)")
	if err := parse(fs, reorder(fs, args), 0); err != nil {
		return err
	}
	switch {
	case *id == "":
		return usageError{"--id is required"}
	case *owner == "":
		return usageError{"--owner is required: every agent has an accountable owner"}
	case *env != "dev" && *env != "test" && *env != "prod":
		return usageError{fmt.Sprintf("--env must be dev, test or prod, got %q", *env)}
	case *caps == "":
		return usageError{`--capabilities is required (use "*" for any tool)`}
	case *autonomy < 0 || *autonomy > 3:
		return usageError{fmt.Sprintf("--autonomy must be between 0 and 3, got %d", *autonomy)}
	case *keyFile == "" && !*withSecret:
		return usageError{"give --public-key FILE or --secret: the agent needs a credential"}
	}
	var capabilities []string
	for c := range strings.SplitSeq(*caps, ",") {
		if c = strings.TrimSpace(c); c != "" {
			capabilities = append(capabilities, c)
		}
	}
	var key string
	if *keyFile != "" {
		b, err := readKeyFile(*keyFile)
		if err != nil {
			return err
		}
		key = b
	}
	c, err := client()
	if err != nil {
		return err
	}
	body := map[string]any{
		"id": *id, "owner": *owner, "purpose": *purpose, "environment": *env,
		"capabilities": capabilities, "autonomy": *autonomy, "labels": labels,
		"public_key": key, "with_secret": *withSecret, "by": *by,
	}
	var out api.RegisteredAgent
	if err := c.do(ctx, http.MethodPost, "/v1/agents", body, &out); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "registered agent %s\n\n", out.ID)
	printAgent(stdout, out.Agent)
	if out.Secret != "" {
		fmt.Fprintf(stdout, "\nclient secret: %s\n\nGive the secret to the agent now: it is shown only this once, and only its hash is kept.\n", out.Secret)
	}
	return nil
}

// readKeyFile reads a public key file, bounded.
func readKeyFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("read public key: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxKeyFile+1))
	if err != nil {
		return "", fmt.Errorf("read public key: %w", err)
	}
	if len(b) > maxKeyFile {
		return "", fmt.Errorf("read public key %s: larger than %d bytes: not a public key", path, maxKeyFile)
	}
	return strings.TrimSpace(string(b)), nil
}

func printAgent(w io.Writer, a api.Agent) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	status := a.Status
	if a.StatusReason != "" {
		status += " (" + a.StatusReason + ")"
	}
	var labels []string
	for _, k := range slices.Sorted(maps.Keys(a.Labels)) {
		labels = append(labels, k+"="+a.Labels[k])
	}
	credentials := []string{}
	if a.HasSecret {
		credentials = append(credentials, "client secret")
	}
	if a.KeyFingerprint != "" {
		credentials = append(credentials, "public key "+a.KeyFingerprint)
	}
	if a.Source == "config" {
		credentials = append(credentials, "static token (configuration)")
	}
	rows := [][2]string{
		{"id", a.ID},
		{"owner", a.Owner},
		{"purpose", a.Purpose},
		{"environment", a.Environment},
		{"capabilities", strings.Join(a.Capabilities, ", ")},
		{"autonomy", fmt.Sprint(a.Autonomy)},
		{"labels", strings.Join(labels, ", ")},
		{"status", status},
		{"source", a.Source},
		{"credentials", strings.Join(credentials, "; ")},
		{"created", formatTime(a.CreatedAt)},
		{"updated", formatTime(a.UpdatedAt)},
	}
	for _, r := range rows {
		v := r[1]
		if v == "" {
			v = "-"
		}
		fmt.Fprintf(tw, "%s:\t%s\n", r[0], v)
	}
	tw.Flush()
}

func formatTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func agentList(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c, err := connect("agent list", args, stderr)
	if err != nil {
		return err
	}
	var agents []api.Agent
	if err := c.do(ctx, http.MethodGet, "/v1/agents", nil, &agents); err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tOWNER\tENV\tSTATUS\tAUTONOMY\tSOURCE\tCAPABILITIES")
	for _, a := range agents {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\n", a.ID, a.Owner, a.Environment, a.Status, a.Autonomy, a.Source, strings.Join(a.Capabilities, ","))
	}
	return tw.Flush()
}

func agentShow(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("agent show", stderr)
	client := adminFlags(fs)
	if err := parse(fs, reorder(fs, args), 1); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usageError{"give the agent's id: chaperone agent show ID"}
	}
	c, err := client()
	if err != nil {
		return err
	}
	var a api.Agent
	if err := c.do(ctx, http.MethodGet, "/v1/agents/"+url.PathEscape(fs.Arg(0)), nil, &a); err != nil {
		return err
	}
	printAgent(stdout, a)
	return nil
}

// agentStatus returns the command that suspends, resumes or revokes an agent.
func agentStatus(verb string) func(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	needReason := verb != "resume"
	return func(ctx context.Context, args []string, stdout, stderr io.Writer) error {
		fs := newFlags("agent "+verb, stderr)
		client := adminFlags(fs)
		reasonHelp := "why (recorded in the audit log)"
		if needReason {
			reasonHelp += "; required"
		}
		reason := fs.String("reason", "", reasonHelp)
		by := fs.String("by", "", "who acts (recorded in the audit log); required")
		if err := parse(fs, reorder(fs, args), 1); err != nil {
			return err
		}
		if fs.NArg() != 1 {
			return usageError{fmt.Sprintf("give the agent's id: chaperone agent %s ID --by WHO", verb)}
		}
		if *by == "" {
			return usageError{"--by is required: the audit log records who acted"}
		}
		if needReason && *reason == "" {
			return usageError{fmt.Sprintf("--reason is required to %s an agent", verb)}
		}
		c, err := client()
		if err != nil {
			return err
		}
		var a api.Agent
		path := "/v1/agents/" + url.PathEscape(fs.Arg(0)) + "/" + verb
		if err := c.do(ctx, http.MethodPost, path, map[string]string{"by": *by, "reason": *reason}, &a); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "agent %s is now %s\n", a.ID, a.Status)
		return nil
	}
}

func taskList(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("task list", stderr)
	client := adminFlags(fs)
	all := fs.Bool("all", false, "also show tasks that ended or expired within the last day")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	c, err := client()
	if err != nil {
		return err
	}
	path := "/v1/tasks"
	if *all {
		path += "?all=1"
	}
	var tasks []api.Task
	if err := c.do(ctx, http.MethodGet, path, nil, &tasks); err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tAGENT\tUSER\tSTATE\tCREATED\tEXPIRES\tTOOLS")
	for _, t := range tasks {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", t.ID, t.Agent, dash(t.User), t.State,
			formatTime(t.CreatedAt), formatTime(t.ExpiresAt), dash(strings.Join(t.Tools, ",")))
	}
	return tw.Flush()
}

func taskEnd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("task end", stderr)
	client := adminFlags(fs)
	by := fs.String("by", "", "who ends the task (recorded in the audit log); required")
	reason := fs.String("reason", "", "why (recorded in the audit log)")
	if err := parse(fs, reorder(fs, args), 1); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usageError{"give the task's id: chaperone task end ID --by WHO"}
	}
	if *by == "" {
		return usageError{"--by is required: the audit log records who acted"}
	}
	c, err := client()
	if err != nil {
		return err
	}
	var t api.Task
	path := "/v1/tasks/" + url.PathEscape(fs.Arg(0)) + "/end"
	if err := c.do(ctx, http.MethodPost, path, map[string]string{"by": *by, "reason": *reason}, &t); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "task %s ended: every token bound to it is void\n", t.ID)
	return nil
}

func keysRotate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c, err := connect("keys rotate", args, stderr)
	if err != nil {
		return err
	}
	var out struct {
		KID string `json:"kid"`
	}
	if err := c.do(ctx, http.MethodPost, "/v1/keys/rotate", nil, &out); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "new signing key: %s\n", out.KID)
	return nil
}

func keysList(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c, err := connect("keys list", args, stderr)
	if err != nil {
		return err
	}
	var keys []api.KeyInfo
	if err := c.do(ctx, http.MethodGet, "/v1/keys", nil, &keys); err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KID\tCREATED\tRETIRED")
	for _, k := range keys {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", k.ID, formatTime(k.Created), dash(formatTime(k.Retired)))
	}
	return tw.Flush()
}
