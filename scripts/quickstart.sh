#!/usr/bin/env bash
# The main job from a fresh machine: set-up, then the quickstart.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec "${SPIKEVISION_VENV:-.venv}/bin/spikevision" smoke "$@"
