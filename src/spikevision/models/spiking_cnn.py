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

from dataclasses import dataclass
from typing import Any, Literal

from torch import Tensor, nn

from spikevision.layers.encoders import DirectEncoder
from spikevision.layers.norm import NormLayerLike, build_norm2d
from spikevision.layers.spike_conv import SpikeConv2d
from spikevision.layers.temporal import TimeFolded
from spikevision.models.base import NeuronKind, SpikingClassifier
from spikevision.models.zoo import config_or_kwargs, register_config
from spikevision.neuron.functional import NeuronParams
from spikevision.neuron.modules import build_neuron
from spikevision.neuron.surrogate import Rectangular

__all__ = ["SpikingCNN", "SpikingCNNConfig", "SPIKING_CNN_NEURON"]

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
    neuron count, and its cost, four times lower than pooling spikes. With
    ``spike_input`` (every stage after the first reads spikes) the conv is a
    :class:`~spikevision.layers.spike_conv.SpikeConv2d`.

    Shape: ``[T, B, cin, H, W]`` to spikes ``[T, B, cout, H/2, W/2]``.
    """

    def __init__(self, cin: int, cout: int, *, pool: PoolKind, neuron: NeuronKind, params: NeuronParams,
                 norm_layer: NormLayerLike = "tdbn", spike_input: bool = False) -> None:
        super().__init__()
        conv = SpikeConv2d if spike_input else nn.Conv2d  # event-driven in CPU training where it reads spikes
        self.conv = TimeFolded(conv(cin, cout, 3, padding=1, bias=False))
        self.bn = build_norm2d(norm_layer, cout)
        self.pool = TimeFolded(POOLS[pool](2))
        self.lif = build_neuron(neuron, params)

    def current(self, x: Tensor) -> Tensor:
        """The analog part, ``pool(bn(conv(x)))``: the input current of the neuron."""
        return self.pool(self.bn(self.conv(x)))

    def forward(self, x: Tensor) -> Tensor:
        return self.lif(self.current(x))


@dataclass(frozen=True)
class SpikingCNNConfig:
    """Everything that defines a :class:`SpikingCNN` (its only argument); defaults: the quickstart network.

    Attributes:
        widths: channels of each stage (each halves the resolution).
        img_size: square input side; fixes the readout's input size.
        in_chans: input channels.
        num_classes: classes (0: identity head, ``pre_logits`` only).
        T: time steps.
        pool: ``"max"`` (default, the better in the quickstart budget) or ``"avg"`` (NIR-exportable).
        dropout: before the readout.
        stem_once: in training mode, for a static image (direct coding), compute the first stage's
            conv, BN and pooling once and feed the same current to the neuron at every step, instead
            of ``T`` times on repeated frames (about 1.4x faster training steps on a CPU; see
            :meth:`SpikingClassifier.forward_features_static`). Evaluation mode (and so analysis, the
            integer engine and NIR export) and sequences ``[T, B, ...]`` always run the plain
            per-step network.
        neuron, neuron_params: kind and constants of every neuron.
        norm_layer: the norm after each conv, a name or a class taking ``num_features``
            (:func:`~spikevision.layers.norm.build_norm2d`; default tdBN).

    Raises:
        ValueError: an ``img_size`` not divisible by ``2**len(widths)``, an unknown ``pool``, no
            stages, a ``T`` below 1.
    """

    widths: tuple[int, ...] = MINI_WIDTHS
    img_size: int = MINI_SIZE
    in_chans: int = 1
    num_classes: int = 10
    T: int = 2
    pool: PoolKind = "max"
    dropout: float = 0.0
    stem_once: bool = True
    neuron: NeuronKind = "lif"
    neuron_params: NeuronParams = SPIKING_CNN_NEURON
    norm_layer: NormLayerLike = "tdbn"

    def __post_init__(self) -> None:
        widths = tuple(int(w) for w in self.widths)
        object.__setattr__(self, "widths", widths)
        if self.T < 1:
            raise ValueError(f"T must be >= 1, got {self.T}")
        if not widths or min(widths) < 1:
            raise ValueError(f"widths must be a non-empty list of positive channel counts, got {list(widths)}")
        if self.pool not in POOLS:
            raise ValueError(f"unknown pool {self.pool!r}; choose one of {sorted(POOLS)}")
        factor = 2 ** len(widths)
        if self.img_size % factor:
            raise ValueError(f"img_size={self.img_size} must be divisible by 2^{len(widths)} = {factor} "
                             f"(each of the {len(widths)} stages halves the resolution)")


class SpikingCNN(SpikingClassifier):
    """Plain convolutional SNN: direct encoding, conv stages, flattened spikes, linear readout.

    Args:
        config: the whole network (see :class:`SpikingCNNConfig`); kept as ``self.config``.
        kwargs: deprecated: the fields of the config, as the constructor took them before configs.

    Shape: ``[B, C, H, W]`` (or ``[T, B, C, H, W]``) to ``[B, num_classes]``.

    Raises:
        ValueError: at call time, inputs of another shape or ``T``.
    """

    def __init__(self, config: SpikingCNNConfig | None = None, **kwargs: Any) -> None:
        super().__init__()
        cfg = self.config = config_or_kwargs(SpikingCNN, SpikingCNNConfig, config, kwargs)
        self.T, self.num_classes, self.in_chans, self.img_size = cfg.T, cfg.num_classes, cfg.in_chans, cfg.img_size
        self.stem_once = cfg.stem_once
        self.encoder = DirectEncoder(cfg.T)
        chans = (cfg.in_chans, *cfg.widths)
        self.stages = nn.Sequential(*(ConvStage(a, b, pool=cfg.pool, neuron=cfg.neuron, params=cfg.neuron_params,
                                                norm_layer=cfg.norm_layer, spike_input=i > 0)  # after a stage: spikes
                                      for i, (a, b) in enumerate(zip(chans[:-1], chans[1:]))))
        side = cfg.img_size // 2 ** len(cfg.widths)
        self.num_features = cfg.widths[-1] * side * side
        self.dropout = nn.Dropout(cfg.dropout)
        self.fc = nn.Linear(self.num_features, cfg.num_classes) if cfg.num_classes > 0 else nn.Identity()

    def encode(self, x: Tensor) -> Tensor:
        self.check_fixed_size(x, "its readout is sized for it")
        return super().encode(x)

    def forward_features(self, x: Tensor) -> Tensor:
        """``[T, B, C, H, W]`` (encoder output) to the last stage's spikes ``[T, B, C', H', W']``."""
        return self.stages(x)

    def forward_features_static(self, x: Tensor) -> Tensor:
        """A static image ``[B, C, H, W]``: the first stage's current once, its neuron over ``T``, the rest."""
        first = self.stages[0]
        current = first.current(x.unsqueeze(0))  # [1, B, C, H', W']: the same at every step
        return self.stages[1:](first.lif(current.expand(self.T, *current.shape[1:])))

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


spiking_cnn_mini = register_config(
    "spiking_cnn_mini", SpikingCNNConfig(), SpikingCNN, module=__name__, family="spiking_cnn", paper=PAPER,
    input_size=(1, MINI_SIZE, MINI_SIZE), modality="image",
    tunable=("num_classes", "T", "in_chans", "img_size", "widths", "pool", "dropout", "stem_once", "neuron",
             "neuron_params", "norm_layer"),
    doc="""The Fashion-MNIST quickstart network: two stages (32, 64 channels; 28 -> 14 -> 7), T = 2.

spikevision's own configuration, not from a paper. For CIFAR pass
``in_chans=3, img_size=32``.
""")
