"""Run the spikevision CLI (tiny test model registered) and SIGKILL it at optimiser step ``KILL_AT_STEP``.

No handler can run after SIGKILL: as if the machine died. ``KILL_AT_STEP=0`` never kills. Used through
:func:`train_support.run_killed_at`.
"""

import os
import signal
import sys

import torch

import tiny_model  # noqa: F401  (registers tiny_snn_test)
from spikevision.cli import main


def _kill_at(step_number: int) -> None:
    """Make the ``step_number``-th ``SGD.step`` of this process SIGKILL it."""
    real_step = torch.optim.SGD.step
    calls = 0

    def killing_step(self, *args, **kwargs):
        nonlocal calls
        calls += 1
        if calls == step_number:
            os.kill(os.getpid(), signal.SIGKILL)
        return real_step(self, *args, **kwargs)

    torch.optim.SGD.step = killing_step


if __name__ == "__main__":
    torch.set_num_threads(1)
    _kill_at(int(os.environ["KILL_AT_STEP"]))
    sys.exit(main(sys.argv[1:]))
