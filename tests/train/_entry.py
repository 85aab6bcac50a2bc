"""Run the spikevision CLI with the tiny test model registered (for subprocess and torchrun tests)."""

import sys

import torch

import tiny_model  # noqa: F401  (registers tiny_snn_test)
from spikevision.cli import main

if __name__ == "__main__":
    torch.set_num_threads(1)
    sys.exit(main(sys.argv[1:]))
