package replay

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/chaperone-dev/chaperone/internal/boundedfile"
	"github.com/chaperone-dev/chaperone/internal/config"
	"github.com/chaperone-dev/chaperone/internal/registry"
	"github.com/chaperone-dev/chaperone/internal/store/sqlite"
	"github.com/chaperone-dev/chaperone/internal/upstream"
)

// MaxSchemaBytes bounds one schema file of a schema directory.
const MaxSchemaBytes = config.MaxFileBytes

// Definitions are the tool definitions that arguments are validated against, by exposed
// tool name. Build them with [LoadDefinitions]; the zero value holds none.
type Definitions struct {
	byName map[string]definition
	// warnings are about the sources, in a stable order.
	warnings []string
}

type definition struct {
	description string
	inputSchema json.RawMessage
	source      string
}

// LoadDefinitions reads the definitions of the tools cfg declares: for each, the pinned
// definition in the gateway's store at storePath, else the input schema in
// schemaDir/<exposed-name>.json; either source may be "" for none. A tool found in neither
// has no definition, and [Run] gives it a permissive schema.
//
// A pin whose definition is absent, does not hash to the pin, or is for another upstream
// tool than the configuration declares is not used, with a warning.
func LoadDefinitions(ctx context.Context, cfg *config.Config, storePath, schemaDir string) (*Definitions, error) {
	names, err := config.ExposedNames(cfg.Tools)
	if err != nil {
		return nil, err
	}
	d := &Definitions{byName: map[string]definition{}}
	if storePath != "" {
		if err := d.fromStore(ctx, cfg, names, storePath); err != nil {
			return nil, err
		}
	}
	if schemaDir != "" {
		if err := d.fromDir(cfg, names, schemaDir); err != nil {
			return nil, err
		}
	}
	return d, nil
}

func (d *Definitions) fromStore(ctx context.Context, cfg *config.Config, names []string, path string) error {
	db, err := sqlite.OpenReadOnly(ctx, path)
	if err != nil {
		return fmt.Errorf("read pinned definitions: %w", err)
	}
	defer db.Close()
	pins, err := db.Pins(ctx)
	if err != nil {
		return fmt.Errorf("read pinned definitions: %w", err)
	}
	byTool := make(map[string]registry.Pin, len(pins))
	for _, p := range pins {
		byTool[p.Tool] = p
	}
	for i, t := range cfg.Tools {
		p, ok := byTool[names[i]]
		if !ok {
			continue
		}
		def, err := pinnedDefinition(p, t)
		if err != nil {
			d.warnings = append(d.warnings, fmt.Sprintf("tool %q: pinned definition not used: %v", names[i], err))
			continue
		}
		d.byName[names[i]] = def
	}
	return nil
}

// pinnedDefinition decodes a pin's canonical definition and checks it is the one pinned.
func pinnedDefinition(p registry.Pin, t config.Tool) (definition, error) {
	if len(p.Definition) == 0 {
		return definition{}, errors.New("the store holds only its hash")
	}
	var def struct {
		Name        string          `json:"name"`
		Description string          `json:"description"`
		InputSchema json.RawMessage `json:"inputSchema"`
	}
	if err := json.Unmarshal(p.Definition, &def); err != nil {
		return definition{}, fmt.Errorf("not valid JSON: %v", err)
	}
	if p.Upstream != t.Upstream || def.Name != t.Name {
		return definition{}, fmt.Errorf("it is for tool %q of upstream %q", def.Name, p.Upstream)
	}
	_, hash, err := registry.DefinitionHash(&upstream.Tool{Name: def.Name, Description: def.Description, InputSchema: def.InputSchema})
	if err != nil || hash != p.Hash {
		return definition{}, errors.New("it does not match its hash")
	}
	return definition{description: def.Description, inputSchema: def.InputSchema, source: "store"}, nil
}

func (d *Definitions) fromDir(cfg *config.Config, names []string, dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("read schemas: %w", err)
	}
	declared := map[string]bool{}
	for _, n := range names {
		declared[n] = true
	}
	for _, e := range entries {
		if n, ok := strings.CutSuffix(e.Name(), ".json"); ok && !declared[n] {
			d.warnings = append(d.warnings, fmt.Sprintf("schema %s: no declared tool %q", e.Name(), n))
		}
	}
	for _, n := range names {
		if _, ok := d.byName[n]; ok {
			continue // the pinned definition wins
		}
		path := filepath.Join(dir, n+".json")
		data, err := readBounded(path, MaxSchemaBytes)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("read schema: %w", err)
		}
		if !json.Valid(data) {
			return fmt.Errorf("read schema %s: not valid JSON", path)
		}
		d.byName[n] = definition{inputSchema: bytes.TrimSpace(data), source: path}
	}
	return nil
}

func readBounded(path string, limit int64) ([]byte, error) {
	b, _, err := boundedfile.Read(path, limit)
	return b, err
}

// permissiveSchema is the input schema of a tool without a definition: an object whose
// properties are the overlay's arguments and every argument name the trace uses for the
// tool, each accepting any value. The registry refuses arguments a schema does not declare
// (whatever additionalProperties says), so declaring them all is what leaves the overlay
// as the only check.
func permissiveSchema(overlayArgs []string, seen map[string]struct{}) json.RawMessage {
	props := map[string]any{}
	for _, a := range overlayArgs {
		props[a] = map[string]any{}
	}
	for a := range seen {
		props[a] = map[string]any{}
	}
	// encoding/json sorts map keys, so the schema is the same on every run.
	b, err := json.Marshal(map[string]any{"type": "object", "additionalProperties": true, "properties": props})
	if err != nil {
		panic("replay: marshal permissive schema: " + err.Error()) // only strings and maps
	}
	return b
}

// argumentNames returns the top-level names of a call's arguments; nil if they are not an
// object (the pipeline refuses such calls anyway).
func argumentNames(args json.RawMessage, into map[string]struct{}) {
	var m map[string]json.RawMessage
	if json.Unmarshal(args, &m) != nil {
		return
	}
	for k := range m {
		into[k] = struct{}{}
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
