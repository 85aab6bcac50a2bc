"""train.keep_freed_memory: glibc keeps freed memory, so a training step's buffers are not mapped afresh
(page faults) every step."""

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = """
import resource, sys, torch
if sys.argv[1] == "keep":
    from spikevision.train.allocator import keep_freed_memory
    assert keep_freed_memory()
faults = []
for _ in range(4):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    x = torch.ones(4 << 20)  # 16 MiB, written, then freed: a step's activation
    del x
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(faults[-1])
"""


def _last_step_faults(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_kept_memory_is_reused_without_page_faults():
    assert _last_step_faults("keep") < 64  # 16 MiB of 4 KiB pages would be 4,096 faults
    thp = Path("/sys/kernel/mm/transparent_hugepage/enabled")
    if not (thp.exists() and "[always]" in thp.read_text()):  # huge pages would hide the faults
        assert _last_step_faults("plain") > 1000  # the default returns the block: the test can tell


@pytest.mark.parametrize("keep", [True, False])
def test_engine_applies_it_unless_turned_off(fmnist_root, tmp_path, recipe, monkeypatch, keep):
    import spikevision.train.engine as engine
    from spikevision.train.config import load_config
    from train_support import tiny_overrides

    calls = []
    monkeypatch.setattr(engine, "keep_freed_memory", lambda: calls.append(1) or True)
    extra = {} if keep else {"train.keep_freed_memory": False}
    tr = engine.setup(load_config(recipe, tiny_overrides(fmnist_root, tmp_path, **extra)))
    tr.lock.release()
    assert calls == ([1] if keep else [])
