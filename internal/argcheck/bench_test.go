package argcheck

import (
	"testing"
)

// benchSchema is a typical tool input: five properties, draft-07.
const benchSchema = `{
	"$schema": "http://json-schema.org/draft-07/schema#",
	"type": "object",
	"properties": {
		"path":      {"type": "string", "description": "Where to save the page"},
		"url":       {"type": "string", "format": "uri", "description": "Page to fetch"},
		"title":     {"type": "string", "minLength": 1},
		"max_bytes": {"type": "integer", "minimum": 1, "maximum": 10485760},
		"overwrite": {"type": "boolean", "default": false}
	},
	"required": ["path", "url"],
	"additionalProperties": false
}`

var benchOverlay = Overlay{
	"path":  {PathPrefixes: []string{"/srv/data", "/var/cache/fetch"}},
	"url":   {URLHosts: []string{"docs.example.com", "*.githubusercontent.com"}},
	"title": {MaxLength: ptr(200)},
}

const (
	benchValidArgs = `{"path": "/srv/data/pages/intro.html", "url": "https://docs.example.com/guide/intro?lang=en",
		"title": "Introduction to the guide", "max_bytes": 1048576, "overwrite": true}`
	benchInvalidArgs = `{"path": "/srv/data/../../etc/passwd", "url": "https://evil.com/x", "title": "",
		"max_bytes": 0, "extra": 1}`
)

func BenchmarkValidate(b *testing.B) {
	tests := []struct {
		name    string
		overlay Overlay
		args    string
		valid   bool
	}{
		{"valid", benchOverlay, benchValidArgs, true},
		{"invalid", benchOverlay, benchInvalidArgs, false},
		// The schema's share of the cost, for comparison.
		{"valid_schema_only", nil, benchValidArgs, true},
	}
	for _, tc := range tests {
		v := mustCompile(b, benchSchema, tc.overlay)
		args := decodeArgs(b, tc.args)
		if err := v.Validate(args); (err == nil) != tc.valid {
			b.Fatalf("Validate(%s) = %v, want valid=%v", tc.args, err, tc.valid)
		}
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_ = v.Validate(args)
			}
		})
	}
}

func BenchmarkCompile(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Compile("fetch", []byte(benchSchema), benchOverlay); err != nil {
			b.Fatal(err)
		}
	}
}
