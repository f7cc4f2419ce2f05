// Package buildinfo says which Chaperone this binary is: its version, the commit it was
// built from, when, with which Go toolchain and for which platform.
//
// Release builds stamp the version, commit and date with the linker (scripts/release.sh and
// the Dockerfile do this):
//
//	go build -ldflags "-X github.com/chaperone-dev/chaperone/internal/buildinfo.Version=0.2.0 \
//	  -X github.com/chaperone-dev/chaperone/internal/buildinfo.Commit=1a2b3c... \
//	  -X github.com/chaperone-dev/chaperone/internal/buildinfo.Date=2026-11-22T10:00:00Z" ./cmd/chaperone
//
// A value left unset is taken from what the Go toolchain recorded in the binary
// ([debug.ReadBuildInfo]): the main module's version, and the revision, commit time and
// modified flag of the version control checkout it was built in.
package buildinfo

import (
	"encoding/json"
	"runtime"
	"runtime/debug"
	"strings"
)

// The variables below exist to be set with the linker's -X flag; nothing in Chaperone
// assigns them. [Get] is how the rest of the program reads them.
var (
	// Version is the release version, such as "0.2.0" (a leading "v" is dropped).
	Version string
	// Commit is the full revision the binary was built from.
	Commit string
	// Date is when the binary was built, in RFC 3339, UTC.
	Date string
)

// DevVersion is the version of a binary built without a release version: `go run`,
// `go test`, or `go build` outside a module version control checkout.
const DevVersion = "devel"

// shortCommit is how many characters of the commit [Info.String] shows.
const shortCommit = 12

// Info describes one build of Chaperone.
type Info struct {
	// Version is the release version, or [DevVersion].
	Version string `json:"version"`
	// Commit is the revision built, with "+dirty" appended when the checkout had local
	// changes; empty when unknown.
	Commit string `json:"commit,omitempty"`
	// Date is the build (or commit) time; empty when unknown.
	Date string `json:"date,omitempty"`
	// GoVersion is the Go toolchain that built the binary, such as "go1.26.8".
	GoVersion string `json:"go_version"`
	// Platform is GOOS/GOARCH, such as "linux/amd64".
	Platform string `json:"platform"`
}

// stamped is what the linker set.
type stamped struct{ version, commit, date string }

// Get returns this binary's build information.
func Get() Info {
	bi, _ := debug.ReadBuildInfo()
	return get(stamped{Version, Commit, Date}, bi, runtime.GOOS+"/"+runtime.GOARCH)
}

// get fills in what s leaves unset from bi, which may be nil.
func get(s stamped, bi *debug.BuildInfo, platform string) Info {
	info := Info{Version: s.version, Commit: s.commit, Date: s.date, GoVersion: runtime.Version(), Platform: platform}
	if bi != nil {
		if bi.GoVersion != "" {
			info.GoVersion = bi.GoVersion
		}
		if info.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			info.Version = bi.Main.Version
		}
		var revision, vcsTime string
		var modified bool
		for _, kv := range bi.Settings {
			switch kv.Key {
			case "vcs.revision":
				revision = kv.Value
			case "vcs.time":
				vcsTime = kv.Value
			case "vcs.modified":
				modified = kv.Value == "true"
			}
		}
		if info.Commit == "" && revision != "" {
			info.Commit = revision
			if modified {
				info.Commit += "+dirty"
			}
		}
		if info.Date == "" {
			info.Date = vcsTime
		}
	}
	info.Version = trimV(info.Version)
	if info.Version == "" {
		info.Version = DevVersion
	}
	return info
}

// trimV drops the "v" of a version such as "v0.2.0", so that tags and module versions
// print the same way.
func trimV(v string) string {
	if len(v) > 1 && v[0] == 'v' && v[1] >= '0' && v[1] <= '9' {
		return v[1:]
	}
	return v
}

// String is the one-line form `chaperone version` prints, for example
// "chaperone 0.2.0 (commit 1a2b3c4d5e6f, built 2026-11-22T10:00:00Z, go1.26.8, linux/amd64)".
// The commit is shortened to 12 characters, keeping a "+dirty" mark; unknown parts are left
// out.
func (i Info) String() string {
	var b strings.Builder
	b.WriteString("chaperone ")
	b.WriteString(oneLine(i.Version))
	b.WriteString(" (")
	if i.Commit != "" {
		c, dirty := strings.CutSuffix(i.Commit, "+dirty")
		if len(c) > shortCommit {
			c = c[:shortCommit]
		}
		if dirty {
			c += "+dirty"
		}
		b.WriteString("commit " + oneLine(c) + ", ")
	}
	if i.Date != "" {
		b.WriteString("built " + oneLine(i.Date) + ", ")
	}
	b.WriteString(oneLine(i.GoVersion) + ", " + oneLine(i.Platform) + ")")
	return b.String()
}

// oneLine keeps a stamped value from breaking the line: control characters become spaces.
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}

// JSON is i as a JSON object (keys version, commit, date, go_version, platform; commit and
// date left out when unknown), for `chaperone version --json`.
func (i Info) JSON() []byte {
	b, err := json.Marshal(i)
	if err != nil {
		// Marshalling a struct of strings cannot fail.
		return []byte("{}")
	}
	return b
}
