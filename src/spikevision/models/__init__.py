"""Model zoo: every architecture of the four papers (plus the quickstart's plain CNN), built by name.

>>> from spikevision.models import create_model, list_models
>>> model = create_model("ms_resnet18", num_classes=1000, T=6)
"""

from spikevision.models.base import SpikingClassifier
from spikevision.models.registry import ModelInfo, UnknownModelError, get_model_info, list_models, register_model
from spikevision.models.factory import create_model

# Family modules register their builders on import (keep this list sorted).
# (families are added here as they land)
from spikevision.models import gac, ms_resnet  # noqa: F401,E402
from spikevision.models import spiking_cnn, spiking_mlp  # noqa: F401,E402
from spikevision.models import sresnet  # noqa: F401,E402

__all__ = [
    "SpikingClassifier", "ModelInfo", "UnknownModelError",
    "create_model", "get_model_info", "list_models", "register_model",
]
