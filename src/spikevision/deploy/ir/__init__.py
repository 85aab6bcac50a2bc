"""Stage 2 of the deploy pipeline: the integer engine lowered to a typed program (one dataclass per operation).

:mod:`~spikevision.deploy.ir.ops` defines the buffers and operations; :func:`~spikevision.deploy.ir.lower.lower`
turns an :class:`~spikevision.deploy.engine.IntegerModel` into a :class:`~spikevision.deploy.ir.ops.Program`
that every target (C, the native runtime, microcontrollers) emits op by op.
"""

from spikevision.deploy.ir.lower import lower
from spikevision.deploy.ir.ops import (
    Add, Affine, Buf, Concat, Gate, Mean, Neuron, Op, Permute, Pool, Program, ProgramError, Relu, Synapse,
)

__all__ = ["lower", "Program", "ProgramError", "Buf", "Op", "Synapse", "Pool", "Neuron", "Affine", "Add", "Mean",
           "Permute", "Concat", "Relu", "Gate"]
