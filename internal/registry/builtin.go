package registry

import (
	"fmt"

	"github.com/chaperone-dev/chaperone/internal/upstream"
)

// Builtin returns an active tool the gateway itself provides — the egress proxy's
// requests — from its declaration and definition. It is not in any Registry: agents
// cannot list or call it through MCP; only the gateway hands it to the pipeline (see
// pipeline.Call.Builtin). Its Hash is the definition's, as for an upstream's tool.
func Builtin(d Declaration, def upstream.Tool) (*Tool, error) {
	_, hash, err := DefinitionHash(&def)
	if err != nil {
		return nil, fmt.Errorf("builtin tool %q: %w", d.Name, err)
	}
	t := &Tool{Declaration: d, Hash: hash, LiveHash: hash, live: &def}
	if _, err := activate(t); err != nil {
		return nil, fmt.Errorf("builtin tool %q: %w", d.Name, err)
	}
	return t, nil
}
