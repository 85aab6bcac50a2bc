"""spikevision: deep spiking neural networks for vision.

Train, measure and deploy SNNs (spiking MLP, MS-ResNet, GAC, S-ResNet) with
fast stateless multi-step neurons. Every spiking tensor is time-major
``[T, B, ...]``.
"""

__version__ = "0.1.0"
