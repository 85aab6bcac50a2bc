"""ONNX export through ``torch.onnx.export(..., dynamo=True)``, checked against PyTorch before the file is kept.

:func:`export_onnx` traces the float model with the ``torch.export``-based exporter
(batch size left dynamic), runs the graph in ONNX Runtime on sample inputs, compares the
logits with the PyTorch model's, and only then moves the file into place (written next to
it under a temporary name, then renamed: no half-written or unchecked file is ever left).
A graph that disagrees is refused with :class:`ONNXExportError`.

Why not the TorchScript-based exporter (``dynamo=False``, the default of many scripts):
for these models it writes a graph **with no inputs**. The example batch ends up baked
into the graph as a constant (``mlp_spe_mini``'s graph starts with a BatchNormalization of
a Constant), so the file returns the example's logits, the same class for every image,
and neither torch nor ONNX warns. ``torch.export`` (``dynamo=True``) captures the
multi-step neuron loop as operations on the input, and the check here proves it on an
input the exporter never saw.

Needs ``onnx``, ``onnxscript`` (the dynamo exporter) and ``onnxruntime`` (the check):
``pip install onnx onnxscript onnxruntime`` (in a checkout: ``pip install '.[onnx]'``).
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from torch import Tensor, nn

__all__ = ["export_onnx", "ONNXExport", "ONNXExportError", "ONNX_PACKAGES"]

#: what ``spikevision[onnx]`` installs: the exporter's and the checker's packages
ONNX_PACKAGES = ("onnx", "onnxscript", "onnxruntime")


class ONNXExportError(ValueError):
    """The model cannot be exported, or the exported graph disagrees with PyTorch; nothing was written."""


@dataclass(frozen=True)
class ONNXExport:
    """What :func:`export_onnx` wrote and how it was checked.

    Attributes:
        path: the ``.onnx`` file.
        input_name: the graph's input (batch dimension dynamic).
        checked_batches: shapes of the inputs run through both PyTorch and ONNX Runtime.
        max_abs_diff: largest logit difference seen.
        opset: the ONNX opset of the graph.
    """

    path: Path
    input_name: str
    checked_batches: tuple[tuple[int, ...], ...]
    max_abs_diff: float
    opset: int


def _need_packages() -> None:
    import importlib.util

    missing = [p for p in ONNX_PACKAGES if importlib.util.find_spec(p) is None]
    if missing:
        raise ONNXExportError(f"ONNX export needs {', '.join(missing)}: pip install {' '.join(ONNX_PACKAGES)} "
                              "(in a checkout: pip install '.[onnx]')")


def _check_inputs(example: Tensor, batch_dim: int, seed: int) -> list[Tensor]:
    """The example and a batch of another size drawn like normalised images (proves the dynamic batch)."""
    gen = torch.Generator().manual_seed(seed)
    shape = list(example.shape)
    shape[batch_dim] = example.shape[batch_dim] + 3
    return [example, torch.randn(shape, generator=gen, dtype=example.dtype)]


def export_onnx(model: nn.Module, example: Tensor, path: str | Path, *, opset: int | None = None,
                atol: float = 1e-4, rtol: float = 1e-4, check_inputs: Sequence[Tensor] | None = None,
                seed: int = 0) -> ONNXExport:
    """Export ``model`` to ONNX at ``path``, keeping the file only if ONNX Runtime agrees with PyTorch.

    Args:
        model: a float model (put in eval mode here).
        example: one input batch: images ``[B, C, H, W]`` or event frames ``[T, B, C, H, W]``; its
            batch dimension (``B``) is exported as dynamic.
        path: the ``.onnx`` file to write (replaced atomically).
        opset: ONNX opset (default: the exporter's).
        atol, rtol: allowed logit difference, ``|onnx - torch| <= atol + rtol * |torch|``; the predicted
            classes must also be equal.
        check_inputs: inputs to compare on (default: ``example`` and a random batch of another size).
        seed: seed of the default random check batch.

    Returns:
        :class:`ONNXExport`.

    Raises:
        ONNXExportError: the exporter cannot trace the model, a package is missing, or the graph's
            outputs differ from PyTorch's (the message gives the difference); nothing is written.
        OSError: the folder of ``path`` cannot be written.
    """
    _need_packages()
    import onnx
    import onnxruntime as ort

    path = Path(path)
    model = model.eval()
    batch_dim = 0 if example.dim() == 4 else 1
    inputs = list(check_inputs) if check_inputs is not None else _check_inputs(example, batch_dim, seed)
    batch = torch.export.Dim("batch", min=1)
    if example.shape[batch_dim] == 1:  # torch.export specialises a size-1 dimension to 1: trace with 2
        example = torch.cat([example, example], dim=batch_dim)
    fd, tmp = tempfile.mkstemp(dir=path.parent if str(path.parent) else ".", prefix=f".{path.name}.",
                               suffix=".tmp")
    os.close(fd)
    try:
        try:
            with torch.no_grad(), contextlib.redirect_stdout(io.StringIO()):  # the exporter prints its progress
                program = torch.onnx.export(model, (example,), dynamo=True, opset_version=opset,
                                            dynamic_shapes=({batch_dim: batch},), verbose=False)
                program.save(tmp)
        except Exception as e:  # the exporter raises many types; say which model and why, in one line
            raise ONNXExportError(f"torch.onnx.export (dynamo) cannot trace {type(model).__name__}: "
                                  f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else e}"
                                  ) from None
        session = ort.InferenceSession(tmp, providers=["CPUExecutionProvider"])
        graph_inputs = session.get_inputs()
        if len(graph_inputs) != 1:
            raise ONNXExportError(f"the exported graph has {len(graph_inputs)} inputs, expected 1 (the image batch)")
        name = graph_inputs[0].name
        worst, shapes = 0.0, []
        for x in inputs:
            with torch.no_grad():
                ref = model(x).float()
            try:
                got = torch.from_numpy(session.run(None, {name: x.detach().cpu().numpy()})[0]).float()
            except Exception as e:  # onnxruntime's own error types (a shape the graph does not take)
                raise ONNXExportError(f"ONNX Runtime cannot run the exported graph on an input of shape "
                                      f"{list(x.shape)}: {str(e).strip().splitlines()[0]}; not written") from None
            if got.shape != ref.shape:
                raise ONNXExportError(f"the exported graph returns shape {list(got.shape)} for input "
                                      f"{list(x.shape)}, PyTorch {list(ref.shape)}; not written")
            diff = float((got - ref).abs().max())
            worst = max(worst, diff)
            if not bool(((got - ref).abs() <= atol + rtol * ref.abs()).all()) or \
                    not torch.equal(got.argmax(-1), ref.argmax(-1)):
                raise ONNXExportError(f"the exported graph disagrees with PyTorch on an input of shape "
                                      f"{list(x.shape)} (largest logit difference {diff:.3g}, allowed {atol:g} + "
                                      f"{rtol:g} x |logit|); not written")
            shapes.append(tuple(x.shape))
        opset_used = next((o.version for o in onnx.load(tmp, load_external_data=False).opset_import
                           if o.domain in ("", "ai.onnx")), 0)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return ONNXExport(path, name, tuple(shapes), worst, int(opset_used))
