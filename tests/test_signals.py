"""Every command stopped by SIGINT exits 130 and by SIGTERM 143, with one line on stderr, never a traceback.

``train`` and ``study`` save a checkpoint first (tests/train/test_engine.py, test_study.py); the other
commands are stopped wherever they are. In-process for every command, plus real processes sent real signals.
"""

import importlib
import os
import signal
import subprocess
import sys
import time

import pytest

from spikevision.cli import COMMANDS, main

DRIVER = """
import importlib, sys, time
command = sys.argv[1]
module = importlib.import_module("spikevision.commands." + command)
def run(args):
    print("ready", flush=True)
    time.sleep(600)  # stands for the command's work; the test signals it now
module.run = run
from spikevision.cli import main
sys.exit(main([command, *sys.argv[2:]]))
"""


def _stop_with(signum: int):
    def run(args):
        if signum == signal.SIGINT:
            raise KeyboardInterrupt  # what Python's SIGINT handler raises
        os.kill(os.getpid(), signum)
        time.sleep(30)  # the handler raises before this ends
        raise AssertionError("SIGTERM did not stop the command")

    return run


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("command", sorted(set(COMMANDS) - {"train", "study"}))
def test_every_command_stops_with_one_line(command, signum, monkeypatch, capsys, tmp_path):
    module = importlib.import_module(COMMANDS[command][0])
    monkeypatch.setattr(module, "run", _stop_with(signum))
    argv = {"recipes": [], "models": [], "version": [], "smoke": [],
            "export": [str(tmp_path / "x"), "--format", "nir", "-o", str(tmp_path / "y")]}.get(command, [str(tmp_path / "x")])
    before = signal.getsignal(signal.SIGTERM)
    assert main([command, *argv]) == 128 + signum
    err = capsys.readouterr().err
    assert err == f"spikevision {command}: stopped by {signal.Signals(signum).name}\n"
    assert signal.getsignal(signal.SIGTERM) is before  # the CLI's handler is removed again


@pytest.mark.parametrize("command, signum", [("eval", signal.SIGINT), ("export", signal.SIGTERM)])
def test_real_signal_to_a_real_process(command, signum, tmp_path):
    extra = ["--format", "nir", "-o", "out.nir"] if command == "export" else []
    p = subprocess.Popen([sys.executable, "-c", DRIVER, command, "run", *extra], cwd=tmp_path,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline() == "ready\n"
        p.send_signal(signum)
        _, err = p.communicate(timeout=120)  # a hang guard only
    finally:
        p.kill()
    assert p.returncode == 128 + signum, err
    assert err == f"spikevision {command}: stopped by {signal.Signals(signum).name}\n"
    assert os.listdir(tmp_path) == []


def test_a_forked_child_dies_of_sigterm_as_by_default():
    """DataLoader workers inherit the handler; in them SIGTERM keeps its default meaning."""
    import multiprocessing as mp

    from spikevision import cli

    before = signal.signal(signal.SIGTERM, cli._raise_stopped)
    try:
        child = mp.get_context("fork").Process(target=time.sleep, args=(60,))
        child.start()
        child.join(0.2)
        os.kill(child.pid, signal.SIGTERM)
        child.join(60)  # a hang guard only
        assert child.exitcode == -signal.SIGTERM
    finally:
        signal.signal(signal.SIGTERM, before)
