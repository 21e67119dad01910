"""The sources stay lint-clean: ruff over the Python, cython-lint over the
Cython (both configured in pyproject.toml). Needs the source checkout."""
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.source_tree


def tool(name):
    """The console script beside this Python (a venv need not be activated)."""
    path = shutil.which(name, path=os.path.dirname(sys.executable)) or shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: pip install '.[test]'")
    return path


def test_ruff_is_clean():
    result = subprocess.run([tool("ruff"), "check", "."], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_cython_lint_is_clean():
    sources = sorted(str(p) for p in [*(ROOT / "cmlp").rglob("*.p[xy][dx]"),
                                      *(ROOT / "bench").glob("*.pyx")])
    assert len(sources) >= 10
    result = subprocess.run([tool("cython-lint"), *sources], cwd=ROOT, capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stdout + result.stderr
