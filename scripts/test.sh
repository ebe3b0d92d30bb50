#!/usr/bin/env bash
# Installs everything and runs the whole test suite: Rust lint + tests, Python lint + types + stubs, pytest
# (unit, property, golden and integration against skopeo, umoci and a loopback docker-registry).
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONDONTWRITEBYTECODE=1
step() { printf '\n=== %s\n' "$*"; }

step "install system packages"
bash scripts/install-deps.sh --test
step "install imgcore with its test extras (release build)"
python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore ".[test]"

step "rust: fmt, clippy, tests (the core crate builds and tests without Python)"
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -q -- -D warnings
cargo test -p imgcore-core --locked -q

step "python: ruff, mypy --strict, stubtest"
python3 -m ruff check python tests benches
python3 -m ruff format --check python tests benches
python3 -m mypy python/imgcore
python3 -m mypy.stubtest imgcore._core

step "pytest (everything, integration included)"
# Run against the installed package, not the source tree; in a private temporary directory, so pytest never
# cleans up (or trips over) the directories of other runs.
basetemp="$(mktemp -d /tmp/imgcore-pytest.XXXXXX)"
python3 -m pytest -p no:cacheprovider --basetemp="$basetemp" "$@"
