"""Activations and inverted dropout, elementwise over a flat array.

See cmlp.checked_kernels for what these wrappers check."""

import numpy as np

from libc.stdint cimport uint64_t
from cython cimport floating

from cmlp cimport _kernels as K
from cmlp._kernels import ACTIVATION_CODES
from cmlp._validation import check_number
from cmlp.checked_kernels._checks import _fit, _floats


# ----------------------------------------------------------- activations ----

def _unary(int which, z):
    (z,) = _floats(z)
    a = np.empty_like(z)
    if z.size:
        _activation_forward(which, a.reshape(-1), z.reshape(-1))
    return a


def _activation_forward(int which, floating[::1] a, const floating[::1] z):
    _fit(a.shape[0] == z.shape[0] > 0 and which in ACTIVATION_CODES.values())
    with nogil:
        K.activation_forward(which, &a[0], &z[0], z.shape[0])


def _binary(int which, a, da):
    a, da = _floats(a, da)
    if a.shape != da.shape:
        raise ValueError(f"a {a.shape} and da {da.shape} must have one shape")
    dz = np.empty_like(da)
    if a.size:
        _activation_backward(which, dz.reshape(-1), a.reshape(-1), da.reshape(-1))
    return dz


def _activation_backward(int which, floating[::1] dz, const floating[::1] a,
                         const floating[::1] da):
    _fit(dz.shape[0] == a.shape[0] == da.shape[0] > 0 and which in ACTIVATION_CODES.values())
    with nogil:
        K.activation_backward(which, &dz[0], &a[0], &da[0], a.shape[0])


def relu_forward(z):
    """a = max(z, 0)."""
    return _unary(K.ACT_RELU, z)


def relu_backward(a, da):
    """dz = da * relu'(z), from the forward output a = relu(z)."""
    return _binary(K.ACT_RELU, a, da)


def tanh_forward(z):
    """a = tanh(z)."""
    return _unary(K.ACT_TANH, z)


def tanh_backward(a, da):
    """dz = da * (1 - a^2), from a = tanh(z)."""
    return _binary(K.ACT_TANH, a, da)


def sigmoid_forward(z):
    """a = 1 / (1 + exp(-z)), without overflow."""
    return _unary(K.ACT_SIGMOID, z)


def sigmoid_backward(a, da):
    """dz = da * a * (1 - a), from a = sigmoid(z)."""
    return _binary(K.ACT_SIGMOID, a, da)


def leaky_relu_forward(z):
    """a = z for z > 0, else 0.01 z."""
    return _unary(K.ACT_LEAKY_RELU, z)


def leaky_relu_backward(a, da):
    """dz = da where a > 0, else 0.01 da (from a = leaky_relu(z))."""
    return _binary(K.ACT_LEAKY_RELU, a, da)


def gelu_forward(z):
    """a = z * Phi(z), Phi the standard normal CDF (exact GELU, not the tanh form)."""
    return _unary(K.ACT_GELU, z)


def gelu_backward(z, da):
    """dz = da * (Phi(z) + z * phi(z)); takes the *input* z, not a."""
    return _binary(K.ACT_GELU, z, da)


# --------------------------------------------------------------- dropout ----

def dropout_seed(key, step, layer):
    """The seed of layer `layer`'s dropout mask at training step `step` (uint64s)."""
    return K.dropout_seed(_uint64(key, "key"), _uint64(step, "step"), _uint64(layer, "layer"))


def _uint64(value, name):
    return check_number(value, name, low=0, high=2**64 - 1, integer=True)


def _rate(rate):
    return check_number(rate, "rate", low=0, high=1, high_open=True)


def dropout_forward(a, rate, seed):
    """(out, mask): inverted dropout of a at `rate` with the masks of `seed`;
    mask holds 0 or 1 / (1 - rate), and out = a * mask (exactly 0 where dropped)."""
    (a,) = _floats(a)
    out, mask = np.empty_like(a), np.empty_like(a)
    if a.size:
        _dropout_forward(out.reshape(-1), mask.reshape(-1), a.reshape(-1), _rate(rate),
                         _uint64(seed, "seed"))
    return out, mask


def _dropout_forward(floating[::1] out, floating[::1] mask, const floating[::1] a,
                     double rate, uint64_t seed):
    _fit(out.shape[0] == mask.shape[0] == a.shape[0] > 0)
    _rate(rate)
    with nogil:
        K.dropout_forward(&out[0], &mask[0], &a[0], rate, seed, a.shape[0])


def dropout_backward(mask, dout):
    """da = dout * mask."""
    mask, dout = _floats(mask, dout)
    if mask.shape != dout.shape:
        raise ValueError(f"mask {mask.shape} and dout {dout.shape} must have one shape")
    da = np.empty_like(dout)
    if da.size:
        _dropout_backward(da.reshape(-1), mask.reshape(-1), dout.reshape(-1))
    return da


def _dropout_backward(floating[::1] da, const floating[::1] mask, const floating[::1] dout):
    _fit(da.shape[0] == mask.shape[0] == dout.shape[0] > 0)
    with nogil:
        K.dropout_backward(&da[0], &mask[0], &dout[0], da.shape[0])
