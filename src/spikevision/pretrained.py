"""What a pretrained model expects: its preprocessing, class names and card, and the eval transform that matches.

timm's ``pretrained_cfg`` + ``resolve_data_config`` + ``create_transform``, for spikevision::

    import spikevision
    from PIL import Image

    model = spikevision.create_model("ms_resnet_mini", pretrained="fashion_mnist").eval()
    transform = spikevision.create_transform(model)          # resize, to [0, 1], normalise
    probs = model(transform(Image.open("shirt.png")).unsqueeze(0)).softmax(-1)
    print(model.pretrained_cfg.class_names[int(probs.argmax())])

Every shipped model was trained on normalised pixels ``(x - mean) / std`` (the data
set's statistics, :mod:`spikevision.data.constants`, unless its recipe overrode
them); fed raw ``[0, 1]`` pixels it is wrong most of the time (``ms_resnet_mini``:
94.45% becomes about 35% on Fashion-MNIST). :class:`PretrainedCfg` is derived from
the model card's recorded ``config.data`` section, the settings that training really
applied, so it cannot disagree with the weights.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping

if TYPE_CHECKING:
    from PIL.Image import Image
    from torch import Tensor, nn

__all__ = ["PretrainedCfg", "Preprocessing", "pretrained_cfg_from_card", "preprocessing_of", "resolve_data_config",
           "create_transform"]


@dataclass(frozen=True)
class Preprocessing:
    """How an image becomes the model's input ``[C, H, W]`` (the eval transform's settings).

    Attributes:
        input_size: ``(C, H, W)`` the model takes.
        mean, std: per-channel normalisation, for pixels scaled to ``[0, 1]``.
        interpolation: resize filter, ``"bilinear"`` or ``"bicubic"``.
        crop_pct: for data sets of varying image size (ImageNet): resize the short side to
            ``H / crop_pct`` and centre-crop ``H x W``; None: resize straight to ``H x W``.
    """

    input_size: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    interpolation: str = "bilinear"
    crop_pct: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (tuples as lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


@dataclass(frozen=True)
class PretrainedCfg:
    """Everything a pretrained model needs besides its weights (``model.pretrained_cfg``).

    Attributes:
        model: registered builder name.
        tag: what the weights were trained on (``"fashion_mnist"``).
        dataset: data set name (:func:`spikevision.data.get_dataset_info`).
        preprocessing: the eval transform's settings (:class:`Preprocessing`).
        T: time steps the card was measured with.
        num_classes: outputs.
        class_names: label ``i`` is ``class_names[i]``.
        model_kwargs: the builder's keyword arguments the weights were trained with.
        card: the whole model card (test accuracy, energy, recipe, license, citation, ...).
    """

    model: str
    tag: str
    dataset: str
    preprocessing: Preprocessing
    T: int
    num_classes: int
    class_names: tuple[str, ...]
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    card: dict[str, Any] = field(default_factory=dict, repr=False)

    # timm's names, so code written for timm's pretrained_cfg reads these too
    @property
    def mean(self) -> tuple[float, ...]:
        return self.preprocessing.mean

    @property
    def std(self) -> tuple[float, ...]:
        return self.preprocessing.std

    @property
    def input_size(self) -> tuple[int, int, int]:
        return self.preprocessing.input_size

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (no card): what ``config.json`` of :func:`spikevision.hub.save_pretrained` holds."""
        return {"model": self.model, "tag": self.tag, "dataset": self.dataset, "T": self.T,
                "num_classes": self.num_classes, "class_names": list(self.class_names),
                "model_kwargs": dict(self.model_kwargs), "preprocessing": self.preprocessing.to_dict()}


def preprocessing_of(dataset: str, data: Mapping[str, Any] | None = None,
                     model_kwargs: Mapping[str, Any] | None = None) -> Preprocessing:
    """The eval preprocessing of a model trained on ``dataset`` with the recipe's ``data`` section.

    Args:
        dataset: data set name.
        data: the recorded ``data:`` section (``mean``/``std``/``img_size``/``interpolation``/``crop_pct``;
            None or missing keys: the data set's defaults, as :mod:`spikevision.data.transforms` resolves them).
        model_kwargs: the builder's kwargs (``in_chans`` changes C).

    Raises:
        UnknownDatasetError: an unknown data set (a ``ValueError``).
    """
    from spikevision.data.info import get_dataset_info

    info = get_dataset_info(dataset)
    data = dict(data or {})
    mean = data.get("mean") if data.get("mean") is not None and data.get("std") is not None else info.mean
    std = data.get("std") if data.get("mean") is not None and data.get("std") is not None else info.std
    size = data.get("img_size") or info.img_size
    chans = (model_kwargs or {}).get("in_chans") or info.in_channels
    return Preprocessing(input_size=(int(chans), int(size), int(size)),
                         mean=tuple(float(v) for v in mean), std=tuple(float(v) for v in std),
                         interpolation=data.get("interpolation") or "bilinear",
                         crop_pct=float(data.get("crop_pct") or 0.875) if info.variable_size else None)


def pretrained_cfg_from_card(card: Mapping[str, Any]) -> PretrainedCfg:
    """The :class:`PretrainedCfg` of a model card (:mod:`spikevision.weights`).

    Preprocessing comes from the card's recorded ``config.data`` (what training applied); class
    names from the card, else the data set's (:data:`spikevision.data.constants.CLASS_NAMES`).

    Raises:
        ValueError: a card without a known data set.
    """
    from spikevision.data.constants import CLASS_NAMES

    dataset = card.get("dataset")
    if not isinstance(dataset, str):
        raise ValueError(f"model card of {card.get('model')!r} names no data set; its preprocessing is unknown")
    kwargs = dict(card.get("model_kwargs") or {})
    data = (card.get("config") or {}).get("data") or {}
    prep = preprocessing_of(dataset, data, kwargs)
    names = tuple(card.get("class_names") or CLASS_NAMES.get(dataset, ()))
    num_classes = int(kwargs.get("num_classes") or len(names))
    if not names:
        names = tuple(str(i) for i in range(num_classes))
    return PretrainedCfg(model=str(card["model"]), tag=str(card.get("tag")), dataset=dataset, preprocessing=prep,
                         T=int(card.get("T") or kwargs.get("T") or 1), num_classes=num_classes,
                         class_names=names, model_kwargs=kwargs, card=dict(card))


def resolve_data_config(source: "nn.Module | PretrainedCfg | Preprocessing | Mapping[str, Any]",
                        dataset: str | None = None) -> Preprocessing:
    """The eval preprocessing of a model, a :class:`PretrainedCfg`, a model card, or a data set.

    Args:
        source: a model built with ``pretrained=`` (it carries ``pretrained_cfg``), a
            :class:`PretrainedCfg`, a :class:`Preprocessing` (returned as is), or a model card mapping.
            A model without ``pretrained_cfg`` (random or your own weights) needs ``dataset``.
        dataset: the data set the model was trained on, for a model without ``pretrained_cfg``
            (its default statistics and size; your recipe's ``data.mean/std`` if it set them are
            not known here: build :class:`Preprocessing` yourself then).

    Raises:
        ValueError: a model without ``pretrained_cfg`` and no ``dataset``; an unknown data set.
        TypeError: anything else.
    """
    if isinstance(source, Preprocessing):
        return source
    if isinstance(source, PretrainedCfg):
        return source.preprocessing
    if isinstance(source, Mapping):
        return pretrained_cfg_from_card(source).preprocessing
    cfg = getattr(source, "pretrained_cfg", None)
    if isinstance(cfg, PretrainedCfg):
        return cfg.preprocessing
    from torch import nn

    if not isinstance(source, nn.Module):
        raise TypeError(f"resolve_data_config takes a model, a PretrainedCfg, a Preprocessing or a model card, "
                        f"got {type(source).__name__}")
    if dataset is None:
        raise ValueError(f"{type(source).__name__} has no pretrained_cfg (not built with pretrained=...); pass the "
                         "data set it was trained on: resolve_data_config(model, dataset='fashion_mnist')")
    kwargs = {k: getattr(source, k) for k in ("in_chans", "img_size") if isinstance(getattr(source, k, None), int)}
    return preprocessing_of(dataset, {"img_size": kwargs.get("img_size")}, kwargs)


class _ToMode:
    """PIL image to mode ``L`` (1 channel) or ``RGB`` (3 channels); other images pass unchanged."""

    def __init__(self, channels: int) -> None:
        self.mode = {1: "L", 3: "RGB"}.get(channels)

    def __call__(self, img: "Image") -> "Image":
        from PIL import Image as PILImage

        if self.mode and isinstance(img, PILImage.Image) and img.mode != self.mode:
            return img.convert(self.mode)
        return img

    def __repr__(self) -> str:
        return f"{type(self).__name__}(mode={self.mode!r})"


def create_transform(source: "nn.Module | PretrainedCfg | Preprocessing | Mapping[str, Any]",
                     dataset: str | None = None) -> Callable[["Image"], "Tensor"]:
    """The eval transform of ``source`` (see :func:`resolve_data_config`): PIL image in, ``[C, H, W]`` float out.

    Converts to the model's channels (``L`` or ``RGB``), resizes to its input size (ImageNet-style
    data: resize then centre crop), scales to ``[0, 1]`` and normalises with the training mean/std.
    On the data set's own images it gives exactly what the training pipeline's evaluation gave.

    Raises:
        ValueError, TypeError: see :func:`resolve_data_config`.
    """
    from torchvision import transforms as T  # imported here: torchvision takes ~1 s to import

    prep = resolve_data_config(source, dataset)
    c, h, w = prep.input_size
    interp = {"bilinear": T.InterpolationMode.BILINEAR, "bicubic": T.InterpolationMode.BICUBIC}[prep.interpolation]
    if prep.crop_pct is not None:
        resize = [T.Resize(int(round(h / prep.crop_pct)), interpolation=interp), T.CenterCrop((h, w))]
    else:
        resize = [T.Resize((h, w), interpolation=interp)]
    return T.Compose([_ToMode(c), *resize, T.ToTensor(), T.Normalize(prep.mean, prep.std)])
