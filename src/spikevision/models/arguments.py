"""Checking a model's builder arguments before anything is allocated, every problem at once.

:func:`check_model_kwargs` is what a recipe's ``model:`` section goes through
(:func:`spikevision.train.config.config_from_dict`), so ``model.img_size=abc``,
``model.widths=[-1,4]``, ``model.neuron=izhikevich`` or ``model.T=100000`` stop
the command with a usage error (exit 2) naming the argument, instead of a
TypeError deep inside a layer or the allocator dying. In order:

1. the name is registered, every key is a parameter of its builder (with the
   nearest valid one), and each value fits the builder's annotation (no empty
   values, choices listed, finite numbers);
2. sizes are whole numbers >= 1 (seeds >= 0), ``dropout`` lies in [0, 1),
   ``neuron`` is a registered neuron and ``neuron_params`` names its constants;
3. the builder runs on the ``meta`` device (no memory), which catches the
   family's own rules (``dim`` a multiple of 3, ``img_size`` divisible by the
   patches) and counts the parameters;
4. :func:`estimate_training_bytes` (weights, gradients, two optimiser states and
   the activations kept for the backward pass) must fit: one sample in this
   machine's memory (its RAM, or its largest GPU), and a whole batch in
   :data:`MAX_TRAINING_BYTES`.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import numbers
import os
import typing
from typing import Any, Mapping

import torch
from torch import nn

from spikevision.models.registry import UnknownModelError, check_shared_kwargs, get_model_info
from spikevision.validation import check_values, did_you_mean

__all__ = ["check_model_kwargs", "estimate_training_bytes", "machine_bytes", "MAX_TRAINING_BYTES"]

#: no single process trains with more memory than this (a batch's estimate above it is refused anywhere)
MAX_TRAINING_BYTES = 1 << 40  # 1 TiB
BYTES_PER_PARAMETER = 16  # float32 weight, gradient and two optimiser moments (AdamW; SGD keeps fewer)
BYTES_PER_ACTIVATION = 4  # float32, kept for the backward pass
USUAL_BATCH = 512  # per process; published models at their default sizes fit at this batch (mlp_spe_b: 310 GiB)
_NON_NEGATIVE = frozenset({"poisson_seed"})  # integer arguments that may be 0 (seeds); the rest are sizes >= 1
_FRACTIONS = frozenset({"dropout"})  # probabilities in [0, 1)


def check_model_kwargs(name: str, kwargs: Mapping[str, Any], *, batch_size: int | None = None,
                       where: str = "model") -> list[str]:
    """Every problem with building model ``name`` from ``kwargs`` (empty when it can be built and fits).

    Args:
        name: registered model name.
        kwargs: the builder's keyword arguments, as a recipe gives them.
        batch_size: samples per training step, for the memory estimate (None: one sample only).
        where: the prefix of each message (``model`` gives ``model.img_size must be int, got 'abc'``).

    Returns:
        One line per problem, each naming ``<where>.<argument>`` and the fix.
    """
    try:
        info = get_model_info(name)
    except UnknownModelError as e:
        return [f"{where}.name: {e}"]
    hints = _builder_hints(info.builder)
    if any(p.kind is p.VAR_KEYWORD for p in inspect.signature(info.builder).parameters.values()):
        hints = {**{str(k): Any for k in kwargs}, **hints}  # a builder taking **kwargs: extra keys pass unchecked
    accepted, errors = check_values(kwargs, hints, where)
    errors = [e.replace(" (did", f" for {name} (did", 1) + f"; {name} takes {', '.join(hints)}"
              if e.startswith(f"unknown key {where}.") and " (did" in e else
              e + f" for {name}; {name} takes {', '.join(hints)}" if e.startswith(f"unknown key {where}.") else e
              for e in errors]
    shared = check_shared_kwargs({k: v for k, v in kwargs.items() if v is not None})
    reported = {p.split(" ", 1)[0] for p in shared}  # "T must be >= 1, ..." says more than the type check
    errors = [e for e in errors if not any(e.startswith(f"{where}.{k} must be ") for k in reported)]
    errors.extend(f"{where}.{p}" for p in shared)
    errors.extend(_check_ranges(accepted, where))
    if errors:
        return errors  # the build below would only repeat them less clearly
    built = _meta_model(info.name, _freeze(kwargs))
    if isinstance(built, str):
        return [f"{where}: {name} cannot be built with these arguments: {built}"]
    return _check_memory(info, kwargs, built, batch_size, where)


def _builder_hints(builder: Any) -> dict[str, Any]:
    params = inspect.signature(builder).parameters
    hints = typing.get_type_hints(builder)
    return {n: hints.get(n, Any) for n, p in params.items() if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}


def _check_ranges(kwargs: Mapping[str, Any], where: str) -> list[str]:
    from spikevision.neuron.functional import NeuronParams
    from spikevision.neuron.modules import NEURONS

    errors = []
    for key, value in kwargs.items():
        ints = value if isinstance(value, (list, tuple)) else [value]
        if all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in ints) and ints:
            low = 0 if key in _NON_NEGATIVE else 1
            if min(ints) < low and key not in ("T", "num_classes"):  # those two: check_shared_kwargs
                what = ">= 0" if low == 0 else "whole numbers >= 1" if value is ints else "a whole number >= 1"
                errors.append(f"{where}.{key} must be {what}, got {value!r}")
        if key in _FRACTIONS and isinstance(value, (int, float)) and not 0 <= value < 1:
            errors.append(f"{where}.{key} is a probability in [0, 1), got {value!r}")
    neuron = kwargs.get("neuron")
    if isinstance(neuron, str) and neuron.lower() not in NEURONS:
        errors.append(f"{where}.neuron: unknown neuron {neuron!r}{did_you_mean(neuron.lower(), list(NEURONS))}; "
                      f"choose one of {', '.join(sorted(NEURONS))}")
    params = kwargs.get("neuron_params")
    if isinstance(params, Mapping):
        fields = {f.name: f.type for f in dataclasses.fields(NeuronParams)}
        hints = typing.get_type_hints(NeuronParams)
        hints["surrogate"] = Any  # a name or a Surrogate value; the build checks it
        _, problems = check_values(params, {k: hints[k] for k in fields}, f"{where}.neuron_params")
        errors.extend(p + f"; the constants are {', '.join(fields)}" if p.startswith("unknown key") else p
                      for p in problems)
    return errors


def _freeze(value: Any) -> Any:
    """A hashable copy of nested kwargs (for the cache of meta builds)."""
    if isinstance(value, Mapping):
        return tuple(sorted((str(k), _freeze(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return ("__seq__", *(_freeze(v) for v in value))
    return value if isinstance(value, typing.Hashable) else repr(value)


def _thaw(value: Any) -> Any:
    if isinstance(value, tuple) and value[:1] == ("__seq__",):
        return [_thaw(v) for v in value[1:]]
    if isinstance(value, tuple):
        return {k: _thaw(v) for k, v in value}
    return value


@functools.lru_cache(maxsize=16)
def _meta_model(name: str, frozen: Any) -> nn.Module | str:
    """The model built on the meta device (no memory), or why the builder refused (one line)."""
    try:
        with torch.device("meta"):
            return get_model_info(name).builder(**_thaw(frozen))
    except Exception as e:  # the builder's own checks, or sizes no tensor can have
        return " ".join(f"{'' if isinstance(e, ValueError) else type(e).__name__ + ':'} {e}".split())


@functools.lru_cache(maxsize=64)
def _activations_per_step(name: str, frozen: Any) -> int:
    """Output elements of every leaf module for one sample and one time step (a meta-device forward)."""
    info = get_model_info(name)
    kwargs = _thaw(frozen)
    for probe_T in (1, 2, 4):  # activations grow linearly in T; the shortest probe the builder takes
        try:
            with torch.device("meta"):
                model = info.builder(**{**kwargs, "T": probe_T})
            break
        except ValueError:  # GAC's temporal attention needs T >= its ratio
            continue
    else:
        return 0
    count = [0]

    def hook(module: nn.Module, inputs: Any, output: Any) -> None:
        if isinstance(output, torch.Tensor):
            count[0] += output.numel()

    handles = [m.register_forward_hook(hook) for m in model.modules() if not list(m.children())]
    try:
        with torch.no_grad():
            model.train()(torch.empty(info.input_shape(1, T=probe_T, model_kwargs=kwargs), device="meta"))
    finally:
        for h in handles:
            h.remove()
    return -(-count[0] // probe_T)


def estimate_training_bytes(name: str, kwargs: Mapping[str, Any], batch_size: int = 1,
                            parameters: int | None = None) -> int:
    """Bytes one training step needs: parameters x 16 plus the activations kept for backward x 4.

    A meta-device forward of one sample counts the activations (no memory used); it is an
    estimate (no workspace, no fused-kernel savings), good to within a small factor.
    """
    info = get_model_info(name)
    frozen = _freeze({k: v for k, v in kwargs.items() if k != "T"})
    if parameters is None:
        model = _meta_model(name, _freeze(kwargs))
        parameters = 0 if isinstance(model, str) else sum(p.numel() for p in model.parameters())
    T = int(kwargs.get("T", info.T))
    return (BYTES_PER_PARAMETER * int(parameters)
            + BYTES_PER_ACTIVATION * _activations_per_step(name, frozen) * T * batch_size)


def machine_bytes() -> int:
    """Memory of the largest device here: the RAM, or a CUDA GPU's if larger."""
    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, OSError, ValueError):
        ram = 1 << 34
    gpu = 0
    if torch.cuda.is_available():
        gpu = max(torch.cuda.get_device_properties(i).total_memory for i in range(torch.cuda.device_count()))
    return max(ram, gpu)


def _check_memory(info: Any, kwargs: Mapping[str, Any], model: nn.Module, batch_size: int | None,
                  where: str) -> list[str]:
    T = int(kwargs.get("T", info.T))
    parameters = sum(p.numel() for p in model.parameters())
    budget = machine_bytes()
    weights = BYTES_PER_PARAMETER * parameters
    if weights > budget:
        return [f"{where}: {info.name} with these arguments has {parameters:,} parameters, {_gib(weights)} to train, "
                f"more than this machine's {_gib(budget)}; choose smaller widths or depths"]
    # the forward that counts activations costs seconds for the big families; skip it when a cheap bound
    # fits, or when no size exceeds the builder's defaults (the published model) at a usual batch size
    if ((batch_size or 1) <= USUAL_BATCH and _no_larger_than_defaults(info.builder, kwargs)) or \
            not _may_exceed(info, kwargs, model, parameters, T, batch_size or 1, budget):
        return []
    try:
        per_sample = estimate_training_bytes(info.name, kwargs, 1, parameters)
    except Exception:  # a forward the meta device cannot run: no estimate; the run itself will tell
        return []
    if per_sample > budget:
        return [f"{where}: {info.name} at T={T} needs about {_gib(per_sample)} for one training sample, more than "
                f"this machine's {_gib(budget)}; lower {where}.T or the widths"]
    total = estimate_training_bytes(info.name, kwargs, batch_size or 1, parameters)
    if total > MAX_TRAINING_BYTES:
        return [f"{where}: {info.name} at T={T} and data.batch_size={batch_size} needs about {_gib(total)} per "
                f"training step, more than any one process has ({_gib(MAX_TRAINING_BYTES)}); lower "
                f"{where}.T, the widths or data.batch_size"]
    return []


def _no_larger_than_defaults(builder: Any, kwargs: Mapping[str, Any]) -> bool:
    """Whether every integer size in ``kwargs`` is at most the builder's default (element-wise for lists)."""
    defaults = {n: p.default for n, p in inspect.signature(builder).parameters.items()}
    for key, value in kwargs.items():
        if key in _NON_NEGATIVE or isinstance(value, bool):
            continue
        default = defaults.get(key)
        if isinstance(value, numbers.Integral):
            if not isinstance(default, numbers.Integral) or value > default:
                return False
        elif isinstance(value, (list, tuple)) and all(isinstance(v, numbers.Integral) for v in value):
            if (not isinstance(default, (list, tuple)) or len(value) > len(default)
                    or any(v > d for v, d in zip(value, default))):
                return False
    return True


def _may_exceed(info: Any, kwargs: Mapping[str, Any], model: nn.Module, parameters: int, T: int, batch: int,
                budget: int) -> bool:
    """Whether a generous bound on the activations reaches either limit (else the meta forward is skipped)."""
    shape = info.input_shape(1, T=1, model_kwargs=kwargs)
    pixels = shape[-1] * shape[-2]
    # each leaf's output: at most its own weight's rows (else the last weight's) times the input's pixels
    rows, channels = 0, shape[-3]
    for m in model.modules():
        if list(m.children()):
            continue
        weights = [p for p in m.parameters(recurse=False) if p.dim() > 0]
        channels = max(p.shape[0] for p in weights) if weights else channels
        rows += channels
    bound = BYTES_PER_ACTIVATION * rows * pixels * T
    return (BYTES_PER_PARAMETER * parameters + bound > budget
            or BYTES_PER_PARAMETER * parameters + bound * batch > MAX_TRAINING_BYTES)


def _gib(n: int) -> str:
    return f"{n / (1 << 30):,.1f} GiB"
