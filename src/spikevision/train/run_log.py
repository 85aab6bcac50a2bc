"""What a training run writes for people: progress lines for a log file, and ``metrics.jsonl`` kept
consistent with the checkpoint when a run resumes."""

from __future__ import annotations

import json
import logging
import os
import platform
import time
from pathlib import Path
from typing import Callable, Iterable, Iterator

log = logging.getLogger(__name__)

__all__ = ["progress_lines", "trim_metrics", "machine_description", "machine_history", "UNRECORDED_MACHINE"]

#: what stands for the machines of a run's training before it recorded them (a checkpoint of an older version)
UNRECORDED_MACHINE = "not recorded (trained before spikevision recorded machines)"


def _duration(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


def progress_lines(it: Iterable, total: int, desc: str, every_s: float, clock: Callable[[], float] = time.monotonic,
                   done: int = 0, status: Callable[[], str] | None = None) -> Iterator:
    """Yield from ``it``, logging a plain progress line every ``every_s`` seconds: progress for a log file.

    A line reads ``epoch 3: 120/469 batches (26%), 4.10 batches/s, about 1m25s left, loss 0.4321``.
    It is written after a batch once ``every_s`` seconds of ``clock`` have passed since the last line
    (or the start), never after the last batch; so which batches get a line depends only on ``clock``.

    Args:
        it: the batches (``total - done`` of them).
        total: batches in the whole pass; ``done``: batches already done before ``it`` (a resumed epoch).
        desc: what runs (``"epoch 3"``).
        every_s: seconds between lines.
        clock: seconds, monotonic (``time.monotonic``; tests give a fake one).
        status: extra text for each line (e.g. the running loss).
    """
    start = last = clock()
    for i, item in enumerate(it, 1):
        yield item
        now = clock()
        if now - last >= every_s and done + i < total:
            rate = i / max(now - start, 1e-9)
            extra = f", {status()}" if status is not None else ""
            log.info(f"{desc}: {done + i}/{total} batches ({100 * (done + i) / total:.0f}%), {rate:.2f} batches/s, "
                     f"about {_duration((total - done - i) / rate)} left{extra}")
            last = now


def trim_metrics(path: Path, epochs_done: int) -> None:
    """Keep the records of the epochs the checkpoint has finished: a run stopped after writing an
    epoch's line but before saving its checkpoint redoes that epoch, which then has one line, not two.
    A torn last line (a crash mid-write) goes too; every dropped line is named in the log."""
    if not path.is_file():
        return
    kept, dropped = [], []
    for line in path.read_text().splitlines():
        try:
            epoch = json.loads(line).get("epoch")
        except (ValueError, AttributeError):
            epoch = None
        (kept if isinstance(epoch, int) and epoch < epochs_done else dropped).append(line)
    if dropped:
        log.info(f"--resume: {len(dropped)} line(s) of {path.name} beyond the checkpoint's {epochs_done} finished "
                 f"epoch(s) dropped (they are redone): {'; '.join(d[:80] for d in dropped)}")
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text("".join(k + "\n" for k in kept))
        tmp.replace(path)


def machine_description() -> str:
    """CPU model, core count, OS and torch version of this machine (one line)."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, torch {torch.__version__}"


def machine_history(saved: list[str] | None, resumed: bool, here: str | None = None) -> list[str]:
    """The machines a run has trained on, this one (``here``, default :func:`machine_description`) last.

    ``saved`` is the checkpoint's list (None when a resumed checkpoint predates the record: its earlier
    training is :data:`UNRECORDED_MACHINE`). A machine is listed again only after another one, so a run
    resumed on the same machine keeps one entry.
    """
    history = list(saved) if saved else [UNRECORDED_MACHINE] if resumed else []
    here = machine_description() if here is None else here
    return history if history and history[-1] == here else history + [here]
