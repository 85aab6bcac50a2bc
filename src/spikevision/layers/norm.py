"""Normalisation for spiking sequences ``[T, B, C, ...]``.

| layer | statistics | paper |
|---|---|---|
| :class:`TDBatchNorm2d` / :class:`TDBatchNorm1d` | per channel over (T, B, spatial) | Zheng et al., "Going Deeper With Directly-Trained Larger Spiking Neural Networks", AAAI 2021 (tdBN); MS-ResNet, spiking MLP |
| :class:`BNTT2d` | per channel and **per time step** | Kim & Panda, "Revisiting Batch Normalization for Training Low-Latency Deep Spiking Neural Networks From Scratch", Frontiers in Neuroscience 2021 (BNTT); S-ResNet |
| :class:`TokenBatchNorm1d` | per **token position** over (T, B, channels) | spiking MLP channel block (the released quirk) |

tdBN's ``alpha * V_th`` scaling is expressed as the initial ``gamma``
(``weight_init``), e.g. 0.5 = V_th in MS-ResNet.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from spikevision.layers.temporal import broadcast_step, check_T, expand_steps, fold, unfold
from spikevision.neuron.params import check_sequence

__all__ = ["TDBatchNorm2d", "TDBatchNorm1d", "BNTT2d", "TokenBatchNorm1d", "SyncBatchNorm", "TimeFoldedSyncBatchNorm",
           "convert_sync_batchnorm", "NORM_LAYERS", "NormLayerLike", "build_norm2d"]


def _check_channels(x: Tensor, dim: int, expected: int, ndim: int, layout: str, name: str) -> None:
    check_sequence(x, name=f"{name} input")
    if x.dim() != ndim:
        raise ValueError(f"{name} expects {layout}, got shape {list(x.shape)}")
    if x.shape[dim] != expected:
        raise ValueError(f"{name} was built for {expected} features at dim {dim} of {layout}, got {x.shape[dim]}")


class TDBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose statistics pool time and batch (tdBN-style).

    Args:
        num_features: channels ``C``.
        weight_init: initial gamma (MS-ResNet: 0.5 = V_th; 0 for the last BN of
            a residual branch; 1 = PyTorch default).
        **kwargs: ``eps``, ``momentum``, ``affine``, ``track_running_stats``.

    In training, a time-broadcast input ``u.expand(T, ...)`` is normalised once, on ``u``
    (:func:`~spikevision.layers.temporal.use_time_broadcast`): ``T`` copies of a batch have its
    mean and biased variance, so the output is the same at every step; the running variance is
    updated with the unbiased factor of the ``T * B * H * W`` values the folded call would have
    counted, so running statistics match it to float32 round-off too.

    Shape: ``[T, B, C, H, W]`` to the same.
    """

    def __init__(self, num_features: int, weight_init: float = 1.0, **kwargs) -> None:
        super().__init__(num_features, **kwargs)
        self.weight_init = weight_init
        if self.affine:
            nn.init.constant_(self.weight, weight_init)

    def forward(self, x: Tensor) -> Tensor:
        _check_channels(x, 2, self.num_features, 5, "[T, B, C, H, W]", type(self).__name__)
        u = broadcast_step(x) if self.training else None
        if u is not None:
            return expand_steps(self._forward_once(u, x.shape[0]), x.shape[0])
        return unfold(super().forward(fold(x)), x.shape[0])

    def _forward_once(self, u: Tensor, T: int) -> Tensor:
        """BatchNorm (training mode) of ``u`` ``[B, C, H, W]`` standing for ``T`` identical steps."""
        if not (self.track_running_stats and self.running_var is not None):
            return super().forward(u)  # batch statistics only: those of one copy are those of T copies
        self.num_batches_tracked.add_(1)
        factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        # F.batch_norm would update the running variance with u's unbiased factor n / (n - 1): it gets a copy,
        # and the buffer gets the folded call's T n / (T n - 1) below
        scratch = self.running_var.clone()
        out = F.batch_norm(u, self.running_mean, scratch, self.weight, self.bias, True, factor, self.eps)
        n = u.numel() // u.shape[1] * T
        with torch.no_grad():
            var = u.detach().var(dim=(0, 2, 3), unbiased=False)
            self.running_var.mul_(1.0 - factor).add_(var, alpha=factor * n / (n - 1))
        return out


#: A builder's ``norm_layer``: a name of :data:`NORM_LAYERS` or a class called as ``cls(num_features)``
#: that maps ``[T, B, C, H, W]`` to the same shape.
NormLayerLike = str | type[nn.Module]
#: The norm layers a builder's ``norm_layer`` may name (time-major, ``[T, B, C, H, W]``).
NORM_LAYERS: dict[str, type[nn.Module]] = {"tdbn": TDBatchNorm2d}


def build_norm2d(norm_layer: NormLayerLike, num_features: int, weight_init: float = 1.0) -> nn.Module:
    """The norm of a time-major feature map, by name or class (torchvision's ``norm_layer``), gamma = ``weight_init``.

    Args:
        norm_layer: a name of :data:`NORM_LAYERS` (``"tdbn"``) or a class taking ``num_features``.
        num_features: channels ``C``.
        weight_init: initial gamma (set when the layer has an affine ``weight``).

    Raises:
        ValueError: an unknown name (listing the known ones).
        TypeError: neither a name nor a class.
    """
    if isinstance(norm_layer, str):
        if norm_layer not in NORM_LAYERS:
            raise ValueError(f"unknown norm_layer {norm_layer!r}; choose one of {sorted(NORM_LAYERS)} "
                             "or pass a class taking num_features")
        norm_layer = NORM_LAYERS[norm_layer]
    if not isinstance(norm_layer, type):
        raise TypeError(f"norm_layer must be a name or a class, got {type(norm_layer).__name__}")
    if issubclass(norm_layer, TDBatchNorm2d):
        return norm_layer(num_features, weight_init=weight_init)
    norm = norm_layer(num_features)
    weight = getattr(norm, "weight", None)
    if isinstance(weight, nn.Parameter):
        nn.init.constant_(weight, weight_init)
    return norm


class TDBatchNorm1d(nn.BatchNorm1d):
    """BatchNorm1d over time and batch for ``[T, B, C]`` or ``[T, B, C, L]``.

    Args: as :class:`TDBatchNorm2d`.
    """

    def __init__(self, num_features: int, weight_init: float = 1.0, **kwargs) -> None:
        super().__init__(num_features, **kwargs)
        if self.affine:
            nn.init.constant_(self.weight, weight_init)

    def forward(self, x: Tensor) -> Tensor:
        check_sequence(x, name=f"{type(self).__name__} input", min_dim=3)
        if x.dim() not in (3, 4) or x.shape[2] != self.num_features:
            raise ValueError(
                f"{type(self).__name__}({self.num_features}) expects [T, B, C] or [T, B, C, L] with "
                f"C={self.num_features}, got shape {list(x.shape)}"
            )
        return unfold(super().forward(fold(x)), x.shape[0])


class TokenBatchNorm1d(nn.BatchNorm1d):
    """Per-token BatchNorm of the spiking MLP's channel block (released quirk).

    The authors apply ``BatchNorm1d(N)`` to ``[T*B, N, C]``: one statistic per
    token position ``N``, pooled over time, batch and channels. This ties the
    model to one input size and is not foldable into a shared weight matrix.

    Args:
        num_tokens: ``N = H * W``.

    Shape: ``[T, B, N, C]`` to the same.
    """

    def __init__(self, num_tokens: int, **kwargs) -> None:
        super().__init__(num_tokens, **kwargs)

    def forward(self, x: Tensor) -> Tensor:
        _check_channels(x, 2, self.num_features, 4, "[T, B, N, C]", type(self).__name__)
        return unfold(super().forward(fold(x)), x.shape[0])


def _weight_or_one(bn: nn.modules.batchnorm._BatchNorm) -> Tensor:
    return bn.weight if bn.weight is not None else torch.ones_like(bn.running_var)


def _bias_or_zero(bn: nn.modules.batchnorm._BatchNorm) -> Tensor:
    return bn.bias if bn.bias is not None else torch.zeros_like(bn.running_mean)


class BNTT2d(nn.Module):
    """Batch normalisation through time: one BatchNorm2d per time step.

    Each step has its own affine parameters and running statistics (S-ResNet:
    eps 1e-4, momentum 0.1).

    Args:
        num_features: channels ``C``.
        T: number of time steps; inputs with another ``T`` raise.
        bias: learn a shift per step. S-ResNet's released code trains the
            biases (quirk Q1, default True); the original BNTT has none (False).
        eps, momentum: BatchNorm constants.

    Shape: ``[T, B, C, H, W]`` to the same.
    """

    def __init__(self, num_features: int, T: int, bias: bool = True, eps: float = 1e-4, momentum: float = 0.1) -> None:
        super().__init__()
        if T < 1:
            raise ValueError(f"T must be >= 1, got {T}")
        self.T = T
        self.num_features = num_features
        self.bns = nn.ModuleList(nn.BatchNorm2d(num_features, eps=eps, momentum=momentum) for _ in range(T))
        if not bias:
            for bn in self.bns:
                bn.bias.requires_grad_(False)
                nn.init.zeros_(bn.bias)

    def forward(self, x: Tensor) -> Tensor:
        _check_channels(x, 2, self.num_features, 5, "[T, B, C, H, W]", "BNTT2d")
        check_T(x, self.T, "BNTT2d")
        if not any(bn.training or bn.running_var is None for bn in self.bns):
            # Evaluation with running statistics: every step's BN is an affine map per channel, so all T
            # steps are one scale-and-shift over the sequence (no per-step calls, no stacking copy; the
            # input's memory format is kept).
            scale, shift = self.step_affine()
            return torch.addcmul(shift.view(self.T, 1, -1, 1, 1).to(x.dtype), x, scale.view(self.T, 1, -1, 1, 1).to(x.dtype))
        return torch.stack([bn(x[t]) for t, bn in enumerate(self.bns)])

    def step_affine(self) -> tuple[Tensor, Tensor]:
        """Each step's evaluation-mode BN as ``y = x * scale + shift``: two ``[T, C]`` tensors."""
        var = torch.stack([bn.running_var for bn in self.bns])
        eps = torch.tensor([[bn.eps] for bn in self.bns], dtype=var.dtype, device=var.device)
        scale = torch.stack([_weight_or_one(bn) for bn in self.bns]) / torch.sqrt(var + eps)
        shift = torch.stack([_bias_or_zero(bn) for bn in self.bns]) - torch.stack([bn.running_mean for bn in self.bns]) * scale
        return scale, shift

    def extra_repr(self) -> str:
        return f"{self.num_features}, T={self.T}"


class SyncBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm whose statistics are those of the global batch: every rank of a process group, any device.

    In training mode inside an initialised process group, the mean and the
    (biased) variance used to normalise, the backward pass and the running
    statistics are those of one process normalising the whole global batch
    (:func:`_synced_batch_norm`). Outside a process group, or in eval mode, it
    is plain BatchNorm. Not a ``torch.nn.SyncBatchNorm``: torch's refuses CPU
    tensors, and ``DistributedDataParallel`` refuses CPU modules holding one.

    Args: those of ``torch.nn.SyncBatchNorm`` (``process_group`` None = the whole world).

    Shape: ``[N, C, *]`` to the same.
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1, affine: bool = True,
                 track_running_stats: bool = True, process_group=None, device=None, dtype=None) -> None:
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device=device, dtype=dtype)
        self.process_group = process_group

    def _check_input_dim(self, x: Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"{type(self).__name__} expects [N, C, *], got shape {list(x.shape)}")

    def forward(self, x: Tensor) -> Tensor:
        self._check_input_dim(x)
        if self.training and dist.is_available() and dist.is_initialized():
            return _synced_batch_norm(self, x)
        return super().forward(x)


def _channel_view(x: Tensor) -> tuple[list[int], tuple[int, ...]]:
    """The dims a BatchNorm reduces over in ``x`` ``[N, C, *]`` and the shape broadcasting a ``[C]`` vector."""
    return [0, *range(2, x.dim())], (1, x.shape[1]) + (1,) * (x.dim() - 2)


@torch.no_grad()
def _global_stats(x: Tensor, group) -> tuple[Tensor, Tensor, Tensor]:
    """Per-channel mean and biased variance of ``x`` over every rank of ``group``, and the element count.

    Two all-reduces: the sums with the element count (float64, so the count is
    exact past 2^24 and the sum loses nothing), then the squared deviations
    from the global mean (the two-pass variance of one process).
    """
    dims, shape = _channel_view(x)
    C, xf = x.shape[1], x.float()  # statistics in float32 even for bf16/fp16 inputs, as torch's own BN
    count = torch.full((1,), xf.numel() // C, dtype=torch.float64, device=x.device)
    sums = torch.cat([xf.sum(dims).double(), count])
    dist.all_reduce(sums, group=group)
    n = sums[C].float()
    mean = (sums[:C] / sums[C]).float()
    squares = (xf - mean.view(shape)).square().sum(dims)
    dist.all_reduce(squares, group=group)
    return mean, squares / n, n


class _SyncedNormalise(torch.autograd.Function):
    """``(x - mean) * invstd * weight + bias`` with the backward of statistics taken over all ranks.

    The backward all-reduces the per-channel sums of ``dy`` and ``dy * x_hat``
    (each rank's ``dy`` is the gradient of its own loss), so every rank gets the
    gradient of the sum of all ranks' losses with respect to its own input,
    as one process would; weight and bias get this rank's part (DDP averages them).
    Saves only ``x`` and per-channel vectors.
    """

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor | None, bias: Tensor | None, mean: Tensor, invstd: Tensor,
                n: Tensor, group) -> Tensor:
        _, shape = _channel_view(x)
        y = (x.float() - mean.view(shape)) * invstd.view(shape)
        if weight is not None:
            y = y * weight.float().view(shape) + bias.float().view(shape)
        ctx.save_for_backward(x, weight, mean, invstd, n)
        ctx.group = group
        return y.to(x.dtype)

    @staticmethod
    def backward(ctx, dy: Tensor):
        x, weight, mean, invstd, n = ctx.saved_tensors
        dims, shape = _channel_view(x)
        dy = dy.float()
        x_hat = (x.float() - mean.view(shape)) * invstd.view(shape)
        sum_dy, sum_dy_x_hat = dy.sum(dims), (dy * x_hat).sum(dims)
        grad_weight = sum_dy_x_hat.to(weight.dtype) if ctx.needs_input_grad[1] else None
        grad_bias = sum_dy.to(weight.dtype) if ctx.needs_input_grad[2] else None
        grad_x = None
        if ctx.needs_input_grad[0]:
            sums = torch.cat([sum_dy, sum_dy_x_hat])
            dist.all_reduce(sums, group=ctx.group)
            C = x.shape[1]
            scale = invstd if weight is None else invstd * weight.float()
            grad_x = ((dy - (sums[:C] / n).view(shape) - x_hat * (sums[C:] / n).view(shape))
                      * scale.view(shape)).to(x.dtype)
        return grad_x, grad_weight, grad_bias, None, None, None, None


def _synced_batch_norm(bn: SyncBatchNorm, x: Tensor) -> Tensor:
    """Training-mode BatchNorm of ``x`` ``[N, C, *]`` over every rank of ``bn.process_group``.

    Running statistics follow ``nn.BatchNorm``: momentum (the cumulative
    average when ``momentum`` is None) and the unbiased variance.
    """
    group = bn.process_group or dist.group.WORLD
    mean, var, n = _global_stats(x, group)
    if bn.track_running_stats:
        with torch.no_grad():
            bn.num_batches_tracked.add_(1)
            m = 1.0 / float(bn.num_batches_tracked) if bn.momentum is None else bn.momentum
            bn.running_mean.lerp_(mean.to(bn.running_mean.dtype), m)
            unbiased = var * (n / (n - 1).clamp(min=1.0))  # n = 1: var is 0 either way
            bn.running_var.lerp_(unbiased.to(bn.running_var.dtype), m)
    return _SyncedNormalise.apply(x, bn.weight, bn.bias, mean, torch.rsqrt(var + bn.eps), n, group)


class TimeFoldedSyncBatchNorm(SyncBatchNorm):
    """:class:`SyncBatchNorm` for ``[T, B, C, ...]`` sequences (statistics over T, B and all ranks).

    Built by :func:`convert_sync_batchnorm` from :class:`TDBatchNorm2d`,
    :class:`TDBatchNorm1d` or :class:`TokenBatchNorm1d`; parameter and buffer
    names are unchanged, so checkpoints load either way.
    """

    def forward(self, x: Tensor) -> Tensor:
        check_sequence(x, name="TimeFoldedSyncBatchNorm input", min_dim=3)
        if x.shape[2] != self.num_features:
            raise ValueError(f"TimeFoldedSyncBatchNorm({self.num_features}) expects [T, B, {self.num_features}, "
                             f"...], got shape {list(x.shape)}")
        return unfold(super().forward(fold(x)), x.shape[0])


_TIME_FOLDED_BN = (TDBatchNorm2d, TDBatchNorm1d, TokenBatchNorm1d)


def _sync_twin(bn: nn.modules.batchnorm._BatchNorm, cls: type[SyncBatchNorm], process_group) -> SyncBatchNorm:
    """A ``cls`` holding ``bn``'s own parameter and buffer tensors (same device, dtype, ``requires_grad``)."""
    new = cls(bn.num_features, bn.eps, bn.momentum, bn.affine, bn.track_running_stats, process_group,
              device="meta")  # placeholders only: replaced by bn's tensors below
    for name, p in bn.named_parameters(recurse=False):
        setattr(new, name, p)
    for name, b in bn.named_buffers(recurse=False):
        setattr(new, name, b)
    new.train(bn.training)
    return new


def convert_sync_batchnorm(module: nn.Module, process_group=None) -> nn.Module:
    """Replace every BatchNorm in ``module`` by a synchronised one that also works on the CPU.

    :class:`TDBatchNorm2d`, :class:`TDBatchNorm1d` and :class:`TokenBatchNorm1d`
    become :class:`TimeFoldedSyncBatchNorm` (``torch.nn.SyncBatchNorm.convert_sync_batchnorm``
    would read ``T`` as the batch and ``B`` as channels); every other BatchNorm,
    such as BNTT's per-step layers, becomes :class:`SyncBatchNorm`. Each new
    layer takes over the old one's parameter and buffer tensors, so an
    optimiser, the device, ``requires_grad`` and ``state_dict`` keys are
    unchanged. Children are replaced in place; returns ``module`` (or its
    replacement if ``module`` itself is a BatchNorm).
    """
    if isinstance(module, SyncBatchNorm):
        return module
    if isinstance(module, _TIME_FOLDED_BN):
        return _sync_twin(module, TimeFoldedSyncBatchNorm, process_group)
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        return _sync_twin(module, SyncBatchNorm, process_group)
    for name, child in module.named_children():
        module.add_module(name, convert_sync_batchnorm(child, process_group))
    return module
