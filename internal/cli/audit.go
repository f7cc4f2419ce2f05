package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/chaperone-dev/chaperone/internal/audit"
	"github.com/chaperone-dev/chaperone/internal/replay"
	"github.com/chaperone-dev/chaperone/internal/store/sqlite"
)

func auditVerify(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("audit verify", stderr)
	dbPath := dataDirFlags(fs)
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	db, err := sqlite.OpenReadOnly(ctx, dbPath())
	if err != nil {
		return err
	}
	defer db.Close()
	rep, err := audit.Verify(ctx, db)
	if err != nil {
		return err
	}
	if rep.Broken != nil {
		fmt.Fprintf(stdout, "BROKEN at event %d: %s\n", rep.Broken.Seq, rep.Broken.Problem)
		fmt.Fprintf(stdout, "%d events checked before the break\n", rep.Events)
		return failError{}
	}
	fmt.Fprintf(stdout, "ok: %d events, chain intact\nhead: %s\n", rep.Events, rep.Head)
	if rep.Unfinished > 0 {
		fmt.Fprintf(stdout, "note: %d calls have an intent but no outcome (the gateway stopped mid-call): %v\n", rep.Unfinished, rep.UnfinishedRequests)
	}
	return nil
}

func auditTail(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("audit tail", stderr)
	dbPath := dataDirFlags(fs)
	n := fs.Int("n", 20, "how many events (1 to 10000)")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	if *n < 1 || *n > 10000 {
		return usageError{fmt.Sprintf("-n must be between 1 and 10000, got %d", *n)}
	}
	db, err := sqlite.OpenReadOnly(ctx, dbPath())
	if err != nil {
		return err
	}
	defer db.Close()
	evs, err := db.TailEvents(ctx, *n)
	if err != nil {
		return err
	}
	for _, e := range evs {
		audit.Format(stdout, e)
	}
	return nil
}

// auditExport writes the calls of the audit log as a trace for `chaperone replay`. Only
// calls whose arguments were captured (audit.capture) can be exported; the others are
// counted on standard error. It fails when no call was exported.
func auditExport(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("audit export", stderr)
	dbPath := dataDirFlags(fs)
	format := fs.String("format", "", "output format; only trace (the JSON Lines trace `chaperone replay` reads)")
	outPath := fs.String("out", "", "write to FILE, created 0600 (default standard output)")
	since := fs.Int64("since", 0, "export only calls recorded after the event with seq SEQ")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	if *format != "trace" {
		return usageError{fmt.Sprintf("--format must be trace, got %q", *format)}
	}
	if *since < 0 {
		return usageError{fmt.Sprintf("--since must not be negative, got %d", *since)}
	}
	db, err := sqlite.OpenReadOnly(ctx, dbPath())
	if err != nil {
		return err
	}
	defer db.Close()

	w, commit, abort := stdout, func() error { return nil }, func() {}
	if *outPath != "" {
		// Written beside the destination and renamed into place, so that a failed export
		// leaves no partial trace.
		f, err := os.CreateTemp(filepath.Dir(*outPath), ".chaperone-export-*")
		if err != nil {
			return fmt.Errorf("write trace: %w", err)
		}
		w = f
		abort = func() { f.Close(); os.Remove(f.Name()) }
		commit = func() error {
			if err := errors.Join(f.Sync(), f.Close()); err != nil {
				os.Remove(f.Name())
				return fmt.Errorf("write trace %s: %w", *outPath, err)
			}
			if err := os.Rename(f.Name(), *outPath); err != nil {
				os.Remove(f.Name())
				return fmt.Errorf("write trace: %w", err)
			}
			return nil
		}
	}
	st, err := replay.Export(ctx, db, w, replay.ExportOptions{After: *since})
	if err != nil {
		abort()
		return err
	}
	if st.Calls == 0 {
		abort()
		switch {
		case st.Skipped() == 0:
			fmt.Fprintf(stderr, "no calls to export: the audit log has no call after event %d\n", *since)
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
	if err := commit(); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "exported %d calls in %d sessions (audit events up to #%d)\n", st.Calls, st.Sessions, st.LastSeq)
	if st.Skipped() > 0 {
		fmt.Fprintf(stderr, "%s\n", skippedSummary(st))
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
