"""``spikevision study STUDY``: train every arm x seed of a study, then write its page.

::

    spikevision study studies/depth.yaml                  # train what is missing (resumes), write docs/studies/depth.md
    spikevision study depth                               # the same: a name is looked up in ./studies/
    spikevision study depth --arms ms_resnet20 --seeds 0  # only part of it
    spikevision study depth --report-only                 # rewrite the page from the kept results, no training
    spikevision study depth --status                      # what is done, partial or new

Runs go to ``--out-dir`` (default ``runs/studies``: checkpoints, not
committed); per-run results (``metrics.jsonl``, ``measures.json``) and the page
to ``--results-dir`` (default ``docs/studies``). Stopping the command
(Ctrl-C, SIGTERM, a kill) at any point and starting it again continues where it
stopped (see :mod:`spikevision.studies`, which does the work; this module only parses the command line and
reports). Exit statuses (as every command,
:mod:`spikevision.commands`): 0 done, 1 a study file or recipe not found, a run
failed (NaN loss, bad data) or (``--status``) a damaged checkpoint, 2 an invalid study file,
128 + signal when stopped.
"""

from __future__ import annotations

import argparse
import logging
import signal
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from spikevision.studies import StudySpec

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The command's options."""
    parser.add_argument("study", metavar="STUDY", help="study file (studies/<name>.yaml) or a name in ./studies/")
    parser.add_argument("--report-only", action="store_true", help="only rewrite the page from the kept results")
    parser.add_argument("--status", action="store_true", help="print each run's state and exit")
    parser.add_argument("--arms", nargs="+", default=(), metavar="ARM", help="only these arms")
    parser.add_argument("--seeds", nargs="+", type=int, default=(), metavar="SEED", help="only these seeds")
    parser.add_argument("--out-dir", default="runs/studies", help="parent of the run directories (runs/studies)")
    parser.add_argument("--results-dir", default="docs/studies",
                        help="parent of the kept per-run results and of the page (docs/studies)")


def resolve_study(name: str) -> Path:
    """A study file path as given, else ``studies/<name>.yaml``."""
    p = Path(name)
    if p.is_file() or p.suffix in (".yaml", ".yml"):
        return p
    return Path("studies") / f"{name}.yaml"


def _print_status(spec: "StudySpec", args: argparse.Namespace) -> int:
    """``--status``: each run's state; 1 when a checkpoint is damaged (naming the file to delete)."""
    from spikevision.commands import report_error
    from spikevision.studies import plan_runs, run_status

    damaged = []
    for r in plan_runs(spec, args.out_dir, args.results_dir):
        state = run_status(r)
        print(f"{r.name:40s} {state}")
        damaged += [r] if state.startswith("damaged") else []
    if damaged:
        return report_error("study", f"{len(damaged)} run(s) have a damaged checkpoint "
                                     f"({', '.join(r.name for r in damaged)}); delete "
                                     f"{damaged[0].run_dir / 'checkpoints' / 'last.pt'} to train it again")
    return 0


def run(args: argparse.Namespace) -> int:
    """Run the command (see the module docstring); returns the exit status."""
    from spikevision.commands import EXIT_USAGE, report_error
    from spikevision.studies import load_study, run_study, write_study_page
    from spikevision.train.config import ConfigError
    from spikevision.train.engine import NonFiniteLossError, TrainingInterrupted

    try:
        spec = load_study(resolve_study(args.study))
    except ConfigError as e:
        return report_error("study", str(e), EXIT_USAGE)
    except FileNotFoundError as e:
        return report_error("study", str(e))
    if args.status:
        return _print_status(spec, args)
    if not args.report_only:
        try:
            run_study(spec, out_dir=args.out_dir, results_dir=args.results_dir, arms=args.arms, seeds=args.seeds,
                      on_run_done=lambda _run: write_study_page(spec, args.results_dir))
        except TrainingInterrupted as e:
            report_error("study", f"stopped by {signal.Signals(e.signum).name}; checkpoint saved to {e.path}; "
                                  f"run `spikevision study {args.study}` again to continue")
            return 128 + e.signum
        except (OSError, NonFiniteLossError, ValueError) as e:
            log.debug("traceback:", exc_info=True)
            return report_error("study", f"{type(e).__name__}: {e}")
    path = write_study_page(spec, args.results_dir)
    print(f"wrote {path}")
    return 0
