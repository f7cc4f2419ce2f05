package cli

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/chaperone-dev/chaperone/internal/api"
	"github.com/chaperone-dev/chaperone/internal/boundedfile"
	"github.com/chaperone-dev/chaperone/internal/config"
	"github.com/chaperone-dev/chaperone/internal/daemon"
	"github.com/chaperone-dev/chaperone/internal/policy/bundle"
	"github.com/chaperone-dev/chaperone/internal/registry"
	"github.com/chaperone-dev/chaperone/internal/sign"
	"github.com/chaperone-dev/chaperone/internal/upstream"
)

// keysGenerate writes a new Ed25519 key pair for signing tool manifests and policy
// bundles: PREFIX.key (private, 0600) and PREFIX.pub. It never overwrites a file.
func keysGenerate(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("keys generate", stderr)
	out := fs.String("out", "", "file name prefix: writes PREFIX.key and PREFIX.pub (required)")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	if *out == "" {
		return usageError{"--out is required: chaperone keys generate --out release"}
	}
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	privPEM, err := sign.MarshalPrivateKey(key)
	if err != nil {
		return err
	}
	pubPEM, err := sign.MarshalPublicKey(pub)
	if err != nil {
		return err
	}
	for _, f := range []struct {
		path string
		data []byte
		mode os.FileMode
	}{{*out + ".key", privPEM, 0o600}, {*out + ".pub", pubPEM, 0o644}} {
		if err := writeNew(f.path, f.data, f.mode); err != nil {
			return err
		}
	}
	fmt.Fprintf(stdout, "key %s\n  private: %s.key (keep it secret; it signs)\n  public:  %s.pub (list it under trust in the configuration)\n",
		sign.KeyID(pub), *out, *out)
	return nil
}

// writeNew writes a file that must not exist yet.
func writeNew(path string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		if errors.Is(err, os.ErrExist) {
			return fmt.Errorf("%s exists: not replaced", path)
		}
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// signerFlags adds --key (the private key file, described by keyUsage) and --signer (the
// name recorded beside a signature), shared by the commands that sign.
func signerFlags(fs *flag.FlagSet, keyUsage string) (keyFile, signer *string) {
	return fs.String("key", "", keyUsage), fs.String("signer", "", "the name recorded beside the signature (informational)")
}

// readPrivateKey reads a PEM Ed25519 private key file.
func readPrivateKey(path string) (ed25519.PrivateKey, error) {
	b, err := readSmall(path)
	if err != nil {
		return nil, err
	}
	k, err := sign.ParsePrivateKey(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}

// readSmall reads a key, manifest or signature file: at most 4 MiB.
func readSmall(path string) ([]byte, error) {
	b, _, err := boundedfile.Read(path, registry.MaxManifestBytes)
	return b, err
}

// trustFlags adds --config and --trusted; the returned function builds the keyring they
// name: the configuration's list (which) or the public key files given.
func trustFlags(fs *flag.FlagSet, which string) func() (*sign.Keyring, error) {
	cfgPath := fs.String("config", "", "take the trusted keys from this configuration's trust."+which)
	var files listFlag
	fs.Var(&files, "trusted", "a trusted public key file (repeatable); its name is the file's base name")
	return func() (*sign.Keyring, error) {
		switch {
		case *cfgPath != "" && len(files) > 0:
			return nil, usageError{"give --config or --trusted, not both"}
		case *cfgPath != "":
			cfg, err := config.Load(*cfgPath)
			if err != nil {
				return nil, err
			}
			keys := cfg.Trust.ToolPublishers
			if which == "policy_signers" {
				keys = cfg.Trust.PolicySigners
			}
			if len(keys) == 0 {
				return nil, fmt.Errorf("%s lists no trust.%s", *cfgPath, which)
			}
			return config.Keyring(keys)
		case len(files) > 0:
			var keys []config.TrustedKey
			for _, f := range files {
				keys = append(keys, config.TrustedKey{Name: strings.TrimSuffix(filepath.Base(f), filepath.Ext(f)), KeyFile: f})
			}
			return config.Keyring(keys)
		}
		return nil, usageError{"give the trusted keys: --config chaperone.yaml or --trusted KEY.pub"}
	}
}

// listFlag is a repeatable string flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

// toolsSign signs a tool manifest: it checks the manifest, then writes (or adds to) its
// signature file.
func toolsSign(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("tools sign", stderr)
	keyFile, signer := signerFlags(fs, "the signer's private key file (required)")
	if err := parse(fs, reorder(fs, args), 1); err != nil {
		return err
	}
	if fs.NArg() != 1 || *keyFile == "" {
		return usageError{"usage: chaperone tools sign MANIFEST --key KEY"}
	}
	path := fs.Arg(0)
	data, err := readSmall(path)
	if err != nil {
		return err
	}
	m, err := registry.ParseManifest(data)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	key, err := readPrivateKey(*keyFile)
	if err != nil {
		return err
	}
	s, err := sign.Sign(key, sign.ToolManifest, *signer, data)
	if err != nil {
		return err
	}
	var sigs []sign.Signature
	if old, err := readSmall(registry.SignatureFile(path)); err == nil {
		if sigs, err = registry.ParseSignatures(old); err != nil {
			return fmt.Errorf("%s: %w", registry.SignatureFile(path), err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return err
	}
	sigs = replaceSignature(sigs, s)
	if len(sigs) > sign.MaxSignatures {
		return fmt.Errorf("%s already holds %d signatures, at most %d", registry.SignatureFile(path), len(sigs)-1, sign.MaxSignatures)
	}
	b, err := json.MarshalIndent(registry.Signatures{Signatures: sigs}, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(registry.SignatureFile(path), append(b, '\n'), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "signed %s (%d tools) with key %s: %s\n", path, len(m.Tools), s.KeyID, registry.SignatureFile(path))
	return nil
}

// replaceSignature puts s in place of an earlier signature by the same key, or adds it.
func replaceSignature(sigs []sign.Signature, s sign.Signature) []sign.Signature {
	for i := range sigs {
		if sigs[i].KeyID == s.KeyID {
			sigs[i] = s
			return sigs
		}
	}
	return append(sigs, s)
}

// toolsVerify checks a manifest's signature against trusted keys, as the gateway will.
func toolsVerify(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("tools verify", stderr)
	trusted := trustFlags(fs, "tool_publishers")
	if err := parse(fs, reorder(fs, args), 1); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usageError{"usage: chaperone tools verify MANIFEST (--config F | --trusted KEY.pub)"}
	}
	kr, err := trusted()
	if err != nil {
		return err
	}
	m, err := registry.ReadManifest(fs.Arg(0), kr)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: signed by %s (%s); %s\n", m.Path, m.Signer.Name, m.Signer.ID(), m.Digest)
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TOOL\tVERSION\tCLASS\tOWNER")
	for _, t := range m.Tools {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", t.Name, dash(t.Version), t.Class, dash(t.Owner))
	}
	return tw.Flush()
}

// toolsDiff shows what a tool's upstream offers now against what was approved.
func toolsDiff(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("tools diff", stderr)
	client := adminFlags(fs)
	asJSON := fs.Bool("json", false, "print the comparison as JSON")
	if err := parse(fs, reorder(fs, args), 1); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usageError{"usage: chaperone tools diff NAME"}
	}
	c, err := client()
	if err != nil {
		return err
	}
	var cmp registry.Comparison
	if err := c.do(ctx, http.MethodGet, "/v1/tools/"+url.PathEscape(fs.Arg(0))+"/diff", nil, &cmp); err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(cmp)
	}
	writeComparison(stdout, &cmp)
	return nil
}

func writeComparison(w io.Writer, c *registry.Comparison) {
	fmt.Fprintf(w, "tool %s: %s", c.Tool, c.Status)
	if c.Reason != "" {
		fmt.Fprintf(w, " (%s)", c.Reason)
	}
	fmt.Fprintln(w)
	switch c.Against {
	case "manifest":
		fmt.Fprintf(w, "compared with its manifest, signed by %s\n", c.Signer)
	case "pin":
		fmt.Fprintf(w, "compared with the approved definition %s\n", c.ApprovedHash)
	default:
		fmt.Fprintln(w, "nothing approved yet: the whole definition is new")
	}
	if c.LiveHash == "" {
		fmt.Fprintln(w, "its upstream has not offered a definition yet")
		return
	}
	fmt.Fprintf(w, "offered now: %s\n", c.LiveHash)
	if c.Finding != "" {
		fmt.Fprintf(w, "\nREVIEW: the offered definition %s\n", c.Finding)
	}
	if len(c.Changes) == 0 {
		fmt.Fprintln(w, "\nno changes")
		return
	}
	fmt.Fprintln(w)
	for _, ch := range c.Changes {
		fmt.Fprintf(w, "%s %s\n", ch.Kind, ch.Field)
		if ch.Old != "" {
			fmt.Fprintf(w, "  - %s\n", indentLines(ch.Old, "    "))
		}
		if ch.New != "" {
			fmt.Fprintf(w, "  + %s\n", indentLines(ch.New, "    "))
		}
	}
	if c.Against != "manifest" {
		accept := ""
		if c.Finding != "" {
			accept = " --accept-findings"
		}
		fmt.Fprintf(w, "\nto approve exactly this definition: chaperone tools approve %s --by YOU --hash %s%s\n", c.Tool, c.LiveHash, accept)
	} else {
		fmt.Fprintln(w, "\na definition that contradicts its signed manifest cannot be approved: publish a new signed manifest")
	}
}

func indentLines(s, indent string) string { return strings.ReplaceAll(s, "\n", "\n"+indent) }

func toolsApprove(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("tools approve", stderr)
	client := adminFlags(fs)
	by := fs.String("by", "", "who approves (recorded in the audit log); required")
	hash := fs.String("hash", "", "the offered hash you reviewed (`tools diff` shows it): refuse if the upstream now offers another")
	accept := fs.Bool("accept-findings", false, "approve although the review flagged the definition")
	if err := parse(fs, reorder(fs, args), 1); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usageError{"give the tool's name: chaperone tools approve NAME --by WHO"}
	}
	if *by == "" {
		return usageError{"--by is required: the audit log records who approved"}
	}
	c, err := client()
	if err != nil {
		return err
	}
	var t api.Tool
	body := api.ApproveRequest{By: *by, Hash: *hash, AcceptFindings: *accept}
	if err := c.do(ctx, http.MethodPost, "/v1/tools/"+url.PathEscape(fs.Arg(0))+"/approve", body, &t); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "approved %s: pinned %s, status %s\n", t.Name, t.Hash, t.Status)
	return nil
}

// toolsManifest writes a manifest of declared tools as their upstreams offer them now,
// for a publisher to review, complete and sign.
func toolsManifest(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("tools manifest", stderr)
	client := adminFlags(fs)
	publisher := fs.String("publisher", "", "who publishes the tools (written into the manifest)")
	up := fs.String("upstream", "", "describe every declared tool of this upstream")
	out := fs.String("out", "", "write the manifest here instead of standard output (never replaces a file)")
	if err := parse(fs, reorder(fs, args), 1000); err != nil {
		return err
	}
	if (*up == "") == (fs.NArg() == 0) {
		return usageError{"usage: chaperone tools manifest (--upstream NAME | TOOL...) [--publisher P] [--out FILE]"}
	}
	c, err := client()
	if err != nil {
		return err
	}
	var tools []api.Tool
	if err := c.do(ctx, http.MethodGet, "/v1/tools", nil, &tools); err != nil {
		return err
	}
	want := map[string]bool{}
	for _, n := range fs.Args() {
		want[n] = true
	}
	var picked []api.Tool
	for _, t := range tools {
		if want[t.Name] || (*up != "" && t.Upstream == *up) {
			picked = append(picked, t)
			delete(want, t.Name)
		}
	}
	for n := range want {
		return fmt.Errorf("no declared tool is named %q", n)
	}
	if len(picked) == 0 {
		return fmt.Errorf("upstream %q has no declared tools", *up)
	}
	m := &registry.Manifest{Format: registry.ManifestFormat, Publisher: *publisher, Upstream: picked[0].Upstream}
	for _, t := range picked {
		var cmp registry.Comparison
		if err := c.do(ctx, http.MethodGet, "/v1/tools/"+url.PathEscape(t.Name)+"/diff", nil, &cmp); err != nil {
			return err
		}
		if len(cmp.Live) == 0 {
			return fmt.Errorf("tool %q: its upstream has not offered a definition yet", t.Name)
		}
		def, err := registry.ParseDefinition(cmp.Live)
		if err != nil {
			return fmt.Errorf("tool %q: %w", t.Name, err)
		}
		one, err := registry.NewManifest("", "", []upstream.Tool{*def})
		if err != nil {
			return err
		}
		mt := one.Tools[0]
		mt.Class = t.Class
		if t.Upstream != m.Upstream {
			m.Upstream = "" // tools of several upstreams: the manifest names none
		}
		if cmp.Finding != "" {
			fmt.Fprintf(stderr, "warning: the definition of %s %s: review it before signing\n", t.Name, cmp.Finding)
		}
		m.Tools = append(m.Tools, mt)
	}
	b, err := registry.MarshalManifest(m)
	if err != nil {
		return err
	}
	if _, err := registry.ParseManifest(b); err != nil {
		return fmt.Errorf("the manifest does not check: %w", err)
	}
	if *out == "" {
		_, err = stdout.Write(b)
		return err
	}
	if err := writeNew(*out, b, 0o644); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s (%d tools): review it, then chaperone tools sign %s --key KEY\n", *out, len(m.Tools), *out)
	return nil
}

// policyBundle packages policy files or directories as a bundle, optionally signed.
func policyBundle(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("policy bundle", stderr)
	out := fs.String("out", "", "the bundle file to write (required; never replaces a file)")
	keyFile, signer := signerFlags(fs, "sign the bundle with this private key")
	if err := parse(fs, reorder(fs, args), 1000); err != nil {
		return err
	}
	if fs.NArg() == 0 || *out == "" {
		return usageError{"usage: chaperone policy bundle PATH... --out FILE [--key KEY]"}
	}
	srcs, err := daemon.ReadPolicySources(fs.Args())
	if err != nil {
		return err
	}
	// Policy directories are read one level deep, so a file's name in the bundle is its
	// base name; two files of one name are refused by bundle.New.
	for i := range srcs {
		srcs[i].Name = bundle.Name("", srcs[i].Name)
	}
	b, err := bundle.New(srcs)
	if err != nil {
		return err
	}
	if *keyFile != "" {
		key, err := readPrivateKey(*keyFile)
		if err != nil {
			return err
		}
		if err := b.Sign(key, *signer); err != nil {
			return err
		}
	}
	raw, err := b.Marshal()
	if err != nil {
		return err
	}
	if err := writeNew(*out, raw, 0o644); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s: %d policy files, hash %s, %d signatures\n", *out, len(b.Files), b.Hash, len(b.Signatures))
	return nil
}

// policySign adds a signature to a bundle, leaving its content and hash alone.
func policySign(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("policy sign", stderr)
	keyFile, signer := signerFlags(fs, "the signer's private key file (required)")
	if err := parse(fs, reorder(fs, args), 1); err != nil {
		return err
	}
	if fs.NArg() != 1 || *keyFile == "" {
		return usageError{"usage: chaperone policy sign BUNDLE --key KEY"}
	}
	path := fs.Arg(0)
	b, err := readBundleFile(path)
	if err != nil {
		return err
	}
	key, err := readPrivateKey(*keyFile)
	if err != nil {
		return err
	}
	if err := b.Sign(key, *signer); err != nil {
		return err
	}
	raw, err := b.Marshal()
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, raw, 0o644); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "signed %s (hash %s) with key %s; %d signatures\n", path, b.Hash, sign.KeyID(key.Public().(ed25519.PublicKey)), len(b.Signatures))
	return nil
}

func readBundleFile(path string) (*bundle.Bundle, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	raw, err := io.ReadAll(io.LimitReader(f, bundle.MaxBytes+1))
	if err != nil {
		return nil, err
	}
	b, err := bundle.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return b, nil
}

// policyVerify checks a bundle's content address and signature, as the gateway will.
func policyVerify(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("policy verify", stderr)
	trusted := trustFlags(fs, "policy_signers")
	if err := parse(fs, reorder(fs, args), 1); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usageError{"usage: chaperone policy verify BUNDLE (--config F | --trusted KEY.pub)"}
	}
	kr, err := trusted()
	if err != nil {
		return err
	}
	b, err := readBundleFile(fs.Arg(0))
	if err != nil {
		return err
	}
	k, err := b.Verify(kr)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: hash %s, %d policy files, signed by %s (%s)\n", fs.Arg(0), b.Hash, len(b.Files), k.Name, k.ID())
	return nil
}
