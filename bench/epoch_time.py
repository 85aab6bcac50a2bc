"""One epoch of a Fashion-MNIST recipe, today's training path or the one before issue 26's fast paths.

``plain`` turns off the event-driven spike convolutions (:func:`spikevision.layers.use_spike_conv`), the
neuron's time-broadcast input (``use_kernels(broadcast=False)``), ``train.keep_freed_memory`` and
``train.channels_last``; ``fast`` is the recipe as it is; ``fast-nchw`` is the recipe with
``train.channels_last=false`` (isolates the channels-last format). Prints the engine's ``epoch_time_s`` (training only, evaluation excluded) as one JSON line. Run the
two one after the other on an idle machine::

    python bench/epoch_time.py plain
    python bench/epoch_time.py fast
    python bench/epoch_time.py fast-nchw
    python bench/epoch_time.py fast --recipe configs/ms_resnet_mini_wide_fashion_mnist.yaml

Runs go to ``/tmp/spikevision_epoch_time/epoch_<mode>`` (replaced at each call).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import time

from spikevision.layers.spike_conv import use_spike_conv
from spikevision.neuron import use_kernels
from spikevision.train.config import load_config
from spikevision.train.engine import train

OUT = "/tmp/spikevision_epoch_time"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("mode", choices=("plain", "fast", "fast-nchw"))
    ap.add_argument("--recipe", default="configs/ms_resnet_mini_fashion_mnist.yaml")
    args = ap.parse_args()
    shutil.rmtree(f"{OUT}/epoch_{args.mode}", ignore_errors=True)
    over = ["train.epochs=1", f"run.name=epoch_{args.mode}", f"run.out_dir={OUT}", "run.tensorboard=false"]
    if args.mode == "plain":
        over.append("train.keep_freed_memory=false")
    if args.mode in ("plain", "fast-nchw"):
        over.append("train.channels_last=false")
    cfg = load_config(args.recipe, over)
    with contextlib.ExitStack() as stack:
        if args.mode == "plain":
            stack.enter_context(use_spike_conv(False))
            stack.enter_context(use_kernels(broadcast=False))
        start = time.perf_counter()
        record = train(cfg)
    print(json.dumps({"mode": args.mode, "recipe": args.recipe, "epoch_time_s": round(record["epoch_time_s"], 1),
                      "test_top1": record.get("test_top1"), "total_s": round(time.perf_counter() - start, 1)}))


if __name__ == "__main__":
    main()
