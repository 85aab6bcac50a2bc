"""Where a model to deploy comes from: a run directory, a checkpoint, a weights file or a model name.

Used by ``spikevision deploy`` and ``spikevision export``:

* a run directory (``runs/<name>/``): its ``checkpoints/best.pt``, else
  ``checkpoints/last.pt`` (the training engine's files), plus the run's data config;
* a checkpoint file ``*.pt`` (:mod:`spikevision.train.checkpoint` format);
* a weights file ``*.safetensors`` written by :func:`spikevision.deploy.weights.save_weights`;
* a registered model name (random weights unless ``weights`` is given).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = ["Source", "load_source", "example_input"]

_CHECKPOINTS = ("checkpoints/best.pt", "checkpoints/last.pt", "best.pt", "last.pt")


@dataclass
class Source:
    """A loaded model plus what is known about it."""

    model: nn.Module
    name: str | None
    kwargs: dict[str, Any]
    data: Any | None  # a DataConfig when the run recorded one
    origin: str
    run_dir: Path | None = None


def _from_checkpoint(path: Path, run_dir: Path | None) -> Source:
    from spikevision.models import create_model
    from spikevision.train.checkpoint import CONFIG_KEY, MODEL_KEY, MODEL_KWARGS_KEY, MODEL_NAME_KEY, load_checkpoint
    from spikevision.train.config import config_from_dict

    ckpt = load_checkpoint(path)
    name, kwargs = ckpt[MODEL_NAME_KEY], dict(ckpt[MODEL_KWARGS_KEY])
    model = create_model(name, **kwargs)
    model.load_state_dict(ckpt[MODEL_KEY])
    data = None
    try:
        data = config_from_dict(ckpt[CONFIG_KEY]).data
    except Exception:  # an old or foreign config: the model still deploys, evaluation needs --data
        data = None
    return Source(model.eval(), name, kwargs, data, str(path), run_dir)


def load_source(source: str | Path, weights: str | Path | None = None,
                model_kwargs: dict[str, Any] | None = None) -> Source:
    """Load the model named by ``source`` (see the module docstring).

    Raises:
        FileNotFoundError: a run directory without checkpoints, or a missing file.
        UnknownModelError: neither a path nor a registered model name.
    """
    path = Path(source)
    if path.is_dir():
        for rel in _CHECKPOINTS:
            if (path / rel).is_file():
                return _from_checkpoint(path / rel, path)
        raise FileNotFoundError(
            f"run directory {path} has no checkpoint (looked for {', '.join(_CHECKPOINTS)}); "
            "train first (spikevision train ...) or pass a checkpoint file"
        )
    if path.suffix == ".pt":
        return _from_checkpoint(path, None)
    if path.suffix == ".safetensors":
        from spikevision.deploy.weights import load_model, read_metadata

        meta = read_metadata(path)
        return Source(load_model(path), meta["model_name"], meta["model_kwargs"], None, str(path))
    from spikevision.models import create_model

    if path.suffix or "/" in str(source):
        raise FileNotFoundError(f"{source} is not a run directory, a .pt checkpoint or a .safetensors file")
    kwargs = dict(model_kwargs or {})
    model = create_model(str(source), **kwargs)
    origin = f"{source} (random weights)"
    if weights is not None:
        from safetensors.torch import load_file

        wpath = Path(weights)
        if not wpath.is_file():
            raise FileNotFoundError(f"weights file {wpath} not found")
        state = load_file(str(wpath)) if wpath.suffix == ".safetensors" else torch.load(wpath, weights_only=True)
        model.load_state_dict(state)
        origin = f"{source} + {wpath}"
    return Source(model.eval(), str(source), kwargs, None, origin)


def example_input(src: Source, batch: int = 1) -> torch.Tensor:
    """A zero image batch of the model's registered input size (channels and side from its kwargs if set)."""
    from spikevision.models import get_model_info

    if src.name is None:
        raise ValueError("the model's input size is unknown; give a data set (--data)")
    c, h, w = get_model_info(src.name).input_size
    c = src.kwargs.get("in_chans", c)
    size = src.kwargs.get("img_size", None)
    if isinstance(size, int):
        h = w = size
    return torch.zeros(batch, c, h, w)
