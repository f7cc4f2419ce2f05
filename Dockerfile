# syntax=docker/dockerfile:1
#
# Chaperone's container image: one static binary on distroless, running as the nonroot
# user (65532), with no shell. It runs with a read-only root file system: state lives in
# the /var/lib/chaperone volume and the configuration is mounted read-only at
# /etc/chaperone/chaperone.yaml (set data_dir: /var/lib/chaperone and listen addresses of
# 0.0.0.0:8080 and 0.0.0.0:8081 in it). docs/packaging.md has the docker run line.
#
#   docker build --build-arg VERSION=$(git describe --tags --always --dirty) \
#     --build-arg COMMIT=$(git rev-parse HEAD) \
#     --build-arg DATE=$(date -u +%Y-%m-%dT%H:%M:%SZ) -t chaperone .
#
# The builder runs on the build machine's platform and cross-compiles, so
# `docker buildx build --platform linux/amd64,linux/arm64` needs no emulation.

ARG GO_VERSION=1.26

FROM --platform=$BUILDPLATFORM golang:${GO_VERSION} AS build
WORKDIR /src
ENV CGO_ENABLED=0 GOFLAGS=-mod=readonly
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY cmd ./cmd
COPY internal ./internal
# Set by BuildKit to the platform being built; empty (the builder's own) otherwise.
ARG TARGETOS TARGETARCH
ARG VERSION=devel
ARG COMMIT=
ARG DATE=
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    GOOS=$TARGETOS GOARCH=$TARGETARCH CGO_ENABLED=0 go build -trimpath \
      -ldflags "-s -w \
        -X github.com/chaperone-dev/chaperone/internal/buildinfo.Version=${VERSION} \
        -X github.com/chaperone-dev/chaperone/internal/buildinfo.Commit=${COMMIT} \
        -X github.com/chaperone-dev/chaperone/internal/buildinfo.Date=${DATE}" \
      -o /out/chaperone ./cmd/chaperone \
 && mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=devel
LABEL org.opencontainers.image.title="Chaperone" \
      org.opencontainers.image.description="A zero-trust gateway for AI agents' MCP tool calls" \
      org.opencontainers.image.source="https://github.com/chaperone-dev/chaperone" \
      org.opencontainers.image.version="${VERSION}"
COPY --from=build /out/chaperone /chaperone
# An empty directory owned by nonroot: a named volume mounted here starts with that owner.
COPY --from=build --chown=65532:65532 /out/data /var/lib/chaperone
USER 65532:65532
VOLUME ["/var/lib/chaperone"]
EXPOSE 8080 8081
ENTRYPOINT ["/chaperone"]
CMD ["serve", "--config", "/etc/chaperone/chaperone.yaml"]
