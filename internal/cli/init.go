package cli

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"text/template"

	"github.com/chaperone-dev/chaperone/internal/config"
	"github.com/chaperone-dev/chaperone/internal/identity"
)

// initData holds the files of each preset under initdata/<preset>/. chaperone.yaml is a
// text/template that gets the agent's token hash; the other files are written as they are.
//
//go:embed initdata
var initData embed.FS

// initPreset is a starter setup `chaperone init` writes.
type initPreset struct {
	name    string
	summary string
	// next are the steps to print after the files are written, beyond testing, checking
	// and serving; {dir} stands for the directory.
	next []string
}

// initPresets are the presets, in the order `chaperone init -h` lists them. Each has a
// directory under initdata.
var initPresets = []initPreset{
	{name: "minimal", summary: "the filesystem reference server over stdio: reads allowed, writes held for a person"},
	{name: "mail-and-payments", summary: "mail and a bank, like the demo: flow labels, internal mail only, payments approved by a person"},
	{name: "http-upstream", summary: "one streamable-HTTP server whose API key the gateway adds from its encrypted secret store",
		next: []string{
			"chaperone secrets keygen --id k1 > {dir}/secrets.keys && chmod 600 {dir}/secrets.keys",
			"chaperone secrets set tickets-api-key < api-key.txt    # once the gateway runs",
		}},
}

// The files init writes besides the preset's own.
const (
	initConfigFile = "chaperone.yaml"
	initSchemaFile = "chaperone.schema.json"
	initAgent      = "assistant"
)

// initCmd runs `chaperone init --preset NAME [--dir DIR] [--force]`: it writes a commented
// starter configuration, its JSON Schema, a policy and the policy's test suite into DIR,
// and prints the new agent's bearer token once. It refuses to replace an existing file
// unless --force is given, and then writes nothing.
func initCmd(args []string, stdout, stderr io.Writer) error {
	flags := newFlags("init", stderr)
	preset := flags.String("preset", "", "the starter setup: "+presetNames())
	dir := flags.String("dir", ".", "the directory to write into (created if missing)")
	force := flags.Bool("force", false, "replace files that exist")
	flags.Usage = func() {
		w := flags.Output()
		fmt.Fprintf(w, "Usage: chaperone init --preset NAME [--dir DIR] [--force]\n\n")
		fmt.Fprintf(w, "Writes a commented starter %s, whose first line points editors at the\n", initConfigFile)
		fmt.Fprintf(w, "%s written beside it, a policy (policies/policy.yaml) and its tests\n", initSchemaFile)
		fmt.Fprintf(w, "(policies/policy_test.yaml). Existing files are not replaced without --force.\n\nPresets:\n")
		for _, p := range initPresets {
			fmt.Fprintf(w, "  %-18s %s\n", p.name, p.summary)
		}
		fmt.Fprintln(w)
		flags.PrintDefaults()
	}
	if err := parse(flags, args, 0); err != nil {
		return err
	}
	if *preset == "" {
		return usageError{"--preset is required: one of " + presetNames()}
	}
	i := slices.IndexFunc(initPresets, func(p initPreset) bool { return p.name == *preset })
	if i < 0 {
		return usageError{fmt.Sprintf("unknown preset %q: want one of %s", *preset, presetNames())}
	}
	if *dir == "" {
		return usageError{"--dir needs a directory name"}
	}
	p := initPresets[i]

	token, sha := identity.NewToken()
	files, err := presetFiles(p.name, sha)
	if err != nil {
		return err
	}
	at := func(n string) string { return filepath.Join(*dir, filepath.FromSlash(n)) }
	// The configuration first, then in name order.
	names := slices.Sorted(maps.Keys(files))
	c := slices.Index(names, initConfigFile)
	names = slices.Insert(slices.Delete(names, c, c+1), 0, initConfigFile)
	if !*force {
		var exist []string
		for _, n := range names {
			if _, err := os.Lstat(at(n)); err == nil {
				exist = append(exist, at(n))
			} else if !errors.Is(err, fs.ErrNotExist) {
				return err
			}
		}
		switch len(exist) {
		case 0:
		case 1:
			return fmt.Errorf("%s exists: nothing written (--force replaces it)", exist[0])
		default:
			return fmt.Errorf("%s exist: nothing written (--force replaces them)", strings.Join(exist, ", "))
		}
	}
	for _, n := range names {
		if err := os.MkdirAll(filepath.Dir(at(n)), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(at(n), files[n], 0o644); err != nil {
			return err
		}
	}

	fmt.Fprintf(stdout, "Wrote the %q starter setup:\n", p.name)
	for _, n := range names {
		fmt.Fprintf(stdout, "  %s\n", at(n))
	}
	fmt.Fprintf(stdout, "\nThe agent %q authenticates with this bearer token, shown only now (%s holds its hash):\n  %s\n", initAgent, initConfigFile, token)
	fmt.Fprintf(stdout, "\nNext:\n")
	steps := []string{"chaperone policy test {policies} --tools {config}", "chaperone config check --config {config}"}
	steps = append(steps, p.next...)
	steps = append(steps, "chaperone serve --config {config}")
	r := strings.NewReplacer("{dir}", filepath.Clean(*dir), "{config}", at(initConfigFile), "{policies}", at("policies"))
	for _, s := range steps {
		fmt.Fprintf(stdout, "  %s\n", r.Replace(s))
	}
	return nil
}

// presetFiles returns the files of a preset by slash-separated path relative to the
// target directory: its own, with the configuration given the agent's token hash, and
// the configuration's JSON Schema.
func presetFiles(name, tokenSHA256 string) (map[string][]byte, error) {
	root := path.Join("initdata", name)
	files := map[string][]byte{}
	err := fs.WalkDir(initData, root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := initData.ReadFile(p)
		if err != nil {
			return err
		}
		files[strings.TrimPrefix(p, root+"/")] = data
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("preset %s: %w", name, err)
	}
	tmpl, ok := files[initConfigFile]
	if !ok {
		return nil, fmt.Errorf("preset %s has no %s", name, initConfigFile)
	}
	t, err := template.New(initConfigFile).Option("missingkey=error").Parse(string(tmpl))
	if err != nil {
		return nil, fmt.Errorf("preset %s: %w", name, err)
	}
	var b bytes.Buffer
	if err := t.Execute(&b, struct{ TokenSHA256 string }{tokenSHA256}); err != nil {
		return nil, fmt.Errorf("preset %s: %w", name, err)
	}
	files[initConfigFile] = b.Bytes()
	if files[initSchemaFile], err = config.Schema(); err != nil {
		return nil, err
	}
	return files, nil
}

// presetNames lists the presets for messages.
func presetNames() string {
	names := make([]string, len(initPresets))
	for i, p := range initPresets {
		names[i] = p.name
	}
	return strings.Join(names, ", ")
}
