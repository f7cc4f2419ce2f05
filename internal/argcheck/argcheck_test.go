package argcheck

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// testSchema is a draft-07 schema shaped like the ones MCP servers publish.
const testSchema = `{
	"$schema": "http://json-schema.org/draft-07/schema#",
	"type": "object",
	"properties": {
		"path":   {"type": "string", "description": "file to read"},
		"url":    {"type": "string"},
		"mode":   {"type": "string"},
		"count":  {"type": "number"},
		"name":   {"type": "string"},
		"email":  {"type": "string", "format": "email"},
		"link":   {"type": "string", "format": "uri"},
		"kind":   {"enum": ["a", "b"]},
		"opts":   {
			"type": "object",
			"properties": {"depth": {"type": "integer", "minimum": 0}},
			"required": ["depth"],
			"additionalProperties": false
		},
		"tags":   {"type": "array", "items": {"type": "string", "pattern": "^[a-z]+$"}, "maxItems": 3},
		"target": {},
		"level":  {}
	},
	"required": ["path"],
	"additionalProperties": false
}`

func ptr[T any](v T) *T { return &v }

// testOverlay constrains testSchema's arguments.
func testOverlay() Overlay {
	return Overlay{
		"path":   {PathPrefixes: []string{"/srv/data", "/tmp/work"}},
		"url":    {URLHosts: []string{"good.com", "*.example.com", "127.0.0.1", "::1"}},
		"mode":   {Enum: []string{"read", "write"}},
		"count":  {Minimum: ptr(1.0), Maximum: ptr(10.0)},
		"name":   {Pattern: "[a-z]+", MaxLength: ptr(5)},
		"target": {PathPrefixes: []string{"/srv/data"}},
		"level":  {Minimum: ptr(0.0)},
	}
}

func mustCompile(tb testing.TB, schema string, overlay Overlay) *Validator {
	tb.Helper()
	v, err := Compile("test_tool", []byte(schema), overlay)
	if err != nil {
		tb.Fatalf("Compile(%s) = %v", schema, err)
	}
	return v
}

// decodeArgs decodes a JSON object the way the gateway does.
func decodeArgs(tb testing.TB, s string) map[string]any {
	tb.Helper()
	if s == "" {
		return nil
	}
	var args map[string]any
	if err := json.Unmarshal([]byte(s), &args); err != nil {
		tb.Fatalf("decode %s: %v", s, err)
	}
	return args
}

// problems returns the problems of a Validate result, nil for success.
func problems(tb testing.TB, err error) []Problem {
	tb.Helper()
	if err == nil {
		return nil
	}
	var e *Error
	if !errors.As(err, &e) {
		tb.Fatalf("Validate returned %T %v, want *Error", err, err)
	}
	return e.Problems
}

// validateCases run against testSchema and testOverlay. They also seed
// FuzzValidate.
var validateCases = []struct {
	name string
	args string // JSON; "" is nil
	want []Problem
}{
	{name: "minimal", args: `{"path": "/srv/data/a.txt"}`},
	{name: "all_arguments", args: `{"path": "/srv/data/a.txt", "url": "https://good.com/x", "mode": "read",
		"count": 5, "name": "abc", "email": "a@b.example", "link": "https://x.test/y", "kind": "a",
		"opts": {"depth": 2}, "tags": ["x", "y"], "target": "/srv/data", "level": 0}`},
	{name: "nil_args", args: "", want: []Problem{{"path", "required argument is missing"}}},
	{name: "empty_args", args: `{}`, want: []Problem{{"path", "required argument is missing"}}},
	{name: "wrong_type_string", args: `{"path": 42}`, want: []Problem{{"path", "must be of type string (got number)"}}},
	{name: "wrong_type_null", args: `{"path": null}`, want: []Problem{{"path", "must be of type string (got null)"}}},
	{name: "wrong_type_object", args: `{"path": "/srv/data", "opts": []}`, want: []Problem{{"opts", "must be of type object (got array)"}}},
	{name: "unknown_argument", args: `{"path": "/srv/data", "extra": 1}`, want: []Problem{{"extra", "unknown argument"}}},
	{name: "unknown_argument_empty_name", args: `{"path": "/srv/data", "": 1}`, want: []Problem{{"", `unknown argument "" (empty name)`}}},
	{name: "unknown_argument_in_another_case", args: `{"path": "/srv/data", "TARGET": "/etc"}`, want: []Problem{{"TARGET", `unknown argument: the tool declares "target", and names are matched exactly`}}},
	{name: "unknown_and_missing", args: `{"zzz": true, "aaa": "x"}`, want: []Problem{
		{"aaa", "unknown argument"}, {"path", "required argument is missing"}, {"zzz", "unknown argument"},
	}},
	{name: "nested_missing", args: `{"path": "/srv/data", "opts": {}}`, want: []Problem{{"opts", `missing required property "depth"`}}},
	{name: "nested_unknown", args: `{"path": "/srv/data", "opts": {"depth": 1, "x": 1}}`, want: []Problem{{"opts", `unknown property "x"`}}},
	{name: "nested_unknown_sorted", args: `{"path": "/srv/data", "opts": {"depth": 1, "y": 1, "x": 1, "w": 1}}`, want: []Problem{
		{"opts", `unknown property "w"`}, {"opts", `unknown property "x"`}, {"opts", `unknown property "y"`},
	}},
	{name: "nested_bound", args: `{"path": "/srv/data", "opts": {"depth": -1}}`, want: []Problem{{"opts", `at "/depth": must be >= 0`}}},
	{name: "nested_type", args: `{"path": "/srv/data", "opts": {"depth": 1.5}}`, want: []Problem{{"opts", `at "/depth": must be of type integer (got number)`}}},
	{name: "array_items", args: `{"path": "/srv/data", "tags": ["ok", "NO", 3, "a", "b"]}`, want: []Problem{
		{"tags", `at "/1": must match the pattern "^[a-z]+$"`},
		{"tags", `at "/2": must be of type string (got number)`},
		{"tags", "must have at most 3 items"},
	}},
	{name: "format_email", args: `{"path": "/srv/data", "email": "not-an-email"}`, want: []Problem{{"email", `must be a valid "email"`}}},
	{name: "format_uri", args: `{"path": "/srv/data", "link": "no scheme"}`, want: []Problem{{"link", `must be a valid "uri"`}}},
	{name: "schema_enum", args: `{"path": "/srv/data", "kind": "c"}`, want: []Problem{{"kind", `must be one of the values ["a","b"]`}}},
	{name: "overlay_enum_ok", args: `{"path": "/srv/data", "mode": "write"}`},
	{name: "overlay_enum", args: `{"path": "/srv/data", "mode": "READ"}`, want: []Problem{{"mode", `is not one of the allowed values ["read" "write"]`}}},
	{name: "overlay_enum_wrong_type_via_schema", args: `{"path": "/srv/data", "mode": 1}`, want: []Problem{{"mode", "must be of type string (got number)"}}},
	{name: "overlay_minimum_boundary", args: `{"path": "/srv/data", "count": 1}`},
	{name: "overlay_maximum_boundary", args: `{"path": "/srv/data", "count": 10}`},
	{name: "overlay_below_minimum", args: `{"path": "/srv/data", "count": 0.999}`, want: []Problem{{"count", "is less than the minimum 1"}}},
	{name: "overlay_above_maximum", args: `{"path": "/srv/data", "count": 10.001}`, want: []Problem{{"count", "is greater than the maximum 10"}}},
	{name: "overlay_minimum_wrong_type", args: `{"path": "/srv/data", "level": "7"}`, want: []Problem{{"level", "must be a number"}}},
	{name: "overlay_minimum_bool", args: `{"path": "/srv/data", "level": true}`, want: []Problem{{"level", "must be a number"}}},
	{name: "overlay_pattern_ok", args: `{"path": "/srv/data", "name": "abcde"}`},
	{name: "overlay_pattern_anchored", args: `{"path": "/srv/data", "name": "ab1"}`, want: []Problem{{"name", `does not match the pattern "[a-z]+"`}}},
	{name: "overlay_pattern_empty", args: `{"path": "/srv/data", "name": ""}`, want: []Problem{{"name", `does not match the pattern "[a-z]+"`}}},
	{name: "overlay_max_length_exceeded", args: `{"path": "/srv/data", "name": "abcdef"}`, want: []Problem{{"name", "is longer than the max_length of 5 characters"}}},
	{name: "overlay_two_bounds", args: `{"path": "/srv/data", "name": "ABCDEF"}`, want: []Problem{
		{"name", "is longer than the max_length of 5 characters"},
		{"name", `does not match the pattern "[a-z]+"`},
	}},
	{name: "overlay_path_wrong_type", args: `{"path": "/srv/data", "target": 5}`, want: []Problem{{"target", "must be a string"}}},
	{name: "overlay_path_array", args: `{"path": "/srv/data", "target": ["/srv/data"]}`, want: []Problem{{"target", "must be a string"}}},
	{name: "overlay_path_escape", args: `{"path": "/etc/passwd"}`, want: []Problem{{"path", "escapes the allowed directories [/srv/data /tmp/work]"}}},
	{name: "overlay_url_denied", args: `{"path": "/srv/data", "url": "https://evil.com"}`, want: []Problem{{"url", "host is not one of the allowed hosts [good.com *.example.com 127.0.0.1 ::1]"}}},
	{name: "many_problems", args: `{"path": "../x", "url": "ftp://x", "mode": "x", "count": 0, "name": "1", "email": "x", "opts": {}}`, want: []Problem{
		{"count", "is less than the minimum 1"},
		{"email", `must be a valid "email"`},
		{"mode", `is not one of the allowed values ["read" "write"]`},
		{"name", `does not match the pattern "[a-z]+"`},
		{"opts", `missing required property "depth"`},
		{"path", "must be an absolute path"},
		{"url", "must be an http or https URL"},
	}},
}

func TestValidate(t *testing.T) {
	t.Parallel()
	v := mustCompile(t, testSchema, testOverlay())
	for _, tc := range validateCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := v.Validate(decodeArgs(t, tc.args))
			if diff := cmp.Diff(tc.want, problems(t, err)); diff != "" {
				t.Errorf("Validate(%s) problems mismatch (-want +got):\n%s", tc.args, diff)
			}
		})
	}
}

func TestValidateAdditionalPropertiesTrueStillRefusesUnknown(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		schema string
	}{
		{"additional_true", `{"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": true}`},
		{"additional_schema", `{"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": {"type": "integer"}}`},
		{"pattern_properties", `{"type": "object", "properties": {"a": {"type": "string"}}, "patternProperties": {"^x": {}}}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			v := mustCompile(t, tc.schema, nil)
			if err := v.Validate(map[string]any{"a": "ok"}); err != nil {
				t.Errorf("Validate(declared) = %v, want nil", err)
			}
			got := problems(t, v.Validate(map[string]any{"a": "ok", "xtra": 1.0}))
			want := []Problem{{"xtra", "unknown argument"}}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("Validate(unknown) problems mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestValidateSchemaWithoutProperties(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		schema string
	}{
		{"empty_object", `{"type": "object"}`},
		{"empty_properties", `{"type": "object", "properties": {}}`},
		{"additional_only", `{"type": "object", "additionalProperties": {"type": "string"}}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			v := mustCompile(t, tc.schema, nil)
			for _, args := range []map[string]any{nil, {}} {
				if err := v.Validate(args); err != nil {
					t.Errorf("Validate(%v) = %v, want nil", args, err)
				}
			}
			got := problems(t, v.Validate(map[string]any{"a": "x"}))
			if diff := cmp.Diff([]Problem{{"a", "unknown argument"}}, got); diff != "" {
				t.Errorf("Validate({a}) problems mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestValidateDrafts(t *testing.T) {
	t.Parallel()
	// Each schema requires "email" (format email) and "n" with an
	// exclusive minimum of 0, written the way its draft spells it.
	tests := []struct {
		name   string
		schema string
	}{
		{"draft-04", `{"$schema": "http://json-schema.org/draft-04/schema#", "type": "object",
			"properties": {"email": {"type": "string", "format": "email"}, "n": {"type": "number", "minimum": 0, "exclusiveMinimum": true}},
			"required": ["email"]}`},
		{"draft-06", `{"$schema": "http://json-schema.org/draft-06/schema#", "type": "object",
			"properties": {"email": {"type": "string", "format": "email"}, "n": {"type": "number", "exclusiveMinimum": 0}},
			"required": ["email"]}`},
		{"draft-07", `{"$schema": "http://json-schema.org/draft-07/schema#", "type": "object",
			"properties": {"email": {"type": "string", "format": "email"}, "n": {"type": "number", "exclusiveMinimum": 0}},
			"required": ["email"]}`},
		{"draft-2019-09", `{"$schema": "https://json-schema.org/draft/2019-09/schema", "type": "object",
			"properties": {"email": {"type": "string", "format": "email"}, "n": {"type": "number", "exclusiveMinimum": 0}},
			"required": ["email"]}`},
		{"draft-2020-12", `{"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object",
			"properties": {"email": {"type": "string", "format": "email"}, "n": {"type": "number", "exclusiveMinimum": 0}},
			"required": ["email"]}`},
		{"no_schema_is_2020-12", `{"type": "object",
			"$defs": {"pos": {"type": "number", "exclusiveMinimum": 0}},
			"properties": {"email": {"type": "string", "format": "email"}, "n": {"$ref": "#/$defs/pos"}},
			"required": ["email"]}`},
	}
	cases := []struct {
		name string
		args string
		want []Problem
	}{
		{"valid", `{"email": "a@b.example", "n": 1}`, nil},
		{"missing_required", `{"n": 1}`, []Problem{{"email", "required argument is missing"}}},
		{"format", `{"email": "nope"}`, []Problem{{"email", `must be a valid "email"`}}},
		{"exclusive_minimum", `{"email": "a@b.example", "n": 0}`, nil}, // message differs by draft
		{"wrong_type", `{"email": true}`, []Problem{{"email", "must be of type string (got boolean)"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			v := mustCompile(t, tc.schema, Overlay{"email": {MaxLength: ptr(40)}})
			for _, c := range cases {
				got := problems(t, v.Validate(decodeArgs(t, c.args)))
				if c.name == "exclusive_minimum" {
					if len(got) != 1 || got[0].Argument != "n" {
						t.Errorf("Validate(%s) = %v, want one problem for n", c.args, got)
					}
					continue
				}
				if diff := cmp.Diff(c.want, got); diff != "" {
					t.Errorf("%s: Validate(%s) problems mismatch (-want +got):\n%s", c.name, c.args, diff)
				}
			}
		})
	}
}

func TestValidateUsesJSONNumber(t *testing.T) {
	t.Parallel()
	v := mustCompile(t, testSchema, testOverlay())
	tests := []struct {
		n    json.Number
		want []Problem
	}{
		{"5", nil},
		{"11", []Problem{{"count", "is greater than the maximum 10"}}},
	}
	for _, tc := range tests {
		got := problems(t, v.Validate(map[string]any{"path": "/srv/data", "count": tc.n}))
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("Validate(count=%s) problems mismatch (-want +got):\n%s", tc.n, diff)
		}
	}
}

func TestErrorBoundsProblems(t *testing.T) {
	t.Parallel()
	v := mustCompile(t, testSchema, nil)
	args := map[string]any{"path": "/x"}
	for i := range 15 {
		args[fmt.Sprintf("x%02d", i)] = 1.0
	}
	err := v.Validate(args)
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("Validate = %v, want *Error", err)
	}
	if len(e.Problems) != MaxProblems || e.Omitted != 5 {
		t.Errorf("Validate: %d problems, %d omitted; want %d, 5", len(e.Problems), e.Omitted, MaxProblems)
	}
	if e.Problems[0].Argument != "x00" || e.Problems[9].Argument != "x09" {
		t.Errorf("Validate: problems %v, want sorted x00..x09", e.Problems)
	}
	if s := err.Error(); !strings.HasSuffix(s, `argument "x09": unknown argument; ... and 5 more`) {
		t.Errorf("Error() = %q, want suffix %q", s, "... and 5 more")
	}
}

func TestErrorText(t *testing.T) {
	t.Parallel()
	v := mustCompile(t, `{"type": "object", "properties": {"path": {"type": "string"}}}`,
		Overlay{"path": {PathPrefixes: []string{"/srv/data"}}})
	v.tool = "read_file"
	err := v.Validate(map[string]any{"path": "/srv/data/../../etc/passwd", "extra": true})
	want := `invalid arguments for "read_file": argument "extra": unknown argument; argument "path": escapes the allowed directories [/srv/data]`
	if err == nil || err.Error() != want {
		t.Errorf("Validate().Error() = %v, want %s", err, want)
	}

	whole := (&Error{Tool: "t", Problems: []Problem{{"", "arguments must be of type object"}}}).Error()
	if want := `invalid arguments for "t": arguments must be of type object`; whole != want {
		t.Errorf("Error() = %q, want %q", whole, want)
	}
}

func TestErrorNeverContainsValue(t *testing.T) {
	t.Parallel()
	const secret = "sk_live_S3CR3T"
	schema := `{"type": "object", "properties": {
		"path": {"type": "string"}, "url": {"type": "string"}, "name": {"type": "string"},
		"mode": {"type": "string"}, "email": {"type": "string", "format": "email"},
		"uri": {"type": "string", "format": "uri"}, "ip": {"type": "string", "format": "ipv4"},
		"code": {"type": "string", "pattern": "^[0-9]+$", "maxLength": 3},
		"color": {"enum": ["red"]}, "fixed": {"const": "x"}, "num": {"type": "integer"},
		"nested": {"type": "object", "properties": {"a": {"type": "number"}}, "additionalProperties": false},
		"list": {"type": "array", "items": {"type": "integer"}, "uniqueItems": true},
		"alt": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
		"one": {"oneOf": [{"type": "string"}, {"type": "string", "minLength": 1}]},
		"not": {"not": {"type": "string"}}
	}}`
	v := mustCompile(t, schema, Overlay{
		"path": {PathPrefixes: []string{"/srv/data"}},
		"url":  {URLHosts: []string{"good.com"}},
		"name": {Pattern: "[a-z]+", MaxLength: ptr(3)},
		"mode": {Enum: []string{"read"}},
	})
	tests := []struct {
		name string
		args map[string]any
	}{
		{"path_escape", map[string]any{"path": "/etc/" + secret}},
		{"path_relative", map[string]any{"path": secret}},
		{"path_dotdot", map[string]any{"path": "/srv/data/x/../" + secret}},
		{"url_userinfo", map[string]any{"url": "https://user:" + secret + "@good.com/"}},
		{"url_host", map[string]any{"url": "https://" + strings.ToLower(secret) + ".com/"}},
		{"url_unparsable", map[string]any{"url": "https://good.com:" + secret}},
		{"url_query", map[string]any{"url": "https://evil.com/?token=" + secret}},
		{"pattern_and_length", map[string]any{"name": secret}},
		{"overlay_enum", map[string]any{"mode": secret}},
		{"schema_format_email", map[string]any{"email": secret}},
		{"schema_format_uri", map[string]any{"uri": secret + " x"}},
		{"schema_format_ipv4", map[string]any{"ip": secret}},
		{"schema_pattern", map[string]any{"code": secret}},
		{"schema_enum", map[string]any{"color": secret}},
		{"schema_const", map[string]any{"fixed": secret}},
		{"schema_type", map[string]any{"num": secret}},
		{"schema_nested", map[string]any{"nested": map[string]any{"a": secret}}},
		{"schema_unique", map[string]any{"list": []any{secret, secret}}},
		{"schema_anyof", map[string]any{"alt": secret}},
		{"schema_oneof", map[string]any{"one": secret}},
		{"schema_not", map[string]any{"not": secret}},
		{"unknown_argument_value", map[string]any{"extra": secret}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := v.Validate(tc.args)
			if err == nil {
				t.Fatalf("Validate(%v) = nil, want refusal", tc.args)
			}
			if s := fmt.Sprintf("%v %+v %#v", err, err, err); strings.Contains(strings.ToLower(s), strings.ToLower(secret)) {
				t.Errorf("Validate(%v) error contains the value: %s", tc.args, s)
			}
		})
	}
}

func TestValidateBoundsCallerChosenNames(t *testing.T) {
	t.Parallel()
	v := mustCompile(t, `{"type": "object"}`, nil)
	long := strings.Repeat("k", 10_000)
	err := v.Validate(map[string]any{long: 1.0})
	if err == nil || len(err.Error()) > 200 {
		t.Errorf("Validate(long name) = %d bytes of error, want a bounded refusal", len(fmt.Sprint(err)))
	}
}

func TestValidateConcurrent(t *testing.T) {
	t.Parallel()
	v := mustCompile(t, testSchema, testOverlay())
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for j := range 50 {
				tc := validateCases[(i+j)%len(validateCases)]
				got := problems(t, v.Validate(decodeArgs(t, tc.args)))
				if !cmp.Equal(tc.want, got) {
					t.Errorf("concurrent Validate(%s) = %v, want %v", tc.args, got, tc.want)
					return
				}
			}
		})
	}
	wg.Wait()
}
