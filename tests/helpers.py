"""What several test files share: small data sets, the environment of
subprocesses, running the CLI, and the crash-and-resume pattern."""
import os
import subprocess
import sys

import numpy as np

import cmlp

# Subprocesses import the cmlp under test (installed, or built in place).
ENV = {**os.environ,
       "PYTHONPATH": os.path.dirname(os.path.dirname(os.path.abspath(cmlp.__file__)))}
# A neutral working directory, so `-m cmlp` finds the package under test,
# not an unbuilt source tree in the current directory.
TESTS_DIR = os.path.dirname(os.path.abspath(__file__))


def blobs(n=300, d=10, k=3, seed=0):
    """k Gaussian clusters in d dimensions: (X (n, d) float64, labels (n,))."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((k, d)) * 3
    y = rng.integers(0, k, n)
    return centers[y] + rng.standard_normal((n, d)), y


def run_cli(*args, env=None, timeout=900):
    """`python -m cmlp ARGS` in a subprocess; the CompletedProcess."""
    return subprocess.run([sys.executable, "-m", "cmlp", *args], capture_output=True, text=True,
                          env={**ENV, **(env or {})}, timeout=timeout, cwd=TESTS_DIR)


def popen_cli(*args, **kwargs):
    """`python -m cmlp ARGS` started in the background (a Popen)."""
    return subprocess.Popen([sys.executable, "-m", "cmlp", *args], env=ENV, cwd=TESTS_DIR,
                            **kwargs)


class Crash(Exception):
    """What `crash_after` raises: a run dying between epochs."""


def crash_after(epochs):
    """An on_epoch_end callable that kills a run after `epochs` epochs."""
    def crash(history):
        if len(history) == epochs:
            raise Crash()
    return crash
