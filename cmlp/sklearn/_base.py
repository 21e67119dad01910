"""The part of MLPClassifier and MLPRegressor they share: parameters,
checks, the fit of each solver, early stopping, pickling.

Design
------
* The parameters are scikit-learn's, with the same names, defaults and
  meaning, plus cmlp's own (``dtype``, ``dropout``, ``init``) whose
  defaults change nothing. Training runs in cmlp's C engine through a
  `Network` (the fitted ``network_``); ``coefs_`` and ``intercepts_`` are
  views into its one parameter buffer.
* One ``check_random_state(random_state)`` per fit call, drawn from in
  scikit-learn's order (cmlp.sklearn._init): initial parameters, the
  early-stopping split, one shuffle per epoch.
* The stochastic solvers run `Network.fit` with scikit-learn's order of
  rows and its per-epoch logic as a callback (cmlp.sklearn._rule); lbfgs
  runs scipy's L-BFGS-B over the C loss and gradient (cmlp.sklearn._lbfgs).
* ``alpha`` is scikit-learn's L2 coefficient of the summed loss: each
  batch adds alpha / (the batch's weight total) * W to the gradient, in C.
"""
from __future__ import annotations

import numbers
import warnings

import numpy as np
import scipy.sparse
from sklearn.base import BaseEstimator, is_classifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import check_is_fitted, column_or_1d, validate_data

from cmlp._scale import scale_check_off
from cmlp._threads import check_threads
from cmlp._validation import check_number
from cmlp.network import Network
from cmlp.optimizers import SGD, Adam
from cmlp.sklearn._init import SklearnOrder, sklearn_initial_parameters
from cmlp.sklearn._lbfgs import fit_lbfgs
from cmlp.sklearn._rule import InverseScalingBySamples, OptimizerState, SklearnRule, record_divergence
from cmlp.training import TrainingDiverged

ACTIVATIONS = {"identity": "identity", "logistic": "sigmoid", "tanh": "tanh", "relu": "relu",
               "leaky_relu": "leaky_relu", "gelu": "gelu"}
SOLVERS = ("lbfgs", "sgd", "adam")
STOCHASTIC = ("sgd", "adam")
INITS = ("sklearn", "he")
# The fitted attributes scikit-learn's estimators carry besides the weights.
FITTED_ATTRIBUTES = ("n_features_in_", "n_layers_", "n_outputs_", "out_activation_", "n_iter_",
                     "t_", "loss_", "loss_curve_", "best_loss_", "validation_scores_",
                     "best_validation_score_", "feature_names_in_")
NON_FINITE = ("Solver produced non-finite parameter weights. The input data may contain large "
              "values and need to be preprocessed.")


def _stochastic(estimator):
    """available_if's test: partial_fit exists for sgd and adam only."""
    if estimator.solver not in STOCHASTIC:
        raise AttributeError(f"partial_fit is only available for stochastic optimizers. "
                             f"{estimator.solver} is not stochastic.")
    return True


class BaseMLP(BaseEstimator):
    """Shared by MLPClassifier and MLPRegressor (see their docstrings)."""

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam",
                 alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000,
                 dtype=None, dropout=0.0, init="sklearn", threads=None):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.dtype = dtype
        self.dropout = dropout
        self.init = init
        self.threads = threads

    # ---------------------------------------------------------- checks ----

    def _check_params(self):
        """The hidden layer sizes, after checking every parameter (ValueError,
        as scikit-learn's parameter validation gives)."""
        for name, allowed in (("solver", SOLVERS), ("activation", tuple(ACTIVATIONS)),
                              ("learning_rate", ("constant", "invscaling", "adaptive")),
                              ("dtype", (None, "float32", "float64")), ("init", INITS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {list(allowed)}, "
                                 f"got {getattr(self, name)!r}")
        sizes = self.hidden_layer_sizes
        sizes = [sizes] if np.isscalar(sizes) else list(sizes)
        if any(isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 1
               for s in sizes):
            raise ValueError(f"hidden_layer_sizes must be positive integers, got {sizes}")
        # (name, bounds): scikit-learn's ranges, through cmlp's one number check.
        bounds = [("alpha", {"low": 0}), ("learning_rate_init", {"low": 0, "low_open": True}),
                  ("max_iter", {"low": 1, "integer": True}), ("tol", {"low": 0}),
                  ("momentum", {"low": 0, "high": 1}), ("beta_1", {"low": 0, "high": 1}),
                  ("beta_2", {"low": 0, "high": 1}), ("epsilon", {"low": 0}),
                  ("validation_fraction", {"low": 0, "high": 1}), ("power_t", {"low": 0}),
                  ("max_fun", {"low": 1, "integer": True})]
        # n_iter_no_change: an integer >= 1, or np.inf (never stop on it).
        if not (isinstance(self.n_iter_no_change, numbers.Real)
                and self.n_iter_no_change == np.inf):
            bounds.append(("n_iter_no_change", {"low": 1, "integer": True}))
        for name, limits in bounds:
            try:
                check_number(getattr(self, name), name, **limits)
            except TypeError as exc:
                raise ValueError(str(exc)) from None
        if not (self.batch_size == "auto" or (isinstance(self.batch_size, (int, np.integer))
                                              and not isinstance(self.batch_size, bool)
                                              and self.batch_size >= 1)):
            raise ValueError(f"batch_size must be 'auto' or an integer >= 1, "
                             f"got {self.batch_size!r}")
        try:
            check_threads(self.threads)
        except TypeError as exc:
            raise ValueError(str(exc)) from None
        return [int(s) for s in sizes]

    def _compute_dtype(self, X):
        if self.dtype is not None:
            return np.dtype(self.dtype)
        return np.dtype(np.float32) if getattr(X, "dtype", None) == np.float32 \
            else np.dtype(np.float64)

    # ---------------------------------------------------------- fitting ----

    def fit(self, X, y, sample_weight=None, comm=None):
        """Fit the model to data matrix X and target(s) y.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            The input data.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            The target values (class labels in classification, real numbers
            in regression).
        sample_weight : array-like of shape (n_samples,), default=None
            Sample weights.
        comm : mpi4py communicator, default=None
            Train data-parallel over its ranks (sgd and adam); every rank
            passes the same data (see `cmlp.Network.fit`).

        Returns
        -------
        self : object
            The fitted estimator.
        """
        return self._fit(X, y, sample_weight, incremental=False, comm=comm)

    def _fit(self, X, y, sample_weight, incremental, comm=None):
        hidden = self._check_params()
        if comm is not None and self.solver not in STOCHASTIC:
            raise ValueError("comm= trains data-parallel with solver='sgd' or 'adam'")
        if "network_" not in self.__dict__ and "coefs_" in self.__dict__:
            self._adopt_assigned_weights()
        first_pass = not hasattr(self, "network_") or (not self.warm_start and not incremental)
        X, y = validate_data(self, X, y, reset=first_pass, accept_sparse=["csr", "csc"],
                             dtype=(np.float64, np.float32), multi_output=True,
                             y_numeric=not is_classifier(self))
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        dtype = self._compute_dtype(X) if first_pass else self.network_.dtype
        X = _network_input(X, dtype)
        if sample_weight is not None:
            sample_weight = _check_sample_weight(sample_weight, X.shape[0])
        targets = self._encode_targets(y, first_pass, incremental)
        random_state = check_random_state(self.random_state)
        if first_pass:
            self._initialize(X.shape[1], targets, hidden, dtype, random_state)
        elif targets.ndim == 2 and targets.shape[1] != self.network_.n_outputs:
            raise ValueError(f"y has {targets.shape[1]} outputs; the fitted network has "
                             f"{self.network_.n_outputs}")
        if self.solver == "lbfgs":
            net = self.network_
            X, labels, floats = net._check_Xy(X, targets)
            weights = net._check_weights(sample_weight, None, labels, X.shape[0])
            fit_lbfgs(self, net, X, labels, floats, weights)
        else:
            if self.early_stopping and incremental:
                raise ValueError("partial_fit does not support early_stopping=True")
            # A new optimizer per fit call; partial_fit keeps its own.
            fresh = not incremental or self.network_.optimizer is None
            if fresh:
                self.network_.optimizer = self._make_optimizer()
            self._fit_stochastic(X, targets, sample_weight, incremental, fresh, random_state,
                                 comm)
        if not np.isfinite(self.network_.parameters).all():
            raise ValueError(NON_FINITE)
        return self

    def _initialize(self, n_features, targets, hidden, dtype, random_state):
        k = targets.shape[1] if targets.ndim == 2 else len(self.classes_)
        output = self._output_kind()
        sizes = [n_features, *hidden, k]
        # The network's own seed drives only cmlp's extras (dropout masks, He
        # init): an int random_state is used as it is, so scikit-learn's
        # stream sees no extra draw; otherwise it is drawn first.
        rs = self.random_state
        needs_seed = self.dropout or self.init == "he"
        seed = int(rs) if isinstance(rs, numbers.Integral) else (
            int(random_state.randint(np.iinfo(np.int32).max)) if needs_seed else 0)
        self.network_ = Network(sizes, ACTIVATIONS[self.activation], output, dtype, seed=seed,
                                dropout=self.dropout)
        if self.init == "sklearn":
            self.network_._parameters[:] = sklearn_initial_parameters(
                sizes, self.activation, random_state, dtype)
        self._set_views()
        self.n_iter_, self.t_ = 0, 0
        self.n_layers_ = len(hidden) + 2
        self.n_outputs_ = k
        self.out_activation_ = {"softmax": "softmax", "sigmoid": "logistic",
                                "identity": "identity", "exp": "exp"}[output]
        self._best_parameters = self.network_.parameters.copy()
        if self.solver in STOCHASTIC:
            self.loss_curve_ = []
            self._no_improvement_count = 0
            if self.early_stopping:
                self.validation_scores_, self.best_validation_score_ = [], -np.inf
                self.best_loss_ = None
            else:
                self.validation_scores_, self.best_validation_score_ = None, None
                self.best_loss_ = np.inf

    def _adopt_assigned_weights(self):
        """coefs_ and intercepts_ assigned by hand before a warm-started fit
        or a partial_fit: train on from them, as scikit-learn does."""
        coefs = [np.asarray(W) for W in self.coefs_]
        intercepts = [np.asarray(b) for b in self.intercepts_]
        sizes = [coefs[0].shape[0], *(W.shape[1] for W in coefs)]
        output = {"softmax": "softmax", "logistic": "sigmoid", "identity": "identity",
                  "exp": "exp"}[
            getattr(self, "out_activation_", self._output_kind_default())]
        dtype = self.dtype or (np.float32 if coefs[0].dtype == np.float32 else np.float64)
        seed = self.random_state if isinstance(self.random_state, numbers.Integral) else 0
        self.network_ = Network(sizes, ACTIVATIONS[self.activation], output, dtype, seed=seed,
                                dropout=self.dropout)
        self.network_.set_weights(coefs, intercepts)
        self._set_views()
        self._best_parameters = self.network_.parameters.copy()

    def _make_optimizer(self):
        """A fresh optimizer (scikit-learn makes one per fit call; partial_fit
        keeps it)."""
        opt = (Adam(self.learning_rate_init, self.beta_1, self.beta_2, self.epsilon, self.alpha,
                    correction="step")
               if self.solver == "adam" else
               SGD(self.learning_rate_init, self.momentum,
                   self.nesterovs_momentum and self.momentum > 0, self.alpha,
                   convention="step"))
        opt.decay_per_sample = True
        return opt

    @property
    def _optimizer(self):
        """What scikit-learn's ``_optimizer`` tells of its state: the
        ``learning_rate`` its next step would use (sgd, adam)."""
        if not hasattr(self, "network_") or self.network_.optimizer is None:
            raise AttributeError("_optimizer: not fitted with a stochastic solver")
        return OptimizerState(self)

    def _set_views(self):
        self.coefs_ = list(self.network_.weights)
        self.intercepts_ = list(self.network_.biases)

    def _split(self, X, targets, sample_weight, random_state):
        """scikit-learn's early-stopping split (stratified for one output)."""
        # scikit-learn stratifies on its boolean indicator column (binary only).
        stratify = targets.astype(bool) if (is_classifier(self) and self.n_outputs_ == 1) \
            else None
        parts = train_test_split(X, targets, *([] if sample_weight is None else [sample_weight]),
                                 random_state=random_state, stratify=stratify,
                                 test_size=self.validation_fraction)
        X_train, X_val, y_train, y_val = parts[:4]
        w_train, w_val = (parts[4], parts[5]) if sample_weight is not None else (None, None)
        if X_val.shape[0] < 2:
            raise ValueError("The validation set is too small. Increase "
                             "'validation_fraction' or the size of your dataset.")
        return (X_train, y_train, w_train), (X_val, y_val, w_val)

    def _fit_stochastic(self, X, targets, sample_weight, incremental, fresh, random_state,
                        comm):
        net = self.network_
        validation = None
        X_train, y_train, w_train = X, targets, sample_weight
        if self.early_stopping:
            (X_train, y_train, w_train), validation = self._split(X, targets, sample_weight,
                                                                   random_state)
        self.n_iter_ = 0          # as scikit-learn: epochs of this call
        n = X_train.shape[0]
        batch = min(200, n) if self.batch_size == "auto" else min(self.batch_size, n)
        if self.batch_size != "auto" and self.batch_size > n:
            warnings.warn("Got `batch_size` less than 1 or larger than sample size. "
                          "It is going to be clipped", stacklevel=4)
        schedule = "constant"
        if self.solver == "sgd" and self.learning_rate == "invscaling":
            schedule = InverseScalingBySamples(n, self.power_t, self.t_, fresh)
        rule = SklearnRule(self, n, validation)
        self._converged = False
        epochs = 1 if incremental else self.max_iter
        own_stream = net._shuffle_rng
        net._shuffle_rng = SklearnOrder(random_state, n)
        try:
            with scale_check_off():     # scikit-learn's MLP does not warn about scale
                net.fit(X_train, y_train, epochs=epochs, batch_size=batch,
                        optimizer=net.optimizer, schedule=schedule, shuffle=self.shuffle,
                        sample_weight=w_train, verbose=0, callbacks=[rule],
                        divergence_factor=None,  # scikit-learn stops on NaN only
                        comm=comm, threads=self.threads)
        except TrainingDiverged as exc:
            if not self.early_stopping:
                raise ValueError(NON_FINITE) from exc
            record_divergence(self, epochs, n)
        finally:
            net._shuffle_rng = own_stream
        if self.early_stopping:
            net._parameters[:] = self._best_parameters
        if not incremental and not self._converged and self.n_iter_ == self.max_iter:
            warnings.warn(f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) reached "
                          "and the optimization hasn't converged yet.", ConvergenceWarning,
                          stacklevel=4)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True        # CSR and CSC, through the sparse first layer
        return tags

    @available_if(_stochastic)
    def partial_fit(self, X, y, sample_weight=None, comm=None):
        """Update the model with a single iteration over the given data.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            The input data.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            The target values.
        sample_weight : array-like of shape (n_samples,), default=None
            Sample weights.
        comm : mpi4py communicator, default=None
            As for `fit`.

        Returns
        -------
        self : object
            The updated estimator.
        """
        return self._fit(X, y, sample_weight, incremental=True, comm=comm)

    # ------------------------------------------------------- prediction ----

    def _outputs(self, X, check_input=True):
        """The network's outputs for X; validated (and feature names checked)
        only with check_input, as scikit-learn's own internal calls skip it."""
        check_is_fitted(self, "network_")
        if check_input:
            X = validate_data(self, X, reset=False, dtype=(np.float64, np.float32),
                              accept_sparse=["csr", "csc"])
        return self.network_.forward(_network_input(X, self.network_.dtype),
                                     threads=self.threads)

    def _score_network(self, X, y, sample_weight):
        """The validation score of the network as it is (NaN if its outputs
        are not finite), without input validation."""
        try:
            prediction = self._predict_outputs(self._outputs(X, check_input=False))
        except ValueError:          # the forward pass overflowed
            return np.nan
        return self._score_function(y, prediction, sample_weight)

    # --------------------------------------------------------- pickling ----

    def __getstate__(self):
        state = dict(super().__getstate__())
        state.pop("coefs_", None)           # views into network_, rebuilt on load
        state.pop("intercepts_", None)
        return state

    def __setstate__(self, state):
        super().__setstate__(state)
        if "network_" in self.__dict__:
            self._set_views()

    def to_sklearn(self):
        """The equivalent fitted scikit-learn estimator (weights and biases
        copied, in float64 as scikit-learn computes for float64 input)."""
        check_is_fitted(self, "network_")
        from sklearn import neural_network
        kind = neural_network.MLPClassifier if is_classifier(self) else neural_network.MLPRegressor
        params = {k: v for k, v in self.get_params().items()
                  if k not in ("dtype", "dropout", "init", "threads")}
        other = kind(**params)
        other.coefs_ = [np.array(W, dtype=np.float64) for W in self.coefs_]
        other.intercepts_ = [np.array(b, dtype=np.float64) for b in self.intercepts_]
        for name in FITTED_ATTRIBUTES:
            if hasattr(self, name):
                setattr(other, name, getattr(self, name))
        if is_classifier(self):
            other.classes_ = self.classes_
            other._label_binarizer = self._label_binarizer
        return other


def _network_input(X, dtype):
    """X as the network takes it: a contiguous array, or a CSR matrix of
    `dtype` (CSC converted once; never densified), which the network reads
    through cmlp's sparse first layer."""
    if scipy.sparse.issparse(X):
        return X.tocsr().astype(dtype, copy=False)
    return np.ascontiguousarray(X, dtype=dtype)


def _check_sample_weight(sample_weight, n):
    w = np.asarray(sample_weight, dtype=np.float64)
    if w.ndim == 0:
        w = np.full(n, float(w))
    if w.shape != (n,):
        raise ValueError(f"sample_weight.shape == {w.shape}, expected ({n},)")
    if not np.isfinite(w).all() or (w < 0).any():
        raise ValueError("sample_weight must hold finite values >= 0")
    if not w.sum() > 0:
        raise ValueError("Sample weights must contain at least one non-zero number.")
    return w
