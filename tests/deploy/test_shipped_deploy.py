"""Every family's shipped Fashion-MNIST model deploys to the native integer runtime: bit-exact with the Python
integer engine, and agreeing with the float model on real test images (>= 99%, at the weight width its card
verified on all 10,000: ``spikevision deploy NAME --pretrained fashion_mnist``, docs/deploy.md)."""

from __future__ import annotations

import dataclasses
import os

import pytest
import torch

from spikevision.deploy.engine import EngineConfig, compile_integer
from spikevision.deploy.source import load_source, resolve_weight_bits
from spikevision.deploy.targets.native import compile_native

FASHION_MNIST = "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz"
IMAGES, EXACT = 256, 16


@pytest.mark.skipif(not os.path.isfile(FASHION_MNIST), reason="needs dataset-fashion-mnist")
@pytest.mark.parametrize("name", ["ms_resnet_mini", "gac_ms_resnet_mini", "mlp_spe_mini", "sresnet20"])
def test_shipped_model_deploys_natively_bit_exact_and_agrees_with_float(name):
    from spikevision.data import build_loader

    src = load_source(name, pretrained="fashion_mnist")
    data = dataclasses.replace(src.data, eval_batch_size=IMAGES, device="cpu", num_workers=0)
    x, _ = next(iter(build_loader(data, "test")))
    im = compile_integer(src.model, x[:2], EngineConfig(weight_bits=resolve_weight_bits(None, src)))
    native = compile_native(im, x[:2])
    with torch.no_grad():
        q = native.logits_q(x)
        assert torch.equal(q[:EXACT], im.forward_q(x[:EXACT]))  # the Python engine is the reference
        agree = (q.argmax(-1) == src.model(x).argmax(-1)).double().mean().item()
    assert agree >= 0.99, f"{name}: native integer model agrees with float on {agree:.2%} of {IMAGES} test images"
