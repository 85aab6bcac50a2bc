"""The native runtime (generated C, compiled on first use) is bit-exact with the Python integer engine:
logits and every neuron's spike train, over the deployable layer types, int16 and int8 weights."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from deploy_nets import MixedNet, MSNet, randomize_bn, small_cnn
from spikevision.deploy.engine import EngineConfig, IntNeuron, compile_integer
from spikevision.deploy.targets.c.dense import exact_double_limit
from spikevision.deploy.targets.native import compile_native
from spikevision.deploy.engine.trace import batch_head
from spikevision.deploy.ir import Concat, Neuron, Permute, ProgramError, Synapse, lower
from spikevision.deploy.ir.ranges import buffer_ranges
from spikevision.deploy.ir.schedule import step_plan
from spikevision.models import create_model

NETS = {
    "cnn_avg": (lambda: small_cnn(T=3, c=6), (1, 8, 8)),
    "cnn_max": (lambda: small_cnn(T=2, c=6, pool=nn.MaxPool2d(2)), (1, 8, 8)),
    "ms_net": (lambda: MSNet(), (2, 8, 8)),  # narrow maps: dense convs by output position
    "ms_net_16": (lambda: MSNet(), (2, 16, 16)),  # a 16-wide stem: dense conv by output plane
    "mixed": (lambda: MixedNet(), (2, 12, 12)),
    # conv + pooling fused (the first conv dense, the second event-driven), max and average
    "spiking_cnn_mini": (lambda: create_model("spiking_cnn_mini", widths=(4, 8)), (1, 28, 28)),
    "spiking_cnn_mini_avg": (lambda: create_model("spiking_cnn_mini", widths=(4, 8), pool="avg"), (1, 28, 28)),
}
#: the families the C target learned last (int16 only: their op types do not depend on the weight width, and each
#: program takes seconds to compile): the spiking MLP (token mixing as transposes, SPE's and the fuse step's
#: concatenations), GAC (the encoder's stem, SCA and gate: TA's MLP, the product, the sigmoid table, the spikes'
#: select) and an event-camera model at its own T (input [T, B, 2, H, W])
ZOO_NETS = {
    "mlp_spe_mini": (lambda: create_model("mlp_spe_mini", T=2, dim=6), (1, 28, 28)),
    "gac_ms_resnet_mini": (lambda: create_model("gac_ms_resnet_mini", T=2, layers=(1, 1), widths=(4, 8)),
                           (1, 16, 16)),
    "ms_resnet20_dvs": (lambda: create_model("ms_resnet20_dvs", T=3), (3, 2, 16, 16)),
}


def _inputs(name: str, shape, batch: int) -> torch.Tensor:
    if name.endswith("_dvs"):  # event counts per pixel and polarity, time-major
        return torch.randint(0, 3, (shape[0], batch, *shape[1:])).float()
    return torch.rand(batch, *shape)


def _model(name: str, seed: int = 0):
    torch.manual_seed(seed)
    build, shape = {**NETS, **ZOO_NETS}[name]
    return randomize_bn(build(), seed=seed, gamma=(0.8, 1.6)), shape


@pytest.mark.filterwarnings("ignore:Using padding=.same.")
@pytest.mark.parametrize("cfg", [EngineConfig(), EngineConfig(weight_bits=8, leak="shift_add")], ids=["int16", "int8"])
@pytest.mark.parametrize("name", list(NETS))
def test_native_logits_bit_exact(name, cfg):
    _check_logits(name, cfg)


@pytest.mark.parametrize("name", list(ZOO_NETS))
def test_every_family_is_bit_exact(name):
    _check_logits(name, EngineConfig())


def _check_logits(name: str, cfg: EngineConfig) -> None:
    model, shape = _model(name)
    x = _inputs(name, shape, 6)
    im = compile_integer(model, batch_head(x, 2), cfg)
    native = compile_native(im, x)
    with torch.no_grad():
        ref = im.forward_q(x)
        assert torch.equal(native.logits_q(x), ref)
        assert torch.equal(native(x), im(x))
    # a silent input, a saturated one and one too large for the dense convs' exact float64 loop (the int64 one)
    ops = native.program.ops
    for value in (0.0, 4.0, 2.0**14):
        edge = torch.full_like(batch_head(x, 2), value)
        with torch.no_grad():
            assert torch.equal(native.logits_q(edge), im.forward_q(edge))
    first = [op for op in ops if isinstance(op, Synapse) and op.x.storage == native.program.input.storage]
    if not first[0].event and first[0].syn.kind == "conv2d" and cfg.weight_bits == 16:  # int8: a wider limit
        assert int(im.quantize(torch.full_like(x, 2.0**14)).max()) > exact_double_limit(first[0])
    plan = step_plan(native.program)  # only GAC's gate (its TA mixes the steps) rules out step by step
    assert ("GAC's gate" in plan.blocker) == name.startswith("gac"), plan.blocker
    assert plan.blocker or len(plan.phase) == len(ops) and "step" in plan.phase
    if name.startswith("spiking_cnn_mini"):  # both convs carry their pooling: no full-size conv output is stored
        fused = [op.pool.layer for op in ops if isinstance(op, Synapse) and op.pool]
        assert fused == ["stages.0.pool", "stages.1.pool"]
    if name == "mlp_spe_mini":
        assert sum(isinstance(op, Permute) for op in ops) >= 4 and any(isinstance(op, Concat) for op in ops)
    if name.endswith("_dvs"):
        assert native.program.input.time and native.program.input.steps == 3


@pytest.mark.filterwarnings("ignore:Using padding=.same.")
@pytest.mark.parametrize("name", ["ms_net", "mixed"])
def test_native_spike_trains_bit_exact(name):
    """Every neuron of the runtime fires exactly where the Python engine's does, at every step."""
    model, shape = _model(name, seed=1)
    x = torch.rand(1, *shape)
    im = compile_integer(model, x, EngineConfig())
    native = compile_native(im, x, share_buffers=False)
    seen: dict[str, torch.Tensor] = {}
    hooks = [m.register_forward_hook(lambda mod, a, out, n=n: seen.__setitem__(n, out))
             for n, m in im.net.named_modules() if isinstance(m, IntNeuron)]
    with torch.no_grad():
        im.forward_q(x)
    for h in hooks:
        h.remove()
    bufs = native.buffers(x)
    # the intervals that narrow buffers to int32 hold every value the run stored (input range: this sample's)
    xq = im.quantize(x)
    ranges = buffer_ranges(native.program, (int(xq.min()), int(xq.max())))
    for name, iv in ranges.items():
        if iv is not None and name in bufs:
            assert iv[0] <= int(bufs[name].min()) and int(bufs[name].max()) <= iv[1], name
    assert sum(iv is not None for iv in ranges.values()) >= 3
    neurons = [op for op in native.program.ops if isinstance(op, Neuron)]
    assert len(neurons) == len(seen) > 0
    for op in neurons:
        ref = (seen[op.layer][:, 0] != 0).to(torch.uint8).reshape(op.out.steps, -1)
        got = bufs[op.out.storage].reshape(op.out.steps, -1)
        assert torch.equal(got, ref), op.layer
        assert 0 < int(ref.sum()) < ref.numel() or op.layer == "lif4", f"{op.layer}: no spike structure to test"


def test_batch_split_over_threads_equals_one_thread():
    model, shape = _model("cnn_max")
    x = torch.rand(9, *shape)
    im = compile_integer(model, x[:2])
    native = compile_native(im, x[:1])
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = native.logits_q(x)
        torch.set_num_threads(3)
        three = native.logits_q(x)
    finally:
        torch.set_num_threads(before)
    assert torch.equal(one, three)
    with pytest.raises(ValueError, match="input values per sample"):
        native.forward_q(torch.zeros(2, 5, dtype=torch.int64))


def test_unsupported_layers_are_refused_by_name():
    class Gate(nn.Module):  # a product of two tensors (GAC's gate): runs as a float fallback
        def __init__(self):
            super().__init__()
            self.att = nn.Parameter(torch.rand(6, 1, 1))

        def forward(self, x):
            return torch.sigmoid(x * self.att) * x

    gated = randomize_bn(small_cnn(c=6))
    gated.insert(4, Gate())
    x = torch.rand(1, 1, 8, 8)
    with pytest.raises(ProgramError, match="'4' runs as a float fallback"):
        lower(compile_integer(gated, x), x)


FASHION_MNIST = "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz"


@pytest.mark.skipif(not __import__("os").path.isfile(FASHION_MNIST), reason="needs dataset-fashion-mnist")
def test_shipped_spiking_mlp_is_bit_exact_on_real_images():
    """The spiking MLP's head takes a mean of a mean (tokens, then time). The engine computes it as one exact
    quotient, as the C code does: with two float64 roundings, test image 45 came out one unit apart."""
    import dataclasses

    from spikevision.data import build_loader
    from spikevision.deploy.source import load_source

    src = load_source("mlp_spe_mini", pretrained="fashion_mnist")
    x, _ = next(iter(build_loader(dataclasses.replace(src.data, eval_batch_size=64, device="cpu", num_workers=0),
                                  "test")))
    im = compile_integer(src.model, x[:2])
    native = compile_native(im, x)
    with torch.no_grad():
        assert torch.equal(native.logits_q(x), im.forward_q(x))
