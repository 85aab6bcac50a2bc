"""S-ResNet (Vicente-Sola et al., NCE 2022): shapes, gradients, neuron, residual modes, head, init, loading.

References are written here independently: a plain-loop LIF, per-mode block
dataflows, and a time-outer / layer-inner loop over the authors' state-dict
naming (the released forward's structure) compared with the fused model.
"""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from spikevision.layers.encoders import PoissonEncoder
from spikevision.layers.norm import BNTT2d, TDBatchNorm2d
from spikevision.models import create_model, list_models
from spikevision.models.sresnet import (
    RESIDUAL_MODES, SRESNET_NEURON, SResBlock, SResNet, load_sresnet_checkpoint, make_norm, remap_sresnet_checkpoint,
)
from spikevision.neuron import Triangle

TINY = dict(T=2, width=4)
LEAK, V_TH = 0.8744, 1.0


def _input(name: str, B: int = 2) -> torch.Tensor:
    info = next(i for i in list_models("sresnet") if i.name == name)
    if info.input_size[0] == 2:  # event frames [T, B, 2, 128, 128]
        return torch.rand(TINY["T"], 1, *info.input_size) * 3.0
    return torch.randn(B, *info.input_size)


def _lif_reference(current: torch.Tensor) -> torch.Tensor:
    """Plain loop: U_t = 0.8744 U_{t-1} + I_t, spike if U_t > 1, subtract 1."""
    u = torch.zeros_like(current[0])
    out = []
    for i_t in current:
        u = LEAK * u + i_t
        s = (u > V_TH).to(current.dtype)
        u = u - V_TH * s
        out.append(s)
    return torch.stack(out)


def _is_binary(x: torch.Tensor) -> bool:
    return bool(((x == 0) | (x == 1)).all())


# ---------------------------------------------------------------------------
# builders: forward, backward, registry, parameter counts
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", [i.name for i in list_models("sresnet")])
def test_builder_forward_backward(name):
    torch.manual_seed(0)
    model = create_model(name, **TINY)
    assert isinstance(model, SResNet) and model.T == 2 and model.num_classes == 10
    x = _input(name)
    out = model(x)
    assert out.shape == (x.shape[1] if x.dim() == 5 else x.shape[0], 10)
    assert torch.isfinite(out).all()
    out.square().sum().backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, f"{name}: no gradient reaches {pname}"


def test_bntt_bias_off_has_frozen_zero_biases():
    torch.manual_seed(0)
    model = create_model("sresnet20", bntt_bias=False, **TINY)
    model(torch.randn(2, 3, 32, 32)).square().sum().backward()
    biases = [(n, p) for n, p in model.named_parameters() if n.endswith(".bias")]
    assert biases and all("bns" in n for n, _ in biases)  # BNTT shifts only: no conv/linear bias anywhere
    for n, p in biases:
        assert not p.requires_grad and p.grad is None and not p.any(), n
    for n, p in model.named_parameters():
        if not n.endswith(".bias"):
            assert p.grad is not None and p.grad.abs().sum() > 0, n


def test_parameter_count_matches_hand_formula():
    """S-ResNet-38 (n=6, F=32, T=50): convs + projections + FC + one BN (gamma, beta) per layer and step."""
    n, Fw, T, K = 6, 32, 50, 10
    convs = 3 * Fw * 9 + n * 2 * Fw * Fw * 9  # stem + stage 1
    convs += Fw * 2 * Fw * 9 + (2 * n - 1) * (2 * Fw) ** 2 * 9  # stage 2
    convs += 2 * Fw * 4 * Fw * 9 + (2 * n - 1) * (4 * Fw) ** 2 * 9  # stage 3
    proj = Fw * 2 * Fw + 2 * Fw * 4 * Fw
    bn_channels = Fw + 2 * n * (Fw + 2 * Fw + 4 * Fw) + 2 * Fw + 4 * Fw
    expected = convs + proj + 4 * Fw * K + 2 * T * bn_channels
    model = create_model("sresnet38")
    assert sum(p.numel() for p in model.parameters()) == expected == 2_533_856
    boosted = create_model("sresnet38", boosting=True, num_classes=100)
    assert boosted.fc.weight.shape == (100 * 10, 128)


def test_no_bias_in_conv_or_linear_and_layer_count():
    model = create_model("sresnet20", **TINY)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert all(m.bias is None for m in convs) and model.fc.bias is None
    assert sum(m.kernel_size == (3, 3) for m in convs) + 1 == 6 * 3 + 2  # 6n+2 weight layers (+2 projections)
    assert sum(m.kernel_size == (1, 1) for m in convs) == 2


# ---------------------------------------------------------------------------
# neuron
# ---------------------------------------------------------------------------


def test_neuron_hand_computed():
    """U_t = 0.8744 U_{t-1} + I_t, strict >, subtract 1, through the model's own LIF module."""
    lif = create_model("sresnet20", **TINY).stem.lif
    assert lif.p == SRESNET_NEURON
    current = torch.tensor([0.6, 0.6, 0.6, 1.0, 0.0, 2.5])[:, None]
    # U: 0.6 | 0.6*0.8744+0.6 = 1.12464 -> spike, 0.12464 | 0.708985... | 1.0 + 0.619937... -> spike, 0.619937...
    #    | 0.542073... | 2.5 + 0.473989... -> spike (one spike per step; subtract 1 leaves 1.97...)
    u, expected = 0.0, []
    for i in current[:, 0].tolist():
        u = 0.8744 * u + i
        expected.append(1.0 if u > 1.0 else 0.0)
        u -= expected[-1]
    assert expected == [0, 1, 0, 1, 0, 1]
    assert lif(current)[:, 0].tolist() == expected
    # strict threshold: exactly 1.0 does not fire
    assert lif(torch.tensor([[1.0]])).item() == 0.0
    # triangular surrogate 0.3 * max(0, 1 - |U - 1|): 0.15 at U = 0.5, 0.3 at U = 1, 0 at U = 2.5
    for value, grad in ((0.5, 0.15), (1.0, 0.3), (2.5, 0.0)):
        x = torch.tensor([[value]], requires_grad=True)
        lif(x).sum().backward()
        assert x.grad.item() == pytest.approx(grad, abs=1e-6)


def test_neuron_overrides():
    model = create_model("sresnet20", neuron_params={"v_th": 0.5}, **TINY)
    assert model.stem.lif.p.v_th == 0.5 and model.stem.lif.p.surrogate == Triangle(width=2.0, peak=0.3)
    plif = create_model("sresnet20", neuron="plif", **TINY)
    assert torch.isfinite(plif(torch.randn(2, 3, 32, 32))).all()


# ---------------------------------------------------------------------------
# residual modes
# ---------------------------------------------------------------------------


def _block_reference(block: SResBlock, x: torch.Tensor, mode: str) -> torch.Tensor:
    """Each mode's dataflow from the block's convs/BNs and the plain-loop LIF."""
    h = _lif_reference(block.unit_a.bn(block.unit_a.conv(x)))
    current = block.unit_b.bn(block.unit_b.conv(h))
    if isinstance(block.shortcut, nn.Identity):
        skip = x
    else:
        proj = block.shortcut.bn(block.shortcut.conv(x))
        skip = _lif_reference(proj) if mode in ("sew_and", "sew_iand") else proj
    if mode == "pre_lif_add":
        return _lif_reference(current + skip)
    s = _lif_reference(current)
    return {
        "post_lif_add": lambda: s + skip,
        "post_add_lif": lambda: _lif_reference(s + skip),
        "sew_and": lambda: s * skip,
        "sew_iand": lambda: (1.0 - s) * skip,
    }[mode]()


@pytest.mark.parametrize("mode", RESIDUAL_MODES)
@pytest.mark.parametrize("stride", [1, 2])
def test_block_modes_match_reference(mode, stride):
    torch.manual_seed(1)
    cout = 4 * stride
    block = SResBlock(4, cout, stride, residual=mode, norm_layer=make_norm("bntt", 3), neuron="lif",
                      params=SRESNET_NEURON)
    block.eval()  # fixed BN statistics; deterministic for the reference
    for bn in block.modules():
        if isinstance(bn, nn.BatchNorm2d):
            bn.weight.data.uniform_(0.5, 2.0)
            bn.bias.data.uniform_(-0.2, 0.8)
    x = (torch.rand(3, 2, 4, 8, 8) < 0.5).float()  # binary input spikes [T, B, C, H, W]
    out = block(x)
    torch.testing.assert_close(out, _block_reference(block, x, mode), rtol=0, atol=1e-6)
    if mode == "post_lif_add":
        assert not _is_binary(out)
        if stride == 1:  # spike counts within a stage: s + x reaches 2
            assert (out == 2).any() and torch.equal(out, out.round())
    else:
        assert _is_binary(out), f"{mode} must emit binary spikes"
    assert out.shape == (3, 2, cout, 8 // stride, 8 // stride)


@pytest.mark.parametrize("mode", RESIDUAL_MODES + ("sew_add",))
def test_model_features_binary_per_mode(mode):
    torch.manual_seed(0)
    model = create_model("sresnet20", residual=mode, **TINY)
    feats = model.forward_features(model.encode(torch.randn(2, 3, 32, 32) * 3))
    assert feats.shape == (2, 2, 16, 8, 8)
    assert _is_binary(feats) == (model.residual != "post_lif_add")
    if mode == "sew_add":
        assert model.residual == "post_lif_add"
    model(torch.randn(2, 3, 32, 32)).sum().backward()  # every mode is connected to every parameter
    assert all(p.grad is not None for p in model.parameters())


def test_unknown_options_raise():
    with pytest.raises(ValueError, match="unknown residual mode"):
        create_model("sresnet20", residual="add", **TINY)
    with pytest.raises(ValueError, match="unknown norm"):
        create_model("sresnet20", norm="bn", **TINY)


@pytest.mark.parametrize("encoding", ["direct", "gac"])
def test_stem_stride_2_halves_every_map_and_keeps_the_weights(encoding):
    """stem_stride=2 (not in the paper for images): the same parameters, every feature map a quarter the size."""
    kw = dict(T=2, in_chans=1, width=8, num_classes=10, encoding=encoding)
    ref, half = create_model("sresnet20", **kw), create_model("sresnet20", stem_stride=2, **kw)
    assert {k: v.shape for k, v in ref.state_dict().items()} == {k: v.shape for k, v in half.state_dict().items()}
    sizes = {}
    for name, model in (("ref", ref), ("half", half)):
        model.stages[0].register_forward_hook(lambda m, a, o, name=name: sizes.__setitem__(name, o.shape[-2:]))
        assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    assert tuple(sizes["ref"]) == (28, 28) and tuple(sizes["half"]) == (14, 14)
    assert create_model("sresnet38_dvs", T=2).config.resolved_stem_stride == 2  # the paper's DVS stem
    with pytest.raises(ValueError, match="stem_stride must be None"):
        create_model("sresnet20", stem_stride=4, **TINY)


def test_tdbn_norm_option():
    torch.manual_seed(0)
    model = create_model("sresnet20", norm="tdbn", bntt_bias=False, **TINY)
    norms = [m for m in model.modules() if isinstance(m, (BNTT2d, nn.BatchNorm2d))]
    assert norms and all(isinstance(m, TDBatchNorm2d) for m in norms)
    assert all(not m.bias.requires_grad for m in norms)
    model(torch.randn(2, 3, 32, 32)).sum().backward()
    assert all(m.weight.grad is not None for m in norms)
    with pytest.raises(ValueError, match="norm='bntt'"):
        load_sresnet_checkpoint(model, {})


# ---------------------------------------------------------------------------
# time steps, head, init, encoders, DVS
# ---------------------------------------------------------------------------


def test_T_mismatch_raises():
    model = create_model("sresnet20", **TINY)
    with pytest.raises(ValueError, match="built for T=2"):
        model(torch.randn(3, 2, 3, 32, 32))
    with pytest.raises(ValueError, match="built for T=2"):
        model.forward_features(torch.randn(3, 2, 3, 32, 32))
    with pytest.raises(ValueError, match="input channels"):
        model(torch.randn(2, 1, 32, 32))


def test_head_boosting_and_reset_classifier():
    torch.manual_seed(0)
    model = create_model("sresnet20", boosting=True, num_classes=3, **TINY)
    feats = torch.rand(2, 4, 16, 8, 8)  # [T, B, 4F, H, W]
    pooled = feats.mean(dim=(-2, -1))
    per_step = (pooled @ model.fc.weight.T).view(2, 4, 3, 10).mean(-1)  # groups of 10 consecutive outputs
    torch.testing.assert_close(model.forward_head(feats, per_step=True), per_step)
    torch.testing.assert_close(model.forward_head(feats), per_step.mean(0))
    torch.testing.assert_close(model.forward_head(feats, pre_logits=True), pooled)
    model.reset_classifier(5)
    assert model.fc.weight.shape == (50, 16) and model(torch.randn(2, 3, 32, 32)).shape == (2, 5)


def test_xavier_uniform_gain_2():
    torch.manual_seed(0)
    model = create_model("sresnet20", T=2, width=8)
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            w = m.weight
            rf = w[0, 0].numel()
            bound = 2.0 * math.sqrt(6.0 / (w.shape[1] * rf + w.shape[0] * rf))
            assert w.abs().max() <= bound
            if w.numel() >= 500:  # uniform(-b, b): std b / sqrt(3); PyTorch's default bound is ~3.5x smaller
                assert w.std().item() == pytest.approx(bound / math.sqrt(3.0), rel=0.15)
                assert w.abs().max() > 0.9 * bound


def test_poisson_encoding_signed_and_reproducible():
    make = lambda seed: create_model("sresnet20", encoding="poisson", poisson_seed=seed, T=3, width=4)  # noqa: E731
    x = torch.full((2, 3, 32, 32), 1.0)
    x[:, 0] = -1.0
    model = make(7)
    assert isinstance(model.encoder, PoissonEncoder) and model.encoder.signed
    spikes = model.encode(x)
    assert torch.equal(spikes, make(7).encode(x)) and not torch.equal(spikes, make(8).encode(x))
    assert set(spikes[:, :, 0].unique().tolist()) == {-1.0, 0.0}  # sign(x) spikes
    assert set(spikes[:, :, 1:].unique().tolist()) == {0.0, 1.0}
    assert spikes.abs().mean().item() == pytest.approx(0.5, abs=0.03)  # probability min(|x| / 2, 1)
    with pytest.raises(ValueError, match="unknown encoding"):
        create_model("sresnet20", encoding="rate", **TINY)


def test_dvs_resize_and_input_checks():
    torch.manual_seed(0)
    model = create_model("sresnet38_dvs", **TINY).eval()
    plain = create_model("sresnet38_dvs", input_resize=None, **TINY).eval()
    plain.load_state_dict(model.state_dict())
    events = torch.randint(0, 4, (2, 1, 2, 128, 128)).float()
    resized = torch.stack([F.interpolate(f, size=(64, 64), mode="bilinear", align_corners=False) for f in events])
    torch.testing.assert_close(model(events), plain(resized))
    assert model.forward_features(events).shape == (2, 1, 16, 8, 8)  # 64 -> 32 (stem) -> 16 -> 8
    with pytest.raises(ValueError, match="event-frame sequences"):
        model(torch.rand(1, 2, 128, 128))


# ---------------------------------------------------------------------------
# the authors' checkpoint naming
# ---------------------------------------------------------------------------


def _authors_state_dict(n: int, Fw: int, T: int, out_features: int) -> dict[str, torch.Tensor]:
    """A synthetic checkpoint in the released naming, with the duplicate aliases."""
    g = torch.Generator().manual_seed(0)
    sd: dict[str, torch.Tensor] = {}

    def bn(prefix: str, c: int) -> None:
        for t in range(T):
            sd[f"{prefix}.{t}.weight"] = torch.rand(c, generator=g, dtype=torch.double) + 0.5
            sd[f"{prefix}.{t}.bias"] = torch.rand(c, generator=g, dtype=torch.double) * 0.6 - 0.1
            sd[f"{prefix}.{t}.running_mean"] = torch.randn(c, generator=g, dtype=torch.double) * 0.2
            sd[f"{prefix}.{t}.running_var"] = torch.rand(c, generator=g, dtype=torch.double) + 0.5
            sd[f"{prefix}.{t}.num_batches_tracked"] = torch.tensor(5)

    def conv(key: str, cout: int, cin: int, k: int) -> None:
        sd[key] = torch.randn(cout, cin, k, k, generator=g, dtype=torch.double) * (2.0 / math.sqrt(cin * k * k))

    conv("conv_list.0.weight", Fw, 3, 3)
    bn("bntt_list.0", Fw)
    i = 1
    for stage in range(3):
        c = Fw * 2**stage
        for layer in range(2 * n):
            conv(f"conv_list.{i}.weight", c, c // 2 if (stage and layer == 0) else c, 3)
            bn(f"bntt_list.{i}", c)
            i += 1
    for j in range(2):
        conv(f"conv1x1_list.{j}.weight", Fw * 2 ** (j + 1), Fw * 2**j, 1)
        bn(f"bn_conv1x1_list.{j}", Fw * 2 ** (j + 1))
    sd["fc.weight"] = torch.randn(out_features, 4 * Fw, generator=g, dtype=torch.double)
    for alias, target in (("conv1", "conv_list.0"), ("bntt1", "bntt_list.0"), ("conv_resize_1", "conv1x1_list.0"),
                          ("conv_resize_2", "conv1x1_list.1"), ("resize_bn_1", "bn_conv1x1_list.0"),
                          ("resize_bn_2", "bn_conv1x1_list.1")):
        for key in [k for k in sd if k.startswith(target + ".")]:
            sd[alias + key[len(target):]] = sd[key].clone()
    return sd


def _authors_forward(sd: dict, img: torch.Tensor, n: int, T: int, boost: bool) -> torch.Tensor:
    """Time outer, layers inner, one membrane per layer; skip added after the second LIF of each block."""
    n_layers = 6 * n + 1
    mem = [0.0] * n_layers
    total = 0.0

    def bn(x, prefix, t):
        return F.batch_norm(x, sd[f"{prefix}.{t}.running_mean"], sd[f"{prefix}.{t}.running_var"],
                            sd[f"{prefix}.{t}.weight"], sd[f"{prefix}.{t}.bias"], training=False, eps=1e-4)

    for t in range(T):
        x = img
        for i in range(n_layers):
            stride = 2 if i in (2 * n + 1, 4 * n + 1) else 1
            mem[i] = LEAK * mem[i] + bn(F.conv2d(x, sd[f"conv_list.{i}.weight"], stride=stride, padding=1),
                                        f"bntt_list.{i}", t)
            spikes = (mem[i] > V_TH).double()
            mem[i] = mem[i] - V_TH * spikes
            x = spikes
            if i == 0:
                skip = x
            elif i % 2 == 0:
                if i in (2 * n + 2, 4 * n + 2):
                    j = 0 if i == 2 * n + 2 else 1
                    skip = bn(F.conv2d(skip, sd[f"conv1x1_list.{j}.weight"], stride=2), f"bn_conv1x1_list.{j}", t)
                x = x + skip
                skip = x
        logits = x.mean(dim=(2, 3)) @ sd["fc.weight"].T
        if boost:
            logits = logits.view(logits.shape[0], -1, 10).mean(-1)
        total = total + logits
    return total / T


def test_authors_checkpoint_loads_and_matches_released_forward():
    n, Fw, T, K = 3, 4, 3, 2
    sd = _authors_state_dict(n, Fw, T, K * 10)
    model = create_model("sresnet20", num_classes=K, T=T, width=Fw, boosting=True).double()
    load_sresnet_checkpoint(model, {"global_step": 1, "state_dict": sd, "accuracy": 0.0})
    model.eval()
    img = torch.randn(2, 3, 32, 32, dtype=torch.double)
    expected = _authors_forward(sd, img, n, T, boost=True)
    torch.testing.assert_close(model(img), expected, rtol=1e-9, atol=1e-9)
    assert expected.abs().sum() > 0  # the network is active, so the comparison means something


def test_remap_errors_and_fewer_steps():
    sd = _authors_state_dict(3, 4, 3, 10)
    prefixed = {"module." + k: v for k, v in sd.items()}
    assert remap_sresnet_checkpoint(prefixed) == remap_sresnet_checkpoint(sd)
    with pytest.raises(ValueError, match="trained with T=3.*allow_fewer_steps"):
        remap_sresnet_checkpoint(sd, T=2)
    with pytest.raises(ValueError, match="trained with T=3"):
        remap_sresnet_checkpoint(sd, T=4, allow_fewer_steps=True)
    model = create_model("sresnet20", T=2, width=4).double()
    load_sresnet_checkpoint(model, sd, allow_fewer_steps=True)  # the released test script's behaviour, on request
    torch.testing.assert_close(model.stem.bn.bns[1].weight, sd["bntt_list.0.1.weight"], rtol=0, atol=0)
    with pytest.raises(ValueError, match="n=3 blocks per stage"):
        remap_sresnet_checkpoint(sd, n=6)
    bad = dict(sd, **{"conv1.weight": sd["conv1.weight"] + 1})
    with pytest.raises(ValueError, match="alias"):
        remap_sresnet_checkpoint(bad)
    with pytest.raises(ValueError, match="no BNTT entries"):
        remap_sresnet_checkpoint({k: v for k, v in sd.items() if "bn" not in k})
    with pytest.raises(ValueError, match="unexpected key"):
        remap_sresnet_checkpoint(dict(sd, extra=torch.zeros(1)))


def test_gac_encoding_replaces_the_stem():
    """GAC (Qiu et al.) plugged into S-ResNet: it owns the stem, its gate feeds stage 1, T is fixed."""
    from spikevision.layers.gac import GatedAttentionCoding

    torch.manual_seed(0)
    model = create_model("sresnet20", T=4, width=4, encoding="gac")
    assert isinstance(model.encoder, GatedAttentionCoding) and isinstance(model.stem, nn.Identity)
    x = torch.randn(3, 3, 16, 16)
    encoded, gate = model.encoder(x, return_gate=True)
    assert encoded.shape == (4, 3, 4, 16, 16) and bool(((gate > 0) & (gate < 1)).all())
    seen = []
    hook = model.stages[0][0].register_forward_pre_hook(lambda m, a: seen.append(a[0]))
    logits = model(x)
    hook.remove()
    torch.testing.assert_close(seen[0], model.encode(x))  # stage 1 reads the gated encoder output
    assert logits.shape == (3, 10)
    F.cross_entropy(logits, torch.tensor([0, 1, 2])).backward()
    assert all(p.grad is not None for p in model.encoder.parameters())
    with pytest.raises(ValueError, match="T"):
        model(torch.randn(2, 3, 3, 16, 16))  # a sequence of another T
    with pytest.raises(ValueError, match="unknown encoding 'rate'.*'gac'"):
        create_model("sresnet20", encoding="rate")
