"""Other Cython code can cimport cmlp's kernels from the installed .pxd files."""
import subprocess
import sys
import textwrap

import pytest

from helpers import ENV

pytest.importorskip("Cython")
pytestmark = pytest.mark.needs_compiler


# Whichever cmlp is under test (installed, or built in place) must be the one
# the subprocesses compile against and import.

USER_EXTENSION = """
# cython: language_level=3
from cmlp._kernels cimport linear_forward, softmax_forward

def affine_softmax(const double[:, ::1] a, const double[:, ::1] W,
                   const double[::1] b, double[:, ::1] out):
    with nogil:
        linear_forward(&out[0, 0], &a[0, 0], &W[0, 0], &b[0],
                       a.shape[0], W.shape[0], W.shape[1])
        softmax_forward(&out[0, 0], &out[0, 0], out.shape[0], out.shape[1])
"""

SETUP = """
from setuptools import Extension, setup
from Cython.Build import cythonize
setup(ext_modules=cythonize([Extension("user_ext", ["user_ext.pyx"])]))
"""


def test_external_extension_cimports_kernels(tmp_path):
    (tmp_path / "user_ext.pyx").write_text(textwrap.dedent(USER_EXTENSION))
    (tmp_path / "setup.py").write_text(SETUP)
    build = subprocess.run([sys.executable, "setup.py", "build_ext", "--inplace"],
                           cwd=tmp_path, capture_output=True, text=True, timeout=600, env=ENV)
    assert build.returncode == 0, build.stderr[-2000:]
    check = """
import numpy as np, user_ext
from cmlp import reference
rng = np.random.default_rng(0)
a, W, b = rng.normal(size=(5, 4)), rng.normal(size=(4, 3)), rng.normal(size=3)
out = np.empty((5, 3))
user_ext.affine_softmax(a, W, b, out)
want = reference.softmax_forward(reference.linear_forward(a, W, b))
print(np.abs(out - want).max())
"""
    run = subprocess.run([sys.executable, "-c", check], cwd=tmp_path, capture_output=True,
                         text=True, timeout=120, env=ENV)
    assert run.returncode == 0, run.stderr[-2000:]
    assert float(run.stdout) < 1e-14
