"""Trained weights shipped inside the package, each with its model card.

One pair of files per trained model in this folder::

    <model name>.<tag>.safetensors   the float state_dict (tensors only: nothing to unpickle)
    <model name>.<tag>.json          the model card: builder kwargs, data set, recipe, commit,
                                     test accuracy, T, firing rate, energy, training time, the
                                     machines it trained on (``machine``, as its checkpoint recorded
                                     them) and the one that measured the card (``evaluated_on``)

``<tag>`` names what the weights were trained on (``fashion_mnist``). Load them
with ``create_model(name, pretrained=tag)``; ``list_models()`` shows each
model's tags in ``ModelInfo.pretrained``. Nothing is downloaded: weights that
are not in this folder do not exist for spikevision.

This module reads files only; it imports nothing of the model zoo, so the
registry can use it. Cards are written by ``spikevision export RUN --format
pretrained`` (:mod:`spikevision.commands.export`).
"""

from __future__ import annotations

import difflib
import json
import pickle
import re
from pathlib import Path
from typing import Any, Mapping

__all__ = ["WEIGHTS_DIR", "PretrainedNotFoundError", "NonFiniteWeightsError", "available_weights", "read_card",
           "weights_file", "load_pretrained_state", "non_finite_tensors", "check_finite_weights", "CARD_KEYS",
           "MAX_CARD_BYTES", "read_state_dict", "load_error_reason"]

WEIGHTS_DIR = Path(__file__).resolve().parent

#: what every card holds (``spikevision export --format pretrained`` writes them all)
CARD_KEYS = ("model", "tag", "model_kwargs", "dataset", "test_top1", "test_samples", "T", "firing_rate",
             "energy_uj", "parameters", "epochs", "train_time_s", "machine", "recipe", "config", "commit", "date")


#: a model card is a few KiB; a larger file is refused before parsing
MAX_CARD_BYTES = 1 << 20


class PretrainedNotFoundError(ValueError):
    """No shipped weights for this (model, tag) pair; the message lists what exists."""


class NonFiniteWeightsError(ValueError):
    """Weights holding NaN or infinite values; the message names the tensors."""


def non_finite_tensors(weights: Mapping[str, Any]) -> list[str]:
    """Names of the floating-point tensors in ``weights`` (a state dict) holding NaN or infinite values."""
    import torch

    return [k for k, v in weights.items()
            if isinstance(v, torch.Tensor) and v.is_floating_point() and not bool(torch.isfinite(v).all())]


def check_finite_weights(weights: Mapping[str, Any], source: str, fix: str = "use the original file") -> None:
    """Refuse weights with NaN or infinite values, naming the tensors (call it wherever weights enter).

    Such weights load silently and give finite, plausible, wrong outputs; a trained
    model never holds them.

    Args:
        weights: a state dict (name -> tensor; other values are ignored).
        source: where the weights come from, for the message (a path, ``"ms_resnet_mini pretrained=..."``).
        fix: what the user should do, ending the message.

    Raises:
        NonFiniteWeightsError: ``<source>: tensor 'a.weight' holds NaN or infinite values (and N more: ...);
            the file was altered or its training diverged; <fix>``.
    """
    bad = non_finite_tensors(weights)
    if bad:
        more = f" (and {len(bad) - 1} more: {', '.join(bad[1:4])}{', ...' if len(bad) > 4 else ''})" if len(bad) > 1 else ""
        raise NonFiniteWeightsError(f"{source}: tensor {bad[0]!r} holds NaN or infinite values{more}; the file was "
                                    f"altered or its training diverged; {fix}")


# torch's advice when it refuses a pickled file: load it unsafely, or allow-list its classes
_UNSAFE_ADVICE = re.compile(r"weights_only|safe_globals|trust|file an issue|Check the documentation", re.I)


def load_error_reason(e: BaseException) -> str:
    """One line saying why ``torch.load`` failed, without torch's advice to load the file unsafely.

    torch answers a file holding pickled objects with "Re-running ``torch.load`` with ``weights_only``
    set to ``False`` will likely succeed" and a way to allow-list the class: for a file from elsewhere
    either would run its code, so neither is passed on.
    """
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(e))
    if not (isinstance(e, pickle.UnpicklingError) or "weights_only" in text):
        first = next((line.strip() for line in text.splitlines() if line.strip()), "")
        return f"{type(e).__name__}: {first}"
    found = re.search(r"GLOBAL (\S+) was not an allowed global", text)
    if found:
        return (f"it holds pickled Python objects, among them {found.group(1)}, which are never loaded "
                "(spikevision files hold only tensors and plain values): it was not written by spikevision, "
                "or was altered")
    detail = text.split("WeightsUnpickler error:", 1)[-1].replace("Weights only load failed.", "")
    lines = [line.strip() for line in detail.splitlines() if line.strip() and not _UNSAFE_ADVICE.search(line)]
    return (f"not a file that a safe load can read ({lines[0] if lines else type(e).__name__}): it was not "
            "written by spikevision, or was altered")


def read_state_dict(path: str | Path, fix: str = "use the original file") -> dict[str, Any]:
    """The tensors of a weights file: ``.safetensors``, else a state-dict ``.pt`` read with ``weights_only=True``.

    Every weights file spikevision reads (shipped weights, Hub folders, ``--weights``, exported
    ``.safetensors``) is read here; nothing is unpickled. The tensors are not checked: the one path from
    weights to a model (:func:`spikevision.models.factory.build_with_weights`) checks them.

    Args:
        path: the file.
        fix: what the user should do, ending the message of a file that cannot be read.

    Raises:
        FileNotFoundError: no such file.
        ValueError: ``<path> cannot be read as weights (<why>): it is damaged, or not a .safetensors or
            state-dict .pt file; <fix>``, or a file holding something else than a dict of tensors.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} not found")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated, random or pickled-code files; safetensors raises its own error types
        raise ValueError(f"{path} cannot be read as weights ({load_error_reason(e)}): it is damaged, or not a "
                         f".safetensors or state-dict .pt file; {fix}") from None
    if not isinstance(state, dict):
        raise ValueError(f"{path} holds a {type(state).__name__}, not a state dict of tensors; {fix}")
    return state


def available_weights() -> dict[str, list[str]]:
    """Model name -> tags of the weights shipped in :data:`WEIGHTS_DIR` (both files present), sorted."""
    out: dict[str, list[str]] = {}
    for card in sorted(WEIGHTS_DIR.glob("*.json")):
        name, _, tag = card.stem.partition(".")
        if tag and card.with_suffix(".safetensors").is_file():
            out.setdefault(name, []).append(tag)
    return out


def _with(stem: Path, suffix: str) -> Path:
    return stem.with_name(stem.name + suffix)  # not with_suffix: the tag is a dotted part of the stem


def _pair(name: str, tag: str) -> Path:
    """``WEIGHTS_DIR/<name>.<tag>`` (no suffix) when both files exist."""
    stem = WEIGHTS_DIR / f"{name}.{tag}"
    if _with(stem, ".json").is_file() and _with(stem, ".safetensors").is_file():
        return stem
    shipped = available_weights()
    if name in shipped:
        raise PretrainedNotFoundError(f"{name} has no pretrained={tag!r} weights; shipped for {name}: "
                                      f"{', '.join(shipped[name])}")
    have = ", ".join(f"{n} ({', '.join(t)})" for n, t in shipped.items()) or "none"
    close = difflib.get_close_matches(name, list(shipped), n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise PretrainedNotFoundError(f"no pretrained weights for {name!r}{hint} Models with weights: {have}. "
                                  f"Train one with `spikevision train` and load its checkpoint instead")


def read_card(name: str, tag: str) -> dict[str, Any]:
    """The model card of ``name`` trained on ``tag``.

    Raises:
        PretrainedNotFoundError: no such weights (lists those that exist).
        ValueError: a damaged card.
    """
    path = _with(_pair(name, tag), ".json")
    if path.stat().st_size > MAX_CARD_BYTES:
        raise ValueError(f"model card {path} is {path.stat().st_size} bytes, not a card (a few KiB); "
                         "reinstall spikevision")
    try:
        card = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
        why = "nested too deeply" if isinstance(e, RecursionError) else e
        raise ValueError(f"model card {path} is damaged ({why}); reinstall spikevision") from None
    model = card.get("model") if isinstance(card, dict) else None
    if not isinstance(card, dict) or model != name or not isinstance(card.get("model_kwargs"), dict):
        what = f"model={model!r}" if isinstance(card, dict) else f"a JSON {type(card).__name__}, not an object"
        raise ValueError(f"model card {path} does not describe {name} ({what}); reinstall spikevision")
    return card


def weights_file(name: str, tag: str) -> Path:
    """Path of the safetensors file of ``name`` trained on ``tag`` (raises like :func:`read_card`)."""
    return _with(_pair(name, tag), ".safetensors")


def load_pretrained_state(name: str, tag: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(state_dict, card)`` of shipped weights (tensors on the CPU).

    Raises:
        PretrainedNotFoundError: no such weights. ValueError: a damaged file, or tensors holding NaN or
            infinite values (:class:`NonFiniteWeightsError`).
    """
    card = read_card(name, tag)
    path = weights_file(name, tag)
    state = read_state_dict(path, fix="reinstall spikevision")
    check_finite_weights(state, f"weights file {path}", "reinstall spikevision")
    return state, card
