"""The output layers' forward and losses (softmax + cross-entropy, identity
+ MSE, exp + Poisson, sigmoid + binary cross-entropy), with sample weights.

See cmlp.checked_kernels for what these wrappers check."""

import numpy as np

from libc.stdint cimport int32_t
from cython cimport floating

from cmlp cimport _kernels as K
from cmlp cimport _losses as L
from cmlp._validation import as_sample_weight
from cmlp.checked_kernels._checks import _fit, _floats, _labels, _matrix


# ---------------------------------------------------------------- losses ----

def softmax_forward(z):
    """Row-wise softmax of z (m, k)."""
    (z,) = _floats(z)
    _matrix(z, "z")
    p = np.empty_like(z)
    _softmax_forward(p, z)
    return p


def _softmax_forward(floating[:, ::1] p, const floating[:, ::1] z):
    _fit(min(z.shape[0], z.shape[1]) > 0 and (p.shape[0], p.shape[1]) == (z.shape[0], z.shape[1]))
    with nogil:
        L.softmax_forward(&p[0, 0], &z[0, 0], z.shape[0], z.shape[1])


def _weights(sample_weight, m, dtype):
    """Empty for None, else m finite weights >= 0 as a contiguous array."""
    if sample_weight is None:
        return np.empty(0, dtype=dtype)
    return np.ascontiguousarray(as_sample_weight(sample_weight, m), dtype=dtype)


cdef inline const floating* _wptr(const floating[::1] w) noexcept nogil:
    return &w[0] if w.shape[0] > 0 else NULL


def softmax_xent_loss(z, labels, sample_weight=None):
    """(sum over rows of w_i * -log softmax(z_i)[label_i], number of argmax hits)."""
    (z,) = _floats(z)
    _matrix(z, "z")
    return _softmax_xent_loss(z, _labels(labels, *z.shape),
                              _weights(sample_weight, z.shape[0], z.dtype))


def _softmax_xent_loss(const floating[:, ::1] z, const int32_t[::1] labels,
                       const floating[::1] w):
    cdef Py_ssize_t correct
    cdef double loss
    _fit(min(z.shape[0], z.shape[1]) > 0 and labels.shape[0] == z.shape[0]
         and w.shape[0] in (0, z.shape[0]))
    _labels(labels, z.shape[0], z.shape[1])
    with nogil:
        loss = L.softmax_xent_loss(&z[0, 0], &labels[0], _wptr(w), z.shape[0],
                                   z.shape[1], &correct)
    return loss, correct


def softmax_xent_backward(z, labels, sample_weight=None):
    """(dz = w_i (softmax(z_i) - onehot_i) / sum(w), weighted loss sum, hits);
    w = 1 gives (softmax(z) - onehot) / m."""
    (z,) = _floats(z)
    _matrix(z, "z")
    dz = np.empty_like(z)
    loss, correct = _softmax_xent_backward(dz, z, _labels(labels, *z.shape),
                                           _weights(sample_weight, z.shape[0], z.dtype))
    return dz, loss, correct


def _softmax_xent_backward(floating[:, ::1] dz, const floating[:, ::1] z,
                           const int32_t[::1] labels, const floating[::1] w):
    cdef Py_ssize_t correct
    cdef double loss
    _fit(min(z.shape[0], z.shape[1]) > 0 and labels.shape[0] == z.shape[0]
         and (dz.shape[0], dz.shape[1]) == (z.shape[0], z.shape[1]) and w.shape[0] in (0, z.shape[0]))
    _labels(labels, z.shape[0], z.shape[1])
    with nogil:
        loss = L.softmax_xent_backward(&dz[0, 0], &z[0, 0], &labels[0], _wptr(w),
                                       z.shape[0], z.shape[1], &correct)
    return loss, correct


def _targets(yhat, y):
    yhat, y = _floats(yhat, y)
    _matrix(yhat, "yhat")
    if y.shape != yhat.shape:
        raise ValueError(f"yhat {yhat.shape} and y {y.shape} must have one shape")
    return yhat, y


def mse_loss(yhat, y, sample_weight=None):
    """Sum over rows of w_i / 2 ||yhat_i - y_i||^2."""
    yhat, y = _targets(yhat, y)
    return _mse_loss(yhat, y, _weights(sample_weight, y.shape[0], y.dtype))


def _mse_loss(const floating[:, ::1] yhat, const floating[:, ::1] y, const floating[::1] w):
    cdef double loss
    _fit(min(y.shape[0], y.shape[1]) > 0 and (yhat.shape[0], yhat.shape[1]) == (y.shape[0], y.shape[1])
         and w.shape[0] in (0, y.shape[0]))
    with nogil:
        loss = L.mse_loss(&yhat[0, 0], &y[0, 0], _wptr(w), y.shape[0], y.shape[1])
    return loss


def mse_backward(yhat, y, sample_weight=None):
    """(dz = w_i (yhat_i - y_i) / sum(w), the mse_loss sum); w = 1 gives (yhat - y) / m."""
    yhat, y = _targets(yhat, y)
    dz = np.empty_like(y)
    return dz, _mse_backward(dz, yhat, y, _weights(sample_weight, y.shape[0], y.dtype))


def _mse_backward(floating[:, ::1] dz, const floating[:, ::1] yhat,
                  const floating[:, ::1] y, const floating[::1] w):
    cdef double loss
    _fit(min(y.shape[0], y.shape[1]) > 0 and (yhat.shape[0], yhat.shape[1]) == (y.shape[0], y.shape[1])
         and (dz.shape[0], dz.shape[1]) == (y.shape[0], y.shape[1]) and w.shape[0] in (0, y.shape[0]))
    with nogil:
        loss = L.mse_backward(&dz[0, 0], &yhat[0, 0], &y[0, 0], _wptr(w), y.shape[0],
                              y.shape[1])
    return loss


def exp_forward(z):
    """mu = exp(z), the output of a Poisson (log-link) network."""
    (z,) = _floats(z)
    mu = np.empty_like(z)
    if z.size:
        _exp_forward(mu.reshape(-1), z.reshape(-1))
    return mu


def _exp_forward(floating[::1] mu, const floating[::1] z):
    _fit(mu.shape[0] == z.shape[0] > 0)
    with nogil:
        K.exp_forward(&mu[0], &z[0], z.shape[0])


def _nonnegative(y):
    if (y < 0).any():
        raise ValueError("y: the Poisson deviance needs targets >= 0")


def poisson_loss(z, y, sample_weight=None):
    """Sum over rows of w_i * half Poisson deviance of exp(z_i) vs y_i, summed
    over outputs: exp(z) - y z + y log y - y, from the log-means z."""
    z, y = _targets(z, y)
    _nonnegative(y)
    return _poisson_loss(z, y, _weights(sample_weight, y.shape[0], y.dtype))


def _poisson_loss(const floating[:, ::1] z, const floating[:, ::1] y, const floating[::1] w):
    cdef double loss
    _fit(min(y.shape[0], y.shape[1]) > 0 and (z.shape[0], z.shape[1]) == (y.shape[0], y.shape[1])
         and w.shape[0] in (0, y.shape[0]))
    with nogil:
        loss = L.poisson_loss(&z[0, 0], &y[0, 0], _wptr(w), y.shape[0], y.shape[1])
    return loss


def poisson_backward(z, y, sample_weight=None):
    """(dz = w_i (exp(z_i) - y_i) / sum(w), the poisson_loss sum)."""
    z, y = _targets(z, y)
    _nonnegative(y)
    dz = np.empty_like(y)
    return dz, _poisson_backward(dz, z, y, _weights(sample_weight, y.shape[0], y.dtype))


def _poisson_backward(floating[:, ::1] dz, const floating[:, ::1] z,
                      const floating[:, ::1] y, const floating[::1] w):
    cdef double loss
    _fit(min(y.shape[0], y.shape[1]) > 0 and (z.shape[0], z.shape[1]) == (y.shape[0], y.shape[1])
         and (dz.shape[0], dz.shape[1]) == (y.shape[0], y.shape[1]) and w.shape[0] in (0, y.shape[0]))
    with nogil:
        loss = L.poisson_backward(&dz[0, 0], &z[0, 0], &y[0, 0], _wptr(w), y.shape[0],
                                  y.shape[1])
    return loss


def sigmoid_bce_loss(z, y, sample_weight=None):
    """(sum over rows of w_i * binary cross-entropy of sigmoid(z_i) vs y_i summed
    over labels, number of rows with every label right), from the logits z."""
    z, y = _targets(z, y)
    return _sigmoid_bce_loss(z, y, _weights(sample_weight, y.shape[0], y.dtype))


def _sigmoid_bce_loss(const floating[:, ::1] z, const floating[:, ::1] y,
                      const floating[::1] w):
    cdef Py_ssize_t correct
    cdef double loss
    _fit(min(y.shape[0], y.shape[1]) > 0 and (z.shape[0], z.shape[1]) == (y.shape[0], y.shape[1])
         and w.shape[0] in (0, y.shape[0]))
    with nogil:
        loss = L.sigmoid_bce_loss(&z[0, 0], &y[0, 0], _wptr(w), y.shape[0], y.shape[1],
                                  &correct)
    return loss, correct


def sigmoid_bce_backward(z, y, sample_weight=None):
    """(dz = w_i (sigmoid(z_i) - y_i) / sum(w), weighted loss sum, hits)."""
    z, y = _targets(z, y)
    dz = np.empty_like(y)
    loss, correct = _sigmoid_bce_backward(dz, z, y, _weights(sample_weight, y.shape[0], y.dtype))
    return dz, loss, correct


def _sigmoid_bce_backward(floating[:, ::1] dz, const floating[:, ::1] z,
                          const floating[:, ::1] y, const floating[::1] w):
    cdef Py_ssize_t correct
    cdef double loss
    _fit(min(y.shape[0], y.shape[1]) > 0 and (z.shape[0], z.shape[1]) == (y.shape[0], y.shape[1])
         and (dz.shape[0], dz.shape[1]) == (y.shape[0], y.shape[1]) and w.shape[0] in (0, y.shape[0]))
    with nogil:
        loss = L.sigmoid_bce_backward(&dz[0, 0], &z[0, 0], &y[0, 0], _wptr(w), y.shape[0],
                                      y.shape[1], &correct)
    return loss, correct
