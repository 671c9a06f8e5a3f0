#!/usr/bin/env bash
# Regenerates the Go code of services/shared/proto/*.proto with pinned
# generators: protoc from Debian's protobuf-compiler, protoc-gen-go and
# protoc-gen-go-grpc built from the Go module proxy at fixed versions.
set -euo pipefail
cd "$(dirname "$0")/.."

PROTOC_GEN_GO=google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.9
PROTOC_GEN_GO_GRPC=google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.5.1

if ! command -v protoc >/dev/null; then
	if [ "$(id -u)" = 0 ]; then
		echo "==> installing protobuf-compiler"
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq protobuf-compiler >/dev/null
	else
		echo "protoc is missing: apt-get install protobuf-compiler" >&2
		exit 1
	fi
fi

bin=$PWD/.data/protoc-bin
mkdir -p "$bin"
for tool in "$PROTOC_GEN_GO" "$PROTOC_GEN_GO_GRPC"; do
	GOFLAGS= GOWORK=off GOBIN=$bin go install "$tool"
done

cd services/shared/proto
# One package per file: <name>.proto -> <name>v1/.
for file in worker events; do
	out=$(mktemp -d)
	protoc --proto_path=. \
		--plugin=protoc-gen-go="$bin/protoc-gen-go" --go_out="$out" --go_opt=paths=source_relative \
		--plugin=protoc-gen-go-grpc="$bin/protoc-gen-go-grpc" --go-grpc_out="$out" --go-grpc_opt=paths=source_relative \
		"$file.proto"
	mkdir -p "${file}v1"
	for f in "$out"/*.go; do
		mv "$f" "${file}v1/$(basename "$f")"
	done
	rm -rf "$out"
	echo "==> generated: $(ls "${file}v1" | tr '\n' ' ')"
done
