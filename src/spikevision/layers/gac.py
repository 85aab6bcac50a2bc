r"""Gated attention coding (GAC): a learned input encoder for SNNs.

Qiu, Zhu, Chou, Wang, Deng, Li, "Gated Attention Coding for Training
High-performance and Efficient Spiking Neural Networks", AAAI 2024
(arXiv 2308.06582). Authors' code: bollossom/GAC.

The static image is repeated over ``T`` steps; the first conv + BN (the
*stem*) gives the membrane input ``U``; a spiking neuron turns ``U`` into
spikes ``S``; in parallel the Gated Attention Unit (GAU) computes a gate
``G`` from ``U``, and the encoder emits ``O = G * S``:

.. math::

    \mathrm{TA}_{t,b} &= \mathrm{MLP}(\mathrm{avg}_{c,h,w} U_{:,b})_t
                      + \mathrm{MLP}(\mathrm{max}_{c,h,w} U_{:,b})_t,
      \quad \mathrm{MLP}: T \to \lfloor T/2 \rfloor \to T,\ \text{ReLU, no bias}\\
    \mathrm{SCA}_{t,b} &= \mathrm{conv}_{k\times k}(\mathrm{ReLU}(\mathrm{conv}_{k\times k}(U_{t,b})))
      \quad \text{("same" padding, no bias)}\\
    G &= \sigma(\mathrm{TA} \odot \mathrm{SCA}), \qquad O = G \odot \mathrm{LIF}(U)

* TA has **no sigmoid** of its own: the authors declare one and never use it
  (released behaviour, kept); the only sigmoid is on the product.
* The GAU is fed ``U`` (the released code), not the raw image of the paper
  figure.
* ``k = 4`` by default. PyTorch's ``padding="same"`` with an even kernel pads
  ``(k-1)//2`` before and the rest after (1 before, 2 after for ``k = 4``);
  this asymmetry is reproduced with an explicit :class:`torch.nn.ZeroPad2d`.
* TA's MLP width is fixed by ``T`` at construction (the authors' code breaks
  silently when ``T`` changes); an input with another ``T`` raises.

**Static input fast path.** For an image ``[B, C, H, W]``, ``U`` is the same
at every step, so the stem and SCA run once on ``[B, ...]`` and are expanded
over time (a view). This equals running them on ``T`` copies, except that
BatchNorm's *running* variance uses the unbiased factor ``n/(n-1)`` with
``n = B*H*W`` instead of ``T*B*H*W`` (a negligible difference); training-mode
outputs and gradients are the same.
"""

from __future__ import annotations

from torch import Tensor, nn

from spikevision.layers.encoders import check_image
from spikevision.layers.temporal import check_T, fold, unfold
from spikevision.neuron.params import NeuronParams
from spikevision.neuron.modules import build_neuron

__all__ = ["GatedAttentionCoding", "TemporalAttention", "SpatialChannelAttention", "same_padding"]


def same_padding(kernel_size: int) -> tuple[int, int]:
    """PyTorch's ``padding="same"`` split for stride 1: ``(before, after)``.

    Odd kernels pad symmetrically; even kernels pad one more *after*
    (``k = 4`` gives ``(1, 2)``).
    """
    if kernel_size < 1:
        raise ValueError(f"kernel_size must be >= 1, got {kernel_size}")
    before = (kernel_size - 1) // 2
    return before, kernel_size - 1 - before


class TemporalAttention(nn.Module):
    """GAC's temporal attention: one weight per (step, sample), no sigmoid.

    Qiu et al., AAAI 2024 (arXiv 2308.06582). CBAM-style over time: average-
    and max-pool ``U`` over (C, H, W) per step, pass both ``T``-vectors through
    one shared MLP ``T -> floor(T/ratio) -> T`` (ReLU between, no biases) and
    add the two results. The authors build the MLP from 1x1x1 Conv3d layers;
    :class:`torch.nn.Linear` is the same map (weights ``[T/2, T]``, ``[T, T/2]``).

    Args:
        T: number of time steps (fixed; other inputs raise).
        ratio: reduction ratio of the MLP. Paper: 2.

    Shape: ``[T, B, C, H, W]`` to ``[T, B]``.

    Raises:
        ValueError: ``floor(T / ratio) < 1`` (e.g. ``T = 1``).
    """

    def __init__(self, T: int, ratio: int = 2) -> None:
        super().__init__()
        hidden = T // ratio
        if T < 1 or hidden < 1:
            raise ValueError(
                f"GAC temporal attention needs floor(T / ratio) >= 1, got T={T}, ratio={ratio}; use T >= {ratio}"
            )
        self.T, self.ratio = T, ratio
        self.fc1 = nn.Linear(T, hidden, bias=False)
        self.act = nn.ReLU()
        self.fc2 = nn.Linear(hidden, T, bias=False)

    def _mlp(self, z: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(z)))  # [B, T] -> [B, T]

    def forward(self, u: Tensor) -> Tensor:
        if u.dim() != 5:
            raise ValueError(f"TemporalAttention expects [T, B, C, H, W], got shape {list(u.shape)}")
        check_T(u, self.T, "GAC TemporalAttention")
        avg = u.mean(dim=(2, 3, 4)).t()  # [B, T]
        peak = u.amax(dim=(2, 3, 4)).t()  # [B, T]
        # contiguous [T, B]: the gate G = sigmoid(TA * SCA) then takes its (T, B) order from TA, so G and O are
        # laid out step-major like the spikes (a [B, T] order made every later fold copy the map)
        return (self._mlp(avg) + self._mlp(peak)).t().contiguous()  # [T, B]

    def extra_repr(self) -> str:
        return f"T={self.T}, ratio={self.ratio}"


class SpatialChannelAttention(nn.Module):
    """GAC's spatial-channel attention: conv k x k -> ReLU -> conv k x k, per frame.

    Qiu et al., AAAI 2024 (arXiv 2308.06582). Both convs map ``C -> C``, have
    no bias and use PyTorch's "same" padding, asymmetric for even ``k``
    (see :func:`same_padding`). The paper figure draws a single K x K weighted
    sum; the released code (followed here) is conv-ReLU-conv.

    Args:
        channels: ``C`` (64 after the stem in every published model).
        kernel_size: ``k``. Paper: 4 (the author stresses k = 4).

    Shape: frames ``[N, C, H, W]`` to ``[N, C, H, W]``.
    """

    def __init__(self, channels: int, kernel_size: int = 4) -> None:
        super().__init__()
        before, after = same_padding(kernel_size)
        self.kernel_size = kernel_size
        self.body = nn.Sequential(
            nn.ZeroPad2d((before, after, before, after)),  # (left, right, top, bottom)
            nn.Conv2d(channels, channels, kernel_size, bias=False),
            nn.ReLU(),
            nn.ZeroPad2d((before, after, before, after)),
            nn.Conv2d(channels, channels, kernel_size, bias=False),
        )

    def forward(self, u: Tensor) -> Tensor:
        return self.body(u)


class GatedAttentionCoding(nn.Module):
    """GAC encoder: stem conv + BN, spiking neuron, and the attention gate.

    Qiu et al., AAAI 2024 (arXiv 2308.06582); see the module docstring for the
    equations and the released quirks kept.

    The encoder owns the network's stem (its first conv + BN), so a model using
    it must not apply a stem of its own (:class:`~spikevision.models.ms_resnet.MSResNet`
    built with ``encoder="gac"`` handles this).

    Args:
        T: number of time steps (fixed at construction).
        stem: per-frame module giving ``U`` from an image, ``[N, C_in, H, W]``
            to ``[N, channels, H', W']`` (e.g. ``nn.Sequential(nn.Conv2d(3, 64,
            3, padding=1, bias=False), nn.BatchNorm2d(64))``).
        channels: channels of ``U``.
        neuron: neuron name (``"lif"``, ``"plif"``, ...) or class.
        neuron_params: the encoder neuron's constants (GAC CIFAR: decay 0.5,
            threshold 1.0, triangle surrogate; ImageNet: the MS-ResNet LIF).
        kernel_size: SCA kernel. Paper: 4.
        ta_ratio: TA reduction ratio. Paper: 2.

    Shape: image ``[B, C_in, H, W]`` (or a sequence ``[T, B, C_in, H, W]``) to
    ``O`` ``[T, B, channels, H', W']``; with ``return_gate`` also ``G`` of the
    same shape.

    Raises:
        ValueError: a sequence whose ``T`` differs from the built one, or an
            input that is neither 4-D nor 5-D.
    """

    def __init__(
        self,
        T: int,
        stem: nn.Module,
        channels: int,
        *,
        neuron: str | type[nn.Module] = "lif",
        neuron_params: NeuronParams = NeuronParams(),
        kernel_size: int = 4,
        ta_ratio: int = 2,
    ) -> None:
        super().__init__()
        self.T = T
        self.channels = channels
        self.stem = stem
        self.neuron = build_neuron(neuron, neuron_params)
        self.ta = TemporalAttention(T, ta_ratio)
        self.sca = SpatialChannelAttention(channels, kernel_size)
        self.gate_act = nn.Sigmoid()  # forward hooks here see the gate G

    def membrane_input(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``U`` ``[T, B, C, H, W]`` and ``SCA(U)`` (same shape) for an image or a sequence."""
        if x.dim() == 4:
            check_image(x, "GatedAttentionCoding")
            u = self.stem(x)  # [B, C, H, W], the same at every step
            sca = self.sca(u)
            return u.unsqueeze(0).expand(self.T, *u.shape), sca.unsqueeze(0).expand(self.T, *sca.shape)
        if x.dim() == 5:
            check_T(x, self.T, "GatedAttentionCoding")
            u = unfold(self.stem(fold(x)), self.T)
            return u, unfold(self.sca(fold(u)), self.T)
        raise ValueError(
            f"GatedAttentionCoding expects an image batch [B, C, H, W] or a sequence [T, B, C, H, W], "
            f"got shape {list(x.shape)}"
        )

    def forward(self, x: Tensor, return_gate: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        u, sca = self.membrane_input(x)
        s = self.neuron(u)
        ta = self.ta(u)  # [T, B]
        g = self.gate_act(ta[:, :, None, None, None] * sca)
        o = g * s
        return (o, g) if return_gate else o

    def extra_repr(self) -> str:
        return f"T={self.T}, channels={self.channels}"
