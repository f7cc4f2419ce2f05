package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"go.yaml.in/yaml/v3"
)

// schemaSink is a configuration that uses every field path of the schema's tables, at the
// indexes schemaPaths name, and loads.
const schemaSink = `data_dir: data
server: {listen: "127.0.0.1:8080", write_timeout: 120s}
admin: {listen: "127.0.0.1:8081"}
store:
  postgres:
    url: postgres://chaperone@db.internal:5432/chaperone?sslmode=verify-full
    max_conns: 5
registry: {first_use: quarantine, refresh_interval: 5m}
upstreams:
  - command: npx
    name: files
    args: [-y, "@modelcontextprotocol/server-filesystem", /srv/shared]
    secret_env: {FILES_TOKEN: "secret:files-token"}
    environment: prod
  - url: https://crm.example.com/mcp
    name: crm
    credential:
      secret: "secret:crm-key"
      type: bearer
    environment: prod
    required: false
  - builtin: demo
    name: demo
tools:
  - upstream: files
    name: read_text_file
    class: read
    pin: sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
    flow: {trust: untrusted, data: private}
    arguments:
      path: {path_prefixes: [/srv/shared], max_length: 1024}
    sensors:
      results: {injection: flag, secrets: redact, pii: allow, sanitize: "off", spotlight: true}
      arguments: {receive_pii: [EMAIL]}
  - upstream: crm
    name: create_note
    expose_as: crm_note
    class: write
    flow: {trust: trusted, data: public, sinks: [customer]}
    idempotent: true
    retries: 1
    cost: 0.01
agents:
  - owner: dana@example.com
    id: assistant
    token_sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
    environment: prod
    labels: {team: support}
identity:
  oidc:
    - jwks_url: https://idp.example.com/jwks
      issuer: https://idp.example.com
      audience: chaperone
approvals:
  hold: 0s
  decline_reasons: [wrong_recipient, other]
  webhooks:
    - timeout: 5s
      url: https://hooks.example.com/approvals
audit:
  capture: none
  after: durable
  journal: "on"
  checkpoints:
    interval: 1m
    publish:
      - webhook: {timeout: 10s, url: https://anchors.example.com/checkpoints}
      - object_store: {timeout: 10s, url: https://bucket.example.com/checkpoints/}
  retention:
    kinds: {auth.failed: 168h}
containment:
  caps:
    - tools: [crm_note]
      name: notes-per-day
      per: agent
      max: 100
  rate_limits:
    - burst: 20
      per: agent
      rate: 10/s
  breakers:
    degrade: read_only
    triggers:
      - window: 10m
        signal: denials
        threshold: 5
  webhooks:
    - timeout: 5s
      url: https://hooks.example.com/containment
sensors:
  on_error: closed
  injection:
    classifier:
      timeout: 2s
      url: https://classifier.example.com/score
      fail: closed
  defaults:
    results: {injection: flag, secrets: redact, pii: allow, sanitize: "off"}
    arguments: {receive_pii: ["*"]}
telemetry:
  traces: {exporter: none}
console:
  oidc:
    scopes: [email]
    issuer: https://idp.example.com
    client_id: chaperone-console
    roles: {admin: [ops@example.com]}
secrets:
  key_env: CHAPERONE_SECRETS_KEY
egress:
  listen: "127.0.0.1:8082"
  rules:
    - methods: [GET, HEAD]
      name: docs
      agents: ["*"]
      hosts: [docs.example.com]
      credential: {secret: "secret:docs-key", type: bearer}
log: {level: info, format: text}
policy: {paths: [policies]}
`

// schemaPaths maps each table path of the schema to where schemaSink has it.
var schemaPaths = map[string]string{
	"registry.first_use":                       "registry.first_use",
	"upstreams[]":                              "upstreams[0]",
	"upstreams[].name":                         "upstreams[0].name",
	"upstreams[].builtin":                      "upstreams[2].builtin",
	"upstreams[].environment":                  "upstreams[0].environment",
	"upstreams[].credential":                   "upstreams[1].credential",
	"upstreams[].credential.type":              "upstreams[1].credential.type",
	"tools[]":                                  "tools[0]",
	"tools[].name":                             "tools[0].name",
	"tools[].expose_as":                        "tools[1].expose_as",
	"tools[].pin":                              "tools[0].pin",
	"tools[].class":                            "tools[0].class",
	"tools[].flow.trust":                       "tools[0].flow.trust",
	"tools[].flow.data":                        "tools[0].flow.data",
	"tools[].sensors.results.injection":        "tools[0].sensors.results.injection",
	"tools[].sensors.results.secrets":          "tools[0].sensors.results.secrets",
	"tools[].sensors.results.pii":              "tools[0].sensors.results.pii",
	"tools[].sensors.results.sanitize":         "tools[0].sensors.results.sanitize",
	"tools[].sensors.arguments.receive_pii[]":  "tools[0].sensors.arguments.receive_pii[0]",
	"agents[]":                                 "agents[0]",
	"agents[].id":                              "agents[0].id",
	"agents[].token_sha256":                    "agents[0].token_sha256",
	"agents[].environment":                     "agents[0].environment",
	"identity.oidc[]":                          "identity.oidc[0]",
	"approvals.decline_reasons[]":              "approvals.decline_reasons[0]",
	"approvals.webhooks[]":                     "approvals.webhooks[0]",
	"audit.capture":                            "audit.capture",
	"audit.after":                              "audit.after",
	"audit.journal":                            "audit.journal",
	"audit.checkpoints.publish[].webhook":      "audit.checkpoints.publish[0].webhook",
	"audit.checkpoints.publish[].object_store": "audit.checkpoints.publish[1].object_store",
	"containment.caps[]":                       "containment.caps[0]",
	"containment.caps[].name":                  "containment.caps[0].name",
	"containment.caps[].per":                   "containment.caps[0].per",
	"containment.rate_limits[]":                "containment.rate_limits[0]",
	"containment.rate_limits[].per":            "containment.rate_limits[0].per",
	"containment.breakers.triggers[]":          "containment.breakers.triggers[0]",
	"containment.breakers.triggers[].signal":   "containment.breakers.triggers[0].signal",
	"containment.breakers.degrade":             "containment.breakers.degrade",
	"containment.webhooks[]":                   "containment.webhooks[0]",
	"sensors.on_error":                         "sensors.on_error",
	"sensors.injection.classifier":             "sensors.injection.classifier",
	"sensors.injection.classifier.fail":        "sensors.injection.classifier.fail",
	"sensors.defaults.results.injection":       "sensors.defaults.results.injection",
	"sensors.defaults.results.secrets":         "sensors.defaults.results.secrets",
	"sensors.defaults.results.pii":             "sensors.defaults.results.pii",
	"sensors.defaults.results.sanitize":        "sensors.defaults.results.sanitize",
	"sensors.defaults.arguments.receive_pii[]": "sensors.defaults.arguments.receive_pii[0]",
	"telemetry.traces.exporter":                "telemetry.traces.exporter",
	"store.postgres":                           "store.postgres",
	"console.oidc":                             "console.oidc",
	"console.oidc.scopes[]":                    "console.oidc.scopes[0]",
	"secrets.key_env":                          "secrets.key_env",
	"egress.rules[]":                           "egress.rules[0]",
	"egress.rules[].name":                      "egress.rules[0].name",
	"egress.rules[].methods[]":                 "egress.rules[0].methods[0]",
	"egress.rules[].credential":                "egress.rules[0].credential",
	"egress.rules[].credential.type":           "egress.rules[0].credential.type",
	"log.level":                                "log.level",
	"log.format":                               "log.format",
}

// schemaContextual are the enumerations whose other values need other fields set (a
// credential type its own fields, an exporter an endpoint): only the bogus value and
// schemaSink's own are tried.
var schemaContextual = map[string]bool{
	"upstreams[].credential.type":    true,
	"egress.rules[].credential.type": true,
	"telemetry.traces.exporter":      true,
}

// compiledSchema compiles [Schema] after checking it against the draft 2020-12
// metaschema.
func compiledSchema(tb testing.TB) *jsonschema.Schema {
	tb.Helper()
	raw, err := Schema()
	if err != nil {
		tb.Fatalf("Schema() = %v", err)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		tb.Fatalf("Schema() is not JSON: %v", err)
	}
	c := jsonschema.NewCompiler()
	meta, err := c.Compile(SchemaDialect)
	if err != nil {
		tb.Fatalf("compile the metaschema: %v", err)
	}
	if err := meta.Validate(doc); err != nil {
		tb.Fatalf("Schema() is not a valid draft 2020-12 schema: %v", err)
	}
	c = jsonschema.NewCompiler()
	if err := c.AddResource("mem:///chaperone.schema.json", doc); err != nil {
		tb.Fatal(err)
	}
	sch, err := c.Compile("mem:///chaperone.schema.json")
	if err != nil {
		tb.Fatalf("compile Schema(): %v", err)
	}
	return sch
}

// yamlToJSON reads one YAML document as an editor's schema validator sees it: the JSON
// value of its data.
func yamlToJSON(data []byte) (any, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	var extra any
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, errors.New("more than one YAML document")
	}
	v, err := jsonValue(v)
	if err != nil {
		return nil, err
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return jsonschema.UnmarshalJSON(bytes.NewReader(b))
}

// jsonValue turns what yaml.v3 decodes into `any` into JSON data.
func jsonValue(v any) (any, error) {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			j, err := jsonValue(e)
			if err != nil {
				return nil, err
			}
			out[k] = j
		}
		return out, nil
	case map[any]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			j, err := jsonValue(e)
			if err != nil {
				return nil, err
			}
			out[fmt.Sprint(k)] = j
		}
		return out, nil
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			j, err := jsonValue(e)
			if err != nil {
				return nil, err
			}
			out[i] = j
		}
		return out, nil
	case time.Time:
		return x.Format(time.RFC3339Nano), nil // a YAML timestamp is a string to JSON
	case float64:
		if math.IsInf(x, 0) || math.IsNaN(x) {
			return nil, fmt.Errorf("%v has no JSON form", x)
		}
	}
	return v, nil
}

// editYAML returns doc with the value at path (like "tools[0].flow.trust") replaced by a
// string, or with the key removed when value is nil.
func editYAML(tb testing.TB, doc, path string, value *string) string {
	tb.Helper()
	var root yaml.Node
	if err := yaml.Unmarshal([]byte(doc), &root); err != nil {
		tb.Fatal(err)
	}
	seg := regexp.MustCompile(`^([a-z0-9_]+)((?:\[[0-9]+\])*)$`)
	idx := regexp.MustCompile(`[0-9]+`)
	parent, n := (*yaml.Node)(nil), root.Content[0]
	keyAt := -1
	for _, s := range strings.Split(path, ".") {
		m := seg.FindStringSubmatch(s)
		if m == nil {
			tb.Fatalf("editYAML: bad path segment %q", s)
		}
		if n.Kind != yaml.MappingNode {
			tb.Fatalf("editYAML(%s): %q is not under a mapping", path, s)
		}
		found := false
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == m[1] {
				parent, keyAt, n, found = n, i, n.Content[i+1], true
				break
			}
		}
		if !found {
			tb.Fatalf("editYAML(%s): no key %q", path, m[1])
		}
		for _, is := range idx.FindAllString(m[2], -1) {
			i, _ := strconv.Atoi(is)
			if n.Kind != yaml.SequenceNode || i >= len(n.Content) {
				tb.Fatalf("editYAML(%s): no element %d", path, i)
			}
			parent, keyAt, n = n, -1, n.Content[i]
		}
	}
	switch {
	case value == nil && keyAt >= 0:
		parent.Content = slices.Delete(parent.Content, keyAt, keyAt+2)
	case value == nil:
		tb.Fatalf("editYAML(%s): can only remove a key", path)
	default:
		*n = yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: *value, Style: yaml.DoubleQuotedStyle}
	}
	out, err := yaml.Marshal(&root)
	if err != nil {
		tb.Fatal(err)
	}
	return string(out)
}

// loadYAML writes doc to a file and loads it.
func loadYAML(tb testing.TB, doc string) error {
	tb.Helper()
	p := filepath.Join(tb.TempDir(), "chaperone.yaml")
	if err := os.WriteFile(p, []byte(doc), 0o644); err != nil {
		tb.Fatal(err)
	}
	_, err := Load(p)
	return err
}

// schemaAccepts reports whether sch validates the YAML document doc.
func schemaAccepts(tb testing.TB, sch *jsonschema.Schema, doc string) error {
	tb.Helper()
	v, err := yamlToJSON([]byte(doc))
	if err != nil {
		tb.Fatalf("yamlToJSON: %v\n%s", err, doc)
	}
	return sch.Validate(v)
}

func TestSchemaValidatesSink(t *testing.T) {
	sch := compiledSchema(t)
	if err := loadYAML(t, schemaSink); err != nil {
		t.Fatalf("Load(schemaSink) = %v", err)
	}
	if err := schemaAccepts(t, sch, schemaSink); err != nil {
		t.Fatalf("schema refuses schemaSink: %v", err)
	}
}

func TestSchemaValidatesExamples(t *testing.T) {
	sch := compiledSchema(t)
	root := filepath.Join("..", "..")
	var files []string
	for _, pat := range []string{"docs/examples/*.yaml", "testdata/*/chaperone.yaml"} {
		m, err := filepath.Glob(filepath.Join(root, pat))
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, m...)
	}
	if len(files) < 2 {
		t.Fatalf("found %d example configurations (%v), want at least 2: did they move?", len(files), files)
	}
	for _, f := range files {
		t.Run(filepath.ToSlash(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := Parse(data); err != nil {
				t.Fatalf("Parse = %v", err)
			}
			if err := schemaAccepts(t, sch, string(data)); err != nil {
				t.Errorf("schema refuses %s: %v", f, err)
			}
		})
	}
}

func TestSchemaRefusesWhatLoadRefuses(t *testing.T) {
	sch := compiledSchema(t)
	for _, tc := range []struct{ name, doc string }{
		{"misspelled top-level key", "sever: {listen: \"127.0.0.1:9000\"}\n"},
		{"misspelled nested key", "upstreams: [{name: files, comand: npx}]\n"},
		{"misspelled key in a flow label", "upstreams: [{name: a, command: x}]\ntools: [{upstream: a, name: t, class: read, flow: {trust_level: trusted}}]\n"},
		{"misspelled key in an argument overlay", "upstreams: [{name: a, command: x}]\ntools: [{upstream: a, name: t, class: read, arguments: {path: {prefixes: [/srv]}}}]\n"},
		{"string for an integer", "server: {max_body_bytes: big}\n"},
		{"mapping for a list", "upstreams: {name: files, command: npx}\n"},
		{"quoted string for a boolean", "approvals: {enabled: \"true\"}\n"},
		{"number for a duration", "approvals: {timeout: 15}\n"},
		{"duration without a unit", "registry: {refresh_interval: \"5\"}\n"},
		{"duration in words", "registry: {refresh_interval: 5 minutes}\n"},
		{"string for a number", "upstreams: [{name: a, command: x}]\ntools: [{upstream: a, name: t, class: read, cost: cheap}]\n"},
		{"a store string that is not a postgres URL", "store: chaperone.db\n"},
		{"unknown key in store", "store: {sqlite: a.db, mysql: b}\n"},
		{"list for a string", "data_dir: [a, b]\n"},
		{"enumeration value", "log: {level: verbose}\n"},
		{"pattern", "upstreams: [{name: Files, command: npx}]\n"},
		{"required key", "agents: [{id: a, owner: dana@example.com}]\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := loadYAML(t, tc.doc); err == nil {
				t.Fatalf("Load(%q) = nil, want an error (the case is wrong)", tc.doc)
			}
			if err := schemaAccepts(t, sch, tc.doc); err == nil {
				t.Errorf("schema accepts %q, which Load refuses", tc.doc)
			}
		})
	}
}

func TestSchemaEnums(t *testing.T) {
	sch := compiledSchema(t)
	for p, values := range schemaEnums() {
		t.Run(p, func(t *testing.T) {
			at, ok := schemaPaths[p]
			if !ok {
				t.Fatalf("schemaPaths has no place for %q: add one to schemaSink", p)
			}
			bogus := "bogus-value"
			doc := editYAML(t, schemaSink, at, &bogus)
			if err := loadYAML(t, doc); err == nil {
				t.Errorf("Load with %s: %q = nil, want refused: the schema's enumeration claims what validation does not enforce", at, bogus)
			}
			if err := schemaAccepts(t, sch, doc); err == nil {
				t.Errorf("schema accepts %s: %q", at, bogus)
			}
			notStricter(t, sch, at, "")
			try := values
			if schemaContextual[p] {
				try = []string{scalarAt(t, schemaSink, at)}
				if !slices.Contains(values, try[0]) {
					t.Fatalf("schemaSink's %s = %q is not in the enumeration %v", at, try[0], values)
				}
			}
			for _, v := range try {
				doc := editYAML(t, schemaSink, at, &v)
				if err := loadYAML(t, doc); err != nil {
					t.Errorf("Load with %s: %q = %v, want accepted", at, v, err)
				}
				if err := schemaAccepts(t, sch, doc); err != nil {
					t.Errorf("schema refuses %s: %q: %v", at, v, err)
				}
			}
		})
	}
}

// schemaBadValues are values each pattern of the schema refuses.
var schemaBadValues = map[string]string{
	"upstreams[].name":            "Files!",
	"tools[].name":                "read file",
	"tools[].expose_as":           "crm note",
	"tools[].pin":                 "sha256:not-hex",
	"agents[].id":                 "Assistant",
	"agents[].token_sha256":       "9F86D081",
	"approvals.decline_reasons[]": "Wrong Recipient",
	"containment.caps[].name":     "Notes Per Day",
	"egress.rules[].name":         "Docs!",
	"secrets.key_env":             "1KEY",
	"console.oidc.scopes[]":       "a b",
}

func TestSchemaPatterns(t *testing.T) {
	sch := compiledSchema(t)
	// Constructs Go and ECMA-262 read differently, or that only one of them has.
	nonPortable := regexp.MustCompile(`\(\?|\\[pPzAQE]|\[\[:`)
	for p, re := range schemaPatterns() {
		t.Run(p, func(t *testing.T) {
			if nonPortable.MatchString(re) {
				t.Errorf("pattern %q uses syntax editors' regular expressions read otherwise", re)
			}
			at, ok := schemaPaths[p]
			if !ok {
				t.Fatalf("schemaPaths has no place for %q: add one to schemaSink", p)
			}
			if good := scalarAt(t, schemaSink, at); !regexp.MustCompile(re).MatchString(good) {
				t.Fatalf("schemaSink's %s = %q does not match %s", at, good, re)
			}
			bad, ok := schemaBadValues[p]
			if !ok {
				t.Fatalf("schemaBadValues has no value for %q", p)
			}
			doc := editYAML(t, schemaSink, at, &bad)
			if err := loadYAML(t, doc); err == nil {
				t.Errorf("Load with %s: %q = nil, want refused: the schema's pattern claims what validation does not enforce", at, bad)
			}
			if err := schemaAccepts(t, sch, doc); err == nil {
				t.Errorf("schema accepts %s: %q", at, bad)
			}
			notStricter(t, sch, at, "")
		})
	}
}

func TestSchemaRequired(t *testing.T) {
	sch := compiledSchema(t)
	for p, keys := range schemaRequired() {
		for _, k := range keys {
			t.Run(p+"."+k, func(t *testing.T) {
				at, ok := schemaPaths[p]
				if !ok {
					t.Fatalf("schemaPaths has no place for %q: add one to schemaSink", p)
				}
				doc := editYAML(t, schemaSink, at+"."+k, nil)
				if err := loadYAML(t, doc); err == nil {
					t.Errorf("Load without %s.%s = nil, want refused: the schema requires what validation does not", at, k)
				}
				if err := schemaAccepts(t, sch, doc); err == nil {
					t.Errorf("schema accepts %s without %s", at, k)
				}
			})
		}
	}
}

// notStricter checks that the schema accepts schemaSink with the value at path set to v
// when Load does. (The schema may accept what Load refuses for reasons across fields:
// "" for builtin when no command or url is set either.)
func notStricter(t *testing.T, sch *jsonschema.Schema, path, v string) {
	t.Helper()
	doc := editYAML(t, schemaSink, path, &v)
	if loadYAML(t, doc) != nil {
		return
	}
	if err := schemaAccepts(t, sch, doc); err != nil {
		t.Errorf("with %s: %q, Load accepts the configuration but the schema says %v", path, v, err)
	}
}

// scalarAt returns the string at path in doc.
func scalarAt(tb testing.TB, doc, path string) string {
	tb.Helper()
	v, err := yamlToJSON([]byte(doc))
	if err != nil {
		tb.Fatal(err)
	}
	for _, s := range strings.Split(strings.NewReplacer("[", ".", "]", "").Replace(path), ".") {
		switch x := v.(type) {
		case map[string]any:
			v = x[s]
		case []any:
			i, err := strconv.Atoi(s)
			if err != nil || i >= len(x) {
				tb.Fatalf("scalarAt(%s): no element %q", path, s)
			}
			v = x[i]
		}
	}
	s, ok := v.(string)
	if !ok {
		tb.Fatalf("scalarAt(%s) = %v, want a string", path, v)
	}
	return s
}

func TestSchemaDescriptions(t *testing.T) {
	raw, err := Schema()
	if err != nil {
		t.Fatal(err)
	}
	var root map[string]any
	if err := json.Unmarshal(raw, &root); err != nil {
		t.Fatal(err)
	}
	// Fields whose doc comment is on their type or missing in config.go.
	undocumented := []string{
		"audit.checkpoints.publish[].object_store.url", "audit.checkpoints.publish[].webhook.url",
		"console.oidc.roles.admin", "console.oidc.roles.approver", "console.oidc.roles.operator",
		"console.oidc.roles.viewer",
	}
	var missing []string
	var walk func(p string, n map[string]any)
	walk = func(p string, n map[string]any) {
		props, _ := n["properties"].(map[string]any)
		for k, v := range props {
			pn := v.(map[string]any)
			if pn["description"] == nil && !slices.Contains(undocumented, join(p, k)) {
				missing = append(missing, join(p, k))
			}
			walk(join(p, k), pn)
		}
		if items, ok := n["items"].(map[string]any); ok {
			walk(p+"[]", items)
		}
		for _, alt := range asSlice(n["anyOf"]) {
			walk(p, alt.(map[string]any))
		}
	}
	walk("", root)
	slices.Sort(missing)
	if len(missing) > 0 {
		t.Errorf("properties without a description (document the fields in Go): %v", missing)
	}

	server := root["properties"].(map[string]any)["server"].(map[string]any)
	listen := server["properties"].(map[string]any)["listen"].(map[string]any)
	if d, _ := listen["description"].(string); !strings.Contains(d, `Default "127.0.0.1:8080"`) {
		t.Errorf("server.listen description = %q, want its doc comment", d)
	}
}

func asSlice(v any) []any {
	s, _ := v.([]any)
	return s
}

func TestSchemaStable(t *testing.T) {
	a, err := Schema()
	if err != nil {
		t.Fatal(err)
	}
	b, err := Schema()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Error("Schema() differs between two calls")
	}
}

// TestSchemaTablesNameFields proves a stale table entry (a renamed field) is an error, not
// a silently missing constraint.
func TestSchemaTablesNameFields(t *testing.T) {
	b := &schemaBuilder{docs: map[string]string{}, enums: map[string][]string{"log.levl": {"info"}},
		patterns: map[string]string{}, required: map[string][]string{"agents[]": {"ident"}}, used: map[string]bool{}}
	if _, err := b.object(reflect.TypeFor[Config](), ""); err == nil || !strings.Contains(err.Error(), `required key "ident"`) {
		t.Errorf("object with a required key that is not a field = %v, want an error naming it", err)
	}
	b.required = map[string][]string{}
	if _, err := b.object(reflect.TypeFor[Config](), ""); err != nil {
		t.Fatal(err)
	}
	if err := b.unused(); err == nil || !strings.Contains(err.Error(), "enum:log.levl") {
		t.Errorf("unused() = %v, want an error naming enum:log.levl", err)
	}
}

// TestSchemaDocsUpToDate runs the go:generate line of schema.go with -check: it fails when
// schemadoc_gen.go no longer matches the doc comments.
func TestSchemaDocsUpToDate(t *testing.T) {
	args := generateArgs(t)
	goBin, err := exec.LookPath(args[0])
	if err != nil {
		t.Skipf("no go command to run the generator: %v", err)
	}
	// run runs "go run PKG -check FLAGS... DIRS...", with -o FILE when out is not "".
	run := func(out string) ([]byte, error) {
		a := []string{args[1], args[2], "-check"}
		for i := 3; i < len(args); i++ {
			a = append(a, args[i])
			if args[i] == "-o" && i+1 < len(args) && out != "" {
				a = append(a, out)
				i++
			}
		}
		return exec.Command(goBin, a...).CombinedOutput()
	}
	if out, err := run(""); err != nil {
		t.Fatalf("schemadoc -check: %v\n%s", err, out)
	}

	// The check itself catches a stale file.
	stale := filepath.Join(t.TempDir(), "stale.go")
	if err := os.WriteFile(stale, []byte("package config\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := run(stale)
	if err == nil || !strings.Contains(string(out), "stale") {
		t.Errorf("schemadoc -check on a stale file = %v (%s), want a failure naming it stale", err, out)
	}
}

// generateArgs returns the command of schema.go's go:generate line.
func generateArgs(tb testing.TB) []string {
	tb.Helper()
	src, err := os.ReadFile("schema.go")
	if err != nil {
		tb.Fatal(err)
	}
	for line := range strings.Lines(string(src)) {
		if rest, ok := strings.CutPrefix(line, "//go:generate "); ok {
			args := strings.Fields(rest)
			if len(args) < 4 || args[0] != "go" || args[1] != "run" {
				tb.Fatalf("go:generate line %q: want go run ./internal/schemadoc ...", line)
			}
			return args
		}
	}
	tb.Fatal("schema.go has no go:generate line")
	return nil
}

// durationSegment is one number and unit of a duration.
var durationSegment = regexp.MustCompile(`([0-9]*\.?[0-9]*)(ns|us|µs|μs|ms|s|m|h)`)

// mayOverflow reports whether a duration the pattern matches could be too large for
// time.ParseDuration.
func mayOverflow(s string) bool {
	units := map[string]float64{"ns": 1, "us": 1e3, "µs": 1e3, "μs": 1e3, "ms": 1e6, "s": 1e9, "m": 60e9, "h": 3600e9}
	total := 0.0
	for _, m := range durationSegment.FindAllStringSubmatch(s, -1) {
		v, err := strconv.ParseFloat(m[1], 64)
		if err != nil {
			return true
		}
		total += v * units[m[2]]
	}
	return total >= 9e18
}

func FuzzDurationPattern(f *testing.F) {
	for _, s := range []string{"0", "+0", "-0", "30s", "1h30m", "-1.5h", ".5s", "1.s", "250ms", "1µs", "1μs", "1us",
		"", "00", "5", "1d", "1h-2m", "s", ".s", "1.5", "9999999999h", " 1s", "1s ", "1e3s", "0x10s"} {
		f.Add(s)
	}
	re := regexp.MustCompile(durationPattern)
	f.Fuzz(func(t *testing.T, s string) {
		_, err := time.ParseDuration(s)
		match := re.MatchString(s)
		if err == nil && !match {
			t.Fatalf("time.ParseDuration(%q) accepts it, the schema's pattern does not", s)
		}
		if err != nil && match && !mayOverflow(s) {
			t.Fatalf("the schema's pattern accepts %q, time.ParseDuration refuses it: %v", s, err)
		}
	})
}

// FuzzSchemaAcceptsOnlyWhatParseAccepts checks that every document the schema accepts
// decodes: the schema is never looser than the strict decoder. (It may be stricter: a
// string field must be a YAML string.)
func FuzzSchemaAcceptsOnlyWhatParseAccepts(f *testing.F) {
	f.Add([]byte(schemaSink))
	for _, s := range []string{
		"data_dir: x\n", "store: postgres://u@h/db\n", "store: {sqlite: a.db}\n", "store: {postgres: null}\n",
		"approvals: {hold: null, timeout: 1m}\n", "server: {max_body_bytes: 1.0}\n",
		"server: {max_sessions: 9223372036854775808}\n", "tools: [{retries: ~}]\n",
		"agents: [{labels: {a: b}}]\n", "x: &a 1\n", "audit: {retention: {kinds: {a: 1h}}}\n",
		"upstreams: [{name: a, env: {A: b}, headers: {B: c}}]\n", "log: {level: info}\n---\nlog: {level: info}\n",
	} {
		f.Add([]byte(s))
	}
	sch := compiledSchema(f)
	re := regexp.MustCompile(durationPattern)
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 64<<10 {
			return
		}
		v, err := yamlToJSON(data)
		if err != nil || sch.Validate(v) != nil {
			return
		}
		// The pattern cannot see that a duration is too large for time.ParseDuration.
		overflow := false
		walkStrings(v, func(s string) {
			if _, err := time.ParseDuration(s); err != nil && re.MatchString(s) {
				overflow = true
			}
		})
		if overflow || storeReencodes(data) {
			return
		}
		if _, err := Parse(data); err != nil {
			t.Fatalf("the schema accepts %q; Parse refuses it: %v", data, err)
		}
	})
}

// storeReencodes reports whether a document's store: holds what Store.UnmarshalYAML
// loses when it re-encodes the mapping to decode it strictly: an alias or merge (the
// anchor stays behind) or an implicit null (it comes back as an empty string).
func storeReencodes(data []byte) bool {
	var root yaml.Node
	if yaml.Unmarshal(data, &root) != nil || len(root.Content) == 0 || root.Content[0].Kind != yaml.MappingNode {
		return false
	}
	m := root.Content[0]
	var lossy func(n *yaml.Node) bool
	lossy = func(n *yaml.Node) bool {
		if n.Kind == yaml.AliasNode || n.Kind == yaml.ScalarNode && n.Tag == "!!null" && n.Value == "" {
			return true
		}
		return slices.ContainsFunc(n.Content, lossy)
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		switch m.Content[i].Value {
		case "store":
			if m.Content[i+1].Kind == yaml.MappingNode && slices.ContainsFunc(m.Content[i+1].Content, lossy) {
				return true
			}
		case "<<":
			return true // a merge may bring a store in
		}
	}
	return false
}

func walkStrings(v any, fn func(string)) {
	switch x := v.(type) {
	case string:
		fn(x)
	case map[string]any:
		for _, e := range x {
			walkStrings(e, fn)
		}
	case []any:
		for _, e := range x {
			walkStrings(e, fn)
		}
	}
}
