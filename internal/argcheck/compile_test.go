package argcheck

import (
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
)

const okSchema = `{"type": "object", "properties": {"a": {"type": "string"}, "n": {"type": "number"}}}`

// compileCases list what Compile must refuse. Each want is a substring of
// one joined error, in order; every error must also name the tool. They also
// seed FuzzCompile.
var compileCases = []struct {
	name    string
	schema  string
	overlay Overlay
	want    []string
}{
	{name: "not_json", schema: `{"type": "object"`, want: []string{`compile tool "t": input schema: not valid JSON`}},
	{name: "empty", schema: ``, want: []string{"not valid JSON"}},
	{name: "trailing_garbage", schema: `{"type": "object"} {}`, want: []string{"not valid JSON"}},
	{name: "array", schema: `[]`, want: []string{"input schema: not a JSON object"}},
	{name: "boolean_schema", schema: `true`, want: []string{"input schema: not a JSON object"}},
	{name: "type_missing", schema: `{"properties": {"a": {}}}`, want: []string{`input schema: "type" must be "object"`}},
	{name: "type_string", schema: `{"type": "string"}`, want: []string{`"type" must be "object"`}},
	{name: "type_union", schema: `{"type": ["object", "null"]}`, want: []string{`"type" must be "object"`}},
	{name: "bad_keyword_value", schema: `{"type": "object", "properties": {"a": {"type": "strng"}}}`, want: []string{`input schema: not valid against its metaschema: at '/properties/a/type': value must be one of`}},
	{name: "bad_min_properties", schema: `{"type": "object", "minProperties": -1}`, want: []string{`not valid against its metaschema: at '/minProperties': minimum: got -1, want 0`}},
	{name: "bad_schema_regexp", schema: `{"type": "object", "properties": {"a": {"pattern": "(?=x)"}}}`, want: []string{"not valid against its metaschema: at '/properties/a/pattern': '(?=x)' is not valid regex"}},
	{name: "dangling_local_ref", schema: `{"type": "object", "properties": {"a": {"$ref": "#/$defs/nope"}}}`, want: []string{"does not compile"}},
	{name: "remote_ref", schema: `{"type": "object", "properties": {"a": {"$ref": "https://schemas.example.com/a.json"}}}`,
		want: []string{`input schema: reference to external schema "https://schemas.example.com/a.json": external references are not allowed`}},
	{name: "relative_ref", schema: `{"type": "object", "properties": {"a": {"$ref": "other.json#/x"}}}`, want: []string{"reference to external schema"}},
	{name: "file_ref", schema: `{"type": "object", "properties": {"a": {"$ref": "file:///etc/passwd"}}}`, want: []string{`reference to external schema "file:///etc/passwd"`}},
	{name: "custom_metaschema", schema: `{"$schema": "https://schemas.example.com/meta", "type": "object"}`, want: []string{"reference to external schema"}},
	{name: "unknown_draft", schema: `{"$schema": "http://json-schema.org/draft-03/schema#", "type": "object"}`, want: []string{"reference to external schema"}},
	{name: "huge_exponent", schema: `{"type": "object", "properties": {"a": {"multipleOf": 1e-3000000}}}`,
		want: []string{"input schema: number 1e-3000000 is out of range"}},
	{name: "huge_exponent_in_enum", schema: `{"type": "object", "properties": {"a": {"enum": [1, 2E+401]}}}`, want: []string{"number 2E+401 is out of range"}},
	{name: "long_number", schema: `{"type": "object", "properties": {"a": {"maximum": 0.` + strings.Repeat("1", 100) + `}}}`, want: []string{"is out of range"}},
	{name: "undeclared_argument", schema: okSchema, overlay: Overlay{"b": {MaxLength: ptr(1)}},
		want: []string{`compile tool "t": overlay argument "b": not declared in the input schema's properties`}},
	{name: "bad_regexp", schema: okSchema, overlay: Overlay{"a": {Pattern: "("}}, want: []string{`overlay argument "a": pattern: error parsing regexp`}},
	{name: "regexp_escaping_anchors", schema: okSchema, overlay: Overlay{"a": {Pattern: "a)|(b"}}, want: []string{`overlay argument "a": pattern:`}},
	{name: "minimum_above_maximum", schema: okSchema, overlay: Overlay{"n": {Minimum: ptr(2.0), Maximum: ptr(1.0)}},
		want: []string{`overlay argument "n": minimum 2 is greater than maximum 1`}},
	{name: "minimum_nan", schema: okSchema, overlay: Overlay{"n": {Minimum: ptr(math.NaN())}}, want: []string{"minimum: must be a number, not NaN"}},
	{name: "maximum_nan", schema: okSchema, overlay: Overlay{"n": {Maximum: ptr(math.NaN())}}, want: []string{"maximum: must be a number, not NaN"}},
	{name: "negative_max_length", schema: okSchema, overlay: Overlay{"a": {MaxLength: ptr(-1)}}, want: []string{`overlay argument "a": max_length -1: must not be negative`}},
	{name: "relative_path_prefix", schema: okSchema, overlay: Overlay{"a": {PathPrefixes: []string{"srv/data"}}},
		want: []string{`overlay argument "a": path_prefixes[0] "srv/data": must be an absolute, clean path (like "/srv/data")`}},
	{name: "unclean_path_prefix", schema: okSchema, overlay: Overlay{"a": {PathPrefixes: []string{"/srv/data", "/srv/data/"}}},
		want: []string{`path_prefixes[1] "/srv/data/": must be an absolute, clean path`}},
	{name: "dotdot_path_prefix", schema: okSchema, overlay: Overlay{"a": {PathPrefixes: []string{"/srv/../etc"}}}, want: []string{`path_prefixes[0] "/srv/../etc": must be an absolute, clean path`}},
	{name: "empty_path_prefix", schema: okSchema, overlay: Overlay{"a": {PathPrefixes: []string{""}}}, want: []string{`path_prefixes[0] "": must be an absolute, clean path`}},
	{name: "windows_path_prefix", schema: okSchema, overlay: Overlay{"a": {PathPrefixes: []string{`C:\data`}}}, want: []string{"must not contain control characters or backslashes"}},
	{name: "empty_url_host", schema: okSchema, overlay: Overlay{"a": {URLHosts: []string{""}}}, want: []string{`overlay argument "a": url_hosts[0] "": must not be empty`}},
	{name: "url_host_with_scheme", schema: okSchema, overlay: Overlay{"a": {URLHosts: []string{"https://good.com"}}}, want: []string{"without a scheme"}},
	{name: "url_host_with_port", schema: okSchema, overlay: Overlay{"a": {URLHosts: []string{"good.com:443"}}}, want: []string{"without a port"}},
	{name: "url_host_with_path", schema: okSchema, overlay: Overlay{"a": {URLHosts: []string{"good.com/api"}}}, want: []string{"without a path"}},
	{name: "url_host_with_userinfo", schema: okSchema, overlay: Overlay{"a": {URLHosts: []string{"me@good.com"}}}, want: []string{"without user information"}},
	{name: "url_host_unicode", schema: okSchema, overlay: Overlay{"a": {URLHosts: []string{"gööd.com"}}}, want: []string{"punycode"}},
	{name: "url_host_bare_wildcard", schema: okSchema, overlay: Overlay{"a": {URLHosts: []string{"*"}}}, want: []string{`must be a DNS name, "*." followed by a DNS name`}},
	{name: "url_host_inner_wildcard", schema: okSchema, overlay: Overlay{"a": {URLHosts: []string{"a.*.com"}}}, want: []string{"must be a DNS name"}},
	{name: "url_host_empty_wildcard", schema: okSchema, overlay: Overlay{"a": {URLHosts: []string{"*."}}}, want: []string{"must be a DNS name"}},
	{name: "url_host_zoned_ip", schema: okSchema, overlay: Overlay{"a": {URLHosts: []string{"fe80::1%eth0"}}}, want: []string{"IPv6 zones are not allowed"}},
	{name: "no_field_set", schema: okSchema, overlay: Overlay{"a": {}}, want: []string{`overlay argument "a": constraint sets no fields`}},
	{name: "only_empty_lists", schema: okSchema, overlay: Overlay{"a": {Enum: []string{}, PathPrefixes: []string{}}}, want: []string{"constraint sets no fields"}},
	{name: "string_and_number", schema: okSchema, overlay: Overlay{"a": {MaxLength: ptr(3), Minimum: ptr(1.0)}}, want: []string{"mixes string bounds"}},
	{name: "path_and_url", schema: okSchema, overlay: Overlay{"a": {PathPrefixes: []string{"/x"}, URLHosts: []string{"x.com"}}}, want: []string{"sets both path_prefixes and url_hosts"}},
	{name: "all_at_once", schema: `{"type": "string"}`, overlay: Overlay{
		"a": {Pattern: "("},
		"b": {MaxLength: ptr(-1), URLHosts: []string{"x:1"}},
	}, want: []string{
		`input schema: "type" must be "object"`,
		`overlay argument "a": not declared`,
		`overlay argument "a": pattern:`,
		`overlay argument "b": not declared`,
		`overlay argument "b": max_length -1`,
		`overlay argument "b": url_hosts[0] "x:1": must be a bare host name without a port`,
	}},
}

func TestCompileErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range compileCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			v, err := Compile("t", []byte(tc.schema), tc.overlay)
			if err == nil {
				t.Fatalf("Compile(%s, %v) = %v, nil; want error", tc.schema, tc.overlay, v)
			}
			errs := unjoin(err)
			if len(errs) != len(tc.want) {
				t.Fatalf("Compile(%s, %v) = %d errors %q, want %d", tc.schema, tc.overlay, len(errs), errs, len(tc.want))
			}
			for i, e := range errs {
				if !strings.HasPrefix(e, `compile tool "t": `) || !strings.Contains(e, tc.want[i]) {
					t.Errorf("Compile error %d = %q, want it to name the tool and contain %q", i, e, tc.want[i])
				}
			}
		})
	}
}

// unjoin returns the messages of the errors joined in err.
func unjoin(err error) []string {
	var msgs []string
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			msgs = append(msgs, e.Error())
		}
		return msgs
	}
	return []string{err.Error()}
}

func TestCompileAccepts(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		schema  string
		overlay Overlay
	}{
		{"object_type_array", `{"type": ["object"], "properties": {"a": {}}}`, nil},
		{"local_ref", `{"type": "object", "$defs": {"s": {"type": "string"}}, "properties": {"a": {"$ref": "#/$defs/s"}}}`, nil},
		{"draft_07_definitions", `{"$schema": "http://json-schema.org/draft-07/schema#", "type": "object",
			"definitions": {"s": {"type": "string"}}, "properties": {"a": {"$ref": "#/definitions/s"}}}`, nil},
		{"self_id_ref", `{"$id": "https://schemas.example.com/tool.json", "type": "object",
			"$defs": {"s": {"type": "string"}}, "properties": {"a": {"$ref": "https://schemas.example.com/tool.json#/$defs/s"}}}`, nil},
		{"metaschema_ref", `{"type": "object", "properties": {"a": {"$ref": "https://json-schema.org/draft/2020-12/schema"}}}`, nil},
		{"every_constraint", okSchema, Overlay{
			"a": {Pattern: "[a-z]+", Enum: []string{"x"}, MaxLength: ptr(0)},
			"n": {Minimum: ptr(math.Inf(-1)), Maximum: ptr(1.0)},
		}},
		{"float64_extremes", `{"type": "object", "properties": {"a": {"minimum": -1.7976931348623157e308, "maximum": 1.7976931348623157e+308, "multipleOf": 5e-324}}}`, nil},
		{"min_equals_max", okSchema, Overlay{"n": {Minimum: ptr(1.0), Maximum: ptr(1.0)}}},
		{"root_path_prefix", okSchema, Overlay{"a": {PathPrefixes: []string{"/"}}}},
		{"url_host_forms", okSchema, Overlay{"a": {URLHosts: []string{"Good.COM.", "*.Example.com", "10.0.0.1", "::1", "[2001:db8::1]", "xn--gd-eka.com"}}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if _, err := Compile("t", []byte(tc.schema), tc.overlay); err != nil {
				t.Errorf("Compile(%s, %v) = %v, want nil", tc.schema, tc.overlay, err)
			}
		})
	}
}

// TestCompileNeverFetches serves a schema that would compile, over HTTP and
// from a file, and checks that Compile refuses to use either.
func TestCompileNeverFetches(t *testing.T) {
	t.Parallel()
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Header().Set("Content-Type", "application/schema+json")
		w.Write([]byte(`{"type": "string"}`))
	}))
	t.Cleanup(srv.Close)
	file := filepath.Join(t.TempDir(), "s.json")
	if err := os.WriteFile(file, []byte(`{"type": "string"}`), 0o600); err != nil {
		t.Fatal(err)
	}

	for _, ref := range []string{srv.URL + "/s.json", "file://" + filepath.ToSlash(file)} {
		schema := `{"type": "object", "properties": {"a": {"$ref": "` + ref + `"}}}`
		_, err := Compile("t", []byte(schema), nil)
		if err == nil || !strings.Contains(err.Error(), "external references are not allowed") {
			t.Errorf("Compile($ref %s) = %v, want external reference error", ref, err)
		}
	}
	if n := hits.Load(); n != 0 {
		t.Errorf("upstream schema server got %d requests, want 0", n)
	}
}
