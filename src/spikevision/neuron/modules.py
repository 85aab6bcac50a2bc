"""``nn.Module`` wrappers around the multi-step neuron functions, and what every neuron module is.

Thin by design: a module holds its constants (and PLIF its one parameter) and
calls :func:`~spikevision.neuron.functional.lif_multistep`. It keeps no
membrane between calls, so there is no reset function and no step mode; the
dynamics are documented once, in :mod:`spikevision.neuron.functional`.

Every neuron module is a :class:`SpikingNeuron`: the one answer to "is this a
neuron?" for the training engine's spike count, the firing-rate monitors,
memory saving (spikes packed as int8), the integer engine, the deploy trace and
NIR export. They read a neuron through this interface alone (its constants,
:meth:`~SpikingNeuron.effective_params`, :meth:`~SpikingNeuron.kernel_constants`),
so a new neuron type that subclasses it is counted, packed and exported
without any list to update.

Shape: ``[T, B, ...]`` to spikes ``[T, B, ...]``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from spikevision.neuron.functional import lif_multistep, plif_multistep
from spikevision.neuron.params import NeuronParams, plif_constants

__all__ = ["SpikingNeuron", "LIF", "IF", "PLIF", "NEURONS", "build_neuron"]


class SpikingNeuron(nn.Module):
    """Base class of every neuron module: constants ``p``, a whole sequence in, spikes out, no state.

    A subclass sets ``self.p`` (:class:`~spikevision.neuron.params.NeuronParams`) and implements
    ``forward``, ``[T, B, ...]`` to spikes ``[T, B, ...]`` of exactly 0 and 1 in the input's dtype;
    one whose decay or gain is not ``p``'s (PLIF) overrides :meth:`kernel_constants`.

    Attributes:
        p: the neuron's constants.
    """

    p: NeuronParams

    def kernel_constants(self, dtype: torch.dtype) -> tuple[Tensor | float, Tensor | float]:
        """``(decay, gain)`` as the kernel runs them for an input of ``dtype`` (floats, or PLIF's tensors).

        Gives :func:`~spikevision.neuron.reference.lif_reference` the same constants as the layer's own kernel.
        """
        return self.p.decay, self.p.gain

    def effective_params(self) -> NeuronParams:
        """The constants this layer runs with, as plain floats (what the deploy tools read)."""
        decay, gain = self.kernel_constants(torch.float64)
        if isinstance(decay, float) and isinstance(gain, float):
            return self.p
        return self.p.replace(decay=float(decay), gain=float(gain))


class LIF(SpikingNeuron):
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
        """Spikes ``[T, B, ...]`` of the input current ``[T, B, ...]``."""
        return lif_multistep(x, self.p)

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


class PLIF(SpikingNeuron):
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
        """Spikes ``[T, B, ...]`` of the input current ``[T, B, ...]``."""
        return plif_multistep(x, self.w, self.p, decay_input=self.decay_input)

    def kernel_constants(self, dtype: torch.dtype) -> tuple[Tensor, Tensor | float]:
        """The learned ``(decay, gain)`` (:func:`plif_constants` of ``w`` in ``dtype``, detached)."""
        return plif_constants(self.w.detach().to(dtype), self.decay_input)

    def extra_repr(self) -> str:
        return f"tau={self.tau:.4g}, decay_input={self.decay_input}, v_th={self.p.v_th:g}, reset={self.p.reset}"


NEURONS: dict[str, type[SpikingNeuron]] = {"lif": LIF, "if": IF, "plif": PLIF}


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
