#!/usr/bin/env bash
# Installs imgcore (release build) and runs the main job: the seed's workflow in a fresh store.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore .
exec python3 -m imgcore demo "$@"
