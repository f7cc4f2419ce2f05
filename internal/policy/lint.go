package policy

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/ast"
	"cel.dev/cel-go/common/operators"
	"cel.dev/cel-go/common/types"
)

// ToolSchema describes a known tool for [Lint].
type ToolSchema struct {
	// Class is the tool's risk class, as for [ToolInfo].
	Class string
	// Args are the top-level argument names of the tool's input schema. Nil means they
	// are unknown, and conditions reading the tool's arguments are not checked.
	Args []string
}

// Finding is one problem [Lint] found in a policy bundle.
type Finding struct {
	// File is the [Source.Name]; "" for a problem with the tools given to Lint.
	File string
	// Line is the 1-based line of the problem; 0 if unknown.
	Line int
	// Rule is the rule's id; "" if the problem is not in a rule or the rule has no valid id.
	Rule string
	// Kind is one of the Kind constants.
	Kind string
	// Message describes the problem.
	Message string
}

// The kinds of [Finding].
const (
	// KindCompile is a problem [Compile] rejects that has no more specific kind.
	KindCompile = "compile"
	// KindType is a condition that does not type-check to bool.
	KindType = "type"
	// KindUnknownTool is a match.tools entry that names no known tool, or a pattern that
	// matches none.
	KindUnknownTool = "unknown-tool"
	// KindUnknownArgument is a condition reading an argument that no tool the rule can
	// match has.
	KindUnknownArgument = "unknown-argument"
	// KindNeverMatches is a rule that can never apply: its match selects no known tool, or
	// its condition is always false.
	KindNeverMatches = "never-matches"
	// KindShadowed is a rule that can never produce a decision because of other rules.
	KindShadowed = "shadowed"
)

// String formats the finding as "file:line: rule "id": kind: message", leaving out the
// parts that are unknown.
func (f Finding) String() string {
	var b strings.Builder
	if f.File != "" {
		b.WriteString(f.File)
		if f.Line > 0 {
			b.WriteByte(':')
			b.WriteString(strconv.Itoa(f.Line))
		}
		b.WriteString(": ")
	}
	if f.Rule != "" {
		fmt.Fprintf(&b, "rule %q: ", f.Rule)
	}
	b.WriteString(f.Kind)
	b.WriteString(": ")
	b.WriteString(f.Message)
	return b.String()
}

// Lint checks a policy bundle against the known tools and reports every problem at once,
// sorted by file (in bundle order) and line. Problems without a file, with the tools
// given, come first.
//
// It reports everything [Compile] rejects (kinds compile, type and unknown-tool) and, for
// the rules that compile, what Compile accepts but cannot be what the author meant:
//
//   - unknown-argument: the condition reads args.x, args["x"], has(args.x) or "x" in
//     args, and no tool the rule can match has an argument x. Rules matching a tool
//     whose arguments are unknown are not checked.
//   - never-matches: the match selects no known tool once patterns and classes are
//     expanded, or the condition is constant false.
//   - shadowed: the rule can never produce a decision. Either another rule without a
//     condition (or with a constant true one) of a stronger effect matches every agent and
//     tool this one does (a deny over an allow or approve, an approve over an allow); or
//     an earlier deny rule without a condition matches every agent and tool of this deny
//     rule, and deny rules are evaluated in order, first match wins; or an earlier rule
//     has the same agents, tools, condition, effect and mode. An enforcing rule is only
//     shadowed by enforcing rules; a shadow rule by rules of either mode.
//
// A source that does not parse yields its problems and the other sources are still
// linted. A rule with a compile problem gets no other findings and shadows nothing.
func Lint(sources []Source, tools map[string]ToolSchema) []Finding {
	infos := make(map[string]ToolInfo, len(tools))
	for name, t := range tools {
		infos[name] = ToolInfo{Class: t.Class}
	}

	var out []Finding
	broken := map[ruleRef]bool{}
	if _, err := Compile(sources, infos); err != nil {
		for _, e := range flatten(err) {
			ce, ok := e.(*CompileError)
			if !ok {
				out = append(out, Finding{Kind: KindCompile, Message: e.Error()})
				continue
			}
			out = append(out, compileFinding(ce))
			if ce.Index > 0 {
				broken[ruleRef{ce.File, ce.Index}] = true
			}
		}
	}

	if l := newLinter(infos, tools); l != nil {
		for _, s := range sources {
			specs, errs := parseSource(s)
			if len(errs) > 0 && len(specs) == 0 {
				continue // Compile reported why
			}
			for i := range specs {
				if broken[ruleRef{specs[i].file, specs[i].index}] {
					continue
				}
				l.add(&specs[i])
			}
		}
		out = append(out, l.check()...)
	}

	pos := make(map[string]int, len(sources))
	for i, s := range sources {
		if _, ok := pos[s.Name]; !ok {
			pos[s.Name] = i + 1
		}
	}
	slices.SortStableFunc(out, func(a, b Finding) int {
		return cmp.Or(cmp.Compare(pos[a.File], pos[b.File]), cmp.Compare(a.Line, b.Line))
	})
	return out
}

// ruleRef names a rule by its file and its 1-based position there.
type ruleRef struct {
	file  string
	index int
}

// flatten undoes errors.Join, one level deep: Compile joins flat lists.
func flatten(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// compileFinding converts a problem Compile found.
//
// The kind is derived from the message, which this file and compile.go share.
// TODO(#4): give CompileError a reason field so that this need not look at text.
func compileFinding(e *CompileError) Finding {
	kind := KindCompile
	switch m := e.Msg; {
	case strings.HasPrefix(m, "match.tools: unknown tool "),
		strings.HasPrefix(m, "match.tools: pattern ") && strings.HasSuffix(m, " matches no known tool"):
		kind = KindUnknownTool
	case strings.HasPrefix(m, "condition: has type "):
		kind = KindType
	}
	msg := e.Msg
	if e.Rule == "" && e.Index > 0 {
		msg = fmt.Sprintf("rule %d: %s", e.Index, msg)
	}
	return Finding{File: e.File, Line: e.Line, Rule: e.Rule, Kind: kind, Message: msg}
}

// linter holds the compiled rules of a bundle for the checks beyond Compile's.
type linter struct {
	env    *celEnv
	comp   *compiler // expands tool sets; its errors are ignored
	names  []string  // sorted tool names
	index  map[string]int
	schema map[string]ToolSchema
	rules  []*lintRule
	// conds caches the checked conditions by source.
	conds map[string]*cel.Ast
}

// lintRule is one rule that compiled.
type lintRule struct {
	spec   *ruleSpec
	effect Effect
	shadow bool // mode: shadow
	result bool // on: result — judges results, never competes with the rules on calls
	agents map[string]bool
	// anyAgent is set when match.agents is omitted or holds "*".
	anyAgent bool
	tools    toolBits
	cond     *cel.Ast // nil without condition
	condText string   // the condition, normalised, for finding duplicates
	// always is set for a rule without condition or with a constant true one; never for
	// one that cannot apply.
	always, never bool
}

func newLinter(infos map[string]ToolInfo, schema map[string]ToolSchema) *linter {
	env, err := newEnv()
	if err != nil {
		return nil // Compile reported it
	}
	names := make([]string, 0, len(infos))
	for name := range infos {
		names = append(names, name)
	}
	slices.Sort(names)
	index := make(map[string]int, len(names))
	for i, n := range names {
		index[n] = i
	}
	return &linter{
		env:    env,
		comp:   &compiler{env: env, tools: infos, names: names, ids: map[string]*ruleSpec{}, conds: map[string]compiledCond{}},
		names:  names,
		index:  index,
		schema: schema,
		conds:  map[string]*cel.Ast{},
	}
}

// add records one rule that compiled.
func (l *linter) add(s *ruleSpec) {
	r := &lintRule{
		spec:     s,
		effect:   Effect(s.effect),
		shadow:   specShadow(s),
		result:   s.hasOn && s.on == "result",
		anyAgent: !s.agents.present,
		always:   !s.hasWhen,
	}
	if s.agents.present {
		r.agents = make(map[string]bool, len(s.agents.items))
		for _, it := range s.agents.items {
			if it.value == "*" {
				r.anyAgent = true
			}
			r.agents[it.value] = true
		}
	}
	r.tools = newToolBits(len(l.names))
	for _, name := range l.comp.toolSet(s) {
		r.tools.set(l.index[name])
	}
	l.comp.errs = l.comp.errs[:0]
	if s.hasWhen {
		r.cond = l.condition(s.when)
		if r.cond == nil {
			// Compile accepted what this cannot check: treat the rule as unknown.
			return
		}
		r.condText = s.when
		if txt, err := cel.AstToString(r.cond); err == nil {
			r.condText = txt
		}
		if v, ok := constant(l.env.env, r.cond.NativeRep()); ok {
			r.always, r.never = v, !v
		}
	}
	l.rules = append(l.rules, r)
}

// specShadow reports whether the rule is in shadow mode: it does not decide calls, only
// the would-be decision.
func specShadow(s *ruleSpec) bool { return s.hasMode && s.mode == "shadow" }

func (l *linter) condition(src string) *cel.Ast {
	if a, ok := l.conds[src]; ok {
		return a
	}
	a, iss := l.env.env.Compile(src)
	if iss != nil && iss.Err() != nil {
		a = nil
	}
	l.conds[src] = a
	return a
}

// constant returns the bool a condition always evaluates to, and whether there is one.
//
// It follows CEL's logical operators, which ignore an error on the side that does not
// decide (so `args.x > 1.0 && false` is false on every call), and evaluates the bool
// parts that read no variable and loop over nothing: `1 == 2`, `"a".startsWith("b")`.
// Parts with comprehensions are never evaluated, which keeps linting linear in the size
// of the condition; a constant loop over literals goes unnoticed.
func constant(env *cel.Env, a *ast.AST) (value, ok bool) {
	var eval func(e ast.Expr) (bool, bool)
	eval = func(e ast.Expr) (bool, bool) {
		switch e.Kind() {
		case ast.LiteralKind:
			b, ok := e.AsLiteral().(types.Bool)
			return bool(b), ok
		case ast.CallKind:
			c := e.AsCall()
			as := c.Args()
			switch c.FunctionName() {
			case operators.LogicalAnd, operators.LogicalOr:
				decisive := c.FunctionName() == operators.LogicalOr
				all := true
				for _, x := range as {
					v, ok := eval(x)
					if ok && v == decisive {
						return decisive, true
					}
					all = all && ok
				}
				return !decisive, all && len(as) > 0
			case operators.LogicalNot:
				if len(as) == 1 {
					v, ok := eval(as[0])
					return !v, ok
				}
				return false, false
			case operators.Conditional:
				if len(as) != 3 {
					return false, false
				}
				if v, ok := eval(as[0]); ok {
					if v {
						return eval(as[1])
					}
					return eval(as[2])
				}
				v1, ok1 := eval(as[1])
				v2, ok2 := eval(as[2])
				return v1, ok1 && ok2 && v1 == v2
			}
		}
		if !closed(e) {
			return false, false
		}
		prg, err := env.PlanProgram(ast.NewCheckedAST(ast.NewAST(e, a.SourceInfo()), a.TypeMap(), a.ReferenceMap()),
			cel.CostLimit(costLimit))
		if err != nil {
			return false, false
		}
		out, _, err := prg.Eval(cel.NoVars())
		if err != nil {
			return false, false
		}
		b, ok := out.(types.Bool)
		return bool(b), ok
	}
	return eval(a.Expr())
}

// closed reports whether e reads no variable and has no comprehension.
func closed(e ast.Expr) bool {
	ok := true
	ast.PreOrderVisit(e, ast.NewExprVisitor(func(x ast.Expr) {
		switch x.Kind() {
		case ast.IdentKind, ast.ComprehensionKind, ast.UnspecifiedExprKind:
			ok = false
		}
	}))
	return ok
}

// check runs the checks on the rules added and returns their findings.
func (l *linter) check() []Finding {
	var out []Finding
	dups := map[string]*lintRule{}
	for _, r := range l.rules {
		if f, ok := l.neverMatches(r); ok {
			out = append(out, f)
			continue
		}
		out = append(out, l.unknownArgs(r)...)
		if f, ok := l.shadowed(r, dups); ok {
			out = append(out, f)
		}
	}
	return out
}

func (l *linter) finding(r *lintRule, line int, kind, format string, args ...any) Finding {
	return Finding{File: r.spec.file, Line: line, Rule: r.spec.id, Kind: kind, Message: fmt.Sprintf(format, args...)}
}

func (l *linter) neverMatches(r *lintRule) (Finding, bool) {
	s := r.spec
	if r.tools.empty() {
		switch {
		case len(l.names) == 0:
			return l.finding(r, s.line, KindNeverMatches, "match: no tools are known"), true
		case s.classes.present && s.tools.present:
			return l.finding(r, s.classes.line, KindNeverMatches, "match: no tool in match.tools has a class in match.classes"), true
		case s.classes.present:
			return l.finding(r, s.classes.line, KindNeverMatches, "match.classes: no known tool has class %s", classList(s.classes)), true
		default:
			// Only a match.tools entry Compile rejected leaves the set empty.
			return l.finding(r, s.line, KindNeverMatches, "match: selects no known tool"), true
		}
	}
	if r.never {
		return l.finding(r, s.whenLine, KindNeverMatches, "when: condition is always false"), true
	}
	return Finding{}, false
}

func classList(l listSpec) string {
	cs := make([]string, len(l.items))
	for i, it := range l.items {
		cs[i] = it.value
	}
	return strings.Join(cs, " or ")
}

// unknownArgs reports the arguments the condition reads that no tool of the rule has.
func (l *linter) unknownArgs(r *lintRule) []Finding {
	if r.cond == nil {
		return nil
	}
	known := map[string]bool{}
	var toolNames []string
	for i, name := range l.names {
		if !r.tools.has(i) {
			continue
		}
		t, ok := l.schema[name]
		if !ok || t.Args == nil {
			return nil // this tool might have any argument
		}
		for _, a := range t.Args {
			known[a] = true
		}
		toolNames = append(toolNames, name)
	}
	var out []Finding
	for _, a := range argsRead(r.cond.NativeRep().Expr()) {
		if known[a] {
			continue
		}
		var msg string
		if len(toolNames) == 1 {
			msg = fmt.Sprintf("condition reads argument %q, but tool %q has no such argument", a, toolNames[0])
		} else {
			msg = fmt.Sprintf("condition reads argument %q, but none of the tools the rule can match has it (%s)", a, strings.Join(quoteAll(toolNames, 5), ", "))
		}
		out = append(out, l.finding(r, r.spec.whenLine, KindUnknownArgument, "%s", msg))
	}
	return out
}

// quoteAll quotes up to limit names, and says how many more there are.
func quoteAll(names []string, limit int) []string {
	out := make([]string, 0, min(len(names), limit)+1)
	for i, n := range names {
		if i == limit {
			out = append(out, fmt.Sprintf("and %d more", len(names)-limit))
			break
		}
		out = append(out, strconv.Quote(n))
	}
	return out
}

// argsRead returns, sorted and once each, the argument names e reads: args.x, args["x"],
// has(args.x) and "x" in args, where args is the variable, not a comprehension's.
func argsRead(e ast.Expr) []string {
	seen := map[string]bool{}
	var walk func(e ast.Expr, hidden bool)
	isArgs := func(e ast.Expr, hidden bool) bool {
		return !hidden && e.Kind() == ast.IdentKind && e.AsIdent() == "args"
	}
	walk = func(e ast.Expr, hidden bool) {
		switch e.Kind() {
		case ast.SelectKind:
			s := e.AsSelect()
			if isArgs(s.Operand(), hidden) {
				seen[s.FieldName()] = true
			}
			walk(s.Operand(), hidden)
		case ast.CallKind:
			c := e.AsCall()
			as := c.Args()
			if len(as) == 2 {
				switch c.FunctionName() {
				case operators.Index:
					if isArgs(as[0], hidden) {
						if k, ok := stringLiteral(as[1]); ok {
							seen[k] = true
						}
					}
				case operators.In:
					if isArgs(as[1], hidden) {
						if k, ok := stringLiteral(as[0]); ok {
							seen[k] = true
						}
					}
				}
			}
			if c.IsMemberFunction() {
				walk(c.Target(), hidden)
			}
			for _, a := range as {
				walk(a, hidden)
			}
		case ast.ListKind:
			for _, el := range e.AsList().Elements() {
				walk(el, hidden)
			}
		case ast.MapKind:
			for _, en := range e.AsMap().Entries() {
				me := en.AsMapEntry()
				walk(me.Key(), hidden)
				walk(me.Value(), hidden)
			}
		case ast.StructKind:
			for _, f := range e.AsStruct().Fields() {
				walk(f.AsStructField().Value(), hidden)
			}
		case ast.ComprehensionKind:
			c := e.AsComprehension()
			walk(c.IterRange(), hidden)
			walk(c.AccuInit(), hidden)
			// The loop sees the iteration and accumulator variables; the result only the
			// accumulator.
			inner := hidden || c.IterVar() == "args" || c.IterVar2() == "args" || c.AccuVar() == "args"
			walk(c.LoopCondition(), inner)
			walk(c.LoopStep(), inner)
			walk(c.Result(), hidden || c.AccuVar() == "args")
		}
	}
	walk(e, false)
	out := make([]string, 0, len(seen))
	for k := range seen {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func stringLiteral(e ast.Expr) (string, bool) {
	if e.Kind() != ast.LiteralKind {
		return "", false
	}
	s, ok := e.AsLiteral().(types.String)
	return string(s), ok
}

// rank orders effects by strength: deny overrides approve, which overrides allow.
func rank(e Effect) int {
	switch e {
	case Deny:
		return 3
	case Approve, Hold:
		return 2
	case Allow:
		return 1
	}
	return 0
}

// shadowed reports r if other rules make it unreachable. dups collects the rules seen so
// far by their duplicate key; r is added.
func (l *linter) shadowed(r *lintRule, dups map[string]*lintRule) (Finding, bool) {
	key := r.dupKey()
	first, dup := dups[key]
	if !dup {
		dups[key] = r
	}
	earlier := true
	for _, s := range l.rules {
		if s == r {
			earlier = false
			continue
		}
		if !s.always || s.never || (s.shadow && !r.shadow) || s.result != r.result || !s.covers(r) {
			continue
		}
		switch {
		case s.effect == Hold && r.effect == Allow:
			// A hold needs the allow rule: it gates the calls the allow rule grants.
		case rank(s.effect) > rank(r.effect):
			return l.finding(r, r.spec.line, KindShadowed, "never decides: rule %q (%s:%d) %s every call this rule can match, without a condition, and %s overrides %s",
				s.spec.id, s.spec.file, s.spec.line, verb(s.effect), s.effect, r.effect), true
		case earlier && s.effect == Deny && r.effect == Deny:
			return l.finding(r, r.spec.line, KindShadowed, "never decides: earlier rule %q (%s:%d) denies every call this rule can match, without a condition, and the first deny rule that applies decides",
				s.spec.id, s.spec.file, s.spec.line), true
		}
	}
	if dup {
		return l.finding(r, r.spec.line, KindShadowed, "duplicate of rule %q (%s:%d): same agents, tools, condition and effect",
			first.spec.id, first.spec.file, first.spec.line), true
	}
	return Finding{}, false
}

func verb(e Effect) string {
	if e == Deny {
		return "denies"
	}
	return "requires approval for"
}

// covers reports whether s matches every agent and tool r matches.
func (s *lintRule) covers(r *lintRule) bool {
	if !s.tools.contains(r.tools) {
		return false
	}
	if s.anyAgent {
		return true
	}
	if r.anyAgent {
		return false
	}
	for a := range r.agents {
		if !s.agents[a] {
			return false
		}
	}
	return true
}

// dupKey is the same for two rules with the same mode, effect, agents, tools and
// condition.
func (r *lintRule) dupKey() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%t\x00%t\x00%s\x00", r.shadow, r.result, r.effect)
	if r.anyAgent {
		b.WriteString("*")
	} else {
		as := make([]string, 0, len(r.agents))
		for a := range r.agents {
			as = append(as, a)
		}
		slices.Sort(as)
		for _, a := range as {
			b.WriteString(strconv.Quote(a))
		}
	}
	b.WriteByte(0)
	for _, w := range r.tools {
		b.WriteString(strconv.FormatUint(w, 16))
		b.WriteByte(',')
	}
	fmt.Fprintf(&b, "\x00%t\x00%s", r.cond != nil, r.condText)
	return b.String()
}

// toolBits is a set of tools by their index in the sorted tool names.
type toolBits []uint64

func newToolBits(n int) toolBits { return make(toolBits, (n+63)/64) }

func (t toolBits) set(i int)      { t[i/64] |= 1 << (i % 64) }
func (t toolBits) has(i int) bool { return t[i/64]&(1<<(i%64)) != 0 }

func (t toolBits) empty() bool {
	for _, w := range t {
		if w != 0 {
			return false
		}
	}
	return true
}

// contains reports whether t is a superset of u.
func (t toolBits) contains(u toolBits) bool {
	for i, w := range u {
		if w&^t[i] != 0 {
			return false
		}
	}
	return true
}
