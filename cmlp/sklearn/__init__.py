"""scikit-learn estimators backed by cmlp: drop-in MLPClassifier and MLPRegressor.

    from cmlp.sklearn import MLPClassifier      # instead of sklearn.neural_network
    clf = MLPClassifier(hidden_layer_sizes=(100,), max_iter=50).fit(X, y)

Needs scikit-learn >= 1.6 (``pip install "cmlp[sklearn]"``); ``import cmlp``
does not import it.

Design
------
* scikit-learn's parameters, defaults and fitted attributes; the same
  random draws in the same order (_init), so the same settings give the
  same model. The modules: _base (what both estimators share: checks, the
  stochastic fit, early stopping, pickling), _classifier, _regressor,
  _rule (the per-epoch logic), _lbfgs (the L-BFGS-B driver), _init (the
  initialisation and row order), _docs (the shared docstring text).
* Classes: multiclass uses softmax; binary problems and multilabel
  indicator matrices use logistic outputs (one unit for binary, as
  scikit-learn), so `to_sklearn`/`from_sklearn` exchange weights exactly.
* ``dtype=None`` (the default) follows scikit-learn: float32 input in
  float32, anything else in float64; ``dtype="float32"`` is cmlp's fast
  option. ``init="he"`` and ``dropout`` are cmlp's own choices.
* A fitted estimator pickles through its network's .npz bytes (no pickle of
  engine buffers); ``coefs_`` and ``intercepts_`` are views into the
  network's parameters.
"""
from __future__ import annotations

try:
    import sklearn  # noqa: F401
    from sklearn.utils.validation import validate_data  # noqa: F401  (>= 1.6)
except ImportError as exc:      # pragma: no cover - depends on the environment
    raise ImportError('cmlp.sklearn needs scikit-learn >= 1.6: pip install "cmlp[sklearn]" '
                      f"({exc})") from None

import numpy as np
from sklearn.utils.validation import check_is_fitted

from cmlp.network import Network
from cmlp.sklearn._base import ACTIVATIONS, FITTED_ATTRIBUTES
from cmlp.sklearn._classifier import MLPClassifier
from cmlp.sklearn._regressor import MLPRegressor

__all__ = ["MLPClassifier", "MLPRegressor", "from_sklearn", "expected_failed_checks"]


def from_sklearn(estimator, dtype=None):
    """A cmlp estimator with the weights and biases of a fitted scikit-learn
    MLPClassifier/MLPRegressor (float64 unless `dtype` is given)."""
    from sklearn import neural_network
    check_is_fitted(estimator, "coefs_")
    if isinstance(estimator, neural_network.MLPClassifier):
        kind = MLPClassifier
    elif isinstance(estimator, neural_network.MLPRegressor):
        kind = MLPRegressor
    else:
        raise TypeError(f"expected a fitted scikit-learn MLP, got {type(estimator).__name__}")
    ours = kind(**estimator.get_params(), dtype=dtype or "float64")
    hidden = [W.shape[1] for W in estimator.coefs_[:-1]]
    output = {"softmax": "softmax", "logistic": "sigmoid", "identity": "identity",
              "exp": "exp"}[estimator.out_activation_]
    net = Network([estimator.coefs_[0].shape[0], *hidden, estimator.coefs_[-1].shape[1]],
                  ACTIVATIONS[estimator.activation], output, ours.dtype, seed=0)
    net.set_weights(estimator.coefs_, estimator.intercepts_)
    ours.network_ = net
    ours._set_views()
    for name in FITTED_ATTRIBUTES:
        if hasattr(estimator, name):
            setattr(ours, name, getattr(estimator, name))
    ours._no_improvement_count = 0
    ours._best_parameters = net.parameters.copy()
    if kind is MLPClassifier:
        ours.classes_ = estimator.classes_
        ours._label_binarizer = estimator._label_binarizer
    return ours


def expected_failed_checks(estimator):
    """{check name: reason} of scikit-learn's estimator checks this estimator
    is expected to fail (the callable parametrize_with_checks takes)."""
    failures = {}
    if getattr(estimator, "dtype", None) == "float32":
        for data in ("dense", "sparse"):
            failures[f"check_sample_weight_equivalence_on_{data}_data"] = (
                "dtype='float32': weighted and repeated rows differ by 1-2 float32 ulps "
                "(1.2e-7 absolute), the check asks 1e-9 + 1e-7 relative; dtype=None passes")
    if getattr(estimator, "solver", None) == "lbfgs" \
            and type(estimator).__name__ == "MLPClassifier":
        failures["check_classifiers_multilabel_output_format_predict_proba"] = (
            "lbfgs fits the check's small multilabel set until some logistic outputs round to "
            "exactly 1.0 and the check asks < 1; scikit-learn's own MLPClassifier(solver="
            "'lbfgs') fails it the same way")
    if getattr(estimator, "loss", None) == "poisson" \
            and getattr(estimator, "solver", None) != "lbfgs":
        failures["check_regressors_train"] = (
            "the check's positive targets are not counts of a log-linear mean: 200 epochs of "
            "adam or sgd on the Poisson deviance reach R^2 < 0.5 there; scikit-learn's own "
            "MLPRegressor(loss='poisson') fails it the same way")
    return failures


del np
