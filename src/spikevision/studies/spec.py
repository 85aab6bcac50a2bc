"""Studies: every arm x seed of a comparison trained under one budget, resumable at any point.

A study is one YAML file (``studies/<name>.yaml``)::

    title: "MS-ResNet vs vanilla spiking ResNet over depth (Hu et al., TNNLS 2024)"
    claim: "MS-ResNet does not lose accuracy as depth grows; the vanilla network does."
    recipe: configs/quickstart.yaml      # base recipe (optional; omitted = the config defaults)
    settings:                            # the budget, the same for every arm
      train.epochs: 3
      model.T: 2
    seeds: [0, 1, 2]
    arms:                                # arm name -> its own settings
      ms_resnet20: {model.name: ms_resnet20}
      spiking_resnet20: {model.name: spiking_resnet20}
    measure: {energy: true, isometry: false}
    verdict: "free text, written after the results"   # optional

Each arm x seed is an ordinary training run in ``<out_dir>/<study>/<arm>-s<seed>/``
(seed ``s`` sets ``train.seed`` and ``data.seed``). :func:`run_study` skips
runs that finished, resumes interrupted ones with the engine's exact resume
(``last.pt``: model, optimiser, RNG and data position), and starts the rest, so
a study killed at any point and started again loses only the steps since the
last checkpoint. After each run it writes the run's small result files
(``metrics.jsonl`` and ``measures.json``: firing rate, operations and energy
per image, optionally the gradient-isometry probe) to
``<results_dir>/<study>/<arm>-s<seed>/``, where
:mod:`spikevision.analysis.study_report` reads them to write the study's page;
those files are small enough to commit, so the page can be regenerated
without retraining.

Use: ``spikevision study studies/depth.yaml`` (``--report-only`` to rewrite the page).
"""

from __future__ import annotations

import copy
import json
import logging
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import yaml

from spikevision.atomic import atomic_output, write_atomic
from spikevision.train.config import Config, ConfigError, apply_settings, config_from_dict, read_recipe
from spikevision.train.yaml_loader import yaml_error_text, yaml_load
from spikevision.validation import did_you_mean

__all__ = ["StudySpec", "StudyRun", "load_study", "plan_runs", "run_study", "run_status", "MEASURES_FILE",
           "STUDY_KEYS", "PINNED_KEYS"]

log = logging.getLogger(__name__)

MEASURES_FILE = "measures.json"  # per run, next to its copied metrics.jsonl
STUDY_KEYS = ("title", "claim", "recipe", "settings", "seeds", "arms", "measure", "verdict", "notes")
MEASURE_KEYS = ("energy", "isometry", "batches", "batch_size")
PINNED_KEYS = ("train.seed", "data.seed", "run.name", "run.out_dir")  # set per run by the runner
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")


@dataclass
class StudySpec:
    """A parsed study file (see the module docstring for the format).

    Args:
        name: the study's name (the file's stem): folder of its runs and results.
        path: the study file.
        title, claim: what the study tests, for its page.
        recipe: base recipe file, resolved (None = config defaults).
        settings: dotted settings shared by every arm (the budget).
        seeds: seeds of every arm.
        arms: arm name -> its dotted settings (applied after ``settings``).
        measure: ``energy`` (firing rate, ops, energy per image on test images),
            ``isometry`` (block-input gradient norms at initialisation and after
            training), ``batches`` x ``batch_size`` test images for both.
        verdict, notes: free text for the page.
    """

    name: str
    path: Path
    title: str = ""
    claim: str = ""
    recipe: Path | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    seeds: list[int] = field(default_factory=lambda: [0])
    arms: dict[str, dict[str, Any]] = field(default_factory=dict)
    measure: dict[str, Any] = field(default_factory=lambda: {"energy": True, "isometry": False,
                                                             "batches": 4, "batch_size": 64})
    verdict: str = ""
    notes: str = ""


@dataclass(frozen=True)
class StudyRun:
    """One arm x seed: its name (``<arm>-s<seed>``), validated config and folders."""

    arm: str
    seed: int
    config: Config
    results_dir: Path  # where metrics.jsonl + measures.json are kept (committed)

    @property
    def name(self) -> str:
        return f"{self.arm}-s{self.seed}"

    @property
    def run_dir(self) -> Path:
        return self.config.run.run_dir


def _resolve_recipe(recipe: str, study_path: Path) -> Path:
    """As given (absolute or from the working directory), else next to the study file, else one folder up,
    else a shipped recipe of that name (``quickstart``, ``configs/quickstart.yaml``)."""
    from spikevision.train.recipes import find_recipe

    p = Path(recipe).expanduser()
    for cand in (p, study_path.parent / p, study_path.parent.parent / p):
        if cand.is_file():
            return cand
    try:
        return find_recipe(recipe)
    except FileNotFoundError as e:
        raise FileNotFoundError(f"{study_path}: recipe {recipe!r} not found (looked in the working directory, "
                                f"{study_path.parent}, {study_path.parent.parent} and the shipped recipes: "
                                f"{e})") from None


def _settings(value: Any, where: str, errors: list[str]) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        errors.append(f"{where} must be a mapping of dotted keys to values (train.epochs: 3), got {value!r}")
        return {}
    return dict(value)


def load_study(path: str | Path) -> StudySpec:
    """Read and validate a study file; every arm x seed config is checked before anything runs.

    Raises:
        FileNotFoundError: no such study file or recipe.
        ConfigError: every problem at once (unknown keys with the nearest valid
            one, bad seeds or arm names, and each arm's invalid config).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"study file {path} not found; pass studies/<name>.yaml")
    try:
        raw = yaml_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError([f"{path}{yaml_error_text(e)}"]) from None
    except UnicodeDecodeError as e:
        raise ConfigError([f"{path}: not a text file ({e.reason} at byte {e.start})"]) from None
    if not isinstance(raw, Mapping):
        raise ConfigError([f"{path}: a study must be a mapping with {', '.join(STUDY_KEYS)}"])
    errors: list[str] = []
    for key in raw:
        if key not in STUDY_KEYS:
            errors.append(f"unknown study key {key!r}{did_you_mean(key, STUDY_KEYS)}; "
                          f"valid keys: {', '.join(STUDY_KEYS)}")
    spec = StudySpec(name=path.stem, path=path)
    for key in ("title", "claim", "verdict", "notes"):
        if raw.get(key) is not None:
            setattr(spec, key, str(raw[key]).strip())
    if raw.get("recipe") is not None:
        spec.recipe = _resolve_recipe(str(raw["recipe"]), path)
    spec.settings = _settings(raw.get("settings"), "settings", errors)
    seeds = raw.get("seeds", [0])
    if (not isinstance(seeds, list) or not seeds or len(set(map(str, seeds))) != len(seeds)
            or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds)):
        errors.append(f"seeds must be a non-empty list of distinct ints >= 0, got {seeds!r}")
    else:
        spec.seeds = seeds
    arms = raw.get("arms")
    if not isinstance(arms, Mapping) or not arms:
        errors.append("arms must be a non-empty mapping: arm name -> its settings ({model.name: ms_resnet20})")
    else:
        for name, value in arms.items():
            if not isinstance(name, str) or not _NAME.match(name):
                errors.append(f"arm name {name!r} must be letters, digits and _.+- (it names a folder)")
            spec.arms[str(name)] = _settings(value, f"arm {name!r}", errors)
    measure = raw.get("measure") or {}
    if not isinstance(measure, Mapping):
        errors.append(f"measure must be a mapping ({', '.join(MEASURE_KEYS)}), got {measure!r}")
    else:
        for key, value in measure.items():
            if key not in MEASURE_KEYS:
                errors.append(f"unknown measure key {key!r}{did_you_mean(key, MEASURE_KEYS)}; "
                              f"valid: {', '.join(MEASURE_KEYS)}")
            elif key in ("batches", "batch_size") and (not isinstance(value, int) or value < 1):
                errors.append(f"measure.{key} must be a positive int, got {value!r}")
            elif key in ("energy", "isometry") and not isinstance(value, bool):
                errors.append(f"measure.{key} must be true or false, got {value!r}")
            else:
                spec.measure[key] = value
    if errors:
        raise ConfigError([f"{path}: {e}" for e in errors])
    plan_runs(spec)  # validates every arm's config
    return spec


def plan_runs(spec: StudySpec, out_dir: str | Path = "runs/studies",
              results_dir: str | Path = "docs/studies") -> list[StudyRun]:
    """Every arm x seed as a validated run, in order (arms as written, seeds inner).

    Raises:
        ConfigError: every arm whose config is invalid, each named.
    """
    base = read_recipe(spec.recipe)
    runs, errors = [], []
    for arm, arm_settings in spec.arms.items():
        clash = sorted(k for k in PINNED_KEYS if k in arm_settings or k in spec.settings)
        if clash:
            errors.append(f"arm {arm!r}: {', '.join(clash)} are set by the study runner (seeds, folders)")
            continue
        for seed in spec.seeds:
            name = f"{arm}-s{seed}"
            pinned = {"train.seed": seed, "data.seed": seed, "run.name": name,
                      "run.out_dir": str(Path(out_dir) / spec.name)}
            try:
                cfg = config_from_dict(apply_settings(base, [*spec.settings.items(), *arm_settings.items(),
                                                             *pinned.items()]))
            except ConfigError as e:
                errors.extend(f"arm {arm!r}: {m}" for m in e.errors)
                break  # the same problem for every seed: report it once
            runs.append(StudyRun(arm, seed, cfg, Path(results_dir) / spec.name / name))
    if errors:
        raise ConfigError([f"{spec.path}: {e}" for e in errors])
    return runs


def run_status(run: StudyRun) -> str:
    """``"done"`` (results kept), ``"trained"`` (training finished, results not yet written),
    ``"partial"`` (a checkpoint to resume), ``"new"``, or ``"damaged (<why>)"`` (a checkpoint that cannot
    be read: a truncated or foreign ``last.pt``)."""
    from spikevision.train import checkpoint as ck
    from spikevision.train.engine import LAST

    if (run.results_dir / MEASURES_FILE).is_file():
        return "done"
    last = run.run_dir / "checkpoints" / LAST
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


Measure = Callable[[StudyRun, Mapping[str, Any]], dict[str, Any]]


def run_study(spec: StudySpec, *, out_dir: str | Path = "runs/studies", results_dir: str | Path = "docs/studies",
              measure: Measure | None = None, arms: Sequence[str] = (), seeds: Sequence[int] = (),
              on_run_done: Callable[[StudyRun], None] | None = None) -> list[StudyRun]:
    """Train (or resume) every unfinished arm x seed, then measure it and keep its results.

    Args:
        spec: the study.
        out_dir: parent of the study's run directories (checkpoints; not committed).
        results_dir: parent of the study's kept results (``metrics.jsonl`` + ``measures.json`` per run).
        measure: ``measure(run, spec.measure) -> dict`` on the trained run, saved as its
            ``measures.json`` (the command passes
            :func:`spikevision.analysis.study_report.measure_run`); None saves ``{}``.
        arms, seeds: restrict to these arms / seeds (empty = all).
        on_run_done: called after each run's results are written (the command rewrites the page).

    Returns:
        the selected runs that are done afterwards.

    Raises:
        ValueError: an unknown arm or seed in ``arms``/``seeds``.
        whatever training raises (``TrainingInterrupted`` on SIGINT/SIGTERM after
        saving, ``NonFiniteLossError``); finished runs keep their results.
    """
    from spikevision.train.engine import METRICS_FILE, train

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
        measures = measure(run, spec.measure) if measure is not None else {}
        run.results_dir.mkdir(parents=True, exist_ok=True)
        _atomic_copy(run.run_dir / METRICS_FILE, run.results_dir / METRICS_FILE)
        write_atomic(run.results_dir / MEASURES_FILE, json.dumps(measures, indent=1) + "\n")  # last: marks done
        done.append(run)
        if on_run_done is not None:
            on_run_done(run)
    return done


def _atomic_copy(src: Path, dst: Path) -> None:
    with atomic_output(dst) as tmp:
        shutil.copyfile(src, tmp)
