"""Build models by name: a tiny registry of builder functions (torchvision/timm style).

Each builder is a plain keyword-only function returning an ``nn.Module``,
registered with its paper and defaults::

    @register_model(family="ms_resnet", paper=PAPER, T=6, input_size=(3, 224, 224),
                    num_classes=1000, neuron=MS_NEURON, modality="image")
    def ms_resnet18(**kwargs) -> MSResNet: ...

``create_model("ms_resnet18", num_classes=10)`` calls it, dropping None-valued
keyword arguments so CLI defaults never override a model's own defaults.
"""

from __future__ import annotations

import difflib
import numbers
from dataclasses import dataclass
from typing import Any, Callable, Literal, Mapping

from torch import nn

from spikevision.neuron.functional import NeuronParams

__all__ = ["ModelInfo", "Modality", "MODALITIES", "register_model", "create_model", "list_models", "get_model_info",
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
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator registering a builder under its function name.

    Args: the :class:`ModelInfo` fields (``modality``: what the model takes, ``"image"`` or ``"events"``).

    Raises:
        ValueError: the name is already registered, or an unknown ``modality``.
    """
    if modality not in MODALITIES:
        raise ValueError(f"unknown modality {modality!r}; choose one of {list(MODALITIES)}")

    def decorator(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        name = fn.__name__
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is already registered (by {_REGISTRY[name].builder.__module__})")
        _REGISTRY[name] = ModelInfo(name, family, paper, T, tuple(input_size), num_classes, neuron, fn, modality)
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


#: builder arguments that may differ from a pretrained model's card (the weights do not depend on them)
PRETRAINED_FREE_KWARGS = frozenset({"T"})


def create_model(name: str, pretrained: str | None = None, **kwargs) -> nn.Module:
    """Build a registered model; None-valued keyword arguments are dropped.

    Args:
        name: registered model name (``spikevision models``).
        pretrained: tag of shipped trained weights (``"fashion_mnist"``; ``ModelInfo.pretrained``
            lists them): the model is built with the kwargs of its card and the weights are loaded
            strictly, offline. Other kwargs must agree with the card, except ``T`` (the weights do
            not depend on it; the accuracy does).
        kwargs: the builder's keyword arguments.

    Example:
        >>> model = create_model("ms_resnet18", num_classes=1000, T=6)
        >>> trained = create_model("ms_resnet_mini", pretrained="fashion_mnist").eval()

    Raises:
        UnknownModelError: ``name`` is not registered (lists the closest names).
        TypeError: a keyword the builder does not take.
        spikevision.weights.PretrainedNotFoundError: no such weights (lists the shipped ones).
        ValueError: a kwarg that contradicts the pretrained card (names both values), or a ``T`` or
            ``num_classes`` that is not a whole number >= 1 (:func:`check_shared_kwargs`).
    """
    info = get_model_info(name)
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    state = None
    if pretrained is not None:
        from spikevision.weights import load_pretrained_state

        state, card = load_pretrained_state(name, pretrained)
        trained = card["model_kwargs"]
        clash = [f"{k}={kwargs[k]!r} (trained with {trained[k]!r})" for k in kwargs
                 if k in trained and kwargs[k] != trained[k] and k not in PRETRAINED_FREE_KWARGS]
        if clash:
            raise ValueError(f"{name} pretrained={pretrained!r} cannot take {', '.join(clash)}; drop those "
                             f"arguments, or build without pretrained and load your own weights")
        kwargs = {**trained, **kwargs}
    problems = check_shared_kwargs(kwargs)
    if problems:
        raise ValueError(f"{name}: {'; '.join(problems)}")
    try:
        model = info.builder(**kwargs)
    except TypeError as e:
        if "unexpected keyword argument" in str(e):
            raise TypeError(f"{name}: {e}") from None
        raise
    if state is not None:
        try:
            model.load_state_dict(state)
        except RuntimeError as e:  # extra kwargs that change shapes
            raise ValueError(f"{name} pretrained={pretrained!r}: the weights do not fit the model built with "
                             f"{kwargs} ({str(e).splitlines()[0]})") from None
    return model


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
