package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/chaperone-dev/chaperone/internal/config"
	"github.com/chaperone-dev/chaperone/internal/progress"
	"github.com/chaperone-dev/chaperone/internal/report"
	"github.com/chaperone-dev/chaperone/internal/store/backend"
)

// repCommand writes the evidence report of a time window (report.json and report.html)
// from a gateway's store, opened read-only. Like `audit verify`, it fails when the audit
// log's chain is broken, or when --key is given and no checkpoint signed by it covers the
// log; the report is written all the same, and says so.
func repCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("report", stderr)
	cfgPath := fs.String("config", "", "configuration file: the store to read, the data directory of the default --key, and the tools' undo instructions")
	dataDir, dbPath := dataDirAndDB(fs)
	from := fs.String("from", "", "start of the window (required): RFC 3339 (2026-03-01T09:00:00Z), a date (2026-03-01, midnight UTC) or a duration before now (24h, 7d)")
	to := fs.String("to", "", "end of the window, excluded (same forms as --from; default now)")
	out := fs.String("out", "", "directory to write report.json and report.html into, created if needed (required)")
	title := fs.String("title", "", "title of the report (default \""+report.DefaultTitle+"\")")
	var keyFiles pathsFlag
	fs.Var(&keyFiles, "key", "PEM file of the public key(s) the audit checkpoints must be signed with (repeatable; default <data-dir>/audit-signing.key.pub if it exists); given, a log no checkpoint covers fails")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	switch {
	case *from == "":
		return usageError{"--from is required: the start of the window"}
	case *out == "":
		return usageError{"--out is required: the directory to write the report into"}
	case *cfgPath != "" && (set["db"] || set["data-dir"]):
		return usageError{"give --config or --db/--data-dir, not both"}
	case len(*title) > report.MaxTitle:
		return usageError{fmt.Sprintf("--title is %d bytes, longer than %d", len(*title), report.MaxTitle)}
	}
	now := time.Now()
	f, err := exportFilter(now, 0, *from, *to, nil, nil, nil, nil)
	if err != nil {
		return err
	}
	if f.To.IsZero() {
		f.To = now.UTC()
		if !f.From.Before(f.To) {
			return usageError{fmt.Sprintf("--from %q (%s) is not before now: the window is empty", *from, f.From.Format(time.RFC3339))}
		}
	}

	sc, keyDir, undo := storeConfig(dbPath()), *dataDir, map[string]string(nil)
	var declared []report.Agent
	if *cfgPath != "" {
		cfg, err := config.Load(*cfgPath)
		if err != nil {
			return err
		}
		sc, keyDir = cfg.Store, cfg.DataDir
		if undo, err = repUndo(cfg.Tools); err != nil {
			return fmt.Errorf("%s: %w", *cfgPath, err)
		}
		for _, a := range cfg.Agents {
			declared = append(declared, report.Agent{ID: a.ID, Owner: a.Owner, Purpose: a.Purpose, Environment: a.Environment, Autonomy: a.Autonomy, Status: "active"})
		}
	}
	keys, err := verifyKeys(keyFiles, keyDir)
	if err != nil {
		return err
	}
	db, err := backend.OpenReadOnly(ctx, sc)
	if err != nil {
		return err
	}
	defer db.Close()

	opts := report.Options{From: f.From, To: f.To, Store: db, Keys: keys, Now: time.Now, Title: *title, Undo: undo, Declared: declared}
	p := &repProgress{stderr: stderr}
	defer func() { p.bar.Stop() }() // the bar of the phase running, if any, when it fails
	if progress.Wanted(stderr, p.options("", 0)) {
		opts.Progress = p.update
	}
	r, err := report.Build(ctx, opts)
	if err != nil {
		return err
	}
	if opts.Progress != nil {
		p.update(repPhaseWrite, 0, 2)
	}
	if err := report.Write(*out, r); err != nil {
		return err
	}
	if opts.Progress != nil {
		p.update(repPhaseWrite, 2, 2)
		p.bar.Done()
	}
	fmt.Fprintf(stdout, "wrote %s and %s\n", filepath.Join(*out, report.JSONFile), filepath.Join(*out, report.HTMLFile))
	fmt.Fprintln(stdout, repSummary(r))
	v := r.Verification
	switch {
	case !v.OK:
		return failError{}
	case len(keyFiles) > 0 && v.Anchor == nil && v.Events > 0:
		// As audit verify: a key was given, so the log is expected to be anchored.
		fmt.Fprintln(stdout, "UNANCHORED: no checkpoint signed by the given key covers this log; events deleted from its end would not show")
		return failError{}
	}
	return nil
}

// repPhaseWrite is the phase after report.Build's: rendering and writing the two files.
const repPhaseWrite report.Phase = "write"

// repProgress shows the phases of a report on a terminal, one line each: the events read,
// the events verified, the files written.
type repProgress struct {
	stderr io.Writer
	phase  report.Phase
	bar    *progress.Bar // the current phase's; nil before the first
}

// options are the progress options of a phase's line.
func (p *repProgress) options(phase report.Phase, total int64) progress.Options {
	label := map[report.Phase]string{
		report.PhaseRead:   "reading events",
		report.PhaseVerify: "verifying the chain",
		repPhaseWrite:      "writing the report",
	}[phase]
	return progress.Options{Label: label, Total: total, Unit: "events", Getenv: os.Getenv}
}

// update shows how far phase has got, ending the previous phase's line when it starts.
func (p *repProgress) update(phase report.Phase, done, total int64) {
	if p.bar == nil || phase != p.phase {
		p.bar.Done()
		p.phase, p.bar = phase, progress.New(p.stderr, p.options(phase, total))
	}
	p.bar.SetTotal(total)
	p.bar.Set(done)
}

// repUndo maps the exposed name of each configured tool to its undo instruction.
func repUndo(tools []config.Tool) (map[string]string, error) {
	names, err := config.ExposedNames(tools)
	if err != nil {
		return nil, err
	}
	undo := map[string]string{}
	for i, t := range tools {
		if strings.TrimSpace(t.Undo) != "" {
			undo[names[i]] = t.Undo
		}
	}
	return undo, nil
}

// repSummary is the one line that says what the report found.
func repSummary(r *report.Report) string {
	f, v := r.Figures, r.Verification
	d := f.Decisions
	s := fmt.Sprintf("%s to %s: %d events, %d call decisions (%d allowed, %d approved, %d denied, %d refused, %d suggested), %d decision letters; audit log ",
		r.Window.From.Format(time.RFC3339), r.Window.To.Format(time.RFC3339), f.Events, f.Calls, d.Allow, d.Approve, d.Deny, d.Refused, d.Suggested, len(r.Letters))
	if !v.OK {
		return s + fmt.Sprintf("BROKEN at event %d: %s", v.Broken.Seq, v.Broken.Problem)
	}
	s += fmt.Sprintf("ok, %d events verified", v.Events)
	if a := v.Anchor; a != nil {
		s += fmt.Sprintf(", anchored by the checkpoint at event %d", a.Seq)
	}
	return s
}
