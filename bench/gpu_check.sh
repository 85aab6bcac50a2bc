#!/usr/bin/env bash
# GPU check of the neuron kernels: the CUDA tests and both benches on CUDA, every table in one folder,
# in under 5 minutes, so the first GPU lent measures everything in one call.
#
#   bash bench/gpu_check.sh OUT_DIR          # on a machine with a CUDA GPU
#   bash bench/gpu_check.sh --cpu OUT_DIR    # the same steps on CPU with tiny sizes (the test suite runs this)
#
# Writes into OUT_DIR: env.txt (GPU, versions, which neuron kernels run), tests.log (the CUDA tests of
# tests/neuron: the reference grid on the GPU, agreement with the C kernel, 16-bit and PLIF), neuron.md
# (bench/neuron.py against SpikingJelly's Triton neurons), neuron-cupy.md (against SpikingJelly 0.0.0.0.x's
# CuPy neurons, when that version is supplied), train_step.md (bench/train_step.py), and summary.md (each
# step: ok, FAILED with its exit code, or skipped, and its seconds). Every step has a time limit, so one
# slow step cannot eat the others' time; the script exits 1 if a step failed.
#
# Python: $PYTHON, else .venv/bin/python, else python3; the package is imported from src/ (no install).
# SpikingJelly is optional (its columns are skipped without it). Wheels found in .whl/ (e.g. from
# `pip download --no-deps -d .whl spikingjelly==2.0.0 loguru`) are installed into a temporary folder first;
# wheels in .whl/legacy/ (spikingjelly==0.0.0.0.14) into another one, for the CuPy column.
set -uo pipefail
cd "$(dirname "$0")/.."

MODE=cuda
if [[ "${1:-}" == "--cpu" ]]; then MODE=cpu; shift; fi
OUT="${1:?usage: bash bench/gpu_check.sh [--cpu] OUT_DIR}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
PY="${PYTHON:-}"
if [[ -z "$PY" ]]; then
    if [[ -x .venv/bin/python ]]; then PY=.venv/bin/python; else PY=python3; fi
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
SUMMARY="$OUT/summary.md"
printf '| step | status | seconds |\n|---|---|---:|\n' >"$SUMMARY"
FAILED=0

step() {  # step NAME LIMIT_S LOG COMMAND...: run with a time limit, output to LOG, one summary row
    local name=$1 limit=$2 log=$3; shift 3
    local start=$SECONDS
    echo "== $name (limit ${limit}s) -> $log"
    timeout "$limit" "$@" >"$log" 2>&1
    local rc=$?
    local status=ok
    if [[ $rc -eq 124 ]]; then status="FAILED (over ${limit}s)"; elif [[ $rc -ne 0 ]]; then status="FAILED (exit $rc)"; fi
    [[ $status == ok ]] || FAILED=1
    echo "| $name | $status | $((SECONDS - start)) |" >>"$SUMMARY"
    tail -n 3 "$log"
}

skip() { echo "| $1 | skipped: $2 | 0 |" >>"$SUMMARY"; echo "== $1 skipped: $2"; }

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

install_wheels() {  # install_wheels DIR TARGET: the wheels of DIR into TARGET; prints TARGET if any
    local wheels=("$1"/*.whl)
    [[ -e "${wheels[0]}" ]] || return 0
    "$PY" -m pip install -q --no-index --no-deps --no-compile --target "$2" "${wheels[@]}" >/dev/null 2>&1 && echo "$2"
}

SITE=$(install_wheels .whl "$TMP/site")
LEGACY=$(install_wheels .whl/legacy "$TMP/legacy")
SJ_PATH="${SITE:+$SITE:}$PYTHONPATH"

if [[ $MODE == cuda ]]; then
    DEV=(--device cuda)
    NEURON=(--T 4 8 16 --reps 9 --warmup 3)
    TRAIN=(--models ms_resnet18,ms_resnet20 --T 4 --batch 32 --reps 5 --warmup 2)
    TESTS=(tests/neuron/test_triton.py tests/neuron/test_kernel.py -k cuda)
    LIMITS=(150 60 120 40)
else  # tiny and quick: checks that every step runs and writes its table
    DEV=(--device cpu)
    NEURON=(--T 2 --reps 1 --warmup 0 --shape 2 8 --config ms-resnet)
    TRAIN=(--models ms_resnet20 --T 2 --batch 1 --size 8 --reps 1 --warmup 0 --no-memory --contenders spikevision)
    TESTS=(tests/neuron/test_triton.py -k cuda)
    LIMITS=(120 120 120 60)
fi

{
    [[ $MODE == cuda ]] && nvidia-smi -L
    "$PY" -m spikevision version
    echo "mode: $MODE; SpikingJelly wheels: ${SITE:-none}; legacy: ${LEGACY:-none}"
} >"$OUT/env.txt" 2>&1
cat "$OUT/env.txt"

step tests "${LIMITS[0]}" "$OUT/tests.log" "$PY" -m pytest -q -p no:cacheprovider "${TESTS[@]}"
step neuron "${LIMITS[1]}" "$OUT/neuron.md" env PYTHONPATH="$SJ_PATH" \
    "$PY" bench/neuron.py "${DEV[@]}" "${NEURON[@]}" --sj-backend triton
step train_step "${LIMITS[2]}" "$OUT/train_step.md" env PYTHONPATH="$SJ_PATH" \
    "$PY" bench/train_step.py "${DEV[@]}" "${TRAIN[@]}" --sj-backend triton
if [[ -n "$LEGACY" && $MODE == cuda ]]; then
    step neuron_cupy "${LIMITS[3]}" "$OUT/neuron-cupy.md" env PYTHONPATH="$LEGACY:$PYTHONPATH" \
        "$PY" bench/neuron.py "${DEV[@]}" "${NEURON[@]}" --sj-backend cupy
else
    skip neuron_cupy "no SpikingJelly 0.0.0.0.x wheel in .whl/legacy (or not on a GPU)"
fi

cat "$SUMMARY"
exit $FAILED
