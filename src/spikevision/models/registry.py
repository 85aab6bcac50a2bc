"""Build models by name: a tiny registry of builder functions (torchvision/timm style).

Each builder is a plain keyword-only function returning an ``nn.Module``,
registered with its paper and defaults::

    @register_model(family="ms_resnet", paper=PAPER, T=6, input_size=(3, 224, 224),
                    num_classes=1000, neuron=MS_NEURON)
    def ms_resnet18(**kwargs) -> MSResNet: ...

``create_model("ms_resnet18", num_classes=10)`` calls it, dropping None-valued
keyword arguments so CLI defaults never override a model's own defaults.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Callable

from torch import nn

from spikevision.neuron.functional import NeuronParams

__all__ = ["ModelInfo", "register_model", "create_model", "list_models", "get_model_info", "UnknownModelError"]


@dataclass(frozen=True)
class ModelInfo:
    """What the registry knows about a builder.

    Attributes:
        name: registered name (lower snake case, the paper's model name).
        family: ``"spiking_mlp"``, ``"ms_resnet"``, ``"gac"``, ``"sresnet"``,
            ``"spiking_resnet"``, ...
        paper: short citation of the paper the variant comes from.
        T: default number of time steps.
        input_size: default input ``(C, H, W)``.
        num_classes: default number of classes.
        neuron: default neuron constants.
        builder: the registered function.
    """

    name: str
    family: str
    paper: str
    T: int
    input_size: tuple[int, int, int]
    num_classes: int
    neuron: NeuronParams
    builder: Callable[..., nn.Module]


class UnknownModelError(ValueError):
    """Raised for a model name that is not registered."""


_REGISTRY: dict[str, ModelInfo] = {}


def register_model(
    *,
    family: str,
    paper: str,
    T: int,
    input_size: tuple[int, int, int],
    num_classes: int,
    neuron: NeuronParams,
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator registering a builder under its function name.

    Raises:
        ValueError: the name is already registered.
    """

    def decorator(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        name = fn.__name__
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is already registered (by {_REGISTRY[name].builder.__module__})")
        _REGISTRY[name] = ModelInfo(name, family, paper, T, tuple(input_size), num_classes, neuron, fn)
        return fn

    return decorator


def _ensure_loaded() -> None:
    # importing the package registers every family's builders
    import spikevision.models  # noqa: F401


def get_model_info(name: str) -> ModelInfo:
    """Registry entry of ``name``; unknown names list the closest matches."""
    _ensure_loaded()
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=5, cutoff=0.4)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise UnknownModelError(f"unknown model {name!r}{hint} (see `spikevision models` for all names)")
    return _REGISTRY[name]


def create_model(name: str, **kwargs) -> nn.Module:
    """Build a registered model; None-valued keyword arguments are dropped.

    Example:
        >>> model = create_model("ms_resnet18", num_classes=1000, T=6)
    """
    info = get_model_info(name)
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    try:
        return info.builder(**kwargs)
    except TypeError as e:
        if "unexpected keyword argument" in str(e):
            raise TypeError(f"{name}: {e}") from None
        raise


def list_models(family: str | None = None) -> list[ModelInfo]:
    """All registered models, sorted by family then name, optionally of one family."""
    _ensure_loaded()
    infos = sorted(_REGISTRY.values(), key=lambda i: (i.family, i.name))
    if family is not None:
        families = {i.family for i in infos}
        if family not in families:
            raise ValueError(f"unknown family {family!r}; choose one of {sorted(families)}")
        infos = [i for i in infos if i.family == family]
    return infos
