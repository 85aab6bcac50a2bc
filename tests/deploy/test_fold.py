"""BN folding: pairs found by data flow, equality of the folded model."""

from __future__ import annotations

import torch
from torch import nn

from spikevision.deploy.engine.fold import PerStepSynapse, find_bn_pairs, fold_bn
from spikevision.layers import BNTT2d, DirectEncoder, TDBatchNorm1d, TDBatchNorm2d, TimeFolded, TokenBatchNorm1d
from spikevision.neuron import LIF, NeuronParams, lif_multistep
from deploy_nets import MSNet, randomize_bn, small_cnn


def _lif_records(model: nn.Module, x: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor, NeuronParams]]:
    """(input current, spikes, params) of every LIF, in call order."""
    rec = []
    hooks = [m.register_forward_hook(lambda m, a, o: rec.append((a[0].detach(), o.detach(), m.p)))
             for m in model.modules() if isinstance(m, LIF)]
    with torch.no_grad():
        out = model(x)
    for h in hooks:
        h.remove()
    return rec, out


def _compare(model: nn.Module, folded: nn.Module, x: torch.Tensor, atol: float = 1e-4) -> int:
    """Assert equal logits; return the number of spike flips, each required to sit at the threshold."""
    rec_a, out_a = _lif_records(model, x)
    rec_b, out_b = _lif_records(folded, x)
    assert len(rec_a) == len(rec_b) > 0
    flips = 0
    for (xa, sa, p), (xb, sb, _) in zip(rec_a, rec_b):
        assert torch.allclose(xa, xb, atol=atol, rtol=1e-5)  # same membrane input within float round-off
        diff = sa != sb
        if diff.any():
            _, h = lif_multistep(xa, p, return_membrane=True)
            assert ((h[diff] - p.v_th).abs() < 1e-4).all(), "a spike flipped far from the threshold"
            flips += int(diff.sum())
    assert torch.allclose(out_a, out_b, atol=atol, rtol=1e-5)
    return flips


def test_small_cnn_pairs_and_equality():
    torch.manual_seed(0)
    model = randomize_bn(small_cnn())
    x = torch.rand(16, 1, 8, 8)
    folded, pairs = fold_bn(model, x[:2])
    assert [(p.layer, p.bn) for p in pairs] == [("1", "2"), ("4", "5")]
    assert isinstance(folded[2], nn.Identity) and isinstance(folded[5], nn.Identity)
    assert isinstance(model[2], TDBatchNorm2d)  # the original is untouched
    flips = _compare(model, folded, x)
    print(f"spike flips at the threshold: {flips}")


def test_residual_block_pairs_named_attributes():
    torch.manual_seed(1)
    model = randomize_bn(MSNet())
    x = torch.rand(8, 2, 8, 8)
    folded, pairs = fold_bn(model, x[:2])
    found = {(p.layer, p.bn) for p in pairs}
    assert found == {
        ("stem", "stem_bn"), ("block1.conv1", "block1.bn1"), ("block1.conv2", "block1.bn2"),
        ("block1.shortcut.0", "block1.shortcut.1"), ("block2.conv1", "block2.bn1"), ("block2.conv2", "block2.bn2"),
    }
    _compare(model, folded, x)


def test_folded_conv_matches_hand_formula():
    torch.manual_seed(2)
    conv = nn.Conv2d(3, 4, 3, padding=1, bias=True)
    bn = randomize_bn(TDBatchNorm2d(4))
    model = nn.Sequential(TimeFolded(conv), bn).eval()
    x = torch.randn(2, 3, 3, 5, 5)
    folded, _ = fold_bn(model, x)
    a = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    w_ref = conv.weight * a[:, None, None, None]
    b_ref = (conv.bias - bn.running_mean) * a + bn.bias
    assert torch.allclose(folded[0].module.weight, w_ref, atol=1e-6)
    assert torch.allclose(folded[0].module.bias, b_ref, atol=1e-6)


class _Shared(nn.Module):
    """A conv whose output is read by its BN and by a shortcut: must not fold."""

    def __init__(self):
        super().__init__()
        self.conv = TimeFolded(nn.Conv2d(2, 2, 1))
        self.bn = TDBatchNorm2d(2)

    def forward(self, x):
        y = self.conv(x)
        return self.bn(y) + y


class _TokenMLP(nn.Module):
    """Linear followed by a per-token BN (spiking MLP quirk) and by a per-feature BN."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(4, 6)
        self.norm1 = TokenBatchNorm1d(3)
        self.fc2 = TimeFolded(nn.Linear(6, 6))
        self.norm2 = TDBatchNorm1d(6)

    def forward(self, x):  # [T, B, N=3, C=4]
        y = self.norm1(self.fc1(x))
        return self.norm2(self.fc2(y.mean(2)))


def test_rules_refuse_what_is_not_foldable():
    x = torch.randn(2, 1, 2, 4, 4)
    assert find_bn_pairs(randomize_bn(_Shared()), x) == []
    pairs = find_bn_pairs(randomize_bn(_TokenMLP()), torch.randn(2, 2, 3, 4))
    assert [(p.layer, p.bn) for p in pairs] == [("fc2", "norm2")]  # the per-token BN stays


def test_bntt_folds_into_per_step_weights():
    torch.manual_seed(3)
    T = 3
    model = randomize_bn(nn.Sequential(
        DirectEncoder(T), TimeFolded(nn.Conv2d(1, 3, 3, padding=1, bias=False)), BNTT2d(3, T),
        LIF(NeuronParams(decay=0.8744, gain=1.0, reset="soft", strict=True)),
    ))
    x = torch.rand(4, 1, 6, 6)
    folded, pairs = fold_bn(model, x)
    assert [(p.layer, p.bn) for p in pairs] == [("1", "2")]
    assert isinstance(folded[1], PerStepSynapse) and folded[1].weight.shape[0] == T
    _compare(model, folded, x)
