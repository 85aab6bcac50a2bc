"""Deployment: BN folding, the integer multiplication-free engine, the MFI audit, NIR and safetensors export.

>>> from spikevision.deploy import fold_bn, compile_integer, audit_model
>>> folded, pairs = fold_bn(model, example)           # float model with BN folded
>>> integer = compile_integer(model, example)         # IntegerModel (adds, shifts, compares)
>>> report = audit_model(model, example)              # which layers still multiply, and why
>>> print(report.to_markdown())

See docs/deploy.md.
"""

from spikevision.deploy.engine import EngineConfig, IntegerModel, compile_integer
from spikevision.deploy.fold import BNPair, find_bn_pairs, fold_bn
from spikevision.deploy.ops import MultiplicationError, OpCounter

__all__ = [
    "BNPair", "find_bn_pairs", "fold_bn",
    "EngineConfig", "IntegerModel", "compile_integer",
    "OpCounter", "MultiplicationError",
]
