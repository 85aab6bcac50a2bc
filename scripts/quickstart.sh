#!/usr/bin/env bash
# The main job from a fresh machine: set-up, then the quickstart:
# train a small spiking network on Fashion-MNIST (configs/quickstart.yaml), evaluate it on the
# test set, and print the summary (test accuracy, mean firing rate, parameters, wall time).
#
#   bash scripts/quickstart.sh                      # run directory runs/quickstart-<date-time>
#   RUN_NAME=mine bash scripts/quickstart.sh train.epochs=1 data.root=/data/fmnist
#   bash scripts/quickstart.sh run.out_dir=/tmp/runs  # OUT_DIR=/tmp/runs does the same
#
# Extra arguments are key=value overrides of the recipe (see docs/training.md).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
SV="${SPIKEVISION_VENV:-.venv}/bin/spikevision"
RUN_NAME="${RUN_NAME:-quickstart-$(date +%Y%m%d-%H%M%S)}"
OUT_DIR="${OUT_DIR:-runs}"
for arg in "$@"; do  # run.name=/run.out_dir= overrides win over the variables, as they do in train
  case "$arg" in
    run.name=*) RUN_NAME="${arg#run.name=}" ;;
    run.out_dir=*) OUT_DIR="${arg#run.out_dir=}" ;;
  esac
done

start=$(date +%s)
"$SV" train configs/quickstart.yaml run.name="$RUN_NAME" run.out_dir="$OUT_DIR" "$@"
trained=$(date +%s)
echo
echo "== summary of $OUT_DIR/$RUN_NAME =="
"$SV" eval "$OUT_DIR/$RUN_NAME" --checkpoint last
echo "wall time        $((trained - start)) s training (incl. start-up and per-epoch evaluation), $(( $(date +%s) - start )) s in all"
