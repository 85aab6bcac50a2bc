"""The native event-driven integer runtime: the C export of a model, compiled for this CPU.

:func:`compile_native` lowers a compiled :class:`~spikevision.deploy.engine.IntegerModel`
(:mod:`spikevision.deploy.ir.lower`), generates its C source
(:mod:`spikevision.deploy.targets.c.codegen`, the same generator as ``spikevision export --format c``)
and builds it on first use with the system C compiler, like the CPU neuron kernel
(:mod:`spikevision.native_build`: a private cache keyed by a hash of the source, so a
model is compiled once per machine, and each library's hash checked before it is loaded; ``-O3 -march=native``, falling back to plain ``-O3``).

Why a generated, per-model library rather than a generic kernel library: every shape,
stride and table is a compile-time constant, so the compiler unrolls and vectorises the
inner loops (the int32 accumulation of a weight column is a few vector adds), there is no
dispatch between layers, and the runtime *is* the C export: testing one tests the other.

The batch is split over ``torch.get_num_threads()`` Python threads (ctypes releases the
GIL; :func:`spikevision.native_build.run_parallel`, as for the CPU neuron kernel), each with its
own state; a sample is never split. Results are bit-exact with the
Python engine (``IntegerModel.forward_q``), which stays the reference.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import time

import torch
from torch import Tensor

from spikevision.atomic import write_atomic
from spikevision.deploy.targets.c.codegen import CSource, generate_c
from spikevision.native_build import cache_dir, load_library, run_parallel, split_ranges
from spikevision.deploy.engine import IntegerModel
from spikevision.deploy.ir import Program, lower

__all__ = ["NativeModel", "compile_native"]

_FLAGS = ["-O3", "-std=c99", "-shared", "-fPIC", "-DSV_NATIVE_RUNTIME", "-ffp-contract=fast"]
# GCC's unroll-and-jam fuses two events' weight columns into one scalar loop (measured 4x slower on the
# event-driven conv); off where the compiler knows the flag
_VARIANTS = (["-march=native", "-fno-loop-unroll-and-jam"], ["-march=native"], [])
_NAME = "sv_model"
_ARENA_DTYPES = {"a64": torch.int64, "ad": torch.float64, "a32": torch.int32, "a16": torch.uint16, "a8": torch.uint8}


def _build(source: CSource) -> ctypes.CDLL:
    """Write the source into the private build cache (by its hash) and load the library built from it."""
    digest = hashlib.sha256((source.c + source.h).encode()).hexdigest()[:16]
    folder = cache_dir("deploy", digest)
    c_file = folder / f"{_NAME}.c"
    for path, text in ((folder / f"{_NAME}.h", source.h), (c_file, source.c)):
        if not path.exists() or path.read_text() != text:
            write_atomic(path, text)
    lib = load_library(c_file, "sv_runtime", _FLAGS, _VARIANTS)
    lib.sv_model_state_bytes.restype = ctypes.c_long
    lib.sv_model_run_batch.restype = None
    for fn in (lib.sv_model_run_batch, lib.sv_model_run_batch_f32):
        fn.restype = None
        fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p]
    return lib


class NativeModel:
    """A model running on the native runtime; call it like the float model.

    Attributes:
        program: the lowered program. source: the generated C (with flash/RAM figures).
        integer_model: the Python engine it reproduces.
    """

    def __init__(self, integer_model: IntegerModel, program: Program, source: CSource, lib: ctypes.CDLL) -> None:
        self.integer_model, self.program, self.source, self.lib = integer_model, program, source, lib
        self.state_bytes = int(lib.sv_model_state_bytes())
        if self.state_bytes != source.ram_bytes:
            raise RuntimeError(f"the compiled state has {self.state_bytes} bytes, the generator laid out "
                               f"{source.ram_bytes}: the compiler pads the struct differently")
        self.in_numel, self.classes = program.input.size, program.output.numel
        self._states: dict[int, Tensor] = {}
        self.build_seconds = 0.0  # lowering, code generation and compilation (set by compile_native)

    def _state(self, worker: int) -> Tensor:
        if worker not in self._states:
            self._states[worker] = torch.zeros(self.state_bytes // 8 + 8, dtype=torch.int64)
        return self._states[worker]

    def forward_q(self, xq: Tensor) -> Tensor:
        """Output numerators (int64 ``[B, classes]``) from quantised input (int64 or integer-valued float64)."""
        return self._run(self.lib.sv_model_run_batch, xq.to(torch.int64).contiguous())

    def forward_numerators(self, x: Tensor) -> Tensor:
        """Output numerators from float input, quantised in C exactly as ``IntegerModel.quantize`` does."""
        if x.dtype != torch.float32:
            return self.forward_q(self.integer_model.quantize(x))
        return self._run(self.lib.sv_model_run_batch_f32, x.contiguous())

    def _run(self, fn, x: Tensor) -> Tensor:
        if self.program.input.time:  # event frames [T, B, ...]: the C input holds one sample's steps in a row
            x = x.transpose(0, 1).contiguous()
        B = x.shape[0]
        if x[0].numel() != self.in_numel:
            raise ValueError(f"expected {self.in_numel} input values per sample ({list(self.program.input.shape)}), "
                             f"got shape {list(x.shape)}")
        out = torch.empty(B, self.classes, dtype=torch.int64)
        ranges = split_ranges(B, torch.get_num_threads())  # a sample is never split; one state per range
        run_parallel([functools.partial(fn, x.data_ptr(), out.data_ptr(), lo, hi, self._state(i).data_ptr())
                      for i, (lo, hi) in enumerate(ranges)])
        return out

    def buffers(self, x: Tensor) -> dict[str, Tensor]:
        """Run one sample (``x[:1]``) and return every buffer of the state after the run, by storage name:
        spike buffers as uint8 ``[steps, *shape]``, others int32 or int64 (as stored). Meaningful for every buffer only when
        compiled with ``share_buffers=False`` (else later buffers reuse earlier ones' memory)."""
        with torch.no_grad():
            self.forward_q(self.integer_model.quantize(x[:, :1] if self.program.input.time else x[:1]))
        raw = self._state(0).view(torch.uint8)
        out = {}
        for name, (offset, size, arena) in self.source.layout.items():
            dtype = _ARENA_DTYPES[arena]
            width = torch.empty(0, dtype=dtype).element_size()
            out[name] = raw[offset:offset + size * width].view(dtype).clone()
        return out

    def logits_q(self, x: Tensor) -> Tensor:
        """What ``IntegerModel.forward_q`` returns (float64, fixed point), bit for bit."""
        num = self.forward_numerators(x)
        return num.double() / self.program.output.divisor if self.program.output.divisor != 1 else num.double()

    def __call__(self, x: Tensor) -> Tensor:
        """Logits (float64) equal to ``IntegerModel(x)``."""
        return self.logits_q(x) / 2.0**self.program.frac_bits


def compile_native(integer_model: IntegerModel, example: Tensor, *, share_buffers: bool = True) -> NativeModel:
    """Build the native runtime for ``integer_model``.

    Args:
        integer_model: from :func:`~spikevision.deploy.engine.compile_integer`.
        example: one valid input batch (shapes only).
        share_buffers: buffers with disjoint lifetimes share memory (default); False keeps every
            buffer for :meth:`NativeModel.buffers`.

    Raises:
        ProgramError: a layer the runtime cannot express (named).
        RuntimeError, OSError: the C compiler failed or is missing.
    """
    start = time.perf_counter()
    program = lower(integer_model, example)
    # int64 buffers, a byte per spike, int32 event lists: the microcontroller layout's savings cost time here
    source = generate_c(program, _NAME, integer_model.cfg.weight_bits, share_buffers=share_buffers,
                        memory="fast", native=True)
    native = NativeModel(integer_model, program, source, _build(source))
    native.build_seconds = round(time.perf_counter() - start, 2)
    return native
