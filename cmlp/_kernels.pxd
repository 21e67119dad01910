# Layer kernels of cmlp: one forward/backward pair per layer kind, over
# contiguous row-major buffers. Outputs come first; shapes are in comments.
# All are `noexcept nogil` and check nothing: callers validate at the Python
# boundary (cmlp.network, cmlp.kernels).

from cython cimport floating
from libc.stdint cimport int32_t

# Activation codes, shared with cmlp/_layout.py (ACTIVATIONS).
cpdef enum Activation:
    ACT_IDENTITY = 0
    ACT_RELU = 1
    ACT_TANH = 2
    ACT_SIGMOID = 3

# Output/loss codes, shared with cmlp/_layout.py (OUTPUTS).
cpdef enum Output:
    OUT_SOFTMAX = 0     # softmax + cross-entropy, integer labels
    OUT_IDENTITY = 1    # identity + 1/(2m) sum of squares, float targets

# z (m, n_out) = a_prev (m, n_in) @ W (n_in, n_out) + b (n_out)
cdef void linear_forward(floating* z, const floating* a_prev,
                         const floating* W, const floating* b,
                         Py_ssize_t m, Py_ssize_t n_in,
                         Py_ssize_t n_out) noexcept nogil

# dW (n_in, n_out) = a_prev^T @ dz;  db (n_out) = sum over rows of dz;
# da_prev (m, n_in) = dz @ W^T, skipped when da_prev is NULL (first layer).
cdef void linear_backward(floating* da_prev, floating* dW, floating* db,
                          const floating* dz, const floating* a_prev,
                          const floating* W, Py_ssize_t m, Py_ssize_t n_in,
                          Py_ssize_t n_out) noexcept nogil

# Backward fused with the SGD step, for plain SGD training:
# da_prev (m, n_in) = dz @ W^T with the *old* W (skipped when NULL), then
# W -= lr * a_prev^T @ dz and b -= lr * sum over rows of dz, in place.
cdef void linear_backward_sgd(floating* da_prev, floating* W, floating* b,
                              const floating* dz, const floating* a_prev,
                              floating lr, Py_ssize_t m, Py_ssize_t n_in,
                              Py_ssize_t n_out) noexcept nogil

# Elementwise over n values; a may alias z, dz may alias da. The backward
# kernels take the forward *output* a: every activation here has its
# derivative as a function of its output.
cdef void relu_forward(floating* a, const floating* z, Py_ssize_t n) noexcept nogil
cdef void relu_backward(floating* dz, const floating* a, const floating* da,
                        Py_ssize_t n) noexcept nogil
cdef void tanh_forward(floating* a, const floating* z, Py_ssize_t n) noexcept nogil
cdef void tanh_backward(floating* dz, const floating* a, const floating* da,
                        Py_ssize_t n) noexcept nogil
cdef void sigmoid_forward(floating* a, const floating* z, Py_ssize_t n) noexcept nogil
cdef void sigmoid_backward(floating* dz, const floating* a, const floating* da,
                           Py_ssize_t n) noexcept nogil
cdef void activation_forward(int activation, floating* a, const floating* z,
                             Py_ssize_t n) noexcept nogil
cdef void activation_backward(int activation, floating* dz, const floating* a,
                              const floating* da, Py_ssize_t n) noexcept nogil

# p (m, k) = softmax of each row of z (m, k); p may alias z.
cdef void softmax_forward(floating* p, const floating* z, Py_ssize_t m,
                          Py_ssize_t k) noexcept nogil

# Sum over rows of the cross-entropy of softmax(z) against labels (m),
# computed stably from the logits z (m, k); counts argmax hits in n_correct.
cdef double softmax_xent_loss(const floating* z, const int32_t* labels,
                              Py_ssize_t m, Py_ssize_t k,
                              Py_ssize_t* n_correct) noexcept nogil

# Fused softmax + cross-entropy gradient: dz (m, k) = (softmax(z) - onehot) / m.
# Returns the same loss sum as softmax_xent_loss. dz must not alias z.
cdef double softmax_xent_backward(floating* dz, const floating* z,
                                  const int32_t* labels, Py_ssize_t m,
                                  Py_ssize_t k,
                                  Py_ssize_t* n_correct) noexcept nogil

# Sum over rows of 1/2 ||yhat_i - y_i||^2 for yhat, y (m, k).
cdef double mse_loss(const floating* yhat, const floating* y, Py_ssize_t m,
                     Py_ssize_t k) noexcept nogil

# dz (m, k) = (yhat - y) / m; returns the same sum as mse_loss.
cdef double mse_backward(floating* dz, const floating* yhat,
                         const floating* y, Py_ssize_t m,
                         Py_ssize_t k) noexcept nogil

# params (n) -= lr * grads (n)
cdef void sgd_update(floating* params, const floating* grads, floating lr,
                     Py_ssize_t n) noexcept nogil
