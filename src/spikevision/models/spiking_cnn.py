"""A plain convolutional SNN: spikevision's quickstart network (not one of the four papers).

The usual first SNN of a tutorial, built from the library's parts: stages of
``conv3x3 -> tdBN -> pool 2x2 -> LIF``, then the flattened spike map into a
linear readout whose logits are averaged over time. It is here because a
CPU-minute budget needs it: on 28x28 Fashion-MNIST the small networks of the
four papers end in global average pooling, which throws away the spatial
layout a shallow network needs, and they reach about 87-89% in five minutes of
two CPU cores, where this network passes 91% (docs/training.md, "Quickstart
measurements").

Everything in it is multiplication-free at inference except the analog first
convolution on pixels: pooling acts on the BN output (the input current)
before the neuron, as comparisons (``pool="max"``, the default) or an add and a
2-bit shift (``pool="avg"``, once BN is folded into the conv), and the readout
is a spike-driven linear layer. NIR has no max pooling, so only the
``pool="avg"`` variant exports to NIR; it trains to about 1 point less in the
quickstart budget (docs/training.md).

Neuron: the constants of MS-ResNet's LIF (Hu et al., TNNLS 2024, arXiv
2112.08954): ``u_t = 0.25 u_{t-1} (1 - s_{t-1}) + x_t``, spike if
``u_t > 0.5``, rectangular surrogate of width 1, restated here as this
family's own constant (:data:`SPIKING_CNN_NEURON`).
"""

from __future__ import annotations

from typing import Literal, Sequence

from torch import Tensor, nn

from spikevision.layers.encoders import DirectEncoder
from spikevision.layers.norm import TDBatchNorm2d
from spikevision.layers.temporal import TimeFolded
from spikevision.models.base import NeuronKind, ParamsLike, SpikingClassifier, resolve_neuron_params
from spikevision.models.registry import register_model
from spikevision.neuron.functional import NeuronParams
from spikevision.neuron.modules import build_neuron
from spikevision.neuron.surrogate import Rectangular

__all__ = ["SpikingCNN", "SPIKING_CNN_NEURON"]

PoolKind = Literal["avg", "max"]

PAPER = "spikevision quickstart network, a plain convolutional SNN (not from the four papers)"

#: MS-ResNet's LIF constants (Hu et al., TNNLS 2024), this family's own copy.
SPIKING_CNN_NEURON = NeuronParams(
    decay=0.25, gain=1.0, v_th=0.5, v_reset=0.0, v_rest=0.0, reset="hard",
    strict=True, detach_reset=True, surrogate=Rectangular(width=1.0),
)
MINI_SIZE = 28
MINI_WIDTHS = (32, 64)
POOLS: dict[str, type[nn.Module]] = {"avg": nn.AvgPool2d, "max": nn.MaxPool2d}


class ConvStage(nn.Module):
    """``conv3x3 -> tdBN -> pool 2x2 -> LIF``, per time step except the neuron.

    Pooling the BN output (the input current) before the neuron keeps the
    neuron count, and its cost, four times lower than pooling spikes.

    Shape: ``[T, B, cin, H, W]`` to spikes ``[T, B, cout, H/2, W/2]``.
    """

    def __init__(self, cin: int, cout: int, *, pool: PoolKind, neuron: NeuronKind, params: NeuronParams) -> None:
        super().__init__()
        self.conv = TimeFolded(nn.Conv2d(cin, cout, 3, padding=1, bias=False))
        self.bn = TDBatchNorm2d(cout)
        self.pool = TimeFolded(POOLS[pool](2))
        self.lif = build_neuron(neuron, params)

    def current(self, x: Tensor) -> Tensor:
        """The analog part, ``pool(bn(conv(x)))``: the input current of the neuron."""
        return self.pool(self.bn(self.conv(x)))

    def forward(self, x: Tensor) -> Tensor:
        return self.lif(self.current(x))


class SpikingCNN(SpikingClassifier):
    """Plain convolutional SNN: direct encoding, conv stages, flattened spikes, linear readout.

    Args:
        widths: channels of each stage (each halves the resolution).
        img_size: square input side; fixes the readout's input size.
        in_chans: input channels.
        num_classes: classes (0: identity head, ``pre_logits`` only).
        T: time steps.
        pool: ``"max"`` (default, the better in the quickstart budget) or ``"avg"`` (NIR-exportable).
        dropout: before the readout.
        stem_once: in training mode, for a static image (direct coding),
            compute the first stage's conv, BN and pooling once and feed the
            same current to the neuron at every step, instead of ``T`` times
            on repeated frames (about 1.4x faster training steps on a CPU).
            The outputs and gradients are those of the repeated computation
            up to float round-off; BN's running variance uses the Bessel
            factor of ``B*H*W`` samples instead of ``T*B*H*W`` (a relative
            difference below ``1 / (B*H*W)``). Evaluation mode (and so
            analysis, the integer engine and NIR export) and sequences
            ``[T, B, ...]`` always run the plain per-step network.
        neuron, neuron_params: kind and constants of every neuron.

    Shape: ``[B, C, H, W]`` (or ``[T, B, C, H, W]``) to ``[B, num_classes]``.

    Raises:
        ValueError: an ``img_size`` not divisible by ``2**len(widths)``, an
            unknown ``pool``, no stages; at call time, inputs of another
            shape or ``T``.
    """

    def __init__(self, *, widths: Sequence[int], img_size: int, in_chans: int, num_classes: int, T: int,
                 pool: PoolKind, dropout: float, stem_once: bool, neuron: NeuronKind,
                 neuron_params: NeuronParams) -> None:
        super().__init__()
        widths = tuple(int(w) for w in widths)
        if not widths or min(widths) < 1:
            raise ValueError(f"widths must be a non-empty list of positive channel counts, got {list(widths)}")
        if pool not in POOLS:
            raise ValueError(f"unknown pool {pool!r}; choose one of {sorted(POOLS)}")
        factor = 2 ** len(widths)
        if img_size % factor:
            raise ValueError(f"img_size={img_size} must be divisible by 2^{len(widths)} = {factor} "
                             f"(each of the {len(widths)} stages halves the resolution)")
        self.T, self.num_classes, self.in_chans, self.img_size = T, num_classes, in_chans, img_size
        self.stem_once = stem_once
        self.encoder = DirectEncoder(T)
        chans = (in_chans, *widths)
        self.stages = nn.Sequential(*(ConvStage(a, b, pool=pool, neuron=neuron, params=neuron_params)
                                      for a, b in zip(chans[:-1], chans[1:])))
        side = img_size // factor
        self.num_features = widths[-1] * side * side
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def encode(self, x: Tensor) -> Tensor:
        self.check_fixed_size(x, "its readout is sized for it")
        return super().encode(x)

    def forward_features(self, x: Tensor) -> Tensor:
        """``[T, B, C, H, W]`` (encoder output) to the last stage's spikes ``[T, B, C', H', W']``."""
        return self.stages(x)

    def forward(self, x: Tensor) -> Tensor:
        if not (self.stem_once and self.training and x.dim() == 4):
            return super().forward(x)
        self.encode(x)  # shape checks only: DirectEncoder returns a view
        first = self.stages[0]
        current = first.current(x.unsqueeze(0))  # [1, B, C, H', W']: the same at every step
        spikes = first.lif(current.expand(self.T, *current.shape[1:]))
        return self.forward_head(self.stages[1:](spikes))

    def forward_head(self, x: Tensor, pre_logits: bool = False, per_step: bool = False) -> Tensor:
        """Flatten each step's spike map, dropout, Linear; logits averaged over ``T`` unless ``per_step``."""
        x = x.flatten(2)  # [T, B, C' H' W']
        if pre_logits:
            return x
        logits = self.fc(self.dropout(x))  # [T, B, classes]
        return logits if per_step else logits.mean(0)

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the readout by a fresh ``Linear(num_features, num_classes)`` (0: identity)."""
        self.num_classes = num_classes
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def residual_blocks(self) -> dict[str, nn.Module]:
        """None: a plain feed-forward CNN has no shortcut."""
        return {}


@register_model(family="spiking_cnn", paper=PAPER, neuron=SPIKING_CNN_NEURON, T=2,
                input_size=(1, MINI_SIZE, MINI_SIZE), num_classes=10, modality="image")
def spiking_cnn_mini(*, num_classes: int = 10, T: int = 2, in_chans: int = 1, img_size: int = MINI_SIZE,
                     widths: Sequence[int] = MINI_WIDTHS, pool: PoolKind = "max", dropout: float = 0.0,
                     stem_once: bool = True, neuron: NeuronKind = "lif",
                     neuron_params: ParamsLike = None) -> SpikingCNN:
    """The Fashion-MNIST quickstart network: two stages (32, 64 channels; 28 -> 14 -> 7), T = 2.

    spikevision's own configuration, not from a paper. For CIFAR pass
    ``in_chans=3, img_size=32``.
    """
    if T < 1:
        raise ValueError(f"T must be >= 1, got {T}")
    return SpikingCNN(widths=widths, img_size=img_size, in_chans=in_chans, num_classes=num_classes, T=T, pool=pool,
                      dropout=dropout, stem_once=stem_once, neuron=neuron,
                      neuron_params=resolve_neuron_params(SPIKING_CNN_NEURON, neuron_params))
