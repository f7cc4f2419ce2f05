package cli

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os/user"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/chaperone-dev/chaperone/internal/api"
	"github.com/chaperone-dev/chaperone/internal/contain"
)

// defaultBy is who acts when --by is not given: the operating-system user.
func defaultBy() string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return u.Username
	}
	return ""
}

// killCmd pulls (or, with lift, lifts) a kill switch.
func killCmd(lift bool) func(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	name := "kill"
	if lift {
		name = "unkill"
	}
	return func(ctx context.Context, args []string, stdout, stderr io.Writer) error {
		fs := newFlags(name, stderr)
		client := adminFlags(fs)
		reason := fs.String("reason", "", "why (recorded in the audit log); required")
		by := fs.String("by", defaultBy(), "who acts (recorded in the audit log)")
		if err := parse(fs, reorder(fs, args), 1); err != nil {
			return err
		}
		if fs.NArg() != 1 {
			return usageError{fmt.Sprintf("give the scope: chaperone %s all|agent:ID|user:ID|task:ID|tool:NAME|upstream:NAME --reason TEXT", name)}
		}
		if _, err := contain.ParseScope(fs.Arg(0)); err != nil {
			return usageError{err.Error()}
		}
		if strings.TrimSpace(*reason) == "" {
			return usageError{"--reason is required: the audit log records why"}
		}
		if strings.TrimSpace(*by) == "" {
			return usageError{"--by is required: the audit log records who acted"}
		}
		c, err := client()
		if err != nil {
			return err
		}
		body := map[string]string{"scope": fs.Arg(0), "by": *by, "reason": *reason}
		if lift {
			var k contain.Kill
			if err := c.do(ctx, http.MethodPost, "/v1/kills/lift", body, &k); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "kill switch on %s lifted (it was engaged %s by %s)\n", k.Scope, k.EngagedAt.UTC().Format(time.RFC3339), k.By)
			fmt.Fprintln(stdout, "tokens and approvals issued before the kill stay void: agents must get new ones")
			return nil
		}
		var res api.KillResult
		if err := c.do(ctx, http.MethodPost, "/v1/kills", body, &res); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "kill switch on %s engaged: %d calls in flight cancelled, %d held approvals voided, contained in %s\n",
			res.Kill.Scope, res.CancelledInFlight, res.VoidedApprovals, time.Duration(res.ContainedMicros)*time.Microsecond)
		if res.StillRunning > 0 {
			fmt.Fprintf(stdout, "warning: %d cancelled calls had not ended when the command returned\n", res.StillRunning)
		}
		return nil
	}
}

func killsList(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("kills", stderr)
	client := adminFlags(fs)
	all := fs.Bool("all", false, "also show kill switches lifted since")
	if err := parse(fs, reorder(fs, args), 0); err != nil {
		return err
	}
	c, err := client()
	if err != nil {
		return err
	}
	path := "/v1/kills"
	if *all {
		path += "?all=1"
	}
	var ks []contain.Kill
	if err := c.do(ctx, http.MethodGet, path, nil, &ks); err != nil {
		return err
	}
	if len(ks) == 0 && !*all {
		fmt.Fprintln(stdout, "no kill switch is engaged")
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SCOPE\tENGAGED\tBY\tREASON\tLIFTED\tLIFTED BY")
	for _, k := range ks {
		lifted, liftedBy := "-", "-"
		if !k.Engaged() {
			lifted, liftedBy = k.LiftedAt.UTC().Format(time.RFC3339), k.LiftedBy
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", k.Scope, k.EngagedAt.UTC().Format(time.RFC3339), k.By, k.Reason, lifted, liftedBy)
	}
	return tw.Flush()
}

func breakerList(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("breaker list", stderr)
	client := adminFlags(fs)
	if err := parse(fs, reorder(fs, args), 0); err != nil {
		return err
	}
	c, err := client()
	if err != nil {
		return err
	}
	var bs []contain.BreakerStatus
	if err := c.do(ctx, http.MethodGet, "/v1/breakers", nil, &bs); err != nil {
		return err
	}
	if len(bs) == 0 {
		fmt.Fprintln(stdout, "every circuit breaker is closed")
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "AGENT\tSTATE\tDEGRADE\tSINCE\tSIGNAL\tDETAIL")
	for _, b := range bs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", b.Agent, b.State, b.Degrade, b.Since.UTC().Format(time.RFC3339), dash(string(b.Signal)), dash(b.Detail))
	}
	return tw.Flush()
}

func breakerShow(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var b contain.BreakerStatus
	if err := getByID(ctx, "breaker show", "give the agent's id: chaperone breaker show AGENT", args, stderr,
		func(id string) string { return "/v1/breakers/" + url.PathEscape(id) }, &b); err != nil {
		return err
	}
	printBreaker(stdout, b)
	return nil
}

// getByID runs a read-only admin command that takes one id: it gets path(id) into out.
func getByID(ctx context.Context, name, usage string, args []string, stderr io.Writer, path func(id string) string, out any) error {
	fs := newFlags(name, stderr)
	client := adminFlags(fs)
	if err := parse(fs, reorder(fs, args), 1); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usageError{usage}
	}
	c, err := client()
	if err != nil {
		return err
	}
	return c.do(ctx, http.MethodGet, path(fs.Arg(0)), nil, out)
}

func printBreaker(w io.Writer, b contain.BreakerStatus) {
	fmt.Fprintf(w, "agent %s: breaker %s", b.Agent, b.State)
	if b.State != contain.BreakerClosed {
		fmt.Fprintf(w, " since %s (%s), degraded to %s", b.Since.UTC().Format(time.RFC3339), dash(string(b.Signal)), b.Degrade)
		if !b.Until.IsZero() {
			fmt.Fprintf(w, " until at least %s", b.Until.UTC().Format(time.RFC3339))
		}
	}
	fmt.Fprintln(w)
	if b.Detail != "" {
		fmt.Fprintf(w, "  %s\n", b.Detail)
	}
	for _, t := range b.Triggers {
		fmt.Fprintf(w, "  %-12s %g of %g within %s\n", t.Signal, t.Total, t.Threshold, t.Window)
	}
}

// breakerSet trips or resets an agent's breaker.
func breakerSet(trip bool) func(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	verb := "reset"
	if trip {
		verb = "trip"
	}
	return func(ctx context.Context, args []string, stdout, stderr io.Writer) error {
		fs := newFlags("breaker "+verb, stderr)
		client := adminFlags(fs)
		reason := fs.String("reason", "", "why (recorded in the audit log); required")
		by := fs.String("by", defaultBy(), "who acts (recorded in the audit log)")
		if err := parse(fs, reorder(fs, args), 1); err != nil {
			return err
		}
		if fs.NArg() != 1 {
			return usageError{fmt.Sprintf("give the agent's id: chaperone breaker %s AGENT --reason TEXT", verb)}
		}
		if strings.TrimSpace(*reason) == "" || strings.TrimSpace(*by) == "" {
			return usageError{"--reason and --by are required: the audit log records who acted and why"}
		}
		c, err := client()
		if err != nil {
			return err
		}
		var b contain.BreakerStatus
		if err := c.do(ctx, http.MethodPost, "/v1/breakers/"+url.PathEscape(fs.Arg(0))+"/"+verb, map[string]string{"by": *by, "reason": *reason}, &b); err != nil {
			return err
		}
		printBreaker(stdout, b)
		return nil
	}
}

func taskBudget(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var b api.Budget
	if err := getByID(ctx, "task budget", "give the task's id: chaperone task budget ID", args, stderr,
		func(id string) string { return "/v1/tasks/" + url.PathEscape(id) + "/budget" }, &b); err != nil {
		return err
	}
	bound := func(v float64) string {
		if v == 0 {
			return "no bound"
		}
		return fmt.Sprintf("%g", v)
	}
	fmt.Fprintf(stdout, "task %s (agent %s)\n", b.Task, b.Agent)
	fmt.Fprintf(stdout, "  steps   %d of %s\n", b.Steps, bound(float64(b.MaxSteps)))
	fmt.Fprintf(stdout, "  spend   %g of %s\n", b.Spend, bound(b.MaxSpend))
	fmt.Fprintf(stdout, "  tokens  %d of %s\n", b.Tokens, bound(float64(b.MaxTokens)))
	return nil
}
