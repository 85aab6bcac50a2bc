"""What a pip install gets: the recipes (trainable by name from any folder), the LICENSE, every dependency.

The wheel is built offline from a copy of the tree (``pip wheel --no-deps --no-build-isolation --no-index``)
and read as a zip, as an installer would.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

import spikevision
from spikevision.cli import main
from spikevision.train.recipes import RECIPES_DIR, find_recipe, list_recipes, recipe_title

ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted(p.name for p in (ROOT / "configs").glob("*.yaml"))
tomllib = pytest.importorskip("tomllib")  # Python 3.11+
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
# imported only where present: Triton comes with torch's CUDA builds (the CPU kernels need nothing)
OPTIONAL_IMPORTS = {"triton"}


def _requirement_names(reqs: list[str]) -> set[str]:
    return {re.split(r"[<>=!~;\[ ]", r, maxsplit=1)[0].strip().lower().replace("_", "-") for r in reqs}


def test_every_third_party_import_is_a_declared_dependency():
    declared = _requirement_names(PYPROJECT["project"]["dependencies"])
    for extra in PYPROJECT["project"]["optional-dependencies"].values():
        declared |= _requirement_names(extra)
    dists = importlib.metadata.packages_distributions()
    missing = {}
    for path in sorted((ROOT / "src" / "spikevision").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module else []
            for name in names:
                top = name.split(".")[0]
                if top in sys.stdlib_module_names or top == "spikevision" or top in OPTIONAL_IMPORTS:
                    continue
                providers = {d.lower().replace("_", "-") for d in dists.get(top, [top])}
                if not providers & declared:
                    missing.setdefault(top, str(path.relative_to(ROOT)))
    assert missing == {}, f"imported but not declared in pyproject.toml: {missing}"


def test_recipes_ship_inside_the_package_and_list_by_name(capsys):
    assert sorted(p.name for p in RECIPES_DIR.glob("*.yaml")) == RECIPES  # one copy: the package links configs/
    assert sorted(list_recipes()) == sorted(Path(n).stem for n in RECIPES)
    assert main(["recipes"]) == 0
    out = capsys.readouterr().out
    title = recipe_title(ROOT / "configs" / "quickstart.yaml")
    assert title.startswith("Quickstart: a small plain convolutional SNN")
    assert re.search(rf"^quickstart +{re.escape(title)}$", out, re.M)
    assert f"{len(RECIPES)} recipes in" in out


def test_train_takes_a_recipe_name_from_any_folder(tmp_path, monkeypatch, capsys, caplog):
    monkeypatch.chdir(tmp_path)  # no configs/ here: a pip install's situation
    for word in ("quickstart", "quickstart.yaml", "configs/quickstart.yaml"):
        assert find_recipe(word) == RECIPES_DIR / "quickstart.yaml"
        assert main(["train", word, "train.epochs=1", "--print-config"]) == 0
        cfg = yaml.safe_load(capsys.readouterr().out)
        assert cfg["model"]["name"] == "spiking_cnn_mini" and cfg["train"]["epochs"] == 1
    (tmp_path / "quickstart.yaml").write_text("model:\n  name: mlp_spe_mini\n")  # a file of that name wins
    assert find_recipe("quickstart.yaml") == Path("quickstart.yaml")
    assert main(["train", "quikstart"]) == 1  # a missing name: exit status 1, the closest names
    assert "spikevision train: recipe 'quikstart' not found" in caplog.text
    assert "did you mean quickstart" in caplog.text


def test_wheel_ships_the_recipes_license_and_dependencies(tmp_path):
    src = tmp_path / "tree"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "configs", src / "configs")
    shutil.copytree(ROOT / "src", src / "src", symlinks=True,  # keeps the package's link to configs/
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "*.so"))
    p = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                        "-q", "-w", str(tmp_path / "dist"), str(src)], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    (wheel,) = (tmp_path / "dist").glob("spikevision-*.whl")
    dist_info = f"spikevision-{spikevision.__version__}.dist-info"
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        metadata = z.read(f"{dist_info}/METADATA").decode()
        shipped_license = z.read(f"{dist_info}/licenses/LICENSE").decode()
    assert {f"spikevision/configs/{n}" for n in RECIPES} <= names
    assert shipped_license == (ROOT / "LICENSE").read_text() and "BSD 3-Clause License" in shipped_license
    assert f"Version: {spikevision.__version__}" in metadata and "License-Expression: BSD-3-Clause" in metadata
    assert re.search(r"^Requires-Dist: pillow", metadata, re.M | re.I)
    assert any(n.startswith("spikevision/neuron/") and n.endswith(".c") for n in names)  # the CPU kernel source
    assert "spikevision/layers/_spike_conv.c" in names  # the event-driven spike convolution's source
    assert "spikevision/py.typed" in names  # PEP 561: type checkers read the annotations
