"""Shared helpers for the bench scripts: timing, peak memory, machine facts, tables.

Rules every bench follows (DESIGN.md, "Testing and measuring"):

* contenders run **interleaved** in one process (A, B, C, A, B, C, ...), so
  machine load hits all of them alike; report medians and ratios;
* peak CPU memory is measured in a **fresh subprocess per configuration**
  whose glibc allocator returns freed blocks to the OS (:data:`CPU_ALLOCATOR_ENV`):
  the child runs warm-up steps (weights, gradients and optimizer state are
  then allocated), resets the kernel's resident-set high-water mark
  (``/proc/self/clear_refs``), runs one more step and reports ``VmHWM``
  minus the resident size before that step. On CUDA the peak is
  ``torch.cuda.max_memory_allocated`` minus the allocation before the step;
* every table is printed with the machine, library versions, thread count,
  load average and the exact command, so a reader can rerun it.

Import from a bench script run as ``python bench/<name>.py`` (the script's
folder is first on ``sys.path``)::

    from common import interleaved_times, spawn_worker, machine_lines, markdown_table
"""

from __future__ import annotations

import gc
import json
import os
import platform
import random
import shlex
import statistics
import subprocess
import sys
import time
from importlib import metadata
from typing import Any, Callable, Mapping, Sequence

import torch

__all__ = [
    "synchronize", "interleaved_times", "median", "rss_bytes", "reset_peak_rss", "peak_rss_bytes",
    "measure_step_peak", "spawn_worker", "worker_entry", "machine_lines", "package_version",
    "markdown_table", "fmt_ratio", "MIB", "CPU_ALLOCATOR_ENV",
]

MIB = 1024.0 * 1024.0
#: glibc malloc settings for memory workers: every block above 64 KiB is its own
#: mmap, returned to the OS when freed (a fixed threshold also disables glibc's
#: adaptive one). Without this, memory freed by a warm-up step stays resident,
#: the next step reuses it, and the measured peak above the steady state is ~0.
CPU_ALLOCATOR_ENV = {"MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "0"}
_WORKER_FLAG = "--worker"


# ---------------------------------------------------------------------------
# timing
# ---------------------------------------------------------------------------


def synchronize(device: torch.device | str) -> None:
    """Wait for queued kernels (CUDA); a no-op on CPU. Put one before every clock read."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def median(xs: Sequence[float]) -> float:
    return float(statistics.median(xs))


def interleaved_times(contenders: Mapping[str, Callable[[], Any]], *, reps: int, warmup: int,
                      device: torch.device | str = "cpu", shuffle_seed: int | None = 0) -> dict[str, list[float]]:
    """Wall time in seconds of each call, contenders interleaved round by round.

    Args:
        contenders: name -> zero-argument callable (one unit of work, e.g. one
            optimizer step).
        reps: timed rounds; each round calls every contender once.
        warmup: untimed rounds first (allocator, caches, lazy init).
        device: synchronised before and after each call.
        shuffle_seed: the order inside each round is shuffled with this seed
            (None keeps the given order), so no contender always runs first.

    Returns:
        name -> list of ``reps`` times (seconds).
    """
    names = list(contenders)
    rng = random.Random(shuffle_seed)
    for _ in range(warmup):
        for name in names:
            contenders[name]()
    synchronize(device)
    times: dict[str, list[float]] = {n: [] for n in names}
    for _ in range(reps):
        order = names[:]
        if shuffle_seed is not None:
            rng.shuffle(order)
        for name in order:
            synchronize(device)
            t0 = time.perf_counter()
            contenders[name]()
            synchronize(device)
            times[name].append(time.perf_counter() - t0)
    return times


# ---------------------------------------------------------------------------
# memory
# ---------------------------------------------------------------------------


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status (Linux only)")


def rss_bytes() -> int:
    """Current resident set size of this process (Linux ``VmRSS``)."""
    return _status_kib("VmRSS") * 1024


def peak_rss_bytes() -> int:
    """Resident-set high-water mark since start or the last :func:`reset_peak_rss` (``VmHWM``)."""
    return _status_kib("VmHWM") * 1024


def reset_peak_rss() -> bool:
    """Reset ``VmHWM`` to the current RSS (Linux >= 4.0); False where the kernel refuses."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def measure_step_peak(step: Callable[[], Any], device: torch.device | str) -> int:
    """Peak bytes one call of ``step`` needs above the state before it.

    CPU: ``VmHWM`` after minus ``VmRSS`` before (call it in a fresh process
    after warm-up steps; freed memory that glibc keeps cached is counted as in
    use by the next step, so a fresh process is the fair baseline). CUDA:
    ``max_memory_allocated`` after minus ``memory_allocated`` before.
    """
    gc.collect()
    if torch.device(device).type == "cuda":
        synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        step()
        synchronize(device)
        return torch.cuda.max_memory_allocated(device) - before
    if not reset_peak_rss():
        raise RuntimeError("cannot reset the peak RSS (/proc/self/clear_refs); run on Linux >= 4.0")
    before = rss_bytes()
    step()
    return peak_rss_bytes() - before


def spawn_worker(script: str, payload: Mapping[str, Any], timeout: float = 1800.0) -> dict[str, Any]:
    """Run ``python script --worker '<json payload>'`` and return the JSON it prints last.

    The script must call :func:`worker_entry` first thing in ``main`` so the
    child does its one measurement and exits. The child runs with
    :data:`CPU_ALLOCATOR_ENV`, so its resident size follows live tensors.
    """
    cmd = [sys.executable, script, _WORKER_FLAG, json.dumps(dict(payload))]
    env = {**os.environ, **CPU_ALLOCATOR_ENV}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"worker failed ({proc.returncode}) for {dict(payload)}:\n{proc.stderr[-3000:]}")
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    return json.loads(lines[-1])


def worker_entry(handler: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
    """If this process was started by :func:`spawn_worker`, run ``handler`` on the payload, print, exit."""
    if len(sys.argv) >= 3 and sys.argv[1] == _WORKER_FLAG:
        result = handler(json.loads(sys.argv[2]))
        print(json.dumps(result), flush=True)
        sys.exit(0)


# ---------------------------------------------------------------------------
# reporting
# ---------------------------------------------------------------------------


def package_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def machine_lines(device: torch.device | str, packages: Sequence[str] = ("torch", "spikevision")) -> list[str]:
    """Facts to print under every table: machine, versions, threads, load, command."""
    dev = torch.device(device)
    if dev.type == "cuda":
        hw = f"{torch.cuda.get_device_name(dev)} (CUDA {torch.version.cuda})"
    else:
        hw = f"{_cpu_model()}, {os.cpu_count()} logical CPUs"
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    versions = ", ".join(f"{p} {package_version(p)}" for p in packages)
    return [
        f"- machine: {hw}; {platform.system()} {platform.release()}; Python {platform.python_version()}",
        f"- versions: {versions}",
        f"- torch threads: {torch.get_num_threads()}; load average (1, 5, 15 min) at the end: {load}",
        f"- command: `{' '.join(shlex.quote(a) for a in [os.path.relpath(sys.argv[0])] + sys.argv[1:])}`",
    ]


def fmt_ratio(x: float | None) -> str:
    return "-" if x is None or x != x else f"{x:.2f}x"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub markdown table; numbers are printed as given (format them first)."""
    cells = [[str(c) for c in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    line = lambda r: "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |"  # noqa: E731
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(headers), sep, *(line(r) for r in cells)])
