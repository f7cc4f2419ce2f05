// Package packaging reads Chaperone's deployment artefacts — the Dockerfile, the
// .dockerignore and the systemd unit — and checks them against the rules the project holds
// them to. Docker cannot build and systemd does not run where the tests run, so the tests
// of this package parse the files in the repository and apply [CheckDockerfile] and
// [CheckUnit] to them, and the negative tests apply the same checks to broken copies.
//
// The parsers cover what Chaperone's files use, not the whole of either format: a
// Dockerfile with the instructions FROM, ARG, WORKDIR, COPY, ADD, RUN, ENV, USER, EXPOSE,
// VOLUME, ENTRYPOINT, CMD and LABEL and the default escape character; a unit file's
// sections, keys, comments and continuation lines. Anything else is an error, not a guess.
// Every parser bounds its input and never panics on it.
package packaging
