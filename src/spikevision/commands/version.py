"""``spikevision version``."""

import argparse
import platform


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    import torch

    import spikevision
    from spikevision.layers.spike_conv import spike_conv_status
    from spikevision.neuron import native_status, triton_status

    print(f"spikevision {spikevision.__version__}")
    print(f"torch {torch.__version__} (CUDA available: {torch.cuda.is_available()})")
    print(f"Python {platform.python_version()}")
    print(f"CPU neurons: {native_status()}")
    print(f"CUDA neurons: {triton_status()}")
    print(f"CPU spike convolutions (training): {spike_conv_status()}")
    return 0
