"""The one YAML reader of recipes, overrides and studies refuses bombs before expanding them, quickly."""

import time

import pytest

from spikevision.cli import main
from spikevision.train.config import ConfigError, load_config, parse_overrides
from spikevision.train.yaml_loader import MAX_DEPTH, YAMLLimitError, yaml_load

LAUGHS = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"{c}: &{c} [{', '.join([f'*{p}'] * 10)}]\n" for p, c in zip("abcdefgh", "bcdefghi"))  # 10**9 strings


@pytest.mark.parametrize("text, message", [
    ("a: &a [*a]", "alias cycle"),
    ("&a {b: *a}", "alias cycle"),
    ("a: &x {b: [1, {c: *x}]}", "alias cycle"),
    (LAUGHS, "billion laughs"),
    ("[" * 20000 + "]" * 20000, f"deeper than {MAX_DEPTH}"),
    ("a:\n" + "".join(" " * i + "b:\n" for i in range(1, 500)), f"deeper than {MAX_DEPTH}"),
    ("x: " + "y" * (2 << 20), "more than"),
])
def test_bombs_are_refused_before_expansion(text, message):
    start = time.perf_counter()
    with pytest.raises(YAMLLimitError, match=message):
        yaml_load(text)
    assert time.perf_counter() - start < 5  # generous on a loaded machine; unguarded, these take minutes or crash


def test_ordinary_yaml_and_aliases_still_load():
    assert yaml_load("lr: 1e-3\nw: &w [1, 2]\nv: *w\nu: [*w, *w]") == {"lr": 0.001, "w": [1, 2], "v": [1, 2],
                                                                     "u": [[1, 2], [1, 2]]}
    assert yaml_load("a: " + "[" * (MAX_DEPTH - 2) + "1" + "]" * (MAX_DEPTH - 2))["a"]


def test_recipes_overrides_and_studies_share_the_reader(tmp_path, caplog):
    (tmp_path / "r.yaml").write_text(LAUGHS)
    with pytest.raises(ConfigError, match=r"r.yaml, line \d+, column \d+: refused \(.*billion laughs"):
        load_config(tmp_path / "r.yaml")
    with pytest.raises(ConfigError, match=r"override model.widths=...: the value is refused \(.*alias cycle"):
        parse_overrides(["model.widths=&a [*a]"])
    (tmp_path / "s.yaml").write_text("arms: &a {x: *a}\n")
    assert main(["study", str(tmp_path / "s.yaml"), "--status"]) == 2
    assert "alias cycle" in caplog.text and "Traceback" not in caplog.text and len(caplog.text.splitlines()) == 2
    caplog.clear()
    assert main(["train", str(tmp_path / "r.yaml")]) == 2
    assert "billion laughs" in caplog.text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.yaml", "s.yaml"]
