"""Release metadata (issue 20, part): one version source, the SPDX license."""
import importlib.metadata

import cmlp


def test_one_version_source():
    assert importlib.metadata.version("cmlp") == cmlp.__version__
    from cmlp._version import __version__
    assert __version__ == cmlp.__version__


def test_license_is_an_spdx_expression():
    meta = importlib.metadata.metadata("cmlp")
    assert meta["License-Expression"] == "BSD-3-Clause"
    assert any(c.startswith("Programming Language :: Python :: 3.13")
               for c in meta.get_all("Classifier"))


def test_an_unbuilt_tree_says_so_without_a_circular_import_message(tmp_path):
    import os
    import shutil
    import subprocess
    import sys
    package = os.path.dirname(cmlp.__file__)
    shutil.copytree(package, tmp_path / "cmlp", ignore=shutil.ignore_patterns("*.so", "__pycache__"))
    # -S: no site-packages, so no installed (or editable) cmlp can win over the tree.
    result = subprocess.run([sys.executable, "-S", "-c", "import cmlp"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "unbuilt source tree" in result.stderr and "pip install ." in result.stderr
    assert "circular import" not in result.stderr
