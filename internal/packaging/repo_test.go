package packaging

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/chaperone-dev/chaperone/internal/config"
)

// The files under test and what they promise.
const (
	module      = "github.com/chaperone-dev/chaperone"
	binaryPath  = "/usr/local/bin/chaperone"
	configPath  = "/etc/chaperone/chaperone.yaml"
	imageData   = "/var/lib/chaperone"
	nonrootUser = "65532"
)

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

func readRepoFile(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot(t), filepath.FromSlash(name)))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// cliFlag is one flag `chaperone serve` defines.
type cliFlag struct {
	usage  string
	isBool bool
}

// serveFlags reads the flags `chaperone serve` defines from internal/cli/cli.go: the
// fs.String, fs.Bool, ... calls in func serve.
func serveFlags(t testing.TB) map[string]cliFlag {
	t.Helper()
	fset := token.NewFileSet()
	file, err := parser.ParseFile(fset, filepath.Join(repoRoot(t), "internal", "cli", "cli.go"), nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	flags := map[string]cliFlag{}
	for _, decl := range file.Decls {
		fn, ok := decl.(*ast.FuncDecl)
		if !ok || fn.Name.Name != "serve" || fn.Recv != nil {
			continue
		}
		ast.Inspect(fn.Body, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok || len(call.Args) != 3 {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			if x, ok := sel.X.(*ast.Ident); !ok || x.Name != "fs" {
				return true
			}
			name, err1 := stringLit(call.Args[0])
			usage, err2 := stringLit(call.Args[2])
			if err1 != nil || err2 != nil {
				return true
			}
			flags[name] = cliFlag{usage: usage, isBool: sel.Sel.Name == "Bool"}
			return true
		})
	}
	if _, ok := flags["config"]; !ok {
		t.Fatalf("found no --config flag in internal/cli/cli.go func serve (found %v)", flags)
	}
	return flags
}

func stringLit(e ast.Expr) (string, error) {
	lit, ok := e.(*ast.BasicLit)
	if !ok || lit.Kind != token.STRING {
		return "", errors.New("not a string literal")
	}
	return strconv.Unquote(lit.Value)
}

// checkServeArgs checks the arguments after `chaperone serve`: each flag exists, and a flag
// that applies only with --demo is not used without it. It returns the flags' values.
func checkServeArgs(t testing.TB, where string, args []string) map[string]string {
	t.Helper()
	flags := serveFlags(t)
	values := map[string]string{}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "-") {
			t.Errorf("%s: unexpected argument %q after serve", where, a)
			continue
		}
		name, value, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		f, ok := flags[name]
		if !ok {
			t.Errorf("%s: chaperone serve has no flag %q (it has %v)", where, a, slices.Sorted(maps.Keys(flags)))
			continue
		}
		if !f.isBool && !hasValue {
			if i+1 == len(args) {
				t.Errorf("%s: %s has no value", where, a)
				continue
			}
			i++
			value = args[i]
		}
		values[name] = value
	}
	if _, demo := values["demo"]; !demo {
		for name := range values {
			if strings.Contains(flags[name].usage, "(with --demo)") {
				t.Errorf("%s: --%s applies only with --demo (%q); with --config it is ignored", where, name, flags[name].usage)
			}
		}
	}
	return values
}

func TestRepoDockerfile(t *testing.T) {
	t.Parallel()
	d, err := ParseDockerfile(readRepoFile(t, "Dockerfile"))
	if err != nil {
		t.Fatalf("Dockerfile: %v", err)
	}
	for _, e := range CheckDockerfile(d) {
		t.Errorf("Dockerfile: %v", e)
	}
	final := d.Final()
	if b := final.Base; b != "gcr.io/distroless/static-debian12:nonroot" && b != "scratch" {
		t.Errorf("Dockerfile: final stage FROM %q, want distroless static nonroot or scratch", b)
	}

	var entrypoint, cmd, user, volumes, ports []string
	copied := map[string]Instruction{} // by destination
	for _, in := range final.Instructions {
		switch in.Cmd {
		case "ENTRYPOINT":
			entrypoint = in.Args
		case "CMD":
			cmd = in.Args
		case "USER":
			user = in.Args
		case "VOLUME":
			volumes = append(volumes, in.Args...)
		case "EXPOSE":
			ports = append(ports, in.Args...)
		case "COPY":
			copied[in.Args[len(in.Args)-1]] = in
		}
	}
	if diff := cmp.Diff([]string{"/chaperone"}, entrypoint); diff != "" {
		t.Errorf("Dockerfile: ENTRYPOINT mismatch (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"serve", "--config", configPath}, cmd); diff != "" {
		t.Errorf("Dockerfile: CMD mismatch (-want +got):\n%s", diff)
	}
	if len(cmd) > 0 {
		checkServeArgs(t, "Dockerfile CMD", cmd[1:])
	}
	if len(user) != 1 || (user[0] != nonrootUser && user[0] != nonrootUser+":"+nonrootUser) {
		t.Errorf("Dockerfile: USER %q, want %s:%s (distroless nonroot)", user, nonrootUser, nonrootUser)
	}
	if !slices.Contains(volumes, imageData) {
		t.Errorf("Dockerfile: VOLUME %q, want %s", volumes, imageData)
	}
	if !slices.Contains(ports, "8080") || !slices.Contains(ports, "8081") {
		t.Errorf("Dockerfile: EXPOSE %q, want 8080 and 8081", ports)
	}
	if in, ok := copied["/chaperone"]; !ok {
		t.Errorf("Dockerfile: the final stage copies nothing to /chaperone")
	} else if _, ok := in.Flag("from"); !ok {
		t.Errorf("Dockerfile line %d: /chaperone is not copied from the build stage", in.Line)
	}
	// The data directory exists in the image owned by nonroot, so that a fresh named volume
	// (which takes the image directory's owner) is writable by the gateway.
	if in, ok := copied[imageData]; !ok {
		t.Errorf("Dockerfile: the final stage does not create %s", imageData)
	} else if own, _ := in.Flag("chown"); own != nonrootUser+":"+nonrootUser {
		t.Errorf("Dockerfile line %d: %s is owned by %q, want %s:%s", in.Line, imageData, own, nonrootUser, nonrootUser)
	}

	// The build stamps the version into the variables internal/buildinfo declares.
	var build string
	for _, st := range d.Stages[:len(d.Stages)-1] {
		for _, in := range st.Instructions {
			if in.Cmd == "RUN" && goBuildRE.MatchString(strings.Join(in.Args, " ")) {
				build = strings.Join(in.Args, " ")
			}
		}
	}
	for _, v := range buildinfoVars(t) {
		want := "-X " + module + "/internal/buildinfo." + v + "=${" + strings.ToUpper(v) + "}"
		if !strings.Contains(build, want) {
			t.Errorf("Dockerfile: go build %q does not stamp %q", build, want)
		}
	}
	if !strings.Contains(build, "./cmd/chaperone") {
		t.Errorf("Dockerfile: go build %q does not build ./cmd/chaperone", build)
	}

	// What the build stage copies from the context is in the context.
	ignore, err := ParseDockerignore(readRepoFile(t, ".dockerignore"))
	if err != nil {
		t.Fatalf(".dockerignore: %v", err)
	}
	for _, in := range d.Stages[0].Instructions {
		if in.Cmd != "COPY" {
			continue
		}
		if _, ok := in.Flag("from"); ok {
			continue
		}
		for _, src := range in.Args[:len(in.Args)-1] {
			if ignore.Ignored(src) {
				t.Errorf("Dockerfile line %d copies %q, which .dockerignore leaves out", in.Line, src)
			}
		}
	}
}

// buildinfoVars returns the names of the package-level string variables of
// internal/buildinfo.
func buildinfoVars(t testing.TB) []string {
	t.Helper()
	file, err := parser.ParseFile(token.NewFileSet(), filepath.Join(repoRoot(t), "internal", "buildinfo", "buildinfo.go"), nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var vars []string
	for _, decl := range file.Decls {
		gd, ok := decl.(*ast.GenDecl)
		if !ok || gd.Tok != token.VAR {
			continue
		}
		for _, spec := range gd.Specs {
			vs := spec.(*ast.ValueSpec)
			if id, ok := vs.Type.(*ast.Ident); ok && id.Name == "string" && len(vs.Values) == 0 {
				for _, n := range vs.Names {
					vars = append(vars, n.Name)
				}
			}
		}
	}
	if diff := cmp.Diff([]string{"Version", "Commit", "Date"}, vars); diff != "" {
		t.Fatalf("internal/buildinfo string variables mismatch (-want +got):\n%s", diff)
	}
	return vars
}

// TestRepoDockerignore checks that the build context holds every file the image's build
// reads, and none of the local files that may hold secrets.
func TestRepoDockerignore(t *testing.T) {
	t.Parallel()
	ignore, err := ParseDockerignore(readRepoFile(t, ".dockerignore"))
	if err != nil {
		t.Fatalf(".dockerignore: %v", err)
	}
	for _, p := range []string{
		".git/config", ".env", "chaperone.yaml", "chaperone-data/admin.token", "chaperone-data/chaperone.db",
		"audit-signing.key", "dist/SHA256SUMS", "bin/chaperone", "internal/identity/testdata/key.pem",
		"internal/cli/cli_test.go", "docs/packaging.md", "Dockerfile",
	} {
		if !ignore.Ignored(p) {
			t.Errorf(".dockerignore sends %q to the Docker daemon", p)
		}
	}

	goCmd, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("go not found: %v", err)
	}
	root := repoRoot(t)
	list := exec.Command(goCmd, "list", "-deps", "-json=Dir,Module,GoFiles,SFiles,EmbedFiles", "./cmd/chaperone")
	list.Dir = root
	list.Env = append(os.Environ(), "GOOS=linux", "GOARCH=amd64", "CGO_ENABLED=0")
	var stderr bytes.Buffer
	list.Stderr = &stderr
	out, err := list.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.Bytes())
	}
	needed := []string{"go.mod", "go.sum"}
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p struct {
			Dir                         string
			Module                      *struct{ Path string }
			GoFiles, SFiles, EmbedFiles []string
		}
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("go list output: %v", err)
		}
		if p.Module == nil || p.Module.Path != module {
			continue
		}
		rel, err := filepath.Rel(root, p.Dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range slices.Concat(p.GoFiles, p.SFiles, p.EmbedFiles) {
			needed = append(needed, filepath.ToSlash(filepath.Join(rel, f)))
		}
	}
	if len(needed) < 10 {
		t.Fatalf("go list found only %d files of the module in the build", len(needed))
	}
	for _, f := range needed {
		if ignore.Ignored(f) {
			t.Errorf(".dockerignore leaves out %s, which building cmd/chaperone reads", f)
		}
	}
}

func TestRepoUnit(t *testing.T) {
	t.Parallel()
	const name = "deploy/systemd/chaperone.service"
	u, err := ParseUnit(readRepoFile(t, name))
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	for _, e := range CheckUnit(u) {
		t.Errorf("%s: %v", name, e)
	}
	start, _ := u.Value("Service", "ExecStart")
	args := strings.Fields(start)
	if len(args) < 2 || args[0] != binaryPath || args[1] != "serve" {
		t.Fatalf("%s: ExecStart=%q, want %s serve ...", name, start, binaryPath)
	}
	values := checkServeArgs(t, name+" ExecStart", args[2:])
	if values["config"] != configPath {
		t.Errorf("%s: ExecStart --config %q, want %s (in ConfigurationDirectory)", name, values["config"], configPath)
	}
	if v, _ := u.Value("Service", "Type"); v != "simple" && v != "exec" {
		t.Errorf("%s: Type=%q, want simple or exec (the gateway does not fork)", name, v)
	}
}

// TestRepoUnitSystemd runs systemd's own checks on the unit where systemd-analyze exists:
// verify (syntax, known settings), and the offline security review, which must rate the
// unit's exposure at most 2.0 ("OK").
func TestRepoUnitSystemd(t *testing.T) {
	t.Parallel()
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skipf("systemd-analyze not found: %v", err)
	}
	// verify requires ExecStart's program to exist: the copy points at a stand-in, the
	// rest of the unit unchanged.
	dir := t.TempDir()
	stand := filepath.Join(dir, "chaperone")
	if err := os.WriteFile(stand, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	src := string(readRepoFile(t, "deploy/systemd/chaperone.service"))
	if !strings.Contains(src, "\nExecStart="+binaryPath+" ") {
		t.Fatalf("the unit's ExecStart does not start with %s", binaryPath)
	}
	unit := filepath.Join(dir, "chaperone.service")
	if err := os.WriteFile(unit, []byte(strings.Replace(src, "\nExecStart="+binaryPath+" ", "\nExecStart="+stand+" ", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	verify := exec.Command(analyze, "verify", unit)
	verify.Dir = dir
	if out, err := verify.CombinedOutput(); err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	// The offline review and --threshold came with systemd 250.
	ver, err := exec.Command(analyze, "--version").Output()
	if err != nil {
		t.Fatalf("systemd-analyze --version: %v", err)
	}
	var major int
	if _, err := fmt.Sscanf(string(ver), "systemd %d", &major); err != nil || major < 250 {
		t.Skipf("systemd-analyze %q predates the offline security review", strings.SplitN(string(ver), "\n", 2)[0])
	}
	security := exec.Command(analyze, "security", "--offline=yes", "--threshold=20", "--no-pager", unit)
	security.Dir = dir
	if out, err := security.CombinedOutput(); err != nil {
		t.Errorf("systemd-analyze security --threshold=20 (exposure above 2.0): %v\n%s", err, out)
	}
}

// TestDocsContainerConfig loads the container configuration shown in docs/packaging.md:
// it is valid, and it agrees with the image's volume and ports.
func TestDocsContainerConfig(t *testing.T) {
	t.Parallel()
	doc := string(readRepoFile(t, "docs/packaging.md"))
	const start = "```yaml\n# etc/chaperone/chaperone.yaml"
	i := strings.Index(doc, start)
	if i < 0 {
		t.Fatalf("docs/packaging.md has no block starting %q", start)
	}
	block := doc[i+len("```yaml\n"):]
	end := strings.Index(block, "```")
	if end < 0 {
		t.Fatal("docs/packaging.md: the configuration block is not closed")
	}
	cfg, err := config.Parse([]byte(block[:end]))
	if err != nil {
		t.Fatalf("docs/packaging.md configuration: %v", err)
	}
	cfg.ApplyDefaults()
	if err := cfg.Validate(); err != nil {
		t.Errorf("docs/packaging.md configuration: %v", err)
	}
	if cfg.DataDir != imageData || cfg.Server.Listen != "0.0.0.0:8080" || cfg.Admin.Listen != "0.0.0.0:8081" {
		t.Errorf("docs/packaging.md configuration: data_dir %q, listen %q, admin %q; want %s and 0.0.0.0 on 8080 and 8081 as the image expects",
			cfg.DataDir, cfg.Server.Listen, cfg.Admin.Listen, imageData)
	}
}
