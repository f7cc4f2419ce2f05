package policy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// CompileError is one problem [Compile] found in a policy file. Compile reports every
// problem it finds, joined with [errors.Join]; use [errors.As] to get at the first one.
type CompileError struct {
	// File is the [Source.Name].
	File string
	// Line is the 1-based line of the problem; 0 if unknown.
	Line int
	// Rule is the rule's id, "" if the rule has no valid id or the problem is not in a rule.
	Rule string
	// Index is the 1-based position of the rule in its file; 0 if the problem is not in a rule.
	Index int
	// Msg describes the problem.
	Msg string
}

// Error formats the problem as "file:line: rule "id": message".
func (e *CompileError) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		b.WriteByte(':')
		b.WriteString(strconv.Itoa(e.Line))
	}
	b.WriteString(": ")
	switch {
	case e.Rule != "":
		fmt.Fprintf(&b, "rule %q: ", e.Rule)
	case e.Index > 0:
		fmt.Fprintf(&b, "rule %d: ", e.Index)
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Bounds on the parts of a rule.
const (
	maxDescription = 1024
	maxCondition   = 8 << 10
	maxListLen     = 1024
)

// ruleSpec is one rule as written, before validation.
type ruleSpec struct {
	file  string
	index int // 1-based position in its file
	line  int // line of the rule's mapping

	id     string
	idLine int
	hasID  bool

	description string

	agents, tools, classes listSpec

	when     string
	whenLine int
	hasWhen  bool

	effect     string
	effectLine int
	hasEffect  bool

	// mode is "enforce" or "shadow": the rule's own, or its file's.
	mode     string
	modeLine int
	hasMode  bool

	// on is "call" or "result": what the rule judges.
	on     string
	onLine int
	hasOn  bool
}

// listSpec is one of match.agents, match.tools or match.classes.
type listSpec struct {
	present bool
	line    int
	items   []itemSpec
}

type itemSpec struct {
	value string
	line  int
}

// parser walks one file's YAML node tree, collecting rules and problems.
type parser struct {
	file  string
	errs  []error
	rules []ruleSpec
}

// modes are the values of a rule's or a file's mode.
var modes = []string{"enforce", "shadow"}

// errorf records a problem outside any rule.
func (p *parser) errorf(line int, format string, args ...any) {
	p.errs = append(p.errs, &CompileError{File: p.file, Line: line, Msg: fmt.Sprintf(format, args...)})
}

// ruleErrorf records a problem in rule r.
func (p *parser) ruleErrorf(r *ruleSpec, line int, format string, args ...any) {
	p.errs = append(p.errs, ruleError(r, line, fmt.Sprintf(format, args...)))
}

func ruleError(r *ruleSpec, line int, msg string) *CompileError {
	e := &CompileError{File: r.file, Line: line, Index: r.index, Msg: msg}
	if r.hasID && validID(r.id) {
		e.Rule = r.id
	}
	return e
}

// parseSource parses one policy file. Problems are returned, not fatal: parsing goes on
// with the next rule so that one run reports as much as it can.
func parseSource(src Source) ([]ruleSpec, []error) {
	p := &parser{file: src.Name}
	dec := yaml.NewDecoder(bytes.NewReader(src.Data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil // an empty file holds no rules
		}
		p.yamlError(err)
		return nil, p.errs
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		if err != nil {
			p.yamlError(err)
		} else {
			p.errorf(extra.Line, "more than one YAML document")
		}
		return nil, p.errs
	}
	p.file1(&doc)
	return p.rules, p.errs
}

// yamlError records a syntax error from the YAML decoder, lifting its line number
// ("yaml: line 3: ...") into the position so that it reads like every other problem.
func (p *parser) yamlError(err error) {
	msg := err.Error()
	rest, ok := strings.CutPrefix(msg, "yaml: line ")
	if ok {
		num, after, found := strings.Cut(rest, ": ")
		if line, err := strconv.Atoi(num); found && err == nil && line > 0 {
			p.errorf(line, "invalid YAML: %s", after)
			return
		}
	}
	p.errorf(0, "invalid YAML: %s", strings.TrimPrefix(msg, "yaml: "))
}

func (p *parser) file1(doc *yaml.Node) {
	if len(doc.Content) != 1 {
		p.errorf(doc.Line, "invalid YAML document")
		return
	}
	root := doc.Content[0]
	if isNull(root) {
		return
	}
	if p.alias(root) {
		return
	}
	if root.Kind != yaml.MappingNode {
		p.errorf(root.Line, "want a mapping with key \"rules\", got %s", kindName(root))
		return
	}
	seen := map[string]bool{}
	var fileMode string
	var fileModeLine int
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		key, ok := p.key(k, seen)
		if !ok {
			continue
		}
		switch key {
		case "rules":
			p.ruleList(v)
		case "mode":
			// A whole file in shadow mode: every rule without a mode of its own is shadow.
			if v.Kind != yaml.ScalarNode || !slices.Contains(modes, v.Value) {
				p.errorf(v.Line, "mode: want enforce or shadow")
				continue
			}
			fileMode, fileModeLine = v.Value, v.Line
		default:
			p.errorf(k.Line, "unknown key %q", key)
		}
	}
	for i := range p.rules {
		if r := &p.rules[i]; !r.hasMode && fileMode != "" {
			r.mode, r.modeLine, r.hasMode = fileMode, fileModeLine, true
		}
	}
}

// key checks one mapping key and reports whether it is usable.
func (p *parser) key(k *yaml.Node, seen map[string]bool) (string, bool) {
	if p.alias(k) {
		return "", false
	}
	if k.Kind != yaml.ScalarNode {
		p.errorf(k.Line, "mapping key is a %s, want a string", kindName(k))
		return "", false
	}
	if seen[k.Value] {
		p.errorf(k.Line, "duplicate key %q", k.Value)
		return "", false
	}
	seen[k.Value] = true
	return k.Value, true
}

// alias reports, as a problem, a YAML alias: they are not supported, which keeps the work
// of parsing proportional to the size of the file.
func (p *parser) alias(n *yaml.Node) bool {
	if n.Kind == yaml.AliasNode {
		p.errorf(n.Line, "YAML aliases are not supported")
		return true
	}
	return false
}

func (p *parser) ruleList(n *yaml.Node) {
	if isNull(n) || p.alias(n) {
		return
	}
	if n.Kind != yaml.SequenceNode {
		p.errorf(n.Line, "rules: want a list, got %s", kindName(n))
		return
	}
	for i, item := range n.Content {
		p.rule(i+1, item)
	}
}

func (p *parser) rule(index int, n *yaml.Node) {
	if p.alias(n) {
		return
	}
	r := ruleSpec{file: p.file, index: index, line: n.Line}
	if n.Kind != yaml.MappingNode {
		p.ruleErrorf(&r, n.Line, "want a mapping, got %s", kindName(n))
		return
	}
	// Read the id first so that every later problem can name the rule.
	for i := 0; i+1 < len(n.Content); i += 2 {
		if k := n.Content[i]; k.Kind == yaml.ScalarNode && k.Value == "id" {
			if v, ok := p.scalar(&r, n.Content[i+1], "id"); ok {
				r.id, r.idLine, r.hasID = v, n.Content[i+1].Line, true
			}
			break
		}
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		key, ok := p.ruleKey(&r, k, seen)
		if !ok {
			continue
		}
		switch key {
		case "id":
			// read above
		case "description":
			if s, ok := p.scalar(&r, v, key); ok {
				if len(s) > maxDescription {
					p.ruleErrorf(&r, v.Line, "description: longer than %d bytes", maxDescription)
				}
				r.description = s
			}
		case "match":
			p.match(&r, v)
		case "when":
			// A null condition is an empty one, not an absent one: "when:" with the
			// condition forgotten must not turn into a rule that always applies.
			if isNull(v) {
				r.whenLine, r.hasWhen = v.Line, true
			} else if s, ok := p.scalar(&r, v, key); ok {
				r.when, r.whenLine, r.hasWhen = s, v.Line, true
			}
		case "effect":
			if s, ok := p.scalar(&r, v, key); ok {
				r.effect, r.effectLine, r.hasEffect = s, v.Line, true
			}
		case "mode":
			if s, ok := p.scalar(&r, v, key); ok {
				r.mode, r.modeLine, r.hasMode = s, v.Line, true
			}
		case "on":
			if s, ok := p.scalar(&r, v, key); ok {
				r.on, r.onLine, r.hasOn = s, v.Line, true
			}
		default:
			p.ruleErrorf(&r, k.Line, "unknown key %q", key)
		}
	}
	p.rules = append(p.rules, r)
}

// ruleKey is key for a mapping inside rule r, so that problems name the rule.
func (p *parser) ruleKey(r *ruleSpec, k *yaml.Node, seen map[string]bool) (string, bool) {
	if k.Kind == yaml.AliasNode {
		p.ruleErrorf(r, k.Line, "YAML aliases are not supported")
		return "", false
	}
	if k.Kind != yaml.ScalarNode {
		p.ruleErrorf(r, k.Line, "mapping key is a %s, want a string", kindName(k))
		return "", false
	}
	if seen[k.Value] {
		p.ruleErrorf(r, k.Line, "duplicate key %q", k.Value)
		return "", false
	}
	seen[k.Value] = true
	return k.Value, true
}

// scalar returns the text of a scalar value. A null value counts as absent.
func (p *parser) scalar(r *ruleSpec, n *yaml.Node, field string) (string, bool) {
	switch {
	case n.Kind == yaml.AliasNode:
		p.ruleErrorf(r, n.Line, "%s: YAML aliases are not supported", field)
		return "", false
	case isNull(n):
		return "", false
	case n.Kind != yaml.ScalarNode:
		p.ruleErrorf(r, n.Line, "%s: want a string, got %s", field, kindName(n))
		return "", false
	}
	return n.Value, true
}

func (p *parser) match(r *ruleSpec, n *yaml.Node) {
	if n.Kind == yaml.AliasNode {
		p.ruleErrorf(r, n.Line, "match: YAML aliases are not supported")
		return
	}
	if isNull(n) {
		p.ruleErrorf(r, n.Line, "match: no value (omit match to match any call)")
		return
	}
	if n.Kind != yaml.MappingNode {
		p.ruleErrorf(r, n.Line, "match: want a mapping, got %s", kindName(n))
		return
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		key, ok := p.ruleKey(r, k, seen)
		if !ok {
			continue
		}
		switch key {
		case "agents":
			r.agents = p.list(r, v, "match.agents")
		case "tools":
			r.tools = p.list(r, v, "match.tools")
		case "classes":
			r.classes = p.list(r, v, "match.classes")
		default:
			p.ruleErrorf(r, k.Line, "match: unknown key %q", key)
		}
	}
}

// list reads a list of strings. A null value is an error, not "any": a list whose
// entries were forgotten must not widen the rule.
func (p *parser) list(r *ruleSpec, n *yaml.Node, field string) listSpec {
	switch {
	case n.Kind == yaml.AliasNode:
		p.ruleErrorf(r, n.Line, "%s: YAML aliases are not supported", field)
		return listSpec{}
	case isNull(n):
		p.ruleErrorf(r, n.Line, "%s: no value (omit the list to match any)", field)
		return listSpec{}
	case n.Kind != yaml.SequenceNode:
		p.ruleErrorf(r, n.Line, "%s: want a list, got %s", field, kindName(n))
		return listSpec{}
	case len(n.Content) == 0:
		p.ruleErrorf(r, n.Line, "%s: empty list matches nothing (omit the list to match any)", field)
		return listSpec{}
	case len(n.Content) > maxListLen:
		p.ruleErrorf(r, n.Line, "%s: more than %d entries", field, maxListLen)
		return listSpec{}
	}
	l := listSpec{present: true, line: n.Line, items: make([]itemSpec, 0, len(n.Content))}
	for _, item := range n.Content {
		if item.Kind != yaml.ScalarNode || isNull(item) {
			p.ruleErrorf(r, item.Line, "%s: want a string entry, got %s", field, kindName(item))
			continue
		}
		l.items = append(l.items, itemSpec{value: item.Value, line: item.Line})
	}
	return l
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	case yaml.ScalarNode:
		if isNull(n) {
			return "null"
		}
		return "a scalar"
	}
	return "a document"
}
