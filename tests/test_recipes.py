"""Every recipe in configs/ (one per paper setting): documented, valid, and trainable for one step.

Parametrised over the files, so a new recipe is tested automatically. For each recipe:

* the header documents itself (STYLE rule 8): paper, the authors' repository (a GitHub address, the
  header's only source besides the paper: no pointer to notes a user does not have), reproduced row,
  expected result, the exact single-process and torchrun commands naming this very file, one override
  example, unknowns; the
  override example is validated by the real config loader; ``run.name`` is the file's stem;
  docs/recipes.md lists the file;
* the recipe goes through the real loader and the real engine (:func:`~spikevision.train.engine.setup`
  then :func:`~spikevision.train.engine.fit`): its model, loss, optimiser, schedule, AMP setting,
  Mixup/CutMix and data pipeline (transforms, repeated-augmentation sampler, event-frame conversion) are
  built from the recipe, and one optimiser step plus one evaluation batch run on tiny files in the
  data set's real on-disk format. Only sizes are reduced: ``T = 2``, batch 2, one epoch of one batch, and ImageNet-size inputs
  at 32 x 32 (MS-ResNet and GAC are fully convolutional; the spiking MLP's per-token BN ties it to
  ``img_size``, so ``model.img_size`` follows). Checkpoint writing is skipped (tested in tests/train).
"""

from __future__ import annotations

import itertools
import math
import re
import shlex
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from spikevision.data import set_loader_epoch
from spikevision.data.constants import CIFAR10_DVS_CLASSES
from spikevision.data.events import encode_dvs128_address, write_aedat2
from spikevision.models.registry import get_model_info
from spikevision.train import engine
from spikevision.train.config import load_config

pytestmark = pytest.mark.heavy  # minutes in all (a model per recipe): scheduled first, tests/conftest.py

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
DOCS = ROOT / "docs" / "recipes.md"
RECIPES = sorted(p for p in CONFIGS.glob("*.yaml") if p.name != "quickstart.yaml")
SMALL_SIDE = 32  # reduced input side for 224-pixel recipes
TEST_T = 2
REPEAT_AUG_ROUND = 256  # timm's RepeatAugSampler serves floor(N / 256) * 256 samples per epoch


def _header(path: Path) -> list[str]:
    lines = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        lines.append(line[1:].strip())
    return lines


def _field(lines: list[str], label: str) -> str:
    found = [line[len(label):].strip() for line in lines if line.startswith(label)]
    assert len(found) == 1, f"expected exactly one header line starting with {label!r}, found {len(found)}"
    return found[0]


def test_there_are_recipes_for_every_family():
    names = {p.stem for p in RECIPES}
    for prefix in ("mlp_", "ms_resnet", "gac_", "sresnet"):
        assert any(n.startswith(prefix) for n in names), prefix


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_recipe_documents_itself(path):
    assert re.fullmatch(r"[a-z0-9_]+\.yaml", path.name), "recipe names: <family>_<variant>_<dataset>.yaml"
    lines = _header(path)
    assert lines and lines[0], "the recipe must open with a one-line title comment"
    text = "\n".join(lines)
    for label in ("Paper:", "Reproduces:", "Expected:"):
        assert _field(lines, label)
    paper = text[text.index("Paper:"):text.index("Reproduces:")]
    assert re.search(r"\(arXiv \d{4}\.\d{4,5}\)", paper), "cite the paper with its arXiv number"
    assert re.search(r"Authors' code: https://github\.com/[\w.-]+/[\w.-]+", paper), "cite the authors' repository"
    assert not re.search(r"\bspecs?\b", text, re.I), "the header must stand alone: no design-note pointers"
    assert "unknown" in text.lower(), "state the unknowns (or that there are none)"
    own = f"configs/{path.name}"
    single = _field(lines, "Single process:")
    assert single.startswith(f"spikevision train {own}"), single
    torchrun = [line for line in lines if line.split(":", 1)[-1].strip().startswith("torchrun ")]
    assert len(torchrun) == 1 and f"-m spikevision train {own}" in torchrun[0], "one torchrun command for this file"
    override = _field(lines, "Override example:")
    tokens = shlex.split(override)
    assert tokens[:3] == ["spikevision", "train", own], override
    assert len(tokens) > 3 and all("=" in t for t in tokens[3:]), override
    cfg = load_config(path, tokens[3:])  # the documented override is valid
    assert cfg.run.name != load_config(path).run.name or "run.name=" not in override
    for command in (single, torchrun[0].split(":", 1)[-1]):
        load_config(path, [t for t in shlex.split(command) if "=" in t and not t.startswith("--")])


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_recipe_run_name_and_docs(path):
    raw = yaml.safe_load(path.read_text())
    assert raw["run"]["name"] == path.stem, "run.name = the file's stem, so two recipes never share a run folder"
    assert f"configs/{path.name}" in DOCS.read_text(), f"list {path.name} in docs/recipes.md"


# ---------------------------------------------------------------------------
# tiny data sets in the real on-disk formats
# ---------------------------------------------------------------------------

def _write_image_folder(root: Path, n_train: int, rng: np.random.Generator) -> None:
    from PIL import Image

    for split, per_class in (("train", n_train // 2), ("val", 1)):
        for wnid in ("n01440764", "n01443537"):
            folder = root / split / wnid
            folder.mkdir(parents=True)
            for i in range(per_class):
                arr = rng.integers(0, 256, (SMALL_SIDE + 4, SMALL_SIDE + 8, 3), dtype=np.uint8)
                Image.fromarray(arr).save(folder / f"{wnid}_{i}.JPEG", format="JPEG")


def _write_dvs(root: Path, per_class: int, rng: np.random.Generator) -> None:
    for c in CIFAR10_DVS_CLASSES:
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            n = 40 + i
            t = np.sort(rng.integers(0, 100_000, n))
            addr = encode_dvs128_address(rng.integers(0, 128, n), rng.integers(0, 128, n), rng.integers(0, 2, n))
            write_aedat2(root / c / f"cifar10_{c}_{i}.aedat", t, addr)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory, idx_set, cifar_set):
    """``data_root(name)``: a folder holding a tiny copy of data set ``name`` (written once per module).

    Training splits hold 256+ samples where a recipe uses repeated augmentation (timm's sampler
    rounds each epoch down to a multiple of 256); test splits hold a few.
    """
    made: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in made:
            root = tmp_path_factory.mktemp(name)
            rng = np.random.default_rng(0)
            if name in ("cifar10", "cifar100"):
                cifar_set(root, name == "cifar100", n_train=REPEAT_AUG_ROUND + 4, n_test=4)
            elif name == "imagenet":
                _write_image_folder(root, REPEAT_AUG_ROUND, rng)
            elif name in ("mnist", "fashion_mnist"):
                idx_set(root, n_train=8, n_test=4)
            elif name == "cifar10_dvs":
                _write_dvs(root, 10, rng)  # sorted 9:1 split: 90 training, 10 test recordings
            else:
                raise AssertionError(f"no tiny writer for data set {name!r}: add one to tests/test_recipes.py")
            made[name] = root
        return made[name]

    return get


# ---------------------------------------------------------------------------
# one engine step per recipe
# ---------------------------------------------------------------------------

class _FirstBatches:
    """The first ``n`` batches of a real loader (same sampler, transforms, collate)."""

    def __init__(self, loader, n: int = 1) -> None:
        self.loader, self.n, self.seen = loader, n, []

    def set_epoch(self, epoch: int) -> None:
        set_loader_epoch(self.loader, epoch)

    def __len__(self) -> int:
        return min(self.n, len(self.loader))

    def __iter__(self):
        for x, y in itertools.islice(iter(self.loader), self.n):
            self.seen.append((tuple(x.shape), x.dtype))
            yield x, y


def _small_overrides(raw: dict, root: Path, out_dir: Path) -> list[str]:
    """Reduce sizes only: T, batch, epochs, workers, 224-pixel inputs; point the data at the tiny files."""
    over = [f"data.root={root}", "data.batch_size=2", "data.eval_batch_size=2", "data.num_workers=0",
            "data.pin_memory=false", f"model.T={TEST_T}", "train.epochs=1", "train.device=cpu", f"run.out_dir={out_dir}",
            "run.tensorboard=false", "run.progress=off"]
    data = raw.get("data", {})
    if data.get("name") == "imagenet" or (data.get("img_size") or 0) > SMALL_SIDE:
        over.append(f"data.img_size={SMALL_SIDE}")
        if "img_size" in _builder_params(raw["model"]["name"]):  # the spiking MLP is tied to its input size
            over.append(f"model.img_size={SMALL_SIDE}")
    return over


def _builder_params(name: str) -> set[str]:
    import inspect

    return set(inspect.signature(get_model_info(name).builder).parameters)


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_recipe_trains_one_step_through_the_engine(path, data_root, tmp_path, monkeypatch):
    raw = yaml.safe_load(path.read_text())
    cfg = load_config(path, _small_overrides(raw, data_root(raw["data"]["name"]), tmp_path))
    full = load_config(path)
    # only sizes were reduced: everything else is the recipe's own
    for section in ("optim", "sched"):
        assert getattr(cfg, section) == getattr(full, section)
    for key in ("loss", "label_smoothing", "amp", "clip_grad", "seed", "sync_bn"):
        assert getattr(cfg.train, key) == getattr(full.train, key)
    for key in ("augment", "mixup_alpha", "cutmix_alpha", "mix_prob", "mix_draw", "repeated_aug",
                "label_smoothing", "mean", "std", "interpolation"):
        assert getattr(cfg.data, key) == getattr(full.data, key)

    monkeypatch.setattr(engine, "_save", lambda tr, name: tr.ckpt_dir / name)  # no 100 MB checkpoints here
    tr = engine.setup(cfg)
    assert tr.model.T == TEST_T
    assert len(tr.train_loader) >= 1, "the recipe's sampler served no training batch from the tiny data set"
    tr.train_loader, tr.eval_loader = _FirstBatches(tr.train_loader), _FirstBatches(tr.eval_loader)
    before = {k: v.detach().clone() for k, v in tr.model.named_parameters()}
    record = engine.fit(tr)

    assert tr.state.step == 1 and record["epoch"] == 0
    assert math.isfinite(record["train_loss"]) and record["train_loss"] > 0
    assert 0.0 <= record["test_top1"] <= 100.0 and 0.0 <= record["firing_rate"] <= 1.0
    changed = [k for k, v in tr.model.named_parameters() if not torch.equal(v.detach(), before[k])]
    assert changed, "one optimiser step changed no parameter"
    info_shape = _expected_batch_shape(cfg)
    assert tr.train_loader.seen[0] == (info_shape, torch.float32)
    assert (run := tmp_path / cfg.run.name / "config.yaml").is_file() and yaml.safe_load(run.read_text())


def _expected_batch_shape(cfg) -> tuple[int, ...]:
    from spikevision.data import get_dataset_info

    info = get_dataset_info(cfg.data.name)
    if info.is_event:
        return (TEST_T, 2, info.in_channels, info.img_size, info.img_size)
    side = cfg.data.img_size or info.img_size
    return (2, info.in_channels, side, side)


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_recipe_model_at_full_size_shape_only(path):
    """The recipe's own model (its kwargs, its T) on its data set's real input size, built and run on the
    ``meta`` device: shapes only, no memory, so the 224-px ImageNet nets are checked too."""
    from spikevision.data import get_dataset_info
    from spikevision.train.engine import build_model

    cfg = load_config(path)
    info = get_dataset_info(cfg.data.name)
    with torch.device("meta"):
        model, kwargs = build_model(cfg, info.num_classes)
        model.eval()  # the same shapes as training, without T per-step BN statistics per layer (BNTT) on meta
        side = cfg.data.img_size or info.img_size
        if info.is_event:
            x = torch.empty(model.T, 2, info.in_channels, side, side)
        else:
            x = torch.empty(2, info.in_channels, side, side)
        logits = model(x)
    assert model.T == cfg.model.kwargs.get("T", get_model_info(cfg.model.name).T)
    assert tuple(logits.shape) == (2, info.num_classes)
