"""MLPClassifier: scikit-learn's, on cmlp's engine."""
from __future__ import annotations

import numpy as np
from sklearn.base import ClassifierMixin
from sklearn.metrics import accuracy_score
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import type_of_target, unique_labels

from cmlp.sklearn import _docs
from cmlp.sklearn._base import BaseMLP, _stochastic


class MLPClassifier(ClassifierMixin, BaseMLP):
    __doc__ = f"""Multi-layer perceptron classifier: scikit-learn's MLPClassifier,
    computed by cmlp's C engine.

    The same parameters, defaults and fitted attributes as
    ``sklearn.neural_network.MLPClassifier``, and the same model from the
    same settings and random_state. Multiclass targets train a softmax
    output with cross-entropy; binary targets (one logistic unit) and
    multilabel indicator matrices train logistic outputs.

    Parameters
    ----------
{_docs.indented(_docs.PARAMETERS)}

    Attributes
    ----------
    classes_ : ndarray or list of ndarray of shape (n_classes,)
        Class labels for each output.
{_docs.indented(_docs.ATTRIBUTES)}

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from cmlp.sklearn import MLPClassifier
    >>> X, y = load_digits(return_X_y=True)
    >>> clf = MLPClassifier(max_iter=50, random_state=0).fit(X / 16, y)
    """

    def _output_kind_default(self):
        return "softmax"

    def _output_kind(self):
        return "softmax" if self._label_binarizer.y_type_ == "multiclass" else "sigmoid"

    def _encode_targets(self, y, first_pass, incremental):
        """y as the network trains on it: class indices (multiclass) or 0/1
        indicators (binary, multilabel); the class checks of scikit-learn."""
        if not hasattr(self, "classes_") or (not self.warm_start and not incremental):
            self._label_binarizer = LabelBinarizer().fit(y)
            self.classes_ = self._label_binarizer.classes_
        else:
            classes = unique_labels(y)
            if self.warm_start:
                if set(classes) != set(self.classes_):
                    raise ValueError(
                        "warm_start can only be used where `y` has the same classes as in the "
                        f"previous call to fit. Previously got {self.classes_}, `y` has "
                        f"{classes}")
            elif len(np.setdiff1d(classes, self.classes_, assume_unique=True)):
                raise ValueError(f"`y` has classes not in `self.classes_`. `self.classes_` has "
                                 f"{self.classes_}. 'y' has {classes}.")
        if self._label_binarizer.y_type_ == "multiclass":
            return np.searchsorted(self.classes_, y)
        return self._label_binarizer.transform(y).astype(np.float64)

    @available_if(_stochastic)
    def partial_fit(self, X, y, sample_weight=None, classes=None, comm=None):
        """Update the model with a single iteration over the given data.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            The input data.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            The target values.
        sample_weight : array-like of shape (n_samples,), default=None
            Sample weights.
        classes : array of shape (n_classes,), default=None
            Every class of the problem; required on the first call, and the
            same on later ones.
        comm : mpi4py communicator, default=None
            As for `fit`.

        Returns
        -------
        self : object
            The updated estimator.
        """
        if classes is None:
            if not hasattr(self, "classes_"):
                raise ValueError("classes must be passed on the first call to partial_fit.")
        elif hasattr(self, "classes_"):
            if not np.array_equal(self.classes_, unique_labels(classes)):
                raise ValueError(f"`classes={classes!r}` is not the same as on last call to "
                                 f"partial_fit, was: {self.classes_!r}")
        else:
            self.classes_ = unique_labels(classes)
            self._label_binarizer = LabelBinarizer().fit(
                y if type_of_target(y).startswith("multilabel") else classes)
        return self._fit(X, y, sample_weight, incremental=True, comm=comm)

    def _predict_outputs(self, P):
        if self.n_outputs_ == 1:
            P = P.ravel()
        return self._label_binarizer.inverse_transform(P)

    def _score_function(self, y, prediction, sample_weight):
        truth = (self.classes_[y] if y.ndim == 1 else self._label_binarizer.inverse_transform(
            y.ravel() if self.n_outputs_ == 1 else y))
        return accuracy_score(truth, prediction, sample_weight=sample_weight)

    def predict(self, X):
        """Predict using the multi-layer perceptron classifier.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            The input data.

        Returns
        -------
        y : ndarray of shape (n_samples,) or (n_samples, n_classes)
            The predicted classes.
        """
        return self._predict_outputs(self._outputs(X))

    def predict_proba(self, X):
        """Probability estimates.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            The input data.

        Returns
        -------
        y_prob : ndarray of shape (n_samples, n_classes)
            The probability of each class, in the order of `classes_`.
        """
        P = self._outputs(X)
        if self.n_outputs_ == 1:
            P = P.ravel()
            return np.vstack([1 - P, P]).T
        return P

    def predict_log_proba(self, X):
        """The logarithm of `predict_proba` (-inf where a probability is 0).

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            The input data.

        Returns
        -------
        log_y_prob : ndarray of shape (n_samples, n_classes)
        """
        with np.errstate(divide="ignore"):
            return np.log(self.predict_proba(X))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        tags.input_tags.allow_nan = False
        return tags
