"""Where a model to deploy comes from: a run directory, a checkpoint, a weights file or a model name.

Used by ``spikevision deploy`` and ``spikevision export``:

* a run directory (``runs/<name>/``) or a checkpoint file ``*.pt``: loaded by
  :func:`spikevision.train.checkpoint.load_run` (the one run loader: the run's
  ``checkpoints/best.pt``, else ``last.pt``), with the run's data set;
* a weights file ``*.safetensors`` written by :func:`spikevision.deploy.weights.save_weights`;
* a registered model name: random weights, the weights in ``weights``, or the weights shipped with
  spikevision (``pretrained=<tag>``, e.g. ``fashion_mnist``), which bring their card's data set and
  preprocessing.

Every failure to read or rebuild the model (a missing, damaged or foreign file, an
unknown name, arguments that do not fit the weights) is a ``FileNotFoundError`` or
``ValueError`` that says what to do, so the commands report it in one line.

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
    except ValueError as e:  # an old or foreign config: the model still deploys, evaluation needs --dataset
        log.warning("%s: the run's data set is unknown (%s); pass --dataset to measure agreement", run.path, e)
        data = None
    return Source(run.model.eval(), run.name, run.kwargs, data, str(run.path), run.run_dir)


def _model_with_weights(name: str, kwargs: dict[str, Any], weights: Path | None) -> nn.Module:
    """``create_model(name, **kwargs)`` with ``weights`` (safetensors or a state-dict ``.pt``) loaded strictly.

    Raises:
        FileNotFoundError: no weights file.
        ValueError: an unreadable weights file, an unknown name, or kwargs the builder does not take or
            that do not fit the weights.
    """
    from spikevision.models import create_model
    from spikevision.models.arguments import check_model_kwargs
    from spikevision.weights import check_finite_weights

    state = None
    if weights is not None:
        if not weights.is_file():
            raise FileNotFoundError(f"weights file {weights} not found")
        try:
            if weights.suffix == ".safetensors":
                from safetensors.torch import load_file

                state = load_file(str(weights))
            else:
                state = torch.load(weights, map_location="cpu", weights_only=True)
        except Exception as e:  # truncated, random or pickled-code files
            from spikevision.train.checkpoint import load_error_reason

            raise ValueError(f"{weights} cannot be read as weights ({load_error_reason(e)}); it may be damaged, "
                             "or not a .safetensors or state-dict .pt file") from None
        if not isinstance(state, dict):
            raise ValueError(f"{weights} holds a {type(state).__name__}, not a state dict of tensors")
        check_finite_weights(state, str(weights), fix="use the original weights file")
    problems = check_model_kwargs(name, kwargs, where="--model-kwargs")
    if problems:
        raise ValueError("; ".join(problems))
    try:
        model = create_model(name, **kwargs)
        if state is not None:
            model.load_state_dict(state)
    except (TypeError, RuntimeError) as e:
        args = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
        raise ValueError(f"cannot build {name}({args})" + (f" with the weights in {weights}" if state else "")
                         + f" ({str(e).splitlines()[0]}); give the model arguments the weights were made "
                         "with (--model-kwargs)") from None
    return model


def _pretrained(name: str, tag: str, kwargs: dict[str, Any]) -> Source:
    """A model built with its shipped weights, with the data set (and normalisation) of its card."""
    from spikevision.models import create_model
    from spikevision.train.checkpoint import CONFIG_KEY, MODEL_KWARGS_KEY, MODEL_NAME_KEY, run_data_config
    from spikevision.weights import read_card

    from spikevision.models.arguments import check_model_kwargs

    card = read_card(name, tag)
    problems = check_model_kwargs(name, kwargs, where="--model-kwargs")
    if problems:
        raise ValueError("; ".join(problems))
    model = create_model(name, pretrained=tag, **kwargs)
    data = None
    if isinstance(card.get("config"), dict):
        try:
            data = run_data_config({CONFIG_KEY: card["config"], MODEL_KWARGS_KEY: card["model_kwargs"],
                                    MODEL_NAME_KEY: name})
        except ValueError as e:
            log.warning("%s (%s): the card's data set is unusable (%s); pass --dataset", name, tag, e)
    return Source(model.eval(), name, {**card["model_kwargs"], **kwargs}, data, f"{name} (pretrained={tag})")


def load_source(source: str | Path, weights: str | Path | None = None,
                model_kwargs: dict[str, Any] | None = None, pretrained: str | None = None) -> Source:
    """Load the model named by ``source`` (see the module docstring).

    Args:
        source: a run directory, a checkpoint ``.pt``, a weights ``.safetensors`` or a registered model name.
        weights: weights for a model name (``.safetensors`` or a state-dict ``.pt``).
        model_kwargs: builder arguments for a model name.
        pretrained: the tag of weights shipped with spikevision, for a model name (e.g. ``fashion_mnist``).

    Raises:
        FileNotFoundError: a run directory without checkpoints, or a missing file.
        ValueError: a damaged or foreign file, a model that cannot be rebuilt (arguments the builder does
            not take or that do not fit the weights).
        UnknownModelError: neither a path nor a registered model name (a ``ValueError``).
    """
    path = Path(source)
    if pretrained is not None:
        if weights is not None:
            raise ValueError("give either shipped weights (--pretrained) or a weights file (--weights), not both")
        if path.is_dir() or path.suffix or "/" in str(source):
            raise ValueError(f"--pretrained takes a model name, got {source}; a run directory or weights file "
                             "carries its own weights")
        return _pretrained(str(source), pretrained, dict(model_kwargs or {}))
    if path.is_dir() or path.suffix == ".pt":
        return _from_run(path)
    if path.suffix == ".safetensors":
        from spikevision.deploy.weights import load_model, read_metadata

        meta = read_metadata(path)
        try:
            model = load_model(path)
        except (TypeError, RuntimeError) as e:  # metadata kwargs that do not fit the tensors
            raise ValueError(f"{path}: cannot rebuild {meta['model_name']}({meta['model_kwargs']}) with its "
                             f"tensors ({str(e).splitlines()[0]}); the file may be damaged") from None
        return Source(model, meta["model_name"], meta["model_kwargs"], None, str(path))
    if path.suffix or "/" in str(source):
        raise FileNotFoundError(f"{source} is not a run directory, a .pt checkpoint or a .safetensors file")
    kwargs = dict(model_kwargs or {})
    wpath = Path(weights) if weights is not None else None
    model = _model_with_weights(str(source), kwargs, wpath)
    origin = f"{source} + {wpath}" if wpath else f"{source} (random weights)"
    return Source(model.eval(), str(source), kwargs, None, origin)


def example_input(src: Source, batch: int = 1) -> torch.Tensor:
    """A zero batch of what the model takes: :meth:`~spikevision.models.ModelInfo.input_shape` with its kwargs.

    Images ``[B, C, H, W]``, or event frames ``[T, B, C, H, W]`` with the model's ``T``.

    Raises:
        ValueError: the model's name (and so its input) is unknown.
    """
    from spikevision.models import get_model_info

    if src.name is None:
        raise ValueError("the model's input size is unknown; give a data set (--dataset)")
    shape = get_model_info(src.name).input_shape(batch, T=getattr(src.model, "T", None), model_kwargs=src.kwargs)
    return torch.zeros(shape)
