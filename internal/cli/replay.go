package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/chaperone-dev/chaperone/internal/config"
	"github.com/chaperone-dev/chaperone/internal/daemon"
	"github.com/chaperone-dev/chaperone/internal/policy"
	"github.com/chaperone-dev/chaperone/internal/progress"
	"github.com/chaperone-dev/chaperone/internal/replay"
)

// replayUsage is the command's entry in the usage text.
const replayUsage = `  chaperone replay --config FILE --trace FILE.jsonl [--policy DIR] [--diff DIR] [--out FILE] [--json]
      [--agent ID] [--approvals granted|denied] [--data-dir DIR] [--schemas DIR]
                                              decide a recorded trace again, offline`

// replayCmd replays a trace through the pipeline with a configuration and a policy and
// prints what was decided: a summary, the decisions as JSON Lines (--out, --json), or with
// --diff the calls another policy decides differently.
func replayCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("replay", stderr)
	cfgPath := fs.String("config", "", "configuration file: tools, upstreams and agents (required)")
	tracePath := fs.String("trace", "", "trace file, JSON Lines (required)")
	policyDir := fs.String("policy", "", "policy file or directory (default: the configuration's policy.paths)")
	diffDir := fs.String("diff", "", "also replay with this policy file or directory and print the calls it decides differently")
	outPath := fs.String("out", "", "write the decisions to this file as JSON Lines")
	jsonOut := fs.Bool("json", false, "write the decisions to standard output as JSON Lines, unless --out is given (the summary then goes to standard error)")
	agent := fs.String("agent", "", "agent of sessions that name none")
	approvals := fs.String("approvals", string(replay.ApprovalsGranted), "treat calls needing approval as granted or denied")
	dataDir := fs.String("data-dir", "", "gateway data directory: use the tool definitions pinned in its chaperone.db")
	schemas := fs.String("schemas", "", "directory of <tool>.json input schemas, for tools without a pinned definition")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage:\n%s\n\nFlags:\n", replayUsage)
		fs.PrintDefaults()
	}
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	switch {
	case *cfgPath == "":
		return usageError{"--config is required"}
	case *tracePath == "":
		return usageError{"--trace is required"}
	case *approvals != string(replay.ApprovalsGranted) && *approvals != string(replay.ApprovalsDenied):
		return usageError{fmt.Sprintf("--approvals must be granted or denied, got %q", *approvals)}
	case *diffDir != "" && *jsonOut:
		return usageError{"--diff prints a listing; use --out FILE for the decisions instead of --json"}
	}

	cfg, err := config.Load(*cfgPath)
	if err != nil {
		return err
	}
	tr, err := readTrace(*tracePath)
	if err != nil {
		return err
	}
	srcA, err := policySources(cfg, *policyDir)
	if err != nil {
		return err
	}
	var storePath string
	if *dataDir != "" {
		storePath = filepath.Join(*dataDir, "chaperone.db")
	}
	defs, err := replay.LoadDefinitions(ctx, cfg, storePath, *schemas)
	if err != nil {
		return err
	}
	opts := replay.Options{Config: cfg, Trace: tr, Policy: srcA, Definitions: defs,
		DefaultAgent: *agent, Approvals: replay.Approvals(*approvals)}
	label := "replaying calls"
	if *diffDir != "" {
		label = "replaying calls (A)"
	}
	repA, err := replayRun(ctx, opts, label, stderr)
	if err != nil {
		return err
	}

	if *outPath != "" {
		if err := writeDecisions(*outPath, &repA); err != nil {
			return err
		}
	}
	if *diffDir != "" {
		if opts.Policy, err = daemon.ReadPolicySources([]string{*diffDir}); err != nil {
			return fmt.Errorf("policy %s: %w", *diffDir, err)
		}
		repB, err := replayRun(ctx, opts, "replaying calls (B)", stderr)
		if err != nil {
			return fmt.Errorf("policy %s: %w", *diffDir, err)
		}
		changes, err := replay.Diff(&repA, &repB)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "A: %s\nB: %s\n\n", repA.PolicyVersion, repB.PolicyVersion)
		return replay.WriteDiff(stdout, changes, len(repA.Decisions))
	}
	if *jsonOut && *outPath == "" {
		if err := repA.WriteJSONL(stdout); err != nil {
			return err
		}
		return repA.WriteSummary(stderr)
	}
	return repA.WriteSummary(stdout)
}

// replayRun replays with opts, showing the calls replayed on stderr when it is a
// terminal (see internal/progress and docs/progress.md).
func replayRun(ctx context.Context, opts replay.Options, label string, stderr io.Writer) (replay.Report, error) {
	bar := progress.New(stderr, progress.Options{Label: label, Total: int64(len(opts.Trace.Calls)), Getenv: os.Getenv})
	defer bar.Stop()
	if bar.Enabled() {
		opts.Progress = func(done, _ int) { bar.Set(int64(done)) }
	}
	rep, err := replay.Run(ctx, opts)
	if err != nil {
		return rep, err
	}
	bar.Done()
	return rep, nil
}

func readTrace(path string) (*replay.Trace, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read trace: %w", err)
	}
	defer f.Close()
	tr, err := replay.ReadTrace(f)
	if err != nil {
		return nil, fmt.Errorf("read trace %s: %w", path, err)
	}
	return tr, nil
}

// policySources reads the policy given on the command line, else the configuration's.
func policySources(cfg *config.Config, dir string) ([]policy.Source, error) {
	var srcs []policy.Source
	var err error
	if dir != "" {
		srcs, err = daemon.ReadPolicySources([]string{dir})
	} else {
		srcs, _, err = daemon.ConfigPolicySources(cfg)
	}
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	return srcs, nil
}

// writeDecisions writes the report's decisions to a new or truncated file at path.
func writeDecisions(path string, rep *replay.Report) (err error) {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("write decisions: %w", err)
	}
	defer func() {
		if cerr := f.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("write decisions: %w", cerr)
		}
	}()
	if err := rep.WriteJSONL(f); err != nil {
		return fmt.Errorf("write decisions: %w", err)
	}
	return nil
}
