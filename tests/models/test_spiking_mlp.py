"""Spiking MLP family: shapes, gradients, hand references for SPE / token mixing / channel MLP,
residual wiring, parameter counts against a formula written from the authors' layer sizes, errors."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from spikevision.layers import TDBatchNorm1d, TokenBatchNorm1d
from spikevision.models import create_model, list_models
from spikevision.models.spiking_mlp import (
    MLP_NEURON, ChannelMLP, MLPBlock, SpikingMLP, SpikingPatchEncoding, TokenMixing,
)
from spikevision.neuron import LIF, PLIF

T, B = 2, 2
MODELS = list_models("spiking_mlp")
# tiny but valid shapes per builder: 32 = stem 4 x 2^3 for the four-stage nets
SMALL = {"mlp_spe_t": dict(img_size=32), "mlp_spe_s": dict(img_size=32), "mlp_s": dict(img_size=32),
         "mlp_spe_b": dict(img_size=32, dim=12), "mlp_spe_mini": dict()}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny tensors: a second OpenMP thread only adds spin-waits (10x slower on a busy 2-core machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _lif_ref(x):
    """Plain loop of the SpikingJelly LIFNode the paper uses: H = V + (X - V)/2, fire H >= 1, hard reset to 0."""
    v = torch.zeros_like(x[0])
    out = []
    for t in range(x.shape[0]):
        h = v + (x[t] - v) / 2.0
        s = (h >= 1.0).to(x.dtype)
        out.append(s)
        v = h * (1.0 - s)
    return torch.stack(out)


def _randomise_bn(module, seed=0):
    """Random affine parameters and running statistics, so eval-mode BN is a non-trivial affine map."""
    g = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.3)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(n, generator=g) * 0.5 + 0.5)


def _bn_eval(x, bn, dim):
    """Eval-mode BatchNorm along axis ``dim`` of ``x``, written out."""
    shape = [1] * x.dim()
    shape[dim] = -1
    r = lambda v: v.reshape(shape)  # noqa: E731
    return (x - r(bn.running_mean)) / torch.sqrt(r(bn.running_var) + bn.eps) * r(bn.weight) + r(bn.bias)


def _spikes(*shape, seed=0):
    return (torch.rand(*shape, generator=torch.Generator().manual_seed(seed)) < 0.4).float()


# ---------------------------------------------------------------------------
# Every builder
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("info", MODELS, ids=lambda i: i.name)
def test_forward_backward_reaches_every_parameter(info):
    torch.manual_seed(0)
    model = create_model(info.name, T=T, num_classes=5, **SMALL[info.name])
    assert isinstance(model, SpikingMLP) and model.T == T
    c = info.input_size[0]
    x = torch.randn(B, c, model.img_size, model.img_size)
    logits = model(x)
    assert logits.shape == (B, 5) and torch.isfinite(logits).all()
    F.cross_entropy(logits, torch.tensor([1, 3])).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, missing


def test_head_time_average_options_and_interface():
    torch.manual_seed(0)
    model = create_model("mlp_spe_mini", T=3, dim=6, head_lif=True).eval()
    assert isinstance(model.head_lif, LIF)
    feats = model.forward_features(model.encode(torch.randn(B, 1, 28, 28)))
    assert feats.shape == (3, B, 12, 7, 7) and set(feats.unique().tolist()) <= {0.0, 1.0}
    pooled = model.forward_head(feats, pre_logits=True)
    assert pooled.shape == (3, B, 12) and set(pooled.unique().tolist()) <= {0.0, 1.0}  # LIF after GAP
    per_step = model.forward_head(feats, per_step=True)
    torch.testing.assert_close(per_step.mean(0), model.forward_head(feats))  # logits averaged over T
    model.reset_classifier(4)
    assert model.forward_head(feats).shape == (B, 4) and model.num_classes == 4
    assert isinstance(create_model("mlp_spe_mini").head_lif, nn.Identity)  # released code: no LIF in the head


def test_neuron_constants_and_overrides():
    assert (MLP_NEURON.decay, MLP_NEURON.gain, MLP_NEURON.v_th, MLP_NEURON.v_reset) == (0.5, 0.5, 1.0, 0.0)
    assert MLP_NEURON.reset == "hard" and not MLP_NEURON.strict and MLP_NEURON.detach_reset
    assert MLP_NEURON.surrogate.name == "sigmoid" and MLP_NEURON.surrogate.alpha == 4.0
    model = create_model("mlp_spe_mini", dim=6, neuron_params={"v_th": 0.5})
    lifs = [m for m in model.modules() if isinstance(m, LIF)]
    # per stage: entry + (H, W, tok, ch, channel-MLP hidden) per block; SPE: LIF_A, LIF_B
    assert len(lifs) == 2 * (1 + 5) + 2
    assert all(m.p.v_th == 0.5 and m.p.decay == 0.5 for m in lifs)
    plif = create_model("mlp_spe_mini", dim=6, neuron="plif")
    assert sum(isinstance(m, PLIF) for m in plif.modules()) == len(lifs)
    assert not any(type(m) is LIF for m in plif.modules())


# ---------------------------------------------------------------------------
# Blocks against hand-written references (eval mode: BN is a fixed affine map)
# ---------------------------------------------------------------------------


def test_spe_cell_matches_hand_reference():
    torch.manual_seed(0)
    cin, cout, n = 4, 6, 2
    spe = SpikingPatchEncoding(cin, cout).eval()
    _randomise_bn(spe)
    x = _spikes(T, B, cin, 8, 8)

    def conv_bn(seq, inp, stride):
        conv, bn = seq[0].module, seq[1]
        y = F.conv2d(inp.flatten(0, 1), conv.weight, stride=stride, padding=1)
        return _bn_eval(y, bn, 1).unflatten(0, (T, B))

    a1, a2, a3 = (conv_bn(getattr(spe, f"branch{i}"), x, 2) for i in (1, 2, 3))
    node1 = a1
    node2 = a2 + conv_bn(spe.conv_a, _lif_ref(node1), 1)
    node3 = a3 + node1 + conv_bn(spe.conv_b, _lif_ref(node2), 1)
    out = spe(x)
    assert out.shape == (T, B, cout, 4, 4)
    torch.testing.assert_close(out, torch.cat([node1, node2, node3], 2), rtol=1e-5, atol=1e-5)
    assert n == cout // 3 and spe.branch1[0].module.out_channels == n


@pytest.mark.parametrize("identity_norm", [False, True])
def test_token_mixing_matches_hand_reference(identity_norm):
    torch.manual_seed(0)
    C, H, W = 3, 4, 5
    tok = TokenMixing(C, H, W, identity_norm=identity_norm).eval()
    _randomise_bn(tok)
    x = _spikes(T, B, C, H, W)
    wh, bh = tok.proj_h.module.weight[:, :, 0, 0], tok.proj_h.module.bias
    ww, bw = tok.proj_w.module.weight[:, :, 0, 0], tok.proj_w.module.bias
    # H-branch: one H x H matrix shared by every channel and column, BN per output row
    pre_h = torch.einsum("gh,tbchw->tbcgw", wh, x) + bh.view(1, 1, 1, H, 1)
    x_h = _lif_ref(_bn_eval(pre_h, tok.norm_h, 3))
    pre_w = torch.einsum("vw,tbchw->tbchv", ww, x) + bw.view(1, 1, 1, 1, W)
    x_w = _lif_ref(_bn_eval(pre_w, tok.norm_w, 4))
    ident = _lif_ref(_bn_eval(x, tok.identity[0], 2)) if identity_norm else x
    cat = torch.cat([ident, x_h, x_w], 2)
    fused = torch.einsum("oc,tbchw->tbohw", tok.fuse.module.weight[:, :, 0, 0], cat)
    torch.testing.assert_close(tok(x), _bn_eval(fused, tok.norm, 2), rtol=1e-5, atol=1e-5)
    assert tok.fuse.module.bias is None and tok.proj_h.module.bias is not None


@pytest.mark.parametrize("channel_norm", ["token", "channel"])
def test_channel_mlp_matches_hand_reference(channel_norm):
    torch.manual_seed(0)
    C, H, W = 4, 3, 2
    mlp = ChannelMLP(C, H * W, channel_norm=channel_norm).eval()
    _randomise_bn(mlp)
    x = _spikes(T, B, C, H, W)
    tokens = x.reshape(T, B, C, H * W).permute(0, 1, 3, 2)  # [T, B, N, C], row-major tokens
    bn1 = mlp.norm1 if channel_norm == "token" else mlp.norm1.bn
    bn2 = mlp.norm2 if channel_norm == "token" else mlp.norm2.bn
    axis = 2 if channel_norm == "token" else 3  # token position vs channel
    h = _lif_ref(_bn_eval(tokens @ mlp.fc1.weight.T + mlp.fc1.bias, bn1, axis))
    y = _bn_eval(h @ mlp.fc2.weight.T + mlp.fc2.bias, bn2, axis)
    torch.testing.assert_close(mlp(x), y.permute(0, 1, 3, 2).reshape(T, B, C, H, W), rtol=1e-5, atol=1e-5)


def test_per_token_bn_normalises_each_token_not_each_channel():
    torch.manual_seed(0)
    C, H, W = 4, 3, 3
    captured = {}
    rate = torch.linspace(0.05, 0.9, H * W).reshape(H, W)  # firing rate differs per token position
    spikes = (torch.rand(4, 8, C, H, W, generator=torch.Generator().manual_seed(1)) < rate).float()
    for kind in ("token", "channel"):
        mlp = ChannelMLP(C, H * W, channel_norm=kind).train()
        mlp.norm1.register_forward_hook(lambda m, i, o, k=kind: captured.__setitem__(k, o.detach()))
        mlp(spikes)
    assert isinstance(ChannelMLP(C, H * W).norm1, TokenBatchNorm1d)  # released default
    assert isinstance(ChannelMLP(C, H * W, channel_norm="channel").norm1.bn, TDBatchNorm1d)
    tok, ch = captured["token"], captured["channel"]  # [T, B, N, 3C]
    zeros_n, zeros_c = torch.zeros(H * W), torch.zeros(3 * C)
    # per token: statistics over (T, B, channels) for each token position
    torch.testing.assert_close(tok.mean(dim=(0, 1, 3)), zeros_n, atol=1e-5, rtol=0)
    torch.testing.assert_close(tok.var(dim=(0, 1, 3), unbiased=False), torch.ones(H * W), atol=1e-3, rtol=0)
    assert tok.mean(dim=(0, 1, 2)).abs().max() > 0.1  # channels are NOT individually centred
    # per channel: statistics over (T, B, tokens) for each channel
    torch.testing.assert_close(ch.mean(dim=(0, 1, 2)), zeros_c, atol=1e-5, rtol=0)
    assert ch.mean(dim=(0, 1, 3)).abs().max() > 0.1  # tokens are NOT individually centred


# ---------------------------------------------------------------------------
# Residual wiring
# ---------------------------------------------------------------------------


def _inject_constant_blocks(stage, c):
    """Token mixing outputs exactly ``c`` (last BN: gamma 0, beta c); channel MLP outputs exactly 0."""
    for block in stage.blocks:
        nn.init.zeros_(block.token.norm.weight)
        nn.init.constant_(block.token.norm.bias, c)
        nn.init.zeros_(block.channel.norm2.weight)
        nn.init.zeros_(block.channel.norm2.bias)


def _lif_inputs(stage):
    seen = []
    stage.downsample.register_forward_hook(lambda mod, i, o: seen.append(("m", o.detach())))
    stage.lif_entry.register_forward_pre_hook(lambda mod, i: seen.append(("entry", i[0].detach())))
    for j, block in enumerate(stage.blocks):
        block.lif_tok.register_forward_pre_hook(lambda mod, i, j=j: seen.append((f"tok{j}", i[0].detach())))
        block.lif_ch.register_forward_pre_hook(lambda mod, i, j=j: seen.append((f"ch{j}", i[0].detach())))
    return seen


@pytest.mark.parametrize("running_stream", [False, True])
def test_stage_entry_m_is_added_in_every_block(running_stream):
    torch.manual_seed(0)
    c = 0.25
    model = create_model("mlp_spe_mini", T=T, dim=6, depths=(1, 3), running_stream=running_stream).eval()
    stage = model.stages[1]
    _inject_constant_blocks(stage, c)
    seen = _lif_inputs(stage)
    model(torch.randn(B, 1, 28, 28))
    got = dict(seen)
    m = got["m"]
    torch.testing.assert_close(got["entry"], m)
    for j in range(3):
        # released: a_j = m + c in every block (m never updated); running stream: a_j = m + (j + 1) c
        expected = m + (j + 1) * c if running_stream else m + c
        torch.testing.assert_close(got[f"tok{j}"], expected)
        torch.testing.assert_close(got[f"ch{j}"], expected)  # channel shortcut = a (channel MLP gives 0)


def test_block_channel_shortcut_is_the_token_sum():
    torch.manual_seed(0)
    block = MLPBlock(3, 2, 2, mlp_ratio=3, channel_norm="token", identity_norm=False, neuron="lif",
                     params=MLP_NEURON).eval()
    _randomise_bn(block)
    x, m = _spikes(T, B, 3, 2, 2), torch.randn(T, B, 3, 2, 2)
    a = m + block.token(x)
    pre = a + block.channel(_lif_ref(a))
    spikes, out = block(x, m)
    torch.testing.assert_close(out, pre)
    torch.testing.assert_close(spikes, _lif_ref(pre))


# ---------------------------------------------------------------------------
# Parameter counts: formula from the authors' layer sizes (EMI-Group/mixer-snn), not from the model
# ---------------------------------------------------------------------------


def _bn(c):
    return 2 * c


def _block(C, side, ratio=3, identity_norm=False):
    N = side * side
    token = 2 * (side * side + side + _bn(side)) + 3 * C * C + _bn(C) + (_bn(C) if identity_norm else 0)
    channel = (C * ratio * C + ratio * C) + _bn(N) + (ratio * C * C + C) + _bn(N)
    return token + channel


def _spe(cin, cout):
    n = cout // 3
    return 3 * (9 * cin * n + _bn(n)) + 2 * (9 * n * n + _bn(n))


def _count(d, depths, img, in_chans=3, classes=1000, patch=4, spe=True):
    total, side, cin = in_chans * d * patch * patch + _bn(d), img // patch, d
    for i, n_blocks in enumerate(depths):
        C = d * 2 ** i
        if i > 0:
            total += _spe(cin, C) if spe else 4 * cin * C + _bn(C)
            side //= 2
        total += n_blocks * _block(C, side, identity_norm=not spe)
        cin = C
    return total + _bn(cin) + cin * classes + classes


def _n_params(model):
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name, d, depths, spe, readme_m", [
    ("mlp_spe_t", 78, (2, 8, 14, 2), True, 25),
    ("mlp_spe_s", 96, (2, 8, 14, 2), True, 38),
    ("mlp_s", 96, (2, 8, 14, 2), False, 34),
    ("mlp_spe_b", 108, (2, 10, 24, 2), True, 66),
])
def test_parameter_counts_match_formula_and_readme(name, d, depths, spe, readme_m):
    n = _n_params(create_model(name))
    assert n == _count(d, depths, 224, spe=spe)
    # README: 25M, 38M, 34M, 66M; ours 25.23M, 37.98M, 34.51M, 65.61M (MLP-S sits on the rounding edge)
    assert abs(n / 1e6 - readme_m) < 0.55


def test_mini_parameter_count():
    n = _n_params(create_model("mlp_spe_mini", dim=9, depths=(2, 1)))
    assert n == _count(9, (2, 1), 28, in_chans=1, classes=10, patch=2)


# ---------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------


def test_clear_errors():
    with pytest.raises(ValueError, match="divisible by 3.*multiple of 3"):
        SpikingPatchEncoding(4, 8)
    with pytest.raises(ValueError, match="divisible by 3"):
        create_model("mlp_spe_b", dim=80, img_size=32)  # the authors' "tiny" config
    with pytest.raises(ValueError, match="img_size=100 must be divisible by"):
        create_model("mlp_spe_t", img_size=100)
    with pytest.raises(ValueError, match="channel_norm"):
        create_model("mlp_spe_mini", channel_norm="layer")
    model = create_model("mlp_spe_mini", T=T, dim=6)
    with pytest.raises(ValueError, match="img_size=32"):
        model(torch.randn(B, 1, 32, 32))  # built for 28 (per-token BN, token mixing)
    with pytest.raises(ValueError, match="in_chans=3"):
        model(torch.randn(B, 3, 28, 28))
    with pytest.raises(ValueError, match=r"T=2"):
        model(torch.randn(3, B, 1, 28, 28))
    with pytest.raises(ValueError):
        model(torch.randn(B, 28, 28))
    with pytest.raises(ValueError, match="forward_features expects a sequence"):
        model.forward_features(torch.randn(B, 1, 28, 28))


def test_small_image_variant_for_cifar():
    model = create_model("mlp_spe_mini", in_chans=3, img_size=32, depths=(1, 1, 1), dim=6, T=T)
    assert model(torch.randn(B, 3, 32, 32)).shape == (B, 10)
    assert [s.blocks[0].channel.norm1.num_features for s in model.stages] == [256, 64, 16]
