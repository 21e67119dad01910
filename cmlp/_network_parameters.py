"""Network's parameters: read-only views and the checked ways to change them.

A mixin of cmlp.network.Network, which owns the flat buffer
(`_parameters`) and its writable per-layer views (`_weights`, `_biases`).
"""
from __future__ import annotations

import numpy as np


class NetworkParameters:
    """The parameter access of Network (see cmlp.network)."""

    @property
    def parameters(self) -> np.ndarray:
        """The flat parameter buffer, every layer's W then b back to back (a
        read-only view; see set_parameters)."""
        return self._public[0]

    @property
    def weights(self) -> tuple:
        """W of each layer, (n_in, n_out) (read-only views; see set_weights)."""
        return self._public[1]

    @property
    def biases(self) -> tuple:
        """b of each layer, (n_out,) (read-only views; see set_weights)."""
        return self._public[2]

    def _checked_values(self, values, shape, name):
        """`values` as an array of `shape`, finite and within the dtype's
        range (a float64 1e39 would become inf in float32)."""
        array = np.asarray(values)
        if array.dtype.kind not in "biuf":
            raise TypeError(f"{name} must be real numbers, got dtype {array.dtype}")
        if array.shape != shape:
            raise ValueError(f"{name} must have shape {shape}, got {array.shape}")
        big = np.finfo(self.dtype).max
        if not (np.isfinite(array).all() and (np.abs(array) <= big).all()):
            raise ValueError(f"{name} must be finite and within the {self.dtype.name} range "
                             f"(|value| <= {big:.4g})")
        return array

    def set_parameters(self, values) -> None:
        """Replace all parameters with `values`, shape (n_parameters,), in
        the layout of `parameters`. ValueError (nothing changed) for a
        wrong shape or a value that is NaN, infinite or outside the dtype's
        range."""
        self._parameters[:] = self._checked_values(values, self._parameters.shape,
                                                   "parameters")

    def set_weights(self, weights=None, biases=None) -> None:
        """Replace W and/or b of some or all layers: `weights` and `biases`
        are sequences with one entry per layer, each an array of that
        layer's shape or None (left as it is). Everything is checked first
        (shape, finite, within the dtype's range), then written: on
        ValueError nothing has changed."""
        updates = []
        for given, views, kind in ((weights, self._weights, "W"), (biases, self._biases, "b")):
            if given is None:
                continue
            if isinstance(given, np.ndarray) or len(given) != len(views):
                raise ValueError(f"give one {kind} (or None) per layer: {len(views)} layers")
            updates += [(view, self._checked_values(value, view.shape, f"{kind} of layer {i}"))
                        for i, (view, value) in enumerate(zip(views, given)) if value is not None]
        for view, value in updates:
            view[...] = value

    def fold_input_standardization(self, mean, std) -> None:
        """Make a network trained on (X - mean) / std take raw X, exactly.

        Rewrites the first layer in place: (X - mean) / std @ W + b equals
        X @ (W / std[:, None]) + (b - (mean / std) @ W). `mean` and `std` are
        scalars or arrays of shape (n_features,), with std > 0 and finite.
        """
        n = self.n_features
        mean = np.broadcast_to(np.asarray(mean, dtype=np.float64), (n,))
        std = np.broadcast_to(np.asarray(std, dtype=np.float64), (n,))
        if not (np.isfinite(mean).all() and np.isfinite(std).all() and (std > 0).all()):
            raise ValueError("mean must be finite and std finite and > 0")
        W = self.weights[0].astype(np.float64)
        b = self.biases[0].astype(np.float64)
        rest = [None] * (len(self.sizes) - 2)
        self.set_weights([W / std[:, None], *rest], [b - (mean / std) @ W, *rest])
