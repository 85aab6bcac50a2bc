r"""GAC's encoder on the integer engine: everything but the gate's sigmoid is integer arithmetic.

Qiu et al., "Gated Attention Coding for Training High-performance and Efficient SNNs", AAAI 2024
(arXiv 2308.06582); the float encoder is :class:`~spikevision.layers.gac.GatedAttentionCoding`.
The encoder computes ``O = sigmoid(TA(U) * SCA(U)) * LIF(U)`` from the stem's output ``U``.
:class:`IntGAC` computes, in the engine's fixed point (``F`` fraction bits):

* ``U``: the stem's layers (conv with BN folded, pooling) as integer layers; ``S = LIF(U)``;
* ``SCA``: its two convolutions as integer layers, the zero padding folded into them, ReLU a comparison;
* ``TA``: per step and sample the mean of ``U`` over (C, H, W) (a sum, then a division rounded half to
  even: one per step) and its maximum (comparisons), each through the two-layer MLP (integer
  multiply-accumulate, ``T x T/2`` weights), summed;
* the gate: ``z = TA * SCA`` in ``F`` fraction bits (an integer product per element: what GAC multiplies;
  :func:`gate_product`: the full product ``(TA * SCA) >> F`` where both factors are below 2^31, which fits
  int64 on every target; else each factor keeps half of the fraction bits first,
  ``(TA >> F/2) * (SCA >> F - F/2)``, whose error vanishes next to such a large ``z``, where the sigmoid
  saturates), ``G = sigmoid(z)`` from a table (:func:`sigmoid_table`: ``sigmoid`` at ``2^-SIGMOID_BITS``
  steps of ``z`` over ``[-SIGMOID_RANGE, SIGMOID_RANGE]``, ``z`` clamped to it), linearly interpolated
  between its two nearest entries (one integer multiply per element), and
  ``O = G`` where ``S`` spiked, else 0 (a select: the spikes gate without a product).

The MFI audit reports the multiplications this keeps (the stem and SCA convolutions on analog
values, TA's MLP, the gate's product and its interpolation) as what they are; the table replaces the only
transcendental function. Its error is at most ``step^2 / 8`` times the sigmoid's largest curvature (0.0962),
7.3e-7 at ``2^-7`` steps, plus the saturation ``sigmoid(-16)`` = 1.1e-7 and one unit of ``2^-F``: far below
what the shifted factors or a table without interpolation left (about 1e-3, enough to flip about 1% of
the shipped model's predictions).
The float model's agreement is measured per model (``spikevision deploy``).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from spikevision.deploy.engine.layers import EngineConfig, IntNeuron, IntPool, IntSynapse, round_div
from spikevision.layers.gac import GatedAttentionCoding

__all__ = ["IntGAC", "sigmoid_table", "gate_product", "sigmoid_lookup", "SIGMOID_RANGE", "SIGMOID_BITS",
           "OPERAND_LIMIT"]

SIGMOID_RANGE = 16  # |z| beyond this saturates: sigmoid(-16) = 1.1e-7
SIGMOID_BITS = 7  # table step 2^-7 in z: 2 * 16 * 128 + 1 = 4097 entries, interpolated linearly
OPERAND_LIMIT = 2**31 - 1  # factors of the gate's product at most this: the product fits int64


def sigmoid_table(frac_bits: int, bits: int = SIGMOID_BITS, z_range: int = SIGMOID_RANGE) -> Tensor:
    """``round(sigmoid(z_i) * 2^F)`` at ``z_i = -range + i 2^-bits``, ``i = 0 .. 2 range 2^bits`` (int64)."""
    n = 2 * z_range << bits
    z = -z_range + torch.arange(n + 1, dtype=torch.float64) / 2.0**bits
    return torch.round(torch.sigmoid(z) * 2.0**frac_bits).to(torch.int64)


def gate_product(ta: Tensor, sca: Tensor, frac_bits: int) -> Tensor:
    """``z = (TA * SCA) >> F`` (int64 fixed point, floor) where both factors are at most
    :data:`OPERAND_LIMIT` in magnitude; else ``(TA >> F/2) * (SCA >> (F - F/2))`` with each factor clamped to
    it (a ``z`` far beyond the table's range, up to rounding)."""
    h = frac_bits // 2
    exact = (ta * sca) >> frac_bits  # wraps where a factor is too large: those lanes take the split product
    split = (ta >> h).clamp(-OPERAND_LIMIT, OPERAND_LIMIT) * (sca >> (frac_bits - h)).clamp(-OPERAND_LIMIT,
                                                                                          OPERAND_LIMIT)
    small = (ta.abs() <= OPERAND_LIMIT) & (sca.abs() <= OPERAND_LIMIT)
    return torch.where(small, exact, split)


def sigmoid_lookup(z: Tensor, table: Tensor, frac_bits: int) -> Tensor:
    """``sigmoid(z)`` for int64 fixed-point ``z``: the table's two nearest entries, interpolated linearly
    (``lo + ((hi - lo) * r) >> s`` with ``r`` the position between them in ``s = F - SIGMOID_BITS`` bits)."""
    shift = frac_bits - SIGMOID_BITS
    zc = z.clamp(-SIGMOID_RANGE << frac_bits, (SIGMOID_RANGE << frac_bits) - 1) + (SIGMOID_RANGE << frac_bits)
    idx, r = zc >> shift, zc & ((1 << shift) - 1)
    lo = table[idx]
    return lo + (((table[idx + 1] - lo) * r) >> shift)


def _stem_layers(stem: nn.Module, cfg: EngineConfig) -> nn.ModuleList:
    """The (BN-folded) stem as integer layers, in order: convs, pools, identities."""
    layers = list(stem) if isinstance(stem, nn.Sequential) else [stem]
    out = []
    for m in layers:
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            out.append(IntSynapse(m, m.weight.detach()[None], m.bias.detach()[None] if m.bias is not None else None,
                                  False, cfg))
        elif isinstance(m, (nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.MaxPool2d, nn.AdaptiveMaxPool2d)):
            out.append(IntPool(m, False))
        elif isinstance(m, (nn.Identity, nn.Dropout)):
            continue
        else:
            raise ValueError(f"the GAC stem holds a {type(m).__name__} (after BN folding), which the integer "
                             "engine cannot run; expected convolutions and pooling")
    return nn.ModuleList(out)


def _padded_synapse(pad: nn.ZeroPad2d, conv: nn.Conv2d, cfg: EngineConfig) -> IntSynapse:
    """An integer conv whose zero padding is the explicit ``ZeroPad2d`` before it (asymmetric for even k)."""
    if any(p != 0 for p in conv.padding) or conv.bias is not None:
        raise ValueError("GAC's SCA convolutions are unpadded and bias-free in every published model")
    syn = IntSynapse(conv, conv.weight.detach()[None], None, False, cfg)
    syn.pad = tuple(int(p) for p in pad.padding)  # (left, right, top, bottom), F.pad's order
    return syn


class IntGAC(nn.Module):
    """The GAC encoder on the integer engine (see the module docstring).

    Args:
        gac: the float encoder, BN already folded into its stem.
        cfg: number formats (``frac_bits >= SIGMOID_BITS``: the table's step is a whole number of units).

    Shape: image ``[B, C, H, W]`` (or frames ``[T, B, C, H, W]``) in fixed point to ``[T, B, C', H', W']``.

    Raises:
        ValueError: ``cfg.frac_bits`` below :data:`SIGMOID_BITS`.
    """

    def __init__(self, gac: GatedAttentionCoding, cfg: EngineConfig) -> None:
        super().__init__()
        if cfg.frac_bits < SIGMOID_BITS:
            raise ValueError(f"GAC's gate needs frac_bits >= {SIGMOID_BITS} (its sigmoid table's step is "
                             f"2^-{SIGMOID_BITS}), got {cfg.frac_bits}")
        self.T, self.F = gac.T, cfg.frac_bits
        self.stem = _stem_layers(gac.stem, cfg)
        self.neuron = IntNeuron(gac.neuron, cfg)
        body = list(gac.sca.body)
        self.sca1, self.sca2 = _padded_synapse(body[0], body[1], cfg), _padded_synapse(body[3], body[4], cfg)
        self.fc1 = IntSynapse(gac.ta.fc1, gac.ta.fc1.weight.detach()[None], None, False, cfg)
        self.fc2 = IntSynapse(gac.ta.fc2, gac.ta.fc2.weight.detach()[None], None, False, cfg)
        self.register_buffer("sigmoid_q", sigmoid_table(cfg.frac_bits))
        self.inputs_seen: set[str] = {"analog"}

    def _frames(self, x: Tensor) -> Tensor:
        for layer in self.stem:
            x = layer(x)
        return x

    def temporal_attention(self, u: Tensor) -> Tensor:
        """TA of ``U`` ``[T, B, C, H, W]``: ``[T, B]`` fixed point."""
        ui = torch.round(u).to(torch.int64).flatten(2)  # [T, B, C*H*W]
        avg = round_div(ui.sum(-1), ui.shape[-1]).t().double()  # [B, T]
        peak = ui.amax(-1).t().double()  # [B, T]
        mlp = lambda z: self.fc2(self.fc1(z).clamp_min(0))  # noqa: E731
        return (mlp(avg) + mlp(peak)).t()  # [T, B]

    def gate(self, z: Tensor) -> Tensor:
        """``sigmoid(z)`` from the interpolated table: ``z`` (int64, fixed point) to int64 fixed point."""
        return sigmoid_lookup(z, self.sigmoid_q, self.F)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() == 4:
            u1 = self._frames(x)  # the same at every step: computed once
            sca1 = self.sca2(self.sca1(u1).clamp_min(0))
            u, sca = u1.expand(self.T, *u1.shape), sca1.expand(self.T, *sca1.shape)
        else:
            T = x.shape[0]
            u = self._frames(x.flatten(0, 1)).unflatten(0, (T, -1))
            sca = self.sca2(self.sca1(u.flatten(0, 1)).clamp_min(0)).unflatten(0, (T, -1))
        s = self.neuron(u)
        ta = torch.round(self.temporal_attention(u)).to(torch.int64)
        z = gate_product(ta[:, :, None, None, None], torch.round(sca).to(torch.int64), self.F)
        return torch.where(s != 0, self.gate(z), 0).to(torch.float64)

    def extra_repr(self) -> str:
        return (f"T={self.T}, sigmoid table of {self.sigmoid_q.numel()} entries "
                f"(|z| <= {SIGMOID_RANGE}, step 2^-{SIGMOID_BITS}, interpolated)")

