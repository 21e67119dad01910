# Row-major BLAS wrappers over scipy.linalg.cython_blas, for float and double.
#
# scipy's cython_blas takes 32-bit Fortran integers (LP64), whatever BLAS it
# was built against. Every size and leading dimension passed here must fit in
# `blas_int`; cmlp.network checks that at the Python boundary.

from cython cimport floating

ctypedef int blas_int

# C (m, n) = alpha * op(A) @ op(B) + beta * C, all row-major.
# op(A) is (m, k), op(B) is (k, n); trans_a/trans_b select the transpose.
cdef void gemm(bint trans_a, bint trans_b, blas_int m, blas_int n, blas_int k,
               floating alpha, const floating* A, blas_int lda,
               const floating* B, blas_int ldb,
               floating beta, floating* C, blas_int ldc) noexcept nogil

# y (m or n) = alpha * op(A) @ x + beta * y, A row-major (m, n).
cdef void gemv(bint trans_a, blas_int m, blas_int n, floating alpha,
               const floating* A, blas_int lda, const floating* x,
               floating beta, floating* y) noexcept nogil

# A (m, n) += alpha * x (m) outer y (n), A row-major.
cdef void ger(blas_int m, blas_int n, floating alpha, const floating* x,
              const floating* y, floating* A, blas_int lda) noexcept nogil

# y (n) += alpha * x (n)
cdef void axpy(blas_int n, floating alpha, const floating* x,
               floating* y) noexcept nogil

# True when scipy's BLAS is OpenBLAS running an AVX-512 core (SkylakeX,
# Cooperlake, SapphireRapids), whose small-matrix gemm kernels multiply a few
# rows without packing: 8 rows of 784 x 128 in 13.7 us, against 55-63 us for
# its Haswell and Zen kernels, which pack W on every call. Read once at import.
cdef bint small_gemm_is_fast() noexcept nogil

# While cmlp's worker threads run passes (cmlp._pool), OpenBLAS runs each
# call in its caller's thread: enter sets it to one thread (the first of
# nested or concurrent callers), leave restores the count (the last one).
# cmlp.blas_threads() reads and sets the count to restore meanwhile.
cdef void serial_blas_enter() noexcept nogil
cdef void serial_blas_leave() noexcept nogil
