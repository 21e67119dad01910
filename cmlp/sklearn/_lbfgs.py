"""solver="lbfgs": scipy's L-BFGS-B over cmlp's C loss and gradient.

Design
------
* The objective is scikit-learn's: the (weighted) mean loss of the whole
  data plus alpha / 2 * ||W||^2 / (weight total), with its gradient; for
  squared error the loss (not the gradient) is also divided by the number
  of outputs, as scikit-learn's ``squared_loss`` averages over them.
* L-BFGS-B sees the network's flat parameter buffer as it is (W then b per
  layer). scikit-learn packs all W and then all b; the method is
  invariant under a permutation of the coordinates, so both follow the same
  path up to the rounding of sums.
* One call of the objective is one C pass (`_entry.loss_and_gradients`)
  over the validated arrays, into a gradient buffer allocated once; the L2
  term is one vectorised expression over a precomputed index of the
  weights. No per-layer packing in Python.
"""
from __future__ import annotations

import warnings

import numpy as np
import scipy.optimize
from sklearn.exceptions import ConvergenceWarning

from cmlp import _entry
from cmlp._layout import offsets
from cmlp.training import total_weight


def _weight_index(sizes):
    """Indices of the weights (not the biases) in the flat buffer."""
    w_off, _, _ = offsets(sizes)
    return np.concatenate([np.arange(w, w + i * o) for w, i, o in
                           zip(w_off, sizes[:-1], sizes[1:])])


class LbfgsObjective:
    """f(x) and its gradient for scipy, x the network's flat parameters."""

    def __init__(self, network, X, labels, targets, weights, alpha):
        self.net = network
        self.data = (X, labels, targets, weights)
        self.total = total_weight(weights, X.shape[0])
        self.alpha = alpha
        self.loss_scale = 1.0 / network.n_outputs if network.output == "identity" else 1.0
        self.weight_index = _weight_index(network.sizes)
        self.grads = np.empty_like(network._parameters)
        self.work = network._workspace(X.shape[0])
        self.calls = 0

    def __call__(self, x):
        net, grads = self.net, self.grads
        net._parameters[:] = x
        X, labels, targets, weights = self.data
        loss, _ = _entry.loss_and_gradients(net._parameters, grads, net._layout, X, labels,
                                             targets, weights, self.work)
        self.calls += 1
        loss = loss / self.total * self.loss_scale
        if self.alpha:
            W = net._parameters[self.weight_index].astype(np.float64)
            loss += 0.5 * self.alpha * float(W @ W) / self.total
            grads[self.weight_index] += (self.alpha / self.total) * W.astype(grads.dtype)
        return loss, grads.astype(np.float64)


def fit_lbfgs(estimator, network, X, labels, targets, weights):
    """Run L-BFGS-B from the network's parameters; leaves the result in the
    network and sets n_iter_, loss_ and loss_curve_ on the estimator (t_ stays 0,
    as in scikit-learn)."""
    objective = LbfgsObjective(network, X, labels, targets, weights, estimator.alpha)
    curve = []

    def record(intermediate_result):
        curve.append(float(intermediate_result.fun))
        if estimator.verbose:
            print(f"Iteration {len(curve)}, loss = {curve[-1]:.8f}")

    with np.errstate(over="ignore", invalid="ignore"):
        result = scipy.optimize.minimize(
            objective, network._parameters.astype(np.float64), method="L-BFGS-B", jac=True,
            callback=record,
            options={"maxfun": estimator.max_fun, "maxiter": estimator.max_iter,
                     "gtol": estimator.tol})
    network._parameters[:] = result.x
    n_iter = min(result.nit, estimator.max_iter)
    if result.status != 0:
        message = (f"lbfgs failed to converge after {n_iter} iteration(s) "
                   f"(status={result.status}):\n{result.message}\n")
        if n_iter == estimator.max_iter:
            message += ("\nIncrease the number of iterations to improve the convergence "
                        f"(max_iter={estimator.max_iter}).")
        warnings.warn(message, ConvergenceWarning, stacklevel=4)
    estimator.n_iter_ = n_iter
    estimator.loss_ = float(result.fun)
    estimator.loss_curve_ = curve
    return result

