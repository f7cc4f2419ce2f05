package packaging

import (
	"errors"
	"strings"
	"testing"
)

func TestDockerignore(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		patterns string
		ignored  []string
		kept     []string
	}{
		{
			name:     "allow list",
			patterns: "# comment\n*\n!go.mod\n!cmd/\n!/internal\n**/testdata/\n**/*_test.go\n",
			ignored: []string{
				".git/config", "chaperone.yaml", "dist/chaperone.tar.gz", "internal/x/testdata/key.pem",
				"internal/x/x_test.go", "cmd/chaperone/testdata/script/a.txtar", "go.sum", "Dockerfile",
			},
			kept: []string{"go.mod", "cmd/chaperone/main.go", "internal/x/x.go", "internal/console/static/app.js", "internal/x/testdatafile.go"},
		},
		{
			name:     "last match wins",
			patterns: "docs\n!docs/keep.md\ndocs/keep.md\n",
			ignored:  []string{"docs/a.md", "docs/keep.md", "docs/sub/b.md"},
			kept:     []string{"doc/a.md", "README.md"},
		},
		{
			name:     "star stays within an element",
			patterns: "*.key\n",
			ignored:  []string{"a.key"},
			kept:     []string{"dir/a.key", "a.keys"},
		},
		{
			name:     "double star",
			patterns: "**/*.key\nsecrets/**\n",
			ignored:  []string{"a.key", "dir/sub/a.key", "secrets/x", "secrets/a/b"},
			kept:     []string{"a.key.pub", "secretsx/a"},
		},
		{
			name:     "question mark and class",
			patterns: "file?.txt\nlog[0-9]\n",
			ignored:  []string{"file1.txt", "log7"},
			kept:     []string{"file10.txt", "file/.txt", "logx"},
		},
		{
			name:     "escapes and regexp characters",
			patterns: "a\\*b\nx+y.(z)\n  spaced  \n",
			ignored:  []string{"a*b", "x+y.(z)", "spaced"},
			kept:     []string{"aXb", "xxy.(z)", "x+yA(z)"},
		},
		{
			name:     "cleaned patterns",
			patterns: "./build/../out/\n",
			ignored:  []string{"out/a", "/out/b"},
			kept:     []string{"build/out/a"},
		},
		{
			name:     "hash inside a line is not a comment",
			patterns: " #x\n",
			ignored:  []string{"#x"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d, err := ParseDockerignore([]byte(tt.patterns))
			if err != nil {
				t.Fatalf("ParseDockerignore(%q) = %v", tt.patterns, err)
			}
			for _, p := range tt.ignored {
				if !d.Ignored(p) {
					t.Errorf("patterns %q: Ignored(%q) = false, want true", tt.patterns, p)
				}
			}
			for _, p := range tt.kept {
				if d.Ignored(p) {
					t.Errorf("patterns %q: Ignored(%q) = true, want false", tt.patterns, p)
				}
			}
		})
	}
}

func TestDockerignoreErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   string
		line int
		want string
	}{
		{"bare exclamation", "a\n!\n", 2, `"!" without a pattern`},
		{"exclamation and blanks", "!  \n", 1, `"!" without a pattern`},
		{"unclosed class", "a[b\n", 1, `pattern "a[b"`},
		{"oversized", strings.Repeat("a\n", MaxDockerignoreBytes), 0, "larger than"},
		{"too many patterns", strings.Repeat("a\n", maxPatterns+1), maxPatterns + 1, "more than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := ParseDockerignore([]byte(tt.in))
			wantParseError(t, "ParseDockerignore", tt.in, err, tt.line, tt.want)
		})
	}
}

func FuzzDockerignore(f *testing.F) {
	f.Add([]byte("*\n!go.mod\n!cmd/\n**/testdata/\n**/*_test.go\n"), "internal/x/testdata/a")
	f.Add([]byte("a\\*b\n[a-\n"), "a*b")
	f.Add([]byte("!x\n**\n/**/\n"), "/x/../y")
	f.Add([]byte("# c\n  \n[]]\n?\n"), "")
	f.Fuzz(func(t *testing.T, data []byte, name string) {
		d, err := ParseDockerignore(data)
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("ParseDockerignore error %v is not a *ParseError", err)
			}
			return
		}
		d.Ignored(name)
		// A context that ignores everything and puts nothing back ignores every path (but
		// for names with a newline, which "**" does not match in Docker either).
		all, err := ParseDockerignore(append([]byte("**\n"), data...))
		if err == nil && !strings.Contains(string(data), "!") && !strings.Contains(name, "\n") && !all.Ignored(name) {
			t.Fatalf("with ** first, Ignored(%q) = false", name)
		}
	})
}
