package cli

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// topLevel lists the commands of a usage text independently of commandTree: the first
// word after "  chaperone ".
func topLevel(text string) []string {
	var names []string
	for _, m := range regexp.MustCompile(`(?m)^  chaperone ([a-z][a-z0-9-]*)`).FindAllStringSubmatch(text, -1) {
		if !slices.Contains(names, m[1]) {
			names = append(names, m[1])
		}
	}
	slices.Sort(names)
	return names
}

func TestCommandTree(t *testing.T) {
	t.Parallel()
	const text = `tool — does things

Usage:
  chaperone serve --demo [--data-dir DIR]     run the demo
  chaperone serve --config F                  run configured
  chaperone tools list                        list (--all: include retired)
  chaperone tools approve NAME --by WHO       pin a tool
  chaperone agent suspend|revoke ID --reason TEXT --by WHO
                                              stop an agent at once (revocation is final)
  chaperone agent register --id ID
      [--purpose TEXT] [--label k=v ...] (--public-key FILE | --secret)
                                              register an agent, see re-run and agent:ID
  chaperone audit tail [-n N]                 the latest events
  chaperone kill SCOPE --reason TEXT          stop SCOPE
  chaperone bench [--rate 500]
  chaperone bench memory [--soak 1m]          heap per session
  chaperone version
  chaperone Bad --flag                        not a lower-case command
  chaperone                                   nothing
      --orphan                                after an entry that was skipped

  chaperone completion bash|zsh|fish          print a completion script
Run 'chaperone COMMAND -h' for a command's flags --not-this.
    --nor-this
`
	want := []command{
		{name: "agent", subs: []subcommand{
			{name: "register", flags: []string{"--id", "--label", "--public-key", "--purpose", "--secret"}},
			{name: "revoke", flags: []string{"--by", "--reason"}},
			{name: "suspend", flags: []string{"--by", "--reason"}},
		}},
		{name: "audit", subs: []subcommand{{name: "tail", flags: []string{"-n"}}}},
		{name: "bench", flags: []string{"--rate"}, subs: []subcommand{{name: "memory", flags: []string{"--soak"}}}},
		{name: "completion", subs: []subcommand{{name: "bash"}, {name: "fish"}, {name: "zsh"}}},
		{name: "kill", flags: []string{"--reason"}},
		{name: "serve", flags: []string{"--config", "--data-dir", "--demo"}},
		{name: "tools", subs: []subcommand{{name: "approve", flags: []string{"--by"}}, {name: "list", flags: []string{"--all"}}}},
		{name: "version"},
	}
	got := commandTree(text)
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(command{}, subcommand{})); diff != "" {
		t.Errorf("commandTree mismatch (-want +got):\n%s", diff)
	}
	if got := commandTree(""); len(got) != 0 {
		t.Errorf("commandTree(\"\") = %v, want none", got)
	}
}

// usageTree is the tree of the real usage text with lookups that fail the test when a
// command or subcommand is missing.
type usageTree struct {
	t    *testing.T
	tree []command
}

func newUsageTree(t *testing.T) usageTree {
	return usageTree{t, commandTree(usage)}
}

func (u usageTree) command(name string) command {
	u.t.Helper()
	i := slices.IndexFunc(u.tree, func(c command) bool { return c.name == name })
	if i < 0 {
		u.t.Fatalf("commandTree(usage) has no %q", name)
	}
	return u.tree[i]
}

// subs returns cmd's subcommands.
func (u usageTree) subs(cmd string) []string {
	u.t.Helper()
	var names []string
	for _, s := range u.command(cmd).subs {
		names = append(names, s.name)
	}
	return names
}

// flags returns the flags of cmd, or of its subcommand sub.
func (u usageTree) flags(cmd, sub string) []string {
	u.t.Helper()
	c := u.command(cmd)
	if sub == "" {
		return c.flags
	}
	i := slices.IndexFunc(c.subs, func(s subcommand) bool { return s.name == sub })
	if i < 0 {
		u.t.Fatalf("commandTree(usage) has no %q %q", cmd, sub)
	}
	return c.subs[i].flags
}

// withPrefix returns the words of list that start with prefix, space-separated.
func withPrefix(list []string, prefix string) string {
	var out []string
	for _, w := range list {
		if strings.HasPrefix(w, prefix) {
			out = append(out, w)
		}
	}
	return strings.Join(out, " ")
}

// TestCommandTreeUsage checks the tree of the real usage text: every command is there,
// and the entries the completion tests rely on are read as they should be.
func TestCommandTreeUsage(t *testing.T) {
	t.Parallel()
	u := newUsageTree(t)
	var names []string
	for _, c := range u.tree {
		names = append(names, c.name)
	}
	if diff := cmp.Diff(topLevel(usage), names); diff != "" {
		t.Errorf("commandTree(usage) commands mismatch (-want +got):\n%s", diff)
	}
	for _, want := range []struct {
		what string
		list []string
		has  []string
	}{
		{"tools subcommands", u.subs("tools"), []string{"approve", "list"}},
		{"bench subcommands", u.subs("bench"), []string{"memory"}},
		{"serve flags", u.flags("serve", ""), []string{"--config", "--data-dir", "--demo"}},
		{"tools approve flags", u.flags("tools", "approve"), []string{"--by"}},
		{"audit tail flags", u.flags("audit", "tail"), []string{"-n", "--data-dir"}},
		{"bench flags", u.flags("bench", ""), []string{"--duration"}},
		{"bench memory flags", u.flags("bench", "memory"), []string{"--soak"}},
		{"agent suspend flags", u.flags("agent", "suspend"), []string{"--reason"}},
		{"kill flags", u.flags("kill", ""), []string{"--reason"}},
	} {
		for _, h := range want.has {
			if !slices.Contains(want.list, h) {
				t.Errorf("%s = %q, want %s among them", want.what, want.list, h)
			}
		}
	}
}

// TestUsageMatchesRun runs every command and subcommand of the usage text with -h: each
// exists, and each flag the usage text shows for it is one it defines. Completion offers
// what the usage text says, so the two must agree.
func TestUsageMatchesRun(t *testing.T) {
	for _, c := range commandTree(usage) {
		paths := [][]string{{c.name}}
		flags := [][]string{c.flags}
		for _, s := range c.subs {
			paths = append(paths, []string{c.name, s.name})
			flags = append(flags, s.flags)
		}
		for i, path := range paths {
			if len(c.subs) > 0 && len(path) == 1 && len(c.flags) == 0 {
				continue // a command that only groups subcommands
			}
			var stdout, stderr bytes.Buffer
			code := Run(t.Context(), append(slices.Clone(path), "-h"), &stdout, &stderr)
			out := stdout.String() + stderr.String()
			if code != exitOK || strings.Contains(out, "unknown command") || strings.Contains(out, "unknown subcommand") {
				t.Errorf("chaperone %s -h = %d, %q; want exit 0", strings.Join(path, " "), code, out)
				continue
			}
			for _, f := range flags[i] {
				re := regexp.MustCompile(`(?m)^  -` + regexp.QuoteMeta(strings.TrimLeft(f, "-")) + `(\s|$)`)
				if !re.MatchString(out) {
					t.Errorf("usage shows %s for chaperone %s, which does not define it:\n%s", f, strings.Join(path, " "), out)
				}
			}
		}
	}
}

func TestCompletionCmd(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
		want string // the error's text; empty for success
	}{
		{"no shell", nil, "missing shell: want bash, zsh or fish"},
		{"unknown shell", []string{"powershell"}, `unknown shell "powershell": want bash, zsh or fish`},
		{"shell name case", []string{"Bash"}, `unknown shell "Bash"`},
		{"two shells", []string{"bash", "zsh"}, `unexpected argument "zsh"`},
		{"two shells after a flag", []string{"--", "bash", "zsh"}, `unexpected argument "zsh"`},
		{"empty shell", []string{""}, "missing shell"},
		{"unknown flag", []string{"--shell=bash"}, "flag provided but not defined: -shell"},
		{"bash", []string{"bash"}, ""},
		{"zsh", []string{"zsh"}, ""},
		{"fish", []string{"fish"}, ""},
		{"shell after --", []string{"--", "zsh"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var stdout, stderr bytes.Buffer
			err := completionCmd(tt.args, &stdout, &stderr)
			if tt.want == "" {
				if err != nil || stdout.Len() == 0 {
					t.Fatalf("completionCmd(%q) = %v with %d bytes, want a script", tt.args, err, stdout.Len())
				}
				return
			}
			var ue usageError
			if !errors.As(err, &ue) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("completionCmd(%q) = %v, want a usage error containing %q", tt.args, err, tt.want)
			}
			if stdout.Len() != 0 {
				t.Errorf("completionCmd(%q) wrote %q to stdout on error", tt.args, stdout.String())
			}
		})
	}

	for _, args := range [][]string{{"-h"}, {"bash", "-h"}, {"--help", "fish"}} {
		var stdout, stderr bytes.Buffer
		if err := completionCmd(args, &stdout, &stderr); !errors.Is(err, flag.ErrHelp) || !strings.Contains(stderr.String(), "chaperone completion bash|zsh|fish") || stdout.Len() != 0 {
			t.Errorf("completionCmd(%q) = %v, stdout %q, stderr %q; want flag.ErrHelp and the usage on stderr", args, err, stdout.String(), stderr.String())
		}
	}
}

// script writes shell's completion script into a temporary file and returns its path.
func script(t *testing.T, shell string) string {
	t.Helper()
	var out bytes.Buffer
	if err := completionCmd([]string{shell}, &out, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "chaperone."+shell)
	if err := os.WriteFile(p, out.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func lookShell(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("%s not found: %v", name, err)
	}
	return p
}

// shellEnv keeps the user's shell configuration out of the tests.
func shellEnv(t *testing.T) []string {
	home := t.TempDir()
	return append(os.Environ(), "HOME="+home, "XDG_CONFIG_HOME="+home, "XDG_DATA_HOME="+home)
}

// completionCase is a command line being completed, its last word the one under the
// cursor, and what completing it offers.
type completionCase struct {
	words []string
	want  string // the candidates, space-separated
}

// completionCases are the cases every shell's script is tried on; want holds the
// candidates starting with the last word (what bash and fish offer), all holds every
// candidate before that filtering (what the zsh script hands to compadd).
func completionCases(t *testing.T) (cases []completionCase, all []string) {
	u := newUsageTree(t)
	add := func(list []string, words ...string) {
		cases = append(cases, completionCase{words, withPrefix(list, words[len(words)-1])})
		all = append(all, strings.Join(list, " "))
	}
	add(topLevel(usage), "chaperone", "to")
	add(u.subs("tools"), "chaperone", "tools", "")
	add(u.subs("tools"), "chaperone", "tools", "a")
	add(u.flags("tools", "approve"), "chaperone", "tools", "approve", "--")
	add(u.flags("tools", "approve"), "chaperone", "tools", "approve", "NAME", "--b")
	add(u.flags("serve", ""), "chaperone", "serve", "--c")
	add(u.flags("serve", ""), "chaperone", "serve", "--d")
	add(u.flags("audit", "tail"), "chaperone", "audit", "tail", "-")
	add(u.subs("bench"), "chaperone", "bench", "")
	add(u.flags("bench", ""), "chaperone", "bench", "--d")
	add(u.flags("bench", "memory"), "chaperone", "bench", "memory", "--so")
	add(u.flags("agent", "suspend"), "chaperone", "agent", "suspend", "ID", "--r")
	add(u.flags("kill", ""), "chaperone", "kill", "all", "--r")
	for _, c := range cases {
		if c.want == "" {
			t.Fatalf("completing %q would offer nothing: the usage text changed under the test", c.words)
		}
	}
	// Nothing to offer.
	for _, words := range [][]string{
		{"chaperone", "nosuch", "--"},
		{"chaperone", "tools", "nosuch", "--"},
		{"chaperone", "tools", "*", "--"},
	} {
		cases = append(cases, completionCase{words, ""})
		all = append(all, "")
	}
	cases = append(cases, completionCase{[]string{"chaperone", "zz"}, ""})
	all = append(all, strings.Join(topLevel(usage), " "))
	return cases, all
}

func TestBashCompletion(t *testing.T) {
	t.Parallel()
	bash := lookShell(t, "bash")
	path := script(t, "bash")
	if out, err := exec.Command(bash, "-n", path).CombinedOutput(); err != nil {
		t.Fatalf("bash -n: %v\n%s", err, out)
	}
	run := func(t *testing.T, code string) string {
		t.Helper()
		// set -u: the script works in shells that treat unset variables as errors.
		cmd := exec.Command(bash, "--norc", "--noprofile", "-c", `set -u; source "$1"; `+code, "bash", path)
		cmd.Env = shellEnv(t)
		cmd.Dir = t.TempDir()
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("bash -c %q: %v\n%s", code, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	if got, want := run(t, "complete -p chaperone"), "complete -o default -F _chaperone chaperone"; got != want {
		t.Errorf("complete -p chaperone = %q, want %q", got, want)
	}

	cases, _ := completionCases(t)
	cases = append(cases,
		completionCase{[]string{"chaperone", "tools", "list", "x"}, ""},
		completionCase{[]string{"chaperone", "version", ""}, ""}, // file names, from -o default
	)
	for _, tt := range cases {
		t.Run(strings.Join(tt.words, "_"), func(t *testing.T) {
			t.Parallel()
			code := "COMP_WORDS=('" + strings.Join(tt.words, "' '") + `'); COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); _chaperone; echo "${COMPREPLY[*]}"`
			if got := run(t, code); got != tt.want {
				t.Errorf("completing %q = %q, want %q", tt.words, got, tt.want)
			}
		})
	}

	t.Run("every command", func(t *testing.T) {
		t.Parallel()
		got := strings.Fields(run(t, `COMP_WORDS=(chaperone ''); COMP_CWORD=1; _chaperone; echo "${COMPREPLY[*]}"`))
		if diff := cmp.Diff(topLevel(usage), got); diff != "" {
			t.Errorf("completing \"chaperone \" mismatch (-want +got):\n%s", diff)
		}
	})
}

func TestZshCompletion(t *testing.T) {
	t.Parallel()
	u := newUsageTree(t)
	path := script(t, "zsh")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	src := string(b)
	for _, want := range []string{
		"#compdef chaperone\n",
		"\n  compdef _chaperone chaperone\n",
		"\n    compadd -- " + strings.Join(topLevel(usage), " ") + "\n",
		"\n    tools) subs=(" + strings.Join(u.subs("tools"), " ") + ") ;;\n",
		"\n      tools/approve) flags=(" + strings.Join(u.flags("tools", "approve"), " ") + ") ;;\n",
		"\n      serve/) flags=(" + strings.Join(u.flags("serve", ""), " ") + ") ;;\n",
	} {
		if !strings.Contains(src, want) {
			t.Errorf("zsh script lacks %q", want)
		}
	}

	zsh := lookShell(t, "zsh")
	if out, err := exec.Command(zsh, "-n", path).CombinedOutput(); err != nil {
		t.Fatalf("zsh -n: %v\n%s", err, out)
	}
	// Outside a completion widget, compadd and _files are stand-ins that print what they
	// are given; compadd's own filtering by $PREFIX is zsh's, not the script's.
	const stubs = `compdef() { print -r -- "compdef $*" }; compadd() { shift; print -r -- "$*" }; _files() { print -r -- FILES }; `
	run := func(t *testing.T, code string) string {
		t.Helper()
		cmd := exec.Command(zsh, "-f", "-c", code, "zsh", path)
		cmd.Env = shellEnv(t)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("zsh -c %q: %v\n%s", code, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	cases, all := completionCases(t)
	for i := range cases {
		cases[i].want = all[i]
	}
	cases = append(cases, completionCase{[]string{"chaperone", "version", ""}, "FILES"})
	for _, tt := range cases {
		t.Run(strings.Join(tt.words, "_"), func(t *testing.T) {
			t.Parallel()
			code := stubs + `source "$1"; words=('` + strings.Join(tt.words, "' '") + `'); CURRENT=${#words}; PREFIX='` + tt.words[len(tt.words)-1] + `'; _chaperone`
			want := strings.TrimSpace("compdef _chaperone chaperone\n" + tt.want)
			if got := run(t, code); got != want {
				t.Errorf("completing %q = %q, want %q", tt.words, got, want)
			}
		})
	}

	t.Run("autoload from fpath", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "_chaperone"), b, 0o644); err != nil {
			t.Fatal(err)
		}
		if got := run(t, `fpath=(`+dir+` $fpath); autoload -Uz compinit; compinit -u -D; print -r -- ${_comps[chaperone]}`); got != "_chaperone" {
			t.Errorf("after compinit, _comps[chaperone] = %q, want _chaperone", got)
		}
		got := run(t, stubs+`fpath=(`+dir+` $fpath); autoload -Uz _chaperone; words=(chaperone tools ''); CURRENT=3; PREFIX=''; _chaperone`)
		if want := strings.Join(u.subs("tools"), " "); got != want {
			t.Errorf("autoloaded _chaperone for \"chaperone tools \" = %q, want %q", got, want)
		}
	})
}

func TestFishCompletion(t *testing.T) {
	t.Parallel()
	u := newUsageTree(t)
	path := script(t, "fish")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	src := string(b)
	for _, want := range []string{
		"\ncomplete -c chaperone -f -n 'test (count (commandline -opc)) -eq 1' -a '" + strings.Join(topLevel(usage), " ") + "'\n",
		"\ncomplete -c chaperone -f -n '__chaperone_needs_sub tools' -a '" + strings.Join(u.subs("tools"), " ") + "'\n",
		"\ncomplete -c chaperone -n '__chaperone_in tools approve' " + fishFlags(u.flags("tools", "approve")) + "\n",
		"\ncomplete -c chaperone -n '__chaperone_in audit tail' ",
		"\ncomplete -c chaperone -n '__chaperone_in bench \"\" \"" + strings.Join(u.subs("bench"), " ") + "\"' -l duration",
	} {
		if !strings.Contains(src, want) {
			t.Errorf("fish script lacks %q", want)
		}
	}
	if got := fishFlags([]string{"--by", "-n", "-ab"}); got != "-l by -s n -o ab" {
		t.Errorf("fishFlags = %q, want \"-l by -s n -o ab\"", got)
	}

	fish := lookShell(t, "fish")
	if out, err := exec.Command(fish, "-n", path).CombinedOutput(); err != nil {
		t.Fatalf("fish -n: %v\n%s", err, out)
	}
	cases, _ := completionCases(t)
	for _, tt := range cases {
		line := strings.Join(tt.words, " ")
		t.Run(line, func(t *testing.T) {
			t.Parallel()
			cmd := exec.Command(fish, "-c", `source $argv[1]; complete -C $argv[2]`, path, line)
			cmd.Env = shellEnv(t)
			cmd.Dir = t.TempDir() // empty: no file names among the candidates
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("fish complete -C %q: %v\n%s", line, err, out)
			}
			var got []string
			for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
				if name, _, _ := strings.Cut(l, "\t"); name != "" {
					got = append(got, name)
				}
			}
			slices.Sort(got)
			want := strings.Fields(tt.want)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Errorf("fish complete -C %q = %q, want %q", line, got, want)
			}
		})
	}
}

func FuzzCommandTree(f *testing.F) {
	f.Add(usage)
	f.Add("  chaperone a b|c --x [-y Y]\n      (--z | --w)\n\n  chaperone a b --v\n")
	f.Add("  chaperone a|b\n  chaperone  \n  chaperone a $(rm) --`x`\n  chaperone x '|' --\"q\n")
	f.Fuzz(func(t *testing.T, text string) {
		tree := commandTree(text)
		for i, c := range tree {
			if !wordRE.MatchString(c.name) || i > 0 && tree[i-1].name >= c.name {
				t.Fatalf("command %q out of order or unsafe", c.name)
			}
			checkFlags(t, c.name, c.flags)
			for j, s := range c.subs {
				if !wordRE.MatchString(s.name) || j > 0 && c.subs[j-1].name >= s.name {
					t.Fatalf("subcommand %q of %q out of order or unsafe", s.name, c.name)
				}
				checkFlags(t, c.name+" "+s.name, s.flags)
			}
		}
		for _, write := range completionShells {
			var out bytes.Buffer
			write(&out, tree)
			for _, r := range out.String() {
				if r >= 0x80 {
					t.Fatalf("script has non-ASCII %q", r)
				}
			}
		}
	})
}

func checkFlags(t *testing.T, where string, flags []string) {
	t.Helper()
	for i, f := range flags {
		if !flagTok.MatchString(f) || i > 0 && flags[i-1] >= f {
			t.Fatalf("%s: flag %q out of order, repeated or unsafe", where, f)
		}
	}
}
