"""The C kernels of cmlp._kernels and cmlp._optim, checked, for Python.

Each function here has a NumPy twin of the same name and signature in
cmlp.reference; tests/test_kernels.py compares every pair. These wrappers
validate and allocate (the Python boundary), then run the C kernel without
the GIL. Inputs must be float32 or float64 arrays of one dtype; the result
keeps that dtype. Loss sums come back as Python floats.

Other Cython code should cimport the kernels themselves from cmlp._kernels.
"""
import numpy as np

from libc.stdint cimport int32_t, uint64_t
from cython cimport floating

from cmlp cimport _kernels as K
from cmlp cimport _optim as O
from cmlp cimport _sparse as S
from cmlp._panel_gemm cimport (cmlp_free_layers, cmlp_pack_layers, cmlp_panel_gemm_available,
                               cmlp_panel_linear)
from cmlp._sparse cimport CsrMatrix
from cmlp._kernels import ACTIVATION_CODES
from cmlp._validation import as_csr, as_labels, as_sample_weight, check_number

__all__ = [
    "linear_forward", "panel_linear", "linear_forward_columns", "linear_backward", "linear_backward_input",
    "weight_gradient_rows",
    "bias_gradient", "linear_backward_sgd",
    "linear_backward_sgd_next_forward", "csr_linear_forward", "csr_linear_backward",
    "relu_forward", "relu_backward", "tanh_forward", "tanh_backward",
    "sigmoid_forward", "sigmoid_backward", "leaky_relu_forward", "leaky_relu_backward",
    "gelu_forward", "gelu_backward", "dropout_seed", "dropout_forward", "dropout_backward",
    "softmax_forward", "softmax_xent_loss", "softmax_xent_backward",
    "mse_loss", "mse_backward", "exp_forward", "poisson_loss", "poisson_backward",
    "sigmoid_bce_loss", "sigmoid_bce_backward", "sgd_update",
    "l2_grad", "momentum_update", "adam_update", "adam_step_update",
    "momentum_step_update",
]


def _floats(*arrays):
    """C-contiguous copies-if-needed of arrays sharing one float dtype."""
    dtypes = {np.asarray(a).dtype for a in arrays}
    if len(dtypes) != 1:
        raise TypeError(f"arrays must share one dtype, got {sorted(map(str, dtypes))}")
    dtype = dtypes.pop()
    if dtype not in (np.float32, np.float64):
        raise TypeError(f"dtype must be float32 or float64, got {dtype}")
    return [np.ascontiguousarray(a) for a in arrays]


def _matrix(a, name):
    if a.ndim != 2 or a.shape[0] < 1 or a.shape[1] < 1:
        raise ValueError(f"{name} must be a non-empty 2-D array, got shape {a.shape}")


def _fit(bint ok):
    # The underscore wrappers are reachable from Python too: each checks, in
    # O(1), that its buffers fit each other before handing C their pointers.
    if not ok:
        raise ValueError("the buffers' shapes do not fit each other (or one is empty)")


def _labels(labels, m, k):
    return as_labels(labels, m, k, "labels")


# ---------------------------------------------------------------- linear ----

def linear_forward(a_prev, W, b):
    """z (m, n_out) = a_prev (m, n_in) @ W (n_in, n_out) + b (n_out)."""
    a_prev, W, b = _floats(a_prev, W, b)
    _matrix(a_prev, "a_prev")
    _matrix(W, "W")
    if a_prev.shape[1] != W.shape[0] or b.shape != (W.shape[1],):
        raise ValueError(f"shapes {a_prev.shape} @ {W.shape} + {b.shape} do not fit")
    z = np.empty((a_prev.shape[0], W.shape[1]), dtype=W.dtype)
    _linear_forward(z, a_prev, W, b)
    return z


def _linear_forward(floating[:, ::1] z, const floating[:, ::1] a_prev,
                    const floating[:, ::1] W, const floating[::1] b):
    _fit(min(a_prev.shape[0], W.shape[0], W.shape[1]) > 0
         and a_prev.shape[1] == W.shape[0] and b.shape[0] == W.shape[1]
         and z.shape[0] == a_prev.shape[0] and z.shape[1] == W.shape[1])
    with nogil:
        K.linear_forward(&z[0, 0], &a_prev[0, 0], &W[0, 0], &b[0],
                         a_prev.shape[0], W.shape[0], W.shape[1])


def has_panel_linear():
    """Whether this CPU runs panel_linear (AVX-512F; elsewhere cmlp keeps BLAS)."""
    return bool(cmlp_panel_gemm_available())


def panel_linear(a_prev, W, b, relu=False):
    """z (m, n_out) = a_prev (m, n_in) @ W (n_in, n_out) + b, float32, by
    cmlp/_panel_gemm.h (W packed into panels first), as batched inference
    computes it, and with relu ReLU on the way out; RuntimeError where the
    CPU lacks AVX-512F."""
    a_prev, W, b = _floats(a_prev, W, b)
    _matrix(a_prev, "a_prev")
    _matrix(W, "W")
    if W.dtype != np.float32:
        raise TypeError(f"panel_linear is float32 only, got {W.dtype}")
    if a_prev.shape[1] != W.shape[0] or b.shape != (W.shape[1],):
        raise ValueError(f"shapes {a_prev.shape} @ {W.shape} + {b.shape} do not fit")
    if not cmlp_panel_gemm_available():
        raise RuntimeError("panel_linear needs AVX-512F, which this CPU lacks")
    z = np.empty((a_prev.shape[0], W.shape[1]), dtype=np.float32)
    _panel_linear(z, a_prev, W, b, bool(relu))
    return z


def _panel_linear(float[:, ::1] z, const float[:, ::1] a_prev, const float[:, ::1] W,
                  const float[::1] b, bint relu=False):
    cdef float** panels
    cdef Py_ssize_t k = W.shape[0], n = W.shape[1]
    cdef Py_ssize_t sizes[2]
    cdef Py_ssize_t offset = 0
    _fit(min(a_prev.shape[0], k, n) > 0 and a_prev.shape[1] == k and b.shape[0] == n
         and z.shape[0] == a_prev.shape[0] and z.shape[1] == n
         and cmlp_panel_gemm_available())
    sizes[0], sizes[1] = k, n
    panels = cmlp_pack_layers(1, sizes, &offset, &W[0, 0])     # W as a one-layer network
    if panels == NULL:
        raise MemoryError()
    with nogil:
        cmlp_panel_linear(&z[0, 0], &a_prev[0, 0], panels[0], &b[0], a_prev.shape[0], k, n,
                          relu)
    cmlp_free_layers(panels)


def linear_backward(dz, a_prev, W):
    """(da_prev, dW, db) for z = a_prev @ W + b given dz = dL/dz."""
    dz, a_prev, W = _floats(dz, a_prev, W)
    for a, name in ((dz, "dz"), (a_prev, "a_prev"), (W, "W")):
        _matrix(a, name)
    m, n_in, n_out = a_prev.shape[0], W.shape[0], W.shape[1]
    if a_prev.shape[1] != n_in or dz.shape != (m, n_out):
        raise ValueError(f"shapes dz {dz.shape}, a_prev {a_prev.shape}, W {W.shape} do not fit")
    da_prev = np.empty_like(a_prev)
    dW = np.empty_like(W)
    db = np.empty(n_out, dtype=W.dtype)
    _linear_backward(da_prev, dW, db, dz, a_prev, W)
    return da_prev, dW, db


def _linear_backward(floating[:, ::1] da_prev, floating[:, ::1] dW,
                     floating[::1] db, const floating[:, ::1] dz,
                     const floating[:, ::1] a_prev, const floating[:, ::1] W):
    _fit(min(a_prev.shape[0], W.shape[0], W.shape[1]) > 0
         and a_prev.shape[1] == W.shape[0] and (dz.shape[0], dz.shape[1]) == (a_prev.shape[0], W.shape[1])
         and (da_prev.shape[0], da_prev.shape[1]) == (a_prev.shape[0], a_prev.shape[1])
         and (dW.shape[0], dW.shape[1]) == (W.shape[0], W.shape[1]) and db.shape[0] == W.shape[1])
    with nogil:
        K.linear_backward(&da_prev[0, 0], &dW[0, 0], &db[0], &dz[0, 0],
                          &a_prev[0, 0], &W[0, 0], a_prev.shape[0],
                          W.shape[0], W.shape[1])


def _columns(c0, c1, n):
    c1 = n if c1 is None else c1
    if not 0 <= c0 < c1 <= n:
        raise ValueError(f"columns [{c0}, {c1}) do not fit in {n}")
    return c0, c1


def linear_backward_input(dz, W, c0=0, c1=None):
    """Columns [c0, c1) of da_prev (m, n_in) = dz (m, n_out) @ W^T."""
    dz, W = _floats(dz, W)
    _matrix(dz, "dz")
    _matrix(W, "W")
    if dz.shape[1] != W.shape[1]:
        raise ValueError(f"shapes dz {dz.shape}, W {W.shape} do not fit")
    c0, c1 = _columns(c0, c1, W.shape[0])
    da_prev = np.zeros((dz.shape[0], W.shape[0]), dtype=W.dtype)
    _linear_backward_input(da_prev, dz, W, c0, c1)
    return da_prev[:, c0:c1]


def _linear_backward_input(floating[:, ::1] da_prev, const floating[:, ::1] dz,
                           const floating[:, ::1] W, Py_ssize_t c0, Py_ssize_t c1):
    _fit(min(dz.shape[0], W.shape[0], W.shape[1]) > 0 and dz.shape[1] == W.shape[1]
         and (da_prev.shape[0], da_prev.shape[1]) == (dz.shape[0], W.shape[0])
         and 0 <= c0 < c1 <= W.shape[0])
    with nogil:
        K.linear_backward_input(&da_prev[0, 0], &dz[0, 0], &W[0, 0], dz.shape[0],
                                W.shape[0], W.shape[1], c0, c1)


def linear_forward_columns(a_prev, W, b, c0, c1, k0=0, k1=None):
    """Columns [c0, c1) of z (m, n_out) = a_prev[:, k0:k1] @ W[k0:k1] + b
    (all inputs by default)."""
    a_prev, W, b = _floats(a_prev, W, b)
    _matrix(a_prev, "a_prev")
    _matrix(W, "W")
    if a_prev.shape[1] != W.shape[0] or b.shape != (W.shape[1],):
        raise ValueError(f"shapes a_prev {a_prev.shape}, W {W.shape}, b {b.shape} do not fit")
    c0, c1 = _columns(c0, c1, W.shape[1])
    k0, k1 = _columns(k0, k1, W.shape[0])
    z = np.zeros((a_prev.shape[0], W.shape[1]), dtype=W.dtype)
    _linear_forward_columns(z, a_prev, W, b, c0, c1, k0, k1)
    return z[:, c0:c1]


def _linear_forward_columns(floating[:, ::1] z, const floating[:, ::1] a_prev,
                            const floating[:, ::1] W, const floating[::1] b, Py_ssize_t c0,
                            Py_ssize_t c1, Py_ssize_t k0=0, Py_ssize_t k1=-1):
    if k1 == -1:
        k1 = W.shape[0]             # all inputs
    _fit(min(a_prev.shape[0], W.shape[0], W.shape[1]) > 0 and a_prev.shape[1] == W.shape[0]
         and b.shape[0] == W.shape[1] and (z.shape[0], z.shape[1]) == (a_prev.shape[0], W.shape[1])
         and 0 <= c0 < c1 <= W.shape[1] and 0 <= k0 < k1 <= W.shape[0])
    with nogil:
        K.linear_forward_columns(&z[0, 0], &a_prev[0, 0], &W[0, 0], &b[0], a_prev.shape[0],
                                 W.shape[0], W.shape[1], c0, c1, k0, k1)


def weight_gradient_rows(out, dz, a_prev, alpha, beta, first=0, columns=None):
    """alpha * a_prev[:, first:first + rows]^T @ dz + beta * out, for out
    (rows, n_out), dz (m, n_out), a_prev (m, n_in): rows of dW (or of an
    SGD step in place, alpha -lr, beta 1). columns=(c0, c1): only those
    columns of out, from those of dz (the rest of out is returned as it
    was). Returns a new array."""
    out, dz, a_prev = _floats(out, dz, a_prev)
    for a, name in ((out, "out"), (dz, "dz"), (a_prev, "a_prev")):
        _matrix(a, name)
    c0, c1 = (0, dz.shape[1]) if columns is None else columns
    if (a_prev.shape[0] != dz.shape[0] or out.shape[1] != dz.shape[1]
            or not 0 <= first <= a_prev.shape[1] - out.shape[0]
            or not 0 <= c0 < c1 <= dz.shape[1]):
        raise ValueError(f"shapes out {out.shape}, dz {dz.shape}, a_prev {a_prev.shape}, "
                         f"first={first} and columns={columns} do not fit")
    result = out.copy()
    _weight_gradient_rows(result, dz, a_prev, alpha, beta, first, c0, c1)
    return result


def _weight_gradient_rows(floating[:, ::1] out, const floating[:, ::1] dz,
                          const floating[:, ::1] a_prev, double alpha, double beta,
                          Py_ssize_t first, Py_ssize_t c0, Py_ssize_t c1):
    _fit(min(out.shape[0], dz.shape[0], dz.shape[1]) > 0 and a_prev.shape[0] == dz.shape[0]
         and out.shape[1] == dz.shape[1] and 0 <= first <= a_prev.shape[1] - out.shape[0]
         and 0 <= c0 < c1 <= dz.shape[1])
    with nogil:
        K.weight_gradient_rows(&out[0, c0], &dz[0, c0], &a_prev[0, first], <floating> alpha,
                               <floating> beta, dz.shape[0], out.shape[0], c1 - c0,
                               dz.shape[1], a_prev.shape[1])


def bias_gradient(out, dz, alpha, beta, columns=None):
    """beta * out + alpha * (dz (m, n_out) summed over rows), row by row;
    columns=(c0, c1): only those entries (the rest as they were)."""
    out, dz = _floats(out, dz)
    _matrix(dz, "dz")
    if out.shape != (dz.shape[1],):
        raise ValueError(f"out must have shape ({dz.shape[1]},), got {out.shape}")
    c0, c1 = (0, dz.shape[1]) if columns is None else columns
    if not 0 <= c0 < c1 <= dz.shape[1]:
        raise ValueError(f"columns={columns} do not fit {dz.shape[1]} columns")
    result = out.copy()
    _bias_gradient(result, dz, alpha, beta, c0, c1)
    return result


def _bias_gradient(floating[::1] out, const floating[:, ::1] dz, double alpha, double beta,
                   Py_ssize_t c0, Py_ssize_t c1):
    _fit(dz.shape[0] > 0 and out.shape[0] == dz.shape[1] and 0 <= c0 < c1 <= dz.shape[1])
    with nogil:
        K.bias_gradient(&out[c0], &dz[0, c0], <floating> alpha, <floating> beta, dz.shape[0],
                        c1 - c0, dz.shape[1])


def linear_backward_sgd(dz, a_prev, W, b, lr):
    """(da_prev, W', b') of the fused backward + SGD step: da_prev = dz @ W^T
    with the old W, W' = W - lr * a_prev^T @ dz, b' = b - lr * sum(dz, 0)."""
    dz, a_prev, W, b = _floats(dz, a_prev, W, b)
    for a, name in ((dz, "dz"), (a_prev, "a_prev"), (W, "W")):
        _matrix(a, name)
    m, n_in, n_out = a_prev.shape[0], W.shape[0], W.shape[1]
    if a_prev.shape[1] != n_in or dz.shape != (m, n_out) or b.shape != (n_out,):
        raise ValueError(f"shapes dz {dz.shape}, a_prev {a_prev.shape}, W {W.shape}, "
                         f"b {b.shape} do not fit")
    da_prev = np.empty_like(a_prev)
    W, b = W.copy(), b.copy()
    _linear_backward_sgd(da_prev, W, b, dz, a_prev, float(lr))
    return da_prev, W, b


def _linear_backward_sgd(floating[:, ::1] da_prev, floating[:, ::1] W,
                         floating[::1] b, const floating[:, ::1] dz,
                         const floating[:, ::1] a_prev, double lr):
    _fit(min(a_prev.shape[0], W.shape[0], W.shape[1]) > 0
         and a_prev.shape[1] == W.shape[0] and (dz.shape[0], dz.shape[1]) == (a_prev.shape[0], W.shape[1])
         and (da_prev.shape[0], da_prev.shape[1]) == (a_prev.shape[0], a_prev.shape[1]) and b.shape[0] == W.shape[1])
    with nogil:
        K.linear_backward_sgd(&da_prev[0, 0], &W[0, 0], &b[0], &dz[0, 0],
                              &a_prev[0, 0], <floating> lr, a_prev.shape[0],
                              W.shape[0], W.shape[1])


def linear_backward_sgd_next_forward(dz, a_prev, W, b, lr, x_next):
    """(W', b', z_next) of a one-row first layer's SGD step fused with the
    next row's forward: W' = W - lr * a_prev^T @ dz, b' = b - lr * dz,
    z_next = x_next @ W' + b'. dz (1, n_out), a_prev and x_next (1, n_in)."""
    dz, a_prev, W, b, x_next = _floats(dz, a_prev, W, b, x_next)
    for a, name in ((dz, "dz"), (a_prev, "a_prev"), (W, "W"), (x_next, "x_next")):
        _matrix(a, name)
    n_in, n_out = W.shape
    if (a_prev.shape != (1, n_in) or x_next.shape != (1, n_in) or dz.shape != (1, n_out)
            or b.shape != (n_out,)):
        raise ValueError(f"shapes dz {dz.shape}, a_prev {a_prev.shape}, x_next {x_next.shape}, "
                         f"W {W.shape}, b {b.shape} do not fit one row")
    z_next = np.empty((1, n_out), dtype=W.dtype)
    W, b = W.copy(), b.copy()
    _linear_backward_sgd_next_forward(z_next, W, b, dz, a_prev, float(lr), x_next)
    return W, b, z_next


def _linear_backward_sgd_next_forward(floating[:, ::1] z_next, floating[:, ::1] W,
                                      floating[::1] b, const floating[:, ::1] dz,
                                      const floating[:, ::1] a_prev, double lr,
                                      const floating[:, ::1] x_next):
    _fit(min(W.shape[0], W.shape[1]) > 0 and a_prev.shape[0] == 1 and x_next.shape[0] == 1
         and dz.shape[0] == 1 and z_next.shape[0] == 1 and a_prev.shape[1] == W.shape[0]
         and x_next.shape[1] == W.shape[0] and dz.shape[1] == W.shape[1]
         and z_next.shape[1] == W.shape[1] and b.shape[0] == W.shape[1])
    with nogil:
        K.linear_backward_sgd_next_forward(&z_next[0, 0], &W[0, 0], &b[0], &dz[0, 0],
                                           &a_prev[0, 0], <floating> lr, &x_next[0, 0],
                                           W.shape[0], W.shape[1])


# ---------------------------------------------------------- sparse input ----

def _sparse_rows(X, dtype):
    import scipy.sparse
    if not scipy.sparse.issparse(X):
        raise TypeError("X must be a scipy.sparse matrix or array")
    return as_csr(X, X.shape[1], dtype)


def csr_linear_forward(X, W, b):
    """z (m, n_out) = X (m, n_in, scipy.sparse) @ W (n_in, n_out) + b (n_out)."""
    W, b = _floats(W, b)
    _matrix(W, "W")
    if X.shape[1] != W.shape[0] or b.shape != (W.shape[1],):
        raise ValueError(f"shapes {X.shape} @ {W.shape} + {b.shape} do not fit")
    csr = _sparse_rows(X, W.dtype)
    z = np.empty((csr.n_rows, W.shape[1]), dtype=W.dtype)
    _csr_linear_forward(z, csr, W, b)
    return z


def _csr_linear_forward(floating[:, ::1] z, CsrMatrix X, const floating[:, ::1] W,
                        const floating[::1] b):
    _fit(min(X.n_rows, W.shape[0], W.shape[1]) > 0 and X.n_cols == W.shape[0]
         and X.data.dtype.itemsize == sizeof(floating)
         and b.shape[0] == W.shape[1] and z.shape[0] == X.n_rows and z.shape[1] == W.shape[1])
    with nogil:
        S.csr_linear_forward(&z[0, 0], &X.c, &W[0, 0], &b[0], X.n_rows, W.shape[0], W.shape[1])


def csr_linear_backward(dz, X):
    """(dW, db) = (X^T @ dz, sum of dz over rows) for z = X @ W + b, X sparse."""
    (dz,) = _floats(dz)
    _matrix(dz, "dz")
    if dz.shape[0] != X.shape[0]:
        raise ValueError(f"dz {dz.shape} and X {X.shape} must have the same rows")
    csr = _sparse_rows(X, dz.dtype)
    dW = np.empty((csr.n_cols, dz.shape[1]), dtype=dz.dtype)
    db = np.empty(dz.shape[1], dtype=dz.dtype)
    _csr_linear_backward(dW, db, dz, csr)
    return dW, db


def _csr_linear_backward(floating[:, ::1] dW, floating[::1] db, const floating[:, ::1] dz,
                         CsrMatrix X):
    _fit(min(X.n_rows, X.n_cols, dz.shape[1]) > 0 and dz.shape[0] == X.n_rows
         and X.data.dtype.itemsize == sizeof(floating)
         and dW.shape[0] == X.n_cols and dW.shape[1] == dz.shape[1]
         and db.shape[0] == dz.shape[1])
    with nogil:
        S.csr_linear_backward(&dW[0, 0], &db[0], &dz[0, 0], &X.c, X.n_rows, X.n_cols,
                              dz.shape[1])


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
        K.softmax_forward(&p[0, 0], &z[0, 0], z.shape[0], z.shape[1])


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
        loss = K.softmax_xent_loss(&z[0, 0], &labels[0], _wptr(w), z.shape[0],
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
        loss = K.softmax_xent_backward(&dz[0, 0], &z[0, 0], &labels[0], _wptr(w),
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
        loss = K.mse_loss(&yhat[0, 0], &y[0, 0], _wptr(w), y.shape[0], y.shape[1])
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
        loss = K.mse_backward(&dz[0, 0], &yhat[0, 0], &y[0, 0], _wptr(w), y.shape[0],
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
        loss = K.poisson_loss(&z[0, 0], &y[0, 0], _wptr(w), y.shape[0], y.shape[1])
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
        loss = K.poisson_backward(&dz[0, 0], &z[0, 0], &y[0, 0], _wptr(w), y.shape[0],
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
        loss = K.sigmoid_bce_loss(&z[0, 0], &y[0, 0], _wptr(w), y.shape[0], y.shape[1],
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
        loss = K.sigmoid_bce_backward(&dz[0, 0], &z[0, 0], &y[0, 0], _wptr(w), y.shape[0],
                                      y.shape[1], &correct)
    return loss, correct


# -------------------------------------------------------------- optimiser ----

def sgd_update(params, grads, lr):
    """A copy of params after one step: params - lr * grads."""
    params, grads = _floats(params, grads)
    if params.shape != grads.shape:
        raise ValueError(f"params {params.shape} and grads {grads.shape} must have one shape")
    out = params.copy()
    if out.size:
        _sgd_update(out.reshape(-1), grads.reshape(-1), float(lr))
    return out


def _sgd_update(floating[::1] params, const floating[::1] grads, double lr):
    _fit(params.shape[0] == grads.shape[0] > 0)
    with nogil:
        O.sgd_update(&params[0], &grads[0], <floating> lr, params.shape[0])


def _vectors(*arrays):
    arrays = _floats(*arrays)
    if len({a.shape for a in arrays}) != 1:
        raise ValueError(f"arrays must share one shape, got {[a.shape for a in arrays]}")
    return [a.reshape(-1) for a in arrays]


def l2_grad(grads, params, weight_decay):
    """A copy of grads plus weight_decay * params."""
    grads, params = _vectors(grads, params)
    out = grads.copy()
    if out.size:
        _l2_grad(out, params, float(weight_decay))
    return out


def _l2_grad(floating[::1] grads, const floating[::1] params, double weight_decay):
    _fit(params.shape[0] == grads.shape[0] > 0)
    with nogil:
        O.l2_grad(&grads[0], &params[0], <floating> weight_decay, grads.shape[0])


def momentum_update(params, velocity, grads, lr, momentum, nesterov):
    """(params', velocity') after one (Nesterov) momentum step, as copies."""
    params, velocity, grads = _vectors(params, velocity, grads)
    params, velocity = params.copy(), velocity.copy()
    if params.size:
        _momentum_update(params, velocity, grads, float(lr), float(momentum), bool(nesterov))
    return params, velocity


def _momentum_update(floating[::1] params, floating[::1] velocity,
                     const floating[::1] grads, double lr, double momentum,
                     bint nesterov):
    _fit(params.shape[0] == velocity.shape[0] == grads.shape[0] > 0)
    with nogil:
        O.momentum_update(&params[0], &velocity[0], &grads[0], <floating> lr,
                          <floating> momentum, nesterov, params.shape[0])


def adam_update(params, m, v, grads, lr, beta1, beta2, eps, t):
    """(params', m', v') after Adam step t (t >= 1), as copies."""
    return _adam_copies(_adam_update, params, m, v, grads, lr, beta1, beta2, eps, t)


def _adam_copies(step, params, m, v, grads, lr, beta1, beta2, eps, t):
    """Checked copies of the Adam buffers, stepped by `step` (a wrapper below)."""
    params, m, v, grads = _vectors(params, m, v, grads)
    if int(t) < 1:
        raise ValueError(f"Adam's step t must be >= 1, got {t}")
    params, m, v = params.copy(), m.copy(), v.copy()
    if params.size:
        step(params, m, v, grads, float(lr), float(beta1), float(beta2), float(eps), int(t))
    return params, m, v


def _adam_update(floating[::1] params, floating[::1] m, floating[::1] v,
                 const floating[::1] grads, double lr, double beta1, double beta2,
                 double eps, long long t):
    _fit(params.shape[0] == m.shape[0] == v.shape[0] == grads.shape[0] > 0 and t >= 1)
    with nogil:
        O.adam_update(&params[0], &m[0], &v[0], &grads[0], <floating> lr,
                      <floating> beta1, <floating> beta2, <floating> eps, t,
                      params.shape[0])


def adam_step_update(params, m, v, grads, lr, beta1, beta2, eps, t):
    """(params', m', v') after scikit-learn's Adam step t (t >= 1), as copies."""
    return _adam_copies(_adam_step_update, params, m, v, grads, lr, beta1, beta2, eps, t)


def _adam_step_update(floating[::1] params, floating[::1] m, floating[::1] v,
                      const floating[::1] grads, double lr, double beta1, double beta2,
                      double eps, long long t):
    _fit(params.shape[0] == m.shape[0] == v.shape[0] == grads.shape[0] > 0 and t >= 1)
    with nogil:
        O.adam_step_update(&params[0], &m[0], &v[0], &grads[0], <floating> lr,
                           <floating> beta1, <floating> beta2, <floating> eps, t,
                           params.shape[0])


def momentum_step_update(params, velocity, grads, lr, momentum, nesterov):
    """(params', velocity') after one step of scikit-learn's SGD momentum, as copies."""
    params, velocity, grads = _vectors(params, velocity, grads)
    params, velocity = params.copy(), velocity.copy()
    if params.size:
        _momentum_step_update(params, velocity, grads, float(lr), float(momentum),
                              bool(nesterov))
    return params, velocity


def _momentum_step_update(floating[::1] params, floating[::1] velocity,
                          const floating[::1] grads, double lr, double momentum,
                          bint nesterov):
    _fit(params.shape[0] == velocity.shape[0] == grads.shape[0] > 0)
    with nogil:
        O.momentum_step_update(&params[0], &velocity[0], &grads[0], <floating> lr,
                               <floating> momentum, nesterov, params.shape[0])
