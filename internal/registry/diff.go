package registry

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/chaperone-dev/chaperone/internal/upstream"
)

// Change is one difference between two definitions of a tool.
type Change struct {
	// Field is where: "name", "description", or a path into a schema such as
	// "inputSchema.properties.to.description" or "inputSchema.required[1]".
	Field string `json:"field"`
	// Kind is added, removed or changed.
	Kind string `json:"kind"`
	// Old and New are the values: plain text for the name and description, JSON otherwise;
	// "" for the side that has none.
	Old string `json:"old,omitempty"`
	New string `json:"new,omitempty"`
}

// The kinds of a [Change].
const (
	Added   = "added"
	Removed = "removed"
	Changed = "changed"
)

// maxChanges bounds the changes [Diff] lists; a longer diff ends with one "…" change.
const maxChanges = 200

// Diff lists what changed from old to new: the name, the description text and each schema
// field (input and output schemas compared as JSON values, so key order and the spelling of
// numbers do not count). Nil means the definitions are the same.
func Diff(old, new *upstream.Tool) ([]Change, error) {
	var cs []Change
	if old.Name != new.Name {
		cs = append(cs, Change{Field: "name", Kind: Changed, Old: old.Name, New: new.Name})
	}
	if old.Description != new.Description {
		cs = append(cs, Change{Field: "description", Kind: Changed, Old: old.Description, New: new.Description})
	}
	for _, s := range []struct {
		field    string
		old, new json.RawMessage
	}{{"inputSchema", old.InputSchema, new.InputSchema}, {"outputSchema", old.OutputSchema, new.OutputSchema}} {
		a, err := decodeSchema(s.old)
		if err != nil {
			return nil, fmt.Errorf("old %s: %w", s.field, err)
		}
		b, err := decodeSchema(s.new)
		if err != nil {
			return nil, fmt.Errorf("new %s: %w", s.field, err)
		}
		diffValues(s.field, a, a != nil, b, b != nil, &cs)
	}
	if len(cs) > maxChanges {
		cs = append(cs[:maxChanges], Change{Field: "…", Kind: Changed, New: "more changes, not listed"})
	}
	return cs, nil
}

// decodeSchema decodes a schema's JSON with numbers as float64, so 1 and 1.0 are one value;
// an absent schema and JSON null are both nil.
func decodeSchema(raw json.RawMessage) (any, error) {
	if len(bytes.TrimSpace(raw)) == 0 {
		return nil, nil
	}
	var v any
	dec := json.NewDecoder(bytes.NewReader(raw))
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, errors.New("data after the JSON value")
	}
	return v, nil
}

// diffValues appends the changes from a to b under path; hasA and hasB say whether each
// side has a value there at all (a JSON null is a value). Objects are compared key by key
// and arrays element by element; any other difference is one change of the whole value.
func diffValues(path string, a any, hasA bool, b any, hasB bool, cs *[]Change) {
	if len(*cs) > maxChanges {
		return
	}
	switch {
	case !hasA && !hasB:
		return
	case !hasA:
		*cs = append(*cs, Change{Field: path, Kind: Added, New: jsonText(b)})
		return
	case !hasB:
		*cs = append(*cs, Change{Field: path, Kind: Removed, Old: jsonText(a)})
		return
	}
	if ma, ok := a.(map[string]any); ok {
		if mb, ok := b.(map[string]any); ok {
			keys := make([]string, 0, len(ma)+len(mb))
			for k := range ma {
				keys = append(keys, k)
			}
			for k := range mb {
				if _, dup := ma[k]; !dup {
					keys = append(keys, k)
				}
			}
			slices.Sort(keys)
			for _, k := range keys {
				x, okA := ma[k]
				y, okB := mb[k]
				diffValues(path+"."+k, x, okA, y, okB, cs)
			}
			return
		}
	}
	if la, ok := a.([]any); ok {
		if lb, ok := b.([]any); ok {
			for i := range max(len(la), len(lb)) {
				var x, y any
				if i < len(la) {
					x = la[i]
				}
				if i < len(lb) {
					y = lb[i]
				}
				diffValues(fmt.Sprintf("%s[%d]", path, i), x, i < len(la), y, i < len(lb), cs)
			}
			return
		}
	}
	if ja, jb := jsonText(a), jsonText(b); ja != jb {
		*cs = append(*cs, Change{Field: path, Kind: Changed, Old: ja, New: jb})
	}
}

func jsonText(v any) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return fmt.Sprint(v)
	}
	return string(bytes.TrimSuffix(b.Bytes(), []byte("\n")))
}

// ParseDefinition decodes a pinned definition, the canonical JSON [DefinitionHash] makes.
func ParseDefinition(def []byte) (*upstream.Tool, error) {
	var d struct {
		Name         string          `json:"name"`
		Description  string          `json:"description"`
		InputSchema  json.RawMessage `json:"inputSchema"`
		OutputSchema json.RawMessage `json:"outputSchema"`
	}
	if err := json.Unmarshal(def, &d); err != nil {
		return nil, fmt.Errorf("pinned definition: %w", err)
	}
	t := &upstream.Tool{Name: d.Name, Description: d.Description, InputSchema: d.InputSchema, OutputSchema: d.OutputSchema}
	if string(t.InputSchema) == "null" {
		t.InputSchema = nil
	}
	return t, nil
}

// Comparison is what an operator reviews before approving a tool: what its upstream offers
// now against what was approved — the signed manifest's definition if one describes the
// tool, else the pinned definition — field by field, with what the review found.
type Comparison struct {
	Tool   string `json:"tool"`
	Status Status `json:"status"`
	Reason string `json:"reason,omitempty"`
	// Against is "manifest", "pin", or "" when nothing was approved yet (every field of the
	// live definition then shows as added).
	Against string `json:"against,omitempty"`
	// Signer names the trusted key of the manifest compared against.
	Signer string `json:"signer,omitempty"`
	// ApprovedHash is the pinned hash ("" if none); LiveHash what the upstream offers.
	ApprovedHash string   `json:"approved_hash,omitempty"`
	LiveHash     string   `json:"live_hash,omitempty"`
	Changes      []Change `json:"changes"`
	// Finding is what the review found in the live definition.
	Finding string `json:"finding,omitempty"`
	// Live is the live definition, as [DefinitionHash] encodes it.
	Live json.RawMessage `json:"live,omitempty"`
}

// Compare returns the tool's [Comparison]. A tool whose upstream offered nothing yet has no
// changes to show and a LiveHash of "".
func (r *Registry) Compare(ctx context.Context, name string) (*Comparison, error) {
	t, ok := r.Lookup(name)
	if !ok {
		return nil, fmt.Errorf("compare %q: %w", name, ErrUnknownTool)
	}
	c := &Comparison{Tool: name, Status: t.Status, Reason: t.Reason, ApprovedHash: t.Hash, LiveHash: t.LiveHash,
		Finding: t.Finding, Changes: []Change{}}
	if t.live == nil {
		return c, nil
	}
	approved := &upstream.Tool{}
	var err error
	switch {
	case t.Manifest != nil:
		c.Against, c.Signer, approved = "manifest", t.Manifest.Signer, t.Manifest.Definition()
	default:
		var pin Pin
		var pinned bool
		pin, pinned, err = r.opts.Pins.Pin(ctx, name)
		if err != nil {
			return nil, fmt.Errorf("compare %q: read pin: %w", name, err)
		}
		if pinned && len(pin.Definition) > 0 {
			if approved, err = ParseDefinition(pin.Definition); err != nil {
				return nil, fmt.Errorf("compare %q: %w", name, err)
			}
			c.Against = "pin"
		}
	}
	if c.Live, _, err = DefinitionHash(t.live); err != nil {
		return nil, fmt.Errorf("compare %q: %w", name, err)
	}
	live := *t.live
	live.Title, live.Annotations = "", nil // not part of a definition
	cs, err := Diff(approved, &live)
	if err != nil {
		return nil, fmt.Errorf("compare %q: %w", name, err)
	}
	if cs != nil {
		c.Changes = cs
	}
	return c, nil
}
