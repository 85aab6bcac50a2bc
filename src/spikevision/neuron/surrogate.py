"""Surrogate gradients for the Heaviside spike function.

The forward pass of every spiking neuron is the exact Heaviside step
``s = H(u - v_th)``. Its derivative is zero almost everywhere, so training
replaces ``ds/du`` by a smooth or piecewise *surrogate* ``g(x)`` of
``x = u - v_th`` (Neftci, Mostafa, Zenke, "Surrogate Gradient Learning in
Spiking Neural Networks", IEEE Signal Processing Magazine 2019).

Each surrogate is a small frozen dataclass: an immutable value, safe to share,
hashable and printable. ``grad(x)`` is the surrogate derivative used by the
fused kernels; ``primitive(x)`` is a function whose derivative is ``grad``
(useful for straight-through references and for tests).

| class | ``grad(x)`` | used by |
|---|---|---|
| :class:`Sigmoid` | ``alpha * sig(alpha x) * (1 - sig(alpha x))`` | spiking MLP (alpha 4) |
| :class:`ATan` | ``alpha / 2 / (1 + (pi/2 * alpha * x)^2)`` | PLIF, SEW-ResNet |
| :class:`Rectangular` | ``1/width`` where ``abs(x) < width/2``, else 0 | MS-ResNet, GAC ImageNet (width 1) |
| :class:`Triangle` | ``peak * max(0, 1 - abs(x) / (width/2))`` | S-ResNet (peak 0.3, width 2 v_th), GAC CIFAR |
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

__all__ = ["Surrogate", "Sigmoid", "ATan", "Rectangular", "Triangle", "get_surrogate", "SURROGATES"]


@dataclass(frozen=True)
class Surrogate:
    """Base class: a surrogate derivative of the Heaviside step."""

    name: ClassVar[str] = "surrogate"

    def grad(self, x: Tensor) -> Tensor:
        """Surrogate ``ds/du`` at ``x = u - v_th``."""
        raise NotImplementedError

    def primitive(self, x: Tensor) -> Tensor:
        """A differentiable function whose derivative is :meth:`grad`."""
        raise NotImplementedError

    @property
    def grad_scale(self) -> float:
        """Constant factor of :meth:`grad` left out by :meth:`unscaled_grad_`."""
        return 1.0

    def unscaled_grad_(self, x: Tensor) -> Tensor:
        """Kernel helper: ``g`` with ``grad(x) == grad_scale * g``.

        May overwrite ``x`` (a scratch buffer) and return it, so the fused
        backward runs without temporaries; the constant :attr:`grad_scale` is
        folded into a later multiplication. The default just calls :meth:`grad`.
        """
        return self.grad(x)


@dataclass(frozen=True)
class Sigmoid(Surrogate):
    """Derivative of ``sigmoid(alpha * x)``.

    Args:
        alpha: steepness; the peak gradient is ``alpha / 4``. Spiking MLP: 4.0.
    """

    alpha: float = 4.0
    name: ClassVar[str] = "sigmoid"

    def __post_init__(self) -> None:
        _check_positive("alpha", self.alpha)

    def grad(self, x: Tensor) -> Tensor:
        sg = torch.sigmoid(x * self.alpha)
        return sg * (1.0 - sg) * self.alpha

    def primitive(self, x: Tensor) -> Tensor:
        return torch.sigmoid(x * self.alpha)

    @property
    def grad_scale(self) -> float:
        return self.alpha

    def unscaled_grad_(self, x: Tensor) -> Tensor:
        sg = x.mul_(self.alpha).sigmoid_()
        return sg.addcmul_(sg, sg, value=-1.0)  # sg - sg^2 = sg (1 - sg)


@dataclass(frozen=True)
class ATan(Surrogate):
    """Derivative of ``atan(pi/2 * alpha * x) / pi + 1/2``.

    Args:
        alpha: steepness; the peak gradient is ``alpha / 2``. PLIF: 2.0.
    """

    alpha: float = 2.0
    name: ClassVar[str] = "atan"

    def __post_init__(self) -> None:
        _check_positive("alpha", self.alpha)

    def grad(self, x: Tensor) -> Tensor:
        return (self.alpha / 2.0) / (1.0 + (x * (math.pi / 2.0 * self.alpha)).square())

    def primitive(self, x: Tensor) -> Tensor:
        return torch.atan(x * (math.pi / 2.0 * self.alpha)) / math.pi + 0.5

    @property
    def grad_scale(self) -> float:
        return self.alpha / 2.0

    def unscaled_grad_(self, x: Tensor) -> Tensor:
        return x.mul_(math.pi / 2.0 * self.alpha).square_().add_(1.0).reciprocal_()


@dataclass(frozen=True)
class Rectangular(Surrogate):
    """Box window: ``1/width`` inside ``abs(x) < width/2``, zero outside.

    Args:
        width: full width of the window (membrane units). MS-ResNet and GAC
            (ImageNet) use 1.0, i.e. the window ``u in (0, 1)`` around
            ``v_th = 0.5`` with height 1 (the authors' ``lens = 0.5`` is the
            half-width).
    """

    width: float = 1.0
    name: ClassVar[str] = "rectangular"

    def __post_init__(self) -> None:
        _check_positive("width", self.width)

    def grad(self, x: Tensor) -> Tensor:
        return (x.abs() < self.width / 2.0).to(x.dtype) / self.width

    def primitive(self, x: Tensor) -> Tensor:
        return torch.clamp(x / self.width + 0.5, 0.0, 1.0)

    @property
    def grad_scale(self) -> float:
        return 1.0 / self.width

    def unscaled_grad_(self, x: Tensor) -> Tensor:
        return x.abs_().lt_(self.width / 2.0)  # lt_ writes 1.0 / 0.0


@dataclass(frozen=True)
class Triangle(Surrogate):
    """Triangular window: ``peak * max(0, 1 - abs(x) / (width/2))``.

    Args:
        width: full support width (membrane units). S-ResNet writes the
            surrogate as ``0.3 * max(0, 1 - |u/v_th - 1|)``, i.e. width
            ``2 * v_th``; GAC's CIFAR code uses width 2 with ``v_th = 1``.
        peak: value at ``x = 0``. S-ResNet: 0.3; GAC CIFAR: 1.0.
    """

    width: float = 2.0
    peak: float = 1.0
    name: ClassVar[str] = "triangle"

    def __post_init__(self) -> None:
        _check_positive("width", self.width)
        _check_positive("peak", self.peak)

    def grad(self, x: Tensor) -> Tensor:
        return torch.clamp(1.0 - x.abs() * (2.0 / self.width), min=0.0) * self.peak

    def primitive(self, x: Tensor) -> Tensor:
        # integral of the triangle from -width/2, as a smooth piecewise quadratic
        h = self.width / 2.0
        xc = torch.clamp(x, -h, h)
        quad = xc + torch.sign(xc) * (-xc.square() / (2.0 * h))
        return (quad + h / 2.0) * self.peak

    @property
    def grad_scale(self) -> float:
        return self.peak

    def unscaled_grad_(self, x: Tensor) -> Tensor:
        return x.abs_().mul_(-2.0 / self.width).add_(1.0).clamp_(min=0.0)


SURROGATES: dict[str, type[Surrogate]] = {
    cls.name: cls for cls in (Sigmoid, ATan, Rectangular, Triangle)
}


def get_surrogate(spec: str | Surrogate | type[Surrogate], **kwargs: float) -> Surrogate:
    """Resolve a surrogate from a name, a class or an instance.

    Args:
        spec: ``"sigmoid"``, ``"atan"``, ``"rectangular"``, ``"triangle"``, a
            :class:`Surrogate` subclass, or an instance (returned unchanged).
        **kwargs: the surrogate's parameters (e.g. ``alpha=4.0``); only allowed
            when ``spec`` is a name or a class.

    Raises:
        ValueError: unknown name. TypeError: wrong kind of ``spec`` or parameter.
    """
    if isinstance(spec, Surrogate):
        if kwargs:
            raise TypeError(f"got a surrogate instance {spec!r} and extra parameters {kwargs}; pass one or the other")
        return spec
    if isinstance(spec, str):
        key = spec.lower()
        if key not in SURROGATES:
            raise ValueError(f"unknown surrogate {spec!r}; choose one of {sorted(SURROGATES)}")
        spec = SURROGATES[key]
    if isinstance(spec, type) and issubclass(spec, Surrogate):
        try:
            return spec(**kwargs)
        except TypeError as e:
            raise TypeError(f"bad parameters for surrogate {spec.name!r}: {e}") from None
    raise TypeError(f"surrogate must be a name, a Surrogate subclass or instance, got {type(spec).__name__}")


def _check_positive(name: str, value: float) -> None:
    if not (isinstance(value, (int, float)) and value > 0 and math.isfinite(value)):
        raise ValueError(f"surrogate parameter {name} must be a positive finite number, got {value!r}")
