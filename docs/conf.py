"""Sphinx configuration for cmlp's documentation site.

Build (warnings are errors, as .ci/run builds it):
    CMLP_DATA=../shared/data/mnist sphinx-build -W --keep-going -b html docs docs/_build/html
The gallery (docs/examples/plot_*.py) is executed at build time on the real
MNIST from $CMLP_DATA; its figures and the pages around them are generated.
"""
import os

import cmlp

project = "cmlp"
author = "the cmlp developers"
copyright = "2026, the cmlp developers"
release = cmlp.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.doctest",
    "sphinx.ext.intersphinx",
    "sphinx.ext.mathjax",
    "numpydoc",
    "myst_parser",
    "sphinx_gallery.gen_gallery",
]
templates_path = ["_templates"]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build", "api/generated/*.examples", "examples/README.txt",
                    "auto_examples/*.ipynb", "auto_examples/*.py", "auto_examples/*.zip",
                    "auto_examples/*.md5", "auto_examples/*.json"]
myst_heading_anchors = 3

autosummary_generate = True
autodoc_default_options = {"members": True}
autodoc_typehints = "none"            # numpydoc's Parameters sections say the types
numpydoc_show_class_members = False   # autosummary's class template lists them
numpydoc_validation_checks = set()
numpydoc_xref_param_type = False

intersphinx_mapping = {}              # the build is offline: no inventories fetched

sphinx_gallery_conf = {
    "examples_dirs": "examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "download_all_examples": False,
    "remove_config_comments": True,
    "abort_on_example_error": True,
    "matplotlib_animations": False,
    "reset_modules": ("matplotlib",),
    "show_memory": False,
    "min_reported_time": 10**9,
}
if not os.environ.get("CMLP_DATA"):
    raise RuntimeError("the gallery trains on MNIST: set CMLP_DATA to its directory "
                       "(e.g. CMLP_DATA=../shared/data/mnist)")

html_theme = "pydata_sphinx_theme"
html_title = f"cmlp {release}"
html_theme_options = {
    "navbar_align": "left",
    "show_toc_level": 2,
    "navigation_with_keys": False,
}
html_static_path = []
