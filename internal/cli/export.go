package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/chaperone-dev/chaperone/internal/audit"
	"github.com/chaperone-dev/chaperone/internal/auditexport"
	"github.com/chaperone-dev/chaperone/internal/progress"
	"github.com/chaperone-dev/chaperone/internal/replay"
	"github.com/chaperone-dev/chaperone/internal/store"
)

// Formats of `chaperone audit export`.
const (
	exportFormatJSONL = "jsonl"
	exportFormatOCSF  = "ocsf"
	exportFormatTrace = "trace"
)

// Bounds of the list flags of `chaperone audit export`.
const (
	exportMaxItems    = 1000 // values of one list flag, all occurrences together
	exportMaxItemSize = 256  // bytes of one value
)

// auditExport writes the audit log out in one of three formats: jsonl (the log's own
// records), ocsf (OCSF events for a SIEM) or trace (the calls, for `chaperone replay`),
// selected by time, agent, task, decision and kind, with secrets redacted. For trace,
// only calls whose arguments were captured (audit.capture) can be exported; the others
// are counted on standard error, and it fails when no call was exported.
func auditExport(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("audit export", stderr)
	dbPath := dataDirFlags(fs)
	format := fs.String("format", "", "output format: jsonl (the audit records), ocsf (OCSF events for a SIEM) or trace (the JSON Lines trace `chaperone replay` reads)")
	outPath := fs.String("out", "", "write to FILE, created 0600 (default standard output)")
	since := fs.Int64("since", 0, "export only events recorded after the event with seq SEQ")
	from := fs.String("from", "", "export only events at or after this time: RFC 3339 (2026-03-01T09:00:00Z), a date (2026-03-01) or a duration before now (24h, 7d)")
	to := fs.String("to", "", "export only events before this time (same forms as --from)")
	var agents, tasks, decisions, kinds exportList
	fs.Var(&agents, "agent", "export only events of this agent (repeat the flag or separate with commas for several)")
	fs.Var(&tasks, "task", "export only events of this task (repeatable, comma-separated)")
	fs.Var(&decisions, "decision", "export only events with this decision: allow, deny, approve, refused, ... (repeatable, comma-separated)")
	fs.Var(&kinds, "kind", "export only events of this kind, or kinds with a prefix: call.refused, agent.* (repeatable, comma-separated)")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	switch *format {
	case exportFormatJSONL, exportFormatOCSF, exportFormatTrace:
	default:
		return usageError{fmt.Sprintf("--format must be jsonl, ocsf or trace, got %q", *format)}
	}
	if *since < 0 {
		return usageError{fmt.Sprintf("--since must not be negative, got %d", *since)}
	}
	f, err := exportFilter(time.Now(), *since, *from, *to, agents, tasks, decisions, kinds)
	if err != nil {
		return err
	}
	db, err := openReadOnly(ctx, dbPath())
	if err != nil {
		return err
	}
	defer db.Close()

	out, err := openOutput(stdout, *outPath, *format)
	if err != nil {
		return err
	}
	bar := exportProgress(ctx, db, *since, *outPath == "" && progress.Terminal(stdout), stderr)
	defer bar.Stop()
	if *format == exportFormatTrace {
		return exportTrace(ctx, db, out, f, bar, stderr)
	}
	write := auditexport.WriteJSONL
	if *format == exportFormatOCSF {
		write = auditexport.WriteOCSF
	}
	if bar.Enabled() {
		f.Progress = func(read, written int) {
			bar.Note(fmt.Sprintf("%d written", written))
			bar.Set(int64(read))
		}
	}
	st, err := write(ctx, db, out.w, f)
	if err != nil {
		out.abort()
		return err
	}
	bar.Done()
	if err := out.commit(); err != nil {
		return err
	}
	fmt.Fprintln(stderr, exportSummary(*format, st))
	return nil
}

// exportProgress starts the line that shows, on a terminal, the events an export has
// read of those after --since, and how many it wrote. It stays off when the export is
// written to the terminal itself (toScreen): the events scrolling by show how far it
// got, and a redrawn line would garble them. CHAPERONE_PROGRESS=always overrides that.
func exportProgress(ctx context.Context, db store.Store, since int64, toScreen bool, stderr io.Writer) *progress.Bar {
	opts := progress.Options{Label: "exporting events", Unit: "events", Getenv: os.Getenv}
	if toScreen {
		opts.Mode = progress.Never
	}
	if !progress.Wanted(stderr, opts) {
		return nil
	}
	// The total is what the log holds after --since; without it the line counts only.
	if head, ok, err := db.LastEvent(ctx); err == nil && ok {
		opts.Total = head.Seq - since
	}
	return progress.New(stderr, opts)
}

// exportFilter builds the filter of the command line's selection flags, or a usage error
// naming the flag and the value that is wrong.
func exportFilter(now time.Time, since int64, from, to string, agents, tasks, decisions, kinds []string) (auditexport.Filter, error) {
	f := auditexport.Filter{After: since, Agents: agents, Tasks: tasks, Decisions: decisions, Kinds: kinds}
	var err error
	if from != "" {
		if f.From, err = auditexport.ParseTime(from, now); err != nil {
			return f, usageError{fmt.Sprintf("--from: %v", err)}
		}
	}
	if to != "" {
		if f.To, err = auditexport.ParseTime(to, now); err != nil {
			return f, usageError{fmt.Sprintf("--to: %v", err)}
		}
	}
	if !f.From.IsZero() && !f.To.IsZero() && !f.From.Before(f.To) {
		return f, usageError{fmt.Sprintf("--from %q (%s) is not before --to %q (%s): the range selects nothing",
			from, f.From.Format(time.RFC3339), to, f.To.Format(time.RFC3339))}
	}
	for _, k := range kinds {
		if i := strings.IndexByte(k, '*'); i >= 0 && (i != len(k)-1 || !strings.HasSuffix(k, ".*") || len(k) < 3) {
			return f, usageError{fmt.Sprintf("--kind %q: a wildcard is a prefix followed by \".*\", as in call.*", k)}
		}
	}
	return f, nil
}

// exportList is a flag that may be repeated and whose values may be separated by commas.
type exportList []string

func (l *exportList) String() string { return strings.Join(*l, ",") }

func (l *exportList) Set(v string) error {
	for item := range strings.SplitSeq(v, ",") {
		item = strings.TrimSpace(item)
		switch {
		case item == "":
			return fmt.Errorf("empty value in %q", v)
		case len(item) > exportMaxItemSize:
			return fmt.Errorf("a value is %d bytes, longer than %d", len(item), exportMaxItemSize)
		case len(*l) >= exportMaxItems:
			return fmt.Errorf("more than %d values", exportMaxItems)
		}
		*l = append(*l, item)
	}
	return nil
}

// exportSummary is the line that says what a jsonl or ocsf export wrote.
func exportSummary(format string, st auditexport.Stats) string {
	s := fmt.Sprintf("exported %d events as %s (audit events up to #%d)", st.Written, format, st.LastSeq)
	if st.Redacted > 0 {
		s += fmt.Sprintf("; secrets redacted in %d", st.Redacted)
	}
	if st.Tombstones > 0 {
		s += fmt.Sprintf("; %d pruned by retention not exported", st.Tombstones)
	}
	return s
}

// exportTrace writes the calls the filter selects as a trace for `chaperone replay`,
// showing its progress on bar.
func exportTrace(ctx context.Context, src audit.Source, out *fileOutput, f auditexport.Filter, bar *progress.Bar, stderr io.Writer) error {
	opts := replay.ExportOptions{After: f.After}
	if len(f.Agents)+len(f.Tasks)+len(f.Decisions)+len(f.Kinds) > 0 || !f.From.IsZero() || !f.To.IsZero() {
		opts.Match = f.Match
	}
	if bar.Enabled() {
		opts.Progress = func(read, written int) {
			bar.Note(fmt.Sprintf("%d calls written", written))
			bar.Set(int64(read))
		}
	}
	st, err := replay.Export(ctx, src, out.w, opts)
	if err != nil {
		out.abort()
		return err
	}
	bar.Done()
	if st.Calls == 0 {
		out.abort()
		switch {
		case st.Skipped() == 0 && st.Filtered > 0:
			fmt.Fprintf(stderr, "no calls to export: none of the %d calls after event %d matches the filters\n", st.Filtered, f.After)
		case st.Skipped() == 0 && st.Pruned > 0:
			fmt.Fprintf(stderr, "no calls to export: the %d calls after event %d were pruned by retention\n", st.Pruned, f.After)
		case st.Skipped() == 0:
			fmt.Fprintf(stderr, "no calls to export: the audit log has no call after event %d\n", f.After)
		case !st.Captured:
			fmt.Fprintf(stderr, "no calls exported: %d calls were recorded without their arguments, because content capture was off.\n"+
				"A trace needs each call's arguments, and the audit log records only their hash and a summary unless\n"+
				"audit.capture is set to arguments or arguments_and_results in the gateway's configuration (then restart it).\n"+
				"Calls recorded from then on can be exported.\n", st.Skipped())
		default:
			fmt.Fprintf(stderr, "no calls exported: %s\n", skippedSummary(st))
		}
		return failError{}
	}
	if err := out.commit(); err != nil {
		return err
	}
	line := fmt.Sprintf("exported %d calls in %d sessions (audit events up to #%d)", st.Calls, st.Sessions, st.LastSeq)
	if st.Redacted > 0 {
		line += fmt.Sprintf("; secrets redacted in %d calls", st.Redacted)
	}
	fmt.Fprintln(stderr, line)
	if st.Skipped() > 0 {
		fmt.Fprintf(stderr, "%s\n", skippedSummary(st))
	}
	if st.Pruned > 0 {
		fmt.Fprintf(stderr, "%d calls not exported: retention removed their content\n", st.Pruned)
	}
	if n := st.ResultsOmitted + st.Unfinished; n > 0 {
		fmt.Fprintf(stderr, "%d calls exported without their result (%s); replay takes it as empty\n", n,
			counts([]string{"result not captured", "no outcome on record"}, []int{st.ResultsOmitted, st.Unfinished}))
	}
	return nil
}

// skippedSummary says how many calls an export left out, and why.
func skippedSummary(st replay.ExportStats) string {
	return fmt.Sprintf("skipped %d calls (%s)", st.Skipped(), counts(
		[]string{
			"arguments not captured: capture was off",
			"arguments not captured: larger than audit.capture_max_bytes",
			"arguments not captured: not valid JSON",
			"arguments not a JSON object",
			fmt.Sprintf("record longer than the %d bytes replay reads", replay.MaxLineBytes),
		},
		[]int{st.NotCaptured, st.TooLarge, st.InvalidJSON, st.NotObject, st.LineTooLong}))
}

// counts lists the non-zero counts with their labels: "result not captured: 2, no outcome on record: 1".
func counts(labels []string, ns []int) string {
	var parts []string
	for i, n := range ns {
		if n > 0 {
			parts = append(parts, fmt.Sprintf("%s: %d", labels[i], n))
		}
	}
	return strings.Join(parts, ", ")
}
