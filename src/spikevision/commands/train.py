"""``spikevision train CONFIG.yaml [key=value ...] [--resume]``: train a model from a recipe.

Single process::

    spikevision train configs/quickstart.yaml train.epochs=3 run.name=try
    spikevision train quickstart train.epochs=3      # a shipped recipe by name (`spikevision recipes`)

Distributed (one process per GPU or CPU slot; multi-node: add ``--nnodes``,
``--node_rank``, ``--rdzv_endpoint``)::

    torchrun --nproc_per_node=4 -m spikevision train configs/quickstart.yaml
"""

from __future__ import annotations

import argparse
import logging
import os

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="YAML recipe (configs/quickstart.yaml) or a shipped recipe's name (quickstart)")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="dotted overrides, values parsed as YAML (train.epochs=3 optim.lr=0.01)")
    parser.add_argument("--resume", action="store_true",
                        help="continue runs/<name>/checkpoints/last.pt exactly (model, optimiser, RNG, data position)")
    parser.add_argument("--print-config", action="store_true",
                        help="validate, print the resolved config and exit without training")


def run(args: argparse.Namespace) -> int:
    import yaml

    from spikevision.commands import EXIT_USAGE, report_error
    from spikevision.train.recipes import find_recipe
    from spikevision.train.config import ConfigError, load_config

    try:
        cfg = load_config(find_recipe(args.config), args.overrides)
    except ConfigError as e:
        return report_error("train", str(e), EXIT_USAGE)
    except FileNotFoundError as e:
        return report_error("train", str(e))
    if args.print_config:
        print(yaml.safe_dump(cfg.to_dict(), sort_keys=False), end="")
        return 0
    if cfg.train.deterministic:
        # cuBLAS needs this before CUDA starts to be deterministic
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

    from spikevision.train.engine import NonFiniteLossError, TrainingInterrupted, train

    try:
        record = train(cfg, resume=args.resume)
    except (OSError, NonFiniteLossError, ValueError) as e:  # run directory in use or unwritable, bad data, NaN
        log.debug("traceback:", exc_info=True)  # shown with `spikevision -v train ...`
        return report_error("train", f"{type(e).__name__}: {e}")
    except TrainingInterrupted as e:
        report_error("train", str(e))
        return 128 + e.signum
    if record and int(os.environ.get("RANK", "0")) == 0:
        top1 = f"test top-1 {record['test_top1']:.2f}%, " if "test_top1" in record else ""
        log.info(f"done: {top1}{record['train_time_s']:.0f} s; run directory {cfg.run.run_dir}")
    return 0
