"""Cortex-M target: the C export cross-compiled for an MPS2 board and run in QEMU (see :mod:`.cortex_m`)."""

from spikevision.deploy.targets.cortex_m.cortex_m import (
    BOARDS, Board, BuildError, CortexMError, DoesNotFitError, MemoryUse, RunError, RunResult, Toolchain,
    ToolchainError, build_elf, find_toolchain, memory_use, run_elf,
)

__all__ = [
    "BOARDS", "Board", "BuildError", "CortexMError", "DoesNotFitError", "MemoryUse", "RunError", "RunResult",
    "Toolchain", "ToolchainError", "build_elf", "find_toolchain", "memory_use", "run_elf",
]
