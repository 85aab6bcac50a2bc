"""Run the C export on an emulated Cortex-M: cross-compile, link for an MPS2 board, run in QEMU.

The exported library (``spikevision export RUN --format c``: ``<name>.h``, ``<name>.c``) is linked
with this folder's start-up code (``startup.c``: vector table, reset handler), a board linker
script (``mps2_an386.ld``: Cortex-M4 with FPU, ``mps2_an500.ld``: Cortex-M7 with FPU) and
``runner.c``, which reads raw uint8 images from a host file and writes the class, the integer logits
and a timer reading per image back, both through Arm semihosting. QEMU runs it with
``-icount shift=0`` (one executed instruction = 1 ns of virtual time), so the timer readings convert
to executed instructions per inference; those are an emulator's instruction counts, not a chip's
cycles (no caches, wait states, pipeline or bus contention are modelled).

>>> tools = find_toolchain()                      # or ToolchainError naming the apt packages
>>> elf = build_elf("quickstart_c", "quickstart", BOARDS["mps2-an386"], "build/an386")
>>> memory_use(elf)                              # flash and RAM from arm-none-eabi-size
>>> result = run_elf(elf, BOARDS["mps2-an386"], images_u8)  # [N, C, H, W] uint8
>>> result.logits, result.instructions

Needs the Debian/Ubuntu packages ``gcc-arm-none-eabi``, ``libnewlib-arm-none-eabi`` (memset and
memcpy, which GCC may call) and ``qemu-system-arm``. See docs/deploy.md, "Deploy to a microcontroller".
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

__all__ = [
    "BOARDS", "Board", "BuildError", "CortexMError", "DoesNotFitError", "MemoryUse", "RunError", "RunResult",
    "Toolchain", "ToolchainError", "build_elf", "find_toolchain", "memory_use", "run_elf",
]

TARGET_DIR = Path(__file__).resolve().parent
APT_PACKAGES = ("gcc-arm-none-eabi", "libnewlib-arm-none-eabi", "qemu-system-arm")
STACK_BYTES = 0x4000  # the stack reserved after .bss (sections.ld); the runner measures its real use
IMAGES_FILE, LOGITS_FILE = "images.bin", "logits.txt"  # in QEMU's working directory (runner.c)
EXIT_STATUS = {1: "the runner could not open images.bin or logits.txt", 2: "images.bin ends inside an image",
               3: "the core faulted (the fault's name is in QEMU's output)"}


class CortexMError(RuntimeError):
    """Base of this module's errors: each message says what failed and what to do."""


class ToolchainError(CortexMError):
    """The cross-compiler, newlib or QEMU is not installed."""


class BuildError(CortexMError):
    """Compiling or linking failed (a model too large for the board is one case: the message says so)."""


class DoesNotFitError(BuildError):
    """The linked program is larger than the board's memory.

    Attributes:
        overflow: bytes over, per linker region (``FLASH``, ``RAM``).
    """

    def __init__(self, message: str, overflow: dict[str, int]) -> None:
        super().__init__(message)
        self.overflow = overflow


class RunError(CortexMError):
    """QEMU failed, timed out, or the runner's output is not what it writes."""


@dataclass(frozen=True)
class Board:
    """An MPS2 board model of QEMU and how to compile for its core.

    Attributes:
        machine: QEMU's ``-M`` name.
        core: the core, as a reader would say it.
        cflags: GCC's target options (core, FPU, float ABI).
        linker_script: file name in this folder (its comment gives the memory map).
        flash_bytes, ram_bytes: the regions the linker script gives code and data (the board's
            code and data SSRAMs, 4 MiB each).
    """

    machine: str
    core: str
    cflags: tuple[str, ...]
    linker_script: str
    flash_bytes: int = 4 << 20
    ram_bytes: int = 4 << 20


BOARDS: dict[str, Board] = {
    "mps2-an386": Board("mps2-an386", "Cortex-M4F",
                        ("-mthumb", "-mcpu=cortex-m4", "-mfpu=fpv4-sp-d16", "-mfloat-abi=hard"), "mps2_an386.ld"),
    "mps2-an500": Board("mps2-an500", "Cortex-M7",
                        ("-mthumb", "-mcpu=cortex-m7", "-mfpu=fpv5-d16", "-mfloat-abi=hard"), "mps2_an500.ld"),
}


@dataclass(frozen=True)
class Toolchain:
    """Paths of the cross tools and the emulator."""

    gcc: str
    size: str
    qemu: str


def find_toolchain() -> Toolchain:
    """Find ``arm-none-eabi-gcc``, ``arm-none-eabi-size``, newlib and ``qemu-system-arm`` on the PATH.

    Raises:
        ToolchainError: naming what is missing and the apt packages that install it.
    """
    tools = {tool: shutil.which(tool) for tool in ("arm-none-eabi-gcc", "arm-none-eabi-size", "qemu-system-arm")}
    missing = [tool for tool, path in tools.items() if path is None]
    if not missing:
        probe = subprocess.run([tools["arm-none-eabi-gcc"], "--specs=nano.specs", "-print-file-name=libc_nano.a"],
                               capture_output=True, text=True)
        if probe.returncode != 0 or not Path(probe.stdout.strip()).is_file():
            missing.append("newlib (libc_nano.a)")
    if missing:
        raise ToolchainError(f"missing {', '.join(missing)}; install them with "
                             f"`apt-get install {' '.join(APT_PACKAGES)}` (Debian/Ubuntu)")
    return Toolchain(tools["arm-none-eabi-gcc"], tools["arm-none-eabi-size"], tools["qemu-system-arm"])


def build_elf(export_dir: str | Path, name: str, board: Board, out_dir: str | Path, *,
              opt: str = "-O2", main_source: str | Path | None = None, toolchain: Toolchain | None = None,
              timeout_s: float = 600.0) -> Path:
    """Compile the export ``export_dir/<name>.c`` with the runner for ``board``; returns the ELF path.

    The model is compiled as C99 with warnings as errors, as the host test of the export does.
    The default ``main`` is ``runner.c`` (semihosting: a test harness for QEMU or a debugger); pass
    your own ``main_source`` (reading a sensor, writing a UART) for an image to flash on a board.

    Args:
        export_dir: the folder ``spikevision export --format c`` wrote.
        name: the export's ``--name`` (prefix of its header, functions and macros).
        board: one of :data:`BOARDS`.
        out_dir: where ``<name>.<machine>.elf`` is written (created).
        opt: GCC's optimisation option (``-O2`` for speed, ``-Os`` for size).
        main_source: a C file defining ``int main(void)`` instead of ``runner.c`` (it may use the
            macros ``SV_INFER``, ``SV_INPUT_SIZE`` and ``SV_CLASSES`` and ``#include SV_MODEL_HEADER``).
        toolchain: from :func:`find_toolchain` (found if not given).
        timeout_s: limit of the compiler run (a large model's weight tables take a while).

    Raises:
        ToolchainError: the cross tools are missing.
        FileNotFoundError: the export's header or source is not in ``export_dir``, or no ``main_source``.
        DoesNotFitError: the model does not fit the board's memory (a :class:`BuildError`).
        BuildError: the compiler or linker failed.
    """
    tools = toolchain or find_toolchain()
    export_dir, out_dir = Path(export_dir), Path(out_dir)
    main_file = Path(main_source) if main_source is not None else TARGET_DIR / "runner.c"
    for f in (export_dir / f"{name}.h", export_dir / f"{name}.c"):
        if not f.is_file():
            raise FileNotFoundError(f"{f} not found; write the export with "
                                    f"`spikevision export RUN --format c -o {export_dir} --name {name}`")
    if not main_file.is_file():
        raise FileNotFoundError(f"main_source {main_file} not found")
    out_dir.mkdir(parents=True, exist_ok=True)
    elf = out_dir / f"{name}.{board.machine}.elf"
    upper = name.upper()
    cmd = [tools.gcc, "-std=c99", opt, "-g", "-Wall", "-Wextra", "-Werror", *board.cflags,
           "-ffunction-sections", "-fdata-sections",
           "-I", str(export_dir), "-I", str(TARGET_DIR),
           f'-DSV_MODEL_HEADER="{name}.h"', f"-DSV_INFER={name}_infer",
           f"-DSV_INPUT_SIZE={upper}_INPUT_SIZE", f"-DSV_CLASSES={upper}_CLASSES",
           "-nostartfiles", "--specs=nano.specs", "--specs=nosys.specs",
           "-Wl,--gc-sections", f"-Wl,--defsym=SV_STACK_SIZE={STACK_BYTES}",
           "-L", str(TARGET_DIR), "-T", str(TARGET_DIR / board.linker_script), "-o", str(elf),
           str(TARGET_DIR / "startup.c"), str(main_file), str(export_dir / f"{name}.c")]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise BuildError(f"arm-none-eabi-gcc did not finish within {timeout_s:.0f} s for {export_dir}/{name}.c; "
                         "pass a longer timeout_s") from None
    if p.returncode != 0:
        overflow = {region: int(n) for region, n in re.findall(r"region `(\w+)' overflowed by (\d+) bytes",
                                                                p.stderr)}
        if overflow:
            over = ", ".join(f"{region} by {n:,} bytes" for region, n in overflow.items())
            raise DoesNotFitError(f"{name} does not fit {board.machine} ({board.core}: {board.flash_bytes >> 20} MiB "
                                  f"code, {board.ram_bytes >> 20} MiB data): {over}; export with --weight-bits 8 "
                                  "or a smaller model", overflow)
        raise BuildError(f"building {elf.name} failed:\n{p.stderr.strip()}")
    return elf


@dataclass(frozen=True)
class MemoryUse:
    """An ELF's memory from ``arm-none-eabi-size -A`` (bytes).

    Attributes:
        flash: what the chip's flash holds: vector table, code, const data (the network's weights and
            tables) and the initial values of ``.data``.
        ram: ``.data + .bss`` (the network's state and the runner's buffers) plus the stack, either the
            reserve (``stack``) or, when given, the measured peak.
        sections: every allocated section's size.
        stack: the stack counted in ``ram``.
    """

    flash: int
    ram: int
    sections: dict[str, int]
    stack: int


def memory_use(elf: str | Path, *, stack_bytes: int | None = None, toolchain: Toolchain | None = None) -> MemoryUse:
    """Flash and RAM of ``elf`` from ``arm-none-eabi-size -A``.

    Args:
        elf: a file :func:`build_elf` wrote.
        stack_bytes: the stack to count in RAM (e.g. :attr:`RunResult.stack_bytes`, the measured peak);
            default the reserve of the linker script.
        toolchain: from :func:`find_toolchain`.

    Raises:
        ToolchainError: ``arm-none-eabi-size`` is missing. FileNotFoundError: no such file.
        BuildError: ``arm-none-eabi-size`` cannot read the file.
    """
    tools = toolchain or find_toolchain()
    if not Path(elf).is_file():
        raise FileNotFoundError(f"{elf} not found; build it with build_elf")
    p = subprocess.run([tools.size, "-A", str(elf)], capture_output=True, text=True)
    if p.returncode != 0:
        raise BuildError(f"arm-none-eabi-size cannot read {elf}: {p.stderr.strip()}")
    sections = {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\.\S+)\s+(\d+)\s+\d+\s*$", p.stdout, re.M)}
    flash_sections = (".vectors", ".text", ".rodata", ".ARM.exidx", ".data")
    flash = sum(sections.get(s, 0) for s in flash_sections)
    stack = sections.get(".stack", 0) if stack_bytes is None else stack_bytes
    ram = sections.get(".data", 0) + sections.get(".bss", 0) + stack
    return MemoryUse(flash, ram, {s: n for s, n in sections.items() if s in (*flash_sections, ".bss", ".stack")},
                     stack)


@dataclass(frozen=True)
class RunResult:
    """What the runner printed for a batch of images.

    Attributes:
        classes: ``[N]`` the export's predicted class per image.
        logits: ``[N, K]`` int64, the export's logits (``value / (LOGIT_DIVISOR * 2^FRAC_BITS)`` is the
            real-valued logit; ``/ LOGIT_DIVISOR`` equals ``IntegerModel.forward_q``).
        instructions: ``[N]`` executed instructions per inference (timer ticks times the calibrated
            instructions per tick; resolution one tick, 40 instructions on the MPS2 boards' 25 MHz clock).
        instructions_per_tick: the calibration (a loop of known length).
        stack_bytes: the deepest the stack grew during the whole run.
        wall_s: the emulator's wall-clock time.
    """

    classes: np.ndarray
    logits: np.ndarray
    instructions: np.ndarray
    instructions_per_tick: float
    stack_bytes: int
    wall_s: float


def _parse(text: str, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, int]:
    lines = text.splitlines()
    if len(lines) != n + 2 or not lines[0].startswith("calibration ") or not lines[-1].startswith("stack "):
        raise RunError(f"the runner wrote {len(lines)} lines for {n} images (expected {n + 2}: calibration, "
                       f"one per image, stack); first line {lines[0] if lines else '(none)'!r}")
    _, loop_insns, loop_ticks = lines[0].split()
    if int(loop_ticks) <= 0:
        raise RunError("the board's timer did not advance during calibration; is QEMU run with -icount?")
    per_tick = int(loop_insns) / int(loop_ticks)
    rows = [[int(v) for v in line.split()] for line in lines[1:-1]]
    if len({len(r) for r in rows}) != 1 or len(rows[0]) < 3:
        raise RunError("the runner's image lines differ in length (expected the class, the logits, the ticks)")
    table = np.array(rows, dtype=np.int64)
    instructions = np.rint(table[:, -1] * per_tick).astype(np.int64)
    return table[:, 0], table[:, 1:-1], instructions, per_tick, int(lines[-1].split()[1])


def run_elf(elf: str | Path, board: Board, images: np.ndarray | Sequence[bytes], *, timeout_s: float = 600.0,
            toolchain: Toolchain | None = None) -> RunResult:
    """Run ``elf`` on ``board`` in QEMU over ``images``; returns classes, logits and instruction counts.

    Args:
        elf: from :func:`build_elf` for the same board.
        board: one of :data:`BOARDS`.
        images: uint8 ``[N, C, H, W]`` (or ``[N, C*H*W]``) pixels in the export's order, or raw bytes per image.
        timeout_s: the emulator's limit; it only catches a hang (an emulated core never waits).
        toolchain: from :func:`find_toolchain`.

    Raises:
        ToolchainError: QEMU is missing. ValueError: no images, or not uint8.
        RunError: QEMU failed or timed out, or the runner reported an error (message and exit status).
    """
    tools = toolchain or find_toolchain()
    if isinstance(images, np.ndarray):
        if images.dtype != np.uint8:
            raise ValueError(f"images must be uint8 pixels, got {images.dtype}")
        data, n = np.ascontiguousarray(images).tobytes(), images.shape[0]
    else:
        data, n = b"".join(images), len(images)
    if n == 0:
        raise ValueError("no images to run")
    cmd = [tools.qemu, "-M", board.machine, "-nodefaults", "-nic", "none", "-display", "none", "-monitor", "none",
           "-serial", "null", "-semihosting-config", "enable=on,target=native", "-icount", "shift=0",
           "-kernel", str(Path(elf).resolve())]
    with tempfile.TemporaryDirectory(prefix="sv_cortex_m_") as tmp:
        (Path(tmp) / IMAGES_FILE).write_bytes(data)
        start = time.perf_counter()
        try:
            p = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise RunError(f"QEMU ({board.machine}) did not finish {n} images within {timeout_s:.0f} s") from None
        wall = time.perf_counter() - start
        if p.returncode != 0:
            why = EXIT_STATUS.get(p.returncode, "QEMU failed")
            raise RunError(f"{Path(elf).name} on {board.machine} exited with status {p.returncode} ({why}): "
                           f"{(p.stderr or p.stdout).strip()[-2000:]}")
        out = Path(tmp) / LOGITS_FILE
        if not out.is_file():
            raise RunError(f"the runner wrote no {LOGITS_FILE}; QEMU said: {p.stderr.strip()[-2000:]}")
        cls, logits, insns, per_tick, stack = _parse(out.read_text(), n)
    return RunResult(cls, logits, insns, per_tick, stack, wall)
