"""GAC encoder against a hand-written reference in the authors' batch-major layout."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from spikevision.layers import GatedAttentionCoding
from spikevision.layers.gac import SpatialChannelAttention, TemporalAttention, same_padding
from spikevision.neuron import NeuronParams, Rectangular, Triangle

CIFAR_P = NeuronParams(decay=0.5, gain=1.0, v_th=1.0, strict=True, detach_reset=False, surrogate=Triangle(2.0, 1.0))
MS_P = NeuronParams(decay=0.25, gain=1.0, v_th=0.5, strict=True, detach_reset=True, surrogate=Rectangular(1.0))


def _stem(cin=3, c=4):
    return nn.Sequential(nn.Conv2d(cin, c, 3, padding=1, bias=False), nn.BatchNorm2d(c))


def _encoder(T=4, c=4, k=4, p=CIFAR_P, seed=0):
    torch.manual_seed(seed)
    enc = GatedAttentionCoding(T, _stem(3, c), c, neuron_params=p, kernel_size=k)
    with torch.no_grad():  # make TA's output range wide enough to show there is no sigmoid
        enc.ta.fc1.weight.mul_(4.0)
        enc.ta.fc2.weight.mul_(4.0)
    return enc


def reference_gac(enc, x, T, decay, v_th):
    """Independent forward: batch-major [B, T, ...] tensors, literal loops, F.conv2d 'same'."""
    B = x.shape[0]
    xs = x.unsqueeze(1).repeat(1, T, 1, 1, 1)  # [B, T, C, H, W], the authors' layout
    u = enc.stem(xs.flatten(0, 1)).unflatten(0, (B, T))  # [B, T, C', H, W]
    # LIF: u_t = decay * v + x_t ; s = u > v_th ; v = (1 - s) u
    v = torch.zeros_like(u[:, 0])
    spikes = []
    for t in range(T):
        h = decay * v + u[:, t]
        s = (h > v_th).float()
        v = (1 - s) * h
        spikes.append(s)
    S = torch.stack(spikes, 1)
    # TA: pooled T-vectors through the shared MLP (matrix products), summed, no sigmoid
    w1, w2 = enc.ta.fc1.weight, enc.ta.fc2.weight  # [T//2, T], [T, T//2]
    avg = u.mean(dim=(2, 3, 4))  # [B, T]
    mx = u.flatten(2).max(dim=2).values
    ta = torch.relu(avg @ w1.T) @ w2.T + torch.relu(mx @ w1.T) @ w2.T  # [B, T]
    # SCA: conv - ReLU - conv with PyTorch's own 'same' padding
    c1, c2 = enc.sca.body[1].weight, enc.sca.body[4].weight
    z = F.conv2d(torch.relu(F.conv2d(u.flatten(0, 1), c1, padding="same")), c2, padding="same").unflatten(0, (B, T))
    G = torch.sigmoid(ta[:, :, None, None, None] * z)
    return (G * S).transpose(0, 1), G.transpose(0, 1), ta.t()


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
@pytest.mark.parametrize("p", [CIFAR_P, MS_P], ids=["cifar", "imagenet"])
def test_gac_matches_reference(p):
    T = 4
    enc = _encoder(T=T, p=p)
    x = torch.randn(2, 3, 6, 6) * 2
    o, g = enc(x, return_gate=True)
    ref_o, ref_g, ref_ta = reference_gac(enc, x, T, p.decay, p.v_th)
    assert o.shape == (T, 2, 4, 6, 6)
    torch.testing.assert_close(g, ref_g, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(o, ref_o, rtol=1e-5, atol=1e-6)
    u, _ = enc.membrane_input(x)
    ta = enc.ta(u)
    torch.testing.assert_close(ta, ref_ta, rtol=1e-5, atol=1e-6)
    # TA has no sigmoid: its values leave (0, 1)
    assert (ta < 0).any() or (ta > 1).any()


def test_gate_strictly_inside_unit_interval_and_output_zero_without_spike():
    enc = _encoder(T=3, c=8)
    with torch.no_grad():
        enc.ta.fc1.weight.div_(4.0)
        enc.ta.fc2.weight.div_(4.0)
    x = torch.randn(3, 3, 8, 8)
    o, g = enc(x, return_gate=True)
    s = enc.neuron(enc.membrane_input(x)[0])
    assert ((g > 0) & (g < 1)).all()
    assert torch.equal(o, g * s)
    assert 0 < s.sum() < s.numel()  # some spikes, some silence
    assert torch.equal(o != 0, s != 0)  # O is in (0, 1) where a spike fired, 0 elsewhere


def test_gate_is_hookable():
    enc = _encoder(T=2)
    seen = []
    enc.gate_act.register_forward_hook(lambda m, i, out: seen.append(out))
    _, g = enc(torch.randn(2, 3, 5, 5), return_gate=True)
    assert len(seen) == 1 and torch.equal(seen[0], g)


def test_static_fast_path_equals_explicit_sequence():
    enc = _encoder(T=3)
    x = torch.randn(2, 3, 6, 6)
    o_static = enc(x)
    o_seq = enc(x.unsqueeze(0).repeat(3, 1, 1, 1, 1))
    torch.testing.assert_close(o_static, o_seq, rtol=1e-5, atol=1e-6)
    # gradients reach the stem, TA and SCA
    x.requires_grad_(True)
    enc(x).sum().backward()
    for name, q in enc.named_parameters():
        assert q.grad is not None, name
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_T_is_fixed_at_construction():
    enc = _encoder(T=4)
    with pytest.raises(ValueError, match=r"T=4"):
        enc(torch.randn(3, 2, 3, 6, 6))
    with pytest.raises(ValueError, match=r"built for T=4"):
        TemporalAttention(4)(torch.randn(6, 2, 3, 4, 4))
    with pytest.raises(ValueError, match="T >= 2"):
        TemporalAttention(1)
    with pytest.raises(ValueError, match=r"\[B, C, H, W\] or a sequence"):
        enc(torch.randn(2, 3, 6))


@pytest.mark.parametrize("k, expected", [(1, (0, 0)), (3, (1, 1)), (4, (1, 2)), (5, (2, 2)), (8, (3, 4))])
def test_same_padding_split(k, expected):
    assert same_padding(k) == expected


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
@pytest.mark.parametrize("k", [3, 4, 8])
def test_sca_reproduces_pytorch_same_padding(k):
    torch.manual_seed(0)
    sca = SpatialChannelAttention(3, kernel_size=k)
    ref = nn.Sequential(nn.Conv2d(3, 3, k, padding="same", bias=False), nn.ReLU(),
                        nn.Conv2d(3, 3, k, padding="same", bias=False))
    ref[0].weight.data.copy_(sca.body[1].weight)
    ref[2].weight.data.copy_(sca.body[4].weight)
    u = torch.randn(2, 3, 7, 9)
    torch.testing.assert_close(sca(u), ref(u))
    if k % 2 == 0:
        # the asymmetric split matters: padding 2 before and 1 after gives another result
        lo, hi = same_padding(k)
        w = sca.body[1].weight
        asym = F.conv2d(F.pad(u, (lo, hi, lo, hi)), w)
        mirrored = F.conv2d(F.pad(u, (hi, lo, hi, lo)), w)
        torch.testing.assert_close(sca.body[:2](u), asym)
        assert not torch.allclose(asym, mirrored)
