package daemon

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"

	"github.com/chaperone-dev/chaperone/internal/audit"
	"github.com/chaperone-dev/chaperone/internal/boundedfile"
	"github.com/chaperone-dev/chaperone/internal/config"
	"github.com/chaperone-dev/chaperone/internal/flow"
	"github.com/chaperone-dev/chaperone/internal/policy"
	"github.com/chaperone-dev/chaperone/internal/policy/bundle"
	"github.com/chaperone-dev/chaperone/internal/registry"
	"github.com/chaperone-dev/chaperone/internal/sign"
)

// applyManifests reads the configuration's signed tool manifests and attaches what they
// say to the declarations (decls[i] is cfg.Tools[i]): the definition the upstream must
// offer, and the fields the tool's entry leaves out. A manifest that is unsigned,
// signed by a key trust.tool_publishers does not list, or changed after signing is an
// error: the configuration does not load.
func applyManifests(cfg *config.Config, decls []registry.Declaration) error {
	if len(cfg.Registry.Manifests) == 0 {
		return nil
	}
	publishers, err := config.Keyring(cfg.Trust.ToolPublishers)
	if err != nil {
		return fmt.Errorf("trust.tool_publishers: %w", err)
	}
	var manifests []*registry.SignedManifest
	for i, path := range cfg.Registry.Manifests {
		m, err := registry.ReadManifest(path, publishers)
		if err != nil {
			return fmt.Errorf("registry.manifests[%d]: %w", i, err)
		}
		manifests = append(manifests, m)
	}
	var errs []error
	for i := range decls {
		d, t := &decls[i], &cfg.Tools[i]
		for _, m := range manifests {
			e, ok := m.Entry(d.Upstream, d.UpstreamName)
			if !ok {
				continue
			}
			if d.Manifest != nil {
				errs = append(errs, fmt.Errorf("tools[%d]: described by two manifests, %s and %s", i, d.Manifest.Path, e.Path))
				continue
			}
			d.Manifest = e
		}
		e := d.Manifest
		if e == nil {
			continue
		}
		if !registry.ClassAtLeast(d.Class, e.Class) {
			errs = append(errs, fmt.Errorf("tools[%d].class: %s is lower than %s, the class its manifest (signed by %s) gives; an operator may raise a class, never lower it",
				i, d.Class, e.Class, e.Signer))
		}
		if t.Cost == 0 {
			d.Cost = e.Cost
		}
		if t.Undo == "" {
			d.Undo = e.Undo
		}
		if !t.Idempotent && e.Idempotent {
			// The publisher says a second call does no more: retried as the entry's own
			// idempotent flag would be, unless the entry set its retries.
			d.Idempotent = true
			if t.Retries == nil {
				d.Retries = config.DefaultRetries
			}
		}
		if t.Flow.Trust == "" && t.Flow.Data == "" && t.Flow.Sinks == nil && e.Labels != nil {
			l, err := flow.ParseLabels(d.Class, e.Labels.Trust, e.Labels.Data, e.Labels.Sinks)
			if err != nil {
				errs = append(errs, fmt.Errorf("tools[%d]: the labels of its manifest: %w", i, err))
				continue
			}
			d.Flow = l
		}
	}
	return errors.Join(errs...)
}

// lastGoodBundle is where the gateway keeps the last policy bundle it loaded, in its data
// directory, so that a bad bundle at start does not leave it without a policy.
func lastGoodBundle(dataDir string) string { return filepath.Join(dataDir, "policy-last-good.bundle") }

// readBundle reads and checks the policy bundle at path: it must parse (its hash must be
// its files'), and it must verify against signers — with a trusted signature when
// required, and never with a bad one. It returns the bundle, its signer's name ("" when
// unsigned and not required) and the file's bytes.
func readBundle(path string, signers *sign.Keyring, required bool) (*bundle.Bundle, string, []byte, error) {
	data, _, err := boundedfile.Read(path, bundle.MaxBytes)
	if err != nil {
		return nil, "", nil, err
	}
	b, err := bundle.Parse(data)
	if err != nil {
		return nil, "", nil, fmt.Errorf("%s: %w", path, err)
	}
	if signers.Len() == 0 && !required {
		return b, "", data, nil
	}
	k, err := b.Verify(signers)
	switch {
	case err == nil:
		return b, k.Name, data, nil
	case !required && (errors.Is(err, sign.ErrUnsigned) || errors.Is(err, sign.ErrUntrusted)):
		return b, "", data, nil
	case errors.Is(err, sign.ErrUnsigned), errors.Is(err, sign.ErrUntrusted):
		return nil, "", nil, fmt.Errorf("%s: %w; policy.require_signed accepts only bundles signed by trust.policy_signers", path, err)
	default:
		return nil, "", nil, fmt.Errorf("%s: %w", path, err)
	}
}

// loadedPolicy is a policy as read, before it is compiled.
type loadedPolicy struct {
	srcs   []policy.Source
	signer string // the signer of its bundle; "" if none
	// keep is the bundle file's content, to keep as the last good bundle once the policy
	// is in force; nil for policy files, and for the last good bundle itself.
	keep []byte
}

// loadBundle reads the configured bundle; at start (first), if it cannot be loaded, it
// falls back to the last good bundle kept in the data directory, if that one still
// verifies, and records why.
func (d *Daemon) loadBundle(ctx context.Context, decl *declared, first bool) (loadedPolicy, error) {
	b, signer, data, err := readBundle(decl.bundle, decl.policySigners, decl.requireSigned)
	if err == nil {
		return loadedPolicy{srcs: b.Sources(), signer: signer, keep: data}, nil
	}
	if !first {
		return loadedPolicy{}, err
	}
	kept, keptSigner, _, kerr := readBundle(lastGoodBundle(d.cfg.DataDir), decl.policySigners, decl.requireSigned)
	if kerr != nil {
		return loadedPolicy{}, err
	}
	d.auditPolicy(ctx, audit.KindPolicyRejected, "", fmt.Errorf("%w; the last good bundle %s stays in force", err, kept.Hash))
	d.log.ErrorContext(ctx, "policy bundle refused; starting with the last good one", "err", err, "bundle", kept.Hash)
	return loadedPolicy{srcs: kept.Sources(), signer: keptSigner}, nil
}

// keepBundle writes data, the bundle just put in force, to the data directory, atomically,
// as the last good one.
func (d *Daemon) keepBundle(ctx context.Context, data []byte) {
	if err := writeFileAtomic(lastGoodBundle(d.cfg.DataDir), data); err != nil {
		d.log.WarnContext(ctx, "could not keep the policy bundle as the last good one", "err", err)
	}
}

func writeFileAtomic(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path)+"-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// signers remembers who signed each recent policy version, so every audit event can name
// the signer of the policy that decided it — also an event of a call decided just before
// a reload. Readers never lock: the state is an immutable snapshot swapped atomically.
type signers struct {
	mu   sync.Mutex // serialises set
	snap atomic.Pointer[signerSnap]
}

type signerSnap struct {
	current string
	by      map[string]string // version → signer
}

const maxRememberedVersions = 64

func (s *signers) set(version, signer string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	next := &signerSnap{current: version, by: map[string]string{}}
	if old := s.snap.Load(); old != nil && len(old.by) < maxRememberedVersions {
		for v, n := range old.by {
			next.by[v] = n
		}
	}
	next.by[version] = signer
	s.snap.Store(next)
}

// stamp fills in an event's policy: the version in force if the event names none, and the
// signer of its version.
func (s *signers) stamp(e *audit.Event) {
	snap := s.snap.Load()
	if snap == nil {
		return
	}
	if e.PolicyVersion == "" {
		e.PolicyVersion = snap.current
	}
	if e.PolicySigner == "" {
		e.PolicySigner = snap.by[e.PolicyVersion]
	}
}

// ConfigPolicySources reads a configuration's policy as the gateway would load it at
// start, without falling back on a last good bundle: the bundle (checked against
// trust.policy_signers, and refused unsigned when policy.require_signed) or the policy
// files. It returns the sources and the bundle's signer ("" if none).
func ConfigPolicySources(cfg *config.Config) ([]policy.Source, string, error) {
	if cfg.Policy.Bundle == "" {
		srcs, err := ReadPolicySources(cfg.Policy.Paths)
		return srcs, "", err
	}
	signers, err := config.Keyring(cfg.Trust.PolicySigners)
	if err != nil {
		return nil, "", fmt.Errorf("trust.policy_signers: %w", err)
	}
	b, signer, _, err := readBundle(cfg.Policy.Bundle, signers, cfg.Policy.RequireSigned)
	if err != nil {
		return nil, "", err
	}
	return b.Sources(), signer, nil
}

// CheckConfig checks what a configuration loads besides itself, as the gateway would at
// start: the trusted keys, the signed tool manifests (and the tools' classes against
// them), and the policy, compiled against the declared tools. It returns the policy's
// version and its bundle's signer.
func CheckConfig(cfg *config.Config) (version, signer string, err error) {
	decl, err := declare(cfg)
	if err != nil {
		return "", "", err
	}
	srcs, signer, err := ConfigPolicySources(cfg)
	if err != nil {
		return "", "", fmt.Errorf("policy: %w", err)
	}
	p, err := policy.Compile(srcs, decl.tools)
	if err != nil {
		return "", "", fmt.Errorf("policy: %w", err)
	}
	return p.Version(), signer, nil
}
