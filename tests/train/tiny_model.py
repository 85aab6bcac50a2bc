"""A tiny registered spiking classifier for engine tests (imported by conftest and _entry.py).

Linear -> [TDBatchNorm1d] -> LIF -> Linear, T = 2: a real ``SpikingClassifier``
small enough that a training step costs about a millisecond.
"""

from torch import Tensor, nn

from spikevision.layers import DirectEncoder, TDBatchNorm1d
from spikevision.models.base import SpikingClassifier
from spikevision.models.registry import _REGISTRY, register_model
from spikevision.neuron import LIF, NeuronParams

NEURON = NeuronParams()


class TinySNN(SpikingClassifier):
    def __init__(self, *, num_classes: int, T: int, in_features: int, hidden: int, norm: bool) -> None:
        super().__init__()
        self.T, self.num_classes = T, num_classes
        self.encoder = DirectEncoder(T)
        self.fc1 = nn.Linear(in_features, hidden)
        self.norm = TDBatchNorm1d(hidden) if norm else nn.Identity()
        self.lif = LIF(NEURON)
        self.fc = nn.Linear(hidden, num_classes)

    def forward_features(self, x: Tensor) -> Tensor:
        return self.lif(self.norm(self.fc1(x.flatten(2))))  # [T, B, hidden]

    def forward_head(self, x: Tensor, pre_logits: bool = False, per_step: bool = False) -> Tensor:
        if pre_logits:
            return x
        return self.fc(x) if per_step else self.fc(x.mean(0))

    def reset_classifier(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.fc = nn.Linear(self.fc.in_features, num_classes)

    def residual_blocks(self) -> dict[str, nn.Module]:
        return {}


if "tiny_snn_test" not in _REGISTRY:

    @register_model(family="test", paper="none (engine tests)", T=2, input_size=(1, 28, 28), num_classes=10,
                    neuron=NEURON, modality="image")
    def tiny_snn_test(*, num_classes: int = 10, T: int = 2, hidden: int = 16, norm: bool = False) -> TinySNN:
        return TinySNN(num_classes=num_classes, T=T, in_features=28 * 28, hidden=hidden, norm=norm)
