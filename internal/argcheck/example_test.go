package argcheck_test

import (
	"fmt"

	"github.com/chaperone-dev/chaperone/internal/argcheck"
)

func ExampleCompile() {
	// The schema as the upstream MCP server published it.
	schema := []byte(`{
		"type": "object",
		"properties": {"path": {"type": "string"}},
		"required": ["path"]
	}`)
	// The operator's overlay, from the gateway configuration.
	overlay := argcheck.Overlay{"path": {PathPrefixes: []string{"/srv/data"}}}

	v, err := argcheck.Compile("read_file", schema, overlay)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(v.Validate(map[string]any{"path": "/srv/data/report.txt"}))
	fmt.Println(v.Validate(map[string]any{"path": "/srv/data/../../etc/passwd", "mode": "w"}))
	// Output:
	// <nil>
	// invalid arguments for "read_file": argument "mode": unknown argument; argument "path": escapes the allowed directories [/srv/data]
}
