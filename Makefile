# `make` runs the whole local loop; scripts/test.sh is what CI runs.
.PHONY: all install build-dev build-prod format lint lint-python lint-rust stubtest test test-fast test-rust test-integration bench fuzz clean demo docs

all: format build-dev lint test

install:
	bash scripts/install-deps.sh --test
	pip install -e ".[test]" --config-settings=build-args="--profile dev-fast"

build-dev:
	pip install -q -e . --config-settings=build-args="--profile dev-fast"

build-prod:
	pip install -q .

format:
	cargo fmt --all
	ruff format python tests benches
	ruff check --fix -q python tests benches

lint: lint-rust lint-python stubtest

lint-rust:
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings

lint-python:
	ruff check python tests benches
	ruff format --check python tests benches
	mypy python/imgcore

stubtest:
	python -m mypy.stubtest imgcore._core

test: test-rust
	python -m pytest

test-fast:
	HYPOTHESIS_PROFILE=quick python -m pytest -m "not integration and not slow" -x -q

test-rust:
	cargo test -p imgcore-core

test-integration:
	python -m pytest -m integration

bench:
	python benches/run.py

fuzz:
	cargo install cargo-fuzz --locked || true
	cd rust/core && RUSTC_BOOTSTRAP=1 cargo fuzz run extract -- -max_total_time=300

demo:
	bash scripts/demo.sh

docs:
	bash scripts/docs.sh

clean:
	rm -rf target dist .pytest_cache .hypothesis
