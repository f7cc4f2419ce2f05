package argcheck

import (
	"encoding/json"
	"errors"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"
)

func FuzzValidate(f *testing.F) {
	for _, tc := range validateCases {
		f.Add([]byte(tc.args))
	}
	for _, tc := range pathCases {
		b, _ := json.Marshal(map[string]any{"path": tc.path, "target": tc.path})
		f.Add(b)
	}
	for _, tc := range urlCases {
		b, _ := json.Marshal(map[string]any{"path": "/srv/data", "url": tc.url})
		f.Add(b)
	}
	v := mustCompile(f, testSchema, testOverlay())

	f.Fuzz(func(t *testing.T, data []byte) {
		var args map[string]any
		if err := json.Unmarshal(data, &args); err != nil {
			return
		}
		err := v.Validate(args)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("Validate(%s) = %T, want *Error", data, err)
			}
			if len(e.Problems) == 0 || len(e.Problems) > MaxProblems {
				t.Fatalf("Validate(%s) = %d problems, want 1..%d", data, len(e.Problems), MaxProblems)
			}
			for _, p := range e.Problems {
				if p.Message == msgNotValidated {
					t.Fatalf("Validate(%s): schema could not be applied: %v", data, err)
				}
			}
			if n := len(err.Error()); n > 8<<10 {
				t.Fatalf("Validate(%s): error is %d bytes, want bounded", data, n)
			}
			return
		}
		// Accepted: check the overlay's promises independently of its code.
		if p, _ := args["path"].(string); !resolvesUnder(p, "/srv/data", "/tmp/work") {
			t.Fatalf("Validate accepted path %q outside /srv/data and /tmp/work", p)
		}
		if p, ok := args["target"].(string); ok && !resolvesUnder(p, "/srv/data") {
			t.Fatalf("Validate accepted target %q outside /srv/data", p)
		}
		if u, ok := args["url"].(string); ok && !urlAllowed(u) {
			t.Fatalf("Validate accepted url %q", u)
		}
		for name := range args {
			if _, ok := v.declared[name]; !ok {
				t.Fatalf("Validate accepted unknown argument %q", name)
			}
		}
	})
}

// resolvesUnder resolves p segment by segment, as a kernel would without
// symlinks, and reports whether the result is one of dirs or below it.
func resolvesUnder(p string, dirs ...string) bool {
	if !strings.HasPrefix(p, "/") || strings.ContainsAny(p, "\x00\\") {
		return false
	}
	var stack []string
	for _, seg := range strings.Split(p, "/") {
		switch seg {
		case "", ".":
		case "..":
			if len(stack) > 0 {
				stack = stack[:len(stack)-1]
			}
		default:
			stack = append(stack, seg)
		}
	}
	for _, d := range dirs {
		want := strings.Split(strings.TrimPrefix(d, "/"), "/")
		if len(stack) >= len(want) && equalStrings(stack[:len(want)], want) {
			return true
		}
	}
	return false
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// urlAllowed restates testOverlay's url_hosts rule.
func urlAllowed(s string) bool {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.User != nil || u.Opaque != "" {
		return false
	}
	h := strings.TrimSuffix(strings.ToLower(u.Hostname()), ".")
	if ip, err := netip.ParseAddr(h); err == nil {
		return ip == netip.MustParseAddr("127.0.0.1") || ip == netip.IPv6Loopback()
	}
	if h == "good.com" {
		return true
	}
	sub, ok := strings.CutSuffix(h, ".example.com")
	return ok && sub != "" && !strings.HasPrefix(sub, ".") && !strings.HasSuffix(sub, ".") &&
		!strings.ContainsFunc(sub, func(r rune) bool {
			return !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.')
		})
}

func FuzzCompile(f *testing.F) {
	for _, tc := range compileCases {
		f.Add([]byte(tc.schema))
	}
	for _, s := range []string{testSchema, okSchema, benchSchema,
		`{"type": "object", "properties": {"a": {"type": "string", "format": "email"}}, "required": ["a"]}`,
		`{"$schema": "http://json-schema.org/draft-04/schema#", "type": "object", "properties": {"a": {"$ref": "#/definitions/x"}}, "definitions": {"x": {"minimum": 1}}}`,
		`{"type": "object", "properties": {"a": {"anyOf": [{"type": "string"}, {"$ref": "#"}]}}}`,
	} {
		f.Add([]byte(s))
	}
	overlay := Overlay{"a": {MaxLength: ptr(3)}}

	f.Fuzz(func(t *testing.T, schema []byte) {
		done := make(chan struct{})
		go func() {
			defer close(done)
			fuzzCompileOne(t, schema, overlay)
		}()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("Compile(%q) and Validate took over 10s", schema)
		}
	})
}

func fuzzCompileOne(t *testing.T, schema []byte, overlay Overlay) {
	{
		for _, o := range []Overlay{nil, overlay} {
			v, err := Compile("t", schema, o)
			if err != nil {
				if strings.Contains(err.Error(), "panicked") {
					t.Errorf("Compile(%s): %v", schema, err)
				}
				continue
			}
			for _, args := range []map[string]any{nil, {"a": "xy"}, {"a": 1.5, "b": []any{nil, true}}, {"a": map[string]any{"a": "x"}}} {
				err := v.Validate(args)
				if e, ok := err.(*Error); ok {
					for _, p := range e.Problems {
						if p.Message == msgNotValidated {
							t.Errorf("Compile(%s).Validate(%v): %v", schema, args, err)
						}
					}
				}
			}
		}
	}
}
