# Sparse (CSR) rows as the first layer's input (see _sparse.pyx).

from cython cimport floating
from libc.stdint cimport int32_t, int64_t

# A batch of m CSR rows. Row i of the batch is row rows[i] of the matrix, or
# row first + i when rows is NULL; its values are data[indptr[r] : indptr[r + 1]]
# (a float or double array, as the network's dtype) in the columns indices[...].
cdef struct CsrRows:
    const void* data
    const int32_t* indices
    const int64_t* indptr
    const Py_ssize_t* rows
    Py_ssize_t first

# z (m, n_out) = X_batch (m, n_in, sparse) @ W (n_in, n_out) + b (n_out):
# per row, the sum of value * W[column] over its stored values, then + b
# (scipy's csr @ dense, then the bias, as scikit-learn's forward pass).
cdef void csr_linear_forward(floating* z, const CsrRows* X, const floating* W,
                             const floating* b, Py_ssize_t m, Py_ssize_t n_in,
                             Py_ssize_t n_out) noexcept nogil

# dW (n_in, n_out) = X_batch^T @ dz, db (n_out) = sum over rows of dz:
# dW is zeroed, then each stored value adds value * dz_i to its column's row
# of dW (the rows of W no batch row touches get a zero gradient).
cdef void csr_linear_backward(floating* dW, floating* db, const floating* dz,
                              const CsrRows* X, Py_ssize_t m, Py_ssize_t n_in,
                              Py_ssize_t n_out) noexcept nogil

cdef class CsrMatrix:
    cdef readonly object data       # (nnz) float32/float64
    cdef readonly object indices    # (nnz) int32, each in [0, n_cols)
    cdef readonly object indptr     # (n_rows + 1) int64, nondecreasing, within [0, nnz]
    cdef readonly Py_ssize_t n_rows, n_cols
    cdef CsrRows c                  # rows NULL, first 0
    cdef _point(self)
