"""scikit-learn's random draws, so the same random_state gives the same model.

Design
------
* scikit-learn makes one ``RandomState`` per fit call,
  ``check_random_state(random_state)``, and draws from it in a fixed order:
  the initial parameters (first fit only, `sklearn_initial_parameters`),
  then the early-stopping split, then one shuffle per epoch. The estimators
  here draw the same numbers in the same order.
* Each epoch scikit-learn shuffles the *previous* epoch's order
  (``sample_idx = shuffle(sample_idx, random_state=rs)``), so the order of
  epoch e is a composition of e permutations. `SklearnOrder` stands in for
  a Network's shuffling stream during one fit and hands the C stepper that
  order; everything after it (batches, steps) is cmlp's engine.
"""
from __future__ import annotations

import numpy as np

from cmlp._layout import split_flat


def sklearn_initial_parameters(sizes, activation, random_state, dtype):
    """The flat parameter buffer scikit-learn's ``_init_coef`` draws, in
    cmlp's layout (W then b per layer): per layer, W (n_in, n_out) then b
    (n_out,) uniform in +-sqrt(factor / (n_in + n_out)), factor 2 for a
    logistic network and 6 otherwise, drawn in float64 and then cast."""
    factor = 2.0 if activation == "logistic" else 6.0
    flat = np.empty(sum(i * o + o for i, o in zip(sizes[:-1], sizes[1:])), dtype=np.float64)
    weights, biases = split_flat(flat, sizes)
    for W, b in zip(weights, biases):
        bound = np.sqrt(factor / (W.shape[0] + W.shape[1]))
        W[...] = random_state.uniform(-bound, bound, W.shape)
        b[...] = random_state.uniform(-bound, bound, b.shape[0])
    return flat.astype(dtype, copy=False)


class SklearnOrder:
    """A Network's shuffling stream replaced, for one fit, by scikit-learn's:
    ``permutation(n)`` returns the previous order shuffled by
    ``random_state`` (as ``sklearn.utils.shuffle`` does). ``bit_generator.state``
    snapshots and restores it, as cmlp's training loop does with its own
    stream (an epoch that diverges is put back)."""

    def __init__(self, random_state, n_rows):
        self.random_state = random_state
        self.order = np.arange(n_rows, dtype=np.intp)
        self.bit_generator = self

    @property
    def state(self):
        return self.random_state.get_state(), self.order.copy()

    @state.setter
    def state(self, value):
        random_state, order = value
        self.random_state.set_state(random_state)
        self.order = np.array(order, dtype=np.intp)

    def permutation(self, n_rows):
        if n_rows != self.order.size:
            raise ValueError(f"this order is for {self.order.size} rows, not {n_rows}")
        # RandomState.permutation(n) is shuffle(arange(n)): sklearn.utils.shuffle's draw.
        self.order = self.order[self.random_state.permutation(n_rows)]
        return self.order
