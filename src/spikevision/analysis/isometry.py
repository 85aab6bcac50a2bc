"""Gradient-flow probes for residual spiking networks: block-input gradient norms and phi(JJ^T).

Background (Hu et al., "Advancing Spiking Neural Networks towards Deep
Residual Learning", TNNLS 2024, arXiv 2112.08954, section on block dynamical
isometry; Chen, Deng, Li et al., "A Comprehensive and Modularized Statistical
Framework for Gradient Norm Equality in Deep Neural Networks", TPAMI 2022):

* Gradient norm equality: ``||dL/dx_l||`` should be about equal at every
  block input ``x_l``. In a vanilla spiking ResNet each post-addition LIF has
  a diagonal surrogate Jacobian whose entries vanish outside the surrogate
  window, so the norms shrink towards the input; MS-ResNet's main path is an
  identity and they stay flat. :func:`block_grad_norms` measures them.
* Block dynamical isometry: for a block Jacobian ``J``,
  ``phi(J J^T) = tr(J J^T) / m`` (the mean squared singular value, ``m`` =
  output size). Since ``E ||J^T v||^2 = tr(J J^T)`` for ``v ~ N(0, I)``,
  :func:`block_phi` estimates it as the mean of ``||J^T v||^2 / ||v||^2``
  over random vector-Jacobian products; a residual block with identity
  shortcut has ``phi ~ 1 + phi(J_F J_F^T)``.

**Which blocks** (:func:`residual_blocks`): the model says, through
``model.residual_blocks()`` (part of the
:class:`~spikevision.models.SpikingClassifier` interface: qualified name to
block, in forward order); for any other model pass ``blocks={name: module}``.
The probe uses each block's first tensor input.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from spikevision.analysis.synops import forward_hooked

__all__ = [
    "residual_blocks", "train_steps", "block_grad_norms", "block_phi", "blockwise_phi",
    "depth_comparison",
]

LossFn = Callable[[Tensor, Tensor], Tensor]


def residual_blocks(model: nn.Module) -> dict[str, nn.Module]:
    """Qualified name -> residual block, in forward order: ``model.residual_blocks()``.

    Raises:
        TypeError: the model has no ``residual_blocks()`` method.
        ValueError: it has no residual block.
    """
    if not callable(getattr(model, "residual_blocks", None)):
        raise TypeError(f"{type(model).__name__} does not say which modules are its residual blocks: give it a "
                        "residual_blocks() method (name -> module) or pass blocks={name: module}")
    blocks = dict(model.residual_blocks())
    if not blocks:
        raise ValueError(f"no residual block in {type(model).__name__} (its residual_blocks() is empty): "
                         "the gradient-flow probes measure block inputs of residual networks")
    return blocks


def _first_tensor(value) -> Tensor:
    if isinstance(value, Tensor):
        return value
    for v in value:
        if isinstance(v, Tensor):
            return v
    raise TypeError(f"expected a tensor or a tuple holding one, got {type(value).__name__}")


def train_steps(model: nn.Module, x: Tensor, y: Tensor, *, steps: int, lr: float = 0.05,
                loss_fn: LossFn = F.cross_entropy) -> list[float]:
    """A few plain SGD steps on one batch (to move the model off its initialisation); returns the losses."""
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    losses = []
    model.train()
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    opt.zero_grad(set_to_none=True)
    return losses


def block_grad_norms(model: nn.Module, x: Tensor, y: Tensor, *, loss_fn: LossFn = F.cross_entropy,
                     blocks: dict[str, nn.Module] | None = None) -> dict[str, float]:
    """``||dL/dx_l||_2`` at the (first tensor) input of every residual block, for one batch.

    Parameter gradients are left as the backward pass leaves them (call
    ``zero_grad`` before training on). Hooks are removed afterwards.

    Returns:
        block name -> gradient norm, in forward order.
    """
    blocks = residual_blocks(model) if blocks is None else blocks
    norms: dict[str, float] = {}
    order: list[str] = []
    handles = []

    def pre_hook(name: str):
        def hook(module, inputs):
            t = _first_tensor(inputs)
            if t.requires_grad:
                order.append(name)
                t.register_hook(lambda g: norms.__setitem__(name, float(g.detach().norm())))

        return hook

    try:
        for name, b in blocks.items():
            handles.append(b.register_forward_pre_hook(pre_hook(name)))
        loss = loss_fn(model(x), y)
        loss.backward()
    finally:
        for h in handles:
            h.remove()
    return {n: norms[n] for n in order if n in norms}


def block_phi(block: nn.Module, x: Tensor, *, n_vectors: int = 8, generator: torch.Generator | None = None,
              extra_inputs: Sequence = ()) -> tuple[float, float]:
    """Estimate ``phi(J J^T)`` of ``block`` at input ``x`` by random vector-Jacobian products.

    Args:
        block: the module; called as ``block(x, *extra_inputs)``; a tuple
            output uses its first tensor.
        x: the block input (detached inside).
        n_vectors: number of Gaussian vectors ``v``.
        generator: for reproducible vectors.

    Returns:
        (mean, standard deviation) of ``||J^T v||^2 / ||v||^2`` over the vectors.
    """
    if n_vectors < 1:
        raise ValueError(f"n_vectors must be >= 1, got {n_vectors}")
    x = x.detach().requires_grad_(True)
    out = _first_tensor(block(x, *extra_inputs))
    vals = []
    for k in range(n_vectors):
        v = torch.randn(out.shape, generator=generator, dtype=out.dtype, device=out.device)
        (g,) = torch.autograd.grad(out, x, v, retain_graph=k < n_vectors - 1)
        vals.append(float(g.pow(2).sum() / v.pow(2).sum()))
    t = torch.tensor(vals)
    return float(t.mean()), float(t.std()) if n_vectors > 1 else 0.0


def blockwise_phi(model: nn.Module, x: Tensor, *, n_vectors: int = 8, seed: int = 0,
                  blocks: dict[str, nn.Module] | None = None) -> dict[str, tuple[float, float]]:
    """:func:`block_phi` for every residual block, at the inputs a forward pass of ``x`` gives them."""
    blocks = residual_blocks(model) if blocks is None else blocks
    captured: dict[str, tuple] = {}
    forward_hooked(model, x, [b.register_forward_pre_hook(
        lambda m, inp, n=name: captured.setdefault(n, tuple(a.detach() if isinstance(a, Tensor) else a for a in inp)))
        for name, b in blocks.items()])
    gen = torch.Generator(device=x.device).manual_seed(seed)
    out = {}
    for name, inputs in captured.items():
        out[name] = block_phi(blocks[name], inputs[0], n_vectors=n_vectors, generator=gen, extra_inputs=inputs[1:])
    return out


def depth_comparison(depths: Sequence[int] = (20, 32, 56), *, families: Sequence[str] = ("ms_resnet", "spiking_resnet"),
                     T: int = 2, batch: int = 8, img_size: int = 16, num_classes: int = 10, steps: int = 3,
                     lr: float = 0.05, seed: int = 0,
                     builder: Callable[[str, int], nn.Module] | None = None) -> dict[str, dict[int, dict[str, float]]]:
    """Block-input gradient norms after ``steps`` SGD steps, per family and depth.

    The MS-ResNet vs vanilla spiking ResNet degradation study (Hu et al.,
    TNNLS 2024): on random data of a fixed seed, build ``f"{family}{depth}"``
    from the registry (or ``builder(family, depth)``), train a few steps, and
    record ``||dL/dx_l||`` at every block input. Plot with
    :func:`spikevision.analysis.plots.plot_depth_comparison`.

    Returns:
        ``{family: {depth: {block name: norm}}}``.
    """
    if builder is None:
        from spikevision.models import create_model

        def builder(family: str, depth: int) -> nn.Module:
            return create_model(f"{family}{depth}", num_classes=num_classes, T=T)

    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 3, img_size, img_size, generator=gen)
    y = torch.randint(0, num_classes, (batch,), generator=gen)
    result: dict[str, dict[int, dict[str, float]]] = {}
    for family in families:
        result[family] = {}
        for depth in depths:
            torch.manual_seed(seed)
            model = builder(family, depth)
            train_steps(model, x, y, steps=steps, lr=lr)
            result[family][depth] = block_grad_norms(model, x, y)
            model.zero_grad(set_to_none=True)
    return result
