"""Zoo entries: each registered model name fills its family's config dataclass.

nanoGPT's ``GPTConfig`` is the shape: a family declares one frozen dataclass
that holds everything defining a network (with the paper's values as
defaults), and its model class takes that config alone
(``MSResNet(MSResNetConfig(...))``). A published variant is then data: a
config with its numbers filled in, plus the fields a user may change.
:func:`register_config` turns such an entry into a registered builder, a
keyword-only function whose parameters are those fields with the entry's
values as defaults, so every default is stated once (in the config) and
``create_model``, ``spikevision models`` and recipe validation
(:mod:`spikevision.models.arguments`) read it like a hand-written builder::

    MS_RESNET20 = MSResNetConfig(layers=(3, 3, 3), widths=CIFAR_WIDTHS, ..., num_classes=10)
    ms_resnet20 = register_config("ms_resnet20", MS_RESNET20, MSResNet, tunable=TUNABLE, module=__name__,
                                  family="ms_resnet", paper=PAPER, input_size=(3, 32, 32), modality="image",
                                  doc="MS-ResNet-20 for CIFAR (n = 3).")

The config must have ``T``, ``num_classes`` and ``neuron_params`` fields (the
registry's metadata comes from them). A builder's ``neuron_params`` takes None
(the entry's constants), a full :class:`~spikevision.neuron.functional.NeuronParams`
or a mapping of the fields to change (:func:`~spikevision.models.base.resolve_neuron_params`).
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
import warnings
from typing import Any, Callable, Mapping, Sequence, TypeVar

from torch import nn

from spikevision.models.base import ParamsLike, resolve_neuron_params
from spikevision.models.registry import Modality, register_model

__all__ = ["register_config", "config_or_kwargs"]

M = TypeVar("M", bound=nn.Module)


def register_config(name: str, config: Any, build: Callable[[Any], M], *, tunable: Sequence[str],
                    doc: str, module: str, family: str, paper: str, input_size: tuple[int, int, int],
                    modality: Modality,
                    aliases: Mapping[str, str] | None = None,
                    finish: Callable[[Any, dict[str, Any]], dict[str, Any]] | None = None) -> Callable[..., M]:
    """Register the builder of one zoo entry and return it (assign it to the entry's name in the family module).

    Args:
        name: the registered name (the paper's model name, e.g. ``"ms_resnet18"``).
        config: the entry's config dataclass instance, every published number filled in.
        build: the model from a config (the family's model class).
        tunable: the builder's keyword arguments, in order: config fields a user may change.
        doc: the builder's docstring (what the variant is, its paper numbers).
        module: the family module that registers the entry (pass ``__name__``): the builder's
            ``__module__``, whose docstring holds the paper and its BibTeX (model cards quote it).
        family: the :class:`~spikevision.models.registry.ModelInfo` field (``T``, ``num_classes`` and
            ``neuron`` come from ``config``).
        paper: the ModelInfo field, the short citation.
        input_size: the ModelInfo field, the default input ``(C, H, W)``.
        modality: the ModelInfo field, ``"image"`` or ``"events"``.
        aliases: builder argument -> config field, where the builder's published name differs
            (GAC's ``kernel_size`` fills ``gac_kernel_size``).
        finish: ``finish(config, changes) -> changes``, applied to the user's changes (config field ->
            value) before they fill the config: fields derived from others, e.g. a mini net's strides
            from its number of stages; it may raise ValueError.

    Returns:
        The builder: ``builder(**overrides)`` builds ``build(replace(config, **overrides))``.

    Raises:
        ValueError: a ``tunable`` name that is not a field of the config, an ``input_size`` whose
            channels differ from the config's ``in_chans``, or a registered ``name``.
    """
    aliases = dict(aliases or {})
    hints = typing.get_type_hints(type(config))
    fields = {a: aliases.get(a, a) for a in tunable}
    missing = [f"{a} ({f})" if a != f else a for a, f in fields.items() if f not in hints]
    if missing:
        raise ValueError(f"{name}: {', '.join(missing)} not fields of {type(config).__name__}; "
                         f"its fields are {', '.join(hints)}")
    if input_size[0] != getattr(config, "in_chans", input_size[0]):
        raise ValueError(f"{name}: input_size {input_size} has {input_size[0]} channels, the config "
                         f"in_chans={config.in_chans}")
    params = [inspect.Parameter(a, inspect.Parameter.KEYWORD_ONLY,
                                default=None if f == "neuron_params" else getattr(config, f),
                                annotation=ParamsLike if f == "neuron_params" else hints[f])
              for a, f in fields.items()]
    signature = inspect.Signature(params, return_annotation=build)

    def builder(*args: Any, **kwargs: Any) -> M:
        values = signature.bind(*args, **kwargs).arguments  # TypeError for unknown or positional arguments
        changes = {fields[a]: v for a, v in values.items()}
        if "neuron_params" in changes:
            changes["neuron_params"] = resolve_neuron_params(config.neuron_params, changes["neuron_params"])
        if finish is not None:
            changes = finish(config, changes)
        return build(dataclasses.replace(config, **changes))

    builder.__name__ = builder.__qualname__ = name
    builder.__doc__ = doc
    builder.__module__ = module
    builder.__signature__ = signature  # type: ignore[attr-defined]
    builder.__annotations__ = {**{p.name: p.annotation for p in params}, "return": build}
    register_model(family=family, paper=paper, T=config.T, input_size=input_size, num_classes=config.num_classes,
                   neuron=config.neuron_params, modality=modality, config=config)(builder)
    return builder


def config_or_kwargs(owner: type, config_type: type, config: Any, kwargs: Mapping[str, Any]) -> Any:
    """The config a model class is built from: ``config``, or (deprecated) the keyword arguments that the
    class took before configs, which fill a ``config_type``.

    Args:
        owner: the model class (for messages).
        config_type: its config dataclass.
        config: the config given, or None.
        kwargs: keyword arguments given instead (the old constructor's); a DeprecationWarning.

    Raises:
        TypeError: both or neither given, a config of another type, or keywords the config lacks
            (naming the way to build the model now).
    """
    how = f"build with create_model(name) or {owner.__name__}({config_type.__name__}(...))"
    if config is not None and not kwargs:
        if not isinstance(config, config_type):
            raise TypeError(f"{owner.__name__} takes a {config_type.__name__}, got {type(config).__name__}; {how}")
        return config
    if config is not None or not kwargs:
        raise TypeError(f"{owner.__name__} takes one {config_type.__name__} (and no keyword arguments); {how}")
    warnings.warn(f"{owner.__name__}(**kwargs) is deprecated; pass {config_type.__name__}(**kwargs)",
                  DeprecationWarning, stacklevel=3)
    try:
        return config_type(**kwargs)
    except TypeError as e:
        raise TypeError(f"{owner.__name__}: {e}; {how}") from None
