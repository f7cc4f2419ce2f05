package registry

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"

	"go.yaml.in/yaml/v3"

	"github.com/chaperone-dev/chaperone/internal/boundedfile"
	"github.com/chaperone-dev/chaperone/internal/flow"
	"github.com/chaperone-dev/chaperone/internal/sign"
	"github.com/chaperone-dev/chaperone/internal/upstream"
)

// ManifestFormat is the value of a tool manifest's "manifest" key.
const ManifestFormat = "chaperone.tools/v1"

// Bounds of a tool manifest.
const (
	// MaxManifestBytes bounds a manifest file and its signature file.
	MaxManifestBytes = 4 << 20
	// MaxManifestTools bounds the tools one manifest describes.
	MaxManifestTools = 1000
	// MaxDescriptionBytes bounds a tool's description in a manifest.
	MaxDescriptionBytes = 64 << 10
	maxManifestField    = 256
)

// Manifest describes tools as their publisher vouches for them: what each one says to the
// model (description, schemas) and what it does (class, labels, cost, idempotency, undo,
// owner). Its file is YAML (JSON is YAML too); its signatures are in a file beside it
// (see [SignatureFile]) and cover the file's exact bytes.
type Manifest struct {
	Format string `yaml:"manifest" json:"manifest"`
	// Publisher is who publishes the tools, as the manifest says: informational; the name
	// that counts is the one the operator's trusted keyring gives the signing key.
	Publisher string `yaml:"publisher,omitempty" json:"publisher,omitempty"`
	// Upstream, if set, is the only upstream whose tools the manifest describes.
	Upstream string         `yaml:"upstream,omitempty" json:"upstream,omitempty"`
	Tools    []ManifestTool `yaml:"tools" json:"tools"`
}

// ManifestTool is one tool in a [Manifest].
type ManifestTool struct {
	// Name is the tool's name at the upstream.
	Name        string `yaml:"name" json:"name"`
	Version     string `yaml:"version,omitempty" json:"version,omitempty"`
	Description string `yaml:"description" json:"description"`
	// InputSchema and OutputSchema are JSON Schemas; the upstream must offer exactly these
	// (compared as JSON values: key order and number spelling do not matter).
	InputSchema  any `yaml:"input_schema" json:"input_schema"`
	OutputSchema any `yaml:"output_schema,omitempty" json:"output_schema,omitempty"`
	// Class is read, write, external or destructive.
	Class string `yaml:"class" json:"class"`
	// Labels are the tool's information-flow labels.
	Labels     *ManifestLabels `yaml:"labels,omitempty" json:"labels,omitempty"`
	Cost       float64         `yaml:"cost,omitempty" json:"cost,omitempty"`
	Idempotent bool            `yaml:"idempotent,omitempty" json:"idempotent,omitempty"`
	Undo       string          `yaml:"undo,omitempty" json:"undo,omitempty"`
	// Owner is who answers for the tool.
	Owner string `yaml:"owner,omitempty" json:"owner,omitempty"`
}

// ManifestLabels are a tool's flow labels in a manifest, as in the configuration's
// tools[].flow.
type ManifestLabels struct {
	Trust string   `yaml:"trust,omitempty" json:"trust,omitempty"`
	Data  string   `yaml:"data,omitempty" json:"data,omitempty"`
	Sinks []string `yaml:"sinks,omitempty" json:"sinks,omitempty"`
}

var manifestName = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`)

// ParseManifest decodes a manifest strictly and checks it, reporting every problem at once
// with the path of the field.
func ParseManifest(data []byte) (*Manifest, error) {
	if len(data) > MaxManifestBytes {
		return nil, fmt.Errorf("manifest: %d bytes, at most %d", len(data), MaxManifestBytes)
	}
	var m Manifest
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&m); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("manifest: empty")
		}
		return nil, fmt.Errorf("manifest: %w", err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, errors.New("manifest: more than one YAML document")
	}
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...)))
	}
	if m.Format != ManifestFormat {
		bad("manifest", "must be %q, got %q", ManifestFormat, m.Format)
	}
	for field, v := range map[string]string{"publisher": m.Publisher, "upstream": m.Upstream} {
		if len(v) > maxManifestField {
			bad(field, "%d bytes, at most %d", len(v), maxManifestField)
		}
	}
	switch {
	case len(m.Tools) == 0:
		bad("tools", "describes no tool")
	case len(m.Tools) > MaxManifestTools:
		bad("tools", "%d tools, at most %d", len(m.Tools), MaxManifestTools)
	}
	seen := map[string]bool{}
	for i := range m.Tools {
		t := &m.Tools[i]
		f := fmt.Sprintf("tools[%d]", i)
		if !manifestName.MatchString(t.Name) {
			bad(f+".name", "%.80q is not a tool name ([A-Za-z0-9_.-], at most 128)", t.Name)
		} else if seen[t.Name] {
			bad(f+".name", "%q is described twice", t.Name)
		}
		seen[t.Name] = true
		if len(t.Description) > MaxDescriptionBytes {
			bad(f+".description", "%d bytes, at most %d", len(t.Description), MaxDescriptionBytes)
		}
		for field, v := range map[string]string{"version": t.Version, "owner": t.Owner} {
			if len(v) > maxManifestField {
				bad(f+"."+field, "%d bytes, at most %d", len(v), maxManifestField)
			}
		}
		if len(t.Undo) > MaxDescriptionBytes {
			bad(f+".undo", "%d bytes, at most %d", len(t.Undo), MaxDescriptionBytes)
		}
		if _, err := schemaJSON(t.InputSchema); err != nil || t.InputSchema == nil {
			if err == nil {
				err = errors.New("missing: give the tool's JSON Schema (at least {type: object})")
			}
			bad(f+".input_schema", "%v", err)
		} else if _, ok := t.InputSchema.(map[string]any); !ok {
			bad(f+".input_schema", "must be an object")
		}
		if t.OutputSchema != nil {
			if _, err := schemaJSON(t.OutputSchema); err != nil {
				bad(f+".output_schema", "%v", err)
			} else if _, ok := t.OutputSchema.(map[string]any); !ok {
				bad(f+".output_schema", "must be an object")
			}
		}
		switch t.Class {
		case "read", "write", "external", "destructive":
		default:
			bad(f+".class", "must be read, write, external or destructive, got %q", t.Class)
		}
		if t.Labels != nil {
			if _, err := flow.ParseLabels(t.Class, t.Labels.Trust, t.Labels.Data, t.Labels.Sinks); err != nil {
				bad(f+".labels", "%v", err)
			}
		}
		if t.Cost < 0 || t.Cost != t.Cost || t.Cost > 1e9 {
			bad(f+".cost", "must be from 0 to 1e9, got %v", t.Cost)
		}
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("manifest: %w", errors.Join(errs...))
	}
	return &m, nil
}

// schemaJSON encodes a schema decoded from YAML as JSON; nil stays nil.
func schemaJSON(v any) (json.RawMessage, error) {
	if v == nil {
		return nil, nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("not a JSON value (keys must be strings): %w", err)
	}
	return b, nil
}

// Definition returns the tool as its upstream must offer it.
func (t *ManifestTool) Definition() *upstream.Tool {
	in, _ := schemaJSON(t.InputSchema) // ParseManifest checked both
	out, _ := schemaJSON(t.OutputSchema)
	return &upstream.Tool{Name: t.Name, Description: t.Description, InputSchema: in, OutputSchema: out}
}

// SignatureFile returns the path of the signatures of the manifest at path: path + ".sig".
func SignatureFile(path string) string { return path + ".sig" }

// Signatures is the content of a signature file: JSON, {"signatures": [...]}.
type Signatures struct {
	Signatures []sign.Signature `json:"signatures"`
}

// ParseSignatures decodes a signature file.
func ParseSignatures(data []byte) ([]sign.Signature, error) {
	if len(data) > MaxManifestBytes {
		return nil, fmt.Errorf("signatures: %d bytes, at most %d", len(data), MaxManifestBytes)
	}
	var s Signatures
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return nil, fmt.Errorf("signatures: %w", err)
	}
	if dec.More() {
		return nil, errors.New("signatures: data after the JSON object")
	}
	if len(s.Signatures) > sign.MaxSignatures {
		return nil, fmt.Errorf("signatures: %d, at most %d", len(s.Signatures), sign.MaxSignatures)
	}
	return s.Signatures, nil
}

// SignedManifest is a manifest whose signature a trusted key verified.
type SignedManifest struct {
	*Manifest
	// Path is the file it was read from.
	Path string
	// Digest is "sha256:<hex>" of the file's bytes.
	Digest string
	// Signer is the trusted key that signed it, named as the keyring names it.
	Signer sign.Key
}

// ReadManifest reads the manifest at path and its signature file, and verifies them with
// trusted. An unsigned manifest, one signed only by keys trusted does not hold, and one
// whose bytes changed after signing are refused: the error wraps [sign.ErrUnsigned],
// [sign.ErrUntrusted] or [sign.ErrBadSignature].
func ReadManifest(path string, trusted *sign.Keyring) (*SignedManifest, error) {
	data, _, err := boundedfile.Read(path, MaxManifestBytes)
	if err != nil {
		return nil, err
	}
	m, err := ParseManifest(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	sigData, _, err := boundedfile.Read(SignatureFile(path), MaxManifestBytes)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%s: no signature file %s: %w", path, SignatureFile(path), sign.ErrUnsigned)
	}
	if err != nil {
		return nil, err
	}
	sigs, err := ParseSignatures(sigData)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", SignatureFile(path), err)
	}
	key, err := trusted.Verify(sign.ToolManifest, data, sigs)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	sum := sha256.Sum256(data)
	return &SignedManifest{Manifest: m, Path: path, Digest: "sha256:" + hex.EncodeToString(sum[:]), Signer: key}, nil
}

// ManifestEntry is what a signed manifest says about one declared tool.
type ManifestEntry struct {
	ManifestTool
	// Signer names the trusted key that signed the manifest.
	Signer string
	// Path and Digest identify the manifest file.
	Path   string
	Digest string
}

// Entry returns the entry of the tool named name at upstream up, if the manifest
// describes it.
func (m *SignedManifest) Entry(up, name string) (*ManifestEntry, bool) {
	if m.Upstream != "" && m.Upstream != up {
		return nil, false
	}
	for i := range m.Tools {
		if m.Tools[i].Name == name {
			return &ManifestEntry{ManifestTool: m.Tools[i], Signer: m.Signer.Name, Path: m.Path, Digest: m.Digest}, true
		}
	}
	return nil, false
}

// NewManifest returns a manifest describing the tools as offered, for a publisher to
// complete (class and the rest) and sign.
func NewManifest(publisher, up string, tools []upstream.Tool) (*Manifest, error) {
	m := &Manifest{Format: ManifestFormat, Publisher: publisher, Upstream: up}
	for i := range tools {
		t := ManifestTool{Name: tools[i].Name, Description: tools[i].Description}
		for _, s := range []struct {
			raw json.RawMessage
			to  *any
		}{{tools[i].InputSchema, &t.InputSchema}, {tools[i].OutputSchema, &t.OutputSchema}} {
			if len(s.raw) == 0 {
				continue
			}
			if err := json.Unmarshal(s.raw, s.to); err != nil {
				return nil, fmt.Errorf("tool %q: schema: %w", tools[i].Name, err)
			}
		}
		m.Tools = append(m.Tools, t)
	}
	return m, nil
}

// MarshalManifest encodes m as YAML, with a comment above saying what it is.
func MarshalManifest(m *Manifest) ([]byte, error) {
	var b bytes.Buffer
	b.WriteString("# A Chaperone tool manifest: sign it with `chaperone tools sign FILE --key KEY`.\n")
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(m); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// classRank orders the classes by what they can do, for "an operator may raise a class
// the publisher gave, never lower it".
func classRank(c string) int {
	switch c {
	case "read":
		return 0
	case "write":
		return 1
	case "external":
		return 2
	case "destructive":
		return 3
	}
	return -1
}

// ClassAtLeast reports whether class c is at least as strong as class min.
func ClassAtLeast(c, min string) bool { return classRank(c) >= classRank(min) }
