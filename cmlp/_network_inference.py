"""Network's inference: forward, predict, predict_proba, evaluate and the
whole-batch gradients, through the C entry points (cmlp._entry).

A mixin of cmlp.network.Network, which owns the parameters (`_parameters`,
`_layout`) and the input checks (`_check_X`, `_check_Xy`, `_check_weights`,
`_workspace`).
"""
from __future__ import annotations

import numpy as np

from cmlp import _entry
from cmlp._layout import REGRESSION_OUTPUTS, split_flat
from cmlp._threads import check_threads
from cmlp.training import total_weight


class NetworkInference:
    """The inference methods of Network (see cmlp.network)."""

    def forward(self, X, out: np.ndarray | None = None, threads: int | None = None
                ) -> np.ndarray:
        """Network outputs for X (n, n_features), dense or scipy.sparse: class
        probabilities for a softmax network, raw outputs for an identity one,
        exp(z) for an exp one. Shape (n, k).

        `out`, if given, must be a C-contiguous (n, k) array of the network
        dtype; it is filled and returned (left partly written if X turns out
        to hold NaN/inf, which raises ValueError). Releases the GIL while
        computing; safe to call from several threads on one network.
        `threads`: how many threads may split the rows (default: the cores
        this process may use, see `fit`); a few rows use one.
        """
        if threads is not None:
            threads = check_threads(threads)
        # Fast path: an array already in the network's layout and dtype goes
        # straight to C (which checks it for NaN/inf); anything else is
        # validated and converted once.
        if out is None:
            result = _entry.forward_array(self._parameters, self._layout, X, threads)
            if result is not None:
                return result
        if not (type(X) is np.ndarray and X.dtype == self.dtype and X.ndim == 2
                and X.shape[1] == self.sizes[0] and X.shape[0] > 0 and X.flags.c_contiguous
                and X.flags.aligned):
            X = self._check_X(X)
        shape = (X.shape[0], self.sizes[-1])
        if out is None:
            out = np.empty(shape, dtype=self.dtype)
        elif (type(out) is not np.ndarray or out.shape != shape or out.dtype != self.dtype
              or not out.flags.c_contiguous or not out.flags.aligned
              or not out.flags.writeable):
            raise ValueError(f"out must be a writable, aligned, C-contiguous {self.dtype.name} "
                             f"array of shape {shape}")
        elif isinstance(X, np.ndarray) and np.may_share_memory(out, X):
            raise ValueError("out must not overlap X (rows still to be read would be "
                             "overwritten)")
        status = self._forward(self._parameters, self._layout, X, out, threads)
        if status != 1:
            raise _entry.forward_error(status, self.dtype.name)
        return out

    def predict_proba(self, X, out: np.ndarray | None = None, threads: int | None = None
                      ) -> np.ndarray:
        """Class probabilities (n, k) for a softmax network; per-label
        probabilities (n, k) for a sigmoid one. `out`, `threads`: see `forward`."""
        if self.output in REGRESSION_OUTPUTS:
            raise ValueError("predict_proba needs a softmax or sigmoid output; use forward "
                             "or predict")
        return self.forward(X, out=out, threads=threads)

    def predict(self, X, threads: int | None = None) -> np.ndarray:
        """Class labels (n,) for a softmax network; 0/1 label indicators
        (n, k), probability > 0.5, for a sigmoid one; outputs (n, k) for an
        identity one. A network fit on 1-D targets (one output) answers
        with shape (n,), like its targets. An exp network answers exp(z),
        its predicted means. `threads`: see `forward`."""
        P = self.forward(X, threads=threads)
        if self.output == "softmax":
            return P.argmax(axis=1)
        P = (P > 0.5).astype(np.int32) if self.output == "sigmoid" else P
        return P[:, 0] if self._target_ndim == 1 else P

    def evaluate(self, X, y, sample_weight=None, threads: int | None = None) -> dict:
        """Mean loss over (X, y), weighted if sample_weight is given:
        ``{"loss": ..., "accuracy": ...}``.

        ``accuracy`` is given for softmax networks (fraction of argmax hits)
        and sigmoid ones (fraction of rows with every label right); it is
        never weighted. `threads`: see `forward` (the result does not
        depend on it).
        """
        threads = check_threads(threads)
        X, labels, targets = self._check_Xy(X, y)
        weights = self._check_weights(sample_weight, None, labels, X.shape[0])
        result = self._evaluate(X, labels, targets, weights, threads)
        self._check_loss(result["loss"])
        return result

    def _check_loss(self, loss):
        # Inputs and parameters are finite: a NaN/inf loss is an overflow.
        if not np.isfinite(loss):
            remedy = "scale them, or use float64" if self.dtype == np.float32 else "scale them"
            raise ValueError(f"the loss is {loss}: the forward pass overflowed "
                             f"{self.dtype.name} (inputs, targets or weights too large for "
                             f"{self.dtype.name}; {remedy})")

    def _evaluate(self, X, labels, targets, weights=None, threads=None):
        if weights is None:
            weights = np.empty(0, dtype=self.dtype)
        loss, correct = _entry.evaluate(self._parameters, self._layout, X, labels, targets,
                                        weights, threads)
        n = X.shape[0]
        result = {"loss": loss / total_weight(weights, n)}
        if self.output not in REGRESSION_OUTPUTS:
            result["accuracy"] = correct / n
        return result

    def gradients(self, X, y, sample_weight=None, class_weight=None):
        """(mean loss, [dW per layer], [db per layer]) over the whole batch (X, y),
        without dropout; the loss is the weighted mean if weights are given.

        The gradient arrays are fresh copies, shaped like `weights`/`biases`.
        """
        X, labels, targets = self._check_Xy(X, y)
        weights = self._check_weights(sample_weight, class_weight, labels, X.shape[0])
        work = self._workspace(X.shape[0])
        # A buffer of this call's own: threads may ask for gradients at once.
        grads = np.empty_like(self._parameters)
        loss, _ = _entry.loss_and_gradients(self._parameters, grads, self._layout,
                                            X, labels, targets, weights, work)
        loss /= total_weight(weights, X.shape[0])
        self._check_loss(loss)
        dW, db = split_flat(grads, self.sizes)
        return loss, list(dW), list(db)
