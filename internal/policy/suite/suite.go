package suite

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/chaperone-dev/chaperone/internal/boundedfile"
	"github.com/chaperone-dev/chaperone/internal/policy"
)

// Bounds on what a suite may hold.
const (
	// MaxFileBytes bounds the size of a suite file and of each policy file it names.
	MaxFileBytes = 4 << 20
	// MaxCases bounds the number of cases in one suite.
	MaxCases = 10000
	// MaxDepth bounds how deeply argument values nest.
	MaxDepth = 64
	// MaxSuites bounds the number of suites [Discover] returns.
	MaxSuites = 10000
	// maxProblems bounds how many problems one Load reports.
	maxProblems = 50
)

// DefaultNow is the time of a case that gives none, so that suites are deterministic.
var DefaultNow = time.Date(2026, time.January, 5, 10, 0, 0, 0, time.UTC)

// Suite is a loaded test suite: the policy bundle, the tools it is compiled against, and
// the cases.
type Suite struct {
	// Path is the suite file as given to [Load].
	Path string
	// Policies are the policy files, in bundle order, as paths joined to the suite's directory.
	Policies []string
	// Tools are the tools the bundle is compiled against, by exposed name. A caller may
	// replace them before [Suite.Run]; Run checks every case's tool against them.
	Tools map[string]Tool
	// Cases are the calls to decide, in file order.
	Cases []Case

	// sources hold the policy files' contents, read by Load.
	sources []policy.Source
}

// Tool is a declared tool.
type Tool struct {
	// Class is the tool's risk class: read, write, external or destructive.
	Class string
	// Upstream names the upstream offering the tool; conditions see it as tool.upstream.
	Upstream string
}

// Case is one call and the decision expected for it.
type Case struct {
	// Name describes the case; unique within its suite.
	Name string
	// Line is the line of the case in the suite file.
	Line int
	// Facts are the facts of the call. Run fills in Tool.Class and Tool.Upstream from
	// [Suite.Tools].
	Facts policy.Facts
	// Want is the expected decision.
	Want Expectation
}

// flow returns the case's flow facts, creating them clean.
func (c *Case) flow() *policy.StaticFlow {
	if f, ok := c.Facts.Flow.(*policy.StaticFlow); ok {
		return f
	}
	f := &policy.StaticFlow{}
	c.Facts.Flow = f
	return f
}

// Expectation is what a case expects of the decision.
type Expectation struct {
	// Effect is the expected effect.
	Effect policy.Effect
	// Rules, if CheckRules, must equal [policy.Decision.Rules] exactly.
	Rules []string
	// CheckRules says whether the case gave rules.
	CheckRules bool
}

// FileError is a problem in a suite file: a syntax error, an unknown key, a case naming an
// unknown tool. Load reports every problem it finds, joined with [errors.Join].
type FileError struct {
	// File is the suite file.
	File string
	// Line is the 1-based line of the problem; 0 if unknown.
	Line int
	// Msg describes the problem.
	Msg string
}

// Error formats the problem as "file:line: message".
func (e *FileError) Error() string {
	if e.Line > 0 {
		return e.File + ":" + strconv.Itoa(e.Line) + ": " + e.Msg
	}
	return e.File + ": " + e.Msg
}

// Load reads the suite at path and the policy files it names. Problems in the suite are
// [*FileError] values joined with [errors.Join]; every error names the file it is about.
// Load does not compile the policy: [Suite.Run] does.
func Load(path string) (*Suite, error) {
	data, err := readFile(path)
	if err != nil {
		return nil, err
	}
	s, err := parse(path, data)
	if err != nil {
		return nil, err
	}
	dir := filepath.Dir(path)
	if s.Policies == nil {
		if s.Policies, err = defaultPolicies(dir); err != nil {
			return nil, &FileError{File: path, Msg: fmt.Sprintf("find policy files: %v", err)}
		}
		if len(s.Policies) == 0 {
			return nil, &FileError{File: path, Msg: fmt.Sprintf("no policy files (*.yaml) in %s; list them under policies", dir)}
		}
	}
	for _, p := range s.Policies {
		data, err := readFile(p)
		if err != nil {
			return nil, &FileError{File: path, Line: s.policyLines[p], Msg: fmt.Sprintf("policies: %v", err)}
		}
		s.sources = append(s.sources, policy.Source{Name: p, Data: data})
	}
	return &s.Suite, nil
}

// readFile reads a regular file of at most MaxFileBytes.
func readFile(path string) ([]byte, error) {
	data, _, err := boundedfile.Read(path, MaxFileBytes)
	return data, err
}

// isSuite reports whether a file name is a suite's.
func isSuite(name string) bool {
	return strings.HasSuffix(name, "_test.yaml")
}

// defaultPolicies lists the policy files of a suite that names none: the *.yaml and *.yml
// files in dir that are not suites, in name order.
func defaultPolicies(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var paths []string
	for _, e := range entries {
		name := e.Name()
		if !e.Type().IsRegular() || isSuite(name) || strings.HasSuffix(name, "_test.yml") {
			continue
		}
		if strings.HasSuffix(name, ".yaml") || strings.HasSuffix(name, ".yml") {
			paths = append(paths, filepath.Join(dir, name))
		}
	}
	return paths, nil // os.ReadDir sorts by name
}

// Discover returns the suites (*_test.yaml files) under dir, recursively, in lexical
// order; directories whose names start with "." are skipped. If dir is a file, Discover
// returns it alone. It finds at most [MaxSuites].
func Discover(dir string) ([]string, error) {
	st, err := os.Stat(dir)
	if err != nil {
		return nil, err
	}
	if !st.IsDir() {
		return []string{dir}, nil
	}
	var paths []string
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if path != dir && strings.HasPrefix(d.Name(), ".") {
				return fs.SkipDir
			}
			return nil
		}
		if d.Type().IsRegular() && isSuite(d.Name()) {
			if len(paths) == MaxSuites {
				return fmt.Errorf("more than %d suites", MaxSuites)
			}
			paths = append(paths, path)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("discover suites in %s: %w", dir, err)
	}
	return paths, nil
}

// checkTools reports, as problems, invalid tool classes and cases whose tool is not in tools.
func checkTools(path string, tools map[string]Tool, cases []Case) error {
	var errs []error
	names := make([]string, 0, len(tools))
	for name := range tools {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		if !validClass(tools[name].Class) {
			errs = append(errs, &FileError{File: path, Msg: fmt.Sprintf("tools: tool %q: unknown class %q", name, tools[name].Class)})
		}
	}
	for _, c := range cases {
		if _, ok := tools[c.Facts.Tool.Name]; !ok {
			errs = append(errs, &FileError{File: path, Line: c.Line, Msg: fmt.Sprintf("case %q: unknown tool %q (declare it under tools)", c.Name, c.Facts.Tool.Name)})
		}
		if len(errs) >= maxProblems {
			errs = append(errs, &FileError{File: path, Msg: "too many problems"})
			break
		}
	}
	return errors.Join(errs...)
}

func validClass(c string) bool {
	switch c {
	case policy.ClassRead, policy.ClassWrite, policy.ClassExternal, policy.ClassDestructive:
		return true
	}
	return false
}
