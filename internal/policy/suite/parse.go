package suite

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"math"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/chaperone-dev/chaperone/internal/policy"
)

// parsed is a suite as decoded, before its policy files are read.
type parsed struct {
	Suite
	// policyLines are the lines of the entries of policies, by joined path.
	policyLines map[string]int
}

// decoder decodes one suite file, collecting problems rather than stopping at the first.
type decoder struct {
	file string
	errs []error
	// full is set once maxProblems have been recorded; later problems are dropped.
	full bool
}

func (d *decoder) errorf(line int, format string, args ...any) {
	if d.full {
		return
	}
	if len(d.errs) == maxProblems {
		d.errs = append(d.errs, &FileError{File: d.file, Msg: "too many problems"})
		d.full = true
		return
	}
	d.errs = append(d.errs, &FileError{File: d.file, Line: line, Msg: fmt.Sprintf(format, args...)})
}

// err returns the problems recorded, in line order, joined.
func (d *decoder) err() error {
	errs := d.errs
	if d.full {
		errs = errs[:len(errs)-1] // "too many problems" stays last
	}
	slices.SortStableFunc(errs, func(a, b error) int {
		return cmp.Compare(a.(*FileError).Line, b.(*FileError).Line)
	})
	return errors.Join(d.errs...)
}

// parse decodes a suite file. path is used in problems and to resolve policy paths.
func parse(path string, data []byte) (*parsed, error) {
	d := &decoder{file: path}
	s := &parsed{Suite: Suite{Path: path}, policyLines: map[string]int{}}
	if len(data) > MaxFileBytes {
		return nil, &FileError{File: path, Msg: fmt.Sprintf("larger than %d bytes", MaxFileBytes)}
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, &FileError{File: path, Msg: "empty suite: no cases"}
		}
		return nil, yamlError(path, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		if err != nil {
			return nil, yamlError(path, err)
		}
		return nil, &FileError{File: path, Line: extra.Line, Msg: "more than one YAML document"}
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 {
		return nil, &FileError{File: path, Line: doc.Line, Msg: "invalid YAML document"}
	}
	root := doc.Content[0]
	if isNull(root) {
		return nil, &FileError{File: path, Line: root.Line, Msg: "empty suite: no cases"}
	}
	if !d.mapping(root, "suite") {
		return nil, d.err()
	}

	var defaultPrincipal *yaml.Node
	var casesNode *yaml.Node
	d.fields(root, func(key string, k, v *yaml.Node) {
		switch key {
		case "policies":
			d.policies(s, v)
		case "tools":
			s.Tools = d.tools(v)
		case "principal":
			if d.mapping(v, "principal") {
				defaultPrincipal = v
			}
		case "cases":
			casesNode = v
		default:
			d.errorf(k.Line, "unknown key %q", key)
		}
	})
	switch {
	case casesNode == nil:
		d.errorf(root.Line, "empty suite: no cases")
	case casesNode.Kind == yaml.AliasNode:
		d.errorf(casesNode.Line, "cases: YAML aliases are not supported")
	case casesNode.Kind != yaml.SequenceNode:
		d.errorf(casesNode.Line, "cases: want a list, got %s", kindName(casesNode))
	case len(casesNode.Content) == 0:
		d.errorf(casesNode.Line, "empty suite: no cases")
	case len(casesNode.Content) > MaxCases:
		d.errorf(casesNode.Line, "cases: more than %d cases", MaxCases)
	default:
		names := make(map[string]int, len(casesNode.Content))
		s.Cases = make([]Case, 0, len(casesNode.Content))
		for _, n := range casesNode.Content {
			c, ok := d.caseSpec(n, defaultPrincipal)
			if !ok {
				continue
			}
			if prev, dup := names[c.Name]; dup {
				d.errorf(c.Line, "case %q: duplicate name (first at line %d)", c.Name, prev)
				continue
			}
			names[c.Name] = c.Line
			s.Cases = append(s.Cases, c)
		}
	}
	if len(d.errs) > 0 {
		return nil, d.err()
	}
	if s.Tools != nil {
		if err := checkTools(path, s.Tools, s.Cases); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// yamlError turns a YAML syntax error ("yaml: line 3: ...") into a *FileError with the line.
func yamlError(path string, err error) error {
	msg := err.Error()
	if rest, ok := strings.CutPrefix(msg, "yaml: line "); ok {
		num, after, found := strings.Cut(rest, ": ")
		if line, err := strconv.Atoi(num); found && err == nil && line > 0 {
			return &FileError{File: path, Line: line, Msg: "invalid YAML: " + after}
		}
	}
	return &FileError{File: path, Msg: "invalid YAML: " + strings.TrimPrefix(msg, "yaml: ")}
}

// mapping reports whether n is a mapping, recording a problem if not.
func (d *decoder) mapping(n *yaml.Node, field string) bool {
	switch {
	case n.Kind == yaml.AliasNode:
		d.errorf(n.Line, "%s: YAML aliases are not supported", field)
	case n.Kind != yaml.MappingNode:
		d.errorf(n.Line, "%s: want a mapping, got %s", field, kindName(n))
	default:
		return true
	}
	return false
}

// fields calls f for each key of the mapping n, recording bad and duplicate keys.
func (d *decoder) fields(n *yaml.Node, f func(key string, k, v *yaml.Node)) {
	seen := make(map[string]bool, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode || k.ShortTag() != "!!str" {
			d.errorf(k.Line, "mapping key is a %s, want a string", kindName(k))
			continue
		}
		if seen[k.Value] {
			d.errorf(k.Line, "duplicate key %q", k.Value)
			continue
		}
		seen[k.Value] = true
		f(k.Value, k, v)
	}
}

// str decodes a string value.
func (d *decoder) str(n *yaml.Node, field string) (string, bool) {
	switch {
	case n.Kind == yaml.AliasNode:
		d.errorf(n.Line, "%s: YAML aliases are not supported", field)
	case n.Kind != yaml.ScalarNode || n.ShortTag() != "!!str":
		d.errorf(n.Line, "%s: want a string, got %s", field, kindName(n))
	default:
		return n.Value, true
	}
	return "", false
}

// nonEmpty decodes a string value that must not be empty.
func (d *decoder) nonEmpty(n *yaml.Node, field string) (string, bool) {
	v, ok := d.str(n, field)
	if ok && v == "" {
		d.errorf(n.Line, "%s: empty", field)
		return "", false
	}
	return v, ok
}

// integer decodes an integer value in [lo, hi].
func (d *decoder) integer(n *yaml.Node, field string, lo, hi int64) (int64, bool) {
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" {
		d.errorf(n.Line, "%s: want an integer, got %s", field, kindName(n))
		return 0, false
	}
	var v int64
	if err := n.Decode(&v); err != nil || v < lo || v > hi {
		d.errorf(n.Line, "%s: want an integer from %d to %d, got %s", field, lo, hi, n.Value)
		return 0, false
	}
	return v, true
}

// strings decodes a list of strings; an empty list gives a non-nil empty slice.
func (d *decoder) strings(n *yaml.Node, field string) ([]string, bool) {
	switch {
	case n.Kind == yaml.AliasNode:
		d.errorf(n.Line, "%s: YAML aliases are not supported", field)
		return nil, false
	case n.Kind != yaml.SequenceNode:
		d.errorf(n.Line, "%s: want a list, got %s", field, kindName(n))
		return nil, false
	}
	out := make([]string, 0, len(n.Content))
	ok := true
	for _, item := range n.Content {
		v, good := d.str(item, field)
		ok = ok && good
		out = append(out, v)
	}
	return out, ok
}

func (d *decoder) policies(s *parsed, n *yaml.Node) {
	names, ok := d.strings(n, "policies")
	if !ok {
		return
	}
	if len(names) == 0 {
		d.errorf(n.Line, "policies: empty list (omit it to use every policy file in the directory)")
		return
	}
	dir := filepath.Dir(s.Path)
	s.Policies = make([]string, 0, len(names))
	for i, name := range names {
		line := n.Content[i].Line
		if name == "" {
			d.errorf(line, "policies: empty file name")
			continue
		}
		p := name
		if !filepath.IsAbs(p) {
			p = filepath.Join(dir, p)
		}
		if _, dup := s.policyLines[p]; dup {
			d.errorf(line, "policies: %q listed twice", name)
			continue
		}
		s.policyLines[p] = line
		s.Policies = append(s.Policies, p)
	}
}

func (d *decoder) tools(n *yaml.Node) map[string]Tool {
	if !d.mapping(n, "tools") {
		return nil
	}
	tools := make(map[string]Tool, len(n.Content)/2)
	d.fields(n, func(name string, k, v *yaml.Node) {
		field := "tools." + name
		if name == "" {
			d.errorf(k.Line, "tools: empty tool name")
			return
		}
		var t Tool
		if v.Kind == yaml.MappingNode {
			d.fields(v, func(key string, k, v *yaml.Node) {
				switch key {
				case "class":
					t.Class, _ = d.str(v, field+".class")
				case "upstream":
					t.Upstream, _ = d.nonEmpty(v, field+".upstream")
				default:
					d.errorf(k.Line, "%s: unknown key %q", field, key)
				}
			})
		} else {
			var ok bool
			if t.Class, ok = d.str(v, field); !ok {
				return
			}
		}
		if !validClass(t.Class) {
			d.errorf(v.Line, "%s: class must be one of read, write, external, destructive, got %q", field, t.Class)
			return
		}
		tools[name] = t
	})
	return tools
}

// caseSpec decodes one case. def is the suite's default principal, nil if none.
func (d *decoder) caseSpec(n *yaml.Node, def *yaml.Node) (Case, bool) {
	c := Case{Line: n.Line}
	if !d.mapping(n, "case") {
		return c, false
	}
	before := len(d.errs)
	var principal *yaml.Node
	var hasName, hasTool, hasExpect bool
	c.Facts.Now = DefaultNow
	d.fields(n, func(key string, k, v *yaml.Node) {
		switch key {
		case "name":
			hasName = true
			c.Name, _ = d.nonEmpty(v, "name")
		case "principal":
			if d.mapping(v, "principal") {
				principal = v
			}
		case "tool":
			hasTool = true
			c.Facts.Tool.Name, _ = d.nonEmpty(v, "tool")
		case "args":
			if !d.mapping(v, "args") {
				return
			}
			if args, ok := d.value(v, "args", 0); ok {
				c.Facts.Args = args.(map[string]any)
			}
		case "session":
			d.session(&c, v)
		case "flow":
			d.flow(&c, v)
		case "risk":
			if !d.mapping(v, "risk") {
				return
			}
			d.fields(v, func(key string, k, v *yaml.Node) {
				switch key {
				case "score":
					n, _ := d.integer(v, "risk.score", 0, 100)
					c.Facts.Risk.Score = int(n)
				case "factors":
					c.Facts.Risk.Factors, _ = d.strings(v, "risk.factors")
				case "deviations":
					c.Facts.Risk.Deviations, _ = d.strings(v, "risk.deviations")
				default:
					d.errorf(k.Line, "risk: unknown key %q", key)
				}
			})
		case "now":
			if v.Kind != yaml.ScalarNode || (v.ShortTag() != "!!str" && v.ShortTag() != "!!timestamp") {
				d.errorf(v.Line, "now: want an RFC 3339 time, got %s", kindName(v))
				return
			}
			t, err := time.Parse(time.RFC3339Nano, v.Value)
			if err != nil {
				d.errorf(v.Line, "now: want an RFC 3339 time like 2026-03-02T09:00:00Z, got %q", v.Value)
				return
			}
			c.Facts.Now = t
		case "expect":
			hasExpect = true
			e, ok := d.str(v, "expect")
			if !ok {
				return
			}
			switch eff := policy.Effect(e); eff {
			case policy.Allow, policy.Deny, policy.Approve:
				c.Want.Effect = eff
			default:
				d.errorf(v.Line, "expect: unknown effect %q, want allow, deny or approve", e)
			}
		case "rules":
			if rules, ok := d.strings(v, "rules"); ok {
				c.Want.Rules, c.Want.CheckRules = rules, true
			}
		default:
			d.errorf(k.Line, "unknown key %q", key)
		}
	})
	if !hasName {
		d.errorf(n.Line, "case: name is required")
	}
	if !hasTool {
		d.errorf(n.Line, "case %q: tool is required", c.Name)
	}
	if !hasExpect {
		d.errorf(n.Line, "case %q: expect is required", c.Name)
	}
	if principal == nil {
		principal = def
	}
	if principal != nil {
		d.principal(&c.Facts, principal)
	}
	if c.Facts.Args == nil {
		c.Facts.Args = map[string]any{}
	}
	// Flow functions see a clean session unless the case says otherwise.
	c.flow()
	return c, len(d.errs) == before
}

func (d *decoder) principal(f *policy.Facts, n *yaml.Node) {
	d.fields(n, func(key string, k, v *yaml.Node) {
		field := "principal." + key
		switch key {
		case "agent":
			f.Agent.ID, _ = d.nonEmpty(v, field)
		case "owner":
			f.Agent.Owner, _ = d.str(v, field)
		case "purpose":
			f.Agent.Purpose, _ = d.str(v, field)
		case "environment":
			f.Agent.Environment, _ = d.str(v, field)
		case "autonomy":
			a, _ := d.integer(v, field, 0, 3)
			f.Agent.Autonomy = int(a)
		case "labels":
			if !d.mapping(v, field) {
				return
			}
			f.Agent.Labels = make(map[string]string, len(v.Content)/2)
			d.fields(v, func(key string, _, v *yaml.Node) {
				f.Agent.Labels[key], _ = d.str(v, field+"."+key)
			})
		case "user":
			f.User, _ = d.str(v, field)
		case "task":
			f.Task, _ = d.str(v, field)
		case "groups":
			f.UserGroups, _ = d.strings(v, field)
		case "chain":
			f.Chain, _ = d.strings(v, field)
		default:
			d.errorf(k.Line, "principal: unknown key %q", key)
		}
	})
}

func (d *decoder) session(c *Case, n *yaml.Node) {
	if !d.mapping(n, "session") {
		return
	}
	d.fields(n, func(key string, k, v *yaml.Node) {
		switch key {
		case "id":
			c.Facts.Session.ID, _ = d.str(v, "session.id")
		case "calls":
			c.Facts.Session.Calls, _ = d.integer(v, "session.calls", 0, math.MaxInt64)
		case "untrusted":
			c.flow().SessionUntrusted, _ = d.boolean(v, "session.untrusted")
		case "private":
			c.flow().SessionPrivate, _ = d.boolean(v, "session.private")
		default:
			d.errorf(k.Line, "session: unknown key %q", key)
		}
	})
}

// flow decodes a case's flow facts: where argument values came from and the session's
// history.
func (d *decoder) flow(c *Case, n *yaml.Node) {
	if !d.mapping(n, "flow") {
		return
	}
	f := c.flow()
	d.fields(n, func(key string, k, v *yaml.Node) {
		field := "flow." + key
		switch key {
		case "untrusted":
			f.UntrustedArgs, _ = d.strings(v, field)
		case "trusted":
			f.TrustedArgs, _ = d.strings(v, field)
		case "user":
			f.UserArgs, _ = d.strings(v, field)
		case "sinks":
			f.Sinks, _ = d.strings(v, field)
		case "calls":
			if !d.mapping(v, field) {
				return
			}
			f.CallCounts = map[string]int64{}
			d.fields(v, func(tool string, _, v *yaml.Node) {
				f.CallCounts[tool], _ = d.integer(v, field+"."+tool, 0, math.MaxInt64)
			})
		case "totals":
			if !d.mapping(v, field) {
				return
			}
			f.Totals = map[string]float64{}
			d.fields(v, func(name string, _, v *yaml.Node) {
				if x, ok := d.value(v, field+"."+name, 0); ok {
					if t, isNum := x.(float64); isNum {
						f.Totals[name] = t
					} else {
						d.errorf(v.Line, "%s.%s: want a number, got %s", field, name, kindName(v))
					}
				}
			})
		default:
			d.errorf(k.Line, "flow: unknown key %q", key)
		}
	})
}

func (d *decoder) boolean(n *yaml.Node, field string) (bool, bool) {
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" {
		d.errorf(n.Line, "%s: want true or false, got %s", field, kindName(n))
		return false, false
	}
	var b bool
	if err := n.Decode(&b); err != nil {
		d.errorf(n.Line, "%s: want true or false, got %s", field, n.Value)
		return false, false
	}
	return b, true
}

// value decodes an argument value as encoding/json would decode the same value written
// as JSON: numbers become float64, mappings map[string]any, lists []any.
func (d *decoder) value(n *yaml.Node, field string, depth int) (any, bool) {
	if depth > MaxDepth {
		d.errorf(n.Line, "%s: nested more than %d deep", field, MaxDepth)
		return nil, false
	}
	switch n.Kind {
	case yaml.AliasNode:
		d.errorf(n.Line, "%s: YAML aliases are not supported", field)
		return nil, false
	case yaml.MappingNode:
		m := make(map[string]any, len(n.Content)/2)
		ok := true
		d.fields(n, func(key string, _, v *yaml.Node) {
			val, good := d.value(v, field+"."+key, depth+1)
			ok = ok && good
			m[key] = val
		})
		// fields records bad keys; a mapping with one is not ok.
		return m, ok && len(m) == len(n.Content)/2
	case yaml.SequenceNode:
		l := make([]any, 0, len(n.Content))
		ok := true
		for i, item := range n.Content {
			val, good := d.value(item, field+"["+strconv.Itoa(i)+"]", depth+1)
			ok = ok && good
			l = append(l, val)
		}
		return l, ok
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!str", "!!timestamp":
			return n.Value, true
		case "!!null":
			return nil, true
		case "!!bool":
			var b bool
			if err := n.Decode(&b); err != nil {
				d.errorf(n.Line, "%s: %v", field, err)
				return nil, false
			}
			return b, true
		case "!!int", "!!float":
			var f float64
			if err := n.Decode(&f); err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
				d.errorf(n.Line, "%s: %q is not a JSON number", field, n.Value)
				return nil, false
			}
			return f, true
		}
	}
	d.errorf(n.Line, "%s: unsupported value %s", field, kindName(n))
	return nil, false
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// kindName names a node's kind for problems: "mapping", "list", "int", ...
func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "mapping"
	case yaml.SequenceNode:
		return "list"
	case yaml.AliasNode:
		return "alias"
	case yaml.ScalarNode:
		if n.ShortTag() == "!!null" {
			return "no value"
		}
		return strings.TrimPrefix(n.ShortTag(), "!!")
	}
	return "document"
}
