package buildinfo

import (
	"encoding/json"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const fullCommit = "1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b"

func vcsInfo(version string, settings ...string) *debug.BuildInfo {
	bi := &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Path: "github.com/chaperone-dev/chaperone", Version: version}}
	for i := 0; i+1 < len(settings); i += 2 {
		bi.Settings = append(bi.Settings, debug.BuildSetting{Key: settings[i], Value: settings[i+1]})
	}
	return bi
}

func TestGet(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		s    stamped
		bi   *debug.BuildInfo
		want Info
	}{
		{
			name: "linker stamps win over build info",
			s:    stamped{"0.2.0", fullCommit, "2026-11-22T10:00:00Z"},
			bi:   vcsInfo("v0.0.0-20261101000000-ffffffffffff", "vcs.revision", "ffff", "vcs.time", "2026-11-01T00:00:00Z", "vcs.modified", "true"),
			want: Info{Version: "0.2.0", Commit: fullCommit, Date: "2026-11-22T10:00:00Z", GoVersion: "go1.26.8", Platform: "linux/amd64"},
		},
		{
			name: "tag with v prefix",
			s:    stamped{"v0.2.0-3-g1a2b3c4-dirty", "", ""},
			bi:   vcsInfo("(devel)"),
			want: Info{Version: "0.2.0-3-g1a2b3c4-dirty", GoVersion: "go1.26.8", Platform: "linux/amd64"},
		},
		{
			name: "unstamped: version control settings",
			bi:   vcsInfo("v0.3.1", "vcs", "git", "vcs.revision", fullCommit, "vcs.time", "2026-11-20T08:00:00Z", "vcs.modified", "false"),
			want: Info{Version: "0.3.1", Commit: fullCommit, Date: "2026-11-20T08:00:00Z", GoVersion: "go1.26.8", Platform: "linux/amd64"},
		},
		{
			name: "unstamped: modified checkout is dirty",
			bi:   vcsInfo("(devel)", "vcs.revision", fullCommit, "vcs.modified", "true"),
			want: Info{Version: DevVersion, Commit: fullCommit + "+dirty", GoVersion: "go1.26.8", Platform: "linux/amd64"},
		},
		{
			name: "stamped commit is not marked dirty by build info",
			s:    stamped{"", fullCommit, ""},
			bi:   vcsInfo("", "vcs.revision", "other", "vcs.modified", "true", "vcs.time", "2026-11-20T08:00:00Z"),
			want: Info{Version: DevVersion, Commit: fullCommit, Date: "2026-11-20T08:00:00Z", GoVersion: "go1.26.8", Platform: "linux/amd64"},
		},
		{
			name: "modified without a revision says nothing",
			bi:   vcsInfo("(devel)", "vcs.modified", "true"),
			want: Info{Version: DevVersion, GoVersion: "go1.26.8", Platform: "linux/amd64"},
		},
		{
			name: "no build info at all",
			want: Info{Version: DevVersion, GoVersion: runtime.Version(), Platform: "linux/amd64"},
		},
		{
			name: "a lone v is not a version prefix",
			s:    stamped{"v", "", ""},
			want: Info{Version: "v", GoVersion: runtime.Version(), Platform: "linux/amd64"},
		},
		{
			name: "v followed by a letter is kept",
			s:    stamped{"vnext", "", ""},
			want: Info{Version: "vnext", GoVersion: runtime.Version(), Platform: "linux/amd64"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := get(tt.s, tt.bi, "linux/amd64")
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("get(%+v) mismatch (-want +got):\n%s", tt.s, diff)
			}
		})
	}
}

func TestGetThisBinary(t *testing.T) {
	t.Parallel()
	got := Get()
	if got.Version == "" {
		t.Errorf("Get().Version is empty")
	}
	if want := runtime.GOOS + "/" + runtime.GOARCH; got.Platform != want {
		t.Errorf("Get().Platform = %q, want %q", got.Platform, want)
	}
	if !strings.HasPrefix(got.GoVersion, "go") {
		t.Errorf("Get().GoVersion = %q, want a go version", got.GoVersion)
	}
}

func TestString(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   Info
		want string
	}{
		{
			name: "everything known",
			in:   Info{Version: "0.2.0", Commit: fullCommit, Date: "2026-11-22T10:00:00Z", GoVersion: "go1.26.8", Platform: "linux/amd64"},
			want: "chaperone 0.2.0 (commit 1a2b3c4d5e6f, built 2026-11-22T10:00:00Z, go1.26.8, linux/amd64)",
		},
		{
			name: "dirty commit keeps its mark",
			in:   Info{Version: DevVersion, Commit: fullCommit + "+dirty", GoVersion: "go1.26.8", Platform: "darwin/arm64"},
			want: "chaperone devel (commit 1a2b3c4d5e6f+dirty, go1.26.8, darwin/arm64)",
		},
		{
			name: "short commit shown whole",
			in:   Info{Version: "1.0.0", Commit: "abc", Date: "d", GoVersion: "go1.26.8", Platform: "linux/arm64"},
			want: "chaperone 1.0.0 (commit abc, built d, go1.26.8, linux/arm64)",
		},
		{
			name: "commit and date unknown",
			in:   Info{Version: "1.0.0", GoVersion: "go1.26.8", Platform: "linux/arm64"},
			want: "chaperone 1.0.0 (go1.26.8, linux/arm64)",
		},
		{
			name: "control characters cannot break the line",
			in:   Info{Version: "1.0\n0", Commit: "ab\rc", Date: "x\x1b[2J", GoVersion: "go\t1", Platform: "p\x7f"},
			want: "chaperone 1.0 0 (commit ab c, built x [2J, go 1, p )",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := tt.in.String(); got != tt.want {
				t.Errorf("%+v.String() = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestJSON(t *testing.T) {
	t.Parallel()
	in := Info{Version: "0.2.0", Commit: fullCommit, Date: "2026-11-22T10:00:00Z", GoVersion: "go1.26.8", Platform: "linux/amd64"}
	got := string(in.JSON())
	want := `{"version":"0.2.0","commit":"` + fullCommit + `","date":"2026-11-22T10:00:00Z","go_version":"go1.26.8","platform":"linux/amd64"}`
	if got != want {
		t.Errorf("JSON() = %s, want %s", got, want)
	}
	var back Info
	if err := json.Unmarshal(in.JSON(), &back); err != nil {
		t.Fatalf("JSON() does not decode: %v", err)
	}
	if diff := cmp.Diff(in, back); diff != "" {
		t.Errorf("JSON round trip mismatch (-want +got):\n%s", diff)
	}

	bare := Info{Version: DevVersion, GoVersion: "go1.26.8", Platform: "linux/amd64"}
	if got, want := string(bare.JSON()), `{"version":"devel","go_version":"go1.26.8","platform":"linux/amd64"}`; got != want {
		t.Errorf("JSON() without commit and date = %s, want %s", got, want)
	}
}
