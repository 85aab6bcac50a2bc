"""Training: typed configs, the engine (one loop, AMP, DDP), losses, optimisers, checkpoints.

Entry points: :func:`~spikevision.train.config.load_config`,
:func:`~spikevision.train.engine.train`, :func:`~spikevision.train.engine.evaluate`;
see ``docs/training.md``.
"""

from spikevision.train.config import Config, ConfigError, load_config
from spikevision.train.engine import NonFiniteLossError, TrainingInterrupted, evaluate, fit, setup, train

__all__ = ["Config", "ConfigError", "load_config", "train", "fit", "setup", "evaluate", "NonFiniteLossError",
           "TrainingInterrupted"]
