"""Deployment: BN folding, the integer multiplication-free engine, the MFI audit, the native runtime, NIR, C,
ONNX and safetensors export.

The folders are the pipeline: ``engine/`` (a float model to the integer engine, the reference) ->
``ir/`` (a typed program, one dataclass per operation) -> ``targets/`` (C, the native runtime,
Cortex-M, NIR, ONNX); ``source.py`` and ``weights.py`` load what is deployed, ``audit.py`` reports it.

>>> from spikevision.deploy import fold_bn, compile_integer, audit_model, export_nir
>>> folded, pairs = fold_bn(model, example)           # float model with BN folded
>>> integer = compile_integer(model, example)         # IntegerModel (adds, shifts, compares)
>>> report = audit_model(model, example)              # which layers still multiply, and why
>>> print(report.to_markdown())
>>> export_nir(model, example, "model.nir")           # or NIRExportError naming the layer
>>> native = compile_native(integer, example)          # the same model as compiled C, bit-exact with `integer`
>>> export_c(model, example, "out_dir", name="snn")    # snn.h, snn.c, main.c; or CExportError naming the layer
>>> program = lower(integer, example)                  # the typed program the C targets emit

See docs/deploy.md. The ``nir`` package is needed only by the NIR export
(``pip install spikevision[deploy]``).
"""

from spikevision.deploy.engine.arithmetic import ArithmeticCounter, MultiplicationError
from spikevision.deploy.audit import AuditReport, audit_model, compare_models
from spikevision.deploy.targets.c.export import CExport, CExportError, export_c
from spikevision.deploy.engine import EngineConfig, IntegerModel, compile_integer
from spikevision.deploy.engine.fold import BNPair, find_bn_pairs, fold_bn
from spikevision.deploy.targets.native import NativeModel, compile_native
from spikevision.deploy.ir import Program, ProgramError, lower
from spikevision.deploy.targets.nir import NIRExportError, export_nir, to_nir
from spikevision.deploy.targets.onnx import ONNXExportError, export_onnx
from spikevision.deploy.weights import load_model, read_metadata, save_weights

__all__ = [
    "BNPair", "find_bn_pairs", "fold_bn",
    "EngineConfig", "IntegerModel", "compile_integer",
    "ArithmeticCounter", "MultiplicationError",
    "AuditReport", "audit_model", "compare_models",
    "NIRExportError", "export_nir", "to_nir", "ONNXExportError", "export_onnx",
    "Program", "ProgramError", "lower",
    "NativeModel", "compile_native", "CExport", "CExportError", "export_c",
    "save_weights", "load_model", "read_metadata",
]
