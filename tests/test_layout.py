"""The test tree itself: pytest's default (rootdir) import mode needs unique test-module basenames."""

from collections import Counter
from pathlib import Path

TESTS = Path(__file__).parent


def test_test_module_basenames_are_unique():
    # tests/ has no __init__.py files, so two test_x.py in different folders collide at collection
    # ("import file mismatch") and the whole run stops; conftest.py files are exempt (pytest keys them by path).
    names = Counter(p.name for p in TESTS.rglob("*.py") if p.name != "conftest.py" and "__pycache__" not in p.parts)
    assert [n for n, c in names.items() if c > 1] == []
