package argcheck

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"strconv"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"
)

// schemaURL is the location the input schema is compiled at. Relative
// references resolve against it, so they reach the refusing loader too.
const schemaURL = "mem:///input-schema.json"

// errNoFetch is what the loader returns for every URL: argcheck does no I/O,
// so a schema must be self-contained. (The standard metaschemas are embedded
// in the jsonschema module and are found without the loader.)
var errNoFetch = errors.New("argcheck does not fetch schemas")

type refusingLoader struct{}

func (refusingLoader) Load(string) (any, error) { return nil, errNoFetch }

// compileSchema parses and compiles a tool's input schema and returns it
// with the set of top-level property names it declares. declared is nil only
// when the schema is unusable (not JSON, or not an object).
func compileSchema(raw []byte) (_ *jsonschema.Schema, declared map[string]struct{}, err error) {
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		return nil, nil, fmt.Errorf("not valid JSON: %v", err)
	}
	obj, ok := doc.(map[string]any)
	if !ok {
		return nil, nil, errors.New("not a JSON object")
	}

	if err := checkNumbers(doc); err != nil {
		// The compiler turns every number into a big.Rat: a literal like
		// 1e-99999999 would cost minutes of arithmetic, at compile time and
		// again on every call (and "multipleOf": 1e-3000000 panics it).
		return nil, nil, err
	}
	var errs []error
	if !isObjectType(obj["type"]) {
		errs = append(errs, errors.New(`"type" must be "object"`))
	}
	declared = map[string]struct{}{}
	if props, ok := obj["properties"].(map[string]any); ok {
		for name := range props {
			declared[name] = struct{}{}
		}
	}

	sch, err := compileDoc(doc)
	if err != nil {
		errs = append(errs, err)
	}
	return sch, declared, errors.Join(errs...)
}

// compileDoc runs the jsonschema compiler on a decoded schema. The compiler
// reads the upstream's schema, which we do not trust, so a panic in it is
// turned into an error rather than taking the gateway down.
func compileDoc(doc any) (sch *jsonschema.Schema, err error) {
	defer func() {
		if r := recover(); r != nil {
			sch, err = nil, fmt.Errorf("does not compile: schema compiler panicked: %v", r)
		}
	}()
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.AssertFormat()
	c.UseLoader(refusingLoader{})
	if err := c.AddResource(schemaURL, doc); err != nil {
		return nil, fmt.Errorf("does not compile: %v", err)
	}
	sch, err = c.Compile(schemaURL)
	if err != nil {
		if le, ok := errors.AsType[*jsonschema.LoadURLError](err); ok {
			return nil, fmt.Errorf("reference to external schema %q: external references are not allowed, the schema must be self-contained", le.URL)
		}
		if se, ok := errors.AsType[*jsonschema.SchemaValidationError](err); ok {
			return nil, fmt.Errorf("not valid against its metaschema: %s", metaschemaProblems(se))
		}
		return nil, fmt.Errorf("does not compile: %v", err)
	}
	return sch, nil
}

// metaschemaProblems renders why a schema failed its metaschema on one line:
// the library's own rendering is an indented tree over many lines. Only the
// leaves say what is wrong; the inner nodes are allOf/anyOf bookkeeping.
func metaschemaProblems(se *jsonschema.SchemaValidationError) string {
	ve, ok := errors.AsType[*jsonschema.ValidationError](se.Err)
	if !ok {
		return strings.Join(strings.Fields(se.Err.Error()), " ")
	}
	const maxLeaves = 5
	var leaves []string
	var walk func(*jsonschema.ValidationError)
	walk = func(e *jsonschema.ValidationError) {
		if len(e.Causes) == 0 {
			leaves = append(leaves, strings.Join(strings.Fields(e.Error()), " "))
		}
		for _, c := range e.Causes {
			walk(c)
		}
	}
	walk(ve)
	leaves = slices.Compact(leaves)
	if n := len(leaves); n > maxLeaves {
		leaves = append(leaves[:maxLeaves], fmt.Sprintf("... and %d more", n-maxLeaves))
	}
	return strings.Join(leaves, "; ")
}

// Bounds on number literals in a schema. Every float64, written in
// shortest form, is within them.
const (
	maxNumberLen      = 100
	maxNumberExponent = 400
)

// checkNumbers refuses number literals too long or too large (or small) for
// cheap exact arithmetic anywhere in a decoded schema document.
func checkNumbers(v any) error {
	switch v := v.(type) {
	case json.Number:
		if !numberInBounds(string(v)) {
			return fmt.Errorf("number %s is out of range: schema numbers must fit in %d characters with an exponent of at most %d", truncate(string(v), 32), maxNumberLen, maxNumberExponent)
		}
	case map[string]any:
		for _, e := range v {
			if err := checkNumbers(e); err != nil {
				return err
			}
		}
	case []any:
		for _, e := range v {
			if err := checkNumbers(e); err != nil {
				return err
			}
		}
	}
	return nil
}

func numberInBounds(s string) bool {
	if len(s) > maxNumberLen {
		return false
	}
	i := strings.IndexAny(s, "eE")
	if i < 0 {
		return true
	}
	exp, err := strconv.Atoi(s[i+1:])
	return err == nil && -maxNumberExponent <= exp && exp <= maxNumberExponent
}

// isObjectType reports whether a schema's "type" is "object" (alone).
func isObjectType(t any) bool {
	switch t := t.(type) {
	case string:
		return t == "object"
	case []any:
		return len(t) == 1 && t[0] == "object"
	}
	return false
}

// validateSchema runs the schema, converting a library panic into a refusal
// so that a bug in the validator fails closed.
func validateSchema(sch *jsonschema.Schema, instance any) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = errValidatorPanic
		}
	}()
	return sch.Validate(instance)
}

var errValidatorPanic = errors.New("schema validator panicked")

// msgNotValidated is the problem reported when the schema could not be
// applied at all.
const msgNotValidated = "could not be checked against the input schema"

// addSchemaError converts a jsonschema validation error into problems. The
// library's own messages quote the offending value, so each message is
// written here from the error kind and the schema's bounds only.
// Problems under undeclared top-level arguments are dropped: those arguments
// are already refused as unknown.
func (c *collector) addSchemaError(err error, declared map[string]struct{}) {
	ve, ok := errors.AsType[*jsonschema.ValidationError](err)
	if !ok {
		c.add("", msgNotValidated)
		return
	}
	// The library visits object members in map order; sort what it found
	// so the same call is always refused with the same text.
	start := len(c.problems)
	c.walk(ve, declared)
	slices.SortStableFunc(c.problems[start:], func(a, b Problem) int {
		return cmp.Or(strings.Compare(a.Argument, b.Argument), strings.Compare(a.Message, b.Message))
	})
}

func (c *collector) walk(e *jsonschema.ValidationError, declared map[string]struct{}) {
	switch e.ErrorKind.(type) {
	case *kind.Schema, *kind.Group, *kind.AllOf, *kind.Reference:
		if len(e.Causes) == 0 {
			c.add("", msgNotValidated)
		}
		for _, cause := range e.Causes {
			c.walk(cause, declared)
		}
		return
	}

	loc := e.InstanceLocation
	if len(loc) == 0 {
		c.addRoot(e.ErrorKind, declared)
		return
	}
	arg := loc[0]
	if _, ok := declared[arg]; !ok {
		return
	}
	// at locates the problem inside the argument. Pointer tokens can be
	// caller-chosen keys, so the pointer is bounded and quoted.
	at := ""
	if len(loc) > 1 {
		at = "at " + strconv.Quote(truncate(jsonPointer(loc[1:]), 2*maxNameBytes)) + ": "
	}
	switch k := e.ErrorKind.(type) {
	case *kind.Required:
		for _, m := range k.Missing {
			c.add(arg, at+"missing required property "+quoteName(m))
		}
	case *kind.AdditionalProperties:
		for _, p := range k.Properties {
			c.add(arg, at+"unknown property "+quoteName(p))
		}
	case *kind.Dependency:
		c.add(arg, at+"property "+quoteName(k.Prop)+" requires "+quoteNames(k.Missing))
	case *kind.DependentRequired:
		c.add(arg, at+"property "+quoteName(k.Prop)+" requires "+quoteNames(k.Missing))
	case *kind.PropertyNames:
		c.add(arg, at+"property name "+quoteName(k.Property)+" is not allowed (propertyNames)")
	default:
		c.add(arg, at+kindMessage(e.ErrorKind))
	}
}

// addRoot reports a problem with the arguments object as a whole.
func (c *collector) addRoot(k jsonschema.ErrorKind, declared map[string]struct{}) {
	switch k := k.(type) {
	case *kind.Required:
		for _, m := range k.Missing {
			c.add(m, "required argument is missing")
		}
	case *kind.AdditionalProperties:
		// Every property additionalProperties refuses at the top level is
		// outside "properties", so it is already reported as unknown.
	case *kind.Dependency:
		c.add(k.Prop, "requires argument "+quoteNames(k.Missing))
	case *kind.DependentRequired:
		c.add(k.Prop, "requires argument "+quoteNames(k.Missing))
	case *kind.PropertyNames:
		if _, ok := declared[k.Property]; ok {
			c.add(k.Property, "name is not allowed (propertyNames)")
		}
	default:
		c.add("", "arguments "+kindMessage(k))
	}
}

// kindMessage describes a failed keyword using only the schema's side of it.
func kindMessage(k jsonschema.ErrorKind) string {
	switch k := k.(type) {
	case *kind.Type:
		return "must be of type " + strings.Join(k.Want, " or ") + " (got " + k.Got + ")"
	case *kind.Enum:
		return "must be one of the values " + schemaValue(k.Want)
	case *kind.Const:
		return "must equal the value " + schemaValue(k.Want)
	case *kind.Format:
		return "must be a valid " + strconv.Quote(k.Want)
	case *kind.Pattern:
		return "must match the pattern " + strconv.Quote(truncate(k.Want, 2*maxNameBytes))
	case *kind.MinLength:
		return fmt.Sprintf("must be at least %d characters long", k.Want)
	case *kind.MaxLength:
		return fmt.Sprintf("must be at most %d characters long", k.Want)
	case *kind.Minimum:
		return "must be >= " + ratString(k.Want)
	case *kind.Maximum:
		return "must be <= " + ratString(k.Want)
	case *kind.ExclusiveMinimum:
		return "must be > " + ratString(k.Want)
	case *kind.ExclusiveMaximum:
		return "must be < " + ratString(k.Want)
	case *kind.MultipleOf:
		return "must be a multiple of " + ratString(k.Want)
	case *kind.MinItems:
		return fmt.Sprintf("must have at least %d items", k.Want)
	case *kind.MaxItems:
		return fmt.Sprintf("must have at most %d items", k.Want)
	case *kind.AdditionalItems:
		return "has more items than allowed"
	case *kind.UniqueItems:
		return fmt.Sprintf("must have unique items (items %d and %d are equal)", k.Duplicates[0], k.Duplicates[1])
	case *kind.Contains:
		return `must contain an item matching "contains"`
	case *kind.MinContains:
		return fmt.Sprintf(`must contain at least %d items matching "contains"`, k.Want)
	case *kind.MaxContains:
		return fmt.Sprintf(`must contain at most %d items matching "contains"`, k.Want)
	case *kind.MinProperties:
		return fmt.Sprintf("must have at least %d properties", k.Want)
	case *kind.MaxProperties:
		return fmt.Sprintf("must have at most %d properties", k.Want)
	case *kind.FalseSchema:
		return "is not allowed by the schema"
	case *kind.Not:
		return `must not match the schema under "not"`
	case *kind.AnyOf:
		return "does not match any of the allowed alternatives (anyOf)"
	case *kind.OneOf:
		if k.Subschemas == nil {
			return "does not match any of the allowed alternatives (oneOf)"
		}
		return "matches more than one alternative (oneOf)"
	case *kind.InvalidJsonValue:
		return "is not a JSON value"
	}
	if kw := k.KeywordPath(); len(kw) > 0 {
		return "is invalid (" + strconv.Quote(truncate(strings.Join(kw, "/"), 2*maxNameBytes)) + ")"
	}
	return "is invalid"
}

// schemaValue renders a value taken from the schema (never from the
// arguments), bounded in length.
func schemaValue(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return "(unprintable)"
	}
	return truncate(string(b), 2*maxNameBytes)
}

func ratString(r *big.Rat) string {
	if r == nil {
		return "?"
	}
	f, _ := r.Float64()
	return strconv.FormatFloat(f, 'g', -1, 64)
}

func quoteName(s string) string { return strconv.Quote(truncate(s, maxNameBytes)) }

func quoteNames(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = quoteName(n)
	}
	return strings.Join(q, ", ")
}

// jsonPointer renders location tokens as an RFC 6901 JSON pointer.
func jsonPointer(tokens []string) string {
	var b strings.Builder
	for _, t := range tokens {
		b.WriteByte('/')
		t = strings.ReplaceAll(t, "~", "~0")
		b.WriteString(strings.ReplaceAll(t, "/", "~1"))
	}
	return b.String()
}
