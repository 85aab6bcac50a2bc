"""Running a study: each arm x seed trained (or resumed), measured, and its small result files kept.

:func:`run_study` skips runs whose results exist, resumes interrupted ones with the engine's exact resume
(``last.pt``: model, optimiser, RNG and data position) and starts the rest, so a study killed at any point
and started again loses only the steps since the last checkpoint. After each run, :func:`measure_run`
measures its final model as the study's ``measure`` section asks, and the run's ``metrics.jsonl`` and
``measures.json`` are written to its results folder (``measures.json`` last: it marks the run done).
"""

from __future__ import annotations

import copy
import json
import logging
import shutil
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from spikevision.atomic import atomic_output, write_atomic
from spikevision.studies.spec import MEASURES_FILE, StudyRun, StudySpec, plan_runs
from spikevision.train import checkpoint as ck
from spikevision.train.engine import train

__all__ = ["run_study", "run_status", "measure_run"]

log = logging.getLogger(__name__)


def run_status(run: StudyRun) -> str:
    """``"done"`` (results kept), ``"trained"`` (training finished, results not yet written),
    ``"partial"`` (a checkpoint to resume), ``"new"``, or ``"damaged (<why>)"`` (a checkpoint that cannot
    be read: a truncated or foreign ``last.pt``)."""
    if (run.results_dir / MEASURES_FILE).is_file():
        return "done"
    last = run.run_dir / ck.CHECKPOINT_DIR / ck.LAST
    if not last.is_file():
        return "new"
    try:
        state = ck.load_checkpoint(last)
        epoch = state[ck.EPOCH_KEY]
        if isinstance(epoch, bool) or not isinstance(epoch, int):
            raise ValueError(f"{last}: its epoch is {epoch!r}, not a whole number")
    except (OSError, ValueError, KeyError) as e:
        return f"damaged ({' '.join(str(e).split())})"
    return "trained" if epoch >= run.config.train.epochs else "partial"


def measure_run(run: StudyRun, options: Mapping[str, Any]) -> dict[str, Any]:
    """Firing rate, operations and energy per image of the run's final model (and, with
    ``options["isometry"]``, block-input gradient norms at initialisation and after training).

    Args:
        run: a trained study run (its ``last.pt`` is the final-epoch model).
        options: the study's ``measure`` section: ``energy``, ``isometry``,
            ``batches`` x ``batch_size`` first test images.

    Returns:
        what ``measures.json`` holds: the model's name, kwargs and parameter count, the images measured on,
        and the measures asked for.
    """
    import torch

    from spikevision.analysis.isometry import block_grad_norms
    from spikevision.analysis.load import run_test_batches
    from spikevision.analysis.report import measure
    from spikevision.models import create_model

    loaded = ck.load_run(run.run_dir, "last")
    model, state = loaded.model, loaded.state
    batches, what = run_test_batches(state, batch_size=int(options.get("batch_size", 64)),
                                     batches=int(options.get("batches", 4)))
    out: dict[str, Any] = {"model": state[ck.MODEL_NAME_KEY], "model_kwargs": state[ck.MODEL_KWARGS_KEY],
                           "parameters": sum(p.numel() for p in model.parameters()), "measured_on": what}
    if options.get("energy", True):
        prof = measure(model, batches)
        t = prof.ops.totals
        out.update(firing_rate=prof.mean_rate, energy_uj=prof.energy_pj() / 1e6, acs=t["acs"], macs=t["macs"],
                   dense_macs=t["dense_macs"], T=prof.T)
    if options.get("isometry", False):
        x, y = batches[0]
        torch.manual_seed(run.seed)
        fresh = create_model(state[ck.MODEL_NAME_KEY], **state[ck.MODEL_KWARGS_KEY])
        out["grad_norms_init"] = list(block_grad_norms(fresh.train(), x, y).values())
        out["grad_norms_trained"] = list(block_grad_norms(model.train(), x, y).values())
    return out


def run_study(spec: StudySpec, *, out_dir: str | Path = "runs/studies", results_dir: str | Path = "docs/studies",
              arms: Sequence[str] = (), seeds: Sequence[int] = (),
              on_run_done: Callable[[StudyRun], None] | None = None) -> list[StudyRun]:
    """Train (or resume) every unfinished arm x seed, then measure it (:func:`measure_run`) and keep its results.

    Args:
        spec: the study.
        out_dir: parent of the study's run directories (checkpoints; not committed).
        results_dir: parent of the study's kept results (``metrics.jsonl`` + ``measures.json`` per run).
        arms, seeds: restrict to these arms / seeds (empty = all).
        on_run_done: called after each run's results are written (the command rewrites the page).

    Returns:
        the selected runs that are done afterwards.

    Raises:
        ValueError: an unknown arm or seed in ``arms``/``seeds``.
        whatever training raises (``TrainingInterrupted`` on SIGINT/SIGTERM after
        saving, ``NonFiniteLossError``); finished runs keep their results.
    """
    unknown = [a for a in arms if a not in spec.arms] + [str(s) for s in seeds if s not in spec.seeds]
    if unknown:
        raise ValueError(f"{spec.path}: no arm or seed {', '.join(map(repr, unknown))}; arms: "
                         f"{', '.join(spec.arms)}; seeds: {', '.join(map(str, spec.seeds))}")
    runs = [r for r in plan_runs(spec, out_dir, results_dir)
            if (not arms or r.arm in arms) and (not seeds or r.seed in seeds)]
    done = []
    for i, run in enumerate(runs, 1):
        where = f"[{spec.name} {i}/{len(runs)}] {run.name}"
        status = run_status(run)
        if status == "done":
            log.info(f"{where}: done, skipped")
            done.append(run)
            continue
        if status != "trained":
            log.info(f"{where}: {'resuming' if status == 'partial' else 'training'} in {run.run_dir}")
            train(copy.deepcopy(run.config), resume=status == "partial")
        log.info(f"{where}: measuring")
        measures = measure_run(run, spec.measure)
        run.results_dir.mkdir(parents=True, exist_ok=True)
        _atomic_copy(run.run_dir / ck.METRICS_FILE, run.results_dir / ck.METRICS_FILE)
        write_atomic(run.results_dir / MEASURES_FILE, json.dumps(measures, indent=1) + "\n")  # last: marks done
        done.append(run)
        if on_run_done is not None:
            on_run_done(run)
    return done


def _atomic_copy(src: Path, dst: Path) -> None:
    with atomic_output(dst) as tmp:
        shutil.copyfile(src, tmp)
