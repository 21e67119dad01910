"""cmlp.sklearn: scikit-learn's estimator checks, scikit-learn's conventions
(alpha, the stopping rule, targets), the ecosystem (pipelines, grid search,
pickling) and the weight exchange with scikit-learn's own MLP."""
import copy
import pickle
import re
import subprocess
import sys
import warnings

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import load_diabetes, load_digits, load_iris
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV, cross_validate
from sklearn.neural_network import MLPClassifier as SkClassifier
from sklearn.neural_network import MLPRegressor as SkRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from cmlp.sklearn import MLPClassifier, MLPRegressor, expected_failed_checks, from_sklearn

from helpers import ENV, TESTS_DIR

# The defaults (adam, dtype=None: float64 for float64 input, as scikit-learn
# computes), sgd, lbfgs, and cmlp's fast float32.
ESTIMATORS = [MLPClassifier(random_state=0), MLPClassifier(solver="sgd", random_state=0),
              MLPClassifier(solver="lbfgs", random_state=0),
              MLPClassifier(dtype="float32", random_state=0), MLPRegressor(random_state=0),
              MLPRegressor(solver="sgd", random_state=0),
              MLPRegressor(solver="lbfgs", random_state=0),
              MLPRegressor(loss="poisson", random_state=0),
              MLPRegressor(loss="poisson", solver="lbfgs", random_state=0)]


@parametrize_with_checks(ESTIMATORS, expected_failed_checks=expected_failed_checks)
def test_sklearn_estimator_checks(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        check(estimator)


def digits():
    X, y = load_digits(return_X_y=True)
    return X / 16.0, y


def test_importing_cmlp_does_not_import_sklearn():
    code = "import sys, cmlp; assert 'sklearn' not in sys.modules, 'sklearn imported'"
    result = subprocess.run([sys.executable, "-c", code], env=ENV, cwd=TESTS_DIR,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_parameters_and_errors():
    for ours, theirs in ((MLPClassifier(), SkClassifier()), (MLPRegressor(), SkRegressor())):
        params, sk = ours.get_params(), theirs.get_params()
        assert {k: v for k, v in params.items() if k in sk} == sk   # same names and defaults
        assert set(params) - set(sk) == {"dtype", "dropout", "init", "threads"}
    X, y = digits()
    with pytest.raises(ValueError, match="solver must be one of"):
        MLPClassifier(solver="newton").fit(X, y)
    with pytest.raises(ValueError, match="activation"):
        MLPClassifier(activation="softplus").fit(X, y)


@pytest.mark.parametrize("labels", [np.array(["cat", "dog", "emu"]), np.array([3, 10, 70]),
                                    np.array([True, False])])
def test_any_class_labels(labels):
    X, y = digits()
    y = labels[y % len(labels)]
    clf = MLPClassifier(hidden_layer_sizes=(32,), max_iter=30, random_state=0).fit(X, y)
    assert list(clf.classes_) == sorted(labels.tolist())
    assert set(clf.predict(X)) <= set(labels.tolist())
    P = clf.predict_proba(X)
    assert P.shape == (X.shape[0], len(labels)) and np.allclose(P.sum(axis=1), 1)
    np.testing.assert_allclose(clf.predict_log_proba(X[:5]), np.log(clf.predict_proba(X[:5])),
                               rtol=1e-6)
    assert clf.score(X, y) > 0.6
    assert clf.out_activation_ == ("logistic" if len(labels) == 2 else "softmax")


def test_multilabel_and_regression_targets():
    X, y = digits()
    Y = np.stack([y % 2, (y > 4).astype(int)], axis=1)
    clf = MLPClassifier(hidden_layer_sizes=(32,), max_iter=40, random_state=0).fit(X, Y)
    assert clf.predict(X).shape == Y.shape and clf.score(X, Y) > 0.8
    assert clf.out_activation_ == "logistic" and clf.n_outputs_ == 2
    Xd, yd = load_diabetes(return_X_y=True)
    Xd = StandardScaler().fit_transform(Xd)
    reg = MLPRegressor(hidden_layer_sizes=(16,), max_iter=300, learning_rate_init=0.01,
                       random_state=0).fit(Xd, yd / 100)
    assert reg.predict(Xd).shape == (442,) and reg.score(Xd, yd / 100) > 0.4
    reg2 = MLPRegressor(hidden_layer_sizes=(16,), max_iter=20, random_state=0)
    reg2.fit(Xd, np.stack([yd, -yd], axis=1) / 100)
    assert reg2.predict(Xd).shape == (442, 2) and reg2.n_outputs_ == 2


def test_fitted_attributes_and_stopping_rule_match_sklearn():
    X, y = digits()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours = MLPClassifier(hidden_layer_sizes=(32,), tol=1e-3, n_iter_no_change=3,
                             random_state=0).fit(X, y)
        theirs = SkClassifier(hidden_layer_sizes=(32,), tol=1e-3, n_iter_no_change=3,
                              random_state=0).fit(X, y)
    for name in ("classes_", "n_layers_", "n_outputs_", "out_activation_", "n_features_in_"):
        assert np.array_equal(getattr(ours, name), getattr(theirs, name)), name
    assert [W.shape for W in ours.coefs_] == [W.shape for W in theirs.coefs_]
    assert len(ours.loss_curve_) == ours.n_iter_ and ours.loss_ == ours.loss_curve_[-1]
    assert ours.t_ == ours.n_iter_ * X.shape[0] and ours.best_loss_ == min(ours.loss_curve_)
    # The same rule stops both after the same number of epochs.
    assert ours.n_iter_ < 200 and ours.n_iter_ == theirs.n_iter_
    early = MLPClassifier(hidden_layer_sizes=(32,), early_stopping=True, random_state=0)
    early.fit(X, y)
    assert early.best_loss_ is None and len(early.validation_scores_) == early.n_iter_
    assert early.best_validation_score_ == max(early.validation_scores_)
    with pytest.warns(ConvergenceWarning, match="Maximum iterations"):
        MLPClassifier(hidden_layer_sizes=(8,), max_iter=2, random_state=0).fit(X, y)


@pytest.mark.parametrize("kind", ["classifier", "regressor"])
def test_alpha_and_sgd_follow_sklearn_exactly(kind):
    """From the same weights, SGD with L2 (alpha), sample weights and uneven
    batches gives scikit-learn's parameters (float64)."""
    X, y = digits()
    X, y = X[:250], y[:250]
    w = np.linspace(0.5, 2.0, 250)
    settings = dict(hidden_layer_sizes=(12,), solver="sgd", momentum=0.0, alpha=0.3,
                    batch_size=32, shuffle=False, learning_rate_init=0.05, random_state=0)
    Sk = SkClassifier if kind == "classifier" else SkRegressor
    target = y if kind == "classifier" else y / 10.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        theirs = Sk(max_iter=1, **settings).fit(X, target, sample_weight=w)
        ours = from_sklearn(theirs)
        theirs.set_params(warm_start=True, max_iter=3).fit(X, target, sample_weight=w)
        ours.set_params(warm_start=True, max_iter=3).fit(X, target, sample_weight=w)
    for a, b in zip(ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(ours.loss_curve_[-3:], theirs.loss_curve_[-3:], rtol=1e-10)


@pytest.mark.parametrize("dtype,tolerance", [("float64", 1e-12), ("float32", 1e-5)])
def test_weights_exchange_with_sklearn(dtype, tolerance):
    X, y = digits()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        theirs = SkClassifier(hidden_layer_sizes=(20, 10), activation="tanh", max_iter=20,
                              random_state=0).fit(X, y)
        ours = MLPClassifier(hidden_layer_sizes=(20, 10), max_iter=20, random_state=0,
                             dtype=dtype, init="he").fit(X, y)
    rng = np.random.default_rng(0)
    inputs = np.vstack([X, rng.standard_normal((50, 64))])
    converted = from_sklearn(theirs, dtype=dtype)
    assert np.abs(converted.predict_proba(inputs) - theirs.predict_proba(inputs)).max() <= tolerance
    back = ours.to_sklearn()
    assert np.abs(back.predict_proba(inputs) - ours.predict_proba(inputs)).max() <= tolerance
    assert np.array_equal(back.predict(inputs), ours.predict(inputs))


def test_partial_fit_needs_classes_first_then_continues():
    X, y = digits()
    clf = MLPClassifier(hidden_layer_sizes=(16,), learning_rate_init=0.01, random_state=0)
    theirs = SkClassifier(hidden_layer_sizes=(16,), learning_rate_init=0.01, random_state=0)
    with pytest.raises(ValueError, match="classes"):
        clf.partial_fit(X[:100], y[:100])
    for _ in range(5):
        for start in range(0, 1700, 100):
            for est in (clf, theirs):
                est.partial_fit(X[start:start + 100], y[start:start + 100], classes=np.arange(10))
    assert clf.n_iter_ == 1 and clf.t_ == 5 * 1700 == theirs.t_
    assert clf.score(X, y) > 0.9 and abs(clf.score(X, y) - theirs.score(X, y)) < 0.05
    with pytest.raises(ValueError, match="not the same"):
        clf.partial_fit(X[:10], y[:10], classes=np.arange(11))


def test_pickle_clone_deepcopy_joblib(tmp_path):
    import joblib
    X, y = digits()
    clf = MLPClassifier(hidden_layer_sizes=(16,), max_iter=10, random_state=0).fit(X, y)
    expected = clf.predict_proba(X)
    for other in (pickle.loads(pickle.dumps(clf)), copy.deepcopy(clf)):
        np.testing.assert_array_equal(other.predict_proba(X), expected)
        assert np.shares_memory(other.coefs_[0], other.network_.parameters)
    fresh = clone(clf)
    assert not hasattr(fresh, "network_") and fresh.get_params() == clf.get_params()
    path = tmp_path / "clf.joblib"
    joblib.dump(clf, path)
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "expected.npy", expected)
    code = ("import joblib, numpy as np, sys; d = sys.argv[1]; clf = joblib.load(d + '/clf.joblib');"
            "P = clf.predict_proba(np.load(d + '/X.npy'));"
            "assert np.array_equal(P, np.load(d + '/expected.npy')), 'differs'")
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path)], env=ENV,
                            cwd=TESTS_DIR, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_pipeline_grid_search_cross_validate_and_dataframes():
    pd = pytest.importorskip("pandas")
    X, y = load_iris(return_X_y=True, as_frame=True)
    pipe = make_pipeline(StandardScaler(), MLPClassifier(max_iter=300, random_state=0))
    grid_of = {"mlpclassifier__hidden_layer_sizes": [(8,), (16,)],
               "mlpclassifier__alpha": [1e-4, 1e-2]}
    grid = GridSearchCV(pipe, grid_of, cv=3, n_jobs=2)
    theirs = GridSearchCV(make_pipeline(StandardScaler(), SkClassifier(max_iter=300,
                                                                       random_state=0)),
                          grid_of, cv=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        grid.fit(X, y)
        theirs.fit(X, y)
        scores = cross_validate(pipe, X, y, cv=5)
    # The same models as scikit-learn's, so the same scores, fold by fold.
    np.testing.assert_array_equal(grid.cv_results_["mean_test_score"],
                                  theirs.cv_results_["mean_test_score"])
    assert grid.best_score_ > 0.8 and scores["test_score"].mean() > 0.8
    assert not hasattr(grid.best_estimator_[-1], "feature_names_in_")   # the scaler gave arrays
    alone = MLPClassifier(hidden_layer_sizes=(4,), max_iter=5, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        alone.fit(X, y)
    assert list(alone.feature_names_in_) == list(X.columns) and alone.n_features_in_ == 4
    pipe.set_output(transform="pandas")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        pipe.fit(X, y)
    assert isinstance(pipe[:-1].transform(X), pd.DataFrame)
    assert list(pipe[-1].feature_names_in_) == list(X.columns)
    with pytest.raises(ValueError, match="feature names"):
        pipe[-1].predict(X.rename(columns=lambda c: c + "!"))


@pytest.mark.parametrize("seed", range(4))
def test_check_regressors_train_passes_at_50_epochs(seed):
    """At scikit-learn's defaults (its initialisation, Adam and float64) this
    check passes at max_iter=50 for every seed, as scikit-learn's own
    MLPRegressor does (issue 18 found it failing for seeds 0-5 before)."""
    from sklearn.utils.estimator_checks import check_regressors_train
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        check_regressors_train("MLPRegressor", MLPRegressor(max_iter=50, random_state=seed))


@pytest.mark.parametrize("Estimator", [MLPClassifier, MLPRegressor])
def test_docstrings_document_every_parameter_attribute_and_method(Estimator):
    import inspect
    doc = inspect.getdoc(Estimator)
    documented = set(re.findall(r"^(\w+)(?:, (\w+))? : ", doc, re.M))
    names = {name for pair in documented for name in pair if name}
    assert set(Estimator().get_params()) <= names, set(Estimator().get_params()) - names
    for attribute in ("coefs_", "intercepts_", "loss_curve_", "n_iter_", "t_", "network_"):
        assert attribute in names
    assert "\nParameters\n----------\n" in doc and "\nAttributes\n----------\n" in doc
    for method in ("fit", "partial_fit", "predict", "score"):
        method_doc = inspect.getdoc(getattr(Estimator(), method))
        assert method_doc and "Parameters\n----------" in method_doc, method
