"""The one interface every spikevision classifier exposes (rule 6 of STYLE.md).

Analysis, deployment and the CLI rely on nothing else:

* ``num_classes`` and ``T`` attributes;
* ``encoder``: the module turning a static image ``[B, C, H, W]`` into
  ``[T, B, C, H, W]`` (an event sequence is passed through unchanged);
* ``forward_features(x)``: ``[T, B, ...]`` input sequence to the final feature
  sequence ``[T, B, C, H, W]`` (or ``[T, B, C]``), before pooling;
* ``forward_head(features, pre_logits=False, per_step=False)``: pooled
  features ``[T, B, C]`` if ``pre_logits``, else logits, averaged over time
  ``[B, classes]`` unless ``per_step`` (``[T, B, classes]``, for TET losses);
* ``reset_classifier(num_classes)``: replace the classifier;
* ``pretrained_cfg``: what shipped weights expect (preprocessing, class names, card), set by
  ``create_model(name, pretrained=tag)``; None otherwise;
* ``residual_blocks()``: qualified name to residual block, in forward order
  (what memory saving recomputes and the isometry probes measure; empty for a
  network without residual blocks).

``forward(x, per_step=False)`` = encode (if 4-D) then features then head:
``[B, classes]``, or ``[T, B, classes]`` with ``per_step`` (what TET trains on).
It is the one forward pass, written once here; models do not override it.
A model whose stem is time-invariant (conv + BN of a static image, the same at
every step) sets ``stem_once`` and implements ``forward_features_static``;
``forward`` then takes that path in training for a directly coded image
(:meth:`SpikingClassifier.runs_stem_once`).
``encode`` first checks the input (:meth:`SpikingClassifier.check_input`): a
tensor, not empty, without NaN or infinite values; ``forward`` reports a float
input of another dtype than the weights as a ``TypeError``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, TypeAlias

import torch
from torch import Tensor, nn

from spikevision.layers.encoders import DirectEncoder, check_image
from spikevision.layers.temporal import check_T
from spikevision.neuron.functional import NeuronParams, check_sequence

__all__ = ["SpikingClassifier", "resolve_neuron_params", "NeuronKind", "ParamsLike"]

#: A neuron given by registered name (``"lif"``, ``"plif"``) or by class (see :func:`spikevision.neuron.build_neuron`).
NeuronKind: TypeAlias = str | type[nn.Module]
#: A builder's ``neuron_params``: None (the family's paper constants), a full :class:`NeuronParams`,
#: or a mapping of the fields to change (see :func:`resolve_neuron_params`).
ParamsLike: TypeAlias = NeuronParams | Mapping[str, Any] | None


def resolve_neuron_params(default: NeuronParams, override: NeuronParams | Mapping[str, Any] | None) -> NeuronParams:
    """A family's neuron constants with a builder's override applied.

    Args:
        default: the family's paper constants (e.g. ``MS_RESNET_NEURON``).
        override: None (keep ``default``), a full :class:`NeuronParams`, or a
            mapping of fields to change (what a YAML config gives, e.g.
            ``{"v_th": 1.0, "surrogate": "triangle"}``).

    Raises:
        TypeError: unknown field names (listing the valid ones).
    """
    if override is None:
        return default
    if isinstance(override, NeuronParams):
        return override
    if isinstance(override, Mapping):
        return default.replace(**dict(override))
    raise TypeError(f"neuron_params must be NeuronParams or a mapping of fields, got {type(override).__name__}")


class SpikingClassifier(nn.Module):
    """Base class: input handling and the shared ``forward``.

    Subclasses set ``self.T``, ``self.num_classes``, ``self.encoder`` and
    implement ``forward_features``, ``forward_head``, ``reset_classifier`` and
    ``residual_blocks``.
    """

    T: int
    encoder: nn.Module
    #: run the time-invariant stem once per static image in training (see :meth:`runs_stem_once`);
    #: a model that sets it implements :meth:`forward_features_static`
    stem_once: bool = False
    #: set by ``create_model(name, pretrained=tag)``: preprocessing, class names and card of the weights
    #: (:class:`spikevision.pretrained.PretrainedCfg`); None for a model built without them
    pretrained_cfg: Any = None

    @property
    def num_classes(self) -> int:
        """Outputs of the classifier. ``reset_classifier`` changes it; a ``pretrained_cfg`` follows (its class
        names describe the old outputs, so they are dropped)."""
        return self.__dict__["_num_classes"]

    @num_classes.setter
    def num_classes(self, value: int) -> None:
        self.__dict__["_num_classes"] = value
        cfg = self.__dict__.get("pretrained_cfg")
        if cfg is not None and cfg.num_classes != value:
            self.pretrained_cfg = dataclasses.replace(cfg, num_classes=value, class_names=())

    def check_fixed_size(self, x: Tensor, why: str) -> None:
        """For models built for one input size (``self.in_chans``, square ``self.img_size``): reject others.

        Args:
            x: an image ``[B, C, H, W]`` or sequence ``[T, B, C, H, W]``.
            why: what fixes the size, for the message (e.g. "its readout is sized for it").

        Raises:
            ValueError: naming the expected and the given shape and the rebuild that would fit.
        """
        expected = (self.in_chans, self.img_size, self.img_size)
        if x.dim() in (4, 5) and tuple(x.shape[-3:]) != expected:
            raise ValueError(
                f"{type(self).__name__} was built for inputs [.., {self.in_chans}, {self.img_size}, {self.img_size}] "
                f"({why}), got shape {list(x.shape)}; resize the input or rebuild with "
                f"in_chans={x.shape[-3]}, img_size={x.shape[-1]}"
            )

    def check_input(self, x: Tensor) -> None:
        """Reject an input that the model would turn into a raw error or a silently wrong answer.

        The finiteness test is one pass over the input: at batch 128 on CPU, 0.04% to 0.2% of the
        forward pass of the mini models (measured side by side); on a GPU it waits for the input to
        arrive (one host-device sync per call; training syncs every step anyway). Skipped for ``meta``
        tensors (shapes only) and inside ``torch.compile`` tracing (a data-dependent branch would
        break the graph). The input's dtype is not compared with the weights' here: the integer
        deploy engine runs this forward on float64 fixed point through float32 fallbacks; a
        mismatch that fails is reported by :meth:`forward`.

        Raises:
            TypeError: not a tensor.
            ValueError: an empty input (no time steps or no samples), or NaN/infinite values: NaN never
                crosses a firing threshold, so the logits would stay finite and look valid.
        """
        name = type(self).__name__
        if not isinstance(x, Tensor):
            raise TypeError(f"{name} takes a torch.Tensor, got {type(x).__name__}")
        if x.numel() == 0:
            raise ValueError(f"{name} got an empty input of shape {list(x.shape)}; every dimension (time steps, "
                             "batch, channels, ...) needs at least one entry")
        if not x.is_floating_point() or x.is_meta or torch.compiler.is_compiling():
            return  # the image and sequence checks reject integer dtypes with their own message
        if not bool(torch.isfinite(x).all()):
            bad = int((~torch.isfinite(x)).sum())
            raise ValueError(f"{name} got an input with {bad} NaN or infinite values (shape {list(x.shape)}); "
                             "clean or drop those samples (e.g. torch.nan_to_num) before the model")

    def encode(self, x: Tensor) -> Tensor:
        """Static image ``[B, C, H, W]`` through the encoder; sequences ``[T, B, C, H, W]`` checked and passed.

        Raises:
            TypeError, ValueError: see :meth:`check_input`, and a shape that is neither.
        """
        self.check_input(x)
        if x.dim() == 4:
            check_image(x, type(self).__name__)
            return self.encoder(x)
        check_sequence(x, name=f"{type(self).__name__} input", min_dim=5)
        if x.dim() != 5:
            raise ValueError(
                f"{type(self).__name__} expects [B, C, H, W] images or [T, B, C, H, W] sequences, got {list(x.shape)}"
            )
        check_T(x, self.T, type(self).__name__)
        return x

    def forward_features(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def forward_features_static(self, x: Tensor) -> Tensor:
        """What ``forward_features(encode(x))`` gives for a static image ``[B, C, H, W]`` under direct coding,
        with the time-invariant stem computed once and its output repeated over ``T`` (a view).

        Outputs and gradients equal the per-step computation up to float round-off; a BN in the stem
        sees ``B*H*W`` samples instead of ``T*B*H*W`` (its running variance's Bessel factor differs).
        Only called when :meth:`runs_stem_once` is true.
        """
        raise NotImplementedError(f"{type(self).__name__} sets stem_once but has no forward_features_static")

    def runs_stem_once(self, x: Tensor) -> bool:
        """Whether :meth:`forward` takes the stem-once path for ``x``: ``stem_once`` is set, the model is in
        training mode and ``x`` is a static image ``[B, C, H, W]`` under direct coding.

        Evaluation mode (hence analysis, the integer engine and exports) and sequences always run the
        literal per-step network.
        """
        return self.stem_once and self.training and x.dim() == 4 and isinstance(self.encoder, DirectEncoder)

    def forward_head(self, x: Tensor, pre_logits: bool = False, per_step: bool = False) -> Tensor:
        raise NotImplementedError

    def reset_classifier(self, num_classes: int) -> None:
        raise NotImplementedError

    def residual_blocks(self) -> dict[str, nn.Module]:
        """Qualified name (as in ``named_modules()``) -> residual block, in forward order.

        A block is the unit with a shortcut around it: the slot memory saving
        recomputes (:func:`spikevision.train.memory_saving.enable_memory_saving`) and
        the gradient-flow probes measure (:mod:`spikevision.analysis.isometry`).
        A network without residual blocks returns ``{}``.
        """
        raise NotImplementedError(f"{type(self).__name__} does not say which modules are its residual blocks; "
                                  "implement residual_blocks() (return {} if it has none)")

    def _children_of(self, *containers: str) -> dict[str, nn.Module]:
        """``{"<container>.<i>": child}`` for each named container, in order (a helper for ``residual_blocks``)."""
        return {f"{c}.{i}": m for c in containers for i, m in self.get_submodule(c).named_children()}

    def forward(self, x: Tensor, per_step: bool = False) -> Tensor:
        """Logits of images ``[B, C, H, W]`` or sequences ``[T, B, C, H, W]``.

        Args:
            x: the input.
            per_step: logits of every time step ``[T, B, classes]`` (for TET losses) instead of
                their mean over time ``[B, classes]``.

        Raises:
            TypeError: a float input of another dtype than the weights (a float64 batch into a float32
                model), which torch reports deep inside the forward pass; and see :meth:`check_input`.
        """
        try:
            seq = self.encode(x)  # checks the input; direct coding is a view
            features = self.forward_features_static(x) if self.runs_stem_once(x) else self.forward_features(seq)
            return self.forward_head(features, per_step=True) if per_step else self.forward_head(features)
        except RuntimeError as e:
            weight = next((p for p in self.parameters() if p.is_floating_point()), None)
            if (weight is None or not isinstance(x, Tensor) or not x.is_floating_point() or x.dtype == weight.dtype
                    or "type" not in str(e).lower()):
                raise
            raise TypeError(f"{type(self).__name__} has {weight.dtype} weights but got a {x.dtype} input; "
                            f"convert the input (x.to({weight.dtype})) or the model (model.to({x.dtype}))") from e
