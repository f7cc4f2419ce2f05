#!/usr/bin/env bash
# Builds Chaperone's release archives: one static binary (CGO_ENABLED=0, -trimpath) per
# target, stamped with the version, commit and build date (internal/buildinfo), packed as
#
#   $DIST/chaperone_<version>_<os>_<arch>/chaperone
#   $DIST/chaperone_<version>_<os>_<arch>.tar.gz
#   $DIST/SHA256SUMS                  (sha256sum -c SHA256SUMS, run in $DIST, checks them)
#
# Settings, all from the environment:
#   VERSION  release version; default `git describe --tags --always --dirty`, "v" dropped
#   COMMIT   revision; default `git rev-parse HEAD`, "+dirty" when tracked files changed
#   SOURCE_DATE_EPOCH  build date in seconds; default the commit's time, so that a rebuild
#            of the same commit gives the same bytes
#   TARGETS  space-separated os/arch pairs; default linux and darwin on amd64 and arm64
#   DIST     output directory, relative to the repository root; default dist. Earlier chaperone_*
#            entries and SHA256SUMS in it are removed first, nothing else.
#   GO       the go command; default go
set -euo pipefail

die() {
  echo "release: $*" >&2
  exit 1
}

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

GO=${GO:-go}
TARGETS=${TARGETS:-linux/amd64 linux/arm64 darwin/amd64 darwin/arm64}
DIST=${DIST:-$root/dist}
pkg=github.com/chaperone-dev/chaperone/internal/buildinfo

in_git() { git rev-parse --is-inside-work-tree >/dev/null 2>&1; }

if [ -z "${VERSION:-}" ]; then
  in_git || die "not in a git checkout: set VERSION"
  VERSION=$(git describe --tags --always --dirty)
fi
VERSION=${VERSION#v}
# The version names files and goes into -ldflags unquoted: keep it to a safe alphabet.
[[ $VERSION =~ ^[0-9A-Za-z][0-9A-Za-z._+-]{0,63}$ ]] ||
  die "VERSION \"$VERSION\" must be 1 to 64 of [0-9A-Za-z._+-], starting with a letter or digit"

for t in $TARGETS; do
  [[ $t =~ ^(linux|darwin)/(amd64|arm64)$ ]] || die "target \"$t\" is not one of linux|darwin / amd64|arm64"
done
[ -n "${TARGETS// /}" ] || die "TARGETS is empty"

if [ -z "${COMMIT:-}" ] && in_git; then
  COMMIT=$(git rev-parse HEAD)
  git diff --quiet HEAD -- || COMMIT+="+dirty"
fi
COMMIT=${COMMIT:-}
[[ $COMMIT =~ ^[0-9A-Za-z+]{0,80}$ ]] || die "COMMIT \"$COMMIT\" must be at most 80 of [0-9A-Za-z+]"

if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
  if in_git; then
    SOURCE_DATE_EPOCH=$(git show -s --format=%ct HEAD)
  else
    SOURCE_DATE_EPOCH=$(date +%s)
  fi
fi
[[ $SOURCE_DATE_EPOCH =~ ^[0-9]{1,12}$ ]] || die "SOURCE_DATE_EPOCH \"$SOURCE_DATE_EPOCH\" is not a number of seconds"
# GNU date takes -d @N, BSD (macOS) date -r N.
DATE=$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ 2>/dev/null ||
  date -u -r "$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ)

if command -v sha256sum >/dev/null 2>&1; then
  sha256() { sha256sum "$@"; }
else
  sha256() { shasum -a 256 "$@"; }
fi

# GNU tar can make byte-for-byte reproducible archives; other tars get the plain form.
tar_flags=()
if tar --version 2>/dev/null | grep -q 'GNU tar'; then
  tar_flags=(--sort=name --owner=0 --group=0 --numeric-owner --mtime="@$SOURCE_DATE_EPOCH")
fi

ldflags="-s -w -X $pkg.Version=$VERSION -X $pkg.Commit=$COMMIT -X $pkg.Date=$DATE"

mkdir -p "$DIST"
DIST=$(cd "$DIST" && pwd)
rm -rf "$DIST"/chaperone_* "$DIST/SHA256SUMS"

archives=()
for t in $TARGETS; do
  os=${t%/*} arch=${t#*/}
  name=chaperone_${VERSION}_${os}_${arch}
  echo "release: building $name" >&2
  mkdir -p "$DIST/$name"
  CGO_ENABLED=0 GOOS=$os GOARCH=$arch "$GO" build -trimpath -ldflags "$ldflags" \
    -o "$DIST/$name/chaperone" ./cmd/chaperone
  for f in README.md LICENSE; do
    if [ -f "$f" ]; then cp "$f" "$DIST/$name/"; fi
  done
  # ${a[@]+"${a[@]}"}: an empty array under set -u, in the bash 3.2 of macOS too.
  tar -C "$DIST" ${tar_flags[@]+"${tar_flags[@]}"} -cf - "$name" | gzip -9n >"$DIST/$name.tar.gz"
  archives+=("$name.tar.gz")
done

(cd "$DIST" && sha256 "${archives[@]}" >SHA256SUMS)
echo "release: wrote ${#archives[@]} archive(s) and SHA256SUMS to $DIST" >&2
