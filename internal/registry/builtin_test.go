package registry_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/chaperone-dev/chaperone/internal/registry"
	"github.com/chaperone-dev/chaperone/internal/upstream"
)

func TestBuiltinIsActiveAndValidates(t *testing.T) {
	def := upstream.Tool{Name: "egress", InputSchema: json.RawMessage(`{"type":"object","properties":{"method":{"type":"string"}},"required":["method"],"additionalProperties":false}`)}
	tl, err := registry.Builtin(registry.Declaration{Name: "egress", Upstream: "egress", UpstreamName: "egress", Class: "external"}, def)
	if err != nil {
		t.Fatalf("Builtin: %v", err)
	}
	if tl.Status != registry.StatusActive || tl.Validator == nil || !strings.HasPrefix(tl.Hash, "sha256:") {
		t.Fatalf("Builtin = %+v, want an active tool with a validator and a hash", tl)
	}
	if err := tl.Validator.Validate(map[string]any{"method": "GET", "extra": 1.0}); err == nil {
		t.Errorf("the validator accepted an argument the schema forbids")
	}
	if _, err := registry.Builtin(registry.Declaration{Name: "bad"}, upstream.Tool{Name: "bad", InputSchema: json.RawMessage(`{"type":`)}); err == nil {
		t.Errorf("Builtin accepted a malformed schema")
	}
}
