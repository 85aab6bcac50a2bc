"""The deploy outputs quoted in docs/deploy.md are what the code prints today.

Each quoted sample sits between ``<!-- sample: KEY -->`` and ``<!-- /sample -->`` and is regenerated
here from what ships with spikevision (pretrained weights) and the real test images, so a change to
the engine, the audit or the weights that alters it fails this test. To refresh a sample after an
intended change: ``python tests/deploy/test_doc_samples.py --write``.
"""

from __future__ import annotations

import dataclasses
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "deploy.md"
FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz")
BLOCK = re.compile(r"(<!-- sample: (?P<key>[^>]+?) -->\n)(?P<body>.*?)(<!-- /sample -->)", re.S)


def _audit_sample(name: str, tag: str = "fashion_mnist", images: int = 16) -> str:
    """``spikevision deploy NAME --pretrained TAG``'s audit table: the shipped weights on the first test images."""
    from spikevision.data import build_loader
    from spikevision.deploy.audit import audit_model
    from spikevision.deploy.source import load_source

    src = load_source(name, pretrained=tag)
    data = dataclasses.replace(src.data, eval_batch_size=images, device="cpu", num_workers=0)
    x, _ = next(iter(build_loader(data, "test")))
    return audit_model(src.model, x).to_markdown()


#: sample key -> what regenerates it
SAMPLES = {"audit mlp_spe_mini pretrained=fashion_mnist": lambda: _audit_sample("mlp_spe_mini")}


def _quoted() -> dict[str, str]:
    return {m.group("key"): m.group("body") for m in BLOCK.finditer(DOC.read_text())}


def test_every_quoted_sample_has_a_generator():
    assert set(_quoted()) == set(SAMPLES)


@pytest.mark.skipif(not FASHION_MNIST.is_file(), reason="needs the Debian package dataset-fashion-mnist")
@pytest.mark.parametrize("key", sorted(SAMPLES))
def test_quoted_sample_is_current(key):
    assert _quoted()[key] == SAMPLES[key](), (
        f"docs/deploy.md's sample '{key}' has drifted; if the change is intended, run "
        "`python tests/deploy/test_doc_samples.py --write`")


def _write() -> None:
    text = DOC.read_text()
    for key, make in SAMPLES.items():
        body = make()
        text = BLOCK.sub(lambda m: m.group(1) + body + m.group(4) if m.group("key") == key else m.group(0), text)
    DOC.write_text(text)


if __name__ == "__main__" and "--write" in sys.argv:
    _write()
