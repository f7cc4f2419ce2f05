package config

import (
	"bytes"
	"encoding"
	"encoding/json"
	"fmt"
	"math"
	"path"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/chaperone-dev/chaperone/internal/contain"
	"github.com/chaperone-dev/chaperone/internal/credential"
	"github.com/chaperone-dev/chaperone/internal/flow"
	"github.com/chaperone-dev/chaperone/internal/inspect"
)

//go:generate go run ./internal/schemadoc -o schemadoc_gen.go . ../argcheck

// SchemaDialect is the JSON Schema dialect [Schema] is written in.
const SchemaDialect = "https://json-schema.org/draft/2020-12/schema"

// durationPattern matches what [time.ParseDuration] accepts, short of values too large
// for it: "0", or numbers with units ns, us (µs), ms, s, m, h, as in "1h30m" or "-1.5s".
const durationPattern = `^([-+]?0|[-+]?(([0-9]+(\.[0-9]*)?|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h))+)$`

// postgresPattern matches what [IsPostgresURL] accepts.
const postgresPattern = `^postgres(ql)?://`

// Schema returns the JSON Schema (draft 2020-12) of the configuration file, indented, for
// editors and other tools. It is derived from [Config] by reflection, so it cannot drift
// from what [Parse] decodes: an object per struct with a property per yaml key and no
// others (decoding is strict), arrays, maps and scalars of the fields' types, and the
// types that decode themselves ([Duration], [Store]) as what they accept. Descriptions
// are the fields' doc comments. Enumerations, patterns and required keys come from small
// tables of what [Config.Validate] enforces.
//
// The schema is as strict as decoding or stricter: a string field must be a YAML string,
// although the decoder would also take 8080 or true for it (only the values of maps such
// as env, headers and labels may be any scalar), and durations, "0s" included, are
// strings. Validation's other bounds (ranges, cross-field rules) are in the descriptions
// only: `chaperone config check` is the complete check.
func Schema() ([]byte, error) {
	b := &schemaBuilder{
		docs:     schemaDocs(),
		enums:    schemaEnums(),
		patterns: schemaPatterns(),
		required: schemaRequired(),
		used:     map[string]bool{},
	}
	root, err := b.object(reflect.TypeFor[Config](), "")
	if err != nil {
		return nil, fmt.Errorf("config schema: %w", err)
	}
	root.Schema = SchemaDialect
	root.Title = "Chaperone configuration"
	root.Description = b.docs["Config"]
	root.Defs = map[string]*schemaNode{
		"duration": {Type: "string", Pattern: durationPattern,
			Description: `A duration: a string like "30s", "5m", "1h30m" or "250ms" (units ns, us, ms, s, m, h).`},
	}
	if err := b.unused(); err != nil {
		return nil, fmt.Errorf("config schema: %w", err)
	}
	var out bytes.Buffer
	enc := json.NewEncoder(&out)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(root); err != nil {
		return nil, fmt.Errorf("config schema: %w", err)
	}
	return out.Bytes(), nil
}

// schemaEnums are the fields whose values validation restricts to a fixed set, by field
// path ("[]" is every element of a list). Where validation checks against a list of this
// package, the table uses that list. A field that is not required also takes "", for
// unset. TestSchemaEnums proves each entry against [Load]: a value outside the set is
// refused, the values inside it accepted, and "" as the schema says.
func schemaEnums() map[string][]string {
	credentialTypes := []string{credential.TypeBearer, credential.TypeHeader, credential.TypeBasic,
		credential.TypeOAuthClientCredentials, credential.TypeOAuthRefreshToken, credential.TypeTokenExchange,
		credential.TypeReceipt}
	signals := make([]string, len(BreakerSignals))
	for i, s := range BreakerSignals {
		signals[i] = string(s)
	}
	e := map[string][]string{
		"registry.first_use":                     {"pin", "quarantine"},
		"upstreams[].builtin":                    {"demo"},
		"upstreams[].environment":                Environments,
		"upstreams[].credential.type":            credentialTypes,
		"tools[].class":                          Classes,
		"tools[].flow.trust":                     {flow.TrustTrusted, flow.TrustUntrusted},
		"tools[].flow.data":                      {flow.DataPrivate, flow.DataPublic},
		"agents[].environment":                   Environments,
		"audit.capture":                          {CaptureNone, CaptureArguments, CaptureArgumentsAndResults},
		"audit.after":                            {"durable", "async"},
		"audit.journal":                          {"on", "off"},
		"containment.caps[].per":                 {"agent", "user", "task"},
		"containment.rate_limits[].per":          {"agent", "tool", "user"},
		"containment.breakers.triggers[].signal": signals,
		"containment.breakers.degrade": {string(contain.DegradeReadOnly), string(contain.DegradeSuggestOnly),
			string(contain.DegradeBlock)},
		"sensors.on_error":                  {"closed", "open"},
		"sensors.injection.classifier.fail": {"open", "closed"},
		"telemetry.traces.exporter":         traceExporters,
		"egress.rules[].methods[]":          {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"},
		"egress.rules[].credential.type":    credentialTypes,
		"log.level":                         {"debug", "info", "warn", "error"},
		"log.format":                        {"text", "json"},
	}
	// A tool's sensors and sensors.defaults are the same type, checked alike.
	for _, p := range []string{"tools[].sensors", "sensors.defaults"} {
		e[p+".results.injection"] = injectionModes
		e[p+".results.secrets"] = secretModes
		e[p+".results.pii"] = []string{inspect.PIIAllow, inspect.PIIRedact, inspect.PIIMask, inspect.PIITokenize}
		e[p+".results.sanitize"] = sanitizeModes
		e[p+".arguments.receive_pii[]"] = append([]string{"*"}, inspect.PIITypes()...)
	}
	return e
}

// schemaPatterns are the string fields validation matches against a regular expression
// of this package, by field path; a field that is not required also takes "", for unset.
// The expressions use only syntax that Go and ECMA-262 (editors' JSON Schema engines)
// read alike. TestSchemaPatterns proves each against [Load].
func schemaPatterns() map[string]string {
	return map[string]string{
		"upstreams[].name":            upstreamName.String(),
		"tools[].name":                toolName.String(),
		"tools[].expose_as":           toolName.String(),
		"tools[].pin":                 pinHash.String(),
		"agents[].id":                 agentID.String(),
		"agents[].token_sha256":       hexSHA256.String(),
		"approvals.decline_reasons[]": declineReason.String(),
		"containment.caps[].name":     capName.String(),
		"egress.rules[].name":         egressRuleName.String(),
		"secrets.key_env":             envName.String(),
		"console.oidc.scopes[]":       consoleScope.String(),
	}
}

// schemaRequired are the keys without which validation refuses an object, by the object's
// path. TestSchemaRequired proves each against [Load].
func schemaRequired() map[string][]string {
	return map[string][]string{
		"upstreams[]":                              {"name"},
		"upstreams[].credential":                   {"type"},
		"tools[]":                                  {"upstream", "name", "class"},
		"agents[]":                                 {"id", "owner", "token_sha256"},
		"identity.oidc[]":                          {"issuer", "jwks_url", "audience"},
		"approvals.webhooks[]":                     {"url"},
		"containment.caps[]":                       {"name", "max"},
		"containment.rate_limits[]":                {"per", "rate"},
		"containment.breakers.triggers[]":          {"signal", "threshold"},
		"containment.webhooks[]":                   {"url"},
		"sensors.injection.classifier":             {"url", "fail"},
		"store.postgres":                           {"url"},
		"console.oidc":                             {"issuer", "client_id", "roles"},
		"audit.checkpoints.publish[].webhook":      {"url"},
		"audit.checkpoints.publish[].object_store": {"url"},
		"egress.rules[]":                           {"name", "agents", "hosts"},
		"egress.rules[].credential":                {"type"},
	}
}

// schemaNode is one JSON Schema. Its fields are written in this order.
type schemaNode struct {
	Schema               string                 `json:"$schema,omitempty"`
	Ref                  string                 `json:"$ref,omitempty"`
	Title                string                 `json:"title,omitempty"`
	Description          string                 `json:"description,omitempty"`
	Type                 any                    `json:"type,omitempty"` // a string, or a list of them
	Enum                 []any                  `json:"enum,omitempty"`
	Pattern              string                 `json:"pattern,omitempty"`
	Minimum              json.Number            `json:"minimum,omitempty"`
	Maximum              json.Number            `json:"maximum,omitempty"`
	Properties           schemaProperties       `json:"properties,omitempty"`
	Required             []string               `json:"required,omitempty"`
	AdditionalProperties any                    `json:"additionalProperties,omitempty"` // false or a *schemaNode
	Items                *schemaNode            `json:"items,omitempty"`
	AnyOf                []*schemaNode          `json:"anyOf,omitempty"`
	Defs                 map[string]*schemaNode `json:"$defs,omitempty"`
}

// schemaProperties are an object's properties, written in the order of the Go fields.
type schemaProperties []schemaProperty

type schemaProperty struct {
	name string
	node *schemaNode
}

// MarshalJSON implements [json.Marshaler].
func (ps schemaProperties) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, p := range ps {
		if i > 0 {
			b.WriteByte(',')
		}
		enc := json.NewEncoder(&b)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(p.name); err != nil {
			return nil, err
		}
		b.WriteByte(':')
		if err := enc.Encode(p.node); err != nil {
			return nil, err
		}
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// nullable lets n also be null, as a pointer field may be.
func (n *schemaNode) nullable() {
	switch t := n.Type.(type) {
	case string:
		n.Type = []string{t, "null"}
		if n.Enum != nil {
			n.Enum = append(n.Enum, nil)
		}
	case nil:
		switch {
		case n.Ref != "":
			n.AnyOf = []*schemaNode{{Ref: n.Ref}, {Type: "null"}}
			n.Ref = ""
		case n.AnyOf != nil:
			n.AnyOf = append(n.AnyOf, &schemaNode{Type: "null"})
		}
	}
}

// schemaBuilder walks the configuration types.
type schemaBuilder struct {
	docs     map[string]string
	enums    map[string][]string
	patterns map[string]string
	required map[string][]string
	// used records the table entries applied, as "enum:PATH", "pattern:PATH" and
	// "required:PATH".
	used map[string]bool
}

var (
	yamlUnmarshaler = reflect.TypeFor[yaml.Unmarshaler]()
	textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()
	configPkgPath   = reflect.TypeFor[Config]().PkgPath()
)

// node returns the schema of a value of type t at path.
func (b *schemaBuilder) node(t reflect.Type, p string) (*schemaNode, error) {
	if t.Kind() == reflect.Pointer {
		n, err := b.node(t.Elem(), p)
		if err != nil {
			return nil, err
		}
		n.nullable()
		return n, nil
	}
	n, err := b.value(t, p)
	if err != nil {
		return nil, err
	}
	// An optional field's "" is unset (the default applies), as the effective
	// configuration `config check` prints shows it; an element of a list is never unset.
	unset := !strings.HasSuffix(p, "[]") && !b.isRequired(p)
	if vs, ok := b.enums[p]; ok {
		if n.Type != "string" {
			return nil, fmt.Errorf("%s: an enumeration needs a string field, got %s", p, t)
		}
		for _, v := range vs {
			n.Enum = append(n.Enum, v)
		}
		if unset {
			n.Enum = append(n.Enum, "")
		}
		b.used["enum:"+p] = true
	}
	if re, ok := b.patterns[p]; ok {
		if n.Type != "string" {
			return nil, fmt.Errorf("%s: a pattern needs a string field, got %s", p, t)
		}
		n.Pattern = re
		if unset {
			n.Pattern = "^$|" + re
		}
		b.used["pattern:"+p] = true
	}
	return n, nil
}

// isRequired reports whether the field at path p is a required key of its object.
func (b *schemaBuilder) isRequired(p string) bool {
	i := strings.LastIndexByte(p, '.')
	return i >= 0 && slices.Contains(b.required[p[:i]], p[i+1:])
}

// value returns the schema of a value of type t, not a pointer, at path p.
func (b *schemaBuilder) value(t reflect.Type, p string) (*schemaNode, error) {
	switch t {
	case reflect.TypeFor[Duration]():
		return &schemaNode{Ref: "#/$defs/duration"}, nil
	case reflect.TypeFor[Store]():
		// A scalar is a PostgreSQL URL; a mapping is decoded strictly.
		obj, err := b.object(t, p)
		if err != nil {
			return nil, err
		}
		url := &schemaNode{Type: "string", Pattern: postgresPattern,
			Description: "A postgres:// URL: short for {postgres: {url: ...}}."}
		return &schemaNode{AnyOf: []*schemaNode{url, obj}}, nil
	}
	if reflect.PointerTo(t).Implements(yamlUnmarshaler) || reflect.PointerTo(t).Implements(textUnmarshaler) {
		return nil, fmt.Errorf("%s: type %s decodes itself: describe what it accepts in Schema", p, t)
	}
	switch t.Kind() {
	case reflect.String:
		return &schemaNode{Type: "string"}, nil
	case reflect.Bool:
		return &schemaNode{Type: "boolean"}, nil
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		bits := t.Bits()
		return &schemaNode{Type: "integer",
			Minimum: json.Number(strconv.FormatInt(math.MinInt64>>(64-bits), 10)),
			Maximum: json.Number(strconv.FormatInt(math.MaxInt64>>(64-bits), 10))}, nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return &schemaNode{Type: "integer", Minimum: "0",
			Maximum: json.Number(strconv.FormatUint(math.MaxUint64>>(64-t.Bits()), 10))}, nil
	case reflect.Float32, reflect.Float64:
		return &schemaNode{Type: "number"}, nil
	case reflect.Slice:
		items, err := b.node(t.Elem(), p+"[]")
		if err != nil {
			return nil, err
		}
		if items.Description == "" {
			items.Description = b.typeDoc(t.Elem())
		}
		return &schemaNode{Type: "array", Items: items}, nil
	case reflect.Map:
		if t.Key().Kind() != reflect.String {
			return nil, fmt.Errorf("%s: map keys must be strings, got %s", p, t.Key())
		}
		v, err := b.node(t.Elem(), join(p, "*"))
		if err != nil {
			return nil, err
		}
		if v.Type == "string" && v.Enum == nil && v.Pattern == "" {
			// Like environment maps elsewhere (PORT: 8080), a value may be any scalar: the
			// decoder takes its text.
			v.Type = []string{"string", "number", "boolean"}
		}
		if v.Description == "" {
			v.Description = b.typeDoc(t.Elem())
		}
		return &schemaNode{Type: "object", AdditionalProperties: v}, nil
	case reflect.Struct:
		return b.object(t, p)
	}
	return nil, fmt.Errorf("%s: unsupported type %s", p, t)
}

// object returns the schema of struct type t at path p: its yaml keys and nothing else.
func (b *schemaBuilder) object(t reflect.Type, p string) (*schemaNode, error) {
	n := &schemaNode{Type: "object", AdditionalProperties: false}
	if err := b.fields(n, t, p); err != nil {
		return nil, err
	}
	if req, ok := b.required[p]; ok {
		for _, k := range req {
			if !slices.ContainsFunc(n.Properties, func(pr schemaProperty) bool { return pr.name == k }) {
				return nil, fmt.Errorf("%s: required key %q is not a field", p, k)
			}
		}
		n.Required = req
		b.used["required:"+p] = true
	}
	return n, nil
}

// fields adds the properties of struct type t at path p to n, as yaml.v3 names them.
func (b *schemaBuilder) fields(n *schemaNode, t reflect.Type, p string) error {
	for i := range t.NumField() {
		f := t.Field(i)
		if f.PkgPath != "" && !f.Anonymous {
			continue // unexported: yaml ignores it
		}
		tag := f.Tag.Get("yaml")
		if tag == "-" {
			continue
		}
		name, flags, _ := strings.Cut(tag, ",")
		if slices.Contains(strings.Split(flags, ","), "inline") {
			switch {
			case f.Type.Kind() == reflect.Struct:
				if err := b.fields(n, f.Type, p); err != nil {
					return err
				}
			case f.Type.Kind() == reflect.Map && f.Type.Key().Kind() == reflect.String:
				v, err := b.node(f.Type.Elem(), join(p, "*"))
				if err != nil {
					return err
				}
				n.AdditionalProperties = v
			default:
				return fmt.Errorf("%s: cannot inline %s", join(p, f.Name), f.Type)
			}
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		fp := join(p, name)
		prop, err := b.node(f.Type, fp)
		if err != nil {
			return err
		}
		if d := b.docs[typeKey(t)+"."+f.Name]; d != "" {
			prop.Description = d
		} else if prop.Description == "" {
			prop.Description = b.typeDoc(f.Type)
		}
		if slices.ContainsFunc(n.Properties, func(pr schemaProperty) bool { return pr.name == name }) {
			return fmt.Errorf("%s: key %q is declared twice", p, name)
		}
		n.Properties = append(n.Properties, schemaProperty{name: name, node: prop})
	}
	return nil
}

// typeDoc returns the doc comment of a struct type (through a pointer), "" for others.
func (b *schemaBuilder) typeDoc(t reflect.Type) string {
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct || t.Name() == "" {
		return ""
	}
	return b.docs[typeKey(t)]
}

// unused reports table entries that name no field: a renamed or removed field.
func (b *schemaBuilder) unused() error {
	var missing []string
	for p := range b.enums {
		if !b.used["enum:"+p] {
			missing = append(missing, "enum:"+p)
		}
	}
	for p := range b.patterns {
		if !b.used["pattern:"+p] {
			missing = append(missing, "pattern:"+p)
		}
	}
	for p := range b.required {
		if !b.used["required:"+p] {
			missing = append(missing, "required:"+p)
		}
	}
	if len(missing) > 0 {
		slices.Sort(missing)
		return fmt.Errorf("table entries name no field: %s", strings.Join(missing, ", "))
	}
	return nil
}

// typeKey is how the doc table names a type: "Tool" for this package's, "argcheck.Constraint"
// for another's.
func typeKey(t reflect.Type) string {
	if t.PkgPath() == configPkgPath {
		return t.Name()
	}
	return path.Base(t.PkgPath()) + "." + t.Name()
}

// join appends a key to a field path.
func join(p, key string) string {
	if p == "" {
		return key
	}
	return p + "." + key
}
