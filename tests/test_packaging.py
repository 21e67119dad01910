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
