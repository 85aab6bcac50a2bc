"""Build models by name: a tiny registry of builder functions (torchvision/timm style).

Each builder is a plain keyword-only function returning an ``nn.Module``,
registered with its paper and defaults::

    @register_model(family="ms_resnet", paper=PAPER, T=6, input_size=(3, 224, 224),
                    num_classes=1000, neuron=MS_NEURON, modality="image")
    def ms_resnet18(**kwargs) -> MSResNet: ...

``create_model("ms_resnet18", num_classes=10)`` calls it, dropping None-valued
keyword arguments so CLI defaults never override a model's own defaults.

Most families register entries instead of hand-written builders: a config
dataclass filled with the variant's numbers, turned into the same kind of
keyword-only builder by :func:`spikevision.models.zoo.register_config`
(``ModelInfo.config`` keeps the entry's config).
"""

from __future__ import annotations

import difflib
import numbers
import re
import sys
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Literal, Mapping

from torch import nn

from spikevision.neuron.functional import NeuronParams

__all__ = ["ModelInfo", "Modality", "MODALITIES", "register_model", "list_models", "get_model_info",
           "UnknownModelError", "check_shared_kwargs"]

#: What a model takes: ``"image"``, a static image ``[B, C, H, W]`` that its encoder turns into a
#: sequence (a ready sequence ``[T, B, C, H, W]`` is accepted too); ``"events"``, event frames
#: ``[T, B, C, H, W]`` only (e.g. CIFAR10-DVS polarity counts).
Modality = Literal["image", "events"]
MODALITIES: tuple[str, ...] = ("image", "events")


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
        modality: the input kind, ``"image"`` or ``"events"`` (see :data:`Modality`).
        config: the family config the builder fills (e.g. an
            :class:`~spikevision.models.ms_resnet.MSResNetConfig`), None for a hand-written builder.
    """

    name: str
    family: str
    paper: str
    T: int
    input_size: tuple[int, int, int]
    num_classes: int
    neuron: NeuronParams
    builder: Callable[..., nn.Module]
    modality: Modality
    config: Any = None

    def input_shape(self, batch: int = 1, *, T: int | None = None,
                    model_kwargs: Mapping[str, Any] | None = None) -> tuple[int, ...]:
        """Shape of one input batch of the model: ``[B, C, H, W]`` images or ``[T, B, C, H, W]`` event frames.

        Args:
            batch: samples ``B``.
            T: time steps of an event sequence (default: ``model_kwargs["T"]``, else the registered ``T``).
            model_kwargs: the builder's keyword arguments; ``in_chans`` and ``img_size`` change ``C`` and
                ``H = W`` from the registered ``input_size``.
        """
        kwargs = dict(model_kwargs or {})
        c, h, w = self.input_size
        c = kwargs.get("in_chans") or c
        if isinstance(kwargs.get("img_size"), int):
            h = w = kwargs["img_size"]
        if self.modality == "image":
            return (batch, c, h, w)
        return (T or kwargs.get("T") or self.T, batch, c, h, w)

    @property
    def paper_short(self) -> str:
        """``"Hu et al., <title>, TNNLS 2024 (...)"`` -> ``"Hu et al., TNNLS 2024"``; marks spikevision's own sizes."""
        venue = re.search(r"\b([A-Z][A-Za-z]+ (?:19|20)\d\d)\b", self.paper)
        short = self.paper.split(",")[0] + (f", {venue.group(1)}" if venue else "")
        own = "spikevision" in self.paper and not self.paper.startswith("spikevision")
        return short + (" (spikevision's size)" if own else "")

    @property
    def pretrained(self) -> tuple[str, ...]:
        """Tags of the trained weights shipped for this model (``create_model(name, pretrained=tag)``)."""
        from spikevision.weights import available_weights

        return tuple(available_weights().get(self.name, ()))


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
    modality: Modality,
    config: Any = None,
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator registering a builder under its function name.

    Args: the :class:`ModelInfo` fields (``modality``: what the model takes, ``"image"`` or ``"events"``;
        ``config``: the family config an entry fills, see :func:`spikevision.models.zoo.register_config`).

    Raises:
        ValueError: the name is already registered, or an unknown ``modality``.
    """
    if modality not in MODALITIES:
        raise ValueError(f"unknown modality {modality!r}; choose one of {list(MODALITIES)}")

    def decorator(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        name = fn.__name__
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is already registered (by {_REGISTRY[name].builder.__module__})")
        _REGISTRY[name] = ModelInfo(name, family, paper, T, tuple(input_size), num_classes, neuron, fn, modality,
                                    config)
        return fn

    return decorator


def get_model_info(name: str | ModelInfo) -> ModelInfo:
    """Registry entry of ``name``; unknown names list the closest matches.

    Args:
        name: a registered name, or a :class:`ModelInfo` (as :func:`list_models` gives), which is
            looked up by its name.

    Raises:
        UnknownModelError: ``name`` is not registered (lists the closest names).
        TypeError: ``name`` is neither a string nor a :class:`ModelInfo`.
    """
    if isinstance(name, ModelInfo):
        name = name.name
    if not isinstance(name, str):
        raise TypeError(f"get_model_info takes a model name (str) or a ModelInfo, got {type(name).__name__}; "
                        "see list_models() for the names")
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=5, cutoff=0.4)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise UnknownModelError(f"unknown model {name!r}{hint} (see `spikevision models` for all names)")
    return _REGISTRY[name]


def check_shared_kwargs(kwargs: Mapping[str, Any]) -> list[str]:
    """Problems with the builder arguments every family shares (one message each; empty if none).

    ``T`` (time steps) and ``num_classes`` must be whole numbers >= 1 when given: ``T=2.5``, ``T=0`` or
    ``num_classes=-3`` would otherwise fail deep inside a builder, or build a model without outputs.
    """
    errors = []
    for key, what in (("T", "time steps"), ("num_classes", "classes")):
        v = kwargs.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1):
            errors.append(f"{key} must be >= 1, a whole number of {what}, got {v!r}")
    return errors


def list_models(family: str | None = None, *, pattern: str | None = None,
                pretrained: bool = False) -> list[ModelInfo]:
    """Registered models, sorted by family then name.

    Args:
        family: only this family (``"ms_resnet"``).
        pattern: only names matching this shell-style wildcard (``"ms_resnet*"``, ``"*mini"``).
        pretrained: only models with shipped weights (``ModelInfo.pretrained``).

    ``spikevision.list_models`` gives the names alone, as timm does.

    Raises:
        ValueError: an unknown family.
    """
    import fnmatch

    infos = sorted(_REGISTRY.values(), key=lambda i: (i.family, i.name))
    if family is not None:
        families = {i.family for i in infos}
        if family not in families:
            raise ValueError(f"unknown family {family!r}; choose one of {sorted(families)}")
        infos = [i for i in infos if i.family == family]
    if pattern is not None:
        infos = [i for i in infos if fnmatch.fnmatchcase(i.name, pattern)]
    if pretrained:
        infos = [i for i in infos if i.pretrained]
    return infos


_MOVED = ("create_model", "build_with_weights", "PRETRAINED_FREE_KWARGS")


def __getattr__(name: str) -> Any:
    """The old home of :func:`~spikevision.models.factory.create_model` and ``build_with_weights``
    (deprecated: import them from ``spikevision.models`` or :mod:`spikevision.models.factory`).

    No import statement: the package ``spikevision.models`` has loaded the factory before any code can
    reach this module, and the registry stays below the factory in the import graph.
    """
    if name in _MOVED:
        warnings.warn(f"spikevision.models.registry.{name} moved to spikevision.models.factory "
                      f"(spikevision.create_model is the public entry point)", DeprecationWarning, stacklevel=2)
        return getattr(sys.modules["spikevision.models.factory"], name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
