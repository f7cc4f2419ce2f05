package buildinfo

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	gobuildinfo "debug/buildinfo"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

const pkgPath = "github.com/chaperone-dev/chaperone/internal/buildinfo"

// repoRoot is the module root, absolute: tests run in their package's directory, two
// levels below it.
func repoRoot(t testing.TB) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	return root
}

func lookPath(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("%s not found: %v", name, err)
	}
	return p
}

// releaseEnv is the environment the release script runs with in these tests: the caller's,
// minus any release settings it may carry, plus env.
func releaseEnv(env ...string) []string {
	var out []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "VERSION", "COMMIT", "SOURCE_DATE_EPOCH", "TARGETS", "DIST", "GO":
			continue
		}
		out = append(out, kv)
	}
	return append(out, env...)
}

// TestReleaseScriptSyntax checks what can be checked without building: the script exists,
// is executable, is strict and parses.
func TestReleaseScriptSyntax(t *testing.T) {
	t.Parallel()
	bash := lookPath(t, "bash")
	script := filepath.Join(repoRoot(t), "scripts", "release.sh")
	st, err := os.Stat(script)
	if err != nil {
		t.Fatalf("release script: %v", err)
	}
	if st.Mode()&0o111 == 0 {
		t.Errorf("%s mode %v is not executable", script, st.Mode())
	}
	b, err := os.ReadFile(script)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(b, []byte("#!/usr/bin/env bash\n")) {
		t.Errorf("%s does not start with #!/usr/bin/env bash", script)
	}
	if !bytes.Contains(b, []byte("\nset -euo pipefail\n")) {
		t.Errorf("%s does not set -euo pipefail", script)
	}
	if out, err := exec.Command(bash, "-n", script).CombinedOutput(); err != nil {
		t.Errorf("bash -n %s: %v\n%s", script, err, out)
	}
}

// TestReleaseScriptRejects runs the script with bad settings: each is refused, with a
// message naming it, before anything is built or written.
func TestReleaseScriptRejects(t *testing.T) {
	t.Parallel()
	bash := lookPath(t, "bash")
	script := filepath.Join(repoRoot(t), "scripts", "release.sh")
	tests := []struct {
		name string
		env  []string
		want string
	}{
		{"space in version", []string{"VERSION=1.0 beta"}, `VERSION "1.0 beta" must be`},
		{"path in version", []string{"VERSION=../../etc"}, `VERSION "../../etc" must be`},
		{"ldflags in version", []string{"VERSION=1.0 -X main.x=y"}, "VERSION"},
		{"overlong version", []string{"VERSION=" + strings.Repeat("1", 65)}, "VERSION"},
		{"unknown os", []string{"VERSION=1.0.0", "TARGETS=windows/amd64"}, `target "windows/amd64" is not one of`},
		{"unknown arch", []string{"VERSION=1.0.0", "TARGETS=linux/amd64 linux/386"}, `target "linux/386"`},
		{"shell in target", []string{"VERSION=1.0.0", "TARGETS=linux/amd64;true"}, "target"},
		{"blank targets", []string{"VERSION=1.0.0", "TARGETS=   "}, "TARGETS is empty"},
		{"odd commit", []string{"VERSION=1.0.0", "COMMIT=abc def"}, `COMMIT "abc def"`},
		{"date not a number", []string{"VERSION=1.0.0", "COMMIT=abc", "SOURCE_DATE_EPOCH=yesterday"}, "SOURCE_DATE_EPOCH"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dist := filepath.Join(t.TempDir(), "dist")
			// GO is a command that cannot run: a setting that slipped through would fail
			// differently, and the message check below would catch it.
			cmd := exec.Command(bash, script)
			cmd.Env = releaseEnv(append(tt.env, "DIST="+dist, "GO=/nonexistent/go")...)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			err := cmd.Run()
			var ee *exec.ExitError
			if !errors.As(err, &ee) {
				t.Fatalf("release.sh with %q = %v, want a non-zero exit", tt.env, err)
			}
			if !strings.Contains(stderr.String(), tt.want) {
				t.Errorf("release.sh with %q: stderr %q, want it to contain %q", tt.env, stderr.String(), tt.want)
			}
			if _, err := os.Stat(dist); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("release.sh with %q created %s (stat: %v)", tt.env, dist, err)
			}
		})
	}
}

// TestReleaseScript runs the whole release for this machine's platform, twice, and checks
// the archive, its checksum, the stamps in the binary, and that the two runs give the same
// bytes. It builds the gateway with fresh flags, so it runs only with CHAPERONE_TEST_RELEASE=1.
func TestReleaseScript(t *testing.T) {
	if os.Getenv("CHAPERONE_TEST_RELEASE") != "1" {
		t.Skip("set CHAPERONE_TEST_RELEASE=1 to build a release archive")
	}
	bash := lookPath(t, "bash")
	goCmd := lookPath(t, "go")
	script := filepath.Join(repoRoot(t), "scripts", "release.sh")
	target := runtime.GOOS + "/" + runtime.GOARCH
	if target != "linux/amd64" && target != "linux/arm64" && target != "darwin/amd64" && target != "darwin/arm64" {
		t.Skipf("no release target for %s", target)
	}
	const (
		commit = "0123456789abcdef0123456789abcdef01234567"
		epoch  = "1795860000" // 2026-11-28T10:00:00Z
		date   = "2026-11-28T10:00:00Z"
	)
	name := "chaperone_9.8.7-rc.1_" + runtime.GOOS + "_" + runtime.GOARCH
	run := func(dist string) {
		t.Helper()
		cmd := exec.Command(bash, script)
		cmd.Env = releaseEnv("VERSION=v9.8.7-rc.1", "COMMIT="+commit, "SOURCE_DATE_EPOCH="+epoch,
			"TARGETS="+target, "DIST="+dist, "GO="+goCmd)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("release.sh: %v\n%s", err, out)
		}
	}
	dist := t.TempDir()
	// A leftover of an earlier release is removed; an unrelated file is left alone.
	if err := os.WriteFile(filepath.Join(dist, "chaperone_0.0.1_linux_amd64.tar.gz"), []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dist, "notes.txt"), []byte("keep"), 0o644); err != nil {
		t.Fatal(err)
	}
	run(dist)

	entries, err := os.ReadDir(dist)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if diff := cmp.Diff([]string{"SHA256SUMS", name, name + ".tar.gz", "notes.txt"}, names); diff != "" {
		t.Errorf("dist contents mismatch (-want +got):\n%s", diff)
	}

	archive := filepath.Join(dist, name+".tar.gz")
	sums := readSums(t, filepath.Join(dist, "SHA256SUMS"))
	if diff := cmp.Diff(map[string]string{name + ".tar.gz": fileSHA256(t, archive)}, sums); diff != "" {
		t.Errorf("SHA256SUMS mismatch (-want +got):\n%s", diff)
	}

	files := readTarGz(t, archive)
	bin, ok := files[name+"/chaperone"]
	if !ok {
		t.Fatalf("%s has no %s/chaperone; it has %v", archive, name, slices.Sorted(maps.Keys(files)))
	}
	if bin.mode&0o111 == 0 {
		t.Errorf("%s/chaperone mode %v is not executable", name, bin.mode)
	}
	if !bin.modTime.Equal(time.Unix(1795860000, 0)) {
		t.Errorf("%s/chaperone modification time %v, want SOURCE_DATE_EPOCH", name, bin.modTime)
	}
	extracted := filepath.Join(t.TempDir(), "chaperone")
	if err := os.WriteFile(extracted, bin.data, 0o755); err != nil {
		t.Fatal(err)
	}
	if cliUsesBuildinfo(t) {
		checkStamps(t, extracted, "9.8.7-rc.1", commit, date, true)
		out, err := exec.Command(extracted, "version").Output()
		if want := "chaperone 9.8.7-rc.1 (commit 0123456789ab, built " + date + ", "; err != nil || !strings.HasPrefix(string(out), want) {
			t.Errorf("released chaperone version = %q, %v; want %q...", out, err, want)
		}
	} else {
		// Nothing links the package yet, so the linker has nothing to stamp.
		t.Log("internal/cli does not use buildinfo.Get yet: stamps not checked")
	}

	// The same commit and settings give the same archive.
	again := t.TempDir()
	run(again)
	if a, b := fileSHA256(t, archive), fileSHA256(t, filepath.Join(again, name+".tar.gz")); a != b {
		t.Errorf("two release runs gave different archives: %s, %s", a, b)
	}
}

// TestVersionStamped builds the gateway with the version stamped by -ldflags -X, as a
// release does, and checks what the binary records and what `chaperone version` prints.
func TestVersionStamped(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the gateway")
	}
	t.Parallel()
	goCmd := lookPath(t, "go")
	root := repoRoot(t)
	const (
		version = "7.6.5-test"
		commit  = "fedcba9876543210fedcba9876543210fedcba98"
		date    = "2026-11-22T10:00:00Z"
	)
	bin := filepath.Join(t.TempDir(), "chaperone")
	ldflags := "-X " + pkgPath + ".Version=v" + version + " -X " + pkgPath + ".Commit=" + commit + " -X " + pkgPath + ".Date=" + date
	build := exec.Command(goCmd, "build", "-ldflags", ldflags, "-o", bin, "./cmd/chaperone")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build -ldflags %q: %v\n%s", ldflags, err, out)
	}
	checkStamps(t, bin, "v"+version, commit, date, false)

	if !cliUsesBuildinfo(t) {
		// Until `chaperone version` prints [Info.String], only the build flags are checked.
		t.Skip("internal/cli does not use buildinfo.Get yet")
	}
	out, err := exec.Command(bin, "version").Output()
	if err != nil {
		t.Fatalf("chaperone version: %v", err)
	}
	want := "chaperone " + version + " (commit fedcba987654, built " + date + ", "
	if !strings.HasPrefix(string(out), want) || !strings.HasSuffix(string(out), runtime.GOOS+"/"+runtime.GOARCH+")\n") {
		t.Errorf("chaperone version = %q, want %q...%s/%s)", out, want, runtime.GOOS, runtime.GOARCH)
	}
	out, err = exec.Command(bin, "version", "--json").Output()
	if err != nil {
		t.Fatalf("chaperone version --json: %v", err)
	}
	var got Info
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("chaperone version --json = %q: %v", out, err)
	}
	if got.Version != version || got.Commit != commit || got.Date != date || got.Platform != runtime.GOOS+"/"+runtime.GOARCH {
		t.Errorf("chaperone version --json = %+v, want version %s, commit %s, date %s", got, version, commit, date)
	}
}

// cliUsesBuildinfo reports whether `chaperone version` is wired to [Get]. Until it is, the
// package is not linked into the binary and -X has nothing to set.
func cliUsesBuildinfo(t testing.TB) bool {
	t.Helper()
	cli, err := os.ReadFile(filepath.Join(repoRoot(t), "internal", "cli", "cli.go"))
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Contains(cli, []byte("buildinfo.Get()"))
}

// checkStamps checks the -X stamps of the binary at path, and for a release build,
// CGO_ENABLED=0 and -trimpath. Go records -ldflags in the binary's build information only
// without -trimpath (go.dev/issue/52372), so a release binary is searched for the stamped
// values themselves.
func checkStamps(t testing.TB, path, version, commit, date string, release bool) {
	t.Helper()
	bi, err := gobuildinfo.ReadFile(path)
	if err != nil {
		t.Fatalf("read build info of %s: %v", path, err)
	}
	settings := map[string]string{}
	for _, s := range bi.Settings {
		settings[s.Key] = s.Value
	}
	if bi.Path != "github.com/chaperone-dev/chaperone/cmd/chaperone" {
		t.Errorf("%s is package %q, want cmd/chaperone", path, bi.Path)
	}
	if !release {
		ld := settings["-ldflags"]
		for _, want := range []string{
			"-X " + pkgPath + ".Version=" + version,
			"-X " + pkgPath + ".Commit=" + commit,
			"-X " + pkgPath + ".Date=" + date,
		} {
			if !strings.Contains(ld, want) {
				t.Errorf("%s was built with -ldflags %q, want it to contain %q", path, ld, want)
			}
		}
		return
	}
	if settings["CGO_ENABLED"] != "0" {
		t.Errorf("%s was built with CGO_ENABLED=%q, want 0", path, settings["CGO_ENABLED"])
	}
	if settings["-trimpath"] != "true" {
		t.Errorf("%s was built with -trimpath=%q, want true", path, settings["-trimpath"])
	}
	if got, want := settings["GOOS"]+"/"+settings["GOARCH"], runtime.GOOS+"/"+runtime.GOARCH; got != want {
		t.Errorf("%s was built for %s, want %s", path, got, want)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{version, commit, date} {
		if !bytes.Contains(b, []byte(v)) {
			t.Errorf("%s does not contain the stamped %q", path, v)
		}
	}
}

// readSums parses a sha256sum file: "<64 hex>  <name>" per line.
func readSums(t testing.TB, path string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sums := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		sum, name, ok := strings.Cut(sc.Text(), "  ")
		if _, err := hex.DecodeString(sum); !ok || err != nil || len(sum) != 64 || name == "" {
			t.Fatalf("%s: malformed line %q", path, sc.Text())
		}
		sums[name] = sum
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return sums
}

func fileSHA256(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

type tarFile struct {
	mode    os.FileMode
	modTime time.Time
	data    []byte
}

// readTarGz reads the regular files of a .tar.gz, at most 512 MiB in all.
func readTarGz(t testing.TB, path string) map[string]tarFile {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	tr := tar.NewReader(io.LimitReader(zr, 512<<20))
	files := map[string]tarFile{}
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return files
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatalf("%s: %s: %v", path, h.Name, err)
		}
		files[h.Name] = tarFile{mode: h.FileInfo().Mode(), modTime: h.ModTime, data: data}
	}
}
