"""MLPRegressor: scikit-learn's, on cmlp's engine."""
from __future__ import annotations

import numpy as np
from sklearn.base import RegressorMixin
from sklearn.metrics import r2_score

from cmlp.sklearn import _docs
from cmlp.sklearn._base import BaseMLP

# loss -> the output kind of cmlp's engine that computes it.
LOSSES = {"squared_error": "identity", "poisson": "exp"}


class MLPRegressor(RegressorMixin, BaseMLP):
    __doc__ = f"""Multi-layer perceptron regressor: scikit-learn's MLPRegressor,
    computed by cmlp's C engine.

    The same parameters, defaults and fitted attributes as
    ``sklearn.neural_network.MLPRegressor``, and the same model from the
    same settings and random_state: an identity output trained on half the
    mean squared error, or an exponential one (log link) trained on half the
    Poisson deviance.

    Parameters
    ----------
    loss : {{'squared_error', 'poisson'}}, default='squared_error'
        'squared_error': an identity output and half the squared error,
        1/2 (y_pred - y)^2 (``loss_curve_`` averages it over the outputs,
        as scikit-learn). 'poisson': predictions exp(z) (the log link) and
        half the Poisson deviance, y log(y / y_pred) - y + y_pred, summed
        over the outputs; y must be >= 0 (counts, rates, frequencies).
{_docs.indented(_docs.PARAMETERS)}

    Attributes
    ----------
{_docs.indented(_docs.ATTRIBUTES)}

    Examples
    --------
    >>> from sklearn.datasets import make_regression
    >>> from cmlp.sklearn import MLPRegressor
    >>> X, y = make_regression(n_samples=200, random_state=1)
    >>> reg = MLPRegressor(random_state=1, max_iter=2000, tol=0.1).fit(X, y)
    """

    def __init__(self, loss="squared_error", hidden_layer_sizes=(100,), activation="relu", *,
                 solver="adam", alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000,
                 dtype=None, dropout=0.0, init="sklearn", threads=None):
        self.loss = loss
        super().__init__(
            hidden_layer_sizes, activation, solver=solver, alpha=alpha, batch_size=batch_size,
            learning_rate=learning_rate, learning_rate_init=learning_rate_init,
            power_t=power_t, max_iter=max_iter, shuffle=shuffle, random_state=random_state,
            tol=tol, verbose=verbose, warm_start=warm_start, momentum=momentum,
            nesterovs_momentum=nesterovs_momentum, early_stopping=early_stopping,
            validation_fraction=validation_fraction, beta_1=beta_1, beta_2=beta_2,
            epsilon=epsilon, n_iter_no_change=n_iter_no_change, max_fun=max_fun, dtype=dtype,
            dropout=dropout, init=init, threads=threads)

    def _check_params(self):
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {sorted(LOSSES)}, got {self.loss!r}")
        return super()._check_params()

    def _output_kind_default(self):
        return LOSSES.get(self.loss, "identity")

    def _output_kind(self):
        return LOSSES[self.loss]

    def _encode_targets(self, y, first_pass, incremental):
        y = np.asarray(y, dtype=np.float64)
        if self.loss == "poisson" and (y < 0).any():
            raise ValueError("loss='poisson' needs y >= 0 (the Poisson deviance of a "
                             "negative target is undefined)")
        return y.reshape(-1, 1) if y.ndim == 1 else y

    def _predict_outputs(self, P):
        return P.ravel() if P.shape[1] == 1 else P

    def _score_function(self, y, prediction, sample_weight):
        return r2_score(y.ravel() if y.shape[1] == 1 else y, prediction,
                        sample_weight=sample_weight)

    def predict(self, X):
        """Predict using the multi-layer perceptron model.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            The input data.

        Returns
        -------
        y : ndarray of shape (n_samples,) or (n_samples, n_outputs)
            The predicted values.
        """
        return self._predict_outputs(self._outputs(X))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.positive_only = self.loss == "poisson"
        return tags
