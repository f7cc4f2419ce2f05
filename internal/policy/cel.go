package policy

import (
	"fmt"
	"reflect"
	"slices"
	"strings"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/ast"
	"cel.dev/cel-go/common/operators"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"
	"cel.dev/cel-go/common/types/traits"
	"cel.dev/cel-go/ext"
	"cel.dev/cel-go/interpreter"
)

// costLimit bounds the work of one condition evaluation, in CEL cost units (roughly one
// per operation, plus a share of the length of strings and lists processed). A condition
// that exceeds it fails, and the call is denied.
const costLimit = 1_000_000

// stringsVersion pins the CEL string extension so that a dependency update cannot change
// which functions policies may use.
const stringsVersion = 5

// celEnv is the CEL environment conditions are compiled in.
type celEnv struct {
	env *cel.Env
}

// compiledCond is a condition compiled to a program, or the reason it could not be.
type compiledCond struct {
	prg cel.Program
	err error
	// flow says the condition reads flow facts; tools are the tools its history
	// functions name.
	flow  bool
	tools []string
	// result says the condition reads the result variable.
	result bool
}

// Fields of the map variables. The CEL types declare them as maps, so the checker cannot
// catch a misspelt field; lintFields does.
var (
	agentFields   = []string{"id", "owner", "purpose", "environment", "labels", "autonomy"}
	toolFields    = []string{"name", "upstream", "class"}
	sessionFields = []string{"id", "calls", "untrusted", "private"}
	riskFields    = []string{"score", "factors", "deviations"}
	sensorsFields = []string{"args", "prompt", "session"}
	resultFields  = []string{"injection", "secrets", "pii", "tricks", "bytes", "error"}
)

func newEnv() (*celEnv, error) {
	env, err := cel.NewEnv(append(flowOptions(),
		cel.Variable("agent", cel.MapType(cel.StringType, cel.DynType)),
		cel.Variable("user", cel.StringType),
		cel.Variable("groups", cel.ListType(cel.StringType)),
		cel.Variable("chain", cel.ListType(cel.StringType)),
		cel.Variable("task", cel.StringType),
		cel.Variable("tool", cel.MapType(cel.StringType, cel.StringType)),
		cel.Variable("args", cel.MapType(cel.StringType, cel.DynType)),
		cel.Variable("session", cel.MapType(cel.StringType, cel.DynType)),
		cel.Variable("risk", cel.MapType(cel.StringType, cel.DynType)),
		cel.Variable("now", cel.TimestampType),
		cel.Variable("sensors", cel.MapType(cel.StringType, cel.DynType)),
		cel.Variable("result", cel.MapType(cel.StringType, cel.DynType)),
		ext.Strings(ext.StringsVersion(stringsVersion)),
		cel.CrossTypeNumericComparisons(true),
		cel.ParserExpressionSizeLimit(maxCondition),
	)...)
	if err != nil {
		return nil, err
	}
	return &celEnv{env: env}, nil
}

// compile parses and type-checks one condition and plans its program.
func (e *celEnv) compile(src string) compiledCond {
	if strings.Contains(src, flowVar) {
		return compiledCond{err: fmt.Errorf("%s is reserved", flowVar)}
	}
	checked, iss := e.env.Compile(src)
	if iss != nil && iss.Err() != nil {
		return compiledCond{err: iss.Err()}
	}
	if t := checked.OutputType(); !t.IsExactType(cel.BoolType) {
		return compiledCond{err: fmt.Errorf("has type %s, want bool", t)}
	}
	if err := lintFields(checked.NativeRep()); err != nil {
		return compiledCond{err: err}
	}
	uses, tools, err := flowUse(checked.NativeRep())
	if err != nil {
		return compiledCond{err: err}
	}
	prg, err := e.env.Program(checked,
		cel.EvalOptions(cel.OptOptimize),
		cel.CostLimit(costLimit),
	)
	if err != nil {
		return compiledCond{err: err}
	}
	return compiledCond{prg: prg, flow: uses, tools: tools, result: readsIdent(checked.NativeRep(), "result")}
}

// readsIdent reports whether the expression reads the variable name.
func readsIdent(a *ast.AST, name string) bool {
	found := false
	ast.PreOrderVisit(a.Expr(), ast.NewExprVisitor(func(e ast.Expr) {
		if e.Kind() == ast.IdentKind && e.AsIdent() == name {
			found = true
		}
	}))
	return found
}

// lintFields rejects selecting a field that agent, tool or session do not have, such as
// agent.idd or tool["nmae"]: it would fail on every evaluation.
func lintFields(a *ast.AST) error {
	var bad []string
	check := func(operand ast.Expr, field string) {
		if operand.Kind() != ast.IdentKind {
			return
		}
		var fields []string
		switch operand.AsIdent() {
		case "agent":
			fields = agentFields
		case "tool":
			fields = toolFields
		case "session":
			fields = sessionFields
		case "risk":
			fields = riskFields
		case "sensors":
			fields = sensorsFields
		case "result":
			fields = resultFields
		default:
			return
		}
		if !slices.Contains(fields, field) {
			bad = append(bad, fmt.Sprintf("%s has no field %q (it has %s)", operand.AsIdent(), field, strings.Join(fields, ", ")))
		}
	}
	ast.PreOrderVisit(a.Expr(), ast.NewExprVisitor(func(e ast.Expr) {
		switch e.Kind() {
		case ast.SelectKind:
			s := e.AsSelect()
			check(s.Operand(), s.FieldName())
		case ast.CallKind:
			c := e.AsCall()
			if c.FunctionName() != operators.Index || len(c.Args()) != 2 {
				return
			}
			if key := c.Args()[1]; key.Kind() == ast.LiteralKind {
				if s, ok := key.AsLiteral().(types.String); ok {
					check(c.Args()[0], string(s))
				}
			}
		}
	}))
	if len(bad) > 0 {
		return fmt.Errorf("%s", strings.Join(bad, "; "))
	}
	return nil
}

// activation resolves the CEL variables from the Facts it points to. It is a Facts, so
// turning a *Facts into an activation costs nothing; each variable is converted to a CEL
// value only when a condition reads it.
type activation Facts

var _ interpreter.Activation = (*activation)(nil)

// ResolveName implements [interpreter.Activation].
func (a *activation) ResolveName(name string) (any, bool) {
	f := (*Facts)(a)
	switch name {
	case "agent":
		return (*record[agentSchema])(f), true
	case "user":
		return types.String(f.User), true
	case "groups":
		return types.NewStringList(types.DefaultTypeAdapter, f.UserGroups), true
	case "chain":
		return types.NewStringList(types.DefaultTypeAdapter, f.Chain), true
	case "task":
		return types.String(f.Task), true
	case "tool":
		return (*record[toolSchema])(f), true
	case "args":
		return f.Args, true
	case "session":
		return (*record[sessionSchema])(f), true
	case "risk":
		return (*record[riskSchema])(f), true
	case "now":
		return types.Timestamp{Time: f.Now}, true
	case "sensors":
		return (*record[sensorsSchema])(f), true
	case "result":
		return (*record[resultSchema])(f), true
	case flowVar:
		return (*flowRef)(f), true
	}
	return nil, false
}

// Parent implements [interpreter.Activation].
func (a *activation) Parent() interpreter.Activation { return nil }

// schema describes one map variable backed by part of the Facts.
type schema interface {
	// find returns the field's value: a CEL value, or a Go map the interpreter can index
	// without converting it.
	find(f *Facts, field string) (any, bool)
	// fields returns every field as a Go value, for building a whole CEL map.
	fields(f *Facts) map[string]any
}

type agentSchema struct{}

func (agentSchema) find(f *Facts, field string) (any, bool) {
	switch field {
	case "id":
		return types.String(f.Agent.ID), true
	case "owner":
		return types.String(f.Agent.Owner), true
	case "purpose":
		return types.String(f.Agent.Purpose), true
	case "environment":
		return types.String(f.Agent.Environment), true
	case "labels":
		return f.Agent.Labels, true
	case "autonomy":
		return types.Int(f.Agent.Autonomy), true
	}
	return nil, false
}

func (agentSchema) fields(f *Facts) map[string]any {
	return map[string]any{
		"id":          f.Agent.ID,
		"owner":       f.Agent.Owner,
		"purpose":     f.Agent.Purpose,
		"environment": f.Agent.Environment,
		"labels":      f.Agent.Labels,
		"autonomy":    f.Agent.Autonomy,
	}
}

type toolSchema struct{}

func (toolSchema) find(f *Facts, field string) (any, bool) {
	switch field {
	case "name":
		return types.String(f.Tool.Name), true
	case "upstream":
		return types.String(f.Tool.Upstream), true
	case "class":
		return types.String(f.Tool.Class), true
	}
	return nil, false
}

func (toolSchema) fields(f *Facts) map[string]any {
	return map[string]any{
		"name":     f.Tool.Name,
		"upstream": f.Tool.Upstream,
		"class":    f.Tool.Class,
	}
}

type riskSchema struct{}

func (riskSchema) find(f *Facts, field string) (any, bool) {
	switch field {
	case "score":
		return types.Int(f.Risk.Score), true
	case "factors":
		return types.NewStringList(types.DefaultTypeAdapter, f.Risk.Factors), true
	case "deviations":
		return types.NewStringList(types.DefaultTypeAdapter, f.Risk.Deviations), true
	}
	return nil, false
}

func (riskSchema) fields(f *Facts) map[string]any {
	return map[string]any{"score": f.Risk.Score, "factors": f.Risk.Factors, "deviations": f.Risk.Deviations}
}

type sessionSchema struct{}

func (sessionSchema) find(f *Facts, field string) (any, bool) {
	switch field {
	case "id":
		return types.String(f.Session.ID), true
	case "calls":
		return types.Int(f.Session.Calls), true
	case "untrusted":
		if f.Flow == nil {
			return errNoFlow, true
		}
		return types.Bool(f.Flow.Untrusted()), true
	case "private":
		if f.Flow == nil {
			return errNoFlow, true
		}
		return types.Bool(f.Flow.Private()), true
	}
	return nil, false
}

func (sessionSchema) fields(f *Facts) map[string]any {
	m := map[string]any{
		"id":    f.Session.ID,
		"calls": f.Session.Calls,
	}
	if f.Flow != nil {
		m["untrusted"], m["private"] = f.Flow.Untrusted(), f.Flow.Private()
	}
	return m
}

// record is a CEL map over part of the Facts, described by S. Selecting a field
// (agent.id) goes through FindStringKey, which the interpreter tries first and which
// converts only that field. Any other use of the whole map (size, in, equality) builds an
// ordinary CEL map, which is slower but rare.
type record[S schema] Facts

var _ traits.Mapper = (*record[agentSchema])(nil)

// FindStringKey is the interpreter's fast path for field selection.
func (r *record[S]) FindStringKey(key string) (any, bool) {
	var s S
	return s.find((*Facts)(r), key)
}

func (r *record[S]) materialize() traits.Mapper {
	var s S
	return types.NewStringInterfaceMap(types.DefaultTypeAdapter, s.fields((*Facts)(r)))
}

// ConvertToNative implements [ref.Val].
func (r *record[S]) ConvertToNative(t reflect.Type) (any, error) {
	return r.materialize().ConvertToNative(t)
}

// ConvertToType implements [ref.Val].
func (r *record[S]) ConvertToType(t ref.Type) ref.Val { return r.materialize().ConvertToType(t) }

// Equal implements [ref.Val].
func (r *record[S]) Equal(other ref.Val) ref.Val { return r.materialize().Equal(other) }

// Type implements [ref.Val].
func (r *record[S]) Type() ref.Type { return types.MapType }

// Value implements [ref.Val].
func (r *record[S]) Value() any { return r.materialize().Value() }

// Contains implements [traits.Container].
func (r *record[S]) Contains(key ref.Val) ref.Val { return r.materialize().Contains(key) }

// Get implements [traits.Indexer].
func (r *record[S]) Get(key ref.Val) ref.Val {
	if k, ok := key.(types.String); ok {
		var s S
		if v, found := s.find((*Facts)(r), string(k)); found {
			return types.DefaultTypeAdapter.NativeToValue(v)
		}
	}
	return r.materialize().Get(key)
}

// Iterator implements [traits.Iterable].
func (r *record[S]) Iterator() traits.Iterator { return r.materialize().Iterator() }

// Size implements [traits.Sizer].
func (r *record[S]) Size() ref.Val { return r.materialize().Size() }

// Find implements [traits.Mapper].
func (r *record[S]) Find(key ref.Val) (ref.Val, bool) {
	if k, ok := key.(types.String); ok {
		var s S
		if v, found := s.find((*Facts)(r), string(k)); found {
			return types.DefaultTypeAdapter.NativeToValue(v), true
		}
	}
	return r.materialize().Find(key)
}
