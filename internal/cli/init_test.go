package cli

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/chaperone-dev/chaperone/internal/config"
	"github.com/chaperone-dev/chaperone/internal/identity"
)

// runInit runs initCmd and returns its output.
func runInit(t *testing.T, args ...string) (stdout string, err error) {
	t.Helper()
	var out, stderr bytes.Buffer
	err = initCmd(args, &out, &stderr)
	return out.String(), err
}

// initFiles are the files every preset writes.
var initFiles = []string{"chaperone.yaml", "chaperone.schema.json", "policies/policy.yaml", "policies/policy_test.yaml"}

var tokenLine = regexp.MustCompile(`(?m)^  (chp_[A-Za-z0-9_-]+)$`)

func TestInitPresets(t *testing.T) {
	for _, p := range initPresets {
		t.Run(p.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "gw") // init creates it
			out, err := runInit(t, "--preset", p.name, "--dir", dir)
			if err != nil {
				t.Fatalf("init --preset %s = %v", p.name, err)
			}
			for _, f := range initFiles {
				if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
					t.Errorf("init did not write %s: %v", f, err)
				}
				if !strings.Contains(out, filepath.Join(dir, filepath.FromSlash(f))) {
					t.Errorf("init output does not name %s:\n%s", f, out)
				}
			}
			cfgPath := filepath.Join(dir, "chaperone.yaml")

			// The editor comment comes first, and the schema it names is beside it.
			data, err := os.ReadFile(cfgPath)
			if err != nil {
				t.Fatal(err)
			}
			if first, _, _ := strings.Cut(string(data), "\n"); first != schemaComment {
				t.Errorf("first line of chaperone.yaml = %q, want %q", first, schemaComment)
			}

			// The configuration loads, with the hash of the token printed once.
			cfg, err := config.Load(cfgPath)
			if err != nil {
				t.Fatalf("config.Load(written config) = %v", err)
			}
			m := tokenLine.FindStringSubmatch(out)
			if m == nil {
				t.Fatalf("init output has no token:\n%s", out)
			}
			if len(cfg.Agents) != 1 || cfg.Agents[0].TokenSHA256 != identity.HashToken(m[1]) {
				t.Errorf("the configuration's agent does not hold the hash of the printed token")
			}
			if strings.Contains(string(data), m[1]) {
				t.Errorf("chaperone.yaml holds the token itself")
			}

			// It validates against the schema written beside it, which is config.Schema().
			raw, err := os.ReadFile(filepath.Join(dir, "chaperone.schema.json"))
			if err != nil {
				t.Fatal(err)
			}
			if want, _ := config.Schema(); !bytes.Equal(raw, want) {
				t.Errorf("chaperone.schema.json is not config.Schema()")
			}
			if err := validateYAML(t, compileSchema(t, raw), data); err != nil {
				t.Errorf("the schema refuses the written configuration: %v", err)
			}

			// The policy compiles and its suite passes, with the suite's tools and with the
			// configuration's.
			cases := countCases(t, filepath.Join(dir, "policies", "policy_test.yaml"))
			for _, args := range [][]string{
				{filepath.Join(dir, "policies")},
				{filepath.Join(dir, "policies"), "--tools", cfgPath},
			} {
				stdout, stderr, code := runPolicyTest(t, args...)
				if code != exitOK || !strings.Contains(stdout, "\n"+strconv.Itoa(cases)+" passed, 0 failed\n") {
					t.Errorf("policy test %q: status %d, want %d passed:\n%s%s", args, code, cases, stdout, stderr)
				}
			}

			// config check reads the policy files the configuration names (not the suite),
			// and lint finds nothing: every rule names declared tools and can match.
			var stdout, stderr bytes.Buffer
			if err := configCheck([]string{"--config", cfgPath}, &stdout, &stderr); err != nil {
				t.Errorf("config check = %v", err)
			}
			stdout.Reset()
			if err := policyLint(t.Context(), []string{"--config", cfgPath}, &stdout, &stderr); err != nil {
				t.Errorf("policy lint = %v:\n%s", err, stdout.String())
			}

			// The next steps name the files written.
			if !strings.Contains(out, "chaperone serve --config "+cfgPath) {
				t.Errorf("init output does not say how to serve:\n%s", out)
			}
		})
	}
}

// countCases counts the cases of a policy test suite.
func countCases(tb testing.TB, path string) int {
	tb.Helper()
	f, err := os.Open(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	n := 0
	for s := bufio.NewScanner(f); s.Scan(); {
		if strings.HasPrefix(strings.TrimSpace(s.Text()), "- name:") {
			n++
		}
	}
	if n == 0 {
		tb.Fatalf("%s has no cases", path)
	}
	return n
}

func TestInitRefusesToOverwrite(t *testing.T) {
	dir := t.TempDir()
	if _, err := runInit(t, "--preset", "minimal", "--dir", dir); err != nil {
		t.Fatal(err)
	}
	before := readTree(t, dir)

	_, err := runInit(t, "--preset", "http-upstream", "--dir", dir)
	if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, "chaperone.yaml")) || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("init over existing files = %v, want an error naming chaperone.yaml and --force", err)
	}
	if after := readTree(t, dir); !maps.EqualFunc(before, after, bytes.Equal) {
		t.Errorf("a refused init changed files")
	}

	out, err := runInit(t, "--preset", "http-upstream", "--dir", dir, "--force")
	if err != nil {
		t.Fatalf("init --force = %v", err)
	}
	after := readTree(t, dir)
	if bytes.Equal(before["chaperone.yaml"], after["chaperone.yaml"]) {
		t.Errorf("init --force did not replace chaperone.yaml")
	}
	if !strings.Contains(string(after["chaperone.yaml"]), "secret:tickets-api-key") {
		t.Errorf("init --force did not write the new preset")
	}
	if !strings.Contains(out, "chaperone secrets keygen") {
		t.Errorf("http-upstream's next steps do not make the secret store's key:\n%s", out)
	}
}

func TestInitRefusesBeforeWritingAnything(t *testing.T) {
	dir := t.TempDir()
	existing := filepath.Join(dir, "policies", "policy_test.yaml")
	if err := os.MkdirAll(filepath.Dir(existing), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(existing, []byte("mine\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := runInit(t, "--preset", "minimal", "--dir", dir)
	if err == nil || !strings.Contains(err.Error(), existing) {
		t.Fatalf("init with policies/policy_test.yaml present = %v, want an error naming it", err)
	}
	if got := readTree(t, dir); len(got) != 1 || string(got["policies/policy_test.yaml"]) != "mine\n" {
		t.Errorf("a refused init wrote files: %v", slices.Sorted(maps.Keys(got)))
	}
}

func TestInitCommandLine(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{"no preset", nil, []string{"--preset is required", "minimal", "mail-and-payments", "http-upstream"}},
		{"unknown preset", []string{"--preset", "maximal"}, []string{`unknown preset "maximal"`, "minimal", "mail-and-payments", "http-upstream"}},
		{"an argument", []string{"--preset", "minimal", "extra"}, []string{`unexpected argument "extra"`}},
		{"empty directory", []string{"--preset", "minimal", "--dir", ""}, []string{"--dir"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			t.Chdir(dir)
			_, err := runInit(t, tc.args...)
			var ue usageError
			if !errors.As(err, &ue) {
				t.Fatalf("init %q = %v, want a usage error", tc.args, err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("init %q = %v, want it to contain %q", tc.args, err, w)
				}
			}
			if got := readTree(t, dir); len(got) != 0 {
				t.Errorf("init %q wrote files after a usage error", tc.args)
			}
		})
	}
}

func TestInitHelpListsPresets(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if err := initCmd([]string{"-h"}, &stdout, &stderr); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("init -h = %v, want flag.ErrHelp", err)
	}
	for _, p := range initPresets {
		if !strings.Contains(stderr.String(), p.name+" ") || !strings.Contains(stderr.String(), p.summary) {
			t.Errorf("init -h does not describe preset %s:\n%s", p.name, stderr.String())
		}
	}
}

// TestInitDataMatchesPresets keeps the preset table and the embedded directories in step:
// every preset has its files, every directory is a preset.
func TestInitDataMatchesPresets(t *testing.T) {
	entries, err := fs.ReadDir(initData, "initdata")
	if err != nil {
		t.Fatal(err)
	}
	var dirs, names []string
	for _, e := range entries {
		dirs = append(dirs, e.Name())
	}
	for _, p := range initPresets {
		names = append(names, p.name)
		files, err := presetFiles(p.name, strings.Repeat("0", 64))
		if err != nil {
			t.Errorf("presetFiles(%s) = %v", p.name, err)
			continue
		}
		got := slices.Sorted(maps.Keys(files))
		want := slices.Sorted(slices.Values(initFiles))
		if !slices.Equal(got, want) {
			t.Errorf("preset %s writes %v, want %v", p.name, got, want)
		}
	}
	slices.Sort(names)
	if !slices.Equal(dirs, names) {
		t.Errorf("initdata holds %v, the preset table %v", dirs, names)
	}
}

// readTree returns the files under dir by slash-separated relative path.
func readTree(tb testing.TB, dir string) map[string][]byte {
	tb.Helper()
	out := map[string][]byte{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		b, err := os.ReadFile(p)
		out[filepath.ToSlash(rel)] = b
		return err
	})
	if err != nil {
		tb.Fatal(err)
	}
	return out
}
