"""``nn.Module`` wrappers around the multi-step neuron functions.

Thin by design: a module holds its constants (and PLIF its one parameter) and
calls :func:`~spikevision.neuron.functional.lif_multistep`. It keeps no
membrane between calls, so there is no reset function and no step mode; the
dynamics are documented once, in :mod:`spikevision.neuron.functional`.

Shape: ``[T, B, ...]`` to spikes ``[T, B, ...]``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from spikevision.neuron.functional import NeuronParams, lif_multistep, plif_constants, plif_multistep

__all__ = ["LIF", "IF", "PLIF", "NEURONS", "build_neuron"]


class LIF(nn.Module):
    """Leaky integrate-and-fire neuron over a whole sequence.

    Args:
        p: neuron constants; default: :class:`NeuronParams` (tau 2, threshold 1,
            hard reset, sigmoid surrogate).
        **overrides: individual constants replacing those of ``p``
            (e.g. ``LIF(v_th=0.5)``).

    Example:
        >>> lif = LIF(NeuronParams(decay=0.25, gain=1.0, v_th=0.5, strict=True))
        >>> spikes = lif(torch.randn(4, 2, 8))  # [T, B, N] -> [T, B, N]
    """

    def __init__(self, p: NeuronParams = NeuronParams(), **overrides) -> None:
        super().__init__()
        self.p = p.replace(**overrides) if overrides else p

    def forward(self, x: Tensor) -> Tensor:
        return lif_multistep(x, self.p)

    def effective_params(self) -> NeuronParams:
        """The constants this layer runs with: ``p`` (PLIF's override adds its learned decay and gain)."""
        return self.p

    def extra_repr(self) -> str:
        p = self.p
        s = f"decay={p.decay:g}, gain={p.gain:g}, v_th={p.v_th:g}, reset={p.reset}"
        if p.reset == "hard":
            s += f", v_reset={p.v_reset:g}"
        if p.v_rest:
            s += f", v_rest={p.v_rest:g}"
        return s + f", strict={p.strict}, detach_reset={p.detach_reset}, surrogate={p.surrogate}"


class IF(LIF):
    """Integrate-and-fire neuron: :class:`LIF` with ``decay = 1`` and ``gain = 1``."""

    def __init__(self, p: NeuronParams = NeuronParams(), **overrides) -> None:
        overrides.setdefault("decay", 1.0)
        overrides.setdefault("gain", 1.0)
        super().__init__(p, **overrides)
        if self.p.decay != 1.0:
            raise ValueError(f"an IF neuron has no leak (decay 1), got decay={self.p.decay}")


class PLIF(nn.Module):
    """Parametric LIF with one learnable time constant per layer.

    Fang, Yu, Chen, Masquelier, Huang, Tian, "Incorporating Learnable Membrane
    Time Constant to Enhance Learning of Spiking Neural Networks", ICCV 2021
    (arXiv 2007.05785). ``1/tau = sigmoid(w)``, ``w`` initialised so that
    ``tau = init_tau``.

    Args:
        init_tau: initial time constant in time steps (> 1). Paper: 2.0.
        decay_input: scale the input by ``1/tau``.
        p: the other constants (``p.decay`` and ``p.gain`` are unused).
        **overrides: individual constants replacing those of ``p``.
    """

    def __init__(
        self, init_tau: float = 2.0, decay_input: bool = True, p: NeuronParams = NeuronParams(), **overrides
    ) -> None:
        super().__init__()
        if not init_tau > 1.0:
            raise ValueError(f"PLIF needs init_tau > 1 time step, got {init_tau}")
        self.p = p.replace(**overrides) if overrides else p
        self.decay_input = decay_input
        self.w = nn.Parameter(torch.tensor(-math.log(init_tau - 1.0)))

    @property
    def tau(self) -> float:
        """Current time constant in time steps."""
        return 1.0 / float(torch.sigmoid(self.w.detach()))

    def forward(self, x: Tensor) -> Tensor:
        return plif_multistep(x, self.w, self.p, decay_input=self.decay_input)

    def effective_params(self) -> NeuronParams:
        """``p`` with the current learned ``decay`` and ``gain`` (:func:`plif_constants` in float64, detached),
        as the deploy tools read them."""
        decay, gain = plif_constants(self.w.detach().double(), self.decay_input)
        return self.p.replace(decay=float(decay), gain=float(gain))

    def extra_repr(self) -> str:
        return f"tau={self.tau:.4g}, decay_input={self.decay_input}, v_th={self.p.v_th:g}, reset={self.p.reset}"


NEURONS: dict[str, type[nn.Module]] = {"lif": LIF, "if": IF, "plif": PLIF}


def build_neuron(kind: str | type[nn.Module], p: NeuronParams) -> nn.Module:
    """Build a neuron module from a name (``"lif"``, ``"if"``, ``"plif"``) or a class.

    The class is called as ``cls(p=p)``; this is the one factory every model
    uses, so ``neuron="plif"`` in a config swaps every neuron of a network.

    Raises:
        ValueError: unknown name. TypeError: not a name or module class.
    """
    if isinstance(kind, str):
        key = kind.lower()
        if key not in NEURONS:
            raise ValueError(f"unknown neuron {kind!r}; choose one of {sorted(NEURONS)}")
        kind = NEURONS[key]
    if not (isinstance(kind, type) and issubclass(kind, nn.Module)):
        raise TypeError(f"neuron must be a name or an nn.Module subclass, got {kind!r}")
    return kind(p=p)
