"""Row-major BLAS wrappers (see _blas.pxd).

Design: BLAS is column-major. A row-major (m, n) matrix is the same memory as
a column-major (n, m) one, its transpose, so the row-major product
C = op(A) @ op(B) is computed as the column-major C^T = op(B)^T @ op(A)^T:
swap the operands and the m/n sizes, keep the transpose flags. This is the
same trick as scikit-learn's sklearn/utils/_cython_blas.pyx RowMajor branch.
scipy's wrappers take non-const pointers; the casts below drop a const the
Fortran routine honours anyway.
"""
from scipy.linalg.cython_blas cimport (
    dgemm, sgemm, dgemv, sgemv, dger, sger, daxpy, saxpy,
)


cdef void gemm(bint trans_a, bint trans_b, blas_int m, blas_int n, blas_int k,
               floating alpha, const floating* A, blas_int lda,
               const floating* B, blas_int ldb,
               floating beta, floating* C, blas_int ldc) noexcept nogil:
    cdef char ta = b't' if trans_a else b'n'
    cdef char tb = b't' if trans_b else b'n'
    if floating is float:
        sgemm(&tb, &ta, &n, &m, &k, &alpha, <float*> B, &ldb,
              <float*> A, &lda, &beta, C, &ldc)
    else:
        dgemm(&tb, &ta, &n, &m, &k, &alpha, <double*> B, &ldb,
              <double*> A, &lda, &beta, C, &ldc)


cdef void gemv(bint trans_a, blas_int m, blas_int n, floating alpha,
               const floating* A, blas_int lda, const floating* x,
               floating beta, floating* y) noexcept nogil:
    # Row-major A (m, n) is column-major A^T (n, m): flip the transpose flag.
    cdef char t = b'n' if trans_a else b't'
    cdef blas_int inc = 1
    if floating is float:
        sgemv(&t, &n, &m, &alpha, <float*> A, &lda, <float*> x, &inc,
              &beta, y, &inc)
    else:
        dgemv(&t, &n, &m, &alpha, <double*> A, &lda, <double*> x, &inc,
              &beta, y, &inc)


cdef void ger(blas_int m, blas_int n, floating alpha, const floating* x,
              const floating* y, floating* A, blas_int lda) noexcept nogil:
    # Row-major A += x y^T is column-major A^T += y x^T.
    cdef blas_int inc = 1
    if floating is float:
        sger(&n, &m, &alpha, <float*> y, &inc, <float*> x, &inc, A, &lda)
    else:
        dger(&n, &m, &alpha, <double*> y, &inc, <double*> x, &inc, A, &lda)


cdef void axpy(blas_int n, floating alpha, const floating* x,
               floating* y) noexcept nogil:
    cdef blas_int inc = 1
    if floating is float:
        saxpy(&n, &alpha, <float*> x, &inc, y, &inc)
    else:
        daxpy(&n, &alpha, <double*> x, &inc, y, &inc)
