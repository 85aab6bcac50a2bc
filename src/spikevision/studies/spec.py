"""A study file: its format, validation and the arm x seed runs it plans (see :mod:`spikevision.studies`).

Every problem of a study file is reported at once (:class:`~spikevision.train.config.ConfigError`), each arm's
config included, before anything runs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from spikevision.train.config import (Config, ConfigError, apply_settings, config_from_dict, read_recipe,
                                      read_yaml_file)
from spikevision.validation import did_you_mean

__all__ = ["StudySpec", "StudyRun", "load_study", "plan_runs", "MEASURES_FILE", "STUDY_KEYS", "PINNED_KEYS"]

MEASURES_FILE = "measures.json"  # per run, next to its copied metrics.jsonl
STUDY_KEYS = ("title", "claim", "recipe", "settings", "seeds", "arms", "measure", "verdict", "notes")
MEASURE_KEYS = ("energy", "isometry", "batches", "batch_size")
PINNED_KEYS = ("train.seed", "data.seed", "run.name", "run.out_dir")  # set per run by the runner
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")


@dataclass
class StudySpec:
    """A parsed study file (the format: :mod:`spikevision.studies`).

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
    raw = read_yaml_file(path)
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
