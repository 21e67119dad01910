"""Linear layers (dense, panel-packed and sparse input): z = a_prev @ W + b
and its gradients, with the SGD-fused variants.

See cmlp.checked_kernels for what these wrappers check."""

import numpy as np

from cython cimport floating

from cmlp cimport _kernels as K
from cmlp cimport _sparse as S
from cmlp._panel_gemm cimport (cmlp_free_layers, cmlp_pack_layers, cmlp_panel_gemm_available,
                               cmlp_panel_linear)
from cmlp._sparse cimport CsrMatrix
from cmlp._validation import as_csr
from cmlp.checked_kernels._checks import _fit, _floats, _matrix


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
