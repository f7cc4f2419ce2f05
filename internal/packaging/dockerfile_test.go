package packaging

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// goodDockerfile passes [CheckDockerfile]; the check tests break it one way at a time.
const goodDockerfile = `# syntax=docker/dockerfile:1
ARG GO_VERSION=1.26
FROM --platform=$BUILDPLATFORM golang:${GO_VERSION} AS build
WORKDIR /src
ENV CGO_ENABLED=0
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
RUN go build -trimpath \
      -ldflags "-s -w" \
      -o /out/app ./cmd/app

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/app /app
USER 65532:65532
VOLUME ["/data"]
EXPOSE 8080
ENTRYPOINT ["/app"]
CMD ["serve"]
`

func TestParseDockerfile(t *testing.T) {
	t.Parallel()
	got, err := ParseDockerfile([]byte(goodDockerfile))
	if err != nil {
		t.Fatalf("ParseDockerfile(good) = %v", err)
	}
	want := &Dockerfile{
		Args: []Instruction{{Line: 2, Cmd: "ARG", Pairs: []Pair{{Key: "GO_VERSION", Value: "1.26"}}}},
		Stages: []Stage{
			{
				Index: 0, Name: "build", Base: "golang:${GO_VERSION}", Platform: "$BUILDPLATFORM", Line: 3,
				Instructions: []Instruction{
					{Line: 4, Cmd: "WORKDIR", Args: []string{"/src"}},
					{Line: 5, Cmd: "ENV", Pairs: []Pair{{Key: "CGO_ENABLED", Value: "0"}}},
					{Line: 6, Cmd: "COPY", Args: []string{"go.mod", "go.sum", "./"}},
					{Line: 7, Cmd: "RUN", Flags: []Flag{{"mount", "type=cache,target=/go/pkg/mod"}}, Args: []string{"go mod download"}},
					{Line: 8, Cmd: "COPY", Args: []string{".", "."}},
					{Line: 9, Cmd: "RUN", Args: []string{`go build -trimpath       -ldflags "-s -w"       -o /out/app ./cmd/app`}},
				},
			},
			{
				Index: 1, Base: "gcr.io/distroless/static-debian12:nonroot", Line: 13,
				Instructions: []Instruction{
					{Line: 14, Cmd: "COPY", Flags: []Flag{{"from", "build"}}, Args: []string{"/out/app", "/app"}},
					{Line: 15, Cmd: "USER", Args: []string{"65532:65532"}},
					{Line: 16, Cmd: "VOLUME", Exec: true, Args: []string{"/data"}},
					{Line: 17, Cmd: "EXPOSE", Args: []string{"8080"}},
					{Line: 18, Cmd: "ENTRYPOINT", Exec: true, Args: []string{"/app"}},
					{Line: 19, Cmd: "CMD", Exec: true, Args: []string{"serve"}},
				},
			},
		},
	}
	if diff := cmp.Diff(want, got, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("ParseDockerfile(good) mismatch (-want +got):\n%s", diff)
	}
}

func TestParseDockerfileForms(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   string
		want Instruction // the first instruction of the first stage
	}{
		{"lower-case instruction", "FROM x\nrun echo hi", Instruction{Line: 2, Cmd: "RUN", Args: []string{"echo hi"}}},
		{"tab after instruction", "FROM x\nRUN\techo hi", Instruction{Line: 2, Cmd: "RUN", Args: []string{"echo hi"}}},
		{"shell-form CMD", "FROM x\nCMD /app serve", Instruction{Line: 2, Cmd: "CMD", Args: []string{"/app serve"}}},
		{"exec-form RUN", `FROM x` + "\n" + `RUN ["a", "b c"]`, Instruction{Line: 2, Cmd: "RUN", Exec: true, Args: []string{"a", "b c"}}},
		{"ENV legacy form", "FROM x\nENV PATH /usr/bin:/bin", Instruction{Line: 2, Cmd: "ENV", Pairs: []Pair{{Key: "PATH", Value: "/usr/bin:/bin"}}}},
		{"ENV quoted pairs", `FROM x` + "\n" + `ENV A="x y" B='z\n' C=a\ b`, Instruction{Line: 2, Cmd: "ENV", Pairs: []Pair{{Key: "A", Value: "x y"}, {Key: "B", Value: `z\n`}, {Key: "C", Value: "a b"}}}},
		{"ARG without default", "FROM x\nARG A B=1", Instruction{Line: 2, Cmd: "ARG", Pairs: []Pair{{Key: "A", NoValue: true}, {Key: "B", Value: "1"}}}},
		{"LABEL across lines", "FROM x\nLABEL a=\"1\" \\\n  b.c=2", Instruction{Line: 2, Cmd: "LABEL", Pairs: []Pair{{Key: "a", Value: "1"}, {Key: "b.c", Value: "2"}}}},
		{"comment and blank inside continuation", "FROM x\nRUN a \\\n# note\n\n  b", Instruction{Line: 2, Cmd: "RUN", Args: []string{"a   b"}}},
		{"continuation with trailing blanks", "FROM x\nRUN a \\  \t\nb", Instruction{Line: 2, Cmd: "RUN", Args: []string{"a b"}}},
		{"continuation at end of file", "FROM x\nRUN a \\", Instruction{Line: 2, Cmd: "RUN", Args: []string{"a"}}},
		{"CRLF line ends", "FROM x\r\nUSER 1000\r\n", Instruction{Line: 2, Cmd: "USER", Args: []string{"1000"}}},
		{"COPY exec form with flags", "FROM x AS a\nFROM y\nCOPY --from=a --chown=1:1 [\"/a b\", \"/c\"]", Instruction{Line: 3, Cmd: "COPY", Flags: []Flag{{"from", "a"}, {"chown", "1:1"}}, Exec: true, Args: []string{"/a b", "/c"}}},
		{"COPY boolean flag", "FROM x\nCOPY --link a b", Instruction{Line: 2, Cmd: "COPY", Flags: []Flag{{"link", ""}}, Args: []string{"a", "b"}}},
		{"EXPOSE range and protocol", "FROM x\nEXPOSE 53/udp 8000-8010 9/sctp", Instruction{Line: 2, Cmd: "EXPOSE", Args: []string{"53/udp", "8000-8010", "9/sctp"}}},
		{"VOLUME words", "FROM x\nVOLUME /a /b", Instruction{Line: 2, Cmd: "VOLUME", Args: []string{"/a", "/b"}}},
		{"byte order mark", "\ufeffFROM x\nUSER 1", Instruction{Line: 2, Cmd: "USER", Args: []string{"1"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d, err := ParseDockerfile([]byte(tt.in))
			if err != nil {
				t.Fatalf("ParseDockerfile(%q) = %v", tt.in, err)
			}
			st := d.Stages[len(d.Stages)-1]
			if len(st.Instructions) == 0 {
				t.Fatalf("ParseDockerfile(%q): last stage has no instructions", tt.in)
			}
			if diff := cmp.Diff(tt.want, st.Instructions[0], cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("ParseDockerfile(%q) mismatch (-want +got):\n%s", tt.in, diff)
			}
		})
	}
}

func TestParseDockerfileErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   string
		line int
		want string
	}{
		{"empty", "", 0, "no FROM"},
		{"only comments", "# a\n\n# b\n", 0, "no FROM"},
		{"oversized", "FROM x\n" + strings.Repeat("#", MaxDockerfileBytes), 0, "larger than"},
		{"escape directive", "# escape=`\nFROM x", 1, "escape directive"},
		{"unknown instruction", "FROM x\nHEALTHCHECK CMD true", 2, `unsupported instruction "HEALTHCHECK"`},
		{"instruction before FROM", "RUN true\nFROM x", 1, "RUN before the first FROM"},
		{"no arguments", "FROM x\nRUN", 2, "RUN has no arguments"},
		{"only flags", "FROM x\nRUN --network=none", 2, "RUN has no arguments"},
		{"FROM extra words", "FROM x y", 1, "FROM takes an image"},
		{"FROM bad stage name", "FROM x AS 1abc", 1, "invalid stage name"},
		{"duplicate stage", "FROM x AS a\nFROM y AS A", 2, `stage name "a" already used at line 1`},
		{"unknown flag", "FROM x\nCOPY --frm=a b c", 2, "COPY does not take --frm"},
		{"flag on wrong instruction", "FROM x\nRUN --from=a true", 2, "RUN does not take --from"},
		{"platform outside FROM", "FROM x\nCOPY --platform=linux a b", 2, "COPY does not take --platform"},
		{"malformed flag", "FROM x\nRUN --Mount=x true", 2, "malformed flag"},
		{"broken exec form", "FROM x\nCMD [\"a\",", 2, "not a JSON array"},
		{"exec form of numbers", "FROM x\nENTRYPOINT [1]", 2, "not a JSON array"},
		{"empty exec form", "FROM x\nCMD []", 2, "empty JSON array"},
		{"COPY one word", "FROM x\nCOPY a", 2, "needs a source and a destination"},
		{"USER two words", "FROM x\nUSER a b", 2, "USER takes one"},
		{"EXPOSE word", "FROM x\nEXPOSE http", 2, "not port"},
		{"EXPOSE zero", "FROM x\nEXPOSE 0", 2, "out of range"},
		{"EXPOSE too high", "FROM x\nEXPOSE 70000", 2, "out of range"},
		{"ENV without value", "FROM x\nENV A", 2, "ENV A has no value"},
		{"ENV bad name", "FROM x\nENV 1A=b", 2, "invalid name"},
		{"ENV unterminated quote", "FROM x\nENV A=\"b", 2, "unterminated double quote"},
		{"ARG unterminated quote", "FROM x\nARG A='b", 2, "unterminated single quote"},
		{"ARG bad name", "ARG a-b\nFROM x", 1, "invalid name"},
		{"LABEL not a pair", "FROM x\nLABEL a", 2, "not key=value"},
		{"too many instructions", "FROM x\n" + strings.Repeat("USER 1\n", maxInstructions), maxInstructions + 1, "more than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := ParseDockerfile([]byte(tt.in))
			wantParseError(t, "ParseDockerfile", tt.in, err, tt.line, tt.want)
		})
	}
}

func TestCheckDockerfile(t *testing.T) {
	t.Parallel()
	d, err := ParseDockerfile([]byte(goodDockerfile))
	if err != nil {
		t.Fatal(err)
	}
	if errs := CheckDockerfile(d); len(errs) != 0 {
		t.Fatalf("CheckDockerfile(good) = %v, want none", errs)
	}

	tests := []struct {
		name     string
		old, new string   // replace old with new in goodDockerfile
		want     []string // each error expected, in order, by a part of its text
	}{
		{"single stage", "\nFROM gcr.io/distroless/static-debian12:nonroot\nCOPY --from=build /out/app /app\n", "\n", []string{"single-stage build", "line 7: RUN in the final stage", "line 9: RUN in the final stage"}},
		{"cgo on", "ENV CGO_ENABLED=0", "ENV CGO_ENABLED=1", []string{`line 9: go build runs with CGO_ENABLED="1", want 0`}},
		{"cgo unset", "ENV CGO_ENABLED=0", "ENV GOFLAGS=-mod=readonly", []string{`line 9: go build runs with CGO_ENABLED="", want 0`}},
		{"cgo inline wins", "RUN go build", "RUN CGO_ENABLED=1 go build", []string{`line 9: go build runs with CGO_ENABLED="1", want 0`}},
		{"no trimpath", "go build -trimpath", "go build", []string{"line 9: go build runs without -trimpath"}},
		{"no go build", "RUN go build", "RUN go vet", []string{"no RUN runs go build"}},
		{"root user", "USER 65532:65532", "USER 0", []string{"line 15: USER 0 is root"}},
		{"root group", "USER 65532:65532", "USER 65532:0", []string{"line 15: USER 65532:0 is root"}},
		{"root by zeros", "USER 65532:65532", "USER 000", []string{"line 15: USER 000 is root"}},
		{"named user", "USER 65532:65532", "USER nonroot", []string{`line 15: USER "nonroot" is not numeric`}},
		{"no user", "USER 65532:65532\n", "", []string{"line 13: the final stage sets no USER"}},
		{"shell entrypoint", `ENTRYPOINT ["/app"]`, "ENTRYPOINT /app", []string{"line 18: ENTRYPOINT in shell form"}},
		{"no entrypoint", "ENTRYPOINT [\"/app\"]\n", "", []string{"line 13: the final stage has no ENTRYPOINT"}},
		{"shell cmd", `CMD ["serve"]`, "CMD serve", []string{"line 19: CMD in shell form"}},
		{"run in final stage", "USER 65532:65532", "RUN [\"/app\", \"init\"]\nUSER 65532:65532", []string{"line 15: RUN in the final stage"}},
		{"ADD of a URL", "COPY go.mod go.sum ./", "ADD https://example.com/x.tgz /x", []string{`line 6: ADD fetches "https://example.com/x.tgz"`}},
		{"ADD of a git repository", "COPY go.mod go.sum ./", "ADD git@github.com:a/b.git /x", []string{`line 6: ADD fetches "git@github.com:a/b.git"`}},
		{"secret ENV name", "ENV CGO_ENABLED=0", "ENV CGO_ENABLED=0 GITHUB_TOKEN=x", []string{"line 5: ENV GITHUB_TOKEN looks like a credential"}},
		{"secret ARG name", "ARG GO_VERSION=1.26", "ARG GO_VERSION=1.26 DB_PASSWORD", []string{"line 2: ARG DB_PASSWORD looks like a credential"}},
		{"secret ENV value", "ENV CGO_ENABLED=0", "ENV CGO_ENABLED=0 X=AKIAABCDEFGHIJKLMNOP", []string{"line 5: ENV X holds a value shaped like a credential"}},
		{"COPY from a later stage", "COPY --from=build /out/app /app", "COPY --from=1 /out/app /app", []string{`line 14: COPY --from="1" names no earlier stage`}},
		{"COPY from an image", "COPY --from=build /out/app /app", "COPY --from=busybox /bin/sh /sh", []string{`line 14: COPY --from="busybox" names no earlier stage`}},
		{"several at once", "USER 65532:65532\nVOLUME", "USER root\nENV API_KEY=1\nVOLUME", []string{"line 16: ENV API_KEY looks like a credential", `line 15: USER "root" is not numeric`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if !strings.Contains(goodDockerfile, tt.old) {
				t.Fatalf("%q is not in the good Dockerfile", tt.old)
			}
			src := strings.Replace(goodDockerfile, tt.old, tt.new, 1)
			d, err := ParseDockerfile([]byte(src))
			if err != nil {
				t.Fatalf("ParseDockerfile: %v\n%s", err, src)
			}
			errs := CheckDockerfile(d)
			if len(errs) != len(tt.want) {
				t.Fatalf("CheckDockerfile = %v, want %d errors: %q", errs, len(tt.want), tt.want)
			}
			for i, e := range errs {
				if !strings.Contains(e.Error(), tt.want[i]) {
					t.Errorf("CheckDockerfile error %d = %q, want %q", i, e, tt.want[i])
				}
			}
		})
	}
}

func TestCheckDockerfileCopyFromIndexAndInheritedEnv(t *testing.T) {
	t.Parallel()
	// A stage built FROM an earlier stage keeps its ENV; --from may name a stage by index.
	src := "FROM golang AS base\nENV CGO_ENABLED=0\nFROM base AS build\nRUN go build -trimpath -o /a .\nFROM scratch\nCOPY --from=1 /a /a\nUSER 1:1\nENTRYPOINT [\"/a\"]\n"
	d, err := ParseDockerfile([]byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if errs := CheckDockerfile(d); len(errs) != 0 {
		t.Errorf("CheckDockerfile = %v, want none", errs)
	}
}

func TestSplitWords(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want []string
	}{
		{"", nil},
		{"  a  b\tc ", []string{"a", "b", "c"}},
		{`a="b c" d`, []string{"a=b c", "d"}},
		{`"a\"b\\c"`, []string{`a"b\c`}},
		{`"a\nb"`, []string{`a\nb`}},
		{`'a "b" \c'`, []string{`a "b" \c`}},
		{`a\ b\`, []string{`a b\`}},
		{`""`, []string{""}},
		{`x''y`, []string{"xy"}},
	}
	for _, tt := range tests {
		got, err := splitWords(tt.in)
		if err != nil {
			t.Errorf("splitWords(%q) = %v", tt.in, err)
			continue
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("splitWords(%q) mismatch (-want +got):\n%s", tt.in, diff)
		}
	}
}

func FuzzParseDockerfile(f *testing.F) {
	f.Add([]byte(goodDockerfile))
	f.Add([]byte("FROM x AS a\nFROM a\nCOPY --from=0 [\"a\", \"b\"] \nENV A=\"b c\" D='e'\nEXPOSE 1-2/udp\n"))
	f.Add([]byte("# escape=\\\nARG A\nFROM $A\nRUN a \\\n# c\n\n b \\"))
	f.Add([]byte("FROM x\nUSER 0:0\nCMD [\"\\u0000\"]\nLABEL 'a b'=c"))
	f.Add([]byte("\ufeffFROM x\r\nVOLUME [\"/v\"]\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := ParseDockerfile(data)
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("ParseDockerfile error %v is not a *ParseError", err)
			}
			return
		}
		if len(d.Stages) == 0 {
			t.Fatal("ParseDockerfile succeeded without a stage")
		}
		for i, st := range d.Stages {
			if st.Index != i || st.Base == "" || st.Line < 1 {
				t.Fatalf("stage %d: %+v", i, st)
			}
			for _, in := range st.Instructions {
				if in.Line < st.Line {
					t.Fatalf("instruction at line %d before its stage's FROM at %d", in.Line, st.Line)
				}
				switch in.Cmd {
				case "COPY", "ADD":
					if len(in.Args) < 2 {
						t.Fatalf("%s with %d arguments", in.Cmd, len(in.Args))
					}
				case "USER":
					if len(in.Args) != 1 {
						t.Fatalf("USER with %d arguments", len(in.Args))
					}
				}
			}
		}
		CheckDockerfile(d)
	})
}

// wantParseError fails the test unless err, from parse(in), is a *ParseError at line whose
// message holds want.
func wantParseError(t *testing.T, parse, in string, err error, line int, want string) {
	t.Helper()
	var pe *ParseError
	if !errors.As(err, &pe) {
		t.Fatalf("%s(%.60q) = %v, want a *ParseError", parse, in, err)
	}
	if pe.Line != line || !strings.Contains(pe.Msg, want) {
		t.Errorf("%s(%.60q) = %v, want line %d and %q", parse, in, err, line, want)
	}
}
