package cli

import (
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"
)

// command is one command of the command line, as the usage text lists it.
type command struct {
	name  string
	flags []string // sorted, unique: "--config", "-n"
	subs  []subcommand
}

// subcommand is one subcommand of a command.
type subcommand struct {
	name  string
	flags []string
}

var (
	wordRE  = regexp.MustCompile(`^[a-z][a-z0-9-]{0,63}$`)
	subsRE  = regexp.MustCompile(`^[a-z][a-z0-9-]{0,63}(\|[a-z][a-z0-9-]{0,63})*$`)
	flagTok = regexp.MustCompile(`^--?[a-z][a-z0-9-]{0,63}$`)
)

// commandTree reads the commands, subcommands and flags out of a usage text such as
// [usage], so that completion follows the usage text and cannot drift from it. An entry is
// a line "  chaperone CMD [SUB|SUB2] ..." and the indented lines after it; SUB is a
// lower-case word (alternatives separated by "|") right after CMD; the flags are the
// "--flag" and "-f" words anywhere in the entry. Names that are not plain lower-case words
// are skipped, so nothing the tree holds needs quoting in a shell script.
func commandTree(text string) []command {
	var (
		tree []command
		cur  []*[]string // where the current entry's flags go
	)
	find := func(name string) *command {
		for i := range tree {
			if tree[i].name == name {
				return &tree[i]
			}
		}
		tree = append(tree, command{name: name})
		return &tree[len(tree)-1]
	}
	addFlags := func(line string) {
		for _, tok := range strings.Fields(line) {
			tok = strings.TrimRight(strings.TrimLeft(tok, "[(|"), "])|:,.;")
			if !flagTok.MatchString(tok) {
				continue
			}
			for _, fl := range cur {
				if !slices.Contains(*fl, tok) {
					*fl = append(*fl, tok)
				}
			}
		}
	}
	for line := range strings.SplitSeq(text, "\n") {
		rest, entry := strings.CutPrefix(line, "  chaperone ")
		if entry && (rest == "" || rest[0] == ' ') {
			// "  chaperone" followed by blanks: no command word.
			cur = nil
			continue
		}
		if !entry {
			if strings.HasPrefix(line, " ") && strings.TrimSpace(line) != "" {
				addFlags(line)
			} else {
				cur = nil
			}
			continue
		}
		words := strings.Fields(rest)
		if len(words) == 0 || !wordRE.MatchString(words[0]) {
			cur = nil
			continue
		}
		c := find(words[0])
		cur = nil
		if len(words) > 1 && subsRE.MatchString(words[1]) {
			names := strings.Split(words[1], "|")
			for _, name := range names {
				if !slices.ContainsFunc(c.subs, func(s subcommand) bool { return s.name == name }) {
					c.subs = append(c.subs, subcommand{name: name})
				}
			}
			// Pointers into c.subs only once it has stopped growing for this entry.
			for _, name := range names {
				i := slices.IndexFunc(c.subs, func(s subcommand) bool { return s.name == name })
				cur = append(cur, &c.subs[i].flags)
			}
		} else {
			cur = append(cur, &c.flags)
		}
		addFlags(strings.Join(words[1:], " "))
	}
	slices.SortFunc(tree, func(a, b command) int { return strings.Compare(a.name, b.name) })
	for i := range tree {
		slices.Sort(tree[i].flags)
		slices.SortFunc(tree[i].subs, func(a, b subcommand) int { return strings.Compare(a.name, b.name) })
		for j := range tree[i].subs {
			slices.Sort(tree[i].subs[j].flags)
		}
	}
	return tree
}

// completionShells are the shells `chaperone completion` writes scripts for.
var completionShells = map[string]func(io.Writer, []command){
	"bash": bashCompletion,
	"zsh":  zshCompletion,
	"fish": fishCompletion,
}

// completionCmd is `chaperone completion bash|zsh|fish`: it prints the shell's completion
// script for the commands, subcommands and flags of the usage text.
func completionCmd(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("completion", stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, "usage: chaperone completion bash|zsh|fish\n\n"+
			"Prints a completion script. Load it in the current shell with\n"+
			"  bash: source <(chaperone completion bash)\n"+
			"  zsh:  source <(chaperone completion zsh)   (after compinit)\n"+
			"  fish: chaperone completion fish | source\n")
	}
	// The shell may come before the flags (`completion bash -h`) as well as after them.
	var shell string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		shell, args = args[0], args[1:]
	}
	maxArgs := 1
	if shell != "" {
		maxArgs = 0
	}
	if err := parse(fs, args, maxArgs); err != nil {
		return err
	}
	if shell == "" {
		shell = fs.Arg(0)
	}
	if shell == "" {
		return usageError{"missing shell: want bash, zsh or fish"}
	}
	write, ok := completionShells[shell]
	if !ok {
		return usageError{fmt.Sprintf("unknown shell %q: want bash, zsh or fish", shell)}
	}
	write(stdout, commandTree(usage))
	return nil
}

func commandNames(tree []command) string {
	names := make([]string, len(tree))
	for i, c := range tree {
		names[i] = c.name
	}
	return strings.Join(names, " ")
}

func subNames(c command) string {
	names := make([]string, len(c.subs))
	for i, s := range c.subs {
		names[i] = s.name
	}
	return strings.Join(names, " ")
}

func bashCompletion(w io.Writer, tree []command) {
	var b strings.Builder
	b.WriteString(`# bash completion for chaperone
# Load it in the current shell:  source <(chaperone completion bash)
# or install it for everyone:    chaperone completion bash > /etc/bash_completion.d/chaperone

# shellcheck disable=SC2207
_chaperone() {
    local cur=${COMP_WORDS[COMP_CWORD]}
    local cmd=${COMP_WORDS[1]-} sub="" subs="" flags=""
    COMPREPLY=()
    if [[ $COMP_CWORD -eq 1 ]]; then
`)
	fmt.Fprintf(&b, "        COMPREPLY=($(compgen -W %q -- \"$cur\"))\n", commandNames(tree))
	b.WriteString(`        return 0
    fi
    case $cmd in
`)
	for _, c := range tree {
		if len(c.subs) > 0 {
			fmt.Fprintf(&b, "        %s) subs=%q ;;\n", c.name, subNames(c))
		}
	}
	b.WriteString(`    esac
    if [[ $COMP_CWORD -eq 2 && -n $subs && $cur != -* ]]; then
        COMPREPLY=($(compgen -W "$subs" -- "$cur"))
        return 0
    fi
    if [[ -n $subs && $COMP_CWORD -gt 2 ]]; then
        case " $subs " in
            *" ${COMP_WORDS[2]} "*) sub=${COMP_WORDS[2]} ;;
        esac
    fi
    if [[ $cur == -* ]]; then
        case $cmd/$sub in
`)
	flagCases(&b, tree, func(key, flags string) string { return fmt.Sprintf("            %s) flags=%q ;;\n", key, flags) })
	b.WriteString(`        esac
        COMPREPLY=($(compgen -W "$flags" -- "$cur"))
    fi
    return 0
}
complete -o default -F _chaperone chaperone
`)
	io.WriteString(w, b.String())
}

// flagCases writes, for each command and subcommand with flags, the shell case line
// line returns for its key ("cmd/" or "cmd/sub") and its flags, space-separated.
func flagCases(b *strings.Builder, tree []command, line func(key, flags string) string) {
	for _, c := range tree {
		if len(c.flags) > 0 {
			b.WriteString(line(c.name+"/", strings.Join(c.flags, " ")))
		}
		for _, s := range c.subs {
			if len(s.flags) > 0 {
				b.WriteString(line(c.name+"/"+s.name, strings.Join(s.flags, " ")))
			}
		}
	}
}

func zshCompletion(w io.Writer, tree []command) {
	var b strings.Builder
	b.WriteString(`#compdef chaperone
# zsh completion for chaperone
# Load it in the current shell (after compinit):  source <(chaperone completion zsh)
# or install it as _chaperone in a directory of $fpath:
#   chaperone completion zsh > "${fpath[1]}/_chaperone"

_chaperone() {
  local cmd=${words[2]} sub=
  local -a subs flags
  if (( CURRENT == 2 )); then
`)
	fmt.Fprintf(&b, "    compadd -- %s\n", commandNames(tree))
	b.WriteString(`    return
  fi
  case $cmd in
`)
	for _, c := range tree {
		if len(c.subs) > 0 {
			fmt.Fprintf(&b, "    %s) subs=(%s) ;;\n", c.name, subNames(c))
		}
	}
	b.WriteString(`  esac
  if (( CURRENT == 3 && ${#subs} )) && [[ $PREFIX != -* ]]; then
    compadd -- $subs
    return
  fi
  if (( CURRENT > 3 && ${subs[(Ie)${words[3]}]} )); then
    sub=${words[3]}
  fi
  if [[ $PREFIX == -* ]]; then
    case $cmd/$sub in
`)
	flagCases(&b, tree, func(key, flags string) string { return fmt.Sprintf("      %s) flags=(%s) ;;\n", key, flags) })
	b.WriteString(`    esac
    compadd -- $flags
    return
  fi
  _files
}

if [[ $funcstack[1] == _chaperone ]]; then
  _chaperone "$@"
else
  compdef _chaperone chaperone
fi
`)
	io.WriteString(w, b.String())
}

func fishCompletion(w io.Writer, tree []command) {
	var b strings.Builder
	b.WriteString(`# fish completion for chaperone
# Load it in the current shell:  chaperone completion fish | source
# or install it:  chaperone completion fish > ~/.config/fish/completions/chaperone.fish

# __chaperone_in CMD SUB SUBS: the command line so far is "chaperone CMD SUB ..."; with SUB
# empty, "chaperone CMD" not followed by one of the space-separated SUBS.
function __chaperone_in
    set -l w (commandline -opc)
    test (count $w) -ge 2; and test "$w[2]" = "$argv[1]"; or return 1
    if test -n "$argv[2]"
        test (count $w) -ge 3; and test "$w[3]" = "$argv[2]"
        return
    end
    test (count $w) -lt 3; and return 0
    not contains -- "$w[3]" (string split ' ' -- "$argv[3]")
end

# __chaperone_needs_sub CMD: the next word is CMD's subcommand.
function __chaperone_needs_sub
    set -l w (commandline -opc)
    test (count $w) -eq 2; and test "$w[2]" = "$argv[1]"
end

`)
	fmt.Fprintf(&b, "complete -c chaperone -f -n 'test (count (commandline -opc)) -eq 1' -a '%s'\n", commandNames(tree))
	for _, c := range tree {
		subs := subNames(c)
		if len(c.subs) > 0 {
			fmt.Fprintf(&b, "complete -c chaperone -f -n '__chaperone_needs_sub %s' -a '%s'\n", c.name, subs)
		}
		if len(c.flags) > 0 {
			fmt.Fprintf(&b, "complete -c chaperone -n '__chaperone_in %s \"\" \"%s\"' %s\n", c.name, subs, fishFlags(c.flags))
		}
		for _, s := range c.subs {
			if len(s.flags) > 0 {
				fmt.Fprintf(&b, "complete -c chaperone -n '__chaperone_in %s %s' %s\n", c.name, s.name, fishFlags(s.flags))
			}
		}
	}
	io.WriteString(w, b.String())
}

// fishFlags turns flags into fish's options: -l for --long, -s for -x, -o for -long.
func fishFlags(flags []string) string {
	var opts []string
	for _, f := range flags {
		switch name := strings.TrimLeft(f, "-"); {
		case strings.HasPrefix(f, "--"):
			opts = append(opts, "-l "+name)
		case len(name) == 1:
			opts = append(opts, "-s "+name)
		default:
			opts = append(opts, "-o "+name)
		}
	}
	return strings.Join(opts, " ")
}
