"""Layer kernels of cmlp (declarations and shapes in _kernels.pxd).

Design
------
* Each kernel is a `noexcept nogil` function over raw contiguous row-major
  buffers with explicit sizes: no Python objects, no checks, no allocation.
  Shapes and dtypes are validated once at the Python boundary.
* Fused over `floating`: float32 runs in float32 (expf, tanhf) end to end;
  only loss *sums* are accumulated in double, since they are reductions over
  the whole batch and are reported, not fed back into the arithmetic.
* Matrix products go to BLAS (cmlp._blas); the elementwise work is plain C
  loops the compiler vectorises (-O3, no -ffast-math).
* A single row (m == 1: online SGD, one-sample predict) bypasses gemm,
  which without OpenBLAS's small-matrix kernels packs the whole weight
  matrix on every call (~50 us at 784 x 128); the forward pass may do so up
  to SMALL_BATCH rows (when: see the enum below). The row kernels live in
  _row_kernels.h, compiled per ISA level (AVX-512,
  AVX2, baseline) and picked by the CPU at load time, since a row's speed is
  that of one pass over W; they skip zero inputs (most MNIST pixels, half of
  ReLU outputs): 0 * w adds exactly nothing for the finite weights cmlp
  keeps. On AVX-512 they beat BLAS gemv at every density (784-128-64-10
  float32, one row: 3.8 us dense, 1.1 us at 10 % nonzero; sgemv 4.1 us).
  Batch-1 SGD reads W1 twice a step (update, next row's forward):
  `linear_backward_sgd_next_forward` does both per row of W1 while it is in
  cache, with linear_forward's exact grouping of the sums (same bits).
* `linear_backward_sgd` fuses the SGD step into the backward pass: the
  weight update is the dW gemm itself (alpha = -lr, beta = 1), so plain SGD
  never writes a gradient buffer nor makes a separate update pass.
* The output-layer and loss kernels live in cmlp._losses; _kernels.pxd
  cimports them, so code that cimports them from here keeps working.
* Dropout draws no state: the keep decision of value i is a hash of
  (seed, i) (SplitMix64), and the seed a hash of (key, step, layer). The
  masks are therefore reproducible from the step count alone (checkpoints
  resume bit-identically), and the NumPy twin computes the same masks.
* Every kernel has a NumPy twin of the same name in cmlp/reference.py and a
  test comparing the two (tests/test_kernels.py).
"""
from libc.math cimport M_SQRT1_2, tanh, tanhf
from libc.stdint cimport uint64_t
from libc.string cimport memcpy, memset

from cmlp._blas cimport gemm, small_gemm_is_fast
from cmlp._math cimport _erfc, _exp

cdef extern from "_row_kernels.h" nogil:
    void cmlp_row_times_matrix_f(float* z, const float* x, const float* W, const float* b,
                                 Py_ssize_t n_in, Py_ssize_t n_out)
    void cmlp_row_times_matrix_d(double* z, const double* x, const double* W,
                                 const double* b, Py_ssize_t n_in, Py_ssize_t n_out)
    void cmlp_row_backward_sgd_f(float* da_prev, float* W, float* b, const float* dz,
                                 const float* a_prev, float lr, Py_ssize_t n_in,
                                 Py_ssize_t n_out)
    void cmlp_row_backward_sgd_d(double* da_prev, double* W, double* b, const double* dz,
                                 const double* a_prev, double lr, Py_ssize_t n_in,
                                 Py_ssize_t n_out)
    void cmlp_row_sgd_then_forward_f(float* W, float* b, const float* dz, const float* a_prev,
                                     float lr, const float* x_next, float* z_next,
                                     Py_ssize_t n_in, Py_ssize_t n_out)
    void cmlp_row_sgd_then_forward_d(double* W, double* b, const double* dz,
                                     const double* a_prev, double lr, const double* x_next,
                                     double* z_next, Py_ssize_t n_in, Py_ssize_t n_out)

cdef enum:
    # linear_forward on a few rows (measured with scipy's OpenBLAS 0.3.30,
    # 784 x 128 float32, 1 thread). One row always takes the row kernel: 3.5
    # us, as fast as sgemm, and zero inputs are free. Up to SMALL_BATCH rows,
    # so do mostly zero rows (MNIST), and every row unless OpenBLAS has its
    # AVX-512 small-matrix gemm (cmlp._blas.small_gemm_is_fast): that one
    # multiplies up to ~9 rows at 1.7 us a row, against 3.8 for a dense row
    # through the row kernel, so denser rows (more than DENSE_NUMERATOR /
    # DENSE_DENOMINATOR nonzero) go to it; from 9 to SMALL_GEMM_MAX rows it
    # is called on blocks of SMALL_BATCH rows (OpenBLAS's general path costs
    # 3.6 us a row at 16 rows, 2.8 at 32). Without it, any gemm on a few
    # rows packs all of W first (~50 us at 784 x 128), so more than
    # SMALL_BATCH rows go to one gemm. Beyond SMALL_GEMM_MAX rows, one gemm
    # (which BLAS may thread).
    # Blocks of SMALL_BATCH rows pay for narrow layers only (W below
    # SMALL_GEMM_WEIGHTS values): 32 rows of 784 x 512 in blocks cost 41 us
    # a row, in one gemm 21 us (512 x 256: 13.6 against 6.9); 784 x 128 in
    # blocks 2.5, in one gemm 4.7 (float32, 1 thread, this machine's AVX-512).
    SMALL_BATCH = 8
    SMALL_GEMM_MAX = 32
    SMALL_GEMM_WEIGHTS = 1 << 17
    DENSE_NUMERATOR = 2
    DENSE_DENOMINATOR = 5


cdef enum:
    LEAKY_SLOPE_PER_MILLE = 10     # leaky_relu's slope for z < 0: 0.01

# 1 / sqrt(2 pi), for the normal density in gelu_backward.
cdef double INV_SQRT_2PI = 0.3989422804014327


# ---------------------------------------------------------------- linear ----

cdef inline void _row_times_matrix(floating* z, const floating* x,
                                   const floating* W, const floating* b,
                                   Py_ssize_t n_in, Py_ssize_t n_out) noexcept nogil:
    # z (n_out) = b + x (n_in) @ W (n_in, n_out), zero inputs skipped.
    if floating is float:
        cmlp_row_times_matrix_f(z, x, W, b, n_in, n_out)
    else:
        cmlp_row_times_matrix_d(z, x, W, b, n_in, n_out)


cdef void linear_forward(floating* z, const floating* a_prev,
                         const floating* W, const floating* b,
                         Py_ssize_t m, Py_ssize_t n_in,
                         Py_ssize_t n_out) noexcept nogil:
    cdef Py_ssize_t i, start, rows
    cdef Py_ssize_t block = (m if m > SMALL_GEMM_MAX or n_in * n_out >= SMALL_GEMM_WEIGHTS
                             else SMALL_BATCH)
    cdef bint small_gemm = small_gemm_is_fast()
    if m == 1 or (m <= SMALL_BATCH and (not small_gemm
                                        or not _mostly_nonzero(a_prev, m * n_in))):
        for i in range(m):
            _row_times_matrix(z + i * n_out, a_prev + i * n_in, W, b, n_in, n_out)
        return
    # Broadcast the bias into every row, then accumulate the product on top
    # of it (beta = 1): one pass over z instead of two.
    for i in range(m):
        memcpy(z + i * n_out, b, n_out * sizeof(floating))
    if not small_gemm:
        block = m
    start = 0
    while start < m:
        rows = min(block, m - start)
        gemm(False, False, <int> rows, <int> n_out, <int> n_in, <floating> 1.0,
             a_prev + start * n_in, <int> n_in, W, <int> n_out, <floating> 1.0,
             z + start * n_out, <int> n_out)
        start += rows


cdef inline bint _mostly_nonzero(const floating* x, Py_ssize_t n) noexcept nogil:
    # More than DENSE_NUMERATOR / DENSE_DENOMINATOR of x is nonzero.
    cdef Py_ssize_t i, nonzero = 0
    for i in range(n):
        nonzero += x[i] != 0
    return nonzero * DENSE_DENOMINATOR > n * DENSE_NUMERATOR


cdef void linear_backward(floating* da_prev, floating* dW, floating* db,
                          const floating* dz, const floating* a_prev,
                          const floating* W, Py_ssize_t m, Py_ssize_t n_in,
                          Py_ssize_t n_out) noexcept nogil:
    cdef Py_ssize_t i, j
    cdef const floating* row
    # dW (n_in, n_out) = a_prev^T (n_in, m) @ dz (m, n_out)
    gemm(True, False, <int> n_in, <int> n_out, <int> m, <floating> 1.0,
         a_prev, <int> n_in, dz, <int> n_out, <floating> 0.0, dW, <int> n_out)
    # db = column sums of dz, accumulated row by row (contiguous inner loop).
    memset(db, 0, n_out * sizeof(floating))
    for i in range(m):
        row = dz + i * n_out
        for j in range(n_out):
            db[j] += row[j]
    # da_prev (m, n_in) = dz (m, n_out) @ W^T (n_out, n_in): W, not dW.
    if da_prev != NULL:
        gemm(False, True, <int> m, <int> n_in, <int> n_out, <floating> 1.0,
             dz, <int> n_out, W, <int> n_out, <floating> 0.0, da_prev,
             <int> n_in)


cdef void linear_backward_input(floating* da_prev, const floating* dz, const floating* W,
                                Py_ssize_t m, Py_ssize_t n_in, Py_ssize_t n_out,
                                Py_ssize_t c0, Py_ssize_t c1) noexcept nogil:
    gemm(False, True, <int> m, <int> (c1 - c0), <int> n_out, <floating> 1.0,
         dz, <int> n_out, W + c0 * n_out, <int> n_out, <floating> 0.0, da_prev + c0,
         <int> n_in)


cdef void linear_forward_columns(floating* z, const floating* a_prev, const floating* W,
                                 const floating* b, Py_ssize_t m, Py_ssize_t n_in,
                                 Py_ssize_t n_out, Py_ssize_t c0, Py_ssize_t c1,
                                 Py_ssize_t k0, Py_ssize_t k1) noexcept nogil:
    # linear_forward's blocking (SMALL_BATCH rows for narrow W), on the
    # columns [c0, c1) of W, b and z (leading dimension n_out) and the
    # inputs [k0, k1) (columns of a_prev, leading dimension n_in; rows of W).
    cdef Py_ssize_t i, start = 0, rows, width = c1 - c0, depth = k1 - k0
    cdef Py_ssize_t block = m
    if m <= SMALL_GEMM_MAX and depth * width < SMALL_GEMM_WEIGHTS and small_gemm_is_fast():
        block = SMALL_BATCH
    for i in range(m):
        memcpy(z + i * n_out + c0, b + c0, width * sizeof(floating))
    while start < m:
        rows = min(block, m - start)
        gemm(False, False, <int> rows, <int> width, <int> depth, <floating> 1.0,
             a_prev + start * n_in + k0, <int> n_in, W + k0 * n_out + c0, <int> n_out,
             <floating> 1.0, z + start * n_out + c0, <int> n_out)
        start += rows


cdef void weight_gradient_rows(floating* out, const floating* dz, const floating* a_prev,
                               floating alpha, floating beta, Py_ssize_t m,
                               Py_ssize_t rows, Py_ssize_t n_out, Py_ssize_t ld,
                               Py_ssize_t lda) noexcept nogil:
    gemm(True, False, <int> rows, <int> n_out, <int> m, alpha,
         a_prev, <int> lda, dz, <int> ld, beta, out, <int> ld)


cdef void bias_gradient(floating* out, const floating* dz, floating alpha, floating beta,
                        Py_ssize_t m, Py_ssize_t n_out, Py_ssize_t ld) noexcept nogil:
    cdef Py_ssize_t i, j
    cdef const floating* row
    if beta == 0:
        memset(out, 0, n_out * sizeof(floating))
    elif beta != 1:
        for j in range(n_out):
            out[j] *= beta
    for i in range(m):
        row = dz + i * ld
        if alpha == 1:
            for j in range(n_out):
                out[j] += row[j]
        else:
            for j in range(n_out):
                out[j] += alpha * row[j]


cdef void linear_backward_sgd(floating* da_prev, floating* W, floating* b,
                              const floating* dz, const floating* a_prev,
                              floating lr, Py_ssize_t m, Py_ssize_t n_in,
                              Py_ssize_t n_out) noexcept nogil:
    cdef Py_ssize_t i, j
    if m == 1:
        # One pass over W, each row dotted with dz (old W) and then updated
        # while in cache (_row_kernels.h).
        if floating is float:
            cmlp_row_backward_sgd_f(da_prev, W, b, dz, a_prev, lr, n_in, n_out)
        else:
            cmlp_row_backward_sgd_d(da_prev, W, b, dz, a_prev, lr, n_in, n_out)
        return
    # da_prev (m, n_in) = dz @ W^T, before W changes.
    if da_prev != NULL:
        gemm(False, True, <int> m, <int> n_in, <int> n_out, <floating> 1.0,
             dz, <int> n_out, W, <int> n_out, <floating> 0.0, da_prev,
             <int> n_in)
    # W (n_in, n_out) += -lr * a_prev^T @ dz
    gemm(True, False, <int> n_in, <int> n_out, <int> m, -lr,
         a_prev, <int> n_in, dz, <int> n_out, <floating> 1.0, W, <int> n_out)
    for i in range(m):
        for j in range(n_out):
            b[j] -= lr * dz[i * n_out + j]


cdef void linear_backward_sgd_next_forward(floating* z_next, floating* W, floating* b,
                                           const floating* dz, const floating* a_prev,
                                           floating lr, const floating* x_next,
                                           Py_ssize_t n_in, Py_ssize_t n_out) noexcept nogil:
    # Batch-1 SGD reads W twice per step (the update, then the next row's
    # forward); doing both per row of W while it is in cache halves that.
    if floating is float:
        cmlp_row_sgd_then_forward_f(W, b, dz, a_prev, lr, x_next, z_next, n_in, n_out)
    else:
        cmlp_row_sgd_then_forward_d(W, b, dz, a_prev, lr, x_next, z_next, n_in, n_out)


# ----------------------------------------------------------- activations ----

cdef void relu_forward(floating* a, const floating* z, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    # NaN stays NaN (as in NumPy's maximum): an overflow upstream must reach
    # the output, where forward detects it, not be rounded to a clean 0.
    for i in range(n):
        a[i] = z[i] if not (z[i] <= 0) else 0


cdef void relu_backward(floating* dz, const floating* a, const floating* da,
                        Py_ssize_t n) noexcept nogil:
    # relu'(z) = 1 where z > 0, i.e. where a > 0 (0 at z == 0, like NumPy's).
    # da is loaded unconditionally so the compiler can vectorise with a blend.
    cdef Py_ssize_t i
    cdef floating g
    for i in range(n):
        g = da[i]
        dz[i] = g if a[i] > 0 else 0


cdef void tanh_forward(floating* a, const floating* z, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        if floating is float:
            a[i] = tanhf(z[i])
        else:
            a[i] = tanh(z[i])


cdef void tanh_backward(floating* dz, const floating* a, const floating* da,
                        Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        dz[i] = da[i] * (1 - a[i] * a[i])


cdef void sigmoid_forward(floating* a, const floating* z, Py_ssize_t n) noexcept nogil:
    # Two branches so exp never overflows: exp(-|z|) <= 1.
    cdef Py_ssize_t i
    cdef floating e
    for i in range(n):
        if z[i] >= 0:
            a[i] = 1 / (1 + _exp(-z[i]))
        else:
            e = _exp(z[i])
            a[i] = e / (1 + e)


cdef void sigmoid_backward(floating* dz, const floating* a, const floating* da,
                           Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        dz[i] = da[i] * a[i] * (1 - a[i])


cdef void exp_forward(floating* a, const floating* z, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        a[i] = _exp(z[i])


cdef void leaky_relu_forward(floating* a, const floating* z, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    cdef floating slope = <floating> (LEAKY_SLOPE_PER_MILLE / 1000.0)
    for i in range(n):
        a[i] = z[i] if z[i] > 0 else slope * z[i]


cdef void leaky_relu_backward(floating* dz, const floating* a, const floating* da,
                              Py_ssize_t n) noexcept nogil:
    # a > 0 exactly where z > 0 (the slope is positive); at z == 0 the
    # derivative is taken as the slope.
    cdef Py_ssize_t i
    cdef floating slope = <floating> (LEAKY_SLOPE_PER_MILLE / 1000.0)
    cdef floating g
    for i in range(n):
        g = da[i]
        dz[i] = g if a[i] > 0 else slope * g


cdef void gelu_forward(floating* a, const floating* z, Py_ssize_t n) noexcept nogil:
    # gelu(z) = z Phi(z) with Phi(z) = erfc(-z / sqrt 2) / 2: erfc keeps the
    # relative accuracy of the tiny values at z << 0 that 1 + erf would lose.
    cdef Py_ssize_t i
    cdef floating half = 0.5, r = <floating> M_SQRT1_2
    for i in range(n):
        a[i] = half * z[i] * _erfc(-z[i] * r)


cdef void gelu_backward(floating* dz, const floating* z, const floating* da,
                        Py_ssize_t n) noexcept nogil:
    # gelu'(z) = Phi(z) + z phi(z), with phi the standard normal density.
    cdef Py_ssize_t i
    cdef floating half = 0.5, r = <floating> M_SQRT1_2
    cdef floating c = <floating> INV_SQRT_2PI
    cdef floating x
    for i in range(n):
        x = z[i]
        dz[i] = da[i] * (half * _erfc(-x * r) + x * c * _exp(-half * x * x))


cdef void activation_forward(int activation, floating* a, const floating* z,
                             Py_ssize_t n) noexcept nogil:
    if activation == ACT_RELU:
        relu_forward(a, z, n)
    elif activation == ACT_TANH:
        tanh_forward(a, z, n)
    elif activation == ACT_SIGMOID:
        sigmoid_forward(a, z, n)
    elif activation == ACT_LEAKY_RELU:
        leaky_relu_forward(a, z, n)
    elif activation == ACT_GELU:
        gelu_forward(a, z, n)
    elif a != z:
        memcpy(a, z, n * sizeof(floating))


cdef void activation_backward(int activation, floating* dz, const floating* a_or_z,
                              const floating* da, Py_ssize_t n) noexcept nogil:
    if activation == ACT_RELU:
        relu_backward(dz, a_or_z, da, n)
    elif activation == ACT_TANH:
        tanh_backward(dz, a_or_z, da, n)
    elif activation == ACT_SIGMOID:
        sigmoid_backward(dz, a_or_z, da, n)
    elif activation == ACT_LEAKY_RELU:
        leaky_relu_backward(dz, a_or_z, da, n)
    elif activation == ACT_GELU:
        gelu_backward(dz, a_or_z, da, n)
    elif dz != da:
        memcpy(dz, da, n * sizeof(floating))


# --------------------------------------------------------------- dropout ----

cdef inline uint64_t _mix64(uint64_t z) noexcept nogil:
    # SplitMix64's output function (Steele, Lea & Flood 2014), a bijection.
    z = (z ^ (z >> 30)) * <uint64_t> 0xBF58476D1CE4E5B9ULL
    z = (z ^ (z >> 27)) * <uint64_t> 0x94D049BB133111EBULL
    return z ^ (z >> 31)


cdef uint64_t dropout_seed(uint64_t key, uint64_t step, uint64_t layer) noexcept nogil:
    return _mix64(_mix64(key + step * <uint64_t> 0x9E3779B97F4A7C15ULL) + layer)


cdef void dropout_forward(floating* out, floating* mask, const floating* a,
                          double rate, uint64_t seed, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    cdef uint64_t threshold = <uint64_t> (rate * 9007199254740992.0)   # rate * 2^53
    cdef uint64_t golden = 0x9E3779B97F4A7C15ULL
    cdef floating scale = <floating> (1.0 / (1.0 - rate))
    cdef floating keep
    for i in range(n):
        # The i-th output of SplitMix64 seeded with `seed`: a counter-based
        # stream, so any element can be drawn without drawing the others.
        keep = scale if (_mix64(seed + (<uint64_t> (i + 1)) * golden) >> 11) >= threshold else 0
        mask[i] = keep
        out[i] = a[i] * scale if keep != 0 else 0


cdef void dropout_backward(floating* da, const floating* mask,
                           const floating* dout, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        da[i] = dout[i] * mask[i]


# The codes as Python sees them: cmlp._layout builds its name tables from
# these, so the Python side never copies an enum value by hand.
ACTIVATION_CODES = {"identity": ACT_IDENTITY, "relu": ACT_RELU, "tanh": ACT_TANH,
                    "sigmoid": ACT_SIGMOID, "leaky_relu": ACT_LEAKY_RELU, "gelu": ACT_GELU}
OUTPUT_CODES = {"softmax": OUT_SOFTMAX, "identity": OUT_IDENTITY, "sigmoid": OUT_SIGMOID,
                "exp": OUT_EXP}
