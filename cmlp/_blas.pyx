"""Row-major BLAS wrappers (see _blas.pxd).

Design: BLAS is column-major. A row-major (m, n) matrix is the same memory as
a column-major (n, m) one, its transpose, so the row-major product
C = op(A) @ op(B) is computed as the column-major C^T = op(B)^T @ op(A)^T:
swap the operands and the m/n sizes, keep the transpose flags. This is the
same trick as scikit-learn's sklearn/utils/_cython_blas.pyx RowMajor branch.
scipy's wrappers take non-const pointers; the casts below drop a const the
Fortran routine honours anyway.
"""
from libc.string cimport strcmp

from cmlp._fork_gate cimport gate_enter, gate_leave
from scipy.linalg.cython_blas cimport (
    dgemm, sgemm, dgemv, sgemv, dger, sger, daxpy, saxpy,
)


cdef extern from "_dl_compat.h" nogil:   # dlfcn.h, pinned to glibc 2.2.5 symbols
    ctypedef struct Dl_info:
        const char* dli_fname
    int dladdr(const void* addr, Dl_info* info)
    void* dlopen(const char* filename, int flags)
    void* dlsym(void* handle, const char* symbol)
    int dlclose(void* handle)
    int RTLD_LAZY
    int RTLD_NOLOAD

ctypedef const char* (*corename_t)() noexcept nogil
ctypedef int (*get_threads_t)() noexcept nogil
ctypedef void (*set_threads_t)(int) noexcept nogil

cdef get_threads_t _get_threads = NULL
cdef set_threads_t _set_threads = NULL

cdef extern from *:
    """
    #include <pthread.h>
    /* Serial BLAS while cmlp's own threads run (see serial_blas_enter):
       how many callers are inside, and the count to restore after them. */
    static pthread_mutex_t cmlp_serial_lock = PTHREAD_MUTEX_INITIALIZER;
    static int cmlp_serial_depth = 0;
    static int cmlp_serial_saved = 1;
    """
    int pthread_mutex_lock(void* lock) nogil
    int pthread_mutex_unlock(void* lock) nogil
    int pthread_mutex_init(void* lock, void* attributes) nogil
    void* cmlp_serial_lock_ptr "(&cmlp_serial_lock)"
    int cmlp_serial_depth
    int cmlp_serial_saved


cdef bint _detect_small_gemm() noexcept:
    # Ask the library that holds scipy's sgemm (found with dladdr) for its
    # OpenBLAS core name; any other BLAS, or no answer, counts as no.
    cdef Dl_info info
    cdef void* handle
    cdef corename_t corename = NULL
    cdef const char* core
    cdef bint found = False
    if dladdr(<const void*> sgemm, &info) == 0 or info.dli_fname == NULL:
        return False
    handle = dlopen(info.dli_fname, RTLD_LAZY | RTLD_NOLOAD)
    if handle == NULL:
        return False
    for name in (b"scipy_openblas_get_corename", b"scipy_openblas_get_corename64_",
                 b"openblas_get_corename", b"openblas_get_corename64_"):
        corename = <corename_t> dlsym(handle, name)
        if corename != NULL:
            break
    # OpenBLAS's thread count, for blas_threads(): the library stays loaded
    # (scipy holds it), so the pointers stay valid after dlclose.
    global _get_threads, _set_threads
    for name in (b"scipy_openblas_get_num_threads", b"scipy_openblas_get_num_threads64_",
                 b"openblas_get_num_threads", b"openblas_get_num_threads64_"):
        _get_threads = <get_threads_t> dlsym(handle, name)
        if _get_threads != NULL:
            break
    for name in (b"scipy_openblas_set_num_threads", b"scipy_openblas_set_num_threads64_",
                 b"openblas_set_num_threads", b"openblas_set_num_threads64_"):
        _set_threads = <set_threads_t> dlsym(handle, name)
        if _set_threads != NULL:
            break
    if corename != NULL:
        core = corename()
        found = core != NULL and (strcmp(core, b"SkylakeX") == 0
                                  or strcmp(core, b"Cooperlake") == 0
                                  or strcmp(core, b"SapphireRapids") == 0)
    dlclose(handle)
    return found


cdef bint _small_gemm = _detect_small_gemm()


cdef bint small_gemm_is_fast() noexcept nogil:
    return _small_gemm


def has_small_gemm():
    """Whether cmlp found OpenBLAS's small-matrix gemm kernels (its AVX-512
    cores) behind scipy's BLAS, and so sends 2 to 32 dense rows to gemm."""
    return bool(_small_gemm)


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


cdef void serial_blas_enter() noexcept nogil:
    global cmlp_serial_depth, cmlp_serial_saved
    if _get_threads == NULL or _set_threads == NULL:
        return
    # A fork section (cmlp._fork_gate): no fork while this lock is held or
    # OpenBLAS changes its thread count (a child would inherit them held).
    gate_enter()
    pthread_mutex_lock(cmlp_serial_lock_ptr)
    if cmlp_serial_depth == 0:
        cmlp_serial_saved = _get_threads()
        if cmlp_serial_saved != 1:
            _set_threads(1)
    cmlp_serial_depth += 1
    pthread_mutex_unlock(cmlp_serial_lock_ptr)
    gate_leave()


cdef void serial_blas_leave() noexcept nogil:
    global cmlp_serial_depth
    if _get_threads == NULL or _set_threads == NULL:
        return
    gate_enter()
    pthread_mutex_lock(cmlp_serial_lock_ptr)
    cmlp_serial_depth -= 1
    if cmlp_serial_depth == 0 and cmlp_serial_saved != 1:
        _set_threads(cmlp_serial_saved)
    pthread_mutex_unlock(cmlp_serial_lock_ptr)
    gate_leave()


def blas_threads(set_to=None):
    """The thread count of the OpenBLAS behind scipy's BLAS, which cmlp
    calls (None if it is another BLAS); with `set_to`, then set it to that.
    Returns the count before the change, to restore it with
    blas_threads(count).

    While cmlp's passes run (serial_blas_enter) OpenBLAS is held at one
    thread; this reads and sets the count it goes back to afterwards."""
    global cmlp_serial_saved
    if _get_threads == NULL or _set_threads == NULL:
        return None
    cdef int before
    with nogil:
        pthread_mutex_lock(cmlp_serial_lock_ptr)
    try:
        before = cmlp_serial_saved if cmlp_serial_depth > 0 else _get_threads()
        if set_to is not None:
            if cmlp_serial_depth > 0:
                cmlp_serial_saved = max(1, int(set_to))
            else:
                _set_threads(max(1, int(set_to)))
    finally:
        pthread_mutex_unlock(cmlp_serial_lock_ptr)
    return before


def reset_after_fork():
    """In a forked child: no cmlp pass runs there (the threads that ran them
    are gone), so OpenBLAS goes back to the count it had before them."""
    global cmlp_serial_depth
    # A thread of the parent may have held the lock (blas_threads() takes it
    # outside any fork section): the child's is made anew.
    pthread_mutex_init(cmlp_serial_lock_ptr, NULL)
    if cmlp_serial_depth > 0 and _set_threads != NULL and cmlp_serial_saved != 1:
        _set_threads(cmlp_serial_saved)
    cmlp_serial_depth = 0
