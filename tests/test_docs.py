"""The docs stand alone: every repository path they name exists, and nothing points at notes a user lacks.

A user of the repository has the papers, the authors' repositories and this tree, not the
maintainers' private design notes; so docs, recipes, docstrings and tests cite the papers
(authors, venue, year, arXiv) and the authors' code instead of ``specs/*.md`` or "spec section N".
"""

import itertools
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# the docs: the README, docs/ and the bench results beside each bench script
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md")), *sorted((ROOT / "bench").glob("*.md"))]
SOURCES = DOCS + sorted((ROOT / "configs").glob("*.yaml")) + sorted(
    p for d in ("src", "bench", "tests") for p in (ROOT / d).rglob("*.py") if p != Path(__file__).resolve())

# a repository path in prose or code spans, optionally with a ::test name
PATH = re.compile(r"(?<![\w./-])((?:src|tests|configs|docs|bench|studies)/[\w./-]+?)(?:::([\w-]+))?(?=[`)\s,;:]|$)")
# a path component in capitals stands for a name the reader picks (configs/NAME.yaml)
PLACEHOLDER = re.compile(r"(?:^|/)[A-Z][A-Z0-9_]*(?:\.\w+)?(?:/|$)")
# pointers to the private design notes: "specs/x.md", "Spec: ...", "spec section 4", "ms-resnet spec 3", "(spec §6)"
NOTE = re.compile(r"specs/|(?-i:\bSpecs?: )|\bspec (?:section|§|\d)|\bthe spec(?:'s)?\b"
                  r"|\b(?:ms-resnet|gac|spiking-mlp|spiking-resnet) spec\b", re.I)


def test_every_repository_path_in_the_docs_exists():
    missing = []
    for doc in DOCS:
        for i, line in enumerate(doc.read_text().splitlines(), 1):
            for m in PATH.finditer(line):
                rel = m.group(1).rstrip(".")
                if any(c in rel for c in "*{<"):  # patterns such as configs/<family>_<variant>.yaml
                    continue
                target = ROOT / rel
                if not target.exists() and PLACEHOLDER.search(rel):  # configs/NAME.yaml, runs/RUN_DIR
                    continue
                if not target.exists() or (m.group(2) and m.group(2) not in target.read_text()):
                    missing.append(f"{doc.relative_to(ROOT)}:{i}: {m.group(0)}")
    assert missing == [], "paths named by the docs that do not exist:\n" + "\n".join(missing)


def test_nothing_points_at_private_design_notes():
    found = []
    for path in SOURCES:
        rel = str(path.relative_to(ROOT))
        for i, line in enumerate(path.read_text().splitlines(), 1):
            if NOTE.search(line):
                found.append(f"{rel}:{i}: {line.strip()[:100]}")
    assert found == [], "cite the paper and the authors' code instead:\n" + "\n".join(found)


# --- every snippet and command of README.md and docs/*.md runs (issue 25) ---------------------------------------
#
# Python blocks run in document order in one workspace (a temporary folder, the current directory) that holds
# what the docs take for granted, built once from a small real-format Fashion-MNIST (IDX files of 512 training
# and 64 test images, the data set's default root for the duration): `shirt.png`, `t10k-images-idx3-ubyte.gz`
# and a trained `runs/quickstart`. A block names what it needs in a comment (`# requires: shirt.png`), one of
# REQUIRES. `spikevision ...` lines of bash blocks run in-process; `train` gets `train.epochs=1` (the tiny data
# makes an epoch take a second). What cannot run here is listed in SKIP with the reason. Quoted outputs
# (text blocks) are not run.

import contextlib  # noqa: E402
import gzip  # noqa: E402
import os  # noqa: E402
import shlex  # noqa: E402
import struct  # noqa: E402

import pytest  # noqa: E402

SNIPPET_DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)
REQUIRES = {"shirt.png", "fashion_mnist", "run"}
# (doc, the start of the command or a line of the block) -> why it does not run in the suite
SKIP = {
    ("guide.md", "spikevision train configs/ms_resnet20_cifar10.yaml"): "needs the CIFAR-10 files",
    ("recipes.md", "spikevision train configs/ms_resnet20_cifar10.yaml"): "needs the CIFAR-10 files",
    ("recipes.md", "spikevision train configs/gac_ms_resnet34_imagenet.yaml"): "needs ImageNet",
    ("recipes.md", "spikevision train configs/sresnet38_cifar10.yaml"): "needs the CIFAR-10 files",
    ("recipes.md", "spikevision eval runs/sresnet38_cifar10"): "needs a trained CIFAR-10 run",
    ("deploy.md", "spikevision deploy ms_resnet20 --dataset cifar10"): "needs the CIFAR-10 files",
    ("training.md", "spikevision eval runs/quickstart --checkpoint last --data-root /data/fmnist"):
        "an example path (/data/fmnist)",
    ("training.md", "spikevision eval path/to/checkpoint.pt"): "an example path",
    ("evidence.md", "spikevision train configs/ms_resnet_mini_fashion_mnist.yaml"):
        "a 60-minute training (its result is the evidence on that page)",
    ("models_sresnet.md", "cifar10_sresnet-boost.pth"): "needs the authors' released checkpoint file",
    ("analysis.md", "depth_comparison((20, 56, 110)"):
        "the depth study, 44 s on 2 cores (tests/analysis/test_isometry.py runs it small)",
    ("README.md", "spikevision models "): "lists the zoo with MACs, about 20 s (tests/test_models_cli.py runs it)",
    ("deploy.md", "export_onnx(model"): "an ONNX export, 15-30 s (tests/deploy/test_onnx_export.py runs it)",
    ("deploy.md", 'build_elf("quickstart_c"'):
        "needs the Cortex-M toolchain and QEMU (tests/deploy/test_cortex_m.py builds and runs, or says why it skips)",
}


def _skip_reason(doc, kind, text):
    for (d, key), reason in SKIP.items():
        if d == doc and (text.startswith(key) if kind == "command" else key in text):
            return reason
    return None


# a command line with a placeholder (runs/NAME, DIR) or optional parts ([--batches 4]) is a synopsis, not run
SYNOPSIS = re.compile(r"\[|(?:^|[\s/=])[A-Z][A-Z_]+(?:[\s/.]|$)")


def _snippets():
    """(id, kind, text) of every python block and every `spikevision` line of bash blocks."""
    out = []
    for doc in SNIPPET_DOCS:
        text = doc.read_text()
        for m in FENCE.finditer(text):
            first = text[:m.start()].count("\n") + 1
            lang, body = m.group(1), m.group(2)
            if lang == "python":
                out.append((f"{doc.name}:{first}", "python", body))
            elif lang in ("bash", "sh", ""):
                for i, line in enumerate(body.splitlines()):
                    if line.strip().startswith("spikevision "):
                        out.append((f"{doc.name}:{first + 1 + i}", "command", line.strip()))
    return out


SNIPPETS = _snippets()


def _write_idx(path, array):
    with gzip.open(path, "wb") as f:  # the IDX format: magic (type 0x08 = uint8, number of dims), dims, bytes
        f.write(struct.pack(">I", 0x0800 + array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
                + array.tobytes())


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    import numpy as np
    from PIL import Image

    from spikevision.cli import main
    from spikevision.data.mnist import FashionMNIST

    ws = tmp_path_factory.mktemp("docs")
    data = ws / "fashion-mnist"
    data.mkdir()
    real = Path("/usr/share/datasets/fashion-mnist")
    rng = np.random.default_rng(0)
    for split, n, stem in (("train", 512, "train"), ("test", 64, "t10k")):
        if (real / f"{stem}-images-idx3-ubyte.gz").is_file():
            from spikevision.data.idx import read_idx

            images = read_idx(real / f"{stem}-images-idx3-ubyte.gz")[:n]
            labels = read_idx(real / f"{stem}-labels-idx1-ubyte.gz")[:n]
        else:
            images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
            labels = rng.integers(0, 10, n, dtype=np.uint8)
        _write_idx(data / f"{stem}-images-idx3-ubyte.gz", np.ascontiguousarray(images))
        _write_idx(data / f"{stem}-labels-idx1-ubyte.gz", np.ascontiguousarray(labels))
    (ws / "t10k-images-idx3-ubyte.gz").write_bytes((data / "t10k-images-idx3-ubyte.gz").read_bytes())
    Image.fromarray(np.ascontiguousarray(images[0])).save(ws / "shirt.png")
    mp = pytest.MonkeyPatch()
    mp.setattr(FashionMNIST, "_default_root", str(data))
    mp.chdir(ws)
    assert main(["train", "quickstart", "train.epochs=1", "run.progress=off"]) == 0
    yield ws
    mp.undo()


def _run_command(line):
    from spikevision.cli import main

    argv = shlex.split(line, comments=True)[1:]
    if argv and argv[0] == "train" and "--print-config" not in argv:  # one epoch; a fresh run name unless given
        extra = ["train.epochs=1", "run.progress=off"]
        if not any(a.startswith("run.name=") for a in argv):
            extra.append(f"run.name=docs-{abs(hash(line)) % 10**6}")
        argv = argv[:2] + extra + [a for a in argv[2:] if not a.startswith("train.epochs=")]
    try:
        status = main(argv)
    except SystemExit as e:  # argparse's --help / --version, or a one-line error
        status = e.code if isinstance(e.code, int) else 1
        if not isinstance(e.code, int) and e.code is not None:
            raise AssertionError(f"`{line}` failed: {e.code}") from None
    assert status in (0, None), f"`{line}` exited with status {status}"


@pytest.mark.parametrize("where,kind,text", SNIPPETS, ids=[s[0] for s in SNIPPETS])
def test_every_snippet_and_command_runs(workspace, where, kind, text, monkeypatch):
    doc = where.split(":")[0]
    reason = _skip_reason(doc, kind, text)
    if reason:
        pytest.skip(reason)
    # one folder per page (its runs do not meet another page's), each with the shared files and runs/quickstart
    folder = workspace / "pages" / doc
    if not folder.exists():
        import shutil

        shutil.copytree(workspace, folder, ignore=shutil.ignore_patterns("pages"))
    monkeypatch.chdir(folder)
    if kind == "command":
        if SYNOPSIS.search(text.split("#")[0]):
            pytest.skip("a synopsis")
        _run_command(text)
        return
    needs = {n.strip() for m in re.finditer(r"#\s*requires:\s*(.+)", text) for n in m.group(1).split(",")}
    assert needs <= REQUIRES, f"{where}: unknown fixtures {needs - REQUIRES}; known: {sorted(REQUIRES)}"
    with contextlib.redirect_stdout(open(os.devnull, "w")):
        exec(compile(text, where, "exec"), {"__name__": "__docs__"})


def test_skips_name_real_snippets():
    unused = [k for k in SKIP if not any(_skip_reason(w.split(":")[0], kind, t) == SKIP[k]
                                         and k[0] == w.split(":")[0] for w, kind, t in SNIPPETS)]
    assert unused == [], f"SKIP entries that match no snippet: {unused}"


def test_readme_names_the_two_commands_and_every_cli_command():
    from spikevision.cli import COMMANDS

    readme = (ROOT / "README.md").read_text()
    assert "bash scripts/quickstart.sh" in readme and "bash scripts/test.sh" in readme
    table = dict(re.findall(r"^\| `(\w+)` \| (.+?) \|$", readme, re.M))
    assert table == {name: help_text for name, (_, help_text) in COMMANDS.items()}, "README's command table"


def test_api_reference_builds_offline_in_strict_mode(tmp_path):
    pytest.importorskip("mkdocstrings_handlers.python")
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-f", str(ROOT / "mkdocs.yml"),
                          "-d", str(tmp_path / "site")], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    page = (tmp_path / "site" / "pretrained" / "index.html").read_text()
    assert "create_transform" in page and "PretrainedCfg" in page
    linked = set(re.findall(r"\]\(docs/reference/(\w+)\.md\)", (ROOT / "README.md").read_text()))
    assert linked and all((ROOT / "docs" / "reference" / f"{name}.md").is_file() for name in linked)


def _quoted_outputs():
    """(id, command, quoted output lines) of text blocks that open with `$ spikevision ...` and name no path."""
    out = []
    for doc in SNIPPET_DOCS:
        text = doc.read_text()
        for m in FENCE.finditer(text):
            lines = m.group(2).splitlines()
            if m.group(1) in ("", "text") and lines and lines[0].startswith("$ spikevision "):
                command = lines[0][2:].split("#")[0].strip()
                if "/" in command or any(ln.startswith("$ ") for ln in lines[1:]):
                    continue  # needs a run or a file, or several commands in one block
                out.append((f"{doc.name}:{text[:m.start()].count(chr(10)) + 1}", command, lines[1:]))
    return out


QUOTED = _quoted_outputs()
# quoted outputs too slow to regenerate in the suite (command -> why)
QUOTED_SLOW = {"spikevision models": "counts MACs of all 35 models, about 20 s (tests/test_models_cli.py)"}


@pytest.mark.parametrize("where,command,quoted", QUOTED, ids=[q[0] for q in QUOTED])
def test_quoted_outputs_are_what_the_command_prints(where, command, quoted, capsys):
    """Every quoted line (elisions `...` aside) is a line the command prints today."""
    from spikevision.cli import main

    if command in QUOTED_SLOW:
        pytest.skip(QUOTED_SLOW[command])
    assert main(shlex.split(command)[1:]) in (0, None)
    printed = {ln.rstrip() for ln in capsys.readouterr().out.splitlines()}
    stale = [ln for ln in quoted if ln.strip() and "..." not in ln and ln.rstrip() not in printed]
    assert stale == [], f"{where}: `{command}` no longer prints:\n" + "\n".join(stale)


def test_the_weights_table_is_the_cards():
    """docs/evidence.md's shipped-weights table is ``spikevision models --weights`` (regenerate it from the cards)."""
    from spikevision.analysis.card import weights_table

    text = (ROOT / "docs" / "evidence.md").read_text()
    marker = "<!-- generated: spikevision models --weights"
    assert marker in text
    lines = text.split(marker, 1)[1].splitlines()[1:]
    table = "\n".join(ln for ln in itertools.takewhile(lambda ln: ln.startswith("|"), lines))
    assert table == weights_table(), "regenerate the table: spikevision models --weights"


def test_the_readme_quotes_each_shipped_accuracy_from_its_card():
    from spikevision.weights import available_weights, read_card

    readme = (ROOT / "README.md").read_text()
    line = next(item for item in re.split(r"\n(?=\* )|\n\n", readme) if item.startswith("* **Shipped weights**"))
    quoted = dict(re.findall(r"`(\w+)` (\d+\.\d+)%", line))
    cards = {name: f"{read_card(name, 'fashion_mnist')['test_top1']:.2f}" for name in available_weights()}
    assert quoted == cards
