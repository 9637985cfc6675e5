# ecs-operator: `make demo` shows it working, `make test` proves it.
# Everything installs itself: the Go-built control plane (cached under ~/.cache, keyed by
# version), moto in .testenv/venv, and the Rust build in target/.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
VENV_PY := .testenv/venv/bin/python
CARGO ?= cargo
# Incremental state is 1.5 GB of target/debug for one build of the tests, and each build is
# from scratch in CI, where the disk once filled while linking them (the Go caches are the
# other part: tests/testenv/build.sh). `make test CARGO_INCREMENTAL=1` turns it back on.
export CARGO_INCREMENTAL ?= 0

.PHONY: bench test testenv testenv-down tools demo crds generate lint fmt clean image-build

## test: install what is needed, start the test bed, check formatting and lints, run all
## tests, and build the release binary the way the Dockerfile does
test: testenv lint image-build
	$(CARGO) test --all-targets --locked

## image-build: the Dockerfile's build command (no Docker engine runs here), and a check
## that the binary carries the version of Cargo.toml
image-build:
	grep -q 'cargo build --release --locked --bin ecs-operator' Dockerfile
	$(CARGO) build --release --locked --bin ecs-operator
	test "$$(target/release/ecs-operator --version)" = "ecs-operator $$(awk -F'"' '/^version/{print $$2; exit}' Cargo.toml)"
	@echo "image-build: the release binary builds and reports its version"

## bench: N services with their task definitions (BENCH_SERVICES, default 1000) against
## ECS's buckets (alone, beside a neighbour, as two shards) and without limits
## (BENCH_MODES); prints a table, writes target/bench/summary.json
bench: testenv
	$(CARGO) bench --locked --bench scale

## tools: build kube-apiserver, etcd, kube-controller-manager and kubectl; create the venv;
## Debian's lua5.4 runs config/argocd/health.lua in the tests
tools:
	bash tests/testenv/build.sh
	bash tests/testenv/venv.sh
	@command -v lua5.4 >/dev/null || { apt-get update -qq && apt-get install -y -qq lua5.4 >/dev/null; }

## testenv: start (or reuse) the local control plane and ECS endpoint; writes .testenv/env
testenv: tools
	$(VENV_PY) tests/testenv/testenv.py up

## testenv-down: stop the local control plane and ECS endpoint
testenv-down:
	@if [ -x $(VENV_PY) ]; then $(VENV_PY) tests/testenv/testenv.py down; fi

## demo: start everything, run the operator, apply config/samples and show the result
demo: testenv
	bash tests/testenv/demo.sh

## crds: regenerate crds/ and the chart's crds/ from the Rust types
crds:
	$(CARGO) run --quiet --locked -- crd --out-dir crds
	$(CARGO) run --quiet --locked -- crd --out-dir charts/ecs-operator/crds

## generate: regenerate the ECS input mirrors from botocore's model, then crds/
generate: tools
	$(VENV_PY) src/api/codegen/generate_ecs_types.py > src/api/ecs_types.rs
	$(CARGO) fmt
	$(MAKE) crds

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets --locked -- -D warnings

fmt:
	$(CARGO) fmt --all

clean: testenv-down
	rm -rf .testenv target
