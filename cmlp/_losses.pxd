# Output-layer and loss kernels of cmlp (see _losses.pyx); cmlp._kernels
# re-exports them.

from cython cimport floating
from libc.stdint cimport int32_t

# p (m, k) = softmax of each row of z (m, k); p may alias z.
cdef void softmax_forward(floating* p, const floating* z, Py_ssize_t m,
                          Py_ssize_t k) noexcept nogil

# Losses. `weights` (m) are per-row sample weights, or NULL for all ones.
# The *_loss kernels return the weighted loss sum, sum_i w_i * loss_i; the
# *_backward kernels return the same sum and write the gradient of the
# weighted mean, sum_i w_i * loss_i / sum_i w_i (= the plain mean over the
# m rows when weights is NULL), so dz_i = w_i * dloss_i / sum(w). A batch
# whose weights sum to 0 gets dz = 0. n_correct counts rows predicted right
# (unweighted); dz must not alias z.

# Cross-entropy of softmax(z) against integer labels (m), computed stably
# from the logits z (m, k); a hit is argmax(z) == label.
cdef double softmax_xent_loss(const floating* z, const int32_t* labels,
                              const floating* weights, Py_ssize_t m,
                              Py_ssize_t k, Py_ssize_t* n_correct) noexcept nogil
# Fused softmax + cross-entropy gradient: dz_i = w_i (softmax(z_i) - onehot_i) / sum(w).
cdef double softmax_xent_backward(floating* dz, const floating* z,
                                  const int32_t* labels, const floating* weights,
                                  Py_ssize_t m, Py_ssize_t k,
                                  Py_ssize_t* n_correct) noexcept nogil

# 1/2 ||yhat_i - y_i||^2 per row, for yhat, y (m, k); no hits are counted.
cdef double mse_loss(const floating* yhat, const floating* y,
                     const floating* weights, Py_ssize_t m,
                     Py_ssize_t k) noexcept nogil
# dz_i = w_i (yhat_i - y_i) / sum(w).
cdef double mse_backward(floating* dz, const floating* yhat, const floating* y,
                         const floating* weights, Py_ssize_t m,
                         Py_ssize_t k) noexcept nogil

# Binary cross-entropy of sigmoid(z) against targets y in [0, 1] (m, k),
# summed over the k labels of a row, computed stably from the logits:
# softplus(z) - y z. A hit is a row whose every label is right
# (z > 0 exactly where y > 0.5).
cdef double sigmoid_bce_loss(const floating* z, const floating* y,
                             const floating* weights, Py_ssize_t m, Py_ssize_t k,
                             Py_ssize_t* n_correct) noexcept nogil
# dz_i = w_i (sigmoid(z_i) - y_i) / sum(w).
cdef double sigmoid_bce_backward(floating* dz, const floating* z, const floating* y,
                                 const floating* weights, Py_ssize_t m, Py_ssize_t k,
                                 Py_ssize_t* n_correct) noexcept nogil

# Half Poisson deviance of mu = exp(z) against targets y >= 0 (m, k), summed
# over the k outputs of a row: mu - y z + y log y - y (scikit-learn's
# poisson_loss: 0 for a perfect fit; y log y = 0 at y = 0); no hits counted.
cdef double poisson_loss(const floating* z, const floating* y,
                         const floating* weights, Py_ssize_t m,
                         Py_ssize_t k) noexcept nogil
# dz_i = w_i (exp(z_i) - y_i) / sum(w).
cdef double poisson_backward(floating* dz, const floating* z, const floating* y,
                             const floating* weights, Py_ssize_t m,
                             Py_ssize_t k) noexcept nogil
