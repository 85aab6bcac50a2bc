"""Run the spikevision CLI like ``_entry.py``, with one rank that freezes (for the frozen-rank tests).

Environment: ``FREEZE_RANK`` (the rank that stops itself with SIGSTOP at the start of its
``FREEZE_AT``-th training forward, as a debugger, a swapped-out node or a hung driver would leave it) and
``SIGNAL_GRACE_S`` (the grace after SIGTERM, shortened from 20 s to keep the test short).
"""

import os
import signal
import sys

import torch

import tiny_model
from spikevision.cli import main
from spikevision.train import engine


def _freeze_at(rank: int, step: int) -> None:
    forward_features = tiny_model.TinySNN.forward_features
    calls = 0

    def frozen(self, x):
        nonlocal calls
        if self.training:
            calls += 1
            if calls == step and int(os.environ["RANK"]) == rank:
                os.kill(os.getpid(), signal.SIGSTOP)
        return forward_features(self, x)

    tiny_model.TinySNN.forward_features = frozen


if __name__ == "__main__":
    torch.set_num_threads(1)
    _freeze_at(int(os.environ["FREEZE_RANK"]), int(os.environ["FREEZE_AT"]))
    engine.SIGNAL_GRACE_S = float(os.environ["SIGNAL_GRACE_S"])
    sys.exit(main(sys.argv[1:]))
