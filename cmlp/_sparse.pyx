"""Sparse input: CSR rows into the first layer, without densifying.

Design
------
* Only the first layer ever sees X, so sparse input is two kernels:
  `csr_linear_forward` (z = X W + b, one axpy of a row of W per stored value)
  and `csr_linear_backward` (dW = X^T dz, one axpy of a row of dz per stored
  value, into a zeroed dW). No da_prev: nothing is below the first layer.
  Cost O(nnz * n_out) against the dense GEMM's O(rows * n_in * n_out).
* A batch is a list of row numbers into the whole matrix (`CsrRows.rows`,
  the stepper's shuffled order) or a run of consecutive rows: nothing is
  gathered or copied per batch.
* `CsrMatrix` holds the three arrays of a validated matrix (cmlp._validation
  converts scipy.sparse input: CSR, the network's dtype, int32 columns, int64
  row pointers); its constructor re-checks the structure in O(nnz) so that
  no buffer reachable from Python can make the kernels read out of bounds.
  Slicing a run of rows (`X[lo:hi]`) is a view: the row pointers stay
  absolute into the shared data and columns.
"""
import numpy as np

cimport numpy as cnp
from libc.string cimport memset

cnp.import_array()


cdef inline void _axpy(floating* y, floating a, const floating* x, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t j
    for j in range(n):
        y[j] += a * x[j]


cdef inline Py_ssize_t _row(const CsrRows* X, Py_ssize_t i) noexcept nogil:
    return X.rows[i] if X.rows != NULL else X.first + i


cdef void csr_linear_forward(floating* z, const CsrRows* X, const floating* W,
                             const floating* b, Py_ssize_t m, Py_ssize_t n_in,
                             Py_ssize_t n_out) noexcept nogil:
    cdef Py_ssize_t i, j, r
    cdef int64_t p
    cdef const floating* data = <const floating*> X.data
    cdef floating* zi
    memset(z, 0, m * n_out * sizeof(floating))
    for i in range(m):
        r = _row(X, i)
        zi = z + i * n_out
        for p in range(X.indptr[r], X.indptr[r + 1]):
            _axpy(zi, data[p], W + <Py_ssize_t> X.indices[p] * n_out, n_out)
        for j in range(n_out):
            zi[j] += b[j]


cdef void csr_linear_backward(floating* dW, floating* db, const floating* dz,
                              const CsrRows* X, Py_ssize_t m, Py_ssize_t n_in,
                              Py_ssize_t n_out) noexcept nogil:
    cdef Py_ssize_t i, j, r
    cdef int64_t p
    cdef const floating* data = <const floating*> X.data
    cdef const floating* dzi
    memset(dW, 0, n_in * n_out * sizeof(floating))
    memset(db, 0, n_out * sizeof(floating))
    for i in range(m):
        r = _row(X, i)
        dzi = dz + i * n_out
        for p in range(X.indptr[r], X.indptr[r + 1]):
            _axpy(dW + <Py_ssize_t> X.indices[p] * n_out, data[p], dzi, n_out)
        for j in range(n_out):
            db[j] += dzi[j]


cdef int _check_structure(const int32_t[::1] indices, const int64_t[::1] indptr,
                          Py_ssize_t n_cols, Py_ssize_t nnz) except -1:
    cdef Py_ssize_t i
    cdef bint ok = indptr.shape[0] >= 1 and indices.shape[0] == nnz
    with nogil:
        for i in range(indptr.shape[0]):
            if not ok:
                break
            ok = 0 <= indptr[i] <= nnz and (i == 0 or indptr[i - 1] <= indptr[i])
        for i in range(indices.shape[0]):
            if not ok:
                break
            ok = 0 <= indices[i] < n_cols
    if not ok:
        raise ValueError("not a valid CSR matrix: row pointers must be nondecreasing "
                         "within the stored values and columns within the width")
    return 0


cdef class CsrMatrix:
    """A CSR matrix's arrays as cmlp's C code reads them (see the module
    docstring). Built by cmlp._validation.as_csr; the arrays must already
    have the dtypes named in _sparse.pxd."""

    def __init__(self, data, indices, indptr, Py_ssize_t n_cols):
        if not (isinstance(data, np.ndarray) and data.ndim == 1
                and data.dtype in (np.float32, np.float64) and data.flags.c_contiguous
                and data.flags.aligned):
            raise ValueError("data must be a contiguous float32 or float64 vector")
        _check_structure(indices, indptr, n_cols, data.shape[0])
        self.data, self.indices, self.indptr = data, indices, indptr
        self.n_rows, self.n_cols = indptr.shape[0] - 1, n_cols
        self._point()

    cdef _point(self):
        cdef const int32_t[::1] indices = self.indices
        cdef const int64_t[::1] indptr = self.indptr
        self.c.data = cnp.PyArray_DATA(<cnp.ndarray> self.data)
        self.c.indices = &indices[0] if indices.shape[0] else NULL
        self.c.indptr = &indptr[0]
        self.c.rows = NULL
        self.c.first = 0

    @property
    def shape(self):
        return (self.n_rows, self.n_cols)

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def ndim(self):
        return 2

    @property
    def size(self):
        """n_rows * n_cols, as a dense array's size (not the stored values)."""
        return self.n_rows * self.n_cols

    @property
    def nnz(self):
        return int(self.indptr[self.n_rows] - self.indptr[0])

    def __len__(self):
        return self.n_rows

    def __getitem__(self, key):
        """X[lo:hi]: a view of a run of rows; X[rows] (an integer array): a copy."""
        cdef CsrMatrix view
        if not isinstance(key, slice):
            rows = np.asarray(key)
            if rows.dtype.kind not in "iu" or rows.ndim != 1:
                raise TypeError("a CsrMatrix takes a slice or a 1-D array of row numbers")
            if rows.size and not (rows.min() >= 0 and rows.max() < self.n_rows):
                raise IndexError("row numbers out of range")
            return self.take(rows)
        if key.step not in (None, 1):
            raise TypeError("a CsrMatrix takes only a slice of consecutive rows (step 1)")
        lo, hi, _ = key.indices(self.n_rows)
        view = CsrMatrix.__new__(CsrMatrix)
        view.data, view.indices = self.data, self.indices
        view.indptr = self.indptr[lo:max(lo, hi) + 1]
        view.n_rows, view.n_cols = max(0, hi - lo), self.n_cols
        view._point()
        return view

    def take(self, rows):
        """The rows listed in `rows` (a copy), as a new CsrMatrix."""
        rows = np.asarray(rows, dtype=np.intp)
        starts, stops = self.indptr[rows], self.indptr[rows + 1]
        lengths = stops - starts
        indptr = np.zeros(rows.shape[0] + 1, dtype=np.int64)
        np.cumsum(lengths, out=indptr[1:])
        total = int(indptr[rows.shape[0]])
        positions = (np.repeat(starts - indptr[:rows.shape[0]], lengths)
                     + np.arange(total, dtype=np.int64))
        return CsrMatrix(np.ascontiguousarray(self.data[positions]),
                         np.ascontiguousarray(self.indices[positions]), indptr, self.n_cols)

    def to_scipy(self):
        """The same matrix as a scipy.sparse.csr_matrix (shares no memory)."""
        import scipy.sparse
        lo = self.indptr[0]
        hi = self.indptr[self.n_rows]
        return scipy.sparse.csr_matrix(
            (self.data[lo:hi].copy(), self.indices[lo:hi].copy(), self.indptr - lo),
            shape=self.shape)
