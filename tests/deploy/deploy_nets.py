"""Small networks built from spikevision layers for the deploy tests."""

from __future__ import annotations

import torch
from torch import nn

from spikevision.layers import DirectEncoder, TDBatchNorm2d, TimeFolded
from spikevision.neuron import LIF, NeuronParams

MS_NEURON = NeuronParams(decay=0.25, gain=1.0, v_th=0.5, strict=True)


def randomize_bn(model: nn.Module, seed: int = 0, gamma=(0.6, 1.6)) -> nn.Module:
    """Give every BN non-trivial running statistics and affine parameters (as after training)."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=g) * 0.6 - 0.3)
            m.running_var.copy_(torch.rand(n, generator=g) * 0.8 + 0.4)
            if m.affine:
                m.weight.data.copy_(torch.rand(n, generator=g) * (gamma[1] - gamma[0]) + gamma[0])
                m.bias.data.copy_(torch.rand(n, generator=g) * 0.6 - 0.2)
    return model.eval()


class Readout(nn.Module):
    """Per-step linear classifier averaged over time: ``[T, B, N]`` to ``[B, classes]``."""

    def __init__(self, n: int, classes: int) -> None:
        super().__init__()
        self.fc = TimeFolded(nn.Linear(n, classes))

    def forward(self, x):
        return self.fc(x).mean(0)


def small_cnn(T: int = 3, c: int = 6, classes: int = 5, p: NeuronParams = NeuronParams(), pool=None) -> nn.Module:
    """conv -> BN -> LIF -> conv -> BN -> LIF -> pool -> linear, on 1x8x8 images."""
    pool = pool or nn.AvgPool2d(2)
    return nn.Sequential(
        DirectEncoder(T),
        TimeFolded(nn.Conv2d(1, c, 3, padding=1, bias=False)), TDBatchNorm2d(c), LIF(p),
        TimeFolded(nn.Conv2d(c, c, 3, padding=1)), TDBatchNorm2d(c), LIF(p),
        TimeFolded(pool), TimeFolded(nn.Flatten()),
        Readout(c * 16, classes),
    )


class MSBlock(nn.Module):
    """MS-ResNet-style block: LIF -> conv -> BN -> LIF -> conv -> BN, plus a real-valued projection shortcut."""

    def __init__(self, cin: int, cout: int, stride: int, p: NeuronParams) -> None:
        super().__init__()
        self.lif1, self.lif2 = LIF(p), LIF(p)
        self.conv1 = TimeFolded(nn.Conv2d(cin, cout, 3, stride, 1, bias=False))
        self.bn1 = TDBatchNorm2d(cout)
        self.conv2 = TimeFolded(nn.Conv2d(cout, cout, 3, 1, 1, bias=False))
        self.bn2 = TDBatchNorm2d(cout)
        self.shortcut = nn.Sequential(TimeFolded(nn.Conv2d(cin, cout, 1, stride, bias=False)), TDBatchNorm2d(cout))

    def forward(self, x):
        out = self.bn1(self.conv1(self.lif1(x)))
        out = self.bn2(self.conv2(self.lif2(out)))
        return out + self.shortcut(x)


class MSNet(nn.Module):
    """Stem (analog first layer) -> MS block with projection -> MS block (identity) -> LIF -> GAP -> linear."""

    def __init__(self, T: int = 3, classes: int = 4, p: NeuronParams = MS_NEURON) -> None:
        super().__init__()
        self.encoder = DirectEncoder(T)
        self.stem = TimeFolded(nn.Conv2d(2, 4, 3, padding=1, bias=False))
        self.stem_bn = TDBatchNorm2d(4)
        self.block1 = MSBlock(4, 8, 2, p)
        self.block2 = MSBlock(8, 8, 1, p)
        self.block2.shortcut = nn.Identity()
        self.lif = LIF(p)
        self.pool = TimeFolded(nn.AdaptiveAvgPool2d(1))
        self.flat = TimeFolded(nn.Flatten())
        self.head = Readout(8, classes)

    def forward(self, x):
        x = self.stem_bn(self.stem(self.encoder(x)))
        x = self.block2(self.block1(x))
        return self.head(self.flat(self.pool(self.lif(x))))


class MixedNet(nn.Module):
    """Every layer kind the integer program supports, on 2x12x12 images.

    Analog stem with 'same' padding of an even kernel; a BNTT (per-step weights) conv on spikes; S-ResNet-style
    soft-reset neurons with a 0.8744 leak and a non-zero resting potential; a strided, dilated conv on the
    non-binary sum of two spike maps (analog MACs); a BN kept on spikes (a select) and one on an analog sum; max
    pooling with padding, a 3x3 average (division) and a 2x2 one (shift); IF neurons; a linear over the last axis
    of a [T, B, C, L] tensor; a global mean and a mean over time before an analog readout.
    """

    def __init__(self, T: int = 3, classes: int = 5, leak: float = 0.8744) -> None:
        super().__init__()
        from spikevision.layers import BNTT2d

        soft = NeuronParams(decay=leak, gain=1.0, v_th=0.6, reset="soft", strict=True, v_rest=0.05)
        self.encoder = DirectEncoder(T)
        self.stem = TimeFolded(nn.Conv2d(2, 6, 4, padding="same", bias=False))
        self.stem_bn = TDBatchNorm2d(6)
        self.lif0 = LIF(soft)
        self.conv1 = TimeFolded(nn.Conv2d(6, 6, 3, padding=1, bias=False))
        self.bntt = BNTT2d(6, T)
        self.lif1 = LIF(MS_NEURON)
        self.conv2 = TimeFolded(nn.Conv2d(6, 8, 3, stride=2, padding=2, dilation=2))  # reads lif0 + lif1
        self.bn2 = TDBatchNorm2d(8)
        self.maxpool = TimeFolded(nn.MaxPool2d(3, stride=1, padding=1))
        self.lif2 = LIF(NeuronParams(decay=1.0, gain=1.0, v_th=0.4))  # IF
        self.bn_spk = TDBatchNorm2d(8)  # on spikes: cannot fold, kept as a select
        self.avg3 = TimeFolded(nn.AvgPool2d(3, stride=1, padding=1))
        self.lif3 = LIF(soft)
        self.avg2 = TimeFolded(nn.AvgPool2d(2))
        self.lin = TimeFolded(nn.Linear(9, 4))  # over the last axis of [T, B, C, 9]
        self.lif4 = LIF(MS_NEURON)
        self.head = nn.Linear(8 * 4, classes)

    def forward(self, x):
        a = self.lif0(self.stem_bn(self.stem(self.encoder(x))))  # [T, B, 6, 12, 12]
        b = self.lif1(self.bntt(self.conv1(a)))
        y = self.maxpool(self.bn2(self.conv2(a + b)))  # [T, B, 8, 6, 6]
        s = self.lif2(y)
        z = self.avg3(self.bn_spk(s) + y)
        s = self.lif3(z)
        z = self.avg2(s).flatten(3)  # [T, B, 8, 9]
        s = self.lif4(self.lin(z)).flatten(2)  # [T, B, 32]
        return self.head(s.mean(0))
