# The test command is `make test`; CI runs `make ci` (the same, plus vet, format and fuzzing).
GO ?= go
# 3s per target keeps CI's fuzzing (90+ targets, two at a time) near four minutes on
# two cores; every target's seed corpus also runs in make test. Run longer locally,
# e.g. make fuzz FUZZTIME=2m.
FUZZTIME ?= 3s

STATICCHECK ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2

.PHONY: test ci vet lint fmt-check fuzz bench demo demo-record build release

build:
	$(GO) build -o bin/chaperone ./cmd/chaperone

# Release archives for linux and darwin on amd64 and arm64, with SHA256SUMS, in dist/.
release:
	bash scripts/release.sh

demo:
	$(GO) run ./cmd/chaperone demo

# Regenerates docs/demo.txt, the recorded output of `chaperone demo` (TestDemo checks it).
demo-record:
	$(GO) run ./cmd/chaperone demo --color never > docs/demo.txt

test:
	$(GO) test -race -count=1 ./...

vet:
	$(GO) vet ./...

# staticcheck, pinned, fetched through the module proxy on first use.
lint:
	$(GO) run $(STATICCHECK) ./...

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

# Runs every native fuzz target briefly (FUZZTIME each), on top of its seed corpus; see
# .ci/fuzz for the one retry it allows.
fuzz:
	@GO=$(GO) FUZZTIME=$(FUZZTIME) bash .ci/fuzz

bench:
	$(GO) test -run='^$$' -bench=. -benchmem ./...

ci: vet lint fmt-check test fuzz
