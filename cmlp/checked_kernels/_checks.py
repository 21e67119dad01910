"""The checks every checked kernel shares (cmlp.checked_kernels)."""
import numpy as np

from cmlp._validation import as_labels


def _floats(*arrays):
    """C-contiguous copies-if-needed of arrays sharing one float dtype."""
    dtypes = {np.asarray(a).dtype for a in arrays}
    if len(dtypes) != 1:
        raise TypeError(f"arrays must share one dtype, got {sorted(map(str, dtypes))}")
    dtype = dtypes.pop()
    if dtype not in (np.float32, np.float64):
        raise TypeError(f"dtype must be float32 or float64, got {dtype}")
    return [np.ascontiguousarray(a) for a in arrays]


def _matrix(a, name):
    if a.ndim != 2 or a.shape[0] < 1 or a.shape[1] < 1:
        raise ValueError(f"{name} must be a non-empty 2-D array, got shape {a.shape}")


def _fit(ok):
    # The underscore wrappers are reachable from Python too: each checks, in
    # O(1), that its buffers fit each other before handing C their pointers.
    if not ok:
        raise ValueError("the buffers' shapes do not fit each other (or one is empty)")


def _labels(labels, m, k):
    return as_labels(labels, m, k, "labels")
