"""``spikevision train CONFIG.yaml [key=value ...] [--resume]``: train a model from a recipe.

Single process::

    spikevision train configs/quickstart.yaml train.epochs=3 run.name=try

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
    parser.add_argument("config", help="YAML recipe, e.g. configs/quickstart.yaml")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="dotted overrides, values parsed as YAML (train.epochs=3 optim.lr=0.01)")
    parser.add_argument("--resume", action="store_true",
                        help="continue runs/<name>/checkpoints/last.pt exactly (model, optimiser, RNG, data position)")
    parser.add_argument("--print-config", action="store_true",
                        help="validate, print the resolved config and exit without training")


def run(args: argparse.Namespace) -> int:
    import yaml

    from spikevision.train.config import ConfigError, load_config

    try:
        cfg = load_config(args.config, args.overrides)
    except (ConfigError, FileNotFoundError) as e:
        log.error(str(e))
        return 2
    if args.print_config:
        print(yaml.safe_dump(cfg.to_dict(), sort_keys=False), end="")
        return 0
    if cfg.train.deterministic:
        # cuBLAS needs this before CUDA starts to be deterministic
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

    from spikevision.train.engine import NonFiniteLossError, TrainingInterrupted, train

    try:
        record = train(cfg, resume=args.resume)
    except (FileExistsError, FileNotFoundError, NonFiniteLossError, ValueError) as e:
        log.debug("traceback:", exc_info=True)  # shown with `spikevision -v train ...`
        log.error(f"{type(e).__name__}: {e}")
        return 1
    except TrainingInterrupted as e:
        log.error(str(e))
        return 128 + e.signum
    if record and int(os.environ.get("RANK", "0")) == 0:
        top1 = f"test top-1 {record['test_top1']:.2f}%, " if "test_top1" in record else ""
        log.info(f"done: {top1}{record['train_time_s']:.0f} s; run directory {cfg.run.run_dir}")
    return 0
