# The test command is `make test`; CI runs `make ci` (the same, plus vet, format and fuzzing).
GO ?= go
FUZZTIME ?= 10s

STATICCHECK ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2

.PHONY: test ci vet lint fmt-check fuzz bench demo build

build:
	$(GO) build -o bin/chaperone ./cmd/chaperone

demo:
	$(GO) run ./cmd/chaperone serve --demo

test:
	$(GO) test -race -count=1 ./...

vet:
	$(GO) vet ./...

# staticcheck, pinned, fetched through the module proxy on first use.
lint:
	$(GO) run $(STATICCHECK) ./...

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

# Runs every native fuzz target briefly (FUZZTIME each), on top of its seed corpus.
fuzz:
	@set -e; for pkg in $$(grep -rl --include='*_test.go' '^func Fuzz' . | xargs -n1 dirname | sort -u); do \
	  for f in $$(grep -h '^func Fuzz' $$pkg/*_test.go | sed 's/func \(Fuzz[A-Za-z0-9_]*\).*/\1/'); do \
	    echo "fuzz $$pkg $$f"; $(GO) test -run='^$$' -fuzz="^$$f$$" -fuzztime=$(FUZZTIME) $$pkg; \
	  done; \
	done

bench:
	$(GO) test -run='^$$' -bench=. -benchmem ./...

ci: vet lint fmt-check test fuzz
