package cli

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/chaperone-dev/chaperone/internal/config"
	"github.com/chaperone-dev/chaperone/internal/policy/suite"
)

// policyTest runs `chaperone policy test [DIR] [--junit FILE] [--tools FILE] [-v]`: every
// policy test suite (*_test.yaml) under DIR, or the one suite DIR names. It prints a FAIL
// line per failing case (and a PASS line per passing one with -v), an ERROR line per suite
// that could not be run, then "policy test:" and, on a line of its own, "N passed, M
// failed", where a suite that could not be run counts as one failure. It returns a
// failError when anything failed, and a usageError for a bad command line.
func policyTest(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("policy test", stderr)
	junit := fs.String("junit", "", "also write the results as JUnit XML to this file")
	toolsFile := fs.String("tools", "", "compile every suite against the tools: of this configuration file instead of the suites' own")
	verbose := fs.Bool("v", false, "also list the cases that pass")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "Usage: chaperone policy test [DIR | FILE_test.yaml] [--junit FILE] [--tools FILE] [-v]\n\nRuns the policy test suites (*_test.yaml) under DIR (default \".\").\n\n")
		fs.PrintDefaults()
	}
	if err := parse(fs, reorder(fs, args), 1); err != nil {
		return err
	}
	dir := "."
	if fs.NArg() == 1 {
		dir = fs.Arg(0)
	}
	if dir == "" {
		return usageError{"empty directory name"}
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	if given["junit"] && *junit == "" {
		return usageError{"--junit needs a file name"}
	}
	if given["tools"] && *toolsFile == "" {
		return usageError{"--tools needs a file name"}
	}

	var tools map[string]suite.Tool
	if *toolsFile != "" {
		var err error
		if tools, err = configTools(*toolsFile); err != nil {
			return err
		}
	}

	paths, err := suite.Discover(dir)
	if err != nil {
		return err
	}
	if len(paths) == 0 {
		return fmt.Errorf("no policy test suites (*_test.yaml) in %s", dir)
	}

	results := make([]suite.Result, 0, len(paths))
	passed, failed := 0, 0
	for _, p := range paths {
		if err := ctx.Err(); err != nil {
			return err
		}
		var r suite.Result
		s, err := suite.Load(p)
		if err != nil {
			r = suite.Result{Path: p, Err: err}
		} else {
			if tools != nil {
				s.Tools = tools
			}
			r = s.Run()
		}
		results = append(results, r)

		if r.Err != nil {
			// The error names the file; continuation lines (one per problem) are indented.
			fmt.Fprintf(stdout, "ERROR %s\n", strings.ReplaceAll(r.Err.Error(), "\n", "\n      "))
			failed++
			continue
		}
		for _, c := range r.Cases {
			switch {
			case !c.Pass:
				fmt.Fprintf(stdout, "FAIL %s:%d %s: %s\n", p, c.Line, c.Name, c.Message())
				failed++
			case *verbose:
				fmt.Fprintf(stdout, "PASS %s:%d %s\n", p, c.Line, c.Name)
				passed++
			default:
				passed++
			}
		}
	}
	// CI parsers look for the bare "N passed, M failed" line, so it stands alone.
	fmt.Fprintf(stdout, "policy test:\n%d passed, %d failed\n", passed, failed)

	if *junit != "" {
		var buf bytes.Buffer
		if err := suite.WriteJUnit(&buf, results); err != nil {
			return err
		}
		if err := os.WriteFile(*junit, buf.Bytes(), 0o644); err != nil {
			return fmt.Errorf("write junit: %w", err)
		}
	}
	if failed > 0 {
		return failError{}
	}
	return nil
}

// configTools reads the tools: of a configuration file, by exposed name. The file need not
// be a complete configuration: it is decoded strictly and defaulted, not validated.
func configTools(path string) (map[string]suite.Tool, error) {
	data, err := readBounded(path, config.MaxFileBytes)
	if err != nil {
		return nil, fmt.Errorf("read tools: %w", err)
	}
	cfg, err := config.Parse(data)
	if err != nil {
		return nil, fmt.Errorf("read tools %s: %w", path, err)
	}
	cfg.ApplyDefaults()
	names, err := config.ExposedNames(cfg.Tools)
	if err != nil {
		return nil, fmt.Errorf("read tools %s: %w", path, err)
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("read tools %s: no tools declared", path)
	}
	tools := make(map[string]suite.Tool, len(names))
	for i, n := range names {
		tools[n] = suite.Tool{Class: cfg.Tools[i].Class, Upstream: cfg.Tools[i].Upstream}
	}
	return tools, nil
}

// readBounded reads a file of at most limit bytes.
func readBounded(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, limit)
	}
	return data, nil
}
