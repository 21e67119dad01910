"""Issue 20, item 6: training data far from unit scale is warned about (it
trains to chance accuracy without an error otherwise); cmlp.sklearn, like
scikit-learn's MLP, does not warn."""
import threading
import warnings

import numpy as np
import pytest
import scipy.sparse

from cmlp import Network
from cmlp._scale import InputScaleWarning, scale_check_off, typical_magnitude

RNG = np.random.default_rng(0)
PIXELS = (RNG.random((400, 20)) * 255).astype(np.uint8)     # raw uint8 "pixels"
LABELS = RNG.integers(0, 3, 400)


def fit(X, **kwargs):
    return Network([20, 8, 3], seed=0).fit(X, LABELS, epochs=1, verbose=0, **kwargs)


def test_raw_pixels_warn_and_name_the_fix():
    with pytest.warns(InputScaleWarning, match="StandardScaler") as record:
        fit(PIXELS, lr=1e-4)
    message = str(record[0].message)
    assert "lower lr" in message and "252" in message        # the 99th percentile of |X|
    assert record[0].filename == __file__                     # points at the caller's line


@pytest.mark.parametrize("X", [PIXELS / 255.0, (PIXELS - 127.5) / 40.0,
                               scipy.sparse.random(400, 20, density=0.1, random_state=0)])
def test_unit_scale_data_is_quiet(X):
    with warnings.catch_warnings():
        warnings.simplefilter("error", InputScaleWarning)
        fit(X)


def test_sparse_raw_counts_warn():
    counts = scipy.sparse.random(400, 20, density=0.2, random_state=0, data_rvs=lambda n: 500 + np.arange(n))
    with pytest.warns(InputScaleWarning):
        fit(counts, lr=1e-5)


def test_partial_fit_warns_too():
    with pytest.warns(InputScaleWarning):
        Network([20, 8, 3], seed=0).partial_fit(PIXELS, LABELS, lr=1e-5)


def test_scale_check_off_is_per_thread():
    seen = {}

    def other_thread():
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("always")
            fit(PIXELS, lr=1e-5)
        seen["other"] = [w.category for w in record]

    with scale_check_off(), warnings.catch_warnings():
        warnings.simplefilter("error", InputScaleWarning)
        fit(PIXELS, lr=1e-5)                 # silenced here ...
        worker = threading.Thread(target=other_thread)
        worker.start()
        worker.join(timeout=60)
    assert InputScaleWarning in seen["other"]  # ... not in another thread


def test_typical_magnitude_ignores_non_finite_and_lists():
    X = np.full((10, 3), 2.0)
    X[0, 0] = np.inf
    assert typical_magnitude(X) == 2.0
    assert typical_magnitude([[1.0, 2.0]]) is None


def test_sklearn_estimator_does_not_warn():
    pytest.importorskip("sklearn")
    from cmlp.sklearn import MLPClassifier
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        MLPClassifier(hidden_layer_sizes=(8,), max_iter=3, random_state=0).fit(PIXELS, LABELS)
        fit(PIXELS, lr=1e-5)                 # the same data through Network does warn
    categories = [w.category for w in record]
    assert categories.count(InputScaleWarning) == 1, categories


@pytest.mark.parametrize("fmt", ["csr", "csc", "coo"])
def test_sparse_formats_are_measured_without_conversion(fmt):
    counts = scipy.sparse.random(400, 20, density=0.2, random_state=0, format=fmt,
                                 data_rvs=lambda n: 500 + np.arange(n))
    assert typical_magnitude(counts) > 500
