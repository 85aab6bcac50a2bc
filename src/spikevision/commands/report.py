"""``spikevision report RUN_DIR``: ``RUN_DIR/report.md`` with training curves, firing rates, operations, energy.

Reads ``metrics.jsonl`` (accuracy, curves), loads the run's checkpoint
(``best.pt``, else ``last.pt``; ``--checkpoint last``), measures firing rates
and operations on the first ``--batches`` test batches of the run's own data
set (``--data-root`` when the data moved) and writes ``RUN_DIR/report.md``
plus PNG figures in ``RUN_DIR/report/`` (see
:mod:`spikevision.analysis.report`). Nothing is written when anything fails.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="RUN_DIR", help="run directory written by `spikevision train` (runs/<name>)")
    parser.add_argument("--data-root", default=None, help="data folder (default: the run's data.root)")
    parser.add_argument("--batches", type=int, default=4, help="test batches to measure on (default 4)")
    parser.add_argument("--batch-size", type=int, default=16, help="samples per test batch (default 16)")
    parser.add_argument("--checkpoint", choices=("best", "last"), default="best",
                        help="which checkpoint to measure (default best, else last)")
    parser.add_argument("--seed", type=int, default=0, help="torch seed before measuring (stochastic encoders)")
    parser.add_argument("--device", default="cpu", help="device for the measurement (default cpu)")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from spikevision.analysis.report import write_report
    from spikevision.commands import check_writable, user_errors

    if Path(args.run_dir).is_dir():  # before measuring, so that a read-only run directory costs nothing
        check_writable("report", Path(args.run_dir) / "report.md")
    with user_errors("report"):
        path = write_report(args.run_dir, batches=args.batches, batch_size=args.batch_size,
                            data_root=args.data_root, checkpoint=args.checkpoint, seed=args.seed,
                            device=args.device)
    print(f"wrote {path} and figures in {path.parent / 'report'}")
    return 0
