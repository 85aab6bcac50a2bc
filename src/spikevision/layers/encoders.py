"""Input encoders: turn a static image ``[B, C, H, W]`` into a sequence ``[T, B, C, H, W]``.

The learned GAC encoder lives in :mod:`spikevision.layers.gac`.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["DirectEncoder", "PoissonEncoder", "check_image"]


def check_image(x: Tensor, name: str = "encoder") -> None:
    """Raise unless ``x`` is a floating ``[B, C, H, W]`` image batch."""
    if not isinstance(x, Tensor) or not x.is_floating_point():
        raise TypeError(f"{name} expects a floating-point image tensor, got {getattr(x, 'dtype', type(x))}")
    if x.dim() != 4:
        hint = " (already a sequence? then drop the encoder)" if x.dim() == 5 else ""
        raise ValueError(f"{name} expects a static image batch [B, C, H, W], got shape {list(x.shape)}{hint}")


class DirectEncoder(nn.Module):
    """Direct coding: repeat the analog image at every step (a view, no copy).

    Args:
        T: number of time steps.

    Shape: ``[B, C, H, W]`` to ``[T, B, C, H, W]``.
    """

    def __init__(self, T: int) -> None:
        super().__init__()
        if T < 1:
            raise ValueError(f"T must be >= 1, got {T}")
        self.T = T

    def forward(self, x: Tensor) -> Tensor:
        check_image(x, "DirectEncoder")
        return x.unsqueeze(0).expand(self.T, *x.shape)

    def extra_repr(self) -> str:
        return f"T={self.T}"


class PoissonEncoder(nn.Module):
    """Rate coding with Bernoulli spikes per pixel and step.

    * unsigned (default): spike with probability ``clamp(x, 0, 1)``;
    * signed (S-ResNet): emit ``sign(x)`` where ``2 * u <= |x|`` for
      ``u ~ U(0, 1)``, i.e. probability ``min(|x| / 2, 1)``.

    Args:
        T: number of time steps.
        signed: S-ResNet's signed variant.
        seed: seed of a private generator (per device), making the spike trains
            reproducible across runs; None draws from the global RNG.

    Shape: ``[B, C, H, W]`` to ``[T, B, C, H, W]`` with values in {0, 1}
    (or {-1, 0, 1} if signed). The gradient does not pass through.
    """

    def __init__(self, T: int, signed: bool = False, seed: int | None = None) -> None:
        super().__init__()
        if T < 1:
            raise ValueError(f"T must be >= 1, got {T}")
        self.T, self.signed, self.seed = T, signed, seed
        self._generators: dict[str, torch.Generator] = {}

    def _generator(self, device: torch.device) -> torch.Generator | None:
        if self.seed is None:
            return None
        key = str(device)
        if key not in self._generators:
            self._generators[key] = torch.Generator(device=device).manual_seed(self.seed)
        return self._generators[key]

    @torch.no_grad()
    def forward(self, x: Tensor) -> Tensor:
        check_image(x, "PoissonEncoder")
        u = torch.rand((self.T, *x.shape), generator=self._generator(x.device), device=x.device, dtype=x.dtype)
        if self.signed:
            return torch.sign(x) * (2.0 * u <= x.abs()).to(x.dtype)
        return (u < x.clamp(0.0, 1.0)).to(x.dtype)

    def extra_repr(self) -> str:
        return f"T={self.T}, signed={self.signed}, seed={self.seed}"
