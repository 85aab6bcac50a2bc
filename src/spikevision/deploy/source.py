"""Where a model to deploy comes from: a run directory, a checkpoint, a weights file or a model name.

Used by ``spikevision deploy`` and ``spikevision export``:

* a run directory (``runs/<name>/``) or a checkpoint file ``*.pt``: loaded by
  :func:`spikevision.train.checkpoint.load_run` (the one run loader: the run's
  ``checkpoints/best.pt``, else ``last.pt``), with the run's data set;
* a weights file ``*.safetensors`` written by :func:`spikevision.deploy.weights.save_weights`;
* a registered model name (random weights unless ``weights`` is given).

What the model takes (image or event frames, and their size) is the
registry's :meth:`~spikevision.models.ModelInfo.input_shape`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = ["Source", "load_source", "example_input"]

log = logging.getLogger(__name__)


@dataclass
class Source:
    """A loaded model (in eval mode) plus what is known about it."""

    model: nn.Module
    name: str | None
    kwargs: dict[str, Any]
    data: Any | None  # a DataConfig when the run recorded one
    origin: str
    run_dir: Path | None = None


def _from_run(path: Path) -> Source:
    from spikevision.train.checkpoint import load_run

    run = load_run(path)
    try:
        data = run.data_config()
    except ValueError as e:  # an old or foreign config: the model still deploys, evaluation needs --data
        log.warning("%s: the run's data set is unknown (%s); pass --data to measure agreement", run.path, e)
        data = None
    return Source(run.model.eval(), run.name, run.kwargs, data, str(run.path), run.run_dir)


def load_source(source: str | Path, weights: str | Path | None = None,
                model_kwargs: dict[str, Any] | None = None) -> Source:
    """Load the model named by ``source`` (see the module docstring).

    Raises:
        FileNotFoundError: a run directory without checkpoints, or a missing file.
        ValueError: a damaged checkpoint or one whose model cannot be rebuilt.
        UnknownModelError: neither a path nor a registered model name (a ``ValueError``).
    """
    path = Path(source)
    if path.is_dir() or path.suffix == ".pt":
        return _from_run(path)
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
    """A zero batch of what the model takes: :meth:`~spikevision.models.ModelInfo.input_shape` with its kwargs.

    Images ``[B, C, H, W]``, or event frames ``[T, B, C, H, W]`` with the model's ``T``.

    Raises:
        ValueError: the model's name (and so its input) is unknown.
    """
    from spikevision.models import get_model_info

    if src.name is None:
        raise ValueError("the model's input size is unknown; give a data set (--data)")
    shape = get_model_info(src.name).input_shape(batch, T=getattr(src.model, "T", None), model_kwargs=src.kwargs)
    return torch.zeros(shape)
