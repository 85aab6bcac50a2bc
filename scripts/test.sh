#!/usr/bin/env bash
# Run the test suite from a fresh machine: set-up, then pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec "${SPIKEVISION_VENV:-.venv}/bin/python" -m pytest "$@"
