"""MS-ResNet and the vanilla spiking ResNet: shapes, gradients, parameter counts, isometry at init."""

import pytest
import torch
import torchvision
from torch import nn

from spikevision.models import create_model, list_models
from spikevision.models.ms_resnet import MS_RESNET_NEURON, MSBlock, SpikingBasicBlock, _shortcut
from spikevision.neuron import LIF, PLIF

T, B = 2, 2
SIZES = {1000: 64, 10: 32}  # ImageNet nets at 64x64, CIFAR nets at 32x32
CONSTRUCT_ONLY = {"ms_resnet482", "spiking_resnet482"}
MODELS = [i for f in ("ms_resnet", "spiking_resnet") for i in list_models(f)]


def _input(info, batch=B, steps=T):
    c, h, w = info.input_size
    if info.name.endswith("_dvs"):
        return torch.randn(steps, batch, c, h, w).abs()  # event frames, no encoder
    size = SIZES[info.num_classes]
    return torch.randn(batch, c, size, size)


@pytest.mark.parametrize("info", [i for i in MODELS if i.name not in CONSTRUCT_ONLY], ids=lambda i: i.name)
def test_forward_backward_reaches_every_parameter(info):
    torch.manual_seed(0)
    model = create_model(info.name, T=T, num_classes=7)
    logits = model(_input(info))
    assert logits.shape == (B, 7)
    assert torch.isfinite(logits).all()
    nn.functional.cross_entropy(logits, torch.tensor([1, 3])).backward()
    missing = [n for n, q in model.named_parameters() if q.grad is None]
    assert not missing, missing


def _conv(cin, cout, k, bias=False):
    return cin * cout * k * k + (cout if bias else 0)


def _bn(c):
    return 2 * c


def _count(stem, layers, widths, strides, stem_width, classes):
    """Architecture formula, written from the paper's tables, not from the model code."""
    total, cin = stem, stem_width
    for n, w, s in zip(layers, widths, strides):
        for i in range(n):
            total += _conv(cin, w, 3) + _bn(w) + _conv(w, w, 3) + _bn(w)
            if i == 0 and (s != 1 or cin != w):
                total += _conv(cin, w, 1) + _bn(w)  # AvgPool has no parameters
            cin = w
    return total + cin * classes + classes


def test_ms_resnet18_and_34_parameter_counts():
    imagenet_stem = _conv(3, 64, 7) + _bn(64)
    expected18 = _count(imagenet_stem, (2, 2, 2, 2), (64, 128, 256, 512), (2, 2, 2, 2), 64, 1000)
    expected34 = _count(imagenet_stem, (3, 4, 6, 3), (64, 128, 256, 512), (2, 2, 2, 2), 64, 1000)
    n18 = sum(q.numel() for q in create_model("ms_resnet18").parameters())
    n34 = sum(q.numel() for q in create_model("ms_resnet34").parameters())
    assert n18 == expected18 == 11_693_736
    assert n34 == expected34
    # independent cross-check: torchvision's ANN ResNet plus stage 1's projection (stride 2 there)
    stage1_projection = _conv(64, 64, 1) + _bn(64)
    assert n18 == sum(q.numel() for q in torchvision.models.resnet18().parameters()) + stage1_projection
    assert n34 == sum(q.numel() for q in torchvision.models.resnet34().parameters()) + stage1_projection
    # the vanilla baseline has the same shapes; LIF neurons have no parameters
    assert n18 == sum(q.numel() for q in create_model("spiking_resnet18").parameters())


def test_ms_resnet104_and_cifar_parameter_counts():
    deep_stem = _conv(3, 64, 3, bias=True) + 2 * _conv(64, 64, 3, bias=True) + _bn(64)
    expected104 = _count(deep_stem, (3, 8, 32, 8), (64, 128, 256, 512), (2, 2, 2, 2), 64, 1000)
    assert sum(q.numel() for q in create_model("ms_resnet104").parameters()) == expected104
    cifar_stem = _conv(3, 16, 3) + _bn(16)
    for depth, n in [(20, 3), (56, 9), (482, 80)]:
        expected = _count(cifar_stem, (n, n, n), (16, 32, 64), (1, 2, 2), 16, 10)
        assert sum(q.numel() for q in create_model(f"ms_resnet{depth}").parameters()) == expected, depth
    stem64 = _conv(3, 64, 3) + _bn(64)
    expected18c = _count(stem64, (3, 3, 2), (128, 256, 512), (1, 2, 2), 64, 10)
    assert sum(q.numel() for q in create_model("ms_resnet18_cifar").parameters()) == expected18c


def test_imagenet_stage_strides_and_104_shortcuts():
    model = create_model("ms_resnet18", T=T)
    feats = model.forward_features(model.encode(torch.randn(1, 3, 224, 224)))
    assert feats.shape == (T, 1, 512, 7, 7)  # 112 -> 56 -> 28 -> 14 -> 7
    assert set(feats.unique().tolist()) <= {0.0, 1.0}  # features are spikes of the final LIF
    m104 = create_model("ms_resnet104")
    for stage in m104.stages:
        pools = [m for m in stage[0].shortcut.modules() if isinstance(m, nn.AvgPool2d)]
        assert len(pools) == 1  # every stage starts at stride 2 in the 104
        assert all(isinstance(blk.shortcut, nn.Identity) for blk in stage[1:])
    # the AvgPool only at stride 2 (the released code would add it whenever projecting)
    kw = dict(spiking=False, neuron="lif", params=MS_RESNET_NEURON, bn_weight_init=0.5)
    no_pool = _shortcut("avgpool_conv", 64, 128, 1, **kw)
    assert not any(isinstance(m, nn.AvgPool2d) for m in no_pool.modules())
    assert no_pool[0].module.stride == (1, 1)


def test_dvs_variant_accepts_event_frames():
    model = create_model("ms_resnet20_dvs", T=T)
    x = torch.randint(0, 3, (T, B, 2, 128, 128)).float()
    feats = model.forward_features(model.encode(x))
    assert feats.shape == (T, B, 64, 16, 16)  # extra stride 2 in stage 1: 128 -> 64 -> 32 -> 16
    assert model(x).shape == (B, 10)
    with pytest.raises(ValueError, match="T=2"):
        model(torch.randn(3, B, 2, 32, 32))
    with pytest.raises(ValueError, match="in_chans=3"):
        model(torch.randn(T, B, 3, 32, 32))


def _block_io(model, x):
    """Inputs and outputs of every block, with the inputs' gradients retained."""
    records = []

    def hook(block, inputs, output):
        inputs[0].retain_grad()
        records.append((block, inputs[0], output))

    handles = [blk.register_forward_hook(hook) for stage in model.stages for blk in stage]
    logits = model(x)
    for h in handles:
        h.remove()
    return logits, records


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("name", ["ms_resnet20", "ms_resnet18"])
def test_ms_blocks_are_identity_at_init(name, train):
    torch.manual_seed(0)
    model = create_model(name, T=T).train(train)
    _, records = _block_io(model, torch.randn(B, 3, 32, 32))
    n_identity = 0
    for block, inp, out in records:
        assert isinstance(block, MSBlock)
        with torch.no_grad():
            expected = block.shortcut(inp)
        assert torch.equal(out, expected)  # branch is exactly zero (last BN gamma 0)
        n_identity += isinstance(block.shortcut, nn.Identity)
    assert n_identity >= 4


def _within_stage_pairs(records):
    """Gradient norms at consecutive block inputs separated by an identity-shortcut block."""
    norms = []
    for (blk, inp, _), (_, nxt, _) in zip(records, records[1:]):
        if isinstance(blk.shortcut, nn.Identity):
            norms.append((inp.grad.norm().item(), nxt.grad.norm().item()))
    return norms


def test_gradient_norm_equality_at_init_ms_but_not_vanilla():
    torch.manual_seed(0)
    x = torch.randn(4, 3, 32, 32)
    y = torch.tensor([0, 1, 2, 3])
    ms, rec_ms = _block_io(create_model("ms_resnet20", T=T), x)
    nn.functional.cross_entropy(ms, y).backward()
    pairs = _within_stage_pairs(rec_ms)
    assert len(pairs) == 6  # identity blocks followed by another block: 3 + 2 + 1
    for (blk, inp, _), (_, nxt, _) in zip(rec_ms, rec_ms[1:]):
        if isinstance(blk.shortcut, nn.Identity):
            assert torch.equal(inp.grad, nxt.grad)  # exactly equal, not only in norm
    assert all(a > 0 for a, _ in pairs)

    torch.manual_seed(0)
    van, rec_van = _block_io(create_model("spiking_resnet20", T=T), x)
    nn.functional.cross_entropy(van, y).backward()
    assert all(isinstance(r[0], SpikingBasicBlock) for r in rec_van)
    ratios = [b / a for a, b in _within_stage_pairs(rec_van) if a > 0]
    assert ratios and max(abs(r - 1.0) for r in ratios) > 0.05


def test_neuron_choice_and_constant_override():
    m = create_model("ms_resnet20", neuron_params={"v_th": 1.0})
    lifs = [mod for mod in m.modules() if isinstance(mod, LIF)]
    assert lifs and all(mod.p.v_th == 1.0 and mod.p.decay == 0.25 for mod in lifs)
    p = create_model("spiking_resnet20", neuron="plif", T=T)
    plifs = [mod for mod in p.modules() if isinstance(mod, PLIF)]
    assert len(plifs) == 1 + 2 * 9  # stem neuron + two per block
    p(torch.randn(B, 3, 32, 32)).sum().backward()
    assert all(mod.w.grad is not None for mod in plifs)
    with pytest.raises(TypeError, match="unknown neuron constant"):
        create_model("ms_resnet20", neuron_params={"threshold": 1.0})


def test_default_constants_and_bn_init():
    m = create_model("ms_resnet20")
    assert all(mod.p == MS_RESNET_NEURON for mod in m.modules() if isinstance(mod, LIF))
    p = MS_RESNET_NEURON
    assert (p.decay, p.v_th, p.strict, p.detach_reset, p.reset) == (0.25, 0.5, True, True, "hard")
    blk = m.stages[1][0]
    assert torch.all(blk.bn1.weight == 0.5) and torch.all(blk.bn2.weight == 0.0)
    assert torch.all(blk.shortcut[-1].weight == 0.5)
    v = create_model("spiking_resnet20").stages[1][0]
    assert torch.all(v.bn2.weight == 0.5)  # no zero-init in the vanilla baseline


def test_spiking_shortcut_option_feeds_spikes_to_projection():
    m = create_model("ms_resnet20", T=T, spiking_shortcut=True)
    proj = m.stages[1][0].shortcut
    assert isinstance(proj[0], LIF)
    seen = []
    proj[1].register_forward_hook(lambda mod, i, o: seen.append(i[0]))
    m(torch.randn(B, 3, 32, 32))
    assert set(seen[0].unique().tolist()) <= {0.0, 1.0}


def test_head_interface():
    torch.manual_seed(0)
    m = create_model("ms_resnet104", T=T, num_classes=5).eval()
    assert m.dropout.p == 0.2 and create_model("ms_resnet18").dropout.p == 0.0
    feats = m.forward_features(m.encode(torch.randn(1, 3, 32, 32)))
    pooled = m.forward_head(feats, pre_logits=True)
    assert pooled.shape == (T, 1, 512)
    per_step = m.forward_head(feats, per_step=True)
    assert per_step.shape == (T, 1, 5)
    torch.testing.assert_close(per_step.mean(0), m.forward_head(feats))  # mean over T = mean of logits
    m.reset_classifier(3)
    assert m.num_classes == 3 and m.forward_head(feats).shape == (1, 3)


def test_ms_resnet_fits_a_tiny_batch():
    """From the identity initialisation, SGD drives the training loss down (learning works end to end)."""
    torch.manual_seed(0)
    x = torch.randn(8, 3, 8, 8)
    y = (x[:, 0].mean((1, 2)) > 0).long()
    model = create_model("ms_resnet20", T=T, num_classes=2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    losses = []
    for _ in range(8):
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def _vanilla_twin(name: str) -> str:
    return "spiking_resnet" + name[len("ms_resnet"):]


@pytest.mark.parametrize("info", list_models("ms_resnet"), ids=lambda i: i.name)
def test_every_ms_shape_has_a_vanilla_twin(info):
    """The degradation baseline exists for every MS-ResNet shape: same parameters, vanilla blocks."""
    twin = _vanilla_twin(info.name)
    assert twin in {i.name for i in list_models("spiking_resnet")}
    if info.name in CONSTRUCT_ONLY:
        return
    ms, van = create_model(info.name, T=T), create_model(twin, T=T)
    assert [q.shape for q in ms.parameters()] == [q.shape for q in van.parameters()]
    assert {type(b) for s in van.stages for b in s} == {SpikingBasicBlock}
    assert all(bool((b.bn2.weight.detach() == 0.5).all()) for s in van.stages for b in s)  # no zero-init


@pytest.mark.parametrize("name", ["ms_resnet20", "spiking_resnet20", "ms_resnet18"])
def test_stem_once_equals_the_per_step_computation(name):
    """Training on a static image: the stem computed once and repeated == the stem on T repeated frames."""
    torch.manual_seed(0)
    fast = create_model(name, T=3, num_classes=5)
    slow = create_model(name, T=3, num_classes=5, stem_once=False)
    assert fast.stem_once and not slow.stem_once
    for m in fast.modules():  # non-zero last-BN gammas so that every block's branch contributes
        if isinstance(m, nn.BatchNorm2d):
            nn.init.uniform_(m.weight, 0.4, 1.0)
    slow.load_state_dict(fast.state_dict())
    x, y = torch.randn(2, 3, 32, 32), torch.tensor([1, 4])
    outs = []
    for model in (fast, slow):
        out = model(x)
        nn.functional.cross_entropy(out, y).backward()
        outs.append(out)
    torch.testing.assert_close(outs[0], outs[1], rtol=1e-5, atol=1e-6)
    for (n, a), b in zip(fast.named_parameters(), slow.parameters()):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-6, msg=n)
    seq = fast.encode(x)  # sequences and eval mode take the per-step path
    torch.testing.assert_close(fast(seq), slow(seq), rtol=1e-5, atol=1e-6)
