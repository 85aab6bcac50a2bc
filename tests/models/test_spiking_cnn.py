"""The quickstart's plain convolutional SNN: against a hand-written reference, shapes, gradients, errors."""

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from spikevision.models import create_model
from spikevision.models.spiking_cnn import SPIKING_CNN_NEURON


def _lif_loop(x):
    """u_t = 0.25 u_{t-1} (1 - s_{t-1}) + x_t, spike if u_t > 0.5 (MS-ResNet's neuron), step by step."""
    u, s, out = torch.zeros_like(x[0]), torch.zeros_like(x[0]), []
    for xt in x:
        u = 0.25 * u * (1 - s) + xt
        s = (u > 0.5).to(x.dtype)
        out.append(s)
    return torch.stack(out)


def _reference(model, img, T, pool):
    """The same network written out with functional ops: conv, batch-stat BN over T*B, pool, LIF, readout."""
    x = img.unsqueeze(0).expand(T, *img.shape)
    for stage in model.stages:
        Tn, B = x.shape[:2]
        y = F.conv2d(x.reshape(Tn * B, *x.shape[2:]), stage.conv.module.weight, padding=1)
        mean, var = y.mean((0, 2, 3), keepdim=True), y.var((0, 2, 3), unbiased=False, keepdim=True)
        y = (y - mean) / torch.sqrt(var + stage.bn.eps) * stage.bn.weight[:, None, None] + stage.bn.bias[:, None, None]
        y = (F.max_pool2d if pool == "max" else F.avg_pool2d)(y, 2)
        x = _lif_loop(y.reshape(Tn, B, *y.shape[1:]))
    logits = x.flatten(2) @ model.fc.weight.T + model.fc.bias
    return logits.mean(0)


@pytest.mark.parametrize("pool", ["max", "avg"])
def test_matches_hand_written_reference(pool):
    torch.manual_seed(0)
    model = create_model("spiking_cnn_mini", T=3, pool=pool, widths=(4, 6))
    for m in model.modules():  # non-trivial BN so that the reference checks the affine too
        if isinstance(m, nn.BatchNorm2d):
            nn.init.uniform_(m.weight, 0.5, 2.0)
            nn.init.uniform_(m.bias, -0.3, 0.3)
    img = torch.randn(5, 1, 28, 28)
    out = model(img)
    ref = _reference(model, img, 3, pool)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)
    feats = model.forward_features(model.encode(img))
    assert feats.shape == (3, 5, 6, 7, 7) and set(feats.unique().tolist()) <= {0.0, 1.0}
    per_step = model.forward_head(feats, per_step=True)
    torch.testing.assert_close(per_step.mean(0), out)


def test_defaults_shapes_and_gradients():
    torch.manual_seed(1)
    model = create_model("spiking_cnn_mini")
    assert model.T == 2 and model.num_classes == 10
    assert model.stages[0].lif.p == SPIKING_CNN_NEURON
    assert sum(p.numel() for p in model.parameters()) == (9 * 32 + 2 * 32) + (32 * 64 * 9 + 2 * 64) + 64 * 49 * 10 + 10
    logits = model(torch.randn(4, 1, 28, 28))
    assert logits.shape == (4, 10)
    F.cross_entropy(logits, torch.arange(4)).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    cifar = create_model("spiking_cnn_mini", in_chans=3, img_size=32, num_classes=100)
    assert cifar(torch.randn(2, 3, 32, 32)).shape == (2, 100)
    cifar.reset_classifier(5)
    assert cifar(torch.randn(2, 3, 32, 32)).shape == (2, 5)


def test_errors():
    model = create_model("spiking_cnn_mini")
    with pytest.raises(ValueError, match=r"built for inputs \[\.\., 1, 28, 28\].*img_size=32"):
        model(torch.randn(2, 1, 32, 32))
    with pytest.raises(ValueError, match="T=2"):
        model(torch.randn(3, 2, 1, 28, 28))
    with pytest.raises(ValueError, match="divisible by 2\\^2 = 4"):
        create_model("spiking_cnn_mini", img_size=30)
    with pytest.raises(ValueError, match="unknown pool 'min'"):
        create_model("spiking_cnn_mini", pool="min")
    with pytest.raises(ValueError, match="T must be >= 1"):
        create_model("spiking_cnn_mini", T=0)


@pytest.mark.parametrize("pool", ["max", "avg"])
def test_stem_once_equals_the_repeated_computation(pool):
    """Computing the first stage's analog part once for a static image changes nothing but round-off."""
    torch.manual_seed(2)
    fast = create_model("spiking_cnn_mini", T=3, pool=pool, widths=(4, 6))
    slow = create_model("spiking_cnn_mini", T=3, pool=pool, widths=(4, 6), stem_once=False)
    slow.load_state_dict(fast.state_dict())
    img, y = torch.randn(6, 1, 28, 28), torch.arange(6) % 10
    outs = []
    for model in (fast, slow):
        out = model(img)
        F.cross_entropy(out, y).backward()
        outs.append(out)
    torch.testing.assert_close(outs[0], outs[1], rtol=1e-5, atol=1e-6)
    for (name, a), b in zip(fast.named_parameters(), slow.parameters()):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-6, msg=name)
    bn_f, bn_s = fast.stages[0].bn, slow.stages[0].bn
    torch.testing.assert_close(bn_f.running_mean, bn_s.running_mean)
    n = 6 * 28 * 28  # B*H*W: the Bessel factors n/(n-1) and Tn/(Tn-1) differ by < 1/n
    torch.testing.assert_close(bn_f.running_var, bn_s.running_var, rtol=1.0 / n, atol=1e-7)
    fast.eval(), slow.eval()
    with torch.no_grad():
        torch.testing.assert_close(fast(img), slow(img), rtol=1e-5, atol=1e-6)
