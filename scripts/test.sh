#!/usr/bin/env bash
# Run the test suite from a fresh machine: set-up, then pytest on every core (pytest-xdist; each test
# module stays on one worker, in its order; modules handed out in collection order, where tests/conftest.py puts
# the heavy ones first, not pytest-xdist's default of the most tests first). SPIKEVISION_TEST_WORKERS=0 runs in
# one process.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec "${SPIKEVISION_VENV:-.venv}/bin/python" -m pytest -n "${SPIKEVISION_TEST_WORKERS:-auto}" --dist loadfile \
    --no-loadscope-reorder "$@"
