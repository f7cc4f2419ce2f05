package cli

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/chaperone-dev/chaperone/internal/api"
)

func approvalsList(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("approvals list", stderr)
	client := adminFlags(fs)
	status := fs.String("status", "pending", "pending, approved, denied, expired, used or all")
	tool := fs.String("tool", "", "only this tool's requests")
	if err := parse(fs, reorder(fs, args), 0); err != nil {
		return err
	}
	c, err := client()
	if err != nil {
		return err
	}
	q := url.Values{"status": {*status}}
	if *tool != "" {
		q.Set("tool", *tool)
	}
	var list []api.Approval
	if err := c.do(ctx, http.MethodGet, "/v1/approvals?"+q.Encode(), nil, &list); err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTATUS\tTOOL\tAGENT\tUSER\tRISK\tAPPROVALS\tEXPIRES")
	for _, a := range list {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%d/%d\t%s\n", a.ID, a.Status, a.Tool, a.Agent, dash(a.User), a.Risk,
			len(a.Approvals), a.Required, a.ExpiresAt.UTC().Format(time.RFC3339))
	}
	return tw.Flush()
}

func approvalsShow(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("approvals show", stderr)
	client := adminFlags(fs)
	if err := parse(fs, reorder(fs, args), 1); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usageError{"give the request's id: chaperone approvals show ID"}
	}
	c, err := client()
	if err != nil {
		return err
	}
	var a api.Approval
	if err := c.do(ctx, http.MethodGet, "/v1/approvals/"+url.PathEscape(fs.Arg(0)), nil, &a); err != nil {
		return err
	}
	printApproval(stdout, a)
	return nil
}

// printApproval writes the preview a person decides on.
func printApproval(w io.Writer, a api.Approval) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	row := func(k, v string) {
		if v != "" {
			fmt.Fprintf(tw, "%s\t%s\n", k, v)
		}
	}
	row("id", a.ID)
	row("status", a.Status)
	row("tool", a.Tool+" (upstream "+a.Upstream+")")
	row("agent", a.Agent)
	row("on behalf of", a.User)
	row("task", a.Task)
	row("agent's reason", a.Reason)
	row("risk", fmt.Sprintf("%d/100: %s", a.Risk, strings.Join(a.RiskFactors, "; ")))
	row("why held", strings.Join(a.Rules, ", "))
	row("information flow", a.Explanation)
	row("undo", a.Undo)
	row("approvals", fmt.Sprintf("%d of %d%s", len(a.Approvals), a.Required, approvers(a.Approvals)))
	if a.Status == "denied" {
		row("declined", fmt.Sprintf("by %s: %s %s", a.DeniedBy, a.DenyCode, a.DenyText))
	}
	row("requested", a.CreatedAt.UTC().Format(time.RFC3339))
	row("expires", a.ExpiresAt.UTC().Format(time.RFC3339))
	tw.Flush()
	var args any
	if json.Unmarshal(a.Arguments, &args) == nil {
		b, _ := json.MarshalIndent(args, "  ", "  ")
		fmt.Fprintf(w, "arguments (secrets redacted):\n  %s\n", b)
	}
}

func approvers(v []api.Verdict) string {
	if len(v) == 0 {
		return ""
	}
	names := make([]string, len(v))
	for i, x := range v {
		names[i] = x.By
	}
	return " (" + strings.Join(names, ", ") + ")"
}

// approvalsDecide returns the approve or deny command.
func approvalsDecide(approve bool) func(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	name := "approvals deny"
	if approve {
		name = "approvals approve"
	}
	return func(ctx context.Context, args []string, stdout, stderr io.Writer) error {
		fs := newFlags(name, stderr)
		client := adminFlags(fs)
		as := fs.String("as", "", "who decides (recorded); required")
		var reason, text *string
		if !approve {
			reason = fs.String("reason", "", "decline reason: one of the configured list (default wrong_recipient, wrong_amount, not_requested, suspicious, other); required")
			text = fs.String("text", "", "free text; required with --reason other")
		}
		if err := parse(fs, reorder(fs, args), 1); err != nil {
			return err
		}
		switch {
		case fs.NArg() != 1:
			return usageError{fmt.Sprintf("give the request's id: chaperone %s ID --as NAME", name)}
		case *as == "":
			return usageError{"--as is required: every decision names the person who made it"}
		case !approve && *reason == "":
			return usageError{"--reason is required"}
		}
		c, err := client()
		if err != nil {
			return err
		}
		body := map[string]string{"by": *as}
		verb := "approve"
		if !approve {
			verb = "deny"
			body["reason"], body["text"] = *reason, *text
		}
		var a api.Approval
		if err := c.do(ctx, http.MethodPost, "/v1/approvals/"+url.PathEscape(fs.Arg(0))+"/"+verb, body, &a); err != nil {
			return err
		}
		switch a.Status {
		case "pending":
			fmt.Fprintf(stdout, "%s: approved by %s; %d of %d approvals, still pending\n", a.ID, *as, len(a.Approvals), a.Required)
		case "approved":
			fmt.Fprintf(stdout, "%s: approved; the agent's call runs when it retries (once)\n", a.ID)
		default:
			fmt.Fprintf(stdout, "%s: %s\n", a.ID, a.Status)
		}
		return nil
	}
}

func approvalsStats(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("approvals stats", stderr)
	client := adminFlags(fs)
	since := fs.Duration("since", 24*time.Hour, "period")
	if err := parse(fs, reorder(fs, args), 0); err != nil {
		return err
	}
	c, err := client()
	if err != nil {
		return err
	}
	var rep api.ApprovalReport
	if err := c.do(ctx, http.MethodGet, "/v1/approvals/stats?since="+url.QueryEscape(since.String()), nil, &rep); err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TOOL\tREQUESTED\tAPPROVED\tDENIED\tEXPIRED\tPENDING\tAPPROVAL RATE\tMEDIAN\tP90")
	for _, s := range rep.Tools {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%.0f%%\t%.0fs\t%.0fs\n", s.Tool, s.Requested, s.Approved, s.Denied, s.Expired, s.Pending,
			100*s.ApprovalRate, s.MedianSeconds, s.P90Seconds)
	}
	tw.Flush()
	for code, n := range rep.DeclineReasons {
		fmt.Fprintf(stdout, "declined as %s: %d\n", code, n)
	}
	return nil
}

// agentAutonomy shows an agent's autonomy level and eligibility, or, with --level, sets it.
func agentAutonomy(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("agent autonomy", stderr)
	client := adminFlags(fs)
	level := fs.Int("level", -1, "set the level, 0 to 3 (raising it needs eligibility, one level at a time, unless --force)")
	by := fs.String("by", "", "who changes it (recorded); required with --level")
	reason := fs.String("reason", "", "why")
	force := fs.Bool("force", false, "raise the level although the agent is not eligible")
	if err := parse(fs, reorder(fs, args), 1); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usageError{"give the agent's id: chaperone agent autonomy ID [--level N --by WHO]"}
	}
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == "level" })
	if set && *by == "" {
		return usageError{"--by is required with --level"}
	}
	c, err := client()
	if err != nil {
		return err
	}
	path := "/v1/agents/" + url.PathEscape(fs.Arg(0)) + "/autonomy"
	var rep api.AutonomyReport
	if set {
		err = c.do(ctx, http.MethodPost, path, map[string]any{"level": *level, "by": *by, "reason": *reason, "force": *force}, &rep)
	} else {
		err = c.do(ctx, http.MethodGet, path, nil, &rep)
	}
	if err != nil {
		return err
	}
	enforced := "enforced"
	if !rep.Enforced {
		enforced = "not enforced (autonomy.enforce is off): a fact for policy only"
	}
	fmt.Fprintf(stdout, "%s: autonomy %d (configured %d), %s\n", rep.Agent, rep.Level, rep.Configured, enforced)
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CRITERION\tWANT\tGOT\tMET")
	for _, cr := range rep.Criteria {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%t\n", cr.Name, cr.Want, cr.Got, cr.Met)
	}
	tw.Flush()
	fmt.Fprintf(stdout, "eligible for the next level: %t\n", rep.Eligible)
	return nil
}
