"""The same model as scikit-learn's from the same settings and random_state.

Each case fits scikit-learn's estimator and cmlp's with identical
parameters on float64 data and compares n_iter_, every coefficient and the
predictions. Both draw the same initial weights, split and shuffles from
the same RandomState and take the same steps, so they differ by rounding
alone (BLAS sums in another order).
"""
import warnings

import numpy as np
import pytest
from sklearn.datasets import load_digits, make_regression
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier as SkClassifier
from sklearn.neural_network import MLPRegressor as SkRegressor

from cmlp.sklearn import MLPClassifier, MLPRegressor

SOLVERS = {
    "sgd-nesterov": dict(solver="sgd", learning_rate_init=0.05),
    "sgd-momentum": dict(solver="sgd", nesterovs_momentum=False, learning_rate_init=0.05),
    "sgd-invscaling": dict(solver="sgd", learning_rate="invscaling", learning_rate_init=0.2),
    "sgd-adaptive": dict(solver="sgd", learning_rate="adaptive", tol=1e-2,
                         n_iter_no_change=2, learning_rate_init=0.05),
    "adam": dict(solver="adam", learning_rate_init=0.003),
    "lbfgs": dict(solver="lbfgs"),
}


def digits(n=600):
    X, y = load_digits(return_X_y=True)
    return X[:n] / 16.0, y[:n]


def targets(kind):
    X, y = digits()
    if kind == "binary":
        return X, y % 2
    if kind == "multilabel":
        return X, np.stack([y % 2, y % 3 == 0, y > 6], axis=1).astype(int)
    if kind == "regression-1d":
        X, t = make_regression(400, 12, noise=0.5, random_state=1)
        return X, t / 100
    if kind == "regression-2d":
        X, t = make_regression(400, 12, n_targets=2, noise=0.5, random_state=1)
        return X, t / 100
    if kind.startswith("counts"):               # Poisson targets, log-linear in X
        rng = np.random.default_rng(3)
        X = rng.normal(size=(400, 8))
        width = 2 if kind == "counts-2d" else 1
        mean = np.exp(0.3 * X[:, :width] - 0.2 * X[:, width:2 * width] + 0.5)
        t = rng.poisson(mean).astype(float)
        return X, t[:, 0] if width == 1 else t
    return X, y


def fit_both(ours, theirs, X, y, sample_weight=None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        theirs.fit(X, y, sample_weight=sample_weight)
        ours.fit(X, y, sample_weight=sample_weight)
    return ours, theirs


def assert_same_model(ours, theirs, X, rtol):
    assert ours.n_iter_ == theirs.n_iter_
    assert ours.t_ == theirs.t_
    for a, b in zip(ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_):
        assert a.dtype == b.dtype == np.float64
        scale = np.abs(b).max()
        assert np.abs(a - b).max() <= rtol * scale, np.abs(a - b).max() / scale
    if hasattr(theirs, "predict_proba"):
        np.testing.assert_allclose(ours.predict_proba(X), theirs.predict_proba(X),
                                   rtol=1e3 * rtol, atol=1e3 * rtol)
        np.testing.assert_array_equal(ours.predict(X), theirs.predict(X))
    else:
        np.testing.assert_allclose(ours.predict(X), theirs.predict(X), rtol=1e3 * rtol,
                                   atol=1e3 * rtol)


# lbfgs takes up to max_iter line searches whose rounding compounds: 1e-9.
def tolerance(solver):
    return 1e-9 if solver == "lbfgs" else 1e-10


@pytest.mark.parametrize("solver", list(SOLVERS))
@pytest.mark.parametrize("kind", ["multiclass", "binary", "multilabel"])
def test_classifier_same_model(solver, kind):
    X, y = targets(kind)
    settings = dict(hidden_layer_sizes=(24, 12), max_iter=30, random_state=3, alpha=1e-3,
                    **SOLVERS[solver])
    ours, theirs = fit_both(MLPClassifier(**settings), SkClassifier(**settings), X, y)
    assert_same_model(ours, theirs, X, tolerance(solver))


@pytest.mark.parametrize("solver", list(SOLVERS))
@pytest.mark.parametrize("kind", ["regression-1d", "regression-2d"])
def test_regressor_same_model(solver, kind):
    X, y = targets(kind)
    settings = dict(hidden_layer_sizes=(16,), activation="tanh", max_iter=30, random_state=0,
                    **SOLVERS[solver])
    ours, theirs = fit_both(MLPRegressor(**settings), SkRegressor(**settings), X, y)
    assert_same_model(ours, theirs, X, tolerance(solver))


@pytest.mark.parametrize("solver", ["sgd-nesterov", "adam", "lbfgs"])
@pytest.mark.parametrize("kind", ["counts-1d", "counts-2d"])
def test_poisson_regressor_same_model(solver, kind):
    X, y = targets(kind)
    settings = dict(loss="poisson", hidden_layer_sizes=(12,), activation="tanh", max_iter=30,
                    random_state=0, **SOLVERS[solver])
    settings["learning_rate_init"] = min(settings.get("learning_rate_init", 0.01), 0.01)
    ours, theirs = fit_both(MLPRegressor(**settings), SkRegressor(**settings), X, y)
    assert ours.out_activation_ == theirs.out_activation_ == "exp"
    assert_same_model(ours, theirs, X, tolerance(solver))
    assert ours.loss_ == pytest.approx(theirs.loss_, rel=1e-10)
    if solver != "lbfgs":            # scikit-learn keeps no loss_curve_ for lbfgs
        np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-10)


@pytest.mark.parametrize("solver", ["sgd-nesterov", "adam", "lbfgs"])
def test_same_model_with_sample_weights(solver):
    X, y = targets("multiclass")
    w = np.random.default_rng(0).uniform(0.2, 3.0, y.size)
    settings = dict(hidden_layer_sizes=(20,), max_iter=25, random_state=1, **SOLVERS[solver])
    ours, theirs = fit_both(MLPClassifier(**settings), SkClassifier(**settings), X, y, w)
    assert_same_model(ours, theirs, X, tolerance(solver))


@pytest.mark.parametrize("solver", ["sgd-nesterov", "adam"])
@pytest.mark.parametrize("kind", ["multiclass", "binary", "regression-1d"])
def test_same_model_with_early_stopping(solver, kind):
    X, y = targets(kind)
    settings = dict(hidden_layer_sizes=(20,), max_iter=60, random_state=2, early_stopping=True,
                    n_iter_no_change=4, **SOLVERS[solver])
    Ours, Theirs = ((MLPRegressor, SkRegressor) if kind.startswith("regression")
                    else (MLPClassifier, SkClassifier))
    ours, theirs = fit_both(Ours(**settings), Theirs(**settings), X, y)
    assert ours.validation_scores_ == pytest.approx(theirs.validation_scores_, rel=1e-9)
    assert ours.best_validation_score_ == pytest.approx(theirs.best_validation_score_, rel=1e-9)
    assert_same_model(ours, theirs, X, tolerance(solver))


def test_same_model_through_warm_start_and_partial_fit():
    X, y = targets("multiclass")
    settings = dict(hidden_layer_sizes=(16,), solver="sgd", learning_rate="invscaling",
                    learning_rate_init=0.1, max_iter=5, random_state=0, warm_start=True)
    ours, theirs = MLPClassifier(**settings), SkClassifier(**settings)
    for _ in range(3):          # each fit starts a new optimizer at learning_rate_init
        fit_both(ours, theirs, X, y)
    assert_same_model(ours, theirs, X, 1e-10)
    ours, theirs = MLPClassifier(**settings), SkClassifier(**settings)
    for start in range(0, 600, 150):
        for est in (ours, theirs):
            est.partial_fit(X[start:start + 150], y[start:start + 150], classes=np.arange(10))
    assert_same_model(ours, theirs, X, 1e-10)
    assert ours._optimizer.learning_rate == pytest.approx(theirs._optimizer.learning_rate,
                                                          rel=1e-15)


@pytest.mark.parametrize("kind", ["multiclass", "regression-2d"])
@pytest.mark.parametrize("weighted", [False, True])
def test_loss_curve_equals_sklearn(kind, weighted):
    """loss_curve_ is scikit-learn's: each batch's mean loss with the L2 term
    of the weights it started from, weighted by its rows."""
    X, y = targets(kind)
    w = np.random.default_rng(1).uniform(0.2, 3.0, y.shape[0]) if weighted else None
    Ours, Theirs = ((MLPRegressor, SkRegressor) if kind.startswith("regression")
                    else (MLPClassifier, SkClassifier))
    settings = dict(hidden_layer_sizes=(24,), max_iter=20, random_state=0, alpha=1e-2)
    ours, theirs = fit_both(Ours(**settings), Theirs(**settings), X, y, w)
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-12)
    assert ours.loss_ == pytest.approx(theirs.loss_, rel=1e-12)
    assert ours.best_loss_ == pytest.approx(theirs.best_loss_, rel=1e-12)


@pytest.mark.parametrize("solver", ["sgd-nesterov", "adam", "lbfgs"])
@pytest.mark.parametrize("kind", ["multiclass", "regression-1d"])
@pytest.mark.parametrize("fmt", ["csr", "csc"])
def test_same_model_on_sparse_input(solver, kind, fmt):
    """Sparse X (as scikit-learn's own test_sparse_matrices): the same model
    as scikit-learn's on the same sparse matrix, and as on its dense copy."""
    import scipy.sparse as sp
    X, y = targets(kind)
    X = np.where(np.abs(X) > np.quantile(np.abs(X), 0.8), X, 0.0)  # ~80 % zeros
    X_sparse = sp.csr_matrix(X) if fmt == "csr" else sp.csc_matrix(X)
    Ours, Theirs = ((MLPRegressor, SkRegressor) if kind.startswith("regression")
                    else (MLPClassifier, SkClassifier))
    settings = dict(hidden_layer_sizes=(16,), max_iter=20, random_state=0, **SOLVERS[solver])
    ours, theirs = fit_both(Ours(**settings), Theirs(**settings), X_sparse, y)
    assert_same_model(ours, theirs, X_sparse, tolerance(solver))
    dense = fit_both(Ours(**settings), Theirs(**settings), X, y)[0]
    assert_same_model(ours, dense, X, tolerance(solver))
    if solver != "lbfgs":                     # partial_fit on sparse rows too
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            ours.partial_fit(X_sparse, y)
            theirs.partial_fit(X_sparse, y)
        assert_same_model(ours, theirs, X_sparse, tolerance(solver))
