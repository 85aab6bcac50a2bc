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
from dataclasses import dataclass
from typing import Any, Callable, Literal, Mapping

from torch import nn

from spikevision.neuron.functional import NeuronParams

__all__ = ["ModelInfo", "Modality", "MODALITIES", "register_model", "create_model", "list_models", "get_model_info",
           "UnknownModelError", "check_shared_kwargs", "build_with_weights"]

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


def _ensure_loaded() -> None:
    # importing the package registers every family's builders
    import spikevision.models  # noqa: F401


def get_model_info(name: str | ModelInfo) -> ModelInfo:
    """Registry entry of ``name``; unknown names list the closest matches.

    Args:
        name: a registered name, or a :class:`ModelInfo` (as :func:`list_models` gives), which is
            looked up by its name.

    Raises:
        UnknownModelError: ``name`` is not registered (lists the closest names).
        TypeError: ``name`` is neither a string nor a :class:`ModelInfo`.
    """
    _ensure_loaded()
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


#: builder arguments that may differ from a pretrained model's card (the weights do not depend on them)
PRETRAINED_FREE_KWARGS = frozenset({"T"})


def create_model(name: str, pretrained: str | bool | None = None, **kwargs) -> nn.Module:
    """Build a registered model; None-valued keyword arguments are dropped.

    Args:
        name: registered model name (``spikevision models``).
        pretrained: tag of shipped trained weights (``"fashion_mnist"``; ``ModelInfo.pretrained``
            lists them; ``True``: the model's only tag): the model is built with the kwargs of its card
            and the weights are loaded strictly, offline. Other kwargs must agree with the card, except
            ``T`` (the weights do not depend on it; the accuracy does). The model then carries
            ``model.pretrained_cfg`` (:class:`spikevision.pretrained.PretrainedCfg`: preprocessing,
            class names, card); ``spikevision.create_transform(model)`` builds its eval transform.
        kwargs: the builder's keyword arguments.

    Example:
        >>> model = create_model("ms_resnet18", num_classes=1000, T=6)
        >>> trained = create_model("ms_resnet_mini", pretrained="fashion_mnist").eval()
        >>> trained.pretrained_cfg.class_names[0]
        'T-shirt/top'

    Raises:
        UnknownModelError: ``name`` is not registered (lists the closest names).
        TypeError: a keyword the builder does not take.
        spikevision.weights.PretrainedNotFoundError: no such weights (lists the shipped ones).
        ValueError: a kwarg that contradicts the pretrained card (names both values), or a ``T`` or
            ``num_classes`` that is not a whole number >= 1 (:func:`check_shared_kwargs`).
    """
    info = get_model_info(name)
    if pretrained is True:
        pretrained = _only_tag(info)
    if pretrained is not None and pretrained is not False:
        from spikevision.weights import load_pretrained_state

        state, card = load_pretrained_state(name, pretrained)
        return build_with_weights(name, state, card, f"pretrained={pretrained!r}", **kwargs)
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    problems = check_shared_kwargs(kwargs)
    if problems:
        raise ValueError(f"{name}: {'; '.join(problems)}")
    try:
        return info.builder(**kwargs)
    except TypeError as e:
        if "unexpected keyword argument" in str(e):
            raise TypeError(f"{name}: {e}") from None
        raise


def build_with_weights(name: str, state: Mapping[str, Any], card: Mapping[str, Any], source: str,
                       **kwargs: Any) -> nn.Module:
    """Build ``name`` with the kwargs of its model ``card``, load ``state`` strictly, attach ``pretrained_cfg``.

    The one path from trained weights plus their card to a model: shipped weights
    (``create_model(name, pretrained=tag)``) and saved folders or Hub repositories
    (:func:`spikevision.hub.from_pretrained`) both come through here.

    Args:
        name: registered model name.
        state: the state dict.
        card: the model card (``model_kwargs``; ``dataset`` for the ``pretrained_cfg``, which is
            left None when the card names no data set).
        source: where the weights come from, for messages (``"pretrained='fashion_mnist'"``).
        kwargs: builder arguments; they must agree with the card except ``T`` (None values dropped).

    Raises:
        ValueError: a kwarg that contradicts the card (names both values), weights that do not fit,
            weights holding NaN or infinite values (``NonFiniteWeightsError``, naming the tensor), or card
            kwargs out of bounds (wrong types, sizes that cannot fit in memory).
        TypeError: a keyword the builder does not take.
    """
    from spikevision.models.arguments import check_model_kwargs
    from spikevision.weights import check_finite_weights

    check_finite_weights(state, f"{name} {source}")
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    trained = dict(card.get("model_kwargs") or {})
    problems = check_model_kwargs(name, trained, where="model_kwargs")  # before anything is allocated
    if problems:
        raise ValueError(f"{name} {source}: the card's {'; '.join(problems)}")
    clash = [f"{k}={kwargs[k]!r} (trained with {trained[k]!r})" for k in kwargs
             if k in trained and kwargs[k] != trained[k] and k not in PRETRAINED_FREE_KWARGS]
    if clash:
        raise ValueError(f"{name} {source} cannot take {', '.join(clash)}; drop those "
                         f"arguments, or build without pretrained and load your own weights")
    kwargs = {**trained, **kwargs}
    model = create_model(name, **kwargs)
    try:
        model.load_state_dict(state)
    except RuntimeError as e:  # extra kwargs that change shapes
        raise ValueError(f"{name} {source}: the weights do not fit the model built with "
                         f"{kwargs} ({str(e).splitlines()[0]})") from None
    if card.get("dataset"):
        from spikevision.pretrained import pretrained_cfg_from_card

        model.pretrained_cfg = pretrained_cfg_from_card(card)
    return model


def _only_tag(info: ModelInfo) -> str:
    """``pretrained=True``: the one tag shipped for the model (errors list the choices)."""
    tags = info.pretrained
    if len(tags) == 1:
        return tags[0]
    if not tags:
        from spikevision.weights import PretrainedNotFoundError, available_weights

        have = ", ".join(available_weights()) or "none"
        raise PretrainedNotFoundError(f"no pretrained weights for {info.name!r}; models with weights: {have}")
    raise ValueError(f"{info.name} has weights for several data sets; pick one: pretrained="
                     + " or ".join(repr(t) for t in tags))


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

    _ensure_loaded()
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
