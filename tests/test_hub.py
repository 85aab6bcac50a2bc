"""save_pretrained / from_pretrained: a folder round trip, the Hub model card, and a repo id from an offline cache.

Nothing touches the network: the repo id is served from a fake Hugging Face cache under
``tmp_path`` with ``HF_HUB_OFFLINE=1``, in a child process (huggingface_hub reads its
environment at import).
"""

import json
import os
import subprocess
import sys

import pytest
import torch
import yaml

import spikevision
from spikevision.hub import CONFIG_FILE, README_FILE, WEIGHTS_FILE
from spikevision.weights import WEIGHTS_DIR

#: the shipped card, read from its file (what the folder must carry over)
CARD = json.loads((WEIGHTS_DIR / "mlp_spe_mini.fashion_mnist.json").read_text())


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    model = spikevision.create_model("mlp_spe_mini", pretrained="fashion_mnist").eval()
    return model, spikevision.save_pretrained(model, tmp_path_factory.mktemp("hub") / "mlp_spe_mini-fmnist")


def test_round_trip_through_a_folder(saved):
    model, folder = saved
    assert sorted(p.name for p in folder.iterdir()) == sorted([CONFIG_FILE, WEIGHTS_FILE, README_FILE])
    loaded = spikevision.from_pretrained(folder).eval()
    x = torch.randn(4, 1, 28, 28)
    assert torch.equal(model(x), loaded(x))
    assert loaded.pretrained_cfg.to_dict() == model.pretrained_cfg.to_dict()
    assert loaded.pretrained_cfg.card["test_top1"] == CARD["test_top1"]
    assert spikevision.from_pretrained(folder, T=4).T == 4  # T is free, other kwargs must agree
    with pytest.raises(ValueError, match=f"dim=8 \\(trained with {CARD['model_kwargs']['dim']}\\)"):
        spikevision.from_pretrained(folder, dim=8)
    config = json.loads((folder / CONFIG_FILE).read_text())
    assert config["library_name"] == "spikevision" and config["pretrained_cfg"]["preprocessing"]["std"] == [0.353]


def test_readme_carries_the_hub_metadata(saved):
    text = (saved[1] / README_FILE).read_text()
    meta = yaml.safe_load(text.split("---")[1])
    assert meta["license"] == "bsd-3-clause" and meta["library_name"] == "spikevision"
    assert meta["pipeline_tag"] == "image-classification" and meta["datasets"] == ["zalando-datasets/fashion_mnist"]
    assert "spiking-neural-network" in meta["tags"]
    result = meta["model-index"][0]["results"][0]
    assert result["metrics"][0] == {"type": "accuracy", "value": CARD["test_top1"], "name": "Test top-1 (%)"}
    for part in ("## Limitations", "## Intended use", "@article{li2024efficient", "0 T-shirt/top", "mean [0.286]"):
        assert part in text, part


def test_model_without_card_needs_its_name(tmp_path):
    model = spikevision.create_model("spiking_cnn_mini", T=2, num_classes=3)
    with pytest.raises(ValueError, match="model_name="):
        spikevision.save_pretrained(model, tmp_path / "x")
    folder = spikevision.save_pretrained(model, tmp_path / "x", model_name="spiking_cnn_mini",
                                         model_kwargs={"T": 2, "num_classes": 3})
    loaded = spikevision.from_pretrained(folder)
    assert loaded.num_classes == 3 and loaded.pretrained_cfg is None  # no data set known: no preprocessing
    assert "model-index" not in (folder / README_FILE).read_text()


def test_errors_name_the_problem(tmp_path, saved):
    with pytest.raises(FileNotFoundError, match="neither a folder"):
        spikevision.from_pretrained(tmp_path / "missing" / "deeper")
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / CONFIG_FILE).write_text(json.dumps({"library_name": "transformers", "model_type": "vit"}))
    (tmp_path / "foreign" / WEIGHTS_FILE).write_bytes(b"")
    with pytest.raises(ValueError, match="library_name='transformers'"):
        spikevision.from_pretrained(tmp_path / "foreign")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="lacks config.json, model.safetensors"):
        spikevision.from_pretrained(tmp_path / "empty")
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    for f in (CONFIG_FILE, README_FILE):
        (damaged / f).write_bytes((saved[1] / f).read_bytes())
    (damaged / WEIGHTS_FILE).write_bytes((saved[1] / WEIGHTS_FILE).read_bytes()[:100])
    with pytest.raises(ValueError, match="damaged"):
        spikevision.from_pretrained(damaged)


def _fake_hub_cache(hf_home, repo_id, folder, commit="0123456789abcdef0123456789abcdef01234567"):
    """The layout huggingface_hub's cache has after a download: refs/main -> snapshots/<commit>/<files>."""
    repo = hf_home / "hub" / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    snap = repo / "snapshots" / commit
    snap.mkdir(parents=True)
    for f in folder.iterdir():
        (snap / f.name).write_bytes(f.read_bytes())


def test_repo_id_resolves_from_the_offline_cache(tmp_path, saved):
    _fake_hub_cache(tmp_path / "hf", "someone/mlp_spe_mini-fmnist", saved[1])
    code = ("import spikevision, torch\n"
            "m = spikevision.from_pretrained('someone/mlp_spe_mini-fmnist').eval()\n"
            "print(m.pretrained_cfg.class_names[9])\n"
            "try:\n"
            "    spikevision.from_pretrained('someone/not-cached')\n"
            "except FileNotFoundError as e:\n"
            "    print('refused:', e)\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    env.pop("HF_HUB_CACHE", None)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "Ankle boot"
    assert lines[1].startswith("refused: someone/not-cached is not in the Hugging Face cache"), lines[1]
