import subprocess
import sys

import pytest

from spikevision.cli import main


def test_version_and_help(capsys):
    assert main(["version"]) == 0
    assert "spikevision" in capsys.readouterr().out
    out = subprocess.run([sys.executable, "-m", "spikevision", "--help"], capture_output=True, text=True, check=True)
    assert "COMMAND" in out.stdout


def test_smoke(capsys):
    assert main(["smoke", "--T", "2", "--batch-size", "2"]) == 0
    assert "all gradients finite: True" in capsys.readouterr().out


def test_output_into_a_closed_pipe_is_not_an_error():
    # `spikevision models | head -1`: the reader is gone; no BrokenPipeError traceback, exit 0
    import os

    r, w = os.pipe()
    os.close(r)  # closed before the command writes anything: every write fails with EPIPE
    p = subprocess.run([sys.executable, "-m", "spikevision", "models"], stdout=w, stderr=subprocess.PIPE,
                       timeout=120)
    os.close(w)
    err = p.stderr.decode()
    assert p.returncode == 0 and "Traceback" not in err and "BrokenPipe" not in err, err


@pytest.mark.parametrize("command", ["eval", "profile", "report"])
def test_commands_report_a_missing_run_the_same_way(command, tmp_path):
    """One line ``spikevision <command>: ...`` and exit status 1, never a traceback."""
    with pytest.raises(SystemExit, match=f"^spikevision {command}: run directory .*nowhere not found") as info:
        main([command, str(tmp_path / "nowhere")])
    assert info.value.code != 0
