"""Memory-saving training: recompute residual blocks in the backward pass, keep saved spikes as int8.

(Data sets held in memory are :mod:`spikevision.data.in_memory`.)

Activation checkpointing (Chen, Xu, Zhang, Guestrin, "Training Deep Nets with
Sublinear Memory Cost", arXiv 1604.06174) applied per residual block. A deep
SNN keeps, for every layer, activations of shape ``[T, B, C, H, W]`` for BPTT,
so training memory grows linearly with ``T`` times depth. With memory saving
on, each wrapped block keeps only its input; everything inside it (neuron
membranes, spikes fed to convs, BN inputs) is recomputed during backward, one
block at a time. Cost: about one extra forward pass of the wrapped blocks.

Exactness. Gradients are identical to the default mode (bit for bit on CPU in
the tests), because the recomputation replays the same deterministic ops:

* BatchNorm (and any other buffer, e.g. BNTT statistics) is updated **once**
  per step: during recomputation every buffer of the wrapped module is swapped
  for a scratch copy, so running statistics and ``num_batches_tracked`` are
  left exactly as the first forward set them. Training-mode BN normalises with
  batch statistics, so the recomputed outputs do not depend on the swap.
* Dropout and Poisson draws inside a block get the same random numbers
  (``preserve_rng_state=True``: the CPU and CUDA RNG states are replayed).
* ``torch.utils.checkpoint`` with ``use_reentrant=False``: handles autocast
  (its state is replayed; tested on CPU with bfloat16), inputs that do not
  require grad, blocks with several inputs or outputs (the spiking MLP's
  block) and, per PyTorch's documentation, DDP (not tested here).

A second, independent saving needs no recomputation: ``mode="spikes"`` (or
``pack_spikes=True`` on top of ``"blocks"``) keeps the spike tensors that
convs and linears save for their weight gradients as int8 instead of float32.
Spikes are exactly 0 or 1, so this is lossless; it removes about a third of
an MS-ResNet's saved activations for two cheap copies per layer.

Use::

    model = create_model("ms_resnet110", T=16)
    enable_memory_saving(model)             # wraps every residual block
    ...train as usual...
    disable_memory_saving(model)            # back to the default mode

Which blocks: the model says, through ``model.residual_blocks()`` (the
:class:`~spikevision.models.SpikingClassifier` interface); any other module
names them with ``modules=[...]``. Each is replaced, in its parent, by a
:class:`RecomputedBlock` holding it: nothing is replaced on an instance, and
``print(model)`` shows which blocks are recomputed. The wrapper keeps the
block's state-dict keys (``stages.0.1.conv1...``, without the wrapper's
``block.``), so checkpoints load in either mode; ``named_parameters()`` does
show the ``block.`` level. Spike packing adds forward hooks to the model and
its neurons (:class:`~spikevision.neuron.SpikingNeuron` modules) and nothing
else: the hooks are its only record on the model.
"""

from __future__ import annotations

import contextlib
import weakref
from typing import Any, Iterable, Iterator, Literal, Mapping, Sequence

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from spikevision.neuron.modules import SpikingNeuron

__all__ = [
    "MEMORY_SAVING_MODES",
    "RecomputedBlock",
    "enable_memory_saving",
    "disable_memory_saving",
    "memory_saving_modules",
    "is_packing_spikes",
    "SavedTensorMeter",
]

MemoryMode = Literal["none", "spikes", "blocks", "stages"]
#: ``"none"``: default autograd; ``"spikes"``: store saved spike tensors as int8
#: (no recomputation); ``"blocks"``: recompute each residual block;
#: ``"stages"``: recompute each stage (the module that runs a run of blocks) as one segment.
MEMORY_SAVING_MODES: tuple[str, ...] = ("none", "spikes", "blocks", "stages")


@contextlib.contextmanager
def _scratch_buffers(module: nn.Module) -> Iterator[None]:
    """Swap every buffer of ``module`` for a copy for the duration of the block.

    Used during recomputation so that BatchNorm running statistics (and any
    other buffer a forward pass updates) are not updated a second time. The
    originals are put back untouched; nothing is modified in place, so autograd
    version counters of tensors saved in the first forward stay valid.
    """
    swapped: list[tuple[nn.Module, str, Tensor]] = []
    for sub in module.modules():
        for name, buf in list(sub._buffers.items()):
            if buf is not None:
                swapped.append((sub, name, buf))
                sub._buffers[name] = buf.clone()
    try:
        yield
    finally:
        for sub, name, buf in swapped:
            sub._buffers[name] = buf


_WRAPPED = "block."  # the wrapper's own level in parameter names, left out of its state dict


def _drop_wrapper_level(module: nn.Module, state_dict: dict[str, Any], prefix: str, local_metadata: Any) -> None:
    """State-dict post-hook: ``<prefix>block.<key>`` -> ``<prefix><key>``, order kept (the block's keys are last)."""
    inner = prefix + _WRAPPED
    moved = [(k, state_dict.pop(k)) for k in [k for k in state_dict if k.startswith(inner)]]
    for k, v in moved:
        state_dict[prefix + k[len(inner):]] = v


def _add_wrapper_level(module: nn.Module, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
    """Load pre-hook: the inverse of :func:`_drop_wrapper_level`."""
    for k in [k for k in state_dict if k.startswith(prefix) and not k.startswith(prefix + _WRAPPED)]:
        state_dict[prefix + _WRAPPED + k[len(prefix):]] = state_dict.pop(k)


class RecomputedBlock(nn.Module):
    """Runs ``block`` under activation checkpointing: only its inputs are kept, the rest is recomputed in backward.

    Running statistics are updated once per step (the recomputation runs on
    scratch copies of the block's buffers) and random draws repeat (the RNG
    state is replayed). Without autograd (``torch.no_grad()``, evaluation)
    the block runs as usual. State-dict keys are the block's own, as if
    there were no wrapper.

    Args:
        block: the module to recompute (any signature; several inputs and outputs are fine).
    """

    def __init__(self, block: nn.Module) -> None:
        super().__init__()
        self.block = block
        self.register_state_dict_post_hook(_drop_wrapper_level)
        self.register_load_state_dict_pre_hook(_add_wrapper_level)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        if not torch.is_grad_enabled():  # inference: nothing to save, run as usual
            return self.block(*args, **kwargs)
        calls = 0

        def run(*a: Any, **kw: Any) -> Any:
            nonlocal calls
            calls += 1
            if calls == 1:  # the real forward: updates running statistics once
                return self.block(*a, **kw)
            with _scratch_buffers(self.block):  # recomputation in backward
                return self.block(*a, **kw)

        return checkpoint(run, *args, use_reentrant=False, preserve_rng_state=True, **kwargs)


class _PackedSpikes:
    __slots__ = ("data", "dtype")

    def __init__(self, data: Tensor, dtype: torch.dtype) -> None:
        self.data, self.dtype = data, dtype


class _SpikePacker:
    """Saved-tensor hooks that keep neuron outputs (exact 0/1 floats) as int8.

    A tensor is packed only if its storage is that of a neuron module's output
    in the current forward, checked through a weak reference (a live tensor's
    memory cannot be reused, so a stale pointer never matches). Convolutions and
    linears save their spike inputs for the weight gradient; this cuts those
    from 4 bytes (float32) to 1 byte per element, losslessly.
    """

    def __init__(self) -> None:
        self.spikes: dict[int, weakref.ref] = {}
        self.handles: list[Any] = []
        self.observers: list[Any] = []  # SavedTensorMeter: sees what is actually stored
        self.context: Any = None  # the saved_tensors_hooks of the forward in progress

    def record(self, module: nn.Module, inputs: Any, output: Any) -> None:
        if isinstance(output, Tensor) and output.is_floating_point():
            self.spikes[output.untyped_storage().data_ptr()] = weakref.ref(output)

    def pack(self, t: Tensor) -> Any:
        ptr = t.untyped_storage().data_ptr()
        ref = self.spikes.get(ptr)
        src = ref() if ref is not None else None
        if src is None or src.untyped_storage().data_ptr() != ptr or not t.is_floating_point():
            stored = t
        else:
            stored = t.to(torch.int8)
        for observe in self.observers:
            observe(stored)
        return t if stored is t else _PackedSpikes(stored, t.dtype)

    @staticmethod
    def unpack(obj: Any) -> Tensor:
        return obj.data.to(obj.dtype) if isinstance(obj, _PackedSpikes) else obj

    def enter(self, module: nn.Module, args: Any) -> None:
        """Forward pre-hook on the model: tensors saved in this forward go through :meth:`pack`."""
        self.context = (torch.autograd.graph.saved_tensors_hooks(self.pack, self.unpack) if torch.is_grad_enabled()
                        else contextlib.nullcontext())
        self.context.__enter__()

    def exit(self, module: nn.Module, args: Any, output: Any) -> None:
        """Forward hook on the model (run even when the forward raises): leave the context, forget the spikes."""
        context, self.context = self.context, None
        if context is not None:
            context.__exit__(None, None, None)
        self.spikes.clear()


def _packer_of(model: nn.Module) -> _SpikePacker | None:
    """The packer whose hooks are on ``model``, if any: the hooks are the only record (nothing is set on the model)."""
    for hook in model._forward_pre_hooks.values():
        owner = getattr(hook, "__self__", None)
        if isinstance(owner, _SpikePacker):
            return owner
    return None


def _enable_packing(model: nn.Module) -> None:
    packer = _SpikePacker()
    packer.handles = [m.register_forward_hook(packer.record) for m in model.modules()
                      if isinstance(m, SpikingNeuron)]
    packer.handles += [model.register_forward_pre_hook(packer.enter),
                       model.register_forward_hook(packer.exit, always_call=True)]


def _disable_packing(model: nn.Module) -> None:
    packer = _packer_of(model)
    if packer is None:
        return
    for h in packer.handles:
        h.remove()


def is_packing_spikes(model: nn.Module) -> bool:
    """Whether ``model`` stores saved spikes as int8 (``mode="spikes"`` or ``pack_spikes=True``)."""
    return _packer_of(model) is not None


def _replace(model: nn.Module, name: str, new: nn.Module) -> None:
    """Put ``new`` in the slot ``name`` of its parent (an attribute, or an entry of a Sequential/ModuleList)."""
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent), child, new)


def _check_single_reference(model: nn.Module, names: Sequence[str]) -> None:
    """A module reachable under two names would be recomputed through one and not the other: refuse."""
    targets = {id(model.get_submodule(n)): n for n in names}
    seen: dict[int, str] = {}
    for name, m in model.named_modules(remove_duplicate=False):
        if id(m) in targets and seen.setdefault(id(m), name) != name:
            raise ValueError(f"{targets[id(m)]} is also reachable as {name}; memory saving wraps a module in one "
                             "place, so it must have one parent")


def _model_blocks(model: nn.Module) -> list[str]:
    """The names of ``model.residual_blocks()``."""
    if not callable(getattr(model, "residual_blocks", None)):
        raise ValueError(f"{type(model).__name__} does not say which modules are its residual blocks: give it a "
                         "residual_blocks() method, or pass modules=[...] (qualified names)")
    blocks: Mapping[str, nn.Module] = model.residual_blocks()
    if not blocks:
        raise ValueError(f"{type(model).__name__} has no residual block (its residual_blocks() is empty); "
                         "pass modules=[...] (qualified names) to recompute other modules")
    return list(blocks)


def _find_stages(model: nn.Module, block_names: Sequence[str]) -> list[str]:
    """The callable parent of each block run: the parent, or the grandparent of a ModuleList."""
    modules = dict(model.named_modules())
    stages: list[str] = []
    for name in block_names:
        parent = name.rpartition(".")[0]
        if isinstance(modules[parent], nn.ModuleList):
            parent = parent.rpartition(".")[0]
        if parent == "":
            raise ValueError(
                "mode='stages' needs blocks grouped in stage modules, but the blocks of "
                f"{type(model).__name__} hang off the model itself; use mode='blocks'"
            )
        if parent not in stages:
            stages.append(parent)
    return stages


def enable_memory_saving(
    model: nn.Module,
    mode: MemoryMode = "blocks",
    *,
    modules: Iterable[str] | None = None,
    pack_spikes: bool = False,
) -> list[str]:
    """Recompute residual blocks (or listed submodules) in backward instead of storing activations.

    Args:
        model: any ``nn.Module`` (a spikevision classifier or your own).
        mode: ``"blocks"`` (default): each residual block is one recomputed
            segment, keeping one ``[T, B, C, H, W]`` tensor per block;
            ``"stages"``: each stage (the parent of a run of blocks) is one segment (fewer kept tensors but a
            whole stage's activations live at once during its recomputation;
            rarely better); ``"spikes"``: no recomputation, only
            ``pack_spikes``; ``"none"``: undo, same as
            :func:`disable_memory_saving`.
        modules: qualified submodule names (as in ``model.named_modules()``) to
            wrap instead of the model's ``residual_blocks()``; ``mode`` is then
            ignored unless it is ``"none"``.
        pack_spikes: also keep the spike tensors that layers save for backward
            (conv and linear inputs) as int8 instead of float: exact (spikes are
            0/1), 4x smaller for float32, one cheap copy each way. Applies
            outside recomputed segments (inside them nothing is saved anyway).
            Spikes are recognised as outputs of neuron modules (:class:`~spikevision.neuron.SpikingNeuron`).

    Returns:
        The qualified names of the wrapped modules (in model order).

    Raises:
        ValueError: unknown ``mode``; a name in ``modules`` that is not a
            submodule; a model without residual blocks (and no ``modules``);
            nested segments; a module reachable under two names.
        TypeError: ``model`` is not an ``nn.Module``.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"enable_memory_saving expects an nn.Module, got {type(model).__name__}")
    if mode not in MEMORY_SAVING_MODES:
        raise ValueError(f"unknown memory-saving mode {mode!r}; choose one of {list(MEMORY_SAVING_MODES)}")
    if mode == "none":
        disable_memory_saving(model)
        return []
    if mode == "spikes" and modules is None:
        disable_memory_saving(model)
        _enable_packing(model)
        return []
    disable_memory_saving(model)  # the names below are those of the bare model
    named = dict(model.named_modules())
    if modules is not None:
        names = list(modules)
        missing = [n for n in names if n not in named or n == ""]
        if missing:
            raise ValueError(
                f"no submodule named {missing} in {type(model).__name__}; pick names from "
                "model.named_modules() (the model itself cannot be wrapped)"
            )
    else:
        names = _model_blocks(model)
        if mode == "stages":
            names = _find_stages(model, names)
    nested = [(a, b) for a in names for b in names if b.startswith(a + ".")]
    if nested:
        raise ValueError(f"nested segments {nested[:3]}: a wrapped module may not contain another; drop one")
    _check_single_reference(model, names)
    for n in names:
        _replace(model, n, RecomputedBlock(named[n]))
    if pack_spikes:
        _enable_packing(model)
    return names


def disable_memory_saving(model: nn.Module) -> list[str]:
    """Undo :func:`enable_memory_saving` (recomputation and spike packing); returns the wrapped names."""
    _disable_packing(model)
    names = memory_saving_modules(model)
    for n in names:
        _replace(model, n, model.get_submodule(n).block)
    return names


def memory_saving_modules(model: nn.Module) -> list[str]:
    """Qualified names of the submodules currently recomputed in backward (each a :class:`RecomputedBlock`)."""
    return [n for n, m in model.named_modules() if isinstance(m, RecomputedBlock)]


class SavedTensorMeter:
    """Count the bytes autograd keeps for backward, by unique storage.

    A context manager around a forward pass, built on
    :func:`torch.autograd.graph.saved_tensors_hooks`. Storages are deduplicated
    by data pointer, so a tensor saved by several ops (or a view of it) counts
    once. Given ``model``, it counts what that model keeps in any memory mode:
    its parameters are left out (layers save their weights, which exist
    anyway); the inputs of recomputed segments are counted (tensors saved
    inside a segment are held by the checkpoint, unseen by hooks, and what the
    segment keeps is its inputs); packed spikes count at their packed size.

    Args:
        model: the model run inside the block (optional).
        segments: further modules whose tensor inputs are counted.
        exclude: further tensors whose storages are not counted.

    Example::

        with SavedTensorMeter(model) as meter:
            loss = model(x).sum()
        print(meter.bytes)
    """

    def __init__(self, model: nn.Module | None = None, *, segments: Iterable[nn.Module] = (),
                 exclude: Iterable[Tensor] = ()) -> None:
        self._storages: dict[int, int] = {}
        self._segments = list(segments)
        excluded = list(exclude)
        self._packer: _SpikePacker | None = None
        if model is not None:
            self._segments += [model.get_submodule(n) for n in memory_saving_modules(model)]
            excluded += list(model.parameters())
            self._packer = _packer_of(model)
        self._excluded = {t.untyped_storage().data_ptr() for t in excluded}
        self._handles: list[Any] = []
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t)

    @property
    def bytes(self) -> int:
        """Total bytes of the unique storages seen so far."""
        return sum(self._storages.values())

    def _add(self, t: Tensor) -> None:
        storage = t.untyped_storage()
        if storage.data_ptr() not in self._excluded:
            self._storages[storage.data_ptr()] = storage.nbytes()

    def _pack(self, t: Tensor) -> Tensor:
        self._add(t)
        return t

    def _pre_hook(self, module: nn.Module, args: tuple[Any, ...]) -> None:
        for a in args:
            if isinstance(a, Tensor):
                self._add(a)

    def __enter__(self) -> "SavedTensorMeter":
        self._handles = [m.register_forward_pre_hook(self._pre_hook) for m in self._segments]
        if self._packer is not None:
            self._packer.observers.append(self._add)
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._hooks.__exit__(*exc)
        if self._packer is not None:
            self._packer.observers.remove(self._add)
        for h in self._handles:
            h.remove()
        self._handles = []
