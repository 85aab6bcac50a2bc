"""``create_model``: a registered builder called with checked arguments, optionally with shipped weights.

Above the registry (:mod:`spikevision.models.registry`: names -> builders) and the argument checks
(:mod:`spikevision.models.arguments`), so that a pretrained card's arguments are checked before anything
is allocated. ``spikevision.create_model`` and ``spikevision.models.create_model`` are this function.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from torch import nn

from spikevision.models.arguments import check_model_kwargs
from spikevision.models.registry import ModelInfo, check_shared_kwargs, get_model_info

__all__ = ["create_model", "build_with_weights", "WeightsOrigin", "PRETRAINED_FREE_KWARGS"]


#: builder arguments that may differ from a pretrained model's card (most weights do not depend on them; those
#: with per-step parameters then fail to load, with a message naming the trained value)
PRETRAINED_FREE_KWARGS = frozenset({"T"})


def create_model(name: str, pretrained: str | bool | None = None, **kwargs) -> nn.Module:
    """Build a registered model; None-valued keyword arguments are dropped.

    Args:
        name: registered model name (``spikevision models``).
        pretrained: tag of shipped trained weights (``"fashion_mnist"``; ``ModelInfo.pretrained``
            lists them; ``True``: the model's only tag): the model is built with the kwargs of its card
            and the weights are loaded strictly, offline. Other kwargs must agree with the card, except
            ``T`` (most families' weights do not depend on it, the accuracy does; weights with per-step
            parameters, such as S-ResNet's per-step batch norm, fit only their own T, and another fails
            with an error that says so). The model then carries
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


@dataclass(frozen=True)
class WeightsOrigin:
    """Where weights come from, as :func:`build_with_weights` words its errors.

    Attributes:
        where: the start of every message (``"runs/x/checkpoints/best.pt"``,
            ``"ms_resnet_mini pretrained='fashion_mnist'"``).
        kwargs_of: whose builder arguments are checked (``"the card's"``, ``"the checkpoint's"``; empty when
            ``kwargs_where`` says it).
        kwargs_where: the prefix of each argument in messages (``model_kwargs.T``, ``--model-kwargs.T``).
        fix: what the user should do, ending the message when the weights do not fit the arguments.
    """

    where: str
    kwargs_of: str = "the card's"
    kwargs_where: str = "model_kwargs"
    fix: str = "drop the arguments that change shapes, or build without pretrained and load your own weights"


def build_with_weights(name: str, state: Mapping[str, Any], card: Mapping[str, Any], source: "str | WeightsOrigin",
                       **kwargs: Any) -> nn.Module:
    """The one path from trained weights to a model: build ``name`` with the kwargs of ``card``, load ``state``.

    Every weights source comes through here: shipped weights (``create_model(name, pretrained=tag)``),
    saved folders and Hub repositories (:func:`spikevision.hub.from_pretrained`), run directories and
    checkpoints (:func:`spikevision.train.checkpoint.load_run`), exported ``.safetensors`` files
    (:func:`spikevision.deploy.weights.load_model`) and a model name with a weights file
    (:func:`spikevision.deploy.source.load_source`). In order: the tensors are checked finite, the
    card's kwargs are checked before anything is allocated, ``kwargs`` must agree with them (except
    ``T``), the model is built and the weights loaded strictly (an entry a safetensors file stored once
    because it aliases another is not a gap), and ``pretrained_cfg`` is attached when the card names a
    data set.

    Args:
        name: registered model name.
        state: the state dict.
        card: the model card (``model_kwargs``; ``dataset`` for the ``pretrained_cfg``, which is
            left None when the card names no data set). A checkpoint or a weights file passes
            ``{"model_kwargs": ...}``.
        source: where the weights come from, for messages: a :class:`WeightsOrigin`, or a string
            naming the source after the model's name (``"pretrained='fashion_mnist'"``).
        kwargs: builder arguments; they must agree with the card except ``T`` (None values dropped).

    Raises:
        ValueError: a kwarg that contradicts the card (names both values), weights that do not fit,
            weights holding NaN or infinite values (``NonFiniteWeightsError``, naming the tensor), or card
            kwargs out of bounds (wrong types, sizes that cannot fit in memory).
        TypeError: a keyword the builder does not take.
    """
    from spikevision.weights import check_finite_weights

    origin = source if isinstance(source, WeightsOrigin) else WeightsOrigin(f"{name} {source}")
    check_finite_weights(state, origin.where)
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    trained = dict(card.get("model_kwargs") or {})
    problems = check_model_kwargs(name, trained, where=origin.kwargs_where)  # before anything is allocated
    if problems:
        raise ValueError(f"{origin.where}: {origin.kwargs_of + ' ' if origin.kwargs_of else ''}"
                         f"{'; '.join(problems)}" + ("" if isinstance(source, str) else f"; {origin.fix}"))
    clash = [f"{k}={kwargs[k]!r} (trained with {trained[k]!r})" for k in kwargs
             if k in trained and kwargs[k] != trained[k] and k not in PRETRAINED_FREE_KWARGS]
    if clash:
        raise ValueError(f"{origin.where} cannot take {', '.join(clash)}; drop those "
                         f"arguments, or build without pretrained and load your own weights")
    kwargs = {**trained, **kwargs}
    try:
        model = create_model(name, **kwargs)
        why = _load_weights(model, state)
    except (TypeError, RuntimeError) as e:  # kwargs that change shapes, or that the builder refuses
        if isinstance(e, TypeError) and "unexpected keyword argument" in str(e):
            raise
        why = str(e).splitlines()[0]
    if why:
        args = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
        if "T" in trained and kwargs.get("T") != trained["T"]:  # T is the only card kwarg allowed to differ
            why += (f"; these weights hold per-time-step parameters (e.g. per-step batch norm), so they fit "
                    f"only T={trained['T']}, the T they were trained with")
        raise ValueError(f"{origin.where}: cannot rebuild {name}({args}) with these weights: they do not fit "
                         f"({why}); {origin.fix}")
    if card.get("dataset"):
        from spikevision.pretrained import pretrained_cfg_from_card

        model.pretrained_cfg = pretrained_cfg_from_card(card)
    return model


def _load_weights(model: nn.Module, state: Mapping[str, Any]) -> str:
    """Load ``state`` into ``model`` strictly; the reason it does not fit, or ``""``.

    An entry missing from ``state`` is allowed only when it shares its storage with an entry that was
    loaded (safetensors stores tensors shared between entries once, under the first name).
    """
    missing, unexpected = model.load_state_dict(state, strict=False)
    own = model.state_dict()
    loaded = {own[k].data_ptr() for k in state if k in own and own[k].numel()}
    missing = [k for k in missing if not (own[k].numel() and own[k].data_ptr() in loaded)]
    return "; ".join(f"{what} {_some(keys)}" for what, keys in (("missing", missing), ("unexpected", unexpected))
                     if keys)


def _some(keys: Sequence[str], shown: int = 4) -> str:
    """``keys`` for a one-line message: all of a few, else the first ``shown`` and how many more."""
    if len(keys) <= shown:
        return ", ".join(keys)
    return f"{len(keys)} entries: {', '.join(keys[:shown])} and {len(keys) - shown} more"


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
