# OpenSandbox: every user-facing command. `make help` lists them.
SHELL := bash
.DEFAULT_GOAL := help

# Podman's bindings need these tags to build without C libraries.
export GOFLAGS := -tags=remote,containers_image_openpgp,exclude_graphdriver_btrfs,exclude_graphdriver_devicemapper
export CGO_ENABLED := 0
export CONTAINERS_CONF := $(CURDIR)/scripts/containers.conf

DATA ?= $(CURDIR)/.data
export OPENSANDBOX_DATA_DIR ?= $(DATA)
export OPENSANDBOX_PODMAN_URI ?= unix://$(DATA)/run/podman.sock
export OPENSANDBOX_AGENT_BINARY ?= $(CURDIR)/bin/osb-agent
export OPENSANDBOX_PORT ?= 8080

# Every module of go.work, as package patterns.
GO_PACKAGES = $(shell go list -m | sed 's|$$|/...|')
TEST_TIMEOUT ?= 20m

.PHONY: help
help: ## list the targets
	@grep -hE '^[a-zA-Z_ -]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

.PHONY: bootstrap
bootstrap: ## install missing packages, start the Podman service, build the images
	@scripts/bootstrap.sh

.PHONY: build
build: ## build every binary into bin/
	@mkdir -p bin
	go build -trimpath -o bin/osb-agent ./services/agent
	go build -trimpath -o bin/opensandbox-server ./services/controlplane

.PHONY: dev run-dev
dev run-dev: bootstrap build ## run the combined server on 127.0.0.1:$OPENSANDBOX_PORT
	bin/opensandbox-server

.PHONY: test
test: bootstrap build test-go test-sdks ## run the whole test suite against real Podman

.PHONY: test-go
test-go: ## Go tests of every module (needs `make bootstrap build` first)
	go test -count=1 -timeout $(TEST_TIMEOUT) $(GO_PACKAGES)

.PHONY: test-sdks
test-sdks: ## each SDK's `make test` (sdks/*/Makefile), against a fresh server
	@for d in sdks/*/; do \
		[ -f $$d/Makefile ] || continue; \
		echo "==> $$d"; \
		scripts/with-server.sh $(MAKE) -C $$d test || exit 1; \
	done

.PHONY: bench
bench: bootstrap build ## print latency tables beside raw Podman (same run)
	go test -count=1 -run '^$$' -bench . -benchtime 1x -timeout 30m ./services/controlplane/bench/

.PHONY: lint
lint: ## gofmt and go vet
	@test -z "$$(gofmt -l services)" || { gofmt -l services; exit 1; }
	go vet $(GO_PACKAGES)

.PHONY: clean
clean: ## stop the Podman service, remove bin/ and .data/
	-scripts/podman-service.sh stop
	rm -rf bin $(DATA)
