"""Output-layer and loss kernels of cmlp (declarations and shapes in
_losses.pxd; cmlp._kernels re-exports them, so `from cmlp._kernels cimport
softmax_xent_backward` still works).

Design
------
* As cmlp._kernels': `noexcept nogil` functions over raw contiguous
  row-major buffers with explicit sizes, fused over `floating`; no checks,
  no allocation (the Python boundary validates).
* Only loss *sums* are accumulated in double: they are reductions over the
  whole batch, reported and never fed back into the arithmetic.
* Every loss is computed stably from the logits (the row's max subtracted
  before exp; softplus for the sigmoid), and the backward kernels fuse the
  output activation with the loss's derivative: dz = w_i (p - y) / sum(w).
* Optional per-row sample weights (NULL: all ones) normalise the gradient
  by their sum, so the unweighted case is the plain batch mean and a
  weighted one is scikit-learn's weighted mean.
* Every kernel has a NumPy twin of the same name in cmlp/reference.py and a
  test comparing the two (tests/test_kernels.py).
"""
from cython cimport floating
from libc.math cimport fabs, log
from libc.stdint cimport int32_t

from cmlp._kernels cimport sigmoid_forward
from cmlp._math cimport _exp, _log, _log1p


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


cdef inline floating _exp_row(floating* out, const floating* row, floating top,
                              Py_ssize_t k) noexcept nogil:
    # out = exp(row - top), returning its sum: softmax's numerators.
    cdef Py_ssize_t j
    cdef floating total = 0
    for j in range(k):
        out[j] = _exp(row[j] - top)
        total += out[j]
    return total


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
        total = _exp_row(pi, zi, top, k)
        for j in range(k):
            pi[j] /= total


cdef inline double _weight_sum(const floating* weights, Py_ssize_t m) noexcept nogil:
    cdef Py_ssize_t i
    cdef double total = 0
    if weights == NULL:
        return m
    for i in range(m):
        total += weights[i]
    return total


cdef inline floating _row_factor(const floating* weights, Py_ssize_t i,
                                 double weight_sum) noexcept nogil:
    # Row i's share of the batch mean: 1/m unweighted, w_i / sum(w) weighted.
    if weights == NULL:
        return (<floating> 1) / (<floating> weight_sum)
    if weight_sum == 0:
        return 0
    return <floating> (weights[i] / weight_sum)


cdef double softmax_xent_loss(const floating* z, const int32_t* labels,
                              const floating* weights, Py_ssize_t m,
                              Py_ssize_t k, Py_ssize_t* n_correct) noexcept nogil:
    # -log softmax(z)_y = log(sum_j exp(z_j - max)) - (z_y - max)
    cdef Py_ssize_t i, j, best
    cdef floating top, total
    cdef const floating* zi
    cdef double row_loss, loss = 0
    n_correct[0] = 0
    for i in range(m):
        zi = z + i * k
        top = _row_max(zi, k, &best)
        total = 0
        for j in range(k):
            total += _exp(zi[j] - top)
        row_loss = _log(total) - (zi[labels[i]] - top)
        loss += row_loss if weights == NULL else weights[i] * row_loss
        n_correct[0] += best == labels[i]
    return loss


cdef double softmax_xent_backward(floating* dz, const floating* z,
                                  const int32_t* labels, const floating* weights,
                                  Py_ssize_t m, Py_ssize_t k,
                                  Py_ssize_t* n_correct) noexcept nogil:
    cdef Py_ssize_t i, j, best
    cdef floating top, total, scale, share
    cdef const floating* zi
    cdef floating* dzi
    cdef double row_loss, loss = 0
    cdef double weight_sum = _weight_sum(weights, m)
    n_correct[0] = 0
    for i in range(m):
        zi = z + i * k
        dzi = dz + i * k
        top = _row_max(zi, k, &best)
        total = _exp_row(dzi, zi, top, k)
        row_loss = _log(total) - (zi[labels[i]] - top)
        loss += row_loss if weights == NULL else weights[i] * row_loss
        n_correct[0] += best == labels[i]
        # share * (p - onehot), with p = e / total
        share = _row_factor(weights, i, weight_sum)
        scale = share / total
        for j in range(k):
            dzi[j] *= scale
        dzi[labels[i]] -= share
    return loss


cdef double mse_loss(const floating* yhat, const floating* y,
                     const floating* weights, Py_ssize_t m,
                     Py_ssize_t k) noexcept nogil:
    cdef Py_ssize_t i, j
    cdef double r, row_loss, loss = 0
    for i in range(m):
        row_loss = 0
        for j in range(i * k, (i + 1) * k):
            r = yhat[j] - y[j]
            row_loss += r * r
        loss += row_loss if weights == NULL else weights[i] * row_loss
    return 0.5 * loss


cdef double mse_backward(floating* dz, const floating* yhat, const floating* y,
                         const floating* weights, Py_ssize_t m,
                         Py_ssize_t k) noexcept nogil:
    cdef Py_ssize_t i, j
    cdef floating r, share
    cdef double row_loss, loss = 0
    cdef double weight_sum = _weight_sum(weights, m)
    for i in range(m):
        share = _row_factor(weights, i, weight_sum)
        row_loss = 0
        for j in range(i * k, (i + 1) * k):
            r = yhat[j] - y[j]
            row_loss += (<double> r) * r
            dz[j] = r * share
        loss += row_loss if weights == NULL else weights[i] * row_loss
    return 0.5 * loss


cdef inline double _bce_row(const floating* zi, const floating* yi, Py_ssize_t k,
                            bint* all_right) noexcept nogil:
    # softplus(z) - y z = max(z, 0) - y z + log1p(exp(-|z|)): no overflow,
    # no log(0), for any finite logit.
    cdef Py_ssize_t j
    cdef double loss = 0
    cdef floating x
    all_right[0] = True
    for j in range(k):
        x = zi[j]
        loss += (x if x > 0 else 0) - yi[j] * x + _log1p(_exp(-fabs(x)))
        if (x > 0) != (yi[j] > 0.5):
            all_right[0] = False
    return loss


cdef double sigmoid_bce_loss(const floating* z, const floating* y,
                             const floating* weights, Py_ssize_t m, Py_ssize_t k,
                             Py_ssize_t* n_correct) noexcept nogil:
    cdef Py_ssize_t i
    cdef double row_loss, loss = 0
    cdef bint right
    n_correct[0] = 0
    for i in range(m):
        row_loss = _bce_row(z + i * k, y + i * k, k, &right)
        loss += row_loss if weights == NULL else weights[i] * row_loss
        n_correct[0] += right
    return loss


cdef double sigmoid_bce_backward(floating* dz, const floating* z, const floating* y,
                                 const floating* weights, Py_ssize_t m, Py_ssize_t k,
                                 Py_ssize_t* n_correct) noexcept nogil:
    cdef Py_ssize_t i, j
    cdef double row_loss, loss = 0
    cdef double weight_sum = _weight_sum(weights, m)
    cdef floating share
    cdef bint right
    n_correct[0] = 0
    for i in range(m):
        row_loss = _bce_row(z + i * k, y + i * k, k, &right)
        loss += row_loss if weights == NULL else weights[i] * row_loss
        n_correct[0] += right
    sigmoid_forward(dz, z, m * k)
    for i in range(m):
        share = _row_factor(weights, i, weight_sum)
        for j in range(i * k, (i + 1) * k):
            dz[j] = (dz[j] - y[j]) * share
    return loss


cdef inline double _poisson_row(floating* mu, const floating* zi, const floating* yi,
                                Py_ssize_t k) noexcept nogil:
    # sum_j exp(z_j) - y_j z_j + y_j log y_j - y_j, leaving exp(z) in mu
    # unless mu is NULL. log y in double: y log y - y z cancels as the fit
    # gets good.
    cdef Py_ssize_t j
    cdef floating e
    cdef double y, loss = 0
    for j in range(k):
        e = _exp(zi[j])
        if mu != NULL:
            mu[j] = e
        y = yi[j]
        loss += e - y * zi[j] - y
        if y > 0:
            loss += y * log(y)
    return loss


cdef double poisson_loss(const floating* z, const floating* y,
                         const floating* weights, Py_ssize_t m,
                         Py_ssize_t k) noexcept nogil:
    cdef Py_ssize_t i
    cdef double row_loss, loss = 0
    for i in range(m):
        row_loss = _poisson_row(<floating*> NULL, z + i * k, y + i * k, k)
        loss += row_loss if weights == NULL else weights[i] * row_loss
    return loss


cdef double poisson_backward(floating* dz, const floating* z, const floating* y,
                             const floating* weights, Py_ssize_t m,
                             Py_ssize_t k) noexcept nogil:
    cdef Py_ssize_t i, j
    cdef double row_loss, loss = 0
    cdef double weight_sum = _weight_sum(weights, m)
    cdef floating share
    for i in range(m):
        row_loss = _poisson_row(dz + i * k, z + i * k, y + i * k, k)
        loss += row_loss if weights == NULL else weights[i] * row_loss
        share = _row_factor(weights, i, weight_sum)
        for j in range(i * k, (i + 1) * k):
            dz[j] = (dz[j] - y[j]) * share
    return loss
