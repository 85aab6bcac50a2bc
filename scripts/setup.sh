#!/usr/bin/env bash
# Set up everything spikevision needs on a fresh machine (idempotent):
#   a virtual environment in .venv (override with SPIKEVISION_VENV), torch and
#   torchvision pinned for this machine, spikevision itself with its test
#   extras, and the Debian Fashion-MNIST package when apt is available.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${SPIKEVISION_VENV:-.venv}"
PY="$(command -v python3.11 || command -v python3)"

if [ ! -x "$VENV/bin/python" ]; then
    echo "[setup] creating virtual environment $VENV"
    "$PY" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
# setuptools >= 77 reads pyproject's SPDX license and license-files (tests/test_packaging.py builds a wheel
# offline with the environment's setuptools); a Python 3.11 venv starts with an older one
if ! "$VENV/bin/python" -c "import setuptools, sys; sys.exit(int(setuptools.__version__.split('.')[0]) < 77)" \
        >/dev/null 2>&1; then
    echo "[setup] installing setuptools>=77"
    "${PIP[@]}" install "setuptools>=77"
fi
if ! "$VENV/bin/python" -c "import torch, torchvision, spikevision, pytest, xdist, nir, neurobench, snntorch, \
        spikingjelly.activation_based.nir_exchange, onnx, onnxscript, onnxruntime, mkdocstrings_handlers.python" \
        >/dev/null 2>&1; then
    echo "[setup] installing packages (torch from requirements/torch.txt)"
    "${PIP[@]}" install -r requirements/torch.txt
    # onnx: tests/deploy/test_onnx_export.py; docs: the API reference build in tests/test_docs.py
    "${PIP[@]}" install -e ".[test,onnx,docs]"
    # neurobench only for tests/analysis/test_synops.py::test_equal_to_neurobench; without --no-deps it pulls
    # snntorch, tonic, librosa, numba and torchaudio (and a different torch)
    "${PIP[@]}" install --no-deps "neurobench==2.3.0"
    # the NIR clients that tests/deploy/test_nir_export.py runs the exported files in (1.5 MB, pure Python);
    # --no-deps: snntorch 1.0 declares none, spikingjelly 2.0 would pull torchaudio, scipy and a torch of its own
    "${PIP[@]}" install --no-deps "snntorch==1.0.0" "nirtorch==2.6" "spikingjelly==2.0.0" "loguru==0.7.3"
fi

FMNIST=/usr/share/datasets/fashion-mnist
if [ ! -f "$FMNIST/train-images-idx3-ubyte.gz" ] && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "[setup] installing Debian package dataset-fashion-mnist"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist) >/dev/null 2>&1 \
        || echo "[setup] could not install dataset-fashion-mnist; pass --data-root to a folder with the IDX files"
fi

# the Cortex-M target (tests/deploy/test_cortex_m.py, bench/mcu.py): cross-compiler, newlib, QEMU
if ! { command -v arm-none-eabi-gcc && command -v qemu-system-arm; } >/dev/null 2>&1 \
        && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "[setup] installing Debian packages gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm) >/dev/null 2>&1 \
        || echo "[setup] could not install the Cortex-M toolchain; its test skips"
fi
echo "[setup] ready: $VENV"
