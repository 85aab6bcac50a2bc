"""Integer layers of the multiplication-free engine (see :mod:`spikevision.deploy.engine`).

Every value between layers is a fixed-point integer ``q = round(v * 2^F)`` carried in a
float64 tensor (exact below 2^53); layers compute in int64; a spike is ``2^F``. Which
operations each layer executes is what :class:`~spikevision.deploy.engine.arithmetic.ArithmeticCounter` counts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from spikevision.deploy.engine.fold import bn_affine
from spikevision.deploy.engine.arithmetic import uncounted
from spikevision.layers.norm import BNTT2d, TokenBatchNorm1d

__all__ = [
    "EngineConfig", "IntSynapse", "IntAffine", "IntPool", "IntNeuron", "FloatFallback",
    "pow2_exponent", "shift_add_terms", "round_div",
]

_MAX_EXACT = 2**53  # float64 carries every integer below this exactly
_EVENT_BUDGET = 1 << 24  # unfolded elements per chunk in the event-driven convolution


@dataclass(frozen=True)
class EngineConfig:
    """Number formats of the integer engine.

    Args:
        weight_bits: signed bits per weight (per-output-channel power-of-two scale). 16 by default; 8 works
            for small nets with some agreement loss (measure it).
        frac_bits: ``F``, fraction bits of every analog value between layers.
        membrane_bits: extra fraction bits of the membrane, so that gain and leak shifts stay exact longer.
        leak: a leak (or gain) that is not a power of two: ``"mul"`` (exact integer multiplication,
            reported) or ``"shift_add"`` (approximated by signed shifts, error reported).
        shift_add_terms: number of signed power-of-two terms for ``"shift_add"``.
    """

    weight_bits: int = 16
    frac_bits: int = 24
    membrane_bits: int = 8
    leak: Literal["mul", "shift_add"] = "mul"
    shift_add_terms: int = 3

    def __post_init__(self) -> None:
        if not 2 <= self.weight_bits <= 24:
            raise ValueError(f"weight_bits must lie in [2, 24], got {self.weight_bits}")
        if not 4 <= self.frac_bits <= 32:
            raise ValueError(f"frac_bits must lie in [4, 32], got {self.frac_bits}")
        if not 0 <= self.membrane_bits <= 16:
            raise ValueError(f"membrane_bits must lie in [0, 16], got {self.membrane_bits}")
        if self.leak not in ("mul", "shift_add"):
            raise ValueError(f"leak must be 'mul' or 'shift_add', got {self.leak!r}")
        if not 1 <= self.shift_add_terms <= 8:
            raise ValueError(f"shift_add_terms must lie in [1, 8], got {self.shift_add_terms}")


def pow2_exponent(value: float) -> int | None:
    """``k`` with ``value == 2**-k`` (k >= 0), else None."""
    if value <= 0 or value > 1:
        return None
    k = -math.log2(value)
    return int(round(k)) if abs(k - round(k)) < 1e-12 and 2.0 ** -round(k) == value else None


def shift_add_terms(value: float, terms: int, max_shift: int = 30) -> list[tuple[int, int]]:
    """Greedy signed power-of-two expansion ``value ~ sum(sign * 2**-k)`` as ``[(sign, k), ...]``."""
    out: list[tuple[int, int]] = []
    rest = value
    for _ in range(terms):
        if rest == 0:
            break
        k = min(max(0, round(-math.log2(abs(rest)))), max_shift)
        sign = 1 if rest > 0 else -1
        out.append((sign, k))
        rest -= sign * 2.0**-k
    return out


def _is_binary(x: Tensor, one: float) -> bool:
    """True when ``x`` holds only 0 and ``one`` (spikes), by a scan (uncounted: bookkeeping, not inference)."""
    with uncounted():
        return bool(((x == 0) | (x == one)).all())


def _input_label(x: Tensor, binary: bool) -> str:
    """``"spikes"``, ``"silent"`` (binary but no spike at all: inconclusive) or ``"analog"``."""
    if not binary:
        return "analog"
    with uncounted():
        return "spikes" if bool((x != 0).any()) else "silent"


def round_div(x: Tensor, n: int) -> Tensor:
    """``x / n`` rounded half to even (int64 ``x``, ``n > 0``): the integer twin of ``torch.round(x / n)``."""
    q = torch.div(x, n, rounding_mode="floor")
    r2 = 2 * (x - q * n)
    return q + ((r2 > n) | ((r2 == n) & (q % 2 == 1))).to(torch.int64)


def _to_int(x: Tensor) -> Tensor:
    """Carrier (float64 holding integers, or any float) to int64, rounding non-integers."""
    return torch.round(x).to(torch.int64)


# ---------------------------------------------------------------------------
# Layers
# ---------------------------------------------------------------------------


class IntSynapse(nn.Module):
    """Integer conv/linear layer: accumulate on spikes, multiply on analog input.

    Args:
        layer: the float ``nn.Conv2d``/``nn.Linear`` (structure, and weights unless given).
        weight: ``[S, *layer.weight.shape]`` float weights (``S = 1``, or ``T`` for a folded BNTT).
        bias: ``[S, out]`` float bias or None.
        time_folded: input is ``[T, B, ...]`` (True) or a plain batch (False).
        cfg: number formats.
    """

    def __init__(self, layer: nn.Module, weight: Tensor, bias: Tensor | None, time_folded: bool, cfg: EngineConfig):
        super().__init__()
        self.kind = "linear" if isinstance(layer, nn.Linear) else "conv2d"
        self.time_folded, self.F = time_folded, cfg.frac_bits
        self.per_step = weight.shape[0] > 1
        if self.kind == "conv2d":
            if layer.padding_mode != "zeros":
                raise ValueError(f"padding_mode {layer.padding_mode!r} is not supported; use 'zeros'")
            self.kernel_size, self.stride, self.dilation = layer.kernel_size, layer.stride, layer.dilation
            self.groups = layer.groups
            if isinstance(layer.padding, str):  # 'same' (PyTorch puts the extra pixel after) or 'valid'
                pads = []
                for k, d in zip(layer.kernel_size, layer.dilation):
                    total = d * (k - 1) if layer.padding == "same" else 0
                    pads.append((total // 2, total - total // 2))
            else:
                pads = [(p, p) for p in layer.padding]
            self.pad = (pads[1][0], pads[1][1], pads[0][0], pads[0][1])  # F.pad order: W then H
        w = weight.double()
        S, C = w.shape[0], w.shape[1]
        limit = 2 ** (cfg.weight_bits - 1) - 1
        maxabs = w.reshape(S, C, -1).abs().amax(-1)
        exp = torch.where(maxabs > 0, torch.ceil(torch.log2(maxabs.clamp_min(1e-300))), torch.zeros_like(maxabs))
        frac = (cfg.weight_bits - 1 - exp).clamp(max=cfg.frac_bits).to(torch.int64)  # F_c per (step, channel)
        scale = torch.pow(2.0, frac.double()).reshape(S, C, *([1] * (w.dim() - 2)))
        self.register_buffer("weight_int", torch.round(w * scale).clamp(-limit, limit).to(torch.int64))
        self.register_buffer("weight_frac", frac)
        self.register_buffer("align", cfg.frac_bits - frac)  # left shift to the Q format, >= 0
        b = bias.double() if bias is not None else torch.zeros(S, C, dtype=torch.float64)
        self.register_buffer("bias_q", torch.round(b * 2.0**cfg.frac_bits).to(torch.int64))
        self.weight_error = float((self.weight_int.double() / scale - w).abs().max())
        self.inputs_seen: set[str] = set()

    def _channel_view(self, v: Tensor) -> Tensor:
        return v.reshape(-1, 1, 1) if self.kind == "conv2d" else v

    # -- event-driven accumulation (binary input) ---------------------------
    def _events_linear(self, mask: Tensor, w: Tensor) -> Tensor:
        N = mask.shape[0]
        wt = w.t().contiguous()  # [in, out]
        idx = mask.nonzero()  # (sample, input) of every spike
        acc = torch.zeros(N, w.shape[0], dtype=torch.int64, device=w.device)
        acc.index_add_(0, idx[:, 0], wt[idx[:, 1]])  # one addition per synaptic event
        return acc

    def _events_conv(self, mask: Tensor, w: Tensor) -> Tensor:
        N = mask.shape[0]
        kh, kw = self.kernel_size
        (sh, sw), (dh, dw) = self.stride, self.dilation
        x = F.pad(mask, self.pad)  # bool, zero (no spike) padding
        Hp, Wp = x.shape[-2:]
        Ho, Wo = (Hp - dh * (kh - 1) - 1) // sh + 1, (Wp - dw * (kw - 1) - 1) // sw + 1
        G, Cout = self.groups, w.shape[0]
        cin_g, cout_g = x.shape[1] // G, Cout // G
        out = torch.empty(N, Cout, Ho * Wo, dtype=torch.int64, device=w.device)
        K = cin_g * kh * kw
        step = max(1, _EVENT_BUDGET // max(1, K * Ho * Wo))
        for g in range(G):
            wt = w[g * cout_g:(g + 1) * cout_g].reshape(cout_g, K).t().contiguous()  # [K, out], K = (cin, i, j)
            for n0 in range(0, N, step):
                xs = x[n0:n0 + step, g * cin_g:(g + 1) * cin_g]
                n = xs.shape[0]
                # im2col by strided slices (data movement): [n, Ho, Wo, cin, kh*kw]
                taps = [
                    xs[:, :, i * dh:i * dh + sh * (Ho - 1) + 1:sh, j * dw:j * dw + sw * (Wo - 1) + 1:sw]
                    for i in range(kh) for j in range(kw)
                ]
                rows = torch.stack(taps, dim=-1).permute(0, 2, 3, 1, 4).reshape(n * Ho * Wo, K)
                idx = rows.nonzero()  # (output position, kernel tap) of every spike a window sees
                acc = torch.zeros(n * Ho * Wo, cout_g, dtype=torch.int64, device=w.device)
                acc.index_add_(0, idx[:, 0], wt[idx[:, 1]])  # one addition per synaptic event
                out[n0:n0 + n, g * cout_g:(g + 1) * cout_g] = acc.reshape(n, Ho * Wo, cout_g).transpose(1, 2)
        return out.reshape(N, Cout, Ho, Wo)

    # -- dense path (analog input): integer multiply-accumulate -------------
    def _dense(self, x: Tensor, w: Tensor, frac: Tensor) -> Tensor:
        acc = self._mac(_to_int(x), w)  # units 2^-(F + F_c)
        return acc >> self._channel_view(frac)  # to 2^-F

    def _mac(self, xi: Tensor, w: Tensor) -> Tensor:
        """Exact integer ``conv/linear(xi, w)`` (int64). float64 products are exact below 2^53; a larger
        input is split into limbs ``xi = hi * 2^b + lo`` (each its own pass, counted)."""
        wd = w.double()
        with uncounted():
            wsum = float(w.abs().reshape(w.shape[0], -1).sum(1).max()) or 1.0
            bound = float(xi.abs().max()) * wsum
        if bound >= _MAX_EXACT:
            b = max(1, int(math.floor(math.log2(_MAX_EXACT / 2 / wsum))))
            lo = xi & ((1 << b) - 1)
            return (self._mac(xi >> b, w) << b) + self._mac(lo, w)
        xd = xi.double()
        if self.kind == "linear":
            acc = F.linear(xd, wd)
        else:
            acc = F.conv2d(F.pad(xd, self.pad), wd, None, self.stride, 0, self.dilation, self.groups)
        return acc.to(torch.int64)

    def _apply(self, x: Tensor, s: int) -> Tensor:
        w, frac, align, bias = self.weight_int[s], self.weight_frac[s], self.align[s], self.bias_q[s]
        lead = x.shape[:-1] if self.kind == "linear" else None
        if self.kind == "linear":
            x = x.reshape(-1, x.shape[-1])
        binary = _is_binary(x, 2.0**self.F)
        self.inputs_seen.add(_input_label(x, binary))
        if binary:
            with uncounted():
                mask = x != 0  # the spike events (our carrier stores a spike as 2^F)
            acc = self._events_linear(mask, w) if self.kind == "linear" else self._events_conv(mask, w)
            acc = acc << self._channel_view(align)
        else:
            acc = self._dense(x, w, frac)
        out = acc + self._channel_view(bias)
        out = out.to(torch.float64)
        return out.reshape(*lead, -1) if lead is not None else out

    def forward(self, x: Tensor) -> Tensor:
        if self.per_step:
            if x.shape[0] != self.weight_int.shape[0]:
                raise ValueError(f"per-step layer folded for T={self.weight_int.shape[0]}, got {list(x.shape)}")
            return torch.stack([self._apply(x[t], t) for t in range(x.shape[0])])
        if self.time_folded:
            T = x.shape[0]
            y = self._apply(x.flatten(0, 1), 0)
            return y.unflatten(0, (T, -1))
        return self._apply(x, 0)

    def extra_repr(self) -> str:
        return f"{self.kind}, weight_int={list(self.weight_int.shape)}, per_step={self.per_step}"


class IntAffine(nn.Module):
    """A BN kept in the model (not foldable) as an integer per-feature affine map.

    On binary input: ``where(spike, a + b, b)`` (a select). On analog input:
    ``(x * a_int) >> F_a + b`` (a multiplication per element).

    Args:
        bn: the BN (``TDBatchNorm*``, ``TokenBatchNorm1d``, ``BNTT2d`` or plain).
        cfg: number formats.
    """

    def __init__(self, bn: nn.Module, cfg: EngineConfig) -> None:
        super().__init__()
        self.F = cfg.frac_bits
        sets = [bn_affine(b) for b in bn.bns] if isinstance(bn, BNTT2d) else [bn_affine(bn)]
        a = torch.stack([s[0] for s in sets])
        b = torch.stack([s[1] for s in sets])
        self.per_step = isinstance(bn, BNTT2d)
        self.token = isinstance(bn, TokenBatchNorm1d)
        self.inputs_seen: set[str] = set()
        self.spikevision_layout = type(bn).__module__.startswith("spikevision")
        maxabs = float(a.abs().max()) or 1.0
        self.a_frac = int(min(cfg.weight_bits - 1 - math.ceil(math.log2(maxabs)), cfg.frac_bits))
        self.register_buffer("a_int", torch.round(a * 2.0**self.a_frac).to(torch.int64))
        self.register_buffer("b_q", torch.round(b * 2.0**self.F).to(torch.int64))
        self.register_buffer("on_q", torch.round((a + b) * 2.0**self.F).to(torch.int64))

    def _view(self, v: Tensor, x: Tensor, axis: int) -> Tensor:
        shape = [1] * x.dim()
        shape[axis] = -1
        return v.reshape(shape)

    def _apply(self, x: Tensor, s: int, axis: int) -> Tensor:
        binary = _is_binary(x, 2.0**self.F)
        self.inputs_seen.add(_input_label(x, binary))
        if binary:
            with uncounted():
                mask = x != 0
            out = torch.where(mask, self._view(self.on_q[s], x, axis), self._view(self.b_q[s], x, axis))
        else:
            out = ((_to_int(x) * self._view(self.a_int[s], x, axis)) >> self.a_frac) + self._view(self.b_q[s], x, axis)
        return out.to(torch.float64)

    def forward(self, x: Tensor) -> Tensor:
        if self.per_step:
            return torch.stack([self._apply(x[t], t, 1) for t in range(x.shape[0])])
        return self._apply(x, 0, 2 if self.spikevision_layout else 1)


class IntPool(nn.Module):
    """Integer pooling: average = window sum then shift (or division); max = comparisons.

    Args:
        pool: ``nn.AvgPool2d``, ``nn.AdaptiveAvgPool2d``, ``nn.MaxPool2d`` or ``nn.AdaptiveMaxPool2d``.
        time_folded: input ``[T, B, C, H, W]`` (True) or ``[N, C, H, W]``.
    """

    def __init__(self, pool: nn.Module, time_folded: bool) -> None:
        super().__init__()
        self.pool, self.time_folded = pool, time_folded
        self.is_max = isinstance(pool, (nn.MaxPool2d, nn.AdaptiveMaxPool2d))
        self.divides, self.last_window = False, 0
        if isinstance(pool, nn.AvgPool2d):
            padded = pool.padding not in (0, (0, 0))
            if pool.ceil_mode or pool.divisor_override or (padded and not pool.count_include_pad):
                raise ValueError(
                    f"{pool} is not supported by the integer engine; use ceil_mode=False, no divisor_override "
                    "and count_include_pad=True"
                )

    def _window(self, H: int, W: int) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
        p = self.pool
        if isinstance(p, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
            oh, ow = (p.output_size, p.output_size) if isinstance(p.output_size, int) else p.output_size
            oh, ow = oh or H, ow or W
            if H % oh or W % ow:
                raise ValueError(f"adaptive pooling {H}x{W} -> {oh}x{ow} has uneven windows; not supported")
            return (H // oh, W // ow), (H // oh, W // ow), (0, 0)
        pair = lambda v: (v, v) if isinstance(v, int) else tuple(v)  # noqa: E731
        return pair(p.kernel_size), pair(p.stride or p.kernel_size), pair(p.padding)

    def _apply(self, x: Tensor) -> Tensor:
        N, C, H, W = x.shape
        k, s, pad = self._window(H, W)
        if self.is_max:
            return F.max_pool2d(x, k, s, pad)
        xp = F.pad(x, (pad[1], pad[1], pad[0], pad[0]))
        Ho, Wo = (xp.shape[-2] - k[0]) // s[0] + 1, (xp.shape[-1] - k[1]) // s[1] + 1
        cols = F.unfold(xp, k, stride=s).reshape(N, C, k[0] * k[1], Ho * Wo)  # window elements (data movement)
        total = _to_int(cols.sum(2))
        n = k[0] * k[1]
        e = pow2_exponent(1.0 / n)
        self.divides, self.last_window = e is None, n
        out = total >> e if e is not None else torch.div(total, n, rounding_mode="floor")
        return out.to(torch.float64).reshape(N, C, Ho, Wo)

    def forward(self, x: Tensor) -> Tensor:
        if self.time_folded:
            return self._apply(x.flatten(0, 1)).unflatten(0, (x.shape[0], -1))
        return self._apply(x)


class IntNeuron(nn.Module):
    """Integer multi-step neuron with the dynamics of :mod:`spikevision.neuron.functional`.

    Membrane fixed point: ``M = F + membrane_bits`` fraction bits. Per step
    ``H = leak(V) + drive(X) + c``, ``S = H >= th`` (``>`` if strict),
    ``V = where(S, v_reset, H)`` (hard), ``H - where(S, th, 0)`` (soft) or ``H``.

    Args:
        neuron: a neuron module (:class:`~spikevision.neuron.SpikingNeuron`: ``LIF``, ``IF``, ``PLIF``).
        cfg: number formats and leak handling.
    """

    def __init__(self, neuron: nn.Module, cfg: EngineConfig) -> None:
        super().__init__()
        p = neuron.effective_params()  # PLIF: its learned decay and gain
        decay, gain = p.decay, p.gain
        self.decay, self.gain, self.p = decay, gain, p
        self.F, self.E = cfg.frac_bits, cfg.membrane_bits
        M = self.F + self.E
        self.th = round(p.v_th * 2.0**M)
        self.v_reset = round(p.v_reset * 2.0**M)
        self.const = round((1.0 - decay) * p.v_rest * 2.0**M)
        self.v_init = round(p.v_rest * 2.0**M)
        # drive = X * gain, X has F fraction bits, the membrane M: multiply by gain * 2^E
        g = gain * 2.0**self.E
        self.gain_shift = int(round(math.log2(g))) if g >= 1 and 2.0 ** round(math.log2(g)) == g else None
        self.gain_int = round(g)
        self.gain_error = 0.0 if self.gain_shift is not None else abs(self.gain_int / 2.0**self.E - gain)
        # leak
        self.leak_shift = pow2_exponent(decay) if decay not in (0.0, 1.0) else None
        self.leak_terms: list[tuple[int, int]] = []
        self.leak_mul: int | None = None
        self.leak_bits = 16
        self.leak_error = 0.0
        if decay not in (0.0, 1.0) and self.leak_shift is None:
            if cfg.leak == "shift_add":
                self.leak_terms = shift_add_terms(decay, cfg.shift_add_terms)
                self.leak_error = abs(sum(s * 2.0**-k for s, k in self.leak_terms) - decay)
            else:
                self.leak_mul = round(decay * 2**self.leak_bits)
                self.leak_error = abs(self.leak_mul / 2**self.leak_bits - decay)

    @property
    def multiplies(self) -> list[str]:
        """Why this neuron multiplies (empty if it does not)."""
        why = []
        if self.leak_mul is not None:
            why.append(f"leak {self.decay:.6g} is not a power of two (integer multiply)")
        if self.gain_shift is None:
            why.append(f"input gain {self.gain:.6g} is not a power of two (integer multiply)")
        return why

    def _leak(self, v: Tensor) -> Tensor:
        if self.decay == 1.0:
            return v
        if self.decay == 0.0:
            return torch.zeros_like(v)
        if self.leak_shift is not None:
            return v >> self.leak_shift
        if self.leak_mul is not None:
            return (v * self.leak_mul) >> self.leak_bits
        out = torch.zeros_like(v)
        for sign, k in self.leak_terms:
            out = out + (v >> k) if sign > 0 else out - (v >> k)
        return out

    def drive(self, x: Tensor) -> Tensor:
        """Input current (fixed point ``F``) to membrane units (``F + membrane_bits``): a shift or a multiply."""
        xi = _to_int(x)
        d = xi << self.gain_shift if self.gain_shift is not None else xi * self.gain_int
        return d + self.const if self.const else d

    def initial_state(self, like: Tensor) -> Tensor:
        """The membrane before the first step (``v_rest``), shaped like one step of the drive."""
        return torch.full_like(like, self.v_init)

    def step(self, drive_t: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """One time step with explicit state: ``(drive_t, V_{t-1}) -> (spikes_t as bool, V_t)``."""
        h = self._leak(v) + drive_t
        s = h > self.th if self.p.strict else h >= self.th
        if self.p.reset == "hard":
            v = torch.where(s, self.v_reset, h)
        elif self.p.reset == "soft":
            v = h - torch.where(s, self.th, 0)
        else:
            v = h
        return s, v

    def forward(self, x: Tensor) -> Tensor:
        drive = self.drive(x)
        one = torch.tensor(2.0**self.F, dtype=torch.float64, device=x.device)
        out = torch.empty(x.shape, dtype=torch.float64, device=x.device)
        v = self.initial_state(drive[0])
        for t in range(x.shape[0]):
            s, v = self.step(drive[t], v)
            out[t] = torch.where(s, one, 0.0)
        return out

    def extra_repr(self) -> str:
        leak = (f"shift {self.leak_shift}" if self.leak_shift is not None else
                f"mul {self.leak_mul}/2^{self.leak_bits}" if self.leak_mul is not None else
                f"shift-add {self.leak_terms}" if self.leak_terms else f"{self.decay:g}")
        return f"decay={self.decay:.6g} ({leak}), gain={self.gain:.6g}, th={self.th}, reset={self.p.reset}"


class FloatFallback(nn.Module):
    """Run a module in float on de-quantised input; re-quantise its output.

    Everything it executes is counted as what it is (convolutions and products
    as multiplications); the audit lists it with ``reason``.

    Args:
        module: the float module.
        reason: why it is not integer (shown in the audit).
        frac_bits: ``F``.
    """

    def __init__(self, module: nn.Module, reason: str, frac_bits: int) -> None:
        super().__init__()
        self.module, self.reason, self.F = module, reason, frac_bits

    def forward(self, *args):
        dtype = next((p.dtype for p in self.module.parameters()), torch.float32)
        args = [a.to(dtype) / 2.0**self.F if isinstance(a, Tensor) and a.is_floating_point() else a for a in args]
        out = self.module(*args)
        return torch.round(out.double() * 2.0**self.F)

    def extra_repr(self) -> str:
        return f"reason={self.reason!r}"
