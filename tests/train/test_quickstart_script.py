"""``scripts/quickstart.sh``, the README's main job, end to end on a tiny Fashion-MNIST in the real format.

It runs the set-up script too (about 10 s once the environment is there), as a user's first command does.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_quickstart_reports_on_the_run_it_trained_wherever_it_went(fmnist_root, tmp_path):
    out = tmp_path / "elsewhere"
    env = {**os.environ, "SPIKEVISION_VENV": sys.prefix, "RUN_NAME": "ignored"}
    p = subprocess.run(["bash", str(ROOT / "scripts" / "quickstart.sh"), f"data.root={fmnist_root}",
                        f"run.out_dir={out}", "run.name=mine", "train.epochs=1", "data.batch_size=16",
                        "data.eval_batch_size=20", "data.num_workers=0", "train.threads=1", "run.progress=off"],
                       env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout + p.stderr
    assert (out / "mine" / "checkpoints" / "last.pt").is_file()
    assert f"== summary of {out}/mine ==" in p.stdout, p.stdout
    assert "test accuracy    top-1" in p.stdout and "wall time" in p.stdout, p.stdout
