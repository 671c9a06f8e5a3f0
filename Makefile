# OpenSandbox: every user-facing command. `make help` lists them.
SHELL := bash
.DEFAULT_GOAL := help

# Podman's bindings need these tags to build without C libraries.
export GOFLAGS := -tags=remote,containers_image_openpgp,exclude_graphdriver_btrfs,exclude_graphdriver_devicemapper
export CGO_ENABLED := 0
export CONTAINERS_CONF := $(CURDIR)/scripts/containers.conf

DATA ?= $(CURDIR)/.data
# The project's own Podman store, set up by scripts/bootstrap.sh.
export CONTAINERS_STORAGE_CONF ?= $(DATA)/containers/storage.conf
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
	go build -trimpath -o bin/opensandbox-worker ./services/worker
	go build -trimpath -o bin/osb-nats ./services/controlplane/cmd/osb-nats
	go build -trimpath -o bin/opensandbox-syncer ./services/syncer
	go build -trimpath -o bin/osb ./sdks/go/cmd/osb

.PHONY: dev run-dev
dev run-dev: bootstrap build ## run the combined server on 127.0.0.1:$OPENSANDBOX_PORT
	bin/opensandbox-server

# PostgreSQL / server modes read the addresses and secrets `make infra-up`
# wrote to .env.local (only these targets: `make dev` stays without them).
WITH_ENV_LOCAL = @test -f .env.local || { echo "no .env.local: run \`make infra-up\` first" >&2; exit 1; }; set -a; . ./.env.local; set +a;

.PHONY: infra-up infra-down infra-reset
infra-up: build ## start PostgreSQL and NATS under .data/ (no Docker) and write .env.local
	@scripts/infra.sh up
infra-down: ## stop PostgreSQL and NATS
	@scripts/infra.sh down
infra-reset: ## stop them and delete their data and .env.local
	@scripts/infra.sh reset

.PHONY: run-pg run-syncer
run-syncer: build ## a separate event syncer (JetStream -> PostgreSQL; health on :8090), beside or instead of the in-process one
	$(WITH_ENV_LOCAL) NATS_URL="$${NATS_SYNCER_URL:-$$NATS_URL}" bin/opensandbox-syncer

run-pg: bootstrap build ## combined server with PostgreSQL (API keys, quotas, sessions) on :8080
	$(WITH_ENV_LOCAL) OPENSANDBOX_MODE=combined bin/opensandbox-server

.PHONY: seed
seed: build ## create the test org with API key `test-key` (idempotent)
	$(WITH_ENV_LOCAL) bin/opensandbox-server admin seed

.PHONY: run-full-server
run-full-server: build ## control plane alone on :8080 (workers over gRPC)
	$(WITH_ENV_LOCAL) OPENSANDBOX_MODE=server OPENSANDBOX_PORT=8080 bin/opensandbox-server

WORKER_ID ?= worker-1
.PHONY: run-full-worker
run-full-worker: bootstrap build ## worker on :8081 (HTTP data path) and :9090 (gRPC)
	$(WITH_ENV_LOCAL) NATS_URL="$${NATS_WORKER_URL:-$$NATS_URL}" \
		OPENSANDBOX_PORT=8081 OPENSANDBOX_GRPC_PORT=9090 OPENSANDBOX_WORKER_ID=$(WORKER_ID) \
		OPENSANDBOX_DATA_DIR=$(DATA)/$(WORKER_ID) bin/opensandbox-worker

.PHONY: proto
proto: ## regenerate the gRPC code of services/shared/proto (pinned generators)
	@scripts/gen-proto.sh

.PHONY: test
test: bootstrap test-deps build test-go test-sdks ## run the whole test suite against real Podman

.PHONY: test-deps
test-deps: ## what only the tests need (Chromium, PostgreSQL, a registry, protoc, ansible-lint), installed when missing
	@scripts/test-deps.sh

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
bench: bootstrap build ## latency tables beside raw Podman (same run), exec throughput under load, then the event pipeline
	go test -count=1 -p 1 -run '^$$' -bench . -benchtime 1x -timeout 30m ./services/controlplane/bench/ ./services/e2e/ ./services/worker/publisher/

SOAK_DURATION ?= 10m
.PHONY: soak
soak: bootstrap build test-deps ## $(SOAK_DURATION) of mixed load with faults (server SIGKILL, Podman restart, agent kill, NATS down), then the accounting
	go run ./services/e2e/cmd/osb-soak -duration $(SOAK_DURATION)

# A release: static binaries in opensandbox_$(VERSION)_linux_amd64.tar.gz with
# its .sha256, and the control plane's and syncer's images, under dist/;
# uploaded to every region in RELEASE_TARGETS ("region=bucket,registry ...",
# from `terraform output release_target` of each region; docs/deploy.md).
RELEASE_TARGETS ?=
.PHONY: release
release: ## VERSION=v… build a release into dist/ and upload it to RELEASE_TARGETS (S3 + ECR)
	@test -n "$(VERSION)" || { echo "usage: make release VERSION=v0.1.0 [RELEASE_TARGETS='us-east-1=bucket,registry ...']" >&2; exit 1; }
	go run ./scripts/release build -version $(VERSION) -out dist
	@if [ -n "$(RELEASE_TARGETS)" ]; then \
		go run ./scripts/release upload -version $(VERSION) -dist dist $(foreach t,$(RELEASE_TARGETS),-target $(t)); \
	else echo "RELEASE_TARGETS is empty: built into dist/, nothing uploaded"; fi

.PHONY: lint
lint: ## gofmt and go vet
	@test -z "$$(gofmt -l services)" || { gofmt -l services; exit 1; }
	go vet $(GO_PACKAGES)

.PHONY: clean
clean: ## stop the Podman service, remove bin/ and .data/
	-scripts/infra.sh down
	-test -f $(CONTAINERS_STORAGE_CONF) && podman rm -af -t 0 >/dev/null
	-scripts/podman-service.sh stop
	@# sandbox disks and run directories: never delete through a mount
	-awk '$$5 ~ "^$(DATA)/" {print $$5}' /proc/self/mountinfo | sort -r | xargs -r umount -l
	rm -rf bin $(DATA)
