"""The warning for training data far from unit scale.

A network initialised for unit-scale inputs (He/Glorot) and trained at the
usual learning rates on raw values in the hundreds (uint8 pixels, prices,
counts) takes first steps thousands of times too large: the loss jumps, the
ReLUs die and the run ends at chance accuracy without an error. Network.fit
and partial_fit warn instead of staying silent. scikit-learn's MLP does not
warn, so cmlp.sklearn, which must behave as it does, turns the check off for
its calls (a context variable: per thread, no global warning filter).
"""
import contextlib
import contextvars
import warnings

import numpy as np

#: The 99th percentile of |X| above which fit warns.
LARGE = 100.0
_ROWS_SAMPLED = 256
_CHECK = contextvars.ContextVar("cmlp_scale_check", default=True)


class InputScaleWarning(UserWarning):
    """Training data far from unit scale (see cmlp._scale)."""


@contextlib.contextmanager
def scale_check_off():
    """No InputScaleWarning from fits in this block (this thread or task)."""
    token = _CHECK.set(False)
    try:
        yield
    finally:
        _CHECK.reset(token)


def typical_magnitude(X):
    """The 99th percentile of |X| over up to 256 evenly spaced rows (of a
    sparse matrix, over evenly spaced stored values: no format conversion),
    or None for input that is not an array yet (fit converts and checks it)."""
    import scipy.sparse
    if scipy.sparse.issparse(X):
        data = getattr(X, "data", None)
        if not isinstance(data, np.ndarray) or data.ndim != 1:   # e.g. LIL, DOK
            return None
        values = data[:: max(1, data.size // (_ROWS_SAMPLED * 1000))]
    elif isinstance(X, np.ndarray) and X.ndim == 2 and X.dtype.kind in "biuf":
        values = X[:: max(1, X.shape[0] // _ROWS_SAMPLED)]
    else:
        return None
    values = np.abs(np.asarray(values, dtype=np.float64)).ravel()
    values = values[np.isfinite(values)]
    return float(np.percentile(values, 99)) if values.size else None


def warn_if_far_from_unit_scale(X, stacklevel=3):
    if not _CHECK.get():
        return
    magnitude = typical_magnitude(X)
    if magnitude is not None and magnitude > LARGE:
        warnings.warn(
            f"the training data is far from unit scale (the 99th percentile of |X| is "
            f"{magnitude:.4g}, over {LARGE:g}): a network trains poorly on inputs this large and may end "
            "at chance accuracy. Standardize the features (e.g. with "
            "sklearn.preprocessing.StandardScaler, or divide pixels by 255) or lower lr",
            InputScaleWarning, stacklevel=stacklevel)
