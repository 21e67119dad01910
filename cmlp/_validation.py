"""Input checks at the Python boundary: everything the C code assumes."""
import numbers

import numpy as np

from cmlp._engine import is_finite
from cmlp._layout import BLAS_INT_MAX
from cmlp._sparse import CsrMatrix


def c_array(array, dtype):
    """`array` as a C-contiguous, aligned array of `dtype` (copied only if
    needed): the C code reads floats as integers and needs both."""
    return np.require(array, dtype=dtype, requirements=["C_CONTIGUOUS", "ALIGNED"])


def _is_scipy_sparse(X):
    import scipy.sparse  # a dependency of cmlp; imported only when needed
    return scipy.sparse.issparse(X)


def as_csr(X, n_features, dtype, name="X"):
    """A scipy.sparse matrix or array (any format; CSC and the others are
    converted to CSR once) as a CsrMatrix of `dtype`: its values, int32
    columns and int64 row pointers as the C kernels read them. Never
    densified. Raises as as_matrix does."""
    if isinstance(X, CsrMatrix):
        if X.dtype != dtype or X.n_cols != n_features or X.n_rows == 0:
            return as_csr(X.to_scipy(), n_features, dtype, name)
        return X
    if X.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n_samples, n_features), got shape {X.shape}")
    if X.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be numeric (bool, int or float), got dtype {X.dtype}")
    if X.shape[0] == 0:
        raise ValueError(f"{name} is empty: it has 0 samples")
    if X.shape[1] != n_features:
        raise ValueError(f"{name} has {X.shape[1]} features but the network expects {n_features}")
    X = X.tocsr()
    with np.errstate(over="ignore"):      # overflow becomes inf, reported below
        data = c_array(X.data, dtype)
    if data.size and not is_finite(data.reshape(1, -1)):
        raise ValueError(f"{name} contains NaN or infinite values"
                         + (" (or values out of range for the network dtype)"
                            if np.isfinite(X.data.astype(np.float64)).all() else ""))
    return CsrMatrix(data, c_array(X.indices, np.int32), c_array(X.indptr, np.int64),
                     n_features)


def as_matrix(X, n_features, dtype, name="X", accept_sparse=True):
    """X as a C-contiguous (n, n_features) array of `dtype`, copied at most
    once; scipy.sparse input (with accept_sparse) as a CsrMatrix (as_csr).

    Raises TypeError for non-numeric input and ValueError for a wrong shape,
    an empty array or non-finite values.
    """
    if not isinstance(X, np.ndarray) and (isinstance(X, CsrMatrix) or _is_scipy_sparse(X)):
        if not accept_sparse:
            raise TypeError(f"{name}: sparse input is not supported; pass a dense array")
        return as_csr(X, n_features, dtype, name)
    arr = np.asarray(X)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be numeric (bool, int or float), got dtype {arr.dtype}")
    if arr.ndim != 2:
        hint = " (use X.reshape(1, -1) for a single sample)" if arr.ndim == 1 else ""
        raise ValueError(f"{name} must be 2-D (n_samples, n_features), got shape {arr.shape}{hint}")
    if arr.shape[0] == 0:
        raise ValueError(f"{name} is empty: it has 0 samples")
    if arr.shape[1] != n_features:
        raise ValueError(f"{name} has {arr.shape[1]} features but the network expects {n_features}")
    with np.errstate(over="ignore"):      # overflow becomes inf, reported below
        arr = c_array(arr, dtype)
    if not is_finite(arr):
        raise ValueError(f"{name} contains NaN or infinite values"
                         + (" (or values out of range for the network dtype)"
                            if np.isfinite(np.asarray(X, dtype=np.float64)).all() else ""))
    return arr


def check_Xy(X, y, n_features, n_outputs, output, dtype, names=("X", "y")):
    """(X, labels, targets) for a network with `output`: integer labels for
    softmax, float targets otherwise; the unused one of the two is empty."""
    X = as_matrix(X, n_features, dtype, names[0])
    n = X.shape[0]
    if output == "softmax":
        return X, as_labels(y, n, n_outputs, names[1]), np.empty((0, n_outputs), dtype=dtype)
    targets = as_targets(y, n, n_outputs, dtype, names[1])
    if output == "sigmoid" and ((targets < 0).any() or (targets > 1).any()):
        raise ValueError(f"{names[1]}: a sigmoid output needs targets in [0, 1] "
                         "(one column per label)")
    if output == "exp" and (targets < 0).any():
        raise ValueError(f"{names[1]}: an exp output (Poisson deviance) needs targets >= 0")
    return X, np.empty(0, dtype=np.int32), targets


def check_weights(sample_weight, class_weight, labels, n, output, n_outputs, dtype,
                  name="sample_weight"):
    """Per-row weights (n,) of `dtype` combining sample_weight and
    class_weight, or an empty array when neither is given."""
    w = None if sample_weight is None else as_sample_weight(sample_weight, n, name)
    if class_weight is not None:
        if output != "softmax":
            raise ValueError("class_weight needs a softmax output (integer class labels); "
                             "use sample_weight")
        per_class = class_weights(class_weight, labels, n_outputs)
        w = per_class[labels] if w is None else w * per_class[labels]
    if w is None:
        return np.empty(0, dtype=dtype)
    with np.errstate(over="ignore", under="ignore"):
        cast = c_array(w, dtype)
    # Checked in the network's dtype: 1e-46 is 0 in float32, 1e39 is inf.
    if not np.isfinite(cast).all():
        raise ValueError(f"{name} holds values too large for {np.dtype(dtype).name}")
    if not cast.sum(dtype=np.float64) > 0:
        raise ValueError(f"the sample weights sum to 0 in {np.dtype(dtype).name}: nothing "
                         "would be learned")
    return cast


def _refuse_sparse(y, name):
    if not isinstance(y, np.ndarray) and _is_scipy_sparse(y):
        raise TypeError(f"{name}: sparse targets are not supported; pass a dense array")


def as_labels(y, n, n_classes, name="y"):
    """Integer class labels in [0, n_classes) as a contiguous int32 array of length n."""
    _refuse_sparse(y, name)
    arr = np.asarray(y)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of integer class labels, got shape {arr.shape}")
    if arr.shape[0] != n:
        raise ValueError(f"X has {n} samples but {name} has {arr.shape[0]}")
    if arr.dtype.kind == "f":
        if not np.isfinite(arr).all() or not np.array_equal(arr, np.round(arr)):
            raise ValueError(f"{name} must hold integer class labels; got non-integer values")
    elif arr.dtype.kind not in "iu":
        raise TypeError(f"{name} must hold integer class labels, got dtype {arr.dtype}")
    if arr.min() < 0 or arr.max() >= n_classes:
        raise ValueError(f"{name} must hold class labels in [0, {n_classes}); "
                         f"got values from {arr.min()} to {arr.max()}")
    return c_array(arr, np.int32)


def as_targets(y, n, n_outputs, dtype, name="y"):
    """Float regression targets as a contiguous (n, n_outputs) array of `dtype`.

    A 1-D y is accepted when the network has a single output.
    """
    _refuse_sparse(y, name)
    arr = np.asarray(y)
    if arr.ndim == 1 and n_outputs == 1:
        arr = arr.reshape(-1, 1)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n_samples, {n_outputs}), got shape {arr.shape}")
    if arr.shape[0] != n:
        raise ValueError(f"X has {n} samples but {name} has {arr.shape[0]}")
    if arr.shape[1] != n_outputs:
        raise ValueError(f"{name} has {arr.shape[1]} columns but the network has {n_outputs} outputs")
    return as_matrix(arr, n_outputs, dtype, name, accept_sparse=False)


def check_number(value, name, *, low=None, high=None, low_open=False, high_open=False,
                 integer=False):
    """The one number check: `value` as a float (an int with `integer`),
    finite and within [low, high] (or open at either end).

    Raises TypeError for anything that is not a real number (bools
    included) or, with `integer`, not an integral one; ValueError for NaN,
    infinity or a value out of range, naming `name` and the bound.
    """
    kind = numbers.Integral if integer else numbers.Real
    if isinstance(value, bool) or not isinstance(value, kind):
        what = "an integer" if integer else "a number"
        raise TypeError(f"{name} must be {what}, got {value!r}")
    if not integer and not np.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value}")
    too_low = low is not None and (value < low or (low_open and value == low))
    too_high = high is not None and (value > high or (high_open and value == high))
    if too_low or too_high:
        if low is not None and high is not None:
            bounds = f"in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
        elif too_low:
            bounds = f"{'>' if low_open else '>='} {low}"
        else:
            bounds = f"{'<' if high_open else '<='} {high}"
        raise ValueError(f"{name} must be {bounds}, got {value}")
    return int(value) if integer else float(value)


def positive_int(value, name, minimum=1):
    """An integer >= minimum that fits a 32-bit BLAS size."""
    value = check_number(value, name, low=minimum, integer=True)
    if value > BLAS_INT_MAX:
        raise ValueError(f"{name} must be < 2**31, got {value}")
    return value


def positive_float(value, name):
    """A finite float > 0."""
    return check_number(value, name, low=0, low_open=True)


def non_negative_float(value, name):
    """A finite float >= 0."""
    return check_number(value, name, low=0)


def as_sample_weight(sample_weight, n, name="sample_weight"):
    """Per-row weights as a float64 array of length n: finite and >= 0."""
    arr = np.asarray(sample_weight)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be numeric, got dtype {arr.dtype}")
    if arr.ndim != 1 or arr.shape[0] != n:
        raise ValueError(f"{name} must have shape ({n},), got {arr.shape}")
    arr = arr.astype(np.float64)
    if not np.isfinite(arr).all() or (arr < 0).any():
        raise ValueError(f"{name} must hold finite values >= 0")
    return arr


def class_weights(class_weight, labels, n_classes):
    """A weight per class (n_classes,) from a {class: weight} dict (missing
    classes weigh 1) or "balanced": n / (n_classes * count of the class),
    scikit-learn's rule, computed over `labels`."""
    if isinstance(class_weight, str):
        if class_weight != "balanced":
            raise ValueError(f"class_weight must be a dict or 'balanced', got {class_weight!r}")
        counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
        weights = np.zeros(n_classes)
        present = counts > 0
        weights[present] = labels.shape[0] / (np.count_nonzero(present) * counts[present])
        return weights
    if not isinstance(class_weight, dict):
        raise TypeError(f"class_weight must be a dict or 'balanced', got {type(class_weight).__name__}")
    weights = np.ones(n_classes)
    for key, value in class_weight.items():
        if isinstance(key, bool) or not isinstance(key, numbers.Integral) or not 0 <= key < n_classes:
            raise ValueError(f"class_weight keys must be class labels in [0, {n_classes}), got {key!r}")
        if isinstance(value, bool) or not isinstance(value, numbers.Real) \
                or not np.isfinite(value) or value < 0:
            raise ValueError(f"class_weight[{key}] must be a finite number >= 0, got {value!r}")
        weights[int(key)] = float(value)
    return weights
