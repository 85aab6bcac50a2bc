"""The docs stand alone: every repository path they name exists, and nothing points at notes a user lacks.

A user of the repository has the papers, the authors' repositories and this tree, not the
maintainers' private design notes; so docs, recipes, docstrings and tests cite the papers
(authors, venue, year, arXiv) and the authors' code instead of ``specs/*.md`` or "spec section N".
"""

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
