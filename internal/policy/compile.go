package policy

import (
	"cmp"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// idPattern is the syntax of a rule id.
var idPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)

func validID(id string) bool { return idPattern.MatchString(id) }

// Compile parses and compiles a policy bundle. sources are the policy files, in bundle
// order; tools maps every exposed tool name to its info.
//
// Compile reports every problem it finds at once, joined with [errors.Join]. A problem in
// a file is a [*CompileError] naming file, line and rule, for example
//
//	policies/mail.yaml:12: rule "no-external": match.tools: unknown tool "send_mial"
//
// Problems with the arguments themselves (an unknown tool class, a source without a name)
// are plain errors.
func Compile(sources []Source, tools map[string]ToolInfo) (*Policy, error) {
	var errs []error

	// The tool set, sorted so that expansion and error messages are deterministic.
	names := make([]string, 0, len(tools))
	for name := range tools {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		switch info := tools[name]; {
		case name == "":
			errs = append(errs, errors.New("tools: empty tool name"))
		case !validClass(info.Class):
			errs = append(errs, fmt.Errorf("tools: tool %q: unknown class %q", name, info.Class))
		}
	}

	seenSource := make(map[string]bool, len(sources))
	for i, s := range sources {
		switch {
		case s.Name == "":
			errs = append(errs, fmt.Errorf("source %d: empty name", i+1))
		case strings.IndexByte(s.Name, 0) >= 0:
			errs = append(errs, fmt.Errorf("source %q: name contains a NUL byte", s.Name))
		case seenSource[s.Name]:
			errs = append(errs, fmt.Errorf("source %q: duplicate name", s.Name))
		}
		seenSource[s.Name] = true
	}

	var specs []ruleSpec
	var fileErrs []error // *CompileError values only
	for _, s := range sources {
		rs, es := parseSource(s)
		specs = append(specs, rs...)
		fileErrs = append(fileErrs, es...)
	}

	env, err := newEnv()
	if err != nil {
		// Not the user's fault: the environment is fixed.
		return nil, fmt.Errorf("create condition environment: %w", err)
	}
	c := &compiler{
		env:   env,
		tools: tools,
		names: names,
		ids:   make(map[string]*ruleSpec, len(specs)),
		conds: make(map[string]compiledCond),
	}
	rules := make([]*rule, 0, len(specs))
	toolSets := make([][]string, 0, len(specs))
	for i := range specs {
		r, ts := c.rule(&specs[i])
		rules = append(rules, r)
		toolSets = append(toolSets, ts)
	}
	fileErrs = append(fileErrs, c.errs...)
	if len(errs)+len(fileErrs) > 0 {
		sortByPosition(fileErrs, sources)
		return nil, errors.Join(append(errs, fileErrs...)...)
	}

	p := &Policy{
		version: version(sources),
		rules:   rules,
		tools:   make(map[string]*toolRules, len(names)),
	}
	for _, name := range names {
		p.tools[name] = &toolRules{class: tools[name].Class, last: -1}
	}
	// Shadow rules index into a second set that also holds every enforcing rule, for the
	// tools they name: the would-be decision if they were enforced.
	for i, r := range rules {
		if !r.shadow {
			continue
		}
		p.shadowIDs = append(p.shadowIDs, r.id)
		for _, name := range toolSets[i] {
			if p.shadow == nil {
				p.shadow = make(map[string]*toolRules)
			}
			if p.shadow[name] == nil {
				p.shadow[name] = &toolRules{class: tools[name].Class, last: -1}
			}
		}
	}
	for i, r := range rules {
		for _, name := range toolSets[i] {
			if r.result {
				// Once, even when the rule names the tool twice (say "a" and "a*").
				if rs := p.tools[name].results; len(rs) == 0 || rs[len(rs)-1] != r {
					p.tools[name].results = append(rs, r)
				}
				continue
			}
			if !r.shadow {
				p.tools[name].add(r, i)
			}
			if st := p.shadow[name]; st != nil {
				st.add(r, i)
			}
		}
	}
	return p, nil
}

// sortByPosition orders problems in files by file, in bundle order, then line, keeping
// the order they were found in otherwise.
func sortByPosition(errs []error, sources []Source) {
	pos := make(map[string]int, len(sources))
	for i, s := range sources {
		if _, ok := pos[s.Name]; !ok {
			pos[s.Name] = i
		}
	}
	slices.SortStableFunc(errs, func(a, b error) int {
		ea, eb := a.(*CompileError), b.(*CompileError)
		if c := cmp.Compare(pos[ea.File], pos[eb.File]); c != 0 {
			return c
		}
		return cmp.Compare(ea.Line, eb.Line)
	})
}

// compiler validates and compiles rules one at a time, collecting problems.
type compiler struct {
	env   *celEnv
	tools map[string]ToolInfo
	names []string // sorted tool names
	ids   map[string]*ruleSpec
	// conds caches compiled conditions by source text: bundles often repeat them.
	conds map[string]compiledCond
	errs  []error
}

func (c *compiler) errorf(r *ruleSpec, line int, format string, args ...any) {
	c.errs = append(c.errs, ruleError(r, line, fmt.Sprintf(format, args...)))
}

// rule compiles one rule and returns it with the tools it matches. On problems it records
// them and returns what it could build; the caller discards the result.
func (c *compiler) rule(s *ruleSpec) (*rule, []string) {
	r := &rule{id: s.id, effect: Effect(s.effect)}

	switch {
	case !s.hasID:
		c.errorf(s, s.line, "missing id")
	case !validID(s.id):
		c.errorf(s, s.idLine, "invalid id %q: want [a-z0-9][a-z0-9._-]{0,63}", s.id)
	default:
		if first, dup := c.ids[s.id]; dup {
			c.errorf(s, s.idLine, "duplicate id (first defined at %s:%d)", first.file, first.idLine)
		} else {
			c.ids[s.id] = s
		}
	}

	if s.hasMode {
		switch s.mode {
		case "enforce":
		case "shadow":
			r.shadow = true
		default:
			c.errorf(s, s.modeLine, "unknown mode %q: want enforce or shadow", s.mode)
		}
	}

	if s.hasOn {
		switch s.on {
		case "call":
		case "result":
			r.result = true
			if s.hasEffect && s.effect != string(Deny) {
				c.errorf(s, s.effectLine, "effect %q on results: a rule on results can only deny (a result passes unless a rule denies it)", s.effect)
			}
			if r.shadow {
				c.errorf(s, s.modeLine, "mode shadow is not supported for rules on results")
			}
		default:
			c.errorf(s, s.onLine, "unknown on %q: want call or result", s.on)
		}
	}

	switch {
	case !s.hasEffect:
		c.errorf(s, s.line, "missing effect")
	case !r.effect.valid():
		c.errorf(s, s.effectLine, "unknown effect %q: want allow, deny, approve or hold", s.effect)
	}

	var agents []string
	if s.agents.present {
		agents = make([]string, 0, len(s.agents.items))
		for _, it := range s.agents.items {
			if it.value == "" || (strings.Contains(it.value, "*") && it.value != "*") {
				c.errorf(s, it.line, "match.agents: invalid agent %q: want an agent id or \"*\"", it.value)
				continue
			}
			agents = append(agents, it.value)
		}
	}
	r.agents = newAgentSet(agents)

	tools := c.toolSet(s)

	if s.hasWhen {
		if cond, ok := c.condition(s, r.result); ok {
			r.prg, r.flow = cond.prg, cond.flow
		}
	}

	switch r.effect {
	case Deny:
		r.reason = fmt.Sprintf("denied by rule %q", r.id)
	case Approve, Hold:
		r.reason = fmt.Sprintf("approval required by rule %q", r.id)
	default:
		r.reason = fmt.Sprintf("allowed by rule %q", r.id)
	}
	r.errReason = fmt.Sprintf("condition of rule %q could not be evaluated", r.id)
	return r, tools
}

// toolSet expands match.tools and match.classes into the sorted names of the known tools
// the rule matches.
func (c *compiler) toolSet(s *ruleSpec) []string {
	var byName map[string]bool // nil: any tool
	if s.tools.present {
		byName = make(map[string]bool)
		for _, it := range s.tools.items {
			v := it.value
			prefix, isPattern := strings.CutSuffix(v, "*")
			switch {
			case v == "":
				c.errorf(s, it.line, "match.tools: empty tool name")
			case strings.Contains(prefix, "*"):
				c.errorf(s, it.line, "match.tools: invalid pattern %q: \"*\" may only end a pattern", v)
			case !isPattern:
				if _, ok := c.tools[v]; !ok {
					c.errorf(s, it.line, "match.tools: unknown tool %q", v)
					continue
				}
				byName[v] = true
			default:
				n := 0
				for _, name := range c.names {
					if strings.HasPrefix(name, prefix) {
						byName[name] = true
						n++
					}
				}
				if n == 0 {
					c.errorf(s, it.line, "match.tools: pattern %q matches no known tool", v)
				}
			}
		}
	}
	var byClass map[string]bool // nil: any class
	if s.classes.present {
		byClass = make(map[string]bool)
		for _, it := range s.classes.items {
			if !validClass(it.value) {
				c.errorf(s, it.line, "match.classes: unknown class %q: want read, write, external or destructive", it.value)
				continue
			}
			byClass[it.value] = true
		}
	}
	var out []string
	for _, name := range c.names {
		if byName != nil && !byName[name] {
			continue
		}
		if byClass != nil && !byClass[c.tools[name].Class] {
			continue
		}
		out = append(out, name)
	}
	return out
}

func (c *compiler) condition(s *ruleSpec, onResult bool) (compiledCond, bool) {
	src := s.when
	switch {
	case strings.TrimSpace(src) == "":
		c.errorf(s, s.whenLine, "when: empty condition (omit when for a rule without condition)")
		return compiledCond{}, false
	case len(src) > maxCondition:
		c.errorf(s, s.whenLine, "when: condition longer than %d bytes", maxCondition)
		return compiledCond{}, false
	}
	cond, ok := c.conds[src]
	if !ok {
		cond = c.env.compile(src)
		c.conds[src] = cond
	}
	if cond.err != nil {
		c.errorf(s, s.whenLine, "condition: %v", cond.err)
		return compiledCond{}, false
	}
	if cond.result && !onResult {
		c.errorf(s, s.whenLine, "condition: result is only known to rules with on: result")
		return compiledCond{}, false
	}
	bad := false
	for _, t := range cond.tools {
		if _, ok := c.tools[t]; !ok && t != anyTool {
			c.errorf(s, s.whenLine, "condition: unknown tool %q in a history function", t)
			bad = true
		}
	}
	return cond, !bad
}
