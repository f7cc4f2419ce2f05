package policy

import (
	"fmt"
	"reflect"
	"strings"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/ast"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"
)

// Flow and history functions.
//
// A condition calls them as global functions — args_from_untrusted("recipient"),
// calls("send_money") — and a macro rewrites each call to pass the call's facts as a
// hidden first argument, so that evaluating them costs no allocation and no per-call
// binding. Conditions cannot name the hidden variable themselves.
const (
	flowVar = "__flow"
	// anyTool in a history function means every tool.
	anyTool = "*"
)

// flowFuncs are the flow and history functions: name, the types of the arguments a
// condition passes, and the result type.
var flowFuncs = []struct {
	name   string
	params []*cel.Type
	result *cel.Type
	// history functions take a tool name first.
	history bool
}{
	{"args_from_untrusted", []*cel.Type{cel.StringType}, cel.BoolType, false},
	{"args_from_trusted", []*cel.Type{cel.StringType}, cel.BoolType, false},
	{"args_from_user", []*cel.Type{cel.StringType}, cel.BoolType, false},
	{"sinks_from_untrusted", nil, cel.BoolType, false},
	{"sinks_from_trusted", nil, cel.BoolType, false},
	{"called", []*cel.Type{cel.StringType}, cel.BoolType, true},
	{"calls", []*cel.Type{cel.StringType}, cel.IntType, true},
	{"calls_within", []*cel.Type{cel.StringType, cel.DurationType}, cel.IntType, true},
	{"total", []*cel.Type{cel.StringType, cel.StringType}, cel.DoubleType, true},
	{"total_within", []*cel.Type{cel.StringType, cel.StringType, cel.DurationType}, cel.DoubleType, true},
}

// flowRef is the hidden variable's value: the facts of the call, seen as a CEL value.
type flowRef Facts

var flowRefType = types.NewOpaqueType("chaperone.flow")

func (*flowRef) ConvertToNative(reflect.Type) (any, error) {
	return nil, errNotAValue
}
func (*flowRef) ConvertToType(ref.Type) ref.Val { return types.NewErr("flow facts are not a value") }
func (*flowRef) Equal(ref.Val) ref.Val          { return types.False }
func (*flowRef) Type() ref.Type                 { return flowRefType }
func (*flowRef) Value() any                     { return nil }

type flowError string

func (e flowError) Error() string { return string(e) }

const errNotAValue = flowError("flow facts are not a value")

var errNoFlow = types.NewErr("flow facts are not available for this call")

func flowOf(v ref.Val) (Flow, ref.Val) {
	fr, ok := v.(*flowRef)
	if !ok || fr.Flow == nil {
		return nil, errNoFlow
	}
	return fr.Flow, nil
}

// flowOptions declares the functions, their macros and their implementations.
func flowOptions() []cel.EnvOption {
	opts := []cel.EnvOption{cel.Variable(flowVar, cel.DynType)}
	var macros []cel.Macro
	for _, fn := range flowFuncs {
		params := append([]*cel.Type{cel.DynType}, fn.params...)
		opts = append(opts, cel.Function(fn.name,
			cel.Overload(fn.name+"_flow", params, fn.result, cel.FunctionBinding(flowBinding(fn.name)))))
		macros = append(macros, cel.GlobalMacro(fn.name, len(fn.params),
			func(eh cel.MacroExprFactory, _ ast.Expr, args []ast.Expr) (ast.Expr, *cel.Error) {
				return eh.NewCall(fn.name, append([]ast.Expr{eh.NewIdent(flowVar)}, args...)...), nil
			}))
	}
	return append(opts, cel.Macros(macros...))
}

func flowBinding(name string) func(args ...ref.Val) ref.Val {
	return func(args ...ref.Val) ref.Val {
		f, errVal := flowOf(args[0])
		if errVal != nil {
			return errVal
		}
		str := func(i int) string { return string(args[i].(types.String)) }
		switch name {
		case "args_from_untrusted":
			return types.Bool(f.ArgFromUntrusted(str(1)))
		case "args_from_trusted":
			return types.Bool(f.ArgFromTrusted(str(1)))
		case "args_from_user":
			return types.Bool(f.ArgFromUser(str(1)))
		case "sinks_from_untrusted":
			return types.Bool(f.SinksFromUntrusted())
		case "sinks_from_trusted":
			return types.Bool(f.SinksFromTrusted())
		case "called":
			return types.Bool(f.Calls(str(1)) > 0)
		case "calls":
			return types.Int(f.Calls(str(1)))
		case "calls_within":
			return types.Int(f.CallsWithin(str(1), args[2].(types.Duration).Duration))
		case "total":
			return types.Double(f.Total(str(1), str(2)))
		case "total_within":
			return types.Double(f.TotalWithin(str(1), str(2), args[3].(types.Duration).Duration))
		}
		return types.NewErr("unknown flow function %q", name)
	}
}

// flowUse reports whether a checked condition reads flow facts, and the tool names its
// history functions name as literals. A history function whose tool is not a literal is
// an error: a rule about a tool that does not exist must not compile.
func flowUse(a *ast.AST) (uses bool, tools []string, err error) {
	var bad []string
	ast.PreOrderVisit(a.Expr(), ast.NewExprVisitor(func(e ast.Expr) {
		switch e.Kind() {
		case ast.SelectKind:
			s := e.AsSelect()
			if op := s.Operand(); op.Kind() == ast.IdentKind && op.AsIdent() == "session" &&
				(s.FieldName() == "untrusted" || s.FieldName() == "private") {
				uses = true
			}
		case ast.CallKind:
			c := e.AsCall()
			for _, fn := range flowFuncs {
				if c.FunctionName() != fn.name {
					continue
				}
				uses = true
				if a := c.Args(); len(a) != len(fn.params)+1 || a[0].Kind() != ast.IdentKind || a[0].AsIdent() != flowVar {
					bad = append(bad, fmt.Sprintf("%s takes %s", fn.name, plural(len(fn.params), "argument")))
					continue
				}
				if !fn.history {
					continue
				}
				if lit := c.Args()[1]; lit.Kind() == ast.LiteralKind {
					if s, ok := lit.AsLiteral().(types.String); ok {
						tools = append(tools, string(s))
						continue
					}
				}
				bad = append(bad, fn.name+": the tool must be a string literal")
			}
		}
	}))
	if len(bad) > 0 {
		return uses, tools, flowError(strings.Join(bad, "; "))
	}
	return uses, tools, nil
}

// plural writes n and a noun, in the plural unless n is 1: "1 argument", "0 arguments".
func plural(n int, noun string) string {
	if n == 1 {
		return fmt.Sprintf("1 %s", noun)
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
