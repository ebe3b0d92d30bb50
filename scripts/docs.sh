#!/usr/bin/env bash
# Builds the API reference from the docstrings with pdoc into docs/api/ (or $1); warnings fail the build.
# Needs pdoc (the `test` extra: pip install pdoc). Uses the source tree, so no install is needed.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/python${PYTHONPATH:+:$PYTHONPATH}"
exec python3 -W error scripts/docs.py "${1:-docs/api}"
