"""Where a model to deploy comes from: a run directory, a checkpoint, a weights file, a saved folder or a model name.

Used by ``spikevision deploy`` and ``spikevision export``:

* a run directory (``runs/<name>/``) or a checkpoint file ``*.pt``: loaded by
  :func:`spikevision.train.checkpoint.load_run` (the one run loader: the run's
  ``checkpoints/best.pt``, else ``last.pt``), with the run's data set;
* a weights file ``*.safetensors`` written by :func:`spikevision.deploy.weights.save_weights`;
* a folder written by :func:`spikevision.hub.save_pretrained` (``config.json`` + ``model.safetensors``),
  with its card's data set;
* a registered model name: random weights, the weights in ``weights``, or the weights shipped with
  spikevision (``pretrained=<tag>``, e.g. ``fashion_mnist``), which bring their card's data set and
  preprocessing.

Whatever the source, the weights become a model in one place,
:func:`spikevision.models.factory.build_with_weights`. Every failure to read or
rebuild the model (a missing, damaged or foreign file, an unknown name, arguments
that do not fit the weights) is a ``FileNotFoundError`` or ``ValueError`` that says
what to do, so the commands report it in one line.

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
    #: signed bits per weight of the integer model that the card verified (agreement with the float model over
    #: the test set); None: no card, or the card verified none (the commands then default to 16)
    weight_bits: int | None = None


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
    """``create_model(name, **kwargs)``, with ``weights`` (safetensors or a state-dict ``.pt``) loaded strictly
    through :func:`~spikevision.models.factory.build_with_weights`.

    Raises:
        FileNotFoundError: no weights file.
        ValueError: an unreadable weights file, an unknown name, or kwargs the builder does not take or
            that do not fit the weights.
    """
    from spikevision.models import create_model
    from spikevision.models.arguments import check_model_kwargs
    from spikevision.models.factory import WeightsOrigin, build_with_weights
    from spikevision.weights import read_state_dict

    if weights is not None:
        state = read_state_dict(weights, fix="use the original weights file")
        origin = WeightsOrigin(str(weights), kwargs_of="", kwargs_where="--model-kwargs",
                               fix="give the model arguments the weights were made with (--model-kwargs)")
        return build_with_weights(name, state, {"model_kwargs": kwargs}, origin)
    problems = check_model_kwargs(name, kwargs, where="--model-kwargs")
    if problems:
        raise ValueError("; ".join(problems))
    try:
        return create_model(name, **kwargs)
    except (TypeError, RuntimeError) as e:
        args = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
        raise ValueError(f"cannot build {name}({args}) ({str(e).splitlines()[0]}); check --model-kwargs") from None


def _with_card(model: nn.Module, name: str, card: dict[str, Any], kwargs: dict[str, Any], origin: str) -> Source:
    """A model built from weights with a card, with the card's data set (and normalisation) when it recorded one."""
    from spikevision.train.checkpoint import CONFIG_KEY, MODEL_KWARGS_KEY, MODEL_NAME_KEY, run_data_config

    data = None
    if isinstance(card.get("config"), dict):
        try:
            data = run_data_config({CONFIG_KEY: card["config"], MODEL_KWARGS_KEY: card["model_kwargs"],
                                    MODEL_NAME_KEY: name})
        except ValueError as e:
            log.warning("%s: the card's data set is unusable (%s); pass --dataset", origin, e)
    return Source(model.eval(), name, {**card["model_kwargs"], **kwargs}, data, origin,
                  weight_bits=card_weight_bits(card, origin))


DEFAULT_WEIGHT_BITS = 16


def resolve_weight_bits(requested: int | None, src: Source) -> int:
    """Bits per weight for ``src``: ``requested`` if given, else the card's verified setting, else 16."""
    if requested is not None:
        return requested
    if src.weight_bits is not None:
        log.info("weights int%d: the model card's verified deploy setting (--weight-bits overrides)", src.weight_bits)
        return src.weight_bits
    return DEFAULT_WEIGHT_BITS


def card_weight_bits(card: dict[str, Any], origin: str) -> int | None:
    """The ``deploy.weight_bits`` a model card verified (see docs/deploy.md), or None; a bad value warns."""
    deploy = card.get("deploy")
    if deploy is None:
        return None
    bits = deploy.get("weight_bits") if isinstance(deploy, dict) else None
    if isinstance(bits, int) and not isinstance(bits, bool) and 2 <= bits <= 24:
        return bits
    log.warning("%s: the card's deploy.weight_bits is unusable (%r); using the default", origin, deploy)
    return None


def _pretrained(name: str, tag: str, kwargs: dict[str, Any]) -> Source:
    """A model built with its shipped weights (``create_model(name, pretrained=tag)``)."""
    from spikevision.models import create_model
    from spikevision.models.arguments import check_model_kwargs
    from spikevision.weights import read_card

    card = read_card(name, tag)
    problems = check_model_kwargs(name, kwargs, where="--model-kwargs")
    if problems:
        raise ValueError("; ".join(problems))
    return _with_card(create_model(name, pretrained=tag, **kwargs), name, card, kwargs,
                      f"{name} (pretrained={tag})")


def _is_hub_folder(path: Path) -> bool:
    """A folder written by :func:`spikevision.hub.save_pretrained` (``config.json`` + ``model.safetensors``)."""
    from spikevision.hub import CONFIG_FILE, WEIGHTS_FILE

    return path.is_dir() and (path / CONFIG_FILE).is_file() and (path / WEIGHTS_FILE).is_file()


def _from_hub_folder(path: Path) -> Source:
    """A saved folder (:func:`spikevision.hub.from_pretrained`), with its card's data set."""
    import json

    from spikevision.hub import CONFIG_FILE, from_pretrained

    model = from_pretrained(path)
    config = json.loads((path / CONFIG_FILE).read_text())  # checked by from_pretrained
    card = {**(config.get("card") or {}), "model_kwargs": dict(config.get("model_kwargs") or {})}
    return _with_card(model, config["model_name"], card, {}, str(path))


def load_source(source: str | Path, weights: str | Path | None = None,
                model_kwargs: dict[str, Any] | None = None, pretrained: str | None = None) -> Source:
    """Load the model named by ``source`` (see the module docstring).

    Args:
        source: a run directory, a checkpoint ``.pt``, a weights ``.safetensors``, a folder written by
            :func:`spikevision.hub.save_pretrained`, or a registered model name.
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
    if _is_hub_folder(path):
        return _from_hub_folder(path)
    if path.is_dir() or path.suffix == ".pt":
        return _from_run(path)
    if path.suffix == ".safetensors":
        from spikevision.deploy.weights import load_model, read_metadata

        meta = read_metadata(path)
        return Source(load_model(path), meta["model_name"], meta["model_kwargs"], None, str(path))
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
