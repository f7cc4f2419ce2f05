package cli

// The tests in this file check that every command line shown in the README and the guides
// (docs/*.md) still parses, so that the documentation cannot drift from the command line.
//
// # Which text is a command line
//
//   - Fenced code blocks labelled sh, bash, shell or zsh: every line is a command line (a
//     trailing backslash continues it on the next line), except in a block that uses "$ "
//     prompts, where only the prompted lines are; the other lines are output.
//   - Fenced blocks labelled console, and unlabelled ones: only the "$ " lines. The rest is
//     output, as is every block with another label (text, yaml, json, promql, ...).
//   - Inline code spans outside fenced blocks, also across a line break, read as one line
//     of a sh block.
//
// A command line is split the way a shell splits it: quotes, backslashes, "#" comments,
// pipelines and lists (| || && ; &) and redirections (< > >> 2>&1, with their file) are
// understood, and the command lines inside $(...), `...` and <(...) are read too. Leading
// VAR=value assignments and "sudo" are dropped. The program is chaperone when it is
// written "chaperone", as a path ending in "/chaperone" (./bin/chaperone, bin/chaperone,
// /usr/local/bin/chaperone) or as "go run ./cmd/chaperone"; a chaperone with no arguments
// names the binary and is no command. make commands are read too. Every other program is
// left alone.
//
// A usage synopsis is grammar, not a command, and is skipped (and counted in the log):
// a command line with an unquoted word that starts with "[" or "(", that has "|" between
// two non-blank characters (jsonl|ocsf|trace) or that ends in "..." (PATH...).
//
// # Placeholders
//
// Any word parses as the value of a string flag or as a positional argument, so the
// placeholders ID, NAME, WHO, FILE, KEY, DIR, PATH, apr_Jq… and the like stay as written.
// Typed flags need real values: a word that is one shell expansion ($TOKEN, "$(pgrep x)")
// becomes "1", an ellipsis "…" inside a word becomes "0" (sha256:… is sha256:0), a
// <word> becomes "x", and docPlaceholders maps the few placeholders the guides give to
// numeric flags.
//
// # What is checked
//
// Each chaperone command runs through [Run] in parse-only mode (parseonly.go): the command
// parses its flags and stops before doing anything. It fails the test, with its file:line,
// when the command or subcommand is unknown, a flag is unknown or lacks its value, a typed
// flag's value does not parse or there are too many arguments, unless knownBroken lists
// the line; a listed line that parses again fails too, so that the list only shrinks. A
// make command fails unless the Makefile defines each target it names.

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// docsRoot is the repository's root, from this package's directory.
const docsRoot = "../.."

// knownBroken lists the documented command lines, by file:line, that do not parse today,
// each with the fix to make, as in
//
//	"docs/packaging.md:184": "completion is not a command of Run: wire completionCmd into Run",
//
// Clear an entry when its line is fixed: TestDocCommandsKnownBroken fails while a listed
// line parses, or no longer holds a command.
var knownBroken = map[string]string{}

// notCommands are inline code spans that read like chaperone command lines but name
// something else; they are not run.
var notCommands = map[string]string{
	"chaperone tool manifest v1": "the context string a tool manifest signature signs (docs/supply-chain.md)",
	"chaperone policy bundle v1": "the context string a policy bundle signature signs (docs/supply-chain.md)",
}

// docPlaceholders maps the placeholders the guides write for values of numeric flags
// (-n N, --level N, --since SEQ) to values that parse.
var docPlaceholders = map[string]string{
	"N":   "1",
	"SEQ": "1",
}

// Programs of the commands docCommands returns.
const (
	progChaperone = "chaperone"
	progMake      = "make"
)

// maxSubstitutionDepth bounds how deeply command lines inside $(...) are read.
const maxSubstitutionDepth = 4

// docFiles returns the documents checked: README.md and docs/*.md, as slash paths
// relative to the repository root.
func docFiles(t testing.TB) []string {
	t.Helper()
	guides, err := filepath.Glob(filepath.Join(docsRoot, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	files := []string{"README.md"}
	for _, g := range guides {
		rel, err := filepath.Rel(docsRoot, g)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, filepath.ToSlash(rel))
	}
	slices.Sort(files[1:])
	if len(files) < 2 {
		t.Fatalf("no guides in %s", filepath.Join(docsRoot, "docs"))
	}
	return files
}

// readDoc reads a document or Makefile named by its slash path relative to the root.
func readDoc(t testing.TB, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(docsRoot, filepath.FromSlash(name)))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// enableParseOnly turns parse-only mode on for the rest of the test, after checking that
// parse honours it: without that, the documented commands would really run.
func enableParseOnly(t *testing.T) {
	t.Helper()
	if !parseOnly.CompareAndSwap(false, true) {
		t.Fatal("parse-only mode is already on: the tests that set it must not run in parallel")
	}
	t.Cleanup(func() { parseOnly.Store(false) })
	missing := filepath.Join(t.TempDir(), "missing.yaml")
	if code := Run(t.Context(), []string{"config", "check", "--config", missing}, io.Discard, io.Discard); code != exitOK {
		t.Fatalf("parse-only mode is not wired into parse (cli.go): config check --config %s = exit %d, want 0 without reading the file", missing, code)
	}
}

// checkParses runs a chaperone command in parse-only mode and returns "" when it parses,
// else what is wrong.
func checkParses(t *testing.T, c docCommand) string {
	t.Helper()
	if c.err != nil {
		return "cannot split the command line: " + c.err.Error()
	}
	var stdout, stderr bytes.Buffer
	code := Run(t.Context(), c.args, &stdout, &stderr)
	if code == exitOK {
		return ""
	}
	return fmt.Sprintf("exit status %d: %s", code, complaint(stderr.String()))
}

// complaint picks Run's message out of what a failed command wrote on standard error
// (the flag package's usage text comes with it).
func complaint(stderr string) string {
	lines := strings.Split(strings.TrimSpace(stderr), "\n")
	for _, l := range lines {
		if strings.HasPrefix(l, "chaperone ") || strings.HasPrefix(l, "chaperone:") {
			return l
		}
	}
	return lines[0]
}

// checkTargets returns "" when the Makefile defines every target of a make command.
func checkTargets(c docCommand, targets []string) string {
	var missing []string
	for _, a := range c.args {
		if !slices.Contains(targets, a) {
			missing = append(missing, a)
		}
	}
	if len(missing) == 0 {
		return ""
	}
	return fmt.Sprintf("the Makefile has no target %s (it has %s)", strings.Join(missing, ", "), strings.Join(targets, ", "))
}

// TestDocCommands runs every documented chaperone command line in parse-only mode and
// checks every documented make command's targets.
func TestDocCommands(t *testing.T) {
	enableParseOnly(t)
	targets := makeTargets(readDoc(t, "Makefile"))
	total := 0
	seen := map[string]bool{}
	for _, name := range docFiles(t) {
		var chaperone, mk, synopses, skipped int
		for _, c := range docCommands(readDoc(t, name)) {
			at := fmt.Sprintf("%s:%d", name, c.line)
			switch {
			case c.synopsis:
				synopses++
				continue
			case c.prog == progMake:
				mk++
				if msg := checkTargets(c, targets); msg != "" {
					t.Errorf("%s: %s\n\t%s", at, c.text, msg)
				}
				continue
			case notCommands[c.text] != "":
				seen[c.text] = true
				skipped++
				continue
			}
			chaperone++
			msg := checkParses(t, c)
			switch _, broken := knownBroken[at]; {
			case msg != "" && broken:
				t.Logf("%s: known broken: %s", at, knownBroken[at])
			case msg != "":
				t.Errorf("%s: %s\n\tran: chaperone %s\n\t%s", at, c.text, strings.Join(c.args, " "), msg)
			}
		}
		t.Logf("%s: checked %d chaperone and %d make commands; skipped %d synopses and %d notCommands", name, chaperone, mk, synopses, skipped)
		total += chaperone
	}
	// The README alone shows several: finding none means the extraction broke.
	if total < 10 {
		t.Errorf("found %d chaperone commands in the documentation, want at least 10", total)
	}
	for text := range notCommands {
		if !seen[text] {
			t.Errorf("notCommands lists %q, which no document shows any more: remove the entry", text)
		}
	}
}

// staleKnownBroken returns the entries of list that are not broken lines of docs (the
// commands of each document, by name): malformed ones, those of lines without a chaperone
// command, and those whose commands all parse.
func staleKnownBroken(t *testing.T, list map[string]string, docs map[string][]docCommand) []string {
	t.Helper()
	var stale []string
	for at := range list {
		i := strings.LastIndexByte(at, ':')
		if i < 0 {
			stale = append(stale, fmt.Sprintf("%s: want file:line", at))
			continue
		}
		var found, failing int
		for _, c := range docs[at[:i]] {
			if fmt.Sprintf("%s:%d", at[:i], c.line) != at || c.prog != progChaperone || c.synopsis {
				continue
			}
			found++
			if checkParses(t, c) != "" {
				failing++
			}
		}
		switch {
		case found == 0:
			stale = append(stale, fmt.Sprintf("%s holds no chaperone command", at))
		case failing == 0:
			stale = append(stale, fmt.Sprintf("%s parses", at))
		}
	}
	slices.Sort(stale)
	return stale
}

// TestDocCommandsKnownBroken fails for a knownBroken entry whose line parses again, or no
// longer holds a command, so that the list is cleared as the documentation is fixed.
func TestDocCommandsKnownBroken(t *testing.T) {
	enableParseOnly(t)
	docs := map[string][]docCommand{}
	for _, name := range docFiles(t) {
		docs[name] = docCommands(readDoc(t, name))
	}
	for _, s := range staleKnownBroken(t, knownBroken, docs) {
		t.Errorf("knownBroken: %s: remove the entry", s)
	}
}

// TestStaleKnownBroken shows that an allowlist entry is reported once its line is fixed.
func TestStaleKnownBroken(t *testing.T) {
	enableParseOnly(t)
	docs := map[string][]docCommand{
		"a.md": docCommands("```sh\nchaperone frobnicate\nchaperone kills\nchaperone kills --bogus | chaperone kills\n```\n\nprose\n"),
	}
	list := map[string]string{
		"a.md:2": "unknown command: still broken",
		"a.md:3": "parses",
		"a.md:4": "one of its two commands is still broken",
		"a.md:6": "prose, no command",
		"b.md:2": "no such document",
		"a.md-2": "malformed",
	}
	got := staleKnownBroken(t, list, docs)
	want := []string{"a.md-2: want file:line", "a.md:3 parses", "a.md:6 holds no chaperone command", "b.md:2 holds no chaperone command"}
	if !slices.Equal(got, want) {
		t.Errorf("staleKnownBroken = %q, want %q", got, want)
	}
}

// TestREADMEFirstCommands checks the commands the README opens with, the first ones a
// newcomer runs: a chaperone command run from the checkout with `go run ./cmd/chaperone`,
// which must parse, and a make command, whose targets the Makefile must define.
func TestREADMEFirstCommands(t *testing.T) {
	enableParseOnly(t)
	lines := strings.Split(readDoc(t, "README.md"), "\n")
	var cmds []docCommand
	for i, l := range lines {
		f, ok := openFence(l)
		if !ok {
			continue
		}
		var body []string
		for j := i + 1; j < len(lines) && !f.closedBy(lines[j]); j++ {
			body = append(body, f.strip(lines[j]))
		}
		cmds = blockCommands(f.lang, body, i+2)
		break
	}
	var goRun, mk int
	for _, c := range cmds {
		at := fmt.Sprintf("README.md:%d", c.line)
		switch {
		case c.prog == progMake:
			mk++
			if msg := checkTargets(c, makeTargets(readDoc(t, "Makefile"))); msg != "" {
				t.Errorf("%s: %s: %s", at, c.text, msg)
			}
		case strings.HasPrefix(c.text, "go run ./cmd/chaperone "):
			goRun++
			fallthrough
		default:
			if msg := checkParses(t, c); msg != "" {
				t.Errorf("%s: %s: %s", at, c.text, msg)
			}
		}
	}
	if goRun == 0 || mk == 0 {
		t.Errorf("the README's first code block has %d go run ./cmd/chaperone and %d make commands, want one of each at least", goRun, mk)
	}
	if _, err := os.Stat(filepath.Join(docsRoot, "cmd", "chaperone", "main.go")); err != nil {
		t.Errorf("go run ./cmd/chaperone: %v", err)
	}
}

// TestParseOnlyRejects shows that the check fails for each kind of mistake a documented
// command can hold, and passes for correct command lines.
func TestParseOnlyRejects(t *testing.T) {
	enableParseOnly(t)
	bad := []string{
		"frobnicate",                             // unknown command
		"tools",                                  // missing subcommand
		"tools frob",                             // unknown subcommand
		"audit tail --bogus",                     // unknown flag
		"audit tail -n",                          // flag without its value
		"audit tail -n many",                     // not an int
		"approvals stats --since soon",           // not a duration
		"serve --demo=maybe",                     // not a bool
		"bench --rate fast",                      // not a float
		"audit export --since -x --format jsonl", // not an int64
		"config check extra",                     // an argument too many
		"tools approve a b --by alice",           // an argument too many, after reordering
		"kill all --reason",                      // a value flag last: not given "--" as its value
		"tools approve echo --by",                // the same, after a positional argument
	}
	for _, line := range bad {
		c := docCommand{args: strings.Fields(line)}
		if checkParses(t, c) == "" {
			t.Errorf("chaperone %s parsed in parse-only mode, want an error", line)
		}
	}
	good := []string{
		"serve --demo",
		"serve --config chaperone.yaml",
		"tools approve echo --by alice --hash sha256:0",
		"audit export --format jsonl --from 24h --kind call.* --since 1842",
		"agent register --id planner --owner dana@example.com --env dev --capabilities a,b --autonomy 1 --secret",
		"bench memory --sessions 10000 --soak 1m",
		"approvals stats --since 24h",
		"kill agent:billing-bot --reason x",
		"policy test policies/ --junit out.xml",
		"version",
	}
	for _, line := range good {
		c := docCommand{args: strings.Fields(line)}
		if msg := checkParses(t, c); msg != "" {
			t.Errorf("chaperone %s: %s, want it to parse", line, msg)
		}
	}
}

// TestParseOnlyDoesNothing shows that commands stop after parsing in parse-only mode:
// commands that write files write none, and serve returns instead of serving.
func TestParseOnlyDoesNothing(t *testing.T) {
	enableParseOnly(t)
	dir := t.TempDir()
	for _, args := range [][]string{
		{"init", "--preset", "minimal", "--dir", dir},
		{"keys", "generate", "--out", filepath.Join(dir, "release")},
		{"config", "schema", "--out", filepath.Join(dir, "schema.json")},
		{"serve", "--demo", "--data-dir", filepath.Join(dir, "data"), "--listen", "127.0.0.1:0", "--admin-listen", "off"},
	} {
		var stdout, stderr bytes.Buffer
		if code := Run(t.Context(), args, &stdout, &stderr); code != exitOK || stdout.Len() > 0 || stderr.Len() > 0 {
			t.Errorf("Run(%q) = %d, stdout %q, stderr %q; want 0 and no output", args, code, stdout.String(), stderr.String())
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) > 0 {
		t.Errorf("parse-only commands wrote %d entries into %s, want none", len(entries), dir)
	}
}

// docExtractionTests are small documents and the commands docCommands must find in them.
var docExtractionTests = []struct {
	name string
	doc  string
	want []string // "line prog arg arg", "line synopsis", "line error"
}{
	{"sh block", "text\n\n```sh\nchaperone tools list   # all tools\nchaperone audit tail -n 20\n```\n", []string{"4 chaperone tools list", "5 chaperone audit tail -n 20"}},
	{"bash and shell", "```bash\nchaperone kills\n```\n```shell\nchaperone kills --all\n```\n", []string{"2 chaperone kills", "5 chaperone kills --all"}},
	{"continuation", "```sh\nchaperone agent register --id a \\\n  --owner \"Dana D\" \\\n  --secret\nchaperone agent list\n```\n", []string{"2 chaperone agent register --id a --owner Dana D --secret", "5 chaperone agent list"}},
	{"prompts", "```sh\n$ chaperone version\nchaperone 0.2.0 (commit abc)\n$ chaperone version --json\n{\"version\":\"0.2.0\"}\n```\n", []string{"2 chaperone version", "4 chaperone version --json"}},
	{"console", "```console\n$ chaperone audit verify\nok: 3 events\n```\n", []string{"2 chaperone audit verify"}},
	{"unlabelled output", "```\nchaperone audit checkpoint v1\nseq=1\n```\n", nil},
	{"unlabelled with prompt", "```\n$ chaperone token new\ntoken: chp_x\n```\n", []string{"2 chaperone token new"}},
	{"other languages", "```yaml\ncommand: chaperone serve\n```\n```json\n[\"chaperone\", \"tools\", \"list\"]\n```\n```text\nchaperone kills\n```\n", nil},
	{"go run and paths", "```sh\ngo run ./cmd/chaperone serve --demo\n./bin/chaperone kills\nbin/chaperone tools list\n/usr/local/bin/chaperone version\n```\n",
		[]string{"2 chaperone serve --demo", "3 chaperone kills", "4 chaperone tools list", "5 chaperone version"}},
	{"assignments and sudo", "```sh\nCHAPERONE_TOKEN=chp_… chaperone mcp stdio --url http://x/mcp\nsudo chaperone tools list\nA=1 B=2 make test\n```\n",
		[]string{"2 chaperone mcp stdio --url http://x/mcp", "3 chaperone tools list", "4 make test"}},
	{"pipes and redirections", "```sh\nprintf x |\n  chaperone secrets set k < v.txt\nchaperone secrets keygen --id k1 > keys && chmod 600 keys\nchaperone completion bash 2>&1 | sudo tee /x >/dev/null\n```\n",
		[]string{"3 chaperone secrets set k", "4 chaperone secrets keygen --id k1", "5 chaperone completion bash"}},
	{"substitutions", "```sh\nsource <(chaperone completion zsh)\nchaperone bench --target-pid \"$(pgrep -f gw)\" --out a-$(date +%F).json\nX=`chaperone token new`\n```\n",
		[]string{"2 chaperone completion zsh", "3 chaperone bench --target-pid 1 --out a-$(date +%F).json", "4 chaperone token new"}},
	{"placeholders", "```sh\nchaperone tools approve echo --by WHO --hash sha256:…\nchaperone audit tail -n N\nchaperone mcp stdio --token <token> --url $URL\n```\n",
		[]string{"2 chaperone tools approve echo --by WHO --hash sha256:0", "3 chaperone audit tail -n 1", "4 chaperone mcp stdio --token x --url 1"}},
	{"synopses", "```sh\nchaperone audit export --format jsonl|ocsf|trace [filters]\nchaperone report --from T [--to T]\nchaperone tools verify M (--config F | --trusted K)\nchaperone policy bundle PATH... --out F\n```\n",
		[]string{"2 synopsis", "3 synopsis", "4 synopsis", "5 synopsis"}},
	{"comments and bare names", "```sh\n# chaperone serve --demo\nchaperone\nmake\necho chaperone tools\n```\n", nil},
	{"unterminated quote", "```sh\nchaperone kill all --reason \"oops\necho 'x\n```\n", []string{"2 error"}},
	{"inline spans", "Run `chaperone kills --all`, or ``chaperone kills``;\n`chaperone config\ncheck --config F` and `make fuzz` and `chaperone-data` and `go test`.\n",
		[]string{"1 chaperone kills --all", "1 chaperone kills", "2 chaperone config check --config F", "3 make fuzz"}},
	{"inline span in a table", "| a | b |\n|---|---|\n| `chaperone completion bash\\|zsh` | x |\n", []string{"3 synopsis"}},
	{"indented fence in a list", "1. Check:\n\n   ```sh\n   chaperone audit verify --key k.pub\n   ```\n", []string{"4 chaperone audit verify --key k.pub"}},
	{"unclosed fence", "```sh\nchaperone kills\n", []string{"2 chaperone kills"}},
	{"make options", "```sh\nmake -j4 test FUZZTIME=2m fuzz\n```\n", []string{"2 make test fuzz"}},
}

// describeDocCommand renders a docCommand as docExtractionTests writes it.
func describeDocCommand(c docCommand) string {
	switch {
	case c.err != nil:
		return fmt.Sprintf("%d error", c.line)
	case c.synopsis:
		return fmt.Sprintf("%d synopsis", c.line)
	}
	return strings.Join(append([]string{fmt.Sprint(c.line), c.prog}, c.args...), " ")
}

func TestDocCommandExtraction(t *testing.T) {
	t.Parallel()
	for _, tt := range docExtractionTests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var got []string
			for _, c := range docCommands(tt.doc) {
				got = append(got, describeDocCommand(c))
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("docCommands(%q)\n got %q\nwant %q", tt.doc, got, tt.want)
			}
		})
	}
}

// splitShellTests are command lines and the words splitShell must find, one string per
// simple command, words separated by "·".
var splitShellTests = []struct {
	line string
	want []string // nil with err
	err  bool
}{
	{line: "a b  c", want: []string{"a·b·c"}},
	{line: `a 'b c' "d e" f\ g`, want: []string{"a·b c·d e·f g"}},
	{line: `a "x\"y\\z\$w" 'it''s'`, want: []string{`a·x"y\z$w·its`}},
	{line: `a '' ""`, want: []string{"a··"}},
	{line: "a | b || c && d ; e & f", want: []string{"a", "b", "c", "d", "e", "f"}},
	{line: "a > f b < g c >> h 2>&1 d &> i", want: []string{"a·b·c·d"}},
	{line: "a >/dev/null", want: []string{"a"}},
	{line: "a # b c", want: []string{"a"}},
	{line: "a#b", want: []string{"a#b"}},
	{line: "a $(b c) `d` <(e)", want: []string{"a·$(b c)·`d`·<(e)"}},
	{line: "a <token> <b-c.d>", want: []string{"a·<token>·<b-c.d>"}},
	{line: "a 'unterminated", err: true},
	{line: `a "unterminated`, err: true},
	{line: "a $(unterminated", err: true},
	{line: "a `unterminated", err: true},
	{line: "a >", err: true},
	{line: "a > > b", err: true},
	{line: "cat <<EOF", err: true},
}

func TestSplitShell(t *testing.T) {
	t.Parallel()
	for _, tt := range splitShellTests {
		segs, _, err := splitShell(tt.line)
		if (err != nil) != tt.err {
			t.Errorf("splitShell(%q) error = %v, want error %t", tt.line, err, tt.err)
			continue
		}
		var got []string
		for _, s := range segs {
			var words []string
			for _, w := range s.words {
				words = append(words, w.text)
			}
			got = append(got, strings.Join(words, "·"))
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("splitShell(%q) = %q, want %q", tt.line, got, tt.want)
		}
	}
}

func TestMakeTargets(t *testing.T) {
	t.Parallel()
	src := "GO ?= go\nX := a:b\n.PHONY: test ci\n\nbuild:\n\t$(GO) build\ntest vet: build\n\t$(GO) test\nci:: test\n# comment: no\n\tnot: a rule\n"
	got := makeTargets(src)
	if want := []string{"build", "test", "vet", "ci"}; !slices.Equal(got, want) {
		t.Errorf("makeTargets(%q) = %q, want %q", src, got, want)
	}
	if got := makeTargets(readDoc(t, "Makefile")); !slices.Contains(got, "test") {
		t.Errorf("makeTargets(Makefile) = %q, want test among them", got)
	}
}

// shellQuote quotes a word for a POSIX shell.
func shellQuote(w string) string {
	return "'" + strings.ReplaceAll(w, "'", `'\''`) + "'"
}

// FuzzSplitShell checks that splitShell never panics, returns no more text than it was
// given, and reads quoted words back exactly.
func FuzzSplitShell(f *testing.F) {
	for _, tt := range splitShellTests {
		f.Add(tt.line)
	}
	for _, tt := range docExtractionTests {
		f.Add(tt.doc)
	}
	f.Fuzz(func(t *testing.T, s string) {
		segs, subs, err := splitShell(s)
		if err == nil {
			n := 0
			for _, seg := range segs {
				for _, w := range seg.words {
					n += len(w.text)
				}
			}
			for _, sub := range subs {
				if !strings.Contains(s, sub) {
					t.Fatalf("splitShell(%q): substitution %q is not in the line", s, sub)
				}
			}
			if n > len(s) {
				t.Fatalf("splitShell(%q): %d bytes of words from %d bytes", s, n, len(s))
			}
		}
		// Round trip: the fields of s, each quoted, come back as they were.
		words := strings.Fields(s)
		quoted := make([]string, len(words))
		for i, w := range words {
			quoted[i] = shellQuote(w)
		}
		segs, _, err = splitShell(strings.Join(quoted, " "))
		if err != nil {
			t.Fatalf("splitShell of quoted %q: %v", words, err)
		}
		var got []string
		for _, seg := range segs {
			for _, w := range seg.words {
				got = append(got, w.text)
			}
		}
		if len(segs) > 1 || !slices.Equal(got, words) {
			t.Fatalf("splitShell of quoted %q = %d commands %q", words, len(segs), got)
		}
	})
}

// FuzzDocCommands checks that docCommands never panics and places every command on a line
// of the document.
func FuzzDocCommands(f *testing.F) {
	for _, tt := range docExtractionTests {
		f.Add(tt.doc)
	}
	f.Fuzz(func(t *testing.T, doc string) {
		lines := strings.Count(doc, "\n") + 1
		for _, c := range docCommands(doc) {
			if c.line < 1 || c.line > lines {
				t.Fatalf("docCommands(%q): command %q on line %d of %d", doc, c.text, c.line, lines)
			}
			if c.prog != progChaperone && c.prog != progMake {
				t.Fatalf("docCommands(%q): command %q has program %q", doc, c.text, c.prog)
			}
		}
	})
}

// FuzzMakeTargets checks that makeTargets never panics and returns only names.
func FuzzMakeTargets(f *testing.F) {
	f.Add("test:\n\tgo test ./...\nci: vet test\n")
	f.Add("GO ?= go\nX := a:b\n.PHONY: a\n")
	f.Fuzz(func(t *testing.T, src string) {
		for _, tg := range makeTargets(src) {
			if tg == "" || strings.ContainsAny(tg, " \t\n:=") || strings.HasPrefix(tg, ".") {
				t.Fatalf("makeTargets(%q) returned target %q", src, tg)
			}
		}
	})
}
