package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/chaperone-dev/chaperone/internal/config"
	"github.com/chaperone-dev/chaperone/internal/daemon"
	"github.com/chaperone-dev/chaperone/internal/policy"
)

// maxSchemaBytes bounds one schema file read by policy lint.
const maxSchemaBytes = 4 << 20

// policyLint is `chaperone policy lint [--config FILE] [--schemas DIR] [--data-dir DIR]
// [PATH...]`: it checks the policy files (PATHs, or the configuration's policy.paths)
// against the configured tools and prints every finding, one per line. It fails when there
// is any.
func policyLint(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("policy lint", stderr)
	cfgPath := fs.String("config", "chaperone.yaml", "configuration file: the tools, and the policy files unless PATHs are given")
	schemaDir := fs.String("schemas", "", "directory of <tool>.json files with the tools' input schemas, to check argument names")
	dataDir := fs.String("data-dir", "", "a gateway's data directory: check argument names against the pinned tool definitions in its database")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: chaperone policy lint [--config FILE] [--schemas DIR] [--data-dir DIR] [PATH...]")
		fs.PrintDefaults()
	}
	if err := parse(fs, args, len(args)); err != nil {
		return err
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		return err
	}
	names, err := config.ExposedNames(cfg.Tools)
	if err != nil {
		return err // Load validated them; kept for safety
	}
	tools := make(map[string]policy.ToolSchema, len(names))
	for i, t := range cfg.Tools {
		tools[names[i]] = policy.ToolSchema{Class: t.Class}
	}
	if *dataDir != "" {
		if err := pinnedArgs(ctx, filepath.Join(*dataDir, "chaperone.db"), tools); err != nil {
			return err
		}
	}
	if *schemaDir != "" {
		if err := schemaFileArgs(*schemaDir, tools); err != nil {
			return err
		}
	}

	var sources []policy.Source
	if paths := fs.Args(); len(paths) > 0 {
		sources, err = daemon.ReadPolicySources(paths)
	} else {
		sources, _, err = daemon.ConfigPolicySources(cfg)
	}
	if err != nil {
		return fmt.Errorf("read policy: %w", err)
	}
	shortenNames(sources)

	findings := policy.Lint(sources, tools)
	for _, f := range findings {
		fmt.Fprintln(stdout, f.String())
	}
	if len(findings) == 0 {
		fmt.Fprintln(stdout, "no findings")
		return nil
	}
	fmt.Fprintln(stdout, summary(findings))
	return failError{}
}

// summary is "3 findings: 1 compile, 2 shadowed", kinds in the order they are listed.
func summary(fs []policy.Finding) string {
	count := map[string]int{}
	var kinds []string
	for _, f := range fs {
		if count[f.Kind] == 0 {
			kinds = append(kinds, f.Kind)
		}
		count[f.Kind]++
	}
	order := []string{policy.KindCompile, policy.KindType, policy.KindUnknownTool,
		policy.KindUnknownArgument, policy.KindNeverMatches, policy.KindShadowed}
	slices.SortStableFunc(kinds, func(a, b string) int {
		ia, ib := slices.Index(order, a), slices.Index(order, b)
		if ia < 0 {
			ia = len(order)
		}
		if ib < 0 {
			ib = len(order)
		}
		return ia - ib
	})
	parts := make([]string, len(kinds))
	for i, k := range kinds {
		parts[i] = fmt.Sprintf("%d %s", count[k], k)
	}
	noun := "findings"
	if len(fs) == 1 {
		noun = "finding"
	}
	return fmt.Sprintf("%d %s: %s", len(fs), noun, strings.Join(parts, ", "))
}

// shortenNames makes the names of sources under the working directory relative to it, so
// that findings read as the user would write the path.
func shortenNames(sources []policy.Source) {
	wd, err := os.Getwd()
	if err != nil {
		return
	}
	for i, s := range sources {
		if !filepath.IsAbs(s.Name) {
			continue
		}
		if rel, err := filepath.Rel(wd, s.Name); err == nil && filepath.IsLocal(rel) {
			sources[i].Name = rel
		}
	}
}

// pinnedArgs sets the argument names of the tools from their pinned definitions in the
// gateway's database, opened read-only.
func pinnedArgs(ctx context.Context, dbPath string, tools map[string]policy.ToolSchema) error {
	db, err := openReadOnly(ctx, dbPath)
	if err != nil {
		return err
	}
	defer db.Close()
	pins, err := db.Pins(ctx)
	if err != nil {
		return err
	}
	for _, p := range pins {
		t, ok := tools[p.Tool]
		if !ok {
			continue // pinned once, no longer configured
		}
		var def struct {
			InputSchema json.RawMessage `json:"inputSchema"`
		}
		if err := json.Unmarshal(p.Definition, &def); err != nil {
			return fmt.Errorf("pinned definition of tool %q: %w", p.Tool, err)
		}
		if t.Args, err = schemaArgs(def.InputSchema); err != nil {
			return fmt.Errorf("pinned definition of tool %q: input schema: %w", p.Tool, err)
		}
		tools[p.Tool] = t
	}
	return nil
}

// schemaFileArgs sets the argument names of the tools that have a file <name>.json in dir.
// A file holds the tool's input schema, or a tool definition with the key "inputSchema"
// as tools/list shows it. Files for other tools are ignored.
func schemaFileArgs(dir string, tools map[string]policy.ToolSchema) error {
	if fi, err := os.Stat(dir); err != nil {
		return fmt.Errorf("schemas: %w", err)
	} else if !fi.IsDir() {
		return fmt.Errorf("schemas: %s is not a directory", dir)
	}
	for name, t := range tools {
		path := filepath.Join(dir, name+".json")
		data, err := readSchemaFile(path)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("schemas: %w", err)
		}
		var def struct {
			InputSchema json.RawMessage `json:"inputSchema"`
		}
		if err := json.Unmarshal(data, &def); err != nil {
			return fmt.Errorf("schemas: %s: %w", path, err)
		}
		if def.InputSchema != nil {
			data = def.InputSchema
		}
		if t.Args, err = schemaArgs(data); err != nil {
			return fmt.Errorf("schemas: %s: %w", path, err)
		}
		tools[name] = t
	}
	return nil
}

func readSchemaFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxSchemaBytes+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxSchemaBytes {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, maxSchemaBytes)
	}
	return data, nil
}

// schemaArgs returns the top-level argument names a JSON Schema for a tool's input
// declares: the keys of "properties". It returns nil, meaning unknown, for no schema and
// for a schema that admits other arguments by name pattern or by an
// "additionalProperties" other than false; it returns an empty list for an object schema
// without properties.
func schemaArgs(raw json.RawMessage) ([]string, error) {
	if len(bytes.TrimSpace(raw)) == 0 || bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
		return nil, nil
	}
	var s struct {
		Properties           map[string]json.RawMessage `json:"properties"`
		PatternProperties    json.RawMessage            `json:"patternProperties"`
		AdditionalProperties json.RawMessage            `json:"additionalProperties"`
	}
	if err := json.Unmarshal(raw, &s); err != nil {
		return nil, err
	}
	if s.PatternProperties != nil {
		return nil, nil
	}
	if ap := bytes.TrimSpace(s.AdditionalProperties); ap != nil && !bytes.Equal(ap, []byte("false")) {
		return nil, nil
	}
	args := make([]string, 0, len(s.Properties))
	for k := range s.Properties {
		args = append(args, k)
	}
	slices.Sort(args)
	return args, nil
}
