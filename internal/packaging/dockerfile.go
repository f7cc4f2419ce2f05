package packaging

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// MaxDockerfileBytes bounds the Dockerfile [ParseDockerfile] reads.
const MaxDockerfileBytes = 1 << 20

// maxInstructions bounds the instructions of one Dockerfile.
const maxInstructions = 4096

// Dockerfile is a parsed Dockerfile: the ARGs before the first FROM, then the build stages.
type Dockerfile struct {
	// Args are the global ARG instructions, before the first FROM.
	Args []Instruction
	// Stages are the build stages in order; the last one is the image.
	Stages []Stage
}

// Stage is one build stage: a FROM and the instructions up to the next FROM.
type Stage struct {
	// Index is the stage's position, from 0.
	Index int
	// Name is the stage's name from "AS name", lower case; empty when unnamed.
	Name string
	// Base is the image or stage the stage starts from, as written.
	Base string
	// Platform is the value of FROM's --platform flag, if any.
	Platform string
	// Line is the line of the FROM instruction.
	Line int
	// Instructions are the stage's instructions after FROM.
	Instructions []Instruction
}

// Instruction is one logical instruction, its continuation lines joined.
type Instruction struct {
	// Line is the line the instruction starts on, from 1.
	Line int
	// Cmd is the instruction in upper case: "RUN", "COPY", ...
	Cmd string
	// Flags are the leading --name[=value] flags of FROM, COPY, ADD and RUN.
	Flags []Flag
	// Exec reports the JSON exec form (RUN, CMD, ENTRYPOINT, COPY, ADD, VOLUME).
	Exec bool
	// Args are the arguments: the JSON array's elements in exec form; the command text as
	// one element for RUN, CMD and ENTRYPOINT in shell form; otherwise the words.
	Args []string
	// Pairs are the key/value pairs of ARG, ENV and LABEL, in order. An ARG without a
	// default has an empty value and NoValue set.
	Pairs []Pair
}

// Flag is one --name[=value] flag of an instruction.
type Flag struct {
	Name, Value string
}

// Pair is one key=value of ARG, ENV or LABEL.
type Pair struct {
	Key, Value string
	// NoValue is set for an ARG declared without a default.
	NoValue bool
}

// Flag returns the value of the instruction's flag name and whether it is present.
func (in Instruction) Flag(name string) (string, bool) {
	for _, f := range in.Flags {
		if f.Name == name {
			return f.Value, true
		}
	}
	return "", false
}

// Final returns the last stage, the one the image is made of, or nil when there is none.
func (d *Dockerfile) Final() *Stage {
	if len(d.Stages) == 0 {
		return nil
	}
	return &d.Stages[len(d.Stages)-1]
}

// ParseError is a problem at a line of a file.
type ParseError struct {
	// Line is the line, from 1; 0 for the file as a whole.
	Line int
	// Msg says what is wrong.
	Msg string
}

func (e *ParseError) Error() string {
	if e.Line == 0 {
		return e.Msg
	}
	return fmt.Sprintf("line %d: %s", e.Line, e.Msg)
}

func errAt(line int, format string, args ...any) error {
	return &ParseError{Line: line, Msg: fmt.Sprintf(format, args...)}
}

var (
	directiveRE = regexp.MustCompile(`^#\s*([a-zA-Z][a-zA-Z0-9_-]*)\s*=\s*(.*?)\s*$`)
	stageNameRE = regexp.MustCompile(`^[a-z][a-z0-9_.-]*$`)
	argNameRE   = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	flagRE      = regexp.MustCompile(`^--([a-z][a-z0-9-]*)(?:=(.*))?$`)
	portRE      = regexp.MustCompile(`^([0-9]{1,5})(?:-([0-9]{1,5}))?(?:/(tcp|udp|sctp))?$`)
)

// instructions lists the instructions the parser knows, with the flags each takes.
var instructions = map[string][]string{
	"FROM": {"platform"},
	"COPY": {"from", "chown", "chmod", "link", "parents", "exclude"},
	"ADD":  {"chown", "chmod", "link", "keep-git-dir", "checksum", "exclude"},
	"RUN":  {"mount", "network", "security"},
	"ARG":  nil, "WORKDIR": nil, "ENV": nil, "USER": nil, "EXPOSE": nil,
	"VOLUME": nil, "ENTRYPOINT": nil, "CMD": nil, "LABEL": nil,
}

// ParseDockerfile parses a Dockerfile. It rejects input over [MaxDockerfileBytes], an
// escape directive other than the default, unknown instructions, and malformed arguments;
// errors are [*ParseError]s naming the line.
func ParseDockerfile(data []byte) (*Dockerfile, error) {
	if len(data) > MaxDockerfileBytes {
		return nil, &ParseError{Msg: fmt.Sprintf("larger than %d bytes", MaxDockerfileBytes)}
	}
	data = bytes.TrimPrefix(data, []byte("\ufeff"))
	lines := strings.Split(strings.ReplaceAll(string(data), "\r\n", "\n"), "\n")

	// Parser directives: comments of the form "# name=value" at the very top.
	for i, l := range lines {
		m := directiveRE.FindStringSubmatch(l)
		if m == nil {
			break
		}
		if strings.EqualFold(m[1], "escape") && m[2] != `\` {
			return nil, errAt(i+1, "escape directive %q is not supported; only the default \\", m[2])
		}
	}

	d := &Dockerfile{}
	count := 0
	for i := 0; i < len(lines); i++ {
		start := i + 1
		if t := strings.TrimLeft(lines[i], " \t"); t == "" || t[0] == '#' {
			continue
		}
		// Join continuation lines; comment and blank lines inside are dropped, as Docker does.
		var text strings.Builder
		part, more := cutContinuation(lines[i])
		text.WriteString(part)
		for more && i+1 < len(lines) {
			i++
			if t := strings.TrimLeft(lines[i], " \t"); t == "" || t[0] == '#' {
				continue
			}
			part, more = cutContinuation(lines[i])
			text.WriteString(part)
		}
		count++
		if count > maxInstructions {
			return nil, errAt(start, "more than %d instructions", maxInstructions)
		}
		in, err := parseInstruction(start, strings.TrimLeft(text.String(), " \t"))
		if err != nil {
			return nil, err
		}
		if err := d.add(in); err != nil {
			return nil, err
		}
	}
	if len(d.Stages) == 0 {
		return nil, &ParseError{Msg: "no FROM instruction"}
	}
	return d, nil
}

// cutContinuation removes a trailing escape character (then only blanks), which continues
// the instruction on the next line, and reports whether there was one.
func cutContinuation(line string) (string, bool) {
	t := strings.TrimRight(line, " \t")
	if strings.HasSuffix(t, `\`) {
		return t[:len(t)-1], true
	}
	return line, false
}

// add appends in to the Dockerfile: a FROM starts a stage; before the first FROM only ARG
// may appear.
func (d *Dockerfile) add(in Instruction) error {
	if in.Cmd == "FROM" {
		st := Stage{Index: len(d.Stages), Line: in.Line, Base: in.Args[0]}
		st.Platform, _ = in.Flag("platform")
		if len(in.Args) == 3 {
			st.Name = strings.ToLower(in.Args[2])
			for _, prev := range d.Stages {
				if prev.Name == st.Name {
					return errAt(in.Line, "stage name %q already used at line %d", st.Name, prev.Line)
				}
			}
		}
		d.Stages = append(d.Stages, st)
		return nil
	}
	if len(d.Stages) == 0 {
		if in.Cmd != "ARG" {
			return errAt(in.Line, "%s before the first FROM (only ARG may come first)", in.Cmd)
		}
		d.Args = append(d.Args, in)
		return nil
	}
	st := &d.Stages[len(d.Stages)-1]
	st.Instructions = append(st.Instructions, in)
	return nil
}

func parseInstruction(line int, text string) (Instruction, error) {
	word, rest := cutBlank(text)
	in := Instruction{Line: line, Cmd: strings.ToUpper(word)}
	flags, known := instructions[in.Cmd]
	if !known {
		return in, errAt(line, "unsupported instruction %q", truncate(word))
	}
	rest = strings.TrimSpace(rest)
	if len(flags) > 0 {
		for strings.HasPrefix(rest, "--") {
			tok, after := cutBlank(rest)
			m := flagRE.FindStringSubmatch(tok)
			if m == nil {
				return in, errAt(line, "%s: malformed flag %q", in.Cmd, truncate(tok))
			}
			if !slices.Contains(flags, m[1]) {
				return in, errAt(line, "%s does not take --%s", in.Cmd, m[1])
			}
			in.Flags = append(in.Flags, Flag{Name: m[1], Value: m[2]})
			rest = strings.TrimSpace(after)
		}
	}
	if rest == "" {
		return in, errAt(line, "%s has no arguments", in.Cmd)
	}
	var err error
	switch in.Cmd {
	case "FROM":
		err = in.parseFrom(rest)
	case "ARG":
		err = in.parseArg(rest)
	case "ENV":
		err = in.parseEnv(rest)
	case "LABEL":
		err = in.parsePairs(rest, false)
	case "RUN", "CMD", "ENTRYPOINT":
		if in.Exec, in.Args, err = execForm(rest); err == nil && !in.Exec {
			in.Args = []string{rest}
		}
	case "COPY", "ADD":
		err = in.parseCopy(rest)
	case "VOLUME":
		if in.Exec, in.Args, err = execForm(rest); err == nil && !in.Exec {
			in.Args, err = splitWords(rest)
		}
	case "WORKDIR":
		in.Args = []string{rest}
	case "USER":
		in.Args = strings.Fields(rest)
		if len(in.Args) != 1 {
			err = fmt.Errorf("USER takes one user[:group], got %d words", len(in.Args))
		}
	case "EXPOSE":
		err = in.parseExpose(rest)
	}
	if err != nil {
		return in, errAt(line, "%v", err)
	}
	return in, nil
}

func (in *Instruction) parseFrom(rest string) error {
	in.Args = strings.Fields(rest)
	switch {
	case len(in.Args) == 1:
	case len(in.Args) == 3 && strings.EqualFold(in.Args[1], "AS"):
		if !stageNameRE.MatchString(strings.ToLower(in.Args[2])) {
			return fmt.Errorf("FROM: invalid stage name %q", truncate(in.Args[2]))
		}
	default:
		return fmt.Errorf("FROM takes an image and an optional AS name, got %d words", len(in.Args))
	}
	return nil
}

func (in *Instruction) parseArg(rest string) error {
	words, err := splitWords(rest)
	if err != nil {
		return fmt.Errorf("ARG: %w", err)
	}
	for _, w := range words {
		k, v, hasValue := strings.Cut(w, "=")
		if !argNameRE.MatchString(k) {
			return fmt.Errorf("ARG: invalid name %q", truncate(k))
		}
		in.Pairs = append(in.Pairs, Pair{Key: k, Value: v, NoValue: !hasValue})
	}
	return nil
}

func (in *Instruction) parseEnv(rest string) error {
	first, after := cutBlank(rest)
	if !strings.Contains(first, "=") {
		// The legacy form: ENV KEY the rest of the line.
		if !argNameRE.MatchString(first) {
			return fmt.Errorf("ENV: invalid name %q", truncate(first))
		}
		after = strings.TrimSpace(after)
		if after == "" {
			return fmt.Errorf("ENV %s has no value", first)
		}
		in.Pairs = []Pair{{Key: first, Value: after}}
		return nil
	}
	return in.parsePairs(rest, true)
}

// parsePairs reads key=value words; names says whether keys must be variable names.
func (in *Instruction) parsePairs(rest string, names bool) error {
	words, err := splitWords(rest)
	if err != nil {
		return fmt.Errorf("%s: %w", in.Cmd, err)
	}
	for _, w := range words {
		k, v, ok := strings.Cut(w, "=")
		if !ok || k == "" {
			return fmt.Errorf("%s: %q is not key=value", in.Cmd, truncate(w))
		}
		if names && !argNameRE.MatchString(k) {
			return fmt.Errorf("%s: invalid name %q", in.Cmd, truncate(k))
		}
		in.Pairs = append(in.Pairs, Pair{Key: k, Value: v})
	}
	return nil
}

func (in *Instruction) parseCopy(rest string) error {
	var err error
	if in.Exec, in.Args, err = execForm(rest); err != nil {
		return err
	}
	if !in.Exec {
		if in.Args, err = splitWords(rest); err != nil {
			return fmt.Errorf("%s: %w", in.Cmd, err)
		}
	}
	if len(in.Args) < 2 {
		return fmt.Errorf("%s needs a source and a destination", in.Cmd)
	}
	return nil
}

func (in *Instruction) parseExpose(rest string) error {
	in.Args = strings.Fields(rest)
	for _, p := range in.Args {
		m := portRE.FindStringSubmatch(p)
		if m == nil {
			return fmt.Errorf("EXPOSE: %q is not port[-port][/tcp|udp|sctp]", truncate(p))
		}
		for _, n := range m[1:3] {
			if n == "" {
				continue
			}
			if v, _ := strconv.Atoi(n); v < 1 || v > 65535 {
				return fmt.Errorf("EXPOSE: port %s out of range 1-65535", n)
			}
		}
	}
	return nil
}

// execForm reports whether rest is a JSON array of strings, and its elements. Text that
// starts with "[" but is not such an array is an error rather than Docker's silent fallback
// to the shell form, which is never what was meant.
func execForm(rest string) (bool, []string, error) {
	if !strings.HasPrefix(rest, "[") {
		return false, nil, nil
	}
	var args []string
	if err := json.Unmarshal([]byte(rest), &args); err != nil {
		return false, nil, errors.New("starts with [ but is not a JSON array of strings")
	}
	if len(args) == 0 {
		return false, nil, errors.New("empty JSON array")
	}
	return true, args, nil
}

// splitWords splits s into words as Docker does for ARG, ENV, LABEL and COPY: blanks
// separate words; double quotes keep blanks and allow \" and \\; single quotes keep
// everything; a backslash outside quotes escapes the next character.
func splitWords(s string) ([]string, error) {
	var (
		words  []string
		cur    strings.Builder
		inWord bool
	)
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ' ' || c == '\t':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		case c == '\\':
			inWord = true
			if i+1 < len(s) {
				i++
				cur.WriteByte(s[i])
			} else {
				cur.WriteByte(c)
			}
		case c == '\'':
			inWord = true
			end := strings.IndexByte(s[i+1:], '\'')
			if end < 0 {
				return nil, errors.New("unterminated single quote")
			}
			cur.WriteString(s[i+1 : i+1+end])
			i += end + 1
		case c == '"':
			inWord = true
			closed := false
			for i++; i < len(s); i++ {
				if s[i] == '\\' && i+1 < len(s) && (s[i+1] == '"' || s[i+1] == '\\') {
					i++
					cur.WriteByte(s[i])
					continue
				}
				if s[i] == '"' {
					closed = true
					break
				}
				cur.WriteByte(s[i])
			}
			if !closed {
				return nil, errors.New("unterminated double quote")
			}
		default:
			inWord = true
			cur.WriteByte(c)
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, nil
}

// cutBlank splits s at its first space or tab.
func cutBlank(s string) (before, after string) {
	if i := strings.IndexAny(s, " \t"); i >= 0 {
		return s[:i], s[i+1:]
	}
	return s, ""
}

// truncate shortens s for an error message.
func truncate(s string) string {
	const n = 40
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

var (
	goBuildRE    = regexp.MustCompile(`(^|[\s;&|(])go\s+build(\s|$)`)
	inlineCGORE  = regexp.MustCompile(`(?:^|\s)CGO_ENABLED=(\S*)`)
	numericUser  = regexp.MustCompile(`^([0-9]+)(?::([0-9]+))?$`)
	secretValues = regexp.MustCompile(`-----BEGIN|^gh[pousr]_[A-Za-z0-9]{20,}|^AKIA[0-9A-Z]{16}$|^sk-[A-Za-z0-9_-]{20,}|^xox[abpr]-`)
)

// secretWords are the parts of a variable name (split at "_" and "-") that say it holds a
// credential.
var secretWords = []string{
	"SECRET", "SECRETS", "TOKEN", "TOKENS", "PASSWORD", "PASSWD", "PASS", "APIKEY", "KEY", "KEYS",
	"CREDENTIAL", "CREDENTIALS", "PRIVATE", "AUTH",
}

// CheckDockerfile applies Chaperone's rules for its image to d and returns every breach,
// each naming the line:
//   - the image is built in an earlier stage (at least two stages);
//   - the final stage has no RUN (it needs no shell), an ENTRYPOINT in exec form, a CMD
//     (if any) in exec form, and runs as a numeric, non-zero USER (and group, if given);
//   - some stage runs `go build`, and every `go build` runs with CGO_ENABLED=0 (from ENV or
//     inline) and -trimpath;
//   - ADD never fetches a URL or a git repository;
//   - no ENV or ARG is named like a credential or holds a value shaped like one;
//   - every COPY --from names an earlier stage.
func CheckDockerfile(d *Dockerfile) []error {
	var errs []error
	bad := func(line int, format string, args ...any) {
		errs = append(errs, errAt(line, format, args...))
	}
	if len(d.Stages) < 2 {
		bad(0, "single-stage build: the image must be built in an earlier stage")
	}
	for _, in := range d.Args {
		checkSecrets(in, bad)
	}

	builds := 0
	envAtEnd := make([]map[string]string, len(d.Stages))
	for si, st := range d.Stages {
		env := map[string]string{}
		if base := stageIndex(d, si, st.Base); base >= 0 {
			maps.Copy(env, envAtEnd[base])
		}
		for _, in := range st.Instructions {
			checkSecrets(in, bad)
			switch in.Cmd {
			case "ENV":
				for _, p := range in.Pairs {
					env[p.Key] = p.Value
				}
			case "RUN":
				text := strings.Join(in.Args, " ")
				if !goBuildRE.MatchString(text) {
					continue
				}
				builds++
				cgo := env["CGO_ENABLED"]
				if m := inlineCGORE.FindAllStringSubmatch(text, -1); m != nil {
					cgo = m[len(m)-1][1]
				}
				if cgo != "0" {
					bad(in.Line, "go build runs with CGO_ENABLED=%q, want 0 (a static binary)", cgo)
				}
				if !strings.Contains(text, "-trimpath") {
					bad(in.Line, "go build runs without -trimpath")
				}
			case "ADD":
				for _, src := range in.Args[:len(in.Args)-1] {
					if strings.Contains(src, "://") || strings.HasPrefix(src, "git@") {
						bad(in.Line, "ADD fetches %q: download in a build stage and check its digest instead", truncate(src))
					}
				}
			case "COPY":
				if from, ok := in.Flag("from"); ok {
					if i := stageIndex(d, si, from); i < 0 {
						bad(in.Line, "COPY --from=%q names no earlier stage", truncate(from))
					}
				}
			}
		}
		envAtEnd[si] = env
	}
	if builds == 0 {
		bad(0, "no RUN runs go build")
	}

	final := d.Final()
	if final == nil {
		return errs
	}
	var user, entrypoint *Instruction
	for i, in := range final.Instructions {
		switch in.Cmd {
		case "RUN":
			bad(in.Line, "RUN in the final stage: the image has no shell and needs none")
		case "USER":
			user = &final.Instructions[i]
		case "ENTRYPOINT":
			entrypoint = &final.Instructions[i]
		case "CMD":
			if !in.Exec {
				bad(in.Line, "CMD in shell form: use the exec form [\"...\"]")
			}
		}
	}
	switch {
	case entrypoint == nil:
		bad(final.Line, "the final stage has no ENTRYPOINT")
	case !entrypoint.Exec:
		bad(entrypoint.Line, "ENTRYPOINT in shell form: use the exec form [\"...\"]")
	}
	if user == nil {
		bad(final.Line, "the final stage sets no USER: the image would run as root")
	} else if m := numericUser.FindStringSubmatch(user.Args[0]); m == nil {
		bad(user.Line, "USER %q is not numeric uid[:gid] (a name cannot be checked against runAsNonRoot)", truncate(user.Args[0]))
	} else if strings.TrimLeft(m[1], "0") == "" || m[2] != "" && strings.TrimLeft(m[2], "0") == "" {
		bad(user.Line, "USER %s is root", user.Args[0])
	}
	return errs
}

// stageIndex resolves ref, a stage name or index used in stage cur, to an earlier stage's
// index, or -1 when it names none.
func stageIndex(d *Dockerfile, cur int, ref string) int {
	if n, err := strconv.Atoi(ref); err == nil {
		if n >= 0 && n < cur {
			return n
		}
		return -1
	}
	ref = strings.ToLower(ref)
	for i := range cur {
		if d.Stages[i].Name != "" && d.Stages[i].Name == ref {
			return i
		}
	}
	return -1
}

func checkSecrets(in Instruction, bad func(int, string, ...any)) {
	if in.Cmd != "ENV" && in.Cmd != "ARG" {
		return
	}
	for _, p := range in.Pairs {
		for _, w := range strings.FieldsFunc(strings.ToUpper(p.Key), func(r rune) bool { return r == '_' || r == '-' }) {
			if slices.Contains(secretWords, w) {
				bad(in.Line, "%s %s looks like a credential: it would be stored in the image; use a build secret or a runtime file", in.Cmd, p.Key)
				break
			}
		}
		if secretValues.MatchString(p.Value) {
			bad(in.Line, "%s %s holds a value shaped like a credential", in.Cmd, p.Key)
		}
	}
}
