package argcheck

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// MaxProblems is the most problems an [Error] lists; the rest are counted
// in [Error.Omitted].
const MaxProblems = 10

// maxNameBytes bounds how much of an argument or property name (which the
// caller chooses, so it may be anything) is copied into a [Problem].
const maxNameBytes = 64

// Constraint is the operator's overlay for one top-level argument. It only
// narrows what the upstream's schema allows; it never widens it.
//
// Pattern, Enum, MaxLength, PathPrefixes and URLHosts apply to strings;
// Minimum and Maximum apply to numbers. An argument whose JSON type does not
// suit its constraint is refused.
type Constraint struct {
	// Pattern is an RE2 expression (Go regexp syntax) the whole string
	// must match; it is anchored at both ends by Compile.
	Pattern string `yaml:"pattern,omitempty"`
	// Enum lists the allowed string values.
	Enum []string `yaml:"enum,omitempty"`
	// Minimum is the smallest allowed number (inclusive).
	Minimum *float64 `yaml:"minimum,omitempty"`
	// Maximum is the largest allowed number (inclusive).
	Maximum *float64 `yaml:"maximum,omitempty"`
	// MaxLength is the longest allowed string, in Unicode code points.
	MaxLength *int `yaml:"max_length,omitempty"`
	// PathPrefixes makes the value a slash-separated absolute filesystem
	// path that, after lexical cleaning, must equal or lie under one of
	// these absolute, clean directories.
	PathPrefixes []string `yaml:"path_prefixes,omitempty"`
	// URLHosts makes the value an http or https URL whose host must be one
	// of these. "*.example.com" matches any subdomain of example.com but not
	// example.com itself; IP addresses match only when listed.
	URLHosts []string `yaml:"url_hosts,omitempty"`
}

// Overlay maps top-level argument names to constraints.
type Overlay map[string]Constraint

// Validator checks the arguments of calls to one tool. It is immutable once
// built by [Compile] and safe for concurrent use.
type Validator struct {
	tool   string
	schema *jsonschema.Schema
	// declared holds the names under the schema's top-level "properties".
	declared map[string]struct{}
	// checks holds the compiled overlay, sorted by argument name.
	checks []argCheck
}

// Compile builds the validator for one tool from its raw JSON Schema
// (inputSchema, as the upstream published it) and the operator's overlay.
//
// A schema without "$schema" is read as draft 2020-12. Format assertions are
// on for every draft. The schema must be self-contained: any reference that
// is not to the schema itself or to a standard metaschema fails compilation
// instead of being fetched.
//
// Compile reports every problem it finds at once, joined with
// [errors.Join]; each names the tool and, where there is one, the argument.
func Compile(tool string, inputSchema []byte, overlay Overlay) (*Validator, error) {
	var errs []error
	sch, declared, err := compileSchema(inputSchema)
	if err != nil {
		errs = append(errs, fmt.Errorf("compile tool %q: input schema: %v", tool, err))
	}

	names := make([]string, 0, len(overlay))
	for name := range overlay {
		names = append(names, name)
	}
	slices.Sort(names)
	checks := make([]argCheck, 0, len(overlay))
	for _, name := range names {
		var cerrs []error
		// Without a schema there is nothing to compare against; the schema
		// error above already refuses the tool.
		if declared != nil {
			if _, ok := declared[name]; !ok {
				cerrs = append(cerrs, errors.New("not declared in the input schema's properties"))
			}
		}
		c, constraintErrs := compileConstraint(name, overlay[name])
		cerrs = append(cerrs, constraintErrs...)
		for _, e := range cerrs {
			errs = append(errs, fmt.Errorf("compile tool %q: overlay argument %q: %v", tool, name, e))
		}
		if len(cerrs) == 0 {
			checks = append(checks, c)
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return &Validator{tool: tool, schema: sch, declared: declared, checks: checks}, nil
}

// declaredLike returns a declared argument whose name differs from name only in case, or
// "". Servers that match names regardless of case would take one for the other; the
// gateway does not, and says so.
func (v *Validator) declaredLike(name string) string {
	like := ""
	for d := range v.declared {
		if strings.EqualFold(d, name) && (like == "" || d < like) {
			like = d
		}
	}
	return like
}

// Tool returns the name of the tool v validates.
func (v *Validator) Tool() string { return v.tool }

// Validate checks one call's arguments, decoded by encoding/json into
// map[string]any: float64, string, bool, nil, []any and map[string]any. nil
// args is an empty object. It returns nil when the call may proceed and an
// *[Error] otherwise.
//
// Decode numbers as float64 (the encoding/json default), not with
// UseNumber: an [encoding/json.Number] is accepted, but its exponent is not
// bounded, and exact arithmetic on a caller-chosen 1e-99999999 is slow.
//
// The checks run in this order, and every problem found is reported:
// arguments not declared in the schema's "properties", then the JSON Schema,
// then the overlay (only on declared arguments the schema accepted).
func (v *Validator) Validate(args map[string]any) error {
	var c collector
	for name := range args {
		if _, ok := v.declared[name]; !ok {
			switch like := v.declaredLike(name); {
			case name == "":
				c.add(name, `unknown argument "" (empty name)`)
			case like != "":
				c.add(name, fmt.Sprintf("unknown argument: the tool declares %q, and names are matched exactly", truncate(like, 64)))
			default:
				c.add(name, "unknown argument")
			}
		}
	}

	instance := any(args)
	if args == nil {
		instance = map[string]any{}
	}
	if err := validateSchema(v.schema, instance); err != nil {
		c.addSchemaError(err, v.declared)
	}

	for i := range v.checks {
		ch := &v.checks[i]
		val, ok := args[ch.name]
		if !ok || c.has(ch.name) {
			continue
		}
		ch.check(val, &c)
	}

	if len(c.problems) == 0 {
		return nil
	}
	return c.result(v.tool)
}

// Error is a refusal: the call's arguments are not acceptable. Its text names
// each argument and the bound it broke but never contains an argument's value.
type Error struct {
	// Tool is the tool whose arguments were refused.
	Tool string
	// Problems lists the problems found, whole-object problems first, then
	// by argument name; at most [MaxProblems].
	Problems []Problem
	// Omitted counts further problems not listed in Problems.
	Omitted int
}

// Problem is one reason for a refusal.
type Problem struct {
	// Argument is the top-level argument concerned, or "" for the
	// arguments object as a whole. Names chosen by the caller are cut
	// to a bounded length.
	Argument string
	// Message says what is wrong. It never contains the argument's value;
	// for a problem inside a nested value it starts with the location
	// within the argument as a JSON pointer.
	Message string
}

// Error returns the refusal as one line, for example:
//
//	invalid arguments for "read_file": argument "path": escapes the allowed directories [/srv/data]; argument "extra": unknown argument
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("invalid arguments for ")
	b.WriteString(strconv.Quote(e.Tool))
	b.WriteString(": ")
	for i, p := range e.Problems {
		if i > 0 {
			b.WriteString("; ")
		}
		if p.Argument != "" {
			b.WriteString("argument ")
			b.WriteString(strconv.Quote(p.Argument))
			b.WriteString(": ")
		}
		b.WriteString(p.Message)
	}
	if e.Omitted > 0 {
		fmt.Fprintf(&b, "; ... and %d more", e.Omitted)
	}
	return b.String()
}

// collector gathers problems during one Validate call.
type collector struct {
	problems []Problem
}

func (c *collector) add(arg, msg string) {
	c.problems = append(c.problems, Problem{Argument: truncate(arg, maxNameBytes), Message: msg})
}

// has reports whether arg already has a problem.
func (c *collector) has(arg string) bool {
	arg = truncate(arg, maxNameBytes)
	for _, p := range c.problems {
		if p.Argument == arg {
			return true
		}
	}
	return false
}

// result sorts the problems (stable, so each argument keeps the order its
// checks ran in) and bounds them.
func (c *collector) result(tool string) *Error {
	slices.SortStableFunc(c.problems, func(a, b Problem) int {
		return strings.Compare(a.Argument, b.Argument)
	})
	e := &Error{Tool: tool, Problems: c.problems}
	if n := len(e.Problems); n > MaxProblems {
		e.Omitted = n - MaxProblems
		e.Problems = slices.Clip(e.Problems[:MaxProblems])
	}
	return e
}

// truncate cuts s to at most n bytes without splitting a UTF-8 sequence and
// marks the cut with an ellipsis.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	i := n
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i] + "…"
}
