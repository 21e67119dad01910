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
* A single row (m == 1: online SGD, one-sample predict) bypasses gemm, whose
  packing of the whole weight matrix costs ~100 us per call at 784 x 128;
  the forward pass does so up to SMALL_BATCH rows, one row at a time.
  The row loops skip zero inputs (most MNIST pixels, half of ReLU outputs):
  0 * w adds exactly nothing for the finite weights cmlp keeps.
* `linear_backward_sgd` fuses the SGD step into the backward pass: the
  weight update is the dW gemm itself (alpha = -lr, beta = 1), so plain SGD
  never writes a gradient buffer nor makes a separate update pass.
* Every kernel has a NumPy twin of the same name in cmlp/reference.py and a
  test comparing the two (tests/test_kernels.py).
"""
from libc.math cimport exp, expf, log, logf, tanh, tanhf
from libc.string cimport memcpy, memset

from cmlp._blas cimport gemm

cdef enum:
    # Up to this many rows, linear_forward multiplies row by row instead of
    # calling gemm (measured crossover on 784 x 128: about 8 to 16 rows).
    SMALL_BATCH = 8


cdef inline floating _exp(floating x) noexcept nogil:
    if floating is float:
        return expf(x)
    else:
        return exp(x)


cdef inline floating _log(floating x) noexcept nogil:
    if floating is float:
        return logf(x)
    else:
        return log(x)


# ---------------------------------------------------------------- linear ----

cdef inline void _row_times_matrix(floating* z, const floating* x,
                                   const floating* W, const floating* b,
                                   Py_ssize_t n_in, Py_ssize_t n_out) noexcept nogil:
    # z (n_out) = b + sum over the nonzero x[i] of x[i] * W[i, :], four rows
    # of W per pass over z so z is loaded and stored a quarter as often.
    cdef Py_ssize_t i, j, t, count = 0
    cdef floating c[4]
    cdef const floating* r[4]
    memcpy(z, b, n_out * sizeof(floating))
    for i in range(n_in):
        if x[i] != 0:
            c[count] = x[i]
            r[count] = W + i * n_out
            count += 1
            if count == 4:
                _add_four_rows(z, c[0], r[0], c[1], r[1], c[2], r[2], c[3], r[3], n_out)
                count = 0
    for t in range(count):
        for j in range(n_out):
            z[j] += c[t] * r[t][j]


cdef inline void _add_four_rows(floating* z, floating c0, const floating* r0,
                                floating c1, const floating* r1,
                                floating c2, const floating* r2,
                                floating c3, const floating* r3,
                                Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t j
    for j in range(n):
        z[j] += c0 * r0[j] + c1 * r1[j] + c2 * r2[j] + c3 * r3[j]


cdef void linear_forward(floating* z, const floating* a_prev,
                         const floating* W, const floating* b,
                         Py_ssize_t m, Py_ssize_t n_in,
                         Py_ssize_t n_out) noexcept nogil:
    cdef Py_ssize_t i
    if m <= SMALL_BATCH:
        for i in range(m):
            _row_times_matrix(z + i * n_out, a_prev + i * n_in, W, b, n_in, n_out)
        return
    # Broadcast the bias into every row, then accumulate the product on top
    # of it (beta = 1): one pass over z instead of two.
    for i in range(m):
        memcpy(z + i * n_out, b, n_out * sizeof(floating))
    gemm(False, False, <int> m, <int> n_out, <int> n_in, <floating> 1.0,
         a_prev, <int> n_in, W, <int> n_out, <floating> 1.0, z, <int> n_out)


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


cdef inline floating _dot(const floating* x, const floating* y,
                          Py_ssize_t n) noexcept nogil:
    # Eight partial sums in a fixed order: the compiler may not reassociate
    # a float reduction (no -ffast-math), so this is what lets it vectorise.
    cdef floating s[8]
    cdef Py_ssize_t j, t, head = n - n % 8
    for t in range(8):
        s[t] = 0
    j = 0
    while j < head:
        for t in range(8):
            s[t] += x[j + t] * y[j + t]
        j += 8
    for j in range(head, n):
        s[0] += x[j] * y[j]
    return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]))


cdef void linear_backward_sgd(floating* da_prev, floating* W, floating* b,
                              const floating* dz, const floating* a_prev,
                              floating lr, Py_ssize_t m, Py_ssize_t n_in,
                              Py_ssize_t n_out) noexcept nogil:
    cdef Py_ssize_t i, j
    cdef floating step
    cdef floating* row
    if m == 1:
        # One pass over W: each row gives its dot product with dz (old W)
        # and is then updated while still in cache.
        for i in range(n_in):
            row = W + i * n_out
            if da_prev != NULL:
                da_prev[i] = _dot(row, dz, n_out)
            if a_prev[i] != 0:
                step = lr * a_prev[i]
                for j in range(n_out):
                    row[j] -= step * dz[j]
        for j in range(n_out):
            b[j] -= lr * dz[j]
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


# ----------------------------------------------------------- activations ----

cdef void relu_forward(floating* a, const floating* z, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        a[i] = z[i] if z[i] > 0 else 0


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


cdef void activation_forward(int activation, floating* a, const floating* z,
                             Py_ssize_t n) noexcept nogil:
    if activation == ACT_RELU:
        relu_forward(a, z, n)
    elif activation == ACT_TANH:
        tanh_forward(a, z, n)
    elif activation == ACT_SIGMOID:
        sigmoid_forward(a, z, n)
    elif a != z:
        memcpy(a, z, n * sizeof(floating))


cdef void activation_backward(int activation, floating* dz, const floating* a,
                              const floating* da, Py_ssize_t n) noexcept nogil:
    if activation == ACT_RELU:
        relu_backward(dz, a, da, n)
    elif activation == ACT_TANH:
        tanh_backward(dz, a, da, n)
    elif activation == ACT_SIGMOID:
        sigmoid_backward(dz, a, da, n)
    elif dz != da:
        memcpy(dz, da, n * sizeof(floating))


# ---------------------------------------------------------------- losses ----

cdef inline floating _row_max(const floating* row, Py_ssize_t k,
                              Py_ssize_t* argmax) noexcept nogil:
    cdef Py_ssize_t j, best = 0
    cdef floating top = row[0]
    for j in range(1, k):
        if row[j] > top:
            top = row[j]
            best = j
    argmax[0] = best
    return top


cdef void softmax_forward(floating* p, const floating* z, Py_ssize_t m,
                          Py_ssize_t k) noexcept nogil:
    cdef Py_ssize_t i, j, best
    cdef floating top, total
    cdef const floating* zi
    cdef floating* pi
    for i in range(m):
        zi = z + i * k
        pi = p + i * k
        top = _row_max(zi, k, &best)
        total = 0
        for j in range(k):
            pi[j] = _exp(zi[j] - top)
            total += pi[j]
        for j in range(k):
            pi[j] /= total


cdef double softmax_xent_loss(const floating* z, const int32_t* labels,
                              Py_ssize_t m, Py_ssize_t k,
                              Py_ssize_t* n_correct) noexcept nogil:
    # -log softmax(z)_y = log(sum_j exp(z_j - max)) - (z_y - max)
    cdef Py_ssize_t i, j, best
    cdef floating top, total
    cdef const floating* zi
    cdef double loss = 0
    n_correct[0] = 0
    for i in range(m):
        zi = z + i * k
        top = _row_max(zi, k, &best)
        total = 0
        for j in range(k):
            total += _exp(zi[j] - top)
        loss += _log(total) - (zi[labels[i]] - top)
        n_correct[0] += best == labels[i]
    return loss


cdef double softmax_xent_backward(floating* dz, const floating* z,
                                  const int32_t* labels, Py_ssize_t m,
                                  Py_ssize_t k,
                                  Py_ssize_t* n_correct) noexcept nogil:
    cdef Py_ssize_t i, j, best
    cdef floating top, total, scale
    cdef const floating* zi
    cdef floating* dzi
    cdef double loss = 0
    cdef floating inv_m = (<floating> 1) / m
    n_correct[0] = 0
    for i in range(m):
        zi = z + i * k
        dzi = dz + i * k
        top = _row_max(zi, k, &best)
        total = 0
        for j in range(k):
            dzi[j] = _exp(zi[j] - top)
            total += dzi[j]
        loss += _log(total) - (zi[labels[i]] - top)
        n_correct[0] += best == labels[i]
        # (p - onehot) / m, with p = e / total
        scale = inv_m / total
        for j in range(k):
            dzi[j] *= scale
        dzi[labels[i]] -= inv_m
    return loss


cdef double mse_loss(const floating* yhat, const floating* y, Py_ssize_t m,
                     Py_ssize_t k) noexcept nogil:
    cdef Py_ssize_t i
    cdef double r, loss = 0
    for i in range(m * k):
        r = yhat[i] - y[i]
        loss += r * r
    return 0.5 * loss


cdef double mse_backward(floating* dz, const floating* yhat,
                         const floating* y, Py_ssize_t m,
                         Py_ssize_t k) noexcept nogil:
    cdef Py_ssize_t i
    cdef floating r
    cdef floating inv_m = (<floating> 1) / m
    cdef double loss = 0
    for i in range(m * k):
        r = yhat[i] - y[i]
        loss += (<double> r) * r
        dz[i] = r * inv_m
    return 0.5 * loss


# -------------------------------------------------------------- optimiser ----

cdef void sgd_update(floating* params, const floating* grads, floating lr,
                     Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        params[i] -= lr * grads[i]
