# Aspen: one entry point for the checks CI runs.
GO ?= go
PKGS ?= ./...

.PHONY: check test e2e vet fmt build devnet bench

## check: formatting, vet and the race-enabled test suite (what CI runs)
check: fmt vet test e2e

fmt:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet $(PKGS)

test:
	$(GO) test -race -timeout 15m $(PKGS)

## e2e: whole-network tests that are too slow under the race detector
e2e:
	$(GO) test -count=1 -timeout 10m -run 'TestDevnet' ./cmd/aspen-node

build:
	$(GO) build -o bin/ ./cmd/...

devnet: build
	./bin/aspen-node devnet

bench: build
	./bin/aspen-bench
