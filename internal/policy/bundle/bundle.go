// Package bundle packages a policy to be signed, shipped and promoted unchanged from one
// environment to the next: a content-addressed, signed file of policy files.
package bundle

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"strings"
	"unicode/utf8"

	"github.com/chaperone-dev/chaperone/internal/policy"
	"github.com/chaperone-dev/chaperone/internal/sign"
)

// Format is the value of a policy bundle's "format" key.
const Format = "chaperone.policy-bundle/v1"

// Bounds of a policy bundle.
const (
	// MaxBytes bounds an encoded bundle.
	MaxBytes = 16 << 20
	// MaxFiles bounds the files in a bundle.
	MaxFiles      = 1000
	maxBundleName = 256
)

// Bundle is a policy packaged to be signed, shipped and promoted unchanged from one
// environment to the next: its policy files, in order, under names relative to the
// bundle, and the signatures of the people who vouch for it.
//
// It is content-addressed: Hash is [policy.VersionOf] the files, so it is also the version every
// decision made by the bundle's policy names. A signature covers the hash (see
// [sign.PolicyBundle]), so a signed bundle cannot change by a byte without failing to
// verify — and a bundle whose hash does not match its files does not parse.
//
// Its encoding is JSON, one object: {"format", "hash", "files": [{"name", "data"}],
// "signatures": [...]}.
type Bundle struct {
	Format     string           `json:"format"`
	Hash       string           `json:"hash"`
	Files      []File           `json:"files"`
	Signatures []sign.Signature `json:"signatures,omitempty"`
}

// File is one policy file in a [Bundle].
type File struct {
	// Name is a clean relative path ("payments.yaml", "team/mail.yaml").
	Name string `json:"name"`
	// Data is the file's YAML text.
	Data string `json:"data"`
}

// New packages sources, whose names must already be bundle names (see [Name]).
func New(sources []policy.Source) (*Bundle, error) {
	b := &Bundle{Format: Format}
	for _, s := range sources {
		b.Files = append(b.Files, File{Name: s.Name, Data: string(s.Data)})
	}
	if err := b.check(); err != nil {
		return nil, err
	}
	b.Hash = policy.VersionOf(b.Sources())
	return b, nil
}

// Name returns the name a policy file gets in a bundle: its path relative to dir
// when dir is a directory it was read from, else its base name.
func Name(dir, file string) string {
	if dir != "" {
		if rel, ok := strings.CutPrefix(file, strings.TrimSuffix(dir, "/")+"/"); ok {
			return rel
		}
	}
	return path.Base(strings.ReplaceAll(file, "\\", "/"))
}

// Sources returns the bundle's files as policy sources, in order.
func (b *Bundle) Sources() []policy.Source {
	out := make([]policy.Source, len(b.Files))
	for i, f := range b.Files {
		out[i] = policy.Source{Name: f.Name, Data: []byte(f.Data)}
	}
	return out
}

// check reports every problem of the bundle's format and files at once.
func (b *Bundle) check() error {
	var errs []error
	if b.Format != Format {
		errs = append(errs, fmt.Errorf("format: must be %q, got %.80q", Format, b.Format))
	}
	switch {
	case len(b.Files) == 0:
		errs = append(errs, errors.New("files: the bundle holds no policy file"))
	case len(b.Files) > MaxFiles:
		errs = append(errs, fmt.Errorf("files: %d files, at most %d", len(b.Files), MaxFiles))
	}
	seen := map[string]bool{}
	for i, f := range b.Files {
		field := fmt.Sprintf("files[%d]", i)
		if err := checkBundleName(f.Name); err != nil {
			errs = append(errs, fmt.Errorf("%s.name: %w", field, err))
		} else if seen[f.Name] {
			errs = append(errs, fmt.Errorf("%s.name: %q appears twice", field, f.Name))
		}
		seen[f.Name] = true
		if !utf8.ValidString(f.Data) {
			errs = append(errs, fmt.Errorf("%s.data: not valid UTF-8", field))
		}
	}
	if len(b.Signatures) > sign.MaxSignatures {
		errs = append(errs, fmt.Errorf("signatures: %d, at most %d", len(b.Signatures), sign.MaxSignatures))
	}
	if len(errs) > 0 {
		return fmt.Errorf("policy bundle: %w", errors.Join(errs...))
	}
	return nil
}

func checkBundleName(n string) error {
	switch {
	case n == "":
		return errors.New("empty")
	case len(n) > maxBundleName:
		return fmt.Errorf("%d bytes, at most %d", len(n), maxBundleName)
	case strings.ContainsFunc(n, func(r rune) bool { return r < 0x20 || r == 0x7f || r == '\\' }):
		return fmt.Errorf("%.80q has a control character or a backslash", n)
	case path.IsAbs(n) || path.Clean(n) != n || n == ".." || strings.HasPrefix(n, "../"):
		return fmt.Errorf("%.80q is not a clean relative path", n)
	case !strings.HasSuffix(n, ".yaml") && !strings.HasSuffix(n, ".yml"):
		return fmt.Errorf("%.80q is not a .yaml or .yml file", n)
	}
	return nil
}

// ErrTampered is returned, wrapped, by [Parse] for a bundle whose hash is not
// that of its files.
var ErrTampered = errors.New("its hash does not match its files: it was changed after it was made")

// Parse decodes a bundle strictly and checks that its hash is that of its files. It
// does not check signatures: see [Bundle.Verify].
func Parse(data []byte) (*Bundle, error) {
	if len(data) > MaxBytes {
		return nil, fmt.Errorf("policy bundle: %d bytes, at most %d", len(data), MaxBytes)
	}
	var b Bundle
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&b); err != nil {
		return nil, fmt.Errorf("policy bundle: not a bundle: %w", err)
	}
	if dec.More() {
		return nil, errors.New("policy bundle: data after the JSON object")
	}
	if err := b.check(); err != nil {
		return nil, err
	}
	if got := policy.VersionOf(b.Sources()); got != b.Hash {
		return nil, fmt.Errorf("policy bundle %.80s: %w (the files hash to %s)", b.Hash, ErrTampered, got)
	}
	return &b, nil
}

// Marshal encodes the bundle as indented JSON.
func (b *Bundle) Marshal() ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(b); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Sign adds a signature by key, replacing an earlier one by the same key.
func (b *Bundle) Sign(key ed25519.PrivateKey, signer string) error {
	s, err := sign.Sign(key, sign.PolicyBundle, signer, []byte(b.Hash))
	if err != nil {
		return err
	}
	for i := range b.Signatures {
		if b.Signatures[i].KeyID == s.KeyID {
			b.Signatures[i] = s
			return nil
		}
	}
	if len(b.Signatures) >= sign.MaxSignatures {
		return fmt.Errorf("the bundle already has %d signatures, at most %d", len(b.Signatures), sign.MaxSignatures)
	}
	b.Signatures = append(b.Signatures, s)
	return nil
}

// Verify returns the trusted key that signed the bundle; errors wrap [sign.ErrUnsigned],
// [sign.ErrUntrusted] or [sign.ErrBadSignature].
func (b *Bundle) Verify(trusted *sign.Keyring) (sign.Key, error) {
	k, err := trusted.Verify(sign.PolicyBundle, []byte(b.Hash), b.Signatures)
	if err != nil {
		return sign.Key{}, fmt.Errorf("policy bundle %s: %w", b.Hash, err)
	}
	return k, nil
}
