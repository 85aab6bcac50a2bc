"""The constants of a multi-step spiking neuron: :class:`NeuronParams`, PLIF's learned pair, input checks.

The dynamics these constants parametrise are written once, as math, in
:mod:`spikevision.neuron.functional` and as a plain loop in
:mod:`spikevision.neuron.reference`. This module imports nothing of the
kernels, so every kernel, the reference loop and the modules can import it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

import torch
from torch import Tensor

from spikevision.neuron.surrogate import Sigmoid, Surrogate, get_surrogate

__all__ = ["NeuronParams", "ResetKind", "RESET_KINDS", "check_sequence", "plif_constants"]

ResetKind = Literal["hard", "soft", "none"]
#: The reset kinds, in the order of the kernels' integer codes (hard 0, soft 1, none 2).
RESET_KINDS: tuple[str, ...] = ("hard", "soft", "none")


@dataclass(frozen=True)
class NeuronParams:
    """Constants of a multi-step spiking neuron (see :mod:`spikevision.neuron.functional`).

    All quantities are in membrane units per time step (dimensionless).

    Args:
        decay: multiplier of the post-reset membrane's distance to ``v_rest``
            per step, ``1 - 1/tau`` in the tau form. 1 is an IF neuron.
        gain: multiplier of the input current (``1/tau`` with ``decay_input``).
        v_th: firing threshold.
        v_reset: membrane value after a hard reset.
        v_rest: resting potential the leak decays towards, and the initial
            membrane.
        reset: ``"hard"`` (to ``v_reset``), ``"soft"`` (subtract ``v_th``) or
            ``"none"``.
        strict: fire when ``H > v_th`` (True) or when ``H >= v_th`` (False).
        detach_reset: the spike in the reset term carries no gradient.
        surrogate: surrogate gradient of the Heaviside (an immutable value).

    The defaults are SpikingJelly's ``LIFNode`` defaults used by the spiking
    MLP: tau 2 with ``decay_input`` (decay 0.5, gain 0.5), threshold 1, hard
    reset to 0, firing at equality, sigmoid surrogate with alpha 4, detached
    reset.

    Raises:
        ValueError: an unknown reset kind, a constant that is not a real number, a decay outside [0, 1].
    """

    decay: float = 0.5
    gain: float = 0.5
    v_th: float = 1.0
    v_reset: float = 0.0
    v_rest: float = 0.0
    reset: ResetKind = "hard"
    strict: bool = False
    detach_reset: bool = True
    surrogate: Surrogate = field(default_factory=Sigmoid)

    def __post_init__(self) -> None:
        if self.reset not in RESET_KINDS:
            raise ValueError(f"reset must be one of {RESET_KINDS}, got {self.reset!r}")
        if not isinstance(self.surrogate, Surrogate):
            object.__setattr__(self, "surrogate", get_surrogate(self.surrogate))
        for name in ("decay", "gain", "v_th", "v_reset", "v_rest"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or value != value:
                raise ValueError(f"neuron constant {name} must be a real number, got {value!r}")
            object.__setattr__(self, name, float(value))
        if not 0.0 <= self.decay <= 1.0:
            raise ValueError(f"decay must lie in [0, 1] (1 - 1/tau), got {self.decay}")

    @classmethod
    def from_tau(cls, tau: float, decay_input: bool = True, **kwargs) -> "NeuronParams":
        """Tau form ``H = V + (X - (V - v_reset)) / tau`` (SpikingJelly ``LIFNode``).

        Args:
            tau: membrane time constant in time steps, ``tau >= 1``.
            decay_input: divide the input by ``tau`` too (``gain = 1/tau``).
            **kwargs: other fields; ``v_rest`` defaults to ``v_reset``.
        """
        if not tau >= 1.0:
            raise ValueError(f"tau must be >= 1 time step, got {tau}")
        v_reset = kwargs.get("v_reset", 0.0)
        kwargs.setdefault("v_rest", v_reset)
        return cls(decay=1.0 - 1.0 / tau, gain=(1.0 / tau) if decay_input else 1.0, **kwargs)

    def replace(self, **changes) -> "NeuronParams":
        """A copy with some fields changed; unknown names raise TypeError."""
        unknown = set(changes) - set(self.__dataclass_fields__)
        if unknown:
            raise TypeError(
                f"unknown neuron constant(s) {sorted(unknown)}; valid: {sorted(self.__dataclass_fields__)}"
            )
        return replace(self, **changes)


def check_sequence(x: Tensor, name: str = "input", min_dim: int = 2) -> None:
    """Raise a clear error unless ``x`` is a floating time-major sequence ``[T, B, ...]``.

    Raises:
        TypeError: not a tensor, or not floating point. ValueError: fewer than ``min_dim`` dims.
    """
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be floating point, got {x.dtype}; convert with .float()")
    if x.dim() < min_dim:
        raise ValueError(
            f"{name} must be a time-major sequence [T, B, ...] with at least {min_dim} dims, "
            f"got shape {list(x.shape)}; add an encoder (e.g. DirectEncoder(T)) in front"
        )


def plif_constants(w: Tensor, decay_input: bool = True) -> tuple[Tensor, Tensor | float]:
    """PLIF's effective ``(decay, gain)`` from its parameter: ``1/tau = sigmoid(w)``.

    ``decay = 1 - sigmoid(w)``; ``gain = sigmoid(w)`` with ``decay_input``, else ``1.0``.
    The one place the formula lives: the kernels, the reference loop's callers, analysis
    and deploy all take PLIF's constants from here.

    Args:
        w: the scalar parameter (any shape with one element); the result keeps its dtype
            and its autograd graph.
        decay_input: scale the input by ``1/tau``.

    Returns:
        0-dim tensors ``(decay, gain)`` (``gain`` is the float ``1.0`` without ``decay_input``).

    Raises:
        ValueError: ``w`` has more than one element.
    """
    if w.numel() != 1:
        raise ValueError(f"PLIF expects one scalar time-constant parameter, got shape {list(w.shape)}")
    inv_tau = torch.sigmoid(w.reshape(()))
    return 1.0 - inv_tau, (inv_tau if decay_input else 1.0)
