package registry_test

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/chaperone-dev/chaperone/internal/registry"
	"github.com/chaperone-dev/chaperone/internal/upstream"
)

// benchTools is the size of the registry BenchmarkLookup reads: a large deployment's
// declared tool count.
const benchTools = 200

// newBenchRegistry returns a registry of n declared tools of upstream "fs", synced once so
// every tool is active, pinned on first use in a real SQLite store.
func newBenchRegistry(tb testing.TB, n int) *registry.Registry {
	tb.Helper()
	e := newEnv(tb)
	decls := make([]registry.Declaration, n)
	live := make([]upstream.Tool, n)
	for i := range n {
		up := fmt.Sprintf("tool_%03d", i)
		decls[i] = registry.Declaration{Name: "fs_" + up, Upstream: "fs", UpstreamName: up, Class: "read"}
		live[i] = upstream.Tool{Name: up, Description: "Tool " + up + ".", InputSchema: json.RawMessage(schemaV1)}
	}
	r := registry.New(decls, e.opts())
	if err := r.Sync(tb.Context(), "fs", live); err != nil {
		tb.Fatalf("Sync(%d tools): %v", n, err)
	}
	for _, d := range decls {
		wantStatus(tb, r, d.Name, registry.StatusActive)
	}
	return r
}

// BenchmarkLookup measures the registry lookup each tool call makes, on a registry of 200
// active tools, for a declared name and for one that is not declared.
func BenchmarkLookup(b *testing.B) {
	r := newBenchRegistry(b, benchTools)
	cases := []struct {
		name   string
		tool   string
		wantOK bool
	}{
		{"existing", fmt.Sprintf("fs_tool_%03d", benchTools/2), true},
		{"missing", "fs_not_declared", false},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			if _, ok := r.Lookup(c.tool); ok != c.wantOK {
				b.Fatalf("Lookup(%q) ok = %v, want %v", c.tool, ok, c.wantOK)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, ok := r.Lookup(c.tool); ok != c.wantOK {
					b.Fatalf("Lookup(%q) ok = %v, want %v", c.tool, ok, c.wantOK)
				}
			}
		})
	}
}
