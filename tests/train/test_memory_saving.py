"""Memory-saving mode: same gradients and BN statistics as default autograd, fewer saved bytes.

Reference for every comparison: the same model (a deep copy, same seed and
input) trained one step with default autograd. Gradients and buffers must be
bit-identical (CPU, deterministic ops); saved bytes are measured with
``saved_tensors_hooks`` (:class:`SavedTensorMeter`), never wall time.
"""

import copy

import pytest
import torch
from torch import nn

from spikevision.layers.temporal import TimeFolded
from spikevision.models import create_model
from spikevision.models.ms_resnet import MSBlock
from spikevision.neuron import LIF
from spikevision.train.memory_saving import (
    _packer_of,
    RecomputedBlock,
    SavedTensorMeter,
    disable_memory_saving,
    enable_memory_saving,
    is_packing_spikes,
    memory_saving_modules,
)


def _randomise_bn(model: nn.Module) -> None:
    """Non-zero last-BN gammas, so blocks are not the identity at init and gradients are rich."""
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.affine:
            nn.init.uniform_(m.weight, 0.4, 1.2)
            nn.init.uniform_(m.bias, -0.1, 0.1)


def _step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, segments=()) -> tuple[torch.Tensor, int]:
    with SavedTensorMeter(model, segments=segments) as meter:
        loss = nn.functional.cross_entropy(model(x), y)
    loss.backward()
    return loss.detach(), meter.bytes


def _pair(name: str, **kwargs):
    torch.manual_seed(0)
    ref = create_model(name, **kwargs)
    _randomise_bn(ref)
    return ref, copy.deepcopy(ref)


def _assert_identical(ref: nn.Module, saving: nn.Module) -> None:
    for (n, p), q in zip(ref.named_parameters(), saving.parameters()):
        assert p.grad is not None and q.grad is not None, n
        assert torch.equal(p.grad, q.grad), f"{n}: max diff {(p.grad - q.grad).abs().max().item()}"
    for (n, b), c in zip(ref.named_buffers(), saving.buffers()):
        assert torch.equal(b, c), n


def test_ms_resnet20_gradients_and_bn_stats_exact_and_saved_bytes_drop():
    ref, saving = _pair("ms_resnet20", T=4, num_classes=10)
    names = enable_memory_saving(saving)
    assert names == [f"stages.{s}.{b}" for s in range(3) for b in range(3)] == list(ref.residual_blocks())
    assert all(isinstance(saving.get_submodule(n), RecomputedBlock) for n in names)
    assert not any("forward" in vars(m) for m in saving.modules())  # wrapped, never patched
    x, y = torch.randn(3, 3, 16, 16), torch.tensor([1, 4, 9])
    # count block inputs in both modes: that is what the recomputed segments keep
    seg_ref = [ref.get_submodule(n) for n in names]
    seg_saving = [saving.get_submodule(n) for n in names]
    loss_ref, bytes_ref = _step(ref, x, y, seg_ref)
    loss_saving, bytes_saving = _step(saving, x, y, seg_saving)
    assert torch.equal(loss_ref, loss_saving)
    _assert_identical(ref, saving)  # includes running stats and num_batches_tracked
    assert all(int(m.num_batches_tracked) == 1 for m in saving.modules() if isinstance(m, nn.BatchNorm2d))
    assert bytes_saving < 0.4 * bytes_ref, (bytes_saving, bytes_ref)


@pytest.mark.parametrize("mode, pack", [("spikes", False), ("blocks", True), ("stages", False)])
def test_spike_packing_and_stages_exact_with_fewer_saved_bytes(mode, pack):
    """With dense convolutions (the GPU path, or use_spike_conv(False)): on CPU in training the event-driven
    SpikeConv2d already keeps its spike input as bits, which leaves the "spikes" mode nothing to pack there."""
    from spikevision.layers.spike_conv import use_spike_conv

    ref, saving = _pair("ms_resnet20", T=3, num_classes=10)
    enable_memory_saving(saving, mode, pack_spikes=pack)
    assert is_packing_spikes(saving) == (mode == "spikes" or pack)
    x, y = torch.randn(2, 3, 16, 16), torch.tensor([2, 5])
    with use_spike_conv(False):
        loss_ref, bytes_ref = _step(ref, x, y)
        loss_saving, bytes_saving = _step(saving, x, y)
    assert torch.equal(loss_ref, loss_saving)
    _assert_identical(ref, saving)
    if mode == "spikes":
        # per block the convs' float32 spike inputs (2 of about 4.x saved tensors) shrink 4x
        assert 0.5 * bytes_ref < bytes_saving < 0.8 * bytes_ref, (bytes_saving, bytes_ref)
    else:
        assert bytes_saving < 0.4 * bytes_ref
    assert "forward" not in vars(saving)  # hooks, not a replaced forward
    with pytest.raises(ValueError):  # a failing forward leaves no saved-tensor hooks behind
        saving(torch.randn(2, 1, 16, 16))
    if is_packing_spikes(saving):
        assert _packer_of(saving).context is None
        assert not any(k.startswith("_spikevision") for k in vars(saving))  # the hooks are its only record
    disable_memory_saving(saving)
    assert not is_packing_spikes(saving) and not saving._forward_hooks and not saving._forward_pre_hooks


def test_spike_packing_leaves_non_spike_tensors_alone():
    """Only neuron outputs are packed: an analog tensor saved by the same conv stays float."""
    torch.manual_seed(0)
    net = nn.Sequential(LIF(), TimeFolded(nn.Linear(6, 4)))
    analog = nn.Sequential(TimeFolded(nn.Linear(6, 6)), TimeFolded(nn.Linear(6, 4)))
    x = torch.randn(2, 3, 6) + 0.8
    for model in (net, analog):
        reference = copy.deepcopy(model)
        enable_memory_saving(model, "spikes")
        with SavedTensorMeter(model) as packed:
            model(x).sum().backward()
        with SavedTensorMeter(reference) as plain:
            reference(x).sum().backward()
        for p, q in zip(model.parameters(), reference.parameters()):
            assert torch.equal(p.grad, q.grad)
        if model is net:  # the Linear saves the spikes [2, 3, 6]: 36 float32 -> 36 int8
            assert plain.bytes - packed.bytes == 36 * 3
        else:
            assert packed.bytes == plain.bytes


def test_plain_checkpoint_would_update_bn_twice():
    """The failure the buffer swap prevents: naive recomputation counts a batch twice."""
    torch.manual_seed(0)
    block = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())
    x = torch.randn(2, 2, 6, 6, requires_grad=True)
    out = torch.utils.checkpoint.checkpoint(block, x, use_reentrant=False)
    out.sum().backward()
    assert int(block[1].num_batches_tracked) == 2
    torch.manual_seed(0)
    block = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())
    enable_memory_saving(nn.Sequential(block), modules=["0"])
    block(x).sum().backward()
    assert int(block[1].num_batches_tracked) == 1


def test_dropout_inside_a_segment_gets_the_same_mask():
    torch.manual_seed(0)
    net = nn.Sequential(
        TimeFolded(nn.Linear(8, 16)), nn.Dropout(0.5), LIF(), TimeFolded(nn.Linear(16, 3)), nn.Dropout(0.3),
    )
    saving = copy.deepcopy(net)
    enable_memory_saving(saving, modules=["0", "1", "2"])
    x = torch.randn(3, 4, 8) + 0.5
    grads = []
    for model in (net, saving):
        torch.manual_seed(123)
        model(x).pow(2).sum().backward()
        grads.append([p.grad.clone() for p in model.parameters()])
    for g, h in zip(*grads):
        assert torch.equal(g, h)


@pytest.mark.parametrize("name, kwargs, size", [
    ("sresnet20", dict(T=2, num_classes=10, width=4), 16),  # BNTT buffers per time step
    ("mlp_spe_mini", dict(T=2, num_classes=10), 28),  # blocks with two inputs and two outputs
])
def test_other_families_exact(name, kwargs, size):
    ref, saving = _pair(name, **kwargs)
    assert enable_memory_saving(saving)
    c = 1 if name == "mlp_spe_mini" else 3
    x, y = torch.randn(2, c, size, size), torch.tensor([0, 3])
    loss_ref, _ = _step(ref, x, y)
    loss_saving, _ = _step(saving, x, y)
    assert torch.equal(loss_ref, loss_saving)
    _assert_identical(ref, saving)


def test_stages_mode_disable_and_state_dict_unchanged():
    torch.manual_seed(0)
    model = create_model("ms_resnet20", T=2)
    keys = list(model.state_dict())
    assert enable_memory_saving(model, "stages") == ["stages.0", "stages.1", "stages.2"]
    assert list(model.state_dict()) == keys
    enable_memory_saving(model, "blocks")
    assert list(model.state_dict()) == keys  # same keys, same order: checkpoints load in either mode
    plain = create_model("ms_resnet20", T=2)
    plain.load_state_dict(model.state_dict())  # saved in memory-saving mode, loaded in the default one
    model.load_state_dict({k: v + 1 for k, v in plain.state_dict().items()})  # and the other way round
    assert torch.equal(model.get_submodule("stages.0.0").block.conv1.module.weight,
                       plain.stages[0][0].conv1.module.weight + 1)
    assert enable_memory_saving(model, "blocks")[0] == "stages.0.0"  # re-enabling replaces, never nests
    assert memory_saving_modules(model) == [f"stages.{s}.{b}" for s in range(3) for b in range(3)]
    assert len(disable_memory_saving(model)) == 9
    assert memory_saving_modules(model) == [] and "forward" not in vars(model.stages[0][0])
    with torch.no_grad():  # inference path runs the module directly
        enable_memory_saving(model)
        assert model(torch.randn(1, 3, 8, 8)).shape == (1, 10)


def test_bad_input_raises_clear_errors():
    model = create_model("ms_resnet20", T=2)
    with pytest.raises(ValueError, match="unknown memory-saving mode"):
        enable_memory_saving(model, "layers")
    with pytest.raises(ValueError, match="no submodule named"):
        enable_memory_saving(model, modules=["stages.9"])
    with pytest.raises(ValueError, match="nested segments"):
        enable_memory_saving(model, modules=["stages.0", "stages.0.1"])
    with pytest.raises(ValueError, match="residual_blocks"):
        enable_memory_saving(nn.Sequential(nn.Linear(2, 2)))
    with pytest.raises(ValueError, match="no residual block"):
        enable_memory_saving(create_model("spiking_cnn_mini"))
    with pytest.raises(TypeError, match="nn.Module"):
        enable_memory_saving("ms_resnet20")
    shared = nn.Sequential(nn.Linear(2, 2))
    with pytest.raises(ValueError, match="also reachable"):
        enable_memory_saving(nn.ModuleDict({"a": shared, "b": shared}), modules=["a"])
    assert {type(b) for b in model.residual_blocks().values()} == {MSBlock}


def test_saved_tensor_meter_counts_unique_storages_by_hand():
    a = torch.randn(10, requires_grad=True)
    b = torch.randn(10, requires_grad=True)
    with SavedTensorMeter() as meter:
        (a * b).sum()  # mul saves a and b: 2 x 10 x 4 bytes
        (a * a).sum()  # a again: same storage, not counted twice
    assert meter.bytes == 80
    with SavedTensorMeter(exclude=[a]) as meter:  # e.g. parameters
        (a * b).sum()
    assert meter.bytes == 40


def test_blocks_mode_exact_under_cpu_autocast():
    ref, saving = _pair("ms_resnet20", T=2, num_classes=10)
    enable_memory_saving(saving)
    x, y = torch.randn(2, 3, 8, 8), torch.tensor([1, 2])
    for model in (ref, saving):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
    _assert_identical(ref, saving)
