"""spikevision: deep spiking neural networks for vision.

Train, measure and deploy SNNs (spiking MLP, MS-ResNet, GAC, S-ResNet) with
fast stateless multi-step neurons. Every spiking tensor is time-major
``[T, B, ...]``.

The top-level API, as in timm (imported on first use, so ``import spikevision`` stays light)::

    import spikevision
    spikevision.list_models("ms_resnet*", pretrained=True)      # ['ms_resnet_mini']
    model = spikevision.create_model("ms_resnet_mini", pretrained="fashion_mnist").eval()
    transform = spikevision.create_transform(model)              # its eval preprocessing
    spikevision.save_pretrained(model, "my_model")               # config.json, model.safetensors, README.md
    model = spikevision.from_pretrained("my_model")              # a folder or a Hugging Face repo id
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["__version__", "create_model", "list_models", "get_model_info", "resolve_data_config",
           "create_transform", "PretrainedCfg", "save_pretrained", "from_pretrained"]

# public name -> module that defines it (imported by __getattr__ on first use)
_LAZY = {
    "create_model": "spikevision.models.factory",
    "get_model_info": "spikevision.models.registry",
    "resolve_data_config": "spikevision.pretrained",
    "create_transform": "spikevision.pretrained",
    "PretrainedCfg": "spikevision.pretrained",
    "save_pretrained": "spikevision.hub",
    "from_pretrained": "spikevision.hub",
}

if TYPE_CHECKING:
    from spikevision.hub import from_pretrained, save_pretrained
    from spikevision.models.factory import create_model
    from spikevision.models.registry import get_model_info
    from spikevision.pretrained import PretrainedCfg, create_transform, resolve_data_config


def list_models(pattern: str | None = None, *, pretrained: bool = False, family: str | None = None) -> list[str]:
    """Names of the registered models, sorted by family then name (timm's ``list_models``).

    Args:
        pattern: shell-style wildcard on the name (``"ms_resnet*"``).
        pretrained: only models with shipped weights (``create_model(name, pretrained=tag)``).
        family: only one family (``"ms_resnet"``).

    :func:`spikevision.models.list_models` gives the full registry entries (paper, T, input size, tags).

    Example:
        >>> import spikevision
        >>> spikevision.list_models("ms_resnet*", pretrained=True)
        ['ms_resnet_mini']
    """
    from spikevision.models.registry import list_models as _list

    return [i.name for i in _list(family, pattern=pattern, pretrained=pretrained)]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'spikevision' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
