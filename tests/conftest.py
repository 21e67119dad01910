import os
import pathlib
import signal

import numpy as np
import pytest

# A harness that starts the suite in the background (a non-interactive
# shell's `&`) hands it SIGINT ignored, and Python then installs no
# KeyboardInterrupt handler (and children inherit the ignoring): the Ctrl-C
# tests need Ctrl-C to reach Python, in this process and the ones it starts.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

ROOT = pathlib.Path(__file__).resolve().parent.parent

# Agreement with the NumPy reference: relative to the largest magnitude of the
# reference array (so entries that cancel to ~0 are judged on the array's scale).
TOLERANCE = {np.float64: 1e-12, np.float32: 1e-5}


def assert_close(actual, expected, dtype, factor=1.0):
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape
    scale = max(np.abs(expected).max(initial=0.0), 1e-300)
    err = np.abs(actual - expected).max(initial=0.0) / scale
    assert err <= TOLERANCE[np.dtype(dtype).type] * factor, f"relative error {err:.3g}"
    return err


def mnist_dir():
    """The real MNIST files: $CMLP_DATA, else ../shared/data/mnist beside the repo."""
    path = os.environ.get("CMLP_DATA") or str(ROOT.parent / "shared" / "data" / "mnist")
    return path if os.path.isdir(path) else None


@pytest.fixture(scope="session")
def mnist_path():
    path = mnist_dir()
    if path is None:
        if os.environ.get("CMLP_REQUIRE_DATA"):
            pytest.fail("CMLP_REQUIRE_DATA is set but no MNIST directory was found")
        pytest.skip("MNIST files not found (set CMLP_DATA)")
    return path


@pytest.fixture(scope="session")
def mnist(mnist_path):
    from cmlp.datasets import load_mnist
    return load_mnist(mnist_path)
