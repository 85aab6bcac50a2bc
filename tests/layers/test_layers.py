import pytest
import torch
from torch import nn

from spikevision.layers import (
    BNTT2d,
    DirectEncoder,
    PoissonEncoder,
    TDBatchNorm1d,
    TDBatchNorm2d,
    TimeFolded,
    TokenBatchNorm1d,
    fold,
    unfold,
)


def test_fold_is_a_view_and_matches_per_step_loop():
    x = torch.randn(4, 3, 2, 8, 8)
    assert fold(x).data_ptr() == x.data_ptr()
    conv = nn.Conv2d(2, 5, 3, padding=1)
    y = TimeFolded(conv)(x)
    ref = torch.stack([conv(x[t]) for t in range(4)])
    torch.testing.assert_close(y, ref)
    assert unfold(fold(x), 4).shape == x.shape


def test_time_folded_errors():
    with pytest.raises(ValueError, match=r"\[T, B"):
        TimeFolded(nn.Flatten())(torch.randn(3, 4))
    with pytest.raises(TypeError, match="floating"):
        TimeFolded(nn.Flatten())(torch.ones(2, 3, 4, dtype=torch.int64))


def test_tdbn_pools_time_and_batch():
    x = torch.randn(4, 6, 3, 5, 5) * 3 + 1
    bn = TDBatchNorm2d(3, weight_init=0.5)
    y = bn(x)
    # reference: statistics per channel over (T, B, H, W)
    mean = x.mean(dim=(0, 1, 3, 4), keepdim=True)
    var = x.var(dim=(0, 1, 3, 4), unbiased=False, keepdim=True)
    torch.testing.assert_close(y, 0.5 * (x - mean) / torch.sqrt(var + bn.eps), rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="built for 3 features"):
        bn(torch.randn(4, 6, 4, 5, 5))
    with pytest.raises(ValueError, match=r"\[T, B, C, H, W\]"):
        bn(torch.randn(6, 3, 5, 5))
    y1 = TDBatchNorm1d(3)(torch.randn(4, 6, 3))
    assert y1.shape == (4, 6, 3)


def test_bntt_has_per_step_statistics():
    T = 3
    bn = BNTT2d(2, T=T)
    x = torch.randn(T, 8, 2, 4, 4) + torch.arange(T).view(T, 1, 1, 1, 1) * 5.0
    y = bn(x)
    for t in range(T):
        xt = x[t]
        ref = (xt - xt.mean((0, 2, 3), keepdim=True)) / torch.sqrt(xt.var((0, 2, 3), unbiased=False, keepdim=True) + 1e-4)
        torch.testing.assert_close(y[t], ref, rtol=1e-4, atol=1e-4)
    # running means differ per step (each step saw its own data)
    assert not torch.allclose(bn.bns[0].running_mean, bn.bns[2].running_mean)
    with pytest.raises(ValueError, match="built for T=3"):
        bn(torch.randn(4, 8, 2, 4, 4))
    nob = BNTT2d(2, T=2, bias=False)
    assert not nob.bns[0].bias.requires_grad


def test_bntt_in_eval_mode_is_each_steps_running_statistics_map():
    """Evaluation is one scale-and-shift over all steps: equal to each step's own BN, memory format kept."""
    T = 3
    bn = BNTT2d(4, T=T)
    for b in bn.bns:
        b.running_mean.normal_(), b.running_var.uniform_(0.5, 2.0), b.weight.data.normal_(), b.bias.data.normal_()
    bn.eval()
    x = torch.randn(T * 5, 4, 6, 6).contiguous(memory_format=torch.channels_last).view(T, 5, 4, 6, 6)
    y = bn(x)
    for t, b in enumerate(bn.bns):
        ref = (x[t] - b.running_mean.view(4, 1, 1)) / torch.sqrt(b.running_var.view(4, 1, 1) + 1e-4)
        torch.testing.assert_close(y[t], ref * b.weight.view(4, 1, 1) + b.bias.view(4, 1, 1))
    assert y.stride() == x.stride()
    y.sum().backward()  # the parameters still get gradients (e.g. fine-tuning with frozen statistics)
    assert all(b.weight.grad is not None and b.bias.grad is not None for b in bn.bns)


def test_token_bn_normalises_per_token():
    x = torch.randn(2, 4, 6, 5) + torch.arange(6).view(1, 1, 6, 1)  # [T, B, N, C]
    y = TokenBatchNorm1d(6)(x)
    mean = x.mean(dim=(0, 1, 3))
    assert mean.std() > 1  # tokens differ before
    torch.testing.assert_close(y.mean(dim=(0, 1, 3)), torch.zeros(6), atol=1e-5, rtol=0)


def test_encoders():
    x = torch.rand(2, 1, 4, 4)
    d = DirectEncoder(5)(x)
    assert d.shape == (5, 2, 1, 4, 4) and d.data_ptr() == x.data_ptr()
    p1 = PoissonEncoder(50, seed=3)(x)
    p2 = PoissonEncoder(50, seed=3)(x)
    assert torch.equal(p1, p2) and set(p1.unique().tolist()) <= {0.0, 1.0}
    torch.testing.assert_close(p1.mean(0), x, atol=0.25, rtol=0)  # rate ~ intensity
    xs = torch.randn(3, 1, 4, 4)
    s = PoissonEncoder(400, signed=True, seed=0)(xs)
    assert set(s.unique().tolist()) <= {-1.0, 0.0, 1.0}
    assert (s * torch.sign(xs) >= 0).all()  # sign follows the pixel's sign
    torch.testing.assert_close(s.abs().mean(0), (xs.abs() / 2).clamp(max=1), atol=0.12, rtol=0)
    with pytest.raises(ValueError, match=r"\[B, C, H, W\]"):
        DirectEncoder(2)(torch.rand(3, 2, 1, 4, 4))


def test_convert_sync_batchnorm_keeps_time_folding_and_state():
    from spikevision.layers import SyncBatchNorm, TimeFoldedSyncBatchNorm, convert_sync_batchnorm

    net = nn.Sequential(TDBatchNorm2d(3, weight_init=0.5), nn.Sequential(BNTT2d(3, T=2)), TokenBatchNorm1d(4))
    net[0].running_mean.fill_(0.25)
    conv = convert_sync_batchnorm(net)
    assert isinstance(conv[0], TimeFoldedSyncBatchNorm) and isinstance(conv[2], TimeFoldedSyncBatchNorm)
    assert isinstance(conv[1][0].bns[0], SyncBatchNorm)
    assert torch.all(conv[0].running_mean == 0.25) and torch.all(conv[0].weight == 0.5)
    # in eval mode (and outside a process group) plain BatchNorm: same output as the original
    ref = TDBatchNorm2d(3, weight_init=0.5).eval()
    ref.running_mean.fill_(0.25)
    x = torch.randn(2, 5, 3, 4, 4)
    torch.testing.assert_close(conv[0].eval()(x), ref(x))
