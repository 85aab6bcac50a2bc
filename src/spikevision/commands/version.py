"""``spikevision version``."""

import argparse
import platform


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    import torch

    import spikevision

    print(f"spikevision {spikevision.__version__}")
    print(f"torch {torch.__version__} (CUDA available: {torch.cuda.is_available()})")
    print(f"Python {platform.python_version()}")
    return 0
