"""Model cards: what a trained run is, measured on its whole test set, for weights shipped in the package.

:func:`build_card` evaluates a run's final (or best) checkpoint in float32 on
every test image of its data set (the number a user reproduces with
``create_model(name, pretrained=tag)``), measures firing rate and energy per
image on the first test images, and gathers the recipe, training time, the
machines the run trained on (``machine``) and the one that measured the card
(``evaluated_on``); ``spikevision export RUN --format pretrained`` writes the card next to
the weights (see :mod:`spikevision.weights`).

:func:`card_documentation` renders what a Hugging Face model card carries besides
the numbers (license, the paper's BibTeX, the data set, preprocessing, class names,
intended use, limitations) from the card's own recorded facts, so a re-trained,
re-exported card gets them without hand editing.

:func:`card_protocol` says how a card's accuracy was selected (final epoch, validation split, or the test
set), and :func:`weights_table` renders every shipped card as the markdown table of ``spikevision models
--weights`` (the weights table of the documentation, checked against the cards by the tests).

:func:`add_seed_runs` adds to a card the final-epoch test accuracy of other runs of the same recipe with
other seeds (``spikevision export RUN --format pretrained --seed-runs RUN2 RUN3``): the card's ``seeds``
entry (each seed's accuracy, their mean and sample standard deviation), shown by :func:`weights_table`.
"""

from __future__ import annotations

import datetime
import subprocess
from pathlib import Path
from typing import Any

from torch import nn

__all__ = ["build_card", "card_documentation", "card_protocol", "weights_table", "add_seed_runs", "seed_summary",
           "final_test_top1", "DOC_KEYS", "WEIGHTS_LICENSE", "git_commit"]

#: keys :func:`card_documentation` adds to a card
DOC_KEYS = ("license", "paper", "citation", "dataset_card", "preprocessing", "class_names", "intended_use",
            "limitations")
#: the weights are released under the repository's license (LICENSE), as its SPDX / Hub identifier
WEIGHTS_LICENSE = "bsd-3-clause"

# What a card says about each data set it may have been trained on.
_DATASET_CARDS: dict[str, dict[str, str]] = {
    "fashion_mnist": {
        "title": "Fashion-MNIST", "hub_id": "zalando-datasets/fashion_mnist", "license": "MIT",
        "citation": "Xiao, Rasul, Vollgraf, Fashion-MNIST: a Novel Image Dataset for Benchmarking Machine Learning "
                    "Algorithms, arXiv:1708.07747, 2017",
        "content": "28x28 grayscale photos of Zalando fashion products, one centred object, light on a black "
                   "background; 60,000 training and 10,000 test images",
    },
    "mnist": {
        "title": "MNIST", "hub_id": "ylecun/mnist", "license": "CC-BY-SA-3.0",
        "citation": "LeCun, Bottou, Bengio, Haffner, Gradient-based learning applied to document recognition, "
                    "Proc. IEEE 1998",
        "content": "28x28 grayscale handwritten digits, white on black; 60,000 training and 10,000 test images",
    },
    "cifar10": {
        "title": "CIFAR-10", "hub_id": "uoft-cs/cifar10", "license": "unknown",
        "citation": "Krizhevsky, Learning Multiple Layers of Features from Tiny Images, 2009",
        "content": "32x32 colour photos of 10 object classes; 50,000 training and 10,000 test images",
    },
    "cifar100": {
        "title": "CIFAR-100", "hub_id": "uoft-cs/cifar100", "license": "unknown",
        "citation": "Krizhevsky, Learning Multiple Layers of Features from Tiny Images, 2009",
        "content": "32x32 colour photos of 100 object classes; 50,000 training and 10,000 test images",
    },
}


def _bibtex(model_name: str) -> str:
    """The BibTeX block of the model family's module docstring (written once there), or ``""``."""
    import sys
    import textwrap

    from spikevision.models import get_model_info

    doc = sys.modules[get_model_info(model_name).builder.__module__].__doc__ or ""
    if "BibTeX::" not in doc:
        return ""
    block = doc.split("BibTeX::", 1)[1].lstrip("\n")
    lines = []
    for line in block.splitlines():
        if line.strip() and not line.startswith(" "):
            break
        lines.append(line)
    return textwrap.dedent("\n".join(lines)).strip()


def card_documentation(card: dict[str, Any]) -> dict[str, Any]:
    """License, citation, data set, preprocessing, class names, intended use and limitations of a card.

    Derived from the card's recorded facts (model name, ``dataset``, ``model_kwargs``, the ``config.data``
    section training applied) and the family's docstring (its paper and BibTeX), so it never disagrees
    with them. Keys: :data:`DOC_KEYS`. ``spikevision export --format pretrained`` adds them to every card.

    Raises:
        ValueError: a card without a known model or data set.
    """
    from spikevision.models import get_model_info
    from spikevision.pretrained import pretrained_cfg_from_card

    cfg = pretrained_cfg_from_card(card)
    info = get_model_info(cfg.model)
    prep = cfg.preprocessing
    ds = _DATASET_CARDS.get(cfg.dataset, {"title": cfg.dataset, "content": cfg.dataset})
    c, h, w = prep.input_size
    mode = {1: "grayscale", 3: "RGB"}.get(c, f"{c}-channel")
    steps = (f"convert to {mode}, resize to {h}x{w} ({prep.interpolation})" if prep.crop_pct is None else
             f"convert to {mode}, resize the short side to {round(h / prep.crop_pct)}, centre-crop {h}x{w}")
    top1 = card.get("test_top1")
    content = ds["content"].split(";")[0]
    return {
        "license": WEIGHTS_LICENSE,
        "paper": info.paper,
        "citation": _bibtex(cfg.model),
        "dataset_card": dict(ds),
        "preprocessing": {**prep.to_dict(), "steps": f"{steps}; scale pixels to [0, 1]; normalise (x - mean) / std "
                                                     "with this mean and std (spikevision.create_transform)"},
        "class_names": list(cfg.class_names),
        "intended_use": (f"Research and teaching on spiking neural networks: classifying {content} into "
                         f"{cfg.num_classes} classes, measuring firing rates and energy, and testing "
                         f"multiplication-free deployment (spikevision deploy / export)."),
        "limitations": (f"Trained only on {ds['title']}: images unlike its {content} are out of distribution and "
                        f"get confident wrong answers. The test top-1 ({top1}%) is on the data set's own test "
                        f"split with the preprocessing above; without the normalisation (raw [0, 1] pixels) "
                        f"accuracy falls by tens of points. Accuracy depends on T (measured at T={cfg.T}). "
                        f"Not for decisions about people."),
    }


def git_commit(folder: str | Path = ".") -> str:
    """``git describe``-style commit of ``folder`` (``<hash>`` or ``<hash>-dirty``), or ``"unknown"``."""
    try:
        out = subprocess.run(["git", "-C", str(folder), "describe", "--always", "--dirty", "--abbrev=12"],
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else "unknown"


def build_card(run_dir: str | Path, tag: str, *, which: str = "last", recipe: str | None = None,
               data_root: str | Path | None = None, batches: int = 4,
               batch_size: int = 64, dtype: str = "float32") -> tuple[nn.Module, dict[str, Any]]:
    """The trained model of ``run_dir`` and its card (keys: :data:`spikevision.weights.CARD_KEYS`).

    Args:
        run_dir: a training run directory.
        tag: what the weights are called by (``"fashion_mnist"``).
        which: ``"last"`` (final epoch: the reported number) or ``"best"``.
        recipe: the recipe file the run was trained from, for the card.
        data_root: data folder (default: the run's ``data.root``).
        batches, batch_size: test images for firing rate and energy.
        dtype: the dtype the weights will be stored in (``"float16"`` halves the file). The model's
            floating-point state is rounded to it first, so the card measures the weights as shipped.

    Raises:
        FileNotFoundError: no run directory, checkpoint, metrics or data.
        ValueError: a damaged checkpoint or metrics file.
    """
    import torch

    from spikevision.analysis.load import run_test_batches
    from spikevision.analysis.report import measure, read_metrics
    from spikevision.data import build_loader
    from spikevision.deploy.weights import STORAGE_DTYPES, to_storage_dtype
    from spikevision.train import checkpoint as ck
    from spikevision.train.engine import evaluate
    from spikevision.train.run_log import UNRECORDED_MACHINE, machine_description

    run_dir = Path(run_dir)
    run = ck.load_run(run_dir, which)  # type: ignore[arg-type]
    model, state, config = run.model.eval(), run.state, run.config
    if dtype not in STORAGE_DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(STORAGE_DTYPES)}, got {dtype!r}")
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if t.is_floating_point():
                t.copy_(to_storage_dtype(t, STORAGE_DTYPES[dtype], name))
    records = read_metrics(run_dir / ck.METRICS_FILE)
    data = run.data_config(device="cpu", num_workers=0, root=data_root)
    ev = evaluate(model, build_loader(data, "test"), torch.device("cpu"))
    xs, _ = run_test_batches(state, batch_size=batch_size, batches=batches, data_root=data_root)
    prof = measure(model, xs)
    epoch = int(state[ck.EPOCH_KEY])
    card = {
        "model": run.name, "tag": tag, "model_kwargs": state[ck.MODEL_KWARGS_KEY],
        "dataset": data.name, "test_top1": round(ev["top1"], 2), "test_samples": ev["samples"],
        "T": prof.T, "firing_rate": round(prof.mean_rate, 4), "energy_uj": round(prof.energy_pj() / 1e6, 4),
        "energy_convention": prof.energy.convention(),
        "parameters": sum(p.numel() for p in model.parameters()), "epochs": epoch, "checkpoint": which,
        "weights_dtype": dtype,
        "train_time_s": round(float(state[ck.TRAIN_TIME_KEY]), 1),
        "logged_test_top1": next((r.get("test_top1") for r in reversed(records) if int(r["epoch"]) == epoch - 1),
                                 None),
        "machine": "; ".join(state.get(ck.MACHINES_KEY) or [UNRECORDED_MACHINE]),
        "evaluated_on": machine_description(), "recipe": recipe or "see config", "config": config,
        "commit": git_commit(Path(__file__).parent), "date": datetime.date.today().isoformat(),
    }
    card["protocol"] = card_protocol(card)
    card.update(card_documentation(card))
    return model, card


def card_protocol(card: dict[str, Any]) -> str:
    """How the card's test accuracy was selected: its ``protocol`` entry, or what its checkpoint implies.

    ``checkpoint: last`` is the final epoch of a fixed schedule (nothing chosen by looking at test
    accuracy); ``best`` was chosen on the validation split carved from the training set when the run held
    one out (``data.holdout``), otherwise on the test set, which inflates it (said so).
    """
    if card.get("protocol"):
        return str(card["protocol"])
    if card.get("checkpoint", "last") == "last":
        return "final epoch of a fixed schedule"
    holdout = float(((card.get("config") or {}).get("data") or {}).get("holdout") or 0.0)
    if holdout > 0:
        return f"best epoch on a validation split ({holdout:.0%} of the training set held out)"
    return "best epoch on the test set (test-selected)"


#: what a card's ``seeds`` entry measures
SEED_MEASURE = "final-epoch test top-1 logged by each run (the engine's evaluation at the end of its last epoch)"
# config entries that may differ between seed runs of one recipe: the seeds, and where and how a run ran
# (threads, devices, data folders, memory formats and modes, bf16 autocast where the CPU has it, logging)
_SEED_FREE = {("train", "seed"), ("data", "seed"), ("train", "threads"), ("train", "device"), ("train", "amp"),
              ("train", "channels_last"), ("train", "keep_freed_memory"), ("train", "memory_saving"),
              ("train", "flush_denormal"), ("train", "ckpt_every_steps"), ("train", "log_every_steps"),
              ("train", "dist_timeout_s"), ("data", "root"), ("data", "device"), ("data", "num_workers"),
              ("data", "pin_memory"), ("data", "fast_path"), ("data", "cache_dir")}


def final_test_top1(run_dir: str | Path) -> tuple[int, float, dict[str, Any]]:
    """``(seed, test top-1, config)`` of a finished training run: the accuracy its engine logged after its last
    scheduled epoch (``metrics.jsonl``), and its ``train.seed``.

    Raises:
        FileNotFoundError: no run directory, ``config.yaml`` or ``metrics.jsonl``.
        ValueError: the run has not finished its schedule, or its last epoch has no test evaluation.
    """
    import yaml

    from spikevision.analysis.report import read_metrics
    from spikevision.train import checkpoint as ck

    run_dir = Path(run_dir)
    config_file = run_dir / "config.yaml"
    if not config_file.is_file():
        raise FileNotFoundError(f"{config_file} not found: {run_dir} is not a training run directory")
    config = yaml.safe_load(config_file.read_text()) or {}
    epochs = int(config["train"]["epochs"])
    records = read_metrics(run_dir / ck.METRICS_FILE)
    last = records[-1]
    if int(last["epoch"]) != epochs - 1:
        raise ValueError(f"{run_dir} has not finished its schedule: its last logged epoch is {int(last['epoch']) + 1} "
                         f"of {epochs}; resume it (spikevision train --resume) first")
    if last.get("test_top1") is None:
        raise ValueError(f"{run_dir}'s last epoch has no test evaluation in {ck.METRICS_FILE}")
    return int(config["train"]["seed"]), float(last["test_top1"]), config


def _recipe_part(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` with every default filled in (so configurations of older versions compare), as
    ``{"section.key": value}``, without the entries seed runs of one recipe may differ in."""
    from spikevision.train.config import config_from_dict

    full = config_from_dict(config).to_dict()
    return {f"{section}.{k}": v for section, values in full.items() if isinstance(values, dict) and section != "run"
            for k, v in values.items() if (section, k) not in _SEED_FREE}


def seed_summary(results: dict[int, float]) -> dict[str, Any]:
    """A card's ``seeds`` entry from ``{seed: test top-1}``: each value, the mean and the sample standard
    deviation (``n - 1``; 0 for one run), rounded to 2 decimals.

    Raises:
        ValueError: no results.
    """
    if not results:
        raise ValueError("seed_summary needs at least one run")
    values = [float(v) for v in results.values()]
    n = len(values)
    mean = sum(values) / n
    std = (sum((v - mean) ** 2 for v in values) / (n - 1)) ** 0.5 if n > 1 else 0.0
    return {"test_top1": {str(k): round(float(v), 2) for k, v in sorted(results.items())}, "runs": n,
            "mean": round(mean, 2), "std": round(std, 2), "measure": SEED_MEASURE}


def add_seed_runs(card: dict[str, Any], run_dirs: list[str | Path]) -> dict[str, Any]:
    """``card`` with a ``seeds`` entry (:func:`seed_summary`) over its own run and ``run_dirs``.

    The card's run counts with its ``config``'s ``train.seed`` and its ``logged_test_top1``, the other runs
    with :func:`final_test_top1`; every run must be the card's recipe (the same configuration apart from the
    seed, the ``run`` section and where and how it ran: threads, devices, data folder, memory format, bf16
    autocast) and have a seed of its own.

    Raises:
        FileNotFoundError, ValueError: a run that is missing, unfinished, of another recipe, or of a seed
            already counted.
    """
    config = card.get("config") or {}
    if card.get("logged_test_top1") is None or "train" not in config:
        raise ValueError("the card has no logged final-epoch accuracy or no config: it cannot be summarised with "
                         "other seeds")
    results = {int(config["train"]["seed"]): float(card["logged_test_top1"])}
    recipe = _recipe_part(config)
    for run_dir in run_dirs:
        seed, top1, other = final_test_top1(run_dir)
        theirs = _recipe_part(other)
        differs = sorted(k for k in set(recipe) | set(theirs) if recipe.get(k) != theirs.get(k))
        if differs:
            raise ValueError(f"{run_dir} is not a seed run of the card's recipe: it differs in "
                             f"{', '.join(differs[:6])}")
        if seed in results:
            raise ValueError(f"{run_dir} has seed {seed}, already counted: seed runs need distinct train.seed")
        results[seed] = top1
    return {**card, "seeds": seed_summary(results)}


def _duration(seconds: float) -> str:
    minutes = seconds / 60
    return f"{minutes:.0f} min" if minutes < 120 else f"{minutes / 60:.1f} h"


def _variant(kwargs: dict[str, Any]) -> str:
    """The builder arguments that set the size (``widths 64/128/256``, ``dim 48``), not T or the classes."""
    parts = []
    for key, value in kwargs.items():
        if key in ("T", "num_classes", "in_chans"):
            continue
        shown = "/".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)
        parts.append(f"{key} {shown}")
    return ", ".join(parts)


def weights_table(tag: str | None = None) -> str:
    """The shipped weights as a markdown table, one row per model card (``spikevision models --weights``).

    Columns: model (and the builder arguments that size it), family and paper, test top-1 as on the card
    (float32, the whole test set; with the mean and standard deviation over seeds where the card has a
    ``seeds`` entry), T, firing rate, energy per image, recipe, budget (epochs, training time,
    threads) and :func:`card_protocol`. ``tag`` keeps only the weights trained on it (``"fashion_mnist"``).
    """
    from spikevision.models.registry import get_model_info
    from spikevision.weights import available_weights, read_card

    rows = []
    for name, tags in available_weights().items():
        for t in tags:
            if tag is not None and t != tag:
                continue
            card = read_card(name, t)
            info = get_model_info(name)
            variant = _variant(card["model_kwargs"])
            threads = ((card.get("config") or {}).get("train") or {}).get("threads")
            budget = f"{card.get('epochs')} epochs, {_duration(float(card.get('train_time_s') or 0))}"
            if threads:
                budget += f" ({threads} thread{'s' if threads > 1 else ''})"
            recipe = str(card.get("recipe", "see config"))
            top1 = f"{card['test_top1']:.2f}%"
            if card.get("seeds"):
                seeds = card["seeds"]
                top1 += f" ({seeds['runs']} seeds: {seeds['mean']:.2f} +- {seeds['std']:.2f})"
            rows.append([f"`{name}`" + (f" ({variant})" if variant else ""), f"{info.family}: {info.paper_short}",
                         t, top1, str(card.get("T")), f"{card.get('firing_rate'):.3f}",
                         f"{card.get('energy_uj'):.3g} uJ",
                         f"`{recipe}`" if recipe.startswith("configs/") else recipe, budget, card_protocol(card)])
    header = ["model", "family", "trained on", "test top-1", "T", "firing rate", "energy per image", "recipe",
              "budget", "protocol"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---:" if h in ("test top-1", "T", "firing rate",
                                                                             "energy per image") else "---"
                                                         for h in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)
