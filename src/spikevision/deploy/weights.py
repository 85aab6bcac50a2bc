"""Weights on disk as safetensors, with the model's name and keyword arguments in the metadata.

A safetensors file holds tensors only (no code, nothing to unpickle). The
metadata (string to string) carries what rebuilds the model:

| key | value |
|---|---|
| ``format`` | ``"spikevision"`` |
| ``kind`` | ``"float"`` (``state_dict``), ``"folded"`` (BN folded) or ``"integer"`` (engine buffers) |
| ``model_name`` | registered builder name |
| ``model_kwargs`` | JSON of the builder's keyword arguments |
| ``extra`` | JSON of anything else (engine config, audit summary) |

:func:`load_model` rebuilds a ``"float"`` file through the one weights-to-model path,
:func:`spikevision.models.factory.build_with_weights`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = ["save_weights", "read_metadata", "load_model", "to_storage_dtype", "STORAGE_DTYPES", "FORMAT"]

FORMAT = "spikevision"


#: ``--dtype`` names of ``spikevision export`` -> the dtype floating-point tensors are stored in
STORAGE_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def to_storage_dtype(t: torch.Tensor, dtype: torch.dtype, name: str = "tensor") -> torch.Tensor:
    """``t`` cast to ``dtype``, refusing values that the cast would turn infinite (float16 overflows past 65504).

    Raises:
        ValueError: a finite value of ``t`` that is not finite in ``dtype``.
    """
    out = t.to(dtype)
    if bool((torch.isfinite(t) & ~torch.isfinite(out)).any()):
        raise ValueError(f"{name} holds values beyond the range of {dtype} (largest |x| = "
                         f"{t.abs().max().item():.4g}); store the weights in float32 or bfloat16")
    return out


def _json(value: Any, what: str) -> str:
    try:
        return json.dumps(value, sort_keys=True)
    except TypeError as e:
        raise TypeError(f"{what} must be JSON-serialisable to go into safetensors metadata: {e}") from None


def save_weights(
    model: nn.Module,
    path: str | Path,
    *,
    model_name: str | None = None,
    model_kwargs: dict | None = None,
    kind: str = "float",
    extra: dict | None = None,
    dtype: torch.dtype | None = None,
) -> Path:
    """Write ``model.state_dict()`` to ``path`` (safetensors) with rebuild metadata.

    Tensors shared between entries are stored once (safetensors forbids aliases;
    the first name is kept). Non-tensor state is not saved.

    Args:
        model: any module.
        path: output file (parent folders are created).
        model_name: registered name (needed by :func:`load_model`).
        model_kwargs: builder keyword arguments.
        kind: ``"float"``, ``"folded"`` or ``"integer"``.
        extra: JSON-serialisable extras.
        dtype: store floating-point tensors in this dtype (``torch.float16`` halves the file);
            integer tensors are kept. ``load_state_dict`` casts them back to the model's dtype.

    Raises:
        TypeError: metadata that is not JSON-serialisable (checked before writing).
        ValueError: a tensor that does not fit ``dtype`` (a value that would become infinite).
    """
    from safetensors.torch import save_file

    meta = {"format": FORMAT, "kind": kind, "model_name": model_name or "",
            "model_kwargs": _json(model_kwargs or {}, "model_kwargs"), "extra": _json(extra or {}, "extra")}
    tensors: dict[str, torch.Tensor] = {}
    seen: set[tuple[int, int]] = set()
    for name, t in model.state_dict().items():
        key = (t.untyped_storage().data_ptr(), t.storage_offset()) if t.numel() else (id(t), 0)
        if key in seen:
            continue
        seen.add(key)
        t = t.detach().cpu()
        if dtype is not None and t.is_floating_point():
            t = to_storage_dtype(t, dtype, name)
        tensors[name] = t.contiguous().clone()
    from spikevision.atomic import atomic_output

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path) as tmp:  # a full disk leaves no truncated file
        save_file(tensors, str(tmp), metadata=meta)
    return path


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The metadata of a spikevision safetensors file, JSON fields decoded.

    Raises:
        FileNotFoundError: no file. ValueError: not a spikevision safetensors file.
    """
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} not found")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as e:
        raise ValueError(f"{path} is not a safetensors file ({type(e).__name__}: {e})") from None
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path} has no spikevision metadata (format={meta.get('format')!r}); "
                         "load its tensors with safetensors.torch.load_file")
    meta = dict(meta)
    for key in ("model_kwargs", "extra"):
        meta[key] = json.loads(meta.get(key) or "{}")
    return meta


def load_model(path: str | Path) -> nn.Module:
    """Rebuild the model of a ``"float"`` weights file (:func:`~spikevision.models.factory.build_with_weights`).

    Returns:
        the model, in eval mode.

    Raises:
        ValueError: the file is not a float spikevision file or names no model, its metadata's kwargs are
            invalid or do not fit its tensors, or the tensors hold NaN or infinite values.
    """
    from spikevision.models.factory import WeightsOrigin, build_with_weights
    from spikevision.weights import read_state_dict

    meta = read_metadata(path)
    if meta["kind"] != "float" or not meta["model_name"]:
        raise ValueError(f"{path} holds {meta['kind']!r} weights of model {meta['model_name']!r}; "
                         "only float weights of a registered model rebuild (export with kind='float')")
    origin = WeightsOrigin(str(path), kwargs_of="its metadata's",
                           fix="the file may be damaged; use the original weights file")
    state = read_state_dict(path, fix="use the original weights file")
    return build_with_weights(meta["model_name"], state, {"model_kwargs": meta["model_kwargs"]}, origin).eval()
