"""Run the spikevision CLI like ``_entry.py``, with one rank that freezes (for the frozen-rank tests).

Environment: ``FREEZE_RANK`` (the rank that stops itself with SIGSTOP in its ``FREEZE_AT``-th training step,
as a debugger, a swapped-out node or a hung driver would leave it), ``FREEZE_IN`` (``forward``: at the start of
that step's forward, before any of its collectives; ``backward``: in its backward, after the step's loss
all-reduce, so the other rank has certainly read its stop flag for the step and will block in the gradient
all-reduce) and ``SIGNAL_GRACE_S`` (the grace after SIGTERM, shortened from 20 s to keep the test short).
"""

import os
import signal
import sys

import torch

import tiny_model
from spikevision.cli import main
from spikevision.train import engine


def _stop_self(*_) -> None:
    os.kill(os.getpid(), signal.SIGSTOP)


def _freeze_at(rank: int, step: int, where: str) -> None:
    forward_features = tiny_model.TinySNN.forward_features
    calls = 0

    def frozen(self, x):
        nonlocal calls
        freeze = False
        if self.training:
            calls += 1
            freeze = calls == step and int(os.environ["RANK"]) == rank
        if freeze and where == "forward":
            _stop_self()
        out = forward_features(self, x)
        if freeze and where == "backward":
            out.register_hook(_stop_self)  # runs in the backward pass, after the forward's collectives
        return out

    tiny_model.TinySNN.forward_features = frozen


if __name__ == "__main__":
    torch.set_num_threads(1)
    _freeze_at(int(os.environ["FREEZE_RANK"]), int(os.environ["FREEZE_AT"]), os.environ.get("FREEZE_IN", "forward"))
    engine.SIGNAL_GRACE_S = float(os.environ["SIGNAL_GRACE_S"])
    sys.exit(main(sys.argv[1:]))
