import subprocess
import sys

from spikevision.cli import main


def test_version_and_help(capsys):
    assert main(["version"]) == 0
    assert "spikevision" in capsys.readouterr().out
    out = subprocess.run([sys.executable, "-m", "spikevision", "--help"], capture_output=True, text=True, check=True)
    assert "COMMAND" in out.stdout


def test_smoke(capsys):
    assert main(["smoke", "--T", "2", "--batch-size", "2"]) == 0
    assert "all gradients finite: True" in capsys.readouterr().out
